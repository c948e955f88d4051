"""Devices and array modules.

nanogen keeps every tensor's values in an array owned by a *backend*:

* ``"cpu"``  -- a NumPy ``ndarray``.
* ``"cuda"`` -- a CuPy ``ndarray`` on the GPU when CuPy and a GPU are present.  The hand-written
  kernels in :mod:`nanogen.kernels` are ``numba.cuda`` kernels that take CuPy arrays through
  ``__cuda_array_interface__``.
* ``"cuda"`` under the simulator -- when ``NUMBA_ENABLE_CUDASIM=1`` is set before numba is
  imported, ``numba.cuda`` runs kernels on the CPU.  A ``"cuda"`` tensor then holds a NumPy array,
  but every hand-written kernel is routed to its ``numba.cuda`` version, and the device's array
  module is :data:`nanogen.simulated_cupy.cupy` -- a CuPy-shaped namespace over NumPy, not
  ``numpy`` itself -- so the CUDA kernels and every GPU-only branch (``xp is not np``) are
  exercised (and compared with the CPU path) on machines without a GPU.

Everything outside the kernels is written against ``xp``, the array module of a device
(``numpy``, ``cupy``, or the simulated ``cupy``), obtained with :func:`array_module`;
:func:`cupyx_module` gives the ``cupyx`` that goes with it.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["Device", "device", "default_device", "set_default_device", "array_module", "cupyx_module", "is_cuda_available",
           "is_cuda_simulator", "to_device_array", "device_of_array"]

_CUPY = None          # the cupy module once imported, False when unavailable
_CUDA_OK = None       # cached answer of is_cuda_available()


def is_cuda_simulator() -> bool:
    """True when numba's CUDA simulator is switched on (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def _cupy():
    """Import CuPy lazily; returns the module or ``None``."""
    global _CUPY
    if _CUPY is None:
        try:
            import cupy  # noqa: F401
            _CUPY = cupy
        except Exception:  # ImportError, or a CuPy built for another CUDA
            _CUPY = False
    return _CUPY or None


def is_cuda_available() -> bool:
    """Whether device ``"cuda"`` can be used: the simulator is on, or CuPy sees a GPU."""
    global _CUDA_OK
    if is_cuda_simulator():
        return True
    if _CUDA_OK is None:
        cp = _cupy()
        try:
            _CUDA_OK = bool(cp is not None and cp.cuda.runtime.getDeviceCount() > 0)
        except Exception:
            _CUDA_OK = False
    return _CUDA_OK


class Device:
    """A device name, ``"cpu"`` or ``"cuda"``; compares equal to its string (``x.device == "cpu"``).

    As a context manager it is the default device of the block, as in PyTorch: ``with
    ng.device("cuda"): model = Net()`` builds the parameters, and ``ng.tensor``, ``ng.zeros``,
    ``ng.randn`` ... create their tensors, on the GPU unless told otherwise
    (:func:`set_default_device` sets it for good)."""

    __slots__ = ("type", "_previous")

    def __init__(self, name):
        if isinstance(name, Device):
            name = name.type
        if not isinstance(name, str):
            raise TypeError(f"a device is 'cpu' or 'cuda', got {name!r}")
        base = name.split(":")[0]
        if base not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {name!r}: nanogen knows 'cpu' and 'cuda'")
        if name not in (base, base + ":0"):
            raise ValueError(f"device {name!r}: nanogen drives a single GPU, use 'cuda' or 'cuda:0'")
        self.type = base

    def __eq__(self, other):
        if isinstance(other, Device):
            return self.type == other.type
        if isinstance(other, str):
            try:
                return self.type == Device(other).type
            except (ValueError, TypeError):
                return False
        return NotImplemented

    def __hash__(self):
        return hash(self.type)

    def __repr__(self):
        return f"device(type='{self.type}')"

    def __str__(self):
        return self.type

    def __enter__(self):
        self._previous = default_device()
        set_default_device(self)
        return self

    def __exit__(self, *exc):
        set_default_device(self._previous)
        return False


CPU = Device("cpu")
CUDA = Device("cuda")
_DEFAULT = CPU


def default_device() -> Device:
    """Where tensors are created when no ``device=`` says otherwise ("cpu" unless
    :func:`set_default_device` or a ``with ng.device(...)`` block changed it)."""
    return _DEFAULT


def set_default_device(dev) -> None:
    """Create tensors on ``dev`` when no ``device=`` is given (``torch.set_default_device``);
    a device that is not available is refused here, not at the first tensor."""
    global _DEFAULT
    dev = Device(dev)
    check_device_available(dev)
    _DEFAULT = dev


def device(name) -> Device:
    """``ng.device("cuda")``: a :class:`Device`."""
    return Device(name)


def array_module(dev):
    """The array module that holds arrays of device ``dev``: ``numpy`` for "cpu"; ``cupy`` for
    "cuda", or under numba's simulator the CuPy-shaped namespace over NumPy
    (:mod:`nanogen.simulated_cupy`), so that the GPU-only branches run there too."""
    kind = dev.type if isinstance(dev, Device) else Device(dev).type
    if kind == "cpu":
        return np
    if is_cuda_simulator():
        from .simulated_cupy import cupy as simulated
        return simulated
    cp = _cupy()
    if cp is None:
        raise RuntimeError("device 'cuda' needs CuPy and an NVIDIA GPU: install nanogen[cuda], "
                           "or set NUMBA_ENABLE_CUDASIM=1 to simulate it on the CPU")
    return cp


def cupyx_module(xp, submodule=""):
    """CuPy's ``cupyx`` (or ``cupyx.<submodule>``, e.g. ``"scipy.special"``) for the array
    module ``xp`` of a "cuda" device: the real one, or the simulated one under the simulator."""
    from . import simulated_cupy
    if xp is simulated_cupy.cupy:
        ns = simulated_cupy.cupyx
        for part in filter(None, submodule.split(".")):
            ns = getattr(ns, part)
        return ns
    import importlib
    return importlib.import_module("cupyx" + (f".{submodule}" if submodule else ""))


def device_of_array(array) -> Device:
    """The device an array lives on, judged by its type (NumPy arrays are taken as CPU, also
    under the simulator, whose "cuda" arrays are NumPy arrays too: a Tensor knows its device)."""
    cp = _cupy() if type(array).__module__.startswith("cupy") else None
    if cp is not None and isinstance(array, cp.ndarray):
        return CUDA
    return CPU


def check_device_available(dev: Device):
    if dev.type == "cuda" and not is_cuda_available():
        raise RuntimeError("device 'cuda' is not available: no CuPy-visible GPU was found "
                           "(set NUMBA_ENABLE_CUDASIM=1 to run the CUDA kernels in numba's simulator)")


def to_device_array(array, dev):
    """Copy ``array`` (NumPy or CuPy) to device ``dev`` (no copy when it is already there)."""
    dev = Device(dev)
    check_device_available(dev)
    xp = array_module(dev)
    if xp is np:
        cp = _cupy()
        if cp is not None and isinstance(array, cp.ndarray):
            return cp.asnumpy(array)
        return np.asarray(array)
    return xp.asarray(array)
