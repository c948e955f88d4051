r"""Training tricks for the shared adversarial step (:mod:`.adversarial`): the pieces.

Each trick is an option of :class:`~.adversarial.AdversarialModel`, so every registered GAN takes
it on the command line as ``--arg name=value`` (values are JSON: ``--arg mixed_batches=true``).
"ganhacks" numbers refer to the list "How to train a GAN?" by Chintala, Denton, Arjovsky and
Mathieu (https://github.com/soumith/ganhacks).  All are off by default; a model with none of them
on trains exactly as it did before they existed (same random draws, same state-dict keys).

=========================  ==================================  ===================================
trick                      option(s)                           source
=========================  ==================================  ===================================
one-sided label smoothing  ``real_label=0.9``                  ganhacks #6; Salimans et al. 2016,
                                                               sec. 3.4; eq. (1)
noisy labels               ``flip_labels=0.05``                ganhacks #6 ("occasionally flip");
                                                               eq. (1)
instance noise, decayed    ``instance_noise=0.1``,             ganhacks #13 (1st bullet);
                           ``instance_noise_steps=N``          Sønderby et al. 2017; eq. (2)
noise in G's layers        ``generator_noise=0.1``             ganhacks #13 (2nd bullet); eq. (3)
experience replay          ``replay=0.5``,                     ganhacks #8; Shrivastava et al.
                           ``replay_size=1000``                2017, sec. 2.3; eq. (4)
separate real / fake       on by default; ``mixed_batches=     ganhacks #4
batches for batch norm     true`` is the alternative
SGD for D, Adam for G      ``d_optimizer=sgd``                 ganhacks #9
n_critic                   ``k=5``                             ganhacks #14 ("train D more")
two time-scale rates       ``d_lr_ratio=4``                    Heusel et al. 2017 (TTUR); eq. (7)
feature matching           ``feature_matching=true``           Salimans et al. 2016, sec. 3.1;
                                                               eq. (5)
minibatch discrimination   ``minibatch_kernels=100``,          Salimans et al. 2016, sec. 3.2;
                           ``minibatch_kernel_dim=5``          ganhacks #15; eq. (6)
=========================  ==================================  ===================================

The equations
-------------
**(1) Soft and noisy targets** (log-odds games only).  D's loss is binary cross-entropy on its
logits :math:`\ell`, with a target :math:`t` per example:

.. math:: L_D = \frac1m \sum_{\text{real}} \big[t\,\mathrm{sp}(-\ell) + (1 - t)\,\mathrm{sp}(\ell)
          \big] + \frac1m \sum_{\text{fake}} \big[t\,\mathrm{sp}(-\ell) + (1 - t)\,
          \mathrm{sp}(\ell)\big], \qquad \mathrm{sp} = \mathrm{softplus}.

Plain GAN: t = 1 on real, 0 on fake, and (1) is :math:`-V`.  One-sided smoothing sets the real
target to :math:`\alpha` = ``real_label`` (0.9), leaving the fake one at 0: smoothing the fake
target too would move the optimal :math:`D^* = (\alpha p_\text{data} + \beta p_g) / (p_\text{data}
+ p_g)` where :math:`p_\text{data}` is small, and G would get no push away from there (Salimans
et al.).  Flipping swaps each example's target for the other class's (real -> 0, fake ->
:math:`\alpha`), independently with probability ``flip_labels``.  On games on scores (least
squares, Wasserstein, hinge) there are no probability targets to move: both options raise.

**(2) Instance noise**, decayed: D sees :math:`\tilde x = x + \sigma_t \varepsilon`,
:math:`\varepsilon \sim \mathcal N(0, I)`, on real and fake inputs alike (in D's and in G's
update), with :math:`\sigma_t = \sigma_0 \max(0, 1 - t / T)` at training step t
(:func:`linear_decay`): the two distributions overlap early, so D's gradients carry
information where the supports of :math:`p_\text{data}` and :math:`p_g` do not meet (Arjovsky
& Bottou 2017; Sønderby et al. 2017), and by step T the game is the plain one.  t is a buffer
of the model (saved in checkpoints): a resumed run continues the schedule exactly.

**(3) Noise in the generator**: after every hidden activation of G, :math:`h \leftarrow h +
\sigma \varepsilon` in training mode only (:class:`GaussianNoise`; sampling and evaluation, in
eval mode, see the plain network).

**(4) Experience replay** (:class:`ReplayBuffer`): a buffer of R past fakes.  In each D update,
:math:`n = \max(1, \mathrm{round}(\rho m))` of the m fresh fakes are replaced by fakes drawn
without replacement from the buffer (while it fills, only as many as it holds), and those n
fresh fakes go into the buffer: into empty slots while there are some, then over randomly
chosen old ones (Shrivastava et al.'s "history of refined images", half a batch, :math:`\rho`
= 1/2).  D is then reminded of the generator's old modes, which it would otherwise forget while
G cycles between them.  The buffer and its fill count are buffers of the model: saved in
checkpoints, so a resumed run replays what an unbroken one would.

**(5) Feature matching**: G minimises the distance between the mean features of real and
generated data on an intermediate layer f of D (the input of its last linear layer),

.. math:: L_G = \big\| \mathbb E_x f(x) - \mathbb E_z f(G(z)) \big\|_2^2,

estimated on the step's first real minibatch (a constant: its features under ``no_grad``) and
the m fakes of G's update.  It replaces the game's generator loss; D keeps its own loss.

**(6) Minibatch discrimination** (:class:`MinibatchDiscrimination`): D's features
:math:`f(x_i) \in \mathbb R^A` are multiplied by a learned tensor :math:`T \in \mathbb R^{A
\times B \times C}`, giving rows :math:`M_{i,b} \in \mathbb R^C` for each of B kernels, and

.. math:: c_b(x_i, x_j) = \exp(-\|M_{i,b} - M_{j,b}\|_{L_1}), \qquad
          o(x_i)_b = \sum_{j \ne i} c_b(x_i, x_j),

the closeness of example i to the rest of its batch, is concatenated to :math:`f(x_i)` before
D's last linear layer.  A collapsed generator makes fakes close to each other, which D can now
see.

**(7) Two time-scale update rule**: D's learning rate is :math:`\rho` = ``d_lr_ratio`` times G's
(the run's ``--lr``); both follow the run's schedule (the loop scales each parameter group's
initial lr).  Heusel et al. prove convergence to a local Nash equilibrium when the two rates
differ in scale; SAGAN (Zhang et al. 2019) uses 4e-4 for D and 1e-4 for G, ratio 4.

**(8) Latent vector arithmetic** (Radford et al. 2016, sec. 6.3; a figure, not a trick): codes z
are sampled, G(z) classified by the shipped classifier (:mod:`nanogen.metrics.features`), and
each class k gets the mean :math:`\bar z_k` of the codes whose samples it confidently
recognises (:func:`class_mean_codes`).  A row of the figure shows :math:`G(\bar z_a)`,
:math:`G(\bar z_b)`, :math:`G(\bar z_c)`, then :math:`G(\bar z_a - \bar z_b + \bar z_c)` and
four variations of it with uniform noise of ±0.25 added to the code (as the paper's Fig. 7),
each code scaled to norm :math:`\sqrt d` first (see the deviations).

Deviations from the papers
--------------------------
* Minibatch discrimination follows the paper's formula and the authors' code in leaving
  :math:`j = i` out of the sum, without the code's weight normalisation of T, data-dependent
  initialisation and per-kernel bias (the bias is redundant before a linear layer).  T starts
  from :math:`\mathcal N(0, 0.05^2)` as in that code; the new columns of D's last linear layer
  start at 0, so a fresh D with the layer computes what it computed without.
* Feature matching uses the paper's squared norm; the authors' code takes the mean over the
  features (the same gradient direction, scaled by 1/A).
* Latent arithmetic scales every code it decodes to norm :math:`\sqrt d`, keeping its direction.
  A mean of n codes from :math:`\mathcal N(0, I_d)` has norm about :math:`\sqrt{d / n}` plus
  the class signal: it lies deep inside the shell :math:`\|z\| \approx \sqrt d` where nearly all
  codes, and all the generator was trained on, lie (ganhacks #3, a "spherical Z").  Decoded as
  they are, the means gave faint, near-empty images from a DCGAN after 400 steps (its batch
  norm in eval mode); scaled, recognisable digits.  The paper averaged only three codes per
  concept, whose mean stays nearer the shell.
* Instance noise decays linearly to 0 over ``instance_noise_steps`` (the number of steps of the
  run, which the model is not told: give it).  Flips are independent per example, so the share
  flipped is ``flip_labels`` on average whatever the batch size.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ... import functional as F
from ... import nn
from ...autograd import no_grad
from ...creation import arange, full, rand, randn_like, randperm, tensor, zeros
from ...tensor import int64
from ...utils.checks import positive_int

__all__ = ["TrainingTricks", "GaussianNoise", "ReplayBuffer", "InstanceNoise",
           "MinibatchDiscrimination", "linear_decay", "soft_label_loss", "flipped_targets",
           "add_generator_noise", "add_minibatch_discrimination", "discriminator_body",
           "feature_matching_loss", "class_mean_codes", "arithmetic_codes"]


# -- schedules ----------------------------------------------------------------------------------
def linear_decay(start: float, step: int, steps: int) -> float:
    r""":math:`\sigma_t = \sigma_0 \max(0, 1 - t / T)`: ``start`` at step 0, 0 from step
    ``steps`` on.  eq. (2)"""
    return float(start) * max(0.0, 1.0 - int(step) / int(steps))


# -- labels (ganhacks #6) -----------------------------------------------------------------------
def flipped_targets(n: int, target: float, other: float, share: float, like):
    """n targets ``target``, each replaced by ``other`` with probability ``share`` (drawn from
    the global generator); dtype and device of the Tensor ``like``."""
    targets = full((n,), float(target), dtype=like.dtype, device=like.device)
    if share == 0:
        return targets
    flips = rand(n, dtype=like.dtype, device=like.device) < share
    return F.where(flips, full((n,), float(other), dtype=like.dtype, device=like.device), targets)


def soft_label_loss(real_logits, fake_logits, real_targets, fake_targets):
    r"""Binary cross-entropy on logits with targets t (floats or (N,) Tensors), the mean over
    each batch, summed: :math:`t\,\mathrm{sp}(-\ell) + (1 - t)\,\mathrm{sp}(\ell)`.  eq. (1)"""
    def bce(logits, t):
        return (t * F.softplus(-logits) + (1.0 - t) * F.softplus(logits)).mean()
    return bce(real_logits, real_targets) + bce(fake_logits, fake_targets)       # eq. (1)


# -- noise layers (ganhacks #13) ----------------------------------------------------------------
class GaussianNoise(nn.Module):
    """``x + sigma * N(0, I)`` in training mode, ``x`` in eval mode.  eq. (3)"""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = float(sigma)

    def forward(self, x):
        if not self.training or self.sigma == 0:
            return x
        return x + self.sigma * randn_like(x)                                     # eq. (3)

    def extra_repr(self):
        return f"sigma={self.sigma}"


# the hidden activations of the backbones' generators (ReLU in DCGAN and the MLP GAN)
GENERATOR_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU)


def add_generator_noise(generator, sigma: float) -> int:
    """Put :class:`GaussianNoise` after every hidden activation of ``generator`` (each
    ``nn.ReLU`` / ``nn.LeakyReLU`` inside an ``nn.Sequential`` becomes ``Sequential(act,
    noise)``: parameter names are unchanged).  Returns how many; in place."""
    sites = [(seq, i) for seq in generator.modules() if isinstance(seq, nn.Sequential)
             for i, layer in enumerate(seq) if isinstance(layer, GENERATOR_ACTIVATIONS)]
    for seq, i in sites:
        seq[i] = nn.Sequential(seq[i], GaussianNoise(sigma))
    return len(sites)


class InstanceNoise(nn.Module):
    """Gaussian noise on D's inputs, :math:`\\sigma_t` decayed linearly from ``sigma`` to 0 over
    ``steps`` training steps; the step count ``step`` is a buffer.  eq. (2)"""

    def __init__(self, sigma: float, steps: int):
        super().__init__()
        self.start, self.steps = float(sigma), int(steps)
        self.register_buffer("step", tensor(0, dtype=int64))

    @property
    def sigma(self) -> float:
        return linear_decay(self.start, int(self.step.item()), self.steps)

    def forward(self, x):
        sigma = self.sigma
        return x if sigma == 0 else x + sigma * randn_like(x)                    # eq. (2)

    def advance(self):
        """One training step done."""
        self.step.data[...] = self.step.data + 1


# -- experience replay (ganhacks #8) ------------------------------------------------------------
class ReplayBuffer(nn.Module):
    """``capacity`` past fakes of ``sample_shape`` (buffers ``samples`` and ``count``, the slots
    filled); calling it on m fresh fakes returns them with round(``share`` m) (at least one)
    replaced by old ones, and stores the fresh ones they displaced.  eq. (4)"""

    def __init__(self, capacity: int, sample_shape, share: float):
        super().__init__()
        self.capacity, self.share = int(capacity), float(share)
        self.register_buffer("samples", zeros(self.capacity, *sample_shape))
        self.register_buffer("count", tensor(0, dtype=int64))

    def forward(self, fake):
        with no_grad():
            n = min(max(1, int(round(self.share * fake.shape[0]))), fake.shape[0])
            count = int(self.count.item())
            old = min(n, count)
            shown = fake
            if old:
                picks = randperm(count, device=fake.device)[:old]                 # eq. (4)
                shown = F.cat([self.samples[picks].to(fake.dtype), fake[old:]])
            self.store(fake[:n])
        return shown

    def store(self, fresh):
        """Put ``fresh`` into the empty slots, then over randomly chosen filled ones."""
        fresh = fresh[:self.capacity]
        count, n = int(self.count.item()), fresh.shape[0]
        into_empty = min(self.capacity - count, n)
        slots = arange(count, count + into_empty, device=fresh.device)
        if n > into_empty:
            slots = F.cat([slots, randperm(self.capacity, device=fresh.device)[:n - into_empty]])
        xp = self.samples._xp()
        self.samples.data[slots.data] = xp.asarray(fresh.data, dtype=self.samples.dtype)
        self.count.data[...] = count + into_empty


# -- minibatch discrimination (Salimans et al. 2016; ganhacks #15) ------------------------------
class MinibatchDiscrimination(nn.Module):
    """(N, A) features -> (N, A + B): the features and, per kernel b, the closeness o(x_i)_b of
    each example to the others of its batch through the learned ``weight`` T, (A, B * C).
    eq. (6)"""

    def __init__(self, in_features: int, kernels: int, kernel_dim: int = 5):
        super().__init__()
        self.in_features, self.kernels, self.kernel_dim = in_features, kernels, kernel_dim
        self.weight = nn.Parameter(zeros(in_features, kernels * kernel_dim))
        nn.init.normal_(self.weight, 0.0, 0.05)            # the authors' code: theta ~ N(0, .05²)

    def forward(self, features):
        if features.ndim != 2 or features.shape[1] != self.in_features:
            raise ValueError(f"MinibatchDiscrimination: expected features of shape (N, "
                             f"{self.in_features}), got {tuple(features.shape)}")
        n = features.shape[0]
        rows = (features @ self.weight).reshape(n, self.kernels, self.kernel_dim)  # M_{i,b}
        distance = (rows.unsqueeze(1) - rows.unsqueeze(0)).abs().sum(-1)          # (N, N, B)
        closeness = F.exp(-distance).sum(1) - 1.0          # eq. (6): c_b(x_i, x_i) = 1 left out
        return F.cat([features, closeness], 1)

    def extra_repr(self):
        return f"{self.in_features}, kernels={self.kernels}, kernel_dim={self.kernel_dim}"


def _last_linear(discriminator, option: str, owner: str):
    """D's last layer, a Linear to one output, or a ValueError naming ``option``."""
    last = discriminator[-1] if isinstance(discriminator, nn.Sequential) and \
        len(discriminator) > 1 else None
    if not isinstance(last, nn.Linear) or last.out_features != 1:
        got = type(last).__name__ if last is not None else type(discriminator).__name__
        raise ValueError(f"{owner}: {option} needs a discriminator that is an nn.Sequential "
                         f"ending in a Linear layer to one output (its input is the feature "
                         f"layer f); this one ends in {got}")
    return last


def add_minibatch_discrimination(discriminator, kernels: int, kernel_dim: int, owner: str):
    """Replace D's last Linear(A, 1) by ``Sequential(MinibatchDiscrimination(A, B, C),
    Linear(A + B, 1))``, the new linear layer keeping the old weights on f and 0 on o.  In
    place."""
    head = _last_linear(discriminator, "minibatch_kernels", owner)
    a = head.in_features
    wider = nn.Linear(a + kernels, 1, bias=head.bias is not None)
    with no_grad():
        weight = np.zeros((1, a + kernels), dtype=np.float32)
        weight[:, :a] = head.weight.detach().numpy()
        wider.weight.copy_(tensor(weight))
        if head.bias is not None:
            wider.bias.copy_(head.bias)
    discriminator[-1] = nn.Sequential(MinibatchDiscrimination(a, kernels, kernel_dim), wider)


def discriminator_body(discriminator, owner: str = "discriminator_body"):
    """The function x -> f(x): every layer of the Sequential D but its last (the linear layer,
    or the minibatch layer and linear layer, that map f to the logit)."""
    _check_body(discriminator, owner)
    layers = list(discriminator)[:-1]

    def body(x):
        for layer in layers:
            x = layer(x)
        return x
    return body


def _check_body(discriminator, owner):
    last = discriminator[-1] if isinstance(discriminator, nn.Sequential) and \
        len(discriminator) > 1 else None
    if isinstance(last, nn.Sequential) and isinstance(last[0], MinibatchDiscrimination):
        return
    _last_linear(discriminator, "feature_matching", owner)


# -- feature matching (Salimans et al. 2016) ----------------------------------------------------
def feature_matching_loss(real_features, fake_features):
    r""":math:`\| \mathrm{mean}_i f(x_i) - \mathrm{mean}_j f(G(z_j)) \|_2^2` over (N, ...)
    features (flattened per example).  eq. (5)"""
    real = real_features.reshape(real_features.shape[0], -1).mean(0)
    fake = fake_features.reshape(fake_features.shape[0], -1).mean(0)
    return ((real - fake) ** 2).sum()                                             # eq. (5)


# -- the options, checked, and the pieces they add ----------------------------------------------
def _fraction(value, low, high, what, owner, closed_high=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and \
        low < value and (value <= high if closed_high else value < high)
    if not ok:
        interval = f"({low}, {high}{']' if closed_high else ')'}"
        raise ValueError(f"{owner}: {what} must be a number in {interval}, got {value!r}")
    return float(value)


def _off(value) -> bool:
    """An option at its "off" value 0 (a bool is never a number here: it is checked, refused)."""
    return value == 0 and not isinstance(value, bool)


def _flag(value, what, owner):
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {what} must be true or false, got {value!r}")
    return value


class TrainingTricks(nn.Module):
    """The tricks the adversarial step applies (see the module docstring for each; all off by
    default).  A Module so that the state some of them keep -- the instance-noise step count,
    the replay buffer -- is part of the model's state dict and its checkpoints.

    ``real_label``: D's target for real examples, in (0.5, 1] (one-sided smoothing: 0.9).
    ``flip_labels``: the probability of flipping each of D's targets, in [0, 0.5).
    ``instance_noise``: the initial standard deviation of the noise on D's inputs (> 0),
    decayed to 0 over ``instance_noise_steps`` steps (required with it).
    ``generator_noise``: the standard deviation of the noise after every hidden activation of
    G in training (> 0).  ``replay``: the share of each D fake batch drawn from a buffer of
    ``replay_size`` old fakes, in (0, 1).  ``mixed_batches``: D sees one batch of real and fake
    examples together instead of two batches.  ``feature_matching``: G minimises eq. (5)
    instead of the game's loss.  ``minibatch_kernels`` B (> 0 to add the layer) and
    ``minibatch_kernel_dim`` C: minibatch discrimination.
    """

    def __init__(self, owner: str = "GAN", *, real_label: float | None = None,
                 flip_labels: float = 0.0, instance_noise: float = 0.0,
                 instance_noise_steps: int | None = None, generator_noise: float = 0.0,
                 replay: float = 0.0, replay_size: int = 1000, mixed_batches: bool = False,
                 feature_matching: bool = False, minibatch_kernels: int = 0,
                 minibatch_kernel_dim: int = 5):
        super().__init__()
        self.owner = owner
        self.real_label = None if real_label is None else _fraction(
            real_label, 0.5, 1.0, "real_label (D's target for real examples)", owner,
            closed_high=True)
        self.flip_labels = 0.0 if _off(flip_labels) else _fraction(
            flip_labels, 0.0, 0.5, "flip_labels (the share of D's targets flipped; 0 for none)",
            owner)
        self.instance_noise = None
        if not _off(instance_noise):
            sigma = _fraction(instance_noise, 0.0, math.inf, "instance_noise (sigma)", owner)
            if instance_noise_steps is None:
                raise ValueError(f"{owner}: instance_noise needs instance_noise_steps, the "
                                 f"number of steps over which sigma decays to 0 (e.g. the "
                                 f"run's --steps)")
            steps = positive_int(instance_noise_steps, f"{owner}: instance_noise_steps")
            self.instance_noise = InstanceNoise(sigma, steps)
        elif instance_noise_steps is not None:
            raise ValueError(f"{owner}: instance_noise_steps without instance_noise does "
                             f"nothing; give instance_noise=sigma too")
        self.generator_noise = 0.0 if _off(generator_noise) else _fraction(
            generator_noise, 0.0, math.inf, "generator_noise (sigma)", owner)
        self.replay_share = 0.0 if _off(replay) else _fraction(
            replay, 0.0, 1.0, "replay (the share of D's fakes drawn from the buffer)", owner)
        self.replay_size = positive_int(replay_size, f"{owner}: replay_size")
        self.mixed_batches = _flag(mixed_batches, "mixed_batches", owner)
        self.feature_matching = _flag(feature_matching, "feature_matching", owner)
        self.minibatch_kernels = 0 if _off(minibatch_kernels) else positive_int(
            minibatch_kernels, f"{owner}: minibatch_kernels")
        self.minibatch_kernel_dim = positive_int(minibatch_kernel_dim,
                                                 f"{owner}: minibatch_kernel_dim")
        self.replay = None                     # a ReplayBuffer once attach() knows the shape
        self.labels_applied = False            # set by discriminator_loss: the check in the step

    @property
    def moves_labels(self) -> bool:
        """Label smoothing or flipping is on."""
        return self.real_label is not None or self.flip_labels > 0

    @property
    def on(self) -> list:
        """The names of the tricks switched on."""
        return [name for name, on in (
            ("real_label", self.real_label is not None), ("flip_labels", self.flip_labels > 0),
            ("instance_noise", self.instance_noise is not None),
            ("generator_noise", self.generator_noise > 0), ("replay", self.replay_share > 0),
            ("mixed_batches", self.mixed_batches), ("feature_matching", self.feature_matching),
            ("minibatch_kernels", self.minibatch_kernels > 0)) if on]

    def attach(self, generator, discriminator, sample_shape):
        """Add the layers and buffers the options need: noise in G, the minibatch layer in D,
        the replay buffer (in place)."""
        if self.generator_noise > 0 and add_generator_noise(generator,
                                                            self.generator_noise) == 0:
            raise ValueError(f"{self.owner}: generator_noise goes after G's hidden activations "
                             f"({', '.join(t.__name__ for t in GENERATOR_ACTIVATIONS)} inside "
                             f"an nn.Sequential), and this generator has none")
        if self.minibatch_kernels:
            add_minibatch_discrimination(discriminator, self.minibatch_kernels,
                                         self.minibatch_kernel_dim, self.owner)
        if self.feature_matching:
            _check_body(discriminator, self.owner)
        if self.replay_share > 0:
            self.replay = ReplayBuffer(self.replay_size, sample_shape, self.replay_share)

    # -- what the step calls (each the identity, or the game's own loss, when its trick is off)
    def replayed(self, fake):
        """D's fake batch: with experience replay, part of it from the buffer.  eq. (4)"""
        return fake if self.replay is None else self.replay(fake)

    def noisy(self, x):
        """D's input: with instance noise, x + sigma_t * N(0, I).  eq. (2)"""
        return x if self.instance_noise is None else self.instance_noise(x)

    def discriminator_loss(self, game, real_logits, fake_logits):
        """The game's discriminator loss, or eq. (1) with smoothed / flipped targets."""
        if not self.moves_labels:
            return game.discriminator(real_logits, fake_logits)
        self.labels_applied = True
        real_label = 1.0 if self.real_label is None else self.real_label
        real_targets = flipped_targets(real_logits.shape[0], real_label, 0.0, self.flip_labels,
                                       real_logits)
        fake_targets = flipped_targets(fake_logits.shape[0], 0.0, real_label, self.flip_labels,
                                       fake_logits)
        return soft_label_loss(real_logits, fake_logits, real_targets, fake_targets)

    def advance(self):
        """One training step done (the instance-noise schedule moves on)."""
        if self.instance_noise is not None:
            self.instance_noise.advance()

    def extra_repr(self):
        return ", ".join(self.on)


# -- latent vector arithmetic (Radford et al. 2016, sec. 6.3) -----------------------------------
def class_mean_codes(codes: np.ndarray, probabilities: np.ndarray, confidence: float = 0.9,
                     min_count: int = 3) -> dict:
    r"""``{k: mean code}`` over the codes whose sample the classifier gives class k with
    probability at least ``confidence``; classes with fewer than ``min_count`` such codes are
    left out.  eq. (8)"""
    codes, probabilities = np.asarray(codes), np.asarray(probabilities)
    if codes.ndim != 2 or probabilities.ndim != 2 or len(codes) != len(probabilities):
        raise ValueError(f"class_mean_codes: expected codes (N, d) and probabilities (N, K), "
                         f"got {codes.shape} and {probabilities.shape}")
    labels, sure = probabilities.argmax(1), probabilities.max(1) >= confidence
    means = {}
    for k in range(probabilities.shape[1]):
        chosen = codes[sure & (labels == k)]
        if len(chosen) >= min_count:
            means[k] = chosen.mean(0)
    return means


def arithmetic_codes(means: dict, triplets, variations: int = 4, noise: float = 0.25,
                     rng=None, radius: float | None = None) -> np.ndarray:
    r"""For each (a, b, c) of ``triplets``: the codes :math:`\bar z_a, \bar z_b, \bar z_c,
    r = \bar z_a - \bar z_b + \bar z_c` and ``variations`` codes r + U(-noise, noise)^d, one row
    of the figure each: (len(triplets) * (4 + variations), d).  With ``radius``, every code is
    then scaled to that norm (its direction kept).  eq. (8)"""
    rng = np.random.default_rng(0) if rng is None else rng
    rows = []
    for a, b, c in triplets:
        result = means[a] - means[b] + means[c]                                  # eq. (8)
        jitter = rng.uniform(-noise, noise, (variations, len(result)))
        rows.append(np.concatenate([np.stack([means[a], means[b], means[c], result]),
                                    result + jitter]))
    codes = np.concatenate(rows)
    if radius is not None:
        codes = codes * (radius / np.maximum(np.linalg.norm(codes, axis=1, keepdims=True),
                                             1e-12))
    return codes.astype(np.float32)
