r"""Class-conditional GANs: CGAN (Mirza & Osindero 2014) and AC-GAN (Odena, Olah & Shlens 2017).

Both draw a sample of a requested class :math:`y \in \{0, \dots, K-1\}`: the generator reads
the label beside its code, :math:`G(z, y)`, through a learned embedding :math:`E` of the label
(ganhacks #16),

.. math:: G(z, y) = G\big([z,\; E_y]\big), \qquad z \sim \mathcal N(0, I_d),
          \quad E \in \mathbb R^{K \times e}.                                          \tag{1}

They differ in how the discriminator learns the class.

**CGAN** (Mirza & Osindero, eq. 2): the discriminator is told the label too, and both players
play the GAN game conditioned on it,

.. math:: \min_G \max_D\; \mathbb E_{(x, y) \sim p_\text{data}} \log D(x \mid y)
          + \mathbb E_{z,\, y} \log\big(1 - D(G(z, y) \mid y)\big).                   \tag{2}

The label enters D as its one-hot vector :math:`e_y`: for images, K constant channels beside
the image (channel k is 1 everywhere when y = k: ganhacks #16's "embed the label as extra
channels"); for 2-D points, K features beside the point,

.. math:: D(x \mid y) = D\big([x,\; e_y \mathbf 1_{H \times W}]\big) \;\text{(images)},
          \qquad D\big([x,\; e_y]\big) \;\text{(points)}.                              \tag{3}

A D that ignored y could not tell a real "3" from a convincing fake "3" requested as a "7", so
G must obey its label to fool it.  The game, its losses and any constraint on D (a gradient
penalty, clipping, spectral norm) are the shared step's (:mod:`.adversarial`).

**AC-GAN** (Odena et al., eqs. 2-3): the discriminator is not told the label; it has two heads on
one body, the source :math:`S` (real or fake: the game's logit) and the class :math:`C` (K logits,
softmax),

.. math:: L_S = \mathbb E \log P(S = \text{real} \mid X_\text{real})
              + \mathbb E \log P(S = \text{fake} \mid X_\text{fake}),                  \tag{4}

.. math:: L_C = \mathbb E \log P(C = y \mid X_\text{real})
              + \mathbb E \log P(C = y \mid X_\text{fake}),                            \tag{5}

D maximises :math:`L_S + L_C`, G maximises :math:`L_C - L_S`.  As losses to minimise (the game's
losses standing for :math:`-L_S` and G's non-saturating version of it):

.. math:: \text{loss}_D = \text{game}_D + \mathrm{CE}(C(x), y) + \mathrm{CE}(C(G(z, y)), y),
          \qquad
          \text{loss}_G = \text{game}_G + \mathrm{CE}(C(G(z, y)), y),                  \tag{6}

each cross-entropy a batch mean (weight ``class_weight`` = 1, the paper's).  The body runs once
per batch: the class logits come from the same forward pass as the source logit
(:class:`AuxiliaryHeadGAN`).

Training (both): each discriminator update generates the fakes *of the real minibatch's labels*
(so the classes of real and fake batches match, and a gradient penalty interpolates between a
real example and a fake of the same class); the generator update uses the labels of the first
minibatch, the data's class frequencies.  A dataset without labels (an unlabelled image folder,
the swiss roll: one class) is refused when the model is built; a batch without labels is refused
by :meth:`~ClassConditionalGAN.training_step`.

Samples: :meth:`~ClassConditionalGAN.sample` ``(n, y)``; without ``y`` the classes in turn
(0, 1, ..., K-1, 0, ...).  ``nanogen eval`` reports, besides FID / KID / IS, how often the shipped
classifier recognises the requested class in 1,000 samples
(:func:`nanogen.metrics.conditional_accuracy`); on 2-D points, mode coverage and the share of
samples nearest to the requested class's mode.

**Deviations from the papers.**  Both use the DCGAN backbone on images (and the MLP GAN's on
2-D points) so that every loss of the zoo shares the same networks: Mirza & Osindero's MNIST model
was an MLP with maxout units that mapped z and y through separate hidden layers before joining
them; Odena et al.'s generator multiplied z by a class embedding and its networks were deeper.
The label reaches G through a learned embedding (width ``label_dim``, default K) rather than a
one-hot vector.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ... import functional as F
from ... import nn
from ...autograd import no_grad
from ...creation import arange, tensor
from ...data import DatasetError
from ...utils.checks import positive_int
from ..base import check_channels, check_halvings, check_labels
from ..registry import ModelSpec, register
from .adversarial import AdversarialModel
from .dcgan import dcgan_discriminator, dcgan_generator, radford_init_
from .gan import POINT_BACKBONE, POINT_DEFAULTS, check_sample_shape, mlp

__all__ = ["CGAN", "ACGAN", "ClassConditionalGAN", "AuxiliaryHeadGAN", "backbone_options",
           "generator_network", "discriminator_network"]

# the DCGAN backbone's defaults on images (dcgan.py), the MLP GAN's on points (gan.py)
_IMAGE_DEFAULTS = {"latent_dim": 100, "channels": (64, 128), "critic_norm": "batch", "k": 1}


def backbone_options(image_shape, name: str, **given) -> dict:
    """The backbone's options for ``image_shape``: ``given`` (None = the default) over DCGAN's
    defaults for (C, H, W) images or the MLP GAN's for (D,) points.  The options of the other
    kind (``hidden``, ``dropout``, ``batch_norm`` for images; ``channels``, ``critic_norm``
    for points) are dropped, as :func:`.games.backbone` drops them."""
    shape = check_sample_shape(image_shape, name)
    defaults = _IMAGE_DEFAULTS if len(shape) == 3 else POINT_BACKBONE
    options = {key: given[key] if given.get(key) is not None else value
               for key, value in defaults.items()}
    options["latent_dim"] = positive_int(options["latent_dim"], f"{name}: latent_dim")
    if len(shape) == 3:
        options["channels"] = check_channels(options["channels"])
        check_halvings(shape, len(options["channels"]), name)
    else:
        hidden = tuple(options["hidden"])
        if not hidden or not all(isinstance(h, (int, np.integer)) and h > 0 for h in hidden):
            raise ValueError(f"{name}: hidden must be a non-empty sequence of positive ints, "
                             f"got {options['hidden']!r}")
        options["hidden"] = hidden
    return options


def generator_network(sample_shape, input_dim: int, options: dict):
    """G's network from (N, input_dim) inputs: DCGAN's generator for images (Radford init),
    the MLP GAN's for points."""
    if len(sample_shape) == 3:
        return radford_init_(dcgan_generator(input_dim, tuple(sample_shape), options["channels"]))
    return nn.Sequential(*mlp((input_dim, *options["hidden"], sample_shape[0]), nn.ReLU,
                              batch_norm=options["batch_norm"]))


def _leaky_relu():
    return nn.LeakyReLU(0.2)


def discriminator_network(sample_shape, extra: int, options: dict):
    """``(body, head)``: D's network for samples with ``extra`` more channels (images) or
    features (points), split before its last linear layer -- the body maps a sample to
    ``head.in_features`` features, the head those to one logit.  DCGAN's discriminator for
    images (Radford init), the MLP GAN's for points."""
    if len(sample_shape) == 3:
        c, h, w = sample_shape
        net = radford_init_(dcgan_discriminator((c + extra, h, w), options["channels"],
                                                norm=options["critic_norm"]))
        return net[:-1], net[-1]
    layers = mlp((sample_shape[0] + extra, *reversed(options["hidden"]), 1), _leaky_relu,
                 options["dropout"])
    return nn.Sequential(*layers[:-1]), layers[-1]


# -- the networks' label inputs --------------------------------------------------------------------
class LabelledGenerator(nn.Module):
    """G(z, y) = net([z, E_y]), eq. (1): the embedding is G's parameter."""

    def __init__(self, net, num_classes: int, label_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(num_classes, label_dim)
        self.net = net

    def forward(self, z, labels):
        return self.net(F.cat([z, self.embedding(labels).to(z.dtype)], 1))      # eq. (1)


def label_maps(x, labels, num_classes: int):
    """The one-hot labels as extra inputs of x: K constant channels (N, K, H, W) for images,
    K features (N, K) for points, in x's dtype and on its device."""
    onehot = F.one_hot(labels, num_classes).to(x.dtype)
    if x.ndim == 4:
        n, _, h, w = x.shape
        onehot = onehot.reshape(n, num_classes, 1, 1).expand(n, num_classes, h, w)
    return onehot


class LabelledDiscriminator(nn.Module):
    """D(x | y) = net([x, e_y]), eq. (3): the one-hot label as constant channels or features."""

    def __init__(self, body, head, num_classes: int):
        super().__init__()
        self.body, self.head, self.num_classes = body, head, num_classes

    def forward(self, x, labels):
        return self.head(self.body(F.cat([x, label_maps(x, labels, self.num_classes)], 1)))


class TwoHeadDiscriminator(nn.Module):
    """One body, two heads: ``forward(x)`` is ``(head(f), auxiliary(f))`` for ``f = body(x)``
    -- the source logit and AC-GAN's class logits or InfoGAN's Q."""

    def __init__(self, body, head, auxiliary):
        super().__init__()
        self.body, self.head, self.auxiliary = body, head, auxiliary

    def forward(self, x):
        features = self.body(x)
        return self.head(features), self.auxiliary(features)


# -- the shared pieces -------------------------------------------------------------------------
class AuxiliaryHeadGAN(AdversarialModel):
    """A GAN whose discriminator is a :class:`TwoHeadDiscriminator`: :meth:`discriminate`
    returns the source logits and, inside :meth:`auxiliary_outputs`, keeps the auxiliary
    head's outputs of the same forward pass, so that a loss adding a term on them (AC-GAN's
    classes, InfoGAN's codes) runs the body once per batch."""

    _kept = None

    def discriminate(self, x, condition=None):
        """The source logits (N,); the auxiliary head ignores ``condition`` (D is not told
        the class or the code)."""
        self._check_samples(x, "discriminate")
        logits, auxiliary = self.discriminator(x)
        if self._kept is not None:
            self._kept.append((x, auxiliary))
        return logits.reshape(x.shape[0])

    def auxiliary(self, x):
        """The auxiliary head's outputs on samples x (a forward pass of its own)."""
        self._check_samples(x, "auxiliary")
        return self.discriminator(x)[1]

    @contextmanager
    def auxiliary_outputs(self):
        """Inside the block :meth:`discriminate` keeps what its auxiliary head gave; the block
        gets ``lookup(x)``: those outputs for the very tensor x it was called on, else (a trick
        replaced the input on its way) a forward pass of its own."""
        self._kept = kept = []

        def lookup(x):
            for seen, auxiliary in kept:
                if seen is x:
                    return auxiliary
            return self.auxiliary(x)
        try:
            yield lookup
        finally:
            self._kept = None


class ClassConditionalGAN(AdversarialModel):
    """What CGAN and AC-GAN share: the backbone (:func:`backbone_options`), a
    :class:`LabelledGenerator`, labels required in training, ``sample(n, y)``, a class grid,
    and the conditional accuracy in :meth:`evaluate`.  A subclass builds its discriminator in
    :meth:`build_discriminator`.

    Images: DCGAN's networks (``channels``, ``critic_norm``; defaults (64, 128), batch norm),
    points: the MLP GAN's (``hidden``, ``dropout``, ``batch_norm``); ``latent_dim`` and ``k``
    default per kind as theirs (images: 100 and 1; points: 2 and 2).  ``label_dim`` is the width
    of G's label embedding (default ``num_classes``).  ``loss`` and the other keywords (penalty,
    weight_clip, spectral_norm, optimizer, betas, the tricks) choose the game:
    :class:`~.adversarial.AdversarialModel`."""

    conditional = True

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, latent_dim=None,
                 label_dim=None, channels=None, critic_norm=None, hidden=None, dropout=None,
                 batch_norm=None, loss: str = "non-saturating", k=None, **game):
        name = type(self).__name__
        num_classes = self._check_num_classes(num_classes)
        options = backbone_options(image_shape, name, latent_dim=latent_dim, channels=channels,
                                   critic_norm=critic_norm, hidden=hidden, dropout=dropout,
                                   batch_norm=batch_norm, k=k)
        shape, d = tuple(image_shape), options["latent_dim"]
        label_dim = num_classes if label_dim is None else positive_int(label_dim,
                                                                       f"{name}: label_dim")
        generator = LabelledGenerator(generator_network(shape, d + label_dim, options),
                                      num_classes, label_dim)
        super().__init__(generator, self.build_discriminator(shape, num_classes, options),
                         latent_dim=d, sample_shape=shape, loss=loss, k=options["k"], **game)
        self.num_classes, self.label_dim = num_classes, label_dim
        self.backbone = options

    def build_discriminator(self, sample_shape, num_classes: int, options: dict):
        """D for samples of ``sample_shape`` and ``num_classes`` labels, on the backbone
        ``options``."""
        raise NotImplementedError

    def _check_num_classes(self, num_classes):
        name = type(self).__name__
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
                or num_classes < 2:
            raise DatasetError(f"{name} is class-conditional and needs a labelled dataset with "
                               f"at least 2 classes; got num_classes = {num_classes!r} (an "
                               f"unlabelled image folder, or the swiss roll, has one): train an "
                               f"unconditional GAN (dcgan, gan) on it instead")
        return int(num_classes)

    def training_step(self, batch, optimizers) -> dict:
        """The shared step (:mod:`.adversarial`) on a labelled batch ``(x, y)``."""
        x, y = batch
        y = check_labels(y, x.shape[0], self.num_classes, f"{type(self).__name__}.training_step")
        return super().training_step((x, y.to(x.device)), optimizers)

    def sample_condition(self, n: int, labels=None):
        """The labels of the real minibatch (checked by :meth:`training_step`): G draws fakes
        of the same classes."""
        if labels is None or len(labels) != n:
            raise ValueError(f"{type(self).__name__}.training_step: this model is class-"
                             f"conditional; each minibatch needs its {n} labels")
        return labels

    def generate(self, z, condition=None):
        """G(z, y) (eq. 1) for labels ``condition`` (N,)."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"{type(self).__name__}.generate: expected codes of shape (N, "
                             f"{self.latent_dim}), got {tuple(z.shape)}")
        if condition is None:
            raise ValueError(f"{type(self).__name__}.generate: this model is class-"
                             f"conditional; pass the labels")
        return self.generator(z, condition)

    def sample(self, n: int, y=None):
        """n samples of G(z, y), z ~ N(0, I), for the labels ``y`` (n,) -- by default the
        classes in turn, 0, 1, ..., K-1, 0, ...: images in [0, 1] or points."""
        name = type(self).__name__
        n = positive_int(n, f"{name}.sample: n")
        if y is None:
            y = arange(n) % self.num_classes
        labels = check_labels(y, n, self.num_classes, f"{name}.sample").to(self._device())
        with no_grad():
            return self._to_data_range(self.generate(self.sample_latents(n), labels))

    def class_grid(self, per_class: int = 10):
        """``per_class`` samples of every class: row k of a grid ``per_class`` wide is class k."""
        per_class = positive_int(per_class, f"{type(self).__name__}.class_grid: per_class")
        return self.sample(self.num_classes * per_class,
                           y=tensor(np.repeat(np.arange(self.num_classes), per_class)))

    def figures(self, x=None, y=None) -> dict:
        """For images, ``class_samples``: ten samples of each class, one row per class."""
        if not self.makes_images:
            return {}
        return {"class_samples": (self.class_grid(10), 10)}

    def evaluate(self, loader) -> dict:
        """Images: ``conditional_accuracy`` of 1,000 samples, the classes in turn
        (:func:`nanogen.metrics.conditional_accuracy`; the shipped classifier knows 10 digit
        classes, so a model of more classes reports none).  Points: the mode coverage of
        :meth:`.AdversarialModel.evaluate`, and ``conditional_accuracy`` -- the share of
        ``eval_num_samples`` samples, the classes in turn, whose nearest mode (the mean of the
        loader's points of a label) is the requested class's."""
        if self.makes_images:
            if self.num_classes > 10:
                return {}
            from ...metrics import conditional_accuracy
            return conditional_accuracy(self, n=1000)
        metrics = super().evaluate(loader)
        if not metrics:
            return metrics
        from ...metrics.modes import mixture_from_labelled_points
        points, labels = (np.concatenate(part) for part in
                          zip(*((x.numpy(), y.numpy()) for x, y in loader)))
        centres, _ = mixture_from_labelled_points(points, labels)
        n = self.eval_num_samples
        requested = np.arange(n) % self.num_classes
        samples = self.sample(n, y=tensor(requested)).numpy()
        nearest = np.linalg.norm(samples[:, None] - centres[None], axis=2).argmin(1)
        return {**metrics, "conditional_accuracy": float(np.mean(nearest == requested)),
                "num_conditional_samples": int(n)}


class CGAN(ClassConditionalGAN):
    """A conditional GAN (eqs. 1-3) on ``image_shape`` (C, H, W) images or (D,) points with
    ``num_classes`` labels (at least 2); the arguments are :class:`ClassConditionalGAN`'s."""

    def build_discriminator(self, sample_shape, num_classes: int, options: dict):
        """D(x | y), eq. (3): the backbone's D with ``num_classes`` more input channels or
        features."""
        return LabelledDiscriminator(*discriminator_network(sample_shape, num_classes, options),
                                     num_classes)

    def discriminate(self, x, condition=None):
        """D's logits (N,) for samples x of the labels ``condition`` (N,), eq. (3)."""
        self._check_samples(x, "discriminate")
        if condition is None:
            raise ValueError(f"{type(self).__name__}.discriminate: the discriminator is "
                             f"conditioned on the class; pass the labels")
        return self.discriminator(x, condition).reshape(x.shape[0])


class ACGAN(AuxiliaryHeadGAN, ClassConditionalGAN):
    """An auxiliary-classifier GAN (eqs. 1, 4-6): :class:`CGAN`'s generator and arguments
    (:class:`ClassConditionalGAN`); an unconditional discriminator whose body feeds the source
    logit and ``num_classes`` class logits.  ``class_weight`` scales the class terms of both
    players' losses (1 in the paper)."""

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10,
                 class_weight: float = 1.0, **kwargs):
        if isinstance(class_weight, bool) or not isinstance(class_weight, (int, float)) \
                or not 0 < class_weight < float("inf"):
            raise ValueError(f"{type(self).__name__}: class_weight must be a positive number, "
                             f"got {class_weight!r}")
        super().__init__(image_shape, num_classes, **kwargs)
        self.class_weight = float(class_weight)

    def build_discriminator(self, sample_shape, num_classes: int, options: dict):
        """The backbone's D, its body shared by the source head and a linear class head."""
        body, head = discriminator_network(sample_shape, 0, options)
        classes = nn.Linear(head.in_features, num_classes)
        if len(sample_shape) == 3:
            radford_init_(classes)
        return TwoHeadDiscriminator(body, head, classes)

    def class_logits(self, x):
        """D's class logits (N, K) for samples x."""
        return self.auxiliary(x)

    def discriminator_loss(self, real, labels, fake, condition):
        """Eq. (6), D's side: the game's loss (and penalty) plus the class cross-entropies of
        the real minibatch (its labels) and of the fakes (the classes asked of G).  Logs
        ``class_loss_real`` / ``class_loss_fake`` and ``class_accuracy_real`` (D as a
        classifier of the real minibatch)."""
        with self.auxiliary_outputs() as class_logits:
            loss, logs = super().discriminator_loss(real, labels, fake, condition)
            real_logits, fake_logits = class_logits(real), class_logits(fake)
        real_ce = F.cross_entropy(real_logits, labels)                      # -E log P(C=y|x)
        fake_ce = F.cross_entropy(fake_logits, condition)                   # eq. (5), fakes
        loss = loss + self.class_weight * (real_ce + fake_ce)               # eq. (6)
        with no_grad():
            hits = (real_logits.argmax(1) == labels).float().mean()
        return loss, {**logs, "class_loss_real": float(real_ce.item()),
                      "class_loss_fake": float(fake_ce.item()),
                      "class_accuracy_real": float(hits.item())}

    def generator_loss(self, fake, condition):
        """Eq. (6), G's side: the game's generator loss plus the cross-entropy of the classes
        asked for on D's class head (logged as ``class_loss_g``)."""
        with self.auxiliary_outputs() as class_logits:
            loss, logs = super().generator_loss(fake, condition)
            ce = F.cross_entropy(class_logits(fake), condition)              # eq. (6)
        return loss + self.class_weight * ce, {**logs, "class_loss_g": float(ce.item())}


# -- the registry --------------------------------------------------------------------------------
_SUMMARIES = {
    "cgan": (CGAN, "CGAN (Mirza & Osindero): G and D conditioned on the label (G: a learned "
                   "embedding beside z; D: one-hot label channels, ganhacks #16); sample(n, y), "
                   "`nanogen eval` reports the conditional accuracy"),
    "acgan": (ACGAN, "AC-GAN (Odena et al.): G conditioned on the label, D with a source head and "
                     "a class head on one body, both players adding the class log likelihood; "
                     "`nanogen eval` reports the conditional accuracy"),
}
for _name, (_cls, _summary) in _SUMMARIES.items():
    register(ModelSpec(name=_name, build=_cls, steps=1500, batch_size=64, lr=2e-4,
                       sample_every=500, data_kinds=("image", "points"),
                       kind_defaults=POINT_DEFAULTS,
                       summary=_summary + "; DCGAN backbone on images, MLP on 2-D points "
                                          "(ring8, grid25: their labels)"))
