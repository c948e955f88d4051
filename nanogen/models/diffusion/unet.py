r"""The noise-prediction network :math:`\varepsilon_\theta(x_t, t)` of a DDPM: a U-Net.

The layout of Ho et al. (2020), itself PixelCNN++'s U-Net, with the adaptive group norm of
Nichol & Dhariwal (2021)::

    x (N, C, 28, 28) -conv-> 28x28: [ResBlock] x B ---------------------------------- skips --+
                     -down-> 14x14: [ResBlock] x B -------------------------- skips --+        |
                     -down->  7x7:  [ResBlock + Attention] x B ------ skips --+       |        |
                             7x7:  ResBlock, Attention, ResBlock (the middle)  |       |        |
                             7x7:  [ResBlock(cat skip) + Attention] x (B+1) <-+       |        |
                     -up->  14x14: [ResBlock(cat skip)] x (B+1) <--------------------+        |
                     -up->  28x28: [ResBlock(cat skip)] x (B+1) <-----------------------------+
                     -GroupNorm, SiLU, conv-> eps (N, C, 28, 28)

``channels * channel_mults[i]`` features at level ``i``; every block's output on the way down is
kept and concatenated to the input of one block on the way up (the U's skip connections).  The
width halves the image ``len(channel_mults) - 1`` times (stride-2 convolutions) and doubles it
back (nearest-neighbour upsampling, then a convolution), so H and W must divide by
:math:`2^{L-1}`: 28 -> 14 -> 7 and 32 -> 16 -> 8 with the default three levels.

**Time.**  The timestep enters as features passed through a two-layer MLP (``time_features``):
the sinusoidal embedding of the Transformer (:func:`sinusoidal_embedding`, geometric
frequencies, the default) or random Fourier features (:class:`RandomFourierFeatures`, Tancik et
al. 2020 as used by Song et al. 2021: frequencies drawn once from :math:`\mathcal N(0, s^2)` and
kept, applied to :math:`t / T`).  Each residual block turns it into
a per-channel scale and shift applied right after its second normalisation,

.. math:: h \leftarrow \mathrm{GroupNorm}(h) \odot (1 + \gamma(t)) + \beta(t),

so the noise level modulates every block's features (adaptive group norm,
:func:`nanogen.functional.adaptive_group_norm`: one fused kernel for the norm and the
per-sample affine, forward and backward).

**Class labels** (``num_classes``, for classifier-free guidance): a learned embedding of the label
is added to the time embedding, :math:`e = \mathrm{MLP}(\gamma(t)) + E_y`, with one extra row
:math:`E_\varnothing` for "no label" (index ``num_classes``), which the guided model trains by
dropping labels and samples with for its unconditional prediction.

**Initialisation.**  The last convolution of each residual block, the output projection of each
attention block and the final convolution start at zero: each block starts as the identity and
the network as :math:`\varepsilon_\theta = 0`, which keeps the first steps of training stable.
"""
from __future__ import annotations

import math

import numpy as np

from ... import functional as ops
from ... import nn
from ...creation import arange, randn
from ...nn import functional as F
from ...utils.checks import positive_int

__all__ = ["UNet", "ResidualBlock", "SelfAttention2d", "sinusoidal_embedding",
           "RandomFourierFeatures", "TIME_FEATURES"]

TIME_FEATURES = ("sinusoidal", "fourier")


def sinusoidal_embedding(t, dim: int, max_period: float = 10000.0):
    r"""(N, dim) features of the timesteps t (N,): :math:`[\sin(t\omega_k), \cos(t\omega_k)]` for
    the frequencies :math:`\omega_k = P^{-k/(d/2)}`, :math:`k = 0, \dots, d/2 - 1`, from 1 down to
    nearly :math:`1/P` (Vaswani et al. 2017; Ho et al. 2020)."""
    if dim % 2:
        raise ValueError(f"sinusoidal_embedding: dim must be even, got {dim}")
    half = dim // 2
    frequencies = ops.exp(arange(half, device=t.device).float() * (-math.log(max_period) / half))
    angles = t.float().reshape(-1, 1) * frequencies.reshape(1, half)
    return ops.cat([ops.sin(angles), ops.cos(angles)], dim=1)


class RandomFourierFeatures(nn.Module):
    r"""(N, dim) features of timesteps t (N,) in 0..T:
    :math:`[\sin(2\pi\, \omega_k t / T), \cos(2\pi\, \omega_k t / T)]` for ``dim / 2``
    frequencies :math:`\omega_k \sim \mathcal N(0, s^2)` drawn at construction and kept in the
    buffer ``frequencies`` (saved with the model, never trained); s = ``scale``."""

    def __init__(self, dim: int, timesteps: int, scale: float = 16.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"RandomFourierFeatures: dim must be even, got {dim}")
        if not scale > 0:
            raise ValueError(f"RandomFourierFeatures: scale must be positive, got {scale!r}")
        self.timesteps = positive_int(timesteps, "RandomFourierFeatures: timesteps")
        self.register_buffer("frequencies", randn(dim // 2) * scale)

    def forward(self, t):
        angles = (t.float().reshape(-1, 1) * (2.0 * math.pi / self.timesteps)
                  * self.frequencies.reshape(1, -1))
        return ops.cat([ops.sin(angles), ops.cos(angles)], dim=1)


def _zero_init(module):
    nn.init.zeros_(module.weight)
    nn.init.zeros_(module.bias)
    return module


class ResidualBlock(nn.Module):
    r"""Two 3x3 convolutions, each after GroupNorm and SiLU, on a residual path; the time
    embedding scales and shifts the second normalisation:

    .. math:: h = \mathrm{conv}_1(\mathrm{SiLU}(\mathrm{GN}_1(x))), \quad
              y = x' + \mathrm{conv}_2(\mathrm{drop}(\mathrm{SiLU}(
              \mathrm{GN}_2(h) \odot (1 + \gamma) + \beta))), \quad
              (\gamma, \beta) = W\, \mathrm{SiLU}(e_t)

    with :math:`x' = x`, or a 1x1 convolution of it when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, groups: int,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_scale_shift = nn.Linear(time_dim, 2 * out_channels)
        self.groups = groups            # GN_2 is F.adaptive_group_norm: its affine is (γ, β)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = _zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = (nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels
                     else nn.Identity())

    def forward(self, x, time_embedding):
        h = self.conv1(F.silu(self.norm1(x)))
        scale_shift = self.time_scale_shift(F.silu(time_embedding))
        scale, shift = scale_shift.chunk(2, dim=1)                 # (N, C) each
        h = F.adaptive_group_norm(h, self.groups, 1.0 + scale, shift)   # GN(h) (1 + γ) + β
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention2d(nn.Module):
    r"""Multi-head self-attention among the H*W positions of a feature map, as a residual:
    :math:`y = x + W_o\, \mathrm{softmax}(q k^\top / \sqrt{d})\, v` with
    :math:`q, k, v` 1x1 convolutions of :math:`\mathrm{GroupNorm}(x)`."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"SelfAttention2d: {channels} channels do not split into {heads} "
                             f"heads")
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = _zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        n, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w)
        # (N, heads, HW, c/heads) each: the positions are the sequence
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))
        attended = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(attended.transpose(-1, -2).reshape(n, c, h, w))


class _Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 convolution."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class _Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then a 3x3 convolution."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class _Level(nn.Module):
    """The residual blocks (each followed by attention where asked) of one resolution."""

    def __init__(self, blocks, attention):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attention = nn.ModuleList(attention)


class UNet(nn.Module):
    r""":math:`\varepsilon_\theta(x_t, t)`: images (N, C, H, W) and timesteps (N,) -> (N, C, H, W).

    ``image_channels`` C; ``channels`` the width of the first level, ``channel_mults`` each level's
    multiple of it; ``num_res_blocks`` residual blocks per level on the way down (one more on the
    way up); ``attention_levels`` the levels (0 = full resolution) whose blocks are followed by
    self-attention, by default the lowest; the middle always has one.  ``heads`` attention heads,
    ``groups`` GroupNorm groups, ``dropout`` in the residual blocks; ``time_dim`` the width of
    the time embedding (4 * channels by default); ``time_features`` ``"sinusoidal"`` or
    ``"fourier"`` (which needs ``timesteps``, T); ``num_classes`` K adds a label embedding of
    K + 1 rows (the last: no label), and ``forward`` then takes labels y in 0..K;
    ``out_channels`` the output's channels (``image_channels`` by default; twice that for a
    network that also predicts its variance).
    """

    def __init__(self, image_channels: int = 1, channels: int = 32, channel_mults=(1, 2, 2),
                 num_res_blocks: int = 2, attention_levels=None, heads: int = 4,
                 groups: int = 8, dropout: float = 0.0, time_dim: int | None = None,
                 time_features: str = "sinusoidal", timesteps: int = 1000,
                 num_classes: int | None = None, out_channels: int | None = None):
        super().__init__()
        if time_features not in TIME_FEATURES:
            raise ValueError(f"UNet: unknown time_features {time_features!r}; choose one of "
                             f"{', '.join(TIME_FEATURES)}")
        channel_mults = tuple(channel_mults)
        if not channel_mults or not all(isinstance(m, (int, np.integer)) and m > 0
                                        for m in channel_mults):
            raise ValueError(f"UNet: channel_mults must be a non-empty sequence of positive ints, "
                             f"got {channel_mults!r}")
        num_res_blocks = positive_int(num_res_blocks, "UNet: num_res_blocks")
        levels = len(channel_mults)
        attention_levels = (levels - 1,) if attention_levels is None else tuple(attention_levels)
        if any(not 0 <= a < levels for a in attention_levels):
            raise ValueError(f"UNet: attention_levels {attention_levels} must be among the "
                             f"levels 0..{levels - 1}")
        widths = [channels * m for m in channel_mults]
        for width in [channels] + widths:
            if width % groups:
                raise ValueError(f"UNet: width {width} is not divisible by groups={groups}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"UNet: dropout must be in [0, 1), got {dropout!r}")
        self.num_levels = levels
        time_dim = 4 * channels if time_dim is None else time_dim
        self.embedding_dim = channels + channels % 2
        self.time_features = (RandomFourierFeatures(self.embedding_dim, timesteps)
                              if time_features == "fourier" else None)
        self.num_classes = None if num_classes is None else positive_int(num_classes,
                                                                         "UNet: num_classes")
        self.label_embedding = (nn.Embedding(self.num_classes + 1, time_dim)
                                if num_classes is not None else None)
        self.time_mlp = nn.Sequential(nn.Linear(self.embedding_dim, time_dim), nn.SiLU(),
                                      nn.Linear(time_dim, time_dim))

        def block(cin, cout):
            return ResidualBlock(cin, cout, time_dim, groups, dropout)

        def attention(level, width, count):
            return [SelfAttention2d(width, heads, groups)
                    for _ in range(count if level in attention_levels else 0)]

        self.stem = nn.Conv2d(image_channels, channels, 3, padding=1)
        skip_widths = [channels]                  # the width of each tensor kept for the way up
        down, downsample, width = [], [], channels
        for level, out_width in enumerate(widths):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(block(width, out_width))
                width = out_width
                skip_widths.append(width)
            down.append(_Level(blocks, attention(level, width, num_res_blocks)))
            if level < levels - 1:
                downsample.append(_Downsample(width))
                skip_widths.append(width)
        self.down = nn.ModuleList(down)
        self.downsample = nn.ModuleList(downsample)

        self.middle = nn.ModuleList([block(width, width), SelfAttention2d(width, heads, groups),
                                     block(width, width)])

        up, upsample = [], []
        for level in reversed(range(levels)):
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(block(width + skip_widths.pop(), widths[level]))
                width = widths[level]
            up.append(_Level(blocks, attention(level, width, num_res_blocks + 1)))
            if level > 0:
                upsample.append(_Upsample(width))
        self.up = nn.ModuleList(up)
        self.upsample = nn.ModuleList(upsample)

        self.head = nn.Sequential(nn.GroupNorm(groups, width), nn.SiLU(),
                                  _zero_init(nn.Conv2d(width, out_channels or image_channels,
                                                       3, padding=1)))

    def embed(self, t, y=None):
        """The (N, time_dim) embedding of timesteps t and, for a class-conditional network, of
        the labels y (0..K, K meaning none)."""
        features = (self.time_features(t) if self.time_features is not None
                    else sinusoidal_embedding(t, self.embedding_dim))
        e = self.time_mlp(features)
        if self.label_embedding is None:
            if y is not None:
                raise ValueError("UNet: this network was built without num_classes and takes "
                                 "no labels y")
            return e
        if y is None or tuple(y.shape) != tuple(t.shape):
            raise ValueError(f"UNet: a class-conditional network needs one label per image, "
                             f"shape {tuple(t.shape)}, got "
                             f"{None if y is None else tuple(y.shape)}")
        return e + self.label_embedding(y)

    def forward(self, x, t, y=None):
        if x.ndim != 4:
            raise ValueError(f"UNet: expected images (N, C, H, W), got shape {tuple(x.shape)}")
        factor = 2 ** (self.num_levels - 1)
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"UNet: image size {x.shape[2]}x{x.shape[3]} is not divisible by "
                             f"{factor}: {self.num_levels} levels halve it {self.num_levels - 1} "
                             f"times")
        if t.shape != (x.shape[0],):
            raise ValueError(f"UNet: expected one timestep per image, shape ({x.shape[0]},), "
                             f"got {tuple(t.shape)}")
        e = self.embed(t, y)
        h = self.stem(x)
        skips = [h]
        for level, stage in enumerate(self.down):
            for i, res_block in enumerate(stage.blocks):
                h = res_block(h, e)
                if stage.attention:
                    h = stage.attention[i](h)
                skips.append(h)
            if level < self.num_levels - 1:
                h = self.downsample[level](h)
                skips.append(h)
        first, attention, second = self.middle
        h = second(attention(first(h, e)), e)
        for i_level, stage in enumerate(self.up):
            for i, res_block in enumerate(stage.blocks):
                h = res_block(ops.cat([h, skips.pop()], dim=1), e)
                if stage.attention:
                    h = stage.attention[i](h)
            if i_level < self.num_levels - 1:
                h = self.upsample[i_level](h)
        return self.head(h)
