"""CertifiedAccuracyDisplay: certified accuracy against the radius, as a plot."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils._optional_dependencies import check_matplotlib_support

from ._pipeline import certified_radius, check_inputs, check_labels, unwrap


class CertifiedAccuracyDisplay:
    """Certified accuracy curve: the fraction of points correct and certified at eps.

    Follows scikit-learn's Display API (like ``RocCurveDisplay``): build it with
    :meth:`from_estimator` or :meth:`from_predictions`, draw several estimators
    on one axes by passing ``ax=display.ax_``. matplotlib is needed only to plot.

    Parameters
    ----------
    eps : ndarray of shape (n_eps,)
        Radii, increasing.
    certified_accuracy : ndarray of shape (n_eps,)
    estimator_name : str, optional
        Legend label.

    Attributes
    ----------
    line_ : matplotlib Line2D
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklip.robustness import CertifiedAccuracyDisplay
    >>> display = CertifiedAccuracyDisplay.from_predictions(
    ...     y_true=[0, 1, 1], y_pred=[0, 1, 0], radius=[0.5, 2.0, 1.0], eps=[0.0, 1.0, 3.0])
    >>> display.certified_accuracy
    array([0.66666667, 0.33333333, 0.        ])
    """

    def __init__(
        self, *, eps: Any, certified_accuracy: Any, estimator_name: str | None = None
    ) -> None:
        self.eps = eps
        self.certified_accuracy = certified_accuracy
        self.estimator_name = estimator_name

    def plot(self, ax: Any = None, *, name: str | None = None, **kwargs: Any):
        """Draw the curve on ``ax`` (a new figure if None); return self."""
        check_matplotlib_support(f"{type(self).__name__}.plot")
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        name = self.estimator_name if name is None else name
        line_kwargs = {"drawstyle": "steps-post", **({"label": name} if name else {}), **kwargs}
        (self.line_,) = ax.plot(self.eps, self.certified_accuracy, **line_kwargs)
        ax.set_xlabel("L2 radius eps")
        ax.set_ylabel("certified accuracy")
        ax.set_ylim(0, 1.02)
        if name:
            ax.legend(loc="lower left")
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_estimator(
        cls,
        estimator: Any,
        X: Any,
        y: Any,
        *,
        eps: Any = None,
        name: str | None = None,
        ax: Any = None,
        **kwargs: Any,
    ) -> CertifiedAccuracyDisplay:
        """Curve of a fitted sklip classifier (or a Pipeline ending with one) on (X, y).

        ``eps`` defaults to 200 radii from 0 to just past the largest radius of
        a correct point; given, it is a non-empty 1-D array of finite,
        non-negative radii. ``y`` holds labels among the classifier's
        ``classes_``, one per row of ``X``.
        """
        _check_eps(eps)
        # Errors name X and y before any prediction is made.
        n_samples = check_inputs(estimator, X).shape[0]
        check_labels(unwrap(estimator)[0], y, n_samples)
        name = type(estimator).__name__ if name is None else name
        return cls.from_predictions(
            y,
            estimator.predict(X),
            certified_radius(estimator, X),
            eps=eps,
            name=name,
            ax=ax,
            **kwargs,
        )

    @classmethod
    def from_predictions(
        cls,
        y_true: Any,
        y_pred: Any,
        radius: Any,
        *,
        eps: Any = None,
        name: str | None = None,
        ax: Any = None,
        **kwargs: Any,
    ) -> CertifiedAccuracyDisplay:
        """Curve from labels, predictions and certified radii.

        ``y_true``, ``y_pred`` and ``radius`` are 1-D, of one non-zero length;
        radii are non-negative (``inf`` allowed, NaN not). ``eps`` as in
        :meth:`from_estimator`.
        """
        from .robustness import certified_accuracy_curve

        y_true, y_pred, radius = _check_predictions(y_true, y_pred, radius)
        eps = _check_eps(eps)
        correct = y_true == y_pred
        if eps is None:
            top = radius[correct & np.isfinite(radius)].max(initial=0.0)
            eps = np.linspace(0.0, 1.05 * top if top > 0 else 1.0, 200)
        curve = certified_accuracy_curve(correct, radius, eps)
        display = cls(eps=eps, certified_accuracy=curve, estimator_name=name)
        return display.plot(ax=ax, **kwargs)


def _check_predictions(y_true: Any, y_pred: Any, radius: Any) -> tuple[np.ndarray, ...]:
    """The three per-sample arrays, 1-D of one non-zero length; radii >= 0, not NaN."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    try:
        radius = np.asarray(radius, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"radius must be an array of numbers: {error}") from error
    if not (y_true.shape == y_pred.shape == radius.shape) or y_true.ndim != 1:
        raise ValueError(
            "y_true, y_pred and radius must be 1-D of one length; got shapes "
            f"{y_true.shape}, {y_pred.shape} and {radius.shape}."
        )
    if y_true.shape[0] == 0:
        raise ValueError("y_true, y_pred and radius are empty: at least one sample is needed.")
    if np.isnan(radius).any() or (radius < 0).any():
        raise ValueError("radius must hold non-negative numbers (inf allowed), not NaN.")
    return y_true, y_pred, radius


def _check_eps(eps: Any) -> np.ndarray | None:
    """``eps`` as a non-empty 1-D float64 array of finite, non-negative radii (or None)."""
    if eps is None:
        return None
    try:
        eps = np.asarray(eps, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"eps must be an array of radii: {error}") from error
    if eps.ndim != 1 or eps.shape[0] == 0:
        raise ValueError(f"eps must be a non-empty 1-D array of radii, got shape {eps.shape}.")
    if not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError("eps must be finite and non-negative.")
    return eps
