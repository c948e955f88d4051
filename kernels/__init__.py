"""nanogen's hand-written kernels, installed as ``nanogen.kernels``.

One module per kernel family.  Each family provides

* ``reference``: a plain NumPy implementation, the ground truth the tests compare with;
* a CPU version (NumPy, or ``numba.njit(parallel=True, cache=True)`` where a loop beats array
  code);
* a CUDA version written with ``numba.cuda``, taking CuPy arrays through
  ``__cuda_array_interface__`` (gather formulations: each output element computed by one thread,
  deterministic, no atomics).

The op in :mod:`nanogen.functional` picks the version by the tensor's device: ``"cpu"`` runs the
CPU version, ``"cuda"`` the numba.cuda one -- on a real GPU, or under numba's simulator when
``NUMBA_ENABLE_CUDASIM=1`` is set (then "cuda" tensors hold NumPy arrays and the kernels run on
the CPU one simulated thread at a time, which is how CI checks them).

Shared CPU machinery: ``simd`` (LLVM vector values inside numba, for register-blocked kernels
such as ``conv_direct``, the CPU's float32 convolution), ``blas`` (GEMMs called from numba, and
a matmul split over the cores with single-threaded BLAS) and ``_threads`` (the one pool of
Python threads that the splitting kernels share).
"""
from __future__ import annotations

import os

__all__ = ["limit_cpu_kernel_threads"]


def limit_cpu_kernel_threads():
    """Run the ``prange`` loops of the CPU kernels on ``NANOGEN_KERNEL_THREADS`` threads
    (default 1) in the calling thread.

    In a training step the kernels alternate with BLAS GEMMs.  OpenBLAS's threads and numba's
    OpenMP / workqueue threads both spin-wait for a while after their work, so on a small
    machine each pool finds the cores busy with the other's spinning threads: measured on the
    2-core CPU, full DCGAN, U-Net and transformer steps ran 20-30% faster with the kernels
    single-threaded and both cores left to BLAS.  Set the variable to use more threads on a
    machine with cores to spare."""
    import numba
    if "NUMBA_THREADING_LAYER" not in os.environ:
        # numba's own thread pool, not OpenMP: numba's OpenMP layer shares libgomp with
        # PyTorch, and setting its thread count there made PyTorch's ops in the same process
        # up to 10x slower
        numba.config.THREADING_LAYER = "workqueue"
    wanted = int(os.environ.get("NANOGEN_KERNEL_THREADS", "1") or 1)
    numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))

limit_cpu_kernel_threads()
