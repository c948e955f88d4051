"""What every kernel family's CUDA version needs: the array module of an array, and a launch
with one thread per item.

numba.cuda itself is imported by each family on first use, into a module global named
``cuda``: numba's simulator substitutes its per-thread module through the kernel's globals, so
the name must live in the module that defines the kernels.
"""
from __future__ import annotations

import numpy as np

THREADS = 128     # threads per block
_BUILT = {}


def array_module_of(a, device=None):
    """The array module of ``a``: NumPy on the CPU, CuPy on a GPU.  CUDA versions allocate
    their outputs with it.  Under numba's simulator a "cuda" array is a NumPy array too: drivers
    that know they run on ``device="cuda"`` say so, and get nanogen's CuPy-shaped namespace over
    NumPy (:mod:`nanogen.simulated_cupy`), so that their GPU-only branches (cuBLAS GEMMs in
    place of the CPU's BLAS drivers and scratch pools) run there too."""
    if isinstance(a, np.ndarray):
        if device == "cuda":
            from ..simulated_cupy import cupy as simulated
            return simulated
        return np
    import cupy
    return cupy


def launch(kernel, n, *args, threads=THREADS):
    """Run ``kernel`` on at least one thread per item of ``n`` (blocks of ``threads``); kernels
    guard ``i < n`` or loop grid-stride."""
    if n:
        threads = min(threads, n)
        kernel[(n + threads - 1) // threads, threads](*args)


def cuda_kernels(build):
    """The kernels ``build()`` defines (a dict), built once: numba.cuda is imported only when a
    CUDA kernel is first needed, so the CPU path never loads it.  ``build`` imports numba.cuda
    into its own module's global ``cuda`` (see the module docstring)."""
    if build not in _BUILT:
        _BUILT[build] = build()
    return _BUILT[build]
