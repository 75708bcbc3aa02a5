"""Certificates and the attacks that try to beat them.

The estimators' ``certified_radius`` is the single source of certificates; this
module carries them to where users need them:

* :func:`certified_radius` in the *raw* input space of a Pipeline whose
  preprocessing steps are linear (scalers, PCA), by bounding their Lipschitz
  constant exactly;
* :func:`certified_accuracy` and :func:`make_certified_scorer`, to report and to
  select models (``GridSearchCV(scoring=...)``) by what they prove;
* :func:`pgd_attack` and :func:`counterfactual`, which search for the smallest
  perturbations that change a prediction. No success may come in under a
  certificate; the counterfactuals also show how tight the certificates are.
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
from ._display import CertifiedAccuracyDisplay
from ._pipeline import (
    _scoring_module,
    check_inputs,
    differentiable_scores,
    spectral_norm,
    unwrap,
)

__all__ = [
    "CertifiedAccuracyDisplay",
    "certified_accuracy",
    "certified_accuracy_curve",
    "certified_radius",
    "counterfactual",
    "make_certified_scorer",
    "pgd_attack",
    "radius_from_outputs",
]


def certified_radius(estimator: Any, X: Any) -> np.ndarray:
    """Certified L2 radius of each prediction, in the input space of ``estimator``.

    For a sklip classifier this is its own ``certified_radius``. For a
    :class:`~sklearn.pipeline.Pipeline` ending with one, the radius is given in
    the pipeline's *raw* input space: the preprocessing steps must be affine
    maps ``z = x A + b`` whose Lipschitz constant ``||A||_2`` is computed
    exactly (StandardScaler, MinMaxScaler, MaxAbsScaler, PCA without whitening,
    FunctionTransformer without a function, "passthrough"), and the
    classifier's radius is divided by it: a raw perturbation ``δ`` moves the
    classifier's input by at most ``||A||_2 ||δ||``.

    Parameters
    ----------
    estimator : fitted LipschitzClassifier, or Pipeline ending with one
    X : array-like of shape (n_samples, n_features)

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklip import LipschitzClassifier
    >>> from sklip.robustness import certified_radius
    >>> X = np.random.RandomState(0).normal(size=(60, 3)) * [1.0, 10.0, 100.0]
    >>> y = (X[:, 0] > 0).astype(int)
    >>> pipe = make_pipeline(StandardScaler(), LipschitzClassifier(max_epochs=5)).fit(X, y)
    >>> inner = pipe[-1].certified_radius(pipe[0].transform(X))  # standardised units
    >>> np.allclose(certified_radius(pipe, X), inner * pipe[0].scale_.min())
    True
    """
    classifier, affine = unwrap(estimator)
    # Checked here so that every error names X; the user's X itself is passed
    # on (a DataFrame keeps its feature names for the fitted steps).
    check_inputs(estimator, X)
    if affine is None:
        return classifier.certified_radius(X)
    Z = estimator[:-1].transform(X)
    return classifier.certified_radius(Z) / spectral_norm(affine[0])


def radius_from_outputs(
    outputs: np.ndarray,
    lipschitz_constant: float,
    pairwise: np.ndarray | None = None,
    *,
    error: np.ndarray | None = None,
    error_growth: float = 0.0,
) -> np.ndarray:
    r"""Certified L2 radius of each prediction from a network's outputs and bounds.

    With exact arithmetic (``error`` None): one output, :math:`|f(x)| / L`;
    ``K`` outputs, predicted class ``c``, :math:`\min_{j \ne c} (f_c(x) -
    f_j(x)) / L_{cj}` with ``pairwise`` the ``(K, K)`` bounds of
    :func:`sklip.nn.pairwise_lipschitz_bound`.

    With the rounding of the computation that produced ``outputs`` (the
    estimators pass their frozen network's bounds, see
    :class:`sklip.nn.FrozenNetwork`): if every computed output lies within
    ``e + G r`` of the exact one, for any input within ``r`` of ``x``, with
    ``e = error(x)`` and ``G = error_growth``, then the *computed* prediction
    cannot change within

    .. math::
        r(x) = \frac{(|z(x)| - e)_+}{L + G}, \qquad
        r(x) = \min_{j \ne c} \frac{(z_c(x) - z_j(x) - \sqrt 2\, e)_+}
                                   {L_{cj} + \sqrt 2\, G}

    (a difference of two outputs is within :math:`\sqrt 2` times the error of
    the output vector). A point within rounding of the boundary gets 0, and so
    does a point whose outputs or error are not finite. The result is lowered
    by a relative ``8 u`` for the rounding of this formula itself.

    Parameters
    ----------
    outputs : ndarray of shape (n_samples, n_outputs)
    lipschitz_constant : float
        Bound of the whole network (used with one output); positive and finite.
    pairwise : ndarray of shape (n_outputs, n_outputs), optional
        Needed with several outputs; finite, non-negative.
    error : ndarray of shape (n_samples,), optional
        Bound of the rounding at ``x`` and around it (``certificate_error`` of
        :class:`sklip.nn.FrozenOutputs`); None for exact arithmetic.
    error_growth : float, default=0.0
        Growth ``G`` of the rounding bound per unit of distance.

    Returns
    -------
    ndarray of shape (n_samples,)
        Finite, non-negative radii.

    Examples
    --------
    >>> import numpy as np
    >>> from sklip.robustness import radius_from_outputs
    >>> radius_from_outputs(np.array([[2.0], [-0.5]]), lipschitz_constant=2.0)
    array([1.  , 0.25])
    >>> pairwise = np.full((3, 3), 2.0)  # bounds of f_c - f_j
    >>> radius_from_outputs(np.array([[3.0, 1.0, 0.0]]), 1.0, pairwise)  # min(2/2, 3/2)
    array([1.])
    >>> radius_from_outputs(np.array([[1e-17]]), 1.0, error=np.array([1e-16]))  # rounding
    array([0.])
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 2 or outputs.shape[1] < 1:
        raise ValueError(f"outputs must be 2-D (n_samples, n_outputs), got shape {outputs.shape}.")
    n = outputs.shape[0]
    slack = np.zeros(n) if error is None else np.asarray(error, dtype=np.float64)
    if slack.shape != (n,) or np.any(slack < 0):
        raise ValueError(f"error must be {n} non-negative values, one per row of outputs.")
    if not (np.isfinite(error_growth) and error_growth >= 0):
        raise ValueError(f"error_growth must be finite and non-negative, got {error_growth!r}.")
    if not (np.isfinite(lipschitz_constant) and lipschitz_constant > 0):
        raise ValueError(
            f"lipschitz_constant must be positive and finite, got {lipschitz_constant!r}: "
            "a zero or infinite bound certifies nothing."
        )
    with np.errstate(invalid="ignore", over="ignore"):
        if outputs.shape[1] == 1:
            radius = (np.abs(outputs[:, 0]) - slack) / (lipschitz_constant + error_growth)
        else:
            radius = _multiclass_radius(outputs, pairwise, slack, error_growth)
    radius = np.where(np.isfinite(radius) & (radius > 0), radius, 0.0)
    return radius * (1.0 - 8.0 * 2.0**-53)


def _multiclass_radius(
    outputs: np.ndarray, pairwise: Any, slack: np.ndarray, error_growth: float
) -> np.ndarray:
    """The multiclass case of :func:`radius_from_outputs` (before clipping at 0)."""
    k = outputs.shape[1]
    if pairwise is None:
        raise ValueError("pairwise bounds are needed for a network with several outputs.")
    pairwise = np.asarray(pairwise, dtype=np.float64)
    off_diagonal = ~np.eye(k, dtype=bool) if pairwise.shape == (k, k) else None
    if off_diagonal is None or not np.all(np.isfinite(pairwise)) or np.any(pairwise < 0):
        raise ValueError(f"pairwise must be a finite, non-negative ({k}, {k}) array.")
    denominators = pairwise + np.sqrt(2.0) * error_growth
    if np.any(denominators[off_diagonal] <= 0):
        raise ValueError(
            "pairwise has a zero bound off the diagonal: with exact arithmetic that pair "
            "of scores never crosses, but an infinite radius is never certified; pass the "
            "rounding bounds (error, error_growth) of the computation."
        )
    rows = np.arange(len(outputs))
    predicted = outputs.argmax(axis=1)
    gaps = outputs[rows, predicted][:, None] - outputs - np.sqrt(2.0) * slack[:, None]
    ratios = gaps / denominators[predicted]
    ratios[rows, predicted] = np.inf
    return ratios.min(axis=1)


def certified_accuracy(estimator: Any, X: Any, y: Any, eps: float | Any) -> float | np.ndarray:
    """Fraction of points correctly classified *and* certified at radius ``eps``.

    A point counts when ``predict(x) == y`` and ``certified_radius(x) >= eps``:
    no perturbation of L2 norm below ``eps`` can change its (correct) class. At
    ``eps = 0`` this is the accuracy; it never increases with ``eps``.

    Parameters
    ----------
    estimator : fitted LipschitzClassifier, or Pipeline ending with one
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        True labels, each one of the classifier's ``classes_``.
    eps : float or array-like of floats
        Radius, in the input space of ``estimator``; finite and non-negative.

    Returns
    -------
    float, or ndarray of the shape of ``eps`` (the curve)

    Raises
    ------
    ValueError
        If ``X`` does not fit the estimator, ``y`` is not 1-D of length
        n_samples or holds labels outside ``classes_``, or ``eps`` is not
        finite and non-negative.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from sklip import LipschitzClassifier
    >>> X, y = make_blobs(60, centers=[[-3.0, 0.0], [3.0, 0.0]], random_state=0)
    >>> clf = LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=20, random_state=0)
    >>> clf = clf.fit(X, y)
    >>> from sklip.robustness import certified_accuracy
    >>> certified_accuracy(clf, X, y, eps=[0.0, 100.0])  # nobody is certified at 100
    array([1., 0.])
    """
    eps_array = _as_float_array(eps, "eps")
    classifier, _ = unwrap(estimator)
    n_samples = check_inputs(estimator, X).shape[0]
    y = np.asarray(y)
    _check_labels(classifier, y, n_samples)
    correct = estimator.predict(X) == y
    curve = certified_accuracy_curve(correct, certified_radius(estimator, X), eps_array.ravel())
    return float(curve[0]) if eps_array.ndim == 0 else curve.reshape(eps_array.shape)


def certified_accuracy_curve(
    correct: np.ndarray, radius: np.ndarray, eps: np.ndarray
) -> np.ndarray:
    """Mean of ``correct & (radius >= eps)`` for each ``eps`` (1-D): the one formula.

    Examples
    --------
    >>> import numpy as np
    >>> from sklip.robustness import certified_accuracy_curve
    >>> correct = np.array([True, True, False])
    >>> certified_accuracy_curve(correct, np.array([0.5, 2.0, 3.0]), np.array([0.0, 1.0, 2.5]))
    array([0.66666667, 0.33333333, 0.        ])
    """
    if not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError("eps must be finite and non-negative.")
    return np.mean(correct[None, :] & (radius[None, :] >= eps[:, None]), axis=1)


def make_certified_scorer(eps: float) -> Callable[[Any, Any, Any], float]:
    """A scikit-learn scorer: certified accuracy at radius ``eps`` (higher is better).

    ``GridSearchCV(..., scoring=make_certified_scorer(0.5))`` then selects
    ``alpha`` and ``margin`` for provable robustness instead of clean accuracy.
    Works on Pipelines with linear preprocessing (see :func:`certified_radius`).

    Examples
    --------
    >>> from sklip.robustness import make_certified_scorer
    >>> scorer = make_certified_scorer(0.5)
    >>> scorer.eps
    0.5
    """
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be finite and non-negative, got {eps!r}.")

    def certified_accuracy_scorer(estimator: Any, X: Any, y: Any) -> float:
        return certified_accuracy(estimator, X, y, eps)

    certified_accuracy_scorer.eps = eps
    return certified_accuracy_scorer


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
    estimator : fitted LipschitzClassifier, or Pipeline ending with one
        A Pipeline is attacked in its raw input space, through its affine
        preprocessing.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or None
        The class each point keeps under attack, one of ``classes_``; None
        attacks the current predictions.
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
        _check_real(step_size, "step_size", allow_zero=False)
    rng = _random_state(random_state)
    scores, X, classifier = differentiable_scores(estimator, X)
    budget = _budget(eps, X.shape[0])
    x0 = torch.as_tensor(X, device=classifier.device_)
    if y is None:
        with torch.no_grad():
            labels = _class_scores(scores(x0)).argmax(dim=1)
    else:
        labels = torch.as_tensor(_check_labels(classifier, y, X.shape[0]), device=x0.device)
    radius = torch.as_tensor(budget, dtype=x0.dtype, device=x0.device)[:, None]
    step = radius * (2.5 / steps) if step_size is None else torch.full_like(radius, step_size)

    def margin(points: Tensor) -> Tensor:
        return _class_margin(scores(points), labels)

    best = _pgd_search(margin, x0, radius, step, steps, restarts, rng)
    return _within_budget(X, to_numpy(best), budget)


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
    two classes), each step is :math:`x \leftarrow x - (1 + \text{overshoot})\,
    g(x) \nabla g(x) / \|\nabla g(x)\|^2`: for the gradient-norm-preserving
    networks of HKR training, :math:`x - f(x) \nabla f(x)` is the projection of
    ``x`` on the boundary, and the small overshoot steps past it. Steps repeat
    until the predicted class changes (at most ``max_iter``). On HKR-trained
    networks the result is an interpretable counterfactual: one digit morphs
    into the other (Serrurier et al., CVPR 2021).

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
    estimator : fitted LipschitzClassifier, or Pipeline ending with one
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
        If ``max_iter`` is not an integer or ``overshoot`` not a number.

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
    _check_real(overshoot, "overshoot", allow_zero=True)
    classifier, affine = unwrap(estimator)
    if affine is not None and np.linalg.matrix_rank(affine[0]) == affine[0].shape[1]:
        # Walk where the network is gradient-norm preserving, then take the
        # smallest raw change that produces the same move (pseudo-inverse).
        # The map is applied here in float64: the steps' own transform would
        # keep float32 inputs in float32.
        X_raw = check_inputs(estimator, X)
        A, b = affine
        Z = X_raw @ A + b
        z0 = torch.as_tensor(Z, device=classifier.device_)
        Z_cf, reached = _walk(_scoring_module(classifier), z0, max_iter, overshoot)
        result = X_raw + (Z_cf - Z) @ np.linalg.pinv(A)
    else:
        scores, X_raw, classifier = differentiable_scores(estimator, X)
        x0 = torch.as_tensor(X_raw, device=classifier.device_)
        result, reached = _walk(scores, x0, max_iter, overshoot)
    if not return_tightness:
        return result
    return result, _tightness(certified_radius(estimator, X), X_raw, result, reached)


def _walk(
    scores: Callable[[Tensor], Tensor], x0: Tensor, max_iter: int, overshoot: float
) -> tuple[np.ndarray, np.ndarray]:
    """Counterfactual steps from ``x0``: the end points, and which crossed the boundary."""
    with torch.no_grad():
        labels = _class_scores(scores(x0)).argmax(dim=1)
    points = x0.clone()
    for _ in range(max_iter):
        points.requires_grad_(True)
        gap = _class_margin(scores(points), labels)
        (grad,) = torch.autograd.grad(gap.sum(), points)
        with torch.no_grad():
            active = gap > 0  # still on the side of the original class
            if not active.any():
                break
            scale = (1 + overshoot) * gap / grad.square().sum(dim=1).clamp_min(1e-12)
            points = torch.where(active[:, None], points - scale[:, None] * grad, points)
    points = points.detach()
    with torch.no_grad():
        reached = _class_margin(scores(points), labels) <= 0
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


def _check_labels(classifier: Any, y: Any, n_samples: int) -> np.ndarray:
    """Indices in ``classifier.classes_`` of the labels ``y``; a ValueError naming y otherwise.

    Labels outside ``classes_`` (an unseen value, strings for integer classes)
    would make an attack aim at a meaningless class and a score count
    nothing: they are refused.
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ValueError(
            f"y must be 1-D with one label per sample of X ({n_samples}), got shape {y.shape}."
        )
    classes = classifier.classes_
    try:
        known = np.isin(y, classes)
    except TypeError:  # labels that cannot even be compared with the classes
        known = np.zeros(y.shape, dtype=bool)
    if not known.all():
        unknown = list(dict.fromkeys(y[~known].tolist()))
        shown = repr(unknown[:10])[:-1] + (", ...]" if len(unknown) > 10 else "]")
        raise ValueError(
            f"y contains labels that are not among the classifier's classes_ "
            f"{classes.tolist()!r}: {shown}."
        )
    return np.searchsorted(classes, y)


# ---------------------------------------------------------------- internals
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


def _check_real(value: Any, name: str, *, allow_zero: bool) -> None:
    """A finite real number, > 0 (or >= 0 with ``allow_zero``), else an error naming it."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {kind}, got {value!r}.")


def _as_float_array(value: Any, name: str) -> np.ndarray:
    """``value`` as float64, or a ValueError naming it (not numpy's anonymous one)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        message = f"{name} must be a number or an array of numbers, got {value!r}."
        raise ValueError(message) from error


def _budget(eps: Any, n_samples: int) -> np.ndarray:
    """``eps`` as one finite, non-negative radius per sample."""
    budget = _as_float_array(eps, "eps")
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
