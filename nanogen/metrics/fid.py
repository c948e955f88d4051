r"""The Fréchet Inception Distance (Heusel et al. 2017), on the shipped LeNet's features.

Fit a Gaussian to the features of each set of images, :math:`\mathcal N(\mu_1, \Sigma_1)` and
:math:`\mathcal N(\mu_2, \Sigma_2)`, and report the squared Fréchet (2-Wasserstein) distance
between them, which has a closed form:

.. math:: d^2 = \lVert \mu_1 - \mu_2 \rVert^2
              + \operatorname{Tr}\big(\Sigma_1 + \Sigma_2 - 2 (\Sigma_1 \Sigma_2)^{1/2}\big).

0 for identical statistics; lower is better.  FID is biased upwards for small sample counts
(the covariance of a few hundred 84-D features is noisy), so compare numbers computed with the
same counts -- they are always reported beside it -- or use KID (:mod:`nanogen.metrics.kid`).
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

__all__ = ["gaussian_statistics", "frechet_distance", "fid"]

_IMAGINARY_TOLERANCE = 1e-3     # sqrtm of a PSD product is real; larger imaginary parts are errors


def check_features(features, what: str) -> np.ndarray:
    """``features`` as a finite float64 array (N, D) with N >= 2, or a ValueError naming it."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (N samples, D features), got shape "
                         f"{features.shape}")
    if len(features) < 2:
        raise ValueError(f"{what} needs at least 2 samples to estimate a covariance, got "
                         f"{len(features)}")
    if not np.isfinite(features).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return features


def gaussian_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    r"""The mean :math:`\mu` (D,) and the unbiased covariance :math:`\Sigma` (D, D) of the rows
    of ``features`` (N, D)."""
    features = check_features(features, "features")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(
        features.shape[1], features.shape[1])


def _sqrtm_of_product(sigma1, sigma2, eps):
    r""":math:`(\Sigma_1 \Sigma_2)^{1/2}`, real.  When the product is singular (fewer samples than
    dimensions, a feature that varies in one set only) sqrtm is inaccurate and says so; then both
    covariances get the usual :math:`\epsilon I` offset, which moves the trace by O(eps)."""
    def root_of(product):
        with warnings.catch_warnings():
            warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
            try:
                root = scipy.linalg.sqrtm(product)
            except scipy.linalg.LinAlgWarning:           # singular: inaccurate
                return None
        if not np.isfinite(root).all() or np.abs(np.imag(root)).max() > _IMAGINARY_TOLERANCE:
            return None
        return np.real(root)                             # round-off: drop the tiny imaginary part

    root = root_of(sigma1 @ sigma2)
    if root is None:
        offset = eps * np.eye(len(sigma1))
        root = root_of((sigma1 + offset) @ (sigma2 + offset))
    if root is None:
        raise ValueError("frechet_distance: no real square root of Sigma1 Sigma2, even with an "
                         "eps * I offset; are both covariances positive semi-definite?")
    return root


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    r""":math:`\lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{Tr}(\Sigma_1 + \Sigma_2
    - 2 (\Sigma_1 \Sigma_2)^{1/2})` between :math:`\mathcal N(\mu_1, \Sigma_1)` and
    :math:`\mathcal N(\mu_2, \Sigma_2)`."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), \
        np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"frechet_distance: the means must have shape (D,) and the covariances "
                         f"(D, D) for one D, got mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 "
                         f"{mu2.shape}, sigma2 {sigma2.shape}")
    diff = mu1 - mu2
    # A feature constant in both sets (a ReLU that never fires) has a zero row and column in
    # both covariances, so it adds nothing to the trace term: leave it out, exactly.
    varies = (np.diag(sigma1) > 0) | (np.diag(sigma2) > 0)
    sigma1, sigma2 = sigma1[np.ix_(varies, varies)], sigma2[np.ix_(varies, varies)]
    root = _sqrtm_of_product(sigma1, sigma2, eps)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))


def fid(features_a, features_b) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of features (N_a, D), (N_b, D)."""
    a = check_features(features_a, "features_a")
    b = check_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"fid: the two sets have different feature sizes: features_a "
                         f"{a.shape}, features_b {b.shape}")
    return frechet_distance(*gaussian_statistics(a), *gaussian_statistics(b))
