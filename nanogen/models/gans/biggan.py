r"""BigGAN, small (Brock, Donahue & Simonyan 2019): a class-conditional GAN with conditional batch
norm from a shared embedding and hierarchical z, a projection discriminator, spectral norm and
self-attention in both networks, orthogonal regularisation, the hinge loss, an EMA of the
generator and the truncation trick.

**Generator.**  The code :math:`z \in \mathbb R^d` is split into L + 1 chunks, one for the input
layer and one per residual block (the paper's "hierarchical latent space", its Figure 15(a));
block k is conditioned on its own chunk beside the class's row of a *shared* embedding
:math:`E \in \mathbb R^{K \times e}`,

.. math:: z = [z_0, z_1, \dots, z_L], \qquad c_k = [z_k,\; E_y] \quad (k = 1 \dots L).   \tag{1}

Every batch norm of block k is *conditional*: normalised without an affine part, then scaled
and shifted per example by linear maps of :math:`c_k` (de Vries et al. 2017; Dumoulin et al.
2017), the gain written as :math:`1 + \gamma` so that it starts near one,

.. math:: \mathrm{CBN}(h, c) = \big(1 + \gamma(c)\big) \odot
          \frac{h - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} + \beta(c), \qquad
          \gamma(c) = W_\gamma c + b_\gamma, \quad \beta(c) = W_\beta c + b_\beta.          \tag{2}

The input layer maps :math:`z_0` linearly to a :math:`C \times H/2^L \times W/2^L` map; each
residual block doubles the resolution (the paper's Figure 15(b)),

.. math:: h' = \mathrm{conv}_{3\times3}\Big(\mathrm{ReLU}\big(\mathrm{CBN}_2\big(
          \mathrm{conv}_{3\times3}(\mathrm{up}(\mathrm{ReLU}(\mathrm{CBN}_1(h, c_k)))),
          c_k\big)\big)\Big) + \mathrm{conv}_{1\times1}(\mathrm{up}(h)),                 \tag{3}

(up: nearest-neighbour 2x), and the output is :math:`\tanh(\mathrm{conv}_{3\times3}(
\mathrm{ReLU}(\mathrm{BN}(h))))`.  For 28x28 MNIST with ``channels=(32, 64)`` (the
default)::

    G: z_0 -linear-> 64 x 7 x 7 -block(z_1)-> 32 x 14 x 14 -attention-> -block(z_2)->
       32 x 28 x 28 -BN-ReLU-conv-tanh-> 1 x 28 x 28
    D: x -block-> 32 x 14 x 14 -attention-> -block-> 64 x 7 x 7 -ReLU-sum over H, W-> phi(x)

**Self-attention** (SAGAN, Zhang et al. 2019, eqs. 1-3), at H/2 x W/2 in both networks: 1x1
convolutions give queries, keys and values of the :math:`HW` positions, and a learned scalar
:math:`\gamma` (zero at first) adds the attended values back,

.. math:: y = h + \gamma\, W_o\, \mathrm{softmax}\big((W_q h)^\top (W_k h)\big)\,
          (W_v h)^\top,                                                                     \tag{4}

computed by the fused kernel :func:`nanogen.nn.functional.scaled_dot_product_attention` (scale
1: SAGAN has no temperature).  Queries and keys have C/8 channels, values C/2 (BigGAN's code).

**Projection discriminator** (Miyato & Koyama 2018, eq. 3): residual down-sampling blocks
(ReLU-conv-ReLU-conv-avgpool, a 1x1 convolution on the shortcut; the first block without the
leading ReLU) give the features :math:`\phi(x) = \sum_{h, w} \mathrm{ReLU}(\text{blocks}(x))`,
and the label enters by an inner product with its embedding :math:`V_y`,

.. math:: D(x, y) = \psi(\phi(x)) + \langle V_y,\, \phi(x) \rangle,
          \qquad \psi(\phi) = w^\top \phi + b.                                              \tag{5}

**Spectral norm** on every weight of both networks -- every convolution, every linear layer
(the CBN projections included) and D's embedding V; not G's shared embedding E, as in BigGAN's
code: :math:`W_\text{SN} = W / \sigma(W)` by one power iteration a step
(:mod:`nanogen.nn.spectral_norm`).                                                          (6)

**The game** is the hinge loss (:mod:`.losses`),

.. math:: L_D = \mathbb E \max(0, 1 - D(x, y)) + \mathbb E \max(0, 1 + D(G(z, y), y)),
          \qquad L_G = -\mathbb E\, D(G(z, y), y) + \sum_W R_\beta(W),                     \tag{7}

G's loss carrying BigGAN's **orthogonal regularisation** (its eq. 3) of every weight of G but
the shared embedding -- the pairwise inner products of the filters pushed to zero, their norms
left free:

.. math:: R_\beta(W) = \beta\, \big\| W W^\top \odot (\mathbf 1 - I) \big\|_F^2,
          \qquad \beta = 10^{-4},                                                           \tag{8}

W read as a matrix of one row per output filter (C_out x fan-in; the paper's :math:`W^\top W`
with filters as columns).  A tall W (the input layer's: 6,272 rows, a few dozen columns) is
summed through the smaller Gram matrix, by :math:`\|W W^\top\|_F = \|W^\top W\|_F`:

.. math:: \big\| W W^\top \odot (\mathbf 1 - I) \big\|_F^2
          = \|W^\top W\|_F^2 - \sum_i \|w_i\|^4.                                           \tag{9}

The regulariser acts on the raw weights (``weight_orig``) under spectral norm, as in BigGAN's
code.  **Updates**: two D steps per G step, Adam with :math:`\beta = (0, 0.999)`, learning
rates 4e-4 for D and 1e-4 for G -- the two time-scale rule as SAGAN sets it, the baseline of
BigGAN's Table 1 (BigGAN's own 2e-4 / 5e-5 are for batches of 2,048 and runs of 10^5 steps;
``--lr 5e-5`` gives them, the ratio staying 4): the ModelSpec's ``lr`` is G's and
``d_lr_ratio = 4`` makes D's.  **EMA**: samples and evaluation use the average of the weights,
:math:`\bar\theta \leftarrow d \bar\theta + (1 - d)\theta` (the ModelSpec's ``ema_decay``; the
training loop keeps the shadow weights, :mod:`nanogen.optim.ema`).                          (10)

**Truncation trick** (the paper's section 3.1): sample with :math:`z` from a normal truncated to
:math:`|z_i| \le t`, which trades variety for fidelity as t shrinks.  Drawn by the inverse CDF,
which gives exactly the distribution that resampling the entries outside gives,

.. math:: z_i = \Phi^{-1}\big(\Phi(-t) + u_i\,(\Phi(t) - \Phi(-t))\big),
          \qquad u_i \sim \mathcal U(0, 1),                                                 \tag{11}

so the same u at several thresholds gives the same sample, more or less truncated (the
``truncation`` figure: rows t = ∞, 2, 1, 0.5, 0.04 as the paper's Figure 2(a), one class a
column).  :meth:`BigGAN.truncation_curve` scores samples at several thresholds -- FID and IS
(:func:`nanogen.metrics.sample_quality`) and the classifier's accuracy on the requested class --
the fidelity-variety trade-off the paper plots as IS against FID;
:func:`truncation_curve_of_run` runs it on a trained run.

Class-conditional like CGAN: ``sample(n, y, truncation=None)`` (classes in turn without y),
labels checked, ``nanogen eval`` adds the conditional accuracy, the ``class_samples`` grid has
one row per class (:class:`.conditional.ClassConditionalGAN`).

**Sizes.**  ``channels`` (c_1, ..., c_L) are D's widths per halving, G mirroring them; H and W
must be divisible by 2^L.  28x28 runs 7 -> 14 -> 28; 32x32 (CIFAR-10) runs 8 -> 16 -> 32 with
the same two blocks, or 4 -> 8 -> 16 -> 32 with three widths (BigGAN's CIFAR network).

**Deviations from the paper.**  Small: two blocks of 32-64 channels (BigGAN's CIFAR model: three
of 256, 128x128: five of up to 1,024) -- residual 3x3 convolutions at full resolution cost
about five times DCGAN's (64, 128) step on a CPU even so; latent d = 120
split into L + 1 = 3 chunks (BigGAN at 128x128: 6 chunks of 20), shared embedding e = 128.  The
attention has no max-pooling of keys and values (BigGAN's code pools them to save memory; the
fused kernel does not need it, and SAGAN's paper has none).  The EMA starts at the first step
with the loop's warm-up, decay 0.999, where BigGAN starts at step 20,000 with 0.9999: the runs
here are short.  Sampling uses the batch norms' running statistics, not BigGAN's "standing
statistics".  The orthogonal term enters G's loss, so its gradient is
:math:`4\beta (W W^\top \odot (\mathbf 1 - I)) W`; BigGAN's code adds half that.
"""
from __future__ import annotations

import math

import numpy as np

from ... import functional as F
from ... import nn
from ...autograd import no_grad
from ...creation import arange, rand, tensor
from ...utils.checks import positive_int
from ..base import check_channels, check_halvings, check_labels
from ..registry import ModelSpec, register
from .adversarial import AdversarialModel
from .conditional import ClassConditionalGAN

__all__ = ["BigGAN", "BigGANGenerator", "ProjectionDiscriminator", "ConditionalBatchNorm2d",
           "SelfAttention", "orthogonal_penalty", "spectrally_normalised_layers",
           "truncated_normal", "check_threshold", "truncation_curve_of_run",
           "TRUNCATION_THRESHOLDS", "FIGURE_THRESHOLDS"]

# truncation_curve()'s default thresholds (None: no truncation) and the figure's rows
TRUNCATION_THRESHOLDS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, None)
FIGURE_THRESHOLDS = (None, 2.0, 1.0, 0.5, 0.04)          # BigGAN's Figure 2(a), "∞" first
# what the curve keeps of sample_quality and conditional_accuracy (where they report them)
CURVE_METRICS = ("fid", "inception_score", "ms_ssim", "conditional_accuracy",
                 "ms_ssim_within_class")


def _orthogonal(module):
    """``module`` with BigGAN's init: an orthogonal weight, a zero bias."""
    nn.init.orthogonal_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def _conv(c_in, c_out, kernel, bias=True):
    return _orthogonal(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias))


def _linear(n_in, n_out, bias=True):
    return _orthogonal(nn.Linear(n_in, n_out, bias=bias))


def spectrally_normalised_layers(generator, discriminator):
    """The layers eq. (6) normalises: every convolution and linear layer of both networks, and
    D's class embedding V (G's shared embedding E is left alone, as in BigGAN's code)."""
    layers = [m for net in (generator, discriminator) for m in net.modules()
              if isinstance(m, (nn.Conv2d, nn.Linear))]
    return layers + [discriminator.embed]


# -- the pieces -------------------------------------------------------------------------------
class ConditionalBatchNorm2d(nn.Module):
    """Eq. (2): batch norm without an affine part, then a per-example gain ``1 + gamma(c)`` and
    bias ``beta(c)``, each a spectrally normalised linear map of the condition c (N, cond_dim)."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = _linear(cond_dim, channels)
        self.bias = _linear(cond_dim, channels)

    def affine(self, c):
        """``(1 + gamma(c), beta(c))``, each (N, C)."""
        return 1.0 + self.gain(c), self.bias(c)                                   # eq. (2)

    def forward(self, h, c):
        gain, bias = self.affine(c)
        n, channels = gain.shape
        return self.norm(h) * gain.reshape(n, channels, 1, 1) + bias.reshape(n, channels, 1, 1)


class SelfAttention(nn.Module):
    """Eq. (4): SAGAN's self-attention among the H*W positions, as a residual scaled by a
    learned gamma that starts at 0; every 1x1 convolution spectrally normalised."""

    def __init__(self, channels: int):
        super().__init__()
        key_dim, value_dim = max(1, channels // 8), max(1, channels // 2)
        self.query = _conv(channels, key_dim, 1, bias=False)
        self.key = _conv(channels, key_dim, 1, bias=False)
        self.value = _conv(channels, value_dim, 1, bias=False)
        self.out = _conv(value_dim, channels, 1, bias=False)
        self.gamma = nn.Parameter(tensor(np.zeros(1, np.float32)))

    def forward(self, h):
        n, c, height, width = h.shape
        positions = lambda t: t.reshape(n, t.shape[1], height * width).transpose(1, 2)  # noqa
        attended = F.scaled_dot_product_attention(positions(self.query(h)),
                                                  positions(self.key(h)),
                                                  positions(self.value(h)), scale=1.0)
        attended = attended.transpose(1, 2).reshape(n, attended.shape[2], height, width)
        return h + self.gamma * self.out(attended)                                # eq. (4)


class GeneratorBlock(nn.Module):
    """Eq. (3): a residual block that doubles H and W, its two batch norms conditional on c."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.norm1 = ConditionalBatchNorm2d(c_in, cond_dim)
        self.conv1 = _conv(c_in, c_out, 3)
        self.norm2 = ConditionalBatchNorm2d(c_out, cond_dim)
        self.conv2 = _conv(c_out, c_out, 3)
        self.shortcut = _conv(c_in, c_out, 1)

    def forward(self, h, c):
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")            # noqa: E731
        out = self.conv1(up(F.relu(self.norm1(h, c))))
        out = self.conv2(F.relu(self.norm2(out, c)))
        return out + self.shortcut(up(h))                                         # eq. (3)


class DiscriminatorBlock(nn.Module):
    """A residual block that halves H and W: (ReLU)-conv-ReLU-conv-avgpool, and a 1x1
    convolution then avgpool on the shortcut (avgpool first in the first block, which has no
    leading ReLU: it reads the image), as BigGAN's D blocks."""

    def __init__(self, c_in: int, c_out: int, first: bool):
        super().__init__()
        self.first = first
        self.conv1 = _conv(c_in, c_out, 3)
        self.conv2 = _conv(c_out, c_out, 3)
        self.shortcut = _conv(c_in, c_out, 1)

    def forward(self, x):
        h = x if self.first else F.relu(x)
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(h))), 2)
        skip = self.shortcut(F.avg_pool2d(x, 2)) if self.first else \
            F.avg_pool2d(self.shortcut(x), 2)
        return h + skip


def chunk_sizes(latent_dim: int, chunks: int) -> list:
    """The widths of the ``chunks`` chunks of z, eq. (1): as equal as they can be."""
    return [len(part) for part in np.array_split(np.arange(latent_dim), chunks)]


class BigGANGenerator(nn.Module):
    """G(z, y), eqs. (1)-(4): ``forward(z, labels)``; ``conditions(z, labels)`` gives z_0 and
    the blocks' c_k of eq. (1)."""

    def __init__(self, latent_dim: int, image_shape, channels, num_classes: int,
                 shared_dim: int, attention: bool):
        super().__init__()
        c, h, w = image_shape
        widths = tuple(reversed(channels)) + (channels[0],)          # e.g. (64, 32, 32)
        levels = len(channels)
        self.sizes = chunk_sizes(latent_dim, levels + 1)
        self.start = (widths[0], h >> levels, w >> levels)
        self.shared = nn.Embedding(num_classes, shared_dim)
        nn.init.orthogonal_(self.shared.weight)
        self.input = _linear(self.sizes[0], int(np.prod(self.start)))
        self.blocks = nn.ModuleList([GeneratorBlock(widths[i], widths[i + 1],
                                                    self.sizes[i + 1] + shared_dim)
                                     for i in range(levels)])
        # attention after the block whose output is H/2 x W/2 (after the input layer if L = 1)
        self.attention_after = levels - 2 if attention else None
        self.attention = SelfAttention(widths[levels - 1]) if attention else None
        self.out_norm = nn.BatchNorm2d(widths[-1])
        self.out = _conv(widths[-1], c, 3)

    def conditions(self, z, labels):
        """``(z_0, [c_1, ..., c_L])``: eq. (1)."""
        shared = self.shared(labels).to(z.dtype)
        bounds = np.cumsum([0] + self.sizes)
        parts = [z[:, int(a):int(b)] for a, b in zip(bounds[:-1], bounds[1:])]
        return parts[0], [F.cat([part, shared], 1) for part in parts[1:]]         # eq. (1)

    def forward(self, z, labels):
        z0, conditions = self.conditions(z, labels)
        h = self.input(z0).reshape(z.shape[0], *self.start)
        if self.attention_after == -1:
            h = self.attention(h)
        for i, (block, c) in enumerate(zip(self.blocks, conditions)):
            h = block(h, c)
            if i == self.attention_after:
                h = self.attention(h)
        return F.tanh(self.out(F.relu(self.out_norm(h))))


class ProjectionDiscriminator(nn.Module):
    """D(x, y), eq. (5): ``features(x)`` is phi(x) (N, C); ``forward(x, labels)`` the scores
    (N,)."""

    def __init__(self, image_shape, channels, num_classes: int, attention: bool):
        super().__init__()
        widths = (image_shape[0],) + tuple(channels)
        self.blocks = nn.ModuleList([DiscriminatorBlock(widths[i], widths[i + 1], i == 0)
                                     for i in range(len(channels))])
        self.attention = SelfAttention(widths[1]) if attention else None   # at H/2 x W/2
        self.psi = _linear(widths[-1], 1)
        self.embed = _orthogonal(nn.Embedding(num_classes, widths[-1]))          # V of eq. (5)

    def features(self, x):
        """phi(x): the blocks, ReLU, the sum over positions."""
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == 0 and self.attention is not None:
                h = self.attention(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x, labels):
        phi = self.features(x)
        projection = (self.embed(labels).to(phi.dtype) * phi).sum(dim=1)
        return self.psi(phi).reshape(x.shape[0]) + projection                      # eq. (5)


# -- orthogonal regularisation ------------------------------------------------------------------
def orthogonal_penalty(weight):
    r""":math:`\|W W^\top \odot (1 - I)\|_F^2` for W = ``weight`` read as (rows, fan-in), eq. (8)
    without :math:`\beta`; a tall W through its smaller Gram matrix, eq. (9)."""
    if weight.ndim < 2:
        raise ValueError(f"orthogonal_penalty: needs a matrix or a conv kernel, got shape "
                         f"{tuple(weight.shape)}")
    w = weight.reshape(weight.shape[0], -1)
    rows, cols = w.shape
    if rows <= cols:
        gram = w @ w.transpose(0, 1)
        off_diagonal = tensor(1.0 - np.eye(rows), dtype=w.dtype, device=w.device)
        return ((gram * off_diagonal) ** 2).sum()                                  # eq. (8)
    squared_norms = (w * w).sum(dim=1)
    gram = w.transpose(0, 1) @ w
    return (gram ** 2).sum() - (squared_norms ** 2).sum()                           # eq. (9)


# -- the truncation trick -----------------------------------------------------------------------
def check_threshold(threshold, where: str):
    """``threshold`` as a float in (0, inf] (inf: no truncation), or None; a ValueError that
    names ``where`` otherwise."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating,
                                                                 np.integer)) \
            or not threshold > 0:
        raise ValueError(f"{where}: the truncation threshold t (z resampled until every "
                         f"|z_i| <= t) must be a positive number, or None for no truncation; "
                         f"got {threshold!r}")
    return float(threshold)


def truncated_normal(u, threshold: float):
    """Eq. (11): standard normal entries conditioned on |z| <= ``threshold``, from uniforms
    ``u`` (a float64 array in [0, 1)), by the inverse CDF; float32, each within the threshold."""
    from scipy.special import ndtr, ndtri
    lower = ndtr(-threshold)
    p = lower + np.asarray(u, np.float64) * (1.0 - 2.0 * lower)                # eq. (11)
    z = ndtri(np.clip(p, np.finfo(np.float64).tiny, 1.0 - 2.0 ** -53))
    bound = np.float32(min(threshold, 1e30))
    if bound > threshold:                                     # float32 rounded t up: step back
        bound = np.nextafter(bound, np.float32(0))
    return np.clip(z, -bound, bound).astype(np.float32)


# -- the model ----------------------------------------------------------------------------------
class BigGAN(ClassConditionalGAN):
    """A small BigGAN (see the module docstring) on images ``image_shape`` (C, H, W), H and W
    divisible by 2^len(channels), with ``num_classes`` labels (at least 2).

    ``channels`` D's widths per halving (G mirrors them), ``latent_dim`` d (split into
    len(channels) + 1 chunks, so at least that), ``shared_dim`` the width of G's shared class
    embedding, ``attention`` the self-attention block at H/2 x W/2 in both networks,
    ``ortho_weight`` beta of eq. (8) (0: none), ``spectral_norm`` on every weight of both
    networks (eq. 6).  ``loss`` (hinge), ``k`` (2 D steps per G step), ``betas`` ((0, 0.999)),
    ``d_lr_ratio`` (4: D's learning rate over G's) and the other keywords (penalty,
    optimizer, the tricks) are :class:`~.adversarial.AdversarialModel`'s."""

    betas = (0.0, 0.999)          # Adam's, BigGAN's (and SAGAN's)

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, latent_dim: int = 120,
                 channels=(32, 64), shared_dim: int = 128, attention: bool = True,
                 ortho_weight: float = 1e-4, spectral_norm: bool = True, loss: str = "hinge",
                 k: int = 2, d_lr_ratio: float = 4.0, **game):
        name = type(self).__name__
        num_classes = self._check_num_classes(num_classes)
        shape = tuple(image_shape)
        if len(shape) != 3:
            raise ValueError(f"{name} models images: image_shape must be (C, H, W), got "
                             f"{image_shape!r}")
        channels = check_channels(channels)
        check_halvings(shape, len(channels), name)
        latent_dim = positive_int(latent_dim, f"{name}: latent_dim")
        if latent_dim < len(channels) + 1:
            raise ValueError(f"{name}: latent_dim {latent_dim} cannot split into "
                             f"{len(channels) + 1} chunks (the input layer's and one per "
                             f"block); use at least {len(channels) + 1}")
        shared_dim = positive_int(shared_dim, f"{name}: shared_dim")
        if isinstance(ortho_weight, bool) or not isinstance(ortho_weight, (int, float)) \
                or not 0 <= ortho_weight < float("inf"):
            raise ValueError(f"{name}: ortho_weight (beta of the orthogonal regularisation) "
                             f"must be a number >= 0, got {ortho_weight!r}")
        generator = BigGANGenerator(latent_dim, shape, channels, num_classes, shared_dim,
                                    bool(attention))
        discriminator = ProjectionDiscriminator(shape, channels, num_classes, bool(attention))
        if spectral_norm:
            for layer in spectrally_normalised_layers(generator, discriminator):
                nn.utils.spectral_norm(layer)                                     # eq. (6)
        # the spectral norm is this model's own (both networks, D's embedding too): the shared
        # step's option, D's linear and conv layers only, stays off
        AdversarialModel.__init__(self, generator, discriminator, latent_dim=latent_dim,
                                  sample_shape=shape, loss=loss, k=k, d_lr_ratio=d_lr_ratio,
                                  **game)
        self.spectral_norm = bool(spectral_norm)
        self.num_classes, self.channels, self.shared_dim = num_classes, channels, shared_dim
        self.attention, self.ortho_weight = bool(attention), float(ortho_weight)

    # -- the players ----------------------------------------------------------------------------
    def discriminate(self, x, condition=None):
        """D(x, y), eq. (5): scores (N,) for samples x of the labels ``condition`` (N,)."""
        self._check_samples(x, "discriminate")
        if condition is None:
            raise ValueError(f"{type(self).__name__}.discriminate: the projection discriminator "
                             f"reads the class; pass the labels")
        return self.discriminator(x, condition)

    def orthogonal_weights(self):
        """The weights eq. (8) regularises: every parameter of G with two or more dimensions
        but the shared embedding (the raw weights, under spectral norm)."""
        return [(name, p) for name, p in self.generator.named_parameters()
                if p.ndim >= 2 and not name.startswith("shared.")]

    def orthogonal_regularisation(self):
        """Eq. (8) summed over :meth:`orthogonal_weights`, times beta (``ortho_weight``)."""
        total = None
        for _, weight in self.orthogonal_weights():
            term = orthogonal_penalty(weight)
            total = term if total is None else total + term
        return self.ortho_weight * total

    def generator_loss(self, fake, condition):
        """Eq. (7), G's side: the hinge game's loss plus the orthogonal regularisation (logged
        as ``ortho``)."""
        loss, logs = super().generator_loss(fake, condition)
        if self.ortho_weight > 0:
            ortho = self.orthogonal_regularisation()
            loss = loss + ortho
            logs = {**logs, "ortho": float(ortho.item())}
        return loss, logs

    # -- sampling -------------------------------------------------------------------------------
    def truncated_latents(self, n: int, threshold, u=None):
        """n codes (n, latent_dim) from N(0, I) truncated to |z_i| <= ``threshold`` (eq. 11),
        from the uniforms ``u`` (n, latent_dim) if given, else fresh ones from nanogen's
        generator.  ``threshold`` None: plain N(0, I) codes."""
        where = f"{type(self).__name__}.truncated_latents"
        n = positive_int(n, f"{where}: n")
        threshold = check_threshold(threshold, where)
        if threshold is None and u is None:
            return self.sample_latents(n)
        if u is None:
            u = rand(n, self.latent_dim, dtype=np.float64, device=self._device()).numpy()
        return tensor(truncated_normal(u, math.inf if threshold is None else threshold),
                      device=self._device())

    def sample(self, n: int, y=None, truncation=None):
        """n samples of G(z, y), images in [0, 1], for the labels ``y`` (n,) -- by default the
        classes in turn -- with z ~ N(0, I), or truncated to |z_i| <= ``truncation`` (eq. 11)."""
        name = type(self).__name__
        n = positive_int(n, f"{name}.sample: n")
        truncation = check_threshold(truncation, f"{name}.sample")
        if y is None:
            y = arange(n) % self.num_classes
        labels = check_labels(y, n, self.num_classes, f"{name}.sample").to(self._device())
        with no_grad():
            z = self.truncated_latents(n, truncation)
            return self._to_data_range(self.generate(z, labels))

    def truncation_grid(self, thresholds=FIGURE_THRESHOLDS, columns: int | None = None):
        """One row per threshold (None: none), one class a column (the first ``columns``
        classes, at most 10), the same uniforms u in every row (eq. 11): each column is one
        sample, more truncated row by row.  ``(images, columns)``."""
        columns = min(self.num_classes, 10) if columns is None else positive_int(
            columns, f"{type(self).__name__}.truncation_grid: columns")
        thresholds = [check_threshold(t, f"{type(self).__name__}.truncation_grid")
                      for t in thresholds]
        u = rand(columns, self.latent_dim, dtype=np.float64, device=self._device()).numpy()
        labels = tensor(np.arange(columns) % self.num_classes, device=self._device())
        with no_grad():
            rows = [self._to_data_range(self.generate(self.truncated_latents(columns, t, u),
                                                      labels)) for t in thresholds]
        return F.cat(rows), columns

    def figures(self, x=None, y=None) -> dict:
        """``class_samples`` (one row per class) and ``truncation`` (:meth:`truncation_grid`)."""
        return {**super().figures(x, y), "truncation": self.truncation_grid()}

    def truncation_curve(self, thresholds=TRUNCATION_THRESHOLDS, n: int = 1000,
                         dataset: str = "mnist5k", seed: int = 0, path=None) -> list:
        """FID, IS and MS-SSIM (:func:`nanogen.metrics.sample_quality` against ``dataset``'s
        test split) of ``n`` samples at each threshold (None: no truncation), the classes in
        turn, and -- for at most 10 classes -- the shipped classifier's accuracy on the requested
        class and the within-class MS-SSIM (:func:`nanogen.metrics.conditional_accuracy`): one
        dict per threshold (:data:`CURVE_METRICS`, those reported).  With ``path``, a PNG of FID
        against IS, one point per threshold, the paper's form of the trade-off.  Costs two draws
        of n samples and a metric pass per threshold."""
        from ... import random as ng_random
        from ...metrics import conditional_accuracy, sample_quality
        name = f"{type(self).__name__}.truncation_curve"
        n = positive_int(n, f"{name}: n")
        thresholds = [check_threshold(t, name) for t in thresholds]
        if not thresholds:
            raise ValueError(f"{name}: no thresholds given")
        labels = tensor(np.arange(n) % self.num_classes)
        was_training = self.training
        self.eval()
        records = []
        try:
            for t in thresholds:
                with ng_random.fork_rng(seed):
                    samples = self.sample(n, labels, truncation=t)
                quality = sample_quality(samples.numpy(), dataset=dataset, seed=seed)
                if self.num_classes <= 10:
                    quality.update(conditional_accuracy(self, n=n, seed=seed,
                                                        options={"truncation": t}))
                records.append({"threshold": t, **{key: quality[key] for key in CURVE_METRICS
                                                   if key in quality}, "num_samples": n})
        finally:
            self.train(was_training)
        if path is not None:
            from ...utils.plot import plot_curves
            plot_curves([{"inception_score": r["inception_score"], "fid": r["fid"]}
                         for r in records], path, x="inception_score",
                        title=f"{type(self).__name__}: FID vs IS, truncation "
                              f"{', '.join('none' if t is None else f'{t:g}' for t in thresholds)}"
                              f" ({n} samples)")
        return records


register(ModelSpec(
    name="biggan", build=BigGAN, steps=400, batch_size=64, lr=1e-4, ema_decay=0.999,
    sample_every=100,
    summary="BigGAN, small (Brock et al.): residual G with class-conditional BN from a shared "
            "embedding + hierarchical z, projection D, spectral norm and self-attention in both, "
            "orthogonal reg., hinge loss, 2 D steps, Adam 1e-4 (G) / 4e-4 (D) betas (0, 0.999) "
            "(SAGAN's TTUR), EMA; truncation trick (figure, FID/IS curve); sample(n, y)"))


def truncation_curve_of_run(run_dir, n: int = 1000, path=None) -> list:
    """:meth:`BigGAN.truncation_curve` of a trained ``biggan`` run (its averaged weights when it
    kept them, against the run's dataset), printed one line per threshold and returned::

        python -c "from nanogen.models.gans.biggan import truncation_curve_of_run as t; \\
                   t('RUN_DIR', path='RUN_DIR/truncation_curve.png')"
    """
    from ...cli import load_run
    model, config, _ = load_run(run_dir)
    if not isinstance(model, BigGAN):
        raise ValueError(f"{run_dir} holds a {config.get('model')!r} run, not biggan")
    records = model.truncation_curve(n=n, dataset=config["dataset"], path=path)
    for record in records:
        print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in record.items()))
    return records
