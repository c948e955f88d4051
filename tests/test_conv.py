"""The convolution family: conv1d / conv2d, conv_transpose1d / conv_transpose2d, masked_conv2d
(PixelCNN), causal_conv1d (WaveNet), their kernels and their nn modules.

* hypothesis draws CONSISTENT geometries (kernel, stride, padding incl. "same" / "valid",
  dilation, groups dividing both channel counts, an input large enough for one output);
* the kernels (im2col / col2im, asymmetric padding, tap subsets) match the plain-NumPy reference
  and are adjoint; the three GEMM drivers match theirs, in float32 and float64;
* every public op passes float64 gradcheck + gradgradcheck (the family is closed under
  differentiation) and matches the reference and PyTorch (when installed);
* <conv2d(x, w), y> = <x, conv_transpose2d(y, w)>;
* masked conv: causality in raster order (mask A / B, colour groups), equality with a dense conv
  of the masked weight, and the kernel really skips the masked taps; causal_conv1d causality;
* nn modules: shapes, default init bounds, outputs equal to PyTorch's with copied weights, repr;
* misuse raises errors that name the problem.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import nanogen as ng
import nanogen.functional as F
from nanogen import nn
from nanogen.kernels import conv as K
from nanogen.kernels import _threads
from nanogen.kernels import conv_direct as D
from nanogen.testing import assert_close, gradcheck, gradgradcheck

from tests.oracle import needs_torch, torch
from .strategies import examples

GRAD_CHECKED = {"conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "masked_conv2d",
                "causal_conv1d"}


# ================================================================ drawing consistent geometries
@dataclass
class ConvCase:
    """A drawn call: ``op(x, w, b, **kwargs)`` with float64 arrays."""
    nd: int
    transposed: bool
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    kwargs: dict = field(default_factory=dict)

    def fn(self):
        name = f"conv_transpose{self.nd}d" if self.transposed else f"conv{self.nd}d"
        op, kw = getattr(F, name), self.kwargs
        if self.b is None:
            return lambda x, w: op(x, w, None, **kw)
        return lambda x, w, b: op(x, w, b, **kw)

    def arrays(self):
        return [self.x, self.w] + ([] if self.b is None else [self.b])

    def leaves(self, dtype=np.float64):
        return [ng.tensor(a.astype(dtype), requires_grad=True) for a in self.arrays()]

    def torch_fn(self):
        name = f"conv_transpose{self.nd}d" if self.transposed else f"conv{self.nd}d"
        return lambda *a: getattr(torch.nn.functional, name)(*a, **self.kwargs)


def _values(shape):
    """Standard-normal float64 values from a drawn seed (cheap to shrink, never degenerate)."""
    return st.integers(0, 2**32 - 1).map(
        lambda s: np.random.default_rng(s).standard_normal(shape))


def _one_or_pair(draw, values, nd):
    """An int, or a tuple with one value per spatial dim."""
    v = tuple(draw(values) for _ in range(nd))
    return v[0] if draw(st.booleans()) and len(set(v)) == 1 else v


@st.composite
def conv_cases(draw, nd=2, transposed=False, max_side=4, bias=None, batch=(1, 2)):
    """A consistent conv (or transposed conv) call on small float64 arrays."""
    groups = draw(st.integers(1, 2))
    cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    d = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    eff = tuple(di * (ki - 1) + 1 for di, ki in zip(d, k))
    n = draw(st.integers(*batch))
    if not transposed:
        form = draw(st.sampled_from(["int", "same", "valid"]))
        s = (1,) * nd if form == "same" else tuple(draw(st.integers(1, 2)) for _ in range(nd))
        if form == "int":
            p = tuple(draw(st.integers(0, (e - 1) // 2 + 1)) for e in eff)
            pad = p[0] if nd == 1 or (p[0] == p[1] and draw(st.booleans())) else p
        else:
            p, pad = (0,) * nd, form
        lo = [max(1, e - 2 * pi) if form == "int" else e for e, pi in zip(eff, p)]
        size = tuple(draw(st.integers(m, m + max_side - 1)) for m in lo)
        kwargs = dict(stride=s[0] if len(set(s)) == 1 else s, padding=pad,
                      dilation=d[0] if len(set(d)) == 1 else d, groups=groups)
        x = draw(_values((n, cg * groups) + size))
        w = draw(_values((og * groups, cg) + k))
        nout = og * groups
    else:
        s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        p = tuple(draw(st.integers(0, (e - 1) // 2)) for e in eff)
        op = tuple(draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d))
        # p <= (e - 1) / 2 keeps the output size (i - 1)s - 2p + e + op positive
        size = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        kwargs = dict(stride=s, padding=p, output_padding=op, groups=groups, dilation=d)
        x = draw(_values((n, cg * groups) + size))
        w = draw(_values((cg * groups, og) + k))
        nout = og * groups
    use_bias = draw(st.booleans()) if bias is None else bias
    b = draw(_values((nout,))) if use_bias else None
    return ConvCase(nd, transposed, x, w, b, kwargs)


@st.composite
def geometries(draw, max_side=4):
    """A kernel-level Geometry: asymmetric padding (bottom / right may be negative: a crop), any
    tap subset, stride, dilation, groups."""
    groups = draw(st.integers(1, 2))
    C, O = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pt, pl = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    pb, pr = draw(st.integers(-1, 2)), draw(st.integers(-1, 2))
    if draw(st.integers(0, 2)) == 0:    # "same": stride 1, output size = input size (the
        sh = sw = 1                     # kernels' one-shifted-run fast path)
        pb, pr = dh * (kh - 1) - pt, dw * (kw - 1) - pl
    hmin, wmin = max(1, dh * (kh - 1) + 1 - pt - pb), max(1, dw * (kw - 1) + 1 - pl - pr)
    H = draw(st.integers(hmin, hmin + max_side))
    W = draw(st.integers(wmin, wmin + max_side))
    taps = draw(st.lists(st.integers(0, kh * kw - 1), min_size=1, max_size=kh * kw, unique=True))
    return K.Geometry.make(C, H, W, O, kh, kw, (sh, sw), (pt, pb, pl, pr), (dh, dw), groups,
                           taps)


def _rand(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def _ref_geometry(case, x_shape):
    """The kernel Geometry of a drawn (non-transposed) conv, worked out independently of F."""
    nd, kw = case.nd, case.kwargs
    k = case.w.shape[2:]
    tup = (lambda v: (v,) * nd if isinstance(v, int) else tuple(v))
    s, d = tup(kw["stride"]), tup(kw["dilation"])
    if kw["padding"] == "valid":
        pads = [(0, 0)] * nd
    elif kw["padding"] == "same":
        pads = [(di * (ki - 1) // 2, di * (ki - 1) - di * (ki - 1) // 2) for di, ki in zip(d, k)]
    else:
        pads = [(p, p) for p in tup(kw["padding"])]
    if nd == 1:
        s, d, k, pads, x_shape = (1,) + s, (1,) + d, (1,) + k, [(0, 0)] + pads, \
            x_shape[:2] + (1,) + x_shape[2:]
    return K.Geometry.make(x_shape[1], x_shape[2], x_shape[3], case.w.shape[0], *k, s,
                           (*pads[0], *pads[1]), d, kw["groups"])


# ================================================================ kernels
@given(g=geometries(), n=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_im2col_col2im_match_reference_and_are_adjoint(g, n, seed):
    rng = np.random.default_rng(seed)
    x = _rand(rng, (n, g.C, g.H, g.W))
    cols = K.im2col(x, g)
    assert cols.shape == (g.C * g.T, n, g.Ho * g.Wo)
    np.testing.assert_array_equal(cols, K.im2col_reference(x, g))
    z = _rand(rng, cols.shape)
    back = K.col2im(z, g)
    assert_close(back, K.col2im_reference(z, g), rtol=1e-12, atol=1e-12)
    # the drivers let col2im zero the padding reads of its scratch input (a faster path)
    assert_close(K.col2im(z.copy(), g, overwrite_cols=True), back, rtol=1e-12, atol=1e-12)
    assert math.isclose(float((cols * z).sum()), float((x * back).sum()), rel_tol=1e-9,
                        abs_tol=1e-9)


def test_reference_im2col_reads_the_right_pixels():
    """The reference itself, pinned on a hand-worked case: 3x3 input, 2x2 kernel, stride 1,
    padding top 1 / left 0 / bottom -1 / right 0, taps (0, 1) and (1, 0)."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    g = K.Geometry.make(1, 3, 3, 1, 2, 2, (1, 1), (1, -1, 0, 0), (1, 1), 1, taps=(1, 2))
    assert (g.Ho, g.Wo) == (2, 2)
    cols = K.im2col_reference(x, g).reshape(2, 2, 2)
    # tap (0, 1): rows iy = oy - 1, cols ix = ox + 1   -> [[pad, pad], [1, 2]]
    np.testing.assert_array_equal(cols[0], [[0, 0], [1, 2]])
    # tap (1, 0): rows iy = oy, cols ix = ox            -> [[0, 1], [3, 4]]
    np.testing.assert_array_equal(cols[1], [[0, 1], [3, 4]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(g=geometries(), n=st.integers(1, 3), seed=st.integers(0, 2**16), bias=st.booleans())
def test_gemm_drivers_match_reference(dtype, g, n, seed, bias):
    rng = np.random.default_rng(seed)
    x = _rand(rng, (n, g.C, g.H, g.W), dtype)
    w = _rand(rng, (g.O, g.Cg, g.kh, g.kw), dtype)
    b = _rand(rng, (g.O,), dtype) if bias else None
    gy = _rand(rng, (n, g.O, g.Ho, g.Wo), dtype)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    y = K.conv(x, w, b, g)
    assert y.dtype == dtype
    assert_close(y, K.conv_reference(x, w, b, g), **tol)
    bt = _rand(rng, (g.C,), dtype) if bias else None        # conv_transpose's output: C
    gx = K.conv_transpose(gy, w, bt, g)
    assert gx.dtype == dtype
    assert_close(gx, K.conv_transpose_reference(gy, w, bt, g), **tol)
    gw = K.conv_weight(x, gy, g)
    assert gw.dtype == dtype
    assert_close(gw, K.conv_weight_reference(x, gy, g), **tol)
    off = np.ones(g.kh * g.kw, bool)
    off[list(g.taps)] = False
    assert not gw.reshape(g.O, g.Cg, -1)[:, :, off].any(), "weight gradient outside the taps"


def test_chunked_drivers_agree_with_one_chunk(monkeypatch):
    """Batches split into several GEMM chunks (and a ragged last chunk) give the same result."""
    rng = np.random.default_rng(0)
    g = K.Geometry.make(4, 6, 5, 6, 3, 3, (1, 2), (1, 1, 1, 0), (1, 1), 2)
    x, w = _rand(rng, (7, 4, 6, 5)), _rand(rng, (6, 2, 3, 3))
    gy = _rand(rng, (7, 6, g.Ho, g.Wo))
    whole = K.conv(x, w, None, g), K.conv_transpose(gy, w, None, g), K.conv_weight(x, gy, g)
    per_sample = 4 * 9 * g.Ho * g.Wo * 8
    monkeypatch.setitem(K.CHUNK_BYTES, "cpu", 3 * per_sample)     # chunks of 3, 3, 1
    chunked = K.conv(x, w, None, g), K.conv_transpose(gy, w, None, g), K.conv_weight(x, gy, g)
    for a, b in zip(whole, chunked):
        assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_forward_keeps_columns_for_the_weight_gradient(monkeypatch):
    """A small conv's forward hands im2col(x) to its weight gradient (no second im2col); the
    fused backwards (both gradients in one pass) match the references."""
    rng = np.random.default_rng(11)
    g = K.Geometry.make(4, 5, 6, 6, 3, 2, (2, 1), (1, 0, 0, 1), (1, 2), 2, taps=(0, 3, 4))
    x, w = _rand(rng, (3, 4, 5, 6)), _rand(rng, (6, 2, 3, 2))
    gy = _rand(rng, (3, 6, g.Ho, g.Wo))
    y, cols = K.conv(x, w, None, g, keep_cols=True)
    np.testing.assert_array_equal(cols, K.im2col_reference(x, g))
    assert_close(y, K.conv_reference(x, w, None, g), rtol=1e-12, atol=1e-12)
    gx, gw = K.conv_backward(x, w, gy, g, cols=cols)
    assert_close(gx, K.conv_transpose_reference(gy, w, None, g), rtol=1e-12, atol=1e-12)
    assert_close(gw, K.conv_weight_reference(x, gy, g), rtol=1e-12, atol=1e-12)
    z = _rand(rng, (3, 4, 5, 6))       # conv_transpose's backward: conv(z, w), conv_weight(z, gy)
    a, b = K.conv_transpose_backward(z, w, gy, g)
    assert_close(a, K.conv_reference(z, w, None, g), rtol=1e-12, atol=1e-12)
    assert_close(b, K.conv_weight_reference(z, gy, g), rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(K, "KEEP_COLS_BYTES", 0)          # too big to keep: recomputed
    assert K.conv(x, w, None, g, keep_cols=True)[1] is None


@given(g=geometries(), n=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_stride_one_input_gradient_is_the_flipped_conv(g, n, seed):
    """conv_transpose(y, w, g) = conv(y, w', g') for stride 1: taps, padding and kernel flipped,
    C and O swapped (per group), whenever the flipped padding is not negative."""
    g = g._replace(sh=1, sw=1)
    ey, ex = g.dh * (g.kh - 1), g.dw * (g.kw - 1)
    assume(min(ey - g.pt, ey - g.pb, ex - g.pl, ex - g.pr) >= 0 and g.Ho > 0 and g.Wo > 0)
    rng = np.random.default_rng(seed)
    y, w = _rand(rng, (n, g.O, g.Ho, g.Wo)), _rand(rng, (g.O, g.Cg, g.kh, g.kw))
    ga = K.adjoint_geometry(g)
    assert (ga.C, ga.O, ga.Ho, ga.Wo, ga.groups) == (g.O, g.C, g.H, g.W, g.groups)
    flipped = K.conv_reference(y, K.adjoint_weight(w, g), None, ga)
    assert_close(flipped, K.conv_transpose_reference(y, w, None, g), rtol=1e-12, atol=1e-12)


def test_input_gradient_takes_the_flipped_conv_when_it_pays(monkeypatch):
    """A stride-1 'same' conv with more input than output channels computes its input gradient
    as im2col(gy) and a GEMM (no col2im); one with fewer keeps col2im."""
    rng = np.random.default_rng(3)
    narrowing = K.Geometry.make(6, 5, 4, 2, 3, 3, (1, 1), (1, 1, 1, 1))
    widening = K.Geometry.make(2, 5, 4, 6, 3, 3, (1, 1), (1, 1, 1, 1))
    calls = []
    col2im = K.col2im
    monkeypatch.setattr(K, "col2im", lambda *a, **k: calls.append(1) or col2im(*a, **k))
    for g, uses_col2im in ((narrowing, False), (widening, True)):
        calls.clear()
        x, w = _rand(rng, (3, g.C, g.H, g.W)), _rand(rng, (g.O, g.C, 3, 3))
        gy = _rand(rng, (3, g.O, g.Ho, g.Wo))
        gx, gw = K.conv_backward(x, w, gy, g)
        assert_close(gx, K.conv_transpose_reference(gy, w, None, g), rtol=1e-12, atol=1e-12)
        assert_close(gw, K.conv_weight_reference(x, gy, g), rtol=1e-12, atol=1e-12)
        assert bool(calls) == uses_col2im


@st.composite
def direct_geometries(draw):
    """Geometries of one group with channel counts around the direct kernel's blocks of 32
    (27 and 53 leave a partial block) and widths that are not multiples of its 7 pixels."""
    channels = st.sampled_from([1, 3, 27, 32, 53, 64])
    return draw(geometries(max_side=9))._replace(C=draw(channels), O=draw(channels), groups=1)


@examples(1.5)
@given(g=direct_geometries(), n=st.integers(1, 3), seed=st.integers(0, 2**16),
       split=st.booleans())
def test_direct_kernel_matches_reference(g, n, seed, split):
    """float32 on the CPU: forward, input and weight gradients through whichever kernel the
    drivers pick (the direct one where ``conv_direct.supported``) match the references, run
    on one thread or (``split``) with the rows / samples split over the threads."""
    saved = _threads.PARALLEL_WORK
    _threads.PARALLEL_WORK = 0 if split else saved
    try:
        _check_float32_drivers(g, n, seed)
    finally:
        _threads.PARALLEL_WORK = saved


def _check_float32_drivers(g, n, seed):
    rng = np.random.default_rng(seed)
    x, w = _rand(rng, (n, g.C, g.H, g.W)), _rand(rng, (g.O, g.C, g.kh, g.kw))
    b, gy = _rand(rng, (g.O,)), _rand(rng, (n, g.O, g.Ho, g.Wo))
    f32 = [a.astype(np.float32) for a in (x, w, b, gy)]
    tol = dict(rtol=2e-4, atol=2e-4 * max(1.0, math.sqrt(g.C * g.T)))
    assert_close(K.conv(*f32[:3], g), K.conv_reference(x, w, b, g), **tol)
    if D.supported(g, np.float32):
        assert_close(D.conv(*f32[:3], g, K._tap_offsets(g)), K.conv_reference(x, w, b, g),
                     **tol)
    gx, gw = K.conv_backward(f32[0], f32[1], f32[3], g)
    tol_gx = dict(rtol=2e-4, atol=2e-4 * max(1.0, math.sqrt(g.O * g.T)))
    assert_close(gx, K.conv_transpose_reference(gy, w, None, g), **tol_gx)
    assert_close(gw, K.conv_weight_reference(x, gy, g),
                 rtol=2e-4, atol=2e-4 * max(1.0, math.sqrt(n * g.Ho * g.Wo)))


def test_float32_convs_take_the_direct_kernel(monkeypatch):
    """A float32 3x3 32->32 conv runs forward and input gradient without im2col or col2im;
    float64 (the gradient checks) keeps the im2col kernels."""
    g = K.Geometry.make(32, 9, 8, 32, 3, 3, (1, 1), (1, 1, 1, 1))
    assert D.supported(g, np.float32) and not D.supported(g, np.float64)
    assert not D.supported(g._replace(O=40), np.float32)      # 24 of 64 lanes would be padding
    rng = np.random.default_rng(5)
    x, w = _rand(rng, (2, 32, 9, 8), np.float32), _rand(rng, (32, 32, 3, 3), np.float32)
    gy = _rand(rng, (2, 32, 9, 8), np.float32)
    im2col, used = K.im2col, []
    monkeypatch.setattr(K, "im2col", lambda *a, **k: used.append(1) or im2col(*a, **k))
    monkeypatch.setattr(K, "col2im", lambda *a, **k: pytest.fail("col2im called"))
    K.conv(x, w, None, g)
    K.conv_transpose(gy, w, None, g)
    assert not used
    K.conv(x.astype(np.float64), w.astype(np.float64), None, g)
    assert used


def test_pointwise_conv_needs_no_im2col(monkeypatch):
    """A 1x1 stride-1 unpadded conv multiplies x directly (forward and both gradients)."""
    def forbidden(*a, **k):
        raise AssertionError("im2col called for a 1x1 conv")
    rng = np.random.default_rng(1)
    x, w, b = _rand(rng, (2, 4, 3, 5)), _rand(rng, (6, 2, 1, 1)), _rand(rng, (6,))
    expected = K.conv_reference(x, w, b, K.Geometry.make(4, 3, 5, 6, 1, 1, groups=2))
    monkeypatch.setattr(K, "im2col", forbidden)
    monkeypatch.setattr(K, "col2im", forbidden)
    xt, wt = ng.tensor(x, requires_grad=True), ng.tensor(w, requires_grad=True)
    y = F.conv2d(xt, wt, ng.tensor(b), groups=2)
    assert_close(y, expected, rtol=1e-12)
    y.sum().backward()
    assert xt.grad is not None and wt.grad is not None


# ================================================================ forward vs reference / torch
@examples(2)
@given(case=st.sampled_from([1, 2]).flatmap(lambda nd: conv_cases(nd=nd)))
def test_conv_forward_matches_reference(case):
    y = case.fn()(*[ng.tensor(a) for a in case.arrays()])
    g = _ref_geometry(case, case.x.shape)
    x = case.x if case.nd == 2 else case.x[:, :, None]
    w = case.w if case.nd == 2 else case.w[:, :, None]
    expected = K.conv_reference(x, w, case.b, g)
    assert_close(y, expected.reshape(y.shape), rtol=1e-10, atol=1e-10)


@needs_torch
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@examples(2.5)
@given(case=st.tuples(st.sampled_from([1, 2]), st.booleans()).flatmap(
    lambda a: conv_cases(nd=a[0], transposed=a[1])))
def test_forward_matches_torch(case):
    y = case.fn()(*[ng.tensor(a) for a in case.arrays()])
    expected = case.torch_fn()(*[torch.from_numpy(a) for a in case.arrays()])
    assert_close(y, expected.numpy(), rtol=1e-10, atol=1e-10)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_stays_float32_and_matches_torch(dtype):
    rng = np.random.default_rng(2)
    x, w, b = _rand(rng, (3, 4, 9, 8), dtype), _rand(rng, (6, 2, 3, 3), dtype), \
        _rand(rng, (6,), dtype)
    xt, wt, bt = (ng.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv2d(xt, wt, bt, stride=2, padding=1, groups=2)
    assert y.dtype == dtype
    (y * y).sum().backward()
    assert xt.grad.dtype == wt.grad.dtype == bt.grad.dtype == dtype
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=2, padding=1, groups=2)
    (ty * ty).sum().backward()
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for ours, theirs in ((y, ty), (xt.grad, tx.grad), (wt.grad, tw.grad), (bt.grad, tb.grad)):
        assert_close(ours.detach(), theirs.detach().numpy(), rtol=tol, atol=tol)


def test_unbatched_input_as_pytorch():
    rng = np.random.default_rng(3)
    x, w = _rand(rng, (4, 5, 6)), _rand(rng, (6, 2, 3, 3))
    y = F.conv2d(ng.tensor(x), ng.tensor(w), padding=1, groups=2)
    assert y.shape == (6, 5, 6)
    assert_close(y, F.conv2d(ng.tensor(x[None]), ng.tensor(w), padding=1, groups=2)[0])
    x1, w1 = _rand(rng, (2, 7)), _rand(rng, (3, 2, 2))
    assert F.conv1d(ng.tensor(x1), ng.tensor(w1)).shape == (3, 6)
    assert F.conv_transpose1d(ng.tensor(x1), ng.tensor(_rand(rng, (2, 3, 2)))).shape == (3, 8)
    assert F.causal_conv1d(ng.tensor(x1), ng.tensor(w1)).shape == (3, 7)


# ================================================================ gradients
def _check_grads(fn, leaves, mode=None):
    """gradcheck + gradgradcheck; elementwise ("full") on small draws, random directions once
    inputs and output together exceed ~100 numbers (gradgradcheck perturbs both)."""
    if mode is None:
        n = sum(t.numel() for t in leaves) + fn(*leaves).numel()
        mode = "full" if n <= 100 else "directional"
    gradcheck(fn, leaves, mode=mode, n_directions=3)
    gradgradcheck(fn, leaves, mode=mode, n_directions=3)


@pytest.mark.parametrize("nd,transposed", [(1, False), (2, False), (1, True), (2, True)],
                         ids=["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"])
@given(data=st.data())
def test_conv_gradcheck_gradgradcheck(nd, transposed, data):
    case = data.draw(conv_cases(nd=nd, transposed=transposed, max_side=3, batch=(1, 2)))
    _check_grads(case.fn(), case.leaves())


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("color_groups", [1, 3])
@given(data=st.data())
def test_masked_conv2d_gradcheck_gradgradcheck(mask_type, color_groups, data):
    k = data.draw(st.sampled_from([1, 3]))
    cin, cout = (color_groups * data.draw(st.integers(1, 2)) for _ in range(2))
    h, w = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    use_bias = data.draw(st.booleans())
    arrays = [_rand(rng, (1, cin, h, w)), _rand(rng, (cout, cin, k, k))] + \
        ([_rand(rng, (cout,))] if use_bias else [])
    leaves = [ng.tensor(a, requires_grad=True) for a in arrays]
    if use_bias:
        def fn(x, wt, b):
            return F.masked_conv2d(x, wt, b, mask_type, color_groups)
    else:
        def fn(x, wt):
            return F.masked_conv2d(x, wt, None, mask_type, color_groups)
    _check_grads(fn, leaves)


@given(data=st.data())
def test_causal_conv1d_gradcheck_gradgradcheck(data):
    k, d = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    L, C, O = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 2)), \
        data.draw(st.integers(1, 2))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    leaves = [ng.tensor(_rand(rng, s), requires_grad=True) for s in ((2, C, L), (O, C, k), (O,))]
    _check_grads(lambda x, w, b: F.causal_conv1d(x, w, b, dilation=d), leaves)


def test_gradcheck_directional_on_a_larger_conv():
    """A DCGAN-like 4x4 stride-2 conv, too big for the elementwise check."""
    rng = np.random.default_rng(4)
    leaves = [ng.tensor(_rand(rng, s), requires_grad=True)
              for s in ((2, 3, 10, 10), (5, 3, 4, 4), (5,))]
    _check_grads(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), leaves,
                 mode="directional")
    leaves = [ng.tensor(_rand(rng, s), requires_grad=True)
              for s in ((2, 5, 5, 5), (5, 3, 4, 4), (3,))]
    _check_grads(lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1), leaves,
                 mode="directional")


# ================================================================ adjointness
@examples(2)
@given(case=conv_cases(nd=2, bias=False), seed=st.integers(0, 2**16))
def test_conv2d_and_conv_transpose2d_are_adjoint(case, seed):
    """<conv2d(x, w), y> = <x, conv_transpose2d(y, w)> with the same stride / padding /
    dilation / groups; output_padding recovers x's size."""
    kw = dict(case.kwargs)
    if isinstance(kw["padding"], str):
        g = _ref_geometry(case, case.x.shape)
        # an odd total of "same" padding is asymmetric: conv_transpose2d has no counterpart
        assume(g.pt == g.pb and g.pl == g.pr)
        kw["padding"] = (g.pt, g.pl)
    x, w = ng.tensor(case.x), ng.tensor(case.w)
    y = F.conv2d(x, w, None, **kw)
    s = (kw["stride"],) * 2 if isinstance(kw["stride"], int) else kw["stride"]
    p = (kw["padding"],) * 2 if isinstance(kw["padding"], int) else kw["padding"]
    d = (kw["dilation"],) * 2 if isinstance(kw["dilation"], int) else kw["dilation"]
    k = case.w.shape[2:]
    op = tuple(case.x.shape[2 + i] - ((y.shape[2 + i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1)
                                      + 1) for i in range(2))
    r = ng.tensor(np.random.default_rng(seed).standard_normal(y.shape))
    xt = F.conv_transpose2d(r, w, None, stride=s, padding=p, output_padding=op,
                            groups=kw["groups"], dilation=d)
    assert xt.shape == x.shape
    lhs, rhs = float((y * r).sum()), float((x * xt).sum())
    assert math.isclose(lhs, rhs, rel_tol=1e-9, abs_tol=1e-9)


# ================================================================ PixelCNN masked convolution
def _input_grad_of_pixel(x, w, i, j, mask_type, color_groups, out_channels=None):
    """d (sum of y[0, out_channels, i, j]) / dx for masked_conv2d."""
    xt = ng.tensor(x, requires_grad=True)
    y = F.masked_conv2d(xt, ng.tensor(w), None, mask_type, color_groups)
    sel = slice(None) if out_channels is None else out_channels
    (g,) = ng.autograd.grad(y[0, sel, i, j].sum(), xt)
    return g.numpy()[0]


@pytest.mark.parametrize("mask_type", ["A", "B"])
@given(k=st.sampled_from([1, 3, 5]), h=st.integers(1, 5), w=st.integers(1, 5),
       seed=st.integers(0, 2**16), data=st.data())
def test_masked_conv_is_causal_in_raster_order(mask_type, k, h, w, seed, data):
    """Output pixel (i, j) has exactly zero gradient w.r.t. every input at or after (i, j) in
    raster order (mask A) / after it (mask B); and a nonzero one w.r.t. what it may see."""
    rng = np.random.default_rng(seed)
    x, wt = _rand(rng, (1, 2, h, w)), _rand(rng, (3, 2, k, k))
    i, j = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    g = np.abs(_input_grad_of_pixel(x, wt, i, j, mask_type, 1)).sum(0)      # (h, w)
    raster = np.arange(h * w).reshape(h, w)
    me = i * w + j
    after = raster > me if mask_type == "B" else raster >= me
    assert not g[after].any(), f"pixel {(i, j)} depends on a later input"
    c = k // 2
    for (yy, xx) in zip(*np.nonzero(~after)):
        visible = abs(yy - i) <= c and abs(xx - j) <= c
        assert (g[yy, xx] != 0) == visible, f"pixel {(i, j)} should see {(yy, xx)}: {visible}"


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_colour_groups_at_the_centre(mask_type):
    """With 3 colour groups, output block j depends on input block i at its own pixel iff
    i < j (A) or i <= j (B); never on later pixels."""
    rng = np.random.default_rng(5)
    x, wt = _rand(rng, (1, 6, 4, 4)), _rand(rng, (9, 6, 3, 3))
    i, j = 2, 1
    for out_block in range(3):
        g = np.abs(_input_grad_of_pixel(x, wt, i, j, mask_type, 3,
                                        slice(3 * out_block, 3 * out_block + 3)))
        for in_block in range(3):
            centre = g[2 * in_block:2 * in_block + 2, i, j]
            allowed = in_block < out_block if mask_type == "A" else in_block <= out_block
            assert centre.all() if allowed else not centre.any(), (out_block, in_block)
        later = np.arange(16).reshape(4, 4) > i * 4 + j
        assert not g[:, later].any()


def test_pixelcnn_stack_is_causal():
    """A mask-A layer followed by mask-B layers (a PixelCNN trunk) stays causal: the output at a
    pixel never depends on its own or later inputs, including at the centre across groups."""
    rng = np.random.default_rng(6)
    x = ng.tensor(_rand(rng, (1, 3, 5, 5)), requires_grad=True)
    h = F.masked_conv2d(x, ng.tensor(_rand(rng, (6, 3, 3, 3))), None, "A", 3)
    for _ in range(2):
        h = F.masked_conv2d(h.tanh(), ng.tensor(_rand(rng, (6, 6, 3, 3))), None, "B", 3)
    for (i, j) in [(0, 0), (2, 3), (4, 4)]:
        (g,) = ng.autograd.grad(h[0, 0:2, i, j].sum(), x, retain_graph=True)   # the R block
        g = np.abs(g.numpy()[0])
        later = np.arange(25).reshape(5, 5) >= i * 5 + j
        assert not g[:, later].any(), (i, j)


def test_pixelcnn_mask_values():
    m = F.pixelcnn_mask(2, 2, 3, "A")
    np.testing.assert_array_equal(m[0, 0], [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(F.pixelcnn_mask(2, 2, 3, "B")[1, 1],
                                  [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    m = F.pixelcnn_mask(6, 3, 5, "A", 3)          # 2 output channels per colour, 1 input
    centre = m[:, :, 2, 2]
    np.testing.assert_array_equal(centre, [[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0],
                                           [1, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(F.pixelcnn_mask(3, 3, 1, "B", 3)[:, :, 0, 0], np.tril(np.ones(3)))
    assert m.shape == (6, 3, 5, 5) and m[:, :, :2].all() and not m[:, :, 3:].any()


@pytest.mark.parametrize("mask_type,color_groups", [("A", 1), ("B", 1), ("A", 3), ("B", 3)])
def test_masked_conv_equals_dense_conv_of_masked_weight(mask_type, color_groups):
    rng = np.random.default_rng(7)
    x, w, b = _rand(rng, (2, 6, 5, 4)), _rand(rng, (3, 6, 5, 5)), _rand(rng, (3,))
    mask = F.pixelcnn_mask(3, 6, 5, mask_type, color_groups, dtype=np.float64)
    xs = [ng.tensor(a, requires_grad=True) for a in (x, w, b)]
    ys = [ng.tensor(a, requires_grad=True) for a in (x, w * mask, b)]
    masked = F.masked_conv2d(*xs, mask_type, color_groups)
    dense = F.conv2d(*ys, padding=2)
    assert_close(masked, dense.detach(), rtol=1e-12, atol=1e-12)
    gy = _rand(rng, masked.shape)
    masked.backward(ng.tensor(gy))
    dense.backward(ng.tensor(gy))
    assert_close(xs[0].grad, ys[0].grad, rtol=1e-12, atol=1e-12)
    assert_close(xs[1].grad, ys[1].grad.numpy() * mask, rtol=1e-12, atol=1e-12)
    assert_close(xs[2].grad, ys[2].grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,mask_type,color_groups,taps", [
    (3, "B", 1, 5), (3, "A", 1, 4), (7, "A", 1, 24), (7, "B", 1, 25), (3, "A", 3, 5)])
def test_masked_conv_kernel_skips_the_zeroed_taps(monkeypatch, k, mask_type, color_groups, taps):
    """Forward and backward im2col / col2im see only the taps the mask keeps: the column
    matrices have C·T rows, T < k·k."""
    seen = []
    real_im2col, real_col2im = K.im2col, K.col2im

    def im2col(x, g, out=None, **kw):
        seen.append(("im2col", g.T))
        cols = real_im2col(x, g, out=out, **kw)
        assert cols.shape[0] == g.C * g.T
        return cols

    def col2im(cols, g, **kw):
        seen.append(("col2im", g.T))
        assert cols.shape[0] == g.C * g.T
        return real_col2im(cols, g, **kw)
    monkeypatch.setattr(K, "im2col", im2col)
    monkeypatch.setattr(K, "col2im", col2im)
    rng = np.random.default_rng(8)
    x = ng.tensor(_rand(rng, (2, 3, 6, 6)), requires_grad=True)
    w = ng.tensor(_rand(rng, (6, 3, k, k)), requires_grad=True)
    F.masked_conv2d(x, w, None, mask_type, color_groups).sum().backward()
    assert {name for name, _ in seen} == {"im2col", "col2im"}     # forward, input gradient
    assert {t for _, t in seen} == {taps}


# ================================================================ WaveNet causal convolution
@given(k=st.integers(1, 4), d=st.integers(1, 3), L=st.integers(1, 9), seed=st.integers(0, 999))
def test_causal_conv1d_is_causal_and_a_left_padded_conv(k, d, L, seed):
    rng = np.random.default_rng(seed)
    x, w, b = _rand(rng, (2, 3, L)), _rand(rng, (4, 3, k)), _rand(rng, (4,))
    xt = ng.tensor(x, requires_grad=True)
    y = F.causal_conv1d(xt, ng.tensor(w), ng.tensor(b), dilation=d)
    assert y.shape == (2, 4, L)
    padded = np.concatenate([np.zeros((2, 3, (k - 1) * d)), x], axis=2)
    assert_close(y, F.conv1d(ng.tensor(padded), ng.tensor(w), ng.tensor(b), dilation=d),
                 rtol=1e-12, atol=1e-12)
    for t in range(L):
        (g,) = ng.autograd.grad(y[:, :, t].sum(), xt, retain_graph=True)
        assert not g.numpy()[:, :, t + 1:].any(), f"output {t} depends on later inputs"
        taps = [t - j * d for j in range(k) if t - j * d >= 0]
        assert np.abs(g.numpy()[:, :, taps]).min() > 0


# ================================================================ nn modules
@pytest.mark.parametrize("make,x_shape,y_shape", [
    (lambda: nn.Conv2d(3, 8, 3, padding=1), (2, 3, 9, 7), (2, 8, 9, 7)),
    (lambda: nn.Conv2d(4, 6, (3, 2), stride=2, groups=2, bias=False), (2, 4, 9, 7), (2, 6, 4, 3)),
    (lambda: nn.Conv1d(3, 5, 4, padding="same", dilation=2), (2, 3, 11), (2, 5, 11)),
    (lambda: nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1), (2, 8, 7, 7), (2, 4, 14, 14)),
    (lambda: nn.ConvTranspose1d(4, 6, 3, stride=3, output_padding=1, groups=2), (2, 4, 5),
     (2, 6, 16)),
    (lambda: nn.MaskedConv2d(3, 12, 7, "A", color_groups=3), (2, 3, 8, 8), (2, 12, 8, 8)),
    (lambda: nn.CausalConv1d(2, 5, 2, dilation=4), (3, 2, 10), (3, 5, 10)),
])
def test_module_shapes_and_init_bounds(make, x_shape, y_shape):
    ng.manual_seed(0)
    m = make()
    y = m(ng.randn(*x_shape))
    assert y.shape == y_shape and y.dtype == ng.float32
    w = m.weight.detach().numpy()
    fan_in = w.shape[1] * int(np.prod(w.shape[2:]))
    bound = 1.0 / math.sqrt(fan_in)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert abs(w.mean()) < 0.3 * bound
    if m.bias is not None:
        assert m.bias.shape == (y_shape[1],) and np.abs(m.bias.detach().numpy()).max() <= bound
    assert len(list(m.parameters())) == (2 if m.bias is not None else 1)


@needs_torch
@pytest.mark.parametrize("name,args,kwargs,x_shape", [
    ("Conv2d", (3, 6, 3), dict(stride=2, padding=1), (2, 3, 8, 9)),
    ("Conv2d", (4, 6, (2, 3)), dict(padding="same", dilation=2, groups=2), (1, 4, 7, 6)),
    ("Conv1d", (3, 4, 5), dict(padding=2, bias=False), (2, 3, 12)),
    ("ConvTranspose2d", (6, 4, 4), dict(stride=2, padding=1), (2, 6, 5, 5)),
    ("ConvTranspose2d", (4, 6, 3), dict(stride=2, output_padding=1, groups=2, dilation=2),
     (2, 4, 4, 3)),
    ("ConvTranspose1d", (3, 2, 4), dict(stride=2), (2, 3, 6)),
])
def test_modules_match_torch_with_copied_weights(name, args, kwargs, x_shape):
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.detach().numpy()))
        if ours.bias is not None:
            theirs.bias.copy_(torch.from_numpy(ours.bias.detach().numpy()))
    x = np.random.default_rng(9).standard_normal(x_shape).astype(np.float32)
    assert_close(ours(ng.tensor(x)), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-4,
                 atol=1e-5)
    assert repr(ours) == repr(theirs)


@needs_torch
def test_conv_transpose2d_output_size_as_torch():
    ours = nn.ConvTranspose2d(3, 2, 3, stride=3, padding=1)
    theirs = torch.nn.ConvTranspose2d(3, 2, 3, stride=3, padding=1)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.detach().numpy()))
        theirs.bias.copy_(torch.from_numpy(ours.bias.detach().numpy()))
    x = np.random.default_rng(10).standard_normal((1, 3, 4, 4)).astype(np.float32)
    for size in [(10, 10), (11, 12), (1, 2, 12, 10)]:
        y = ours(ng.tensor(x), output_size=size)
        assert y.shape[-2:] == tuple(size[-2:])
        assert_close(y, theirs(torch.from_numpy(x), output_size=size).detach().numpy(),
                     rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="valid sizes range from"):
        ours(ng.tensor(x), output_size=(13, 10))


def test_masked_and_causal_modules_use_their_functional_ops():
    ng.manual_seed(1)
    m = nn.MaskedConv2d(3, 6, 3, mask_type="B", color_groups=3)
    x = ng.randn(2, 3, 5, 5)
    assert_close(m(x), F.masked_conv2d(x, m.weight, m.bias, "B", 3))
    assert repr(m) == "MaskedConv2d(3, 6, kernel_size=(3, 3), mask_type=B, color_groups=3)"
    c = nn.CausalConv1d(3, 4, 3, dilation=2, bias=False)
    x1 = ng.randn(2, 3, 9)
    assert_close(c(x1), F.causal_conv1d(x1, c.weight, None, 2))
    assert repr(c) == "CausalConv1d(3, 4, kernel_size=(3,), dilation=(2,), bias=False)"
    loss = m(x).sum()
    loss.backward()
    assert m.weight.grad.shape == m.weight.shape
    off = F.pixelcnn_mask(6, 3, 3, "B", 3) == 0
    assert not m.weight.grad.numpy()[off].any(), "masked weights get no gradient"


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes(mode):
    """padding_mode other than zeros pads with F.pad first (PyTorch's results)."""
    ng.manual_seed(2)
    m = nn.Conv2d(2, 3, (3, 2), padding="same", padding_mode=mode)
    x = np.random.default_rng(12).standard_normal((1, 2, 5, 6)).astype(np.float32)
    padded = F.pad(ng.tensor(x), (0, 1, 1, 1), mode=mode)      # "same" for (3, 2): right 1
    expected = F.conv2d(padded, m.weight, m.bias)
    assert_close(m(ng.tensor(x)), expected.detach(), rtol=1e-5, atol=1e-6)
    if torch is not None:
        t = torch.nn.Conv2d(2, 3, (3, 2), padding="same", padding_mode=mode)
        with torch.no_grad():
            t.weight.copy_(torch.from_numpy(m.weight.detach().numpy()))
            t.bias.copy_(torch.from_numpy(m.bias.detach().numpy()))
        assert_close(m(ng.tensor(x)), t(torch.from_numpy(x)).detach().numpy(), rtol=1e-5,
                     atol=1e-6)
        assert repr(m) == repr(t)


def test_padding_mode_errors():
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(2, 3, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="padding_mode"):
        nn.ConvTranspose2d(2, 3, 3, padding_mode="reflect")


# ================================================================ errors
def _t(*shape, dtype=np.float64):
    return ng.tensor(np.zeros(shape, dtype=dtype))


@pytest.mark.parametrize("call,match", [
    (lambda: F.conv2d(_t(1, 3, 5, 5), _t(8, 4, 3, 3)),
     r"conv2d: input has 3 channels but weight expects 4 \(weight shape \(8, 4, 3, 3\), "
     r"groups=1\)"),
    (lambda: F.conv2d(_t(1, 4, 5, 5), _t(8, 1, 3, 3), groups=3),
     r"input has 4 channels but weight expects 3"),
    (lambda: F.conv2d(_t(1, 6, 5, 5), _t(8, 2, 3, 3), groups=3), r"8 output channels, not "
     r"divisible by groups=3"),
    (lambda: F.conv2d(_t(1, 2, 5, 5), _t(4, 2, 3, 3), _t(3)), r"bias must have shape \(4,\)"),
    (lambda: F.conv2d(_t(1, 2, 5, 5), _t(4, 2, 3, 3), stride=2, padding="same"),
     r"'same' is not supported for strided"),
    (lambda: F.conv2d(_t(1, 2, 5, 5), _t(4, 2, 3, 3), padding="full"), r"padding must be"),
    (lambda: F.conv2d(_t(1, 2, 2, 5), _t(4, 2, 3, 3)), r"smaller than the dilated kernel"),
    (lambda: F.conv2d(_t(1, 2, 5, 5), _t(4, 2, 3, 3), stride=0), r"stride must be >= 1"),
    (lambda: F.conv2d(_t(2, 5, 5), _t(4, 2, 3)), r"expected a 4-D weight"),
    (lambda: F.conv2d(_t(5, 5), _t(4, 2, 3, 3)), r"expected a 4-D \(batched\) or 3-D"),
    (lambda: F.conv1d(_t(1, 2, 5), _t(4, 2, 3), padding=(1, 1)), r"padding must be an int or "
     r"a tuple of 1 ints"),
    (lambda: F.conv_transpose2d(_t(1, 3, 5, 5), _t(4, 2, 3, 3)),
     r"conv_transpose2d: input has 3 channels but weight expects 4"),
    (lambda: F.conv_transpose2d(_t(1, 3, 5, 5), _t(3, 2, 3, 3), groups=2),
     r"3 input channels, not divisible by groups=2"),
    (lambda: F.conv_transpose2d(_t(1, 3, 5, 5), _t(3, 2, 3, 3), stride=2, output_padding=2),
     r"output_padding .* must be smaller than either stride"),
    (lambda: F.conv_transpose2d(_t(1, 3, 5, 5), _t(3, 2, 3, 3), padding="same"),
     r"padding must be an int or a tuple"),
    (lambda: F.masked_conv2d(_t(1, 3, 5, 5), _t(6, 3, 4, 4)), r"kernel must be odd"),
    (lambda: F.masked_conv2d(_t(1, 3, 5, 5), _t(6, 3, 3, 5)), r"square and odd"),
    (lambda: F.masked_conv2d(_t(1, 3, 5, 5), _t(6, 3, 3, 3), color_groups=2),
     r"6 output and 3 input channels must both be divisible by color_groups=2"),
    (lambda: F.masked_conv2d(_t(1, 3, 5, 5), _t(6, 3, 3, 3), mask_type="C"),
     r"mask_type must be 'A' or 'B'"),
    (lambda: F.masked_conv2d(_t(1, 4, 5, 5), _t(6, 3, 3, 3)), r"input has 4 channels"),
    (lambda: F.causal_conv1d(_t(1, 4, 5), _t(6, 3, 3)), r"causal_conv1d: input has 4 channels"),
    (lambda: F.pixelcnn_mask(4, 3, 2, "A"), r"kernel must be odd"),
    (lambda: F.conv2d(_t(1, 2, 5, 5, dtype=np.int64), _t(4, 2, 3, 3)),
     r"expects floating-point tensors"),
    (lambda: F.conv2d(_t(1, 2, 5, 5), _t(4, 2, 3, 3, dtype=np.float32)), r"dtype mismatch"),
    (lambda: nn.Conv2d(3, 4, 3, groups=2), r"must both be divisible by groups"),
    (lambda: nn.MaskedConv2d(3, 4, 4), r"kernel must be odd"),
])
def test_errors_name_the_problem(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
