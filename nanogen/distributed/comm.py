"""Who the processes of a run are, and how they add up arrays: the communicators.

A data-parallel run is N copies of one program (*ranks* 0 ... N-1), started together by
``mpiexec -n N``.  They need few collective operations, all here:

* ``allreduce_(array)`` -- every rank's array replaced, in place, by the element-wise sum over
  the ranks (gradients, batch-norm statistics, logged losses);
* ``bcast(obj)`` -- rank 0's Python object on every rank (the checkpoint being resumed, the
  config every rank must agree on, an error rank 0 found);
* ``gather(obj)`` -- every rank's object, in rank order, on rank 0 (evaluation's pieces);
* ``barrier()``.

:class:`SingleProcess` is the world of one rank (every operation the identity), so code written
for N ranks runs unchanged in one process.  :class:`MPIWorld` is MPI through ``mpi4py``
(``pip install "nanogen[mpi]"`` brings it with the MPICH wheel, whose ``mpiexec`` lands on the
path).  Arrays on a GPU (CuPy) are summed by NCCL (``cupy.cuda.nccl``, one GPU per rank, the
communicator's id sent to the ranks over MPI) when CuPy has it, and through host memory
otherwise.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["SingleProcess", "MPIWorld", "launched_by_mpi", "launched_rank", "DistributedError"]

# what mpiexec puts in each rank's environment: MPICH / Intel MPI (Hydra), Open MPI, MVAPICH
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


class DistributedError(RuntimeError):
    """Ranks that cannot work together: a batch that does not split, configs that disagree, an
    MPI launch without mpi4py."""


def launched_by_mpi() -> int:
    """The number of ranks ``mpiexec`` started this process among (1 when not launched by it),
    read from the environment variables MPI launchers set."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 1


def launched_rank() -> int:
    """This process's rank among those ``mpiexec`` started (0 when not launched by it)."""
    if launched_by_mpi() == 1:
        return 0
    for name in _RANK_VARIABLES:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 0


class SingleProcess:
    """The world of one process: rank 0 of 1; every collective returns its input."""

    rank, size = 0, 1
    name = "single process"

    def allreduce_(self, array):
        return array

    def bcast(self, obj):
        return obj

    def gather(self, obj):
        return [obj]

    def barrier(self):
        pass

    def __repr__(self):
        return "SingleProcess()"


class MPIWorld:
    """All the ranks of ``MPI.COMM_WORLD``.  NumPy arrays are reduced by MPI; CuPy arrays by
    NCCL when available (created on first use, after each rank picked GPU ``rank % count``)."""

    name = "MPI"

    def __init__(self, comm=None):
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise DistributedError(f"this process was started by mpiexec among "
                                   f"{launched_by_mpi()} ranks, but mpi4py cannot be imported "
                                   f"({e}): pip install 'nanogen[mpi]'") from None
        self._mpi = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._nccl = None

    def allreduce_(self, array):
        if isinstance(array, np.ndarray):
            if not array.flags.c_contiguous:
                raise ValueError("allreduce_ needs a C-contiguous array (it reduces in place)")
            self.comm.Allreduce(self._mpi.IN_PLACE, array, op=self._mpi.SUM)
            return array
        return self._allreduce_device_(array)

    def _allreduce_device_(self, array):
        """A CuPy array: NCCL in place on the GPU, or a round trip through host memory."""
        nccl = self._nccl_comm()
        if nccl is None:
            host = np.ascontiguousarray(array.get())
            self.comm.Allreduce(self._mpi.IN_PLACE, host, op=self._mpi.SUM)
            array.set(host)
            return array
        import cupy
        from cupy.cuda import nccl as nccl_module
        kinds = {np.dtype(np.float32): nccl_module.NCCL_FLOAT32,
                 np.dtype(np.float64): nccl_module.NCCL_FLOAT64,
                 np.dtype(np.int64): nccl_module.NCCL_INT64,
                 np.dtype(np.int32): nccl_module.NCCL_INT32}
        nccl.allReduce(array.data.ptr, array.data.ptr, array.size, kinds[array.dtype],
                       nccl_module.NCCL_SUM, cupy.cuda.get_current_stream().ptr)
        return array

    def _nccl_comm(self):
        if self._nccl is None:
            try:
                from cupy.cuda import nccl
                uid = self.comm.bcast(nccl.get_unique_id() if self.rank == 0 else None)
                self._nccl = nccl.NcclCommunicator(self.size, uid, self.rank)
            except Exception:       # CuPy built without NCCL: reduce through the host
                self._nccl = False
        return self._nccl or None

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def gather(self, obj):
        return self.comm.gather(obj, root=0)

    def barrier(self):
        self.comm.Barrier()

    def __repr__(self):
        return f"MPIWorld(rank={self.rank}, size={self.size})"
