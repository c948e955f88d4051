r"""The original GAN (Goodfellow et al. 2014): two multilayer perceptrons playing the minimax game.

The generator maps :math:`z \sim \mathcal N(0, I_d)` through fully connected ReLU layers to a
sample -- an image through a final tanh (pixels in [-1, 1]), or a point of a toy 2-D set as is;
the discriminator maps the flattened sample through fully connected LeakyReLU(0.2) layers to
one logit :math:`\ell`, :math:`D = \sigma(\ell)`::

    G:  z (N, d) -> Linear-[BatchNorm]-ReLU x L -> Linear -> [tanh] -> (N, *sample_shape)
    D:  x -> flatten -> Linear-LeakyReLU-[Dropout] x L -> Linear -> logit (N,)

The two are trained on the value (see :mod:`.adversarial` for the alternating updates and
:mod:`.losses` for the gradients)

.. math:: V(D, G) = \mathbb E_x \log D(x) + \mathbb E_z \log(1 - D(G(z))),

D ascending it (``loss_d`` = :math:`-V`, :math:`\nabla_\phi V`) k times per step, G descending
:math:`\mathbb E_z \log(1 - D(G(z)))` (``loss="minimax"``, gradient per fake logit
:math:`-D(G(z))`) or :math:`-\mathbb E_z \log D(G(z))` (``loss="non-saturating"``, gradient
:math:`-(1 - D(G(z)))`) once.

The same class serves both data kinds: ``sample_shape`` (2,) gives the 2-D GAN of the mode
coverage experiments (ring8, grid25), (1, 28, 28) the MNIST one.
"""
from __future__ import annotations

import math

import numpy as np

from ... import nn
from ..registry import ModelSpec, register
from ...utils.checks import positive_int
from .adversarial import AdversarialModel

__all__ = ["GAN", "mlp", "check_sample_shape", "POINT_BACKBONE", "IMAGE_BACKBONE"]

# defaults per data kind: the toy sets need small nets; MNIST the usual 256-512-1024 MLP
# (on ring8, k = 2 covered all 8 modes with each of seeds 0, 1, 2; k = 1 with one of the three)
POINT_BACKBONE = {"latent_dim": 2, "hidden": (256, 256, 256), "dropout": 0.0, "k": 2,
                   "batch_norm": False}
IMAGE_BACKBONE = {"latent_dim": 100, "hidden": (256, 512, 1024), "dropout": 0.3, "k": 1,
                   "batch_norm": True}


def check_sample_shape(image_shape, name: str) -> tuple:
    """``image_shape`` as a tuple: (C, H, W) for images or (D,) for points, positive ints; one
    ValueError naming ``name`` otherwise.  Every GAN that takes both kinds checks with this."""
    shape = tuple(image_shape)
    if len(shape) not in (1, 3) or not all(isinstance(s, (int, np.integer)) and s > 0
                                           for s in shape):
        raise ValueError(f"{name}: image_shape must be (C, H, W) for images or (D,) for "
                         f"points, with positive ints; got {image_shape!r}")
    return shape


def mlp(sizes, activation, dropout: float = 0.0, batch_norm: bool = False) -> list:
    """Linear layers between consecutive ``sizes``, each but the last followed by
    BatchNorm1d (when ``batch_norm``), ``activation()``, and Dropout(dropout) when dropout > 0."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers += ([nn.BatchNorm1d(n_out)] if batch_norm else []) + [activation()] + (
                [nn.Dropout(dropout)] if dropout > 0 else [])
    return layers


def _leaky_relu():
    return nn.LeakyReLU(0.2)


class GAN(AdversarialModel):
    """An MLP GAN on ``image_shape`` -- (C, H, W) images or (D,) points.

    ``hidden`` the generator's hidden widths (the discriminator uses them in reverse order),
    ``latent_dim`` d, ``dropout`` the rate after each hidden layer of the discriminator (as in
    Goodfellow et al.'s MNIST model: it keeps D from memorising the 4,000 training images); all
    default per data kind, like ``k``, the discriminator updates per generator update, and
    ``batch_norm``, BatchNorm1d after each hidden layer of the generator (points: d = 2,
    (256, 256, 256), no dropout, k = 2, no batch norm; images: d = 100, (256, 512, 1024), dropout
    0.3, k = 1, batch norm -- without it, on mnist5k, G collapsed onto noisy ones within 4,000
    steps, FID 1409; with it, varied digits, FID 148).  ``loss`` and the other keywords
    (penalty, weight_clip, spectral_norm, optimizer, betas) choose the game, and the training
    tricks (real_label, replay, minibatch_kernels, ...: :mod:`.tricks`) are options too:
    :class:`~.adversarial.AdversarialModel`.  ``num_classes`` is accepted for the common model
    interface and not used: the model is unconditional.
    """

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10,
                 latent_dim: int | None = None, hidden=None, dropout: float | None = None,
                 loss: str = "non-saturating", k: int | None = None,
                 batch_norm: bool | None = None, **game):
        shape = check_sample_shape(image_shape, "GAN")
        defaults = IMAGE_BACKBONE if len(shape) == 3 else POINT_BACKBONE
        latent_dim = defaults["latent_dim"] if latent_dim is None else latent_dim
        hidden = tuple(defaults["hidden"] if hidden is None else hidden)
        dropout = defaults["dropout"] if dropout is None else float(dropout)
        k = defaults["k"] if k is None else k
        batch_norm = defaults["batch_norm"] if batch_norm is None else bool(batch_norm)
        if not hidden or not all(isinstance(h, (int, np.integer)) and h > 0 for h in hidden):
            raise ValueError(f"GAN: hidden must be a non-empty sequence of positive ints, got "
                             f"{hidden!r}")
        latent_dim = positive_int(latent_dim, "GAN: latent_dim")
        features = math.prod(shape)
        images = len(shape) == 3
        generator = nn.Sequential(
            *mlp((latent_dim, *hidden, features), nn.ReLU, batch_norm=batch_norm),
            *([nn.Tanh()] if images else []),                 # pixels in [-1, 1]
            nn.Unflatten(1, shape))
        discriminator = nn.Sequential(
            nn.Flatten(),
            *mlp((features, *reversed(hidden), 1), _leaky_relu, dropout))
        super().__init__(generator, discriminator, latent_dim=latent_dim,
                         sample_shape=shape, loss=loss, k=k, **game)
        self.num_classes = num_classes
        self.hidden = hidden


# -- the registry: ``nanogen train gan`` etc. ----------------------------------------------------
_SUMMARY = ("MLP GAN (G: 100-256-512-1024-784 BN-ReLU/tanh, D: LeakyReLU + dropout), {}; "
            "--dataset ring8/grid25 trains the 2-D GAN and `nanogen eval` reports mode coverage")
# on the 2-D toy sets: bigger batches, a faster lr decayed to 0 (the ring8 figures in the README)
POINT_DEFAULTS = {"points": {"batch_size": 256, "lr": 1e-3, "lr_schedule": "cosine"}}

register(ModelSpec(
    name="gan", build=GAN, steps=4000, batch_size=64, lr=2e-4, kwargs={"loss": "non-saturating"},
    data_kinds=("image", "points"), kind_defaults=POINT_DEFAULTS,
    summary=_SUMMARY.format("non-saturating generator loss -log D(G(z))")))
register(ModelSpec(
    name="gan-minimax", build=GAN, steps=4000, batch_size=64, lr=2e-4,
    kwargs={"loss": "minimax"}, data_kinds=("image", "points"), kind_defaults=POINT_DEFAULTS,
    summary=_SUMMARY.format("the original minimax generator loss log(1 - D(G(z)))")))
