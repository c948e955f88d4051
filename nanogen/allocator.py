"""Keep freed host memory in the process instead of handing it back to the OS.

A training step allocates and frees the same large arrays (activations, gradients, im2col
columns) every iteration.  glibc's malloc serves blocks above ``M_MMAP_THRESHOLD`` with a fresh
``mmap`` and returns them with ``munmap``, and trims the heap top above ``M_TRIM_THRESHOLD``; in
both cases the next step touches brand-new pages and pays a page fault per 4 KiB (zero-filled by
the kernel) -- a few milliseconds per megabyte-sized array, which adds up to tens of percent of a
CPU step.  PyTorch avoids this with its caching allocator; nanogen, whose arrays are NumPy's,
tells glibc to keep big blocks on the heap and not trim it, so freed blocks are reused.

The cost is that the process's resident memory stays at its high-water mark.  Set
``NANOGEN_KEEP_HOST_MEMORY=0`` before importing nanogen to keep glibc's defaults.  Nothing is
done on systems without glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["keep_host_memory"]

_M_TRIM_THRESHOLD = -1      # mallopt parameter numbers from <malloc.h>
_M_MMAP_THRESHOLD = -3
_LIMIT = 1 << 30            # blocks up to 1 GiB come from the heap; trim only above 1 GiB free


def keep_host_memory() -> bool:
    """Apply the policy above; True when glibc accepted it."""
    if os.environ.get("NANOGEN_KEEP_HOST_MEMORY", "1") in ("0", ""):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False           # not glibc (macOS, Windows, musl without mallopt)
    return bool(mallopt(_M_MMAP_THRESHOLD, _LIMIT)) and bool(mallopt(_M_TRIM_THRESHOLD, _LIMIT))
