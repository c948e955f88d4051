"""Datasets: anything with ``len(ds)`` and ``ds[i]``, and the array-backed sets nanogen ships.

:class:`Dataset` is PyTorch's map-style protocol.  :class:`TensorDataset` holds whole arrays
that share their first dimension; item ``i`` is the tuple of every array's row ``i``.  Because
the arrays are there, :class:`~nanogen.data.DataLoader` gathers a batch with one fancy-index per
array (``images[[5, 17, 3, ...]]``) instead of a Python loop over items.

The named sets :func:`~nanogen.data.load_dataset` returns are two kinds of TensorDataset:

* :class:`ImageDataset` -- ``images`` float32 (N, C, H, W) in [0, 1] and ``labels`` int64 (N,);
* :class:`PointDataset` -- ``points`` float32 (N, 2) and ``labels`` int64 (N,) (the mixture
  component a toy point was drawn from).
"""
from __future__ import annotations

import numpy as np

__all__ = ["Dataset", "TensorDataset", "ImageDataset", "PointDataset", "DatasetError"]


class DatasetError(ValueError):
    """A dataset that cannot be provided: unknown name or split, missing or corrupt files."""


class Dataset:
    """Map-style dataset: subclasses define ``__len__`` and ``__getitem__(i)`` for
    ``0 <= i < len(self)``; an item is an array or a tuple ``(x, y, ...)`` of arrays/numbers."""

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} does not define __len__")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} does not define __getitem__")


def _as_array(value, position):
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):   # a nanogen Tensor
        value = value.numpy()
    array = np.asarray(value)
    if array.ndim == 0:
        raise ValueError(f"TensorDataset: array {position} is a scalar; every array needs a "
                         f"first dimension indexing the examples")
    return array


class TensorDataset(Dataset):
    """Arrays (NumPy arrays or Tensors, kept as NumPy) indexed together along their first axis.

    ``TensorDataset(images, labels)[i] == (images[i], labels[i])``.  ``arrays`` is the tuple of
    arrays (``tensors`` is PyTorch's name for the same tuple).
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        arrays = tuple(_as_array(a, i) for i, a in enumerate(arrays))
        sizes = [len(a) for a in arrays]
        if len(set(sizes)) > 1:
            raise ValueError(f"TensorDataset: the arrays' first dimensions differ: "
                             f"shapes {[a.shape for a in arrays]}")
        self.arrays = arrays

    @property
    def tensors(self):
        return self.arrays

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def __repr__(self):
        shapes = ", ".join(str(a.shape) for a in self.arrays)
        return f"{type(self).__name__}({shapes})"


class _LabelledArrays(TensorDataset):
    """The two arrays ``(data, labels)`` of a named dataset, plus what describes them."""

    kind = None            # "image" or "points"

    def __init__(self, data, labels, *, name, split, num_classes):
        data = np.asarray(data)
        labels = np.asarray(labels)
        if data.dtype != np.float32:
            raise ValueError(f"{name}: the {self.kind} data must be float32, got {data.dtype}")
        if labels.dtype != np.int64 or labels.ndim != 1:
            raise ValueError(f"{name}: labels must be a 1-D int64 array, got {labels.dtype} "
                             f"{labels.shape}")
        super().__init__(data, labels)
        self.name, self.split, self.num_classes = name, split, int(num_classes)

    @property
    def labels(self) -> np.ndarray:
        return self.arrays[1]

    @property
    def sample_shape(self) -> tuple:
        """The shape of one example: ``(C, H, W)`` or ``(2,)``."""
        return tuple(self.arrays[0].shape[1:])

    def __repr__(self):
        return (f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, "
                f"size={len(self)}, sample_shape={self.sample_shape}, "
                f"num_classes={self.num_classes})")


class ImageDataset(_LabelledArrays):
    """Images float32 (N, C, H, W) with values in [0, 1], and int64 labels (N,)."""

    kind = "image"

    def __init__(self, images, labels, *, name, split, num_classes):
        if np.ndim(images) != 4:
            raise ValueError(f"{name}: images must be (N, C, H, W), got shape "
                             f"{np.shape(images)}")
        super().__init__(images, labels, name=name, split=split, num_classes=num_classes)

    @property
    def images(self) -> np.ndarray:
        return self.arrays[0]


class PointDataset(_LabelledArrays):
    """Points float32 (N, 2) of a toy 2-D distribution, and the mode each came from (N,)."""

    kind = "points"

    def __init__(self, points, labels, *, name, split, num_classes):
        if np.ndim(points) != 2:
            raise ValueError(f"{name}: points must be (N, D), got shape {np.shape(points)}")
        super().__init__(points, labels, name=name, split=split, num_classes=num_classes)

    @property
    def points(self) -> np.ndarray:
        return self.arrays[0]


def read_only(*arrays):
    """Mark arrays read-only (in place) and return them: cached splits are shared by callers."""
    for a in arrays:
        a.flags.writeable = False
    return arrays if len(arrays) > 1 else arrays[0]
