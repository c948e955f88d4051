r"""What every raster-order autoregressive image model shares: the likelihood, sampling,
completion and evaluation.  A model only says how it computes its logits.

The chain rule orders the :math:`D = H W` pixels row by row, left to right (raster order),
and factorises the image density exactly, with no approximation:

.. math:: p(x) = \prod_{i=1}^{D} p(x_i \mid x_1, \dots, x_{i-1}) = \prod_{i=1}^{D} p(x_i \mid x_{<i})

A PixelCNN computes all :math:`D` conditionals in one forward pass: its network is *causal*, its
output at pixel :math:`i` reading only inputs :math:`x_{<i}`, so ``logits(x)[i]`` is the logit
:math:`\ell_i` of :math:`p(x_i = 1 \mid x_{<i}) = \sigma(\ell_i)`.  With Bernoulli pixels
:math:`x_i \in \{0, 1\}` the exact log-likelihood is then

.. math:: \log p(x) = \sum_i x_i \ell_i - \operatorname{softplus}(\ell_i)

(:func:`nanogen.models.likelihood.bernoulli_log_prob`).  The channels of one pixel share its
conditional: they are independent given :math:`x_{<i}`, and are drawn together.

Sampling cannot be parallel: pixel :math:`i` is drawn from :math:`p(x_i \mid x_{<i})`, which
needs the pixels before it, so it takes :math:`D` forward passes (784 for MNIST).  Each pass
only runs on the rows drawn so far: no layer looks *down*, so the network's output on the top
:math:`r` rows of an image equals its output on those rows computed from the whole image.
"""
from __future__ import annotations

import numbers

from ... import functional as ops
from ... import nn
from ...autograd import no_grad
from ...creation import arange, bernoulli, zeros
from ...utils.checks import positive_int
from ..base import GenerativeModel, check_labels, nats_to_bits_per_dim
from ..likelihood import bernoulli_log_prob, check_binary

__all__ = ["RasterAutoregressiveModel", "logit_head"]


class RasterAutoregressiveModel(GenerativeModel):
    """Base class of the PixelCNN family: Bernoulli pixels generated in raster order.

    A subclass sets ``self.image_shape = (C, H, W)`` and ``self.num_classes`` and implements
    :meth:`forward` ``(x, y)`` -> logits of shape (N, C, H', W) for images x of shape
    (N, C, H', W) with any H' <= H (see the module docstring: it runs on the rows drawn so
    far).  Everything else -- :meth:`log_prob`, :meth:`loss`, :meth:`sample`,
    :meth:`complete`, :meth:`evaluate`, :meth:`figures` -- is here.
    """

    data_transform = "binary"
    conditional = False

    # -- checks ---------------------------------------------------------------------------------
    def _check_binary(self, x, op):
        """Bernoulli pixels must be 0 or 1: a [0, 1] image has no likelihood under the model."""
        check_binary(x, f"{type(self).__name__}.{op}")

    def _check_labels(self, y, n, op):
        """The class labels a conditional model needs (None for an unconditional one)."""
        if not self.conditional:
            return None
        return check_labels(y, n, self.num_classes, f"{type(self).__name__}.{op}")

    # -- the likelihood -------------------------------------------------------------------------
    def logits(self, x, y=None):
        r"""The Bernoulli logits :math:`\ell_i` of :math:`p(x_i = 1 \mid x_{<i})`, shape
        (N, C, H, W), for images ``x`` (N, C, H, W) in {0, 1}."""
        self._check_images(x, "logits")
        return self(x, self._check_labels(y, len(x), "logits"))

    def log_prob(self, x, y=None):
        r""":math:`\log p(x) = \sum_i \log p(x_i \mid x_{<i})` in nats, one value per image."""
        self._check_images(x, "log_prob")
        self._check_binary(x, "log_prob")
        return bernoulli_log_prob(self.logits(x, y), x)

    def loss(self, x, y=None):
        """The mean negative log-likelihood in nats per image, and no extra logs."""
        return -self.log_prob(x, y).mean(), {}

    def evaluate(self, loader) -> dict:
        """The exact test NLL: mean :math:`-\\log p(x)` in nats per image and in bits/dim."""
        total, count = 0.0, 0
        with no_grad():
            for x, y in loader:
                total -= float(self.log_prob(x, y).sum().item())
                count += len(x)
        if count == 0:
            raise ValueError(f"{type(self).__name__}.evaluate: the loader yielded no examples")
        nll = total / count
        dims = 1
        for d in self.image_shape:
            dims *= d
        return {"nll_nats": nll, "bits_per_dim": nats_to_bits_per_dim(nll, dims),
                "num_examples": count}

    # -- generation -----------------------------------------------------------------------------
    def _default_labels(self, n, device):
        """Classes 0, 1, ..., num_classes - 1, 0, 1, ... for a conditional model's samples."""
        if not self.conditional:
            return None
        return arange(n, device=device) % self.num_classes

    def sample(self, n: int, y=None):
        """``n`` images (n, C, H, W) in {0, 1} drawn pixel by pixel in raster order, with the
        random numbers of nanogen's global generator (reproducible under ``ng.manual_seed``).
        A class-conditional model draws class ``y[k]`` for image k (by default the classes in
        turn: 0, 1, 2, ...)."""
        n = positive_int(n, f"{type(self).__name__}.sample: n")
        device = next(self.parameters()).device
        if y is None:
            y = self._default_labels(n, device)
        return self._draw_rows(zeros(n, *self.image_shape, device=device), 0, y, "sample")

    def complete(self, x, rows: int, y=None):
        """Keep the first ``rows`` rows of each image in ``x`` and sample the rest from
        :math:`p(x_{\\text{rest}} \\mid x_{\\text{kept}})`, again pixel by pixel."""
        self._check_images(x, "complete")
        H = self.image_shape[1]
        if not isinstance(rows, numbers.Integral) or not 0 <= rows <= H:
            raise ValueError(f"{type(self).__name__}.complete: rows must be an int in [0, {H}], "
                             f"got {rows!r}")
        kept = x.detach().clone()
        kept[:, :, rows:, :] = 0.0
        return self._draw_rows(kept, int(rows), y, "complete")

    def _draw_rows(self, x, first_row, y, op):
        """Fill rows ``first_row``, ..., H - 1 of ``x`` (in place), one pixel at a time in the
        order :meth:`drawing_order` gives, pixel (r, c) from :math:`\\sigma(\\ell_{r,c})`."""
        y = self._check_labels(y, len(x), op)
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                for r, c in self.drawing_order(first_row):
                    x[:, :, r, c] = bernoulli(self.pixel_logits(x, r, c, y).sigmoid())
        finally:
            self.train(was_training)
        return x

    def drawing_order(self, first_row: int = 0):
        """The pixels (r, c) of rows ``first_row``.. in the order they are drawn: raster order
        (a model with another order overrides this, and refuses completions it cannot do)."""
        _, H, W = self.image_shape
        return [(r, c) for r in range(first_row, H) for c in range(W)]

    def pixel_logits(self, x, r, c, y=None):
        """The logits (N, C) of pixel (r, c) given the pixels drawn before it in ``x``.

        Computed on rows 0..r alone: no layer looks down, so this equals the full image's
        logit.  A model that reads the whole image at once (the MLP models) overrides it."""
        return self(x[:, :, :r + 1, :], y)[:, :, r, c]

    def figures(self, x, y=None, num_images: int = 8, num_completions: int = 4) -> dict:
        """``{"completions": (grid, nrow)}``: for each of the first ``num_images`` test images,
        one row of the grid holds its top half, ``num_completions`` sampled completions of the
        bottom half, and the original image."""
        self._check_images(x, "figures")
        k = min(num_images, len(x))
        originals = x[:k].detach()
        labels = None if y is None else y[:k]
        rows = self.image_shape[1] // 2
        repeated = ops.cat([originals] * num_completions, 0)
        repeated_labels = None if labels is None else ops.cat([labels] * num_completions, 0)
        done = self.complete(repeated, rows, repeated_labels)       # (completions * k, C, H, W)
        top_half = originals.clone()
        top_half[:, :, rows:, :] = 0.5                                # grey: still to be drawn
        columns = [top_half] + [done[j * k:(j + 1) * k] for j in range(num_completions)]
        columns.append(originals)
        grid = ops.stack(columns, 1).reshape(-1, *self.image_shape)  # row per image
        return {"completions": (grid, len(columns))}



def logit_head(in_channels: int, hidden: int, out_channels: int):
    """ReLU, 1x1, ReLU, 1x1: per-pixel features to per-pixel Bernoulli logits (the output
    layers of the PixelCNN and PixelRNN papers; a 1x1 convolution is causal as it is)."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(in_channels, hidden, 1),
                         nn.ReLU(), nn.Conv2d(hidden, out_channels, 1))
