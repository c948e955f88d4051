"""PyTorch as an optional test oracle: ``torch`` is the module or None, ``needs_torch`` skips a
test when it is absent (``pip install torch==2.13.0`` to run them; never a nanogen dependency)."""
import pytest

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed (optional oracle)")
