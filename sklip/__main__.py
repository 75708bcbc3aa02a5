"""``python -m sklip``: the demo.

Trains a certifiably robust classifier on a bundled scikit-learn data set
(digits 0 against 8 by default), reports its accuracy and certified accuracy,
attacks every correctly classified test point just inside its certificate to
show that none flips, and estimates the Wasserstein-1 distance between the two
classes. With matplotlib installed it saves a figure: the certified accuracy
curve and, for the digits, counterfactual images. ``python -m sklip --help``
lists the options.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sklip import __version__

if TYPE_CHECKING:
    from sklearn.preprocessing import StandardScaler

    from sklip import LipschitzClassifier

# scikit-learn and torch are imported where they are used: `--help` and bad
# arguments answer at once.


@dataclass(frozen=True)
class Problem:
    """A bundled two-class problem: how to load it and what to report on it."""

    title: str
    load: Callable[[], tuple[np.ndarray, np.ndarray]]
    eps: tuple[float, ...]  # radii of the certified accuracy table (standardised units)
    params: dict[str, Any] = field(default_factory=dict)  # LipschitzClassifier parameters
    image_shape: tuple[int, int] | None = None


def _digits_0_vs_8() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    keep = (y == 0) | (y == 8)
    return X[keep], y[keep]


def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return data.data, data.target_names[data.target]


def _moons() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons

    return make_moons(1000, noise=0.2, random_state=0)


PROBLEMS = {
    "digits": Problem("digits 0 vs 8", _digits_0_vs_8, (0.5, 1.0, 2.0, 3.0), image_shape=(8, 8)),
    "breast_cancer": Problem("breast cancer", _breast_cancer, (0.5, 1.0, 2.0, 4.0)),
    "moons": Problem(
        "two moons",
        _moons,
        (0.1, 0.25, 0.5, 1.0),
        params={"alpha": 100.0, "margin": 0.2},
    ),
}
DEFAULT_OUTPUT = os.path.join(tempfile.gettempdir(), "sklip-demo.png")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sklip",
        description="Train a certifiably robust 1-Lipschitz classifier on a bundled "
        "scikit-learn data set, prove its certificates against an attack and estimate "
        "the Wasserstein-1 distance between its two classes.",
    )
    parser.add_argument(
        "--dataset", choices=sorted(PROBLEMS), default="digits",
        help="bundled two-class problem (default: digits, 0 against 8)",
    )  # fmt: skip
    parser.add_argument(
        "--epochs", type=int, default=100, help="most training epochs (default: 100)"
    )
    parser.add_argument(
        "--device", default="auto",
        help='"auto" (CUDA when available), "cpu", "cuda" or "cuda:N" (default: auto)',
    )  # fmt: skip
    parser.add_argument(
        "--output", default=DEFAULT_OUTPUT,
        help=f"where to save the figure, a PNG (default: {DEFAULT_OUTPUT})",
    )  # fmt: skip
    parser.add_argument("--no-plot", action="store_true", help="do not draw the figure")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be a positive integer")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from sklip._device import resolve_device

    try:
        resolve_device(args.device)
    except ValueError as error:  # e.g. --device cuda on a machine without CUDA
        raise SystemExit(f"python -m sklip: error: {error}") from None
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from sklip import LipschitzClassifier

    problem = PROBLEMS[args.dataset]
    print(f"sklip {__version__}: certifiably robust 1-Lipschitz networks for scikit-learn\n")
    X, y = problem.load()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(X_train)
    Z_train, Z_test = scaler.transform(X_train), scaler.transform(X_test)

    progress = importlib.util.find_spec("tqdm") is not None  # a bar, not 100 printed lines
    if not progress:
        print("(training without a progress bar: pip install tqdm for one)")
    clf = LipschitzClassifier(
        max_epochs=args.epochs, device=args.device, random_state=0, verbose=int(progress),
        **problem.params,
    )  # fmt: skip
    started = time.perf_counter()
    clf.fit(Z_train, y_train)
    seconds = time.perf_counter() - started
    print(
        f"{problem.title}: LipschitzClassifier fitted on {len(Z_train)} points "
        f"({X.shape[1]} standardised features) in {clf.n_iter_} epochs, {seconds:.1f} s"
    )
    print(f"test accuracy: {clf.score(Z_test, y_test):.3f}")
    print(f"Lipschitz bound from the weights: {clf.lipschitz_constant_:.6f}")

    radius = clf.certified_radius(Z_test)
    correct = clf.predict(Z_test) == y_test
    print("certified accuracy (correct and provably robust) at L2 radius eps:")
    for eps in problem.eps:
        print(f"  eps = {eps:4.2f} (standardised units): {np.mean(correct & (radius >= eps)):.3f}")
    _attack(clf, Z_test[correct], y_test[correct], radius[correct])
    _wasserstein(np.vstack([Z_train, Z_test]), np.concatenate([y_train, y_test]), args.device)

    if args.no_plot:
        return
    if importlib.util.find_spec("matplotlib") is None:
        print("\nmatplotlib is not installed: no figure (pip install matplotlib).")
        return
    _plot(clf, scaler, problem, Z_test, y_test, args.output)
    print(f"\nfigure saved to {args.output}")


def _attack(clf: LipschitzClassifier, Z: np.ndarray, y: np.ndarray, radius: np.ndarray) -> None:
    """Attack each point just inside and beyond its certificate: the proof and the tightness."""
    from sklip.robustness import pgd_attack

    inside = pgd_attack(clf, Z, y, 0.99 * radius, random_state=0)
    outside = pgd_attack(clf, Z, y, 1.5 * radius, random_state=0)
    print("\nL2 PGD attack on every correctly classified test point:")
    print(f"  at 0.99 x certified radius: {np.sum(clf.predict(inside) != y)} flipped (proof)")
    print(
        f"  at 1.50 x certified radius: {np.sum(clf.predict(outside) != y)} of {len(y)} "
        "flipped (the certificates are tight)"
    )


def _wasserstein(Z: np.ndarray, y: np.ndarray, device: str) -> None:
    """W1 between the two classes by the Kantorovich-Rubinstein dual, with its lower bound."""
    from sklip import WassersteinEstimator

    est = WassersteinEstimator(device=device, random_state=0).fit(Z, y)
    first, second = est.classes_
    print(
        f"\nWasserstein-1 distance between classes {first} and {second} "
        f"(standardised units): {est.distance_:.3f}"
    )
    print(f"  guaranteed lower bound for these {len(y)} samples: {est.lower_bound_:.3f}")


def _plot(
    clf: LipschitzClassifier,
    scaler: StandardScaler,
    problem: Problem,
    Z: np.ndarray,
    y: np.ndarray,
    output: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt

    from sklip.robustness import CertifiedAccuracyDisplay

    figure = plt.figure(figsize=(10, 4.2), layout="constrained")
    left, right = figure.subfigures(1, 2, width_ratios=(1.1, 1))
    display = CertifiedAccuracyDisplay.from_estimator(
        clf, Z, y, name="LipschitzClassifier", ax=left.subplots()
    )
    display.ax_.set_xlabel("L2 radius eps (standardised units)")
    display.ax_.set_title(f"{problem.title}: certified accuracy (test set)")
    if problem.image_shape is not None:
        _draw_counterfactuals(right, clf, scaler, Z, y, problem.image_shape)
    elif Z.shape[1] == 2:
        _draw_decision_function(right.subplots(), clf, Z, y)
    else:
        _draw_radii(right.subplots(), clf, Z, y)
    figure.savefig(output, dpi=110)
    plt.close(figure)


def _draw_counterfactuals(subfigure, clf, scaler, Z, y, image_shape) -> None:
    """Two test images of each class, their counterfactuals and the change, in pixels."""
    from sklip.robustness import counterfactual

    rows = np.concatenate([np.flatnonzero(y == label)[:2] for label in clf.classes_])
    moved = counterfactual(clf, Z[rows])
    before, after = scaler.inverse_transform(Z[rows]), scaler.inverse_transform(moved)
    axes = subfigure.subplots(len(rows), 3)
    for row, (original, changed) in enumerate(zip(before, after, strict=True)):
        change = changed - original
        limit = np.abs(change).max()
        panels = [(original, "gray_r", 0, 16), (changed, "gray_r", 0, 16)]
        panels.append((change, "RdBu_r", -limit, limit))
        for ax, (image, cmap, low, high) in zip(axes[row], panels, strict=True):
            ax.imshow(image.reshape(image_shape), cmap=cmap, vmin=low, vmax=high)
            ax.set_xticks([])
            ax.set_yticks([])
        predicted = clf.predict(moved[row : row + 1])[0]
        axes[row, 0].set_ylabel(f"{y[rows][row]} -> {predicted}")
    for ax, title in zip(axes[0], ["test image", "counterfactual", "change"], strict=True):
        ax.set_title(title, fontsize=9)
    subfigure.suptitle("counterfactuals x - f(x) grad f(x)", fontsize=10)


def _draw_decision_function(ax, clf, Z, y) -> None:
    """The score f on the plane: its level sets are distances to the boundary."""
    low, high = Z.min(axis=0) - 0.5, Z.max(axis=0) + 0.5
    grid = np.stack(np.meshgrid(*np.linspace(low, high, 200).T), axis=-1).reshape(-1, 2)
    scores = clf.decision_function(grid).reshape(200, 200)
    extent = (low[0], high[0], low[1], high[1])
    limit = np.abs(scores).max()
    image = ax.imshow(scores, origin="lower", extent=extent, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.contour(scores, levels=[0], colors="k", origin="lower", extent=extent)
    ax.scatter(*Z.T, c=(y == clf.classes_[1]), cmap="RdBu_r", s=8, edgecolors="k", lw=0.3)
    ax.figure.colorbar(image, ax=ax, label="f(x)")
    ax.set_title("f(x): |f(x)| <= distance to the boundary (black)", fontsize=10)


def _draw_radii(ax, clf, Z, y) -> None:
    """Histogram of the certified radii of the correctly classified test points."""
    radius = clf.certified_radius(Z)
    predicted = clf.predict(Z)
    bins = np.linspace(0.0, radius[predicted == y].max(), 25)
    for label in clf.classes_:
        keep = (predicted == y) & (y == label)
        ax.hist(radius[keep], bins=bins, alpha=0.6, label=str(label))
    ax.set_xlabel("certified radius (standardised units)")
    ax.set_ylabel("test points")
    ax.legend(title="class")
    ax.set_title("certified radii of the correct test points", fontsize=10)


if __name__ == "__main__":
    main()
