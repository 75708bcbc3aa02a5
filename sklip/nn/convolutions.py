"""Gradient-norm-preserving and almost-orthogonal convolutions.

Dividing a kernel by a bound of its operator norm (:class:`LipschitzConv2d`'s
default) keeps a convolution 1-Lipschitz but lets its other singular values
shrink: after a few layers the network's gain on typical inputs is far below
its Lipschitz bound, its scores stay small, and so do its certified radii. The
two layers here keep the singular values near 1 instead:

* :class:`AOLConv2d`: almost-orthogonal rescaling (Prach & Lampert, ECCV
  2022). Each input channel of the kernel is divided by the square root of the
  absolute row sum of :math:`P^\\top P`, which a Schur test shows makes the
  convolution 1-Lipschitz; a kernel that is orthogonal to begin with is left
  unchanged. Zero padding, any stride; costs one small convolution per step.
* :class:`CayleyConv2d`: an exactly orthogonal *circular* convolution
  (Trockman & Kolter, ICLR 2021). In the Fourier domain a circular convolution
  is a ``C x C`` matrix per frequency; the Cayley transform of its skew-Hermitian
  part is unitary, so the convolution is orthogonal on the image size it is
  built for. Its spatial kernel spans the whole image.

Neither layer's certificate trusts this reasoning: :mod:`sklip.nn.bounds`
computes the operator norm of the kernel actually applied, on the actual
image size, and the certificate uses that.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .layers import LipschitzConv2d, _check_positive_int, _ConstrainedWeight, _pair

__all__ = ["AOLConv2d", "AOLRescale", "CayleyConv2d", "CayleyOrthogonal"]


class AOLRescale(nn.Module):
    r"""Almost-orthogonal rescaling of a convolution kernel (Prach & Lampert, 2022).

    For the convolution :math:`P` with kernel :math:`K`, the entries of
    :math:`P^\top P` between input channels :math:`c, c'` at offset
    :math:`\delta` are the kernel's autocorrelation
    :math:`M_{cc'}(\delta) = \sum_{o,p} K_{oc}(p) K_{oc'}(p + \delta)`. With
    :math:`d_c = (\sum_{c', \delta} |M_{cc'}(\delta)|)^{-1/2}`, the rescaled
    kernel :math:`K_{oc} d_c` has operator norm at most 1 on the whole plane
    (Schur test on :math:`D P^\top P D`), hence on any zero-padded image and
    with any stride (restrictions of that operator).

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import AOLRescale, conv2d_operator_norm_bound
    >>> _ = torch.manual_seed(0)
    >>> kernel = AOLRescale()(torch.randn(4, 2, 3, 3))
    >>> conv2d_operator_norm_bound(kernel, (8, 8), padding=(1, 1)) <= 1 + 1e-5
    True
    """

    def forward(self, kernel: Tensor) -> Tensor:
        k_h, k_w = kernel.shape[-2:]
        per_input = kernel.transpose(0, 1)  # (C_in, C_out, k_h, k_w)
        autocorrelation = F.conv2d(per_input, per_input, padding=(k_h - 1, k_w - 1))
        row_sums = autocorrelation.abs().sum(dim=(1, 2, 3))
        return kernel * row_sums.clamp_min(1e-12).rsqrt()[None, :, None, None]


class AOLConv2d(LipschitzConv2d):
    r"""2-D convolution ("same" zero padding) with AOL rescaling, operator norm <= 1.

    A :class:`LipschitzConv2d` whose constraint is :class:`AOLRescale` instead
    of division by a norm bound: trained kernels stay close to orthogonal, so
    the layer nearly preserves gradient norms, at the cost of one small
    convolution per training step. ``input_size`` is used by the certificate's
    bound (the exact norm of the applied kernel on that image size).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int), default=3
        Odd sizes only.
    input_size : (int, int)
        Height and width of the images this layer receives.
    stride : int, default=1
    bias : bool, default=True
    generator : torch.Generator, optional
        Draws the initial kernel (default: torch's global RNG).

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import AOLConv2d
    >>> conv = AOLConv2d(1, 4, 3, input_size=(8, 8))
    >>> conv(torch.randn(2, 1, 8, 8)).shape
    torch.Size([2, 4, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        *,
        input_size: tuple[int, int],
        stride: int = 1,
        bias: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            input_size=input_size,
            stride=stride,
            bias=bias,
            constraint=AOLRescale(),
            generator=generator,
        )
        # An orthogonal 1x1 map at the centre tap, zeros elsewhere: for
        # out_channels >= in_channels the rescaling leaves it unchanged and the
        # layer starts orthogonal (LipschitzConv2d's reshaped-orthogonal start
        # is not an orthogonal convolution, and AOL would shrink it).
        centre = torch.empty(self.out_channels, self.in_channels)
        nn.init.orthogonal_(centre, generator=generator)
        with torch.no_grad():
            self.weight.zero_()
            self.weight[:, :, self.kernel_size[0] // 2, self.kernel_size[1] // 2] = centre


class CayleyOrthogonal(nn.Module):
    r"""Map a raw kernel to the spectrum of an orthogonal circular convolution.

    On an :math:`N_h \times N_w` torus, the raw kernel's 2-D DFT gives a
    :math:`C \times C` complex matrix :math:`V(\omega)` per frequency
    (:math:`C = \max(C_{in}, C_{out})`, the kernel zero-padded to a square).
    With :math:`A = V - V^H` (skew-Hermitian), :math:`Q = (I + A)^{-1}(I - A)`
    is unitary; :math:`Q(-\omega) = \overline{Q(\omega)}`, so the convolution it
    defines is real. Its top-left :math:`C_{out} \times C_{in}` block is an
    isometry when :math:`C_{out} \ge C_{in}`, of norm at most 1 otherwise.

    ``forward(kernel)`` returns that block at the ``rfft2`` frequencies,
    shaped ``(N_h, N_w // 2 + 1, C_out, C_in)``.

    Parameters
    ----------
    input_size : (int, int)
        The torus: the image size the convolution is orthogonal on.

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import CayleyOrthogonal
    >>> blocks = CayleyOrthogonal((4, 4))(torch.randn(3, 3, 3, 3))
    >>> blocks.shape  # one 3 x 3 block per rfft2 frequency of a 4 x 4 image
    torch.Size([4, 3, 3, 3])
    >>> identity = torch.eye(3, dtype=blocks.dtype)
    >>> torch.allclose(blocks @ blocks.mH, identity.expand_as(blocks), atol=1e-5)
    True
    """

    def __init__(self, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.input_size = tuple(int(s) for s in input_size)

    def forward(self, kernel: Tensor) -> Tensor:
        out_channels, in_channels = kernel.shape[:2]
        size = max(out_channels, in_channels)
        square = F.pad(kernel, (0, 0, 0, 0, 0, size - in_channels, 0, size - out_channels))
        spectrum = torch.fft.rfft2(square, s=self.input_size).permute(2, 3, 0, 1)
        skew = spectrum - spectrum.mH
        identity = torch.eye(size, dtype=skew.dtype, device=skew.device)
        unitary = torch.linalg.solve(identity + skew, identity - skew)
        return unitary[..., :out_channels, :in_channels]

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}"


class CayleyConv2d(_ConstrainedWeight):
    r"""Orthogonal circular convolution (Cayley transform in the Fourier domain).

    The layer computes a circular convolution (periodic boundary) on images of
    exactly ``input_size``, orthogonal when ``out_channels == in_channels``
    (an isometry with more outputs, norm at most 1 with fewer): it preserves
    norms and gradient norms. Training runs it through the FFT; in eval mode
    it is the plain cross-correlation ``normalized_weight()``, a kernel as
    large as the image (odd-sized, one zero row and column for even sizes)
    applied with circular padding, which is what :func:`sklip.nn.export`
    produces as an ``nn.Conv2d(padding_mode="circular")``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int), default=3
        Size of the raw (trained) kernel; the applied one spans the image.
    input_size : (int, int)
        Height and width of the images this layer receives (the torus).
    bias : bool, default=True
    generator : torch.Generator, optional
        Draws the initial kernel (default: torch's global RNG).

    Examples
    --------
    >>> import torch
    >>> from sklip.nn import CayleyConv2d
    >>> conv = CayleyConv2d(3, 3, input_size=(6, 6), bias=False).eval()
    >>> x = torch.randn(2, 3, 6, 6)
    >>> torch.allclose(conv(x).norm(), x.norm(), rtol=1e-4)
    True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        *,
        input_size: tuple[int, int],
        bias: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int(in_channels, "in_channels")
        _check_positive_int(out_channels, "out_channels")
        kernel = _pair(kernel_size, "kernel_size")
        size = _pair(input_size, "input_size")
        if any(k > n for k, n in zip(kernel, size, strict=True)):
            raise ValueError(f"kernel_size {kernel} is larger than input_size {size}.")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.raw_kernel_size = kernel
        self.input_size = size
        raw = torch.empty(out_channels, in_channels, *kernel)
        # Small raw kernels: the Cayley transform of a small skew part is near
        # the identity, a well-conditioned start.
        nn.init.orthogonal_(raw.view(out_channels, -1), generator=generator)
        self.weight = nn.Parameter(raw / (2 * kernel[0] * kernel[1]) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.constraint = _CayleySpatial(size)
        # The applied kernel (odd, covering the torus) and its circular padding.
        self.kernel_size, self.padding = self.constraint.kernel_size, self.constraint.padding

    @property
    def output_size(self) -> tuple[int, int]:
        """Spatial size of the output: the input's (a circular convolution)."""
        return self.input_size

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[-2:]) != self.input_size or x.shape[1] != self.in_channels:
            raise ValueError(
                f"CayleyConv2d expects images of shape (n, {self.in_channels}, "
                f"{self.input_size[0]}, {self.input_size[1]}), got {tuple(x.shape)}."
            )
        if not self.training:
            weight = self.normalized_weight()
            padded = F.pad(x, (self.padding[1],) * 2 + (self.padding[0],) * 2, mode="circular")
            return F.conv2d(padded, weight, self.bias)
        unitary = self.constraint.spectrum(self.weight)  # (N_h, N_w/2+1, C_out, C_in)
        spectrum = torch.fft.rfft2(x)  # (n, C_in, N_h, N_w/2+1)
        mixed = torch.einsum("hwoi,nihw->nohw", unitary, spectrum)
        out = torch.fft.irfft2(mixed, s=self.input_size)
        return out if self.bias is None else out + self.bias[:, None, None]

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.raw_kernel_size}, "
            f"input_size={self.input_size}, bias={self.bias is not None}"
        )


class _CayleySpatial(nn.Module):
    """Raw kernel -> the cross-correlation kernel applied with circular padding.

    On an ``N``-pixel axis the applied kernel is odd, ``2 (N // 2) + 1`` taps
    centred by a circular padding of ``N // 2`` (one zero tap for even ``N``).
    """

    def __init__(self, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.spectrum = CayleyOrthogonal(input_size)
        self.input_size = self.spectrum.input_size
        self.padding = tuple(n // 2 for n in self.input_size)
        self.kernel_size = tuple(2 * p + 1 for p in self.padding)

    def forward(self, kernel: Tensor) -> Tensor:
        unitary = self.spectrum(kernel).permute(2, 3, 0, 1)  # (C_out, C_in, N_h, N_w/2+1)
        filters = torch.fft.irfft2(unitary, s=self.input_size)  # y = sum_m q[m] x[i - m]
        # Cross-correlation with circular padding p reads x[i + a - p]: a = p - m.
        rows = [(self.padding[0] - a) % self.input_size[0] for a in range(self.input_size[0])]
        cols = [(self.padding[1] - a) % self.input_size[1] for a in range(self.input_size[1])]
        weight = filters[:, :, rows][:, :, :, cols]
        extra_h = self.kernel_size[0] - self.input_size[0]
        extra_w = self.kernel_size[1] - self.input_size[1]
        return F.pad(weight, (0, extra_w, 0, extra_h))
