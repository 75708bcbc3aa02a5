"""Accuracy against certified robustness, over the HKR loss's ``alpha`` and ``margin``.

The script behind the figure of the user guide's HKR page
(``doc/user_guide/hkr_loss.rst``, ``doc/_static/hkr_tradeoff.png``).

Data: "breast cancer" and "moons" (2000, noise 0.2) from ``tabular.DATASETS``.
Model: ``StandardScaler -> LipschitzClassifier(random_state=0, device="cpu",
alpha=a, margin=m)``, every other parameter at its default.

Grid: alpha in {1, 10, 100, 1000} x margin in {0.05, 0.1, 0.25, 0.5, 1} x D50,
D50 being the median distance from a training point to the nearest point of
another class, in standardised units, measured on the training fold (scaler
fitted on that fold): the margin is in the units the classifier sees. The
column ``sklip._margin.AUTO_FRACTION`` x D50 (0.25) is what ``margin="auto"``
gives on two classes, up to its weighted median; it is marked "auto" in the
table and the figure (past two classes "auto" is half of it: the mark is then
off by that factor, so the default sets are binary).

Protocol: 5-fold ``StratifiedKFold(shuffle=True, random_state=0)``, the same
folds for every (alpha, margin). Per cell: mean test accuracy, and mean
certified accuracy at the radii 0.1, 0.25, 0.5 x D50 of the whole set in
standardised units (``tabular.RADII``, 2 significant digits), measured through
the Pipeline's raw-space API exactly as in ``benchmarks/tabular.py``
(``tabular.certify``).

Run: ``python benchmarks/tradeoff.py [--datasets ...] [--folds 5]
[--figure PATH] [--no-record]``; it prints the table, writes it into RESULTS.md
and draws the figure (one row of panels per data set: test accuracy, and
certified accuracy at the middle radius, against the margin, one line per
alpha). ``--smoke``: moons, 2 folds, 2 alphas, 2 margins, 3 epochs, figure in
a temporary folder unless ``--figure`` says otherwise, nothing recorded.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _record import record
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tabular import DATASETS, RADII, _significant, certify, d50

from sklip import LipschitzClassifier
from sklip._margin import AUTO_FRACTION

ALPHAS = (1.0, 10.0, 100.0, 1000.0)
MARGINS = tuple(sorted({0.05, 0.1, AUTO_FRACTION, 0.5, 1.0}))  # in units of D50 (fold)
SETS = ("breast cancer", "moons")
SMOKE_ALPHAS, SMOKE_MARGINS = (10.0, 100.0), (0.1, AUTO_FRACTION)
FIGURE = Path(__file__).resolve().parents[1] / "doc" / "_static" / "hkr_tradeoff.png"


@dataclass
class Grid:
    """One data set's results: arrays indexed [alpha, margin, fold] (and radius last)."""

    radii: np.ndarray  # the certified radii, standardised units
    accuracy: np.ndarray  # (alphas, margins, folds)
    certified: np.ndarray  # (alphas, margins, folds, radii)
    margin: np.ndarray  # (margins, folds): the margin passed, standardised units
    seconds: np.ndarray  # (alphas, margins, folds): fit time


def evaluate(name: str, alphas, margins, folds: int, epochs: int | None) -> Grid:
    """Fit and score every (alpha, margin) on every fold of data set ``name``."""
    X, y = DATASETS[name]()
    X = np.asarray(X, dtype=np.float64)
    radii = np.array([_significant(r * d50(X, y)) for r in RADII])
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(X, y))
    shape = (len(alphas), len(margins), folds)
    grid = Grid(radii, np.empty(shape), np.empty((*shape, len(radii))),
                np.empty((len(margins), folds)), np.empty(shape))  # fmt: skip
    extra = {} if epochs is None else {"max_epochs": epochs}
    for k, (train, test) in enumerate(splits):
        X_train, y_train, X_test, y_test = X[train], y[train], X[test], y[test]
        scale = StandardScaler().fit(X_train).scale_
        unit = d50(X_train, y_train)
        for j, fraction in enumerate(margins):
            grid.margin[j, k] = fraction * unit
            for i, alpha in enumerate(alphas):
                clf = LipschitzClassifier(random_state=0, device="cpu", alpha=alpha,
                                          margin=fraction * unit, **extra)  # fmt: skip
                model = make_pipeline(StandardScaler(), clf)
                started = time.perf_counter()
                model.fit(X_train, y_train)
                grid.seconds[i, j, k] = time.perf_counter() - started
                grid.accuracy[i, j, k] = model.score(X_test, y_test)
                grid.certified[i, j, k] = certify(model, X_test, y_test, radii, scale, scaled=True)
    return grid


def _margin_label(fraction: float) -> str:
    return f"{fraction:g} (auto)" if fraction == AUTO_FRACTION else f"{fraction:g}"


def table(results: dict[str, Grid], alphas, margins) -> str:
    """Markdown: one line per (data set, alpha, margin), means over the folds."""
    lines = [
        "| data | radii r1, r2, r3 (standardised) | alpha | margin (x D50) | "
        "margin (standardised, folds' mean) | accuracy | cert acc @r1 | cert acc @r2 | "
        "cert acc @r3 | fit s |",
        "|---" * 10 + "|",
    ]
    for name, grid in results.items():
        radii = ", ".join(f"{r:g}" for r in grid.radii)
        for i, alpha in enumerate(alphas):
            for j, fraction in enumerate(margins):
                accuracy = grid.accuracy[i, j]
                certs = " | ".join(f"{c:.3f}" for c in grid.certified[i, j].mean(axis=0))
                lines.append(
                    f"| {name} | {radii} | {alpha:g} | {_margin_label(fraction)} | "
                    f"{grid.margin[j].mean():.3g} | {accuracy.mean():.3f} ± {accuracy.std():.3f}"
                    f" | {certs} | {grid.seconds[i, j].mean():.2f} |"
                )
    return "\n".join(lines)


def figure(results: dict[str, Grid], alphas, margins, path: Path) -> None:
    """Per data set: accuracy, and certified accuracy at the middle radius, vs margin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    middle = len(RADII) // 2
    fig, axes = plt.subplots(len(results), 2, figsize=(9, 3.4 * len(results)),
                             squeeze=False, sharex=True, sharey="row")  # fmt: skip
    ticks = [_margin_label(m).replace(" (", "\n(") for m in margins]
    for row, (name, grid) in zip(axes, results.items(), strict=True):
        radius = f"r = {RADII[middle]:g} × D50 = {grid.radii[middle]:g}"
        panels = (
            (grid.accuracy.mean(axis=2), "test accuracy", f"{name}: test accuracy"),
            (grid.certified[..., middle].mean(axis=2), "certified accuracy",
             f"{name}: certified at {radius}"),
        )  # fmt: skip
        for ax, (values, ylabel, title) in zip(row, panels, strict=True):
            for i, alpha in enumerate(alphas):
                ax.plot(margins, values[i], marker="o", label=f"alpha = {alpha:g}")
            ax.axvline(AUTO_FRACTION, color="0.4", linestyle="--", linewidth=1)
            ax.set_xscale("log")
            ax.set_xticks(margins, ticks)
            ax.minorticks_off()
            ax.set_ylabel(ylabel)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("margin / D50 (standardised units)")
    fig.suptitle("Dashed: margin=\"auto\" "
                 f"({AUTO_FRACTION:g} × D50, D50 = median distance to the nearest "
                 "other-class point)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_record(setting: str, text: str, datasets: list[str], path: Path) -> None:
    """The table into RESULTS.md; a run on other data sets than the default has its own block."""
    root = FIGURE.parents[2]
    where = path.resolve().relative_to(root) if path.resolve().is_relative_to(root) else path
    markdown = (
        f"{setting}.\n\nMargin in units of D50 (median distance to the nearest other-class "
        f"point, standardised features, training fold); {AUTO_FRACTION:g} x D50 is "
        f'margin="auto". Radii r1, r2, r3 = {", ".join(f"{r:g}" for r in RADII)} x D50 of '
        f"the whole set. Figure: `{where}`.\n\n{text}\n"
    )
    name, title = "tradeoff.py", "HKR trade-off: accuracy and robustness vs alpha and margin"
    if list(datasets) != list(SETS):
        name, title = f"{name}: {', '.join(datasets)}", f"{title}: {', '.join(datasets)}"
    record(name, title, markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", choices=list(DATASETS), default=list(SETS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--figure", type=Path, default=None,
                        help=f"where the PNG goes (default: {FIGURE})")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="toy sizes, for the tests")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    alphas, margins, epochs = ALPHAS, MARGINS, None
    if args.smoke:
        args.datasets, args.folds, args.no_record = ["moons"], 2, True
        alphas, margins, epochs = SMOKE_ALPHAS, SMOKE_MARGINS, 3
    if args.figure is None:
        smoke_figure = Path(tempfile.gettempdir()) / "hkr_tradeoff_smoke.png"
        args.figure = smoke_figure if args.smoke else FIGURE
    setting = (
        f"{args.folds}-fold StratifiedKFold(shuffle=True, random_state=0), same folds for "
        f"every (alpha, margin); StandardScaler -> LipschitzClassifier(random_state=0, "
        f"device='cpu'), max_epochs {epochs or 'default'}; "
        f"{torch.get_num_threads()} torch threads"
    )
    if args.smoke:
        setting += "; SMOKE RUN"
    print(setting + "\n", flush=True)
    # torch's one-off lazy imports and allocations, out of the first timed fit
    LipschitzClassifier(max_epochs=1, device="cpu").fit(np.eye(4), [0, 1, 0, 1])
    results = {}
    for name in args.datasets:
        started = time.perf_counter()
        results[name] = evaluate(name, alphas, margins, args.folds, epochs)
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    text = table(results, alphas, margins)
    print(text, flush=True)
    figure(results, alphas, margins, args.figure)
    print(f"\nfigure: {args.figure}", flush=True)
    if not args.no_record:
        write_record(setting, text, args.datasets, args.figure)


if __name__ == "__main__":
    main()
