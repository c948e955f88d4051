r"""The Kernel Inception Distance (Bińkowski et al. 2018), on the shipped LeNet's features.

The squared maximum mean discrepancy between the two feature distributions :math:`P, Q` under
the cubic polynomial kernel

.. math:: k(x, y) = \left(\frac{x \cdot y}{d} + 1\right)^3, \qquad
          \mathrm{MMD}^2 = \mathbb E\, k(x, x') + \mathbb E\, k(y, y') - 2\, \mathbb E\, k(x, y)
          \quad (x, x' \sim P,\; y, y' \sim Q).

Unlike FID it has an *unbiased* estimator -- the U-statistic, which leaves out the pairs of a
sample with itself -- so its expectation is the true value at any sample count, and two sets
from one distribution score 0 on average (single estimates can be slightly negative).  From
:math:`m` features of each set:

.. math:: \widehat{\mathrm{MMD}^2} = \frac{1}{m(m-1)} \sum_{i \ne j} k(x_i, x_j)
          + \frac{1}{m(m-1)} \sum_{i \ne j} k(y_i, y_j)
          - \frac{2}{m^2} \sum_{i, j} k(x_i, y_j).

:func:`kid` averages it over ``num_subsets`` random subsets of ``subset_size`` features of each
set, and reports the mean and the standard deviation over subsets.
"""
from __future__ import annotations

import numpy as np

from .fid import check_features

__all__ = ["polynomial_kernel", "mmd2_unbiased", "kid"]


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r"""The kernel matrix :math:`k(x_i, y_j) = (x_i \cdot y_j / d + 1)^3`, shape (N_x, N_y)."""
    base = x @ y.T / x.shape[1] + 1.0
    return base * base * base                            # ** 3 is several times slower


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased estimate of MMD^2 from m features of each distribution, x and y (m, D)."""
    m = len(x)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))       # sum over i != j
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kid(features_a, features_b, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """``(mean, std)`` of the unbiased MMD^2 over ``num_subsets`` pairs of random subsets (drawn
    without replacement) of ``subset_size`` features of each set; ``subset_size`` is clipped to
    the smaller set.  Deterministic for a given ``seed``."""
    a = check_features(features_a, "features_a")
    b = check_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"kid: the two sets have different feature sizes: features_a "
                         f"{a.shape}, features_b {b.shape}")
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(f"kid: need num_subsets >= 1 and subset_size >= 2, got num_subsets="
                         f"{num_subsets}, subset_size={subset_size}")
    m = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    estimates = [mmd2_unbiased(a[rng.choice(len(a), m, replace=False)],
                               b[rng.choice(len(b), m, replace=False)])
                 for _ in range(num_subsets)]
    return float(np.mean(estimates)), float(np.std(estimates))
