"""Reductions: sum, mean, var/std, max/min (with indices), amax/amin, logsumexp, and sum_to.

The adjoint pair at the heart of broadcasting lives here: ``sum_to`` (sum a tensor down to a
shape) and ``broadcast_to`` (its backward, in shape.py) differentiate into each other.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from ._util import normalize_dim, normalize_dims

__all__ = ["sum", "mean", "var", "std", "var_mean", "std_mean", "max", "min", "amax", "amin",
           "argmax", "argmin", "logsumexp", "prod", "sum_to", "all", "any", "norm", "cumsum",
           "sort", "argsort", "topk"]


def _keepdim_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


class Sum(Function):
    """y = Σ_axes x;  the gradient is gy broadcast back over the summed axes."""

    def forward(self, x):
        return x.sum(axis=self.axes, keepdims=self.keepdim)

    def backward(self, gy):
        from .shape import broadcast_to, reshape
        x = self.inputs[0]
        if not self.keepdim:
            gy = reshape(gy, _keepdim_shape(x.shape, self.axes))
        return broadcast_to(gy, x.shape)


class SumTo(Function):
    """Sum ``x`` down to ``shape`` (undo broadcasting); backward broadcasts back."""

    def forward(self, x):
        lead = x.ndim - len(self.shape)
        axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(self.shape)
                                          if s == 1 and x.shape[i + lead] != 1)
        y = x.sum(axis=axes, keepdims=True) if axes else x
        return y.reshape(self.shape)

    def backward(self, gy):
        from .shape import broadcast_to
        return broadcast_to(gy, self.inputs[0].shape)


def sum_to(input, shape):
    shape = tuple(shape)
    if tuple(input.shape) == shape:
        return input
    return SumTo.apply(input, shape=shape)


def sum(input, dim=None, keepdim=False, dtype=None):
    """Sum over ``dim`` (an int, a tuple, or None for all)."""
    axes = normalize_dims(dim, input.ndim, "sum")
    if dtype is not None:
        input = input.to(dtype)
    if input.data.dtype.kind == "b":
        input = input.long()
    return Sum.apply(input, axes=axes, keepdim=keepdim)


def _count(input, axes):
    n = 1
    for a in axes:
        n *= input.shape[a]
    return n


def mean(input, dim=None, keepdim=False, dtype=None):
    """Σ_axes x / n;  over an empty dim (n = 0) that is 0 / 0 = nan, as in PyTorch and NumPy."""
    if dtype is not None:
        input = input.to(dtype)
    if input.data.dtype.kind != "f":
        raise TypeError(f"mean: needs a floating tensor, got {input.dtype} (use .float())")
    axes = normalize_dims(dim, input.ndim, "mean")
    n = _count(input, axes)
    return sum(input, axes, keepdim) * (1.0 / n if n else float("nan"))


def var(input, dim=None, unbiased=None, keepdim=False, correction=None):
    """Σ (x - mean)² / max(0, n - correction); ``unbiased=True`` (default) is correction 1.

    Without degrees of freedom (n <= correction) the divisor is 0, as in PyTorch: the variance
    is inf, or nan where the sum of squares is 0 too (one value, constant data, no values),
    and its gradient 2 (x - mean) / 0 is ±inf, nan where x = mean (PyTorch's for n = correction
    along a dim)."""
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    elif unbiased is not None:
        raise ValueError("var: give unbiased or correction, not both")
    axes = normalize_dims(dim, input.ndim, "var")
    n = _count(input, axes)
    m = mean(input, axes, keepdim=True)
    if n > correction:
        centred = input - m
        return sum(centred * centred, axes, keepdim) * (1.0 / (n - correction))
    # Σ (x - mean)² / 0 with the mean held constant: that leaves the gradient 2 (x - mean) / 0
    # as it is (∂/∂mean Σ (x - mean)² = 0) but spares it the inf - inf of the mean's backward
    centred = input - m.detach()
    with np.errstate(invalid="ignore"):         # 0 · inf = nan: no spread either
        return sum(centred * centred, axes, keepdim) * float("inf")


def std(input, dim=None, unbiased=None, keepdim=False, correction=None):
    from .elementwise import sqrt
    return sqrt(var(input, dim, unbiased, keepdim, correction))


def var_mean(input, dim=None, unbiased=None, keepdim=False, correction=None):
    return (var(input, dim, unbiased, keepdim, correction), mean(input, dim, keepdim))


def std_mean(input, dim=None, unbiased=None, keepdim=False, correction=None):
    return (std(input, dim, unbiased, keepdim, correction), mean(input, dim, keepdim))


class _SelectMask(Function):
    """Reduce by picking entries: y = Σ_axes mask ⊙ x with a constant 0/1 (or 1/ties) mask.

    Used for max/min along a dim (mask: one-hot at the index returned) and amax/amin (mask
    spreads evenly over ties).  Backward is gy broadcast times the mask, itself differentiable.
    """

    def forward(self, x):
        return self.values

    def backward(self, gy):
        from .shape import broadcast_to, reshape
        x = self.inputs[0]
        if not self.keepdim:
            gy = reshape(gy, _keepdim_shape(x.shape, self.axes))
        return broadcast_to(gy, x.shape) * Tensor._make(self.mask, gy._device)


def _check_extremum(input, dim, axes, name):
    """An extremum has no identity, so (as in PyTorch) an empty tensor needs a ``dim`` and the
    reduced dims must be non-empty; the other dims may be empty (an empty result).  The errors
    are PyTorch's: IndexError for an empty reduced dim, and without a dim RuntimeError
    (IndexError for argmax / argmin)."""
    if input.numel() == 0:
        if dim is None:
            error = IndexError if name.startswith("arg") else RuntimeError
            raise error(f"{name}: the tensor of shape {tuple(input.shape)} is empty; give a "
                        f"non-empty dim to reduce")
        for a in axes:
            if input.shape[a] == 0:
                raise IndexError(f"{name}: dimension {a} of the tensor of shape "
                                 f"{tuple(input.shape)} is empty: there is no {name} of no values")


def _amax_amin(input, dim, keepdim, largest, name):
    axes = normalize_dims(dim, input.ndim, name)
    _check_extremum(input, dim, axes, name)
    x = input.data
    xp = input._xp()
    v = x.max(axis=axes, keepdims=True) if largest else x.min(axis=axes, keepdims=True)
    mask = None
    if input.requires_grad:
        hit = (x == v)
        mask = (hit / hit.sum(axis=axes, keepdims=True)).astype(x.dtype)
    values = v if keepdim else v.reshape([s for i, s in enumerate(x.shape) if i not in axes])
    return _SelectMask.apply(input, values=xp.asarray(values, order="C"), mask=mask, axes=axes,
                             keepdim=keepdim)


def amax(input, dim=None, keepdim=False):
    """Largest value over ``dim``; ties share the gradient evenly."""
    return _amax_amin(input, dim, keepdim, True, "amax")


def amin(input, dim=None, keepdim=False):
    return _amax_amin(input, dim, keepdim, False, "amin")


def _max_min(input, dim, keepdim, largest, name):
    if isinstance(dim, Tensor):   # torch.max(a, b) is elementwise
        from .elementwise import maximum, minimum
        return (maximum if largest else minimum)(input, dim)
    if dim is None:
        return _amax_amin(input, None, False, largest, name)
    d = normalize_dim(dim, input.ndim, name)
    _check_extremum(input, dim, (d,), name)
    if input.ndim == 0:
        return _ValuesIndices(input, Tensor._make(input._xp().zeros((), np.int64), input._device))
    xp = input._xp()
    x = input.data
    idx = x.argmax(axis=d) if largest else x.argmin(axis=d)
    idx_k = xp.expand_dims(idx, d)
    values = xp.take_along_axis(x, idx_k, axis=d)
    mask = None
    if input.requires_grad:
        mask = xp.zeros(x.shape, dtype=x.dtype)
        xp.put_along_axis(mask, idx_k, 1, axis=d)
    if not keepdim:
        values = values.squeeze(d)
    out = _SelectMask.apply(input, values=values, mask=mask, axes=(d,), keepdim=keepdim)
    return _ValuesIndices(out, Tensor._make(idx_k if keepdim else idx, input._device))


class _ValuesIndices(tuple):
    """``(values, indices)`` with names, as returned by ``max(dim=...)``."""

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])


def max(input, dim=None, keepdim=False):
    """``max(x)``: the largest value; ``max(x, dim)``: ``(values, indices)``; ``max(a, b)``:
    elementwise maximum."""
    return _max_min(input, dim, keepdim, True, "max")


def min(input, dim=None, keepdim=False):
    return _max_min(input, dim, keepdim, False, "min")


def _arg_extreme(input, dim, keepdim, largest, name):
    x = input.data
    pick = x.argmax if largest else x.argmin
    d = normalize_dim(dim, input.ndim, name)
    _check_extremum(input, dim, () if d is None else (d,), name)
    if dim is None:
        return Tensor._make(input._xp().asarray(pick()), input._device)
    r = pick(axis=d)
    return Tensor._make(input._xp().expand_dims(r, d) if keepdim else r, input._device)


def argmax(input, dim=None, keepdim=False):
    """Index of the largest value (of the flattened tensor when ``dim`` is None)."""
    return _arg_extreme(input, dim, keepdim, True, "argmax")


def argmin(input, dim=None, keepdim=False):
    return _arg_extreme(input, dim, keepdim, False, "argmin")


class LogSumExp(Function):
    """y = log Σ exp x = m + log Σ exp(x - m) with m = max x;  dy/dx = exp(x - y) = softmax x.

    Over an empty dim y = log 0 = -inf, as in PyTorch (and its gradient is empty)."""

    keep_output = True

    def forward(self, x):
        xp = self.xp
        if x.size == 0:     # no max to shift by: the sums are empty (log 0), or there are none
            y = xp.full(_keepdim_shape(x.shape, self.axes), -np.inf, dtype=x.dtype)
        else:
            m = x.max(axis=self.axes, keepdims=True)
            m = xp.where(xp.isfinite(m), m, 0)
            y = xp.log(xp.exp(x - m).sum(axis=self.axes, keepdims=True)) + m
        return y if self.keepdim else y.reshape([s for i, s in enumerate(x.shape)
                                                 if i not in self.axes])

    def backward(self, gy):
        from .elementwise import exp
        from .shape import reshape
        x = self.inputs[0]
        y = self.output
        if not self.keepdim:
            shape = _keepdim_shape(x.shape, self.axes)
            gy, y = reshape(gy, shape), reshape(y, shape)
        return gy * exp(x - y)


def logsumexp(input, dim=None, keepdim=False):
    return LogSumExp.apply(input, axes=normalize_dims(dim, input.ndim, "logsumexp"),
                           keepdim=keepdim)


class Prod(Function):
    """y = Π_axes x;  ∂y/∂x_i = Π_{j≠i} x_j, the product of the others in x_i's slice
    (:func:`_product_of_others`, exact at zeros: with one zero at i that is the product of the
    rest, with two or more zeros it is 0 everywhere in the slice, as in PyTorch)."""

    keep_output = True

    def forward(self, x):
        return x.prod(axis=self.axes, keepdims=self.keepdim)

    def backward(self, gy):
        from .shape import reshape
        x = self.inputs[0]
        shape = _keepdim_shape(x.shape, self.axes)
        y = self.output if self.keepdim else reshape(self.output, shape)
        gy = gy if self.keepdim else reshape(gy, shape)
        return gy * _product_of_others(x, self.axes, y)


def _product_of_others(x, axes, y=None):
    """o_i = Π_{j≠i} x_j over each slice of ``axes``, built from differentiable ops so that its
    own derivative ∂o_i/∂x_k = Π_{j≠i,k} x_j (prod's second derivative) is right too.

    No zero in x: o = y / x with y = Π x (``y``: that product, keepdim-shaped, if known).
    Otherwise, with Z the zeros of a slice (frozen masks) and x_i ≠ 0 off Z::

        o_i = Π_{j∉Z, j≠i} x_j  ·  ( Π_{j∈Z} x_j            for i ∉ Z
                                    ( Π_{j∈Z, j≠i} x_j       for i ∈ Z

    The first factor is a product without zeros (the no-zero case again, the zeros read as
    1); Π_Z x is ``prod`` of x with the non-zeros read as 1 (value 0; its derivatives recurse
    here); Π_{Z∖i} x is 1 for one zero and the other zero, Σ_Z x - x_i, for two.  With the
    masks held fixed each factor equals its product as a polynomial in x, so every derivative
    is exact.  For three or more zeros Π_{Z∖i} x and its first derivative are 0, and it is
    taken as the constant 0: prod's first and second derivatives stay exact, the third and
    higher of such a slice are dropped."""
    from .elementwise import where
    zero = x.data == 0
    if not zero.any():
        return (prod(x, axes, keepdim=True) if y is None else y) / x
    count = zero.sum(axis=axes, keepdims=True)
    nonzero = where(zero, 1.0, x)                        # the zeros read as 1
    others_nonzero = prod(nonzero, axes, keepdim=True) / nonzero
    zeros_product = prod(where(zero, x, 1.0), axes, keepdim=True)
    other_zero = sum(x * _mask(zero, x), axes, keepdim=True) - x      # Σ_Z x - x_i
    zeros_but_i = other_zero * _mask(count == 2, x) + _mask(count == 1, x)
    return others_nonzero * where(zero, zeros_but_i, zeros_product)


def _mask(a, like):
    """A boolean array as a constant 0/1 tensor of ``like``'s dtype and device."""
    return Tensor._make(a.astype(like.data.dtype), like._device)


def prod(input, dim=None, keepdim=False):
    """Product over ``dim`` (an int, a tuple, or None for all); its gradient is exact at zeros,
    its second derivative too (see :class:`Prod`)."""
    return Prod.apply(input, axes=normalize_dims(dim, input.ndim, "prod"), keepdim=keepdim)


def all(input, dim=None, keepdim=False):
    axes = normalize_dims(dim, input.ndim, "all")
    return Tensor._make(input.data.astype(bool).all(axis=axes, keepdims=keepdim), input._device)


def any(input, dim=None, keepdim=False):
    axes = normalize_dims(dim, input.ndim, "any")
    return Tensor._make(input.data.astype(bool).any(axis=axes, keepdims=keepdim), input._device)


def norm(input, p=2, dim=None, keepdim=False):
    """The p-norm over ``dim`` (all elements by default), as PyTorch's vector norm:

        ‖x‖_p = (Σ |x|^p)^(1/p),   ‖x‖_∞ = max |x|,   ‖x‖_-∞ = min |x|,   ‖x‖_0 = #{x ≠ 0}

    ("fro" is the 2-norm).  The ±∞ norms are amax / amin of |x|: the gradient is sign(x) at
    the largest (smallest) magnitude, split evenly among ties, and there is no such norm of an
    empty dim.  The 0 "norm" counts (nan counts as nonzero); its gradient is zero."""
    from .elementwise import _Step, abs as abs_, sqrt
    if p == 2 or p == "fro":
        return sqrt(sum(input * input, dim, keepdim))
    if p == float("inf") or p == float("-inf"):
        axes = normalize_dims(dim, input.ndim, "norm")
        empty = [a for a in axes if input.shape[a] == 0]
        if empty:
            raise RuntimeError(f"norm: the {p} norm of the empty dimension {empty[0]} of a tensor "
                               f"of shape {tuple(input.shape)} is undefined (no max / min)")
        return (amax if p > 0 else amin)(abs_(input), dim, keepdim)
    if p == 0:
        nonzero = _Step.apply(input, f=lambda xp, x: (x != 0).astype(x.dtype))   # dy/dx = 0
        return sum(nonzero, dim, keepdim)
    if p == 1:
        return sum(abs_(input), dim, keepdim)
    return sum(abs_(input) ** p, dim, keepdim) ** (1.0 / p)


def _running_sum(x, axis):
    """NumPy's cumsum along a leading axis, as one vectorised add per slice.

    ``np.cumsum`` along any axis but the last walks that axis in its inner loop, with a stride:
    on a (784, 64, 500) float32 array along axis 0 it takes ~190 ms where adding slice i - 1
    into slice i, 783 contiguous adds, takes ~20 ms.  Same additions in the same order, so the
    result is bit-identical."""
    out = np.array(np.moveaxis(x, axis, 0), order="C")          # a copy, slices contiguous
    for i in range(1, len(out)):
        np.add(out[i], out[i - 1], out=out[i])
    return np.moveaxis(out, 0, axis)


class CumSum(Function):
    r""":math:`y_i = \sum_{j \le i} x_j` along ``axis``; the gradient is the cumulative sum
    of ``gy`` from the other end, :math:`g_j = \sum_{i \ge j} gy_i`."""

    def forward(self, x):
        if (self.xp is np and x.dtype.kind == "f" and x.ndim > 1 and self.axis != x.ndim - 1
                and x.size >= 64 * x.shape[self.axis]):
            return _running_sum(x, self.axis)
        return self.xp.cumsum(x, axis=self.axis).reshape(x.shape)   # a 0-d x stays 0-d

    def backward(self, gy):
        from .shape import flip
        return flip(cumsum(flip(gy, (self.axis,)), self.axis), (self.axis,))


def cumsum(input, dim):
    return CumSum.apply(input, axis=normalize_dim(dim, input.ndim, "cumsum"))


def sort(input, dim=-1, descending=False):
    """``(values, indices)`` sorted along ``dim``; values are differentiable (a gather)."""
    from .indexing import gather
    d = normalize_dim(dim, input.ndim, "sort")
    xp = input._xp()
    if input.ndim == 0:     # a single value is sorted already
        return _ValuesIndices(input, Tensor._make(xp.zeros((), np.int64), input._device))
    idx = xp.argsort(-input.data if descending else input.data, axis=d, kind="stable")
    idx_t = Tensor._make(idx, input._device)
    return _ValuesIndices(gather(input, d, idx_t), idx_t)


def argsort(input, dim=-1, descending=False):
    return sort(input, dim, descending)[1]


def topk(input, k, dim=-1, largest=True, sorted=True):
    from .indexing import gather
    values, idx = sort(input, dim, descending=largest)
    d = normalize_dim(dim, input.ndim, "topk")
    sl = (slice(None),) * d + (slice(0, k),)
    idx_k = Tensor._make(idx.data[sl], input._device)
    return _ValuesIndices(gather(input, d, idx_k), idx_k)
