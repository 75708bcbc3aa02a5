"""A two-sample test, and a confidence bound on the population W1, from a held-out critic.

The data are split once: a critic is fitted on one part, then *frozen* and
evaluated on the other (the test rows), which training and model selection
never saw. Given the critic, the test rows are independent draws, so:

* the critic's dual value on them, :math:`T = \\bar f_Q - \\bar f_P` (potentials
  divided by the network's Lipschitz bound), is an unbiased estimate of
  :math:`E_Q f - E_P f \\le W_1(P, Q)`: a lower bound of the *population*
  distance, however good or bad the critic;
* under :math:`H_0: P = Q` the test rows are exchangeable whatever their
  labels, so permuting the labels gives the exact null distribution of
  :math:`T` given the critic: the permutation p-value is valid at every
  sample size (Lehmann & Romano, *Testing Statistical Hypotheses*, Thm 15.2.1);
* by the central limit theorem, :math:`T - t_{\\text{level}}\\,\\hat s` with
  :math:`\\hat s^2 = \\hat\\sigma_P^2 / m_P + \\hat\\sigma_Q^2 / m_Q` is a
  one-sided lower confidence bound of :math:`E_Q f - E_P f`, hence of
  :math:`W_1(P, Q)`, at asymptotic level ``confidence_level``; Student's
  quantile with Welch's degrees of freedom (instead of the normal one) keeps
  it near that level on a few dozen rows (see :func:`sklip._dual.confidence_lower_bound`).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from ._dual import confidence_lower_bound, dual_value
from ._streaming import check_two_sets

__all__ = ["WassersteinTestResult", "wasserstein_test"]

MIN_ROWS = 10  # per set: the critic's own held-out split needs a few of each
_PERMUTATION_BLOCK = 64  # permutations drawn at once: memory is block x test rows


@dataclass(frozen=True)
class WassersteinTestResult:
    """The result of :func:`wasserstein_test`, in the style of ``scipy.stats``.

    Attributes
    ----------
    statistic : float
        The held-out critic's dual value :math:`T` on the test rows, in the
        units of the data (potentials divided by the Lipschitz bound): an
        unbiased estimate of a lower bound of the population :math:`W_1`.
    pvalue : float
        Permutation p-value of :math:`H_0: P = Q` against :math:`T > 0`:
        ``(1 + #{T_perm >= T}) / (1 + n_permutations)``.
    confidence_lower_bound : float
        :math:`T - t\\,\\hat s` (Student's quantile), floored at 0: a lower bound of the population
        :math:`W_1(P, Q)` at (asymptotic) level ``confidence_level``.
    distance : float
        The critic's dual value on the rows it was fitted on
        (:attr:`WassersteinEstimator.distance_`): the point estimate of
        :math:`W_1`, not a bound.
    confidence_level : float
    n_permutations : int
    n_test : tuple of int
        Test rows of P and of Q.
    """

    statistic: float
    pvalue: float
    confidence_lower_bound: float
    distance: float
    confidence_level: float
    n_permutations: int
    n_test: tuple[int, int]


def wasserstein_test(
    X_p: Any,
    X_q: Any,
    *,
    test_fraction: float = 0.5,
    confidence_level: float = 0.95,
    n_permutations: int = 999,
    random_state: Any = None,
    **params: Any,
) -> WassersteinTestResult:
    r"""Test whether two samples come from the same distribution, and bound their W1.

    Each set is split at random: a :class:`WassersteinEstimator` is fitted on
    ``1 - test_fraction`` of each, then its frozen critic is evaluated on the
    rest. The statistic is the critic's dual value there; its p-value comes
    from permuting the labels of the test rows (exact at any sample size: the
    critic never saw them); the confidence bound from the central limit theorem
    (see the module notes in ``sklip/_two_sample.py``).

    Parameters
    ----------
    X_p, X_q : array-like of shape (n_p, n_features), (n_q, n_features)
        The two samples, at least 10 rows each.
    test_fraction : float, default=0.5
        Share of each set kept for the test, in (0, 1).
    confidence_level : float, default=0.95
        Level of the one-sided lower confidence bound, in (0, 1).
    n_permutations : int, default=999
        Label permutations of the test rows; the p-value is at least
        ``1 / (1 + n_permutations)``.
    random_state : int, RandomState instance or None, default=None
        Draws the split and the permutations, and seeds the critic's estimator.
    **params
        Parameters of :class:`WassersteinEstimator`.

    Returns
    -------
    WassersteinTestResult

    Raises
    ------
    ValueError
        If a set has fewer than 10 rows, NaN or infinite values, the sets have
        different numbers of features, or a parameter is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> from sklip import wasserstein_test
    >>> rng = np.random.RandomState(0)
    >>> P, Q = rng.normal(size=(400, 3)), rng.normal(size=(400, 3)) + [1.0, 0.0, 0.0]
    >>> result = wasserstein_test(P, Q, random_state=0, max_epochs=30)
    >>> bool(result.pvalue < 0.01), bool(0 < result.confidence_lower_bound < 1.0)
    (True, True)
    """
    _check_parameters(test_fraction, confidence_level, n_permutations)
    X_p, X_q, _, _ = check_two_sets(X_p, X_q, None, None, None)
    for X, name in ((X_p, "X_p"), (X_q, "X_q")):
        if X.shape[0] < MIN_ROWS:
            raise ValueError(
                f"{name} needs at least {MIN_ROWS} rows for a test (some to fit the critic, "
                f"some to test it), got {X.shape[0]}."
            )
    rng = check_random_state(random_state)
    fit_p, test_p = _split(X_p.shape[0], test_fraction, rng)
    fit_q, test_q = _split(X_q.shape[0], test_fraction, rng)
    from .wasserstein import WassersteinEstimator

    params["random_state"] = rng.randint(np.iinfo(np.int32).max)
    X_fit = np.vstack((X_p[fit_p], X_q[fit_q]))
    y_fit = np.repeat([0, 1], (len(fit_p), len(fit_q)))
    critic = WassersteinEstimator(**params).fit(X_fit, y_fit)
    X_test = np.vstack((X_p[test_p], X_q[test_q]))
    labels = np.repeat([0, 1], (len(test_p), len(test_q)))
    outputs, error, _ = critic._evaluate(X_test, bounds=True)
    lipschitz = critic.lipschitz_constant_
    potential = outputs[:, 0]
    weights = np.ones(len(labels))
    dual = dual_value(potential, labels, weights)
    return WassersteinTestResult(
        statistic=float(dual / lipschitz),
        pvalue=_permutation_pvalue(potential, labels, dual, n_permutations, rng),
        confidence_lower_bound=confidence_lower_bound(
            dual, potential, error, labels, weights, lipschitz, confidence_level
        ),
        distance=float(critic.distance_),
        confidence_level=float(confidence_level),
        n_permutations=int(n_permutations),
        n_test=(len(test_p), len(test_q)),
    )


def _split(n: int, test_fraction: float, rng: np.random.RandomState):
    """Random (fit, test) row indices: at least 2 to test, 5 to fit."""
    n_test = min(max(2, round(test_fraction * n)), n - 5)
    order = rng.permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _permutation_pvalue(
    potential: np.ndarray,
    labels: np.ndarray,
    observed: float,
    n_permutations: int,
    rng: np.random.RandomState,
) -> float:
    """Share of label permutations whose dual value reaches ``observed`` (itself counted)."""
    n, n_q = len(labels), int(labels.sum())
    total = potential.sum()
    # T = mean over Q - mean over P, from the sum over the rows labelled Q.
    scale_q, scale_p = 1.0 / n_q, 1.0 / (n - n_q)
    # A relative tolerance: ties (a critic constant on the test rows) must count
    # as reaching the observed value whatever the rounding of the two means.
    tolerance = 1e-12 * np.abs(potential).sum() * (scale_q + scale_p)
    reached = 0
    for start in range(0, n_permutations, _PERMUTATION_BLOCK):
        block = min(_PERMUTATION_BLOCK, n_permutations - start)
        chosen = np.argsort(rng.random_sample((block, n)), axis=1)[:, :n_q]
        sums_q = potential[chosen].sum(axis=1)
        values = sums_q * scale_q - (total - sums_q) * scale_p
        reached += int(np.sum(values >= observed - tolerance))
    return (1 + reached) / (1 + n_permutations)


def _check_parameters(test_fraction: Any, confidence_level: Any, n_permutations: Any) -> None:
    for value, name in ((test_fraction, "test_fraction"), (confidence_level, "confidence_level")):
        if not isinstance(value, Real) or isinstance(value, bool) or not 0 < value < 1:
            raise ValueError(f"{name} must be a number in (0, 1), got {value!r}.")
    if (
        not isinstance(n_permutations, Integral)
        or isinstance(n_permutations, bool)
        or n_permutations < 1
    ):
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}.")
