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
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .bounds import UNIT_ROUNDOFF, leaf_layers, pairwise_lipschitz_bound, rounding_slack
from .export import export
from .layer_rounding import BOUND_SAFETY, LayerRounding, analyse_layer, propagation
from .norms import scaled_norm

__all__ = ["FrozenNetwork", "FrozenOutputs", "scaled_norm"]


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
    output_lipschitz_constants : ndarray of shape (K,)
        Bound of each output :math:`f_k` alone (float64), at most
        ``lipschitz_constant``, which bounds the output *vector*.
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
        self._layers = [
            analyse_layer(layer, shape) for layer, shape in zip(layers, shapes, strict=True)
        ]
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

    @property
    def layer_rounding(self) -> list[LayerRounding]:
        """Each layer's Lipschitz bound and rounding coefficients (float64 evaluation)."""
        return list(self._layers)

    def bound_record(self) -> dict[str, Any]:
        """The bounds every certificate reads, as plain numbers (what ``sklip.save`` stores)."""
        return {
            "lipschitz_constant": self.lipschitz_constant,
            "error_growth": self.error_growth,
            "layers": [[layer.lipschitz, layer.relative, layer.absolute] for layer in self._layers],
        }

    def adopt_bounds(self, record: dict[str, Any], pairwise: Tensor | None) -> None:
        """Use a stored record's bounds, after checking that none is below this network's.

        A loaded model then certifies as the saved one did (bounds computed on
        another device may differ in their last bits), and a file whose bounds
        were lowered is refused. Within the tolerance for those last bits,
        the larger of the stored and recomputed values is kept: a stored bound
        lowered by less than the tolerance must not certify either.
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
            pairs += list(
                zip(
                    pairwise.ravel().tolist(),
                    self.pairwise_lipschitz_constant.ravel().tolist(),
                    strict=True,
                )
            )
        if (
            len(stored) != len(computed)
            or (pairwise is None) != (self.n_outputs == 1)
            or any(
                not (math.isfinite(kept) and kept >= value * (1 - 1e-9)) for kept, value in pairs
            )
        ):
            raise ValueError(
                "The file's certificate bounds are below what its weights imply: it was "
                "modified, and would certify radii that do not hold."
            )
        self.lipschitz_constant = max(float(record["lipschitz_constant"]), self.lipschitz_constant)
        self._layers = [
            LayerRounding(*map(max, map(float, stored), mine))
            for stored, mine in zip(record["layers"], own["layers"], strict=True)
        ]
        self._inflated_after, _ = propagation(self._layers)
        self.error_growth = max(float(record["error_growth"]), self.error_growth)
        if pairwise is not None:
            self.pairwise_lipschitz_constant = torch.maximum(
                pairwise.double().cpu(), self.pairwise_lipschitz_constant
            )

    @property
    def output_lipschitz_constants(self) -> np.ndarray:
        r"""Each output's own bound: its last-layer row's norm times the layers before.

        :math:`f_k = w_k^\top g + b_k` with ``g`` the layers before the last,
        so :math:`\|w_k\| L'` bounds it, where ``L'`` is the product of those
        layers' bounds (the ones the certificates use, stored ones after
        :meth:`adopt_bounds`). A row's norm is at most the last layer's norm,
        so no entry exceeds ``lipschitz_constant``; with unit rows, ``K``
        outputs can together move up to :math:`\sqrt K` times further than
        each one does.
        """
        weight = self.module[-1].weight.detach().double().cpu()
        norms = torch.linalg.vector_norm(weight, dim=1)  # on the CPU: one row each
        rows = np.array([float(norm) for norm in norms]) * rounding_slack(*weight.shape)
        before = math.prod(layer.lipschitz for layer in self._layers[:-1])
        bounds = rows * before * (1.0 + 2.0 * len(self._layers) * UNIT_ROUNDOFF)
        return np.minimum(bounds, self.lipschitz_constant)

    @property
    def row_bytes(self) -> int:
        """Bytes of the largest buffer one row needs in a forward pass.

        A convolution on the CPU unfolds its input: ``C k_h k_w`` values per
        output position (a circular Cayley kernel spans the whole image, so
        that is the image size squared per channel); other layers hold their
        input and output. Callers size their chunks of rows by it.
        """
        largest = 0
        for layer, shape in zip(self.module, self.input_shapes, strict=True):
            values = math.prod(shape[1:])
            if isinstance(layer, nn.Conv2d):
                k_h, k_w = layer.kernel_size
                pad_h, pad_w = layer.padding if isinstance(layer.padding, tuple) else (0, 0)
                out_h = (shape[2] + 2 * pad_h - k_h) // layer.stride[0] + 1
                out_w = (shape[3] + 2 * pad_w - k_w) // layer.stride[1] + 1
                values = max(values, layer.in_channels * k_h * k_w * out_h * out_w)
            largest = max(largest, values)
        return 8 * largest

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
        error = error * BOUND_SAFETY
        return FrozenOutputs(z, error, error + certificate * BOUND_SAFETY)


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


def copy_to_cpu(frozen: FrozenNetwork) -> FrozenNetwork:
    """A copy of ``frozen`` whose weights are on the CPU (for pickling)."""
    clone = copy.copy(frozen)
    clone.module = copy.deepcopy(frozen.module).cpu()
    return clone
