"""Resampling kernels: nearest and (bi)linear interpolation of planes, and their adjoints.

Both are separable linear maps of a plane x (B, H, W) to y (B, Ho, Wo), described per axis by
*taps*: output row oh reads input rows ih0[oh] and ih1[oh] with weights wh0[oh], wh1[oh]
(columns likewise)::

    linear:   y[b, oh, ow] = Σ_{a, c ∈ {0, 1}} wh_a[oh] · ww_c[ow] · x[b, ih_a[oh], iw_c[ow]]
    nearest:  y[b, oh, ow] = x[b, ih[oh], iw[ow]]                  (one tap of weight 1)

The adjoints (the backward of each, and each one's backward is the forward again)::

    linear:   gx[b, h, w] = Σ_{oh ∈ [lh[h], uh[h])} Wh[oh, h] Σ_{ow ∈ [lw[w], uw[w])}
                                 Ww[ow, w] gy[b, oh, ow]
              Wh[oh, h] = wh0[oh]·[ih0[oh] = h] + wh1[oh]·[ih1[oh] = h]
    nearest:  gx[b, h, w] = Σ_{oh ∈ [lh[h], uh[h])} Σ_{ow ∈ [lw[w], uw[w])} gy[b, oh, ow]

The source indices are non-decreasing in the output index, so the outputs that read input
position h form a contiguous range [lh[h], uh[h]) (``covering_range`` of the windows
[ih0, ih1 + 1)): every adjoint is a gather, one thread per input element, no atomics.

Coordinates follow PyTorch exactly (``aten/src/ATen/native/UpSample.h``), computed in float32
for float32 data as PyTorch does, with s = 1/scale_factor when a scale factor is given (and not
recomputed), else in/out:

    nearest:        src = min(⌊dst · s⌋, in - 1)  (s in float32; out = in and out = 2·in exact)
    nearest-exact:  src = min(⌊(dst + ½) · s⌋, in - 1)
    linear, align_corners=False:  src = max(s · (dst + ½) - ½, 0)
    linear, align_corners=True:   src = dst · (in - 1)/(out - 1)   (0 when out = 1)
                    i0 = min(⌊src⌋, in - 1),  i1 = i0 + [i0 < in - 1],  λ = clamp(src - i0, 0, 1),
                    weights (1 - λ, λ)

Versions: ``*_reference`` (plain NumPy loops from the formulas above), ``*_cpu`` (numba.njit,
parallel over planes), ``*_cuda`` (numba.cuda, one thread per output / input element).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .pooling import array_module_of, covering_range, cuda_kernels, launch

cuda = None        # numba.cuda, set by _build

__all__ = ["nearest_indices", "linear_taps", "tap_cover",
           "interpolate_reference", "nearest_cpu", "nearest_adjoint_cpu", "linear_cpu",
           "linear_adjoint_cpu", "nearest_cuda", "nearest_adjoint_cuda", "linear_cuda",
           "linear_adjoint_cuda"]


# ================================================================ taps (host-side index maths)
def _inv_scale(n_in, n_out, scale, ftype):
    """PyTorch's compute_scales_value: 1/scale (computed in double, then cast) when a scale is
    given, else in/out in ``ftype``."""
    if scale is not None and scale > 0:
        return ftype(1.0 / scale)
    return ftype(n_in) / ftype(n_out)


def nearest_indices(n_in, n_out, scale=None, exact=False):
    """Source index of every output position for mode 'nearest' / 'nearest-exact'."""
    dst = np.arange(n_out)
    if not exact and n_out == n_in:
        return dst.astype(np.int64)
    if not exact and n_out == 2 * n_in:
        return (dst >> 1).astype(np.int64)
    s = _inv_scale(n_in, n_out, scale, np.float32)
    d = dst.astype(np.float32) + (np.float32(0.5) if exact else np.float32(0.0))
    return np.minimum(np.floor(d * s).astype(np.int64), n_in - 1)


def linear_taps(n_in, n_out, align_corners, scale=None, dtype=np.float32):
    """(i0, i1, w0, w1) of linear interpolation along one axis, in ``dtype``'s precision."""
    ftype = np.dtype(dtype).type
    if align_corners:
        s = ftype(n_in - 1) / ftype(n_out - 1) if n_out > 1 else ftype(0)
        src = s * np.arange(n_out, dtype=dtype)
    else:
        s = _inv_scale(n_in, n_out, scale, ftype)
        src = np.maximum(s * (np.arange(n_out, dtype=dtype) + ftype(0.5)) - ftype(0.5), ftype(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = np.clip(src - i0.astype(dtype), ftype(0), ftype(1)).astype(dtype)
    i1 = i0 + (i0 < n_in - 1)
    return i0, i1, (ftype(1) - lam).astype(dtype), lam


def tap_cover(i0, i1, n_in):
    """[lo, hi): the outputs whose taps read input position i (taps non-decreasing)."""
    return covering_range(i0, i1 + 1, n_in)


# ================================================================ reference (plain NumPy)
def interpolate_reference(x, size, mode, align_corners=False, scales=(None, None)):
    """Interpolate an (N, C, H, W) array to ``size`` (Ho, Wo), output pixel by output pixel,
    from PyTorch's coordinate formulas (scalars in x's precision, float32 for nearest)."""
    N, C, H, W = x.shape
    Ho, Wo = size
    ft = np.float32 if x.dtype == np.float32 else np.float64

    def nearest(dst, n_in, n_out, scale, exact):
        if not exact and n_out == n_in:
            return dst
        if not exact and n_out == 2 * n_in:
            return dst // 2
        s = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
        d = np.float32(dst) + np.float32(0.5 if exact else 0.0)
        return min(int(math.floor(np.float32(d * s))), n_in - 1)

    def linear(dst, n_in, n_out, scale):
        if align_corners:
            s = ft(n_in - 1) / ft(n_out - 1) if n_out > 1 else ft(0)
            src = ft(s * ft(dst))
        else:
            s = ft(1.0 / scale) if scale else ft(n_in) / ft(n_out)
            src = max(ft(s * ft(ft(dst) + ft(0.5)) - ft(0.5)), ft(0))
        i0 = min(int(math.floor(src)), n_in - 1)
        lam = min(max(ft(src - ft(i0)), ft(0)), ft(1))
        return [(i0, ft(1) - lam), (i0 + (1 if i0 < n_in - 1 else 0), lam)]

    y = np.zeros((N, C, Ho, Wo), x.dtype)
    for oh in range(Ho):
        for ow in range(Wo):
            if mode in ("nearest", "nearest-exact"):
                ex = mode == "nearest-exact"
                ih = nearest(oh, H, Ho, scales[0], ex)
                iw = nearest(ow, W, Wo, scales[1], ex)
                y[:, :, oh, ow] = x[:, :, ih, iw]
            else:
                for ih, a in linear(oh, H, Ho, scales[0]):
                    for iw, c in linear(ow, W, Wo, scales[1]):
                        y[:, :, oh, ow] += a * c * x[:, :, ih, iw]
    return y


# ================================================================ CPU (numba, parallel over planes)
@njit(parallel=True, cache=True)
def _nearest_cpu(x, ih, iw, y):
    for b in prange(x.shape[0]):
        for oh in range(ih.shape[0]):
            h = ih[oh]
            for ow in range(iw.shape[0]):
                y[b, oh, ow] = x[b, h, iw[ow]]


def nearest_cpu(x, ih, iw):
    y = np.empty((x.shape[0], ih.size, iw.size), x.dtype)
    _nearest_cpu(x, ih, iw, y)
    return y


@njit(parallel=True, cache=True)
def _nearest_adjoint_cpu(gy, ih, iw, gx):
    # one thread owns a plane: the adjoint as the scatter it is
    for b in prange(gy.shape[0]):
        gx[b] = 0.0
        for oh in range(ih.shape[0]):
            h = ih[oh]
            for ow in range(iw.shape[0]):
                gx[b, h, iw[ow]] += gy[b, oh, ow]


def nearest_adjoint_cpu(gy, ih, iw, H, W):
    gx = np.empty((gy.shape[0], H, W), gy.dtype)
    _nearest_adjoint_cpu(gy, ih, iw, gx)
    return gx


@njit(parallel=True, cache=True)
def _linear_cpu(x, h0, h1, a0, a1, w0, w1, c0, c1, y):
    for b in prange(x.shape[0]):
        for oh in range(h0.shape[0]):
            p, q, a, e = h0[oh], h1[oh], a0[oh], a1[oh]
            for ow in range(w0.shape[0]):
                r, s = w0[ow], w1[ow]
                y[b, oh, ow] = (a * (c0[ow] * x[b, p, r] + c1[ow] * x[b, p, s])
                                + e * (c0[ow] * x[b, q, r] + c1[ow] * x[b, q, s]))


def linear_cpu(x, h0, h1, a0, a1, w0, w1, c0, c1):
    y = np.empty((x.shape[0], h0.size, w0.size), x.dtype)
    _linear_cpu(x, h0, h1, a0, a1, w0, w1, c0, c1, y)
    return y


@njit(parallel=True, cache=True)
def _linear_adjoint_cpu(gy, h0, h1, a0, a1, w0, w1, c0, c1, gx):
    for b in prange(gy.shape[0]):
        gx[b] = 0.0
        for oh in range(h0.shape[0]):
            p, q, a, e = h0[oh], h1[oh], a0[oh], a1[oh]
            for ow in range(w0.shape[0]):
                g = gy[b, oh, ow]
                r, s, u, v = w0[ow], w1[ow], c0[ow] * g, c1[ow] * g
                gx[b, p, r] += a * u
                gx[b, p, s] += a * v
                gx[b, q, r] += e * u
                gx[b, q, s] += e * v


def linear_adjoint_cpu(gy, h0, h1, a0, a1, w0, w1, c0, c1, H, W):
    gx = np.empty((gy.shape[0], H, W), gy.dtype)
    _linear_adjoint_cpu(gy, h0, h1, a0, a1, w0, w1, c0, c1, gx)
    return gx


# ================================================================ CUDA (numba.cuda, built lazily)
def _build():
    global cuda
    from numba import cuda      # a module global: the simulator swaps it inside kernels
    @cuda.jit
    def nearest(x, ih, iw, y):
        B, Ho, Wo = y.shape
        start, step = cuda.grid(1), cuda.gridsize(1)
        for t in range(start, B * Ho * Wo, step):
            ow = t % Wo
            oh = (t // Wo) % Ho
            b = t // (Wo * Ho)
            y[b, oh, ow] = x[b, ih[oh], iw[ow]]

    @cuda.jit
    def nearest_adjoint(gy, lh, uh, lw, uw, gx):
        B, H, W = gx.shape
        start, step = cuda.grid(1), cuda.gridsize(1)
        for t in range(start, B * H * W, step):
            w = t % W
            h = (t // W) % H
            b = t // (W * H)
            acc = 0.0
            for oh in range(lh[h], uh[h]):
                for ow in range(lw[w], uw[w]):
                    acc += gy[b, oh, ow]
            gx[b, h, w] = acc

    @cuda.jit
    def linear(x, h0, h1, a0, a1, w0, w1, c0, c1, y):
        B, Ho, Wo = y.shape
        start, step = cuda.grid(1), cuda.gridsize(1)
        for t in range(start, B * Ho * Wo, step):
            ow = t % Wo
            oh = (t // Wo) % Ho
            b = t // (Wo * Ho)
            p, q, r, s = h0[oh], h1[oh], w0[ow], w1[ow]
            y[b, oh, ow] = (a0[oh] * (c0[ow] * x[b, p, r] + c1[ow] * x[b, p, s])
                            + a1[oh] * (c0[ow] * x[b, q, r] + c1[ow] * x[b, q, s]))

    @cuda.jit
    def linear_adjoint(gy, lh, uh, h0, h1, a0, a1, lw, uw, w0, w1, c0, c1, gx):
        B, H, W = gx.shape
        start, step = cuda.grid(1), cuda.gridsize(1)
        for t in range(start, B * H * W, step):
            w = t % W
            h = (t // W) % H
            b = t // (W * H)
            acc = 0.0
            for oh in range(lh[h], uh[h]):
                wh = (a0[oh] if h0[oh] == h else 0.0) + (a1[oh] if h1[oh] == h else 0.0)
                row = 0.0
                for ow in range(lw[w], uw[w]):
                    ww = (c0[ow] if w0[ow] == w else 0.0) + (c1[ow] if w1[ow] == w else 0.0)
                    row += ww * gy[b, oh, ow]
                acc += wh * row
            gx[b, h, w] = acc

    return dict(nearest=nearest, nearest_adjoint=nearest_adjoint, linear=linear,
                linear_adjoint=linear_adjoint)


def nearest_cuda(x, ih, iw):
    y = array_module_of(x).empty((x.shape[0], ih.size, iw.size), x.dtype)
    launch(cuda_kernels(_build)["nearest"], y.size, x, ih, iw, y)
    return y


def nearest_adjoint_cuda(gy, lh, uh, lw, uw):
    """Adjoint of nearest as a gather over the covering ranges (H = lh.size, W = lw.size)."""
    gx = array_module_of(gy).empty((gy.shape[0], lh.size, lw.size), gy.dtype)
    launch(cuda_kernels(_build)["nearest_adjoint"], gx.size, gy, lh, uh, lw, uw, gx)
    return gx


def linear_cuda(x, h0, h1, a0, a1, w0, w1, c0, c1):
    y = array_module_of(x).empty((x.shape[0], h0.size, w0.size), x.dtype)
    launch(cuda_kernels(_build)["linear"], y.size, x, h0, h1, a0, a1, w0, w1, c0, c1, y)
    return y


def linear_adjoint_cuda(gy, lh, uh, h0, h1, a0, a1, lw, uw, w0, w1, c0, c1):
    """Adjoint of linear as a gather over the covering ranges (H = lh.size, W = lw.size)."""
    gx = array_module_of(gy).empty((gy.shape[0], lh.size, lw.size), gy.dtype)
    launch(cuda_kernels(_build)["linear_adjoint"], gx.size, gy, lh, uh, h0, h1, a0, a1,
           lw, uw, w0, w1, c0, c1, gx)
    return gx
