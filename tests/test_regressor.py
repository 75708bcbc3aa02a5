"""LipschitzRegressor: scikit-learn's contract, certified intervals, known answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklip import LipschitzRegressor
from sklip._regression_objective import (
    AUTO_FACTOR,
    RegressionObjective,
    auto_lipschitz_constant,
    variogram_fit,
)

EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "float32 mini-batch training: weighting and repeating rows agree only up to "
        "float32 rounding and the batch order, below the check's tolerance"
    ),
}


@parametrize_with_checks(
    [LipschitzRegressor(hidden_layer_sizes=(16,), max_epochs=100, random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _cone(n, d=3, seed=0):
    """y = |x|: 1-Lipschitz exactly, and not linear."""
    X = np.random.RandomState(seed).uniform(-1, 1, size=(n, d))
    return X, np.linalg.norm(X, axis=1)


@pytest.fixture(scope="module")
def cone_regressor():
    X, y = _cone(800)
    return LipschitzRegressor(hidden_layer_sizes=(64, 64), lipschitz_constant=1.0,
                              random_state=0).fit(X, y)  # fmt: skip


def test_a_known_one_lipschitz_target_is_recovered_with_its_constant(cone_regressor):
    X, y = _cone(400, seed=1)
    assert cone_regressor.score(X, y) > 0.95
    assert abs(cone_regressor.lipschitz_constant_ - 1.0) < 1e-5  # K times a bound of ~1
    assert cone_regressor.lipschitz_target_ == 1.0


def test_predictions_never_move_faster_than_the_certified_constant(cone_regressor):
    rng = np.random.RandomState(2)
    X, X2 = rng.normal(size=(500, 3)), rng.normal(size=(500, 3))
    moved = np.abs(cone_regressor.predict(X) - cone_regressor.predict(X2))
    assert np.all(moved <= cone_regressor.lipschitz_constant_ * np.linalg.norm(X - X2, axis=1))


def _pgd_extremes(regressor, X, eps, steps=40, output=0):
    """Output ``output`` of ``predict`` at the lowest and highest points L2 PGD finds
    within eps of each row.

    The search runs on the exported float64 network; the points found are
    then scored by ``predict`` itself, the computation the interval is about.
    """
    module = regressor.to_torch()
    x0 = torch.tensor(X, dtype=torch.float64, device=regressor.device_)
    step = 2.5 * eps / steps
    found = []
    for sign in (-1.0, 1.0):
        delta = torch.zeros_like(x0)
        best_points, best = x0.clone(), sign * module(x0)[:, output].detach()
        for _ in range(steps):
            delta.requires_grad_(True)
            (grad,) = torch.autograd.grad(sign * module(x0 + delta)[:, output].sum(), delta)
            with torch.no_grad():
                delta = delta + step * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
                norms = delta.norm(dim=1, keepdim=True).clamp_min(1e-12)
                delta = delta * torch.clamp(0.999999 * eps / norms, max=1.0)
                value = sign * module(x0 + delta)[:, output]
                better = value > best
                best = torch.where(better, value, best)
                best_points[better] = (x0 + delta)[better]
        points = best_points.cpu().numpy()
        assert np.all(np.linalg.norm(points - X, axis=1) <= eps)
        predicted = regressor.predict(points)
        found.append(predicted if predicted.ndim == 1 else predicted[:, output])
    return found


def test_predict_interval_is_never_beaten_by_pgd(cone_regressor):
    X, _ = _cone(200, seed=3)
    eps = 0.3
    low, high = cone_regressor.predict_interval(X, eps)
    lowest, highest = _pgd_extremes(cone_regressor, X, eps)
    assert np.all(lowest >= low) and np.all(highest <= high)
    # The attack is real: it moves the outputs by a good share of the bound.
    assert np.mean(highest - cone_regressor.predict(X)) > 0.5 * eps


@pytest.mark.slow
def test_predict_interval_holds_for_a_cnn():
    rng = np.random.RandomState(0)
    images = rng.uniform(size=(300, 1, 6, 6))
    y = images[:, 0, :3, :3].mean(axis=(1, 2)) * 3
    cnn = LipschitzRegressor(image_shape=(1, 6, 6), conv_channels=(4,), hidden_layer_sizes=(16,),
                             max_epochs=20, random_state=0).fit(images, y)  # fmt: skip
    X = images[:50].reshape(50, -1)
    low, high = cnn.predict_interval(X, 0.2)
    lowest, highest = _pgd_extremes(cnn, X, 0.2)
    assert np.all(lowest >= low) and np.all(highest <= high)


def test_multi_output_and_sample_weight():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 4))
    Y = np.c_[X[:, 0] + X[:, 1], X[:, 2] * 10.0]
    reg = LipschitzRegressor(hidden_layer_sizes=(32,), max_epochs=60, random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (300, 2) and reg.score(X, Y) > 0.9
    low, high = reg.predict_interval(X[:5], 0.1)
    assert low.shape == high.shape == (5, 2) and np.all(low <= high)
    weights = np.ones(300)
    weights[:150] = 0.0  # only the second half counts
    Y_bad = Y.copy()
    Y_bad[:150] = 1e3  # what the zero-weighted rows say must not matter
    weighted = LipschitzRegressor(hidden_layer_sizes=(32,), max_epochs=60, random_state=0)
    weighted.fit(X, Y_bad, sample_weight=weights)
    assert weighted.score(X[150:], Y[150:]) > 0.8


def test_each_output_has_its_own_certified_constant_and_interval():
    # Three outputs that move together: the last layer's unit rows line up, and
    # the output vector can move up to sqrt(3) times as far as any one output
    # (here its bound is 1.18 times theirs).
    rng = np.random.RandomState(0)
    X = rng.normal(size=(400, 3))
    s = X[:, 0] + X[:, 1]
    Y = np.c_[s, 2 * s, -s]
    reg = LipschitzRegressor(hidden_layer_sizes=(32, 32), max_epochs=40, random_state=0).fit(X, Y)
    own = reg.output_lipschitz_constants_
    assert own.shape == (3,) and own.dtype == np.float64
    assert np.all(own <= reg.lipschitz_constant_)
    assert own.max() < 0.9 * reg.lipschitz_constant_
    X_test, eps = X[:60], 0.25
    low, high = reg.predict_interval(X_test, eps)
    for k in range(3):
        lowest, highest = _pgd_extremes(reg, X_test, eps, output=k)
        assert np.all(lowest >= low[:, k]) and np.all(highest <= high[:, k])
        # the interval is about the output's own constant, not the vector's
        half_width = (high[:, k] - low[:, k]) / 2
        assert np.all(half_width < own[k] * eps * 1.001 + 1e-9)
        assert np.mean(highest - reg.predict(X_test)[:, k]) > 0.3 * own[k] * eps
    single = LipschitzRegressor(hidden_layer_sizes=(8,), max_epochs=2, random_state=0).fit(X, s)
    assert single.output_lipschitz_constants_.tolist() == [single.lipschitz_constant_]


def test_auto_constant_is_the_gradient_norm_of_a_noiseless_line():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = 2 * X  # every pair rises by exactly 2 per unit: squared rise = 4 h^2, no noise
    auto = auto_lipschitz_constant(X, y, np.ones(4), np.random.RandomState(0))
    assert auto == pytest.approx(AUTO_FACTOR * 2, rel=1e-12)
    X2 = np.c_[X, np.zeros(4)]  # a constant second feature: same pairs, times sqrt(2)
    auto2 = auto_lipschitz_constant(X2, y, np.ones(4), np.random.RandomState(0))
    assert auto2 == pytest.approx(AUTO_FACTOR * 2 * np.sqrt(2), rel=1e-12)
    reg = LipschitzRegressor(hidden_layer_sizes=(8,), max_epochs=2, random_state=0)
    assert reg.fit(X, y[:, 0]).lipschitz_target_ == auto
    assert reg.set_params(lipschitz_constant=0.5).fit(X, y[:, 0]).lipschitz_target_ == 0.5


def test_variogram_fit_matches_hand_computed_lines():
    h2, w = np.array([1.0, 2.0]), np.ones(2)
    assert variogram_fit(np.array([0.0, 2.0, 4.0]), np.array([2.0, 8.0, 14.0]), np.ones(3)) == (
        2.0,
        3.0,
    )
    # r = 3 h - 1: a negative intercept, refitted through 0: (1*2 + 2*5) / (1 + 4)
    assert variogram_fit(h2, np.array([2.0, 5.0]), w) == (0.0, pytest.approx(2.4))
    # falling with distance: no trend, the mean rise is noise
    assert variogram_fit(h2, np.array([3.0, 1.0]), w) == (2.0, 0.0)
    # weights: the second pair counted three times is the line through (1, 2), (2, 5) x 3
    assert variogram_fit(np.array([1.0, 2.0, 2.0, 2.0]), np.array([2.0, 5.0, 5.0, 5.0]),
                         np.ones(4)) == variogram_fit(h2, np.array([2.0, 5.0]),
                                                      np.array([1.0, 3.0]))  # fmt: skip
    # only duplicated rows (distance 0): nothing to read a slope from
    assert variogram_fit(np.zeros(3), np.array([1.0, 2.0, 3.0]), np.ones(3)) == (2.0, 0.0)


def test_auto_constant_is_not_inflated_by_noise():
    # y = beta . x + noise as large as the signal: the slopes between nearest
    # neighbours are mostly noise (the former rule, sqrt(d) times their 0.9
    # quantile, gave 11 times ||beta|| here); the variogram's slope is not
    # (0.94 to 1.13 times ||beta|| over five draws).
    rng = np.random.RandomState(0)
    X = rng.normal(size=(3000, 5))
    beta = np.array([3.0, -2.0, 1.0, 0.0, 0.5])
    signal = X @ beta
    y = signal + rng.normal(scale=signal.std(), size=3000)
    auto = auto_lipschitz_constant(X, y[:, None], np.ones(3000), np.random.RandomState(0))
    assert auto == pytest.approx(AUTO_FACTOR * np.linalg.norm(beta), rel=0.2)
    # y unrelated to X: no slope to measure, the floor std(y) / std(x) (summed variances)
    noise = rng.normal(size=(3000, 1))
    floor = noise.std() / np.sqrt(X.var(axis=0).sum())
    auto = auto_lipschitz_constant(X, noise, np.ones(3000), np.random.RandomState(0))
    assert floor <= auto < 1.5 * floor


def test_auto_constant_of_degenerate_data_is_one():
    X = np.repeat([[0.0], [1.0]], 30, axis=0)  # every neighbour a duplicate...
    y = np.r_[np.zeros(30), np.ones(30)] + np.tile([0.0, 0.1], 30)
    # ...so no slope is seen: the floor, std(y) / std(x)
    auto = auto_lipschitz_constant(X, y[:, None], np.ones(60), np.random.RandomState(0))
    assert auto == pytest.approx(y.std() / X.std())
    one = np.ones(4)
    assert auto_lipschitz_constant(np.zeros((4, 2)), np.arange(4.0)[:, None], one, None) == 1.0
    assert auto_lipschitz_constant(np.eye(4), np.ones((4, 1)), one, None) == 1.0


def test_objective_matches_hand_computed_losses():
    outputs = torch.tensor([[1.0], [0.0]])
    coefficients = torch.tensor([[0.0, 0.25], [2.0, 0.75]])  # targets, then w / W
    scale = torch.tensor([2.0])  # K / sigma
    for loss, per_row in (("squared_error", [4.0, 16.0]), ("absolute_error", [2.0, 4.0]),
                          ("huber", [1.5, 3.5])):  # fmt: skip
        value, figures = RegressionObjective(loss, scale)(outputs, coefficients, 1.0)
        expected = 0.25 * per_row[0] + 0.75 * per_row[1]
        assert value.item() == pytest.approx(expected) and figures.item() == pytest.approx(expected)


def test_pipeline_grid_search_over_the_constant():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(240, 3)) * [1.0, 10.0, 100.0]
    y = X[:, 0] + X[:, 1] / 10
    pipe = make_pipeline(
        StandardScaler(),
        LipschitzRegressor(hidden_layer_sizes=(16,), max_epochs=100, random_state=0),
    )
    search = GridSearchCV(pipe, {"lipschitzregressor__lipschitz_constant": [0.1, 2.0]},
                          cv=3).fit(X, y)  # fmt: skip
    assert search.best_params_["lipschitzregressor__lipschitz_constant"] == 2.0
    assert search.best_score_ > 0.9


@pytest.mark.parametrize(
    ("params", "X", "y", "message"),
    [
        ({}, [[0.0], [np.nan]], [1.0, 2.0], "NaN"),
        ({}, [[0.0], [1.0]], [1.0, np.inf], "y"),
        ({}, [[0.0], [1.0]], [1.0], "inconsistent"),
        ({"lipschitz_constant": 0.0}, [[0.0], [1.0]], [1.0, 2.0], "lipschitz_constant"),
        ({"lipschitz_constant": -1.0}, [[0.0], [1.0]], [1.0, 2.0], "lipschitz_constant"),
        ({"loss": "hinge"}, [[0.0], [1.0]], [1.0, 2.0], "loss"),
        ({}, [[0.0], [1.0]], ["a", "b"], "y"),
        ({}, [[0.0], [1.0], [2.0]], [0.0, 1e160, -1e160], "rescale y"),
    ],
)
def test_bad_input_is_refused_by_name(params, X, y, message):
    reg = LipschitzRegressor(max_epochs=1, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow is refused, not warned about
        with pytest.raises(ValueError, match=message):
            reg.fit(X, y)
    assert not hasattr(reg, "module_")


def test_inputs_are_left_alone_and_fits_repeat():
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(100, 2)), rng.normal(size=100)
    X_copy, y_copy = X.copy(), y.copy()
    params = {"hidden_layer_sizes": (8,), "max_epochs": 5, "random_state": 0}
    first = LipschitzRegressor(**params).fit(X, y).predict(X)
    second = LipschitzRegressor(**params).fit(X, y).predict(X)
    assert np.array_equal(first, second)
    assert np.array_equal(X, X_copy) and np.array_equal(y, y_copy)


def test_partial_fit_trains_on_and_keeps_the_scaling():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(400, 2))
    y = X[:, 0] * 3
    reg = LipschitzRegressor(hidden_layer_sizes=(16,), random_state=0)
    for _ in range(20):
        for chunk in np.array_split(np.arange(400), 4):
            reg.partial_fit(X[chunk], y[chunk])
    assert reg.n_iter_ == 80 and reg.score(X, y) > 0.9
    with pytest.raises(ValueError, match="early_stopping"):
        LipschitzRegressor(early_stopping=True).partial_fit(X, y)


def test_pipeline_interval_is_in_raw_units_and_holds():
    from sklip.robustness import certified_radius, make_lipschitz_capped_scorer, predict_interval

    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 2)) * [2.0, 50.0]
    y = X[:, 0] + X[:, 1] / 25
    pipe = make_pipeline(
        StandardScaler(),
        LipschitzRegressor(hidden_layer_sizes=(16,), max_epochs=40, random_state=0),
    )
    pipe.fit(X, y)  # fmt: skip
    eps = 0.5
    low, high = predict_interval(pipe, X[:50], eps)
    # Random raw perturbations on the sphere of radius eps never leave the interval.
    for _ in range(20):
        direction = rng.normal(size=(50, 2))
        moved = X[:50] + eps * direction / np.linalg.norm(direction, axis=1, keepdims=True)
        assert np.all((low <= pipe.predict(moved)) & (pipe.predict(moved) <= high))
    # The raw bound is the regressor's over the scaled ball: K * ||A|| * eps, no less.
    regressor, scale = pipe[-1], pipe[0].scale_.min()
    assert np.all(high - low >= 2 * eps * regressor.lipschitz_constant_ / scale)
    assert np.all(high - low <= 2 * eps * regressor.lipschitz_constant_ / scale * (1 + 1e-6) + 1e-9)
    with pytest.raises(TypeError, match="predict_interval"):
        certified_radius(pipe, X)
    capped = make_lipschitz_capped_scorer(regressor.lipschitz_constant_ / scale * 1.01)
    assert capped(pipe, X, y) == pytest.approx(pipe.score(X, y))
    assert make_lipschitz_capped_scorer(1e-6)(pipe, X, y) == -np.inf


def test_early_stopping_keeps_the_best_held_out_r2():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 3))
    y = X[:, 0] + rng.normal(scale=0.5, size=300)
    reg = LipschitzRegressor(hidden_layer_sizes=(32,), early_stopping=True, max_epochs=40,
                             n_iter_no_change=5, random_state=0).fit(X, y)  # fmt: skip
    scores = [record["validation_score"] for record in reg.history_]
    assert len(scores) == reg.n_iter_ and max(scores) > 0.5 and max(scores) <= 1.0
    with pytest.raises(ValueError, match="validation_fraction"):
        LipschitzRegressor(early_stopping=True, validation_fraction=0.01).fit(X[:50], y[:50])


def test_decision_attacks_refuse_a_regressor(cone_regressor):
    from sklip.robustness import pgd_attack

    with pytest.raises(TypeError, match="predict_interval"):
        pgd_attack(cone_regressor, np.zeros((2, 3)), None, 0.1)


def test_warm_start_refuses_a_different_number_of_outputs():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 2))
    reg = LipschitzRegressor(hidden_layer_sizes=(8,), max_epochs=2, warm_start=True,
                             random_state=0).fit(X, X[:, 0])  # fmt: skip
    with pytest.raises(ValueError, match="outputs"):
        reg.fit(X, X)
    assert reg.predict(X).shape == (60,)  # the failed call changed nothing


def test_warm_start_keeps_the_output_scale_and_refuses_another():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 2))
    reg = LipschitzRegressor(hidden_layer_sizes=(8,), max_epochs=2, warm_start=True,
                             lipschitz_constant=2.0, random_state=0).fit(X, X[:, 0])  # fmt: skip
    before = reg.predict(X)
    with pytest.raises(ValueError, match="lipschitz_target_"):
        reg.set_params(lipschitz_constant=5.0).fit(X, X[:, 0])
    assert reg.lipschitz_target_ == 2.0 and np.array_equal(reg.predict(X), before)
    reg.set_params(lipschitz_constant="auto").fit(X, X[:, 0])  # "auto" keeps the fitted scale
    assert reg.lipschitz_target_ == 2.0 and reg.n_iter_ == 4


def test_score_is_r2_and_refuses_negative_weights():
    from sklearn.metrics import r2_score

    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 2))
    reg = LipschitzRegressor(hidden_layer_sizes=(8,), max_epochs=3, random_state=0)
    reg.fit(X, X[:, 0])
    weights = rng.uniform(size=60)
    expected = r2_score(X[:, 0], reg.predict(X), sample_weight=weights)
    assert reg.score(X, X[:, 0], sample_weight=weights) == expected
    with pytest.raises(ValueError, match="sample_weight"):
        reg.score(X, X[:, 0], sample_weight=-weights)
