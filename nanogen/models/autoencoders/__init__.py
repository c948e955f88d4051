"""Autoencoders: the VAE and beta-VAE (registered as ``vae``, ``beta-vae`` and ``vae-2d``).

:mod:`.networks` holds the conv encoder / decoder stacks they share."""
from .vae import ELBO, VAE

__all__ = ["VAE", "ELBO"]
