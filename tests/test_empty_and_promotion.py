"""Empty dims, reductions without degrees of freedom, the ±inf / 0 norms, gaussian_nll_loss's
variance shapes and PyTorch's promotion of bool tensors: the cases tests/test_forward_values.py
once pinned as forward bugs, here with their gradients.

Every expectation is written out with NumPy (so a test means something without PyTorch), and
a twin compares with PyTorch where it is installed (verified against torch 2.13):

* ``norm(x, -inf)`` = min |x|: the gradient is sign(x) at the smallest magnitude, split evenly
  among ties (amin's rule; 0 at x = 0); ``norm(x, 0)`` counts the nonzeros (nan included) and
  its gradient is zero.  Away from ties gradcheck / gradgradcheck hold (rtol 1e-7).
* over an empty dim ``mean`` is nan, ``logsumexp`` -inf (their gradients empty); ``amax`` /
  ``amin`` (and ``max`` / ``min`` / ``argmax`` / ``argmin``) of an empty tensor need a
  non-empty reduced dim: as in PyTorch, IndexError otherwise, and without a dim RuntimeError
  (IndexError for argmax / argmin).
* ``var`` / ``std`` (and the ``_mean`` pairs) divide by max(0, n - correction): inf, nan for
  0 / 0; at n = correction along a dim the gradient 2 (x - mean) / 0 is PyTorch's.
* ``chunk`` of an empty dim gives ``chunks`` empty pieces; ``matmul`` with an empty inner dim
  gives zeros (the batched fast path of kernels/blas.py included), every gradient of the
  right shape.
* ``gaussian_nll_loss`` takes var of input's shape, without its last dim (read as (..., 1)) or
  with one dim of 1, and refuses the rest (ValueError), by PyTorch's exact rules.
* a bool tensor with a Python int is int64, with a float the default float dtype, with a bool
  bool; ``-`` refuses bool operands, as PyTorch does.
"""
from __future__ import annotations

import math
import operator
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nanogen as ng
import nanogen.functional as F
from nanogen.testing import assert_close, gradcheck, gradgradcheck

from .strategies import dims_for, distinct_arrays, float64_arrays, positive_arrays, shapes

from tests.oracle import torch

# ================================================================ helpers
def _t(a, requires_grad=False):
    return ng.tensor(np.array(a, dtype=np.float64), requires_grad=requires_grad)


def _grads(fn, arrays, u):
    """Gradients of <u, fn(*arrays)> as arrays."""
    xs = [_t(a, requires_grad=True) for a in arrays]
    y = fn(*xs)
    return [g.numpy() for g in ng.autograd.grad(y, xs, grad_outputs=_t(u))]


def _torch_grads(fn, arrays, u):
    xs = [torch.tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays]
    y = fn(*xs)
    gs = torch.autograd.grad(y, xs, grad_outputs=torch.tensor(np.array(u, dtype=np.float64)),
                             allow_unused=True)
    return [np.zeros(x.shape) if g is None else g.numpy() for x, g in zip(xs, gs)]


def _axes(dim, ndim):
    if dim is None:
        return tuple(range(ndim))
    dims = dim if isinstance(dim, tuple) else (dim,)
    return tuple(sorted(d % ndim for d in dims))


def _cotangent(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _same(actual, expected):
    """Same shape, dtype kind, and values (nan / inf in the same places)."""
    a, e = np.asarray(actual), np.asarray(expected)
    assert a.shape == e.shape, f"shape {a.shape}, expected {e.shape}"
    np.testing.assert_array_equal(a, e)


SHAPES = shapes(1, 3, max_side=4)
TIES = st.integers(-3, 3).map(float)        # zeros, ±ties of |x|


# ================================================================ norm: p = -inf and p = 0
def _norm_min_grad(x, dim, keepdim, u):
    """<u, min |x|>'s gradient: sign(x) on the smallest magnitudes of each slice, u split
    evenly among them."""
    axes = _axes(dim, x.ndim)
    a = np.abs(x)
    hit = a == a.min(axis=axes, keepdims=True)
    share = hit / hit.sum(axis=axes, keepdims=True)
    u = u if keepdim else np.expand_dims(u, axes)
    return u * share * np.sign(x)


@given(x=distinct_arrays(SHAPES, min_value=0.2, signs=True), data=st.data())
def test_norm_minus_inf_gradcheck(x, data):
    """Distinct magnitudes (no tie even after a step): min |x| is smooth there."""
    dim = data.draw(dims_for(x.shape), label="dim")
    keepdim = data.draw(st.booleans(), label="keepdim")

    def f(t):
        return F.norm(t, -math.inf, dim, keepdim)
    y = f(_t(x))
    assert_close(y, np.abs(x).min(axis=_axes(dim, x.ndim), keepdims=keepdim), rtol=0, atol=0)
    u = _cotangent(y.shape)
    assert_close(_grads(f, [x], u)[0], _norm_min_grad(x, dim, keepdim, u), rtol=0, atol=0)
    gradcheck(f, [_t(x, True)])
    gradgradcheck(f, [_t(x, True)])


@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 4)), elements=TIES),
       dim=st.sampled_from([None, 0, 1, -1, (0, 1)]), keepdim=st.booleans())
def test_norm_minus_inf_ties_and_zeros(x, dim, keepdim):
    """Ties share the gradient evenly, with their own signs; a zero magnitude gives 0."""
    def f(t):
        return F.norm(t, -math.inf, dim, keepdim)
    u = _cotangent(f(_t(x)).shape)
    g = _grads(f, [x], u)[0]
    assert_close(g, _norm_min_grad(x, dim, keepdim, u), rtol=0, atol=1e-15)
    if torch is not None:
        ref = _torch_grads(lambda t: torch.linalg.vector_norm(t, -math.inf, dim, keepdim),
                           [x], u)[0]
        assert_close(g, ref, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("dim, keepdim", [(None, False), (1, False), (0, True), ((0, 1), True)])
def test_norm_zero_counts_nonzeros_with_a_zero_gradient(dim, keepdim):
    x = np.array([[0.0, 1.0, -2.0], [0.0, -0.0, np.nan]])
    expected = (x != 0).sum(axis=_axes(dim, 2), keepdims=keepdim).astype(np.float64)
    y = F.norm(_t(x, True), 0, dim, keepdim)
    assert y.requires_grad                      # on the graph, as PyTorch's
    _same(y.detach().numpy(), expected)
    u = _cotangent(y.shape)
    _same(_grads(lambda t: F.norm(t, 0, dim, keepdim), [x], u)[0], np.zeros(x.shape))
    if torch is not None:
        _same(torch.linalg.vector_norm(torch.tensor(x), 0, dim, keepdim).numpy(), expected)
        _same(_torch_grads(lambda t: torch.linalg.vector_norm(t, 0, dim, keepdim), [x], u)[0],
              np.zeros(x.shape))


@given(x=float64_arrays(SHAPES, away_from=(0.0,), margin=0.2))
def test_norm_zero_gradcheck(x):
    """Away from 0 the count is locally constant: the numeric gradient is 0 too."""
    gradcheck(lambda t: F.norm(t, 0, -1), [_t(x, True)])


@pytest.mark.parametrize("p", [math.inf, -math.inf])
def test_infinite_norms_of_an_empty_dim_raise(p):
    z = _t(np.zeros((2, 0)))
    with pytest.raises(RuntimeError, match="empty dimension 1"):
        F.norm(z, p, 1)
    with pytest.raises(RuntimeError, match="empty"):
        F.norm(z, p)
    _same(F.norm(z, p, 0).numpy(), np.zeros(0))
    _same(F.norm(z, 0, 1).numpy(), np.zeros(2))
    if torch is not None:
        with pytest.raises(RuntimeError):
            torch.linalg.vector_norm(torch.zeros(2, 0), p, 1)
        assert tuple(torch.linalg.vector_norm(torch.zeros(2, 0), p, 0).shape) == (0,)


# ================================================================ reductions over empty dims
EMPTY_REDUCTIONS = [
    # name, input shape, dim, keepdim, expected value (np.zeros(shape) + value)
    ("mean", (2, 0), 1, False, np.full(2, np.nan)),
    ("mean", (2, 0), None, False, np.array(np.nan)),
    ("mean", (2, 0), 0, True, np.zeros((1, 0))),
    ("logsumexp", (2, 0), 1, False, np.full(2, -np.inf)),
    ("logsumexp", (2, 0), (0, 1), False, np.array(-np.inf)),
    ("logsumexp", (2, 0), 1, True, np.full((2, 1), -np.inf)),
    ("logsumexp", (0, 3), 1, False, np.zeros(0)),
    ("amax", (2, 0), 0, False, np.zeros(0)),
    ("amin", (2, 0), 0, True, np.zeros((1, 0))),
    ("amax", (0, 3, 2), (1, 2), False, np.zeros(0)),
]


@pytest.mark.parametrize("name, shape, dim, keepdim, expected", EMPTY_REDUCTIONS)
def test_empty_reductions_and_their_gradients(name, shape, dim, keepdim, expected):
    fn = getattr(F, name)
    x = _t(np.zeros(shape), True)
    y = fn(x, dim, keepdim) if dim is not None else fn(x)
    _same(y.detach().numpy(), expected)
    (g,) = ng.autograd.grad(y, [x], grad_outputs=_t(np.ones(y.shape)))
    _same(g.numpy(), np.zeros(shape))
    if torch is not None:
        xr = torch.zeros(shape, dtype=torch.float64)
        ref = getattr(torch, name)(xr, dim, keepdim) if dim is not None else getattr(
            torch, name)(xr)
        _same(ref.numpy(), expected)


@pytest.mark.parametrize("name", ["amax", "amin", "max", "min", "argmax", "argmin"])
def test_extrema_of_empty_tensors_raise_as_in_pytorch(name):
    """No extremum of no values: IndexError for an empty reduced dim, RuntimeError when no dim
    is given (IndexError for argmax / argmin, as PyTorch); a non-empty reduced dim of an empty
    tensor is fine (an empty result)."""
    z = _t(np.zeros((2, 0)))
    fn = getattr(F, name)
    no_dim = IndexError if name.startswith("arg") else RuntimeError
    with pytest.raises(IndexError, match=f"{name}: dimension 1 .* is empty"):
        fn(z, 1)
    with pytest.raises(no_dim, match=f"{name}: .* is empty"):
        fn(z)
    out = fn(z, 0)
    out = out[0] if isinstance(out, tuple) else out
    assert tuple(out.shape) == (0,)
    if torch is not None:
        tfn = getattr(torch, name)
        with pytest.raises(IndexError):
            tfn(torch.zeros(2, 0), 1)
        with pytest.raises(no_dim):
            tfn(torch.zeros(2, 0))


# ================================================================ var / std without dof
def _var_ref(x, axis, c, keepdim=False):
    """Σ (x - mean)² / max(0, n - c) in NumPy, with x / 0 = inf and 0 / 0 = nan."""
    n = x.size if axis is None else x.shape[axis]
    ss = ((x - x.mean(axis=axis, keepdims=True)) ** 2).sum(axis=axis, keepdims=keepdim)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ss / max(0, n - c)


@pytest.mark.parametrize("x, dim, correction", [
    ([1.5], None, 1), ([1.0, 1.0], None, 2), ([1.0, 2.0], None, 2), ([1.0, 2.0], None, 3),
    ([1.0, 2.0, 4.0], None, 5), ([[1.0, 2.0], [3.0, 3.0]], 1, 2),
    ([[1.0, 2.0, 0.5], [3.0, 3.0, 3.0]], 1, 3), ([[1.0, 2.0], [3.0, 5.0]], 0, 4),
])
@pytest.mark.parametrize("keepdim", [False, True])
def test_var_std_without_degrees_of_freedom(x, dim, correction, keepdim):
    x = np.array(x)
    var = _var_ref(x, dim, correction, keepdim)
    mean = x.mean(axis=dim, keepdims=keepdim)
    kw = dict(keepdim=keepdim, correction=correction)
    _same(F.var(_t(x), dim, **kw).numpy(), var)
    _same(F.std(_t(x), dim, **kw).numpy(), np.sqrt(var))
    v, m = F.var_mean(_t(x), dim, **kw)
    _same(v.numpy(), var)
    assert_close(m, mean, rtol=1e-15, atol=0)
    s, m = F.std_mean(_t(x), dim, **kw)
    _same(s.numpy(), np.sqrt(var))
    if torch is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # "degrees of freedom is <= 0"
            xr = torch.tensor(x)
            _same(torch.var(xr, dim, **kw).numpy(), var)
            _same(torch.std(xr, dim, **kw).numpy(), np.sqrt(var))
            _same(torch.var_mean(xr, dim, **kw)[0].numpy(), var)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")     # 0 · inf
def test_var_gradient_at_n_equal_to_correction():
    """2 (x - mean) / 0: ±inf, nan where x = mean (a constant row); std's is nan (√inf's
    derivative 0 times inf)."""
    x = np.array([[1.0, 2.0], [3.0, 3.0]])
    u = np.ones(2)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = 2 * (x - x.mean(axis=1, keepdims=True)) / 0.0
    _same(_grads(lambda t: F.var(t, 1, correction=2), [x], u)[0], expected)
    _same(_grads(lambda t: F.std(t, 1, correction=2), [x], u)[0], np.full(x.shape, np.nan))
    if torch is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _same(_torch_grads(lambda t: torch.var(t, 1, correction=2), [x], u)[0], expected)
            _same(_torch_grads(lambda t: torch.std(t, 1, correction=2), [x], u)[0],
                  np.full(x.shape, np.nan))


# ================================================================ chunk of an empty dim
@pytest.mark.parametrize("shape, dim", [((0,), 0), ((2, 0), 1), ((0, 3), 0), ((2, 0, 3), -2)])
@pytest.mark.parametrize("chunks", [1, 2, 3, 5])
def test_chunk_of_an_empty_dim(shape, dim, chunks):
    x = _t(np.zeros(shape), True)
    pieces = F.chunk(x, chunks, dim)
    assert [tuple(p.shape) for p in pieces] == [shape] * chunks
    (g,) = ng.autograd.grad(F.cat(pieces, dim).sum(), [x])
    _same(g.numpy(), np.zeros(shape))
    if torch is not None:
        ref = torch.chunk(torch.zeros(shape), chunks, dim)
        assert [tuple(p.shape) for p in pieces] == [tuple(p.shape) for p in ref]


@pytest.mark.parametrize("chunks", [0, -1])
def test_chunk_needs_a_positive_count(chunks):
    with pytest.raises(ValueError, match="chunks must be positive"):
        F.chunk(_t(np.zeros(3)), chunks)
    if torch is not None:
        with pytest.raises(RuntimeError):
            torch.chunk(torch.zeros(3), chunks)


# ================================================================ matmul with empty dims
EMPTY_MATMULS = [
    ((2, 3, 0), (0, 4), (2, 3, 4)), ((2, 3, 0), (0,), (2, 3)), ((5, 2, 3, 0), (0, 4), (5, 2, 3, 4)),
    ((0,), (0,), ()), ((3, 0), (0,), (3,)), ((0,), (0, 4), (4,)), ((2, 0), (0, 3), (2, 3)),
    ((2, 3, 0), (2, 0, 4), (2, 3, 4)), ((0,), (2, 0, 3), (2, 3)),
    ((1, 2, 3, 0), (5, 1, 0, 2), (5, 2, 3, 2)),
    ((0, 3), (3, 4), (0, 4)), ((2, 0, 3), (3, 4), (2, 0, 4)), ((2, 3), (3, 0), (2, 0)),
    ((2, 3, 4), (4, 0), (2, 3, 0)), ((0, 2, 3), (3,), (0, 2)), ((2, 0, 3), (3,), (2, 0)),
]


@pytest.mark.parametrize("sa, sb, out", EMPTY_MATMULS)
def test_matmul_with_empty_dims(sa, sb, out):
    """Zeros of the broadcast shape (Σ over an empty k is 0); the gradients are zeros of the
    inputs' shapes (each an empty array, or a sum over an empty output)."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    _same(F.matmul(_t(a), _t(b)).numpy(), np.zeros(out))
    u = _cotangent(out)
    ga, gb = _grads(F.matmul, [a, b], u)
    _same(ga, np.zeros(sa))
    _same(gb, np.zeros(sb))
    if torch is not None:
        _same(torch.matmul(torch.tensor(a), torch.tensor(b)).numpy(), np.zeros(out))
        ra, rb = _torch_grads(torch.matmul, [a, b], u)
        assert_close(ga, ra, rtol=1e-15, atol=0)
        assert_close(gb, rb, rtol=1e-15, atol=0)
    nonempty = [0 not in sa, 0 not in sb]
    if any(nonempty):       # an empty output: the numeric gradient is 0 too
        gradcheck(F.matmul, [_t(a, nonempty[0]), _t(b, nonempty[1])])


# ================================================================ gaussian_nll_loss var shapes
@given(n=st.integers(1, 4), d=st.integers(1, 4), data=st.data(),
       reduction=st.sampled_from(["none", "mean", "sum"]), full=st.booleans())
def test_gaussian_nll_loss_var_without_the_last_dim(n, d, data, reduction, full):
    """var (n,) is var[:, None] (also when n == d, where plain broadcasting would pair it
    with the wrong dim): the same values and gradients as the (n, 1) form, and gradcheck."""
    x = data.draw(float64_arrays((n, d)), label="x")
    mu = data.draw(float64_arrays((n, d)), label="mu")
    var = data.draw(positive_arrays((n,), 0.1, 2.0), label="var")

    def f(a, b, v):
        return F.gaussian_nll_loss(a, b, v, full=full, reduction=reduction)

    def f_column(a, b, v):
        return F.gaussian_nll_loss(a, b, v[:, None], full=full, reduction=reduction)
    y = f(_t(x), _t(mu), _t(var))
    assert_close(y, f_column(_t(x), _t(mu), _t(var)), rtol=0, atol=0)
    u = _cotangent(y.shape)
    for g, ref in zip(_grads(f, [x, mu, var], u), _grads(f_column, [x, mu, var], u)):
        assert_close(g, ref, rtol=0, atol=0)
    gradcheck(f, [_t(x, True), _t(mu, True), _t(var, True)])
    if torch is not None:
        def tf(a, b, v):
            return torch.nn.functional.gaussian_nll_loss(a, b, v, full=full, reduction=reduction)
        assert_close(y, tf(*[torch.tensor(a) for a in (x, mu, var)]).numpy(), rtol=1e-14,
                     atol=1e-14)
        for g, ref in zip(_grads(f, [x, mu, var], u), _torch_grads(tf, [x, mu, var], u)):
            assert_close(g, ref, rtol=1e-13, atol=1e-14)


VAR_SHAPES = [
    # input shape, var shape, accepted (PyTorch's rule)
    ((3, 4), (3, 4), True), ((3, 4), (3,), True), ((3, 4), (3, 1), True), ((3, 4), (1, 4), True),
    ((3, 3), (3,), True), ((4,), (), True), ((4,), (1,), True), ((2, 3, 4), (2, 3), True),
    ((2, 3, 4), (2, 1, 4), True), ((), (), True),
    ((3, 4), (1, 1), False), ((3, 4), (4,), False), ((2, 3, 4), (3, 4), False),
    ((3, 4), (3, 4, 1), False), ((3, 1), (3, 4), False), ((3, 4), (2,), False),
    ((3, 4), (0, 4), False),
]


@pytest.mark.parametrize("ishape, vshape, accepted", VAR_SHAPES)
def test_gaussian_nll_loss_variance_shapes(ishape, vshape, accepted):
    rng = np.random.default_rng(2)
    x, mu = rng.standard_normal(ishape), rng.standard_normal(ishape)
    var = rng.uniform(0.5, 2.0, vshape)
    if accepted:
        v = var.reshape(vshape + (1,)) if vshape == ishape[:-1] and vshape != ishape else var
        expected = 0.5 * (np.log(v) + (x - mu) ** 2 / v)
        assert_close(F.gaussian_nll_loss(_t(x), _t(mu), _t(var), reduction="none"), expected,
                     rtol=1e-14, atol=0)
    else:
        with pytest.raises(ValueError, match=r"gaussian_nll_loss: var of shape .* does not fit"):
            F.gaussian_nll_loss(_t(x), _t(mu), _t(var))
    if torch is not None:
        args = [torch.tensor(a) for a in (x, mu, var)]
        if accepted:
            ref = torch.nn.functional.gaussian_nll_loss(*args, reduction="none")
            assert_close(F.gaussian_nll_loss(_t(x), _t(mu), _t(var), reduction="none"),
                         ref.numpy(), rtol=1e-14, atol=0)
        else:
            with pytest.raises(ValueError, match="var is of incorrect size"):
                torch.nn.functional.gaussian_nll_loss(*args)


def test_gaussian_nll_loss_float_and_negative_variances():
    """A float var is one variance for all; a negative one is refused, as in PyTorch."""
    x, mu = np.linspace(-1, 1, 6).reshape(2, 3), np.zeros((2, 3))
    assert_close(F.gaussian_nll_loss(_t(x), _t(mu), 0.5, reduction="none"),
                 0.5 * (np.log(0.5) + x ** 2 / 0.5), rtol=1e-15, atol=0)
    with pytest.raises(ValueError, match="var must not be negative"):
        F.gaussian_nll_loss(_t(x), _t(mu), -0.5)
    with pytest.raises(ValueError, match="var has negative entries"):
        F.gaussian_nll_loss(_t(x), _t(mu), _t([1.0, -1.0]))
    if torch is not None:
        for v in (-0.5, torch.tensor([1.0, -1.0], dtype=torch.float64)):
            with pytest.raises(ValueError, match="negative"):
                torch.nn.functional.gaussian_nll_loss(torch.tensor(x), torch.tensor(mu), v)


# ================================================================ bool promotion
BOOLS = np.array([True, False])
INTS = np.array([3, -2])
FLOAT = "the default float dtype"
PROMOTIONS = [
    # op, left, right, expected values, expected dtype
    ("add", BOOLS, 1, [2, 1], np.int64), ("add", 1, BOOLS, [2, 1], np.int64),
    ("add", BOOLS, 2.5, [3.5, 2.5], FLOAT), ("add", BOOLS, True, [True, True], np.bool_),
    ("add", BOOLS, BOOLS, [True, False], np.bool_), ("add", BOOLS, INTS, [4, -2], np.int64),
    ("mul", BOOLS, 2, [2, 0], np.int64), ("mul", 2, BOOLS, [2, 0], np.int64),
    ("mul", BOOLS, 2.5, [2.5, 0.0], FLOAT), ("mul", BOOLS, True, [True, False], np.bool_),
    ("mul", BOOLS, BOOLS, [True, False], np.bool_), ("mul", INTS, True, [3, -2], np.int64),
    ("add", INTS, True, [4, -1], np.int64), ("add", INTS, 1.5, [4.5, -0.5], FLOAT),
    ("eq", BOOLS, 2, [False, False], np.bool_), ("lt", BOOLS, 2, [True, True], np.bool_),
    ("eq", BOOLS, 1.0, [True, False], np.bool_),
]


def _operand(v, lib):
    if not isinstance(v, np.ndarray):
        return v
    return ng.tensor(v) if lib == "ng" else torch.tensor(v)


@pytest.mark.parametrize("op, left, right, values, dtype", PROMOTIONS)
def test_bool_promotion(op, left, right, values, dtype):
    """PyTorch's promotion with bool tensors: function and operator forms."""
    a, b = _operand(left, "ng"), _operand(right, "ng")
    for out in (getattr(F, op)(a, b), getattr(operator, op)(a, b)):
        expected = ng.get_default_dtype() if dtype is FLOAT else np.dtype(dtype)
        assert out.dtype == expected, f"dtype {out.dtype}, expected {expected}"
        _same(out.numpy(), np.array(values))
    if torch is not None:
        ref = getattr(operator, op)(_operand(left, "torch"), _operand(right, "torch"))
        expected = (torch.get_default_dtype() if dtype is FLOAT
                    else getattr(torch, np.dtype(dtype).name))
        assert ref.dtype == expected
        _same(ref.numpy(), np.array(values))


@pytest.mark.parametrize("left, right, both", [
    (BOOLS, BOOLS, True), (BOOLS, True, True), (True, BOOLS, True), (BOOLS, 1, False),
    (1, BOOLS, False), (BOOLS, 2.5, False), (INTS, True, False), (INTS, BOOLS, False),
    (BOOLS, np.array([1.5, 2.0]), False),
])
def test_subtraction_refuses_bools(left, right, both):
    """As in PyTorch: two bools -> 'with two bool tensors', one -> 'with a bool tensor'."""
    what = "two bool tensors" if both else "a bool tensor"
    with pytest.raises(RuntimeError, match=f"sub: subtraction, .* with {what} is not supported"):
        F.sub(_operand(left, "ng"), _operand(right, "ng"))
    if isinstance(left, np.ndarray):
        with pytest.raises(RuntimeError, match=what):
            _operand(left, "ng") - _operand(right, "ng")
    if torch is not None:
        with pytest.raises(RuntimeError, match=f"Subtraction, .* with {what} is not supported"):
            _operand(left, "torch") - _operand(right, "torch")


def test_negation_refuses_bools():
    with pytest.raises(RuntimeError, match="neg: negation, .* of a bool tensor"):
        -ng.tensor(BOOLS)
    if torch is not None:
        with pytest.raises(RuntimeError, match="Negation, .* on a bool tensor"):
            -torch.tensor(BOOLS)


@pytest.mark.parametrize("left, right, alpha, expected", [
    (BOOLS, BOOLS, 2, np.array([True, False])), (BOOLS, BOOLS, 0, np.array([True, False])),
    (BOOLS, 1, 2, np.array([3, 2])), (INTS, INTS, 2, np.array([9, -6])),
    (BOOLS, BOOLS, 2.5, None), (INTS, 1, 2.5, None), (INTS, INTS, True, None),
    (np.array([1.5]), 1, 2.5, np.array([4.0], np.float32)),
])
def test_add_alpha_follows_the_result_kind(left, right, alpha, expected):
    """alpha is read in the result's kind (a bool result: bool(alpha)); a float alpha with
    integer tensors and a bool alpha with non-bool ones are refused, as in PyTorch."""
    if expected is None:
        with pytest.raises(RuntimeError, match="add: .*alpha"):
            F.add(_operand(left, "ng"), _operand(right, "ng"), alpha=alpha)
    else:
        out = F.add(_operand(left, "ng"), _operand(right, "ng"), alpha=alpha)
        assert out.dtype.kind == expected.dtype.kind
        _same(out.numpy(), expected)
    if torch is not None:
        if expected is None:
            with pytest.raises(RuntimeError):
                torch.add(_operand(left, "torch"), _operand(right, "torch"), alpha=alpha)
        else:
            ref = torch.add(_operand(left, "torch"), _operand(right, "torch"), alpha=alpha)
            _same(ref.numpy(), expected)
