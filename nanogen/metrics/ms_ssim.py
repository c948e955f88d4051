r"""Multi-scale structural similarity (MS-SSIM; Wang, Simoncelli and Bovik 2003) between pairs of
images, and the diversity score built on it (Odena, Olah and Shlens 2017, AC-GAN, section 4.2).

**SSIM at one scale.**  Around each pixel a Gaussian window :math:`w` (weights summing to 1)
gives local means, variances and the covariance of the two images x and y:

.. math:: \mu_x = \textstyle\sum w\,x, \quad \sigma_x^2 = \sum w\,x^2 - \mu_x^2, \quad
          \sigma_{xy} = \sum w\,xy - \mu_x \mu_y                                         \quad (1)

and, with :math:`C_1 = (0.01 L)^2`, :math:`C_2 = (0.03 L)^2` for the data range L = 1 (images in
[0, 1]), the luminance term and the contrast-structure term of that window:

.. math:: l = \frac{2\mu_x\mu_y + C_1}{\mu_x^2 + \mu_y^2 + C_1}, \qquad
          cs = \frac{2\sigma_{xy} + C_2}{\sigma_x^2 + \sigma_y^2 + C_2}                  \quad (2)

averaged over every position where the window lies wholly inside the image ("valid": no
padding, so nothing is invented at the border): :math:`\overline{cs}` and
:math:`\mathrm{SSIM} = \overline{l \cdot cs}`.

**Across scales.**  Scale 1 is the image; scale j + 1 is scale j averaged over 2x2 blocks (an odd
last row or column is dropped).  With M scales and exponents :math:`\beta_j` summing to 1:

.. math:: \text{MS-SSIM}(x, y) = \mathrm{SSIM}_M^{\,\beta_M} \prod_{j=1}^{M-1}
          \overline{cs}_j^{\,\beta_j}                                                     \quad (3)

(luminance only at the coarsest scale, as in Wang et al.).  A factor below 0 (anti-correlated
images) is set to 0 before its fractional power, as TensorFlow's ``ssim_multiscale`` does, so
MS-SSIM lies in [0, 1] and is 1 for identical images.  Colour images: eq. (3) per channel,
averaged over the channels.

**The choices for 28x28 digits.**  The standard MS-SSIM uses 5 scales and an 11x11 window
(sigma 1.5): its coarsest scale would need images of 11 * 2^4 = 176 pixels.  Here the window is
**7x7** (sigma **1.5**, the Gaussian truncated at 2 sigma and renormalised) and there are **3
scales**, 28 -> 14 -> 7 pixels: valid windows 22x22, 8x8 and 1x1 (the coarsest scale compares
the two 7x7 thumbnails as wholes).  The smallest image it accepts is 7 * 2^2 = 28 pixels; 32x32
images give 26x26, 10x10 and 2x2 windows.  The exponents are Wang et al.'s first three
(0.0448, 0.2856, 0.3001) divided by their sum, (0.0710, 0.4530, 0.4760), so that they sum to 1
as eq. (3) needs (one scale gives plain SSIM).

**Diversity** (Odena et al.): the mean MS-SSIM over random pairs of distinct samples,

.. math:: \overline{\text{MS-SSIM}} = \frac{1}{P} \sum_{p=1}^{P}
          \text{MS-SSIM}(x_{i_p}, x_{j_p}), \qquad i_p \ne j_p                            \quad (4)

-- lower is more diverse; a collapsed model scores near 1.  Odena et al. use 100 pairs of one
class; :func:`mean_ms_ssim` draws ``num_pairs`` ordered pairs (i, j), i != j, uniformly with a
NumPy Generator seeded explicitly (nanogen's random stream is not touched), and
:func:`ms_ssim_within_class` averages eq. (4) within each class, then over classes.

Everything is computed in float64 and vectorised over pairs: the filter of eq. (1) is a
separable sum over sliding windows, exact (no FFT).
"""
from __future__ import annotations

import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .features import check_images

__all__ = ["gaussian_window", "ssim", "ms_ssim", "mean_ms_ssim", "ms_ssim_within_class",
           "fitting_scales", "WANG_WEIGHTS", "WINDOW", "SIGMA", "SCALES"]

WANG_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)   # Wang et al. 2003, five scales
WINDOW = 7          # 11 in Wang et al.: too wide for 28x28 digits at any scale but the first
SIGMA = 1.5         # Wang et al.'s
SCALES = 3          # 28 -> 14 -> 7 pixels
C1 = 0.01 ** 2      # (K1 L)^2 with L = 1
C2 = 0.03 ** 2      # (K2 L)^2
DEFAULT_PAIRS = 1000
DEFAULT_PAIRS_PER_CLASS = 100    # Odena et al.'s


def _positive_int(value, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    """The 1-D Gaussian of ``size`` taps (odd), standard deviation ``sigma``, summing to 1; the
    2-D window of eq. (1) is its outer product with itself."""
    size = _positive_int(size, "window")
    if size % 2 == 0:
        raise ValueError(f"window must be odd (a centre pixel), got {size}")
    if not (isinstance(sigma, numbers.Real) and np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    taps = np.arange(size) - size // 2
    g = np.exp(-taps ** 2 / (2.0 * float(sigma) ** 2))
    return g / g.sum()


def fitting_scales(height: int, width: int, window: int = WINDOW,
                   max_scales: int = SCALES) -> int:
    """How many scales (at most ``max_scales``) fit images ``height`` x ``width``: scale s has
    floor(side / 2^(s-1)) pixels a side, at least ``window``; 0 when not even one fits."""
    scales = 0
    while scales < max_scales and min(height, width) >> scales >= window:
        scales += 1
    return scales


def _weights(scales: int, weights) -> np.ndarray:
    if weights is None:
        if scales > len(WANG_WEIGHTS):
            raise ValueError(f"Wang et al.'s exponents cover {len(WANG_WEIGHTS)} scales; pass "
                             f"weights for {scales}")
        weights = WANG_WEIGHTS[:scales]
        return np.asarray(weights) / np.sum(weights)      # summing to 1 (module docstring)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (scales,) or not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"weights must be {scales} finite exponents >= 0, one per scale, got "
                         f"{weights.tolist()}")
    return weights


def _check_pair(x, y):
    x = check_images(x, "x").astype(np.float64)
    y = check_images(y, "y").astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape (pairs of images), got {x.shape} "
                         f"and {y.shape}")
    return x, y


def _filter_valid(maps: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The separable window ``g x g`` over the last two axes, at every position where it lies
    inside the image: (..., H, W) -> (..., H - k + 1, W - k + 1)."""
    rows = sliding_window_view(maps, len(g), axis=-1) @ g               # (..., H, W - k + 1)
    return sliding_window_view(rows, len(g), axis=-2) @ g            # the window axis is last


def _ssim_terms(x: np.ndarray, y: np.ndarray, g: np.ndarray):
    """``(mean cs, mean l * cs)`` over the valid windows, per image and channel: eqs. (1)-(2)."""
    moments = _filter_valid(np.stack([x, y, x * x, y * y, x * y]), g)
    mu_x, mu_y, xx, yy, xy = moments
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y       # eq. (1)
    luminance = (2 * mu_x * mu_y + C1) / (mu_x * mu_x + mu_y * mu_y + C1)          # eq. (2)
    cs = (2 * cov + C2) / (var_x + var_y + C2)                                     # eq. (2)
    return cs.mean(axis=(-2, -1)), (luminance * cs).mean(axis=(-2, -1))


def _halve(images: np.ndarray) -> np.ndarray:
    """2x2 block means; an odd last row or column is dropped."""
    n, c, h, w = images.shape
    h, w = h // 2, w // 2
    return images[:, :, :2 * h, :2 * w].reshape(n, c, h, 2, w, 2).mean(axis=(3, 5))


def ms_ssim(x, y, scales: int = SCALES, window: int = WINDOW, sigma: float = SIGMA,
            weights=None) -> np.ndarray:
    """MS-SSIM (eq. 3) of each pair ``(x[p], y[p])``: images (P, C, H, W) in [0, 1], C = 1 or 3;
    float64 (P,) in [0, 1].  ``weights``: the exponents beta_j (default: Wang et al.'s first
    ``scales``, renormalised to sum to 1).  Images must be at least ``window * 2^(scales-1)``
    pixels a side."""
    x, y = _check_pair(x, y)
    scales = _positive_int(scales, "scales")
    g = gaussian_window(window, sigma)
    beta = _weights(scales, weights)
    height, width = x.shape[2:]
    if fitting_scales(height, width, len(g), scales) < scales:
        raise ValueError(f"images of {height}x{width} are too small for MS-SSIM with {scales} "
                         f"scales and a {len(g)}x{len(g)} window: the coarsest scale needs "
                         f"{len(g)}x{len(g)}, so at least {len(g) << (scales - 1)} pixels a "
                         f"side")
    result = np.ones(x.shape[:2])
    for j in range(scales):
        cs, full = _ssim_terms(x, y, g)
        factor = full if j == scales - 1 else cs       # l only at the coarsest scale, eq. (3)
        result *= np.maximum(factor, 0.0) ** beta[j]                                # eq. (3)
        if j < scales - 1:
            x, y = _halve(x), _halve(y)
    return result.mean(axis=1)                          # colour: the mean over channels


def ssim(x, y, window: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    """Single-scale SSIM (the mean of l * cs over the valid windows, eqs. 1-2) of each pair;
    float64 (P,), at most 1.  (Unlike :func:`ms_ssim` it is not clipped at 0.)"""
    x, y = _check_pair(x, y)
    g = gaussian_window(window, sigma)
    if min(x.shape[2:]) < len(g):
        raise ValueError(f"images of {x.shape[2]}x{x.shape[3]} are smaller than the "
                         f"{len(g)}x{len(g)} window")
    return _ssim_terms(x, y, g)[1].mean(axis=1)


def _random_pairs(n: int, num_pairs: int, rng: np.random.Generator):
    """``num_pairs`` ordered pairs (i, j), i != j, uniform over the n (n - 1) of them."""
    first = rng.integers(0, n, size=num_pairs)
    second = (first + rng.integers(1, n, size=num_pairs)) % n      # any index but first
    return first, second


def mean_ms_ssim(images, num_pairs: int = DEFAULT_PAIRS, seed: int = 0, scales=None,
                 batch_size: int = 500) -> dict:
    """The mean MS-SSIM (eq. 4) over ``num_pairs`` random pairs of distinct ``images`` (N >= 2,
    (N, C, H, W) in [0, 1]): ``{"ms_ssim", "ms_ssim_pairs", "ms_ssim_scales"}``.  ``scales``
    None: as many as fit (at most 3, :func:`fitting_scales`).  Deterministic given ``seed``."""
    images = check_images(images, "images")
    num_pairs = _positive_int(num_pairs, "num_pairs")
    if len(images) < 2:
        raise ValueError(f"MS-SSIM between samples needs at least 2 images (a pair), got "
                         f"{len(images)}")
    scales = _scales(images, scales)
    first, second = _random_pairs(len(images), num_pairs, np.random.default_rng(seed))
    values = _batched_ms_ssim(images, first, second, scales, batch_size)
    return {"ms_ssim": float(values.mean()), "ms_ssim_pairs": num_pairs,
            "ms_ssim_scales": scales}


def ms_ssim_within_class(images, labels, pairs_per_class: int = DEFAULT_PAIRS_PER_CLASS,
                         seed: int = 0, scales=None, batch_size: int = 500) -> dict:
    """Eq. (4) within each class of ``labels`` (N,) that holds at least 2 images,
    ``pairs_per_class`` random pairs each, averaged over those classes (each class counts the
    same): ``{"ms_ssim_within_class", "ms_ssim_within_class_pairs",
    "ms_ssim_within_class_classes", "ms_ssim_scales"}``."""
    images = check_images(images, "images")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {len(images)} integer class labels, one per image, "
                         f"got shape {labels.shape} and dtype {labels.dtype}")
    pairs_per_class = _positive_int(pairs_per_class, "pairs_per_class")
    scales = _scales(images, scales)
    classes, counts = np.unique(labels, return_counts=True)
    classes = classes[counts >= 2]
    if len(classes) == 0:
        raise ValueError(f"MS-SSIM within a class needs a class with at least 2 images; the "
                         f"{len(images)} images' classes hold one each")
    rng = np.random.default_rng(seed)
    means = []
    for c in classes:                                    # in increasing class order
        members = np.flatnonzero(labels == c)
        first, second = _random_pairs(len(members), pairs_per_class, rng)
        means.append(_batched_ms_ssim(images, members[first], members[second], scales,
                                      batch_size).mean())
    return {"ms_ssim_within_class": float(np.mean(means)),
            "ms_ssim_within_class_pairs": pairs_per_class * len(classes),
            "ms_ssim_within_class_classes": len(classes), "ms_ssim_scales": scales}


def _scales(images: np.ndarray, scales) -> int:
    if scales is not None:
        return _positive_int(scales, "scales")
    fitting = fitting_scales(*images.shape[2:])
    if fitting == 0:
        raise ValueError(f"images of {images.shape[2]}x{images.shape[3]} are smaller than "
                         f"MS-SSIM's {WINDOW}x{WINDOW} window")
    return fitting


def _batched_ms_ssim(images, first, second, scales, batch_size) -> np.ndarray:
    batch_size = _positive_int(batch_size, "batch_size")
    return np.concatenate([ms_ssim(images[first[s:s + batch_size]],
                                   images[second[s:s + batch_size]], scales=scales)
                           for s in range(0, len(first), batch_size)])
