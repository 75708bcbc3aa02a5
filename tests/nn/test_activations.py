import pytest
import torch

from sklip.nn import FullSort, GroupSort, L2NormPool2d, MaxMin
from tests.helpers import max_slope, random_pairs


def test_groupsort_sorts_each_strided_group():
    # Four features, groups of two: (x0, x2) and (x1, x3).
    x = torch.tensor([[3.0, -1.0, 0.0, 2.0]])
    assert torch.equal(GroupSort(2)(x), torch.tensor([[0.0, -1.0, 3.0, 2.0]]))
    # Groups of three among six features: (x0, x2, x4) and (x1, x3, x5).
    x = torch.tensor([[5.0, 0.0, 1.0, 2.0, 3.0, 1.0]])
    assert torch.equal(GroupSort(3)(x), torch.tensor([[1.0, 0.0, 3.0, 1.0, 5.0, 2.0]]))


def test_maxmin_is_groupsort_two_and_fullsort_sorts_everything():
    torch.manual_seed(0)
    x = torch.randn(5, 8)
    assert torch.equal(MaxMin()(x), GroupSort(2)(x))
    assert torch.equal(FullSort()(x), x.sort(dim=1).values)
    # The group-2 fast path agrees with the general sort.
    general = x.reshape(5, 2, 4).sort(dim=1).values.reshape(5, 8)
    assert torch.equal(GroupSort(2)(x), general)


def test_maxmin_training_path_matches_the_exact_sort_and_routes_gradients():
    # With autograd on, MaxMin computes min/max through one ReLU (a cheaper
    # backward): values and gradients may differ by a rounding, and each
    # output's gradient must reach the input it came from.
    torch.manual_seed(0)
    x = torch.randn(64, 16, dtype=torch.float64)
    x[0, 8] = x[0, 0]  # a tie
    exact = GroupSort(2)(x)
    leaf = x.clone().requires_grad_()
    trained = GroupSort(2)(leaf)
    assert torch.allclose(trained, exact, rtol=0, atol=1e-15)
    upstream = torch.randn(64, 16, dtype=torch.float64)
    (trained * upstream).sum().backward()
    expected = x.clone().requires_grad_()
    (expected.reshape(64, 2, 8).sort(dim=1).values.reshape(64, 16) * upstream).sum().backward()
    untied = torch.ones_like(x, dtype=torch.bool)
    untied[0, [0, 8]] = False
    assert torch.allclose(leaf.grad[untied], expected.grad[untied], rtol=0, atol=1e-15)
    # At the tie the gradient is routed one way or the other, never split.
    tied = leaf.grad[0, [0, 8]].sort().values
    assert torch.allclose(tied, upstream[0, [0, 8]].sort().values, rtol=0, atol=1e-15)


def _reference_sort(x: torch.Tensor, group_size: int) -> torch.Tensor:
    return x.reshape(x.shape[0], group_size, -1).sort(dim=1).values.reshape(x.shape)


@pytest.mark.parametrize("group_size", [4, 8])
def test_sorting_network_sorts_every_binary_group(group_size):
    # The 0-1 principle: a comparator network that sorts all 2^g vectors of
    # zeros and ones sorts every input.
    codes = torch.arange(2**group_size)
    bits = ((codes[:, None] >> torch.arange(group_size)) & 1).double()  # (2^g, g)
    x = bits.T.reshape(1, group_size, -1).expand(3, -1, -1).reshape(3, -1)
    assert torch.equal(GroupSort(group_size)(x), _reference_sort(x, group_size))


@pytest.mark.parametrize("group_size", [4, 8])
@pytest.mark.parametrize("shape", [(33, 16), (5, 24, 3, 2), (2, 8)])
def test_sorting_network_values_and_gradients_equal_torch_sort(group_size, shape):
    """Exactly torch.sort's values, and its gradient routing, with and without autograd."""
    generator = torch.Generator().manual_seed(group_size)
    x = torch.randn(*shape, dtype=torch.float64, generator=generator)
    x.view(shape[0], -1)[0, :group_size] = 0.5  # equal values (tied groups in 2-D shapes)
    assert torch.equal(GroupSort(group_size)(x), _reference_sort(x, group_size))
    upstream = torch.randn(*shape, dtype=torch.float64, generator=generator)
    ours = x.clone().requires_grad_()
    theirs = x.clone().requires_grad_()
    out = GroupSort(group_size)(ours)
    assert torch.equal(out, _reference_sort(x, group_size))
    (out * upstream).sum().backward()
    (_reference_sort(theirs, group_size) * upstream).sum().backward()
    untied = torch.ones(shape, dtype=torch.bool).view(shape[0], -1)
    untied[0, :group_size] = False
    untied = untied.view(shape)
    assert torch.equal(ours.grad[untied], theirs.grad[untied])
    # In a tied group each upstream value reaches exactly one tied input.
    assert torch.equal(ours.grad[~untied].sort().values, theirs.grad[~untied].sort().values)


def test_sorting_network_takes_an_empty_batch():
    for x in (torch.zeros(0, 16), torch.zeros(0, 16, 2, 2, requires_grad=True)):
        assert GroupSort(8)(x).shape == x.shape


def test_sorting_network_leaves_its_input_alone():
    x = torch.randn(4, 16, requires_grad=True)
    before = x.detach().clone()
    GroupSort(8)(x).sum().backward()
    GroupSort(8)(x.detach())
    assert torch.equal(x.detach(), before)


@pytest.mark.parametrize(
    "activation",
    [GroupSort(2), GroupSort(4), GroupSort(8), FullSort()],
    ids=["gs2", "gs4", "gs8", "full"],
)
@pytest.mark.parametrize("shape", [(16, 8), (4, 8, 3, 3)])
def test_sorting_activations_preserve_the_gradient_norm(activation, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(*shape, dtype=torch.float64)
    (activation(x) * upstream).sum().backward()
    per_sample = x.grad.reshape(shape[0], -1).norm(dim=1)
    assert torch.allclose(per_sample, upstream.reshape(shape[0], -1).norm(dim=1), rtol=1e-12)


def test_groupsort_rejects_indivisible_widths():
    with pytest.raises(ValueError, match="divisible by 2"):
        GroupSort(2)(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="group_size"):
        GroupSort(0)


def test_l2_norm_pool_takes_window_norms():
    x = torch.tensor([[[[3.0, 4.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])
    assert torch.allclose(L2NormPool2d(2)(x), torch.tensor([[[[5.0, 1.0]]]]))


@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 1), (2, 1)])
def test_l2_norm_pool_is_one_lipschitz(kernel, stride):
    pool = L2NormPool2d(kernel, stride)
    x, x2 = random_pairs(1000, (3, 6, 6))
    assert max_slope(pool, x, x2) <= 1 + 1e-6
    # The overlapping scale is needed: a constant image reaches the bound's order.
    ones = torch.ones(1, 1, 6, 6)
    ratio = pool(ones).norm() / ones.norm()
    assert ratio <= 1 + 1e-6


def test_l2_norm_pool_has_finite_gradient_at_zero():
    x = torch.zeros(1, 2, 4, 4, requires_grad=True)
    L2NormPool2d(2)(x).sum().backward()
    assert torch.isfinite(x.grad).all()
