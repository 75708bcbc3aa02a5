"""wasserstein_test: null calibration, coverage of the confidence bound, power, bad input."""

import numpy as np
import pytest
import torch

from sklip import wasserstein_test
from sklip._two_sample import _permutation_pvalue

CHEAP = dict(hidden_layer_sizes=(16, 16), max_epochs=5, batch_size=256)


def test_the_statistic_and_bound_match_a_known_translation():
    rng = np.random.RandomState(0)
    P = rng.normal(size=(2000, 2))
    Q = rng.normal(size=(2000, 2)) + np.array([0.6, 0.8])  # W1 = 1 exactly (a translation)
    result = wasserstein_test(P, Q, random_state=0)
    assert result.statistic == pytest.approx(1.0, rel=0.05)
    assert 0.85 < result.confidence_lower_bound < 1.0
    assert result.pvalue == pytest.approx(1 / 1000)  # no permutation comes close
    assert result.n_test == (1000, 1000) and result.confidence_level == 0.95


def test_p_values_are_calibrated_under_the_null():
    # Same distribution: the permutation p-value is exact given the critic, so
    # P(p <= a) <= a at every level a (up to the draws' sampling error).
    pvalues = []
    for seed in range(60):
        rng = np.random.RandomState(seed)
        P, Q = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
        result = wasserstein_test(P, Q, random_state=seed, n_permutations=199, **CHEAP)
        pvalues.append(result.pvalue)
    pvalues = np.array(pvalues)
    for level in (0.1, 0.25, 0.5):
        # 3 standard errors of a binomial share over 60 draws.
        assert np.mean(pvalues <= level) <= level + 3 * np.sqrt(level * (1 - level) / 60)
    assert np.mean(pvalues <= 0.5) >= 0.5 - 3 * np.sqrt(0.25 / 60)  # and not all near 1


def test_confidence_bound_covers_the_true_distance():
    # 1-D shift by 0.5: W1 = 0.5, and the optimal critic (the identity) is easy to
    # learn, so the held-out statistic is nearly unbiased for W1 itself and the
    # bound is near its nominal level rather than trivially conservative.
    well_trained = dict(hidden_layer_sizes=(8,), max_epochs=60, batch_size=32,
                        early_stopping=False)  # fmt: skip
    covered, statistics, bounds = [], [], []
    for seed in range(40):
        rng = np.random.RandomState(100 + seed)
        P, Q = rng.normal(size=(80, 1)), rng.normal(size=(80, 1)) + 0.5
        result = wasserstein_test(
            P, Q, random_state=seed, confidence_level=0.9, n_permutations=9, **well_trained
        )
        covered.append(result.confidence_lower_bound <= 0.5)
        statistics.append(result.statistic)
        bounds.append(result.confidence_lower_bound)
    assert np.mean(covered) >= 0.9 - 3 * np.sqrt(0.09 / 40)
    assert np.mean(statistics) == pytest.approx(0.5, abs=0.05)  # unbiased, on held-out rows
    assert np.mean(bounds) > 0.15  # informative, not a bound stuck at 0


def test_a_shift_is_detected():
    rng = np.random.RandomState(1)
    P, Q = rng.normal(size=(150, 16)), rng.normal(size=(150, 16)) + 0.5 / np.sqrt(16) * 4
    result = wasserstein_test(P, Q, random_state=0, max_epochs=20)
    assert result.pvalue <= 0.01 and result.confidence_lower_bound > 0


def test_permutation_pvalue_counts_the_permutations_that_reach_the_statistic():
    # Two rows of each set, the potential separating them perfectly: of the 6
    # ways to label two of four rows "Q", one reaches the observed value.
    potential, labels = np.array([0.0, 0.0, 1.0, 1.0]), np.array([0, 0, 1, 1])
    rng = np.random.RandomState(0)
    pvalue = _permutation_pvalue(potential, labels, 1.0, 6000, rng)
    assert pvalue == pytest.approx(1 / 6, abs=0.015)
    # A constant critic: every permutation ties with the observed 0, p = 1.
    assert _permutation_pvalue(np.ones(4), labels, 0.0, 50, rng) == 1.0


def test_same_seed_same_result_and_no_global_state_touched():
    rng = np.random.RandomState(0)
    P, Q = rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) + 1.0
    P_before, Q_before = P.copy(), Q.copy()
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002
    first = wasserstein_test(P, Q, random_state=3, **CHEAP)
    assert wasserstein_test(P, Q, random_state=3, **CHEAP) == first
    assert np.array_equal(P, P_before) and np.array_equal(Q, Q_before)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(X_q=np.zeros((10, 3))), "same number of features"),
        (dict(X_p=np.zeros((9, 2))), "at least 10 rows"),
        (dict(X_p=np.full((10, 2), np.nan)), "NaN"),
        (dict(test_fraction=1.0), "test_fraction"),
        (dict(confidence_level=0.0), "confidence_level"),
        (dict(n_permutations=0), "n_permutations"),
        (dict(n_permutations=2.5), "n_permutations"),
    ],
)
def test_bad_input_gets_a_clear_error(kwargs, message):
    call = dict(X_p=np.zeros((10, 2)), X_q=np.ones((10, 2)), **CHEAP)
    call.update(kwargs)
    X_p, X_q = call.pop("X_p"), call.pop("X_q")
    with pytest.raises(ValueError, match=message):
        wasserstein_test(X_p, X_q, **call)


def test_estimator_confidence_bound_covers_the_population_distance():
    # Half the held-out rows chose the bound's critic, the other half bounds it.
    from sklip import WassersteinEstimator

    bounds = []
    for seed in range(30):
        rng = np.random.RandomState(200 + seed)
        P, Q = rng.normal(size=(2000, 1)), rng.normal(size=(2000, 1)) + 0.5
        X, y = np.vstack([P, Q]), np.repeat([0, 1], 2000)
        est = WassersteinEstimator(
            hidden_layer_sizes=(8,), max_epochs=20, batch_size=256, random_state=seed
        ).fit(X, y)
        bounds.append(est.confidence_lower_bound_)
    bounds = np.array(bounds)
    assert np.mean(bounds <= 0.5) >= 0.95 - 3 * np.sqrt(0.05 * 0.95 / 30)
    assert np.mean(bounds) > 0.2  # informative: 400 held-out rows per set


def test_estimator_confidence_bound_needs_untouched_held_out_rows():
    from sklip import WassersteinEstimator

    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(60, 2)), rng.normal(size=(60, 2)) + 1])
    y = np.repeat([0, 1], 60)
    est = WassersteinEstimator(max_epochs=3, random_state=0).fit(X, y)
    assert 0 <= est.confidence_lower_bound_ <= est.validation_distance_
    est.set_params(warm_start=True).fit(X, y)  # started from a critic that saw every row
    assert np.isnan(est.confidence_lower_bound_)
    est = WassersteinEstimator(max_epochs=3, early_stopping=False, random_state=0).fit(X, y)
    assert not hasattr(est, "confidence_lower_bound_")  # no held-out rows: no bound


def test_estimator_confidence_bound_is_nan_without_two_bounding_rows_per_set():
    # 10 rows per set hold out 2 of each: one chooses, one would bound, and a
    # standard error needs two. No bound rather than one from a single row.
    from sklip import WassersteinEstimator

    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(10, 2)), rng.normal(size=(10, 2)) + 1])
    y = np.repeat([0, 1], 10)
    est = WassersteinEstimator(max_epochs=3, random_state=0).fit(X, y)
    assert np.isnan(est.confidence_lower_bound_) and np.isfinite(est.validation_distance_)
    est = WassersteinEstimator(max_epochs=3, validation_fraction=0.4, random_state=0).fit(X, y)
    assert np.isfinite(est.confidence_lower_bound_) and est.confidence_lower_bound_ >= 0
