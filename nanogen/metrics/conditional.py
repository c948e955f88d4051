"""How well a class-conditional model obeys its labels: :func:`conditional_accuracy`.

A model that draws images of a requested class ``y`` should draw images that a good classifier
calls ``y``.  The score is the fraction of ``n`` samples, the classes requested in turn
(``y_k = k mod num_classes``), whose most probable class under the shipped LeNet
(:func:`nanogen.metrics.class_probabilities`) is the requested one: 1 for a model that always
obeys, about ``1 / num_classes`` for one that ignores its labels.

Any model with ``conditional = True``, ``num_classes`` and ``sample(n, y)`` returning images
(n, C, H, W) in [0, 1] can be scored: a CVAE, a conditional GAN, a conditional PixelCNN.  The
classifier knows the ten MNIST digits, so the labels must be digit classes (``num_classes`` at
most 10); on other data the number only says whether the classes look like digits.

The same samples give the within-class MS-SSIM of Odena et al. (2017):
:func:`~nanogen.metrics.ms_ssim.ms_ssim_within_class`, the mean MS-SSIM of random pairs of
samples drawn for one class, averaged over the classes -- lower is more diverse; a model that
draws one image per class scores 1.  Every class-conditional model's ``evaluate`` (and ``nanogen
eval`` of a guided one) calls :func:`conditional_accuracy`, so this is where conditional models
are told apart from each other by their diversity within a class, with no second draw.
"""
from __future__ import annotations

import numpy as np

from .ms_ssim import fitting_scales, ms_ssim_within_class

__all__ = ["conditional_accuracy"]

_NUM_DIGITS = 10          # the classes the shipped LeNet tells apart


def conditional_accuracy(model, n: int = 1000, seed: int = 0, batch_size: int = 500,
                         options=None) -> dict:
    """``{"conditional_accuracy": a, "num_conditional_samples": n, ...}``: the fraction ``a`` of
    ``n`` samples, drawn for the classes 0, 1, ..., num_classes - 1, 0, ... under seed ``seed``
    (on a forked random stream: the caller's draws are untouched), that the shipped classifier
    assigns to the class they were drawn for.  Samples are drawn ``batch_size`` at a time, with
    the keyword arguments ``options`` of ``model.sample`` (a sampler, its steps, a guidance
    weight).

    With ``ms_ssim_within_class`` (100 random pairs per class, Odena et al.'s count, seed
    ``seed``), ``ms_ssim_within_class_pairs`` and ``ms_ssim_within_class_classes`` beside them
    when some class has at least 2 of the samples and they are at least 7 pixels a side."""
    from .. import random as ng_random
    from ..autograd import no_grad
    from ..creation import tensor
    from .features import class_probabilities

    if not getattr(model, "conditional", False):
        raise ValueError(f"conditional_accuracy: {type(model).__name__} is not class-conditional "
                         f"(conditional = False): there is no requested class to check")
    num_classes = int(model.num_classes)
    if not 1 <= num_classes <= _NUM_DIGITS:
        raise ValueError(f"conditional_accuracy: the classifier knows {_NUM_DIGITS} digit "
                         f"classes; {type(model).__name__} has num_classes = {num_classes}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"conditional_accuracy: n must be a positive int, got {n!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"conditional_accuracy: batch_size must be a positive int, got "
                         f"{batch_size!r}")
    labels = np.arange(int(n)) % num_classes
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with ng_random.fork_rng(seed), no_grad():
            parts = [np.asarray(model.sample(len(chunk), y=tensor(chunk),
                                             **(options or {})).numpy())
                     for chunk in np.array_split(labels, range(batch_size, n, batch_size))]
    finally:
        model.train(was_training)
    samples = np.concatenate(parts)
    if len(samples) != n:
        raise ValueError(f"conditional_accuracy: {type(model).__name__}.sample returned "
                         f"{len(samples)} images for {n} labels")
    predicted = class_probabilities(samples, what=f"{type(model).__name__}'s samples").argmax(1)
    return {"conditional_accuracy": float(np.mean(predicted == labels)),
            "num_conditional_samples": int(n), **_diversity_within_class(samples, labels, seed)}


def _diversity_within_class(samples, labels, seed) -> dict:
    """The within-class MS-SSIM keys, or none when no class has a pair or the images are
    smaller than MS-SSIM's window."""
    if len(labels) <= len(np.unique(labels)) or not fitting_scales(*samples.shape[2:]):
        return {}
    scores = ms_ssim_within_class(samples, labels, seed=seed)
    scores.pop("ms_ssim_scales")          # sample_quality's key; the same for these images
    return scores
