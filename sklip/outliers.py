"""LipschitzOutlierDetector: a 1-Lipschitz signed distance to the data, with certified decisions."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import OutlierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
)

from ._base import LipschitzEstimatorBase
from ._complement import OneClassEpochs, SamplingBox
from ._device import resolve_device
from ._inputs import checked_positive_weights
from ._margin import one_class_margin, weighted_quantile
from ._state import atomic
from ._training import HKRObjective, StoppingRule, seeds
from .robustness import radius_from_outputs

_SHARED = LipschitzEstimatorBase._parameter_constraints


class LipschitzOutlierDetector(OutlierMixin, LipschitzEstimatorBase):
    r"""Certified outlier detection: a 1-Lipschitz network approximating a signed distance.

    One-class HKR (Béthune et al., ICML 2023): a 1-Lipschitz network ``f`` is
    trained with the hinge-Kantorovich-Rubinstein loss to separate the
    training data (``f >= margin``) from negative samples redrawn at every
    epoch around it and moved by the network itself towards its boundary
    ``f = 0`` (a few damped Newton steps, see the user guide). ``f`` then
    approximates the signed distance to the support of the data, positive
    inside, and ``score_samples`` is ``f``: the more negative, the farther
    from the data. Because ``f`` is Lipschitz with the bound
    ``lipschitz_constant_`` of its actual weights, no perturbation of L2 norm
    below ``certified_radius(x)`` can turn an outlier into an inlier, nor
    the reverse.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(128, 128)
        Widths of the dense hidden layers (the dense head of a CNN).
    image_shape : tuple (C, H, W) or None, default=None
        If given, a convolutional network is built (as for
        :class:`LipschitzClassifier`).
    conv_channels : tuple of int, default=(16, 32)
        Channels of the convolution blocks (CNN only).
    activation : {"groupsort", "groupsort4", "groupsort8", "fullsort", "relu"}, default="groupsort"
    alpha : float, default=100.0
        Weight of the hinge term. Large: the boundary hugs the data, the
        better detector on ``benchmarks/outliers.py``; small (10): a smoother
        function, closer to the distance to the data outside it, with larger
        certificates (see the user guide's outlier page).
    margin : float or "auto", default="auto"
        Hinge margin in the units of ``X``: training points are pushed to
        ``f >= margin`` and negatives to ``f <= -margin``. "auto" takes half
        the weighted median distance from a training row to its nearest other
        row (``margin_``; about 4096 rows, drawn with ``random_state`` when
        there are more). Put a scaler in front: the margin is one length for
        every feature.
    contamination : "auto" or float in (0, 0.5], default="auto"
        The share of outliers in the training data. "auto": none are
        expected, and the threshold on ``score_samples`` is the learned
        boundary (``offset_ = 0``). A float puts that weighted share of the
        training rows below ``offset_``, as IsolationForest does, and at each
        epoch the rows the network scores lowest, holding 1.5 times that
        share of the weight (at most half), are trained as outliers
        (labelled like the negatives), so that the boundary leaves them out;
        and half the negatives start where the network scores highest (see
        the user guide).
    n_newton_steps : int, default=4
        Newton steps moving each epoch's negatives towards the boundary; 0
        keeps them uniform in the box around the data.
    max_epochs : int, default=100
        Each epoch draws new negatives (as many as training rows) and passes
        once over data and negatives.
    batch_size : int, default=256
    learning_rate : float, default=5e-3
        Adam's step size.
    n_iter_no_change : int, default=10
        Training stops after this many epochs without the training loss
        improving by ``tol``.
    tol : float, default=1e-4
    device : str or torch.device, default="auto"
        "auto" uses CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, the batch order, the negatives and the
        "auto" margin's subsample.
    verbose : int, default=0
    warm_start : bool, default=False
        Continue training the fitted network (same shape) in ``fit``.

    Attributes
    ----------
    offset_ : float
        ``decision_function(X) = score_samples(X) - offset_``.
    margin_ : float
        The margin used (measured with "auto").
    lipschitz_constant_ : float
        Upper bound of the Lipschitz constant of the fitted network.
    module_ : torch.nn.Module
        The trained network (float32).
    network_ : sklip.nn.FrozenNetwork
        The frozen float64 network every prediction and certificate reads.
    history_ : list of dict
        One record per epoch (loss, KR and hinge terms, training accuracy:
        the share of data and negatives on the right side of ``f = 0``).
    loss_curve_ : list of float
    n_iter_ : int
    n_features_in_ : int
    device_ : torch.device

    See Also
    --------
    sklearn.ensemble.IsolationForest, sklearn.svm.OneClassSVM

    Examples
    --------
    >>> import numpy as np
    >>> from sklip import LipschitzOutlierDetector
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(300, 2))
    >>> detector = LipschitzOutlierDetector(max_epochs=50, random_state=0).fit(X)
    >>> detector.predict([[0.0, 0.0], [6.0, 6.0]])
    array([ 1, -1])
    >>> radius = detector.certified_radius([[6.0, 6.0]])  # it stays an outlier within
    """

    _parameter_constraints: ClassVar[dict] = {
        **{
            name: constraint
            for name, constraint in _SHARED.items()
            if name not in ("early_stopping", "validation_fraction")
        },
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "n_newton_steps": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        hidden_layer_sizes=(128, 128),
        image_shape=None,
        conv_channels=(16, 32),
        activation="groupsort",
        alpha=100.0,
        margin="auto",
        contamination="auto",
        n_newton_steps=4,
        max_epochs=100,
        batch_size=256,
        learning_rate=5e-3,
        n_iter_no_change=10,
        tol=1e-4,
        device="auto",
        random_state=None,
        verbose=0,
        warm_start=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.image_shape = image_shape
        self.conv_channels = conv_channels
        self.activation = activation
        self.alpha = alpha
        self.margin = margin
        self.contamination = contamination
        self.n_newton_steps = n_newton_steps
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    @_fit_context(prefer_skip_nested_validation=True)
    @atomic
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> LipschitzOutlierDetector:
        """Train the network on the rows of ``X``, all taken as normal.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        y : None
            Ignored; present for the scikit-learn API.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights of the rows (in the hinge, the KR mean and
            the contamination quantile).

        Returns
        -------
        self
        """
        warm = self.warm_start and hasattr(self, "module_")
        X = self._validate_X(X, reset=not warm)
        weights = checked_positive_weights(sample_weight, X)
        self.device_ = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        self.margin_ = self._margin_for_data(X, weights, rng)
        init_seed, batch_seed = seeds(rng)
        negative_seed = int(rng.randint(np.iinfo(np.int32).max))
        self._data_range = _row_range(X, weights)
        draw = self._epoch_sets(X, weights, negative_seed)
        module, history, n_iter = self._network_to_train(X.shape[1], 1, init_seed, warm)
        self._train_and_publish(
            module, history, n_iter, draw, HKRObjective(self.alpha, self.margin_),
            seed=batch_seed,
            max_epochs=self.max_epochs,
            stopping=StoppingRule(self.n_iter_no_change, self.tol),
            resume=False,
        )  # fmt: skip
        self.offset_ = self._offset(self._evaluate(X)[:, 0], weights)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    @atomic
    def partial_fit(
        self, X: Any, y: Any = None, sample_weight: Any = None
    ) -> LipschitzOutlierDetector:
        """Train for one epoch on the chunk ``X``: one pass over it and as many negatives.

        The first call builds the network (and measures ``margin_`` with
        "auto", kept after); each later call trains the same network on with
        the same Adam state. The negatives are drawn in the box around every
        chunk seen so far; ``offset_`` is set from the chunk's scores.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        first = not hasattr(self, "module_")
        if not first:  # scikit-learn validates the parameters on the first call only
            self._validate_params()
        X = self._validate_X(X, reset=first)
        weights = checked_positive_weights(sample_weight, X)
        rng = check_random_state(self.random_state)
        if first:
            self.device_ = resolve_device(self.device)
        if first or self.margin != "auto":
            self.margin_ = self._margin_for_data(X, weights, rng)
        low, high = _row_range(X, weights)
        if not first:
            low, high = np.minimum(low, self._data_range[0]), np.maximum(high, self._data_range[1])
        self._data_range = (low, high)
        init_seed, batch_seed = seeds(rng)
        n_iter = getattr(self, "n_iter_", 0)
        draw = self._epoch_sets(X, weights, int(rng.randint(np.iinfo(np.int32).max)) + n_iter)
        module, history, n_iter = self._network_to_train(X.shape[1], 1, init_seed, not first)
        self._train_and_publish(
            module, history, n_iter, draw, HKRObjective(self.alpha, self.margin_),
            seed=batch_seed + n_iter,
            max_epochs=1,
            stopping=StoppingRule(1, 0.0),
            resume=not first,
            on_interrupt="raise",
        )  # fmt: skip
        self.offset_ = self._offset(self._evaluate(X)[:, 0], weights)
        return self

    def _margin_for_data(
        self, X: np.ndarray, weights: np.ndarray, rng: np.random.RandomState
    ) -> float:
        """``margin``, or with "auto" measured on ``X`` (see :func:`one_class_margin`)."""
        if isinstance(self.margin, str):
            return one_class_margin(X, weights, rng)
        return float(self.margin)

    def _epoch_sets(self, X: np.ndarray, weights: np.ndarray, seed: int) -> OneClassEpochs:
        """The function giving each epoch's training set (see :class:`OneClassEpochs`).

        The data rows are labelled +1 with their weights scaled to a mean of 1,
        the negatives (as many) -1 with weight 1, so that the hinge weighs
        both sides alike.
        """
        n = X.shape[0]
        labels = np.repeat([1, 0], n)
        scaled = np.concatenate((weights * (n / weights.sum()), np.ones(n)))
        # The negative half of this tensor is a placeholder, overwritten at each epoch.
        data = self._training_set(np.concatenate((X, X)), labels, scaled, n_outputs=1)
        return OneClassEpochs(
            data,
            torch.tensor(scaled, dtype=torch.float32, device=self.device_),
            SamplingBox.around(*self._data_range, self.device_),
            self.n_newton_steps,
            0.0 if self.contamination == "auto" else self.contamination,
            torch.Generator(device=self.device_).manual_seed(seed),
        )

    def _offset(self, scores: np.ndarray, weights: np.ndarray) -> float:
        """The threshold of ``contamination``: 0, or between the outliers and the rest.

        With a share ``c``, the outliers are the lowest-scoring training rows
        holding a weight share of at least ``c``, and the offset is midway
        between the highest of them and the next score up.
        """
        if self.contamination == "auto":
            return 0.0
        highest_outlier = weighted_quantile(scores, weights, self.contamination)
        above = scores[scores > highest_outlier]
        if above.size == 0:
            return highest_outlier
        midway = highest_outlier + (above.min() - highest_outlier) / 2
        # Two adjacent floats have no float between them: take the upper one.
        return float(midway if midway > highest_outlier else above.min())

    def score_samples(self, X: Any) -> np.ndarray:
        """The network's output ``f(x)``: an approximate signed distance, higher is more normal.

        ``|f(x) - f(x')|`` is at most ``lipschitz_constant_`` times ``||x - x'||``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self._forward(X)[:, 0]

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers (``decision_function >= 0``), -1 for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def certified_radius(self, X: Any) -> np.ndarray:
        r"""Certified L2 radius of each inlier/outlier decision, in the units of ``X``.

        No perturbation :math:`\delta` with :math:`\|\delta\|_2` below the
        radius changes ``predict(x + δ)`` as this estimator computes it:
        :math:`(|f(x) - \mathrm{offset}| - e(x))_+ / (L + G)`, with ``L`` the
        bound of the frozen weights that make the predictions and ``e``, ``G``
        the proven bound of the forward pass's floating-point rounding (see
        :func:`sklip.robustness.radius_from_outputs`), widened by the rounding
        of the subtraction of ``offset_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        outputs, _, error = self._forward(X, bounds=True)
        decision = outputs - self.offset_
        error = error + np.abs(decision[:, 0]) * np.finfo(np.float64).eps
        return radius_from_outputs(
            decision,
            self.lipschitz_constant_,
            error=error,
            error_growth=self.network_.error_growth,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _row_range(X: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature minimum and maximum over the rows of positive weight."""
    rows = X[weights > 0]
    return rows.min(axis=0).astype(np.float64), rows.max(axis=0).astype(np.float64)
