r"""What the autoregressive MLPs (FVBN, NADE, MADE) share: an image as one vector of binary
values, and a causal map from that vector to the logits of its conditionals.

An image of shape (C, H, W) is the vector :math:`v = x.\mathrm{reshape}(C H W)` (channel-major,
as ``reshape`` lays it out).  The ordering of the chain rule is over the :math:`P = H W`
*pixels*, in raster order by default: entry :math:`d` of :math:`v` belongs to pixel
:math:`\pi(d) = d \bmod P`, and the channels of one pixel are independent given the pixels
before it, as in the PixelCNN (:mod:`.raster`)::

    p(x) = prod_p p(x_p | x_<p),      logit_d reads only v_d' with pi(d') < pi(d)

A model here writes :meth:`FlatAutoregressiveModel.vector_logits` ``(v) -> (N, C H W)``; the
likelihood, sampling, completion and evaluation are the raster models' own.  The only change
is :meth:`~FlatAutoregressiveModel.pixel_logits`: an MLP reads the whole vector, so a pixel's
logit is computed from the whole image drawn so far (the pixels not yet drawn are zeros it
ignores) instead of from the rows above it.
"""
from __future__ import annotations

import numpy as np

from .raster import RasterAutoregressiveModel

__all__ = ["FlatAutoregressiveModel", "pixel_index"]


def pixel_index(image_shape) -> np.ndarray:
    """:math:`\\pi(d)`: the pixel (0 .. HW - 1, raster order) of each entry of the
    channel-major vector of an image of shape (C, H, W)."""
    C, H, W = image_shape
    return np.tile(np.arange(H * W), C)


class FlatAutoregressiveModel(RasterAutoregressiveModel):
    """Base class of FVBN, NADE and MADE: Bernoulli pixels, logits from the flattened image.

    A subclass sets ``self.image_shape`` and ``self.num_classes`` (labels are accepted for the
    common interface and ignored) and implements :meth:`vector_logits`.
    """

    def _set_shape(self, image_shape, num_classes):
        if len(image_shape) != 3 or any(int(d) < 1 for d in image_shape):
            raise ValueError(f"{type(self).__name__}: image_shape must be (C, H, W) of positive "
                             f"sizes, got {image_shape!r}")
        self.image_shape = tuple(int(d) for d in image_shape)
        self.num_classes = num_classes
        C, H, W = self.image_shape
        self.num_pixels = H * W
        self.num_inputs = C * H * W

    def vector_logits(self, v):
        """(N, C H W) binary vectors -> (N, C H W) logits; entry d reads only entries of earlier
        pixels."""
        raise NotImplementedError(f"{type(self).__name__} does not define vector_logits()")

    def forward(self, x, y=None):
        """Logits (N, C, H, W) of images x (N, C, H, W)."""
        return self.vector_logits(x.reshape(len(x), self.num_inputs)).reshape(x.shape)

    def entry_logits(self, v, entries):
        """``vector_logits(v)[:, entries]``: the logits of some entries of the vector.  A model
        whose last layers are masked linear maps overrides it to compute only those rows,
        which turns sampling's D passes of O(D^2) (FVBN's matrix, MADE's direct connections)
        into passes of O(D)."""
        return self.vector_logits(v)[:, entries]

    def pixel_logits(self, x, r, c, y=None):
        """Pixel (r, c)'s logits (N, C), from the whole image (later pixels are ignored): the
        entries r W + c + k H W, k = 0 .. C - 1, of the channel-major vector."""
        C, H, W = self.image_shape
        entries = r * W + c + H * W * np.arange(C)
        return self.entry_logits(x.reshape(len(x), self.num_inputs), entries)
