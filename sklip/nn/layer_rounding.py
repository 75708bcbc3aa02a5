r"""The rounding of one layer, and how the rounding of each layer reaches the output.

For a layer computed in floating point (unit roundoff ``u``, largest error
``eta`` of one operation below the normal range), :func:`analyse_layer` gives
its Lipschitz bound ``L`` and coefficients ``c``, ``d`` with
``||computed - exact|| <= c ||z|| + d`` for a computed input ``z``;
:func:`propagation` combines them along the network. The derivation is in
:mod:`sklip.nn.frozen`, which applies them to float64 evaluation, and
:mod:`sklip.nn.float32_rounding` to float32 evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from .bounds import EXACT_LAYERS, SMALLEST_SUBNORMAL, UNIT_ROUNDOFF, _single_layer_bound, gamma
from .layers import L2NormPool2d
from .norms import scaled_norm

__all__ = ["BOUND_SAFETY", "LayerRounding", "analyse_layer", "propagation", "taps_per_pixel"]

BOUND_SAFETY = 1.0 + 1e-9  # covers the rounding of evaluating the error bound


@dataclass(frozen=True)
class LayerRounding:
    """What the error analysis needs of one layer: ``||rounding|| <= relative ||z|| + absolute``."""

    lipschitz: float
    relative: float = 0.0
    absolute: float = 0.0


def propagation(layers: list[LayerRounding]) -> tuple[list[float], float]:
    r"""``(Q~_l for each layer, G)``: how each layer's rounding reaches the output.

    :math:`\tilde Q_l = \prod_{m > l} (L_m + c_m)` and :math:`G = \sum_l c_l
    P_{l-1} \tilde Q_l` (see :mod:`sklip.nn.frozen`), ``G`` raised by the
    safety factor.
    """
    inflated_after = [
        math.prod(after.lipschitz + after.relative for after in layers[index + 1 :])
        for index in range(len(layers))
    ]
    growth, before = 0.0, 1.0
    for layer, after in zip(layers, inflated_after, strict=True):
        growth += layer.relative * before * after
        before *= layer.lipschitz
    return inflated_after, growth * BOUND_SAFETY


def analyse_layer(
    layer: nn.Module,
    shape: tuple[int, ...],
    unit: float = UNIT_ROUNDOFF,
    tiny: float = SMALLEST_SUBNORMAL,
) -> LayerRounding:
    """Lipschitz bound and rounding coefficients of one plain layer.

    ``unit`` is the unit roundoff of the arithmetic and ``tiny`` the largest
    absolute error of one operation below its normal range (float64 by
    default; :mod:`sklip.nn.float32_rounding` passes float32's).
    """
    if isinstance(layer, nn.Linear):
        n = layer.in_features
        rounding = gamma(n + 1, unit)
        bias = 0.0 if layer.bias is None else float(scaled_norm(layer.bias))
        return LayerRounding(
            _single_layer_bound(layer, [None]),
            rounding * float(scaled_norm(layer.weight)),
            rounding * bias + 2 * n * tiny * math.sqrt(layer.out_features),
        )
    if isinstance(layer, nn.Conv2d):
        return _analyse_conv(layer, shape, unit, tiny)
    if isinstance(layer, L2NormPool2d):
        return _analyse_pool(layer, shape, unit, tiny)
    if isinstance(layer, EXACT_LAYERS):
        return LayerRounding(1.0)
    raise TypeError(
        f"No rounding analysis is known for layer {layer.__class__.__name__}; a frozen "
        "network holds dense and convolution layers, sorting activations, ReLU, "
        "L2-norm pooling and reshapes."
    )


def _analyse_conv(
    conv: nn.Conv2d, shape: tuple[int, ...], unit: float, tiny: float
) -> LayerRounding:
    k_h, k_w = conv.kernel_size
    s_h, s_w = conv.stride
    n = conv.in_channels * k_h * k_w
    rounding = gamma(n + 1, unit)
    out_h = (shape[2] + 2 * conv.padding[0] - k_h) // s_h + 1
    out_w = (shape[3] + 2 * conv.padding[1] - k_w) // s_w + 1
    positions = out_h * out_w
    relative = rounding * float(scaled_norm(conv.weight)) * math.sqrt(taps_per_pixel(conv, shape))
    bias = 0.0 if conv.bias is None else float(scaled_norm(conv.bias))
    absolute = rounding * bias * math.sqrt(positions)
    absolute += 2 * n * tiny * math.sqrt(conv.out_channels * positions)
    return LayerRounding(_single_layer_bound(conv, [tuple(shape[2:])]), relative, absolute)


def taps_per_pixel(conv: nn.Conv2d, shape: tuple[int, ...]) -> int:
    """Most (output, tap) pairs of ``conv`` that read one pixel of an input of ``shape``.

    ``|| |K| * |z| || <= ||K||_F sqrt(taps per pixel) ||z||``: at most
    ``ceil(k/s)`` per axis with zero padding, more when circular padding
    wraps a tap onto a pixel twice.
    """
    circular = conv.padding_mode == "circular"
    taps = 1
    for axis in (0, 1):
        size, kernel = shape[2 + axis], conv.kernel_size[axis]
        stride, padding = conv.stride[axis], conv.padding[axis]
        outputs = (size + 2 * padding - kernel) // stride + 1
        taps *= _taps_per_pixel(size, kernel, stride, padding, outputs, circular)
    return taps


def _taps_per_pixel(size: int, kernel: int, stride: int, padding: int, outputs: int,
                    circular: bool) -> int:  # fmt: skip
    """Most (output, tap) pairs that read one pixel along an axis, counted exactly."""
    counts = [0] * size
    for output in range(outputs):
        for tap in range(kernel):
            pixel = output * stride + tap - padding
            if circular:
                counts[pixel % size] += 1
            elif 0 <= pixel < size:
                counts[pixel] += 1
    return max(counts)


def _analyse_pool(
    pool: L2NormPool2d, shape: tuple[int, ...], unit: float, tiny: float
) -> LayerRounding:
    """``scale * sqrt(max(sum of squares, 1e-12))`` per window, in float64.

    The sum of ``a`` squares, the average pooling's division and product by
    ``a``, the square root and the scale round to a relative
    :math:`\\gamma_{2a+6}` of each output; underflow in the squares adds at
    most ``a * eta`` under a square root whose slope is at most ``5e5`` above
    the ``1e-12`` floor. Outputs are at most ``||z|| + scale * 1e-6`` in norm.
    """
    area = pool.kernel_size[0] * pool.kernel_size[1]
    out_h = (shape[2] - pool.kernel_size[0]) // pool.stride[0] + 1
    out_w = (shape[3] - pool.kernel_size[1]) // pool.stride[1] + 1
    outputs = shape[1] * out_h * out_w
    rounding = gamma(2 * area + 6, unit)
    floor = pool.scale * 1e-6 * math.sqrt(outputs)
    underflow = area * tiny * 5e5 * pool.scale * math.sqrt(outputs)
    return LayerRounding(1.0, rounding, rounding * floor + underflow)
