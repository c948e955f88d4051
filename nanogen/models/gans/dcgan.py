r"""DCGAN (Radford, Metz & Chintala 2016): the GAN game played by convolutional networks.

The game and its updates are the GAN's (:mod:`.adversarial`, :mod:`.losses`):

.. math:: \min_G \max_D\; \mathbb E_x \log D(x) + \mathbb E_z \log(1 - D(G(z))),

D stepping on :math:`-V` (gradient per logit: :math:`\sigma(\ell) - 1` on real,
:math:`\sigma(\ell)` on fake), G on the non-saturating :math:`-\mathbb E_z \log D(G(z))`
(gradient per fake logit :math:`-(1 - D(G(z)))`) unless ``loss="minimax"``.

What makes it DCGAN are the architecture guidelines of the paper (section 3), each visible below:

1. no pooling: the discriminator downsamples with stride-2 convolutions, the generator upsamples
   with stride-2 transposed convolutions;
2. batch normalisation in both networks, except at the generator's output layer and the
   discriminator's input layer;
3. no fully connected hidden layers: the code is projected straight to the first feature map
   (a transposed convolution from 1x1 to h x w), and the last feature map to one logit;
4. ReLU in the generator, tanh at its output; LeakyReLU(0.2) in the discriminator;
5. Adam with lr 2e-4 and :math:`\beta_1 = 0.5`; weights initialised from
   :math:`\mathcal N(0, 0.02^2)` (batch-norm scales from :math:`\mathcal N(1, 0.02^2)`).

For MNIST with ``channels=(64, 128)`` (the benchmark's network)::

    G:  z (N, 100) -> (100, 1, 1) -convT 7x7-> 128 x 7 x 7 -BN-ReLU-> -convT 4/2-> 64 x 14 x 14
        -BN-ReLU-> -convT 4/2-> 1 x 28 x 28 -tanh->
    D:  x (N, 1, 28, 28) -conv 4/2-> 64 x 14 x 14 -LReLU-> -conv 4/2-> 128 x 7 x 7 -BN-LReLU->
        -flatten-linear-> logit (N,)
"""
from __future__ import annotations

from ... import nn
from ..base import check_channels, check_halvings, feature_map_shape
from ..registry import ModelSpec, register
from ...utils.checks import positive_int
from .adversarial import AdversarialModel

__all__ = ["DCGAN", "dcgan_generator", "dcgan_discriminator", "radford_init_", "CRITIC_NORMS"]


def dcgan_generator(latent_dim: int, image_shape, channels=(64, 128), layers=nn):
    """z (N, latent_dim) -> images (N, C, H, W) in [-1, 1]: a transposed convolution from the
    1x1 code to the first (channels[-1], H / 2^L, W / 2^L) map, then one stride-2 transposed
    convolution per entry of ``channels`` (in reverse), batch norm and ReLU between, tanh at the
    end.  ``layers`` is the module the layers come from: nanogen.nn, or torch.nn to build the
    same network for a comparison."""
    c_last, h, w = feature_map_shape(image_shape, channels)
    widths = tuple(reversed(channels))                          # e.g. (128, 64)
    stack = [layers.Unflatten(1, (latent_dim, 1, 1)),
             layers.ConvTranspose2d(latent_dim, c_last, (h, w), 1, 0, bias=False),   # project
             layers.BatchNorm2d(c_last), layers.ReLU()]
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        stack += [layers.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),  # 2x upsampling
                  layers.BatchNorm2d(c_out), layers.ReLU()]
    stack += [layers.ConvTranspose2d(widths[-1], image_shape[0], 4, 2, 1),   # no BN at output
              layers.Tanh()]
    return layers.Sequential(*stack)


CRITIC_NORMS = ("batch", "layer", "none")


def _critic_norm(kind: str, channels: int, layers):
    """The normalisation after a discriminator convolution: batch norm (DCGAN), layer norm over
    (C, H, W) with a scale and shift per channel (GroupNorm with one group; WGAN-GP's choice,
    since a gradient penalty is per example), or none (spectral norm's critic)."""
    if kind == "batch":
        return [layers.BatchNorm2d(channels)]
    if kind == "layer":
        return [layers.GroupNorm(1, channels)]
    return []


def dcgan_discriminator(image_shape, channels=(64, 128), layers=nn, norm: str = "batch"):
    """images (N, C, H, W) -> logits (N, 1): one stride-2 convolution per entry of ``channels``
    with LeakyReLU(0.2), ``norm`` (:data:`CRITIC_NORMS`) after all but the first, then a linear
    map of the last feature map to one logit.  ``layers`` as for :func:`dcgan_generator`."""
    if norm not in CRITIC_NORMS:
        raise ValueError(f"DCGAN: critic_norm must be one of {', '.join(CRITIC_NORMS)}, got "
                         f"{norm!r}")
    c_last, h, w = feature_map_shape(image_shape, channels)
    stack = [layers.Conv2d(image_shape[0], channels[0], 4, 2, 1),   # no BN at the input layer
             layers.LeakyReLU(0.2)]
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        stack += [layers.Conv2d(c_in, c_out, 4, 2, 1, bias=norm == "none"),  # 2x down, no pool
                  *_critic_norm(norm, c_out, layers), layers.LeakyReLU(0.2)]
    stack += [layers.Flatten(), layers.Linear(c_last * h * w, 1)]
    return layers.Sequential(*stack)


def radford_init_(module):
    """Weights of every (transposed) convolution and linear layer in ``module`` from N(0, 0.02²)
    and their biases 0; batch-norm scales from N(1, 0.02²) and shifts 0.  In place."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


class DCGAN(AdversarialModel):
    """A DCGAN on images ``image_shape`` (C, H, W), H and W divisible by 2^len(channels).

    ``channels`` the discriminator's widths per resolution (the generator mirrors them),
    ``latent_dim`` d, ``critic_norm`` the discriminator's normalisation (``"batch"``,
    ``"layer"`` or ``"none"``).  ``loss``, ``k`` and the other keywords (penalty,
    weight_clip, spectral_norm, optimizer, betas) choose the game, and the training tricks
    (real_label, replay, minibatch_kernels, ...: :mod:`.tricks`) are options too:
    :class:`~.adversarial.AdversarialModel`.  ``num_classes`` is accepted for the common model
    interface and not used: the model is unconditional.
    """

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, latent_dim: int = 100,
                 channels=(64, 128), loss: str = "non-saturating", k: int = 1,
                 critic_norm: str = "batch", **game):
        if len(tuple(image_shape)) != 3:
            raise ValueError(f"DCGAN models images: image_shape must be (C, H, W), got "
                             f"{image_shape!r} (the MLP GAN, `gan`, handles 2-D points)")
        latent_dim = positive_int(latent_dim, "DCGAN: latent_dim")
        shape, channels = tuple(image_shape), tuple(channels)
        check_halvings(shape, len(check_channels(channels)), "DCGAN")
        super().__init__(radford_init_(dcgan_generator(latent_dim, shape, channels)),
                         radford_init_(dcgan_discriminator(shape, channels, norm=critic_norm)),
                         latent_dim=latent_dim, sample_shape=shape, loss=loss, k=k, **game)
        self.num_classes = num_classes
        self.channels = channels
        self.critic_norm = critic_norm


register(ModelSpec(
    name="dcgan", build=DCGAN, steps=1500, batch_size=64, lr=2e-4, sample_every=500,
    summary="DCGAN (Radford et al.): strided convs + batch norm, ReLU/tanh G, LeakyReLU D, "
            "non-saturating loss, Adam 2e-4 beta1 0.5; latent interpolation grids (lerp, slerp)"))
