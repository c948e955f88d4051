"""Resampling and padding: interpolate, pixel_shuffle, pixel_unshuffle, pad.

All of these are linear maps of the input, so each is a pair of ops, the map and its adjoint,
each the other's backward (gradients of any order follow):

* ``interpolate`` (nearest, nearest-exact, (bi)linear): separable maps given per axis by source
  taps (:mod:`nanogen.kernels.resample` holds the coordinate conventions and the kernels)::

      Resample           y = Lh x Lwᵀ       (per plane)
      ResampleTranspose  gx = Lhᵀ gy Lw

  ``mode="area"`` is adaptive average pooling, as in PyTorch.
* ``pixel_shuffle`` / ``pixel_unshuffle``: a reshape and a permutation, each the inverse (and so,
  being orthogonal, the adjoint) of the other::

      pixel_shuffle:  y[*, c, h·r + i, w·r + j] = x[*, c·r² + i·r + j, h, w]

* ``pad`` constant: a box of the input copied into a box of a constant-filled output
  (negative pads crop).  Its adjoint copies the output box back into zeros of the input's
  shape -- the same op with the boxes swapped (:class:`BoxCopy`).
* ``pad`` reflect / replicate / circular: a gather along each padded axis by a precomputed index
  map (``y[o] = x[m[o]]``), whose adjoint adds each output back at its source
  (``gx[i] = Σ_{o : m[o] = i} gy[o]``).  Each map is a few runs whose sources step evenly (the
  interior, each mirrored or wrapped strip, a replicated edge), so the output splits into
  blocks that are sliced copies -- and the adjoint into sliced adds -- on NumPy or CuPy alike,
  no kernel needed (:class:`AxisGather` / :class:`AxisScatter`).
"""
from __future__ import annotations

import functools
import itertools
import math
import numbers

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from .pooling import _adaptive, _Plan, _planes

__all__ = ["interpolate", "pixel_shuffle", "pixel_unshuffle", "pad"]


def _kernels():
    from ..kernels import resample      # imported on first use: numba loads only when needed
    return resample


# ================================================================ interpolate
class Resample(Function):
    """y = Lh x Lwᵀ on every plane (``plan.mode``: "nearest" gathers, "linear" mixes 2x2 taps).
    Backward: ResampleTranspose."""

    def forward(self, x):
        k, p, xp = _kernels(), self.plan, self.xp
        cpu = self.device == "cpu"
        if p.mode == "nearest":
            fn, names = (k.nearest_cpu if cpu else k.nearest_cuda), ("ih", "iw")
        else:
            fn = k.linear_cpu if cpu else k.linear_cuda
            names = ("h0", "h1", "a0", "a1", "w0", "w1", "c0", "c1")
        return fn(_planes(x, xp), *p.get(xp, x.dtype, *names)).reshape(x.shape[:2] + p.out)

    def backward(self, gy):
        return ResampleTranspose.apply(gy, plan=self.plan)


class ResampleTranspose(Function):
    """gx = Lhᵀ gy Lw: a scatter per plane on the CPU, a gather per input element on CUDA.
    Backward: Resample."""

    def forward(self, gy):
        k, p, xp = _kernels(), self.plan, self.xp
        planes = _planes(gy, xp)
        if p.mode == "nearest":
            if self.device == "cpu":
                gx = k.nearest_adjoint_cpu(planes, *p.get(xp, gy.dtype, "ih", "iw"), p.H, p.W)
            else:
                gx = k.nearest_adjoint_cuda(planes, *p.get(xp, gy.dtype, "lh", "uh", "lw", "uw"))
        elif self.device == "cpu":
            gx = k.linear_adjoint_cpu(planes, *p.get(
                xp, gy.dtype, "h0", "h1", "a0", "a1", "w0", "w1", "c0", "c1"), p.H, p.W)
        else:
            gx = k.linear_adjoint_cuda(planes, *p.get(
                xp, gy.dtype, "lh", "uh", "h0", "h1", "a0", "a1", "lw", "uw", "w0", "w1", "c0",
                "c1"))
        return gx.reshape(gy.shape[:2] + (p.H, p.W))

    def backward(self, ggx):
        return Resample.apply(ggx, plan=self.plan)


@functools.lru_cache(maxsize=256)
def _resample_plan(H, W, out, mode, align_corners, scales, dtype):
    """Taps of both axes and the covering ranges of the adjoint gathers."""
    k = _kernels()
    if mode in ("nearest", "nearest-exact"):
        exact = mode == "nearest-exact"
        ih = k.nearest_indices(H, out[0], scales[0], exact)
        iw = k.nearest_indices(W, out[1], scales[1], exact)
        (lh, uh), (lw, uw) = k.tap_cover(ih, ih, H), k.tap_cover(iw, iw, W)
        plan = _Plan(H, W, out, ih=ih, iw=iw, lh=lh, uh=uh, lw=lw, uw=uw)
        plan.mode = "nearest"
        return plan
    h0, h1, a0, a1 = k.linear_taps(H, out[0], align_corners, scales[0], dtype)
    w0, w1, c0, c1 = k.linear_taps(W, out[1], align_corners, scales[1], dtype)
    (lh, uh), (lw, uw) = k.tap_cover(h0, h1, H), k.tap_cover(w0, w1, W)
    # the weights were computed in the data's precision (PyTorch's); keep them exact
    plan = _Plan(H, W, out, h0=h0, h1=h1, a0=a0, a1=a1, w0=w0, w1=w1, c0=c0, c1=c1, lh=lh,
                 uh=uh, lw=lw, uw=uw)
    plan.mode = "linear"
    return plan


_MODES = {1: ("nearest", "nearest-exact", "linear", "area"),
          2: ("nearest", "nearest-exact", "bilinear", "area")}


def _per_dim(v, dims, what):
    if isinstance(v, (list, tuple)):
        if len(v) != dims:
            raise ValueError(f"interpolate: {what} has {len(v)} entries for {dims} spatial "
                             f"dim(s): {v!r}")
        return tuple(v)
    return (v,) * dims


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial dims of an (N, C, L) or (N, C, H, W) input, with PyTorch's modes
    and coordinate conventions (see :mod:`nanogen.kernels.resample`)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"interpolate: input must be a Tensor, got {type(input).__name__}")
    dims = input.ndim - 2
    if dims not in _MODES:
        raise ValueError(f"interpolate: expects a 3-D (N, C, L) or 4-D (N, C, H, W) input, got "
                         f"shape {tuple(input.shape)}")
    if mode not in _MODES[1] + _MODES[2]:
        raise ValueError(f"interpolate: mode {mode!r} is not supported (nanogen has "
                         f"'nearest', 'nearest-exact', 'linear', 'bilinear', 'area')")
    if mode not in _MODES[dims]:
        raise ValueError(f"interpolate: mode {mode!r} needs a "
                         f"{'3' if mode == 'linear' else '4'}-D input, got "
                         f"{input.ndim}-D (shape {tuple(input.shape)})")
    linear = mode in ("linear", "bilinear")
    if align_corners is not None and not linear:
        raise ValueError("interpolate: align_corners can only be set with the interpolating "
                         "modes 'linear' / 'bilinear'")
    if antialias:
        raise ValueError("interpolate: antialias=True is not supported")
    if input.dtype.kind != "f":
        raise TypeError(f"interpolate: expects a floating-point input, got {input.dtype}")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    ins = tuple(input.shape[2:])
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("interpolate: recompute_scale_factor is for scale_factor, not size")
        out = tuple(int(s) for s in _per_dim(size, dims, "size"))
        scales = (None,) * dims
    else:
        scales = tuple(float(s) for s in _per_dim(scale_factor, dims, "scale_factor"))
        out = tuple(int(math.floor(n * s)) for n, s in zip(ins, scales))
        if recompute_scale_factor or mode == "area":
            scales = (None,) * dims
    if min(out) < 1 or min(ins) < 1:
        raise ValueError(f"interpolate: input and output sizes must be positive, got input "
                         f"{ins} and output {out}")
    if mode == "area":
        return _adaptive(input, out, dims, "interpolate", "avg")
    x = input if dims == 2 else input.unsqueeze(2)
    if dims == 1:
        out, scales = (1,) + out, (None,) + scales
    plan = _resample_plan(x.shape[2], x.shape[3], out, "linear" if linear else mode,
                          bool(align_corners), scales, str(input.dtype))
    y = Resample.apply(x, plan=plan)
    return y if dims == 2 else y.squeeze(2)


# ================================================================ pixel shuffle
def _shuffle(x, r, xp):
    """(*, C·r², H, W) -> (*, C, H·r, W·r)."""
    *lead, C, H, W = x.shape
    c = C // (r * r)
    y = x.reshape(*lead, c, r, r, H, W)
    n = len(lead)
    y = y.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return xp.ascontiguousarray(y).reshape(*lead, c, H * r, W * r)


def _unshuffle(x, r, xp):
    """(*, C, H·r, W·r) -> (*, C·r², H, W)."""
    *lead, c, Hr, Wr = x.shape
    H, W = Hr // r, Wr // r
    y = x.reshape(*lead, c, H, r, W, r)
    n = len(lead)
    y = y.transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return xp.ascontiguousarray(y).reshape(*lead, c * r * r, H, W)


class PixelShuffle(Function):
    """y[*, c, h·r + i, w·r + j] = x[*, c·r² + i·r + j, h, w].  Backward: PixelUnshuffle."""

    def forward(self, x):
        return _shuffle(x, self.r, self.xp)

    def backward(self, gy):
        return PixelUnshuffle.apply(gy, r=self.r)


class PixelUnshuffle(Function):
    """The inverse (= adjoint) of PixelShuffle.  Backward: PixelShuffle."""

    def forward(self, x):
        return _unshuffle(x, self.r, self.xp)

    def backward(self, gy):
        return PixelShuffle.apply(gy, r=self.r)


def _check_factor(input, r, op, what):
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if not isinstance(r, numbers.Integral) or r <= 0:
        raise ValueError(f"{op}: {what} must be a positive int, got {r!r}")
    if input.ndim < 3:
        raise ValueError(f"{op}: expects an input of at least 3 dims (*, C, H, W), got shape "
                         f"{tuple(input.shape)}")
    return int(r)


def pixel_shuffle(input, upscale_factor):
    """(*, C·r², H, W) -> (*, C, H·r, W·r) (sub-pixel convolution's rearrangement)."""
    r = _check_factor(input, upscale_factor, "pixel_shuffle", "upscale_factor")
    if input.shape[-3] % (r * r):
        raise ValueError(f"pixel_shuffle: the channel dim ({input.shape[-3]}, shape "
                         f"{tuple(input.shape)}) must be divisible by upscale_factor² = {r * r}")
    return PixelShuffle.apply(input, r=r)


def pixel_unshuffle(input, downscale_factor):
    """(*, C, H·r, W·r) -> (*, C·r², H, W), the inverse of pixel_shuffle."""
    r = _check_factor(input, downscale_factor, "pixel_unshuffle", "downscale_factor")
    if input.shape[-2] % r or input.shape[-1] % r:
        raise ValueError(f"pixel_unshuffle: height and width ({input.shape[-2]}, "
                         f"{input.shape[-1]}) must be divisible by downscale_factor = {r}")
    return PixelUnshuffle.apply(input, r=r)


# ================================================================ pad: constant
class BoxCopy(Function):
    """y = full(shape, fill); y[dst] = x[src]   (src, dst: tuples of slices of equal extents).

    Constant padding (and cropping, with negative pads) is this op; its adjoint is the same op
    with the boxes swapped and fill 0, so it is its own family under differentiation."""

    def forward(self, x):
        y = self.xp.empty(self.shape, dtype=x.dtype)
        y[self.dst] = x[self.src]
        for axis, box in enumerate(self.dst):    # the fill: the slabs before and after the box
            start, stop, _ = box.indices(self.shape[axis])
            lead = (slice(None),) * axis
            if start > 0:
                y[lead + (slice(0, start),)] = self.fill
            if stop < self.shape[axis]:
                y[lead + (slice(stop, None),)] = self.fill
        return y

    def backward(self, gy):
        return BoxCopy.apply(gy, src=self.dst, dst=self.src, shape=self.inputs[0].shape,
                             fill=0)


def _pad_pairs(input, pad, mode):
    """[(axis, lo, hi)] for the last len(pad) // 2 axes, PyTorch's order (last dim first)."""
    if not isinstance(pad, (list, tuple)) or not all(isinstance(p, numbers.Integral)
                                                     for p in pad):
        raise TypeError(f"pad: pad must be a tuple of ints, got {pad!r}")
    if len(pad) % 2:
        raise ValueError(f"pad: the pad tuple needs (left, right) pairs, got {len(pad)} values "
                         f"{tuple(pad)}")
    k = len(pad) // 2
    if k > input.ndim:
        raise ValueError(f"pad: {tuple(pad)} pads {k} dims but the input has only "
                         f"{input.ndim} (shape {tuple(input.shape)})")
    return [(-1 - i, int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(k)]


def _constant_pad(input, pairs, value):
    shape, src, dst = list(input.shape), [slice(None)] * input.ndim, [slice(None)] * input.ndim
    for axis, lo, hi in pairs:
        n = input.shape[axis]
        if n + lo + hi < 0:
            raise ValueError(f"pad: padding ({lo}, {hi}) of dim {input.ndim + axis} (size {n}) "
                             f"gives a negative size {n + lo + hi}")
        a = min(max(-lo, 0), n)                  # x[a:b] is kept (negative pads crop)
        b = max(n - max(-hi, 0), a)
        shape[axis] = n + lo + hi
        src[axis] = slice(a, b)
        dst[axis] = slice(max(lo, 0), max(lo, 0) + (b - a))
    return BoxCopy.apply(input, src=tuple(src), dst=tuple(dst), shape=tuple(shape),
                         fill=0 if value is None else value)


# ================================================================ pad: reflect, replicate, circular
def _pieces(m):
    """Split an index map y[o] = x[m[o]] into runs of consecutive outputs whose sources step
    evenly: [(tgt, src, repeated)], ``tgt`` and ``src`` slices (a mirrored strip steps by -1);
    ``repeated``: a run reading one source over and over (step 0, a replicated edge), whose
    adjoint is a sum over the run."""
    pieces, o, n = [], 0, m.size
    while o < n:
        step = int(m[o + 1] - m[o]) if o + 1 < n else 1
        e = o + 1
        while e < n and m[e] - m[e - 1] == step:
            e += 1
        first, last = int(m[o]), int(m[e - 1])
        if step == 0:
            tgt = slice(first, first + 1)
        else:
            stop = last + step
            tgt = slice(first, stop if stop >= 0 else None, step)
        pieces.append((tgt, slice(o, e), step == 0))
        o = e
    return tuple(pieces)


def _pad_map(n, lo, hi, mode):
    """The source index of every output position of one padded axis."""
    j = np.arange(n + lo + hi) - lo          # position relative to the original axis
    if mode == "reflect":
        j = np.abs(j)
        return np.where(j > n - 1, 2 * (n - 1) - j, j)
    if mode == "replicate":
        return np.clip(j, 0, n - 1)
    a, b = max(-lo, 0), n - max(-hi, 0)      # circular: wrap within the part that is kept
    return a + (np.arange(n + lo + hi) - max(lo, 0)) % (b - a)


@functools.lru_cache(maxsize=256)
def _axis_plan(shape, pairs, mode):
    """The padded axes, their input / output sizes and the pieces of their index maps."""
    axes = tuple(axis for axis, _, _ in pairs)
    n_in = tuple(shape[axis] for axis in axes)
    maps = [_pad_map(shape[axis], lo, hi, mode) for axis, lo, hi in pairs]
    pieces = [_pieces(m) for m in maps]
    # outputs block by block: one piece per axis (a reflect pad of 2 dims: 3 x 3 blocks)
    blocks = tuple(itertools.product(*pieces))
    # a block whose sources are the whole input in order (the interior, when nothing is
    # cropped) lets the adjoint start by assignment instead of zeros and an add
    full = next((i for i, blk in enumerate(blocks)
                 if all(not rep and t == slice(0, n, 1) for (t, _, rep), n in zip(blk, n_in))),
                None)
    return _PadPlan(axes, n_in, tuple(m.size for m in maps), blocks, full)


class _PadPlan:
    def __init__(self, axes, n_in, n_out, blocks, full):
        self.axes, self.n_in, self.n_out, self.blocks, self.full = axes, n_in, n_out, blocks, \
            full

    def index(self, ndim, parts):
        """An index tuple of an ndim array with ``parts`` on the planned axes."""
        idx = [slice(None)] * ndim
        for axis, part in zip(self.axes, parts):
            idx[axis] = part
        return tuple(idx)

    def shape(self, shape, sizes):
        shape = list(shape)
        for axis, n in zip(self.axes, sizes):
            shape[axis] = n
        return tuple(shape)


class AxisGather(Function):
    """y[..., o, ...] = x[..., m(o), ...] along each padded axis, block by block (each block a
    sliced copy; a replicated edge broadcasts).  Backward: AxisScatter."""

    def forward(self, x):
        p = self.plan
        y = self.xp.empty(p.shape(x.shape, p.n_out), dtype=x.dtype)
        for blk in p.blocks:
            y[p.index(x.ndim, [src for _, src, _ in blk])] = \
                x[p.index(x.ndim, [tgt for tgt, _, _ in blk])]
        return y

    def backward(self, gy):
        return AxisScatter.apply(gy, plan=self.plan)


class AxisScatter(Function):
    """gx[..., i, ...] = Σ_{o : m(o) = i} gy[..., o, ...] (the adjoint of AxisGather): each block
    of gy added to its sources, summed first over a replicated run.  Backward: AxisGather."""

    def forward(self, gy):
        p, xp, nd = self.plan, self.xp, gy.ndim
        shape = p.shape(gy.shape, p.n_in)
        if p.full is None:
            g = xp.zeros(shape, dtype=gy.dtype)
        else:
            g = xp.empty(shape, dtype=gy.dtype)
            g[...] = gy[p.index(nd, [src for _, src, _ in p.blocks[p.full]])]
        for i, blk in enumerate(p.blocks):
            if i == p.full:
                continue
            v = gy[p.index(nd, [src for _, src, _ in blk])]
            summed = tuple(axis for axis, (_, _, rep) in zip(p.axes, blk) if rep)
            if summed:
                v = v.sum(axis=summed, keepdims=True)
            g[p.index(nd, [tgt for tgt, _, _ in blk])] += v
        return g

    def backward(self, ggx):
        return AxisGather.apply(ggx, plan=self.plan)


def _index_pad(input, pairs, mode):
    k = len(pairs)
    if k not in (1, 2, 3) or input.ndim not in (k + 1, k + 2):
        raise ValueError(f"pad: mode {mode!r} pads the last 1, 2 or 3 dims of an input with "
                         f"1 or 2 more dims (batch, channels); got {2 * k} pad values for an "
                         f"input of shape {tuple(input.shape)}")
    for axis, lo, hi in pairs:
        n, dim = input.shape[axis], input.ndim + axis
        if mode == "reflect" and (lo >= n or hi >= n):
            raise ValueError(f"pad: reflect padding ({lo}, {hi}) must be smaller than the size "
                             f"{n} of dim {dim} (input shape {tuple(input.shape)})")
        kept = n - max(-lo, 0) - max(-hi, 0)         # what is left after negative pads crop
        if kept <= 0 or n + lo + hi < 0:
            raise ValueError(f"pad: padding ({lo}, {hi}) of dim {dim} (size {n}) leaves "
                             f"nothing to {mode}-pad from (input shape {tuple(input.shape)})")
        if mode == "circular" and (lo > kept or hi > kept):
            raise ValueError(f"pad: circular padding ({lo}, {hi}) may wrap around at most once: "
                             f"it must not exceed the size {kept} of dim {dim} (input shape "
                             f"{tuple(input.shape)}, after cropping)")
    plan = _axis_plan(tuple(input.shape), tuple(pairs), mode)
    return AxisGather.apply(input, plan=plan)


def pad(input, pad, mode="constant", value=None):
    """Pad (or, with negative pads, crop) the last ``len(pad) // 2`` dims, PyTorch's order:
    ``(left, right)`` of the last dim first, then ``(top, bottom)``, ...  Modes: "constant"
    (with ``value``, any number of dims), "reflect" (mirror without repeating the edge),
    "replicate" (repeat the edge), "circular" (wrap around)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"pad: input must be a Tensor, got {type(input).__name__}")
    pairs = _pad_pairs(input, pad, mode)
    if mode == "constant":
        return _constant_pad(input, pairs, value)
    if mode not in ("reflect", "replicate", "circular"):
        raise ValueError(f"pad: unknown mode {mode!r}; use 'constant', 'reflect', 'replicate' "
                         f"or 'circular'")
    if value:
        raise ValueError(f"pad: value is only used by mode 'constant', not {mode!r}")
    return _index_pad(input, pairs, mode)
