"""Certificates and the attacks that try to beat them.

The estimators' ``certified_radius`` is the single source of certificates; this
module carries them to where users need them:

* :func:`certified_radius` in the *raw* input space of a Pipeline whose
  preprocessing steps are linear (scalers, PCA), by bounding their Lipschitz
  constant exactly;
* :func:`certified_accuracy` and :func:`make_certified_scorer`, to report and to
  select models (``GridSearchCV(scoring=...)``) by what they prove;
* :func:`certified_auroc`, the AUROC of an outlier detector that no
  perturbation below ``eps`` can lower;
* :func:`predict_interval` and :func:`make_lipschitz_capped_scorer` for
  regressors: certified output bounds in a Pipeline's raw space, and model
  selection under a cap on the certified slope;
* :func:`pgd_attack` and :func:`counterfactual`, which search for the smallest
  perturbations that change a prediction. No success may come in under a
  certificate; the counterfactuals also show how tight the certificates are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._attacks import as_float_array, check_real, counterfactual, pgd_attack
from ._display import CertifiedAccuracyDisplay, CertifiedAUROCDisplay
from ._pipeline import certified_radius, check_inputs, check_labels, unwrap
from ._regression_bounds import make_lipschitz_capped_scorer, predict_interval
from ._score_bounds import certified_auroc
from .nn.bounds import round_down

__all__ = [
    "CertifiedAUROCDisplay",
    "CertifiedAccuracyDisplay",
    "certified_accuracy",
    "certified_accuracy_curve",
    "certified_auroc",
    "certified_radius",
    "counterfactual",
    "make_certified_scorer",
    "make_lipschitz_capped_scorer",
    "pgd_attack",
    "predict_interval",
    "radius_from_outputs",
]


def radius_from_outputs(
    outputs: np.ndarray,
    lipschitz_constant: float,
    pairwise: np.ndarray | None = None,
    *,
    error: np.ndarray | None = None,
    error_growth: float = 0.0,
) -> np.ndarray:
    r"""Certified L2 radius of each prediction from a network's outputs and bounds.

    With exact arithmetic (``error`` None): one output, :math:`|f(x)| / L`;
    ``K`` outputs, predicted class ``c``, :math:`\min_{j \ne c} (f_c(x) -
    f_j(x)) / L_{cj}` with ``pairwise`` the ``(K, K)`` bounds of
    :func:`sklip.nn.pairwise_lipschitz_bound`.

    With the rounding of the computation that produced ``outputs`` (the
    estimators pass their frozen network's bounds, see
    :class:`sklip.nn.FrozenNetwork`): if every computed output lies within
    ``e + G r`` of the exact one, for any input within ``r`` of ``x``, with
    ``e = error(x)`` and ``G = error_growth``, then the *computed* prediction
    cannot change within

    .. math::
        r(x) = \frac{(|z(x)| - e)_+}{L + G}, \qquad
        r(x) = \min_{j \ne c} \frac{(z_c(x) - z_j(x) - \sqrt 2\, e)_+}
                                   {L_{cj} + \sqrt 2\, G}

    (a difference of two outputs is within :math:`\sqrt 2` times the error of
    the output vector). A point within rounding of the boundary gets 0, and so
    does a point whose outputs or error are not finite. The result is lowered
    by a relative ``8 u`` (and 4 subnormal steps) for the rounding of this
    formula itself.

    Parameters
    ----------
    outputs : ndarray of shape (n_samples, n_outputs)
    lipschitz_constant : float
        Bound of the whole network (used with one output); positive and finite.
    pairwise : ndarray of shape (n_outputs, n_outputs), optional
        Needed with several outputs; finite, non-negative.
    error : ndarray of shape (n_samples,), optional
        Bound of the rounding at ``x`` and around it (``certificate_error`` of
        :class:`sklip.nn.FrozenOutputs`); None for exact arithmetic.
    error_growth : float, default=0.0
        Growth ``G`` of the rounding bound per unit of distance.

    Returns
    -------
    ndarray of shape (n_samples,)
        Finite, non-negative radii.

    Examples
    --------
    >>> import numpy as np
    >>> from sklip.robustness import radius_from_outputs
    >>> radius_from_outputs(np.array([[2.0], [-0.5]]), lipschitz_constant=2.0)
    array([1.  , 0.25])
    >>> pairwise = np.full((3, 3), 2.0)  # bounds of f_c - f_j
    >>> radius_from_outputs(np.array([[3.0, 1.0, 0.0]]), 1.0, pairwise)  # min(2/2, 3/2)
    array([1.])
    >>> radius_from_outputs(np.array([[1e-17]]), 1.0, error=np.array([1e-16]))  # rounding
    array([0.])
    """
    check_real(lipschitz_constant, "lipschitz_constant", allow_zero=False)
    check_real(error_growth, "error_growth", allow_zero=True)
    outputs = as_float_array(outputs, "outputs")
    if outputs.ndim != 2 or outputs.shape[1] < 1:
        raise ValueError(f"outputs must be 2-D (n_samples, n_outputs), got shape {outputs.shape}.")
    n = outputs.shape[0]
    slack = np.zeros(n) if error is None else np.asarray(error, dtype=np.float64)
    if slack.shape != (n,) or np.any(slack < 0):
        raise ValueError(f"error must be {n} non-negative values, one per row of outputs.")
    with np.errstate(invalid="ignore", over="ignore"):
        if outputs.shape[1] == 1:
            radius = (np.abs(outputs[:, 0]) - slack) / (lipschitz_constant + error_growth)
        else:
            radius = _multiclass_radius(outputs, pairwise, slack, error_growth)
    return round_down(radius)


def _multiclass_radius(
    outputs: np.ndarray, pairwise: Any, slack: np.ndarray, error_growth: float
) -> np.ndarray:
    """The multiclass case of :func:`radius_from_outputs` (before clipping at 0)."""
    k = outputs.shape[1]
    if pairwise is None:
        raise ValueError("pairwise bounds are needed for a network with several outputs.")
    pairwise = np.asarray(pairwise, dtype=np.float64)
    off_diagonal = ~np.eye(k, dtype=bool) if pairwise.shape == (k, k) else None
    if off_diagonal is None or not np.all(np.isfinite(pairwise)) or np.any(pairwise < 0):
        raise ValueError(f"pairwise must be a finite, non-negative ({k}, {k}) array.")
    denominators = pairwise + np.sqrt(2.0) * error_growth
    if np.any(denominators[off_diagonal] <= 0):
        raise ValueError(
            "pairwise has a zero bound off the diagonal: with exact arithmetic that pair "
            "of scores never crosses, but an infinite radius is never certified; pass the "
            "rounding bounds (error, error_growth) of the computation."
        )
    rows = np.arange(len(outputs))
    predicted = outputs.argmax(axis=1)
    gaps = outputs[rows, predicted][:, None] - outputs - np.sqrt(2.0) * slack[:, None]
    ratios = gaps / denominators[predicted]
    ratios[rows, predicted] = np.inf
    return ratios.min(axis=1)


def certified_accuracy(estimator: Any, X: Any, y: Any, eps: float | Any) -> float | np.ndarray:
    """Fraction of points correctly classified *and* certified at radius ``eps``.

    A point counts when ``predict(x) == y`` and ``certified_radius(x) >= eps``:
    no perturbation of L2 norm below ``eps`` can change its (correct) class. At
    ``eps = 0`` this is the accuracy; it never increases with ``eps``.

    Parameters
    ----------
    estimator : fitted LipschitzClassifier, or Pipeline ending with one
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        True labels, each one of the classifier's ``classes_``.
    eps : float or array-like of floats
        Radius, in the input space of ``estimator``; finite and non-negative.

    Returns
    -------
    float, or ndarray of the shape of ``eps`` (the curve)

    Raises
    ------
    ValueError
        If ``X`` does not fit the estimator, ``y`` is not 1-D of length
        n_samples or holds labels outside ``classes_``, or ``eps`` is not
        finite and non-negative.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from sklip import LipschitzClassifier
    >>> X, y = make_blobs(60, centers=[[-3.0, 0.0], [3.0, 0.0]], random_state=0)
    >>> clf = LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=20, random_state=0)
    >>> clf = clf.fit(X, y)
    >>> from sklip.robustness import certified_accuracy
    >>> certified_accuracy(clf, X, y, eps=[0.0, 100.0])  # nobody is certified at 100
    array([1., 0.])
    """
    eps_array = as_float_array(eps, "eps")
    classifier, _ = unwrap(estimator)
    if not hasattr(classifier, "classes_"):
        raise TypeError(
            f"certified_accuracy needs a classifier, got a {type(classifier).__name__}: an "
            "outlier detector's counterpart is certified_auroc, a regressor's predict_interval."
        )
    n_samples = check_inputs(estimator, X).shape[0]
    y = np.asarray(y)
    check_labels(classifier, y, n_samples)
    correct = estimator.predict(X) == y
    curve = certified_accuracy_curve(correct, certified_radius(estimator, X), eps_array.ravel())
    return float(curve[0]) if eps_array.ndim == 0 else curve.reshape(eps_array.shape)


def certified_accuracy_curve(
    correct: np.ndarray, radius: np.ndarray, eps: np.ndarray
) -> np.ndarray:
    """Mean of ``correct & (radius >= eps)`` for each ``eps`` (1-D): the one formula.

    Examples
    --------
    >>> import numpy as np
    >>> from sklip.robustness import certified_accuracy_curve
    >>> correct = np.array([True, True, False])
    >>> certified_accuracy_curve(correct, np.array([0.5, 2.0, 3.0]), np.array([0.0, 1.0, 2.5]))
    array([0.66666667, 0.33333333, 0.        ])
    """
    correct, radius, eps = (np.asarray(a) for a in (correct, radius, eps))
    if correct.ndim != 1 or radius.shape != correct.shape:
        raise ValueError(
            f"correct and radius must be 1-D of the same length, got shapes {correct.shape} "
            f"and {radius.shape}."
        )
    if eps.ndim != 1 or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError("eps must be a 1-D array of finite, non-negative radii.")
    if not np.all(radius >= 0):  # NaN too: a radius is never unknown
        raise ValueError("radius must hold non-negative numbers (no NaN).")
    return np.mean(correct[None, :] & (radius[None, :] >= eps[:, None]), axis=1)


def make_certified_scorer(eps: float) -> Callable[[Any, Any, Any], float]:
    """A scikit-learn scorer: certified accuracy at radius ``eps`` (higher is better).

    ``GridSearchCV(..., scoring=make_certified_scorer(0.5))`` then selects
    ``alpha`` and ``margin`` for provable robustness instead of clean accuracy.
    Works on Pipelines with linear preprocessing (see :func:`certified_radius`).

    Examples
    --------
    >>> from sklip.robustness import make_certified_scorer
    >>> scorer = make_certified_scorer(0.5)
    >>> scorer.eps
    0.5
    """
    check_real(eps, "eps", allow_zero=True)

    def certified_accuracy_scorer(estimator: Any, X: Any, y: Any) -> float:
        return certified_accuracy(estimator, X, y, eps)

    certified_accuracy_scorer.eps = eps
    return certified_accuracy_scorer
