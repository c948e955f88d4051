"""Activations: relu and friends, softplus, softmax / log_softmax, dropout.

Non-smooth activations capture their 0/1 (or slope) mask as a constant, so their backward is
``gy * mask`` -- differentiable in ``gy``, which is all a second derivative needs (the mask's own
derivative is zero almost everywhere).  Smooth ones are either dedicated Functions with a
numerically stable forward (softplus, softmax, log_softmax) or compositions of other ops.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import Function, is_grad_enabled
from ..kernels import activation as _fused
from ..tensor import Tensor
from ._util import normalize_dim
from .elementwise import _erf, _sigmoid, clamp, exp, sigmoid, tanh, where

__all__ = ["relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "mish", "softplus",
           "softmax", "log_softmax", "sigmoid", "tanh", "hardtanh", "dropout", "logsigmoid",
           "glu"]


class _MaskedLinear(Function):
    """y = x · slope(x) where slope is 1 for x > 0 and ``negative_slope`` elsewhere."""

    def forward(self, x):
        xp, one = self.xp, x.dtype.type(1)
        pos = x > 0
        if self.negative_slope == 0.0:
            if self.requires_grad:
                self.mask = pos.astype(x.dtype)
            return xp.maximum(x, 0, dtype=x.dtype)
        slope = xp.where(pos, one, x.dtype.type(self.negative_slope))
        if self.requires_grad:
            self.mask = slope
        return x * slope

    def backward(self, gy):
        return gy * Tensor._make(self.mask, gy._device)


def relu(input, inplace=False):
    """max(x, 0); the derivative at 0 is taken as 0, as in PyTorch."""
    return _MaskedLinear.apply(input, negative_slope=0.0)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return _MaskedLinear.apply(input, negative_slope=float(negative_slope))


def relu6(input, inplace=False):
    return hardtanh(input, 0.0, 6.0)


class Hardtanh(Function):
    """clamp(x, lo, hi) with PyTorch's hardtanh gradient: 1 strictly inside (lo, hi), 0 at and
    beyond the bounds -- so relu6'(0) = relu'(0) = 0 (clamp, by contrast, passes it at a bound)."""

    def forward(self, x):
        if self.requires_grad:
            self.mask = ((x > self.min_val) & (x < self.max_val)).astype(x.dtype)
        return self.xp.clip(x, self.min_val, self.max_val).astype(x.dtype, copy=False)

    def backward(self, gy):
        return gy * Tensor._make(self.mask, gy._device)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    return Hardtanh.apply(input, min_val=float(min_val), max_val=float(max_val))


def elu(input, alpha=1.0, inplace=False):
    """x for x > 0, α (eᕽ - 1) otherwise.  exp sees min(x, 0), so neither branch overflows."""
    return where(input > 0, input, (exp(clamp(input, max=0.0)) - 1.0) * alpha)


def selu(input, inplace=False):
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return elu(input, alpha) * scale


def gelu(input, approximate="none"):
    """x Φ(x) (exact, with erf) or PyTorch's tanh approximation."""
    if approximate == "tanh":
        c = math.sqrt(2.0 / math.pi)
        return input * 0.5 * (tanh((input + input * input * input * 0.044715) * c) + 1.0)
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELU.apply(input)


def silu(input, inplace=False):
    """x σ(x) (the swish)."""
    return SiLU.apply(input)


class _SmoothPointwise(Function):
    """y = f(x) for a smooth elementwise f, with backward ``gy · f'(x)`` where f' is again a
    Function of this kind (``derivative``) -- so the chain f, f', f'' ... gives gradients of
    any order.  Subclasses give ``f(xp, x)`` and the class of f'; the last link of the chain is
    composite.

    ``fused`` (optional): a pair of fused CPU float32 kernels from
    :mod:`nanogen.kernels.activation`, ``forward(x) -> (y, saved)`` and
    ``backward(gy, x, saved)``.  They replace f, and ``gy · f'(x)`` when the backward records no
    graph (no ``create_graph``): one pass or a few instead of one per op."""

    derivative = None
    fused = None

    def _fusable(self, x):
        return (self.fused is not None and self.xp is np and x.dtype == np.float32
                and x.ndim > 0)

    def forward(self, x):
        if self._fusable(x):
            y, saved = self.fused[0](x)
            self.saved = saved if self.requires_grad else None
            return y
        return self.xp.asarray(self.f(self.xp, x))

    def backward(self, gy):
        x = self.inputs[0]
        if not is_grad_enabled() and self._fusable(x.data):
            return Tensor._make(self.fused[1](gy.data, x.data, self.__dict__.get("saved")),
                                gy._device)
        return gy * self.derivative.apply(x)


_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _normal_cdf(xp, x):
    """Φ(x) = (1 + erf(x/√2)) / 2, in x's dtype."""
    c = _erf(xp, x * _INV_SQRT2)
    c += 1
    c *= 0.5
    return c


def _normal_pdf(xp, x):
    """φ(x) = e^(-x²/2) / √(2π)."""
    p = xp.asarray(x * x)                 # (a 0-d input gives a scalar)
    p *= -0.5
    p = xp.exp(p, out=p)
    p *= _INV_SQRT_2PI
    return p


class _GELUSecond(Function):
    """d²/dx² [x Φ(x)] = φ(x) (2 − x²); its own derivative is taken by composition."""

    def forward(self, x):
        return _normal_pdf(self.xp, x) * (2 - x * x)

    def backward(self, gy):
        x = self.inputs[0]
        pdf = exp(x * x * -0.5) * _INV_SQRT_2PI
        return gy * (pdf * (x * x * x - 4 * x))      # d/dx φ(2 − x²) = φ (x³ − 4x)


class _GELUSlope(_SmoothPointwise):
    """d/dx [x Φ(x)] = Φ(x) + x φ(x)."""
    derivative = _GELUSecond

    @staticmethod
    def f(xp, x):
        slope = _normal_pdf(xp, x)
        slope *= x
        slope += _normal_cdf(xp, x)
        return slope


class GELU(_SmoothPointwise):
    """y = x Φ(x) (exact GELU, Hendrycks & Gimpel 2016)."""
    derivative = _GELUSlope
    fused = (_fused.gelu_forward, _fused.gelu_backward)

    @staticmethod
    def f(xp, x):
        y = _normal_cdf(xp, x)
        y *= x
        return y


class _SiLUSecond(Function):
    """d²/dx² [x σ(x)] = σ'(x) (2 + x (1 − 2σ)), σ' = σ (1 − σ); differentiated by composition."""

    def forward(self, x):
        s = _sigmoid(self.xp, x)
        return s * (1 - s) * (2 + x * (1 - 2 * s))

    def backward(self, gy):
        x = self.inputs[0]
        s = sigmoid(x)
        ds = s * (1 - s)
        # d/dx [ds (2 + x(1 − 2s))] = ds(1 − 2s)(2 + x(1 − 2s)) + ds((1 − 2s) − 2x ds)
        u = 1 - 2 * s
        return gy * (ds * u * (2 + x * u) + ds * (u - 2 * x * ds))


class _SiLUSlope(_SmoothPointwise):
    """d/dx [x σ(x)] = σ(x) (1 + x (1 − σ(x)))."""
    derivative = _SiLUSecond

    @staticmethod
    def f(xp, x):
        s = _sigmoid(xp, x)
        t = 1 - s
        t *= x
        t += 1
        t *= s
        return t


class SiLU(_SmoothPointwise):
    """y = x σ(x) (the swish / SiLU)."""
    derivative = _SiLUSlope
    fused = (_fused.silu_forward, _fused.silu_backward)

    @staticmethod
    def f(xp, x):
        y = _sigmoid(xp, x)
        y *= x
        return y


def mish(input, inplace=False):
    return input * tanh(softplus(input))


class Softplus(Function):
    """y = log(1 + e^(βx)) / β, computed as max(x,0) + log1p(e^(-|βx|))/β;  dy/dx = σ(βx).
    Above ``threshold`` (in βx) it returns x, as PyTorch does."""

    def forward(self, x):
        xp = self.xp
        z = x * self.beta
        y = (xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))) / self.beta
        return xp.where(z > self.threshold, x, y).astype(x.dtype, copy=False)

    def backward(self, gy):
        x = self.inputs[0]
        s = sigmoid(x * self.beta)
        lin = Tensor._make((x.data * self.beta > self.threshold), x._device)
        return gy * where(lin, 1.0, s)


def softplus(input, beta=1.0, threshold=20.0):
    return Softplus.apply(input, beta=float(beta), threshold=float(threshold))


def logsigmoid(input):
    """log σ(x) = -softplus(-x)."""
    return -softplus(-input)


class Softmax(Function):
    """y = exp(x - max) / Σ exp(x - max);  dx = y ⊙ (gy - Σ gy ⊙ y)."""

    keep_output = True

    def forward(self, x):
        xp = self.xp
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        return e / e.sum(axis=self.axis, keepdims=True)

    def backward(self, gy):
        y = self.output
        return y * (gy - (gy * y).sum(self.axis, keepdim=True))


class LogSoftmax(Function):
    """y = x - logsumexp(x);  dx = gy - softmax(x) Σ gy = gy - exp(y) Σ gy."""

    keep_output = True

    def forward(self, x):
        xp = self.xp
        m = x.max(axis=self.axis, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        return x - (xp.log(xp.exp(x - m).sum(axis=self.axis, keepdims=True)) + m)

    def backward(self, gy):
        return gy - exp(self.output) * gy.sum(self.axis, keepdim=True)


def _softmax_dim(input, dim, op):
    if dim is None:
        dim = 0 if input.ndim in (0, 1, 3) else 1   # PyTorch's legacy implicit choice
    return normalize_dim(dim, input.ndim, op)


def softmax(input, dim=None, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return Softmax.apply(input, axis=_softmax_dim(input, dim, "softmax"))


def log_softmax(input, dim=None, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return LogSoftmax.apply(input, axis=_softmax_dim(input, dim, "log_softmax"))


def glu(input, dim=-1):
    a, b = input.chunk(2, dim)
    return a * sigmoid(b)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability p and scale the survivors by 1/(1-p)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    from ..random import draw
    keep = draw("uniform", input.shape, input.dtype, input.device) >= p
    scale = input._xp().asarray(keep, dtype=input.dtype) * input.dtype.type(1.0 / (1.0 - p))
    return input * Tensor._make(input._xp().asarray(scale), input._device)
