"""LipschitzRegressor: a K-Lipschitz network, with certified bounds on how far outputs move."""

from __future__ import annotations

import copy
from numbers import Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import RegressorMixin, _fit_context
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_y, check_consistent_length, check_is_fitted
from torch import nn

from ._attacks import radius_per_row
from ._base import LipschitzEstimatorBase
from ._device import resolve_device
from ._inputs import checked_positive_weights, naming, power_scaled
from ._regression_objective import (
    LOSSES,
    RegressionObjective,
    auto_lipschitz_constant,
    regression_coefficients,
)
from ._state import atomic
from ._training import StoppingRule, TrainingSet, seeds

_SHARED = LipschitzEstimatorBase._parameter_constraints
_UNIT = np.finfo(np.float64).eps  # twice the unit roundoff: a safe bound per operation


class LipschitzRegressor(RegressorMixin, LipschitzEstimatorBase):
    r"""Regression with a certified Lipschitz bound: outputs move at most ``K·eps``.

    The prediction is :math:`\hat y(x) = \mu + K g(x)`, with ``g`` a
    1-Lipschitz network (the classifier's) and ``K`` the
    ``lipschitz_constant``, so :math:`\|\hat y(x) - \hat y(x')\| \le K \|x -
    x'\|`. ``lipschitz_constant_`` is the bound computed from the frozen
    float64 weights that make the predictions, and
    :meth:`predict_interval` turns it into certified bounds of each output
    over an L2 ball. These bound how far the *model* can move, not its error
    to the truth.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(128, 128)
    image_shape : tuple (C, H, W) or None, default=None
        If given, a convolutional network (as for :class:`LipschitzClassifier`).
    conv_channels : tuple of int, default=(16, 32)
    activation : {"groupsort", "groupsort4", "groupsort8", "fullsort", "relu"}, default="groupsort8"
        Groups of 8 by default: they fit distance-like targets (``||x||``: R²
        0.997 against 0.988 with pairs, ``benchmarks/regression.py``); see
        :func:`sklip.nn.make_activation`.
    lipschitz_constant : float or "auto", default="auto"
        ``K``, in units of ``y`` per unit of ``X``. "auto" measures it on the
        training data: 1.2 times the gradient's root-mean-square norm,
        estimated from the differences between each row and its 10 nearest
        other rows (about 4096 rows, drawn with ``random_state`` when there
        are more) so that noise in ``y`` does not inflate it (see the user
        guide, "Choosing K"). A ``K`` too small underfits, one too large fits
        the noise and loosens the bounds.
        ``lipschitz_target_`` holds it. Put a scaler in front: ``K`` is one
        slope for every feature.
    loss : {"squared_error", "huber", "absolute_error"}, default="squared_error"
        On residuals divided by each output's standard deviation (Huber's
        threshold is one standard deviation).
    max_epochs : int, default=200
    batch_size : int, default=256
    learning_rate : float, default=5e-3
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows and keep the epoch of
        best held-out R².
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
    device : str or torch.device, default="auto"
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    warm_start : bool, default=False
        Continue training the fitted network on the next ``fit``, with the
        first fit's output scale ``lipschitz_target_`` and targets' mean and
        spread (the network's outputs are read through them): a different
        numeric ``lipschitz_constant`` raises; "auto" keeps the measured one.

    Attributes
    ----------
    lipschitz_constant_ : float
        Certified bound of the Lipschitz constant of ``predict`` (of the
        output vector, so of each output too): ``K`` times the bound of the
        frozen network's weights, which is at most 1 for a single output.
    output_lipschitz_constants_ : ndarray of shape (n_outputs,)
        Certified bound of each output on its own (float64): ``K`` times that
        output's bound in the frozen network. Each is at most
        ``lipschitz_constant_``; with several outputs they can be up to
        ``sqrt(n_outputs)`` times smaller, and ``predict_interval`` uses them.
    lipschitz_target_ : float
        The ``K`` the network was scaled to (given, or measured with "auto").
    module_, network_, history_, loss_curve_, n_iter_, n_features_in_, device_
        As for :class:`LipschitzClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklip import LipschitzRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-1, 1, size=(500, 2))
    >>> y = np.abs(X).sum(axis=1)  # 1.42-Lipschitz in the L2 norm
    >>> reg = LipschitzRegressor(lipschitz_constant=1.5, random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.9
    True
    >>> round(reg.lipschitz_constant_, 3)  # the certified slope: K, up to the weights' rounding
    1.5
    >>> low, high = reg.predict_interval(X[:2], eps=0.1)  # predict moves less within 0.1
    >>> bool(np.all(high - low <= 2 * 0.1 * reg.lipschitz_constant_ + 1e-9))
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **{name: c for name, c in _SHARED.items() if name not in ("alpha", "margin")},
        "lipschitz_constant": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "loss": [StrOptions(set(LOSSES))],
    }

    def __init__(
        self,
        hidden_layer_sizes=(128, 128),
        image_shape=None,
        conv_channels=(16, 32),
        activation="groupsort8",
        lipschitz_constant="auto",
        loss="squared_error",
        max_epochs=200,
        batch_size=256,
        learning_rate=5e-3,
        early_stopping=False,
        validation_fraction=0.1,
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
        self.lipschitz_constant = lipschitz_constant
        self.loss = loss
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    # ------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    @atomic
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> LipschitzRegressor:
        """Train the network on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        warm = self.warm_start and hasattr(self, "module_")
        X, Y, weights = self._validated(X, y, sample_weight, reset=not warm)
        self.device_ = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        held_out, validation_score = None, None
        fit_rows = (X, Y, weights)
        if self.early_stopping:
            fit_rows, held_out = self._hold_out(X, Y, weights, rng)
            validation_score = self._validation_score(*held_out)
        self._set_target_scaling(*fit_rows, rng, keep=warm)
        self._train(fit_rows, rng, warm, max_epochs=self.max_epochs, validation=validation_score)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    @atomic
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> LipschitzRegressor:
        """Train for one epoch on the chunk ``(X, y)``.

        The first call builds the network and fixes the target scaling
        (``lipschitz_target_``, the targets' mean and spread) from its chunk;
        later calls train on with the same Adam state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        if self.early_stopping:
            raise ValueError(
                "partial_fit does not support early_stopping=True (one pass over a chunk "
                "holds nothing out); set early_stopping=False or use fit."
            )
        first = not hasattr(self, "module_")
        if not first:  # scikit-learn validates the parameters on the first call only
            self._validate_params()
        X, Y, weights = self._validated(X, y, sample_weight, reset=first)
        if first:
            self.device_ = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        self._set_target_scaling(X, Y, weights, rng, keep=not first)
        self._train((X, Y, weights), rng, not first, max_epochs=1, resume=not first)
        return self

    def _validated(self, X: Any, y: Any, sample_weight: Any, *, reset: bool):
        """``(X, Y, weights)``: features, targets as a float64 (n, m) array, weights."""
        if y is None:
            raise ValueError(
                "LipschitzRegressor requires y to be passed, but the target y is None."
            )
        X = self._validate_X(X, reset=reset)
        y = naming("y", _check_y, y, multi_output=True, y_numeric=True, estimator=self)
        naming("y", check_consistent_length, X, y)
        Y = naming("y", np.asarray, y, dtype=np.float64)
        self._single_output = Y.ndim == 1 if reset else self._single_output
        Y = Y.reshape(len(Y), -1)
        if not reset and Y.shape[1] != self._target_mean.shape[0]:
            raise ValueError(
                f"y has {Y.shape[1]} outputs, but the regressor was fitted with "
                f"{self._target_mean.shape[0]}; set warm_start=False to train anew."
            )
        # Only ratios of weights matter: scaled so that 1e300 does not overflow w * y.
        return X, Y, power_scaled(checked_positive_weights(sample_weight, X))

    def _hold_out(self, X, Y, weights, rng):
        X_fit, X_val, Y_fit, Y_val, w_fit, w_val = train_test_split(
            X, Y, weights, test_size=self.validation_fraction, random_state=rng
        )
        if len(Y_val) < 2 or not (w_val > 0).any():
            raise ValueError(
                f"early_stopping=True cannot score R² on validation_fraction="
                f"{self.validation_fraction} of {len(Y)} rows; raise it or set "
                "early_stopping=False."
            )
        return (X_fit, Y_fit, w_fit), (X_val, Y_val, w_val)

    def _set_target_scaling(self, X, Y, weights, rng, *, keep: bool) -> None:
        """``lipschitz_target_`` (K), the targets' weighted mean and standard deviation."""
        if keep and hasattr(self, "_target_mean"):
            asked = self.lipschitz_constant
            if not isinstance(asked, str) and float(asked) != self.lipschitz_target_:
                raise ValueError(
                    f"lipschitz_constant={asked!r} differs from the fitted output scale "
                    f"lipschitz_target_={self.lipschitz_target_!r}, which training on keeps; "
                    "set warm_start=False to train a new network."
                )
            return
        # Targets near float64's limit overflow the squares below: refused, not warned about.
        with np.errstate(over="ignore", invalid="ignore"):
            if isinstance(self.lipschitz_constant, str):
                K = auto_lipschitz_constant(X, Y, weights, rng)
            else:
                K = float(self.lipschitz_constant)
            mean = np.average(Y, axis=0, weights=weights)
            spread = np.sqrt(np.average(np.square(Y - mean), axis=0, weights=weights))
        if not (np.isfinite(K) and np.isfinite(spread).all()):
            raise ValueError(
                f"y is too large to train on (values up to {np.abs(Y).max():.3g}: their "
                "squares overflow float64); rescale y."
            )
        self.lipschitz_target_ = K
        self._target_mean = mean
        self._target_spread = np.where(spread > 0, spread, 1.0)

    def _train(self, rows, rng, warm, *, max_epochs, validation=None, resume=False) -> None:
        X, Y, weights = rows
        K = self.lipschitz_target_
        targets = (Y - self._target_mean) / K
        coefficients = regression_coefficients(targets, weights)
        data = self._regression_set(X, coefficients)
        scale = torch.tensor(K / self._target_spread, dtype=torch.float32, device=self.device_)
        objective = RegressionObjective(self.loss, scale)
        init_seed, batch_seed = seeds(rng)
        module, history, n_iter = self._network_to_train(X.shape[1], Y.shape[1], init_seed, warm)
        self._train_and_publish(
            module, history, n_iter, data, objective,
            seed=batch_seed + (n_iter if resume else 0),
            max_epochs=max_epochs,
            stopping=StoppingRule(self.n_iter_no_change if max_epochs > 1 else 1, self.tol),
            resume=resume,
            validation_score=validation,
            on_interrupt="raise" if resume or max_epochs == 1 else "keep",
        )  # fmt: skip
        self.lipschitz_constant_ = float(round_up_product(K, self.network_.lipschitz_constant))

    def _regression_set(self, X: np.ndarray, coefficients: np.ndarray) -> TrainingSet:
        X_t = self._features_on_device(X)
        table = torch.tensor(coefficients, dtype=torch.float32, device=self.device_)
        if not torch.isfinite(table).all():
            raise ValueError("y is too large for float32 training once scaled; rescale y.")
        return TrainingSet(X_t, table)

    def _validation_score(self, X, Y, weights):
        def held_out_r2(module: nn.Module) -> float:
            predicted = self._target_mean + self.lipschitz_target_ * self._outputs(X, module)
            return float(r2_score(Y, predicted, sample_weight=weights))

        return held_out_r2

    # ------------------------------------------------------------ prediction
    def predict(self, X: Any) -> np.ndarray:
        """``mu + K g(x)``, computed in float64 by the frozen network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        outputs = self._forward(X)  # first: it says NotFittedError on an unfitted estimator
        return self._shape(self._target_mean + self.lipschitz_target_ * outputs)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """R² of ``predict`` on ``(X, y)`` (weighted by ``sample_weight``), as in scikit-learn.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative, as in ``fit``.

        Returns
        -------
        float
        """
        return self._scored(r2_score, X, y, sample_weight)

    @property
    def output_lipschitz_constants_(self) -> np.ndarray:
        # Read off the frozen network on each access: its bounds are the ones
        # the certificates use (the stored ones after sklip.load), so this
        # cannot disagree with them.
        check_is_fitted(self, "network_")
        outputs = self.network_.output_lipschitz_constants
        return np.array([round_up_product(self.lipschitz_target_, value) for value in outputs])

    def predict_interval(self, X: Any, eps: float | Any) -> tuple[np.ndarray, np.ndarray]:
        r"""Certified bounds of each output of ``predict`` over the L2 ball of radius ``eps``.

        For every ``x'`` with :math:`\|x' - x\| \le \varepsilon`, each output of
        ``predict(x')`` as this estimator computes it lies in ``[low, high]``:
        ``predict(x) ± (K (L + G) eps + K e(x) + r(x))``, with ``K L`` the
        output's own bound (``output_lipschitz_constants_``), ``e`` and ``G``
        the proven rounding bounds of
        the frozen network's forward pass (as in the classifier's
        certificates) and ``r`` the rounding of ``mu + K g``. It bounds the
        model's change, not its error to the truth.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        eps : float or array-like of shape (n_samples,)
            L2 radius, finite and non-negative.

        Returns
        -------
        low, high : ndarrays of the shape of ``predict(X)``
        """
        outputs, _, error = self._forward(X, bounds=True)
        eps = radius_per_row(eps, outputs.shape[0])[:, None]
        K, network = self.lipschitz_target_, self.network_
        reach = network.output_lipschitz_constants + network.error_growth
        movement = K * (error[:, None] + reach * eps)
        center = self._target_mean + K * outputs
        magnitude = np.abs(self._target_mean) + K * (np.abs(outputs) + movement / K)
        slack = (movement + 4 * _UNIT * magnitude) * (1 + 4 * _UNIT)
        return self._shape(center - slack), self._shape(center + slack)

    def _shape(self, values: np.ndarray) -> np.ndarray:
        return values[:, 0] if self._single_output else values

    def to_torch(self) -> nn.Sequential:
        """The fitted network with the output map ``mu + K g`` appended, in float64."""
        check_is_fitted(self, "network_")
        module = copy.deepcopy(self.network_.module)
        m = self._target_mean.shape[0]
        head = nn.Linear(m, m, dtype=torch.float64, device=self.device_)
        with torch.no_grad():
            identity = torch.eye(m, dtype=torch.float64, device=self.device_)
            head.weight.copy_(identity * self.lipschitz_target_)
            mean = torch.tensor(self._target_mean, dtype=torch.float64, device=self.device_)
            head.bias.copy_(mean)
        return nn.Sequential(*module, head)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.input_tags.allow_nan = False
        return tags


def round_up_product(a: float, b: float) -> float:
    """An upper bound of ``a * b`` (both non-negative) despite rounding."""
    return float(np.nextafter(a * b, np.inf))
