"""Generative adversarial networks: the MLP GAN (``gan``, ``gan-minimax``), DCGAN (``dcgan``) and
the table of games on their backbone (``lsgan``, ``wgan``, ``wgan-gp``, ``dragan``, ``sngan``).

:mod:`.adversarial` holds what every GAN shares (the two players, their optimizers, the
alternating update), :mod:`.losses` the adversarial losses, :mod:`.penalties` the gradient
penalties, :mod:`.games` the registered games."""
from .adversarial import AdversarialModel
from .dcgan import DCGAN
from .gan import GAN
from . import games
from . import conditional, infogan
from . import energy_based
from . import bigan
from . import biggan
from . import lapgan
from . import progan
from . import stylegan
from .losses import ADVERSARIAL_LOSSES, adversarial_loss

__all__ = ["AdversarialModel", "GAN", "DCGAN", "ADVERSARIAL_LOSSES", "adversarial_loss", "games"]
