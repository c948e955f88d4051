"""Indexing ops: ``x[index]`` (slices, ints, None, ..., integer arrays, boolean masks), gather /
scatter_add, index_select, embedding and one_hot.

Reading is a gather; its adjoint writes the gradient back into zeros of the input's shape,
*accumulating* where an integer index repeats (``np.add.at``).  The two ops differentiate into
each other (Index ↔ IndexPut, Gather ↔ ScatterAdd), so gradients of gradients flow through.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..autograd import is_grad_enabled
from ..backend import cupyx_module
from ..kernels.scatter import scatter_add_rows_cpu
from ..tensor import Tensor
from ._util import normalize_dim

__all__ = ["index", "gather", "scatter_add", "index_select", "embedding", "one_hot", "take"]


def _convert_index(index):
    """Tensor parts of an index become arrays; lists become integer / boolean arrays."""
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    for part in index:
        if isinstance(part, Tensor):
            if part.data.dtype.kind not in "iub":
                raise IndexError(f"tensors used as indices must be integer or bool, got "
                                 f"{part.dtype}")
            part = part.data if part.data.ndim else part.data.item()
        elif isinstance(part, list):
            part = np.asarray(part)
            if part.dtype.kind == "f":
                raise IndexError("a list used as an index must hold ints or bools")
        out.append(part)
    return tuple(out)


def _is_advanced(idx):
    return any(hasattr(p, "ndim") and p.ndim > 0 or isinstance(p, np.ndarray) for p in idx)


def _integer_form(idx, xp):
    """Boolean masks replaced by the integer arrays of their True positions (for add.at)."""
    out = []
    for p in idx:
        if hasattr(p, "dtype") and p.dtype == bool and p.ndim > 0:
            out.extend(xp.nonzero(xp.asarray(p)))
        else:
            out.append(xp.asarray(p) if isinstance(p, np.ndarray) else p)
    return tuple(out)


# the dtypes CuPy's scatter-add (CUDA's atomicAdd) takes: int32, uint32, uint64, float16/32/64
_ATOMIC_ADD_DTYPES = frozenset(np.dtype(c) for c in "iIQefd")


def _scatter_add_device(xp, out, idx, values):
    """``cupyx.scatter_add(out, idx, values)`` for integer and bool dtypes too.  CuPy's atomic
    kernel refuses int64, int8/16, uint8/16 and bool: int64 adds bit for bit as uint64 (two's
    complement), the others add in an int64 copy and are cast back, which wraps (and ORs bools)
    as NumPy's ``add.at`` does on the CPU."""
    scatter_add = cupyx_module(xp).scatter_add
    if out.dtype in _ATOMIC_ADD_DTYPES or out.dtype.kind not in "biu":
        scatter_add(out, idx, values)
        return
    values = xp.asarray(values).astype(np.int64).view(np.uint64)
    if out.dtype == np.int64:
        scatter_add(out.view(np.uint64), idx, values)
    else:
        wide = out.astype(np.int64)
        scatter_add(wide.view(np.uint64), idx, values)
        out[...] = wide.astype(out.dtype)


def _scatter_add(xp, out, idx, values):
    """``out[idx] += values``, accumulating where an index repeats (in place)."""
    if xp is not np:        # CuPy's atomic kernel (the simulated one under NUMBA_ENABLE_CUDASIM)
        _scatter_add_device(xp, out, idx, values)
    elif (len(idx) == 1 and isinstance(idx[0], np.ndarray) and idx[0].dtype.kind in "iu"
          and out.ndim > 1 and out.flags.c_contiguous and idx[0].size > 1):
        # an embedding's gradient: one compiled loop over rows, not add.at's element loop
        scatter_add_rows_cpu(out, idx[0], values)
    else:
        np.add.at(out, idx, values)


class Index(Function):
    """y = x[idx]; backward puts gy into zeros shaped like x at idx (adding repeats)."""

    def forward(self, x):
        # advanced indexing copies; order="C" (not ascontiguousarray) keeps a 0-d result 0-d
        return self.xp.asarray(x[self.idx], order="C") if self.advanced else x[self.idx]

    def backward(self, gy):
        x = self.inputs[0]
        return IndexPut.apply(gy, idx=self.idx, shape=x.shape, advanced=self.advanced)

    def backward_into(self, gx, gy):
        """``gx[idx] += gy`` in place, for an engine that already holds x's gradient buffer:
        the pieces of ``q, k, v = qkv`` (or of split, chunk, narrow) then fill one buffer,
        instead of three zero arrays of qkv's size that are added up."""
        if self.advanced:
            _scatter_add(self.xp, gx, _integer_form(self.idx, self.xp), gy)
        else:
            gx[self.idx] += gy


class IndexPut(Function):
    """y = zeros(shape); y[idx] += g  (the adjoint of Index); backward is Index again."""

    def forward(self, g):
        xp = self.xp
        out = xp.zeros(self.shape, dtype=g.dtype)
        if self.advanced:
            _scatter_add(xp, out, _integer_form(self.idx, xp), g)
        else:
            out[self.idx] = g
        return out

    def backward(self, gy):
        return Index.apply(gy, idx=self.idx, advanced=self.advanced)


def _is_int(p):
    return isinstance(p, (int, np.integer)) and not isinstance(p, bool)


def _split_scalars(idx):
    """PyTorch applies integer scalars as plain selects *before* the advanced part, while NumPy
    counts them among the advanced indices, which can move where the advanced dims land
    (``x[None, arr, :, 0]`` is (1, n, ...) in PyTorch, (n, 1, ...) in NumPy).  So
    ``x[idx]`` = ``x[first][rest]``: ``first`` takes the ints (and inserts the Nones), ``rest``
    the slices and arrays."""
    first, rest = [], []
    for p in idx:
        if _is_int(p):
            first.append(p)
        elif p is None:
            first.append(None)
            rest.append(slice(None))
        elif p is Ellipsis:
            first.append(Ellipsis)
            rest.append(Ellipsis)
        else:       # a slice, an integer array, or a boolean mask spanning mask.ndim dims
            n = p.ndim if getattr(p, "dtype", None) == bool else 1
            first.extend([slice(None)] * n)
            rest.append(p)
    return tuple(first), tuple(rest)


def index(input, idx):
    """``input[idx]`` with autograd, with PyTorch's placement of advanced-index dims."""
    idx = _convert_index(idx)
    xp = input._xp()
    idx = tuple(xp.asarray(p) if isinstance(p, np.ndarray) and xp is not np else p for p in idx)
    if _is_advanced(idx) and any(_is_int(p) for p in idx):
        first, rest = _split_scalars(idx)
        return index(index(input, first), rest)
    try:
        if not (input.requires_grad and is_grad_enabled()):
            return Tensor._make(input.data[idx], input._device)
        return Index.apply(input, idx=idx, advanced=_is_advanced(idx))
    except IndexError as e:
        raise IndexError(f"index {idx!r} is invalid for a tensor of shape "
                         f"{tuple(input.shape)}: {e}") from None


class Gather(Function):
    """y[i][j][k] = x[i][index[i][j][k]][k] (dim = 1);  backward is scatter_add.
    Off ``dim`` the index may be smaller than x (as in PyTorch): only its leading block is read."""

    def forward(self, x):
        block = tuple(slice(None) if a == self.axis else slice(0, s)
                      for a, s in enumerate(self.index.shape))
        return self.xp.take_along_axis(x[block], self.index, axis=self.axis)

    def backward(self, gy):
        return ScatterAdd.apply(gy, index=self.index, axis=self.axis,
                                shape=self.inputs[0].shape)


class ScatterAdd(Function):
    """y = zeros(shape); y[i][index[i][j][k]][k] += src[i][j][k];  backward is gather."""

    def forward(self, src):
        xp = self.xp
        out = xp.zeros(self.shape, dtype=src.dtype)
        grids = list(xp.indices(self.index.shape, sparse=True))
        grids[self.axis] = self.index
        _scatter_add(xp, out, tuple(grids), src)
        return out

    def backward(self, gy):
        return Gather.apply(gy, index=self.index, axis=self.axis)


def _check_index_tensor(index, input, op):
    if not isinstance(index, Tensor) or index.data.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor")
    if index._device != input._device:
        raise RuntimeError(f"{op}: device mismatch: input on {input._device}, index on "
                           f"{index._device}")


def _check_index_shape(index, input, d, op, src=None):
    """PyTorch's rule: index.size(k) <= input.size(k) for k != dim (and <= src.size(k) for all k)."""
    if index.ndim != input.ndim:
        raise ValueError(f"{op}: index has {index.ndim} dims, input has {input.ndim}")
    if any(i > s for k, (i, s) in enumerate(zip(index.shape, input.shape)) if k != d) or (
            src is not None and any(i > s for i, s in zip(index.shape, src.shape))):
        raise ValueError(f"{op}: index of shape {tuple(index.shape)} is larger than input of "
                         f"shape {tuple(input.shape)} outside dimension {d}"
                         + ("" if src is None else f" (or than src {tuple(src.shape)})"))


def gather(input, dim, index):
    _check_index_tensor(index, input, "gather")
    d = normalize_dim(dim, input.ndim, "gather")
    _check_index_shape(index, input, d, "gather")
    return Gather.apply(input, index=index.data, axis=d)


def scatter_add(input, dim, index, src):
    """``input`` plus ``src`` added at ``index`` along ``dim`` (out-of-place)."""
    _check_index_tensor(index, input, "scatter_add")
    d = normalize_dim(dim, input.ndim, "scatter_add")
    _check_index_shape(index, input, d, "scatter_add", src)
    src = src[tuple(slice(0, s) for s in index.shape)]
    return input + ScatterAdd.apply(src, index=index.data, axis=d, shape=input.shape)


def index_select(input, dim, index):
    d = normalize_dim(dim, input.ndim, "index_select")
    return _index_along(input, d, index)


def _index_along(input, d, index):
    return input[(slice(None),) * d + (index,)]


def take(input, index):
    return input.reshape(-1)[index]


def embedding(input, weight, padding_idx=None):
    """Rows of ``weight`` picked by the integer tensor ``input``: ``weight[input]``.
    Rows at ``padding_idx`` receive no gradient."""
    if not isinstance(input, Tensor) or input.data.dtype.kind not in "iu":
        raise TypeError("embedding: input must be an integer tensor of indices")
    n = weight.shape[0]
    if input.numel() and (int(input.data.min()) < 0 or int(input.data.max()) >= n):
        raise IndexError(f"embedding: index out of range: indices span "
                         f"[{int(input.data.min())}, {int(input.data.max())}] but the table "
                         f"has {n} rows")
    out = weight[input]
    if padding_idx is not None and weight.requires_grad:
        keep = Tensor._make((input.data != padding_idx).astype(weight.dtype)[..., None],
                            weight._device)
        out = out * keep + (out * (1.0 - keep)).detach()
    return out


def one_hot(tensor, num_classes=-1):
    """int64 tensor of shape ``tensor.shape + (num_classes,)`` with a 1 at each label."""
    if tensor.data.dtype.kind not in "iu":
        raise TypeError(f"one_hot: needs an integer tensor, got {tensor.dtype}")
    xp = tensor._xp()
    if num_classes < 0:
        num_classes = int(tensor.data.max()) + 1 if tensor.numel() else 0
    if tensor.numel() and (int(tensor.data.min()) < 0 or int(tensor.data.max()) >= num_classes):
        raise ValueError(f"one_hot: class values must lie in [0, {num_classes}), got "
                         f"[{int(tensor.data.min())}, {int(tensor.data.max())}]")
    out = (tensor.data[..., None] == xp.arange(num_classes)).astype(np.int64)
    return Tensor._make(out, tensor._device)

