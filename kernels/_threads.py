"""Running GIL-free numba kernels on the CPU's cores from a small pool of Python threads.

The CPU kernels that split their work themselves (attention, the direct convolution) hand one
contiguous range of work items to each thread: the calling thread runs the first range, a
persistent pool the others.  A pool of Python threads rather than numba's ``parallel=True``:
numba's workers and OpenBLAS's both spin-wait after their work, and on a small machine each
pool finds the cores busy with the other's spinning threads (see ``nanogen.kernels``).
"""
from __future__ import annotations

import concurrent.futures
import os

import numba

__all__ = ["cpu_threads", "threads_for", "run_ranges"]

PARALLEL_WORK = 1 << 23   # multiply-adds (or element updates) from which work is split over the
                          # threads: handing work to a sleeping thread costs 40-90 us on the
                          # 2-core VM, about what one core does with 2^22 multiply-adds

_POOL = None


def _forget_pool():
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):     # a forked child has none of the parent's threads
    os.register_at_fork(after_in_child=_forget_pool)


def cpu_threads() -> int:
    """The number of threads the kernels split their work over: the cores numba may use."""
    return max(1, min(numba.config.NUMBA_NUM_THREADS, os.cpu_count() or 1))


def threads_for(work) -> int:
    """``cpu_threads()`` for at least ``PARALLEL_WORK`` units of work, else 1."""
    return cpu_threads() if work >= PARALLEL_WORK else 1


def run_ranges(kernel, n_items, threads, args_of):
    """``kernel(*args_of(i), start, stop)`` for the i-th of ``threads`` contiguous ranges of
    [0, n_items), concurrently (``kernel`` must release the GIL); returns when all are done."""
    global _POOL
    k = max(1, min(threads, n_items))
    cuts = [n_items * i // k for i in range(k + 1)]
    if k == 1:
        kernel(*args_of(0), 0, n_items)
        return
    if _POOL is None or _POOL._max_workers < k - 1:
        _POOL = concurrent.futures.ThreadPoolExecutor(max(k - 1, cpu_threads() - 1),
                                                      thread_name_prefix="nanogen-kernel")
    futures = [_POOL.submit(kernel, *args_of(i), cuts[i], cuts[i + 1]) for i in range(1, k)]
    try:
        kernel(*args_of(0), cuts[0], cuts[1])
    finally:
        for f in futures:
            f.result()
