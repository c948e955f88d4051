"""Convolution layers: ``Conv1d``, ``Conv2d``, ``ConvTranspose1d``, ``ConvTranspose2d`` (PyTorch's
names, arguments and default initialisation), ``MaskedConv2d`` (PixelCNN) and ``CausalConv1d``
(WaveNet).  The maths lives in :mod:`nanogen.functional.conv`.

Default init (PyTorch's): ``kaiming_uniform_(weight, a=√5)``, i.e. U(-1/√fan_in, 1/√fan_in) with
fan_in = weight.shape[1] · kernel area, and the bias U(-1/√fan_in, 1/√fan_in).
"""
from __future__ import annotations

import math
import numbers

from .. import functional as F
from ..creation import empty
from . import init
from .linear import _uniform_bias_
from .module import Module
from .parameter import Parameter

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "MaskedConv2d",
           "CausalConv1d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _ntuple(value, n, name):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (int(value),) * n
    value = tuple(value)
    if len(value) != n:
        raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    return tuple(int(v) for v in value)


def _init_params(module, weight_shape, out_channels, bias, device, dtype):
    """weight (and bias, one per output channel, or None) as Parameters, then the default init."""
    module.weight = Parameter(empty(*weight_shape, device=device, dtype=dtype))
    if bias:
        module.bias = Parameter(empty(out_channels, device=device, dtype=dtype))
    else:
        module.register_parameter("bias", None)
    module.reset_parameters()


def _reset_parameters(module):
    """PyTorch's conv init: kaiming_uniform_(a=√5) = U(±1/√fan_in), bias U(±1/√fan_in)."""
    init.kaiming_uniform_(module.weight, a=math.sqrt(5))
    if module.bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(module.weight)
        _uniform_bias_(module.bias, fan_in)


class _ConvNd(Module):
    """What Conv1d / Conv2d / ConvTranspose1d / ConvTranspose2d share: arguments, weight and
    bias, init, repr."""

    _nd = 2
    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 groups, bias, padding_mode, output_padding, device, dtype):
        super().__init__()
        name, nd = type(self).__name__, self._nd
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must both be divisible by groups ({groups})")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {_PADDING_MODES}, got "
                             f"{padding_mode!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _ntuple(kernel_size, nd, "kernel_size")
        self.stride = _ntuple(stride, nd, "stride")
        self.dilation = _ntuple(dilation, nd, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be an int, a tuple, 'valid' or 'same', "
                                 f"got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{name}: padding='same' is not supported for strided "
                                 f"convolutions")
            self.padding = padding
        else:
            self.padding = _ntuple(padding, nd, "padding")
        self.output_padding = _ntuple(output_padding, nd, "output_padding")
        self.groups = groups
        self.padding_mode = padding_mode
        if self.transposed:
            shape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            shape = (out_channels, in_channels // groups) + self.kernel_size
        _init_params(self, shape, out_channels, bias, device, dtype)

    def reset_parameters(self):
        _reset_parameters(self)

    def extra_repr(self):
        nd = self._nd
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * nd:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * nd:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, 0, device, dtype)

    def _explicit_padding(self):
        """(left, right) per spatial dim, last dim first: F.pad's order."""
        pads = []
        for i in reversed(range(self._nd)):
            if self.padding == "valid":
                lo = hi = 0
            elif self.padding == "same":
                total = self.dilation[i] * (self.kernel_size[i] - 1)
                lo, hi = total // 2, total - total // 2
            else:
                lo = hi = self.padding[i]
            pads += [lo, hi]
        return tuple(pads)

    def forward(self, input):
        conv = F.conv2d if self._nd == 2 else F.conv1d
        if self.padding_mode == "zeros":
            return conv(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)
        return conv(F.pad(input, self._explicit_padding(), mode=self.padding_mode), self.weight,
                    self.bias, self.stride, 0, self.dilation, self.groups)


class Conv1d(_Conv):
    """1-D convolution over (N, C_in, L) or (C_in, L); weight (C_out, C_in/groups, k)."""
    _nd = 1


class Conv2d(_Conv):
    """2-D convolution over (N, C_in, H, W) or (C_in, H, W); weight
    (C_out, C_in/groups, kh, kw)."""
    _nd = 2


class _ConvTranspose(_ConvNd):
    transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        if padding_mode != "zeros":
            raise ValueError(f"{type(self).__name__}: only padding_mode='zeros' is supported, "
                             f"got {padding_mode!r}")
        if isinstance(padding, str):
            raise ValueError(f"{type(self).__name__}: padding must be an int or a tuple, got "
                             f"{padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, output_padding, device, dtype)

    def _output_padding(self, input, output_size):
        """output_padding that makes the output ``output_size`` (PyTorch's rule: between the
        smallest size and that plus stride - 1)."""
        if output_size is None:
            return self.output_padding
        nd = self._nd
        output_size = tuple(output_size)
        lead = 2 if input.ndim == nd + 2 else 1
        if len(output_size) == lead + nd:
            output_size = output_size[lead:]
        if len(output_size) != nd:
            raise ValueError(f"{type(self).__name__}: output_size must have {nd} or "
                             f"{nd + lead} elements, got {output_size}")
        lo = tuple((i - 1) * s - 2 * p + d * (k - 1) + 1 for i, s, p, d, k in
                   zip(input.shape[lead:], self.stride, self.padding, self.dilation,
                       self.kernel_size))
        hi = tuple(m + s - 1 for m, s in zip(lo, self.stride))
        if not all(a <= o <= b for a, o, b in zip(lo, output_size, hi)):
            raise ValueError(f"{type(self).__name__}: requested an output size of "
                             f"{output_size}, but valid sizes range from {lo} to {hi} (for an "
                             f"input of spatial size {tuple(input.shape[lead:])})")
        return tuple(o - a for o, a in zip(output_size, lo))

    def forward(self, input, output_size=None):
        fn = F.conv_transpose2d if self._nd == 2 else F.conv_transpose1d
        return fn(input, self.weight, self.bias, self.stride, self.padding,
                  self._output_padding(input, output_size), self.groups, self.dilation)


class ConvTranspose1d(_ConvTranspose):
    """Transposed 1-D convolution; weight (C_in, C_out/groups, k)."""
    _nd = 1


class ConvTranspose2d(_ConvTranspose):
    """Transposed 2-D convolution (the adjoint of Conv2d); weight (C_in, C_out/groups, kh, kw).
    ``forward(input, output_size=None)`` picks output_padding to reach ``output_size``."""
    _nd = 2


class MaskedConv2d(Module):
    """PixelCNN's masked convolution (van den Oord et al. 2016): an odd k x k conv with "same"
    padding whose output at a pixel sees only the pixels before it in raster order -- mask "A"
    (first layer) excludes the pixel itself, mask "B" includes it; with ``color_groups`` = 3
    the channels form R, G, B blocks and at the centre block j sees blocks i < j (A) or
    i <= j (B).  See :func:`nanogen.functional.masked_conv2d`."""

    def __init__(self, in_channels, out_channels, kernel_size, mask_type="A", color_groups=1,
                 bias=True, device=None, dtype=None):
        super().__init__()
        k = _ntuple(kernel_size, 2, "kernel_size")
        if k[0] != k[1]:
            raise ValueError(f"MaskedConv2d: the kernel must be square and odd, got {k}")
        F.pixelcnn_mask(out_channels, in_channels, k[0], mask_type, color_groups)  # validates
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = k
        self.mask_type = mask_type
        self.color_groups = color_groups
        _init_params(self, (out_channels, in_channels, *k), out_channels, bias, device, dtype)

    def reset_parameters(self):
        _reset_parameters(self)

    def forward(self, input):
        return F.masked_conv2d(input, self.weight, self.bias, self.mask_type, self.color_groups)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"mask_type={self.mask_type}")
        if self.color_groups != 1:
            s += f", color_groups={self.color_groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class CausalConv1d(Module):
    """WaveNet's causal dilated convolution: output t sees inputs t, t - d, ..., t - (k-1)·d;
    the output has the input's length.  See :func:`nanogen.functional.causal_conv1d`."""

    def __init__(self, in_channels, out_channels, kernel_size, dilation=1, bias=True,
                 device=None, dtype=None):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _ntuple(kernel_size, 1, "kernel_size")
        self.dilation = _ntuple(dilation, 1, "dilation")
        _init_params(self, (out_channels, in_channels, *self.kernel_size), out_channels, bias,
                     device, dtype)

    def reset_parameters(self):
        _reset_parameters(self)

    def forward(self, input):
        return F.causal_conv1d(input, self.weight, self.bias, self.dilation[0])

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"dilation={self.dilation}")
        if self.bias is None:
            s += ", bias=False"
        return s
