"""The layers of a frozen network as ONNX nodes, each computing what the analysis models.

Dense layers are one ``Gemm`` (dot products plus the bias). Convolutions and
the L2-norm pooling gather their patches with one constant index table (the
unfold) and take plain dot products or sums of squares: onnxruntime has no
float64 ``Conv``, and a runtime's own convolution may use FFT or Winograd
algorithms, whose rounding the dot-product analysis does not cover. The
sorting activations and reshapes only move or compare values.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ._onnx_graph import GraphBuilder
from .nn import FullSort, GroupSort, ImageView, L2NormPool2d


def emit_network(
    graph: GraphBuilder, module: nn.Sequential, shapes: list[tuple[int, ...]], x: str
) -> tuple[str, list[str]]:
    """Nodes computing ``module`` on the flat rows ``x``.

    Returns the output's name and the name of each layer's input (for the
    norms of the rounding bound).
    """
    inputs = []
    for layer, shape in zip(module, shapes, strict=True):
        inputs.append(x)
        x = _emit_layer(graph, layer, shape, x)
    return x, inputs


def _emit_layer(graph: GraphBuilder, layer: nn.Module, shape: tuple[int, ...], x: str) -> str:
    if isinstance(layer, nn.Linear):
        weight = layer.weight.detach().cpu().numpy()
        bias = np.zeros(weight.shape[0]) if layer.bias is None else layer.bias.detach().cpu()
        return graph.op("Gemm", x, graph.constant(weight), graph.constant(bias), transB=1)
    if isinstance(layer, nn.Conv2d):
        return _emit_conv(graph, layer, shape, x)
    if isinstance(layer, L2NormPool2d):
        return _emit_pool(graph, layer, shape, x)
    if isinstance(layer, GroupSort):
        return _emit_group_sort(graph, layer.group_size, shape, x)
    if isinstance(layer, FullSort):
        return graph.op("TopK", x, graph.integers([shape[1]]), n_outputs=2, axis=1, largest=0)[0]
    if isinstance(layer, nn.ReLU):
        return graph.op("Relu", x)
    if isinstance(layer, ImageView):
        return graph.op("Reshape", x, graph.integers([-1, *layer.image_shape]))
    if isinstance(layer, nn.Flatten) and layer.start_dim == 1 and layer.end_dim == -1:
        return graph.op("Flatten", x, axis=1)
    if isinstance(layer, nn.Identity):
        return x
    if isinstance(layer, nn.ZeroPad2d):
        left, right, top, bottom = layer.padding
        pads = graph.integers([0, 0, top, left, 0, 0, bottom, right])
        return graph.op("Pad", x, pads, mode="constant")
    if isinstance(layer, nn.PixelUnshuffle):
        return _emit_unshuffle(graph, layer.downscale_factor, shape, x)
    raise TypeError(f"sklip cannot export layer {layer.__class__.__name__} to ONNX.")


def _patch_indices(
    size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
    padding: tuple[int, int], circular: bool,
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:  # fmt: skip
    """Flat pixel index read by each (tap, output position), as an unfold reads them.

    With zero padding the indices point into the padded image; with circular
    padding into the image itself, wrapped. Returns the table, the output
    size and the size of the image the indices point into.
    """
    height, width = size
    out_h = (height + 2 * padding[0] - kernel[0]) // stride[0] + 1
    out_w = (width + 2 * padding[1] - kernel[1]) // stride[1] + 1
    rows = np.arange(out_h)[:, None] * stride[0] + np.arange(kernel[0])[None, :]
    cols = np.arange(out_w)[:, None] * stride[1] + np.arange(kernel[1])[None, :]
    if circular:
        rows, cols = (rows - padding[0]) % height, (cols - padding[1]) % width
        grid = (height, width)
    else:
        grid = (height + 2 * padding[0], width + 2 * padding[1])
    # (tap_h, tap_w, out_h, out_w): taps in the order of the kernel's flattening.
    table = rows.T[:, None, :, None] * grid[1] + cols.T[None, :, None, :]
    return table.reshape(kernel[0] * kernel[1], out_h * out_w), (out_h, out_w), grid


def _gather_patches(
    graph: GraphBuilder, x: str, channels: int, grid: tuple[int, int], table: np.ndarray
) -> str:
    """``(n, channels, taps, positions)``: each patch's pixels, gathered from ``x``."""
    flat = graph.op("Reshape", x, graph.integers([0, channels, grid[0] * grid[1]]))
    return graph.op("Gather", flat, graph.integers(table), axis=2)


def _emit_conv(graph: GraphBuilder, conv: nn.Conv2d, shape: tuple[int, ...], x: str) -> str:
    if isinstance(conv.padding, str) or conv.groups != 1 or conv.dilation != (1, 1):
        raise TypeError("sklip exports nn.Conv2d with integer padding, groups=1, dilation=1.")
    circular = conv.padding_mode == "circular"
    if conv.padding_mode not in ("zeros", "circular"):
        raise TypeError(f"sklip cannot export padding_mode={conv.padding_mode!r} to ONNX.")
    table, (out_h, out_w), grid = _patch_indices(
        shape[2:], conv.kernel_size, conv.stride, conv.padding, circular
    )
    if not circular and any(conv.padding):
        p_h, p_w = conv.padding
        x = graph.op("Pad", x, graph.integers([0, 0, p_h, p_w, 0, 0, p_h, p_w]), mode="constant")
    columns = graph.op(
        "Reshape",
        _gather_patches(graph, x, conv.in_channels, grid, table),
        graph.integers([0, conv.in_channels * table.shape[0], table.shape[1]]),
    )
    kernel = conv.weight.detach().cpu().numpy().reshape(conv.out_channels, -1)
    out = graph.op("MatMul", graph.constant(kernel), columns)
    if conv.bias is not None:
        out = graph.op("Add", out, graph.constant(conv.bias.detach().cpu()[:, None]))
    return graph.op("Reshape", out, graph.integers([0, conv.out_channels, out_h, out_w]))


def _emit_pool(graph: GraphBuilder, pool: L2NormPool2d, shape: tuple[int, ...], x: str) -> str:
    """``scale * sqrt(max(sum of squares, 1e-12))`` per window."""
    table, (out_h, out_w), grid = _patch_indices(
        shape[2:], pool.kernel_size, pool.stride, (0, 0), circular=False
    )
    squares = graph.op("Mul", x, x)
    patches = _gather_patches(graph, squares, shape[1], grid, table)
    sums = graph.op("ReduceSum", patches, graph.integers([2]), keepdims=0)
    floored = graph.op("Max", sums, graph.constant(1e-12))
    norms = graph.op("Mul", graph.op("Sqrt", floored), graph.constant(pool.scale))
    return graph.op("Reshape", norms, graph.integers([0, shape[1], out_h, out_w]))


def _emit_group_sort(graph: GraphBuilder, group_size: int, shape: tuple[int, ...], x: str) -> str:
    """Each group sorted ascending; groups of two as in :class:`~sklip.nn.GroupSort`."""
    if group_size == 2:
        low, high = graph.op("Split", x, n_outputs=2, axis=1, num_outputs=2)
        return graph.op("Concat", graph.op("Min", low, high), graph.op("Max", low, high), axis=1)
    channels, rest = shape[1], list(shape[2:])
    grouped = graph.op("Reshape", x, graph.integers([0, group_size, channels // group_size, *rest]))
    k = graph.integers([group_size])
    ordered = graph.op("TopK", grouped, k, n_outputs=2, axis=1, largest=0)[0]
    return graph.op("Reshape", ordered, graph.integers([0, channels, *rest]))


def _emit_unshuffle(graph: GraphBuilder, factor: int, shape: tuple[int, ...], x: str) -> str:
    """``nn.PixelUnshuffle``: channel ``c r^2 + i r + j`` holds pixel ``(i, j)`` of a window."""
    channels, height, width = shape[1:]
    split = graph.integers([0, channels, height // factor, factor, width // factor, factor])
    moved = graph.op("Transpose", graph.op("Reshape", x, split), perm=[0, 1, 3, 5, 2, 4])
    merged = [0, channels * factor * factor, height // factor, width // factor]
    return graph.op("Reshape", moved, graph.integers(merged))
