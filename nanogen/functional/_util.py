"""Helpers shared by the op modules: turning operands into tensors and reducing broadcast grads."""
from __future__ import annotations

import numbers

import numpy as np

from ..tensor import Tensor, get_default_dtype


def as_tensor_like(x, ref: Tensor) -> Tensor:
    """A Python number or array as a constant tensor on ``ref``'s device with ``ref``'s dtype."""
    if isinstance(x, Tensor):
        return x
    xp = ref._xp()
    return Tensor._make(xp.asarray(x, dtype=ref.data.dtype), ref._device)


def binary_operands(a, b, op: str):
    """Tensors for a binary op, with PyTorch's promotions for mixed kinds:

    * a Python number takes the tensor's dtype, except that a float number makes a bool / int
      tensor the default float dtype and an int number makes a bool tensor int64
      (``tensor([True, False]) + 1`` is int64 [2, 1]; a bool number with a bool tensor stays
      bool);
    * a bool / int tensor meeting a float tensor is cast to the float dtype, a bool tensor
      meeting an int tensor to the int dtype;
    * two different float dtypes are an error (Function.apply names both).
    """
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{op}: at least one operand must be a Tensor")
    if not isinstance(a, Tensor):
        a = _number_like(a, b, op)
    elif not isinstance(b, Tensor):
        b = _number_like(b, a, op)
    ka, kb = a.data.dtype.kind, b.data.dtype.kind
    if ka == "f" and kb != "f":
        b = b.to(a.dtype)
    elif kb == "f" and ka != "f":
        a = a.to(b.dtype)
    elif ka in "b" and kb in "iu":
        a = a.to(b.dtype)
    elif kb in "b" and ka in "iu":
        b = b.to(a.dtype)
    return a, b


def _number_like(x, ref: Tensor, op: str) -> Tensor:
    if isinstance(x, (numbers.Number, np.bool_)):
        kind = ref.data.dtype.kind
        if kind == "f" or isinstance(x, (bool, np.bool_)):     # the tensor's dtype
            dtype = ref.data.dtype
        elif isinstance(x, numbers.Integral):       # an int tensor's dtype; a bool one: int64
            dtype = ref.data.dtype if kind != "b" else np.dtype(np.int64)
        else:                       # a float number with a bool / int tensor: the default float
            dtype = get_default_dtype()
        return Tensor._make(ref._xp().asarray(x, dtype=dtype), ref._device)
    if isinstance(x, np.ndarray) or type(x).__module__.startswith("cupy"):
        return Tensor(x)
    raise TypeError(f"{op}: unsupported operand of type {type(x).__name__}")


def unbroadcast(g: Tensor, shape) -> Tensor:
    """Sum a broadcast gradient back down to ``shape`` (the adjoint of broadcasting)."""
    if tuple(g.shape) == tuple(shape):
        return g
    from .reduce import sum_to
    return sum_to(g, shape)


def normalize_dim(dim, ndim: int, op: str = "op") -> int:
    if dim is None:
        return None
    n = max(ndim, 1)        # a 0-d tensor accepts dim 0 and -1, as in PyTorch
    d = dim + n if dim < 0 else dim
    if not 0 <= d < n:
        raise IndexError(f"{op}: dimension {dim} is out of range for a tensor with {ndim} "
                         f"dimensions")
    return d


def normalize_dims(dim, ndim: int, op: str = "op"):
    """``dim`` (int, tuple or None) as a sorted tuple of non-negative axes (None: all axes)."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (list, tuple)):
        axes = tuple(sorted({normalize_dim(d, ndim, op) for d in dim}))
        if len(axes) != len(dim):
            raise ValueError(f"{op}: dimension repeated in {tuple(dim)}")
    else:
        axes = (normalize_dim(dim, ndim, op),)
    return axes if ndim else ()     # a 0-d tensor's one "dim" is no axis of its array


def parse_shape(args, op="op"):
    """Accept ``f(2, 3)``, ``f((2, 3))`` and ``f([2, 3])``."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    try:
        return tuple(int(a) for a in args)
    except TypeError:
        raise TypeError(f"{op}: a shape is a sequence of ints, got {args!r}") from None
