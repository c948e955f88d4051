"""Toy 2-D distributions: the standard tests of mode coverage for GANs and density models.

* **ring8** -- 8 Gaussians on a circle (Metz et al., *Unrolled GANs*)::

      k ~ Uniform{0, ..., K-1},   x = r (cos 2πk/K, sin 2πk/K) + σ ε,   ε ~ N(0, I)

  with K = 8, r = 2, σ = 0.02.
* **grid25** -- a 5x5 grid of Gaussians::

      (i, j) ~ Uniform{0..S-1}^2,   x = s (j - (S-1)/2, i - (S-1)/2) + σ ε

  with S = 5, spacing s = 2 (centres at -4, -2, 0, 2, 4), σ = 0.05; the mode index is k = i S + j.
* **swissroll** -- a noisy spiral (the 2-D slice of scikit-learn's swiss roll, scaled by 1/5)::

      t = 1.5π (1 + 2u),  u ~ U(0, 1),   x = (t cos t, t sin t) / 5 + ν ε

  with noise ν = 0.1; it has one connected mode, so its labels are all 0.

:func:`mode_centres` and :func:`mode_std` give the mixture's centres and σ, from which the metrics
count the modes a model covers and the share of its samples within 3σ of a centre.
"""
from __future__ import annotations

import math

import numpy as np

from .dataset import DatasetError

__all__ = ["ring_of_gaussians", "grid_of_gaussians", "swiss_roll", "mode_centres", "mode_std",
           "MIXTURES"]


def ring_centres(modes=8, radius=2.0) -> np.ndarray:
    """(modes, 2): r (cos 2πk/K, sin 2πk/K) for k = 0..K-1."""
    angles = np.arange(modes) * (2 * math.pi / modes)
    return np.stack([np.cos(angles), np.sin(angles)], 1) * radius


def grid_centres(side=5, spacing=2.0) -> np.ndarray:
    """(side², 2): s (j - (S-1)/2, i - (S-1)/2), row k = i S + j."""
    offsets = (np.arange(side) - (side - 1) / 2) * spacing
    i, j = np.meshgrid(offsets, offsets, indexing="ij")
    return np.stack([j.ravel(), i.ravel()], 1)


def _mixture(centres, n, rng, std):
    """n points of the equal-weight mixture of N(centre_k, std² I): (points, mode index)."""
    if n < 0:
        raise ValueError(f"the number of points must be non-negative, got {n}")
    modes = rng.integers(0, len(centres), n)
    points = centres[modes] + rng.standard_normal((n, 2)) * std
    return points.astype(np.float32), modes.astype(np.int64)


def ring_of_gaussians(n, rng, modes=8, radius=2.0, std=0.02):
    """``(points float32 (n, 2), mode int64 (n,))`` from K Gaussians on a circle of radius r."""
    return _mixture(ring_centres(modes, radius), n, rng, std)


def grid_of_gaussians(n, rng, side=5, spacing=2.0, std=0.05):
    """``(points float32 (n, 2), mode int64 (n,))`` from a side x side grid of Gaussians."""
    return _mixture(grid_centres(side, spacing), n, rng, std)


def swiss_roll(n, rng, noise=0.1):
    """``(points float32 (n, 2), zeros int64 (n,))``: x = (t cos t, t sin t)/5 + ν ε,
    t = 1.5π(1 + 2u)."""
    if n < 0:
        raise ValueError(f"the number of points must be non-negative, got {n}")
    t = 1.5 * math.pi * (1 + 2 * rng.random(n))
    points = np.stack([t * np.cos(t), t * np.sin(t)], 1) / 5 + rng.standard_normal((n, 2)) * noise
    return points.astype(np.float32), np.zeros(n, dtype=np.int64)


# the mixtures behind the named toy sets, with their default parameters
MIXTURES = {"ring8": (ring_centres(), 0.02), "grid25": (grid_centres(), 0.05)}


def _mixture_named(name):
    if name not in MIXTURES:
        raise DatasetError(f"{name!r} is not a Gaussian mixture; mode centres exist for "
                           f"{', '.join(MIXTURES)}")
    return MIXTURES[name]


def mode_centres(name) -> np.ndarray:
    """The (K, 2) centres of toy set ``name`` ("ring8" or "grid25"); row k is mode k."""
    return _mixture_named(name)[0].copy()


def mode_std(name) -> float:
    """The standard deviation σ of each Gaussian of toy set ``name``."""
    return _mixture_named(name)[1]
