"""Norms of tensors that neither underflow nor overflow."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["scaled_norm"]


def scaled_norm(tensor: Tensor, dim: int | None = None) -> Tensor:
    """The L2 norm without underflow or overflow of the squares.

    ``torch.linalg.vector_norm`` squares its entries, so below about 1e-154 it
    returns 0 (and above 1e154, inf): a zero norm would drop a rounding term
    from the bound (found by the property tests: a certificate beaten at
    1e-171). Norms between 1e-140 and 1e140 lose nothing that matters (each
    underflowed square is below 1e-307, a relative 1e-27 of such a norm), so
    only the others are recomputed as ``m * ||t / m||`` with ``m = max |t|``:
    no full-size temporaries for ordinary data.
    """
    tensor = tensor.detach()
    if dim is None:
        tensor, dim = tensor.reshape(1, -1), 1
    norm = torch.linalg.vector_norm(tensor, dim=dim)
    extreme = ~((norm > 1e-140) & (norm < 1e140))
    if bool(extreme.any()):
        rows = tensor[extreme] if dim == 1 else tensor.movedim(dim, -1)[extreme]
        peak = rows.abs().amax(dim=-1, keepdim=True)
        safe = torch.where(peak > 0, peak, torch.ones_like(peak))
        norm = norm.clone()
        rescaled = torch.linalg.vector_norm(rows / safe, dim=-1) * peak[..., 0]
        norm[extreme] = rescaled
    return norm
