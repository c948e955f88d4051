r"""ProGAN (Karras, Aila, Laine & Lehtinen 2018, "Progressive Growing of GANs for Improved Quality,
Stability, and Variation"): generator and discriminator grown from 4x4 to the full resolution.

Both networks hold a block per resolution :math:`r_s = r_0 2^s`, :math:`s = 0 \dots L`; training
starts with the :math:`r_0 \times r_0` blocks only and adds one resolution at a time, each new
block *faded in* (the paper's Figure 2).  The tricks of the paper's section 3-4, each a switch
(``progressive``, ``minibatch_std``, ``equalized``, ``pixelnorm``) so that the rows of its
Table 1 can be rerun:

**Equalised learning rate** (section 4.1).  Every weight is drawn from N(0, 1) and scaled at run
time by the He constant of its layer,

.. math:: \hat w = c\, w, \qquad c = g \sqrt{1 / \text{fan\_in}}, \quad g = \sqrt 2,   \tag{1}

(g = 1 for the layers that map features to an image or to the score), so the layer computes
what an ordinary layer with weight :math:`\hat w` computes, but the gradient reaching the
parameter is :math:`\partial L / \partial w = c\, \partial L / \partial \hat w`, and Adam's
update, invariant to that scale, moves every weight at the same relative rate whatever its
fan-in.  ``equalized=False``: He's initialisation :math:`w \sim N(0, c^2)`, used as is.

**Pixelwise feature normalisation** in G (section 4.2), after every 3x3 convolution and on z:

.. math:: b_{x,y} = a_{x,y} \Big/ \sqrt{\tfrac1C \textstyle\sum_{j=1}^C (a^j_{x,y})^2
          + \epsilon}, \qquad \epsilon = 10^{-8}.                                       \tag{2}

**Minibatch standard deviation** (section 3) before D's last block: the batch is split into
groups of G = 4 (example i in group i mod N/G, as the authors' code), and each group gets one
extra constant feature map, the mean over (C, H, W) of the per-feature standard deviation
within the group:

.. math:: \sigma_{chw} = \sqrt{\tfrac1G \textstyle\sum_{g} (x_{g,chw} - \bar x_{chw})^2
          + 10^{-8}}, \qquad s = \tfrac{1}{CHW} \textstyle\sum_{chw} \sigma_{chw}.       \tag{3}

**Fade-in** (Figure 2).  While resolution :math:`r_s` fades in, with α ramping from 0 to 1,

.. math:: G_\alpha(z) = (1 - \alpha)\, \mathrm{up}\big(\mathrm{toRGB}_{s-1}(h_{s-1})\big)
          + \alpha\, \mathrm{toRGB}_s(h_s), \qquad h_s = \mathrm{block}_s(h_{s-1}),      \tag{4}

.. math:: D_\alpha(x) = D_{<s}\Big((1 - \alpha)\, \mathrm{fromRGB}_{s-1}(\mathrm{pool}(x))
          + \alpha\, \mathrm{block}_s\big(\mathrm{fromRGB}_s(x)\big)\Big),                 \tag{5}

up being 2x nearest-neighbour upsampling and pool 2x2 average pooling; the real images are
blended the same way (the authors' code, ``process_reals``):

.. math:: x_\alpha = (1 - \alpha)\, \mathrm{up}(\mathrm{pool}(x)) + \alpha x.            \tag{6}

**Loss** (section 6 and appendix A.1): WGAN-GP with n_critic = 1 and a drift term keeping the
critic's scores near 0,

.. math:: L_D = \mathbb E\, D(G(z)) - \mathbb E\, D(x)
          + \lambda\, \mathbb E_{\hat x} (\|\nabla_{\hat x} D(\hat x)\|_2 - 1)^2
          + \epsilon_\text{drift}\, \mathbb E\, D(x)^2, \qquad
          L_G = -\mathbb E\, D(G(z)),                                                     \tag{7}

λ = 10, :math:`\epsilon_\text{drift} = 0.001`; Adam(lr 1e-3, β = (0, 0.99)).  The drift term
is part of the game (:data:`WASSERSTEIN_DRIFT`), the penalty the shared step's ``wgan-gp``.

**The growth schedule.**  Training step t (counting from 0) lies in phase
:math:`p = \min(\lfloor t / T \rfloor, 2L)`, T = ``phase_steps``: phase 0 trains the
:math:`r_0` networks; phase 2s - 1 fades resolution :math:`r_s` in and phase 2s stabilises it,

.. math:: r = r_0 2^{\lceil p / 2 \rceil}, \qquad
          \alpha = \begin{cases} (t \bmod T) / T & p \text{ odd (fading in)} \\
                                 1 & p \text{ even} \end{cases}                           \tag{8}

and the last phase lasts to the end of the run.  The paper counts 800k real images a phase;
here a phase is T training steps, and the registered default (T = 200, 1,600 steps of 64) ends
with 400 steps at full resolution (phases 0-5 take 1,200 steps).  ``progressive=False`` trains
the full-resolution networks from step 0 (phase 2L throughout).  The step count, phase,
resolution and α are buffers (``growth.*``) in the state dict and the checkpoint, so a run
resumed in the middle of a fade continues exactly, and they travel with the generator's weights (``inference_modules``).

Resolutions.  The networks grow :math:`r_0 \to 2 r_0 \to \dots \to R`; R is the smallest
:math:`r_0 2^L` that holds the images, and smaller images are padded to R x R with the data's
black (-1) before D sees them, G's samples cropped back.  On 28x28 MNIST the default
:math:`r_0 = 4` gives 4 -> 8 -> 16 -> 32 on images padded by 2 pixels a side: the paper's
4x4 start and its exact 2x steps (pooling undoes nearest upsampling, so eq. 4 and 5 at α = 0
are the old networks exactly); ``start_resolution=7`` gives 7 -> 14 -> 28 without padding.
Both networks work at their current resolution r; G's output is upsampled (nearest) to R x R
and D's input average-pooled from R x R to r, so samples, sample grids, FID and every other
metric see full-size images at every stage (an early grid shows 4x4 blocks), and the gradient
penalty is taken at full size, as in the authors' code.

Layers (widths ``channels``, from :math:`r_0` up; the last repeats for further resolutions)::

    G  z -PN-> dense to C0 x r0 x r0 (the paper's 4x4 conv of 1x1) -LReLU-PN-> conv3 -LReLU-PN->
       per resolution: up2 -> conv3 -LReLU-PN-> conv3 -LReLU-PN->;   toRGB: conv1 (linear)
    D  fromRGB: conv1 -LReLU->;  per resolution: conv3 -LReLU-> conv3 -LReLU-> pool2 ->
       last: minibatch stddev -> conv3 -LReLU-> dense (conv r0 x r0) -LReLU-> dense to 1

(LReLU slope 0.2; PN: eq. (2); every conv and dense layer eq. (1).)

Deviations from the paper.  Widths (32, 32, 16, 8) instead of 512 (the authors' CIFAR-10
network: 512 at every resolution), latent 128 instead of 512, and minibatches of 64 (the paper: 16) at every resolution, to fit the CPU
budget of the other GANs here; a phase is a number of steps, not 800k images; the minibatch
stddev group is the largest divisor of the batch not above 4 (the authors' code requires a
batch divisible by 4); the critic's minibatch statistics are kept under the gradient penalty,
as in the authors' code, although they couple the examples whose gradients are penalised.
The EMA of G's weights (decay 0.999, the paper's) is the registered spec's ``ema_decay``.
"""
from __future__ import annotations

import math

from ... import functional as F
from ... import nn
from ...creation import tensor
from ...tensor import float32, int64
from ...utils.checks import positive_int
from ..base import check_image_shape
from ..registry import ModelSpec, register
from .adversarial import AdversarialModel
from .losses import AdversarialLoss, wasserstein_critic_loss, wasserstein_generator_loss

__all__ = ["ProGAN", "EqualizedConv2d", "EqualizedLinear", "PixelNorm", "MinibatchStddev",
           "pixel_norm", "minibatch_stddev", "GrowthSchedule", "ProGANGenerator",
           "ProGANDiscriminator", "wasserstein_drift_loss", "growth_resolutions"]

LEAK = 0.2            # the LeakyReLU slope of both networks (appendix A.1)
SQRT2 = math.sqrt(2.0)


# -- equalised learning rate (section 4.1) ---------------------------------------------------------
class _Equalized:
    """The part both equalised layers share: weight N(0, 1) times c at run time (eq. 1), or,
    with ``equalized=False``, He's N(0, c^2) used as is; biases 0."""

    def _equalize(self, gain: float, equalized: bool):
        fan_in = math.prod(self.weight.shape[1:])
        self.equalized = bool(equalized)
        self.gain = float(gain)
        c = self.gain / math.sqrt(fan_in)                       # eq. (1), the He constant
        self.scale = c if self.equalized else 1.0
        nn.init.normal_(self.weight, 0.0, 1.0 if self.equalized else c)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def effective_weight(self):
        """The weight the layer computes with: c w (equalised) or w."""
        return self.weight * self.scale if self.equalized else self.weight   # eq. (1)

    def extra_repr(self):
        return f"{super().extra_repr()}, gain={self.gain:.4g}, equalized={self.equalized}"


class EqualizedConv2d(_Equalized, nn.Conv2d):
    """A Conv2d whose weight is N(0, 1), multiplied at run time by c = gain / sqrt(fan_in)
    (eq. 1): the forward pass is an ordinary convolution with weight c w, the parameter's
    gradient c times that convolution's gradient with respect to its weight.
    ``equalized=False``: an ordinary Conv2d with He's initialisation N(0, c^2)."""

    def __init__(self, in_channels, out_channels, kernel_size, padding=0, gain: float = SQRT2,
                 equalized: bool = True, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        self._equalize(gain, equalized)

    def forward(self, input):
        return F.conv2d(input, self.effective_weight(), self.bias, self.stride, self.padding)


class EqualizedLinear(_Equalized, nn.Linear):
    """A Linear layer with the equalised learning rate of :class:`EqualizedConv2d`."""

    def __init__(self, in_features, out_features, gain: float = SQRT2, equalized: bool = True,
                 bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self._equalize(gain, equalized)

    def forward(self, input):
        return F.linear(input, self.effective_weight(), self.bias)


# -- pixelwise feature normalisation (section 4.2) --------------------------------------------------
def pixel_norm(x, eps: float = 1e-8):
    """Eq. (2): every feature vector (dim 1) of x divided by its root mean square."""
    return x / ((x * x).mean(dim=1, keepdim=True) + eps).sqrt()          # eq. (2)


class PixelNorm(nn.Module):
    """:func:`pixel_norm` as a layer."""

    def forward(self, x):
        return pixel_norm(x)


# -- minibatch standard deviation (section 3) -------------------------------------------------------
def _group_size(n: int, group_size: int) -> int:
    """The largest divisor of the batch n that is at most ``group_size``."""
    return max(g for g in range(1, min(group_size, n) + 1) if n % g == 0)


def minibatch_stddev(x, group_size: int = 4, eps: float = 1e-8):
    """Eq. (3): x (N, C, H, W) with one more channel, each example's group's mean standard
    deviation.  Groups of G (the largest divisor of N up to ``group_size``); example i belongs
    to group i mod N/G, as in the authors' code."""
    n, c, h, w = x.shape
    g = _group_size(n, group_size)
    y = x.reshape(g, n // g, c, h, w)
    y = y - y.mean(dim=0, keepdim=True)
    sigma = ((y * y).mean(dim=0) + eps).sqrt()                           # eq. (3), (M, C, H, W)
    s = sigma.reshape(n // g, -1).mean(dim=1)                            # (M,)
    feature = s.reshape(1, n // g, 1, 1, 1).expand(g, n // g, 1, h, w).reshape(n, 1, h, w)
    return F.cat([x, feature], dim=1)


class MinibatchStddev(nn.Module):
    """:func:`minibatch_stddev` as a layer (adds one channel)."""

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = positive_int(group_size, "MinibatchStddev: group_size")

    def forward(self, x):
        return minibatch_stddev(x, self.group_size)

    def extra_repr(self):
        return f"group_size={self.group_size}"


# -- the growth schedule (eq. 8) --------------------------------------------------------------------
def growth_resolutions(start: int, full: int, what: str = "ProGAN") -> tuple:
    """(start, 2 start, ..., full); a ValueError when doubling ``start`` never gives ``full``."""
    resolutions = [start]
    while resolutions[-1] < full:
        resolutions.append(2 * resolutions[-1])
    if resolutions[-1] != full:
        ladder = " -> ".join(map(str, resolutions))
        raise ValueError(f"{what}: the growth schedule {ladder} (doubling start_resolution="
                         f"{start}) cannot reach resolution {full}; choose a resolution of "
                         f"{start} * 2^k, or a start_resolution that doubles to {full}")
    return tuple(resolutions)


class GrowthSchedule(nn.Module):
    """Where the growth stands: buffers ``step`` (training steps done), ``phase``, ``stage``
    (index of the current resolution), ``resolution`` and ``alpha``, all set from ``step`` by
    eq. (8) (``phase_steps`` steps a phase, ``stages`` resolutions).  ``progressive=False``:
    the last phase from step 0."""

    def __init__(self, resolutions, phase_steps: int, progressive: bool = True):
        super().__init__()
        self.resolutions = tuple(resolutions)
        self.phase_steps = positive_int(phase_steps, "ProGAN: phase_steps")
        self.progressive = bool(progressive)
        self.register_buffer("step", tensor(0, dtype=int64))
        self.register_buffer("phase", tensor(0, dtype=int64))
        self.register_buffer("stage", tensor(0, dtype=int64))
        self.register_buffer("resolution", tensor(0, dtype=int64))
        self.register_buffer("alpha", tensor(1.0, dtype=float32))
        self.set_step(0)

    @property
    def last_phase(self) -> int:
        return 2 * (len(self.resolutions) - 1)

    def at(self, step: int):
        """(phase, stage, alpha) of training step ``step`` (0-based): eq. (8)."""
        step = int(step)
        if step < 0:
            raise ValueError(f"GrowthSchedule: step must be >= 0, got {step}")
        if not self.progressive:
            return self.last_phase, len(self.resolutions) - 1, 1.0
        phase = min(step // self.phase_steps, self.last_phase)
        stage = (phase + 1) // 2                                            # eq. (8), r
        alpha = (step % self.phase_steps) / self.phase_steps if phase % 2 else 1.0
        return phase, stage, alpha

    def set_step(self, step: int):
        """Put the schedule at training step ``step`` (buffers written in place)."""
        phase, stage, alpha = self.at(step)
        self.step.data[...] = int(step)
        self.phase.data[...] = phase
        self.stage.data[...] = stage
        self.resolution.data[...] = self.resolutions[stage]
        self.alpha.data[...] = alpha

    def advance(self):
        """One training step done."""
        self.set_step(int(self.step.item()) + 1)

    @property
    def current(self):
        """(stage, alpha) as Python numbers, read from the buffers."""
        return int(self.stage.item()), float(self.alpha.item())

    def extra_repr(self):
        return (f"resolutions={self.resolutions}, phase_steps={self.phase_steps}, "
                f"progressive={self.progressive}")


# -- the two networks -------------------------------------------------------------------------------
def _widths(channels, stages: int) -> tuple:
    channels = tuple(channels)
    if not channels or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0
                               for c in channels):
        raise ValueError(f"ProGAN: channels must be a non-empty sequence of positive ints (one "
                         f"width per resolution from the start), got {channels!r}")
    return tuple(channels[min(s, len(channels) - 1)] for s in range(stages))


def _act():
    return nn.LeakyReLU(LEAK)


class ProGANGenerator(nn.Module):
    """G: one block per resolution (``widths[s]`` features at ``start * 2^s``) and a toRGB layer
    per resolution.  ``forward(z, stage, alpha)`` runs blocks 0..stage, fading the last in
    (eq. 4); the images are (N, C, r, r), r the stage's resolution, linear (no tanh)."""

    def __init__(self, latent_dim, out_channels, start, widths, pixelnorm=True, equalized=True):
        super().__init__()
        norm = (lambda: [PixelNorm()]) if pixelnorm else (lambda: [])
        conv = lambda a, b: EqualizedConv2d(a, b, 3, padding=1, equalized=equalized)  # noqa: E731
        c0 = widths[0]
        blocks = [nn.Sequential(
            PixelNorm(),                                      # z onto the sphere of radius sqrt(d)
            # the paper's 4x4 convolution of the 1x1 code: fan-in latent_dim * start^2
            EqualizedLinear(latent_dim, c0 * start * start, gain=SQRT2 / start,
                            equalized=equalized),
            nn.Unflatten(1, (c0, start, start)), _act(), *norm(),
            conv(c0, c0), _act(), *norm())]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            blocks.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                        conv(c_in, c_out), _act(), *norm(),
                                        conv(c_out, c_out), _act(), *norm()))
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = nn.ModuleList(EqualizedConv2d(c, out_channels, 1, gain=1.0,
                                                    equalized=equalized) for c in widths)

    def forward(self, z, stage: int, alpha: float = 1.0):
        h = self.blocks[0](z)
        for s in range(1, stage):
            h = self.blocks[s](h)
        if stage == 0:
            return self.to_rgb[0](h)
        new = self.to_rgb[stage](self.blocks[stage](h))
        if alpha >= 1.0:
            return new
        old = F.interpolate(self.to_rgb[stage - 1](h), scale_factor=2, mode="nearest")
        return old * (1.0 - alpha) + new * alpha                              # eq. (4)


class ProGANDiscriminator(nn.Module):
    """D: a fromRGB layer and a block per resolution; block s > 0 maps ``widths[s]`` features at
    ``start * 2^s`` to ``widths[s - 1]`` at half the size, block 0 (minibatch stddev, conv,
    dense, dense) to one score.  ``forward(x, stage, alpha)`` reads images at the stage's
    resolution, fading the newest block in (eq. 5); scores (N, 1)."""

    def __init__(self, in_channels, start, widths, minibatch_std=True, group_size=4,
                 equalized=True):
        super().__init__()
        conv = lambda a, b: EqualizedConv2d(a, b, 3, padding=1, equalized=equalized)  # noqa: E731
        c0 = widths[0]
        std = [MinibatchStddev(group_size)] if minibatch_std else []
        blocks = [nn.Sequential(
            *std, conv(c0 + len(std), c0), _act(), nn.Flatten(),
            # the paper's 4x4 convolution without padding: a dense layer on the start x start map
            EqualizedLinear(c0 * start * start, c0, equalized=equalized), _act(),
            EqualizedLinear(c0, 1, gain=1.0, equalized=equalized))]
        for c_out, c_in in zip(widths[:-1], widths[1:]):
            blocks.append(nn.Sequential(conv(c_in, c_in), _act(), conv(c_in, c_out), _act(),
                                        nn.AvgPool2d(2)))
        self.blocks = nn.ModuleList(blocks)
        self.from_rgb = nn.ModuleList(nn.Sequential(
            EqualizedConv2d(in_channels, c, 1, equalized=equalized), _act()) for c in widths)

    def forward(self, x, stage: int, alpha: float = 1.0):
        h = self.blocks[stage](self.from_rgb[stage](x))
        if stage > 0 and alpha < 1.0:
            old = self.from_rgb[stage - 1](F.avg_pool2d(x, 2))
            h = old * (1.0 - alpha) + h * alpha                              # eq. (5)
        for s in range(stage - 1, -1, -1):
            h = self.blocks[s](h)
        return h


# -- the game (eq. 7) -------------------------------------------------------------------------------
def wasserstein_drift_loss(epsilon: float):
    """The Wasserstein game whose critic loss has the drift term epsilon * E D(x)^2 (eq. 7,
    without the gradient penalty, which the shared step adds)."""
    def critic(real_scores, fake_scores):
        loss = wasserstein_critic_loss(real_scores, fake_scores)
        return loss + epsilon * (real_scores * real_scores).mean() if epsilon else loss
    return AdversarialLoss(critic, wasserstein_generator_loss, log_odds=False,
                           name=f"wasserstein-drift({epsilon:g})")


def _switch(value, name):
    if not isinstance(value, bool):
        raise ValueError(f"ProGAN: {name} is a switch, true or false, got {value!r}")
    return value


class ProGAN(AdversarialModel):
    """Progressive GAN on images ``image_shape`` (C, H, W); see the module docstring.

    ``start_resolution`` r0 (4) and ``resolution`` R (default: the smallest r0 * 2^L that holds
    H and W; smaller images are padded to R x R with -1) fix the ladder of resolutions;
    ``channels`` the widths per resolution from r0 up (the last repeats); ``phase_steps`` the
    training steps of each fade-in and stabilisation phase (eq. 8).  The switches of the
    paper's Table 1: ``progressive`` (grow, or train at R from the start), ``minibatch_std``
    (with ``group_size``), ``equalized`` (learning rate), ``pixelnorm`` (in G).
    ``drift`` is eq. (7)'s epsilon (0 drops the term); the game is ``loss="wasserstein"``
    with ``penalty="wgan-gp"`` (``penalty_weight`` λ = 10) and n_critic ``k = 1``, and the other
    keywords of :class:`~.adversarial.AdversarialModel` (optimizer, betas, tricks, ...) pass on.
    ``num_classes`` is accepted for the common interface and not used.
    """

    betas = (0.0, 0.99)           # the paper's Adam (appendix A.1)

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, latent_dim: int = 128,
                 channels=(32, 32, 16, 8), start_resolution: int = 4, resolution=None,
                 phase_steps: int = 200, progressive: bool = True, minibatch_std: bool = True,
                 group_size: int = 4, equalized: bool = True, pixelnorm: bool = True,
                 drift: float = 0.001, loss: str = "wasserstein", penalty="wgan-gp",
                 k: int = 1, **game):
        c, h, w = check_image_shape(image_shape)
        latent_dim = positive_int(latent_dim, "ProGAN: latent_dim")
        start = positive_int(start_resolution, "ProGAN: start_resolution")
        if resolution is None:
            resolution = start
            while resolution < max(h, w):
                resolution *= 2
        resolution = positive_int(resolution, "ProGAN: resolution")
        if resolution < max(h, w):
            raise ValueError(f"ProGAN: resolution {resolution} is smaller than the {h}x{w} "
                             f"images; the networks must grow to at least {max(h, w)}")
        resolutions = growth_resolutions(start, resolution)
        flags = {name: _switch(value, name) for name, value in (
            ("progressive", progressive), ("minibatch_std", minibatch_std),
            ("equalized", equalized), ("pixelnorm", pixelnorm))}
        if isinstance(drift, bool) or not isinstance(drift, (int, float)) or drift < 0:
            raise ValueError(f"ProGAN: drift (eq. 7's epsilon) must be a number >= 0, got "
                             f"{drift!r}")
        if drift and loss != "wasserstein":
            raise ValueError(f"ProGAN: the drift term keeps a Wasserstein critic's scores near "
                             f"0; with loss={loss!r} pass drift=0")
        widths = _widths(channels, len(resolutions))
        generator = ProGANGenerator(latent_dim, c, start, widths, pixelnorm=pixelnorm,
                                    equalized=equalized)
        discriminator = ProGANDiscriminator(c, start, widths, minibatch_std=minibatch_std,
                                            group_size=group_size, equalized=equalized)
        game_loss = wasserstein_drift_loss(float(drift)) if loss == "wasserstein" else loss
        super().__init__(generator, discriminator, latent_dim=latent_dim,
                         sample_shape=(c, resolution, resolution), loss=game_loss, k=k,
                         penalty=penalty, **game)
        self.loss_name = loss if drift == 0 else f"{loss} + drift"
        self.growth = GrowthSchedule(resolutions, phase_steps, flags["progressive"])
        self.image_shape = (c, h, w)
        self.num_classes = num_classes
        self.channels = widths
        self.drift = float(drift)
        self.switches = flags
        top, left = (resolution - h) // 2, (resolution - w) // 2
        self._padding = (left, resolution - w - left, top, resolution - h - top)

    # the schedule goes with the generator: a sampler loading G's weights samples where it stood
    inference_modules = ("generator", "growth")

    @property
    def resolutions(self) -> tuple:
        return self.growth.resolutions

    # -- between the data's size and the networks' ---------------------------------------------
    def pad(self, x):
        """Data images (N, C, H, W) in [-1, 1] -> (N, C, R, R), padded with -1 (black)."""
        self._check_images(x, "pad")
        return F.pad(x, self._padding, value=-1.0) if any(self._padding) else x

    def crop(self, x):
        """(N, C, R, R) -> the data's (N, C, H, W), the middle of the padded square."""
        left, _, top, _ = self._padding
        _, h, w = self.image_shape
        return x[:, :, top:top + h, left:left + w] if any(self._padding) else x

    def _to_data_range(self, out):
        """G's full-size output, cropped to the data's size, from [-1, 1] to [0, 1]."""
        return super()._to_data_range(self.crop(out))

    def _factor(self, stage: int) -> int:
        return self.resolutions[-1] // self.resolutions[stage]

    # -- the two players, at the schedule's stage ----------------------------------------------
    def generate(self, z, condition=None):
        """G(z) at the current stage and α, upsampled (nearest) to (N, C, R, R)."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"ProGAN.generate: expected codes of shape (N, {self.latent_dim}), "
                             f"got {tuple(z.shape)}")
        stage, alpha = self.growth.current
        images = self.generator(z, stage, alpha)
        factor = self._factor(stage)
        return F.interpolate(images, scale_factor=factor, mode="nearest") if factor > 1 \
            else images

    def discriminate(self, x, condition=None):
        """D's scores (N,) of (N, C, R, R) images, average-pooled to the current resolution."""
        self._check_samples(x, "discriminate")
        stage, alpha = self.growth.current
        factor = self._factor(stage)
        if factor > 1:
            x = F.avg_pool2d(x, factor)
        return self.discriminator(x, stage, alpha).reshape(x.shape[0])

    def fade_reals(self, x):
        """Eq. (6): while a resolution fades in, real (N, C, R, R) images blended with their
        half-resolution version at the current α (unchanged otherwise)."""
        stage, alpha = self.growth.current
        if stage == 0 or alpha >= 1.0:
            return x
        half = 2 * self._factor(stage)
        coarse = F.interpolate(F.avg_pool2d(x, half), scale_factor=half, mode="nearest")
        return coarse * (1.0 - alpha) + x * alpha                             # eq. (6)

    def discriminator_loss(self, real, labels, fake, condition):
        """Eq. (7) on the faded reals (eq. 6)."""
        return super().discriminator_loss(self.fade_reals(real), labels, fake, condition)

    def training_step(self, batch, optimizers) -> dict:
        """The shared step on the padded images at the schedule's stage, then the schedule
        moves one step on; logs the resolution and α the step trained at."""
        x, y = batch
        self._check_images(x, "training_step")
        resolution, alpha = int(self.growth.resolution.item()), float(self.growth.alpha.item())
        logs = super().training_step((self.pad(x), y), optimizers)
        self.growth.advance()
        return {**logs, "resolution": resolution, "alpha": alpha}


register(ModelSpec(
    name="progan", build=ProGAN, steps=1600, batch_size=64, lr=1e-3, ema_decay=0.999,
    sample_every=200,
    summary="ProGAN (Karras et al. 2018): G and D grown 4 -> 8 -> 16 -> 32 (MNIST padded) with "
            "fade-in, minibatch stddev, equalised LR, pixelnorm, WGAN-GP + drift, Adam(1e-3, "
            "0, 0.99); 200 steps a phase"))
