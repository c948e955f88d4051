"""Attention: the fused scaled_dot_product_attention and nn.MultiheadAttention.

* float64 gradients and gradients of gradients of the fused op on drawn shapes: broadcast
  leading dims, L != S, E != Ev, boolean / additive / causal masks (fully masked rows included),
  small tile sizes forced so that lengths are not multiples of the tiles;
* the CPU kernel against the plain-NumPy reference (float32 and float64, several tilings) and
  the op against PyTorch's scaled_dot_product_attention (values and gradients);
* memory: the forward keeps O(L) statistics only, and fwd + bwd never allocates an L x S array;
* the composite paths (dropout, an additive mask that requires grad) and their gradients;
* MultiheadAttention against torch.nn.MultiheadAttention with copied weights (need_weights on /
  off, key padding and attention masks, batch_first on / off, kdim / vdim, no bias, causal,
  unbatched), its init, and dropout on the returned weights;
* clear errors for inputs that disagree.
"""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nanogen as ng
import nanogen.functional as F
from nanogen import nn
from nanogen.kernels import _threads
from nanogen.kernels import attention as K
from nanogen.testing import assert_close, gradcheck, gradgradcheck

from .strategies import broadcastable_shapes, float64_arrays, shapes, sides
from tests.oracle import needs_torch, torch

GRAD_CHECKED = {"scaled_dot_product_attention"}

NINF = -np.inf


# ================================================================ drawn cases
class Case:
    """q, k, v arrays (float64), a mask (None, bool or additive array), is_causal, scale and
    the CPU tile sizes to force."""

    def __init__(self, q, k, v, mask, causal, scale, tiles):
        self.q, self.k, self.v = q, k, v
        self.mask, self.causal, self.scale, self.tiles = mask, causal, scale, tiles

    def leaves(self, dtype=np.float64):
        return [ng.tensor(a.astype(dtype), requires_grad=True) for a in (self.q, self.k, self.v)]

    def fn(self, dtype=np.float64):
        mask = None if self.mask is None else ng.tensor(
            self.mask if self.mask.dtype == bool else self.mask.astype(dtype))

        def f(q, k, v):
            with K.tile_sizes(*self.tiles):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                      is_causal=self.causal, scale=self.scale)
        return f

    def torch_out(self, q, k, v):
        mask = None if self.mask is None else torch.tensor(self.mask)
        # torch's math kernel writes into an output shaped like q: broadcast the leading dims
        # of q, k, v and the mask first (PyTorch's documented semantics, which its kernel
        # misses when q has fewer dims than v or the mask)
        extra = () if mask is None else (mask.shape[:-2],)
        lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2], *extra)
        q, k, v = (t.expand(*lead, *t.shape[-2:]) for t in (q, k, v))
        if mask is not None:
            # likewise the mask: torch's kernel rejects one with fewer than two dims (a (S,)
            # mask broadcasts over the query rows by the documented rules)
            mask = mask.expand(*lead, q.shape[-2], k.shape[-2])
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.causal, scale=self.scale)

    def __repr__(self):
        mask = None if self.mask is None else (self.mask.dtype, self.mask.shape)
        return (f"Case(q {self.q.shape}, k {self.k.shape}, v {self.v.shape}, mask {mask}, "
                f"causal={self.causal}, scale={self.scale}, tiles={self.tiles})")


def _additive(shape):
    return hnp.arrays(np.float64, shape, elements=st.one_of(
        st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False), st.just(NINF)))


@st.composite
def cases(draw, max_len=5, max_dim=3):
    """Leading dims that broadcast (q, k and v each a suffix of the batch with some 1s), the
    lengths and feature sizes, a mask form and the tile sizes."""
    batch = draw(shapes(0, 2, 1, 2))
    bq, bk, bv = (draw(broadcastable_shapes(batch)) for _ in range(3))
    L, S = draw(sides(1, max_len)), draw(sides(1, max_len))
    E, Ev = draw(sides(1, max_dim)), draw(sides(1, max_dim))
    q = draw(float64_arrays(bq + (L, E)))
    k = draw(float64_arrays(bk + (S, E)))
    v = draw(float64_arrays(bv + (S, Ev)))
    form = draw(st.sampled_from(["none", "bool", "additive", "causal"]))
    mask = None
    if form in ("bool", "additive"):
        mshape = draw(broadcastable_shapes(batch + (L, S), min_dims=1))
        mask = draw(hnp.arrays(np.bool_, mshape) if form == "bool" else _additive(mshape))
    scale = draw(st.one_of(st.none(), st.floats(0.3, 2.0)))
    tiles = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return Case(q, k, v, mask, form == "causal", scale, tiles)


# ================================================================ gradients
@given(case=cases())
def test_gradcheck(case):
    gradcheck(case.fn(), case.leaves())


@given(case=cases(max_len=4, max_dim=2))
def test_gradgradcheck(case):
    gradgradcheck(case.fn(), case.leaves())


def test_third_derivative_through_the_composite_double_backward():
    """The double backward is made of ordinary ops, so it differentiates again."""
    rng = np.random.default_rng(3)
    q, k, v = (ng.tensor(rng.standard_normal(s), requires_grad=True)
               for s in ((2, 3, 2), (2, 4, 2), (2, 4, 3)))

    def second(q, k, v):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        (gq,) = ng.autograd.grad((out * out).sum(), q, create_graph=True)
        (gk,) = ng.autograd.grad((gq * gq).sum(), k, create_graph=True)
        return gk
    gradcheck(second, [q, k, v])


# ================================================================ forward values
def _reference_inputs(case):
    """The op's flattening of a case: (q, k, v) as (B, n, d) arrays and the compact mask."""
    batch = np.broadcast_shapes(case.q.shape[:-2], case.k.shape[:-2], case.v.shape[:-2],
                                *(() if case.mask is None else (case.mask.shape[:-2],)))
    flat = [np.broadcast_to(a, batch + a.shape[-2:]).reshape((-1,) + a.shape[-2:])
            for a in (case.q, case.k, case.v)]
    mask = index = None
    if case.mask is not None:
        mask, index = K.compact_mask(case.mask, batch, case.q.shape[-2], case.k.shape[-2],
                                     np.dtype(np.float64))
    return batch, flat, mask, index


@given(case=cases(max_len=9, max_dim=4), dtype=st.sampled_from([np.float64, np.float32]))
def test_cpu_kernels_match_the_reference(case, dtype):
    batch, (q, k, v), mask, index = _reference_inputs(case)
    scale = case.scale if case.scale is not None else 1.0 / math.sqrt(q.shape[-1])
    g = np.random.default_rng(0).standard_normal(q.shape[:2] + v.shape[-1:])
    ref_out, ref_lse = K.reference_forward(q, k, v, mask, index, case.causal, scale)
    ref_grads = K.reference_backward(q, k, v, g, mask, index, case.causal, scale)
    c = [np.ascontiguousarray(a, dtype=dtype) for a in (q, k, v, g)]
    m = None if mask is None else mask.astype(dtype)
    with K.tile_sizes(*case.tiles):
        out, lse = K.forward_cpu(c[0], c[1], c[2], m, index, case.causal, scale)
        grads = K.backward_cpu(c[0], c[1], c[2], out, lse, c[3], m, index, case.causal, scale)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    assert out.dtype == dtype and lse.dtype == dtype
    assert_close(out, ref_out, **tol, msg="out")
    seen = np.isfinite(ref_lse)                         # -inf on rows that see nothing
    assert np.array_equal(np.isfinite(lse), seen)
    assert_close(lse[seen], ref_lse[seen], **tol, msg="lse")
    for name, a, r in zip(("gq", "gk", "gv"), grads, ref_grads):
        assert a.dtype == dtype
        assert_close(a, r, **tol, msg=name)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("B,L,S", [(3, 70, 130), (3, 130, 70), (1, 129, 300)])
def test_default_tiles_with_remainders(B, L, S, causal, monkeypatch):
    """Lengths that leave partial tiles at the default tile sizes, a key padding mask, float32,
    work split across threads (by batch, and for B = 1 by sets of key tiles) however small."""
    monkeypatch.setattr(_threads, "PARALLEL_WORK", 0)
    rng = np.random.default_rng(L + S)
    E, Ev = 16, 8
    q, k = (rng.standard_normal((B, n, E)).astype(np.float32) for n in (L, S))
    v = rng.standard_normal((B, S, Ev)).astype(np.float32)
    g = rng.standard_normal((B, L, Ev)).astype(np.float32)
    keep = rng.random((B, 1, 1, S)) > 0.2
    keep[..., 0] = True
    mask, index = (None, None) if causal else K.compact_mask(keep, (B,), L, S, q.dtype)
    out, lse = K.forward_cpu(q, k, v, mask, index, causal, 0.25)
    grads = K.backward_cpu(q, k, v, out, lse, g, mask, index, causal, 0.25)
    f64 = [a.astype(np.float64) for a in (q, k, v, g)]
    m64 = None if mask is None else mask.astype(np.float64)
    assert_close(out, K.reference_forward(*f64[:3], m64, index, causal, 0.25)[0],
                 rtol=1e-4, atol=1e-5)
    for a, r in zip(grads, K.reference_backward(*f64, m64, index, causal, 0.25)):
        assert_close(a, r, rtol=1e-3, atol=1e-5)


@needs_torch
@given(case=cases(max_len=6))
# a 1-D mask with 2-D k and v (CI found that torch's kernel needs the mask broadcast first)
@example(case=Case(np.zeros((1, 1, 1, 1)), np.zeros((1, 1)), np.zeros((1, 1)),
                   np.ones((1,), dtype=bool), False, None, (1, 1)))
def test_matches_torch(case):
    ours = case.leaves()
    out = case.fn()(*ours)
    theirs = [torch.tensor(a, requires_grad=True) for a in (case.q, case.k, case.v)]
    expected = case.torch_out(*theirs)
    assert_close(out, expected.detach().numpy(), rtol=1e-9, atol=1e-12)
    g = np.random.default_rng(1).standard_normal(expected.shape)
    out.backward(ng.tensor(g))
    expected.backward(torch.tensor(g))
    for a, b in zip(ours, theirs):
        assert_close(a.grad, b.grad.numpy(), rtol=1e-8, atol=1e-11)


@needs_torch
@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_fully_masked_rows_give_zero_like_torch(kind):
    """A query that sees no key: output 0 and no gradient (PyTorch's SDPA agrees)."""
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), \
        rng.standard_normal((2, 5, 2))
    keep = np.ones((3, 5), dtype=bool)
    keep[1] = False
    mask = keep if kind == "bool" else np.where(keep, 0.0, NINF)
    ours = [ng.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*ours, attn_mask=ng.tensor(mask))
    out.backward(ng.tensor(np.ones(out.shape)))
    assert np.all(out.detach().numpy()[:, 1] == 0.0)
    assert np.all(ours[0].grad.numpy()[:, 1] == 0.0)
    theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    expected = torch.nn.functional.scaled_dot_product_attention(*theirs,
                                                                attn_mask=torch.tensor(mask))
    expected.backward(torch.ones(expected.shape, dtype=torch.float64))
    assert_close(out, expected.detach().numpy(), rtol=1e-9, atol=1e-12)
    for a, b in zip(ours, theirs):
        assert_close(a.grad, b.grad.numpy(), rtol=1e-8, atol=1e-11)


def test_float32_stays_float32():
    rng = np.random.default_rng(0)
    q, k, v = (ng.tensor(rng.standard_normal((2, 4, 3)).astype(np.float32), requires_grad=True)
               for _ in range(3))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out.sum().backward()
    assert out.dtype == ng.float32
    assert all(t.grad.dtype == ng.float32 for t in (q, k, v))


def test_causal_ignores_future_keys():
    """With is_causal, changing keys / values after position i leaves row i unchanged."""
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((1, 2, 9, 4)) for _ in range(3))
    base = F.scaled_dot_product_attention(*map(ng.tensor, (q, k, v)), is_causal=True).numpy()
    k2, v2 = k.copy(), v.copy()
    k2[..., 5:, :] += 3.0
    v2[..., 5:, :] -= 2.0
    with K.tile_sizes(2, 3):
        moved = F.scaled_dot_product_attention(*map(ng.tensor, (q, k2, v2)),
                                               is_causal=True).numpy()
    assert_close(moved[..., :5, :], base[..., :5, :], rtol=1e-12, atol=1e-12)
    assert not np.allclose(moved[..., 5:, :], base[..., 5:, :])


# ================================================================ memory
def test_forward_saves_only_row_statistics():
    """Besides its inputs and output, the fused Function keeps lse (B, L): no L x S array."""
    B, L, S, E = 2, 48, 40, 4
    rng = np.random.default_rng(0)
    q, k, v = (ng.tensor(rng.standard_normal((B, n, E)), requires_grad=True)
               for n in (L, S, S))
    keep = ng.tensor(rng.random((B, 1, S)) > 0.3)           # a key padding mask
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    fn = out.grad_fn
    arrays = {name: a for name, a in vars(fn).items() if isinstance(a, np.ndarray)}
    assert arrays["lse"].shape == (B, L)
    assert all(a.size < L * S for a in arrays.values()), {n: a.shape for n, a in arrays.items()}


def test_fwd_bwd_never_allocates_a_quadratic_array():
    """Peak NumPy allocation of forward + backward at L = S = 1024 stays far below one L x S
    float32 matrix (4 MiB); the composite path needs several of them."""
    L, E = 1024, 16
    rng = np.random.default_rng(0)
    q, k, v = (ng.tensor(rng.standard_normal((1, L, E)).astype(np.float32), requires_grad=True)
               for _ in range(3))
    F.scaled_dot_product_attention(q, k, v).sum().backward()       # compile / warm up
    quadratic = L * L * 4

    def peak(fn):
        tracemalloc.start()
        try:
            fn().sum().backward()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    fused = peak(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert fused < quadratic / 4, fused
    keep = ng.tensor(np.ones((L,), dtype=bool))
    composite = peak(lambda: F.attention._attention_composite(q, k, v, keep, 0.0, False,
                                                             0.25)[0])
    assert composite > 2 * quadratic, composite


# ================================================================ the composite paths
def test_dropout_path_gradients():
    """dropout_p > 0 runs the composite path; with the generator reseeded per call the function
    is deterministic, so its gradients (and second derivatives) can be checked."""
    rng = np.random.default_rng(2)
    leaves = [ng.tensor(rng.standard_normal(s), requires_grad=True)
              for s in ((2, 3, 2), (2, 4, 2), (2, 4, 3))]

    def f(q, k, v):
        ng.manual_seed(7)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.4, is_causal=True)
    out = f(*leaves)
    plain = F.scaled_dot_product_attention(*leaves, is_causal=True)
    assert not np.allclose(out.detach().numpy(), plain.detach().numpy())
    gradcheck(f, leaves)
    gradgradcheck(f, leaves)


def test_dropout_zeroes_weights_and_rescales_the_rest():
    """MultiheadAttention in training returns dropout(P): each weight is 0 or P / (1 - p)."""
    ng.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, dropout=0.5, dtype=ng.float64)
    x = ng.tensor(np.random.default_rng(0).standard_normal((3, 6, 8)))
    _, w_eval = mha.eval()(x, x, x, average_attn_weights=False)
    _, w_train = mha.train()(x, x, x, average_attn_weights=False)
    p, d = w_eval.detach().numpy(), w_train.detach().numpy()
    kept = d != 0
    assert 0.2 < kept.mean() < 0.8
    assert_close(d[kept], p[kept] * 2.0, rtol=1e-12)


def test_additive_mask_that_requires_grad_gets_its_gradient():
    rng = np.random.default_rng(4)
    leaves = [ng.tensor(rng.standard_normal(s), requires_grad=True)
              for s in ((2, 3, 2), (2, 4, 2), (2, 4, 3), (3, 4))]

    def f(q, k, v, m):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    gradcheck(f, leaves)
    gradgradcheck(f, leaves)
    # the composite and the fused path agree on the value
    fused = F.scaled_dot_product_attention(*leaves[:3], attn_mask=leaves[3].detach())
    assert_close(f(*leaves), fused.detach().numpy(), rtol=1e-12, atol=1e-14)


# ================================================================ errors
def test_errors_name_the_problem():
    q, k, v = ng.randn(2, 3, 4), ng.randn(2, 5, 4), ng.randn(2, 5, 6)
    with pytest.raises(ValueError, match=r"query has embedding size E=4.*key has 3"):
        F.scaled_dot_product_attention(q, ng.randn(2, 5, 3), v)
    with pytest.raises(ValueError, match=r"key has S=5 .*value has 4"):
        F.scaled_dot_product_attention(q, k, ng.randn(2, 4, 6))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 4\) cannot be broadcast.*"
                                         r"\(2, 3, 5\)"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=ng.ones(3, 4, dtype=ng.bool))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 3, 5\) cannot"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=ng.zeros(4, 3, 5))
    with pytest.raises(ValueError, match="not both"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=ng.zeros(3, 5), is_causal=True)
    with pytest.raises(ValueError, match="batch dims .* do not broadcast"):
        F.scaled_dot_product_attention(ng.randn(3, 3, 4), k, v)
    with pytest.raises(TypeError, match="dtype mismatch"):
        F.scaled_dot_product_attention(q.double(), k, v)
    with pytest.raises(ValueError, match="dropout_p"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=1.0)
    with pytest.raises(ValueError, match=r"embed_dim \(10\) must be divisible by num_heads \(4\)"):
        nn.MultiheadAttention(10, 4)
    mha = nn.MultiheadAttention(8, 2)
    x = ng.randn(2, 3, 8)
    with pytest.raises(ValueError, match="query has 6 features"):
        mha(ng.randn(2, 3, 6), x, x)
    with pytest.raises(ValueError, match=r"key_padding_mask of shape \(2, 4\) should be"):
        mha(x, x, x, key_padding_mask=ng.zeros(2, 4, dtype=ng.bool))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 4\) should be"):
        mha(x, x, x, attn_mask=ng.zeros(3, 4, dtype=ng.bool))


# ================================================================ MultiheadAttention
def _pair(E, H, **kw):
    """A torch and a nanogen MultiheadAttention (float64) with the same weights."""
    theirs = torch.nn.MultiheadAttention(E, H, dtype=torch.float64,
                                         **{"batch_first": True, **kw})
    ours = nn.MultiheadAttention(E, H, dtype=ng.float64, **{"batch_first": True, **kw})
    state = {name: ng.tensor(t.detach().numpy()) for name, t in theirs.state_dict().items()}
    ours.load_state_dict(state)
    return theirs, ours


def _masks(rng, form, N, H, L, S):
    """(key_padding_mask, attn_mask) as NumPy arrays in PyTorch's MHA convention (True / -inf =
    masked); every query keeps at least one key."""
    kpm = am = None
    if "kpm" in form:
        kpm = rng.random((N, S)) < 0.4
        kpm[:, 0] = False
        if "float" in form:
            kpm = np.where(kpm, NINF, rng.standard_normal((N, S)))
    if "am" in form:
        shape = (N * H, L, S) if "3d" in form else (L, S)
        am = rng.random(shape) < 0.4
        am[..., 0] = False
        if "float" in form:
            am = np.where(am, NINF, rng.standard_normal(shape))
    return kpm, am


MASK_FORMS = ["none", "kpm", "kpm-float", "am", "am-3d-float", "kpm+am", "kpm-float+am-3d"]


@needs_torch
@pytest.mark.parametrize("form", MASK_FORMS)
@pytest.mark.parametrize("need_weights,average", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kind", ["self", "cross", "kdim-vdim", "no-bias"])
def test_multihead_attention_matches_torch(kind, batch_first, need_weights, average, form):
    rng = np.random.default_rng(10 * MASK_FORMS.index(form) + len(kind))
    E, H, N, L, S = 8, 2, 3, 4, 5
    kw = {"kdim": 3, "vdim": 5} if kind == "kdim-vdim" else \
        {"bias": False} if kind == "no-bias" else {}
    theirs, ours = _pair(E, H, batch_first=batch_first, **kw)
    if kind == "self":
        S = L
    x_q = rng.standard_normal((N, L, E))
    x_k = x_q if kind == "self" else rng.standard_normal((N, S, kw.get("kdim", E)))
    x_v = x_q if kind == "self" else rng.standard_normal((N, S, kw.get("vdim", E)))
    if not batch_first:
        x_q, x_k, x_v = (np.ascontiguousarray(a.transpose(1, 0, 2)) for a in (x_q, x_k, x_v))
    kpm, am = _masks(rng, form, N, H, L, S)

    def run(lib, mod, make):
        leaves = [make(x_q)]
        k = leaves[0] if kind == "self" else make(x_k)
        v = leaves[0] if kind == "self" else make(x_v)
        leaves += [] if kind == "self" else [k, v]
        wrap = (lambda a: None if a is None else lib.tensor(a))
        out, w = mod(leaves[0], k, v, key_padding_mask=wrap(kpm), attn_mask=wrap(am),
                     need_weights=need_weights, average_attn_weights=average)
        (out * lib.tensor(np.cos(np.arange(out.numel())).reshape(tuple(out.shape)))).sum() \
            .backward()
        return out, w, leaves

    t_out, t_w, t_leaves = run(torch, theirs, lambda a: torch.tensor(a, requires_grad=True))
    n_out, n_w, n_leaves = run(ng, ours, lambda a: ng.tensor(a, requires_grad=True))
    assert_close(n_out, t_out.detach().numpy(), rtol=1e-9, atol=1e-12, msg="output")
    if need_weights:
        assert_close(n_w, t_w.detach().numpy(), rtol=1e-9, atol=1e-12, msg="weights")
    else:
        assert n_w is None and t_w is None
    for a, b in zip(n_leaves, t_leaves):
        assert_close(a.grad, b.grad.numpy(), rtol=1e-8, atol=1e-11, msg="input grad")
    t_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, t_params[name].grad.numpy(), rtol=1e-8, atol=1e-11, msg=name)


@needs_torch
@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("with_kpm", [False, True])
def test_multihead_attention_causal_matches_torch(need_weights, with_kpm):
    """is_causal=True: PyTorch needs the causal attn_mask as well (as a hint); nanogen builds it."""
    rng = np.random.default_rng(5)
    E, H, N, L = 8, 4, 2, 6
    theirs, ours = _pair(E, H)
    x = rng.standard_normal((N, L, E))
    kpm = None
    if with_kpm:
        kpm = rng.random((N, L)) < 0.3
        kpm[:, 0] = False
    tri = torch.ones(L, L, dtype=torch.bool).triu(1)           # True = masked (MHA's bool)
    tx, nx = torch.tensor(x, requires_grad=True), ng.tensor(x, requires_grad=True)
    t_out, t_w = theirs(tx, tx, tx, attn_mask=tri, is_causal=True, need_weights=need_weights,
                        key_padding_mask=None if kpm is None else torch.tensor(kpm))
    n_out, n_w = ours(nx, nx, nx, is_causal=True, need_weights=need_weights,
                      key_padding_mask=None if kpm is None else ng.tensor(kpm))
    assert_close(n_out, t_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    if need_weights:
        assert_close(n_w, t_w.detach().numpy(), rtol=1e-9, atol=1e-12)
    t_out.sum().backward()
    n_out.sum().backward()
    assert_close(nx.grad, tx.grad.numpy(), rtol=1e-8, atol=1e-11)
    assert_close(ours.in_proj_weight.grad, theirs.in_proj_weight.grad.numpy(), rtol=1e-8,
                 atol=1e-11)


@needs_torch
def test_multihead_attention_unbatched_matches_torch():
    rng = np.random.default_rng(6)
    theirs, ours = _pair(6, 3, kdim=4, vdim=2)
    q, k, v = rng.standard_normal((4, 6)), rng.standard_normal((5, 4)), \
        rng.standard_normal((5, 2))
    kpm = np.array([False, True, False, False, True])
    t_out, t_w = theirs(*map(torch.tensor, (q, k, v)), key_padding_mask=torch.tensor(kpm),
                        average_attn_weights=False)
    n_out, n_w = ours(*map(ng.tensor, (q, k, v)), key_padding_mask=ng.tensor(kpm),
                      average_attn_weights=False)
    assert n_out.shape == (4, 6) and n_w.shape == (3, 4, 5)
    assert_close(n_out, t_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    assert_close(n_w, t_w.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_multihead_attention_fully_masked_query_gives_zero_weights():
    """A batch whose keys are all padded: weights 0 (PyTorch: NaN) and an output equal to the
    output projection's bias."""
    mha = nn.MultiheadAttention(4, 2, dtype=ng.float64)
    ng.nn.init.uniform_(mha.out_proj.bias, -1.0, 1.0)
    x = ng.tensor(np.random.default_rng(0).standard_normal((2, 3, 4)))
    kpm = ng.tensor(np.array([[True] * 3, [False, True, False]]))
    for need in (True, False):
        out, w = mha(x, x, x, key_padding_mask=kpm, need_weights=need)
        out = out.detach().numpy()
        assert_close(out[0], np.broadcast_to(mha.out_proj.bias.detach().numpy(), (3, 4)))
        assert np.isfinite(out).all()
        if need:
            w = w.detach().numpy()
            assert np.all(w[0] == 0)
            assert_close(w[1].sum(-1), np.ones(3))


def test_multihead_attention_parameters_and_init():
    ng.manual_seed(0)
    mha = nn.MultiheadAttention(64, 4)
    names = dict(mha.named_parameters())
    assert set(names) == {"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"}
    w = mha.in_proj_weight.detach().numpy()
    bound = math.sqrt(6.0 / (64 + 3 * 64))          # xavier_uniform_ on (3E, E)
    assert w.shape == (192, 64) and np.abs(w).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3.0)) < 0.05 * bound
    assert np.all(mha.in_proj_bias.detach().numpy() == 0)
    assert np.all(mha.out_proj.bias.detach().numpy() == 0)
    cross = nn.MultiheadAttention(8, 2, kdim=3, vdim=5, bias=False)
    shapes_ = {n: tuple(p.shape) for n, p in cross.named_parameters()}
    assert shapes_ == {"q_proj_weight": (8, 8), "k_proj_weight": (8, 3),
                       "v_proj_weight": (8, 5), "out_proj.weight": (8, 8)}
    assert cross.in_proj_weight is None and cross.in_proj_bias is None


def test_multihead_attention_double_backward():
    """A gradient penalty through the fused path: |d sum(out^2) / dx|^2 is differentiable in x,
    and its gradient reaches the weights."""
    mha = nn.MultiheadAttention(4, 2, dtype=ng.float64)
    x = ng.tensor(np.random.default_rng(1).standard_normal((2, 3, 4)), requires_grad=True)

    def penalty(x):
        out, _ = mha(x, x, x, need_weights=False, is_causal=True)
        (g,) = ng.autograd.grad(out.pow(2).sum(), x, create_graph=True)
        return (g * g).sum()
    gradcheck(penalty, [x])
    mha.zero_grad()
    penalty(x).backward()
    assert np.abs(mha.in_proj_weight.grad.numpy()).sum() > 0
