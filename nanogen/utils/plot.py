"""Pictures of training: loss curves from log records, 2-D samples beside the data, and 2-D
codes coloured by class (:func:`class_scatter_image`, returned as an image for a model's figures).

All draw on a bare ``matplotlib.figure.Figure`` rendered by the Agg (PNG) canvas: no pyplot,
so no window, no global backend switch and no figure left open.  matplotlib is imported on the
first call only.  Every figure is ``FIGSIZE`` inches at ``DPI`` dots per inch (600 x 400 pixels
for curves) and is written atomically.
"""
from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["plot_curves", "scatter_points", "class_scatter_image", "FIGSIZE", "DPI"]

FIGSIZE = (6, 4)        # inches, curves
SCATTER_FIGSIZE = (5, 5)
DPI = 100


def _save_figure(figure, path, caller):
    from . import atomic_write
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"{caller} writes PNG files; {path!r} does not end in .png")
    return atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=DPI))


def _new_figure(figsize):
    from matplotlib.figure import Figure     # imported here: only plotting needs matplotlib
    figure = Figure(figsize=figsize, dpi=DPI)
    # fixed margins: tight_layout would measure every label first and doubles the drawing time
    figure.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.91)
    return figure, figure.add_subplot()


def plot_curves(records, path, x: str = "step", title=None) -> str:
    """Draw one line per numeric key of ``records`` against ``records[i][x]``; write a PNG.

    ``records`` is a list of dicts such as the lines of a training log,
    ``[{"step": 10, "loss": 93.1, "kl": 20.4}, ...]``.  A key missing from some records is drawn
    through the records that have it.  Returns ``path``.
    """
    records = list(records)
    if not records:
        raise ValueError("plot_curves: no records to plot")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise TypeError(f"plot_curves: record {i} is a {type(record).__name__}, not a dict")
        if x not in record:
            raise ValueError(f"plot_curves: record {i} has no {x!r} value (its keys: "
                             f"{', '.join(map(str, record))})")
    keys = [k for k in dict.fromkeys(k for r in records for k in r) if k != x]
    figure, axes = _new_figure(FIGSIZE)
    for key in keys:
        points = [(r[x], r[key]) for r in records if _is_number(r.get(key))]
        if points:
            xs, ys = zip(*points)
            axes.plot(xs, ys, label=str(key), linewidth=1.2)
    axes.set_xlabel(x)
    axes.grid(True, alpha=0.3)
    if axes.lines:
        axes.legend(loc="best")
    if title is not None:
        axes.set_title(str(title))
    return _save_figure(figure, path, "plot_curves")


def _is_number(value):
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _as_points(points, name):
    """``points`` (a Tensor on any device, or an array) as a float NumPy array (n, 2)."""
    if hasattr(points, "detach") and hasattr(points, "numpy"):
        points = points.detach().numpy()
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise ValueError(f"scatter_points: {name} must be a non-empty array of 2-D points, shape "
                         f"(n, 2); got shape {array.shape}")
    return array


def scatter_points(points, path, reference=None, title=None) -> str:
    """Scatter 2-D ``points`` (n, 2) -- a model's samples -- over the real ``reference`` points
    (m, 2) if given, with equal axis scales; write a PNG and return ``path``."""
    samples = _as_points(points, "points")
    real = None if reference is None else _as_points(reference, "reference")
    figure, axes = _new_figure(SCATTER_FIGSIZE)
    size = max(1.0, 20.0 / math.sqrt(len(samples)))
    if real is not None:
        axes.scatter(real[:, 0], real[:, 1], s=size, alpha=0.4, color="0.6", label="data")
    axes.scatter(samples[:, 0], samples[:, 1], s=size, alpha=0.6, color="C0", label="samples")
    axes.set_aspect("equal", adjustable="datalim")
    axes.legend(loc="upper right", markerscale=max(1.0, 4.0 / size))
    if title is not None:
        axes.set_title(str(title))
    return _save_figure(figure, path, "scatter_points")


def class_scatter_image(points, labels, background=None, title=None) -> np.ndarray:
    """Scatter 2-D ``points`` (n, 2) coloured by their integer class ``labels`` (n,) -- an
    autoencoder's codes of test images -- over grey ``background`` points (m, 2) if given (samples
    of its prior), with equal axis scales and a legend of the classes.  Returns the rendered
    picture as a float32 array (3, H, W) in [0, 1] (600 x 500 pixels), the form of a model's
    :meth:`~nanogen.models.GenerativeModel.figures`, rather than writing a file."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    codes = _as_points(points, "points")
    labels = np.asarray(labels.detach().numpy() if hasattr(labels, "detach") else labels)
    if labels.shape != (len(codes),) or labels.dtype.kind not in "iu":
        raise ValueError(f"class_scatter_image: labels must be {len(codes)} integers, shape "
                         f"({len(codes)},); got shape {labels.shape}, dtype {labels.dtype}")
    figure, axes = _new_figure((6, 5))
    figure.subplots_adjust(right=0.84)                # the legend sits right of the axes
    size = max(1.0, 20.0 / math.sqrt(len(codes)))
    if background is not None:
        prior = _as_points(background, "background")
        axes.scatter(prior[:, 0], prior[:, 1], s=size, alpha=0.3, color="0.7", label="prior")
    for c in np.unique(labels):
        mine = codes[labels == c]
        axes.scatter(mine[:, 0], mine[:, 1], s=size, alpha=0.7, color=f"C{int(c) % 10}",
                     label=str(int(c)))
    axes.set_aspect("equal", adjustable="datalim")
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=max(1.0, 4.0 / size),
                fontsize="small")
    if title is not None:
        axes.set_title(str(title))
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    return (rgb.transpose(2, 0, 1) / 255.0).astype(np.float32)
