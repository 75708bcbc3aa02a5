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
from itertools import pairwise
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils import check_random_state

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
    to classifiers only). For sklip's estimators, ``partial_fit``'s summary
    (``temperature_``, ``distance_``) is computed on the last chunk only.

    Parameters
    ----------
    estimator : estimator with ``partial_fit``
        Trained in place (a fitted one is trained on).
    X : array-like, memory map or dask array of shape (n_samples, n_features)
    y : array-like, memory map or dask array of shape (n_samples,)
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
    if not isinstance(n_passes, Integral) or n_passes < 1:
        raise ValueError(f"n_passes must be a positive integer, got {n_passes!r}.")
    blocks = row_blocks(X, chunk_size)
    if not blocks:
        raise ValueError(f"X holds no rows to fit on: shape {X.shape}.")
    if is_classifier(estimator) and classes is None and not hasattr(estimator, "classes_"):
        classes = _unique(y, blocks)
    rng = check_random_state(random_state)
    visits = [
        block
        for _ in range(n_passes)
        for block in (rng.permutation(blocks).tolist() if shuffle else blocks)
    ]
    # sklip's estimators train on the middle chunks without partial_fit's
    # summary (a forward pass over the chunk); the first call validates.
    train_only = getattr(estimator, "_partial_fit_hkr", None)
    for index, (start, stop) in enumerate(visits):
        X_chunk, y_chunk = read_rows(X, start, stop), read_rows(y, start, stop)
        weights = None if sample_weight is None else read_rows(sample_weight, start, stop)
        if train_only is not None and 0 < index < len(visits) - 1:
            train_only(X_chunk, y_chunk, classes, weights)
            continue
        kwargs = {"classes": classes} if is_classifier(estimator) else {}
        if weights is not None:
            kwargs["sample_weight"] = weights
        estimator.partial_fit(X_chunk, y_chunk, **kwargs)
    return estimator


def row_blocks(X: Any, chunk_size: int | None) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges covering ``X``: its dask blocks, or ``chunk_size`` rows."""
    n = X.shape[0]
    if chunk_size is None:
        if _is_dask(X):
            edges = np.cumsum((0, *X.chunks[0])).tolist()
            return list(pairwise(edges))
        row_bytes = math.prod(X.shape[1:]) * np.dtype(X.dtype).itemsize
        chunk_size = max(1, CHUNK_BYTES // max(row_bytes, 1))
    if not isinstance(chunk_size, Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
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
    """
    if not isinstance(chunk_size, Integral) or chunk_size < 2:
        raise ValueError(f"chunk_size must be an integer of at least 2, got {chunk_size!r}.")
    n_p, n_q = X_p.shape[0], X_q.shape[0]
    n_chunks = max(1, -(-(n_p + n_q) // chunk_size))
    edges_p, edges_q = (np.linspace(0, n, n_chunks + 1).astype(int).tolist() for n in (n_p, n_q))
    chunks = list(zip(pairwise(edges_p), pairwise(edges_q), strict=True))
    rng = check_random_state(estimator.random_state)
    visits = [chunks[k] for _ in range(estimator.max_epochs) for k in rng.permutation(n_chunks)]
    for index, ((p0, p1), (q0, q1)) in enumerate(visits):
        X = np.concatenate((read_rows(X_p, p0, p1), read_rows(X_q, q0, q1)))
        y = np.repeat([0, 1], (p1 - p0, q1 - q0))
        weights = None
        if weights_p is not None or weights_q is not None:
            weights = np.concatenate(
                (_weights_of(weights_p, p0, p1), _weights_of(weights_q, q0, q1))
            )
        if index == 0:  # validates the parameters and builds the network
            estimator.partial_fit(X, y, classes=[0, 1], sample_weight=weights)
        else:
            estimator._partial_fit_hkr(X, y, None, weights)
    mean_p = _mean_potential(estimator, X_p, weights_p, chunk_size)
    return _mean_potential(estimator, X_q, weights_q, chunk_size) - mean_p


def _weights_of(weights: Any, start: int, stop: int) -> np.ndarray:
    if weights is None:
        return np.ones(stop - start)
    return np.asarray(read_rows(weights, start, stop), dtype=np.float64)


def _mean_potential(estimator: Any, X: Any, weights: Any, chunk_size: int) -> float:
    """Weighted mean of ``estimator.decision_function`` over ``X``, one chunk at a time."""
    total = weight = 0.0
    for start, stop in row_blocks(X, chunk_size):
        potential = estimator.decision_function(read_rows(X, start, stop))
        w = _weights_of(weights, start, stop)
        total += float(potential @ w)
        weight += float(w.sum())
    return total / weight
