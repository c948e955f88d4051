r"""The logistic fully visible belief network (FVBN; Frey 1998, the first model of the
autoregressive lectures): every conditional a logistic regression on all earlier pixels.

.. math:: p(x) = \prod_{d=1}^{D} p(x_d \mid x_{<d}), \qquad
          p(x_d = 1 \mid x_{<d}) = \sigma\Big(b_d + \sum_{d' < d} W_{d d'}\, x_{d'}\Big)

All :math:`D` regressions at once are one linear layer whose weight matrix is *strictly lower
triangular* (in pixel order, :mod:`.flat`): :math:`\ell = b + (W \odot M) x` with
:math:`M_{d d'} = [\pi(d') < \pi(d)]`.  The mask zeroes the diagonal and everything above it,
so :math:`\ell_d` never reads :math:`x_d` or a later pixel; :math:`D(D-1)/2` weights are used
(306,936 for MNIST).  The log-likelihood is convex in :math:`(W, b)` -- each conditional is a
logistic regression -- so the model is a baseline with no hidden units to learn: what NADE and
MADE add is measured against it.
"""
from __future__ import annotations

from ... import nn
from ..registry import ModelSpec, register
from .flat import FlatAutoregressiveModel, pixel_index

__all__ = ["FVBN"]


class FVBN(FlatAutoregressiveModel):
    """Logistic FVBN over binary images: one strictly lower-triangular masked linear layer.
    Weights and biases start at 0 (every pixel's first guess is a fair coin)."""

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10):
        super().__init__()
        self._set_shape(image_shape, num_classes)
        pixel = pixel_index(self.image_shape)
        strictly_earlier = pixel[None, :] < pixel[:, None]          # M[d, d'] = [pi(d') < pi(d)]
        self.regressions = nn.MaskedLinear(self.num_inputs, self.num_inputs,
                                           strictly_earlier.astype("float32"), zero_init=True)

    def vector_logits(self, v):
        r""":math:`\ell = b + (W \odot M)\, v`: all D logistic regressions in one matmul."""
        return self.regressions(v)

    def entry_logits(self, v, entries):
        """Only rows ``entries`` of the regressions: O(len(entries) D)."""
        return self.regressions.rows(v, entries)


register(ModelSpec(
    name="fvbn",
    summary="logistic fully visible belief net: a strictly lower-triangular masked linear layer",
    build=FVBN,
    # ~0.01 s per step at batch 64; sample(36) is 784 matmuls, a few seconds.  Weights that
    # start at 0 need a large step: lr 1e-3 ends at 125.5 nats, 1e-2 at 105.7, 2e-2 with
    # cosine decay at 103.0 (3,000 steps each)
    steps=3000, batch_size=64, lr=2e-2, lr_schedule="cosine", sample_every=1000,
    num_samples=36,
))
