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
[--figure PATH] [--no-record]``; ``--smoke`` runs a toy grid (for the tests).
A run at the default sizes draws the user guide's figure
(``doc/_static/wasserstein_suite.png``: signed error against d at 2000 rows per
set, per case); ``--replot`` draws it again from the recorded table.
"""

from __future__ import annotations

import argparse
import functools
import math
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from _record import RESULTS, record

from sklip import WassersteinEstimator

DEFAULT_SIZES = [300, 2000]
FIGURE = Path(__file__).resolve().parents[1] / "doc" / "_static" / "wasserstein_suite.png"
METHODS = {  # column of the table -> label in the figure
    "sklip distance_": "sklip",
    "exact OT (emd2)": "exact OT (POT emd2)",
    "Sinkhorn (POT)": "Sinkhorn (POT)",
    "Sinkhorn (GeomLoss)": "Sinkhorn (GeomLoss)",
    "oracle": "oracle (optimal potential)",
}
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
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digit images with pixels divided by 16 (in [0, 1]), and their labels."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    return images / 16.0, labels


@functools.cache
def class_means() -> np.ndarray:
    """The ten class-mean images of the digits, pixels in [0, 1]."""
    images, labels = _digits()
    return np.stack([images[labels == k].mean(axis=0) for k in range(10)])


@functools.cache
def digits_population() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digit images in [0, 1] and each one's vector to its nearest class mean."""
    images = _digits()[0]
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


def parse_table(lines: list[str]) -> list[dict[str, str]]:
    """The suite's Markdown rows as dicts keyed by the header's column names."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in lines if line.startswith("| ")]  # fmt: skip
    header = rows[0]
    return [dict(zip(header, row, strict=True)) for row in rows[1:] if row[0] != "case"]


def _percent(cell: str) -> float:
    found = re.search(r"\(([+-][0-9.]+)%\)", cell)
    return float(found.group(1)) if found else float("nan")


def figure(lines: list[str], path: Path, n: int = DEFAULT_SIZES[-1]) -> None:
    """Signed error against d at ``n`` rows per set, one panel per case (the image case: vs n)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = parse_table(lines)
    cases = list(dict.fromkeys(row["case"] for row in rows))
    columns = min(3, len(cases))
    grid_rows = -(-(len(cases) + 1) // columns)  # one more cell: the legend
    fig, axes = plt.subplots(grid_rows, columns, figsize=(3.4 * columns, 3.1 * grid_rows),
                             squeeze=False)  # fmt: skip
    axes = axes.ravel()
    for ax, case in zip(axes[: len(cases)], cases, strict=True):
        image = case in IMAGE_DIMENSION
        chosen = [r for r in rows if r["case"] == case and (image or int(r["n per set"]) == n)]
        x = [int(r["n per set" if image else "d"]) for r in chosen]
        for column, label in METHODS.items():
            if column in chosen[0]:
                style = {"linewidth": 2.5, "color": "C3"} if label == "sklip" else {}
                if column == "oracle":
                    style = {"color": "0.3", "linestyle": ":"}
                ax.plot(x, [_percent(r[column]) for r in chosen], marker="o", label=label, **style)
        ax.axhspan(-3, 3, color="C2", alpha=0.15)
        ax.axhline(0, color="0.5", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=10)
        ax.set_xticks(x, [str(v) for v in x])
        ax.minorticks_off()
        ax.set_xlabel("n per set" if image else "dimension d")
        ax.set_title(f"{case} (d = {IMAGE_DIMENSION[case]})" if image else f"{case}, n = {n}",
                     fontsize=10)  # fmt: skip
        ax.grid(alpha=0.3)
    for ax in axes[::columns]:
        ax.set_ylabel("error vs population W1 (%)")
    legend, *unused = axes[len(cases) :]
    legend.legend(*axes[0].get_legend_handles_labels(), loc="center", fontsize=9)
    for ax in (legend, *unused):
        ax.axis("off")
    fig.suptitle("Estimating the population W1 (green band: within 3 %)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def recorded_lines(name: str = "wasserstein_accuracy.py") -> list[str]:
    """The table last recorded in RESULTS.md by this script (default sizes)."""
    text = RESULTS.read_text()
    block = text[text.index(f"<!-- BEGIN {name} -->") : text.index(f"<!-- END {name} -->")]
    return [line for line in block.splitlines() if line.startswith("| ")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cases", nargs="*", default=["shift", "radial", "point mass", "cones", "digits"]
    )
    parser.add_argument("--dims", nargs="*", type=int, default=[2, 8, 32, 64, 256])
    parser.add_argument("--sizes", nargs="*", type=int, default=DEFAULT_SIZES)
    parser.add_argument("--smoke", action="store_true", help="toy grid, for the tests")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--figure", type=Path, default=None,
                        help=f"where the PNG goes (default: {FIGURE}, when recording)")  # fmt: skip
    parser.add_argument("--replot", action="store_true",
                        help="draw the figure from the table in RESULTS.md; no run")  # fmt: skip
    args = parser.parse_args()
    if args.replot:
        figure(recorded_lines(), args.figure or FIGURE)
        return
    if args.smoke:
        args.dims, args.sizes = [2], [100]
        args.figure = args.figure or Path(tempfile.gettempdir()) / "wasserstein_suite_smoke.png"
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
    default_grid = args.sizes == DEFAULT_SIZES
    if args.figure or (default_grid and not args.no_record):
        figure(lines, args.figure or FIGURE, n=max(args.sizes))
    if not (args.no_record or args.smoke):
        # A run at other sizes (the largest ones) keeps its own block.
        sizes = "" if default_grid else ", n = " + ", ".join(map(str, args.sizes))
        record(f"wasserstein_accuracy.py{sizes}",
               f"Wasserstein-1 known-answer suite (issue 16){sizes}", "\n".join(lines))  # fmt: skip


if __name__ == "__main__":
    main()
