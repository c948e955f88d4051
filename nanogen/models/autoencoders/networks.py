r"""The encoder and decoder stacks the autoencoders share: convolutional (:class:`ConvEncoder`,
:class:`ConvDecoder`) and fully connected (:class:`MLPEncoder`, :class:`MLPDecoder`).

The encoder halves the image once per entry of ``channels`` with a stride-2 4x4 convolution
(padding 1), flattens, and maps the features to a vector with a linear layer (two, with a hidden
layer of ``hidden_features`` between them)::

    (N, C, 28, 28) -conv-> (N, 32, 14, 14) -conv-> (N, 64, 7, 7) -flatten-> (N, 3136) -linear-> (N, F)

The decoder mirrors it: linear layers up to the smallest feature map, then one stride-2 4x4
transposed convolution per entry of ``channels`` (in reverse), the last one producing the image's
``C`` channels with no activation after it (the model reads them as logits or means)::

    (N, D) -linear-> (N, 64, 7, 7) -convT-> (N, 32, 14, 14) -convT-> (N, C, 28, 28)

``depth`` > 1 adds ``depth - 1`` stride-1 3x3 convolutions at each resolution (after each
downsampling, before each upsampling); ``dropout`` > 0 drops the flattened features (encoder) and
the first feature map (decoder) during training.

The fully connected pair flattens the image and runs it through ``hidden`` widths (the decoder
through them in reverse), an activation after each hidden layer and none after the last::

    (N, C, H, W) -flatten-> (N, CHW) -linear-> (N, h_1) -> ... -linear-> (N, F)      (MLPEncoder)
    (N, D) -linear-> (N, h_L) -> ... -linear-> (N, CHW) -unflatten-> (N, C, H, W)      (MLPDecoder)

Each stride-2 layer maps a side :math:`s` to :math:`s/2` (encoder) and back to :math:`2s`
(decoder), so the image's height and width must be divisible by :math:`2^{L}` for
:math:`L` = ``len(channels)``; :func:`feature_map_shape` checks that.
"""
from __future__ import annotations

import math

from ... import nn
from ...utils.checks import positive_int
from ..base import check_channels, feature_map_shape
from ..base import check_image_shape as _check_image_shape

__all__ = ["ConvEncoder", "ConvDecoder", "MLPEncoder", "MLPDecoder", "feature_map_shape",
           "check_channels", "check_hidden", "ACTIVATIONS"]

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU,
               "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def _activation(name: str):
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of "
                         f"{', '.join(sorted(ACTIVATIONS))}") from None


def _dropout(p: float) -> list:
    """[Dropout(p)], or nothing for p = 0."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p!r}")
    return [nn.Dropout(p)] if p > 0 else []


def _same_size_convs(channels: int, depth: int, activation: str) -> list:
    """depth - 1 pairs of (3x3 stride-1 conv, activation) that keep the feature map's size: with
    ``depth`` convolutions per resolution instead of one."""
    depth = positive_int(depth, "depth")
    return [layer for _ in range(depth - 1)
            for layer in (nn.Conv2d(channels, channels, 3, padding=1), _activation(activation))]


def _linear_stack(in_features: int, out_features: int, hidden_features, activation: str) -> list:
    """Linear(in, out), or Linear(in, hidden) -> act -> Linear(hidden, out)."""
    if hidden_features is None:
        return [nn.Linear(in_features, out_features)]
    if not isinstance(hidden_features, int) or hidden_features <= 0:
        raise ValueError(f"hidden_features must be a positive int or None, got "
                         f"{hidden_features!r}")
    return [nn.Linear(in_features, hidden_features), _activation(activation),
            nn.Linear(hidden_features, out_features)]


class ConvEncoder(nn.Module):
    """x (N, C, H, W) -> (N, out_features): stride-2 convolutions, then linear layers
    (``dropout`` > 0 drops flattened features during training)."""

    def __init__(self, image_shape, out_features: int, channels=(32, 64),
                 hidden_features: int | None = None, activation: str = "relu",
                 dropout: float = 0.0, depth: int = 1):
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        fmap = feature_map_shape(self.image_shape, channels)
        layers = []
        for c_in, c_out in zip((self.image_shape[0],) + tuple(channels), channels):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), _activation(activation)]
            layers += _same_size_convs(c_out, depth, activation)
        layers.append(nn.Flatten())
        layers += _dropout(dropout)
        layers += _linear_stack(math.prod(fmap), out_features, hidden_features, activation)
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class ConvDecoder(nn.Module):
    """z (N, in_features) -> (N, C, H, W) pre-activations (logits): linear layers, then
    stride-2 transposed convolutions (``dropout`` > 0 drops the first feature map's values during
    training)."""

    def __init__(self, in_features: int, image_shape, channels=(32, 64),
                 hidden_features: int | None = None, activation: str = "relu",
                 dropout: float = 0.0, depth: int = 1):
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        fmap = feature_map_shape(self.image_shape, channels)
        layers = _linear_stack(in_features, math.prod(fmap), hidden_features, activation)
        layers += [_activation(activation), *_dropout(dropout), nn.Unflatten(1, fmap)]
        widths = tuple(reversed(channels)) + (self.image_shape[0],)
        for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
            layers += _same_size_convs(c_in, depth, activation)
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i < len(widths) - 2:
                layers.append(_activation(activation))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


def check_hidden(hidden) -> tuple:
    """``hidden`` as a tuple of positive ints (it may be empty: a single linear layer)."""
    hidden = tuple(hidden)
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise ValueError(f"hidden must be a sequence of positive ints, got {hidden!r}")
    return hidden


def _mlp(widths, activation: str) -> list:
    """Linear layers through ``widths`` with an activation between each two (none at the end)."""
    layers = []
    for i, (w_in, w_out) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(w_in, w_out))
        if i < len(widths) - 2:
            layers.append(_activation(activation))
    return layers


class MLPEncoder(nn.Module):
    """x (N, C, H, W) -> (N, out_features): flatten, then linear layers through ``hidden``."""

    def __init__(self, image_shape, out_features: int, hidden=(500, 500),
                 activation: str = "relu"):
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        widths = (math.prod(self.image_shape),) + check_hidden(hidden) + (
            positive_int(out_features, "out_features"),)
        self.net = nn.Sequential(nn.Flatten(), *_mlp(widths, activation))

    def forward(self, x):
        return self.net(x)


class MLPDecoder(nn.Module):
    """z (N, in_features) -> (N, C, H, W) pre-activations: linear layers through ``hidden`` in
    reverse, the last one producing C * H * W values."""

    def __init__(self, in_features: int, image_shape, hidden=(500, 500),
                 activation: str = "relu"):
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        widths = (positive_int(in_features, "in_features"),) + tuple(
            reversed(check_hidden(hidden))) + (math.prod(self.image_shape),)
        self.net = nn.Sequential(*_mlp(widths, activation), nn.Unflatten(1, self.image_shape))

    def forward(self, z):
        return self.net(z)
