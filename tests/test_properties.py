"""Property-based tests (hypothesis) that try hard to break sklip's promises.

1. The certificates of a :class:`~sklip.nn.FrozenNetwork` (random architectures,
   weights rescaled and perturbed so that the bound is not 1, large biases,
   inputs from 1e-30 to 1e30 and points within rounding of the boundary) are
   attacked: PGD in float64, line searches for the first change of prediction,
   points at the scale of the radius, ulp neighbours. Any point strictly
   within a radius (checked in exact rational arithmetic) whose computed
   prediction differs is a bug.
2. The same at the estimator level, through ``certified_radius``, ``predict``,
   ``pgd_attack`` and ``counterfactual``, on inputs scaled up to 1e30 and
   shifted by up to 2**23.
3. A call that raises leaves a fitted estimator exactly as it was: predictions,
   radii, every attribute, and what a later ``partial_fit`` does.
4. No public call modifies a user array; read-only arrays work.
5. Every failure on bad input is a ValueError or TypeError naming the argument.

Profiles (tests/conftest.py): ``ci`` (default, deterministic, few examples) and
``thorough`` (``SKLIP_HYPOTHESIS_PROFILE=thorough``, many random examples).
"""

from __future__ import annotations

import copy
import math
import pickle
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from sklip import LipschitzClassifier, WassersteinEstimator, wasserstein_distance
from sklip._pipeline import unwrap
from sklip.nn import FrozenNetwork, export, lipschitz_cnn, lipschitz_mlp
from sklip.robustness import (
    certified_accuracy,
    certified_accuracy_curve,
    counterfactual,
    make_certified_scorer,
    make_lipschitz_capped_scorer,
    pgd_attack,
    radius_from_outputs,
)
from sklip.robustness import (
    certified_radius as pipeline_radius,
)

# Each test's example count is a share of the loaded profile's max_examples
# (10 in "ci", 400 in "thorough"): the profile scales the whole file.
_BASE_EXAMPLES = settings.default.max_examples


def bounded(share: float, **kwargs: Any) -> settings:
    """``settings`` with ``share`` times the profile's examples (at least 1), no deadline."""
    return settings(
        max_examples=max(1, round(share * _BASE_EXAMPLES)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        **kwargs,
    )


# ============================================================ exact geometry
def _exact_squared_distance(a: np.ndarray, b: np.ndarray) -> Fraction:
    return sum(
        ((Fraction(float(p)) - Fraction(float(q))) ** 2 for p, q in zip(a, b, strict=True)),
        Fraction(0),
    )


def strictly_within(a: np.ndarray, b: np.ndarray, radius: float) -> bool:
    """``||a - b||_2 < radius``, decided exactly (no rounding)."""
    return _exact_squared_distance(a, b) < Fraction(float(radius)) ** 2


def _ulps(x: np.ndarray) -> np.ndarray:
    return np.spacing(np.abs(x))


# ================================================================== targets
@dataclass
class Target:
    """What an attack needs of a certified predictor, all in float64.

    ``predict`` returns class indices exactly as the certified computation
    does; ``radius`` the certificates; ``margin`` a differentiable torch
    function ``(points, labels) -> margin of labels`` (only to aim attacks).
    """

    predict: Callable[[np.ndarray], np.ndarray]
    radius: Callable[[np.ndarray], np.ndarray]
    margin: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    n_features: int
    description: str = ""


def classes_from_outputs(outputs: np.ndarray) -> np.ndarray:
    """The estimators' rule: ``f > 0`` -> 1 for one output, first argmax otherwise."""
    if outputs.shape[1] == 1:
        return (outputs[:, 0] > 0).astype(np.int64)
    return outputs.argmax(axis=1)


def torch_margin(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if outputs.shape[1] == 1:
        return outputs[:, 0] * (2.0 * labels - 1)
    own = outputs.gather(1, labels[:, None])[:, 0]
    others = outputs.scatter(1, labels[:, None], -torch.inf).amax(dim=1)
    return own - others


def frozen_target(frozen: FrozenNetwork, n_features: int, description: str = "") -> Target:
    pairwise = frozen.pairwise_lipschitz_constant
    pairwise = None if pairwise is None else pairwise.numpy()

    def evaluate(X: np.ndarray):
        return frozen(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64)))

    def predict(X: np.ndarray) -> np.ndarray:
        return classes_from_outputs(evaluate(X).outputs.numpy())

    def radius(X: np.ndarray) -> np.ndarray:
        result = evaluate(X)
        return radius_from_outputs(
            result.outputs.numpy(),
            frozen.lipschitz_constant,
            pairwise,
            error=result.certificate_error.numpy(),
            error_growth=frozen.error_growth,
        )

    def margin(points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch_margin(frozen.module(points), labels)

    return Target(predict, radius, margin, n_features, description)


def estimator_target(clf: LipschitzClassifier, description: str = "") -> Target:
    def predict(X: np.ndarray) -> np.ndarray:
        return np.searchsorted(clf.classes_, clf.predict(X))

    def margin(points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch_margin(clf.network_.module(points), labels)

    return Target(predict, clf.certified_radius, margin, clf.n_features_in_, description)


# ================================================================== attacks
@dataclass
class Groups:
    """Points to evaluate, in groups whose every pair is checked against the radii."""

    points: list[np.ndarray] = field(default_factory=list)
    members: list[list[int]] = field(default_factory=list)
    _count: int = 0

    def add(self, rows: np.ndarray, group: list[int] | None = None) -> list[int]:
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        rows = rows[np.all(np.isfinite(rows), axis=1)]
        indices = list(range(self._count, self._count + len(rows)))
        self._count += len(rows)
        self.points.append(rows)
        if group is None:
            group = []
            self.members.append(group)
        group.extend(indices)
        return group

    def stacked(self, n_features: int) -> np.ndarray:
        if not self.points:
            return np.empty((0, n_features))
        return np.concatenate(self.points)


def unit_rows(D: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(D, axis=1, keepdims=True)
    return D / np.where(norms > 0, norms, 1.0)


def margin_gradients(target: Target, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Gradient of the margin of ``labels`` at ``X`` (float64 autograd), zeros where NaN."""
    points = torch.from_numpy(X.copy()).requires_grad_(True)
    margin = target.margin(points, torch.from_numpy(labels))
    (grad,) = torch.autograd.grad(margin.sum(), points)
    grad = grad.numpy()
    return np.where(np.isfinite(grad), grad, 0.0)


def radius_scale_points(X: np.ndarray, D: np.ndarray, r: np.ndarray) -> list[np.ndarray]:
    """``x + t d`` for t in [0.5 r, 0.999 r] and the largest float below r."""
    below = np.nextafter(r, 0.0)
    out = []
    for t in (0.5 * r, 0.9 * r, 0.99 * r, 0.999 * r, (1 - 2**-40) * r, below):
        out.append(X + t[:, None] * D)
    return out


def line_search(
    target: Target, X: np.ndarray, D: np.ndarray, labels: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bisection, along ``x + t d``, for the first ``t`` where the prediction changes.

    ``t`` is first searched on the ladder ``scale * 2**k``; then the bracket
    ``[lo, hi]`` (same class at lo, another at hi) is halved until lo and hi
    are adjacent floats. Returns the last same-class and first other-class
    points (NaN rows where no change was found).
    """
    n = len(X)
    ks = np.arange(-8, 48)
    ladder = scale[:, None] * 2.0 ** ks[None, :]
    points = X[:, None, :] + ladder[:, :, None] * D[:, None, :]
    flat = points.reshape(-1, X.shape[1])
    finite = np.all(np.isfinite(flat), axis=1)
    predicted = np.full(len(flat), -1)
    if finite.any():
        predicted[finite] = target.predict(flat[finite])
    changed = (predicted.reshape(n, len(ks)) != labels[:, None]) & finite.reshape(n, len(ks))
    found = changed.any(axis=1)
    first = changed.argmax(axis=1)
    hi = np.where(found, ladder[np.arange(n), first], np.nan)
    lo = np.where(first > 0, ladder[np.arange(n), np.maximum(first - 1, 0)], 0.0)
    lo, hi, X, D, labels = lo[found], hi[found], X[found], D[found], labels[found]
    for _ in range(1100):  # enough to walk down from 2**47 to subnormal steps
        mid = lo + (hi - lo) / 2
        active = (mid > lo) & (mid < hi)
        if not active.any():
            break
        mid_points = X[active] + mid[active, None] * D[active]
        same = target.predict(mid_points) == labels[active]
        lo[np.flatnonzero(active)[same]] = mid[active][same]
        hi[np.flatnonzero(active)[~same]] = mid[active][~same]
    before = np.full((n, X.shape[1]), np.nan)
    after = np.full((n, X.shape[1]), np.nan)
    before[found] = X + lo[:, None] * D
    after[found] = X + hi[:, None] * D
    return before, after


def pgd(
    target: Target,
    X: np.ndarray,
    labels: np.ndarray,
    radius: np.ndarray,
    rng: np.random.Generator,
    steps: int = 12,
    restarts: int = 1,
) -> list[np.ndarray]:
    """Projected gradient descent on the margin in the L2 ball of ``radius``: all iterates."""
    x0 = torch.from_numpy(X)
    r = torch.from_numpy(radius)[:, None]
    labels_t = torch.from_numpy(labels)
    out = []
    for restart in range(restarts + 1):
        delta = torch.zeros_like(x0)
        if restart:
            direction = torch.from_numpy(unit_rows(rng.standard_normal(X.shape)))
            delta = direction * r * torch.from_numpy(rng.uniform(size=(len(X), 1)))
        for _ in range(steps):
            delta.requires_grad_(True)
            margin = target.margin(x0 + delta, labels_t)
            (grad,) = torch.autograd.grad(margin.sum(), delta)
            with torch.no_grad():
                grad = torch.nan_to_num(grad)
                step = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-300)
                delta = delta - (2.5 / steps) * r * step
                norms = delta.norm(dim=1, keepdim=True)
                delta = delta * torch.clamp(r / norms.clamp_min(1e-300), max=1.0)
            out.append((x0 + delta).detach().numpy().copy())
    return out


def ulp_neighbours(X: np.ndarray, rng: np.random.Generator, count: int = 6) -> list[np.ndarray]:
    """Points a few ulps away from each row: along single coordinates and random signs."""
    out = []
    n, d = X.shape
    for k in (1, 2, 3):
        for i in rng.choice(d, size=min(d, 3), replace=False):
            for sign in (-1.0, 1.0):
                moved = X.copy()
                moved[:, i] += sign * k * _ulps(X[:, i])
                out.append(moved)
    for _ in range(count):
        signs = rng.choice([-1.0, 0.0, 1.0], size=(n, d))
        out.append(X + signs * rng.integers(1, 4, size=(n, d)) * _ulps(X))
    return out


def boundary_brackets(
    target: Target, X: np.ndarray, labels: np.ndarray, rng: np.random.Generator, pairs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of points on either side of the boundary, as close as float64 gets.

    Two points of different predicted classes are joined by a segment that is
    bisected (in the segment's parameter) until its ends are adjacent floats.
    """
    i, j = rng.integers(0, len(X), size=(2, pairs * 8))
    keep = labels[i] != labels[j]
    i, j = i[keep][:pairs], j[keep][:pairs]
    if not len(i):
        return np.empty((0, X.shape[1])), np.empty((0, X.shape[1]))
    a, b = X[i], X[j]
    la = labels[i]
    lo, hi = np.zeros(len(i)), np.ones(len(i))
    for _ in range(80):
        mid = lo + (hi - lo) / 2
        active = (mid > lo) & (mid < hi)
        if not active.any():
            break
        points = a[active] + mid[active, None] * (b[active] - a[active])
        same = target.predict(points) == la[active]
        lo[np.flatnonzero(active)[same]] = mid[active][same]
        hi[np.flatnonzero(active)[~same]] = mid[active][~same]
    return a + lo[:, None] * (b - a), a + hi[:, None] * (b - a)


def hunt(target: Target, anchors: np.ndarray, seed: int, pairs: int = 6) -> list[str]:
    """Attack every certificate around ``anchors``; return the violations found.

    Each anchor's group holds the anchor, points at its radius scale, PGD
    iterates inside its ball, line-search brackets and ulp neighbours; each
    boundary bracket's group holds a ladder of points walking away from the
    boundary on both sides and their ulp neighbours. Every pair of points of
    one group with different predictions is checked: their distance must be
    at least the radius of each (exactly, in rational arithmetic).
    """
    rng = np.random.default_rng(seed)
    anchors = anchors[np.all(np.isfinite(anchors), axis=1)]
    labels = target.predict(anchors)
    radius = target.radius(anchors)
    groups = Groups()

    # Boundary brackets and ladders walking away from them.
    before, after = boundary_brackets(target, anchors, labels, rng, pairs)
    for p, q in zip(before, after, strict=True):
        direction = unit_rows((p - q)[None, :])[0]
        if not np.any(direction):
            direction = unit_rows(rng.standard_normal((1, len(p))))[0]
        step = max(float(np.max(_ulps(p))), 5e-324)
        ladder = [p, q]
        for k in range(0, 64, 3):
            ladder.append(p + direction * step * 2.0**k)
            ladder.append(q - direction * step * 2.0**k)
        ladder = np.array(ladder)
        group = groups.add(ladder)
        for near in ulp_neighbours(ladder[:8], rng, count=4):
            groups.add(near, group)

    # Attacks from every point with a positive radius: anchors and ladder points.
    # Each source gets its own group: itself and what the attacks found.
    ladders = groups.stacked(target.n_features)
    sources = np.concatenate([anchors, ladders])
    source_radius = np.concatenate([radius, target.radius(ladders)]) if len(ladders) else radius
    source_labels = np.concatenate([labels, target.predict(ladders)]) if len(ladders) else labels
    keep = np.flatnonzero(source_radius > 0)
    if len(keep) > 48:  # keep the cost bounded: a random subset of the sources
        keep = rng.choice(keep, size=48, replace=False)
    sources, source_radius, source_labels = sources[keep], source_radius[keep], source_labels[keep]
    if len(sources):
        gradient = margin_gradients(target, sources, source_labels)
        directions = [-unit_rows(gradient)]
        directions += [unit_rows(rng.standard_normal(sources.shape)) for _ in range(2)]
        candidates: list[np.ndarray] = [sources]
        for D in directions:
            candidates += radius_scale_points(sources, D, source_radius)
            candidates += list(line_search(target, sources, D, source_labels, source_radius))
        candidates += pgd(target, sources, source_labels, source_radius, rng)
        candidates += ulp_neighbours(sources, rng, count=2)
        stacked = np.stack(candidates, axis=1)  # (source, candidate, feature)
        for rows in stacked:
            groups.add(rows)

    return check_groups(target, groups)


def check_groups(target: Target, groups: Groups) -> list[str]:
    """Every pair of a group with different predictions is at least each one's radius apart."""
    points = groups.stacked(target.n_features)
    if not len(points):
        return []
    labels = target.predict(points)
    radius = target.radius(points)
    # The same points again, in another order and other batch sizes: the
    # certificate covers the prediction however the rows are batched.
    rng = np.random.default_rng(len(points))
    order = rng.permutation(len(points))
    rebatched = np.empty_like(labels)
    start = 0
    while start < len(order):
        rows = order[start : start + int(rng.integers(1, 65))]
        rebatched[rows] = target.predict(points[rows])
        start += len(rows)
    violations = [
        f"certified x={points[k].tolist()!r} (radius {float(radius[k])!r}) gets class "
        f"{labels[k]} or {rebatched[k]} depending on its batch"
        for k in np.flatnonzero((labels != rebatched) & (radius > 0))[:5]
    ]
    for members in groups.members:
        index = np.array(sorted(set(members)))
        if len(index) < 2:
            continue
        P, L, R = points[index], labels[index], radius[index]
        L2 = rebatched[index]
        with np.errstate(over="ignore", invalid="ignore"):
            distance = np.linalg.norm(P[:, None, :] - P[None, :, :], axis=2)
        differ = (L[:, None] != L[None, :]) | (L[:, None] != L2[None, :])
        suspects = differ & ~(distance > R[:, None] * (1 + 1e-12))
        for a, b in zip(*np.nonzero(suspects), strict=True):
            if R[a] > 0 and strictly_within(P[a], P[b], R[a]):
                ratio = math.sqrt(_exact_squared_distance(P[a], P[b]) / Fraction(float(R[a])) ** 2)
                violations.append(
                    f"certified x={P[a].tolist()!r} (class {L[a]}, radius {float(R[a])!r}) but "
                    f"x'={P[b].tolist()!r} at {ratio:.17g} radius has class {L[b]} ({L2[b]})"
                )
                if len(violations) >= 5:
                    return violations
    return violations


# ======================================================== random networks
EVEN_WIDTHS = st.integers(1, 8).map(lambda half: 2 * half)
WEIGHT_SCALES = st.sampled_from([1e-3, 0.01, 0.3, 0.9, 1.0, 1.0, 1.1, 3.0, 100.0, 1e3])
BIAS_SCALES = st.sampled_from([0.0, 1e-12, 1e-3, 1.0, 10.0, 1e4, 1e8])
NOISE = st.sampled_from([0.0, 1e-12, 1e-3, 0.1, 1.0])


def make_frozen(
    architecture: tuple,
    seed: int,
    scales: list[float],
    noise: float = 0.0,
    bias_scale: float = 0.0,
    tie_rows: bool = False,
) -> tuple[FrozenNetwork, int, str]:
    """A frozen network from an architecture, its weights rescaled and perturbed.

    ``architecture`` is ``("mlp", n_features, widths, n_outputs, activation)`` or
    ``("cnn", image_shape, channels, widths, n_outputs, activation)``. Each layer's
    weight is multiplied by its scale and jittered by ``noise`` (relative); the
    biases are ``bias_scale`` times standard normals; ``tie_rows`` copies the last
    layer's first row into its second (a pair of scores that never cross).
    """
    generator = torch.Generator().manual_seed(seed)
    if architecture[0] == "mlp":
        _, n_features, widths, n_outputs, activation = architecture
        module = lipschitz_mlp(n_features, widths, n_outputs, activation, generator=generator)
    else:
        _, image, channels, widths, n_outputs, activation = architecture
        module = lipschitz_cnn(image, channels, widths, n_outputs, activation, generator=generator)
        n_features = math.prod(image)
    plain = export(module).double()
    weighted = [layer for layer in plain if hasattr(layer, "weight")]
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for layer, scale in zip(weighted, scales, strict=True):
            w = layer.weight
            jitter = torch.from_numpy(rng.standard_normal(tuple(w.shape)))
            w.mul_(scale).add_(noise * scale * jitter / math.sqrt(w[0].numel()))
            if layer.bias is not None:
                b = torch.from_numpy(rng.standard_normal(tuple(layer.bias.shape)))
                layer.bias.copy_(bias_scale * b)
        if tie_rows:
            weighted[-1].weight[1] = weighted[-1].weight[0]
    description = (
        f"make_frozen({architecture!r}, seed={seed}, scales={scales}, noise={noise}, "
        f"bias_scale={bias_scale}, tie_rows={tie_rows})"
    )
    return FrozenNetwork(plain, n_features), n_features, description


@st.composite
def frozen_networks(draw: Any) -> tuple[FrozenNetwork, int, str]:
    """A random frozen network: architecture, weights rescaled/perturbed, biases."""
    activation = draw(st.sampled_from(["groupsort", "fullsort", "relu"]))
    n_outputs = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    if draw(st.booleans()) or draw(st.booleans()):
        n_features = draw(st.integers(1, 6))
        widths = tuple(draw(st.lists(EVEN_WIDTHS, min_size=0, max_size=3)))
        architecture = ("mlp", n_features, widths, n_outputs, activation)
        n_weighted = len(widths) + 1
    else:
        image = (draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 5)))
        channels = tuple(
            draw(st.lists(st.integers(1, 3).map(lambda h: 2 * h), min_size=0, max_size=2))
        )
        widths = tuple(draw(st.lists(EVEN_WIDTHS, min_size=0, max_size=2)))
        architecture = ("cnn", image, channels, widths, n_outputs, activation)
        n_weighted = len(channels) + len(widths) + 1
    return make_frozen(
        architecture,
        seed,
        draw(st.lists(WEIGHT_SCALES, min_size=n_weighted, max_size=n_weighted)),
        draw(NOISE),
        draw(BIAS_SCALES),
        n_outputs > 2 and draw(st.booleans()),
    )


@st.composite
def input_scales(draw: Any) -> list[int]:
    return draw(st.lists(st.integers(-30, 30), min_size=1, max_size=3))


def random_anchors(
    n_features: int, exponents: list[int], seed: int, bias_scale: float = 1.0
) -> np.ndarray:
    """Points at each scale 10**e, at mixed per-coordinate scales, and at 0."""
    rng = np.random.default_rng(seed)
    rows = [np.zeros((1, n_features))]
    for e in [*exponents, 0, 3 + round(math.log10(max(bias_scale, 1.0)))]:
        rows.append(rng.standard_normal((6, n_features)) * 10.0**e)
    mixed = rng.standard_normal((4, n_features)) * 10.0 ** rng.integers(
        -30, 31, size=(4, n_features)
    )
    rows.append(mixed)
    return np.concatenate(rows)


# ===================================================== 1. frozen network
@bounded(1.5)
@given(network=frozen_networks(), exponents=input_scales(), seed=st.integers(0, 2**31 - 1))
@example(  # found by the thorough profile: a subnormal radius rounded up
    network=make_frozen(("mlp", 2, (), 1, "groupsort"), seed=0, scales=[100.0]),
    exponents=[0],
    seed=0,
)
def test_frozen_network_certificates_cannot_be_beaten(network, exponents, seed):
    frozen, n_features, description = network
    note(description)
    note(f"input exponents={exponents}, seed={seed}")
    target = frozen_target(frozen, n_features, description)
    bias_scale = max(
        (float(layer.bias.abs().max()) for layer in frozen.module if hasattr(layer, "bias")),
        default=1.0,
    )
    anchors = random_anchors(n_features, exponents, seed, bias_scale)
    violations = hunt(target, anchors, seed)
    assert not violations, "\n".join(violations)


def _bias_free_linear() -> tuple[FrozenNetwork, int, str]:
    """The smallest network that shows the underflow of the error bound's norms."""
    layer = torch.nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.6, 0.8]], dtype=torch.float64))
    return FrozenNetwork(torch.nn.Sequential(layer), 2), 2, "Linear(2, 1, bias=False)"


@bounded(0.5)
@given(network=frozen_networks(), seed=st.integers(0, 2**31 - 1))
@example(network=_bias_free_linear(), seed=0)
def test_frozen_network_certificates_at_extreme_scales(network, seed):
    """Beyond the brief's 1e-30..1e30: tiny inputs whose squares underflow, huge ones."""
    frozen, n_features, description = network
    note(description)
    target = frozen_target(frozen, n_features, description)
    anchors = random_anchors(n_features, [-300, -200, -160, 150], seed)
    violations = hunt(target, anchors, seed)
    assert not violations, "\n".join(violations)


# ================================================= 2. estimator certificates
@dataclass
class Data:
    X: np.ndarray
    y: np.ndarray


def _blobs(n_classes: int, n_features: int, n: int = 60, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((n_classes, n_features))
    y = np.arange(n) % n_classes
    return Data(centres[y] + rng.standard_normal((n, n_features)), y)


SMALL = dict(max_epochs=5, batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def classifiers() -> dict[str, tuple[LipschitzClassifier, Data]]:
    """Quickly fitted classifiers: binary, 3-class (fullsort), a tiny CNN (relu)."""
    binary, three = _blobs(2, 2), _blobs(3, 3)
    images = _blobs(2, 16)
    return {
        "binary": (
            LipschitzClassifier(hidden_layer_sizes=(8,), **SMALL).fit(binary.X, binary.y),
            binary,
        ),
        "3-class": (
            LipschitzClassifier(hidden_layer_sizes=(8, 6), activation="fullsort", **SMALL).fit(
                three.X, three.y
            ),
            three,
        ),
        "cnn": (
            LipschitzClassifier(
                image_shape=(1, 4, 4),
                conv_channels=(2,),
                hidden_layer_sizes=(4,),
                activation="relu",
                **SMALL,
            ).fit(images.X, images.y),
            images,
        ),
    }


SHIFTS = st.one_of(
    st.sampled_from([0.0, 1.0, 2.0**23, 2.0**23 + 0.5 - 1e-6, -(2.0**23) - 0.25, 1e6 + 1e-9]),
    st.floats(-(2.0**23), 2.0**23, allow_nan=False),
)


@bounded(1.5)
@given(
    name=st.sampled_from(["binary", "3-class", "cnn"]),
    exponent=st.integers(-6, 30),
    shift=SHIFTS,
    shift_all=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
@example(name="binary", exponent=0, shift=2.0**23 + 0.5 - 1e-6, shift_all=False, seed=0)
@example(name="3-class", exponent=30, shift=0.0, shift_all=False, seed=1)
def test_estimator_certificates_cannot_be_beaten(
    classifiers, name, exponent, shift, shift_all, seed
):
    clf, data = classifiers[name]
    rng = np.random.default_rng(seed)
    n_features = data.X.shape[1]
    X = np.concatenate(
        [
            data.X[rng.choice(len(data.X), size=6, replace=False)],
            rng.standard_normal((8, n_features)) * 10.0**exponent,
        ]
    )
    if shift_all:
        X += shift
    else:
        X[:, 0] += shift
    # The recipe that broke the float32 path: a first coordinate of 2**23 + 0.5 - 1e-6.
    recipe = data.X[:2].copy()
    recipe[:, 0] = 2.0**23 + 0.5 - 1e-6
    X = np.concatenate([X, recipe])
    target = estimator_target(clf, name)
    violations = hunt(target, X, seed, pairs=4)

    # sklip's own attacks, aimed at the radius itself.
    radius = clf.certified_radius(X)
    labels = clf.predict(X)
    attacked = pgd_attack(clf, X, None, radius, steps=10, restarts=1, random_state=seed)
    moved = counterfactual(clf, X, max_iter=10)
    for found in (attacked, moved):
        other = clf.predict(found) != labels
        for k in np.flatnonzero(other & (radius > 0)):
            if strictly_within(X[k], found[k], radius[k]):
                violations.append(
                    f"certified x={X[k].tolist()!r} (radius {radius[k]!r}) but "
                    f"x'={found[k].tolist()!r} has class {clf.predict(found[k : k + 1])[0]!r}"
                )
    assert not violations, f"{name}: " + "\n".join(violations)


@pytest.fixture(scope="module")
def pipelines() -> dict[str, tuple[Any, float, float]]:
    """Pipelines whose affine preprocessing meets raw features with a large offset.

    Name -> (pipeline, offset, spread of the raw features).
    """
    fitted = {}
    for name, step, offset, spread in [
        ("standard", StandardScaler(), 2.0**23, 1e-3),
        ("minmax", MinMaxScaler(), 1e8, 7.0),
        ("pca", PCA(), 1e5, 1.0),
    ]:
        rng = np.random.default_rng(5)
        X = offset + spread * rng.standard_normal((60, 2))
        y = (X[:, 0] > offset).astype(int)
        clf = LipschitzClassifier(hidden_layer_sizes=(4,), **SMALL)
        fitted[name] = (make_pipeline(step, clf).fit(X, y), offset, spread)
    return fitted


def pipeline_target(pipe: Any) -> Target:
    """Raw-space certificates of a Pipeline (sklip.robustness.certified_radius)."""
    clf = pipe[-1]
    A, b = (torch.from_numpy(part) for part in unwrap(pipe)[1])

    def predict(X: np.ndarray) -> np.ndarray:
        return np.searchsorted(clf.classes_, pipe.predict(X))

    def margin(points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch_margin(clf.network_.module(points @ A + b), labels)

    return Target(predict, lambda X: pipeline_radius(pipe, X), margin, A.shape[0])


@bounded(1)
@given(
    name=st.sampled_from(["standard", "minmax", "pca"]),
    exponent=st.integers(-2, 8),
    seed=st.integers(0, 2**31 - 1),
)
def test_pipeline_certificates_cannot_be_beaten(pipelines, name, exponent, seed):
    """A Pipeline's raw-space radius covers what ``pipe.predict`` computes, rounding included."""
    pipe, offset, spread = pipelines[name]
    rng = np.random.default_rng(seed)
    X = offset + spread * 10.0**exponent * rng.standard_normal((12, 2))
    violations = hunt(pipeline_target(pipe), X, seed, pairs=6)
    assert not violations, f"{name}: " + "\n".join(violations)


# ===================================================== 3. state discipline
def _bits(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().numpy().tobytes()


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ, bitwise for arrays and tensors (NaN equal to NaN)."""
    if type(a) is not type(b):
        return [f"{path}: type {type(a).__name__} != {type(b).__name__}"]
    if isinstance(a, np.ndarray):
        same = a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        if a.dtype == object and a.shape == b.shape:
            same = all(not differences(p, q) for p, q in zip(a.ravel(), b.ravel(), strict=True))
        return [] if same else [f"{path}: arrays differ"]
    if isinstance(a, torch.Tensor):
        same = (
            a.dtype == b.dtype
            and a.shape == b.shape
            and a.device == b.device
            and a.requires_grad == b.requires_grad
            and _bits(a) == _bits(b)
        )
        return [] if same else [f"{path}: tensors differ"]
    if isinstance(a, torch.nn.Module):
        found = []
        for (name, p), (_, q) in zip(
            a.state_dict(keep_vars=True).items(),
            b.state_dict(keep_vars=True).items(),
            strict=True,
        ):
            found += differences(p, q, f"{path}.{name}")
        for (name, m), (_, n) in zip(a.named_modules(), b.named_modules(), strict=True):
            if m.training != n.training:
                found.append(f"{path}.{name}: training {m.training} != {n.training}")
        return found
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(map(str, a.keys() ^ b.keys()))} differ"]
        found = []
        for key in a:
            if key != "epoch_time":  # wall-clock time of an epoch
                found += differences(a[key], b[key], f"{path}[{key!r}]")
        return found
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        found = []
        for k, (p, q) in enumerate(zip(a, b, strict=True)):
            found += differences(p, q, f"{path}[{k}]")
        return found
    if isinstance(a, float):
        return [] if (a == b or (math.isnan(a) and math.isnan(b))) else [f"{path}: {a} != {b}"]
    if isinstance(a, FrozenNetwork):
        return differences(vars(a), vars(b), path)
    try:
        return [] if a == b else [f"{path}: {a!r} != {b!r}"]
    except Exception:  # objects without a usable ==
        return differences(vars(a), vars(b), path)


def fitted_state(estimator: Any) -> dict[str, Any]:
    """Every attribute except the constructor parameters."""
    params = estimator.get_params(deep=False)
    return {k: v for k, v in vars(estimator).items() if k not in params}


@pytest.fixture(scope="module")
def stateful() -> dict[str, tuple[Any, Data]]:
    binary, three = _blobs(2, 2, seed=1), _blobs(3, 3, seed=2)
    sets = _blobs(2, 2, seed=3)
    return {
        "binary": (
            LipschitzClassifier(hidden_layer_sizes=(4,), **SMALL).fit(binary.X, binary.y),
            binary,
        ),
        "3-class": (
            LipschitzClassifier(hidden_layer_sizes=(4,), **SMALL).fit(three.X, three.y),
            three,
        ),
        "wasserstein": (
            WassersteinEstimator(hidden_layer_sizes=(4,), **SMALL).fit(sets.X, sets.y),
            sets,
        ),
    }


def _with_nan(X: np.ndarray) -> np.ndarray:
    X = X.copy()
    X[3, 0] = np.nan
    return X


def _new_label(y: np.ndarray) -> np.ndarray:
    y = y.copy()
    y[:5] = y.max() + 7
    return y


def _negative(n: int) -> np.ndarray:
    w = np.ones(n)
    w[2] = -1.0
    return w


# Calls expected to raise on a fitted estimator: name -> (params to set, call).
BAD_CALLS: dict[str, tuple[dict[str, Any], Callable[[Any, Data], Any]]] = {
    "fit continuous y": ({}, lambda e, d: e.fit(d.X, d.X[:, 0] + 0.5)),
    "fit y too short": ({}, lambda e, d: e.fit(d.X, d.y[:-1])),
    "fit one class": ({}, lambda e, d: e.fit(d.X, np.zeros_like(d.y))),
    "fit NaN": ({}, lambda e, d: e.fit(_with_nan(d.X), d.y)),
    "fit negative weight": ({}, lambda e, d: e.fit(d.X, d.y, sample_weight=_negative(len(d.y)))),
    "fit cuda:7": ({"device": "cuda:7"}, lambda e, d: e.fit(d.X, d.y)),
    "fit odd width": (
        {"hidden_layer_sizes": (3,), "activation": "groupsort"},
        lambda e, d: e.fit(d.X, d.y),
    ),
    "fit diverging": ({"learning_rate": 1e20}, lambda e, d: e.fit(d.X, d.y)),
    "fit float32 overflow": ({}, lambda e, d: e.fit(d.X * 1e39, d.y)),
    "fit bad image_shape": ({"image_shape": (1, 5, 5)}, lambda e, d: e.fit(d.X, d.y)),
    "fit 1-D X": ({}, lambda e, d: e.fit(d.X[:, 0], d.y)),
    "warm new class": ({"warm_start": True}, lambda e, d: e.fit(d.X, _new_label(d.y))),
    "warm new shape": (
        {"warm_start": True, "hidden_layer_sizes": (6,)},
        lambda e, d: e.fit(d.X, d.y),
    ),
    "warm wrong n_features": ({"warm_start": True}, lambda e, d: e.fit(d.X[:, :1], d.y)),
    "warm diverging": ({"warm_start": True, "learning_rate": 1e20}, lambda e, d: e.fit(d.X, d.y)),
    "partial wrong n_features": ({}, lambda e, d: e.partial_fit(d.X[:, :1], d.y)),
    "partial unknown label": ({}, lambda e, d: e.partial_fit(d.X, _new_label(d.y))),
    "partial other classes": ({}, lambda e, d: e.partial_fit(d.X, d.y, classes=[0, 1, 2, 3])),
    "partial NaN": ({}, lambda e, d: e.partial_fit(_with_nan(d.X), d.y)),
    "partial negative weight": (
        {},
        lambda e, d: e.partial_fit(d.X, d.y, sample_weight=_negative(len(d.y))),
    ),
    "partial diverging": ({"learning_rate": 1e20}, lambda e, d: e.partial_fit(d.X, d.y)),
    "partial early_stopping": ({"early_stopping": True}, lambda e, d: e.partial_fit(d.X, d.y)),
    "partial float32 overflow": ({}, lambda e, d: e.partial_fit(d.X * 1e39, d.y)),
    "partial one-row y mismatch": ({}, lambda e, d: e.partial_fit(d.X, d.y[:1])),
    "fit bad alpha": ({"alpha": -1.0}, lambda e, d: e.fit(d.X, d.y)),
    "partial Ctrl-C": ({}, lambda e, d: _interrupted(e.partial_fit, d)),
    "fit fails after publishing": ({}, lambda e, d: _failing_summary(e.fit, d)),
    "warm fit fails after publishing": (
        {"warm_start": True},
        lambda e, d: _failing_summary(e.fit, d),
    ),
    "partial fails after publishing": ({}, lambda e, d: _failing_summary(e.partial_fit, d)),
}


def _interrupted(method: Callable[..., Any], d: Data) -> None:
    """Ctrl-C in the middle of the training epoch."""
    with mock.patch("sklip._training._run_epoch", side_effect=KeyboardInterrupt):
        method(d.X, d.y)


def _failing_summary(method: Callable[..., Any], d: Data) -> None:
    """An error in what follows training (the network is already published)."""
    with (
        mock.patch("sklip.classifier.fit_temperature", side_effect=RuntimeError("injected")),
        mock.patch(
            "sklip.wasserstein.certified_lower_bound", side_effect=RuntimeError("injected")
        ),
    ):
        method(d.X, d.y)


def observable(estimator: Any, X: np.ndarray) -> dict[str, Any]:
    seen = {"predict": estimator.predict(X), "decision": estimator.decision_function(X)}
    if hasattr(estimator, "certified_radius"):
        seen["radius"] = estimator.certified_radius(X)
    return seen


@bounded(2)
@given(
    name=st.sampled_from(["binary", "3-class", "wasserstein"]),
    calls=st.lists(st.sampled_from(sorted(BAD_CALLS)), min_size=1, max_size=3),
)
def test_a_call_that_raises_leaves_the_estimator_whole(stateful, name, calls):
    fitted, data = stateful[name]
    estimator = copy.deepcopy(fitted)
    pristine = copy.deepcopy(fitted)
    params = estimator.get_params(deep=False)
    probe = np.concatenate([data.X, 3.0 * data.X[:5]])
    for call in calls:
        changes, method = BAD_CALLS[call]
        before_state = copy.deepcopy(fitted_state(estimator))
        before_seen = observable(estimator, probe)
        try:
            method(estimator.set_params(**changes), data)
        except (ValueError, TypeError, RuntimeError, KeyboardInterrupt) as error:
            note(f"{call}: {type(error).__name__}: {error}")
        else:
            # It did not raise (e.g. a learning rate that did not diverge): a
            # legitimate fit, whose state becomes the new reference.
            note(f"{call}: did not raise")
            estimator.set_params(**params)
            pristine = copy.deepcopy(estimator)
            continue
        estimator.set_params(**params)
        found = differences(before_state, fitted_state(estimator), "estimator")
        found += differences(before_seen, observable(estimator, probe), "outputs")
        assert not found, f"after {call!r} raised: " + "; ".join(found[:8])
    # Nothing hidden changed either: a later partial_fit does what it does on a
    # copy that never saw the failed calls.
    estimator.partial_fit(data.X, data.y)
    pristine.partial_fit(data.X, data.y)
    found = differences(fitted_state(pristine), fitted_state(estimator), "after partial_fit")
    assert not found, "; ".join(found[:8])


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_pickling_leaves_the_estimator_untouched(stateful, how):
    """Pickling (joblib, dask, deepcopy) reads the estimator: it must not change it."""
    for fitted, data in stateful.values():
        estimator = _fresh(fitted, max_epochs=1).fit(data.X, data.y)
        before = dict(vars(estimator))
        if how == "pickle":
            pickle.dumps(estimator)
        else:
            copy.deepcopy(estimator)
        after = vars(estimator)
        assert after.keys() == before.keys(), f"{how} added {sorted(after.keys() - before)}"
        replaced = [key for key in before if after[key] is not before[key]]
        assert not replaced, f"{how} replaced the live estimator's {replaced}"


# ================================================== 4. user arrays untouched
def _fresh(estimator: Any, **params: Any) -> Any:
    return copy.deepcopy(estimator).set_params(**params)


PUBLIC_CALLS: dict[str, Callable[[dict[str, Any], dict[str, np.ndarray]], Any]] = {
    "fit": lambda m, a: _fresh(m["clf"], max_epochs=1).fit(a["X"], a["y"], sample_weight=a["w"]),
    "partial_fit": lambda m, a: _fresh(m["clf"]).partial_fit(a["X"], a["y"], sample_weight=a["w"]),
    "warm fit": lambda m, a: _fresh(m["clf"], max_epochs=1, warm_start=True).fit(
        a["X"], a["y"], sample_weight=a["w"]
    ),
    "predict": lambda m, a: m["clf"].predict(a["X"]),
    "predict_proba": lambda m, a: m["clf"].predict_proba(a["X"]),
    "decision_function": lambda m, a: m["clf"].decision_function(a["X"]),
    "certified_radius": lambda m, a: m["clf"].certified_radius(a["X"]),
    "score": lambda m, a: m["clf"].score(a["X"], a["y"], sample_weight=a["w"]),
    "pgd_attack": lambda m, a: pgd_attack(
        m["clf"], a["X"], a["y"], a["eps"], steps=3, restarts=1, random_state=0
    ),
    "pgd_attack y=None": lambda m, a: pgd_attack(m["clf"], a["X"], None, a["eps"], steps=2),
    "counterfactual": lambda m, a: counterfactual(
        m["clf"], a["X"], max_iter=3, return_tightness=True
    ),
    "certified_accuracy": lambda m, a: certified_accuracy(m["clf"], a["X"], a["y"], a["eps"][:3]),
    "wasserstein fit": lambda m, a: _fresh(m["w1"], max_epochs=1).fit(
        a["X"], a["y"] % 2, sample_weight=a["w"]
    ),
    "wasserstein score": lambda m, a: m["w1"].score(a["X"], a["y"] % 2, sample_weight=a["w"]),
    "wasserstein_distance": lambda m, a: wasserstein_distance(
        a["X"], a["X_q"], a["w"], a["w_q"], max_epochs=1, hidden_layer_sizes=(4,), random_state=0
    ),
    "wasserstein_distance chunked": lambda m, a: wasserstein_distance(
        a["X"], a["X_q"], a["w"], a["w_q"], chunk_size=8, hidden_layer_sizes=(4,), random_state=0
    ),
}


@pytest.fixture(scope="module")
def public_models() -> dict[str, Any]:
    data = _blobs(2, 3, n=24, seed=4)
    return {
        "clf": LipschitzClassifier(hidden_layer_sizes=(4,), **SMALL).fit(data.X, data.y),
        "w1": WassersteinEstimator(hidden_layer_sizes=(4,), **SMALL).fit(data.X, data.y),
        "data": data,
    }


@st.composite
def user_array(draw: Any, values: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    """``values`` as the user might hold them: dtype, memory order, strided view, read-only."""
    kind = draw(st.sampled_from(kinds))
    array = values.astype(kind)
    layout = draw(st.sampled_from(["C", "F", "strided"]))
    if layout == "F":
        array = np.asfortranarray(array)
    elif layout == "strided":
        wide = np.zeros((array.shape[0] * 2, *array.shape[1:]), dtype=array.dtype)
        wide[::2] = array
        array = wide[::2]
    if draw(st.booleans()):
        array.setflags(write=False)
    return array


@bounded(2)
@given(call=st.sampled_from(sorted(PUBLIC_CALLS)), data=st.data())
def test_public_calls_never_modify_user_arrays(public_models, call, data):
    d = public_models["data"]
    rng = np.random.default_rng(0)
    n = len(d.y)
    arrays = {
        "X": data.draw(user_array(np.round(d.X, 1), ("float64", "float32", "int64")), "X"),
        "y": data.draw(user_array(d.y, ("int64", "int32")), "y"),
        "w": data.draw(user_array(rng.uniform(0.5, 2.0, n), ("float64", "float32")), "w"),
        "eps": data.draw(user_array(rng.uniform(0.0, 0.5, n), ("float64",)), "eps"),
        "X_q": data.draw(user_array(d.X[::-1] + 1.0, ("float64", "float32")), "X_q"),
        "w_q": data.draw(user_array(rng.uniform(0.5, 2.0, n), ("float64",)), "w_q"),
    }
    if call.startswith("wasserstein_distance"):
        arrays["w"] = arrays["w"].copy()  # the same length as X, whatever the layout
    snapshots = {
        name: (a.copy(), a.flags.writeable, None if a.base is None else a.base.copy())
        for name, a in arrays.items()
    }
    PUBLIC_CALLS[call](public_models, arrays)
    for name, a in arrays.items():
        copy_, writeable, base = snapshots[name]
        assert a.dtype == copy_.dtype and a.tobytes() == copy_.tobytes(), f"{call} modified {name}"
        assert a.flags.writeable == writeable, f"{call} changed {name}.flags.writeable"
        if base is not None:
            assert a.base.tobytes() == base.tobytes(), f"{call} modified the array under {name}"


@pytest.mark.parametrize("call", sorted(PUBLIC_CALLS))
def test_read_only_inputs_are_not_handed_to_torch(public_models, call):
    """A read-only X works without torch's "not writable ... undefined behavior" warning.

    The warning means torch wraps the user's own (read-only) memory in a tensor
    that sklip's code could write to; ``torch.tensor`` (a copy) avoids both.
    """
    d = public_models["data"]
    n = len(d.y)
    arrays = {
        "X": d.X.copy(),
        "y": d.y.copy(),
        "w": np.ones(n),
        "eps": np.full(n, 0.1),
        "X_q": d.X[::-1] + 1.0,
        "w_q": np.ones(n),
    }
    for array in arrays.values():
        array.setflags(write=False)
    warn_always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)  # the warning is otherwise shown once per process
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            PUBLIC_CALLS[call](public_models, arrays)
    finally:
        torch.set_warn_always(warn_always)
    aliasing = [str(w.message) for w in caught if "not writable" in str(w.message)]
    assert not aliasing, f"{call} handed a read-only user array to torch: {aliasing[0][:100]}"


# ============================================ 5. errors name their argument
def _poke(X: np.ndarray, value: float, where: int) -> np.ndarray:
    X = np.array(X, dtype=np.float64)
    X.flat[where % X.size] = value
    return X


def _set(models: dict[str, Any], key: str, **params: Any) -> Any:
    return _fresh(models[key], max_epochs=1, **params)


NOT_FINITE = st.sampled_from([np.nan, np.inf, -np.inf])
NEGATIVE = st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False)
NOT_A_NUMBER = st.sampled_from(["1", [1.0, 2.0], None, np.ones(2)])


X_KINDS = ("1-D", "features", "non-finite", "empty", "strings", "3-D", "long double", "ints")
FRESH_X_KINDS = tuple(kind for kind in X_KINDS if kind != "features")  # a new fit may change it


@st.composite
def bad_X(draw: Any, kinds: tuple[str, ...] = X_KINDS, n_features: int = 3, n: int = 24) -> Any:
    """An X the models must refuse: shape, values or type."""
    base = np.random.default_rng(draw(st.integers(0, 9))).standard_normal((n, n_features))
    kind = draw(st.sampled_from(kinds))
    if kind == "1-D":
        return base[:, 0]
    if kind == "features":
        return (
            base[:, : draw(st.sampled_from([1, 2]))]
            if draw(st.booleans())
            else np.hstack([base, base[:, :1]])
        )
    if kind == "non-finite":
        return _poke(base, draw(NOT_FINITE), draw(st.integers(0, base.size - 1)))
    if kind == "empty":
        return base[:0]
    if kind == "strings":
        return base.astype(str).astype(object) + "x"
    if kind == "3-D":
        return base[:, :, None]
    if kind == "long double":
        return base.astype(np.longdouble)
    return (base * 2.0**60).astype(np.int64)


Y_KINDS = ("continuous", "short", "one class", "2-D", "NaN")
CHUNK_Y_KINDS = tuple(kind for kind in Y_KINDS if kind != "one class")  # a chunk may hold one


@st.composite
def bad_y(draw: Any, kinds: tuple[str, ...] = Y_KINDS, n: int = 24) -> Any:
    kind = draw(st.sampled_from(kinds))
    y = np.arange(n) % 2
    if kind == "continuous":
        return y + draw(st.floats(0.01, 0.49))
    if kind == "short":
        return y[: draw(st.integers(0, n - 1))]
    if kind == "one class":
        return np.zeros(n, dtype=int)
    if kind == "2-D":
        return np.stack([y, y], axis=1)
    return _poke(y, np.nan, draw(st.integers(0, n - 1)))


@st.composite
def bad_weights(draw: Any, n: int = 24) -> Any:
    kind = draw(st.sampled_from(["negative", "length", "non-finite", "zero", "2-D"]))
    w = np.ones(n)
    if kind == "negative":
        return _poke(w, draw(NEGATIVE), draw(st.integers(0, n - 1)))
    if kind == "length":
        return w[: draw(st.integers(1, n - 1))]
    if kind == "non-finite":
        return _poke(w, draw(NOT_FINITE), draw(st.integers(0, n - 1)))
    if kind == "zero":
        return np.zeros(n)
    return np.ones((n, 2))


BAD_PARAM_COUNTS = st.one_of(st.integers(max_value=0), st.sampled_from([1.5, "3", None]))
BAD_COUNTS = st.one_of(BAD_PARAM_COUNTS, st.sampled_from([True, 2.0, np.float64(4.0)]))
BAD_AMOUNTS = st.one_of(NEGATIVE, NOT_FINITE, st.sampled_from(["big", [1.0, 2.0]]))
BAD_REALS = st.one_of(BAD_AMOUNTS, st.sampled_from([None, True]))


@dataclass(frozen=True)
class BadInput:
    """A call that must fail with a ValueError or TypeError naming ``argument``."""

    label: str
    argument: str
    values: Any  # strategy of bad values
    call: Callable[[dict[str, Any], Any], Any]


def _X(m: dict[str, Any]) -> np.ndarray:
    return m["data"].X


def _y(m: dict[str, Any]) -> np.ndarray:
    return m["data"].y


BAD_INPUTS = [
    # X, everywhere a fitted model reads it
    BadInput("predict", "X", bad_X(), lambda m, v: m["clf"].predict(v)),
    BadInput("decision_function", "X", bad_X(), lambda m, v: m["clf"].decision_function(v)),
    BadInput("certified_radius", "X", bad_X(), lambda m, v: m["clf"].certified_radius(v)),
    BadInput("predict_proba", "X", bad_X(), lambda m, v: m["clf"].predict_proba(v)),
    BadInput("score X", "X", bad_X(), lambda m, v: m["clf"].score(v, _y(m))),
    BadInput("pgd_attack X", "X", bad_X(), lambda m, v: pgd_attack(m["clf"], v, None, 0.1)),
    BadInput("counterfactual X", "X", bad_X(), lambda m, v: counterfactual(m["clf"], v)),
    BadInput("fit X", "X", bad_X(FRESH_X_KINDS), lambda m, v: _set(m, "clf").fit(v, _y(m))),
    BadInput("partial_fit X", "X", bad_X(), lambda m, v: _set(m, "clf").partial_fit(v, _y(m))),
    BadInput(
        "wasserstein fit X", "X", bad_X(FRESH_X_KINDS), lambda m, v: _set(m, "w1").fit(v, _y(m))
    ),
    BadInput("wasserstein score X", "X", bad_X(), lambda m, v: m["w1"].score(v, _y(m))),
    BadInput(
        "wasserstein_distance X_p",
        "X_p",
        bad_X(FRESH_X_KINDS),
        lambda m, v: wasserstein_distance(v, np.asarray(v)[::-1], max_epochs=1),
    ),
    BadInput(
        "wasserstein_distance X_q",
        "X_q",
        bad_X(FRESH_X_KINDS),
        lambda m, v: wasserstein_distance(
            _X(m)[:, : np.ndim(v) and np.shape(v)[-1]], v, max_epochs=1
        ),
    ),
    # y
    BadInput("fit y", "y", bad_y(), lambda m, v: _set(m, "clf").fit(_X(m), v)),
    BadInput(
        "partial_fit y",
        "y",
        bad_y(CHUNK_Y_KINDS),
        lambda m, v: _set(m, "clf").partial_fit(_X(m), v),
    ),
    BadInput("wasserstein fit y", "y", bad_y(), lambda m, v: _set(m, "w1").fit(_X(m), v)),
    BadInput("score y", "y", bad_y(CHUNK_Y_KINDS), lambda m, v: m["clf"].score(_X(m), v)),
    BadInput(
        "pgd_attack y",
        "y",
        bad_y(CHUNK_Y_KINDS),
        lambda m, v: pgd_attack(m["clf"], _X(m), v, 0.1),
    ),
    BadInput(
        "certified_accuracy y",
        "y",
        bad_y(CHUNK_Y_KINDS),
        lambda m, v: certified_accuracy(m["clf"], _X(m), v, 0.1),
    ),
    # sample weights
    BadInput(
        "fit sample_weight",
        "sample_weight",
        bad_weights(),
        lambda m, v: _set(m, "clf").fit(_X(m), _y(m), sample_weight=v),
    ),
    BadInput(
        "partial_fit sample_weight",
        "sample_weight",
        bad_weights(),
        lambda m, v: _set(m, "clf").partial_fit(_X(m), _y(m), sample_weight=v),
    ),
    BadInput(
        "wasserstein score sample_weight",
        "sample_weight",
        bad_weights(),
        lambda m, v: m["w1"].score(_X(m), _y(m), sample_weight=v),
    ),
    BadInput(
        "wasserstein_distance sample_weight_p",
        "sample_weight_p",
        bad_weights(),
        lambda m, v: wasserstein_distance(_X(m), _X(m) + 1, v, max_epochs=1),
    ),
    # classes
    BadInput(
        "partial_fit classes",
        "classes",
        st.sampled_from([None, [0], [1, 2], ["a", "b"]]),
        lambda m, v: LipschitzClassifier(max_epochs=1).partial_fit(_X(m), _y(m), classes=v),
    ),
    BadInput(
        "partial_fit classes, fitted",
        "classes",
        st.sampled_from([[0], [0, 1, 2], [1, 2]]),
        lambda m, v: _set(m, "clf").partial_fit(_X(m), _y(m), classes=v),
    ),
    # the attacks' settings
    BadInput(
        "pgd_attack eps",
        "eps",
        st.one_of(BAD_AMOUNTS, st.just(np.ones(5)), st.just("a")),
        lambda m, v: pgd_attack(m["clf"], _X(m), None, v),
    ),
    BadInput(
        "pgd_attack steps",
        "steps",
        BAD_COUNTS,
        lambda m, v: pgd_attack(m["clf"], _X(m), None, 0.1, steps=v),
    ),
    BadInput(
        "pgd_attack restarts",
        "restarts",
        st.one_of(st.integers(max_value=-1), BAD_COUNTS.filter(lambda v: v != 0)),
        lambda m, v: pgd_attack(m["clf"], _X(m), None, 0.1, restarts=v),
    ),
    BadInput(
        "pgd_attack step_size",
        "step_size",
        st.one_of(BAD_AMOUNTS, st.just(0.0)),
        lambda m, v: pgd_attack(m["clf"], _X(m), None, 0.1, step_size=v),
    ),
    BadInput(
        "pgd_attack random_state",
        "random_state",
        st.sampled_from(["seed", 1.5, -1]),
        lambda m, v: pgd_attack(m["clf"], _X(m), None, 0.1, random_state=v),
    ),
    BadInput(
        "counterfactual max_iter",
        "max_iter",
        BAD_COUNTS,
        lambda m, v: counterfactual(m["clf"], _X(m), max_iter=v),
    ),
    BadInput(
        "counterfactual overshoot",
        "overshoot",
        BAD_REALS,
        lambda m, v: counterfactual(m["clf"], _X(m), overshoot=v),
    ),
    BadInput(
        "certified_accuracy eps",
        "eps",
        st.one_of(NEGATIVE, NOT_FINITE, st.just("big")),
        lambda m, v: certified_accuracy(m["clf"], _X(m), _y(m), v),
    ),
    BadInput(
        "wasserstein_distance chunk_size",
        "chunk_size",
        st.one_of(st.integers(max_value=1), st.sampled_from([2.5, "8"])),
        lambda m, v: wasserstein_distance(_X(m), _X(m) + 1, chunk_size=v),
    ),
    # estimator parameters, read by fit
    BadInput(
        "hidden_layer_sizes",
        "hidden_layer_sizes",
        st.sampled_from([(3,), (4, 5), 0, (0,), (-2,), "8", (2.5,), ()]).filter(bool),
        lambda m, v: _set(m, "clf", hidden_layer_sizes=v).fit(_X(m), _y(m)),
    ),
    BadInput(
        "activation",
        "activation",
        st.sampled_from(["tanh", "", None, "GroupSort"]),
        lambda m, v: _set(m, "clf", activation=v).fit(_X(m), _y(m)),
    ),
    BadInput(
        "device",
        "device",
        st.sampled_from(["cuda:7", "tpu", "gpu", 3, "cuda:-1"]),
        lambda m, v: _set(m, "clf", device=v).fit(_X(m), _y(m)),
    ),
    BadInput(
        "image_shape",
        "image_shape",
        st.sampled_from([(1, 5, 5), (2, 2), (1, 0, 3), (-1, -1, 3), (1, 3, 1.5), "1x3"]),
        lambda m, v: _set(m, "clf", image_shape=v).fit(_X(m), _y(m)),
    ),
    BadInput(
        "conv_channels",
        "conv_channels",
        st.sampled_from([(3,), (0,), (2, -2)]),
        lambda m, v: _set(m, "clf", image_shape=(1, 3, 1), conv_channels=v).fit(_X(m), _y(m)),
    ),
    BadInput(
        "learning_rate",
        "learning_rate",
        st.one_of(NEGATIVE, st.just(0.0), NOT_FINITE),
        lambda m, v: _set(m, "clf", learning_rate=v).fit(_X(m), _y(m)),
    ),
    BadInput(
        "alpha",
        "alpha",
        st.one_of(NEGATIVE, NOT_FINITE),
        lambda m, v: _set(m, "clf", alpha=v).fit(_X(m), _y(m)),
    ),
    BadInput(
        "margin",
        "margin",
        st.one_of(NEGATIVE, st.just(0.0), NOT_FINITE),
        lambda m, v: _set(m, "clf", margin=v).fit(_X(m), _y(m)),
    ),
    BadInput(
        "batch_size",
        "batch_size",
        BAD_PARAM_COUNTS,
        lambda m, v: _set(m, "clf", batch_size=v).fit(_X(m), _y(m)),
    ),
    BadInput(
        "validation_fraction",
        "validation_fraction",
        st.sampled_from([0.0, 1.0, 1.5, -0.1, 0.001]),
        lambda m, v: _set(m, "clf", early_stopping=True, validation_fraction=v).fit(_X(m), _y(m)),
    ),
    # sklip.nn
    BadInput(
        "lipschitz_mlp n_inputs", "n_inputs", BAD_COUNTS, lambda m, v: lipschitz_mlp(v, (4,), 1)
    ),
    BadInput(
        "lipschitz_mlp n_outputs", "n_outputs", BAD_COUNTS, lambda m, v: lipschitz_mlp(2, (4,), v)
    ),
    BadInput(
        "lipschitz_cnn image_shape",
        "image_shape",
        st.sampled_from([(0, 2, 2), (2, 2), "img", (1, 2, 2.0)]),
        lambda m, v: lipschitz_cnn(v, (2,), (4,), 1),
    ),
    BadInput(
        "FrozenNetwork n_features",
        "n_features",
        st.sampled_from([0, 2, 5, -1, 2.5]),
        lambda m, v: FrozenNetwork(lipschitz_mlp(3, (4,), 1), v),
    ),
    BadInput(
        "radius_from_outputs lipschitz_constant",
        "lipschitz_constant",
        st.one_of(NEGATIVE, st.just(0.0), NOT_FINITE, NOT_A_NUMBER),
        lambda m, v: radius_from_outputs(np.ones((2, 1)), v),
    ),
    BadInput(
        "radius_from_outputs error",
        "error",
        st.sampled_from([np.array([-1.0, 0.0]), np.ones(3), np.ones((2, 1))]),
        lambda m, v: radius_from_outputs(np.ones((2, 1)), 1.0, error=v),
    ),
    BadInput(
        "radius_from_outputs error_growth",
        "error_growth",
        st.one_of(NEGATIVE, NOT_FINITE, NOT_A_NUMBER),
        lambda m, v: radius_from_outputs(np.ones((2, 1)), 1.0, error_growth=v),
    ),
    BadInput(
        "make_certified_scorer eps",
        "eps",
        st.one_of(NEGATIVE, NOT_FINITE, NOT_A_NUMBER),
        lambda m, v: make_certified_scorer(v),
    ),
    BadInput(
        "make_lipschitz_capped_scorer max_lipschitz",
        "max_lipschitz",
        st.one_of(NEGATIVE, st.just(0.0), NOT_FINITE, NOT_A_NUMBER),
        lambda m, v: make_lipschitz_capped_scorer(v),
    ),
    BadInput(
        "certified_accuracy_curve radius",
        "radius",
        st.sampled_from([np.ones(1), np.ones((3, 1)), np.array([1.0, np.nan, 0.0])]),
        lambda m, v: certified_accuracy_curve(np.ones(3, bool), v, np.array([0.1])),
    ),
    BadInput(
        "radius_from_outputs pairwise",
        "pairwise",
        st.sampled_from([None, np.ones((2, 2)), -np.ones((3, 3)), np.full((3, 3), np.nan)]),
        lambda m, v: radius_from_outputs(np.ones((2, 3)), 1.0, v),
    ),
    BadInput(
        "radius_from_outputs outputs",
        "outputs",
        st.sampled_from([np.ones(3), np.ones((2, 0)), np.ones((2, 1, 1))]),
        lambda m, v: radius_from_outputs(v, 1.0),
    ),
]


def names(message: str, argument: str) -> bool:
    """Whether ``argument`` appears in ``message`` as a word (not inside another name)."""
    return (
        re.search(rf"(?<![A-Za-z0-9_]){re.escape(argument)}(?![A-Za-z0-9_])", message) is not None
    )


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=lambda bad: bad.label)
@bounded(0.3)
@given(data=st.data())
def test_errors_name_the_offending_argument(public_models, bad, data):
    value = data.draw(bad.values, label=bad.argument)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            bad.call(public_models, value)
        except (ValueError, TypeError) as error:
            kind, message = type(error).__name__, str(error)
        else:
            pytest.fail(f"{bad.label}: {bad.argument}={value!r} was accepted")
    assert names(message, bad.argument), (
        f"{bad.label}: {bad.argument}={value!r} raised {kind}: {message[:300]!r}"
    )
