"""``ng.cuda``: is a GPU (or numba's CUDA simulator) available?"""
from . import backend


def is_available() -> bool:
    """True when device 'cuda' works: CuPy sees a GPU, or NUMBA_ENABLE_CUDASIM=1 is set."""
    return backend.is_cuda_available()


def is_simulated() -> bool:
    """True when 'cuda' is numba's CUDA simulator running on the CPU."""
    return backend.is_cuda_simulator()


def device_count() -> int:
    return 1 if is_available() else 0


def synchronize():
    """Wait for queued GPU work (a no-op on the CPU and under the simulator)."""
    if is_available() and not is_simulated():  # pragma: no cover - needs a GPU
        backend.array_module("cuda").cuda.Device().synchronize()


def manual_seed(seed: int):
    from .random import manual_seed as seed_all
    seed_all(seed)
