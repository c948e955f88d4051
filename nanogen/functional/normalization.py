"""Normalisation: batch_norm, group_norm, layer_norm, instance_norm, adain and
adaptive_group_norm.

Every norm standardises groups of elements by their own mean and *biased* variance, then applies
an affine map; they differ only in which elements form a group and how the weight broadcasts.
So one pair of Functions serves all six, parametrised by a :class:`_Geometry` that views the
input as a 5-D array ``x[a, q, mw, j, s]`` of shape (A, Q, Mw, J, S)::

    group (the statistics):  the elements sharing (q, mw)  -- reduced over axes (a, j, s)
    weight / bias:           w[mw, j], broadcast over (a, q, s)

    batch_norm      (N, 1, C, 1, H·W)      w, b of shape (C,)
    instance_norm   (1, N, C, 1, H·W)      w, b of shape (C,)
    group_norm      (1, N, G, C/G, H·W)    w, b of shape (C,) = (G, C/G)
    layer_norm      (1, L, 1, K, 1)        w, b of normalized_shape (K elements)
    adain           (1, 1, N·C, 1, H·W)    scale, bias of shape (N, C): one pair per plane
    adaptive_group_norm  (1, 1, N·G, C/G, H·W)  scale, bias of shape (N, C) = (N·G, C/G)

Forward (:class:`Normalize`, one fused kernel, ``nanogen.kernels.normalization``)::

    μ = mean(x),  v = mean((x - μ)²),  r = 1/sqrt(v + eps),  x̂ = (x - μ) r,  y = x̂ w + b

Backward (:class:`NormalizeBackward`, one fused kernel).  Its output packs the three
gradients ``[gx, gw, gb]`` because a Function has one output, and Normalize's backward slices
them apart.  A plain backward (no create_graph, so nothing is recorded) runs the same kernel
writing three separate arrays instead: a leaf then adopts the fresh gx as its ``.grad``, where
a view of the packed buffer would be copied -- a third of a GroupNorm training step.  With
Π(d) = d - mean(d) - x̂ mean(d x̂) (means over the group; Π is symmetric and dx̂ = r Π(dx))::

    gx = r Π(g),  g = gy w          gw = Σ_{a,q,s} gy x̂          gb = Σ_{a,q,s} gy

Double backward (NormalizeBackward's own backward, composite nanogen ops recomputing x̂ and r
from x, hence differentiable to any order).  For the cotangent (u, α, β) of (gx, gw, gb), with
α, β broadcast like w and dr = -r² mean(x̂ dx)::

    ∂/∂gy = w r Π(u) + α x̂ + β
    ∂/∂w  = Σ_{a,q,s} gy r Π(u)
    ∂/∂x  = r Π(α gy) - r² (mean(u Π(g)) x̂ + mean(x̂ g) Π(u) + mean(u x̂) Π(g))

Batch / instance norm with running statistics (eval) are plain affine maps of x built from
nanogen ops.  In training, batch_norm (and instance_norm with running buffers) update the
buffers in place with the UNBIASED variance, as PyTorch does::

    running = (1 - momentum) running + momentum statistic,   var statistic = v n / (n - 1)
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

from ..autograd import Function, is_grad_enabled
from ..tensor import Tensor

__all__ = ["batch_norm", "instance_norm", "group_norm", "layer_norm", "adain",
           "adaptive_group_norm"]

_STAT = (0, 3, 4)       # the axes of the 5-D view a group's statistics are taken over
_AFFINE = (0, 1, 4)     # the axes the weight and bias broadcast over


class _Geometry(NamedTuple):
    A: int
    Q: int
    Mw: int
    J: int
    S: int

    @property
    def view4(self):        # the kernels' view: (A, M, J, S), M = Q·Mw groups
        return (self.A, self.Q * self.Mw, self.J, self.S)

    @property
    def view5(self):
        return tuple(self)

    @property
    def table(self):        # the weight / bias table of the kernels
        return (self.Mw, self.J)

    @property
    def affine5(self):      # the weight broadcast against view5
        return (1, 1, self.Mw, self.J, 1)


_KERNELS = []


def _kernels():
    """nanogen.kernels.normalization, imported on first use (numba loads then, not on
    ``import nanogen``)."""
    if not _KERNELS:
        from ..kernels import normalization
        _KERNELS.append(normalization)
    return _KERNELS[0]


# ================================================================ the two Functions
class Normalize(Function):
    """y = x̂ w + b over the groups of ``geo`` (inputs: x, then w if ``has_w``, b if ``has_b``).

    Saves only the per-group mean and r = 1/sqrt(v + eps); ``on_stats(mean, var)`` (optional)
    receives the batch statistics, for running-statistics updates."""

    def forward(self, x, *affine):
        geo, xp = self.geo, self.xp
        it = iter(affine)
        w = _table(xp, next(it) if self.has_w else None, geo, 1, x.dtype)
        b = _table(xp, next(it) if self.has_b else None, geo, 0, x.dtype)
        y, mean, var = _kernels().forward(x.reshape(geo.view4), w, b, self.eps, self.device)
        if self.on_stats is not None:
            self.on_stats(mean, var)
        if self.requires_grad:
            self.mean, self.rstd = mean, 1.0 / xp.sqrt(var + self.eps)
        return y.reshape(x.shape)

    def backward(self, gy):
        x = self.inputs[0]
        w = self.inputs[1] if self.has_w else None
        affine = self.inputs[1].shape if len(self.inputs) > 1 else self.geo.table
        if is_grad_enabled():       # create_graph: the gradients must be differentiable
            packed = NormalizeBackward.apply(x, gy, *([w] if self.has_w else []), geo=self.geo,
                                             eps=self.eps, mean=self.mean, rstd=self.rstd)
            n, k = x.numel(), math.prod(self.geo.table)
            grads = (packed[:n].reshape(x.shape), packed[n:n + k].reshape(affine),
                     packed[n + k:].reshape(affine))
        else:                       # a plain backward records nothing: the same kernel, unpacked
            grads = [Tensor._make(g, x.device) for g in _kernel_backward(
                self.xp, self.device, self.geo, x.data, gy.data, w.data if self.has_w else None,
                self.mean, self.rstd, shapes=(x.shape, affine, affine))]
        out = grads[:1 + self.has_w] + grads[2:3 if self.has_b else 2]
        return tuple(g if need else None for g, need in zip(out, self.needs_input_grad))


class NormalizeBackward(Function):
    """The packed gradient ``[gx.ravel(), gw.ravel(), gb.ravel()]`` of :class:`Normalize`
    (inputs: x, gy, then w when the norm has a weight); one fused kernel forward, composite
    backward (the double-backward formulas of the module docstring)."""

    def forward(self, x, gy, *w):
        return _kernel_backward(self.xp, self.device, self.geo, x, gy, w[0] if w else None,
                                self.mean, self.rstd)

    def backward(self, gp):
        geo = self.geo
        x, gy_in = self.inputs[:2]
        w = self.inputs[2].reshape(geo.affine5) if len(self.inputs) == 3 else None
        n, k = x.numel(), math.prod(geo.table)
        u = gp[:n].reshape(geo.view5)
        alpha = gp[n:n + k].reshape(geo.affine5)
        beta = gp[n + k:].reshape(geo.affine5)
        gy = gy_in.reshape(geo.view5)
        xhat, r = _standardize(x.reshape(geo.view5), self.eps)
        g = gy if w is None else gy * w
        pu = _project(u, xhat)
        out = [None] * len(self.inputs)
        if self.needs_input_grad[0]:
            pg = _project(g, xhat)
            gx = r * _project(alpha * gy, xhat) - (r * r) * (
                _gmean(u * pg) * xhat + _gmean(xhat * g) * pu + _gmean(u * xhat) * pg)
            out[0] = gx.reshape(x.shape)
        if self.needs_input_grad[1]:
            rpu = r * pu
            out[1] = ((rpu if w is None else rpu * w) + alpha * xhat + beta).reshape(gy_in.shape)
        if w is not None and self.needs_input_grad[2]:
            out[2] = (gy * r * pu).sum(_AFFINE, keepdim=True).reshape(self.inputs[2].shape)
        return tuple(out)


def _gmean(t):
    return t.mean(_STAT, keepdim=True)


def _standardize(x5, eps):
    """(x̂, r) of the 5-D view, with nanogen ops (differentiable in x)."""
    xc = x5 - _gmean(x5)
    r = (_gmean(xc * xc) + eps).rsqrt()
    return xc * r, r


def _project(d, xhat):
    """Π(d) = d - mean(d) - x̂ mean(d x̂): the map that turns dx into dx̂ / r."""
    return d - _gmean(d) - xhat * _gmean(d * xhat)


def _kernel_backward(xp, device, geo, x, gy, w, mean, rstd, shapes=None):
    """The fused backward kernel on arrays: packed ``[gx, gw, gb]``, or given ``shapes`` the
    three gradients as separate arrays of those shapes."""
    table = _table(xp, w, geo, 1, x.dtype)
    return _kernels().backward(gy.reshape(geo.view4), x.reshape(geo.view4), mean, rstd, table,
                               device, packed=shapes is None, shapes=shapes)


def _table(xp, array, geo, fill, dtype):
    """A weight or bias as the kernels' (Mw, J) table; ``fill`` (1 or 0) when it is absent."""
    if array is None:
        return xp.full(geo.table, fill, dtype=dtype)
    return array.reshape(geo.table)


def _normalize(input, geo, weight, bias, eps, on_stats=None):
    """The shared entry point: ``Normalize`` over ``geo`` with optional weight and bias."""
    affine = [t for t in (weight, bias) if t is not None]
    return Normalize.apply(input, *affine, geo=geo, eps=float(eps), has_w=weight is not None,
                           has_b=bias is not None, on_stats=on_stats)


# ================================================================ argument checks
def _check_input(op, input, min_dim, what):
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if input.ndim < min_dim:
        raise ValueError(f"{op}: expected {what}, got a {input.ndim}-D input of shape "
                         f"{tuple(input.shape)}")
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: needs a floating input, got {input.dtype} (use .float())")


def _check_per_channel(op, input, **tensors):
    """Per-channel tensors (weight, bias, running stats) must have shape (C,)."""
    C = input.shape[1]
    for name, t in tensors.items():
        if t is not None and tuple(t.shape) != (C,):
            raise ValueError(f"{op}: input has {C} channels (shape {tuple(input.shape)}) but "
                             f"{name} has shape {tuple(t.shape)}; expected ({C},)")


def _check_per_sample(op, input, **tensors):
    """Per-sample, per-channel tensors (AdaIN's and AdaGN's scale and bias) must be (N, C)."""
    N, C = input.shape[0], input.shape[1]
    for name, t in tensors.items():
        if t is not None and tuple(t.shape) != (N, C):
            raise ValueError(f"{op}: {name} must have shape (N, C) = {(N, C)} for an input of "
                             f"shape {tuple(input.shape)}, got {tuple(t.shape)}")


def _check_groups(op, input, num_groups):
    """``num_groups`` as an int that divides the input's C channels, or a clear error."""
    C = input.shape[1]
    if not isinstance(num_groups, numbers.Integral) or num_groups <= 0 or C % num_groups:
        raise ValueError(f"{op}: num_groups={num_groups} must be a positive divisor of the "
                         f"{C} channels (input shape {tuple(input.shape)})")
    return int(num_groups)


def _spatial(input):
    return math.prod(input.shape[2:])


# ================================================================ running statistics
def _running_update(op, running_mean, running_var, momentum, n, fold=None):
    """``on_stats`` callback: running = (1 - momentum) running + momentum statistic, with the
    unbiased variance v n / (n - 1); ``fold`` maps the per-group statistics to per-channel ones
    (instance norm averages them over the batch).  Writes the buffers' arrays in place."""
    if running_mean is None and running_var is None:
        return None
    if momentum is None or not isinstance(momentum, numbers.Real):
        raise TypeError(f"{op}: momentum must be a number, got {momentum!r} (the cumulative "
                        f"average of momentum=None is the module's job: it passes "
                        f"1 / num_batches_tracked)")
    if n < 2 and running_var is not None:
        raise ValueError(f"{op}: cannot update running_var from groups of {n} value (the "
                         f"unbiased variance needs at least 2)")
    m = float(momentum)

    def update(mean, var):
        if fold is not None:
            mean, var = fold(mean), fold(var)
        if running_mean is not None:
            d = running_mean.data
            d[...] = (1.0 - m) * d + m * mean
        if running_var is not None:
            d = running_var.data
            d[...] = (1.0 - m) * d + m * (var * (n / (n - 1)))
    return update


def _with_running_stats(op, input, running_mean, running_var, weight, bias, eps):
    """Eval mode: y = (x - running_mean) / sqrt(running_var + eps) · w + b, per channel."""
    if running_mean is None or running_var is None:
        raise ValueError(f"{op}: running_mean and running_var are required when the batch "
                         f"statistics are not used (training=False / use_input_stats=False)")
    shape = (1, input.shape[1]) + (1,) * (input.ndim - 2)
    scale = (running_var.detach() + eps).rsqrt()
    if weight is not None:
        scale = scale * weight
    y = (input - running_mean.detach().reshape(shape)) * scale.reshape(shape)
    return y + bias.reshape(shape) if bias is not None else y


# ================================================================ the public ops
def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation over (N, C, *): statistics per channel over the batch and all
    spatial positions.  ``training=True`` uses the batch statistics and updates the running
    buffers in place (if given); ``training=False`` uses the running statistics."""
    op = "batch_norm"
    _check_input(op, input, 2, "(N, C) or (N, C, *)")
    _check_per_channel(op, input, running_mean=running_mean, running_var=running_var,
                       weight=weight, bias=bias)
    if not training:
        return _with_running_stats(op, input, running_mean, running_var, weight, bias, eps)
    N, C, S = input.shape[0], input.shape[1], _spatial(input)
    if N * S <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got "
                         f"input size {tuple(input.shape)}")
    update = _running_update(op, running_mean, running_var, momentum, N * S)
    return _normalize(input, _Geometry(N, 1, C, 1, S), weight, bias, eps, update)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Instance normalisation over (N, C, *): statistics per sample and channel over the
    spatial positions (a single position gives x̂ = 0).  With ``use_input_stats`` the running
    buffers (if given) are updated with the batch mean of the per-instance statistics."""
    op = "instance_norm"
    _check_input(op, input, 2, "(N, C) or (N, C, *)")
    _check_per_channel(op, input, running_mean=running_mean, running_var=running_var,
                       weight=weight, bias=bias)
    if not use_input_stats:
        return _with_running_stats(op, input, running_mean, running_var, weight, bias, eps)
    N, C, S = input.shape[0], input.shape[1], _spatial(input)
    update = _running_update(op, running_mean, running_var, momentum, S,
                             fold=lambda a: a.reshape(N, C).mean(axis=0))
    return _normalize(input, _Geometry(1, N, C, 1, S), weight, bias, eps, update)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Group normalisation over (N, C, *): statistics per sample over each of ``num_groups``
    groups of C / num_groups channels (and all positions); weight and bias per channel."""
    op = "group_norm"
    _check_input(op, input, 2, "(N, C) or (N, C, *)")
    G = _check_groups(op, input, num_groups)
    C = input.shape[1]
    _check_per_channel(op, input, weight=weight, bias=bias)
    geo = _Geometry(1, input.shape[0], G, C // G, _spatial(input))
    return _normalize(input, geo, weight, bias, eps)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation: statistics over the trailing dims ``normalized_shape``; weight and
    bias (if given) have that shape."""
    op = "layer_norm"
    ns = ((int(normalized_shape),) if isinstance(normalized_shape, numbers.Integral)
          else tuple(int(s) for s in normalized_shape))
    _check_input(op, input, max(len(ns), 1), f"at least {len(ns)} dims")
    if not ns or tuple(input.shape[input.ndim - len(ns):]) != ns:
        raise ValueError(f"{op}: normalized_shape {ns} does not match the trailing dims of the "
                         f"input of shape {tuple(input.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != ns:
            raise ValueError(f"{op}: {name} has shape {tuple(t.shape)}, expected "
                             f"normalized_shape {ns}")
    K = math.prod(ns)
    geo = _Geometry(1, input.numel() // K if K else 0, 1, K, 1)
    return _normalize(input, geo, weight, bias, eps)


def adain(x, scale, bias, eps=1e-5):
    """Adaptive instance normalisation (StyleGAN): for x (N, C, H, W) and scale, bias (N, C),

        y[n, c] = scale[n, c] · (x[n, c] - mean_hw) / sqrt(var_hw + eps) + bias[n, c]

    (biased variance), one fused kernel forward and one backward (``nanogen.kernels.adain``
    documents the plane kernels).  H·W = 1 gives x̂ = 0, y = bias."""
    op = "adain"
    _check_input(op, x, 4, "(N, C, H, W)")
    if x.ndim != 4:
        raise ValueError(f"{op}: expected x of shape (N, C, H, W), got {tuple(x.shape)}")
    _check_per_sample(op, x, scale=scale, bias=bias)
    from ..kernels import adain as kernel
    return _normalize(x, _Geometry(*kernel.plane_geometry(x.shape)), scale, bias, eps)


def adaptive_group_norm(input, num_groups, scale, bias, eps=1e-5):
    """Adaptive group normalisation (AdaGN, Dhariwal & Nichol 2021; the time conditioning of a
    diffusion U-Net): group_norm without its own affine, then a scale and bias per sample and
    channel, for input (N, C, *) and scale, bias (N, C)::

        y[n, c] = scale[n, c] · (x[n, c] - μ[n, g]) / sqrt(v[n, g] + eps) + bias[n, c]

    with μ, v the mean and biased variance of sample n's group g = c // (C / G) over its
    channels and positions.  It is the group-norm geometry with the sample folded into the
    groups, (1, 1, N·G, C/G, H·W), whose weight table (N·G, C/G) is (N, C): the same fused
    kernels as every norm here, so ``GroupNorm(h) * (1 + s) + t`` costs one pass forward and
    one backward instead of three and five.  ``scale`` or ``bias`` may be None (1 or 0)."""
    op = "adaptive_group_norm"
    _check_input(op, input, 2, "(N, C) or (N, C, *)")
    G = _check_groups(op, input, num_groups)
    _check_per_sample(op, input, scale=scale, bias=bias)
    N, C = input.shape[0], input.shape[1]
    return _normalize(input, _Geometry(1, 1, N * G, C // G, _spatial(input)), scale, bias, eps)
