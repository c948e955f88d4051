r"""The memorisation check of the GAN papers: each sample beside its nearest training images.

A low FID can come from a generator that copies its training set.  Looking up, for a few
samples, the training images closest to them -- here in the classifier's feature space, where
closeness means "the same digit drawn the same way" rather than pixel overlap -- shows whether
the samples are new digits or near copies.  Distances are Euclidean:

.. math:: \lVert f(s) - f(t) \rVert^2 = \lVert f(s) \rVert^2 + \lVert f(t) \rVert^2
          - 2\, f(s) \cdot f(t).
"""
from __future__ import annotations

import numpy as np

from .features import check_images, classifier_features

__all__ = ["nearest_neighbours", "nearest_neighbour_grid"]


def _check_k(k, num_train):
    if not 1 <= k <= num_train:
        raise ValueError(f"k must be between 1 and the {num_train} training images, got {k}")


def nearest_neighbours(samples, train_images, k: int = 7) -> np.ndarray:
    """Indices (N, k) into ``train_images`` of the k training images nearest each sample in
    feature space, nearest first (ties to the lower index)."""
    sample_features = classifier_features(samples, what="samples")
    train_features = classifier_features(train_images, what="train_images")
    _check_k(k, len(train_features))
    squared = ((sample_features ** 2).sum(1)[:, None] + (train_features ** 2).sum(1)[None, :]
               - 2.0 * sample_features @ train_features.T)
    return np.argsort(squared, axis=1, kind="stable")[:, :k]


def nearest_neighbour_grid(samples, train_images, k: int = 7) -> tuple[np.ndarray, int]:
    """``(images, nrow)`` for ``save_image(images, path, nrow=nrow)``: one row per sample, the
    sample first and then its k nearest training images, nearest first."""
    samples = check_images(samples, "samples")
    train_images = check_images(train_images, "train_images")
    neighbours = train_images[nearest_neighbours(samples, train_images, k)]   # (N, k, 1, 28, 28)
    rows = np.concatenate([samples[:, None], neighbours], axis=1)
    return rows.reshape(-1, *samples.shape[1:]), k + 1
