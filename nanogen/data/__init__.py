"""Datasets and the DataLoader.

::

    from nanogen.data import load_dataset, DataLoader, train_transform, eval_dataset

    train = load_dataset("mnist5k", "train")           # ImageDataset: images (4000, 1, 28, 28)
    loader = DataLoader(train, batch_size=64, shuffle=True, seed=0,
                        transform=train_transform("binary"))
    for x, y in loader:                                 # Tensors: (64, 1, 28, 28), (64,)
        ...
    test = DataLoader(eval_dataset(load_dataset("mnist5k", "test"), "binary"), batch_size=500)

* :mod:`~nanogen.data.dataset`    -- Dataset, TensorDataset, ImageDataset, PointDataset
* :mod:`~nanogen.data.loader`     -- DataLoader (resumable mid-epoch)
* :mod:`~nanogen.data.transforms` -- binarization, [-1, 1] scaling; train / eval transforms
* :mod:`~nanogen.data.mnist`      -- the embedded MNIST-5k, IDX files (MNIST, Fashion-MNIST)
* :mod:`~nanogen.data.cifar`      -- CIFAR-10 python batches, unpickled safely
* :mod:`~nanogen.data.folder`     -- your own images: a folder of PNG / JPEG / BMP files
* :mod:`~nanogen.data.toy`        -- ring of Gaussians, grid of Gaussians, swiss roll
* :mod:`~nanogen.data.download`   -- verified downloads
* :mod:`~nanogen.data.registry`   -- the named datasets and load_dataset
"""
from .cifar import read_cifar10
from .dataset import Dataset, DatasetError, ImageDataset, PointDataset, TensorDataset
from .download import default_root, download
from .folder import ImageFolder, SkippedImagesWarning, folder_dataset_name
from .loader import DataLoader
from .mnist import read_idx, read_mnist, read_mnist5k
from .registry import DATASETS, SPLITS, DatasetInfo, dataset_info, dataset_kind, load_dataset
from .toy import grid_of_gaussians, mode_centres, mode_std, ring_of_gaussians, swiss_roll
from .transforms import (Compose, DynamicBinarize, Identity, StaticBinarize, ToSymmetric,
                         binarize_dynamic, binarize_static, eval_dataset, train_transform)

__all__ = ["Dataset", "TensorDataset", "ImageDataset", "PointDataset", "DatasetError",
           "DataLoader", "load_dataset", "DATASETS", "DatasetInfo", "dataset_info", "dataset_kind",
           "SPLITS", "ImageFolder", "SkippedImagesWarning", "folder_dataset_name",
           "train_transform", "eval_dataset", "Identity", "ToSymmetric", "StaticBinarize",
           "DynamicBinarize", "Compose", "binarize_static", "binarize_dynamic", "read_idx",
           "read_mnist", "read_mnist5k", "read_cifar10", "download", "default_root",
           "ring_of_gaussians", "grid_of_gaussians", "swiss_roll", "mode_centres", "mode_std"]
