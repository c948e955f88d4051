r"""InfoGAN (Chen, Duan, Houthooft, Schulman, Sutskever & Abbeel 2016): a GAN whose generator is
made to keep a few of its inputs, the latent codes c, readable in its samples.

The generator reads noise z and codes c: one categorical code of K = 10 categories (as a one-hot
vector) and M = 2 continuous codes,

.. math:: x = G(z, c), \qquad z \sim \mathcal N(0, I_{62}), \quad
          c_1 \sim \mathrm{Cat}(K), \quad c_2, \dots, c_{M+1} \sim U(-1, 1).             \tag{1}

Nothing in the GAN game stops G from ignoring c.  InfoGAN adds the mutual information
:math:`I(c; G(z, c))` to the game (paper eq. 3),
:math:`\min_G \max_D V(D, G) - \lambda I(c; G(z, c))`, and since the posterior
:math:`p(c \mid x)` is out of reach, a variational lower bound of it with an approximate
posterior Q (eq. 5, Lemma 5.1):

.. math:: L_I(G, Q) = \mathbb E_{c \sim p(c),\, x \sim G(z, c)} \log Q(c \mid x) + H(c)
          \;\le\; I(c; G(z, c)),                                                       \tag{2}

tight when Q is the true posterior.  The game becomes (eq. 6)
:math:`\min_{G, Q} \max_D V(D, G) - \lambda L_I(G, Q)`.  Q is a head on the discriminator's body
(one more small layer and the outputs below), so it costs a few matrix products.  Per code:

* categorical: Q gives K logits, :math:`\log Q(c_1 \mid x) = \log\operatorname{softmax}(\ell)_{c_1}`
  and :math:`H(c_1) = \log K`, so

  .. math:: L_I^\text{cat} = \log K - \mathrm{CE}(\ell, c_1) \;\le\; \log K,            \tag{3}

  (the cross-entropy is non-negative): the bound lies in :math:`(-\infty, \log K]` and reaches
  :math:`\log K` when Q reads the category off every sample with certainty;
* continuous: Q gives the mean :math:`\mu_j(x)` of a factored Gaussian, with a fixed
  :math:`\sigma = 1` (the authors' MNIST code, ``Uniform(1, fix_std=True)``) or a learned
  :math:`\log \sigma_j(x)` (``learn_std=True``), and :math:`H(U(-1, 1)) = \log 2`:

  .. math:: L_I^\text{cont} = \sum_j \mathbb E\Big[-\frac{(c_j - \mu_j)^2}{2 \sigma_j^2}
            - \log \sigma_j - \tfrac12 \log 2\pi\Big] + M \log 2.                     \tag{4}

  A differential entropy: this bound is not capped by :math:`\log 2` per code.

The losses (minimised), with :math:`\lambda_\text{cat}` = ``lambda_categorical`` and
:math:`\lambda_\text{cont}` = ``lambda_continuous``:

.. math:: \text{loss}_{D,Q} = \text{game}_D - \lambda_\text{cat} L_I^\text{cat}
                              - \lambda_\text{cont} L_I^\text{cont}, \qquad
          \text{loss}_G = \text{game}_G - \lambda_\text{cat} L_I^\text{cat}
                          - \lambda_\text{cont} L_I^\text{cont}.                       \tag{5}

**Who learns Q.** Q's layers sit inside the discriminator module, so the discriminator's update
trains them (and the shared body) on the bound, on that update's fakes; the generator's update
pushes G to make its codes readable through the frozen D and Q.  That is the authors' released
code (the MI estimate is subtracted from both the discriminator's and the generator's loss, and
Q's variables are the discriminator's); the paper's eq. 6 lists Q with G.

**Defaults and their sources.**  :math:`\lambda_\text{cat} = 1` (the paper's, for discrete
codes) and :math:`\lambda_\text{cont} = 1` with a fixed :math:`\sigma = 1` (the released MNIST
experiment: ``info_reg_coeff=1.0``, ``fix_std=True``; with a fixed σ the continuous term is a
squared error on the scale of the GAN losses, which is why the paper's "smaller λ for continuous
codes" is not needed here); 62 noise dimensions, 10 categories, 2 continuous codes; Q's hidden
layer of 128 units with LeakyReLU(0.2) (the paper's Table 1).

**What is logged**: ``mi_categorical`` (eq. 3, nats, at most log K) and ``mi_continuous``
(eq. 4), the bound on the generator update's fakes.  :meth:`InfoGAN.figures`: the latent
traversals (one grid per continuous code, each row a category, the columns sweeping the code from
-2 to 2, the other codes and the noise fixed) and a grid of each category.
:meth:`InfoGAN.evaluate`: how well the categorical code predicts the shipped classifier's digit
(:func:`code_accuracy`: K x 10 counts, the best one-to-one matching of categories to digits).

**Deviations from the paper.**  The networks are the DCGAN backbone of the whole GAN zoo, not the
paper's MNIST networks (which had a 1024-unit fully connected layer in both G and D); Q's hidden
layer has no batch norm (so that a gradient penalty can be used with the model); the noise z is
Gaussian rather than the released code's U(-1, 1); and both players use Adam(2e-4, 0.5, 0.999),
DCGAN's, where the paper's MNIST run used 1e-3 for G.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ... import functional as F
from ... import nn
from ...autograd import no_grad
from ...creation import rand, randint, tensor, zeros
from ...tensor import Tensor
from ...utils.checks import positive_int
from ..registry import ModelSpec, register
from .conditional import (AuxiliaryHeadGAN, TwoHeadDiscriminator, backbone_options,
                          discriminator_network, generator_network)
from .dcgan import radford_init_

__all__ = ["InfoGAN", "Codes", "information_bound", "best_matching", "code_accuracy"]


class Codes(NamedTuple):
    """InfoGAN's latent codes for N samples: ``categories`` (N,) ints in [0, K) and
    ``continuous`` (N, M) values (drawn from U(-1, 1))."""

    categories: Tensor
    continuous: Tensor


class CodedGenerator(nn.Module):
    """G(z, c) = net([z, onehot(c_1), c_2..c_{M+1}]), eq. (1)."""

    def __init__(self, net, num_categories: int):
        super().__init__()
        self.net, self.num_categories = net, num_categories

    def forward(self, z, codes: Codes):
        onehot = F.one_hot(codes.categories, self.num_categories).to(z.dtype)
        return self.net(F.cat([z, onehot, codes.continuous.to(z.dtype)], 1))


def information_bound(q_outputs, codes: Codes, num_categories: int, learn_std: bool = False):
    r"""``(L_cat, L_cont)``: the lower bounds (2) on the mutual information of each kind of code,
    eqs. (3) and (4), batch means in nats, from Q's outputs (N, K + M) -- K category logits and
    M means -- or (N, K + 2M) with M log-standard-deviations after the means (``learn_std``)."""
    k, m = num_categories, codes.continuous.shape[1]
    width = k + (2 * m if learn_std else m)
    if q_outputs.ndim != 2 or q_outputs.shape[1] != width:
        raise ValueError(f"information_bound: expected Q's outputs of shape (N, {width}) for "
                         f"{k} categories and {m} continuous codes, got {tuple(q_outputs.shape)}")
    logits, mean = q_outputs[:, :k], q_outputs[:, k:k + m]
    categorical = math.log(k) - F.cross_entropy(logits, codes.categories)          # eq. (3)
    if m == 0:
        return categorical, q_outputs.sum() * 0.0
    c = codes.continuous.to(q_outputs.dtype)
    if learn_std:
        log_std = q_outputs[:, k + m:]
        log_q = -0.5 * ((c - mean) * (-log_std).exp()) ** 2 - log_std               # eq. (4)
    else:
        log_q = -0.5 * (c - mean) ** 2                                              # sigma = 1
    log_q = log_q - 0.5 * math.log(2 * math.pi)
    continuous = log_q.sum(dim=1).mean() + m * math.log(2.0)                        # + H(c)
    return categorical, continuous


def best_matching(counts):
    """``(pairs, matched)``: the one-to-one matching of rows to columns of a non-negative count
    matrix (R, C) with the largest total count (the Hungarian algorithm, scipy's
    ``linear_sum_assignment``): ``pairs`` a list of min(R, C) (row, column) pairs, ``matched``
    their total."""
    from scipy.optimize import linear_sum_assignment
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.size == 0 or not np.isfinite(counts).all():
        raise ValueError(f"best_matching: expected a non-empty finite 2-D count matrix, got "
                         f"shape {counts.shape}")
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols)], counts[rows, cols].sum()


def code_accuracy(model, per_category: int = 100, seed: int = 0) -> dict:
    """How well InfoGAN's categorical code predicts the digit the shipped classifier sees:
    ``per_category`` samples of each category (the other codes and the noise drawn under
    ``seed``, on a forked stream), classified by the LeNet of
    :func:`nanogen.metrics.class_probabilities`; the K x 10 counts of (category, digit); the
    best one-to-one matching of categories to digits (:func:`best_matching`).  Returns
    ``code_accuracy`` (the share of samples whose digit is their category's match: 1 for codes
    that are the digits, about 0.1 for codes that ignore them), ``num_code_samples`` and
    ``code_digits`` (category k's digit, -1 if unmatched)."""
    from ... import random as ng_random
    from ...metrics.features import class_probabilities
    per_category = positive_int(per_category, "code_accuracy: per_category")
    k = model.num_categories
    categories = np.repeat(np.arange(k), per_category)
    was_training = model.training
    model.eval()
    try:
        with ng_random.fork_rng(seed), no_grad():
            samples = np.concatenate([model.sample(per_category, categories=tensor(
                categories[i:i + per_category])).numpy() for i in range(0, len(categories),
                                                                         per_category)])
    finally:
        model.train(was_training)
    digits = class_probabilities(samples, what="InfoGAN's samples").argmax(1)
    counts = np.zeros((k, 10), dtype=np.int64)
    np.add.at(counts, (categories, digits), 1)
    pairs, matched = best_matching(counts)
    code_digits = [-1] * k
    for category, digit in pairs:
        code_digits[category] = digit
    return {"code_accuracy": float(matched / len(categories)),
            "num_code_samples": int(len(categories)), "code_digits": code_digits}


class InfoGAN(AuxiliaryHeadGAN):
    """InfoGAN (eqs. 1-5) on images ``image_shape`` (C, H, W): ``latent_dim`` noise dimensions,
    a categorical code of ``num_categories`` and ``num_continuous`` codes in U(-1, 1).

    DCGAN's networks (``channels``, ``critic_norm``); Q is a head on the discriminator's body
    (``q_hidden`` units, LeakyReLU(0.2), then the categorical logits and the Gaussian means,
    plus their log standard deviations when ``learn_std``).  ``lambda_categorical`` and
    ``lambda_continuous`` weight the bounds (3) and (4).  ``loss`` and the other keywords
    (penalty, weight_clip, spectral_norm, optimizer, betas) choose the game:
    :class:`~.adversarial.AdversarialModel`.  ``num_classes`` is accepted for the common model
    interface and not used: the model is unsupervised.
    """

    traversal_steps = 10          # figures(): columns of a traversal, from -2 to 2
    traversal_range = 2.0

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, latent_dim: int = 62,
                 num_categories: int = 10, num_continuous: int = 2, channels=None,
                 critic_norm=None, q_hidden: int = 128, lambda_categorical: float = 1.0,
                 lambda_continuous: float = 1.0, learn_std: bool = False,
                 loss: str = "non-saturating", k=None, **game):
        name = type(self).__name__
        shape = tuple(image_shape)
        if len(shape) != 3:
            raise ValueError(f"{name} models images: image_shape must be (C, H, W), got "
                             f"{image_shape!r}")
        num_categories = positive_int(num_categories, f"{name}: num_categories")
        if num_categories < 2:
            raise ValueError(f"{name}: num_categories must be at least 2, got {num_categories}")
        if isinstance(num_continuous, bool) or not isinstance(num_continuous, (int, np.integer)) \
                or num_continuous < 0:
            raise ValueError(f"{name}: num_continuous must be an int >= 0, got "
                             f"{num_continuous!r}")
        q_hidden = positive_int(q_hidden, f"{name}: q_hidden")
        for label, weight in (("lambda_categorical", lambda_categorical),
                              ("lambda_continuous", lambda_continuous)):
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise ValueError(f"{name}: {label} must be a number >= 0, got {weight!r}")
        options = backbone_options(shape, name, latent_dim=latent_dim, channels=channels,
                                   critic_norm=critic_norm, k=k)
        d, m = options["latent_dim"], int(num_continuous)
        generator = CodedGenerator(generator_network(shape, d + num_categories + m, options),
                                   num_categories)
        body, head = discriminator_network(shape, 0, options)
        q = radford_init_(nn.Sequential(
            nn.Linear(head.in_features, q_hidden), nn.LeakyReLU(0.2),
            nn.Linear(q_hidden, num_categories + (2 * m if learn_std else m))))
        super().__init__(generator, TwoHeadDiscriminator(body, head, q), latent_dim=d,
                         sample_shape=shape, loss=loss, k=options["k"], **game)
        self.num_classes = num_classes
        self.num_categories, self.num_continuous = num_categories, m
        self.lambda_categorical = float(lambda_categorical)
        self.lambda_continuous = float(lambda_continuous)
        self.learn_std = bool(learn_std)
        self.backbone = options
        if getattr(getattr(self, "tricks", None), "mixed_batches", False):
            raise ValueError(f"{name}: mixed_batches joins the real labels and the fakes' "
                             f"condition into one batch for D, and InfoGAN's condition is its "
                             f"latent codes, not labels; train it with separate batches")

    def training_step(self, batch, optimizers) -> dict:
        """The shared step (:mod:`.adversarial`) on the images of ``batch = (x, y)``: the
        labels are dropped (InfoGAN is unsupervised; its codes find the classes or not)."""
        x, _ = batch
        return super().training_step((x, None), optimizers)

    # -- the codes -------------------------------------------------------------------------------
    def sample_condition(self, n: int, labels=None):
        """Fresh codes c ~ p(c) for n fakes, eq. (1); the dataset's labels are not used."""
        device = self._device()
        return Codes(randint(0, self.num_categories, (int(n),), device=device),
                     rand(int(n), self.num_continuous, device=device) * 2.0 - 1.0)

    def generate(self, z, condition=None):
        """G(z, c), eq. (1), for codes ``condition`` (:class:`Codes`); fresh codes if None."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"{type(self).__name__}.generate: expected codes of shape (N, "
                             f"{self.latent_dim}), got {tuple(z.shape)}")
        codes = self.sample_condition(z.shape[0]) if condition is None else condition
        if tuple(codes.continuous.shape) != (z.shape[0], self.num_continuous) or \
                tuple(codes.categories.shape) != (z.shape[0],):
            raise ValueError(f"{type(self).__name__}.generate: expected {z.shape[0]} categories "
                             f"and ({z.shape[0]}, {self.num_continuous}) continuous codes, got "
                             f"{tuple(codes.categories.shape)} and "
                             f"{tuple(codes.continuous.shape)}")
        return self.generator(z, codes)

    def information(self, x, codes: Codes):
        """``(L_cat, L_cont)``, eqs. (3)-(4), of Q on samples x made from ``codes``."""
        return information_bound(self.auxiliary(x), codes, self.num_categories, self.learn_std)

    def _with_information(self, loss, q_outputs, codes):
        categorical, continuous = information_bound(q_outputs, codes, self.num_categories,
                                                    self.learn_std)
        loss = loss - self.lambda_categorical * categorical \
            - self.lambda_continuous * continuous                                   # eq. (5)
        return loss, {"mi_categorical": float(categorical.item()),
                      "mi_continuous": float(continuous.item())}

    # -- the losses --------------------------------------------------------------------------------
    def discriminator_loss(self, real, labels, fake, condition):
        """Eq. (5), D and Q's side: the game's loss (and penalty) minus the weighted bounds on
        this update's fakes.  Adds no logs (the bound is logged by the generator's update)."""
        with self.auxiliary_outputs() as q:
            loss, logs = super().discriminator_loss(real, labels, fake, condition)
            loss, _ = self._with_information(loss, q(fake), condition)
        return loss, logs

    def generator_loss(self, fake, condition):
        """Eq. (5), G's side: the game's generator loss minus the weighted bounds, through the
        frozen D and Q; logs ``mi_categorical`` and ``mi_continuous``."""
        with self.auxiliary_outputs() as q:
            loss, logs = super().generator_loss(fake, condition)
            loss, info = self._with_information(loss, q(fake), condition)
        return loss, {**logs, **info}

    # -- using a trained model ---------------------------------------------------------------------
    def sample(self, n: int, y=None, categories=None):
        """n samples of G(z, c), z ~ N(0, I), c ~ p(c) -- with the categorical code fixed to
        ``categories`` (n,) when given: images (n, C, H, W) in [0, 1]."""
        name = type(self).__name__
        if y is not None:
            raise ValueError(f"{name}.sample: the model is unsupervised and takes no labels y; "
                             f"its categorical code is `categories`")
        n = positive_int(n, f"{name}.sample: n")
        codes = self.sample_condition(n)
        if categories is not None:
            from ..base import check_labels
            codes = codes._replace(categories=check_labels(
                categories, n, self.num_categories, f"{name}.sample (categories)").to(
                    self._device()))
        with no_grad():
            return self._to_data_range(self.generate(self.sample_latents(n), codes))

    def traversal(self, code: int, z=None):
        """The latent traversal of continuous code ``code`` (0-based): one row per category,
        ``traversal_steps`` columns sweeping the code from -2 to 2, the other continuous codes
        at 0 and the noise ``z`` (1, latent_dim) -- by default one draw -- shared by the whole
        grid.  (K * steps, C, H, W) in [0, 1]."""
        if not 0 <= code < self.num_continuous:
            raise ValueError(f"{type(self).__name__}.traversal: code must be in [0, "
                             f"{self.num_continuous}), got {code!r}")
        k, steps, device = self.num_categories, self.traversal_steps, self._device()
        z = self.sample_latents(1) if z is None else z
        continuous = np.zeros((k * steps, self.num_continuous), np.float32)
        continuous[:, code] = np.tile(np.linspace(-self.traversal_range, self.traversal_range,
                                                  steps, dtype=np.float32), k)
        codes = Codes(tensor(np.repeat(np.arange(k), steps), device=device),
                      tensor(continuous, device=device))
        with no_grad():
            return self._to_data_range(self.generate(z.expand(k * steps, self.latent_dim),
                                                     codes))

    def figures(self, x=None, y=None) -> dict:
        """``traversal_c<j>`` for each continuous code j = 1..M (:meth:`traversal`, one noise
        draw for all of them), and ``categories``: ten samples of each category, one row per
        category, the continuous codes at 0 and the noise of column j shared down the column."""
        k, columns, device = self.num_categories, 10, self._device()
        z = self.sample_latents(1)
        figures = {f"traversal_c{j + 1}": (self.traversal(j, z), self.traversal_steps)
                   for j in range(self.num_continuous)}
        noise = self.sample_latents(columns).repeat(k, 1)
        codes = Codes(tensor(np.repeat(np.arange(k), columns), device=device),
                      zeros(k * columns, self.num_continuous, device=device))
        with no_grad():
            figures["categories"] = (self._to_data_range(self.generate(noise, codes)), columns)
        return figures

    def evaluate(self, loader) -> dict:
        """:func:`code_accuracy` of 100 samples per category (with more than ten categories,
        only ten can be matched to the classifier's ten digits; the others count as misses)."""
        return code_accuracy(self, per_category=100)


register(ModelSpec(
    name="infogan", build=InfoGAN, steps=1500, batch_size=64, lr=2e-4, sample_every=500,
    summary="InfoGAN (Chen et al.): a 10-way categorical and 2 continuous codes beside z, a Q head "
            "on D's body, the mutual-information lower bound (lambda 1) maximised by G and Q; "
            "latent traversal grids, and how well the category predicts the classifier's digit; "
            "DCGAN backbone"))
