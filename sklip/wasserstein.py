r"""Wasserstein-1 between two sample sets by the Kantorovich-Rubinstein dual.

.. math::
    W_1(P, Q) = \max_{\mathrm{Lip}(f) \le 1} \; E_Q[f] - E_P[f]

A 1-Lipschitz network is trained to maximise the right-hand side (the "critic"
of Wasserstein GANs, here with an exact Lipschitz guarantee instead of a
penalty). Its dual value estimates the distance; dividing it by the network's
computed Lipschitz bound gives a *guaranteed* lower bound of the distance
between the two empirical measures.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from ._base import LipschitzEstimatorBase
from ._dual import certified_lower_bound, dual_value, midpoint
from ._held_out_bound import HeldOutCritics
from ._inputs import checked_weights
from ._state import atomic
from ._streaming import check_two_sets, streamed_wasserstein

__all__ = ["WassersteinEstimator", "wasserstein_distance"]


class WassersteinEstimator(ClassifierMixin, LipschitzEstimatorBase):
    r"""Wasserstein-1 distance between two sample sets, with its optimal potential.

    ``fit(X, y)`` takes the two sets stacked in ``X``, ``y`` telling them apart
    (exactly two labels). A 1-Lipschitz network ``f`` is trained to maximise the
    Kantorovich-Rubinstein dual

    .. math::
        \mathrm{KR}(f) = E_w[f \mid y = c_1] - E_w[f \mid y = c_0]

    with :math:`(c_0, c_1)` = ``classes_``,

    whose maximum over 1-Lipschitz ``f`` is :math:`W_1` between the two
    (sample-weighted) empirical measures. ``alpha > 0`` adds the HKR hinge,
    which also makes ``f`` a robust classifier of the two sets.

    Why held-out early stopping is on by default: with few samples in high
    dimension, the empirical measures are farther apart than the populations
    they come from (each point is isolated, so exact optimal transport between
    the samples, e.g. POT's ``emd2``, is biased upward, increasingly with the
    dimension). A critic trained to convergence learns those sample
    particularities: its dual value on the training points overshoots while its
    value on new points drops. Keeping the critic with the best *held-out* dual
    value targets the population distance instead.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(128, 128)
        A third hidden layer, ``(128, 128, 128)``, brings potentials made of
        several cones (a min of distances to points, the shape of many
        optimal transports) 1 to 3 points of error closer at 2000 rows per
        set, translations and scalings no worse, and makes
        :func:`sklip.wasserstein_test` more powerful against a change of
        scale, for about 1.85x the time per epoch (``benchmarks/RESULTS.md``).
    image_shape : tuple (C, H, W) or None, default=None
        Convolutional critic for images, as in :class:`LipschitzClassifier`.
    conv_channels : tuple of int, default=(16, 32)
    activation : {"groupsort", "groupsort4", "groupsort8", "fullsort", "relu"}, default="groupsort8"
        Groups of 8 sorted features. Optimal potentials are often cone-shaped
        (a point mass against a cloud, a radial scaling), and groups of 8
        approximate cones far better than pairs: on such cases the estimate
        comes out 1 to 5 % low where pairs ("groupsort") give 3 to 8 %, and
        :func:`sklip.wasserstein_test` is far more powerful against a change
        of scale (``benchmarks/RESULTS.md``). Pairs cost about 1/1.4 of the
        time per epoch on the CPU; see :func:`sklip.nn.make_activation`.
    alpha : float, default=0.0
        Hinge weight; 0 gives the pure Kantorovich-Rubinstein critic.
    margin : float or "auto", default=1.0
        Hinge margin (only used when ``alpha > 0``); "auto" measures it on the
        data as :class:`LipschitzClassifier` does (``margin_``).
    max_epochs : int, default=300
        With ``n_iter_no_change=20``, room for the critic to keep improving:
        cone-shaped potentials (a point mass, mixtures moved towards centres)
        go on gaining for 100 to 300 epochs (measured: -15 % -> -7 % on the
        digits case of ``benchmarks/wasserstein_accuracy.py``, -3.4 % -> -1.2 %
        on a point mass in d = 64), while a translation stops after 20 to 30.
    batch_size : int, default=2048
    learning_rate : float, default=1e-2
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of each set, keep the critic with the
        best held-out dual value, stop after ``n_iter_no_change`` epochs
        without a gain of ``tol``. ``partial_fit`` ignores it.
    validation_fraction : float, default=0.2
    n_iter_no_change : int, default=20
    tol : float, default=1e-4
    device : str or torch.device, default="auto"
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    warm_start : bool, default=False

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two set labels; ``f`` is larger on ``classes_[1]``.
    distance_ : float
        Dual value of the critic on all the data given to ``fit``: the estimate
        of :math:`W_1`. Never negative: a critic whose dual value came out
        negative is replaced by its negation (also 1-Lipschitz).
    lower_bound_ : float
        About ``distance_ / lipschitz_constant_``: a guaranteed lower bound of
        the :math:`W_1` between the two (weighted) empirical measures given to
        ``fit``, as float64 holds them. The dual value's own floating-point
        error (the frozen network's per-point rounding bound and that of the
        means) is subtracted first, so it holds for the exact value.
    confidence_lower_bound_ : float
        With early stopping: a lower bound of the *population* :math:`W_1`
        (of the distributions the sets were drawn from), holding with
        probability at least 95 % (asymptotically). A quarter of the held-out
        rows picks the best epoch (and sign) of the training trajectory; the
        other three quarters, which neither trained nor chose, evaluate that
        critic ``f``: its dual value there estimates
        :math:`E_Q f - E_P f \le W_1` without bias, and the bound subtracts
        Student's t quantile (1.645 on many rows; Welch's degrees of freedom,
        weighted rows counted by their effective number) times the standard
        error (central limit theorem). This critic may be another epoch than
        the published one, which all held-out rows chose. Floored at 0. NaN
        after a warm start (the earlier critic may have seen the held-out
        rows) and when a set's bounding rows count fewer than 2 effective
        rows (:math:`(\sum w)^2 / \sum w^2`, the row count for equal
        weights); :func:`sklip.wasserstein_test` gives a bound at any level.
    validation_distance_ : float
        Dual value on the held-out part only (with early stopping). The best
        epoch is chosen by this same value, so it is biased upwards as an
        estimate of the population's :math:`W_1` (the maximum of noisy
        values); ``distance_`` on all the data is the estimate to report.
    lipschitz_constant_ : float
    offset_ : float
        Subtracted from the network's output in ``decision_function``.
    module_, device_, margin_, n_features_in_, n_iter_, loss_curve_, history_
        As in :class:`LipschitzClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklip import WassersteinEstimator
    >>> rng = np.random.RandomState(0)
    >>> P, Q = rng.normal(size=(500, 2)), rng.normal(size=(500, 2)) + [3.0, 4.0]
    >>> X, y = np.vstack([P, Q]), np.repeat([0, 1], 500)
    >>> est = WassersteinEstimator(random_state=0).fit(X, y)
    >>> round(est.distance_)  # the true W1 is the translation's length, 5
    5
    """

    def __init__(
        self,
        hidden_layer_sizes=(128, 128),
        image_shape=None,
        conv_channels=(16, 32),
        activation="groupsort8",
        alpha=0.0,
        margin=1.0,
        max_epochs=300,
        batch_size=2048,
        learning_rate=1e-2,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=20,
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
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> WassersteinEstimator:
        """Train the critic between the two sets of ``X`` that ``y`` labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Both sample sets, stacked.
        y : array-like of shape (n_samples,)
            Exactly two distinct labels: which set each row belongs to.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights: each set is the weighted empirical measure
            (its weights need not sum to anything in particular).

        Returns
        -------
        self
        """
        warm = self.warm_start and hasattr(self, "module_")
        full, _, held_out, critics = self._fit_hkr(X, y, sample_weight)
        self._summarise(*full, held_out=held_out)
        if held_out is not None:
            # A warm start began from a critic that may have seen the held-out
            # rows: no bound.
            self.confidence_lower_bound_ = float("nan") if warm else self._held_out_bound(critics)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    @atomic
    def partial_fit(
        self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None
    ) -> WassersteinEstimator:
        """Train the critic on ``(X, y)`` for one epoch: one pass over this chunk.

        As :meth:`sklip.LipschitzClassifier.partial_fit`, with ``classes`` the two
        set labels, and one difference: ``early_stopping`` (on by default, to
        keep ``fit``'s many passes over the same samples from learning their
        particularities) is ignored, as a stream brings new samples. Set means
        are taken within the chunk, which should hold both sets; ``distance_``,
        ``lower_bound_`` and ``offset_`` are those of the last chunk.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Set labels of this chunk.
        classes : array-like of shape (2,), default=None
            The two set labels: required on the first call (when the estimator
            is not fitted), optional after, where they must not change.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from sklip import WassersteinEstimator
        >>> rng = np.random.RandomState(0)
        >>> est = WassersteinEstimator(random_state=0)
        >>> for _ in range(30):  # 30 chunks of 1000 new samples per set
        ...     P, Q = rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)) + [3.0, 4.0]
        ...     est = est.partial_fit(np.vstack([P, Q]), np.repeat([0, 1], 1000), classes=[0, 1])
        >>> round(est.distance_)
        5
        """
        self._after_training(*self._partial_fit_hkr(X, y, classes, sample_weight))
        return self

    def _after_training(self, X: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> None:
        """What follows a ``partial_fit`` epoch: the chunk's figures."""
        self._summarise(X, labels, weights, held_out=None)

    def _summarise(self, X, labels, weights, held_out) -> None:
        """``distance_``, ``lower_bound_``, ``offset_`` (and the held-out value) of the critic.

        The critic is first oriented: if its dual value on these sets is
        negative, ``-f`` (1-Lipschitz too) has the opposite, positive value, so
        the published critic is ``-f`` and no estimate is ever negative.
        A chunk that holds a single set (possible with ``partial_fit``) has no
        dual value: the previous chunk's figures stay (NaN after a first call).
        """
        if np.bincount(labels, weights=weights, minlength=2).min() <= 0:
            if not hasattr(self, "distance_"):
                self.distance_ = self.lower_bound_ = float("nan")
                self.offset_ = 0.0
            return
        potential, error, _ = self._evaluate(X, bounds=True)
        potential = potential[:, 0]
        value = dual_value(potential, labels, weights)
        if value < 0:  # negation is exact: -f's dual value is exactly -value
            self._negate_critic()
            potential, value = -potential, -value
        self.distance_ = value
        self.lower_bound_ = certified_lower_bound(
            self.distance_, potential, error, labels, weights, self.lipschitz_constant_
        )
        if held_out is not None:
            X_val, labels_val, weights_val = held_out
            outputs = self._evaluate(X_val)[:, 0]
            self.validation_distance_ = dual_value(outputs, labels_val, weights_val)
        else:
            for name in ("validation_distance_", "confidence_lower_bound_"):
                if hasattr(self, name):
                    delattr(self, name)  # a previous fit's: not of this critic
        self.offset_ = midpoint(potential, labels, weights) if self.alpha == 0 else 0.0

    def _held_out_bound(self, critics: HeldOutCritics) -> float:
        """``confidence_lower_bound_``: the bounding rows' CLT bound of the critic kept.

        That critic (an epoch of the trajectory, chosen by the other quarter
        of the held-out rows, see :mod:`sklip._held_out_bound`) is frozen as the
        published one is and evaluated in float64 with its rounding bounds.
        NaN when the bounding rows hold fewer than 2 of a set.
        """
        if not critics.can_bound():
            return float("nan")
        module = copy.deepcopy(self.module_)
        module.load_state_dict(critics.state)
        network = self._frozen(module)
        rows = critics.X[critics.bounding]
        outputs, error, _ = self._evaluate(rows, bounds=True, network=network)
        return critics.bound(outputs[:, 0], error, network.lipschitz_constant)

    def _negate_critic(self) -> None:
        """Publish ``-f``: the frozen network, the trained one and Adam's first moments.

        Negating the last layer's weight and bias negates ``f`` exactly (its
        row normalisation is odd), and the gradient of every loss with respect
        to those two tensors, so training on continues from the same point.
        """
        module = copy.deepcopy(self.module_)
        last = module[-1]
        with torch.no_grad():
            last.weight.neg_()
            last.bias.neg_()
        state = copy.deepcopy(self._optimizer_state)
        n_parameters = len(list(module.parameters()))
        for index in (n_parameters - 2, n_parameters - 1):
            moments = state["state"].get(index, {})
            if "exp_avg" in moments:
                moments["exp_avg"].neg_()
        self.module_, self.network_ = module, self.network_.negated()
        self._optimizer_state = state

    def _check_classes(self, classes: np.ndarray) -> None:
        if len(classes) != 2:
            raise ValueError(
                "WassersteinEstimator needs exactly two classes, one per sample set; got "
                f"classes={classes.tolist()}."
            )

    def _validation_score(
        self, X: np.ndarray, labels: np.ndarray, weights: np.ndarray
    ) -> HeldOutCritics:
        """The held-out dual value of the critic being trained (and the bound's critic)."""
        return HeldOutCritics(self._outputs, X, labels, weights)

    def _encode_labels(self, y: np.ndarray, weights: np.ndarray, warm: bool) -> np.ndarray:
        classes, labels = np.unique(y, return_inverse=True)
        counts = np.bincount(labels, minlength=len(classes))
        totals = np.bincount(labels, weights=weights, minlength=len(classes))
        present = classes[totals > 0].tolist()
        if classes.shape[0] > 2 or len(present) != 2:
            found = classes.tolist() if classes.shape[0] > 2 else present
            raise ValueError(
                "Only binary classification is supported: y must hold exactly two labels "
                "(classes) with positive sample_weight, one per sample set; got "
                f"{len(found)} class{'' if len(found) == 1 else 'es'}: {found[:10]}."
            )
        if counts.min() < 2:
            small = classes[counts.argmin()].tolist()  # 0, not np.int64(0)
            raise ValueError(
                f"Each sample set needs at least 2 samples; set {small!r} has {counts.min()}."
            )
        if warm and not np.array_equal(classes, self.classes_):
            raise ValueError(
                f"warm_start=True but y holds labels {classes.tolist()}, not the fitted "
                f"{self.classes_.tolist()}."
            )
        self.classes_ = classes
        return labels

    def decision_function(self, X: Any) -> np.ndarray:
        """The potential ``f(x) - offset_`` (n,): larger on ``classes_[1]``.

        With ``alpha = 0`` the dual fixes ``f`` only up to a constant, so
        ``offset_`` centres it halfway between the two sets' mean potentials;
        with ``alpha > 0`` the hinge fixes the zero level and ``offset_ = 0``.
        """
        return self._forward(X)[:, 0] - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """The set each point is closer to, in the sense of the potential."""
        scores = self.decision_function(X)
        return self.classes_[(scores > 0).astype(int)]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Dual value ``E_w[f | classes_[1]] - E_w[f | classes_[0]]`` on ``(X, y)``.

        Higher is a better critic, so ``GridSearchCV`` and ``cross_val_score``
        select the critic whose held-out dual value (the estimate of the
        population distance) is largest.
        """
        check_is_fitted(self, "network_")
        X, y = self._validate_X(X, y, reset=False)
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"y holds labels the estimator was not fitted on: {unknown}.")
        weights = checked_weights(sample_weight, X)
        labels = np.searchsorted(self.classes_, y)
        totals = np.bincount(labels, weights=weights, minlength=2)
        if totals.min() <= 0:
            raise ValueError(
                "score needs both sample sets in y, each with positive sample_weight; got "
                f"totals {dict(zip(self.classes_.tolist(), totals.tolist(), strict=True))}."
            )
        return dual_value(self._evaluate(X)[:, 0], labels, weights)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.input_tags.allow_nan = False
        return tags


def wasserstein_distance(
    X_p: Any,
    X_q: Any,
    sample_weight_p: Any = None,
    sample_weight_q: Any = None,
    *,
    chunk_size: int | None = None,
    **params: Any,
) -> float:
    r"""Wasserstein-1 distance between two sample sets, estimated by a 1-Lipschitz critic.

    .. math::
        W_1(P, Q) = \min_{\pi \in \Pi(P, Q)} E_{(x, x') \sim \pi} \|x - x'\|_2
                  = \max_{\mathrm{Lip}(f) \le 1} E_Q[f] - E_P[f]

    The right-hand side (Kantorovich-Rubinstein duality) is maximised over
    1-Lipschitz networks by :class:`WassersteinEstimator`; the estimate is the
    dual value of the trained critic. Time and memory are linear in the number
    of samples, where exact optimal transport needs :math:`O(n^3)` time and
    :math:`O(n^2)` memory.

    Parameters
    ----------
    X_p, X_q : array-like of shape (n_p, n_features), (n_q, n_features)
        Samples of the two distributions.
    sample_weight_p, sample_weight_q : array-like, optional
        Non-negative weights of each set's samples (default: uniform).
    chunk_size : int, default=None
        Stream the two sets instead of loading them: ``X_p`` and ``X_q`` may
        then be memory maps (``np.load(path, mmap_mode="r")``) or dask arrays,
        read ``chunk_size`` rows at a time (both sets in their proportions, so
        their rows should be in random order). The critic is trained by
        ``partial_fit`` on each chunk, ``max_epochs`` passes (1 unless given,
        no early stopping), and the estimate is its dual value over all the
        samples, also read chunk by chunk: memory stays flat in the number of
        samples.
    **params
        Parameters of :class:`WassersteinEstimator` (``random_state``,
        ``max_epochs``, ``hidden_layer_sizes``, ...).

    Returns
    -------
    float
        The estimate of :math:`W_1(P, Q)` (the fitted ``distance_``).

    Raises
    ------
    TypeError
        If ``X_p`` or ``X_q`` is a scipy sparse matrix (dense arrays are needed).
    ValueError
        If a set is not 2-D or has fewer than 2 rows, the sets have different numbers of
        features, a set's weights are not one finite non-negative number per
        row or sum to zero, or ``chunk_size`` is not an integer of at least 2.
        Shapes are checked from ``.shape`` and the weights chunk by chunk, so
        a streamed set is not read before training.

    References
    ----------
    C. Villani, *Optimal Transport: Old and New*, Springer 2009, Thm. 5.10
    (duality). M. Arjovsky, S. Chintala, L. Bottou, "Wasserstein GAN", ICML 2017
    (neural critics). M. Serrurier et al., "Achieving robustness in
    classification using optimal transport with hinge regularization", CVPR 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from sklip import wasserstein_distance
    >>> rng = np.random.RandomState(0)
    >>> P = rng.normal(size=(500, 2))
    >>> round(wasserstein_distance(P, P + [0.0, 2.0], random_state=0), 1)
    2.0
    """
    X_p, X_q, sample_weight_p, sample_weight_q = check_two_sets(
        X_p, X_q, sample_weight_p, sample_weight_q, chunk_size
    )
    if chunk_size is not None:
        estimator = WassersteinEstimator(**{"max_epochs": 1, **params})
        return streamed_wasserstein(
            estimator, X_p, X_q, sample_weight_p, sample_weight_q, chunk_size
        )
    X = np.vstack((X_p, X_q))
    y = np.repeat([0, 1], (X_p.shape[0], X_q.shape[0]))
    weights = None
    if sample_weight_p is not None or sample_weight_q is not None:
        weights = np.concatenate(
            [
                np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
                for w, n in ((sample_weight_p, X_p.shape[0]), (sample_weight_q, X_q.shape[0]))
            ]
        )
    return WassersteinEstimator(**params).fit(X, y, sample_weight=weights).distance_
