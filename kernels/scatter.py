"""Scatter-add of rows: ``out[rows[i]] += values[i]`` with repeats accumulating -- the gradient
of an embedding lookup (``weight[ids]``) and of any integer-array index over the first axis.

    out[r, :] += sum over i with rows[i] = r of values[i, :]

``np.add.at`` does this one element at a time through a generic ufunc loop: about 10 ms for the
4,096 rows of 128 floats of the transformer benchmark's token embedding.  The CPU kernel below
is the plain loop, compiled: rows in order (so repeats are summed in the order add.at sums
them, and the results are equal), each row one contiguous vector add: 0.13 ms against add.at's
9.8 ms on the 2-core development machine.

Versions: ``scatter_add_rows_reference`` (``np.add.at``, the ground truth) and
``scatter_add_rows_cpu`` (numba.njit, serial: rows repeat, so a parallel loop would race).  On
the GPU nanogen calls ``cupyx.scatter_add``, CuPy's own atomic kernel, so there is no
numba.cuda version here.
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["scatter_add_rows_reference", "scatter_add_rows_cpu"]


def scatter_add_rows_reference(out, rows, values):
    """``out[rows] += values`` in place, repeats accumulating (``rows`` 1-D, ``values`` of shape
    ``(len(rows),) + out.shape[1:]``)."""
    np.add.at(out, rows, values)


@njit(cache=True, nogil=True)
def _scatter_rows(out, rows, values):
    n = out.shape[0]
    for i in range(rows.shape[0]):
        r = rows[i]
        if r < 0:
            r += n
        for j in range(out.shape[1]):
            out[r, j] += values[i, j]


def scatter_add_rows_cpu(out, rows, values):
    """The compiled loop on a C-contiguous ``out``: ``out[rows] += values`` in place.  Rows may
    be negative (counted from the end); they must lie in [-n, n) -- the caller's forward read
    already checked that."""
    _scatter_rows(out.reshape(out.shape[0], -1),           # a view: out is C-contiguous
                  np.ascontiguousarray(rows.reshape(-1), dtype=np.int64),
                  np.ascontiguousarray(values, dtype=out.dtype).reshape(rows.size, -1))
