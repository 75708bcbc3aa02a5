"""Export a constrained network to plain PyTorch layers with the weights baked in."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ._utils import eval_mode
from .bounds import computes_as, leaf_layers
from .convolutions import CayleyConv2d
from .layers import LipschitzConv2d, LipschitzLinear

__all__ = ["export"]


def export(module: nn.Module) -> nn.Sequential:
    """A plain ``nn.Sequential`` computing the same function as ``module``.

    Constrained layers become ``nn.Linear`` / ``nn.Conv2d`` holding the
    normalised weights that ``module`` applies in eval mode, so inference pays
    nothing for the constraints. Parameter-free layers (activations, pooling,
    reshapes) are copied. The result is a detached copy in eval mode: training it
    further would leave the 1-Lipschitz set.

    Parameters
    ----------
    module : nn.Module
        An ``nn.Sequential`` (possibly nested) of sklip layers and standard
        layers.

    Returns
    -------
    nn.Sequential

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import export, lipschitz_mlp
    >>> net = lipschitz_mlp(4, (8,), 1).eval()
    >>> x = torch.randn(5, 4)
    >>> torch.allclose(export(net)(x), net(x), atol=1e-6)
    True
    """
    with eval_mode(module), torch.no_grad():
        layers = [_export_layer(layer) for layer in _children(module)]
    return nn.Sequential(*layers).eval()


def _children(module: nn.Module) -> list[nn.Module]:
    return list(leaf_layers(module))  # a Sequential with its own forward stays whole


def _export_layer(layer: nn.Module) -> nn.Module:
    sklip_kinds = (LipschitzLinear, LipschitzConv2d, CayleyConv2d)
    kind = next((k for k in sklip_kinds if isinstance(layer, k)), None)
    if kind is not None and not computes_as(layer, kind):
        # Rebuilt as a plain layer, it would silently lose what the hook or forward adds.
        raise TypeError(
            f"Cannot export layer {layer.__class__.__name__}: it overrides the forward of "
            f"{kind.__name__} or carries forward hooks."
        )
    if isinstance(layer, LipschitzLinear):
        plain = nn.Linear(
            layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta"
        )
    elif isinstance(layer, LipschitzConv2d | CayleyConv2d):
        circular = isinstance(layer, CayleyConv2d)  # periodic: its applied kernel wraps
        plain = nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=1 if circular else layer.stride,
            padding=layer.padding,
            padding_mode="circular" if circular else "zeros",
            bias=layer.bias is not None,
            device="meta",
        )
    else:
        if any(True for _ in layer.parameters(recurse=False)) and not isinstance(
            layer, nn.Linear | nn.Conv2d
        ):
            raise TypeError(f"Cannot export layer {layer.__class__.__name__}: unknown parameters.")
        return _explicit_padding(copy.deepcopy(layer))
    # Built on the meta device, the plain layer draws no initialisation from (and
    # does not advance) torch's global RNG; its parameters are then the applied
    # ones. (nn.utils.skip_init would do the same through to_empty, whose first
    # call imports sympy: 0.4 to 0.6 s of a first fit.)
    plain.weight = nn.Parameter(layer.normalized_weight().detach().clone())
    if layer.bias is not None:
        plain.bias = nn.Parameter(layer.bias.detach().clone())
    return plain


def _explicit_padding(layer: nn.Module) -> nn.Module:
    """A plain ``nn.Conv2d`` with ``padding="same"`` or ``"valid"`` as the pair of ints it means.

    The bounds and rounding analyses read ``padding`` as a pair. "same" with an
    odd kernel pads ``k // 2`` on each side; with an even one torch pads one
    side more, which a pair cannot say: refused.
    """
    if not (isinstance(layer, nn.Conv2d) and isinstance(layer.padding, str)):
        return layer
    if layer.padding == "valid":
        pairs = (0, 0)
    elif all(k % 2 for k in layer.kernel_size):
        sizes = zip(layer.kernel_size, layer.dilation, strict=True)
        pairs = tuple((k - 1) // 2 * d for k, d in sizes)
    else:
        raise TypeError(
            f"{layer!r}: padding='same' with an even kernel pads one side more than the "
            "other, which sklip does not bound; give the padding as a pair of ints."
        )
    layer.padding = pairs
    layer._reversed_padding_repeated_twice = [p for p in reversed(pairs) for _ in range(2)]
    return layer
