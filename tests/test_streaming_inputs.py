"""Bad inputs to ``fit_in_chunks`` and ``wasserstein_distance``: clear errors, up front.

Regression tests from a fuzzing campaign: each bad input used to be silently
ignored in part, or to crash with an error that did not say what was wrong.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import MiniBatchKMeans
from sklearn.svm import SVC

from sklip import LipschitzClassifier, fit_in_chunks, wasserstein_distance

W1_PARAMS = dict(hidden_layer_sizes=(8,), max_epochs=2, batch_size=16, random_state=0)
STREAMED = pytest.mark.parametrize("chunk_size", [None, 10], ids=["in_memory", "streamed"])


def _data(n=40, seed=0):
    rng = np.random.RandomState(seed)
    return rng.normal(size=(n, 3)), np.tile([0, 1], n // 2)


def _sets(n_p=20, n_q=20):
    rng = np.random.RandomState(1)
    return rng.normal(size=(n_p, 3)), rng.normal(size=(n_q, 3)) + 1.0


def _clf():
    return LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=2, random_state=0)


class _Recorded:
    """An array that records the rows read from it: what fit_in_chunks reads, and when."""

    def __init__(self, array):
        self.array, self.reads = array, []
        self.shape, self.dtype = array.shape, array.dtype

    def __getitem__(self, rows):
        self.reads.append(rows)
        return self.array[rows]


# ------------------------------------------------------------------ fit_in_chunks
@pytest.mark.parametrize(
    "name, extra, message",
    [
        ("y", 1, "y has 41 rows but X has 40"),
        ("y", -5, "y has 35 rows but X has 40"),
        ("sample_weight", 1, "sample_weight has 41 rows but X has 40"),
        ("sample_weight", -1, "sample_weight has 39 rows but X has 40"),
    ],
)
def test_fit_in_chunks_refuses_y_or_weights_of_another_length_before_reading(name, extra, message):
    X, y = _data()
    arrays = {"y": y, "sample_weight": np.ones(40)}
    arrays[name] = np.resize(arrays[name], 40 + extra)
    X_recorded = _Recorded(X)
    clf = _clf()
    with pytest.raises(ValueError, match=message):
        fit_in_chunks(clf, X_recorded, arrays["y"], sample_weight=arrays["sample_weight"],
                      chunk_size=10)  # fmt: skip
    assert X_recorded.reads == []  # found from the shapes: no chunk was read or trained on
    assert not hasattr(clf, "module_")


def test_fit_in_chunks_checks_a_dask_y_by_its_shape():
    da = pytest.importorskip("dask.array")
    X, y = _data()
    with pytest.raises(ValueError, match="y has 44 rows but X has 40"):
        fit_in_chunks(_clf(), da.from_array(X, chunks=10), da.from_array(np.resize(y, 44)))
    unknown = da.from_array(y, chunks=10)[da.from_array(y, chunks=10) >= 0]  # rows: nan
    with pytest.raises(ValueError, match="y has an unknown number of rows"):
        fit_in_chunks(_clf(), X, unknown, chunk_size=10)


def test_fit_in_chunks_reads_lists_and_tuples_as_arrays():
    X, y = _data()
    weights = np.linspace(0.5, 1.5, 40)
    reference = fit_in_chunks(_clf(), X, y, sample_weight=weights, chunk_size=10, random_state=0)
    listed = fit_in_chunks(
        _clf(), X.tolist(), tuple(y.tolist()), sample_weight=weights.tolist(), chunk_size=10,
        random_state=0,
    )  # fmt: skip
    assert listed.n_iter_ == 4
    assert np.array_equal(listed.decision_function(X), reference.decision_function(X))


def test_fit_in_chunks_needs_partial_fit():
    X, y = _data()
    with pytest.raises(TypeError, match=r"SVC.*partial_fit"):
        fit_in_chunks(SVC(), X, y)


@pytest.mark.parametrize("value", [0, -1, True, False, 1.0, 2.5, "2", None, np.bool_(True)])
def test_fit_in_chunks_refuses_n_passes_that_are_not_positive_integers(value):
    X, y = _data()
    with pytest.raises(ValueError, match=r"n_passes must be an integer of at least 1"):
        fit_in_chunks(_clf(), X, y, n_passes=value)


@pytest.mark.parametrize("value", [0, -3, True, 10.0, 2.5, "10", np.float64(10)])
def test_fit_in_chunks_refuses_chunk_sizes_that_are_not_positive_integers(value):
    X, y = _data()
    with pytest.raises(ValueError, match=r"chunk_size must be an integer of at least 1"):
        fit_in_chunks(_clf(), X, y, chunk_size=value)


def test_fit_in_chunks_takes_numpy_integers():
    X, y = _data()
    clf = fit_in_chunks(_clf(), X, y, chunk_size=np.int64(20), n_passes=np.int32(2))
    assert clf.n_iter_ == 2 * 2


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.empty((0, 3)), np.empty(0), "X holds no rows"),
        ([], [], "X holds no rows"),
        (3.0, [0], "X must be an array of rows"),
        (np.zeros((4, 3)), 0, "y must be an array of rows"),
        ([[0.0, 1.0], [1.0]], [0, 1], "X could not be read as an array"),
    ],
)
def test_fit_in_chunks_refuses_x_without_rows(X, y, message):
    with pytest.raises(ValueError, match=message):
        fit_in_chunks(_clf(), X, y)


def test_fit_in_chunks_wants_one_weight_per_row():
    X, y = _data()
    with pytest.raises(ValueError, match=r"sample_weight must be 1-D.*\(40, 1\)"):
        fit_in_chunks(_clf(), X, y, sample_weight=np.ones((40, 1)))
    with pytest.raises(ValueError, match="sample_weight must be an array of rows"):
        fit_in_chunks(_clf(), X, y, sample_weight=2.0)


def test_fit_in_chunks_without_y_fits_unsupervised_estimators_only():
    X, _ = _data()
    kmeans = fit_in_chunks(MiniBatchKMeans(2, n_init=1, random_state=0), X, None, chunk_size=20)
    assert kmeans.cluster_centers_.shape == (2, 3)
    with pytest.raises(ValueError, match="y is required"):
        fit_in_chunks(_clf(), X, None)


def test_fit_in_chunks_leaves_its_inputs_alone():
    X, y = _data()
    weights = np.linspace(0.5, 1.5, 40)
    copies = X.copy(), y.copy(), weights.copy()
    fit_in_chunks(_clf(), X, y, sample_weight=weights, chunk_size=10, n_passes=2)
    for array, copy in zip((X, y, weights), copies, strict=True):
        assert np.array_equal(array, copy)


# ----------------------------------------------------------- wasserstein_distance
@STREAMED
@pytest.mark.parametrize(
    "name, n, message",
    [
        ("sample_weight_p", 21, "sample_weight_p has 21 rows but X_p has 20"),
        ("sample_weight_p", 19, "sample_weight_p has 19 rows but X_p has 20"),
        ("sample_weight_q", 31, "sample_weight_q has 31 rows but X_q has 30"),
        ("sample_weight_q", 1, "sample_weight_q has 1 rows but X_q has 30"),
    ],
)
def test_w1_refuses_weights_of_another_length(chunk_size, name, n, message):
    P, Q = _sets(20, 30)
    with pytest.raises(ValueError, match=message):
        wasserstein_distance(P, Q, **{name: np.ones(n)}, chunk_size=chunk_size, **W1_PARAMS)


def test_streamed_w1_checks_lengths_before_reading_a_row():
    P, Q = _sets()
    P_recorded, Q_recorded = _Recorded(P), _Recorded(Q)
    with pytest.raises(ValueError, match="sample_weight_q has 21 rows but X_q has 20"):
        wasserstein_distance(P_recorded, Q_recorded, None, np.ones(21), chunk_size=10)
    assert P_recorded.reads == Q_recorded.reads == []


@STREAMED
@pytest.mark.parametrize("name", ["X_p", "X_q"])
@pytest.mark.parametrize("rows", [0, 1])
def test_w1_refuses_a_set_of_fewer_than_two_rows(chunk_size, name, rows):
    P, Q = _sets()
    sets = {"X_p": P, "X_q": Q, name: np.ones((rows, 3))}
    with pytest.raises(ValueError, match=f"{name} has {rows} rows?: each set needs at least 2"):
        wasserstein_distance(**sets, chunk_size=chunk_size, **W1_PARAMS)


@STREAMED
@pytest.mark.parametrize(
    "weights, message",
    [
        (np.zeros(20), "sample_weight_p sums to 0"),
        (-np.ones(20), "sample_weight_p must be finite and non-negative"),
        (np.r_[np.ones(19), np.nan], "sample_weight_p must be finite and non-negative"),
        (np.r_[np.ones(19), np.inf], "sample_weight_p must be finite and non-negative"),
        (np.array(["a"] * 20), "sample_weight_p must hold numbers"),
    ],
)
def test_w1_refuses_weights_without_mass_or_with_bad_values(chunk_size, weights, message):
    P, Q = _sets()
    with pytest.raises(ValueError, match=message):
        wasserstein_distance(P, Q, weights, chunk_size=chunk_size, **W1_PARAMS)
    with pytest.raises(ValueError, match=message.replace("_p", "_q")):
        wasserstein_distance(P, Q, None, weights, chunk_size=chunk_size, **W1_PARAMS)


@STREAMED
def test_w1_takes_weights_that_are_zero_on_part_of_a_set(chunk_size):
    P, Q = _sets()
    weights = np.r_[np.zeros(10), np.ones(10)]  # a whole first chunk without mass
    estimate = wasserstein_distance(P, Q, weights, weights, chunk_size=chunk_size, **W1_PARAMS)
    assert np.isfinite(estimate)


@STREAMED
@pytest.mark.parametrize(
    "shape_p, shape_q, message",
    [
        ((20,), (20, 3), r"X_p must be 2-D, of shape \(n_samples, n_features\); got shape \(20,\)"),
        ((20, 3), (20,), r"X_q must be 2-D, of shape \(n_samples, n_features\); got shape \(20,\)"),
        ((20, 3, 1), (20, 3), r"X_p must be 2-D.*\(20, 3, 1\)"),
        ((20, 3), (20, 4), r"same number of features.*\(20, 3\) and \(20, 4\)"),
    ],
)
def test_w1_wants_two_sets_of_rows_with_the_same_features(chunk_size, shape_p, shape_q, message):
    with pytest.raises(ValueError, match=message):
        wasserstein_distance(
            np.zeros(shape_p), np.ones(shape_q), chunk_size=chunk_size, **W1_PARAMS
        )


@STREAMED
@pytest.mark.parametrize("sparse_set", ["X_p", "X_q"])
def test_w1_refuses_sparse_sets(chunk_size, sparse_set):
    P, Q = _sets()
    sets = {"X_p": P, "X_q": Q}
    sets[sparse_set] = sp.csr_matrix(sets[sparse_set])
    with pytest.raises(TypeError, match=f"{sparse_set} is a scipy sparse matrix.*dense"):
        wasserstein_distance(**sets, chunk_size=chunk_size, **W1_PARAMS)


@STREAMED
def test_w1_wants_one_weight_per_row(chunk_size):
    P, Q = _sets()
    with pytest.raises(ValueError, match=r"sample_weight_p must be 1-D.*\(20, 1\)"):
        wasserstein_distance(P, Q, np.ones((20, 1)), chunk_size=chunk_size, **W1_PARAMS)
    with pytest.raises(ValueError, match="sample_weight_q must be an array of rows"):
        wasserstein_distance(P, Q, None, 2.0, chunk_size=chunk_size, **W1_PARAMS)


def test_w1_says_which_set_holds_nan():
    P, Q = _sets()
    Q[3, 1] = np.nan
    with pytest.raises(ValueError, match="X_q contains NaN or infinity"):
        wasserstein_distance(P, Q, **W1_PARAMS)


@pytest.mark.parametrize("value", [1, 0, True, 10.0, "10", np.float64(10)])
def test_streamed_w1_refuses_chunk_sizes_that_are_not_integers_of_at_least_2(value):
    P, Q = _sets()
    with pytest.raises(ValueError, match="chunk_size must be an integer of at least 2"):
        wasserstein_distance(P, Q, chunk_size=value, **W1_PARAMS)


def test_streamed_w1_takes_numpy_integers_and_lists():
    P, Q = _sets()
    reference = wasserstein_distance(P, Q, chunk_size=10, **W1_PARAMS)
    listed = wasserstein_distance(
        P.tolist(), Q.tolist(), [1.0] * 20, (1.0,) * 20, chunk_size=np.int64(10), **W1_PARAMS
    )
    assert listed == reference


@pytest.mark.parametrize("value", [0, 1.5, "2"])
def test_streamed_w1_checks_max_epochs_before_training(value):
    P, Q = _sets()
    params = {**W1_PARAMS, "max_epochs": value}
    with pytest.raises(ValueError, match="max_epochs"):
        wasserstein_distance(P, Q, chunk_size=10, **params)


@STREAMED
def test_w1_leaves_its_inputs_alone(chunk_size):
    P, Q = _sets()
    wp, wq = np.linspace(0.5, 1.5, 20), np.linspace(1.5, 0.5, 20)
    arrays = (P, Q, wp, wq)
    copies = [array.copy() for array in arrays]
    wasserstein_distance(*arrays, chunk_size=chunk_size, **W1_PARAMS)
    for array, copy in zip(arrays, copies, strict=True):
        assert np.array_equal(array, copy)
