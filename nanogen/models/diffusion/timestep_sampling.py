r"""Which timesteps a diffusion model trains on: uniform, or importance-sampled by the loss.

The training objective is a sum over :math:`t = 1, \dots, T`, estimated from one :math:`t` per
image.  Drawn uniformly, :math:`\sum_t L_t = T\, \mathbb E_{t \sim U} L_t`; drawn from any
:math:`p_t > 0`,

.. math:: \sum_t L_t = \mathbb E_{t \sim p} \Big[\frac{L_t}{p_t}\Big]
          = T\, \mathbb E_{t \sim p} [w_t L_t], \qquad w_t = \frac{1}{T p_t}      \text{(1)}

so weighting each drawn term by :math:`w_t` keeps the uniform estimate's mean, and the variance is least for :math:`p_t \propto \sqrt{\mathbb E[L_t^2]}`.  The
variational bound's terms differ by orders of magnitude over :math:`t` (the first few dominate),
so Nichol & Dhariwal (2021) keep the last ``history`` values of each :math:`L_t` and draw

.. math:: p_t = (1 - u)\, \frac{\sqrt{\overline{L_t^2}}}{\sum_s \sqrt{\overline{L_s^2}}} + \frac uT
                                                                             \text{(2)}

(u = 0.001 keeps every step reachable), uniformly until every :math:`t` has ``history`` values.
:class:`ImportanceSampler` keeps that history as buffers, so a checkpoint resumes it exactly.
"""
from __future__ import annotations

import numpy as np

from ...creation import rand, randint, tensor, zeros
from ...nn import Module

__all__ = ["TIMESTEP_SAMPLERS", "UniformSampler", "ImportanceSampler", "timestep_sampler"]

TIMESTEP_SAMPLERS = ("uniform", "importance")


class UniformSampler(Module):
    """t ~ U{1..T}, every weight 1."""

    def __init__(self, timesteps: int):
        super().__init__()
        self.timesteps = int(timesteps)

    def sample(self, n: int):
        """``(t, weights)``: n int64 timesteps in 1..T and their weights (n,) float64."""
        return randint(1, self.timesteps + 1, size=(n,)).numpy(), np.ones(n)

    def update(self, t, losses):
        """Nothing to learn."""


class ImportanceSampler(Module):
    r"""p_t of eq. (2) from the last ``history`` losses of each t (buffers ``loss_history``
    (T, history) and ``loss_counts`` (T,)); :meth:`sample` returns the weights :math:`1 / (T
    p_t)` of eq. (1) beside the timesteps."""

    def __init__(self, timesteps: int, history: int = 10, uniform_share: float = 0.001):
        super().__init__()
        if isinstance(history, bool) or not isinstance(history, (int, np.integer)) \
                or history < 1:
            raise ValueError(f"ImportanceSampler: history must be a positive int, got "
                             f"{history!r}")
        if not 0.0 < uniform_share <= 1.0:
            raise ValueError(f"ImportanceSampler: uniform_share must be in (0, 1], got "
                             f"{uniform_share!r}")
        self.timesteps, self.history, self.uniform_share = int(timesteps), int(history), \
            float(uniform_share)
        self.register_buffer("loss_history", zeros(self.timesteps, self.history,
                                                   dtype=np.float64))
        self.register_buffer("loss_counts", tensor(np.zeros(self.timesteps, dtype=np.int64)))

    def probabilities(self) -> np.ndarray:
        """p_1..p_T (T,), eq. (2); uniform until every t has ``history`` losses."""
        counts = self.loss_counts.numpy()
        if np.any(counts < self.history):
            return np.full(self.timesteps, 1.0 / self.timesteps)
        root_mean_square = np.sqrt(np.mean(self.loss_history.numpy() ** 2, axis=1))
        p = root_mean_square / root_mean_square.sum()
        return (1.0 - self.uniform_share) * p + self.uniform_share / self.timesteps   # eq. (2)

    def sample(self, n: int):
        """``(t, weights)``: n timesteps drawn from p (inverse CDF of one uniform each) and
        their weights 1 / (T p_t), eq. (1)."""
        p = self.probabilities()
        cdf = np.cumsum(p)
        u = rand(n, dtype=np.float64).numpy() * cdf[-1]
        index = np.minimum(np.searchsorted(cdf, u, side="right"), self.timesteps - 1)
        return index + 1, 1.0 / (self.timesteps * p[index])              # eq. (1)

    def update(self, t, losses):
        """Append each image's loss to its timestep's history (the oldest value drops out once
        ``history`` are kept)."""
        xp = self.loss_history._xp()
        history, counts = self.loss_history.numpy().copy(), self.loss_counts.numpy().copy()
        for step, loss in zip(np.asarray(t, dtype=np.int64) - 1, np.asarray(losses, np.float64)):
            if counts[step] == self.history:
                history[step, :-1] = history[step, 1:].copy()
                history[step, -1] = loss
            else:
                history[step, counts[step]] = loss
                counts[step] += 1
        self.loss_history.data[...] = xp.asarray(history)
        self.loss_counts.data[...] = xp.asarray(counts)


def timestep_sampler(name: str, timesteps: int) -> Module:
    """The sampler ``"uniform"`` or ``"importance"`` over 1..``timesteps``."""
    if name == "uniform":
        return UniformSampler(timesteps)
    if name == "importance":
        return ImportanceSampler(timesteps)
    raise ValueError(f"unknown timestep_sampling {name!r}; choose one of "
                     f"{', '.join(TIMESTEP_SAMPLERS)}")
