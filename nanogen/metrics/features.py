"""What the metrics measure with: the shipped LeNet's features and class probabilities of images.

* :func:`classifier_features` -- the 84 penultimate activations of each image (FID, KID and the
  nearest-neighbour check compare these);
* :func:`class_probabilities` -- ``p(y | x)``, the softmax of the logits (the Inception Score);
* :func:`reference_features` -- the features of a real split (mnist5k test by default), computed
  once and cached: in the process, and on disk in ``$NANOGEN_CACHE/metrics`` (default
  ``~/.cache/nanogen/metrics``), in a file named after the dataset, the split and the hash of the
  classifier's weights, so new weights never meet stale features.  The file is written
  atomically; one that cannot be read, or that does not match, is rebuilt.

Images are (N, C, H, W) with C = 1 (grey) or 3 (RGB), NumPy arrays or Tensors, with values in
[0, 1] -- what every model's ``sample`` returns and what the datasets hold.  Anything else raises
a ValueError that says what is wrong.

The classifier reads 28x28 grey digits.  Other images are converted into that input first
(:func:`classifier_input`): colour to grey by the luma of ITU-R 601,
``0.299 R + 0.587 G + 0.114 B``, then each side resized to 28 with antialiased bilinear
interpolation (:func:`resize_weights`, Pillow's filter).  Scores of such images compare models
*on the same dataset* with each other; they are not the Inception-network FIDs that papers
print for CIFAR-10 or faces, and :func:`describe_classifier_input` says so in every report.
"""
from __future__ import annotations

import functools
import hashlib
import os

import numpy as np

from .. import functional as F
from ..autograd import no_grad
from ..serialization import atomic_write
from ..tensor import Tensor
from .classifier import IMAGE_SHAPE, WEIGHTS_PATH, load_classifier, weights_sha256

__all__ = ["classifier_features", "class_probabilities", "reference_features", "cache_dir",
           "check_images", "classifier_input", "describe_classifier_input", "resize_weights",
           "resize_images", "LUMA"]

LUMA = (0.299, 0.587, 0.114)    # ITU-R 601: the grey level of an RGB colour, as Pillow's "L"

_RANGE_TOLERANCE = 1e-4        # float rounding in a model's last op may overshoot [0, 1] a hair


def check_images(images, what: str = "images") -> np.ndarray:
    """``images`` as a float32 array (N, C, H, W), C = 1 or 3, with values in [0, 1], or a
    ValueError naming ``what`` and the problem (its shape, non-finite values or its range)."""
    if isinstance(images, Tensor):
        images = images.numpy()
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{what} must have shape (N, C, H, W) with C = 1 (grey) or 3 (RGB), "
                         f"e.g. (N, {', '.join(map(str, IMAGE_SHAPE))}); got shape "
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


def resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """The (out_size, in_size) matrix of antialiased bilinear resizing along one axis, Pillow's
    ``Image.BILINEAR``: output pixel i sits at centre c = (i + 1/2) s in input coordinates
    (s = in_size / out_size) and averages the input pixels j with the triangle weight
    max(0, 1 - |j + 1/2 - c| / max(s, 1)), normalised to sum to 1.  When shrinking (s > 1) the
    triangle widens to s pixels, so every input pixel counts (no aliasing); when enlarging it is
    plain linear interpolation between the two nearest pixels."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"resize_weights: sizes must be positive, got {in_size} -> {out_size}")
    scale = in_size / out_size
    width = max(scale, 1.0)
    centres = (np.arange(out_size) + 0.5) * scale
    offsets = np.arange(in_size) + 0.5 - centres[:, None]
    weights = np.maximum(0.0, 1.0 - np.abs(offsets) / width)
    # Pillow visits only the input pixels within the support [c - width, c + width), rounded
    low = np.maximum((centres - width + 0.5).astype(np.int64), 0)
    high = np.minimum((centres + width + 0.5).astype(np.int64), in_size)
    j = np.arange(in_size)
    weights *= (j >= low[:, None]) & (j < high[:, None])
    return weights / weights.sum(axis=1, keepdims=True)


def resize_images(images: np.ndarray, size) -> np.ndarray:
    """``images`` (N, C, H, W) resized to (N, C, size_h, size_w) by :func:`resize_weights` along
    each axis: ``out = R_H @ x @ R_W^T`` per image and channel."""
    size_h, size_w = (size, size) if np.isscalar(size) else size
    rows = resize_weights(images.shape[2], size_h).astype(np.float32)
    cols = resize_weights(images.shape[3], size_w).astype(np.float32)
    return np.einsum("ih,nchw,jw->ncij", rows, images, cols, optimize=True).astype(np.float32)


def classifier_input(images: np.ndarray) -> np.ndarray:
    """Checked ``images`` (N, C, H, W) as the classifier's (N, 1, 28, 28): grey by
    :data:`LUMA` (for C = 3), resized by :func:`resize_images`; unchanged when they already
    are 28x28 grey."""
    if images.shape[1] == 3:
        images = np.einsum("c,nchw->nhw", np.asarray(LUMA, np.float32), images)[:, None]
    if images.shape[2:] != IMAGE_SHAPE[1:]:
        images = np.clip(resize_images(images, IMAGE_SHAPE[1:]), 0.0, 1.0)
    return np.ascontiguousarray(images, dtype=np.float32)


def describe_classifier_input(sample_shape) -> str | None:
    """None for 28x28 grey images; otherwise the one line every report carries, e.g. "3x32x32
    images judged as grey 28x28 (luma, antialiased bilinear resize): compare within a dataset,
    not with published Inception-network scores"."""
    shape = tuple(int(s) for s in sample_shape)
    if shape == tuple(IMAGE_SHAPE):
        return None
    steps = (["grey by luma"] if shape[0] == 3 else []) + (
        ["antialiased bilinear resize"] if shape[1:] != tuple(IMAGE_SHAPE[1:]) else [])
    return (f"{'x'.join(map(str, shape))} images judged as grey 28x28 ({', '.join(steps)}) by "
            f"nanogen's MNIST classifier: compare within a dataset, not with published "
            f"Inception-network scores")


def _batched(network_output, images, what, batch_size):
    """Concatenate ``network_output(batch)`` (a Tensor) over batches of checked ``images``
    (converted by :func:`classifier_input`), as float64, under no_grad."""
    images = classifier_input(check_images(images, what))
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
def _cached_reference_features(dataset, split, directory, weights, contents=None):
    from ..data import load_dataset
    key = f"{dataset}/{split}/{weights_sha256(weights)}"
    stem = dataset
    if contents is not None:         # a folder of images: keyed by its files' fingerprint too
        key += f"/{contents}"
        stem = "folder-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    path = os.path.join(directory, f"{stem}-{split}-{weights_sha256(weights)[:16]}.npz")
    features = _read_cache(path, key)
    if features is None:
        images = load_dataset(dataset, split).arrays[0]
        features = classifier_features(images, what=f"the {dataset} {split} images")
        _write_cache(path, key, features)
    features.setflags(write=False)                 # shared by every caller
    return features


def reference_features(dataset: str = "mnist5k", split: str = "test") -> np.ndarray:
    """The classifier's features (N, 84) of every image of ``dataset``'s ``split``, computed once
    and cached in the process and on disk (see the module docstring).  Read-only.  A folder of
    images (``folder:PATH``) is keyed by its files' fingerprint as well, so a changed folder
    never meets stale features."""
    from ..data import load_dataset
    from ..data.folder import is_folder_dataset
    contents = load_dataset(dataset, split).fingerprint if is_folder_dataset(dataset) else None
    return _cached_reference_features(dataset, split, cache_dir(), WEIGHTS_PATH, contents)


reference_features.cache_clear = _cached_reference_features.cache_clear
