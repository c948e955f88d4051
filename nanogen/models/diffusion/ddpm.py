r"""Denoising diffusion probabilistic models (Ho et al. 2020), with the DDIM sampler (Song et al.
2021).

**The forward process** destroys an image :math:`x_0` (pixels in [-1, 1]) in :math:`T` steps of
Gaussian noise with variances :math:`\beta_t` (:mod:`.schedules`):

.. math:: q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1 - \beta_t}\, x_{t-1}, \beta_t I), \qquad
          q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\, x_0, (1 - \bar\alpha_t) I),

so :math:`x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \varepsilon` with
:math:`\varepsilon \sim \mathcal N(0, I)` in one step (:meth:`DDPM.q_sample`), and
:math:`\bar\alpha_T \approx 0` leaves :math:`x_T \approx \mathcal N(0, I)`.

**The posterior** of one step back, given :math:`x_0`, is Gaussian (:meth:`DDPM.posterior`):

.. math:: q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I), \quad
          \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\, x_0
          + \frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t, \quad
          \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\, \beta_t.

**The reverse process** :math:`p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta(x_t, t),
\sigma_t^2 I)` puts the network's guess of :math:`x_0` into that posterior.  A U-Net
(:mod:`.unet`) predicts the noise, :math:`\varepsilon_\theta(x_t, t)`, from which

.. math:: \hat x_0 = \frac{x_t - \sqrt{1 - \bar\alpha_t}\, \varepsilon_\theta(x_t, t)}
                          {\sqrt{\bar\alpha_t}}, \qquad
          \mu_\theta(x_t, t) = \tilde\mu_t(\hat x_0, x_t)
          = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,
            \varepsilon_\theta(x_t, t)\Big).

As in Ho et al.'s code, :math:`\hat x_0` is clipped to [-1, 1] (where the data live) before it
enters :math:`\tilde\mu_t` (``clip_denoised``; the second form of :math:`\mu_\theta` is the
unclipped one).  The variance is fixed: :math:`\sigma_t^2 = \beta_t` (``reverse_variance="beta"``,
Algorithm 2 of the paper) or :math:`\tilde\beta_t` (``"posterior"``).

**Training** minimises the simplified objective, the noise-prediction error at a uniformly drawn
step (:meth:`DDPM.loss`):

.. math:: L_\text{simple} = \mathbb E_{t \sim U\{1..T\},\, x_0,\, \varepsilon}
          \big\| \varepsilon - \varepsilon_\theta(\sqrt{\bar\alpha_t} x_0
          + \sqrt{1 - \bar\alpha_t} \varepsilon,\, t) \big\|^2.

The options of :mod:`.objectives` change what the network predicts (``prediction``: the noise,
:math:`x_0` or :math:`v`) and how the error is weighted over t (``weighting``: ``"simple"``,
``"p2"``, or ``"vlb"``, the bound's own terms); :mod:`.timestep_sampling` draws t uniformly or
by importance (``timestep_sampling``).

**Improved DDPM** (Nichol & Dhariwal 2021, ``learn_variance=True``; registered as
``improved-ddpm`` with the cosine schedule): the network also outputs u, the reverse variance is
:math:`\Sigma_\theta = \exp(f \log\beta_t + (1 - f) \log\tilde\beta_t)`, f = (u + 1)/2, and the
hybrid objective adds the bound's term with the mean's gradient stopped, so that it trains only
the variance:

.. math:: L_\text{hybrid} = L_\text{simple} + \lambda\, \tfrac{T}{1000}\, L_{t-1}\big(
          \mathrm{sg}[\mu_\theta], \Sigma_\theta\big), \qquad \lambda = 0.001,

:math:`L_{t-1}` in bits per dimension (the decoder's :math:`L_0` at t = 1), as in the authors' code.
With ``weighting="vlb"`` the bound alone is trained, mean and variance (:math:`L_\text{vlb}`;
pair it with ``timestep_sampling="importance"``, as the paper does).

**Sampling** (:meth:`DDPM.sample`) starts from :math:`x_T \sim \mathcal N(0, I)`:

* ``"ancestral"`` -- Algorithm 2: :math:`x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z`,
  :math:`z \sim \mathcal N(0, I)`, for :math:`t = T, \dots, 1` (no noise at the last step).
* ``"ddim"`` -- on an evenly spaced sub-sequence :math:`\tau_S = T > \dots > \tau_1 > \tau_0 = 0`
  of ``steps`` steps, from :math:`t` to :math:`s`:

  .. math:: x_s = \sqrt{\bar\alpha_s}\, \hat x_0
            + \sqrt{1 - \bar\alpha_s - \sigma^2}\, \hat\varepsilon + \sigma z, \qquad
            \sigma = \eta \sqrt{\tfrac{1 - \bar\alpha_s}{1 - \bar\alpha_t}}
            \sqrt{1 - \tfrac{\bar\alpha_t}{\bar\alpha_s}},

  deterministic for :math:`\eta = 0` (an ODE in disguise) and the ancestral sampler with
  :math:`\sigma_t^2 = \tilde\beta_t` for :math:`\eta = 1`.  (:math:`\hat\varepsilon` is recomputed
  from the clipped :math:`\hat x_0`.)  The ancestral sampler also takes ``steps``: it then runs on
  the same sub-sequence, the forward process respaced to it
  (:math:`\beta_{t|s} = 1 - \bar\alpha_t / \bar\alpha_s`, Nichol & Dhariwal 2021).

**The variational bound** on :math:`-\log p_\theta(x_0)` (:meth:`DDPM.variational_bound`), for
8-bit images scaled to [-1, 1]:

.. math:: L = \underbrace{\mathrm{KL}(q(x_T \mid x_0) \,\|\, \mathcal N(0, I))}_{L_T}
          + \sum_{t=2}^{T} \underbrace{\mathbb E_q\, \mathrm{KL}(q(x_{t-1} \mid x_t, x_0)
            \,\|\, p_\theta(x_{t-1} \mid x_t))}_{L_{t-1}}
          \underbrace{- \mathbb E_q \log p_\theta(x_0 \mid x_1)}_{L_0},

every KL between Gaussians in closed form, and :math:`p_\theta(x_0 \mid x_1)` the discretized
Gaussian decoder: the mass of :math:`\mathcal N(\mu_\theta(x_1, 1), \sigma_1^2)` on each pixel's
bin :math:`[x - \frac1{255}, x + \frac1{255}]`, the end bins reaching to :math:`\pm\infty`.  The
sum over :math:`t` costs a network evaluation per step, so it is estimated without bias from
``K`` steps per image, one drawn uniformly in each of ``K`` equal strata of :math:`2..T`, each
weighted by its stratum's size (:math:`K = T - 1` is the full sum).  Reported in bits per
dimension: :math:`L / (D \ln 2)`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ... import functional as ops
from ...autograd import no_grad
from ...creation import randint, randn, randn_like, tensor
from ...nn import Module
from ...tensor import Tensor
from ...utils.checks import positive_int
from ..base import GenerativeModel, check_halvings, nats_to_bits_per_dim
from ..likelihood import sum_per_example, gaussian_kl_to_standard
from ..registry import ModelSpec, register
from .objectives import (PREDICTIONS, WEIGHTINGS, interpolated_log_variance, p2_weight,
                         prediction_target, split_prediction)
from .schedules import NoiseSchedule, check_timesteps
from .timestep_sampling import timestep_sampler
from .unet import UNet

__all__ = ["DDPM", "VariationalBound", "gaussian_kl", "discretized_gaussian_log_likelihood",
           "timestep_subsequence"]

SAMPLERS = ("ancestral", "ddim")
REVERSE_VARIANCES = ("beta", "posterior")
# the half-width of one 8-bit level in [-1, 1]: levels are 2/255 apart
_HALF_BIN = 1.0 / 255.0
# the smallest probability the decoder assigns to a bin: log(1e-12) = -27.6 nats
_MIN_PROBABILITY = 1e-12
# the reverse-process figure's chain: the schedule respaced to this many steps
FIGURE_CHAIN_STEPS = 100


def gaussian_kl(mean1, var1, mean2, var2):
    r""":math:`\mathrm{KL}(\mathcal N(m_1, v_1 I) \| \mathcal N(m_2, v_2 I))` per image, summed over
    its dimensions (Tensors that broadcast, the first axis the batch):

    .. math:: \tfrac12 \sum_i \Big[\log\frac{v_2}{v_1} + \frac{v_1 + (m_1 - m_2)^2}{v_2} - 1\Big].
    """
    return sum_per_example(0.5 * (ops.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2
                                 - 1.0))


def discretized_gaussian_log_likelihood(x, mean, var):
    r"""Per pixel: :math:`\log \int_{x - 1/255}^{x + 1/255} \mathcal N(u; m, v)\, du`, the bin of
    an 8-bit value x in [-1, 1]; the lowest bin reaches down to :math:`-\infty` and the highest up
    to :math:`+\infty`, so the 256 bins' probabilities sum to one (Ho et al. 2020, eq. 13)."""
    inv_std = ops.rsqrt(var)
    upper = (x - mean + _HALF_BIN) * inv_std
    lower = (x - mean - _HALF_BIN) * inv_std
    cdf_upper = ops.normal_cdf(upper)
    log_cdf_upper = ops.log(ops.clamp(cdf_upper, min=_MIN_PROBABILITY))
    log_sf_lower = ops.log(ops.clamp(ops.normal_cdf(-lower), min=_MIN_PROBABILITY))  # 1 - cdf
    log_bin = ops.log(ops.clamp(cdf_upper - ops.normal_cdf(lower), min=_MIN_PROBABILITY))
    return ops.where(x < -1.0 + _HALF_BIN, log_cdf_upper,
                     ops.where(x > 1.0 - _HALF_BIN, log_sf_lower, log_bin))


def timestep_subsequence(timesteps: int, steps: int) -> np.ndarray:
    r""":math:`0 = \tau_0 < \tau_1 < \dots < \tau_S = T`: ``steps`` + 1 evenly spaced timesteps,
    :math:`\tau_k = \lfloor kT / S \rfloor` (distinct, since :math:`T/S \ge 1`)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) \
            or not 1 <= steps <= timesteps:
        raise ValueError(f"steps must be an int between 1 and T = {timesteps}, got {steps!r}")
    return np.arange(steps + 1, dtype=np.int64) * timesteps // steps


class VariationalBound(NamedTuple):
    """The negative variational bound of each image, Tensors of shape (N,) in nats:
    ``total = prior + diffusion + decoder``; ``bits_per_dim`` is ``total / (D ln 2)``."""

    total: Tensor
    prior: Tensor         # L_T = KL(q(x_T | x_0) || N(0, I))
    diffusion: Tensor     # sum_{t=2}^T L_{t-1}, estimated from the drawn timesteps
    decoder: Tensor       # L_0 = -log p(x_0 | x_1)
    bits_per_dim: Tensor


class DDPM(GenerativeModel):
    """A DDPM on images in [-1, 1] with a U-Net noise predictor.

    ``image_shape`` (C, H, W); ``timesteps`` T; ``schedule`` ``"linear"`` or ``"cosine"``;
    ``channels``, ``channel_mults``, ``num_res_blocks``, ``attention_levels``, ``heads``,
    ``groups``, ``dropout``, ``time_features`` shape the :class:`~.unet.UNet`; or pass any
    ``network`` module mapping ``(x_t, t)`` to the prediction (then those are unused).
    ``reverse_variance`` is ``"beta"`` (sigma_t^2 = beta_t) or ``"posterior"`` (the posterior's
    beta-tilde_t), unless ``learn_variance``; ``clip_denoised`` clips the predicted x_0 to
    [-1, 1] in the samplers and the bound.  ``prediction`` (``"epsilon"``, ``"x0"``, ``"v"``),
    ``weighting`` (``"simple"``, ``"p2"`` with ``p2_k``, ``p2_gamma``, ``"vlb"``),
    ``learn_variance`` with the hybrid loss's ``vlb_weight``, and ``timestep_sampling``
    (``"uniform"``, ``"importance"``) choose the objective (module docstring).
    ``num_classes`` is accepted for the common model interface and not used: the model is
    unconditional (:class:`~.guidance.GuidedDDPM` is the class-conditional one).
    """

    data_transform = "symmetric"
    judged_by_samples = True
    eval_num_samples = 250      # with 50 DDIM steps: minutes on a CPU; ask for more on a GPU

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, timesteps: int = 1000,
                 schedule: str = "linear", channels: int = 32, channel_mults=(1, 2, 2),
                 num_res_blocks: int = 2, attention_levels=None, heads: int = 4,
                 groups: int = 8, dropout: float = 0.0, reverse_variance: str = "beta",
                 clip_denoised: bool = True, network: Module | None = None,
                 prediction: str = "epsilon", weighting: str = "simple", p2_k: float = 1.0,
                 p2_gamma: float = 1.0, learn_variance: bool = False,
                 vlb_weight: float = 0.001, timestep_sampling: str = "uniform",
                 time_features: str = "sinusoidal"):
        super().__init__()
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or not all(isinstance(s, (int, np.integer)) and s > 0
                                            for s in image_shape):
            raise ValueError(f"DDPM: image_shape must be (C, H, W) with positive ints, got "
                             f"{image_shape!r}")
        if reverse_variance not in REVERSE_VARIANCES:
            raise ValueError(f"DDPM: unknown reverse_variance {reverse_variance!r}; choose one "
                             f"of {', '.join(REVERSE_VARIANCES)}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"DDPM: unknown prediction {prediction!r}; choose one of "
                             f"{', '.join(PREDICTIONS)}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"DDPM: unknown weighting {weighting!r}; choose one of "
                             f"{', '.join(WEIGHTINGS)}")
        if not (p2_k > 0 and p2_gamma >= 0):
            raise ValueError(f"DDPM: P2 weighting needs p2_k > 0 and p2_gamma >= 0, got "
                             f"p2_k={p2_k!r}, p2_gamma={p2_gamma!r}")
        if not vlb_weight >= 0:
            raise ValueError(f"DDPM: vlb_weight must be >= 0, got {vlb_weight!r}")
        self.image_shape = image_shape
        self.num_classes = num_classes
        self.schedule = NoiseSchedule.named(schedule, timesteps)
        self.timesteps = self.schedule.timesteps
        self.reverse_variance = reverse_variance
        self.clip_denoised = bool(clip_denoised)
        self.prediction, self.weighting = prediction, weighting
        self.p2_k, self.p2_gamma = float(p2_k), float(p2_gamma)
        self.learn_variance, self.vlb_weight = bool(learn_variance), float(vlb_weight)
        self.timestep_sampler = timestep_sampler(timestep_sampling, self.timesteps)
        self.network = network if network is not None else UNet(
            image_channels=image_shape[0], channels=channels, channel_mults=channel_mults,
            num_res_blocks=num_res_blocks, attention_levels=attention_levels, heads=heads,
            groups=groups, dropout=dropout, time_features=time_features,
            timesteps=self.timesteps, num_classes=self._network_classes(num_classes),
            out_channels=image_shape[0] * (2 if self.learn_variance else 1))
        if network is None:           # the U-Net checked its arguments; now the image size
            check_halvings(image_shape, self.network.num_levels - 1, "DDPM's U-Net")

    def _network_classes(self, num_classes):
        """The label embedding's class count for the U-Net: none for the unconditional model."""
        return None

    # -- helpers -------------------------------------------------------------------------------
    def _device(self):
        first = next(iter(self.parameters()), None)
        return first.device if first is not None else "cpu"

    def _timesteps_for(self, t, n: int, where: str, low: int = 1) -> np.ndarray:
        """``t`` as n int64 timesteps in ``low .. T`` (an int is broadcast)."""
        t = check_timesteps(t, self.timesteps, low=low, where=f"DDPM.{where}: t")
        if t.ndim == 0:
            t = np.full(n, t, dtype=np.int64)
        if t.shape != (n,):
            raise ValueError(f"DDPM.{where}: expected one timestep per image, shape ({n},), "
                             f"got {t.shape}")
        return t

    @staticmethod
    def _per_image(values, like):
        """Per-image numbers (N,) as a Tensor (N, 1, 1, 1) with ``like``'s dtype and device."""
        values = np.asarray(values, dtype=np.float64).reshape(-1, 1, 1, 1)
        return tensor(values, dtype=like.dtype, device=like.device)

    def _signal_and_noise_scales(self, t, like):
        r""":math:`\sqrt{\bar\alpha_t}` and :math:`\sqrt{1 - \bar\alpha_t}` per image, (N, 1, 1, 1)."""
        alpha_bar = self.schedule.alpha_bar[t]
        return (self._per_image(np.sqrt(alpha_bar), like),
                self._per_image(np.sqrt(1.0 - alpha_bar), like))

    # -- the forward process -------------------------------------------------------------------
    def q_sample(self, x0, t, noise=None):
        r""":math:`x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \varepsilon`, a draw
        of :math:`q(x_t \mid x_0)`; t in 0..T per image (or one int), noise drawn if not given."""
        self._check_images(x0, "q_sample")
        t = self._timesteps_for(t, x0.shape[0], "q_sample", low=0)
        if noise is None:
            noise = randn_like(x0)
        elif noise.shape != x0.shape:
            raise ValueError(f"DDPM.q_sample: noise shape {tuple(noise.shape)} differs from the "
                             f"images' {tuple(x0.shape)}")
        alpha_bar = self.schedule.alpha_bar[t]
        return (self._per_image(np.sqrt(alpha_bar), x0) * x0
                + self._per_image(np.sqrt(1.0 - alpha_bar), x0) * noise)

    def posterior(self, x0, x_t, t):
        r"""Mean (N, C, H, W) and variance (N, 1, 1, 1) of :math:`q(x_{t-1} \mid x_t, x_0)`:
        :math:`\tilde\mu_t = a_t x_0 + b_t x_t` and :math:`\tilde\beta_t` (module docstring)."""
        self._check_images(x0, "posterior")
        self._check_images(x_t, "posterior")
        t = self._timesteps_for(t, x0.shape[0], "posterior")
        return self._posterior_between(x0, x_t, t, t - 1)

    def _posterior_between(self, x0, x_t, t, s):
        """q(x_s | x_t, x_0) for per-image timesteps s < t: (mean, variance)."""
        a, b, v = self.schedule.posterior(t, s)
        return (self._per_image(a, x_t) * x0 + self._per_image(b, x_t) * x_t,
                self._per_image(v, x_t))

    # -- the reverse process -------------------------------------------------------------------
    def network_output(self, x_t, t, y=None):
        """The network's raw output for per-image timesteps t (ints in 1..T): ``(prediction,
        variance_output)``, the second None unless ``learn_variance`` (then the network's
        channels split in two)."""
        self._check_images(x_t, "network_output")
        t = self._timesteps_for(t, x_t.shape[0], "network_output")
        t = tensor(t, device=x_t.device)
        out = self.network(x_t, t) if y is None else self.network(x_t, t, y)
        channels = self.image_shape[0] * (2 if self.learn_variance else 1)
        if tuple(out.shape) != (x_t.shape[0], channels, *x_t.shape[2:]):
            raise ValueError(f"DDPM: the network returned shape {tuple(out.shape)} for images "
                             f"of shape {tuple(x_t.shape)}; expected {channels} channels"
                             + (" (the prediction and the variance)" if self.learn_variance
                                else ""))
        if self.learn_variance:
            prediction, variance_output = out.chunk(2, dim=1)
            return prediction, variance_output
        return out, None

    def predict(self, x_t, t, y=None):
        r"""(:math:`\hat x_0`, :math:`\hat\varepsilon`, variance output or None): the network's
        prediction read as ``self.prediction`` (:func:`.objectives.split_prediction`),
        unclipped."""
        output, variance_output = self.network_output(x_t, t, y)
        a, b = self._signal_and_noise_scales(t, x_t)
        x0, eps = split_prediction(self.prediction, output, x_t, a, b)
        return x0, eps, variance_output

    def predict_noise(self, x_t, t, y=None):
        r""":math:`\varepsilon_\theta(x_t, t)` for per-image timesteps t (ints in 1..T), whatever
        the network predicts."""
        self._check_images(x_t, "predict_noise")
        t = self._timesteps_for(t, x_t.shape[0], "predict_noise")
        return self.predict(x_t, t, y)[1]

    def _denoise(self, x_t, t, y=None):
        r"""(:math:`\hat x_0`, :math:`\hat\varepsilon`, variance output): the network's guess of
        the clean image, clipped to [-1, 1] when ``clip_denoised``, and the noise that guess
        implies."""
        x0, eps, variance_output = self.predict(x_t, t, y)
        if self.clip_denoised:
            a, b = self._signal_and_noise_scales(t, x_t)
            x0 = ops.clamp(x0, -1.0, 1.0)
            eps = (x_t - a * x0) / b
        return x0, eps, variance_output

    def _reverse_variance(self, t, s, variance_output, like):
        r"""sigma^2 of p(x_s | x_t), (N, 1, 1, 1) or per pixel: fixed, :math:`\beta_{t|s}` or the
        posterior's variance; learned, their log-interpolation by the network's output
        (:func:`.objectives.interpolated_log_variance`).  At s = 0 the lower end is the
        decoder's variance (:meth:`_decoder_variance`: the posterior's is 0 there), as in the
        authors' clipped log-variance."""
        beta_ts = 1.0 - self.schedule.alpha_bar[t] / self.schedule.alpha_bar[s]   # beta_{t|s}
        posterior = np.where(s == 0, self._decoder_variance(), self.schedule.posterior(t, s)[2])
        if variance_output is None:
            fixed = posterior if self.reverse_variance == "posterior" else beta_ts
            return self._per_image(np.where(s == 0, self._decoder_variance(), fixed), like)
        return ops.exp(interpolated_log_variance(variance_output,
                                                 self._per_image(np.log(beta_ts), like),
                                                 self._per_image(np.log(posterior), like)))

    def _decoder_variance(self):
        r""":math:`\sigma_1^2` of the decoder :math:`p(x_0 \mid x_1)` for fixed variances:
        :math:`\tilde\beta_2`, as in Ho et al.'s code for both variance choices
        (:math:`\tilde\beta_1 = 0` would make it a point mass); :math:`\beta_1` when T = 1."""
        if self.timesteps == 1:
            return self.schedule.betas[1]
        return self.schedule.posterior_variance[2]

    def p_mean_variance(self, x_t, t, s=None, y=None):
        r"""Mean :math:`\mu_\theta = \tilde\mu(\hat x_0, x_t)` and variance :math:`\sigma^2` of
        :math:`p_\theta(x_s \mid x_t)`, s = t - 1 unless given (per-image arrays)."""
        s = t - 1 if s is None else s
        x0, _, variance_output = self._denoise(x_t, t, y)
        mean, _ = self._posterior_between(x0, x_t, t, s)
        return mean, self._reverse_variance(t, s, variance_output, x_t)

    def _ancestral_step(self, x_t, t, s, y=None):
        """x_s = mu_theta(x_t, t) + sigma z, with no noise when s = 0 (Algorithm 2, line 4)."""
        mean, var = self.p_mean_variance(x_t, t, s, y)
        if s[0] == 0:
            return mean
        return mean + ops.sqrt(var) * randn_like(x_t)

    def _ddim_step(self, x_t, t, s, eta, y=None):
        """x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sigma^2) eps + sigma z (Song et al. eq. 12)."""
        x0, eps, _ = self._denoise(x_t, t, y)
        alpha_bar_s = self.schedule.alpha_bar[s]
        sigma2 = eta ** 2 * self.schedule.posterior(t, s)[2]
        x_s = (self._per_image(np.sqrt(alpha_bar_s), x_t) * x0
               + self._per_image(np.sqrt(np.maximum(1.0 - alpha_bar_s - sigma2, 0.0)), x_t) * eps)
        if eta == 0 or s[0] == 0:
            return x_s
        return x_s + self._per_image(np.sqrt(sigma2), x_t) * randn_like(x_t)

    def reverse_chain(self, x_T, sampler: str = "ancestral", steps: int | None = None,
                      eta: float = 0.0, keep=(), y=None):
        """Run a sampler from x_T down to x_0; returns ``(x_0, {t: x_t})`` for each t in ``keep``
        that the chain visits (T and 0 always are).  ``y``: labels, for a conditional model."""
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if sampler == "ancestral" and eta != 0.0:
            raise ValueError("eta applies to the DDIM sampler only")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta!r}")
        self._check_images(x_T, "reverse_chain")
        tau = timestep_subsequence(self.timesteps, self.timesteps if steps is None else steps)
        n, keep = x_T.shape[0], set(keep)
        x, kept = x_T, {}
        for t, s in zip(tau[:0:-1], tau[-2::-1]):          # (tau_S, tau_{S-1}), ..., (tau_1, 0)
            if t in keep:
                kept[int(t)] = x
            t_n, s_n = np.full(n, t), np.full(n, s)
            x = (self._ancestral_step(x, t_n, s_n, y) if sampler == "ancestral"
                 else self._ddim_step(x, t_n, s_n, eta, y))
        if 0 in keep:
            kept[0] = x
        return x, kept

    PREVIEW_DDIM_STEPS = 50

    def preview_sampler(self) -> dict:
        """DDIM with 50 steps (or T, if fewer) for sample grids and CPU evaluation: 20 times
        fewer network evaluations than ancestral sampling's T = 1,000."""
        return {"sampler": "ddim", "steps": min(self.PREVIEW_DDIM_STEPS, self.timesteps)}

    def sample(self, n: int, y=None, sampler: str = "ancestral", steps: int | None = None,
               eta: float = 0.0):
        """n images in [0, 1] from x_T ~ N(0, I): ``sampler`` ``"ancestral"`` (all T steps, or
        ``steps`` of a respaced chain) or ``"ddim"`` (``steps`` steps, all T by default; ``eta``
        0 deterministic, 1 ancestral-like).  ``y`` must be None: the model is unconditional."""
        n = positive_int(n, "DDPM.sample: n")
        if y is not None:
            raise ValueError("DDPM.sample: the model is unconditional and takes no labels y")
        return self._sample(n, None, sampler, steps, eta)

    def _sample(self, n, y, sampler, steps, eta):
        with no_grad():
            x_T = randn(int(n), *self.image_shape, device=self._device())
            x0, _ = self.reverse_chain(x_T, sampler, steps, eta, y=y)
            return _to_unit(x0)

    # -- training ------------------------------------------------------------------------------
    def loss(self, x, y=None):
        r"""The objective on a batch (module docstring): t from the timestep sampler, the
        per-image terms of :meth:`loss_terms`, weighted by the sampler's :math:`1 / (T p_t)` and
        averaged; the sampler learns from the terms."""
        self._check_images(x, "loss")
        t, weights = self.timestep_sampler.sample(x.shape[0])
        # the unconditional model ignores the loader's labels
        terms = self.loss_terms(x, t, randn_like(x), y if self.conditional else None)
        self.timestep_sampler.update(t, terms.detach().numpy())
        weights = tensor(weights, dtype=terms.dtype, device=terms.device)
        return (terms * weights).mean(), {}

    def loss_terms(self, x0, t, noise, y=None):
        r"""Each image's term (N,) of the objective at its timestep t (ints in 1..T) and noise:
        the weighted mean-squared error of the network's own target, plus ``vlb_weight``
        :math:`\cdot \frac{T}{1000}` times the bound's term with the mean's gradient stopped when
        the variance is learned; with ``weighting="vlb"``, T times the bound's term (bits/dim),
        mean and variance both trained."""
        t = self._timesteps_for(t, x0.shape[0], "loss_terms")
        a, b = self._signal_and_noise_scales(t, x0)
        x_t = a * x0 + b * noise                          # sqrt(abar) x0 + sqrt(1 - abar) eps
        output, variance_output = self.network_output(x_t, t, y)
        if self.weighting == "vlb":
            return self.timesteps * self.bound_term(x0, x_t, t, output, variance_output)
        target = prediction_target(self.prediction, x0, noise, a, b)
        squared_error = ((target - output) ** 2).mean(dim=(1, 2, 3))
        if self.weighting == "p2":
            weight = p2_weight(self.schedule.alpha_bar[t], self.p2_k, self.p2_gamma)
            squared_error = squared_error * tensor(weight, dtype=x0.dtype, device=x0.device)
        if not self.learn_variance:
            return squared_error
        vlb = self.bound_term(x0, x_t, t, output.detach(), variance_output)
        return squared_error + (self.vlb_weight * self.timesteps / 1000.0) * vlb

    def bound_term(self, x0, x_t, t, output, variance_output=None):
        r"""Each image's term of the variational bound at its t, in bits per dimension, from
        the network's raw ``output`` (unclipped):
        :math:`\mathrm{KL}(q(x_{t-1} \mid x_t, x_0) \| p_\theta(x_{t-1} \mid x_t))` for t > 1,
        the decoder's :math:`-\log p_\theta(x_0 \mid x_1)` for t = 1."""
        a, b = self._signal_and_noise_scales(t, x_t)
        predicted_x0, _ = split_prediction(self.prediction, output, x_t, a, b)
        p_mean, _ = self._posterior_between(predicted_x0, x_t, t, t - 1)
        p_var = self._reverse_variance(t, t - 1, variance_output, x_t)
        first = t == 1
        decoder = -sum_per_example(discretized_gaussian_log_likelihood(x0, p_mean, p_var))
        if self.timesteps == 1:
            term = decoder
        else:       # the images at t = 1 get a finite stand-in KL (of step 2), then the decoder
            q_mean, q_var = self._posterior_between(x0, x_t, np.where(first, 2, t),
                                                    np.where(first, 1, t - 1))
            kl = gaussian_kl(q_mean, q_var, p_mean, p_var)
            term = ops.where(tensor(first, device=x0.device), decoder, kl)
        return term * (1.0 / (int(np.prod(self.image_shape)) * math.log(2.0)))

    # -- the variational bound -----------------------------------------------------------------
    def _stratified_timesteps(self, n: int, count: int):
        """``count`` timesteps per image, one uniform in each of ``count`` near-equal strata of
        2..T, and each stratum's size (its weight): arrays (count, n) and (count,)."""
        edges = 2 + np.arange(count + 1) * (self.timesteps - 1) // count   # strata [e_k, e_{k+1})
        sizes = np.diff(edges)
        draws = np.stack([randint(start, start + size, size=(n,)).numpy()
                          for start, size in zip(edges[:-1], sizes)])
        return draws, sizes

    def variational_bound(self, x0, timesteps: int | None = None, y=None) -> VariationalBound:
        r"""The negative VLB of each image (8-bit values in [-1, 1]): :math:`L_T` and
        :math:`L_0` exactly, :math:`\sum_{t=2}^T L_{t-1}` estimated from ``timesteps`` stratified
        draws per image (all T - 1 of them when None: the full sum)."""
        self._check_images(x0, "variational_bound")
        n, T = x0.shape[0], self.timesteps
        count = T - 1 if timesteps is None else timesteps
        if T > 1 and (isinstance(count, bool) or not isinstance(count, (int, np.integer))
                      or not 1 <= count <= T - 1):
            raise ValueError(f"DDPM.variational_bound: timesteps must be an int between 1 and "
                             f"T - 1 = {T - 1}, got {timesteps!r}")
        with no_grad():
            # L_T: KL(N(sqrt(abar_T) x0, (1 - abar_T) I) || N(0, I)), no parameters
            alpha_bar_T = self.schedule.alpha_bar[T]
            prior = gaussian_kl_to_standard(
                math.sqrt(alpha_bar_T) * x0,
                self._per_image(np.full(n, math.log(1.0 - alpha_bar_T)), x0))
            # L_0 = -log p(x0 | x1), the discretized Gaussian at mu_theta(x_1, 1)
            ones = np.ones(n, dtype=np.int64)
            x1 = self.q_sample(x0, ones)
            mean, var = self.p_mean_variance(x1, ones, y=y)
            decoder = -sum_per_example(discretized_gaussian_log_likelihood(x0, mean, var))
            # sum_{t=2}^T L_{t-1} ~ sum_k |stratum k| KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t))
            diffusion = 0.0 * prior
            if T > 1:
                draws, sizes = self._stratified_timesteps(n, count)
                for t, size in zip(draws, sizes):
                    x_t = self.q_sample(x0, t)
                    q_mean, q_var = self._posterior_between(x0, x_t, t, t - 1)
                    p_mean, p_var = self.p_mean_variance(x_t, t, y=y)
                    diffusion = diffusion + float(size) * gaussian_kl(q_mean, q_var, p_mean, p_var)
            total = prior + diffusion + decoder
            dims = int(np.prod(self.image_shape))
            return VariationalBound(total=total, prior=prior, diffusion=diffusion,
                                    decoder=decoder,
                                    bits_per_dim=total * (1.0 / (dims * math.log(2.0))))

    def evaluate(self, loader, bound_timesteps: int = 4) -> dict:
        """The variational bound in bits/dim over the loader (images in [-1, 1]), its sum over t
        estimated from ``bound_timesteps`` stratified steps per image, and its three parts; and
        ``bits_per_dim_stderr``, the standard error of the mean over images (each image's own
        noise and strata drawn independently: the spread covers both)."""
        totals = {"bits_per_dim": 0.0, "prior_bits_per_dim": 0.0,
                  "diffusion_bits_per_dim": 0.0, "decoder_bits_per_dim": 0.0}
        per_image = []
        count = 0
        dims = int(np.prod(self.image_shape))
        bound_timesteps = min(bound_timesteps, max(self.timesteps - 1, 1))
        with no_grad():
            for x, y in loader:
                bound = self.variational_bound(x, bound_timesteps,
                                               y if self.conditional else None)
                for key, part in (("bits_per_dim", bound.total), ("prior_bits_per_dim",
                                  bound.prior), ("diffusion_bits_per_dim", bound.diffusion),
                                  ("decoder_bits_per_dim", bound.decoder)):
                    totals[key] += nats_to_bits_per_dim(float(part.sum().item()), dims)
                per_image.append(np.asarray(bound.bits_per_dim.numpy(), dtype=np.float64))
                count += x.shape[0]
        if count == 0:
            raise ValueError("DDPM.evaluate: the loader yielded no examples")
        per_image = np.concatenate(per_image)
        stderr = float(per_image.std(ddof=1) / math.sqrt(count)) if count > 1 else float("nan")
        return {**{key: value / count for key, value in totals.items()},
                "bits_per_dim_stderr": stderr,
                "bound_timesteps": int(bound_timesteps), "num_examples": count}

    # -- pictures ------------------------------------------------------------------------------
    def figures(self, x, y=None) -> dict:
        """``forward_process``: up to 8 test images (rows) noised to 10 evenly spaced t from 0 to
        T (columns), one noise draw per row; ``reverse_process``: 8 ancestral chains from x_T
        (rows) at the same t, from T down to the samples at 0.  The chains run on the schedule
        respaced to at most ``FIGURE_CHAIN_STEPS`` steps, which keeps the picture affordable on
        a CPU (``sample`` runs all T)."""
        self._check_images(x, "figures")
        x = x[:8]
        steps = min(self.timesteps, FIGURE_CHAIN_STEPS)
        tau = timestep_subsequence(self.timesteps, steps)
        columns = np.unique(tau[np.linspace(0, steps, 10).round().astype(np.int64)])
        noise = randn_like(x)
        with no_grad():
            forward = [self.q_sample(x, t, noise) for t in columns]
            x_T = randn(8, *self.image_shape, device=self._device())
            _, kept = self.reverse_chain(x_T, "ancestral", steps, keep=columns)
        reverse = [kept[int(t)] for t in columns[::-1]]
        return {"forward_process": (_rows_of(forward), len(columns)),
                "reverse_process": (_rows_of(reverse), len(columns))}


def _to_unit(x):
    """Images in [-1, 1] (clipped) as [0, 1]."""
    return (ops.clamp(x, -1.0, 1.0) + 1.0) * 0.5


def _rows_of(columns):
    """A list of k batches (N, C, H, W) as N rows of k images, in [0, 1]: (N * k, C, H, W)."""
    grid = ops.stack(columns, 1)
    return _to_unit(grid.reshape(grid.shape[0] * grid.shape[1], *grid.shape[2:]))


# -- the registry: ``nanogen train ddpm`` --------------------------------------------------------
# lr: after 100 steps of 64 (a 16-channel U-Net, 1,000 steps' schedule) the held-out L_simple was
# 0.280 at lr 2e-4, 0.062 at 5e-4 and 0.045 at 1e-3.  The default width costs about 6 s a step of
# 64 on a busy 2-core CPU, so the default run is short (a 10-minute budget with the sample grid
# and figures); the README states the long runs behind the results.
# the training settings and U-Net every DDPM variant registers with
DDPM_TRAINING = {"steps": 60, "batch_size": 64, "lr": 1e-3, "ema_decay": 0.999,
                 "sample_every": 1000, "num_samples": 36}
DDPM_KWARGS = {"schedule": "linear", "channels": 32, "channel_mults": (1, 2, 2),
               "num_res_blocks": 2}

register(ModelSpec(
    name="ddpm", build=DDPM, **DDPM_TRAINING, kwargs=dict(DDPM_KWARGS),
    summary="DDPM: U-Net noise predictor (ResBlocks, adaptive GroupNorm, attention at 7x7), "
            "L_simple, linear schedule T=1000; ancestral and DDIM samplers; bits/dim bound"))
register(ModelSpec(
    name="improved-ddpm", build=DDPM, **DDPM_TRAINING,
    kwargs={**DDPM_KWARGS, "schedule": "cosine", "learn_variance": True},
    summary="Improved DDPM (Nichol & Dhariwal): learned reverse variances (log-interpolated "
            "between beta_t and beta-tilde_t), hybrid loss L_simple + 0.001 L_vlb with the "
            "mean's gradient stopped, cosine schedule; fewer sampling steps by respacing"))
