r"""Mode coverage on the toy Gaussian mixtures: how many modes a model reaches, and how cleanly.

The toy sets (ring8, grid25; :mod:`nanogen.data.toy`) are equal-weight mixtures of K Gaussians
:math:`\mathcal N(c_k, \sigma^2 I)`.  Following the unrolled-GAN and VEEGAN papers (Metz et al.
2017, Srivastava et al. 2017), each sample :math:`x` goes to its nearest centre and counts as

* **high quality** when it lies within ``threshold`` standard deviations of that centre,
  :math:`\min_k \lVert x - c_k \rVert \le 3\sigma`;
* and a mode is **covered** when it received at least ``min_share`` (a quarter, by default) of
  the :math:`N / K` samples a model matching the data would send it.

Some papers count a mode as covered from a single high-quality sample; on a few thousand samples
that credits a generator collapsed onto two modes, with a handful of strays near the other six,
with all eight -- hence the share.  A generator that collapses onto a few modes covers few; one
that smears mass between the modes covers them all with a low high-quality share.  The two
numbers together tell the failures apart.
(For scale: with :math:`\sigma = 0.02` in 2-D, a sample of the data itself lies within 3σ of its
centre with probability :math:`1 - e^{-9/2} \approx 98.9\%`.)
"""
from __future__ import annotations

import numpy as np

__all__ = ["mode_coverage", "toy_mode_coverage", "mixture_from_labelled_points"]


def _as_array(x, name: str) -> np.ndarray:
    """A Tensor (on any device) or array-like as a float64 NumPy array."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):
        x = x.detach().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"mode_coverage: {name} must be numbers, got {type(x).__name__}") \
            from None


def mode_coverage(samples, centres, std: float, threshold: float = 3.0,
                  min_share: float = 0.25) -> dict:
    r"""Mode coverage of ``samples`` (N, D) for a mixture with ``centres`` (K, D) and per-mode
    standard deviation ``std``.

    Returns ``{"modes_covered", "num_modes", "high_quality_share", "num_samples"}``: the number of
    modes with at least ``min_share * N / K`` high-quality samples (and at least one), K, the
    share of samples within ``threshold * std`` of their nearest centre, and N.  Non-finite
    samples (a diverged model) count as low quality.
    """
    samples = _as_array(samples, "samples")
    centres = _as_array(centres, "centres")
    if centres.ndim != 2 or len(centres) == 0:
        raise ValueError(f"mode_coverage: centres must be (K, D) with K >= 1, got shape "
                         f"{centres.shape}")
    if samples.ndim != 2 or samples.shape[1] != centres.shape[1]:
        raise ValueError(f"mode_coverage: samples must be (N, {centres.shape[1]}) like the "
                         f"centres, got shape {samples.shape}")
    if len(samples) == 0:
        raise ValueError("mode_coverage: no samples to score")
    if not (np.isfinite(std) and std > 0):
        raise ValueError(f"mode_coverage: std must be a positive number, got {std!r}")
    if not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"mode_coverage: threshold must be a positive number, got "
                         f"{threshold!r}")
    if not 0 <= min_share <= 1:
        raise ValueError(f"mode_coverage: min_share must be in [0, 1], got {min_share!r}")

    # squared distances (N, K) without an (N, K, D) temporary: |x|^2 - 2 x.c + |c|^2
    squared = ((samples ** 2).sum(1)[:, None] - 2.0 * samples @ centres.T
               + (centres ** 2).sum(1)[None, :])
    finite = np.isfinite(squared).all(1)
    squared = np.where(finite[:, None], np.maximum(squared, 0.0), np.inf)
    nearest = squared.argmin(1)                                      # k(x) = argmin_k |x - c_k|
    high_quality = finite & (np.sqrt(squared.min(1)) <= threshold * std)   # |x - c_k(x)| <= 3σ
    per_mode = np.bincount(nearest[high_quality], minlength=len(centres))
    enough = max(1.0, min_share * len(samples) / len(centres))     # of the fair share N / K
    return {"modes_covered": int((per_mode >= enough).sum()),
            "num_modes": int(len(centres)),
            "high_quality_share": float(high_quality.mean()),
            "num_samples": int(len(samples))}


def toy_mode_coverage(samples, dataset: str, threshold: float = 3.0,
                      min_share: float = 0.25) -> dict:
    """:func:`mode_coverage` against the exact centres and σ of toy set ``dataset`` ("ring8" or
    "grid25")."""
    from ..data.toy import mode_centres, mode_std
    return mode_coverage(samples, mode_centres(dataset), mode_std(dataset), threshold,
                         min_share)


def mixture_from_labelled_points(points, labels):
    r"""``(centres (K, D), std)`` estimated from points labelled with their mode (as the toy
    sets' test splits are): the mean of each label's points, and the pooled per-coordinate
    standard deviation :math:`\hat\sigma^2 = \frac{1}{N D} \sum_i \lVert x_i - \hat c_{k_i}
    \rVert^2`.  Row k of the centres is label k (labels 0..K-1, each present)."""
    points = _as_array(points, "points")
    labels = np.asarray(labels)
    if points.ndim != 2 or labels.shape != (len(points),):
        raise ValueError(f"mixture_from_labelled_points: expected points (N, D) and labels (N,), "
                         f"got {points.shape} and {labels.shape}")
    if len(points) == 0 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError("mixture_from_labelled_points: needs at least one point and "
                         "non-negative integer labels")
    counts = np.bincount(labels)
    if (counts == 0).any():
        raise ValueError(f"mixture_from_labelled_points: labels {np.flatnonzero(counts == 0)} "
                         f"have no points, so their centres are unknown")
    centres = np.stack([points[labels == k].mean(0) for k in range(len(counts))])
    std = float(np.sqrt(((points - centres[labels]) ** 2).mean()))
    return centres, std
