"""
Certified outlier detection with a learned signed distance
==========================================================

:class:`sklip.LipschitzOutlierDetector` learns a 1-Lipschitz function ``f``
that is positive on the data and approximates minus the distance to it
outside (one-class HKR, Béthune et al., ICML 2023). ``f(x) < offset_`` flags
an outlier, and because ``f`` cannot change faster than its certified
Lipschitz bound, ``certified_radius(x)`` is a distance within which that
decision provably holds: an outlier cannot be dressed up as an inlier by a
smaller perturbation, nor the reverse.

First the picture on 2-D data: the learned score, its zero level (the
boundary) and a few certified decisions drawn as discs. Then one-class digits:
trained on zeros only, how well the score separates zeros from the other
digits (AUROC) and how much of that ranking is certified against
perturbations of each image (certified AUROC, drawn by
:class:`sklip.robustness.CertifiedAUROCDisplay`).
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits, make_moons
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from sklip import LipschitzOutlierDetector
from sklip.robustness import CertifiedAUROCDisplay, certified_auroc

SMALL = os.environ.get("SKLIP_EXAMPLES_SMALL", "0") != "0"  # smoke-test size
EPOCHS = 3 if SMALL else 100

# %%
# The signed distance to two moons
# --------------------------------
# Inliers only (no labels). The grid's colour is ``score_samples``: positive
# on the moons, decreasing about one unit per unit of distance outside.
X, _ = make_moons(200 if SMALL else 1000, noise=0.05, random_state=0)
detector = LipschitzOutlierDetector(max_epochs=EPOCHS, random_state=0).fit(X)

axis_x, axis_y = np.linspace(-2, 3, 200), np.linspace(-1.5, 2, 140)
grid = np.array([(a, b) for b in axis_y for a in axis_x])
score = detector.score_samples(grid).reshape(len(axis_y), len(axis_x))

probes = np.array([[0.0, 0.0], [1.0, 0.5], [-1.2, 1.2], [2.4, -0.8], [0.5, -0.3]])
radius = detector.certified_radius(probes)
inlier = detector.predict(probes) == 1

fig, ax = plt.subplots(figsize=(7, 5))
image = ax.contourf(axis_x, axis_y, score, levels=20, cmap="RdBu")
ax.contour(axis_x, axis_y, score, levels=[detector.offset_], colors="k", linewidths=2)
ax.scatter(*X.T, s=3, c="k", alpha=0.4, label="training data")
for point, r, keep in zip(probes, radius, inlier, strict=True):
    ax.add_patch(plt.Circle(point, r, fill=False, color="g" if keep else "m", lw=2))
    ax.plot(*point, "o", color="g" if keep else "m")
ax.set_aspect("equal")
ax.set_title("score_samples: a 1-Lipschitz signed distance (boundary in black)")
fig.colorbar(image, ax=ax, label="f(x)")
ax.legend(loc="lower left")
print("certified radii of the probes:", np.round(radius, 3))

# %%
# One-class digits
# ----------------
# Trained on the zeros of one half of the digits; every held-out image is
# scored. Pixels are scaled to [0, 1], so an L2 radius of 0.5 is one pixel
# changed by half its range, or four pixels by a quarter each.
digits, labels = load_digits(return_X_y=True)
digits = digits / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    digits, labels, test_size=0.5, stratify=labels, random_state=0
)
zeros = LipschitzOutlierDetector(max_epochs=EPOCHS, random_state=0).fit(X_train[y_train == 0])
truth = np.where(y_test == 0, 1, -1)
print(f"AUROC zeros vs other digits: {roc_auc_score(truth, zeros.score_samples(X_test)):.4f}")

eps = np.linspace(0.0, 0.6, 61)
display = CertifiedAUROCDisplay.from_estimator(zeros, X_test, truth, eps=eps, name="zeros")
display.ax_.set_title("Zeros vs the rest: the ranking no perturbation below eps can spoil")
at = certified_auroc(zeros, X_test, truth, [0.1, 0.25, 0.5])
print("certified AUROC at 0.1, 0.25, 0.5:", np.round(at, 3))
plt.show()
