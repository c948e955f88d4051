"""Generative adversarial networks: the MLP GAN (``gan``, ``gan-minimax``) and DCGAN (``dcgan``).

:mod:`.adversarial` holds what every GAN shares (the two players, their optimizers, the
alternating update), :mod:`.losses` the adversarial losses."""
from .adversarial import AdversarialModel
from .dcgan import DCGAN
from .gan import GAN
from .losses import ADVERSARIAL_LOSSES, adversarial_loss

__all__ = ["AdversarialModel", "GAN", "DCGAN", "ADVERSARIAL_LOSSES", "adversarial_loss"]
