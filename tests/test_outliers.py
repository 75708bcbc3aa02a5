"""LipschitzOutlierDetector: scikit-learn's contract, certified decisions, known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklip import LipschitzOutlierDetector
from sklip._complement import (
    HARD_CANDIDATES,
    RELABEL_FACTOR,
    OneClassEpochs,
    SamplingBox,
    draw_seeds,
    toward_boundary,
)
from sklip._margin import ONE_CLASS_FRACTION, one_class_margin
from sklip._score_bounds import certified_auroc_from_bounds
from sklip.robustness import certified_auroc, certified_radius, pgd_attack

EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "each epoch draws as many negatives as there are rows: repeating a row adds "
        "negatives, weighting it does not"
    ),
}


@parametrize_with_checks(
    [LipschitzOutlierDetector(hidden_layer_sizes=(16,), max_epochs=10, random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _disc(n, seed=0):
    """Uniform points in the unit disc."""
    rng = np.random.RandomState(seed)
    radius, angle = np.sqrt(rng.uniform(size=n)), rng.uniform(0, 2 * np.pi, n)
    return np.c_[radius * np.cos(angle), radius * np.sin(angle)]


@pytest.fixture(scope="module")
def disc_detector():
    detector = LipschitzOutlierDetector(hidden_layer_sizes=(64, 64), alpha=10.0, random_state=0)
    return detector.fit(_disc(600))


def test_score_is_the_signed_distance_to_a_disc_outside_it(disc_detector):
    """Known answer: outside the unit disc, f(x) = 1 - |x| within 0.2 on a grid.

    alpha=10, the smoother setting the user guide recommends for a distance.
    Measured (seed 0, 37 epochs): mean error 0.04, largest 0.14 on the band
    out to distance 1. Inside, the score does not rise to the depth of the
    point (a GroupSort network approximates the cone 1 - |x| poorly; the user
    guide says so): only the sign is asked there.
    """
    axis = np.linspace(-2, 2, 41)
    grid = np.array([(a, b) for a in axis for b in axis])
    distance = 1 - np.linalg.norm(grid, axis=1)
    score = disc_detector.score_samples(grid)
    outside = (distance <= 0) & (distance >= -1)
    assert np.abs(score[outside] - distance[outside]).max() < 0.2
    assert np.abs(score[outside] - distance[outside]).mean() < 0.08
    clear = np.abs(distance) > 0.1
    assert np.all(np.sign(score[clear]) == np.sign(distance[clear]))
    assert disc_detector.offset_ == 0.0  # contamination="auto": the learned boundary


def test_certified_decisions_survive_pgd_on_tabular_data(disc_detector):
    rng = np.random.RandomState(1)
    X = rng.uniform(-1.6, 1.6, size=(300, 2))
    radius = disc_detector.certified_radius(X)
    assert (radius > 0).mean() > 0.9
    X_adv = pgd_attack(disc_detector, X, None, 0.99 * radius, steps=30, restarts=2,
                       random_state=0)  # fmt: skip
    assert np.all(np.linalg.norm(X_adv - X, axis=1) <= radius)
    assert np.array_equal(disc_detector.predict(X_adv), disc_detector.predict(X))
    # The attack is real: at twice the radius it flips some decisions.
    X_far = pgd_attack(disc_detector, X, None, 2.0 * radius + 0.05, steps=30, random_state=0)
    assert (disc_detector.predict(X_far) != disc_detector.predict(X)).any()


@pytest.mark.slow
def test_certified_decisions_survive_pgd_on_digit_images():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    detector = LipschitzOutlierDetector(
        image_shape=(1, 8, 8), conv_channels=(8,), hidden_layer_sizes=(32,),
        max_epochs=15, random_state=0,
    ).fit(X[y == 0][:150])  # fmt: skip
    X_test = X[200:400]
    radius = detector.certified_radius(X_test)
    X_adv = pgd_attack(detector, X_test, None, 0.99 * radius, steps=30, restarts=1,
                       random_state=0)  # fmt: skip
    assert np.array_equal(detector.predict(X_adv), detector.predict(X_test))


def test_contamination_sets_the_share_of_training_outliers():
    X = np.random.RandomState(0).normal(size=(200, 3))
    detector = LipschitzOutlierDetector(hidden_layer_sizes=(16,), max_epochs=5,
                                        contamination=0.1, random_state=0).fit(X)  # fmt: skip
    assert (detector.predict(X) == -1).sum() == 20
    scores = detector.score_samples(X)
    assert np.allclose(detector.decision_function(X), scores - detector.offset_)
    below = np.sort(scores)
    assert below[19] < detector.offset_ < below[20]  # midway between outliers and the rest


def test_weighted_contamination_counts_weight_not_rows():
    X = np.random.RandomState(0).normal(size=(100, 2))
    weights = np.ones(100)
    detector = LipschitzOutlierDetector(hidden_layer_sizes=(8,), max_epochs=3,
                                        contamination=0.2, random_state=0)  # fmt: skip
    scores = clone(detector).fit(X).score_samples(X)
    weights[np.argsort(scores)[:5]] = 4.0  # the 5 lowest rows now weigh 20% of the total
    weighted = clone(detector).fit(X, sample_weight=weights)
    assert weighted.offset_ > np.sort(weighted.score_samples(X))[0]
    share = weights[weighted.predict(X) == -1].sum() / weights.sum()
    assert share >= 0.2


def test_auto_margin_is_half_the_median_nearest_neighbour_distance():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [3.0, 0.0], [7.0, 0.0]])
    # nearest other row: 1, 1, 0 (duplicate), 0 (duplicate), 4 -> positive ones 1, 1, 4
    margin = one_class_margin(X, np.ones(5), np.random.RandomState(0))
    assert margin == ONE_CLASS_FRACTION * 1.0
    detector = LipschitzOutlierDetector(hidden_layer_sizes=(8,), max_epochs=2, random_state=0)
    assert detector.fit(X).margin_ == margin
    assert detector.set_params(margin=0.3).fit(X).margin_ == 0.3  # explicit wins


def test_fits_are_reproducible_and_leave_global_state_alone():
    X = np.random.RandomState(0).normal(size=(120, 4))
    X_before = X.copy()
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    params = {"hidden_layer_sizes": (16,), "max_epochs": 5, "random_state": 3}
    first = LipschitzOutlierDetector(**params).fit(X).score_samples(X)
    second = LipschitzOutlierDetector(**params).fit(X).score_samples(X)
    assert np.array_equal(first, second)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    assert np.array_equal(X, X_before)


def test_warm_start_trains_the_same_network_on():
    X = np.random.RandomState(0).normal(size=(100, 2))
    detector = LipschitzOutlierDetector(hidden_layer_sizes=(8,), max_epochs=3,
                                        n_iter_no_change=10, warm_start=True,
                                        random_state=0).fit(X)  # fmt: skip
    detector.fit(X)
    assert detector.n_iter_ == 6 and len(detector.history_) == 6


@pytest.mark.parametrize(
    ("params", "X", "message"),
    [
        ({}, [[0.0, np.nan], [1.0, 2.0]], "NaN"),
        ({"contamination": 0.6}, [[0.0], [1.0]], "contamination"),
        ({"contamination": 0.0}, [[0.0], [1.0]], "contamination"),
        ({"n_newton_steps": -1}, [[0.0], [1.0]], "n_newton_steps"),
        ({"margin": "median"}, [[0.0], [1.0]], "margin"),
    ],
)
def test_bad_input_is_refused_by_name(params, X, message):
    detector = LipschitzOutlierDetector(max_epochs=1, **params)
    with pytest.raises(ValueError, match=message):
        detector.fit(X)
    assert not hasattr(detector, "module_")


def test_zero_weights_everywhere_are_refused():
    with pytest.raises(ValueError, match="sample_weight"):
        LipschitzOutlierDetector(max_epochs=1).fit([[0.0], [1.0]], sample_weight=[0.0, 0.0])


def test_a_pipeline_with_a_scaler_works_in_grid_search():
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(150, 2)) * [1.0, 100.0],
                   rng.uniform(-8, 8, size=(20, 2)) * [1.0, 100.0]])  # fmt: skip
    y = np.repeat([1, -1], [150, 20])
    pipe = make_pipeline(StandardScaler(), LipschitzOutlierDetector(
        hidden_layer_sizes=(16,), max_epochs=60, random_state=0))  # fmt: skip

    def auroc(estimator, X, y):
        return roc_auc_score(y == 1, estimator.score_samples(X))

    search = GridSearchCV(pipe, {"lipschitzoutlierdetector__alpha": [10.0, 100.0]},
                          scoring=auroc, cv=StratifiedKFold(3, shuffle=True, random_state=0)
                          ).fit(X, y)  # fmt: skip
    assert search.best_score_ > 0.8
    # Certificates in the raw space of the pipeline: the scaler's norm divides them.
    detector, scaler = search.best_estimator_[-1], search.best_estimator_[0]
    raw = certified_radius(search.best_estimator_, X)
    inner = detector.certified_radius(scaler.transform(X))
    assert np.all(raw <= inner * scaler.scale_.min() * (1 + 1e-9))
    assert np.allclose(raw, inner * scaler.scale_.min(), rtol=1e-6)


def test_certified_auroc_counts_pairs_that_no_perturbation_reverses():
    scores = np.array([3.0, 1.0, 0.0, 2.0])
    inlier = np.array([True, True, False, False])
    # eps 0: pairs (3>0, 3>2, 1>0, 1<2): 3 of 4; eps 0.5 (slack 1 each side): 3-1 > 2+1? no.
    curve = certified_auroc_from_bounds(scores, np.zeros(4), 2.0, inlier, np.array([0.0, 0.5]))
    assert curve.tolist() == [0.75, 0.25]  # at 0.5 only 3 - 1 > 0 + 1 holds


def test_certified_auroc_is_below_the_auroc_and_falls_with_eps(disc_detector):
    X = np.vstack([_disc(100, seed=5), _disc(100, seed=6) * 1.8 + 0.5])
    y = np.repeat([1, -1], 100)
    curve = certified_auroc(disc_detector, X, y, [0.0, 0.05, 0.2, 10.0])
    plain = roc_auc_score(y == 1, disc_detector.score_samples(X))
    assert curve[0] <= plain and curve[0] > plain - 0.01
    assert np.all(np.diff(curve) <= 0) and curve[-1] == 0.0
    with pytest.raises(ValueError, match="inlier"):
        certified_auroc(disc_detector, X, np.zeros(200), 0.1)


def test_negatives_move_toward_the_boundary_and_stay_in_the_box():
    """On f(x) = 1 - |x| (exact gradient norm 1), one full Newton step lands on |x| = 1."""

    class Cone(torch.nn.Module):
        def forward(self, x):
            return (1 - x.norm(dim=1)).unsqueeze(1)

    box = SamplingBox.around(np.array([-3.0, -3.0]), np.array([3.0, 3.0]), torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    seeds = box.uniform_points(500, generator)
    assert torch.all(seeds >= box.low) and torch.all(seeds <= box.high)
    moved = toward_boundary(Cone(), seeds, box, 1, generator)
    before, after = seeds.norm(dim=1), moved.norm(dim=1)
    outside = before > 1
    assert torch.all(after[outside] <= before[outside] + 1e-5)  # towards the disc
    assert torch.all(after[outside] >= 1 - 1e-4)  # never past the boundary
    assert torch.equal(moved[~outside], seeds[~outside])  # inside points stay


@pytest.mark.parametrize("chunk", [100, 8192])
def test_chosen_seeds_are_the_highest_scoring_candidates(monkeypatch, chunk):
    """Half the seeds: the best of 4n candidates under f; the rest uniform (all, unchosen).

    With chunks of 100 the candidates are drawn and scored in 9 pieces; the
    seeds kept are still the best of them all.
    """
    import sklip._complement as complement

    class Difference(torch.nn.Module):
        def forward(self, x):
            return x[:, :1] - x[:, 1:2]

    monkeypatch.setattr(complement, "_SCORE_CHUNK", chunk)
    box = SamplingBox.around(np.zeros(3), np.ones(3), torch.device("cpu"))
    n = 201
    seeds = draw_seeds(Difference(), box, n, torch.Generator().manual_seed(0), chosen=True)
    replay = torch.Generator().manual_seed(0)
    sizes = [min(chunk, HARD_CANDIDATES * n - start)
             for start in range(0, HARD_CANDIDATES * n, chunk)]  # fmt: skip
    candidates = torch.cat([box.uniform_points(size, replay) for size in sizes])
    scores = candidates[:, 0] - candidates[:, 1]
    top = candidates[scores.argsort(descending=True)[: n // 2]]
    assert seeds.shape == (n, 3)
    assert torch.equal(seeds[: n // 2], top)  # exactly the n // 2 best of all the candidates
    assert torch.equal(seeds[n // 2 :], box.uniform_points(n - n // 2, replay))  # then uniform
    plain = draw_seeds(Difference(), box, n, torch.Generator().manual_seed(0), chosen=False)
    assert torch.equal(plain, box.uniform_points(n, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("share", [0.04, 0.4])
def test_relabelling_trains_out_the_lowest_rows_of_1_5_times_the_share(share):
    """Rows scored lowest, holding RELABEL_FACTOR * c of the weight (at most half), become -1."""
    from sklip._training import TrainingSet
    from sklip.nn.losses import coefficient_columns

    class FirstFeature(torch.nn.Module):
        def forward(self, x):
            return x[:, :1]

    n = 100
    X = torch.zeros(2 * n, 2)
    X[:n, 0] = torch.randperm(n, generator=torch.Generator().manual_seed(0)).float()
    weights = torch.ones(2 * n)
    box = SamplingBox.around(np.zeros(2), np.full(2, 99.0), torch.device("cpu"))
    data = TrainingSet(X, torch.zeros(2 * n, 3))
    epochs = OneClassEpochs(data, weights, box, 0, share, torch.Generator().manual_seed(0))
    signs = coefficient_columns(epochs._relabelled_coefficients(FirstFeature(), n))[1][:, 0]
    relabelled = torch.nonzero(signs[:n] < 0)[:, 0]
    expected = round(min(0.5, RELABEL_FACTOR * share) * n)  # 6 of 100, then the cap: 50
    assert sorted(X[relabelled, 0].tolist()) == list(range(expected))  # the lowest scores
    assert torch.all(signs[n:] < 0)  # every negative stays one


def test_partial_fit_streams_epochs_over_chunks():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(400, 2))
    detector = LipschitzOutlierDetector(hidden_layer_sizes=(32,), random_state=0)
    for _ in range(15):
        for chunk in np.array_split(np.arange(400), 4):
            detector.partial_fit(X[chunk])
    assert detector.n_iter_ == 60 and len(detector.history_) == 60
    first_margin = one_class_margin(X[:100], np.ones(100), np.random.RandomState(0))
    assert detector.margin_ == first_margin  # "auto" measured on the first chunk, kept
    # The box covers every chunk seen.
    assert np.array_equal(detector._data_range[0], X.min(axis=0))
    assert np.array_equal(detector.predict([[0.0, 0.0], [8.0, 8.0]]), [1, -1])
    with pytest.raises(ValueError, match="features"):
        detector.partial_fit(rng.normal(size=(10, 3)))
    assert detector.n_iter_ == 60  # the failed call changed nothing


def test_contamination_trains_the_lowest_rows_as_outliers():
    """A tight cluster of 20 rows far from 200 others: "auto" wraps it, 0.1 excludes it."""
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(200, 2)), rng.normal(size=(20, 2)) * 0.2 + 6.0])
    params = {"hidden_layer_sizes": (32, 32), "max_epochs": 60, "random_state": 0}
    wrapped = LipschitzOutlierDetector(**params).fit(X)
    excluded = LipschitzOutlierDetector(contamination=0.1, **params).fit(X)
    assert wrapped.predict([[6.0, 6.0]])[0] == 1
    assert excluded.predict([[6.0, 6.0]])[0] == -1
    assert excluded.score_samples([[6.0, 6.0]])[0] < excluded.score_samples([[0.0, 0.0]])[0]


def test_certified_auroc_display_draws_the_curve(disc_detector):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from sklip.robustness import CertifiedAUROCDisplay

    X = np.vstack([_disc(50, seed=7), _disc(50, seed=8) + 2.5])
    y = np.repeat([1, -1], 50)
    display = CertifiedAUROCDisplay.from_estimator(disc_detector, X, y)
    assert display.certified_auroc[0] == certified_auroc(disc_detector, X, y, 0.0)
    assert display.certified_auroc[-1] == 0.0 and np.all(np.diff(display.certified_auroc) <= 0)
    assert display.line_.get_ydata().shape == (100,)
    with pytest.raises(ValueError, match="inlier"):
        CertifiedAUROCDisplay.from_estimator(disc_detector, X, np.ones(100))
