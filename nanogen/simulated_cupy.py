"""A CuPy-shaped namespace over NumPy: the array module of device "cuda" under numba's simulator.

With ``NUMBA_ENABLE_CUDASIM=1`` there is no GPU, and a "cuda" tensor holds a NumPy array (numba's
simulated kernels take NumPy arrays).  If the device's array module were ``numpy`` itself, every
``xp is np`` test in nanogen would take the CPU route and the code written only for CuPy
(``cupy.matmul`` in place of the CPU's BLAS drivers, ``cupyx.scatter_add``, the
``cupyx.scipy.special`` erf, the device's own random generator) would never run without a GPU.
So :func:`nanogen.backend.array_module` returns :data:`cupy` below instead: an object that is not
``numpy``, offers the subset of CuPy's API that nanogen calls, and computes with NumPy.

* Arrays stay NumPy ``ndarray`` s (``cupy.ndarray is numpy.ndarray`` here), so numba's simulated
  kernels, ``__cuda_array_interface__`` users and NumPy-typed checks keep working.  Which device
  an array belongs to is known from its Tensor, never from the array's type.
* Only names CuPy also has are offered: a NumPy-only function used on the GPU path
  (``numpy.errstate``, ``numpy.add.at`` ...) raises ``AttributeError`` here, as it would on a GPU.
* CuPy's own functions behave like CuPy's: :func:`asnumpy` copies (a device-to-host transfer),
  ``cupyx.scatter_add`` refuses the dtypes CuPy's atomics lack (int64, bool ...), and
  ``random.default_rng(seed)`` is a generator of its own, separate from the CPU's.  It is NumPy's
  PCG64 with the same seed, so a seeded "cuda" run draws the numbers a seeded CPU run draws,
  which lets the simulated tests compare the two (a real GPU draws other numbers).
* Functions return arrays where NumPy returns scalars (CuPy has no scalars: ``cupy.exp`` of a
  0-d array is a 0-d array that ``out=`` can write into), and raise no floating-point
  ``RuntimeWarning`` (CuPy's kernels do not).  Array *methods* and operators are NumPy's own.
* :data:`calls` counts what served, by CuPy's name: ``calls["cupy.matmul"]``,
  ``calls["cupyx.scatter_add"]``, ``calls["cupyx.scipy.special.erf"]``,
  ``calls["cupy.random.default_rng"]``, ``calls["cupy.empty"]`` ... (one per call).
  :func:`recording` gives a fresh count for a block, which is how the tests prove that the GPU
  branches ran.
"""
from __future__ import annotations

import collections
import contextlib
import types

import numpy as np

__all__ = ["cupy", "cupyx", "calls", "recording"]

#: what served, by CuPy's qualified name (see the module docstring)
calls: collections.Counter = collections.Counter()


@contextlib.contextmanager
def recording():
    """``with recording() as served:`` -- ``served`` counts the calls made inside the block
    (the global :data:`calls` keeps counting too)."""
    before = calls.copy()
    served = collections.Counter()
    try:
        yield served
    finally:
        served.update(calls)
        served.subtract(before)
        for name in [k for k, v in served.items() if v <= 0]:
            del served[name]


class Namespace(types.ModuleType):
    """A module-like namespace: its own functions, and a listed set of another module's names
    (functions wrapped as CuPy-like calls, see :class:`_DeviceCall`; types and constants as they
    are); every call is counted in :data:`calls`, anything unlisted is an ``AttributeError``."""

    def __init__(self, name, source=None, names=(), own=None, parts=None):
        super().__init__(name)
        self._source = source
        self._names = frozenset(names)
        for attr, fn in (own or {}).items():
            setattr(self, attr, _DeviceCall(f"{name}.{attr}", fn))
        for attr, part in (parts or {}).items():
            setattr(self, attr, part)

    def __getattr__(self, attr):        # only reached for names not set on the namespace yet
        if attr.startswith("__") or attr not in self._names:
            raise AttributeError(f"{self.__name__}.{attr}: not in the simulated CuPy namespace "
                                 f"(nanogen.simulated_cupy); if CuPy has it, add it to the names "
                                 f"listed there")
        value = getattr(self._source, attr)
        if callable(value) and not isinstance(value, type):
            value = _DeviceCall(f"{self.__name__}.{attr}", value)
        setattr(self, attr, value)      # looked up once
        return value

    def __dir__(self):
        return sorted(set(super().__dir__()) | self._names)

    def __repr__(self):
        return f"<simulated CuPy namespace {self.__name__!r} (NumPy underneath)>"


def _as_device_result(r):
    """CuPy returns arrays where NumPy returns scalars (``cupy.exp`` of a 0-d array is a 0-d
    array, and can be written into with ``out=``)."""
    if isinstance(r, np.generic):
        return np.asarray(r)
    if type(r) is tuple:
        return tuple(_as_device_result(v) for v in r)
    return r


class _DeviceCall:
    """A NumPy function or ufunc called the way CuPy's would be: counted in :data:`calls`,
    results as arrays, and silent about floating-point overflow and invalid values (CuPy's
    kernels raise no ``RuntimeWarning``).  A ufunc's attributes (``reduce``, ``nin`` ...) pass
    through."""

    __slots__ = ("_fn", "_name", "__name__")

    def __init__(self, name, fn):
        self._fn, self._name = fn, name
        self.__name__ = name.rsplit(".", 1)[1]

    def __call__(self, *args, **kwargs):
        calls[self._name] += 1
        with np.errstate(all="ignore"):
            return _as_device_result(self._fn(*args, **kwargs))

    def __getattr__(self, attr):
        return getattr(self._fn, attr)

    def __repr__(self):
        return f"<simulated {self._name}>"


# ------------------------------------------------------------------------------ cupy.*
# NumPy names CuPy offers under the same name and semantics: the ones nanogen uses on the GPU
# path, and the common ones a model may reasonably use.  Keep to names CuPy documents.
_DTYPES = """bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64
    complex64 complex128 dtype finfo iinfo result_type can_cast promote_types ndarray generic
    number integer floating signedinteger unsignedinteger""".split()
_CONSTANTS = "pi e inf nan newaxis".split()
_CREATION = """empty empty_like zeros zeros_like ones ones_like full full_like eye identity arange
    linspace array asarray ascontiguousarray asfortranarray copy indices meshgrid tri tril triu
    diag diagonal""".split()
_SHAPE = """reshape ravel transpose moveaxis swapaxes expand_dims squeeze broadcast_to
    broadcast_arrays atleast_1d atleast_2d atleast_3d concatenate stack split array_split tile
    repeat flip fliplr flipud roll rot90 pad""".split()
_MATH = """add subtract multiply divide true_divide floor_divide remainder mod fmod negative
    positive power float_power square sqrt cbrt reciprocal abs absolute sign signbit copysign exp
    exp2 expm1 log log2 log10 log1p logaddexp logaddexp2 sin cos tan arcsin arccos arctan arctan2
    sinh cosh tanh arcsinh arccosh arctanh hypot deg2rad rad2deg floor ceil trunc rint round
    around clip maximum minimum fmax fmin heaviside dot vdot inner outer tensordot einsum""".split()
_LOGIC = """equal not_equal less less_equal greater greater_equal logical_and logical_or
    logical_not logical_xor isfinite isinf isnan isclose allclose array_equal all any where
    nonzero flatnonzero count_nonzero bitwise_and bitwise_or bitwise_xor invert left_shift
    right_shift""".split()
_REDUCE = """sum prod mean var std amax amin max min argmax argmin cumsum cumprod diff sort
    argsort searchsorted unique bincount take take_along_axis put_along_axis""".split()
_CUPY_NAMES = _DTYPES + _CONSTANTS + _CREATION + _SHAPE + _MATH + _LOGIC + _REDUCE


def asnumpy(a, stream=None, order="C", out=None):
    """``cupy.asnumpy``: the values on the host, always a new array (a device-to-host copy)."""
    host = np.array(a, order=order, copy=True)
    if out is None:
        return host
    out[...] = host
    return out


def _default_rng(seed=None):
    """``cupy.random.default_rng``: a generator of the device's own -- NumPy's PCG64 here, so the
    same seed draws the numbers the CPU's ``Generator(PCG64(seed))`` draws."""
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------ cupyx.*
# CuPy's scatter kernels use atomicAdd, which exists for these dtypes only (CuPy's own tests:
# for_dtypes('iILQefd')): a scatter-add on int64 or bool fails on a GPU, so it fails here too.
SCATTER_ADD_DTYPES = frozenset(np.dtype(c) for c in "iILQefd")


def _scatter_add(a, slices, value):
    """``cupyx.scatter_add(a, slices, value)``: ``a[slices] += value`` with repeated indices
    accumulating (``numpy.add.at`` underneath), in place."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"cupyx.scatter_add: a must be a device array, got {type(a).__name__}")
    if a.dtype not in SCATTER_ADD_DTYPES:
        raise TypeError(f"cupyx.scatter_add does not support dtype {a.dtype} (CuPy's atomic add "
                        f"covers {', '.join(sorted(str(d) for d in SCATTER_ADD_DTYPES))})")
    np.add.at(a, slices, value)


def _erf(x):
    """``cupyx.scipy.special.erf``: elementwise, in the input's float dtype."""
    from scipy.special import erf
    return erf(x)


random = Namespace("cupy.random", own={"default_rng": _default_rng})
linalg = Namespace("cupy.linalg", np.linalg,
                   "qr norm svd inv det slogdet cholesky solve eigh pinv matrix_power".split())
cupy = Namespace("cupy", np, _CUPY_NAMES, own={"matmul": np.matmul, "asnumpy": asnumpy},
                 parts={"random": random, "linalg": linalg})

_special = Namespace("cupyx.scipy.special", own={"erf": _erf})
cupyx = Namespace("cupyx", own={"scatter_add": _scatter_add},
                  parts={"scipy": Namespace("cupyx.scipy", parts={"special": _special})})
