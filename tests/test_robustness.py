"""sklip.robustness: pipeline-aware radii, certified accuracy, scorer, display."""

import matplotlib
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    PolynomialFeatures,
    StandardScaler,
)

from sklip import LipschitzClassifier
from sklip.robustness import (
    CertifiedAccuracyDisplay,
    certified_accuracy,
    certified_radius,
    counterfactual,
    make_certified_scorer,
    pgd_attack,
)

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def raw_digits():
    """Digits 0-vs-8 in raw pixel units (0..16), split 75/25."""
    X, y = load_digits(return_X_y=True)
    keep = (y == 0) | (y == 8)
    return train_test_split(X[keep], y[keep], test_size=0.25, stratify=y[keep], random_state=0)


@pytest.fixture(scope="module")
def scaled_pipeline(raw_digits):
    X_train, _, y_train, _ = raw_digits
    clf = LipschitzClassifier(max_epochs=40, random_state=0)
    return make_pipeline(StandardScaler(), clf).fit(X_train, y_train)


def test_pipeline_radius_is_the_classifier_radius_times_the_smallest_scale(
    scaled_pipeline, raw_digits
):
    _, X_test, _, _ = raw_digits
    scaler, clf = scaled_pipeline[0], scaled_pipeline[-1]
    inner = clf.certified_radius(scaler.transform(X_test))
    assert np.allclose(certified_radius(scaled_pipeline, X_test), inner * scaler.scale_.min())


def test_pipeline_certificates_survive_pgd_in_raw_space(scaled_pipeline, raw_digits):
    _, X_test, _, y_test = raw_digits
    correct = scaled_pipeline.predict(X_test) == y_test
    X, y = X_test[correct], y_test[correct]
    radius = certified_radius(scaled_pipeline, X)
    attacked = pgd_attack(scaled_pipeline, X, y, 0.99 * radius, random_state=0)
    assert np.all(np.linalg.norm(attacked - X, axis=1) <= 0.99 * radius * (1 + 1e-5))
    assert np.array_equal(scaled_pipeline.predict(attacked), y)
    moved = counterfactual(scaled_pipeline, X)
    assert np.mean(scaled_pipeline.predict(moved) != y) >= 0.99
    assert np.all(np.linalg.norm(moved - X, axis=1) >= radius - 1e-6)


@pytest.mark.parametrize(
    "step, lipschitz",
    [
        (MinMaxScaler(), lambda s, X: np.abs(s.scale_).max()),
        (MaxAbsScaler(), lambda s, X: 1 / s.scale_.min()),
        (PCA(10), lambda s, X: 1.0),  # orthonormal components
        (FunctionTransformer(), lambda s, X: 1.0),
    ],
    ids=["minmax", "maxabs", "pca", "identity"],
)
def test_each_supported_step_divides_the_radius_by_its_lipschitz_constant(
    step, lipschitz, raw_digits
):
    X_train, X_test, y_train, _ = raw_digits
    pipe = make_pipeline(step, LipschitzClassifier(max_epochs=5, random_state=0))
    pipe.fit(X_train, y_train)
    inner = pipe[-1].certified_radius(pipe[0].transform(X_test))
    expected = inner / lipschitz(pipe[0], X_train)
    assert np.allclose(certified_radius(pipe, X_test), expected)


def test_chained_steps_are_bounded_as_one_affine_map(raw_digits):
    X_train, X_test, y_train, y_test = raw_digits
    pipe = make_pipeline(
        MinMaxScaler(), PCA(12), StandardScaler(), LipschitzClassifier(max_epochs=10)
    ).fit(X_train, y_train)
    correct = pipe.predict(X_test) == y_test
    radius = certified_radius(pipe, X_test[correct])
    attacked = pgd_attack(pipe, X_test[correct], y_test[correct], 0.99 * radius, random_state=0)
    assert np.array_equal(pipe.predict(attacked), y_test[correct])


def test_unknown_pipeline_steps_are_named_in_the_error(raw_digits):
    X_train, X_test, y_train, _ = raw_digits
    pipe = make_pipeline(
        PolynomialFeatures(1, include_bias=False), LipschitzClassifier(max_epochs=2)
    ).fit(X_train, y_train)
    with pytest.raises(TypeError, match="PolynomialFeatures"):
        certified_radius(pipe, X_test)


def test_certified_accuracy_starts_at_accuracy_and_never_increases(models):
    for clf, X_test, y_test in models.values():
        eps = np.linspace(0, 4, 41)
        curve = certified_accuracy(clf, X_test, y_test, eps)
        assert curve.shape == eps.shape
        assert curve[0] == pytest.approx(clf.score(X_test, y_test))
        assert np.all(np.diff(curve) <= 0)
        radius = clf.certified_radius(X_test)
        correct = clf.predict(X_test) == y_test
        assert certified_accuracy(clf, X_test, y_test, 1.0) == np.mean(correct & (radius >= 1.0))


def test_certified_scorer_drives_a_grid_search(digits_0_vs_8):
    X_train, X_test, y_train, y_test = digits_0_vs_8
    scorer = make_certified_scorer(2.5)
    grid = GridSearchCV(
        LipschitzClassifier(max_epochs=20, random_state=0),
        {"alpha": [1.0, 100.0], "margin": [0.5, 3.0]},
        scoring={"accuracy": "accuracy", "certified": scorer},
        refit="certified",
        cv=2,
        n_jobs=2,
    ).fit(X_train, y_train)
    results = grid.cv_results_
    assert len(results["mean_test_certified"]) == 4
    assert np.all(results["mean_test_certified"] <= results["mean_test_accuracy"] + 1e-12)
    best = grid.best_estimator_
    assert grid.score(X_test, y_test) == certified_accuracy(best, X_test, y_test, 2.5)


def test_display_draws_the_curves_of_several_estimators(models):
    clf, X_test, y_test = models["digits-10-mlp"]
    display = CertifiedAccuracyDisplay.from_estimator(clf, X_test, y_test, name="mlp")
    line = display.line_
    assert np.array_equal(line.get_xdata(), display.eps)
    assert np.array_equal(line.get_ydata(), display.certified_accuracy)
    assert display.certified_accuracy[0] == pytest.approx(clf.score(X_test, y_test))
    cnn, X_cnn, y_cnn = models["digits-10-cnn"]
    CertifiedAccuracyDisplay.from_estimator(cnn, X_cnn, y_cnn, name="cnn", ax=display.ax_)
    assert len(display.ax_.get_lines()) == 2
    assert [t.get_text() for t in display.ax_.get_legend().get_texts()] == ["mlp", "cnn"]
    assert display.ax_.get_xlabel() == "L2 radius eps"


def test_display_without_matplotlib_says_so(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    display = CertifiedAccuracyDisplay(eps=np.array([0.0]), certified_accuracy=np.array([1.0]))
    with pytest.raises(ImportError, match="matplotlib"):
        display.plot()


def test_bad_eps_is_refused(models):
    clf, X_test, y_test = models["moons"]
    with pytest.raises(ValueError, match="eps"):
        certified_accuracy(clf, X_test, y_test, -1.0)
    with pytest.raises(ValueError, match="eps"):
        pgd_attack(clf, X_test, y_test, np.nan)
    with pytest.raises(ValueError, match="eps"):
        make_certified_scorer(-0.5)


def test_radius_from_outputs_matches_a_hand_computation():
    from sklip.robustness import radius_from_outputs

    assert np.allclose(radius_from_outputs(np.array([[-2.0], [0.5]]), 2.0), [1.0, 0.25])
    pairwise = np.array([[0.0, 2.0, 1.0], [2.0, 0.0, 8.0], [1.0, 8.0, 0.0]])
    # class 0 predicted: min((3 - 1) / 2, (3 - 0) / 1) = 1; class 1 predicted:
    # min((4 - 3) / 2, (4 - 0) / 8) = 0.5.
    outputs = np.array([[3.0, 1.0, 0.0], [3.0, 4.0, 0.0]])
    assert np.allclose(radius_from_outputs(outputs, 9.9, pairwise), [1.0, 0.5])
    # With rounding: error e and growth G: (gap - sqrt(2) e) / (L_cj + sqrt(2) G).
    error, growth = np.array([0.1, 0.0]), 0.5
    expected_first = min(
        (2 - 0.1 * 2**0.5) / (2 + 0.5 * 2**0.5), (3 - 0.1 * 2**0.5) / (1 + 0.5 * 2**0.5)
    )
    radius = radius_from_outputs(outputs, 9.9, pairwise, error=error, error_growth=growth)
    assert radius[0] == pytest.approx(expected_first, rel=1e-12)
    binary = radius_from_outputs(
        np.array([[2.0], [0.05]]), 2.0, error=np.array([0.5, 0.1]), error_growth=1.0
    )
    assert np.allclose(binary, [(2.0 - 0.5) / 3.0, 0.0])  # within rounding of 0: radius 0
    with pytest.raises(ValueError, match="pairwise"):
        radius_from_outputs(outputs, 1.0)


@pytest.mark.parametrize("bound", [0.0, np.inf, np.nan, -1.0])
def test_a_zero_or_infinite_bound_never_gives_an_infinite_radius(bound):
    from sklip.robustness import radius_from_outputs

    with pytest.raises(ValueError, match="lipschitz_constant"):
        radius_from_outputs(np.array([[1.0]]), bound)
    pairwise = np.array([[0.0, bound], [bound, 0.0]])
    with pytest.raises(ValueError, match="pairwise"):
        radius_from_outputs(np.array([[1.0, 0.0]]), 1.0, pairwise)
