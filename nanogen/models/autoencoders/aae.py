r"""The adversarial autoencoder (Makhzani, Shlens, Jaitly, Goodfellow & Frey 2016).

An autoencoder whose codes are pressed into the shape of a chosen prior :math:`p(z)` by a GAN
played *on the codes*: a discriminator tells samples of the prior from the encoder's codes of
training images, and the encoder, acting as the GAN's generator, learns to fool it.  Once the
encoder's aggregate posterior

.. math:: q(z) = \int q(z \mid x)\, p_\text{data}(x)\, dx                                 \tag{1}

matches the prior, decoding any :math:`z \sim p(z)` gives an image like the data: the decoder is
a generative model with no likelihood to report, so ``nanogen eval`` judges it by its samples
(FID, KID, IS).

**The autoencoder.**  The encoder is deterministic, :math:`q(z \mid x) = \delta(z - E_\phi(x))`
(the first of the paper's three choices; it reports that a Gaussian posterior behaves alike, and
with a point mass q(z) is smoothed by the data distribution alone).  The decoder is Bernoulli,
one logit per pixel, :math:`\ell = G_\theta(z)`, and the reconstruction phase minimises

.. math:: \mathcal L_\text{rec} = -\mathbb E_x \log p_\theta(x \mid E_\phi(x))
          = \mathbb E_x \sum_i \operatorname{softplus}(\ell_i) - x_i \ell_i,
          \qquad \ell = G_\theta(E_\phi(x)),                                              \tag{2}

in nats per image, over the encoder's and the decoder's weights.

**The priors.**  ``prior="gaussian"``: :math:`p(z) = \mathcal N(0, I_d)` for any d.
``prior="mixture"``: K = 10 two-dimensional Gaussians spaced evenly on a circle of radius R, each
stretched along its radius (the petals of the paper's Figure 2):

.. math:: p(z) = \frac1K \sum_{k=0}^{K-1} \mathcal N(z;\, R u_k,\, \Sigma_k), \quad
          u_k = (\cos\tfrac{2\pi k}{K}, \sin\tfrac{2\pi k}{K}), \;
          v_k = (-\sin\tfrac{2\pi k}{K}, \cos\tfrac{2\pi k}{K}), \;
          \Sigma_k = \sigma_r^2 u_k u_k^\top + \sigma_t^2 v_k v_k^\top,                  \tag{3}

drawn as :math:`z = R u_k + \sigma_r \varepsilon_1 u_k + \sigma_t \varepsilon_2 v_k` with
:math:`k` uniform and :math:`\varepsilon \sim \mathcal N(0, I_2)`.

**The regularisation phase** is the GAN game (:mod:`nanogen.models.gans.losses`) with prior
samples as the real data and codes as the fakes.  The discriminator :math:`D_\psi = \sigma(d_\psi)`,
a small MLP on codes, descends

.. math:: \mathcal L_D = -\mathbb E_{z \sim p(z)} \log D_\psi(z)
          - \mathbb E_x \log\big(1 - D_\psi(E_\phi(x))\big),                               \tag{4}

then the encoder descends the non-saturating generator loss through a frozen discriminator,

.. math:: \mathcal L_E = -\mathbb E_x \log D_\psi(E_\phi(x)).                             \tag{5}

For the best discriminator, :math:`\mathcal L_D = \log 4 - 2\,\mathrm{JSD}(p \,\|\, q)`: the game
drives the aggregate posterior (1) towards the prior.

**The label chooses the component** (``label_prior=True``, mixture prior only; the paper's
section 2.3 and Figure 4): the discriminator also sees a one-hot label,
:math:`D_\psi(z, \mathbf 1_y)`.  Each image's code is paired with its own label, and each prior
sample with the label of the image it is drawn beside, from that label's component:

.. math:: \mathcal L_D = -\mathbb E_{(x, y)} \Big[\log D_\psi(z_y, \mathbf 1_y)
          + \log\big(1 - D_\psi(E_\phi(x), \mathbf 1_y)\big)\Big],
          \qquad z_y \sim \mathcal N(R u_y, \Sigma_y),                                    \tag{6}

so the game matches :math:`q(z \mid y)` to component y for every class y; the codes of the
digits of class y fill petal y.  The model is then class-conditional: ``sample(n, y)`` decodes
:math:`z \sim \mathcal N(R u_y, \Sigma_y)`, a digit of class y (with no labels, it draws from
the whole mixture).  The encoder itself never sees a label, so the component whose density is
highest at :math:`E_\phi(x)` classifies x (``component_accuracy`` in :meth:`AAE.evaluate`).

**One training step** runs the paper's three phases on one minibatch, each with its own Adam:
(2) over encoder and decoder (``"autoencoder"``), (4) or (6) over the discriminator
(``"discriminator"``, codes computed under ``no_grad``), (5) over the encoder alone
(``"encoder"``).

Deviations from the paper: Adam (the two adversarial players with :math:`\beta_1 = 0.5`, as for
the GANs here) instead of SGD with momentum.  Adam divides each step by the gradient's running
RMS, so a phase moves the encoder about as far whatever the scale of its loss (2) or (5): the
balance that SGD takes from the losses' sizes is set here by the learning rates, the two
adversarial phases at ``adversarial_lr`` times the reconstruction's.  The label-chosen
components use every training label (the paper's Figure 4 labels 10,000 images and gives the rest
an extra "unlabelled" input).  The networks are narrower than the paper's 1000-1000 (512-512,
the discriminator 256-256).
"""
from __future__ import annotations

import math

import numpy as np

from ... import functional as ops
from ... import nn
from ...autograd import no_grad
from ...creation import randint, randn, tensor
from ...optim import Adam
from ...utils.checks import positive_int
from ..base import GenerativeModel, check_halvings, check_labels
from ..gans.adversarial import frozen
from ..gans.gan import mlp
from ..gans.losses import adversarial_loss
from ..likelihood import bernoulli_log_prob
from ..registry import ModelSpec, register
from .networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, check_channels

__all__ = ["AAE", "mixture_parameters", "PRIORS", "NETWORKS"]

PRIORS = ("gaussian", "mixture")
NETWORKS = ("mlp", "conv")
ADVERSARIAL_BETAS = (0.5, 0.999)       # Adam's betas for the discriminator and the encoder-as-G


def mixture_parameters(components: int, radius: float, radial_std: float,
                       tangential_std: float):
    r"""The K components of the circular mixture (3), as float64 arrays: the means
    :math:`R u_k` (K, 2) and the scale matrices :math:`A_k = [\sigma_r u_k, \sigma_t v_k]`
    (K, 2, 2) -- columns -- so that :math:`z = R u_k + A_k \varepsilon` and
    :math:`\Sigma_k = A_k A_k^\top`."""
    angles = 2.0 * np.pi * np.arange(components) / components
    u = np.stack([np.cos(angles), np.sin(angles)], 1)             # along the radius
    v = np.stack([-np.sin(angles), np.cos(angles)], 1)            # across it
    return radius * u, np.stack([radial_std * u, tangential_std * v], 2)


def _leaky_relu():
    return nn.LeakyReLU(0.2)


class AAE(GenerativeModel):
    """An adversarial autoencoder on binary images ``image_shape`` (C, H, W).

    ``latent_dim`` d; ``prior`` ``"gaussian"`` (N(0, I_d)) or ``"mixture"`` (the 2-D circle of
    ``components`` Gaussians (3), ``radius`` R, standard deviations ``radial_std`` along and
    ``tangential_std`` across the radius; needs d = 2); ``label_prior`` lets each image's label
    choose the component of the prior sample it is played against (6), which makes the model
    class-conditional (needs the mixture and ``num_classes <= components``).

    ``network`` ``"mlp"`` (encoder and decoder of fully connected ReLU layers of widths
    ``hidden``, the paper's) or ``"conv"`` (:class:`~.networks.ConvEncoder` /
    :class:`~.networks.ConvDecoder` with ``channels`` and ``depth``); the discriminator is an MLP
    on codes with LeakyReLU(0.2) layers of widths ``disc_hidden``.  ``adversarial_lr`` scales the
    learning rate of the two adversarial phases relative to the reconstruction's.
    """

    data_transform = "binary"
    judged_by_samples = True                      # no likelihood: eval scores 1,000 samples
    inference_modules = ("encoder", "decoder")    # sampling and evaluation never ask D

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, latent_dim: int = 8,
                 prior: str = "gaussian", label_prior: bool = False, network: str = "mlp",
                 hidden=(512, 512), channels=(32, 64), depth: int = 1,
                 disc_hidden=(256, 256), components: int = 10, radius: float = 4.0,
                 radial_std: float = 1.0, tangential_std: float = 0.25,
                 adversarial_lr: float = 1.0):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.latent_dim = positive_int(latent_dim, "AAE: latent_dim")
        self.num_classes = positive_int(num_classes, "AAE: num_classes")
        if prior not in PRIORS:
            raise ValueError(f"AAE: unknown prior {prior!r}; choose one of {', '.join(PRIORS)}")
        if network not in NETWORKS:
            raise ValueError(f"AAE: unknown network {network!r}; choose one of "
                             f"{', '.join(NETWORKS)}")
        self.prior, self.network, self.label_prior = prior, network, bool(label_prior)
        if prior == "mixture" and self.latent_dim != 2:
            raise ValueError(f"AAE: the mixture prior is 2-D; it needs latent_dim=2, got "
                             f"latent_dim={self.latent_dim}")
        self.components = positive_int(components, "AAE: components")
        if self.label_prior and prior != "mixture":
            raise ValueError("AAE: label_prior=True lets the label choose a component of the "
                             "mixture prior; it needs prior='mixture'")
        if self.label_prior and self.num_classes > self.components:
            raise ValueError(f"AAE: label_prior=True needs a component per class: "
                             f"{self.num_classes} classes but components={self.components}")
        if not (float(radius) >= 0 and float(radial_std) > 0 and float(tangential_std) > 0):
            raise ValueError(f"AAE: the mixture needs radius >= 0 and positive standard "
                             f"deviations, got radius={radius!r}, radial_std={radial_std!r}, "
                             f"tangential_std={tangential_std!r}")
        if not float(adversarial_lr) > 0:
            raise ValueError(f"AAE: adversarial_lr must be positive, got {adversarial_lr!r}")
        self.adversarial_lr = float(adversarial_lr)
        self.conditional = self.label_prior
        if network == "mlp":
            self.encoder = MLPEncoder(self.image_shape, self.latent_dim, hidden)
            self.decoder = MLPDecoder(self.latent_dim, self.image_shape, hidden)
        else:
            if len(self.image_shape) == 3:
                check_halvings(self.image_shape, len(check_channels(channels)), "AAE")
            self.encoder = ConvEncoder(self.image_shape, self.latent_dim, channels, depth=depth)
            self.decoder = ConvDecoder(self.latent_dim, self.image_shape, channels, depth=depth)
        disc_in = self.latent_dim + (self.components if self.label_prior else 0)
        self.discriminator = nn.Sequential(*mlp((disc_in, *disc_hidden, 1), _leaky_relu))
        self.adversarial = adversarial_loss("non-saturating")       # eqs. (4), (5)
        means, scales = mixture_parameters(self.components, float(radius), float(radial_std),
                                           float(tangential_std))
        self._mixture = (means, scales)   # float64, for mixture_log_densities
        # the mixture's tables move with the model (to(), double()); not saved: the kwargs say them
        self.register_buffer("mixture_means", tensor(means.astype(np.float32)), persistent=False)
        self.register_buffer("mixture_scales", tensor(scales.astype(np.float32)),
                             persistent=False)
        self._test_codes = None           # (codes, labels) of the last evaluate(), for figures()

    def _device(self):
        return next(iter(self.parameters())).device

    # -- input checks ---------------------------------------------------------------------------
    def _check_codes(self, z, where: str):
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"AAE.{where}: expected codes of shape (N, {self.latent_dim}), got "
                             f"{tuple(z.shape)}")

    def _labels(self, y, n: int, where: str):
        """The labels the discriminator sees: checked when the label chooses the component,
        None (ignored) otherwise."""
        return check_labels(y, n, self.num_classes, f"AAE.{where}") if self.label_prior else None

    # -- the networks ---------------------------------------------------------------------------
    def encode(self, x):
        """The deterministic code E(x), (N, d)."""
        self._check_images(x, "encode")
        return self.encoder(x)

    def decode(self, z):
        """The Bernoulli logits of p(x | z), (N, C, H, W)."""
        self._check_codes(z, "decode")
        return self.decoder(z)

    def codes(self, x):
        """The encoder's codes E(x) (N, d) of images x, without gradients (the linear probe's
        features)."""
        with no_grad():
            return self.encode(x)

    def discriminate(self, z, y=None):
        """The discriminator's logits d(z) (N,), or d(z, one_hot(y)) when the label chooses the
        component (labels checked)."""
        self._check_codes(z, "discriminate")
        y = self._labels(y, z.shape[0], "discriminate")
        if y is not None:
            z = ops.cat([z, ops.one_hot(y, self.components).to(z)], 1)
        return self.discriminator(z).reshape(z.shape[0])

    # -- the prior ------------------------------------------------------------------------------
    def sample_prior(self, n: int, y=None, where: str = "sample_prior"):
        """n draws z ~ p(z), (n, d), from nanogen's global generator.  The mixture draws
        component ``y[i]`` for row i when labels are given (a model with ``label_prior``
        checks them), else uniformly chosen components (3)."""
        n = positive_int(n, f"AAE.{where}: n")
        device = self._device()
        if self.prior == "gaussian":
            return randn(n, self.latent_dim, device=device).to(self.mixture_means)
        if y is None:
            k = randint(0, self.components, size=(n,), device=device)
        else:
            k = check_labels(y, n, self.num_classes if self.label_prior else self.components,
                             f"AAE.{where}")
        return self._mixture_draw(k)

    def _mixture_draw(self, k):
        """One draw from component k[i] for each row i, (n, 2): eq. (3)."""
        n = k.shape[0]
        eps = randn(n, 1, 2, device=self._device()).to(self.mixture_scales)
        means, scales = self.mixture_means[k], self.mixture_scales[k]    # (n, 2), (n, 2, 2)
        return means + (scales * eps).sum(2)                     # R u_k + A_k eps

    def mixture_log_densities(self, z):
        r""":math:`\log \mathcal N(z; R u_k, \Sigma_k)` of each code for each component,
        (N, K) as a NumPy float64 array (mixture prior only)."""
        if self.prior != "mixture":
            raise ValueError("AAE.mixture_log_densities: this model's prior is not the mixture")
        z = np.asarray(z.detach().numpy() if hasattr(z, "detach") else z, dtype=np.float64)
        means, scales = self._mixture
        # A_k has orthogonal columns: A_k^-1 (z - m_k) = (u_k . d / s_r, v_k . d / s_t)
        diff = z[:, None, :] - means[None]                                    # (N, K, 2)
        col_norms = np.linalg.norm(scales, axis=1)                            # (K, 2): s_r, s_t
        eps = np.einsum("nkd,kdj->nkj", diff, scales) / col_norms[None] ** 2
        log_det = np.log(col_norms).sum(1)                                    # log |A_k|
        return -0.5 * (eps ** 2).sum(-1) - log_det[None] - math.log(2 * math.pi)

    # -- the three losses -----------------------------------------------------------------------
    def reconstruction_loss(self, x):
        """Eq. (2): the mean over the batch of -log p(x | E(x)), nats per image."""
        return -bernoulli_log_prob(self.decode(self.encode(x)), x).mean()

    def discriminator_loss(self, codes, prior_codes, y=None):
        """Eq. (4) (eq. (6) with labels): prior samples are real, the encoder's codes fake."""
        return self.adversarial.discriminator(self.discriminate(prior_codes, y),
                                              self.discriminate(codes, y))

    def generator_loss(self, codes, y=None):
        """Eq. (5): -E log D(E(x)), the encoder's loss as the GAN's generator."""
        return self.adversarial.generator(self.discriminate(codes, y))

    # -- training -------------------------------------------------------------------------------
    def configure_optimizers(self, lr: float) -> dict:
        """Adam for each phase: ``autoencoder`` (encoder and decoder, at lr), ``discriminator``
        and ``encoder`` (the encoder as generator), both at ``adversarial_lr * lr`` with
        betas (0.5, 0.999)."""
        reg_lr = lr * self.adversarial_lr
        return {"autoencoder": Adam(list(self.encoder.parameters())
                                    + list(self.decoder.parameters()), lr=lr),
                "discriminator": Adam(self.discriminator.parameters(), lr=reg_lr,
                                      betas=ADVERSARIAL_BETAS),
                "encoder": Adam(self.encoder.parameters(), lr=reg_lr, betas=ADVERSARIAL_BETAS)}

    def training_step(self, batch, optimizers) -> dict:
        """The three phases on one minibatch: reconstruction (2), the discriminator (4)/(6),
        the encoder as generator (5)."""
        x, y = batch
        self._check_images(x, "training_step")
        y = self._labels(y, x.shape[0], "training_step")
        for name in ("autoencoder", "discriminator", "encoder"):
            if name not in optimizers:
                raise KeyError(f"AAE.training_step: no {name!r} optimizer in "
                               f"{sorted(optimizers)} (use configure_optimizers)")
        recon = self.reconstruction_step(x, optimizers["autoencoder"])
        loss_d, d_real, d_fake = self.discriminator_step(x, y, optimizers["discriminator"])
        loss_g = self.encoder_step(x, y, optimizers["encoder"])
        return {"recon": recon, "loss_d": loss_d, "loss_g": loss_g, "d_real": d_real,
                "d_fake": d_fake}

    @staticmethod
    def _step(loss, optimizer) -> float:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.item())

    def reconstruction_step(self, x, optimizer) -> float:
        """One step of the autoencoder on eq. (2); returns the loss before it."""
        return self._step(self.reconstruction_loss(x), optimizer)

    def discriminator_step(self, x, y, optimizer):
        """One step of D on eq. (4)/(6) (the codes constants); returns the loss and the mean
        D(z ~ prior), D(E(x)) before it."""
        with no_grad():
            codes = self.encode(x)
        prior_codes = self.sample_prior(x.shape[0], y)
        real_logits, fake_logits = self.discriminate(prior_codes, y), self.discriminate(codes, y)
        loss = self._step(self.adversarial.discriminator(real_logits, fake_logits), optimizer)
        with no_grad():
            return (loss, float(ops.sigmoid(real_logits).mean().item()),
                    float(ops.sigmoid(fake_logits).mean().item()))

    def encoder_step(self, x, y, optimizer) -> float:
        """One step of the encoder on eq. (5), through a frozen D; returns the loss."""
        with frozen(self.discriminator):
            loss = self.generator_loss(self.encode(x), y)
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
        return float(loss.item())

    # -- using a trained model ------------------------------------------------------------------
    def sample(self, n: int, y=None):
        """n images: the decoder's pixel probabilities at z ~ p(z) (mean images in [0, 1]).  A
        model with ``label_prior`` decodes component ``y[i]`` for image i when labels are given
        (checked), the whole mixture otherwise; an unconditional model ignores y."""
        with no_grad():
            z = self.sample_prior(n, y if self.label_prior else None, "sample")
            return ops.sigmoid(self.decode(z))

    def reconstruct(self, x):
        """Pixel probabilities sigma(G(E(x)))."""
        with no_grad():
            return ops.sigmoid(self.decode(self.encode(x)))

    def evaluate(self, loader) -> dict:
        """On the whole loader: ``recon_nats`` (eq. (2), nats per image) and
        ``reconstruction_mse`` (per pixel, of the pixel probabilities); for the mixture,
        ``component_shares_min``, K times the smallest share of test codes whose most likely
        component is k (1 when every petal holds as many codes), and with ``label_prior``
        ``component_accuracy``, how often that component is the image's label.  The codes and
        labels are kept for :meth:`figures`."""
        recon = sq = 0.0
        count, codes, labels = 0, [], []
        with no_grad():
            for x, y in loader:
                self._check_images(x, "evaluate")
                z = self.encode(x)
                logits = self.decode(z)
                recon -= float(bernoulli_log_prob(logits, x).sum().item())
                sq += float(((ops.sigmoid(logits) - x) ** 2).sum().item())
                count += x.shape[0]
                codes.append(z.numpy())
                labels.append(np.asarray(y.numpy()).astype(np.int64))
        if count == 0:
            raise ValueError("AAE.evaluate: the loader yielded no examples")
        codes, labels = np.concatenate(codes), np.concatenate(labels)
        self._test_codes = (codes, labels)
        metrics = {"recon_nats": recon / count,
                   "reconstruction_mse": sq / (count * math.prod(self.image_shape))}
        if self.prior == "mixture":
            nearest = self.mixture_log_densities(codes).argmax(1)
            shares = np.bincount(nearest, minlength=self.components) / count
            metrics["component_shares_min"] = float(self.components * shares.min())
            if self.label_prior:
                metrics["component_accuracy"] = float((nearest == labels).mean())
        return {**metrics, "num_examples": count}

    def figures(self, x, y=None) -> dict:
        """``reconstructions``: up to 32 test images each followed by its reconstruction; for a
        2-D code, ``codes``: the test codes coloured by class over 2,000 prior samples (the
        codes of the last :meth:`evaluate` -- ``nanogen eval`` evaluates the whole test split
        first -- else those of x); for the mixture, ``components``: 10 samples of each
        component, one row each."""
        self._check_images(x, "figures")
        xs = x[:32]
        pairs = ops.stack([xs, self.reconstruct(xs)], 1).reshape(2 * xs.shape[0],
                                                                   *self.image_shape)
        out = {"reconstructions": (pairs, 2 * min(8, xs.shape[0]))}
        if self.latent_dim == 2:
            from ...utils.plot import class_scatter_image
            if self._test_codes is not None:
                codes, labels = self._test_codes
            else:
                codes = self.codes(x).numpy()
                labels = (np.zeros(len(codes), np.int64) if y is None
                          else np.asarray(y.numpy()).astype(np.int64))
            with no_grad():
                prior = self.sample_prior(2000).numpy()
            title = f"{len(codes)} test codes over the {self.prior} prior"
            picture = class_scatter_image(codes, labels, background=prior, title=title)
            out["codes"] = (tensor(picture[None]), 1)
        if self.prior == "mixture":
            k = tensor(np.repeat(np.arange(self.components), 10), device=self._device())
            with no_grad():
                out["components"] = (ops.sigmoid(self.decode(self._mixture_draw(k))), 10)
        return out


# -- the registry: ``nanogen train aae`` etc. ----------------------------------------------------
# Tuned on mnist5k (3,000 steps of 64, lr 1e-3; FID of 1,000 samples against the test digits).
# Gaussian prior, 8-d: adversarial_lr 0.1 -> FID 291.6, test recon 100.3 nats; 1.0 -> 336.0,
# 137.6; 3.0 -> 684.7, 171.1 (with 0.02, after 800 steps, the codes never matched: FID 1068).
# 4-d at 0.1: FID 247.7, recon 123.7 (an easier prior to fill, for a blurrier reconstruction);
# 4-d at 0.05: FID 285.8; at 0.3: FID 354.6 (D wins).
# Mixture with labels: with 1.0 the discriminator won (D(E(x)) ~ 0.2) and the codes stayed off
# their petals (component accuracy 0.33, FID 1140); with 3.0 every class fills its petal
# (component accuracy 0.89, FID 341).
register(ModelSpec(
    name="aae", build=AAE, steps=3000, batch_size=64, lr=1e-3,
    kwargs={"latent_dim": 4, "prior": "gaussian", "adversarial_lr": 0.1},
    summary="adversarial autoencoder: MLP autoencoder whose codes a discriminator matches to "
            "N(0, I_4); three phases per step (reconstruction, D on codes, encoder as G); "
            "eval scores 1,000 decoded prior samples (FID/KID)"))
register(ModelSpec(
    name="aae-mixture", build=AAE, steps=3000, batch_size=64, lr=1e-3,
    kwargs={"latent_dim": 2, "prior": "mixture", "label_prior": True, "adversarial_lr": 3.0},
    summary="adversarial autoencoder with a 2-D prior of 10 Gaussians on a circle, the label "
            "choosing each code's component (class-conditional samples; --arg "
            "label_prior=false for the unsupervised mixture); codes.png shows the test codes "
            "filling the petals, coloured by class"))
