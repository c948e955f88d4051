"""Stochastic gradient descent, with momentum, Nesterov momentum and weight decay."""
from __future__ import annotations

from ..tensor import Tensor
from .optimizer import Optimizer, _check_nonnegative

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent (``torch.optim.SGD``).

    For each parameter :math:`w` with gradient :math:`g` at step :math:`t`::

        g  <- -g                              if maximize
        g  <- g + weight_decay * w            (L2 penalty, if weight_decay != 0)
        b  <- g                               at the first step           (if momentum != 0)
        b  <- momentum * b + (1 - dampening) * g   afterwards
        g  <- g + momentum * b                if nesterov
        g  <- b                               otherwise (if momentum != 0)
        w  <- w - lr * g

    This is PyTorch's formulation (Sutskever et al. 2013): the learning rate multiplies the
    velocity rather than being folded into it.  The velocity ``b`` is the state entry
    ``momentum_buffer``.
    """

    _STATE_OPTIONAL = {"momentum_buffer": "array"}

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, options):
        super()._check_hyperparameters(options)
        _check_nonnegative("momentum", options["momentum"])
        _check_nonnegative("weight_decay", options["weight_decay"])
        if options["nesterov"] and (options["momentum"] <= 0 or options["dampening"] != 0):
            raise ValueError(f"Nesterov momentum requires a momentum > 0 and zero dampening, "
                             f"got momentum={options['momentum']!r}, "
                             f"dampening={options['dampening']!r}")

    def _update(self, p, grad, state, group):
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        weight_decay = group["weight_decay"]
        w, xp = p.data, p._xp()

        # d = (±g) + weight_decay * w; `owned` says whether d is a fresh array we may overwrite
        if weight_decay != 0:
            d = xp.multiply(w, weight_decay, out=xp.empty_like(w))
            if group["maximize"]:
                d -= grad
            else:
                d += grad
            owned = True
        elif group["maximize"]:
            d, owned = xp.negative(grad, out=xp.empty_like(w)), True
        else:
            d, owned = grad, False

        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                # b_1 = g_1 (no dampening on the first step, as in PyTorch)
                buf = state["momentum_buffer"] = Tensor._make(xp.array(d, copy=True), p.device)
            else:
                # b <- momentum * b + (1 - dampening) * g
                b = buf.data
                b *= momentum
                if dampening == 0:
                    b += d
                elif owned:      # d is free to overwrite: nesterov needs dampening == 0
                    b += xp.multiply(d, 1 - dampening, out=d)
                else:
                    b += (1 - dampening) * d
            if group["nesterov"]:
                # g <- g + momentum * b
                if owned:
                    d += momentum * buf.data
                else:
                    d, owned = xp.multiply(buf.data, momentum, out=xp.empty_like(w)), True
                    d += grad
            else:
                d, owned = buf.data, False

        # w <- w - lr * g
        if owned:
            d *= lr
            w -= d
        else:
            w -= lr * d
