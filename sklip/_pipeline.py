"""Seeing through a Pipeline to the sklip classifier at its end.

Certificates and attacks in :mod:`sklip.robustness` work in the *raw* input
space of a Pipeline whose preprocessing is affine (scalers, PCA): its steps
compose into one map ``x -> x @ A + b``, whose exact spectral norm bounds their
Lipschitz constant and through which gradients flow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MaxAbsScaler, MinMaxScaler, StandardScaler
from sklearn.utils.validation import check_array, check_is_fitted
from torch import nn

from ._inputs import check_exactly_representable, naming
from .nn import rounding_slack
from .nn.bounds import gamma, round_down
from .nn.layer_rounding import BOUND_SAFETY


def unwrap(estimator: Any) -> tuple[Any, tuple[np.ndarray, np.ndarray] | None]:
    """(classifier, the composed affine map ``(A, b)`` of a Pipeline's steps, or None)."""
    if not isinstance(estimator, Pipeline):
        check_is_fitted(estimator, "module_")
        return estimator, None
    classifier = estimator.steps[-1][1]
    if not (hasattr(classifier, "certified_radius") or hasattr(classifier, "predict_interval")):
        raise TypeError(
            "The last step of the Pipeline must be a sklip classifier, outlier detector or "
            f"regressor, got {type(classifier).__name__}."
        )
    check_is_fitted(classifier, "module_")
    # The raw width is the first step that knows it ("passthrough" does not;
    # with only such steps before it, the classifier sees the raw features).
    widths = (getattr(step, "n_features_in_", None) for _, step in estimator.steps)
    n_features = next(width for width in widths if width is not None)
    A, b = np.eye(n_features), np.zeros(n_features)
    for _, step in estimator.steps[:-1]:
        A_step, b_step = affine_map(step, A.shape[1])
        A, b = A @ A_step, b @ A_step + b_step
    return classifier, (A, b)


def affine_map(step: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` with ``step.transform(x) == x @ A + b``, for the steps we can bound.

    A step is read only when its type is exactly the library class: a
    subclass may compute its ``transform`` differently from the fitted
    attributes read here (directly, or through a helper such as PCA's
    ``_transform``), and the radius would silently be wrong.
    """
    identity = (np.eye(n_features), np.zeros(n_features))
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return identity
    kind = type(step)
    if kind is FunctionTransformer and step.func is None:
        return identity
    if kind is StandardScaler:
        scale = step.scale_ if step.with_std else np.ones(n_features)
        mean = step.mean_ if step.with_mean else np.zeros(n_features)
        return np.diag(1.0 / scale), -mean / scale
    if kind is MinMaxScaler and not step.clip:
        return np.diag(step.scale_), step.min_
    if kind is MaxAbsScaler and not getattr(step, "clip", False):  # clip: scikit-learn >= 1.8
        return np.diag(1.0 / step.scale_), np.zeros(n_features)
    if kind is PCA and not step.whiten:
        components = step.components_.T
        return components, -step.mean_ @ components
    raise TypeError(
        f"certified_radius cannot bound the Lipschitz constant of the Pipeline step "
        f"{step!r} (type {kind.__name__}): supported are StandardScaler, MinMaxScaler "
        "(clip=False), MaxAbsScaler (clip=False), PCA(whiten=False), "
        "FunctionTransformer(func=None) and "
        "'passthrough', as those exact classes (a subclass may transform differently)."
    )


def spectral_norm(matrix: np.ndarray) -> float:
    return float(np.linalg.norm(matrix, ord=2)) if matrix.size else 0.0


def check_inputs(estimator: Any, X: Any) -> np.ndarray:
    """``X`` as a float64 array of shape (n_samples, n_features) fit for ``estimator``.

    No lossy cast: attacks and their budgets are measured on these values.
    Image batches (n, C, H, W) of a CNN classifier are flattened as the
    classifier itself does. Every problem is a ValueError or TypeError naming ``X``.
    """
    classifier, affine = unwrap(estimator)
    if affine is None:  # the classifier's own validation, whose errors name X
        return np.asarray(classifier._validate_X(X, reset=False), dtype=np.float64)
    check_exactly_representable(X)
    if not isinstance(X, np.ndarray | list | tuple):  # a DataFrame: the dtype its steps see
        dtype = naming("X", check_array, X, dtype=None, input_name="X").dtype
    else:
        dtype = np.asarray(X).dtype
    if dtype == np.float16:
        raise TypeError(
            "X has dtype float16: the Pipeline's steps would transform it in float16 "
            "(scikit-learn keeps float16), whose rounding sklip does not bound; convert "
            "it with X.astype(np.float32)."
        )
    X = naming("X", check_array, X, dtype=np.float64, input_name="X")
    if X.shape[1] != affine[0].shape[0]:
        raise ValueError(
            f"X has {X.shape[1]} features, but the Pipeline is expecting "
            f"{affine[0].shape[0]} features as input."
        )
    return X


def scoring_module(classifier: Any) -> nn.Module:
    """The classifier's frozen float64 network on ``classifier.device_``, for attacks.

    What its predictions and certificates are computed with: attacks then
    search in the precision of the inputs, against the certified weights.
    """
    return classifier.network_.module


def differentiable_scores(estimator: Any, X: Any) -> tuple[Callable, np.ndarray, Any]:
    """A float64 torch function raw inputs -> network scores, the validated float64
    inputs, and the classifier."""
    classifier, affine = unwrap(estimator)
    X = check_inputs(estimator, X)
    module = scoring_module(classifier)
    if affine is None:
        return module, X, classifier
    A, b = (torch.as_tensor(a, dtype=torch.float64, device=classifier.device_) for a in affine)
    return (lambda points: module(points @ A + b)), X, classifier


def certified_radius(estimator: Any, X: Any) -> np.ndarray:
    """Certified L2 radius of each prediction, in the input space of ``estimator``.

    For a sklip classifier this is its own ``certified_radius``. For a
    :class:`~sklearn.pipeline.Pipeline` ending with one, the radius is given in
    the pipeline's *raw* input space: the preprocessing steps must be affine
    maps ``z = x A + b`` whose Lipschitz constant ``||A||_2`` is computed
    exactly (StandardScaler, MinMaxScaler, MaxAbsScaler, PCA without whitening,
    FunctionTransformer without a function, "passthrough"), and the
    classifier's radius is divided by it: a raw perturbation ``δ`` moves the
    classifier's input by at most ``||A||_2 ||δ||``. The steps' rounding is
    subtracted (in float32 for float32 ``X``, as scikit-learn computes it):
    the radius holds for perturbed points given in ``X``'s dtype or in
    float64. float16 ``X`` and integers above 2**53 are refused.

    Parameters
    ----------
    estimator : fitted LipschitzClassifier, or Pipeline ending with one
    X : array-like of shape (n_samples, n_features)

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklip import LipschitzClassifier
    >>> from sklip.robustness import certified_radius
    >>> X = np.random.RandomState(0).normal(size=(60, 3)) * [1.0, 10.0, 100.0]
    >>> y = (X[:, 0] > 0).astype(int)
    >>> pipe = make_pipeline(StandardScaler(), LipschitzClassifier(max_epochs=5)).fit(X, y)
    >>> inner = pipe[-1].certified_radius(pipe[0].transform(X))  # standardised units
    >>> np.allclose(certified_radius(pipe, X), inner * pipe[0].scale_.min())
    True
    """
    classifier, affine = unwrap(estimator)
    if not hasattr(classifier, "certified_radius"):
        raise TypeError(
            f"certified_radius needs a sklip classifier or outlier detector, got "
            f"{type(classifier).__name__}; a regressor's certificate is predict_interval."
        )
    # Checked here so that every error names X; the user's X itself is passed
    # on (a DataFrame keeps its feature names for the fitted steps).
    check_inputs(estimator, X)
    if affine is None:
        return classifier.certified_radius(X)
    Z, error, ball_error, growth, lipschitz = _rounded_transform(estimator, X)
    radius = (classifier.certified_radius(Z) - error - ball_error) / (lipschitz + growth)
    return round_down(radius)


def _rounded_transform(
    pipeline: Pipeline, X: Any
) -> tuple[Any, np.ndarray, np.ndarray, float, float]:
    r"""The preprocessing's output ``Z`` for ``X``, and bounds of its rounding.

    The steps run one by one, as ``Pipeline.transform`` runs them. Each step
    ``k`` is an affine map :math:`A_k` computed in floating point, whose error
    at an input is at most :math:`\gamma_k M_k` (:func:`_step_rounding`), with
    :math:`M_k` a magnitude that grows by at most :math:`K_k` per unit of
    distance between inputs. The errors at ``x`` propagate through the later
    maps' norms to ``error``; at any ``x'`` within ``r`` of ``x`` they are at
    most ``ball_error + growth * r`` (the step's own error at ``x'`` appears
    on both sides of its bound: with :math:`\gamma_k \le 1/2`, a factor 2
    absorbs it). A raw perturbation of norm ``r`` then moves ``Z`` by at most
    ``lipschitz * r + error + ball_error + growth * r``: the classifier's
    certificate at ``Z``, less the constant part, divided by the rest, is the
    raw radius. Large offsets (raw features near 1e8, say) make
    ``MinMaxScaler`` and ``PCA`` cancel digits, and the radius shrinks
    accordingly.
    """
    Z = X
    n = None
    error = ball_error = None
    growth, lipschitz = 0.0, 1.0
    for _, step in pipeline.steps[:-1]:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        Z_in, Z = np.asarray(Z), step.transform(Z)
        if n is None:
            n = Z_in.shape[0]
            error, ball_error = np.zeros(n), np.zeros(n)
        gamma, magnitude, magnitude_growth, norm, shift = _step_rounding(step, Z_in, Z)
        local = gamma * magnitude + shift
        distance_in = error + ball_error  # the part of ||Z_in(x') - Z_in(x)|| not growing with r
        ball_local = 2 * gamma * (magnitude + magnitude_growth * distance_in + local + shift)
        ball_local = ball_local + shift
        ball_growth = 2 * gamma * magnitude_growth * (lipschitz + growth)
        error = norm * error + local
        ball_error = norm * ball_error + ball_local
        growth = norm * growth + ball_growth
        lipschitz *= norm
    if error is None:
        error = ball_error = np.zeros(np.shape(X)[0])
    safety = BOUND_SAFETY  # the rounding of evaluating these bounds
    return Z, error * safety, ball_error * safety, growth * safety, lipschitz * safety


def _step_rounding(
    step: Any, Z_in: np.ndarray, Z_out: Any
) -> tuple[float, Any, float, float, float]:
    """``(gamma, M(x) per row, K, ||A||, shift)`` of one supported step.

    Its error at an input is at most ``gamma * M + shift`` (see
    :func:`_rounded_transform`). scikit-learn computes StandardScaler as
    ``(x - mean) / scale``, MaxAbsScaler as ``x / scale`` (each rounds
    relatively to its result), MinMaxScaler as ``x * scale + min`` (its error
    scales with ``|x * scale|``, which cancels) and PCA as
    ``x @ C.T - mean @ C.T`` (with ``|x| @ |C.T|``). float32 data are
    transformed in float32: ``u = 2**-24``, one more rounding for the float64
    parameters, and StandardScaler first rounds ``mean`` to float32: a
    ``shift`` of ``|mean - fl32(mean)| / fl32(scale)``, the same at every
    input, which does not shrink with the output (0.06 for a feature of mean
    1e6 and spread 1).
    """
    Z = np.asarray(Z_out)
    float32 = np.float32 in (Z.dtype, Z_in.dtype)
    Z, Z_in = Z.astype(np.float64), Z_in.astype(np.float64)
    rounding, growth, norm = step_constants(step, Z_in.shape[1], float32)
    out = _row_norms(Z)
    kind = type(step)
    if kind is FunctionTransformer:
        return rounding, np.zeros(len(Z)), growth, norm, 0.0
    if kind is StandardScaler:
        return rounding, out, growth, norm, _mean_cast_shift(step) if float32 else 0.0
    if kind is MaxAbsScaler:
        return rounding, out, growth, norm, 0.0
    if kind is MinMaxScaler:
        return rounding, _row_norms(Z_in * step.scale_) + out, growth, norm, 0.0
    # PCA(whiten=False): affine_map has refused everything else
    absolute = np.abs(step.components_.T)
    magnitude = _row_norms(np.abs(Z_in) @ absolute) + _row_norms(np.abs(step.mean_) @ absolute)
    return rounding, magnitude + out, growth, norm, 0.0


def _mean_cast_shift(scaler: StandardScaler) -> float:
    """``||(mean - fl32(mean)) / fl32(scale)||``: StandardScaler's float32 centring error.

    scikit-learn subtracts ``mean_.astype(float32)`` from float32 data. The
    difference ``mean - fl32(mean)`` is exact in float64; the division and the
    norm round by a few float64 units, which the slack covers. An overflow of
    the cast gives inf: no certificate.
    """
    if not scaler.with_mean:
        return 0.0
    mean = np.asarray(scaler.mean_, dtype=np.float64)
    with np.errstate(over="ignore"):
        residual = mean - mean.astype(np.float32).astype(np.float64)
        scale = np.asarray(scaler.scale_, dtype=np.float32) if scaler.with_std else 1.0
        shift = _row_norms(np.abs(residual) / np.asarray(scale, dtype=np.float64))[0]
    return float(shift) * rounding_slack(len(mean), 4)


def step_constants(step: Any, n_features: int, float32: bool = False) -> tuple[float, float, float]:
    """``(gamma, K, ||A||)`` of one supported step: its relative rounding, the growth
    of its magnitude ``M`` per unit of input distance, and its Lipschitz bound."""
    unit = 2.0**-24 if float32 else 2.0**-53
    extra = 1 if float32 else 0
    A, _ = affine_map(step, n_features)
    norm = spectral_norm(A) * rounding_slack(*A.shape)
    kind = type(step)
    if kind is FunctionTransformer:
        return 0.0, 0.0, norm
    if kind is StandardScaler or kind is MaxAbsScaler:
        return gamma(3 + extra, unit), norm, norm
    if kind is MinMaxScaler:
        return gamma(3 + extra, unit), float(np.abs(step.scale_).max()) + norm, norm
    frobenius = float(np.linalg.norm(step.components_))
    return gamma(n_features + 3 + extra, unit), frobenius + norm, norm


def _row_norms(matrix: np.ndarray) -> np.ndarray:
    """L2 norm of each row, without underflow or overflow of the squares."""
    matrix = np.atleast_2d(matrix)
    peak = np.abs(matrix).max(axis=1)
    safe = np.where(peak > 0, peak, 1.0)
    with np.errstate(invalid="ignore"):
        return np.linalg.norm(matrix / safe[:, None], axis=1) * peak


def check_labels(classifier: Any, y: Any, n_samples: int) -> np.ndarray:
    """Indices in ``classifier.classes_`` of the labels ``y``; a ValueError naming y otherwise.

    Labels outside ``classes_`` (an unseen value, strings for integer classes)
    would make an attack aim at a meaningless class and a score count
    nothing: they are refused.
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ValueError(
            f"y must be 1-D with one label per sample of X ({n_samples}), got shape {y.shape}."
        )
    classes = classifier.classes_
    try:
        known = np.isin(y, classes)
    except TypeError:  # labels that cannot even be compared with the classes
        known = np.zeros(y.shape, dtype=bool)
    if not known.all():
        unknown = list(dict.fromkeys(y[~known].tolist()))
        shown = repr(unknown[:10])[:-1] + (", ...]" if len(unknown) > 10 else "]")
        raise ValueError(
            f"y contains labels that are not among the classifier's classes_ "
            f"{classes.tolist()!r}: {shown}."
        )
    return np.searchsorted(classes, y)
