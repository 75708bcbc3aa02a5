"""
Training on a GPU
=================

Every sklip estimator takes ``device``: ``"auto"`` (the default) trains on
CUDA when PyTorch sees a GPU and on the CPU otherwise; ``"cpu"``, ``"cuda"``
or ``"cuda:1"`` choose explicitly. The whole training set is moved to the
device once, so a GPU pays off on large data sets.

A model fitted on a GPU pickles with CPU tensors: it loads and predicts on a
machine without CUDA (and goes back to the GPU where there is one).

This example needs CUDA; without it, it only says so.
"""

import os
import pickle
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import make_moons

from sklip import LipschitzClassifier, wasserstein_distance

SMALL = os.environ.get("SKLIP_EXAMPLES_SMALL", "0") != "0"  # smoke-test size

if not torch.cuda.is_available():
    print("CUDA is not available on this machine: skipping the GPU example.")
else:
    print("GPU:", torch.cuda.get_device_name(0))
    X, y = make_moons(2_000 if SMALL else 50_000, noise=0.2, random_state=0)
    params = dict(alpha=100.0, margin=0.2, batch_size=1024, max_epochs=2 if SMALL else 20)
    for device in ("cpu", "cuda"):  # warm-up: lazy imports, the CUDA context
        LipschitzClassifier(device=device, max_epochs=1).fit(X[:256], y[:256])
    seconds = {}
    for device in ("cpu", "cuda"):
        clf = LipschitzClassifier(device=device, random_state=0, **params)
        started = time.perf_counter()
        clf.fit(X, y)
        seconds[device] = time.perf_counter() - started
        print(f"{device}: fit {seconds[device]:.1f} s, training accuracy {clf.score(X, y):.3f}")

    # The CUDA-fitted model round-trips through pickle; its state holds CPU tensors.
    restored = pickle.loads(pickle.dumps(clf))
    same = np.allclose(restored.certified_radius(X[:100]), clf.certified_radius(X[:100]))
    print(f"unpickled on {restored.device_}, same certified radii: {same}")

    # Wasserstein-1 between two large sample sets, on the GPU.
    rng = np.random.RandomState(0)
    n = 10_000 if SMALL else 1_000_000
    P = rng.normal(size=(n, 16)).astype(np.float32)
    started = time.perf_counter()
    w1 = wasserstein_distance(
        P, P + 0.5, device="cuda", random_state=0, **({"max_epochs": 2} if SMALL else {})
    )
    seconds_w1 = time.perf_counter() - started
    print(f"W1 with {n} samples per set: {w1:.3f} (truth 2.000), {seconds_w1:.1f} s")

    _, ax = plt.subplots(figsize=(4, 3))
    ax.bar(list(seconds), list(seconds.values()))
    ax.set_ylabel("fit seconds")
    ax.set_title(f"LipschitzClassifier, {len(X)} points")
    plt.show()
