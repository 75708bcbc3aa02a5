"""CUDA behaviour: run where a GPU exists (skipped elsewhere, see conftest.py)."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from sklip import LipschitzClassifier
from sklip.robustness import pgd_attack

pytestmark = pytest.mark.gpu


def test_fit_on_cuda_keeps_data_and_network_on_the_gpu(digits_0_vs_8):
    X_train, X_test, y_train, y_test = digits_0_vs_8
    clf = LipschitzClassifier(device="cuda", random_state=0).fit(X_train, y_train)
    assert clf.device_.type == "cuda"
    assert all(p.device.type == "cuda" for p in clf.module_.parameters())
    assert clf.score(X_test, y_test) >= 0.99
    correct = clf.predict(X_test) == y_test
    radius = clf.certified_radius(X_test[correct])
    attacked = pgd_attack(clf, X_test[correct], y_test[correct], 0.99 * radius, random_state=0)
    assert np.array_equal(clf.predict(attacked), y_test[correct])


def test_auto_picks_cuda():
    X = np.random.RandomState(0).normal(size=(64, 4))
    y = (X[:, 0] > 0).astype(int)
    clf = LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=2).fit(X, y)
    assert clf.device_.type == "cuda"


def test_a_cuda_fitted_model_predicts_on_a_cpu_only_machine(tmp_path, digits_0_vs_8):
    X_train, X_test, y_train, _ = digits_0_vs_8
    clf = LipschitzClassifier(device="cuda", max_epochs=20, random_state=0).fit(X_train, y_train)
    model, data = tmp_path / "model.pkl", tmp_path / "X.npy"
    model.write_bytes(pickle.dumps(clf))
    np.save(data, X_test)
    code = (
        "import pickle, sys, numpy as np, torch; assert not torch.cuda.is_available(); "
        f"clf = pickle.loads(open({str(model)!r}, 'rb').read()); "
        f"np.save(sys.argv[1], clf.decision_function(np.load({str(data)!r})))"
    )
    out = tmp_path / "scores.npy"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env)
    assert np.allclose(np.load(out), clf.decision_function(X_test), atol=1e-5)


def test_cuda_and_cpu_bounds_agree():
    torch.manual_seed(0)
    X = np.random.RandomState(0).normal(size=(128, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    gpu = LipschitzClassifier(hidden_layer_sizes=(16,), max_epochs=5, device="cuda",
                              random_state=0).fit(X, y)  # fmt: skip
    cpu = pickle.loads(pickle.dumps(gpu))
    cpu.module_.cpu()
    cpu.device_ = torch.device("cpu")
    assert np.allclose(cpu.decision_function(X), gpu.decision_function(X), atol=1e-5)
