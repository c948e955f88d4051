"""Attention: ``scaled_dot_product_attention``, fused (FlashAttention's online softmax).

    out = softmax(scale * q k^T + mask) v,      scale = 1 / sqrt(E) by default

q (..., L, E), k (..., S, E), v (..., S, Ev); the leading (batch, head) dims broadcast as in
PyTorch.  ``attn_mask`` is boolean (True = the key takes part) or additive (float), broadcastable
to (..., L, S); ``is_causal`` hides key j from query i when j > i (top-left aligned, PyTorch's
convention).  A query row that sees no key at all gives 0 (and passes no gradient), as PyTorch's
SDPA does (its older math path gave NaN).

Three paths
-----------
* Fused (the default): :class:`_Attention` runs the tiled online-softmax kernel of
  :mod:`nanogen.kernels.attention` (CPU: numba + BLAS tiles; "cuda": numba.cuda) and saves only
  the per-row log-sum-exp ``lse`` (B, L) besides its inputs and output -- no L x S matrix is kept.
  Its backward is :class:`_AttentionBackward`, a second fused kernel that recomputes
  P = exp(s - lse) tile by tile::

      D = rowsum(gout * out),  dS = P * (gout v^T - D),
      gq = scale dS k,  gk = scale dS^T q,  gv = P^T gout.

  A Function has one output, so under ``create_graph`` the three gradients travel packed in
  one flat array and are sliced apart with (differentiable) ``split`` / ``reshape``; a plain
  backward (which records nothing) hands the kernel's three arrays to the inputs directly.
* Double backward: :class:`_AttentionBackward`'s own backward is composite -- it recomputes P with
  ordinary nanogen ops (quadratic memory, on this path only) and applies the adjoint of the
  formulas above, so gradients of gradients (and higher) work.
* Composite forward: ``dropout_p > 0`` (dropout is applied to P, which the fused kernel never
  forms) and an additive mask that requires grad (so its gradient flows) run the textbook
  ``softmax(scale q k^T + mask) v`` with ordinary ops (quadratic memory).  ``nn.MultiheadAttention``
  uses it too when it must return the attention weights.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import Function, is_grad_enabled
from ..tensor import Tensor
from .activation import dropout as _dropout
from .activation import softmax
from .elementwise import where
from .linalg import matmul
from .shape import broadcast_to, split

__all__ = ["scaled_dot_product_attention"]


def _kernels():
    from ..kernels import attention     # numba is imported on first use, not with nanogen
    return attention


# ================================================================ the fused path
class _Attention(Function):
    """out = softmax(scale q k^T + mask) v for q (B, L, E), k (B, S, E), v (B, S, Ev); keeps
    ``lse`` (B, L) for the backward."""

    keep_output = True

    def forward(self, q, k, v):
        xp = self.xp
        q, k, v = (xp.ascontiguousarray(a) for a in (q, k, v))
        if self.device == "cpu":
            out, lse = _kernels().forward_cpu(q, k, v, self.mask, self.mask_index, self.causal,
                                              self.scale)
        else:
            out, lse = _kernels().forward_cuda(q, k, v, self.mask, self.mask_index, self.causal,
                                               self.scale, xp=xp)
        if self.requires_grad:
            self.lse = lse
        return out

    def backward(self, gy):
        q, k, v = self.inputs
        params = dict(lse=self.lse, mask=self.mask, mask_index=self.mask_index,
                      causal=self.causal, scale=self.scale)
        if not is_grad_enabled():
            # a plain backward (no create_graph) records nothing: the kernel's three arrays go
            # to the inputs as they are, with no packing and no copies
            grads = _backward_arrays(self.device, self.xp, q.data, k.data, v.data,
                                     self.output.data, gy.data, **params)
            return tuple(Tensor._make(g, q._device) for g in grads)
        packed = _AttentionBackward.apply(q, k, v, self.output, gy, **params)
        return _unpack(packed, q.shape, k.shape, v.shape)


def _backward_arrays(device, xp, q, k, v, out, gout, lse, mask, mask_index, causal, scale,
                     packed=None):
    """(gq, gk, gv) arrays from the fused backward kernel of ``device`` (into ``packed``, the
    three flattened back to back, when given)."""
    q, k, v, gout = (xp.ascontiguousarray(a) for a in (q, k, v, gout))
    if device == "cpu":
        return _kernels().backward_cpu(q, k, v, out, lse, gout, mask, mask_index, causal,
                                       scale, packed=packed)
    return _kernels().backward_cuda(q, k, v, out, lse, gout, mask, mask_index, causal, scale,
                                    xp=xp, packed=packed)


def _unpack(packed, *shapes):
    """The flat (gq, gk, gv) array of _AttentionBackward as three tensors (views)."""
    sizes = [int(np.prod(s)) for s in shapes]
    return tuple(p.reshape(*s) for p, s in zip(split(packed, sizes), shapes))


class _AttentionBackward(Function):
    """(q, k, v, out, gout) -> concat(gq, gk, gv) flattened, by the fused backward kernel.

    Its own backward (second derivatives) is composite.  With W = scale (A k^T + q B^T) for the
    cotangents (A, B, C) of (gq, gk, gv), J = <A, gq> + <B, gk> + <C, gv> = <W, dS> + <gout C^T, P>
    and, writing r = rowsum(W * P), H = W * (dP - D) + gout C^T, dS2 = P * (H - rowsum(H * P)):

        dJ/dq    = scale (dS B + dS2 k)          dJ/dk = scale (dS^T A + dS2^T q)
        dJ/dv    = (W * P)^T gout                dJ/dout = -r * gout
        dJ/dgout = (W * P) v - r * out + P C

    P and the other L x S products are formed with ordinary ops: quadratic memory, here only.
    """

    def forward(self, q, k, v, out, gout):
        packed = self.xp.empty(q.size + k.size + k.shape[0] * k.shape[1] * v.shape[2],
                               dtype=q.dtype)
        _backward_arrays(self.device, self.xp, q, k, v, out, gout, self.lse, self.mask,
                         self.mask_index, self.causal, self.scale, packed=packed)
        return packed

    def backward(self, gg):
        q, k, v, out, gout = self.inputs
        A, Bc, C = _unpack(gg, q.shape, k.shape, v.shape)
        scale = self.scale
        mask = None
        if self.mask is not None:
            mask = Tensor._make(self.mask[self.mask_index], q._device)    # (B, Lm, S)
        P = _probabilities(q, k, mask, self.causal, scale)
        dP = matmul(gout, v.mT)
        D = (gout * out).sum(-1, keepdim=True)
        dS = P * (dP - D)
        W = (matmul(A, k.mT) + matmul(q, Bc.mT)) * scale
        WP = W * P
        r = WP.sum(-1, keepdim=True)
        H = W * (dP - D) + matmul(gout, C.mT)
        dS2 = P * (H - (H * P).sum(-1, keepdim=True))
        need = self.needs_input_grad
        gq = (matmul(dS, Bc) + matmul(dS2, k)) * scale if need[0] else None
        gk = (matmul(dS.mT, A) + matmul(dS2.mT, q)) * scale if need[1] else None
        gv = matmul(WP.mT, gout) if need[2] else None
        gout_out = -r * gout if need[3] else None
        g_gout = matmul(WP, v) - r * out + matmul(P, C) if need[4] else None
        return gq, gk, gv, gout_out, g_gout


# ================================================================ the composite path
def _causal_mask(L, S, ref):
    """Additive (L, S) constant: 0 where j <= i, -inf above the diagonal."""
    xp = ref._xp()
    tri = xp.tril(xp.ones((L, S), dtype=bool))
    return Tensor._make(xp.where(tri, ref.dtype.type(0), ref.dtype.type(-np.inf)), ref._device)


def _probabilities(q, k, mask, causal, scale):
    """P = softmax(scale q k^T + mask) with ordinary ops; a row with no visible key is 0.

    ``mask``: None, a bool Tensor (True = attend) or an additive float Tensor."""
    s = matmul(q, k.mT) * scale
    if mask is not None:
        if mask.dtype == np.bool_:
            s = where(mask, s, -np.inf)
        else:
            s = s + mask.to(s.dtype)
    if causal:
        s = s + _causal_mask(q.shape[-2], k.shape[-2], s)
    xp = s._xp()
    seen = xp.isfinite(s.data.max(axis=-1, keepdims=True)) if s.shape[-1] else \
        xp.zeros(s.shape[:-1] + (1,), dtype=bool)
    if bool(seen.all()):
        return softmax(s, -1)
    # rows that see nothing: softmax of zeros, then multiplied by 0
    s = where(seen, s, 0.0)
    return softmax(s, -1) * Tensor._make(seen.astype(s.dtype), s._device)


def _attention_composite(query, key, value, attn_mask, dropout_p, is_causal, scale):
    """(out, weights): the textbook attention with ordinary ops, weights = dropout(P) (the
    weights that multiply v, which is what PyTorch's MultiheadAttention returns)."""
    P = _probabilities(query, key, attn_mask, is_causal, scale)
    if dropout_p > 0:
        P = _dropout(P, dropout_p)
    return matmul(P, value), P


# ================================================================ the public op
def _shape_check(query, key, value, attn_mask, dropout_p, is_causal):
    op = "scaled_dot_product_attention"
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        if t.ndim < 2:
            raise ValueError(f"{op}: {name} must have at least 2 dims (..., length, features), "
                             f"got shape {tuple(t.shape)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"{op}: query has embedding size E={query.shape[-1]} (shape "
                         f"{tuple(query.shape)}) but key has {key.shape[-1]} (shape "
                         f"{tuple(key.shape)})")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"{op}: key has S={key.shape[-2]} positions (shape {tuple(key.shape)}) "
                         f"but value has {value.shape[-2]} (shape {tuple(value.shape)})")
    try:
        batch = np.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    except ValueError:
        raise ValueError(f"{op}: the batch dims of query {tuple(query.shape)}, key "
                         f"{tuple(key.shape)} and value {tuple(value.shape)} do not "
                         f"broadcast") from None
    L, S = query.shape[-2], key.shape[-2]
    if attn_mask is not None:
        if is_causal:
            raise ValueError(f"{op}: pass attn_mask or is_causal=True, not both (fold the causal "
                             f"mask into attn_mask)")
        if not isinstance(attn_mask, Tensor):
            raise TypeError(f"{op}: attn_mask must be a Tensor, got {type(attn_mask).__name__}")
        if attn_mask.dtype != np.bool_ and attn_mask.dtype.kind != "f":
            raise TypeError(f"{op}: attn_mask must be bool or floating point, got "
                            f"{attn_mask.dtype}")
        m = attn_mask.shape
        ok = len(m) >= 1 and m[-1] in (1, S) and (len(m) < 2 or m[-2] in (1, L))
        try:
            batch = np.broadcast_shapes(batch, tuple(m[:-2]))
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{op}: attn_mask of shape {tuple(m)} cannot be broadcast to the "
                             f"attention matrix (..., L, S) = {tuple(batch) + (L, S)}")
        if attn_mask._device != query._device:
            raise RuntimeError(f"{op}: attn_mask is on {attn_mask._device}, query on "
                               f"{query._device}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1), got {dropout_p}")
    return tuple(batch)


def _as_batched(t, batch):
    """t (..., n, d) broadcast to batch + (n, d) and flattened to (B, n, d)."""
    n, d = t.shape[-2:]
    if tuple(t.shape[:-2]) != batch:
        t = broadcast_to(t, batch + (n, d))
    return t.reshape(int(np.prod(batch, dtype=np.int64)), n, d)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None):
    """softmax(scale * query key^T + attn_mask) value, fused (see the module docstring).

    ``dropout_p > 0`` (dropout on the attention weights, applied whenever it is given, as in
    PyTorch: pass ``dropout_p=p if training else 0.0``) and an additive ``attn_mask`` that
    requires grad take the composite, quadratic-memory path."""
    batch = _shape_check(query, key, value, attn_mask, dropout_p, is_causal)
    L, E = query.shape[-2:]
    S, Ev = value.shape[-2:]
    scale = 1.0 / math.sqrt(E) if scale is None else float(scale)
    mask_needs_grad = (attn_mask is not None and attn_mask.requires_grad and is_grad_enabled())
    if dropout_p > 0.0 or mask_needs_grad:
        return _attention_composite(query, key, value, attn_mask, dropout_p, is_causal,
                                    scale)[0]
    mask = mask_index = None
    if attn_mask is not None:
        mask, mask_index = _kernels().compact_mask(attn_mask.data, batch, L, S,
                                                   query.data.dtype, query._xp())
    out = _Attention.apply(_as_batched(query, batch), _as_batched(key, batch),
                           _as_batched(value, batch), mask=mask, mask_index=mask_index,
                           causal=bool(is_causal), scale=scale)
    return out.reshape(*batch, L, Ev)
