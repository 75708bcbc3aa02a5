r"""
Wasserstein-1 between two sample sets
=====================================

The Kantorovich-Rubinstein duality writes the Wasserstein-1 distance as a
maximum over 1-Lipschitz functions,

.. math::
    W_1(P, Q) = \max_{\mathrm{Lip}(f) \le 1} E_Q[f] - E_P[f],

so a 1-Lipschitz network trained to maximise the right-hand side estimates it
(:func:`sklip.wasserstein_distance`), and the trained network is the optimal
*potential* ``f`` (:class:`sklip.WassersteinEstimator`). Time and memory grow
linearly with the number of samples, where exact optimal transport between the
samples needs the full ``n x n`` cost matrix.
"""

import os
import time

import matplotlib.pyplot as plt
import numpy as np

from sklip import WassersteinEstimator, wasserstein_distance

try:
    import ot  # POT, the Python Optimal Transport library: the exact reference
except ImportError:
    ot = None

SMALL = os.environ.get("SKLIP_EXAMPLES_SMALL", "0") != "0"  # smoke-test size
fast = {"max_epochs": 5} if SMALL else {}

# %%
# A known answer
# --------------
# Two Gaussian clouds in 16 dimensions, one translated by a vector of length 2:
# the population W1 is exactly 2. ``lower_bound_`` is the dual value divided by
# the network's Lipschitz bound computed from its weights: a *guaranteed* lower
# bound of W1 between the two sample sets given to ``fit``.
rng = np.random.RandomState(0)
n = 300 if SMALL else 3000
shift = rng.normal(size=16)
shift *= 2.0 / np.linalg.norm(shift)
P = rng.normal(size=(n, 16))
Q = rng.normal(size=(n, 16)) + shift
print(f"wasserstein_distance: {wasserstein_distance(P, Q, random_state=0, **fast):.3f}")

est = WassersteinEstimator(random_state=0, **fast).fit(np.vstack([P, Q]), np.repeat([0, 1], n))
print(f"dual value on all samples (distance_):   {est.distance_:.3f}   (truth 2.000)")
print(f"dual value on held-out samples:          {est.validation_distance_:.3f}")
print(f"guaranteed lower bound for the samples:  {est.lower_bound_:.3f}")

# %%
# Against exact optimal transport, in 2-D
# ---------------------------------------
# In two dimensions, exact optimal transport between the samples (POT's
# ``emd2``) is close to the population distance already at small ``n``, so it
# is a fair reference. ``P`` is a Gaussian blob, ``Q`` a mixture of two blobs.


def two_sets(n_samples, seed):
    generator = np.random.RandomState(seed)
    P = generator.normal(size=(n_samples, 2))
    centres = np.array([[-3.0, 3.0], [3.0, 3.0]])[generator.randint(2, size=n_samples)]
    return P, centres + 0.5 * generator.normal(size=(n_samples, 2))


sizes = [100] if SMALL else [250, 500, 1000, 2000]
print(f"{'n per set':>9} {'sklip':>8} {'s':>6} {'POT emd2':>9} {'s':>6}")
for n_samples in sizes:
    P2, Q2 = two_sets(n_samples, seed=n_samples)
    started = time.perf_counter()
    ours = wasserstein_distance(P2, Q2, random_state=0, **fast)
    ours_s = time.perf_counter() - started
    row = f"{n_samples:9d} {ours:8.3f} {ours_s:6.1f}"
    if ot is not None:
        started = time.perf_counter()
        uniform = np.full(n_samples, 1.0 / n_samples)
        exact = ot.emd2(uniform, uniform, ot.dist(P2, Q2, metric="euclidean"))
        row += f" {exact:9.3f} {time.perf_counter() - started:6.1f}"
    print(row)
if ot is None:
    print("(POT is not installed: pip install pot for the exact reference)")

# %%
# The potential
# -------------
# The trained network is the optimal potential: it increases from ``P`` to
# ``Q`` as fast as a 1-Lipschitz function can, so its level lines one unit
# apart (drawn below) are at least one unit apart in space. Optimal transport
# moves mass along its steepest ascent.
P2, Q2 = two_sets(100 if SMALL else 1000, seed=1)
est = WassersteinEstimator(random_state=0, **fast).fit(
    np.vstack([P2, Q2]), np.repeat(["P", "Q"], len(P2))
)
xx, yy = np.meshgrid(np.linspace(-6, 6, 200), np.linspace(-4, 6, 200))
potential = est.decision_function(np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)

figure, ax = plt.subplots(figsize=(6.5, 5))
filled = ax.contourf(xx, yy, potential, levels=30, cmap="RdBu_r")
low, high = np.floor(potential.min()), np.ceil(potential.max())
ax.contour(xx, yy, potential, levels=np.arange(low, high + 1), colors="k", linewidths=0.5)
ax.scatter(*P2.T, s=4, c="navy", label="P")
ax.scatter(*Q2.T, s=4, c="darkred", label="Q")
figure.colorbar(filled, label="potential f")
ax.set_title(f"Optimal potential, W1 estimate {est.distance_:.2f}")
ax.set_aspect("equal")
ax.legend(loc="lower right")
plt.show()
