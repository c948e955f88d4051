r"""The deep Boltzmann machine (Salakhutdinov & Hinton 2009): two layers of binary hidden units
above binary pixels, every layer connected to its neighbours in both directions, pretrained
layer by layer as two modified RBMs, then trained jointly with mean-field inference for the
data and persistent Gibbs chains for the model; judged by a variational lower bound on the test
log-likelihood, with :math:`\log Z` from annealed importance sampling.

Visible units :math:`v \in \{0,1\}^D`, hidden layers :math:`h^1 \in \{0,1\}^{H_1}` and
:math:`h^2 \in \{0,1\}^{H_2}`, weights :math:`W^1` (D x H1) and :math:`W^2` (H1 x H2), biases
:math:`b, c^1, c^2`:

.. math::
    E(v, h^1, h^2) = -v^\top W^1 h^1 - {h^1}^\top W^2 h^2 - b^\top v - {c^1}^\top h^1
                     - {c^2}^\top h^2, \qquad p(v, h^1, h^2) = e^{-E} / Z                 \tag{1}

The middle layer hears both neighbours; the outer layers hear only the middle one:

.. math::
    p(h^1_j = 1 \mid v, h^2) = \sigma\big(c^1_j + v^\top W^1_{:j} + W^2_{j:} h^2\big), \quad
    p(v_i = 1 \mid h^1) = \sigma\big(b_i + W^1_{i:} h^1\big), \quad
    p(h^2_k = 1 \mid h^1) = \sigma\big(c^2_k + {h^1}^\top W^2_{:k}\big)                    \tag{2}

so :math:`v` and :math:`h^2` are independent given :math:`h^1`, one block-Gibbs sweep is
:math:`h^1 \sim p(h^1 \mid v, h^2)` then :math:`(v, h^2) \sim p(v, h^2 \mid h^1)`, and the middle
layer sums out in closed form:

.. math::
    \log p^*(v, h^2) = \log \textstyle\sum_{h^1} e^{-E}
      = b^\top v + {c^2}^\top h^2
        + \sum_j \operatorname{softplus}\big(c^1_j + v^\top W^1_{:j} + W^2_{j:} h^2\big)     \tag{3}

**Inference.**  :math:`p(h^1, h^2 \mid v)` does not factorise (the two hidden layers are
coupled).  A factorial :math:`Q(h) = \prod_j \mu^1_j{}^{h^1_j}(1-\mu^1_j)^{1-h^1_j} \prod_k
\dots` gives, for every :math:`v`, the bound

.. math::
    \log p(v) \ge -\mathcal F_Q(v) - \log Z, \qquad
    \mathcal F_Q(v) = \mathbb E_Q[E(v, h)] - \mathcal H(Q)
      = E(v, \mu^1, \mu^2) - \mathcal H(\mu^1) - \mathcal H(\mu^2)                         \tag{4}

(:math:`E` is linear in each layer, so its expectation under the factorial Q is E at the
means; :math:`\mathcal H(\mu) = -\sum [\mu \log \mu + (1-\mu)\log(1-\mu)]`), with equality when
Q is the true posterior: the gap is :math:`\mathrm{KL}(Q \,\|\, p(h \mid v))`.  Each layer's
update, the others fixed, maximises the bound exactly -- the mean-field fixed-point equations:

.. math::
    \mu^1 \leftarrow \sigma\big(c^1 + {W^1}^\top v + W^2 \mu^2\big), \qquad
    \mu^2 \leftarrow \sigma\big(c^2 + {W^2}^\top \mu^1\big)                                  \tag{5}

started (as in the paper) from a bottom-up pass with doubled weights,
:math:`\mu^1 = \sigma(c^1 + 2 {W^1}^\top v)`, :math:`\mu^2 = \sigma(c^2 + {W^2}^\top \mu^1)`.

**Learning.**  The gradient of the bound (4) with Q held at its fixed point is a difference of
statistics -- the data's under Q, the model's under p:

.. math::
    \frac{\partial}{\partial W^1} = \mathbb E_{\text{data}}\big[v {\mu^1}^\top\big]
        - \mathbb E_p\big[v {h^1}^\top\big], \qquad
    \frac{\partial}{\partial W^2} = \mathbb E_{\text{data}}\big[\mu^1 {\mu^2}^\top\big]
        - \mathbb E_p\big[h^1 {h^2}^\top\big]                                                \tag{6}

(and :math:`v`, :math:`\mu^1`, :math:`\mu^2` minus the model's means for the biases).  The
model's expectation comes from M persistent chains (Tieleman 2008; Younes 1989), moved by
Gibbs sweeps after every update.  Because E is linear in the parameters, one surrogate loss
carries both phases, its states held constant:

.. math::
    L = \tfrac1N \textstyle\sum_n E(v_n, \mu^1_n, \mu^2_n)
        - \tfrac1M \sum_m E(\tilde v_m, \tilde h^1_m, \tilde h^2_m), \qquad
    -\nabla_\theta L = \text{eq. (6)}                                                        \tag{7}

**Pretraining.**  Two RBMs, each modified so that the layer in the middle counts its input from
the side it will lose twice: the bottom RBM infers :math:`h^1` from :math:`2 W^1` (the missing
top-down input replaced by a second copy of the bottom-up one) and reconstructs :math:`v` with
:math:`W^1`; the top RBM, trained on samples of the bottom one's
:math:`h^1 \sim \sigma(c^1 + 2 {W^1}^\top v)`, infers :math:`h^2` with :math:`W^2` and
reconstructs :math:`h^1` with :math:`2 W^2`:

.. math::
    \text{bottom:}\ p(h^1 \mid v) = \sigma(c^1 + 2 {W^1}^\top v),\ p(v \mid h^1) = \text{eq. (2)};
    \quad
    \text{top:}\ p(h^2 \mid h^1) = \text{eq. (2)},\ p(h^1 \mid h^2) = \sigma(a + 2 W^2 h^2)  \tag{8}

each trained with CD-1, whose update is again eq. (7) with each RBM's own energy.  Composed,
the DBM's :math:`h^1` hears :math:`W^1` from below and :math:`W^2` from above once each; its bias
starts as the mean of the bottom RBM's hidden bias :math:`c^1` and the top RBM's visible bias
:math:`a` (Salakhutdinov's code does the same).

**The partition function.**  AIS (:mod:`.ais`) anneals over :math:`(v, h^2)` with :math:`h^1`
summed out, from a base-rate model :math:`p_A(v, h^2)` with biases :math:`b_A` (the training
pixels' means) and :math:`c^2_A` (the mean of the data's :math:`\mu^2`):

.. math::
    \log p^*_\beta(v, h^2) = (1-\beta)\big(b_A^\top v + {c^2_A}^\top h^2\big)
        + \beta\big(b^\top v + {c^2}^\top h^2\big)
        + \textstyle\sum_j \operatorname{softplus}\big(\beta (c^1_j + v^\top W^1_{:j}
          + W^2_{j:} h^2)\big)                                                               \tag{9}

(at :math:`\beta = 0`, the base model times :math:`2^{H_1}`; at 1, eq. 3), each temperature's
transition being a Gibbs sweep of the tempered model:
:math:`h^1 \sim \sigma(\beta(\dots))`, :math:`v \sim \sigma((1-\beta) b_A + \beta(b + W^1 h^1))`,
:math:`h^2 \sim \sigma((1-\beta) c^2_A + \beta(c^2 + {W^2}^\top h^1))`.  For tiny models,
:meth:`DBM.exact_log_partition` enumerates either :math:`h^1` (then :math:`v` and :math:`h^2`,
independent given it, sum out) or :math:`(v, h^2)` (eq. 3), whichever is smaller:

.. math::
    \log Z = \log \textstyle\sum_{h^1} \exp\Big({c^1}^\top h^1
        + \sum_i \operatorname{softplus}(b_i + W^1_{i:} h^1)
        + \sum_k \operatorname{softplus}(c^2_k + {h^1}^\top W^2_{:k})\Big)                  \tag{10}

The reported test figure is :math:`\overline{\mathcal F_Q(v)} + \log \hat Z`, an *upper bound*
on the NLL when :math:`\log \hat Z` is exact; AIS's :math:`\log \hat Z` tends to be low (see
:mod:`.ais`), which makes the bound optimistic by that error.

Deviations from the paper: sizes 500-500 rather than 500-1000, and a budget of thousands of
updates rather than hundreds of epochs (the 10-minute rule of ``nanogen train``); a constant
learning rate in each phase (the paper's decays), momentum 0.5 in the joint phase; the
pretraining RBMs use CD-1.  The model's
statistics in eq. (7) use the chains' :math:`(\tilde v, \tilde h^2)` with :math:`\tilde h^1`
replaced by its conditional mean :math:`p(h^1 \mid \tilde v, \tilde h^2)` (the same expectation,
less noise -- as :mod:`.rbm` does for its hidden units).  Evaluation runs mean-field to
convergence (at most ``eval_mean_field_steps`` updates) where training stops at
``mean_field_steps``.  Samples are shown as :math:`p(v \mid h^1)` of the last sweep.
"""
from __future__ import annotations

import math

import numpy as np

from ...autograd import no_grad
from ...creation import bernoulli, zeros
from ...functional import cat
from ...nn import functional as F
from ...optim import SGD
from ...tensor import int64
from ...utils.checks import positive_int
from ..base import nats_to_bits_per_dim
from ..registry import ModelSpec, register
from .ais import AnnealingPath
from .rbm import (EXACT_LOG_Z_MAX_UNITS, BernoulliRBM, BinaryEnergyModel, bernoulli_entropy,
                  draw_independent, log_sum_exp_over_states, smoothed_logits, weight_images)

__all__ = ["DBM", "DBMAnnealingPath", "MEAN_FIELD_TOLERANCE"]

MEAN_FIELD_TOLERANCE = 1e-5     # evaluation's mean-field stops when no mean moves by more
PHASES = ("bottom", "top", "joint")


# -- pure helpers ---------------------------------------------------------------------------------
# -- the model ------------------------------------------------------------------------------------
class DBM(BinaryEnergyModel):
    """A two-hidden-layer DBM on binary images.

    The parameters live in two :class:`~.rbm.BernoulliRBM` layers whose energies add up to
    eq. (1): ``bottom`` holds :math:`W^1, b, c^1`, ``top`` holds :math:`W^2, c^2` and, as its
    visible bias, the top pretraining RBM's bias :math:`a` on :math:`h^1`.  The DBM's
    :math:`h^1` bias is therefore ``bottom.hidden_bias + top.visible_bias``; when the joint
    phase starts, the first takes their mean and the second is set to 0 and left out of the
    joint optimizer, so :math:`c^1` is ``bottom.hidden_bias`` from then on.

    Training runs ``pretrain_steps`` CD-1 updates of the bottom RBM, as many of the top one, then
    joint updates (eq. 7) until the run ends -- chosen by an update counter kept as a buffer, so
    a resumed run picks up the same phase.  Each phase has its own SGD optimizer: the
    pretraining ones with momentum ``initial_momentum`` for their first ``momentum_switch``
    updates and ``momentum`` after (Hinton's guide), the joint one with ``joint_momentum``, and
    the L2 ``weight_decay`` on the weights only; the joint phase's learning rate is the run's
    times ``joint_lr_factor``.

    ``sample_steps`` Gibbs sweeps from the base rates draw a sample; ``ais_runs`` and
    ``ais_temperatures`` set :meth:`evaluate`'s estimate of log Z.
    """

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, hidden_sizes=(500, 500),
                 pretrain_steps: int = 1000, mean_field_steps: int = 10,
                 eval_mean_field_steps: int = 100, num_chains: int = 100, gibbs_steps: int = 5,
                 joint_lr_factor: float = 0.01, weight_decay: float = 2e-4,
                 momentum_switch: int = 300, initial_momentum: float = 0.5,
                 momentum: float = 0.9, joint_momentum: float = 0.5, sample_steps: int = 1000,
                 ais_runs: int = 100, ais_temperatures: int = 14_500):
        super().__init__(image_shape, num_classes, weight_decay=weight_decay,
                         sample_steps=sample_steps, ais_runs=ais_runs,
                         ais_temperatures=ais_temperatures)
        if len(hidden_sizes) != 2:
            raise ValueError(f"DBM: hidden_sizes must name the two hidden layers' sizes, got "
                             f"{hidden_sizes!r}")
        h1, h2 = (positive_int(h, "DBM: hidden_sizes") for h in hidden_sizes)
        self.bottom = BernoulliRBM(self.num_visible, h1)                      # W1, b, c1
        self.top = BernoulliRBM(h1, h2)                                       # W2, a, c2
        if isinstance(pretrain_steps, bool) or int(pretrain_steps) != pretrain_steps \
                or pretrain_steps < 0:
            raise ValueError(f"DBM: pretrain_steps must be an int >= 0, got {pretrain_steps!r}")
        self.pretrain_steps = int(pretrain_steps)
        self.mean_field_steps = positive_int(mean_field_steps, "DBM: mean_field_steps")
        self.eval_mean_field_steps = positive_int(eval_mean_field_steps,
                                                  "DBM: eval_mean_field_steps")
        self.gibbs_steps = positive_int(gibbs_steps, "DBM: gibbs_steps")
        if not joint_lr_factor >= 0:
            raise ValueError(f"DBM: joint_lr_factor must be >= 0, got {joint_lr_factor!r}")
        self.joint_lr_factor = float(joint_lr_factor)
        self.momentum_switch = int(momentum_switch)
        self.initial_momentum, self.final_momentum = float(initial_momentum), float(momentum)
        self.joint_momentum = float(joint_momentum)
        num_chains = positive_int(num_chains, "DBM: num_chains")
        # what training keeps between updates, as buffers so that resume is exact
        # (counts as integers: exact however long the run, and shipped as they are)
        self.register_buffer("updates", zeros(1, dtype=int64))
        self.register_buffer("data_sum", zeros(self.num_visible))      # base rates b_A
        self.register_buffer("data_count", zeros(1, dtype=int64))
        self.register_buffer("top_sum", zeros(h2))                      # base rates c2_A
        self.register_buffer("top_count", zeros(1, dtype=int64))
        self.register_buffer("chains_v", zeros(num_chains, self.num_visible))
        self.register_buffer("chains_h2", zeros(num_chains, h2))

    # -- eqs. (1)-(3) ---------------------------------------------------------------------------
    def energy(self, v, h1, h2):
        """:math:`E(v, h^1, h^2)` of eq. (1), one value per row: the two layers' energies."""
        return self.bottom.energy(v, h1) + self.top.energy(h1, h2)               # eq. (1)

    def hidden1_logits(self, v, h2):
        """The logits of :math:`p(h^1 \\mid v, h^2)`, eq. (2)."""
        return self.bottom.hidden_logits(v) + self.top.visible_logits(h2)        # eq. (2)

    def log_unnormalised(self, v, h2):
        """:math:`\\log p^*(v, h^2)` of eq. (3), :math:`h^1` summed out, one value per row."""
        return v @ self.bottom.visible_bias + h2 @ self.top.hidden_bias \
            + F.softplus(self.hidden1_logits(v, h2)).sum(1)                      # eq. (3)

    def gibbs_sweep(self, v, h2):
        """One block-Gibbs sweep: :math:`h^1 \\sim p(h^1 \\mid v, h^2)`, then :math:`v` and
        :math:`h^2` given :math:`h^1`.  Returns ``(v, h2, p(v | h1))``."""
        h1 = bernoulli(self.hidden1_logits(v, h2).sigmoid())                     # eq. (2)
        probs = self.bottom.visible_logits(h1).sigmoid()                         # eq. (2)
        return bernoulli(probs), self.top.sample_hidden(h1), probs               # eq. (2)

    # -- inference, eqs. (4)-(5) ----------------------------------------------------------------
    def doubled_up_pass(self, v):
        """The logits of :math:`\\mu^1 = \\sigma(c^1 + 2 {W^1}^\\top v)`: the bottom
        pretraining RBM's posterior (eq. 8), and mean-field's starting point (the top-down
        input replaced by a second copy of the bottom-up one)."""
        return self.bottom.hidden_logits(v) + v @ self.bottom.weight            # eq. (8)

    def mean_field(self, v, steps: int, tol: float | None = None):
        """Eq. (5) from the doubled bottom-up pass, ``steps`` times (or until no mean moves by
        more than ``tol``): the logits ``(a1, a2)`` of :math:`\\mu^1, \\mu^2`, where
        :math:`\\mu^2 = \\sigma(a_2)` is up to date with :math:`\\mu^1 = \\sigma(a_1)`."""
        bottom_up = self.bottom.hidden_logits(v)                  # c1 + W1^T v, fixed
        a1 = self.doubled_up_pass(v)
        mu1 = a1.sigmoid()
        a2 = self.top.hidden_logits(mu1)
        mu2 = a2.sigmoid()
        for _ in range(steps):
            a1 = bottom_up + self.top.visible_logits(mu2)                         # eq. (5)
            new_mu1 = a1.sigmoid()
            a2 = self.top.hidden_logits(new_mu1)                                  # eq. (5)
            new_mu2 = a2.sigmoid()
            moved = None if tol is None else max(float((new_mu1 - mu1).abs().max().item()),
                                                 float((new_mu2 - mu2).abs().max().item()))
            mu1, mu2 = new_mu1, new_mu2
            if moved is not None and moved <= tol:
                break
        return a1, a2

    def variational_free_energy(self, v, steps: int | None = None, tol: float | None = None):
        """:math:`\\mathcal F_Q(v)` of eq. (4) per row, Q from ``steps`` mean-field updates
        (default: evaluation's, to convergence): :math:`-\\mathcal F_Q(v) - \\log Z \\le
        \\log p(v)`."""
        if steps is None:
            steps, tol = self.eval_mean_field_steps, MEAN_FIELD_TOLERANCE
        return self.free_energy_of(v, *self.mean_field(v, steps, tol))

    def free_energy_of(self, v, a1, a2):
        """:math:`\\mathcal F_Q(v)` of eq. (4) for the Q with logits ``a1``, ``a2``."""
        return self.energy(v, a1.sigmoid(), a2.sigmoid()) \
            - bernoulli_entropy(a1) - bernoulli_entropy(a2)                       # eq. (4)

    def reconstruction_error(self, v, a1):
        """Squared error of :math:`p(v \\mid \\mu^1)` per row, :math:`\\mu^1 = \\sigma(a_1)` --
        a cheap progress monitor."""
        return ((v - self.bottom.visible_logits(a1.sigmoid()).sigmoid()) ** 2).sum(1)

    # -- the partition function, eqs. (9)-(10) --------------------------------------------------
    def exact_log_partition(self) -> float:
        """:math:`\\log Z` by enumeration in float64 on the CPU: over :math:`h^1` (eq. 10) or over
        :math:`(v, h^2)` (eq. 3), whichever has fewer units; refuses more than
        ``EXACT_LOG_Z_MAX_UNITS`` (use AIS)."""
        W1, b, c1 = (p.detach().cpu().numpy().astype(np.float64) for p in
                     (self.bottom.weight, self.bottom.visible_bias, self.bottom.hidden_bias))
        W2, a, c2 = (p.detach().cpu().numpy().astype(np.float64) for p in
                     (self.top.weight, self.top.visible_bias, self.top.hidden_bias))
        c1 = c1 + a                                   # the DBM's h1 bias (see the class doc)
        D, H1, H2 = len(b), len(c1), len(c2)
        if min(H1, D + H2) > EXACT_LOG_Z_MAX_UNITS:
            raise ValueError(f"exact log Z enumerates 2^{min(H1, D + H2)} states: only DBMs with "
                             f"a middle layer, or visible and top layers together, of at most "
                             f"{EXACT_LOG_Z_MAX_UNITS} units (use AIS)")
        softplus = lambda x: np.logaddexp(0.0, x)                               # noqa: E731
        if H1 <= D + H2:                                  # eq. (10); otherwise eq. (3)
            return log_sum_exp_over_states(H1, lambda h1: h1 @ c1 + softplus(h1 @ W1.T + b).sum(1)
                                           + softplus(h1 @ W2 + c2).sum(1))      # eq. (10)
        return log_sum_exp_over_states(D + H2, lambda s: s[:, :D] @ b + s[:, D:] @ c2
                                       + softplus(s[:, :D] @ W1 + s[:, D:] @ W2.T + c1).sum(1))

    def base_logits(self):
        """``(b_A, c2_A)``: the base-rate model's biases, from the training pixels' means and
        the mean of the joint phase's mean-field :math:`\\mu^2` on the training data."""
        return (smoothed_logits(self.data_sum, self.data_count.item()),
                smoothed_logits(self.top_sum, self.top_count.item()))

    def log_partition(self):
        """The AIS estimate (:class:`~.ais.AISEstimate`) of log Z along eq. (9)."""
        return self._estimate(DBMAnnealingPath(self, *self.base_logits()))

    # -- training, eqs. (6)-(8) -----------------------------------------------------------------
    def phase(self) -> str:
        """``"bottom"``, ``"top"`` or ``"joint"``: which the next update belongs to."""
        done = int(self.updates.item())
        return PHASES[min(done // self.pretrain_steps, 2)] if self.pretrain_steps else "joint"

    def configure_optimizers(self, lr):
        """One SGD optimizer per phase, by name; the weight cost on the weights only."""
        def sgd(weight, biases, rate):
            return SGD([{"params": [weight], "weight_decay": self.weight_decay},
                        {"params": biases, "weight_decay": 0.0}],
                       lr=rate, momentum=self.initial_momentum)
        bottom, top = self.bottom, self.top
        joint = SGD([{"params": [bottom.weight, top.weight], "weight_decay": self.weight_decay},
                     {"params": [bottom.visible_bias, bottom.hidden_bias, top.hidden_bias],
                      "weight_decay": 0.0}],
                    lr=lr * self.joint_lr_factor, momentum=self.joint_momentum)
        return {"bottom": sgd(bottom.weight, [bottom.visible_bias, bottom.hidden_bias], lr),
                "top": sgd(top.weight, [top.visible_bias, top.hidden_bias], lr),
                "joint": joint}

    def training_step(self, batch, optimizers):
        x, _ = batch
        v = self._vectors(x, "training_step")
        phase = self.phase()
        done = int(self.updates.item())
        with no_grad():
            self.data_sum.copy_(self.data_sum + v.sum(0))
            self.data_count.copy_(self.data_count + len(v))
            if done == 0:                                  # the guide's initial visible biases
                self.bottom.visible_bias.copy_(smoothed_logits(v.sum(0), float(len(v))))
        loss, logs = {"bottom": self._bottom_loss, "top": self._top_loss,
                      "joint": self._joint_loss}[phase](v)
        optimizer = optimizers[phase]
        if phase != "joint":                 # the guide's schedule; joint keeps joint_momentum
            since = done - PHASES.index(phase) * self.pretrain_steps
            for group in optimizer.param_groups:
                group["momentum"] = (self.initial_momentum if since < self.momentum_switch
                                     else self.final_momentum)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with no_grad():
            self.updates.copy_(self.updates + 1)
        return {**logs, "energy_gap": float(loss.item()), "phase": float(PHASES.index(phase))}

    def _bottom_loss(self, v):
        """CD-1 on the bottom RBM of eq. (8): eq. (7) with its energy."""
        rbm = self.bottom
        with no_grad():
            a1 = self.doubled_up_pass(v)
            positive = a1.sigmoid()                                               # eq. (8)
            negative_v, _ = rbm.sample_visible(bernoulli(positive))
            negative = self.doubled_up_pass(negative_v).sigmoid()                # eq. (8)
            error = float(self.reconstruction_error(v, a1).mean().item())
        loss = rbm.energy(v, positive).mean() - rbm.energy(negative_v, negative).mean()  # eq. (7)
        return loss, {"loss": error}

    def _top_loss(self, v):
        """CD-1 on the top RBM of eq. (8), on samples of the bottom RBM's :math:`h^1`."""
        rbm = self.top
        with no_grad():
            a1 = self.doubled_up_pass(v)
            data = bernoulli(a1.sigmoid())                                        # eq. (8)
            if int(self.updates.item()) == self.pretrain_steps:   # its first update: the guide's
                rbm.visible_bias.copy_(smoothed_logits(data.sum(0), float(len(data))))
            positive = rbm.hidden_logits(data).sigmoid()
            h2 = bernoulli(positive)
            negative_h1 = bernoulli((rbm.visible_logits(h2) + h2 @ rbm.weight.t())
                                    .sigmoid())                                   # eq. (8)
            negative = rbm.hidden_logits(negative_h1).sigmoid()
            # the whole stack's reconstruction of v: up with 2 W1, through h2, down with 2 W2, W1
            mu2 = rbm.hidden_logits(a1.sigmoid()).sigmoid()
            down = rbm.visible_logits(mu2) + mu2 @ rbm.weight.t()
            error = float(self.reconstruction_error(v, down).mean().item())
        loss = rbm.energy(data, positive).mean() - rbm.energy(negative_h1, negative).mean()  # (7)
        return loss, {"loss": error}

    def _joint_loss(self, v):
        """Eq. (7): mean-field statistics for the data, persistent chains for the model."""
        with no_grad():
            if int(self.updates.item()) == 2 * self.pretrain_steps:
                self._start_joint_phase()
            a1, a2 = self.mean_field(v, self.mean_field_steps)                   # eq. (5)
            mu1, mu2 = a1.sigmoid(), a2.sigmoid()
            self.top_sum.copy_(self.top_sum + mu2.sum(0))
            self.top_count.copy_(self.top_count + len(v))
            chain_v, chain_h2 = self.chains_v, self.chains_h2
            for _ in range(self.gibbs_steps):
                chain_v, chain_h2, _ = self.gibbs_sweep(chain_v, chain_h2)
            self.chains_v.copy_(chain_v)
            self.chains_h2.copy_(chain_h2)
            chain_h1 = self.hidden1_logits(chain_v, chain_h2).sigmoid()   # Rao-Blackwellised
            error = float(self.reconstruction_error(v, a1).mean().item())
        loss = self.energy(v, mu1, mu2).mean() \
            - self.energy(chain_v, chain_h1, chain_h2).mean()                     # eq. (7)
        return loss, {"loss": error}

    def _start_joint_phase(self):
        """Compose the pretrained RBMs: :math:`c^1 \\leftarrow (c^1 + a) / 2`, :math:`a = 0`;
        the chains start from the base rates."""
        self.bottom.hidden_bias.copy_((self.bottom.hidden_bias + self.top.visible_bias) * 0.5)
        self.top.visible_bias.zero_()
        v = draw_independent(self.base_logits()[0], len(self.chains_v))
        mu1 = self.doubled_up_pass(v).sigmoid()
        self.chains_v.copy_(v)
        self.chains_h2.copy_(self.top.sample_hidden(bernoulli(mu1)))

    # -- using it -------------------------------------------------------------------------------
    def sample(self, n: int, y=None):
        """``n`` images: ``sample_steps`` Gibbs sweeps from base-rate noise, shown as the
        probabilities :math:`p(v \\mid h^1)` of the last sweep."""
        n = positive_int(n, "DBM.sample: n")
        with no_grad():
            v, h2 = (draw_independent(logits, n) for logits in self.base_logits())
            for _ in range(self.sample_steps):
                v, h2, probs = self.gibbs_sweep(v, h2)
        return probs.reshape(n, *self.image_shape)

    def evaluate(self, loader) -> dict:
        """The bound of eq. (4) on the test NLL, :math:`\\overline{\\mathcal F_Q(v)} +
        \\log \\hat Z`, in nats (and bits/dim), with :math:`\\log \\hat Z` from AIS and its
        spread; with the exact log Z too when the model is small enough to enumerate."""
        free_energies, errors = [], []                      # per test example
        with no_grad():
            for x, _ in loader:
                v = self._vectors(x, "evaluate")
                a1, a2 = self.mean_field(v, self.eval_mean_field_steps, MEAN_FIELD_TOLERANCE)
                free_energies.append(self.free_energy_of(v, a1, a2))             # eq. (4)
                errors.append(self.reconstruction_error(v, a1))
            if not free_energies:
                raise ValueError("DBM.evaluate: the loader yielded no examples")
            estimate = self.log_partition()
        count = sum(len(f) for f in free_energies)
        mean_free = float(cat(free_energies).double().mean().item())
        recon = float(cat(errors).double().mean().item())
        bound = mean_free + estimate.log_z
        metrics = {"nll_upper_bound_nats": bound,
                   "bits_per_dim_upper_bound": nats_to_bits_per_dim(bound, self.num_visible),
                   "nll_upper_bound_nats_minus_3sd": mean_free + estimate.log_z_low,
                   "nll_upper_bound_nats_plus_3sd": mean_free + estimate.log_z_high,
                   "mean_variational_free_energy": mean_free, **estimate.as_dict(),
                   "reconstruction_error": recon, "num_examples": count}
        hidden = self.bottom.num_hidden, self.num_visible + self.top.num_hidden
        if min(hidden) <= EXACT_LOG_Z_MAX_UNITS:
            metrics["log_z_exact"] = self.exact_log_partition()
            metrics["nll_upper_bound_nats_exact_log_z"] = mean_free + metrics["log_z_exact"]
        return metrics

    def figures(self, x, y=None) -> dict:
        """The first layer's filters: column j of :math:`W^1` as an image, scaled to [0, 1]."""
        return {"filters": (weight_images(self.bottom.weight, self.image_shape, 100), 10)}


class DBMAnnealingPath(AnnealingPath):
    """Eq. (9): from the base-rate model with biases ``b_base`` (D,) on v and ``c2_base`` (H2,)
    on h2 to ``dbm``, over the states ``(v, h2)``."""

    def __init__(self, dbm: DBM, b_base, c2_base):
        self.dbm = dbm
        self.b_base, self.c2_base = b_base.detach(), c2_base.detach()

    def initial_state(self, runs):
        return tuple(draw_independent(base, runs) for base in (self.b_base, self.c2_base))

    def log_partition_initial(self):
        # the base model's Z times 2^H1: at beta = 0 every h1 unit contributes softplus(0)
        base = float(F.softplus(self.b_base).sum().item() + F.softplus(self.c2_base).sum().item())
        return base + self.dbm.bottom.num_hidden * math.log(2.0)

    def step(self, state, beta_from, beta_to):
        dbm, (v, h2) = self.dbm, state
        a = dbm.hidden1_logits(v, h2)
        increment = (beta_to - beta_from) * (v @ (dbm.bottom.visible_bias - self.b_base)
                                             + h2 @ (dbm.top.hidden_bias - self.c2_base)) \
            + (F.softplus(beta_to * a) - F.softplus(beta_from * a)).sum(1)       # eq. (9)
        h1 = bernoulli((beta_to * a).sigmoid())
        v = bernoulli(((1 - beta_to) * self.b_base
                       + beta_to * dbm.bottom.visible_logits(h1)).sigmoid())
        h2 = bernoulli(((1 - beta_to) * self.c2_base
                        + beta_to * dbm.top.hidden_logits(h1)).sigmoid())
        return increment, (v, h2)


# Defaults (mnist5k, batch 64, bounds from `nanogen eval`, AIS 100 x 14,500 unless noted):
# 1,000 CD-1 updates per pretraining RBM at lr 0.05, then joint updates at lr 0.05 x 0.01 with
# momentum 0.5, 5 sweeps of 100 chains, 10 mean-field updates.  12,000 steps: bound 111.6 nats
# (6,000 steps: 115.0; 12,000 with the lr decayed by a cosine: 111.4), 8-9 min on the shared
# 2-core machine.  Joint settings from 1,000 pretraining steps at lr 0.05, then 3,000 joint
# updates, scored with a short AIS (1,000 temperatures x 50 runs, which reads ~15 nats low):
# joint lr 5e-4 -> 101.8, 1e-3 -> 104.4, 2e-4 -> 106.1 (momentum 0.5); momentum 0.9 at lr 1e-3
# drove the chains into one mode and the bound up (156.5 after 1,500; pretraining at 0.02).
# 5 sweeps instead of 1: 100.5 against 105.1 after 4,500 joint updates (pretraining at 0.02
# for 2,000 steps each).  Pretraining lr 0.005 / 0.02 / 0.05: 123.0 / 109.3 / 101.8 after the
# joint phase, although the composed model before it scored 144.0 / 130.3 / 150.6.
register(ModelSpec(
    name="dbm",
    summary="deep Boltzmann machine (500-500 binary hidden units): pretrained RBMs, then "
            "mean-field + persistent chains; test NLL bound by AIS",
    build=DBM,
    steps=12_000, batch_size=64, lr=0.05, sample_every=1000, num_samples=64,
))
