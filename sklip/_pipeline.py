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
from torch import Tensor


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
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        n_features = classifier.n_features_in_
    A, b = np.eye(n_features), np.zeros(n_features)
    for _, step in estimator.steps[:-1]:
        A_step, b_step = affine_map(step, A.shape[1])
        A, b = A @ A_step, b @ A_step + b_step
    return classifier, (A, b)


def affine_map(step: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` with ``step.transform(x) == x @ A + b``, for the steps we can bound."""
    identity = (np.eye(n_features), np.zeros(n_features))
    if step is None or step == "passthrough":
        return identity
    if isinstance(step, FunctionTransformer) and step.func is None:
        return identity
    if isinstance(step, StandardScaler):
        scale = step.scale_ if step.with_std else np.ones(n_features)
        mean = step.mean_ if step.with_mean else np.zeros(n_features)
        return np.diag(1.0 / scale), -mean / scale
    if isinstance(step, MinMaxScaler) and not step.clip:
        return np.diag(step.scale_), step.min_
    if isinstance(step, MaxAbsScaler):
        return np.diag(1.0 / step.scale_), np.zeros(n_features)
    if isinstance(step, PCA) and not step.whiten:
        components = step.components_.T
        return components, -step.mean_ @ components
    raise TypeError(
        f"certified_radius cannot bound the Lipschitz constant of the Pipeline step "
        f"{step!r}: supported are StandardScaler, MinMaxScaler (clip=False), "
        "MaxAbsScaler, PCA(whiten=False), FunctionTransformer(func=None) and 'passthrough'."
    )


def spectral_norm(matrix: np.ndarray) -> float:
    return float(np.linalg.norm(matrix, ord=2)) if matrix.size else 0.0


def differentiable_scores(estimator: Any, X: Any) -> tuple[Callable, Tensor, Any]:
    """A torch function raw inputs -> network scores, the inputs, and the classifier."""
    classifier, affine = unwrap(estimator)
    module = classifier.network_.module
    device = classifier.device_
    if affine is None:
        x0 = torch.as_tensor(classifier._validate_X(X, reset=False), device=device)
        return module, x0, classifier
    X = check_array(X, dtype=np.float64)
    A, b = (torch.as_tensor(a, dtype=torch.float64, device=device) for a in affine)
    return (lambda points: module(points @ A + b)), torch.as_tensor(X, device=device), classifier
