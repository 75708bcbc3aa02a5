"""sklip: certifiably robust 1-Lipschitz neural networks for scikit-learn.

The torch building blocks are in :mod:`sklip.nn`; the scikit-learn estimators
(``LipschitzClassifier``, ``WassersteinEstimator``) build on them.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
