r"""What every GAN shares: two players, their optimizers, and the alternating update.

A generator :math:`G_\theta` maps a latent code :math:`z \sim p(z) = \mathcal N(0, I_d)` to a
sample; a discriminator :math:`D_\phi` maps a sample to a logit :math:`\ell`, read as the
probability :math:`D = \sigma(\ell)` that the sample is real.  They play (Goodfellow et al. 2014)

.. math:: \min_\theta \max_\phi\; V(\phi, \theta) =
          \mathbb E_{x \sim p_\text{data}} \log D_\phi(x)
          + \mathbb E_{z \sim p(z)} \log\big(1 - D_\phi(G_\theta(z))\big)

by alternating stochastic gradient steps, Algorithm 1 of the paper.  Each training step:

* **k discriminator updates**, each on its own minibatch of m real examples and m fresh codes,
  ascending V -- descending :math:`-V` (:func:`~.losses.discriminator_loss`):

  .. math:: \nabla_\phi \frac1m \sum_{i=1}^m \Big[\log D_\phi(x_i)
            + \log\big(1 - D_\phi(G_\theta(z_i))\big)\Big].

  The fakes are generated under ``no_grad``: this update changes :math:`\phi` only.
* **one generator update** on m fresh codes, descending the generator's loss -- the minimax
  :math:`\frac1m \sum_i \log(1 - D_\phi(G_\theta(z_i)))` or the non-saturating
  :math:`-\frac1m \sum_i \log D_\phi(G_\theta(z_i))` (:mod:`.losses` compares their gradients):

  .. math:: \nabla_\theta \frac1m \sum_{i=1}^m \log\big(1 - D_\phi(G_\theta(z_i))\big)
            = \frac1m \sum_i -D_\phi(G_\theta(z_i))\;
              \frac{\partial \ell_\phi}{\partial x}\Big|_{G_\theta(z_i)}
              \frac{\partial G_\theta(z_i)}{\partial \theta}.

  The gradient flows *through* D into G, but D's parameters are frozen meanwhile
  (``requires_grad = False``), so the backward pass skips their gradients and this update
  changes :math:`\theta` only.

The training loop hands :meth:`AdversarialModel.training_step` the k minibatches joined along the
first axis (``batches_per_step = k``); the model splits them again.  Both optimizers are Adam with
Radford et al.'s :math:`\beta_1 = 0.5` (momentum that forgets faster, for a moving target).

Logged per step: ``loss_d`` and ``d_real`` / ``d_fake`` -- the mean of :math:`D(x)` and of
:math:`D(G(z))` -- averaged over the k discriminator updates, and ``loss_g``.  At the game's
equilibrium :math:`p_g = p_\text{data}`, :math:`D \equiv \tfrac12` and ``loss_d`` is
:math:`\log 4 \approx 1.386`.

Samples: images from a generator ending in tanh are mapped from [-1, 1] back to [0, 1]; points
(a toy 2-D set) are returned as the generator makes them.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ... import functional as F
from ...autograd import no_grad
from ...creation import randn, tensor
from ...optim import Adam
from ...utils.checks import positive_int
from ..base import GenerativeModel
from ..latent import interpolation_grid
from .losses import adversarial_loss

__all__ = ["AdversarialModel", "frozen"]


@contextmanager
def frozen(module):
    """Inside the block, ``module``'s parameters do not require gradients (then as before):
    a backward pass goes through the module to its inputs without computing its own gradients."""
    parameters = list(module.parameters())
    before = [p.requires_grad for p in parameters]
    for p in parameters:
        p.requires_grad = False
    try:
        yield module
    finally:
        for p, flag in zip(parameters, before):
            p.requires_grad = flag


class AdversarialModel(GenerativeModel):
    """A GAN: ``generator`` maps (N, latent_dim) codes to samples of ``sample_shape``;
    ``discriminator`` maps samples to logits, (N,) or (N, 1).

    ``sample_shape`` is (C, H, W) for images (the generator ends in tanh; data in [-1, 1]) or
    (D,) for points of a toy set (data as is).  ``loss`` names the game
    (:data:`.losses.ADVERSARIAL_LOSSES`: ``"non-saturating"`` or ``"minimax"``); ``k``
    discriminator updates per generator update.
    """

    judged_by_samples = True
    inference_modules = ("generator",)    # sample/evaluate/figures never ask the discriminator
    betas = (0.5, 0.999)          # Adam's (beta1, beta2), after Radford et al. 2016
    interpolation_rows = 8        # figures(): pairs of endpoints ...
    interpolation_steps = 10      # ... and codes from one to the other, both included

    def __init__(self, generator, discriminator, *, latent_dim: int, sample_shape,
                 loss: str = "non-saturating", k: int = 1):
        super().__init__()
        name = type(self).__name__
        k = positive_int(k, f"{name}: k (discriminator updates per generator update)")
        latent_dim = positive_int(latent_dim, f"{name}: latent_dim")
        self.sample_shape = tuple(int(s) for s in sample_shape)
        if len(self.sample_shape) not in (1, 3):
            raise ValueError(f"{type(self).__name__}: sample_shape must be (C, H, W) for images "
                             f"or (D,) for points, got {sample_shape!r}")
        self.adversarial = adversarial_loss(loss)
        self.loss_name = loss
        self.batches_per_step = k
        self.latent_dim = latent_dim
        self.generator = generator
        self.discriminator = discriminator
        self.data_transform = "symmetric" if self.makes_images else "unit"
        if not self.makes_images:
            self.eval_num_samples = 5000          # for the mode metric (evaluate)

    @property
    def makes_images(self) -> bool:
        return len(self.sample_shape) == 3

    def _device(self):
        return next(iter(self.parameters())).device

    def _check_samples(self, x, where: str):
        if tuple(x.shape[1:]) != self.sample_shape:
            kind = "images" if self.makes_images else "points"
            raise ValueError(f"{type(self).__name__}.{where}: expected {kind} of shape (N, "
                             f"{', '.join(map(str, self.sample_shape))}), got {tuple(x.shape)}")

    # -- the two players ------------------------------------------------------------------------
    def sample_latents(self, n: int):
        """n codes z ~ N(0, I), (n, latent_dim), from nanogen's global generator."""
        return randn(int(n), self.latent_dim, device=self._device())

    def generate(self, z):
        """G(z): (N, *sample_shape) -- images in [-1, 1], or points."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"{type(self).__name__}.generate: expected codes of shape (N, "
                             f"{self.latent_dim}), got {tuple(z.shape)}")
        return self.generator(z)

    def discriminate(self, x):
        """D's logits l(x), (N,): the log-odds that each sample is real."""
        self._check_samples(x, "discriminate")
        return self.discriminator(x).reshape(x.shape[0])

    def configure_optimizers(self, lr: float) -> dict:
        """Adam for each player, both at ``lr`` with betas (0.5, 0.999)."""
        return {"discriminator": Adam(self.discriminator.parameters(), lr=lr, betas=self.betas),
                "generator": Adam(self.generator.parameters(), lr=lr, betas=self.betas)}

    # -- training -------------------------------------------------------------------------------
    def training_step(self, batch, optimizers) -> dict:
        """k discriminator updates, one per minibatch of ``batch`` (k minibatches joined along
        the first axis), then one generator update; see the module docstring."""
        x, _ = batch
        self._check_samples(x, "training_step")
        for name in ("discriminator", "generator"):
            if name not in optimizers:
                raise KeyError(f"{type(self).__name__}.training_step: no {name!r} optimizer in "
                               f"{sorted(optimizers)} (use configure_optimizers)")
        k = self.batches_per_step
        if x.shape[0] % k:
            raise ValueError(f"{type(self).__name__}.training_step: a batch of {x.shape[0]} "
                             f"does not split into k = {k} equal minibatches")
        m = x.shape[0] // k
        d_logs = [self._discriminator_update(x[i * m:(i + 1) * m], optimizers["discriminator"])
                  for i in range(k)]
        loss_g = self._generator_update(m, optimizers["generator"])
        loss_d, d_real, d_fake = np.mean(d_logs, axis=0)
        return {"loss_d": float(loss_d), "loss_g": loss_g,
                "d_real": float(d_real), "d_fake": float(d_fake)}

    def _discriminator_update(self, real, optimizer):
        """One step of D on -V (real minibatch, fakes from fresh codes); returns the loss and
        the mean D(x), D(G(z)) before the step."""
        with no_grad():                                        # G is a constant here
            fake = self.generate(self.sample_latents(real.shape[0]))
        real_logits, fake_logits = self.discriminate(real), self.discriminate(fake)
        loss = self.adversarial.discriminator(real_logits, fake_logits)   # -V
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with no_grad():
            return (float(loss.item()), float(F.sigmoid(real_logits).mean().item()),
                    float(F.sigmoid(fake_logits).mean().item()))

    def _generator_update(self, m: int, optimizer) -> float:
        """One step of G on its loss, through a frozen D; returns the loss."""
        with frozen(self.discriminator):
            fake_logits = self.discriminate(self.generate(self.sample_latents(m)))
            loss = self.adversarial.generator(fake_logits)
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
        return float(loss.item())

    # -- using a trained model ------------------------------------------------------------------
    def _to_data_range(self, out):
        """Generator output as data: tanh images from [-1, 1] to [0, 1]; points unchanged."""
        return F.clamp((out + 1.0) * 0.5, 0.0, 1.0) if self.makes_images else out

    def sample(self, n: int, y=None):
        """n samples of G(z), z ~ N(0, I): images (n, C, H, W) in [0, 1], or points (n, D)."""
        n = positive_int(n, f"{type(self).__name__}.sample: n")
        with no_grad():
            return self._to_data_range(self.generate(self.sample_latents(n)))

    def interpolations(self, start, end, steps: int, method: str = "linear"):
        """The codes from each row of ``start`` to the same row of ``end`` (R, latent_dim),
        ``steps`` of them (:func:`~nanogen.models.latent.interpolation_grid`), decoded:
        (R * steps, ...) in the data's range, one row of the grid per pair."""
        codes = interpolation_grid(start, end, steps, method)
        with no_grad():
            z = tensor(codes.astype(np.float32), device=self._device())
            return self._to_data_range(self.generate(z))

    def figures(self, x=None, y=None) -> dict:
        """For images: ``interpolation_linear`` and ``interpolation_slerp``, the same 8 pairs of
        random endpoints joined by straight lines and by great circles, 10 codes a row.  None
        for points (the loop's scatter of samples shows them)."""
        if not self.makes_images:
            return {}
        rows, steps = self.interpolation_rows, self.interpolation_steps
        start, end = self.sample_latents(rows), self.sample_latents(rows)
        return {f"interpolation_{method}": (self.interpolations(start, end, steps, method), steps)
                for method in ("linear", "slerp")}

    def evaluate(self, loader) -> dict:
        """For points: :func:`nanogen.metrics.modes.mode_coverage` of ``eval_num_samples``
        samples, against the mixture estimated from the loader's labelled points (each label a
        mode: its mean the centre, the pooled spread the sigma).  Empty for a set with a single
        label (the swiss roll has no modes to count) and for images, which ``nanogen eval``
        judges by FID / KID / IS of their samples."""
        if self.makes_images:
            return {}
        from ...metrics.modes import mixture_from_labelled_points, mode_coverage
        batches = [(x.numpy(), y.numpy()) for x, y in loader]
        if not batches:
            raise ValueError(f"{type(self).__name__}.evaluate: the loader yielded no examples")
        points = np.concatenate([b[0] for b in batches])
        labels = np.concatenate([b[1] for b in batches])
        if points.ndim != 2 or points.shape[1:] != self.sample_shape:
            raise ValueError(f"{type(self).__name__}.evaluate: expected points of shape (N, "
                             f"{self.sample_shape[0]}), got {points.shape}")
        if len(np.unique(labels)) < 2:
            return {}
        centres, std = mixture_from_labelled_points(points, labels)
        return mode_coverage(self.sample(self.eval_num_samples), centres, std)

