"""
Grid-search alpha and margin in a Pipeline
==========================================

:class:`~sklip.LipschitzClassifier` is a scikit-learn estimator: it sits in a
:class:`~sklearn.pipeline.Pipeline` after a scaler, and ``GridSearchCV`` tunes
its HKR parameters (in parallel with joblib) like any other.

* ``alpha`` weighs the hinge against the Kantorovich-Rubinstein term: larger
  means accuracy first, smaller means robustness first.
* ``margin`` is the distance from the boundary that the hinge asks of every
  training point, in the units of the classifier's input: it sets the scale of
  the certified radii.

On two overlapping moons the trade-off is visible. Each candidate is scored by
accuracy and by certified accuracy at radius 0.25 *in the raw input space*:
:func:`sklip.robustness.make_certified_scorer` carries the certificate through
the Pipeline's StandardScaler (a linear map whose Lipschitz constant is known
exactly).
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklip import LipschitzClassifier
from sklip.robustness import certified_accuracy, make_certified_scorer

SMALL = os.environ.get("SKLIP_EXAMPLES_SMALL", "0") != "0"  # smoke-test size

X, y = make_moons(300 if SMALL else 1000, noise=0.2, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
pipe = make_pipeline(
    StandardScaler(), LipschitzClassifier(max_epochs=3 if SMALL else 40, random_state=0)
)

# %%
# Cross-validate both scores; refit the candidate with the best certified
# accuracy.
alphas = [10.0, 100.0]
margins = [0.05, 0.2] if SMALL else [0.05, 0.2, 0.8]
eps = 0.25
search = GridSearchCV(
    pipe,
    {"lipschitzclassifier__alpha": alphas, "lipschitzclassifier__margin": margins},
    scoring={"accuracy": "accuracy", "certified": make_certified_scorer(eps)},
    refit="certified",
    cv=2 if SMALL else 3,
    n_jobs=1 if SMALL else 2,
).fit(X_train, y_train)

best = search.best_estimator_
print("best parameters:", search.best_params_)
print(f"test accuracy: {best.score(X_test, y_test):.3f}")
print(f"test certified accuracy at {eps}: {certified_accuracy(best, X_test, y_test, eps):.3f}")

# %%
# The cross-validated scores over the grid. (``GridSearchCV`` varies the last
# parameter fastest, so the results reshape to alpha x margin.)
figure, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
for ax, (metric, title) in zip(
    axes, [("accuracy", "cv accuracy"), ("certified", f"cv certified accuracy at {eps}")],
    strict=True,
):  # fmt: skip
    scores = search.cv_results_[f"mean_test_{metric}"].reshape(len(alphas), len(margins))
    image = ax.imshow(scores, cmap="viridis", vmin=0, vmax=1)
    for (row, column), value in np.ndenumerate(scores):
        ax.text(column, row, f"{value:.2f}", ha="center", va="center", color="w")
    ax.set_xticks(range(len(margins)), [str(m) for m in margins])
    ax.set_yticks(range(len(alphas)), [str(a) for a in alphas])
    ax.set_xlabel("margin")
    ax.set_ylabel("alpha")
    ax.set_title(title)
figure.colorbar(image, ax=axes)
plt.show()
