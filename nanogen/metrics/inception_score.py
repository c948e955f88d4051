r"""The Inception Score (Salimans et al. 2016), with the shipped LeNet as the classifier.

A good generator's samples are each recognisable -- :math:`p(y \mid x)` is peaked -- and together
cover every class -- the marginal :math:`p(y) = \mathbb E_x\, p(y \mid x)` is flat.  The score
rewards both:

.. math:: \mathrm{IS} = \exp\Big(\mathbb E_x\, \mathrm{KL}\big(p(y \mid x) \,\|\, p(y)\big)\Big)
          = \exp\big(H(y) - \mathbb E_x H(y \mid x)\big),

so :math:`1 \le \mathrm{IS} \le C` for :math:`C` classes: 1 when every sample gets the same
class distribution (pure noise), :math:`C` for confident predictions spread evenly over all
classes (real digits come close to 10).  As in the paper, the samples are cut into ``splits``
random groups, :math:`p(y)` is estimated within each, and the mean and standard deviation of the
per-group scores are reported.
"""
from __future__ import annotations

import numpy as np
from scipy.special import xlogy

__all__ = ["inception_score"]

_SUM_TOLERANCE = 1e-4


def _check_probabilities(probabilities) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"inception_score: probabilities must have shape (N samples, C "
                         f"classes), got {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("inception_score: probabilities must be finite and non-negative")
    sums = p.sum(axis=1)
    worst = int(np.abs(sums - 1.0).argmax())
    if abs(sums[worst] - 1.0) > _SUM_TOLERANCE:
        raise ValueError(f"inception_score: each row of probabilities must sum to 1 (a softmax, "
                         f"not logits); row {worst} sums to {sums[worst]:.6g}")
    return p


def _score(p: np.ndarray) -> float:
    r""":math:`\exp(\frac1N \sum_x \mathrm{KL}(p(y|x) \| p(y)))` for one group (0 log 0 = 0)."""
    marginal = p.mean(axis=0)                                        # p(y)
    kl = (xlogy(p, p) - xlogy(p, marginal)).sum(axis=1)              # KL(p(y|x) || p(y))
    return float(np.exp(kl.mean()))


def inception_score(probabilities, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """``(mean, std)`` of the Inception Score over ``splits`` equal groups of the rows of
    ``probabilities`` (N, C) -- each row ``p(y | x)`` of one sample.  Rows go to groups at
    random (by ``seed``), so a set stored in order -- a dataset sorted by class -- scores as a
    random sample of it would, not as ``splits`` single-class sets."""
    p = _check_probabilities(probabilities)
    if not 1 <= splits <= len(p):
        raise ValueError(f"inception_score: splits must be between 1 and the {len(p)} samples, "
                         f"got {splits}")
    shuffled = p[np.random.default_rng(seed).permutation(len(p))]
    scores = [_score(group) for group in np.array_split(shuffled, splits)]
    return float(np.mean(scores)), float(np.std(scores))
