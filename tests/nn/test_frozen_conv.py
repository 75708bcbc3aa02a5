"""The frozen network's convolution off the CPU: explicit dot products, as F.conv2d computes."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sklip.nn.frozen import conv2d_as_dot_products


@pytest.mark.parametrize(
    ("kernel_size", "stride", "padding", "bias", "shape"),
    [
        (3, 1, 1, True, (3, 2, 8, 8)),  # sklip's blocks: 3x3, "same" padding
        (3, 2, 1, True, (2, 3, 9, 7)),  # strided, odd sizes
        (3, 2, 0, False, (2, 1, 8, 8)),  # no padding, no bias
        ((3, 1), (2, 1), (1, 0), True, (2, 2, 6, 5)),  # rectangular everything
        (5, 1, 2, True, (1, 4, 5, 5)),  # kernel as large as the image
    ],
)
def test_conv2d_as_dot_products_matches_conv2d_in_float64(kernel_size, stride, padding, bias,
                                                          shape):  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(shape[1], 4, kernel_size, stride=stride, padding=padding, bias=bias)
    conv = conv.double().requires_grad_(False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator, dtype=torch.float64))
    z = torch.randn(shape, generator=generator, dtype=torch.float64)
    expected = F.conv2d(z, conv.weight, conv.bias, conv.stride, conv.padding)
    got = conv2d_as_dot_products(z, conv)
    assert got.shape == expected.shape and got.dtype == torch.float64
    # Same dot products, maybe summed in another order: within a few ulps of the terms.
    scale = F.conv2d(z.abs(), conv.weight.abs(), None, conv.stride, conv.padding)
    if conv.bias is not None:
        scale = scale + conv.bias.abs()[:, None, None]
    assert ((got - expected).abs() <= 1e-14 * scale + 1e-300).all()


def test_row_bytes_counts_a_convolutions_unfolded_input():
    """What prediction sizes its chunks of rows by: C k_h k_w values per output pixel."""
    from sklip.nn import FrozenNetwork, lipschitz_cnn

    net = lipschitz_cnn((1, 8, 8), (4,), (8,), 2, conv="cayley").eval()
    frozen = FrozenNetwork(net, 64)
    conv = next(layer for layer in frozen.module if isinstance(layer, torch.nn.Conv2d))
    # The Cayley kernel spans the 8x8 torus: at least 64 taps per output pixel, 64 pixels.
    assert min(conv.kernel_size) >= 8
    assert frozen.row_bytes >= 8 * 1 * 64 * 64
