"""sklip.robustness on bad and awkward inputs: clear errors, exact budgets, no mutation.

Small, quickly trained models: these tests check the functions' contracts, not
the quality of the certificates (tests/test_classifier_robustness.py does that).
"""


import matplotlib
import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs, make_moons
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklip import LipschitzClassifier
from sklip._attacks import _tightness, _within_budget
from sklip._pipeline import scoring_module
from sklip.robustness import (
    CertifiedAccuracyDisplay,
    certified_accuracy,
    certified_radius,
    counterfactual,
    pgd_attack,
)

matplotlib.use("Agg")

SMALL = dict(hidden_layer_sizes=(16,), max_epochs=20, random_state=0)


@pytest.fixture(scope="module")
def binary():
    X, y = make_moons(120, noise=0.2, random_state=0)
    return LipschitzClassifier(**SMALL).fit(X, y), X, y


@pytest.fixture(scope="module")
def three_classes():
    X, y = make_blobs(120, centers=3, n_features=4, random_state=0)
    return LipschitzClassifier(**SMALL).fit(X, y), X, y


@pytest.fixture(scope="module")
def pipeline():
    X, y = make_moons(120, noise=0.2, random_state=0)
    X = X * [1.0, 100.0] + [5.0, -300.0]
    return make_pipeline(StandardScaler(), LipschitzClassifier(**SMALL)).fit(X, y), X, y


@pytest.fixture(params=["binary", "three_classes", "pipeline"])
def model(request):
    return request.getfixturevalue(request.param)


# ------------------------------------------------------------------ labels y
@pytest.mark.parametrize(
    "make_y, unknown",
    [
        (lambda y: np.where(y == 0, 7, y), "7"),
        (lambda y: y.astype(str), "'0'"),
        (lambda y: y + 0.5, "0.5"),
    ],
    ids=["unknown-int", "strings-for-ints", "floats"],
)
def test_labels_not_in_classes_are_refused_and_named(model, make_y, unknown):
    estimator, X, y = model
    bad = make_y(y)
    with pytest.raises(ValueError, match=rf"\by\b.*{unknown}"):
        pgd_attack(estimator, X, bad, 0.1, steps=2, restarts=0)
    with pytest.raises(ValueError, match=rf"\by\b.*{unknown}"):
        certified_accuracy(estimator, X, bad, 0.1)


@pytest.mark.parametrize(
    "make_y",
    [lambda y: y[:-1], lambda y: y[:, None], lambda y: y[0], lambda y: np.r_[y, y]],
    ids=["short", "column", "scalar", "long"],
)
def test_labels_of_the_wrong_shape_are_refused(binary, make_y):
    clf, X, y = binary
    with pytest.raises(ValueError, match=r"\by\b"):
        pgd_attack(clf, X, make_y(y), 0.1, steps=2, restarts=0)
    with pytest.raises(ValueError, match=r"\by\b"):
        certified_accuracy(clf, X, make_y(y), 0.1)


# -------------------------------------------------------- attack parameters
@pytest.mark.parametrize(
    "params, error, name",
    [
        (dict(steps=0), ValueError, "steps"),
        (dict(steps=-3), ValueError, "steps"),
        (dict(steps=2.5), TypeError, "steps"),
        (dict(steps="5"), TypeError, "steps"),
        (dict(steps=True), TypeError, "steps"),
        (dict(restarts=-1), ValueError, "restarts"),
        (dict(restarts=1.5), TypeError, "restarts"),
        (dict(step_size=np.nan), ValueError, "step_size"),
        (dict(step_size=np.inf), ValueError, "step_size"),
        (dict(step_size=0.0), ValueError, "step_size"),
        (dict(step_size=-0.1), ValueError, "step_size"),
        (dict(step_size="big"), TypeError, "step_size"),
    ],
)
def test_bad_attack_parameters_are_refused_and_named(binary, params, error, name):
    clf, X, y = binary
    with pytest.raises(error, match=name):
        pgd_attack(clf, X, y, 0.1, **params)


@pytest.mark.parametrize(
    "make_X",
    [lambda X: X[:, :1], lambda X: np.c_[X, X], lambda X: X[0], lambda X: X[:0]],
    ids=["too-few-features", "too-many-features", "1-D", "empty"],
)
def test_inputs_of_the_wrong_shape_are_refused_and_named(model, make_X):
    estimator, X, y = model
    bad = make_X(X)
    labels = y[: len(np.atleast_2d(bad))]
    with pytest.raises(ValueError, match=r"\bX\b"):
        pgd_attack(estimator, bad, None, 0.1, steps=2, restarts=0)
    with pytest.raises(ValueError, match=r"\bX\b"):
        certified_accuracy(estimator, bad, labels, 0.1)
    with pytest.raises(ValueError, match=r"\bX\b"):
        counterfactual(estimator, bad, max_iter=2)


@pytest.mark.parametrize(
    "make_eps",
    [
        lambda n: np.full((n, 1), 0.1),
        lambda n: np.full(n + 1, 0.1),
        lambda n: np.full(1, 0.1),
        lambda n: "wide",
    ],
    ids=["column", "too-long", "length-1", "string"],
)
def test_eps_of_the_wrong_shape_is_refused_and_named(model, make_eps):
    estimator, X, y = model
    with pytest.raises(ValueError, match="eps"):
        pgd_attack(estimator, X, y, make_eps(len(X)), steps=2, restarts=0)


# ------------------------------------------------- precision and exact budgets
def test_pgd_stays_within_eps_exactly_in_float64(model):
    estimator, X, y = model
    # Coordinates far from 0 and budgets from 1e-12 up: every rounding of
    # x + delta shows in the measured norm.
    X = X + 1e3 + 1.0 / 3.0
    eps = np.logspace(-12, 0, len(X))
    X_adv = pgd_attack(estimator, X, y, eps, steps=5, restarts=1, random_state=0)
    assert X_adv.dtype == np.float64
    assert np.all(np.linalg.norm(X_adv - X, axis=1) <= eps)


def test_pgd_moves_by_less_than_float32_resolution(model):
    # A float32 attack cannot move x ~ 1 by 1e-9 (and its cast alone moves
    # it by ~1e-8): the attack must run in float64 to do it within budget.
    estimator, X, y = model
    X = X / np.abs(X).max(axis=0) + np.pi / 10
    eps = 1e-9
    X_adv = pgd_attack(estimator, X, y, eps, steps=3, restarts=0, random_state=0)
    distance = np.linalg.norm(X_adv - X, axis=1)
    assert np.all(distance <= eps)
    assert np.median(distance) > 0.5 * eps


def test_zero_eps_returns_the_inputs_bit_for_bit(model):
    estimator, X, y = model
    X = X + 1.0 / 3.0  # not representable in float32
    eps = np.where(np.arange(len(X)) % 2 == 0, 0.0, 0.5)
    X_adv = pgd_attack(estimator, X, y, eps, steps=3, restarts=1, random_state=0)
    assert X_adv[eps == 0].tobytes() == X[eps == 0].tobytes()
    assert pgd_attack(estimator, X, y, 0.0, steps=3).tobytes() == X.tobytes()


def test_budgets_below_the_spacing_of_x_leave_x_unchanged():
    # Near 1e3 the float64 spacing is ~1.1e-13: no move of norm <= 1e-14 exists
    # but none at all, which is what comes back (bit for bit).
    X = np.array([[1e3, -0.0], [1e3, 2.0]])
    points = X + np.array([[1e-10, 0.0], [0.0, 1e-13]])
    result = _within_budget(X, points, np.array([1e-14, 1e-12]))
    assert result[0].tobytes() == X[0].tobytes()
    assert np.array_equal(result[1], points[1])


def test_nothing_the_user_passed_is_modified(model):
    estimator, X, y = model
    X = np.ascontiguousarray(X, dtype=np.float64)  # what validation would not copy
    eps = np.full(len(X), 0.3)
    saved = X.copy(), y.copy(), eps.copy()
    pgd_attack(estimator, X, y, eps, steps=3, restarts=1, random_state=0)
    counterfactual(estimator, X, max_iter=3, return_tightness=True)
    certified_accuracy(estimator, X, y, eps[:3])
    for before, after in zip(saved, (X, y, eps), strict=True):
        assert np.array_equal(before, after)


def test_attacks_use_the_frozen_float64_network(binary):
    clf, X, _ = binary
    module = scoring_module(clf)
    assert module is clf.network_.module
    assert all(p.dtype == torch.float64 for p in module.parameters())
    with torch.no_grad():
        outputs = module(torch.as_tensor(X, device=clf.device_)).cpu().numpy()[:, 0]
    assert np.array_equal(outputs, clf.decision_function(X))


# ------------------------------------------------------------ counterfactual
@pytest.mark.parametrize(
    "params, error, name",
    [
        (dict(overshoot=np.nan), ValueError, "overshoot"),
        (dict(overshoot=np.inf), ValueError, "overshoot"),
        (dict(overshoot=-0.1), ValueError, "overshoot"),
        (dict(overshoot="a"), TypeError, "overshoot"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(max_iter=-2), ValueError, "max_iter"),
        (dict(max_iter=2.5), TypeError, "max_iter"),
    ],
)
def test_bad_counterfactual_parameters_are_refused_and_named(model, params, error, name):
    estimator, X, _ = model
    with pytest.raises(error, match=name):
        counterfactual(estimator, X, **params)


def test_tightness_is_nan_exactly_where_no_counterfactual_was_found(model):
    estimator, X, _ = model
    # A single step leaves some points on their side (the networks are not
    # trained to be gradient-norm preserving everywhere).
    moved, tightness = counterfactual(estimator, X, max_iter=1, return_tightness=True)
    stayed = estimator.predict(moved) == estimator.predict(X)
    assert stayed.any() and not stayed.all()
    assert not np.isinf(tightness).any()
    assert np.array_equal(np.isnan(tightness), stayed)
    assert np.all(tightness[~stayed] <= 1 + 1e-6)


def test_tightness_on_the_boundary_itself_is_one():
    start = np.zeros((3, 2))
    end = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    radius = np.array([0.0, 0.0, 2.5])
    reached = np.array([True, False, True])
    assert np.array_equal(_tightness(radius, start, end, reached), [1.0, np.nan, 0.5], True)


def test_pipeline_counterfactual_is_float64_and_crosses(pipeline):
    pipe, X, _ = pipeline
    X = X + 1.0 / 3.0
    moved = counterfactual(pipe, X)
    assert moved.dtype == np.float64
    assert np.mean(pipe.predict(moved) != pipe.predict(X)) >= 0.95
    assert np.all(np.linalg.norm(moved - X, axis=1) >= certified_radius(pipe, X) - 1e-9)


# ------------------------------------------------------------ pipeline steps
class TenfoldScaler(StandardScaler):
    """A StandardScaler whose transform scales by 10 more than its attributes say."""

    def transform(self, X, copy=None):
        return 10.0 * super().transform(X, copy=copy)


class RenamedScaler(StandardScaler):
    """A subclass that changes nothing visible: still refused (it could, unseen)."""


@pytest.mark.parametrize("scaler", [TenfoldScaler, RenamedScaler])
def test_subclasses_of_supported_steps_are_refused(pipeline, scaler):
    _, X, y = pipeline
    pipe = make_pipeline(scaler(), LipschitzClassifier(**SMALL)).fit(X, y)
    with pytest.raises(TypeError, match=scaler.__name__):
        certified_radius(pipe, X)
    with pytest.raises(TypeError, match=scaler.__name__):
        pgd_attack(pipe, X, y, 0.1, steps=2)


def test_a_clipping_max_abs_scaler_is_refused(pipeline):
    """clip=True (scikit-learn >= 1.8) is not the affine map the bounds are about."""
    from sklearn.preprocessing import MaxAbsScaler

    if "clip" not in MaxAbsScaler().get_params():
        pytest.skip("this scikit-learn's MaxAbsScaler does not clip")
    _, X, y = pipeline
    pipe = make_pipeline(MaxAbsScaler(clip=True), LipschitzClassifier(**SMALL)).fit(X, y)
    with pytest.raises(TypeError, match="clip"):
        certified_radius(pipe, X)


def test_inputs_a_pipeline_would_round_are_refused(pipeline):
    """float16 is transformed in float16 by the scalers; integers above 2**53 are
    rounded by the cast to float64: neither is what a certificate could be about."""
    import pandas as pd

    pipe, X, y = pipeline
    with pytest.raises(TypeError, match="float16"):
        certified_radius(pipe, X.astype(np.float16))
    with pytest.raises(TypeError, match="float16"):
        pgd_attack(pipe, X.astype(np.float16), y, 0.1, steps=2)
    huge = np.array([[2**60 + 1, 0]])
    for given in (huge, pd.DataFrame(huge), huge.astype(object)):
        with pytest.raises(ValueError, match="2\\*\\*53"):
            certified_radius(pipe, given)
    for given in (pd.DataFrame(huge), huge.astype(object)):  # the classifier's own check
        with pytest.raises(ValueError, match="2\\*\\*53"):
            pipe[-1].certified_radius(given)


def test_counterfactual_moves_an_outlier_detectors_decision():
    """The walk ends past offset_, where predict changes, not at a score of 0."""
    from sklip import LipschitzOutlierDetector, LipschitzRegressor

    X, _ = make_moons(150, noise=0.1, random_state=0)
    detector = LipschitzOutlierDetector(contamination=0.2, **SMALL).fit(X)
    assert abs(detector.offset_) > 0.05
    moved, tightness = counterfactual(detector, X[:40], return_tightness=True)
    crossed = np.isfinite(tightness)
    assert crossed.mean() > 0.9
    assert (detector.predict(moved[crossed]) != detector.predict(X[:40][crossed])).all()
    assert (tightness[crossed] <= 1).all()
    regressor = LipschitzRegressor(**SMALL).fit(X, X[:, 0])
    with pytest.raises(TypeError, match=r"counterfactual.*LipschitzRegressor"):
        counterfactual(regressor, X[:5])
    with pytest.raises(TypeError, match=r"certified_accuracy needs a classifier"):
        certified_accuracy(regressor, X[:5], np.zeros(5), 0.1)


def test_a_leading_passthrough_step_takes_its_width_from_the_next_step(pipeline):
    _, X, y = pipeline
    pipe = make_pipeline("passthrough", PCA(1), LipschitzClassifier(**SMALL)).fit(X, y)
    inner = pipe[-1].certified_radius(pipe[:-1].transform(X))
    assert np.allclose(certified_radius(pipe, X), inner)  # PCA components are orthonormal


# ------------------------------------------------------------------ display
@pytest.mark.parametrize(
    "args, name",
    [
        (([], [], []), "y_true"),
        (([0, 1], [0, 1, 1], [1.0, 1.0]), "y_pred"),
        (([0, 1], [0, 1], [1.0, 1.0, 2.0]), "radius"),
        (([0, 1], [0, 1], [1.0, np.nan]), "radius"),
        (([0, 1], [0, 1], [1.0, -1.0]), "radius"),
    ],
    ids=["empty", "y_pred-length", "radius-length", "radius-nan", "radius-negative"],
)
def test_display_from_predictions_refuses_bad_inputs(args, name):
    with pytest.raises(ValueError, match=name):
        CertifiedAccuracyDisplay.from_predictions(*args)


@pytest.mark.parametrize("eps", [[], np.zeros((2, 2)), 0.5], ids=["empty", "2-D", "scalar"])
def test_display_refuses_eps_that_is_not_a_1d_list_of_radii(binary, eps):
    clf, X, y = binary
    with pytest.raises(ValueError, match="eps"):
        CertifiedAccuracyDisplay.from_predictions([0, 1], [0, 1], [1.0, 2.0], eps=eps)
    with pytest.raises(ValueError, match="eps"):
        CertifiedAccuracyDisplay.from_estimator(clf, X, y, eps=eps)


def test_display_from_estimator_refuses_empty_inputs(binary):
    clf, X, y = binary
    with pytest.raises(ValueError, match=r"\bX\b"):
        CertifiedAccuracyDisplay.from_estimator(clf, X[:0], y[:0])
    with pytest.raises(ValueError, match=r"\by\b"):
        CertifiedAccuracyDisplay.from_estimator(clf, X, y[:-1])
