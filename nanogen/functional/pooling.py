"""Pooling: max_pool1d/2d, avg_pool1d/2d, adaptive_avg_pool1d/2d, adaptive_max_pool1d/2d.

Every op works on the planes of an (N, C, H, W) input (an unbatched (C, H, W) input gets a batch
dim of 1; the 1-d ops are the 2-d ones with H = 1) through the kernels of
:mod:`nanogen.kernels.pooling`, whose separable windows [hs, he) x [ws, we) describe all of them.

Max pooling is a selection, so it closes under differentiation with two ops::

    MaxPoolGather   y[n, c, o] = x[n, c, idx[n, c, o]]      (forward: the kernel's max and argmax)
    MaxPoolScatter  gx[n, c, i] = Σ_{o : idx[n, c, o] = i} gy[n, c, o]

each the other's backward (the argmax indices are constants of the graph: the gradient of a max
is the gradient of the element it picked; ties go to the first maximum, as in PyTorch).

Average pooling is linear, y = A x with A[o, i] = rh[oh]·rw[ow] for i in o's window::

    WindowAverage           y = A x
    WindowAverageTranspose  gx = Aᵀ gy

again each the other's backward, so gradients of any order exist.
"""
from __future__ import annotations

import functools

import numpy as np

from ..autograd import Function
from ..tensor import Tensor

__all__ = ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
           "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d"]


def _kernels():
    from ..kernels import pooling      # imported on first use: numba loads only when needed
    return pooling


# ================================================================ plans: one call's index arrays
class _Plan:
    """The host arrays of one call's index maps (integer arrays) and weights (float arrays,
    kept in float64 and cast to the data's dtype), with device copies made on first use.
    Plans are cached by their parameters, so repeated calls reuse the device copies."""

    def __init__(self, H, W, out, **arrays):
        self.H, self.W, self.out = H, W, out
        self.host = arrays
        self._device = {}

    def get(self, xp, dtype, *names):
        key = (xp.__name__, str(dtype))
        cache = self._device.get(key)
        if cache is None:
            cache = self._device[key] = {
                name: xp.asarray(a, dtype=dtype if a.dtype.kind == "f" else a.dtype)
                for name, a in self.host.items()}
        return tuple(cache[n] for n in names)


def _window_plan(H, W, hs, he, ws, we, dilation=(1, 1), **extra):
    """A plan of separable windows (rows stepping by ``dilation[0]``, columns by
    ``dilation[1]``), with the covering ranges their adjoints gather over."""
    k = _kernels()
    lh, uh = k.covering_range(hs, he, H)
    lw, uw = k.covering_range(ws, we, W)
    plan = _Plan(H, W, (hs.size, ws.size), hs=hs, he=he, ws=ws, we=we, lh=lh, uh=uh, lw=lw,
                 uw=uw, **extra)
    plan.dh, plan.dw = dilation
    return plan


@functools.lru_cache(maxsize=256)
def _max_plan(H, W, out, kernel, stride, padding, dilation):
    k = _kernels()
    hs, he = k.pool_windows(H, out[0], kernel[0], stride[0], padding[0], dilation[0])
    ws, we = k.pool_windows(W, out[1], kernel[1], stride[1], padding[1], dilation[1])
    valid = np.outer(k.nonempty_windows(hs, he, H, dilation[0]),
                     k.nonempty_windows(ws, we, W, dilation[1]))
    if valid.all():
        return _window_plan(H, W, hs, he, ws, we, dilation)
    # windows wholly in the padding (a tiny input, dilation) give -inf with an index that may
    # lie outside the plane (PyTorch's): their gradient is masked out
    return _window_plan(H, W, hs, he, ws, we, dilation, valid=valid.astype(np.float64))


@functools.lru_cache(maxsize=256)
def _avg_plan(H, W, out, kernel, stride, padding, count_include_pad, divisor_override):
    k = _kernels()
    hs, he, rh = k.avg_pool_windows(H, out[0], kernel[0], stride[0], padding[0],
                                    count_include_pad, divisor_override, first_axis=True)
    ws, we, rw = k.avg_pool_windows(W, out[1], kernel[1], stride[1], padding[1],
                                    count_include_pad, divisor_override, first_axis=False)
    return _window_plan(H, W, hs, he, ws, we, rh=rh, rw=rw)


@functools.lru_cache(maxsize=256)
def _adaptive_plan(H, W, out):
    k = _kernels()
    hs, he = k.adaptive_windows(H, out[0])
    ws, we = k.adaptive_windows(W, out[1])
    rh, rw = 1.0 / (he - hs), 1.0 / (we - ws)
    return _window_plan(H, W, hs, he, ws, we, rh=rh, rw=rw)


def _planes(x, xp):
    """An (N, C, H, W) array as contiguous (N·C, H, W) planes."""
    return xp.ascontiguousarray(x).reshape(-1, x.shape[-2], x.shape[-1])


# ================================================================ max pooling: gather <-> scatter
class MaxPoolGather(Function):
    """y[n, c, o] = x[n, c, idx[n, c, o]] (idx: flat index into each H·W plane).

    As max pooling's forward the values come from the kernel (``values``); as MaxPoolScatter's
    backward it is a plain gather.  Backward: MaxPoolScatter."""

    def forward(self, x):
        if self.values is not None:
            values, self.values = self.values, None
            return values
        xp, (N, C, H, W), (Ho, Wo) = self.xp, x.shape, self.idx.shape[2:]
        flat = xp.ascontiguousarray(x).reshape(N, C, H * W)
        idx = self.idx.reshape(N, C, Ho * Wo)
        valid = _valid(self.plan, xp, x.dtype)
        if valid is not None:
            idx = xp.clip(idx, 0, flat.shape[2] - 1)
        y = xp.take_along_axis(flat, idx, axis=2).reshape(self.idx.shape)
        return y if valid is None else y * valid

    def backward(self, gy):
        return MaxPoolScatter.apply(gy, idx=self.idx, plan=self.plan)


class MaxPoolScatter(Function):
    """gx[n, c, i] = Σ_{o : idx[n, c, o] = i} gy[n, c, o]  (the adjoint of MaxPoolGather).
    Backward: MaxPoolGather of the incoming gradient at the same indices."""

    def forward(self, gy):
        k, g, xp = _kernels(), self.plan, self.xp
        N, C, Ho, Wo = gy.shape
        valid = _valid(g, xp, gy.dtype)
        planes = _planes(gy if valid is None else gy * valid, xp)
        idx = self.idx.reshape(-1, Ho, Wo)
        if self.device == "cpu":
            gx = k.max_scatter_cpu(planes, idx, g.H, g.W)
        else:
            gx = k.max_scatter_cuda(planes, idx, *g.get(xp, gy.dtype, "lh", "uh", "lw", "uw"))
        return gx.reshape(N, C, g.H, g.W)

    def backward(self, ggx):
        return MaxPoolGather.apply(ggx, idx=self.idx, plan=self.plan, values=None)


def _valid(plan, xp, dtype):
    """The 0/1 mask of non-empty windows, or None when every window is non-empty."""
    return plan.get(xp, dtype, "valid")[0] if "valid" in plan.host else None


def _max_pool(x, plan, return_indices, op):
    """Max pooling of an (N, C, H, W) tensor over ``plan``'s windows: (values, indices)."""
    k, xp = _kernels(), x._xp()
    planes = _planes(x.data, xp)
    args = plan.get(xp, x.data.dtype, "hs", "he") + (plan.dh,) + \
        plan.get(xp, x.data.dtype, "ws", "we") + (plan.dw,)
    if x._device == "cpu":
        y, idx = k.max_pool_cpu(planes, *args)
    else:
        y, idx = k.max_pool_cuda(planes, *args)
    shape = x.shape[:2] + plan.out
    y, idx = y.reshape(shape), idx.reshape(shape)
    out = MaxPoolGather.apply(x, idx=idx, plan=plan, values=y)
    return (out, Tensor._make(idx, x._device)) if return_indices else out


# ================================================================ averages: A <-> Aᵀ
class WindowAverage(Function):
    """y[n, c, oh, ow] = rh[oh]·rw[ow]·Σ_{window} x  (average pooling, adaptive or not).
    Backward: WindowAverageTranspose."""

    def forward(self, x):
        k, g, xp = _kernels(), self.plan, self.xp
        args = g.get(xp, x.dtype, "hs", "he", "rh", "ws", "we", "rw")
        fn = k.window_avg_cpu if self.device == "cpu" else k.window_avg_cuda
        return fn(_planes(x, xp), *args).reshape(x.shape[:2] + g.out)

    def backward(self, gy):
        return WindowAverageTranspose.apply(gy, plan=self.plan)


class WindowAverageTranspose(Function):
    """gx[n, c, ih, iw] = Σ_{oh ∈ [lh, uh)} rh[oh] Σ_{ow ∈ [lw, uw)} rw[ow] gy[n, c, oh, ow]
    (the adjoint of WindowAverage, one gather per input element).  Backward: WindowAverage."""

    def forward(self, gy):
        k, g, xp = _kernels(), self.plan, self.xp
        if self.device == "cpu":    # a scatter per plane (one thread owns a plane)
            gx = k.window_avg_adjoint_cpu(_planes(gy, xp), *g.get(
                xp, gy.dtype, "hs", "he", "rh", "ws", "we", "rw"), g.H, g.W)
        else:                       # a gather per input element
            gx = k.window_avg_adjoint_cuda(_planes(gy, xp), *g.get(
                xp, gy.dtype, "lh", "uh", "rh", "lw", "uw", "rw"))
        return gx.reshape(gy.shape[:2] + (g.H, g.W))

    def backward(self, ggx):
        return WindowAverage.apply(ggx, plan=self.plan)


# ================================================================ argument handling
def _tuple(v, n, what, op):
    if isinstance(v, (list, tuple)):
        if len(v) == 1 and n > 1:
            v = tuple(v) * n
        if len(v) != n:
            raise ValueError(f"{op}: {what} must be an int or a tuple of {n} ints, got {v!r}")
        return tuple(int(a) for a in v)
    return (int(v),) * n


def _spatial(input, op, dims):
    """``input`` as (N, C, H, W) and a function restoring the caller's layout: 2-d ops take
    (N, C, H, W) or unbatched (C, H, W); 1-d ops (N, C, L) or (C, L), with H = 1."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    want = dims + 2
    if input.ndim not in (want - 1, want):
        names = "(N, C, H, W) or unbatched (C, H, W)" if dims == 2 else \
            "(N, C, L) or unbatched (C, L)"
        raise ValueError(f"{op}: expects a {want}-D {names} input, got shape "
                         f"{tuple(input.shape)}")
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: expects a floating-point input, got {input.dtype}")
    if any(s == 0 for s in input.shape[-dims - 1:]):
        raise ValueError(f"{op}: channel and spatial sizes must be non-zero, got shape "
                         f"{tuple(input.shape)}")
    batched = input.ndim == want
    x = input if batched else input.unsqueeze(0)
    if dims == 1:
        x = x.unsqueeze(2)

    def restore(t):
        if dims == 1:
            t = t.squeeze(2)
        return t if batched else t.squeeze(0)
    return x, restore


def _pool_params(op, dims, kernel_size, stride, padding, dilation):
    k = _tuple(kernel_size, dims, "kernel_size", op)
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else \
        _tuple(stride, dims, "stride", op)
    p = _tuple(padding, dims, "padding", op)
    d = _tuple(dilation, dims, "dilation", op)
    if min(k) <= 0 or min(s) <= 0 or min(d) <= 0:
        raise ValueError(f"{op}: kernel_size, stride and dilation must be positive, got "
                         f"kernel_size={k}, stride={s}, dilation={d}")
    if min(p) < 0:
        raise ValueError(f"{op}: padding must be non-negative, got {p}")
    if any(pp > kk // 2 for kk, pp in zip(k, p)):     # PyTorch's rule
        raise ValueError(f"{op}: padding should be at most half of the kernel size, got "
                         f"padding={p} with kernel_size={k}")
    if dims == 1:          # the 1-d ops are 2-d ones with a window of height 1
        k, s, p, d = (1,) + k, (1,) + s, (0,) + p, (1,) + d
    return k, s, p, d


def _pool_out(x, op, k, s, p, d, ceil_mode):
    H, W = x.shape[-2:]
    kp = _kernels()
    out = (kp.pool_output_size(H, k[0], s[0], p[0], d[0], ceil_mode),
           kp.pool_output_size(W, k[1], s[1], p[1], d[1], ceil_mode))
    if min(out) < 1:
        raise ValueError(f"{op}: output size is too small: input of spatial size {(H, W)} with "
                         f"kernel_size={k}, stride={s}, padding={p}, dilation={d} gives {out}")
    return out


# ================================================================ public ops
def _max_pool_nd(input, dims, op, kernel_size, stride, padding, dilation, ceil_mode,
                 return_indices):
    k, s, p, d = _pool_params(op, dims, kernel_size, stride, padding, dilation)
    x, restore = _spatial(input, op, dims)
    out = _pool_out(x, op, k, s, p, d, ceil_mode)
    plan = _max_plan(x.shape[2], x.shape[3], out, k, s, p, d)
    res = _max_pool(x, plan, return_indices, op)
    return (restore(res[0]), restore(res[1])) if return_indices else restore(res)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-d max pooling (PyTorch's semantics: implicit -inf padding, dilation, ceil_mode,
    ``return_indices`` gives flat indices into each H·W plane)."""
    return _max_pool_nd(input, 2, "max_pool2d", kernel_size, stride, padding, dilation,
                        ceil_mode, return_indices)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """1-d max pooling of (N, C, L) or (C, L); indices index L."""
    return _max_pool_nd(input, 1, "max_pool1d", kernel_size, stride, padding, dilation,
                        ceil_mode, return_indices)


def _avg_pool_nd(input, dims, op, kernel_size, stride, padding, ceil_mode, count_include_pad,
                 divisor_override):
    k, s, p, d = _pool_params(op, dims, kernel_size, stride, padding, 1)
    if divisor_override is not None and int(divisor_override) == 0:
        raise ValueError(f"{op}: divisor_override must not be zero")
    x, restore = _spatial(input, op, dims)
    out = _pool_out(x, op, k, s, p, d, ceil_mode)
    plan = _avg_plan(x.shape[2], x.shape[3], out, k, s, p, bool(count_include_pad),
                         None if divisor_override is None else int(divisor_override))
    return restore(WindowAverage.apply(x, plan=plan))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-d average pooling: the window sum over the padded count (``count_include_pad``), the
    count of input elements, or ``divisor_override``."""
    return _avg_pool_nd(input, 2, "avg_pool2d", kernel_size, stride, padding, ceil_mode,
                        count_include_pad, divisor_override)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    return _avg_pool_nd(input, 1, "avg_pool1d", kernel_size, stride, padding, ceil_mode,
                        count_include_pad, None)


def _adaptive_out(x, output_size, dims, op):
    sizes = output_size if isinstance(output_size, (list, tuple)) else (output_size,) * dims
    if len(sizes) != dims:
        raise ValueError(f"{op}: output_size must be an int or a tuple of {dims}, got "
                         f"{output_size!r}")
    ins = tuple(x.shape[4 - dims:])
    out = tuple(i if o is None else int(o) for i, o in zip(ins, sizes))
    if min(out) < 1:
        raise ValueError(f"{op}: output size must be positive, got {out} (output_size="
                         f"{output_size!r})")
    return (1,) + out if dims == 1 else out


def _adaptive(input, output_size, dims, op, kind, return_indices=False):
    x, restore = _spatial(input, op, dims)
    out = _adaptive_out(x, output_size, dims, op)
    plan = _adaptive_plan(x.shape[2], x.shape[3], out)
    if kind == "avg":
        return restore(WindowAverage.apply(x, plan=plan))
    res = _max_pool(x, plan, return_indices, op)
    return (restore(res[0]), restore(res[1])) if return_indices else restore(res)


def adaptive_avg_pool2d(input, output_size):
    """Average over the windows [⌊o·n/m⌋, ⌈(o+1)·n/m⌉) of each axis (n in, m out); a None in
    ``output_size`` keeps that axis's size."""
    return _adaptive(input, output_size, 2, "adaptive_avg_pool2d", "avg")


def adaptive_avg_pool1d(input, output_size):
    return _adaptive(input, output_size, 1, "adaptive_avg_pool1d", "avg")


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over the adaptive windows; ``return_indices`` as in max_pool2d."""
    return _adaptive(input, output_size, 2, "adaptive_max_pool2d", "max", return_indices)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    return _adaptive(input, output_size, 1, "adaptive_max_pool1d", "max", return_indices)

