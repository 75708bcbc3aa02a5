"""A Pipeline's affine preprocessing as float64 ONNX operations, with their rounding bounded.

Each step is written as scikit-learn computes it (so that the float64 graph
transforms as ``Pipeline.transform`` does), and the rounding bounds of
:func:`sklip._pipeline._rounded_transform` are evaluated in the graph on the
values it computed: the radius of the network is then carried to the raw
input space exactly as :func:`sklip.robustness.certified_radius` carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MaxAbsScaler, MinMaxScaler, StandardScaler

from ._onnx_certificate import finish_radius, row_norms
from ._onnx_graph import GraphBuilder
from ._pipeline import step_constants, unwrap
from .nn.layer_rounding import BOUND_SAFETY


@dataclass
class Preprocessing:
    """The preprocessing's float64 output and the bounds of its rounding (per row, (n, 1))."""

    output: str
    n_features: int
    n_inner: int
    error: str | None
    ball_error: str | None
    growth: float
    lipschitz: float

    def _constant_part(self, graph: GraphBuilder) -> str | None:
        """``2 e + e_ball``: the error may be at ``x`` in the estimator's run and in ours."""
        if self.error is None:
            return None
        twice = graph.op("Mul", self.error, graph.double(2.0 * BOUND_SAFETY))
        return graph.op("Add", twice, graph.op("Mul", self.ball_error, graph.double(BOUND_SAFETY)))

    def raw_radius(self, graph: GraphBuilder, radius: str) -> str:
        """``(r - 2 e - e_ball) / (||A|| + g)``: an inner radius carried to the raw space."""
        radius = graph.op("Reshape", radius, graph.integers([-1, 1]))
        constant = self._constant_part(graph)
        if constant is not None:
            radius = graph.op("Sub", radius, constant)
        denominator = graph.double((self.lipschitz + self.growth) * BOUND_SAFETY)
        return finish_radius(graph, graph.op("Div", radius, denominator))

    def inner_radius(self, graph: GraphBuilder, eps: str) -> str:
        """``((||A|| + g) eps + 2 e + e_ball) (1 + 1e-9)``: a raw ball's reach inside."""
        reach = graph.op("Mul", eps, graph.double((self.lipschitz + self.growth) * BOUND_SAFETY))
        constant = self._constant_part(graph)
        if constant is not None:
            reach = graph.op("Add", reach, constant)
        return graph.op("Mul", reach, graph.double(BOUND_SAFETY))


def emit_preprocessing(graph: GraphBuilder, pipeline: Pipeline, x: str) -> Preprocessing:
    """The steps before the last, applied in float64 to the graph's input ``x``."""
    _, affine = unwrap(pipeline)  # refuses the steps no bound is known for
    n_features = affine[0].shape[0]
    z = x if graph.dtype == np.float64 else graph.cast(x, np.float64)
    state = Preprocessing(z, n_features, n_features, None, None, 0.0, 1.0)
    for _, step in pipeline.steps[:-1]:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        state = _emit_step(graph, step, state)
    return state


def _emit_step(graph: GraphBuilder, step: Any, state: Preprocessing) -> Preprocessing:
    z_in, n_in = state.output, state.n_inner
    rounding, magnitude_growth, norm = step_constants(step, n_in)
    n_out = step.components_.shape[0] if type(step) is PCA else n_in
    z, magnitude = _transform(graph, step, z_in, n_out)
    if magnitude is None:  # exact (FunctionTransformer without a function)
        return Preprocessing(z, state.n_features, n_out, state.error, state.ball_error,
                             norm * state.growth, state.lipschitz * norm)  # fmt: skip
    local = graph.op("Mul", magnitude, graph.double(rounding))
    if state.error is None:
        distance_in = None
        error, ball_error = local, None
    else:
        distance_in = graph.op("Add", state.error, state.ball_error)
        error = graph.op("Add", graph.op("Mul", state.error, graph.double(norm)), local)
    spread = magnitude if distance_in is None else graph.op(
        "Add", magnitude, graph.op("Mul", distance_in, graph.double(magnitude_growth))
    )  # fmt: skip
    ball_local = graph.op("Mul", graph.op("Add", spread, local), graph.double(2 * rounding))
    if state.ball_error is None:
        ball_error = ball_local
    else:
        carried = graph.op("Mul", state.ball_error, graph.double(norm))
        ball_error = graph.op("Add", carried, ball_local)
    ball_growth = 2 * rounding * magnitude_growth * (state.lipschitz + state.growth)
    growth = norm * state.growth + ball_growth
    return Preprocessing(z, state.n_features, n_out, error, ball_error, growth,
                         state.lipschitz * norm)  # fmt: skip


def _transform(graph: GraphBuilder, step: Any, z: str, n_out: int) -> tuple[str, str | None]:
    """The step's output, as scikit-learn computes it, and the magnitude ``M`` of its rounding."""
    kind = type(step)
    if kind is FunctionTransformer:
        return z, None
    if kind is StandardScaler:
        out = z
        if step.with_mean:
            out = graph.op("Sub", out, graph.double(step.mean_))
        if step.with_std:
            out = graph.op("Div", out, graph.double(step.scale_))
        return out, row_norms(graph, out, n_out)
    if kind is MaxAbsScaler:
        out = graph.op("Div", z, graph.double(step.scale_))
        return out, row_norms(graph, out, n_out)
    if kind is MinMaxScaler:
        scaled = graph.op("Mul", z, graph.double(step.scale_))
        out = graph.op("Add", scaled, graph.double(step.min_))
        return out, graph.op("Add", row_norms(graph, scaled, n_out), row_norms(graph, out, n_out))
    # PCA(whiten=False), the only other kind unwrap accepts
    components = np.asarray(step.components_, dtype=np.float64).T
    offset = step.mean_ @ components
    out = graph.op("Sub", graph.op("MatMul", z, graph.double(components)), graph.double(offset))
    absolute = graph.double(np.abs(components))
    products = graph.op("MatMul", graph.op("Abs", z), absolute)
    constant = float(np.linalg.norm(np.abs(step.mean_) @ np.abs(components)))
    magnitude = graph.op("Add", row_norms(graph, products, n_out), graph.double(constant))
    return out, graph.op("Add", magnitude, row_norms(graph, out, n_out))
