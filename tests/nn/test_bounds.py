import math

import pytest
import torch
from torch import nn

from sklip.nn import (
    GroupSort,
    LipschitzConv2d,
    conv2d_operator_norm_bound,
    lipschitz_bound,
    lipschitz_cnn,
    lipschitz_mlp,
    pairwise_lipschitz_bound,
)
from tests.helpers import conv_operator_norm, max_slope, random_pairs


def _perturb(net: nn.Module, scale: float, seed: int = 0) -> nn.Module:
    """Move raw weights off their initialisation, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return net.eval()


def test_bound_of_a_linear_layer_is_its_largest_singular_value():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    expected = torch.linalg.svdvals(layer.weight.double())[0].item()
    assert lipschitz_bound(nn.Sequential(layer)) == pytest.approx(expected, rel=1e-12)


def test_bound_of_a_sequence_is_the_product():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 6), nn.Linear(6, 2)
    expected = lipschitz_bound(nn.Sequential(a)) * lipschitz_bound(nn.Sequential(b))
    net = nn.Sequential(a, nn.ReLU(), nn.Sequential(b))
    assert lipschitz_bound(net) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "plain"])
def test_bound_is_never_beaten_by_random_pairs(kind):
    torch.manual_seed(0)
    if kind == "mlp":
        net, shape = _perturb(lipschitz_mlp(6, (16, 16), 1), 0.3), (6,)
    elif kind == "cnn":
        net, shape = _perturb(lipschitz_cnn((2, 6, 6), (4, 8), (16,), 3), 0.3), (2, 6, 6)
    else:
        net = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), GroupSort(2), nn.Flatten(), nn.Linear(4 * 36, 3)
        )
        shape = (2, 6, 6)
    bound = lipschitz_bound(net, input_shape=shape)
    x, x2 = random_pairs(1000, shape)
    assert max_slope(net, x, x2) <= bound * (1 + 1e-6)


def test_bound_is_reached_by_a_single_linear_layer_along_its_top_singular_vector():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    _, _, vh = torch.linalg.svd(layer.weight.detach())
    x = torch.zeros(1, 5)
    slope = max_slope(layer, x, x + vh[:1])
    assert slope == pytest.approx(lipschitz_bound(nn.Sequential(layer)), rel=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [5, 8])
def test_conv_bound_is_above_the_operator_norm(size, stride):
    torch.manual_seed(size + stride)
    kernel = torch.randn(6, 3, 3, 3)
    sized = conv2d_operator_norm_bound(kernel, (size, size), (1, 1), (stride, stride))
    size_free = conv2d_operator_norm_bound(kernel, None, (1, 1), (stride, stride))
    norm = conv_operator_norm(kernel, (3, size, size), padding=1)  # stride-1 operator
    if stride == 1:
        assert norm <= sized * (1 + 1e-9)
        assert sized <= 1.25 * norm  # the torus bound is tight, not just sound
    assert sized <= size_free * (1 + 1e-9)


def test_conv_bound_of_a_pointwise_kernel_is_its_matrix_norm():
    torch.manual_seed(0)
    kernel = torch.randn(4, 3, 1, 1)
    expected = torch.linalg.svdvals(kernel[:, :, 0, 0].double())[0].item()
    assert conv2d_operator_norm_bound(kernel, (6, 6)) == pytest.approx(expected, rel=1e-10)


def test_constrained_conv_bound_covers_the_power_iteration_norm():
    torch.manual_seed(0)
    conv = LipschitzConv2d(3, 5, 3, input_size=(6, 6)).eval()
    with torch.no_grad():
        conv.weight.add_(torch.randn_like(conv.weight))
    bound = lipschitz_bound(nn.Sequential(conv))
    assert conv_operator_norm(conv.normalized_weight(), (3, 6, 6), padding=1) <= bound * (1 + 1e-9)


@pytest.mark.parametrize(
    "net",
    [
        lipschitz_mlp(10, (32, 32, 32), 1),
        lipschitz_mlp(10, (32,), 4, "fullsort"),
        lipschitz_cnn((1, 8, 8), (8, 16), (32,), 1),
    ],
    ids=["mlp", "mlp-K", "cnn"],
)
def test_fresh_constrained_networks_are_one_lipschitz(net):
    assert lipschitz_bound(net) <= 1 + 1e-3


def test_pairwise_bound_is_the_row_distance_times_the_body_bound():
    torch.manual_seed(0)
    net = _perturb(lipschitz_mlp(6, (8,), 3), 0.3)
    body = lipschitz_bound(net[:-1])
    rows = net[-1].normalized_weight().double()
    pairwise = pairwise_lipschitz_bound(net)
    for i in range(3):
        for j in range(3):
            expected = (rows[i] - rows[j]).norm().item() * body
            assert pairwise[i, j].item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert torch.all(pairwise.diagonal() == 0)


def test_pairwise_bound_is_never_beaten_by_random_pairs():
    torch.manual_seed(0)
    net = _perturb(lipschitz_mlp(6, (16,), 4), 0.3)
    pairwise = pairwise_lipschitz_bound(net)
    x, x2 = random_pairs(1000, (6,))
    for i, j in [(0, 1), (1, 3), (2, 0)]:
        slope = max_slope(lambda t, i=i, j=j: net(t)[:, i] - net(t)[:, j], x, x2)
        assert slope <= pairwise[i, j].item() * (1 + 1e-6)


def test_unknown_layers_have_no_bound():
    with pytest.raises(TypeError, match="Tanh"):
        lipschitz_bound(nn.Sequential(nn.Linear(2, 2), nn.Tanh()))
    with pytest.raises(TypeError, match="last layer is linear"):
        pairwise_lipschitz_bound(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))


def test_plain_conv_uses_the_image_size_when_given():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1))
    sized = lipschitz_bound(net, input_shape=(1, 5, 5))
    size_free = lipschitz_bound(net)
    assert sized <= size_free
    kernel = net[0].weight.detach()
    assert size_free == pytest.approx(
        torch.linalg.svdvals(kernel.reshape(2, -1).double())[0].item() * math.sqrt(9)
    )


def _explicit_norm(net: nn.Module, shape: tuple[int, ...]) -> float:
    """The exact operator norm of a linear ``net`` (no biases): its matrix on the basis."""
    n = math.prod(shape)
    with torch.no_grad():
        matrix = net(torch.eye(n, dtype=torch.float64).reshape(n, *shape)).reshape(n, -1)
    return float(torch.linalg.matrix_norm(matrix, ord=2))


def test_a_circular_conv_run_at_two_image_sizes_is_bounded_at_both():
    """The bound of one size does not bound another: each run's size counts."""
    conv = nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular", bias=False).double()
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, :, 1] = torch.tensor([1.0, 1.0, -1.0])  # on 2 rows: above, below cancel
    net = nn.Sequential(conv, nn.Flatten(), nn.Unflatten(1, (1, 2, 8)), conv)
    assert lipschitz_bound(net, (1, 4, 4)) >= _explicit_norm(net, (1, 4, 4)) * (1 - 1e-12)


class _Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


class _Doubled(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")  # the hook API, on purpose
def test_layers_whose_forward_is_not_their_weights_are_refused():
    """weight_norm recomputes the weight when the layer runs (a hook); a subclass
    may compute anything: the bound of the weights held would not hold."""
    hooked = nn.utils.weight_norm(nn.Linear(3, 3))
    with pytest.raises(TypeError, match="hooks"):
        lipschitz_bound(nn.Sequential(hooked))
    with pytest.raises(TypeError, match="_Doubled"):
        lipschitz_bound(nn.Sequential(_Doubled(3, 3)))
    with pytest.raises(TypeError, match="_Residual"):
        lipschitz_bound(nn.Sequential(_Residual(nn.Linear(3, 3))))
    assert lipschitz_bound(nn.Sequential(nn.Sequential(nn.Linear(3, 3)))) > 0  # plain nesting
