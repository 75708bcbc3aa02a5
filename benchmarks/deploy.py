"""Exported inference: onnxruntime against ``to_torch()`` and the estimator (issue 19).

Three fitted models (trained briefly: only their shapes matter here): an MLP
on 40 features with two classes, an MLP on the 64 digit pixels with ten
classes (both the default (128, 128) architecture) and the default CNN on the
8x8 digits. Each is timed on one batch of 10 000 rows: ``to_torch()`` in
float64 and as a float32 copy (``.float()``), both under ``torch.no_grad()``;
the onnxruntime graph of ``sklip.to_onnx`` in float64 and float32, without and
with its certified radius; and the estimator's own ``predict`` and
``certified_radius`` for reference. Median of 7 runs after one warm-up; torch
and onnxruntime both use the machine's cores (``torch.get_num_threads()``
intra-op threads each).

Run: ``python benchmarks/deploy.py [--rows N] [--no-record]``; ``--smoke``
runs a tiny version (for the tests).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
import torch
from _record import record
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification

import sklip


def models(smoke: bool) -> dict[str, tuple[sklip.LipschitzClassifier, np.ndarray]]:
    epochs = 1 if smoke else 3
    X, y = make_classification(2000, n_features=40, random_state=0)
    digits, labels = load_digits(return_X_y=True)
    digits = digits / 16
    mlp = sklip.LipschitzClassifier(max_epochs=epochs, random_state=0)
    cnn = sklip.LipschitzClassifier(image_shape=(1, 8, 8), max_epochs=epochs, random_state=0)
    return {
        "MLP, 40 features, 2 classes": (mlp.fit(X, y), X),
        "MLP, 64 pixels, 10 classes": (clone(mlp).fit(digits, labels), digits),
        "CNN, 8x8 digits, 10 classes": (cnn.fit(digits, labels), digits),
    }


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def session(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])  # fmt: skip


def timings(clf, X: np.ndarray, repeats: int) -> dict[str, float]:
    X64, X32 = X.astype(np.float64), X.astype(np.float32)
    network = clf.to_torch()
    network32 = clf.to_torch().float()
    rows = {}
    with torch.no_grad():
        inputs64, inputs32 = torch.from_numpy(X64), torch.from_numpy(X32)
        rows["to_torch() float64"] = median_seconds(lambda: network(inputs64), repeats)
        rows["to_torch().float()"] = median_seconds(lambda: network32(inputs32), repeats)
    for dtype, data in (("float64", X64), ("float32", X32)):
        for with_radius in (False, True):
            graph = session(clf.to_onnx(dtype=dtype, with_radius=with_radius))
            name = f"onnxruntime {dtype}" + (" + radius" if with_radius else "")
            rows[name] = median_seconds(lambda g=graph, d=data: g.run(None, {"X": d}), repeats)
    rows["estimator predict"] = median_seconds(lambda: clf.predict(X64), repeats)
    rows["estimator certified_radius"] = median_seconds(
        lambda: clf.certified_radius(X64), repeats
    )
    return rows


def run(n_rows: int, smoke: bool) -> str:
    repeats = 2 if smoke else 7
    results = {}
    for name, (clf, X) in models(smoke).items():
        batch = X[np.random.RandomState(0).randint(len(X), size=n_rows)]
        results[name] = timings(clf, batch, repeats)
    names = list(results)
    lines = [
        f"Batch of {n_rows} rows, median ms of {repeats} runs; in brackets, the time "
        "relative to `to_torch()` in the same dtype (below 1: faster).",
        "",
        "| path | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for row in results[names[0]]:
        cells = []
        for name in names:
            seconds = results[name][row]
            base = "to_torch().float()" if "float32" in row else "to_torch() float64"
            ratio = "" if row.startswith(("to_torch", "estimator")) else (
                f" ({seconds / results[name][base]:.2f}x)"
            )  # fmt: skip
            cells.append(f"{1000 * seconds:.1f}{ratio}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--smoke", action="store_true", help="a tiny run, for the tests")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    table = run(200 if args.smoke else args.rows, args.smoke)
    print(table)
    if not (args.no_record or args.smoke):
        record("deploy.py", "Exported inference (issue 19)", table)


if __name__ == "__main__":
    main()
