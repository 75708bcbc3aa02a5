"""WassersteinEstimator and wasserstein_distance against known answers."""

import math

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance as scipy_w1
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklip import WassersteinEstimator, wasserstein_distance

EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "held-out early stopping splits rows, so repeated rows and weighted rows are "
        "split differently; float32 mini-batch training adds rounding"
    ),
}


@parametrize_with_checks(
    [WassersteinEstimator(hidden_layer_sizes=(16,), max_epochs=20, random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _stack(P, Q):
    return np.vstack((P, Q)), np.repeat([0, 1], (len(P), len(Q)))


@pytest.mark.parametrize("d", [2, 16])
def test_translated_gaussians_are_at_the_translation_length(d):
    # W1(N(0, I), N(v, I)) = |v| exactly: transport every point by v.
    rng = np.random.RandomState(d)
    v = rng.normal(size=d)
    v *= 2.0 / np.linalg.norm(v)
    P, Q = rng.normal(size=(2000, d)), rng.normal(size=(2000, d)) + v
    est = WassersteinEstimator(random_state=0).fit(*_stack(P, Q))
    assert est.distance_ == pytest.approx(2.0, rel=0.03)
    assert est.validation_distance_ == pytest.approx(2.0, rel=0.1)


def _point_mass_case(**params):
    # Every point of Q travels to the point mass: the samples' W1 is exactly the
    # mean of |q - c| (a cone potential, not a linear one).
    rng = np.random.RandomState(3)
    d, c = 4, np.array([1.0, -2.0, 0.5, 0.0])
    Q = 2.0 * rng.normal(size=(2000, d))
    exact = np.linalg.norm(Q - c, axis=1).mean()
    est = WassersteinEstimator(random_state=0, **params).fit(*_stack(np.tile(c, (2000, 1)), Q))
    return est, exact


def test_point_mass_against_a_sample_is_the_mean_distance_to_it():
    est, exact = _point_mass_case()
    assert est.lower_bound_ <= exact
    assert est.distance_ == pytest.approx(exact, rel=0.08)


def test_point_mass_estimate_is_within_three_percent_with_groups_of_eight():
    # Issue 16's goal on a cone potential: GroupSort pairs (the default) come
    # out 3% to 7% low, groups of 8 -2.8% here.
    est, exact = _point_mass_case(activation="groupsort8")
    assert est.distance_ == pytest.approx(exact, rel=0.03)


def test_radial_scaling_matches_its_closed_form():
    # N(0, I) against N(0, 4 I): mass moves along rays, x -> 2 x, so
    # W1 = E|z| = sqrt(2) Gamma((d + 1) / 2) / Gamma(d / 2).
    d = 3
    rng = np.random.RandomState(4)
    P, Q = rng.normal(size=(3000, d)), 2.0 * rng.normal(size=(3000, d))
    truth = np.sqrt(2) * np.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))
    est = WassersteinEstimator(random_state=0).fit(*_stack(P, Q))
    assert est.distance_ == pytest.approx(truth, rel=0.06)
    assert est.confidence_lower_bound_ <= truth


def _cones_case():
    # A potential of four cones, f(x) = min_k |x - c_k|. Q is P with every point
    # moved halfway to its nearest centre: it stays in its cone (the rays do not
    # cross) and f drops by exactly the distance moved, so this plan is optimal and
    # the samples' W1 is its mean cost (Korotin et al., NeurIPS 2022).
    rng = np.random.RandomState(6)
    centres = rng.uniform(-4, 4, size=(4, 2))
    P = 2.0 * rng.normal(size=(1500, 2))
    nearest = centres[((P[:, None, :] - centres) ** 2).sum(axis=2).argmin(axis=1)]
    Q = P + 0.5 * (nearest - P)
    exact = 0.5 * np.linalg.norm(nearest - P, axis=1).mean()
    return WassersteinEstimator(random_state=0).fit(*_stack(P, Q)), exact


def test_cone_mixture_matches_its_optimal_plan():
    est, exact = _cones_case()
    assert est.lower_bound_ <= exact  # guaranteed, whatever the training did
    # Measured: 0.760 against 0.937 (-19%); the benchmark's cones, -9% to -10%
    # (with activation="groupsort8": -9% here, -2% to -8% there).
    assert est.distance_ == pytest.approx(exact, rel=0.25)


@pytest.mark.xfail(strict=True, reason="issue 16: a mixture of cones comes out 9-19% low today")
def test_cone_mixture_estimate_is_within_three_percent():
    est, exact = _cones_case()
    assert est.distance_ == pytest.approx(exact, rel=0.03)


def test_one_dimensional_distance_matches_scipy():
    rng = np.random.RandomState(1)
    p = rng.exponential(1.0, size=2000)
    q = np.concatenate([rng.uniform(0, 3, 1000), rng.normal(2, 0.3, 1000)])
    estimate = wasserstein_distance(p[:, None], q[:, None], random_state=0)
    assert estimate == pytest.approx(scipy_w1(p, q), rel=0.03)


def test_weighted_sets_match_scipy_in_one_dimension():
    rng = np.random.RandomState(2)
    p, q = rng.uniform(0, 1, 800), rng.uniform(0.5, 2.5, 800)
    wp, wq = rng.uniform(0.1, 2.0, 800), (q < 1.5) * 3.0 + 1.0
    estimate = wasserstein_distance(p[:, None], q[:, None], wp, wq, random_state=0)
    assert estimate == pytest.approx(scipy_w1(p, q, wp, wq), rel=0.03)


def test_small_exact_case_lower_bound_is_guaranteed_and_estimate_is_close():
    # Equal sizes, uniform weights: exact W1 = optimal assignment cost / n.
    rng = np.random.RandomState(1)
    P = rng.normal(size=(200, 2))
    Q = rng.normal(size=(200, 2)) * [1.5, 0.5] + [1.0, 0.0]
    cost = cdist(P, Q)
    rows, cols = linear_sum_assignment(cost)
    exact = cost[rows, cols].mean()
    for seed in (0, 1):
        est = WassersteinEstimator(early_stopping=False, random_state=seed).fit(*_stack(P, Q))
        assert est.lower_bound_ <= exact + 1e-9
        assert est.distance_ == pytest.approx(exact, rel=0.05)


@pytest.mark.parametrize("scale", [5e-324, 1e-318, 1e-40, 1e37, 1e300])
def test_weights_of_any_scale_train_the_same_critic_and_bound_soundly(scale):
    """Only ratios of weights matter. Subnormal ones made the weighted means'
    rounding an absolute error the relative bound did not hold (lower_bound_
    above the exact W1); float32 training saw 1e-40 as 0 and 1e37's sums as inf."""
    rng = np.random.RandomState(0)
    P = rng.normal(size=(100, 2))
    model = dict(hidden_layer_sizes=(16,), early_stopping=False, random_state=0)

    def fit(Q, **params):
        X, y = _stack(P, Q)
        weights = np.where(y == 0, scale, 1.37 * scale)  # uniform within each set
        weighted = WassersteinEstimator(**model, **params).fit(X, y, sample_weight=weights)
        return weighted, WassersteinEstimator(**model, **params).fit(X, y)

    Q = P + 1e-9
    weighted, _ = fit(Q, max_epochs=5)
    coupling = np.mean(np.linalg.norm(Q - P, axis=1))  # moving each row to its copy: >= W1
    assert weighted.lower_bound_ <= coupling * (1 + 1e-9)
    weighted, unweighted = fit(rng.normal(size=(100, 2)) + np.array([1.0, 0.0]))
    assert weighted.distance_ == pytest.approx(unweighted.distance_, rel=1e-3)


def test_identical_sets_are_at_distance_zero():
    P = np.random.RandomState(3).normal(size=(500, 3))
    est = WassersteinEstimator(random_state=0).fit(*_stack(P, P))
    assert abs(est.distance_) <= 1e-6 * np.sqrt(3)


def test_swapping_the_sets_flips_the_potential_and_keeps_the_distance():
    rng = np.random.RandomState(4)
    P, Q = rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)) * 0.5 + [2.0, 1.0]
    X, y = _stack(P, Q)
    forward = WassersteinEstimator(random_state=0).fit(X, y)
    backward = WassersteinEstimator(random_state=0).fit(X, 1 - y)
    assert backward.distance_ == pytest.approx(forward.distance_, rel=0.03)
    f, g = forward.decision_function(X), backward.decision_function(X)
    assert np.corrcoef(f, g)[0, 1] < -0.98
    assert np.mean(forward.predict(X) == y) > 0.9  # predict: the nearer set


def test_score_is_the_dual_value_and_selects_critics():
    rng = np.random.RandomState(5)
    X, y = _stack(rng.normal(size=(600, 4)), rng.normal(size=(600, 4)) + 1.0)
    est = WassersteinEstimator(max_epochs=30, random_state=0).fit(X, y)
    f = est.decision_function(X)
    assert est.score(X, y) == pytest.approx(f[y == 1].mean() - f[y == 0].mean(), rel=1e-9)
    assert est.score(X, y) == pytest.approx(est.distance_, rel=1e-9)
    scores = cross_val_score(WassersteinEstimator(max_epochs=10, random_state=0), X, y, cv=2)
    assert np.all(scores > 1.0)  # true W1 = 2
    grid = GridSearchCV(
        WassersteinEstimator(max_epochs=10, random_state=0),
        {"hidden_layer_sizes": [(2,), (64,)]},
        cv=2,
    ).fit(X, y)
    assert grid.best_params_ == {"hidden_layer_sizes": (64,)}


def test_hinge_makes_the_critic_a_classifier_too():
    rng = np.random.RandomState(6)
    X, y = _stack(rng.normal(size=(500, 2)), rng.normal(size=(500, 2)) + np.array([4.0, 0.0]))
    est = WassersteinEstimator(alpha=10.0, margin=0.5, random_state=0).fit(X, y)
    assert est.offset_ == 0.0
    assert np.mean(est.predict(X) == y) > 0.97
    assert est.distance_ == pytest.approx(4.0, rel=0.1)


@pytest.mark.parametrize(
    "X_p, X_q, message",
    [
        (np.zeros((5, 2)), np.zeros((5, 3)), "same number of features"),
        (np.zeros((1, 2)), np.ones((5, 2)), "at least 2 samples"),
        (np.full((5, 2), np.nan), np.ones((5, 2)), "NaN"),
        (np.full((5, 2), np.inf), np.ones((5, 2)), "infinity"),
    ],
)
def test_bad_sample_sets_are_refused(X_p, X_q, message):
    with pytest.raises(ValueError, match=message):
        wasserstein_distance(X_p, X_q, max_epochs=1)


def test_bad_labels_and_weights_are_refused():
    X = np.random.RandomState(0).normal(size=(12, 2))
    est = WassersteinEstimator(max_epochs=1)
    with pytest.raises(ValueError, match="exactly two labels"):
        est.fit(X, np.zeros(12))
    with pytest.raises(ValueError, match="exactly two labels"):
        est.fit(X, np.arange(12) % 3)
    y = np.arange(12) % 2
    with pytest.raises(ValueError, match="Negative values"):
        est.fit(X, y, sample_weight=-np.ones(12))
    with pytest.raises(ValueError, match="exactly two labels"):
        est.fit(X, y, sample_weight=(y == 0).astype(float))  # set 1 weighs nothing
    with pytest.raises(ValueError, match="non-zero"):
        est.fit(X, y, sample_weight=np.zeros(12))
    with pytest.raises(ValueError, match="sample_weight"):
        wasserstein_distance(X[:6], X[6:], np.ones(5), max_epochs=1)


def test_reproducible_and_picklable():
    import pickle

    rng = np.random.RandomState(7)
    X, y = _stack(rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) + 1.0)
    a = WassersteinEstimator(max_epochs=15, random_state=0).fit(X, y)
    b = WassersteinEstimator(max_epochs=15, random_state=0).fit(X, y)
    assert a.distance_ == b.distance_
    restored = pickle.loads(pickle.dumps(a))
    assert np.array_equal(restored.decision_function(X), a.decision_function(X))
    assert restored.distance_ == a.distance_


def test_warm_start_continues_the_critic():
    rng = np.random.RandomState(8)
    X, y = _stack(rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) + 1.0)
    est = WassersteinEstimator(
        max_epochs=4, warm_start=True, early_stopping=False, n_iter_no_change=100, random_state=0
    )
    est.fit(X, y).fit(X, y)
    assert est.n_iter_ == 8 == len(est.history_)
    with pytest.raises(ValueError, match="warm_start"):
        est.fit(X, np.where(y == 1, 5, 0))
