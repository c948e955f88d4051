"""The Tensor: an array (NumPy or CuPy), its device, and its place in the autograd graph.

A Tensor is a thin handle: ``data`` is the array, ``grad_fn`` the :class:`~nanogen.autograd.Function`
that produced it (``None`` for leaves), ``requires_grad`` whether gradients flow to it and ``grad``
the gradient accumulated by :meth:`backward`.  Every operator and method here delegates to
:mod:`nanogen.functional`, where each op's forward and backward live side by side.
"""
from __future__ import annotations

import numpy as np

from . import autograd, backend
from .backend import Device

__all__ = ["Tensor", "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
           "bool_", "get_default_dtype", "set_default_dtype", "is_tensor"]

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int8 = np.dtype("int8")
int16 = np.dtype("int16")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
uint8 = np.dtype("uint8")
bool_ = np.dtype("bool")

_default_dtype = float32


def get_default_dtype():
    """The dtype of tensors made from Python floats (float32 unless changed)."""
    return _default_dtype


def set_default_dtype(dtype):
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"the default dtype must be a floating type, got {dtype}")
    _default_dtype = dtype


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


def _device_of_new_data(data):
    """Where ``ng.tensor(data)`` puts data given without a device: a CuPy array stays on the
    GPU; anything else goes to the default device (the CPU unless ``ng.device(...)`` says)."""
    dev = backend.device_of_array(data)
    return dev if dev.type == "cuda" else backend.default_device()


def _infer_array(data, dtype, xp):
    """Turn Python data or an array into an array, with PyTorch's dtype rules:
    NumPy arrays keep their dtype; Python floats give the default dtype (float32); Python ints
    give int64; bools give bool."""
    if isinstance(data, Tensor):
        arr = data.data
    elif isinstance(data, np.ndarray) or type(data).__module__.startswith("cupy"):
        arr = data
    elif isinstance(data, np.generic):      # a NumPy scalar keeps its dtype
        arr = np.asarray(data)
    else:
        if isinstance(data, (list, tuple)):
            data = _detensor(data)
        arr = np.asarray(data)
        if dtype is None:
            if arr.dtype.kind == "f":
                arr = arr.astype(_default_dtype)
            elif arr.dtype.kind in "iu":
                arr = arr.astype(np.int64)
            elif arr.dtype.kind not in "b":
                raise TypeError(f"cannot make a tensor from {type(data).__name__} data "
                                f"(NumPy gives dtype {arr.dtype})")
    if dtype is not None:
        arr = arr.astype(np.dtype(dtype), copy=False)
    return arr


def _detensor(data):
    if isinstance(data, (list, tuple)):
        return [_detensor(d) for d in data]
    return data.item() if isinstance(data, Tensor) else data


def parse_to_args(args, kwargs):
    """``(device or None, dtype or None)`` from the accepted forms of ``to()``:
    ``to("cuda")``, ``to(ng.float64)``, ``to(other_tensor)``, ``to(device, dtype)``, keywords
    ``device=`` / ``dtype=``, and PyTorch's ``non_blocking`` / ``memory_format`` (ignored)."""
    kwargs = dict(kwargs)
    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None)
    kwargs.pop("memory_format", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, (str, Device)):
            device = a
        elif isinstance(a, bool):          # to(device, dtype, non_blocking)
            continue
        else:
            dtype = a
    return (Device(device) if device is not None else None,
            np.dtype(dtype) if dtype is not None else None)


class Tensor:
    """An n-dimensional array with autograd.  Make one with :func:`nanogen.tensor`."""

    __slots__ = ("data", "grad", "grad_fn", "_requires_grad", "_device", "__weakref__",
                 "_is_param")
    __array_ufunc__ = None        # make NumPy defer to Tensor's reflected operators

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        dev = Device(device) if device is not None else (
            data._device if isinstance(data, Tensor) else _device_of_new_data(data))
        arr = _infer_array(data, dtype, None)
        arr = backend.to_device_array(arr, dev)
        if isinstance(data, Tensor) or arr is data:
            arr = arr.copy()      # ng.tensor(x) copies, like torch.tensor
        self._init_slots(arr, dev)
        if requires_grad:
            self.requires_grad = True

    @classmethod
    def _make(cls, array, device, requires_grad=False, grad_fn=None):
        """Wrap an array without copying or converting (the internal fast path)."""
        t = object.__new__(cls)
        if isinstance(array, np.generic):   # NumPy reductions and scalar indexing give scalars
            array = np.asarray(array)
        t._init_slots(array, device, requires_grad, grad_fn)
        return t

    def _init_slots(self, array, device, requires_grad=False, grad_fn=None, is_param=False):
        """Fill every slot (shared by the constructor, ``_make`` and ``nn.Parameter``)."""
        self.data = array
        self.grad = None
        self.grad_fn = grad_fn
        self._device = device
        self._requires_grad = requires_grad
        self._is_param = is_param

    # ------------------------------------------------------------------ properties
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        value = bool(value)
        if self.grad_fn is not None and not value:
            raise RuntimeError("requires_grad can only be switched off on leaf tensors; use "
                               ".detach() to get a tensor cut from the graph")
        if value and self.data.dtype.kind not in "fc":
            raise RuntimeError(f"only floating point tensors can require gradients, "
                               f"this one is {self.data.dtype}")
        self._requires_grad = value

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def shape(self):
        return self.data.shape

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> Device:
        return self._device

    @property
    def is_cuda(self) -> bool:
        return self._device.type == "cuda"

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def _xp(self):
        return backend.array_module(self._device)

    # ------------------------------------------------------------------ conversion
    def numpy(self):
        """The values as a NumPy array (shares memory on the CPU; refuses a tensor in a graph)."""
        if self.requires_grad:
            raise RuntimeError("can't call numpy() on a tensor that requires grad: use "
                               ".detach().numpy()")
        return self._host()

    def _host(self):
        if isinstance(self.data, np.ndarray):
            return self.data
        return self.data.get()

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape "
                             f"{tuple(self.shape)}")
        return self._host().reshape(()).item()

    def tolist(self):
        return self._host().tolist()

    def __array__(self, dtype=None, copy=None):
        arr = self._host()
        return arr if dtype is None else arr.astype(dtype)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iub" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.data.size} elements is "
                               "ambiguous: use .any() or .all()")
        return bool(self.item())

    def to(self, *args, **kwargs):
        """``x.to("cuda")``, ``x.to(ng.float64)``, ``x.to(other_tensor)``, ``x.to(device, dtype)``."""
        device, dtype = parse_to_args(args, kwargs)
        out = self
        if dtype is not None and dtype != self.dtype:
            from .functional.elementwise import cast
            out = cast(out, dtype)
        if device is not None and device != self._device:
            from .functional.elementwise import to_device
            out = to_device(out, device)
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def type(self, dtype):
        return self.to(dtype)

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def half(self):
        return self.to(float16)

    def long(self):
        return self.to(int64)

    def int(self):
        return self.to(int32)

    def bool(self):
        return self.to(bool_)

    def is_floating_point(self) -> bool:
        return self.data.dtype.kind == "f"

    def detach(self):
        """The same values, cut from the graph (shares the array)."""
        return Tensor._make(self.data, self._device)

    def detach_(self):
        self.grad_fn = None
        self._requires_grad = False
        return self

    def clone(self):
        from .functional.elementwise import clone
        return clone(self)

    def contiguous(self):
        return self

    # ------------------------------------------------------------------ autograd
    def backward(self, gradient=None, retain_graph=None, create_graph=False):
        """Accumulate the gradient of this tensor into ``.grad`` of the graph's leaves."""
        autograd.backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph)

    def __hash__(self):
        return id(self)

    # ------------------------------------------------------------------ printing
    def __repr__(self):
        body = np.array2string(self._host(), separator=", ", precision=4, threshold=200,
                               prefix="tensor(")
        extras = []
        if self._device.type != "cpu":
            extras.append(f"device='{self._device}'")
        if self.data.dtype not in (float32, int64, bool_):
            extras.append(f"dtype={self.data.dtype}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn={self.grad_fn!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    # ------------------------------------------------------------------ in-place writes
    def __setitem__(self, index, value):
        """``m[:, :, 3:] = 0`` -- allowed on tensors that take no part in autograd."""
        if self.requires_grad and autograd.is_grad_enabled():
            raise RuntimeError("in-place assignment to a tensor that requires grad would "
                               "corrupt its gradient: assign under ng.no_grad() or to a "
                               "tensor without requires_grad")
        from .functional.indexing import _convert_index, _is_advanced, _is_int, _split_scalars
        if isinstance(value, Tensor):
            if value._device != self._device:
                raise RuntimeError(f"setitem: device mismatch: the tensor is on {self._device}, "
                                   f"the value on {value._device}")
            value = value.data
        idx = _convert_index(index)
        if _is_advanced(idx) and any(_is_int(p) for p in idx):
            first, rest = _split_scalars(idx)      # PyTorch's placement, as in reading
            self.data[first][rest] = value         # data[first] is a view: ints and slices only
        else:
            self.data[idx] = value

    def fill_(self, value):
        self[...] = value
        return self

    def zero_(self):
        return self.fill_(0)

    def copy_(self, src):
        src = src if isinstance(src, Tensor) else Tensor(src)
        if tuple(src.shape) != tuple(self.shape):
            src_data = self._xp().broadcast_to(backend.to_device_array(src.data, self._device),
                                               self.shape)
        else:
            src_data = backend.to_device_array(src.data, self._device)
        with autograd.no_grad():
            self[...] = Tensor._make(src_data.astype(self.dtype, copy=False), self._device)
        return self

    # in-place arithmetic rebinds (x += y is x = x + y), which keeps autograd correct
    def __iadd__(self, other):
        return self + other

    def __isub__(self, other):
        return self - other

    def __imul__(self, other):
        return self * other

    def __itruediv__(self, other):
        return self / other


autograd.Tensor = Tensor


def _install_methods():
    """Bind operators and methods to the functions of nanogen.functional (one source of truth)."""
    from . import functional as F

    def reflected(fn):
        return lambda self, other: fn(other, self)

    ops = {
        "__add__": F.add, "__radd__": reflected(F.add),
        "__sub__": F.sub, "__rsub__": reflected(F.sub),
        "__mul__": F.mul, "__rmul__": reflected(F.mul),
        "__truediv__": F.div, "__rtruediv__": reflected(F.div),
        "__pow__": F.pow, "__rpow__": reflected(F.pow),
        "__matmul__": F.matmul, "__rmatmul__": reflected(F.matmul),
        "__neg__": F.neg, "__abs__": F.abs, "__pos__": lambda self: self,
        "__eq__": F.eq, "__ne__": F.ne, "__lt__": F.lt, "__le__": F.le, "__gt__": F.gt,
        "__ge__": F.ge, "__invert__": F.logical_not, "__and__": F.logical_and,
        "__or__": F.logical_or, "__getitem__": F.index,
        "__floordiv__": F.floor_divide, "__rfloordiv__": reflected(F.floor_divide),
        "__mod__": F.remainder, "__rmod__": reflected(F.remainder),
    }
    for name, fn in ops.items():
        setattr(Tensor, name, fn)
    methods = """add sub mul div neg pow exp log log1p sqrt rsqrt sin cos tanh sigmoid abs clamp
        clip maximum minimum eq ne lt le gt ge sum mean var std max min amax amin argmax argmin
        logsumexp prod all any reshape view flatten unflatten permute transpose t squeeze
        unsqueeze expand expand_as broadcast_to repeat split chunk unbind gather matmul relu
        softmax log_softmax square sign floor ceil round logical_not masked_fill index_select
        view_as reshape_as flip movedim norm cumsum sort""".split()
    for name in methods:
        setattr(Tensor, name, getattr(F, name))
    Tensor.T = property(lambda self: F.permute(self, *reversed(range(self.ndim))))
    Tensor.__iter__ = lambda self: iter(F.unbind(self, 0))
    Tensor.mT = property(lambda self: F.transpose(self, -2, -1))
