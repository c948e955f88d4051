"""``nn.utils``: gradient clipping, flattening parameters into one vector, spectral
normalisation (:mod:`.spectral_norm`)."""
from __future__ import annotations

import math

from .. import functional as F
from ..autograd import no_grad
from ..tensor import Tensor
from .spectral_norm import remove_spectral_norm, spectral_norm

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector",
           "vector_to_parameters", "spectral_norm", "remove_spectral_norm"]


def _as_list(parameters):
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False):
    """Rescale the gradients in place so that their joint norm is at most ``max_norm``.

    The total norm is the ``norm_type``-norm of the vector of all gradients concatenated
    (``inf``: the largest absolute entry).  When it exceeds ``max_norm`` every ``.grad`` is
    multiplied by ``max_norm / (total + 1e-6)``.  Returns the total norm *before* clipping,
    as a 0-d tensor.
    """
    params = _as_list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return Tensor(0.0)
    norm_type = float(norm_type)
    xp = grads[0]._xp()
    if math.isinf(norm_type):
        total = max(float(xp.abs(g.data).max()) if g.numel() else 0.0 for g in grads)
    else:
        total = sum(float((xp.abs(g.data.astype("float64")) ** norm_type).sum())
                    for g in grads) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from "
                           f"`parameters` is non-finite ({total}), so it cannot be clipped. Set "
                           f"`error_if_nonfinite=False` to clip anyway.")
    coef = float(max_norm) / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g.data *= g.data.dtype.type(coef)
    return Tensor(total, dtype=grads[0].dtype, device=grads[0].device)


def clip_grad_value_(parameters, clip_value: float):
    """Clamp every gradient entry to [-clip_value, clip_value] in place."""
    clip_value = float(clip_value)
    for p in _as_list(parameters):
        if p.grad is not None:
            xp = p.grad._xp()
            xp.clip(p.grad.data, -clip_value, clip_value, out=p.grad.data)


def parameters_to_vector(parameters):
    """All parameters flattened and concatenated into one 1-D tensor (differentiable)."""
    params = _as_list(parameters)
    if not params:
        raise ValueError("parameters_to_vector: got no parameters")
    return F.cat([p.reshape(-1) for p in params])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the 1-D tensor ``vec`` into the parameters, in place (the
    inverse of :func:`parameters_to_vector`)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"vector_to_parameters: expected vec to be a Tensor, got "
                        f"{type(vec).__name__}")
    params = _as_list(parameters)
    needed = sum(p.numel() for p in params)
    if vec.ndim != 1 or vec.numel() != needed:
        raise ValueError(f"vector_to_parameters: vec has shape {tuple(vec.shape)} but the "
                         f"parameters hold {needed} values (a 1-D vector of that length is "
                         f"needed)")
    offset = 0
    with no_grad():
        for p in params:
            n = p.numel()
            p.copy_(vec.detach()[offset:offset + n].reshape(p.shape))
            offset += n
