r"""Noise schedules of a diffusion model and the tables derived from them.

The forward process adds Gaussian noise in :math:`T` small steps with variances
:math:`\beta_1, \dots, \beta_T`:

.. math:: q(x_t \mid x_{t-1}) = \mathcal N\big(\sqrt{1 - \beta_t}\, x_{t-1},\; \beta_t I\big).

With :math:`\alpha_t = 1 - \beta_t` and :math:`\bar\alpha_t = \prod_{s \le t} \alpha_s`
(:math:`\bar\alpha_0 = 1`) the steps compose in closed form:

.. math:: q(x_t \mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\, x_0,\; (1 - \bar\alpha_t) I\big),
          \qquad
          q(x_t \mid x_s) = \mathcal N\big(\sqrt{\bar\alpha_t / \bar\alpha_s}\, x_s,\;
          (1 - \bar\alpha_t / \bar\alpha_s) I\big) \quad (s < t).

Two schedules:

* ``linear`` (Ho et al. 2020): :math:`\beta_t` evenly spaced from :math:`10^{-4}` to
  :math:`0.02` for :math:`T = 1000`, both ends scaled by :math:`1000 / T` for other :math:`T` (as
  Nichol & Dhariwal's code does), so that every :math:`T` destroys the image as completely:
  :math:`\bar\alpha_T \approx e^{-10}` whatever :math:`T`.  Unscaled, :math:`T = 100` would end at
  :math:`\bar\alpha_T = 0.36` and sampling would start from the wrong distribution.  Betas are
  clipped at 0.999, which only the shortest chains (:math:`T < 50`) reach.
* ``cosine`` (Nichol & Dhariwal 2021): :math:`\bar\alpha_t = f(t) / f(0)` with
  :math:`f(t) = \cos^2\!\big(\tfrac{t/T + s}{1 + s} \cdot \tfrac\pi2\big)`, :math:`s = 0.008`;
  :math:`\beta_t = 1 - \bar\alpha_t / \bar\alpha_{t-1}`, clipped at 0.999 so that the last steps
  do not become singular (:math:`\bar\alpha_T = 0` would make :math:`\beta_T = 1`).  It destroys
  information more evenly over :math:`t` than the linear one, which spends its last few hundred
  steps on nearly pure noise.

:meth:`NoiseSchedule.respaced` keeps the steps of a sub-sequence :math:`\tau_0 = 0 < \tau_1 <
\dots < \tau_S`: its :math:`\beta_k = 1 - \bar\alpha_{\tau_k} / \bar\alpha_{\tau_{k-1}}` reproduce
:math:`\bar\alpha` at the kept steps exactly (sampling with fewer steps, Nichol & Dhariwal 2021).

Every table is a float64 NumPy array of length :math:`T + 1` indexed by the timestep itself:
``alpha_bar[t]`` is :math:`\bar\alpha_t`, and entry 0 describes :math:`x_0` (:math:`\beta_0 = 0`,
:math:`\bar\alpha_0 = 1`).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["linear_betas", "cosine_betas", "BETA_SCHEDULES", "NoiseSchedule",
           "check_timesteps"]


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02,
                 reference_timesteps: int | None = 1000, max_beta: float = 0.999) -> np.ndarray:
    r""":math:`\beta_1, \dots, \beta_T` evenly spaced from ``beta_start`` to ``beta_end``, both
    scaled by ``reference_timesteps / T`` (the values are those of a 1,000-step chain; None
    keeps them as given) and clipped at ``max_beta``.  A one-step chain takes the last value."""
    _check_count(timesteps)
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(f"linear_betas: need 0 < beta_start <= beta_end < 1, got "
                         f"beta_start={beta_start!r}, beta_end={beta_end!r}")
    scale = 1.0 if reference_timesteps is None else reference_timesteps / timesteps
    betas = (np.linspace(beta_start * scale, beta_end * scale, timesteps, dtype=np.float64)
             if timesteps > 1 else np.array([beta_end * scale]))
    return np.minimum(betas, max_beta)


def cosine_betas(timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    r""":math:`\beta_t = \min(1 - \bar\alpha_t / \bar\alpha_{t-1}, \beta_{\max})` for
    :math:`\bar\alpha_t = f(t) / f(0)`, :math:`f(t) = \cos^2(\frac{t/T + s}{1 + s}\frac\pi2)`."""
    _check_count(timesteps)
    t = np.arange(timesteps + 1, dtype=np.float64)
    f = np.cos((t / timesteps + offset) / (1.0 + offset) * math.pi / 2.0) ** 2
    alpha_bar = f / f[0]
    return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)


BETA_SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


def _check_count(timesteps):
    if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)) \
            or timesteps < 1:
        raise ValueError(f"the number of timesteps must be a positive int, got {timesteps!r}")


def check_timesteps(t, timesteps: int, low: int = 1, where: str = "t") -> np.ndarray:
    """``t`` (an int, a sequence, a NumPy array or a Tensor of ints) as an int64 array, checked to
    lie in ``low .. timesteps``."""
    values = t.numpy() if hasattr(t, "numpy") else np.asarray(t)
    if values.dtype.kind not in "iu":
        raise ValueError(f"{where} must hold integer timesteps, got dtype {values.dtype}")
    values = values.astype(np.int64)
    if values.size and (values.min() < low or values.max() > timesteps):
        raise ValueError(f"{where} must lie in {low}..{timesteps}, got values from "
                         f"{values.min()} to {values.max()}")
    return values


class NoiseSchedule:
    r"""The forward process's tables for :math:`t = 0, \dots, T`, from :math:`\beta_1..\beta_T`.

    ``betas``, ``alphas`` (:math:`1 - \beta_t`), ``alpha_bar`` (:math:`\bar\alpha_t`) and the
    posterior :math:`q(x_{t-1} \mid x_t, x_0)`'s variance ``posterior_variance``
    (:math:`\tilde\beta_t`; :math:`\tilde\beta_1 = 0`, since :math:`x_0` is then given).
    :meth:`posterior` computes the posterior between any two timesteps :math:`s < t`, which the
    samplers need when they skip steps.
    """

    def __init__(self, betas):
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0:
            raise ValueError(f"NoiseSchedule: betas must be a non-empty 1-D array, got shape "
                             f"{betas.shape}")
        if not np.all((betas > 0.0) & (betas < 1.0)):
            raise ValueError("NoiseSchedule: every beta must lie in (0, 1)")
        self.timesteps = betas.size
        self.betas = np.concatenate([[0.0], betas])               # beta_0 = 0: x_0 itself
        self.alphas = 1.0 - self.betas                            # alpha_t = 1 - beta_t
        self.alpha_bar = np.cumprod(self.alphas)                  # abar_t = prod_{s<=t} alpha_s
        t = np.arange(1, self.timesteps + 1)
        self.posterior_variance = np.concatenate([[0.0], self.posterior(t, t - 1)[2]])

    @classmethod
    def named(cls, name: str, timesteps: int) -> "NoiseSchedule":
        """The schedule ``"linear"`` or ``"cosine"`` over ``timesteps`` steps."""
        try:
            make_betas = BETA_SCHEDULES[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown beta schedule {name!r}; choose one of "
                             f"{', '.join(sorted(BETA_SCHEDULES))}") from None
        return cls(make_betas(timesteps))

    def respaced(self, kept) -> "NoiseSchedule":
        r"""The schedule of the chain that visits only the timesteps ``kept`` (increasing, from 0
        to at most T; 0 is added when missing): step k goes from :math:`\tau_{k-1}` to
        :math:`\tau_k` with :math:`\beta_k = 1 - \bar\alpha_{\tau_k} / \bar\alpha_{\tau_{k-1}}`, so
        its :math:`\bar\alpha_k` is the original :math:`\bar\alpha_{\tau_k}` and its posterior
        between k - 1 and k is the original's between :math:`\tau_{k-1}` and :math:`\tau_k`."""
        kept = np.asarray(kept)
        if kept.ndim != 1 or kept.dtype.kind not in "iu" or kept.size == 0:
            raise ValueError(f"NoiseSchedule.respaced: kept must be a 1-D array of integer "
                             f"timesteps, got {kept!r}")
        kept = kept.astype(np.int64)
        if kept[0] != 0:
            kept = np.concatenate([[0], kept])
        if np.any(np.diff(kept) <= 0) or kept[-1] > self.timesteps:
            raise ValueError(f"NoiseSchedule.respaced: the kept timesteps must increase strictly "
                             f"and lie in 0..{self.timesteps}")
        return NoiseSchedule(1.0 - self.alpha_bar[kept[1:]] / self.alpha_bar[kept[:-1]])

    def posterior(self, t, s):
        r"""The coefficients of :math:`q(x_s \mid x_t, x_0) = \mathcal N(a\, x_0 + b\, x_t,\;
        v I)` for timesteps :math:`0 \le s < t` (arrays broadcast): ``(a, b, v)``.

        Bayes' rule on :math:`q(x_t \mid x_s)\, q(x_s \mid x_0)`, two Gaussians, with
        :math:`\alpha_{t|s} = \bar\alpha_t / \bar\alpha_s` and
        :math:`\beta_{t|s} = 1 - \alpha_{t|s}`:

        .. math:: a = \frac{\sqrt{\bar\alpha_s}\, \beta_{t|s}}{1 - \bar\alpha_t}, \qquad
                  b = \frac{\sqrt{\alpha_{t|s}}\, (1 - \bar\alpha_s)}{1 - \bar\alpha_t}, \qquad
                  v = \frac{1 - \bar\alpha_s}{1 - \bar\alpha_t}\, \beta_{t|s}.

        For :math:`s = t - 1` these are Ho et al.'s eq. (7):
        :math:`\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1 - \bar\alpha_t} x_0
        + \frac{\sqrt{\alpha_t}(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t} x_t`,
        :math:`\tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t} \beta_t`.
        """
        t, s = np.asarray(t), np.asarray(s)
        if np.any(s >= t) or np.any(s < 0) or np.any(t > self.timesteps):
            raise ValueError(f"posterior: need 0 <= s < t <= {self.timesteps}")
        abar_t, abar_s = self.alpha_bar[t], self.alpha_bar[s]
        alpha_ts = abar_t / abar_s                                # alpha_{t|s}
        beta_ts = 1.0 - alpha_ts                                  # beta_{t|s}
        a = np.sqrt(abar_s) * beta_ts / (1.0 - abar_t)
        b = np.sqrt(alpha_ts) * (1.0 - abar_s) / (1.0 - abar_t)
        v = (1.0 - abar_s) / (1.0 - abar_t) * beta_ts
        return a, b, v
