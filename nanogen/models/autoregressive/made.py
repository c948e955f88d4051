r"""MADE, the masked autoencoder for distribution estimation (Germain, Gregor, Murray &
Larochelle 2015): an ordinary MLP made autoregressive by masking its weights.

**The mask rule.**  Give every unit a *connectivity number*.  Input :math:`d` gets its position
in the ordering, :math:`m^0(d) \in \{1, \dots, D\}`; hidden unit :math:`k` of layer
:math:`l` gets :math:`m^l(k)`, drawn uniformly from
:math:`\{\min_{k'} m^{l-1}(k'), \dots, D - 1\}`.  A unit may read a unit of the layer below
only if its number is at least as large, and output :math:`d` may read hidden unit :math:`k`
only if :math:`m^0(d)` is strictly larger:

.. math::
    M^{l}_{k, k'} = \big[m^l(k) \ge m^{l-1}(k')\big], \qquad
    M^{V}_{d, k} = \big[m^0(d) > m^L(k)\big]

Then hidden unit :math:`k` depends only on the inputs numbered :math:`\le m^l(k)` (by
induction), and output :math:`d` only on inputs numbered :math:`< m^0(d)`: exactly the
conditional :math:`p(x_d \mid x_{<d})` of the chosen ordering, for all :math:`d` in one pass.
Drawing :math:`m^l(k) \ge \min m^{l-1}` keeps every hidden unit connected to something;
capping at :math:`D - 1` keeps it useful to some output.  *Direct* input-to-output
connections add an FVBN-like term with mask :math:`A_{d d'} = [m^0(d) > m^0(d')]`:

.. math:: \ell = b + (V \odot M^V)\, h^L + (A' \odot A)\, x, \qquad
          h^l = \mathrm{ReLU}\big(c^l + (W^l \odot M^l)\, h^{l-1}\big), \quad h^0 = x

Numbers count *pixels* (:mod:`.flat`): the channels of a pixel share its number.

**Order and connectivity agnostic training.**  With ``num_masks`` = K > 1 the model keeps K
mask sets, each drawn from its own random ordering and connectivity numbers, and switches to
the next every ``resample_every`` steps, so one set of weights learns K autoregressive models
at once.  At test time the model is the *ensemble*

.. math:: p(x) = \frac1K \sum_{k=1}^{K} p(x \mid M_k)

(a mixture, still exactly normalised), which beats any single mask.  Which mask set is in use
(``mask_state``) and the steps taken are buffers, so a resumed run switches at the same steps.
With K = 1 the ordering is raster order and the connectivity one fixed draw.
"""
from __future__ import annotations

import numpy as np

from ... import functional as ops
from ... import nn
from ...autograd import no_grad
from ...creation import tensor
from ...utils.checks import positive_int
from ..base import nats_to_bits_per_dim
from ..likelihood import log_mean_exp
from ..registry import ModelSpec, register
from .flat import FlatAutoregressiveModel

__all__ = ["MADE", "made_masks"]


def made_masks(channels, num_pixels, hidden_sizes, order, rng):
    r"""The masks of one MADE for a pixel ``order`` (pixel indices, first drawn first):
    ``(hidden_masks, output_mask, direct_mask)``, 0/1 float32 arrays of shapes (out, in).

    :math:`m^0` numbers the D = C P inputs by their pixel's position in ``order`` (1 .. P);
    each hidden layer's numbers are drawn from :math:`\{\min m^{l-1}, \dots, P - 1\}` with
    ``rng``."""
    position = np.empty(num_pixels, np.int64)
    position[np.asarray(order)] = np.arange(1, num_pixels + 1)
    m_in = np.tile(position, channels)                      # m^0(d), channel-major inputs
    degrees = [m_in]
    for size in hidden_sizes:
        low = int(degrees[-1].min())
        degrees.append(rng.integers(low, max(num_pixels - 1, low) + 1, size=size))
    hidden = [(upper[:, None] >= lower[None, :]).astype(np.float32)      # M^l[k, k']
              for lower, upper in zip(degrees[:-1], degrees[1:])]
    output = (m_in[:, None] > degrees[-1][None, :]).astype(np.float32)   # M^V[d, k]
    direct = (m_in[:, None] > m_in[None, :]).astype(np.float32)          # A[d, d']
    return hidden, output, direct


class MADE(FlatAutoregressiveModel):
    """MADE over binary images: ReLU hidden layers of ``hidden_sizes``, optional ``direct``
    input-output connections, ``num_masks`` mask sets switched every ``resample_every`` steps
    (random orderings too when ``order_agnostic``), all drawn from ``mask_seed``."""

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, hidden_sizes=(500,),
                 direct: bool = True, num_masks: int = 1, resample_every: int = 1,
                 order_agnostic: bool = True, mask_seed: int = 0):
        super().__init__()
        self._set_shape(image_shape, num_classes)
        if isinstance(hidden_sizes, int) or len(hidden_sizes) == 0:
            raise ValueError(f"MADE: hidden_sizes must be a non-empty list of layer widths, got "
                             f"{hidden_sizes!r}")
        self.hidden_sizes = tuple(positive_int(h, "MADE: hidden_sizes") for h in hidden_sizes)
        self.num_masks = positive_int(num_masks, "MADE: num_masks")
        self.resample_every = positive_int(resample_every, "MADE: resample_every")
        self.order_agnostic = bool(order_agnostic) and self.num_masks > 1
        self.mask_seed = int(mask_seed)
        D = self.num_inputs
        widths = (D,) + self.hidden_sizes
        self.hidden_layers = nn.ModuleList([nn.MaskedLinear(i, o)
                                            for i, o in zip(widths[:-1], widths[1:])])
        self.output_layer = nn.MaskedLinear(widths[-1], D)
        self.direct = nn.MaskedLinear(D, D, bias=False, zero_init=True) if direct else None
        self.register_buffer("order", tensor(np.arange(self.num_pixels)))
        self.register_buffer("mask_state", tensor(0))
        self.register_buffer("steps_done", tensor(0))
        self.use_masks(0)

    # -- the masks ------------------------------------------------------------------------------
    def mask_order(self, k: int) -> np.ndarray:
        """The pixel ordering of mask set ``k``: raster order unless training is
        order-agnostic."""
        if not self.order_agnostic:
            return np.arange(self.num_pixels)
        return np.random.default_rng([self.mask_seed, k, 0]).permutation(self.num_pixels)

    def use_masks(self, k: int):
        """Switch every layer to mask set ``k`` (0 .. num_masks - 1), drawn from
        ``(mask_seed, k)``: the same masks for the same k, in any run."""
        if not 0 <= k < self.num_masks:
            raise ValueError(f"MADE.use_masks: k must be in [0, {self.num_masks}), got {k}")
        order = self.mask_order(k)
        hidden, output, direct = made_masks(self.image_shape[0], self.num_pixels,
                                            self.hidden_sizes, order,
                                            np.random.default_rng([self.mask_seed, k, 1]))
        for layer, mask in zip(self.hidden_layers, hidden):
            layer.set_mask(mask)
        self.output_layer.set_mask(output)
        if self.direct is not None:
            self.direct.set_mask(direct)
        with no_grad():
            self.order.copy_(tensor(order))
            self.mask_state.fill_(k)

    # -- the network ----------------------------------------------------------------------------
    def vector_logits(self, v):
        r""":math:`\ell = b + (V \odot M^V) h^L + (A' \odot A) x` with ReLU hidden layers."""
        logits = self.output_layer(self._hidden(v))
        if self.direct is not None:
            logits = logits + self.direct(v)
        return logits

    def _hidden(self, v):
        """:math:`h^L`: the masked ReLU layers."""
        h = v
        for layer in self.hidden_layers:
            h = ops.relu(layer(h))
        return h

    def entry_logits(self, v, entries):
        """The hidden layers in full, then only rows ``entries`` of the output and direct
        layers."""
        logits = self.output_layer.rows(self._hidden(v), entries)
        if self.direct is not None:
            logits = logits + self.direct.rows(v, entries)
        return logits

    def training_step(self, batch, optimizers) -> dict:
        """One step with mask set ``(steps_done // resample_every) mod num_masks``."""
        k = (int(self.steps_done.item()) // self.resample_every) % self.num_masks
        if k != int(self.mask_state.item()):
            self.use_masks(k)
        logs = super().training_step(batch, optimizers)
        with no_grad():
            self.steps_done.fill_(int(self.steps_done.item()) + 1)
        return {**logs, "mask": k}

    # -- the ensemble ---------------------------------------------------------------------------
    def mask_log_probs(self, x, y=None):
        """(K, N): log p(x | M_k) under each of the K mask sets (the current one is restored)."""
        current = int(self.mask_state.item())
        try:
            rows = []
            for k in range(self.num_masks):
                self.use_masks(k)
                rows.append(self.log_prob(x, y))
            return ops.stack(rows, 0)
        finally:
            self.use_masks(current)

    def ensemble_log_prob(self, x, y=None):
        r""":math:`\log \frac1K \sum_k p(x \mid M_k)` per image."""
        return log_mean_exp(self.mask_log_probs(x, y), 0)

    def evaluate(self, loader) -> dict:
        """Test NLL of the ensemble over all K mask sets (``nll_nats``), and the mean NLL of a
        single mask set (``nll_nats_one_mask``); the same when K = 1."""
        ensemble, single, count = 0.0, 0.0, 0
        with no_grad():
            for x, y in loader:
                per_mask = self.mask_log_probs(x, y)                       # (K, N)
                ensemble -= float(log_mean_exp(per_mask, 0).sum().item())
                single -= float(per_mask.mean(0).sum().item())
                count += len(x)
        if count == 0:
            raise ValueError("MADE.evaluate: the loader yielded no examples")
        nll = ensemble / count
        return {"nll_nats": nll, "bits_per_dim": nats_to_bits_per_dim(nll, self.num_inputs),
                "nll_nats_one_mask": single / count, "num_masks": self.num_masks,
                "num_examples": count}

    # -- generation in the mask's order ---------------------------------------------------------
    def drawing_order(self, first_row: int = 0):
        """The current mask set's ordering; a completion needs the kept rows to come first."""
        W = self.image_shape[2]
        order = self.order.detach().numpy()
        kept = first_row * W
        if set(order[:kept].tolist()) != set(range(kept)):
            raise ValueError(f"MADE.complete: mask set {int(self.mask_state.item())} orders the "
                             f"pixels at random, so its conditionals never condition on exactly "
                             f"the first {first_row} rows; complete with a raster-order MADE "
                             f"(num_masks=1, or order_agnostic=False)")
        return [(int(p) // W, int(p) % W) for p in order[kept:]]

    def figures(self, x, y=None, **kwargs) -> dict:
        """Completions of half images where the ordering allows them (see
        :meth:`drawing_order`); none for an order-agnostic MADE."""
        if self.order_agnostic:
            return {}
        return super().figures(x, y, **kwargs)


register(ModelSpec(
    name="made",
    summary="MADE: masked MLP (connectivity numbers), direct connections, mask ensembles",
    build=MADE,
    # ~0.02 s per step at batch 64.  3,000 steps, cosine decay: lr 1e-3 ends at 114.3 nats,
    # 5e-3 at 99.4, 1e-2 at 100.2 (one mask); an 8-mask ensemble at 1e-2 reaches 101.9
    steps=3000, batch_size=64, lr=5e-3, lr_schedule="cosine", sample_every=1000,
    num_samples=36, kwargs=dict(hidden_sizes=[200, 200], direct=True, num_masks=1),
))
