"""Regression: sklip.LipschitzRegressor against scikit-learn's regressors (issue 18).

Data: ``load_diabetes``; ``make_friedman1(5000, noise=1)``;
``make_friedman2(2000)``; ``make_regression(20000, 30, noise=10)``; and a
target of known Lipschitz constant, ``y = ||x||`` for ``x`` uniform in
[-1, 1]^10 (5000 rows, constant exactly 1). Protocol: 3-fold CV (KFold,
shuffled, random_state=0), the same folds for every row, every model behind a
StandardScaler. Rows: Ridge, MLPRegressor (max_iter=500, its target
standardised too, through TransformedTargetRegressor), HistGradientBoosting,
sklip with its defaults, and sklip after a grid over ``lipschitz_constant``
(1/2, 1 and 2 times the fold's "auto" value) and ``activation`` ("groupsort",
"fullsort"), inner 2-fold CV. Columns: mean R²
± std over the folds, fit seconds per fold, and for sklip the certified
Lipschitz constant of the whole pipeline in the raw units of X (the
network's bound divided by the scaler's smallest scale), mean over folds.

Run: ``python benchmarks/regression.py [--sets ...] [--no-grid] [--no-record]``;
``--smoke`` runs tiny versions (for the tests).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _record import record
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes, make_friedman1, make_friedman2, make_regression
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklip import LipschitzRegressor
from sklip._regression_objective import auto_lipschitz_constant

SETS = ("diabetes", "friedman1", "friedman2", "regression 20k", "norm (K = 1)")


def dataset(name: str, smoke: bool) -> tuple[np.ndarray, np.ndarray]:
    shrink = 10 if smoke else 1
    if name == "diabetes":
        return load_diabetes(return_X_y=True)
    if name == "friedman1":
        return make_friedman1(5000 // shrink, noise=1.0, random_state=0)
    if name == "friedman2":
        return make_friedman2(2000 // shrink, random_state=0)
    if name == "regression 20k":
        return make_regression(20000 // shrink, 30, noise=10.0, random_state=0)
    X = np.random.RandomState(0).uniform(-1, 1, size=(5000 // shrink, 10))
    return X, np.linalg.norm(X, axis=1)


def models(smoke: bool, grid: bool) -> dict:
    epochs = {"max_epochs": 3} if smoke else {}
    rows = {
        "Ridge": lambda X, y: Ridge(),
        "MLPRegressor": lambda X, y: TransformedTargetRegressor(
            MLPRegressor(max_iter=5 if smoke else 500, random_state=0), transformer=StandardScaler()
        ),
        "HistGradientBoosting": lambda X, y: HistGradientBoostingRegressor(random_state=0),
        "sklip": lambda X, y: LipschitzRegressor(random_state=0, **epochs),
    }
    if grid:
        rows["sklip, grid over K, activation"] = lambda X, y: _grid(X, y, epochs)
    return rows


def _grid(X: np.ndarray, y: np.ndarray, epochs: dict) -> GridSearchCV:
    """The grid of the "sklip, grid over K, activation" row: 1/2, 1, 2 x the fold's
    "auto" constant, and both sorting activations (FullSort fits the cone ``||x||``, GroupSort
    friedman1, better)."""
    Z = StandardScaler().fit_transform(X)
    base = auto_lipschitz_constant(
        Z, y.reshape(len(y), -1), np.ones(len(y)), np.random.RandomState(0)
    )
    return GridSearchCV(
        LipschitzRegressor(random_state=0, **epochs),
        {"lipschitz_constant": [base / 2, base, 2 * base], "activation": ["groupsort", "fullsort"]},
        cv=2,
    )


def certified_raw_constant(pipe) -> float:
    """The whole pipeline's certified Lipschitz constant, in the raw units of X."""
    regressor = pipe[-1]
    if isinstance(regressor, GridSearchCV):
        regressor = regressor.best_estimator_
    return regressor.lipschitz_constant_ / pipe[0].scale_.min()


def run(sets, smoke: bool, grid: bool) -> str:
    lines = ["| data | model | R² (mean ± std) | fit seconds per fold | certified K (raw X) |",
             "|---|---|---|---|---|"]  # fmt: skip
    folds = KFold(2 if smoke else 3, shuffle=True, random_state=0)
    for name in sets:
        X, y = dataset(name, smoke)
        for model, make in models(smoke, grid).items():
            scores, seconds, constants = [], [], []
            for train, test in folds.split(X):
                pipe = make_pipeline(StandardScaler(), make(X[train], y[train]))
                started = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # MLP convergence warnings
                    pipe.fit(X[train], y[train])
                seconds.append(time.perf_counter() - started)
                scores.append(pipe.score(X[test], y[test]))
                if model.startswith("sklip"):
                    constants.append(certified_raw_constant(pipe))
            constant = f"{np.mean(constants):.3g}" if constants else "-"
            lines.append(f"| {name} | {model} | {np.mean(scores):.4f} ± {np.std(scores):.4f} | "
                         f"{np.mean(seconds):.2f} | {constant} |")  # fmt: skip
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=SETS)
    parser.add_argument("--no-grid", action="store_true", help="skip the grid-search row")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, for the tests")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    table = run(args.sets, args.smoke, not args.no_grid)
    print(table)
    if not (args.no_record or args.smoke):
        record("regression.py", "Regression (issue 18)", table)


if __name__ == "__main__":
    main()
