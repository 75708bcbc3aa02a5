"""The certificate inside an exported graph: rounding bounds and radii, in float64.

The same bounds as :class:`~sklip.nn.FrozenNetwork` and
:func:`~sklip.robustness.radius_from_outputs`, evaluated by the graph on the
values *it* computed. Two differences make an exported radius never larger
than the estimator's: the penalty is ``2 E + E_r`` instead of ``E + E_r`` (the
graph's outputs and the estimator's may each be ``E`` from the exact value),
and a float32 graph's bounds are those of :mod:`sklip.nn.float32_rounding`,
measured against the float64 network whose Lipschitz bounds both use. The
bounds are computed in float64 whatever the graph's dtype: a float32 norm
would round by more than the bound's safety factor covers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._onnx_graph import GraphBuilder
from .nn.bounds import SMALLEST_SUBNORMAL, UNIT_ROUNDOFF
from .nn.float32_rounding import FLOAT32_UNIT
from .nn.layer_rounding import BOUND_SAFETY


def as_double(graph: GraphBuilder, name: str) -> str:
    """``name`` in float64 (exact from float32); unchanged in a float64 graph."""
    return name if graph.dtype == np.float64 else graph.cast(name, np.float64)


def row_norms(graph: GraphBuilder, value: Any, size: int) -> str:
    """``(n, 1)`` float64: an upper bound of each row's L2 norm (``value``: a name or a pair).

    ``ReduceL2`` rounds by at most a relative ``(size + 2) u`` (raised to twice
    that here); where its squares may have underflowed or overflowed (a norm
    outside [1e-140, 1e140] in float64, [1e-15, 1e15] in float32) the bound
    ``sqrt(size) max |x_i|`` replaces it. No full-size temporary is made:
    three reductions of the values as computed.
    """
    parts = (value.low, value.high) if hasattr(value, "low") else (value,)
    squares, peaks = [], []
    for part in parts:
        flat = graph.op("Flatten", part, axis=1)
        axis = graph.integers([1])
        norm = as_double(graph, graph.op("ReduceL2", flat, axis, keepdims=1))
        squares.append(graph.op("Mul", norm, norm))
        top = graph.op("ReduceMax", flat, axis, keepdims=1)
        bottom = graph.op("Neg", graph.op("ReduceMin", flat, axis, keepdims=1))
        peaks.append(as_double(graph, graph.op("Max", top, bottom)))
    plain = squares[0] if len(parts) == 1 else graph.op("Add", *squares)
    plain = graph.op("Sqrt", plain)
    peak = peaks[0] if len(parts) == 1 else graph.op("Max", *peaks)
    unit = UNIT_ROUNDOFF if graph.dtype == np.float64 else FLOAT32_UNIT
    low, high = (1e-140, 1e140) if graph.dtype == np.float64 else (1e-15, 1e15)
    inflated = graph.op("Mul", plain, graph.double(1.0 + 2.0 * (size + 8) * unit))
    fallback = graph.op("Mul", peak, graph.double(math.sqrt(size) * (1.0 + 4.0 * UNIT_ROUNDOFF)))
    safe = graph.op(
        "And",
        graph.op("Greater", plain, graph.double(low)),
        graph.op("Less", plain, graph.double(high)),
    )
    return graph.op("Where", safe, inflated, fallback)


def rounding_penalty(
    graph: GraphBuilder,
    layer_inputs: list[Any],
    sizes: list[int],
    layers: list,
    inflated_after: list[float],
) -> str:
    """``(n, 1)``: ``2 E(x) + E_r(x)``, the part of the radius's numerator lost to rounding.

    ``layers`` are the per-layer ``(lipschitz, relative, absolute)`` records
    of the computation the graph performs (see :mod:`sklip.nn.frozen`).
    """
    error = certificate = None
    for x, size, layer, after in zip(layer_inputs, sizes, layers, inflated_after, strict=True):
        if layer.relative > 0:
            norm = row_norms(graph, x, size)
            exact = norm if error is None else graph.op("Add", norm, error)
            local = _affine(graph, norm, layer.relative, layer.absolute)
            term = graph.op("Mul", _affine(graph, exact, layer.relative, layer.absolute),
                            graph.double(after))  # fmt: skip
        else:
            local = graph.bound(layer.absolute)
            term = graph.bound(layer.absolute * after)
        carried = None if error is None else graph.op("Mul", error, graph.double(layer.lipschitz))
        error = local if carried is None else graph.op("Add", carried, local)
        certificate = term if certificate is None else graph.op("Add", certificate, term)
    twice = graph.op("Mul", error, graph.double(2.0 * BOUND_SAFETY))
    return graph.op("Add", twice, graph.op("Mul", certificate, graph.double(BOUND_SAFETY)))


def _affine(graph: GraphBuilder, x: str, scale: float, shift: float) -> str:
    return graph.op("Add", graph.op("Mul", x, graph.double(scale)), graph.bound(shift))


def binary_radius(graph: GraphBuilder, decision: str, penalty: str, denominator: float) -> str:
    """``(n,)``: ``(|d| - penalty)_+ / denominator`` for float64 decisions ``d`` of shape (n, 1)."""
    numerator = graph.op("Sub", graph.op("Abs", decision), penalty)
    return finish_radius(graph, graph.op("Div", numerator, graph.double(denominator)))


def multiclass_radius(
    graph: GraphBuilder, outputs: str, penalty: str, pairwise: np.ndarray, growth: float
) -> str:
    """``(n,)``: the smallest margin to another class over its pairwise bound."""
    k = pairwise.shape[0]
    predicted = graph.op("ArgMax", outputs, axis=1, keepdims=1)
    top = graph.op("GatherElements", outputs, predicted, axis=1)
    slack = graph.op("Mul", penalty, graph.double(math.sqrt(2.0)))
    gaps = graph.op("Sub", graph.op("Sub", top, outputs), slack)
    denominators = graph.double(pairwise + math.sqrt(2.0) * growth)
    rows = graph.op("Gather", denominators, graph.op("Squeeze", predicted, graph.integers([1])),
                    axis=0)  # fmt: skip
    ratios = graph.op("Div", gaps, rows)
    own = graph.op("Equal", graph.integers(np.arange(k)[None, :]), predicted)
    others = graph.op("Where", own, graph.double(np.inf), ratios)
    return finish_radius(graph, graph.op("ReduceMin", others, graph.integers([1]), keepdims=1))


def finish_radius(graph: GraphBuilder, radius: str) -> str:
    """``(n,)``: ``round_down``: finite positive values lowered past their rounding, else 0."""
    lowered = graph.op(
        "Sub",
        graph.op("Mul", radius, graph.double(1.0 - 8.0 * UNIT_ROUNDOFF)),
        graph.bound(4.0 * SMALLEST_SUBNORMAL),
    )
    valid = graph.op(
        "And",
        graph.op("Greater", lowered, graph.double(0.0)),
        graph.op("Less", lowered, graph.double(np.inf)),
    )
    radius = graph.op("Where", valid, lowered, graph.double(0.0))
    return graph.op("Reshape", radius, graph.integers([-1]))
