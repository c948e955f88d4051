"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019): one implementation.

The two differ only in how weight decay enters: Adam adds the L2 gradient ``weight_decay * w``
to ``g`` (so the decay is rescaled by the adaptive denominator), AdamW shrinks the weights
directly, ``w <- w * (1 - lr * weight_decay)``, *decoupled* from the gradient statistics.
"""
from __future__ import annotations

import math

from .optimizer import Optimizer, _check_nonnegative

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam (``torch.optim.Adam``), optionally with AMSGrad and decoupled weight decay.

    For each parameter :math:`w` with gradient :math:`g`, at step :math:`t = 1, 2, \dots`::

        g     <- -g                                   if maximize
        w     <- w * (1 - lr * weight_decay)          if decoupled_weight_decay (AdamW)
        g     <- g + weight_decay * w                 otherwise (L2 penalty)
        m     <- beta1 * m + (1 - beta1) * g          first moment   (state "exp_avg")
        v     <- beta2 * v + (1 - beta2) * g^2        second moment  (state "exp_avg_sq")
        v_max <- max(v_max, v)                        if amsgrad     (state "max_exp_avg_sq")
        w     <- w - lr / (1 - beta1^t) * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)

    where ``v_hat`` is ``v_max`` with AMSGrad and ``v`` otherwise.  The two ``1 - beta^t``
    factors are the bias corrections for starting ``m`` and ``v`` at zero; note that ``eps`` is
    added *after* correcting ``sqrt(v)``, exactly as PyTorch does.  ``t`` is the state entry
    ``step`` (a Python int).
    """

    _STATE_REQUIRED = {"step": "count", "exp_avg": "array", "exp_avg_sq": "array"}
    _STATE_OPTIONAL = {"max_exp_avg_sq": "array"}

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, options):
        super()._check_hyperparameters(options)
        _check_nonnegative("epsilon", options["eps"])
        betas = options["betas"]
        if len(betas) != 2:
            raise ValueError(f"Invalid betas: expected two values (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta!r} "
                                 f"(expected 0 <= beta < 1)")
        _check_nonnegative("weight_decay", options["weight_decay"])

    def _update(self, p, grad, state, group):
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        w, xp = p.data, p._xp()
        if not state:
            state["step"] = 0
            state["exp_avg"] = self._zeros_state(p)
            state["exp_avg_sq"] = self._zeros_state(p)
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = self._zeros_state(p)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"].data, state["exp_avg_sq"].data

        if group["maximize"]:
            grad = xp.negative(grad, out=xp.empty_like(w))
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                w *= 1 - lr * weight_decay                 # w <- w (1 - lr wd)
            else:
                decayed = xp.multiply(w, weight_decay, out=xp.empty_like(w))  # g += wd w
                decayed += grad
                grad = decayed

        tmp = xp.subtract(grad, m, out=xp.empty_like(w))   # the one scratch array
        # m <- beta1 m + (1 - beta1) g, written m += (1 - beta1)(g - m) like torch's lerp
        tmp *= 1 - beta1
        m += tmp
        # v <- beta2 v + (1 - beta2) g^2
        v *= beta2
        xp.multiply(grad, grad, out=tmp)
        tmp *= 1 - beta2
        v += tmp
        if group["amsgrad"]:
            v_max = state["max_exp_avg_sq"].data
            xp.maximum(v_max, v, out=v_max)                # v_max <- max(v_max, v)
            v = v_max

        bias_correction1 = 1 - beta1 ** t
        bias_correction2 = 1 - beta2 ** t
        step_size = lr / bias_correction1
        # denom = sqrt(v) / sqrt(1 - beta2^t) + eps
        xp.sqrt(v, out=tmp)
        tmp /= math.sqrt(bias_correction2)
        tmp += eps
        # w <- w - step_size * m / denom
        xp.divide(m, tmp, out=tmp)
        tmp *= step_size
        w -= tmp


class AdamW(Adam):
    r"""Adam with decoupled weight decay (``torch.optim.AdamW``).

    The same update as :class:`Adam` with ``decoupled_weight_decay=True``: before the Adam step
    the weights shrink by ``w <- w * (1 - lr * weight_decay)``, and the decay never enters the
    moment estimates.  The default ``weight_decay`` is ``1e-2``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True)
