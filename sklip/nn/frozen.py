r"""A trained network frozen in float64, with a proven bound on its own rounding.

A certificate is a statement about a computation: "evaluated *this way*, no
input within ``r`` of ``x`` gets another class". :class:`FrozenNetwork` fixes
the two things that statement depends on. Its weights are float64 arrays taken
once from the trained network (every prediction and every Lipschitz bound reads
those same arrays), and its forward pass returns, with each output, a bound on
how far floating-point rounding can have moved that output from the exact value
of the same network.

Rounding model (IEEE float64, unit roundoff :math:`u = 2^{-53}`, smallest
subnormal :math:`\eta = 2^{-1074}`). A dot product of length ``n`` plus a bias,
summed in *any* order, with or without fused multiply-adds, satisfies
:math:`|\widehat{w^\top z + b} - (w^\top z + b)| \le \gamma_{n+1}(|w|^\top|z| +
|b|) + 2n\eta` with :math:`\gamma_k = ku / (1 - ku)` (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2nd ed., Thm 3.1 and §2.2). Summed over a
dense layer's outputs, :math:`\||W||z|\|_2 \le \|W\|_F \|z\|_2`, so the rounding
of the layer is at most :math:`c\,\|z\|_2 + d` with :math:`c = \gamma_{n+1}
\|W\|_F` and :math:`d = \gamma_{n+1}\|b\|_2 + 2n\eta\sqrt m`; a convolution is
the same with ``n = C_in k_h k_w`` and :math:`\|W\|_F` times the square root of
the number of patches a pixel enters. The sorting activations and ReLU only
select and compare, so they are exact; the L2-norm pooling has a relative error
of at most :math:`\gamma_{2a+6}` for windows of ``a`` pixels.

Propagation. With :math:`z_l` the computed and :math:`y_l` the exact output of
layer ``l``, :math:`L_l` its Lipschitz bound and :math:`r_l` its rounding,
:math:`\|z_l - y_l\| \le L_l \|z_{l-1} - y_{l-1}\| + \|r_l\|`, so the output's
error :math:`E(x) = \Delta_k` follows from :math:`\Delta_l = L_l\Delta_{l-1} +
c_l\|z_{l-1}\| + d_l`, evaluated on the computed norms. A certificate also
needs the rounding at every *other* point of the ball, where nothing was
computed. Writing the same recursion with exact norms,
:math:`\Delta_l \le (L_l + c_l)\Delta_{l-1} + c_l\|y_{l-1}\| + d_l`, and using
:math:`\|y_{l-1}(x')\| \le \|z_{l-1}(x)\| + \Delta_{l-1}(x) + P_{l-1} r` for
``x'`` within ``r`` of ``x`` (:math:`P_{l-1}` the bound of the layers before
``l``) gives :math:`E(x') \le E_r(x) + r\,G` with
:math:`E_r(x) = \sum_l (c_l(\|z_{l-1}(x)\| + \Delta_{l-1}(x)) + d_l)\tilde Q_l`,
:math:`G = \sum_l c_l P_{l-1} \tilde Q_l` and :math:`\tilde Q_l = \prod_{m>l}
(L_m + c_m)`. A prediction then cannot change within
:math:`(|z(x)| - E(x) - E_r(x)) / (L + G)` (see
:func:`sklip.robustness.radius_from_outputs`). Every term is a sum of
non-negative numbers, raised by a relative ``1e-9`` to cover the rounding of
evaluating the bound itself.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from numbers import Integral
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .bounds import (
    EXACT_LAYERS,
    SMALLEST_SUBNORMAL,
    UNIT_ROUNDOFF,
    _single_layer_bound,
    gamma,
    leaf_layers,
    pairwise_lipschitz_bound,
)
from .export import export
from .layers import L2NormPool2d

__all__ = ["FrozenNetwork", "FrozenOutputs", "scaled_norm"]

_BOUND_SAFETY = 1.0 + 1e-9  # covers the rounding of evaluating the error bound


def scaled_norm(tensor: Tensor, dim: int | None = None) -> Tensor:
    """The L2 norm without underflow or overflow of the squares.

    ``torch.linalg.vector_norm`` squares its entries, so below about 1e-154 it
    returns 0 (and above 1e154, inf): a zero norm would drop a rounding term
    from the bound (found by the property tests: a certificate beaten at
    1e-171). Norms between 1e-140 and 1e140 lose nothing that matters (each
    underflowed square is below 1e-307, a relative 1e-27 of such a norm), so
    only the others are recomputed as ``m * ||t / m||`` with ``m = max |t|``:
    no full-size temporaries for ordinary data.
    """
    tensor = tensor.detach()
    if dim is None:
        tensor, dim = tensor.reshape(1, -1), 1
    norm = torch.linalg.vector_norm(tensor, dim=dim)
    extreme = ~((norm > 1e-140) & (norm < 1e140))
    if bool(extreme.any()):
        rows = tensor[extreme] if dim == 1 else tensor.movedim(dim, -1)[extreme]
        peak = rows.abs().amax(dim=-1, keepdim=True)
        safe = torch.where(peak > 0, peak, torch.ones_like(peak))
        norm = norm.clone()
        rescaled = torch.linalg.vector_norm(rows / safe, dim=-1) * peak[..., 0]
        norm[extreme] = rescaled
    return norm


@dataclass(frozen=True)
class _LayerRounding:
    """What the error analysis needs of one layer: ``||rounding|| <= relative ||z|| + absolute``."""

    lipschitz: float
    relative: float = 0.0
    absolute: float = 0.0


def propagation(layers: list[_LayerRounding]) -> tuple[list[float], float]:
    r"""``(Q~_l for each layer, G)``: how each layer's rounding reaches the output.

    :math:`\tilde Q_l = \prod_{m > l} (L_m + c_m)` and :math:`G = \sum_l c_l
    P_{l-1} \tilde Q_l` (see the module's docstring), ``G`` raised by the
    safety factor.
    """
    inflated_after = [
        math.prod(after.lipschitz + after.relative for after in layers[index + 1 :])
        for index in range(len(layers))
    ]
    growth, before = 0.0, 1.0
    for layer, after in zip(layers, inflated_after, strict=True):
        growth += layer.relative * before * after
        before *= layer.lipschitz
    return inflated_after, growth * _BOUND_SAFETY


class FrozenOutputs(NamedTuple):
    """Outputs of a frozen network and the bounds of their rounding, per row.

    ``error`` bounds :math:`\\|z(x) - f(x)\\|_2`, the distance between the
    computed and the exact output at ``x``; ``certificate_error`` is ``error``
    plus the bound :math:`E_r(x)` of the rounding anywhere in a ball around
    ``x``, before the term that grows with the radius (``error_growth`` of
    the network).

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import FrozenNetwork, lipschitz_mlp
    >>> frozen = FrozenNetwork(lipschitz_mlp(2, (4,), 1), n_features=2)
    >>> outputs, error, certificate_error = frozen(torch.zeros(1, 2, dtype=torch.float64))
    >>> bool(error <= certificate_error)
    True
    """

    outputs: Tensor
    error: Tensor
    certificate_error: Tensor


class FrozenNetwork:
    """A network's weights frozen in float64, evaluated with its rounding bounded.

    Parameters
    ----------
    module : nn.Module
        The trained network (sklip layers, plain ``nn.Linear`` / ``nn.Conv2d``,
        sorting activations, ReLU, L2-norm pooling, reshapes). It is exported
        in eval mode, cast to float64 and left untouched.
    n_features : int
        Length of one flat input row; image networks start with an
        :class:`~sklip.nn.ImageView`.

    Attributes
    ----------
    module : nn.Sequential
        The float64 plain network (weights baked in, no gradient), on the
        device of ``module``. Its weights are what every bound below reads.
    lipschitz_constant : float
        Upper bound of the Lipschitz constant of the exact map.
    pairwise_lipschitz_constant : Tensor of shape (K, K) or None
        Bounds of :math:`f_i - f_j` for ``K > 1`` outputs (CPU, float64).
    error_growth : float
        ``G``: how much the rounding bound may grow per unit of distance.
    input_shapes : list of tuple
        Shape of a one-row batch entering each layer of ``module``.

    Raises
    ------
    ValueError
        If a weight is not finite or the bound is 0 or not finite: a diverged
        training run, whose certificates would mean nothing.

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import FrozenNetwork, lipschitz_mlp
    >>> frozen = FrozenNetwork(lipschitz_mlp(3, (8,), 1), n_features=3)
    >>> result = frozen(torch.ones(2, 3, dtype=torch.float64))
    >>> result.outputs.dtype, bool((result.error < 1e-13).all())
    (torch.float64, True)
    """

    def __init__(self, module: nn.Module, n_features: int) -> None:
        _check_finite_weights(module)  # before the SVDs of the export, which NaN breaks
        if isinstance(n_features, bool) or not isinstance(n_features, Integral) or n_features < 1:
            raise ValueError(f"n_features must be a positive integer, got {n_features!r}.")
        n_features = int(n_features)
        plain = export(module).double()
        for parameter in plain.parameters():
            parameter.requires_grad_(False)
        _check_finite_weights(plain)
        self.module = plain
        layers = list(leaf_layers(plain))
        shapes = _input_shapes(plain, layers, n_features)
        self.input_shapes = shapes
        self._layers = [_analyse(layer, shape) for layer, shape in zip(layers, shapes, strict=True)]
        bounds = [layer.lipschitz for layer in self._layers]
        self.lipschitz_constant = math.prod(bounds) * (1.0 + 2.0 * len(bounds) * UNIT_ROUNDOFF)
        if not (math.isfinite(self.lipschitz_constant) and self.lipschitz_constant > 0):
            raise ValueError(
                f"The trained network's Lipschitz bound is {self.lipschitz_constant}: training "
                "diverged or collapsed, and it would certify nothing. Try a lower "
                "learning_rate or standardise the features."
            )
        self.pairwise_lipschitz_constant = None
        if self.n_outputs > 1:
            self.pairwise_lipschitz_constant = pairwise_lipschitz_bound(plain, (n_features,))
        self._inflated_after, self.error_growth = propagation(self._layers)

    def negated(self) -> FrozenNetwork:
        """The network of ``-f``: the last layer's weight and bias negated.

        Exact (negation does not round) and with the same bounds, which read
        only norms.
        """
        clone = copy.copy(self)
        clone.module = copy.deepcopy(self.module)
        last = clone.module[-1]
        last.weight.neg_()
        if last.bias is not None:
            last.bias.neg_()
        return clone

    def bound_record(self) -> dict[str, Any]:
        """The bounds every certificate reads, as plain numbers (what ``sklip.save`` stores)."""
        return {
            "lipschitz_constant": self.lipschitz_constant,
            "error_growth": self.error_growth,
            "layers": [[layer.lipschitz, layer.relative, layer.absolute] for layer in self._layers],
        }

    def adopt_bounds(self, record: dict[str, Any], pairwise: Tensor | None) -> None:
        """Use a stored record's bounds, after checking that none is below this network's.

        A loaded model then certifies exactly as the saved one did (bounds
        computed on another device may differ in their last bits), and a file
        whose bounds were lowered is refused.
        """
        own = self.bound_record()
        stored = [record["lipschitz_constant"], record["error_growth"],
                  *(value for layer in record["layers"] for value in layer)]  # fmt: skip
        computed = [own["lipschitz_constant"], own["error_growth"],
                    *(value for layer in own["layers"] for value in layer)]  # fmt: skip
        pairs = list(zip(stored, computed, strict=False))
        if pairwise is not None and self.pairwise_lipschitz_constant is not None:
            if tuple(pairwise.shape) != tuple(self.pairwise_lipschitz_constant.shape):
                raise ValueError("The stored pairwise bounds do not fit the network.")
            pairs += list(zip(pairwise.ravel().tolist(),
                              self.pairwise_lipschitz_constant.ravel().tolist(), strict=True))
        if len(stored) != len(computed) or (pairwise is None) != (self.n_outputs == 1) or any(
            not (math.isfinite(kept) and kept >= value * (1 - 1e-9)) for kept, value in pairs
        ):
            raise ValueError(
                "The file's certificate bounds are below what its weights imply: it was "
                "modified, and would certify radii that do not hold."
            )
        self.lipschitz_constant = float(record["lipschitz_constant"])
        self._layers = [_LayerRounding(*map(float, layer)) for layer in record["layers"]]
        self._inflated_after, _ = propagation(self._layers)
        self.error_growth = float(record["error_growth"])
        if pairwise is not None:
            self.pairwise_lipschitz_constant = pairwise.double().cpu()

    @property
    def n_outputs(self) -> int:
        return self.module[-1].out_features

    def to(self, device: torch.device | str) -> FrozenNetwork:
        """Move the weights to ``device`` (in place); return self."""
        self.module.to(device)
        return self

    def outputs(self, x: Tensor) -> Tensor:
        """The outputs alone, for predictions: the layers and arithmetic of ``__call__``.

        The rounding bounds cost a norm per layer and row: only certificates
        need them.
        """
        _check_float64(x)
        with torch.no_grad():
            for layer in self.module:
                x = _apply(layer, x)
        return x

    def __call__(self, x: Tensor) -> FrozenOutputs:
        """Evaluate float64 rows ``x`` (on the network's device); bound the rounding.

        Runs without autograd: the activations then take their exact form
        (comparisons only), which the error analysis assumes.
        """
        _check_float64(x)
        n = x.shape[0]
        error = torch.zeros(n, dtype=torch.float64, device=x.device)
        exact_norms = []  # bound of the exact input norm of each layer
        with torch.no_grad():
            z = x
            for layer, rounding in zip(self.module, self._layers, strict=True):
                norm = scaled_norm(z.reshape(n, -1), dim=1)
                exact_norms.append(norm + error)
                error = rounding.lipschitz * error + rounding.relative * norm + rounding.absolute
                z = _apply(layer, z)
            certificate = torch.zeros_like(error)
            for norm, rounding, after in zip(
                exact_norms, self._layers, self._inflated_after, strict=True
            ):
                certificate += (rounding.relative * norm + rounding.absolute) * after
        error = error * _BOUND_SAFETY
        return FrozenOutputs(z, error, error + certificate * _BOUND_SAFETY)


def _check_float64(x: Tensor) -> None:
    if x.dtype != torch.float64:
        raise TypeError(f"FrozenNetwork evaluates float64 inputs, got {x.dtype}.")


def _apply(layer: nn.Module, z: Tensor) -> Tensor:
    """One layer of the frozen network, as the error analysis models it.

    Off the CPU a convolution is computed as explicit dot products (unfold
    then a matrix product): GPU libraries may pick FFT or Winograd algorithms,
    whose rounding the dot-product analysis does not cover. On the CPU,
    float64 convolutions are already an unfold and a matrix product.
    """
    if isinstance(layer, nn.Conv2d) and z.device.type != "cpu":
        return conv2d_as_dot_products(z, layer)
    return layer(z)


def conv2d_as_dot_products(z: Tensor, conv: nn.Conv2d) -> Tensor:
    """``conv(z)`` as an unfold and one matrix product (plain dot products)."""
    n, _, height, width = z.shape
    padding = conv.padding
    if conv.padding_mode == "circular":
        z = F.pad(z, (padding[1], padding[1], padding[0], padding[0]), mode="circular")
        padding = (0, 0)
    columns = F.unfold(z, conv.kernel_size, padding=padding, stride=conv.stride)
    out = conv.weight.reshape(conv.out_channels, -1) @ columns
    if conv.bias is not None:
        out = out + conv.bias[:, None]
    out_h = (height + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
    out_w = (width + 2 * conv.padding[1] - conv.kernel_size[1]) // conv.stride[1] + 1
    return out.reshape(n, conv.out_channels, out_h, out_w)


def _check_finite_weights(module: nn.Module) -> None:
    for name, parameter in module.named_parameters():
        if not torch.isfinite(parameter).all():
            raise ValueError(
                f"The trained network's weight {name!r} is not finite: training diverged. "
                "Try a lower learning_rate or standardise the features."
            )


def _input_shapes(
    module: nn.Sequential, layers: list[nn.Module], n_features: int
) -> list[tuple[int, ...]]:
    """Shape of one sample entering each layer, from a dry pass on a zero row."""
    shapes: list[tuple[int, ...]] = []
    parameter = next(module.parameters())
    with torch.no_grad():
        z = torch.zeros(1, n_features, dtype=torch.float64, device=parameter.device)
        try:
            for layer in layers:
                shapes.append(tuple(z.shape))
                z = layer(z)
        except (RuntimeError, ValueError) as error:
            raise ValueError(
                f"n_features={n_features} does not fit the network's first layer: {error}"
            ) from None
    return shapes


def _analyse(
    layer: nn.Module,
    shape: tuple[int, ...],
    unit: float = UNIT_ROUNDOFF,
    tiny: float = SMALLEST_SUBNORMAL,
) -> _LayerRounding:
    """Lipschitz bound and rounding coefficients of one plain layer.

    ``unit`` is the unit roundoff of the arithmetic and ``tiny`` the largest
    absolute error of one operation below its normal range (float64 by
    default; :mod:`sklip.nn.float32_rounding` passes float32's).
    """
    if isinstance(layer, nn.Linear):
        n = layer.in_features
        rounding = gamma(n + 1, unit)
        bias = 0.0 if layer.bias is None else float(scaled_norm(layer.bias))
        return _LayerRounding(
            _single_layer_bound(layer, None),
            rounding * float(scaled_norm(layer.weight)),
            rounding * bias + 2 * n * tiny * math.sqrt(layer.out_features),
        )
    if isinstance(layer, nn.Conv2d):
        return _analyse_conv(layer, shape, unit, tiny)
    if isinstance(layer, L2NormPool2d):
        return _analyse_pool(layer, shape, unit, tiny)
    if isinstance(layer, EXACT_LAYERS):
        return _LayerRounding(1.0)
    raise TypeError(
        f"No rounding analysis is known for layer {layer.__class__.__name__}; a frozen "
        "network holds dense and convolution layers, sorting activations, ReLU, "
        "L2-norm pooling and reshapes."
    )


def _analyse_conv(
    conv: nn.Conv2d, shape: tuple[int, ...], unit: float, tiny: float
) -> _LayerRounding:
    k_h, k_w = conv.kernel_size
    s_h, s_w = conv.stride
    n = conv.in_channels * k_h * k_w
    rounding = gamma(n + 1, unit)
    out_h = (shape[2] + 2 * conv.padding[0] - k_h) // s_h + 1
    out_w = (shape[3] + 2 * conv.padding[1] - k_w) // s_w + 1
    positions = out_h * out_w
    relative = rounding * float(scaled_norm(conv.weight)) * math.sqrt(taps_per_pixel(conv, shape))
    bias = 0.0 if conv.bias is None else float(scaled_norm(conv.bias))
    absolute = rounding * bias * math.sqrt(positions)
    absolute += 2 * n * tiny * math.sqrt(conv.out_channels * positions)
    return _LayerRounding(_single_layer_bound(conv, tuple(shape[2:])), relative, absolute)


def taps_per_pixel(conv: nn.Conv2d, shape: tuple[int, ...]) -> int:
    """Most (output, tap) pairs of ``conv`` that read one pixel of an input of ``shape``.

    ``|| |K| * |z| || <= ||K||_F sqrt(taps per pixel) ||z||``: at most
    ``ceil(k/s)`` per axis with zero padding, more when circular padding
    wraps a tap onto a pixel twice.
    """
    circular = conv.padding_mode == "circular"
    taps = 1
    for axis in (0, 1):
        size, kernel = shape[2 + axis], conv.kernel_size[axis]
        stride, padding = conv.stride[axis], conv.padding[axis]
        outputs = (size + 2 * padding - kernel) // stride + 1
        taps *= _taps_per_pixel(size, kernel, stride, padding, outputs, circular)
    return taps


def _taps_per_pixel(size: int, kernel: int, stride: int, padding: int, outputs: int,
                    circular: bool) -> int:  # fmt: skip
    """Most (output, tap) pairs that read one pixel along an axis, counted exactly."""
    counts = [0] * size
    for output in range(outputs):
        for tap in range(kernel):
            pixel = output * stride + tap - padding
            if circular:
                counts[pixel % size] += 1
            elif 0 <= pixel < size:
                counts[pixel] += 1
    return max(counts)


def _analyse_pool(
    pool: L2NormPool2d, shape: tuple[int, ...], unit: float, tiny: float
) -> _LayerRounding:
    """``scale * sqrt(max(sum of squares, 1e-12))`` per window, in float64.

    The sum of ``a`` squares, the average pooling's division and product by
    ``a``, the square root and the scale round to a relative
    :math:`\\gamma_{2a+6}` of each output; underflow in the squares adds at
    most ``a * eta`` under a square root whose slope is at most ``5e5`` above
    the ``1e-12`` floor. Outputs are at most ``||z|| + scale * 1e-6`` in norm.
    """
    area = pool.kernel_size[0] * pool.kernel_size[1]
    out_h = (shape[2] - pool.kernel_size[0]) // pool.stride[0] + 1
    out_w = (shape[3] - pool.kernel_size[1]) // pool.stride[1] + 1
    outputs = shape[1] * out_h * out_w
    rounding = gamma(2 * area + 6, unit)
    floor = pool.scale * 1e-6 * math.sqrt(outputs)
    underflow = area * tiny * 5e5 * pool.scale * math.sqrt(outputs)
    return _LayerRounding(1.0, rounding, rounding * floor + underflow)


def copy_to_cpu(frozen: FrozenNetwork) -> FrozenNetwork:
    """A copy of ``frozen`` whose weights are on the CPU (for pickling)."""
    clone = copy.copy(frozen)
    clone.module = copy.deepcopy(frozen.module).cpu()
    return clone
