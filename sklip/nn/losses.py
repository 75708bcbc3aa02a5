r"""Losses of the hinge-Kantorovich-Rubinstein (HKR) family.

Notation (Serrurier et al., CVPR 2021): ``y`` in {-1, +1}, ``w`` the sample
weights, means are weighted, and each class-conditional mean is taken within
its class:

* KR:    :math:`\mathrm{KR}(f) = E_w[f \mid y=+1] - E_w[f \mid y=-1]`
* hinge: :math:`H(f) = E_w[(m - y f)_+]`
* HKR:   :math:`L(f) = -\mathrm{KR}(f) + \alpha H(f)`

Over 1-Lipschitz ``f``, the maximum of KR is the Wasserstein-1 distance between
the two classes (Kantorovich-Rubinstein duality); the hinge pushes every point
at least ``m`` away from the decision boundary.

Mini-batches. By default the means divide by the batch's own per-class weight
totals. A batch that happens to hold few points of a class then weighs them
too much, which biases the gradient. Passing ``class_weight_sums``, the
per-class totals of the *whole* training set scaled by the batch's share of
it, makes every batch an unbiased estimate of the full-data loss.

Users of deel-lip / deel-torchlip: their ``min_margin`` is the full gap between
the classes, ours is the distance from the boundary, so ``margin = min_margin /
2``; deel-torchlip's convex weight ``a`` (``a H - (1 - a) KR``) has the same
minimiser as ours with ``alpha = a / (1 - a)``, i.e. ``a = alpha / (1 + alpha)``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "hinge_margin_loss",
    "hkr_loss",
    "hkr_terms",
    "kr_loss",
    "multiclass_hinge_loss",
    "multiclass_hkr_loss",
    "multiclass_hkr_terms",
    "multiclass_kr_loss",
]


def kr_loss(
    y_pred: Tensor,
    y_true: Tensor,
    sample_weight: Tensor | None = None,
    class_weight_sums: Tensor | None = None,
) -> Tensor:
    r"""Kantorovich-Rubinstein term :math:`E_w[f \mid y=+1] - E_w[f \mid y=-1]`.

    .. math::
        \mathrm{KR} = \frac{\sum_{y_i=+1} w_i f_i}{S_+} - \frac{\sum_{y_i=-1} w_i f_i}{S_-}

    with :math:`S_\pm` the per-class weight totals of the batch, or
    ``class_weight_sums = (S_-, S_+)`` when given.

    Parameters
    ----------
    y_pred : Tensor of shape (n,) or (n, 1)
        Scores ``f(x)``.
    y_true : Tensor of shape (n,)
        Labels in {-1, +1}.
    sample_weight : Tensor of shape (n,), optional
    class_weight_sums : Tensor of shape (2,), optional
        Totals ``(S_-, S_+)``; see the module docstring for mini-batches.

    Returns
    -------
    Tensor
        The KR value (a scalar). It is a *gain*: HKR subtracts it.

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import kr_loss
    >>> kr_loss(torch.tensor([2.0, 1.0, -1.0, 0.0]), torch.tensor([1.0, 1.0, -1.0, -1.0]))
    tensor(2.)
    """
    return hkr_terms(y_pred, y_true, 1.0, sample_weight, class_weight_sums)[0]


def hinge_margin_loss(
    y_pred: Tensor,
    y_true: Tensor,
    margin: float = 1.0,
    sample_weight: Tensor | None = None,
    class_weight_sums: Tensor | None = None,
) -> Tensor:
    r"""Margin hinge :math:`E_w[(m - y f)_+] = \sum_i w_i (m - y_i f_i)_+ / S`.

    ``S`` is the batch's weight total, or ``class_weight_sums.sum()`` when given.

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import hinge_margin_loss
    >>> y_pred = torch.tensor([2.0, 0.5, -1.0, 0.5])
    >>> hinge_margin_loss(y_pred, torch.tensor([1.0, 1.0, -1.0, -1.0]), margin=1.0)
    tensor(0.5000)
    """
    return hkr_terms(y_pred, y_true, margin, sample_weight, class_weight_sums)[1]


def hkr_loss(
    y_pred: Tensor,
    y_true: Tensor,
    alpha: float = 10.0,
    margin: float = 1.0,
    sample_weight: Tensor | None = None,
    class_weight_sums: Tensor | None = None,
) -> Tensor:
    r"""Binary HKR loss :math:`-\mathrm{KR}(f) + \alpha\, H(f)` (``alpha`` is the paper's λ).

    With ``alpha = 0`` it is ``-kr_loss``: maximising KR over 1-Lipschitz ``f``
    estimates the Wasserstein-1 distance between the classes.

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import hkr_loss
    >>> y_pred = torch.tensor([2.0, 0.5, -1.0, 0.5])
    >>> hkr_loss(y_pred, torch.tensor([1.0, 1.0, -1.0, -1.0]), alpha=2.0, margin=1.0)
    tensor(-0.5000)
    """
    kr, hinge = hkr_terms(y_pred, y_true, margin, sample_weight, class_weight_sums)
    return alpha * hinge - kr


def hkr_terms(
    y_pred: Tensor,
    y_true: Tensor,
    margin: float = 1.0,
    sample_weight: Tensor | None = None,
    class_weight_sums: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Both terms of the binary HKR loss, ``(KR, hinge)``, from one pass over the batch.

    The formulas of :func:`kr_loss` and :func:`hinge_margin_loss` live here
    once; a training loop that reports both terms calls this instead of each.
    """
    f, y, w = _binary_inputs(y_pred, y_true, sample_weight)
    positive = (y > 0).to(f.dtype)
    sums = _binary_class_sums(w, positive, class_weight_sums)
    weighted = w * f
    kr = (weighted * positive).sum() / sums[1] - (weighted * (1 - positive)).sum() / sums[0]
    hinge = (w * F.relu(margin - y * f)).sum() / sums.sum()
    return kr, hinge


def multiclass_kr_loss(
    y_pred: Tensor,
    y_true: Tensor,
    sample_weight: Tensor | None = None,
    class_weight_sums: Tensor | None = None,
) -> Tensor:
    r"""One-vs-all KR term, averaged over the ``K`` outputs.

    .. math::
        \frac1K \sum_k \left(E_w[f_k \mid y=k] - E_w[f_k \mid y \ne k]\right)

    ``class_weight_sums`` holds the ``K`` per-class totals :math:`S_k`; the
    "rest" of class ``k`` weighs :math:`\sum_j S_j - S_k`.
    """
    return multiclass_hkr_terms(y_pred, y_true, 1.0, sample_weight, class_weight_sums)[0]


def multiclass_hinge_loss(
    y_pred: Tensor,
    y_true: Tensor,
    margin: float = 1.0,
    sample_weight: Tensor | None = None,
    class_weight_sums: Tensor | None = None,
) -> Tensor:
    r"""One-vs-all margin hinge, averaged over the ``K`` outputs.

    .. math::
        \frac1K \sum_k E_w[(m - s_{ik} f_{ik})_+], \qquad
        s_{ik} = +1 \text{ if } y_i = k \text{ else } -1
    """
    return multiclass_hkr_terms(y_pred, y_true, margin, sample_weight, class_weight_sums)[1]


def multiclass_hkr_loss(
    y_pred: Tensor,
    y_true: Tensor,
    alpha: float = 10.0,
    margin: float = 1.0,
    sample_weight: Tensor | None = None,
    class_weight_sums: Tensor | None = None,
) -> Tensor:
    r"""One-vs-all HKR over ``K`` outputs, averaged over the outputs.

    With :math:`s_{ik} = +1` if :math:`y_i = k` else :math:`-1`, output ``k``
    sees the binary problem "class k against the rest":

    .. math::
        \mathrm{KR}_k = E_w[f_k \mid y=k] - E_w[f_k \mid y \ne k], \qquad
        H_k = E_w[(m - s_{ik} f_{ik})_+]

    .. math::
        L = \frac1K \sum_k \left(-\mathrm{KR}_k + \alpha H_k\right)

    (:func:`multiclass_kr_loss` and :func:`multiclass_hinge_loss` are the two
    terms.) With ``K = 2`` and antisymmetric outputs :math:`f_0 = -f_1`, both
    one-vs-all problems equal the binary one, so the loss equals
    :func:`hkr_loss` of :math:`f_1`.

    Parameters
    ----------
    y_pred : Tensor of shape (n, K)
    y_true : Tensor of shape (n,)
        Integer class indices in ``[0, K)``.
    alpha, margin : float
    sample_weight : Tensor of shape (n,), optional
    class_weight_sums : Tensor of shape (K,), optional
        Per-class weight totals; see the module docstring for mini-batches.

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import multiclass_hkr_loss
    >>> f1 = torch.tensor([2.0, 0.5, -1.0, 0.5])
    >>> multiclass_hkr_loss(torch.stack([-f1, f1], 1), torch.tensor([1, 1, 0, 0]), alpha=2.0)
    tensor(-0.5000)
    """
    kr, hinge = multiclass_hkr_terms(y_pred, y_true, margin, sample_weight, class_weight_sums)
    return alpha * hinge - kr


def multiclass_hkr_terms(
    y_pred: Tensor,
    y_true: Tensor,
    margin: float = 1.0,
    sample_weight: Tensor | None = None,
    class_weight_sums: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Both one-vs-all terms, ``(KR, hinge)`` averaged over the outputs, in one pass.

    The formulas of :func:`multiclass_kr_loss` and :func:`multiclass_hinge_loss`
    live here once.
    """
    member, w, class_sums = _one_vs_all(y_pred, y_true, sample_weight, class_weight_sums)
    rest_sums = class_sums.sum() - class_sums
    weighted = w[:, None] * y_pred
    inside = (weighted * member).sum(0) / class_sums.clamp_min(1e-12)
    outside = (weighted * (1 - member)).sum(0) / rest_sums.clamp_min(1e-12)
    signs = 2 * member - 1
    hinge = (w[:, None] * F.relu(margin - signs * y_pred)).sum(0).mean() / class_sums.sum()
    return (inside - outside).mean(), hinge


def _one_vs_all(
    y_pred: Tensor,
    y_true: Tensor,
    sample_weight: Tensor | None,
    class_weight_sums: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Membership matrix (n, K), weights (n,) and per-class weight totals (K,)."""
    if y_pred.dim() != 2:
        raise ValueError(f"y_pred must have shape (n, K), got {tuple(y_pred.shape)}.")
    n, n_classes = y_pred.shape
    if y_true.shape != (n,):
        raise ValueError(f"y_true must have shape ({n},), got {tuple(y_true.shape)}.")
    w = _weights(sample_weight, n, y_pred)
    member = F.one_hot(y_true.long(), n_classes).to(y_pred.dtype)
    if class_weight_sums is None:
        return member, w, (w[:, None] * member).sum(0)
    return member, w, class_weight_sums.to(y_pred)


def _weights(sample_weight: Tensor | None, n: int, like: Tensor) -> Tensor:
    if sample_weight is None:
        return torch.ones(n, dtype=like.dtype, device=like.device)
    if sample_weight.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {tuple(sample_weight.shape)}.")
    return sample_weight.to(like.dtype)


def _binary_inputs(
    y_pred: Tensor, y_true: Tensor, sample_weight: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    f = y_pred.reshape(-1) if y_pred.dim() == 2 and y_pred.shape[1] == 1 else y_pred
    if f.dim() != 1:
        raise ValueError(f"y_pred must have shape (n,) or (n, 1), got {tuple(y_pred.shape)}.")
    if y_true.shape != f.shape:
        raise ValueError(f"y_true must have shape {tuple(f.shape)}, got {tuple(y_true.shape)}.")
    return f, y_true.to(f.dtype), _weights(sample_weight, f.shape[0], f)


def _binary_class_sums(w: Tensor, positive: Tensor, class_weight_sums: Tensor | None) -> Tensor:
    if class_weight_sums is not None:
        return class_weight_sums.to(w)
    sums = torch.stack(((w * (1 - positive)).sum(), (w * positive).sum()))
    # An absent class contributes a zero mean rather than 0/0.
    return sums.clamp_min(1e-12)
