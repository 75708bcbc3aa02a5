"""How LipschitzClassifier's defaults were chosen: a small grid, timed side by side.

Run: ``python benchmarks/defaults.py`` (about 5 minutes on 2 CPU cores). For each
candidate (learning rate x batch size, 100 epochs at most) it fits digits 0-vs-8
and the 10-class digits (75/25 stratified split, standardised features) and
prints fit time, test accuracy and the median certified radius of correct
points, as a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import itertools
import platform
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sklip import LipschitzClassifier


def split(X, y):
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def main() -> None:
    X, y = load_digits(return_X_y=True)
    keep = (y == 0) | (y == 8)
    problems = {"0-vs-8": split(X[keep], y[keep]), "10-class": split(X, y)}
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"torch threads {torch.get_num_threads()}, torch {torch.__version__}"
    )
    print("| problem | learning_rate | batch_size | epochs | fit s | test acc | median radius |")
    print("|---|---|---|---|---|---|---|")
    for (name, data), lr, batch in itertools.product(
        problems.items(), (1e-3, 5e-3, 1e-2), (64, 128, 256)
    ):
        X_train, X_test, y_train, y_test = data
        clf = LipschitzClassifier(learning_rate=lr, batch_size=batch, random_state=0)
        started = time.perf_counter()
        clf.fit(X_train, y_train)
        seconds = time.perf_counter() - started
        correct = clf.predict(X_test) == y_test
        radius = np.median(clf.certified_radius(X_test)[correct])
        print(
            f"| {name} | {lr:g} | {batch} | {clf.n_iter_} | {seconds:.1f} | "
            f"{correct.mean():.3f} | {radius:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
