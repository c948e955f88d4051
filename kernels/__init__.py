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
"""
