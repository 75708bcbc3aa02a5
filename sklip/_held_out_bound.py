r"""The held-out rows' two jobs in a W1 fit: choose the critic, and bound the population W1.

Early stopping scores every epoch's critic on the held-out rows and publishes
the best one. Those rows cannot then also give an honest confidence bound for
that critic: they chose it, and the best of many noisy values is biased up.
A union bound over every epoch (and both signs) keeps the level but costs a
large :math:`z` (3.8 for 600 candidates at 95 %). Here the held-out rows are
split instead:

* all of them still choose the *published* critic (the best selection);
* a *choosing* quarter alone picks a second critic, the trajectory's best
  epoch (and sign) by its dual value on that quarter;
* the *bounding* three quarters, which took part in no choice, give that
  critic's bound at the plain level (Student's t quantile, 1.645 at 95 %
  on many rows).

The training trajectory depends on the training rows only, so given it the
bounding rows are independent draws and the critic picked by the other rows
is a fixed 1-Lipschitz function (after division by its bound): its dual
value on them estimates :math:`E_Q f - E_P f \le W_1` without bias, however
well or badly the choosing rows chose. On three quarters of the rows the
standard error grows by :math:`\sqrt{4/3}`: the bound's margin is
:math:`1.645 \sqrt{4/3} = 1.90` standard errors of the whole held-out part,
against 3.8 with the union bound. (Ranking the epochs of one trajectory
needs few rows: their values on the same rows differ by little noise.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from torch import Tensor, nn

from ._dual import confidence_lower_bound, dual_value
from ._training import snapshot

__all__ = ["HeldOutCritics", "bounding_rows"]

CONFIDENCE_RISK = 0.05  # confidence_lower_bound_ holds with probability >= 95 %
_MIN_BOUNDING_ROWS = 2  # per set: a standard error needs two rows


def bounding_rows(labels: np.ndarray) -> np.ndarray:
    """Mask of the bounding rows: three of every four held-out rows of each set.

    The held-out rows come in random order (a shuffled split), so keeping
    every fourth row of each set to choose is a random, stratified split.
    """
    mask = np.zeros(len(labels), dtype=bool)
    for k in (0, 1):
        rows = np.flatnonzero(labels == k)
        mask[rows] = np.arange(len(rows)) % 4 != 0
    return mask


class HeldOutCritics:
    """Scores each epoch's critic on the held-out rows; keeps the one to bound with.

    Called with the network being trained after each epoch (the
    ``validation_score`` of :func:`~sklip._training.train`), it returns the
    dual value on all held-out rows, by which early stopping publishes a
    critic. On the side it keeps the weights and sign of the best critic by
    the choosing rows, for :meth:`bound` on the bounding rows.

    Parameters
    ----------
    outputs : callable
        ``outputs(X, module)``: the float32 network's outputs ``(n, 1)`` as float64.
    X, labels, weights : ndarray
        The held-out rows, their set (0 or 1) and their weights.
    """

    def __init__(
        self,
        outputs: Callable[[np.ndarray, nn.Module], np.ndarray],
        X: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray,
    ) -> None:
        self._outputs = outputs
        self.X, self.labels, self.weights = X, labels, weights
        self.bounding = bounding_rows(labels)
        choosing = ~self.bounding
        self._choosing = choosing, labels[choosing], weights[choosing]
        self.best = -math.inf
        self.state: dict[str, Tensor] | None = None
        self.sign = 1.0

    def __call__(self, module: nn.Module) -> float:
        potential = self._outputs(self.X, module)[:, 0]
        choosing, labels, weights = self._choosing
        value = dual_value(potential[choosing], labels, weights)
        if abs(value) > self.best:  # -f is 1-Lipschitz too: its value is -value
            self.best, self.sign = abs(value), 1.0 if value >= 0 else -1.0
            self.state = snapshot(module)
        return dual_value(potential, self.labels, self.weights)

    def can_bound(self) -> bool:
        """Whether a critic was kept and the bounding rows can give a standard error."""
        if self.state is None:
            return False
        for k in (0, 1):
            rows = self.bounding & (self.labels == k)
            if (self.weights[rows] > 0).sum() < _MIN_BOUNDING_ROWS:  # rows of weight 0 say nothing
                return False
        return True

    def bound(self, potential: np.ndarray, error: np.ndarray, lipschitz_constant: float) -> float:
        """The lower bound of the population W1 from the kept critic (Student's t).

        ``potential`` and ``error`` are the kept critic's float64 outputs on the
        bounding rows (``X[bounding]``) and their rounding bounds, as the
        frozen network computes them; ``lipschitz_constant`` is its bound.
        """
        labels, weights = self.labels[self.bounding], self.weights[self.bounding]
        potential = self.sign * potential
        dual = dual_value(potential, labels, weights)
        return confidence_lower_bound(
            dual, potential, error, labels, weights, lipschitz_constant, 1 - CONFIDENCE_RISK
        )
