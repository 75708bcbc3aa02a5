"""Saving and loading estimators without pickle: JSON, ``.npy`` arrays, a digest.

A model file is a short header (a magic string and the format version), a
JSON manifest (the estimator's class and parameters, its fitted state, the
layout of its networks), the arrays in ``.npy`` format (read with
``allow_pickle=False``) and, last, the SHA-256 of everything before it.
Loading checks the digest before reading anything else, then builds every
object from a fixed list of types: nothing in the file is executed, and a
file with any byte changed is refused. The digest detects corruption and
edits, not a forger who recomputes it: trust a model file as you trust its
source, but opening one runs no code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from typing import Any

import numpy as np
import torch
from sklearn.base import clone

from . import __version__
from ._device import to_numpy
from ._saved_network import build, describe
from ._training import at_most_threads
from .nn import FrozenNetwork
from .regressor import round_up_product

MAGIC = b"SKLIP-MODEL\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<IQ")  # format version, manifest length
_DIGEST_SIZE = 32
_NETWORKS = ("module_", "network_")  # rebuilt from their weights, not encoded


def _estimator_classes() -> dict[str, type]:
    from .classifier import LipschitzClassifier
    from .outliers import LipschitzOutlierDetector
    from .regressor import LipschitzRegressor
    from .wasserstein import WassersteinEstimator

    kinds = (LipschitzClassifier, LipschitzOutlierDetector, LipschitzRegressor,
             WassersteinEstimator)  # fmt: skip
    return {kind.__name__: kind for kind in kinds}


def save(estimator: Any, path: str | os.PathLike) -> None:
    """Write a sklip estimator to ``path``, without pickle.

    Parameters, fitted state, the trainable network (so that ``warm_start``
    and ``partial_fit`` carry on, Adam's moments included) and the frozen
    float64 network with its bounds are stored; a CUDA-fitted estimator is
    saved from CPU copies. See :func:`load`.

    Parameters
    ----------
    estimator : sklip estimator
        A LipschitzClassifier, LipschitzOutlierDetector, LipschitzRegressor or
        WassersteinEstimator, fitted or not.
    path : str or path-like

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.datasets import make_moons
    >>> import sklip
    >>> X, y = make_moons(100, noise=0.1, random_state=0)
    >>> clf = sklip.LipschitzClassifier(max_epochs=5, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "moons.sklip")
    >>> sklip.save(clf, path)
    >>> loaded = sklip.load(path)
    >>> bool((loaded.certified_radius(X) == clf.certified_radius(X)).all())
    True
    """
    kind = _estimator_classes().get(type(estimator).__name__)
    if kind is None or not isinstance(estimator, kind):
        raise TypeError(f"sklip.save stores sklip estimators, got {type(estimator).__name__}.")
    arrays: dict[str, np.ndarray] = {}
    encoder = _Encoder(arrays)
    state = {key: value for key, value in estimator.__dict__.items() if key not in _NETWORKS
             and key not in estimator.get_params(deep=False)}  # fmt: skip
    manifest = {
        "sklip_version": __version__,
        "estimator": type(estimator).__name__,
        "params": encoder.encode(estimator.get_params(deep=False), "params"),
        "state": encoder.encode(state, "state"),
        "networks": _encode_networks(estimator, arrays),
    }
    blobs, layout, offset = [], {}, 0
    for name, array in arrays.items():
        blob = _npy_bytes(array)
        layout[name] = [offset, len(blob)]
        blobs.append(blob)
        offset += len(blob)
    manifest["arrays"] = layout
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    body = b"".join([MAGIC, _HEADER.pack(FORMAT_VERSION, len(text)), text, *blobs])
    with open(os.fspath(path), "wb") as file:
        file.write(body + hashlib.sha256(body).digest())


def load(path: str | os.PathLike) -> Any:
    """Read an estimator written by :func:`save`; no code in the file is run.

    The estimator comes back on the CPU, identical in its predictions and
    certificates to the one saved (a CUDA-fitted one too). The file is
    refused with a ``ValueError`` if it is not a sklip model file, if its
    format version is unknown to this sklip, if any byte of it was changed
    (the digest), if an array holds Python objects (which numpy could only
    read through pickle) or if its certificate bounds are below what its
    weights imply.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    estimator

    Examples
    --------
    >>> import os, tempfile
    >>> import sklip
    >>> path = os.path.join(tempfile.mkdtemp(), "unfitted.sklip")
    >>> sklip.save(sklip.LipschitzRegressor(loss="huber"), path)
    >>> sklip.load(path)
    LipschitzRegressor(loss='huber')
    """
    manifest, arrays = _read_archive(os.fspath(path))
    kind = _estimator_classes().get(str(manifest.get("estimator")))
    if kind is None:
        raise ValueError(f"The file holds an unknown estimator {manifest.get('estimator')!r}.")
    try:
        decoder = _Decoder(arrays)
        estimator = kind(**decoder.decode(manifest["params"]))
        estimator.__dict__.update(decoder.decode(manifest["state"]))
        _restore_networks(estimator, manifest["networks"], arrays)
    except (KeyError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"The file's content is not a valid sklip model: {error!r}.") from None
    return estimator


# ------------------------------------------------------------------ networks
def _encode_networks(estimator: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if not hasattr(estimator, "network_"):
        return {}
    for key, tensor in estimator.module_.state_dict().items():
        arrays[f"module_.{key}"] = to_numpy(tensor).copy()
    specs, weights = describe(estimator.network_.module)
    arrays.update({f"network_.{key}": value for key, value in weights.items()})
    pairwise = estimator.network_.pairwise_lipschitz_constant
    if pairwise is not None:
        arrays["network_.pairwise"] = to_numpy(pairwise.double()).copy()
    return {
        "module_keys": list(estimator.module_.state_dict()),
        "n_outputs": estimator.network_.n_outputs,
        "layers": specs,
        "bounds": estimator.network_.bound_record(),
    }


def _restore_networks(estimator: Any, record: dict[str, Any], arrays: dict[str, Any]) -> None:
    """``module_`` (rebuilt by the estimator, then its state) and ``network_``."""
    if not record:
        return
    prefix = "network_."
    weights = {key[len(prefix) :]: value for key, value in arrays.items()
               if key.startswith(prefix) and key != "network_.pairwise"}  # fmt: skip
    n_features = estimator.n_features_in_
    with at_most_threads(1):
        network = FrozenNetwork(build(record["layers"], weights), n_features)
    pairwise = arrays.get("network_.pairwise")
    network.adopt_bounds(record["bounds"], None if pairwise is None else torch.from_numpy(pairwise))
    builder = clone(estimator).set_params(**estimator._fitted_architecture)
    module = builder._build_module(n_features, record["n_outputs"], torch.Generator()).float()
    state = {key: torch.from_numpy(np.array(arrays[f"module_.{key}"]))
             for key in record["module_keys"]}  # fmt: skip
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"The file's trainable network does not fit: {error}") from None
    estimator.module_, estimator.network_ = module, network
    estimator.device_ = torch.device("cpu")
    _check_published_bounds(estimator, record["bounds"]["lipschitz_constant"], pairwise)
    _publish_bounds(estimator)


def _published_constant(estimator: Any, network_bound: float) -> float:
    if hasattr(estimator, "lipschitz_target_"):  # a regressor: K times the network's bound
        return round_up_product(estimator.lipschitz_target_, network_bound)
    return network_bound


def _check_published_bounds(estimator: Any, stored_bound: float, stored_pairwise: Any) -> None:
    """The file's copies of the bounds (in the fitted state) must be its network's.

    ``lipschitz_constant_`` (and the pairwise bounds) are stored in the
    fitted state as well as with the network: a file whose two copies differ
    was modified, and is refused.
    """
    pairwise = getattr(estimator, "pairwise_lipschitz_constant_", None)
    consistent = estimator.lipschitz_constant_ == _published_constant(estimator, stored_bound)
    consistent = consistent and (pairwise is None) == (stored_pairwise is None)
    if consistent and pairwise is not None:
        consistent = np.shape(pairwise) == np.shape(stored_pairwise) and np.array_equal(
            pairwise, stored_pairwise
        )
    if not consistent:
        raise ValueError(
            "The file's lipschitz_constant_ does not match its network's bound: it was "
            "modified, and would certify radii that do not hold."
        )


def _publish_bounds(estimator: Any) -> None:
    """The certificates' bounds from the loaded network (the larger of stored and recomputed)."""
    network = estimator.network_
    estimator.lipschitz_constant_ = _published_constant(estimator, network.lipschitz_constant)
    if network.pairwise_lipschitz_constant is not None:
        estimator.pairwise_lipschitz_constant_ = to_numpy(network.pairwise_lipschitz_constant)


# ------------------------------------------------------------------ the file
def _read_archive(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with open(path, "rb") as file:
        data = file.read()
    start = len(MAGIC) + _HEADER.size
    if len(data) < start + _DIGEST_SIZE or not data.startswith(MAGIC):
        raise ValueError(f"{path!r} is not a sklip model file (no sklip header).")
    version, length = _HEADER.unpack_from(data, len(MAGIC))
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path!r} has format version {version}; this sklip ({__version__}) reads "
            f"version {FORMAT_VERSION}. Save it again with a matching sklip."
        )
    body, digest = data[:-_DIGEST_SIZE], data[-_DIGEST_SIZE:]
    if hashlib.sha256(body).digest() != digest:
        raise ValueError(f"{path!r} was modified or damaged: it fails its SHA-256 digest.")
    try:
        manifest = json.loads(body[start : start + length])
        blobs = body[start + length :]
        arrays = {name: _array(blobs, *span) for name, span in manifest["arrays"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path!r} is not a valid sklip model file: {error}") from None
    return manifest, arrays


def _array(blobs: bytes, offset: int, length: int) -> np.ndarray:
    """One ``.npy`` blob; an object array (which numpy would unpickle) is refused."""
    if not (isinstance(offset, int) and isinstance(length, int) and 0 <= offset
            and offset + length <= len(blobs)):  # fmt: skip
        raise ValueError("an array lies outside the file")
    stream = io.BytesIO(blobs[offset : offset + length])
    try:
        return np.lib.format.read_array(stream, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"it holds an array sklip does not read ({error})") from None


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # asarray, not ascontiguousarray: that one turns a 0-d array (a numpy scalar,
    # Adam's step count) into shape (1,), which would load as an array.
    np.lib.format.write_array(buffer, np.asarray(array, order="C"), allow_pickle=False)
    return buffer.getvalue()


# ------------------------------------------------------------ typed JSON
class _Encoder:
    """Values as JSON, with their Python and numpy types kept; arrays set aside."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def encode(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int) and not isinstance(value, np.integer):
            return value
        if isinstance(value, float) and not isinstance(value, np.floating):
            return value if np.isfinite(value) else {"float": repr(value)}
        if isinstance(value, tuple):
            return {"tuple": [self.encode(item, where) for item in value]}
        if isinstance(value, list):
            return [self.encode(item, where) for item in value]
        if isinstance(value, dict):
            return {"dict": [[self.encode(key, where), self.encode(item, f"{where}[{key!r}]")]
                             for key, item in value.items()]}  # fmt: skip
        if isinstance(value, torch.device):
            return {"device": str(value)}
        if isinstance(value, torch.Tensor):
            return {"tensor": self._store(to_numpy(value), where)}
        if isinstance(value, np.ndarray | np.generic):
            array = np.asarray(value)
            if array.dtype == object:
                return {"objects": self._objects(array, where), "shape": list(array.shape)}
            return {"array": self._store(array, where), "scalar": isinstance(value, np.generic)}
        raise TypeError(
            f"sklip.save cannot store {where} of type {type(value).__name__} without pickle"
            + ("; set random_state to an int or None." if "random_state" in where else ".")
        )

    def _store(self, array: np.ndarray, where: str) -> str:
        name = f"a{len(self.arrays)}"
        self.arrays[name] = array.copy()
        return name

    def _objects(self, array: np.ndarray, where: str) -> list[Any]:
        """An object array of strings (class labels, feature names) as a JSON list."""
        items = array.ravel().tolist()
        if not all(isinstance(item, str) for item in items):
            raise TypeError(f"sklip.save stores object arrays of strings only ({where}).")
        return items


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def decode(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.decode(item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"float"}:
            return float(value["float"])
        if set(value) == {"tuple"}:
            return tuple(self.decode(item) for item in value["tuple"])
        if set(value) == {"dict"}:
            return {self.decode(key): self.decode(item) for key, item in value["dict"]}
        if set(value) == {"device"}:
            return torch.device(value["device"])
        if set(value) == {"tensor"}:
            return torch.from_numpy(np.array(self.arrays[value["tensor"]]))
        if set(value) == {"array", "scalar"}:
            array = np.array(self.arrays[value["array"]])
            if not value["scalar"]:
                return array
            if array.size != 1:
                raise ValueError(f"The file holds a scalar of {array.size} values.")
            # reshape: files written before December 2026 stored a scalar as shape (1,).
            return array.reshape(())[()]
        if set(value) == {"objects", "shape"}:
            array = np.empty(len(value["objects"]), dtype=object)
            array[:] = [str(item) for item in value["objects"]]
            return array.reshape(value["shape"])
        raise ValueError(f"The file holds a value sklip does not read: {sorted(value)}.")
