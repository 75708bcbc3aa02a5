"""Checks of the data a fit receives, beyond scikit-learn's own validation."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from numbers import Integral
from typing import Any, TypeVar

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import _check_sample_weight

_EXACT_INTEGERS = 2**53  # integers beyond this do not all have a float64

Result = TypeVar("Result")


def naming(name: str, check: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
    """``check(*args, **kwargs)``; a ValueError or TypeError it raises names ``name``.

    scikit-learn's validation messages often do not say which argument they
    are about ("Expected 2D array, got 1D array instead"): they get the
    argument's name in front.
    """
    try:
        return check(*args, **kwargs)
    except (ValueError, TypeError) as error:
        if re.search(rf"\b{re.escape(name)}\b", str(error)):
            raise
        raise type(error)(f"{name}: {error}") from error


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


def check_exactly_representable(X: Any, name: str = "X") -> None:
    """Refuse inputs that float64 cannot hold exactly (the certificate is about *them*).

    A DataFrame is checked column by column, an object array (or a list)
    value by value: the cast to float64 would round them as silently.
    """
    if hasattr(X, "columns") and hasattr(X, "iloc"):  # a DataFrame
        for column in range(X.shape[1]):
            check_exactly_representable(np.asarray(X.iloc[:, column]), name)
        return
    if not isinstance(getattr(X, "dtype", None), np.dtype):
        try:
            X = np.asarray(X)
        except (TypeError, ValueError):  # validation names what is wrong with it
            return
    if X.dtype == object:
        values = X.ravel().tolist()
        integers = [
            int(v) for v in values if isinstance(v, int | np.integer) and not isinstance(v, bool)
        ]
        wide = any(isinstance(v, np.floating) and v.dtype.itemsize > 8 for v in values)
        if wide:
            _refuse_wide_floats("object (long double values)", name)
        if integers and max(map(abs, integers)) > _EXACT_INTEGERS:
            _refuse_large_integers(name)
        return
    if X.dtype.kind == "f" and X.dtype.itemsize > 8:
        _refuse_wide_floats(X.dtype, name)
    if X.dtype.kind in "iu" and X.size:
        if X.max() > _EXACT_INTEGERS or X.min() < -_EXACT_INTEGERS:
            _refuse_large_integers(name)


def _refuse_wide_floats(dtype: Any, name: str) -> None:
    raise TypeError(
        f"{name} has dtype {dtype}, which float64 cannot represent exactly; convert it "
        "to float64 yourself if the rounding is acceptable."
    )


def _refuse_large_integers(name: str) -> None:
    raise ValueError(
        f"{name} holds integers above 2**53, which float64 cannot represent exactly; "
        "rescale the features."
    )


def flatten_images(X: Any, image_shape: Any) -> Any:
    """Image batches ``(n, C, H, W)`` as flat rows, checked against ``image_shape``.

    Only the exact shape passes: a channels-last batch with as many pixels
    would otherwise be read as scrambled images.
    """
    if image_shape is not None and getattr(X, "ndim", 2) == 4:
        X = np.asarray(X)
        expected = image_shape_for(image_shape, math.prod(X.shape[1:]))
        if tuple(X.shape[1:]) != expected:
            raise ValueError(
                f"X has images of shape {tuple(X.shape[1:])}, but image_shape is "
                f"{tuple(image_shape)} (channels first: (C, H, W)); reshape X to "
                f"(n_samples, {', '.join(map(str, expected))}) or pass flat rows."
            )
        return X.reshape(X.shape[0], -1)
    return X


def image_shape_for(image_shape: Any, n_features: int) -> tuple[int, int, int]:
    """``image_shape`` with a -1 entry inferred, checked against n_features."""
    try:
        shape = list(image_shape)
    except TypeError:
        shape = []
    if (
        len(shape) != 3
        or not all(isinstance(s, Integral) and not isinstance(s, bool) for s in shape)
        or sum(s == -1 for s in shape) > 1
        or any(s < 1 and s != -1 for s in shape)
    ):
        raise ValueError(
            f"image_shape must be three positive integers (C, H, W), one of which may "
            f"be -1 (inferred), got {image_shape!r}."
        )
    shape = [int(s) for s in shape]
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape and n_features % known == 0:
        shape[shape.index(-1)] = n_features // known
    if math.prod(shape) != n_features:
        raise ValueError(
            f"image_shape={tuple(image_shape)} does not fit the data: it needs "
            f"n_features = {math.prod(shape)}, got n_features = {n_features}."
        )
    return tuple(shape)


def power_scaled(weights: np.ndarray) -> np.ndarray:
    """``weights`` times the power of two that puts the largest in [1, 2).

    A change of exponent: weighted means are unchanged (exactly, but for
    weights over 2**1022 times smaller than the largest, which become
    subnormal), while the sums and products of tiny (subnormal) or huge
    weights no longer lose their digits, in float64 or cast to float32.
    """
    largest = float(np.max(weights)) if len(weights) else 0.0
    if not largest > 0:
        return weights
    return np.ldexp(weights, unit_exponent(largest))


def unit_exponent(largest: float) -> int:
    """The power of two ``e`` with ``largest * 2**e`` in [1, 2) (``largest > 0``)."""
    return 1 - int(np.frexp(largest)[1])


def checked_positive_weights(sample_weight: Any, X: Any) -> np.ndarray:
    """:func:`checked_weights`, refusing weights that are 0 on every row."""
    weights = checked_weights(sample_weight, X)
    if not (weights > 0).any():
        raise ValueError("sample_weight is 0 for every row: there is nothing to learn from.")
    return weights


def checked_weights(sample_weight: Any, X: Any) -> np.ndarray:
    """``sample_weight`` as float64, one non-negative weight per row of ``X`` (errors name it)."""
    return naming(
        "sample_weight",
        _check_sample_weight,
        sample_weight,
        X,
        dtype=np.float64,
        ensure_non_negative=True,
    )
