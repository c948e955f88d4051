"""Fused gate arithmetic of the LSTM and GRU cells: everything after the two matmuls, one pass
forward and one pass backward.

Layout: the kernels see the gates as ``(N, K, M)`` (K = 4 for the LSTM, 3 for the GRU) and the
states as ``(N, M)``: a cell's gates (N, K·H, *rest), chunked along axis 1 as PyTorch does, are
that view with M = H·prod(rest) (chunk k is the contiguous block k of each row).  Arrays are
C-contiguous and of one dtype (float32 stays float32).

LSTM (PyTorch's gate order i, f, g, o; a = W_ih x + b_ih + W_hh h + b_hh)::

    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
    c' = f c + i g            h' = o tanh(c')

    backward, for the cotangents (gh, gc) of (h', c'), with τ = tanh(c'):
    δ = gc + gh o (1 - τ²)                 (everything c' passes on)
    ∂a_i = δ g i (1 - i)      ∂a_f = δ c f (1 - f)
    ∂a_g = δ i (1 - g²)       ∂a_o = gh τ o (1 - o)      ∂c = δ f

GRU (order r, z, n; gi = W_ih x + b_ih, gh = W_hh h + b_hh)::

    r = σ(gi_r + gh_r)   z = σ(gi_z + gh_z)   n = tanh(gi_n + r gh_n)
    h' = (1 - z) n + z h

    backward, for the cotangent gy of h':
    ∂n' = gy (1 - z)(1 - n²)               (n' = gi_n + r gh_n, n's pre-activation)
    ∂a_z = gy (h - n) z (1 - z)            ∂a_r = ∂n' gh_n r (1 - r)
    ∂gi = (∂a_r, ∂a_z, ∂n')                ∂gh = (∂a_r, ∂a_z, ∂n' r)        ∂h = gy z

The forward writes the activations (i, f, g, o) or (r, z, n) into ``acts`` of the gates'
shape; the backward reads them instead of recomputing five transcendentals (the LSTM's
backward recomputes τ = tanh(c') from the saved c').

Versions
--------
* ``reference_lstm`` / ``reference_lstm_backward`` / ``reference_gru`` /
  ``reference_gru_backward``: plain NumPy in float64 from the pre-activations (the tests'
  ground truth).
* ``*_cpu``: ``numba.njit(nogil=True, cache=True)`` over a range of rows, each row in a few
  vectorised passes (the activations into ``acts``, then the states): one loop that read and
  wrote all eleven rows at once stayed scalar (LLVM's runtime alias checks give up beyond a
  few pointers) and ran 8x slower.  σ and tanh are :mod:`nanogen.kernels._math`'s: libm in
  float64, SIMD formulas in float32.  A step of batch 32 and H = 256 takes about 30 us
  forward and 20 us backward on one core, a sixth of its recurrent matmul; the rows are split
  over the cores (``_threads.run_ranges``) only for steps big enough to pay for the hand-over
  -- ``parallel=True`` cost 30-40 us a call even on one thread.
* ``*_cuda``: ``numba.cuda``, a gather with one thread per (row, column) element, which owns
  every output at that element (its gates' gradients, its h' and c').  σ is written in the
  form that cannot overflow (exp of a non-positive number only).

``lstm_forward`` / ``lstm_grad`` / ``gru_forward`` / ``gru_grad`` pick the version by device.
The kernels write into output arrays passed in (the recurrent layers hand them slices of their
whole-sequence buffers), or allocate them.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._device import array_module_of, cuda_kernels, launch
from ._math import FASTMATH, sigmoid, tanh
from ._threads import run_ranges, threads_for

__all__ = ["reference_lstm", "reference_lstm_backward", "reference_gru", "reference_gru_backward",
           "lstm_forward", "lstm_grad", "gru_forward", "gru_grad",
           "lstm_forward_cpu", "lstm_backward_cpu", "gru_forward_cpu", "gru_backward_cpu",
           "lstm_forward_cuda", "lstm_backward_cuda", "gru_forward_cuda", "gru_backward_cuda"]


# ================================================================ reference (plain NumPy)
def _sig(a):
    with np.errstate(over="ignore"):        # exp(-a) = inf for a < -709: σ = 0, as it should
        return 1.0 / (1.0 + np.exp(-a))


def _f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def reference_lstm(gates, c):
    """(h', c') from the pre-activations gates (N, 4, M) and c (N, M), in float64."""
    gates, c = _f64(gates, c)
    i, f, o = _sig(gates[:, 0]), _sig(gates[:, 1]), _sig(gates[:, 3])
    c_new = f * c + i * np.tanh(gates[:, 2])
    return o * np.tanh(c_new), c_new


def reference_lstm_backward(gates, c, gh, gc):
    """(∂gates (N, 4, M), ∂c (N, M)) of <gh, h'> + <gc, c'> by the chain rule, in float64."""
    gates, c, gh, gc = _f64(gates, c, gh, gc)
    i, f, g, o = _sig(gates[:, 0]), _sig(gates[:, 1]), np.tanh(gates[:, 2]), _sig(gates[:, 3])
    tau = np.tanh(f * c + i * g)
    delta = gc + gh * o * (1 - tau ** 2)
    grads = np.stack([delta * g * i * (1 - i), delta * c * f * (1 - f), delta * i * (1 - g ** 2),
                      gh * tau * o * (1 - o)], axis=1)
    return grads, delta * f


def reference_gru(gi, gh, h):
    """h' from gi, gh (N, 3, M) and h (N, M), in float64."""
    gi, gh, h = _f64(gi, gh, h)
    r, z = _sig(gi[:, 0] + gh[:, 0]), _sig(gi[:, 1] + gh[:, 1])
    n = np.tanh(gi[:, 2] + r * gh[:, 2])
    return (1 - z) * n + z * h


def reference_gru_backward(gi, gh, h, gy):
    """(∂gi, ∂gh, ∂h) of <gy, h'> by the chain rule, in float64."""
    gi, gh, h, gy = _f64(gi, gh, h, gy)
    r, z = _sig(gi[:, 0] + gh[:, 0]), _sig(gi[:, 1] + gh[:, 1])
    n = np.tanh(gi[:, 2] + r * gh[:, 2])
    dn = gy * (1 - z) * (1 - n ** 2)
    dz = gy * (h - n) * z * (1 - z)
    dr = dn * gh[:, 2] * r * (1 - r)
    return np.stack([dr, dz, dn], axis=1), np.stack([dr, dz, dn * r], axis=1), gy * z


# ================================================================ CPU (numba.njit)
_JIT = dict(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")


@njit(**_JIT)
def _lstm_forward_kernel(gates, c, h, c_new, acts, one, start, stop):
    M = gates.shape[2]
    for n in range(start, stop):
        for k in range(4):                      # pass 1: the activations
            a, s = gates[n, k], acts[n, k]
            if k == 2:
                for j in range(M):
                    s[j] = tanh(a[j])
            else:
                for j in range(M):
                    s[j] = sigmoid(a[j])
        i, f, g, o = acts[n, 0], acts[n, 1], acts[n, 2], acts[n, 3]
        cr, hr, cn = c[n], h[n], c_new[n]
        for j in range(M):                      # pass 2: the state
            cc = f[j] * cr[j] + i[j] * g[j]
            cn[j] = cc
            hr[j] = o[j] * tanh(cc)


@njit(**_JIT)
def _lstm_backward_kernel(acts, c, c_new, gh, gc, g_gates, g_c, one, start, stop):
    M = acts.shape[2]
    for n in range(start, stop):
        i, f, g, o = acts[n, 0], acts[n, 1], acts[n, 2], acts[n, 3]
        di, df, dg, do = g_gates[n, 0], g_gates[n, 1], g_gates[n, 2], g_gates[n, 3]
        cr, ghr, dc = c[n], gh[n], g_c[n]
        gcr, cn = gc[n], c_new[n]
        for j in range(M):                      # δ (kept in ∂c's row) and ∂a_o
            t = tanh(cn[j])
            dc[j] = gcr[j] + ghr[j] * o[j] * (one - t * t)
            do[j] = ghr[j] * t * o[j] * (one - o[j])
        for j in range(M):
            d = dc[j]
            di[j] = d * g[j] * i[j] * (one - i[j])
            dg[j] = d * i[j] * (one - g[j] * g[j])
        for j in range(M):
            d = dc[j]
            df[j] = d * cr[j] * f[j] * (one - f[j])
            dc[j] = d * f[j]


@njit(**_JIT)
def _gru_forward_kernel(gi, gh, h, h_new, acts, one, start, stop):
    M = gi.shape[2]
    for n in range(start, stop):
        for k in range(2):                      # r and z
            a, b, s = gi[n, k], gh[n, k], acts[n, k]
            for j in range(M):
                s[j] = sigmoid(a[j] + b[j])
        r, z, nn = acts[n, 0], acts[n, 1], acts[n, 2]
        a, b = gi[n, 2], gh[n, 2]
        for j in range(M):
            nn[j] = tanh(a[j] + r[j] * b[j])
        hr, out = h[n], h_new[n]
        for j in range(M):
            out[j] = (one - z[j]) * nn[j] + z[j] * hr[j]


@njit(**_JIT)
def _gru_backward_kernel(acts, gh, h, gy, g_gi, g_gh, g_h, one, start, stop):
    M = acts.shape[2]
    for n in range(start, stop):
        r, z, nn = acts[n, 0], acts[n, 1], acts[n, 2]
        hr, gyr, dh = h[n], gy[n], g_h[n]
        dz, dz2 = g_gi[n, 1], g_gh[n, 1]
        for j in range(M):
            d = gyr[j] * (hr[j] - nn[j]) * z[j] * (one - z[j])
            dz[j] = d
            dz2[j] = d
            dh[j] = gyr[j] * z[j]
        dn = g_gi[n, 2]
        for j in range(M):
            dn[j] = gyr[j] * (one - z[j]) * (one - nn[j] * nn[j])
        dr, dr2, dn2, hn = g_gi[n, 0], g_gh[n, 0], g_gh[n, 2], gh[n, 2]
        for j in range(M):
            d = dn[j] * hn[j] * r[j] * (one - r[j])
            dr[j] = d
            dr2[j] = d
            dn2[j] = dn[j] * r[j]


def _check(name, gates, K, *states):
    """Shapes of a kernel call: gates (N, K, M) and each state (N, M)."""
    if gates.ndim != 3 or gates.shape[1] != K or any(s.shape != (gates.shape[0], gates.shape[2])
                                                     for s in states):
        raise ValueError(f"{name}: expected gates (N, {K}, M) and states (N, M), got "
                         f"{gates.shape} and {[s.shape for s in states]}")


def _outputs(xp, like, shapes, given):
    """The output arrays: those ``given`` (not None), else fresh ones of ``shapes``."""
    return [xp.empty(s, like.dtype) if g is None else g for s, g in zip(shapes, given)]


def _run(kernel, like, args):
    """``kernel(*args, one, start, stop)`` over the N rows of ``like`` (N, K, M): on the calling
    thread, or split over the cores when the step is big enough to pay for the hand-over
    (``_threads.PARALLEL_WORK``; an element costs about 100 flops of arithmetic, its five
    transcendentals included).  Rows are independent, so the split changes no value."""
    N, K, M = like.shape
    one = like.dtype.type(1)
    run_ranges(kernel, N, threads_for(N * M * 128), lambda i: (*args, one))


def lstm_forward_cpu(gates, c, h=None, c_new=None, acts=None):
    """``(h', c', acts)`` of the LSTM cell for gates (N, 4, M) and c (N, M); outputs written
    into the arrays given (any C-contiguous arrays of the right shapes) or fresh ones."""
    _check("lstm_forward", gates, 4, c)
    h, c_new, acts = _outputs(np, gates, (c.shape, c.shape, gates.shape), (h, c_new, acts))
    _run(_lstm_forward_kernel, gates, (gates, c, h, c_new, acts))
    return h, c_new, acts


def lstm_backward_cpu(acts, c, c_new, gh, gc, g_gates=None, g_c=None):
    """``(∂gates, ∂c)`` given the forward's activations and c', and the cotangents gh, gc of
    h' and c'."""
    _check("lstm_backward", acts, 4, c, c_new, gh, gc)
    g_gates, g_c = _outputs(np, acts, (acts.shape, c.shape), (g_gates, g_c))
    _run(_lstm_backward_kernel, acts, (acts, c, c_new, gh, gc, g_gates, g_c))
    return g_gates, g_c


def gru_forward_cpu(gi, gh, h, h_new=None, acts=None):
    """``(h', acts)`` of the GRU cell for gi, gh (N, 3, M) and h (N, M)."""
    _check("gru_forward", gi, 3, h)
    _check("gru_forward", gh, 3, h)
    h_new, acts = _outputs(np, gi, (h.shape, gi.shape), (h_new, acts))
    _run(_gru_forward_kernel, gi, (gi, gh, h, h_new, acts))
    return h_new, acts


def gru_backward_cpu(acts, gh, h, gy, g_gi=None, g_gh=None, g_h=None):
    """``(∂gi, ∂gh, ∂h)`` given the forward's activations, gh and h, and the cotangent gy."""
    _check("gru_backward", acts, 3, h, gy)
    _check("gru_backward", gh, 3, h)
    g_gi, g_gh, g_h = _outputs(np, acts, (acts.shape, acts.shape, h.shape), (g_gi, g_gh, g_h))
    _run(_gru_backward_kernel, acts, (acts, gh, h, gy, g_gi, g_gh, g_h))
    return g_gi, g_gh, g_h


# ================================================================ CUDA (numba.cuda, built lazily)
cuda = None             # numba.cuda, set by _build (a module global, which the simulator swaps)


def _build():
    global cuda
    from numba import cuda

    @cuda.jit(device=True)
    def sig(x, one):
        # exp of a non-positive number only: no overflow for any x
        if x >= 0:
            return one / (one + math.exp(-x))
        e = math.exp(x)
        return e / (one + e)

    @cuda.jit
    def lstm_forward(gates, c, h, c_new, acts, one):
        N, _, M = gates.shape
        t = cuda.grid(1)
        if t < N * M:
            n, j = t // M, t % M
            i = sig(gates[n, 0, j], one)
            f = sig(gates[n, 1, j], one)
            g = math.tanh(gates[n, 2, j])
            o = sig(gates[n, 3, j], one)
            cc = f * c[n, j] + i * g
            c_new[n, j] = cc
            h[n, j] = o * math.tanh(cc)
            acts[n, 0, j] = i
            acts[n, 1, j] = f
            acts[n, 2, j] = g
            acts[n, 3, j] = o

    @cuda.jit
    def lstm_backward(acts, c, c_new, gh, gc, g_gates, g_c, one):
        N, _, M = acts.shape
        t = cuda.grid(1)
        if t < N * M:
            n, j = t // M, t % M
            i, f, g, o = acts[n, 0, j], acts[n, 1, j], acts[n, 2, j], acts[n, 3, j]
            tau = math.tanh(c_new[n, j])
            delta = gc[n, j] + gh[n, j] * o * (one - tau * tau)
            g_gates[n, 0, j] = delta * g * i * (one - i)
            g_gates[n, 1, j] = delta * c[n, j] * f * (one - f)
            g_gates[n, 2, j] = delta * i * (one - g * g)
            g_gates[n, 3, j] = gh[n, j] * tau * o * (one - o)
            g_c[n, j] = delta * f

    @cuda.jit
    def gru_forward(gi, gh, h, h_new, acts, one):
        N, _, M = gi.shape
        t = cuda.grid(1)
        if t < N * M:
            n, j = t // M, t % M
            r = sig(gi[n, 0, j] + gh[n, 0, j], one)
            z = sig(gi[n, 1, j] + gh[n, 1, j], one)
            nn = math.tanh(gi[n, 2, j] + r * gh[n, 2, j])
            h_new[n, j] = (one - z) * nn + z * h[n, j]
            acts[n, 0, j] = r
            acts[n, 1, j] = z
            acts[n, 2, j] = nn

    @cuda.jit
    def gru_backward(acts, gh, h, gy, g_gi, g_gh, g_h, one):
        N, _, M = acts.shape
        t = cuda.grid(1)
        if t < N * M:
            n, j = t // M, t % M
            r, z, nn, g = acts[n, 0, j], acts[n, 1, j], acts[n, 2, j], gy[n, j]
            dn = g * (one - z) * (one - nn * nn)
            dz = g * (h[n, j] - nn) * z * (one - z)
            dr = dn * gh[n, 2, j] * r * (one - r)
            g_gi[n, 0, j] = dr
            g_gi[n, 1, j] = dz
            g_gi[n, 2, j] = dn
            g_gh[n, 0, j] = dr
            g_gh[n, 1, j] = dz
            g_gh[n, 2, j] = dn * r
            g_h[n, j] = g * z

    return dict(lstm_forward=lstm_forward, lstm_backward=lstm_backward,
                gru_forward=gru_forward, gru_backward=gru_backward)


def _launch(name, like, *args):
    launch(cuda_kernels(_build)[name], like.shape[0] * like.shape[2], *args, like.dtype.type(1))


def lstm_forward_cuda(gates, c, h=None, c_new=None, acts=None):
    """CUDA version of :func:`lstm_forward_cpu` (a thread per element of c)."""
    _check("lstm_forward", gates, 4, c)
    h, c_new, acts = _outputs(array_module_of(gates), gates, (c.shape, c.shape, gates.shape),
                              (h, c_new, acts))
    _launch("lstm_forward", gates, gates, c, h, c_new, acts)
    return h, c_new, acts


def lstm_backward_cuda(acts, c, c_new, gh, gc, g_gates=None, g_c=None):
    """CUDA version of :func:`lstm_backward_cpu`."""
    _check("lstm_backward", acts, 4, c, c_new, gh, gc)
    g_gates, g_c = _outputs(array_module_of(acts), acts, (acts.shape, c.shape), (g_gates, g_c))
    _launch("lstm_backward", acts, acts, c, c_new, gh, gc, g_gates, g_c)
    return g_gates, g_c


def gru_forward_cuda(gi, gh, h, h_new=None, acts=None):
    """CUDA version of :func:`gru_forward_cpu`."""
    _check("gru_forward", gi, 3, h)
    _check("gru_forward", gh, 3, h)
    h_new, acts = _outputs(array_module_of(gi), gi, (h.shape, gi.shape), (h_new, acts))
    _launch("gru_forward", gi, gi, gh, h, h_new, acts)
    return h_new, acts


def gru_backward_cuda(acts, gh, h, gy, g_gi=None, g_gh=None, g_h=None):
    """CUDA version of :func:`gru_backward_cpu`."""
    _check("gru_backward", acts, 3, h, gy)
    _check("gru_backward", gh, 3, h)
    g_gi, g_gh, g_h = _outputs(array_module_of(acts), acts, (acts.shape, acts.shape, h.shape),
                               (g_gi, g_gh, g_h))
    _launch("gru_backward", acts, acts, gh, h, gy, g_gi, g_gh, g_h)
    return g_gi, g_gh, g_h


# ================================================================ dispatch
def _on_cpu(device):
    return str(device) == "cpu"


def lstm_forward(gates, c, device="cpu", **out):
    """``(h', c', acts)`` on ``device`` ("cpu": numba.njit; "cuda": numba.cuda)."""
    return (lstm_forward_cpu if _on_cpu(device) else lstm_forward_cuda)(gates, c, **out)


def lstm_grad(acts, c, c_new, gh, gc, device="cpu", **out):
    """``(∂gates, ∂c)`` on ``device``."""
    return (lstm_backward_cpu if _on_cpu(device) else lstm_backward_cuda)(acts, c, c_new, gh,
                                                                          gc, **out)


def gru_forward(gi, gh, h, device="cpu", **out):
    """``(h', acts)`` on ``device``."""
    return (gru_forward_cpu if _on_cpu(device) else gru_forward_cuda)(gi, gh, h, **out)


def gru_grad(acts, gh, h, gy, device="cpu", **out):
    """``(∂gi, ∂gh, ∂h)`` on ``device``."""
    return (gru_backward_cpu if _on_cpu(device) else gru_backward_cuda)(acts, gh, h, gy, **out)
