r"""The rounding of a frozen network evaluated in float32, against its float64 weights.

An exported float32 model (:func:`sklip.to_onnx` with ``dtype="float32"``)
computes with the frozen float64 weights rounded to float32, in float32
arithmetic. Its certificate must hold for *that* computation, so its rounding
is measured against the exact float64 network :math:`f` whose Lipschitz
bounds the estimator certifies with. Layer ``l`` with float64 weight
:math:`W` and float32 weight :math:`\hat W` maps a computed input ``z`` to

.. math::
    \|\mathrm{fl}_{32}(\hat W z + \hat b) - (W z + b)\| \le
    (\gamma_{n+1} \|\hat W\|_F + \|\hat W - W\|_F)\|z\|
    + \gamma_{n+1}\|\hat b\| + \|\hat b - b\| + 2 n \eta \sqrt m,

the rounding of :mod:`sklip.nn.frozen` with float32's unit roundoff
:math:`u = 2^{-24}` plus the exact distance between the two weights (a
float64 difference of a number and its float32 rounding is exact). A
convolution multiplies the Frobenius norms by the square root of the number
of taps reading a pixel. :math:`\eta = 2^{-126}`, float32's smallest *normal*
number, bounds one operation's error below the normal range even where the
runtime flushes subnormals to zero. The propagation through the network is
that of :class:`~sklip.nn.FrozenNetwork`, with the float64 layers' Lipschitz
bounds.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .frozen import FrozenNetwork
from .layer_rounding import LayerRounding, analyse_layer, taps_per_pixel
from .layers import L2NormPool2d
from .norms import scaled_norm

__all__ = ["FLOAT32_TINY", "FLOAT32_UNIT", "float32_rounding", "input_cast_rounding"]

FLOAT32_UNIT = 2.0**-24
FLOAT32_TINY = 2.0**-126


def float32_rounding(frozen: FrozenNetwork) -> list[LayerRounding]:
    """Per-layer rounding of ``frozen.module`` evaluated in float32 with float32 weights.

    Examples
    --------
    >>> from sklip.nn import FrozenNetwork, lipschitz_mlp
    >>> from sklip.nn.float32_rounding import float32_rounding
    >>> frozen = FrozenNetwork(lipschitz_mlp(3, (8,), 1), n_features=3)
    >>> dense = float32_rounding(frozen)[0]  # about u = 6e-8 per unit of input norm
    >>> 1e-8 < dense.relative < 1e-5
    True
    """
    rounding = []
    with torch.no_grad():
        for layer, float64, shape in zip(
            frozen.module, frozen.layer_rounding, frozen.input_shapes, strict=True
        ):
            rounded = copy.deepcopy(layer).float().double()
            own = analyse_layer(rounded, shape, FLOAT32_UNIT, FLOAT32_TINY)
            relative, absolute = _weight_rounding(layer, rounded, shape)
            rounding.append(
                LayerRounding(float64.lipschitz, own.relative + relative, own.absolute + absolute)
            )
    return rounding


def input_cast_rounding(n_features: int) -> LayerRounding:
    """Rounding a float64 row to float32: a relative ``u`` and ``eta`` per entry."""
    return LayerRounding(1.0, FLOAT32_UNIT, FLOAT32_TINY * math.sqrt(n_features))


def _weight_rounding(
    layer: nn.Module, rounded: nn.Module, shape: tuple[int, ...]
) -> tuple[float, float]:
    """``(relative, absolute)``: how far rounding the weights to float32 moves the output."""
    if isinstance(layer, nn.Linear | nn.Conv2d):
        relative = float(scaled_norm(rounded.weight - layer.weight))
        bias = 0.0 if layer.bias is None else float(scaled_norm(rounded.bias - layer.bias))
        if isinstance(layer, nn.Conv2d):
            relative *= math.sqrt(taps_per_pixel(layer, shape))
            positions = 1
            for axis in (0, 1):
                padded = shape[2 + axis] + 2 * layer.padding[axis] - layer.kernel_size[axis]
                positions *= padded // layer.stride[axis] + 1
            bias *= math.sqrt(positions)
        return relative, bias
    if isinstance(layer, L2NormPool2d):
        # The scale and the 1e-12 floor are float32 constants too.
        outputs = shape[1]
        for axis in (0, 1):
            outputs *= (shape[2 + axis] - layer.kernel_size[axis]) // layer.stride[axis] + 1
        return FLOAT32_UNIT, FLOAT32_UNIT * layer.scale * 1e-6 * math.sqrt(outputs)
    return 0.0, 0.0
