"""Builders of 1-Lipschitz networks: a dense MLP and a small CNN."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

import torch
from torch import nn

from .activations import FullSort, GroupSort
from .constraints import RowNormalize
from .convolutions import AOLConv2d, CayleyConv2d
from .layers import ImageView, L2NormPool2d, LipschitzConv2d, LipschitzLinear, check_image_shape

__all__ = ["ACTIVATIONS", "lipschitz_cnn", "lipschitz_mlp", "make_activation"]

ACTIVATIONS = ("groupsort", "groupsort4", "groupsort8", "fullsort", "relu")
_GROUP_SIZES = {"groupsort": 2, "groupsort4": 4, "groupsort8": 8}


def make_activation(name: str, width: int | None = None) -> nn.Module:
    """The activation called ``name``, for a layer of ``width`` features.

    "groupsort" sorts pairs (MaxMin); "groupsort4" and "groupsort8" sort
    groups of 4 and 8 features, or, in a layer whose width the group size
    does not divide, groups of the largest of 4 and 2 that does (an odd width
    is refused by the builders); "fullsort" sorts the whole layer; "relu".
    Larger groups represent distance-like functions (cones, whose gradient
    has norm 1 everywhere) that pairs only approach from below.

    Examples
    --------
    >>> from sklip.nn import make_activation
    >>> make_activation("groupsort")
    GroupSort(group_size=2)
    >>> make_activation("groupsort8", width=128), make_activation("groupsort8", width=12)
    (GroupSort(group_size=8), GroupSort(group_size=4))
    >>> make_activation("fullsort")
    FullSort()
    """
    if name in _GROUP_SIZES:
        size = _GROUP_SIZES[name]
        if width is not None:
            size = math.gcd(size, int(width))
        return GroupSort(max(size, 2))
    if name == "fullsort":
        return FullSort()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}.")


def lipschitz_mlp(
    n_inputs: int,
    hidden_layer_sizes: Sequence[int],
    n_outputs: int,
    activation: str = "groupsort",
    *,
    power_iterations: int = 1,
    bjorck_iterations: int = 1,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """A 1-Lipschitz multilayer perceptron.

    Hidden layers are :class:`LipschitzLinear` (spectral + Björck) followed by
    the activation; the output layer has unit-norm rows, so each output is
    1-Lipschitz in the input.

    Parameters
    ----------
    n_inputs : int
    hidden_layer_sizes : sequence of int
        Widths of the hidden layers (may be empty: a linear model).
    n_outputs : int
    activation : {"groupsort", "groupsort4", "groupsort8", "fullsort", "relu"}, default="groupsort"
        See :func:`make_activation`; the GroupSort ones need even widths.
    power_iterations : int, default=1
        Passed to every hidden layer.
    bjorck_iterations : int, default=1
        Passed to every hidden layer. One step, not the eight of
        :class:`LipschitzLinear`: measured on digits (2 and 10 classes), make_moons
        and Wasserstein-1 in 16-D, with 2 and 4 hidden layers, one step gave the
        same accuracy, certified accuracy and W1 estimate as 2, 4 and 8 steps,
        at less than half the time per training step (benchmarks/RESULTS.md).
        Trained layers are then not exactly orthonormal (singular values
        spread below 1), which no certificate relies on; pass 8 for
        near-orthonormal, gradient-norm-preserving layers.
    generator : torch.Generator, optional
        Draws every initial weight, so that building a network neither reads
        nor advances torch's global RNG (default: the global RNG).

    Returns
    -------
    nn.Sequential

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import lipschitz_mlp
    >>> net = lipschitz_mlp(2, (16, 16), 1)
    >>> net(torch.zeros(3, 2)).shape
    torch.Size([3, 1])
    """
    widths = _check_widths(hidden_layer_sizes, "hidden_layer_sizes", activation)
    _check_positive(n_inputs, "n_inputs")
    _check_positive(n_outputs, "n_outputs")
    layers: list[nn.Module] = []
    previous = n_inputs
    for width in widths:
        layers += [
            LipschitzLinear(
                previous,
                width,
                power_iterations=power_iterations,
                bjorck_iterations=bjorck_iterations,
                generator=generator,
            ),
            make_activation(activation, width),
        ]
        previous = width
    layers.append(
        LipschitzLinear(previous, n_outputs, constraint=RowNormalize(), generator=generator)
    )
    return nn.Sequential(*layers)


def lipschitz_cnn(
    image_shape: Sequence[int],
    conv_channels: Sequence[int],
    hidden_layer_sizes: Sequence[int],
    n_outputs: int,
    activation: str = "groupsort",
    *,
    kernel_size: int = 3,
    pooling: bool = True,
    conv: str = "aol",
    downsampling: str = "unshuffle",
    gram_iterations: int = 6,
    power_iterations: int = 1,
    bjorck_iterations: int = 1,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """A 1-Lipschitz convolutional network.

    Each block is a convolution (``conv``), the activation and, with
    ``pooling``, a 2x2 down-sampling (``downsampling``) while the image is at
    least 2x2. Then a flatten, the dense head and the output layer, as in
    :func:`lipschitz_mlp`. The first layer, :class:`ImageView`, accepts flat
    rows ``(n, C*H*W)`` as well as images ``(n, C, H, W)``.

    Parameters
    ----------
    image_shape : (C, H, W)
    conv_channels : sequence of int
    hidden_layer_sizes : sequence of int
        Widths of the dense head.
    n_outputs : int
    activation : {"groupsort", "groupsort4", "groupsort8", "fullsort", "relu"}, default="groupsort"
    kernel_size : int, default=3
    pooling : bool, default=True
    conv : {"aol", "cayley", "bound"}, default="aol"
        The convolution layer: :class:`AOLConv2d` (almost-orthogonal
        rescaling; "same" zero padding), :class:`CayleyConv2d` (orthogonal,
        circular; its kernel is cut to the image where the image is smaller) or
        :class:`LipschitzConv2d` (kernel divided by a bound of its
        norm, "same" zero padding; the layer of sklip before 0.x, which is not
        gradient-norm preserving). Measured in ``benchmarks/images.py``.
    downsampling : {"unshuffle", "pool"}, default="unshuffle"
        ``nn.PixelUnshuffle(2)`` (moves each 2x2 window into 4 channels: an
        isometry, invertible; odd sizes lose their last row or column) or
        :class:`L2NormPool2d` (keeps only each 2x2 window's norm, which shrinks
        differences between images and so the certified radii).
    gram_iterations, power_iterations, bjorck_iterations : int
        Passed to the convolutions (``gram_iterations``) and the dense head
        (the others, as in :func:`lipschitz_mlp`).
    generator : torch.Generator, optional
        Draws every initial weight (default: torch's global RNG).

    Returns
    -------
    nn.Sequential

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import lipschitz_cnn
    >>> net = lipschitz_cnn((1, 8, 8), (8, 16), (32,), 10)
    >>> net(torch.zeros(2, 64)).shape
    torch.Size([2, 10])
    """
    channels, height, width = check_image_shape(image_shape)
    conv_widths = _check_widths(conv_channels, "conv_channels", activation)
    layers: list[nn.Module] = [ImageView((channels, height, width))]
    size = (height, width)
    if conv not in CONVOLUTIONS:
        raise ValueError(f"conv must be one of {sorted(CONVOLUTIONS)}, got {conv!r}.")
    if downsampling not in ("pool", "unshuffle"):
        raise ValueError(f"downsampling must be 'pool' or 'unshuffle', got {downsampling!r}.")
    for out_channels in conv_widths:
        options = {"gram_iterations": gram_iterations} if conv == "bound" else {}
        # A circular kernel wider than the image would wrap onto itself.
        kernel = min(kernel_size, *size) if conv == "cayley" else kernel_size
        layer = CONVOLUTIONS[conv](
            channels, out_channels, kernel, input_size=size, generator=generator, **options
        )
        layers += [layer, make_activation(activation, out_channels)]
        channels = out_channels
        if pooling and min(size) >= 2:
            if downsampling == "pool":
                layers.append(L2NormPool2d(2))
            else:
                if size[0] % 2 or size[1] % 2:  # crop the last odd row/column
                    layers.append(nn.ZeroPad2d((0, -(size[1] % 2), 0, -(size[0] % 2))))
                layers.append(nn.PixelUnshuffle(2))
                channels *= 4
            size = (size[0] // 2, size[1] // 2)
    layers.append(nn.Flatten())
    head = lipschitz_mlp(
        channels * size[0] * size[1],
        hidden_layer_sizes,
        n_outputs,
        activation,
        power_iterations=power_iterations,
        bjorck_iterations=bjorck_iterations,
        generator=generator,
    )
    return nn.Sequential(*layers, *head)


CONVOLUTIONS = {"bound": LipschitzConv2d, "aol": AOLConv2d, "cayley": CayleyConv2d}


def _check_positive(value: int, name: str) -> None:
    # numbers.Integral: NumPy integers (np.int64(64)) are integers too; bools are not.
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _check_widths(widths: Sequence[int], name: str, activation: str) -> tuple[int, ...]:
    make_activation(activation)  # validates the name
    try:
        values = tuple(widths)
    except TypeError:
        raise ValueError(
            f"{name} must be a sequence of positive integers, got {widths!r}."
        ) from None
    for width in values:
        _check_positive(width, f"every entry of {name}")
    values = tuple(int(width) for width in values)
    for width in values:
        if activation in _GROUP_SIZES and width % 2:
            raise ValueError(
                f"{name} has the odd width {width}: activation={activation!r} sorts groups "
                "of an even number of features, so every width must be even."
            )
    return values
