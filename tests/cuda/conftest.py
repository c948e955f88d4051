"""Tests of device "cuda" through numba's CUDA simulator.

NUMBA_ENABLE_CUDASIM=1 must be set before numba is first imported, so these tests run in a
pytest process of their own: ``NUMBA_ENABLE_CUDASIM=1 pytest tests/cuda`` (tests/run.sh does it).
"""
import os

import pytest

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def pytest_collection_modifyitems(config, items):
    if SIMULATED:
        return
    skip = pytest.mark.skip(reason="simulated-CUDA tests need NUMBA_ENABLE_CUDASIM=1 set before "
                                   "numba is imported (tests/run.sh runs them)")
    for item in items:
        if "tests/cuda" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)
