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


def unwrap(estimator: Any) -> tuple[Any, tuple[np.ndarray, np.ndarray] | None]:
    """(classifier, the composed affine map ``(A, b)`` of a Pipeline's steps, or None)."""
    if not isinstance(estimator, Pipeline):
        check_is_fitted(estimator, "module_")
        return estimator, None
    classifier = estimator.steps[-1][1]
    if not hasattr(classifier, "certified_radius"):
        raise TypeError(
            f"The last step of the Pipeline must be a sklip classifier, got "
            f"{type(classifier).__name__}."
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
    if kind is MaxAbsScaler:
        return np.diag(1.0 / step.scale_), np.zeros(n_features)
    if kind is PCA and not step.whiten:
        components = step.components_.T
        return components, -step.mean_ @ components
    raise TypeError(
        f"certified_radius cannot bound the Lipschitz constant of the Pipeline step "
        f"{step!r} (type {kind.__name__}): supported are StandardScaler, MinMaxScaler "
        "(clip=False), MaxAbsScaler, PCA(whiten=False), FunctionTransformer(func=None) and "
        "'passthrough', as those exact classes (a subclass may transform differently)."
    )


def spectral_norm(matrix: np.ndarray) -> float:
    return float(np.linalg.norm(matrix, ord=2)) if matrix.size else 0.0


def check_inputs(estimator: Any, X: Any) -> np.ndarray:
    """``X`` as a float64 array of shape (n_samples, n_features) fit for ``estimator``.

    No lossy cast: attacks and their budgets are measured on these values.
    Image batches (n, C, H, W) of a CNN classifier are flattened as the
    classifier itself does. Every problem is a ValueError that names ``X``.
    """
    classifier, affine = unwrap(estimator)
    try:
        if affine is not None:
            X = check_array(X, dtype=np.float64, input_name="X")
            if X.shape[1] != affine[0].shape[0]:
                raise ValueError(
                    f"X has {X.shape[1]} features, but the Pipeline is expecting "
                    f"{affine[0].shape[0]} features as input."
                )
            return X
        return np.asarray(classifier._validate_X(X, reset=False), dtype=np.float64)
    except ValueError as error:
        if str(error).startswith("X "):
            raise
        raise ValueError(f"X must be a non-empty 2-D array of finite numbers: {error}") from error


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
    classifier's input by at most ``||A||_2 ||δ||``.

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
    # Checked here so that every error names X; the user's X itself is passed
    # on (a DataFrame keeps its feature names for the fitted steps).
    check_inputs(estimator, X)
    if affine is None:
        return classifier.certified_radius(X)
    Z = estimator[:-1].transform(X)
    return classifier.certified_radius(Z) / spectral_norm(affine[0])

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
