"""Affine layers and shape adapters: ``Identity``, ``Linear``, ``MaskedLinear``, ``Bilinear``,
``Flatten``, ``Unflatten``."""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..autograd import no_grad
from ..creation import as_tensor, empty, ones_like
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["Identity", "Linear", "MaskedLinear", "Bilinear", "Flatten", "Unflatten"]


def _uniform_bias_(bias, fan_in):
    """PyTorch's default bias init for affine layers: U(-1/√fan_in, 1/√fan_in)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    init.uniform_(bias, -bound, bound)


class Identity(Module):
    """Returns its input unchanged (a placeholder; any constructor arguments are ignored)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x Wᵀ + b, with W of shape (out_features, in_features).

    Default init (PyTorch's): ``kaiming_uniform_(W, a=√5)``, which is U(-1/√in, 1/√in), and the
    bias U(-1/√in, 1/√in).  Input shape (*, in_features) -> output (*, out_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(empty(out_features, in_features, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(empty(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            _uniform_bias_(self.bias, self.in_features)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class MaskedLinear(Linear):
    """y = x (W ⊙ M)ᵀ + b: a linear layer whose connections are switched off where the mask M
    (out_features, in_features) is 0 -- the autoregressive MLPs' layer (FVBN, MADE).

    The mask is a buffer (saved in the state dict, so a model whose masks change during training
    resumes with the masks it had); :meth:`set_mask` replaces it.  Masked weights get a zero
    gradient, since they enter the output only through W ⊙ M.  ``zero_init=True`` starts every
    weight and bias at 0 (a logistic regression's usual start); the default init is
    :class:`Linear`'s.
    """

    def __init__(self, in_features: int, out_features: int, mask=None, bias: bool = True,
                 zero_init: bool = False, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        if zero_init:
            init.zeros_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)
        self.register_buffer("mask", ones_like(self.weight.detach()))
        if mask is not None:
            self.set_mask(mask)

    def set_mask(self, mask):
        """Use ``mask`` (array-like of 0s and 1s, shape (out_features, in_features)) from now on."""
        mask = as_tensor(mask, dtype=self.weight.dtype, device=self.weight.device)
        if tuple(mask.shape) != tuple(self.weight.shape):
            raise ValueError(f"MaskedLinear: the mask must have the weight's shape "
                             f"{tuple(self.weight.shape)}, got {tuple(mask.shape)}")
        with no_grad():
            self.mask.copy_(mask)

    def forward(self, input):
        if input.shape[-1:] != (self.in_features,):
            raise ValueError(f"MaskedLinear: expected input of shape (*, {self.in_features}), "
                             f"got {tuple(input.shape)}")
        return F.linear(input, self.weight * self.mask, self.bias)

    def rows(self, input, index):
        """``self(input)[..., index]`` computed from those output rows alone: O(len(index) *
        in_features) instead of the whole layer (an autoregressive sampler needs one pixel's
        outputs at a time)."""
        if input.shape[-1:] != (self.in_features,):
            raise ValueError(f"MaskedLinear: expected input of shape (*, {self.in_features}), "
                             f"got {tuple(input.shape)}")
        index = np.asarray(index, dtype=np.int64)
        bias = None if self.bias is None else self.bias[index]
        return F.linear(input, self.weight[index] * self.mask[index], bias)


class Bilinear(Module):
    """y_k = x1ᵀ A_k x2 + b_k, with A of shape (out_features, in1_features, in2_features).

    Init: A and b uniform on ±1/√in1_features, as in PyTorch.  Inputs (*, in1) and (*, in2)
    -> output (*, out).
    """

    def __init__(self, in1_features: int, in2_features: int, out_features: int,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in1_features = in1_features
        self.in2_features = in2_features
        self.out_features = out_features
        self.weight = Parameter(empty(out_features, in1_features, in2_features, device=device,
                                      dtype=dtype))
        if bias:
            self.bias = Parameter(empty(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1, input2):
        if input1.shape[-1] != self.in1_features or input2.shape[-1] != self.in2_features:
            raise ValueError(f"Bilinear: expected inputs with {self.in1_features} and "
                             f"{self.in2_features} features, got shapes {tuple(input1.shape)} "
                             f"and {tuple(input2.shape)}")
        lead = input1.shape[:-1]
        x1 = input1.reshape(-1, self.in1_features)
        x2 = input2.reshape(-1, self.in2_features)
        # (N, in1) @ (in1, out * in2) -> (N, out, in2); then contract in2 with x2
        a = self.weight.permute(1, 0, 2).reshape(self.in1_features, -1)
        t = (x1 @ a).reshape(-1, self.out_features, self.in2_features)
        y = (t * x2.unsqueeze(1)).sum(-1)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self):
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


class Flatten(Module):
    """Flatten dims ``start_dim`` .. ``end_dim`` into one (default: all but the batch dim)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dim ``dim`` into ``unflattened_size`` (e.g. (N, 784) -> (N, 1, 28, 28))."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim = dim
        self.unflattened_size = tuple(unflattened_size)

    def forward(self, input):
        return F.unflatten(input, self.dim, self.unflattened_size)

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
