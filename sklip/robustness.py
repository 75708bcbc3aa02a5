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
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array
from torch import Tensor

from ._display import CertifiedAccuracyDisplay
from ._pipeline import differentiable_scores, spectral_norm, unwrap

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
    eps : float or array-like of floats
        Radius, in the input space of ``estimator``.

    Returns
    -------
    float, or ndarray of the shape of ``eps`` (the curve)

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
    eps_array = np.asarray(eps, dtype=np.float64)
    correct = estimator.predict(X) == np.asarray(y)
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

    Parameters
    ----------
    estimator : fitted LipschitzClassifier, or Pipeline ending with one
        A Pipeline is attacked in its raw input space, through its affine
        preprocessing.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or None
    eps : float or array-like of shape (n_samples,)
        L2 budget per point.
    steps : int, default=50
    restarts : int, default=3
    step_size : float, optional
        Default ``2.5 * eps / steps``, so that a run can cross the ball.
    random_state : int, RandomState instance or None

    Returns
    -------
    ndarray of shape (n_samples, n_features)
        The strongest perturbed points found (``X`` itself where ``eps`` is 0).

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
    scores, x0, classifier = differentiable_scores(estimator, X)
    n = x0.shape[0]
    budget = np.array(np.broadcast_to(np.asarray(eps, dtype=np.float64), (n,)))
    if not np.all(np.isfinite(budget)) or np.any(budget < 0):
        raise ValueError("eps must be finite and non-negative.")
    target = estimator.predict(X) if y is None else np.asarray(y)
    labels = torch.as_tensor(np.searchsorted(classifier.classes_, target), device=x0.device)
    radius = torch.as_tensor(budget, dtype=x0.dtype, device=x0.device)[:, None]
    step = radius * (2.5 / steps) if step_size is None else torch.full_like(radius, step_size)
    rng = check_random_state(random_state)

    def margin(points: Tensor) -> Tensor:
        return _class_margin(scores(points), labels)

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
    return best_points.cpu().numpy().astype(np.float64)


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

    For a Pipeline whose preprocessing is an injective affine map ``x A + b``
    (scalers, PCA), the walk is done in the classifier's input space, where the
    network preserves gradient norms, and mapped back by the pseudo-inverse of
    ``A``: the smallest raw change producing the same move. Otherwise the steps
    are taken in the raw space directly.

    Parameters
    ----------
    estimator : fitted LipschitzClassifier, or Pipeline ending with one
    X : array-like of shape (n_samples, n_features)
    max_iter : int, default=50
    overshoot : float, default=0.02
    return_tightness : bool, default=False
        Also return ``certified_radius / ||x_cf - x||`` per point: at most 1
        (the certificate is sound), close to 1 when it is tight.

    Returns
    -------
    X_cf : ndarray of shape (n_samples, n_features)
    tightness : ndarray of shape (n_samples,), if ``return_tightness``

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
    classifier, affine = unwrap(estimator)
    if affine is not None and np.linalg.matrix_rank(affine[0]) == affine[0].shape[1]:
        # Walk where the network is gradient-norm preserving, then take the
        # smallest raw change that produces the same move (pseudo-inverse).
        X_raw = check_array(X, dtype=np.float64)
        Z = estimator[:-1].transform(X_raw)
        Z_cf = counterfactual(classifier, Z, max_iter=max_iter, overshoot=overshoot)
        result = X_raw + (Z_cf - Z) @ np.linalg.pinv(affine[0])
        return (result, _tightness(estimator, X, X_raw, result)) if return_tightness else result
    scores, x0, _ = differentiable_scores(estimator, X)
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
    result = points.detach().cpu().numpy().astype(np.float64)
    if not return_tightness:
        return result
    return result, _tightness(estimator, X, x0.cpu().numpy(), result)


def _tightness(estimator: Any, X: Any, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """``certified_radius / ||end - start||``: at most 1 when the certificate is sound."""
    distance = np.linalg.norm(end - start, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return certified_radius(estimator, X) / distance


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
