"""Temperature scaling: the one-parameter calibration behind ``predict_proba``."""

from __future__ import annotations

import math

import numpy as np


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large scores (an infinite top score takes it all)."""
    exp = np.exp(_shifted(scores))
    return exp / exp.sum(axis=1, keepdims=True)


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax: finite wherever the scores are, however far apart."""
    shifted = _shifted(scores)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _shifted(scores: np.ndarray) -> np.ndarray:
    """``scores`` minus each row's maximum, with the maximum itself at exactly 0.

    Written so that a row whose top score overflowed to inf gives 0 there (and
    -inf elsewhere) instead of inf - inf = NaN.
    """
    top = scores.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.where(scores == top, 0.0, scores - top)


def weighted_log_loss(
    scale: float, scores: np.ndarray, labels: np.ndarray, weights: np.ndarray
) -> float:
    """Weighted mean of ``-log softmax(scale * scores)[label]``."""
    logits = scale * scores
    top = logits.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    losses = log_norm - logits[np.arange(len(labels)), labels]
    return float(np.average(losses, weights=weights))


def fit_temperature(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray, margin: float
) -> float:
    r"""The scale ``a > 0`` minimising the log-loss of ``softmax(a * scores)``.

    The log-loss is convex in ``a`` (its second derivative is a variance), so a
    golden-section search over ``log a`` finds the minimum. The search is kept
    to ``a * margin`` in ``[1e-2, 1e2]``: scores are distances, in the units of
    the margin, and on separable training data the unconstrained minimum is at
    infinity. It is also kept to ``a * max|score| <= 1e300``, so that the
    scaled scores stay finite whatever the margin (1e-308 is a valid one).
    """
    low, high = math.log(1e-2) - math.log(margin), math.log(1e2) - math.log(margin)
    largest = float(np.abs(scores).max()) if scores.size else 0.0
    ceiling = math.log(1e300) - (math.log(largest) if largest > 1 else 0.0)
    low, high = min(low, ceiling), min(high, ceiling)
    if len(labels) == 0 or not np.any(weights > 0) or low == high:
        return math.exp(high)
    ratio = (math.sqrt(5) - 1) / 2

    def loss(log_scale: float) -> float:
        return weighted_log_loss(math.exp(log_scale), scores, labels, weights)

    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(60):
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return math.exp((low + high) / 2)
