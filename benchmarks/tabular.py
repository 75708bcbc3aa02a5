"""Tabular suite: sklip against scikit-learn's classifiers, same folds (issue 14).

Data: every classification set scikit-learn bundles (breast cancer, wine,
iris, digits 10-class), moons (2000, noise 0.2), circles (2000, noise 0.1,
factor 0.5), ``make_classification`` (20000 rows, 40 features, 20 informative,
10 redundant, flip_y 0.01, class_sep 0.8) with 2 and with 5 classes, and
"scales": ``make_classification`` (2000 rows, 10 features) whose columns are
multiplied by 1e-3 ... 1e3, with **no scaler in any pipeline** (a user who
forgot it). Every other set has ``StandardScaler`` in front of every model.

Protocol: 5-fold ``StratifiedKFold(shuffle=True, random_state=0)``; every
model sees the same folds. Rows: LogisticRegression(), SVC(),
MLPClassifier(max_iter=500), HistGradientBoostingClassifier(), deel-torchlip
(when importable: SpectralLinear 128 + GroupSort2 twice, FrobeniusLinear, its
HKR loss at the alpha and margin_ sklip's default fit used on that fold, the
same batch size, Adam at 5e-3, as many epochs as sklip ran on that fold), sklip with its defaults
(``LipschitzClassifier(random_state=0)``), and sklip after
``GridSearchCV`` (inner stratified 3-fold) over alpha in {10, 100} x margin in
{"auto", 0.1 x D50, 0.5 x D50} ("auto" is a quarter of D50 for two classes and
an eighth for more, measured on each inner training split), D50 being the
median distance from a training point to the nearest point of another class,
in standardised units, measured on the outer training fold.

Certified accuracy is given at three radii per data set, in standardised
units: 0.1, 0.25 and 0.5 x D50 of the whole set (2 significant digits; the
table states them). ``sklip.robustness.certified_accuracy`` is called on the
fitted Pipeline, whose radii are in the raw space; a raw radius r of a Pipeline
``StandardScaler -> classifier`` is the classifier's radius on the scaled
features times the smallest scale (the scaler's Lipschitz constant is
1 / min scale_), so the radius eps in standardised units is passed as
``eps * min(scale_)``. On "scales" (no scaler) a raw radius r covers the
standardised ball of radius r / max(scale_) only (scale_ of a StandardScaler
fitted on the training fold), so ``eps * max(scale_)`` is passed.

Run: ``python benchmarks/tabular.py [--datasets ...] [--no-grid] [--folds 5]
[--max-rows N]``; it prints the table and which goals of issue 14 each data set
meets, and writes them into RESULTS.md (``--no-record`` to only print).
``--smoke`` runs two small sets, 3 folds, few epochs (for the tests).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from _record import record
from sklearn.base import clone
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
    make_circles,
    make_classification,
    make_moons,
)
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import NearestNeighbors
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from sklip import LipschitzClassifier
from sklip.robustness import certified_accuracy

RADII = (0.1, 0.25, 0.5)  # certified radii, in units of D50 (standardised)
GRID_ALPHAS = (10.0, 100.0)
GRID_MARGINS = ("auto", 0.1, 0.5)  # "auto", or in units of D50 of the training fold
UNSCALED = "scales (no scaler)"
SMOKE_SETS = ("iris", "moons")
LIPSCHITZ = ("deel-torchlip", "sklip defaults", "sklip grid")


def _scales() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(2000, n_features=10, n_informative=6, n_redundant=2, random_state=0)
    return X * np.logspace(-3, 3, X.shape[1]), y


DATASETS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "breast cancer": lambda: load_breast_cancer(return_X_y=True),
    "wine": lambda: load_wine(return_X_y=True),
    "iris": lambda: load_iris(return_X_y=True),
    "digits": lambda: load_digits(return_X_y=True),
    "moons": lambda: make_moons(2000, noise=0.2, random_state=0),
    "circles": lambda: make_circles(2000, noise=0.1, factor=0.5, random_state=0),
    "classification 2": lambda: make_classification(
        20000,
        n_features=40,
        n_informative=20,
        n_redundant=10,
        flip_y=0.01,
        class_sep=0.8,
        random_state=0,
    ),
    "classification 5": lambda: make_classification(
        20000,
        n_features=40,
        n_informative=20,
        n_redundant=10,
        flip_y=0.01,
        class_sep=0.8,
        n_classes=5,
        random_state=0,
    ),
    UNSCALED: _scales,
}


@dataclass
class Row:
    """One model on one data set: per-fold figures."""

    model: str
    accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    certified: list[np.ndarray] = field(default_factory=list)
    note: str = ""


def nearest_other_class(Z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance from each row of Z to the nearest row of another class."""
    distance = np.empty(len(Z))
    for label in np.unique(y):
        mine = y == label
        nn = NearestNeighbors(n_neighbors=1).fit(Z[~mine])
        distance[mine] = nn.kneighbors(Z[mine])[0][:, 0]
    return distance


def d50(X: np.ndarray, y: np.ndarray) -> float:
    """Median distance to the nearest other-class point, standardised features."""
    return float(np.median(nearest_other_class(StandardScaler().fit_transform(X), y)))


def _significant(value: float, digits: int = 2) -> float:
    return float(f"{value:.{digits}g}")


def baselines(scaled: bool, smoke: bool) -> dict[str, object]:
    mlp_iter = 30 if smoke else 500
    models = {
        "LogisticRegression": LogisticRegression(),
        "SVC": SVC(),
        "MLPClassifier": MLPClassifier(max_iter=mlp_iter, random_state=0),
        "HistGradientBoosting": HistGradientBoostingClassifier(random_state=0),
    }
    if scaled:
        models = {name: make_pipeline(StandardScaler(), model) for name, model in models.items()}
    return models


def sklip_model(scaled: bool, epochs: int | None) -> object:
    params = {"random_state": 0, "device": "cpu"}
    if epochs is not None:
        params["max_epochs"] = epochs
    clf = LipschitzClassifier(**params)
    return make_pipeline(StandardScaler(), clf) if scaled else clf


def grid_model(model: object, X: np.ndarray, y: np.ndarray, scaled: bool) -> GridSearchCV:
    scale = d50(X, y)
    prefix = "lipschitzclassifier__" if scaled else ""
    # Without a scaler the margin is in raw units: the same multiples of D50
    # would be meaningless there, so they are scaled by the mean raw scale.
    unit = scale if scaled else scale * float(np.mean(np.std(X, axis=0)))
    grid = {
        f"{prefix}alpha": list(GRID_ALPHAS),
        f"{prefix}margin": [
            m if isinstance(m, str) else _significant(m * unit, 3) for m in GRID_MARGINS
        ],
    }
    inner = StratifiedKFold(3, shuffle=True, random_state=0)
    return GridSearchCV(model, grid, cv=inner, n_jobs=1)


def parse_rule(spec: str) -> tuple[float, float, float]:
    """``"0.25*D50@100"`` -> (0.25, 0.50, 100.0): margin = 0.25 x the 50 % quantile of
    the distance to the nearest other-class point, alpha = 100."""
    fraction, rest = spec.split("*D")
    quantile, alpha = rest.split("@")
    return float(fraction), float(quantile) / 100, float(alpha)


def rule_model(spec: str, X: np.ndarray, y: np.ndarray, scaled: bool, epochs: int | None):
    """sklip with a data-aware margin, measured on the features the classifier sees
    (standardised on the training fold, or raw without a scaler)."""
    fraction, quantile, alpha = parse_rule(spec)
    Z = StandardScaler().fit_transform(X) if scaled else X
    margin = fraction * float(np.quantile(nearest_other_class(Z, y), quantile))
    model = sklip_model(scaled, epochs)
    prefix = "lipschitzclassifier__" if scaled else ""
    return model.set_params(**{f"{prefix}alpha": alpha, f"{prefix}margin": margin}), margin


def certify(model: object, X: np.ndarray, y: np.ndarray, eps: np.ndarray, scale: np.ndarray,
            scaled: bool) -> np.ndarray:  # fmt: skip
    """Certified accuracy at ``eps`` (standardised units), through the raw-space API."""
    factor = scale.min() if scaled else scale.max()
    return np.asarray(certified_accuracy(model, X, y, eps * factor))


def run_torchlip(X, y, X_test, y_test, sklip: LipschitzClassifier, eps: np.ndarray,
                 factor: float):  # fmt: skip
    """deel-torchlip with the fitted sklip's architecture, alpha, margin_, batch and epochs."""
    from training import certified, torch_loop, torchlip_export, torchlip_model

    classes = np.unique(y)
    y, y_test = np.searchsorted(classes, y), np.searchsorted(classes, y_test)
    torch.manual_seed(0)
    net, loss, targets = torchlip_model(
        X.shape[1], y, len(classes), sklip.alpha, sklip.margin_
    )  # ImportError: the row is skipped
    X = np.asarray(X, dtype=np.float32)
    torch_loop(net, loss, X, targets, sklip.n_iter_, sklip.batch_size, "cpu", 0)
    plain, bound_net = torchlip_export(net)
    X_test = np.asarray(X_test, dtype=np.float32)
    accuracy, curve = certified(plain, X_test, y_test, bound_net, eps * factor)
    return accuracy, np.asarray(curve)


def evaluate(name: str, args) -> tuple[list[Row], np.ndarray]:
    X, y = DATASETS[name]()
    X = np.asarray(X, dtype=np.float64)
    if args.max_rows and len(X) > args.max_rows:
        keep = next(
            StratifiedKFold(len(X) // args.max_rows, shuffle=True, random_state=0).split(X, y)
        )[1]
        X, y = X[keep], y[keep]
    scaled = name != UNSCALED
    eps = np.array([_significant(r * d50(X, y)) for r in RADII])
    folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=0).split(X, y))
    models = baselines(scaled, args.smoke)
    models["sklip defaults"] = sklip_model(scaled, args.epochs)
    rows = {model: Row(model) for model in [*models, "deel-torchlip", "sklip grid"]}
    if args.no_grid or (args.grid_max_rows and len(X) > args.grid_max_rows):
        rows["sklip grid"].note = "not run (--no-grid or --grid-max-rows)"
    rows.update({f"sklip rule {spec}": Row(f"sklip rule {spec}") for spec in args.rules})
    for train, test in folds:
        X_train, y_train, X_test, y_test = X[train], y[train], X[test], y[test]
        scale = StandardScaler().fit(X_train).scale_
        fitted = {}
        for model_name, model in models.items():
            model = clone(model)
            started = time.perf_counter()
            model.fit(X_train, y_train)
            rows[model_name].seconds.append(time.perf_counter() - started)
            rows[model_name].accuracy.append(model.score(X_test, y_test))
            fitted[model_name] = model
        sklip = fitted["sklip defaults"]
        rows["sklip defaults"].certified.append(certify(sklip, X_test, y_test, eps, scale, scaled))
        if not rows["sklip grid"].note.startswith("not run"):
            search = grid_model(sklip_model(scaled, args.epochs), X_train, y_train, scaled)
            started = time.perf_counter()
            search.fit(X_train, y_train)
            row = rows["sklip grid"]
            row.seconds.append(time.perf_counter() - started)
            row.accuracy.append(search.score(X_test, y_test))
            best = search.best_estimator_
            row.certified.append(certify(best, X_test, y_test, eps, scale, scaled))
            chosen = {key.split("__")[-1]: value for key, value in search.best_params_.items()}
            margin = best[-1].margin_ if scaled else best.margin_
            label = f"auto={margin:.3g}" if chosen["margin"] == "auto" else f"{margin:.3g}"
            row.note += f"{chosen['alpha']:g}/{label} "
        for spec in args.rules:
            model, margin = rule_model(spec, X_train, y_train, scaled, args.epochs)
            started = time.perf_counter()
            model.fit(X_train, y_train)
            row = rows[f"sklip rule {spec}"]
            row.seconds.append(time.perf_counter() - started)
            row.accuracy.append(model.score(X_test, y_test))
            row.certified.append(certify(model, X_test, y_test, eps, scale, scaled))
            row.note += f"{margin:.3g} "
        try:
            classifier = sklip[-1] if scaled else sklip
            Z_train = (X_train - X_train.mean(axis=0)) / scale if scaled else X_train
            Z_test = (X_test - X_train.mean(axis=0)) / scale if scaled else X_test
            started = time.perf_counter()
            accuracy, certs = run_torchlip(
                Z_train, y_train, Z_test, y_test, classifier, eps,
                1.0 if scaled else scale.max(),
            )  # fmt: skip
            rows["deel-torchlip"].seconds.append(time.perf_counter() - started)
            rows["deel-torchlip"].accuracy.append(accuracy)
            rows["deel-torchlip"].certified.append(certs)
        except ImportError:
            rows["deel-torchlip"].note = "not importable: row skipped"
    return list(rows.values()), eps


def _mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def table(results: dict[str, tuple[list[Row], np.ndarray]]) -> str:
    head = (
        "| data | radii (standardised) | model | accuracy | fit s | "
        "cert acc @r1 | cert acc @r2 | cert acc @r3 | note |"
    )
    lines = [head, "|---" * 9 + "|"]
    for name, (rows, eps) in results.items():
        radii = ", ".join(f"{e:g}" for e in eps)
        for row in rows:
            if not row.accuracy:
                lines.append(f"| {name} | {radii} | {row.model} | - | - | - | - | - | {row.note} |")
                continue
            if row.certified:
                certs = [f"{c:.3f}" for c in np.mean(row.certified, axis=0)]
            else:
                certs = ["-"] * 3
            note = row.note
            if row.model == "sklip grid":
                note = f"alpha/margin per fold: {row.note.strip()}"
            elif row.model.startswith("sklip rule"):
                note = f"margin per fold: {row.note.strip()}"
            lines.append(
                f"| {name} | {radii} | {row.model} | {_mean_std(row.accuracy)} | "
                f"{np.mean(row.seconds):.2f} | " + " | ".join(certs) + f" | {note} |"
            )
    return "\n".join(lines)


def _against_deel(sklip: Row, deel: Row) -> str:
    """Whether sklip's certified accuracy is at least deel-torchlip's at every radius."""
    if not deel.certified:
        return "-"
    ours, theirs = np.mean(sklip.certified, axis=0), np.mean(deel.certified, axis=0)
    pairs = enumerate(zip(ours, theirs, strict=True))
    short = [f"r{i + 1} {a:.4f} < {b:.4f}" for i, (a, b) in pairs if a < b]
    return "yes" if not short else "NO (" + ", ".join(short) + ")"


def goals(results: dict[str, tuple[list[Row], np.ndarray]]) -> str:
    """Which goals of issue 14 each data set meets (accuracy in points of 100)."""
    lines = [
        "| data | best of LogReg/MLP | sklip defaults (gap) | within 1 pt | "
        "sklip grid (gap) | within 0.5 pt | fit time / MLP | <= 3x | "
        "cert acc >= deel-torchlip's at r1, r2, r3 |",
        "|---" * 9 + "|",
    ]
    for name, (rows, _) in results.items():
        by = {row.model: row for row in rows}
        best = max(np.mean(by[m].accuracy) for m in ("LogisticRegression", "MLPClassifier"))
        default = np.mean(by["sklip defaults"].accuracy)
        gap = 100 * (default - best)
        cells = [f"{best:.3f}", f"{default:.3f} ({gap:+.1f})", "yes" if gap >= -1 else "NO"]
        if by["sklip grid"].accuracy:
            grid = np.mean(by["sklip grid"].accuracy)
            grid_gap = 100 * (grid - best)
            cells += [f"{grid:.3f} ({grid_gap:+.1f})", "yes" if grid_gap >= -0.5 else "NO"]
        else:
            cells += ["-", "-"]
        ratio = np.mean(by["sklip defaults"].seconds) / np.mean(by["MLPClassifier"].seconds)
        cells += [f"{ratio:.2f}", "yes" if ratio <= 3 else "NO"]
        cells.append(_against_deel(by["sklip defaults"], by["deel-torchlip"]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    rules = sorted({row.model for rows, _ in results.values() for row in rows
                    if row.model.startswith("sklip rule")})  # fmt: skip
    if rules:
        lines += ["", "| data | " + " | ".join(f"{r} (gap, time / MLP)" for r in rules) + " |",
                  "|---" * (1 + len(rules)) + "|"]  # fmt: skip
        for name, (rows, _) in results.items():
            by = {row.model: row for row in rows}
            best = max(np.mean(by[m].accuracy) for m in ("LogisticRegression", "MLPClassifier"))
            mlp = np.mean(by["MLPClassifier"].seconds)
            cells = [
                f"{np.mean(by[r].accuracy):.3f} ({100 * (np.mean(by[r].accuracy) - best):+.1f}, "
                f"{np.mean(by[r].seconds) / mlp:.2f}x)"
                for r in rules
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None,
                        help="sklip's max_epochs (default: its own default)")  # fmt: skip
    parser.add_argument("--max-rows", type=int, default=None,
                        help="stratified subsample of larger sets (stated)")  # fmt: skip
    parser.add_argument("--no-grid", action="store_true", help="skip the GridSearchCV row")
    parser.add_argument("--rules", nargs="*", default=[],
                        help="candidate data-aware margins, e.g. 0.25*D50@100: margin = "
                        "0.25 x median nearest-other-class distance, alpha = 100")  # fmt: skip
    parser.add_argument("--grid-max-rows", type=int, default=None,
                        help="run the grid only on sets with at most this many rows")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="toy sizes, for the tests")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    if args.smoke:
        args.datasets, args.folds, args.epochs = list(SMOKE_SETS), 3, 3
    warnings.simplefilter("ignore", ConvergenceWarning)
    setting = (
        f"{args.folds}-fold StratifiedKFold(shuffle=True, random_state=0), same folds for "
        f"every model; sklip max_epochs {args.epochs or 'default'}; "
        f"{torch.get_num_threads()} torch threads, n_jobs=1"
    )
    if args.grid_max_rows and not args.no_grid:
        setting += f"; grid search only on sets of at most {args.grid_max_rows} rows"
    if args.max_rows:
        setting += f"; sets above {args.max_rows} rows subsampled (stratified) to about that"
    if args.smoke:
        setting += "; SMOKE RUN (MLP max_iter 30)"
    print(setting + "\n", flush=True)
    # torch's one-off lazy imports and allocations, out of the first timed fit
    LipschitzClassifier(max_epochs=1, device="cpu").fit(np.eye(4), [0, 1, 0, 1])
    results = {}
    for name in args.datasets:
        started = time.perf_counter()
        results[name] = evaluate(name, args)
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
        print(table({name: results[name]}) + "\n", flush=True)
    text = table(results)
    goal_text = goals(results)
    print(text + "\n\n" + goal_text, flush=True)
    if not args.no_record:
        markdown = (
            f"{setting}.\n\nRadii r1, r2, r3 = 0.1, 0.25, 0.5 x D50 (median distance to the "
            "nearest other-class point, standardised features, whole set). Fit s of the grid "
            f"row: the whole GridSearchCV (18 inner fits and the refit).\n\n{text}\n\n"
            f"Goals of issue 14:\n\n{goal_text}\n"
        )
        # A run of part of the suite has its own block, named by its data sets.
        name, title = "tabular.py", "Tabular suite: sklip vs scikit-learn (issue 14)"
        part = [] if args.datasets == list(DATASETS) else list(args.datasets)
        part += [f"rules {' '.join(args.rules)}"] if args.rules else []
        if part:
            name += ": " + ", ".join(part)
            title += ": " + ", ".join(part)
        record(name, title, markdown)


if __name__ == "__main__":
    main()
