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
    "hkr_coefficients",
    "hkr_loss",
    "hkr_terms",
    "hkr_terms_from_coefficients",
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
    once (through :func:`hkr_coefficients`); a training loop that reports both
    terms calls this instead of each.

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import hkr_terms
    >>> f, y = torch.tensor([2.0, 0.5, -1.0, 0.5]), torch.tensor([1.0, 1.0, -1.0, -1.0])
    >>> [round(term.item(), 4) for term in hkr_terms(f, y, margin=1.0)]  # (1.25 + 0.25, 2 / 4)
    [1.5, 0.5]
    """
    f, y, w = _binary_inputs(y_pred, y_true, sample_weight)
    coefficients = _binary_coefficients(y, w, class_weight_sums)
    return hkr_terms_from_coefficients(f, coefficients, margin)


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

    Examples
    --------
    >>> import torch
    >>> f = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0], [-1.0, 0.0, 1.0], [3.0, -1.0, 0.0]])
    >>> y = torch.tensor([0, 1, 2, 0])
    >>> from sklip.nn import multiclass_kr_loss
    >>> round(multiclass_kr_loss(f, y).item(), 4)  # (3/2 + 17/6 + 11/6) / 3
    2.0556
    """
    return multiclass_hkr_terms(y_pred, y_true, 1.0, sample_weight, class_weight_sums)[0]


def multiclass_hinge_loss(
    y_pred: Tensor,
    y_true: Tensor,
    margin: float = 1.0,
    sample_weight: Tensor | None = None,
    class_weight_sums: Tensor | None = None,
) -> Tensor:
    r"""One-vs-all margin hinge, averaged over the ``K`` outputs, classes balanced.

    .. math::
        \frac1K \sum_k E_w[\omega_{ik} (m - s_{ik} f_{ik})_+], \qquad
        s_{ik} = +1 \text{ if } y_i = k \text{ else } -1, \qquad
        \omega_{ik} = K - 1 \text{ if } y_i = k \text{ else } 1

    Output ``k`` sees one positive point for ``K - 1`` negative ones when the
    classes are balanced: weighing each positive by ``K - 1`` gives the two
    sides of every one-vs-all hinge the same total weight, as the KR term's
    class means do (measured on 10-class digits: +0.9 point of test accuracy
    over the unweighted sum). With ``K = 2`` the weights are all 1. This is
    deel-torchlip's ``HKRMulticlassLoss`` hinge, with ``margin = min_margin / 2``.

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import multiclass_hinge_loss
    >>> f = torch.tensor([[0.5, -1.0, -1.0], [-1.5, 0.2, -1.0]])
    >>> y = torch.tensor([0, 1])
    >>> round(multiclass_hinge_loss(f, y, margin=1.0).item(), 4)  # (2 * 0.5 + 2 * 0.8) / 6
    0.4333
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
        H_k = E_w[\omega_{ik} (m - s_{ik} f_{ik})_+]

    .. math::
        L = \frac1K \sum_k \left(-\mathrm{KR}_k + \alpha H_k\right)

    where the true class's hinge weighs :math:`\omega_{ik} = K - 1` and the
    others' 1 (:func:`multiclass_kr_loss` and :func:`multiclass_hinge_loss`
    are the two terms). With ``K = 2`` and antisymmetric outputs :math:`f_0 = -f_1`, both
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
    live here once (through :func:`hkr_coefficients`).

    Examples
    --------
    >>> import torch
    >>> f = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0], [-1.0, 0.0, 1.0], [3.0, -1.0, 0.0]])
    >>> y = torch.tensor([0, 1, 2, 0])
    >>> from sklip.nn import multiclass_hkr_terms
    >>> [round(term.item(), 4) for term in multiclass_hkr_terms(f, y, margin=1.0)]
    [2.0556, 0.4167]
    """
    member, w, class_sums = _one_vs_all(y_pred, y_true, sample_weight, class_weight_sums)
    coefficients = _one_vs_all_coefficients(member, w, class_sums)
    return hkr_terms_from_coefficients(y_pred, coefficients, margin)


def hkr_coefficients(
    y_true: Tensor,
    n_outputs: int = 1,
    sample_weight: Tensor | None = None,
    class_weight_sums: Tensor | None = None,
) -> Tensor:
    r"""Per-sample coefficients that make both HKR terms plain weighted sums.

    Both terms are linear in the per-sample quantities :math:`f_{ik}` and
    :math:`(m - s_{ik} f_{ik})_+`, with coefficients that depend only on the
    labels and weights:

    .. math::
        \mathrm{KR} = \sum_{i,k} c_{ik} f_{ik}, \qquad
        H = \sum_{i,k} h_{ik} (m - s_{ik} f_{ik})_+

    * binary (``n_outputs=1``, labels :math:`y_i = \pm 1`): :math:`s_i = y_i`,
      :math:`c_i = w_i (1[y_i=+1] / S_+ - 1[y_i=-1] / S_-)`,
      :math:`h_i = w_i / (S_+ + S_-)`;
    * one-vs-all (``n_outputs=K``, labels in ``[0, K)``): :math:`s_{ik} = \pm 1`
      as :math:`y_i = k` or not, :math:`c_{ik} = w_i (1[y_i=k] / S_k -
      1[y_i \ne k] / (S - S_k)) / K`, :math:`h_{ik} = w_i \omega_{ik} / (K S)`
      with :math:`\omega_{ik} = K - 1` if :math:`y_i = k` else 1
      (:func:`multiclass_hinge_loss`),

    :math:`S_k` being the per-class weight totals (``class_weight_sums``, or
    the batch's own) and :math:`S` their sum. A training loop computes the
    table once for the whole training set, with the whole set's totals; the
    rows of a batch that holds a share ``b / n`` of it, times ``n / b``, then
    give an unbiased estimate of the full-data terms
    (:func:`hkr_terms_from_coefficients`).

    Parameters
    ----------
    y_true : Tensor of shape (n,)
        Labels in {-1, +1} (binary) or class indices (one-vs-all).
    n_outputs : int, default=1
        1 for the binary loss, ``K`` for the one-vs-all loss over ``K`` outputs.
    sample_weight : Tensor of shape (n,), optional
    class_weight_sums : Tensor of shape (2,) or (K,), optional
        ``(S_-, S_+)`` (binary) or ``(S_0, ..., S_{K-1})``.

    Returns
    -------
    Tensor of shape (n, 3 K)
        Columns ``[0, K)`` hold :math:`c_{ik}`, ``[K, 2K)`` hold
        :math:`s_{ik}` and ``[2K, 3K)`` hold :math:`h_{ik}`, so that one gather
        of rows serves a mini-batch.

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import hkr_coefficients
    >>> hkr_coefficients(torch.tensor([1.0, 1.0, -1.0]))
    tensor([[ 0.5000,  1.0000,  0.3333],
            [ 0.5000,  1.0000,  0.3333],
            [-1.0000, -1.0000,  0.3333]])
    """
    if not isinstance(n_outputs, int) or n_outputs < 1:
        raise ValueError(f"n_outputs must be a positive integer, got {n_outputs!r}.")
    if y_true.dim() != 1:
        raise ValueError(f"y_true must have shape (n,), got {tuple(y_true.shape)}.")
    dtype = y_true.dtype if y_true.is_floating_point() else torch.get_default_dtype()
    like = torch.empty(y_true.shape[0], n_outputs, dtype=dtype, device=y_true.device)
    if n_outputs == 1:
        w = _weights(sample_weight, y_true.shape[0], like)
        return _binary_coefficients(y_true.to(dtype), w, class_weight_sums)
    member, w, class_sums = _one_vs_all(like, y_true, sample_weight, class_weight_sums)
    return _one_vs_all_coefficients(member, w, class_sums)


def hkr_terms_from_coefficients(
    y_pred: Tensor, coefficients: Tensor, margin: float = 1.0
) -> tuple[Tensor, Tensor]:
    r"""``(KR, hinge)`` of outputs ``y_pred`` against rows of :func:`hkr_coefficients`.

    Parameters
    ----------
    y_pred : Tensor of shape (n, K), or (n,) when ``K = 1``
    coefficients : Tensor of shape (n, 3 K)
    margin : float, default=1.0

    Returns
    -------
    (Tensor, Tensor)
        :math:`\sum_{ik} c_{ik} f_{ik}` and
        :math:`\sum_{i,k} h_{ik} (m - s_{ik} f_{ik})_+`.

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import hkr_coefficients, hkr_terms_from_coefficients
    >>> table = hkr_coefficients(torch.tensor([1.0, 1.0, -1.0, -1.0]))
    >>> f = torch.tensor([2.0, 0.5, -1.0, 0.5])
    >>> [round(term.item(), 4) for term in hkr_terms_from_coefficients(f, table, margin=1.0)]
    [1.5, 0.5]
    """
    kr_weights, signs, hinge_weights = coefficient_columns(coefficients)
    f = y_pred.reshape(-1, signs.shape[1])
    kr = (kr_weights * f).sum()
    hinge = (hinge_weights * F.relu(margin - signs * f)).sum()
    return kr, hinge


def coefficient_columns(coefficients: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The three (n, K) blocks of a :func:`hkr_coefficients` table: ``c``, ``s``, ``h``."""
    n_outputs = coefficients.shape[1] // 3
    return coefficients.split(n_outputs, dim=1)


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


def _binary_coefficients(y: Tensor, w: Tensor, class_weight_sums: Tensor | None) -> Tensor:
    positive = (y > 0).to(w.dtype)
    if class_weight_sums is not None:
        sums = class_weight_sums.to(w)
    else:
        sums = torch.stack(((w * (1 - positive)).sum(), (w * positive).sum()))
    # An absent class (no weight: every term 0) contributes a zero mean rather
    # than 0/0; any positive total, however small, is divided by as it is.
    sums = _nonzero(sums)
    kr = w * (positive / sums[1] - (1 - positive) / sums[0])
    return torch.stack((kr, 2 * positive - 1, w / sums.sum()), dim=1)


def _nonzero(sums: Tensor) -> Tensor:
    """Weight totals with 0 (an absent class) read as 1: its terms are all 0 anyway."""
    return torch.where(sums > 0, sums, torch.ones_like(sums))


def _one_vs_all_coefficients(member: Tensor, w: Tensor, class_sums: Tensor) -> Tensor:
    n_classes = member.shape[1]
    rest_sums = _nonzero(class_sums.sum() - class_sums)
    inside = member / _nonzero(class_sums)
    outside = (1 - member) / rest_sums
    kr = w[:, None] * (inside - outside) / n_classes
    # The true class's hinge weighs K - 1, each other class's 1: for balanced
    # classes, each output's positives then weigh as much as its negatives.
    hinge = w[:, None] * (1 + (n_classes - 2) * member) / (n_classes * class_sums.sum())
    return torch.cat((kr, 2 * member - 1, hinge), dim=1)
