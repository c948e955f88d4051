"""Shape ops: reshape/view, permute/transpose, squeeze/unsqueeze, broadcast/expand, repeat,
cat/stack and their inverses split/chunk/unbind, flip.

Each backward is the inverse rearrangement of the gradient, so all are differentiable to any
order: reshape ↔ reshape, permute ↔ inverse permute, broadcast_to ↔ sum_to, cat ↔ slicing.
"""
from __future__ import annotations

import builtins

import numpy as np

from ..autograd import Function
from ._util import normalize_dim, normalize_dims, parse_shape

__all__ = ["reshape", "view", "view_as", "reshape_as", "flatten", "unflatten", "permute",
           "transpose", "swapaxes", "t", "squeeze", "unsqueeze", "expand", "expand_as",
           "broadcast_to", "repeat", "cat", "concat", "concatenate", "stack", "split", "chunk",
           "unbind", "flip", "movedim", "narrow", "tile", "broadcast_tensors"]


class Reshape(Function):
    def forward(self, x):
        return x.reshape(self.shape)

    def backward(self, gy):
        return reshape(gy, self.inputs[0].shape)


def _resolve_shape(shape, numel, op):
    shape = list(shape)
    if shape.count(-1) > 1:
        raise ValueError(f"{op}: only one dimension can be -1, got {tuple(shape)}")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1]))
        if known == 0 or numel % known:
            raise ValueError(f"{op}: shape {tuple(shape)} is invalid for a tensor of "
                             f"{numel} elements")
        shape[shape.index(-1)] = numel // known
    if int(np.prod(shape)) != numel:
        raise ValueError(f"{op}: shape {tuple(shape)} is invalid for a tensor of {numel} "
                         f"elements")
    return tuple(shape)


def reshape(input, *shape):
    shape = _resolve_shape(parse_shape(shape, "reshape"), input.numel(), "reshape")
    if shape == tuple(input.shape):
        return input
    return Reshape.apply(input, shape=shape)


view = reshape


def view_as(input, other):
    return reshape(input, other.shape)


reshape_as = view_as


def flatten(input, start_dim=0, end_dim=-1):
    if input.ndim == 0:
        return reshape(input, 1)
    s = normalize_dim(start_dim, input.ndim, "flatten")
    e = normalize_dim(end_dim, input.ndim, "flatten")
    shape = input.shape[:s] + (int(np.prod(input.shape[s:e + 1])),) + input.shape[e + 1:]
    return reshape(input, shape)


def unflatten(input, dim, sizes):
    d = normalize_dim(dim, input.ndim, "unflatten")
    sizes = _resolve_shape(sizes, input.shape[d], "unflatten")
    return reshape(input, input.shape[:d] + sizes + input.shape[d + 1:])


class Permute(Function):
    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, gy):
        return permute(gy, *np.argsort(self.axes).tolist())


def permute(input, *dims):
    dims = parse_shape(dims, "permute")
    if len(dims) != input.ndim:
        raise ValueError(f"permute: {len(dims)} dims given for a tensor with {input.ndim}")
    axes = tuple(normalize_dim(d, input.ndim, "permute") for d in dims)
    if sorted(axes) != list(range(input.ndim)):
        raise ValueError(f"permute: {tuple(dims)} is not a permutation of the dimensions")
    if axes == tuple(range(input.ndim)):
        return input
    return Permute.apply(input, axes=axes)


def transpose(input, dim0, dim1):
    n = input.ndim
    if n < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return input
    axes = list(range(n))
    a, b = normalize_dim(dim0, n, "transpose"), normalize_dim(dim1, n, "transpose")
    axes[a], axes[b] = axes[b], axes[a]
    return permute(input, *axes)


swapaxes = transpose


def t(input):
    if input.ndim > 2:
        raise ValueError(f"t() expects a tensor with at most 2 dims, got {input.ndim}")
    return transpose(input, 0, 1) if input.ndim == 2 else input


def movedim(input, source, destination):
    """Move dims ``source`` to positions ``destination``, keeping the others in order."""
    def seq(d):
        return d if isinstance(d, (tuple, list)) else (d,)
    src = [normalize_dim(d, input.ndim, "movedim") for d in seq(source)]
    dst = [normalize_dim(d, input.ndim, "movedim") for d in seq(destination)]
    if len(src) != len(dst):
        raise ValueError(f"movedim: {len(src)} source dims but {len(dst)} destinations")
    order = [i for i in range(input.ndim) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return permute(input, *order)


def squeeze(input, dim=None):
    if dim is None:
        return reshape(input, tuple(s for s in input.shape if s != 1))
    axes = normalize_dims(dim, input.ndim, "squeeze") if input.ndim else ()
    return reshape(input, tuple(s for i, s in enumerate(input.shape)
                                if not (i in axes and s == 1)))


def unsqueeze(input, dim):
    d = normalize_dim(dim, input.ndim + 1, "unsqueeze")
    return reshape(input, input.shape[:d] + (1,) + input.shape[d:])


class BroadcastTo(Function):
    """Broadcast to ``shape``; the adjoint (backward) is sum_to."""

    def forward(self, x):
        return self.xp.broadcast_to(x, self.shape)

    def backward(self, gy):
        from .reduce import sum_to
        return sum_to(gy, self.inputs[0].shape)


def broadcast_to(input, shape):
    shape = tuple(shape)
    if tuple(input.shape) == shape:
        return input
    try:
        np.broadcast_shapes(input.shape, shape)
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast shape {tuple(input.shape)} to "
                         f"{shape}") from None
    if len(shape) < input.ndim or np.broadcast_shapes(input.shape, shape) != shape:
        raise ValueError(f"broadcast_to: cannot broadcast shape {tuple(input.shape)} to {shape}")
    return BroadcastTo.apply(input, shape=shape)


def expand(input, *sizes):
    sizes = parse_shape(sizes, "expand")
    lead = len(sizes) - input.ndim
    if lead < 0:
        raise ValueError(f"expand: {len(sizes)} sizes given for a tensor with {input.ndim} dims")
    shape = tuple(input.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    return broadcast_to(input, shape)


def expand_as(input, other):
    return broadcast_to(input, other.shape)


def broadcast_tensors(*tensors):
    shape = np.broadcast_shapes(*[t.shape for t in tensors])
    return tuple(broadcast_to(t, shape) for t in tensors)


class Repeat(Function):
    """Tile the tensor; the backward sums the copies: view gy as (r0, s0, r1, s1, ...) and sum
    over the repeat axes."""

    def forward(self, x):
        return self.xp.tile(x.reshape(self.in_shape), self.repeats)

    def backward(self, gy):
        from .reduce import sum
        inter = []
        for r, s in zip(self.repeats, self.in_shape):
            inter += [r, s]
        g = sum(reshape(gy, inter), tuple(range(0, len(inter), 2)))
        return reshape(g, self.inputs[0].shape)


def repeat(input, *repeats):
    repeats = parse_shape(repeats, "repeat")
    if len(repeats) < input.ndim:
        raise ValueError(f"repeat: {len(repeats)} repeats given for a tensor with "
                         f"{input.ndim} dims")
    in_shape = (1,) * (len(repeats) - input.ndim) + tuple(input.shape)
    return Repeat.apply(input, repeats=repeats, in_shape=in_shape)


def tile(input, dims):
    dims = tuple(dims)
    return repeat(input, (1,) * (input.ndim - len(dims)) + dims)


class Cat(Function):
    """Concatenate along ``axis``; the backward slices the gradient back into pieces."""

    def forward(self, *xs):
        return self.xp.concatenate(xs, axis=self.axis)

    def backward(self, gy):
        from .indexing import index
        out, start = [], 0
        for t, need in zip(self.inputs, self.needs_input_grad):
            n = t.shape[self.axis]
            out.append(index(gy, (slice(None),) * self.axis + (slice(start, start + n),))
                       if need else None)
            start += n
        return tuple(out)


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: needs a non-empty list of tensors")
    ref = tensors[0]
    d = normalize_dim(dim, ref.ndim, "cat")
    for i, t in enumerate(tensors[1:], start=1):
        if t.ndim != ref.ndim or any(a != b for j, (a, b) in enumerate(zip(t.shape, ref.shape))
                                     if j != d):
            raise ValueError(f"cat: tensor {i} has shape {tuple(t.shape)}, which does not match "
                             f"tensor 0's {tuple(ref.shape)} outside dimension {dim}")
    if len(tensors) == 1:
        return tensors[0]
    return Cat.apply(*tensors, axis=d)


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: needs a non-empty list of tensors")
    for i, t in enumerate(tensors[1:], start=1):
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: tensor {i} has shape {tuple(t.shape)}, tensor 0 has "
                             f"{tuple(tensors[0].shape)}; stack needs equal shapes")
    d = normalize_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([unsqueeze(t, d) for t in tensors], d)


def narrow(input, dim, start, length):
    from .indexing import index
    d = normalize_dim(dim, input.ndim, "narrow")
    n = input.shape[d]
    s = start + n if start < 0 else start      # a negative start counts from the end
    if not 0 <= s <= n or length < 0 or s + length > n:
        raise IndexError(f"narrow: start {start} and length {length} are out of range for "
                         f"dimension {dim} of size {n}")
    return index(input, (slice(None),) * d + (slice(s, s + length),))


def split(input, split_size_or_sections, dim=0):
    d = normalize_dim(dim, input.ndim, "split")
    n = input.shape[d]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [builtins.min(size, n - s) for s in range(0, n, size)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} do not add up to the size {n} of "
                             f"dimension {dim}")
    out, start = [], 0
    for s in sizes:
        out.append(narrow(input, d, start, s))
        start += s
    return tuple(out)


def chunk(input, chunks, dim=0):
    """Pieces of ⌈n / chunks⌉ along ``dim`` (the last one shorter, maybe fewer pieces than
    ``chunks``); an empty dim gives ``chunks`` empty pieces, as in PyTorch."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    d = normalize_dim(dim, input.ndim, "chunk")
    n = input.shape[d]
    if n == 0:
        return split(input, [0] * chunks, d)
    return split(input, -(-n // chunks), d)


def unbind(input, dim=0):
    from .indexing import index
    d = normalize_dim(dim, input.ndim, "unbind")
    return tuple(index(input, (slice(None),) * d + (i,)) for i in range(input.shape[d]))


class Flip(Function):
    def forward(self, x):
        return self.xp.flip(x, axis=self.axes)

    def backward(self, gy):
        return flip(gy, self.axes)


def flip(input, dims):
    dims = dims if isinstance(dims, (tuple, list)) else (dims,)
    return Flip.apply(input, axes=normalize_dims(tuple(dims), input.ndim, "flip"))
