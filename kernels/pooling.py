"""Pooling kernels: max pooling (values and argmax; the gradient scattered back to the argmax)
and window averages (average pooling, adaptive average pooling, and their adjoint).

Windows
-------
Every op here works on planes: an input ``x`` of shape (B, H, W) (B = N·C, contiguous) and an
output of shape (B, Ho, Wo).  The windows are *separable*: output (oh, ow) reads the rows of
``[hs[oh], he[oh])`` and the columns of ``[ws[ow], we[ow])``, so one pair of per-axis arrays
describes max pooling, average pooling and the adaptive variants alike:

    max / avg pool:  start[o] = o·stride - padding,  stop[o] = start[o] + dilation·(k - 1) + 1
    adaptive:        start[o] = ⌊o·n / m⌋,           stop[o] = ⌈(o + 1)·n / m⌉     (n in, m out)

Both are non-decreasing in o, so the outputs whose window contains a given input position i
form a contiguous range ``[lo[i], hi[i])`` (:func:`covering_range`).  That is what lets the
adjoints be written as *gathers*: one thread per input element sums over its covering outputs
(deterministic, no atomics), instead of scattering each output back over its window.

Max pooling (``dh``, ``dw`` = dilation)::

    y[b, oh, ow]   = max over ih ∈ {hs, hs + dh, ...} ∩ [0, H), iw likewise, of x[b, ih, iw]
    idx[b, oh, ow] = ih·W + iw of the first maximum in row-major window order (PyTorch's ties);
                     a NaN wins (and propagates), as in PyTorch
    backward:  gx[b, i] = Σ_{o : idx[b, o] = i} gy[b, o]      (scatter to the argmax)

A window that lies wholly in the padding (a tiny input with dilation) gives -inf and PyTorch's
index of its first non-negative tap, which may lie outside the plane: the scatter skips it.

Window averages (clipped windows, per-axis weights rh, rw)::

    y[b, oh, ow]  = rh[oh] · rw[ow] · Σ_{ih ∈ [hs, he)} Σ_{iw ∈ [ws, we)} x[b, ih, iw]
    adjoint:  gx[b, ih, iw] = Σ_{oh ∈ [lh[ih], uh[ih])} rh[oh] Σ_{ow ∈ [lw[iw], uw[iw])}
                                   rw[ow] gy[b, oh, ow]

Average pooling's divisor is separable too (count_include_pad: the window size clipped to the
padded input; otherwise clipped to the input), so rh = 1 / count_h and rw = 1 / count_w; a
``divisor_override`` d is rh = 1/d, rw = 1; an empty window (possible with ceil_mode) has
weight 0 and gives 0, as in PyTorch.  On the CPU the adjoint is written as the scatter it is
(one thread owns a plane, so nothing races), and a global average (one window over the whole
plane) is a matrix-vector product.

Versions: ``*_reference`` (plain NumPy, from PyTorch's parameters: the ground truth),
``*_cpu`` (numba.njit, parallel over planes) and ``*_cuda`` (numba.cuda, one thread per output
element -- or per input element for the adjoints).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# (resample.py imports these three from here)
from ._device import array_module_of, cuda_kernels, launch  # noqa: F401

__all__ = ["pool_output_size", "pool_windows", "avg_pool_windows", "adaptive_windows",
           "nonempty_windows", "covering_range", "array_module_of", "launch", "cuda_kernels",
           "max_pool2d_reference", "max_pool2d_backward_reference", "avg_pool2d_reference",
           "adaptive_avg_pool2d_reference", "adaptive_max_pool2d_reference",
           "window_avg_adjoint_reference",
           "max_pool_cpu", "max_scatter_cpu", "window_avg_cpu", "window_avg_adjoint_cpu",
           "max_pool_cuda", "max_scatter_cuda", "window_avg_cuda", "window_avg_adjoint_cuda"]


# ================================================================ windows (host-side index maths)
def pool_output_size(n, kernel, stride, padding, dilation=1, ceil_mode=False):
    """PyTorch's pooling output length: ⌊(n + 2p - d(k-1) - 1) / s⌋ + 1 (⌈·⌉ with ceil_mode,
    dropping a last window that would start in the right padding)."""
    span = n + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= n + padding:
        out -= 1
    return out


def pool_windows(n, out, kernel, stride, padding, dilation=1):
    """Unclipped windows of (max) pooling: start may be negative (padding), stop may pass n."""
    start = np.arange(out, dtype=np.int64) * stride - padding
    return start, start + dilation * (kernel - 1) + 1


def avg_pool_windows(n, out, kernel, stride, padding, count_include_pad=True,
                     divisor_override=None, first_axis=True):
    """Clipped windows and weights of average pooling along one axis.

    The padded count is ``min(start + k, n + p) - start`` (a ceil_mode window may hang past the
    padding); the weight is 1 / count (padded or clipped), 1 / divisor_override on the first
    axis and 1 on the second when a divisor is given, and 0 for an empty window."""
    start = np.arange(out, dtype=np.int64) * stride - padding
    stop = np.minimum(start + kernel, n + padding)
    padded = stop - start
    start, stop = np.clip(start, 0, n), np.clip(stop, 0, n)
    count = stop - start
    if divisor_override is not None:
        weight = np.full(out, 1.0 / divisor_override if first_axis else 1.0)
    else:
        weight = 1.0 / np.maximum(padded if count_include_pad else count, 1)
    weight[count == 0] = 0.0
    return start, stop, weight


def _first_valid(start, step):
    """The first position of start, start + step, ... that is >= 0."""
    return start if start >= 0 else start + ((-start + step - 1) // step) * step


def adaptive_windows(n, out):
    """Adaptive pooling windows: [⌊o·n/m⌋, ⌈(o+1)·n/m⌉)."""
    o = np.arange(out, dtype=np.int64)
    return (o * n) // out, -((-(o + 1) * n) // out)


def nonempty_windows(start, stop, n, dilation=1):
    """Whether each window start, start + d, ... (< stop) has a position inside [0, n)."""
    first = np.array([_first_valid(int(s), dilation) for s in start], dtype=np.int64)
    return first < np.minimum(stop, n)


def covering_range(start, stop, n):
    """For non-decreasing windows [start[o], stop[o]): the outputs o whose window contains
    position i are exactly lo[i] <= o < hi[i]."""
    i = np.arange(n, dtype=np.int64)
    lo = np.searchsorted(stop, i, side="right")     # first o with stop[o] > i
    hi = np.searchsorted(start, i, side="right")    # first o with start[o] > i
    return lo.astype(np.int64), np.maximum(hi, lo).astype(np.int64)


# ================================================================ references (plain NumPy)
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def max_pool2d_reference(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(y, idx) of max pooling an (N, C, H, W) array, from PyTorch's parameters."""
    (kh, kw), (ph, pw), (dh, dw) = _pair(kernel_size), _pair(padding), _pair(dilation)
    sh, sw = _pair(stride) if stride is not None else (kh, kw)
    N, C, H, W = x.shape
    Ho = pool_output_size(H, kh, sh, ph, dh, ceil_mode)
    Wo = pool_output_size(W, kw, sw, pw, dw, ceil_mode)
    y = np.empty((N, C, Ho, Wo), x.dtype)
    idx = np.empty((N, C, Ho, Wo), np.int64)
    for oh in range(Ho):
        rows = [oh * sh - ph + j * dh for j in range(kh)]
        for ow in range(Wo):
            cols = [ow * sw - pw + j * dw for j in range(kw)]
            taps = [(r, c) for r in rows for c in cols if 0 <= r < H and 0 <= c < W]
            # an empty window (all padding) gives -inf and PyTorch's index of its first
            # non-negative tap position
            first = (_first_valid(rows[0], dh), _first_valid(cols[0], dw))
            _max_over(x, taps, first, W, y[:, :, oh, ow], idx[:, :, oh, ow])
    return y, idx


def _max_over(x, taps, first, W, y, idx):
    """First maximum (NaN wins) over the (row, col) taps, in their order, for every plane."""
    best = np.full(x.shape[:2], -np.inf, dtype=x.dtype)
    first = taps[0] if taps else first
    arg = np.full(x.shape[:2], first[0] * W + first[1], dtype=np.int64)
    for r, c in taps:
        v = x[:, :, r, c]
        take = (v > best) | np.isnan(v)
        best = np.where(take, v, best)
        arg = np.where(take, r * W + c, arg)
    y[...] = best
    idx[...] = arg


def max_pool2d_backward_reference(gy, idx, H, W):
    """gx of shape (N, C, H, W): each gy[n, c, o] added at its plane's flat index idx[n, c, o]
    (for pooling without empty windows)."""
    N, C = gy.shape[:2]
    gx = np.zeros((N, C, H * W), gy.dtype)
    for n in range(N):
        for c in range(C):
            np.add.at(gx[n, c], idx[n, c].reshape(-1), gy[n, c].reshape(-1))
    return gx.reshape(N, C, H, W)


def avg_pool2d_reference(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                         count_include_pad=True, divisor_override=None):
    """Average pooling of an (N, C, H, W) array, following PyTorch's CPU kernel literally."""
    (kh, kw), (ph, pw) = _pair(kernel_size), _pair(padding)
    sh, sw = _pair(stride) if stride is not None else (kh, kw)
    N, C, H, W = x.shape
    Ho = pool_output_size(H, kh, sh, ph, 1, ceil_mode)
    Wo = pool_output_size(W, kw, sw, pw, 1, ceil_mode)
    y = np.zeros((N, C, Ho, Wo), x.dtype)
    for oh in range(Ho):
        for ow in range(Wo):
            h0, w0 = oh * sh - ph, ow * sw - pw
            h1, w1 = min(h0 + kh, H + ph), min(w0 + kw, W + pw)
            pool_size = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
            if h0 >= h1 or w0 >= w1:
                continue
            if divisor_override is not None:
                div = divisor_override
            else:
                div = pool_size if count_include_pad else (h1 - h0) * (w1 - w0)
            y[:, :, oh, ow] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / div
    return y


def _adaptive_loops(x, output_size, reduce):
    N, C, H, W = x.shape
    Ho, Wo = output_size
    out = []
    for oh in range(Ho):
        h0, h1 = math.floor(oh * H / Ho), math.ceil((oh + 1) * H / Ho)
        for ow in range(Wo):
            w0, w1 = math.floor(ow * W / Wo), math.ceil((ow + 1) * W / Wo)
            out.append(reduce(h0, h1, w0, w1))
    return out


def adaptive_avg_pool2d_reference(x, output_size):
    N, C = x.shape[:2]
    vals = _adaptive_loops(x, output_size, lambda h0, h1, w0, w1:
                           x[:, :, h0:h1, w0:w1].mean(axis=(2, 3)))
    return np.stack(vals, axis=-1).reshape(N, C, *output_size).astype(x.dtype)


def adaptive_max_pool2d_reference(x, output_size):
    N, C, H, W = x.shape

    def reduce(h0, h1, w0, w1):
        y = np.empty((N, C), x.dtype)
        i = np.empty((N, C), np.int64)
        _max_over(x, [(r, c) for r in range(h0, h1) for c in range(w0, w1)], None, W, y, i)
        return y, i
    vals = _adaptive_loops(x, output_size, reduce)
    y = np.stack([v for v, _ in vals], axis=-1).reshape(N, C, *output_size)
    i = np.stack([j for _, j in vals], axis=-1).reshape(N, C, *output_size)
    return y, i


def window_avg_adjoint_reference(gy, hs, he, rh, ws, we, rw, H, W):
    """Adjoint of the window average, written as the scatter it is: each output's gradient,
    times its weight, added over its window."""
    B, Ho, Wo = gy.shape
    gx = np.zeros((B, H, W), gy.dtype)
    for oh in range(Ho):
        for ow in range(Wo):
            gx[:, hs[oh]:he[oh], ws[ow]:we[ow]] += (gy[:, oh, ow] * rh[oh] * rw[ow])[:, None, None]
    return gx


# ================================================================ CPU (numba, parallel over planes)
_first_valid_jit = njit(cache=True, inline="always")(_first_valid)


@njit(parallel=True, cache=True)
def _max_pool_cpu(x, hs, he, dh, ws, we, dw, y, idx):
    B, H, W = x.shape
    for b in prange(B):
        for oh in range(hs.shape[0]):
            h0 = _first_valid_jit(hs[oh], dh)
            h1 = min(he[oh], H)
            for ow in range(ws.shape[0]):
                w0 = _first_valid_jit(ws[ow], dw)
                w1 = min(we[ow], W)
                arg = h0 * W + w0
                if h0 >= h1 or w0 >= w1:    # an empty window: PyTorch's -inf and index
                    y[b, oh, ow] = -np.inf
                    idx[b, oh, ow] = arg
                    continue
                best = x[b, h0, w0]
                nan = False
                ih = h0
                while ih < h1:          # (while loops: cheaper than a range with a step)
                    iw = w0
                    while iw < w1:
                        v = x[b, ih, iw]
                        # a single comparison compiles to selects, not branches (4x faster
                        # than "v > best or v != v"); it also takes a NaN: fixed up below
                        if not v <= best:
                            best = v
                            arg = ih * W + iw
                        nan |= v != v
                        iw += dw
                    ih += dh
                if nan:                 # PyTorch: the value is NaN, the index the last NaN's
                    best = np.nan
                    ih = h0
                    while ih < h1:
                        iw = w0
                        while iw < w1:
                            if x[b, ih, iw] != x[b, ih, iw]:
                                arg = ih * W + iw
                            iw += dw
                        ih += dh
                y[b, oh, ow] = best
                idx[b, oh, ow] = arg


def max_pool_cpu(x, hs, he, dh, ws, we, dw):
    """(y, idx) for planes x (B, H, W); windows unclipped with dilation (dh, dw)."""
    B = x.shape[0]
    y = np.empty((B, hs.size, ws.size), x.dtype)
    idx = np.empty((B, hs.size, ws.size), np.int64)
    _max_pool_cpu(x, hs, he, dh, ws, we, dw, y, idx)
    return y, idx


@njit(parallel=True, cache=True)
def _max_scatter_cpu(gy, idx, gx):
    n = gx.shape[1]
    for b in prange(gy.shape[0]):
        for o in range(gy.shape[1]):
            i = idx[b, o]
            if 0 <= i < n:      # (an empty window's index may lie outside the plane)
                gx[b, i] += gy[b, o]


def max_scatter_cpu(gy, idx, H, W):
    """gx (B, H, W): gy (B, Ho, Wo) added at the flat plane positions idx.  One thread owns a
    whole plane, so the adds do not race."""
    B, Ho, Wo = gy.shape
    gx = np.zeros((B, H * W), gy.dtype)
    _max_scatter_cpu(gy.reshape(B, Ho * Wo), idx.reshape(B, Ho * Wo), gx)
    return gx.reshape(B, H, W)


@njit(parallel=True, cache=True)
def _window_avg_cpu(x, hs, he, rh, ws, we, rw, y):
    for b in prange(x.shape[0]):
        for oh in range(hs.shape[0]):
            for ow in range(ws.shape[0]):
                acc = 0.0
                for ih in range(hs[oh], he[oh]):
                    for iw in range(ws[ow], we[ow]):
                        acc += x[b, ih, iw]
                y[b, oh, ow] = acc * rh[oh] * rw[ow]


def _is_global(hs, he, ws, we, H, W):
    """One window covering the whole plane (a global average)."""
    return hs.size == ws.size == 1 and hs[0] <= 0 and ws[0] <= 0 and he[0] >= H and we[0] >= W


def window_avg_cpu(x, hs, he, rh, ws, we, rw):
    """y (B, Ho, Wo) = weighted window sums of x (B, H, W) over clipped windows."""
    B, H, W = x.shape
    if _is_global(hs, he, ws, we, H, W):    # a matrix-vector product: the planes times ones
        return ((x.reshape(B, H * W) @ np.ones(H * W, x.dtype)) * (rh[0] * rw[0])).reshape(
            B, 1, 1)
    y = np.empty((B, hs.size, ws.size), x.dtype)
    _window_avg_cpu(x, hs, he, rh, ws, we, rw, y)
    return y


@njit(parallel=True, cache=True)
def _window_avg_adjoint_cpu(gy, hs, he, rh, ws, we, rw, gx):
    for b in prange(gy.shape[0]):
        gx[b] = 0.0
        for oh in range(hs.shape[0]):
            for ow in range(ws.shape[0]):
                g = gy[b, oh, ow] * (rh[oh] * rw[ow])
                for ih in range(hs[oh], he[oh]):
                    for iw in range(ws[ow], we[ow]):
                        gx[b, ih, iw] += g


def window_avg_adjoint_cpu(gy, hs, he, rh, ws, we, rw, H, W):
    """gx (B, H, W) of the window average.  On the CPU one thread owns a whole plane, so the
    adjoint is written as the scatter it is (each output's share added over its window)."""
    if _is_global(hs, he, ws, we, H, W):
        return np.ascontiguousarray(np.broadcast_to(gy * (rh[0] * rw[0]), (gy.shape[0], H, W)))
    gx = np.empty((gy.shape[0], H, W), gy.dtype)
    _window_avg_adjoint_cpu(gy, hs, he, rh, ws, we, rw, gx)
    return gx


# ================================================================ CUDA (numba.cuda, built lazily)
cuda = None        # numba.cuda, set by _build


def _build():
    global cuda
    from numba import cuda      # a module global: the simulator swaps it inside kernels
    first_valid = cuda.jit(device=True)(_first_valid)

    @cuda.jit
    def max_pool(x, hs, he, dh, ws, we, dw, y, idx):
        B, H, W = x.shape
        Ho, Wo = y.shape[1], y.shape[2]
        start, step = cuda.grid(1), cuda.gridsize(1)
        for t in range(start, B * Ho * Wo, step):
            ow = t % Wo
            oh = (t // Wo) % Ho
            b = t // (Wo * Ho)
            h0 = first_valid(hs[oh], dh)
            w0 = first_valid(ws[ow], dw)
            h1 = min(he[oh], H)
            w1 = min(we[ow], W)
            best = -math.inf
            arg = h0 * W + w0
            for ih in range(h0, h1, dh):
                for iw in range(w0, w1, dw):
                    v = x[b, ih, iw]
                    if v > best or v != v:
                        best = v
                        arg = ih * W + iw
            y[b, oh, ow] = best
            idx[b, oh, ow] = arg

    @cuda.jit
    def max_scatter(gy, idx, lh, uh, lw, uw, gx):
        # one thread per input element: sum the gradients of the covering outputs that chose it
        B, H, W = gx.shape
        start, step = cuda.grid(1), cuda.gridsize(1)
        for t in range(start, B * H * W, step):
            iw = t % W
            ih = (t // W) % H
            b = t // (W * H)
            me = ih * W + iw
            acc = 0.0
            for oh in range(lh[ih], uh[ih]):
                for ow in range(lw[iw], uw[iw]):
                    if idx[b, oh, ow] == me:
                        acc += gy[b, oh, ow]
            gx[b, ih, iw] = acc

    @cuda.jit
    def window_avg(x, hs, he, rh, ws, we, rw, y):
        B, Ho, Wo = y.shape
        start, step = cuda.grid(1), cuda.gridsize(1)
        for t in range(start, B * Ho * Wo, step):
            ow = t % Wo
            oh = (t // Wo) % Ho
            b = t // (Wo * Ho)
            acc = 0.0
            for ih in range(hs[oh], he[oh]):
                for iw in range(ws[ow], we[ow]):
                    acc += x[b, ih, iw]
            y[b, oh, ow] = acc * rh[oh] * rw[ow]

    @cuda.jit
    def window_avg_adjoint(gy, lh, uh, rh, lw, uw, rw, gx):
        B, H, W = gx.shape
        start, step = cuda.grid(1), cuda.gridsize(1)
        for t in range(start, B * H * W, step):
            iw = t % W
            ih = (t // W) % H
            b = t // (W * H)
            acc = 0.0
            for oh in range(lh[ih], uh[ih]):
                row = 0.0
                for ow in range(lw[iw], uw[iw]):
                    row += gy[b, oh, ow] * rw[ow]
                acc += row * rh[oh]
            gx[b, ih, iw] = acc

    return dict(max_pool=max_pool, max_scatter=max_scatter, window_avg=window_avg,
                window_avg_adjoint=window_avg_adjoint)


def max_pool_cuda(x, hs, he, dh, ws, we, dw):
    """CUDA version of :func:`max_pool_cpu` (one thread per output element)."""
    xp = array_module_of(x)
    B = x.shape[0]
    y = xp.empty((B, hs.size, ws.size), x.dtype)
    idx = xp.empty((B, hs.size, ws.size), np.int64)
    launch(cuda_kernels(_build)["max_pool"], y.size, x, hs, he, dh, ws, we, dw, y, idx)
    return y, idx


def max_scatter_cuda(gy, idx, lh, uh, lw, uw):
    """CUDA version of :func:`max_scatter_cpu`, as a gather: one thread per input element sums
    the gradients of the covering outputs whose argmax it is (H = lh.size, W = lw.size)."""
    xp = array_module_of(gy)
    gx = xp.empty((gy.shape[0], lh.size, lw.size), gy.dtype)
    launch(cuda_kernels(_build)["max_scatter"], gx.size, gy, idx, lh, uh, lw, uw, gx)
    return gx


def window_avg_cuda(x, hs, he, rh, ws, we, rw):
    xp = array_module_of(x)
    y = xp.empty((x.shape[0], hs.size, ws.size), x.dtype)
    launch(cuda_kernels(_build)["window_avg"], y.size, x, hs, he, rh, ws, we, rw, y)
    return y


def window_avg_adjoint_cuda(gy, lh, uh, rh, lw, uw, rw):
    xp = array_module_of(gy)
    gx = xp.empty((gy.shape[0], lh.size, lw.size), gy.dtype)
    launch(cuda_kernels(_build)["window_avg_adjoint"], gx.size, gy, lh, uh, rh, lw, uw, rw, gx)
    return gx
