"""The Kantorovich-Rubinstein dual value of a critic on two weighted sets, and its bound."""

from __future__ import annotations

import numpy as np

from .nn.bounds import gamma, round_down


def dual_value(potential: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Weighted mean of the potential on set 1 minus that on set 0 (0 for an empty set)."""
    means = []
    for k in (0, 1):
        mask = labels == k
        total = weights[mask].sum()
        means.append(float(np.dot(weights[mask], potential[mask]) / total) if total > 0 else 0.0)
    return means[1] - means[0]


def certified_lower_bound(
    dual: float,
    potential: np.ndarray,
    error: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    lipschitz_constant: float,
) -> float:
    r"""A lower bound of the W1 between the two weighted sets, proven in floating point.

    :math:`W_1 \ge (E_Q f - E_P f) / L` holds for the *exact* ``f``. Each
    computed potential is within ``error`` of it (the frozen network's bound),
    and each computed weighted mean of ``n`` terms within
    :math:`2\gamma_{n+2}` of the mean of :math:`|f|` (Higham, Thm 3.1), so
    the exact dual value is at least ``dual`` minus both sets' mean errors.
    """
    slack = 0.0
    for k in (0, 1):
        mask = labels == k
        w = weights[mask]
        means = 2 * gamma(int(mask.sum()) + 2)
        slack += float(np.dot(w, error[mask] + means * np.abs(potential[mask])) / w.sum())
    return float(round_down(np.array((dual - slack * (1 + 1e-9)) / lipschitz_constant)))


def midpoint(potential: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    means = [np.average(potential[labels == k], weights=weights[labels == k]) for k in (0, 1)]
    return float((means[0] + means[1]) / 2)


def confidence_lower_bound(
    dual: float,
    potential: np.ndarray,
    error: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    lipschitz_constant: float,
    z: float,
) -> float:
    r"""One-sided CLT lower bound of :math:`E_Q f - E_P f` from held-out rows, over ``L``.

    The rows must be independent of the critic ``f`` (never trained on). Their
    weighted dual value ``dual``, made safe against floating point by
    :func:`certified_lower_bound`, minus ``z`` standard errors of the
    difference of the two weighted means (each mean's variance estimated as
    :math:`\sum_i w_i^2 (f_i - \bar f)^2 / (\sum_i w_i)^2` times the
    small-sample correction :math:`n / (n - 1)`); floored at 0, since
    :math:`W_1 \ge 0`.
    """
    safe = certified_lower_bound(dual, potential, error, labels, weights, lipschitz_constant)
    variance = 0.0
    for k in (0, 1):
        mask = labels == k
        f, w = potential[mask] / lipschitz_constant, weights[mask]
        n = int(mask.sum())
        mean = np.dot(w, f) / w.sum()
        variance += np.dot(w**2, (f - mean) ** 2) / w.sum() ** 2 * n / max(n - 1, 1)
    return float(max(safe - z * np.sqrt(variance), 0.0))
