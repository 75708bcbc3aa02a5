"""1-Lipschitz layers: constrained dense and convolution layers, L2-norm pooling.

Each constrained layer owns a raw ``weight`` parameter (what the optimiser moves)
and a ``constraint`` module (:mod:`sklip.nn.constraints`) that maps it to the
weight actually used, :meth:`normalized_weight`. Any constraint can be plugged
into any layer; the defaults are the ones with a proof of 1-Lipschitzness.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .constraints import ConvOperatorNormalize, SpectralBjorck

__all__ = ["ImageView", "L2NormPool2d", "LipschitzConv2d", "LipschitzLinear"]


class _ConstrainedWeight(nn.Module):
    """Shared machinery of the constrained layers: the eval-mode weight cache.

    In training mode the constrained weight is recomputed at every call (it must
    be differentiable and it advances the power iteration). In eval mode it is
    computed once, without gradient, and reused while the raw weight holds the
    same values. "The same values" is checked on the values themselves, against
    a copy kept with the cache: an identity or version-counter key misses
    changes that bypass autograd's bookkeeping (``weight.data.copy_(...)``,
    torch's fused optimisers), and a stale cache would make the layer compute
    something other than what its weight says. The check costs one comparison
    of the raw weight, far less than the constraint it saves.
    """

    weight: nn.Parameter
    constraint: nn.Module

    def __init__(self) -> None:
        super().__init__()
        self._cached_weight: Tensor | None = None
        self._cached_raw: Tensor | None = None

    def normalized_weight(self) -> Tensor:
        """The weight the layer applies: ``constraint(weight)``."""
        if self.training:
            self._cached_weight = self._cached_raw = None
            return self.constraint(self.weight)
        with torch.no_grad():
            raw = self.weight.detach()
            if (
                self._cached_weight is None
                or self._cached_raw is None
                or self._cached_raw.shape != raw.shape
                or self._cached_raw.device != raw.device
                or self._cached_raw.dtype != raw.dtype
                or not torch.equal(self._cached_raw, raw)
            ):
                self._cached_weight = self.constraint(self.weight)
                self._cached_raw = raw.clone()
        return self._cached_weight

    def train(self, mode: bool = True) -> _ConstrainedWeight:
        self._cached_weight = self._cached_raw = None
        return super().train(mode)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cached_weight"] = state["_cached_raw"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_cached_raw", None)  # pickles of earlier versions
        state.pop("_cache_key", None)
        super().__setstate__(state)


class LipschitzLinear(_ConstrainedWeight):
    r"""Dense layer ``y = W' x + b`` whose weight ``W' = constraint(W)`` has norm <= 1.

    Parameters
    ----------
    in_features, out_features : int
        Input and output sizes (positive).
    bias : bool, default=True
    constraint : nn.Module, optional
        Maps the raw weight to the applied one. Default: :class:`SpectralBjorck`
        (spectral normalisation then Björck orthonormalisation), built with
        ``power_iterations`` and ``bjorck_iterations``.
    power_iterations : int, default=1
    bjorck_iterations : int, default=8
    generator : torch.Generator, optional
        Draws the initial weight (default: torch's global RNG).

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import LipschitzLinear
    >>> layer = LipschitzLinear(4, 3)
    >>> torch.linalg.matrix_norm(layer.normalized_weight(), ord=2).item() <= 1 + 1e-4
    True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        constraint: nn.Module | None = None,
        power_iterations: int = 1,
        bjorck_iterations: int = 8,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int(in_features, "in_features")
        _check_positive_int(out_features, "out_features")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        # Orthogonal initialisation: the weight starts where the constraint
        # converges to, so the first Björck steps are already accurate.
        raw = torch.empty(self.out_features, self.in_features)
        self.weight = nn.Parameter(nn.init.orthogonal_(raw, generator=generator))
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None
        if constraint is None:
            constraint = SpectralBjorck(
                self.out_features,
                self.in_features,
                power_iterations,
                bjorck_iterations,
                generator=generator,
            )
        self.constraint = constraint

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class LipschitzConv2d(_ConstrainedWeight):
    r"""2-D convolution ("same" zero padding) with operator norm at most 1.

    The default constraint, :class:`ConvOperatorNormalize`, divides the kernel by
    a *guaranteed* upper bound of the operator norm of the convolution on images
    of at most ``input_size``; hence ``input_size`` is required.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int), default=3
        Odd sizes only (so that "same" padding is symmetric).
    input_size : (int, int)
        Height and width of the images this layer receives.
    stride : int, default=1
    bias : bool, default=True
    constraint : nn.Module, optional
        Default ``ConvOperatorNormalize(input_size, gram_iterations)``.
    gram_iterations : int, default=6
    generator : torch.Generator, optional
        Draws the initial kernel (default: torch's global RNG).

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import LipschitzConv2d
    >>> conv = LipschitzConv2d(1, 4, 3, input_size=(8, 8))
    >>> conv(torch.randn(2, 1, 8, 8)).shape
    torch.Size([2, 4, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        *,
        input_size: tuple[int, int],
        stride: int = 1,
        bias: bool = True,
        constraint: nn.Module | None = None,
        gram_iterations: int = 6,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int(in_channels, "in_channels")
        _check_positive_int(out_channels, "out_channels")
        _check_positive_int(stride, "stride")
        kernel = _pair(kernel_size, "kernel_size")
        if any(k % 2 == 0 for k in kernel):
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel}.")
        size = _pair(input_size, "input_size")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel
        self.input_size = size
        self.stride = stride
        self.padding = (kernel[0] // 2, kernel[1] // 2)
        raw = torch.empty(out_channels, in_channels, *kernel)
        # Orthogonal reshaped kernel: a well-conditioned start for training.
        nn.init.orthogonal_(raw.view(out_channels, -1), generator=generator)
        self.weight = nn.Parameter(raw)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        if constraint is None:
            constraint = ConvOperatorNormalize(size, gram_iterations)
        self.constraint = constraint

    @property
    def output_size(self) -> tuple[int, int]:
        """Spatial size of the output for an input of ``input_size``."""
        return tuple((n - 1) // self.stride + 1 for n in self.input_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(
                f"LipschitzConv2d expects images of shape (n, {self.in_channels}, "
                f"{self.input_size[0]}, {self.input_size[1]}), got {tuple(x.shape)}."
            )
        return F.conv2d(x, self.normalized_weight(), self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"input_size={self.input_size}, stride={self.stride}, bias={self.bias is not None}"
        )


class L2NormPool2d(nn.Module):
    r"""L2-norm pooling, scaled to be 1-Lipschitz.

    Each output is the Euclidean norm of its window, a 1-Lipschitz function of
    the window. A pixel lies in at most :math:`\lceil k_h/s_h\rceil
    \lceil k_w/s_w\rceil` windows, so dividing by the square root of that count
    makes the whole map 1-Lipschitz; with non-overlapping windows (the default,
    ``stride = kernel_size``) the factor is 1. A floor of ``1e-6`` under each
    norm keeps the gradient finite on all-zero windows, and a maximum with a
    constant keeps the map 1-Lipschitz.

    Parameters
    ----------
    kernel_size : int or (int, int), default=2
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import L2NormPool2d
    >>> L2NormPool2d(2)(torch.tensor([[[[3.0, 4.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]]))
    tensor([[[[5., 1.]]]])
    """

    def __init__(
        self, kernel_size: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        overlap = 1
        for k, s in zip(self.kernel_size, self.stride, strict=True):
            overlap *= -(-k // s)
        self.scale = overlap**-0.5

    def forward(self, x: Tensor) -> Tensor:
        area = self.kernel_size[0] * self.kernel_size[1]
        sums = F.avg_pool2d(x * x, self.kernel_size, self.stride) * area
        return self.scale * sums.clamp_min(1e-12).sqrt()

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class ImageView(nn.Module):
    """View flat rows ``(n, C*H*W)`` as images ``(n, C, H, W)``; images pass through.

    An isometry, so it is 1-Lipschitz. It lets a CNN take the flat feature
    matrices that scikit-learn pipelines produce.

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import ImageView
    >>> ImageView((1, 2, 2))(torch.arange(8.0).reshape(2, 4)).shape
    torch.Size([2, 1, 2, 2])
    """

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.image_shape = check_image_shape(image_shape)

    def forward(self, x: Tensor) -> Tensor:
        size = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        if x.dim() == 2 and x.shape[1] == size:
            return x.reshape(x.shape[0], *self.image_shape)
        if x.dim() == 4 and tuple(x.shape[1:]) == self.image_shape:
            return x
        raise ValueError(
            f"Input of shape {tuple(x.shape)} does not match image_shape={self.image_shape}: "
            f"expected (n, {size}) or (n, {', '.join(map(str, self.image_shape))})."
        )

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}"


def check_image_shape(image_shape: Any) -> tuple[int, int, int]:
    """Validate a (C, H, W) image shape of positive integers and return it as a tuple."""
    try:
        shape = tuple(image_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or not all(_is_positive_int(s) for s in shape):
        raise ValueError(
            f"image_shape must be three positive integers (C, H, W), got {image_shape!r}."
        )
    return tuple(int(s) for s in shape)


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _check_positive_int(value: Any, name: str) -> None:
    if not _is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _pair(value: Any, name: str) -> tuple[int, int]:
    pair = (value, value) if not isinstance(value, tuple | list) else tuple(value)
    if len(pair) != 2 or not all(_is_positive_int(v) for v in pair):
        raise ValueError(f"{name} must be a positive integer or a pair of them, got {value!r}.")
    return int(pair[0]), int(pair[1])
