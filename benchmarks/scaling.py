"""Scaling out: a grid search on a dask cluster, and W1 streamed from disk at growing n.

1. Grid search over 8 candidates (``alpha`` x ``margin``, 3-fold CV) of a
   LipschitzClassifier on the 10-class digits: sequential (``n_jobs=1``)
   against a dask ``LocalCluster`` of 2 worker processes (one thread each)
   through ``joblib.parallel_backend("dask")``. Reports both wall times (the
   cluster's start-up apart), their ratio, and whether the best parameters
   and every CV score are identical (same ``random_state``).
2. W1 between P = N(0, I_16) and Q = N(v, I_16), |v| = 2 (true W1 = 2), each
   set in a ``.npy`` file opened as a memory map and streamed by
   ``wasserstein_distance(P, Q, chunk_size=...)``, one pass. Each size runs in
   its own process (the data is written by another one first), so its peak
   resident set (``ru_maxrss``) is its own: it should stay flat in n.

Needs the ``dask`` extra for part 1. Run:
``python benchmarks/scaling.py [--parts grid w1] [--sizes 100000 1000000 10000000]``;
``--smoke`` runs both at toy size. Prints Markdown tables for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

DIMENSION = 16
TRUE_DISTANCE = 2.0
GRID = {"alpha": [1.0, 10.0, 30.0, 100.0], "margin": [0.5, 1.0]}


def grid_search(smoke: bool) -> None:
    import joblib
    from distributed import Client, LocalCluster
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV
    from sklearn.preprocessing import StandardScaler

    from sklip import LipschitzClassifier

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    params = dict(random_state=0, device="cpu", max_epochs=2 if smoke else 30)
    if smoke:
        X, y = X[:300], y[:300]

    def search(n_jobs):
        return GridSearchCV(LipschitzClassifier(**params), GRID, cv=3, n_jobs=n_jobs)

    started = time.perf_counter()
    sequential = search(1).fit(X, y)
    sequential_s = time.perf_counter() - started
    started = time.perf_counter()
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: __import__("sklip.classifier"))  # imports: start-up cost
        startup_s = time.perf_counter() - started
        started = time.perf_counter()
        with joblib.parallel_backend("dask"):
            distributed = search(-1).fit(X, y)
        dask_s = time.perf_counter() - started
    same_scores = np.array_equal(
        sequential.cv_results_["mean_test_score"], distributed.cv_results_["mean_test_score"]
    )
    print(f"\n{len(X)} samples, {len(sequential.cv_results_['params'])} candidates x 3 folds\n")
    print("| run | wall s | ratio | best params | identical CV scores |")
    print("|---|---|---|---|---|")
    print(f"| sequential (n_jobs=1) | {sequential_s:.1f} | 1.00 | {sequential.best_params_} | - |")
    print(
        f"| dask LocalCluster, 2 workers | {dask_s:.1f} (+{startup_s:.1f} start-up) | "
        f"{sequential_s / dask_s:.2f} | {distributed.best_params_} | {same_scores} |"
    )
    if sequential.best_params_ != distributed.best_params_ or not same_scores:
        raise SystemExit("the distributed search differs from the sequential one")


def write_sets(directory: str, n: int) -> None:
    """P.npy and Q.npy with n rows each, written block by block (no memory map)."""
    rng = np.random.RandomState(0)
    v = rng.normal(size=DIMENSION)
    v *= TRUE_DISTANCE / np.linalg.norm(v)
    for name, shift in (("P", 0.0), ("Q", v)):
        header = {"descr": "<f4", "fortran_order": False, "shape": (n, DIMENSION)}
        with open(os.path.join(directory, f"{name}.npy"), "wb") as out:
            np.lib.format.write_array_header_1_0(out, header)
            for start in range(0, n, 500_000):
                rows = min(500_000, n - start)
                out.write((rng.normal(size=(rows, DIMENSION)) + shift).astype("<f4").tobytes())


def w1_case(directory: str, chunk_size: int) -> dict:
    import torch

    from sklip import wasserstein_distance

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # one-off imports, untimed
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    P = np.load(os.path.join(directory, "P.npy"), mmap_mode="r")
    Q = np.load(os.path.join(directory, "Q.npy"), mmap_mode="r")
    started = time.perf_counter()
    estimate = wasserstein_distance(P, Q, chunk_size=chunk_size, random_state=0)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "estimate": estimate, "before_mb": before_mb, "peak_mb": peak_mb}


def streamed_w1(sizes: list[int], chunk_size: int) -> None:
    print(f"\nW1 streamed from disk, d = {DIMENSION}, true W1 = {TRUE_DISTANCE}, one pass, "
          f"chunk_size = {chunk_size}\n")  # fmt: skip
    print("| n per set | data MB | seconds | estimate | error | peak RSS MB | before fit MB |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        with tempfile.TemporaryDirectory() as directory:
            run = [sys.executable, __file__, "--directory", directory]
            subprocess.run([*run, "--write", str(n)], check=True)
            out = subprocess.run(
                [*run, "--case", str(chunk_size)], capture_output=True, text=True, check=True
            )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        error = abs(r["estimate"] - TRUE_DISTANCE) / TRUE_DISTANCE
        print(
            f"| {n} | {2 * n * DIMENSION * 4 / 2**20:.0f} | {r['seconds']:.1f} | "
            f"{r['estimate']:.4f} | {100 * error:.2f}% | {r['peak_mb']:.0f} | "
            f"{r['before_mb']:.0f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=["grid", "w1"], default=["grid", "w1"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--chunk-size", type=int, default=500_000)
    parser.add_argument("--smoke", action="store_true", help="toy sizes, a few seconds")
    parser.add_argument("--directory", help=argparse.SUPPRESS)
    parser.add_argument("--write", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        write_sets(args.directory, args.write)
        return
    if args.case:
        print(json.dumps(w1_case(args.directory, args.case)))
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")  # fmt: skip
    if "grid" in args.parts:
        grid_search(args.smoke)
    if "w1" in args.parts:
        sizes, chunk = ([5_000, 20_000], 4_000) if args.smoke else (args.sizes, args.chunk_size)
        streamed_w1(sizes, chunk)


if __name__ == "__main__":
    main()
