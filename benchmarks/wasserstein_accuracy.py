"""Known-answer suite for Wasserstein-1 estimates (issue 16, first step).

Pairs of distributions whose population W1 is known in closed form, beyond
translations (where the optimal potential is linear):

* "shift": N(0, I) against N(v, I), |v| = 1: W1 = 1 (potential linear).
* "radial": N(0, I) against N(0, 4 I): mass moves along rays from the origin,
  x -> 2 x, so W1 = (2 - 1) E|z| with E|z| = sqrt(2) Gamma((d+1)/2) / Gamma(d/2)
  (potential |x|, a cone).
* "point mass": every point of P at the origin, against N(0, 4 I): W1 = 2 E|z|.
* "cones": a potential made of four cones, f(x) = min_k |x - c_k| (centres fixed,
  seed 5, uniform in [-4, 4]^d). P is N(0, 4 I); Q is an independent draw of it
  with every point moved halfway to its nearest centre. Moving towards the apex
  keeps a point in its cone (the rays do not cross), f drops by exactly the
  distance moved, so f is an optimal potential and W1 = E|x - T(x)| =
  0.5 E_P[min_k |x - c_k|] (the construction of Korotin et al., NeurIPS 2022,
  with Euclidean cones). The expectation is integrated by Monte Carlo on
  2 000 000 points (relative standard error below 0.1 %).
* "digits" (images, d = 64): the population P is the 1797 scikit-learn digits
  (8x8, pixels divided by 16) with equal weights; Q is P with every image moved
  halfway to its nearest class-mean image. The same cone argument (the
  potential min_k |x - m_k| over the ten class means m_k) makes that move
  optimal, so W1 = 0.5 x the mean distance of an image to its nearest class mean,
  exactly (a finite population: no Monte Carlo). The samples are drawn with
  replacement from the 1797 images, independently for P and Q.

Rows per case (dimension d, n rows per set, one draw, seed 0): sklip's
``WassersteinEstimator(random_state=0)`` estimate ``distance_`` and its
``confidence_lower_bound_`` (95 %), POT's exact OT between the samples
(``ot.emd2``, n <= 2000) and its Sinkhorn divergence with entropic
regularisation 0.05 x the mean cost (``ot.sinkhorn2``, log-domain, n <= 2000),
and GeomLoss's debiased Sinkhorn divergence for p = 1
(``SamplesLoss("sinkhorn", p=1, blur=0.01 x the mean cost, scaling=0.9)``,
tensorized backend, n <= 2000; PyKeOps, which larger n would need, is not
installed), and the oracle: an optimal potential's dual value on the same
samples, i.e. what a perfect critic would report (its error is the samples'
own, which no estimator of the population W1 from these rows avoids; its
standard deviation is about the spread of f over sqrt(n)). Errors are
relative to the population W1. Above 2000 rows only
sklip runs (the suite's largest sizes, to 1e6 rows per set).

Run: ``python benchmarks/wasserstein_accuracy.py [--dims 2 8 ...] [--sizes 300 2000]
[--no-record]``; ``--smoke`` runs a toy grid (for the tests).
"""

from __future__ import annotations

import argparse
import functools
import math
import time

import numpy as np
from _record import record

from sklip import WassersteinEstimator

DEFAULT_SIZES = [300, 2000]
OT_MAX_ROWS = 2000  # exact OT's n x n cost matrix beyond this: minutes and GBs


def expected_norm(d: int) -> float:
    """E|z| for z ~ N(0, I_d)."""
    return math.sqrt(2) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


SHRINK = 0.5  # the "cones" case moves each point of Q this fraction of the way to its apex


def cone_centres(d: int) -> np.ndarray:
    return np.random.RandomState(5).uniform(-4, 4, size=(4, d))


def to_nearest_centre(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``c_k(x) - x`` for each row: the vector to its nearest centre."""
    squared = (X**2).sum(axis=1)[:, None] - 2 * X @ centres.T + (centres**2).sum(axis=1)
    return centres[squared.argmin(axis=1)] - X


@functools.cache
def class_means() -> np.ndarray:
    """The ten class-mean images of the digits, pixels in [0, 1]."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    return np.stack([images[labels == k].mean(axis=0) / 16.0 for k in range(10)])


@functools.cache
def digits_population() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digit images in [0, 1] and each one's vector to its nearest class mean."""
    from sklearn.datasets import load_digits

    images = load_digits().data / 16.0
    return images, to_nearest_centre(images, class_means())


_CONE_W1: dict[int, float] = {}


def cones_w1(d: int) -> float:
    """SHRINK x E|x - nearest centre| for x ~ N(0, 4 I), by Monte Carlo (cached per d)."""
    if d not in _CONE_W1:
        rng, centres, total = np.random.RandomState(123), cone_centres(d), 0.0
        for _ in range(20):
            X = 2.0 * rng.normal(size=(100_000, d))
            total += np.linalg.norm(to_nearest_centre(X, centres), axis=1).sum()
        _CONE_W1[d] = SHRINK * total / 2_000_000
    return _CONE_W1[d]


def draw(case: str, d: int, n: int, rng: np.random.RandomState):
    """Samples P, Q of a case, its population W1 and an optimal potential f.

    f is 1-Lipschitz with E_Q f - E_P f = W1 for the populations: its dual
    value on the samples is the oracle's estimate (what a perfect critic
    would measure on these rows).
    """
    if case == "shift":
        direction = rng.normal(size=d)
        direction /= np.linalg.norm(direction)
        P, Q = rng.normal(size=(n, d)), rng.normal(size=(n, d)) + direction
        return P, Q, 1.0, lambda X: X @ direction
    if case == "radial":
        P, Q = rng.normal(size=(n, d)), 2.0 * rng.normal(size=(n, d))
        return P, Q, expected_norm(d), _norm
    if case == "point mass":
        return np.zeros((n, d)), 2.0 * rng.normal(size=(n, d)), 2.0 * expected_norm(d), _norm
    if case == "cones":
        P, source = 2.0 * rng.normal(size=(n, d)), 2.0 * rng.normal(size=(n, d))
        centres = cone_centres(d)
        Q = source + SHRINK * to_nearest_centre(source, centres)
        return P, Q, cones_w1(d), lambda X: -_norm(to_nearest_centre(X, centres))
    if case == "digits":
        images, moves = digits_population()
        p, q = rng.randint(len(images), size=n), rng.randint(len(images), size=n)
        Q = images[q] + SHRINK * moves[q]
        truth = SHRINK * float(np.linalg.norm(moves, axis=1).mean())
        return images[p], Q, truth, lambda X: -_norm(to_nearest_centre(X, class_means()))
    raise ValueError(case)


def _norm(X: np.ndarray) -> np.ndarray:
    return np.linalg.norm(X, axis=1)


def oracle_estimate(P: np.ndarray, Q: np.ndarray, potential) -> float:
    """The optimal potential's dual value on the samples: a perfect critic's estimate."""
    return float(potential(Q).mean() - potential(P).mean())


IMAGE_DIMENSION = {"digits": 64}  # cases whose dimension is fixed by their data


def sklip_estimate(P: np.ndarray, Q: np.ndarray) -> tuple[float, float, float]:
    X, y = np.vstack((P, Q)), np.repeat([0, 1], (len(P), len(Q)))
    started = time.perf_counter()
    est = WassersteinEstimator(random_state=0).fit(X, y)
    return est.distance_, est.confidence_lower_bound_, time.perf_counter() - started


def pot_estimates(P: np.ndarray, Q: np.ndarray) -> tuple[float | None, float | None]:
    try:
        import ot
    except ImportError:
        return None, None
    if len(P) > OT_MAX_ROWS:
        return None, None
    cost = ot.dist(P, Q, metric="euclidean")
    uniform_p, uniform_q = np.full(len(P), 1 / len(P)), np.full(len(Q), 1 / len(Q))
    exact = float(ot.emd2(uniform_p, uniform_q, cost, numItermax=10_000_000))
    reg = 0.05 * float(cost.mean())
    sinkhorn = float(ot.sinkhorn2(uniform_p, uniform_q, cost, reg, method="sinkhorn_log"))
    return exact, sinkhorn


def geomloss_estimate(P: np.ndarray, Q: np.ndarray) -> float | None:
    try:
        import torch
        from geomloss import SamplesLoss
    except ImportError:
        return None
    if len(P) > OT_MAX_ROWS:
        return None
    x, y = torch.as_tensor(P), torch.as_tensor(Q)
    blur = 0.01 * float(torch.cdist(x, y).mean())
    loss = SamplesLoss("sinkhorn", p=1, blur=blur, scaling=0.9, backend="tensorized")
    return float(loss(x, y))


def _error(value: float | None, truth: float) -> str:
    return "-" if value is None else f"{value:.3f} ({(value / truth - 1) * 100:+.1f}%)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cases", nargs="*", default=["shift", "radial", "point mass", "cones", "digits"]
    )
    parser.add_argument("--dims", nargs="*", type=int, default=[2, 8, 32, 64, 256])
    parser.add_argument("--sizes", nargs="*", type=int, default=DEFAULT_SIZES)
    parser.add_argument("--smoke", action="store_true", help="toy grid, for the tests")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    if args.smoke:
        args.dims, args.sizes = [2], [100]
    lines = [
        "| case | d | n per set | W1 | sklip distance_ | sklip 95% lower bound | "
        "exact OT (emd2) | Sinkhorn (POT) | Sinkhorn (GeomLoss) | oracle | sklip seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in args.cases:
        dims = [IMAGE_DIMENSION[case]] if case in IMAGE_DIMENSION else args.dims
        for d in dims:
            for n in args.sizes:
                P, Q, truth, potential = draw(case, d, n, np.random.RandomState(0))
                estimate, bound, seconds = sklip_estimate(P, Q)
                exact, sinkhorn = pot_estimates(P, Q)
                geomloss = geomloss_estimate(P, Q)
                covered = "covers" if bound <= truth else "ABOVE W1"
                lines.append(
                    f"| {case} | {d} | {n} | {truth:.3f} | {_error(estimate, truth)} | "
                    f"{bound:.3f} ({covered}) | {_error(exact, truth)} | "
                    f"{_error(sinkhorn, truth)} | {_error(geomloss, truth)} | "
                    f"{_error(oracle_estimate(P, Q, potential), truth)} | {seconds:.1f} |"
                )
                print(lines[-1], flush=True)
    if not (args.no_record or args.smoke):
        # A run at other sizes (the largest ones) keeps its own block.
        sizes = "" if args.sizes == DEFAULT_SIZES else ", n = " + ", ".join(map(str, args.sizes))
        record(f"wasserstein_accuracy.py{sizes}",
               f"Wasserstein-1 known-answer suite (issue 16){sizes}", "\n".join(lines))  # fmt: skip


if __name__ == "__main__":
    main()
