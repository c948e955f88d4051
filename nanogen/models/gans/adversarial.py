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

The same step plays every game of :mod:`.losses` (least squares, Wasserstein, hinge) and takes
the constraints the later papers put on the discriminator, each a constructor option:
``penalty`` (a gradient penalty of :mod:`.penalties`, WGAN-GP or DRAGAN, weighted by
``penalty_weight``), ``weight_clip`` (WGAN: every discriminator weight clamped to
:math:`[-c, c]` after each of its updates), ``spectral_norm`` (SN-GAN: every weight of the
discriminator divided by its largest singular value, :mod:`nanogen.nn.spectral_norm`), and the
optimizer (``"adam"`` with ``betas``, or ``"rmsprop"`` as WGAN).  For a game on plain scores the
log shows ``score_real`` / ``score_fake``, the mean outputs, instead of probabilities.

Training tricks
---------------
The tricks of ganhacks and Salimans et al. 2016 are options too, applied by this step through the
pieces of :mod:`.tricks` (the table, the equations and the sources are there): ``real_label``
(one-sided label smoothing), ``flip_labels`` (noisy labels), ``instance_noise`` with
``instance_noise_steps`` (decayed noise on D's inputs), ``generator_noise`` (noise after every
hidden layer of G), ``replay`` with ``replay_size`` (experience replay of old fakes),
``mixed_batches`` (one real + fake batch through D instead of the separate batches ganhacks #4
recommends, which the step uses by default), ``feature_matching``, ``minibatch_kernels`` with
``minibatch_kernel_dim`` (minibatch discrimination); and in :meth:`configure_optimizers`,
``d_optimizer`` (ganhacks #9: ``"sgd"`` for D, G keeping ``optimizer``) and ``d_lr_ratio``
(TTUR: D's learning rate a multiple of G's).  n_critic, "train the discriminator more"
(ganhacks #14), is ``k``.  A trick that has no meaning for the model -- label smoothing for a
game on scores, experience replay for a conditional generator, feature matching for a model
with its own generator loss, mixed batches for a discriminator without batch statistics --
raises a ValueError when the model is built.

Samples: images from a generator ending in tanh are mapped from [-1, 1] back to [0, 1]; points
(a toy 2-D set) are returned as the generator makes them.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ... import functional as F
from ...autograd import no_grad
from ...creation import randn, tensor
from ... import nn
from ...optim import SGD, Adam, RMSprop
from ...utils.checks import positive_int
from ..base import GenerativeModel
from ..latent import interpolation_grid
from .losses import adversarial_loss
from .penalties import PENALTIES, gradient_norm_penalty
from .tricks import (MinibatchDiscrimination, TrainingTricks, arithmetic_codes,
                     class_mean_codes, discriminator_body, feature_matching_loss)

OPTIMIZERS = ("adam", "rmsprop")
D_OPTIMIZERS = OPTIMIZERS + ("sgd",)      # ganhacks #9: SGD for the discriminator

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
    (:data:`.losses.ADVERSARIAL_LOSSES`); ``k`` discriminator updates per generator update.
    At most one constraint on the discriminator: ``penalty`` (``"wgan-gp"`` or ``"dragan"``,
    times ``penalty_weight``), ``weight_clip`` c, or ``spectral_norm``.  ``optimizer``
    ``"adam"`` (with ``betas``, default (0.5, 0.999)) or ``"rmsprop"``, for both players
    unless ``d_optimizer`` names D's (the same two or, ganhacks #9, ``"sgd"``); ``d_lr_ratio``: D's
    learning rate as a multiple of G's (TTUR, Heusel et al. 2017; e.g. 4).  ``k`` is also the
    n_critic trick (ganhacks #14).  ``**tricks``: the training tricks of
    :class:`.tricks.TrainingTricks` (``real_label``, ``flip_labels``, ``instance_noise``,
    ``instance_noise_steps``, ``generator_noise``, ``replay``, ``replay_size``,
    ``mixed_batches``, ``feature_matching``, ``minibatch_kernels``, ``minibatch_kernel_dim``).
    """

    judged_by_samples = True
    inference_modules = ("generator",)    # sample/evaluate/figures never ask the discriminator
    betas = (0.5, 0.999)          # Adam's (beta1, beta2), after Radford et al. 2016
    interpolation_rows = 8        # figures(): pairs of endpoints ...
    interpolation_steps = 10      # ... and codes from one to the other, both included

    def __init__(self, generator, discriminator, *, latent_dim: int, sample_shape,
                 loss: str = "non-saturating", k: int = 1, penalty: str | None = None,
                 penalty_weight: float = 10.0, weight_clip: float | None = None,
                 spectral_norm: bool = False, optimizer: str = "adam", betas=None,
                 d_optimizer: str | None = None, d_lr_ratio: float = 1.0, **tricks):
        super().__init__()
        name = type(self).__name__
        k = positive_int(k, f"{name}: k (discriminator updates per generator update)")
        latent_dim = positive_int(latent_dim, f"{name}: latent_dim")
        self.sample_shape = tuple(int(s) for s in sample_shape)
        if len(self.sample_shape) not in (1, 3):
            raise ValueError(f"{type(self).__name__}: sample_shape must be (C, H, W) for images "
                             f"or (D,) for points, got {sample_shape!r}")
        self.adversarial = adversarial_loss(loss)
        self.loss_name = loss if isinstance(loss, str) else (loss.name or "custom")
        self.batches_per_step = k
        self.latent_dim = latent_dim
        self.generator = generator
        self.discriminator = discriminator
        self.tricks = TrainingTricks(name, **tricks)
        self._configure_tricks()
        self._configure_discriminator_constraints(penalty, penalty_weight, weight_clip,
                                                  spectral_norm)
        for what, choice, choices in (("optimizer", optimizer, OPTIMIZERS),
                                      ("d_optimizer", d_optimizer, D_OPTIMIZERS)):
            if choice not in choices and (what == "optimizer" or choice is not None):
                raise ValueError(f"{name}: {what} must be one of {', '.join(choices)}, got "
                                 f"{choice!r}")
        d_optimizer = optimizer if d_optimizer is None else d_optimizer
        if betas is not None and "adam" not in (optimizer, d_optimizer):
            raise ValueError(f"{name}: betas are Adam's; optimizer {optimizer!r} has none")
        if isinstance(d_lr_ratio, bool) or not isinstance(d_lr_ratio, (int, float)) \
                or not 0 < d_lr_ratio < float("inf"):
            raise ValueError(f"{name}: d_lr_ratio (D's learning rate over G's) must be a "
                             f"positive number, got {d_lr_ratio!r}")
        self.optimizer_name = optimizer
        self.d_optimizer_name = d_optimizer
        self.d_lr_ratio = float(d_lr_ratio)
        self.betas = type(self).betas if betas is None else tuple(float(b) for b in betas)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {betas!r}")
        self.data_transform = "symmetric" if self.makes_images else "unit"
        if not self.makes_images:
            self.eval_num_samples = 5000          # for the mode metric (evaluate)

    def _configure_discriminator_constraints(self, penalty, penalty_weight, weight_clip,
                                             spectral_norm):
        """Check and keep the penalty / clipping / spectral-norm options; apply spectral norm
        to every weight of the discriminator's linear and (transposed) convolution layers."""
        name = type(self).__name__
        if penalty is not None and penalty not in PENALTIES:
            raise ValueError(f"{name}: unknown penalty {penalty!r}; choose one of "
                             f"{', '.join(PENALTIES)} or None")
        if not (isinstance(penalty_weight, (int, float)) and penalty_weight > 0):
            raise ValueError(f"{name}: penalty_weight must be a positive number, got "
                             f"{penalty_weight!r}")
        if weight_clip is not None and not (isinstance(weight_clip, (int, float))
                                            and weight_clip > 0):
            raise ValueError(f"{name}: weight_clip must be a positive number or None, got "
                             f"{weight_clip!r}")
        constraints = [c for c, on in (("penalty", penalty is not None),
                                       ("weight_clip", weight_clip is not None),
                                       ("spectral_norm", bool(spectral_norm))) if on]
        if len(constraints) > 1:
            raise ValueError(f"{name}: choose one way to constrain the discriminator, got "
                             f"{' and '.join(constraints)}")
        if penalty is not None:
            norms = [type(m).__name__ for m in self.discriminator.modules()
                     if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, MinibatchDiscrimination))]
            if norms:
                raise ValueError(f"{name}: a gradient penalty is per example, and the "
                                 f"discriminator's {norms[0]} mixes the examples of a batch; "
                                 f"build it without batch norm (DCGAN: critic_norm='layer')"
                                 + (" and without minibatch discrimination"
                                    if norms[0] == "MinibatchDiscrimination" else ""))
        self.penalty_name, self.penalty_weight = penalty, float(penalty_weight)
        self.weight_clip = None if weight_clip is None else float(weight_clip)
        self.spectral_norm = bool(spectral_norm)
        if self.spectral_norm:
            for module in self.discriminator.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                    nn.utils.spectral_norm(module)

    def _configure_tricks(self):
        """Add the tricks' layers and buffers (:meth:`.tricks.TrainingTricks.attach`), and
        refuse those that would do nothing, or something else than they say, for this model."""
        name, tricks, cls = type(self).__name__, self.tricks, type(self)
        if tricks.moves_labels and not self.adversarial.log_odds:
            option = "real_label" if tricks.real_label is not None else "flip_labels"
            raise ValueError(f"{name}: {option} moves D's probability targets, and the "
                             f"{self.loss_name!r} game reads D's outputs as scores, not "
                             f"log-odds; use it with the minimax or non-saturating game")
        if tricks.replay_share > 0 and self._conditions_generator:
            raise ValueError(f"{name}: experience replay shows D old fakes without the "
                             f"conditions they were made from; {name} conditions its "
                             f"generator (sample_condition)")
        if tricks.feature_matching:
            if cls.generator_loss is not AdversarialModel.generator_loss:
                raise ValueError(f"{name}: feature_matching replaces the generator's loss, "
                                 f"and {name}.generator_loss has terms of its own it would drop")
            if cls.discriminate is not AdversarialModel.discriminate and \
                    cls.discriminator_features is AdversarialModel.discriminator_features:
                raise ValueError(f"{name}: feature_matching needs the features of D's own "
                                 f"input; {name}.discriminate changes it and defines no "
                                 f"discriminator_features")
        tricks.attach(self.generator, self.discriminator, self.sample_shape)
        if tricks.mixed_batches and not any(isinstance(m, (
                nn.BatchNorm1d, nn.BatchNorm2d, MinibatchDiscrimination))
                for m in self.discriminator.modules()):
            raise ValueError(f"{name}: mixed_batches changes only statistics over D's batch, "
                             f"and this discriminator has no batch norm or minibatch "
                             f"discrimination: it would do nothing")

    # does G's output depend on a condition besides z?  None: yes when the model overrides
    # sample_condition; a model whose condition only carries bookkeeping (BiGAN) says False
    conditions_generator: bool | None = None

    @property
    def _conditions_generator(self) -> bool:
        """The model conditions G (by default: it overrides :meth:`sample_condition`)."""
        if self.conditions_generator is not None:
            return self.conditions_generator
        return type(self).sample_condition is not AdversarialModel.sample_condition

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

    def generate(self, z, condition=None):
        """G(z): (N, *sample_shape) -- images in [-1, 1], or points.  ``condition`` (from
        :meth:`sample_condition`) is None for an unconditional GAN."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"{type(self).__name__}.generate: expected codes of shape (N, "
                             f"{self.latent_dim}), got {tuple(z.shape)}")
        return self.generator(z)

    def discriminate(self, x, condition=None):
        """D's logits l(x), (N,): the log-odds that each sample is real (or its scores, for a
        game on scores).  ``condition`` (labels, for a conditional D) is None here."""
        self._check_samples(x, "discriminate")
        return self.discriminator(x).reshape(x.shape[0])

    def discriminator_features(self, x, condition=None):
        """f(x): the input of D's last linear layer, (N, A) -- what feature matching compares.
        A model whose :meth:`discriminate` feeds D something else (a condition) overrides this
        too."""
        self._check_samples(x, "discriminator_features")
        return discriminator_body(self.discriminator, type(self).__name__)(x)

    def configure_optimizers(self, lr: float) -> dict:
        """One optimizer per player: Adam with ``betas`` ((0.5, 0.999) unless the model says
        otherwise), RMSprop (WGAN: momentum-free, for a critic whose gradients change direction
        as the generator moves) or plain SGD -- ``optimizer`` for G, ``d_optimizer`` (the same
        unless given) for D.  G's learning rate is ``lr``, D's ``d_lr_ratio * lr`` (TTUR)."""
        def make(kind, parameters, lr):
            if kind == "rmsprop":
                return RMSprop(parameters, lr=lr)
            if kind == "sgd":
                return SGD(parameters, lr=lr)
            return Adam(parameters, lr=lr, betas=self.betas)
        d_lr = lr if self.d_lr_ratio == 1.0 else self.d_lr_ratio * lr        # eq. (7), TTUR
        return {"discriminator": make(self.d_optimizer_name, self.discriminator.parameters(),
                                      d_lr),
                "generator": make(self.optimizer_name, self.generator.parameters(), lr)}

    # -- training -------------------------------------------------------------------------------
    def training_step(self, batch, optimizers) -> dict:
        """k discriminator updates, one per minibatch of ``batch`` (k minibatches joined along
        the first axis), then one generator update; see the module docstring."""
        x, y = batch
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
        d_logs = [self._discriminator_update(x[i * m:(i + 1) * m],
                                             None if y is None else y[i * m:(i + 1) * m],
                                             optimizers["discriminator"])
                  for i in range(k)]
        g_logs = self._generator_update(m, None if y is None else y[:m], optimizers["generator"],
                                        real=x[:m])
        self.tricks.advance()
        logs = {key: float(np.mean([log[key] for log in d_logs])) for key in d_logs[0]}
        return {"loss_d": logs.pop("loss_d"), "loss_g": g_logs.pop("loss_g"), **logs, **g_logs}

    def _discriminator_update(self, real, labels, optimizer) -> dict:
        """One step of D on :meth:`discriminator_loss` (the real minibatch and its labels, fakes
        from fresh codes -- some from the replay buffer, with experience replay -- both with
        instance noise if on), then the weight clipping if any; returns the logs of the loss."""
        m = real.shape[0]
        with no_grad():                                        # G is a constant here
            condition = self.sample_condition(m, labels)
            fake = self.tricks.replayed(self.generate(self.sample_latents(m), condition))
        real, fake = self.tricks.noisy(real), self.tricks.noisy(fake)
        self.tricks.labels_applied = False
        loss, logs = self.discriminator_loss(real, labels, fake, condition)
        if self.tricks.moves_labels and not self.tricks.labels_applied:
            raise ValueError(f"{type(self).__name__}: real_label / flip_labels act in "
                             f"AdversarialModel.discriminator_loss, which "
                             f"{type(self).__name__}.discriminator_loss does not call: they "
                             f"would do nothing")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if self.weight_clip is not None:
            self._clip_discriminator_weights()
        return {"loss_d": float(loss.item()), **logs}

    def _generator_update(self, m: int, labels, optimizer, real=None) -> dict:
        """One step of G on :meth:`generator_loss` (or, with feature matching, on
        :meth:`feature_matching_loss` against the ``real`` minibatch), through a frozen D;
        returns its logs."""
        condition = self.sample_condition(m, labels)
        with frozen(self.discriminator):
            fake = self.tricks.noisy(self.generate(self.sample_latents(m), condition))
            if self.tricks.feature_matching:
                loss, logs = self.feature_matching_loss(self.tricks.noisy(real), labels, fake,
                                                        condition)
            else:
                loss, logs = self.generator_loss(fake, condition)
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
        return {"loss_g": float(loss.item()), **logs}

    # -- the pieces a variant replaces ----------------------------------------------------------
    # A conditional or auxiliary-head GAN (CGAN, ACGAN, InfoGAN, EBGAN, ...) overrides these and
    # keeps the alternating step above.
    def sample_condition(self, n: int, labels=None):
        """What the generator is conditioned on for ``n`` fakes, given the real minibatch's
        ``labels`` (None for an unlabelled dataset): None for an unconditional GAN."""
        return None

    def discriminator_loss(self, real, labels, fake, condition):
        """D's loss on a real minibatch and a batch of fakes (made from ``condition``), and
        its logs: the game's discriminator loss, plus ``penalty_weight`` times the gradient
        penalty if any; the mean outputs D(x), D(G(z)) (probabilities) or the mean scores."""
        real_logits, fake_logits = self._discriminate_real_and_fake(real, labels, fake,
                                                                     condition)
        # e.g. -V; with label smoothing / flipping, cross-entropy on the targets (tricks eq. 1)
        loss = self.tricks.discriminator_loss(self.adversarial, real_logits, fake_logits)
        logs = {}
        if self.penalty_name is not None:      # (a conditional D sees the real labels here)
            points = PENALTIES[self.penalty_name](real, fake)
            penalty = gradient_norm_penalty(lambda x: self.discriminate(x, labels), points)
            loss = loss + self.penalty_weight * penalty
            logs["penalty"] = float(penalty.item())
        with no_grad():
            if self.adversarial.log_odds:
                logs["d_real"] = float(F.sigmoid(real_logits).mean().item())
                logs["d_fake"] = float(F.sigmoid(fake_logits).mean().item())
            else:
                logs["score_real"] = float(real_logits.mean().item())
                logs["score_fake"] = float(fake_logits.mean().item())
        return loss, logs

    def generator_loss(self, fake, condition):
        """G's loss on its fakes (made from ``condition``), and extra logs: the game's."""
        return self.adversarial.generator(self.discriminate(fake, condition)), {}

    def feature_matching_loss(self, real, labels, fake, condition):
        """Feature matching (Salimans et al. 2016, :mod:`.tricks` eq. 5): the squared distance
        between the mean D features of the real minibatch (a constant) and of the fakes."""
        with no_grad():
            target = self.discriminator_features(real, labels)
        return feature_matching_loss(target, self.discriminator_features(fake, condition)), {}

    def _discriminate_real_and_fake(self, real, labels, fake, condition):
        """D's outputs on the real and on the fake minibatch: two batches, each all real or all
        fake (ganhacks #4: batch norm's statistics never mix them), or with ``mixed_batches``
        one batch of both, split again."""
        if not self.tricks.mixed_batches:
            return self.discriminate(real, labels), self.discriminate(fake, condition)
        if (labels is None) != (condition is None):
            raise ValueError(f"{type(self).__name__}: mixed_batches joins the real labels and "
                             f"the fakes' condition, and only one of them is None")
        joined = None if labels is None else F.cat([labels, condition])
        logits = self.discriminate(F.cat([real, fake]), joined)
        return logits[:real.shape[0]], logits[real.shape[0]:]

    def _clip_discriminator_weights(self):
        """WGAN's constraint: every parameter of D clamped to [-c, c] in place."""
        c = self.weight_clip
        for p in self.discriminator.parameters():
            xp = p._xp()
            xp.clip(p.data, -c, c, out=p.data)

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
        random endpoints joined by straight lines and by great circles, 10 codes a row; and for
        an unconditional generator of images of at least 28x28 (what the shipped classifier
        reads), ``latent_arithmetic`` (:meth:`latent_arithmetic`).  None for points (the loop's
        scatter of samples shows them)."""
        if not self.makes_images:
            return {}
        rows, steps = self.interpolation_rows, self.interpolation_steps
        start, end = self.sample_latents(rows), self.sample_latents(rows)
        figures = {f"interpolation_{method}": (self.interpolations(start, end, steps, method),
                                               steps)
                   for method in ("linear", "slerp")}
        c, h, w = self.sample_shape
        if not (self.conditional or self._conditions_generator) and c in (1, 3) \
                and min(h, w) >= 28:
            arithmetic = self.latent_arithmetic()
            if arithmetic is not None:
                figures["latent_arithmetic"] = arithmetic
        return figures

    # latent_arithmetic(): codes sampled, classified, averaged per class; rows of the figure
    arithmetic_codes_sampled = 1000
    arithmetic_rows = 6

    def latent_arithmetic(self, n: int | None = None, rows: int | None = None):
        """Latent vector arithmetic with class means of z (Radford et al. 2016, sec. 6.3;
        :mod:`.tricks` eq. 8): ``n`` codes (default 1,000) are decoded and classified by the
        shipped classifier, each class with at least 3 confident samples gets the mean of their
        codes, and each of ``rows`` rows (default 6) shows, for classes (a, b, c) next to each
        other in order, G(mean_a), G(mean_b), G(mean_c), G(mean_a - mean_b + mean_c) and four
        variations of that code (uniform noise of ±0.25), every code scaled to norm sqrt(d)
        where N(0, I) puts its codes.  ``(images, 8)``, or None when fewer than three classes
        have a mean."""
        from ...metrics.features import class_probabilities
        n = positive_int(self.arithmetic_codes_sampled if n is None else n,
                         f"{type(self).__name__}.latent_arithmetic: n")
        rows = positive_int(self.arithmetic_rows if rows is None else rows,
                            f"{type(self).__name__}.latent_arithmetic: rows")
        with no_grad():
            z = self.sample_latents(n)
            images = F.cat([self._to_data_range(self.generate(z[i:i + 500]))
                            for i in range(0, n, 500)])
        means = class_mean_codes(z.numpy(), class_probabilities(
            images.numpy(), what=f"{type(self).__name__}'s samples"))
        classes = sorted(means)
        if len(classes) < 3:
            return None
        triplets = [tuple(classes[(i + j) % len(classes)] for j in range(3))
                    for i in range(min(rows, len(classes)))]
        codes = arithmetic_codes(means, triplets, rng=np.random.default_rng(0),
                                 radius=float(np.sqrt(self.latent_dim)))   # onto the shell
        with no_grad():
            return self._to_data_range(self.generate(tensor(codes, device=self._device()))), 8

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

