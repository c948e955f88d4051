"""Non-smooth, piecewise-constant and integer-valued ops: the gradient each one has at its kinks,
ties, jumps and zeros, pinned to PyTorch's conventions.  Every test states the expected value
written out with NumPy (so it means something without PyTorch) and, where PyTorch is installed,
a twin compares with it (verified against torch 2.13).

* ``prod``: ∂/∂x_i = Π_{j≠i} x_j over x_i's slice, at zeros too (one zero: the product of the
  rest at the zero, 0 elsewhere; two or more: 0 in the whole slice), and its second derivative
  ∂²/∂x_i∂x_k = Π_{j≠i,k} x_j.  prod is affine in each entry, so central differences are exact
  for any step: gradcheck / gradgradcheck run *at* the zeros, with a step of 1e-3 that keeps
  rounding far below atol = 1e-9.
* ``remainder`` / ``%``: ∂/∂a = 1, ∂/∂b = -⌊a/b⌋, at a = kb (where it jumps) too.
* ``floor_divide`` / ``//``: the result requires grad, its backward raises (PyTorch has no
  derivative for it); ``div(a, b, rounding_mode="floor")`` has a zero gradient.
* ``floor``, ``ceil``, ``round`` (halves to even), ``sign``: the result requires grad, the
  gradient is zeros, at the jumps too.
* kinks and ties not pinned in ``tests/test_ops_grad.py``: clamp with tensor bounds at ties and
  crossed bounds (lo > hi), scalar clamp with crossed bounds, hardtanh with its own bounds,
  abs / relu at -0.0, max / min / amax / amin with ties (whole tensor, one dim, several dims),
  maximum / minimum at ties under broadcasting.

``GRAD_CHECKED`` names the public ops whose gradcheck lives here (``test_ops_grad``'s coverage
test collects it).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nanogen as ng
import nanogen.functional as F
from nanogen.testing import assert_close, gradcheck, gradgradcheck

from .strategies import broadcast_pairs, broadcastable_shapes, dims_for, shapes

from tests.oracle import needs_torch, torch

GRAD_CHECKED = {"prod", "remainder", "floor", "ceil", "round", "sign"}

TIGHT = dict(rtol=1e-7, atol=1e-9)


# ================================================================ helpers
def _t(a, requires_grad=False):
    # np.array: a 0-d draw may be a NumPy scalar, which ng.tensor would make float32
    return ng.tensor(np.array(a, dtype=np.float64), requires_grad=requires_grad)


def _leaves(*arrays):
    return [_t(a, requires_grad=True) for a in arrays]


def _values(out):
    return out[0] if isinstance(out, tuple) else out     # max(x, dim) -> its values


def _grads(fn, arrays, u=None):
    """Gradients of <u, fn(*arrays)> (u = ones by default) as arrays, None where unused."""
    xs = _leaves(*arrays)
    y = _values(fn(*xs))
    u = np.ones(y.shape) if u is None else u
    gs = ng.autograd.grad(y, xs, grad_outputs=ng.tensor(u), allow_unused=True)
    return [None if g is None else g.numpy() for g in gs]


def _torch_grads(fn, arrays, u=None):
    xs = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]
    y = _values(fn(*xs))
    u = np.ones(tuple(y.shape)) if u is None else u
    gs = torch.autograd.grad(y, xs, grad_outputs=torch.tensor(u), allow_unused=True)
    return [None if g is None else g.numpy() for g in gs]


def _sum_to(g, shape):
    """Sum a broadcast array back down to ``shape`` (NumPy's side of unbroadcast)."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape)
                                      if s == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def _axes(dim, ndim):
    if dim is None:
        return tuple(range(ndim))
    dims = dim if isinstance(dim, tuple) else (dim,)
    return tuple(sorted(d % ndim for d in dims)) if ndim else ()


# ================================================================ prod at zeros
NONZERO = st.one_of(st.floats(-2.0, -0.5), st.floats(0.5, 2.0))


@st.composite
def prod_case(draw, torch_dims=False):
    """x (float64, mostly 2-3 dims, ≤ 27 entries) with zeros at drawn positions: none, one, or
    several in a slice; dim None, an int or a tuple (only None / int when ``torch_dims``)."""
    ndim = draw(st.sampled_from([0, 1, 2, 2, 3, 3]))
    s = draw(shapes(ndim, ndim, 1, 3))
    x = draw(hnp.arrays(np.float64, s, elements=NONZERO))
    n = x.size
    for p in draw(st.lists(st.integers(0, n - 1), max_size=min(n, 4))):
        x.reshape(-1)[p] = 0.0
    if draw(st.booleans()) and ndim:           # zero every entry of one index along dim 0
        x[(draw(st.integers(0, s[0] - 1)),)] = 0.0
    dim = draw(dims_for(s, allow_tuple=not torch_dims))
    return x, dim, draw(st.booleans())


def _others(x, axes):
    """o_i = Π_{j≠i} x_j over i's slice, element by element: prod with x_i replaced by 1."""
    out = np.empty_like(x)
    for i in np.ndindex(x.shape):
        x1 = x.copy()
        x1[i] = 1.0
        out[i] = np.prod(x1, axis=axes, keepdims=True)[_slice_of(i, axes)]
    return out


def _slice_of(i, axes):
    return tuple(0 if a in axes else k for a, k in enumerate(i))


def _hessian_vector(x, axes, u, v):
    """(∇² <u, prod x>) v with ∂²/∂x_i∂x_k = Π_{j≠i,k} x_j in one slice (0 for k = i)."""
    hv = np.zeros_like(x)
    for i, k in itertools.permutations(list(np.ndindex(x.shape)), 2):
        if _slice_of(i, axes) == _slice_of(k, axes):
            x2 = x.copy()
            x2[i] = x2[k] = 1.0
            s = _slice_of(i, axes)
            hv[i] += u[s] * np.prod(x2, axis=axes, keepdims=True)[s] * v[k]
    return hv


def _prod_derivatives(x, dim, keepdim, u, v):
    """nanogen's prod, its gradient <u, ∂prod> and Hessian-vector product, as arrays."""
    (xt,) = _leaves(x)
    y = F.prod(xt, dim, keepdim)
    ut = ng.tensor(u.reshape(y.shape))
    (g,) = ng.autograd.grad(y, xt, grad_outputs=ut, create_graph=True)
    (hv,) = ng.autograd.grad((g * ng.tensor(v)).sum(), xt)
    return y.detach().numpy(), g.detach().numpy(), hv.numpy()


def _cotangents(x, axes, seed=0):
    rng = np.random.default_rng(seed)
    keep = tuple(1 if a in axes else s for a, s in enumerate(x.shape))
    return rng.standard_normal(keep), rng.standard_normal(x.shape)


@given(case=prod_case())
@example(case=(np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0], [1.0, 2.0, 3.0]]), 1, False))
@example(case=(np.array([[0.0, 2.0], [0.0, -1.5], [0.0, 0.0]]), None, True))
@example(case=(np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (0, 1), False))
def test_prod_gradient_is_the_product_of_the_others(case):
    """Value = np.prod; gradient = u · Π_{j≠i} x_j; Hessian-vector product from
    Π_{j≠i,k} x_j -- for 0, 1, 2 and more zeros in a slice, written out with NumPy."""
    x, dim, keepdim = case
    axes = _axes(dim, x.ndim)
    u, v = _cotangents(x, axes)
    y, g, hv = _prod_derivatives(x, dim, keepdim, u, v)
    assert_close(y, np.prod(x, axis=axes, keepdims=keepdim), rtol=1e-13, atol=0)
    assert_close(g, u * _others(x, axes), rtol=1e-13, atol=1e-15)
    assert_close(hv, _hessian_vector(x, axes, u, v), rtol=1e-12, atol=1e-14)
    many_zeros = np.broadcast_to((x == 0).sum(axis=axes, keepdims=True) >= 2, x.shape)
    assert np.all(g[many_zeros] == 0)


@given(case=prod_case())
@example(case=(np.array([[0.0, 0.0, 3.0], [0.0, 0.5, 2.0], [0.0, 0.0, 0.0]]), -1, True))
def test_prod_gradcheck_at_zeros(case):
    """Central differences are exact for prod (affine in each entry), so tight tolerances hold
    at zeros; a step of 1e-3 keeps rounding far below atol."""
    x, dim, keepdim = case
    fn = lambda t: F.prod(t, dim, keepdim)    # noqa: E731
    gradcheck(fn, _leaves(x), eps=1e-3, **TIGHT)
    gradgradcheck(fn, _leaves(x), eps=1e-3, **TIGHT)


def test_prod_written_out():
    """The cases of the docstring, by hand: a row with one zero, two zeros, none, all zeros."""
    x = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    (g,) = _grads(lambda t: t.prod(1), [x])
    assert_close(g, [[6.0, 0, 0], [0, 0, 0], [6.0, 3.0, 2.0], [0, 0, 0]])
    # second derivatives at one zero: ∂²/∂x0∂x1 = x2 = 3, ∂²/∂x0∂x2 = x1 = 2, ∂²/∂x1∂x2 = x0 = 0
    (xt,) = _leaves([0.0, 2.0, 3.0])
    (g,) = ng.autograd.grad(F.prod(xt), xt, create_graph=True)
    hessian = [ng.autograd.grad(g[i], xt, retain_graph=True)[0].numpy() for i in range(3)]
    assert_close(np.stack(hessian), [[0.0, 3.0, 2.0], [3.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    # two zeros: the gradient is 0, ∂²/∂x0∂x1 = x2 = 3, and ∂³/∂x0∂x1∂x2 = 1
    (xt,) = _leaves([0.0, 0.0, 3.0])
    (g,) = ng.autograd.grad(F.prod(xt), xt, create_graph=True)
    assert_close(g.detach(), [0.0, 0.0, 0.0])
    (h0,) = ng.autograd.grad(g[0], xt, create_graph=True)
    assert_close(h0.detach(), [0.0, 3.0, 0.0])
    (h01,) = ng.autograd.grad(h0[1], xt)
    assert_close(h01, [0.0, 0.0, 1.0])
    # 0-d (the empty product of the others is 1) and empty (prod = 1, an empty gradient)
    assert_close(_grads(F.prod, [np.array(0.0)])[0], 1.0)
    (xt,) = _leaves(np.zeros((2, 0)))
    y = xt.prod(1, keepdim=True)
    assert_close(y.detach(), [[1.0], [1.0]])
    assert ng.autograd.grad(y.sum(), xt)[0].shape == (2, 0)


@needs_torch
@given(case=prod_case(torch_dims=True))
@example(case=(np.array([[0.0, 0.0, 3.0], [0.0, 0.5, 2.0]]), None, False))
def test_prod_matches_torch(case):
    x, dim, keepdim = case
    axes = _axes(dim, x.ndim)
    u, v = _cotangents(x, axes, seed=1)
    y, g, hv = _prod_derivatives(x, dim, keepdim, u, v)
    xr = torch.tensor(x, requires_grad=True)
    yr = xr.prod() if dim is None else xr.prod(dim, keepdim)
    (gr,) = torch.autograd.grad(yr, xr, torch.tensor(u.reshape(yr.shape)), create_graph=True)
    assert_close(y.reshape(yr.shape), yr.detach().numpy(), rtol=1e-13)
    assert_close(g, gr.detach().numpy(), rtol=1e-12, atol=1e-15)
    if gr.requires_grad:        # (a 0-d x: torch's gradient is the constant 1)
        (hvr,) = torch.autograd.grad((gr * torch.tensor(v)).sum(), xr)
        assert_close(hv, hvr.numpy(), rtol=1e-12, atol=1e-14)


# ================================================================ remainder and floor division
DIVISORS = [-2.0, -1.0, -0.5, 0.5, 1.0, 2.0]


@st.composite
def modular_pair(draw):
    """(a, b) of broadcastable shapes with every a / b at least 0.025 from an integer: b from
    ±{1/2, 1, 2}, a = k/2 + t with t in [0.05, 0.45] (so a step of 1e-3 crosses no jump)."""
    sa, sb = draw(broadcast_pairs(max_dims=3, max_side=3))
    k = draw(hnp.arrays(np.float64, sa, elements=st.integers(-8, 8).map(float)))
    t = draw(hnp.arrays(np.float64, sa, elements=st.floats(0.05, 0.45)))
    b = draw(hnp.arrays(np.float64, sb, elements=st.sampled_from(DIVISORS)))
    return 0.5 * k + t, b


MODULAR_FORMS = {
    "remainder(a, b)": lambda a, b: F.remainder(a, b),
    "a % b": lambda a, b: a % b,
    "a % 1.5": lambda a, b: a % 1.5 + b,
    "-2.25 % b": lambda a, b: -2.25 % b + a,
    "a - b⌊a/b⌋": lambda a, b: a - b * F.div(a, b, rounding_mode="floor"),
}


@given(ab=modular_pair(), form=st.sampled_from(sorted(MODULAR_FORMS)))
@example(ab=(np.array([[3.25], [-1.75]]), np.array([0.5, -1.0, 2.0])), form="a % b")
def test_remainder_gradient_is_one_and_minus_the_quotient(ab, form):
    """d(a mod b)/da = 1, d(a mod b)/db = -⌊a/b⌋ (written out), and gradcheck / gradgradcheck
    away from the jumps (piecewise linear: exact differences, tight tolerances)."""
    a, b = ab
    fn = MODULAR_FORMS[form]
    u = np.random.default_rng(0).standard_normal(np.broadcast_shapes(a.shape, b.shape))
    ga, gb = _grads(fn, [a, b], u)
    if form in ("remainder(a, b)", "a % b", "a - b⌊a/b⌋"):
        assert_close(fn(_t(a), _t(b)), np.remainder(a, b), rtol=1e-15, atol=1e-15)
        assert_close(ga, _sum_to(u, a.shape))
        assert_close(gb, _sum_to(-u * np.floor_divide(a, b), b.shape))
    gradcheck(fn, _leaves(a, b), eps=1e-3, **TIGHT)
    gradgradcheck(fn, _leaves(a, b), eps=1e-3, **TIGHT)


AT_MULTIPLES = np.array([-3.0, -2.0, -1.0, -0.0, 0.0, 1.0, 2.0, 3.0])


@pytest.mark.parametrize("b", [-1.5, -0.5, 0.5, 1.0, 3.0])
def test_remainder_at_the_jumps(b):
    """a = kb exactly: the value is 0, da = 1 and db = -k (⌊a/b⌋ = k, PyTorch's convention)."""
    a = AT_MULTIPLES * b
    bs = np.full_like(a, b)
    assert_close(F.remainder(_t(a), _t(bs)), np.zeros_like(a))
    ga, gb = _grads(F.remainder, [a, bs])
    assert_close(ga, np.ones_like(a))
    assert_close(gb, -AT_MULTIPLES)
    if torch is not None:
        for ours, theirs in zip([ga, gb], _torch_grads(torch.remainder, [a, bs])):
            assert_close(ours, theirs)


@needs_torch
@given(ab=modular_pair())
def test_remainder_and_floor_division_match_torch(ab):
    a, b = ab
    ar, br = torch.tensor(a), torch.tensor(b)
    assert_close(F.remainder(_t(a), _t(b)), torch.remainder(ar, br).numpy())
    assert_close(F.floor_divide(_t(a), _t(b)), torch.floor_divide(ar, br).numpy())
    u = np.random.default_rng(2).standard_normal(np.broadcast_shapes(a.shape, b.shape))
    for ours, theirs in zip(_grads(F.remainder, [a, b], u),
                            _torch_grads(torch.remainder, [a, b], u)):
        assert_close(ours, theirs, rtol=1e-14)
    floor = lambda lib: lambda x, y: lib.div(x, y, rounding_mode="floor")  # noqa: E731
    for ours, theirs in zip(_grads(floor(F), [a, b], u), _torch_grads(floor(torch), [a, b], u)):
        assert_close(ours, theirs)


FLOOR_DIVIDE_FORMS = {     # (lib, a, b) -> result, for lib = nanogen.functional, torch, numpy
    "floor_divide(a, b)": lambda lib, a, b: lib.floor_divide(a, b),
    "a // b": lambda lib, a, b: a // b,
    "a // 2.0": lambda lib, a, b: a // 2.0,
    "3.0 // a": lambda lib, a, b: 3.0 // a,
}


@pytest.mark.parametrize("form", sorted(FLOOR_DIVIDE_FORMS))
def test_floor_divide_keeps_the_graph_and_its_backward_raises(form):
    """As PyTorch: ``//`` of a tensor requiring grad requires grad (the graph is not cut
    silently) and differentiating through it raises; a gradient that does not pass through it
    is fine."""
    fn = FLOOR_DIVIDE_FORMS[form]
    a, b = np.array([-1.75, -1.0, 0.25, 0.5, 2.5, 3.0]), np.array([1.0, 1.0, -1.5, 2.0, 2.0, 1.5])
    at, bt, ct = _leaves(a, b, np.ones(6))
    q = fn(F, at, bt)
    assert q.requires_grad
    assert_close(q.detach(), fn(np, a, b))
    with pytest.raises(RuntimeError, match="rounding_mode='floor'"):
        (q * at).sum().backward()
    assert_close(ng.autograd.grad((q * ct).sum(), ct)[0], fn(np, a, b))
    if torch is not None:
        ar, br, cr = (torch.tensor(v, requires_grad=True) for v in (a, b, np.ones(6)))
        qr = fn(torch, ar, br)
        assert qr.requires_grad
        assert_close(q.detach(), qr.detach().numpy())
        with pytest.raises(RuntimeError, match="not implemented"):
            (qr * ar).sum().backward()
        assert_close(torch.autograd.grad((qr * cr).sum(), cr)[0].numpy(), fn(np, a, b))


def test_div_floor_has_a_zero_gradient():
    """``div(a, b, rounding_mode="floor")``: the value of ``a // b`` with a zero gradient."""
    a, b = np.array([-1.75, -1.0, 0.0, 2.5, 3.0]), np.array([1.0, 1.0, -1.5, 2.0, 1.5])
    q = F.div(*_leaves(a, b), rounding_mode="floor")
    assert q.requires_grad
    assert_close(q.detach(), np.floor_divide(a, b))
    for g in _grads(lambda x, y: F.div(x, y, rounding_mode="floor"), [a, b]):
        assert_close(g, np.zeros_like(a))


# ================================================================ floor, ceil, round, sign
STEPS = {
    "floor": (F.floor, np.floor, "floor"),
    "ceil": (F.ceil, np.ceil, "ceil"),
    "round": (F.round, np.round, "round"),
    "sign": (F.sign, np.sign, "sign"),
    "round(decimals=1)": (lambda t: F.round(t, decimals=1), lambda x: np.round(x, 1), None),
    "x.floor()": (lambda t: t.floor(), np.floor, "floor"),
    "x.ceil()": (lambda t: t.ceil(), np.ceil, "ceil"),
    "x.round()": (lambda t: t.round(), np.round, "round"),
    "x.sign()": (lambda t: t.sign(), np.sign, "sign"),
}
# integers, halves (round's ties go to even), zeros of both signs, and values in between
JUMPS = hnp.arrays(np.float64, shapes(1, 3, 1, 4), elements=st.one_of(
    st.sampled_from([-2.5, -1.5, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 1.5, 2.5, 0.25, 0.05]),
    st.floats(-3.0, 3.0)))


@given(x=JUMPS, name=st.sampled_from(sorted(STEPS)))
@example(x=np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]), name="round")
@example(x=np.array([-1.0, -0.0, 0.0, 1.0]), name="sign")
def test_step_ops_keep_the_graph_with_a_zero_gradient(x, name):
    """Value as NumPy's (round: halves to even), requires_grad kept, gradient zeros -- at the
    jumps too (PyTorch's convention; a cut graph would give None here)."""
    ours, numpy_op, _ = STEPS[name]
    (xt,) = _leaves(x)
    y = ours(xt)
    assert y.requires_grad and y.dtype == ng.float64
    assert_close(y.detach(), numpy_op(x), rtol=0, atol=0)
    assert_close(ng.autograd.grad(y.sum(), xt)[0], np.zeros_like(x), rtol=0, atol=0)


@given(k=hnp.arrays(np.float64, shapes(1, 3, 1, 3), elements=st.integers(-6, 6).map(float)),
       t=st.floats(-0.2, 0.2), name=st.sampled_from(["floor", "ceil", "round", "sign"]))
def test_step_ops_gradcheck_between_the_jumps(k, t, name):
    """x = k/2 + 1/4 + t stays 0.05 from every multiple of 1/2: the differences are 0 too."""
    ours = STEPS[name][0]
    gradcheck(ours, _leaves(0.5 * k + 0.25 + t), **TIGHT)
    gradgradcheck(ours, _leaves(0.5 * k + 0.25 + t), **TIGHT)


def test_step_ops_keep_integer_dtypes():
    x = ng.tensor(np.array([-3, 0, 2], dtype=np.int64))
    for name in ("floor", "ceil", "round", "sign"):
        y = getattr(F, name)(x)
        assert y.dtype == ng.int64, name
        assert_close(y, np.sign([-3, 0, 2]) if name == "sign" else [-3, 0, 2])


@needs_torch
@given(x=JUMPS, name=st.sampled_from(["floor", "ceil", "round", "sign"]))
def test_step_ops_match_torch(x, name):
    ours, _, torch_name = STEPS[name]
    xr = torch.tensor(x, requires_grad=True)
    yr = getattr(torch, torch_name)(xr)
    assert yr.requires_grad
    (gr,) = torch.autograd.grad(yr.sum(), xr)
    assert_close(ours(ng.tensor(x)), yr.detach().numpy(), rtol=0, atol=0)
    assert_close(_grads(ours, [x])[0], gr.numpy(), rtol=0, atol=0)


# ================================================================ kinks and ties
TIES = st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0])


def _grid(shape):
    """Arrays on a coarse grid, so ties with each other and with the bounds are common."""
    return hnp.arrays(np.float64, shape, elements=TIES)


@st.composite
def clamp_tensor_bounds(draw):
    s = draw(shapes(1, 3, 1, 3))
    return (draw(_grid(s)), draw(_grid(draw(broadcastable_shapes(s)))),
            draw(_grid(draw(broadcastable_shapes(s)))))


def _clamp_expected(x, lo, hi, u):
    """clamp = min(max(x, lo), hi): x gets the gradient on lo <= x <= hi, lo where
    x < lo < hi, hi where x > hi or hi < lo (crossed bounds give hi) -- so at x < lo = hi
    nobody does (PyTorch's clamp_backward_min_max)."""
    x_, lo_, hi_ = np.broadcast_arrays(x, lo, hi)
    gx = (x_ >= lo_) & (x_ <= hi_)
    glo = (x_ < lo_) & (lo_ < hi_)
    ghi = (x_ > hi_) | (hi_ < lo_)
    return [_sum_to(u * m, a.shape) for m, a in ((gx, x), (glo, lo), (ghi, hi))]


@given(xlh=clamp_tensor_bounds())
@example(xlh=(np.array([-1.0, 0.0, 1.0]), np.array([1.0]), np.array([-1.0])))
@example(xlh=(np.array([-1.0, -0.5, 0.0]), np.array([-0.5]), np.array([-0.5])))
@example(xlh=(np.array([0.5, 0.5, 0.5]), np.array([0.5, -1.0, 0.5]), np.array([0.5, 0.5, 1.0])))
def test_clamp_tensor_bounds_at_ties_and_crossed(xlh):
    x, lo, hi = xlh
    u = np.random.default_rng(3).standard_normal(x.shape)
    out = F.clamp(*map(ng.tensor, xlh))
    assert_close(out, np.minimum(np.maximum(x, lo), hi))
    for g, e in zip(_grads(F.clamp, list(xlh), u), _clamp_expected(x, lo, hi, u)):
        assert_close(g, e)
    if torch is not None:
        for g, e in zip(_grads(F.clamp, list(xlh), u), _torch_grads(torch.clamp, list(xlh), u)):
            assert_close(g, e)


def test_clamp_scalar_crossed_bounds_and_max_only():
    """min > max: the value is max and no gradient passes; max only: 1 up to and at the bound."""
    x = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0])
    assert_close(F.clamp(ng.tensor(x), 1.0, -1.0), np.full_like(x, -1.0))
    assert_close(_grads(lambda t: F.clamp(t, 1.0, -1.0), [x])[0], np.zeros_like(x))
    assert_close(_grads(lambda t: F.clamp(t, max=0.5), [x])[0], (x <= 0.5).astype(float))
    if torch is not None:
        for lo, hi in ((1.0, -1.0), (None, 0.5)):
            theirs = _torch_grads(lambda t: torch.clamp(t, lo, hi), [x])[0]
            assert_close(_grads(lambda t: F.clamp(t, lo, hi), [x])[0], theirs)


def test_signed_zeros_and_own_bounds_at_the_kinks():
    """abs'(±0) = relu'(±0) = 0; hardtanh(x, lo, hi) passes 1 only strictly inside (lo, hi)."""
    z = np.array([-0.0, 0.0])
    assert_close(_grads(F.abs, [z])[0], [0.0, 0.0], rtol=0, atol=0)
    assert_close(_grads(F.relu, [z])[0], [0.0, 0.0], rtol=0, atol=0)
    x = np.array([-1.0, -0.5, 0.0, 2.0, 2.5])
    ours = _grads(lambda t: F.hardtanh(t, -0.5, 2.0), [x])[0]
    assert_close(ours, [0.0, 0.0, 1.0, 0.0, 0.0])
    if torch is not None:
        assert_close(_grads(F.abs, [z])[0], _torch_grads(torch.abs, [z])[0])
        assert_close(_grads(F.relu, [z])[0], _torch_grads(torch.relu, [z])[0])
        theirs = _torch_grads(lambda t: torch.nn.functional.hardtanh(t, -0.5, 2.0), [x])[0]
        assert_close(ours, theirs)


@st.composite
def tied_reduction(draw):
    s = draw(shapes(1, 3, 1, 4))
    return draw(_grid(s)), draw(dims_for(s))


def _spread_over_ties(x, axes, largest):
    """The gradient of amax / amin / full max / min: 1 / (number of ties) on each tie."""
    v = (np.max if largest else np.min)(x, axis=axes, keepdims=True)
    hit = x == v
    return hit / hit.sum(axis=axes, keepdims=True)


@given(case=tied_reduction(), largest=st.booleans())
@example(case=(np.zeros((2, 3)), (0, 1)), largest=False)
def test_extreme_reductions_share_ties_evenly(case, largest):
    """amax / amin over any dims, and max() / min() of everything, split among ties."""
    x, dim = case
    axes = _axes(dim, x.ndim)
    fn = F.amax if largest else F.amin
    u = np.random.default_rng(4).standard_normal(
        tuple(1 if a in axes else s for a, s in enumerate(x.shape)))
    (g,) = _grads(lambda t: fn(t, dim, keepdim=True), [x], u)
    assert_close(g, u * _spread_over_ties(x, axes, largest))
    (g_all,) = _grads(F.max if largest else F.min, [x])
    assert_close(g_all, _spread_over_ties(x, _axes(None, x.ndim), largest))
    if torch is not None:
        theirs = torch.amax if largest else torch.amin
        tdim = tuple(range(x.ndim)) if dim is None else dim
        assert_close(g, _torch_grads(lambda t: theirs(t, tdim, keepdim=True), [x], u)[0])
        assert_close(g_all, _torch_grads(torch.max if largest else torch.min, [x])[0])


@given(case=tied_reduction(), largest=st.booleans())
def test_max_min_along_a_dim_pick_the_first_tie(case, largest):
    """max / min(x, dim): the index of the first extreme value, and the whole gradient to it."""
    x, dim = case
    if dim is None or isinstance(dim, tuple):
        dim = -1
    fn, arg = (F.max, np.argmax) if largest else (F.min, np.argmin)
    idx = arg(x, axis=dim)
    assert_close(fn(ng.tensor(x), dim)[1], idx)
    u = np.random.default_rng(5).standard_normal(idx.shape)
    expect = np.zeros_like(x)
    np.put_along_axis(expect, np.expand_dims(idx, dim), np.expand_dims(u, dim), axis=dim)
    (g,) = _grads(lambda t: fn(t, dim), [x], u)
    assert_close(g, expect)
    if torch is not None:
        theirs = torch.max if largest else torch.min
        assert_close(theirs(torch.tensor(x), dim)[1].numpy(), idx)
        assert_close(g, _torch_grads(lambda t: theirs(t, dim), [x], u)[0])


@st.composite
def tied_pair(draw):
    sa, sb = draw(broadcast_pairs(min_dims=1, max_dims=3, max_side=3))
    return draw(_grid(sa)), draw(_grid(sb))


@given(ab=tied_pair(), largest=st.booleans())
@example(ab=(np.array([[1.0], [2.0], [3.0]]), np.array([[1.0, 2.0, 3.0]])), largest=True)
def test_maximum_minimum_split_broadcast_ties_evenly(ab, largest):
    """Ties give each side half, and broadcasting sums those halves back."""
    a, b = ab
    fn = F.maximum if largest else F.minimum
    u = np.random.default_rng(6).standard_normal(np.broadcast_shapes(a.shape, b.shape))
    a_, b_ = np.broadcast_arrays(a, b)
    wa = np.where(a_ == b_, 0.5, (a_ > b_) if largest else (a_ < b_))
    ga, gb = _grads(fn, [a, b], u)
    assert_close(ga, _sum_to(u * wa, a.shape))
    assert_close(gb, _sum_to(u * (1.0 - wa), b.shape))
    if torch is not None:
        theirs = torch.maximum if largest else torch.minimum
        for g, e in zip((ga, gb), _torch_grads(theirs, [a, b], u)):
            assert_close(g, e)
