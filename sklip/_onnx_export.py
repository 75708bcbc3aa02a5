"""Exporting a fitted sklip estimator (or a Pipeline ending with one) to ONNX.

The graph computes what the estimator computes (its frozen float64 weights,
or those weights rounded to float32) and, with ``with_radius``, the
certificate of that very computation; see :mod:`sklip._onnx_certificate`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from . import __version__
from ._onnx_certificate import rounding_penalty
from ._onnx_graph import GraphBuilder
from ._onnx_heads import Head, head_for
from ._onnx_network import emit_network
from ._onnx_pipeline import emit_preprocessing
from .nn.float32_rounding import float32_rounding, input_cast_rounding
from .nn.layer_rounding import propagation

_DTYPES = {"float64": np.float64, "float32": np.float32}


def to_onnx(
    estimator: Any,
    path: str | os.PathLike | None = None,
    *,
    dtype: str = "float64",
    with_radius: bool = True,
) -> Any:
    """Export a fitted sklip estimator, or a Pipeline ending with one, to ONNX.

    The graph takes flat rows ``X`` of shape ``(n, n_features)`` in ``dtype``
    and returns, by name:

    * classifiers: ``label``, ``scores`` (``decision_function``),
      ``probabilities`` and, with ``with_radius``, ``radius``;
    * outlier detectors: ``label`` (+1 / -1), ``scores``
      (``decision_function``) and ``radius``;
    * Wasserstein estimators: ``label`` (the nearer set), ``scores`` (the
      centred potential) and ``radius`` (no change of ``label`` within it);
    * regressors: ``prediction`` and, with ``with_radius``, ``low`` and
      ``high``: the graph then takes a second input ``eps`` (float64, one
      radius per row or one for all) and bounds its own ``prediction`` over
      the L2 ball of that radius, as ``predict_interval`` does.

    The float64 graph holds the estimator's frozen weights: its labels are
    ``predict``'s and its scores agree to rounding. The float32 graph rounds
    the weights and computes in float32 (radii, bounds and the decisions of
    detectors and Wasserstein estimators are computed in float64 from its
    float32 outputs). Either way the radius is a certificate of the graph's
    own computation: it subtracts a proven bound of that computation's
    rounding, measured against the float64 network (see the user guide's
    "Deploying a model"), and is never larger than the estimator's
    ``certified_radius`` (a Pipeline's on float64 rows: the graph scales in
    float64). The bound assumes IEEE arithmetic in any summation
    order, with or without fused multiply-adds (a float32 graph's also with
    subnormals flushed to zero): not a runtime's reduced-precision modes
    (TF32, bfloat16 GEMMs).

    Parameters
    ----------
    estimator : fitted sklip estimator, or Pipeline
        A Pipeline's steps before the last must be affine maps
        :func:`sklip.robustness.certified_radius` can bound (scalers, PCA);
        they are exported as float64 operations and the radius (``eps``) is
        in the raw input space.
    path : str or path-like, optional
        Where to write the model.
    dtype : {"float64", "float32"}, default="float64"
        Type of the input, of the network's weights and arithmetic, and of
        ``scores``/``prediction``.
    with_radius : bool, default=True
        Add the certificate outputs.

    Returns
    -------
    onnx.ModelProto

    Examples
    --------
    >>> from sklearn.datasets import make_moons
    >>> from sklip import LipschitzClassifier, to_onnx
    >>> X, y = make_moons(100, noise=0.1, random_state=0)
    >>> clf = LipschitzClassifier(hidden_layer_sizes=(16,), max_epochs=5, random_state=0)
    >>> model = to_onnx(clf.fit(X, y))
    >>> [output.name for output in model.graph.output]
    ['label', 'scores', 'probabilities', 'radius']
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}.")
    if not isinstance(with_radius, bool | np.bool_):
        raise TypeError(f"with_radius must be True or False, got {with_radius!r}.")
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    head_type = head_for(final)  # a TypeError for what sklip cannot export
    check_is_fitted(final, "network_")
    graph = GraphBuilder(_DTYPES[dtype])
    preprocessing = None
    features, n_features = "X", final.network_.input_shapes[0][1]
    if isinstance(estimator, Pipeline):
        preprocessing = emit_preprocessing(graph, estimator, "X")
        features, n_features = preprocessing.output, preprocessing.n_features
        if graph.dtype != np.float64:
            features = graph.cast(features, np.float32)
    network = final.network_
    outputs, layer_inputs = emit_network(graph, network.module, network.input_shapes, features)
    penalty, growth = None, None
    if with_radius:
        penalty, growth = _penalty(graph, network, layer_inputs, preprocessing)
    eps = None
    if with_radius and head_type.takes_eps:
        eps = graph.op("Reshape", "eps", graph.integers([-1, 1]))
        # A negative (or NaN) eps bounds nothing: NaN bounds, not low > high.
        valid = graph.op("GreaterOrEqual", eps, graph.double(0.0))
        eps = graph.op("Where", valid, eps, graph.double(float("nan")))
        if preprocessing is not None:
            eps = preprocessing.inner_radius(graph, eps)
    head = head_type.emit(graph, final, outputs, penalty, growth, eps)
    if preprocessing is not None and "radius" in head.outputs:
        value, kind, shape = head.outputs["radius"]
        head.outputs["radius"] = (preprocessing.raw_radius(graph, value), kind, shape)
    model = _model(graph, head, n_features, eps is not None, final, dtype)
    if path is not None:
        graph.onnx.save_model(model, os.fspath(path))
    return model


def _penalty(
    graph: GraphBuilder, network: Any, layer_inputs: list[str], preprocessing: Any
) -> tuple[str, float]:
    """The rounding penalty ``2 E + E_r`` (n, 1) of the graph's computation, and its ``G``."""
    sizes = [math.prod(shape[1:]) for shape in network.input_shapes]
    if graph.dtype == np.float64:
        layers = network.layer_rounding
    else:
        layers = float32_rounding(network)
        if preprocessing is not None:  # the float64 features are rounded to float32
            layers.insert(0, input_cast_rounding(preprocessing.n_inner))
            layer_inputs = [preprocessing.output, *layer_inputs]
            sizes = [preprocessing.n_inner, *sizes]
    inflated_after, growth = propagation(layers)
    return rounding_penalty(graph, layer_inputs, sizes, layers, inflated_after), growth


def _model(
    graph: GraphBuilder, head: Head, n_features: int, takes_eps: bool, final: Any, dtype: str
) -> Any:
    inputs = [("X", graph.dtype, ["N", n_features])]
    if takes_eps:
        inputs.append(("eps", np.float64, ["n_eps"]))
    outputs = []
    for name, (value, kind, shape) in head.outputs.items():
        graph.output(value, name)
        outputs.append((name, kind, shape))
    metadata = {
        "producer": f"sklip {__version__}",
        "estimator": type(final).__name__,
        "dtype": dtype,
        "outputs": ",".join(head.outputs),
        "certificate": (
            "radius/low/high hold for this graph's own computation, its rounding "
            "included (sklip user guide, Deploying a model)"
        ),
    }
    return graph.model(inputs, outputs, metadata)
