r"""The lectures' table of GAN value functions, one backbone each: ``lsgan``, ``wgan``, ``wgan-gp``,
``dragan`` and ``sngan``.

Every entry is the shared adversarial step (:mod:`.adversarial`) with a game from :mod:`.losses`
and a constraint on the discriminator, on DCGAN's networks for images and the MLP GAN's for 2-D
points (:func:`backbone`), so that the games differ only where their papers differ:

==========  ==========================  =============================  ========  ===============
model       loss (:mod:`.losses`)       discriminator constraint       D steps   optimizer
==========  ==========================  =============================  ========  ===============
lsgan       least squares, a, b, c =    none (batch norm, as DCGAN)    1         Adam 2e-4,
            -1, 1, 0 (Mao et al. eq. 9)                                          (0.5, 0.999)
wgan        Wasserstein                 weights clipped to ±0.01       5         RMSprop 5e-5
wgan-gp     Wasserstein                 gradient penalty on            5         Adam 1e-4,
                                        interpolates, λ = 10;                    (0, 0.9)
                                        layer norm, no batch norm
dragan      non-saturating GAN          gradient penalty around the    1         Adam 1e-4,
                                        data, λ = 10; layer norm                 (0.5, 0.9)
sngan       hinge                       spectral norm on every         1         Adam 2e-4,
                                        weight; no other norm                    (0.5, 0.999)
==========  ==========================  =============================  ========  ===============

The optimizers and update ratios are the papers' (WGAN: Algorithm 1's α = 5e-5, c = 0.01,
n_critic = 5; WGAN-GP: Algorithm 1's λ = 10, n_critic = 5, α = 1e-4, β = (0, 0.9); DRAGAN:
the authors' code's λ = 10 and Adam(1e-4, 0.5, 0.9); SN-GAN: setting C of Miyato et al.'s
Table 1, α = 2e-4, β = (0.5, 0.999), n_dis = 1).  Deviation: DRAGAN's discriminator uses layer
norm instead of batch norm, for the reason WGAN-GP gives (a penalty on per-example gradients
needs a discriminator that treats the examples of a batch independently).  Every game states
its update ratio, so on 2-D points it overrides the MLP GAN's k = 2.
"""
from __future__ import annotations

from ..registry import ModelSpec, register
from .dcgan import DCGAN
from .gan import GAN, POINT_DEFAULTS

__all__ = ["backbone", "GAMES"]


def backbone(image_shape=(1, 28, 28), num_classes: int = 10, **kwargs):
    """DCGAN on (C, H, W) images, the MLP GAN on (D,) points, with ``kwargs`` (the game and
    the network's options) passed on.  DCGAN's ``critic_norm`` has no meaning for the MLP,
    whose discriminator has no normalisation: it is dropped for points."""
    if len(tuple(image_shape)) == 3:
        return DCGAN(image_shape, num_classes, **kwargs)
    kwargs.pop("critic_norm", None)
    return GAN(image_shape, num_classes, **kwargs)


# name -> (learning rate, keywords, default steps, summary)
GAMES = {
    "lsgan": (2e-4, {"loss": "least-squares", "k": 1}, 1500,
              "LSGAN (Mao et al.): least-squares losses, a, b, c = -1, 1, 0"),
    "wgan": (5e-5, {"loss": "wasserstein", "k": 5, "weight_clip": 0.01,
                    "optimizer": "rmsprop"}, 500,
             "WGAN (Arjovsky et al.): critic without sigmoid, weights clipped to ±0.01, "
             "RMSprop 5e-5, 5 critic steps"),
    "wgan-gp": (1e-4, {"loss": "wasserstein", "k": 5, "penalty": "wgan-gp",
                       "critic_norm": "layer", "betas": (0.0, 0.9)}, 400,
                "WGAN-GP (Gulrajani et al.): gradient penalty on interpolates (λ = 10), layer "
                "norm critic, Adam(1e-4, 0, 0.9), 5 critic steps"),
    "dragan": (1e-4, {"loss": "non-saturating", "k": 1, "penalty": "dragan", "critic_norm": "layer",
                      "betas": (0.5, 0.9)}, 1200,
               "DRAGAN (Kodali et al.): GAN loss plus a gradient penalty around perturbed "
               "real data (λ = 10)"),
    "sngan": (2e-4, {"loss": "hinge", "k": 1, "spectral_norm": True, "critic_norm": "none"}, 1500,
              "SN-GAN (Miyato et al.): spectral normalisation of every critic weight, hinge "
              "loss"),
}

# on the 2-D toy sets: the MLP GAN's settings (batch 256, lr 1e-3 decayed to 0) and its 4,000
# steps, for every game -- the papers' image learning rates (5e-5 to 2e-4) leave 4,000 steps on
# ring8 short of the ring (docs/gans.md)
_POINTS = {"points": {**POINT_DEFAULTS["points"], "steps": 4000}}

for _name, (_lr, _kwargs, _steps, _summary) in GAMES.items():
    register(ModelSpec(name=_name, build=backbone, steps=_steps, batch_size=64, lr=_lr,
                       sample_every=500, kwargs=dict(_kwargs), data_kinds=("image", "points"),
                       kind_defaults=_POINTS,
                       summary=_summary + "; DCGAN backbone on images, MLP on 2-D points"))
