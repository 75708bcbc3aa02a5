"""LipschitzClassifier: a 1-Lipschitz network trained with the HKR loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.metrics import accuracy_score

from ._base import LipschitzEstimatorBase
from ._calibration import fit_temperature, log_softmax, softmax
from ._state import atomic
from .robustness import radius_from_outputs


class LipschitzClassifier(ClassifierMixin, LipschitzEstimatorBase):
    r"""Certifiably robust classifier: a 1-Lipschitz network trained with HKR.

    The network is 1-Lipschitz by construction (orthonormalised dense layers,
    norm-bounded convolutions, sorting activations) and trained with the
    hinge-Kantorovich-Rubinstein loss
    :math:`-\mathrm{KR}(f) + \alpha\, E[(m - y f(x))_+]`
    (Serrurier et al., CVPR 2021). Because the network's Lipschitz constant
    ``L`` is bounded from its actual weights, no perturbation of L2 norm below
    ``certified_radius(x)`` (:math:`|f(x)| / L` for two classes) can change the
    prediction at ``x``.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(128, 128)
        Widths of the dense hidden layers (the dense head of a CNN). Even
        widths with ``activation="groupsort"``.
    image_shape : tuple (C, H, W) or None, default=None
        If given, a convolutional network is built; ``X`` may then be flat
        ``(n, C*H*W)`` (as after a Pipeline step) or ``(n, C, H, W)``. One entry
        may be -1, inferred from the number of features.
    conv_channels : tuple of int, default=(16, 32)
        Channels of the convolution blocks (CNN only). Each block is a 3x3
        convolution, the activation and a 2x2 L2-norm pooling.
    activation : {"groupsort", "groupsort4", "groupsort8", "fullsort", "relu"}, default="groupsort"
        "groupsort" (pairwise MaxMin) and "fullsort" preserve gradient norms;
        "relu" is 1-Lipschitz but does not.
    alpha : float, default=100.0
        Weight of the hinge term (the paper's λ). Large: accuracy first; small:
        robustness first; 0: pure Wasserstein critic. The default was chosen
        on ``benchmarks/tabular.py``'s nine data sets, with ``margin="auto"``.
    margin : float or "auto", default="auto"
        Hinge margin, in the units of ``X``: points are pushed at least this far
        from the decision boundary, which sets the scale of the certified radii.
        "auto" measures it on the training data (``margin_``): a quarter (two
        classes) or an eighth (more) of the weighted median distance from a
        training point to the nearest training point of another class,
        measured on about 4096 rows (drawn per class with ``random_state``
        when there are more); a float is used as given. Either way, put a
        scaler in front: the margin is one length for every feature. From deel-lip:
        ``margin = min_margin / 2``; deel-torchlip's convex weight ``a``
        corresponds to ``alpha = a / (1 - a)``.
    max_epochs : int, default=100
        Most passes over the training data.
    batch_size : int, default=256
    learning_rate : float, default=5e-3
        Adam's step size.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified), stop when
        its accuracy has not improved by ``tol`` for ``n_iter_no_change``
        epochs, and keep the best epoch's weights. Otherwise training stops
        when the training loss has not improved by ``tol`` for
        ``n_iter_no_change`` epochs. ``partial_fit`` refuses it, as
        scikit-learn does.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
    device : str or torch.device, default="auto"
        "auto" uses CUDA when available, else the CPU; or "cpu", "cuda",
        "cuda:1".
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, the batch order and the validation split.
        With an int, results on the CPU are exactly reproducible.
    verbose : int, default=0
        1 shows a progress bar with the running loss (tqdm, when installed).
    warm_start : bool, default=False
        Continue training the fitted network on the next ``fit``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined when ``X`` has string feature names (a DataFrame).
    module_ : torch.nn.Sequential
        The constrained network, as trained (float32); ``warm_start`` and
        ``partial_fit`` train it on.
    network_ : sklip.nn.FrozenNetwork
        Its weights frozen in float64 when the fit ended: every prediction,
        score, radius and bound reads these arrays, and the network bounds
        the rounding of its own forward pass.
    device_ : torch.device
    margin_ : float
        The hinge margin the network was trained with: ``margin``, or the
        value "auto" measured (``partial_fit``: on the first chunk, then kept).
        ``predict_proba``'s temperature is searched in its units.
    lipschitz_constant_ : float
        Upper bound of the network's Lipschitz constant computed from the
        frozen weights (float64); ``certified_radius`` uses it for two classes.
    pairwise_lipschitz_constant_ : ndarray of shape (n_classes, n_classes)
        Bounds of the Lipschitz constants of the score differences
        ``f_i - f_j`` (multiclass only), used by ``certified_radius``.
    temperature_ : float
        Scale ``a > 0`` of the scores in ``predict_proba``, fitted on the
        training data (after ``partial_fit``: on the last chunk).
    n_iter_ : int
        Epochs run (summed over warm starts; one per ``partial_fit`` call).
    loss_curve_ : list of float
        Training loss per epoch.
    history_ : list of dict
        Per epoch: ``loss``, ``kr``, ``hinge``, ``train_accuracy``,
        ``epoch_time`` and, with early stopping, ``validation_score``.

    See Also
    --------
    sklearn.neural_network.MLPClassifier : The unconstrained counterpart.

    Examples
    --------
    >>> from sklearn.datasets import make_moons
    >>> from sklip import LipschitzClassifier
    >>> X, y = make_moons(200, noise=0.1, random_state=0)
    >>> clf = LipschitzClassifier(margin=0.1, max_epochs=50, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    >>> radius = clf.certified_radius(X[:3])  # no L2 change smaller flips them
    """

    # fit_in_chunks may train its middle chunks without the summary (temperature_).
    _trains_chunks_unsummarised = True

    def __init__(
        self,
        hidden_layer_sizes=(128, 128),
        image_shape=None,
        conv_channels=(16, 32),
        activation="groupsort",
        alpha=100.0,
        margin="auto",
        max_epochs=100,
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
        self.alpha = alpha
        self.margin = margin
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

    @_fit_context(prefer_skip_nested_validation=True)
    @atomic
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> LipschitzClassifier:
        """Train the network on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        y : array-like of shape (n_samples,)
            Class labels (any type scikit-learn accepts); at least two classes.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights; all class means and the hinge are weighted.

        Returns
        -------
        self
        """
        _, train, _, _ = self._fit_hkr(X, y, sample_weight)
        self._after_training(*train)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    @atomic
    def partial_fit(
        self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None
    ) -> LipschitzClassifier:
        """Train the network on ``(X, y)`` for one epoch: one pass over this chunk.

        The first call builds the network (as ``fit`` would, without its
        stopping rules) and needs ``classes``; each later call trains the same
        network on with the same Adam state, adds one to ``n_iter_`` and one
        record to ``history_``. ``fit`` starts afresh. As in scikit-learn,
        ``early_stopping=True`` is refused: one pass holds nothing out.

        The KR class means of a chunk are taken within the chunk (its own class
        weight totals), so every chunk's loss estimates the loss on the
        distribution it comes from; chunks should hold every class (rows in
        random order). ``temperature_`` is refitted on each chunk.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        y : array-like of shape (n_samples,)
            Labels of this chunk; need not hold every class.
        classes : array-like of shape (n_classes,), default=None
            Every class the stream holds: required on the first call (when the
            estimator is not fitted), optional after, where it must not change.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.datasets import make_moons
        >>> from sklip import LipschitzClassifier
        >>> X, y = make_moons(2000, noise=0.1, random_state=0)
        >>> clf = LipschitzClassifier(margin=0.1, random_state=0)
        >>> for epoch in range(10):
        ...     for chunk in np.array_split(np.arange(2000), 4):
        ...         clf = clf.partial_fit(X[chunk], y[chunk], classes=[0, 1])
        >>> clf.n_iter_
        40
        >>> clf.score(X, y) > 0.9
        True
        """
        if self.early_stopping:
            raise ValueError(
                "partial_fit does not support early_stopping=True (one pass over a chunk "
                "holds nothing out); set early_stopping=False or use fit."
            )
        self._after_training(*self._partial_fit_hkr(X, y, classes, sample_weight))
        return self

    def _after_training(self, X: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> None:
        """What follows training: ``temperature_``, fitted on the training data."""
        scores = self._class_scores(self._evaluate(X))
        self.temperature_ = fit_temperature(scores, labels, weights, self.margin_)

    def _check_classes(self, classes: np.ndarray) -> None:
        if len(classes) < 2:
            raise ValueError(
                f"LipschitzClassifier needs at least 2 classes, got classes={classes.tolist()}."
            )

    def _encode_labels(self, y: np.ndarray, weights: np.ndarray, warm: bool) -> np.ndarray:
        classes, labels = np.unique(y, return_inverse=True)
        weighted = np.bincount(labels, weights=weights, minlength=len(classes)) > 0
        if weighted.sum() < 2:
            present = classes[weighted].tolist()
            raise ValueError(
                "LipschitzClassifier needs at least 2 classes with positive sample_weight, "
                f"got {len(present)} class{'' if len(present) == 1 else 'es'}: {present}."
            )
        if warm:
            unseen = np.setdiff1d(classes, self.classes_)
            if unseen.size:
                raise ValueError(
                    f"warm_start=True but y holds classes not seen before: {unseen.tolist()}."
                )
            return np.searchsorted(self.classes_, y)
        self.classes_ = classes
        return labels

    def _validation_score(self, X: np.ndarray, labels: np.ndarray, weights: np.ndarray):
        """A closure giving the weighted accuracy of the current network on (X, labels)."""

        def accuracy(module: torch.nn.Module) -> float:
            predicted = self._class_scores(self._outputs(X, module)).argmax(axis=1)
            return float(np.average(predicted == labels, weights=weights))

        return accuracy

    @staticmethod
    def _class_scores(outputs: np.ndarray) -> np.ndarray:
        """One score per class: ``(0, f)`` for a binary network's single output."""
        if outputs.shape[1] == 1:
            return np.hstack((np.zeros_like(outputs), outputs))
        return outputs

    def decision_function(self, X: Any) -> np.ndarray:
        """The network's scores: ``f(x)`` of shape (n,) for two classes, (n, K) otherwise.

        For two classes, ``f(x) > 0`` predicts ``classes_[1]`` and ``|f(x)|``
        is at most ``lipschitz_constant_`` times the L2 distance from ``x`` to
        the decision boundary.
        """
        outputs = self._forward(X)
        return outputs[:, 0] if outputs.shape[1] == 1 else outputs

    def predict(self, X: Any) -> np.ndarray:
        """The class of highest score (``f(x) > 0`` -> ``classes_[1]`` for two classes)."""
        scores = self._class_scores(self._forward(X))
        return self.classes_[scores.argmax(axis=1)]

    def predict_proba(self, X: Any) -> np.ndarray:
        r"""Class probabilities: a softmax of the scores scaled by ``temperature_``.

        :math:`p_k(x) \propto \exp(a f_k(x))` (two classes: :math:`p_1 =
        \sigma(a f(x))`), with ``a = temperature_ > 0`` fitted after training to
        minimise the weighted log-loss on the training data (temperature
        scaling). It is a monotone map of the scores, so its argmax is
        ``predict``; ``a`` only sets how confident the probabilities are.
        """
        scores = self._class_scores(self._forward(X))
        return softmax(self.temperature_ * scores)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`, computed without underflow.

        Taken as a log-softmax, not as ``log(predict_proba(X))``: far from the
        boundary a probability underflows to 0, whose logarithm (-inf) would
        say nothing of how far.
        """
        scores = self._class_scores(self._forward(X))
        return log_softmax(self.temperature_ * scores)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy on ``(X, y)`` (weighted by ``sample_weight``), as in scikit-learn.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        float
        """
        return self._scored(accuracy_score, X, y, sample_weight)

    def certified_radius(self, X: Any) -> np.ndarray:
        r"""Certified L2 robustness radius of each prediction, in the units of ``X``.

        No perturbation :math:`\delta` with :math:`\|\delta\|_2` below the radius
        changes ``predict(x + δ)``, as computed by this estimator: the frozen
        float64 network on the float64 input, on any device and in any batch.
        Two classes: :math:`|f(x)| / L`. Multiclass, predicted class ``c``:
        :math:`\min_{j \ne c} (f_c(x) - f_j(x)) / L_{cj}` with :math:`L_{cj}`
        the bound of ``pairwise_lipschitz_constant_``. Both bounds are computed
        from the frozen weights that make the predictions, and the radius is
        reduced by a proven bound of the floating-point rounding of the
        forward pass (:func:`sklip.robustness.radius_from_outputs`), so 0
        means the point is on the decision boundary or within rounding of it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        outputs, _, error = self._forward(X, bounds=True)
        return radius_from_outputs(
            outputs,
            self.lipschitz_constant_,
            getattr(self, "pairwise_lipschitz_constant_", None),
            error=error,
            error_growth=self.network_.error_growth,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.input_tags.allow_nan = False
        return tags
