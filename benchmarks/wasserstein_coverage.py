"""Coverage of WassersteinEstimator's confidence lower bound over repeated draws (issue 16).

The bound ``confidence_lower_bound_`` claims: with probability at least 95 %
over the draw of the samples, the population W1 is at least the bound. Here
it is put to the test on three cases of ``wasserstein_accuracy.py`` whose W1
is known in closed form: a shift in d = 2 (linear potential), a radial
scaling and a point mass in d = 8 (cone potentials). Each repetition draws
both sets afresh (seed = repetition) and fits
``WassersteinEstimator(random_state=seed)``; reported are the share of
draws whose bound is at most the true W1 (the coverage, with its binomial
standard error), the mean bound and the mean estimate ``distance_`` relative
to the truth. A second table gives the bound's tightness with 10 000 rows
per set (mean and lowest over 5 draws).

Run: ``python benchmarks/wasserstein_coverage.py [--draws 200] [--n 500]
[--no-record]``; ``--smoke`` runs 2 draws of 60 rows (for the tests).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _record import record
from wasserstein_accuracy import draw

from sklip import WassersteinEstimator

CASES = (("shift", 2), ("radial", 8), ("point mass", 8))


def fit(P: np.ndarray, Q: np.ndarray, seed: int) -> WassersteinEstimator:
    X, y = np.vstack((P, Q)), np.repeat([0, 1], (len(P), len(Q)))
    return WassersteinEstimator(random_state=seed).fit(X, y)


def coverage(draws: int, n: int) -> str:
    lines = ["| case | d | n per set | draws | coverage (bound <= W1) | mean bound / W1 | "
             "mean distance_ / W1 | seconds per draw |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for case, d in CASES:
        covered, bounds, estimates = [], [], []
        started = time.perf_counter()
        for seed in range(draws):
            P, Q, truth, _ = draw(case, d, n, np.random.RandomState(seed))
            est = fit(P, Q, seed)
            covered.append(est.confidence_lower_bound_ <= truth)
            bounds.append(est.confidence_lower_bound_ / truth)
            estimates.append(est.distance_ / truth)
        rate = float(np.mean(covered))
        spread = np.sqrt(max(rate * (1 - rate), 1e-12) / draws)
        seconds = (time.perf_counter() - started) / draws
        figures = f"{np.mean(bounds):.3f} | {np.mean(estimates):.3f} | {seconds:.2f}"
        lines.append(f"| {case} | {d} | {n} | {draws} | {rate:.3f} ± {spread:.3f} | {figures} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def tightness(n: int, draws: int) -> str:
    lines = ["| case | d | n per set | draws | W1 | mean bound / W1 | lowest bound / W1 | "
             "mean distance_ / W1 |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for case, d in CASES:
        bounds, estimates = [], []
        for seed in range(draws):
            P, Q, truth, _ = draw(case, d, n, np.random.RandomState(seed))
            est = fit(P, Q, seed)
            bounds.append(est.confidence_lower_bound_ / truth)
            estimates.append(est.distance_ / truth)
        lines.append(f"| {case} | {d} | {n} | {draws} | {truth:.3f} | {np.mean(bounds):.3f} | "
                     f"{np.min(bounds):.3f} | {np.mean(estimates):.3f} |")  # fmt: skip
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--large", type=int, default=10_000, help="rows per set, tightness")
    parser.add_argument("--large-draws", type=int, default=5, help="draws, tightness")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, for the tests")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    if args.smoke:
        args.draws, args.n, args.large, args.large_draws = 2, 60, 150, 1
    output = (f"**Coverage over {args.draws} draws (level 0.05)**\n\n"
              + coverage(args.draws, args.n)
              + f"\n\n**Tightness with {args.large} rows per set**\n\n"
              + tightness(args.large, args.large_draws))  # fmt: skip
    print(output)
    if not (args.no_record or args.smoke):
        record("wasserstein_coverage.py", "Wasserstein-1 confidence bound: coverage (issue 16)",
               output)  # fmt: skip


if __name__ == "__main__":
    main()
