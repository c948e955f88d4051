r"""PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks"):
binarized MNIST as a product of Bernoulli conditionals computed by masked convolutions.

The chain rule in raster order (pixels row by row, left to right) is exact:

.. math:: p(x) = \prod_{i=1}^{HW} p(x_i \mid x_{<i}), \qquad
          p(x_i = 1 \mid x_{<i}) = \sigma(\ell_i(x_{<i}))

One forward pass computes every logit :math:`\ell_i` at once, because every layer is causal.
A masked :math:`k \times k` convolution multiplies its kernel by a mask that keeps the taps
*before* the centre in raster order (:func:`nanogen.functional.pixelcnn_mask`)::

    mask A (7x7, first layer)       mask B (3x3, later layers)
    1 1 1 1 1 1 1                   1 1 1
    1 1 1 1 1 1 1                   1 1 0
    1 1 1 1 1 1 1                   0 0 0
    1 1 1 0 0 0 0
    0 0 0 0 0 0 0
    0 0 0 0 0 0 0
    0 0 0 0 0 0 0

Mask A also drops the centre: the first layer's feature at pixel :math:`i` reads only
:math:`x_{<i}`.  Mask B keeps the centre: a later layer's feature at :math:`i` may read the
features at :math:`i`, which already depend on :math:`x_{<i}` alone.  1x1 convolutions are
causal as they are.  The network:

* a 7x7 mask-A convolution, :math:`C \to 2h` channels;
* residual blocks (the paper's Figure 5):
  :math:`u \leftarrow u + W_3 \, \mathrm{ReLU}(M_B \, \mathrm{ReLU}(W_1 \, \mathrm{ReLU}(u)))`,
  1x1 (:math:`2h \to h`), 3x3 mask B (:math:`h \to h`), 1x1 (:math:`h \to 2h`);
* a 1x1 head: ReLU, 1x1, ReLU, 1x1 to :math:`C` logits.

Likelihood, sampling and completion live in :mod:`.raster`.
"""
from __future__ import annotations

from ... import nn
from ..registry import ModelSpec, register
from .raster import RasterAutoregressiveModel, logit_head

__all__ = ["PixelCNN", "MaskedResidualBlock", "logit_head"]


class MaskedResidualBlock(nn.Module):
    r""":math:`u + W_3\,\mathrm{ReLU}(M_B\,\mathrm{ReLU}(W_1\,\mathrm{ReLU}(u)))` with a
    :math:`2h \to h` 1x1, an :math:`h \to h` mask-B :math:`k \times k` and an :math:`h \to 2h`
    1x1 convolution: cheaper than a full :math:`2h \to 2h` masked layer, and as causal."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        hidden = channels // 2
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, hidden, 1),
            nn.ReLU(), nn.MaskedConv2d(hidden, hidden, kernel_size, mask_type="B"),
            nn.ReLU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, u):
        return u + self.body(u)


class PixelCNN(RasterAutoregressiveModel):
    """PixelCNN over Bernoulli pixels.

    ``channels`` is the width :math:`2h` of the residual stream, ``num_blocks`` the number of
    residual blocks, ``first_kernel`` the size of the mask-A layer and ``kernel_size`` that of
    the blocks' mask-B convolutions.  ``num_classes`` is accepted for the common interface;
    the model is unconditional and ignores labels.
    """

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, channels: int = 64,
                 num_blocks: int = 7, first_kernel: int = 7, kernel_size: int = 3,
                 head_channels: int = 64):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"PixelCNN: image_shape must be (C, H, W), got {image_shape!r}")
        if channels < 2 or channels % 2:
            raise ValueError(f"PixelCNN: channels must be an even number >= 2 (the blocks "
                             f"halve it), got {channels}")
        self.image_shape = tuple(int(d) for d in image_shape)
        self.num_classes = num_classes
        C = self.image_shape[0]
        self.input_conv = nn.MaskedConv2d(C, channels, first_kernel, mask_type="A")
        self.blocks = nn.Sequential(*[MaskedResidualBlock(channels, kernel_size)
                                      for _ in range(num_blocks)])
        self.head = logit_head(channels, head_channels, C)

    def forward(self, x, y=None):
        """Logits (N, C, H, W); row r depends only on the pixels before it in raster order."""
        return self.head(self.blocks(self.input_conv(x)))


register(ModelSpec(
    name="pixelcnn",
    summary="PixelCNN: mask-A 7x7, residual mask-B blocks, Bernoulli pixels (binarized MNIST)",
    build=PixelCNN,
    # ~0.8 CPU-seconds per step single-threaded at batch 64 (the plain 64-channel, 7-layer
    # PixelCNN of benchmarks/bench_models.py: ~0.9); sample(36) is 784 passes, ~75 CPU-seconds
    steps=1000, batch_size=64, lr=1e-3, sample_every=1000, num_samples=36,
    kwargs=dict(channels=64, num_blocks=7, head_channels=64),
))
