"""
Regression whose outputs cannot move faster than K
==================================================

:class:`sklip.LipschitzRegressor` fits ``y`` with a network whose slope is
bounded by ``K`` (``lipschitz_constant``), computed from its weights. Here a
1-D target with a kink and noise: the fitted curve, and the band
``predict_interval(x, eps)`` that contains ``predict(x')`` for every ``x'``
within ``eps`` of ``x``. A smaller ``K`` gives a flatter, more stable model;
a larger one follows the data more closely.
"""

import os

import matplotlib.pyplot as plt
import numpy as np

from sklip import LipschitzRegressor

SMALL = os.environ.get("SKLIP_EXAMPLES_SMALL", "0") != "0"  # smoke-test size
EPOCHS = 3 if SMALL else 200

rng = np.random.RandomState(0)
X = rng.uniform(-3, 3, size=(100 if SMALL else 600, 1))
y = np.abs(X[:, 0]) + 0.3 * np.sin(3 * X[:, 0]) + rng.normal(scale=0.1, size=len(X))
grid = np.linspace(-3, 3, 300)[:, None]
eps = 0.3

fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
for ax, K in zip(axes, (1.0, 3.0), strict=True):
    reg = LipschitzRegressor(lipschitz_constant=K, max_epochs=EPOCHS, random_state=0).fit(X, y)
    low, high = reg.predict_interval(grid, eps)
    ax.scatter(X[:, 0], y, s=4, c="k", alpha=0.3, label="data")
    ax.plot(grid[:, 0], reg.predict(grid), label="predict")
    ax.fill_between(grid[:, 0], low, high, alpha=0.3, label=f"interval, eps = {eps}")
    ax.set_title(f"K = {K:g}: certified slope {reg.lipschitz_constant_:.3f}, "
                 f"R² {reg.score(X, y):.3f}")  # fmt: skip
    ax.set_xlabel("x")
    ax.legend(loc="upper center")
axes[0].set_ylabel("y")
plt.show()
