r"""Precision and recall of samples (Kynkäänniemi et al. 2019), on the shipped LeNet's features.

FID and KID fold two failures into one number: samples that look like no real digit (poor
*quality*) and real digits that no sample resembles (poor *coverage*, mode dropping).  Precision
and recall report them apart.  Each set of features :math:`\Phi` stands for the support of its
distribution through a k-nearest-neighbour manifold: the union of balls, one around each point
:math:`\phi'`, whose radius is the distance from :math:`\phi'` to its k-th nearest neighbour
among the *other* points of the set (a duplicate of :math:`\phi'` counts, at distance 0):

.. math:: r_k(\phi', \Phi) = \lVert \phi' - \mathrm{NN}_k(\phi', \Phi \setminus \{\phi'\})
          \rVert_2                                                                      \quad (1)

.. math:: f(\phi, \Phi) = \begin{cases} 1 & \text{if } \lVert \phi - \phi' \rVert_2
          \le r_k(\phi', \Phi) \text{ for at least one } \phi' \in \Phi \\
          0 & \text{otherwise} \end{cases}                                              \quad (2)

With real features :math:`\Phi_r` and sample features :math:`\Phi_g`:

.. math:: \mathrm{precision} = \frac{1}{|\Phi_g|} \sum_{\phi_g \in \Phi_g} f(\phi_g, \Phi_r)
                                                                                        \quad (3)

.. math:: \mathrm{recall} = \frac{1}{|\Phi_r|} \sum_{\phi_r \in \Phi_r} f(\phi_r, \Phi_g)
                                                                                        \quad (4)

precision: the fraction of samples that fall inside the real manifold (how many look real);
recall: the fraction of real images that fall inside the samples' manifold (how much of the
data the model covers).  Both are in [0, 1], 1 for a set compared with itself, and higher is
better.  The paper uses k = 3.

The distances are exact Euclidean distances (``scipy.spatial.distance.cdist``: the square root
of the summed squared differences, so a point is at distance exactly 0 from itself and from its
duplicates, and every pair's distance is the same whichever batch it is computed in).  They are
computed for ``batch_size`` rows at a time, so memory stays at ``batch_size`` x (set size)
floats.
"""
from __future__ import annotations

import numbers

import numpy as np
from scipy.spatial.distance import cdist

__all__ = ["precision_recall", "manifold_radii", "in_manifold", "DEFAULT_K"]

DEFAULT_K = 3              # the paper's
DEFAULT_BATCH_SIZE = 256   # rows of the distance matrix held at once


def _check_feature_set(features, what: str) -> np.ndarray:
    """``features`` as a finite float64 array (N, D) with N >= 1, or a ValueError naming it."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (N points, D features), got shape "
                         f"{features.shape}")
    if len(features) == 0 or features.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {features.shape})")
    if not np.isfinite(features).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return features


def _check_k(k, num_points: int, what: str) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k >= num_points:
        raise ValueError(f"k = {k} needs more than {k} points in {what} (each point's k-th "
                         f"nearest neighbour among the others), got {num_points}")
    return int(k)


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _distance_batches(queries: np.ndarray, points: np.ndarray, batch_size: int):
    """``(start, distances)`` for each block of ``batch_size`` query rows: the Euclidean
    distances (rows, len(points)) from those queries to every point."""
    for start in range(0, len(queries), batch_size):
        yield start, cdist(queries[start:start + batch_size], points)


def manifold_radii(features, k: int = DEFAULT_K, batch_size: int = DEFAULT_BATCH_SIZE,
                   what: str = "features") -> np.ndarray:
    r"""The radius :math:`r_k` of each point's ball (eq. 1): its distance to its k-th nearest
    neighbour among the other points of ``features`` (N, D), duplicates included; float64 (N,)."""
    features = _check_feature_set(features, what)
    k = _check_k(k, len(features), what)
    batch_size = _check_batch_size(batch_size)
    radii = np.empty(len(features))
    for start, distances in _distance_batches(features, features, batch_size):
        # each row holds the point's own distance, exactly 0 and so the smallest: the k-th
        # nearest other point is the row's (k+1)-th smallest entry, index k from 0
        radii[start:start + len(distances)] = np.partition(distances, k, axis=1)[:, k]  # eq. (1)
    return radii


def in_manifold(queries, features, radii, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    r""":math:`f(\phi, \Phi)` (eq. 2) for each row :math:`\phi` of ``queries`` (M, D): whether it
    lies within ``radii[j]`` of at least one row j of ``features`` (N, D); bool (M,)."""
    queries = _check_feature_set(queries, "queries")
    features = _check_feature_set(features, "features")
    _check_same_size(queries, features, "queries", "features")
    radii = np.asarray(radii, dtype=np.float64)
    if radii.shape != (len(features),) or not np.isfinite(radii).all() or (radii < 0).any():
        raise ValueError(f"radii must be {len(features)} finite distances >= 0, one per point "
                         f"of features, got shape {radii.shape}")
    batch_size = _check_batch_size(batch_size)
    inside = np.empty(len(queries), dtype=bool)
    for start, distances in _distance_batches(queries, features, batch_size):
        inside[start:start + len(distances)] = (distances <= radii).any(axis=1)     # eq. (2)
    return inside


def _check_same_size(a, b, what_a, what_b):
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the two sets have different feature sizes: {what_a} {a.shape}, "
                         f"{what_b} {b.shape}")


def precision_recall(real_features, fake_features, k: int = DEFAULT_K,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> dict:
    """Precision (eq. 3) and recall (eq. 4) of ``fake_features`` (the samples', M x D) against
    ``real_features`` (N x D), with k-nearest-neighbour manifolds; k < M and k < N.

    Returns ``{"precision", "recall", "k", "num_real", "num_fake"}`` (plain floats and ints).
    Exact; ``batch_size`` only bounds the memory (``batch_size`` x max(M, N) distances)."""
    real = _check_feature_set(real_features, "real_features")
    fake = _check_feature_set(fake_features, "fake_features")
    _check_same_size(real, fake, "real_features", "fake_features")
    _check_k(k, len(real), "real_features")
    _check_k(k, len(fake), "fake_features")
    real_radii = manifold_radii(real, k, batch_size, "real_features")
    fake_radii = manifold_radii(fake, k, batch_size, "fake_features")
    return {"precision": float(in_manifold(fake, real, real_radii, batch_size).mean()),  # eq. (3)
            "recall": float(in_manifold(real, fake, fake_radii, batch_size).mean()),     # eq. (4)
            "k": int(k), "num_real": len(real), "num_fake": len(fake)}
