"""The held-out rows' split between choosing the critic and bounding the population W1."""

import numpy as np
import pytest
import torch
from scipy.stats import t as student_t
from torch import nn

from sklip._dual import confidence_lower_bound
from sklip._held_out_bound import HeldOutCritics, bounding_rows


def _outputs(X: np.ndarray, module: nn.Module) -> np.ndarray:
    with torch.no_grad():
        return module(torch.as_tensor(X)).numpy()


def _critic(slope: float) -> nn.Linear:
    critic = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        critic.weight.fill_(slope)
    return critic


def test_bounding_rows_are_three_of_every_four_rows_of_each_set():
    labels = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0])
    mask = bounding_rows(labels)
    for k in (0, 1):
        rows = np.flatnonzero(labels == k)
        assert mask[rows].tolist() == [i % 4 != 0 for i in range(len(rows))]
    assert mask.sum() == 4 + 3  # 6 rows of set 0, 5 of set 1


def test_the_choosing_rows_alone_pick_the_critic_and_its_sign():
    # Set 1 sits right of set 0 on the choosing rows, left of it on the
    # bounding rows: every critic f(x) = s x has a positive dual value on the
    # choosing rows when s > 0. The kept critic must be the steepest by the
    # choosing rows (|s| largest, sign of its value there), whatever the
    # bounding rows say, while the returned score is the dual on all rows.
    labels = np.repeat([0, 1], 8)
    X = np.zeros((16, 1))
    choosing = ~bounding_rows(labels)
    X[(labels == 1) & choosing] = 1.0
    X[(labels == 0) & ~choosing] = 5.0  # the bounding half favours negative slopes
    critics = HeldOutCritics(_outputs, X, labels, np.ones(16))
    scores = [critics(_critic(slope)) for slope in (0.5, -2.0, 1.0)]
    assert critics.sign == -1.0 and critics.best == pytest.approx(2.0)
    assert critics.state["weight"].item() == -2.0
    # All held-out rows: set 1's mean is 2 / 8, set 0's 6 x 5 / 8 -> dual -3.5 s.
    assert scores == pytest.approx([-1.75, 7.0, -3.5])
    before = {key: value.clone() for key, value in critics.state.items()}
    X[(labels == 0) & ~choosing] = -50.0  # bounding rows change: the choice does not
    critics = HeldOutCritics(_outputs, X, labels, np.ones(16))
    for slope in (0.5, -2.0, 1.0):
        critics(_critic(slope))
    assert critics.sign == -1.0 and torch.equal(critics.state["weight"], before["weight"])


def test_bound_is_the_bounding_rows_clt_bound_of_the_signed_critic():
    rng = np.random.RandomState(0)
    labels = np.repeat([0, 1], 40)
    critics = HeldOutCritics(_outputs, rng.normal(size=(80, 1)), labels, np.ones(80))
    critics.state, critics.sign = {}, -1.0
    rows = critics.bounding
    potential = rng.normal(size=rows.sum()) + 3.0 * labels[rows]
    lipschitz = 2.0
    bound = critics.bound(potential, np.zeros(rows.sum()), lipschitz)
    # By hand: the critic is -potential / L; set 1's mean minus set 0's, minus
    # Student's 95 % quantile (Welch's degrees of freedom) standard errors.
    f = -potential / lipschitz
    f0, f1 = f[labels[rows] == 0], f[labels[rows] == 1]
    v0, v1 = f0.var(ddof=1) / len(f0), f1.var(ddof=1) / len(f1)
    freedom = (v0 + v1) ** 2 / (v0**2 / (len(f0) - 1) + v1**2 / (len(f1) - 1))
    quantile = student_t.ppf(0.95, freedom)
    assert 1.645 < quantile < 1.70  # 30 rows a set: near the normal quantile
    expected = max(f1.mean() - f0.mean() - quantile * np.sqrt(v0 + v1), 0.0)
    assert bound == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert bound == 0.0  # the negated critic's value is negative: floored
    critics.sign = 1.0
    assert critics.bound(potential, np.zeros(rows.sum()), lipschitz) == pytest.approx(
        -(f1.mean() - f0.mean()) - quantile * np.sqrt(v0 + v1), rel=1e-6
    )


def test_rows_of_zero_weight_do_not_count_as_observations():
    """Kish's effective count: one row of weight 1 among zeros gives no standard error."""
    rng = np.random.RandomState(0)
    labels = np.repeat([0, 1], 40)
    potential = rng.normal(size=80) + labels
    weights = np.ones(80)
    weights[:39] = 0.0  # set 0: one row of positive weight
    lone = confidence_lower_bound(0.5, potential, np.zeros(80), labels, weights, 1.0, 0.95)
    assert np.isnan(lone)
    weights[38] = 1.0  # two rows: a bound, their mean's standard error |a - b| / 2 at least
    two = confidence_lower_bound(0.5, potential, np.zeros(80), labels, weights, 1.0, 0.95)
    assert np.isfinite(two)
    assert two <= max(0.5 - 1.645 * abs(potential[38] - potential[39]) / 2, 0.0)
    critics = HeldOutCritics(_outputs, np.zeros((80, 1)), labels, np.where(labels == 0, 0.0, 1.0))
    critics.state = {}
    assert not critics.can_bound()  # set 0 holds rows, all of weight 0


def test_no_bound_without_a_critic_or_with_too_few_bounding_rows():
    labels = np.array([0, 0, 0, 0, 1, 1])  # set 1: one bounding row
    critics = HeldOutCritics(_outputs, np.zeros((6, 1)), labels, np.ones(6))
    assert not critics.can_bound()  # no epoch scored yet
    critics(_critic(1.0))
    assert not critics.can_bound()
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    weights = np.array([1, 1, 1, 1, 1, 0, 0, 0.0])  # set 1's bounding rows weigh 0
    critics = HeldOutCritics(_outputs, np.zeros((8, 1)), labels, weights)
    critics(_critic(1.0))
    assert not critics.can_bound()
    critics = HeldOutCritics(_outputs, np.zeros((8, 1)), labels, np.ones(8))
    critics(_critic(1.0))
    assert critics.can_bound()
