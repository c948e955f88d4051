r"""The deep belief network (Hinton, Osindero & Teh 2006): RBMs trained greedily, one on top of
the other, giving a directed generative model with an undirected top.

With :math:`L` RBMs on the layers :math:`h_0 = v, h_1, \dots, h_L`, the DBN is

.. math::
    p(v, h_1, \dots, h_{L-1}) = \Big[\prod_{l=1}^{L-1} p(h_{l-1} \mid h_l)\Big]\,
                                 p_{\mathrm{top}}(h_{L-1}), \qquad
    p(h_{l-1} = 1 \mid h_l) = \sigma(b_l + W_l h_l)                                   \tag{1}

a sigmoid belief net below (each layer's RBM's *downward* conditional, eq. 3 of :mod:`.rbm`)
and the top RBM's marginal :math:`p_{\mathrm{top}}(h_{L-1}) = e^{-F_L(h_{L-1})} / Z_L` above.

**Greedy training.**  RBM 1 is trained on the data with CD; its weights are then frozen and
RBM 2 is trained on samples :math:`h_1 \sim p(h_1 \mid v)` of RBM 1's *upward* conditional,
and so on.  Each added layer improves a variational bound on :math:`\log p(v)` if initialised
from the layer below (the paper's argument).  Here the stages are steps of one run: RBM
:math:`l` trains during steps :math:`[(l-1) S, l S)` with :math:`S` = ``layer_steps``, so a
run resumes mid-stage like any other.

**Sampling.**  Gibbs sweeps in the top RBM from its base rates, then one ancestral pass down
eq. (1): a sample of the layer below at each step, the probabilities for the pixels.

**The bound** (Salakhutdinov & Murray 2008, Sec. 5).  The upward conditionals give a factorial
approximate posterior :math:`Q(h_l \mid h_{l-1}) = \prod_j \sigma(c_l + W_l^\top h_{l-1})`, and

.. math::
    \log p(v) \ge \mathbb E_{Q}\Big[\sum_{l=1}^{L-1} \log p(h_{l-1} \mid h_l)
                    - F_L(h_{L-1})\Big] - \log Z_L
                    + \mathbb E_Q\Big[\sum_{l=1}^{L-1} \mathcal H\big(Q(h_l \mid h_{l-1})\big)\Big]
                                                                                        \tag{2}

with :math:`\mathcal H(q) = -\sum_j q_j \log q_j + (1 - q_j)\log(1 - q_j)`.  The expectation is
estimated with ``bound_samples`` draws of :math:`h_1, \dots, h_{L-1}` per test image;
:math:`\log Z_L` by AIS on the top RBM (base rates: the means of the :math:`h_{L-1}` it was
trained on).  With one layer eq. (2) is the RBM's exact :math:`-F(v) - \log Z`.

Deviations from the paper: no label units at the top and no up-down fine-tuning (the
lectures' DBN is the greedily stacked one); layers are 784-500-500, not 784-500-500-2000, so
that the whole run and its AIS take minutes on 2 cores.
"""
from __future__ import annotations

from ... import nn
from ...autograd import no_grad
from ...creation import bernoulli
from ...utils.checks import positive_int
from ..base import nats_to_bits_per_dim
from ..likelihood import bernoulli_log_prob
from ..registry import ModelSpec, register
from .rbm import (BernoulliRBM, BinaryEnergyModel, CDTraining, bernoulli_entropy, draw_independent,
                  weight_images)

__all__ = ["DBN"]


class DBN(BinaryEnergyModel):
    """A stack of :class:`~.rbm.BernoulliRBM` s of widths ``hidden_sizes``, trained greedily
    for ``layer_steps`` steps each (CD-``cd_k``), judged by the variational bound of eq. (2)."""

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10,
                 hidden_sizes=(500, 500), layer_steps: int = 3000, cd_k: int = 1,
                 weight_decay: float = 2e-4, sample_steps: int = 1000, bound_samples: int = 10,
                 ais_runs: int = 100, ais_temperatures: int = 14_500):
        super().__init__(image_shape, num_classes, weight_decay=weight_decay,
                         sample_steps=sample_steps, ais_runs=ais_runs,
                         ais_temperatures=ais_temperatures)
        sizes = list(hidden_sizes) if isinstance(hidden_sizes, (list, tuple)) else None
        if not sizes:
            raise ValueError(f"DBN: hidden_sizes must be a non-empty list of widths, got "
                             f"{hidden_sizes!r}")
        widths = [self.num_visible] + [positive_int(h, "DBN: hidden_sizes") for h in sizes]
        self.layers = nn.ModuleList([BernoulliRBM(a, b) for a, b in zip(widths, widths[1:])])
        self.training_states = nn.ModuleList([CDTraining(a, cd_k=cd_k) for a in widths[:-1]])
        self.layer_steps = positive_int(layer_steps, "DBN: layer_steps")
        self.bound_samples = positive_int(bound_samples, "DBN: bound_samples")

    # -- greedy training ------------------------------------------------------------------------
    def configure_optimizers(self, lr):
        return {f"layer{l + 1}": state.optimizer(rbm, lr, self.weight_decay)
                for l, (rbm, state) in enumerate(zip(self.layers, self.training_states))}

    def active_layer(self) -> int:
        """The index of the RBM now in training: the stage the update count has reached (the
        top RBM goes on training once every stage is done)."""
        done = sum(int(state.updates.item()) for state in self.training_states)
        return min(done // self.layer_steps, len(self.layers) - 1)

    def up(self, v, layers: int):
        """A sample of :math:`h_{layers}` by the upward conditionals from :math:`h_0 = v`."""
        h = v
        for rbm in self.layers[:layers]:
            h = rbm.sample_hidden(h)
        return h

    def training_step(self, batch, optimizers):
        x, _ = batch
        active = self.active_layer()
        with no_grad():                                   # the frozen layers below
            data = self.up(self._vectors(x, "training_step"), active)
        logs = self.training_states[active].step(self.layers[active], data,
                                                 optimizers[f"layer{active + 1}"])
        return {**logs, "layer": float(active + 1)}

    # -- sampling -------------------------------------------------------------------------------
    def sample(self, n: int, y=None):
        """``n`` images: ``sample_steps`` Gibbs sweeps in the top RBM, then eq. (1) down."""
        n = positive_int(n, "DBN.sample: n")
        top, top_state = self.layers[-1], self.training_states[-1]
        with no_grad():
            h, probs = top.gibbs(draw_independent(top_state.base_logits(), n), self.sample_steps)
            for rbm in reversed(self.layers[:-1]):                          # eq. (1)
                probs = rbm.visible_logits(h).sigmoid()
                h = bernoulli(probs)
        return probs.reshape(n, *self.image_shape)

    # -- the bound ------------------------------------------------------------------------------
    def log_partition(self):
        """AIS for :math:`\\log Z_L` of the top RBM."""
        top, top_state = self.layers[-1], self.training_states[-1]
        return self._estimate(top.annealing_path(top_state.base_logits()))

    def unnormalised_bound(self, v):
        """One sample of eq. (2) without its :math:`-\\log Z_L`, per row of ``v``: the log terms at
        :math:`h \\sim Q` and the entropies of the :math:`Q` they were drawn from."""
        total, h = 0.0, v
        for rbm in self.layers[:-1]:
            logits = rbm.hidden_logits(h)                           # Q(h_l | h_{l-1})
            above = bernoulli(logits.sigmoid())
            total = total + bernoulli_log_prob(rbm.visible_logits(above), h) \
                + bernoulli_entropy(logits)                                # eq. (2)
            h = above
        return total - self.layers[-1].free_energy(h)

    def evaluate(self, loader) -> dict:
        """The bound of eq. (2) on the test set, as an upper bound on the NLL in nats."""
        total, count = 0.0, 0
        with no_grad():
            for x, _ in loader:
                v = self._vectors(x, "evaluate")
                for _ in range(self.bound_samples):
                    total += float(self.unnormalised_bound(v).sum().item()) / self.bound_samples
                count += len(x)
            if count == 0:
                raise ValueError("DBN.evaluate: the loader yielded no examples")
            estimate = self.log_partition()
        bound = total / count - estimate.log_z
        return {"nll_upper_bound_nats": -bound,
                "bits_per_dim_upper_bound": nats_to_bits_per_dim(-bound, self.num_visible),
                **estimate.as_dict("top_log_z"), "bound_samples": self.bound_samples,
                "num_examples": count}

    def figures(self, x, y=None) -> dict:
        """The first RBM's filters, as for the RBM."""
        return {"filters": (weight_images(self.layers[0].weight, self.image_shape, 100), 10)}


register(ModelSpec(
    name="dbn",
    summary="deep belief net: RBMs 784-500-500 stacked greedily (CD-1); bound on NLL by AIS",
    build=DBN,
    # the RBM's learning rate (see rbm.py's tuning) and its 3,000 CD-1 steps for each layer:
    # bound 117.0 nats, below RBM 1 alone (120.6); 1,500 steps per layer gave 134.0
    steps=6000, batch_size=64, lr=0.003, sample_every=1000, num_samples=64,
))
