"""CIFAR-10 in its "python version" layout, read without trusting pickle.

``cifar-10-python.tar.gz`` unpacks to ``cifar-10-batches-py/`` with ``data_batch_1`` ...
``data_batch_5`` (train, 10,000 images each) and ``test_batch`` (10,000).  Each is a pickled
dict with ``b"data"``, a (10000, 3072) uint8 array -- every row the 1024 red, then 1024 green,
then 1024 blue pixels of a 32x32 image in row-major order -- and ``b"labels"``, a list of ints
in 0..9.

Unpickling can run arbitrary code: a pickle names functions to call (``os.system`` as easily as
``numpy.ndarray``).  :class:`RestrictedUnpickler` therefore resolves only the handful of NumPy
names that rebuild an array and refuses every other, so a tampered file raises
:class:`DatasetError` instead of running anything.
"""
from __future__ import annotations

import os
import pickle
import shutil
import tarfile

import numpy as np

from ..serialization import atomic_write
from .dataset import DatasetError
from .download import RemoteFile, fetch

__all__ = ["read_cifar10", "RestrictedUnpickler", "download_cifar10", "CIFAR10_ARCHIVE",
           "CIFAR10_FOLDER"]

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)),
                   "test": ("test_batch",)}
# Published MD5 c58f30108f718f92721af3b95e74349a; this is the SHA-256 Keras verifies against.
CIFAR10_ARCHIVE = RemoteFile(
    "cifar-10-python.tar.gz",
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",))


def _allowed_globals():
    """The only callables the CIFAR pickles need: NumPy's array reconstruction."""
    try:
        from numpy._core import multiarray            # NumPy >= 2
    except ImportError:                                # pragma: no cover - NumPy 1.x
        from numpy.core import multiarray
    reconstruct = multiarray._reconstruct
    return {("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only NumPy's array-rebuilding names (see the module doc)."""

    def __init__(self, file, path):
        super().__init__(file, encoding="bytes")      # the files were written by Python 2
        self.path = path
        self._allowed = _allowed_globals()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DatasetError(f"{self.path}: refusing to load: the pickle references "
                               f"{module}.{name}, which a CIFAR-10 batch never needs") from None


def _load_batch(path):
    """``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` of one batch file."""
    try:
        with open(path, "rb") as f:
            batch = RestrictedUnpickler(f, path).load()
    except DatasetError:
        raise
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from None
    except Exception as e:         # truncated or garbled pickle: EOFError, UnpicklingError, ...
        detail = " ".join(str(e).split())               # one line, whatever pickle says
        raise DatasetError(f"{path}: not a readable CIFAR-10 batch "
                           f"({type(e).__name__}: {detail[:200]})") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a pickled dict, found {type(batch).__name__}")
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or \
            data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{path}: b'data' must be a (N, 3072) uint8 array, got "
                           f"{getattr(data, 'dtype', type(data).__name__)} "
                           f"{getattr(data, 'shape', '')}")
    try:                           # ints only: a float or a bool is no class label
        labels = np.asarray(labels)
    except (TypeError, ValueError, OverflowError):
        labels = None
    if labels is None or labels.dtype.kind not in "iu" or labels.shape != (len(data),):
        raise DatasetError(f"{path}: b'labels' must list one int per image ({len(data)} images)")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{path}: labels must be classes 0..9, found "
                           f"{labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels


def _batch_folder(root):
    """``root/cifar-10-batches-py``, or ``root`` itself if the batches lie directly in it."""
    folder = os.path.join(root, CIFAR10_FOLDER)
    if not os.path.isdir(folder) and os.path.isfile(os.path.join(root, "test_batch")):
        return root
    return folder


def read_cifar10(root, split):
    """``(images, labels)`` of CIFAR-10's ``split``: images float32 (N, 3, 32, 32) in [0, 1],
    labels int64 (N,).  ``root`` contains ``cifar-10-batches-py/``."""
    if split not in CIFAR10_BATCHES:
        raise DatasetError(f"unknown split {split!r}; known splits: train, test")
    folder = _batch_folder(root)
    names = CIFAR10_BATCHES[split]
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise DatasetError(
            f"cifar10: the {split} split needs {', '.join(names)} in {folder}; missing "
            f"{', '.join(missing)}.  Get them with load_dataset('cifar10', download=True), or "
            f"unpack {CIFAR10_ARCHIVE.urls[0]} into {root}")
    batches = [_load_batch(os.path.join(folder, n)) for n in names]
    images = np.concatenate([b[0] for b in batches]).astype(np.float32) / np.float32(255.0)
    return images, np.concatenate([b[1] for b in batches])


def download_cifar10(root):
    """Fetch the verified archive into ``root`` and unpack its batch files (regular files
    under ``cifar-10-batches-py/`` only: no links, no paths leaving the folder)."""
    archive = fetch(CIFAR10_ARCHIVE, root)
    folder = os.path.join(root, CIFAR10_FOLDER)
    os.makedirs(folder, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                head, name = os.path.split(member.name)
                if member.isfile() and head == CIFAR10_FOLDER and name and name != "..":
                    with tar.extractfile(member) as src:
                        atomic_write(os.path.join(folder, name),
                                      lambda dst: shutil.copyfileobj(src, dst))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DatasetError(f"{archive}: cannot unpack ({e})") from None
    os.remove(archive)
