"""Temperature scaling: the one-parameter calibration behind ``predict_proba``."""

from __future__ import annotations

import math

import numpy as np


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large scores."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


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
    infinity.
    """
    low, high = math.log(1e-2 / margin), math.log(1e2 / margin)
    if len(labels) == 0 or not np.any(weights > 0):
        return 1.0 / margin
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
