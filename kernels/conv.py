"""Convolution kernels: im2col / col2im with asymmetric padding and tap lists, and the three GEMM
drivers built on them (convolution, its transpose, its weight gradient).

Everything is 2-D (a 1-D convolution is one of height 1) and described by a :class:`Geometry`:
input x of shape (N, C, H, W), weight w of shape (O, C/groups, kh, kw), stride (sh, sw),
dilation (dh, dw), padding (top, bottom, left, right) -- asymmetric, and the bottom / right
sides may be negative (a crop; conv_transpose's output_padding is folded in that way) -- and a
TAP LIST: the kernel positions t = ky*kw + kx whose weights may be nonzero.  A dense conv has all
kh*kw taps; a PixelCNN-masked one only the taps its mask keeps, and the kernels never touch the
others, so a masked conv costs T/(kh*kw) of a dense one.

    Ho = (H + top + bottom - dh*(kh-1) - 1) // sh + 1          (Wo likewise)

im2col and its adjoint col2im
-----------------------------
With a tap t at (ky, kx), output position (oy, ox) reads input position

    iy = oy*sh - top + ky*dh,    ix = ox*sw - left + kx*dw          (zero outside [0,H)x[0,W))

``im2col`` lays these reads out as a matrix with one row per (channel, tap) and one column per
(sample, output position):

    cols[c*T + t, n, oy*Wo + ox] = x[n, c, iy, ix]                  cols: (C*T, N, Ho*Wo)

so that row c*T + t matches ``w[:, c, taps]`` flattened (and rows come grouped by conv group).
``col2im`` is its adjoint, <im2col(x), Z> = <x, col2im(Z)>: it sums every column entry back
onto the input element it was read from,

    x[n, c, iy, ix] = sum over (t, oy, ox) that read it of cols[c*T + t, n, oy*Wo + ox].

The three GEMM drivers (per group g, W_g = w[g's outputs, :, taps] as an (Og, Cg*T) matrix)
------------------------------------------------------------------------------------------
* conv:            y  = W_g @ im2col(x)_g  (+ b)                   forward of conv2d
* conv_transpose:  x  = col2im(W_gᵀ @ y_g) (+ b)                   its input-gradient, and
                                                                     forward of conv_transpose2d
* conv_weight:     gw = gy_g @ im2col(x)_gᵀ  (zero outside the taps)  its weight-gradient

They are one chunk loop (``_engine``) over the batch: im2col of a few samples into a column
matrix of ``CHUNK_BYTES`` (8 MB on the CPU: it stays in the last-level cache between the kernel
that writes it and the GEMM that reads it), then one GEMM per group through ``xp.matmul`` (BLAS
/ cuBLAS).  The sample axis sits in the GEMM's column dimension, so y and gy are transposed
((O, n, P) <-> (n, O, P)) one cached chunk at a time.  Ops needed together share work: conv's
backward (``conv_backward``) transposes gy once for both gradients, conv_transpose's
(``conv_transpose_backward``) computes im2col once for both, and a conv's forward keeps its
im2col(x) for the weight gradient when it is at most ``KEEP_COLS_BYTES``.  Scratch arrays are
reused across calls.  A 1x1 stride-1 unpadded dense conv needs no im2col: x itself is the column
matrix.

The input gradient of a stride-1 conv is itself a conv
------------------------------------------------------
With stride 1, iy = oy - top + ky*dh gives oy = iy - top' + ky'*dh for the flipped tap
ky' = kh-1-ky and top' = dh*(kh-1) - top (likewise bottom', left', right'), so

    conv_transpose(y, w, g) = conv(y, w', g')    w'[c, o, ky', kx'] = w[o, c, kh-1-ky', kw-1-kx']

on the geometry g' that swaps C and O, flips the taps and the padding (``adjoint_geometry``).
Both cost the same GEMM FLOPs, but not the same memory traffic: col2im(Wᵀ @ y) writes and reads
a (C*T, n*P) column matrix and contracts over only O channels; conv(y, w') writes im2col(y),
(O*T, n*P), and contracts over O*T.  When C > O the second is cheaper: on the DDPM U-Net's
convolutions (batch 64) the 96->32 input gradient at 28x28 took 21 ms instead of 26, 192->64 at
14x14 20 instead of 26, the 32->1 output conv 1.7 instead of 6.8 (its GEMM was an outer product).
With C < O it is slower (32->64: 5.3 ms instead of 4.4), and with C = O no faster while it would
cost conv_backward its shared transpose of gy.  On the CPU in float32 the conv(y, w') is usually
the direct kernel (:mod:`nanogen.kernels.conv_direct`), which needs no im2col at all.  So
``conv_transpose`` and ``conv_backward`` take this path for stride-1 convs whose flipped padding
is not larger than the original output, when g' runs the direct kernel or C > O
(``_input_gradient_as_conv``).

Versions
--------
* ``*_reference``: plain NumPy loops over taps and positions, obviously correct; the tests'
  ground truth.
* CPU, float32, one group: ``conv`` runs the direct kernel of :mod:`nanogen.kernels.conv_direct`
  (forward, and stride-1 input gradients through the flipped weight); the weight gradient splits
  the batch over nanogen's threads, each with its own im2col chunks and single-threaded GEMMs
  (``_conv_weight_threads``).  GEMMs go through :func:`nanogen.kernels.blas.matmul`, which
  leaves no OpenBLAS thread spinning under those threads.
* CPU, otherwise: ``numba.njit(nogil=True, cache=True)`` loops over the (sample, channel) planes
  of a chunk, with the GEMMs between them split over the cores.  Measured on 2 cores
  (dense 3x3 64->64, 28x28, batch 64, forward + backward): cache-sized chunks with
  single-threaded kernels 106-114 ms; whole-batch chunks 140-164 ms; the kernels split over a
  pool of two Python threads 174 ms (a hand-over per chunk); ``parallel=True`` kernels were
  several times slower again when alternating with BLAS calls (numba's OpenMP workers and
  OpenBLAS's threads spin-wait after each parallel region and starve each other).
* CUDA: ``numba.cuda`` kernels, gather formulations (one thread per output element, no
  atomics): im2col one thread per column entry, col2im one thread per input element summing the
  (tap, position) pairs that read it.  They take CuPy arrays (``__cuda_array_interface__``), or
  NumPy arrays under numba's simulator (``NUMBA_ENABLE_CUDASIM=1``).
"""
from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
from numba import njit, uintp

from . import conv_direct
from . import blas
from .blas import mm, serial_blas
from ._device import array_module_of, launch
from ._threads import run_ranges, threads_for

__all__ = ["Geometry", "im2col", "col2im", "conv", "conv_transpose", "conv_weight",
           "conv_backward", "conv_transpose_backward",
           "im2col_reference", "col2im_reference", "conv_reference", "conv_transpose_reference",
           "conv_weight_reference", "weight_matrix", "adjoint_geometry", "adjoint_weight"]


# ================================================================ geometry
class Geometry(NamedTuple):
    """Everything that fixes a convolution's index maps (see the module docstring).

    ``C, H, W``: the conv's input (channels, height, width); ``O`` its output channels;
    ``pt, pb, pl, pr``: padding top, bottom, left, right; ``taps``: sorted flat kernel positions
    ``ky*kw + kx`` that may be nonzero."""
    C: int
    H: int
    W: int
    O: int
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    pt: int = 0
    pb: int = 0
    pl: int = 0
    pr: int = 0
    dh: int = 1
    dw: int = 1
    groups: int = 1
    taps: tuple = None

    @classmethod
    def make(cls, C, H, W, O, kh, kw, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
             groups=1, taps=None):
        taps = tuple(range(kh * kw)) if taps is None else tuple(sorted(int(t) for t in taps))
        return cls(int(C), int(H), int(W), int(O), int(kh), int(kw), int(stride[0]),
                   int(stride[1]), *(int(p) for p in padding), int(dilation[0]),
                   int(dilation[1]), int(groups), taps)

    @property
    def Ho(self):
        return (self.H + self.pt + self.pb - self.dh * (self.kh - 1) - 1) // self.sh + 1

    @property
    def Wo(self):
        return (self.W + self.pl + self.pr - self.dw * (self.kw - 1) - 1) // self.sw + 1

    @property
    def T(self):
        return len(self.taps)

    @property
    def Cg(self):
        return self.C // self.groups

    @property
    def Og(self):
        return self.O // self.groups

    @property
    def dense(self):
        return self.T == self.kh * self.kw

    @property
    def pointwise(self):
        """1x1, stride 1, no padding, dense: x is its own column matrix."""
        return (self.kh == self.kw == 1 and self.sh == self.sw == 1 and self.Ho == self.H
                and self.Wo == self.W and self.pt == self.pl == 0 and self.dense)


_OFFSETS = {}


def _tap_offsets(g: Geometry, xp=np):
    """(offy, offx): the input offsets ky*dh and kx*dw of each tap, as int64 arrays of ``xp``."""
    key = (g.taps, g.kw, g.dh, g.dw, xp.__name__)
    if key not in _OFFSETS:
        taps = np.asarray(g.taps, dtype=np.int64)
        _OFFSETS[key] = (xp.asarray((taps // g.kw) * g.dh), xp.asarray((taps % g.kw) * g.dw))
    return _OFFSETS[key]


# ================================================================ NumPy reference
def _tap_reads(g: Geometry, t: int):
    """For tap index t: the input rows / columns read by each output row / column, and whether
    each read falls inside the input (else it reads padding, i.e. zero)."""
    ky, kx = divmod(g.taps[t], g.kw)
    iy = np.arange(g.Ho) * g.sh - g.pt + ky * g.dh
    ix = np.arange(g.Wo) * g.sw - g.pl + kx * g.dw
    return iy, ix, (iy >= 0) & (iy < g.H), (ix >= 0) & (ix < g.W)


def _shifted(x, g, t):
    """x read through tap t: (N, C, Ho, Wo), zero where the tap falls in the padding."""
    iy, ix, vy, vx = _tap_reads(g, t)
    xs = x[:, :, np.clip(iy, 0, g.H - 1)][:, :, :, np.clip(ix, 0, g.W - 1)]
    return xs * (vy[:, None] & vx[None, :])


def im2col_reference(x, g: Geometry):
    """cols[c*T + t, n, oy*Wo + ox] = x[n, c, iy, ix] (zero in the padding), by loops."""
    N = x.shape[0]
    cols = np.zeros((g.C, g.T, N, g.Ho, g.Wo), dtype=x.dtype)
    for t in range(g.T):
        iy, ix, vy, vx = _tap_reads(g, t)
        for oy in np.flatnonzero(vy):
            for ox in np.flatnonzero(vx):
                cols[:, t, :, oy, ox] = x[:, :, iy[oy], ix[ox]].T
    return cols.reshape(g.C * g.T, N, g.Ho * g.Wo)


def col2im_reference(cols, g: Geometry):
    """The adjoint of im2col: x[n, c, iy, ix] += cols[c*T + t, n, oy*Wo + ox], by loops."""
    N = cols.shape[1]
    c5 = cols.reshape(g.C, g.T, N, g.Ho, g.Wo)
    x = np.zeros((N, g.C, g.H, g.W), dtype=cols.dtype)
    for t in range(g.T):
        iy, ix, vy, vx = _tap_reads(g, t)
        for oy in np.flatnonzero(vy):
            for ox in np.flatnonzero(vx):
                x[:, :, iy[oy], ix[ox]] += c5[:, t, :, oy, ox].T
    return x


def conv_reference(x, w, b, g: Geometry):
    """y[n, o, oy, ox] = b[o] + Σ_{c in o's group, taps t} w[o, c, t] x[n, c, iy, ix]: a sum of
    shifted copies of x, one per tap (no im2col)."""
    N = x.shape[0]
    y = np.zeros((N, g.O, g.Ho, g.Wo), dtype=np.result_type(x, w))
    for t, tap in enumerate(g.taps):
        xs = _shifted(x, g, t)
        for k in range(g.groups):
            o, c = slice(k * g.Og, (k + 1) * g.Og), slice(k * g.Cg, (k + 1) * g.Cg)
            wt = w[o, :, tap // g.kw, tap % g.kw]
            y[:, o] += np.einsum("oc,nchw->nohw", wt, xs[:, c])
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def conv_transpose_reference(y, w, b, g: Geometry):
    """The adjoint of conv_reference in x: every y[n, o, oy, ox] scatters w[o, c, t] * y onto
    x[n, c, iy, ix] (position by position)."""
    N = y.shape[0]
    x = np.zeros((N, g.C, g.H, g.W), dtype=np.result_type(y, w))
    for t, tap in enumerate(g.taps):
        iy, ix, vy, vx = _tap_reads(g, t)
        for k in range(g.groups):
            o, c = slice(k * g.Og, (k + 1) * g.Og), slice(k * g.Cg, (k + 1) * g.Cg)
            wt = w[o, :, tap // g.kw, tap % g.kw]
            for oy in np.flatnonzero(vy):
                for ox in np.flatnonzero(vx):
                    x[:, c, iy[oy], ix[ox]] += y[:, o, oy, ox] @ wt
    if b is not None:
        x += b.reshape(1, -1, 1, 1)
    return x


def conv_weight_reference(x, gy, g: Geometry):
    """gw[o, c, ky, kx] = Σ_{n, oy, ox} gy[n, o, oy, ox] x[n, c, iy, ix] on the taps, 0 elsewhere."""
    gw = np.zeros((g.O, g.Cg, g.kh, g.kw), dtype=np.result_type(x, gy))
    for t, tap in enumerate(g.taps):
        xs = _shifted(x, g, t)
        for k in range(g.groups):
            o, c = slice(k * g.Og, (k + 1) * g.Og), slice(k * g.Cg, (k + 1) * g.Cg)
            gw[o, :, tap // g.kw, tap % g.kw] = np.einsum("nohw,nchw->oc", gy[:, o], xs[:, c])
    return gw


# ================================================================ CPU (numba, nogil, plane ranges)
@njit(inline="always")
def _valid_range(off, stride, size, n_out):
    """The outputs i in [lo, hi) with 0 <= i*stride + off < size."""
    lo = 0 if off >= 0 else (-off + stride - 1) // stride
    hi = 0 if size - 1 - off < 0 else (size - 1 - off) // stride + 1
    hi = min(hi, n_out)
    return min(lo, hi), hi


@njit(inline="always")
def _block(off, dy, Ho, Wo, H, W):
    """Stride 1 with Wo == W: the output rows [oy0, oy1) that read inside the input, and the
    contiguous run k in [k0, k1) of  dst[oy0*Wo + k] <-> src[s + k]  that stays inside it (its
    out-of-row reads, at ox < lo or ox >= hi, are fixed up afterwards)."""
    oy0, oy1 = max(0, -dy), min(Ho, H - dy)
    s = (oy0 + dy) * W + off
    k0, k1 = max(0, -s), min((oy1 - oy0) * Wo, H * W - s)
    return oy0, oy1, s, k0, k1


@njit(inline="always")
def _zero(a, start, stop):
    for i in range(start, stop):
        a[uintp(i)] = 0


@njit(inline="always")
def _tap_ranges(offy, offx, pt, pl, Ho, Wo, H, W, sw, block):
    """Per tap, computed once per call rather than once per plane: the valid output columns
    [lo, hi), and for the block path the valid output rows [oy0, oy1) and the shifted run
    (s, k0, k1) (rows emptied when the tap reads only padding)."""
    T = offy.shape[0]
    lo, hi = np.empty(T, np.int64), np.empty(T, np.int64)
    oy0, oy1, s = np.zeros(T, np.int64), np.zeros(T, np.int64), np.zeros(T, np.int64)
    k0, k1 = np.zeros(T, np.int64), np.zeros(T, np.int64)
    for t in range(T):
        lo[t], hi[t] = _valid_range(offx[t] - pl, sw, W, Wo)
        if block:
            a, b, st, c, d = _block(offx[t] - pl, offy[t] - pt, Ho, Wo, H, W)
            if b > a and hi[t] > lo[t]:
                oy0[t], oy1[t], s[t], k0[t], k1[t] = a, b, st, c, d
    return lo, hi, oy0, oy1, s, k0, k1


@njit(nogil=True, cache=True)
def _im2col_planes(x, cols, offy, offx, sh, sw, pt, pl, Ho, Wo):
    """cols[c*T + t, n, :] for every plane (n, c) of x.

    Flat arrays indexed with unsigned ints: numba then drops its negative-index wrap-around
    test, LLVM vectorises the copies, and short rows (a 7-wide stride-2 output) cost little
    (both about 1.6-2x faster than views or signed indices).  For stride 1 with Wo == W (a
    "same" conv) a tap's whole column is ONE shifted copy of the plane, after which the few
    entries that wrapped around a row edge are zeroed."""
    N, C, H, W = x.shape
    T = offy.shape[0]
    P = Ho * Wo
    xf, cf = x.ravel(), cols.ravel()
    block = sh == 1 and sw == 1 and Wo == W
    lo, hi, oy0, oy1, s, k0, k1 = _tap_ranges(offy, offx, pt, pl, Ho, Wo, H, W, sw, block)
    for q in range(N * C):
        c = q // N
        n = q - c * N
        xb = (n * C + c) * H * W
        for t in range(T):
            cb = ((c * T + t) * N + n) * P
            off = offx[t] - pl
            if block:
                _zero(cf, cb, cb + oy0[t] * Wo)
                _zero(cf, cb + oy1[t] * Wo, cb + P)
                if oy1[t] > oy0[t]:
                    d, r = cb + oy0[t] * Wo, xb + s[t]
                    for k in range(k0[t], k1[t]):
                        cf[uintp(d + k)] = xf[uintp(r + k)]
                    for oy in range(oy0[t], oy1[t]):
                        _zero(cf, cb + oy * Wo, cb + oy * Wo + lo[t])
                        _zero(cf, cb + oy * Wo + hi[t], cb + (oy + 1) * Wo)
                continue
            for oy in range(Ho):
                iy = oy * sh - pt + offy[t]
                b = cb + oy * Wo
                if iy < 0 or iy >= H or hi[t] == lo[t]:
                    _zero(cf, b, b + Wo)
                    continue
                _zero(cf, b, b + lo[t])
                _zero(cf, b + hi[t], b + Wo)
                r = xb + iy * W + off
                for i in range(lo[t], hi[t]):
                    cf[uintp(b + i)] = xf[uintp(r + i * sw)]


@njit(nogil=True, cache=True)
def _col2im_planes(cols, x, offy, offx, sh, sw, pt, pl, Ho, Wo, clobber):
    """x[n, c] = Σ_t (tap t's columns scattered back), for every plane (n, c) of x: the
    scatter-add of the adjoint, plane by plane.

    With ``clobber`` (cols is scratch), stride 1 and Wo == W, the entries of a tap's column that
    read padding are zeroed first and the column is then added back as ONE shifted run."""
    N, C, H, W = x.shape
    T = offy.shape[0]
    P = Ho * Wo
    xf, cf = x.ravel(), cols.ravel()
    block = clobber and sh == 1 and sw == 1 and Wo == W
    lo, hi, oy0, oy1, s, k0, k1 = _tap_ranges(offy, offx, pt, pl, Ho, Wo, H, W, sw, block)
    for q in range(N * C):
        c = q // N
        n = q - c * N
        xb = (n * C + c) * H * W
        _zero(xf, xb, xb + H * W)
        for t in range(T):
            if hi[t] == lo[t]:
                continue
            cb = ((c * T + t) * N + n) * P
            if block:
                if oy1[t] <= oy0[t]:
                    continue
                for oy in range(oy0[t], oy1[t]):
                    _zero(cf, cb + oy * Wo, cb + oy * Wo + lo[t])
                    _zero(cf, cb + oy * Wo + hi[t], cb + (oy + 1) * Wo)
                d, r = cb + oy0[t] * Wo, xb + s[t]
                for k in range(k0[t], k1[t]):
                    xf[uintp(r + k)] += cf[uintp(d + k)]
                continue
            off = offx[t] - pl
            for oy in range(Ho):
                iy = oy * sh - pt + offy[t]
                if iy < 0 or iy >= H:
                    continue
                b = cb + oy * Wo
                r = xb + iy * W + off
                for i in range(lo[t], hi[t]):
                    xf[uintp(r + i * sw)] += cf[uintp(b + i)]


# ================================================================ CUDA (numba.cuda, built lazily)
_CUDA = {}
cuda = None     # numba.cuda once a CUDA kernel is needed (a module global, so that numba's
#                 simulator can swap in its fake module when a kernel runs)


def _cuda_kernels():
    global cuda
    if not _CUDA:
        from numba import cuda

        @cuda.jit
        def im2col_k(x, cols, offy, offx, sh, sw, pt, pl, Wo):
            """One thread per column entry cols[r, n, p]: a gather from x."""
            R, N, P = cols.shape
            H, W = x.shape[2], x.shape[3]
            T = offy.shape[0]
            i = cuda.grid(1)
            if i >= R * N * P:
                return
            p = i % P
            j = i // P
            n = j % N
            r = j // N
            c = r // T
            t = r - c * T
            oy = p // Wo
            ox = p - oy * Wo
            iy = oy * sh - pt + offy[t]
            ix = ox * sw - pl + offx[t]
            if iy >= 0 and iy < H and ix >= 0 and ix < W:
                cols[r, n, p] = x[n, c, iy, ix]
            else:
                cols[r, n, p] = 0

        @cuda.jit
        def col2im_k(cols, x, offy, offx, sh, sw, pt, pl, Ho, Wo, zero):
            """One thread per input element x[n, c, iy, ix]: sums the (tap, output position)
            pairs that read it, oy*sh = iy + top - ky*dh (and likewise for x)."""
            N, C, H, W = x.shape
            T = offy.shape[0]
            i = cuda.grid(1)
            if i >= N * C * H * W:
                return
            ix = i % W
            j = i // W
            iy = j % H
            j = j // H
            c = j % C
            n = j // C
            acc = zero
            for t in range(T):
                ty = iy + pt - offy[t]
                tx = ix + pl - offx[t]
                if ty < 0 or tx < 0:
                    continue
                oy = ty // sh
                ox = tx // sw
                if oy * sh != ty or ox * sw != tx or oy >= Ho or ox >= Wo:
                    continue
                acc += cols[c * T + t, n, oy * Wo + ox]
            x[n, c, iy, ix] = acc

        _CUDA["im2col"], _CUDA["col2im"] = im2col_k, col2im_k
    return _CUDA


# ================================================================ im2col / col2im, per device
def im2col(x, g: Geometry, out=None, device="cpu"):
    """cols (C*T, N, Ho*Wo) of x (N, C, H, W); see the module docstring.  ``device`` "cpu" runs
    the numba CPU kernel, "cuda" the numba.cuda one (CuPy arrays, or NumPy under the
    simulator)."""
    xp = array_module_of(x, device)
    N = x.shape[0]
    P = g.Ho * g.Wo
    if out is None:
        out = xp.empty((g.C * g.T, N, P), dtype=x.dtype)
    x = xp.ascontiguousarray(x)
    offy, offx = _tap_offsets(g, xp)
    if device == "cuda":
        launch(_cuda_kernels()["im2col"], out.size, x, out, offy, offx, g.sh, g.sw, g.pt,
                g.pl, g.Wo)
    else:
        _im2col_planes(x, out, offy, offx, g.sh, g.sw, g.pt, g.pl, g.Ho, g.Wo)
    return out


def col2im(cols, g: Geometry, out=None, device="cpu", overwrite_cols=False):
    """x (N, C, H, W) = the adjoint of im2col applied to cols (C*T, N, Ho*Wo).  With
    ``overwrite_cols`` the CPU kernel may zero entries of cols (scratch) to take a faster path."""
    xp = array_module_of(cols, device)
    N = cols.shape[1]
    if out is None:
        out = xp.empty((N, g.C, g.H, g.W), dtype=cols.dtype)
    cols = xp.ascontiguousarray(cols)
    offy, offx = _tap_offsets(g, xp)
    if device == "cuda":
        launch(_cuda_kernels()["col2im"], out.size, cols, out, offy, offx, g.sh, g.sw, g.pt,
                g.pl, g.Ho, g.Wo, cols.dtype.type(0))
    else:
        _col2im_planes(cols, out, offy, offx, g.sh, g.sw, g.pt, g.pl, g.Ho, g.Wo,
                       bool(overwrite_cols))
    return out


# ================================================================ the GEMM drivers
CHUNK_BYTES = {"cpu": 8 << 20, "cuda": 1 << 30}    # column matrix per chunk
KEEP_COLS_BYTES = 16 << 20  # a conv's forward keeps im2col(x) for its weight gradient up to this


def weight_matrix(w, g: Geometry):
    """w (O, Cg, kh, kw) on the taps as the per-group GEMM operand (G, Og, Cg*T); a free view
    for a dense contiguous weight, a small gather otherwise."""
    if g.dense:
        return w.reshape(g.groups, g.Og, g.Cg * g.T)
    xp = array_module_of(w)
    taps = xp.asarray(np.asarray(g.taps, dtype=np.int64))
    return w.reshape(g.O, g.Cg, g.kh * g.kw)[:, :, taps].reshape(g.groups, g.Og, g.Cg * g.T)


def _chunk(N, g: Geometry, itemsize, device):
    per_sample = g.C * g.T * g.Ho * g.Wo * itemsize
    return max(1, min(N, CHUNK_BYTES["cuda" if device == "cuda" else "cpu"] // max(per_sample, 1)))


_WORKSPACE = threading.local()
KEEP_BYTES = 128 << 20      # largest scratch array kept for reuse (per thread, slot and dtype)


def _buffer(xp, n, dtype, slot):
    """A flat scratch array of n elements, reused across calls (per thread, slot and dtype) up
    to KEEP_BYTES: a fresh 100 MB array costs about as much in page faults as filling it."""
    dtype = np.dtype(dtype)
    if xp is not np or n * dtype.itemsize > KEEP_BYTES:
        return xp.empty(n, dtype=dtype)       # (CuPy's memory pool already recycles)
    pool = _WORKSPACE.__dict__.setdefault("buffers", {})
    buf = pool.get((slot, dtype.str))
    if buf is None or buf.size < n:
        buf = pool[(slot, dtype.str)] = np.empty(n, dtype=dtype)
    return buf[:n]


def _gemm(xp, a, b, out=None):
    """Per-group products a[k] @ b[k] of stacks (G, ., .), as 2-D GEMMs: NumPy's stacked matmul
    is up to 2x slower than its 2-D one for a transposed operand.  An inner dimension of 1 (the
    input gradient of a conv with one output channel) is an outer product, done as a broadcast
    multiply: BLAS runs it at about 1 GFLOPS."""
    if out is None:
        out = xp.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=a.dtype)
    product = xp.multiply if a.shape[2] == 1 else blas.matmul_of(xp)
    for k in range(a.shape[0]):
        product(a[k], b[k], out=out[k])
    return out


def _engine(g: Geometry, device, x=None, w=None, gy=None, b=None, conv=False, conv_t=False,
            weight=False, keep_cols=False, cols_in=None):
    """The three GEMM drivers in one chunk loop, so that ops needed together share work:

    * ``conv``    y  = W @ im2col(x) (+ b)    (needs x, w)    -> (N, O, Ho, Wo)
    * ``conv_t``  gx = col2im(Wᵀ @ gy)        (needs gy, w)   -> (N, C, H, W)
    * ``weight``  gw = gy @ im2col(x)ᵀ         (needs x, gy)   -> (O, Cg, kh, kw)

    Per chunk of samples, im2col(x) is computed once for ``conv`` and ``weight`` (the backward
    of conv_transpose needs both), and gy is transposed to (O, n, P) once for ``conv_t`` and
    ``weight`` (the backward of conv needs both).  Returns the requested results in that order.

    Layout choices (OpenBLAS, 2 cores, float32):

    * y leaves the GEMM as (O, n, P) and is copied to (n, O, P) one cached chunk at a time; the
      bias is added in that same copy (no second pass over y).
    * the weight gradient is accumulated TRANSPOSED, gwᵀ (K, Og) = im2col(x) @ gyᵀ, and turned
      back once at the end: with the long contraction over (n, P), OpenBLAS runs this
      orientation faster than gy @ im2col(x)ᵀ -- 5-12% single-threaded, and in the U-Net step
      (Og = 32, 64) 115-140 GFLOPS instead of 62-110.

    ``keep_cols``: when im2col(x) of the whole batch fits in ``KEEP_COLS_BYTES``, do it in one
    chunk into a fresh array and return it last (else None); ``cols_in`` is such an array,
    used instead of recomputing im2col(x) (a conv's forward hands it to its weight gradient).
    """
    a = x if x is not None else gy
    xp, dtype, N = array_module_of(a, device), a.dtype, a.shape[0]
    G, Og, Cg, P, K = g.groups, g.Og, g.Cg, g.Ho * g.Wo, g.Cg * g.T
    wm = weight_matrix(w, g) if w is not None else None
    wmt = wm.transpose(0, 2, 1) if conv_t else None     # Wᵀ (G, K, Og), a view
    kept = gwt = gw = None
    y = xp.empty((N, g.O, g.Ho, g.Wo), dtype=dtype) if conv else None
    gx = xp.empty((N, g.C, g.H, g.W), dtype=dtype) if conv_t else None
    if x is not None:
        x = xp.ascontiguousarray(x)
    if g.pointwise:                     # x is its own column matrix: (N, G, Cg, P)
        if conv:
            blas.matmul_of(xp)(wm, x.reshape(N, G, Cg, P), out=y.reshape(N, G, Og, P))
            if b is not None:
                y += b.reshape(1, -1, 1, 1)
        if conv_t:
            blas.matmul_of(xp)(wmt, gy.reshape(N, G, Og, P), out=gx.reshape(N, G, Cg, P))
        if weight and N:
            gwt = blas.matmul_of(xp)(x.reshape(N, G, Cg, P),
                            gy.reshape(N, G, Og, P).transpose(0, 1, 3, 2)).sum(0)
    else:
        whole = G * K * N * P
        keep = keep_cols and whole * dtype.itemsize <= KEEP_COLS_BYTES
        nb = N if keep or cols_in is not None else _chunk(N, g, dtype.itemsize, device)
        cbuf = xp.empty(whole, dtype) if keep else _buffer(xp, G * K * nb * P, dtype, "cols")
        if keep:
            kept = cbuf.reshape(G * K, N, P)
        tbuf = _buffer(xp, g.O * nb * P, dtype, "out")
        for n0 in range(0, N, nb):
            m = min(nb, N - n0)
            cols = cbuf[:G * K * m * P].reshape(G, K, m * P)
            yt = tbuf[:g.O * m * P].reshape(G, Og, m * P)
            if conv_t or weight:        # gy chunk as (O, n, P): the sample axis into the GEMM
                yt.reshape(g.O, m, P)[...] = gy[n0:n0 + m].reshape(m, g.O, P).transpose(1, 0, 2)
            if conv_t:
                _gemm(xp, wmt, yt, out=cols)
                col2im(cols.reshape(G * K, m, P), g, out=gx[n0:n0 + m], device=device,
                       overwrite_cols=True)
            if cols_in is not None:
                cols = cols_in.reshape(G, K, m * P)
            elif conv or weight:
                im2col(x[n0:n0 + m], g, out=cols.reshape(G * K, m, P), device=device)
            if weight:
                part = _gemm(xp, cols, yt.transpose(0, 2, 1))
                gwt = part if gwt is None else xp.add(gwt, part, out=gwt)
            if conv:
                _gemm(xp, wm, cols, out=yt)
                dst = y[n0:n0 + m].reshape(m, g.O, P)
                src = yt.reshape(g.O, m, P).transpose(1, 0, 2)
                if b is None:
                    dst[...] = src
                else:
                    xp.add(src, b.reshape(1, -1, 1), out=dst)
    if weight:
        gw = _weight_from_transposed(
            xp.zeros((G, K, Og), dtype=dtype) if gwt is None else gwt, g)
    return tuple(r for r, want in ((y, conv), (gx, conv_t), (gw, weight)) if want) + \
        ((kept,) if keep_cols else ())


def _weight_from_transposed(gwt, g: Geometry):
    """The weight gradient (O, Cg, kh, kw) from its transpose per group, gwt (G, Cg*T, Og):
    zero outside the taps."""
    xp = array_module_of(gwt)
    gw = gwt.transpose(0, 2, 1)
    if g.dense:
        return xp.ascontiguousarray(gw).reshape(g.O, g.Cg, g.kh, g.kw)
    full = xp.zeros((g.O, g.Cg, g.kh * g.kw), dtype=gwt.dtype)
    full[:, :, xp.asarray(np.asarray(g.taps, dtype=np.int64))] = gw.reshape(g.O, g.Cg, g.T)
    return full.reshape(g.O, g.Cg, g.kh, g.kw)


WEIGHT_CHUNK_BYTES = 1 << 20    # column matrix per chunk of the threaded weight gradient


@njit(nogil=True, cache=True)
def _weight_samples(x, gy, offy, offx, sh, sw, pt, pl, m, cols, yt, gwt, n0, n1):
    """gwt (K, O) += im2col(x[n0:n1]) @ gy[n0:n1]ᵀ, with gy as (O, n*P): m samples at a time,
    so that the column matrix stays in this core's cache between im2col and the GEMM."""
    O, Ho, Wo = gy.shape[1], gy.shape[2], gy.shape[3]
    P = Ho * Wo
    K = gwt.shape[0]
    for s in range(n0, n1, m):
        cnt = min(m, n1 - s)
        c = cols[:K * cnt * P].reshape(K, cnt, P)
        _im2col_planes(x[s:s + cnt], c, offy, offx, sh, sw, pt, pl, Ho, Wo)
        t = yt[:O * cnt * P].reshape(O, cnt, P)
        for j in range(cnt):
            t[:, j, :] = gy[s + j].reshape(O, P)
        mm(c.reshape(K, cnt * P), False, t.reshape(O, cnt * P), True, gwt, 1.0)


def _conv_weight_threads(x, gy, g: Geometry):
    """conv_weight on the CPU for one group: the batch split over the cores, each thread with
    its own im2col chunks, single-threaded GEMMs and accumulator; the accumulators summed."""
    N, P, K = x.shape[0], g.Ho * g.Wo, g.C * g.T
    m = max(1, min(N, WEIGHT_CHUNK_BYTES // max(K * P * x.itemsize, 1)))
    k = max(1, min(threads_for(N * P * K * g.O), N))
    cols = np.empty((k, K * m * P), dtype=x.dtype)
    yt = np.empty((k, g.O * m * P), dtype=x.dtype)
    gwt = np.zeros((k, K, g.O), dtype=x.dtype)
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    offy, offx = _tap_offsets(g)
    with serial_blas(x.dtype):
        run_ranges(_weight_samples, N, k, lambda i: (x, gy, offy, offx, g.sh, g.sw, g.pt, g.pl,
                                                       m, cols[i], yt[i], gwt[i]))
    return _weight_from_transposed(gwt.sum(0)[None], g)


def conv(x, w, b, g: Geometry, device="cpu", keep_cols=False):
    """y = conv(x, w) + b: (N, C, H, W) -> (N, O, Ho, Wo); per group y_g = W_g @ im2col(x)_g.
    With ``keep_cols`` returns (y, cols): im2col(x) when small enough to keep, else None."""
    if _direct(g, x.dtype, device):
        y = conv_direct.conv(x, w, b, g, _tap_offsets(g))
        return (y, None) if keep_cols else y
    y, *cols = _engine(g, device, x=x, w=w, b=b, conv=True, keep_cols=keep_cols)
    return (y, cols[0]) if keep_cols else y


def adjoint_geometry(g: Geometry):
    """The geometry g' of a stride-1 conv's transpose as a conv (see the module docstring):
    input y (O channels, Ho x Wo), output C channels of H x W, flipped taps and padding."""
    if (g.sh, g.sw) != (1, 1):
        raise ValueError(f"adjoint_geometry needs stride 1, got ({g.sh}, {g.sw})")
    flipped = ((g.kh - 1 - t // g.kw) * g.kw + (g.kw - 1 - t % g.kw) for t in g.taps)
    ey, ex = g.dh * (g.kh - 1), g.dw * (g.kw - 1)
    return Geometry.make(g.O, g.Ho, g.Wo, g.C, g.kh, g.kw, (1, 1),
                         (ey - g.pt, ey - g.pb, ex - g.pl, ex - g.pr), (g.dh, g.dw), g.groups,
                         flipped)


def adjoint_weight(w, g: Geometry):
    """w' (C, O/groups, kh, kw) with w'[c, o, ky', kx'] = w[o, c, kh-1-ky', kw-1-kx'], per
    group: the weight of conv_transpose(., w, g) as a conv on ``adjoint_geometry(g)``."""
    xp = array_module_of(w)
    wg = w.reshape(g.groups, g.Og, g.Cg, g.kh, g.kw)[:, :, :, ::-1, ::-1]
    return xp.ascontiguousarray(wg.transpose(0, 2, 1, 3, 4)).reshape(g.C, g.Og, g.kh, g.kw)


def _direct(g: Geometry, dtype, device):
    """Whether conv(x, w) on g runs the direct kernel (:mod:`nanogen.kernels.conv_direct`)
    rather than im2col + GEMM: on the CPU, for the geometries and dtype it supports; a 1x1
    conv is a GEMM on x itself either way."""
    return device == "cpu" and not g.pointwise and conv_direct.supported(g, dtype)


def _input_gradient_as_conv(g: Geometry, dtype, device):
    """Whether conv_transpose(y, w, g) is computed as conv(y, w', g') (see the module
    docstring): stride 1, g' pads y by no more than a "same" conv would (its FLOPs are then the
    original conv's, up to 25% of border), and either the direct kernel runs g' or C > O."""
    if (g.sh, g.sw) != (1, 1) or g.pointwise:
        return False
    ey, ex = g.dh * (g.kh - 1), g.dw * (g.kw - 1)
    if min(ey - g.pt, ey - g.pb, ex - g.pl, ex - g.pr) < 0 or 4 * g.H * g.W > 5 * g.Ho * g.Wo:
        return False
    return g.C > g.O or _direct(adjoint_geometry(g), dtype, device)


def conv_transpose(y, w, b, g: Geometry, device="cpu"):
    """x = conv_transpose(y, w) + b: (N, O, Ho, Wo) -> (N, C, H, W), the adjoint of conv in x;
    per group x_g = col2im(W_gᵀ @ y_g), or conv(y, w') when that is cheaper
    (``_input_gradient_as_conv``)."""
    if _input_gradient_as_conv(g, y.dtype, device):
        return conv(y, adjoint_weight(w, g), b, adjoint_geometry(g), device)
    (x,) = _engine(g, device, w=w, gy=y, conv_t=True)
    if b is not None:
        x += b.reshape(1, -1, 1, 1)
    return x


def conv_weight(x, gy, g: Geometry, device="cpu", cols=None):
    """gw (O, Cg, kh, kw) = Σ_n gy_g @ im2col(x)_gᵀ per group: the weight-gradient of conv,
    zero outside the taps (``cols``: im2col(x) kept by the forward, if any).  On the CPU, for
    one group, the batch is split over the cores (``_conv_weight_threads``)."""
    if device == "cpu" and g.groups == 1 and cols is None:
        return _conv_weight_threads(x, gy, g)
    return _engine(g, device, x=x, gy=gy, weight=True, cols_in=cols)[0]


def conv_backward(x, w, gy, g: Geometry, device="cpu", cols=None):
    """(conv_transpose(gy, w), conv_weight(x, gy)): conv's input and weight gradients, sharing
    the transposed gy (and im2col(x) kept by the forward, if any); the input gradient as a conv
    of its own when that is cheaper (``_input_gradient_as_conv``)."""
    if _input_gradient_as_conv(g, gy.dtype, device):
        return conv_transpose(gy, w, None, g, device), conv_weight(x, gy, g, device, cols)
    return _engine(g, device, x=x, w=w, gy=gy, conv_t=True, weight=True, cols_in=cols)


def conv_transpose_backward(g_out, w, y, g: Geometry, device="cpu"):
    """(conv(g_out, w), conv_weight(g_out, y)): conv_transpose's input and weight gradients,
    sharing im2col(g_out) -- or with the direct kernel for the first (``_direct``)."""
    if _direct(g, g_out.dtype, device):
        return conv(g_out, w, None, g, device), conv_weight(g_out, y, g, device)
    return _engine(g, device, x=g_out, w=w, gy=y, conv=True, weight=True)
