r"""PixelVAE (Gulrajani et al. 2017): a VAE whose decoder is a small PixelCNN conditioned on z.

The VAE's decoder (:mod:`.vae`) makes the pixels independent given z, so every correlation
between pixels -- the continuity of a stroke -- must go through the latent code, and the
samples are blurry.  PixelVAE keeps the VAE's prior, encoder and bounds and replaces the
factorised likelihood by an autoregressive one in raster order (:mod:`..autoregressive.raster`):

.. math:: p_\theta(x \mid z) = \prod_{i=1}^{HW} p_\theta(x_i \mid x_{<i}, z), \qquad
          p_\theta(x_i = 1 \mid x_{<i}, z) = \sigma(\ell_i(x_{<i}, z)).

**The decoder.**  A conv upsampling net (the VAE's :class:`~.networks.ConvDecoder`, asked for
an ``F``-channel map at full resolution) turns z into a conditioning feature map
:math:`h = g_\theta(z) \in \mathbb R^{F \times H \times W}`.  A small PixelCNN
(:class:`ConditionalPixelCNN`) reads the image through a mask-A convolution and
``num_blocks`` residual mask-B blocks (:class:`~..autoregressive.pixelcnn.MaskedResidualBlock`),
and a 1x1 projection of h is added before each of them:

.. math:: u_0 = M_A * x + V_0 h, \qquad u_{j} = \mathrm{block}_j(u_{j-1} + V_j h), \qquad
          \ell = \mathrm{head}(u_L).

h depends on z alone, never on x, so adding it anywhere keeps the network causal: the logit
:math:`\ell_i` reads :math:`x_{<i}` and z only, and one forward pass gives all :math:`HW`
conditionals -- the likelihood :math:`\log p(x \mid z) = \sum_i x_i \ell_i -
\operatorname{softplus}(\ell_i)` of every importance sample costs one pass, no sequential
sampling.  The PixelCNN is kept small on purpose (registered: a 5x5 mask A and one 3x3 block,
so it sees three rows above a pixel): local texture goes to the PixelCNN, and the global shape
of the digit, which the small receptive field cannot see, must come through z.  A deep PixelCNN
could model the digits alone and let :math:`q(z \mid x)` collapse onto the prior
(:math:`\mathrm{KL} = 0`, z unused): ``kl_nats`` in :meth:`PixelVAE.evaluate` reports how
much of the bound the latent code carries, and ``active_units`` how many of its dimensions
(Burda et al. 2016: :math:`\operatorname{Var}_x \mathbb E_{q(z \mid x)}[z_j] > 0.01`).
On mnist5k the plain ELBO collapses the posterior early (the KL falls below 0.5 nats within
200 steps: the decoder learns local statistics faster than the encoder learns to be useful;
with one residual block it comes back slowly, to about 8 nats by step 3,000), so the registered
model trains with *free bits* (Kingma et al. 2016): each latent dimension's KL is charged at
least :math:`\lambda` = 0.25 nats (:meth:`PixelVAE.loss`), which keeps z in use from the start.

**The bounds** are the VAE's, with :math:`\log p(x \mid z)` from the PixelCNN:

.. math:: \mathcal L(x) = \mathbb E_{q} \log p_\theta(x \mid z) - \mathrm{KL}(q(z \mid x)
          \,\|\, p(z)) \;\le\; \mathcal L_k(x) = \mathbb E \log \frac1k \sum_{i=1}^k
          \frac{p_\theta(x \mid z_i)\, p(z_i)}{q_\phi(z_i \mid x)} \;\le\; \log p_\theta(x).

**Sampling** is two-stage: :math:`z \sim \mathcal N(0, I)`, then the image pixel by pixel from
:math:`p(x_i \mid x_{<i}, z)` by the raster models' sampler (:meth:`RasterAutoregressiveModel
.sample` with h in place of class labels): :math:`HW` passes of the PixelCNN, the upsampling
net once.  Samples and reconstructions are therefore binary draws, not mean images.

All quantities are in nats per image.
"""
from __future__ import annotations

import numpy as np

from ... import nn
from ... import functional as ops
from ...autograd import no_grad
from ...tensor import Tensor
from ...utils.checks import positive_int
from ..autoregressive.pixelcnn import MaskedResidualBlock
from ..autoregressive.raster import RasterAutoregressiveModel, logit_head
from ..likelihood import bernoulli_log_prob, gaussian_kl_to_standard
from ..registry import ModelSpec, register
from .networks import ConvDecoder
from .vae import VAE

__all__ = ["PixelVAE", "ConditionalPixelCNN"]

# a latent dimension is "active" when its posterior mean varies over the data more than this
_ACTIVE_UNIT_VARIANCE = 0.01


class ConditionalPixelCNN(RasterAutoregressiveModel):
    r"""A PixelCNN over Bernoulli pixels that also reads a conditioning feature map h
    (N, ``cond_channels``, H, W) independent of x: :math:`u_0 = M_A * x + V_0 h`,
    :math:`u_j = \mathrm{block}_j(u_{j-1} + V_j h)`, logits :math:`\mathrm{head}(u_L)`.

    h takes the place of the raster models' class labels ``y``, so :meth:`logits`,
    :meth:`log_prob` and :meth:`sample` (pixel by pixel) take it as their second argument.
    """

    def __init__(self, image_shape, cond_channels: int, channels: int = 32,
                 num_blocks: int = 2, first_kernel: int = 5, kernel_size: int = 3,
                 head_channels: int = 32):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"ConditionalPixelCNN: image_shape must be (C, H, W), got "
                             f"{image_shape!r}")
        if not isinstance(channels, int) or channels < 2 or channels % 2:
            raise ValueError(f"PixelVAE: pixel_channels must be an even int >= 2 (the residual "
                             f"blocks halve it), got {channels!r}")
        if not isinstance(num_blocks, int) or num_blocks < 0:
            raise ValueError(f"PixelVAE: num_blocks must be a non-negative int, got "
                             f"{num_blocks!r}")
        for name, k in (("first_kernel", first_kernel), ("kernel_size", kernel_size)):
            if not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise ValueError(f"PixelVAE: {name} must be an odd positive int, got {k!r}")
        self.image_shape = tuple(int(d) for d in image_shape)
        self.num_classes = None
        self.cond_channels = positive_int(cond_channels, "PixelVAE: cond_channels")
        self.channels = channels
        C = self.image_shape[0]
        self.input_conv = nn.MaskedConv2d(C, channels, first_kernel, mask_type="A")
        self.blocks = nn.ModuleList([MaskedResidualBlock(channels, kernel_size)
                                     for _ in range(num_blocks)])
        # V_0, ..., V_L side by side: one 1x1 convolution for all the layers' projections
        self.condition = nn.Conv2d(self.cond_channels, channels * (num_blocks + 1), 1)
        self.head = logit_head(channels, head_channels, C)

    def _check_labels(self, h, n, op):
        """The conditioning map stands where the raster models take labels: (n, F, H, W)."""
        _, H, W = self.image_shape
        if not isinstance(h, Tensor) or h.ndim != 4 or tuple(h.shape) != (n, self.cond_channels,
                                                                          H, W):
            shape = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
            raise ValueError(f"PixelVAE.{op}: expected a conditioning map of shape ({n}, "
                             f"{self.cond_channels}, {H}, {W}), got {shape}")
        return h

    def forward(self, x, h):
        """Logits (N, C, H', W) for images x (N, C, H', W) with H' <= H (the rows drawn so far)
        and the full conditioning map h (N, F, H, W), cut to the same rows."""
        v = self.condition(h[:, :, :x.shape[2], :])
        c = self.channels
        u = self.input_conv(x) + v[:, :c]
        for j, block in enumerate(self.blocks, start=1):
            u = block(u + v[:, j * c:(j + 1) * c])
        return self.head(u)


class PixelVAE(VAE):
    r"""The VAE (:class:`~.vae.VAE`: its conv encoder, Gaussian posterior, ELBO and IWAE bound)
    with an autoregressive decoder :math:`p(x \mid z) = \prod_i p(x_i \mid x_{<i}, z)`.

    The encoder and ``latent_dim``, ``channels``, ``hidden_features``, ``depth``, ``dropout``,
    ``activation``, ``beta``, ``max_shift`` are the VAE's; the upsampling net mirrors the
    encoder and ends in a ``cond_channels``-channel map at full resolution.  The PixelCNN has
    ``pixel_channels`` features, a ``first_kernel`` mask-A layer, ``num_blocks`` residual
    blocks of ``kernel_size`` mask-B convolutions and a 1x1 head of ``head_channels``.
    ``free_bits`` :math:`\lambda` > 0 trains with Kingma et al.'s (2016) floor against posterior
    collapse (see :meth:`loss`).
    """

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, latent_dim: int = 16,
                 channels=(32, 64), hidden_features: int | None = None, beta: float = 1.0,
                 activation: str = "relu", dropout: float = 0.0, depth: int = 1,
                 max_shift: int = 0, cond_channels: int = 32, pixel_channels: int = 32,
                 num_blocks: int = 2, first_kernel: int = 5, kernel_size: int = 3,
                 head_channels: int = 32, free_bits: float = 0.0):
        super().__init__(image_shape, num_classes, latent_dim, channels, hidden_features, beta,
                         activation, dropout, depth, max_shift)
        if not float(free_bits) >= 0.0:
            raise ValueError(f"PixelVAE: free_bits must be a non-negative number, got "
                             f"{free_bits!r}")
        self.free_bits = float(free_bits)
        cond_channels = positive_int(cond_channels, "PixelVAE: cond_channels")
        _, H, W = self.image_shape
        # z -> h (N, F, H, W): the VAE's decoder, asked for F channels instead of the image's C
        self.decoder = ConvDecoder(self.latent_dim, (cond_channels, H, W), channels,
                                   hidden_features, activation, dropout, depth)
        self.pixelcnn = ConditionalPixelCNN(self.image_shape, cond_channels, pixel_channels,
                                            num_blocks, first_kernel, kernel_size, head_channels)

    # -- the decoder ---------------------------------------------------------------------------
    # (the VAE's ``_logits(z, None)`` is ``decoder(z)``: here the conditioning map h, not logits)
    def pixel_logits(self, x, z):
        r"""The logits :math:`\ell_i` of :math:`p(x_i = 1 \mid x_{<i}, z)`, (N, C, H, W): one
        pass for all pixels; ``logits[i]`` depends on z and on the pixels before i only."""
        self._check_images(x, "pixel_logits")
        self._check_latents(z, "pixel_logits")
        return self.pixelcnn(x, self.decoder(z))

    def _log_likelihood(self, x, z, c):
        r""":math:`\log p(x \mid z) = \sum_i x_i \ell_i - \operatorname{softplus}(\ell_i)` per
        image, (N,) (``c`` is always None: the model is unconditional)."""
        return bernoulli_log_prob(self.pixelcnn(x, self.decoder(z)), x)

    def _draw(self, z):
        """x ~ p(x | z) pixel by pixel in raster order (H W passes of the PixelCNN, nanogen's
        global generator), and the conditioning map h it was drawn with."""
        with no_grad():
            h = self.decoder(z)
            return self.pixelcnn.sample(z.shape[0], h), h

    def _images(self, z, c):
        """Images x ~ p(x | z) (N, C, H, W) in {0, 1}, drawn pixel by pixel: the samples and
        reconstructions are draws, not mean images."""
        return self._draw(z)[0]

    def decode(self, z, y=None):
        r"""Unlike the VAE's, p(x | z) has no logits without an image: the logits of an image
        x ~ p(x | z) drawn pixel by pixel, logit i that of :math:`p(x_i \mid x_{<i}, z)` at the
        drawn :math:`x_{<i}`, (N, C, H, W) (their sigmoid is the grey picture of the draw)."""
        self._check_latents(z, "decode")
        x, h = self._draw(z)
        with no_grad():
            return self.pixelcnn(x, h)

    # -- training ------------------------------------------------------------------------------
    def loss(self, x, y=None):
        r"""The VAE's loss, :math:`\text{recon} + \beta\,\text{kl}` averaged over the batch; with
        ``free_bits`` :math:`\lambda > 0` each latent dimension's KL (averaged over the batch) is
        charged at least :math:`\lambda` nats,

        .. math:: \text{recon} + \beta \sum_{j=1}^d \max\big(\lambda,\;
                  \tfrac1N \textstyle\sum_n \mathrm{KL}(q(z_j \mid x_n) \,\|\, p(z_j))\big),

        so that below :math:`\lambda` the KL has no gradient and the encoder is free to put
        information in z before the PixelCNN learns to do without it.  The logs are always the
        true terms and bound (``neg_elbo``)."""
        if self.free_bits == 0.0:
            return super().loss(x, y)
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)                      # z = mu + e^{v/2} eps
        recon = -self._log_likelihood(x, z, None).mean()
        # the dimensions as the "examples": KL_j summed over the batch, (d,)
        kl_dims = gaussian_kl_to_standard(mu.transpose(0, 1), logvar.transpose(0, 1)) / len(x)
        kl = kl_dims.sum()
        loss = recon + self.beta * ops.clamp(kl_dims, min=self.free_bits).sum()
        return loss, {"recon": float(recon.item()), "kl": float(kl.item()),
                      "neg_elbo": float(recon.item() + kl.item())}

    # -- representation and evaluation ---------------------------------------------------------
    def evaluate(self, loader, iwae_k: int = 100) -> dict:
        """The VAE's metrics (``neg_elbo_nats``, ``recon_nats``, ``kl_nats`` -- how many nats of
        the bound the latent code carries --, ``iwae_nll_nats`` with ``iwae_k`` samples), plus
        ``active_units``: the latent dimensions whose posterior mean varies over the test set
        (variance > 0.01; 0 for a collapsed posterior)."""
        metrics = super().evaluate(loader, iwae_k)
        with no_grad():
            means = np.concatenate([self.encode(x)[0].numpy() for x, _ in loader])
        metrics["active_units"] = int((means.var(0) > _ACTIVE_UNIT_VARIANCE).sum())
        return metrics


register(ModelSpec(
    name="pixelvae", build=PixelVAE, steps=3000, batch_size=64, lr=1e-3, sample_every=3000,
    num_samples=36,
    kwargs=dict(latent_dim=32, channels=(32, 64), depth=2, max_shift=1, cond_channels=32,
                pixel_channels=32, num_blocks=1, first_kernel=5, kernel_size=3,
                head_channels=32, free_bits=0.25),
    summary="PixelVAE: the VAE with a small PixelCNN decoder conditioned on z (5x5 mask A, one "
            "3x3 block; free bits 0.25 nat/dim); IWAE bound (k=100), KL and active units "
            "reported, sampled pixel by pixel"))
