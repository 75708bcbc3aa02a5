"""sklip: certifiably robust 1-Lipschitz neural networks for scikit-learn.

The estimators are exported here; the torch building blocks are in
:mod:`sklip.nn`.
"""

__version__ = "0.1.0.dev0"

from .classifier import LipschitzClassifier

__all__ = ["LipschitzClassifier", "__version__"]
