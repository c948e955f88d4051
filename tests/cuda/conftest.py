"""Tests of device "cuda": through numba's CUDA simulator, or on a real GPU.

NUMBA_ENABLE_CUDASIM=1 must be set before numba is first imported, so these tests run in a
pytest process of their own: ``NUMBA_ENABLE_CUDASIM=1 pytest tests/cuda`` (tests/run.sh does it).
On a machine with an NVIDIA GPU and CuPy, ``pytest tests/cuda`` without the variable runs them
on the GPU itself (benchmarks/gpu_check.sh), except the files that inspect the simulator's
namespace (SIMULATOR_ONLY).
"""
import os

import pytest

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
SIMULATOR_ONLY = ("test_gpu_branches.py",)    # they count nanogen.simulated_cupy's calls


def _real_gpu() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy, or a CuPy that finds no driver
        return False


def pytest_collection_modifyitems(config, items):
    if SIMULATED:
        return
    gpu = _real_gpu()
    skip = pytest.mark.skip(reason="simulated-CUDA tests need NUMBA_ENABLE_CUDASIM=1 set before "
                                   "numba is imported (tests/run.sh runs them), or a GPU")
    simulator = pytest.mark.skip(reason="inspects the simulator's CuPy-shaped namespace")
    for item in items:
        path = str(item.fspath).replace(os.sep, "/")
        if "tests/cuda" in path:
            if not gpu:
                item.add_marker(skip)
            elif path.endswith(SIMULATOR_ONLY):
                item.add_marker(simulator)
