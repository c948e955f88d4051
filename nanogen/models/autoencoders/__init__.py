"""The autoencoder family, one model per module (each registers itself on import):

* :mod:`.vae` -- the VAE and beta-VAE (``vae``, ``beta-vae``, ``vae-2d``);
* :mod:`.ae` -- the deterministic autoencoder (``ae``);
* :mod:`.denoising` -- the denoising autoencoder (``denoising-ae``), with the corruptions of
  :mod:`.corruption`;
* :mod:`.sparse` -- the sparse autoencoder (``sparse-ae``);
* :mod:`.stacked` -- stacked denoising autoencoders, pretrained greedily (``stacked-ae``);
* :mod:`.cvae` -- the conditional VAE (``cvae``);
* :mod:`.iwae` -- the importance-weighted autoencoder (``iwae``);
* :mod:`.aae` -- the adversarial autoencoder (``aae``);
* :mod:`.pixelvae` -- the VAE with a PixelCNN decoder (``pixelvae``);
* :mod:`.vae_gan` -- VAE-GAN, reconstruction in a discriminator's feature space (``vae-gan``);
* :mod:`.ladder` -- the ladder network for semi-supervised classification (``ladder``).

:mod:`.networks` holds the conv and fully connected encoder / decoder stacks they share.
"""
from . import aae, ae, cvae, denoising, iwae, ladder, pixelvae, sparse, stacked, vae_gan  # noqa
from .vae import ELBO, VAE

__all__ = ["VAE", "ELBO"]
