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

from ._margin import nearest_other_rows, sample_rows, squared_differences

LOSSES = ("squared_error", "huber", "absolute_error")
AUTO_NEIGHBOURS = 10
AUTO_FACTOR = 1.2


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
    r"""``AUTO_FACTOR`` times the gradient's typical norm, read off the data's variogram.

    Each row is paired with its ``AUTO_NEIGHBOURS`` nearest other rows (on
    about 4096 rows, drawn with ``rng`` when there are more). For a target
    :math:`y = f(x) + \varepsilon` with noise of variance :math:`\sigma^2`,
    a pair at distance :math:`h` differs by
    :math:`E\|y_i - y_j\|^2 \approx 2\sigma^2 + s^2 h^2`, where :math:`s^2`
    is the mean square slope of ``f`` along the pairs' directions; a
    weighted least-squares line through the points
    :math:`(h^2, \|y_i - y_j\|^2)` (:func:`variogram_fit`) gives both, and the
    noise, in the intercept, no longer inflates the slope as it does in the
    ratio :math:`\|y_i - y_j\| / h` of close pairs. Along a direction
    unrelated to the gradient the slope is about :math:`1/\sqrt d` of the
    gradient's norm, so :math:`\sqrt{d}\, s` estimates the gradient's
    root-mean-square norm, and ``K = AUTO_FACTOR * sqrt(d) * s``: a ``K`` too
    small underfits, one too large fits the noise.

    Measured on the five sets of ``benchmarks/regression.py`` (standardised
    features): the estimate is 0.87 times the true constant of ``y = ||x||``
    in 10-D (so ``K`` is 1.04 times it), ``||beta||`` within 1 % for
    ``make_regression``, and 45 on diabetes, whose nearest-neighbour slopes,
    noise included, gave 327. A factor 1.2 gave a higher cross-validated R²
    than 1.5 or 2 on diabetes, friedman1 and the norm. A target with no
    measurable slope gets the floor ``std(y) / std(x)`` (summed variances:
    the network may move by one standard deviation of ``y`` across the spread
    of ``x``); a constant target, or a single distinct row, gets 1.
    """
    rows = sample_rows(np.zeros(len(X), dtype=np.intp), weights, rng)
    Z, targets, weights = np.asarray(X[rows], dtype=np.float64), Y[rows], weights[rows]
    y_spread = _total_spread(targets, weights)
    x_spread = _total_spread(Z, weights)
    if y_spread == 0 or x_spread == 0:
        return 1.0
    neighbours = nearest_other_rows(Z, AUTO_NEIGHBOURS)
    squared_distance = squared_differences(Z, neighbours)
    squared_rise = squared_differences(targets, neighbours)
    pair_weights = weights[:, None] * weights[neighbours]
    _, slope_squared = variogram_fit(
        squared_distance.ravel(), squared_rise.ravel(), pair_weights.ravel()
    )
    gradient_norm = np.sqrt(slope_squared * X.shape[1])
    return float(max(AUTO_FACTOR * gradient_norm, y_spread / x_spread))


def variogram_fit(
    squared_distance: np.ndarray, squared_rise: np.ndarray, weights: np.ndarray
) -> tuple[float, float]:
    """Weighted least squares ``squared_rise = a + b * squared_distance`` with ``a, b >= 0``.

    ``a`` is twice the noise variance, ``b`` the mean square slope. A slope
    at or below 0 (no trend) gives ``(mean rise, 0)``; a negative intercept
    (no noise, and sampling error) refits the line through 0, as do pairs all
    at one positive distance, which cannot tell the two apart; pairs all of
    duplicates (distance 0) have no slope to show.

    Examples
    --------
    >>> import numpy as np
    >>> from sklip._regression_objective import variogram_fit
    >>> h2 = np.array([0.0, 2.0, 4.0])
    >>> variogram_fit(h2, 2 + 3 * h2, np.ones(3))
    (2.0, 3.0)
    """
    total = weights.sum()
    mean_h, mean_r = weights @ squared_distance / total, weights @ squared_rise / total
    spread = weights @ np.square(squared_distance - mean_h)
    if spread > 0:
        slope = weights @ ((squared_distance - mean_h) * (squared_rise - mean_r)) / spread
        if slope <= 0:
            return float(mean_r), 0.0
        intercept = mean_r - slope * mean_h
        if intercept >= 0:
            return float(intercept), float(slope)
    reach = weights @ np.square(squared_distance)
    if reach == 0:  # every pair a duplicate: the rises are all noise
        return float(mean_r), 0.0
    return 0.0, float(weights @ (squared_distance * squared_rise) / reach)


def _total_spread(values: np.ndarray, weights: np.ndarray) -> float:
    """Square root of the summed weighted variances of the columns."""
    centred = values - np.average(values, axis=0, weights=weights)
    return float(np.sqrt(np.average(np.square(centred), axis=0, weights=weights).sum()))
