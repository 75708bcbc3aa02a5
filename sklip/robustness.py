"""Attacks that try to beat the certificates.

A certificate is a claim: no perturbation smaller than ``certified_radius(x)``
changes the prediction. :func:`pgd_attack` searches for counterexamples with
projected gradient descent in L2, so tests (and sceptical users) can check the
claim empirically.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

__all__ = ["pgd_attack"]


def pgd_attack(
    estimator: Any,
    X: Any,
    eps: float | np.ndarray,
    y: Any = None,
    *,
    steps: int = 50,
    restarts: int = 3,
    step_size: float | None = None,
    random_state: Any = None,
) -> np.ndarray:
    r"""L2 projected-gradient attack on a fitted sklip classifier.

    For each point it minimises the classification margin of the target class
    ``c`` (``y`` if given, else the predicted class): :math:`\pm f(x)` for two
    classes, :math:`f_c(x) - \max_{j \ne c} f_j(x)` otherwise, over perturbations
    with :math:`\|\delta\|_2 \le \varepsilon`. Each step moves by ``step_size``
    along the normalised gradient and projects back onto the ball (Madry et al.,
    ICLR 2018). The first run starts at ``x``, the ``restarts`` others at random
    points of the ball; the perturbation with the lowest margin is kept.

    Parameters
    ----------
    estimator : fitted LipschitzClassifier
    X : array-like of shape (n_samples, n_features)
    eps : float or array-like of shape (n_samples,)
        L2 budget per point.
    y : array-like of shape (n_samples,), optional
        Labels to move away from; default: the current predictions.
    steps : int, default=50
    restarts : int, default=3
        Random restarts besides the run from ``x`` itself.
    step_size : float, optional
        Default ``2.5 * eps / steps``, so a run can cross the ball.
    random_state : int, RandomState instance or None

    Returns
    -------
    ndarray of shape (n_samples, n_features)
        The strongest perturbed points found (``X`` itself where ``eps`` is 0).
    """
    check_is_fitted(estimator, "module_")
    X = estimator._validate_X(X, reset=False)
    n = X.shape[0]
    budget = np.array(np.broadcast_to(np.asarray(eps, dtype=np.float64), (n,)))
    if not np.all(np.isfinite(budget)) or np.any(budget < 0):
        raise ValueError("eps must be finite and non-negative.")
    if y is None:
        target = estimator.predict(X)
    else:
        target = np.asarray(y)
    classes = np.searchsorted(estimator.classes_, target)
    rng = check_random_state(random_state)
    device = estimator.device_
    module = estimator.module_.eval()

    x0 = torch.as_tensor(X, device=device)
    radius = torch.as_tensor(budget, dtype=x0.dtype, device=device)[:, None]
    labels = torch.as_tensor(classes, device=device)
    step = radius * (2.5 / steps) if step_size is None else torch.full_like(radius, step_size)

    def margin(points: Tensor) -> Tensor:
        outputs = module(points)
        if outputs.shape[1] == 1:
            return outputs[:, 0] * (2.0 * labels - 1)
        own = outputs.gather(1, labels[:, None])[:, 0]
        others = outputs.scatter(1, labels[:, None], -torch.inf).amax(dim=1)
        return own - others

    with torch.no_grad():
        best_points, best_margin = x0.clone(), margin(x0)
    for restart in range(restarts + 1):
        delta = torch.zeros_like(x0) if restart == 0 else _random_in_ball(x0.shape, rng) * radius
        delta = delta.to(device=device, dtype=x0.dtype)
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
