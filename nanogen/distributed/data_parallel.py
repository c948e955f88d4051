r"""Data parallelism: N ranks, one model each, every rank on its 1/N of each global batch.

The rule that makes N ranks train like one process at the same global batch B:

* **The data**: every rank reads the same global batch (the loader's order depends only on its
  seed and the epoch), transforms it whole (so a dynamic binarisation draws what one process
  would draw) and keeps its rows ``[r B/N, (r + 1) B/N)``
  (:class:`~nanogen.data.DataLoader`'s ``shard``).
* **The random numbers** a training step draws -- noise, dropout masks, GAN latents, diffusion
  times -- are per example: a draw of shape (n, ...) for the local n = B/N examples is drawn
  for all B on every rank, and the rank keeps its rows (:func:`nanogen.random.sharded`).  Every
  rank's generator then stays in step with the others and with one process.
* **The gradients**: rank r's loss is the mean over its n examples, :math:`L_r`; the update
  uses :math:`\frac1N \sum_r \nabla L_r`, the gradient of the mean over all B examples.
  :class:`DistributedOptimizer` sums the gradients over the ranks just before each optimizer
  step, in a few large buckets (flat float arrays of at most ``bucket_bytes``), not one call per
  parameter.  A parameter without a gradient on some rank (a branch it did not take) counts as
  zeros there; one without a gradient on every rank keeps none.

With identical starting weights (same seed) and identical averaged gradients every rank holds
the same weights and optimizer state after every step: a checkpoint is the same whatever the
number of ranks, so a run resumes on any rank count that divides its batch.  Only the order of
the float32 additions differs from one process.

Batch norm is the exception: its statistics are local (each rank normalises over its n
examples) unless the model uses :class:`nanogen.nn.SyncBatchNorm`, which adds them up over the
ranks through :func:`all_reduce` -- a differentiable sum whose backward is again a sum over the
ranks.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..tensor import Tensor

__all__ = ["DistributedOptimizer", "average_gradients", "all_reduce", "average_logs",
           "DEFAULT_BUCKET_BYTES"]

DEFAULT_BUCKET_BYTES = 25 * 2 ** 20        # 25 MiB, Horovod's and DDP's default


def _buckets(params, bucket_bytes):
    """The parameters grouped into runs of one dtype of at most ``bucket_bytes`` (a parameter
    larger than that is a bucket of its own)."""
    buckets, current, size = [], [], 0
    for p in params:
        nbytes = p.data.nbytes
        if current and (size + nbytes > bucket_bytes or p.data.dtype != current[0].data.dtype):
            buckets.append(current)
            current, size = [], 0
        current.append(p)
        size += nbytes
    if current:
        buckets.append(current)
    return buckets


def average_gradients(params, world, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> int:
    """Replace each parameter's ``.grad`` by the mean of the ranks' gradients (a missing
    gradient counts as zeros; a parameter with none on any rank keeps none).  Returns the bytes
    reduced (the flags included)."""
    params = [p for p in params if p.requires_grad]
    if world.size == 1 or not params:
        return 0
    xp = _array_module(params[0])
    present = xp.asarray([p.grad is not None for p in params], dtype=np.int64)
    world.allreduce_(present)
    reduced = present.nbytes
    present = [bool(v) for v in (present.get() if hasattr(present, "get") else present)]
    live = [p for p, any_rank in zip(params, present) if any_rank]
    for bucket in _buckets(live, bucket_bytes):
        flat = xp.concatenate([(p.grad.data if p.grad is not None else
                                xp.zeros_like(p.data)).reshape(-1) for p in bucket])
        world.allreduce_(flat)
        flat /= world.size
        reduced += flat.nbytes
        offset = 0
        for p in bucket:
            p.grad = Tensor._make(flat[offset:offset + p.data.size].reshape(p.data.shape),
                                  p.device)                  # disjoint views of one buffer
            offset += p.data.size
    return reduced


def _array_module(p):
    from ..backend import array_module
    return array_module(p.device)


class DistributedOptimizer:
    """An optimizer whose :meth:`step` first averages the gradients of its parameters over the
    ranks (:func:`average_gradients`); everything else -- ``zero_grad``, ``param_groups``,
    ``state_dict``, ``load_state_dict`` -- is the wrapped optimizer's, so its state dict is the
    one a single process saves.  Horovod's ``DistributedOptimizer`` idea."""

    def __init__(self, optimizer, world, bucket_bytes: int = DEFAULT_BUCKET_BYTES):
        self.optimizer, self.world, self.bucket_bytes = optimizer, world, int(bucket_bytes)
        self.bytes_reduced = 0               # over all steps so far (the benchmark reads it)

    def step(self, closure=None):
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.bytes_reduced += average_gradients(params, self.world, self.bucket_bytes)
        return self.optimizer.step(closure) if closure is not None else self.optimizer.step()

    def __getattr__(self, name):
        return getattr(self.optimizer, name)

    def __repr__(self):
        return f"DistributedOptimizer({self.optimizer!r}, {self.world!r})"


class _AllReduce(Function):
    """y = sum over ranks of x (every rank gets the sum).  The loss of the whole run is the sum
    of the ranks' losses, and each rank's x enters every rank's y, so the gradient of x is the
    sum over ranks of the gradients of y: the backward is an all-reduce too (and so is its own
    backward, which makes gradients of gradients work)."""

    def forward(self, x):
        out = self.xp.array(x, copy=True)
        self.world.allreduce_(out)
        return out

    def backward(self, gy):
        return all_reduce(gy, self.world)


def all_reduce(x: Tensor, world) -> Tensor:
    """The element-wise sum of ``x`` over the ranks, on every rank; differentiable."""
    if world.size == 1:
        return x
    if not x.data.flags.c_contiguous:
        x = x.contiguous()
    return _AllReduce.apply(x, world=world)


def average_logs(logs: dict, world) -> dict:
    """Each logged number averaged over the ranks (each rank's loss is the mean over its
    examples, so the average is the global batch's mean); what is not a float is rank 0's."""
    if world.size == 1:
        return logs
    keys = [k for k, v in logs.items() if isinstance(v, float)]
    values = np.array([logs[k] for k in keys], dtype=np.float64)
    world.allreduce_(values)
    return {**logs, **{k: float(v / world.size) for k, v in zip(keys, values)}}
