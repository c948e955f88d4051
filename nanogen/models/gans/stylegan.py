r"""StyleGAN (Karras, Laine & Aila 2019, "A Style-Based Generator Architecture for Generative
Adversarial Networks"), small, without progressive growing.

The generator does not read the latent code at its input.  A **mapping network** f, 8 fully
connected layers with LeakyReLU(0.2) (the paper's Fig. 1b), turns the normalised code into an
intermediate latent w of the same size,

.. math:: \bar z = z \big/ \sqrt{\tfrac1d \textstyle\sum_j z_j^2 + 10^{-8}}, \qquad
          w = f(\bar z) \in \mathcal W,                                                   \tag{1}

and a **synthesis network** g starts from a learned constant (C, h, w) map and doubles the
resolution block by block.  Every layer of g -- the constant, then per block (bilinear 2x
upsampling,) a 3x3 convolution -- is followed by per-pixel noise, a bias, LeakyReLU(0.2) and an
**AdaIN** whose scale and bias come from w through a learned affine map A (the paper's eq. 1):

.. math:: x \leftarrow x + B \odot n, \quad n \sim \mathcal N(0, 1)^{1 \times H \times W},
          \quad B \in \mathbb R^C \text{ (zero at init)},                               \tag{2}

.. math:: \operatorname{AdaIN}(x_i, y) = y_{s,i} \frac{x_i - \mu(x_i)}{\sigma(x_i)} + y_{b,i},
          \qquad (y_s, y_b) = A\, w.                                                     \tag{3}

(the noise image n is one channel, broadcast over the C channels with a learned scale per
channel; eq. (3) is ``nn.AdaIN``, the fused ``F.adain`` kernel, whose affine starts at
:math:`y_s = 1`).  A 1x1 convolution (toRGB) maps the last feature map to the image; the output
is linear, as the paper's.

**Style mixing regularisation** (section 3.1): during training each generated image is, with
probability p = 0.9, made from two codes: layer i of g takes

.. math:: w^{(i)} = \begin{cases} w_1 = f(z_1) & i < c \\ w_2 = f(z_2) & i \ge c
          \end{cases}, \qquad c \sim \mathcal U\{1, \dots, L - 1\},                      \tag{4}

(c = L, all w_1, for the other images), so that the network cannot assume adjacent styles are
correlated.  The same crossover makes the **style-mixing figure** (the paper's Fig. 3): rows of
source-A images, columns of source-B images, and each cell A with the coarse, middle or fine
styles (the blocks of the lowest, middle and highest resolutions) copied from B.

**Truncation in W** (section 2.1 / appendix B): the centre of mass :math:`\bar w` is a running
average of the mapped codes, kept as a buffer (``generator.w_avg``, in the checkpoint and the
shipped weights), updated once per generator update with :math:`\beta = 0.995` (the official
code's ``dlatent_avg_beta``),

.. math:: \bar w \leftarrow \beta \bar w + (1 - \beta)\, \operatorname{mean}_\text{batch} w,
                                                                                          \tag{5}

and samples may be drawn nearer to it, :math:`\psi \in [0, 1]`:

.. math:: w' = \bar w + \psi (w - \bar w).                                                \tag{6}

ψ = 1 is the untruncated w, ψ = 0 gives every sample the mean style.  The figure
``truncation`` shows the same codes at ψ = 1, 0.7, 0.5, 0 (the paper's Fig. 8 sweeps ψ from 1
to -1; the issue asks for ψ in [0, 1]).

**The game** (section 4 / appendix C, FFHQ): the non-saturating loss with the R1 penalty on
the reals (Mescheder et al. 2018; :func:`.penalties.r1_penalty`), γ = 10,

.. math:: L_D = \mathbb E_x \operatorname{softplus}(-D(x))
               + \mathbb E_z \operatorname{softplus}(D(G(z)))
               + \frac\gamma2 \mathbb E_x \|\nabla_x D(x)\|^2, \qquad
          L_G = \mathbb E_z \operatorname{softplus}(-D(G(z))),                          \tag{7}

played by the shared step of :mod:`.adversarial`.  The discriminator is DCGAN's
(:func:`.dcgan.dcgan_discriminator`) without normalisation (R1 is a per-example gradient, so no
batch norm), not ProGAN's; there is no progressive growing -- every resolution is trained from
the start, as the paper's own ablation allows.  Adam with the paper's
:math:`(\beta_1, \beta_2) = (0, 0.99)`; the mapping network's learning rate is the paper's 0.01
times the synthesis network's (``mapping_lr_mul``, a parameter group of G's optimizer).

For MNIST (28x28) with ``channels=(64, 128)`` (the discriminator's, as DCGAN's)::

    mapping: z (N, 128) -norm-> 8 x [linear 128 -> 128, LReLU 0.2] -> w (N, 128)
    synthesis (6 AdaIN layers, styles 0..5):
        const 128 x 7 x 7 -noise, bias, LReLU, AdaIN(w0)->  conv 3x3 -> ... AdaIN(w1)    7x7
        -up 2x-> conv 3x3 128 -> 64 ... AdaIN(w2) -> conv 3x3 ... AdaIN(w3)              14x14
        -up 2x-> conv 3x3 64 -> 32  ... AdaIN(w4) -> conv 3x3 ... AdaIN(w5)              28x28
        -> toRGB (1x1 conv 32 -> 1)
    D: DCGAN's, conv 4/2 1 -> 64 -> 128, LReLU(0.2), no norm, linear -> logit

The generator's widths are the discriminator's reversed, one resolution per entry of
``channels`` from H / 2^L, and the output resolution H gets half the finest width.  Coarse,
middle and fine styles are the blocks at 7x7, 14x14 and 28x28 (in general the blocks split into
three near-equal groups, lowest resolutions first).

Deviations from the paper: no equalised learning rate (plain layers; the mapping network and
the discriminator are He-initialised, :func:`he_init_`, as the paper's layers are at run time,
so that w stays of the scale of z and D's logit is of order one), no progressive growing, no blur in the
up/downsampling, no minibatch-stddev layer in D, a DCGAN discriminator, a 7x7 constant for
28x28 images (the paper's is 4x4 at 1024x1024), truncation on every layer (the paper's figures
truncate the coarse layers only), and widths, code size (128, not 512) and learning rate (2e-4,
not 1e-3: without equalised learning rate Adam's steps are relative to the weights' own
scale) for small images.  The mixing crossover is drawn per image rather than per minibatch.
"""
from __future__ import annotations

import numbers

import numpy as np

from ... import functional as F
from ... import nn
from ...autograd import is_grad_enabled, no_grad
from ...creation import ones, rand, randint, randn, tensor, zeros
from ...utils.checks import positive_int
from ..base import check_channels, check_halvings
from ..registry import ModelSpec, register
from .adversarial import AdversarialModel
from .dcgan import dcgan_discriminator
from .penalties import r1_penalty

__all__ = ["StyleGAN", "MappingNetwork", "StyleLayer", "SynthesisNetwork", "StyleGenerator",
           "he_init_", "TRUNCATION_SWEEP"]

TRUNCATION_SWEEP = (1.0, 0.7, 0.5, 0.0)      # the rows of the ``truncation`` figure
W_AVG_BETA = 0.995                           # eq. (5), the official code's dlatent_avg_beta


def he_init_(module, last_gain_one: bool = False):
    """He initialisation for LeakyReLU(0.2) (the paper's, through its equalised learning rate):
    every convolution and linear weight of ``module`` from N(0, 2 / ((1 + 0.2²) fan_in)), every
    bias 0; with ``last_gain_one`` the last of them (a network's output layer, followed by no
    activation) from N(0, 1 / fan_in).  In place."""
    layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for i, m in enumerate(layers):
        linear = last_gain_one and i == len(layers) - 1
        nn.init.kaiming_normal_(m.weight, a=0.2,
                                nonlinearity="linear" if linear else "leaky_relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return module


class MappingNetwork(nn.Module):
    """z (N, latent_dim) -> w (N, style_dim): eq. (1), ``layers`` linear layers with
    LeakyReLU(0.2), He-initialised for that slope (biases 0)."""

    def __init__(self, latent_dim: int, style_dim: int, layers: int = 8):
        super().__init__()
        stack = []
        for i in range(layers):
            stack += [nn.Linear(latent_dim if i == 0 else style_dim, style_dim),
                      nn.LeakyReLU(0.2)]
        self.net = he_init_(nn.Sequential(*stack))

    def forward(self, z):
        z = z * ((z * z).mean(dim=1, keepdim=True) + 1e-8).rsqrt()          # eq. (1)
        return self.net(z)


class StyleLayer(nn.Module):
    """One layer of the synthesis network: (2x bilinear upsampling and) a 3x3 convolution --
    none for the learned constant -- then noise (eq. 2), LeakyReLU(0.2) and AdaIN (eq. 3)."""

    def __init__(self, in_channels: int | None, out_channels: int, style_dim: int,
                 upsample: bool = False):
        super().__init__()
        self.upsample = bool(upsample)
        if in_channels is None:                       # the constant's layer: a bias, no conv
            self.conv = None
            self.bias = nn.Parameter(zeros(out_channels))
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
            self.bias = None
        self.noise_scale = nn.Parameter(zeros(out_channels))    # B of eq. (2), zero at init
        self.adain = nn.AdaIN(style_dim, out_channels)

    def forward(self, x, w, noise=None):
        """``noise``: a (1 or N, 1, H, W) image, or None for no noise."""
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        if self.conv is not None:
            x = self.conv(x)
        else:
            x = x + self.bias.reshape(1, -1, 1, 1)
        if noise is not None:
            x = x + self.noise_scale.reshape(1, -1, 1, 1) * noise               # eq. (2)
        return self.adain(F.leaky_relu(x, 0.2), w)                              # eq. (3)


class SynthesisNetwork(nn.Module):
    """styles (a list of L tensors (N, style_dim), one per layer) -> images (N, C, H, W):
    the learned constant at the coarsest resolution, two :class:`StyleLayer` per resolution
    (the first of each but the coarsest upsampling), toRGB."""

    def __init__(self, image_shape, widths, style_dim: int):
        super().__init__()
        c, h, w = image_shape
        blocks = len(widths)
        self.base = (h // 2 ** (blocks - 1), w // 2 ** (blocks - 1))
        self.const = nn.Parameter(ones(1, widths[0], *self.base))
        layers, self.resolutions = [], []
        for i, width in enumerate(widths):
            first = None if i == 0 else widths[i - 1]
            layers += [StyleLayer(first, width, style_dim, upsample=i > 0),
                       StyleLayer(width, width, style_dim)]
            self.resolutions += [(self.base[0] * 2 ** i, self.base[1] * 2 ** i)] * 2
        self.layers = nn.ModuleList(layers)
        self.to_rgb = nn.Conv2d(widths[-1], c, 1)
        self.num_layers = len(layers)

    def noise(self, n: int, device=None):
        """Fresh per-pixel noise for every layer: (n, 1, H_i, W_i) standard normal images."""
        return [randn(n, 1, h, w, device=device) for h, w in self.resolutions]

    def forward(self, styles, noise="random"):
        """``noise``: ``"random"`` (fresh draws), None (no noise) or a list of one image per
        layer ((1 or N, 1, H_i, W_i))."""
        if len(styles) != self.num_layers:
            raise ValueError(f"StyleGAN synthesis: expected {self.num_layers} styles (one per "
                             f"layer), got {len(styles)}")
        n = styles[0].shape[0]
        if isinstance(noise, str) and noise == "random":
            noise = self.noise(n, device=self.const.device)
        elif noise is None:
            noise = [None] * self.num_layers
        elif len(noise) != self.num_layers:
            raise ValueError(f"StyleGAN synthesis: expected {self.num_layers} noise images, "
                             f"got {len(noise)}")
        x = self.const.expand(n, -1, -1, -1)
        for layer, w, image in zip(self.layers, styles, noise):
            x = layer(x, w, image)
        return self.to_rgb(x)


class StyleGenerator(nn.Module):
    """The generator: :class:`MappingNetwork`, :class:`SynthesisNetwork` and the running mean
    style ``w_avg`` (eq. 5, a buffer).  ``forward(z)`` is g(f(z)) with every layer on the same
    w and fresh noise."""

    def __init__(self, image_shape, latent_dim: int, style_dim: int, widths,
                 mapping_layers: int = 8):
        super().__init__()
        self.mapping = MappingNetwork(latent_dim, style_dim, mapping_layers)
        self.synthesis = SynthesisNetwork(image_shape, widths, style_dim)
        self.register_buffer("w_avg", zeros(style_dim))

    def forward(self, z):
        w = self.mapping(z)
        return self.synthesis([w] * self.synthesis.num_layers)


def _check_psi(psi, where: str) -> float:
    if isinstance(psi, bool) or not isinstance(psi, numbers.Real) or not 0.0 <= psi <= 1.0:
        raise ValueError(f"{where}: the truncation psi must be a number in [0, 1], got "
                         f"{psi!r}")
    return float(psi)


class StyleGAN(AdversarialModel):
    """StyleGAN on images ``image_shape`` (C, H, W), H and W divisible by 2^len(channels).

    ``channels``: the discriminator's widths per resolution (DCGAN's), the synthesis network's
    reversed (see the module docstring); ``latent_dim`` the size of z and w; ``mapping_layers``
    (8) and ``mapping_lr_mul`` (0.01: the mapping network's learning rate over G's);
    ``mixing_prob`` (0.9) the share of training images made from two codes; ``r1_gamma``
    (γ = 10; 0 turns R1 off); ``critic_norm`` D's normalisation ("none", or "layer"; not
    "batch" with R1).  ``loss``, ``k``, the other constraints and the tricks are
    :class:`~.adversarial.AdversarialModel`'s.  ``num_classes`` is accepted for the common
    interface and not used: the model is unconditional.
    """

    betas = (0.0, 0.99)                      # the paper's Adam (appendix C)
    mixing_figure_rows = 6                   # Fig. 3: 3 coarse, 2 middle, 1 fine row
    mixing_figure_columns = 5
    truncation_columns = 8

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, latent_dim: int = 128,
                 channels=(64, 128), mapping_layers: int = 8, mapping_lr_mul: float = 0.01,
                 mixing_prob: float = 0.9, r1_gamma: float = 10.0, critic_norm: str = "none",
                 loss: str = "non-saturating", k: int = 1, **game):
        if len(tuple(image_shape)) != 3:
            raise ValueError(f"StyleGAN models images: image_shape must be (C, H, W), got "
                             f"{image_shape!r}")
        latent_dim = positive_int(latent_dim, "StyleGAN: latent_dim")
        mapping_layers = positive_int(mapping_layers, "StyleGAN: mapping_layers")
        shape, channels = tuple(image_shape), check_channels(channels)
        check_halvings(shape, len(channels), "StyleGAN")
        for name, value, low, high in (("mapping_lr_mul", mapping_lr_mul, 0.0, None),
                                       ("mixing_prob", mixing_prob, 0.0, 1.0),
                                       ("r1_gamma", r1_gamma, 0.0, None)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not value >= low or (high is not None and value > high) \
                    or not np.isfinite(value) or (name == "mapping_lr_mul" and value == 0):
                bounds = "(0, inf)" if name == "mapping_lr_mul" else \
                    f"[{low:g}, {'inf)' if high is None else f'{high:g}]'}"
                raise ValueError(f"StyleGAN: {name} must be a number in {bounds}, got "
                                 f"{value!r}")
        if r1_gamma > 0 and critic_norm == "batch":
            raise ValueError("StyleGAN: the R1 penalty is a per-example gradient, and batch "
                             "norm mixes the examples of a batch; use critic_norm='none' or "
                             "'layer' (or r1_gamma=0)")
        widths = tuple(reversed(channels)) + (max(1, channels[0] // 2),)
        generator = StyleGenerator(shape, latent_dim, latent_dim, widths, mapping_layers)
        discriminator = he_init_(dcgan_discriminator(shape, channels, norm=critic_norm),
                                 last_gain_one=True)
        super().__init__(generator, discriminator, latent_dim=latent_dim, sample_shape=shape,
                         loss=loss, k=k, **game)
        self.num_classes = num_classes
        self.channels, self.widths = channels, widths
        self.critic_norm = critic_norm
        self.mapping_lr_mul = float(mapping_lr_mul)
        self.mixing_prob = float(mixing_prob)
        self.r1_gamma = float(r1_gamma)

    @property
    def num_layers(self) -> int:
        """L: the number of styles (AdaIN layers) of the synthesis network."""
        return self.generator.synthesis.num_layers

    # -- the generator's pieces -------------------------------------------------------------
    def mapping(self, z):
        """w = f(z), eq. (1): (N, latent_dim) codes to (N, latent_dim) styles."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"{type(self).__name__}.generate: expected codes of shape (N, "
                             f"{self.latent_dim}), got {tuple(z.shape)}")
        return self.generator.mapping(z)

    def truncate(self, w, psi: float):
        """w' = w̄ + ψ (w - w̄), eq. (6); ψ = 1 returns w itself."""
        psi = _check_psi(psi, f"{type(self).__name__}.truncate")
        if psi == 1.0:
            return w                         # exactly the untruncated w, not w̄ + (w - w̄)
        w_avg = self.generator.w_avg.detach().reshape(1, -1)
        return w_avg + psi * (w - w_avg)                                        # eq. (6)

    def mix_styles(self, w1, w2, crossover):
        """Eq. (4): the per-layer styles, layer i taking w1 where i < crossover and w2 from
        the crossover on.  ``crossover`` is an int in [0, L] or one per example ((N,) ints);
        L gives w1 everywhere, 0 gives w2 everywhere."""
        L, n = self.num_layers, w1.shape[0]
        c = np.asarray(crossover.numpy() if hasattr(crossover, "numpy") else crossover)
        if c.dtype.kind not in "iu" or c.ndim > 1 or (c.ndim == 1 and len(c) != n) \
                or c.size == 0 or c.min() < 0 or c.max() > L:
            raise ValueError(f"{type(self).__name__}.mix_styles: crossover must be an int in "
                             f"[0, {L}] or {n} of them, got {crossover!r}")
        if c.ndim == 0:
            return [w1 if i < int(c) else w2 for i in range(L)]
        styles = []
        for i in range(L):
            mask = tensor((i < c).reshape(n, 1), dtype=w1.dtype, device=w1.device)
            styles.append(mask * w1 + (1.0 - mask) * w2)                        # eq. (4)
        return styles

    def synthesize(self, styles, noise="random"):
        """g(styles): one (N, latent_dim) style per layer (a list of L) or one for all,
        ``noise`` as :meth:`SynthesisNetwork.forward` (``"random"``, None, or the images)."""
        if not isinstance(styles, (list, tuple)):
            styles = [styles] * self.num_layers
        return self.generator.synthesis(list(styles), noise)

    def generate(self, z, condition=None):
        """G(z) in training and inference: the mapped code on every layer; in training mode
        also the running w̄ (eq. 5, in G's update only: with gradients on) and style mixing
        (eq. 4, probability ``mixing_prob`` per image)."""
        w = self.mapping(z)
        if not self.training:
            return self.synthesize(w)
        if is_grad_enabled():
            with no_grad():                                                     # eq. (5)
                w_avg = self.generator.w_avg
                w_avg.data[...] = W_AVG_BETA * w_avg.data + \
                    (1.0 - W_AVG_BETA) * w.detach().mean(dim=0).data
        if self.mixing_prob == 0 or self.num_layers < 2:
            return self.synthesize(w)
        n, L = z.shape[0], self.num_layers
        mixed = rand(n).numpy() < self.mixing_prob
        crossover = np.where(mixed, randint(1, L, size=(n,)).numpy(), L)
        w2 = self.mapping(self.sample_latents(n))
        return self.synthesize(self.mix_styles(w, w2, crossover.astype(np.int64)))

    def configure_optimizers(self, lr: float) -> dict:
        """:class:`~.adversarial.AdversarialModel`'s, with the mapping network's parameters in
        a group of their own at ``mapping_lr_mul * lr`` in G's optimizer."""
        optimizers = super().configure_optimizers(lr)
        if self.mapping_lr_mul != 1.0:
            g = optimizers["generator"]
            mapping = list(self.generator.mapping.parameters())
            ids = {id(p) for p in mapping}
            group = g.param_groups[0]
            group["params"] = [p for p in group["params"] if id(p) not in ids]
            g.add_param_group({"params": mapping, "lr": group["lr"] * self.mapping_lr_mul})
        return optimizers

    # -- the game ---------------------------------------------------------------------------
    def discriminator_loss(self, real, labels, fake, condition):
        """The game's loss (and any penalty of the shared step) plus γ/2 R1 on the reals,
        eq. (7); logs ``r1``."""
        loss, logs = super().discriminator_loss(real, labels, fake, condition)
        if self.r1_gamma > 0:
            r1 = r1_penalty(lambda x: self.discriminate(x, labels), real)
            loss = loss + 0.5 * self.r1_gamma * r1                              # eq. (7)
            logs["r1"] = float(r1.item())
        return loss, logs

    # -- using a trained model --------------------------------------------------------------
    def sample(self, n: int, y=None, psi: float = 1.0):
        """n images in [0, 1] from w' = w̄ + ψ (f(z) - w̄), eq. (6); ψ = 1 by default."""
        n = positive_int(n, f"{type(self).__name__}.sample: n")
        psi = _check_psi(psi, f"{type(self).__name__}.sample")
        with no_grad():
            w = self.truncate(self.mapping(self.sample_latents(n)), psi)
            return self._to_data_range(self.synthesize(w))

    def style_mixing_figure(self, rows: int | None = None, columns: int | None = None):
        """The paper's Fig. 3: ``(images, columns + 1)``.  The first row is a blank cell and
        ``columns`` source-B images; each further row a source-A image and A with B's coarse
        (half the rows), middle (a third) or fine styles (a sixth; at least one row each) copied
        in.
        Every cell shares one noise draw, so only the styles differ."""
        rows = positive_int(self.mixing_figure_rows if rows is None else rows,
                            f"{type(self).__name__}.style_mixing_figure: rows")
        cols = positive_int(self.mixing_figure_columns if columns is None else columns,
                            f"{type(self).__name__}.style_mixing_figure: columns")
        groups = self.style_groups()
        # rows per group: the paper's 3 / 2 / 1 for six rows, about 3 : 2 : 1 otherwise
        if rows >= 3:
            fine, middle = max(1, rows // 6), max(1, rows // 3)
            kinds = np.repeat(np.arange(3), (rows - middle - fine, middle, fine))
        else:
            kinds = np.arange(rows)
        with no_grad():
            device = self._device()
            noise = self.generator.synthesis.noise(1, device=device)
            w_a = self.mapping(self.sample_latents(rows))
            w_b = self.mapping(self.sample_latents(cols))
            image = lambda styles: self._to_data_range(self.synthesize(styles, noise))  # noqa
            a, b = image(w_a), image(w_b)
            cells = [zeros(1, *self.sample_shape, device=device), b]
            for r in range(rows):
                wa = w_a[r:r + 1].expand(cols, -1)
                taken = groups[kinds[r]]
                styles = [w_b if i in taken else wa for i in range(self.num_layers)]
                cells += [a[r:r + 1], image(styles)]
            return F.cat(cells), cols + 1

    def style_groups(self):
        """The layer indices of the coarse, middle and fine styles: the resolutions split into
        three near-equal groups, lowest first (a group may be empty with fewer than three)."""
        resolutions = sorted(set(self.generator.synthesis.resolutions))
        split = np.array_split(np.arange(len(resolutions)), 3)
        res = self.generator.synthesis.resolutions
        return [{i for i, r in enumerate(res) if resolutions.index(r) in set(part.tolist())}
                for part in split]

    def truncation_figure(self, psis=TRUNCATION_SWEEP, columns: int | None = None):
        """The same ``columns`` codes (and noise) at each ψ of ``psis``, one row each:
        ``(images, columns)``."""
        cols = positive_int(self.truncation_columns if columns is None else columns,
                            f"{type(self).__name__}.truncation_figure: columns")
        psis = [_check_psi(p, f"{type(self).__name__}.truncation_figure") for p in psis]
        with no_grad():
            noise = self.generator.synthesis.noise(1, device=self._device())
            w = self.mapping(self.sample_latents(cols))
            return F.cat([self._to_data_range(self.synthesize(self.truncate(w, p), noise))
                          for p in psis]), cols

    def figures(self, x=None, y=None) -> dict:
        """The GAN's (interpolations in z, latent arithmetic), plus ``style_mixing`` (Fig. 3)
        and ``truncation`` (ψ = 1, 0.7, 0.5, 0)."""
        figures = super().figures(x, y)
        figures["style_mixing"] = self.style_mixing_figure()
        figures["truncation"] = self.truncation_figure()
        return figures


register(ModelSpec(
    name="stylegan", build=StyleGAN, steps=500, batch_size=64, lr=2e-4, sample_every=500,
    ema_decay=0.999,
    summary="StyleGAN (Karras et al. 2019): 8-layer mapping z -> w, learned constant, AdaIN "
            "styles and per-pixel noise, style mixing (p = 0.9), truncation in W; "
            "non-saturating loss + R1 (γ = 10); style-mixing and truncation figures"))
