"""LipschitzClassifier behaves as a scikit-learn estimator."""

import copy
import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklip import LipschitzClassifier
from sklip._adam import Adam

EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "float32 mini-batch training: weighting and repeating samples agree only up to "
        "float32 rounding (~1e-7 relative), below the check's tolerance"
    ),
}

SMALL_MLP = LipschitzClassifier(hidden_layer_sizes=(16,), max_epochs=20, random_state=0)
SMALL_CNN = LipschitzClassifier(
    image_shape=(1, -1, 1), conv_channels=(4,), hidden_layer_sizes=(8,), max_epochs=20,
    random_state=0,
)  # fmt: skip


@parametrize_with_checks(
    [SMALL_MLP, SMALL_CNN], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _blobs(n=120, centers=2, seed=0):
    X, y = make_blobs(n, n_features=4, centers=centers, cluster_std=1.0, random_state=seed)
    return StandardScaler().fit_transform(X).astype(np.float64), y


def _small(**params):
    defaults = dict(
        hidden_layer_sizes=(16,), max_epochs=15, random_state=0, margin=0.5, batch_size=128
    )
    return LipschitzClassifier(**{**defaults, **params})


def test_grid_search_over_alpha_and_margin_in_a_pipeline_runs_in_parallel_and_refits():
    X, y = _blobs(160)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", _small())])
    grid = GridSearchCV(
        pipe, {"clf__alpha": [1.0, 20.0], "clf__margin": [0.1, 1.0]}, cv=2, n_jobs=2
    ).fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_estimator_.named_steps["clf"].alpha in (1.0, 20.0)
    assert grid.score(X, y) > 0.9
    assert hasattr(grid.best_estimator_.named_steps["clf"], "module_")


def test_clone_keeps_every_parameter():
    clf = LipschitzClassifier(
        hidden_layer_sizes=(8, 6),
        image_shape=(1, 2, 2),
        conv_channels=(4,),
        activation="fullsort",
        alpha=3.0,
        margin=0.2,
        max_epochs=7,
        batch_size=16,
        learning_rate=0.01,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=3,
        tol=0.01,
        device="cpu",
        random_state=4,
        verbose=0,
        warm_start=True,
    )
    assert clone(clf).get_params() == clf.get_params()


def test_binary_decision_predict_radius_and_export_use_the_same_final_weights():
    X, y = _blobs()
    clf = _small().fit(X, y)
    f = clf.decision_function(X)
    assert f.shape == (len(X),)
    assert np.array_equal(clf.predict(X), clf.classes_[(f > 0).astype(int)])
    radius = clf.certified_radius(X)
    assert np.allclose(radius, np.abs(f) / clf.lipschitz_constant_, rtol=1e-9, atol=1e-12)
    assert np.all(radius <= np.abs(f) / clf.lipschitz_constant_)  # minus the rounding slack
    with torch.no_grad():
        exported = clf.to_torch()(torch.as_tensor(X, dtype=torch.float64)).numpy()[:, 0]
    assert np.array_equal(exported, f)  # the same float64 weights and arithmetic
    # The network's weights right now, recomputed from scratch (a copy starts
    # with no cached weights), give the same scores: no stale cache anywhere.
    fresh_module = copy.deepcopy(clf.module_).eval()
    assert fresh_module[0]._cached_weight is None
    with torch.no_grad():
        fresh = fresh_module(torch.as_tensor(X, dtype=torch.float32))
    assert np.allclose(fresh.numpy()[:, 0], f, atol=1e-5)


def test_multiclass_scores_have_one_column_per_class():
    X, y = _blobs(150, centers=3)
    clf = _small().fit(X, y)
    scores = clf.decision_function(X)
    assert scores.shape == (150, 3)
    assert np.array_equal(clf.predict(X), clf.classes_[scores.argmax(axis=1)])
    with torch.no_grad():
        exported = clf.to_torch()(torch.as_tensor(X, dtype=torch.float64)).numpy()
    assert np.array_equal(exported, scores)
    assert clf.pairwise_lipschitz_constant_.shape == (3, 3)


@pytest.mark.parametrize("centers", [2, 3])
def test_predict_proba_is_a_calibrated_monotone_map_of_the_scores(centers):
    X, y = _blobs(150, centers=centers)
    clf = _small().fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (150, centers)
    assert np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))
    assert clf.temperature_ > 0
    if centers == 2:  # p(classes_[1]) = sigmoid(a f)
        f = clf.decision_function(X)
        assert np.allclose(proba[:, 1], 1 / (1 + np.exp(-clf.temperature_ * f)))
        order = np.argsort(f)
        assert np.all(np.diff(proba[order, 1]) >= -1e-12)
    assert np.allclose(np.exp(clf.predict_log_proba(X)), proba)


def test_fitted_temperature_minimises_the_log_loss():
    from sklearn.metrics import log_loss

    X, y = _blobs(150, centers=3)
    X = X + np.random.RandomState(0).normal(scale=1.5, size=X.shape)  # overlapping classes
    clf = _small().fit(X, y)
    best = log_loss(y, clf.predict_proba(X))
    fitted = clf.temperature_
    for factor in (0.5, 2.0):
        clf.temperature_ = fitted * factor
        assert log_loss(y, clf.predict_proba(X)) > best


@pytest.mark.parametrize(
    "labels", [np.array(["cat", "dog"]), np.array([True, False]), np.array([-3, 7])]
)
def test_any_label_type_round_trips(labels):
    X, y = _blobs()
    y_labels = labels[y]
    clf = _small().fit(X, y_labels)
    assert set(clf.classes_) == set(labels)
    assert clf.predict(X).dtype == y_labels.dtype
    assert clf.score(X, y_labels) > 0.9


def test_dataframe_input_records_feature_names():
    X, y = _blobs()
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = _small().fit(frame, y)
    assert list(clf.feature_names_in_) == ["a", "b", "c", "d"]
    assert clf.n_features_in_ == 4
    assert np.array_equal(
        clf.predict(frame), clf.classes_[(clf.decision_function(frame) > 0).astype(int)]
    )


def test_cnn_accepts_flat_rows_and_images_alike():
    X, y = _blobs(80)
    X = np.repeat(X, 4, axis=1)  # 16 features = one 4x4 image
    clf = _small(image_shape=(1, 4, 4), conv_channels=(4,)).fit(X, y)
    assert np.array_equal(clf.decision_function(X), clf.decision_function(X.reshape(-1, 1, 4, 4)))
    assert clf.n_features_in_ == 16


def test_same_random_state_gives_identical_models():
    X, y = _blobs()
    a, b = _small(random_state=3).fit(X, y), _small(random_state=3).fit(X, y)
    assert np.array_equal(a.decision_function(X), b.decision_function(X))
    assert a.history_ == [{**r, "epoch_time": a.history_[i]["epoch_time"]}
                          for i, r in enumerate(b.history_)]  # fmt: skip
    c = _small(random_state=4).fit(X, y)
    assert not np.array_equal(a.decision_function(X), c.decision_function(X))


def test_fitting_leaves_the_global_torch_rng_alone():
    X, y = _blobs()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _small().fit(X, y)
    assert torch.equal(torch.rand(3), expected)


def test_history_records_every_epoch():
    X, y = _blobs()
    clf = _small(max_epochs=6, n_iter_no_change=100).fit(X, y)
    assert clf.n_iter_ == 6 == len(clf.history_) == len(clf.loss_curve_)
    record = clf.history_[-1]
    assert set(record) >= {"loss", "kr", "hinge", "train_accuracy", "epoch_time"}
    assert record["loss"] == pytest.approx(clf.alpha * record["hinge"] - record["kr"], rel=1e-5)
    assert clf.loss_curve_ == [r["loss"] for r in clf.history_]


def test_warm_start_continues_training():
    X, y = _blobs()
    clf = _small(max_epochs=5, warm_start=True, n_iter_no_change=100).fit(X, y)
    first = clf.module_
    clf.fit(X, y)
    assert clf.module_ is not first  # trained on a copy, published at the end
    assert clf.n_iter_ == 10 and len(clf.history_) == 10
    assert clf.history_[-1]["loss"] < clf.history_[0]["loss"]
    cold = _small(max_epochs=5, n_iter_no_change=100).fit(X, y)
    cold.fit(X, y)
    assert cold.n_iter_ == 5


def test_early_stopping_tracks_validation_accuracy_and_keeps_the_best_epoch():
    X, y = _blobs(200)
    clf = _small(early_stopping=True, max_epochs=200, n_iter_no_change=3).fit(X, y)
    scores = [record["validation_score"] for record in clf.history_]
    assert clf.n_iter_ < 200
    assert clf.n_iter_ == len(scores)
    assert max(scores) >= 0.9


def test_training_stops_when_the_loss_stalls():
    X, y = _blobs()
    clf = _small(max_epochs=500, tol=10.0, n_iter_no_change=2).fit(X, y)
    assert clf.n_iter_ == 3  # the first epoch sets the best, two more fail to beat it by 10


def test_verbose_shows_a_progress_bar_with_the_loss(capsys):
    X, y = _blobs()
    _small(verbose=1, max_epochs=3).fit(X, y)
    err = capsys.readouterr().err
    assert "loss=" in err and "3/3" in err


def test_keyboard_interrupt_keeps_the_last_completed_epoch(monkeypatch):
    X, y = _blobs()
    steps_per_epoch = 2  # 120 samples, batch size 64
    reference = _small(max_epochs=2, batch_size=64, n_iter_no_change=100).fit(X, y)
    original_step = Adam.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 * steps_per_epoch + 1:  # first step of epoch 3
            raise KeyboardInterrupt
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(Adam, "step", step)
    with pytest.warns(UserWarning, match="interrupted"):
        clf = _small(max_epochs=10, batch_size=64, n_iter_no_change=100).fit(X, y)
    assert clf.n_iter_ == 2
    assert np.array_equal(clf.decision_function(X), reference.decision_function(X))
    assert np.isfinite(clf.certified_radius(X)).all()


def test_diverging_training_raises_a_clear_error():
    X, y = make_blobs(120, n_features=4, centers=2, random_state=0)
    clf = _small(alpha=1e30)
    with pytest.raises(ValueError, match="lower learning_rate"):
        clf.fit(X * 1e10, y)  # finite in float32, but the loss overflows
    assert not hasattr(clf, "module_")


@pytest.mark.parametrize("dump", [pickle.dumps, lambda est: _joblib_bytes(est)])
def test_pickle_round_trip_gives_identical_predictions(dump):
    X, y = _blobs(150, centers=3)
    clf = _small().fit(X, y)
    data = dump(clf)
    restored = pickle.loads(data) if isinstance(data, bytes) else data
    assert np.array_equal(restored.decision_function(X), clf.decision_function(X))
    assert np.array_equal(restored.certified_radius(X), clf.certified_radius(X))
    assert restored.device_ == clf.device_


def _joblib_bytes(est):
    import io

    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    buffer.seek(0)
    return joblib.load(buffer)


def test_cpu_device_is_honoured_and_auto_resolves():
    X, y = _blobs()
    assert _small(device="cpu").fit(X, y).device_ == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert _small(device="auto").fit(X, y).device_.type == expected


def test_no_warnings_on_a_clean_fit():
    X, y = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _small().fit(X, y).predict(X)
