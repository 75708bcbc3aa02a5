"""
Select for robustness, not only accuracy
========================================

The same grid over the HKR ``margin`` is ranked two ways on the 10 digits: by
plain accuracy and by *certified accuracy* at radius 1, the fraction of points
that are correct *and* provably keep their class under every L2 perturbation of
norm below 1. Pixels are scaled to [0, 1], so a radius of 1 is one pixel
flipped from black to white, or four pixels changed by half.

:func:`sklip.robustness.make_certified_scorer` turns the certificate into a
scorer for ``GridSearchCV``, and
:class:`sklip.robustness.CertifiedAccuracyDisplay` draws the certified accuracy
of each selected model against the radius. A larger margin gives up a little
clean accuracy (the curves at eps = 0) for larger certificates (the curves
further right).
"""

import os

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split

from sklip import LipschitzClassifier
from sklip.robustness import CertifiedAccuracyDisplay, make_certified_scorer

SMALL = os.environ.get("SKLIP_EXAMPLES_SMALL", "0") != "0"  # smoke-test size

X, y = load_digits(return_X_y=True)
X = X / 16.0  # one scale for all pixels: radii stay in pixel-intensity units
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
if SMALL:
    X_train, y_train = X_train[:300], y_train[:300]

# %%
# Cross-validate the grid with both scorers. ``refit=False``: the two winners
# are refitted below, one per criterion.
clf = LipschitzClassifier(max_epochs=3 if SMALL else 60, random_state=0)
grid = {"alpha": [200.0], "margin": [0.05, 0.5, 1.5]}
search = GridSearchCV(
    clf,
    grid,
    scoring={"accuracy": "accuracy", "certified@1": make_certified_scorer(1.0)},
    refit=False,
    cv=2 if SMALL else 3,
    n_jobs=1 if SMALL else 2,
).fit(X_train, y_train)

results = search.cv_results_
for params, accuracy, certified in zip(
    results["params"], results["mean_test_accuracy"], results["mean_test_certified@1"],
    strict=True,
):  # fmt: skip
    print(f"{params}: cv accuracy {accuracy:.3f}, cv certified accuracy at 1 {certified:.3f}")

# %%
# Refit the best model of each criterion and compare their certified accuracy
# curves on the test set.
_, ax = plt.subplots(figsize=(6, 4))
for metric in ("accuracy", "certified@1"):
    params = results["params"][results[f"rank_test_{metric}"].argmin()]
    print(f"best by {metric}: {params}")
    model = clf.set_params(**params).fit(X_train, y_train)
    display = CertifiedAccuracyDisplay.from_estimator(
        model, X_test, y_test, name=f"best by {metric}: margin {params['margin']}", ax=ax
    )
ax.axvline(1.0, color="gray", linestyle=":")
ax.set_xlabel("L2 radius eps (pixel intensity units)")
ax.set_title("10 digits, test set")
plt.show()
