"""What each estimator adds to its exported network: labels, scores and certificates.

Each head mirrors its estimator's own methods (``predict``,
``decision_function``, ``predict_proba``, ``certified_radius``,
``predict_interval``) operation for operation, so that the float64 graph
computes the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._onnx_certificate import as_double, binary_radius, multiclass_radius
from ._onnx_graph import GraphBuilder
from .nn.float32_rounding import FLOAT32_UNIT

_UNIT = np.finfo(np.float64).eps  # as in the estimators' own bounds


@dataclass
class Head:
    """Named outputs: ``name -> (value, dtype, shape)``."""

    outputs: dict[str, tuple[str, Any, list[Any]]] = field(default_factory=dict)


def head_for(estimator: Any) -> Any:
    """The head of ``estimator``'s type; a TypeError for anything else."""
    from .classifier import LipschitzClassifier
    from .outliers import LipschitzOutlierDetector
    from .regressor import LipschitzRegressor
    from .wasserstein import WassersteinEstimator

    heads = {
        LipschitzClassifier: ClassifierHead,
        LipschitzOutlierDetector: DetectorHead,
        WassersteinEstimator: WassersteinHead,
        LipschitzRegressor: RegressorHead,
    }
    for kind, head in heads.items():
        if isinstance(estimator, kind):
            return head
    raise TypeError(
        f"to_onnx exports sklip estimators (or Pipelines ending with one), got "
        f"{type(estimator).__name__}."
    )


def _labels(graph: GraphBuilder, classes: np.ndarray, index: str) -> tuple[str, Any]:
    """``classes[index]`` as a graph value, and its dtype."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "iu":
        if classes.size and classes.max() > np.iinfo(np.int64).max:
            raise TypeError(
                "to_onnx exports integer class labels as int64; classes_ holds labels above "
                "2**63 - 1, which would wrap: encode them as strings or smaller integers."
            )
        kind = np.int64
    elif classes.dtype.kind == "f":
        kind = np.float64
    elif classes.dtype.kind == "b":
        kind = np.bool_
    elif classes.dtype.kind in "US" or all(isinstance(c, str) for c in classes):
        kind = np.str_
    else:
        raise TypeError(
            f"to_onnx exports class labels that are integers, floats, booleans or strings; "
            f"classes_ has dtype {classes.dtype}."
        )
    values = classes if kind is np.str_ else classes.astype(kind)
    table = graph.constant(values, kind, "classes")
    return graph.op("Gather", table, index, axis=0), kind


class ClassifierHead:
    """``label``, ``scores``, ``probabilities`` and ``radius`` of a classifier."""

    takes_eps = False

    @staticmethod
    def emit(graph, clf, outputs, penalty, growth, eps) -> Head:
        network, n_outputs = clf.network_, clf.network_.n_outputs
        head = Head()
        if n_outputs == 1:
            scores = graph.op("Reshape", outputs, graph.integers([-1]))
            index = graph.cast(graph.op("Greater", scores, graph.constant(0.0)), np.int64)
            zero = graph.onnx.helper.make_tensor("zero", _tensor_type(graph), [1], [0.0])
            zeros = graph.op("ConstantOfShape", graph.op("Shape", outputs), value=zero)
            class_scores = graph.op("Concat", zeros, outputs, axis=1)
            score_shape = ["N"]
        else:
            scores = class_scores = outputs
            index = graph.op("ArgMax", outputs, axis=1, keepdims=0)
            score_shape = ["N", n_outputs]
        label, kind = _labels(graph, clf.classes_, index)
        scaled = graph.op("Mul", class_scores, graph.constant(clf.temperature_))
        head.outputs["label"] = (label, kind, ["N"])
        head.outputs["scores"] = (scores, graph.dtype, score_shape)
        head.outputs["probabilities"] = (
            graph.op("Softmax", scaled, axis=1),
            graph.dtype,
            ["N", len(clf.classes_)],
        )
        if penalty is not None:
            if n_outputs == 1:
                radius = binary_radius(
                    graph, as_double(graph, outputs), penalty, network.lipschitz_constant + growth
                )
            else:
                pairwise = np.asarray(clf.pairwise_lipschitz_constant_, dtype=np.float64)
                radius = multiclass_radius(graph, as_double(graph, outputs), penalty, pairwise,
                                           growth)  # fmt: skip
            head.outputs["radius"] = (radius, np.float64, ["N"])
        return head


def _tensor_type(graph: GraphBuilder) -> int:
    types = graph.onnx.TensorProto
    return types.DOUBLE if graph.dtype == np.float64 else types.FLOAT


class _CentredHead:
    """A single potential with its threshold: outlier detectors and Wasserstein critics."""

    takes_eps = False

    @classmethod
    def emit(cls, graph, estimator, outputs, penalty, growth, eps) -> Head:
        # In float64 whatever the graph's type: the decision is then the
        # estimator's own subtraction, with its own rounding.
        decision = graph.op("Sub", as_double(graph, outputs), graph.double(estimator.offset_))
        scores = decision if graph.dtype == np.float64 else graph.cast(decision, np.float32)
        head = Head()
        head.outputs["label"] = cls.label(graph, estimator, decision)
        head.outputs["scores"] = (
            graph.op("Reshape", scores, graph.integers([-1])),
            graph.dtype,
            ["N"],
        )
        if penalty is not None:
            # The subtraction rounds by at most eps * |decision| (as in certified_radius).
            magnitude = graph.op("Abs", decision)
            rounding = graph.op("Mul", magnitude, graph.double(_UNIT))
            total = graph.op("Add", penalty, rounding)
            denominator = estimator.network_.lipschitz_constant + growth
            head.outputs["radius"] = (
                binary_radius(graph, decision, total, denominator),
                np.float64,
                ["N"],
            )
        return head


class DetectorHead(_CentredHead):
    """An outlier detector: ``label`` is +1 where ``scores >= 0``, else -1."""

    @staticmethod
    def label(graph, estimator, decision):
        inlier = graph.op("GreaterOrEqual", decision, graph.double(0.0))
        label = graph.op("Where", inlier, graph.integers([1]), graph.integers([-1]))
        return graph.op("Reshape", label, graph.integers([-1])), np.int64, ["N"]


class WassersteinHead(_CentredHead):
    """A Wasserstein critic: ``label`` is ``classes_[1]`` where ``scores > 0``."""

    @staticmethod
    def label(graph, estimator, decision):
        positive = graph.op("Greater", decision, graph.double(0.0))
        index = graph.op("Reshape", graph.cast(positive, np.int64), graph.integers([-1]))
        label, kind = _labels(graph, estimator.classes_, index)
        return label, kind, ["N"]


class RegressorHead:
    """``prediction`` and, given ``eps``, its certified bounds ``low`` and ``high``."""

    takes_eps = True

    @staticmethod
    def emit(graph, reg, outputs, penalty, growth, eps) -> Head:
        K = reg.lipschitz_target_
        mean = reg._target_mean
        n_targets = mean.shape[0]
        z = as_double(graph, outputs)
        center = graph.op("Add", graph.double(mean), graph.op("Mul", graph.double(K), z))
        single = reg._single_output
        shape = ["N"] if single else ["N", n_targets]

        def shaped(value):
            return graph.op("Reshape", value, graph.integers([-1])) if single else value

        prediction = center if graph.dtype == np.float64 else graph.cast(center, np.float32)
        head = Head({"prediction": (shaped(prediction), graph.dtype, shape)})
        if penalty is None:
            return head
        network = reg.network_
        # Each output's own bound, as predict_interval: a vector over the outputs.
        own = network.output_lipschitz_constants + growth
        reach = graph.op("Mul", eps, graph.double(own if n_targets > 1 else own[0]))
        movement = graph.op("Mul", graph.double(K), graph.op("Add", penalty, reach))
        magnitude = graph.op(
            "Add",
            graph.double(np.abs(mean)),
            graph.op("Mul", graph.double(K), graph.op(
                "Add", graph.op("Abs", z), graph.op("Div", movement, graph.double(K))
            )),
        )  # fmt: skip
        slack = graph.op(
            "Mul",
            graph.op("Add", movement, graph.op("Mul", magnitude, graph.double(4 * _UNIT))),
            graph.double(1 + 4 * _UNIT),
        )
        if graph.dtype != np.float64:
            # The prediction is this float64 value rounded to float32 at every x'.
            reach32 = graph.op("Add", graph.op("Abs", center), slack)
            slack = graph.op(
                "Mul",
                graph.op("Add", slack, graph.op("Mul", reach32, graph.double(FLOAT32_UNIT))),
                graph.double(1 + 4 * _UNIT),
            )
        head.outputs["low"] = (shaped(graph.op("Sub", center, slack)), np.float64, shape)
        head.outputs["high"] = (shaped(graph.op("Add", center, slack)), np.float64, shape)
        return head
