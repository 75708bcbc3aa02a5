"""``margin="auto"``: known answers for the margin measured from the training data.

The rule (:mod:`sklip._margin`): ``AUTO_FRACTION`` times the sample-weighted
median, over the training rows, of the distance to the nearest row of another
class (rows of weight 0 left out; if coincident rows of different labels make
the median 0, the median of the positive distances; if every distance is 0,
a margin of 1), on at most about ``AUTO_SAMPLE`` rows drawn per class.

The constants are read from :mod:`sklip._margin`, never copied here: the
answers below are distances worked out by hand, or by a brute-force oracle
written independently of the implementation (explicit differences, weighted
median in exact rational arithmetic).
"""

from __future__ import annotations

from fractions import Fraction
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import InvalidParameterError

import sklip._margin as margin_module
from sklip import LipschitzClassifier, WassersteinEstimator
from sklip._inputs import hold_out
from sklip._margin import _weighted_median, auto_margin, sample_rows

# Small and fast: only margin_ is under test, not what the network learns.
FAST = dict(hidden_layer_sizes=(8,), max_epochs=2, batch_size=64, random_state=0)


def fraction(n_classes: int = 2) -> float:
    """The fraction as the package has it now (it may still be tuned)."""
    return margin_module.margin_fraction(n_classes)


def measured(X, y, sample_weight=None, seed=0) -> float:
    """``auto_margin`` on data as a fit sees it: float64 rows, labels encoded."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.unique(y, return_inverse=True)[1]
    weights = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
    n_classes = len(np.unique(labels))
    return auto_margin(X, labels, weights, np.random.RandomState(seed), n_classes)


def blobs(n=60, n_classes=2, n_features=3, seed=0):
    """Overlapping Gaussian classes: every distance positive and distinct."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % n_classes
    return rng.normal(size=(n, n_features)) + 0.7 * y[:, None], y


def brute_force_margin(X, labels, weights) -> float:
    """The rule, written out independently: explicit differences, exact weighted median."""
    keep = weights > 0
    X, labels, weights = X[keep], labels[keep], weights[keep]
    distances = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=-1))
    distances[labels[:, None] == labels[None, :]] = np.inf
    nearest = distances.min(axis=1)
    known = np.isfinite(nearest)
    nearest, weights = nearest[known], weights[known]

    def weighted_median(values, w):
        # The smallest value with at least half of the total weight at or below it.
        total = sum(map(Fraction, w), Fraction(0))
        for value in sorted(set(values.tolist())):
            if 2 * sum(map(Fraction, w[values <= value]), Fraction(0)) >= total:
                return value
        return 0.0

    median = weighted_median(nearest, weights)
    if median == 0:
        median = weighted_median(nearest[nearest > 0], weights[nearest > 0])
    return fraction(len(np.unique(labels))) * median if median > 0 else 1.0


# ================================================================ known answers
# 1-D: class 0 at 0 and 1, class 1 at 3 and 6. Nearest other-class distances:
# 0 -> 3, 1 -> 2, 3 -> 2, 6 -> 5; sorted 2, 2, 3, 5.
LINE_X = np.array([[0.0], [1.0], [3.0], [6.0]])
LINE_Y = np.array([0, 0, 1, 1])


def test_known_answer_on_four_points():
    # Weights 1 each (total 4): 2 already has half (2 of 4) at or below it.
    assert measured(LINE_X, LINE_Y) == fraction() * 2.0
    clf = LipschitzClassifier(margin="auto", **FAST).fit(LINE_X, LINE_Y)
    assert clf.margin_ == fraction() * 2.0
    assert isinstance(clf.margin_, float)


def test_known_answer_does_not_depend_on_row_order_or_label_names():
    order = [2, 0, 3, 1]
    names = np.array(["cat", "cat", "ant", "ant"])  # ant < cat: the encoding is swapped
    assert measured(LINE_X[order], names[order]) == fraction() * 2.0
    clf = LipschitzClassifier(margin="auto", **FAST).fit(LINE_X[order], names[order])
    assert clf.margin_ == fraction() * 2.0


@pytest.mark.parametrize(
    "weights, median",
    [
        # distances (3, 2, 2, 5) for rows at (0, 1, 3, 6)
        ([1, 1, 1, 3], 3.0),  # total 6: cumulative 1, 2, 3 (at 3), 6
        ([1, 1, 1, 4], 5.0),  # total 7: cumulative 1, 2, 3 < 3.5 -> 5
        ([3, 1, 1, 1], 3.0),  # total 6: 2, 2 carry 2 < 3; with 3: 5 -> 3
        ([1, 3, 1, 1], 2.0),  # total 6: 2 carries 3 + 1
        ([0.5, 0.5, 0.5, 0.5], 2.0),  # scaling every weight changes nothing
        ([10, 1, 1, 1], 3.0),
    ],
)
def test_sample_weight_moves_the_weighted_median_as_computed_by_hand(weights, median):
    weights = np.asarray(weights, dtype=float)
    assert measured(LINE_X, LINE_Y, weights) == fraction() * median
    clf = LipschitzClassifier(margin="auto", **FAST).fit(LINE_X, LINE_Y, sample_weight=weights)
    assert clf.margin_ == fraction() * median


def test_zero_weight_rows_are_left_out_entirely():
    # A class-1 row at 1.5 would make the distances (1.5, 0.5, 2, 5): median 1.5.
    # With weight 0 it is neither a row nor anyone's nearest neighbour: 2 again.
    X = np.vstack([LINE_X, [[1.5]]])
    y = np.append(LINE_Y, 1)
    assert measured(X, y) == fraction() * 1.5  # the row does matter when weighted
    weights = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    assert measured(X, y, weights) == fraction() * 2.0
    clf = LipschitzClassifier(margin="auto", **FAST).fit(X, y, sample_weight=weights)
    assert clf.margin_ == fraction() * 2.0


def test_integer_weights_equal_repeated_rows():
    X, y = blobs(40, n_classes=3)
    weights = np.random.RandomState(1).randint(0, 4, size=len(X)).astype(float)
    weights[:3] = 1.0  # every class keeps some weight
    repeated = np.repeat(np.arange(len(X)), weights.astype(int))
    assert measured(X, y, weights) == measured(X[repeated], y[repeated])
    a = LipschitzClassifier(margin="auto", **FAST).fit(X, y, sample_weight=weights)
    b = LipschitzClassifier(margin="auto", **FAST).fit(X[repeated], y[repeated])
    assert a.margin_ == b.margin_


def test_multiclass_known_answer():
    # Three classes on a line: 0 at 0; 1 at 2 and 3; 2 at 7 and 11.
    # Nearest other-class distances: 0 -> 2; 2 -> 2; 3 -> 3; 7 -> 4; 11 -> 8.
    # Unweighted median of (2, 2, 3, 4, 8): 3.
    X = np.array([[0.0], [2.0], [3.0], [7.0], [11.0]])
    y = np.array([0, 1, 1, 2, 2])
    # More than two classes: half the binary fraction (see sklip._margin).
    assert fraction(3) == fraction(2) / 2
    assert measured(X, y) == fraction(3) * 3.0
    assert LipschitzClassifier(margin="auto", **FAST).fit(X, y).margin_ == fraction(3) * 3.0


def test_weighted_median_definition():
    assert _weighted_median(np.array([1.0, 2.0]), np.array([1.0, 1.0])) == 1.0
    assert _weighted_median(np.array([1.0, 2.0]), np.array([1.0, 1.0 + 1e-9])) == 2.0
    assert _weighted_median(np.array([3.0, 1.0, 2.0]), np.array([1.0, 1.0, 1.0])) == 2.0
    assert _weighted_median(np.array([]), np.array([])) == 0.0


# ============================================================== invariances
@pytest.mark.parametrize("scale", [1e-3, 1e3, 2.0**-20, 1e6])
def test_scale_equivariance(scale):
    X, y = blobs(80, n_classes=3)
    weights = np.linspace(0.5, 2.0, len(X))
    assert measured(scale * X, y, weights) == pytest.approx(
        scale * measured(X, y, weights), rel=1e-12
    )


@pytest.mark.parametrize("shift", [2.0**10, -(2.0**20), 2.0**30])
def test_translation_invariance_is_exact_where_the_shifted_data_are(shift):
    # Multiples of 1/8 below 8 plus a power of two: the shifted data are exact
    # in float64, so the distances, hence the margin, must be bit-identical. A
    # Unix-time column (about 2**30) once made every distance 0 (margin 1).
    rng = np.random.RandomState(0)
    X = rng.randint(0, 64, size=(200, 4)) / 8.0
    y = rng.randint(0, 3, size=200)
    assert measured(X + shift, y) == measured(X, y)


def test_translation_invariance_far_from_the_origin():
    X, y = blobs(60)
    shifted = X + np.array([1.7e9, -3e6, 1e4])  # a Unix time, a position in metres, ...
    assert measured(shifted, y) == pytest.approx(measured(X, y), rel=1e-6)
    assert measured(shifted, y) == pytest.approx(
        brute_force_margin(shifted, y, np.ones(len(y))), rel=1e-12
    )


# ================================================================ degenerate
def test_coincident_rows_of_different_labels_fall_back_to_positive_distances():
    # Class 0 at 0, 0, 4; class 1 at 0, 0, 9: distances 0, 0, 4, 0, 0, 5.
    # The median is 0; the positive distances (4, 5) have median 4.
    X = np.array([[0.0], [0.0], [4.0], [0.0], [0.0], [9.0]])
    y = np.array([0, 0, 0, 1, 1, 1])
    assert measured(X, y) == fraction() * 4.0
    clf = LipschitzClassifier(margin="auto", **FAST).fit(X, y)
    assert clf.margin_ == fraction() * 4.0


@pytest.mark.parametrize("offset", [0.0, 100.0, 1e4])
def test_coincident_rows_are_exactly_zero_apart(offset):
    # Duplicates with flipped labels, in 5-D, away from the origin: their
    # distance must be exactly 0 (not 1e-8 from |a|^2 - 2ab + |b|^2), so that
    # the fallback to the positive distances applies.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20, 5)) + offset
    y = np.arange(20) % 2
    X, y = np.vstack([X, X[:12]]), np.concatenate([y, 1 - y[:12]])
    weights = np.ones(len(X))
    expected = brute_force_margin(X, y, weights)
    assert expected > fraction() * 0.1  # the positive distances: of order 1
    assert measured(X, y) == pytest.approx(expected, rel=1e-12)


def test_all_distances_zero_gives_margin_one_and_the_fit_works():
    X = np.tile([3.0, -1.0], (12, 1))
    y = np.arange(12) % 2
    with pytest.warns(UserWarning, match="no positive distance"):
        assert measured(X, y) == 1.0
    with pytest.warns(UserWarning, match="margin_ is set to 1"):
        clf = LipschitzClassifier(margin="auto", **FAST).fit(X, y)
    assert clf.margin_ == 1.0
    assert np.isfinite(clf.decision_function(X)).all()
    assert np.isfinite(clf.predict_proba(X)).all()
    assert np.isfinite(clf.temperature_)
    assert all(np.isfinite(record["loss"]) for record in clf.history_)


# ============================================================== subsampling
@pytest.fixture
def small_sample(monkeypatch):
    """AUTO_SAMPLE patched to 50: the subsampling path on small data."""
    monkeypatch.setattr(margin_module, "AUTO_SAMPLE", 50)
    return 50


def rare_class_data(n=1000, seed=0):
    """998 rows of class 0 around the origin, 2 of class 1 far away."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 2))
    y = np.zeros(n, dtype=int)
    y[[17, 512]] = 1
    X[y == 1] += 10.0
    return X, y


def test_subsample_keeps_every_class_and_only_weighted_rows(small_sample):
    _, y = rare_class_data()
    weights = np.ones(len(y))
    weights[::3] = 0.0
    weights[[17, 512]] = 1.0
    rows = sample_rows(y, weights, np.random.RandomState(0))
    assert set(y[rows]) == {0, 1}
    assert np.isin([17, 512], rows).any()  # the rare class: at least one of its 2 rows
    assert np.all(weights[rows] > 0)
    assert len(np.unique(rows)) == len(rows)
    n_classes = 2
    assert abs(len(rows) - small_sample) <= n_classes


def test_subsampled_margin_is_the_rule_on_the_drawn_rows(small_sample):
    X, y = rare_class_data()
    weights = np.random.RandomState(2).uniform(0.5, 2.0, size=len(y))
    rows = sample_rows(y, weights, np.random.RandomState(0))
    assert len(rows) < len(y)
    expected = brute_force_margin(X[rows], y[rows], weights[rows])
    assert measured(X, y, weights, seed=0) == pytest.approx(expected, rel=1e-12)
    # Without the rare class every distance would be unknown and the margin 1.
    assert expected != 1.0


def test_subsampling_is_deterministic_and_uses_random_state(small_sample):
    X, y = blobs(1000, n_classes=3)
    params = dict(FAST, max_epochs=1, margin="auto")
    margins = []
    for seed in (0, 0, 1, 2):
        margins.append(LipschitzClassifier(**dict(params, random_state=seed)).fit(X, y).margin_)
    assert margins[0] == margins[1]
    assert len(set(margins[1:])) > 1  # the draw follows random_state
    # The fit draws the subsample from its RandomState(random_state) first.
    assert margins[0] == measured(X, y, seed=0)


def test_fit_leaves_the_global_random_states_alone(small_sample):
    # The legacy global RandomState is the one scikit-learn's random_state=None
    # draws from: a fit with an int random_state must not touch it.
    X, y = blobs(400)
    numpy_state, torch_state = np.random.get_state(), torch.get_rng_state()  # noqa: NPY002
    LipschitzClassifier(margin="auto", **dict(FAST, max_epochs=1)).fit(X, y)
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1])
    assert after[2:] == numpy_state[2:]
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_no_draw_when_every_row_fits():
    X, y = blobs(200, n_classes=3)
    weights = np.ones(len(y))
    weights[:5] = 0.0
    rng = mock.Mock(spec=np.random.RandomState)
    labels = np.unique(y, return_inverse=True)[1]
    auto_margin(X, labels, weights, rng)
    assert rng.method_calls == []
    margins = {
        LipschitzClassifier(margin="auto", **dict(FAST, random_state=seed)).fit(X, y).margin_
        for seed in (0, 1, 2)
    }
    assert margins == {measured(X, y)}


def test_no_draw_means_auto_trains_exactly_like_its_measured_value():
    # Nothing drawn: the initialisation and batch order are those of the same
    # fit with the measured margin given explicitly, bit for bit.
    X, y = blobs(100)
    auto = LipschitzClassifier(margin="auto", **FAST).fit(X, y)
    explicit = LipschitzClassifier(margin=auto.margin_, **FAST).fit(X, y)
    assert np.array_equal(auto.decision_function(X), explicit.decision_function(X))
    assert auto.temperature_ == explicit.temperature_


# ========================================================== estimator level
def test_margin_is_measured_on_the_training_data():
    X, y = blobs(90, n_classes=3)
    labels = np.array(["x", "y", "z"])[y]
    weights = np.linspace(0.2, 3.0, len(X))
    clf = LipschitzClassifier(margin="auto", **FAST).fit(X, labels, sample_weight=weights)
    assert clf.margin_ == measured(X, y, weights)
    assert clf.margin_ == pytest.approx(brute_force_margin(X, y, weights), rel=1e-12)


def test_float32_input_is_measured_exactly():
    X, y = blobs(60)
    X32 = X.astype(np.float32)
    clf = LipschitzClassifier(margin="auto", **FAST).fit(X32, y)
    assert clf.margin_ == measured(X32.astype(np.float64), y)


def test_explicit_margin_is_used_verbatim():
    X, y = blobs(60)
    clf = LipschitzClassifier(margin=0.5, **FAST).fit(X, y)
    assert clf.margin_ == 0.5 and isinstance(clf.margin_, float)
    clf.set_params(margin="auto").fit(X, y)
    assert clf.margin_ == measured(X, y)
    clf.set_params(margin=0.5).fit(X, y)
    assert clf.margin_ == 0.5


def test_clone_keeps_auto_and_is_unfitted():
    X, y = blobs(60)
    fitted = LipschitzClassifier(margin="auto", **FAST).fit(X, y)
    copy = clone(fitted)
    assert copy.margin == "auto"
    assert not hasattr(copy, "margin_")
    assert copy.fit(X, y).margin_ == fitted.margin_


def test_grid_search_over_auto_and_a_number():
    X, y = blobs(80)
    X = 4.0 * X  # the measured margin is then far from 0.5
    search = GridSearchCV(
        LipschitzClassifier(**FAST), {"margin": ["auto", 0.5]}, cv=2, error_score="raise"
    ).fit(X, y)
    assert search.cv_results_["param_margin"].tolist() == ["auto", 0.5]
    chosen = search.best_params_["margin"]
    expected = measured(X, y) if chosen == "auto" else 0.5
    assert search.best_estimator_.margin_ == expected
    assert search.best_estimator_.margin == chosen
    # Each value forced: best_estimator_ (refitted on all of X) has the right margin_.
    for value, expected in (("auto", measured(X, y)), (0.5, 0.5)):
        only = GridSearchCV(LipschitzClassifier(**FAST), {"margin": [value]}, cv=2).fit(X, y)
        assert only.best_estimator_.margin_ == expected


def test_in_a_pipeline_the_margin_is_measured_on_the_scaled_features():
    X, y = blobs(80)
    X = X * np.array([1.0, 1000.0, 0.01]) + np.array([0.0, 5e4, -3.0])
    pipe = make_pipeline(StandardScaler(), LipschitzClassifier(margin="auto", **FAST)).fit(X, y)
    scaled = StandardScaler().fit_transform(X)
    assert pipe[-1].margin_ == measured(scaled, y)
    assert pipe[-1].margin_ != pytest.approx(measured(X, y), rel=0.1)


@pytest.mark.parametrize("sample_weight", [None, "varied"])
def test_with_early_stopping_the_margin_is_measured_on_the_training_part(sample_weight):
    X, y = blobs(80)
    weights = np.ones(len(y)) if sample_weight is None else np.linspace(0.5, 2.0, len(y))
    clf = LipschitzClassifier(
        margin="auto", early_stopping=True, validation_fraction=0.25, **FAST
    ).fit(X, y, sample_weight=None if sample_weight is None else weights)
    # The fit's own split: hold_out with RandomState(random_state), drawn first.
    rng = check_random_state(0)
    train, _ = hold_out(X, y, weights, 0.25, rng)
    assert len(train[0]) == 60
    assert clf.margin_ == auto_margin(*train, rng)
    assert clf.margin_ == pytest.approx(brute_force_margin(*train), rel=1e-12)
    assert clf.margin_ != measured(X, y, weights)  # not the margin of all the rows


def test_partial_fit_keeps_the_first_chunks_margin():
    X, y = blobs(120)
    first, second = slice(0, 60), slice(60, 120)
    clf = LipschitzClassifier(margin="auto", **FAST)
    clf.partial_fit(X[first], y[first], classes=[0, 1])
    expected = measured(X[first], y[first])
    assert clf.margin_ == expected
    clf.partial_fit(10.0 * X[second], y[second])  # a chunk ten times as spread out
    assert clf.margin_ == expected
    # fit starts afresh and measures again.
    clf.fit(10.0 * X, y)
    assert clf.margin_ == measured(10.0 * X, y)


def test_partial_fit_uses_an_explicit_margin():
    X, y = blobs(120)
    clf = LipschitzClassifier(margin=0.5, **FAST)
    clf.partial_fit(X[:60], y[:60], classes=[0, 1])
    assert clf.margin_ == 0.5
    clf.set_params(margin=0.75).partial_fit(X[60:], y[60:])
    assert clf.margin_ == 0.75


def test_partial_fit_auto_margin_with_weights():
    clf = LipschitzClassifier(margin="auto", **FAST)
    clf.partial_fit(LINE_X, LINE_Y, classes=[0, 1], sample_weight=[1.0, 1.0, 1.0, 4.0])
    assert clf.margin_ == fraction() * 5.0


def test_a_first_chunk_of_one_class_warns_that_the_margin_is_not_measured():
    clf = LipschitzClassifier(margin="auto", **FAST)
    with pytest.warns(UserWarning, match='margin="auto" found no positive distance'):
        clf.partial_fit(LINE_X[:2], LINE_Y[:2], classes=[0, 1])
    assert clf.margin_ == 1.0


@pytest.mark.parametrize("early_stopping", [False, True])
def test_wasserstein_estimator_measures_its_margin(early_stopping):
    X, y = blobs(80)
    est = WassersteinEstimator(
        margin="auto", alpha=1.0, early_stopping=early_stopping, **dict(FAST, batch_size=32)
    ).fit(X, y)
    if early_stopping:
        rng = check_random_state(0)
        train, _ = hold_out(X, y, np.ones(len(y)), est.validation_fraction, rng)
        assert est.margin_ == auto_margin(*train, rng)
    else:
        assert est.margin_ == measured(X, y)
    assert np.isfinite(est.distance_)


def test_wasserstein_known_answer_and_explicit_margin():
    est = WassersteinEstimator(margin="auto", alpha=1.0, early_stopping=False, **FAST)
    assert est.fit(LINE_X, LINE_Y).margin_ == fraction() * 2.0
    est.set_params(margin=0.3).fit(LINE_X, LINE_Y)
    assert est.margin_ == 0.3
    streamed = WassersteinEstimator(margin="auto", alpha=1.0, **FAST)
    streamed.partial_fit(LINE_X, LINE_Y, classes=[0, 1])
    assert streamed.margin_ == fraction() * 2.0


# ================================================================ bad values
@pytest.mark.parametrize("margin", ["median", "AUTO", -1, -1.0, 0, 0.0, None])
def test_bad_margins_are_refused_by_parameter_validation(margin):
    X, y = blobs(40)
    clf = LipschitzClassifier(margin=margin, **FAST)
    with pytest.raises(InvalidParameterError, match="'margin' parameter") as error:
        clf.fit(X, y)
    assert isinstance(error.value, ValueError)
    assert "auto" in str(error.value)  # the message lists the accepted string
    assert not hasattr(clf, "margin_") and not hasattr(clf, "network_")
    assert clf.get_params()["margin"] == margin


@pytest.mark.parametrize("margin", ["median", -1.0])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_a_bad_margin_leaves_a_fitted_estimator_unchanged(method, margin):
    # scikit-learn's _fit_context skips the parameter validation of partial_fit
    # on a fitted estimator: margin="median" was then measured like "auto".
    X, y = blobs(40)
    clf = LipschitzClassifier(margin="auto", **FAST).fit(X, y)
    before_margin, before_scores = clf.margin_, clf.decision_function(X)
    before = set(vars(clf))
    clf.set_params(margin=margin)
    kwargs = {"classes": [0, 1]} if method == "partial_fit" else {}
    with pytest.raises(InvalidParameterError, match="'margin' parameter"):
        getattr(clf, method)(X, y, **kwargs)
    assert set(vars(clf)) == before
    assert clf.margin_ == before_margin
    assert np.array_equal(clf.decision_function(X), before_scores)


# ========================================================== property (hypothesis)
# As in tests/test_properties.py: the loaded profile (tests/conftest.py: "ci",
# deterministic and few examples, or "thorough") sets the number of examples.
_BASE_EXAMPLES = settings.default.max_examples


def bounded(share: float) -> settings:
    return settings(
        max_examples=max(1, round(share * _BASE_EXAMPLES)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@st.composite
def weighted_two_class_data(draw):
    """Small integer grids (ties and coincident rows are common), scaled and shifted.

    Weights are multiples of 1/16 (sums exact in float64), some zero; both
    classes keep positive weight.
    """
    n = draw(st.integers(2, 24))
    d = draw(st.integers(1, 3))
    grid = np.array(draw(st.lists(st.integers(-3, 3), min_size=n * d, max_size=n * d)))
    scale = draw(st.sampled_from([1.0, 1e-3, 0.37, 250.0]))
    shift = draw(st.sampled_from([0.0, 1e4, -(2.0**30)]))
    X = grid.reshape(n, d) * scale + shift
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    weights = np.array(draw(st.lists(st.integers(0, 48), min_size=n, max_size=n))) / 16.0
    assume(all(weights[y == label].sum() > 0 for label in (0, 1)))
    return X, y, weights


@bounded(3.0)
@example(data=(LINE_X, LINE_Y, np.ones(4)))
@given(data=weighted_two_class_data())
def test_auto_margin_matches_a_brute_force_oracle(data):
    X, y, weights = data
    assert auto_margin(X, y, weights, np.random.RandomState(0)) == pytest.approx(
        brute_force_margin(X, y, weights), rel=1e-12
    )


@bounded(1.0)
@given(data=weighted_two_class_data())
def test_fitted_margin_matches_a_brute_force_oracle(data):
    X, y, weights = data
    params = dict(FAST, hidden_layer_sizes=(4,), max_epochs=1)
    clf = LipschitzClassifier(margin="auto", **params).fit(X, y, sample_weight=weights)
    assert clf.margin_ == pytest.approx(brute_force_margin(X, y, weights), rel=1e-12)
