"""RMSprop (Hinton's lecture 6e; the centered variant is Graves, 2013)."""
from __future__ import annotations

from .optimizer import Optimizer, _check_nonnegative

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop (``torch.optim.RMSprop``).

    For each parameter :math:`w` with gradient :math:`g`::

        g    <- -g                               if maximize
        g    <- g + weight_decay * w             if weight_decay != 0
        v    <- alpha * v + (1 - alpha) * g^2    running mean of g^2      (state "square_avg")
        gbar <- alpha * gbar + (1 - alpha) * g   running mean of g, if centered ("grad_avg")
        s    <- sqrt(v - gbar^2) + eps           if centered (an estimate of the std of g)
        s    <- sqrt(v) + eps                    otherwise
        b    <- momentum * b + g / s             if momentum > 0          ("momentum_buffer")
        w    <- w - lr * b                       if momentum > 0
        w    <- w - lr * g / s                   otherwise

    ``v``, ``gbar`` and ``b`` start at zero; there is no bias correction.
    """

    _STATE_REQUIRED = {"step": "count", "square_avg": "array"}
    _STATE_OPTIONAL = {"momentum_buffer": "array", "grad_avg": "array"}

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, *, maximize=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, options):
        super()._check_hyperparameters(options)
        _check_nonnegative("epsilon", options["eps"])
        _check_nonnegative("momentum", options["momentum"])
        _check_nonnegative("weight_decay", options["weight_decay"])
        _check_nonnegative("alpha", options["alpha"])

    def _update(self, p, grad, state, group):
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        w, xp = p.data, p._xp()
        if not state:
            state["step"] = 0
            state["square_avg"] = self._zeros_state(p)
        if momentum > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = self._zeros_state(p)
        if group["centered"] and "grad_avg" not in state:
            state["grad_avg"] = self._zeros_state(p)
        state["step"] += 1

        if group["maximize"]:
            grad = xp.negative(grad, out=xp.empty_like(w))
        if weight_decay != 0:
            decayed = xp.multiply(w, weight_decay, out=xp.empty_like(w))  # g += wd w
            decayed += grad
            grad = decayed

        v = state["square_avg"].data
        tmp = xp.multiply(grad, grad, out=xp.empty_like(w))  # the one scratch array
        # v <- alpha v + (1 - alpha) g^2
        v *= alpha
        tmp *= 1 - alpha
        v += tmp
        if group["centered"]:
            gbar = state["grad_avg"].data
            # gbar <- alpha gbar + (1 - alpha) g, written gbar += (1 - alpha)(g - gbar) (lerp)
            xp.subtract(grad, gbar, out=tmp)
            tmp *= 1 - alpha
            gbar += tmp
            # s = sqrt(v - gbar^2) + eps
            xp.multiply(gbar, gbar, out=tmp)
            xp.subtract(v, tmp, out=tmp)
            xp.sqrt(tmp, out=tmp)
        else:
            xp.sqrt(v, out=tmp)                              # s = sqrt(v) + eps
        tmp += eps

        xp.divide(grad, tmp, out=tmp)                        # g / s
        if momentum > 0:
            b = state["momentum_buffer"].data
            b *= momentum                                    # b <- momentum b + g / s
            b += tmp
            xp.multiply(b, lr, out=tmp)                      # w <- w - lr b
        else:
            tmp *= lr                                        # w <- w - lr g / s
        w -= tmp
