"""DataLoader: batches of a dataset as nanogen Tensors, with a position that can be saved.

Each epoch visits every index once, in the order

    order_e = np.random.default_rng([seed, e]).permutation(N)     (shuffle=True)
    order_e = 0, 1, ..., N - 1                                     (shuffle=False)

and batch b of epoch e holds ``order_e[b * B : (b + 1) * B]``.  The order depends only on
(seed, e) -- not on any global generator -- so the loader's whole state is its position
(epoch, batch): :meth:`DataLoader.state_dict` saves it, :meth:`DataLoader.load_state_dict`
restores it, and a resumed run sees exactly the batches an unbroken run would have seen.

``for x, y in loader`` runs from the current position to the end of the epoch; the position
then moves to (epoch + 1, 0).  Breaking out of the loop leaves it at the first batch not yet
handed out.

Data parallelism (:mod:`nanogen.distributed`): ``shard=(r, N)`` makes the loader of rank r of N
read every global batch of ``batch_size`` as one process would, apply ``transform`` to the whole
batch (so a random transform draws what one process draws), and hand out only rows
``[r B/N, (r + 1) B/N)``.  The position is the global one: a saved state resumes on any number
of ranks.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from ..backend import Device
from ..creation import as_tensor

__all__ = ["DataLoader"]


def _non_negative_int(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"DataLoader: {what} must be a non-negative integer, got {value!r}")
    return int(value)


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size`` (PyTorch's argument names).

    Yields a tuple of Tensors on ``device``, one per field of the dataset's items -- ``(x, y)``
    for the image and point sets.  ``transform`` (a function of a NumPy batch) is applied to the
    first field before it becomes a Tensor; floating fields become float32, integer ones int64.
    Datasets that expose their arrays (:class:`~nanogen.data.TensorDataset` and its subclasses)
    are gathered with one fancy-index per array; any other :class:`Dataset` item by item.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=0,
                 transform=None, device="cpu", shard=None):
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader needs a dataset with __len__ and __getitem__, got "
                            f"{type(dataset).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got "
                             f"{batch_size!r}")
        if len(dataset) == 0:
            raise ValueError(f"DataLoader: the dataset {dataset!r} is empty")
        if drop_last and batch_size > len(dataset):
            raise ValueError(f"DataLoader: batch_size {batch_size} is larger than the dataset "
                             f"({len(dataset)} examples) and drop_last=True, so an epoch would "
                             f"have no batches")
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable, got {transform!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = _non_negative_int(seed, "seed")
        self.transform = transform
        self.device = Device(device)
        backend.check_device_available(self.device)
        self._arrays = getattr(dataset, "arrays", None)
        self._epoch, self._batch = 0, 0
        self.shard = None
        if shard is not None:
            rank, ranks = shard
            if not (isinstance(ranks, numbers.Integral) and isinstance(rank, numbers.Integral)
                    and 0 <= rank < ranks):
                raise ValueError(f"DataLoader: shard must be (rank, ranks) with 0 <= rank < "
                                 f"ranks, got {shard!r}")
            if self.batch_size % ranks:
                raise ValueError(f"DataLoader: batch_size {self.batch_size} does not split "
                                 f"evenly over {ranks} ranks")
            self.shard = (int(rank), int(ranks))

    # -- the order ----------------------------------------------------------------------------
    def __len__(self) -> int:
        """Batches per epoch: floor(N / B) with drop_last, else ceil(N / B)."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The indices of epoch ``epoch`` in the order they are visited."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, int(epoch)]).permutation(n)

    # -- the position -------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self._epoch

    def state_dict(self) -> dict:
        """The position of the next batch: ``{"epoch": e, "batch": b, "seed": s}``."""
        return {"epoch": self._epoch, "batch": self._batch, "seed": self.seed}

    def load_state_dict(self, state: dict):
        """Continue from a position saved by :meth:`state_dict`."""
        if not isinstance(state, dict) or set(state) != {"epoch", "batch", "seed"}:
            raise ValueError(f"DataLoader.load_state_dict expects a dict with keys epoch, batch "
                             f"and seed, got {state!r}")
        epoch = _non_negative_int(state["epoch"], "state['epoch']")
        batch = _non_negative_int(state["batch"], "state['batch']")
        if batch > len(self):
            raise ValueError(f"DataLoader.load_state_dict: batch {batch} is past the end of an "
                             f"epoch of {len(self)} batches (was the batch size or dataset "
                             f"different when it was saved?)")
        self.seed = _non_negative_int(state["seed"], "state['seed']")
        self._epoch, self._batch = (epoch + 1, 0) if batch == len(self) else (epoch, batch)

    # -- the batches --------------------------------------------------------------------------
    def __iter__(self):
        epoch, start = self._epoch, self._batch
        order = self.order(epoch)
        batches = len(self)
        for b in range(start, batches):
            indices = order[b * self.batch_size:(b + 1) * self.batch_size]
            # move the position before handing the batch out: a consumer that stops after this
            # batch leaves the loader at the next one (or at the next epoch after the last)
            self._epoch, self._batch = (epoch + 1, 0) if b + 1 == batches else (epoch, b + 1)
            yield self._to_tensors(self._gather(indices))

    def _gather(self, indices):
        """The NumPy fields of the examples at ``indices`` (a tuple, or one array)."""
        if self._arrays is not None:
            return tuple(np.take(a, indices, axis=0) for a in self._arrays)
        items = [self.dataset[int(i)] for i in indices]
        if isinstance(items[0], (tuple, list)):
            return tuple(np.stack([np.asarray(item[k]) for item in items])
                         for k in range(len(items[0])))
        return np.stack([np.asarray(item) for item in items])

    def _to_tensors(self, fields):
        single = not isinstance(fields, tuple)
        fields = [fields] if single else list(fields)
        if self.transform is not None:
            fields[0] = self.transform(fields[0])
        if self.shard is not None:
            fields = self._rows_of_this_rank(fields)
        tensors = tuple(as_tensor(self._standard_dtype(f), device=self.device.type) for f in fields)
        return tensors[0] if single else tensors

    def _rows_of_this_rank(self, fields):
        rank, ranks = self.shard
        n = len(fields[0])
        if n % ranks:
            raise ValueError(f"DataLoader: a batch of {n} examples does not split evenly over "
                             f"{ranks} ranks (the last batch of an epoch without drop_last?)")
        rows = slice(rank * n // ranks, (rank + 1) * n // ranks)
        return [np.asarray(f)[rows] for f in fields]

    @staticmethod
    def _standard_dtype(field):
        field = np.asarray(field)
        if field.dtype.kind == "f":
            return field.astype(np.float32, copy=False)
        if field.dtype.kind in "iu":
            return field.astype(np.int64, copy=False)
        return field

    def __repr__(self):
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed}, "
                f"transform={self.transform!r}, device={str(self.device.type)!r}"
                + (f", shard={self.shard}" if self.shard else "") + ")")

