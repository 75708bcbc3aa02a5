"""Fitted state that is always whole (issue 13, points 3, 4 and 6).

A call that raises leaves the estimator exactly as it was; a loop over chunks
stopped by Ctrl-C leaves a state whose every figure belongs to one network;
fits in parallel threads give what they give alone and touch no global state.
"""

import threading
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

import sklip._training as training
from sklip import LipschitzClassifier, WassersteinEstimator, fit_in_chunks
from sklip.robustness import pgd_attack


def _small(**params):
    return LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=3, random_state=0, **params)


def snapshot(estimator, X):
    """Every fitted attribute and the public outputs, to compare after a call."""
    fitted = {}
    for name, value in vars(estimator).items():
        if isinstance(value, torch.nn.Module):
            value = [p.detach().clone() for p in value.parameters()]
        elif hasattr(value, "module") and hasattr(value, "lipschitz_constant"):  # FrozenNetwork
            value = [p.detach().clone() for p in value.module.parameters()]
        fitted[name] = value
    outputs = {"decision": estimator.decision_function(X), "predict": estimator.predict(X)}
    if hasattr(estimator, "certified_radius"):
        outputs["radius"] = estimator.certified_radius(X)
    return fitted, outputs


def assert_same(before, after):
    fitted_before, outputs_before = before
    fitted_after, outputs_after = after
    assert fitted_before.keys() == fitted_after.keys()
    for name, value in fitted_before.items():
        other = fitted_after[name]
        if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
            assert all(torch.equal(a, b) for a, b in zip(value, other, strict=True)), name
        elif isinstance(value, np.ndarray):
            assert np.array_equal(value, other), name
        elif isinstance(value, float | int | str | bool | tuple):
            assert value == other or (value != value and other != other), name
    for name, value in outputs_before.items():
        assert np.array_equal(value, outputs_after[name]), name


@pytest.fixture
def binary():
    X, y = make_blobs(120, centers=2, n_features=4, random_state=0)
    return _small().fit(X, y), X, y


def _bad_calls(X, y):
    rng = np.random.RandomState(0)
    spam = np.where(y == 0, "ham", "spam")
    three = rng.randint(3, size=len(y))
    return {
        "new labels on a missing device": (dict(device="cuda:7"), "fit", (X, spam)),
        "2 -> 3 classes, odd width": (dict(hidden_layer_sizes=(7,)), "fit", (X, three)),
        "new n_features, bad width": (dict(hidden_layer_sizes=(3,)), "fit", (X[:, :3], y)),
        "NaN in X": ({}, "fit", (np.where(rng.rand(*X.shape) < 0.01, np.nan, X), y)),
        "one class": ({}, "fit", (X, np.zeros_like(y))),
        "divergence": (dict(learning_rate=1e30, batch_size=16), "fit", (X * 1e20, y)),
        "warm start, new classes": (dict(warm_start=True), "fit", (X, three)),
        "warm start, new shape": (dict(warm_start=True, hidden_layer_sizes=(4,)), "fit", (X, y)),
        "partial_fit, unknown label": ({}, "partial_fit", (X, three)),
        "partial_fit, wrong n_features": ({}, "partial_fit", (X[:, :2], y)),
    }


@pytest.mark.parametrize("case", list(_bad_calls(np.zeros((2, 4)), np.zeros(2, int))))
def test_a_call_that_raises_leaves_the_classifier_as_it_was(binary, case):
    clf, X, y = binary
    params, method, args = _bad_calls(X, y)[case]
    before = snapshot(clf, X)
    clf.set_params(**params)
    with pytest.raises((ValueError, TypeError)):
        getattr(clf, method)(*args)
    clf.set_params(**{name: LipschitzClassifier().get_params()[name] for name in params})
    clf.set_params(hidden_layer_sizes=(8,))
    assert_same(before, snapshot(clf, X))


def test_three_to_two_classes_raising_keeps_the_three_class_model():
    X, y = make_blobs(150, centers=3, random_state=0)
    clf = _small().fit(X, y)
    before = snapshot(clf, X)
    with pytest.raises(ValueError):
        clf.set_params(device="cuda:7").fit(X[y < 2], y[y < 2])
    clf.set_params(device="auto")
    assert_same(before, snapshot(clf, X))


def test_wasserstein_estimator_raising_keeps_its_distance():
    X, y = make_blobs(200, centers=2, random_state=0)
    est = WassersteinEstimator(hidden_layer_sizes=(8,), max_epochs=3, random_state=0).fit(X, y)
    before = snapshot(est, X)
    with pytest.raises(ValueError):
        est.set_params(device="cuda:7").fit(X + 1, y)
    est.set_params(device="auto")
    assert_same(before, snapshot(est, X))


def test_ctrl_c_in_partial_fit_leaves_the_estimator_as_it_was(binary, monkeypatch):
    clf, X, y = binary
    before = snapshot(clf, X)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        clf.partial_fit(X, y)
    assert_same(before, snapshot(clf, X))


def _chunked_data(n=600, seed=0):
    X, y = make_blobs(n, centers=3, random_state=seed)
    order = np.random.RandomState(seed).permutation(n)
    return X[order], y[order]


def test_an_error_in_a_late_chunk_rolls_fit_in_chunks_back():
    X, y = _chunked_data()
    clf = _small().fit(X, y)
    before = snapshot(clf, X)
    bad = X.copy()
    bad[450] = np.nan  # chunk 5 of 6
    with pytest.raises(ValueError, match="NaN"):
        fit_in_chunks(clf, bad, y, chunk_size=100, shuffle=False)
    assert_same(before, snapshot(clf, X))


def test_ctrl_c_stops_fit_in_chunks_with_a_whole_state(monkeypatch):
    X, y = _chunked_data()
    clf = _small().fit(X, y)
    n_before = clf.n_iter_
    calls = {"n": 0}
    real_epoch = training._run_epoch

    def interrupted_on_the_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "_run_epoch", interrupted_on_the_fourth)
    with pytest.warns(UserWarning, match="interrupted"):
        fit_in_chunks(clf, X, y, chunk_size=100, shuffle=False)
    assert calls["n"] == 4  # the loop stopped: no fifth chunk was trained
    assert clf.n_iter_ == n_before + 3
    # Every figure is the published network's: bounds and temperature included.
    from sklip.nn import FrozenNetwork

    fresh = FrozenNetwork(clf.module_, clf.n_features_in_)
    assert fresh.lipschitz_constant == clf.lipschitz_constant_
    assert np.array_equal(fresh.pairwise_lipschitz_constant.numpy(),
                          clf.pairwise_lipschitz_constant_)  # fmt: skip
    correct = clf.predict(X) == y
    radius = clf.certified_radius(X[correct])
    attacked = pgd_attack(clf, X[correct], y[correct], 0.99 * radius, random_state=0)
    assert np.array_equal(clf.predict(attacked), y[correct])


def _fit_one(params, X, y):
    return LipschitzClassifier(**params).fit(X, y).decision_function(X)


def test_fits_in_threads_match_sequential_fits_and_touch_no_global_state():
    X, y = make_blobs(200, centers=3, n_features=6, random_state=0)
    configurations = [
        dict(hidden_layer_sizes=(64, 64), max_epochs=3, random_state=seed) for seed in range(4)
    ]
    sequential = [_fit_one(params, X, y) for params in configurations]
    torch.manual_seed(1234)
    rng_before = torch.get_rng_state()
    threads_before = torch.get_num_threads()
    results = [None] * 4

    def run(index):
        results[index] = _fit_one(configurations[index], X, y)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for alone, together in zip(sequential, results, strict=True):
        assert np.array_equal(alone, together)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads_before


def test_a_fit_leaves_torch_global_rng_untouched():
    X, y = make_blobs(60, centers=2, random_state=0)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _small().fit(X, y)
    assert torch.equal(torch.rand(3), expected)


def _rng_position(rng):
    state = rng.get_state()
    return state[1].copy(), state[2:]


def _positions_equal(a, b):
    return np.array_equal(a[0], b[0]) and a[1] == b[1]


@pytest.mark.parametrize("estimator", ["classifier", "wasserstein"])
def test_a_fit_that_raises_winds_its_random_generator_back(estimator):
    """The user's RandomState is wound back (numpy's global one is not: other threads
    may have drawn from it since)."""
    X, y = make_blobs(60, centers=2, n_features=4, random_state=0)
    kind = LipschitzClassifier if estimator == "classifier" else WassersteinEstimator
    diverging = {"hidden_layer_sizes": (8,), "max_epochs": 2, "learning_rate": 1e30}
    rng = np.random.RandomState(42)
    model = kind(random_state=rng, **diverging)
    before = _rng_position(rng)
    with pytest.raises(ValueError, match="diverged"):
        model.fit(X * 1e20, y)
    assert _positions_equal(_rng_position(rng), before)
    assert model.random_state is rng
    # A successful fit draws from it, as scikit-learn's estimators do.
    before = _rng_position(rng)
    kind(random_state=rng, hidden_layer_sizes=(8,), max_epochs=1).fit(X, y)
    assert not _positions_equal(_rng_position(rng), before)


def test_a_failed_fit_in_chunks_keeps_the_users_parameter_objects():
    X, y = _chunked_data(300)
    rng, sizes = np.random.RandomState(0), [8]
    clf = LipschitzClassifier(hidden_layer_sizes=sizes, max_epochs=2, random_state=rng)
    before = _rng_position(rng)
    bad = X.copy()
    bad[250] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_in_chunks(clf, bad, y, chunk_size=100, shuffle=False)
    assert clf.random_state is rng and clf.hidden_layer_sizes is sizes
    assert _positions_equal(_rng_position(rng), before)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_fit_and_attacks_work_under_the_callers_no_grad(mode):
    X, y = make_blobs(80, centers=2, n_features=4, random_state=0)
    expected = _small().fit(X, y)
    with mode():
        clf = _small().fit(X, y)
        clf.partial_fit(X, y)
        radius = clf.certified_radius(X)
        attacked = pgd_attack(clf, X, y, 0.99 * radius, random_state=0)
        from sklip.robustness import counterfactual

        moved = counterfactual(clf, X[:5])
        fit_in_chunks(_small(), X, y, chunk_size=40)  # trains through _partial_fit_hkr
        from sklip import wasserstein_distance

        wasserstein_distance(X[y == 0], X[y == 1], chunk_size=40, max_epochs=2)
    assert torch.is_grad_enabled() is True and not torch.is_inference_mode_enabled()
    expected.partial_fit(X, y)
    assert np.array_equal(clf.decision_function(X), expected.decision_function(X))
    assert np.array_equal(clf.predict(attacked), clf.predict(X))
    assert (clf.predict(moved) != clf.predict(X[:5])).all()


def test_a_float64_default_dtype_trains_float32_networks_and_is_left_alone(tmp_path):
    """torch's default dtype is process-wide: sklip casts its networks instead of
    changing it (a change would reach fits and code in other threads)."""
    import sklip

    X, y = make_blobs(80, centers=3, n_features=4, random_state=0)
    seen = []
    real_epoch = training._run_epoch

    def watching(*args, **kwargs):
        seen.append(torch.get_default_dtype())
        return real_epoch(*args, **kwargs)

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(training, "_run_epoch", watching)
            clf = LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=30, random_state=0)
            clf.fit(X, y)
            sklip.save(clf, tmp_path / "model.sklip")
            loaded = sklip.load(tmp_path / "model.sklip")
            loaded.partial_fit(X, y)  # trains on the loaded float32 network
            fit_in_chunks(_small(), X, y, chunk_size=40)
    finally:
        torch.set_default_dtype(previous)
    assert set(seen) == {torch.float64}  # never changed, not even during training
    assert all(p.dtype == torch.float32 for p in loaded.module_.parameters())
    assert clf.score(X, y) > 0.9


def _partial_fit_args(kind, X, y):
    if kind == "detector":
        return (X,), {}
    if kind == "regressor":
        return (X, X[:, 0]), {}
    return (X, y), {"classes": [0, 1]}


@pytest.mark.parametrize("kind", ["classifier", "detector", "regressor", "wasserstein"])
@pytest.mark.parametrize(
    "params", [{"alpha": -1.0}, {"learning_rate": -0.05}, {"batch_size": 0}, {"max_epochs": 0}]
)
def test_every_parameter_is_validated_again_by_a_later_partial_fit(kind, params):
    """scikit-learn validates on the first partial_fit only: alpha=-1 (a flipped
    hinge) or learning_rate=-0.05 (Adam climbing the loss) would train silently."""
    from sklearn.utils._param_validation import InvalidParameterError

    from sklip import LipschitzOutlierDetector, LipschitzRegressor

    kinds = {"classifier": LipschitzClassifier, "detector": LipschitzOutlierDetector,
             "regressor": LipschitzRegressor, "wasserstein": WassersteinEstimator}  # fmt: skip
    X, y = make_blobs(60, centers=2, n_features=3, random_state=0)
    args, kwargs = _partial_fit_args(kind, X, y)
    model = kinds[kind](hidden_layer_sizes=(8,), random_state=0).partial_fit(*args, **kwargs)
    if kind == "regressor" and "alpha" in params:
        params = {"lipschitz_constant": -1.0}  # the regressor has no alpha
    model.set_params(**params)
    before = snapshot(model, X) if hasattr(model, "decision_function") else None
    with pytest.raises(InvalidParameterError, match=f"'{next(iter(params))}' parameter"):
        model.partial_fit(*args, **kwargs)
    if before is not None:
        assert_same(before, snapshot(model, X))
