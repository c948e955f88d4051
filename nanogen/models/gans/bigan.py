r"""BiGAN / ALI (Donahue, Krähenbühl & Darrell 2017; Dumoulin et al. 2017): a GAN that also learns
the inverse map, an encoder :math:`E` from data to codes, by adversarial play on *joint* pairs.

Beside the generator :math:`G: z \mapsto x` an encoder :math:`E: x \mapsto z` is trained, and the
discriminator :math:`D(x, z)` (a logit :math:`\ell(x, z)`, :math:`D = \sigma(\ell)`) sees pairs:
an image with its code, :math:`(x, E(x))`, :math:`x \sim p_\text{data}`, labelled real, and a
code with its image, :math:`(G(z), z)`, :math:`z \sim p(z) = \mathcal N(0, I_d)`, labelled
fake.  The value (BiGAN eq. 2, ALI eq. 1) is

.. math:: V(D, E, G) = \mathbb E_{x \sim p_\text{data}} \log D(x, E(x))
          + \mathbb E_{z \sim p(z)} \log\big(1 - D(G(z), z)\big),
          \qquad \min_{G, E} \max_D V.                                                  \tag{1}

For fixed E and G the best discriminator is :math:`D^* = p_{EX} / (p_{EX} + p_{GZ})`, the
density ratio of the two joint distributions, and then :math:`V = 2\,\mathrm{JSD}(p_{EX} \|
p_{GZ}) - \log 4`: the joints match only where :math:`E = G^{-1}` (BiGAN Theorems 1 and 2), so
a trained E inverts G, and :math:`G(E(x)) \approx x`.

The updates are the shared adversarial step's (:mod:`.adversarial`: k discriminator updates,
then one update of the second player), with E beside G in the second player:

* D descends :math:`-V` (:func:`~.losses.discriminator_loss` on the two kinds of pair), E and G
  constants,

  .. math:: L_D = -\frac1m \sum_i \log \sigma\big(\ell(x_i, E(x_i))\big)
            - \frac1m \sum_i \log \big(1 - \sigma(\ell(G(z_i), z_i))\big);               \tag{2}

* G and E descend, through a frozen D, the loss with the labels *flipped* (ALI's Algorithm 1,
  the non-saturating form that BiGAN also trains with): G wants its pairs called real and E wants
  its pairs called fake,

  .. math:: L_{GE} = -\frac1m \sum_i \log \sigma\big(\ell(G(z_i), z_i)\big)
            - \frac1m \sum_i \log \big(1 - \sigma(\ell(x_i, E(x_i)))\big)
            = g\big(\ell(G(z), z)\big) + g\big(-\ell(x, E(x))\big),                      \tag{3}

  with :math:`g` the game's generator loss (here :math:`g(\ell) = -\frac1m\sum \log
  \sigma(\ell)`) and :math:`1 - \sigma(\ell) = \sigma(-\ell)`: E plays the generator's side
  on negated logits.  ``loss="minimax"`` gives :math:`L_{GE} = V` itself (:math:`g(\ell) =
  \frac1m \sum \log(1 - \sigma(\ell))`, :math:`g(-\ell) = \frac1m \sum \log \sigma(\ell)`),
  and the Wasserstein and hinge games the score difference :math:`\frac1m \sum_i
  \big(s(x_i, E(x_i)) - s(G(z_i), z_i)\big)` (BigBiGAN's encoder-generator loss).  The least
  squares games have no such symmetry (their targets are not mirror images) and are refused.

A trained model gives three things a plain GAN does not: the **codes** :math:`E(x)`
(:meth:`BiGAN.codes`, which ``nanogen eval`` judges with the linear probe), the
**reconstructions**

.. math:: \hat x = G(E(x)),                                                            \tag{4}

(the ``reconstructions`` figure and ``recon_mse``), and samples and latent interpolations as
any GAN.

Networks.  Images: G is DCGAN's generator; E is DCGAN's discriminator with d outputs instead
of one logit (stride-2 convolutions, batch norm, LeakyReLU(0.2), then a linear map of the last
feature map to the code); D runs the image through DCGAN's discriminator body (all but its
last linear layer) and the code through two LeakyReLU layers of ``joint_hidden`` units, and
joins the two feature vectors in an MLP with one hidden layer (dropout ``dropout``) to the
logit, the shape of BiGAN's and ALI's joint discriminators::

    D:  x -DCGAN D body-> (C_L H_L W_L)  ⎫
        z -Linear-LReLU-Linear-LReLU-> h  ⎭ -concat-Linear-LReLU-Dropout-Linear-> logit

Points (a 2-D toy set): G, E and D are MLPs (:func:`.gan.mlp`); D sees the concatenation
:math:`[x, z]`.

How the joint pairs ride on the shared step: :meth:`BiGAN.sample_condition` hands each update
a :class:`JointCondition`, which :meth:`BiGAN.generate` fills with the codes z of the fakes,
so that :meth:`BiGAN.discriminate` pairs every fake with its own z; a real sample (any other
condition, e.g. None or the real batch's labels, which BiGAN does not use) is paired with its
code E(x).  The shared step hands the second player's update no real data, which E's half of
eq. (3) needs: :meth:`BiGAN.training_step` keeps the first real minibatch of the step in the
condition for it (with k = 1, the minibatch D just saw, as in ALI's Algorithm 1) and otherwise
runs the shared step unchanged.  The second player's optimizer covers G and E.

Defaults (images): d = 50 and Adam(2e-4, β = (0.5, 0.999)), as BiGAN's MNIST model; DCGAN's
channels (64, 128); ``joint_hidden`` 512 and dropout 0.2 in D's joint layers (ALI puts dropout
0.2 in every discriminator layer).

Deviations from the papers: z ~ N(0, I) as in ALI (BiGAN's MNIST model draws z uniformly in
[-1, 1]^50); the encoder is deterministic as BiGAN's (ALI's samples z from a Gaussian
:math:`q(z \mid x)` with the reparameterisation trick); DCGAN's convolutional networks instead
of BiGAN's MNIST MLPs; no weight decay; a gradient penalty (WGAN-GP, DRAGAN) is refused, since
the papers define it on samples, not on joint pairs.
"""
from __future__ import annotations

import numpy as np

from ... import functional as F
from ... import nn
from ...autograd import no_grad
from ...utils.checks import positive_int
from ..base import check_channels, check_halvings
from ..registry import ModelSpec, register
from .adversarial import AdversarialModel, frozen
from .dcgan import dcgan_discriminator, dcgan_generator, radford_init_
from .gan import POINT_DEFAULTS, check_sample_shape, mlp

__all__ = ["BiGAN", "JointDiscriminator", "JointCondition", "FLIPPABLE_LOSSES"]

# the games whose generator loss on negated outputs is the flipped loss of eq. (3)
FLIPPABLE_LOSSES = ("non-saturating", "minimax", "wasserstein", "hinge")

_POINT_DEFAULTS = {"latent_dim": 2, "hidden": (256, 256, 256), "dropout": 0.0}
_IMAGE_DEFAULTS = {"latent_dim": 50, "hidden": None, "dropout": 0.2}


def _leaky_relu():
    return nn.LeakyReLU(0.2)


class JointDiscriminator(nn.Module):
    """D(x, z): ``x_body`` maps samples to (N, F_x) features, ``z_body`` codes to (N, F_z);
    ``joint`` maps their concatenation (N, F_x + F_z) to logits (N, 1)."""

    def __init__(self, x_body, z_body, joint):
        super().__init__()
        self.x_body, self.z_body, self.joint = x_body, z_body, joint

    def forward(self, x, z):
        return self.joint(F.cat([self.x_body(x), self.z_body(z)], 1))


class JointCondition:
    """What BiGAN's losses need beside a batch of fakes: ``codes``, the z they were generated
    from (recorded by :meth:`BiGAN.generate`), and ``real``, the real minibatch on which the
    encoder plays its half of the second player's loss (set during a training step)."""

    __slots__ = ("codes", "real")

    def __init__(self, real=None):
        self.codes, self.real = None, real


class BiGAN(AdversarialModel):
    """A BiGAN / ALI on ``image_shape``: (C, H, W) images (DCGAN networks, H and W divisible by
    2^len(channels)) or (D,) points (MLPs).

    ``latent_dim`` d (50 for images, 2 for points); ``channels`` the widths of the DCGAN
    networks (images); ``hidden`` the MLP widths (points: G's hidden layers; E uses them in
    reverse, D on [x, z] too); ``joint_hidden`` the width of D's code branch and joint layer
    (images); ``dropout`` in D's joint layers (0.2 for images, 0 for points); ``critic_norm``
    the normalisation of D's image body (DCGAN's ``"batch"``, ``"layer"`` or ``"none"``).
    ``loss`` one of :data:`FLIPPABLE_LOSSES`; ``k``, ``weight_clip``, ``spectral_norm``,
    ``optimizer`` and ``betas`` as for :class:`~.adversarial.AdversarialModel` (no gradient
    penalty).  ``num_classes`` is accepted for the common model interface and not used.
    """

    inference_modules = ("generator", "encoder")    # samples, codes, reconstructions: no D
    conditions_generator = False    # the JointCondition only carries z along; G reads z alone

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10,
                 latent_dim: int | None = None, channels=(64, 128), hidden=None,
                 joint_hidden: int = 512, dropout: float | None = None,
                 loss: str = "non-saturating", k: int = 1, critic_norm: str = "batch", **game):
        shape = check_sample_shape(image_shape, "BiGAN")
        if loss not in FLIPPABLE_LOSSES:
            raise ValueError(f"BiGAN: loss must be one of {', '.join(FLIPPABLE_LOSSES)} (the "
                             f"encoder plays the generator's loss on negated outputs, eq. 3), "
                             f"got {loss!r}")
        if game.get("penalty") is not None:
            raise ValueError(f"BiGAN: a gradient penalty ({game['penalty']!r}) is defined on "
                             f"samples, not on the joint pairs (x, z) BiGAN's D sees; constrain "
                             f"D with weight_clip or spectral_norm instead")
        if game.get("mixed_batches"):
            raise ValueError("BiGAN: mixed_batches joins the real and the fake samples in one "
                             "batch for D, and D sees pairs whose codes come from two places "
                             "(E(x) for the real, z for the fakes): keep the batches apart")
        if game.get("replay"):
            raise ValueError("BiGAN: experience replay would show D old fakes G(z) without the "
                             "codes z they were made from, and D judges the pairs (G(z), z)")
        images = len(shape) == 3
        defaults = _IMAGE_DEFAULTS if images else _POINT_DEFAULTS
        latent_dim = positive_int(defaults["latent_dim"] if latent_dim is None else latent_dim,
                                  "BiGAN: latent_dim")
        dropout = float(defaults["dropout"] if dropout is None else dropout)
        joint_hidden = positive_int(joint_hidden, "BiGAN: joint_hidden")
        if images:
            channels = check_channels(tuple(channels))
            check_halvings(shape, len(channels), "BiGAN")
            generator, encoder, discriminator = self._image_networks(
                shape, latent_dim, channels, joint_hidden, dropout, critic_norm)
            self.channels = channels
        else:
            hidden = tuple(defaults["hidden"] if hidden is None else hidden)
            if not hidden or not all(isinstance(h, (int, np.integer)) and h > 0
                                     for h in hidden):
                raise ValueError(f"BiGAN: hidden must be a non-empty sequence of positive ints, "
                                 f"got {hidden!r}")
            generator, encoder, discriminator = self._point_networks(
                shape[0], latent_dim, hidden, dropout)
            self.hidden = hidden
        super().__init__(generator, discriminator, latent_dim=latent_dim, sample_shape=shape,
                         loss=loss, k=k, **game)
        self.encoder = encoder
        self.num_classes = num_classes
        self.joint_hidden, self.dropout, self.critic_norm = joint_hidden, dropout, critic_norm
        self._encoder_batch = None

    @staticmethod
    def _image_networks(shape, latent_dim, channels, joint_hidden, dropout, critic_norm):
        """G: DCGAN's generator; E: DCGAN's discriminator body, then a linear map to d numbers;
        D: the joint discriminator of the module docstring."""
        *e_body, e_flatten, e_out = dcgan_discriminator(shape, channels, norm="batch")
        encoder = nn.Sequential(*e_body, e_flatten, nn.Linear(e_out.in_features, latent_dim))
        *x_body, x_flatten, x_out = dcgan_discriminator(shape, channels, norm=critic_norm)
        discriminator = JointDiscriminator(
            nn.Sequential(*x_body, x_flatten),
            nn.Sequential(*mlp((latent_dim, joint_hidden, joint_hidden), _leaky_relu),
                          _leaky_relu()),
            nn.Sequential(*mlp((x_out.in_features + joint_hidden, joint_hidden, 1),
                               _leaky_relu, dropout)))
        return (radford_init_(dcgan_generator(latent_dim, shape, channels)),
                radford_init_(encoder), radford_init_(discriminator))

    @staticmethod
    def _point_networks(features, latent_dim, hidden, dropout):
        """MLPs: G (ReLU, as the MLP GAN's), E and D (LeakyReLU(0.2)); D on [x, z]."""
        generator = nn.Sequential(*mlp((latent_dim, *hidden, features), nn.ReLU))
        encoder = nn.Sequential(*mlp((features, *reversed(hidden), latent_dim), _leaky_relu))
        discriminator = JointDiscriminator(
            nn.Identity(), nn.Identity(),
            nn.Sequential(*mlp((features + latent_dim, *reversed(hidden), 1), _leaky_relu,
                               dropout)))
        return generator, encoder, discriminator

    # -- the three players ----------------------------------------------------------------------
    def encode(self, x):
        """E(x): the codes (N, latent_dim) of samples x (images in [-1, 1], or points)."""
        self._check_samples(x, "encode")
        return self.encoder(x)

    def joint_logits(self, x, z):
        """D's logits l(x, z), (N,), for pairs of samples x and codes z."""
        self._check_samples(x, "joint_logits")
        if z.ndim != 2 or tuple(z.shape) != (x.shape[0], self.latent_dim):
            raise ValueError(f"BiGAN.joint_logits: expected codes of shape ({x.shape[0]}, "
                             f"{self.latent_dim}) for {x.shape[0]} samples, got "
                             f"{tuple(z.shape)}")
        return self.discriminator(x, z).reshape(x.shape[0])

    def generate(self, z, condition=None):
        """G(z), as any GAN's; a :class:`JointCondition` records z as the fakes' codes."""
        out = super().generate(z, condition)
        if isinstance(condition, JointCondition):
            condition.codes = z
        return out

    def discriminate(self, x, condition=None):
        """D's logits on pairs: (x, z) for fakes x = G(z) made with the :class:`JointCondition`
        ``condition``; (x, E(x)) for any other condition (None, or the labels of a real batch,
        which BiGAN does not use)."""
        if isinstance(condition, JointCondition):
            if condition.codes is None:
                raise ValueError("BiGAN.discriminate: this JointCondition holds no codes; "
                                 "generate the fakes with it first")
            return self.joint_logits(x, condition.codes)
        return self.joint_logits(x, self.encode(x))

    # -- the pieces of the shared step ----------------------------------------------------------
    def sample_condition(self, n: int, labels=None):
        """A fresh :class:`JointCondition` (BiGAN is unconditional: the labels are not used)."""
        return JointCondition(self._encoder_batch)

    def configure_optimizers(self, lr: float) -> dict:
        """The shared step's two optimizers, the second player's extended to E's parameters:
        G and E descend eq. (3) together."""
        optimizers = super().configure_optimizers(lr)
        optimizers["generator"].add_param_group({"params": list(self.encoder.parameters())})
        return optimizers

    def discriminator_loss(self, real, labels, fake, condition):
        """Eq. (2) (the game's discriminator loss on D(x, E(x)) and D(G(z), z)) and its logs,
        by the shared :meth:`~.adversarial.AdversarialModel.discriminator_loss`; E is frozen,
        a constant of D's update."""
        with frozen(self.encoder):
            return super().discriminator_loss(real, labels, fake, condition)

    def generator_loss(self, fake, condition):
        """Eq. (3): the game's generator loss on D(G(z), z) plus the same loss on
        -D(x, E(x)) for the real minibatch in ``condition``; logs ``loss_e``, E's term."""
        if not isinstance(condition, JointCondition) or condition.real is None:
            raise ValueError("BiGAN.generator_loss: the encoder's half of the loss needs a "
                             "JointCondition holding a real minibatch (training_step sets it)")
        g_term, logs = super().generator_loss(fake, condition)
        e_term = self.adversarial.generator(-self.discriminate(condition.real))   # eq. (3)
        return g_term + e_term, {**logs, "loss_e": float(e_term.item())}

    def training_step(self, batch, optimizers) -> dict:
        """The shared step (k updates of D on eq. 2, one of G and E on eq. 3), run with the
        step's first real minibatch kept for the encoder's half of eq. (3): the shared step
        hands the second player's update the labels but not the real samples, and E cannot
        play without them."""
        x, _ = batch
        self._check_samples(x, "training_step")
        self._encoder_batch = x[:max(1, x.shape[0] // self.batches_per_step)]
        try:
            return super().training_step(batch, optimizers)
        finally:
            self._encoder_batch = None

    # -- using a trained model ------------------------------------------------------------------
    def codes(self, x):
        """E(x), (N, latent_dim), without gradients: the features the linear probe judges
        (``nanogen eval``)."""
        with no_grad():
            return self.encode(x)

    def reconstruct(self, x, y=None):
        """Eq. (4), G(E(x)), in the data's range (images in [0, 1]; points as they are)."""
        with no_grad():
            return self._to_data_range(self.generate(self.encode(x)))

    def figures(self, x=None, y=None) -> dict:
        """The GAN's interpolation grids, and for images ``reconstructions``: up to 32 test
        images (in [-1, 1], shown in [0, 1]), each followed by G(E(x)) (8 pairs per row)."""
        out = super().figures(x, y)
        if x is not None and self.makes_images:
            self._check_samples(x, "figures")
            x = x[:32]
            pairs = F.stack([self._to_data_range(x), self.reconstruct(x)], 1)
            out["reconstructions"] = (pairs.reshape(2 * x.shape[0], *self.sample_shape),
                                      2 * min(8, x.shape[0]))
        return out

    def evaluate(self, loader) -> dict:
        """The GAN's metrics (mode coverage for points) and ``recon_mse``: the mean squared
        error per dimension of the reconstructions G(E(x)) of the loader's samples (images
        compared in [0, 1])."""
        metrics = super().evaluate(loader)
        total, count = 0.0, 0
        with no_grad():
            for x, _ in loader:
                diff = self.reconstruct(x) - self._to_data_range(x)
                total += float((diff * diff).mean().item()) * x.shape[0]
                count += x.shape[0]
        if count == 0:
            raise ValueError("BiGAN.evaluate: the loader yielded no examples")
        return {**metrics, "recon_mse": total / count, "num_examples": count}


register(ModelSpec(
    name="bigan", build=BiGAN, steps=800, batch_size=64, lr=2e-4, sample_every=200,
    data_kinds=("image", "points"),
    kind_defaults={"points": {**POINT_DEFAULTS["points"], "steps": 2000}},
    summary="BiGAN / ALI (Donahue et al., Dumoulin et al.): an encoder beside the generator, "
            "D on joint pairs (x, E(x)) vs (G(z), z); reconstructions G(E(x)) and the linear "
            "probe of E's codes; DCGAN networks on images, MLPs on 2-D points"))
