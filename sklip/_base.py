"""The base of sklip's estimators: parameters, data, the network, the device.

Subclasses (:class:`~sklip.LipschitzClassifier`, ``WassersteinEstimator``) say
what differs: how labels become training targets, which objective, which
validation score, what is reported. Everything else, from input validation to
pickling a CUDA-fitted model for a CPU-only machine, lives here once.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
)
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import (
    _check_y,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)
from torch import nn

from ._adam import Adam
from ._device import resolve_device, to_numpy
from ._inputs import (
    check_exactly_representable,
    checked_weights,
    flatten_images,
    hold_out,
    image_shape_for,
    naming,
    power_scaled,
)
from ._margin import auto_margin
from ._state import DevicePortable, unchanged_on_error
from ._training import (
    HKRObjective,
    Objective,
    StoppingRule,
    TrainingSet,
    at_most_threads,
    seeds,
    train,
    training_context,
)
from .nn import ACTIVATIONS, FrozenNetwork, hkr_coefficients, lipschitz_cnn, lipschitz_mlp

_DTYPES = [np.float64, np.float32]  # float32 stays float32 (exact in float64); the rest float64
_PREDICT_CHUNK = 4096  # rows per forward pass at predict time: bounds memory
_PREDICT_BYTES = 2**28  # and at most this much for a row-chunk's largest buffer


class LipschitzEstimatorBase(DevicePortable, BaseEstimator):
    """Shared machinery; not an estimator by itself."""

    _parameter_constraints: ClassVar[dict] = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "image_shape": [None, "array-like"],
        "conv_channels": ["array-like"],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "margin": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
    }

    # ------------------------------------------------------------------ data
    def _validate_X(self, X: Any, y: Any = "no_validation", *, reset: bool) -> Any:
        """Validated features (and labels), float64 or float32; images are flattened.

        Never a lossy cast: the certificates are statements about the input as
        the user gave it, and casting float64 to float32 moves it by up to
        ``2**-24`` of its size, more than the radius of a point near the
        boundary. float32 stays float32 (the certified evaluation converts it
        to float64 exactly, chunk by chunk: half the memory of a float64
        copy); other dtypes become float64, and integers beyond ``2**53`` or
        long doubles, which float64 cannot hold exactly, are refused.
        """
        if not hasattr(X, "dtype") and not hasattr(X, "dtypes"):  # lists: see their dtype
            X = naming("X", np.asarray, X)
        check_exactly_representable(X)
        X = naming("X", flatten_images, X, self.image_shape)
        if (isinstance(y, str) and y == "no_validation") or y is None:
            # y None: scikit-learn's own message says that y is required.
            return naming("X", validate_data, self, X, y, reset=reset, dtype=_DTYPES)
        X = naming("X", validate_data, self, X, reset=reset, dtype=_DTYPES)
        y = naming("y", _check_y, y, estimator=self)
        naming("y", check_consistent_length, X, y)
        return X, y

    @staticmethod
    def _targets_and_weights(X: Any, y: np.ndarray, sample_weight: Any) -> np.ndarray:
        """Check that ``y`` holds class labels; the validated float64 ``sample_weight``."""
        naming("y", check_classification_targets, y)
        return checked_weights(sample_weight, X)

    # --------------------------------------------------------------- network
    def _hidden_sizes(self) -> tuple[int, ...]:
        sizes = self.hidden_layer_sizes
        return (sizes,) if isinstance(sizes, Integral) else tuple(sizes)

    def _architecture(self) -> dict[str, Any]:
        """The parameters that shape the network: a warm start must not change them."""
        return {
            "hidden_layer_sizes": self._hidden_sizes(),
            "image_shape": None if self.image_shape is None else tuple(self.image_shape),
            "conv_channels": None if self.image_shape is None else tuple(self.conv_channels),
            "activation": self.activation,
        }

    def _build_module(
        self, n_features: int, n_outputs: int, generator: torch.Generator
    ) -> nn.Module:
        if self.image_shape is None:
            return lipschitz_mlp(
                n_features, self._hidden_sizes(), n_outputs, self.activation, generator=generator
            )
        return lipschitz_cnn(
            image_shape_for(self.image_shape, n_features),
            tuple(self.conv_channels),
            self._hidden_sizes(),
            n_outputs,
            self.activation,
            generator=generator,
        )

    def _fit_hkr(self, X: Any, y: Any, sample_weight: Any) -> tuple[Any, Any, Any]:
        """The shared part of ``fit``: validate, split, train with the HKR objective.

        Subclasses provide ``_encode_labels(y, weights, warm)`` (sets
        ``classes_``, returns class indices) and ``_validation_score(X, labels,
        weights)`` (a function of the network being trained, higher is
        better). Returns the ``(X, labels, weights)`` triples of all the data,
        of the training part and of the held-out part (None without early
        stopping), and the validation score (None likewise). Callers are
        :func:`atomic`: whatever raises, nothing set here survives.
        """
        warm = self.warm_start and hasattr(self, "module_")
        X, y = self._validate_X(X, y, reset=not warm)
        weights = self._targets_and_weights(X, y, sample_weight)
        labels = self._encode_labels(y, weights, warm)
        self.device_ = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        full = train = (X, labels, weights)
        held_out, validation_score = None, None
        if self.early_stopping:
            train, held_out = hold_out(X, labels, weights, self.validation_fraction, rng)
            validation_score = self._validation_score(*held_out)
        n_classes = len(self.classes_)
        n_outputs = n_classes if n_classes > 2 else 1
        self.margin_ = self._margin_for(*train, rng, n_classes)
        data = self._training_set(*train, n_outputs)
        objective = HKRObjective(self.alpha, self.margin_)
        self._fit_network(data, objective, n_outputs, validation_score, rng)
        return full, train, held_out, validation_score

    def _margin_for(
        self,
        X: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray,
        rng: np.random.RandomState,
        n_classes: int,
    ) -> float:
        """The hinge margin of this fit: ``margin``, or with "auto" measured on the data.

        See :mod:`sklip._margin` for the rule; it draws from ``rng`` only when
        it subsamples (more than ``AUTO_SAMPLE`` rows).
        """
        if isinstance(self.margin, str):
            return auto_margin(X, labels, weights, rng, n_classes)
        return float(self.margin)

    def _fit_network(
        self,
        data: TrainingSet,
        objective: HKRObjective,
        n_outputs: int,
        validation_score: Any,
        rng: np.random.RandomState,
    ) -> None:
        """Build (or, with warm_start, keep) the network and train it on ``data``."""
        init_seed, batch_seed = seeds(rng)
        keep = self.warm_start and hasattr(self, "module_")
        module, history, n_iter = self._network_to_train(
            data.X.shape[1], n_outputs, init_seed, keep
        )
        self._train_and_publish(
            module, history, n_iter, data, objective,
            seed=batch_seed,
            max_epochs=self.max_epochs,
            stopping=StoppingRule(self.n_iter_no_change, self.tol),
            resume=False,
            validation_score=validation_score,
        )  # fmt: skip

    def _train_and_publish(
        self,
        module: nn.Module,
        history: list[dict[str, float]],
        n_iter: int,
        data: TrainingSet | Callable[[nn.Module], TrainingSet],
        objective: Objective,
        *,
        seed: int,
        max_epochs: int,
        stopping: StoppingRule,
        resume: bool,
        validation_score: Any = None,
        on_interrupt: str = "keep",
    ) -> None:
        """Train ``module`` with Adam (batch order from ``seed``), then publish it.

        ``data`` is the training set or a function drawing each epoch's (see
        :func:`~sklip._training.train`).
        """
        optimizer = self._optimizer_for(module, resume=resume)
        generator = torch.Generator(device=self.device_).manual_seed(seed)
        n_iter += train(
            module,
            optimizer,
            data,
            objective,
            batch_size=self.batch_size,
            max_epochs=max_epochs,
            generator=generator,
            stopping=stopping,
            validation_score=validation_score,
            history=history,
            verbose=self.verbose,
            on_interrupt=on_interrupt,
        )
        self._publish(module, history, n_iter, optimizer)

    def _network_to_train(
        self, n_features: int, n_outputs: int, init_seed: int, keep: bool
    ) -> tuple[nn.Module, list[dict[str, float]], int]:
        """A network to train, its history and epoch count: a copy of the fitted one or new.

        Training works on a copy, published only at the end: a fit that raises
        leaves the estimator as it was (never a diverged, NaN-predicting network).
        """
        if keep:
            changed = {
                name: value
                for name, value in self._architecture().items()
                if value != self._fitted_architecture[name]
            }
            if changed:
                raise ValueError(
                    f"warm_start=True cannot change the network's shape, but {changed} "
                    f"differs from the fitted {self._fitted_architecture}; set "
                    "warm_start=False to train a new network."
                )
            module = copy.deepcopy(self.module_)
            history, n_iter = list(self.history_), self.n_iter_
        else:
            # A generator owned by this fit: torch's global RNG is neither read
            # nor changed, so fits in parallel threads give what they give
            # alone. One thread: the orthogonal initialisation's QR differs in
            # its last bits with the thread count (a dask worker has one).
            generator = torch.Generator().manual_seed(init_seed)
            with at_most_threads(1):
                # float32 whatever torch's default dtype: the data are cast to it.
                module = self._build_module(n_features, n_outputs, generator).float()
            history, n_iter = [], 0
            self._fitted_architecture = self._architecture()
        return module.to(self.device_), history, n_iter

    def _optimizer_for(self, module: nn.Module, resume: bool) -> Adam:
        """Adam over ``module``; with ``resume``, carrying on from the last fit's moments.

        The moments and step counts come from ``_optimizer_state`` (kept after
        every fit and partial_fit); the settings (the learning rate)
        are today's, so ``set_params(learning_rate=...)`` between two
        ``partial_fit`` calls takes effect. The saved state is only read (its
        moments are copied): a call that raises leaves it as it was.
        """
        optimizer = Adam(module.parameters(), lr=self.learning_rate)
        state = getattr(self, "_optimizer_state", None) if resume else None
        if state is not None:
            settings = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
            optimizer.load_state_dict(state)  # copies the moments, changes nothing in state
            optimizer.param_groups[0].update(settings)
        return optimizer

    def _publish(
        self,
        module: nn.Module,
        history: list[dict[str, float]],
        n_iter: int,
        optimizer: Adam,
    ) -> None:
        """Make a trained network the fitted one: freeze it, then assign everything.

        The frozen float64 network is what every prediction, score and bound
        reads from now on; building it refuses a diverged network (weights or
        bound not finite, or a zero bound) before anything is assigned.
        """
        network = self._frozen(module)
        self.module_, self.network_ = module, network
        self.history_, self.n_iter_ = history, n_iter
        self.loss_curve_ = [record["loss"] for record in history]
        self.lipschitz_constant_ = network.lipschitz_constant
        pairwise = network.pairwise_lipschitz_constant
        if pairwise is not None:
            self.pairwise_lipschitz_constant_ = to_numpy(pairwise)
        elif hasattr(self, "pairwise_lipschitz_constant_"):
            del self.pairwise_lipschitz_constant_
        self._optimizer_state = optimizer.state_dict()

    def _frozen(self, module: nn.Module) -> FrozenNetwork:
        """The float64 network that predicts and certifies for a trained ``module``."""
        with at_most_threads(1):  # the eval-mode weights do not depend on the thread count
            return FrozenNetwork(module, self.n_features_in_)

    # ----------------------------------------------------------- partial_fit
    def _partial_fit_hkr(
        self, X: Any, y: Any, classes: Any, sample_weight: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The shared part of ``partial_fit``: one epoch over the chunk ``(X, y)``.

        The first call (no fitted network) builds the network for ``classes``;
        later calls train the fitted network on, with the same Adam moments.
        The chunk's HKR coefficients use the chunk's *own* class totals: each
        chunk's loss is then an unbiased estimate of the HKR loss of the
        distribution the chunk samples, whatever came before (a class absent
        from a chunk adds nothing to that chunk's KR term). Subclasses provide
        ``_check_classes(classes)``. Returns the chunk's ``(X, labels, weights)``.
        All or nothing: Ctrl-C or an error leaves the estimator as it was.
        """
        with unchanged_on_error(self), training_context():  # fit_in_chunks calls it directly
            first = not hasattr(self, "module_")
            X, y = self._validate_X(X, y, reset=first)
            weights = self._targets_and_weights(X, y, sample_weight)
            classes, labels = self._chunk_labels(y, classes, first)
            if first:
                self.device_ = resolve_device(self.device)
            n_outputs = len(classes) if len(classes) > 2 else 1
            rng = check_random_state(self.random_state)
            if not first:
                # scikit-learn validates the parameters on the first call only:
                # alpha=-1 or learning_rate=-1 set in between would be trained
                # with, margin="median" measured like "auto".
                self._validate_params()
            # "auto" measures the margin on the first chunk and keeps it: the
            # stream trains one objective.
            if first or self.margin != "auto":
                self.margin_ = self._margin_for(X, labels, weights, rng, len(classes))
            data = self._training_set(X, labels, weights, n_outputs)
            objective = HKRObjective(self.alpha, self.margin_)
            init_seed, batch_seed = seeds(rng)
            module, history, n_iter = self._network_to_train(
                data.X.shape[1], n_outputs, init_seed, not first
            )
            # Each call draws its own batch order; with an int random_state, repeatably.
            self._train_and_publish(
                module, history, n_iter, data, objective,
                seed=batch_seed + n_iter,
                max_epochs=1,
                stopping=StoppingRule(1, 0.0),
                resume=not first,
                on_interrupt="raise",
            )  # fmt: skip
            self.classes_ = classes
        return X, labels, weights

    def _summarise_chunk(self, X: Any, y: Any, sample_weight: Any) -> None:
        """``partial_fit``'s summary (``_after_training``) of a chunk, without training."""
        X, y = self._validate_X(X, y, reset=False)
        weights = self._targets_and_weights(X, y, sample_weight)
        _, labels = self._chunk_labels(y, None, first=False)
        self._after_training(X, labels, weights)

    def _chunk_labels(self, y: np.ndarray, classes: Any, first: bool) -> tuple[Any, np.ndarray]:
        """The classes (given on the first call, fixed after) and the chunk's class indices."""
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            classes = unique_labels(classes)
            self._check_classes(classes)
        else:
            if classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
                raise ValueError(
                    f"classes={unique_labels(classes).tolist()} is not the same as on the "
                    f"first call to partial_fit (or fit): {self.classes_.tolist()}."
                )
            classes = self.classes_
        unknown = np.setdiff1d(np.unique(y), classes)
        if unknown.size:
            raise ValueError(
                f"y holds labels that are not in classes {classes.tolist()}: {unknown.tolist()}."
            )
        return classes, np.searchsorted(classes, y)

    def _training_set(
        self, X: np.ndarray, labels: np.ndarray, weights: np.ndarray, n_outputs: int
    ) -> TrainingSet:
        """Move the training data to ``device_`` once, for the whole fit (in float32).

        Training runs in float32 (it only has to find good weights); what is
        certified is the frozen float64 network evaluated on the float64 data.
        """
        # Only ratios of weights matter: scaled, and the coefficients (weights
        # over class totals) computed in float64, so that tiny or huge weights,
        # or classes weighted 1e-50 apart, leave float32 numbers to train with.
        weights = power_scaled(weights)
        class_sums = np.bincount(labels, weights=weights, minlength=max(n_outputs, 2))
        targets = labels if n_outputs > 1 else 2.0 * labels - 1
        coefficients = hkr_coefficients(
            torch.as_tensor(targets, dtype=torch.float64 if n_outputs == 1 else None),
            n_outputs,
            torch.tensor(weights, dtype=torch.float64),  # a copy: the user's may be read-only
            torch.as_tensor(class_sums, dtype=torch.float64),
        )
        return TrainingSet(self._features_on_device(X), coefficients.float().to(self.device_))

    def _scored(self, metric: Any, X: Any, y: Any, sample_weight: Any) -> float:
        """``metric(y, predict(X))``, weighted by checked (non-negative) ``sample_weight``."""
        predicted = self.predict(X)
        weights = None if sample_weight is None else checked_weights(sample_weight, predicted)
        return float(naming("y", metric, y, predicted, sample_weight=weights))

    def _features_on_device(self, X: np.ndarray) -> torch.Tensor:
        """``X`` in float32 on ``device_``, for training; values float32 cannot hold are refused."""
        with np.errstate(over="ignore"):  # values beyond float32 are refused just below
            X = X.astype(np.float32, copy=not X.flags.writeable)  # torch needs writable memory
        if not _all_finite(X):
            raise ValueError(
                "X has values too large for float32 training (above 3.4e38): rescale "
                "the features, e.g. with StandardScaler."
            )
        return torch.from_numpy(X).to(self.device_)

    def _outputs(self, X: np.ndarray, module: nn.Module) -> np.ndarray:
        """Outputs ``(n, n_outputs)`` of a network being trained (float32), as float64."""
        module.eval()
        outputs = np.empty((X.shape[0], module[-1].out_features))
        with torch.no_grad():
            for start in range(0, X.shape[0], _PREDICT_CHUNK):
                rows = X[start : start + _PREDICT_CHUNK]
                chunk = torch.tensor(rows, dtype=torch.float32, device=self.device_)
                outputs[start : start + _PREDICT_CHUNK] = to_numpy(module(chunk))
        return outputs

    def _evaluate(
        self, X: np.ndarray, *, bounds: bool = False, network: FrozenNetwork | None = None
    ) -> Any:
        """The fitted network on validated ``X``: its outputs, and with ``bounds`` their rounding.

        Returns the outputs ``(n, n_outputs)``, or with ``bounds`` the triple
        ``(outputs, error, certificate_error)`` (see
        :class:`~sklip.nn.FrozenOutputs`); all float64, computed by the frozen
        network (the same arithmetic either way). A row's last bits may depend
        on which rows share its batch (matrix products sum in another order);
        the rounding bound holds for any order, so a decision that can flip
        that way certifies 0. Outputs that overflowed to NaN raise.
        ``network`` replaces the fitted one (``network_``).
        """
        network = self.network_ if network is None else network
        n = X.shape[0]
        outputs = np.empty((n, network.n_outputs))
        error, certificate = (np.empty(n), np.empty(n)) if bounds else (None, None)
        # Written into preallocated arrays: a list of per-chunk results
        # interleaved with the chunks' temporaries fragmented the heap (measured:
        # 740 MB of extra RSS for 37 MB of data at the end of a W1 fit, 120 MB
        # this way).
        # Fewer rows at once where a layer's buffer per row is large (a Cayley
        # convolution unfolds a whole image per output pixel: 30 GB for 1347
        # rows of 28x28 images).
        step = max(1, min(_PREDICT_CHUNK, _PREDICT_BYTES // max(network.row_bytes, 1)))
        for start in range(0, n, step):
            rows = slice(start, start + step)
            # A float64 copy: exact from float32, and a read-only input (a memory
            # map) stays untouched.
            chunk = torch.tensor(X[rows], dtype=torch.float64, device=self.device_)
            if not bounds:
                outputs[rows] = to_numpy(network.outputs(chunk))
                continue
            result = network(chunk)
            outputs[rows] = to_numpy(result.outputs)
            error[rows] = to_numpy(result.error)
            certificate[rows] = to_numpy(result.certificate_error)
        if np.isnan(outputs).any():
            raise ValueError(
                "The network's output overflowed float64 on some rows of X (values too "
                "large); rescale the features."
            )
        return (outputs, error, certificate) if bounds else outputs

    def _forward(self, X: Any, *, bounds: bool = False) -> Any:
        """:meth:`_evaluate` on new data, validated against the fitted data."""
        check_is_fitted(self, "network_")
        return self._evaluate(self._validate_X(X, reset=False), bounds=bounds)

    def to_torch(self) -> nn.Sequential:
        """The fitted network as a plain ``nn.Sequential`` (weights baked in), in float64.

        These are the frozen float64 weights that :meth:`decision_function`
        and every certificate use, on the fitted device. Fed float64 rows
        without autograd, it computes :meth:`decision_function`'s values (up
        to the summation order of the matrix products, within the rounding
        bound the certificates allow for). ``.float()`` gives a faster float32
        copy, whose weights and arithmetic are no longer the certified ones.
        """
        check_is_fitted(self, "network_")
        return copy.deepcopy(self.network_.module)

    def to_onnx(self, path: Any = None, *, dtype: str = "float64", with_radius: bool = True) -> Any:
        """The fitted estimator as an ONNX model, its certificate inside.

        See :func:`sklip.to_onnx`, which this calls, for the outputs and the
        guarantee; it also exports a Pipeline ending with this estimator.

        Parameters
        ----------
        path : str or path-like, optional
            Where to write the model.
        dtype : {"float64", "float32"}, default="float64"
        with_radius : bool, default=True

        Returns
        -------
        onnx.ModelProto
        """
        from ._onnx_export import to_onnx

        return to_onnx(self, path, dtype=dtype, with_radius=with_radius)


def _all_finite(X: np.ndarray, rows: int = 65536) -> bool:
    """Whether every value of ``X`` is finite, checked a block of rows at a time.

    A whole-array check builds masks as large as the data (torch.isfinite on a
    2e6 x 16 float32 training set: 1.5x the data's memory at the fit's peak,
    measured), for a question one block at a time answers as well.
    """
    return all(np.isfinite(X[start : start + rows]).all() for start in range(0, len(X), rows))
