r"""LAPGAN (Denton, Chintala, Szlam & Fergus 2015): a Laplacian pyramid of adversarial networks.

An image is generated coarse to fine: a GAN draws a small low-pass image, and at each finer
level a *conditional* GAN draws the band-pass detail (the Laplacian residual) that the upsampled
coarser image lacks.  No network ever models the whole image at once.

The pyramid operators
---------------------
Both act on each channel of an (N, C, H, W) batch alike and separably on rows and columns, with
the binomial filter :math:`w = (1, 3, 3, 1) / 8`.

**Downsampling** :math:`d` (blur, then keep every second pixel) maps H x W to H/2 x W/2; along
one axis, with the image's edge pixels repeated outside it (:math:`x_{-1} = x_0`,
:math:`x_n = x_{n-1}`),

.. math:: d(x)_i = \tfrac18 \big(x_{2i-1} + 3 x_{2i} + 3 x_{2i+1} + x_{2i+2}\big),
          \qquad i = 0, \dots, n/2 - 1.                                                \tag{1}

In 2-D the filter is the outer product :math:`w w^\top` (weights 1, 3, 3, 1 / 64 ...): a blur
centred between each pair of pixels, so the decimated grid is the coarse grid of half-pixel
centres.

**Upsampling** :math:`u` (smooth and expand) is four times the adjoint of :math:`d`,

.. math:: u = 4\, d^\top, \qquad \langle d(x), y \rangle = \tfrac14 \langle x, u(y) \rangle,
                                                                                       \tag{2}

which, written out along one axis (edges clamped: :math:`y_{-1} = y_0`,
:math:`y_m = y_{m-1}`), is bilinear interpolation on half-pixel centres -- PyTorch's
``interpolate(scale_factor=2, mode="bilinear", align_corners=False)``:

.. math:: u(y)_{2i} = \tfrac34 y_i + \tfrac14 y_{i-1}, \qquad
          u(y)_{2i+1} = \tfrac34 y_i + \tfrac14 y_{i+1}.                               \tag{2'}

Both keep a constant image constant; :math:`u` keeps the mean exactly (from (2) and
:math:`d(\mathbf 1) = \mathbf 1`); :math:`d \circ u` is not the identity but the small blur
:math:`(3, 10, 3) / 16` per axis.  The same two functions, :func:`downsample` and
:func:`upsample`, build the data's pyramid and run the sampler.

**The pyramid** of an image :math:`I` with K + 1 levels (level 0 the full image): the Gaussian
pyramid :math:`I_0 = I`, :math:`I_{k+1} = d(I_k)`, and the Laplacian pyramid

.. math:: h_k = I_k - u(I_{k+1}) \quad (k < K), \qquad h_K = I_K,                      \tag{3}

from which the image comes back exactly, whatever :math:`d` and :math:`u` are,

.. math:: I_k = u(I_{k+1}) + h_k, \qquad k = K - 1, \dots, 0.                          \tag{4}

The generators
--------------
With :math:`l_k = u(I_{k+1})`, the low-pass image at level k:

* level K (the coarsest, 7 x 7 for 28 x 28 MNIST) is a plain GAN on :math:`I_K`:

  .. math:: \min_{G_K} \max_{D_K}\; \mathbb E \log D_K(I_K)
            + \mathbb E_z \log\big(1 - D_K(G_K(z_K))\big);                              \tag{5}

* every finer level k is a conditional GAN on the residual given the low-pass image: G_k reads
  :math:`l_k` with the noise :math:`z_k` as one more image plane, and D_k sees the image
  :math:`l_k + h` beside :math:`l_k` itself (2C channels),

  .. math:: \min_{G_k} \max_{D_k}\; \mathbb E \log D_k(l_k + h_k,\, l_k)
            + \mathbb E_z \log\big(1 - D_k(l_k + G_k(z_k, l_k),\, l_k)\big).           \tag{6}

Training: every level is trained on the *real* pyramid of the same data batch -- level k's
game sees the real :math:`h_k` and the real :math:`l_k`, never a coarser generator's output --
so the K + 1 games are independent (as in the paper), each its own
:class:`~.adversarial.AdversarialModel` played by the shared step (k discriminator updates,
then one generator update; the game, penalties, clipping, spectral norm, optimizer and tricks
are its options).  A step of :class:`LAPGAN` plays one step of every level's game, coarsest
first.

Sampling runs down the pyramid, each level conditioned on what the coarser ones drew:

.. math:: \tilde I_K = G_K(z_K), \qquad
          \tilde I_k = u(\tilde I_{k+1}) + G_k\big(z_k,\, u(\tilde I_{k+1})\big).      \tag{7}

Design: one model holding one sub-GAN per level (``levels[k]``, k = 0 the finest), each with
its own pair of optimizers, named per level (``generator_0``, ``discriminator_0``, ...,
``generator_K``, ``discriminator_K``) so that a checkpoint holds all of them.  The alternative,
one AdversarialModel whose ``generate`` / ``discriminate`` route by level, would need a current
level threaded through the shared step and one optimizer pair for 2(K + 1) networks; here the
shared step runs unchanged per level: a conditional level receives its low-pass image
:math:`l_k` where a class-conditional GAN receives labels (:meth:`ResidualGAN.sample_condition`
passes it to G, :meth:`ResidualGAN.discriminate` shows it to D), so the fakes of each
discriminator update are made from the real minibatch's :math:`l_k`, and a gradient penalty
interpolates between a real and a fake residual on the same :math:`l_k`.

Networks (defaults; MNIST 28 x 28, levels 28 -> 14 -> 7; CIFAR-10 32 x 32 gives 32 -> 16 -> 8
with the same defaults):

* level K: fully connected, as the paper's initial scale -- G: z (100) -> 1200 -> 1200 ->
  C x 7 x 7 (batch norm, ReLU; tanh out: :math:`I_K` lies in [-1, 1]), D: 600 -> 600 -> 1
  (LeakyReLU(0.2), dropout 0.5);
* level k < K: G_k three 3 x 3 convolutions at the level's resolution, [l_k, z_k] (C + 1
  planes) -> 64 -> 64 -> C (batch norm, ReLU; a linear output: a residual is signed, and may
  pass 1 in size); D_k DCGAN's discriminator on the 2C-channel pair, halving down to the
  coarsest resolution (14 x 14: one stride-2 layer of 64; 28 x 28: 64, 128).

**Deviations from the paper.**  The paper's filters are unspecified beyond "blur and decimate";
the authors' code resizes with Torch's ``image.scale``.  Here :math:`d` and :math:`u` are the
binomial pair (1) - (2) (u bilinear, d its adjoint / 4), so that the operators are exact and
testable.  Its noise is uniform on [-1, 1]; here N(0, I).  Its D_k is fed
:math:`l_k + h` only (the sum); here :math:`l_k` too as separate planes, so that the
discriminator can tell whether the residual fits its condition.  Its conditional nets used 7 x 7
and 5 x 5 kernels with 128 planes and no batch norm, and SGD with momentum; here DCGAN's
conventions (batch norm, Radford init, Adam 2e-4, beta1 0.5), 64 planes and 3 x 3 kernels, so
that a step costs a few DCGAN steps rather than tens (a residual is local detail: G_k's 7 x 7
receptive field has l_k for the rest).  The paper's CIFAR-10 model worked on 28 x 28 crops
(8 -> 14 -> 28); a 32 x 32 image here takes 8 -> 16 -> 32.  The class-conditional LAPGAN is not
built.
"""
from __future__ import annotations

import numpy as np

from ... import functional as F
from ... import nn
from ...autograd import no_grad
from ...creation import randn
from ...utils.checks import positive_int
from ..base import GenerativeModel, ImageShapeError, check_channels, check_image_shape
from ..registry import ModelSpec, register
from .adversarial import AdversarialModel
from .dcgan import dcgan_discriminator, radford_init_
from .gan import mlp
from .tricks import discriminator_body

__all__ = ["LAPGAN", "ResidualGAN", "downsample", "upsample", "gaussian_pyramid",
           "laplacian_pyramid", "reconstruct", "check_pyramid_shape", "residual_generator"]

# w = (1, 3, 3, 1) / 8, the binomial blur of eq. (1)
BLUR = (0.125, 0.375, 0.375, 0.125)


# -- the pyramid operators ------------------------------------------------------------------------
def _check_batch(x, where):
    if x.ndim != 4:
        raise ValueError(f"{where}: expected images (N, C, H, W), got shape {tuple(x.shape)}")


def downsample(x):
    """d(x): (N, C, H, W) -> (N, C, H/2, W/2), the binomial blur (1, 3, 3, 1)/8 per axis with the
    edges repeated, keeping every second pixel.  eq. (1)"""
    _check_batch(x, "downsample")
    h, w = x.shape[2:]
    if h % 2 or w % 2:
        raise ImageShapeError(f"downsample: halving needs even sides, got {h}x{w}")
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")              # x_{-1} = x_0, x_n = x_{n-1}
    rows = sum(c * x[:, :, a:a + h:2, :] for a, c in enumerate(BLUR))      # eq. (1), along H
    return sum(c * rows[:, :, :, a:a + w:2] for a, c in enumerate(BLUR))   # ... and along W


def upsample(x):
    """u(y) = 4 d^T(y): (N, C, H, W) -> (N, C, 2H, 2W), bilinear on half-pixel centres, edges
    clamped.  eq. (2)"""
    _check_batch(x, "upsample")
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)   # eq. (2')


def check_pyramid_shape(image_shape, levels: int, what: str = "LAPGAN") -> tuple:
    """``image_shape`` (C, H, W) when H and W halve ``levels - 1`` times; an
    :class:`ImageShapeError` that says which sizes would do otherwise."""
    c, h, w = check_image_shape(image_shape)
    levels = positive_int(levels, f"{what}: levels")
    factor = 2 ** (levels - 1)
    if h % factor or w % factor:
        up = lambda n: -(-n // factor) * factor                    # noqa: E731
        raise ImageShapeError(f"{what} with {levels} pyramid levels halves the image "
                              f"{levels - 1} times, so it needs H and W divisible by {factor}, "
                              f"got {h}x{w} ({up(h)}x{up(w)} would do)")
    return c, h, w


def gaussian_pyramid(x, levels: int) -> list:
    """[I_0, ..., I_K] with I_0 = x, I_{k+1} = d(I_k), K = levels - 1."""
    _check_batch(x, "gaussian_pyramid")
    check_pyramid_shape(tuple(x.shape[1:]), levels, "gaussian_pyramid")
    pyramid = [x]
    for _ in range(levels - 1):
        pyramid.append(downsample(pyramid[-1]))
    return pyramid


def laplacian_pyramid(x, levels: int) -> list:
    """[h_0, ..., h_{K-1}, I_K]: h_k = I_k - u(I_{k+1}), and the low-pass I_K last.  eq. (3)"""
    gauss = gaussian_pyramid(x, levels)
    return [fine - upsample(coarse) for fine, coarse in zip(gauss[:-1], gauss[1:])] + [gauss[-1]]


def reconstruct(pyramid) -> object:
    """I_0 from [h_0, ..., h_{K-1}, I_K]: I_k = u(I_{k+1}) + h_k from the top down.  eq. (4)"""
    image = pyramid[-1]
    for residual in reversed(pyramid[:-1]):
        image = upsample(image) + residual                                  # eq. (4)
    return image


# -- the networks ---------------------------------------------------------------------------------
def residual_generator(image_channels: int, widths=(64, 64), kernel_size: int = 5):
    """G_k: [l_k, z_k] (N, C + 1, H, W) -> residual (N, C, H, W): stride-1 ``kernel_size``
    convolutions keeping the resolution, ``widths`` planes each with batch norm and ReLU, a
    linear output (no batch norm there).  Radford init."""
    widths = check_channels(widths)
    kernel_size = positive_int(kernel_size, "LAPGAN: kernel_size")
    if kernel_size % 2 == 0:
        raise ValueError(f"LAPGAN: kernel_size must be odd (to keep the size), got {kernel_size}")
    pad = kernel_size // 2
    stack, c_in = [], image_channels + 1                    # the noise is one more plane
    for c_out in widths:
        stack += [nn.Conv2d(c_in, c_out, kernel_size, 1, pad, bias=False), nn.BatchNorm2d(c_out),
                  nn.ReLU()]
        c_in = c_out
    stack.append(nn.Conv2d(c_in, image_channels, kernel_size, 1, pad))
    return radford_init_(nn.Sequential(*stack))


def coarse_networks(shape, latent_dim: int, hidden, disc_hidden, dropout: float):
    """G_K and D_K on (C, h, w) low-pass images: fully connected (the paper's initial scale).
    G: z -> ``hidden`` (batch norm, ReLU) -> tanh; D: ``disc_hidden`` (LeakyReLU(0.2), dropout)
    -> one logit."""
    features = int(np.prod(shape))
    generator = nn.Sequential(*mlp((latent_dim, *hidden, features), nn.ReLU, batch_norm=True),
                              nn.Tanh(), nn.Unflatten(1, tuple(shape)))
    discriminator = nn.Sequential(nn.Flatten(), *mlp((features, *disc_hidden, 1),
                                                     lambda: nn.LeakyReLU(0.2), dropout))
    return generator, discriminator


class ResidualGAN(AdversarialModel):
    """One conditional level of the pyramid: G draws the residual h (N, C, H, W) of
    ``sample_shape`` given the low-pass image l (the *condition*, same shape), and D judges the
    pair (l + h, l).  eq. (6)

    The shared step hands a level its batch as ``(h, l)``: the low-pass images ride where a
    class-conditional GAN's labels do, so :meth:`sample_condition` returns them and the fakes of
    each discriminator update are drawn on the real minibatch's l.  The code z is one noise
    plane, (N, H * W)."""

    def __init__(self, generator, discriminator, *, sample_shape, **game):
        c, h, w = sample_shape
        super().__init__(generator, discriminator, latent_dim=h * w, sample_shape=sample_shape,
                         **game)

    def _check_condition(self, condition, n, where):
        name = type(self).__name__
        if condition is None:
            raise ValueError(f"{name}.{where}: a level of the pyramid is conditioned on the "
                             f"upsampled coarser image l; pass it (got None)")
        if tuple(condition.shape) != (n,) + self.sample_shape:
            raise ValueError(f"{name}.{where}: expected low-pass images l of shape "
                             f"({n}, {', '.join(map(str, self.sample_shape))}), got "
                             f"{tuple(condition.shape)}")

    def sample_condition(self, n: int, labels=None):
        """G's condition for n fakes: the real minibatch's low-pass images l_k."""
        self._check_condition(labels, n, "sample_condition")
        return labels

    def generate(self, z, condition=None):
        """The residual G_k(z, l): z (N, H * W) as one plane beside l's C planes."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"{type(self).__name__}.generate: expected codes of shape (N, "
                             f"{self.latent_dim}), got {tuple(z.shape)}")
        self._check_condition(condition, z.shape[0], "generate")
        plane = z.reshape(z.shape[0], 1, *self.sample_shape[1:])
        return self.generator(F.cat([condition, plane], 1))

    def _pair(self, x, condition, where):
        self._check_samples(x, where)
        self._check_condition(condition, x.shape[0], where)
        return F.cat([condition + x, condition], 1)              # (l + h, l), 2C planes

    def discriminate(self, x, condition=None):
        """D_k's logit for residuals x on low-pass images l (the condition): D(l + x, l)."""
        return self.discriminator(self._pair(x, condition, "discriminate")).reshape(x.shape[0])

    def discriminator_features(self, x, condition=None):
        """The input of D_k's last linear layer on the pair (l + x, l) (feature matching)."""
        pair = self._pair(x, condition, "discriminator_features")
        return discriminator_body(self.discriminator, type(self).__name__)(pair)


class LAPGAN(GenerativeModel):
    """A Laplacian pyramid of GANs on images ``image_shape`` (C, H, W), H and W divisible by
    2^(levels - 1).

    ``levels`` K + 1 (default 3: 28 -> 14 -> 7); ``latent_dim``, ``hidden``, ``disc_hidden``,
    ``dropout``: the coarsest level's fully connected G and D; ``g_channels`` and
    ``kernel_size``: each finer G's convolutions; ``channels`` and ``critic_norm``: each finer
    D's (DCGAN's discriminator, the first j entries of ``channels`` at the level j halvings above
    the coarsest, at most all of them).  ``loss``, ``k`` and the other keywords (penalty,
    weight_clip, spectral_norm, optimizer, betas, d_optimizer, d_lr_ratio, the training tricks)
    are every level's game: :class:`~.adversarial.AdversarialModel`.  ``num_classes`` is
    accepted for the common model interface and not used: the model is unconditional.
    """

    judged_by_samples = True
    data_transform = "symmetric"          # images in [-1, 1], as every GAN of the zoo
    figure_rows = 6                       # figures(): samples drawn down the pyramid

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, levels: int = 3,
                 latent_dim: int = 100, hidden=(1200, 1200), disc_hidden=(600, 600),
                 dropout: float = 0.5, g_channels=(64, 64), kernel_size: int = 3,
                 channels=(64, 128), critic_norm: str = "batch", loss: str = "non-saturating",
                 k: int = 1, **game):
        super().__init__()
        self.image_shape = check_pyramid_shape(image_shape, levels)
        self.num_levels = levels
        self.num_classes = num_classes
        self.latent_dim = positive_int(latent_dim, "LAPGAN: latent_dim")
        for what, widths in (("hidden", hidden), ("disc_hidden", disc_hidden)):
            if not widths or not all(isinstance(h, (int, np.integer)) and h > 0 for h in widths):
                raise ValueError(f"LAPGAN: {what} must be a non-empty sequence of positive "
                                 f"ints, got {widths!r}")
        channels = check_channels(channels)
        c, h, w = self.image_shape
        K = levels - 1
        shapes = [(c, h >> j, w >> j) for j in range(levels)]    # level j: (C, H / 2^j, W / 2^j)
        levels_list = []
        for j, shape in enumerate(shapes[:-1]):
            halvings = min(K - j, len(channels))                 # down to the coarsest side
            levels_list.append(ResidualGAN(
                residual_generator(c, g_channels, kernel_size),
                radford_init_(dcgan_discriminator((2 * c,) + shape[1:], channels[:halvings],
                                                  norm=critic_norm)),
                sample_shape=shape, loss=loss, k=k, **game))
        generator, discriminator = coarse_networks(shapes[-1], self.latent_dim, tuple(hidden),
                                                   tuple(disc_hidden), float(dropout))
        levels_list.append(AdversarialModel(generator, discriminator, latent_dim=self.latent_dim,
                                            sample_shape=shapes[-1], loss=loss, k=k, **game))
        self.levels = nn.ModuleList(levels_list)                 # levels[0] the finest
        self.batches_per_step = self.levels[0].batches_per_step
        self.inference_modules = tuple(f"levels.{j}.generator" for j in range(levels))
        self.channels, self.g_channels = channels, tuple(g_channels)

    # -- training ---------------------------------------------------------------------------------
    def configure_optimizers(self, lr: float) -> dict:
        """Each level's pair, as its game configures them, named ``generator_k`` and
        ``discriminator_k`` (k = 0 the finest level)."""
        optimizers = {}
        for j, level in enumerate(self.levels):
            for name, opt in level.configure_optimizers(lr).items():
                optimizers[f"{name}_{j}"] = opt
        return optimizers

    def _level_optimizers(self, optimizers, j):
        names = (f"discriminator_{j}", f"generator_{j}")
        missing = [name for name in names if name not in optimizers]
        if missing:
            raise KeyError(f"LAPGAN.training_step: no {missing[0]!r} optimizer in "
                           f"{sorted(optimizers)} (use configure_optimizers)")
        return {"discriminator": optimizers[names[0]], "generator": optimizers[names[1]]}

    def training_step(self, batch, optimizers) -> dict:
        """One step of every level's game on the real pyramid of the batch, coarsest first:
        level K on I_K (eq. 5), level k on (h_k, l_k = u(I_{k+1})) (eq. 6).  The logs of level k
        carry the suffix ``_k``."""
        x, _ = batch
        self._check_images(x, "training_step")
        with no_grad():
            gauss = gaussian_pyramid(x, self.num_levels)
        logs = {}
        for j in reversed(range(self.num_levels)):
            opts = self._level_optimizers(optimizers, j)
            if j == self.num_levels - 1:
                level_batch = (gauss[j], None)                                  # eq. (5)
            else:
                with no_grad():
                    low = upsample(gauss[j + 1])
                    level_batch = (gauss[j] - low, low)                         # eq. (3), (6)
            for key, value in self.levels[j].training_step(level_batch, opts).items():
                logs[f"{key}_{j}"] = value
        return logs

    # -- sampling ---------------------------------------------------------------------------------
    def _device(self):
        return next(iter(self.parameters())).device

    def sample_pyramid(self, n: int) -> list:
        """Draw n images down the pyramid, eq. (7): ``[(l_k, h_k, I_k)]`` for k = K, ..., 0 (in
        the data's [-1, 1] scale, unclamped; l_K is None and h_K = I_K)."""
        n = positive_int(n, "LAPGAN.sample: n")
        coarsest = self.levels[-1]
        with no_grad():
            image = coarsest.generate(coarsest.sample_latents(n))               # I_K = G_K(z_K)
            steps = [(None, image, image)]
            for level in reversed(self.levels[:-1]):
                low = upsample(image)                                           # l_k
                residual = level.generate(level.sample_latents(n), low)         # G_k(z_k, l_k)
                image = low + residual                                          # eq. (7)
                steps.append((low, residual, image))
        return steps

    def sample(self, n: int, y=None):
        """n images (n, C, H, W) in [0, 1], drawn coarse to fine (eq. 7)."""
        image = self.sample_pyramid(n)[-1][2]
        return F.clamp((image + 1.0) * 0.5, 0.0, 1.0)

    def figures(self, x=None, y=None) -> dict:
        """``pyramid``: the sampling procedure as the paper's Fig. 1 draws it, one row per sample:
        I_K, then for each finer level l_k = u(I_{k+1}), the residual h_k and I_k = l_k + h_k,
        every image enlarged to full size by repeating its pixels.  Images are shown as samples
        are ([-1, 1] to [0, 1]); residuals with 0 as mid grey (0.5 + h / 2)."""
        steps = self.sample_pyramid(self.figure_rows)
        h = self.image_shape[1]

        def full(t):
            factor = h // t.shape[2]
            return t if factor == 1 else F.interpolate(t, scale_factor=factor, mode="nearest")

        columns = [full(steps[0][2])]
        for low, residual, image in steps[1:]:
            columns += [full(low), full(residual), full(image)]
        with no_grad():
            grid = F.stack([F.clamp((t + 1.0) * 0.5, 0.0, 1.0) for t in columns], 1)
        return {"pyramid": (grid.reshape(-1, *self.image_shape), len(columns))}

    def evaluate(self, loader) -> dict:
        """Nothing of its own: ``nanogen eval`` judges the samples (FID, KID, IS, ...)."""
        return {}


register(ModelSpec(
    name="lapgan", build=LAPGAN, steps=500, batch_size=64, lr=2e-4, sample_every=500,
    summary="LAPGAN (Denton et al.): a Laplacian pyramid of GANs 7 -> 14 -> 28 -- an MLP GAN "
            "on the 7x7 low-pass, conditional conv GANs on each finer residual given the "
            "upsampled coarser image; sampled coarse to fine"))
