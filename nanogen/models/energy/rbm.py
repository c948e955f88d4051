r"""The restricted Boltzmann machine (Smolensky 1986; Hinton 2002), trained with contrastive
divergence (CD-k) or persistent contrastive divergence (PCD; Tieleman 2008), its likelihood
measured with annealed importance sampling (Salakhutdinov & Murray 2008).

Binary visible units :math:`v \in \{0,1\}^D` (the pixels) and hidden units
:math:`h \in \{0,1\}^H`, joined by weights :math:`W` (D x H), with biases :math:`b` and
:math:`c`:

.. math::
    E(v, h) = -b^\top v - c^\top h - v^\top W h, \qquad
    p(v, h) = e^{-E(v, h)} / Z, \qquad Z = \textstyle\sum_{v, h} e^{-E(v, h)}            \tag{1}

No connections within a layer, so each layer is factorial given the other:

.. math::
    p(h_j = 1 \mid v) = \sigma\big(c_j + v^\top W_{:j}\big), \qquad                        \tag{2}
    p(v_i = 1 \mid h) = \sigma\big(b_i + W_{i:} h\big)                                     \tag{3}

and the hidden units sum out in closed form, giving the *free energy*:

.. math::
    p(v) = e^{-F(v)} / Z, \qquad
    F(v) = -b^\top v - \textstyle\sum_j \operatorname{softplus}\big(c_j + v^\top W_{:j}\big)  \tag{4}

The log-likelihood gradient is a difference of two expectations -- the data's, computable, and
the model's, not:

.. math::
    \frac{\partial \log p(v)}{\partial \theta}
      = -\frac{\partial F(v)}{\partial \theta}
        + \mathbb E_{v' \sim p}\Big[\frac{\partial F(v')}{\partial \theta}\Big], \qquad
    \frac{\partial \log p(v)}{\partial W}
      = v\, p(h{=}1 \mid v)^\top - \mathbb E_{p}\big[v'\, p(h{=}1 \mid v')^\top\big]        \tag{5}

*CD-k* replaces the model's expectation by :math:`v_k`, the end of k block-Gibbs sweeps
(eq. 3 after eq. 2, sampling each layer) started at the data; *PCD* continues a fixed set of
persistent chains from where the last update left them, so the negative samples come from
(nearly) the model.  Both are written as one surrogate loss whose gradient is minus the
estimate of eq. (5), with the negative samples held constant:

.. math::
    L = \tfrac1N \textstyle\sum_n F(v_n) - \tfrac1M \sum_m F(\tilde v_m)                    \tag{6}

Training follows Hinton's practical guide (2010): SGD with momentum 0.5 for the first 5 epochs
and 0.9 after, an L2 weight cost on W only (2e-4), weights from N(0, 0.01^2), hidden biases 0,
visible biases :math:`\log(p_i / (1 - p_i))` from the pixel means of the first batch.

**The likelihood.**  :math:`\log Z` is a sum over :math:`2^{\min(D, H)}` terms after summing one
layer out.  :meth:`BernoulliRBM.exact_log_partition` does that sum for a small layer (<= 20
units); otherwise AIS (:mod:`.ais`) anneals from a *base-rate* model -- visible units only,
biases :math:`b_A = \log(\bar v / (1 - \bar v))` from the training data's means -- through

.. math::
    \log p^*_\beta(v) = (1 - \beta)\, b_A^\top v + \beta\, b^\top v
                        + \textstyle\sum_j \operatorname{softplus}\big(\beta (c_j + v^\top W_{:j})\big) \tag{7}

(the hidden units' energy scaled by :math:`\beta`, as in the paper; at :math:`\beta = 0` it is
the base model times :math:`2^H`), moving the runs with Gibbs sweeps at each :math:`\beta`:
:math:`h \sim \sigma(\beta(c + v^\top W))`, :math:`v \sim \sigma((1-\beta) b_A + \beta(b + W h))`.
The test NLL is then :math:`\overline{F(v)} + \log \hat Z`.

Deviations from the papers: the statistics of eq. (5) use :math:`p(h \mid v)` for both phases
(the guide's recommendation) because eq. (6)'s gradient does; the weight cost is the optimizer's
L2 term (the same update).  Samples are shown as the probabilities :math:`p(v \mid h)` of the
last sweep, as the papers draw them, not as binary images.
"""
from __future__ import annotations

import math

import numpy as np

from ... import nn
from ...autograd import no_grad
from ...creation import bernoulli, normal, zeros
from ...tensor import int64
from ...nn import functional as F
from ...optim import SGD
from ...utils.checks import positive_int
from ..base import GenerativeModel, nats_to_bits_per_dim
from ..likelihood import check_binary
from ..registry import ModelSpec, register
from .ais import AnnealingPath, estimate_log_partition

__all__ = ["BernoulliRBM", "BinaryEnergyModel", "RBM", "RBMAnnealingPath", "CDTraining",
           "EXACT_LOG_Z_MAX_UNITS", "bernoulli_entropy", "draw_independent",
           "log_sum_exp_over_states", "smoothed_logits"]

EXACT_LOG_Z_MAX_UNITS = 20          # 2^20 configurations of the smaller layer, summed in chunks


def bernoulli_entropy(logits):
    """:math:`\\mathcal H(\\sigma(a))` per row, summed over units, from the logits: with
    :math:`\\mu = \\sigma(a)`, :math:`-\\mu\\log\\mu - (1-\\mu)\\log(1-\\mu)
    = \\operatorname{softplus}(a) - \\mu a` -- finite even where :math:`\\mu` rounds to 0 or 1."""
    return (F.softplus(logits) - logits.sigmoid() * logits).sum(1)


def smoothed_logits(total, count: float):
    """:math:`\\log(m / (1 - m))` of the mean :math:`m = (\\text{total} + 1) / (\\text{count} + 2)`
    (one pseudo-count each way: a unit never on gets a finite bias)."""
    mean = (total + 1.0) / (count + 2.0)
    return (mean / (1.0 - mean)).log()


def log_sum_exp_over_states(units: int, log_weight) -> float:
    """:math:`\\log \\sum_s e^{f(s)}` over every :math:`s \\in \\{0,1\\}^{units}`, where
    ``log_weight`` maps a float64 array of states (n, units) to f, in chunks of 2^16 states."""
    terms = []
    for start in range(0, 2 ** units, 1 << 16):
        codes = np.arange(start, min(2 ** units, start + (1 << 16)))
        terms.append(log_weight(((codes[:, None] >> np.arange(units)) & 1).astype(np.float64)))
    terms = np.concatenate(terms)
    top = terms.max()
    return float(top + np.log(np.exp(terms - top).sum()))


def draw_independent(logits, n: int):
    """``n`` rows of independent binary units with the given logits (D,): a base-rate model's
    sample, where chains start."""
    return bernoulli(logits.sigmoid().reshape(1, -1).expand(n, -1))


# -- the layer ------------------------------------------------------------------------------
class BernoulliRBM(nn.Module):
    """One RBM on flat binary vectors (N, D): the energy, the conditionals, the free energy,
    Gibbs sampling, the CD surrogate loss and the partition function.  :class:`RBM` trains one on
    images; a DBN stacks several."""

    def __init__(self, num_visible: int, num_hidden: int):
        super().__init__()
        self.num_visible = positive_int(num_visible, "BernoulliRBM: num_visible")
        self.num_hidden = positive_int(num_hidden, "BernoulliRBM: num_hidden")
        self.weight = nn.Parameter(normal(0.0, 0.01, (self.num_visible, self.num_hidden)))
        self.visible_bias = nn.Parameter(zeros(self.num_visible))
        self.hidden_bias = nn.Parameter(zeros(self.num_hidden))

    # -- eqs. (1)-(4) ----------------------------------------------------------------------------
    def hidden_logits(self, v):
        """:math:`c + v^\\top W`, the logits of eq. (2), shape (N, H)."""
        return v @ self.weight + self.hidden_bias

    def visible_logits(self, h):
        """:math:`b + W h`, the logits of eq. (3), shape (N, D)."""
        return h @ self.weight.t() + self.visible_bias

    def energy(self, v, h):
        """:math:`E(v, h)` of eq. (1), one value per row."""
        return -(v @ self.visible_bias) - (h @ self.hidden_bias) \
            - ((v @ self.weight) * h).sum(1)                                    # eq. (1)

    def free_energy(self, v):
        """:math:`F(v) = -\\log \\sum_h e^{-E(v, h)}` of eq. (4), one value per row."""
        return -(v @ self.visible_bias) - F.softplus(self.hidden_logits(v)).sum(1)   # eq. (4)

    def sample_hidden(self, v):
        return bernoulli(self.hidden_logits(v).sigmoid())                        # eq. (2)

    def sample_visible(self, h):
        """``(v, p)``: a sample of eq. (3) and the probabilities it was drawn with."""
        probs = self.visible_logits(h).sigmoid()                                 # eq. (3)
        return bernoulli(probs), probs

    def gibbs(self, v, steps: int):
        """``steps`` block-Gibbs sweeps v -> h -> v from ``v``: ``(v_k, p(v | h_k))``."""
        probs = v
        for _ in range(steps):
            v, probs = self.sample_visible(self.sample_hidden(v))
        return v, probs

    def contrastive_loss(self, positive, negative):
        """Eq. (6): the mean free energy of the data minus that of the negative samples (held
        constant), whose gradient is minus the CD / PCD estimate of eq. (5)."""
        return self.free_energy(positive).mean() - self.free_energy(negative.detach()).mean()

    def reconstruction_error(self, v):
        """Squared error of the mean-field reconstruction :math:`p(v \\mid p(h \\mid v))` per row
        -- the guide's cheap (and poor) progress monitor; no random numbers."""
        recon = self.visible_logits(self.hidden_logits(v).sigmoid()).sigmoid()
        return ((v - recon) ** 2).sum(1)

    # -- the partition function ------------------------------------------------------------------
    def exact_log_partition(self) -> float:
        """:math:`\\log Z` by enumerating the smaller layer (the other sums out like eq. 4):
        :math:`\\log Z = \\log \\sum_h \\exp\\big(c^\\top h + \\sum_i
        \\operatorname{softplus}(b_i + W_{i:} h)\\big)`, in float64 on the CPU.  Refuses layers of
        more than ``EXACT_LOG_Z_MAX_UNITS`` units (use AIS)."""
        W = self.weight.detach().cpu().numpy().astype(np.float64)
        b = self.visible_bias.detach().cpu().numpy().astype(np.float64)
        c = self.hidden_bias.detach().cpu().numpy().astype(np.float64)
        if W.shape[0] < W.shape[1]:                     # sum over v instead: swap the roles
            W, b, c = W.T, c, b
        units = W.shape[1]
        if units > EXACT_LOG_Z_MAX_UNITS:
            raise ValueError(f"exact log Z enumerates 2^{units} states: only RBMs with a layer "
                             f"of at most {EXACT_LOG_Z_MAX_UNITS} units (use AIS)")
        return log_sum_exp_over_states(units, lambda h: h @ c + np.logaddexp(0.0, h @ W.T + b)
                                       .sum(1))

    def annealing_path(self, base_logits) -> "RBMAnnealingPath":
        return RBMAnnealingPath(self, base_logits)


class RBMAnnealingPath(AnnealingPath):
    """Eq. (7): from the base-rate model with visible logits ``base_logits`` (D,) to ``rbm``."""

    def __init__(self, rbm: BernoulliRBM, base_logits):
        self.rbm = rbm
        self.base_logits = base_logits.detach()

    def initial_state(self, runs):
        return draw_independent(self.base_logits, runs)

    def log_partition_initial(self):
        # the base model's Z times 2^H: at beta = 0 every hidden unit contributes softplus(0)
        base = float(F.softplus(self.base_logits).sum().item())
        return base + self.rbm.num_hidden * math.log(2.0)

    def step(self, v, beta_from, beta_to):
        rbm = self.rbm
        a = rbm.hidden_logits(v)
        increment = (beta_to - beta_from) * (v @ (rbm.visible_bias - self.base_logits)) \
            + (F.softplus(beta_to * a) - F.softplus(beta_from * a)).sum(1)       # eq. (7)
        h = bernoulli((beta_to * a).sigmoid())
        v = bernoulli(((1 - beta_to) * self.base_logits
                       + beta_to * rbm.visible_logits(h)).sigmoid())
        return increment, v


# -- training ---------------------------------------------------------------------------------
class CDTraining(nn.Module):
    """What CD / PCD training of one :class:`BernoulliRBM` keeps between updates, as buffers so
    that resume is exact: the update count (for the momentum schedule), the running sum of the
    data it saw (the base rates of AIS) and, for PCD, the persistent chains."""

    def __init__(self, num_visible: int, *, cd_k: int = 1, persistent: bool = False,
                 num_chains: int = 64, momentum_switch: int = 300, initial_momentum: float = 0.5,
                 momentum: float = 0.9):
        super().__init__()
        self.cd_k = positive_int(cd_k, "RBM: cd_k")
        self.persistent = bool(persistent)
        self.momentum_switch = int(momentum_switch)
        self.initial_momentum, self.final_momentum = float(initial_momentum), float(momentum)
        # counts as integers: exact however long the run, and shipped as they are
        self.register_buffer("updates", zeros(1, dtype=int64))
        self.register_buffer("data_sum", zeros(num_visible))      # exact in float32 to 2^24
        self.register_buffer("data_count", zeros(1, dtype=int64))
        if self.persistent:
            num_chains = positive_int(num_chains, "RBM: num_chains")
            self.register_buffer("chains", zeros(num_chains, num_visible))

    def optimizer(self, rbm: BernoulliRBM, lr: float, weight_decay: float) -> SGD:
        """SGD with momentum; the weight cost on W only (the guide: never on the biases)."""
        return SGD([{"params": [rbm.weight], "weight_decay": weight_decay},
                    {"params": [rbm.visible_bias, rbm.hidden_bias], "weight_decay": 0.0}],
                   lr=lr, momentum=self.initial_momentum)

    def base_logits(self):
        """:math:`b_A = \\log(\\bar v / (1 - \\bar v))` from the data seen so far, smoothed by
        one pseudo-count each way (a pixel never on gets a finite bias)."""
        return smoothed_logits(self.data_sum, self.data_count.item())

    def step(self, rbm: BernoulliRBM, v, optimizer) -> dict:
        """One CD-k / PCD update of ``rbm`` on the binary batch ``v`` (N, D)."""
        first = self.updates.item() == 0
        with no_grad():
            self.data_sum.copy_(self.data_sum + v.sum(0))
            self.data_count.copy_(self.data_count + len(v))
            if first:                                      # the guide's initial visible biases
                rbm.visible_bias.copy_(self.base_logits())
            if first and self.persistent:                  # chains start from the base rates
                self.chains.copy_(draw_independent(rbm.visible_bias, len(self.chains)))
            start = self.chains if self.persistent else v
            negative, _ = rbm.gibbs(start, self.cd_k)                  # CD-k / PCD sweeps
            if self.persistent:
                self.chains.copy_(negative)
        for group in optimizer.param_groups:
            group["momentum"] = (self.initial_momentum if self.updates.item() < self.momentum_switch
                                 else self.final_momentum)
        loss = rbm.contrastive_loss(v, negative)                                 # eq. (6)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with no_grad():
            self.updates.copy_(self.updates + 1)
            error = float(rbm.reconstruction_error(v).mean().item())
        return {"loss": error, "free_energy_gap": float(loss.item())}


# -- the model ----------------------------------------------------------------------------------
class BinaryEnergyModel(GenerativeModel):
    """What the RBM, the DBN and the DBM share: binary images as visible vectors, the settings
    of Gibbs sampling and of AIS, and the weight cost.

    ``sample_steps`` Gibbs sweeps from the base rates draw a sample; ``ais_runs`` and
    ``ais_temperatures`` set :meth:`evaluate`'s estimate of log Z (the paper's 100 and 14,500
    by default); ``weight_decay`` is the L2 cost on the weights (not the biases).
    """

    data_transform = "binary"

    def __init__(self, image_shape, num_classes, *, weight_decay, sample_steps, ais_runs,
                 ais_temperatures):
        super().__init__()
        name = type(self).__name__
        if len(image_shape) != 3:
            raise ValueError(f"{name}: image_shape must be (C, H, W), got {image_shape!r}")
        self.image_shape = tuple(positive_int(d, f"{name}: image_shape") for d in image_shape)
        self.num_visible = int(np.prod(self.image_shape))
        self.num_classes = num_classes
        if weight_decay < 0:
            raise ValueError(f"{name}: weight_decay must be >= 0, got {weight_decay!r}")
        self.weight_decay = float(weight_decay)
        self.sample_steps = positive_int(sample_steps, f"{name}: sample_steps")
        self.ais_runs = positive_int(ais_runs, f"{name}: ais_runs")
        self.ais_temperatures = positive_int(ais_temperatures, f"{name}: ais_temperatures")

    def _vectors(self, x, op):
        """Images (N, C, H, W) in {0, 1} as the visible vectors (N, D)."""
        name = f"{type(self).__name__}.{op}"
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"{name}: expected images of shape (N, "
                             f"{', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}")
        check_binary(x, name)
        return x.reshape(len(x), -1)

    def _estimate(self, path):
        return estimate_log_partition(path, runs=self.ais_runs,
                                      temperatures=self.ais_temperatures)


class RBM(BinaryEnergyModel):
    """A Bernoulli RBM on binary images, trained with CD-k (``cd_k``) or PCD
    (``persistent=True``), judged by its AIS test log-likelihood."""

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, num_hidden: int = 500,
                 cd_k: int = 1, persistent: bool = False, num_chains: int = 64,
                 weight_decay: float = 2e-4, sample_steps: int = 1000, ais_runs: int = 100,
                 ais_temperatures: int = 14_500):
        super().__init__(image_shape, num_classes, weight_decay=weight_decay,
                         sample_steps=sample_steps, ais_runs=ais_runs,
                         ais_temperatures=ais_temperatures)
        self.rbm = BernoulliRBM(self.num_visible, num_hidden)
        self.training_state = CDTraining(self.num_visible, cd_k=cd_k, persistent=persistent,
                                         num_chains=num_chains)

    # -- training -------------------------------------------------------------------------------
    def configure_optimizers(self, lr):
        return {"model": self.training_state.optimizer(self.rbm, lr, self.weight_decay)}

    def training_step(self, batch, optimizers):
        x, _ = batch
        return self.training_state.step(self.rbm, self._vectors(x, "training_step"),
                                        optimizers["model"])

    # -- using it -------------------------------------------------------------------------------
    def sample(self, n: int, y=None):
        """``n`` images: ``sample_steps`` Gibbs sweeps from base-rate noise, shown as the
        probabilities of the last sweep."""
        n = positive_int(n, "RBM.sample: n")
        with no_grad():
            start = draw_independent(self.training_state.base_logits(), n)
            _, probs = self.rbm.gibbs(start, self.sample_steps)
        return probs.reshape(n, *self.image_shape)

    def log_partition(self):
        """The AIS estimate (:class:`~.ais.AISEstimate`) of log Z, from the base rates of the
        training data seen."""
        return self._estimate(self.rbm.annealing_path(self.training_state.base_logits()))

    def evaluate(self, loader) -> dict:
        """Test NLL :math:`\\overline{F(v)} + \\log \\hat Z` in nats (and bits/dim), with
        :math:`\\log \\hat Z` from AIS and its spread; the exact value too when a layer is
        small enough to enumerate."""
        total, recon, count = 0.0, 0.0, 0
        with no_grad():
            for x, _ in loader:
                v = self._vectors(x, "evaluate")
                total += float(self.rbm.free_energy(v).sum().item())
                recon += float(self.rbm.reconstruction_error(v).sum().item())
                count += len(x)
            if count == 0:
                raise ValueError("RBM.evaluate: the loader yielded no examples")
            estimate = self.log_partition()
        mean_free_energy = total / count
        nll = mean_free_energy + estimate.log_z
        metrics = {"nll_nats": nll,
                   "bits_per_dim": nats_to_bits_per_dim(nll, self.rbm.num_visible),
                   "nll_nats_minus_3sd": mean_free_energy + estimate.log_z_low,
                   "nll_nats_plus_3sd": mean_free_energy + estimate.log_z_high,
                   "mean_free_energy": mean_free_energy, **estimate.as_dict(),
                   "reconstruction_error": recon / count, "num_examples": count}
        if min(self.rbm.num_visible, self.rbm.num_hidden) <= EXACT_LOG_Z_MAX_UNITS:
            metrics["log_z_exact"] = self.rbm.exact_log_partition()
            metrics["nll_nats_exact"] = mean_free_energy + metrics["log_z_exact"]
        return metrics

    def figures(self, x, y=None) -> dict:
        """The hidden units' filters: column j of W as an image, each scaled to [0, 1]."""
        return {"filters": (weight_images(self.rbm.weight, self.image_shape, 100), 10)}


def weight_images(weight, image_shape, count: int):
    """The first ``count`` columns of ``weight`` (D, H) as images (count, C, H, W), each
    min-max scaled to [0, 1] -- the receptive fields of the hidden units."""
    w = weight.detach()[:, :count].t()
    low, high = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    return ((w - low) / (high - low + 1e-8)).reshape(-1, *image_shape)


register(ModelSpec(
    name="rbm",
    summary="restricted Boltzmann machine (500 binary hidden units), CD-1; test NLL by AIS",
    build=RBM,
    # 3,000 steps of CD-1 take ~100 s.  Test NLL (AIS, 3,000 temperatures) by learning rate,
    # momentum 0.5 -> 0.9: 0.05 -> 224.9, 0.01 -> 154.2, 0.003 -> 120.1, 0.001 -> 135.2 nats;
    # 0.003 decayed by a cosine -> 129.4.  Larger steps leave a model whose long chains fall
    # into a few spurious modes (the samples are all one blob).  PCD needs the decay: 0.01
    # constant -> 149.3, with a cosine -> 126.7.
    steps=3000, batch_size=64, lr=0.003, sample_every=1000, num_samples=64,
))
