"""Small tools around training: image grids, plots, and writing files atomically.

* :func:`make_grid` / :func:`save_image` -- a batch of images as one picture (torchvision's
  names and layout), written as a PNG.
* :func:`plot_curves` -- loss curves from a list of log records; :func:`scatter_points` -- 2-D
  samples beside the real points.
* :func:`atomic_write` -- every file here is written to a temporary file and renamed over its
  target, so a reader (or a crash) never sees half a file.
* :func:`positive_int` -- the one check behind every "must be a positive int" error.
"""
from __future__ import annotations

from ..serialization import atomic_write

__all__ = ["atomic_write", "make_grid", "save_image", "display_scale", "plot_curves",
           "scatter_points", "positive_int"]

from .checks import positive_int  # noqa: E402
from .image import display_scale, make_grid, save_image  # noqa: E402
from .plot import plot_curves, scatter_points  # noqa: E402
