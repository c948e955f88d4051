"""Weight initialisation, with PyTorch's names and formulas (``nn.init``).

Every function fills the tensor's array *in place* (no graph is recorded) and returns the tensor.
Random numbers come from nanogen's global generator (:mod:`nanogen.random`), so
``ng.manual_seed(s)`` makes an initialisation reproducible.

The scaled schemes keep the variance of activations (or of gradients) constant through layers:

* Xavier / Glorot:  Var(w) = gain² · 2 / (fan_in + fan_out);
* Kaiming / He:     Var(w) = gain² / fan,  fan = fan_in (forward) or fan_out (backward);

a uniform U(-b, b) has variance b²/3, so its bound is b = √3 · std.
For a weight of shape (out, in, k1, k2, ...):  fan_in = in · k1·k2·...,  fan_out = out · k1·k2·...
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd import no_grad
from ..random import draw

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_",
           "zeros_", "eye_", "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
           "kaiming_normal_", "orthogonal_"]


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity: 1 for linear / conv / sigmoid, 5/3 for tanh,
    √2 for relu, √(2 / (1 + slope²)) for leaky_relu (slope ``param``, default 0.01), 3/4 for
    selu."""
    linear_fns = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d"]
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Number) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1.0 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"Unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor):
    """``(fan_in, fan_out)`` of a weight of shape (out, in, *kernel)."""
    if tensor.ndim < 2:
        raise ValueError(f"Fan in and fan out can not be computed for tensor with fewer than 2 "
                         f"dimensions (got shape {tuple(tensor.shape)})")
    receptive_field = int(np.prod(tensor.shape[2:])) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _calculate_correct_fan(tensor, mode):
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _random(kind, tensor, op):
    """Standard uniform [0, 1) or normal samples shaped and typed like ``tensor``."""
    if tensor.dtype.kind != "f":
        raise TypeError(f"init.{op}: needs a floating-point tensor, got {tensor.dtype}")
    return draw(kind, tensor.shape, tensor.dtype, tensor.device)


def _fill(tensor, values):
    """Write ``values`` (an array or scalar) into the tensor's array in place."""
    with no_grad():
        tensor.data[...] = values
    return tensor


def uniform_(tensor, a: float = 0.0, b: float = 1.0):
    """Fill with U(a, b)."""
    u = _random("uniform", tensor, "uniform_")
    return _fill(tensor, u * (b - a) + a)


def normal_(tensor, mean: float = 0.0, std: float = 1.0):
    """Fill with N(mean, std²)."""
    z = _random("normal", tensor, "normal_")
    return _fill(tensor, z * std + mean)


def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0):
    """Fill with N(mean, std²) conditioned on [a, b] (absolute bounds, as in PyTorch), by
    rejection: draw normals and redraw those that fall outside until none do."""
    if not a < b:
        raise ValueError(f"trunc_normal_: need a < b, got a={a}, b={b}")
    cdf = lambda x: 0.5 * (1.0 + math.erf((x - mean) / (std * math.sqrt(2.0))))  # noqa: E731
    mass = cdf(b) - cdf(a)
    if mass < 1e-6:
        raise ValueError(f"trunc_normal_: [{a}, {b}] holds only {mass:.2g} of the probability of "
                         f"N({mean}, {std}²); choose bounds closer to the mean")
    if tensor.dtype.kind != "f":
        raise TypeError(f"init.trunc_normal_: needs a floating-point tensor, got {tensor.dtype}")
    xp = tensor._xp()
    flat = xp.empty(tensor.numel(), dtype=tensor.dtype)
    todo = xp.arange(flat.size)
    while todo.size:
        want = min(int(todo.size / mass * 1.1) + 16, 1 << 22)
        z = draw("normal", (want,), tensor.dtype, tensor.device) * std + mean
        z = z[(z >= a) & (z <= b)][:todo.size]
        flat[todo[:z.size]] = z
        todo = todo[z.size:]
    return _fill(tensor, flat.reshape(tensor.shape))


def constant_(tensor, val: float):
    """Fill with the value ``val``."""
    return _fill(tensor, val)


def ones_(tensor):
    return constant_(tensor, 1.0)


def zeros_(tensor):
    return constant_(tensor, 0.0)


def eye_(tensor):
    """Fill a 2-D tensor with the identity (ones on the diagonal), keeping linear layers'
    identities."""
    if tensor.ndim != 2:
        raise ValueError(f"eye_: only 2-D tensors are supported, got shape {tuple(tensor.shape)}")
    return _fill(tensor, tensor._xp().eye(*tensor.shape, dtype=tensor.dtype))


def dirac_(tensor, groups: int = 1):
    """Fill a 3/4/5-D conv weight with the Dirac delta: the convolution copies (the first
    ``min(out, in)`` of) its input channels, within each of ``groups`` groups."""
    if tensor.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_: only 3, 4 or 5-D tensors are supported, got shape "
                         f"{tuple(tensor.shape)}")
    out_channels = tensor.shape[0]
    if out_channels % groups:
        raise ValueError(f"dirac_: dim 0 ({out_channels}) must be divisible by groups ({groups})")
    per_group = out_channels // groups
    values = tensor._xp().zeros(tensor.shape, dtype=tensor.dtype)
    centre = tuple(k // 2 for k in tensor.shape[2:])
    for g in range(groups):
        for d in range(min(per_group, tensor.shape[1])):
            values[(g * per_group + d, d) + centre] = 1
    return _fill(tensor, values)


def xavier_uniform_(tensor, gain: float = 1.0):
    """Glorot uniform: U(-b, b) with b = gain · √(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain: float = 1.0):
    """Glorot normal: N(0, std²) with std = gain · √(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)))


def _kaiming_std(tensor, a, mode, nonlinearity):
    if tensor.numel() == 0:
        return None
    fan = _calculate_correct_fan(tensor, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu"):
    """He uniform: U(-b, b) with b = √3 · gain / √fan (``a``: the leaky-relu slope used for
    the gain).  ``Linear``'s default, ``a = √5``, gives b = 1 / √fan_in."""
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu"):
    """He normal: N(0, std²) with std = gain / √fan."""
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    return normal_(tensor, 0.0, std)


def orthogonal_(tensor, gain: float = 1.0):
    """Fill with a (semi-)orthogonal matrix: the Q of the QR decomposition of a Gaussian matrix
    of shape (rows, numel / rows), signs fixed so Q is uniformly (Haar) distributed, times
    ``gain``.  Rows (or columns, whichever are fewer) come out orthonormal."""
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_: only tensors with 2 or more dimensions are supported, "
                         f"got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        return tensor
    xp = tensor._xp()
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    flat = draw("normal", (rows, cols), np.float64, tensor.device)
    if rows < cols:
        flat = flat.T
    q, r = xp.linalg.qr(flat)
    q = q * xp.sign(xp.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, (q * gain).reshape(tensor.shape).astype(tensor.dtype))
