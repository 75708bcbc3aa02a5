"""Bad input gets a clear error or a sound answer, never garbage (issue 13, points 8 to 10)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_blobs

from sklip import LipschitzClassifier, WassersteinEstimator, wasserstein_distance


def _small(**params):
    return LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=3, random_state=0, **params)


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(120, centers=2, n_features=3, random_state=0)


@pytest.mark.parametrize("margin", [1e-307, 5e-324])
def test_extreme_margins_give_finite_probabilities(blobs, margin):
    X, y = blobs
    clf = _small(margin=margin).fit(X, y)
    proba = clf.predict_proba(X)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1)
    assert np.isfinite(clf.temperature_) and clf.temperature_ > 0


def test_log_probabilities_stay_finite_far_from_the_boundary(blobs):
    X, y = blobs
    clf = _small().fit(X, y)
    far = X * 1e30
    log_proba = clf.predict_log_proba(far)
    assert np.all(np.isfinite(log_proba))
    assert np.allclose(np.exp(log_proba), clf.predict_proba(far))


def test_a_margin_float32_training_cannot_hold_is_named(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="margin"):
        _small(margin=1e300).fit(X, y)


def test_outputs_at_the_edge_of_float64_are_never_nan(blobs):
    X, y = blobs
    clf = _small().fit(X, y)
    rng = np.random.RandomState(0)
    extreme = np.sign(rng.normal(size=(200, 3))) * rng.choice([1e300, 1e307, 1.7e308], (200, 3))
    try:
        scores = clf.decision_function(extreme)
    except ValueError as error:  # an output that overflowed to NaN is named, not returned
        assert "overflow" in str(error)
        return
    assert not np.isnan(scores).any()
    radius = clf.certified_radius(extreme)
    assert np.all(np.isfinite(radius) & (radius >= 0))
    assert np.all(radius[~np.isfinite(scores)] == 0)


@pytest.mark.parametrize("seed", range(8))
def test_w1_estimates_are_never_negative(seed):
    rng = np.random.RandomState(seed)
    P = rng.normal(size=(40, 2))
    Q = P + np.array([0.3, 0.0])
    estimate = wasserstein_distance(P, Q, hidden_layer_sizes=(8,), max_epochs=3, random_state=seed)
    assert estimate >= 0


def test_w1_of_two_points_per_set_without_early_stopping_is_not_negative():
    P, Q = np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[0.0, 1.0], [1.0, 1.0]])
    for seed in range(5):
        est = WassersteinEstimator(early_stopping=False, max_epochs=2, random_state=seed)
        est.fit(np.vstack([P, Q]), [0, 0, 1, 1])
        assert est.distance_ >= 0 and 0 <= est.lower_bound_ <= 1.0  # true W1 = 1
        # The published critic is oriented: larger on classes_[1].
        potential = est.decision_function(np.vstack([P, Q]))
        assert potential[2:].mean() >= potential[:2].mean()


def test_w1_of_constant_sets_far_apart_is_sound():
    P, Q = np.zeros((5, 2)), np.full((5, 2), 1e30)
    try:
        est = WassersteinEstimator(max_epochs=2, random_state=0).fit(
            np.vstack([P, Q]), np.repeat([0, 1], 5)
        )
    except ValueError as error:  # training may diverge at this scale: then it says so
        assert "diverged" in str(error) or "rescale" in str(error)
        return
    true = np.sqrt(2) * 1e30
    assert 0 <= est.distance_ and est.lower_bound_ <= true


def test_w1_score_needs_both_sets():
    X, y = make_blobs(100, centers=2, random_state=0)
    est = WassersteinEstimator(hidden_layer_sizes=(8,), max_epochs=2, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="both sample sets"):
        est.score(X[y == 0], y[y == 0])


@pytest.fixture(scope="module")
def images():
    X, y = load_digits(return_X_y=True)
    return X[:200].reshape(-1, 1, 8, 8), y[:200]


def test_images_of_another_shape_than_image_shape_are_refused(images):
    X, y = images
    clf = LipschitzClassifier(image_shape=(1, 8, 8), conv_channels=(4,), hidden_layer_sizes=(8,),
                              max_epochs=1, random_state=0)  # fmt: skip
    channels_last = X.transpose(0, 2, 3, 1).reshape(-1, 8, 8, 1)
    with pytest.raises(ValueError, match="image_shape"):
        clf.fit(channels_last, y)
    with pytest.raises(ValueError, match="image_shape"):
        clf.fit(X.reshape(-1, 1, 4, 16), y)
    clf.fit(X, y)
    with pytest.raises(ValueError, match="image_shape"):
        clf.predict(X.reshape(-1, 2, 8, 4))


@pytest.mark.parametrize("shape", [(1, 8.0, 8), (True, 8, 8), (1, 8, 8.5), (1, 8), "188"])
def test_image_shape_must_hold_integers(images, shape):
    X, y = images
    clf = LipschitzClassifier(image_shape=shape, max_epochs=1)
    with pytest.raises((ValueError, TypeError), match="image_shape"):
        clf.fit(X.reshape(len(X), -1), y)


def test_numpy_integers_are_valid_widths(blobs):
    X, y = blobs
    clf = LipschitzClassifier(hidden_layer_sizes=np.array([8, 8]), max_epochs=1, random_state=0)
    clf.fit(X, y)
    clf = LipschitzClassifier(hidden_layer_sizes=(np.int64(8),), max_epochs=1).fit(X, y)
    assert clf.module_[0].out_features == 8


def test_a_validation_split_too_small_names_the_parameters():
    X, y = make_blobs(12, centers=3, random_state=0)
    clf = _small(early_stopping=True, validation_fraction=0.1)
    with pytest.raises(ValueError, match="validation_fraction"):
        clf.fit(X, y)


def test_a_held_out_part_without_weight_is_an_error_not_a_zero_division():
    X, y = make_blobs(100, centers=2, random_state=0)
    weights = np.ones(100)
    weights[::2] = 0.0
    clf = _small(early_stopping=True, validation_fraction=0.02)  # 2 held-out rows: weightless?
    for seed in range(20):
        clf.set_params(random_state=seed)
        try:
            clf.fit(X, y, sample_weight=weights)
        except ValueError as error:
            assert "validation_fraction" in str(error)
            return
    pytest.skip("no split without held-out weight was drawn")


def test_integers_float64_cannot_hold_are_refused(blobs):
    X, y = blobs
    big = (X * 1e3).astype(np.int64)
    big[0, 0] = 2**60 + 1
    with pytest.raises(ValueError, match="2\\*\\*53"):
        _small().fit(big, y)


def test_long_doubles_are_refused(blobs):
    X, y = blobs
    with pytest.raises(TypeError, match="float64"):
        _small().fit(X.astype(np.longdouble), y)


def test_float32_inputs_are_certified_as_given(blobs):
    X, y = blobs
    clf = _small().fit(X, y)
    X32 = X.astype(np.float32)
    assert np.array_equal(clf.decision_function(X32), clf.decision_function(X32.astype(float)))


def test_radius_from_one_dimensional_outputs_is_a_named_error():
    from sklip.robustness import radius_from_outputs

    with pytest.raises(ValueError, match="outputs"):
        radius_from_outputs(np.array([1.0, -2.0]), 1.0)
    with pytest.raises(ValueError, match="error"):
        radius_from_outputs(np.array([[1.0]]), 1.0, error=np.array([-1.0]))


def test_probabilities_stay_defined_when_scores_overflow(blobs):
    X, y = blobs
    clf = _small().fit(X, y)
    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
    extreme = 1.7e308 * signs  # every corner: some score is +inf, some -inf
    scores = clf.decision_function(extreme)
    assert np.isposinf(scores).any() and np.isneginf(scores).any()
    proba = clf.predict_proba(extreme)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(extreme))
    assert not np.isnan(clf.predict_log_proba(extreme)).any()
