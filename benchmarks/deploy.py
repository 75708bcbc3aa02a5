"""Exported inference: onnxruntime against ``to_torch()`` and the estimator (issue 19).

Three fitted models (trained briefly: only their shapes matter here): an MLP
on 40 features with two classes, an MLP on the 64 digit pixels with ten
classes (both the default (128, 128) architecture) and the default CNN on the
8x8 digits. Each is timed on one batch of 10 000 rows: ``to_torch()`` in
float64 and as a float32 copy (``.float()``), both under ``torch.no_grad()``;
the onnxruntime graph of ``sklip.to_onnx`` in float64 and float32, without and
with its certified radius; and the estimator's own ``predict`` and
``certified_radius`` for reference. Six rounds (``--rounds``); in each, every path runs 5
times in a row and its best run counts (see :func:`round_times`). The table
gives each path's best time and its median ratio to ``to_torch()`` in the
same round (on this shared 2-core machine a path's median time wandered by
15% and more between runs of the script); torch
and onnxruntime both use the machine's cores (``torch.get_num_threads()``
intra-op threads each).

Run: ``python benchmarks/deploy.py [--rows N] [--models ...] [--rounds R] [--no-record]``;
``--smoke``
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

MODELS = (
    "MLP, 40 features, 2 classes",
    "MLP, 64 pixels, 10 classes",
    "CNN, 8x8 digits, 10 classes",
)


def models(smoke: bool, names: tuple[str, ...] = MODELS) -> dict[str, tuple]:
    epochs = 1 if smoke else 3
    X, y = make_classification(2000, n_features=40, random_state=0)
    digits, labels = load_digits(return_X_y=True)
    digits = digits / 16
    mlp = sklip.LipschitzClassifier(max_epochs=epochs, random_state=0)
    cnn = sklip.LipschitzClassifier(image_shape=(1, 8, 8), max_epochs=epochs, random_state=0)
    fits = {
        MODELS[0]: lambda: (clone(mlp).fit(X, y), X),
        MODELS[1]: lambda: (clone(mlp).fit(digits, labels), digits),
        MODELS[2]: lambda: (cnn.fit(digits, labels), digits),
    }
    return {name: fits[name]() for name in names}


def round_times(functions: dict[str, object], rounds: int, block: int = 5) -> dict[str, np.ndarray]:
    """Each function's best time in each of ``rounds`` rounds.

    Within a round each function runs ``block`` times in a row and its best
    run counts: the first run after another library's has to wait for that
    library's worker threads, which spin for a while after their work is
    done (timing the paths one run each, interleaved, made onnxruntime look
    twice as slow as alone).
    """
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            runs = []
            for _ in range(block):
                start = time.perf_counter()
                function()
                runs.append(time.perf_counter() - start)
            times[name].append(min(runs))
    return {name: np.array(values) for name, values in times.items()}


def session(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])  # fmt: skip


def timings(clf, X: np.ndarray, repeats: int) -> dict[str, np.ndarray]:
    X64, X32 = X.astype(np.float64), X.astype(np.float32)
    network, network32 = clf.to_torch(), clf.to_torch().float()
    inputs64, inputs32 = torch.from_numpy(X64), torch.from_numpy(X32)

    def no_grad(module, inputs):
        def forward():
            with torch.no_grad():
                return module(inputs)

        return forward

    functions = {
        "to_torch() float64": no_grad(network, inputs64),
        "to_torch().float()": no_grad(network32, inputs32),
    }
    for dtype, data in (("float64", X64), ("float32", X32)):
        for with_radius in (False, True):
            graph = session(clf.to_onnx(dtype=dtype, with_radius=with_radius))
            name = f"onnxruntime {dtype}" + (" + radius" if with_radius else "")
            functions[name] = lambda g=graph, d=data: g.run(None, {"X": d})
    functions["estimator predict"] = lambda: clf.predict(X64)
    functions["estimator certified_radius"] = lambda: clf.certified_radius(X64)
    return round_times(functions, repeats)


def run(n_rows: int, smoke: bool, names: tuple[str, ...] = MODELS, repeats: int = 6) -> str:
    repeats = 2 if smoke else repeats
    results = {}
    for name, (clf, X) in models(smoke, names).items():
        batch = X[np.random.RandomState(0).randint(len(X), size=n_rows)]
        results[name] = timings(clf, batch, repeats)
    names = list(results)
    lines = [
        f"Batch of {n_rows} rows, {repeats} rounds of 5 runs per path: best ms; in brackets, "
        "the median over "
        "the rounds of the time relative to `to_torch()` in the same dtype, timed in the "
        "same round (below 1: faster).",
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
                f" ({np.median(seconds / results[name][base]):.2f}x)"
            )  # fmt: skip
            cells.append(f"{1000 * seconds.min():.1f}{ratio}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--smoke", action="store_true", help="a tiny run, for the tests")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    table = run(200 if args.smoke else args.rows, args.smoke, tuple(args.models), args.rounds)
    print(table)
    if not (args.no_record or args.smoke):
        record("deploy.py", "Exported inference (issue 19)", table)


if __name__ == "__main__":
    main()
