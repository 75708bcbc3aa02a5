import subprocess
import sys

import pytest
import torch
from torch import nn

from sklip.nn import (
    AOLConv2d,
    CayleyConv2d,
    FullSort,
    GroupSort,
    L2NormPool2d,
    LipschitzConv2d,
    LipschitzLinear,
    lipschitz_bound,
    lipschitz_cnn,
    lipschitz_mlp,
)


def test_mlp_has_the_requested_structure():
    net = lipschitz_mlp(5, (8, 6), 3, "fullsort")
    linears = [layer for layer in net if isinstance(layer, LipschitzLinear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(5, 8), (8, 6), (6, 3)]
    assert sum(isinstance(layer, FullSort) for layer in net) == 2
    assert net(torch.zeros(4, 5)).shape == (4, 3)


def test_cnn_default_is_aol_with_unshuffle_and_accepts_flat_or_image_input():
    torch.manual_seed(0)
    net = lipschitz_cnn((1, 8, 8), (4, 8), (16,), 2).eval()
    convs = [layer for layer in net if isinstance(layer, LipschitzConv2d)]
    assert all(isinstance(conv, AOLConv2d) for conv in convs)
    # Each unshuffle moves a 2x2 window into 4 channels: 1 -> 4 -> 16 channels in.
    assert [(c.in_channels, c.input_size) for c in convs] == [(1, (8, 8)), (16, (4, 4))]
    assert sum(isinstance(layer, nn.PixelUnshuffle) for layer in net) == 2
    head = next(layer for layer in net if isinstance(layer, LipschitzLinear))
    assert head.in_features == 8 * 4 * 2 * 2
    assert any(isinstance(layer, GroupSort) for layer in net)
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(net(x), net(x.reshape(3, 64)))


def test_cnn_keeps_the_bound_normalised_layer_and_pooling_by_name():
    net = lipschitz_cnn((1, 8, 8), (4, 8), (16,), 2, conv="bound", downsampling="pool")
    convs = [layer for layer in net if isinstance(layer, LipschitzConv2d)]
    assert [type(conv) for conv in convs] == [LipschitzConv2d, LipschitzConv2d]
    assert [conv.input_size for conv in convs] == [(8, 8), (4, 4)]
    assert sum(isinstance(layer, L2NormPool2d) for layer in net) == 2


def test_cnn_with_cayley_and_odd_sizes_crops_before_unshuffling():
    net = lipschitz_cnn((2, 7, 5), (4,), (8,), 3, conv="cayley").eval()
    assert isinstance(net[1], CayleyConv2d) and net[1].input_size == (7, 5)
    assert net(torch.randn(2, 70)).shape == (2, 3)
    head = next(layer for layer in net if isinstance(layer, LipschitzLinear))
    assert head.in_features == 4 * 4 * 3 * 2


def test_cnn_with_cayley_cuts_the_kernel_to_images_smaller_than_it():
    # (5, 7) -> (2, 3) after one unshuffle: a 3x3 circular kernel would wrap.
    net = lipschitz_cnn((2, 5, 7), (4, 8), (8,), 2, conv="cayley").eval()
    convs = [layer for layer in net if isinstance(layer, CayleyConv2d)]
    assert [conv.input_size for conv in convs] == [(5, 7), (2, 3)]
    assert net(torch.randn(3, 70)).shape == (3, 2)
    assert lipschitz_bound(net, (70,)) <= 1 + 1e-5


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: lipschitz_mlp(4, (8, 7), 1), "odd width 7"),
        (lambda: lipschitz_mlp(4, (8, 0), 1), "hidden_layer_sizes"),
        (lambda: lipschitz_mlp(4, 8, 1), "sequence"),
        (lambda: lipschitz_mlp(0, (8,), 1), "n_inputs"),
        (lambda: lipschitz_mlp(4, (8,), 1, "tanh"), "activation"),
        (lambda: lipschitz_cnn((1, 8), (4,), (8,), 1), "image_shape"),
        (lambda: lipschitz_cnn((1, 8, 8), (3,), (8,), 1), "odd width 3"),
        (lambda: lipschitz_mlp(4, (16, 9), 1, "groupsort8"), "odd width 9.*'groupsort8'"),
    ],
)
def test_impossible_networks_are_refused_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_odd_widths_are_fine_without_groupsort():
    assert lipschitz_mlp(4, (7,), 1, "relu")(torch.zeros(1, 4)).shape == (1, 1)


def test_sklip_nn_does_not_import_scikit_learn():
    code = "import sys, sklip.nn; print(any(m.startswith('sklearn') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_larger_groups_sort_groups_of_features_the_width_allows():
    # groups of 8 where 8 divides the width, else of 4, else pairs
    net = lipschitz_mlp(3, (16, 12, 6), 2, "groupsort8")
    assert [layer.group_size for layer in net if isinstance(layer, GroupSort)] == [8, 4, 2]
    assert [layer.group_size for layer in lipschitz_mlp(3, (16, 6), 1, "groupsort4")
            if isinstance(layer, GroupSort)] == [4, 2]  # fmt: skip
    cnn = lipschitz_cnn((1, 4, 4), (8,), (4,), 2, activation="groupsort8")
    assert [layer.group_size for layer in cnn if isinstance(layer, GroupSort)] == [8, 4]
    # Each group of 8 comes out sorted: the layer is a permutation of its input.
    x = torch.randn(5, 16)
    y = GroupSort(8)(x)
    assert torch.equal(y.sort(dim=1).values, x.sort(dim=1).values)
    assert torch.equal(y, x.reshape(5, 8, 2).sort(dim=1).values.reshape(5, 16))
