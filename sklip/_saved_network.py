"""A frozen network as data: a list of layer descriptions and named float64 arrays.

What :func:`sklip.save` writes for ``network_`` and what :func:`sklip.load`
rebuilds it from, without pickle: only the layer types a frozen network
holds are described, each by its constructor arguments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ._device import to_numpy
from .nn import FullSort, GroupSort, ImageView, L2NormPool2d


def describe(module: nn.Sequential) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Layer descriptions and the weights (CPU float64 arrays, named ``"<index>.<name>"``)."""
    specs, arrays = [], {}
    for index, layer in enumerate(module):
        specs.append(_describe_layer(layer))
        for name, tensor in layer.named_parameters(recurse=False):
            arrays[f"{index}.{name}"] = to_numpy(tensor).copy()
    return specs, arrays


def _describe_layer(layer: nn.Module) -> dict[str, Any]:
    if isinstance(layer, nn.Linear):
        return {"type": "Linear", "in": layer.in_features, "out": layer.out_features,
                "bias": layer.bias is not None}  # fmt: skip
    if isinstance(layer, nn.Conv2d):
        return {
            "type": "Conv2d", "in": layer.in_channels, "out": layer.out_channels,
            "kernel_size": list(layer.kernel_size), "stride": list(layer.stride),
            "padding": list(layer.padding), "padding_mode": layer.padding_mode,
            "bias": layer.bias is not None,
        }  # fmt: skip
    if isinstance(layer, GroupSort):
        return {"type": "GroupSort", "group_size": layer.group_size}
    if isinstance(layer, L2NormPool2d):
        return {"type": "L2NormPool2d", "kernel_size": list(layer.kernel_size),
                "stride": list(layer.stride)}  # fmt: skip
    if isinstance(layer, ImageView):
        return {"type": "ImageView", "image_shape": list(layer.image_shape)}
    if isinstance(layer, nn.ZeroPad2d):
        return {"type": "ZeroPad2d", "padding": list(layer.padding)}
    if isinstance(layer, nn.PixelUnshuffle):
        return {"type": "PixelUnshuffle", "factor": layer.downscale_factor}
    if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) == (1, -1):
        return {"type": "Flatten"}
    for kind in (FullSort, nn.ReLU, nn.Identity):
        if type(layer) is kind:
            return {"type": kind.__name__}
    raise TypeError(f"sklip.save cannot describe layer {layer.__class__.__name__}.")


def build(specs: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> nn.Sequential:
    """The plain float64 network of :func:`describe`'s output (no gradient, eval mode)."""
    layers = []
    for index, spec in enumerate(specs):
        layer = _build_layer(spec)
        expected = dict(layer.named_parameters(recurse=False))
        for name, parameter in expected.items():
            key = f"{index}.{name}"
            value = arrays.get(key)
            if value is None or value.shape != tuple(parameter.shape):
                raise ValueError(f"The file's weight {key!r} is missing or of the wrong shape.")
            weights = torch.from_numpy(np.array(value, dtype=np.float64))  # a copy
            setattr(layer, name, nn.Parameter(weights, requires_grad=False))
        layers.append(layer)
    return nn.Sequential(*layers).eval()


def _build_layer(spec: dict[str, Any]) -> nn.Module:
    kind = spec.get("type")
    # On the meta device: no initialisation drawn from torch's RNG, and the
    # parameters are replaced by the file's (build).
    options = {"dtype": torch.float64, "device": "meta"}
    if kind == "Linear":
        return nn.Linear(spec["in"], spec["out"], bias=spec["bias"], **options)
    if kind == "Conv2d":
        return nn.Conv2d(
            spec["in"], spec["out"], tuple(spec["kernel_size"]),
            stride=tuple(spec["stride"]), padding=tuple(spec["padding"]),
            padding_mode=spec["padding_mode"], bias=spec["bias"], **options,
        )  # fmt: skip
    simple = {
        "GroupSort": lambda: GroupSort(spec["group_size"]),
        "L2NormPool2d": lambda: L2NormPool2d(tuple(spec["kernel_size"]), tuple(spec["stride"])),
        "ImageView": lambda: ImageView(tuple(spec["image_shape"])),
        "ZeroPad2d": lambda: nn.ZeroPad2d(tuple(spec["padding"])),
        "PixelUnshuffle": lambda: nn.PixelUnshuffle(spec["factor"]),
        "Flatten": nn.Flatten,
        "FullSort": FullSort,
        "ReLU": nn.ReLU,
        "Identity": nn.Identity,
    }
    if kind not in simple:
        raise ValueError(f"The file describes an unknown layer type {kind!r}.")
    return simple[kind]()
