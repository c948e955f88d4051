r"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders"): PixelCNN without the blind spot, with gated units and optional class conditioning.

The factorisation is PixelCNN's (:mod:`.raster`):
:math:`p(x \mid y) = \prod_i p(x_i \mid x_{<i}, y)`, Bernoulli pixels,
:math:`p(x_i = 1 \mid x_{<i}, y) = \sigma(\ell_i)`.

**The blind spot.**  Stacked mask-B convolutions grow their receptive field up and to the
left, but never reach the pixels up and to the *right* of the centre (a triangle that widens
with depth).  The gated PixelCNN splits the network into two stacks whose union covers every
pixel before :math:`(r, c)`:

* the **vertical stack** :math:`v`, a :math:`(\lfloor k/2\rfloor + 1) \times k` convolution
  over the rows *up to and including* r, all columns within reach::

      x x x          (k = 3: the output at the centre of the bottom row reads
      x o x           these 2 x 3 taps -- rows r-1 and r)

  :math:`v_{r,c}` depends on rows :math:`\le r` only; it sees the pixel itself and those right
  of it, so the horizontal stack reads it **shifted down one row**: at row r it gets
  :math:`v_{r-1,\cdot}`, which depends on rows :math:`< r` only -- above the pixel, left and
  right alike;
* the **horizontal stack** :math:`h`, a :math:`1 \times (\lfloor k/2\rfloor + 1)`
  convolution over row r, columns :math:`c - \lfloor k/2\rfloor \dots c`.  In the first layer
  it is shifted right by one column (mask A: the pixel itself is excluded); later layers keep
  the centre (mask B).

So :math:`h_{r,c}` depends on rows :math:`< r` (through :math:`v`) and on row r left of c:
exactly :math:`x_{<(r,c)}` within the receptive field, with no blind spot.  The padding that
makes every convolution "same"-sized is explicit (``F.pad``: zero rows on top, zero columns on
the left), and no layer reads a row below its output.

**Gated units.**  Each layer computes :math:`2p` pre-activations and gates them, with a class
embedding :math:`V^{\top} h_y` (a learned vector per class) added when the model is
conditional:

.. math:: \mathbf{y} = \tanh(W_{k,f} * \mathbf{x} + V_{k,f}^{\top} h_y)
                      \odot \sigma(W_{k,g} * \mathbf{x} + V_{k,g}^{\top} h_y)

The vertical pre-activation (shifted down, through a 1x1 convolution) is added to the
horizontal one.  The horizontal stack is residual, :math:`h \leftarrow h + W_{1\times1}\,
\mathbf{y}_h`, and every layer also feeds a skip connection :math:`s \leftarrow s +
W^{skip}_{1\times1}\,\mathbf{y}_h`; the logits are ``ReLU, 1x1, ReLU, 1x1`` of :math:`s`.
"""
from __future__ import annotations

from ... import nn
from ...nn import functional as F
from ..registry import ModelSpec, register
from .raster import RasterAutoregressiveModel, logit_head

__all__ = ["GatedPixelCNN", "GatedLayer", "gate", "down_shift"]


def gate(a):
    r""":math:`\tanh(a_f) \odot \sigma(a_g)` for the two channel halves of ``a`` (N, 2p, H, W)."""
    p = a.shape[1] // 2
    return a[:, :p].tanh() * a[:, p:].sigmoid()


def down_shift(v):
    """Shift the feature maps down one row (a zero row on top, the bottom row dropped): row r
    of the result is row r - 1 of ``v``."""
    return F.pad(v, (0, 0, 1, -1))


class GatedLayer(nn.Module):
    """One layer of the two stacks: ``(v, h, skip) -> (v', h', skip + s)``.

    ``first=True`` makes the mask-A layer: its horizontal convolution excludes the pixel itself
    and it has no residual connection (its input is the image, not ``channels`` features).
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, num_classes=None,
                 first: bool = False):
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"GatedLayer: kernel_size must be odd, got {kernel_size}")
        half = kernel_size // 2
        self.half, self.first = half, first
        self.vertical = nn.Conv2d(in_channels, 2 * channels, (half + 1, kernel_size))
        self.horizontal = nn.Conv2d(in_channels, 2 * channels, (1, half + 1))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.residual = nn.Conv2d(channels, channels, 1)
        self.skip = nn.Conv2d(channels, channels, 1)
        self.class_embedding = (nn.Embedding(num_classes, 2 * channels)
                                if num_classes else None)

    def forward(self, v, h, skip, y=None):
        k2 = self.half
        # vertical: rows r - k//2 .. r, columns c - k//2 .. c + k//2
        v_pre = self.vertical(F.pad(v, (k2, k2, k2, 0)))
        # horizontal: columns c - k//2 .. c (mask B) or c - k//2 - 1 .. c - 1 (mask A)
        h_in = F.pad(h, (k2 + 1, -1, 0, 0)) if self.first else F.pad(h, (k2, 0, 0, 0))
        h_pre = self.horizontal(h_in) + self.vertical_to_horizontal(down_shift(v_pre))
        if self.class_embedding is not None:                  # + V^T h_y, one vector per class
            bias = self.class_embedding(y)[:, :, None, None]
            v_pre, h_pre = v_pre + bias, h_pre + bias
        v_out, h_gated = gate(v_pre), gate(h_pre)
        h_res = self.residual(h_gated)
        h_out = h_res if self.first else h + h_res
        return v_out, h_out, skip + self.skip(h_gated)


class GatedPixelCNN(RasterAutoregressiveModel):
    """Gated PixelCNN over Bernoulli pixels: a first (mask-A) layer with ``first_kernel``, then
    ``num_layers`` gated layers with ``kernel_size``, ``channels`` features per stack, and a
    1x1 head of ``head_channels``.  ``conditional=True`` adds a class embedding to every
    layer; ``logits``, ``log_prob``, ``sample`` and ``complete`` then take labels ``y``."""

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, channels: int = 32,
                 num_layers: int = 6, first_kernel: int = 7, kernel_size: int = 3,
                 head_channels: int = 64, conditional: bool = False):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"GatedPixelCNN: image_shape must be (C, H, W), got "
                             f"{image_shape!r}")
        if conditional and (num_classes is None or num_classes < 1):
            raise ValueError(f"GatedPixelCNN: conditional=True needs num_classes >= 1, got "
                             f"{num_classes!r}")
        self.image_shape = tuple(int(d) for d in image_shape)
        self.num_classes = num_classes
        self.conditional = bool(conditional)
        C = self.image_shape[0]
        classes = num_classes if conditional else None
        self.layers = nn.ModuleList(
            [GatedLayer(C, channels, first_kernel, classes, first=True)]
            + [GatedLayer(channels, channels, kernel_size, classes) for _ in range(num_layers)])
        self.head = logit_head(channels, head_channels, C)

    def forward(self, x, y=None):
        """Logits (N, C, H, W) from the sum of the layers' skip outputs."""
        v, h, skip = x, x, 0.0
        for layer in self.layers:
            v, h, skip = layer(v, h, skip, y)
        return self.head(skip)


register(ModelSpec(
    name="gated-pixelcnn",
    summary="Gated PixelCNN: vertical + horizontal stacks (no blind spot), tanh*sigmoid gates, "
            "optional class conditioning",
    build=GatedPixelCNN,
    # a step costs about twice PixelCNN's (~1.6 CPU-seconds single-threaded at batch 64)
    steps=500, batch_size=64, lr=1e-3, sample_every=500, num_samples=36,
    kwargs=dict(channels=32, num_layers=6, head_channels=64),
))
