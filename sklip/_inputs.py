"""Checks of the data a fit receives, beyond scikit-learn's own validation."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

_EXACT_INTEGERS = 2**53  # integers beyond this do not all have a float64


def hold_out(
    X: np.ndarray, labels: np.ndarray, weights: np.ndarray, fraction: float, rng: Any
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Stratified ``(train, held_out)`` triples; a held-out part that can score, or ValueError."""
    try:
        X_fit, X_val, labels_fit, labels_val, weights_fit, weights_val = train_test_split(
            X, labels, weights, test_size=fraction, stratify=labels, random_state=rng
        )
    except ValueError as error:
        raise ValueError(
            f"early_stopping=True cannot hold out validation_fraction={fraction} of "
            f"{len(labels)} samples with every class on both sides ({error}). Raise "
            "validation_fraction, give more samples, or set early_stopping=False."
        ) from None
    held_totals = np.bincount(labels_val, weights=weights_val, minlength=labels.max() + 1)
    if not np.all(held_totals[np.unique(labels)] > 0):
        raise ValueError(
            f"early_stopping=True: the held-out part (validation_fraction={fraction}) has a "
            "class whose sample_weight are all zero, so it cannot score the network. Raise "
            "validation_fraction or set early_stopping=False."
        )
    return (X_fit, labels_fit, weights_fit), (X_val, labels_val, weights_val)


def check_exactly_representable(X: Any) -> None:
    """Refuse inputs that float64 cannot hold exactly (the certificate is about *them*)."""
    dtype = getattr(X, "dtype", None)
    if dtype is None or not isinstance(dtype, np.dtype):
        return
    if dtype.kind == "f" and dtype.itemsize > 8:
        raise TypeError(
            f"X has dtype {dtype}, which float64 cannot represent exactly; convert it "
            "to float64 yourself if the rounding is acceptable."
        )
    if dtype.kind in "iu" and X.size and np.abs(X).max() > _EXACT_INTEGERS:
        raise ValueError(
            "X holds integers above 2**53, which float64 cannot represent exactly; "
            "rescale the features."
        )
