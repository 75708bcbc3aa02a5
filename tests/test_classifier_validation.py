"""Bad input gets a clear ValueError naming the problem; input is never modified."""

import numpy as np
import pytest
import torch

from sklip import LipschitzClassifier


def _data(n=40, d=4, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] > 0).astype(int)
    return X, y


def _clf(**params):
    return LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=2, random_state=0, **params)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_refused(value):
    X, y = _data()
    X[3, 1] = value
    with pytest.raises(ValueError, match=r"NaN|infinity"):
        _clf().fit(X, y)


def test_non_finite_labels_are_refused():
    X, y = _data()
    y = y.astype(float)
    y[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _clf().fit(X, y)


def test_wrong_number_of_features_at_predict_is_refused():
    X, y = _data()
    clf = _clf().fit(X, y)
    for method in (clf.predict, clf.decision_function, clf.certified_radius, clf.predict_proba):
        with pytest.raises(ValueError, match="4 features"):
            method(X[:, :3])


def test_a_single_class_is_refused():
    X, _ = _data()
    with pytest.raises(ValueError, match="at least 2 classes"):
        _clf().fit(X, np.zeros(len(X)))


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match="0 sample"):
        _clf().fit(np.empty((0, 4)), np.empty(0))


def test_bad_sample_weights_are_refused():
    X, y = _data()
    with pytest.raises(ValueError, match=r"sample_weight\.shape"):
        _clf().fit(X, y, sample_weight=np.ones(len(X) + 1))
    with pytest.raises(ValueError, match="Negative values"):
        _clf().fit(X, y, sample_weight=-np.ones(len(X)))


@pytest.mark.parametrize(
    "shape, message",
    [((1, 3, 3), "n_features = 9, got n_features = 4"), ((1, 2), "three positive integers")],
)
def test_image_shape_inconsistent_with_the_data_is_refused(shape, message):
    X, y = _data()
    with pytest.raises(ValueError, match=message):
        _clf(image_shape=shape).fit(X, y)


@pytest.mark.parametrize("name", ["alpha", "margin"])
def test_negative_alpha_or_margin_is_refused(name):
    X, y = _data()
    with pytest.raises(ValueError, match=name):
        _clf(**{name: -1.0}).fit(X, y)


def test_odd_width_with_groupsort_is_refused():
    X, y = _data()
    with pytest.raises(ValueError, match="odd width 7"):
        LipschitzClassifier(hidden_layer_sizes=(7,), max_epochs=1).fit(X, y)


@pytest.mark.parametrize("device", ["tpu", "gpu0", "cuda:x"])
def test_unknown_device_is_refused(device):
    X, y = _data()
    with pytest.raises(ValueError, match="device"):
        _clf(device=device).fit(X, y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    X, y = _data()
    with pytest.raises(ValueError, match="CUDA is not available"):
        _clf(device="cuda").fit(X, y)


def test_nothing_the_user_passes_is_modified():
    X, y = _data()
    X32 = X.astype(np.float32)
    weights = np.linspace(0.5, 1.5, len(X))
    copies = [a.copy() for a in (X, y, X32, weights)]
    clf = _clf(early_stopping=True).fit(X, y, sample_weight=weights)
    clf.predict(X32)
    clf.certified_radius(X)
    for original, copy in zip((X, y, X32, weights), copies, strict=True):
        assert np.array_equal(original, copy)
