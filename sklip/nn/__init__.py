"""sklip.nn: 1-Lipschitz building blocks in pure PyTorch (no scikit-learn here).

Layers keep a raw weight and a constraint that maps it to a weight of norm at
most 1; networks built from them are 1-Lipschitz by construction, and
:func:`lipschitz_bound` certifies it from the actual weights.
"""

from .activations import FullSort, GroupSort, MaxMin
from .bounds import (
    UNIT_ROUNDOFF,
    conv2d_operator_norm_bound,
    lipschitz_bound,
    pairwise_lipschitz_bound,
    rounding_slack,
)
from .builders import ACTIVATIONS, lipschitz_cnn, lipschitz_mlp, make_activation
from .constraints import (
    ConvOperatorNormalize,
    RowNormalize,
    SpectralBjorck,
    bjorck_orthonormalize,
    gram_spectral_bound,
)
from .convolutions import AOLConv2d, AOLRescale, CayleyConv2d, CayleyOrthogonal
from .export import export
from .frozen import FrozenNetwork, FrozenOutputs
from .layers import ImageView, L2NormPool2d, LipschitzConv2d, LipschitzLinear
from .losses import (
    hinge_margin_loss,
    hkr_coefficients,
    hkr_loss,
    hkr_terms,
    hkr_terms_from_coefficients,
    kr_loss,
    multiclass_hinge_loss,
    multiclass_hkr_loss,
    multiclass_hkr_terms,
    multiclass_kr_loss,
)

__all__ = [
    "ACTIVATIONS",
    "UNIT_ROUNDOFF",
    "AOLConv2d",
    "AOLRescale",
    "CayleyConv2d",
    "CayleyOrthogonal",
    "ConvOperatorNormalize",
    "FrozenNetwork",
    "FrozenOutputs",
    "FullSort",
    "GroupSort",
    "ImageView",
    "L2NormPool2d",
    "LipschitzConv2d",
    "LipschitzLinear",
    "MaxMin",
    "RowNormalize",
    "SpectralBjorck",
    "bjorck_orthonormalize",
    "conv2d_operator_norm_bound",
    "export",
    "gram_spectral_bound",
    "hinge_margin_loss",
    "hkr_coefficients",
    "hkr_loss",
    "hkr_terms",
    "hkr_terms_from_coefficients",
    "kr_loss",
    "lipschitz_bound",
    "lipschitz_cnn",
    "lipschitz_mlp",
    "make_activation",
    "multiclass_hinge_loss",
    "multiclass_hkr_loss",
    "multiclass_hkr_terms",
    "multiclass_kr_loss",
    "pairwise_lipschitz_bound",
    "rounding_slack",
]
