"""Training on data larger than memory: ``partial_fit`` over chunks read one at a time.

A chunk is a contiguous range of rows, so a NumPy memory map is read
sequentially and a dask array one of its own blocks at a time. Only the chunk
being trained on is in memory: after a chunk is read, the pages of a memory
map it touched are handed back to the kernel (``madvise(MADV_DONTNEED)``; they
stay in the page cache, shared and reclaimable), so the process's resident set
stays flat in the size of the file instead of growing to all of it.
"""

from __future__ import annotations

import math
import mmap
import warnings
from itertools import pairwise
from numbers import Integral
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.utils import check_random_state

from ._inputs import check_exactly_representable, unit_exponent
from ._state import unchanged_on_error

CHUNK_BYTES = 64 * 2**20  # default chunk: about 64 MB of features


def fit_in_chunks(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    classes: Any = None,
    sample_weight: Any = None,
    chunk_size: int | None = None,
    n_passes: int = 1,
    shuffle: bool = True,
    random_state: Any = None,
) -> Any:
    """Fit ``estimator`` by ``partial_fit`` over row chunks of ``X``, one chunk in memory.

    ``X`` may be a NumPy array, a memory map (``np.load(path, mmap_mode="r")``,
    ``np.memmap``) or a dask array: a chunk is read only when it is trained on
    (a dask array computes only the blocks a chunk covers). Each of the
    ``n_passes`` passes calls ``partial_fit`` once per chunk, in a random
    order of chunks with ``shuffle``; the rows of a chunk are shuffled by
    ``partial_fit`` itself. Chunks are contiguous rows, so the rows should be
    stored in random order (each chunk then holds every class).

    Works with any estimator that has ``partial_fit`` (``classes`` is passed
    to classifiers only). For :class:`LipschitzClassifier`, ``partial_fit``'s
    summary (``temperature_``) is computed on the last chunk only; every other
    estimator gets exactly its ``partial_fit`` loop. Chunks whose
    ``sample_weight`` is all 0 are skipped.

    All or nothing: if a chunk raises (a NaN row in chunk 5, say), the
    estimator is restored as it was before the call, and the error
    propagates. Ctrl-C stops the whole loop, with a warning: the estimator is
    then as after the last completed chunk, its summary computed on that
    chunk, so every figure belongs to the published network.

    Parameters
    ----------
    estimator : estimator with ``partial_fit``
        Trained in place (a fitted one is trained on).
    X : array-like, memory map or dask array of shape (n_samples, n_features)
        Lists and tuples are read into a NumPy array first.
    y : array-like, memory map or dask array of shape (n_samples,), or None
        None only for an estimator whose ``partial_fit`` needs no ``y``
        (clustering, decomposition); a classifier needs ``y``.
    classes : array-like, default=None
        Every class of ``y`` (classifiers). Default: found by one pass over ``y``.
    sample_weight : array-like, memory map or dask array of shape (n_samples,), optional
    chunk_size : int, default=None
        Rows per chunk. Default: a dask array's own row blocks, otherwise as
        many rows as fit in about 64 MB.
    n_passes : int, default=1
        Passes over the data.
    shuffle : bool, default=True
        Visit the chunks in a new random order at each pass.
    random_state : int, RandomState instance or None, default=None
        Seeds the order of the chunks.

    Returns
    -------
    estimator
        The fitted estimator.

    Raises
    ------
    TypeError
        If ``estimator`` has no ``partial_fit``.
    ValueError
        If ``n_passes`` or ``chunk_size`` is not a positive integer, ``X`` has
        no rows, or ``y`` or ``sample_weight`` has another number of rows than
        ``X``: found from the shapes, before any chunk is read or trained on.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from sklip import WassersteinEstimator, fit_in_chunks
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(size=(20000, 2)), rng.normal(size=(20000, 2)) + [3.0, 4.0]])
    >>> y = np.repeat([0, 1], 20000)
    >>> order = rng.permutation(len(X))  # rows in random order: every chunk holds both sets
    >>> path = os.path.join(tempfile.mkdtemp(), "sets.npy")
    >>> np.save(path, X[order])
    >>> X_disk = np.load(path, mmap_mode="r")  # read chunk by chunk, never whole
    >>> est = WassersteinEstimator(batch_size=256, random_state=0)
    >>> est = fit_in_chunks(est, X_disk, y[order], chunk_size=4000, random_state=0)
    >>> round(est.distance_)
    5
    """
    X, y, sample_weight = _check_chunked_inputs(estimator, X, y, sample_weight, n_passes)
    blocks = row_blocks(X, chunk_size)
    if not blocks:
        raise ValueError(f"X holds no rows to fit on: shape {X.shape}.")
    if is_classifier(estimator) and classes is None and not hasattr(estimator, "classes_"):
        classes = _unique(y, blocks)
    if sample_weight is not None:
        # A chunk without weight has nothing to learn from (and partial_fit
        # refuses it): skipped, as fit would weigh those rows 0.
        blocks = [(a, b) for a, b in blocks if np.any(read_rows(sample_weight, a, b))]
        if not blocks:
            raise ValueError("sample_weight is 0 on every row: there is nothing to learn from.")
    rng = check_random_state(random_state)
    visits = [
        block
        for _ in range(n_passes)
        for block in (rng.permutation(blocks).tolist() if shuffle else blocks)
    ]
    # The classifier trains on the middle chunks without partial_fit's summary
    # (temperature_: a forward pass over the chunk, which training never reads);
    # the first call validates. The others' summaries steer training (the W1
    # critic's sign) or their partial_fit is their own: every chunk goes there.
    unsummarised_chunks = getattr(estimator, "_trains_chunks_unsummarised", False)
    train_only = estimator._partial_fit_hkr if unsummarised_chunks else None
    # Any error but Ctrl-C leaves the estimator as it was before the call, not
    # half-trained with figures of an older network (a deep copy: estimators of
    # other libraries update their attributes in place).
    with unchanged_on_error(estimator, deep=True):
        completed, unsummarised = 0, None
        try:
            for index, (start, stop) in enumerate(visits):
                X_chunk = read_rows(X, start, stop)
                y_chunk = None if y is None else read_rows(y, start, stop)
                weights = None if sample_weight is None else read_rows(sample_weight, start, stop)
                if train_only is not None and 0 < index < len(visits) - 1:
                    train_only(X_chunk, y_chunk, classes, weights)
                    unsummarised = (start, stop)  # re-read if needed: one chunk in memory
                else:
                    kwargs = {"classes": classes} if is_classifier(estimator) else {}
                    if weights is not None:
                        kwargs["sample_weight"] = weights
                    estimator.partial_fit(X_chunk, y_chunk, **kwargs)
                    unsummarised = None
                completed += 1
                del X_chunk, y_chunk, weights
        except KeyboardInterrupt:
            # Ctrl-C stops the whole loop. Each chunk's partial_fit is all or
            # nothing, so the estimator is as after the last completed chunk;
            # its summary (temperature_, distance_) is brought up to that chunk.
            if unsummarised is not None:
                start, stop = unsummarised
                weights = None if sample_weight is None else read_rows(sample_weight, start, stop)
                estimator._summarise_chunk(
                    read_rows(X, start, stop), read_rows(y, start, stop), weights
                )
            warnings.warn(
                f"fit_in_chunks interrupted: stopped after {completed} of {len(visits)} "
                "chunks; the estimator is as after the last completed chunk.",
                UserWarning,
                stacklevel=2,
            )
    return estimator


def _check_chunked_inputs(
    estimator: Any, X: Any, y: Any, sample_weight: Any, n_passes: Any
) -> tuple[Any, Any, Any]:
    """``fit_in_chunks``'s checks, all before a chunk is read: from types and shapes only.

    A too-long ``y`` or ``sample_weight`` would otherwise have its tail
    silently ignored (the chunks follow ``X``), and a too-short one would fail
    on some late chunk, after the earlier ones were trained on.
    """
    if not callable(getattr(estimator, "partial_fit", None)):
        raise TypeError(
            f"fit_in_chunks trains by partial_fit, which {type(estimator).__name__} does "
            "not have: use an estimator with partial_fit, or its fit on data in memory."
        )
    check_count(n_passes, "n_passes", 1)
    X = as_rows(X, "X")
    if y is None and is_classifier(estimator):
        raise ValueError(f"y is required to fit the classifier {type(estimator).__name__}.")
    y, sample_weight = as_rows(y, "y"), as_rows(sample_weight, "sample_weight", ndim=1)
    check_lengths(n_rows(X, "X"), "X", y=y, sample_weight=sample_weight)
    return X, y, sample_weight


def check_count(value: Any, name: str, minimum: int) -> None:
    """Refuse ``value`` unless it is an integer (NumPy's too; not a bool) >= ``minimum``."""
    # bool is an Integral: True would silently mean 1.
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}.")


def as_rows(array: Any, name: str, ndim: int | None = None) -> Any:
    """``array`` (None passes) with a row axis: lists and tuples become NumPy arrays.

    Anything with a ``shape`` (memory map, dask or pandas object) is returned
    as it is, unread. With ``ndim``, the number of axes must be exactly that.
    """
    if array is None:
        return None
    given = array
    if not hasattr(array, "shape"):
        try:
            array = np.asarray(array)
        except ValueError as error:  # ragged nested lists
            raise ValueError(f"{name} could not be read as an array: {error}") from error
    shape = tuple(array.shape)
    if not shape:
        raise ValueError(f"{name} must be an array of rows, got a scalar: {given!r}.")
    if ndim == 1 and len(shape) != 1:
        raise ValueError(f"{name} must be 1-D, one value per sample; got shape {shape}.")
    if ndim == 2 and len(shape) != 2:
        raise ValueError(
            f"{name} must be 2-D, of shape (n_samples, n_features); got shape {shape}."
        )
    return array


def n_rows(array: Any, name: str) -> int:
    """The number of rows of ``array``, from its shape (a dask array's may be unknown)."""
    n = array.shape[0]
    if not isinstance(n, Integral):  # NaN: a dask array whose chunk sizes are unknown
        raise ValueError(
            f"{name} has an unknown number of rows ({n}): call {name}.compute_chunk_sizes() "
            "on a dask array first."
        )
    return int(n)


def check_lengths(n: int, reference: str, **arrays: Any) -> None:
    """Refuse any of ``arrays`` (None passes) whose number of rows is not ``n``."""
    for name, array in arrays.items():
        if array is not None and (rows := n_rows(array, name)) != n:
            raise ValueError(
                f"{name} has {rows} rows but {reference} has {n}: one per sample is needed."
            )


def row_blocks(X: Any, chunk_size: int | None) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges covering ``X``: its dask blocks, or ``chunk_size`` rows."""
    n = X.shape[0]
    if chunk_size is None:
        if _is_dask(X):
            edges = np.cumsum((0, *X.chunks[0])).tolist()
            return list(pairwise(edges))
        row_bytes = math.prod(X.shape[1:]) * np.dtype(X.dtype).itemsize
        chunk_size = max(1, CHUNK_BYTES // max(row_bytes, 1))
    check_count(chunk_size, "chunk_size", 1)
    return [(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]


def read_rows(array: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of ``array`` in memory (a dask array computes just those).

    A memory map's rows are copied, and the pages read are handed back to the
    kernel: the resident set holds one chunk, not every chunk read so far.
    """
    if _is_dask(array):
        return array[start:stop].compute()
    if hasattr(array, "iloc"):  # pandas
        return array.iloc[start:stop]
    if isinstance(array, np.memmap):
        rows = np.array(array[start:stop])
        release_pages(array)
        return rows
    return array[start:stop]


def release_pages(array: np.memmap) -> None:
    """Unmap the resident pages of a shared memory map (they stay in the page cache).

    A copy-on-write map (``mode="c"``) may hold private changes and is left
    alone, as are platforms without ``madvise``.
    """
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is None or getattr(array, "mode", "c") == "c" or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        base.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):  # closed or unsupported: nothing to hand back
        pass


def _unique(y: Any, blocks: list[tuple[int, int]]) -> np.ndarray:
    """The distinct labels of ``y``, one chunk at a time."""
    return np.unique(np.concatenate([np.unique(read_rows(y, *block)) for block in blocks]))


def _is_dask(array: Any) -> bool:
    return type(array).__module__.startswith("dask.") and hasattr(array, "compute")


def streamed_wasserstein(
    estimator: Any, X_p: Any, X_q: Any, weights_p: Any, weights_q: Any, chunk_size: int
) -> float:
    """Train a ``WassersteinEstimator`` on two sets read in step; return its dual value.

    Chunk ``k`` holds the ``k``-th share of each set's rows (the two sets in
    their proportions), so each chunk estimates the loss on the two
    distributions; ``estimator.max_epochs`` passes visit every chunk once in a
    random order. The dual value is then the weighted mean of the potential
    over all of ``X_q`` minus that over all of ``X_p``, read chunk by chunk.
    The inputs are those that ``check_two_sets`` returned; a chunk without
    weight is skipped (each set has some, so some chunk has).
    """
    estimator._validate_params()  # max_epochs is used below, before partial_fit checks it
    n_p, n_q = X_p.shape[0], X_q.shape[0]
    n_chunks = max(1, -(-(n_p + n_q) // chunk_size))
    edges_p, edges_q = (np.linspace(0, n, n_chunks + 1).astype(int).tolist() for n in (n_p, n_q))
    chunks = list(zip(pairwise(edges_p), pairwise(edges_q), strict=True))
    rng = check_random_state(estimator.random_state)
    visits = [chunks[k] for _ in range(estimator.max_epochs) for k in rng.permutation(n_chunks)]
    first = True
    for (p0, p1), (q0, q1) in visits:
        X = np.concatenate((read_rows(X_p, p0, p1), read_rows(X_q, q0, q1)))
        y = np.repeat([0, 1], (p1 - p0, q1 - q0))
        weights = None
        if weights_p is not None or weights_q is not None:
            weights = np.concatenate(
                (_weights_of(weights_p, p0, p1), _weights_of(weights_q, q0, q1))
            )
            if not weights.any():  # no mass here, nothing to learn (and partial_fit refuses it)
                continue
        if first:  # validates the parameters and builds the network
            estimator.partial_fit(X, y, classes=[0, 1], sample_weight=weights)
            first = False
        else:
            estimator._partial_fit_hkr(X, y, None, weights)
    mean_p = _mean_potential(estimator, X_p, weights_p, chunk_size)
    # Never negative: if f has a negative dual value, -f (1-Lipschitz too) has
    # its opposite.
    return abs(_mean_potential(estimator, X_q, weights_q, chunk_size) - mean_p)


def _weights_of(weights: Any, start: int, stop: int) -> np.ndarray:
    if weights is None:
        return np.ones(stop - start)
    return np.asarray(read_rows(weights, start, stop), dtype=np.float64)


def _mean_potential(estimator: Any, X: Any, weights: Any, chunk_size: int) -> float:
    """Weighted mean of ``estimator.decision_function`` over ``X``, one chunk at a time.

    The weights are scaled by the power of two that puts the largest in [1, 2)
    (a first pass finds it): only their ratios matter, and huge ones would
    overflow the sums (1e307 each gave NaN).
    """
    exponent = 0
    if weights is not None:
        blocks = row_blocks(X, chunk_size)
        exponent = unit_exponent(max(float(_weights_of(weights, *b).max()) for b in blocks))
    total = weight = 0.0
    for start, stop in row_blocks(X, chunk_size):
        potential = estimator.decision_function(read_rows(X, start, stop))
        w = np.ldexp(_weights_of(weights, start, stop), exponent)
        total += float(potential @ w)
        weight += float(w.sum())
    return total / weight


def check_two_sets(
    X_p: Any, X_q: Any, weights_p: Any, weights_q: Any, chunk_size: Any
) -> tuple[Any, Any, Any, Any]:
    """``wasserstein_distance``'s inputs, checked before any training.

    Shapes and lengths come from ``.shape`` alone; the weights (one number per
    row, small beside the sets) are read chunk by chunk to check their values.
    Lists and tuples become NumPy arrays; in memory (``chunk_size=None``) the
    sets become NumPy arrays, checked for NaN here so that the error names the
    set. Returns ``(X_p, X_q, weights_p, weights_q)``.
    """
    if chunk_size is not None:
        # Each chunk takes rows from both sets: 1 row would hold a single set.
        check_count(chunk_size, "chunk_size", 2)
    sets = [_check_set(X, name, chunk_size) for X, name in ((X_p, "X_p"), (X_q, "X_q"))]
    if sets[0].shape[1] != sets[1].shape[1]:
        raise ValueError(
            "X_p and X_q must have the same number of features; got shapes "
            f"{tuple(sets[0].shape)} and {tuple(sets[1].shape)}."
        )
    weights = []
    for w, name, X, set_name in (
        (weights_p, "sample_weight_p", sets[0], "X_p"),
        (weights_q, "sample_weight_q", sets[1], "X_q"),
    ):
        w = as_rows(w, name, ndim=1)
        check_lengths(X.shape[0], set_name, **{name: w})
        if w is not None:
            _check_mass(w, name, chunk_size)
        weights.append(w)
    return sets[0], sets[1], weights[0], weights[1]


def _check_set(X: Any, name: str, chunk_size: Any) -> Any:
    """One sample set: dense, 2-D, with rows (and finite, when it is read whole anyway)."""
    if sp.issparse(X):
        raise TypeError(
            f"{name} is a scipy sparse matrix; wasserstein_distance needs dense arrays "
            f"(call {name}.toarray() if it fits in memory)."
        )
    X = as_rows(X, name, ndim=2)
    rows = n_rows(X, name)
    if rows < 2:
        raise ValueError(f"{name} has {rows} row{'' if rows == 1 else 's'}: each set needs "
                         "at least 2 samples.")  # fmt: skip
    if chunk_size is None:
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold numbers, got an array of dtype {X.dtype}.")
        # Checked set by set: stacked with a float set, huge integers would be
        # rounded silently by np.vstack.
        check_exactly_representable(X, name)
        if X.dtype.kind == "f" and not np.isfinite(X).all():
            raise ValueError(f"{name} contains NaN or infinity.")
    return X


def _check_mass(weights: Any, name: str, chunk_size: int | None) -> None:
    """Refuse NaN, infinite or negative weights, and weights summing to zero.

    A set without mass has no mean potential: the estimate would divide by zero.
    """
    total = 0.0
    for start, stop in row_blocks(weights, chunk_size):
        try:
            w = np.asarray(read_rows(weights, start, stop), dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} must hold numbers: {error}") from error
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError(f"{name} must be finite and non-negative.")
        total += float(w.sum())
    if total <= 0:
        raise ValueError(f"{name} sums to 0: the set has no mass to measure a distance from.")
