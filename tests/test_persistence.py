"""sklip.save / sklip.load: identical estimators back, no pickle, tampering refused."""

import hashlib
import io
import json
import pickle
import struct

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits, make_moons

import sklip
from sklip import (
    LipschitzClassifier,
    LipschitzOutlierDetector,
    LipschitzRegressor,
    WassersteinEstimator,
)
from sklip._persistence import MAGIC

SMALL = {"hidden_layer_sizes": (16,), "max_epochs": 3, "random_state": 0}


def _moons():
    return make_moons(120, noise=0.2, random_state=0)


def _digits():
    X, y = load_digits(return_X_y=True)
    return X[:150] / 16, y[:150]


def _fitted(kind):
    X, y = _moons()
    if kind == "binary":
        return LipschitzClassifier(**SMALL).fit(X, np.where(y == 1, "yes", "no")), X
    if kind == "cnn":
        X, y = _digits()
        cnn = LipschitzClassifier(image_shape=(1, 8, 8), conv_channels=(4,), **SMALL)
        return cnn.fit(X, y), X
    if kind == "detector":
        return LipschitzOutlierDetector(contamination=0.1, **SMALL).fit(X), X
    if kind == "wasserstein":
        return WassersteinEstimator(**SMALL).fit(X, y), X
    return LipschitzRegressor(**SMALL).fit(X, np.column_stack((X[:, 0], X[:, 1] ** 2))), X


def _outputs(estimator, X):
    """Everything an estimator computes on X, certificates included."""
    results = {"predict": estimator.predict(X)}
    for method in ("decision_function", "predict_proba", "certified_radius", "score_samples"):
        if hasattr(estimator, method):
            results[method] = getattr(estimator, method)(X)
    if hasattr(estimator, "predict_interval"):
        results["interval"] = np.stack(estimator.predict_interval(X, 0.1))
    return results


@pytest.fixture
def path(tmp_path):
    return tmp_path / "model.sklip"


@pytest.mark.parametrize("kind", ["binary", "cnn", "detector", "wasserstein", "regressor"])
def test_round_trip_gives_identical_predictions_and_certificates(kind, path, no_pickle):
    estimator, X = _fitted(kind)
    sklip.save(estimator, path)
    loaded = sklip.load(path)
    assert type(loaded) is type(estimator)
    assert loaded.get_params() == estimator.get_params()
    for name, value in _outputs(estimator, X).items():
        np.testing.assert_array_equal(_outputs(loaded, X)[name], value, err_msg=name)
    assert loaded.lipschitz_constant_ == estimator.lipschitz_constant_
    assert loaded.history_ == estimator.history_
    assert loaded.device_ == torch.device("cpu")


def test_training_carries_on_after_loading_as_it_would_have(path):
    """partial_fit after a round trip: the same network, Adam moments and epoch count."""
    X, y = _moons()
    original = LipschitzClassifier(**SMALL).partial_fit(X, y, classes=[0, 1])
    sklip.save(original, path)
    loaded = sklip.load(path)
    original.partial_fit(X, y)
    loaded.partial_fit(X, y)
    assert loaded.n_iter_ == original.n_iter_ == 2
    np.testing.assert_array_equal(loaded.decision_function(X), original.decision_function(X))


def test_numpy_scalars_come_back_as_scalars(path):
    """What GridSearchCV hands out from a numpy grid: np.int64, np.float64, an int array."""
    X, y = _moons()
    params = {
        "random_state": np.int64(3),
        "alpha": np.float64(30.0),
        "learning_rate": np.float32(0.01),
        "hidden_layer_sizes": np.array([8, 4]),
    }
    clf = LipschitzClassifier(max_epochs=2, **params).fit(X, y)
    sklip.save(clf, path)
    loaded = sklip.load(path)
    for name, value in params.items():
        back = loaded.get_params()[name]
        assert type(back) is type(value) and np.shape(back) == np.shape(value), name
        np.testing.assert_array_equal(back, value)
    step = loaded._optimizer_state["state"][0]["step"]
    assert step.shape == clf._optimizer_state["state"][0]["step"].shape == ()
    loaded.partial_fit(X, y)  # trains on with the loaded parameters and Adam state


def test_scalars_of_older_files_load_as_scalars():
    """Files written before the fix stored a numpy scalar as shape (1,)."""
    from sklip._persistence import _Decoder

    decoder = _Decoder({"a0": np.array([7], dtype=np.int64)})
    value = decoder.decode({"array": "a0", "scalar": True})
    assert type(value) is np.int64 and value == 7


def test_feature_names_and_unfitted_estimators_round_trip(path):
    X, y = _moons()
    frame = pd.DataFrame(X, columns=["width", "height"])
    clf = LipschitzClassifier(**SMALL).fit(frame, y)
    sklip.save(clf, path)
    loaded = sklip.load(path)
    np.testing.assert_array_equal(loaded.feature_names_in_, ["width", "height"])
    assert loaded.feature_names_in_.dtype == object
    sklip.save(LipschitzRegressor(loss="huber", hidden_layer_sizes=(8, 4)), path)
    fresh = sklip.load(path)
    assert fresh.get_params()["hidden_layer_sizes"] == (8, 4)
    assert not hasattr(fresh, "network_")


def test_every_modified_byte_is_refused(path):
    clf, _ = _fitted("binary")
    sklip.save(clf, path)
    data = path.read_bytes()
    rng = np.random.RandomState(0)
    positions = sorted({0, len(MAGIC) + 2, len(data) - 1, *rng.randint(0, len(data), 40)})
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match=r"sklip model file|modified or damaged|version"):
            sklip.load(path)
    path.write_bytes(data[:-5])
    with pytest.raises(ValueError, match="modified or damaged"):
        sklip.load(path)


def _rewritten(data, edit_manifest=None, blobs=None):
    """A file with its manifest (and blobs) edited and a *recomputed* digest: a forgery."""
    start = len(MAGIC) + 12
    version, length = struct.unpack_from("<IQ", data, len(MAGIC))
    manifest = json.loads(data[start : start + length])
    old_blobs = data[start + length : -32]
    if edit_manifest is not None:
        edit_manifest(manifest)
    text = json.dumps(manifest).encode()
    body = MAGIC + struct.pack("<IQ", version, len(text)) + text + (blobs or old_blobs)
    return body + hashlib.sha256(body).digest()


@pytest.fixture
def no_pickle(monkeypatch):
    """Make any use of pickle during the test an error."""

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle was used")

    class ForbiddenUnpickler(pickle.Unpickler):  # a class: modules may subclass it
        def __init__(self, *args, **kwargs):
            forbidden()

    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", ForbiddenUnpickler)


def test_a_pickle_payload_is_refused_without_unpickling(path, tmp_path, no_pickle):
    clf, _ = _fitted("binary")
    sklip.save(clf, path)
    data = path.read_bytes()
    # An object array (numpy would unpickle it) in place of the first array,
    # in a file whose digest was recomputed.
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.array([print], dtype=object), allow_pickle=True)
    payload = buffer.getvalue()

    def point_first_array_at_payload(manifest):
        first = next(iter(manifest["arrays"]))
        manifest["arrays"][first] = [0, len(payload)]

    path.write_bytes(_rewritten(data, point_first_array_at_payload, payload))
    with pytest.raises(ValueError, match="array sklip does not read"):
        sklip.load(path)
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(b"\x80\x04K\x00.")  # what pickle.dumps(0) writes
    with pytest.raises(ValueError, match="not a sklip model file"):
        sklip.load(pickled)


def test_lowered_bounds_and_unknown_contents_are_refused(path):
    clf, _ = _fitted("binary")
    sklip.save(clf, path)
    data = path.read_bytes()

    def lower(manifest):
        manifest["networks"]["bounds"]["lipschitz_constant"] /= 2

    path.write_bytes(_rewritten(data, lower))
    with pytest.raises(ValueError, match="bounds are below what its weights imply"):
        sklip.load(path)

    def halve_published_constant(manifest):
        pairs = manifest["state"]["dict"]
        entry = next(pair for pair in pairs if pair[0] == "lipschitz_constant_")
        entry[1] /= 2

    path.write_bytes(_rewritten(data, halve_published_constant))
    with pytest.raises(ValueError, match="lipschitz_constant_ does not match"):
        sklip.load(path)

    def rename(manifest):
        manifest["estimator"] = "os.system"

    path.write_bytes(_rewritten(data, rename))
    with pytest.raises(ValueError, match="unknown estimator"):
        sklip.load(path)
    newer = bytearray(data)
    newer[len(MAGIC)] = 2  # format version 2
    path.write_bytes(bytes(newer))
    with pytest.raises(ValueError, match="format version 2"):
        sklip.load(path)


def test_bounds_lowered_within_the_device_tolerance_certify_as_recomputed(path):
    """Stored bounds may sit a few last bits below the loading machine's; one
    lowered by less than the tolerance (1e-9) must not shrink the bound either."""
    clf, X = _fitted("binary")
    sklip.save(clf, path)
    data = path.read_bytes()
    factor = 1 - 0.5e-9

    def lower_every_copy(manifest):
        bounds = manifest["networks"]["bounds"]
        bounds["lipschitz_constant"] *= factor
        bounds["layers"] = [[value * factor for value in layer] for layer in bounds["layers"]]
        entry = next(p for p in manifest["state"]["dict"] if p[0] == "lipschitz_constant_")
        entry[1] *= factor

    path.write_bytes(_rewritten(data, lower_every_copy))
    loaded = sklip.load(path)
    assert loaded.lipschitz_constant_ == clf.lipschitz_constant_
    np.testing.assert_array_equal(loaded.certified_radius(X), clf.certified_radius(X))


def test_what_cannot_be_stored_is_named(path):
    with pytest.raises(TypeError, match="sklip estimators"):
        sklip.save(object(), path)
    clf = LipschitzClassifier(random_state=np.random.RandomState(0), max_epochs=1)
    with pytest.raises(TypeError, match="random_state"):
        sklip.save(clf, path)
    assert not path.exists()  # refused before anything was written


@pytest.mark.gpu
def test_a_cuda_fitted_model_loads_identical_on_the_cpu(path):
    X, y = _moons()
    clf = LipschitzClassifier(device="cuda", **SMALL).fit(X, y)
    sklip.save(clf, path)
    loaded = sklip.load(path)
    cpu_copy = pickle.loads(pickle.dumps(clf))  # the pickle path moves it to the CPU
    assert loaded.device_.type == "cpu"
    np.testing.assert_array_equal(loaded.certified_radius(X), cpu_copy.certified_radius(X))
