r"""``margin="auto"``: the hinge margin measured from the geometry of the training data.

The margin is a length in the units of ``X``: the hinge asks every training
point to be at least that far from the decision boundary. ``margin=1`` means a
wide berth for standardised features and nothing for pixels in 0..255 or for
a column in metres next to one in millimetres. The rule here reads the scale
from the data instead:

.. math::
    m = c \cdot \operatorname{median}_i \; \min_{j:\, y_j \ne y_i} \lVert x_i - x_j \rVert_2

the (sample-weighted) median, over the training points, of the distance to
the nearest training point of another class, times ``c``. Half that distance
is the largest radius a point could be certified at if the boundary passed
midway, so with two classes ``c = AUTO_FRACTION = 1/4`` asks for half of what
the geometry allows at the typical point. With more classes ``c = 1/8``. The
one-vs-all hinge asks more of a multiclass network than the binary hinge of
one: every one of the K outputs must clear the margin, on both sides, which
asks for a gap of ``2 m`` between the true class's score and every other
(a binary network's scores are ``(0, f)``: a gap of ``m``). Both fractions
were measured, not derived: on ``benchmarks/tabular.py``'s nine data sets
(see RESULTS.md and the user guide's HKR page) a quarter of the median
distance with alpha=100 keeps every binary set within a point of the best of
LogisticRegression and MLPClassifier but costs up to 3.4 points on the
multiclass ones, which an eighth recovers.

Cost and determinism: the distances are computed on about ``AUTO_SAMPLE``
rows (a few more when rare classes each keep a row), drawn per class in
proportion to the class sizes with the fit's ``random_state`` (all rows when
there are fewer, and then nothing is drawn), with brute-force chunked
distances: about 0.1 s for 4096 rows of 64 features (the nearest neighbours
found on centred rows, their distances recomputed from the differences, so
coincident points are exactly 0 apart). On a subsample the nearest
neighbours are farther than in the whole set, so for large data sets the
margin is somewhat larger than the formula on all the rows would give.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import pairwise_distances_argmin_min
from sklearn.neighbors import NearestNeighbors

AUTO_FRACTION = 0.25
AUTO_SAMPLE = 4096
ONE_CLASS_FRACTION = 0.5


def margin_fraction(n_classes: int) -> float:
    """The fraction of the median distance "auto" takes: ``AUTO_FRACTION``, halved past 2."""
    return AUTO_FRACTION if n_classes <= 2 else AUTO_FRACTION / 2


def auto_margin(
    X: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    rng: np.random.RandomState,
    n_classes: int = 2,
) -> float:
    """A fraction of the weighted median distance to the nearest other-class point.

    The fraction is :func:`margin_fraction` of ``n_classes``: ``AUTO_FRACTION``
    for two classes and half of it for more (see the module notes).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The training features, as the network sees them.
    labels : ndarray of shape (n_samples,)
        Class indices.
    weights : ndarray of shape (n_samples,)
        Sample weights; rows of weight 0 are left out.
    rng : numpy.random.RandomState
        Draws the subsample when there are more than ``AUTO_SAMPLE`` rows
        (and only then).
    n_classes : int, default=2
        Classes of the problem (the network's outputs): more than 2 halves
        the fraction.

    Returns
    -------
    float
        The margin, positive. Rows whose nearest other-class point coincides
        with them (the same features, another label) say nothing of the
        scale: if they make the median 0, the median of the positive
        distances is used. If no distance says anything (every one is 0, or
        the data hold a single class, as a first ``partial_fit`` chunk may),
        the margin is 1, with a warning.
    """
    rows = sample_rows(labels, weights, rng)
    Z, labels, weights = np.asarray(X[rows], dtype=np.float64), labels[rows], weights[rows]
    # scikit-learn finds the nearest neighbours with |a|^2 - 2 a.b + |b|^2,
    # which cancels catastrophically far from the origin (a column of Unix
    # times: every distance 0) and puts coincident points 1e-8 apart instead
    # of 0. The neighbours are found on centred rows, and their distances are
    # recomputed from the differences: exact 0 for coincident points,
    # unchanged by a translation of the data.
    centred = Z - Z.mean(axis=0)
    distance = np.full(len(rows), np.nan)
    for label in np.unique(labels):
        mine = labels == label
        if mine.all():
            continue
        others = Z[~mine][pairwise_distances_argmin_min(centred[mine], centred[~mine])[0]]
        distance[mine] = np.sqrt(np.square(Z[mine] - others).sum(axis=1))
    known = np.isfinite(distance)
    median = _weighted_median(distance[known], weights[known])
    if median == 0:
        positive = distance[known] > 0
        median = _weighted_median(distance[known][positive], weights[known][positive])
    if median == 0:
        warnings.warn(
            'margin="auto" found no positive distance between points of different classes '
            "(a single class, or the classes coincide): margin_ is set to 1. Pass margin= "
            "explicitly, in the units of X.",
            UserWarning,
            stacklevel=4,
        )
        return 1.0
    return margin_fraction(n_classes) * median


def sample_rows(labels: np.ndarray, weights: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Indices of about ``AUTO_SAMPLE`` weighted rows, every class kept (stratified).

    Each class gives its share of ``AUTO_SAMPLE``, rounded, and at least one
    row, so the total can pass ``AUTO_SAMPLE`` by a few rows.
    """
    rows = np.flatnonzero(weights > 0)
    if len(rows) <= AUTO_SAMPLE:
        return rows
    chosen = []
    for label in np.unique(labels[rows]):
        members = rows[labels[rows] == label]
        take = max(1, round(AUTO_SAMPLE * len(members) / len(rows)))
        chosen.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The smallest value with at least half of the total weight at or below it (0 if none)."""
    return weighted_quantile(values, weights, 0.5) if values.size else 0.0


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value with at least a fraction ``q`` of the total weight at or below it.

    With equal weights this is NumPy's ``inverted_cdf`` quantile.
    """
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, q * cumulative[-1])])


def nearest_other_row(Z: np.ndarray) -> np.ndarray:
    """For each row of ``Z``, the index of its nearest *other* row (itself if it is alone).

    Brute force in chunks of 1024 rows, on centred rows (see :func:`auto_margin`
    on why); a duplicated row finds its twin.
    """
    centred = Z - Z.mean(axis=0)
    squared_norms = (centred**2).sum(axis=1)
    nearest = np.arange(len(Z))
    if len(Z) < 2:
        return nearest
    for start in range(0, len(Z), 1024):
        block = centred[start : start + 1024]
        squared = squared_norms[start : start + 1024, None] - 2 * block @ centred.T + squared_norms
        squared[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        nearest[start : start + 1024] = squared.argmin(axis=1)
    return nearest


def nearest_other_rows(Z: np.ndarray, k: int) -> np.ndarray:
    """Indices ``(n, min(k, n - 1))`` of each row's ``k`` nearest *other* rows.

    Searched on centred rows, for the reason :func:`auto_margin` gives (read
    the distances with :func:`squared_differences`, from the rows
    themselves); a duplicated row finds its twin.
    """
    k = min(k, len(Z) - 1)
    if k < 1:
        return np.empty((len(Z), 0), dtype=np.intp)
    centred = Z - Z.mean(axis=0)
    return NearestNeighbors(n_neighbors=k).fit(centred).kneighbors(return_distance=False)


def squared_differences(values: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """``||values[neighbours[i, j]] - values[i]||^2`` for every row ``i`` and rank ``j``.

    One rank at a time: the ``(n, k, d)`` differences at once would take
    4096 x 10 x 784 floats for digit images.
    """
    columns = [
        np.square(values[neighbours[:, j]] - values).sum(axis=1) for j in range(neighbours.shape[1])
    ]
    return np.stack(columns, axis=1) if columns else np.empty((len(values), 0))


def one_class_margin(X: np.ndarray, weights: np.ndarray, rng: np.random.RandomState) -> float:
    """``ONE_CLASS_FRACTION`` of the weighted median distance to the nearest other row.

    The one-class detector's ``margin="auto"``: with a single class, the
    scale of the data is the spacing of its points. Rows are subsampled to
    ``AUTO_SAMPLE`` (drawn with ``rng``) as for :func:`auto_margin`;
    duplicated rows (distance 0) are left out of the median, and a set with
    no two distinct rows gets 1 with a warning.
    """
    rows = sample_rows(np.zeros(len(X), dtype=np.intp), weights, rng)
    Z, weights = np.asarray(X[rows], dtype=np.float64), weights[rows]
    distance = np.sqrt(np.square(Z - Z[nearest_other_row(Z)]).sum(axis=1))
    positive = distance > 0
    median = _weighted_median(distance[positive], weights[positive])
    if median == 0:
        warnings.warn(
            'margin="auto" found no two distinct rows in X: margin_ is set to 1. Pass '
            "margin= explicitly, in the units of X.",
            UserWarning,
            stacklevel=4,
        )
        return 1.0
    return ONE_CLASS_FRACTION * median
