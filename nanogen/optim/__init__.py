"""``ng.optim``: optimizers, learning-rate schedules and an exponential moving average of weights.

PyTorch's names and update rules: ``SGD``, ``Adam``, ``AdamW``, ``RMSprop`` (each docstring
gives its equations), ``ng.optim.lr_scheduler`` and ``ExponentialMovingAverage`` (alias ``EMA``)
for the averaged weights that GANs and diffusion models sample with.
"""
from . import lr_scheduler
from .adam import Adam, AdamW
from .ema import EMA, ExponentialMovingAverage
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler",
           "ExponentialMovingAverage", "EMA"]
