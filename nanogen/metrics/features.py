"""What the metrics measure with: the shipped LeNet's features and class probabilities of images.

* :func:`classifier_features` -- the 84 penultimate activations of each image (FID, KID and the
  nearest-neighbour check compare these);
* :func:`class_probabilities` -- ``p(y | x)``, the softmax of the logits (the Inception Score);
* :func:`reference_features` -- the features of a real split (mnist5k test by default), computed
  once and cached: in the process, and on disk in ``$NANOGEN_CACHE/metrics`` (default
  ``~/.cache/nanogen/metrics``), in a file named after the dataset, the split and the hash of the
  classifier's weights, so new weights never meet stale features.  The file is written
  atomically; one that cannot be read, or that does not match, is rebuilt.

Images are (N, 1, 28, 28), NumPy arrays or Tensors, with values in [0, 1] -- what every model's
``sample`` returns and what the datasets hold.  Anything else raises a ValueError that says what
is wrong.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from .. import functional as F
from ..autograd import no_grad
from ..serialization import atomic_write
from ..tensor import Tensor
from .classifier import IMAGE_SHAPE, WEIGHTS_PATH, load_classifier, weights_sha256

__all__ = ["classifier_features", "class_probabilities", "reference_features", "cache_dir",
           "check_images"]

_RANGE_TOLERANCE = 1e-4        # float rounding in a model's last op may overshoot [0, 1] a hair


def check_images(images, what: str = "images") -> np.ndarray:
    """``images`` as a float32 array (N, 1, 28, 28) with values in [0, 1], or a ValueError
    naming ``what`` and the problem (its shape, non-finite values or its range)."""
    if isinstance(images, Tensor):
        images = images.numpy()
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"{what} must have shape (N, {', '.join(map(str, IMAGE_SHAPE))}) -- "
                         f"the metrics classifier reads 28x28 grey digits -- got shape "
                         f"{images.shape}")
    if len(images) == 0:
        raise ValueError(f"{what} is empty (shape {images.shape})")
    if not np.issubdtype(images.dtype, np.number) or np.issubdtype(images.dtype, np.complexfloating):
        raise ValueError(f"{what} must hold real numbers, got dtype {images.dtype}")
    images = images.astype(np.float32, copy=False)
    if not np.isfinite(images).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
        raise ValueError(f"{what} must have values in [0, 1], got values in [{low:.4g}, "
                         f"{high:.4g}] (images in [-1, 1] need (x + 1) / 2 first)")
    return np.clip(images, 0.0, 1.0)


def _batched(network_output, images, what, batch_size):
    """Concatenate ``network_output(batch)`` (a Tensor) over batches of checked ``images``,
    as float64, under no_grad."""
    images = check_images(images, what)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    with no_grad():
        parts = [network_output(Tensor(images[start:start + batch_size])).numpy()
                 for start in range(0, len(images), batch_size)]
    return np.concatenate(parts).astype(np.float64)


def classifier_features(images, batch_size: int = 500, what: str = "images") -> np.ndarray:
    """The classifier's penultimate activations of ``images``: float64 (N, 84)."""
    return _batched(load_classifier().features, images, what, batch_size)


def class_probabilities(images, batch_size: int = 500, what: str = "images") -> np.ndarray:
    """``p(y | x)`` for each image: float64 (N, 10), rows summing to 1 (softmax of the logits)."""
    network = load_classifier()
    return _batched(lambda x: F.softmax(network(x), dim=1), images, what, batch_size)


def cache_dir() -> str:
    """Where reference features are cached: ``$NANOGEN_CACHE/metrics`` or
    ``~/.cache/nanogen/metrics``."""
    base = os.environ.get("NANOGEN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                            "nanogen")
    return os.path.join(base, "metrics")


def _read_cache(path, key):
    """The cached features, or None if the file is absent, unreadable or made for another key."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if str(archive["key"]) != key:
                return None
            features = archive["features"]
    except Exception:              # missing, truncated, not a zip, no such entry ...: rebuild
        return None
    if features.ndim != 2 or features.dtype != np.float64 or not np.isfinite(features).all():
        return None
    return features


def _write_cache(path, key, features):
    """Write the cache atomically; a cache that cannot be written is skipped, not an error."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, lambda f: np.savez(f, key=np.array(key), features=features))
    except OSError:
        pass


@functools.lru_cache(maxsize=None)
def _cached_reference_features(dataset, split, directory, weights):
    from ..data import load_dataset
    key = f"{dataset}/{split}/{weights_sha256(weights)}"
    path = os.path.join(directory, f"{dataset}-{split}-{weights_sha256(weights)[:16]}.npz")
    features = _read_cache(path, key)
    if features is None:
        images = load_dataset(dataset, split).arrays[0]
        features = classifier_features(images, what=f"the {dataset} {split} images")
        _write_cache(path, key, features)
    features.setflags(write=False)                 # shared by every caller
    return features


def reference_features(dataset: str = "mnist5k", split: str = "test") -> np.ndarray:
    """The classifier's features (N, 84) of every image of ``dataset``'s ``split``, computed once
    and cached in the process and on disk (see the module docstring).  Read-only."""
    return _cached_reference_features(dataset, split, cache_dir(), WEIGHTS_PATH)


reference_features.cache_clear = _cached_reference_features.cache_clear
