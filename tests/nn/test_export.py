import pytest
import torch
from torch import nn

from sklip.nn import (
    LipschitzConv2d,
    LipschitzLinear,
    export,
    lipschitz_bound,
    lipschitz_cnn,
    lipschitz_mlp,
)


def _train_a_little(net: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(5):
        optimiser.zero_grad()
        net(torch.randn(16, *shape)).square().mean().backward()
        optimiser.step()
    return net.eval()


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: lipschitz_mlp(6, (16, 16), 3), (6,)),
        (lambda: lipschitz_cnn((2, 8, 8), (4, 8), (16,), 2), (2, 8, 8)),
    ],
    ids=["mlp", "cnn"],
)
def test_export_computes_the_same_function_with_plain_layers(make, shape):
    torch.manual_seed(0)
    net = _train_a_little(make(), shape)
    plain = export(net)
    x = torch.randn(64, *shape)
    with torch.no_grad():
        assert torch.allclose(plain(x), net(x), atol=1e-5)
    kinds = {type(layer) for layer in plain}
    assert not kinds & {LipschitzLinear, LipschitzConv2d}
    assert all(
        isinstance(layer, nn.Linear | nn.Conv2d) or not list(layer.parameters()) for layer in plain
    )
    assert lipschitz_bound(plain, input_shape=shape) == pytest.approx(
        lipschitz_bound(net), rel=1e-9
    )


def test_export_leaves_the_source_untouched_and_in_its_mode():
    torch.manual_seed(0)
    net = lipschitz_mlp(4, (8,), 1).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    export(net)
    assert net.training
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key])


def test_export_refuses_unknown_parametrised_layers():
    with pytest.raises(TypeError, match="BatchNorm1d"):
        export(nn.Sequential(nn.BatchNorm1d(3)))


def test_export_does_not_touch_the_global_rng():
    net = lipschitz_cnn((1, 6, 6), (4,), (8,), 2).eval()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    export(net)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_paddings_export_and_freeze_as_the_pairs_they_mean(padding):
    from sklip.nn import FrozenNetwork

    torch.manual_seed(0)
    net = nn.Sequential(nn.Unflatten(1, (2, 5, 6)), nn.Conv2d(2, 3, 3, padding=padding),
                        nn.Flatten(), nn.LazyLinear(2)).double()  # fmt: skip
    x = torch.randn(4, 60, dtype=torch.float64)
    expected = net(x)
    frozen = FrozenNetwork(net, 60)
    assert torch.equal(frozen(x).outputs, expected.detach())
    assert torch.equal(export(net)(x), expected.detach())
    even = nn.Sequential(nn.Unflatten(1, (1, 5, 5)), nn.Conv2d(1, 1, 2, padding="same"))
    with pytest.raises(TypeError, match="even kernel"):
        export(even)
