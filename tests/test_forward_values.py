"""Forward VALUES of every public op of ``nanogen.functional``, against independent references.

Gradient checks (test_ops_grad.py and the family files) only prove that an op's backward is
consistent with its own forward; nothing there says the forward is right.  Here every name of
``F.__all__`` is evaluated on hypothesis-drawn inputs and compared with a reference computed in
this file, in float64:

* elementwise math, activations, losses: closed forms written with NumPy ufuncs or Python's
  ``math`` element by element, ``scipy.special.erf`` / ``ndtr``, Python's own comparisons,
  ``round``, ``//`` and ``%`` (sign conventions);
* reductions: Python over each reduced group (``math.fsum`` / ``prod``, ``max`` with the first
  index, ``sorted`` with stable keys); shape and indexing ops: element-by-element index
  arithmetic (explicit loops for permute, broadcast, tile, flip, gather, scatter_add, one_hot;
  NumPy indexing for ``x[idx]``, with PyTorch's placement rule for integers among arrays);
* matrix products: Σ_k with ``math.fsum``;
* convolutions, pooling, resampling, padding, normalisation and attention: straightforward
  references written out here with loops or ``einsum`` over tiny shapes (never nanogen's own
  ``*_reference`` kernels);
* dropout: p = 0 / eval is the identity, p = 1 is zero, otherwise every output is 0 or
  x / (1 - p) and the kept fraction is within a binomial bound.

PyTorch is deliberately NOT a reference here (it is an optional oracle elsewhere); the semantics
followed are PyTorch's all the same (``round`` half to even, ``remainder`` with the divisor's
sign, legacy softmax dims, pooling / interpolation index conventions ...).

Tolerances are float64-tight: rtol 1e-12 and atol 1e-14 (``RTOL`` / ``ATOL``) unless a comment
says why; integer, boolean, index and shape results must match exactly, and inf / nan must sit
in the same places.  Every documented calling form is exercised (dim None / int / tuple /
negative, keepdim, reductions, weights, ignore_index, options, method and operator forms, scalar
operands on either side).  Sides are mostly 2..4; size-1 sides are drawn as a minority and empty
sides come as explicit examples.

The ten forward bugs this file found (norm at p = -inf and 0, empty reductions, var with
correction >= n, chunk and matmul of empty tensors, gaussian_nll_loss's variance shapes, bool
promotion) are fixed and run as ordinary cases; their gradients are checked in
test_empty_and_promotion.py.
``test_every_public_op_has_a_forward_reference`` fails when a name of ``F.__all__`` is not
registered by some test's ``@covers``.
"""
from __future__ import annotations

import itertools
import math
import operator

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special

import nanogen as ng
import nanogen.functional as F
from nanogen.testing import assert_close

from .strategies import distinct_arrays, float64_arrays, index_for, int_arrays, wrap_index

RTOL, ATOL = 1e-12, 1e-14

COVERED: set[str] = set()


def covers(*names):
    """Register the public ops a test checks (for the completeness meta-test)."""
    unknown = set(names) - set(F.__all__)
    assert not unknown, f"@covers names that are not public ops: {sorted(unknown)}"
    COVERED.update(names)
    return lambda fn: fn


# ================================================================ helpers
def T(a, dtype=None):
    """A nanogen tensor holding a copy of ``a`` (float64 stays float64)."""
    return ng.tensor(np.array(a, dtype=dtype))


def R(a):
    """A float64 leaf that requires grad (some ops take another path for those)."""
    return ng.tensor(np.array(a, dtype=np.float64), requires_grad=True)


def host(x):
    return x.detach().numpy() if isinstance(x, ng.Tensor) else np.asarray(x)


def check(actual, expected, rtol=RTOL, atol=ATOL, dtype=None):
    """``actual`` (a tensor) equals ``expected`` (an array): same shape, same dtype kind (or
    exactly ``dtype``), inf / nan in the same places, finite values within tolerance; integer
    and boolean results exactly."""
    a, e = host(actual), np.asarray(expected)
    assert isinstance(actual, ng.Tensor), f"expected a Tensor, got {type(actual).__name__}"
    assert a.shape == e.shape, f"shape {a.shape}, expected {e.shape}"
    if dtype is not None:
        assert a.dtype == np.dtype(dtype), f"dtype {a.dtype}, expected {np.dtype(dtype)}"
    if e.dtype.kind in "biu":
        assert a.dtype.kind == e.dtype.kind, f"dtype {a.dtype}, expected kind of {e.dtype}"
        np.testing.assert_array_equal(a, e)
        return
    assert a.dtype.kind == "f", f"dtype {a.dtype}, expected a float"
    special_ = ~np.isfinite(e)
    np.testing.assert_array_equal(a[special_], e[special_])     # inf, -inf, nan where expected
    assert_close(np.where(special_, 0.0, a), np.where(special_, 0.0, e), rtol=rtol, atol=atol)


# ================================================================ strategies
# one side: 2..4 most of the time, 1 about one draw in four (size-1 dims are a minority here;
# empty dims come as explicit @examples)
SIDE = st.one_of(st.integers(2, 4), st.integers(2, 4), st.integers(2, 4), st.just(1))


def shapes_(min_dims=1, max_dims=3, side=SIDE):
    return st.integers(min_dims, max_dims).flatmap(lambda n: st.tuples(*[side] * n))


def floats(shape, lo=-2.0, hi=2.0, away_from=(), margin=0.1):
    return float64_arrays(shape, lo, hi, away_from, margin)


@st.composite
def broadcast_pair(draw, min_dims=0, max_dims=3):
    """Two shapes that broadcast together to a drawn result: each a suffix of it (usually
    all of it) with a side set to 1 now and then."""
    out = draw(shapes_(min_dims, max_dims))

    def operand():
        drop = draw(st.sampled_from([0, 0, 0, 1, 2]))
        return tuple(1 if draw(st.sampled_from([False] * 4 + [True])) else s
                     for s in out[min(drop, len(out)):])
    return operand(), operand()


@st.composite
def dims_of(draw, ndim, allow_none=True):
    """None, an int or a tuple of distinct dims (negative forms included) of an ndim tensor."""
    kinds = ["int", "tuple"] + (["none"] if allow_none else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(a - ndim if draw(st.booleans()) else a for a in axes)


def axes_of(dim, ndim):
    """``dim`` (None / int / tuple) as a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = dim if isinstance(dim, tuple) else (dim,)
    return tuple(sorted(d % ndim for d in dims))


def unit_arrays(min_dims=0, max_dims=3):
    """Arrays of values in [0, 1], mapped onto an op's domain by the test (so one strategy, and
    one set of @examples with empty and 0-d arrays, serves every op of a table)."""
    return hnp.arrays(np.float64, shapes_(min_dims, max_dims),
                      elements=st.floats(0.0, 1.0, allow_subnormal=False))


def span(lo, hi):
    """[0, 1] -> [lo, hi]."""
    return lambda u: lo + (hi - lo) * u


def two_sided(lo, hi):
    """[0, 1] -> [-hi, -lo] ∪ [lo, hi] (away from 0)."""
    return lambda u: np.where(u < 0.5, -(lo + (hi - lo) * 2 * u),
                              lo + (hi - lo) * (2 * u - 1))


def elementwise(fn, otypes=(np.float64,)):
    """A reference that applies a Python scalar function element by element (with
    broadcasting) on Python scalars: independent of NumPy's ufunc loops."""
    def on_python_scalars(*args):
        return fn(*(a.item() if isinstance(a, np.generic) else a for a in args))
    vectorized = np.vectorize(on_python_scalars, otypes=list(otypes))

    def ref(*args):
        with np.errstate(invalid="ignore"):      # C's x < nan raises the FPU's invalid flag
            return vectorized(*args)
    return ref


# ================================================================ elementwise: unary math
# name: (reference, domain map [0, 1] -> domain)
UNARY = {
    "neg": (lambda x: -x, span(-3, 3)),
    "exp": (np.exp, span(-6, 6)),
    "expm1": (elementwise(math.expm1), span(-3, 3)),
    "log": (elementwise(math.log), span(0.01, 6)),
    "log1p": (elementwise(math.log1p), span(-0.95, 4)),
    "sqrt": (elementwise(math.sqrt), span(0.0, 6)),
    "rsqrt": (lambda x: 1.0 / np.sqrt(x), span(0.01, 6)),
    "sin": (elementwise(math.sin), span(-7, 7)),
    "cos": (elementwise(math.cos), span(-7, 7)),
    "tanh": (elementwise(math.tanh), span(-5, 5)),
    "sigmoid": (lambda x: 1.0 / (1.0 + np.exp(-x)), span(-10, 10)),
    "abs": (lambda x: np.where(x < 0, -x, x), span(-3, 3)),
    "square": (lambda x: x * x, span(-3, 3)),
    "erf": (special.erf, span(-3, 3)),
    "normal_cdf": (special.ndtr, span(-3, 3)),
    "reciprocal": (lambda x: 1.0 / x, two_sided(0.05, 4)),
}
# a few need a looser rtol:  Φ(x) = (1 + erf(x/√2)) / 2 cancels for x < 0 (Φ(-3) = 1.3e-3
# loses ~3 digits against SciPy's direct ndtr)
UNARY_RTOL = {"normal_cdf": 1e-10}
TENSOR_METHODS = {"neg", "exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh",
                  "sigmoid", "abs", "square"}
OPERATOR_FORMS = {"neg": operator.neg, "abs": abs}


@covers(*UNARY)
@pytest.mark.parametrize("name", sorted(UNARY))
@given(u=unit_arrays())
@example(u=np.zeros((0, 3)))
@example(u=np.array(0.5))
def test_unary_math(name, u):
    ref, domain = UNARY[name]
    x = domain(u)
    expected = ref(x) if x.size else x.copy()
    rtol = UNARY_RTOL.get(name, RTOL)
    check(getattr(F, name)(T(x)), expected, rtol=rtol)
    if name in TENSOR_METHODS:
        check(getattr(T(x), name)(), expected, rtol=rtol)
    if name in OPERATOR_FORMS:
        check(OPERATOR_FORMS[name](T(x)), expected, rtol=rtol)


SPECIAL = np.array([-np.inf, -1e300, -0.0, 0.0, 1e-300, 1e300, np.inf, np.nan])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name, expected", [
    ("exp", [0.0, 0.0, 1.0, 1.0, 1.0, np.inf, np.inf, np.nan]),
    ("expm1", [-1.0, -1.0, -0.0, 0.0, 1e-300, np.inf, np.inf, np.nan]),
    ("log", [np.nan, np.nan, -np.inf, -np.inf, math.log(1e-300), math.log(1e300), np.inf,
             np.nan]),
    ("sqrt", [np.nan, np.nan, -0.0, 0.0, 1e-150, 1e150, np.inf, np.nan]),
    ("tanh", [-1.0, -1.0, -0.0, 0.0, 1e-300, 1.0, 1.0, np.nan]),
    ("sigmoid", [0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.0, np.nan]),
    ("abs", [np.inf, 1e300, 0.0, 0.0, 1e-300, 1e300, np.inf, np.nan]),
    ("erf", [-1.0, -1.0, -0.0, 0.0, 2 / math.sqrt(math.pi) * 1e-300, 1.0, 1.0, np.nan]),
    ("normal_cdf", [0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.0, np.nan]),
])
def test_unary_special_values(name, expected):
    """±inf, ±0, huge, tiny and nan inputs: limits and IEEE conventions."""
    check(getattr(F, name)(T(SPECIAL)), np.array(expected))


# ================================================================ elementwise: binary arithmetic
# name: (reference on broadcast arrays, Python operator or None, is a Tensor method,
#        domain of the first operand, of the second)
ARITH = {
    "add": (lambda a, b: a + b, operator.add, True, span(-3, 3), span(-3, 3)),
    "sub": (lambda a, b: a - b, operator.sub, True, span(-3, 3), span(-3, 3)),
    "mul": (lambda a, b: a * b, operator.mul, True, span(-3, 3), span(-3, 3)),
    "div": (lambda a, b: a / b, operator.truediv, True, span(-3, 3), two_sided(0.1, 3)),
    "true_divide": (lambda a, b: a / b, None, False, span(-3, 3), two_sided(0.1, 3)),
    "pow": (lambda a, b: np.exp(b * np.log(a)), operator.pow, True, span(0.1, 3),
            span(-2.5, 2.5)),
    "maximum": (lambda a, b: np.where(a >= b, a, b), None, True, span(-3, 3), span(-3, 3)),
    "minimum": (lambda a, b: np.where(a <= b, a, b), None, True, span(-3, 3), span(-3, 3)),
}


@st.composite
def unit_pair(draw):
    sa, sb = draw(broadcast_pair())
    unit = st.floats(0.0, 1.0, allow_subnormal=False)
    return draw(hnp.arrays(np.float64, sa, elements=unit)), \
        draw(hnp.arrays(np.float64, sb, elements=unit))


@covers(*ARITH)
@pytest.mark.parametrize("name", sorted(ARITH))
@given(pair=unit_pair(), c=st.floats(0.0, 1.0))
@example(pair=(np.zeros((0, 3)), np.full((1, 3), 0.5)), c=0.5)
def test_binary_arithmetic(name, pair, c):
    """Broadcasting tensor-tensor operands (function, method and operator forms), and a Python
    number on either side (x - c, c - x, x / c, c / x, c ** x ...)."""
    ref, op, is_method, dom_a, dom_b = ARITH[name]
    fn = getattr(F, name)
    a, b = dom_a(pair[0]), dom_b(pair[1])
    expected = ref(a, b)
    check(fn(T(a), T(b)), expected)
    if is_method:
        check(getattr(T(a), name)(T(b)), expected)
    if op is not None:
        check(op(T(a), T(b)), expected)
    cb = float(dom_b(np.array(c)))                   # a number on the right
    expected = ref(a, np.full(a.shape, cb))
    check(fn(T(a), cb), expected)
    if op is not None:
        check(op(T(a), cb), expected)
    ca = float(dom_a(np.array(c)))                   # a number on the left
    expected = ref(np.full(b.shape, ca), b)
    check(fn(ca, T(b)), expected)
    if op is not None:
        check(op(ca, T(b)), expected)


@covers("add", "sub")
@given(pair=unit_pair(), alpha=st.sampled_from([2, -1, 0.5, 0]))
def test_add_sub_alpha(pair, alpha):
    """add / sub with ``alpha``: a + alpha b, a - alpha b."""
    a, b = span(-3, 3)(pair[0]), span(-3, 3)(pair[1])
    check(F.add(T(a), T(b), alpha=alpha), a + alpha * b)
    check(F.sub(T(a), T(b), alpha=alpha), a - alpha * b)
    check(T(a).add(T(b), alpha=alpha), a + alpha * b)


def _pow_ref(x, p):
    """x^p in closed form: exp(p log|x|) with the sign of x for integer p (x ≠ 0 for p < 0)."""
    if p == 0:
        return np.ones_like(x)
    mag = np.exp(p * np.log(np.abs(x)))
    return mag * np.where(x < 0, (-1.0) ** p, 1.0) if float(p).is_integer() else mag


POW_EXPONENTS = [3, 2, 1, 0, -1, -2, 3.0, -1.5, 0.5, 2.5, 1 / 3]


@covers("pow")
@given(x=float64_arrays(shapes_(0, 3), 0.2, 3.0), neg=st.booleans())
def test_pow_scalar_exponent(x, neg):
    """x ** p for constant exponents (int and float, negative, fractional); negative bases with
    the integer exponents; function, operator and method forms."""
    for p in POW_EXPONENTS:
        base = -x if neg and float(p).is_integer() else x
        expected = _pow_ref(base, p)
        check(F.pow(T(base), p), expected)
        check(T(base) ** p, expected)
        check(T(base).pow(p), expected)


@covers("pow")
@given(x=int_arrays(shapes_(1, 2), -5, 5), p=st.sampled_from([0, 1, 2, 3]))
def test_pow_integer_tensor(x, p):
    """An int64 tensor to a non-negative int power stays int64 and exact."""
    check(F.pow(T(x), p), np.array([[int(v) ** p for v in row] for row in x.reshape(
        x.shape[0], -1)], dtype=np.int64).reshape(x.shape), dtype=np.int64)


@covers("div", "true_divide", "floor_divide")
@given(a=int_arrays(shapes_(1, 2), -9, 9), b=st.sampled_from([-4, -3, -2, -1, 1, 2, 3, 4]))
def test_integer_division(a, b):
    """int / int is true division in the default float dtype (PyTorch's); rounding_mode="floor"
    floors (Python's //)."""
    expected = elementwise(lambda u: u / b)(a)
    check(F.div(T(a), T(np.full(a.shape, b))), expected, rtol=1e-6, atol=1e-7,
          dtype=ng.get_default_dtype())        # float32 (the default dtype): 1e-6
    check(F.true_divide(T(a), b), expected, rtol=1e-6, atol=1e-7)
    check(F.div(T(a), b, rounding_mode="floor"),
          elementwise(lambda u: u // b, [np.int64])(a), dtype=np.int64)


@covers("add", "mul")
@pytest.mark.parametrize("case", [
    "int tensor + float", "int tensor * int", "bool tensor + int",
])
def test_arithmetic_promotion(case):
    """PyTorch's promotions for mixed kinds."""
    i = T(np.array([3, -2, 0], dtype=np.int64))
    if case == "int tensor + float":
        check(F.add(i, 1.5), np.array([4.5, -0.5, 1.5]), dtype=ng.get_default_dtype())
    elif case == "int tensor * int":
        check(F.mul(i, 3), np.array([9, -6, 0]), dtype=np.int64)
    else:
        check(F.add(T(np.array([True, False])), 1), np.array([2, 1]), dtype=np.int64)


# ================================================================ elementwise: selection
@covers("clamp", "clip")
@given(x=floats(shapes_(0, 3), -3, 3), lo=st.floats(-2, 0.5), hi=st.floats(-0.5, 2),
       data=st.data())
def test_clamp(x, lo, hi, data):
    """clamp(x, min, max) = min(max(x, min), max) (so max wins when min > max, as in PyTorch);
    scalar bounds, one-sided, crossed, and broadcasting tensor bounds; clamp and clip, function
    and method forms."""
    lo_a = data.draw(floats(x.shape[-1:] if x.ndim else (), -2, 0.5), label="lo")
    hi_a = data.draw(floats(x.shape[-1:] if x.ndim else (), -0.5, 2), label="hi")

    def ref(lo_, hi_):
        out = x if lo_ is None else np.where(x < lo_, lo_, x)
        return out if hi_ is None else np.where(out > hi_, hi_, out)
    for kw, expected in [(dict(min=lo), ref(lo, None)), (dict(max=hi), ref(None, hi)),
                         (dict(min=lo, max=hi), ref(lo, hi)),
                         (dict(min=1.0, max=-1.0), ref(1.0, -1.0)),
                         (dict(min=T(lo_a), max=T(hi_a)), ref(lo_a, hi_a)),
                         (dict(min=T(lo_a)), ref(lo_a, None))]:
        for name in ("clamp", "clip"):
            check(getattr(F, name)(T(x), **kw), expected)
            check(getattr(T(x), name)(**kw), expected)
    check(F.clamp(T(x), lo, hi), ref(lo, hi))


@st.composite
def where_case(draw):
    sc, sa = draw(broadcast_pair())
    out = np.broadcast_shapes(sc, sa)
    sb = tuple(1 if draw(st.sampled_from([False] * 3 + [True])) else s for s in out)
    return (draw(hnp.arrays(np.bool_, sc)), draw(floats(sa, -3, 3)), draw(floats(sb, -3, 3)))


def _where_ref(cond, a, b):
    shape = np.broadcast_shapes(np.shape(cond), np.shape(a), np.shape(b))
    out = np.array(np.broadcast_to(b, shape), dtype=np.float64)
    pick = np.broadcast_to(cond, shape)
    out[pick] = np.broadcast_to(a, shape)[pick]
    return out


@covers("where")
@given(case=where_case(), c=st.floats(-3, 3))
def test_where(case, c):
    """condition ? input : other, all three broadcasting; a number for either value; the
    condition as a tensor or an array."""
    cond, a, b = case
    check(F.where(T(cond), T(a), T(b)), _where_ref(cond, a, b))
    check(F.where(T(cond), c, T(b)), _where_ref(cond, c, b))
    check(F.where(T(cond), T(a), c), _where_ref(cond, a, c))
    check(F.where(cond, T(a), T(b)), _where_ref(cond, a, b))


@covers("masked_fill")
@given(shapes=broadcast_pair(min_dims=1), data=st.data(), v=st.floats(-5, 5))
def test_masked_fill(shapes, data, v):
    """``value`` (a float, an int, a 0-d tensor, -inf) where the broadcasting mask holds;
    function and method forms."""
    sx, sm = shapes
    sx = np.broadcast_shapes(sx, sm)              # the mask broadcasts to the input, not beyond
    x = data.draw(floats(sx, -3, 3), label="x")
    mask = data.draw(hnp.arrays(np.bool_, sm), label="mask")
    for value, fill in [(v, v), (2, 2.0), (T(np.array(v)), v), (-np.inf, -np.inf)]:
        expected = _where_ref(mask, fill, x)
        check(F.masked_fill(T(x), T(mask), value), expected)
        check(T(x).masked_fill(T(mask), value), expected)


@covers("lerp")
@given(pair=unit_pair(), w=st.floats(-0.5, 1.5))
def test_lerp(pair, w):
    """lerp(start, end, weight) = start + weight (end - start), weight a number, a tensor of
    the full shape or a 0-d tensor."""
    a, b = span(-3, 3)(pair[0]), span(-3, 3)(pair[1])
    shape = np.broadcast_shapes(a.shape, b.shape)
    full = np.full(shape, w) + np.linspace(0, 0.25, int(np.prod(shape))).reshape(shape)
    for weight, wa in [(w, w), (T(full), full), (T(np.array(w)), w)]:
        check(F.lerp(T(a), T(b), weight), a + wa * (b - a), atol=1e-13)   # ulps of |end - start|


# ================================================================ elementwise: comparisons & logic
GRID = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, np.inf, -np.inf, np.nan])


def grid_arrays(shape):
    """Values from a small grid with nan / ±inf, so ties and special values are common."""
    return hnp.arrays(np.float64, shape, elements=st.sampled_from(GRID.tolist()))


COMPARE = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
           "gt": operator.gt, "ge": operator.ge}


@covers(*COMPARE)
@pytest.mark.parametrize("name", sorted(COMPARE))
@given(shapes=broadcast_pair(), data=st.data(), c=st.sampled_from(GRID.tolist()))
def test_comparisons(name, shapes, data, c):
    """Bool results, Python's comparison semantics per element (nan compares unequal); function,
    method and operator forms, a number on either side (``c < x`` reflects into ``x > c``)."""
    op = COMPARE[name]
    ref = elementwise(op, [np.bool_])
    a = data.draw(grid_arrays(shapes[0]), label="a")
    b = data.draw(grid_arrays(shapes[1]), label="b")
    fn = getattr(F, name)
    for out, expected in [(fn(T(a), T(b)), ref(a, b)),
                          (getattr(T(a), name)(T(b)), ref(a, b)),
                          (op(T(a), T(b)), ref(a, b)),
                          (fn(T(a), c), ref(a, c)),
                          (op(T(a), c), ref(a, c)),
                          (fn(c, T(a)), ref(c, a)),
                          (op(c, T(a)), ref(c, a))]:
        check(out, expected, dtype=np.bool_)


@covers("logical_not", "logical_and", "logical_or")
@pytest.mark.parametrize("kind", ["bool", "float"])
@given(shapes=broadcast_pair(), data=st.data())
def test_logical(kind, shapes, data):
    """Truth per element (nonzero and nan are True); operators ~ & | on bool tensors."""
    draw = (lambda s: hnp.arrays(np.bool_, s)) if kind == "bool" else grid_arrays
    a = data.draw(draw(shapes[0]), label="a")
    b = data.draw(draw(shapes[1]), label="b")
    check(F.logical_not(T(a)), elementwise(lambda u: not u, [np.bool_])(a), dtype=np.bool_)
    check(F.logical_and(T(a), T(b)),
          elementwise(lambda u, v: bool(u) and bool(v), [np.bool_])(a, b), dtype=np.bool_)
    check(F.logical_or(T(a), T(b)),
          elementwise(lambda u, v: bool(u) or bool(v), [np.bool_])(a, b), dtype=np.bool_)
    check(T(a).logical_not(), elementwise(lambda u: not u, [np.bool_])(a))
    if kind == "bool":
        check(~T(a), ~a)
        check(T(a) & T(b), elementwise(lambda u, v: u and v, [np.bool_])(a, b))
        check(T(a) | T(b), elementwise(lambda u, v: u or v, [np.bool_])(a, b))


@covers("isfinite", "isnan")
@given(x=grid_arrays(shapes_(0, 3)))
@example(x=GRID.copy())
def test_isfinite_isnan(x):
    check(F.isfinite(T(x)), elementwise(math.isfinite, [np.bool_])(x), dtype=np.bool_)
    check(F.isnan(T(x)), elementwise(math.isnan, [np.bool_])(x), dtype=np.bool_)


QUARTERS = st.integers(-16, 16).map(lambda k: k / 4)      # exact halves and quarters: ties


@covers("sign", "floor", "ceil", "round")
@given(x=st.one_of(floats(shapes_(0, 3), -5, 5),
                   hnp.arrays(np.float64, shapes_(0, 3), elements=QUARTERS)))
@example(x=np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -0.0, 0.0, np.inf, -np.inf]))
def test_sign_floor_round(x):
    """sign (0 at ±0), floor, ceil (integer tensors unchanged), and round half to even
    (Python's ``round``, NumPy's, PyTorch's); round(decimals=1) on quarters (exact in binary,
    so the ties are real)."""
    check(F.sign(T(x)), np.where(x > 0, 1.0, np.where(x < 0, -1.0, 0.0)))
    check(T(x).sign(), np.where(x > 0, 1.0, np.where(x < 0, -1.0, 0.0)))
    fl = elementwise(lambda u: math.floor(u) if math.isfinite(u) else u)(x)
    check(F.floor(T(x)), fl)
    check(T(x).floor(), fl)
    check(F.ceil(T(x)), elementwise(lambda u: math.ceil(u) if math.isfinite(u) else u)(x))
    ints = np.array([math.trunc(v) for v in x.ravel() if math.isfinite(v)], dtype=np.int64)
    check(F.floor(T(ints)), ints, dtype=np.int64)
    check(F.ceil(T(ints)), ints, dtype=np.int64)
    rd = elementwise(lambda u: float(round(u)) if math.isfinite(u) else u)(x)
    check(F.round(T(x)), rd)
    check(T(x).round(), rd)
    q = np.round(x * 4) / 4                        # quarters: x * 10 is exact, ties at .x5
    rd1 = elementwise(lambda u: round(u, 1) if math.isfinite(u) else u)(q)
    check(F.round(T(q), 1), rd1)
    check(F.round(T(q), decimals=1), rd1)


DIVISORS = st.sampled_from([-3.0, -2.5, -1.0, -0.75, 0.5, 1.0, 2.0, 3.0])


@covers("floor_divide", "remainder")
@pytest.mark.parametrize("kind", ["float", "int"])
@given(data=st.data(), shapes=broadcast_pair(min_dims=1))
def test_floor_divide_remainder(kind, data, shapes):
    """Python's conventions (= PyTorch's): a // b = floor(a / b), and a % b takes the sign of
    the divisor; negative operands on both sides; function and operator forms, a number on
    either side."""
    if kind == "float":
        a = data.draw(hnp.arrays(np.float64, shapes[0], elements=st.one_of(
            QUARTERS, st.floats(-8, 8, allow_subnormal=False))), label="a")
        b = data.draw(hnp.arrays(np.float64, shapes[1], elements=DIVISORS), label="b")
        c = data.draw(DIVISORS, label="c")
        otypes = [np.float64]
    else:
        a = data.draw(int_arrays(shapes[0], -9, 9), label="a")
        b = data.draw(hnp.arrays(np.int64, shapes[1], elements=st.sampled_from(
            [-4, -3, -1, 1, 2, 3])), label="b")
        c = data.draw(st.sampled_from([-7, -2, 5]), label="c")
        otypes = [np.int64]
    fdiv = elementwise(operator.floordiv, otypes)
    mod = elementwise(operator.mod, otypes)
    for out, expected in [(F.floor_divide(T(a), T(b)), fdiv(a, b)), (T(a) // T(b), fdiv(a, b)),
                          (F.floor_divide(T(a), c), fdiv(a, c)), (T(a) // c, fdiv(a, c)),
                          (F.floor_divide(c, T(b)), fdiv(c, b)), (c // T(b), fdiv(c, b)),
                          (F.remainder(T(a), T(b)), mod(a, b)), (T(a) % T(b), mod(a, b)),
                          (F.remainder(T(a), c), mod(a, c)), (T(a) % c, mod(a, c)),
                          (F.remainder(c, T(b)), mod(c, b)), (c % T(b), mod(c, b))]:
        check(out, expected, dtype=otypes[0])


# ================================================================ dtype, device, copies
@covers("cast")
@given(x=float64_arrays(shapes_(0, 3), -100, 100))
@example(x=np.array([-1.7, -0.5, -0.0, 0.0, 0.5, 1.7, 99.99]))
def test_cast(x):
    """float -> int truncates toward zero; -> bool is x != 0; float32 rounds to nearest;
    int -> float and bool -> int are exact; the same dtype is a no-op."""
    for dtype in (np.int64, np.int32):
        trunc = np.array([math.trunc(v) for v in x.ravel()], dtype=dtype).reshape(x.shape)
        check(F.cast(T(x), dtype), trunc, dtype=dtype)
    check(F.cast(T(x), np.bool_), x != 0, dtype=np.bool_)
    check(F.cast(T(x), np.float32), np.array([np.float32(v) for v in x.ravel()],
                                             dtype=np.float32).reshape(x.shape),
          rtol=0, atol=0, dtype=np.float32)
    check(F.cast(R(x), np.float32), np.array([np.float32(v) for v in x.ravel()],
                                             dtype=np.float32).reshape(x.shape),
          rtol=0, atol=0, dtype=np.float32)                          # (the autograd path)
    check(F.cast(T(x), np.float64), x, rtol=0, atol=0, dtype=np.float64)
    check(F.cast(T(x), ng.float64), x, rtol=0, atol=0, dtype=np.float64)
    ints = np.array([math.trunc(v) for v in x.ravel()], dtype=np.int64).reshape(x.shape)
    check(F.cast(T(ints), np.float64), ints.astype(np.float64), rtol=0, atol=0,
          dtype=np.float64)
    check(F.cast(T(x > 0), np.int64), (x > 0).astype(np.int64), dtype=np.int64)


@covers("to_device", "clone")
@given(x=floats(shapes_(0, 3)))
def test_to_device_clone(x):
    """Same values and dtype, on the CPU; clone is a copy (no memory shared with the source)."""
    src = T(x)
    moved = F.to_device(src, "cpu")
    check(moved, x, rtol=0, atol=0, dtype=np.float64)
    assert str(moved.device) == "cpu"
    copy = F.clone(src)
    check(copy, x, rtol=0, atol=0, dtype=np.float64)
    assert not np.shares_memory(host(copy), src.data)
    check(src.clone(), x, rtol=0, atol=0)


# ================================================================ reductions
def reduce_ref(x, dim, keepdim, fn, otype=np.float64):
    """Apply ``fn`` (a Python function of a list) to every group of ``x`` reduced over
    ``dim``: the reduced axes are moved last and each row handed over as Python scalars."""
    axes = axes_of(dim, x.ndim)
    kept = [i for i in range(x.ndim) if i not in axes]
    n_kept = int(np.prod([x.shape[i] for i in kept]))
    n_red = int(np.prod([x.shape[i] for i in axes]))
    rows = np.transpose(x, kept + list(axes)).reshape(n_kept, n_red)
    out = np.array([fn(row.tolist()) for row in rows], dtype=otype)
    out = out.reshape([x.shape[i] for i in kept])
    if keepdim:
        out = out.reshape([1 if i in axes else s for i, s in enumerate(x.shape)])
    return out


def _mean(v):
    return math.fsum(v) / len(v) if v else math.nan


def _var(v, correction):
    """Σ (x - mean)² / (n - correction), with PyTorch's max(0, n - correction) divisor."""
    if not v:
        return math.nan
    m = _mean(v)
    ss = math.fsum((a - m) ** 2 for a in v)
    dof = max(0, len(v) - correction)
    return ss / dof if dof else (math.nan if ss == 0 else math.inf)


def _lse(v):
    return math.log(math.fsum(math.exp(a) for a in v)) if v else -math.inf


# sums are compared with fsum (exactly rounded); nanogen's pairwise sums differ by up to
# n·eps·max|x| ~ 1e-14 absolutely (values ≤ 3, n ≤ 64), which matters where a sum cancels
SUM_ATOL = 1e-13

REDUCTIONS = {"sum": math.fsum, "mean": _mean, "prod": math.prod, "logsumexp": _lse,
              "amax": max, "amin": min}       # name: the reference on a list


@covers(*REDUCTIONS)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@given(x=floats(shapes_(1, 3), -3, 3), data=st.data(), keepdim=st.booleans())
@example(x=np.zeros((2, 0)), data=None, keepdim=False)
def test_reductions(name, x, data, keepdim):
    """dim None / int / tuple / negative, keepdim; function and method forms.  prod sees
    zeros and negatives (x is drawn on a grid half the time)."""
    ref = REDUCTIONS[name]
    dim = 0 if data is None else data.draw(dims_of(x.ndim), label="dim")
    if data is not None and name == "prod" and data.draw(st.booleans(), label="grid"):
        x = np.round(x * 2) / 2                            # zeros, ±0.5, ±1 ...
    if any(x.shape[a] == 0 for a in axes_of(dim, x.ndim)):      # an empty reduced dim
        if name in ("amax", "amin"):                 # has no max (PyTorch: IndexError)
            with pytest.raises(IndexError, match="empty"):
                getattr(F, name)(T(x), dim)
        return                                      # the others: test_empty_reductions
    expected = reduce_ref(x, dim, keepdim, ref)
    check(getattr(F, name)(T(x), dim, keepdim), expected, atol=SUM_ATOL)
    check(getattr(F, name)(T(x), dim=dim, keepdim=keepdim), expected, atol=SUM_ATOL)
    check(getattr(T(x), name)(dim, keepdim=keepdim), expected, atol=SUM_ATOL)
    if dim is None and not keepdim:
        check(getattr(F, name)(T(x)), expected, atol=SUM_ATOL)


@covers("sum", "mean", "logsumexp", "prod", "all", "any", "amax", "amin")
@pytest.mark.parametrize("name, dim, expected", [
    ("sum", 1, [0.0, 0.0]), ("prod", 1, [1.0, 1.0]), ("all", 1, [True, True]),
    ("any", 1, [False, False]),
    ("sum", 0, []), ("mean", 0, []), ("prod", 0, []), ("logsumexp", 0, []),
    ("mean", 1, [np.nan, np.nan]), ("logsumexp", 1, [-np.inf, -np.inf]),
    ("amax", 0, []), ("amin", 0, []),
])
def test_empty_reductions(name, dim, expected):
    """Reducing an empty dim gives the operation's identity (mean: nan); reducing a non-empty
    dim of an empty tensor gives an empty result."""
    check(getattr(F, name)(T(np.zeros((2, 0))), dim), np.array(expected))


@covers("logsumexp")
@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
@given(x=floats(shapes_(1, 3), -5, 5), shift=st.sampled_from([1000.0, -1000.0, 700.0]),
       data=st.data())
def test_logsumexp_large_and_infinite(x, shift, data):
    """Shifted far beyond exp's range: logsumexp(x + c) = c + logsumexp(x); rows of -inf give
    -inf, a +inf gives +inf."""
    dim = data.draw(dims_of(x.ndim), label="dim")
    check(F.logsumexp(T(x + shift), dim), shift + reduce_ref(x, dim, False, _lse), rtol=1e-12,
          atol=1e-12)                                         # |result| ~ 1000: 1e-15 relative
    y = x.copy()
    y[..., 0] = -np.inf
    if data.draw(st.booleans(), label="plus inf"):
        y.flat[-1] = np.inf
    expected = reduce_ref(y, dim, False, lambda v: math.inf if math.inf in v else (
        -math.inf if all(a == -math.inf for a in v) else _lse([a for a in v if a > -math.inf])))
    check(F.logsumexp(T(y), dim), expected)


VAR_FORMS = [dict(), dict(unbiased=True), dict(unbiased=False), dict(correction=0),
             dict(correction=1), dict(correction=2)]


@covers("var", "std", "var_mean", "std_mean")
@given(x=floats(shapes_(1, 3), -3, 3), data=st.data(), keepdim=st.booleans())
def test_var_std(x, data, keepdim):
    """Σ (x - mean)² / (n - correction); unbiased (the default) is correction 1; every form of
    the correction, function and method forms, the (var, mean) / (std, mean) pairs."""
    dim = data.draw(dims_of(x.ndim), label="dim")
    n = int(np.prod([x.shape[a] for a in axes_of(dim, x.ndim)]))
    mean = reduce_ref(x, dim, keepdim, _mean)
    for kw in VAR_FORMS:
        c = kw.get("correction", 0 if kw.get("unbiased") is False else 1)
        if n - c <= 0:
            continue                        # no degrees of freedom: see the test below
        var = reduce_ref(x, dim, keepdim, lambda v: _var(v, c))
        std = np.sqrt(var)                  # (√ of an absolute error of 1e-14: atol 1e-12)
        check(F.var(T(x), dim, keepdim=keepdim, **kw), var, atol=SUM_ATOL)
        check(F.std(T(x), dim, keepdim=keepdim, **kw), std, atol=1e-12)
        check(T(x).var(dim, keepdim=keepdim, **kw), var, atol=SUM_ATOL)
        check(T(x).std(dim, keepdim=keepdim, **kw), std, atol=1e-12)
        v, m = F.var_mean(T(x), dim, keepdim=keepdim, **kw)
        check(v, var, atol=SUM_ATOL)
        check(m, mean, atol=SUM_ATOL)
        s, m = F.std_mean(T(x), dim, keepdim=keepdim, **kw)
        check(s, std, atol=1e-12)
        check(m, mean, atol=SUM_ATOL)


@covers("var", "std")
@pytest.mark.parametrize("x, correction, expected", [
    ([1.5], 1, np.nan),                       # 0 / 0
    ([1.0, 1.0], 2, np.nan),
    ([1.0, 2.0], 2, np.inf),                  # PyTorch divides by max(0, n - correction)
])
def test_var_without_degrees_of_freedom(x, correction, expected):
    check(F.var(T(np.array(x)), correction=correction), np.array(expected))


def first_index(x, dim, keepdim, largest):
    """Index of the first max (min) along ``dim`` (flat when None): PyTorch's documented
    choice on ties."""
    def pick(v):
        best = max(v) if largest else min(v)
        return v.index(best)
    if dim is None:
        return np.array(pick(x.ravel().tolist()), dtype=np.int64)
    return reduce_ref(x, dim, keepdim, pick, np.int64)


TIES = st.integers(-3, 3).map(float)           # small grid: many ties


@covers("max", "min", "argmax", "argmin")
@pytest.mark.parametrize("largest", [True, False], ids=["max", "min"])
@given(x=st.one_of(floats(shapes_(1, 3), -3, 3),
                   hnp.arrays(np.float64, shapes_(1, 3), elements=TIES)),
       data=st.data(), keepdim=st.booleans())
def test_max_min_arg(largest, x, data, keepdim):
    """max(x): a 0-d value; max(x, dim): (values, indices) (a named pair), ties resolved to
    the first index; max(a, b): elementwise; argmax / argmin with dim None (flat) or int."""
    name, arg = ("max", "argmax") if largest else ("min", "argmin")
    fn, argfn = getattr(F, name), getattr(F, arg)
    d = data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim")
    best = max if largest else min
    check(fn(T(x)), np.array(best(x.ravel().tolist())))
    values, indices = fn(T(x), d, keepdim)
    check(values, reduce_ref(x, d, keepdim, best))
    check(indices, first_index(x, d, keepdim, largest), dtype=np.int64)
    pair = getattr(T(x), name)(dim=d, keepdim=keepdim)
    check(pair.values, reduce_ref(x, d, keepdim, best))
    check(pair.indices, first_index(x, d, keepdim, largest))
    check(argfn(T(x)), first_index(x, None, False, largest), dtype=np.int64)
    check(argfn(T(x), d, keepdim), first_index(x, d, keepdim, largest), dtype=np.int64)
    check(getattr(T(x), arg)(d, keepdim=keepdim), first_index(x, d, keepdim, largest))
    other = data.draw(floats(x.shape[-1:], -3, 3), label="other")
    check(fn(T(x), T(other)), np.where((x >= other) if largest else (x <= other), x, other))


@covers("all", "any")
@given(x=st.one_of(grid_arrays(shapes_(1, 3)), hnp.arrays(np.bool_, shapes_(1, 3))),
       data=st.data(), keepdim=st.booleans())
def test_all_any(x, data, keepdim):
    """Truth of every / some element (nonzero and nan are true); bool results."""
    dim = data.draw(dims_of(x.ndim), label="dim")
    truth = lambda v: [bool(a) for a in v]                       # noqa: E731
    check(F.all(T(x), dim, keepdim), reduce_ref(x, dim, keepdim, lambda v: all(truth(v)),
                                                np.bool_), dtype=np.bool_)
    check(F.any(T(x), dim, keepdim), reduce_ref(x, dim, keepdim, lambda v: any(truth(v)),
                                                np.bool_), dtype=np.bool_)
    check(T(x).all(dim, keepdim=keepdim), reduce_ref(x, dim, keepdim, lambda v: all(truth(v)),
                                                     np.bool_))
    check(T(x).any(), np.array(any(truth(x.ravel().tolist()))))


def _pnorm(p):
    def norm(v):
        a = [abs(u) for u in v]
        if p == "fro" or p == 2:
            return math.sqrt(math.fsum(u * u for u in a))
        if p == math.inf:
            return max(a)
        if p == -math.inf:
            return min(a)
        if p == 0:
            return float(sum(u != 0 for u in a))
        s = math.fsum(u ** p if u or p > 0 else math.inf for u in a)     # 0^-1 = inf
        return s ** (1.0 / p) if s != math.inf else (0.0 if p < 0 else math.inf)
    return norm


NORM_ORDERS = [2, "fro", 1, 3, 0.5, -1, math.inf, -math.inf, 0]


@covers("norm")
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")     # 0^-1 = inf
@given(x=st.one_of(floats(shapes_(1, 3), -3, 3),
                   hnp.arrays(np.float64, shapes_(1, 3), elements=TIES)),
       data=st.data(), keepdim=st.booleans())
def test_norm(x, data, keepdim):
    """(Σ|x|^p)^(1/p) for p = 2, 1, 3, 0.5, -1 (a zero makes the sum inf and the norm 0);
    inf: max |x|; -inf: min |x|; 0: the count of nonzeros; "fro": the 2-norm; over dim None /
    int / tuple, keepdim; function and method forms."""
    dim = data.draw(dims_of(x.ndim), label="dim")
    for p in NORM_ORDERS:
        expected = reduce_ref(x, dim, keepdim, _pnorm(p))
        check(F.norm(T(x), p, dim, keepdim), expected, atol=SUM_ATOL)
        check(T(x).norm(p, dim=dim, keepdim=keepdim), expected, atol=SUM_ATOL)
    expected = reduce_ref(x, None, False, _pnorm(2))
    check(F.norm(T(x)), expected, atol=SUM_ATOL)
    check(T(x).norm(), expected, atol=SUM_ATOL)


@covers("norm")
@pytest.mark.parametrize("p, x, dim, expected", [
    (-math.inf, [[0.5, -2.0, 0.25], [3.0, -1.5, 2.0]], 1, [0.25, 1.5]),
    (0, [[0.0, 1.0, -2.0], [0.0, 0.0, 0.5]], 1, [2.0, 1.0]),
    (0, [[0.0, 1.0, -2.0], [0.0, 0.0, 0.5]], None, 3.0),
])
def test_norm_known_bugs(p, x, dim, expected):
    """The p = ±inf / 0 conventions of PyTorch's vector norm (min |x|, count of nonzeros)."""
    check(F.norm(T(np.array(x)), p, dim), np.array(expected))


@covers("sum_to")
@given(x=floats(shapes_(0, 3), -3, 3), data=st.data())
def test_sum_to(x, data):
    """Sum down to a shape x broadcasts from (a suffix of x's shape with some sides 1): the
    adjoint of broadcasting; out[j] = Σ of x over the positions that broadcast from j."""
    drop = data.draw(st.integers(0, x.ndim), label="dropped leading dims")
    target = tuple(1 if data.draw(st.booleans(), label="to 1") else s for s in x.shape[drop:])
    groups = {}
    for idx in np.ndindex(*x.shape):
        key = tuple(0 if t == 1 else i for i, t in zip(idx[drop:], target))
        groups.setdefault(key, []).append(x[idx])
    expected = np.zeros(target)
    for key, vals in groups.items():
        expected[key] = math.fsum(vals)
    check(F.sum_to(T(x), target), expected, atol=SUM_ATOL)


@covers("cumsum")
@given(x=floats(shapes_(1, 3), -3, 3), data=st.data())
@example(x=np.zeros((2, 0)), data=None)
def test_cumsum(x, data):
    d = -1 if data is None else data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim")
    moved = np.moveaxis(x, d, -1)
    out = np.empty_like(moved)
    for idx in np.ndindex(moved.shape[:-1]):
        total = 0.0
        for k in range(moved.shape[-1]):
            total += moved[idx + (k,)]
            out[idx + (k,)] = total
    expected = np.moveaxis(out, -1, d)
    check(F.cumsum(T(x), d), expected, atol=SUM_ATOL)
    check(T(x).cumsum(d), expected, atol=SUM_ATOL)


def sort_ref(x, d, descending):
    """Values and stable indices along ``d``: Python's sorted on (value, position) keys."""
    moved = np.moveaxis(x, d, -1)
    vals, idxs = np.empty_like(moved), np.empty(moved.shape, dtype=np.int64)
    for idx in np.ndindex(moved.shape[:-1]):
        row = moved[idx].tolist()
        order = sorted(range(len(row)), key=lambda i: (-row[i] if descending else row[i], i))
        idxs[idx] = order
        vals[idx] = [row[i] for i in order]
    return np.moveaxis(vals, -1, d), np.moveaxis(idxs, -1, d)


def check_indices(indices, expected, x, values, d):
    """Sort / topk indices: exactly ``expected`` where x has no ties along d (PyTorch promises
    no order among equal values); otherwise they must pick ``values`` out of x, each position
    at most once."""
    idx = host(indices)
    assert idx.dtype == np.int64 and idx.shape == expected.shape
    moved = np.moveaxis(x, d, -1)
    if all(len(set(moved[i].tolist())) == moved.shape[-1] for i in np.ndindex(*moved.shape[:-1])):
        np.testing.assert_array_equal(idx, expected)
        return
    np.testing.assert_array_equal(np.take_along_axis(x, idx, d), host(values))
    rows = np.moveaxis(idx, d, -1)
    assert all(len(set(rows[i].tolist())) == rows.shape[-1] for i in np.ndindex(*rows.shape[:-1]))


@covers("sort", "argsort", "topk")
@given(x=st.one_of(distinct_arrays(shapes_(1, 3)),
                   hnp.arrays(np.float64, shapes_(1, 3), elements=TIES)),
       data=st.data())
def test_sort_argsort_topk(x, data):
    """sort / argsort, ascending and descending, and topk (largest or smallest k, sorted) along
    dim (negative forms included); the indices of tied values may come in any order."""
    d = data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim")
    k = data.draw(st.integers(0, x.shape[d]), label="k")
    take_k = (slice(None),) * (d % x.ndim) + (slice(0, k),)
    for descending in (False, True):
        vals, idxs = sort_ref(x, d, descending)
        out = F.sort(T(x), d, descending)
        check(out.values, vals, rtol=0, atol=0)
        check_indices(out.indices, idxs, x, vals, d)
        check(T(x).sort(d, descending=descending)[0], vals, rtol=0, atol=0)
        check_indices(F.argsort(T(x), d, descending=descending), idxs, x, vals, d)
        if d == -1:
            check_indices(F.sort(T(x), descending=descending)[1], idxs, x, vals, d)
        largest = descending
        values, indices = F.topk(T(x), k, d, largest=largest)
        check(values, vals[take_k], rtol=0, atol=0)
        check_indices(indices, idxs[take_k], x, vals[take_k], d)
        check(F.topk(T(x), k, dim=d, largest=largest, sorted=True).values, vals[take_k],
              rtol=0, atol=0)
    if d == -1:
        check(F.topk(T(x), k).values, sort_ref(x, -1, True)[0][..., :k], rtol=0, atol=0)


# ================================================================ shape ops
@st.composite
def factor_shape(draw, n, allow_minus_one=True):
    """A shape with ``n`` elements (1 to 3 dims), maybe with one side given as -1."""
    dims, rest = [], n
    for _ in range(draw(st.integers(0, 2))):
        divisors = [d for d in range(1, rest + 1) if rest % d == 0] if rest else [0, 1, 2]
        d = draw(st.sampled_from(divisors))
        dims.append(d)
        rest = rest // d if d else 0
    dims.append(rest if n else (0 if 0 not in dims else draw(st.integers(1, 3))))
    dims = draw(st.permutations(dims))
    if allow_minus_one and n and draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return tuple(dims)


def resolve(shape, n):
    known = int(np.prod([s for s in shape if s != -1]))
    return tuple(n // known if s == -1 else s for s in shape)


@covers("reshape", "view", "view_as", "reshape_as")
@given(x=floats(shapes_(0, 3)), data=st.data())
@example(x=np.zeros((2, 0, 3)), data=None)
def test_reshape_view(x, data):
    """Row-major reshape: the target as a tuple or as varargs, with a -1."""
    shape = (0, 6) if data is None else data.draw(factor_shape(x.size), label="shape")
    expected = np.array(x.ravel().tolist()).reshape(resolve(shape, x.size))
    check(F.reshape(T(x), shape), expected, rtol=0, atol=0)
    check(F.reshape(T(x), *shape), expected, rtol=0, atol=0)
    check(F.view(T(x), shape), expected, rtol=0, atol=0)
    check(T(x).reshape(*shape), expected, rtol=0, atol=0)
    check(T(x).view(shape), expected, rtol=0, atol=0)
    other = T(np.zeros(expected.shape))
    check(F.view_as(T(x), other), expected, rtol=0, atol=0)
    check(F.reshape_as(T(x), other), expected, rtol=0, atol=0)
    check(T(x).view_as(other), expected, rtol=0, atol=0)
    check(T(x).reshape_as(other), expected, rtol=0, atol=0)


@covers("flatten", "unflatten")
@given(x=floats(shapes_(0, 4)), data=st.data())
def test_flatten_unflatten(x, data):
    """flatten(start, end) merges dims start..end (a 0-d tensor becomes 1-d); unflatten
    splits one dim into ``sizes`` (one may be -1)."""
    if x.ndim == 0:
        check(F.flatten(T(x)), x.reshape(1), rtol=0, atol=0)
        return
    s = data.draw(st.integers(-x.ndim, x.ndim - 1), label="start")
    e = data.draw(st.integers(s % x.ndim, x.ndim - 1), label="end")
    e = e - x.ndim if data.draw(st.booleans(), label="negative end") else e
    a, b = s % x.ndim, e % x.ndim
    merged = x.shape[:a] + (int(np.prod(x.shape[a:b + 1])),) + x.shape[b + 1:]
    check(F.flatten(T(x), s, e), x.reshape(merged), rtol=0, atol=0)
    check(T(x).flatten(s, e), x.reshape(merged), rtol=0, atol=0)
    check(F.flatten(T(x)), x.reshape(-1), rtol=0, atol=0)
    d = data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim")
    sizes = data.draw(factor_shape(x.shape[d]), label="sizes")
    full = x.shape[:d % x.ndim] + resolve(sizes, x.shape[d]) + x.shape[d % x.ndim + 1:]
    check(F.unflatten(T(x), d, sizes), x.reshape(full), rtol=0, atol=0)
    check(T(x).unflatten(d, sizes), x.reshape(full), rtol=0, atol=0)


def permuted(x, order):
    """out[i_0, ..., i_k] = x[j] with j[order[m]] = i_m (explicit)."""
    out = np.empty([x.shape[o] for o in order])
    for idx in np.ndindex(out.shape):
        src = [0] * x.ndim
        for m, o in enumerate(order):
            src[o] = idx[m]
        out[idx] = x[tuple(src)]
    return out


@covers("permute", "transpose", "swapaxes", "t", "movedim")
@given(x=floats(shapes_(0, 4)), data=st.data())
def test_permute_transpose_movedim(x, data):
    n = x.ndim
    order = data.draw(st.permutations(range(n)), label="order")
    neg = [o - n if data.draw(st.booleans()) else o for o in order]
    expected = permuted(x, order)
    check(F.permute(T(x), neg), expected, rtol=0, atol=0)
    check(F.permute(T(x), *neg), expected, rtol=0, atol=0)
    check(T(x).permute(*neg), expected, rtol=0, atol=0)
    if n == 0:
        return
    d0, d1 = data.draw(st.integers(-n, n - 1), label="d0"), data.draw(st.integers(-n, n - 1),
                                                                      label="d1")
    swap = list(range(n))
    swap[d0 % n], swap[d1 % n] = swap[d1 % n], swap[d0 % n]
    check(F.transpose(T(x), d0, d1), permuted(x, swap), rtol=0, atol=0)
    check(F.swapaxes(T(x), d0, d1), permuted(x, swap), rtol=0, atol=0)
    check(T(x).transpose(d0, d1), permuted(x, swap), rtol=0, atol=0)
    if n <= 2:
        check(F.t(T(x)), permuted(x, list(range(n))[::-1]), rtol=0, atol=0)
        check(T(x).t(), permuted(x, list(range(n))[::-1]), rtol=0, atol=0)
    # movedim: sources to destinations, the other dims keep their order
    k = data.draw(st.integers(1, n), label="k")
    src = data.draw(st.permutations(range(n)), label="src")[:k]
    dst = data.draw(st.permutations(range(n)), label="dst")[:k]
    order = [None] * n
    for s_, d_ in zip(src, dst):
        order[d_] = s_
    others = iter(i for i in range(n) if i not in src)
    order = [o if o is not None else next(others) for o in order]
    expected = permuted(x, order)
    src_neg = tuple(s_ - n if data.draw(st.booleans()) else s_ for s_ in src)
    check(F.movedim(T(x), src_neg, tuple(dst)), expected, rtol=0, atol=0)
    check(T(x).movedim(tuple(src), tuple(dst)), expected, rtol=0, atol=0)
    if k == 1:
        check(F.movedim(T(x), src[0], dst[0] - n), expected, rtol=0, atol=0)


@covers("squeeze", "unsqueeze")
@given(x=floats(shapes_(0, 4, st.sampled_from([1, 1, 2, 3]))), data=st.data())
def test_squeeze_unsqueeze(x, data):
    """squeeze drops size-1 dims (all, one, or a tuple; a dim of another size is kept);
    unsqueeze inserts one at dim in [-n-1, n]."""
    n = x.ndim
    check(F.squeeze(T(x)), x.reshape([s for s in x.shape if s != 1]), rtol=0, atol=0)
    if n:
        dim = data.draw(dims_of(n, allow_none=False), label="dim")
        axes = axes_of(dim, n)
        kept = [s for i, s in enumerate(x.shape) if not (i in axes and s == 1)]
        check(F.squeeze(T(x), dim), x.reshape(kept), rtol=0, atol=0)
        check(T(x).squeeze(dim), x.reshape(kept), rtol=0, atol=0)
    d = data.draw(st.integers(-n - 1, n), label="unsqueeze dim")
    pos = d % (n + 1)
    expected = x.reshape(x.shape[:pos] + (1,) + x.shape[pos:])
    check(F.unsqueeze(T(x), d), expected, rtol=0, atol=0)
    check(T(x).unsqueeze(d), expected, rtol=0, atol=0)


def broadcast_ref(x, shape):
    """x broadcast to ``shape``: out[i] = x[i aligned right, 0 where x has a 1]."""
    out = np.empty(shape)
    lead = len(shape) - x.ndim
    for idx in np.ndindex(*shape):
        out[idx] = x[tuple(0 if s == 1 else i for i, s in zip(idx[lead:], x.shape))]
    return out


@covers("expand", "expand_as", "broadcast_to", "broadcast_tensors")
@given(pair=broadcast_pair(), data=st.data())
def test_expand_broadcast(pair, data):
    shape = np.broadcast_shapes(*pair)
    x = data.draw(floats(pair[0]), label="x")
    y = data.draw(floats(pair[1]), label="y")
    expected = broadcast_ref(x, shape)
    check(F.broadcast_to(T(x), shape), expected, rtol=0, atol=0)
    check(T(x).broadcast_to(shape), expected, rtol=0, atol=0)
    check(F.expand_as(T(x), T(np.zeros(shape))), expected, rtol=0, atol=0)
    check(T(x).expand_as(T(np.zeros(shape))), expected, rtol=0, atol=0)
    lead = len(shape) - x.ndim      # -1 keeps a size: in the input's dims, where it is kept
    sizes = tuple(-1 if i >= lead and x.shape[i - lead] == s and data.draw(st.booleans())
                  else s for i, s in enumerate(shape))
    check(F.expand(T(x), *sizes), expected, rtol=0, atol=0)
    check(F.expand(T(x), sizes), expected, rtol=0, atol=0)
    check(T(x).expand(*sizes), expected, rtol=0, atol=0)
    bx, by = F.broadcast_tensors(T(x), T(y))
    check(bx, expected, rtol=0, atol=0)
    check(by, broadcast_ref(y, shape), rtol=0, atol=0)


def tile_ref(x, reps):
    """out[i] = x[i mod shape], x first given leading 1s to len(reps) dims."""
    x = x.reshape((1,) * (len(reps) - x.ndim) + x.shape)
    out = np.empty([s * r for s, r in zip(x.shape, reps)])
    for idx in np.ndindex(*out.shape):
        out[idx] = x[tuple(i % s for i, s in zip(idx, x.shape))]
    return out


@covers("repeat", "tile")
@given(x=floats(shapes_(0, 3)), data=st.data())
def test_repeat_tile(x, data):
    """repeat(reps) with len(reps) >= ndim; tile(dims) pads the shorter of dims and shape
    with leading 1s."""
    reps = tuple(data.draw(st.lists(st.integers(0, 3), min_size=x.ndim, max_size=x.ndim + 1),
                           label="reps"))
    check(F.repeat(T(x), reps), tile_ref(x, reps), rtol=0, atol=0)
    if reps:
        check(F.repeat(T(x), *reps), tile_ref(x, reps), rtol=0, atol=0)
        check(T(x).repeat(*reps), tile_ref(x, reps), rtol=0, atol=0)
    dims = tuple(data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=x.ndim + 1),
                           label="dims"))
    full = (1,) * (x.ndim - len(dims)) + dims
    check(F.tile(T(x), dims), tile_ref(x, full), rtol=0, atol=0)


@st.composite
def cat_case(draw):
    base = draw(shapes_(1, 3))
    d = draw(st.integers(-len(base), len(base) - 1))
    sizes = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    shapes = [base[:d % len(base)] + (k,) + base[d % len(base) + 1:] for k in sizes]
    return [draw(floats(s)) for s in shapes], d


@covers("cat", "concat", "concatenate")
@given(case=cat_case())
def test_cat(case):
    """Pieces of different (and empty) sizes along dim (negative forms); a list or a tuple."""
    xs, d = case
    axis = d % xs[0].ndim
    out = np.empty(xs[0].shape[:axis] + (sum(x.shape[axis] for x in xs),) + xs[0].shape[axis + 1:])
    start = 0
    for x in xs:
        out[(slice(None),) * axis + (slice(start, start + x.shape[axis]),)] = x
        start += x.shape[axis]
    for name in ("cat", "concat", "concatenate"):
        check(getattr(F, name)([T(x) for x in xs], d), out, rtol=0, atol=0)
        check(getattr(F, name)(tuple(T(x) for x in xs), dim=d), out, rtol=0, atol=0)
    if d == 0:
        check(F.cat([T(x) for x in xs]), out, rtol=0, atol=0)


@covers("stack")
@given(x=floats(shapes_(0, 3)), k=st.integers(1, 3), data=st.data())
def test_stack(x, k, data):
    """Equal shapes stacked along a new dim in [-ndim - 1, ndim]."""
    xs = [x + i for i in range(k)]
    d = data.draw(st.integers(-x.ndim - 1, x.ndim), label="dim")
    pos = d % (x.ndim + 1)
    out = np.empty(x.shape[:pos] + (k,) + x.shape[pos:])
    for i, xi in enumerate(xs):
        out[(slice(None),) * pos + (i,)] = xi
    check(F.stack([T(v) for v in xs], d), out, rtol=0, atol=0)


def pieces_ref(x, axis, bounds):
    return [x[(slice(None),) * axis + (slice(a, b),)] for a, b in bounds]


def check_pieces(got, expected):
    """The pieces of a split / chunk: as many as expected, each exactly equal."""
    got, expected = list(got), list(expected)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        check(g, e, rtol=0, atol=0)


@covers("split", "chunk", "unbind", "narrow")
@given(x=floats(shapes_(1, 3, st.one_of(st.integers(2, 5), st.integers(2, 5), st.just(1),
                                        st.just(0)))), data=st.data())
@example(x=np.zeros((0, 2)), data=None)
def test_split_chunk_unbind_narrow(x, data):
    """split by size (the last piece shorter) or by sections; chunk into ceil(n / chunks)-sized
    pieces; unbind; narrow(dim, start, length) with a negative start."""
    d = 0 if data is None else data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim")
    axis, n = d % x.ndim, x.shape[d]
    size = 2 if data is None else data.draw(st.integers(1, 6), label="size")
    bounds = [(a, min(a + size, n)) for a in range(0, n, size)] or [(0, 0)]
    check_pieces(F.split(T(x), size, d), pieces_ref(x, axis, bounds))
    check_pieces(T(x).split(size, d), pieces_ref(x, axis, bounds))
    if data is not None:
        cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=3), label="cuts"))
        edges = [0] + cuts + [n]
        sections = [b - a for a, b in zip(edges, edges[1:])]
        check_pieces(F.split(T(x), sections, d), pieces_ref(x, axis, list(zip(edges, edges[1:]))))
    chunks = 2 if data is None else data.draw(st.integers(1, 5), label="chunks")
    if n:                     # (an empty dim: test_chunk_of_an_empty_dim)
        csize = -(-n // chunks)
        cb = [(a, min(a + csize, n)) for a in range(0, n, csize)]
        check_pieces(F.chunk(T(x), chunks, d), pieces_ref(x, axis, cb))
        check_pieces(T(x).chunk(chunks, d), pieces_ref(x, axis, cb))
    for got in (F.unbind(T(x), d), T(x).unbind(d)):
        assert len(got) == n
        for i, g in enumerate(got):
            check(g, x[(slice(None),) * axis + (i,)], rtol=0, atol=0)
    if data is not None and n:
        start = data.draw(st.integers(-n, n - 1), label="start")
        length = data.draw(st.integers(0, n - start % n), label="length")
        s0 = start % n
        check(F.narrow(T(x), d, start, length),
              x[(slice(None),) * axis + (slice(s0, s0 + length),)], rtol=0, atol=0)


@covers("chunk")
def test_chunk_of_an_empty_dim():
    assert len(F.chunk(T(np.zeros(0)), 3)) == 3


@covers("flip")
@given(x=floats(shapes_(1, 4)), data=st.data())
def test_flip(x, data):
    """Reverse the given dims (an int or a tuple, negative forms); function and method."""
    dims = data.draw(dims_of(x.ndim, allow_none=False), label="dims")
    axes = axes_of(dims, x.ndim)
    expected = np.empty_like(x)
    for idx in np.ndindex(*x.shape):
        expected[idx] = x[tuple(s - 1 - i if a in axes else i
                                for a, (i, s) in enumerate(zip(idx, x.shape)))]
    check(F.flip(T(x), dims), expected, rtol=0, atol=0)
    check(T(x).flip(dims), expected, rtol=0, atol=0)


# ================================================================ indexing
def index_ref(x, idx):
    """``x[idx]`` with PyTorch's rule where integers meet index arrays: the integers select
    first (they are not advanced indices, so they never move the advanced dims), then the
    rest applies as in NumPy."""
    parts = idx if isinstance(idx, tuple) else (idx,)
    is_int = [isinstance(p, int) and not isinstance(p, bool) for p in parts]
    if not (any(is_int) and any(isinstance(p, np.ndarray) for p in parts)):
        return np.asarray(x[idx])
    first, rest = [], []
    for p, integer in zip(parts, is_int):
        if integer:
            first.append(p)
        elif p is None:
            first.append(None)
            rest.append(slice(None))
        elif p is Ellipsis:
            first.append(p)
            rest.append(p)
        else:
            first.extend([slice(None)] * (p.ndim if isinstance(p, np.ndarray)
                                          and p.dtype == bool else 1))
            rest.append(p)
    return np.asarray(x[tuple(first)][tuple(rest)])


@covers("index")
@given(x=floats(shapes_(0, 3)), data=st.data())
def test_index(x, data):
    """``x[idx]`` and ``F.index``: ints, slices with steps, None, ..., integer arrays (with
    repeats and negatives) and boolean masks, given as arrays, lists or tensors."""
    idx = data.draw(index_for(x.shape), label="idx")
    expected = index_ref(x, idx)
    for form in ("numpy", "list", "tensor"):
        check(F.index(T(x), wrap_index(idx, form)), expected, rtol=0, atol=0)
        check(T(x)[wrap_index(idx, form)], expected, rtol=0, atol=0)
    check(R(x)[wrap_index(idx, "tensor")], expected, rtol=0, atol=0)     # the autograd path


@covers("index")
@pytest.mark.parametrize("idx, shape", [
    ((0, slice(None), np.array([1, 2, 1])), (3, 3)),          # NumPy: (3, 3) too, transposed
    ((slice(None), 1, np.array([0, 3])), (2, 2)),
    ((np.array([1, 0]), slice(None), 2), (2, 3)),              # NumPy: (2, 3) as well
    ((None, np.array([1, 0]), slice(None), 0), (1, 2, 3)),     # NumPy: (2, 1, 3)
    ((1, np.array([[0], [2]]), np.array([1, 3])), (2, 2)),
    ((Ellipsis, 1, np.array([0, 0, 3])), (2, 3)),
])
def test_index_integers_with_arrays(idx, shape):
    """PyTorch applies integer indices first, so they never move the advanced dims (NumPy
    counts them among the advanced indices): x[0, :, arr] is x[0][:, arr]."""
    x = np.arange(24.0).reshape(2, 3, 4)
    expected = index_ref(x, idx)
    assert expected.shape == shape
    for form in ("numpy", "list", "tensor"):
        check(T(x)[wrap_index(idx, form)], expected, rtol=0, atol=0)
        check(F.index(T(x), wrap_index(idx, form)), expected, rtol=0, atol=0)


@st.composite
def gather_case(draw, for_scatter=False):
    s = draw(shapes_(1, 3))
    d = draw(st.integers(-len(s), len(s) - 1))
    # off dim the index may be smaller than the input (PyTorch's rule)
    ishape = tuple(draw(st.integers(1, 4)) if k == d % len(s) else draw(st.integers(1, n))
                   for k, n in enumerate(s))
    index = draw(int_arrays(ishape, 0, s[d] - 1))
    x = draw(floats(s))
    src = draw(floats(tuple(i + draw(st.integers(0, 1)) for i in ishape))) if for_scatter \
        else None
    return x, d, index, src


@covers("gather")
@given(case=gather_case())
def test_gather(case):
    """out[i] = x[i with i[dim] replaced by index[i]]."""
    x, d, index, _ = case
    axis = d % x.ndim
    expected = np.empty(index.shape)
    for i in np.ndindex(*index.shape):
        j = list(i)
        j[axis] = index[i]
        expected[i] = x[tuple(j)]
    check(F.gather(T(x), d, T(index)), expected, rtol=0, atol=0)
    check(T(x).gather(d, T(index)), expected, rtol=0, atol=0)


@covers("scatter_add")
@given(case=gather_case(for_scatter=True))
def test_scatter_add(case):
    """out = x; out[i with i[dim] = index[i]] += src[i] over the index's shape (repeats add up;
    src may be larger than the index)."""
    x, d, index, src = case
    axis = d % x.ndim
    expected = x.copy()
    for i in np.ndindex(*index.shape):
        j = list(i)
        j[axis] = index[i]
        expected[tuple(j)] += src[i]
    check(F.scatter_add(T(x), d, T(index), T(src)), expected, atol=SUM_ATOL)


@covers("index_select", "take")
@given(x=floats(shapes_(1, 3)), data=st.data())
def test_index_select_take(x, data):
    """index_select(dim, idx): slices along dim in idx's order (repeats); take: the
    flattened input at (negative-wrapping) indices, in the index's shape."""
    d = data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim")
    axis = d % x.ndim
    idx = data.draw(int_arrays((data.draw(st.integers(0, 5), label="k"),), 0,
                               x.shape[d] - 1), label="idx")
    expected = np.stack([x[(slice(None),) * axis + (int(i),)] for i in idx], axis) if idx.size \
        else np.empty(x.shape[:axis] + (0,) + x.shape[axis + 1:])
    check(F.index_select(T(x), d, T(idx)), expected, rtol=0, atol=0)
    check(T(x).index_select(d, T(idx)), expected, rtol=0, atol=0)
    flat = x.ravel().tolist()
    tidx = data.draw(int_arrays(shapes_(0, 2), -x.size, x.size - 1), label="take idx")
    expected = np.array([flat[int(i)] for i in tidx.ravel()]).reshape(tidx.shape)
    check(F.take(T(x), T(tidx)), expected, rtol=0, atol=0)


@covers("embedding", "one_hot")
@given(idx=int_arrays(shapes_(0, 3), 0, 4), dim=st.integers(1, 3), data=st.data())
def test_embedding_one_hot(idx, dim, data):
    """embedding: rows of the weight picked by the indices (padding_idx leaves the forward
    alone); one_hot: int64 with a 1 at each label, num_classes -1 meaning max + 1."""
    weight = data.draw(floats((5, dim)), label="weight")
    expected = np.array([weight[int(i)] for i in idx.ravel()]).reshape(idx.shape + (dim,))
    check(F.embedding(T(idx), T(weight)), expected, rtol=0, atol=0)
    check(F.embedding(T(idx), T(weight), padding_idx=0), expected, rtol=0, atol=0)
    check(F.embedding(T(idx), R(weight), padding_idx=0), expected, rtol=0, atol=0)
    for classes in (-1, 5, 7):
        c = (int(idx.max()) + 1 if idx.size else 0) if classes == -1 else classes
        hot = np.array([[int(int(i) == k) for k in range(c)] for i in idx.ravel()],
                       dtype=np.int64).reshape(idx.shape + (c,))
        out = F.one_hot(T(idx)) if classes == -1 else F.one_hot(T(idx), classes)
        check(out, hot, dtype=np.int64)


# ================================================================ matrix products
def matmul_ref(a, b):
    """PyTorch's matmul rules: 1-d operands promoted (a row / a column) and the added dim
    removed; batch dims broadcast; each product an explicit Σ_k over Python floats."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    A = np.broadcast_to(a2, batch + a2.shape[-2:])
    B = np.broadcast_to(b2, batch + b2.shape[-2:])
    out = np.empty(batch + (A.shape[-2], B.shape[-1]))
    for idx in np.ndindex(*out.shape):
        *bi, i, j = idx
        out[idx] = math.fsum(A[tuple(bi) + (i, k)] * B[tuple(bi) + (k, j)]
                             for k in range(A.shape[-1]))
    if a.ndim == 1:
        out = out.reshape(out.shape[:-2] + out.shape[-1:])
    if b.ndim == 1:
        out = out.reshape(out.shape[:-1])
    return out


@st.composite
def matmul_shapes(draw):
    """(a, b) shapes for matmul: 1-d to 4-d operands, broadcasting batch dims, and an empty
    inner dim now and then."""
    m, k, n = draw(SIDE), draw(st.one_of(SIDE, SIDE, SIDE, st.just(0))), draw(SIDE)
    ra, rb = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch = draw(shapes_(0, 2))
    ba = tuple(1 if draw(st.booleans()) else s for s in batch)[draw(st.integers(0, len(batch))):]
    bb = tuple(1 if draw(st.booleans()) else s for s in batch)
    sa = (k,) if ra == 1 else (ba + (m, k))[-ra:] if ra > 2 else (m, k)
    sb = (k,) if rb == 1 else (bb + (k, n))[-rb:] if rb > 2 else (k, n)
    return sa, sb


# products are compared with fsum; BLAS sums k ≤ 4 terms of size ≤ 4 in another order
MATMUL_ATOL = 1e-13


@covers("matmul", "mm", "bmm", "outer", "dot")
@given(shapes=matmul_shapes(), data=st.data())
def test_matmul_family(shapes, data):
    """matmul (function, ``@`` and method) with PyTorch's 1-d and broadcasting rules; mm and
    bmm where the ranks fit; outer and dot of the flattened operands."""
    # (a batched operand with an empty inner dim: test_matmul_batched_with_an_empty_inner_dim)
    assume(not (len(shapes[0]) > 2 and len(shapes[1]) <= 2 and shapes[0][-1] == 0))
    a = data.draw(floats(shapes[0]), label="a")
    b = data.draw(floats(shapes[1]), label="b")
    expected = matmul_ref(a, b)
    check(F.matmul(T(a), T(b)), expected, atol=MATMUL_ATOL)
    check(T(a) @ T(b), expected, atol=MATMUL_ATOL)
    check(T(a).matmul(T(b)), expected, atol=MATMUL_ATOL)
    if a.ndim == 2 and b.ndim == 2:
        check(F.mm(T(a), T(b)), expected, atol=MATMUL_ATOL)
    if a.ndim == 3 and b.ndim == 3 and a.shape[0] == b.shape[0]:
        check(F.bmm(T(a), T(b)), expected, atol=MATMUL_ATOL)
    u, v = a.ravel(), b.ravel()
    check(F.outer(T(u), T(v)), np.array([[p * q for q in v] for p in u]).reshape(
        u.size, v.size), rtol=0, atol=0)
    if a.ndim == 1 and b.ndim == 1:
        check(F.dot(T(a), T(b)), np.array(math.fsum(p * q for p, q in zip(a, b))),
              atol=MATMUL_ATOL)


@covers("matmul")
def test_matmul_batched_with_an_empty_inner_dim():
    check(F.matmul(T(np.zeros((2, 3, 0))), T(np.zeros((0, 4)))), np.zeros((2, 3, 4)))


@covers("bmm")
@given(b=SIDE, m=SIDE, k=SIDE, n=SIDE, data=st.data())
def test_bmm(b, m, k, n, data):
    """Batches of matrix products, batch sizes equal."""
    x = data.draw(floats((b, m, k)), label="x")
    y = data.draw(floats((b, k, n)), label="y")
    check(F.bmm(T(x), T(y)), matmul_ref(x, y), atol=MATMUL_ATOL)


@covers("linear")
@given(lead=shapes_(0, 2), fin=SIDE, fout=SIDE, bias=st.booleans(), data=st.data())
@example(lead=(0,), fin=3, fout=2, bias=True, data=None)
def test_linear(lead, fin, fout, bias, data):
    """y = x Wᵀ + b over any leading dims."""
    draw = (lambda s, label: np.linspace(-1, 1, int(np.prod(s))).reshape(s)) if data is None \
        else (lambda s, label: data.draw(floats(s), label=label))
    x, w = draw(lead + (fin,), "x"), draw((fout, fin), "w")
    b = draw((fout,), "b") if bias else None
    expected = matmul_ref(x.reshape(-1, fin), w.T).reshape(lead + (fout,))
    if bias:
        expected = expected + b
    check(F.linear(T(x), T(w), T(b) if bias else None), expected, atol=MATMUL_ATOL)


# ================================================================ activations
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805   # PyTorch's constants
_C = math.sqrt(2.0 / math.pi)


def _softplus(beta=1.0, threshold=20.0):
    def f(x):
        z = beta * x
        return np.where(z > threshold, x, np.log1p(np.exp(np.minimum(z, threshold))) / beta)
    return f


# id: (call, reference, domain of x)
ACTIVATIONS = {
    "relu": (F.relu, lambda x: np.where(x > 0, x, 0.0), span(-3, 3)),
    "relu6": (F.relu6, lambda x: np.where(x < 0, 0.0, np.where(x > 6, 6.0, x)), span(-3, 9)),
    "leaky_relu": (F.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x), span(-3, 3)),
    "leaky_relu(0.2)": (lambda x: F.leaky_relu(x, 0.2), lambda x: np.where(x > 0, x, 0.2 * x),
                        span(-3, 3)),
    "elu": (F.elu, lambda x: np.where(x > 0, x, np.expm1(x)), span(-5, 3)),
    "elu(alpha=0.5)": (lambda x: F.elu(x, alpha=0.5),
                       lambda x: np.where(x > 0, x, 0.5 * np.expm1(x)), span(-5, 3)),
    "selu": (F.selu, lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)),
             span(-5, 3)),
    "gelu": (F.gelu, lambda x: x * special.ndtr(x), span(-5, 5)),
    "gelu(tanh)": (lambda x: F.gelu(x, approximate="tanh"),
                   lambda x: 0.5 * x * (1 + np.tanh(_C * (x + 0.044715 * x ** 3))), span(-5, 5)),
    "silu": (F.silu, lambda x: x / (1 + np.exp(-x)), span(-10, 10)),
    "mish": (F.mish, lambda x: x * np.tanh(np.log1p(np.exp(x))), span(-10, 10)),
    "softplus": (F.softplus, _softplus(), span(-10, 25)),
    "softplus(beta=2, threshold=5)": (lambda x: F.softplus(x, beta=2, threshold=5),
                                      _softplus(2.0, 5.0), span(-6, 6)),
    "softplus(beta=0.5)": (lambda x: F.softplus(x, 0.5), _softplus(0.5), span(-10, 50)),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x)), span(-10, 10)),
    "tanh": (F.tanh, np.tanh, span(-5, 5)),
    "hardtanh": (F.hardtanh, lambda x: np.where(x < -1, -1.0, np.where(x > 1, 1.0, x)),
                 span(-3, 3)),
    "hardtanh(-0.5, 2)": (lambda x: F.hardtanh(x, -0.5, 2.0),
                          lambda x: np.where(x < -0.5, -0.5, np.where(x > 2, 2.0, x)),
                          span(-3, 3)),
    "logsigmoid": (F.logsigmoid, lambda x: -np.log1p(np.exp(-x)), span(-10, 10)),
}
# gelu / mish / selu mix a few transcendental calls: a few ulps more, still 1e-12 relative;
# gelu's x Φ(x) for x < 0 inherits Φ's cancellation (see UNARY_RTOL)
ACT_RTOL = {"gelu": 1e-10}


@covers("relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "mish", "softplus",
        "sigmoid", "tanh", "hardtanh", "logsigmoid")
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@given(u=unit_arrays())
@example(u=np.zeros((2, 0)))
@example(u=np.linspace(0, 1, 41))                 # the kinks: 0, the bounds, the threshold
def test_activations(name, u):
    fn, ref, domain = ACTIVATIONS[name]
    x = domain(u)
    if name.startswith(("relu", "hardtanh", "leaky")):
        x = np.round(x * 4) / 4 if u.size > 30 else x        # exact kinks in the example
    check(fn(T(x)), ref(x) if x.size else x.copy(), rtol=ACT_RTOL.get(name, RTOL))
    if name == "relu":
        check(T(x).relu(), ref(x) if x.size else x.copy())


def _softmax_ref(x, axis):
    """exp(x) / Σ exp(x) along axis with fsum; x - log Σ exp(x) for log_softmax."""
    moved = np.moveaxis(x, axis, -1)
    sm, lsm = np.empty_like(moved), np.empty_like(moved)
    for idx in np.ndindex(*moved.shape[:-1]):
        row = moved[idx].tolist()
        m = max(row)
        total = math.fsum(math.exp(v - m) for v in row)
        sm[idx] = [math.exp(v - m) / total for v in row]
        lsm[idx] = [v - m - math.log(total) for v in row]
    return np.moveaxis(sm, -1, axis), np.moveaxis(lsm, -1, axis)


@covers("softmax", "log_softmax")
@given(x=floats(shapes_(1, 4), -10, 10), data=st.data(),
       shift=st.sampled_from([0.0, 0.0, 800.0, -800.0]))
def test_softmax_log_softmax(x, data, shift):
    """Along dim (negative forms; None: PyTorch's legacy choice, dim 0 for 1-d and 3-d
    inputs, else 1), stable far outside exp's range, the dtype argument; method forms."""
    d = data.draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1)), label="dim")
    axis = (0 if x.ndim in (1, 3) else 1) if d is None else d
    sm, lsm = _softmax_ref(x, axis)          # the shift cancels exactly
    y = x + shift
    check(F.softmax(T(y), d), sm)
    check(F.log_softmax(T(y), d), lsm, atol=1e-12 if shift else ATOL)   # |x + shift| ~ 800
    check(T(y).softmax(d), sm)
    check(T(y).log_softmax(d), lsm, atol=1e-12 if shift else ATOL)
    check(F.softmax(T(y).float(), d, dtype=np.float64), _softmax_ref(
        y.astype(np.float32).astype(np.float64), axis)[0], dtype=np.float64)


@covers("softmax", "log_softmax")
def test_softmax_with_infinite_logits():
    """-inf logits get probability 0 (log-probability -inf)."""
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, 2.0, -np.inf]])
    e = np.exp([0.0, 1.0])
    check(F.softmax(T(x), 1), np.array([[e[0] / e.sum(), 0.0, e[1] / e.sum()], [0, 1, 0]]))
    check(F.log_softmax(T(x), 1), np.array([[-math.log1p(math.e), -np.inf, 1 - math.log1p(
        math.e)], [-np.inf, 0.0, -np.inf]]))


@covers("glu")
@given(x=floats(shapes_(1, 3)), data=st.data())
def test_glu(x, data):
    """glu(x, dim) = a σ(b) for the halves a, b of dim (of even size)."""
    d = data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim")
    x = np.concatenate([x, x[::-1] * 0.5 + 0.1], axis=d)      # an even size
    axis, h = d % x.ndim, x.shape[d] // 2
    a = x[(slice(None),) * axis + (slice(0, h),)]
    b = x[(slice(None),) * axis + (slice(h, None),)]
    check(F.glu(T(x), d), a / (1 + np.exp(-b)))
    if d == -1:
        check(F.glu(T(x)), a / (1 + np.exp(-b)))


@covers("dropout")
@given(seed=st.integers(0, 2 ** 16), sign=st.sampled_from([1.0, -1.0]))
def test_dropout(seed, sign):
    """p = 0 and training=False: the identity; p = 1: zeros; otherwise each output is 0 or
    x / (1 - p), and the kept fraction is within 5 binomial standard deviations of 1 - p."""
    x = sign * np.random.default_rng(seed).uniform(0.5, 2.0, (50, 40))    # 2000 nonzeros
    ng.manual_seed(seed)
    for p in (0.0, 0.1, 0.5, 0.8, 1.0):
        check(F.dropout(T(x), p, training=False), x, rtol=0, atol=0)
        out = host(F.dropout(T(x), p))
        if p == 0.0:
            np.testing.assert_array_equal(out, x)
            continue
        if p == 1.0:
            np.testing.assert_array_equal(out, np.zeros_like(x))
            continue
        kept = out != 0
        assert_close(out[kept], x[kept] / (1 - p), rtol=1e-15, atol=0)
        n = x.size
        assert abs(kept.sum() - n * (1 - p)) <= 5 * math.sqrt(n * p * (1 - p))
    out = host(F.dropout(T(x)))                       # the defaults: p = 0.5, training
    assert np.all((out == 0) | (out == 2 * x)) and 0 < (out == 0).sum() < x.size


# ================================================================ losses
def reduce_loss(loss, reduction):
    if reduction == "none":
        return loss
    total = math.fsum(loss.ravel().tolist())
    return np.array(total if reduction == "sum" else total / loss.size if loss.size else math.nan)


REDUCTIONS_ = ["mean", "sum", "none"]


@covers("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss")
@given(shape=shapes_(0, 3), data=st.data(), beta=st.sampled_from([1.0, 0.5, 2.0, 0.0]))
def test_regression_losses(shape, data, beta):
    """(x - y)², |x - y|, Huber (½d² inside δ, δ(|d| - ½δ) outside) and smooth L1 (Huber / β;
    β = 0: L1), reduced by mean (the default) / sum / none."""
    x = data.draw(floats(shape, -3, 3), label="x")
    y = data.draw(floats(shape, -3, 3), label="y")
    d = x - y
    ad = np.abs(d)
    delta = beta if beta else 1.0
    huber = np.where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta))
    smooth = np.where(ad < beta, 0.5 * d * d / beta, ad - 0.5 * beta) if beta else ad
    for r in REDUCTIONS_:
        check(F.mse_loss(T(x), T(y), reduction=r), reduce_loss(d * d, r), atol=SUM_ATOL)
        check(F.l1_loss(T(x), T(y), reduction=r), reduce_loss(ad, r), atol=SUM_ATOL)
        check(F.huber_loss(T(x), T(y), reduction=r, delta=delta), reduce_loss(huber, r),
              atol=SUM_ATOL)
        check(F.smooth_l1_loss(T(x), T(y), reduction=r, beta=beta), reduce_loss(smooth, r),
              atol=SUM_ATOL)
    check(F.mse_loss(T(x), T(y)), reduce_loss(d * d, "mean"), atol=SUM_ATOL)
    check(F.l1_loss(T(x), T(y)), reduce_loss(ad, "mean"), atol=SUM_ATOL)
    check(F.huber_loss(T(x), T(y)), reduce_loss(np.where(ad < 1, 0.5 * d * d, ad - 0.5), "mean"),
          atol=SUM_ATOL)
    check(F.smooth_l1_loss(T(x), T(y)), reduce_loss(np.where(ad < 1, 0.5 * d * d, ad - 0.5),
                                                    "mean"), atol=SUM_ATOL)


@covers("binary_cross_entropy", "binary_cross_entropy_with_logits")
@given(shape=shapes_(1, 3), data=st.data(), weighted=st.booleans())
def test_binary_cross_entropy(shape, data, weighted):
    """-w [y log p + (1 - y) log(1 - p)] with each log clamped at -100 (p may be exactly 0 or
    1), soft targets; with logits: -w [pw·y log σ(x) + (1 - y) log(1 - σ(x))] with a per-class
    pos_weight broadcast over the last dim; every reduction."""
    p = data.draw(hnp.arrays(np.float64, shape, elements=st.one_of(
        st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0]))), label="p")
    y = data.draw(hnp.arrays(np.float64, shape, elements=st.one_of(
        st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0]))), label="y")
    w = data.draw(floats(shape[-1:], 0.1, 2), label="w") if weighted else np.ones(shape[-1:])
    x = data.draw(floats(shape, -10, 10), label="logits")
    pw = data.draw(floats(shape[-1:], 0.2, 3), label="pos_weight")
    with np.errstate(divide="ignore"):
        bce = -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100)) * w
    log_sig, log_1m_sig = -np.log1p(np.exp(-x)), -np.log1p(np.exp(x))
    logits = -(y * log_sig + (1 - y) * log_1m_sig) * w
    logits_pw = -(pw * y * log_sig + (1 - y) * log_1m_sig) * w
    kw = dict(weight=T(w)) if weighted else {}
    for r in REDUCTIONS_:
        check(F.binary_cross_entropy(T(p), T(y), reduction=r, **kw), reduce_loss(bce, r),
              rtol=1e-11, atol=1e-12)                     # log(1 - p) against log1p(-p)
        check(F.binary_cross_entropy_with_logits(T(x), T(y), reduction=r, **kw),
              reduce_loss(logits, r), atol=SUM_ATOL)
        check(F.binary_cross_entropy_with_logits(T(x), T(y), reduction=r, pos_weight=T(pw),
                                                 **kw), reduce_loss(logits_pw, r), atol=SUM_ATOL)


@st.composite
def classification_case(draw):
    """Logits (N, C, *d) or unbatched (C,), class targets with some ``ignore_index``."""
    c = draw(st.integers(2, 4))
    layout = draw(st.sampled_from(["(N, C)", "(N, C)", "(N, C, d)", "(C,)"]))
    n = draw(SIDE)
    extra = (draw(SIDE),) if layout == "(N, C, d)" else ()
    shape = (c,) if layout == "(C,)" else (n, c) + extra
    tshape = () if layout == "(C,)" else (n,) + extra
    logits = draw(floats(shape, -4, 4))
    ignore = draw(st.sampled_from([-100, 1, -1]))
    target = draw(hnp.arrays(np.int64, tshape, elements=st.integers(0, c - 1)))
    if target.ndim and draw(st.booleans()):
        target.flat[draw(st.integers(0, target.size - 1))] = ignore
    weight = draw(st.one_of(st.none(), floats((c,), 0.2, 2)))
    return logits, target, ignore, weight


def _log_softmax_rows(logits):
    return _softmax_ref(logits, 1 if logits.ndim > 1 else 0)[1]


def nll_ref(logp, target, weight, ignore, reduction, smoothing=0.0):
    """-w[y] logp[y] (0 where y = ignore_index), plus ε/C Σ_c -w_c logp_c with smoothing;
    'mean' divides by Σ w[y] over the kept targets."""
    c = logp.shape[1] if logp.ndim > 1 else logp.shape[0]
    w = np.ones(c) if weight is None else weight
    t = target.reshape(-1) if target.ndim else target.reshape(1)
    rows = np.moveaxis(logp if logp.ndim > 1 else logp[None], 1, -1).reshape(-1, c)
    loss, denom = [], []
    for row, y in zip(rows, t.tolist()):
        if y == ignore:
            loss.append(0.0)
            denom.append(0.0)
            continue
        nll = -w[y] * row[y]
        smooth = -math.fsum(w[k] * row[k] for k in range(c))
        loss.append((1 - smoothing) * nll + smoothing / c * smooth)
        denom.append(w[y])
    loss = np.array(loss).reshape(target.shape)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.array(math.fsum(loss.ravel().tolist()))
    return np.array(math.fsum(loss.ravel().tolist()) / math.fsum(denom))


@covers("nll_loss", "cross_entropy")
@given(case=classification_case(), smoothing=st.sampled_from([0.0, 0.0, 0.1, 0.3]))
def test_nll_cross_entropy(case, smoothing):
    """nll_loss on log-probabilities and cross_entropy on logits: (N, C), (N, C, d) and
    unbatched (C,) inputs; class weights, ignore_index, label smoothing, every reduction."""
    logits, target, ignore, weight = case
    wt = None if weight is None else T(weight)
    logp = _log_softmax_rows(logits)
    for r in REDUCTIONS_:
        if r == "mean" and not (target != ignore).any():
            continue                            # 0 / 0 (nan): not tested here
        kw = dict(ignore_index=ignore, reduction=r)
        check(F.nll_loss(T(logp), T(target), weight=wt, **kw),
              nll_ref(logp, target, weight, ignore, r), atol=SUM_ATOL)
        check(F.cross_entropy(T(logits), T(target), weight=wt, label_smoothing=smoothing, **kw),
              nll_ref(logp, target, weight, ignore, r, smoothing), atol=1e-12)
    if (target >= 0).all() or (ignore == -100 and (target != -100).any()):
        # the defaults: mean, no weight, ignore_index -100
        check(F.nll_loss(T(logp), T(target)), nll_ref(logp, target, None, -100, "mean"),
              atol=SUM_ATOL)
        check(F.cross_entropy(T(logits), T(target)), nll_ref(logp, target, None, -100, "mean"),
              atol=1e-12)


@covers("cross_entropy")
@given(case=classification_case(), smoothing=st.sampled_from([0.0, 0.2]), data=st.data())
def test_cross_entropy_probability_targets(case, smoothing, data):
    """Soft targets q of the input's shape: -Σ_c w_c q'_c log softmax(x)_c with
    q' = (1 - ε) q + ε / C; 'mean' divides by the number of samples / positions."""
    logits, _, _, weight = case
    c = logits.shape[1] if logits.ndim > 1 else logits.shape[0]
    q = data.draw(floats(logits.shape, 0.0, 1.0), label="q")
    logp = _log_softmax_rows(logits)
    w = np.ones(c) if weight is None else weight
    cls = 1 if logits.ndim > 1 else 0
    qq = np.moveaxis(q * (1 - smoothing) + smoothing / c, cls, -1)
    lp = np.moveaxis(logp, cls, -1)
    loss = np.array([-math.fsum((w * a * b).tolist()) for a, b in
                     zip(qq.reshape(-1, c), lp.reshape(-1, c))]).reshape(qq.shape[:-1])
    for r in REDUCTIONS_:
        check(F.cross_entropy(T(logits), T(q), weight=None if weight is None else T(weight),
                              reduction=r, label_smoothing=smoothing),
              reduce_loss(loss, r), atol=1e-12)


@covers("kl_div")
@given(shape=shapes_(1, 3), data=st.data())
def test_kl_div(shape, data):
    """y (log y - x) pointwise (0 where y = 0), or e^y (y - x) with log_target; mean / sum /
    none, and 'batchmean' dividing the sum by the batch size."""
    x = data.draw(floats(shape, -4, 0), label="log q")
    y = data.draw(hnp.arrays(np.float64, shape, elements=st.one_of(
        st.floats(0.01, 1.0), st.just(0.0))), label="p")
    ly = data.draw(floats(shape, -4, 0), label="log p")
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = np.where(y > 0, y * (np.log(y) - x), 0.0)
    loss_log = np.exp(ly) * (ly - x)

    def red(v, reduction):
        if reduction == "batchmean":
            return np.array(math.fsum(v.ravel().tolist()) / shape[0])
        return reduce_loss(v, reduction)
    for r in REDUCTIONS_ + ["batchmean"]:
        check(F.kl_div(T(x), T(y), reduction=r), red(loss, r), atol=SUM_ATOL)
        check(F.kl_div(T(x), T(ly), reduction=r, log_target=True), red(loss_log, r),
              atol=SUM_ATOL)
    check(F.kl_div(T(x), T(y)), red(loss, "mean"), atol=SUM_ATOL)


@covers("gaussian_nll_loss")
@given(n=st.integers(2, 4), d=st.integers(2, 4), data=st.data(), full=st.booleans(),
       eps=st.sampled_from([1e-6, 0.3]))
def test_gaussian_nll_loss(n, d, data, full, eps):
    """½ (log max(σ², eps) + (x - μ)² / max(σ², eps)) (+ ½ log 2π when ``full``); var of the
    input's shape, with a last dim of 1 or without it (homoscedastic); every reduction."""
    x = data.draw(floats((n, d), -3, 3), label="x")
    mu = data.draw(floats((n, d), -3, 3), label="mu")
    for vshape in [(n, d), (n, 1), (n,)]:           # (n,): read as (n, 1), as in PyTorch
        var = data.draw(floats(vshape, 0.0, 2.0), label="var")
        v = np.maximum(var.reshape(n, -1), eps)
        loss = 0.5 * (np.log(v) + (x - mu) ** 2 / v) + (0.5 * math.log(2 * math.pi) if full
                                                         else 0.0)
        for r in REDUCTIONS_:
            check(F.gaussian_nll_loss(T(x), T(mu), T(var), full=full, eps=eps, reduction=r),
                  reduce_loss(loss, r), atol=SUM_ATOL)
        if not full and eps == 1e-6:
            check(F.gaussian_nll_loss(T(x), T(mu), T(var)), reduce_loss(loss, "mean"),
                  atol=SUM_ATOL)


@covers("gaussian_nll_loss")
def test_gaussian_nll_loss_var_with_one_dim_fewer():
    x, mu, var = np.linspace(-1, 1, 12).reshape(3, 4), np.zeros((3, 4)), np.array([0.5, 1, 2])
    v = var[:, None]
    loss = 0.5 * (np.log(v) + (x - mu) ** 2 / v)
    check(F.gaussian_nll_loss(T(x), T(mu), T(var), reduction="none"), loss)


# ================================================================ convolutions
def conv_ref(x, w, b, stride, pads, dilation, groups):
    """2-d cross-correlation of x (N, C, H, W) with w (O, C/groups, kh, kw), written out:
    y[n, o, oy, ox] = b[o] + Σ_{c, ky, kx} w[o, c, ky, kx] x[n, g·C/groups + c,
    oy·sh - top + ky·dh, ox·sw - left + kx·dw]  (zero outside x).  ``pads``: (top, bottom,
    left, right)."""
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pb, pl, pr) = stride, dilation, pads
    Ho = (H + pt + pb - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + pl + pr - dw * (kw - 1) - 1) // sw + 1
    xp = np.zeros((N, C, H + pt + pb, W + pl + pr))
    xp[:, :, pt:pt + H, pl:pl + W] = x
    Og = O // groups
    y = np.zeros((N, O, Ho, Wo))
    for g in range(groups):
        wg = w[g * Og:(g + 1) * Og]
        for oy in range(Ho):
            for ox in range(Wo):
                patch = xp[:, g * Cg:(g + 1) * Cg, oy * sh:oy * sh + dh * (kh - 1) + 1:dh,
                           ox * sw:ox * sw + dw * (kw - 1) + 1:dw]
                y[:, g * Og:(g + 1) * Og, oy, ox] = np.einsum("nckl,ockl->no", patch, wg)
    return y if b is None else y + b[None, :, None, None]


def conv_transpose_ref(x, w, b, stride, padding, output_padding, dilation, groups):
    """The transposed conv, scattered: every input pixel adds x[n, c, iy, ix] w[c, o] at
    (iy·s + ky·d, ix·s + kx·d) of a buffer, which is then cropped by the padding; output size
    (in - 1)·s - 2p + d·(k - 1) + output_padding + 1."""
    N, Cin, H, W = x.shape
    _, Og, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    Cg = Cin // groups
    Hb = (H - 1) * sh + dh * (kh - 1) + 1 + oph
    Wb = (W - 1) * sw + dw * (kw - 1) + 1 + opw
    buf = np.zeros((N, Og * groups, Hb, Wb))
    for g in range(groups):
        for iy in range(H):
            for ix in range(W):
                contrib = np.einsum("nc,cokl->nokl", x[:, g * Cg:(g + 1) * Cg, iy, ix],
                                    w[g * Cg:(g + 1) * Cg])
                buf[:, g * Og:(g + 1) * Og, iy * sh:iy * sh + dh * (kh - 1) + 1:dh,
                    ix * sw:ix * sw + dw * (kw - 1) + 1:dw] += contrib
    Ho, Wo = Hb - 2 * ph, Wb - 2 * pw
    y = buf[:, :, ph:ph + Ho, pw:pw + Wo]
    return y if b is None else y + b[None, :, None, None]


CONV_ATOL = 1e-13       # sums of ≤ 36 products of values ≤ 2, in another order


@st.composite
def conv_case(draw, nd, transposed=False):
    """A consistent conv call: groups dividing both channel counts, kernel, stride, dilation,
    padding (ints, tuples, 'same' / 'valid' for conv), bias or not, batched or unbatched."""
    groups = draw(st.sampled_from([1, 1, 2]))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    dil = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    kw = dict(groups=groups)
    if transposed:
        pad = tuple(draw(st.integers(0, 1)) for _ in range(nd))
        outpad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dil))
        size = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        for n, s, p, d, kk, o in zip(size, stride, pad, dil, k, outpad):
            assume((n - 1) * s - 2 * p + d * (kk - 1) + o + 1 >= 1)
        kw.update(stride=stride, padding=pad, output_padding=outpad, dilation=dil)
        w_shape = (cin, cout // groups) + k
    else:
        padding = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
        if padding == "same":
            stride = (1,) * nd
            pads = [(d * (kk - 1) // 2, d * (kk - 1) - d * (kk - 1) // 2) for d, kk in zip(dil, k)]
            kw["padding"] = "same"
        elif padding == "valid":
            pads = [(0, 0)] * nd
            kw["padding"] = "valid"
        else:
            p = tuple(draw(st.integers(0, 2)) for _ in range(nd))
            pads = [(q, q) for q in p]
            kw["padding"] = p if padding == "tuple" else p[0]
            if padding == "int":
                pads = [(p[0], p[0])] * nd
        size = tuple(max(d * (kk - 1) + 1 - lo - hi, 1) + draw(st.integers(0, 3))
                     for d, kk, (lo, hi) in zip(dil, k, pads))
        kw.update(stride=stride if draw(st.booleans()) or len(set(stride)) > 1 else stride[0],
                  dilation=dil)
        kw["pads"] = pads
        w_shape = (cout, cin // groups) + k
    batch = draw(st.sampled_from([(1,), (2,), ()]))
    x = draw(floats(batch + (cin,) + size))
    w = draw(floats(w_shape))
    b = draw(st.one_of(st.none(), floats((cout,))))
    return x, w, b, kw


def _as4d(a, nd):
    """(N, C, L) -> (N, C, 1, L); (C, ...) unbatched -> (1, C, ...)."""
    return a.reshape(a.shape[:-1] + (1, a.shape[-1])) if nd == 1 else a


@covers("conv1d", "conv2d")
@pytest.mark.parametrize("nd", [1, 2])
@given(data=st.data())
def test_conv(nd, data):
    x, w, b, kw = data.draw(conv_case(nd), label="case")
    pads = kw.pop("pads")
    unbatched = x.ndim == nd + 1
    x4 = _as4d(x[None] if unbatched else x, nd)
    per_dim = lambda v: (1,) + tuple(v) if nd == 1 else tuple(v)          # noqa: E731
    stride = kw["stride"] if isinstance(kw["stride"], tuple) else (kw["stride"],) * nd
    flat_pads = ((0, 0),) + tuple(pads) if nd == 1 else tuple(pads)
    y = conv_ref(x4, _as4d(w, nd), b, per_dim(stride), sum(flat_pads, ()),
                 per_dim(kw["dilation"]), kw["groups"])
    y = y.reshape(y.shape[:2] + y.shape[3:]) if nd == 1 else y
    y = y[0] if unbatched else y
    fn = F.conv1d if nd == 1 else F.conv2d
    check(fn(T(x), T(w), None if b is None else T(b), **kw), y, atol=CONV_ATOL)


@covers("conv_transpose1d", "conv_transpose2d")
@pytest.mark.parametrize("nd", [1, 2])
@given(data=st.data())
def test_conv_transpose(nd, data):
    x, w, b, kw = data.draw(conv_case(nd, transposed=True), label="case")
    unbatched = x.ndim == nd + 1
    x4 = _as4d(x[None] if unbatched else x, nd)
    per_dim = lambda v: (1,) + tuple(v) if nd == 1 else tuple(v)          # noqa: E731
    zero_first = lambda v: (0,) + tuple(v) if nd == 1 else tuple(v)       # noqa: E731
    y = conv_transpose_ref(x4, _as4d(w, nd), b, per_dim(kw["stride"]), zero_first(kw["padding"]),
                           zero_first(kw["output_padding"]), per_dim(kw["dilation"]),
                           kw["groups"])
    y = y.reshape(y.shape[:2] + y.shape[3:]) if nd == 1 else y
    y = y[0] if unbatched else y
    fn = F.conv_transpose1d if nd == 1 else F.conv_transpose2d
    check(fn(T(x), T(w), None if b is None else T(b), **kw), y, atol=CONV_ATOL)
    if nd == 1 and kw["groups"] == 1:        # the positional order of PyTorch's signature
        check(fn(T(x), T(w), None if b is None else T(b), kw["stride"], kw["padding"],
                 kw["output_padding"], 1, kw["dilation"]), y, atol=CONV_ATOL)


def pixelcnn_mask_ref(out_ch, in_ch, k, mask_type, color_groups):
    """1 at the taps above the centre row and left of the centre in it; at the centre, output
    colour block j sees input block i when i < j (mask A) or i <= j (mask B)."""
    c = k // 2
    m = np.zeros((out_ch, in_ch, k, k))
    for o, i, ky, kx in itertools.product(range(out_ch), range(in_ch), range(k), range(k)):
        if ky < c or (ky == c and kx < c):
            m[o, i, ky, kx] = 1
        elif ky == c and kx == c:
            bo, bi = o // (out_ch // color_groups), i // (in_ch // color_groups)
            m[o, i, ky, kx] = bi < bo if mask_type == "A" else bi <= bo
    return m


@covers("pixelcnn_mask", "masked_conv2d")
@pytest.mark.parametrize("mask_type", ["A", "B"])
@given(groups=st.sampled_from([1, 1, 3]), mo=st.integers(1, 2), mi=st.integers(1, 2),
       k=st.sampled_from([1, 3, 5]), hw=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       bias=st.booleans(), data=st.data())
def test_masked_conv(mask_type, groups, mo, mi, k, hw, bias, data):
    """The PixelCNN mask, and masked_conv2d = conv2d(x, w · mask, b, padding=k // 2)."""
    O, C = groups * mo, groups * mi
    mask = pixelcnn_mask_ref(O, C, k, mask_type, groups)
    out = F.pixelcnn_mask(O, C, k, mask_type, groups)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, mask)
    np.testing.assert_array_equal(F.pixelcnn_mask(O, C, k, mask_type, groups, np.float64), mask)
    if groups == 1:
        np.testing.assert_array_equal(F.pixelcnn_mask(O, C, k, mask_type), mask)
    x = data.draw(floats((2, C) + hw), label="x")
    w = data.draw(floats((O, C, k, k)), label="w")
    b = data.draw(floats((O,)), label="b") if bias else None
    y = conv_ref(x, w * mask, b, (1, 1), (k // 2,) * 4, (1, 1), 1)
    check(F.masked_conv2d(T(x), T(w), None if b is None else T(b), mask_type, groups), y,
          atol=CONV_ATOL)
    check(F.masked_conv2d(T(x[0]), T(w), None if b is None else T(b), mask_type=mask_type,
                          color_groups=groups), y[0], atol=CONV_ATOL)


@covers("causal_conv1d")
@given(n=st.sampled_from([(1,), (2,), ()]), c=st.integers(1, 3), o=st.integers(1, 3),
       k=st.integers(1, 3), length=st.integers(1, 6), dil=st.integers(1, 3), bias=st.booleans(),
       data=st.data())
def test_causal_conv1d(n, c, o, k, length, dil, bias, data):
    """y[n, o, t] = b[o] + Σ_{c, j} w[o, c, j] x[n, c, t - (k - 1 - j)·dilation] (zero before
    the start): same length, output t sees only inputs up to t."""
    x = data.draw(floats(n + (c, length)), label="x")
    w = data.draw(floats((o, c, k)), label="w")
    b = data.draw(floats((o,)), label="b") if bias else None
    xb = x if n else x[None]
    y = np.zeros((xb.shape[0], o, length))
    for i, oo, t in itertools.product(range(xb.shape[0]), range(o), range(length)):
        y[i, oo, t] = (b[oo] if bias else 0.0) + math.fsum(
            w[oo, cc, j] * xb[i, cc, t - (k - 1 - j) * dil]
            for cc in range(c) for j in range(k) if t - (k - 1 - j) * dil >= 0)
    y = y if n else y[0]
    check(F.causal_conv1d(T(x), T(w), None if b is None else T(b), dil), y, atol=CONV_ATOL)
    if dil == 1:
        check(F.causal_conv1d(T(x), T(w), None if b is None else T(b)), y, atol=CONV_ATOL)


# ================================================================ pooling
def pool_out_size(n, k, s, p, d, ceil_mode):
    """PyTorch's pooling_output_shape: ⌊ or ⌈(n + 2p - d(k - 1) - 1) / s⌉ + 1, minus one when
    ceil mode would start the last window in the right padding."""
    span_ = n + 2 * p - d * (k - 1) - 1
    o = (-(-span_ // s) if ceil_mode else span_ // s) + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


def max_pool_ref(x, k, s, p, d, ceil_mode):
    """(values, flat indices into each H·W plane) of 2-d max pooling over (N, C, H, W), windows
    scanned row by row (the first maximum wins), -inf padding.  A window wholly in the padding
    (possible with dilation) gives -inf at PyTorch's index: its first tap row and column at or
    after 0 (which may lie outside the plane)."""
    N, C, H, W = x.shape
    Ho, Wo = (pool_out_size(n, k_, s_, p_, d_, ceil_mode)
              for n, k_, s_, p_, d_ in zip((H, W), k, s, p, d))
    vals, idxs = np.full((N, C, Ho, Wo), -np.inf), np.zeros((N, C, Ho, Wo), dtype=np.int64)
    for n, c, oy, ox in np.ndindex(N, C, Ho, Wo):
        y0, x0 = oy * s[0] - p[0], ox * s[1] - p[1]
        while y0 < 0:                           # PyTorch's first tap inside (or beyond)
            y0 += d[0]
        while x0 < 0:
            x0 += d[1]
        best, at = -np.inf, y0 * W + x0
        for ky, kx in itertools.product(range(k[0]), range(k[1])):
            iy, ix = oy * s[0] - p[0] + ky * d[0], ox * s[1] - p[1] + kx * d[1]
            if 0 <= iy < H and 0 <= ix < W and x[n, c, iy, ix] > best:
                best, at = x[n, c, iy, ix], iy * W + ix
        vals[n, c, oy, ox], idxs[n, c, oy, ox] = best, at
    return vals, idxs


def avg_pool_ref(x, k, s, p, ceil_mode, count_include_pad, divisor_override):
    """PyTorch's average pooling: the window clipped to the padded input gives the
    count_include_pad divisor, clipped to the input the sum and the other divisor."""
    N, C, H, W = x.shape
    Ho, Wo = (pool_out_size(n, k_, s_, p_, 1, ceil_mode)
              for n, k_, s_, p_ in zip((H, W), k, s, p))
    y = np.zeros((N, C, Ho, Wo))
    for oy, ox in np.ndindex(Ho, Wo):
        h0, w0 = oy * s[0] - p[0], ox * s[1] - p[1]
        h1, w1 = min(h0 + k[0], H + p[0]), min(w0 + k[1], W + p[1])
        padded = (h1 - h0) * (w1 - w0)
        h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
        window = x[:, :, h0:h1, w0:w1]
        divisor = divisor_override or (padded if count_include_pad else window[0, 0].size)
        y[:, :, oy, ox] = window.sum(axis=(2, 3)) / divisor
    return y


@st.composite
def pool_case(draw, nd, kind):
    """kernel, stride (None: the kernel), padding <= kernel // 2, dilation (max only),
    ceil_mode, and an input big enough for one output."""
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    p = tuple(draw(st.integers(0, kk // 2)) for kk in k)
    d = tuple(draw(st.integers(1, 2)) if kind == "max" else 1 for _ in range(nd))
    ceil_mode = draw(st.booleans())
    size = tuple(max(dd * (kk - 1) + 1 - 2 * pp, 1) + draw(st.integers(0, 4))
                 for kk, pp, dd in zip(k, p, d))
    batch = draw(st.sampled_from([(1, 2), (2, 1), (2,)]))
    x = draw(distinct_arrays(batch + size)) if kind == "max" else draw(floats(batch + size))

    def maybe_int(v):                       # an int when all dims agree, now and then
        return v[0] if len(set(v)) == 1 and draw(st.booleans()) else v
    kw = dict(kernel_size=maybe_int(k), padding=maybe_int(p), ceil_mode=ceil_mode)
    stride_none = draw(st.booleans())
    if not stride_none:
        kw["stride"] = s
    else:
        s = k
    if kind == "max":
        kw["dilation"] = d
    else:
        kw["count_include_pad"] = draw(st.booleans())
        if nd == 2:
            kw["divisor_override"] = draw(st.sampled_from([None, None, 3]))
    return x, kw, (k, s, p, d)


def _planes4(x, nd):
    """x as (N, C, H, W) (1-d: H = 1; unbatched: N = 1) and the inverse reshape."""
    lead = x.shape[:-nd]
    n, c = (1, lead[0]) if len(lead) == 1 else lead
    x4 = x.reshape((n, c) + ((1,) if nd == 1 else ()) + x.shape[-nd:])

    def back(y):
        return y.reshape(lead + y.shape[4 - nd:])
    return x4, back


@covers("max_pool1d", "max_pool2d")
@pytest.mark.parametrize("nd", [1, 2])
@given(data=st.data())
def test_max_pool(nd, data):
    """Values and (return_indices) flat indices into each plane; -inf padding, dilation,
    ceil_mode, stride defaulting to the kernel, unbatched inputs."""
    x, kw, (k, s, p, d) = data.draw(pool_case(nd, "max"), label="case")
    x4, back = _planes4(x, nd)
    one = lambda v: (1,) + v if nd == 1 else v                  # noqa: E731
    vals, idxs = max_pool_ref(x4, one(k), one(s), (0,) + p if nd == 1 else p, one(d),
                              kw["ceil_mode"])
    fn = F.max_pool1d if nd == 1 else F.max_pool2d
    check(fn(T(x), **kw), back(vals), rtol=0, atol=0)
    v, i = fn(T(x), return_indices=True, **kw)
    check(v, back(vals), rtol=0, atol=0)
    check(i, back(idxs), dtype=np.int64)


@covers("avg_pool1d", "avg_pool2d")
@pytest.mark.parametrize("nd", [1, 2])
@given(data=st.data())
def test_avg_pool(nd, data):
    """Padding counted or not (count_include_pad), divisor_override, ceil_mode."""
    x, kw, (k, s, p, _) = data.draw(pool_case(nd, "avg"), label="case")
    x4, back = _planes4(x, nd)
    one = lambda v: (1,) + v if nd == 1 else v                  # noqa: E731
    y = avg_pool_ref(x4, one(k), one(s), (0,) + p if nd == 1 else p, kw["ceil_mode"],
                     kw["count_include_pad"], kw.get("divisor_override"))
    fn = F.avg_pool1d if nd == 1 else F.avg_pool2d
    check(fn(T(x), **kw), back(y), atol=1e-15)


def adaptive_windows(n, m):
    """Output o of m averages / maxes input [⌊o·n/m⌋, ⌈(o+1)·n/m⌉)."""
    return [(o * n // m, -(-(o + 1) * n // m)) for o in range(m)]


@covers("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d",
        "adaptive_max_pool2d")
@pytest.mark.parametrize("nd", [1, 2])
@given(batch=st.sampled_from([(1, 2), (2, 1), (2,)]), data=st.data())
def test_adaptive_pool(nd, batch, data):
    """Adaptive windows for any in / out sizes (shrinking and growing); output_size as an int,
    a tuple or with None (keep that size); max with return_indices."""
    size = tuple(data.draw(st.integers(1, 6), label="in") for _ in range(nd))
    out = tuple(data.draw(st.integers(1, 5), label="out") for _ in range(nd))
    x = data.draw(distinct_arrays(batch + size), label="x")
    x4, back = _planes4(x, nd)
    H, W = x4.shape[-2:]
    oh, ow = (1,) + out if nd == 1 else out
    avg, mx = np.zeros(x4.shape[:2] + (oh, ow)), np.zeros(x4.shape[:2] + (oh, ow))
    idx = np.zeros(x4.shape[:2] + (oh, ow), dtype=np.int64)
    for (i, (h0, h1)), (j, (w0, w1)) in itertools.product(enumerate(adaptive_windows(H, oh)),
                                                          enumerate(adaptive_windows(W, ow))):
        window = x4[:, :, h0:h1, w0:w1]
        avg[:, :, i, j] = window.mean(axis=(2, 3))
        flat = window.reshape(window.shape[:2] + (-1,))
        mx[:, :, i, j] = flat.max(axis=2)
        at = flat.argmax(axis=2)
        idx[:, :, i, j] = (h0 + at // (w1 - w0)) * W + w0 + at % (w1 - w0)
    if nd == 1:
        forms = [out[0], out]
        favg, fmax = F.adaptive_avg_pool1d, F.adaptive_max_pool1d
    else:
        forms = [out, (out[0], None) if out[1] == size[1] else out,
                 (None, out[1]) if out[0] == size[0] else out]
        forms += [out[0]] if out[0] == out[1] else []
        favg, fmax = F.adaptive_avg_pool2d, F.adaptive_max_pool2d
    for form in forms:
        check(favg(T(x), form), back(avg), atol=1e-15)
        check(fmax(T(x), form), back(mx), rtol=0, atol=0)
        v, i = fmax(T(x), form, return_indices=True)
        check(v, back(mx), rtol=0, atol=0)
        check(i, back(idx), dtype=np.int64)


# ================================================================ resampling and padding
def nearest_src(n_in, n_out, scale, exact):
    """PyTorch's nearest source index (UpSample.h), in float32 as there: out = in and
    out = 2·in are exact; else s = 1/scale (when given) or in/out, src = ⌊dst·s⌋ (nearest) or
    ⌊(dst + ½)·s⌋ (nearest-exact), at most in - 1."""
    if not exact and n_out == n_in:
        return list(range(n_out))
    if not exact and n_out == 2 * n_in:
        return [o // 2 for o in range(n_out)]
    s = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
    return [min(int(math.floor(np.float32((o + 0.5) if exact else o) * s)), n_in - 1)
            for o in range(n_out)]


def linear_taps_ref(n_in, n_out, scale, align_corners):
    """[(i0, i1, λ)] of PyTorch's linear interpolation, in float64: align_corners:
    src = dst·(in - 1)/(out - 1); else src = max((dst + ½)·s - ½, 0), s = 1/scale or in/out."""
    taps = []
    for o in range(n_out):
        if align_corners:
            src = o * ((n_in - 1) / (n_out - 1)) if n_out > 1 else 0.0
        else:
            s = 1.0 / scale if scale else n_in / n_out
            src = max((o + 0.5) * s - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = i0 + (1 if i0 < n_in - 1 else 0)
        taps.append((i0, i1, min(max(src - i0, 0.0), 1.0)))
    return taps


def resample_matrix(n_in, n_out, mode, scale, align_corners):
    """The (n_out, n_in) matrix of one axis."""
    m = np.zeros((n_out, n_in))
    if mode in ("nearest", "nearest-exact"):
        for o, i in enumerate(nearest_src(n_in, n_out, scale, mode == "nearest-exact")):
            m[o, i] = 1.0
    elif mode == "area":
        for o, (a, b) in enumerate(adaptive_windows(n_in, n_out)):
            m[o, a:b] = 1.0 / (b - a)
    else:
        for o, (i0, i1, lam) in enumerate(linear_taps_ref(n_in, n_out, scale, align_corners)):
            m[o, i0] += 1.0 - lam
            m[o, i1] += lam
    return m


@covers("interpolate")
@pytest.mark.parametrize("mode", ["nearest", "nearest-exact", "linear", "bilinear", "area"])
@given(data=st.data())
def test_interpolate(mode, data):
    """Every mode with size (int / tuple) or scale_factor (float / tuple, recomputed or not),
    align_corners for the linear modes; y = Lh x Lwᵀ from per-axis matrices built from
    PyTorch's coordinate formulas."""
    nd = 1 if mode == "linear" else 2 if mode == "bilinear" else data.draw(
        st.sampled_from([1, 2]), label="nd")
    lead = data.draw(st.sampled_from([(1, 2), (2, 1)]), label="lead")
    size = tuple(data.draw(st.integers(1, 6), label="in") for _ in range(nd))
    x = data.draw(floats(lead + size), label="x")
    kw = {}
    if mode in ("linear", "bilinear"):
        kw["align_corners"] = data.draw(st.sampled_from([None, False, True]), label="ac")
    if data.draw(st.booleans(), label="by size"):
        out = tuple(data.draw(st.integers(1, 7), label="out") for _ in range(nd))
        kw["size"] = out if nd > 1 or data.draw(st.booleans()) else out[0]
        scales = (None,) * nd
    else:
        # factors whose in / out differs from 1 / factor, so the two conventions differ
        sf = tuple(data.draw(st.sampled_from([0.5, 0.6, 0.7, 0.75, 1.0, 1.3, 1.5, 1.7, 2.0,
                                              2.5, 3.0]), label="sf") for _ in range(nd))
        out = tuple(int(math.floor(n * f)) for n, f in zip(size, sf))
        assume(min(out) >= 1)
        kw["scale_factor"] = sf if nd > 1 or data.draw(st.booleans()) else sf[0]
        recompute = data.draw(st.sampled_from([None, False, True]), label="recompute")
        if recompute is not None:
            kw["recompute_scale_factor"] = recompute
        scales = (None,) * nd if recompute or mode == "area" else sf
    mats = [resample_matrix(n, m, mode, s_, bool(kw.get("align_corners")))
            for n, m, s_ in zip(size, out, scales)]
    if nd == 1:
        y = np.einsum("ol,ncl->nco", mats[0], x)
    else:
        y = np.einsum("oh,nchw,pw->ncop", mats[0], x, mats[1])
    check(F.interpolate(T(x), mode=mode, **kw), y, atol=1e-15)


@covers("pixel_shuffle", "pixel_unshuffle")
@given(lead=st.sampled_from([(), (2,), (1, 2)]), c=st.integers(1, 2), r=st.integers(1, 3),
       h=st.integers(1, 3), w=st.integers(1, 3), data=st.data())
def test_pixel_shuffle(lead, c, r, h, w, data):
    """y[*, c, h·r + i, w·r + j] = x[*, c·r² + i·r + j, h, w], and unshuffle its inverse."""
    x = data.draw(floats(lead + (c * r * r, h, w)), label="x")
    y = np.empty(lead + (c, h * r, w * r))
    for idx in np.ndindex(*lead):
        for cc, i, j, hh, ww in itertools.product(range(c), range(r), range(r), range(h),
                                                  range(w)):
            y[idx + (cc, hh * r + i, ww * r + j)] = x[idx + (cc * r * r + i * r + j, hh, ww)]
    check(F.pixel_shuffle(T(x), r), y, rtol=0, atol=0)
    check(F.pixel_unshuffle(T(y), r), x, rtol=0, atol=0)


def pad_index(n, lo, hi, mode):
    """Source position of every output position of one padded axis (None: the fill)."""
    out = []
    for o in range(n + lo + hi):
        j = o - lo
        if mode == "constant":
            out.append(j if 0 <= j < n else None)
        elif mode == "reflect":
            j = abs(j)
            out.append(2 * (n - 1) - j if j > n - 1 else j)
        elif mode == "replicate":
            out.append(min(max(j, 0), n - 1))
        else:
            out.append(j % n)
    return out


@covers("pad")
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@given(data=st.data())
def test_pad(mode, data):
    """PyTorch's pad order (last dim first); constant with a value and negative pads (crop),
    over any number of dims; reflect (no edge repeat), replicate, circular over the last 1-3
    dims of a batched or unbatched input."""
    if mode == "constant":
        x = data.draw(floats(shapes_(1, 3)), label="x")
        k = data.draw(st.integers(1, x.ndim), label="k")
    else:
        k = data.draw(st.integers(1, 2), label="k")
        x = data.draw(floats(shapes_(k + 1, k + 2)), label="x")
    pads = []
    for i in range(k):
        n = x.shape[-1 - i]
        bound = {"constant": 2, "reflect": n - 1, "replicate": 2, "circular": n}[mode]
        lo_min = -n if mode == "constant" else 0
        lo = data.draw(st.integers(max(lo_min, -1), bound), label="lo")
        hi = data.draw(st.integers(max(-n - lo, -1) if mode == "constant" else 0, bound),
                       label="hi")
        pads += [lo, hi]
    value = data.draw(st.sampled_from([None, 0.0, -1.5]), label="value") \
        if mode == "constant" else None
    maps = [None] * x.ndim
    for i in range(k):
        axis = x.ndim - 1 - i
        maps[axis] = pad_index(x.shape[axis], pads[2 * i], pads[2 * i + 1],
                               "constant" if mode == "constant" else mode)
    out_shape = tuple(len(m) if m is not None else s for m, s in zip(maps, x.shape))
    y = np.full(out_shape, 0.0 if value is None else value)
    for idx in np.ndindex(*out_shape):
        src = [m[i] if m is not None else i for m, i in zip(maps, idx)]
        if None not in src:
            y[idx] = x[tuple(src)]
    kw = {} if mode == "constant" and data.draw(st.booleans(), label="default mode") \
        else dict(mode=mode)
    if value is not None:
        kw["value"] = value
    check(F.pad(T(x), tuple(pads), **kw), y, rtol=0, atol=0)
    check(F.pad(T(x), list(pads), **kw), y, rtol=0, atol=0)


# ================================================================ normalisation
def standardize(x, axes, eps):
    """(x - mean) / sqrt(biased var + eps) over ``axes``, with its mean and biased var."""
    m = x.mean(axis=axes, keepdims=True)
    v = ((x - m) ** 2).mean(axis=axes, keepdims=True)
    return (x - m) / np.sqrt(v + eps), m, v


def per_channel(a, ndim):
    """A (C,) array shaped to broadcast over (N, C, *)."""
    return a.reshape((1, -1) + (1,) * (ndim - 2))


NORM_ATOL = 1e-12        # x̂ = (x - μ)/σ: the kernels' one-pass statistics, values ≤ 3 / σ


@st.composite
def nc_star(draw, min_spatial=0, max_spatial=2):
    """An (N, C, *) input shape (N, C >= 1, 0 to 2 spatial dims)."""
    return (draw(st.integers(1, 3)), draw(st.integers(1, 4))) + draw(
        shapes_(min_spatial, max_spatial))


@covers("batch_norm")
@given(shape=nc_star(), data=st.data(), momentum=st.sampled_from([0.1, 0.5]),
       eps=st.sampled_from([1e-5, 0.1]), affine=st.booleans())
def test_batch_norm(shape, data, momentum, eps, affine):
    """training: batch statistics per channel over (N, *), the running buffers updated in place
    with the unbiased variance; eval: the running statistics."""
    n = shape[0] * int(np.prod(shape[2:]))
    assume(n > 1)
    x = data.draw(floats(shape, -3, 3), label="x")
    c = shape[1]
    w = data.draw(floats((c,), 0.2, 2), label="w") if affine else None
    b = data.draw(floats((c,)), label="b") if affine else None
    rm, rv = data.draw(floats((c,)), label="rm"), data.draw(floats((c,), 0.2, 2), label="rv")
    axes = (0,) + tuple(range(2, len(shape)))
    xhat, m, v = standardize(x, axes, eps)
    y = xhat * per_channel(w, x.ndim) + per_channel(b, x.ndim) if affine else xhat
    wt = [T(w), T(b)] if affine else [None, None]
    run_m, run_v = T(rm), T(rv)
    check(F.batch_norm(T(x), run_m, run_v, *wt, training=True, momentum=momentum, eps=eps), y,
          atol=NORM_ATOL)
    check(run_m, (1 - momentum) * rm + momentum * m.ravel())
    check(run_v, (1 - momentum) * rv + momentum * v.ravel() * n / (n - 1))
    check(F.batch_norm(T(x), None, None, *wt, training=True, eps=eps), y, atol=NORM_ATOL)
    y_eval = (x - per_channel(rm, x.ndim)) / np.sqrt(per_channel(rv, x.ndim) + eps)
    if affine:
        y_eval = y_eval * per_channel(w, x.ndim) + per_channel(b, x.ndim)
    check(F.batch_norm(T(x), T(rm), T(rv), *wt, eps=eps), y_eval)
    check(F.batch_norm(T(x), T(rm), T(rv), *wt, training=False, eps=eps), y_eval)


@covers("instance_norm")
@given(shape=nc_star(min_spatial=1), data=st.data(), momentum=st.sampled_from([0.1, 0.5]),
       affine=st.booleans())
def test_instance_norm(shape, data, momentum, affine):
    """Statistics per sample and channel over the positions; running buffers get the batch
    mean of the instance statistics (unbiased variance); use_input_stats=False: the buffers."""
    x = data.draw(floats(shape, -3, 3), label="x")
    c, s = shape[1], int(np.prod(shape[2:]))
    w = data.draw(floats((c,), 0.2, 2), label="w") if affine else None
    b = data.draw(floats((c,)), label="b") if affine else None
    wt = [T(w), T(b)] if affine else [None, None]
    xhat, m, v = standardize(x, tuple(range(2, x.ndim)), 1e-5)
    y = xhat * per_channel(w, x.ndim) + per_channel(b, x.ndim) if affine else xhat
    check(F.instance_norm(T(x), weight=wt[0], bias=wt[1]), y, atol=NORM_ATOL)
    if s > 1:
        rm, rv = data.draw(floats((c,)), label="rm"), data.draw(floats((c,), 0.2, 2), label="rv")
        run_m, run_v = T(rm), T(rv)
        check(F.instance_norm(T(x), run_m, run_v, *wt, momentum=momentum), y, atol=NORM_ATOL)
        inst_m = m.reshape(shape[0], c).mean(axis=0)
        inst_v = (v.reshape(shape[0], c) * s / (s - 1)).mean(axis=0)
        check(run_m, (1 - momentum) * rm + momentum * inst_m)
        check(run_v, (1 - momentum) * rv + momentum * inst_v)
        y_eval = (x - per_channel(rm, x.ndim)) / np.sqrt(per_channel(rv, x.ndim) + 1e-5)
        if affine:
            y_eval = y_eval * per_channel(w, x.ndim) + per_channel(b, x.ndim)
        check(F.instance_norm(T(x), T(rm), T(rv), *wt, use_input_stats=False), y_eval)


def group_standardize(x, groups, eps):
    """x̂ of group norm: statistics per sample over each group of C / G channels (and all
    positions)."""
    n, c = x.shape[:2]
    xg = x.reshape((n, groups, c // groups) + x.shape[2:])
    xhat = standardize(xg, tuple(range(2, xg.ndim)), eps)[0]
    return xhat.reshape(x.shape)


@covers("group_norm", "adaptive_group_norm")
@given(shape=nc_star(), data=st.data(), eps=st.sampled_from([1e-5, 0.1]))
def test_group_norm(shape, data, eps):
    """group_norm with and without per-channel affine; adaptive_group_norm with per-sample
    (N, C) scale and bias (either may be None)."""
    shape = (shape[0], shape[1] * data.draw(st.sampled_from([1, 2]), label="c mult")) + shape[2:]
    n, c = shape[:2]
    groups = data.draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]), label="G")
    x = data.draw(floats(shape, -3, 3), label="x")
    xhat = group_standardize(x, groups, eps)
    w, b = data.draw(floats((c,), 0.2, 2), label="w"), data.draw(floats((c,)), label="b")
    check(F.group_norm(T(x), groups, eps=eps), xhat, atol=NORM_ATOL)
    check(F.group_norm(T(x), groups, T(w), T(b), eps), xhat * per_channel(w, x.ndim)
          + per_channel(b, x.ndim), atol=NORM_ATOL)
    sc, bi = data.draw(floats((n, c), 0.2, 2), label="scale"), data.draw(floats((n, c)), "bias")
    per_sample = lambda a: a.reshape((n, c) + (1,) * (x.ndim - 2))        # noqa: E731
    check(F.adaptive_group_norm(T(x), groups, T(sc), T(bi), eps),
          xhat * per_sample(sc) + per_sample(bi), atol=NORM_ATOL)
    check(F.adaptive_group_norm(T(x), groups, None, T(bi), eps=eps), xhat + per_sample(bi),
          atol=NORM_ATOL)
    check(F.adaptive_group_norm(T(x), groups, T(sc), None, eps=eps), xhat * per_sample(sc),
          atol=NORM_ATOL)


@covers("layer_norm")
@given(x=floats(shapes_(1, 4), -3, 3), data=st.data(), affine=st.booleans())
def test_layer_norm(x, data, affine):
    """Statistics over the trailing ``normalized_shape`` (an int or a tuple); weight and bias of
    that shape."""
    k = data.draw(st.integers(1, x.ndim), label="k")
    ns = x.shape[x.ndim - k:]
    xhat = standardize(x, tuple(range(x.ndim - k, x.ndim)), 1e-5)[0]
    form = ns[0] if k == 1 and data.draw(st.booleans(), label="int") else ns
    if affine:
        w, b = data.draw(floats(ns, 0.2, 2), label="w"), data.draw(floats(ns), label="b")
        check(F.layer_norm(T(x), form, T(w), T(b)), xhat * w + b, atol=NORM_ATOL)
        check(F.layer_norm(T(x), form, T(w)), xhat * w, atol=NORM_ATOL)
    else:
        check(F.layer_norm(T(x), form), xhat, atol=NORM_ATOL)
        check(F.layer_norm(T(x), form, eps=0.5),
              standardize(x, tuple(range(x.ndim - k, x.ndim)), 0.5)[0], atol=NORM_ATOL)


@covers("adain")
@given(n=st.integers(1, 3), c=st.integers(1, 3), hw=st.tuples(SIDE, SIDE), data=st.data())
def test_adain(n, c, hw, data):
    """y[n, c] = scale[n, c] (x - μ_hw) / sqrt(var_hw + eps) + bias[n, c] (H·W = 1: bias)."""
    x = data.draw(floats((n, c) + hw, -3, 3), label="x")
    sc, bi = data.draw(floats((n, c), 0.2, 2), label="scale"), data.draw(floats((n, c)), "bias")
    xhat = standardize(x, (2, 3), 1e-5)[0]
    check(F.adain(T(x), T(sc), T(bi)), xhat * sc[:, :, None, None] + bi[:, :, None, None],
          atol=NORM_ATOL)
    check(F.adain(T(x), T(sc), T(bi), eps=0.25),
          standardize(x, (2, 3), 0.25)[0] * sc[:, :, None, None] + bi[:, :, None, None],
          atol=NORM_ATOL)


# ================================================================ attention
def attention_ref(q, k, v, mask, causal, scale):
    """softmax(scale q kᵀ + mask) v per broadcast batch index, written out: a bool mask hides
    keys where False, an additive one is added, causal hides key j > query i; a query that sees
    no key gives 0."""
    L, E = q.shape[-2:]
    S, Ev = v.shape[-2:]
    shapes = [q.shape[:-2], k.shape[:-2], v.shape[:-2]]
    if mask is not None:
        mask = mask.reshape((1,) * max(0, 2 - mask.ndim) + mask.shape)
        shapes.append(mask.shape[:-2])
    batch = np.broadcast_shapes(*shapes)
    scale = 1 / math.sqrt(E) if scale is None else scale
    out = np.zeros(batch + (L, Ev))
    for bi in np.ndindex(*batch):
        def at(a):
            return np.broadcast_to(a, batch + a.shape[-2:])[bi]
        qb, kb, vb = at(q), at(k), at(v)
        mb = None if mask is None else np.broadcast_to(at(mask), (L, S))
        for i in range(L):
            scores = []
            for j in range(S):
                s = scale * math.fsum(qb[i, e] * kb[j, e] for e in range(E))
                if mb is not None:
                    s = (s if mb[i, j] else -math.inf) if mb.dtype == bool else s + mb[i, j]
                if causal and j > i:
                    s = -math.inf
                scores.append(s)
            top = max(scores, default=-math.inf)
            if top == -math.inf:
                continue                                  # a fully masked row: zeros
            p = [math.exp(s - top) for s in scores]
            total = math.fsum(p)
            for e in range(Ev):
                out[bi + (i, e)] = math.fsum(p[j] * vb[j, e] for j in range(S)) / total
    return out


@st.composite
def attention_case(draw):
    """Broadcasting batch dims (batch and heads), L != S, E != Ev, mask forms: none, bool,
    additive (with -inf), causal; fully masked rows happen."""
    batch = draw(shapes_(0, 2))
    L, S, E, Ev = (draw(st.integers(1, 4)) for _ in range(4))

    def lead():
        return tuple(1 if draw(st.sampled_from([False, False, True])) else s for s in batch)
    q = draw(floats(lead() + (L, E)))
    k = draw(floats(lead() + (S, E)))
    v = draw(floats(lead() + (S, Ev)))
    form = draw(st.sampled_from(["none", "bool", "additive", "causal"]))
    mask = None
    if form in ("bool", "additive"):
        mshape = draw(st.sampled_from([lead() + (L, S), (L, S), (S,), (1, S), (L, 1)]))
        if form == "bool":
            mask = draw(hnp.arrays(np.bool_, mshape))
        else:
            mask = draw(hnp.arrays(np.float64, mshape, elements=st.one_of(
                st.floats(-2, 2), st.just(-math.inf))))
    scale = draw(st.sampled_from([None, None, 0.5, 2.0]))
    return q, k, v, mask, form == "causal", scale


@covers("scaled_dot_product_attention")
@given(case=attention_case())
def test_scaled_dot_product_attention(case):
    """The fused kernel, and the composite path an additive mask that requires grad takes;
    dropout_p = 0 is no dropout."""
    q, k, v, mask, causal, scale = case
    expected = attention_ref(q, k, v, mask, causal, scale)
    kw = dict(is_causal=causal, scale=scale)
    if mask is not None:
        kw["attn_mask"] = T(mask)
    # (rtol 1e-11: the fused kernel's online softmax rescales its partial sums)
    check(F.scaled_dot_product_attention(T(q), T(k), T(v), **kw), expected, rtol=1e-11,
          atol=1e-13)
    check(F.scaled_dot_product_attention(T(q), T(k), T(v), dropout_p=0.0, **kw), expected,
          rtol=1e-11, atol=1e-13)
    if mask is not None and mask.dtype != bool:
        kw["attn_mask"] = R(mask)
        check(F.scaled_dot_product_attention(T(q), T(k), T(v), **kw), expected, rtol=1e-11,
              atol=1e-13)


# ================================================================ recurrent cells
def logistic(a):
    """σ(a) through the identity σ(a) = (1 + tanh(a / 2)) / 2 (not the 1 / (1 + e⁻ᵃ) the
    kernels compute)."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


@covers("lstm_cell_gates")
@given(n=st.integers(1, 3), h=SIDE, rest=st.lists(SIDE, max_size=2), data=st.data())
def test_lstm_cell_gates(n, h, rest, data):
    """Gates (N, 4H, *rest) chunked i, f, g, o along axis 1: c' = σ(a_f) c + σ(a_i) tanh(a_g),
    h' = σ(a_o) tanh(c'); float32 stays float32 (within its SIMD σ and tanh)."""
    gates = data.draw(floats((n, 4 * h, *rest), -4, 4), label="gates")
    c = data.draw(floats((n, h, *rest)), label="c")
    a_i, a_f, a_g, a_o = np.split(gates, 4, axis=1)
    c_new = logistic(a_f) * c + logistic(a_i) * np.tanh(a_g)
    h_new = logistic(a_o) * np.tanh(c_new)
    for make in (T, R):
        got_h, got_c = F.lstm_cell_gates(make(gates), make(c))
        check(got_h, h_new)
        check(got_c, c_new)
    got_h, got_c = F.lstm_cell_gates(T(gates, np.float32), T(c, np.float32))
    check(got_h, h_new, rtol=1e-5, atol=1e-6, dtype=np.float32)
    check(got_c, c_new, rtol=1e-5, atol=1e-6, dtype=np.float32)


@covers("gru_cell_gates")
@given(n=st.integers(1, 3), h=SIDE, rest=st.lists(SIDE, max_size=2), data=st.data())
def test_gru_cell_gates(n, h, rest, data):
    """gi, gh (N, 3H, *rest) chunked r, z, n: r = σ(gi_r + gh_r), z = σ(gi_z + gh_z),
    n = tanh(gi_n + r gh_n), h' = (1 - z) n + z h."""
    gi = data.draw(floats((n, 3 * h, *rest), -4, 4), label="gi")
    gh = data.draw(floats((n, 3 * h, *rest), -4, 4), label="gh")
    hx = data.draw(floats((n, h, *rest)), label="h")
    (ir, iz, in_), (hr, hz, hn) = np.split(gi, 3, axis=1), np.split(gh, 3, axis=1)
    r, z = logistic(ir + hr), logistic(iz + hz)
    expected = (1 - z) * np.tanh(in_ + r * hn) + z * hx
    check(F.gru_cell_gates(T(gi), T(gh), T(hx)), expected)
    check(F.gru_cell_gates(R(gi), R(gh), R(hx)), expected)
    check(F.gru_cell_gates(T(gi, np.float32), T(gh, np.float32), T(hx, np.float32)), expected,
          rtol=1e-5, atol=1e-6, dtype=np.float32)


@covers("conv_lstm_scan")
@given(t=st.integers(1, 4), n=st.integers(1, 2), length=SIDE, h=SIDE,
       kernel=st.sampled_from([(2, (1, 0)), (3, (1, 1)), (1, (0, 0))]), data=st.data())
def test_conv_lstm_scan(t, n, length, h, kernel, data):
    """The recurrence step by step in NumPy: z_t = gates_t + the 1-D convolution (a sum over
    the K taps of the zero-padded previous state), then the LSTM cell."""
    K, (left, right) = kernel
    gates = data.draw(floats((t, n, length, 4 * h), -3, 3), label="gates")
    w = data.draw(floats((4 * h, h, K), -1, 1), label="weight")
    b = data.draw(floats((4 * h,), -1, 1), label="bias")
    state, cell = np.zeros((n, length, h)), np.zeros((n, length, h))
    expected = []
    for step in range(t):
        padded = np.pad(state, ((0, 0), (left, right), (0, 0)))
        z = gates[step] + b + sum(padded[:, k:k + length] @ w[:, :, k].T for k in range(K))
        a_i, a_f, a_g, a_o = np.split(z, 4, axis=2)
        cell = logistic(a_f) * cell + logistic(a_i) * np.tanh(a_g)
        state = logistic(a_o) * np.tanh(cell)
        expected.append(state)
    expected = np.stack(expected)
    for make in (T, R):
        check(F.conv_lstm_scan(make(gates), make(w), make(b), padding=(left, right)), expected)
    check(F.conv_lstm_scan(T(gates, np.float32), T(w, np.float32), T(b, np.float32),
                           padding=(left, right)), expected, rtol=1e-5, atol=1e-6,
          dtype=np.float32)


# ================================================================ completeness
def test_every_public_op_has_a_forward_reference():
    """Every name of ``F.__all__`` is registered by a test above (``@covers``)."""
    missing = sorted(set(F.__all__) - COVERED)
    assert not missing, f"public ops without a forward-value test: {missing}"
