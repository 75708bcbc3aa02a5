"""sklip: certifiably robust 1-Lipschitz neural networks for scikit-learn.

The estimators are exported here; the torch building blocks are in
:mod:`sklip.nn`, which does not need scikit-learn: the estimators are imported
on first use, so ``import sklip.nn`` stays a pure PyTorch import.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0.dev0"

_LAZY = {
    "LipschitzClassifier": "sklip.classifier",
    "LipschitzOutlierDetector": "sklip.outliers",
    "LipschitzRegressor": "sklip.regressor",
    "WassersteinEstimator": "sklip.wasserstein",
    "wasserstein_distance": "sklip.wasserstein",
    "wasserstein_test": "sklip._two_sample",
    "fit_in_chunks": "sklip._streaming",
    "to_onnx": "sklip._onnx_export",
    "save": "sklip._persistence",
    "load": "sklip._persistence",
}

__all__ = [
    "LipschitzClassifier",
    "LipschitzOutlierDetector",
    "LipschitzRegressor",
    "WassersteinEstimator",
    "__version__",
    "fit_in_chunks",
    "load",
    "save",
    "to_onnx",
    "wasserstein_distance",
    "wasserstein_test",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sklip' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
