"""Devices: which one ("auto" picks CUDA when there is one), and the way back to the host."""

from __future__ import annotations

import numpy as np
import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device named by an estimator's ``device`` parameter.

    Raises ``ValueError`` for a name torch does not know, or for a device this
    machine does not have (``"cuda"`` without CUDA, ``"cuda:3"`` with two GPUs).
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}."
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on this "
                "machine; use device='auto' or 'cpu'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    elif resolved.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}.")
    return resolved


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """The one host transfer: a tensor on any device as a NumPy array.

    Every conversion in sklip goes through here (a test scans the sources for
    any other ``.numpy()``), so a CUDA tensor is never handed to NumPy directly.
    """
    return tensor.detach().cpu().numpy()
