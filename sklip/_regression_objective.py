r"""The regressor's training objective and its data-aware Lipschitz constant.

The network ``g`` is 1-Lipschitz; the regressor predicts
:math:`\hat y = \mu + K g(x)`, so it is trained on the targets
:math:`t = (y - \mu) / K`. Residuals are measured in units of the targets'
standard deviation :math:`\sigma` (per output),
:math:`r = K (g(x) - t) / \sigma`, so that the losses and Huber's threshold
(1 standard deviation) do not depend on the units of ``y``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ._margin import nearest_other_row, sample_rows, weighted_quantile

LOSSES = ("squared_error", "huber", "absolute_error")
AUTO_QUANTILE = 0.9


class RegressionObjective:
    """Weighted mean loss of a batch, from coefficient rows ``[t_1 .. t_m, w / W]``.

    Called with a batch's outputs ``(b, m)``, its coefficient rows and ``scale
    = n / b``, it returns the batch loss (an unbiased estimate of the
    full-data weighted mean) and the batch's contribution to the epoch's loss.
    """

    def __init__(self, loss: str, residual_scale: Tensor) -> None:
        self.loss = loss
        self.residual_scale = residual_scale

    def __call__(
        self, outputs: Tensor, coefficients: Tensor, scale: float
    ) -> tuple[Tensor, Tensor]:
        targets, weights = coefficients[:, :-1], coefficients[:, -1]
        residuals = (outputs - targets) * self.residual_scale
        if self.loss == "squared_error":
            per_row = residuals.square().sum(dim=1)
        elif self.loss == "absolute_error":
            per_row = residuals.abs().sum(dim=1)
        else:
            per_row = F.huber_loss(
                residuals, torch.zeros_like(residuals), reduction="none", delta=1.0
            )
            per_row = per_row.sum(dim=1)
        contribution = (weights * per_row).sum()
        return contribution * scale, contribution.detach().reshape(1)

    def epoch_record(self, sums: list[float], n: int) -> dict[str, float]:
        return {"loss": sums[0]}


def regression_coefficients(targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rows ``[t_1 .. t_m, w_i / sum(w)]``: what a batch needs, gathered by row."""
    return np.hstack((targets, (weights / weights.sum())[:, None]))


def auto_lipschitz_constant(
    X: np.ndarray, Y: np.ndarray, weights: np.ndarray, rng: np.random.RandomState
) -> float:
    r"""``sqrt(d)`` times a high quantile of the slopes between neighbouring rows.

    Each row is paired with its nearest other row (on about 4096 rows, drawn
    with ``rng`` when there are more) and the slope
    :math:`\|y_i - y_j\| / \|x_i - x_j\|` of each pair at positive distance
    is taken; the result is the weighted ``AUTO_QUANTILE`` of the slopes
    (their largest if that quantile is 0; 1 if every slope is), times
    :math:`\sqrt d`. Why the factor: a neighbour lies in a direction that
    has nothing to do with the gradient, and in ``d`` dimensions the slope
    along a random direction is about :math:`1 / \sqrt d` of the gradient's
    norm. Measured (``benchmarks/regression.py``, one split): without it,
    ``y = ||x||`` in 10-D got ``K`` at half the true constant and R² 0.72,
    friedman1 R² 0.79; a constant too small underfits, one too large only
    loosens the bounds (friedman1: R² 0.94 at ``K`` 10, 0.92 at 50).
    """
    rows = sample_rows(np.zeros(len(X), dtype=np.intp), weights, rng)
    Z, targets, weights = np.asarray(X[rows], dtype=np.float64), Y[rows], weights[rows]
    nearest = nearest_other_row(Z)
    distance = np.sqrt(np.square(Z - Z[nearest]).sum(axis=1))
    rise = np.sqrt(np.square(targets - targets[nearest]).sum(axis=1))
    apart = (distance > 0) & (weights > 0)
    slopes = rise[apart] / distance[apart]
    if not (slopes > 0).any():  # y constant between every pair of neighbours
        return 1.0
    quantile = weighted_quantile(slopes, weights[apart], AUTO_QUANTILE)
    # Most neighbours sharing a value (a discrete y) would make the quantile 0.
    typical = quantile if quantile > 0 else float(slopes.max())
    return float(np.sqrt(X.shape[1]) * typical)
