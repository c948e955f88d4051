"""Convolutions: conv1d, conv2d, conv_transpose1d, conv_transpose2d, masked_conv2d (PixelCNN),
causal_conv1d (WaveNet), and the mask builder pixelcnn_mask.

One geometry, three Functions
-----------------------------
Every convolution here is a 2-D one (a 1-D conv has height 1, reached by a reshape, no copy)
described by a :class:`nanogen.kernels.conv.Geometry`: stride, dilation, groups, ASYMMETRIC
padding (top, bottom, left, right) and a tap list (the kernel positions whose weights may be
nonzero).  With  iy = oy*sh - top + ky*dh,  ix = ox*sw - left + kx*dw  (zero outside x):

    Conv:           y[n, o, oy, ox] = b[o] + Σ_{c, (ky, kx) ∈ taps} w[o, c, ky, kx] x[n, c, iy, ix]
                    = W @ im2col(x)   (+ b)
    ConvTranspose:  the adjoint of Conv in x:   <Conv(x, w), y> = <x, ConvTranspose(y, w)>
                    = col2im(Wᵀ @ y)
    ConvWeight:     the adjoint of Conv in w:   <Conv(x, w), gy> = <w, ConvWeight(x, gy)>
                    = gy @ im2col(x)ᵀ   (zero outside the taps)

Conv is bilinear in (x, w), so each Function's gradients are the other two (the family is
closed under differentiation, and gradients of gradients work to any order):

    Conv(x, w, b)        gx = ConvTranspose(gy, w)     gw = ConvWeight(x, gy)   gb = Σ_{n,oy,ox} gy
    ConvTranspose(y, w)  gy = Conv(g, w)               gw = ConvWeight(g, y)    (gb as above)
    ConvWeight(x, gy)    gx = ConvTranspose(gy, G)     g_gy = Conv(x, G)

``conv_transpose2d(input, weight)`` is ConvTranspose with the geometry of the conv it is the
adjoint of (output_padding enlarges that conv's input, folded in as less bottom / right padding),
so it is GEMM + col2im and never inserts zeros into its input.  ``masked_conv2d`` is Conv
restricted to the taps its mask keeps, applied to ``weight * mask``: the kernels skip the zeroed
taps (a 3x3 mask-B conv does 5/9 of a dense conv's work) and the mul's backward masks the weight
gradient.  The kernels live in :mod:`nanogen.kernels.conv`.
"""
from __future__ import annotations

import functools
import numbers

import numpy as np

from ..autograd import Function, is_grad_enabled
from ..kernels import conv as K
from ..tensor import Tensor

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "masked_conv2d",
           "causal_conv1d", "pixelcnn_mask"]


# ================================================================ the three Functions
class Conv(Function):
    """y = W @ im2col(x) (+ b) on ``self.geom``.

    backward:  gx = ConvTranspose(gy, w),  gw = ConvWeight(x, gy),  gb = gy summed over
    (n, oy, ox)."""

    keep_cols = False   # keep im2col(x) (when small) for the weight gradient

    def forward(self, x, w, *b):
        keep = self.requires_grad and self.keep_cols
        out = K.conv(x, w, b[0] if b else None, self.geom, self.device, keep_cols=keep)
        y, self.cols = out if keep else (out, None)
        return y

    def backward(self, gy):
        x, w = self.inputs[:2]
        need = self.needs_input_grad
        if need[0] and need[1] and not is_grad_enabled():    # one pass over gy for both
            gx, gw = _fused(K.conv_backward, x, w, gy, self.geom, cols=self.cols)
        else:
            gx = ConvTranspose.apply(gy, w, geom=self.geom) if need[0] else None
            gw = ConvWeight.apply(x, gy, geom=self.geom, cols=self.cols) if need[1] else None
        if len(self.inputs) == 2:
            return gx, gw
        return gx, gw, (gy.sum((0, 2, 3)) if need[2] else None)


class ConvTranspose(Function):
    """x = col2im(Wᵀ @ y) (+ b): the adjoint of Conv in its input, on ``self.geom`` (the
    geometry of that conv: its input is this op's output).

    backward:  gy = Conv(g, w),  gw = ConvWeight(g, y),  gb = g summed over (n, iy, ix)."""

    def forward(self, y, w, *b):
        return K.conv_transpose(y, w, b[0] if b else None, self.geom, self.device)

    def backward(self, g):
        y, w = self.inputs[:2]
        need = self.needs_input_grad
        if need[0] and need[1] and not is_grad_enabled():    # one im2col(g) for both
            gy, gw = _fused(K.conv_transpose_backward, g, w, y, self.geom)
        else:
            gy = Conv.apply(g, w, geom=self.geom) if need[0] else None
            gw = ConvWeight.apply(g, y, geom=self.geom) if need[1] else None
        if len(self.inputs) == 2:
            return gy, gw
        return gy, gw, (g.sum((0, 2, 3)) if need[2] else None)


def _fused(kernel, a, w, b, geom, **kw):
    """Both gradients of Conv / ConvTranspose from one fused kernel call -- only when no graph
    is being recorded (create_graph=False); otherwise they are the two Functions, so that they
    can be differentiated again."""
    ga, gw = kernel(a.data, w.data, b.data, geom, a.device, **kw)
    return Tensor._make(ga, a._device), Tensor._make(gw, a._device)


class ConvWeight(Function):
    """gw = gy @ im2col(x)ᵀ, weight-shaped and zero outside the taps: the adjoint of Conv in
    its weight.  Bilinear in (x, gy):  <ConvWeight(x, gy), G> = <gy, Conv(x, G)>
    = <x, ConvTranspose(gy, G)>.

    backward:  gx = ConvTranspose(gy, G),  g_gy = Conv(x, G)."""

    cols = None     # im2col(x) handed over by a Conv's forward, when it kept it

    def forward(self, x, gy):
        return K.conv_weight(x, gy, self.geom, self.device, cols=self.cols)

    def backward(self, G):
        x, gy = self.inputs
        need = self.needs_input_grad
        gx = ConvTranspose.apply(gy, G, geom=self.geom) if need[0] else None
        ggy = Conv.apply(x, G, geom=self.geom) if need[1] else None
        return gx, ggy


# ================================================================ argument checking
def _ints(value, n, name, op, minimum):
    """An int or a sequence of n ints, each >= minimum, as a tuple of n ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        vals = (int(value),) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        vals = tuple(int(v) for v in value)
    else:
        raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    if any(v < minimum for v in vals):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return vals


def _check_tensors(op, input, weight, bias, nd, out_channels):
    """Input of rank nd+2 (or nd+1, unbatched), weight of rank nd+2, float, bias (O,)."""
    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        if t is not None and t.dtype.kind != "f":
            raise TypeError(f"{op}: expects floating-point tensors, got {name} of dtype "
                            f"{t.dtype}")
    if input.ndim not in (nd + 1, nd + 2):
        raise ValueError(f"{op}: expected a {nd + 2}-D (batched) or {nd + 1}-D (unbatched) "
                         f"input, got shape {tuple(input.shape)}")
    if weight.ndim != nd + 2:
        raise ValueError(f"{op}: expected a {nd + 2}-D weight, got shape {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"{op}: bias must have shape ({out_channels},) (one per output "
                         f"channel), got {tuple(bias.shape)}")


def _batched(input, nd):
    """(input with a batch dim, whether one was added)."""
    return (input.reshape(1, *input.shape), True) if input.ndim == nd + 1 else (input, False)


def _as_2d(t, nd):
    """(N, C, L) -> (N, C, 1, L) for 1-D ops (a view); 2-D tensors pass through."""
    return t.reshape(*t.shape[:-1], 1, t.shape[-1]) if nd == 1 else t


def _from_2d(t, nd, unbatched):
    if nd == 1:
        t = t.reshape(*t.shape[:2], t.shape[-1])
    return t.reshape(*t.shape[1:]) if unbatched else t


def _check_size(op, g, spatial, nd):
    if g.Ho < 1 or g.Wo < 1:
        size = spatial[-nd:]
        padded = (g.H + g.pt + g.pb, g.W + g.pl + g.pr)[-nd:]
        kernel = (g.dh * (g.kh - 1) + 1, g.dw * (g.kw - 1) + 1)[-nd:]
        raise ValueError(f"{op}: input of size {tuple(size)} (padded {padded}) is smaller than "
                         f"the dilated kernel {kernel}")


def _apply(fn, x, w, bias, g):
    kw = dict(geom=g)
    if fn is Conv:      # its weight gradient will want im2col(x): keep it
        kw["keep_cols"] = w.requires_grad
    return fn.apply(x, w, **kw) if bias is None else fn.apply(x, w, bias, **kw)


# ================================================================ conv1d / conv2d
def _conv(op, nd, input, weight, bias, stride, padding, dilation, groups, taps=None):
    _check_tensors(op, input, weight, bias, nd, weight.shape[0] if weight.ndim else 0)
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    x, unbatched = _batched(input, nd)
    O, Cg = weight.shape[:2]
    ksize = tuple(weight.shape[2:])
    if x.shape[1] != Cg * groups:
        raise ValueError(f"{op}: input has {x.shape[1]} channels but weight expects "
                         f"{Cg * groups} (weight shape {tuple(weight.shape)}, groups={groups})")
    if O % groups:
        raise ValueError(f"{op}: weight has {O} output channels, not divisible by "
                         f"groups={groups} (weight shape {tuple(weight.shape)})")
    stride = _ints(stride, nd, "stride", op, 1)
    dilation = _ints(dilation, nd, "dilation", op, 1)
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * nd
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided "
                                 f"convolutions (stride={stride})")
            # total d*(k-1); an odd total puts the extra row / column at the bottom / right
            pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                    for d, k in zip(dilation, ksize)]
        else:
            raise ValueError(f"{op}: padding must be an int, a tuple, 'valid' or 'same', got "
                             f"{padding!r}")
    else:
        pads = [(p, p) for p in _ints(padding, nd, "padding", op, 0)]
    if nd == 1:
        stride, dilation, ksize, pads = (1,) + stride, (1,) + dilation, (1,) + ksize, \
            [(0, 0)] + pads
    g = K.Geometry.make(x.shape[1], x.shape[-2] if nd == 2 else 1, x.shape[-1], O, *ksize,
                        stride, (*pads[0], *pads[1]), dilation, groups, taps)
    _check_size(op, g, x.shape[2:], nd)
    y = _apply(Conv, _as_2d(x, nd), _as_2d(weight, nd), bias, g)
    return _from_2d(y, nd, unbatched)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation, PyTorch's ``F.conv2d``: input (N, C, H, W) or (C, H, W), weight
    (O, C/groups, kh, kw), bias (O,); ``padding`` an int, a pair, "valid" or "same" (stride 1;
    an odd total padding puts the extra row / column at the bottom / right, as PyTorch does).

        y[n, o, oy, ox] = b[o] + Σ_{c, ky, kx} w[o, c, ky, kx] x[n, g(o)·C/groups + c,
                                                             oy·sh - ph + ky·dh, ox·sw - pw + kx·dw]
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D cross-correlation, PyTorch's ``F.conv1d``: input (N, C, L) or (C, L), weight
    (O, C/groups, k); a conv2d of height 1."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


# ================================================================ transposed convolutions
def _conv_transpose(op, nd, input, weight, bias, stride, padding, output_padding, groups,
                    dilation):
    out_per_group = weight.shape[1] if weight.ndim >= 2 else 0
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    _check_tensors(op, input, weight, bias, nd, out_per_group * groups)
    x, unbatched = _batched(input, nd)
    Cin = weight.shape[0]
    ksize = tuple(weight.shape[2:])
    if x.shape[1] != Cin:
        raise ValueError(f"{op}: input has {x.shape[1]} channels but weight expects {Cin} "
                         f"(weight shape {tuple(weight.shape)}, groups={groups})")
    if Cin % groups:
        raise ValueError(f"{op}: weight has {Cin} input channels, not divisible by "
                         f"groups={groups} (weight shape {tuple(weight.shape)})")
    stride = _ints(stride, nd, "stride", op, 1)
    dilation = _ints(dilation, nd, "dilation", op, 1)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple of ints (string padding is "
                         f"only defined for conv{nd}d), got {padding!r}")
    padding = _ints(padding, nd, "padding", op, 0)
    output_padding = _ints(output_padding, nd, "output_padding", op, 0)
    for op_, s, d in zip(output_padding, stride, dilation):
        if op_ >= max(s, d):
            raise ValueError(f"{op}: output_padding {output_padding} must be smaller than "
                             f"either stride {stride} or dilation {dilation}")
    # the conv this is the adjoint of: its input has size (in-1)*s - 2p + d*(k-1) + 1 + op,
    # and output_padding is folded in as op less padding at the bottom / right
    size = tuple((i - 1) * s - 2 * p + d * (k - 1) + 1 + o for i, s, p, d, k, o in
                 zip(x.shape[2:], stride, padding, dilation, ksize, output_padding))
    if any(v < 1 for v in size):
        raise ValueError(f"{op}: the output size {size} of input {tuple(x.shape[2:])} with "
                         f"stride {stride}, padding {padding}, dilation {dilation}, kernel "
                         f"{ksize} and output_padding {output_padding} is not positive")
    pads = [(p, p - o) for p, o in zip(padding, output_padding)]
    if nd == 1:
        stride, dilation, ksize, pads, size = (1,) + stride, (1,) + dilation, (1,) + ksize, \
            [(0, 0)] + pads, (1,) + size
    g = K.Geometry.make(out_per_group * groups, *size, Cin, *ksize, stride,
                        (*pads[0], *pads[1]), dilation, groups)
    assert (g.Ho, g.Wo) == ((1,) + tuple(x.shape[2:]) if nd == 1 else tuple(x.shape[2:]))
    out = _apply(ConvTranspose, _as_2d(x, nd), _as_2d(weight, nd), bias, g)
    return _from_2d(out, nd, unbatched)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 2-D convolution, PyTorch's ``F.conv_transpose2d``: the adjoint (input
    gradient) of ``conv2d(·, weight, stride, padding, dilation, groups)``.  Input
    (N, C_in, H, W), weight (C_in, C_out/groups, kh, kw); output size per dim
    (in - 1)·s - 2p + d·(k - 1) + output_padding + 1.  Computed as col2im(Wᵀ @ input)."""
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 1-D convolution, PyTorch's ``F.conv_transpose1d``: input (N, C_in, L),
    weight (C_in, C_out/groups, k)."""
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


# ================================================================ PixelCNN masked convolution
def _mask_args(op, out_ch, in_ch, k, mask_type, color_groups):
    if mask_type not in ("A", "B"):
        raise ValueError(f"{op}: mask_type must be 'A' or 'B', got {mask_type!r}")
    if k % 2 == 0 or k < 1:
        raise ValueError(f"{op}: the kernel must be odd (it is centred on the pixel), got "
                         f"{k}x{k}")
    if not isinstance(color_groups, numbers.Integral) or color_groups < 1:
        raise ValueError(f"{op}: color_groups must be a positive int, got {color_groups!r}")
    if out_ch % color_groups or in_ch % color_groups:
        raise ValueError(f"{op}: {out_ch} output and {in_ch} input channels must both be "
                         f"divisible by color_groups={color_groups}")


@functools.lru_cache(maxsize=64)
def _mask(out_ch, in_ch, k, mask_type, color_groups, dtype):
    c = k // 2
    m = np.ones((out_ch, in_ch, k, k), dtype=dtype)
    m[:, :, c + 1:, :] = 0            # rows below the centre
    m[:, :, c, c + 1:] = 0            # right of the centre in the centre row
    ob = np.arange(out_ch) // (out_ch // color_groups)     # colour block of each channel
    ib = np.arange(in_ch) // (in_ch // color_groups)
    sees = ib[None, :] < ob[:, None] if mask_type == "A" else ib[None, :] <= ob[:, None]
    m[:, :, c, c] = sees
    m.setflags(write=False)
    return m


def pixelcnn_mask(out_ch, in_ch, k, mask_type="A", color_groups=1, dtype=np.float32):
    """The PixelCNN mask (van den Oord et al. 2016) as a NumPy array (out_ch, in_ch, k, k).

    Zero at every tap below the centre row and right of the centre in the centre row.  At the
    centre, channels split into ``color_groups`` contiguous blocks (R, G, B for 3): output block
    j sees input block i when i < j (mask "A") or i <= j (mask "B"); with one group mask A
    zeroes the centre and mask B keeps it."""
    _mask_args("pixelcnn_mask", out_ch, in_ch, k, mask_type, color_groups)
    return _mask(int(out_ch), int(in_ch), int(k), mask_type, int(color_groups),
                 np.dtype(dtype)).copy()


def masked_conv2d(input, weight, bias=None, mask_type="A", color_groups=1):
    """PixelCNN's masked convolution: ``conv2d(input, weight * mask, bias, padding=k // 2)``
    with ``mask = pixelcnn_mask(O, C, k, mask_type, color_groups)``, so output pixel (i, j)
    depends only on inputs before it in raster order (and, at (i, j) itself, on the colour
    blocks the mask allows).  The kernel visits only the taps the mask keeps (5 of 9 for a
    3x3 mask B, 24 of 49 for a 7x7 mask A), so it is cheaper than a dense conv."""
    op = "masked_conv2d"
    _check_tensors(op, input, weight, bias, 2, weight.shape[0] if weight.ndim else 0)
    O, C, kh, kw = weight.shape
    if kh != kw:
        raise ValueError(f"{op}: the kernel must be square and odd, got {kh}x{kw}")
    _mask_args(op, O, C, kh, mask_type, color_groups)
    mask = _mask(O, C, kh, mask_type, int(color_groups), np.dtype(weight.dtype))
    taps = np.flatnonzero(mask.any(axis=(0, 1)))
    m = Tensor._make(weight._xp().asarray(mask), weight._device)
    return _conv(op, 2, input, weight * m, bias, 1, kh // 2, 1, 1, taps=taps)


# ================================================================ WaveNet causal convolution
def causal_conv1d(input, weight, bias=None, dilation=1):
    """WaveNet's causal dilated convolution: input (N, C, L) or (C, L), weight (O, C, k);
    output t sees inputs t - j·dilation, j = 0..k-1, only, and has the input's length L.  The
    left padding (k - 1)·dilation is asymmetric padding inside the kernel (no pad op).

        y[n, o, t] = b[o] + Σ_{c, j} w[o, c, j] x[n, c, t - (k - 1 - j)·dilation]"""
    op = "causal_conv1d"
    _check_tensors(op, input, weight, bias, 1, weight.shape[0] if weight.ndim else 0)
    d = _ints(dilation, 1, "dilation", op, 1)[0]
    x, unbatched = _batched(input, 1)
    O, C, k = weight.shape
    if x.shape[1] != C:
        raise ValueError(f"{op}: input has {x.shape[1]} channels but weight expects {C} "
                         f"(weight shape {tuple(weight.shape)})")
    g = K.Geometry.make(C, 1, x.shape[2], O, 1, k, (1, 1), (0, 0, (k - 1) * d, 0), (1, d))
    _check_size(op, g, x.shape[2:], 1)
    y = _apply(Conv, _as_2d(x, 1), _as_2d(weight, 1), bias, g)
    return _from_2d(y, 1, unbatched)
