r"""Sliced Wasserstein distance between two sets of images on Laplacian-pyramid patches (Karras,
Aila, Laine and Lehtinen 2018, "Progressive Growing of GANs", section 5 and appendix D; their
code ``metrics/sliced_wasserstein.py``), reported x 10^3 per level and averaged, as in their
Table 1.

**The pyramid.**  With the 5x5 binomial filter
:math:`h = \tfrac{1}{256} [1, 4, 6, 4, 1]^\top [1, 4, 6, 4, 1]` (OpenCV's ``pyrDown`` /
``pyrUp``, borders mirrored about the edge pixel) a Gaussian pyramid halves each level,

.. math:: G_0 = x, \qquad G_{k+1} = (h * G_k)\!\downarrow_2                                \quad (1)

and the Laplacian pyramid keeps what each halving lost, down to a last, low-pass level:

.. math:: L_k = G_k - 4\, h * (G_{k+1}\!\uparrow_2) \;\; (k < K - 1), \qquad
          L_{K-1} = G_{K-1}                                                               \quad (2)

(:math:`\uparrow_2` puts each pixel at the even positions of a twice-as-large image of zeros; an
odd level's upsampled image is cropped to its size).

**Descriptors.**  From each level of each image, ``patches_per_image`` 7x7 neighbourhoods at
uniformly random positions wholly inside the level (their code's 128) -- or every position once,
where a level has no more positions than that (a digit's 14x14 level has 64, its 7x7 level 1;
sampling 128 of them would only repeat them): a descriptor
:math:`d \in \mathbb R^{C \cdot 49}`.  The descriptors of one set and level are normalised
per channel by that set's own mean and standard deviation over all its descriptors and pixels,

.. math:: \hat d_{c,u,v} = (d_{c,u,v} - m_c) / s_c                                         \quad (3)

as their ``finalize_descriptors`` does (each set by its own statistics; a constant channel,
s_c = 0, is left at 0).  So SWD compares the *shape* of the patch distributions, blind to a
brightness or contrast change of a whole set.  ``normalization="union"`` uses the mean and
standard deviation of the two sets together instead, which sees such changes (not their
metric).

**The distance.**  For unit directions :math:`\theta_1 \ldots \theta_K` drawn uniformly (normal
vectors, normalised), the 1-D Wasserstein-1 distance between the two sets' projections,
averaged over the directions:

.. math:: \mathrm{SWD}(A, B) = \frac{1}{K} \sum_{k=1}^{K}
          W_1\!\left(\{\theta_k^\top a\}_{a \in A}, \{\theta_k^\top b\}_{b \in B}\right)   \quad (4)

.. math:: W_1(u, v) = \int_0^1 \left|F_u^{-1}(t) - F_v^{-1}(t)\right| dt                   \quad (5)

With as many projections of each set (n) this is :math:`\frac1n \sum_i |u_{(i)} - v_{(i)}|`,
the mean gap between the sorted values (their code); with n != m, eq. (5) is summed exactly
over the pieces between the breakpoints i/n and j/m of the two quantile functions.  Their code
uses 4 repeats of 128 directions: K = 512 here, the same average.

**Levels for small images.**  Karras et al. keep the levels of 16 pixels and more (1024 down to
16), which would leave a 28x28 digit one level.  Here the pyramid runs down to the last level
that still holds a whole 7x7 patch (``min_resolution=7``): **28, 14 and 7** for MNIST (the 7x7
level is the low-pass thumbnail, one patch = the whole image) and 32, 16 and 8 for CIFAR-10.
``min_resolution=16`` gives their levels.  ``swd`` reports each level and their mean, x 10^3.
Its floor depends on the counts: two random sets of 1,000 training digits scored 23.0 and 23.0
against the 1,000 test digits (28 / 14 / 7: 10.9 / 9.8 / 48.3 and 8.4 / 9.4 / 51.2), most of it
from the 7x7 level, where each image gives one descriptor.

**Randomness.**  A NumPy Generator seeded explicitly (``seed``), split into two streams: one
draws the patch positions and is restarted for each set, so two sets of the same size and image
shape are read at the same positions (common random numbers: identical sets score exactly 0,
and a model's samples and the reference are read alike); the other draws the directions.
nanogen's own random stream is not touched.
"""
from __future__ import annotations

import numbers

import numpy as np
from scipy.ndimage import correlate1d

from .features import check_images

__all__ = ["laplacian_pyramid", "pyramid_resolutions", "patch_descriptors",
           "normalize_descriptors", "wasserstein_1d", "sliced_wasserstein", "swd",
           "BINOMIAL", "PATCH_SIZE", "PATCHES_PER_IMAGE", "NUM_PROJECTIONS", "MIN_RESOLUTION"]

BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0    # h of eq. (1) is its outer product
PATCH_SIZE = 7              # Karras et al.'s 7x7 neighbourhoods
PATCHES_PER_IMAGE = 128     # theirs
NUM_PROJECTIONS = 512       # theirs: 4 repeats x 128 directions
MIN_RESOLUTION = 7          # theirs is 16 (module docstring)
_PROJECTION_CHUNK = 128     # directions projected at once (memory: chunk x descriptors)


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _blur(images: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """``gain`` * h * images over the last two axes, borders mirrored (OpenCV's default)."""
    out = correlate1d(images, BINOMIAL * gain, axis=-1, mode="mirror")
    return correlate1d(out, BINOMIAL, axis=-2, mode="mirror")


def _pyr_down(images: np.ndarray) -> np.ndarray:
    return _blur(images)[..., ::2, ::2]                                             # eq. (1)


def _pyr_up(images: np.ndarray, shape) -> np.ndarray:
    n, c, h, w = images.shape
    spread = np.zeros((n, c, 2 * h, 2 * w), images.dtype)
    spread[..., ::2, ::2] = images
    return _blur(spread, gain=4.0)[..., :shape[0], :shape[1]]


def pyramid_resolutions(size: int, min_resolution: int = MIN_RESOLUTION) -> list:
    """The sides of the pyramid's levels for images ``size`` pixels a side: ``size`` halved
    (rounding up, as ``pyrDown``) while the level is at least ``min_resolution``."""
    sides = []
    while size >= min_resolution:
        sides.append(size)
        if size == 1:
            break
        size = (size + 1) // 2
    return sides


def laplacian_pyramid(images, num_levels: int) -> list:
    """Eq. (2): ``num_levels`` arrays, the band-pass levels L_0 (the images' size) ... and the
    low-pass G_{K-1} last; float64."""
    levels = [np.asarray(images, dtype=np.float64)]
    for _ in range(1, _positive_int(num_levels, "num_levels")):
        levels.append(_pyr_down(levels[-1]))
        levels[-2] = levels[-2] - _pyr_up(levels[-1], levels[-2].shape[2:])         # eq. (2)
    return levels


def patch_descriptors(level: np.ndarray, patches_per_image: int, rng: np.random.Generator,
                      patch_size: int = PATCH_SIZE) -> np.ndarray:
    """``patch_size``-square neighbourhoods of each image of ``level`` (N, C, H, W):
    ``patches_per_image`` at uniform random positions inside it, or every position once when
    the level has no more than that (the 14x14 and 7x7 levels of a digit with the defaults);
    (N * patches, C, p, p), the patches of image i in consecutive rows."""
    n, c, h, w = level.shape
    if min(h, w) < patch_size:
        raise ValueError(f"a {h}x{w} level holds no {patch_size}x{patch_size} patch")
    span_h, span_w = h - patch_size + 1, w - patch_size + 1
    if span_h * span_w <= patches_per_image:
        top, left = (grid.ravel() for grid in np.meshgrid(np.arange(span_h), np.arange(span_w),
                                                         indexing="ij"))
        top, left = np.tile(top, n), np.tile(left, n)
    else:
        top = rng.integers(0, span_h, size=n * patches_per_image)
        left = rng.integers(0, span_w, size=n * patches_per_image)
    image = np.repeat(np.arange(n), len(top) // n)
    offsets = np.arange(patch_size)
    rows = (top[:, None] + offsets)[:, None, :, None]
    cols = (left[:, None] + offsets)[:, None, None, :]
    return level[image[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]


def _channel_statistics(descriptors: np.ndarray):
    mean = descriptors.mean(axis=(0, 2, 3), keepdims=True)
    std = descriptors.std(axis=(0, 2, 3), keepdims=True)
    return mean, np.where(std > 0, std, 1.0)             # a constant channel stays at 0


def normalize_descriptors(descriptors: np.ndarray, statistics=None) -> np.ndarray:
    """Eq. (3): descriptors (M, C, p, p) minus each channel's mean, over its standard deviation
    (``statistics``: a ``(mean, std)`` pair to use instead of their own), flattened (M, C p p)."""
    mean, std = statistics if statistics is not None else _channel_statistics(descriptors)
    return ((descriptors - mean) / std).reshape(len(descriptors), -1)               # eq. (3)


def wasserstein_1d(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Eq. (5) between the rows of ``u`` (K, n) and of ``v`` (K, m), each row an empirical
    distribution of equally weighted values; float64 (K,)."""
    u, v = np.sort(u, axis=1), np.sort(v, axis=1)
    n, m = u.shape[1], v.shape[1]
    if n == m:
        return np.abs(u - v).mean(axis=1, dtype=np.float64)                        # eq. (5)
    # the breakpoints of both quantile functions, as integers over n m: i m and j n
    ends = np.union1d(np.arange(1, n + 1) * m, np.arange(1, m + 1) * n)
    widths = np.diff(ends, prepend=0) / (n * m)
    in_u = (ends + m - 1) // m - 1       # F_u^{-1} on (t_{k-1}, t_k]: u's sorted value ceil(t n)
    in_v = (ends + n - 1) // n - 1
    return np.abs(u[:, in_u] - v[:, in_v]).astype(np.float64) @ widths             # eq. (5)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, num_projections: int,
                       rng: np.random.Generator) -> float:
    """Eq. (4) between descriptors ``a`` (n, D) and ``b`` (m, D), ``num_projections`` random
    unit directions drawn from ``rng`` (float64, normalised, then float32 as in their code: the
    projections and their sorting are float32, the sums float64)."""
    a_t = np.ascontiguousarray(a.T, dtype=np.float32)       # (D, n): contiguous projections
    b_t = np.ascontiguousarray(b.T, dtype=np.float32)
    total = 0.0
    for start in range(0, num_projections, _PROJECTION_CHUNK):
        k = min(_PROJECTION_CHUNK, num_projections - start)
        directions = rng.standard_normal((k, a.shape[1]))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        directions = directions.astype(np.float32)
        total += wasserstein_1d(directions @ a_t, directions @ b_t).sum()          # eq. (4)
    return float(total / num_projections)


def _descriptors(images, sides, patches_per_image, positions_seed):
    rng = np.random.default_rng(positions_seed)     # restarted per set: the same positions
    return [patch_descriptors(level, patches_per_image, rng)
            for level in laplacian_pyramid(images, len(sides))]


def swd(images_a, images_b, patches_per_image: int = PATCHES_PER_IMAGE,
        num_projections: int = NUM_PROJECTIONS, seed: int = 0,
        min_resolution: int = MIN_RESOLUTION, normalization: str = "separate") -> dict:
    """The sliced Wasserstein distance (eq. 4) between the Laplacian-pyramid patches of
    ``images_a`` and ``images_b`` (N, C, H, W) and (M, C, H, W) in [0, 1], per level and
    averaged, x 10^3: ``{"swd": mean, "levels": {side: value}, "num_descriptors": {side: (of a,
    of b)}, "num_projections"}``.

    ``normalization``: ``"separate"`` (each set by its own statistics, eq. 3, Karras et al.'s
    code) or ``"union"``.  Deterministic given ``seed`` (module docstring)."""
    a = check_images(images_a, "images_a")
    b = check_images(images_b, "images_b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"SWD compares images of one shape: images_a are {a.shape[1:]}, "
                         f"images_b {b.shape[1:]}")
    patches_per_image = _positive_int(patches_per_image, "patches_per_image")
    num_projections = _positive_int(num_projections, "num_projections")
    min_resolution = _positive_int(min_resolution, "min_resolution")
    if normalization not in ("separate", "union"):
        raise ValueError(f"normalization must be 'separate' or 'union', got {normalization!r}")
    height, width = a.shape[2:]
    if height != width:
        raise ValueError(f"SWD's pyramid needs square images, got {height}x{width}")
    sides = pyramid_resolutions(height, max(min_resolution, PATCH_SIZE))
    if not sides:
        raise ValueError(f"images of {height}x{width} are too small for SWD: a level needs at "
                         f"least {max(min_resolution, PATCH_SIZE)} pixels a side (a "
                         f"{PATCH_SIZE}x{PATCH_SIZE} patch)")
    positions_seed, directions_seed = np.random.SeedSequence(seed).spawn(2)
    desc_a = _descriptors(a, sides, patches_per_image, positions_seed)
    desc_b = _descriptors(b, sides, patches_per_image, positions_seed)
    directions = np.random.default_rng(directions_seed)
    levels = {}
    for side, da, db in zip(sides, desc_a, desc_b):
        if normalization == "union":
            union = _channel_statistics(np.concatenate([da, db]))
            da, db = normalize_descriptors(da, union), normalize_descriptors(db, union)
        else:
            da, db = normalize_descriptors(da), normalize_descriptors(db)
        levels[side] = 1e3 * sliced_wasserstein(da, db, num_projections, directions)
    return {"swd": float(np.mean(list(levels.values()))),
            "levels": {side: float(value) for side, value in levels.items()},
            "num_descriptors": {side: (len(da), len(db))
                                for side, da, db in zip(sides, desc_a, desc_b)},
            "num_projections": num_projections}
