"""partial_fit and chunked fits: scikit-learn's incremental semantics, flat memory."""

import os
import pickle
import sys
import threading

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import StandardScaler

from sklip import LipschitzClassifier, WassersteinEstimator, fit_in_chunks, wasserstein_distance


def _blobs(n=200, centers=2, seed=0):
    X, y = make_blobs(n, n_features=4, centers=centers, cluster_std=1.0, random_state=seed)
    return StandardScaler().fit_transform(X), y


def _small(**params):
    defaults = dict(hidden_layer_sizes=(16,), random_state=0, margin=0.5, batch_size=32)
    return LipschitzClassifier(**{**defaults, **params})


def test_partial_fit_over_chunks_reaches_the_accuracy_of_fit(digits_0_vs_8):
    X_train, X_test, y_train, y_test = digits_0_vs_8
    fitted = LipschitzClassifier(random_state=0).fit(X_train, y_train)
    streamed = LipschitzClassifier(random_state=0)
    chunks = np.array_split(np.random.RandomState(0).permutation(len(X_train)), 3)
    for _ in range(20):  # fit runs 100 epochs here
        for chunk in chunks:
            streamed.partial_fit(X_train[chunk], y_train[chunk], classes=[0, 8])
    assert streamed.n_iter_ == 3 * 20
    assert streamed.score(X_test, y_test) >= fitted.score(X_test, y_test) - 0.01


def test_each_call_is_one_epoch_on_the_same_network():
    X, y = _blobs()
    clf = _small().partial_fit(X, y, classes=[0, 1])
    first = clf.module_
    clf.partial_fit(X[:100], y[:100])
    assert clf.n_iter_ == 2 == len(clf.history_) == len(clf.loss_curve_)
    assert clf.module_ is not first  # trained on a copy, published at the end
    steps = [state["step"] for state in clf._optimizer_state["state"].values()]
    assert all(float(step) == 7 + 4 for step in steps)  # 200 / 32 -> 7 steps, then 4


def test_the_optimiser_state_carries_over_and_survives_pickling():
    X, y = _blobs()
    straight = _small().partial_fit(X, y, classes=[0, 1]).partial_fit(X, y)
    first = _small().partial_fit(X, y, classes=[0, 1])
    resumed = pickle.loads(pickle.dumps(first)).partial_fit(X, y)
    assert np.array_equal(resumed.decision_function(X), straight.decision_function(X))
    forgetful = _small().partial_fit(X, y, classes=[0, 1])
    del forgetful._optimizer_state  # Adam restarts from zero moments: another path
    forgetful.partial_fit(X, y)
    assert not np.array_equal(forgetful.decision_function(X), straight.decision_function(X))


def test_learning_rate_changes_between_calls_take_effect():
    X, y = _blobs()
    clf = _small().partial_fit(X, y, classes=[0, 1])
    clf.set_params(learning_rate=1e-12)  # 0 is refused, as by fit
    before = clf.decision_function(X)
    clf.partial_fit(X, y)
    assert np.allclose(clf.decision_function(X), before, atol=1e-6)


def test_classes_are_required_first_and_fixed_after():
    X, y = _blobs()
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        _small().partial_fit(X, y)
    clf = _small().partial_fit(X, y, classes=[0, 1, 2])
    assert list(clf.classes_) == [0, 1, 2]
    assert clf.decision_function(X).shape == (200, 3)  # a class no chunk held yet
    with pytest.raises(ValueError, match="not the same as on the first call"):
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X, y + 5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        _small().partial_fit(X, y, classes=[0])
    with pytest.raises(ValueError, match="exactly two classes"):
        WassersteinEstimator().partial_fit(X, y, classes=[0, 1, 2])


def test_a_chunk_may_hold_a_single_class():
    X, y = _blobs()
    clf = _small().partial_fit(X[y == 0], y[y == 0], classes=[0, 1])
    assert np.isfinite(clf.decision_function(X)).all()
    est = WassersteinEstimator(hidden_layer_sizes=(8,)).partial_fit(X[y == 0], y[y == 0], [0, 1])
    assert np.isnan(est.distance_)
    est.partial_fit(X, y)
    assert np.isfinite(est.distance_)


def test_early_stopping_is_refused_by_the_classifier_and_ignored_for_w1():
    X, y = _blobs()
    with pytest.raises(ValueError, match="early_stopping"):
        _small(early_stopping=True).partial_fit(X, y, classes=[0, 1])
    est = WassersteinEstimator(hidden_layer_sizes=(8,), early_stopping=True)
    est.partial_fit(X, y, classes=[0, 1])
    assert est.n_iter_ == 1 and "validation_score" not in est.history_[0]


def test_fit_starts_afresh_after_partial_fit_and_partial_fit_continues_a_fit():
    X, y = _blobs()
    clf = _small(max_epochs=4, n_iter_no_change=100)
    for _ in range(3):
        clf.partial_fit(X, y, classes=[0, 1])
    clf.fit(X, y)
    reference = _small(max_epochs=4, n_iter_no_change=100).fit(X, y)
    assert clf.n_iter_ == 4
    assert np.array_equal(clf.decision_function(X), reference.decision_function(X))
    clf.partial_fit(X, y)  # no classes needed: fit set them
    assert clf.n_iter_ == 5


def test_wasserstein_partial_fit_reports_the_last_chunk():
    rng = np.random.RandomState(0)
    est = WassersteinEstimator(batch_size=256, random_state=0)
    shift = np.array([3.0, 4.0])
    for _ in range(30):
        P, Q = rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)) + shift
        est.partial_fit(np.vstack([P, Q]), np.repeat([0, 1], 1000), classes=[0, 1])
    assert est.distance_ == pytest.approx(5.0, rel=0.05)
    # The proven bound is the dual value over the network's bound, less rounding
    # (a bound slightly below 1 puts it slightly above distance_).
    assert est.lower_bound_ <= est.distance_ / est.lipschitz_constant_ + 1e-9
    assert est.lower_bound_ >= 0.99 * est.distance_ / est.lipschitz_constant_
    assert not hasattr(est, "validation_distance_")


def test_fit_in_chunks_of_a_dask_array_follows_its_blocks():
    da = pytest.importorskip("dask.array")
    X, y = _blobs(300)
    streamed = fit_in_chunks(
        _small(), da.from_array(X, chunks=(100, 2)), da.from_array(y, chunks=100), random_state=0
    )
    in_memory = fit_in_chunks(_small(), X, y, chunk_size=100, random_state=0)
    assert streamed.n_iter_ == 3 and list(streamed.classes_) == [0, 1]
    assert np.array_equal(streamed.decision_function(X), in_memory.decision_function(X))


def test_fit_in_chunks_drives_any_incremental_estimator():
    X, y = _blobs()
    sgd = fit_in_chunks(SGDClassifier(random_state=0), X, y, chunk_size=50, n_passes=3)
    assert sgd.score(X, y) > 0.9
    with pytest.raises(ValueError, match="n_passes"):
        fit_in_chunks(_small(), X, y, n_passes=0)


@pytest.mark.parametrize("kind", ["wasserstein", "regressor", "detector"])
def test_fit_in_chunks_is_the_partial_fit_loop_for_every_other_sklip_estimator(kind):
    """The classifier alone skips the middle chunks' summary: the W1 critic's
    summary flips its sign (which steers training), and the regressor's and
    detector's partial_fit are their own (they failed from the third chunk)."""
    from sklip import LipschitzOutlierDetector, LipschitzRegressor

    X, y = _blobs()
    if kind == "wasserstein":  # close sets: some chunks' critics come out negated
        rng = np.random.RandomState(0)
        X = np.vstack((rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + np.array([0.3, 0.0])))
        y = np.repeat([0, 1], 100)
        order = rng.permutation(200)
        X, y = X[order], y[order]
        make, args, kwargs = WassersteinEstimator, (X, y), {"classes": [0, 1]}
    elif kind == "regressor":
        make, args, kwargs = LipschitzRegressor, (X, X[:, 0]), {}
    else:
        make, args, kwargs = LipschitzOutlierDetector, (X, None), {}
    params = {"hidden_layer_sizes": (8,), "random_state": 1, "batch_size": 16}
    chunked = fit_in_chunks(make(**params), *args, chunk_size=50, shuffle=False)
    looped = make(**params)
    for start in range(0, len(X), 50):
        rows = slice(start, start + 50)
        looped.partial_fit(args[0][rows], None if args[1] is None else args[1][rows], **kwargs)
    outputs = "decision_function" if kind == "wasserstein" else "predict"
    assert np.array_equal(getattr(chunked, outputs)(X), getattr(looped, outputs)(X))
    assert chunked.n_iter_ == looped.n_iter_ == 4


def test_fit_in_chunks_skips_chunks_without_weight():
    X, y = _blobs()
    weights = np.ones(len(X))
    weights[50:100] = 0.0  # the second chunk
    clf = fit_in_chunks(_small(), X, y, sample_weight=weights, chunk_size=50, shuffle=False)
    assert clf.n_iter_ == 3
    with pytest.raises(ValueError, match="sample_weight is 0 on every row"):
        fit_in_chunks(_small(), X, y, sample_weight=np.zeros(len(X)), chunk_size=50)


class _PeakResidentSet:
    """Samples this process's resident set (Linux /proc) every 2 ms in a thread."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self.now()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def now(self):
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self.page

    def _watch(self):
        while not self._done.wait(0.002):
            self.peak = max(self.peak, self.now())

    def growth(self):
        self._done.set()
        self._thread.join()
        return max(self.peak, self.now()) - self.start


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_fitting_a_memmap_in_chunks_keeps_the_resident_set_flat(tmp_path):
    n, d = 25_600, 2048  # 200 MB of float32
    path = tmp_path / "X.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.RandomState(0)
    for start in range(0, n, 3200):
        X[start : start + 3200] = rng.standard_normal((3200, d)).astype(np.float32)
    X.flush()
    del X
    y = rng.randint(2, size=n)
    X = np.load(path, mmap_mode="r")
    size = X.nbytes
    clf = _small(hidden_layer_sizes=(8,), batch_size=512)
    clf.partial_fit(np.array(X[:64]), y[:64], classes=[0, 1])  # one-off allocations first
    watch = _PeakResidentSet()
    fit_in_chunks(clf, X, y, chunk_size=1024, random_state=0)
    growth = watch.growth()
    assert clf.n_iter_ == 1 + 25
    assert growth < size / 4, f"resident set grew by {growth / 2**20:.0f} MB"
    # Control: reading every row of the map does show in the resident set.
    watch = _PeakResidentSet()
    assert np.isfinite(X.sum(dtype=np.float64))
    assert watch.growth() > size / 2


def test_w1_streamed_from_memmaps_meets_the_known_answer(tmp_path):
    rng = np.random.RandomState(0)
    v = rng.normal(size=16)
    v *= 2.0 / np.linalg.norm(v)
    for name, shift in (("P", 0.0), ("Q", v)):
        rows = (rng.normal(size=(20_000, 16)) + shift).astype(np.float32)
        np.save(tmp_path / f"{name}.npy", rows)
    P, Q = (np.load(tmp_path / f"{name}.npy", mmap_mode="r") for name in ("P", "Q"))
    estimate = wasserstein_distance(P, Q, chunk_size=4000, batch_size=256, random_state=0)
    assert estimate == pytest.approx(2.0, rel=0.05)


@pytest.mark.gpu
def test_a_model_trained_in_chunks_on_cuda_carries_on_on_a_cpu_only_machine(tmp_path):
    import subprocess

    X, y = _blobs()
    clf = _small(device="cuda").partial_fit(X, y, classes=[0, 1])
    assert all(
        tensor.device.type == "cuda"
        for state in clf._optimizer_state["state"].values()
        for tensor in state.values()
    )
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps(clf))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    code = (
        "import pickle, numpy as np, torch; assert not torch.cuda.is_available(); "
        f"clf = pickle.loads(open({str(model)!r}, 'rb').read()); "
        f"X, y = np.load({str(tmp_path / 'X.npy')!r}), np.load({str(tmp_path / 'y.npy')!r}); "
        "clf.predict(X); clf.partial_fit(X, y); assert clf.n_iter_ == 2; print('ok')"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
    assert torch.cuda.is_available()


def test_streamed_w1_honours_the_sample_weights():
    from scipy.stats import wasserstein_distance as scipy_w1

    rng = np.random.RandomState(2)
    p, q = rng.uniform(0, 1, 4000), rng.uniform(0.5, 2.5, 4000)
    wp, wq = rng.uniform(0.1, 2.0, 4000), (q < 1.5) * 3.0 + 1.0
    estimate = wasserstein_distance(
        p[:, None], q[:, None], wp, wq, chunk_size=2000, batch_size=128, random_state=0
    )
    assert estimate == pytest.approx(scipy_w1(p, q, wp, wq), rel=0.02)  # unweighted: 0.99


def test_streamed_w1_reads_dask_arrays_as_it_reads_memory_maps(tmp_path):
    da = pytest.importorskip("dask.array")
    rng = np.random.RandomState(0)
    P, Q = rng.normal(size=(3000, 4)), rng.normal(size=(2000, 4)) + 1.0
    np.save(tmp_path / "P.npy", P)
    np.save(tmp_path / "Q.npy", Q)
    params = dict(chunk_size=1000, batch_size=128, hidden_layer_sizes=(16,), random_state=0)
    P_disk, Q_disk = (np.load(tmp_path / f"{name}.npy", mmap_mode="r") for name in "PQ")
    on_disk = wasserstein_distance(P_disk, Q_disk, **params)
    P_lazy, Q_lazy = da.from_array(P, chunks=700), da.from_array(Q, chunks=500)
    lazy = wasserstein_distance(P_lazy, Q_lazy, **params)
    assert lazy == on_disk
    with pytest.raises(ValueError, match="chunk_size"):
        wasserstein_distance(P, Q, chunk_size=1)
