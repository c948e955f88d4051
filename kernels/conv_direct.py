"""Direct convolution on the CPU: a register-blocked float32 kernel over a channels-last copy of
the input, with no im2col and no GEMM.

The im2col route (:mod:`nanogen.kernels.conv`) writes a column matrix T times the size of the
input, and the GEMM then packs it again; with few output channels (O = 32: the GEMM's M) BLAS
reaches 60-70% of its peak on this work.  A direct kernel reads the input where it lies:

    y[n, oy, ox, o] = Σ_{t, c} x[n, oy*sh + ky_t*dh, ox*sw + kx_t*dw, c] · w_t[c, o]

on ``xp`` (N, Hp, Wp, C), x transposed to channels-last and zero-padded (top / left padding
shifts the indices, so every read is inside ``xp``), and ``wt`` (T, C, Op), one (C, O) matrix
per tap with O zero-padded up to a multiple of ``BLOCK_O``.

The micro-kernel computes a block of ``BLOCK_X`` = 7 neighbouring output pixels of one row times
``BLOCK_O`` = 32 output channels: 14 vectors of 16 float32 (:mod:`nanogen.kernels.simd`) held in
registers for the whole reduction over (tap, input channel).  Per input channel it loads the two
weight vectors w_t[c, o : o + 32], broadcasts the 7 input values x[pixel_i, c], and does 14
fused multiply-adds: 448 flops for 9 loads, so the FMA units, not memory, set the pace.  The
output width is computed in whole blocks of 7 (``Wo`` rounded up; the extra columns read
padding and are dropped), which fits the 28, 14 and 7 pixel rows of MNIST-sized networks
exactly.  Rows of output are split over the cores (:mod:`nanogen.kernels._threads`).

Measured on the 2-core AVX-512 CPU, batch 64, forward of a 3x3 "same" conv, one thread: 74-103
GFLOPS (32->32 at 28x28 in 8.9 ms, 192->64 at 14x14 in 27.6 ms); im2col + OpenBLAS on both cores
took 10.5 and 24.2 ms.

``supported`` says which convolutions take this path (float32, one group, non-negative top and
left padding, O padded by at most a quarter); the others, float64 (the gradient checks) and the
CUDA device keep the im2col kernels.  The tests compare both with ``conv_reference``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, uintp

from ._threads import run_ranges, threads_for
from .simd import vbcast, vfma, vget, vload, vzero

__all__ = ["BLOCK_O", "BLOCK_X", "supported", "conv"]

BLOCK_O = 32        # output channels per block: two vectors
BLOCK_X = 7         # output pixels per block


def _padded_channels(O):
    return -(-O // BLOCK_O) * BLOCK_O


def supported(g, dtype) -> bool:
    """Whether ``conv`` computes this Geometry (see the module docstring)."""
    return (np.dtype(dtype) == np.float32 and g.groups == 1 and g.pt >= 0 and g.pl >= 0
            and 4 * _padded_channels(g.O) <= 5 * g.O and g.Ho > 0 and g.Wo > 0)


@njit(inline="always")
def _store(yf, acc, at, plane, bias, o, pixel_ok, channels):
    """y[n, o + l, oy, ox] = acc[l] + bias[o + l] for the lanes l < ``channels`` (``at``: the
    flat index of lane 0, ``plane``: Ho*Wo, from one channel to the next)."""
    if pixel_ok:
        for lane in range(channels):
            yf[uintp(at + lane * plane)] = vget(acc, lane) + bias[o + lane]


@njit(nogil=True, cache=True, boundscheck=False)
def _conv_rows(xp, wt, bias, y, offy, offx, sh, sw, r0, r1):
    """y[n, :, oy, :] (NCHW, + bias) for the output rows r = n*Ho + oy in [r0, r1): blocks of
    7 pixels x 32 channels, 14 vector accumulators (a_i, b_i: pixel i, channels o..o+15 and
    o+16..o+31), stored lane by lane into the channel planes of y."""
    N, Hp, Wp, C = xp.shape
    T, _, O = wt.shape
    Oy, Ho, Wo = y.shape[1], y.shape[2], y.shape[3]
    xf, wf, yf = xp.ravel(), wt.ravel(), y.ravel()
    s = sw * C                                  # from one pixel of the block to the next
    plane = Ho * Wo
    for r in range(r0, r1):
        n = r // Ho
        oy = r - n * Ho
        for ox0 in range(0, Wo, 7):
            for o in range(0, O, 32):
                a0, b0, a1, b1, a2, b2 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
                a3, b3, a4, b4, a5, b5 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
                a6, b6 = vzero(), vzero()
                for t in range(T):
                    # the block's 7 input pixels for tap t (unsigned: numba then drops its
                    # negative-index wrap-around from the loads, which nearly doubled the loop)
                    x0 = ((n * Hp + oy * sh + offy[t]) * Wp + ox0 * sw + offx[t]) * C
                    x1, x2, x3, x4, x5, x6 = x0 + s, x0 + 2 * s, x0 + 3 * s, x0 + 4 * s, \
                        x0 + 5 * s, x0 + 6 * s
                    wb = t * C * O + o
                    for c in range(C):
                        w0 = vload(wf, wb + c * O)
                        w1 = vload(wf, wb + c * O + 16)
                        v = vbcast(xf[uintp(x0 + c)])
                        a0, b0 = vfma(v, w0, a0), vfma(v, w1, b0)
                        v = vbcast(xf[uintp(x1 + c)])
                        a1, b1 = vfma(v, w0, a1), vfma(v, w1, b1)
                        v = vbcast(xf[uintp(x2 + c)])
                        a2, b2 = vfma(v, w0, a2), vfma(v, w1, b2)
                        v = vbcast(xf[uintp(x3 + c)])
                        a3, b3 = vfma(v, w0, a3), vfma(v, w1, b3)
                        v = vbcast(xf[uintp(x4 + c)])
                        a4, b4 = vfma(v, w0, a4), vfma(v, w1, b4)
                        v = vbcast(xf[uintp(x5 + c)])
                        a5, b5 = vfma(v, w0, a5), vfma(v, w1, b5)
                        v = vbcast(xf[uintp(x6 + c)])
                        a6, b6 = vfma(v, w0, a6), vfma(v, w1, b6)
                na, nb = min(16, Oy - o), max(0, min(16, Oy - o - 16))   # real channels
                px = Wo - ox0                                             # real pixels
                at = ((n * Oy + o) * Ho + oy) * Wo + ox0
                bt = at + 16 * plane
                _store(yf, a0, at, plane, bias, o, True, na)
                _store(yf, b0, bt, plane, bias, o + 16, True, nb)
                _store(yf, a1, at + 1, plane, bias, o, px > 1, na)
                _store(yf, b1, bt + 1, plane, bias, o + 16, px > 1, nb)
                _store(yf, a2, at + 2, plane, bias, o, px > 2, na)
                _store(yf, b2, bt + 2, plane, bias, o + 16, px > 2, nb)
                _store(yf, a3, at + 3, plane, bias, o, px > 3, na)
                _store(yf, b3, bt + 3, plane, bias, o + 16, px > 3, nb)
                _store(yf, a4, at + 4, plane, bias, o, px > 4, na)
                _store(yf, b4, bt + 4, plane, bias, o + 16, px > 4, nb)
                _store(yf, a5, at + 5, plane, bias, o, px > 5, na)
                _store(yf, b5, bt + 5, plane, bias, o + 16, px > 5, nb)
                _store(yf, a6, at + 6, plane, bias, o, px > 6, na)
                _store(yf, b6, bt + 6, plane, bias, o + 16, px > 6, nb)


@njit(nogil=True, cache=True, boundscheck=False)
def _pack_rows(x, xp, pt, pl, r0, r1):
    """xp[n, r] for the padded rows q = n*Hp + r in [r0, r1): x[n, :, r - pt, :] transposed to
    (W, C) between zero borders, or zeros.  Flat arrays and unsigned indices (as in the im2col
    kernels): numba then drops its negative-index checks from the transposing loop."""
    N, C, H, W = x.shape
    Hp, Wp = xp.shape[1], xp.shape[2]
    xf, pf = x.ravel(), xp.ravel()
    for q in range(r0, r1):
        n = q // Hp
        iy = q - n * Hp - pt
        base = q * Wp * C
        if iy < 0 or iy >= H:
            pf[base:base + Wp * C] = 0
            continue
        pf[base:base + pl * C] = 0
        pf[base + (pl + W) * C:base + Wp * C] = 0
        src = (n * C * H + iy) * W
        dst = base + pl * C
        for ix in range(W):
            for c in range(C):
                pf[uintp(dst + ix * C + c)] = xf[uintp(src + c * H * W + ix)]


def pack_input(x, g, width):
    """xp (N, Hp, Wp, C): x channels-last, zero-padded so that ``width`` output columns (and
    all Ho rows) read inside it; index (iy + top, ix + left) holds x[:, :, iy, ix]."""
    N = x.shape[0]
    Hp = max(g.pt + g.H, (g.Ho - 1) * g.sh + g.dh * (g.kh - 1) + 1)
    Wp = max(g.pl + g.W, (width - 1) * g.sw + g.dw * (g.kw - 1) + 1)
    xp = np.empty((N, Hp, Wp, g.C), dtype=np.float32)
    x = np.ascontiguousarray(x)
    run_ranges(_pack_rows, N * Hp, threads_for(16 * xp.size),    # a copy: ~16 flops' time
               lambda i: (x, xp, g.pt, g.pl))
    return xp


def pack_weight(w, g):
    """wt (T, C, Op): per tap the (C, O) weight matrix, O zero-padded to a multiple of 32."""
    taps = np.asarray(g.taps, dtype=np.int64)
    wt = np.zeros((g.T, g.C, _padded_channels(g.O)), dtype=np.float32)
    wt[:, :, :g.O] = w.reshape(g.O, g.C, g.kh * g.kw)[:, :, taps].transpose(2, 1, 0)
    return wt


def conv(x, w, b, g, offsets):
    """y = conv(x, w) + b (N, O, Ho, Wo) for a ``supported`` Geometry, float32 NumPy arrays;
    ``offsets`` = (offy, offx), the taps' input offsets ky*dh and kx*dw (int64 arrays)."""
    N = x.shape[0]
    width = -(-g.Wo // BLOCK_X) * BLOCK_X
    xp, wt = pack_input(x, g, width), pack_weight(w, g)
    bias = np.zeros(wt.shape[2], dtype=np.float32)
    if b is not None:
        bias[:g.O] = b
    y = np.empty((N, g.O, g.Ho, g.Wo), dtype=np.float32)
    work = N * g.Ho * width * wt.shape[2] * g.C * g.T
    run_ranges(_conv_rows, N * g.Ho, threads_for(work),
               lambda i: (xp, wt, bias, y, offsets[0], offsets[1], g.sh, g.sw))
    return y
