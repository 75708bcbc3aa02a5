"""Two-sample tests: sklip.wasserstein_test against hyppo's energy and MMD tests (issue 16).

Settings: n = 500 rows per set, level 0.05, one draw of both samples per
repetition (seeds 0, 1, ...). Cases: the null (N(0, I) against N(0, I)), a
mean shift (N(0, I) against N(delta, I) with |delta| = 0.3, along the first
axis) and a scale change (N(0, I) against N(0, 1.05^2 I); 1.15 gave every
test power 1), in d = 16 and 64.
Each test's rejection rate over the draws: the type-I error under the null,
the power otherwise. sklip: ``wasserstein_test(P, Q, random_state=seed,
n_permutations=199)`` with the estimator's defaults; hyppo (in the ``bench``
extra): ``Energy().test`` and ``MMD().test`` (Gaussian kernel, its default
bandwidth), 199 permutations each.

Run: ``python benchmarks/two_sample.py [--draws 100] [--dims 16 64] [--no-record]``;
``--smoke`` runs 3 draws at d = 4, n = 60 (for the tests).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _record import record

from sklip import wasserstein_test

LEVEL = 0.05
CASES = ("null", "mean shift 0.3", "scale 1.05")


def draw(case: str, d: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    P, Q = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    if case == "mean shift 0.3":
        Q[:, 0] += 0.3
    elif case == "scale 1.05":
        Q *= 1.05
    return P, Q


def pvalues(P: np.ndarray, Q: np.ndarray, seed: int) -> dict[str, tuple[float, float]]:
    """Each test's p-value and its own seconds."""
    started = time.perf_counter()
    pvalue = wasserstein_test(P, Q, random_state=seed, n_permutations=199).pvalue
    out = {"sklip wasserstein_test": (pvalue, time.perf_counter() - started)}
    try:
        from hyppo.ksample import MMD, Energy
    except ImportError:
        return out
    state = np.random.get_state()  # noqa: NPY002 (hyppo permutes with the global RNG)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # hyppo warns below 1000 permutations
            np.random.seed(seed)  # noqa: NPY002
            for name, test in (("hyppo Energy", Energy()), ("hyppo MMD", MMD())):
                started = time.perf_counter()
                pvalue = float(test.test(P, Q, reps=199, workers=1)[1])
                out[name] = (pvalue, time.perf_counter() - started)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--dims", nargs="*", type=int, default=[16, 64])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--smoke", action="store_true", help="toy sizes, for the tests")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    if args.smoke:
        args.draws, args.dims, args.n = 3, [4], 60
    lines = ["| case | d | test | rejection rate at 0.05 | seconds per test |",
             "|---|---|---|---|---|"]  # fmt: skip
    for d in args.dims:
        for case in CASES:
            rejected: dict[str, list[bool]] = {}
            seconds: dict[str, float] = {}
            for seed in range(args.draws):
                P, Q = draw(case, d, args.n, seed)
                for name, (pvalue, spent) in pvalues(P, Q, seed).items():
                    rejected.setdefault(name, []).append(pvalue <= LEVEL)
                    seconds[name] = seconds.get(name, 0.0) + spent
            for name, flags in rejected.items():
                rate = np.mean(flags)
                spread = np.sqrt(max(rate * (1 - rate), 1e-12) / len(flags))
                lines.append(f"| {case} | {d} | {name} | {rate:.3f} ± {spread:.3f} | "
                             f"{seconds[name] / len(flags):.2f} |")  # fmt: skip
                print(lines[-1], flush=True)
    if not (args.no_record or args.smoke):
        record("two_sample.py", f"Two-sample tests, n = {args.n} per set (issue 16)",
               f"{args.draws} draws per case.\n\n" + "\n".join(lines))  # fmt: skip


if __name__ == "__main__":
    main()
