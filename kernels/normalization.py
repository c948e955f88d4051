"""Fused normalisation kernels: statistics, normalisation and affine map in one kernel forward,
the three gradients (input, weight, bias) in one kernel backward.

One geometry serves every norm
------------------------------
The input is seen as a C-contiguous 4-D array ``x[a, m, j, s]`` of shape (A, M, J, S).  Group
``m`` is the set of A·J·S elements ``x[:, m, :, :]``; each group is normalised with its own
statistics, and the affine map takes its weight from a table ``w[mw, j]`` of shape (Mw, J) with
``mw = m mod Mw`` (so M = Q·Mw; q = m div Mw repeats the weights, e.g. over the batch)::

    batch norm     (N, C, 1, H·W)       Mw = C      one group per channel
    instance norm  (1, N·C, 1, H·W)     Mw = C      one group per (sample, channel) plane
    group norm     (1, N·G, C/G, H·W)   Mw = G      the weight varies with j (the channel)
    layer norm     (1, L, K, 1)         Mw = 1      K = prod(normalized_shape)
    AdaIN          (1, N·C, 1, H·W)     Mw = N·C    a scale and a bias per plane

Forward (biased variance, two passes: the variance is the mean of (x - μ)², never
E[x²] - μ², which cancels catastrophically in float32)::

    μ_m = mean(x_m)        v_m = mean((x_m - μ_m)²)        r_m = 1 / sqrt(v_m + eps)
    x̂ = (x - μ_m) r_m      y[a, m, j, s] = x̂ · w[mw, j] + b[mw, j]

Backward, with g = gy · w and means over the group (x̂'s Jacobian is r (I - 11ᵀ/n - x̂x̂ᵀ/n),
symmetric, so the gradient is that projection applied to g)::

    gx = r_m (g - mean(g) - x̂ · mean(g x̂))
    gw[mw, j] = Σ_{q, a, s} gy · x̂          gb[mw, j] = Σ_{q, a, s} gy

``backward`` returns the three gradients PACKED in one flat array ``[gx.ravel(), gw.ravel(),
gb.ravel()]`` (nanogen's Functions have one output; :func:`unpack` splits it into views), or
with ``packed=False`` as three separate arrays (for a backward pass that records no graph: a
leaf can then adopt gx as its ``.grad`` instead of copying it out of the packed buffer).

Versions
--------
* ``reference_forward`` / ``reference_backward``: plain NumPy in float64 (the ground truth).
* ``forward_cpu`` / ``backward_cpu``: ``numba.njit(parallel=True, cache=True)``.  The forward is
  a ``prange`` over groups: mean, variance and output in three sweeps of one group (in cache for
  the plane-shaped groups of instance norm and AdaIN).  The backward is a ``prange`` over (chunk
  of q, mw) pairs: the thread owning weight row ``mw`` accumulates its gw / gb partials while it
  computes gx for the groups m = q·Mw + mw of its chunk, so no two threads ever write the same
  element; the chunk count depends only on the shape, so results are deterministic.
* ``forward_cuda`` / ``backward_cuda``: ``numba.cuda``, ONE BLOCK PER GROUP (128 threads) with
  a shared-memory tree reduction (the block's threads stride over the group's elements, sum
  into shared memory, halve it log2(threads) times; deterministic, no atomics).  The backward
  kernel reduces Σ g, Σ g x̂, Σ gy, Σ gy x̂ together and writes gx; when J = 1 the last two sums
  are the group's gw / gb contributions (AdaIN and batch norm: Mw = M, so that one kernel is
  the whole backward); when J > 1 a second kernel, one block per weight element, gathers gw
  and gb.

Accumulators are float64 on both devices; outputs keep the input dtype.
"""
from __future__ import annotations

import math
import os

import numpy as np
from numba import njit, prange

from ._device import array_module_of

__all__ = ["forward", "backward", "unpack", "reference_forward", "reference_backward",
           "forward_cpu", "backward_cpu", "forward_cuda", "backward_cuda"]

# reassociation lets LLVM vectorise the float64 sums; NaN / inf semantics stay IEEE
_FASTMATH = {"reassoc", "contract"}


def _check(x, w, b=None):
    if x.ndim != 4:
        raise ValueError(f"normalization kernel: x must be (A, M, J, S), got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError("normalization kernel: x must be C-contiguous")
    mw, j = w.shape
    if j != x.shape[2] or mw == 0 or x.shape[1] % mw:
        raise ValueError(f"normalization kernel: weight table {w.shape} does not fit x {x.shape} "
                         f"(need (Mw, J) with M divisible by Mw)")
    if b is not None and b.shape != w.shape:
        raise ValueError(f"normalization kernel: bias table {b.shape} != weight table {w.shape}")


def unpack(packed, x_shape, w_shape):
    """Views (gx, gw, gb) of a packed gradient ``[gx.ravel(), gw.ravel(), gb.ravel()]``."""
    n = math.prod(x_shape)
    k = math.prod(w_shape)
    return (packed[:n].reshape(x_shape), packed[n:n + k].reshape(w_shape),
            packed[n + k:].reshape(w_shape))


def _gradient_arrays(xp, x, w, packed, shapes):
    """``(result, gx, gw, gb)``: the kernel's output arrays (x's and w's shapes), views of one
    packed buffer (the result) or of three separate arrays of ``shapes`` (default x's, w's and
    w's; the result is the tuple of them, each owning its memory)."""
    if packed:
        buf = xp.empty(x.size + 2 * w.size, x.dtype)
        return (buf, *unpack(buf, x.shape, w.shape))
    shapes = shapes or (x.shape, w.shape, w.shape)
    grads = tuple(xp.empty(s, x.dtype) for s in shapes)
    return (grads, grads[0].reshape(x.shape), grads[1].reshape(w.shape),
            grads[2].reshape(w.shape))


# ================================================================ reference (plain NumPy)
def _tables(w, M):
    """The (M, J) weight rows of every group: row m is w[m mod Mw]."""
    return np.tile(np.asarray(w, dtype=np.float64), (M // w.shape[0], 1))


def reference_forward(x, w, b, eps):
    """``(y, mean, var)``: every group normalised by its own biased statistics, then
    ``x̂ · w + b`` (float64 arithmetic, y in x's dtype, mean / var of shape (M,))."""
    _check(x, w, b)
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(axis=(0, 2, 3))
    xc = x64 - mean[None, :, None, None]
    var = (xc * xc).mean(axis=(0, 2, 3))
    xhat = xc / np.sqrt(var + eps)[None, :, None, None]
    M = x.shape[1]
    y = xhat * _tables(w, M)[None, :, :, None] + _tables(b, M)[None, :, :, None]
    return y.astype(x.dtype), mean, var


def reference_backward(gy, x, w, eps):
    """``(gx, gw, gb)`` by the closed form gx = r (g - mean(g) - x̂ mean(g x̂)), g = gy w."""
    _check(x, w)
    A, M, J, S = x.shape
    Mw = w.shape[0]
    x64 = np.asarray(x, dtype=np.float64)
    gy64 = np.asarray(gy, dtype=np.float64)
    axes = (0, 2, 3)
    mean = x64.mean(axis=axes, keepdims=True)
    r = 1.0 / np.sqrt(((x64 - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
    xhat = (x64 - mean) * r
    g = gy64 * _tables(w, M)[None, :, :, None]
    gx = r * (g - g.mean(axis=axes, keepdims=True)
              - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    gw = (gy64 * xhat).sum(axis=(0, 3)).reshape(M // Mw, Mw, J).sum(axis=0)
    gb = gy64.sum(axis=(0, 3)).reshape(M // Mw, Mw, J).sum(axis=0)
    return gx.astype(x.dtype), gw.astype(x.dtype), gb.astype(x.dtype)


# ================================================================ CPU (numba.njit)
@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _forward_kernel(x, J, w, b, eps, y, mean, var):
    # x, y: (A, M, J·S) -- a group's element (j, s) sits at j·S + s of each row x[a, m]; the
    # loops run over 1-D row views, which LLVM vectorises (3-D indexing it does not, as well)
    A, M, L = x.shape
    S = L // J
    Mw = w.shape[0]
    n = A * L
    for m in prange(M):
        acc = 0.0
        for a in range(A):
            row = x[a, m]
            for e in range(L):
                acc += row[e]
        mu = acc / n
        acc = 0.0
        for a in range(A):
            row = x[a, m]
            for e in range(L):
                d = row[e] - mu
                acc += d * d
        v = acc / n
        r = 1.0 / math.sqrt(v + eps)
        wm, bm = w[m % Mw], b[m % Mw]
        for a in range(A):
            row, out = x[a, m], y[a, m]
            if S == 1:                               # layer norm: the weight varies along the row
                for e in range(L):
                    out[e] = (row[e] - mu) * (r * wm[e]) + bm[e]
            else:
                for j in range(J):
                    scale = r * wm[j]                # y = (x - μ) r w + b = x·scale + shift
                    shift = bm[j] - mu * scale
                    seg, dst = row[j * S:(j + 1) * S], out[j * S:(j + 1) * S]
                    for s in range(S):
                        dst[s] = seg[s] * scale + shift
        mean[m] = mu
        var[m] = v


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _backward_kernel(gy, x, J, mean, rstd, w, chunks, gx, pw, pb):
    # gy, x, gx: (A, M, J·S) as in the forward; pw, pb: (chunks, Mw, J) partial gw, gb
    A, M, L = x.shape
    S = L // J
    Mw = w.shape[0]
    Q = M // Mw
    n = A * L
    for p in prange(chunks * Mw):
        t = p // Mw
        mw = p - t * Mw
        wm, pwm, pbm = w[mw], pw[t, mw], pb[t, mw]
        for q in range(t * Q // chunks, (t + 1) * Q // chunks):
            m = q * Mw + mw
            mu = mean[m]
            r = rstd[m]
            sg = 0.0                                 # Σ g,  g = gy·w
            sgx = 0.0                                # Σ g·x̂
            for a in range(A):
                grow, row = gy[a, m], x[a, m]
                if S == 1:
                    for e in range(L):
                        g = grow[e]
                        gxh = g * (row[e] - mu) * r
                        pwm[e] += gxh
                        pbm[e] += g
                        sg += wm[e] * g
                        sgx += wm[e] * gxh
                else:
                    for j in range(J):
                        gseg, seg = grow[j * S:(j + 1) * S], row[j * S:(j + 1) * S]
                        acc_b = 0.0
                        acc_w = 0.0
                        for s in range(S):
                            g = gseg[s]
                            acc_b += g
                            acc_w += g * (seg[s] - mu)
                        acc_w *= r                   # Σ_s gy·x̂
                        pwm[j] += acc_w
                        pbm[j] += acc_b
                        sg += wm[j] * acc_b
                        sgx += wm[j] * acc_w
            c1 = sg / n * r                          # gx = (gy w) r + (x - μ)·k - mean(g) r
            k = -r * r * sgx / n                     #      with k = -r² mean(g x̂)
            for a in range(A):
                grow, row, out = gy[a, m], x[a, m], gx[a, m]
                if S == 1:
                    for e in range(L):
                        # (gy w) r, in the order c1 rounds it: a group of one element
                        # (x̂ = 0, gx = 0) then gets exactly 0, not r·ε·|g| of noise
                        out[e] = (grow[e] * wm[e]) * r + (row[e] - mu) * k - c1
                else:
                    for j in range(J):
                        wr = wm[j] * r
                        gseg, seg = grow[j * S:(j + 1) * S], row[j * S:(j + 1) * S]
                        dst = out[j * S:(j + 1) * S]
                        for s in range(S):
                            dst[s] = gseg[s] * wr + (seg[s] - mu) * k - c1


def _chunks(Q, Mw):
    """How many chunks of q the CPU backward splits into: enough (chunk, mw) pairs to keep the
    threads busy when Mw is small (layer norm: Mw = 1), one when Mw alone suffices."""
    return max(1, min(Q, -(-32 // Mw)))


def forward_cpu(x, w, b, eps):
    """``(y, mean, var)`` on NumPy arrays (x C-contiguous (A, M, J, S); w, b (Mw, J))."""
    _check(x, w, b)
    y = np.empty_like(x)
    mean = np.empty(x.shape[1]) if x.size else np.full(x.shape[1], np.nan)
    var = np.empty(x.shape[1]) if x.size else np.full(x.shape[1], np.nan)
    if x.size:
        A, M, J, S = x.shape
        _forward_kernel(x.reshape(A, M, J * S), J, w, b, float(eps), y.reshape(A, M, J * S),
                        mean, var)
    return y, mean, var


def backward_cpu(gy, x, mean, rstd, w, packed=True, shapes=None):
    """The packed gradient ``[gx, gw, gb]`` (see the module docstring) on NumPy arrays, or
    with ``packed=False`` the tuple ``(gx, gw, gb)`` of separate arrays (of ``shapes``)."""
    _check(x, w)
    Mw, J = w.shape
    chunks = _chunks(x.shape[1] // Mw, Mw)
    result, gx, gw, gb = _gradient_arrays(np, x, w, packed, shapes)
    pw = np.zeros((chunks, Mw, J), np.float64)
    pb = np.zeros((chunks, Mw, J), np.float64)
    if x.size:
        A, M, J, S = x.shape
        rows = (A, M, J * S)
        _backward_kernel(gy.reshape(rows), x.reshape(rows), J, mean, rstd, w, chunks,
                         gx.reshape(rows), pw, pb)
    gw[...] = pw.sum(axis=0)
    gb[...] = pb.sum(axis=0)
    return result


# ================================================================ CUDA (numba.cuda, built lazily)
# threads per block, a power of two (the tree halves it); the simulator runs a Python thread per
# CUDA thread, so it gets fewer (the same code paths: groups larger and smaller than a block)
_THREADS = 16 if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0") else 128
_CUDA = {}
cuda = None             # numba.cuda once imported: a module global, which the simulator swaps


def _cuda_kernels():
    global cuda
    if not _CUDA:
        from numba import cuda
        _CUDA.update(_build())
    return _CUDA


def _build():
    from numba import float64

    @cuda.jit(device=True)
    def tree_sum(buf, tid):
        """Sum each row of the shared (rows, _THREADS) buffer into its column 0."""
        step = _THREADS // 2
        while step > 0:
            if tid < step:
                for i in range(buf.shape[0]):
                    buf[i, tid] += buf[i, tid + step]
            cuda.syncthreads()
            step //= 2

    @cuda.jit(device=True)
    def locate(e, J, S):
        """(a, j, s) of element e of a group (row-major over (A, J, S))."""
        js = J * S
        a = e // js
        rest = e - a * js
        j = rest // S
        return a, j, rest - j * S

    @cuda.jit
    def forward(x, w, b, eps, y, mean, var):
        A, M, J, S = x.shape
        m = cuda.blockIdx.x
        mw = m % w.shape[0]
        tid = cuda.threadIdx.x
        n = A * J * S
        buf = cuda.shared.array((1, _THREADS), float64)
        acc = 0.0
        for e in range(tid, n, _THREADS):
            a, j, s = locate(e, J, S)
            acc += x[a, m, j, s]
        buf[0, tid] = acc
        cuda.syncthreads()
        tree_sum(buf, tid)
        mu = buf[0, 0] / n
        cuda.syncthreads()                   # all have read buf[0, 0] before it is reused
        acc = 0.0
        for e in range(tid, n, _THREADS):
            a, j, s = locate(e, J, S)
            d = x[a, m, j, s] - mu
            acc += d * d
        buf[0, tid] = acc
        cuda.syncthreads()
        tree_sum(buf, tid)
        v = buf[0, 0] / n
        r = 1.0 / math.sqrt(v + eps)
        for e in range(tid, n, _THREADS):
            a, j, s = locate(e, J, S)
            y[a, m, j, s] = (x[a, m, j, s] - mu) * r * w[mw, j] + b[mw, j]
        if tid == 0:
            mean[m] = mu
            var[m] = v

    @cuda.jit
    def backward(gy, x, mean, rstd, w, gx, pw, pb):
        A, M, J, S = x.shape
        m = cuda.blockIdx.x
        mw = m % w.shape[0]
        tid = cuda.threadIdx.x
        n = A * J * S
        mu = mean[m]
        r = rstd[m]
        buf = cuda.shared.array((4, _THREADS), float64)
        sg = 0.0
        sgx = 0.0
        sgy = 0.0
        sgyx = 0.0
        for e in range(tid, n, _THREADS):
            a, j, s = locate(e, J, S)
            g = gy[a, m, j, s]
            xh = (x[a, m, j, s] - mu) * r
            sgy += g
            sgyx += g * xh
            sg += g * w[mw, j]
            sgx += g * w[mw, j] * xh
        buf[0, tid] = sg
        buf[1, tid] = sgx
        buf[2, tid] = sgy
        buf[3, tid] = sgyx
        cuda.syncthreads()
        tree_sum(buf, tid)
        c1 = buf[0, 0] / n
        c2 = buf[1, 0] / n
        for e in range(tid, n, _THREADS):
            a, j, s = locate(e, J, S)
            xh = (x[a, m, j, s] - mu) * r
            gx[a, m, j, s] = r * (gy[a, m, j, s] * w[mw, j] - c1 - xh * c2)
        if tid == 0:
            pb[m] = buf[2, 0]
            pw[m] = buf[3, 0]

    @cuda.jit
    def affine_grad(gy, x, mean, rstd, gw, gb):
        """One block per weight element (mw, j): gw = Σ gy·x̂, gb = Σ gy over (q, a, s)."""
        A, M, J, S = x.shape
        Mw = gw.shape[0]
        c = cuda.blockIdx.x
        mw = c // J
        j = c - mw * J
        tid = cuda.threadIdx.x
        per = A * S
        total = (M // Mw) * per
        buf = cuda.shared.array((2, _THREADS), float64)
        acc_w = 0.0
        acc_b = 0.0
        for e in range(tid, total, _THREADS):
            q = e // per
            rest = e - q * per
            a = rest // S
            s = rest - a * S
            m = q * Mw + mw
            g = gy[a, m, j, s]
            acc_w += g * (x[a, m, j, s] - mean[m]) * rstd[m]
            acc_b += g
        buf[0, tid] = acc_w
        buf[1, tid] = acc_b
        cuda.syncthreads()
        tree_sum(buf, tid)
        if tid == 0:
            gw[mw, j] = buf[0, 0]
            gb[mw, j] = buf[1, 0]

    return dict(forward=forward, backward=backward, affine_grad=affine_grad)


def forward_cuda(x, w, b, eps):
    """CUDA version of :func:`forward_cpu` (one block per group)."""
    _check(x, w, b)
    xp = array_module_of(x)
    y = xp.empty_like(x)
    mean = xp.full(x.shape[1], np.nan)
    var = xp.full(x.shape[1], np.nan)
    if x.size:
        _cuda_kernels()["forward"][x.shape[1], _THREADS](x, w, b, float(eps), y, mean, var)
    return y, mean, var


def backward_cuda(gy, x, mean, rstd, w, packed=True, shapes=None):
    """CUDA version of :func:`backward_cpu`: one kernel (one block per group) for gx and, when
    J = 1, the per-group gw / gb sums (summed over q on the host side when Mw < M); a second
    kernel (one block per weight element) for gw / gb when J > 1."""
    _check(x, w)
    xp = array_module_of(x)
    Mw, J = w.shape
    M = x.shape[1]
    result, gx, gw, gb = _gradient_arrays(xp, x, w, packed, shapes)
    if not x.size:
        gw[...] = 0
        gb[...] = 0
        return result
    kernels = _cuda_kernels()
    pw = xp.empty(M, np.float64)
    pb = xp.empty(M, np.float64)
    kernels["backward"][M, _THREADS](gy, x, mean, rstd, w, gx, pw, pb)
    if J == 1:
        gw[...] = pw.reshape(M // Mw, Mw, 1).sum(axis=0)
        gb[...] = pb.reshape(M // Mw, Mw, 1).sum(axis=0)
    else:
        tw = xp.empty((Mw, J), np.float64)
        tb = xp.empty((Mw, J), np.float64)
        kernels["affine_grad"][Mw * J, _THREADS](gy, x, mean, rstd, tw, tb)
        gw[...] = tw
        gb[...] = tb
    return result


# ================================================================ dispatch
def _contiguous(*arrays):
    return [array_module_of(a).ascontiguousarray(a) for a in arrays]


def forward(x, w, b, eps, device="cpu"):
    """``(y, mean, var)`` for x (A, M, J, S) and weight / bias tables (Mw, J) of x's dtype, on
    ``device`` ("cpu": numba.njit; "cuda": numba.cuda)."""
    x, w, b = _contiguous(x, w, b)
    return (forward_cpu if str(device) == "cpu" else forward_cuda)(x, w, b, eps)


def backward(gy, x, mean, rstd, w, device="cpu", packed=True, shapes=None):
    """The packed gradient ``[gx, gw, gb]`` of :func:`forward` given ``gy``, the forward's mean
    and ``rstd = 1 / sqrt(var + eps)`` (``packed=False``: the tuple of separate arrays, of
    ``shapes`` when given -- the caller's shapes, so no reshape makes them views)."""
    gy, x, mean, rstd, w = _contiguous(gy, x, mean, rstd, w)
    fn = backward_cpu if str(device) == "cpu" else backward_cuda
    return fn(gy, x, mean, rstd, w, packed, shapes)
