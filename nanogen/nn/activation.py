"""Activation modules: thin wrappers that store the hyper-parameters of a function in
:mod:`nanogen.functional` (where the maths and the derivatives live) and show them in the repr.

``inplace=True`` is accepted for PyTorch compatibility; nanogen always returns a new tensor,
which gives the same values.
"""
from __future__ import annotations

from .. import functional as F
from .module import Module

__all__ = ["ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "GELU", "SiLU", "Mish", "Softplus",
           "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "LogSigmoid", "Hardtanh", "GLU"]


class _Activation(Module):
    """Base for activations taking an ``inplace`` flag: shows it in the repr when set.
    Subclasses list their other hyper-parameters in ``_repr_fields``."""

    _repr_fields = ()

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self):
        parts = [f"{name}={getattr(self, name)!r}" for name in self._repr_fields]
        if self.inplace:
            parts.append("inplace=True")
        return ", ".join(parts)


class ReLU(_Activation):
    """max(x, 0)."""

    def forward(self, input):
        return F.relu(input)


class LeakyReLU(_Activation):
    """x for x > 0, ``negative_slope`` · x otherwise."""

    _repr_fields = ("negative_slope",)

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__(inplace)
        self.negative_slope = negative_slope

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope)


class ELU(_Activation):
    """x for x > 0, α (eˣ - 1) otherwise."""

    _repr_fields = ("alpha",)

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        self.alpha = alpha

    def forward(self, input):
        return F.elu(input, self.alpha)


class SELU(_Activation):
    """scale · ELU(x, α) with the self-normalising constants (α ≈ 1.6733, scale ≈ 1.0507)."""

    def forward(self, input):
        return F.selu(input)


class SiLU(_Activation):
    """x · σ(x) (swish)."""

    def forward(self, input):
        return F.silu(input)


class Mish(_Activation):
    """x · tanh(softplus(x))."""

    def forward(self, input):
        return F.mish(input)


class Hardtanh(_Activation):
    """clamp(x, min_val, max_val)."""

    _repr_fields = ("min_val", "max_val")

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        if not max_val > min_val:
            raise ValueError(f"Hardtanh: max_val ({max_val}) must be greater than min_val "
                             f"({min_val})")
        self.min_val = min_val
        self.max_val = max_val

    def forward(self, input):
        return F.hardtanh(input, self.min_val, self.max_val)


class ReLU6(Hardtanh):
    """min(max(x, 0), 6)."""

    _repr_fields = ()

    def __init__(self, inplace: bool = False):
        super().__init__(0.0, 6.0, inplace)


class GELU(Module):
    """x Φ(x); ``approximate='tanh'`` uses the tanh approximation."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Softplus(Module):
    """log(1 + e^(βx)) / β, linear above ``threshold`` (in βx)."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, input):
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Sigmoid(Module):
    """1 / (1 + e⁻ˣ)."""

    def forward(self, input):
        return F.sigmoid(input)


class Tanh(Module):
    def forward(self, input):
        return F.tanh(input)


class LogSigmoid(Module):
    """log σ(x), computed stably as -softplus(-x)."""

    def forward(self, input):
        return F.logsigmoid(input)


class _AlongDim(Module):
    """Base for activations acting along one dimension ``dim``."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(_AlongDim):
    """exp(x) / Σ exp(x) along ``dim``."""

    def forward(self, input):
        return F.softmax(input, self.dim)


class LogSoftmax(_AlongDim):
    """x - logsumexp(x) along ``dim``."""

    def forward(self, input):
        return F.log_softmax(input, self.dim)


class GLU(_AlongDim):
    """Gated linear unit: split ``dim`` in halves a, b and return a · σ(b)."""

    def __init__(self, dim: int = -1):
        super().__init__(dim)

    def forward(self, input):
        if input.shape[self.dim] % 2:
            raise ValueError(f"GLU: dimension {self.dim} must have even size, got shape "
                             f"{tuple(input.shape)}")
        return F.glu(input, self.dim)
