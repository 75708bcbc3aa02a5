"""CUDA behaviour: run where a GPU exists (skipped elsewhere, see conftest.py).

Every estimator path on the device: binary, multiclass (3 and 10 classes) and
CNN classifiers, the Wasserstein-1 estimator and function (in memory and
streamed), partial_fit and fit_in_chunks, every function of sklip.robustness,
pickles loaded by a CPU-only process, and the agreement of the GPU's float64
frozen network with the CPU's (within the proven rounding bounds, so that a
radius computed on one device holds for predictions made on the other).
Fits are small (few epochs): what is tested is where tensors live, not accuracy.
The CPU-side guard against direct host transfers is tests/test_host_transfers.py.
"""

import copy
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn import functional as F

import sklip
from sklip import LipschitzClassifier, WassersteinEstimator, wasserstein_distance
from sklip._device import to_numpy
from sklip.nn.frozen import conv2d_as_dot_products
from sklip.robustness import (
    CertifiedAccuracyDisplay,
    certified_accuracy,
    certified_radius,
    counterfactual,
    make_certified_scorer,
    pgd_attack,
)

pytestmark = pytest.mark.gpu

SMALL_MLP = dict(hidden_layer_sizes=(64, 64), max_epochs=20, random_state=0)
SMALL_CNN = dict(
    image_shape=(1, 8, 8), conv_channels=(8, 16), hidden_layer_sizes=(32,), alpha=100.0,
    margin=0.5, max_epochs=20, random_state=0,
)  # fmt: skip


# ------------------------------------------------------------------ helpers
def _all_on_cuda(estimator):
    assert estimator.device_.type == "cuda"
    assert all(p.device.type == "cuda" for p in estimator.module_.parameters())
    assert all(p.device.type == "cuda" for p in estimator.network_.module.parameters())


def _on_cpu(estimator):
    """A copy of a CUDA-fitted estimator that evaluates on the CPU, same frozen weights.

    A deep copy goes through ``__getstate__`` / ``__setstate__``, which put a
    CUDA-fitted model back on the GPU where there is one: both networks and
    ``device_`` are then moved by hand.
    """
    moved = copy.deepcopy(estimator)
    moved.module_.cpu()
    moved.network_.to("cpu")
    moved.device_ = torch.device("cpu")
    assert all(p.device.type == "cpu" for p in moved.network_.module.parameters())
    return moved


def _frozen_outputs(estimator, X):
    """Outputs and rounding bounds of the frozen float64 network, as NumPy arrays."""
    rows = torch.tensor(np.asarray(X, dtype=np.float64).reshape(len(X), -1),
                        device=estimator.device_)  # fmt: skip
    result = estimator.network_(rows)
    return to_numpy(result.outputs), to_numpy(result.error)


def _correct(clf, X, y):
    keep = clf.predict(X) == y
    assert keep.any()
    return X[keep], y[keep]


def _assert_survives_pgd(clf, X, y, radius):
    """No L2 perturbation within 0.99 x the certified radius changes a prediction."""
    attacked = pgd_attack(clf, X, y, 0.99 * radius, steps=30, restarts=2, random_state=0)
    assert np.all(np.linalg.norm(attacked - X.reshape(len(X), -1), axis=1) <= 0.99 * radius)
    assert np.array_equal(clf.predict(attacked), clf.predict(X))


@pytest.fixture(scope="module")
def digits_3(digits_10):
    """Digits 0, 1 and 2 (standardised with the 10-class split)."""
    X_train, X_test, y_train, y_test = digits_10
    train, test = y_train < 3, y_test < 3
    return X_train[train], X_test[test], y_train[train], y_test[test]


@pytest.fixture(scope="module")
def binary_gpu(digits_0_vs_8):
    X_train, X_test, y_train, y_test = digits_0_vs_8
    clf = LipschitzClassifier(device="cuda", **SMALL_MLP).fit(X_train, y_train)
    return clf, X_test, y_test


@pytest.fixture(scope="module", params=[3, 10], ids=["3-classes", "10-classes"])
def multiclass_gpu(request, digits_3, digits_10):
    X_train, X_test, y_train, y_test = digits_3 if request.param == 3 else digits_10
    clf = LipschitzClassifier(device="cuda", **SMALL_MLP).fit(X_train, y_train)
    assert len(clf.classes_) == request.param
    return clf, X_test, y_test


@pytest.fixture(scope="module")
def cnn_gpu(digits_10):
    X_train, X_test, y_train, y_test = digits_10
    images = X_train.reshape(-1, 1, 8, 8)  # (n, C, H, W) images, as a user would pass
    clf = LipschitzClassifier(device="cuda", **SMALL_CNN).fit(images, y_train)
    return clf, X_test, y_test


def _gaussians(n=1000, seed=0):
    """P = N(0, I_4), Q = N(v, I_4) with |v| = 2: the population W1 is exactly 2."""
    rng = np.random.RandomState(seed)
    v = rng.normal(size=4)
    v *= 2.0 / np.linalg.norm(v)
    return rng.normal(size=(n, 4)), rng.normal(size=(n, 4)) + v


@pytest.fixture(scope="module")
def w1_gpu():
    P, Q = _gaussians()
    X, y = np.vstack((P, Q)), np.repeat([0, 1], len(P))
    est = WassersteinEstimator(device="cuda", hidden_layer_sizes=(32, 32), batch_size=256,
                               max_epochs=30, random_state=0).fit(X, y)  # fmt: skip
    return est, X, y


# --------------------------------------------------------------- estimators
def test_fit_on_cuda_keeps_data_and_network_on_the_gpu(digits_0_vs_8):
    X_train, X_test, y_train, y_test = digits_0_vs_8
    clf = LipschitzClassifier(device="cuda", random_state=0).fit(X_train, y_train)
    _all_on_cuda(clf)
    assert clf.score(X_test, y_test) >= 0.99
    X_ok, y_ok = _correct(clf, X_test, y_test)
    _assert_survives_pgd(clf, X_ok, y_ok, clf.certified_radius(X_ok))


def test_auto_picks_cuda():
    X = np.random.RandomState(0).normal(size=(64, 4))
    y = (X[:, 0] > 0).astype(int)
    clf = LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=2).fit(X, y)
    assert clf.device_.type == "cuda"


def test_multiclass_fit_predict_radius_on_cuda(multiclass_gpu):
    clf, X_test, y_test = multiclass_gpu
    k = len(clf.classes_)
    _all_on_cuda(clf)
    pairwise = clf.pairwise_lipschitz_constant_
    assert isinstance(pairwise, np.ndarray) and pairwise.shape == (k, k)
    assert np.all(np.isfinite(pairwise)) and np.all(np.diag(pairwise) == 0)
    assert clf.decision_function(X_test).shape == (len(X_test), k)
    assert np.allclose(clf.predict_proba(X_test).sum(axis=1), 1.0)
    assert clf.score(X_test, y_test) >= 0.8
    radius = clf.certified_radius(X_test)
    assert radius.shape == (len(X_test),) and np.all(np.isfinite(radius))
    assert np.all(radius >= 0) and np.any(radius > 0)
    X_ok, y_ok = _correct(clf, X_test, y_test)
    _assert_survives_pgd(clf, X_ok, y_ok, clf.certified_radius(X_ok))


def test_cnn_on_cuda(cnn_gpu):
    clf, X_test, y_test = cnn_gpu
    _all_on_cuda(clf)
    assert any(isinstance(layer, nn.Conv2d) for layer in clf.network_.module)
    images = X_test.reshape(-1, 1, 8, 8)
    assert np.array_equal(clf.predict(images), clf.predict(X_test))  # images or flat rows
    assert clf.score(X_test, y_test) >= 0.5
    radius = clf.certified_radius(images)
    assert np.all(radius >= 0) and np.any(radius > 0)
    X_ok, y_ok = _correct(clf, X_test, y_test)
    _assert_survives_pgd(clf, X_ok, y_ok, clf.certified_radius(X_ok))


def test_wasserstein_estimator_on_cuda(w1_gpu):
    est, X, y = w1_gpu
    _all_on_cuda(est)
    assert abs(est.distance_ - 2.0) < 0.5
    # W1 >= (dual value) / L: with L < 1 the proven bound may exceed the estimate itself.
    assert 0 < est.lower_bound_ <= est.distance_ / est.lipschitz_constant_
    potential = est.decision_function(X)
    assert potential.shape == (len(X),) and np.all(np.isfinite(potential))
    assert set(np.unique(est.predict(X))) <= {0, 1}
    assert est.score(X, y) == pytest.approx(est.distance_, rel=1e-9, abs=1e-12)


def test_wasserstein_distance_on_cuda_in_memory_and_streamed(tmp_path):
    P, Q = _gaussians()
    params = dict(device="cuda", hidden_layer_sizes=(32, 32), random_state=0)
    in_memory = wasserstein_distance(P, Q, batch_size=256, max_epochs=30, **params)
    assert abs(in_memory - 2.0) < 0.5
    path_p, path_q = tmp_path / "P.npy", tmp_path / "Q.npy"
    np.save(path_p, P)
    np.save(path_q, Q)
    P_disk, Q_disk = np.load(path_p, mmap_mode="r"), np.load(path_q, mmap_mode="r")
    streamed = wasserstein_distance(P_disk, Q_disk, chunk_size=400, batch_size=64,
                                    max_epochs=5, **params)  # fmt: skip
    assert 1.0 < streamed < 3.0
    weighted = wasserstein_distance(P, Q, np.ones(len(P)), np.full(len(Q), 2.0),
                                    chunk_size=400, max_epochs=2, **params)  # fmt: skip
    assert np.isfinite(weighted) and weighted > 0


def test_partial_fit_and_fit_in_chunks_on_cuda(digits_10):
    X_train, X_test, y_train, y_test = digits_10
    classes = np.unique(y_train)
    clf = LipschitzClassifier(device="cuda", hidden_layer_sizes=(32,), random_state=0)
    for _ in range(3):
        for chunk in np.array_split(np.arange(len(X_train)), 4):
            clf.partial_fit(X_train[chunk], y_train[chunk], classes=classes)
    _all_on_cuda(clf)
    assert clf.n_iter_ == 12
    assert np.all(clf.certified_radius(X_test) >= 0)
    # After a round trip (networks back on the GPU, Adam's moments loaded from the CPU).
    restored = pickle.loads(pickle.dumps(clf))
    _all_on_cuda(restored)
    restored.partial_fit(X_train, y_train)
    assert restored.n_iter_ == 13
    _all_on_cuda(restored)

    chunked = sklip.fit_in_chunks(
        LipschitzClassifier(device="cuda", hidden_layer_sizes=(32,), random_state=0),
        X_train, y_train, chunk_size=300, n_passes=2, random_state=0,
    )  # fmt: skip
    _all_on_cuda(chunked)
    assert chunked.score(X_test, y_test) > 0.2  # 10 classes: chance is 0.1

    P, Q = _gaussians()
    X, y = np.vstack((P, Q)), np.repeat([0, 1], len(P))
    order = np.random.RandomState(0).permutation(len(X))
    critic = sklip.fit_in_chunks(
        WassersteinEstimator(device="cuda", hidden_layer_sizes=(32,), random_state=0),
        X[order], y[order], chunk_size=500, n_passes=3, random_state=0,
    )  # fmt: skip
    _all_on_cuda(critic)
    assert critic.distance_ > 0
    # Swapped sets: the critic's dual value turns negative and it is negated, on the GPU.
    critic.partial_fit(X, 1 - y)
    _all_on_cuda(critic)
    assert critic.distance_ >= 0


# --------------------------------------------------------------- robustness
def test_every_robustness_function_on_cuda(digits_10):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X_train, X_test, y_train, y_test = digits_10
    # Raw-looking features (scaled back up), standardised again inside the Pipeline.
    scale = np.linspace(1.0, 8.0, X_train.shape[1])
    X_raw, X_raw_test = X_train * scale, X_test * scale
    pipe = make_pipeline(
        StandardScaler(), LipschitzClassifier(device="cuda", hidden_layer_sizes=(64,),
                                              max_epochs=10, random_state=0),
    ).fit(X_raw, y_train)  # fmt: skip
    clf = pipe[-1]
    _all_on_cuda(clf)

    radius = certified_radius(pipe, X_raw_test)
    inner = clf.certified_radius(pipe[0].transform(X_raw_test))
    assert np.allclose(radius, inner * pipe[0].scale_.min(), rtol=1e-12, atol=0)

    curve = certified_accuracy(pipe, X_raw_test, y_test, [0.0, 0.1, 1.0])
    assert curve[0] == pytest.approx(pipe.score(X_raw_test, y_test))
    assert np.all(np.diff(curve) <= 0)

    correct = pipe.predict(X_raw_test) == y_test
    X_ok, y_ok = X_raw_test[correct], y_test[correct]
    attacked = pgd_attack(pipe, X_ok, y_ok, 0.99 * radius[correct], steps=30, restarts=2,
                          random_state=0)  # fmt: skip
    assert np.array_equal(pipe.predict(attacked), y_ok)

    moved, tightness = counterfactual(pipe, X_raw_test[:30], return_tightness=True)
    assert moved.shape == (30, X_raw_test.shape[1])
    found = ~np.isnan(tightness)
    assert found.any() and np.all(tightness[found] <= 1.0)
    moved, tightness = counterfactual(clf, X_test[:30], return_tightness=True)  # no Pipeline
    found = ~np.isnan(tightness)
    assert found.any() and np.all(tightness[found] <= 1.0)

    search = GridSearchCV(
        make_pipeline(StandardScaler(), LipschitzClassifier(
            device="cuda", hidden_layer_sizes=(32,), max_epochs=3, random_state=0)),
        {"lipschitzclassifier__alpha": [10.0, 100.0]},
        scoring=make_certified_scorer(0.1), cv=2,
    ).fit(X_raw, y_train)  # fmt: skip
    assert 0.0 <= search.best_score_ <= 1.0
    _all_on_cuda(search.best_estimator_[-1])

    display = CertifiedAccuracyDisplay.from_estimator(pipe, X_raw_test, y_test)
    assert display.certified_accuracy[0] == pytest.approx(curve[0])
    plt.close("all")


# ----------------------------------------------------- CPU and GPU agree
@pytest.fixture(params=["binary", "multiclass", "cnn"])
def any_gpu_model(request, binary_gpu, digits_10, cnn_gpu):
    if request.param == "binary":
        return binary_gpu
    if request.param == "cnn":
        return cnn_gpu
    X_train, X_test, y_train, y_test = digits_10
    return LipschitzClassifier(device="cuda", **SMALL_MLP).fit(X_train, y_train), X_test, y_test


def test_cpu_and_gpu_frozen_networks_agree(any_gpu_model):
    """Same float64 weights on both devices: outputs within the proven rounding bounds."""
    gpu, X, _ = any_gpu_model
    cpu = _on_cpu(gpu)
    out_gpu, error_gpu = _frozen_outputs(gpu, X)
    out_cpu, error_cpu = _frozen_outputs(cpu, X)
    # Each is within its bound of the exact network, so within the sum of each other.
    gap = np.linalg.norm(out_gpu - out_cpu, axis=1)
    assert np.all(gap <= error_gpu + error_cpu)
    scale = np.abs(out_cpu).max()
    d_gpu, d_cpu = gpu.decision_function(X), cpu.decision_function(X)
    assert np.abs(d_gpu - d_cpu).max() <= 1e-12 * scale

    r_gpu, r_cpu = gpu.certified_radius(X), cpu.certified_radius(X)
    np.testing.assert_allclose(r_gpu, r_cpu, rtol=1e-9, atol=1e-12 * scale)
    certified = r_gpu > 0
    assert np.array_equal(gpu.predict(X)[certified], cpu.predict(X)[certified])
    # The certificate is proven for any summation order: the GPU's radius holds
    # for the CPU's predictions too.
    attacked = pgd_attack(cpu, X, None, 0.99 * r_gpu, steps=30, restarts=1, random_state=0)
    assert np.array_equal(cpu.predict(attacked), cpu.predict(X))


def test_conv2d_as_dot_products_on_cuda_matches_conv2d():
    generator = torch.Generator().manual_seed(0)
    for stride, padding in ((1, 1), (2, 1), (2, 0)):
        conv = nn.Conv2d(3, 5, 3, stride=stride, padding=padding).double().requires_grad_(False)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator,
                                          dtype=torch.float64))  # fmt: skip
        z = torch.randn(4, 3, 9, 8, generator=generator, dtype=torch.float64)
        expected = F.conv2d(z, conv.weight, conv.bias, conv.stride, conv.padding)
        scale = F.conv2d(z.abs(), conv.weight.abs(), conv.bias.abs(), conv.stride, conv.padding)
        got = conv2d_as_dot_products(z.cuda(), conv.cuda())  # moves conv to the GPU too
        assert got.device.type == "cuda" and got.dtype == torch.float64
        assert got.shape == expected.shape
        assert np.all(np.abs(to_numpy(got) - to_numpy(expected)) <= 1e-14 * to_numpy(scale))


# ------------------------------------------------------- CPU-only machines
CPU_ONLY = textwrap.dedent(
    """
    import pickle, sys
    import numpy as np, torch

    assert not torch.cuda.is_available()
    with open(sys.argv[1], "rb") as file:
        cases = pickle.load(file)
    results = {}
    for name, (est, X, y) in cases.items():
        assert est.device_.type == "cpu", est.device_
        assert all(p.device.type == "cpu" for p in est.module_.parameters())
        assert all(p.device.type == "cpu" for p in est.network_.module.parameters())
        results[name + ".decision"] = est.decision_function(X)
        results[name + ".predict"] = est.predict(X)
        if hasattr(est, "certified_radius"):
            results[name + ".radius"] = est.certified_radius(X)
            assert np.allclose(est.predict_proba(X).sum(axis=1), 1.0)
        else:
            results[name + ".distance"] = np.array([est.distance_, est.lower_bound_])
        n_iter = est.n_iter_
        est.partial_fit(X, y)  # Adam's moments from the GPU, loaded on the CPU
        assert est.n_iter_ == n_iter + 1
    np.savez(sys.argv[2], **results)
    """
)


def test_cuda_fitted_models_load_and_predict_on_a_cpu_only_machine(
    tmp_path, binary_gpu, multiclass_gpu, cnn_gpu, w1_gpu
):
    cases = {"binary": binary_gpu, "multiclass": multiclass_gpu, "cnn": cnn_gpu, "w1": w1_gpu}
    models = tmp_path / "models.pkl"
    models.write_bytes(pickle.dumps(cases))
    script, out = tmp_path / "cpu_only.py", tmp_path / "results.npz"
    script.write_text(CPU_ONLY)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, str(script), str(models), str(out)], env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    results = np.load(out)
    for name, (est, X, _) in cases.items():
        _all_on_cuda(est)  # pickling did not move the fitted model off the GPU
        decision = est.decision_function(X)
        scale = np.abs(decision).max()
        assert np.abs(results[name + ".decision"] - decision).max() <= 1e-12 * scale
        if name == "w1":
            assert results["w1.distance"].tolist() == [est.distance_, est.lower_bound_]
            continue
        radius = est.certified_radius(X)
        np.testing.assert_allclose(results[name + ".radius"], radius, rtol=1e-9,
                                   atol=1e-12 * scale)  # fmt: skip
        certified = radius > 0
        assert np.array_equal(results[name + ".predict"][certified], est.predict(X)[certified])
