"""Data-parallel training over MPI: ``mpiexec -n N nanogen train MODEL ...``.

::

    pip install "nanogen[mpi]"                      # mpi4py and the MPICH wheel (mpiexec)
    mpiexec -n 2 nanogen train vae --batch-size 64  # 2 ranks, 32 examples each per step

N ranks train like one process at the same global batch (``--batch-size`` stays the global
batch): :mod:`~nanogen.distributed.data_parallel` says how -- the data, the random numbers and
the gradients.  Only rank 0 writes the run directory; a checkpoint is the same whatever the
number of ranks, so a run resumes on any count that divides its batch.

* :func:`init` / :func:`world` -- the ranks of this run (:class:`~.comm.SingleProcess` when
  not started by ``mpiexec``);
* :class:`~.data_parallel.DistributedOptimizer`, :func:`~.data_parallel.average_gradients`,
  :func:`~.data_parallel.all_reduce` (differentiable), :class:`nanogen.nn.SyncBatchNorm`;
* :func:`agree` -- run a check on rank 0 and raise its error on every rank, so no rank is left
  waiting in a collective for one that stopped.
"""
from __future__ import annotations

from .comm import DistributedError, MPIWorld, SingleProcess, launched_by_mpi, launched_rank
from .data_parallel import (DEFAULT_BUCKET_BYTES, DistributedOptimizer, all_reduce,
                            average_gradients, average_logs)

__all__ = ["init", "world", "agree", "DistributedError", "SingleProcess", "MPIWorld",
           "launched_by_mpi", "launched_rank", "DistributedOptimizer", "average_gradients", "all_reduce",
           "average_logs", "DEFAULT_BUCKET_BYTES"]

_WORLD = None


def init(device: str = "cpu"):
    """The world of this run, created once: :class:`MPIWorld` when ``mpiexec`` started this
    process among several ranks (a :class:`DistributedError` if mpi4py is missing), else
    :class:`SingleProcess`.  On ``device="cuda"`` each rank takes GPU ``rank % count``."""
    global _WORLD
    if _WORLD is None:
        _WORLD = MPIWorld() if launched_by_mpi() > 1 else SingleProcess()
    if device == "cuda" and _WORLD.size > 1:
        from ..backend import _cupy
        cp = _cupy()
        if cp is not None:
            cp.cuda.Device(_WORLD.rank % cp.cuda.runtime.getDeviceCount()).use()
    return _WORLD


def world():
    """The world :func:`init` made (a :class:`SingleProcess` before it is called)."""
    return _WORLD if _WORLD is not None else SingleProcess()


def agree(check, world_=None, error=DistributedError):
    """Run ``check()`` on rank 0 and return its result on every rank; if it raises, every rank
    raises the same error type with its message (rank 0 the original exception)."""
    world_ = world_ or world()
    if world_.size == 1:
        return check()
    outcome = None
    if world_.rank == 0:
        try:
            outcome = ("ok", check())
        except Exception as e:   # noqa: BLE001 - sent to the other ranks, then re-raised
            world_.bcast(("error", type(e), str(e)))
            raise
    outcome = world_.bcast(outcome)
    if outcome[0] == "error":
        kind = outcome[1] if isinstance(outcome[1], type) and issubclass(outcome[1],
                                                                          Exception) else error
        try:
            exc = kind(outcome[2])
        except Exception:   # noqa: BLE001 - an exception type that wants other arguments
            exc = error(outcome[2])
        raise exc
    return outcome[1]
