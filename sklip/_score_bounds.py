r"""Certified bounds of an outlier detector's scores, and the certified AUROC built on them.

Within a raw perturbation of norm ``r`` of ``x``, the detector's *computed*
score (``score_samples``, as the estimator or Pipeline computes it) stays
within ``c(x) + k r`` of its value at ``x``. For the detector alone, ``k = L +
G`` and ``c`` is the rounding bound of the frozen network (the quantities of
:func:`sklip.robustness.radius_from_outputs`, whose radius is exactly where
this bound reaches the distance to the threshold). Through a Pipeline of
affine steps, the network's input moves by at most ``(L_pre + g) r + e_pre``
(see :func:`sklip._pipeline._rounded_transform`), which composes.

The certified AUROC at ``eps`` is the AUROC in which every inlier takes its
lowest certified score and every outlier its highest: the share of
(inlier, outlier) pairs whose order no perturbation of norm at most ``eps``
(of either point) can reverse. Ties count as reversed, so at ``eps = 0`` it
is at most the plain AUROC, by the pairs within rounding of each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._attacks import as_float_array
from ._pipeline import _rounded_transform, check_inputs, unwrap

_SAFETY = 1.0 + 1e-9  # the rounding of evaluating these bounds


def score_slack(estimator: Any, X: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """``(scores, c, k)``: within ``r`` of ``x`` the computed score lies in ``s ± (c + k r)``."""
    detector, affine = unwrap(estimator)
    if not hasattr(detector, "score_samples"):
        raise TypeError(
            f"certified score bounds need a sklip outlier detector, got {type(detector).__name__}."
        )
    check_inputs(estimator, X)
    per_unit = detector.lipschitz_constant_ + detector.network_.error_growth
    if affine is None:
        outputs, _, error = detector._forward(X, bounds=True)
        return outputs[:, 0], error * _SAFETY, per_unit * _SAFETY
    Z, error_pre, ball_pre, growth_pre, lipschitz_pre = _rounded_transform(estimator, X)
    outputs, _, error = detector._forward(Z, bounds=True)
    constant = error + per_unit * (error_pre + ball_pre)
    return outputs[:, 0], constant * _SAFETY, per_unit * (lipschitz_pre + growth_pre) * _SAFETY


def checked_outlier_labels(y: Any, n_samples: int) -> np.ndarray:
    """``y == 1`` for labels in {1, -1}, one per row, both present; a ValueError naming y."""
    y = np.asarray(y)
    if y.shape != (n_samples,) or not np.isin(y, (1, -1)).all():
        raise ValueError(
            f"y must hold 1 (inlier) or -1 (outlier) for each of the {n_samples} rows of X."
        )
    inlier = y == 1
    if inlier.all() or not inlier.any():
        raise ValueError("y must hold both inliers (1) and outliers (-1) for an AUROC.")
    return inlier


def certified_auroc_from_bounds(
    scores: np.ndarray, constant: np.ndarray, per_unit: float, inlier: np.ndarray, eps: np.ndarray
) -> np.ndarray:
    """The certified AUROC for each radius of ``eps`` (1-D), from :func:`score_slack`'s bounds."""
    inliers, outliers = np.flatnonzero(inlier), np.flatnonzero(~inlier)
    curve = np.empty(len(eps))
    for position, radius in enumerate(eps):
        slack = constant + per_unit * radius
        lowest = scores[inliers] - slack[inliers]
        highest = np.sort(scores[outliers] + slack[outliers])
        # For each inlier, the outliers certainly below it (strictly).
        below = np.searchsorted(highest, lowest, side="left")
        curve[position] = below.sum() / (len(inliers) * len(outliers))
    return curve


def certified_auroc(estimator: Any, X: Any, y: Any, eps: float | Any) -> float | np.ndarray:
    """AUROC under worst-case L2 perturbations of norm ``eps``, certified.

    Each inlier's score is replaced by its certified lower bound within
    ``eps`` and each outlier's by its upper bound (from the network's
    Lipschitz bound and the rounding of the computation: see
    :mod:`sklip._score_bounds`); the result is the share of (inlier, outlier)
    pairs still ranked right, ties counted as wrong. No perturbation of the
    points of norm below ``eps`` can make the detector's AUROC on ``X`` lower.

    Parameters
    ----------
    estimator : fitted LipschitzOutlierDetector, or Pipeline ending with one
        The Pipeline's steps must be affine, as for :func:`certified_radius`.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        1 for inliers, -1 for outliers (``predict``'s convention); both must occur.
    eps : float or array-like of floats
        Radius in the input space of ``estimator``; finite, non-negative.

    Returns
    -------
    float, or ndarray of the shape of ``eps``

    Examples
    --------
    >>> import numpy as np
    >>> from sklip import LipschitzOutlierDetector
    >>> from sklip.robustness import certified_auroc
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 2))
    >>> detector = LipschitzOutlierDetector(max_epochs=30, random_state=0).fit(X)
    >>> X_test = np.vstack([rng.normal(size=(50, 2)), rng.normal(size=(50, 2)) + 6.0])
    >>> y_test = np.repeat([1, -1], 50)
    >>> auroc = certified_auroc(detector, X_test, y_test, eps=[0.0, 0.5, 100.0])
    >>> bool(auroc[0] >= auroc[1] >= auroc[2] == 0.0)
    True
    """
    eps_array = as_float_array(eps, "eps")
    if not np.all(np.isfinite(eps_array)) or np.any(eps_array < 0):
        raise ValueError("eps must be finite and non-negative.")
    scores, constant, per_unit = score_slack(estimator, X)
    inlier = checked_outlier_labels(y, len(scores))
    curve = certified_auroc_from_bounds(scores, constant, per_unit, inlier, eps_array.ravel())
    return float(curve[0]) if eps_array.ndim == 0 else curve.reshape(eps_array.shape)
