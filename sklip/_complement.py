r"""Negative samples for one-class training: the complement of the data, drawn along the network.

One-class HKR (Béthune et al., ICML 2023) trains a 1-Lipschitz ``f`` to
separate the data from a distribution ``Q`` of points outside its support,
redrawn at every epoch from the network being trained:

1. seeds uniform in a box around the data (:class:`SamplingBox`); when the
   data are said to hold outliers, half of them are instead the
   highest-scoring of ``HARD_CANDIDATES`` times as many uniform points (see
   :func:`draw_seeds`);
2. a few steps of a damped Newton iteration towards the level set ``f = 0``,

   .. math::
       z \leftarrow \operatorname{clip}\Big(z + \frac{u}{T}\, (-f(z))_+\,
       \frac{\nabla f(z)}{\lVert \nabla f(z) \rVert^2}\Big),
       \qquad u \sim U[0, 1] \text{ per point},

   so a seed the network places outside (``f < 0``) moves a random fraction
   of the way to the boundary and one inside does not move.

Where ``f`` is close to the signed distance to the support (gradient norm 1),
one full step lands on the boundary: the random fraction spreads the
negatives between their seed and the data, where the hinge then has
something to push against. Each fit's own generator draws the seeds and the
fractions, on the training device.

Why half the seeds are chosen when the data hold outliers: uniform seeds
rarely land in a small region the data surround (the pocket inside an arc of
two moons), yet the network's boundary wrongly takes in such regions first,
and a seed there, scored inside, is the negative that corrects it. Choosing
the highest-scoring candidates puts negatives where the network is least
sure that space is empty; the uniform half keeps them everywhere else. It
also crowds negatives around any sparse part of the data, which is what a
contaminated set needs (sparse rows are the suspects) and what clean data
must not get: there a small cluster is data, and with chosen seeds a cluster
of 20 rows beside 200 was left outside the boundary in 3 fits of 4. So
clean data (``contamination="auto"``) keep uniform seeds. Measured on
``benchmarks/outliers.py`` (RESULTS.md, issue 17 notes, means of 3 draws at
5 % contamination): two moons with uniform outliers 0.886 -> 0.929 AUROC;
all seeds chosen (no uniform half) loses on the 16-D Gaussian, and choosing
among 16 times as many loses on the moons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ._training import TrainingSet
from .nn import hkr_coefficients

BOX_PADDING = 0.5  # each side of a feature's range widens by this fraction of it
HARD_CANDIDATES = 4  # uniform candidates per seed; the best half of the seeds come from them
_SCORE_CHUNK = 8192  # candidates drawn and scored at once (memory of one forward pass)
RELABEL_FACTOR = 1.5  # rows trained as outliers: this times the contamination share (see below)


@dataclass
class SamplingBox:
    """The box the negatives are drawn in and kept in: the data's range, widened.

    A feature's range ``[min, max]`` widens by ``BOX_PADDING`` times its span
    on each side. A constant feature gets the mean span of the others (1 if
    every feature is constant): outliers may differ from the data there too.
    """

    low: Tensor
    high: Tensor

    @classmethod
    def around(cls, low: np.ndarray, high: np.ndarray, device: torch.device) -> SamplingBox:
        """The box around the data range ``[low, high]`` (per feature)."""
        low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        span = high - low
        constant = span == 0
        if constant.any():
            span[constant] = span[~constant].mean() if (~constant).any() else 1.0
        pad = BOX_PADDING * span
        return cls(
            torch.tensor(low - pad, dtype=torch.float32, device=device),
            torch.tensor(high + pad, dtype=torch.float32, device=device),
        )

    def uniform_points(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` points uniform in the box."""
        u = torch.rand(n, self.low.shape[0], generator=generator, device=self.low.device,
                       dtype=self.low.dtype)  # fmt: skip
        return self.low + u * (self.high - self.low)


def draw_seeds(
    module: nn.Module, box: SamplingBox, n: int, generator: torch.Generator, *, chosen: bool
) -> Tensor:
    """``n`` seeds for the negatives, uniform in the box.

    With ``chosen``, ``n // 2`` of them are instead the highest-scoring of
    ``HARD_CANDIDATES * n`` uniform points, scored by ``module`` without
    gradients. The candidates are drawn and scored ``_SCORE_CHUNK`` at a
    time, keeping only the best so far: the memory is that of the seeds, not
    of all the candidates (4n images would not fit).
    """
    if not chosen:
        return box.uniform_points(n, generator)
    n_hard = n // 2
    best = box.low.new_empty(0, box.low.shape[0])
    best_scores = box.low.new_empty(0)
    remaining = HARD_CANDIDATES * n
    with torch.no_grad():
        while remaining:
            chunk = box.uniform_points(min(_SCORE_CHUNK, remaining), generator)
            remaining -= chunk.shape[0]
            pool = torch.cat((best, chunk))
            scores = torch.cat((best_scores, module(chunk)[:, 0]))
            kept = torch.topk(scores, min(n_hard, scores.shape[0])).indices
            best, best_scores = pool[kept], scores[kept]
    return torch.cat((best, box.uniform_points(n - n_hard, generator)))


def toward_boundary(
    module: nn.Module, seeds: Tensor, box: SamplingBox, n_steps: int, generator: torch.Generator
) -> Tensor:
    """The seeds after ``n_steps`` damped Newton steps towards ``f = 0`` (see the module notes).

    Only the points are differentiated, not the weights; the result is detached.
    With ``n_steps=0`` the seeds are returned as they are.
    """
    points = seeds
    if n_steps == 0:
        return points
    fraction = torch.rand(
        seeds.shape[0], 1, generator=generator, device=seeds.device, dtype=seeds.dtype
    )
    step = fraction / n_steps
    for _ in range(n_steps):
        points = points.detach().requires_grad_(True)
        with torch.enable_grad():
            scores = module(points)[:, 0]
            (gradient,) = torch.autograd.grad(scores.sum(), points)
        squared_norm = gradient.square().sum(dim=1, keepdim=True)
        # A flat spot (zero gradient) gives no direction: that point stays.
        direction = gradient / squared_norm.clamp_min(1e-12)
        moved = points + step * torch.relu(-scores.detach()).unsqueeze(1) * direction
        points = torch.minimum(torch.maximum(moved, box.low), box.high)
    return points.detach()


@dataclass
class OneClassEpochs:
    """Each epoch's training set of one-class HKR, drawn from the network being trained.

    ``data`` holds the ``n`` data rows (label +1), then ``n`` rows for the
    negatives (label -1), overwritten at each call with fresh ones. With an
    ``outlier_share`` ``c > 0`` the training data are taken to hold that
    share of outliers: at each epoch, the data rows the network scores
    lowest, holding a share ``c`` of the data's weight, are labelled -1 like
    the negatives, so that the boundary leaves them out instead of
    stretching around them (measured on ``benchmarks/outliers.py``'s
    contaminated sets: better on average than leaving them out of the loss,
    most of all on the shifted 16-D Gaussian, 0.98 against 0.88 AUROC), and
    half the negatives' seeds are chosen where the network scores highest
    (see the module notes).

    The share relabelled is ``RELABEL_FACTOR * c`` (at most one half), not
    ``c``: which rows are the outliers is the network's own guess, and it
    misses (on the shifted 16-D Gaussian only 49 % to 84 % of the
    lowest-scoring 5 % were true outliers, over three draws). Training out
    half as many again catches more of them at the cost of a few tail
    inliers; the threshold (``offset_``) still puts exactly ``c`` below it.
    Measured (means of 3 draws): the shifted 16-D Gaussian 0.966 -> 0.990
    AUROC, the other sets within 0.01; 1.25 times gave 0.987, 2 times 0.976.
    """

    data: TrainingSet
    weights: Tensor
    box: SamplingBox
    n_steps: int
    outlier_share: float
    generator: torch.Generator

    def __call__(self, module: nn.Module) -> TrainingSet:
        n = self.data.X.shape[0] // 2
        seeds = draw_seeds(module, self.box, n, self.generator, chosen=self.outlier_share > 0)
        self.data.X[n:] = toward_boundary(module, seeds, self.box, self.n_steps, self.generator)
        if self.outlier_share:
            self.data.coefficients = self._relabelled_coefficients(module, n)
        return self.data

    def _relabelled_coefficients(self, module: nn.Module, n: int) -> Tensor:
        """HKR coefficients with the lowest-scoring rows, the relabelled share, labelled -1."""
        with torch.no_grad():
            scores = module(self.data.X[:n])[:, 0]
        order = torch.argsort(scores)
        share = min(0.5, RELABEL_FACTOR * self.outlier_share)
        lowest = torch.cumsum(self.weights[order], 0) <= share * self.weights[:n].sum()
        targets = torch.ones_like(self.weights)
        targets[n:] = -1.0
        targets[order[lowest]] = -1.0
        negative = targets < 0
        sums = torch.stack((self.weights[negative].sum(), self.weights[~negative].sum()))
        return hkr_coefficients(targets, 1, self.weights, sums)
