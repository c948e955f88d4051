"""make_grid / save_image (torchvision's layout), the plots, and atomic writes."""
import math
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import nanogen as ng
from nanogen.utils import (atomic_write, display_scale, make_grid, plot_curves, save_image,
                           scatter_points)
from nanogen.utils.plot import DPI, FIGSIZE, SCATTER_FIGSIZE


def distinct_images(n, c, h, w):
    """Every pixel of every image different, and none equal to a pad value of 1 or -1."""
    return (np.arange(n * c * h * w, dtype=np.float32).reshape(n, c, h, w) + 2) / 1000


# ------------------------------------------------------------------------------ make_grid
@given(n=st.integers(1, 11), c=st.sampled_from([1, 3]), h=st.integers(1, 5),
       w=st.integers(1, 5), nrow=st.integers(1, 6), padding=st.integers(0, 3))
def test_make_grid_puts_image_i_at_row_i_div_nrow_and_column_i_mod_nrow(n, c, h, w, nrow,
                                                                          padding):
    images = distinct_images(n, c, h, w)
    grid = make_grid(images, nrow=nrow, padding=padding, pad_value=-1.0)
    rows, cols = math.ceil(n / nrow), min(n, nrow)
    assert grid.shape == (c, rows * (h + padding) + padding, cols * (w + padding) + padding)
    assert grid.dtype == np.float32
    covered = np.zeros(grid.shape[1:], dtype=bool)
    for i in range(n):
        top, left = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        assert np.array_equal(grid[:, top:top + h, left:left + w], images[i])
        covered[top:top + h, left:left + w] = True
    assert np.all(grid[:, ~covered] == -1.0)       # everything else is padding


def test_make_grid_small_example_by_hand():
    a, b, c = 0.1, 0.2, 0.3
    images = np.array([a, b, c], dtype=np.float32).reshape(3, 1, 1, 1)
    p = 1.0
    expected = np.array([[p, p, p, p, p],
                         [p, a, p, b, p],
                         [p, p, p, p, p],
                         [p, c, p, p, p],
                         [p, p, p, p, p]], dtype=np.float32)[None]
    assert np.array_equal(make_grid(images, nrow=2, padding=1), expected)


def test_make_grid_takes_tensors_and_keeps_a_single_image_padded():
    images = distinct_images(1, 3, 2, 2)
    grid = make_grid(ng.tensor(images, requires_grad=True), padding=2, pad_value=0.5)
    assert grid.shape == (3, 6, 6)
    assert np.array_equal(grid[:, 2:4, 2:4], images[0])


@pytest.mark.parametrize("images, nrow, padding, message", [
    (np.zeros((2, 1, 4)), 8, 2, r"shape \(N, C, H, W\), got an array of shape \(2, 1, 4\)"),
    (np.zeros((0, 1, 4, 4)), 8, 2, r"the batch is empty \(shape \(0, 1, 4, 4\)\)"),
    (np.zeros((2, 2, 4, 4)), 8, 2, r"1 \(grey\) or 3 \(RGB\) channels, got 2"),
    (np.zeros((2, 1, 0, 4)), 8, 2, "no pixels"),
    (np.zeros((2, 1, 4, 4)), 0, 2, "nrow .* got 0"),
    (np.zeros((2, 1, 4, 4)), 2, -1, "padding .* got -1"),
])
def test_make_grid_errors_name_the_problem(images, nrow, padding, message):
    with pytest.raises(ValueError, match=message):
        make_grid(images, nrow=nrow, padding=padding)


# ------------------------------------------------------------------------------ save_image
def test_save_image_round_trips_grey_levels_exactly(tmp_path):
    levels = np.random.default_rng(0).integers(0, 256, size=(5, 1, 3, 4))
    path = save_image(levels / 255.0, tmp_path / "grey.png", nrow=3, padding=1, pad_value=0.0)
    with Image.open(path) as picture:
        assert (picture.format, picture.mode) == ("PNG", "L")
        pixels = np.asarray(picture)
    assert np.array_equal(pixels, make_grid(levels, nrow=3, padding=1, pad_value=0.0)[0])


def test_save_image_writes_rgb_clips_and_enlarges(tmp_path):
    images = np.array([[[[-0.5, 0.25]], [[1.0, 7.0]], [[0.5, np.nan]]]])       # (1, 3, 1, 2)
    save_image(images, tmp_path / "rgb.png", padding=0, scale=3)
    with Image.open(tmp_path / "rgb.png") as picture:
        assert (picture.mode, picture.size) == ("RGB", (6, 3))
        pixels = np.asarray(picture)
    # round(255 * clip(v, 0, 1)), NaN as 0, per channel; each pixel repeated 3 x 3
    small = np.array([[[0, 255, 128], [64, 255, 0]]], dtype=np.uint8)           # (H, W, C)
    assert np.array_equal(pixels, small.repeat(3, axis=0).repeat(3, axis=1))


def test_save_image_errors(tmp_path):
    images = np.zeros((2, 1, 4, 4))
    with pytest.raises(ValueError, match="does not end in .png"):
        save_image(images, tmp_path / "grid.jpg")
    with pytest.raises(ValueError, match="scale must be a positive integer"):
        save_image(images, tmp_path / "grid.png", scale=0)
    with pytest.raises(ValueError, match="channels, got 4"):
        save_image(np.zeros((2, 4, 4, 4)), tmp_path / "grid.png")
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        save_image(images, tmp_path / "no_such_dir" / "grid.png")
    assert os.listdir(tmp_path) == []


def test_display_scale_enlarges_small_pictures_only():
    assert [display_scale(w) for w in (42, 128, 129, 256, 1000)] == [6, 2, 1, 1, 1]


# ------------------------------------------------------------------------------ atomic_write
def test_atomic_write_replaces_whole_files_and_leaves_no_temporary_on_failure(tmp_path):
    target = tmp_path / "file.txt"
    atomic_write(target, lambda f: f.write(b"old"))

    def fail_halfway(f):
        f.write(b"new but")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        atomic_write(target, fail_halfway)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file.txt"]


# ------------------------------------------------------------------------------ plots
def test_plot_curves_writes_a_png_of_the_figure_size(tmp_path):
    records = [{"step": s, "loss": 10 / s, "kl": 1.0} for s in range(1, 30)] + [{"step": 30}]
    plot_curves(records, tmp_path / "loss.png", title="a run")
    with Image.open(tmp_path / "loss.png") as picture:
        assert picture.format == "PNG"
        assert picture.size == (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)
        assert len(np.unique(np.asarray(picture.convert("RGB")).reshape(-1, 3), axis=0)) > 2


def test_plot_curves_errors(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        plot_curves([], tmp_path / "a.png")
    with pytest.raises(ValueError, match="record 1 has no 'step'"):
        plot_curves([{"step": 1, "loss": 1.0}, {"loss": 2.0}], tmp_path / "a.png")
    with pytest.raises(ValueError, match="does not end in .png"):
        plot_curves([{"step": 1, "loss": 1.0}], tmp_path / "a.pdf")


def test_scatter_points_draws_samples_over_the_data(tmp_path):
    rng = np.random.default_rng(0)
    scatter_points(ng.tensor(rng.normal(size=(50, 2))), tmp_path / "points.png",
                   reference=rng.normal(size=(200, 2)), title="ring")
    with Image.open(tmp_path / "points.png") as picture:
        assert picture.size == (SCATTER_FIGSIZE[0] * DPI, SCATTER_FIGSIZE[1] * DPI)
    with pytest.raises(ValueError, match=r"points must be .* shape \(n, 2\); got shape \(5, 3\)"):
        scatter_points(np.zeros((5, 3)), tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"reference .* got shape \(0, 2\)"):
        scatter_points(np.zeros((5, 2)), tmp_path / "bad.png", reference=np.zeros((0, 2)))
