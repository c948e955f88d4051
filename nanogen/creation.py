"""Tensor factories with PyTorch's names: ``tensor``, ``zeros``, ``randn``, ``arange`` ...

Sizes are given as ``zeros(2, 3)`` or ``zeros((2, 3))``; ``dtype`` defaults to float32 for
floating factories and int64 for integer ones; ``device`` is 'cpu' or 'cuda'.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .backend import Device
from .functional._util import parse_shape
from .random import draw
from .tensor import Tensor, get_default_dtype, int64

__all__ = ["tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "zeros_like",
           "ones_like", "full_like", "empty_like", "rand_like", "randn_like", "randint_like",
           "arange", "linspace", "eye", "rand", "randn", "randint", "randperm", "normal",
           "bernoulli", "multinomial"]


def _dev(device):
    dev = Device(device) if device is not None else backend.default_device()
    backend.check_device_available(dev)
    return dev


def _finish(arr, device, requires_grad):
    dev = _dev(device)
    t = Tensor._make(backend.to_device_array(arr, dev), dev)
    if requires_grad:
        t.requires_grad = True
    return t


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of ``data`` (list, number, NumPy/CuPy array or Tensor)."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None):
    if isinstance(data, Tensor) and (dtype is None or data.dtype == np.dtype(dtype)) and \
            (device is None or data.device == device):
        return data
    if isinstance(data, np.ndarray) and (device == "cpu" or device is None and
                                         backend.default_device() == "cpu") and \
            (dtype is None or data.dtype == np.dtype(dtype)):
        return Tensor._make(data, backend.CPU)
    return Tensor(data, dtype=dtype, device=device)


def from_numpy(array):
    """A CPU tensor sharing memory with the NumPy array (its dtype is kept)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a NumPy array, got {type(array).__name__}")
    return Tensor._make(array, backend.CPU)


def _filled(shape, value, dtype, device, requires_grad, default=None):
    dtype = np.dtype(dtype) if dtype is not None else (default or get_default_dtype())
    dev = _dev(device)
    xp = backend.array_module(dev)
    t = Tensor._make(xp.full(shape, value, dtype=dtype), dev)
    if requires_grad:
        t.requires_grad = True
    return t


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _filled(parse_shape(size, "zeros"), 0, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _filled(parse_shape(size, "ones"), 1, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    default = None
    if dtype is None and isinstance(fill_value, bool):
        default = np.dtype(bool)
    elif dtype is None and isinstance(fill_value, int):
        default = int64
    return _filled(parse_shape((size,), "full"), fill_value, dtype, device, requires_grad,
                   default)


def _like(fn):
    def like(input, *args, dtype=None, device=None, requires_grad=False, **kw):
        return fn(input.shape, *args, dtype=dtype or input.dtype,
                  device=device or input.device, requires_grad=requires_grad, **kw)
    like.__name__ = fn.__name__ + "_like"
    return like


def rand(*size, dtype=None, device=None, requires_grad=False, generator=None):
    """Uniform samples on [0, 1)."""
    dtype = np.dtype(dtype) if dtype is not None else get_default_dtype()
    return _finish(draw("uniform", parse_shape(size, "rand"), dtype, _dev(device)), device,
                   requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False, generator=None):
    """Standard normal samples."""
    dtype = np.dtype(dtype) if dtype is not None else get_default_dtype()
    return _finish(draw("normal", parse_shape(size, "randn"), dtype, _dev(device)), device,
                   requires_grad)


def randint(low, high=None, size=(), dtype=None, device=None, requires_grad=False):
    """Integers uniform on [low, high) (``randint(high, size)`` also works)."""
    if high is None:
        low, high = 0, low
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    arr = draw("integers", parse_shape((size,), "randint"), dtype or int64, _dev(device),
               low=low, high=high)
    return _finish(arr, device, requires_grad)


def randperm(n, dtype=None, device=None):
    from .random import generator
    return _finish(generator(_dev(device)).permutation(n).astype(dtype or int64), device, False)


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)
rand_like = _like(rand)
randn_like = _like(randn)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):
    return full(input.shape, fill_value, dtype=dtype or input.dtype,
                device=device or input.device, requires_grad=requires_grad)


def randint_like(input, low, high=None, dtype=None, device=None):
    return randint(low, high, input.shape, dtype=dtype or input.dtype,
                   device=device or input.device)


def normal(mean, std, size=None, device=None):
    """Samples of N(mean, std²): tensors broadcast, or floats with ``size``."""
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        ref = mean if isinstance(mean, Tensor) else std
        shape = np.broadcast_shapes(getattr(mean, "shape", ()), getattr(std, "shape", ()))
        return randn(shape, dtype=ref.dtype, device=ref.device) * std + mean
    return randn(size, device=device) * std + mean


def bernoulli(input):
    """0/1 samples with success probabilities ``input``."""
    u = draw("uniform", input.shape, input.dtype, input.device)
    return Tensor._make(input._xp().asarray(u < input.data, dtype=input.dtype), input._device)


def multinomial(input, num_samples, replacement=False):
    """Class indices drawn from the (unnormalised) probabilities in the last dim of ``input``."""
    p = np.asarray(input.detach()._host(), dtype=np.float64)
    if (p < 0).any() or not np.isfinite(p).all():
        raise ValueError("multinomial: probabilities must be finite and non-negative")
    p2 = p.reshape(-1, p.shape[-1])
    totals = p2.sum(-1, keepdims=True)
    if (totals <= 0).any():
        raise ValueError("multinomial: each row needs a positive total probability")
    p2 = p2 / totals
    if not replacement and num_samples > p2.shape[-1]:
        raise ValueError(f"multinomial: cannot draw {num_samples} samples without replacement "
                         f"from {p2.shape[-1]} categories")
    from .random import generator
    g = generator("cpu")
    if replacement:
        u = g.random((p2.shape[0], num_samples))
        out = (u[:, :, None] > np.cumsum(p2, -1)[:, None, :-1]).sum(-1)
    else:
        out = np.stack([g.choice(p2.shape[-1], num_samples, replace=False, p=row) for row in p2])
    out = out.reshape(p.shape[:-1] + (num_samples,)).astype(np.int64)
    return _finish(out, input.device, False)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = int64 if all(isinstance(v, (int, np.integer)) for v in (start, end, step)) \
            else get_default_dtype()
    return _finish(np.arange(start, end, step, dtype=np.dtype(dtype)), device, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    dtype = np.dtype(dtype) if dtype is not None else get_default_dtype()
    return _finish(np.linspace(start, end, steps, dtype=dtype), device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    dtype = np.dtype(dtype) if dtype is not None else get_default_dtype()
    return _finish(np.eye(n, m, dtype=dtype), device, requires_grad)
