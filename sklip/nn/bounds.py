r"""Sound upper bounds of the Lipschitz constant of a network, from its weights.

A certificate ``|f(x)| / L`` is only as good as ``L``: it must be an upper bound
of the true Lipschitz constant of the function actually computed, whatever the
training did. So nothing here trusts the constraints to have converged: every
bound is recomputed from the weights the layers apply, in float64.

* Dense layer: the exact spectral norm (largest singular value, by SVD).
* Convolution: the spectral norm of the circular convolution on a torus large
  enough to hold the zero-padded image, i.e. the largest singular value over the
  kernel's DFT frequencies (Sedghi, Gupta & Long, ICLR 2019), computed exactly by
  SVD. Where the image size is unknown, the size-free bound
  :math:`\|K\|_2 \sqrt{\lceil k_h/s_h \rceil \lceil k_w/s_w \rceil}` of the
  reshaped kernel is used (each pixel enters at most that many patches).
* Activations, flatten, reshapes and the scaled L2-norm pooling: 1.

The bound of a sequence of layers is the product of the layer bounds.

The norms are computed in float64, and a computed norm can fall short of the
true one by its rounding: LAPACK's SVD returns the singular values of a matrix
within ``p(m, n) u ||W||_2`` of the stored one (``u = 2**-53``, ``p`` a modest
polynomial), and the FFT of a kernel is exact to ``O(log N) u``. Every norm is
therefore raised by the relative slack :func:`rounding_slack` before it is used
(``64 (m + n) u``, above those published error bounds, and about ``2e-12`` for a
layer of width 128, so no certificate loosens visibly).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ._utils import eval_mode
from .activations import FullSort, GroupSort
from .convolutions import CayleyConv2d
from .layers import ImageView, L2NormPool2d, LipschitzConv2d, LipschitzLinear

__all__ = [
    "UNIT_ROUNDOFF",
    "conv2d_operator_norm_bound",
    "leaf_layers",
    "lipschitz_bound",
    "pairwise_lipschitz_bound",
    "rounding_slack",
]

UNIT_ROUNDOFF = 2.0**-53  # float64's unit roundoff u
SMALLEST_SUBNORMAL = 2.0**-1074  # the absolute rounding step below float64's normal range


def gamma(n: int, unit: float = UNIT_ROUNDOFF) -> float:
    """Higham's :math:`\\gamma_n = nu / (1 - nu)`: relative error of an n-term dot product.

    Examples
    --------
    >>> from sklip.nn.bounds import gamma
    >>> gamma(1) > 2.0**-53
    True
    """
    return n * unit / (1.0 - n * unit)


def round_down(values: np.ndarray) -> np.ndarray:
    """A computed certified quantity (a radius, a lower bound) lowered past its own rounding.

    The few divisions and subtractions that produce it round by a relative
    ``u`` each for normal results, and by up to one subnormal step below the
    normal range: ``8 u`` and 4 steps cover them. Non-finite or negative
    values certify nothing and become 0.

    Examples
    --------
    >>> import numpy as np
    >>> from sklip.nn.bounds import round_down
    >>> round_down(np.array([1.0, -1.0, np.nan, np.inf]))
    array([1., 0., 0., 0.])
    """
    values = np.where(np.isfinite(values) & (values > 0), values, 0.0)
    return np.maximum(values * (1.0 - 8.0 * UNIT_ROUNDOFF) - 4.0 * SMALLEST_SUBNORMAL, 0.0)


def rounding_slack(*dimensions: int) -> float:
    """The factor ``1 + 64 (sum of dimensions) u`` that makes a computed norm an upper bound.

    Examples
    --------
    >>> from sklip.nn import rounding_slack
    >>> 1.0 < rounding_slack(128, 128) < 1.0 + 1e-11
    True
    """
    return 1.0 + 64.0 * sum(dimensions) * UNIT_ROUNDOFF


CONV_PADDINGS = ("zeros", "circular")  # the nn.Conv2d padding modes bounded here

# Parameter-free layers that compute exactly in floating point (comparisons,
# sign tests, moves of values): 1-Lipschitz, and no rounding to bound.
EXACT_LAYERS = (
    GroupSort,
    FullSort,
    nn.ReLU,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.PixelUnshuffle,
    nn.ZeroPad2d,  # zero rows/columns added or (negative) dropped
    ImageView,
)
_ONE_LIPSCHITZ = (
    *EXACT_LAYERS,
    L2NormPool2d,  # scaled by construction to be 1-Lipschitz
)


def lipschitz_bound(module: nn.Module, input_shape: Sequence[int] | None = None) -> float:
    """A sound upper bound of the L2 Lipschitz constant of ``module``.

    Parameters
    ----------
    module : nn.Module
        An ``nn.Sequential`` (possibly nested) of sklip layers, ``nn.Linear``,
        ``nn.Conv2d`` and 1-Lipschitz parameter-free layers. Anything else raises
        ``TypeError``: an unknown layer has no known bound.
    input_shape : sequence of int, optional
        Shape of one input sample, e.g. ``(C, H, W)``. Only used to get the
        image size seen by plain ``nn.Conv2d`` layers, for a tighter bound.

    Returns
    -------
    float
        Product of the per-layer bounds, computed in float64. It bounds the
        module in eval mode, the function sklip evaluates, exports and
        certifies: in training mode sklip's layers divide by a running
        power-iteration estimate of their norm instead, which may be low.

    Examples
    --------
    >>> from sklip.nn import lipschitz_bound, lipschitz_mlp
    >>> lipschitz_bound(lipschitz_mlp(4, (8, 8), 1)) <= 1 + 1e-3
    True
    """
    bounds = _layer_bounds(module, input_shape)
    # Each product rounds by at most u; the slack keeps the result an upper bound.
    return math.prod(bounds) * (1.0 + 2.0 * len(bounds) * UNIT_ROUNDOFF)


def pairwise_lipschitz_bound(module: nn.Module, input_shape: Sequence[int] | None = None) -> Tensor:
    r"""Bounds :math:`L_{ij}` of the Lipschitz constants of the differences :math:`f_i - f_j`.

    With last layer :math:`W` (rows :math:`w_k`) and :math:`L'` the bound of all
    the layers before it, :math:`f_i - f_j = (w_i - w_j)^\top g + \text{const}`
    so :math:`L_{ij} = \|w_i - w_j\|_2 \, L'`. This is what a multiclass
    certificate needs: class ``c`` stays predicted within radius
    :math:`\min_{j \ne c} (f_c - f_j)(x) / L_{cj}`.

    Returns
    -------
    Tensor of shape (K, K), float64, zero on the diagonal.

    Examples
    --------
    >>> from sklip.nn import lipschitz_mlp, pairwise_lipschitz_bound
    >>> pairwise = pairwise_lipschitz_bound(lipschitz_mlp(4, (8,), 3))
    >>> pairwise.shape
    torch.Size([3, 3])
    >>> bool((pairwise <= 2 + 1e-5).all())  # each output is 1-Lipschitz: f_i - f_j at most 2
    True
    """
    layers = list(leaf_layers(module))
    if not layers or not isinstance(layers[-1], LipschitzLinear | nn.Linear):
        raise TypeError("pairwise_lipschitz_bound needs a network whose last layer is linear.")
    bounds = _layer_bounds(module, input_shape)
    weight = _applied_weight(layers[-1]).double().cpu()
    # Row differences taken one by one, not torch.cdist: above 25 rows cdist
    # expands ||a||^2 + ||b||^2 - 2ab, which cancels to 0.0 for rows 1e-9 apart
    # (a pair that can flip, read as one that never does).
    differences = weight[:, None, :] - weight[None, :, :]
    distances = torch.linalg.vector_norm(differences, dim=-1)
    return distances * (math.prod(bounds[:-1]) * rounding_slack(*weight.shape))


def conv2d_operator_norm_bound(
    kernel: Tensor,
    input_size: Sequence[int] | None = None,
    padding: Sequence[int] = (0, 0),
    stride: Sequence[int] = (1, 1),
    padding_mode: str = "zeros",
) -> float:
    """Upper bound of the L2 operator norm of a zero-padded or circular 2-D convolution.

    Parameters
    ----------
    kernel : Tensor of shape (C_out, C_in, k_h, k_w)
    input_size : (H, W), optional
        With it, the exact norm of the dominating circular convolution: on the
        ``(H + 2 p_h) x (W + 2 p_w)`` torus for zero padding, on the
        ``H x W`` torus itself for circular padding. Without it (zero padding
        only), the size-free bound.
    padding, stride : pairs of int
    padding_mode : {"zeros", "circular"}, default="zeros"

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import conv2d_operator_norm_bound
    >>> doubling = torch.zeros(1, 1, 3, 3)
    >>> doubling[0, 0, 1, 1] = 2.0  # x -> 2 x, of norm exactly 2
    >>> round(conv2d_operator_norm_bound(doubling, (8, 8), padding=(1, 1)), 4)
    2.0
    """
    kernel = kernel.detach().double().cpu()
    k_h, k_w = kernel.shape[-2:]
    if padding_mode == "circular":
        if input_size is None:
            raise ValueError("The bound of a circular convolution needs input_size.")
        return _circular_conv_bound(kernel, tuple(input_size), tuple(padding))
    if padding_mode != "zeros":
        raise ValueError(f"padding_mode must be 'zeros' or 'circular', got {padding_mode!r}.")
    if input_size is None:
        overlap = math.ceil(k_h / stride[0]) * math.ceil(k_w / stride[1])
        reshaped = kernel.reshape(kernel.shape[0], -1)
        norm = float(torch.linalg.matrix_norm(reshaped, ord=2)) * math.sqrt(overlap)
        return norm * rounding_slack(*reshaped.shape)
    # Torus holding the padded image: the kernel never wraps onto image pixels.
    torus = (
        max(input_size[0] + 2 * padding[0], k_h),
        max(input_size[1] + 2 * padding[1], k_w),
    )
    spectrum = torch.fft.rfft2(kernel, s=torus).permute(2, 3, 0, 1)
    norm = float(torch.linalg.matrix_norm(spectrum, ord=2).max())
    return norm * rounding_slack(*kernel.shape[:2], *torus)


def _circular_conv_bound(kernel: Tensor, torus: tuple[int, int], padding: tuple[int, int]) -> float:
    """Norm of a circular convolution on the ``torus`` (the image size).

    Output ``i`` reads input ``(i + a - p) mod N``: kernel taps ``N`` apart hit
    the same pixel, so the operator is the circular convolution with the
    kernel folded modulo the torus. Stride-1 outputs beyond ``N`` along an
    axis repeat earlier ones, each axis's repeat count multiplying the norm
    (a stride only drops outputs).
    """
    k_h, k_w = kernel.shape[-2:]
    folded_h, folded_w = -(-k_h // torus[0]) * torus[0], -(-k_w // torus[1]) * torus[1]
    folded = torch.nn.functional.pad(kernel, (0, folded_w - k_w, 0, folded_h - k_h))
    folded = folded.unflatten(-2, (-1, torus[0])).sum(-3)
    folded = folded.unflatten(-1, (-1, torus[1])).sum(-2)
    spectrum = torch.fft.rfft2(folded).permute(2, 3, 0, 1)
    norm = float(torch.linalg.matrix_norm(spectrum, ord=2).max())
    repeats = 1
    for n, p, k in zip(torus, padding, (k_h, k_w), strict=True):
        outputs = n + 2 * p - k + 1
        repeats *= max(1, -(-outputs // n))
    taps = math.ceil(k_h / torus[0]) * math.ceil(k_w / torus[1])
    return norm * math.sqrt(repeats) * rounding_slack(*kernel.shape[:2], *torus, taps)


def leaf_layers(module: nn.Module) -> Iterator[nn.Module]:
    """The layers of a (possibly nested) ``nn.Sequential``, in order.

    Only a container that runs its children one after the other is opened: a
    subclass with its own ``forward`` (a residual block, say) or with hooks
    is a layer of its own, which no bound knows.
    """
    if isinstance(module, nn.Sequential) and computes_as(module, nn.Sequential):
        for child in module:
            yield from leaf_layers(child)
    else:
        yield module


def computes_as(layer: nn.Module, kind: type) -> bool:
    """Whether ``layer`` computes what ``kind`` does: its ``forward``, and no forward hooks.

    A subclass may override ``forward``; a hook (``torch.nn.utils.weight_norm``,
    the old ``spectral_norm``, one's own) may recompute the weight when the
    layer runs, or change its output: the bound of the weights it holds
    would then not be the bound of what it computes.
    """
    return type(layer).forward is kind.forward and not (
        layer._forward_hooks or layer._forward_pre_hooks
    )


def _layer_bounds(module: nn.Module, input_shape: Sequence[int] | None) -> list[float]:
    layers = list(leaf_layers(module))
    sizes = _conv_input_sizes(module, layers, input_shape)
    return [_single_layer_bound(layer, sizes.get(id(layer), [None])) for layer in layers]


_BOUNDED_KINDS = (LipschitzLinear, LipschitzConv2d, CayleyConv2d, nn.Linear, nn.Conv2d,
                  *_ONE_LIPSCHITZ)  # fmt: skip


def _single_layer_bound(layer: nn.Module, image_sizes: list[tuple[int, int] | None]) -> float:
    kind = next((kind for kind in _BOUNDED_KINDS if isinstance(layer, kind)), None)
    if kind is not None and not computes_as(layer, kind):
        raise TypeError(
            f"Layer {layer.__class__.__name__} overrides the forward of {kind.__name__} or "
            "carries forward hooks (torch.nn.utils.weight_norm, spectral_norm): its weights "
            "do not say what it computes, so no bound is known; remove the hooks, or use "
            "torch.nn.utils.parametrize."
        )
    if isinstance(layer, LipschitzLinear | nn.Linear):
        # On the CPU, like every other bound here: LAPACK's SVD is the one whose
        # error the slack covers, and a CUDA-fitted model gets the bound a
        # CPU-fitted one with the same weights would.
        weight = _applied_weight(layer).double().cpu()
        norm = float(torch.linalg.matrix_norm(weight, ord=2))
        return norm * rounding_slack(*weight.shape)
    if isinstance(layer, LipschitzConv2d):
        return conv2d_operator_norm_bound(
            _applied_weight(layer), layer.input_size, layer.padding, (layer.stride,) * 2
        )
    if isinstance(layer, CayleyConv2d):
        return conv2d_operator_norm_bound(
            _applied_weight(layer), layer.input_size, layer.padding, padding_mode="circular"
        )
    if isinstance(layer, nn.Conv2d):
        # One module may run at several image sizes: its bound at each.
        return max(_plain_conv_bound(layer, size) for size in image_sizes)
    if isinstance(layer, _ONE_LIPSCHITZ):
        return 1.0
    raise TypeError(
        f"No Lipschitz bound is known for layer {layer.__class__.__name__}; "
        "use sklip.nn layers, nn.Linear, nn.Conv2d or 1-Lipschitz activations."
    )


def _plain_conv_bound(conv: nn.Conv2d, image_size: tuple[int, int] | None) -> float:
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode not in CONV_PADDINGS:
        raise TypeError(
            "Lipschitz bounds of nn.Conv2d need groups=1, dilation=1 and zero or circular padding."
        )
    if conv.padding_mode == "circular" and image_size is None:
        raise TypeError("The Lipschitz bound of a circular nn.Conv2d needs the input shape.")
    k_h, k_w = conv.kernel_size
    if conv.padding == "same":
        padding = (k_h // 2, k_w // 2)  # total k - 1 or more: the torus is large enough
    elif conv.padding == "valid":
        padding = (0, 0)
    else:
        padding = conv.padding
    return conv2d_operator_norm_bound(
        conv.weight, image_size, padding, conv.stride, conv.padding_mode
    )


def _applied_weight(layer: nn.Module) -> Tensor:
    if isinstance(layer, LipschitzLinear | LipschitzConv2d | CayleyConv2d):
        with eval_mode(layer), torch.no_grad():
            return layer.normalized_weight().detach()
    return layer.weight.detach()


def _conv_input_sizes(
    module: nn.Module, layers: list[nn.Module], input_shape: Sequence[int] | None
) -> dict[int, list[tuple[int, int]]]:
    """Image sizes entering each plain ``nn.Conv2d`` (each run), from one dry forward pass."""
    plain_convs = [layer for layer in layers if isinstance(layer, nn.Conv2d)]
    if input_shape is None or not plain_convs:
        return {}
    sizes: dict[int, list[tuple[int, int]]] = {}

    def record(layer: nn.Module, args: tuple[Tensor, ...]) -> None:
        sizes.setdefault(id(layer), []).append(tuple(args[0].shape[-2:]))

    handles = [conv.register_forward_pre_hook(record) for conv in plain_convs]
    try:
        parameter = next(module.parameters(), None)
        device = parameter.device if parameter is not None else None
        dtype = parameter.dtype if parameter is not None else None
        with eval_mode(module), torch.no_grad():
            module(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
    return sizes
