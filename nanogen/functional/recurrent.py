"""Recurrent cells: ``lstm_cell_gates`` and ``gru_cell_gates``, the pointwise gate arithmetic of
the LSTM and GRU cells after their two matmuls, fused into one kernel forward and one backward
(``nanogen.kernels.recurrent``); and ``recurrence``, a whole layer's time loop, which the
``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` layers run.

LSTM cell (gates chunked along axis 1 in PyTorch's order i, f, g, o)::

    a = W_ih x + b_ih + W_hh h + b_hh                       (N, 4H, *rest)
    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
    c' = f c + i g            h' = o tanh(c')                                        (1)

GRU cell (order r, z, n)::

    gi = W_ih x + b_ih,   gh = W_hh h + b_hh                (N, 3H, *rest)
    r = σ(gi_r + gh_r)   z = σ(gi_z + gh_z)   n = tanh(gi_n + r gh_n)
    h' = (1 - z) n + z h                                                             (2)

``rest`` may be empty (a cell of ``nn.LSTMCell``) or spatial dims (a row of PixelRNN's Row
LSTM, with the gates from convolutions): the arithmetic is elementwise over it.

Backward
--------
With τ = tanh(c') and the cotangents (gh, gc) of (h', c') for the LSTM, gy of h' for the GRU::

    LSTM: δ = gc + gh o (1 - τ²)
          ∂a_i = δ g i(1 - i)   ∂a_f = δ c f(1 - f)   ∂a_g = δ i (1 - g²)   ∂a_o = gh τ o(1 - o)
          ∂c = δ f                                                                   (3)
    GRU:  ∂n' = gy (1 - z)(1 - n²)     ∂a_z = gy (h - n) z(1 - z)     ∂a_r = ∂n' gh_n r(1 - r)
          ∂gi = (∂a_r, ∂a_z, ∂n')      ∂gh = (∂a_r, ∂a_z, r ∂n')      ∂h = gy z          (4)

A plain backward (no ``create_graph``) runs the fused backward kernel on the activations the
forward saved.  Under ``create_graph`` the same equations are written with nanogen ops
(recomputing the activations from the pre-activations), so the gradient is itself
differentiable: gradients of gradients work.

A Function has one output, so the LSTM cell returns ``(h', c')`` as two views of one packed
(2, N, H, *rest) array; their gradients meet in one buffer again.

The layers' time loop
---------------------
``recurrence`` runs one layer in one direction over a whole sequence, given the input
projection of every step, ``xproj = x W_ihᵀ + b`` (T, N, G), computed by the caller as one
matmul.  Its forward (:class:`Recurrence`) is a Python loop over the steps on arrays: one
product ``h W_hhᵀ`` and one fused gate kernel a step, written straight into the output buffer,
the activations of every step saved.  Its backward runs the loop backwards with the fused
backward kernels and one product ``∂a W_hh`` a step, and forms the weight gradient
Σ_t ∂a_tᵀ h_{t-1} as one matmul over all steps at the end -- backpropagation through time with
no per-step graph.  The per-step products run on one BLAS thread (:func:`_step_blas`); the
big products around the loop use every core.  Under ``create_graph`` it rebuilds the layer
from the differentiable cell ops above and differentiates that (the second-order path is
composite).
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from ..autograd import Function, grad, is_grad_enabled
from ..kernels import blas
from ..tensor import Tensor
from .activation import relu
from .elementwise import sigmoid, tanh
from .linalg import _matmul, linear
from .shape import cat, stack

__all__ = ["lstm_cell_gates", "gru_cell_gates"]


def _kernels():
    from ..kernels import recurrent     # numba is imported on first use, not with nanogen
    return recurrent


def _rows(xp, a, N, K=None):
    """``a`` (N, K·H, *rest) or (N, H, *rest) as the kernels' C-contiguous (N, K, M) or (N, M)
    view (a copy only when ``a`` is not contiguous)."""
    a = xp.ascontiguousarray(a)
    M = math.prod(a.shape[1:]) // (K or 1)
    return a.reshape((N, K, M) if K else (N, M))


def _wrap(fn, *arrays):
    """Gradient arrays as Tensors on the inputs' device (None stays None)."""
    return tuple(None if a is None else Tensor._make(a, fn.inputs[0]._device) for a in arrays)


# ================================================================ LSTM cell
class LSTMCellGates(Function):
    """(gates (N, 4H, *rest), c (N, H, *rest)) -> [h', c'] packed as (2, N, H, *rest), eq. (1);
    saves the activations (i, f, g, o) for the backward."""

    keep_output = True

    def forward(self, gates, c):
        xp, N = self.xp, c.shape[0]
        out = xp.empty((2,) + c.shape, dtype=c.dtype)
        c2 = _rows(xp, c, N)
        _, _, acts = _kernels().lstm_forward(_rows(xp, gates, N, 4), c2, self.device,
                                             h=out[0].reshape(c2.shape),
                                             c_new=out[1].reshape(c2.shape))
        if self.requires_grad:
            self.acts = acts
        return out

    def backward(self, gp):
        gates, c = self.inputs
        if is_grad_enabled():           # create_graph: the composite, differentiable eq. (3)
            return _lstm_gates_grad(gates, c, gp[0], gp[1])
        xp, N = self.xp, c.shape[0]
        gp = xp.ascontiguousarray(gp.data)
        c2 = _rows(xp, c.data, N)
        g_gates, g_c = _kernels().lstm_grad(self.acts, c2, self._out[1].reshape(c2.shape),
                                            gp[0].reshape(c2.shape), gp[1].reshape(c2.shape),
                                            self.device)
        return _wrap(self, g_gates.reshape(gates.shape), g_c.reshape(c.shape))


def _lstm_gates_grad(gates, c, gh, gc):
    """Eq. (3) with nanogen ops: (∂gates, ∂c), differentiable in every argument."""
    i, f, g, o = gates.chunk(4, 1)
    i, f, g, o = sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
    tau = tanh(f * c + i * g)
    delta = gc + gh * o * (1 - tau * tau)
    g_gates = cat([delta * g * i * (1 - i), delta * c * f * (1 - f), delta * i * (1 - g * g),
                   gh * tau * o * (1 - o)], 1)
    return g_gates, delta * f


def lstm_cell_gates(gates, c):
    """``(h', c')`` of an LSTM cell from its gate pre-activations, eq. (1) of the module
    docstring: ``gates = W_ih x + b_ih + W_hh h + b_hh`` of shape (N, 4H, *rest), chunked along
    axis 1 in PyTorch's order i, f, g, o, and the cell state ``c`` of shape (N, H, *rest).
    One fused kernel forward and one backward; differentiable in both arguments, to any order.

    >>> import nanogen as ng
    >>> h, c = lstm_cell_gates(ng.zeros(2, 12), ng.ones(2, 3))
    >>> tuple(h.shape), round(c[0, 0].item(), 4)        # c' = σ(0)·1 + σ(0)·tanh(0)
    ((2, 3), 0.5)
    """
    _check_cell("lstm_cell_gates", 4, "gates", gates, "c", c)
    packed = LSTMCellGates.apply(gates, c)
    return packed[0], packed[1]


# ================================================================ GRU cell
class GRUCellGates(Function):
    """(gi, gh (N, 3H, *rest), h (N, H, *rest)) -> h', eq. (2); saves (r, z, n)."""

    def forward(self, gi, gh, h):
        xp, N = self.xp, h.shape[0]
        out = xp.empty(h.shape, dtype=h.dtype)
        h2 = _rows(xp, h, N)
        _, acts = _kernels().gru_forward(_rows(xp, gi, N, 3), _rows(xp, gh, N, 3), h2,
                                         self.device, h_new=out.reshape(h2.shape))
        if self.requires_grad:
            self.acts = acts
        return out

    def backward(self, gy):
        gi, gh, h = self.inputs
        if is_grad_enabled():           # create_graph: the composite, differentiable eq. (4)
            return _gru_gates_grad(gi, gh, h, gy)
        xp, N = self.xp, h.shape[0]
        h2 = _rows(xp, h.data, N)
        grads = _kernels().gru_grad(self.acts, _rows(xp, gh.data, N, 3), h2,
                                    _rows(xp, gy.data, N), self.device)
        return _wrap(self, *(g.reshape(t.shape) for g, t in zip(grads, self.inputs)))


def _gru_gates_grad(gi, gh, h, gy):
    """Eq. (4) with nanogen ops: (∂gi, ∂gh, ∂h), differentiable in every argument."""
    ir, iz, in_ = gi.chunk(3, 1)
    hr, hz, hn = gh.chunk(3, 1)
    r, z = sigmoid(ir + hr), sigmoid(iz + hz)
    n = tanh(in_ + r * hn)
    dn = gy * (1 - z) * (1 - n * n)
    dz = gy * (h - n) * z * (1 - z)
    dr = dn * hn * r * (1 - r)
    return cat([dr, dz, dn], 1), cat([dr, dz, dn * r], 1), gy * z


def gru_cell_gates(gi, gh, h):
    """``h'`` of a GRU cell, eq. (2) of the module docstring: ``gi = W_ih x + b_ih`` and
    ``gh = W_hh h + b_hh``, each (N, 3H, *rest) in PyTorch's order r, z, n, and the hidden
    state ``h`` (N, H, *rest).  One fused kernel forward and one backward; differentiable in
    every argument, to any order.

    >>> import nanogen as ng
    >>> tuple(gru_cell_gates(ng.zeros(2, 9), ng.zeros(2, 9), ng.ones(2, 3)).shape)
    (2, 3)
    """
    _check_cell("gru_cell_gates", 3, "gi", gi, "h", h)
    if tuple(gh.shape) != tuple(gi.shape):
        raise ValueError(f"gru_cell_gates: gi and gh must have the same shape (N, 3H, *rest), "
                         f"got {tuple(gi.shape)} and {tuple(gh.shape)}")
    return GRUCellGates.apply(gi, gh, h)


def _check_cell(op, K, gname, gates, sname, state):
    """gates (N, K·H, *rest) and a state (N, H, *rest), floating, or a clear error."""
    for name, t in ((gname, gates), (sname, state)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        if t.dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be floating, got {t.dtype} (use .float())")
    gs, ss = tuple(gates.shape), tuple(state.shape)
    if len(ss) < 2 or gs != (ss[0], K * ss[1]) + ss[2:]:
        want = (ss[0], K * ss[1]) + ss[2:] if len(ss) >= 2 else f"(N, {K}H, *rest)"
        raise ValueError(f"{op}: {gname} of shape {gs} does not fit {sname} of shape {ss}: "
                         f"expected {sname} (N, H, *rest) and {gname} (N, {K}H, *rest) = {want}")


# ================================================================ a layer's time loop
MODES = ("lstm", "gru", "rnn_tanh", "rnn_relu")


class Recurrence(Function):
    """One layer, one direction, over a whole sequence (the module docstring's time loop).

    Inputs: ``xproj`` (T, N, G), ``w_hh`` (G, H), ``h0`` (N, H), then ``c0`` (N, H) for the
    LSTM and ``b_hh`` (G,) for a GRU with bias (the LSTM and RNN fold b_hh into xproj).
    Output, packed: the hidden state of every step (T, N, H) in time order, and for the LSTM
    one more row, the final cell state: (T + 1, N, H).  ``reverse`` runs from t = T-1 to 0."""

    keep_output = True

    def forward(self, xproj, w_hh, h0, *rest):
        xp, K, mode = self.xp, _kernels(), self.mode
        T, N, G = xproj.shape
        H = w_hh.shape[1]
        lstm, gru = mode == "lstm", mode == "gru"
        dtype = xproj.dtype
        xproj = xp.ascontiguousarray(xproj)
        w_t = xp.ascontiguousarray(w_hh.T)                  # (H, G): a row-major GEMM operand
        out = xp.empty((T + lstm, N, H), dtype=dtype)
        acts = xp.empty((T, N, G), dtype=dtype) if lstm or gru else None
        cs = xp.empty((T, N, H), dtype=dtype) if lstm else None       # c' of every step
        ghs = xp.empty((T, N, G), dtype=dtype) if gru else None        # W_hh h + b_hh
        pre = xp.empty((N, G), dtype=dtype)
        h, c = xp.ascontiguousarray(h0), xp.ascontiguousarray(rest[0]) if lstm else None
        with _step_blas(xp):
            for t in self.steps(T):
                if gru:
                    xp.matmul(h, w_t, out=ghs[t])
                    if self.has_bias:
                        ghs[t] += rest[0]
                    K.gru_forward(xproj[t].reshape(N, 3, H), ghs[t].reshape(N, 3, H), h,
                                  self.device, h_new=out[t], acts=acts[t].reshape(N, 3, H))
                elif lstm:
                    xp.matmul(h, w_t, out=pre)
                    pre += xproj[t]
                    K.lstm_forward(pre.reshape(N, 4, H), c, self.device, h=out[t],
                                   c_new=cs[t], acts=acts[t].reshape(N, 4, H))
                    c = cs[t]
                else:
                    xp.matmul(h, w_t, out=out[t])
                    out[t] += xproj[t]
                    if mode == "rnn_tanh":
                        xp.tanh(out[t], out=out[t])
                    else:
                        xp.maximum(out[t], 0, out=out[t])
                h = out[t]
        if lstm:
            out[T] = c
        if self.requires_grad:
            self.acts, self.cs, self.ghs = acts, cs, ghs
        return out

    def steps(self, T):
        return range(T - 1, -1, -1) if self.reverse else range(T)

    def backward(self, gp):
        if is_grad_enabled():               # create_graph: differentiate the composite layer
            wanted = [i for i, need in enumerate(self.needs_input_grad) if need]
            packed = recurrence_composite(self.mode, *self.inputs, reverse=self.reverse,
                                          has_bias=self.has_bias)
            grads = grad(packed, [self.inputs[i] for i in wanted], grad_outputs=gp,
                         create_graph=True, allow_unused=True)
            out = [None] * len(self.inputs)
            for i, g in zip(wanted, grads):
                out[i] = g
            return tuple(out)
        return _wrap(self, *self._backward_arrays(gp.data))

    def _backward_arrays(self, gp):
        """Backpropagation through time on arrays: (∂xproj, ∂w_hh, ∂h0[, ∂c0 | ∂b_hh])."""
        xp, K, mode = self.xp, _kernels(), self.mode
        xproj, w_hh, h0 = (t.data for t in self.inputs[:3])
        T, N, G = xproj.shape
        H = w_hh.shape[1]
        lstm, gru = mode == "lstm", mode == "gru"
        out = self._out
        dtype = out.dtype
        w, h0 = xp.ascontiguousarray(w_hh), xp.ascontiguousarray(h0)
        dgates = xp.empty((T, N, G), dtype=dtype)           # ∂ of the pre-activations (∂gi)
        dgh = xp.empty((T, N, G), dtype=dtype) if gru else dgates    # ∂(W_hh h + b_hh)
        dh = xp.zeros((N, H), dtype=dtype)                  # what h_t passes back to h_{t-1}
        g_h, direct = xp.empty((N, H), dtype=dtype), xp.empty((N, H), dtype=dtype)
        if lstm:
            c0 = xp.ascontiguousarray(self.inputs[3].data)
            dc, dc_next = xp.array(gp[T], order="C"), xp.empty((N, H), dtype=dtype)
        steps = list(self.steps(T))
        with _step_blas(xp):
            for k in range(T - 1, -1, -1):
                t = steps[k]
                xp.add(gp[t], dh, out=g_h)                  # the loss's share + the recurrence's
                if lstm:
                    c_prev = self.cs[steps[k - 1]] if k else c0
                    K.lstm_grad(self.acts[t].reshape(N, 4, H), c_prev, self.cs[t], g_h, dc,
                                self.device, g_gates=dgates[t].reshape(N, 4, H), g_c=dc_next)
                    dc, dc_next = dc_next, dc
                    xp.matmul(dgates[t], w, out=dh)
                elif gru:
                    h_prev = out[steps[k - 1]] if k else h0
                    K.gru_grad(self.acts[t].reshape(N, 3, H), self.ghs[t].reshape(N, 3, H),
                               h_prev, g_h, self.device, g_gi=dgates[t].reshape(N, 3, H),
                               g_gh=dgh[t].reshape(N, 3, H), g_h=direct)   # gy z
                    xp.matmul(dgh[t], w, out=dh)
                    dh += direct
                else:
                    if mode == "rnn_tanh":
                        xp.multiply(g_h, 1 - out[t] * out[t], out=dgates[t])
                    else:
                        xp.multiply(g_h, out[t] > 0, out=dgates[t])
                    xp.matmul(dgates[t], w, out=dh)
        need = self.needs_input_grad
        g_w = None
        if need[1]:     # Σ_t ∂a_tᵀ h_{t-1}: the steps after the first meet the outputs before them
            first, rest = (T - 1, slice(0, T - 1)) if self.reverse else (0, slice(1, T))
            prev = slice(1, T) if self.reverse else slice(0, T - 1)
            g_w = _matmul(xp, dgh[first].T, h0)
            if T > 1:
                g_w += _matmul(xp, dgh[rest].reshape(-1, G).T, out[prev].reshape(-1, H))
        grads = [dgates, g_w, dh]
        if lstm:
            grads.append(dc)
        elif gru and self.has_bias:
            grads.append(dgh.sum(axis=(0, 1)))
        return [g if n else None for g, n in zip(grads, need)]


def _step_blas(xp):
    """The context of a time loop's per-step products: one BLAS thread on the CPU.

    A (32, 256) x (256, 1024) step product is too small to share between cores: NumPy's
    OpenBLAS took 0.17 ms on two threads of the idle 2-core VM, 0.23-0.25 ms on one thread
    of the busy VM, but 1.7-45 ms on two threads of the busy VM (its threads' spin-waits miss
    each other there).  The big products around the loop keep every core."""
    return blas.single_threaded("numpy") if xp is np else contextlib.nullcontext()


def recurrence_composite(mode, xproj, w_hh, h0, *rest, reverse=False, has_bias=False):
    """:class:`Recurrence`'s packed output built from differentiable nanogen ops (the cell ops
    above, a ``linear`` a step): the create_graph path, and the tests' reference."""
    T = xproj.shape[0]
    c = rest[0] if mode == "lstm" else None
    b_hh = rest[0] if mode == "gru" and has_bias else None
    h, outs = h0, [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        gh = linear(h, w_hh, b_hh)
        if mode == "lstm":
            h, c = lstm_cell_gates(xproj[t] + gh, c)
        elif mode == "gru":
            h = gru_cell_gates(xproj[t], gh, h)
        else:
            h = (tanh if mode == "rnn_tanh" else relu)(xproj[t] + gh)
        outs[t] = h
    return stack(outs + ([c] if mode == "lstm" else []))


def recurrence(mode, xproj, w_hh, h0, c0=None, b_hh=None, reverse=False):
    """One recurrent layer in one direction over a sequence: ``xproj`` (T, N, G) the input
    projection of every step (with b_ih, and b_hh too except for the GRU), ``w_hh`` (G, H),
    ``h0`` (N, H), ``c0`` (N, H) for the LSTM, ``b_hh`` (G,) for the GRU.  ``mode`` is one of
    "lstm", "gru", "rnn_tanh", "rnn_relu".  Returns ``(output (T, N, H), h_n, c_n or None)``,
    views of one packed result."""
    if mode not in MODES:
        raise ValueError(f"recurrence: mode must be one of {MODES}, got {mode!r}")
    T = xproj.shape[0]
    inputs = [xproj, w_hh, h0] + ([c0] if mode == "lstm" else []) + \
        ([b_hh] if mode == "gru" and b_hh is not None else [])
    packed = Recurrence.apply(*inputs, mode=mode, reverse=bool(reverse),
                              has_bias=mode == "gru" and b_hh is not None)
    output = packed[:T] if mode == "lstm" else packed
    h_n = packed[0 if reverse else T - 1]
    return output, h_n, (packed[T] if mode == "lstm" else None)
