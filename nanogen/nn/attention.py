"""Attention layers: ``MultiheadAttention`` (PyTorch's parameters, masks and outputs).

    q_h, k_h, v_h = x_q W_q^h + b_q^h,  x_k W_k^h + b_k^h,  x_v W_v^h + b_v^h
    head_h        = softmax(q_h k_h^T / sqrt(d_head) + mask) v_h
    out           = concat_h(head_h) W_o^T + b_o

Masks follow ``torch.nn.MultiheadAttention``: ``key_padding_mask`` (N, S) and ``attn_mask``
(L, S) or (N * num_heads, L, S) are boolean with True = *masked out* (the opposite of
``scaled_dot_product_attention``'s boolean mask) or additive floats.  They are merged into one
mask for :func:`~nanogen.functional.scaled_dot_product_attention` without expanding a key padding
mask to (N, H, L, S).
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..creation import empty
from ..functional.attention import _attention_composite
from ..tensor import Tensor
from . import init
from .linear import Linear
from .module import Module
from .parameter import Parameter

__all__ = ["MultiheadAttention"]


class MultiheadAttention(Module):
    """Multi-head attention with PyTorch's parameters and init.

    Parameters: ``in_proj_weight`` (3E, E) when key and value have E features, else
    ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim), ``v_proj_weight`` (E, vdim);
    ``in_proj_bias`` (3E,) and ``out_proj`` (a Linear(E, E)).  Init: xavier_uniform_ on the input
    projections, zero biases (``out_proj.weight`` keeps Linear's default).

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights or None)``.  Inputs are
    (N, L, E) with ``batch_first=True`` (the default here -- PyTorch's is False), (L, N, E)
    otherwise, or unbatched (L, E).  ``need_weights=False`` runs the fused kernel;
    ``need_weights=True`` forms the attention matrix to return it: (N, L, S) averaged over heads,
    or (N, H, L, S) with ``average_attn_weights=False`` -- after dropout, as in PyTorch.
    ``is_causal=True`` without ``attn_mask`` applies the causal mask (PyTorch insists on an
    ``attn_mask`` as well and then treats the flag as a hint that the mask is causal; here a
    given ``attn_mask`` is used as is).  A query that sees no key gets zero weights and a zero
    head output (PyTorch's weights path gives NaN there).
    ``add_bias_kv`` and ``add_zero_attn`` keep PyTorch's argument positions but are not
    implemented.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=True, device=None,
                 dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"MultiheadAttention: embed_dim and num_heads must be positive, got "
                             f"{embed_dim} and {num_heads}")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by "
                             f"num_heads ({num_heads})")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are not "
                                      "supported")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        kw = {"device": device, "dtype": dtype}
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, **kw))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = Parameter(empty(embed_dim, embed_dim, **kw))
            self.k_proj_weight = Parameter(empty(embed_dim, self.kdim, **kw))
            self.v_proj_weight = Parameter(empty(embed_dim, self.vdim, **kw))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(empty(3 * embed_dim, **kw))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, **kw)
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)

    # ------------------------------------------------------------------ projections
    def _projections(self, query, key, value):
        """q, k, v as (N, H, n, d_head); one GEMM for self-attention with packed weights."""
        E, H, d = self.embed_dim, self.num_heads, self.head_dim
        N, L = query.shape[:2]
        S = key.shape[1]
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:E], b[E:2 * E], b[2 * E:])
        if self._qkv_same_embed_dim and query is key and key is value:
            qkv = F.linear(query, self.in_proj_weight, b)            # (N, L, 3E)
            qkv = qkv.reshape(N, L, 3, H, d).permute(2, 0, 3, 1, 4)   # (3, N, H, L, d)
            return qkv[0], qkv[1], qkv[2]
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            wq, wk, wv = w[:E], w[E:2 * E], w[2 * E:]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        q = F.linear(query, wq, bq).reshape(N, L, H, d).permute(0, 2, 1, 3)
        k = F.linear(key, wk, bk).reshape(N, S, H, d).permute(0, 2, 1, 3)
        v = F.linear(value, wv, bv).reshape(N, S, H, d).permute(0, 2, 1, 3)
        return q, k, v

    # ------------------------------------------------------------------ masks
    def _merged_mask(self, attn_mask, key_padding_mask, N, L, S, ref):
        """One mask for scaled_dot_product_attention, broadcastable to (N, H, L, S): bool with
        True = attend when every given mask is bool, else additive (bool parts as 0 / -inf)."""
        parts = []
        if attn_mask is not None:
            if attn_mask.ndim == 2 and tuple(attn_mask.shape) == (L, S):
                parts.append(attn_mask)
            elif attn_mask.ndim == 3 and tuple(attn_mask.shape) == (N * self.num_heads, L, S):
                parts.append(attn_mask.reshape(N, self.num_heads, L, S))
            else:
                raise ValueError(f"MultiheadAttention: attn_mask of shape "
                                 f"{tuple(attn_mask.shape)} should be (L, S) = {(L, S)} or "
                                 f"(N * num_heads, L, S) = {(N * self.num_heads, L, S)}")
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (N, S):
                raise ValueError(f"MultiheadAttention: key_padding_mask of shape "
                                 f"{tuple(key_padding_mask.shape)} should be (N, S) = {(N, S)}")
            parts.append(key_padding_mask.reshape(N, 1, 1, S))
        for p in parts:
            if p.dtype != np.bool_ and p.dtype.kind != "f":
                raise TypeError(f"MultiheadAttention: masks must be bool or floating point, got "
                                f"{p.dtype}")
        if not parts:
            return None
        if all(p.dtype == np.bool_ for p in parts):
            keep = F.logical_not(parts[0])
            for p in parts[1:]:
                keep = F.logical_and(keep, F.logical_not(p))
            return keep
        xp = ref._xp()
        total = None
        for p in parts:
            if p.dtype == np.bool_:
                p = Tensor._make(xp.where(p.data, ref.dtype.type(-np.inf), ref.dtype.type(0)),
                                 ref._device)
            else:
                p = p.to(ref.dtype)
            total = p if total is None else total + p
        return total

    # ------------------------------------------------------------------ forward
    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        batched = query.ndim == 3
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(f"MultiheadAttention: query, key and value must all be 3-D "
                             f"(batched) or 2-D (unbatched), got shapes {tuple(query.shape)}, "
                             f"{tuple(key.shape)}, {tuple(value.shape)}")
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            same_kv = key is value
            same_qk = query is key
            query = query.transpose(0, 1)
            key = query if same_qk else key.transpose(0, 1)
            value = key if same_kv else value.transpose(0, 1)
        for name, t, want in (("query", query, self.embed_dim), ("key", key, self.kdim),
                              ("value", value, self.vdim)):
            if t.shape[-1] != want:
                raise ValueError(f"MultiheadAttention: {name} has {t.shape[-1]} features (shape "
                                 f"{tuple(t.shape)}) but the layer expects {want}")
        N, L = query.shape[:2]
        S = key.shape[1]
        if key.shape[:2] != value.shape[:2] or key.shape[0] != N:
            raise ValueError(f"MultiheadAttention: key {tuple(key.shape)} and value "
                             f"{tuple(value.shape)} must have the batch size of query "
                             f"{tuple(query.shape)} and the same length")
        q, k, v = self._projections(query, key, value)
        mask = self._merged_mask(attn_mask, key_padding_mask, N, L, S, q)
        causal = bool(is_causal) and mask is None
        if is_causal and mask is not None and attn_mask is None:
            # a key padding mask (or need_weights) with is_causal: fold the triangle in
            tri = Tensor._make(q._xp().tril(q._xp().ones((L, S), dtype=bool)), q._device)
            mask = F.logical_and(mask, tri) if mask.dtype == np.bool_ else \
                F.where(tri, mask, -np.inf)
        p = self.dropout if self.training else 0.0
        scale = 1.0 / math.sqrt(self.head_dim)
        if need_weights:
            heads, weights = _attention_composite(q, k, v, mask, p, causal, scale)
            if average_attn_weights:
                weights = weights.mean(1)
        else:
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                                   is_causal=causal, scale=scale)
            weights = None
        out = self.out_proj(heads.permute(0, 2, 1, 3).reshape(N, L, self.embed_dim))
        if not batched:
            out = out.squeeze(0)
            weights = weights.squeeze(0) if weights is not None else None
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")
