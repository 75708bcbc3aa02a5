"""
Counterfactual digits: a 0 morphs into an 8
===========================================

An HKR-trained 1-Lipschitz network ``f`` has ``|f(x)|`` close to the distance
from ``x`` to its decision boundary and a gradient of norm 1 almost everywhere,
so the step ``x - f(x) grad f(x)`` lands on the boundary: it is the shortest
way to change the class, and the pixels it changes are the ones that matter
(the MNIST figure of Serrurier et al., CVPR 2021, here on scikit-learn's 8x8
digits). :func:`sklip.robustness.counterfactual` takes that step, with a small
overshoot, until the prediction changes.

Pixels are divided by 16, their largest value, so distances are in units of
full pixel intensity. A per-pixel scaler would also work (``counterfactual``
and ``certified_radius`` accept a Pipeline), but it rescales pixels unequally,
which loosens the radius measured in raw pixels.
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sklip import LipschitzClassifier
from sklip.robustness import counterfactual

SMALL = os.environ.get("SKLIP_EXAMPLES_SMALL", "0") != "0"  # smoke-test size

X, y = load_digits(return_X_y=True)
X = X / 16.0
keep = (y == 0) | (y == 8)
X_train, X_test, y_train, y_test = train_test_split(
    X[keep], y[keep], test_size=0.25, stratify=y[keep], random_state=0
)
clf = LipschitzClassifier(margin=0.5, max_epochs=5 if SMALL else 100, random_state=0)
clf.fit(X_train, y_train)
print(f"test accuracy: {clf.score(X_test, y_test):.3f}")

# %%
# Move three test images of each class across the boundary. The tightness
# ratio ``certified_radius / |x_cf - x|`` is at most 1 (no change smaller than
# the certificate flips the class) and close to 1 when the certificate is tight.
rows = np.concatenate([np.flatnonzero(y_test == 0)[:3], np.flatnonzero(y_test == 8)[:3]])
moved, tightness = counterfactual(clf, X_test[rows], return_tightness=True)
print("predicted before:", clf.predict(X_test[rows]), "after:", clf.predict(moved))
print("tightness (certified radius / counterfactual distance):", np.round(tightness, 2))

# %%
# Each row: the test digit, its counterfactual and their difference (red: ink
# added, blue: ink removed).
figure, axes = plt.subplots(len(rows), 3, figsize=(4.5, 1.6 * len(rows)))
for row, (original, changed) in enumerate(zip(X_test[rows], moved, strict=True)):
    difference = (changed - original).reshape(8, 8)
    limit = np.abs(difference).max()
    panels = [
        (original.reshape(8, 8), "gray_r", 0, 1),
        (changed.reshape(8, 8), "gray_r", 0, 1),
        (difference, "RdBu_r", -limit, limit),
    ]
    for ax, (image, cmap, low, high) in zip(axes[row], panels, strict=True):
        ax.imshow(image, cmap=cmap, vmin=low, vmax=high)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[row, 0].set_ylabel(f"{y_test[rows][row]} -> {clf.predict(changed[None])[0]}")
for ax, title in zip(axes[0], ["original", "counterfactual", "difference"], strict=True):
    ax.set_title(title, fontsize=9)
figure.tight_layout()
plt.show()
