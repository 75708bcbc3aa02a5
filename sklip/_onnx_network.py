"""The layers of a frozen network as ONNX nodes, each computing what the analysis models.

Every dense layer and convolution is one ``Gemm`` (or two accumulating ones):
dot products plus the bias, the computation whose rounding
:mod:`sklip.nn.frozen` bounds, in float64 as in float32. A convolution
gathers its patches with one constant index table (the unfold) from images
kept channels-last, ``(n, H*W, C)``, so that the product is a single large
matrix product: onnxruntime has no float64 ``Conv``, and a runtime's own
convolution may use FFT or Winograd algorithms, whose rounding the
dot-product analysis does not cover. Sorting activations and reshapes only
move or compare values.

Moves are deferred where the next layer can absorb them for free:

* a dense layer followed by a pairwise ``GroupSort`` computes its two halves
  of outputs separately, so the sort needs no split, and a dense layer
  reading such a pair accumulates the halves (a dot product summed in
  another order: the same bound);
* a ``PixelUnshuffle`` is not carried out: the next convolution's index
  table reads the unshuffled pixels from the image before it, and a flatten
  after it lets the next dense layer read the entries in their stored order
  (its weight's columns permuted instead).

Each layer's input is reported as a tensor holding exactly its entries (in
some order), for the norms of the rounding bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from ._device import to_numpy
from ._onnx_graph import GraphBuilder
from .nn import FullSort, GroupSort, ImageView, L2NormPool2d


@dataclass(frozen=True)
class Pair:
    """The two halves of the features or channels, not yet put together."""

    low: str
    high: str


@dataclass(frozen=True)
class Unshuffled:
    """``PixelUnshuffle`` of the channels-last image ``source``, not carried out.

    ``table[p, w]`` is the source position of pixel ``w`` (row-major in the
    window) of output position ``p``; output channel ``c r^2 + w`` is source
    channel ``c`` there.
    """

    source: str
    table: np.ndarray
    channels: int


@dataclass(frozen=True)
class Permuted:
    """Flat rows whose stored entry ``k`` is logical feature ``order[k]``."""

    source: str
    order: np.ndarray


def emit_network(
    graph: GraphBuilder, module: nn.Sequential, shapes: list[tuple[int, ...]], x: str
) -> tuple[str, list[object]]:
    """Nodes computing ``module`` on the flat rows ``x``.

    Returns the output's name and, for each layer, a name or :class:`Pair`
    holding exactly the entries of its input (for their norms).
    """
    layers = list(module)
    inputs = []
    value: object = x
    for index, (layer, shape) in enumerate(zip(layers, shapes, strict=True)):
        inputs.append(_entries(value))
        following = layers[index + 1] if index + 1 < len(layers) else None
        pair = isinstance(following, GroupSort) and following.group_size == 2
        value = _emit_layer(graph, layer, shape, value, pair)
    return materialised(graph, value), inputs


def _entries(value: object) -> object:
    """A tensor (or pair) holding the entries of ``value``: what its norm reads."""
    if isinstance(value, Unshuffled | Permuted):
        return value.source
    return value


def materialised(graph: GraphBuilder, value: object) -> str:
    """``value`` as a tensor in its logical layout."""
    if isinstance(value, Pair):
        return graph.op("Concat", value.low, value.high, axis=-1)
    if isinstance(value, Permuted):
        inverse = np.argsort(value.order)
        return graph.op("Gather", value.source, graph.integers(inverse), axis=1)
    if isinstance(value, Unshuffled):
        windows = graph.op("Gather", value.source, graph.integers(value.table), axis=1)
        moved = graph.op("Transpose", windows, perm=[0, 1, 3, 2])  # (n, P, C, r^2)
        merged = [0, value.table.shape[0], value.channels * value.table.shape[1]]
        return graph.op("Reshape", moved, graph.integers(merged))
    return value


def _emit_layer(
    graph: GraphBuilder, layer: nn.Module, shape: tuple[int, ...], x: object, pair: bool
) -> object:
    if isinstance(layer, nn.Linear):
        return _emit_linear(graph, layer, x, pair)
    if isinstance(layer, nn.Conv2d):
        return _emit_conv(graph, layer, shape, x)
    if isinstance(layer, GroupSort) and layer.group_size == 2 and isinstance(x, Pair):
        return Pair(graph.op("Min", x.low, x.high), graph.op("Max", x.low, x.high))
    if isinstance(layer, nn.PixelUnshuffle) and not isinstance(x, Unshuffled):
        return _unshuffled(layer.downscale_factor, shape, materialised(graph, x))
    if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) == (1, -1):
        return _flatten(graph, shape, x)
    x = materialised(graph, x)
    if isinstance(layer, L2NormPool2d):
        return _emit_pool(graph, layer, shape, x)
    if isinstance(layer, GroupSort | FullSort):
        size = layer.group_size if isinstance(layer, GroupSort) else shape[1]
        return _emit_sort(graph, size, shape, x)
    if isinstance(layer, nn.ReLU):
        return graph.op("Relu", x)
    if isinstance(layer, ImageView):
        channels, height, width = layer.image_shape
        if channels == 1:
            return graph.op("Reshape", x, graph.integers([-1, height * width, 1]))
        planes = graph.op("Reshape", x, graph.integers([-1, channels, height * width]))
        return graph.op("Transpose", planes, perm=[0, 2, 1])
    if isinstance(layer, nn.Identity):
        return x
    if isinstance(layer, nn.ZeroPad2d):
        left, right, top, bottom = layer.padding
        channels, height, width = shape[1:]
        image = graph.op("Reshape", x, graph.integers([0, height, width, channels]))
        pads = graph.integers([0, top, left, 0, 0, bottom, right, 0])
        padded = graph.op("Pad", image, pads, mode="constant")
        size = (height + top + bottom) * (width + left + right)
        return graph.op("Reshape", padded, graph.integers([0, size, channels]))
    raise TypeError(f"sklip cannot export layer {layer.__class__.__name__} to ONNX.")


def _gemm(graph: GraphBuilder, x: str, weight: np.ndarray, bias: str) -> str:
    """``x @ weight.T + bias``: one dot product plus the bias per output."""
    return graph.op("Gemm", x, graph.constant(weight), bias, transB=1)


def _products(graph: GraphBuilder, x: object, weight: np.ndarray, bias: np.ndarray,
              pair: bool) -> object:  # fmt: skip
    """``x @ weight.T + bias`` for a tensor or a :class:`Pair` ``x``; with ``pair``,
    the two halves of the outputs apart."""

    def rows(selected: slice) -> str:
        if not isinstance(x, Pair):
            return _gemm(graph, x, weight[selected], graph.constant(bias[selected]))
        half = weight.shape[1] // 2
        partial = _gemm(graph, x.high, weight[selected, half:], graph.constant(bias[selected]))
        return _gemm(graph, x.low, weight[selected, :half], partial)

    if not pair:
        return rows(slice(None))
    half = weight.shape[0] // 2
    return Pair(rows(slice(None, half)), rows(slice(half, None)))


def _emit_linear(graph: GraphBuilder, layer: nn.Linear, x: object, pair: bool) -> object:
    weight = to_numpy(layer.weight)
    bias = np.zeros(weight.shape[0]) if layer.bias is None else to_numpy(layer.bias)
    if isinstance(x, Permuted):
        x, weight = x.source, weight[:, x.order]  # read the entries where they are
    elif isinstance(x, Unshuffled):
        x = materialised(graph, x)
    return _products(graph, x, weight, bias, pair)


def _patch_indices(
    size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
    padding: tuple[int, int], circular: bool,
) -> tuple[np.ndarray, tuple[int, int]]:  # fmt: skip
    """Flat pixel index read by each (output position, tap), as an unfold reads them.

    ``-1`` marks a tap on zero padding; circular padding wraps instead.
    Returns the table ``(positions, taps)`` and the output size.
    """
    height, width = size
    out_h = (height + 2 * padding[0] - kernel[0]) // stride[0] + 1
    out_w = (width + 2 * padding[1] - kernel[1]) // stride[1] + 1
    rows = np.arange(out_h)[:, None] * stride[0] + np.arange(kernel[0])[None, :] - padding[0]
    cols = np.arange(out_w)[:, None] * stride[1] + np.arange(kernel[1])[None, :] - padding[1]
    if circular:
        rows, cols = rows % height, cols % width
    # (out_h, out_w, tap_h, tap_w): taps in the order of the kernel's flattening.
    r, c = rows[:, None, :, None], cols[None, :, None, :]
    table = np.where((r >= 0) & (r < height) & (c >= 0) & (c < width), r * width + c, -1)
    return table.reshape(out_h * out_w, kernel[0] * kernel[1]), (out_h, out_w)


def _gather_with_zeros(graph: GraphBuilder, source: str, table: np.ndarray, positions: int) -> str:
    """``source[:, table]`` along the positions, ``-1`` reading a zero pixel."""
    if (table < 0).any():
        # One zero pixel appended after the last position: -1 then reads it.
        source = graph.op("Pad", source, graph.integers([0, 0, 0, 0, 1, 0]), mode="constant")
        table = np.where(table < 0, positions, table)
    return graph.op("Gather", source, graph.integers(table), axis=1)


def _emit_conv(graph: GraphBuilder, conv: nn.Conv2d, shape: tuple[int, ...], x: object) -> str:
    if isinstance(conv.padding, str) or conv.groups != 1 or conv.dilation != (1, 1):
        raise TypeError("sklip exports nn.Conv2d with integer padding, groups=1, dilation=1.")
    if conv.padding_mode not in ("zeros", "circular"):
        raise TypeError(f"sklip cannot export padding_mode={conv.padding_mode!r} to ONNX.")
    table, (out_h, out_w) = _patch_indices(
        shape[2:], conv.kernel_size, conv.stride, conv.padding, conv.padding_mode == "circular"
    )
    kernel = to_numpy(conv.weight)  # (C_out, C_in, k_h, k_w)
    taps = table.shape[1]
    if isinstance(x, Unshuffled):
        # Read the unshuffled pixels straight from the image before the unshuffle.
        window = x.table.shape[1]
        source_positions = int(x.table.max()) + 1
        composed = np.where(table[..., None] < 0, -1, x.table[np.maximum(table, 0)])
        patches = _gather_with_zeros(graph, x.source, composed, source_positions)
        # Columns (tap, window pixel, source channel); input channel = c r^2 + w.
        kernel = kernel.reshape(len(kernel), x.channels, window, taps).transpose(0, 3, 2, 1)
    else:
        patches = _gather_with_zeros(graph, materialised(graph, x), table, shape[2] * shape[3])
        kernel = kernel.reshape(len(kernel), shape[1], taps).transpose(0, 2, 1)
    columns = graph.op("Reshape", patches, graph.integers([-1, kernel[0].size]))
    kernel = kernel.reshape(len(kernel), -1)
    bias = to_numpy(conv.bias) if conv.bias is not None else np.zeros(len(kernel))
    # One product even before a pairwise sort: two would each read the
    # columns, which hold taps times more entries than the outputs.
    out = _products(graph, columns, kernel, bias, pair=False)
    return graph.op("Reshape", out, graph.integers([-1, out_h * out_w, conv.out_channels]))


def _unshuffled(factor: int, shape: tuple[int, ...], x: str) -> Unshuffled:
    """The deferred ``nn.PixelUnshuffle(factor)`` of a channels-last image."""
    channels, height, width = shape[1:]
    rows = np.arange(height // factor)[:, None, None, None] * factor
    cols = np.arange(width // factor)[None, :, None, None] * factor
    offsets_r = np.arange(factor)[None, None, :, None]
    offsets_c = np.arange(factor)[None, None, None, :]
    table = (rows + offsets_r) * width + cols + offsets_c
    return Unshuffled(x, table.reshape(-1, factor * factor), channels)


def _flatten(graph: GraphBuilder, shape: tuple[int, ...], x: object) -> object:
    """Flat rows in the channels-first order of ``torch.flatten``, or a :class:`Permuted`."""
    if len(shape) == 2:
        return materialised(graph, x)
    positions = shape[2] * shape[3]
    if isinstance(x, Unshuffled):
        windows = graph.op("Gather", x.source, graph.integers(x.table), axis=1)  # (n, P, w, C)
        p, w, c = np.meshgrid(np.arange(x.table.shape[0]), np.arange(x.table.shape[1]),
                              np.arange(x.channels), indexing="ij")  # fmt: skip
        order = ((c * x.table.shape[1] + w) * positions + p).ravel()
        return Permuted(graph.op("Reshape", windows, graph.integers([0, order.size])), order)
    x = materialised(graph, x)
    p, c = np.meshgrid(np.arange(positions), np.arange(shape[1]), indexing="ij")
    order = (c * positions + p).ravel()
    return Permuted(graph.op("Reshape", x, graph.integers([0, order.size])), order)


def _emit_pool(graph: GraphBuilder, pool: L2NormPool2d, shape: tuple[int, ...], x: str) -> str:
    """``scale * sqrt(max(sum of squares, 1e-12))`` per window and channel."""
    table, _ = _patch_indices(shape[2:], pool.kernel_size, pool.stride, (0, 0), False)
    squares = graph.op("Mul", x, x)
    patches = graph.op("Gather", squares, graph.integers(table), axis=1)  # (n, P, a, C)
    sums = graph.op("ReduceSum", patches, graph.integers([2]), keepdims=0)
    floored = graph.op("Max", sums, graph.constant(1e-12))
    return graph.op("Mul", graph.op("Sqrt", floored), graph.constant(pool.scale))


def _emit_sort(graph: GraphBuilder, group_size: int, shape: tuple[int, ...], x: str) -> str:
    """Groups ``(x_j, x_{j+m}, ...)`` of the features or channels, each sorted ascending."""
    channels = shape[1]
    images = len(shape) == 4
    if group_size == 2:
        low, high = graph.op("Split", x, n_outputs=2, axis=-1, num_outputs=2)
        return graph.op("Concat", graph.op("Min", low, high), graph.op("Max", low, high), axis=-1)
    groups = [group_size, channels // group_size]
    grouped = graph.op("Reshape", x, graph.integers([0, 0, *groups] if images else [0, *groups]))
    k = graph.integers([group_size])
    ordered = graph.op("TopK", grouped, k, n_outputs=2, axis=2 if images else 1, largest=0)[0]
    return graph.op("Reshape", ordered, graph.integers([0, -1, channels] if images else [0, -1]))
