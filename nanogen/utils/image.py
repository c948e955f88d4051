"""A batch of images as one picture: ``make_grid`` and ``save_image`` (torchvision's names).

``make_grid`` tiles N images of shape (C, H, W) into rows of ``nrow`` images with ``padding``
pixels of ``pad_value`` around and between them.  Image ``i`` lands in row ``r = i // nrow`` and
column ``c = i % nrow``, its top-left corner at::

    top  = padding + r * (H + padding)
    left = padding + c * (W + padding)

so the grid of ``rows = ceil(N / nrow)`` rows and ``cols = min(nrow, N)`` columns measures::

    H' = rows * (H + padding) + padding,      W' = cols * (W + padding) + padding

Unlike torchvision, a grey batch stays grey (C = 1, not copied to 3 channels) and a single image
gets its padding like any other batch.  ``save_image`` writes the grid as an 8-bit PNG: values
clipped to [0, 1], mapped to ``round(255 v)``, optionally enlarged ``scale`` times by repeating
pixels (nearest neighbour, so no blur is invented).
"""
from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["make_grid", "save_image", "display_scale"]


def _as_image_batch(images, caller):
    """``images`` (a Tensor on any device, or an array) as a float32 NumPy array (N, C, H, W)."""
    if hasattr(images, "detach") and hasattr(images, "numpy"):      # a Tensor, CPU or GPU
        images = images.detach().numpy()
    array = np.asarray(images)
    if array.ndim != 4:
        raise ValueError(f"{caller}: expected images of shape (N, C, H, W), got an array of "
                         f"shape {array.shape}")
    n, channels, height, width = array.shape
    if n == 0:
        raise ValueError(f"{caller}: the batch is empty (shape {array.shape})")
    if channels not in (1, 3):
        raise ValueError(f"{caller}: images need 1 (grey) or 3 (RGB) channels, got {channels} "
                         f"(shape {array.shape})")
    if height == 0 or width == 0:
        raise ValueError(f"{caller}: the images have no pixels (shape {array.shape})")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
            or array.dtype == np.bool_):
        raise TypeError(f"{caller}: images must hold numbers, got dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


def _check_layout(nrow, padding, caller):
    if isinstance(nrow, bool) or not isinstance(nrow, (int, np.integer)) or nrow < 1:
        raise ValueError(f"{caller}: nrow (images per row) must be a positive integer, "
                         f"got {nrow!r}")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"{caller}: padding must be a non-negative integer, got {padding!r}")


def make_grid(images, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile a batch (N, C, H, W) into one float32 image (C, H', W'), ``nrow`` images per row.

    ``images`` is a Tensor (CPU or GPU) or a NumPy array; C is 1 or 3.  The layout is described
    in the module docstring.
    """
    batch = _as_image_batch(images, "make_grid")
    _check_layout(nrow, padding, "make_grid")
    n, channels, height, width = batch.shape
    cols = min(int(nrow), n)
    rows = math.ceil(n / cols)
    step_y, step_x = height + padding, width + padding
    grid = np.full((channels, rows * step_y + padding, cols * step_x + padding), pad_value,
                   dtype=np.float32)
    for i, image in enumerate(batch):
        r, c = divmod(i, cols)
        top, left = padding + r * step_y, padding + c * step_x
        grid[:, top:top + height, left:left + width] = image
    return grid


def _check_scale(scale, caller):
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"{caller}: scale must be a positive integer (the pixel repeat "
                         f"factor), got {scale!r}")


def save_image(images, path, nrow: int = 8, padding: int = 2, pad_value: float = 1.0,
               scale: int = 1) -> str:
    """Write ``make_grid(images, nrow, padding, pad_value)`` to ``path`` as a PNG; return the path.

    Pixel values: ``round(255 * clip(v, 0, 1))`` (NaN becomes 0); grey for one channel, RGB for
    three.  ``scale`` repeats each pixel ``scale`` times in both directions.  The file is written
    atomically (a temporary file renamed over ``path``).
    """
    from PIL import Image           # imported here: only writing pictures needs Pillow

    from . import atomic_write

    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"save_image writes PNG files; {path!r} does not end in .png")
    _check_scale(scale, "save_image")
    grid = make_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)
    levels = np.clip(np.nan_to_num(grid, nan=0.0), 0.0, 1.0) * 255.0 + 0.5     # round(255 v)
    pixels = np.floor(levels).astype(np.uint8).transpose(1, 2, 0)              # (H', W', C)
    if scale > 1:
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    # a 2-D uint8 array becomes a grey ("L") picture, an (H, W, 3) one an RGB picture
    picture = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    return atomic_write(path, lambda f: picture.save(f, format="PNG"))


def display_scale(width: int, target_width: int = 256) -> int:
    """The largest whole factor that enlarges a ``width``-pixel picture to at most
    ``target_width`` pixels, and at least 1: grids of tiny images become big enough to see."""
    return max(1, int(target_width) // max(1, int(width)))
