"""AOL and Cayley convolutions: norms against explicit matrices, export, bounds, frozen use."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sklip.nn import (
    AOLConv2d,
    AOLRescale,
    CayleyConv2d,
    FrozenNetwork,
    conv2d_operator_norm_bound,
    export,
    lipschitz_bound,
    lipschitz_cnn,
)
from sklip.nn.frozen import conv2d_as_dot_products


def explicit_matrix(operator, shape: tuple[int, int, int]) -> torch.Tensor:
    """The matrix of a linear map on images of ``shape``: its columns are the images of a basis."""
    size = shape[0] * shape[1] * shape[2]
    basis = torch.eye(size, dtype=torch.float64).reshape(size, *shape)
    with torch.no_grad():
        return operator(basis).reshape(size, -1).T


def singular_values(operator, shape):
    return torch.linalg.svdvals(explicit_matrix(operator, shape))


def random_kernel(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- AOL ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c_out", "c_in", "kernel", "size", "stride"),
    [(4, 2, 3, (6, 6), 1), (2, 5, 3, (5, 7), 1), (3, 3, 5, (6, 5), 1), (6, 4, 3, (7, 7), 2)],
)
def test_aol_rescaled_kernel_has_exact_norm_at_most_one(c_out, c_in, kernel, size, stride):
    rescaled = AOLRescale()(random_kernel((c_out, c_in, kernel, kernel)))
    padding = kernel // 2
    sigma = singular_values(
        lambda x: F.conv2d(x, rescaled, stride=stride, padding=padding), (c_in, *size)
    )
    bound = conv2d_operator_norm_bound(rescaled, size, (padding,) * 2, (stride,) * 2)
    assert sigma.max() <= 1 + 1e-12
    assert sigma.max() <= bound  # the certificate's bound is never below the truth
    assert sigma.max() > 0.2  # a rescaling, not a collapse


def test_aol_leaves_an_orthogonal_kernel_unchanged():
    # A 1x1 orthogonal map at the centre tap: already orthogonal, d = 1.
    centre = torch.linalg.qr(random_kernel((5, 3)))[0]
    kernel = torch.zeros(5, 3, 3, 3, dtype=torch.float64)
    kernel[:, :, 1, 1] = centre
    assert torch.allclose(AOLRescale()(kernel), kernel, atol=1e-12)


@pytest.mark.parametrize(("c_in", "c_out"), [(2, 2), (2, 6), (4, 8)])
def test_aol_layer_starts_orthogonal(c_in, c_out):
    layer = AOLConv2d(c_in, c_out, input_size=(5, 6), bias=False).double().eval()
    sigma = singular_values(layer, (c_in, 5, 6))
    assert torch.allclose(sigma, torch.ones_like(sigma), atol=1e-9)


def test_aol_layer_exports_identically_and_is_bounded():
    torch.manual_seed(0)
    layer = AOLConv2d(3, 4, input_size=(6, 6), stride=2).double()
    with torch.no_grad():
        layer.weight.normal_()
    layer.eval()
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    plain = export(nn.Sequential(layer))
    assert torch.equal(plain(x), layer(x))
    exact = singular_values(lambda z: layer(z) - layer.bias[:, None, None], (3, 6, 6)).max()
    assert exact <= lipschitz_bound(layer) <= 1 + 1e-9


# --- Cayley ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c_in", "c_out", "size"),
    [(3, 3, (6, 6)), (2, 5, (8, 8)), (5, 2, (7, 8)), (4, 4, (5, 5)), (1, 4, (4, 3))],
)
def test_cayley_is_orthogonal_on_its_image_size(c_in, c_out, size):
    torch.manual_seed(0)
    layer = CayleyConv2d(c_in, c_out, input_size=size, bias=False).double()
    with torch.no_grad():
        layer.weight.normal_()  # far from the identity start
    layer.eval()
    sigma = singular_values(layer, (c_in, *size))
    # More outputs: an isometry; fewer: a co-isometry (its nonzero singular values are 1).
    assert torch.allclose(sigma[: min(c_in, c_out) * size[0] * size[1]], torch.tensor(1.0).double())
    bound = lipschitz_bound(layer)
    assert 1 - 1e-12 <= bound <= 1 + 1e-9


@pytest.mark.parametrize("size", [(6, 6), (5, 7)])
def test_cayley_training_and_eval_paths_compute_the_same_map(size):
    torch.manual_seed(1)
    layer = CayleyConv2d(3, 4, input_size=size).double()
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    x = torch.randn(5, 3, *size, dtype=torch.float64)
    fourier = layer.train()(x)
    spatial = layer.eval()(x)
    assert torch.allclose(fourier, spatial, atol=1e-12)
    assert torch.equal(export(nn.Sequential(layer))(x), spatial)


def test_cayley_gradients_reach_the_raw_kernel():
    layer = CayleyConv2d(2, 2, input_size=(4, 4))
    layer(torch.randn(3, 2, 4, 4)).square().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_cayley_refuses_other_image_sizes_and_oversized_kernels():
    layer = CayleyConv2d(1, 2, input_size=(4, 4))
    with pytest.raises(ValueError, match="expects images of shape"):
        layer(torch.zeros(1, 1, 5, 4))
    with pytest.raises(ValueError, match="larger than input_size"):
        CayleyConv2d(1, 2, 5, input_size=(4, 4))


# --- circular convolutions: bound and frozen evaluation -------------------------


@pytest.mark.parametrize(
    ("kernel", "padding", "size"),
    [(3, 1, (5, 5)), (5, 2, (4, 6)), (9, 4, (8, 8)), (3, 2, (4, 4)), (7, 1, (5, 5))],
)
def test_circular_bound_is_never_below_the_explicit_norm(kernel, padding, size):
    conv = nn.Conv2d(2, 3, kernel, padding=padding, padding_mode="circular", bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(random_kernel(conv.weight.shape, seed=kernel))
    exact = singular_values(conv, (2, *size)).max()
    bound = conv2d_operator_norm_bound(conv.weight, size, (padding,) * 2, padding_mode="circular")
    assert exact <= bound
    outputs = [n + 2 * padding - kernel + 1 for n in size]
    if outputs == list(size):  # the operator is the whole circular convolution: tight
        assert bound <= exact * (1 + 1e-9)


def test_circular_bound_needs_the_image_size():
    with pytest.raises(ValueError, match="needs input_size"):
        conv2d_operator_norm_bound(torch.ones(1, 1, 3, 3), padding=(1, 1), padding_mode="circular")
    with pytest.raises(ValueError, match="padding_mode"):
        conv2d_operator_norm_bound(torch.ones(1, 1, 3, 3), (4, 4), padding_mode="reflect")


def test_circular_conv_as_dot_products_matches_conv2d():
    conv = nn.Conv2d(2, 3, 5, padding=2, padding_mode="circular").double()
    z = torch.randn(2, 2, 4, 6, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(conv2d_as_dot_products(z, conv), conv(z), atol=1e-13)


@pytest.mark.parametrize("conv", ["bound", "aol", "cayley"])
@pytest.mark.parametrize("downsampling", ["pool", "unshuffle"])
def test_frozen_cnn_of_every_kind_reproduces_the_network(conv, downsampling):
    torch.manual_seed(0)
    net = lipschitz_cnn((1, 9, 8), (4, 8), (16,), 3, conv=conv, downsampling=downsampling)
    net = net.double()
    x = torch.randn(6, 72, dtype=torch.float64)
    net.train()(x)  # move the power iterations off their start
    net.eval()
    frozen = FrozenNetwork(net, n_features=72)
    outputs = frozen(x)
    assert torch.allclose(outputs.outputs, net(x), atol=1e-12)
    assert 0 < frozen.lipschitz_constant <= 1 + 1e-6
    # The bound holds on pairs of inputs: no slope above it.
    x2 = x + 1e-3 * torch.randn_like(x)
    with torch.no_grad():
        slopes = (net(x) - net(x2)).norm(dim=1) / (x - x2).norm(dim=1)
    assert slopes.max() <= frozen.lipschitz_constant


def test_lipschitz_cnn_refuses_unknown_layers():
    with pytest.raises(ValueError, match="conv must be one of"):
        lipschitz_cnn((1, 8, 8), (4,), (8,), 2, conv="soc")
    with pytest.raises(ValueError, match="downsampling must be"):
        lipschitz_cnn((1, 8, 8), (4,), (8,), 2, downsampling="max")


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "mode"),
    [
        ((8, 8), 3, 1, 1, "zeros"),
        ((9, 7), 3, 2, 1, "zeros"),
        ((8, 8), 9, 1, 4, "circular"),
        ((4, 5), 3, 1, 2, "circular"),
        ((6, 6), 5, 2, 2, "circular"),
    ],
)
def test_rounding_counts_every_tap_that_reads_a_pixel(size, kernel, stride, padding, mode):
    # The frozen network's |K| * |z| bound needs the most (output, tap) pairs
    # reading one pixel; count them by convolving an all-ones kernel over each
    # one-hot image. Circular padding can wrap two taps onto one pixel.
    from sklip.nn.layer_rounding import _taps_per_pixel

    conv = nn.Conv2d(1, 1, kernel, stride, padding, padding_mode=mode, bias=False).double()
    with torch.no_grad():
        conv.weight.fill_(1.0)
    pixels = size[0] * size[1]
    one_hot = torch.eye(pixels, dtype=torch.float64).reshape(pixels, 1, *size)
    with torch.no_grad():
        counts = conv(one_hot).reshape(pixels, -1).sum(dim=1)
    out = conv(one_hot[:1]).shape[-2:]
    circular = mode == "circular"
    expected = _taps_per_pixel(size[0], kernel, stride, padding, out[0], circular)
    expected *= _taps_per_pixel(size[1], kernel, stride, padding, out[1], circular)
    assert counts.max().item() == expected
