"""Wasserstein-1 on translated Gaussians: sklip against POT, side by side.

P = N(0, I_d), Q = N(v, I_d) with |v| = 2, so the population W1 is exactly 2.
Each case runs in its own subprocess so that its peak memory (ru_maxrss) is its
own. POT (``pip install pot``, the ``bench`` extra) solves the exact transport
between the samples (``ot.emd2``, O(n^3) time, O(n^2) memory) and its entropic
approximation (``ot.sinkhorn2``); their rows stop where memory would not hold
the n x n cost matrix.

Run: ``python benchmarks/wasserstein.py [--sizes 1000 10000 ...] [--methods ...]``.
It prints a Markdown table and writes it into benchmarks/RESULTS.md
(``--no-record`` to only print).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from _record import record

DIMENSION = 16
TRUE_DISTANCE = 2.0
MAX_COST_MATRIX_BYTES = 8e9  # POT needs the n x n float64 cost matrix (and more)


def sample(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    v = rng.normal(size=DIMENSION)
    v *= TRUE_DISTANCE / np.linalg.norm(v)
    P = rng.normal(size=(n, DIMENSION)).astype(np.float32)
    Q = (rng.normal(size=(n, DIMENSION)) + v).astype(np.float32)
    return P, Q


def run_case(method: str, n: int) -> dict:
    P, Q = sample(n)
    import torch  # noqa: F401  (imported here: its import time stays outside the timed region)

    try:  # POT (the `bench` extra) is imported for every method when present,
        import ot  # so that all rows start from the same baseline memory
    except ImportError:
        if method != "sklip":
            raise

    from sklip import WassersteinEstimator

    if method == "sklip":  # the estimator's input: both sets stacked, with their labels
        X, y = np.vstack((P, Q)), np.repeat([0, 1], n)
    baseline = _rss_mb()
    monitor = _PeakRSS()
    started = time.perf_counter()
    if method == "sklip":
        est = WassersteinEstimator(random_state=0).fit(X, y)
        value, extra = est.distance_, f"{est.n_iter_} epochs"
    else:
        cost = ot.dist(P.astype(np.float64), Q.astype(np.float64), metric="euclidean")
        weights = np.full(n, 1.0 / n)
        if method == "pot-emd2":
            value, extra = float(ot.emd2(weights, weights, cost, numItermax=10**9)), "exact"
        else:
            reg = 0.05 * float(np.median(cost))
            value = float(ot.sinkhorn2(weights, weights, cost, reg, numItermax=2000))
            extra = f"reg={reg:.2f}"
    seconds = time.perf_counter() - started
    fit_extra_mb = monitor.stop() - baseline
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "method": method,
        "n": n,
        "seconds": seconds,
        "estimate": value,
        "error": abs(value - TRUE_DISTANCE) / TRUE_DISTANCE,
        "peak_mb": peak_mb,
        "fit_extra_mb": fit_extra_mb,
        "data_mb": 2 * n * DIMENSION * 4 / 2**20,
        "note": extra,
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _PeakRSS:
    """Samples the resident set size every 10 ms in a thread; ``stop()`` gives the peak."""

    def __init__(self) -> None:
        import threading

        self.peak = _rss_mb()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, _rss_mb())

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return max(self.peak, _rss_mb())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
    parser.add_argument("--methods", nargs="+", default=["sklip", "pot-emd2", "pot-sinkhorn2"])
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--case", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]))))
        return
    lines = [
        f"d = {DIMENSION}, true W1 = {TRUE_DISTANCE}\n",
        "| method | n per set | seconds | estimate | error vs truth | peak RSS MB "
        "| fit's extra MB | data MB | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for n in args.sizes:
        for method in args.methods:
            if method != "sklip" and 8.0 * n * n > MAX_COST_MATRIX_BYTES:
                lines.append(
                    f"| {method} | {n} | - | - | - | - | - | - | not run: the {n}x{n} cost "
                    f"matrix needs {8 * n * n / 1e9:.0f} GB |"
                )
            else:
                out = subprocess.run(
                    [sys.executable, __file__, "--case", method, str(n)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                r = json.loads(out.stdout.strip().splitlines()[-1])
                lines.append(
                    f"| {r['method']} | {n} | {r['seconds']:.1f} | {r['estimate']:.4f} | "
                    f"{100 * r['error']:.2f}% | {r['peak_mb']:.0f} | {r['fit_extra_mb']:.0f} | "
                    f"{r['data_mb']:.1f} | {r['note']} |"
                )
            print(lines[-1], flush=True)
    if not args.no_record:
        import torch  # sklip's estimator runs on the GPU when there is one

        record("wasserstein.py", "Wasserstein-1 against POT", "\n".join(lines),
               gpu=torch.cuda.is_available())  # fmt: skip


if __name__ == "__main__":
    main()
