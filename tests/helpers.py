"""Test helpers: independent measurements to check sklip's claims against."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def conv_operator_norm(
    kernel: Tensor, image_shape: tuple[int, int, int], padding: int, iterations: int = 200
) -> float:
    """Power iteration on the actual convolution operator (conv then conv_transpose).

    A *lower* estimate of the operator norm that converges to it: what a bound
    must never be below.
    """
    kernel = kernel.detach().double()
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(1, *image_shape, dtype=torch.float64, generator=generator)
    for _ in range(iterations):
        u = F.conv_transpose2d(F.conv2d(u, kernel, padding=padding), kernel, padding=padding)
        u = u / u.norm()
    return float(F.conv2d(u, kernel, padding=padding).norm())


def max_slope(f, x: Tensor, x2: Tensor) -> float:
    """Largest |f(x) - f(x')| / ||x - x'|| over the rows (outputs summed if 1-D)."""
    with torch.no_grad():
        gaps = (f(x) - f(x2)).reshape(len(x), -1).norm(dim=1)
    return float((gaps / (x - x2).reshape(len(x), -1).norm(dim=1)).max())


def random_pairs(n: int, shape: tuple[int, ...], seed: int = 0) -> tuple[Tensor, Tensor]:
    """Pairs of inputs, half far apart and half very close (where slopes peak)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=generator)
    far = torch.randn(n // 2, *shape, generator=generator)
    near = x[n // 2 :] + 1e-2 * torch.randn(n - n // 2, *shape, generator=generator)
    return x, torch.cat((far, near))


def translated_digits(canvas: int = 20, seed: int = 0):
    """The translated-digits task of benchmarks/images.py (its definition, restated).

    Each 8x8 digit upsampled to 16x16 (2x2 blocks), in [0, 1], pasted at a
    random offset on a ``canvas`` x ``canvas`` black square; flat rows.
    """
    import numpy as np
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    upsampled = np.kron(X.reshape(-1, 8, 8) / 16.0, np.ones((1, 2, 2)))
    offsets = np.random.RandomState(seed).randint(0, canvas - 16 + 1, size=(len(X), 2))
    images = np.zeros((len(X), canvas, canvas))
    for image, digit, (top, left) in zip(images, upsampled, offsets, strict=True):
        image[top : top + 16, left : left + 16] = digit
    return images.reshape(len(X), -1), y
