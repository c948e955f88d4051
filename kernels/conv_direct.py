"""Direct convolution on the CPU: a register-blocked float32 kernel over a channels-last copy of
the input, with no im2col and no GEMM.

The im2col route (:mod:`nanogen.kernels.conv`) writes a column matrix T times the size of the
input, and the GEMM then packs it again; with few output channels (O = 32: the GEMM's M) BLAS
reaches 60-70% of its peak on this work.  A direct kernel reads the input where it lies:

    y[n, o, oy, ox] = Σ_{t, c} x[n, oy*sh + ky_t*dh, ox*sw + kx_t*dw, c] · w_t[c, o]

on ``xp`` (N, Hp, Wp, C), x transposed to channels-last and zero-padded (top / left padding
shifts the indices, so every read is inside ``xp``), and ``wt`` (T, C, Op), one (C, O) matrix
per tap with O zero-padded up to a multiple of ``BLOCK_O``.

The micro-kernel computes a block of ``BLOCK_X`` = 7 neighbouring output pixels of one row times
``BLOCK_O`` = 32 output channels: 14 vectors of 16 float32 (:mod:`nanogen.kernels.simd`) held in
registers for the whole reduction over (tap, input channel).  Per input channel it loads the two
weight vectors w_t[c, o : o + 32], broadcasts the 7 input values x[pixel_i, c], and does 14
fused multiply-adds: 448 flops for 9 loads, so the FMA units, not memory, set the pace.  The
block's results go lane by lane straight into the NCHW output, with the bias (no unpacking
pass).  Blocks past the output's width (``Wo`` rounded up to 7) or channel count read padding
and are not stored; 7 divides the 28, 14 and 7 pixel rows of MNIST-sized networks.  Rows of
output are split over the cores (:mod:`nanogen.kernels._threads`).

Measured on the 2-core AVX-512 CPU, batch 64, forward of a 3x3 conv including the packing, in
one run: 32->32 at 28x28 7.7 ms (im2col + GEMM 26 ms), 96->32 19.5 ms (69), 192->64 at 14x14
18.4 ms (53), 128->128 at 7x7 7.1 ms (13); one thread alone ran at 74-103 GFLOPS.

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
def _times_weights(xf, i, w0, w1, a, b):
    """(a + x w0, b + x w1) with x = xf[i]: one input value times the block's 32 weights.  The
    index is cast to unsigned, so numba leaves out its negative-index wrap-around (which had
    filled the inner loop with as many instructions as the FMAs themselves)."""
    v = vbcast(xf[uintp(i)])
    return vfma(v, w0, a), vfma(v, w1, b)


@njit(inline="always")
def _store_pixel(yf, a, b, at, plane, bias, o, pixel_ok, na, nb):
    """y[n, o + l, oy, ox] = (a, b)[l] + bias[o + l] for the na + nb real channels of one pixel
    (``at``: the flat index of channel o; ``plane`` = Ho*Wo from one channel to the next)."""
    if pixel_ok:
        for lane in range(na):
            yf[uintp(at + lane * plane)] = vget(a, lane) + bias[o + lane]
        for lane in range(nb):
            yf[uintp(at + (16 + lane) * plane)] = vget(b, lane) + bias[o + 16 + lane]


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
                    # where the block's 7 input pixels start for tap t
                    x0 = ((n * Hp + oy * sh + offy[t]) * Wp + ox0 * sw + offx[t]) * C
                    x1, x2, x3, x4, x5, x6 = x0 + s, x0 + 2 * s, x0 + 3 * s, x0 + 4 * s, \
                        x0 + 5 * s, x0 + 6 * s
                    wb = t * C * O + o
                    for c in range(C):
                        w0 = vload(wf, wb + c * O)
                        w1 = vload(wf, wb + c * O + 16)
                        a0, b0 = _times_weights(xf, x0 + c, w0, w1, a0, b0)
                        a1, b1 = _times_weights(xf, x1 + c, w0, w1, a1, b1)
                        a2, b2 = _times_weights(xf, x2 + c, w0, w1, a2, b2)
                        a3, b3 = _times_weights(xf, x3 + c, w0, w1, a3, b3)
                        a4, b4 = _times_weights(xf, x4 + c, w0, w1, a4, b4)
                        a5, b5 = _times_weights(xf, x5 + c, w0, w1, a5, b5)
                        a6, b6 = _times_weights(xf, x6 + c, w0, w1, a6, b6)
                na, nb = min(16, Oy - o), max(0, min(16, Oy - o - 16))   # real channels
                px = Wo - ox0                                             # real pixels
                at = ((n * Oy + o) * Ho + oy) * Wo + ox0
                _store_pixel(yf, a0, b0, at + 0, plane, bias, o, px > 0, na, nb)
                _store_pixel(yf, a1, b1, at + 1, plane, bias, o, px > 1, na, nb)
                _store_pixel(yf, a2, b2, at + 2, plane, bias, o, px > 2, na, nb)
                _store_pixel(yf, a3, b3, at + 3, plane, bias, o, px > 3, na, nb)
                _store_pixel(yf, a4, b4, at + 4, plane, bias, o, px > 4, na, nb)
                _store_pixel(yf, a5, b5, at + 5, plane, bias, o, px > 5, na, nb)
                _store_pixel(yf, a6, b6, at + 6, plane, bias, o, px > 6, na, nb)


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
