"""Certified curves against the radius, as plots: accuracy (classifiers), AUROC (detectors)."""

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
        return _plot_curve(self, self.certified_accuracy, "certified accuracy", ax, name, kwargs)

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


def _plot_curve(display: Any, values: np.ndarray, ylabel: str, ax: Any, name: Any, kwargs: dict):
    """Draw ``values`` against ``display.eps`` as a step curve; set the display's artists."""
    check_matplotlib_support(f"{type(display).__name__}.plot")
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    name = display.estimator_name if name is None else name
    line_kwargs = {"drawstyle": "steps-post", **({"label": name} if name else {}), **kwargs}
    (display.line_,) = ax.plot(display.eps, values, **line_kwargs)
    ax.set_xlabel("L2 radius eps")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    if name:
        ax.legend(loc="lower left")
    display.ax_, display.figure_ = ax, ax.figure
    return display


class CertifiedAUROCDisplay:
    """Certified AUROC of an outlier detector against the radius eps, as a plot.

    The curve of :func:`sklip.robustness.certified_auroc`: the AUROC that no
    L2 perturbation of the points below eps can lower. Same Display API as
    :class:`CertifiedAccuracyDisplay`.

    Parameters
    ----------
    eps : ndarray of shape (n_eps,)
        Radii, increasing.
    certified_auroc : ndarray of shape (n_eps,)
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
    >>> import numpy as np
    >>> from sklip import LipschitzOutlierDetector
    >>> from sklip.robustness import CertifiedAUROCDisplay
    >>> rng = np.random.RandomState(0)
    >>> detector = LipschitzOutlierDetector(max_epochs=20, random_state=0)
    >>> detector = detector.fit(rng.normal(size=(200, 2)))
    >>> X = np.vstack([rng.normal(size=(50, 2)), rng.normal(size=(50, 2)) + 5.0])
    >>> display = CertifiedAUROCDisplay.from_estimator(detector, X, np.repeat([1, -1], 50))
    >>> bool(display.certified_auroc[-1] == 0.0)  # the default radii run until nothing holds
    True
    """

    def __init__(
        self, *, eps: Any, certified_auroc: Any, estimator_name: str | None = None
    ) -> None:
        self.eps = eps
        self.certified_auroc = certified_auroc
        self.estimator_name = estimator_name

    def plot(self, ax: Any = None, *, name: str | None = None, **kwargs: Any):
        """Draw the curve on ``ax`` (a new figure if None); return self."""
        return _plot_curve(self, self.certified_auroc, "certified AUROC", ax, name, kwargs)

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
    ) -> CertifiedAUROCDisplay:
        """Curve of a fitted sklip outlier detector (or a Pipeline ending with one) on (X, y).

        ``y`` holds 1 for inliers and -1 for outliers. ``eps`` defaults to
        100 radii from 0 to the first at which no pair can stay certified (the
        score range divided by the bound's slope); given, it is a non-empty
        1-D array of finite, non-negative radii.
        """
        from ._score_bounds import certified_auroc_from_bounds, checked_outlier_labels, score_slack

        eps = _check_eps(eps)
        scores, constant, per_unit = score_slack(estimator, X)
        inlier = checked_outlier_labels(y, len(scores))
        if eps is None:
            span = float(scores.max() - scores.min())
            eps = np.linspace(0.0, span / (2 * per_unit) * 1.001 if span > 0 else 1.0, 100)
        curve = certified_auroc_from_bounds(scores, constant, per_unit, inlier, eps)
        name = type(estimator).__name__ if name is None else name
        display = cls(eps=eps, certified_auroc=curve, estimator_name=name)
        return display.plot(ax=ax, **kwargs)
