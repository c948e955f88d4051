r"""Spectral normalisation (Miyato et al. 2018) with PyTorch's ``nn.utils.spectral_norm`` semantics.

A layer's weight is divided by its largest singular value,

.. math:: W_\text{SN} = W / \sigma(W), \qquad
          \sigma(W) = \max_{h \ne 0} \frac{\|W h\|_2}{\|h\|_2},                        \tag{1}

so the layer is 1-Lipschitz (in the 2-norm), and a critic built from such layers and 1-Lipschitz
activations is too.  :math:`\sigma` is estimated by *power iteration* on a persistent pair of
vectors: each forward pass in training mode refines them once (``n_power_iterations``),

.. math:: v \leftarrow \frac{W^\top u}{\|W^\top u\|}, \qquad
          u \leftarrow \frac{W v}{\|W v\|},                                              \tag{2}

.. math:: \sigma(W) \approx u^\top W v,                                                   \tag{3}

and since W moves little per optimiser step, one iteration per step tracks :math:`\sigma` well
(the paper's Algorithm 1).  u and v are constants to autograd (the update runs on the raw
arrays); :math:`\sigma` is a differentiable function of W through eq. (3), so the gradient
reaches the raw weight through the division, as in the paper.  In evaluation mode the stored u
and v are used as they are.

As in PyTorch, ``spectral_norm(module)`` renames the parameter ``weight`` to ``weight_orig``
and adds the buffers ``weight_u`` (length: output features) and ``weight_v`` (length: the other
dimensions flattened); ``module.weight`` becomes a plain attribute recomputed by a forward
pre-hook.  A weight of more than two dimensions is read as a matrix with the output dimension
``dim`` first (0, or 1 for transposed convolutions, whose weight is (in, out, kH, kW)).  The
buffers live in the state dict, so a checkpoint resumes the power iteration exactly.
"""
from __future__ import annotations

from ..autograd import no_grad
from ..creation import randn
from .module import Module
from .parameter import Parameter

__all__ = ["spectral_norm", "remove_spectral_norm", "SpectralNorm"]


class SpectralNorm:
    """The forward pre-hook that recomputes ``module.<name>`` as ``<name>_orig / sigma``."""

    def __init__(self, name: str = "weight", n_power_iterations: int = 1, dim: int = 0,
                 eps: float = 1e-12):
        if not isinstance(n_power_iterations, int) or n_power_iterations <= 0:
            raise ValueError(f"spectral_norm: n_power_iterations must be a positive int, got "
                             f"{n_power_iterations!r}")
        self.name, self.n_power_iterations, self.dim, self.eps = name, n_power_iterations, dim, eps

    def weight_matrix(self, weight):
        """The weight as (output features, everything else): ``dim`` moved first, the rest
        flattened."""
        if self.dim != 0:
            weight = weight.permute(self.dim, *[d for d in range(weight.ndim) if d != self.dim])
        return weight.reshape(weight.shape[0], -1)

    def _normalised(self, vector):
        norm = (vector * vector).sum() ** 0.5
        return vector / max(float(norm), self.eps)

    def power_iteration(self, module):
        """Eq. (2), ``n_power_iterations`` times, written into the ``_u`` / ``_v`` buffers in place."""
        matrix = self.weight_matrix(getattr(module, self.name + "_orig")).data
        u, v = getattr(module, self.name + "_u"), getattr(module, self.name + "_v")
        u_data, v_data = u.data, v.data
        for _ in range(self.n_power_iterations):
            v_data = self._normalised(matrix.T @ u_data)       # eq. (2), v
            u_data = self._normalised(matrix @ v_data)         # eq. (2), u
        u.data[...] = u_data
        v.data[...] = v_data

    def compute_weight(self, module, do_power_iteration: bool):
        """W / sigma(W), with sigma = u^T W v (eq. 3) differentiable in W."""
        weight = getattr(module, self.name + "_orig")
        if do_power_iteration:
            self.power_iteration(module)
        u, v = getattr(module, self.name + "_u"), getattr(module, self.name + "_v")
        sigma = (u * (self.weight_matrix(weight) @ v)).sum()     # eq. (3)
        return weight / sigma                                     # eq. (1)

    def __call__(self, module, inputs):
        object.__setattr__(module, self.name,
                           self.compute_weight(module, do_power_iteration=module.training))

    @staticmethod
    def apply(module, name: str, n_power_iterations: int, dim: int, eps: float):
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, SpectralNorm) and hook.name == name:
                raise RuntimeError(f"spectral_norm: {type(module).__name__}.{name} already has "
                                   f"spectral normalisation")
        weight = module._parameters.get(name)
        if weight is None:
            raise ValueError(f"spectral_norm: {type(module).__name__} has no parameter "
                             f"{name!r} (parameters: {', '.join(module._parameters) or 'none'})")
        if weight.ndim < 2:
            raise ValueError(f"spectral_norm: {type(module).__name__}.{name} has shape "
                             f"{tuple(weight.shape)}; it needs a matrix or a conv kernel")
        fn = SpectralNorm(name, n_power_iterations, dim, eps)
        height, width = fn.weight_matrix(weight).shape
        with no_grad():
            u = randn(height, dtype=weight.dtype, device=weight.device)
            v = randn(width, dtype=weight.dtype, device=weight.device)
            u.data[...] = fn._normalised(u.data)
            v.data[...] = fn._normalised(v.data)
        delattr(module, name)
        module.register_parameter(name + "_orig", weight)
        module.register_buffer(name + "_u", u)
        module.register_buffer(name + "_v", v)
        with no_grad():
            object.__setattr__(module, name, fn.compute_weight(module, do_power_iteration=False))
        module.register_forward_pre_hook(fn)
        return fn


def spectral_norm(module: Module, name: str = "weight", n_power_iterations: int = 1,
                  eps: float = 1e-12, dim: int | None = None) -> Module:
    """Spectrally normalise ``module.<name>`` (eq. 1) by power iteration (eq. 2, 3); returns
    the module.  ``dim`` is the output dimension: 0, except 1 for transposed convolutions."""
    if not isinstance(module, Module):
        raise TypeError(f"spectral_norm expects an nn.Module, got {type(module).__name__}")
    if dim is None:
        from .conv import _ConvTranspose
        dim = 1 if isinstance(module, _ConvTranspose) else 0
    SpectralNorm.apply(module, name, n_power_iterations, dim, eps)
    return module


def remove_spectral_norm(module: Module, name: str = "weight") -> Module:
    """Undo :func:`spectral_norm`: ``<name>`` becomes a parameter again, holding W / sigma as the
    stored u and v estimate it."""
    for key, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, SpectralNorm) and hook.name == name:
            with no_grad():
                weight = hook.compute_weight(module, do_power_iteration=False)
            del module._forward_pre_hooks[key]
            for suffix in ("_orig", "_u", "_v"):
                delattr(module, name + suffix)
            object.__delattr__(module, name)
            module.register_parameter(name, Parameter(weight.detach()))
            return module
    raise ValueError(f"spectral_norm of {name!r} not found in {type(module).__name__}")
