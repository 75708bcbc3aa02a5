"""A regressor's certified bounds in the raw input space of a Pipeline, and a K-capped scorer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import r2_score

from ._attacks import check_real, radius_per_row
from ._pipeline import _rounded_transform, check_inputs, unwrap


def predict_interval(estimator: Any, X: Any, eps: float | Any) -> tuple[np.ndarray, np.ndarray]:
    """Certified bounds of ``predict(x')`` over the L2 ball of radius ``eps`` around each row.

    For a :class:`~sklip.LipschitzRegressor` this is its own
    ``predict_interval``. For a Pipeline ending with one, ``eps`` is in the
    pipeline's *raw* input space: the affine steps (those
    :func:`sklip.robustness.certified_radius` accepts) move the regressor's
    input by at most ``(||A|| + g) eps + e``, their norm plus the proven
    bounds of their own rounding, and the regressor's interval is taken over
    that ball.

    Parameters
    ----------
    estimator : fitted LipschitzRegressor, or Pipeline ending with one
    X : array-like of shape (n_samples, n_features)
    eps : float or array-like of shape (n_samples,)
        Radius in the input space of ``estimator``; finite and non-negative.

    Returns
    -------
    low, high : ndarrays of the shape of ``estimator.predict(X)``

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklip import LipschitzRegressor
    >>> from sklip.robustness import predict_interval
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 2)) * [1.0, 100.0]
    >>> pipe = make_pipeline(StandardScaler(), LipschitzRegressor(max_epochs=5, random_state=0))
    >>> pipe = pipe.fit(X, X[:, 0])
    >>> low, high = predict_interval(pipe, X[:3], eps=0.5)  # eps in raw units
    >>> bool(np.all((low <= pipe.predict(X[:3])) & (pipe.predict(X[:3]) <= high)))
    True
    """
    regressor, affine = unwrap(estimator)
    if not hasattr(regressor, "predict_interval"):
        raise TypeError(
            f"predict_interval needs a sklip regressor, got {type(regressor).__name__}."
        )
    eps = radius_per_row(eps, check_inputs(estimator, X).shape[0])
    if affine is None:
        return regressor.predict_interval(X, eps)
    Z, error, ball_error, growth, lipschitz = _rounded_transform(estimator, X)
    inner = (lipschitz + growth) * eps + error + ball_error
    return regressor.predict_interval(Z, inner * (1 + 1e-9))


def make_lipschitz_capped_scorer(max_lipschitz: float) -> Callable[[Any, Any, Any], float]:
    """A scorer: R² where the certified constant is at most ``max_lipschitz``, else -inf.

    The constant is the fitted model's ``lipschitz_constant_`` carried to the
    raw input space of a Pipeline (divided by the smallest scale of its
    affine steps: their norm ``||A||`` multiplies it). ``GridSearchCV(...,
    scoring=make_lipschitz_capped_scorer(2.0))`` then picks the most accurate
    model among those whose outputs provably move at most 2 per unit of
    input.

    Examples
    --------
    >>> from sklip.robustness import make_lipschitz_capped_scorer
    >>> make_lipschitz_capped_scorer(2.0).max_lipschitz
    2.0
    """
    check_real(max_lipschitz, "max_lipschitz", allow_zero=False)

    def lipschitz_capped_r2(estimator: Any, X: Any, y: Any) -> float:
        regressor, affine = unwrap(estimator)
        norm = 1.0 if affine is None else float(np.linalg.norm(affine[0], ord=2))
        if regressor.lipschitz_constant_ * norm > max_lipschitz:
            return -np.inf
        return float(r2_score(y, estimator.predict(X)))

    lipschitz_capped_r2.max_lipschitz = max_lipschitz
    return lipschitz_capped_r2
