"""What every generative model offers the training loop, ``nanogen sample`` and ``nanogen eval``.

A model is an ``nn.Module`` with five more methods.  The loop never looks inside a model: it
asks it for its optimizers once, hands it batches, and asks it for samples and test metrics::

    optimizers = model.configure_optimizers(lr)          # {"model": Adam(...)}, or two for a GAN
    for batch in loader:                                  # batch = (x, y): images, labels
        logs = model.training_step(batch, optimizers)     # {"loss": 93.1, ...} -- floats
    images = model.sample(64)                             # (64, C, H, W) in [0, 1]
    metrics = model.evaluate(test_loader)                 # {"nll_nats": 88.2, ...}
    pictures = model.figures(x_test, y_test)              # {"completions": (images, nrow)}

Likelihood models only write :meth:`GenerativeModel.loss`; the default
:meth:`~GenerativeModel.training_step` does one optimizer step on it.  Models with several
players (GANs) override ``configure_optimizers`` and ``training_step``.
"""
from __future__ import annotations

import math

from .. import nn
from ..autograd import no_grad
from ..optim import Adam

__all__ = ["GenerativeModel", "ImageShapeError", "check_halvings", "check_labels",
           "check_image_shape", "check_channels", "feature_map_shape"]


class ImageShapeError(ValueError):
    """An image shape a model's architecture cannot take; the message says which sizes work."""


def check_halvings(image_shape, halvings: int, what: str) -> None:
    """Refuse ``image_shape`` (C, H, W) unless H and W survive ``halvings`` stride-2 steps:
    an :class:`ImageShapeError` such as "DCGAN with 2 stride-2 levels needs H and W divisible
    by 4, got 30x30 (32x32 would do)"."""
    _, h, w = image_shape
    factor = 2 ** halvings
    if h % factor or w % factor:
        up = lambda n: -(-n // factor) * factor                    # noqa: E731
        raise ImageShapeError(f"{what} with {halvings} stride-2 level"
                              f"{'s' if halvings != 1 else ''} needs H and W divisible by "
                              f"{factor}, got {h}x{w} ({up(h)}x{up(w)} would do)")


def check_image_shape(image_shape) -> tuple:
    """``image_shape`` as a (C, H, W) tuple of positive ints; a ValueError otherwise."""
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"image_shape must be (C, H, W) with positive ints, got {image_shape!r}")
    return shape


def check_channels(channels) -> tuple:
    """The widths of a stack of stride-2 conv layers as a non-empty tuple of positive ints."""
    channels = tuple(channels)
    if not channels or not all(isinstance(c, int) and c > 0 for c in channels):
        raise ValueError(f"channels must be a non-empty sequence of positive ints, got "
                         f"{channels!r}")
    return channels


def feature_map_shape(image_shape, channels) -> tuple:
    """(C_last, H / 2^L, W / 2^L): the encoder's last feature map for ``L = len(channels)``
    stride-2 layers; a ValueError when H or W is not divisible by 2^L."""
    c, h, w = check_image_shape(image_shape)
    channels = check_channels(channels)
    factor = 2 ** len(channels)
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} is not divisible by {factor}: {len(channels)} "
                         f"stride-2 layers (channels={channels}) need sides that halve "
                         f"{len(channels)} times")
    return channels[-1], h // factor, w // factor


def check_labels(y, n: int, num_classes: int, where: str):
    """The class labels a conditional model was given, as an int64 Tensor (n,): a ValueError
    that names ``where`` when they are missing, of the wrong shape, not integers, or outside
    [0, num_classes)."""
    from ..creation import as_tensor
    if y is None:
        raise ValueError(f"{where}: this model is class-conditional; pass the labels y")
    y = as_tensor(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{where}: expected {n} labels of shape ({n},), got shape "
                         f"{tuple(y.shape)}")
    labels = y.detach().numpy()
    if labels.dtype.kind not in "iu" and not (labels == labels.round()).all():
        raise ValueError(f"{where}: labels must be integer class indices, got {labels}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{where}: labels must lie in [0, {num_classes}), got values "
                         f"from {labels.min()} to {labels.max()}")
    return y.long()


class GenerativeModel(nn.Module):
    """Base class of the models in :mod:`nanogen.models`.

    Class attributes a model sets:

    * ``data_transform`` -- how the loop scales images for it: ``"binary"`` (pixels in {0, 1}:
      dynamically binarized for training, binarized once with a fixed seed for evaluation),
      ``"unit"`` ([0, 1]) or ``"symmetric"`` ([-1, 1]).
    * ``batches_per_step`` -- how many batches one :meth:`training_step` consumes; the loop
      joins them along the first axis (a GAN's k discriminator updates split them again).
    * ``judged_by_samples`` -- True for models with no likelihood to report (GANs, diffusion):
      ``nanogen eval`` then scores ``eval_num_samples`` of their samples with
      :mod:`nanogen.metrics` (FID, KID, IS) unless ``--num-samples`` says otherwise.
    * ``inference_modules`` -- the names of the sub-modules (or direct parameters) that
      :meth:`sample`,
      :meth:`evaluate` and :meth:`figures` use, when they use only some (a GAN:
      ``("generator",)``); None (the default) for all.  :meth:`inference_state_dict` keeps
      those, and the shipped pretrained weights (:mod:`nanogen.pretrained`) hold nothing else.
    * ``can_sample`` -- False for a model that draws no images (the ladder network, a
      classifier): the training loop draws no sample grids for it and ``nanogen sample``
      refuses it in one line.
    * ``conditional`` -- True for a class-conditional model: :meth:`sample` needs labels ``y``
      (checked with :func:`check_labels`), and its :meth:`evaluate` reports how often the
      shipped classifier recognises the requested class in its samples
      (:func:`nanogen.metrics.conditional_accuracy`).

    A representation model (an autoencoder) also defines ``codes(x)``: the (N, F) features its
    encoder gives images x, which ``nanogen eval`` judges with a linear probe
    (:func:`nanogen.metrics.linear_probe`).
    """

    data_transform = "unit"
    batches_per_step = 1
    judged_by_samples = False
    eval_num_samples = 1000
    inference_modules = None
    can_sample = True
    conditional = False

    # -- input checks ---------------------------------------------------------------------------
    def _check_images(self, x, where: str):
        """A ValueError naming ``Model.where`` unless x is a batch (N, *self.image_shape)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"{type(self).__name__}.{where}: expected images of shape (N, "
                             f"{', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}")

    # -- training -------------------------------------------------------------------------------
    def configure_optimizers(self, lr: float) -> dict:
        """The optimizers :meth:`training_step` uses, by name (saved in checkpoints by name)."""
        return {"model": Adam(self.parameters(), lr=lr)}

    def loss(self, x, y=None):
        """``(loss, logs)``: the scalar Tensor to minimise on a batch and a dict of floats to log."""
        raise NotImplementedError(f"{type(self).__name__} does not define loss()")

    def training_step(self, batch, optimizers) -> dict:
        """One update on ``batch = (x, y)``; returns the numbers to log (``"loss"`` first)."""
        x, y = batch
        loss, logs = self.loss(x, y)
        opt = optimizers["model"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": float(loss.item()), **logs}

    # -- using a trained model ------------------------------------------------------------------
    def sample(self, n: int, y=None):
        """``n`` samples as a Tensor of images of shape (n, C, H, W) with values in [0, 1]."""
        raise NotImplementedError(f"{type(self).__name__} does not define sample()")

    def preview_sampler(self) -> dict:
        """Keyword arguments of :meth:`sample` for the training loop's grids and the default of
        ``nanogen sample`` / ``nanogen eval``: a model with a slow exact sampler names a fast
        one here (DDPM: a few DDIM steps).  None by default."""
        return {}

    def figures(self, x, y=None) -> dict:
        """Model-specific pictures made from a batch of test data ``(x, y)``.

        ``{"name": (images, nrow)}``, images a Tensor (N, C, H, W) in [0, 1]; the command line
        writes each to ``DIR/name.png`` (a PixelCNN's completions of half images, a VAE's
        reconstructions and latent manifold).  None by default.
        """
        return {}

    def inference_state_dict(self):
        """The part of :meth:`state_dict` that sampling and evaluation read: the entries of the
        sub-modules named by ``inference_modules`` (a GAN's generator, not its discriminator),
        or the whole state dict when it is None.  Loading it with ``load_state_dict(...,
        strict=False)`` into a fresh model gives one that samples and evaluates like this one
        (the modules left out keep their initial weights)."""
        state = self.state_dict()
        if self.inference_modules is None:
            return state
        names = tuple(self.inference_modules)
        prefixes = tuple(f"{name}." for name in names)
        for key in [key for key in state if key not in names and not key.startswith(prefixes)]:
            del state[key]
        return state

    def evaluate(self, loader) -> dict:
        """Metrics on a test loader; by default the mean of ``loss`` over every example."""
        total, count = 0.0, 0
        with no_grad():
            for x, y in loader:
                loss, _ = self.loss(x, y)
                total += float(loss.item()) * len(x)
                count += len(x)
        if count == 0:
            raise ValueError("evaluate: the loader yielded no examples")
        return {"loss": total / count, "num_examples": count}


def nats_to_bits_per_dim(nats: float, dims: int) -> float:
    """A negative log-likelihood in nats per example as bits per dimension: nats / (D ln 2)."""
    return nats / (dims * math.log(2.0))
