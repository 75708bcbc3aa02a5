import copy
import pickle

import pytest
import torch
from torch import nn

from sklip.nn import ImageView, LipschitzConv2d, LipschitzLinear, SpectralBjorck


class CountingConstraint(nn.Module):
    """Wraps a constraint and counts how often it runs."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, weight):
        self.calls += 1
        return self.inner(weight)


def test_eval_mode_computes_the_weight_once():
    layer = LipschitzLinear(4, 4, constraint=CountingConstraint(SpectralBjorck(4, 4))).eval()
    x = torch.randn(3, 4)
    for _ in range(5):
        layer(x)
    assert layer.constraint.calls == 1


def test_training_mode_recomputes_the_weight_every_call():
    layer = LipschitzLinear(4, 4, constraint=CountingConstraint(SpectralBjorck(4, 4))).train()
    for _ in range(3):
        layer(torch.randn(2, 4))
    assert layer.constraint.calls == 3


def test_eval_cache_follows_every_optimiser_step():
    torch.manual_seed(0)
    layer = LipschitzLinear(5, 3)
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.5)
    x = torch.randn(8, 5)
    previous = layer.eval()(x)
    for _ in range(3):
        layer.train()
        optimiser.zero_grad()
        layer(x).sum().backward()
        optimiser.step()
        layer.eval()
        cached = layer(x)
        with torch.no_grad():
            fresh = nn.functional.linear(x, layer.constraint(layer.weight), layer.bias)
        assert torch.allclose(cached, fresh, atol=1e-6)
        assert (cached - previous).abs().max() > 1e-2  # the step did move the outputs
        previous = cached


def test_eval_call_after_a_fused_step_serves_the_new_weight():
    # Fused optimisers leave the version counter alone: the mode switch is
    # what tells the layer that its cached weight is stale.
    torch.manual_seed(0)
    layer = LipschitzLinear(5, 3)
    optimiser = torch.optim.Adam(layer.parameters(), lr=0.1, fused=True)
    x = torch.randn(8, 5)
    layer(x).sum().backward()
    before = layer.eval()(x)
    optimiser.step()
    after = layer.eval()(x)
    with torch.no_grad():
        fresh = nn.functional.linear(x, layer.constraint(layer.weight), layer.bias)
    assert torch.allclose(after, fresh, atol=1e-6)
    assert (after - before).abs().max() > 1e-2


def test_eval_cache_follows_load_state_dict_and_device_moves():
    torch.manual_seed(0)
    source, target = LipschitzLinear(3, 3).eval(), LipschitzLinear(3, 3).eval()
    x = torch.randn(4, 3)
    target(x)  # fills the cache
    target.load_state_dict(source.state_dict())
    assert torch.equal(target(x), source(x))
    target.to(torch.float64)
    assert target(x.double()).dtype == torch.float64


@pytest.mark.parametrize(
    "layer, x",
    [
        (LipschitzLinear(4, 6), torch.randn(3, 4)),
        (LipschitzConv2d(2, 4, 3, input_size=(5, 5)), torch.randn(3, 2, 5, 5)),
    ],
    ids=["linear", "conv"],
)
def test_layers_pickle_and_copy_with_identical_outputs(layer, x):
    layer.eval()
    expected = layer(x)
    for clone in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert torch.equal(clone.eval()(x), expected)


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="in_features"):
        LipschitzLinear(0, 3)
    with pytest.raises(ValueError, match="out_features"):
        LipschitzLinear(3, -2)
    with pytest.raises(ValueError, match="odd"):
        LipschitzConv2d(1, 2, 2, input_size=(4, 4))
    with pytest.raises(ValueError, match="input_size"):
        LipschitzConv2d(1, 2, 3, input_size=(4, 0))
    with pytest.raises(ValueError, match=r"\(n, 1, 4, 4\)"):
        LipschitzConv2d(1, 2, 3, input_size=(4, 4))(torch.zeros(2, 1, 5, 5))
    with pytest.raises(ValueError, match="image_shape"):
        ImageView((1, 4))
    with pytest.raises(ValueError, match="does not match image_shape"):
        ImageView((1, 4, 4))(torch.zeros(2, 15))


def test_image_view_accepts_flat_rows_and_images():
    x = torch.arange(2 * 12.0).reshape(2, 3, 2, 2)
    view = ImageView((3, 2, 2))
    assert torch.equal(view(x.reshape(2, 12)), x)
    assert torch.equal(view(x), x)
