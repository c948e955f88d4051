r"""GANs whose discriminator is an autoencoder: ``ebgan`` (Zhao, Mathieu & LeCun 2017) and
``began`` (Berthelot, Schumm & Metz 2017).

The discriminator no longer outputs the log-odds of "real": it encodes a sample to a code
:math:`S = \mathrm{Enc}(x)`, decodes it back, and scores the sample by its reconstruction error,
an *energy* -- low near the data the autoencoder has learnt to reconstruct, high elsewhere
(:class:`AutoencoderDiscriminator`, per example, ``energy=``):

.. math::
   :label: energy

   D(x) = \|\mathrm{Dec}(\mathrm{Enc}(x)) - x\|_2 \;\; (\texttt{"l2"}), \quad
   \tfrac1P \|\mathrm{Dec}(\mathrm{Enc}(x)) - x\|_2^2 \;\; (\texttt{"mse"}), \quad
   \tfrac1P \|\mathrm{Dec}(\mathrm{Enc}(x)) - x\|_1 \;\; (\texttt{"l1"})           \tag{1}

over the P values of a sample.  Both models are the shared adversarial step
(:mod:`.adversarial`): k discriminator updates, one generator update, the fakes of the two
updates from fresh codes (Berthelot et al.'s :math:`z_D` and :math:`z_G`).  The energies are
the discriminator's "logits"; the games below are :class:`~.losses.AdversarialLoss` pairs on
those scores (``log_odds=False``: tricks that move probability targets do not apply).

EBGAN (Zhao et al. 2017, section 2)
-----------------------------------
A margin m: D pulls the energy of real data down and pushes that of fakes up until it exceeds
m; G pulls the energy of its fakes down, plus the pulling-away term on the codes of its batch of
N fakes, which repels them from one another (against mode collapse):

.. math::

   \mathcal L_D = \mathbb E_x D(x) + \mathbb E_z \big[m - D(G(z))\big]^+          \tag{2}

   \mathcal L_G = \mathbb E_z D(G(z)) + \lambda_{PT}\, f_{PT}(S)                       \tag{3}

   f_{PT}(S) = \frac{1}{N(N-1)} \sum_i \sum_{j \ne i}
               \Big(\frac{S_i^\top S_j}{\|S_i\|\,\|S_j\|}\Big)^2                       \tag{4}

Defaults: ``energy="l2"``, the paper's :math:`D(x) = \|\mathrm{Dec}(\mathrm{Enc}(x)) - x\|`;
m = 10 on images (the MNIST margin as reported by implementations that follow the paper, e.g.
m = 20 for CelebA; we could not check the paper's appendix text here) and m = 1 on 2-D points
(ours: the points' reconstruction errors are of order 1); :math:`\lambda_{PT} = 0.1` (the
paper's weight); Adam(2e-4, 0.5, 0.999), DCGAN's.  Logged: ``energy_real`` and
``energy_fake`` (the mean D(x) and D(G(z)) of the discriminator updates) and ``pt``
(:math:`f_{PT}` of the generator's batch).

BEGAN (Berthelot et al. 2017, section 3)
----------------------------------------
With :math:`L(v) = |v - D(v)|^\eta` the autoencoder's pixel-wise loss (1) -- L1, η = 1, as
the paper's experiments (``energy="mse"`` is its η = 2) -- and a proportional
controller :math:`k_t \in [0, 1]` that keeps the energies of fakes at the ratio γ (the
*diversity ratio*) of those of real data, :math:`\mathbb E\,L(G(z)) = \gamma\, \mathbb E\,L(x)`:

.. math::

   \mathcal L_D = L(x) - k_t\, L(G(z_D))                                               \tag{5}

   \mathcal L_G = L(G(z_G))                                                            \tag{6}

   k_{t+1} = \operatorname{clip}\big(k_t + \lambda_k (\gamma L(x) - L(G(z_G))),\, 0,\, 1\big)
                                                                                       \tag{7}

   \mathcal M_\text{global} = L(x) + |\gamma L(x) - L(G(z_G))|                         \tag{8}

:math:`\mathcal M_\text{global}`, the paper's convergence measure, falls as the model
converges; it is logged every step (``m_global``), so the training loop's ``loss.png`` plots
it beside ``k_t`` (the value after the update, used by the next step's (5)).  Defaults:
γ = 0.5, :math:`\lambda_k = 0.001`, :math:`k_0 = 0` (the paper's); Adam(1e-4, 0.5, 0.999) --
the paper's initial rate (its range is [5e-5, 1e-4]), the betas the authors' implementations
use.  :math:`k_t` is a buffer (``k_t``, float64): it is saved in checkpoints, so a resumed run
goes on exactly.

Networks
--------
Images: DCGAN's generator (:func:`~.dcgan.dcgan_generator`, the benchmark's backbone) and an
autoencoder discriminator of :class:`~nanogen.models.autoencoders.networks.ConvEncoder` /
:class:`~nanogen.models.autoencoders.networks.ConvDecoder` with the DCGAN discriminator's widths
(``channels``, stride-2 4x4 convolutions down to a ``code_dim`` code and back), ReLU for EBGAN
and ELU for BEGAN (the papers'), no batch norm.  Points: the MLP GAN's layers
(:func:`~.gan.mlp`), an MLP autoencoder through ``hidden`` to ``code_dim`` and back (a 2-D code
for EBGAN, 1-D for BEGAN: see :attr:`BEGAN.point_code_dim`).  The pulling-away term needs codes
of 2 or more dimensions: 1-D codes are all parallel, :math:`f_{PT} = 1` with no gradient.

Deviations from the papers
--------------------------
* The generator is DCGAN's (batch norm, ReLU, tanh), not BEGAN's decoder-shaped generator
  (ELU, nearest-neighbour upsampling, no batch norm), and the autoencoder downsamples by strided
  convolutions, so that every loss of the lectures' table is compared on one backbone.
* BEGAN's learning rate is constant (the paper halves it when M_global stalls).
* In the paper's algorithm all three losses of a step are computed with the same D; here the
  shared step updates D first, so (6) and the L(G(z_G)) of (7) and (8) are measured by the
  updated D (the order of Goodfellow et al.'s Algorithm 1).  L(x) in (7) and (8) is the mean over
  the k discriminator updates of the step (k = 1 by default), averaged over the ranks of a
  distributed run so that every rank keeps the same :math:`k_t`.
"""
from __future__ import annotations

import math

import numpy as np

from ... import functional as F
from ... import nn
from ...autograd import no_grad
from ...creation import tensor
from ...utils.checks import positive_int
from ..autoencoders.networks import ACTIVATIONS, ConvDecoder, ConvEncoder, check_hidden
from ..base import check_channels, check_halvings
from ..registry import ModelSpec, register
from .adversarial import AdversarialModel
from .dcgan import dcgan_generator, radford_init_
from .gan import POINT_DEFAULTS, check_sample_shape, mlp
from .losses import AdversarialLoss

__all__ = ["ENERGIES", "reconstruction_energy", "pulling_away_term", "margin_loss",
           "began_k_update", "convergence_measure", "AutoencoderDiscriminator",
           "autoencoder_discriminator", "EnergyGAN", "EBGAN", "BEGAN"]

ENERGIES = ("l2", "mse", "l1")


# ------------------------------------------------------------------------------ the pieces
def reconstruction_energy(x, reconstruction, kind: str = "l2"):
    """The energy (1) of each sample of ``x`` (N, ...) given its ``reconstruction``: the
    Euclidean norm of the error (``"l2"``), its mean square (``"mse"``) or its mean absolute
    value (``"l1"``) over the sample's values; shape (N,)."""
    if kind not in ENERGIES:
        raise ValueError(f"unknown energy {kind!r}; choose one of {', '.join(ENERGIES)}")
    if tuple(x.shape) != tuple(reconstruction.shape) or x.ndim < 2:
        raise ValueError(f"reconstruction_energy: expected a batch (N, ...) and its "
                         f"reconstruction of the same shape, got {tuple(x.shape)} and "
                         f"{tuple(reconstruction.shape)}")
    error = (reconstruction - x).flatten(1)
    if kind == "l2":
        return (error * error).sum(1).sqrt()                     # eq. (1), EBGAN
    if kind == "mse":
        return (error * error).mean(1)                           # eq. (1)
    return error.abs().mean(1)                                   # eq. (1), BEGAN's eta = 1


def pulling_away_term(codes):
    r""":math:`f_{PT}(S)` (4): the mean squared cosine similarity over the N(N - 1) ordered
    pairs of distinct rows of ``codes`` (N, F), N >= 2.  0 for orthogonal codes, 1 for
    parallel ones."""
    if codes.ndim != 2 or codes.shape[0] < 2:
        raise ValueError(f"pulling_away_term: expected codes of shape (N, F) with N >= 2, got "
                         f"{tuple(codes.shape)}")
    n = codes.shape[0]
    unit = codes / (codes * codes).sum(1, keepdim=True).sqrt()   # S_i / ||S_i||
    cosines = unit.matmul(unit.transpose(0, 1))                 # (N, N)
    squared = cosines * cosines
    diagonal = ((unit * unit).sum(1) ** 2).sum()                 # the i = j terms (each 1)
    return (squared.sum() - diagonal) / (n * (n - 1))            # eq. (4)


def margin_loss(real_energies, fake_energies, margin: float):
    r"""EBGAN's discriminator loss (2): :math:`\mathbb E D(x) + \mathbb E [m - D(G(z))]^+`;
    gradient 1/N per real energy, -1/N per fake energy below the margin, 0 above it."""
    for name, e in (("real", real_energies), ("fake", fake_energies)):
        if e.ndim != 1:
            raise ValueError(f"margin_loss ({name}): expected energies of shape (N,), got "
                             f"{tuple(e.shape)}")
    return real_energies.mean() + F.relu(margin - fake_energies).mean()     # eq. (2)


def _mean_energy(fake_energies):
    r""":math:`\mathbb E D(G(z))`: the energy part of both generators' losses, (3) and (6)."""
    if fake_energies.ndim != 1:
        raise ValueError(f"expected energies of shape (N,), got {tuple(fake_energies.shape)}")
    return fake_energies.mean()


def began_k_update(k: float, real: float, fake: float, gamma: float, lambda_k: float) -> float:
    r"""BEGAN's controller (7): :math:`\operatorname{clip}(k + \lambda_k (\gamma\, real - fake),
    0, 1)`, with ``real`` = L(x) and ``fake`` = L(G(z_G))."""
    return float(min(max(k + lambda_k * (gamma * real - fake), 0.0), 1.0))   # eq. (7)


def convergence_measure(real: float, fake: float, gamma: float) -> float:
    r""":math:`\mathcal M_\text{global} = L(x) + |\gamma L(x) - L(G(z_G))|` (8)."""
    return float(real + abs(gamma * real - fake))                          # eq. (8)


# ------------------------------------------------------------------------------ the network
class AutoencoderDiscriminator(nn.Module):
    """x -> energies (N,): ``encoder`` to a code, ``decoder`` back, the reconstruction error
    (1) of kind ``energy``.  :meth:`energies_and_codes` also returns the codes (EBGAN's
    pulling-away term needs them)."""

    def __init__(self, encoder, decoder, energy: str = "l2"):
        super().__init__()
        if energy not in ENERGIES:
            raise ValueError(f"unknown energy {energy!r}; choose one of {', '.join(ENERGIES)}")
        self.encoder, self.decoder, self.energy = encoder, decoder, energy

    def energies_and_codes(self, x):
        codes = self.encoder(x)
        reconstruction = self.decoder(codes).reshape(*x.shape)
        return reconstruction_energy(x, reconstruction, self.energy), codes

    def reconstruct(self, x):
        return self.decoder(self.encoder(x)).reshape(*x.shape)

    def forward(self, x):
        return self.energies_and_codes(x)[0]


def autoencoder_discriminator(sample_shape, code_dim: int, channels=(64, 128), hidden=(256, 256),
                              activation: str = "relu", energy: str = "l2"):
    """The autoencoder discriminator for ``sample_shape``: for (C, H, W) images a
    ConvEncoder / ConvDecoder pair through ``channels`` (stride-2 4x4 convolutions, linear
    to and from the ``code_dim`` code); for (D,) points an MLP through ``hidden`` to the code
    and back.  ``activation`` between the layers (a name of
    :data:`~nanogen.models.autoencoders.networks.ACTIVATIONS`)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of "
                         f"{', '.join(sorted(ACTIVATIONS))}")
    code_dim = positive_int(code_dim, "code_dim")
    shape = tuple(sample_shape)
    if len(shape) == 3:
        return AutoencoderDiscriminator(
            ConvEncoder(shape, code_dim, channels, activation=activation),
            ConvDecoder(code_dim, shape, channels, activation=activation), energy)
    features = math.prod(shape)
    act = ACTIVATIONS[activation]
    return AutoencoderDiscriminator(
        nn.Sequential(nn.Flatten(), *mlp((features, *hidden, code_dim), act)),
        nn.Sequential(*mlp((code_dim, *reversed(hidden), features), act)), energy)


# ------------------------------------------------------------------------------ the models
# defaults per data kind (images: DCGAN's generator; points: the MLP GAN's sizes)
_IMAGE_DEFAULTS = {"latent_dim": 100, "code_dim": 64}
_POINT_DEFAULTS = {"latent_dim": 2, "hidden": (256, 256, 256)}


def _nonnegative(value, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or \
            not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: {what} must be a finite number >= 0, got {value!r}")
    return float(value)


class EnergyGAN(AdversarialModel):
    """What EBGAN and BEGAN share: a generator (DCGAN's for (C, H, W) images, an MLP for (D,)
    points) against an autoencoder discriminator whose per-sample energy (1) replaces the
    logit (:meth:`discriminate`), and the game (:attr:`game`) played on those energies.

    ``channels`` (images) and ``hidden`` (points) size both networks; ``code_dim`` the
    autoencoder's code; ``energy`` its reconstruction error (1); ``activation`` its
    nonlinearity.  ``k``, ``penalty``, ``weight_clip``, ``spectral_norm``, ``optimizer`` and
    ``betas`` as for :class:`~.adversarial.AdversarialModel` (the game is fixed: no ``loss``).
    ``num_classes`` is accepted for the common model interface and not used.
    """

    game_name = "energy"
    default_energy = "l2"
    default_activation = "relu"
    point_code_dim = 2            # the autoencoder's code on (D,) points, unless code_dim says

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10,
                 latent_dim: int | None = None, channels=(64, 128), hidden=None,
                 code_dim: int | None = None, energy: str | None = None,
                 activation: str | None = None, k: int = 1, **game):
        name = type(self).__name__
        if "loss" in game:
            raise ValueError(f"{name} plays its own game on the autoencoder's energies; it "
                             f"takes no loss= (got {game['loss']!r})")
        shape = check_sample_shape(image_shape, name)
        images = len(shape) == 3
        defaults = _IMAGE_DEFAULTS if images else {**_POINT_DEFAULTS,
                                                   "code_dim": self.point_code_dim}
        latent_dim = positive_int(defaults["latent_dim"] if latent_dim is None else latent_dim,
                                  f"{name}: latent_dim")
        code_dim = positive_int(defaults["code_dim"] if code_dim is None else code_dim,
                                f"{name}: code_dim")
        energy = self.default_energy if energy is None else energy
        activation = self.default_activation if activation is None else activation
        if images:
            channels = check_channels(channels)
            check_halvings(shape, len(channels), name)
            generator = radford_init_(dcgan_generator(latent_dim, shape, channels))
        else:
            hidden = check_hidden(defaults["hidden"] if hidden is None else hidden)
            if not hidden:
                raise ValueError(f"{name}: hidden must name at least one hidden layer")
            generator = nn.Sequential(*mlp((latent_dim, *hidden, shape[0]), nn.ReLU))
        try:
            discriminator = autoencoder_discriminator(shape, code_dim, channels, hidden or (),
                                                      activation, energy)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        super().__init__(generator, discriminator, latent_dim=latent_dim, sample_shape=shape,
                         loss=self.game(), k=k, **game)
        self.num_classes = num_classes
        self.channels, self.hidden, self.code_dim = channels, hidden, code_dim
        self.energy, self.activation = energy, activation

    def game(self) -> AdversarialLoss:
        """The pair of losses on the energies (plain scores: ``log_odds=False``)."""
        raise NotImplementedError

    def discriminate(self, x, condition=None):
        """The energies D(x) (1), (N,): the discriminator's score of each sample (low: real)."""
        return super().discriminate(x, condition)

    def energies_and_codes(self, x):
        """(D(x), Enc(x)): the energies (N,) and the autoencoder's codes (N, code_dim)."""
        self._check_samples(x, "energies_and_codes")
        return self.discriminator.energies_and_codes(x)

    def discriminator_loss(self, real, labels, fake, condition):
        """The game's discriminator loss (and a gradient penalty if any), logged with the mean
        energies as ``energy_real`` / ``energy_fake``."""
        loss, logs = super().discriminator_loss(real, labels, fake, condition)
        renamed = {"score_real": "energy_real", "score_fake": "energy_fake"}
        return loss, {renamed.get(key, key): value for key, value in logs.items()}


class EBGAN(EnergyGAN):
    """EBGAN (Zhao et al. 2017): the margin loss (2) for D, the energy plus ``pt_weight``
    times the pulling-away term (3), (4) for G.  ``margin`` m (None: 10 on images, 1 on
    points), ``pt_weight`` :math:`\\lambda_{PT}` (0.1; 0 leaves the term out).  The other
    keywords: :class:`EnergyGAN`."""

    game_name = "ebgan"
    default_energy = "l2"
    default_activation = "relu"

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10,
                 margin: float | None = None, pt_weight: float = 0.1, **kwargs):
        images = len(tuple(image_shape)) == 3
        margin = (10.0 if images else 1.0) if margin is None else margin
        margin = _nonnegative(margin, "margin", "EBGAN")
        if margin == 0:
            raise ValueError("EBGAN: margin must be > 0 (with m = 0 the discriminator never "
                             "pushes the energy of fakes up)")
        pt_weight = _nonnegative(pt_weight, "pt_weight", "EBGAN")
        super().__init__(image_shape, num_classes, **kwargs)
        self.margin, self.pt_weight = margin, pt_weight

    def game(self):
        return AdversarialLoss(lambda real, fake: margin_loss(real, fake, self.margin),
                               _mean_energy, log_odds=False, name=self.game_name)

    def generator_loss(self, fake, condition):
        """(3): the mean energy of the fakes plus :math:`\\lambda_{PT} f_{PT}` of their codes;
        logs ``pt``."""
        energies, codes = self.energies_and_codes(fake)
        loss = self.adversarial.generator(energies)
        if fake.shape[0] < 2:
            return loss, {}
        pt = pulling_away_term(codes)
        if self.pt_weight > 0:
            loss = loss + self.pt_weight * pt                   # eq. (3)
        return loss, {"pt": float(pt.item())}


class BEGAN(EnergyGAN):
    """BEGAN (Berthelot et al. 2017): D on (5), G on (6), the controller (7) after every
    step and the convergence measure (8) logged.  ``gamma`` γ in (0, 1] (the diversity ratio,
    0.5), ``lambda_k`` (0.001), ``k0`` the initial :math:`k_t` (0).  The other keywords:
    :class:`EnergyGAN` (energy ``"l1"`` and ELU by default, the paper's)."""

    game_name = "began"
    default_energy = "l1"
    default_activation = "elu"
    # on ring8 (latent 8, hidden (64, 64), 300 steps at 2e-3) a 2-D code let the autoencoder
    # reconstruct the whole plane: energies near 0 for data and fakes alike, and the samples did
    # not move (mean distance to the nearest mode 1.90 -> 1.90); a 1-D code cannot, and the
    # samples moved towards the ring (1.91 -> 0.67, 1.86 -> 1.29, 1.92 -> 1.40 for seeds 0-2),
    # onto one or two modes
    point_code_dim = 1

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, gamma: float = 0.5,
                 lambda_k: float = 0.001, k0: float = 0.0, **kwargs):
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.number)) or \
                not 0.0 < gamma <= 1.0:
            raise ValueError(f"BEGAN: gamma (the diversity ratio) must be in (0, 1], got "
                             f"{gamma!r}")
        lambda_k = _nonnegative(lambda_k, "lambda_k", "BEGAN")
        k0 = _nonnegative(k0, "k0", "BEGAN")
        if k0 > 1:
            raise ValueError(f"BEGAN: k0 must be in [0, 1], got {k0!r}")
        super().__init__(image_shape, num_classes, **kwargs)
        self.gamma, self.lambda_k = float(gamma), lambda_k
        self.register_buffer("k_t", tensor(k0, dtype=np.float64))

    @property
    def k(self) -> float:
        """The current :math:`k_t`."""
        return float(self.k_t.item())

    def game(self):
        return AdversarialLoss(lambda real, fake: real.mean() - self.k * fake.mean(),  # eq. (5)
                               _mean_energy, log_odds=False, name=self.game_name)       # eq. (6)

    def generator_loss(self, fake, condition):
        """(6), L(G(z_G)); logs it as ``energy_gen`` for the controller (7)."""
        loss, logs = super().generator_loss(fake, condition)
        return loss, {**logs, "energy_gen": float(loss.item())}

    def training_step(self, batch, optimizers) -> dict:
        """The shared step on (5) and (6), then the controller (7) on its L(x) and
        L(G(z_G)); logs ``k_t`` (after the update) and ``m_global`` (8)."""
        logs = super().training_step(batch, optimizers)
        from ... import distributed                 # every rank keeps the same k_t
        measured = distributed.average_logs({"real": logs["energy_real"],
                                             "fake": logs["energy_gen"]}, distributed.world())
        real, fake = measured["real"], measured["fake"]
        k_next = began_k_update(self.k, real, fake, self.gamma, self.lambda_k)
        with no_grad():
            self.k_t.fill_(k_next)
        return {**logs, "k_t": k_next,
                "m_global": convergence_measure(real, fake, self.gamma)}


# ------------------------------------------------------------------------------ the registry
# on the 2-D toy sets: the MLP GAN's settings (batch 256, lr 1e-3 decayed to 0) and its 4,000
# steps, for every game -- the papers' image learning rates (5e-5 to 2e-4) leave 4,000 steps on
# ring8 short of the ring (docs/gans.md)
_POINTS = {"points": {**POINT_DEFAULTS["points"], "steps": 4000}}

_SUMMARIES = {
    "ebgan": "EBGAN (Zhao et al.): autoencoder discriminator, energy ||Dec(Enc(x)) - x||, "
             "margin loss (m = 10), pulling-away term (0.1)",
    "began": "BEGAN (Berthelot et al.): autoencoder discriminator with L1 energy, equilibrium "
             "control k_t (gamma 0.5, lambda_k 0.001), convergence measure M_global logged",
}
# name -> (class, learning rate, default steps)
for _name, (_cls, _lr, _steps) in {"ebgan": (EBGAN, 2e-4, 1000),
                                   "began": (BEGAN, 1e-4, 800)}.items():
    register(ModelSpec(name=_name, build=_cls, steps=_steps, batch_size=64, lr=_lr,
                       sample_every=500, data_kinds=("image", "points"), kind_defaults=_POINTS,
                       summary=_SUMMARIES[_name] + "; DCGAN generator on images, MLP on 2-D "
                                                   "points"))
