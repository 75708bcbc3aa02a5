"""Attacks that try to beat the certificates: L2 PGD and counterfactual walks.

Both search, in float64 and against the frozen network that makes the
predictions, for the smallest perturbations that change a prediction. No
success may come in under a certificate; the counterfactuals also show how
tight the certificates are. Public through :mod:`sklip.robustness`.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state
from torch import Tensor

from ._device import to_numpy
from ._pipeline import (
    certified_radius,
    check_inputs,
    check_labels,
    differentiable_scores,
    scoring_module,
    unwrap,
)
from ._training import training_context

__all__ = ["counterfactual", "pgd_attack"]


@training_context()  # gradients, whatever the caller's torch.no_grad()
def pgd_attack(
    estimator: Any,
    X: Any,
    y: Any,
    eps: float | Any,
    *,
    steps: int = 50,
    restarts: int = 3,
    step_size: float | None = None,
    random_state: Any = None,
) -> np.ndarray:
    r"""L2 projected-gradient attack on a fitted sklip classifier (or its Pipeline).

    For each point it minimises the classification margin of its class ``c``
    (``y``, or the current prediction when ``y`` is None): :math:`\pm f(x)` for
    two classes, :math:`f_c(x) - \max_{j \ne c} f_j(x)` otherwise, over
    perturbations :math:`\|\delta\|_2 \le \varepsilon`. Each step moves by
    ``step_size`` along the normalised gradient and projects back onto the ball
    (Madry et al., ICLR 2018). The first run starts at ``x``, the ``restarts``
    others at random points of the ball; the lowest margin found is kept.

    The attack runs in float64, on ``X`` as given (no float32 cast) and a
    float64 copy of the network, and the budget is exact: the returned points
    satisfy ``np.linalg.norm(X_adv - X, axis=1) <= eps`` as measured in
    float64 (a point whose rounded ``x + delta`` would exceed it is pulled back
    toward ``x``).

    Parameters
    ----------
    estimator : fitted LipschitzClassifier or LipschitzOutlierDetector, or Pipeline ending with one
        A Pipeline is attacked in its raw input space, through its affine
        preprocessing.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or None
        The class each point keeps under attack, one of ``classes_`` (for a
        detector, 1 for inlier or -1 for outlier, and the attack drives
        ``±decision_function`` below 0); None attacks the current predictions.
    eps : float or array-like of shape (n_samples,)
        L2 budget per point, finite and non-negative.
    steps : int, default=50
        Gradient steps per run, at least 1.
    restarts : int, default=3
        Runs from random starts after the first one, at least 0.
    step_size : float, optional
        Length of each step, finite and positive. Default ``2.5 * eps /
        steps``, so that a run can cross the ball.
    random_state : int, RandomState instance or None

    Returns
    -------
    ndarray of shape (n_samples, n_features)
        The strongest perturbed points found, in float64 (``X`` itself, bit for
        bit, where ``eps`` is 0).

    Raises
    ------
    ValueError
        If ``X``, ``y`` or ``eps`` does not fit (shape, labels outside
        ``classes_``, non-finite values), or ``steps``, ``restarts`` or
        ``step_size`` is out of range.
    TypeError
        If ``steps`` or ``restarts`` is not an integer, or ``step_size`` not a
        number.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from sklip import LipschitzClassifier
    >>> X, y = make_blobs(60, centers=[[-3.0, 0.0], [3.0, 0.0]], random_state=0)
    >>> clf = LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=20, random_state=0)
    >>> clf = clf.fit(X, y)
    >>> from sklip.robustness import pgd_attack
    >>> radius = clf.certified_radius(X)
    >>> X_adv = pgd_attack(clf, X, y, 0.99 * radius, random_state=0)
    >>> int((clf.predict(X_adv) != clf.predict(X)).sum())  # inside the certificates
    0
    """
    _check_integer(steps, "steps", minimum=1)
    _check_integer(restarts, "restarts", minimum=0)
    if step_size is not None:
        check_real(step_size, "step_size", allow_zero=False)
    rng = _random_state(random_state)
    scores, X, classifier = differentiable_scores(estimator, X)
    budget = radius_per_row(eps, X.shape[0])
    x0 = torch.tensor(X, device=classifier.device_)
    margin = _margin_to_keep(classifier, scores, x0, y, "pgd_attack")
    radius = torch.tensor(budget, dtype=x0.dtype, device=x0.device)[:, None]
    step = radius * (2.5 / steps) if step_size is None else torch.full_like(radius, step_size)
    best = _pgd_search(margin, x0, radius, step, steps, restarts, rng)
    return _within_budget(X, to_numpy(best), budget)


def _margin_to_keep(
    classifier: Any, scores: Callable[[Tensor], Tensor], x0: Tensor, y: Any, caller: str
) -> Callable[[Tensor], Tensor]:
    """The margin an attack drives below 0: of class ``y`` (or of the current prediction).

    A classifier's class margin (:func:`_class_margin`); for an outlier
    detector (``y`` in {1, -1}, its ``predict`` convention), ``±(f - offset_)``.
    """
    if not (hasattr(classifier, "offset_") or hasattr(classifier, "classes_")):
        raise TypeError(
            f"{caller} moves decisions (classes, inlier/outlier), not a "
            f"{type(classifier).__name__}'s outputs: for a regressor, predict_interval "
            "bounds them."
        )
    if hasattr(classifier, "offset_"):
        offset = classifier.offset_
        if y is None:
            with torch.no_grad():
                signs = torch.where(scores(x0)[:, 0] - offset >= 0, 1.0, -1.0).to(x0)
        else:
            y = np.asarray(y)
            if y.shape != (x0.shape[0],) or not np.isin(y, (1, -1)).all():
                raise ValueError(
                    f"y must hold 1 (inlier) or -1 (outlier) for each of the {x0.shape[0]} "
                    "rows of X."
                )
            signs = torch.as_tensor(y, dtype=x0.dtype, device=x0.device)
        return lambda points: signs * (scores(points)[:, 0] - offset)
    if y is None:
        with torch.no_grad():
            labels = _class_scores(scores(x0)).argmax(dim=1)
    else:
        labels = torch.as_tensor(check_labels(classifier, y, x0.shape[0]), device=x0.device)
    return lambda points: _class_margin(scores(points), labels)


def _pgd_search(
    margin: Callable[[Tensor], Tensor],
    x0: Tensor,
    radius: Tensor,
    step: Tensor,
    steps: int,
    restarts: int,
    rng: np.random.RandomState,
) -> Tensor:
    """The points of lowest ``margin`` met by ``restarts + 1`` projected-gradient runs."""
    with torch.no_grad():
        best_points, best_margin = x0.clone(), margin(x0)
    for restart in range(restarts + 1):
        delta = torch.zeros_like(x0)
        if restart:
            delta = _random_in_ball(x0.shape, rng).to(x0) * radius
        for _ in range(steps):
            delta.requires_grad_(True)
            (grad,) = torch.autograd.grad(margin(x0 + delta).sum(), delta)
            with torch.no_grad():
                direction = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
                delta = _project(delta - step * direction, radius)
                current = margin(x0 + delta)
                better = current < best_margin
                best_margin = torch.where(better, current, best_margin)
                best_points[better] = (x0 + delta)[better]
    return best_points


def _within_budget(X: np.ndarray, points: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """``points`` pulled toward ``X`` until ``norm(points - X, axis=1) <= budget`` exactly.

    The search projects ``delta`` onto the ball, but ``X + delta`` rounds, so
    the move a user measures can exceed the budget (by far more than an ulp of
    ``delta`` when ``|X| >> |delta|``). Rows over budget get ``delta`` rescaled
    to fit, times a factor that shrinks each round and reaches 0 at the last
    one: at worst a row ends at ``X`` itself, which is always within budget.
    """
    points = points.copy()
    delta = points - X
    # Round k shrinks by a further 1 - 2**(k - 52): from an ulp-sized nudge up
    # to 0 at k = 52, after which every row is X and the loop ends.
    for k in range(54):
        distance = np.linalg.norm(points - X, axis=1)
        over = distance > budget
        if not over.any():
            break
        shrink = max(0.0, 1.0 - 2.0 ** (k - 52))
        delta[over] *= (np.minimum(budget[over] / distance[over], 1.0) * shrink)[:, None]
        points[over] = X[over] + delta[over]
    # Coordinates that did not move are X's own bits (x + 0.0 turns -0.0 into 0.0).
    return np.where(points == X, X, points)


@training_context()
def counterfactual(
    estimator: Any,
    X: Any,
    *,
    max_iter: int = 50,
    overshoot: float = 0.02,
    return_tightness: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    r"""Move each point across the decision boundary along the network's gradient.

    With ``g`` the margin of the predicted class over the runner-up (``±f`` for
    two classes, ``±(f - offset_)`` for an outlier detector), each step is
    :math:`x \leftarrow x - (1 + \text{overshoot})\, g(x) \nabla g(x) / \|\nabla g(x)\|^2`:
    for the gradient-norm-preserving networks of HKR training,
    :math:`x - f(x) \nabla f(x)` is the projection of ``x`` on the boundary,
    and the small overshoot steps past it. Steps repeat until the decision
    changes (at most ``max_iter``). On HKR-trained networks the result is an
    interpretable counterfactual: one digit morphs into the other (Serrurier
    et al., CVPR 2021).

    For a Pipeline whose preprocessing is an affine map ``z = x A + b`` onto
    the classifier's input space (surjective: ``A``, of shape (n_features,
    n_classifier_features), has full column rank, as for scalers and PCA), the
    walk is done in the classifier's input space, where the network preserves
    gradient norms, and mapped back by the pseudo-inverse: ``δ = Δz A⁺`` is
    the smallest raw change with ``δ A = Δz`` exactly (``A⁺ A = I`` holds
    only at full column rank). Otherwise the steps are taken in the raw space
    directly. Everything runs in float64.

    Parameters
    ----------
    estimator : fitted LipschitzClassifier or LipschitzOutlierDetector, or Pipeline ending with one
    X : array-like of shape (n_samples, n_features)
    max_iter : int, default=50
        Largest number of steps, at least 1.
    overshoot : float, default=0.02
        Relative step past the estimated boundary, finite and non-negative.
    return_tightness : bool, default=False
        Also return, per point, ``certified_radius / ||x_cf - x||``: at most 1
        (the certificate is sound), close to 1 when it is tight. It is NaN
        where no counterfactual was found (the point is still on its side of
        the boundary after ``max_iter`` steps: there is no distance to compare
        with), and 1 for a point already on the boundary (radius 0 at
        distance 0: the certificate is exact); +inf would mean a positive
        certificate at a point on the boundary, i.e. an unsound one.

    Returns
    -------
    X_cf : ndarray of shape (n_samples, n_features)
    tightness : ndarray of shape (n_samples,), if ``return_tightness``

    Raises
    ------
    ValueError
        If ``X`` does not fit the estimator, ``max_iter < 1``, or
        ``overshoot`` is negative or not finite.
    TypeError
        If ``max_iter`` is not an integer, ``overshoot`` not a number, or the
        estimator a regressor (it has no decision to move).

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from sklip import LipschitzClassifier
    >>> X, y = make_blobs(60, centers=[[-3.0, 0.0], [3.0, 0.0]], random_state=0)
    >>> clf = LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=20, random_state=0)
    >>> clf = clf.fit(X, y)
    >>> from sklip.robustness import counterfactual
    >>> moved = counterfactual(clf, X[:5])
    >>> bool((clf.predict(moved) != clf.predict(X[:5])).all())
    True
    """
    _check_integer(max_iter, "max_iter", minimum=1)
    check_real(overshoot, "overshoot", allow_zero=True)
    classifier, affine = unwrap(estimator)
    if affine is not None and np.linalg.matrix_rank(affine[0]) == affine[0].shape[1]:
        # Walk where the network is gradient-norm preserving, then take the
        # smallest raw change that produces the same move (pseudo-inverse).
        # The map is applied here in float64: the steps' own transform would
        # keep float32 inputs in float32.
        X_raw = check_inputs(estimator, X)
        A, b = affine
        Z = X_raw @ A + b
        z0 = torch.tensor(Z, device=classifier.device_)
        margin = _margin_to_keep(classifier, scoring_module(classifier), z0, None, "counterfactual")
        Z_cf, reached = _walk(margin, z0, max_iter, overshoot)
        result = X_raw + (Z_cf - Z) @ np.linalg.pinv(A)
    else:
        scores, X_raw, classifier = differentiable_scores(estimator, X)
        x0 = torch.tensor(X_raw, device=classifier.device_)
        margin = _margin_to_keep(classifier, scores, x0, None, "counterfactual")
        result, reached = _walk(margin, x0, max_iter, overshoot)
    if not return_tightness:
        return result
    return result, _tightness(certified_radius(estimator, X), X_raw, result, reached)


def _walk(
    margin: Callable[[Tensor], Tensor], x0: Tensor, max_iter: int, overshoot: float
) -> tuple[np.ndarray, np.ndarray]:
    """Counterfactual steps from ``x0``: the end points, and which crossed the boundary.

    ``margin`` is positive on the side of each point's own decision at ``x0``.
    """
    points = x0.clone()
    for _ in range(max_iter):
        points.requires_grad_(True)
        gap = margin(points)
        (grad,) = torch.autograd.grad(gap.sum(), points)
        with torch.no_grad():
            active = gap > 0  # still on the side of the original class
            if not active.any():
                break
            scale = (1 + overshoot) * gap / grad.square().sum(dim=1).clamp_min(1e-12)
            points = torch.where(active[:, None], points - scale[:, None] * grad, points)
    points = points.detach()
    with torch.no_grad():
        reached = margin(points) <= 0
    return to_numpy(points), to_numpy(reached)


def _tightness(
    radius: np.ndarray, start: np.ndarray, end: np.ndarray, reached: np.ndarray
) -> np.ndarray:
    """``radius / ||end - start||`` where the boundary was ``reached``, NaN elsewhere.

    A point that reached the boundary without moving lies on it: its distance
    to the boundary is 0, so a certificate of 0 is exact (1), and a positive
    one would be unsound (inf, never for a sound certificate).
    """
    distance = np.linalg.norm(end - start, axis=1)
    tightness = np.full(distance.shape, np.nan)
    moved = reached & (distance > 0)
    tightness[moved] = radius[moved] / distance[moved]
    on_boundary = reached & (distance == 0)
    tightness[on_boundary] = np.where(radius[on_boundary] == 0, 1.0, np.inf)
    return tightness


def _class_scores(outputs: Tensor) -> Tensor:
    if outputs.shape[1] == 1:
        return torch.cat((torch.zeros_like(outputs), outputs), dim=1)
    return outputs


def _class_margin(outputs: Tensor, labels: Tensor) -> Tensor:
    """Score of class ``labels`` minus the best other score (``±f`` for one output)."""
    if outputs.shape[1] == 1:
        return outputs[:, 0] * (2.0 * labels - 1)
    own = outputs.gather(1, labels[:, None])[:, 0]
    others = outputs.scatter(1, labels[:, None], -torch.inf).amax(dim=1)
    return own - others


def _project(delta: Tensor, radius: Tensor) -> Tensor:
    """Closest point of the L2 ball of the given radius (per row)."""
    norms = delta.norm(dim=1, keepdim=True)
    return delta * torch.clamp(radius / norms.clamp_min(1e-12), max=1.0)


def _random_in_ball(shape: tuple[int, ...], rng: np.random.RandomState) -> Tensor:
    """Uniform points in the unit L2 ball."""
    n, d = shape
    direction = rng.standard_normal((n, d))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return torch.as_tensor(direction * rng.uniform(size=(n, 1)) ** (1.0 / d))


def _check_integer(value: Any, name: str, *, minimum: int) -> None:
    """An integer (not a bool) of at least ``minimum`` (0 or 1), else an error naming it."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be a {kind} integer, got {value}.")


def check_real(value: Any, name: str, *, allow_zero: bool) -> None:
    """A finite real number, > 0 (or >= 0 with ``allow_zero``), else an error naming it."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {kind}, got {value!r}.")


def as_float_array(value: Any, name: str) -> np.ndarray:
    """``value`` as float64, or a ValueError naming it (not numpy's anonymous one)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        message = f"{name} must be a number or an array of numbers, got {value!r}."
        raise ValueError(message) from error


def radius_per_row(eps: Any, n_samples: int) -> np.ndarray:
    """``eps`` as one finite, non-negative radius per sample."""
    budget = as_float_array(eps, "eps")
    if budget.ndim == 0:
        budget = np.full(n_samples, float(budget))
    elif budget.shape != (n_samples,):
        raise ValueError(
            f"eps must be a number or an array of shape (n_samples,) = ({n_samples},), "
            f"got shape {budget.shape}."
        )
    if not np.all(np.isfinite(budget)) or np.any(budget < 0):
        raise ValueError("eps must be finite and non-negative.")
    return budget


def _random_state(random_state: Any) -> np.random.RandomState:
    """``check_random_state``, with an error that names the argument."""
    try:
        return check_random_state(random_state)
    except ValueError as error:
        raise ValueError(f"random_state: {error}") from error
