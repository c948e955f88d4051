"""Losses with PyTorch's signatures and ``reduction`` ('mean' | 'sum' | 'none').

Each is written with differentiable ops, so every loss can be differentiated twice.  The
numerically delicate ones use stable forms: BCE-with-logits is softplus(x) - x·y, cross entropy
is log_softmax followed by the negative log-likelihood of the target class.
"""
from __future__ import annotations

from ..tensor import Tensor
from .activation import log_softmax, softplus
from .elementwise import abs as abs_, clamp, log, where
from .indexing import gather

__all__ = ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss", "kl_div",
           "gaussian_nll_loss"]


_TINY = 3.720075976020836e-44   # e^-100


def _reduce(loss, reduction, op):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _same_shape(input, target, op):
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: target must be a Tensor, got {type(target).__name__}")
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"{op}: input shape {tuple(input.shape)} and target shape "
                         f"{tuple(target.shape)} differ")


def mse_loss(input, target, reduction="mean"):
    """ℓ = (x - y)²."""
    _same_shape(input, target, "mse_loss")
    d = input - target
    return _reduce(d * d, reduction, "mse_loss")


def l1_loss(input, target, reduction="mean"):
    """ℓ = |x - y|."""
    _same_shape(input, target, "l1_loss")
    return _reduce(abs_(input - target), reduction, "l1_loss")


def huber_loss(input, target, reduction="mean", delta=1.0):
    """½ d² for |d| < δ, δ (|d| - ½ δ) otherwise."""
    _same_shape(input, target, "huber_loss")
    d = input - target
    ad = abs_(d)
    loss = where(ad < delta, d * d * 0.5, (ad - 0.5 * delta) * delta)
    return _reduce(loss, reduction, "huber_loss")


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    if beta == 0:
        return l1_loss(input, target, reduction)
    return huber_loss(input, target, reduction, beta) * (1.0 / beta)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """ℓ = -[y log p + (1 - y) log(1 - p)]; each log is bounded below by -100 as in PyTorch."""
    _same_shape(input, target, "binary_cross_entropy")
    if input.numel():
        lo, hi = float(input.data.min()), float(input.data.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"binary_cross_entropy: input must be probabilities in [0, 1], got "
                             f"values in [{lo:g}, {hi:g}] (use binary_cross_entropy_with_logits "
                             f"for logits)")
    # log(clamp(p, e^-100)) >= -100 keeps both the loss and its gradient finite at p = 0 or 1
    loss = -(target * log(clamp(input, min=_TINY)) + (1.0 - target) * log(clamp(1.0 - input,
                                                                                 min=_TINY)))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy")


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):
    """ℓ = softplus(x) - x y  (= -[y log σ(x) + (1-y) log(1-σ(x))], stable for any x).
    With ``pos_weight`` w:  ℓ = (1 - y) x + (1 + (w - 1) y) softplus(-x)."""
    _same_shape(input, target, "binary_cross_entropy_with_logits")
    if pos_weight is None:
        loss = softplus(input) - input * target
    else:
        loss = (1.0 - target) * input + (1.0 + (pos_weight - 1.0) * target) * softplus(-input)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """ℓ_n = -w[y_n] · input[n, y_n] for log-probabilities ``input`` of shape (N, C, d1, ...) and
    class indices ``target`` of shape (N, d1, ...).  'mean' divides by Σ w[y_n] over the
    targets that are not ``ignore_index``."""
    if not isinstance(target, Tensor) or target.data.dtype.kind not in "iu":
        raise TypeError("nll_loss: target must be an integer tensor of class indices")
    if input.ndim < 1:
        raise ValueError("nll_loss: input needs a class dimension")
    if input.ndim == 1:         # one unbatched sample: 'none' gives a 0-d loss, as in PyTorch
        if tuple(target.shape) != ():
            raise ValueError(f"nll_loss: an unbatched input of shape {tuple(input.shape)} needs "
                             f"a 0-d target, got shape {tuple(target.shape)}")
        loss = nll_loss(input.unsqueeze(0), target.reshape(1), weight, ignore_index, reduction)
        return loss.reshape(()) if reduction == "none" else loss
    n, c = input.shape[0], input.shape[1]
    expected = (n,) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"nll_loss: input of shape {tuple(input.shape)} needs a target of "
                         f"shape {expected}, got {tuple(target.shape)}")
    xp = input._xp()
    t = target.data
    valid = t != ignore_index
    safe = xp.where(valid, t, 0)
    if valid.any() and (int(safe.min()) < 0 or int(safe.max()) >= c):
        raise IndexError(f"nll_loss: target class out of range [0, {c}): got values in "
                         f"[{int(t[valid].min())}, {int(t[valid].max())}]")
    picked = gather(input, 1, Tensor._make(safe[:, None], input._device)).squeeze(1)
    w = valid.astype(input.dtype)
    if weight is not None:
        w = w * weight.data[safe]
    w_t = Tensor._make(w, input._device)
    loss = -picked * w_t
    if reduction == "mean":
        return loss.sum() / float(w.sum())
    return _reduce(loss, reduction, "nll_loss")


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Cross entropy from logits of shape (N, C, ...): ``nll_loss(log_softmax(x, 1), y)``.
    ``target`` holds class indices, or class probabilities with the input's shape.  With label
    smoothing ε the target becomes (1 - ε) one_hot(y) + ε / C."""
    logp = log_softmax(input, dim=1 if input.ndim > 1 else 0)
    c = input.shape[1] if input.ndim > 1 else input.shape[0]
    if isinstance(target, Tensor) and target.data.dtype.kind == "f":
        _same_shape(input, target, "cross_entropy")
        q = target * (1.0 - label_smoothing) + label_smoothing / c
        per_class = logp * q
        if weight is not None:
            shape = [1, c] + [1] * (input.ndim - 2) if input.ndim > 1 else [c]
            per_class = per_class * weight.reshape(shape)
        loss = -per_class.sum(1 if input.ndim > 1 else 0)
        return _reduce(loss, reduction, "cross_entropy")
    nll = nll_loss(logp, target, weight, ignore_index, reduction)
    if label_smoothing == 0.0:
        return nll
    # the smoothing term: -ε/C Σ_c w_c log p_c, reduced like the nll term
    lp = logp if input.ndim > 1 else logp.unsqueeze(0)
    if weight is not None:
        lp = lp * weight.reshape([1, c] + [1] * (lp.ndim - 2))
    xp = input._xp()
    valid = Tensor._make((target.data != ignore_index).astype(input.dtype).reshape(
        (lp.shape[0],) + tuple(lp.shape[2:])), input._device)
    smooth = -lp.sum(1) * valid
    if reduction == "mean":
        if weight is not None:
            t = xp.where(target.data != ignore_index, target.data, 0)
            denom = float((weight.data[t] * valid.data).sum())
        else:
            denom = float(valid.data.sum())
        smooth = smooth.sum() / denom
    else:
        smooth = _reduce(smooth, reduction, "cross_entropy").reshape(nll.shape)
    return nll * (1.0 - label_smoothing) + smooth * (label_smoothing / c)


def kl_div(input, target, reduction="mean", log_target=False):
    """KL(target ‖ exp(input)) pointwise: y (log y - x), with ``input`` log-probabilities."""
    if log_target:
        from .elementwise import exp
        loss = exp(target) * (target - input)
    else:
        safe = where(target > 0, target, 1.0)
        loss = where(target > 0, target * (log(safe) - input), 0.0 * input)
    if reduction == "batchmean":
        return loss.sum() / input.shape[0]
    return _reduce(loss, reduction, "kl_div")


def _gaussian_variance(input, var):
    """``var`` in a shape that broadcasts against ``input``, by PyTorch's rules: a float (one
    variance for all), input's shape (one per element), input's shape without its last dim
    (one per row: unsqueezed to (..., 1)), or input's number of dims where the sides of var
    that differ from input's add up to 1 (one dim of 1, e.g. (N, 1) or (B, 1, H, W)).
    Negative variances are refused, as in PyTorch."""
    from .shape import unsqueeze
    if isinstance(var, (int, float)) and not isinstance(var, bool):
        if var < 0:
            raise ValueError(f"gaussian_nll_loss: var must not be negative, got {var}")
        return Tensor._make(input._xp().full(input.shape, float(var), dtype=input.data.dtype),
                            input._device)
    if not isinstance(var, Tensor):
        raise TypeError(f"gaussian_nll_loss: var must be a Tensor or a float, got "
                        f"{type(var).__name__}")
    if bool((var.data < 0).any()):
        raise ValueError("gaussian_nll_loss: var has negative entries")
    shape, vshape = tuple(input.shape), tuple(var.shape)
    if vshape == shape:
        return var
    if vshape == shape[:-1]:
        return unsqueeze(var, -1)
    if len(vshape) == len(shape) and sum(v for i, v in zip(shape, vshape) if i != v) == 1:
        return var
    raise ValueError(f"gaussian_nll_loss: var of shape {vshape} does not fit input of shape "
                     f"{shape}: give input's shape, input's shape without its last dim, or "
                     f"input's shape with one dim of size 1")


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """½ (log max(σ², eps) + (x - μ)² / max(σ², eps)) (+ ½ log 2π when ``full``); the shapes
    ``var`` may take are PyTorch's (see :func:`_gaussian_variance`)."""
    import math
    var = _gaussian_variance(input, var)
    # PyTorch clamps the variance without stopping its gradient: add the clamp as a constant
    lifted = var.detach()
    v = var + (clamp(lifted, min=eps) - lifted)
    loss = 0.5 * (log(v) + (input - target) * (input - target) / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction, "gaussian_nll_loss")
