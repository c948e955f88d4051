r"""VAE-GAN (Larsen, Sønderby, Larochelle & Winther 2016): a VAE whose reconstruction error is
measured in a discriminator's feature space, trained together with that discriminator.

Three networks: the VAE's encoder :math:`q(z \mid x) = \mathcal N(\mu(x), \operatorname{diag}
e^{v(x)})` (:mod:`.vae`), a decoder :math:`\tilde x = \mathrm{Dec}(z)` that is DCGAN's generator
(:func:`~..gans.dcgan.dcgan_generator`: batch norm, ReLU, tanh; images in [-1, 1]), and a DCGAN
discriminator (:func:`~..gans.dcgan.dcgan_discriminator`)
whose last convolutional feature map (after its LeakyReLU) is :math:`\mathrm{Dis}_l(x)` and whose
logit :math:`\ell(x)` gives :math:`\mathrm{Dis}(x) = \sigma(\ell(x))`.  Per batch of real images
x, with :math:`z \sim q(z \mid x)` (reparameterised), :math:`\tilde x = \mathrm{Dec}(z)` the
reconstructions and :math:`x_p = \mathrm{Dec}(z_p)`, :math:`z_p \sim \mathcal N(0, I)`, the
samples (all three go through the discriminator as one batch):

* the prior term, the VAE's KL (analytic, nats, mean over the batch):

  .. math:: \mathcal L_\text{prior} = \mathrm{KL}\big(q(z \mid x) \,\|\, p(z)\big)
            = \tfrac12 \textstyle\sum_j (\mu_j^2 + e^{v_j} - v_j - 1);

* the reconstruction term: the pixel likelihood of the VAE replaced by a unit-variance Gaussian
  on the l-th discriminator layer, :math:`p(\mathrm{Dis}_l(x) \mid z) =
  \mathcal N(\mathrm{Dis}_l(x); \mathrm{Dis}_l(\tilde x), I)`, whose negative log-likelihood
  (without its constant) is half the squared distance of the features:

  .. math:: \mathcal L_\text{llike}^{\mathrm{Dis}_l}
            = -\mathbb E_{q(z \mid x)} \log p(\mathrm{Dis}_l(x) \mid z)
            = \tfrac12 \big\lVert \mathrm{Dis}_l(x) - \mathrm{Dis}_l(\tilde x) \big\rVert^2
            + \text{const};

* the GAN value, with the reconstructions as a second kind of fake:

  .. math:: \mathcal L_\text{GAN} = \log \mathrm{Dis}(x) + \log(1 - \mathrm{Dis}(x_p))
            + \log(1 - \mathrm{Dis}(\tilde x)).

Each network descends its own loss (Algorithm 1 of the paper), all three gradients taken at the
same parameters, then each optimizer steps its own network:

* encoder: :math:`\beta\,\mathcal L_\text{prior} + \mathcal L_\text{llike}` (no GAN term:
  the encoder is not trained to fool the discriminator; :math:`\beta` = 1 in the paper);
* decoder: :math:`\gamma\,\mathcal L_\text{llike} + \mathcal L_\text{GAN}^\text{Dec}`, where
  :math:`\mathcal L_\text{GAN}^\text{Dec}` is the generator's side of the game on *both* fakes --
  :math:`-\log \mathrm{Dis}(x_p) - \log \mathrm{Dis}(\tilde x)` (``loss="non-saturating"``,
  the default, as in the paper's code) or :math:`\log(1 - \mathrm{Dis}(x_p)) + \log(1 -
  \mathrm{Dis}(\tilde x))` (``"minimax"``); :math:`\gamma` weights content (the features)
  against style (fooling the discriminator);
* discriminator: :math:`-\mathcal L_\text{GAN}` only (it never learns to shrink the
  reconstruction error it measures) -- :func:`~..gans.losses.discriminator_loss` on real and
  sampled images plus :math:`-\log(1 - \mathrm{Dis}(\tilde x))` on the reconstructions.

The logits go through the softplus identities of :mod:`..gans.losses`
(:math:`-\log\sigma(\ell) = \operatorname{softplus}(-\ell)`, :math:`-\log(1 - \sigma(\ell)) =
\operatorname{softplus}(\ell)`).  Three Adam optimizers with Radford et al.'s
:math:`\beta_1 = 0.5` (the paper used RMSProp at 3e-4; Adam with :math:`\beta_1 = 0.5` is what
this project's GANs train with).

Samples are :math:`\mathrm{Dec}(z_p)` mapped from [-1, 1] to [0, 1] -- images, not a pixel
distribution's means -- and, as for a GAN, the model is judged by them (FID / KID / IS);
``codes(x)`` are the posterior means, for the linear probe.
"""
from __future__ import annotations

from typing import NamedTuple

from ... import functional as ops
from ...autograd import grad, no_grad
from ...creation import randn, randn_like
from ...optim import Adam
from ...tensor import Tensor
from ...utils.checks import positive_int
from ..base import check_halvings
from ..gans.dcgan import dcgan_discriminator, dcgan_generator, radford_init_
from ..gans.losses import adversarial_loss, minimax_generator_loss
from ..likelihood import gaussian_kl_to_standard, sum_per_example
from ..registry import ModelSpec, register
from .networks import check_channels
from .vae import VAE, random_translate

__all__ = ["VAEGAN", "VAEGANLosses", "feature_reconstruction_loss", "vae_gan_discriminator_loss"]


def feature_reconstruction_loss(real_features, recon_features):
    r""":math:`\tfrac12 \lVert \mathrm{Dis}_l(x) - \mathrm{Dis}_l(\tilde x) \rVert^2` per image,
    averaged over the batch: the negative log-likelihood of the real features under a
    unit-variance Gaussian centred on the reconstruction's, less its constant."""
    if real_features.shape != recon_features.shape:
        raise ValueError(f"feature_reconstruction_loss: real features "
                         f"{tuple(real_features.shape)} and reconstruction features "
                         f"{tuple(recon_features.shape)} differ in shape")
    return (0.5 * sum_per_example((real_features - recon_features) ** 2)).mean()


def vae_gan_discriminator_loss(real_logits, recon_logits, fake_logits, adversarial):
    r""":math:`-\mathcal L_\text{GAN} = -\log \mathrm{Dis}(x) - \log(1 - \mathrm{Dis}(x_p))
    - \log(1 - \mathrm{Dis}(\tilde x))`, each term a mean over its batch: the GAN's
    discriminator loss on real and sampled images (``adversarial.discriminator``) plus the
    reconstructions' term, :math:`-\mathbb E \log(1 - \mathrm{Dis}(\tilde x))` = minus the
    minimax generator loss."""
    return (adversarial.discriminator(real_logits, fake_logits)
            - minimax_generator_loss(recon_logits))


class VAEGANLosses(NamedTuple):
    """The terms of one batch, scalar Tensors (means over the batch), and D's mean outputs."""

    prior: Tensor            # KL(q(z|x) || p(z))
    llike: Tensor            # 1/2 ||Dis_l(x) - Dis_l(x~)||^2
    discriminator: Tensor    # -L_GAN
    decoder_gan: Tensor      # the decoder's side of the game on x_p and x~
    d_real: float            # mean Dis(x)
    d_recon: float           # mean Dis(x~)
    d_fake: float            # mean Dis(x_p)


class VAEGAN(VAE):
    """A VAE-GAN on images ``image_shape`` (C, H, W), H and W divisible by 2^len(channels) and
    by 2^len(disc_channels).

    ``latent_dim``, ``channels``, ``hidden_features``, ``depth``, ``activation`` shape the VAE's
    conv encoder (:mod:`.networks`); the decoder is DCGAN's generator with widths ``channels``
    (``generator="dcgan"``: batch norm, ReLU, tanh) or the VAE's conv decoder followed by a tanh
    (``"conv"``: no batch norm; its samples were noise blobs after 500 steps where the DCGAN
    generator's were already dark-backed strokes); ``disc_channels`` the DCGAN
    discriminator's widths, whose last feature map is :math:`\\mathrm{Dis}_l`; ``gamma`` the
    decoder's weight on the feature reconstruction error against the GAN term; ``beta`` the
    encoder's weight on the KL (1 in the paper);
    ``loss`` the decoder's side of the game, ``"non-saturating"`` or ``"minimax"``;
    ``max_shift`` as for the VAE (random translations of the training images).
    ``num_classes`` is accepted for the common model interface and not used.
    """

    data_transform = "symmetric"        # images in [-1, 1], the decoder ends in tanh (DCGAN's)
    judged_by_samples = True
    inference_modules = ("encoder", "decoder")    # sampling, codes, figures: no discriminator
    betas = (0.5, 0.999)                # Adam's (beta1, beta2), as for the GANs

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, latent_dim: int = 32,
                 channels=(32, 64), hidden_features: int | None = None,
                 disc_channels=(32, 64), gamma: float = 1.0, beta: float = 1.0,
                 loss: str = "non-saturating", generator: str = "dcgan",
                 activation: str = "relu", depth: int = 1, max_shift: int = 0):
        if len(tuple(image_shape)) != 3:
            raise ValueError(f"VAEGAN models images: image_shape must be (C, H, W), got "
                             f"{image_shape!r}")
        if generator not in ("dcgan", "conv"):
            raise ValueError(f"VAEGAN: generator must be 'dcgan' or 'conv', got {generator!r}")
        if not float(gamma) > 0.0:
            raise ValueError(f"VAEGAN: gamma must be a positive number, got {gamma!r}")
        disc_channels = check_channels(disc_channels)
        check_halvings(tuple(image_shape), len(disc_channels), "VAEGAN's discriminator")
        super().__init__(image_shape, num_classes, latent_dim, channels, hidden_features, beta,
                         activation, 0.0, depth, max_shift)
        self.gamma = float(gamma)
        self.generator = generator
        if generator == "dcgan":          # the VAE's ConvDecoder replaced by DCGAN's generator
            self.decoder = radford_init_(dcgan_generator(self.latent_dim, self.image_shape,
                                                         tuple(channels)))
        self.adversarial = adversarial_loss(loss)
        if not self.adversarial.log_odds:     # the paper's game reads D as a probability
            raise ValueError(f"VAEGAN: loss must be a game on log-odds (minimax or "
                             f"non-saturating), got {loss!r}, a game on scores")
        self.loss_name = loss
        self.disc_channels = disc_channels
        self.discriminator = radford_init_(dcgan_discriminator(self.image_shape, disc_channels))

    # -- the three networks ---------------------------------------------------------------------
    def decode(self, z):
        """Dec(z): images in [-1, 1], (N, C, H, W) (the DCGAN generator ends in tanh; the
        conv decoder's output goes through one)."""
        self._check_latents(z, "decode")
        out = self.decoder(z)
        return out if self.generator == "dcgan" else ops.tanh(out)

    def decode_images(self, z):
        """Dec(z) mapped to [0, 1]: what sample(), reconstruct() and the figures show."""
        return ops.clamp((self.decode(z) + 1.0) * 0.5, 0.0, 1.0)

    def codes(self, x):
        """The posterior means mu(x), (N, d): the features the linear probe judges."""
        with no_grad():
            return self.encode(x)[0]

    def reconstruct(self, x, y=None):
        """Dec(mu(x)) in [0, 1]: the decoder at the posterior mean."""
        self._check_images(x, "reconstruct")
        with no_grad():
            return self.decode_images(self.encode(x)[0])

    def sample(self, n: int, y=None):
        """n images Dec(z_p), z_p ~ N(0, I), in [0, 1]."""
        n = positive_int(n, "VAEGAN.sample: n")
        weight = next(iter(self.decoder.parameters()))
        with no_grad():
            return self.decode_images(randn(n, self.latent_dim, dtype=weight.dtype,
                                            device=weight.device))

    def loss(self, x, y=None):
        raise NotImplementedError("VAEGAN has no pixel likelihood (its reconstruction error is "
                                  "measured in the discriminator's features): no ELBO or IWAE "
                                  "bound; it trains on three losses (training_step) and is "
                                  "judged by its samples")

    def discriminate(self, x):
        r"""``(features, logits)``: :math:`\mathrm{Dis}_l(x)`, the discriminator's last feature
        map (N, C_l, H_l, W_l), and its logits :math:`\ell(x)`, (N,)."""
        self._check_images(x, "discriminate")
        *body, flatten, linear = list(self.discriminator)
        features = x
        for layer in body:
            features = layer(features)
        return features, linear(flatten(features)).reshape(x.shape[0])

    # -- the losses -----------------------------------------------------------------------------
    def losses(self, x) -> VAEGANLosses:
        """The three terms of a batch of real images x in [-1, 1] (see the module docstring):
        one reparameterised z per image and one z_p ~ N(0, I) per image, x, x~ and x_p through
        the discriminator as one batch."""
        self._check_images(x, "losses")
        n = x.shape[0]
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)                    # z ~ q(z | x)
        z_p = randn_like(mu)                                   # z_p ~ p(z)
        decoded = self.decode(ops.cat([z, z_p], 0))            # x~ = Dec(z), x_p = Dec(z_p)
        features, logits = self.discriminate(ops.cat([x, decoded], 0))   # one batch (BN)
        real_logits, recon_logits, fake_logits = logits[:n], logits[n:2 * n], logits[2 * n:]
        prior = gaussian_kl_to_standard(mu, logvar).mean()
        llike = feature_reconstruction_loss(features[:n], features[n:2 * n])
        disc = vae_gan_discriminator_loss(real_logits, recon_logits, fake_logits,
                                          self.adversarial)
        dec_gan = self.adversarial.generator(fake_logits) + self.adversarial.generator(
            recon_logits)
        with no_grad():
            d = [float(ops.sigmoid(part).mean().item())
                 for part in (real_logits, recon_logits, fake_logits)]
        return VAEGANLosses(prior, llike, disc, dec_gan, *d)

    def configure_optimizers(self, lr: float) -> dict:
        """Adam for each network, all at ``lr`` with betas (0.5, 0.999)."""
        return {name: Adam(getattr(self, name).parameters(), lr=lr, betas=self.betas)
                for name in ("encoder", "decoder", "discriminator")}

    def training_step(self, batch, optimizers) -> dict:
        """The three gradients of one batch at the same parameters (see the module docstring),
        then one step of each network's optimizer."""
        x, _ = batch
        self._check_images(x, "training_step")
        missing = sorted({"encoder", "decoder", "discriminator"} - set(optimizers))
        if missing:
            raise KeyError(f"VAEGAN.training_step: no {missing[0]!r} optimizer in "
                           f"{sorted(optimizers)} (use configure_optimizers)")
        if self.max_shift:                                   # shift in background (-1), not 0
            x = random_translate(x + 1.0, self.max_shift) - 1.0
        t = self.losses(x)
        objectives = {"encoder": self.beta * t.prior + t.llike,
                      "decoder": self.gamma * t.llike + t.decoder_gan,
                      "discriminator": t.discriminator}
        grads = {}
        for i, (name, objective) in enumerate(objectives.items()):
            params = list(getattr(self, name).parameters())
            grads[name] = (params, grad(objective, params, retain_graph=i < 2))
        for name, (params, gs) in grads.items():      # every gradient first, then the steps
            optimizers[name].zero_grad()
            for p, g in zip(params, gs):
                p.grad = g
            optimizers[name].step()
        return {"loss_d": float(t.discriminator.item()), "loss_g": float(t.decoder_gan.item()),
                "llike": float(t.llike.item()), "kl": float(t.prior.item()),
                "d_real": t.d_real, "d_recon": t.d_recon, "d_fake": t.d_fake}

    # -- using a trained model ------------------------------------------------------------------
    def figures(self, x, y=None) -> dict:
        """``reconstructions``: up to 32 test images (in [-1, 1], shown in [0, 1]), each followed
        by Dec(mu(x)) (8 pairs per row)."""
        self._check_images(x, "figures")
        x = x[:32]
        pairs = ops.stack([(x + 1.0) * 0.5, self.reconstruct(x)], 1)
        return {"reconstructions": (pairs.reshape(2 * x.shape[0], *self.image_shape),
                                    2 * min(8, x.shape[0]))}

    def evaluate(self, loader) -> dict:
        """Test metrics of the encoder and decoder: the mean KL of q(z | x) to the prior
        ``kl_nats`` and ``recon_mse``, the mean squared error per pixel (in [0, 1]) of the
        reconstructions Dec(mu(x)).  The samples are judged by FID / KID / IS (``nanogen
        eval``)."""
        kl, sq, count = 0.0, 0.0, 0
        with no_grad():
            for x, _ in loader:
                mu, logvar = self.encode(x)
                kl += float(gaussian_kl_to_standard(mu, logvar).sum().item())
                diff = self.decode_images(mu) - (x + 1.0) * 0.5
                sq += float((diff ** 2).mean().item()) * x.shape[0]
                count += x.shape[0]
        if count == 0:
            raise ValueError("VAEGAN.evaluate: the loader yielded no examples")
        return {"kl_nats": kl / count, "recon_mse": sq / count, "num_examples": count}


# Measured on mnist5k, 3,000 steps of 64, lr 3e-4, FID of 1,000 samples (lenet features):
# latent 32: gamma 0.01, beta 1: 274.6 (reconstructions sharp, FID 5.0, but q(z|x) narrow:
# variance 0.015, the prior's samples land between its codes); beta 4: 248.9 (KID 780 +- 85);
# beta 4 with 32/64-channel networks: 343.5; beta 8: 394.7.  Latent 8, beta 4: 168.0 (KID
# 506 +- 80): with 8 dimensions the posterior's codes fill the prior's mass, so the prior's
# samples decode to digits.  The plain VAE's mean images: FID 197.2, KID 1443 +- 145.
register(ModelSpec(
    name="vae-gan", build=VAEGAN, steps=3000, batch_size=64, lr=3e-4, sample_every=500,
    kwargs={"latent_dim": 8, "channels": (16, 32), "disc_channels": (16, 32), "gamma": 0.01,
            "beta": 4.0},
    summary="VAE-GAN (Larsen et al.): VAE encoder, DCGAN generator and discriminator; "
            "reconstruction error in the discriminator's features, three networks, three Adams"))
