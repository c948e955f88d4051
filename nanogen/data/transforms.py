"""Transforms: functions of a float32 NumPy batch ``(B, ...)`` that return the batch a model eats.

Images arrive in [0, 1].  A model's ``data_transform`` names how it wants them:

* ``"unit"``      -- as they are, x in [0, 1]                       (:class:`Identity`)
* ``"symmetric"`` -- x' = 2x - 1 in [-1, 1]  (tanh outputs, GANs)   (:class:`ToSymmetric`)
* ``"binary"``    -- x' in {0, 1}: binary likelihood models (PixelCNN on binarized MNIST,
  Bernoulli VAE).  Training redraws the binarization every time it sees an image
  (*dynamic binarization*, :class:`DynamicBinarize`), x'_i ~ Bernoulli(x_i), which acts like
  an endless supply of binary images whose pixel means are the grey levels; evaluation binarizes
  the test set once with a fixed seed (:func:`eval_dataset`) so every evaluation scores the same
  binary images.  :class:`StaticBinarize` (x'_i = [x_i > t]) is the deterministic alternative.

:func:`train_transform` maps a name to the training transform; :func:`eval_dataset` applies
the evaluation version to a whole split once.
"""
from __future__ import annotations

import numpy as np

from .. import random as ng_random
from .dataset import TensorDataset

__all__ = ["Identity", "ToSymmetric", "StaticBinarize", "DynamicBinarize", "Compose",
           "binarize_static", "binarize_dynamic", "train_transform", "eval_dataset",
           "TRANSFORM_KINDS"]

TRANSFORM_KINDS = ("unit", "symmetric", "binary")


def binarize_static(x: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """x'_i = 1 if x_i > threshold else 0, as float32."""
    return (np.asarray(x) > threshold).astype(np.float32)


def binarize_dynamic(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x'_i ~ Bernoulli(x_i): x'_i = [u_i < x_i] with u_i ~ U[0, 1), so P(x'_i = 1) = x_i."""
    x = np.asarray(x)
    return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)


class Identity:
    """x' = x (a model that takes images in [0, 1])."""

    def __call__(self, x):
        return x

    def __repr__(self):
        return "Identity()"


class ToSymmetric:
    """x' = 2x - 1: [0, 1] -> [-1, 1]."""

    def __call__(self, x):
        return (2.0 * np.asarray(x, dtype=np.float32) - 1.0).astype(np.float32, copy=False)

    def __repr__(self):
        return "ToSymmetric()"


class StaticBinarize:
    """x'_i = [x_i > threshold]."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = float(threshold)

    def __call__(self, x):
        return binarize_static(x, self.threshold)

    def __repr__(self):
        return f"StaticBinarize(threshold={self.threshold})"


class DynamicBinarize:
    """x'_i ~ Bernoulli(x_i), a fresh draw on every call.

    Draws from nanogen's global generator (looked up at each call, since ``ng.manual_seed``
    replaces it), so ``ng.manual_seed`` makes runs repeatable and a checkpoint's
    ``ng.get_rng_state()`` resumes the exact same binarizations.
    """

    def __call__(self, x):
        return binarize_dynamic(x, ng_random.generator("cpu"))

    def __repr__(self):
        return "DynamicBinarize()"


class Compose:
    """Apply transforms in order: Compose([f, g])(x) = g(f(x))."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: {t!r} is not callable")

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self):
        return f"Compose({self.transforms!r})"


def _check_kind(kind):
    if kind not in TRANSFORM_KINDS:
        raise ValueError(f"unknown data transform {kind!r}; known: {', '.join(TRANSFORM_KINDS)}")


def train_transform(kind: str):
    """The transform the training loop applies to each batch for a model whose
    ``data_transform`` is ``kind``: "binary" -> DynamicBinarize, "unit" -> Identity,
    "symmetric" -> ToSymmetric."""
    _check_kind(kind)
    return {"unit": Identity, "symmetric": ToSymmetric, "binary": DynamicBinarize}[kind]()


def eval_dataset(ds, kind: str, seed: int = 0) -> TensorDataset:
    """The split ``ds`` transformed once, deterministically, as ``TensorDataset(x', labels)``
    (the first array transformed, the others -- the labels -- kept).

    "binary" binarizes dynamically with ``np.random.default_rng(seed)`` drawn over the whole
    array at once, so the binary test set is the same whatever batch size later reads it.
    Point sets are used as they are: only "unit" applies to them.
    """
    _check_kind(kind)
    arrays = getattr(ds, "arrays", None)
    if not arrays:
        raise TypeError(f"eval_dataset needs an array-backed dataset (a TensorDataset or a "
                        f"load_dataset result), got {type(ds).__name__}")
    if getattr(ds, "kind", "image") == "points" and kind != "unit":
        raise ValueError(f"eval_dataset: the {kind!r} transform is for images in [0, 1]; "
                         f"point set {getattr(ds, 'name', '')!r} takes only 'unit'")
    data = np.asarray(arrays[0], dtype=np.float32)
    if kind == "binary":
        data = binarize_dynamic(data, np.random.default_rng(seed))
    elif kind == "symmetric":
        data = ToSymmetric()(data)
    else:
        data = data.copy()
    return TensorDataset(data, *arrays[1:])
