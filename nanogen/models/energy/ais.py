r"""Annealed importance sampling (Neal 2001) for the partition function of an energy-based model,
as Salakhutdinov & Murray (2008) use it for RBMs and Salakhutdinov & Hinton (2009) for DBMs.

A model defines :math:`p_B(x) = p^*_B(x) / Z_B` with :math:`Z_B` a sum over :math:`2^{784}`
states.  AIS reaches it from a tractable base :math:`p_A` (independent units: :math:`Z_A` in
closed form) through a path of distributions :math:`p_k \propto p^*_k`, :math:`k = 0 \dots K`,
with :math:`p_0 = p_A` and :math:`p_K = p_B`, indexed by inverse temperatures
:math:`0 = \beta_0 < \beta_1 < \dots < \beta_K = 1`.  One *run*:

.. math::
    x_1 \sim p_0, \qquad x_{k+1} \sim T_k(x_{k+1} \mid x_k), \qquad
    \log w = \sum_{k=1}^{K} \Big[\log p^*_k(x_k) - \log p^*_{k-1}(x_k)\Big]            \tag{1}

where :math:`T_k` is any Markov transition that leaves :math:`p_k` invariant (one block-Gibbs
sweep at temperature :math:`\beta_k`).  :math:`w` is an unbiased estimate of
:math:`Z_K / Z_0`; with :math:`M` independent runs,

.. math::
    \hat Z_B = Z_0 \cdot \frac1M \sum_{m=1}^{M} w^{(m)}, \qquad
    \log \hat Z_B = \log Z_0 + \log \tfrac1M \textstyle\sum_m e^{\log w^{(m)}}              \tag{2}

The estimate of :math:`Z_B` is unbiased, so :math:`\log \hat Z_B` *under*-estimates
:math:`\log Z_B` on average (Jensen): a test NLL computed from it,
:math:`\overline{F(v)} + \log \hat Z_B`, is optimistic when the runs are too few or the
temperatures too coarse.  Its spread is reported two ways (Salakhutdinov & Murray, Sec. 4.1):

.. math::
    \hat\sigma = \frac{\operatorname{std}_m(w^{(m)})}{\sqrt M}, \qquad
    \text{stderr}(\log \hat Z_B) \approx \frac{\hat\sigma}{\bar w}, \qquad
    \big[\log(\hat Z_B - 3\hat\sigma Z_0),\; \log(\hat Z_B + 3\hat\sigma Z_0)\big]          \tag{3}

(the first by the delta method; the interval is the paper's "±3 standard deviations" in Z's own
scale, whose lower end is :math:`-\infty` when the weights are too spread out to exclude 0).

A model plugs in through an :class:`AnnealingPath`; :func:`default_temperatures` is the paper's
schedule of 14,500 temperatures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...utils.checks import positive_int

__all__ = ["AnnealingPath", "AISEstimate", "annealed_importance_sampling", "default_temperatures",
           "estimate_log_partition"]


class AnnealingPath:
    """The distributions :math:`p_{\\beta}` a model anneals through, for
    :func:`annealed_importance_sampling`.

    ``initial_state(runs)`` draws ``runs`` independent states from :math:`p_0` (a state is a
    Tensor, or a tuple of Tensors for a model with several layers); ``log_partition_initial()``
    is :math:`\\log Z_0`; ``step(x, beta_from, beta_to)`` returns the weight increment
    :math:`\\log p^*_{\\beta_{to}}(x) - \\log p^*_{\\beta_{from}}(x)` (one value per run, a
    Tensor) and ``x`` moved by a transition leaving :math:`p_{\\beta_{to}}` invariant -- one
    method, so that a model computes the activations both need once.
    """

    def initial_state(self, runs: int):
        raise NotImplementedError

    def log_partition_initial(self) -> float:
        raise NotImplementedError

    def step(self, x, beta_from: float, beta_to: float):
        raise NotImplementedError


def default_temperatures(count: int = 14_500) -> np.ndarray:
    """The inverse temperatures of Salakhutdinov & Murray (2008): 500 spaced uniformly in
    [0, 0.5), 4,000 in [0.5, 0.9) and 10,000 in [0.9, 1], so the steps are finest where the
    distributions change fastest.  Other counts keep the three bands' proportions; the result
    has ``count`` values from 0 to 1 inclusive."""
    count = positive_int(count, "AIS temperatures")
    if count < 4:
        raise ValueError(f"AIS needs at least 4 temperatures (0, one in each of the three "
                         f"bands' ... up to 1), got {count}")
    bands = ((0.0, 0.5, 500), (0.5, 0.9, 4000), (0.9, 1.0, 10000))
    sizes = [max(1, round((count - 1) * n / 14_500)) for *_, n in bands[:2]]
    sizes.append(count - 1 - sum(sizes))
    parts = [np.linspace(lo, hi, n, endpoint=False) for (lo, hi, _), n in zip(bands, sizes)]
    return np.concatenate(parts + [np.ones(1)])


def annealed_importance_sampling(path: AnnealingPath, betas, runs: int) -> np.ndarray:
    """``runs`` independent AIS runs along ``path`` through the inverse temperatures ``betas``
    (increasing from 0 to 1): the log importance weights :math:`\\log w^{(m)}` of eq. (1), as a
    float64 NumPy array, accumulated in float64."""
    runs = positive_int(runs, "AIS runs")
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or len(betas) < 2 or betas[0] != 0.0 or betas[-1] != 1.0 \
            or np.any(np.diff(betas) <= 0):
        raise ValueError("AIS temperatures must increase strictly from 0 to 1 "
                         f"(got {len(betas)} values from {betas[:1]} to {betas[-1:]})")
    x = path.initial_state(runs)                                   # x_1 ~ p_0
    log_w = None
    for beta_from, beta_to in zip(betas[:-1].tolist(), betas[1:].tolist()):
        increment, x = path.step(x, beta_from, beta_to)           # eq. (1), then x ~ T_k
        increment = increment.double()
        log_w = increment if log_w is None else log_w + increment
    return np.asarray(log_w.detach().cpu().numpy(), dtype=np.float64)


@dataclass(frozen=True)
class AISEstimate:
    """:math:`\\log \\hat Z` (eq. 2) with its spread (eq. 3) and the settings that gave it."""

    log_z: float
    stderr: float              # delta-method standard error of log Z-hat
    log_z_low: float           # log(Z-hat - 3 sigma-hat); -inf when that is <= 0
    log_z_high: float          # log(Z-hat + 3 sigma-hat)
    runs: int
    temperatures: int

    def as_dict(self, prefix: str = "log_z") -> dict:
        return {prefix: self.log_z, f"{prefix}_stderr": self.stderr,
                f"{prefix}_minus_3sd": self.log_z_low, f"{prefix}_plus_3sd": self.log_z_high,
                "ais_runs": self.runs, "ais_temperatures": self.temperatures}


def estimate_log_partition(path: AnnealingPath, *, runs: int = 100,
                           temperatures: int = 14_500) -> AISEstimate:
    """:math:`\\log Z` of ``path``'s target by AIS: eq. (2) with the spread of eq. (3)."""
    betas = default_temperatures(temperatures)
    log_w = annealed_importance_sampling(path, betas, runs)
    return summarise_log_weights(log_w, path.log_partition_initial(), len(betas))


def summarise_log_weights(log_w, log_z_initial: float, temperatures: int) -> AISEstimate:
    """Eqs. (2) and (3) from the log weights of the runs, computed relative to their largest
    weight so nothing overflows."""
    log_w = np.asarray(log_w, dtype=np.float64)
    if not np.all(np.isfinite(log_w)):
        raise FloatingPointError("AIS produced non-finite importance weights: the model's "
                                 "parameters are not finite")
    top = log_w.max()
    w = np.exp(log_w - top)                                       # w / max w, in (0, 1]
    mean = w.mean()
    sigma = w.std() / math.sqrt(len(w))                           # eq. (3), in the same units
    log_z = log_z_initial + top + math.log(mean)                  # eq. (2)
    low = log_z_initial + top + math.log(mean - 3 * sigma) if mean > 3 * sigma else -math.inf
    high = log_z_initial + top + math.log(mean + 3 * sigma)
    return AISEstimate(log_z=float(log_z), stderr=float(sigma / mean), log_z_low=float(low),
                       log_z_high=float(high), runs=len(w), temperatures=int(temperatures))
