"""Every differentiable op in ``nanogen.functional``: gradients and gradients of gradients checked
against float64 central differences on hypothesis-drawn inputs (broadcasting included), kink
conventions pinned, subtle forward semantics compared with NumPy (and PyTorch when installed),
and the error messages of misuse.

The op table
------------
``OPS`` holds one :class:`Op` per op (or per calling form of an op): a name, a hypothesis
strategy of :class:`Case` (float64 arrays that become leaves with ``requires_grad=True``, and
the call on them, constants such as indices, masks and targets closed over), the public names it
exercises, and the check's mode.  Two parametrized tests run over the table:
``test_grad`` (gradcheck) and ``test_gradgrad`` (gradgradcheck), at gradcheck's float64
tolerances (rtol 1e-7, an atol scaled to the output: ``nanogen/testing.py``).  Adding an op is
one entry; ``test_every_public_op_is_covered`` fails when a public op has none.

Every choice among calling forms in a strategy goes through ``pick`` (``tests/strategies.py``),
which records it: a form that hypothesis offered but never drew gets a run with that form
forced, and the op's test fails if it is still never reached.

Inputs stay away from kinks (ReLU's 0, clamp bounds, Huber's ±δ) and domain edges (log's 0),
and max / min / sort see distinct values, so central differences are valid; the conventions *at*
the kinks are pinned separately (``test_*_kink*``, ``tests/test_nonsmooth.py``).  Sides are
≤ 3 so full mode (four forwards per element) stays cheap; big matmuls use the directional mode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nanogen as ng
import nanogen.functional as F
from nanogen.testing import assert_close, gradcheck, gradgradcheck

from .strategies import (bool_arrays, broadcast_pairs, broadcastable_shapes, current_forms, dim_for,
                         dims_for, distinct_arrays, distinct_tuple, examples, expanded_shapes,
                         float64_arrays, index_for, int_arrays, numel, pick, positive_arrays,
                         probability_arrays, shapes, sides, tracking_forms, wrap_index)

from tests.oracle import needs_torch, torch

from .test_forward_values import index_ref


# ================================================================ the table's machinery
class Case:
    """One drawn input: float64 arrays (each becomes a leaf requiring grad) and ``fn`` on them."""

    def __init__(self, fn, *arrays, note=""):
        self.fn, self.arrays, self.note = fn, arrays, note
        self.forms = current_forms()      # the calling forms picked while drawing this case

    def leaves(self):
        # np.asarray: a 0-d draw may be a NumPy scalar, which ng.tensor would make float32
        return [ng.tensor(np.array(a, dtype=np.float64), requires_grad=True)
                for a in self.arrays]

    def __repr__(self):     # what hypothesis prints for a falsifying example
        arrays = ", ".join(np.array_repr(a, precision=17) for a in self.arrays)
        return f"Case({self.note}; arrays: {arrays})"


@dataclass(frozen=True)
class Op:
    name: str
    cases: st.SearchStrategy        # of Case
    covers: tuple = ()              # the public names of nanogen.functional it exercises
    mode: str = "full"              # "directional" for big inputs
    examples: float = 1.0           # max_examples as a multiple of the profile's, >= 1 (more
    #                                 for a large space of calling forms)
    atol: float = None              # None: gradcheck's rule, scaled to the output
    rtol: float = 1e-7

    def __repr__(self):
        return self.name


def _float_outputs(out):
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, ng.Tensor) and o.dtype.kind == "f"]


# How many table examples ran, and how many had every input of at most one element (printed
# at the end of a run by tests/conftest.py: the shapes strategy must keep that share low).
DRAWN = {"examples": 0, "all inputs <= 1 element": 0}


def _run(op, check):
    """Run ``check(case)`` on hypothesis draws from ``op.cases`` (an inner @given, so each op
    can have its own max_examples).  Then every calling form the strategy offered (each
    :func:`pick`) that hypothesis did not happen to draw gets a run of its own with that form
    forced, and the test fails if one is still never reached."""
    def run(case):
        check(case)
        forms.drawn_in(case.forms)
        DRAWN["examples"] += 1
        DRAWN["all inputs <= 1 element"] += all(np.size(a) <= 1 for a in case.arrays)
    n = max(1, round(settings().max_examples * op.examples))
    with tracking_forms() as forms:
        settings(max_examples=n)(given(case=op.cases)(run))()
        for form in forms.missing():
            if form not in forms.drawn:         # an earlier forced run may have drawn it
                forms.forced = form
                settings(max_examples=max(4, n // 8))(given(case=op.cases)(run))()
        forms.forced = None
    assert not forms.missing(), f"{op.name}: forms offered but never drawn: {forms.missing()}"


# ---------------------------------------------------------------- drawing helpers
SMALL = shapes(0, 3, 1, 3)          # at most 27 elements
NONEMPTY = shapes(1, 3, 1, 3)       # at least one dim
MAYBE_EMPTY = shapes(0, 3, 1, 3, empty=True)    # a side of 0 one time in twelve
REDUCTION_NAMES = ["mean", "sum", "none"]
REDUCTIONS = st.sampled_from(REDUCTION_NAMES)


def plain(s):
    return float64_arrays(s)


def away0(s, margin=0.3):
    return float64_arrays(s, away_from=(0.0,), margin=margin)


def unary(fn, arrays=plain, shape=SMALL, note=""):
    return shape.flatmap(arrays).map(lambda a: Case(fn, a, note=note))


@st.composite
def binary(draw, fn, a=plain, b=plain, note=""):
    """Two operands of broadcast-compatible shapes (ranks may differ, 1s on either side)."""
    sa, sb = draw(broadcast_pairs())
    return Case(fn, draw(a(sa)), draw(b(sb)), note=f"{note} {sa} with {sb}")


def _count(shape, dim):
    if dim is None or not shape:
        return numel(shape)
    dims = dim if isinstance(dim, tuple) else (dim,)
    return numel([shape[d] for d in dims])


@st.composite
def reduction(draw, fn, arrays=plain, shape=SMALL, keepdim=True):
    """``fn(x, dim, keepdim)`` with dim None, an int or a tuple."""
    s = draw(shape)
    dim = draw(dims_for(s))
    kd = pick(draw, "keepdim", [False, True]) if keepdim else False
    return Case(lambda x: fn(x, dim, kd), draw(arrays(s)), note=f"dim={dim}, keepdim={kd}")


# ================================================================ elementwise
POW_EXPONENTS = [2, 3, 1, 0, -1, -2, 0.5, -1.5, 2.5, 2.0]


@st.composite
def pow_scalar_exponent(draw):
    p = pick(draw, "p", POW_EXPONENTS)
    s = draw(SMALL)
    # integer powers take any base away from 0; fractional ones need a positive base
    x = draw(away0(s) if float(p).is_integer() else positive_arrays(s))
    return Case(lambda x: x ** p, x, note=f"x ** {p!r}")


@st.composite
def scalar_operands(draw):
    """Python numbers on either side: the reflected operators."""
    c = pick(draw, "c", [-1.5, 0.5, 2.0, 3])
    form = pick(draw, "form", ["c+x", "c-x", "c*x", "x-c", "x/c", "c/x"])
    fns = {"c+x": lambda x: c + x, "c-x": lambda x: c - x, "c*x": lambda x: c * x,
           "x-c": lambda x: x - c, "x/c": lambda x: x / c, "c/x": lambda x: c / x}
    return Case(fns[form], draw(away0(draw(SMALL))), note=form.replace("c", repr(c)))


@st.composite
def clamp_scalar(draw):
    lo, hi = pick(draw, "lo/hi", [(-0.5, 0.5), (-0.5, None), (None, 0.5), (0.0, 1.0)])
    fn = pick(draw, "fn", [F.clamp, F.clip, ng.Tensor.clamp])
    s = draw(SMALL)
    x = draw(float64_arrays(s, away_from=[b for b in (lo, hi) if b is not None]))
    return Case(lambda x: fn(x, lo, hi), x, note=f"{fn.__name__}(x, {lo}, {hi})")


@st.composite
def clamp_tensor(draw):
    """Tensor bounds, broadcast to x; x and the bounds never tie (distinct values)."""
    s = draw(SMALL)
    s_lo, s_hi = draw(broadcastable_shapes(s)), draw(broadcastable_shapes(s))
    x, lo, hi = draw(distinct_tuple(s, s_lo, s_hi))
    form = pick(draw, "form", ["min", "max", "both", "min+number"])
    if form == "min":
        return Case(lambda x, lo: F.clamp(x, min=lo), x, lo, note="clamp(x, min=lo)")
    if form == "max":
        return Case(lambda x, hi: F.clamp(x, max=hi), x, hi, note="clamp(x, max=hi)")
    if form == "both":
        return Case(lambda x, lo, hi: F.clamp(x, lo, hi), x, lo, hi, note="clamp(x, lo, hi)")
    # a number between two neighbouring values of the pool: at least spacing / 4 from all
    pool = np.sort(np.concatenate([x.ravel(), lo.ravel()]))
    k = draw(st.integers(0, len(pool) - 2)) if len(pool) > 1 else 0
    c = float((pool[k] + pool[k + 1]) / 2) if len(pool) > 1 else float(pool[0]) + 0.5
    return Case(lambda x, lo: F.clamp(x, lo, c), x, lo, note=f"clamp(x, lo, {c})")


@st.composite
def where_case(draw):
    sa, sb = draw(broadcast_pairs())
    cond = draw(bool_arrays(draw(broadcastable_shapes(np.broadcast_shapes(sa, sb)))))
    a, b = draw(float64_arrays(sa)), draw(float64_arrays(sb))
    form = pick(draw, "form", ["tensors", "number other", "number input", "array cond"])
    c = ng.tensor(cond)
    if form == "tensors":
        return Case(lambda a, b: F.where(c, a, b), a, b, note=f"cond {cond.shape}")
    if form == "number other":
        return Case(lambda a: F.where(c, a, 0.5), a, note=f"cond {cond.shape}, other=0.5")
    if form == "number input":
        return Case(lambda b: F.where(c, -1.5, b), b, note=f"cond {cond.shape}, input=-1.5")
    return Case(lambda a, b: F.where(cond, a, b), a, b, note=f"numpy cond {cond.shape}")


@st.composite
def max_min_elementwise(draw, fn):
    sa, sb = draw(broadcast_pairs())
    a, b = draw(distinct_tuple(sa, sb))     # no ties between a and b
    return Case(fn, a, b, note=f"{sa} with {sb}")


@st.composite
def masked_fill_case(draw):
    s = draw(SMALL)
    mask = ng.tensor(draw(bool_arrays(draw(broadcastable_shapes(s)))))
    x = draw(float64_arrays(s))
    if draw(st.booleans()):
        return Case(lambda x: F.masked_fill(x, mask, -0.75), x, note=f"mask {mask.shape}")
    # a 0-d tensor value receives the sum of the gradient over the filled positions
    return Case(lambda x, v: x.masked_fill(mask, v), x, draw(float64_arrays(())),
                note=f"mask {mask.shape}, 0-d tensor value")


@st.composite
def lerp_case(draw):
    sa, sb = draw(broadcast_pairs())
    a, b = draw(float64_arrays(sa)), draw(float64_arrays(sb))
    if draw(st.booleans()):
        w = pick(draw, "w", [0.0, 0.3, 1.0, 1.5])
        return Case(lambda a, b: F.lerp(a, b, w), a, b, note=f"weight={w}")
    sw = draw(broadcastable_shapes(np.broadcast_shapes(sa, sb)))
    return Case(lambda a, b, w: F.lerp(a, b, w), a, b, draw(float64_arrays(sw)),
                note=f"tensor weight {sw}")


UNARY = [  # name, fn, input arrays, covers
    ("neg", lambda x: -x, plain, ("neg",)),
    ("neg_fn", F.neg, plain, ("neg",)),
    ("exp", F.exp, plain, ("exp",)),
    ("expm1", F.expm1, plain, ("expm1",)),
    ("log", F.log, positive_arrays, ("log",)),
    ("log1p", F.log1p, lambda s: float64_arrays(s, -0.6, 2.0), ("log1p",)),
    ("sqrt", F.sqrt, positive_arrays, ("sqrt",)),
    ("rsqrt", F.rsqrt, positive_arrays, ("rsqrt",)),
    ("sin", F.sin, lambda s: float64_arrays(s, -4.0, 4.0), ("sin",)),
    ("cos", F.cos, lambda s: float64_arrays(s, -4.0, 4.0), ("cos",)),
    ("tanh", F.tanh, lambda s: float64_arrays(s, -3.0, 3.0), ("tanh",)),
    ("sigmoid", F.sigmoid, lambda s: float64_arrays(s, -5.0, 5.0), ("sigmoid",)),
    ("erf", F.erf, plain, ("erf",)),
    ("normal_cdf", F.normal_cdf, plain, ("normal_cdf",)),
    ("abs", F.abs, lambda s: away0(s, 0.1), ("abs",)),
    ("abs_operator", abs, lambda s: away0(s, 0.1), ("abs",)),
    ("square", F.square, plain, ("square",)),
    ("reciprocal", F.reciprocal, lambda s: away0(s, 0.4), ("reciprocal",)),
    ("clone", F.clone, plain, ("clone",)),
]

ELEMENTWISE = [Op(name, unary(fn, arrays, MAYBE_EMPTY), covers)
               for name, fn, arrays, covers in UNARY] + [
    Op("add", binary(lambda a, b: a + b), ("add",)),
    Op("add_alpha", binary(lambda a, b: F.add(a, b, alpha=-2.5)), ("add",)),
    Op("sub", binary(lambda a, b: a - b), ("sub",)),
    Op("sub_alpha", binary(lambda a, b: F.sub(a, b, alpha=0.5)), ("sub",)),
    Op("mul", binary(lambda a, b: a * b), ("mul",)),
    Op("div", binary(lambda a, b: a / b, b=away0), ("div",)),
    Op("true_divide", binary(F.true_divide, b=away0), ("true_divide",)),
    Op("scalar_operands", scalar_operands(), ("add", "sub", "mul", "div")),
    Op("pow_tensor_tensor", binary(lambda a, b: a ** b, a=positive_arrays), ("pow",)),
    Op("pow_scalar_base", unary(lambda x: 2.5 ** x), ("pow",)),
    Op("pow_scalar_exponent", pow_scalar_exponent(), ("pow",)),
    Op("clamp_scalar_bounds", clamp_scalar(), ("clamp", "clip")),
    Op("clamp_tensor_bounds", clamp_tensor(), ("clamp",)),
    Op("where", where_case(), ("where",)),
    Op("maximum", max_min_elementwise(F.maximum), ("maximum",)),
    Op("minimum", max_min_elementwise(F.minimum), ("minimum",)),
    Op("max_of_two", max_min_elementwise(F.max), ("max",)),
    Op("min_of_two", max_min_elementwise(F.min), ("min",)),
    Op("masked_fill", masked_fill_case(), ("masked_fill",)),
    Op("lerp", lerp_case(), ("lerp",)),
]


# ================================================================ reductions
@st.composite
def var_std(draw, fn):
    """var / std / var_mean / std_mean with unbiased=, correction= or neither; n > correction,
    and n >= 2 with distinct values so std stays away from sqrt's kink at 0."""
    s = draw(NONEMPTY)
    dim = draw(dims_for(s))
    n = _count(s, dim)
    assume(n >= 2)
    kd = pick(draw, "keepdim", [False, True])
    form = pick(draw, "form", ["default", "unbiased=True", "unbiased=False", "correction"])
    kw = {}
    if form.startswith("unbiased"):
        kw["unbiased"] = form.endswith("True")
    elif form == "correction":
        kw["correction"] = draw(st.integers(0, min(2, n - 1)))
    return Case(lambda x: fn(x, dim, keepdim=kd, **kw), draw(distinct_arrays(s)),
                note=f"dim={dim}, keepdim={kd}, {kw}")


@st.composite
def max_min_reduce(draw, fn):
    """max(x) (all elements) or max(x, dim, keepdim) -> (values, indices); distinct values."""
    s = draw(SMALL)
    x = draw(distinct_arrays(s))
    form = pick(draw, "form", ["no dim", "dim", "dim .values"] if s else ["no dim"])
    if form == "no dim":
        return Case(lambda x: fn(x), x, note="no dim")
    d, kd = draw(dim_for(s)), pick(draw, "keepdim", [False, True])
    if form == "dim .values":
        return Case(lambda x: fn(x, d, kd).values, x, note=f"dim={d}, keepdim={kd}, .values")
    return Case(lambda x: fn(x, d, keepdim=kd), x, note=f"dim={d}, keepdim={kd}")


@st.composite
def norm_case(draw):
    p = pick(draw, "p", [2, "fro", 1, math.inf, 3, 0.5])
    s = draw(SMALL)
    if p == math.inf:   # distinct magnitudes: amax(|x|) sees no tie
        x = draw(distinct_arrays(s, min_value=0.2, signs=True))
    else:
        x = draw(away0(s, 0.2))
    dim = draw(dims_for(s))
    kd = pick(draw, "keepdim", [False, True])
    return Case(lambda x: F.norm(x, p, dim, kd), x, note=f"p={p}, dim={dim}, keepdim={kd}")


@st.composite
def cumsum_case(draw):
    s = draw(SMALL)
    d = draw(dims_for(s, allow_none=False, allow_tuple=False))
    return Case(lambda x: F.cumsum(x, d), draw(float64_arrays(s)), note=f"dim={d}")


@st.composite
def sort_case(draw):
    s = draw(NONEMPTY)
    d, desc = draw(dim_for(s)), pick(draw, "descending", [False, True])
    fn = pick(draw, "fn", ["F.sort", "Tensor.sort"])
    call = (lambda x: F.sort(x, d, desc)) if fn == "F.sort" else \
        (lambda x: x.sort(dim=d, descending=desc).values)
    return Case(call, draw(distinct_arrays(s)), note=f"{fn} dim={d}, descending={desc}")


@st.composite
def topk_case(draw):
    s = draw(NONEMPTY)
    d = draw(dim_for(s))
    k, largest = draw(st.integers(1, s[d])), pick(draw, "largest", [False, True])
    return Case(lambda x: F.topk(x, k, d, largest), draw(distinct_arrays(s)),
                note=f"k={k}, dim={d}, largest={largest}")


@st.composite
def sum_to_case(draw):
    s = draw(SMALL)
    target = draw(broadcastable_shapes(s))
    return Case(lambda x: F.sum_to(x, target), draw(float64_arrays(s)), note=f"to {target}")


REDUCE = [
    Op("sum", reduction(F.sum), ("sum",)),
    Op("sum_method", reduction(lambda x, d, kd: x.sum(d, keepdim=kd)), ("sum",)),
    Op("mean", reduction(F.mean), ("mean",)),
    Op("var", var_std(F.var), ("var",)),
    Op("std", var_std(F.std), ("std",)),
    Op("var_mean", var_std(F.var_mean), ("var_mean",)),
    Op("std_mean", var_std(F.std_mean), ("std_mean",)),
    Op("max", max_min_reduce(F.max), ("max",)),
    Op("min", max_min_reduce(F.min), ("min",)),
    Op("amax", reduction(F.amax, lambda s: distinct_arrays(s)), ("amax",)),
    Op("amin", reduction(F.amin, lambda s: distinct_arrays(s)), ("amin",)),
    Op("logsumexp", reduction(F.logsumexp), ("logsumexp",)),
    Op("prod", reduction(F.prod, lambda s: float64_arrays(s, -1.5, 1.5, (0.0,), 0.5)),
       ("prod",)),
    Op("norm", norm_case(), ("norm",)),
    Op("cumsum", cumsum_case(), ("cumsum",)),
    Op("sort", sort_case(), ("sort",)),
    Op("topk", topk_case(), ("topk",)),
    Op("sum_to", sum_to_case(), ("sum_to",)),
]


# ================================================================ shape ops
def _prime_factors(n):
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


@st.composite
def same_numel_shapes(draw, n, allow_minus_one=True):
    """A random factorisation of ``n`` into a shape (1s sprinkled in), maybe with one -1."""
    factors = draw(st.permutations(_prime_factors(n)))
    cuts = sorted(draw(st.lists(st.integers(0, len(factors)), max_size=3)))
    dims, prev = [], 0
    for c in cuts + [len(factors)]:
        dims.append(int(np.prod(factors[prev:c], dtype=np.int64)))
        prev = c
    dims = [d for d in dims if d != 1] if n > 1 else []
    for _ in range(draw(st.integers(0, 2))):
        dims.insert(draw(st.integers(0, len(dims))), 1)
    if allow_minus_one and dims and draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return tuple(dims)


@st.composite
def reshape_case(draw):
    s = draw(SMALL)
    target = draw(same_numel_shapes(numel(s)))
    form = pick(draw, "form", ["F.reshape", "F.view", "x.reshape(*t)", "x.view(t)",
                                 "view_as", "reshape_as"])
    if form in ("view_as", "reshape_as"):
        known = numel([d for d in target if d != -1])
        other = ng.zeros(tuple(numel(s) // known if d == -1 else d for d in target))
        fn = getattr(F, form)
        return Case(lambda x: fn(x, other), draw(float64_arrays(s)),
                    note=f"{form} {tuple(other.shape)}")
    calls = {"F.reshape": lambda x: F.reshape(x, target), "F.view": lambda x: F.view(x, *target),
             "x.reshape(*t)": lambda x: x.reshape(*target), "x.view(t)": lambda x: x.view(target)}
    return Case(calls[form], draw(float64_arrays(s)), note=f"{form} to {target}")


@st.composite
def flatten_case(draw):
    s = draw(SMALL)
    if not s:
        return Case(F.flatten, draw(float64_arrays(s)), note="0-d")
    a, b = sorted([draw(st.integers(0, len(s) - 1)), draw(st.integers(0, len(s) - 1))])
    start = a - len(s) if draw(st.booleans()) else a
    end = b - len(s) if draw(st.booleans()) else b
    return Case(lambda x: F.flatten(x, start, end), draw(float64_arrays(s)),
                note=f"start={start}, end={end}")


@st.composite
def unflatten_case(draw):
    s = draw(NONEMPTY)
    d = draw(dim_for(s))
    sizes = draw(same_numel_shapes(s[d]))
    assume(sizes)
    return Case(lambda x: F.unflatten(x, d, sizes), draw(float64_arrays(s)),
                note=f"dim={d}, sizes={sizes}")


@st.composite
def permute_case(draw):
    s = draw(SMALL)
    perm = draw(st.permutations(range(len(s))))
    perm = [p - len(s) if draw(st.booleans()) else p for p in perm]
    if draw(st.booleans()):
        return Case(lambda x: F.permute(x, *perm), draw(float64_arrays(s)), note=f"{perm}")
    return Case(lambda x: x.permute(tuple(perm)), draw(float64_arrays(s)), note=f"{perm}")


@st.composite
def transpose_case(draw):
    s = draw(SMALL)
    forms = ["x.T"] + (["transpose", "swapaxes"] if s else []) + (["t"] if len(s) <= 2 else []) \
        + (["x.mT"] if len(s) >= 2 else [])
    form = pick(draw, "form", forms)
    x = draw(float64_arrays(s))
    if form in ("transpose", "swapaxes"):
        a, b = draw(dim_for(s)), draw(dim_for(s))
        fn = getattr(F, form)
        return Case(lambda x: fn(x, a, b), x, note=f"{form}({a}, {b})")
    calls = {"x.T": lambda x: x.T, "t": F.t, "x.mT": lambda x: x.mT}
    return Case(calls[form], x, note=form)


@st.composite
def movedim_case(draw):
    s = draw(NONEMPTY)
    n = len(s)
    k = draw(st.integers(1, n))
    src = draw(st.lists(st.integers(-n, n - 1), min_size=k, max_size=k,
                        unique_by=lambda d: d % n))
    dst = draw(st.lists(st.integers(-n, n - 1), min_size=k, max_size=k,
                        unique_by=lambda d: d % n))
    if k == 1 and draw(st.booleans()):
        src, dst = src[0], dst[0]
    return Case(lambda x: F.movedim(x, src, dst), draw(float64_arrays(s)),
                note=f"{src} -> {dst}")


@st.composite
def squeeze_case(draw):
    s = draw(SMALL)
    dim = draw(dims_for(s))
    return Case(lambda x: F.squeeze(x, dim), draw(float64_arrays(s)), note=f"dim={dim}")


@st.composite
def unsqueeze_case(draw):
    s = draw(SMALL)
    d = draw(st.integers(-len(s) - 1, len(s)))
    return Case(lambda x: x.unsqueeze(d), draw(float64_arrays(s)), note=f"dim={d}")


@st.composite
def expand_case(draw):
    s = draw(SMALL)
    target = draw(expanded_shapes(s))
    x = draw(float64_arrays(s))
    form = pick(draw, "form", ["expand", "expand -1", "broadcast_to", "expand_as"])
    if form == "expand -1":     # -1 keeps a size (only for dims x has)
        lead = len(target) - len(s)
        sizes = tuple(-1 if i >= lead and draw(st.booleans()) else t
                      for i, t in enumerate(target))
        return Case(lambda x: x.expand(*sizes), x, note=f"expand{sizes}")
    if form == "expand_as":
        other = ng.zeros(target)
        return Case(lambda x: F.expand_as(x, other), x, note=f"expand_as {target}")
    fn = F.expand if form == "expand" else F.broadcast_to
    return Case(lambda x: fn(x, target), x, note=f"{form} {target}")


@st.composite
def broadcast_tensors_case(draw):
    sa, sb = draw(broadcast_pairs())
    return Case(lambda a, b: F.broadcast_tensors(a, b), draw(float64_arrays(sa)),
                draw(float64_arrays(sb)), note=f"{sa} with {sb}")


@st.composite
def repeat_case(draw):
    s = draw(SMALL)
    reps = tuple(draw(st.lists(st.integers(1, 3), min_size=len(s), max_size=len(s) + 2)))
    if draw(st.booleans()):
        return Case(lambda x: x.repeat(*reps), draw(float64_arrays(s)), note=f"repeat{reps}")
    dims = reps[draw(st.integers(0, len(reps))):]     # tile pads missing dims with 1
    return Case(lambda x: F.tile(x, dims), draw(float64_arrays(s)), note=f"tile{dims}")


@st.composite
def cat_case(draw):
    s = draw(NONEMPTY)
    d = draw(dim_for(s))
    k = draw(st.integers(1, 3))
    shp = [s[:d % len(s)] + (draw(sides(1, 3)),) + s[d % len(s) + 1:] for _ in range(k)]
    fn = pick(draw, "fn", [F.cat, F.concat, F.concatenate])
    arrays = [draw(float64_arrays(t)) for t in shp]
    return Case(lambda *xs: fn(list(xs), d), *arrays, note=f"{fn.__name__} {shp} dim={d}")


@st.composite
def stack_case(draw):
    s = draw(SMALL)
    d = draw(st.integers(-len(s) - 1, len(s)))
    k = draw(st.integers(1, 3))
    arrays = [draw(float64_arrays(s)) for _ in range(k)]
    return Case(lambda *xs: F.stack(xs, d), *arrays, note=f"{k} x {s}, dim={d}")


@st.composite
def split_case(draw):
    s = draw(NONEMPTY)
    d = draw(dim_for(s))
    n = s[d]
    form = pick(draw, "form", ["size", "sections", "chunk", "unbind", "narrow"])
    x = draw(float64_arrays(s))
    if form == "size":
        size = draw(st.integers(1, n + 1))
        return Case(lambda x: F.split(x, size, d), x, note=f"split({size}, dim={d})")
    if form == "sections":
        cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
        secs = [b - a for a, b in zip([0] + cuts, cuts + [n])]
        return Case(lambda x: x.split(secs, d), x, note=f"split({secs}, dim={d})")
    if form == "chunk":
        c = draw(st.integers(1, 4))
        return Case(lambda x: F.chunk(x, c, d), x, note=f"chunk({c}, dim={d})")
    if form == "unbind":
        return Case(lambda x: F.unbind(x, d), x, note=f"unbind(dim={d})")
    start = draw(st.integers(-n, n - 1))
    length = draw(st.integers(0, n - start % n))
    return Case(lambda x: F.narrow(x, d, start, length), x,
                note=f"narrow(dim={d}, start={start}, length={length})")


@st.composite
def flip_case(draw):
    s = draw(NONEMPTY)
    dims = draw(dims_for(s, allow_none=False))
    return Case(lambda x: F.flip(x, dims), draw(float64_arrays(s)), note=f"dims={dims}")


SHAPE = [
    Op("reshape", reshape_case(), ("reshape", "view", "view_as", "reshape_as")),
    Op("flatten", flatten_case(), ("flatten",)),
    Op("unflatten", unflatten_case(), ("unflatten",)),
    Op("permute", permute_case(), ("permute",)),
    Op("transpose", transpose_case(), ("transpose", "swapaxes", "t")),
    Op("movedim", movedim_case(), ("movedim",)),
    Op("squeeze", squeeze_case(), ("squeeze",)),
    Op("unsqueeze", unsqueeze_case(), ("unsqueeze",)),
    Op("expand", expand_case(), ("expand", "broadcast_to", "expand_as")),
    Op("broadcast_tensors", broadcast_tensors_case(), ("broadcast_tensors",)),
    Op("repeat", repeat_case(), ("repeat", "tile")),
    Op("cat", cat_case(), ("cat", "concat", "concatenate")),
    Op("stack", stack_case(), ("stack",)),
    Op("split", split_case(), ("split", "chunk", "unbind", "narrow")),
    Op("flip", flip_case(), ("flip",)),
]


# ================================================================ indexing
@st.composite
def index_case(draw):
    s = draw(shapes(0, 3, 1, 4))
    idx = draw(index_for(s))
    form = pick(draw, "form", ["numpy", "list", "tensor"])
    wrapped = wrap_index(idx, form)
    return Case(lambda x: x[wrapped], draw(float64_arrays(s)), note=f"x[{idx!r}] ({form})")


@st.composite
def gather_case(draw):
    s = draw(NONEMPTY)
    d = draw(dim_for(s))
    # off `dim` the index may be smaller than the input (PyTorch's rule)
    ishape = tuple(draw(st.integers(1, 3)) if k == d % len(s) else draw(st.integers(1, n))
                   for k, n in enumerate(s))
    index = ng.tensor(draw(int_arrays(ishape, 0, s[d] - 1)))
    return Case(lambda x: F.gather(x, d, index), draw(float64_arrays(s)),
                note=f"dim={d}, index={index.numpy().tolist()}")


@st.composite
def scatter_add_case(draw):
    s = draw(NONEMPTY)
    d = draw(dim_for(s))
    ishape = tuple(draw(st.integers(1, 3)) if k == d % len(s) else draw(st.integers(1, n))
                   for k, n in enumerate(s))
    sshape = tuple(i + draw(st.integers(0, 1)) for i in ishape)    # src may be larger
    index = ng.tensor(draw(int_arrays(ishape, 0, s[d] - 1)))       # repeats accumulate
    return Case(lambda x, src: F.scatter_add(x, d, index, src), draw(float64_arrays(s)),
                draw(float64_arrays(sshape)), note=f"dim={d}, index={index.numpy().tolist()}")


@st.composite
def index_select_case(draw):
    s = draw(NONEMPTY)
    d = draw(dim_for(s))
    index = ng.tensor(draw(int_arrays((draw(st.integers(1, 4)),), 0, s[d] - 1)))
    return Case(lambda x: F.index_select(x, d, index), draw(float64_arrays(s)),
                note=f"dim={d}, index={index.numpy().tolist()}")


@st.composite
def embedding_case(draw):
    v, dim = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    ids = ng.tensor(draw(int_arrays(draw(shapes(0, 2, 1, 3)), 0, v - 1)))
    pad = draw(st.one_of(st.none(), st.integers(0, v - 1)))
    if pad is None:
        return Case(lambda w: F.embedding(ids, w), draw(float64_arrays((v, dim))),
                    note=f"ids={ids.numpy().tolist()}")
    # the padding row gets no gradient by design though it is read, so finite differences only
    # hold once its outputs are masked out (test_repeated_integer_indices_accumulate pins it)
    keep = ng.tensor((ids.numpy() != pad)[..., None].astype(np.float64))
    return Case(lambda w: F.embedding(ids, w, padding_idx=pad) * keep,
                draw(float64_arrays((v, dim))),
                note=f"ids={ids.numpy().tolist()}, padding_idx={pad}")


@st.composite
def take_case(draw):
    s = draw(NONEMPTY)
    index = ng.tensor(draw(int_arrays(draw(shapes(0, 2, 1, 3)), 0, numel(s) - 1)))
    return Case(lambda x: F.take(x, index), draw(float64_arrays(s)),
                note=f"index={index.numpy().tolist()}")


INDEXING = [
    Op("index", index_case(), ("index",), examples=3),
    Op("gather", gather_case(), ("gather",)),
    Op("scatter_add", scatter_add_case(), ("scatter_add",)),
    Op("index_select", index_select_case(), ("index_select",)),
    Op("embedding", embedding_case(), ("embedding",)),
    Op("take", take_case(), ("take",)),
]


# ================================================================ matrix products
@st.composite
def matmul_case(draw, max_side=3):
    n, k, m = (draw(sides(1, max_side)) for _ in range(3))
    kind = pick(draw, "kind", ["vec@vec", "vec@mat", "mat@vec", "mat@mat", "batched"])
    ba, bb = draw(broadcast_pairs(0, 2, max_side))
    sa = {"vec@vec": (k,), "vec@mat": (k,), "mat@vec": ba + (n, k), "mat@mat": (n, k),
          "batched": ba + (n, k)}[kind]
    sb = {"vec@vec": (k,), "vec@mat": bb + (k, m), "mat@vec": (k,), "mat@mat": (k, m),
          "batched": bb + (k, m)}[kind]
    fn = pick(draw, "fn", ["@", "matmul"])
    call = (lambda a, b: a @ b) if fn == "@" else F.matmul
    return Case(call, draw(float64_arrays(sa)), draw(float64_arrays(sb)),
                note=f"{kind}: {sa} {fn} {sb}")


@st.composite
def products_case(draw):
    n, k, m, b = (draw(sides(1, 3)) for _ in range(4))
    kind = pick(draw, "kind", ["mm", "bmm", "outer", "dot"])
    sa, sb = {"mm": ((n, k), (k, m)), "bmm": ((b, n, k), (b, k, m)), "outer": ((n,), (m,)),
              "dot": ((k,), (k,))}[kind]
    return Case(getattr(F, kind), draw(float64_arrays(sa)), draw(float64_arrays(sb)),
                note=f"{kind} {sa} {sb}")


@st.composite
def linear_case(draw, max_side=3):
    lead = draw(shapes(0, 2, 1, max_side))
    fin, fout = draw(sides(1, max_side)), draw(sides(1, max_side))
    x = draw(float64_arrays(lead + (fin,)))
    w = draw(float64_arrays((fout, fin)))
    if draw(st.booleans()):
        return Case(lambda x, w: F.linear(x, w), x, w, note=f"x {x.shape}, W {w.shape}")
    return Case(F.linear, x, w, draw(float64_arrays((fout,))),
                note=f"x {x.shape}, W {w.shape}, bias")


LINALG = [
    Op("matmul", matmul_case(), ("matmul",), examples=2),
    Op("matmul_big", matmul_case(max_side=8), ("matmul",), mode="directional"),
    Op("mm_bmm_outer_dot", products_case(), ("mm", "bmm", "outer", "dot")),
    Op("linear", linear_case(), ("linear",)),
    Op("linear_big", linear_case(max_side=8), ("linear",), mode="directional"),
]


# ================================================================ activations
def act(fn, lo=-3.0, hi=3.0, kinks=(), margin=0.1, shape=SMALL, note=""):
    return unary(fn, lambda s: float64_arrays(s, lo, hi, kinks, margin), shape, note)


@st.composite
def leaky_relu_case(draw):
    slope = pick(draw, "slope", [0.01, 0.2, -0.5, 1.5])
    return Case(lambda x: F.leaky_relu(x, slope), draw(away0(draw(SMALL), 0.1)),
                note=f"negative_slope={slope}")


@st.composite
def hardtanh_case(draw):
    lo, hi = pick(draw, "lo/hi", [(-1.0, 1.0), (-0.5, 2.0), (0.0, 0.5)])
    x = draw(float64_arrays(draw(SMALL), -3, 3, (lo, hi)))
    return Case(lambda x: F.hardtanh(x, lo, hi), x, note=f"({lo}, {hi})")


@st.composite
def elu_case(draw):
    alpha = pick(draw, "alpha", [1.0, 0.5, 2.0])
    return Case(lambda x: F.elu(x, alpha), draw(away0(draw(SMALL), 0.1)), note=f"alpha={alpha}")


@st.composite
def gelu_case(draw):
    approx = pick(draw, "approx", ["none", "tanh"])
    return Case(lambda x: F.gelu(x, approximate=approx), draw(float64_arrays(draw(SMALL), -3, 3)),
                note=f"approximate={approx}")


@st.composite
def softplus_case(draw):
    beta, threshold = pick(draw, "beta", [1.0, 2.0, 0.5]), pick(draw, "threshold", [20.0, 1.0])
    # above beta*x = threshold softplus returns x: draw both sides of that switch, away from it
    c = threshold / beta
    x = draw(float64_arrays(draw(SMALL), c - 2.5, c + 2.5, (c,)))
    return Case(lambda x: F.softplus(x, beta, threshold), x,
                note=f"beta={beta}, threshold={threshold}")


@st.composite
def softmax_case(draw, fn):
    s = draw(SMALL)
    dim = draw(st.one_of(st.none(), dims_for(s, allow_none=False, allow_tuple=False)))
    return Case(lambda x: fn(x, dim), draw(float64_arrays(s, -3, 3)), note=f"dim={dim}")


@st.composite
def glu_case(draw):
    s = list(draw(NONEMPTY))
    d = draw(dim_for(s))
    s[d] *= 2           # glu halves dim d
    return Case(lambda x: F.glu(x, d), draw(float64_arrays(tuple(s))), note=f"dim={d}")


@st.composite
def dropout_case(draw):
    p, training = pick(draw, "p", [0.0, 0.3, 0.5, 1.0]), pick(draw, "training", [False, True])

    def fn(x):
        ng.manual_seed(0)       # the same mask on every call, so finite differences are valid
        return F.dropout(x, p, training)
    return Case(fn, draw(float64_arrays(draw(SMALL))), note=f"p={p}, training={training}")


ACTIVATION = [
    Op("relu", act(F.relu, kinks=(0.0,)), ("relu",)),
    Op("relu_method", act(lambda x: x.relu(), kinks=(0.0,)), ("relu",)),
    Op("relu6", act(F.relu6, -2, 8, (0.0, 6.0)), ("relu6",)),
    Op("leaky_relu", leaky_relu_case(), ("leaky_relu",)),
    Op("hardtanh", hardtanh_case(), ("hardtanh",)),
    Op("elu", elu_case(), ("elu",)),
    Op("selu", act(F.selu, kinks=(0.0,)), ("selu",)),
    Op("gelu", gelu_case(), ("gelu",)),
    Op("silu", act(F.silu), ("silu",)),
    Op("mish", act(F.mish), ("mish",)),
    Op("softplus", softplus_case(), ("softplus",)),
    Op("logsigmoid", act(F.logsigmoid), ("logsigmoid",)),
    Op("softmax", softmax_case(F.softmax), ("softmax",)),
    Op("log_softmax", softmax_case(F.log_softmax), ("log_softmax",)),
    Op("glu", glu_case(), ("glu",)),
    Op("dropout", dropout_case(), ("dropout",)),
]


# ================================================================ losses
@st.composite
def pointwise_loss(draw, name):
    """mse / l1 / huber / smooth_l1: target t and input t + d, d away from the loss's kinks."""
    s = draw(SMALL)
    red = pick(draw, "reduction", REDUCTION_NAMES)
    if name == "mse_loss":
        return Case(lambda x, y: F.mse_loss(x, y, reduction=red), draw(float64_arrays(s)),
                    draw(float64_arrays(s)), note=f"reduction={red}")
    param = pick(draw, "param", [1.0, 0.5, 2.0] + ([0.0] if name == "smooth_l1_loss" else []))
    kinks = {"l1_loss": (0.0,), "huber_loss": (-param, param),
             "smooth_l1_loss": (-param, 0.0, param)}[name]
    t = draw(float64_arrays(s))
    d = draw(float64_arrays(s, -3.0, 3.0, kinks))
    calls = {"l1_loss": lambda x, y: F.l1_loss(x, y, reduction=red),
             "huber_loss": lambda x, y: F.huber_loss(x, y, red, delta=param),
             "smooth_l1_loss": lambda x, y: F.smooth_l1_loss(x, y, red, beta=param)}
    return Case(calls[name], t + d, t, note=f"reduction={red}, delta/beta={param}")


@st.composite
def bce_case(draw):
    s = draw(SMALL)
    red = pick(draw, "reduction", REDUCTION_NAMES)
    p = draw(probability_arrays(s))
    w = ng.tensor(draw(positive_arrays(draw(broadcastable_shapes(s))))) \
        if draw(st.booleans()) else None
    if draw(st.booleans()):     # hard 0/1 targets, constant
        y = ng.tensor(draw(bool_arrays(s)).astype(np.float64))
        return Case(lambda p: F.binary_cross_entropy(p, y, w, red), p,
                    note=f"hard targets, weight={w is not None}, reduction={red}")
    return Case(lambda p, y: F.binary_cross_entropy(p, y, w, red), p,
                draw(probability_arrays(s)),
                note=f"soft targets, weight={w is not None}, reduction={red}")


@st.composite
def bce_logits_case(draw):
    s = draw(NONEMPTY)
    red = pick(draw, "reduction", REDUCTION_NAMES)
    w = ng.tensor(draw(positive_arrays(draw(broadcastable_shapes(s))))) \
        if draw(st.booleans()) else None
    pw = ng.tensor(draw(positive_arrays((s[-1],)))) if draw(st.booleans()) else None
    return Case(lambda x, y: F.binary_cross_entropy_with_logits(x, y, w, red, pos_weight=pw),
                draw(float64_arrays(s, -4, 4)), draw(probability_arrays(s)),
                note=f"weight={w is not None}, pos_weight={pw is not None}, reduction={red}")


@st.composite
def class_problem(draw):
    """Logits shape and integer targets for nll / cross entropy: unbatched (C,), (N, C) or
    k-dim (N, C, d1, ...); some targets may be ``ignore_index`` but never all of them."""
    c = draw(st.integers(2, 4))
    layout = pick(draw, "layout", ["unbatched", "batched", "k-dim"])
    n = draw(st.integers(1, 3))
    extra = draw(shapes(1, 2, 1, 3)) if layout == "k-dim" else ()
    xshape = (c,) if layout == "unbatched" else (n, c) + extra
    tshape = () if layout == "unbatched" else (n,) + extra
    target = draw(int_arrays(tshape, 0, c - 1))
    ignore = pick(draw, "ignore", [-100, 1])
    if draw(st.booleans()):     # replace some targets by ignore_index, keeping the first
        drop = draw(bool_arrays(tshape))
        drop.reshape(-1)[0] = False
        target = np.where(drop, ignore, target)
    if ignore >= 0:             # the first target must not be an ignored class
        first = target.reshape(-1)[0]
        if first == ignore:
            target.reshape(-1)[0] = 0
    weight = ng.tensor(draw(positive_arrays((c,), 0.5, 2.0))) if draw(st.booleans()) else None
    return xshape, ng.tensor(np.asarray(target, dtype=np.int64)), ignore, weight


@st.composite
def nll_case(draw):
    xshape, target, ignore, weight = draw(class_problem())
    red = pick(draw, "reduction", REDUCTION_NAMES)
    return Case(lambda lp: F.nll_loss(lp, target, weight, ignore, red),
                draw(float64_arrays(xshape, -3, 0)),
                note=f"target={target.numpy().tolist()}, ignore_index={ignore}, "
                     f"weight={weight is not None}, reduction={red}")


@st.composite
def cross_entropy_case(draw):
    xshape, target, ignore, weight = draw(class_problem())
    red = pick(draw, "reduction", REDUCTION_NAMES)
    eps = pick(draw, "eps", [0.0, 0.1, 0.25])
    x = draw(float64_arrays(xshape, -3, 3))
    if draw(st.booleans()):     # class-probability targets, differentiable too
        return Case(lambda x, q: F.cross_entropy(x, q, weight, reduction=red,
                                                 label_smoothing=eps),
                    x, draw(probability_arrays(xshape)),
                    note=f"probability targets, weight={weight is not None}, "
                         f"label_smoothing={eps}, reduction={red}")
    return Case(lambda x: F.cross_entropy(x, target, weight, ignore, red, eps), x,
                note=f"target={target.numpy().tolist()}, ignore_index={ignore}, "
                     f"weight={weight is not None}, label_smoothing={eps}, reduction={red}")


@st.composite
def kl_div_case(draw):
    s = draw(NONEMPTY)
    red = pick(draw, "red", ["mean", "sum", "none", "batchmean"])
    x = draw(float64_arrays(s, -3, 0))
    form = pick(draw, "form", ["log_target", "positive target", "target with zeros"])
    if form == "log_target":
        return Case(lambda x, y: F.kl_div(x, y, red, log_target=True), x,
                    draw(float64_arrays(s, -3, 0)), note=f"log_target, reduction={red}")
    if form == "positive target":
        return Case(lambda x, y: F.kl_div(x, y, red), x, draw(probability_arrays(s)),
                    note=f"reduction={red}")
    # zeros contribute 0 (0 log 0 = 0); the target is a constant here (log y is singular at 0)
    y = draw(probability_arrays(s)) * draw(bool_arrays(s))
    yt = ng.tensor(y)
    return Case(lambda x: F.kl_div(x, yt, red), x, note=f"target={y.tolist()}, reduction={red}")


@st.composite
def gaussian_nll_case(draw):
    s = draw(NONEMPTY)
    red, full = pick(draw, "reduction", REDUCTION_NAMES), pick(draw, "full", [False, True])
    vshape = s if draw(st.booleans()) else s[:-1] + (1,)     # one variance per row
    return Case(lambda x, y, v: F.gaussian_nll_loss(x, y, v, full=full, reduction=red),
                draw(float64_arrays(s)), draw(float64_arrays(s)),
                draw(positive_arrays(vshape, 0.1, 2.0)),
                note=f"var shape {vshape}, full={full}, reduction={red}")


LOSS = [
    Op("mse_loss", pointwise_loss("mse_loss"), ("mse_loss",)),
    Op("l1_loss", pointwise_loss("l1_loss"), ("l1_loss",)),
    Op("huber_loss", pointwise_loss("huber_loss"), ("huber_loss",)),
    Op("smooth_l1_loss", pointwise_loss("smooth_l1_loss"), ("smooth_l1_loss",)),
    Op("binary_cross_entropy", bce_case(), ("binary_cross_entropy",)),
    Op("binary_cross_entropy_with_logits", bce_logits_case(),
       ("binary_cross_entropy_with_logits",)),
    Op("nll_loss", nll_case(), ("nll_loss",), examples=2),
    Op("cross_entropy", cross_entropy_case(), ("cross_entropy",), examples=2),
    Op("kl_div", kl_div_case(), ("kl_div",)),
    Op("gaussian_nll_loss", gaussian_nll_case(), ("gaussian_nll_loss",)),
]

OPS = ELEMENTWISE + REDUCE + SHAPE + INDEXING + LINALG + ACTIVATION + LOSS


# ================================================================ the two table-driven tests
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_grad(op):
    """Analytic gradient = central differences (every element, or random directions)."""
    def check(case):
        for o in _float_outputs(case.fn(*case.leaves())):
            assert np.all(np.isfinite(o.detach().numpy())), f"{op.name}: non-finite output"
        gradcheck(case.fn, case.leaves(), mode=op.mode, atol=op.atol, rtol=op.rtol)
    _run(op, check)


@pytest.mark.parametrize("op", OPS, ids=repr)
def test_gradgrad(op):
    """The backward pass is itself differentiable (create_graph=True), in x and in the
    cotangent."""
    def check(case):
        gradgradcheck(case.fn, case.leaves(), mode=op.mode, atol=op.atol, rtol=op.rtol)
    _run(op, check)


# Public names that have no gradient to check (comparisons, index results, and floor_divide,
# whose backward raises as PyTorch's does: tests/test_nonsmooth.py pins that), and the ones
# whose gradient is checked elsewhere.
NOT_DIFFERENTIABLE = {"all", "any", "argmax", "argmin", "argsort", "eq", "ne", "lt", "le", "gt",
                      "ge", "isfinite", "isnan", "logical_and", "logical_not", "logical_or",
                      "floor_divide", "one_hot", "pixelcnn_mask"}
CHECKED_ELSEWHERE = {"cast": "test_cast_gradient_keeps_each_dtype (float32 defeats finite "
                             "differences)",
                     "to_device": "tests/cuda: device moves"}


def _grad_checked_in_other_modules():
    """Ops whose gradcheck / gradgradcheck lives in a test module of their own family
    (``tests/test_conv.py`` ...): each such module lists them in a ``GRAD_CHECKED`` set."""
    import importlib
    import pkgutil

    import tests
    names = set()
    for info in pkgutil.iter_modules(tests.__path__):
        if info.name.startswith("test_") and info.name != "test_ops_grad":
            module = importlib.import_module(f"tests.{info.name}")
            names |= set(getattr(module, "GRAD_CHECKED", ()))
    return names


def test_every_public_op_is_covered():
    covered = {name for op in OPS for name in op.covers} | _grad_checked_in_other_modules()
    public = set(F.__all__)
    assert not covered - public, f"the table names ops that do not exist: {covered - public}"
    missing = public - covered - NOT_DIFFERENTIABLE - set(CHECKED_ELSEWHERE)
    assert not missing, f"differentiable ops with no entry in OPS: {sorted(missing)}"


def test_cast_gradient_keeps_each_dtype():
    x = ng.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    y = x.float()
    assert y.dtype == ng.float32
    (g,) = ng.autograd.grad((y * y).sum(), x, create_graph=True)
    assert g.dtype == ng.float64
    assert_close(g, [2.0, -4.0, 6.0], rtol=1e-6)
    (gg,) = ng.autograd.grad(g.sum(), x)
    assert_close(gg, [2.0, 2.0, 2.0], rtol=1e-6)


# ================================================================ conventions at kinks and ties
def _grad(fn, *arrays):
    xs = [ng.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]
    gs = ng.autograd.grad(fn(*xs).sum(), xs, allow_unused=True)
    return [g.numpy() if g is not None else None for g in gs]


KINKY = hnp.arrays(np.float64, shapes(1, 2, 1, 4), elements=st.sampled_from([-1.5, -1.0, -0.5,
                                                                             0.0, 0.5, 1.0, 6.0]))


@given(x=KINKY)
@example(x=np.zeros(3))
@example(x=np.array([-0.0, 0.0, 6.0]))
def test_relu_kink_convention(x):
    """relu'(0) = 0; leaky_relu'(0) = negative_slope; relu6'(0) = relu6'(6) = 0 (PyTorch's)."""
    assert_close(_grad(F.relu, x)[0], (x > 0).astype(float))
    assert_close(_grad(lambda t: F.leaky_relu(t, 0.2), x)[0], np.where(x > 0, 1.0, 0.2))
    assert_close(_grad(F.relu6, x)[0], ((x > 0) & (x < 6)).astype(float))


@given(x=KINKY)
@example(x=np.array([0.0, -0.0]))
def test_abs_kink_convention(x):
    """abs'(0) = 0 (sign(0))."""
    assert_close(_grad(F.abs, x)[0], np.sign(x))


@given(x=KINKY)
@example(x=np.array([-1.0, 1.0, 0.0, -1.5, 6.0]))
def test_clamp_passes_gradient_at_bounds_hardtanh_does_not(x):
    """clamp: 1 on [lo, hi] (bounds included); hardtanh: 1 on the open interval (PyTorch)."""
    assert_close(_grad(lambda t: F.clamp(t, -1.0, 1.0), x)[0],
                 ((x >= -1) & (x <= 1)).astype(float))
    assert_close(_grad(lambda t: F.clamp(t, min=-1.0), x)[0], (x >= -1).astype(float))
    assert_close(_grad(F.hardtanh, x)[0], ((x > -1) & (x < 1)).astype(float))


@given(x=KINKY)
@example(x=np.array([-1.0, 1.0, 0.5]))
def test_clamp_tensor_bounds_at_ties(x):
    """Tensor bounds: x keeps the whole gradient at a tie; a bound gets it only where it is
    strictly the output (as PyTorch)."""
    lo, hi = np.full_like(x, -1.0), np.full_like(x, 1.0)
    gx, glo, ghi = _grad(lambda t, a, b: F.clamp(t, a, b), x, lo, hi)
    assert_close(gx, ((x >= -1) & (x <= 1)).astype(float))
    assert_close(glo, (x < -1).astype(float))
    assert_close(ghi, (x > 1).astype(float))


@given(a=KINKY)
def test_maximum_minimum_split_ties_evenly(a):
    b = np.where(np.arange(a.size).reshape(a.shape) % 2 == 0, a, -a)   # ties at even positions
    for fn, chosen in ((F.maximum, a > b), (F.minimum, a < b)):
        ga, gb = _grad(fn, a, b)
        expect = np.where(a == b, 0.5, chosen.astype(float))
        assert_close(ga, expect)
        assert_close(gb, 1.0 - expect)


@given(x=KINKY, dim=st.sampled_from([None, 0, -1]))
@example(x=np.ones((2, 3)), dim=None)
def test_amax_amin_spread_over_ties_evenly(x, dim):
    for fn, red in ((F.amax, np.max), (F.amin, np.min)):
        g = _grad(lambda t: fn(t, dim, keepdim=True), x)[0]
        hit = x == red(x, axis=dim, keepdims=True)
        assert_close(g, hit / hit.sum(axis=dim, keepdims=True))
        if dim is None:         # max() without dim is amax over everything, ties included
            g_all = _grad(lambda t: F.max(t) if fn is F.amax else F.min(t), x)[0]
            assert_close(g_all, g)


@given(x=KINKY)
@example(x=np.ones((2, 3)))
def test_max_along_dim_sends_gradient_to_returned_index(x):
    """max(x, dim) picks one element per slice (the index it returns), ties or not."""
    xs = ng.tensor(x, requires_grad=True)
    values, idx = F.max(xs, -1)
    (g,) = ng.autograd.grad(values.sum(), xs)
    expect = np.zeros_like(x)
    np.put_along_axis(expect, idx.numpy()[..., None], 1.0, axis=-1)
    assert_close(g, expect)
    assert_close(idx, np.argmax(x, axis=-1))


def test_repeated_integer_indices_accumulate():
    x = ng.tensor(np.arange(4.0), requires_grad=True)
    for idx in ([0, 0, 3, 0], np.array([[1, 1], [1, 2]]), ng.tensor([2, 2, 2])):
        (g,) = ng.autograd.grad(x[idx].sum(), x)
        expect = np.bincount(np.asarray(idx.numpy() if isinstance(idx, ng.Tensor) else idx)
                             .ravel(), minlength=4)
        assert_close(g, expect)
    (g,) = ng.autograd.grad(F.gather(x, 0, ng.tensor([3, 3, 1])).sum(), x)
    assert_close(g, [0.0, 1.0, 0.0, 2.0])
    w = ng.tensor(np.ones((3, 2)), requires_grad=True)
    (g,) = ng.autograd.grad(F.embedding(ng.tensor([[0, 2], [2, 2]]), w, padding_idx=0).sum(), w)
    assert_close(g, [[0.0, 0.0], [0.0, 0.0], [3.0, 3.0]])


# ================================================================ forward semantics
@given(s=NONEMPTY.filter(lambda s: numel(s) >= 3), data=st.data())
def test_var_std_correction_matches_numpy(s, data):
    x = data.draw(float64_arrays(s))
    dim = data.draw(dims_for(s))
    axis = dim if dim is None or isinstance(dim, tuple) else (dim,)
    n = _count(s, dim)
    c = data.draw(st.integers(0, n - 1))
    xt = ng.tensor(x)
    assert_close(F.var(xt, dim, correction=c), np.var(x, axis=axis, ddof=c), atol=1e-12)
    assert_close(F.std(xt, dim, correction=c, keepdim=True),
                 np.std(x, axis=axis, ddof=c, keepdims=True), atol=1e-12)
    if n >= 2:      # unbiased by default, like PyTorch
        assert_close(F.var(xt, dim), np.var(x, axis=axis, ddof=1), atol=1e-12)
    assert_close(F.var(xt, dim, unbiased=False), np.var(x, axis=axis), atol=1e-12)


@given(s=SMALL, data=st.data())
def test_softmax_dims_match_numpy(s, data):
    from scipy.special import log_softmax as np_log_softmax, softmax as np_softmax
    x = data.draw(float64_arrays(s, -5, 5))
    dim = data.draw(st.one_of(st.none(), dims_for(s, allow_none=False, allow_tuple=False)))
    axis = (0 if len(s) in (0, 1, 3) else 1) if dim is None else dim    # PyTorch's legacy rule
    if not s:
        assert_close(F.softmax(ng.tensor(x), dim), 1.0)
        return
    assert_close(F.softmax(ng.tensor(x), dim), np_softmax(x, axis=axis), atol=1e-12)
    assert_close(F.log_softmax(ng.tensor(x), dim), np_log_softmax(x, axis=axis), atol=1e-12)


def _np_nll(logp, target, weight, ignore, reduction):
    """Reference nll_loss in NumPy: logp (N, C, ...), target (N, ...)."""
    c = logp.shape[1]
    w = np.ones(c) if weight is None else weight
    valid = target != ignore
    safe = np.where(valid, target, 0)
    picked = np.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
    wt = w[safe] * valid
    loss = -picked * wt
    if reduction == "mean":
        return loss.sum() / wt.sum()
    return loss.sum() if reduction == "sum" else loss


@given(problem=class_problem(), reduction=REDUCTIONS, data=st.data())
def test_nll_loss_weights_and_ignore_index_match_numpy(problem, reduction, data):
    """'mean' divides by the summed weights of the targets that are not ignored."""
    xshape, target, ignore, weight = problem
    logp = data.draw(float64_arrays(xshape, -3, 0))
    got = F.nll_loss(ng.tensor(logp), target, weight, ignore, reduction)
    w = None if weight is None else weight.numpy()
    if len(xshape) == 1:
        expect = _np_nll(logp[None], target.numpy().reshape(1), w, ignore, reduction)
        expect = expect.reshape(()) if reduction == "none" else expect
    else:
        expect = _np_nll(logp, target.numpy(), w, ignore, reduction)
    assert_close(got, expect, atol=1e-12)


def _np_cross_entropy(x, target, weight, ignore, reduction, eps, probs):
    """Reference cross entropy in NumPy (PyTorch's definition) for x of shape (N, C, ...)."""
    from scipy.special import log_softmax as np_log_softmax
    c = x.shape[1]
    logp = np_log_softmax(x, axis=1)
    w = (np.ones(c) if weight is None else weight).reshape((1, c) + (1,) * (x.ndim - 2))
    if probs:
        loss = -(w * logp * (target * (1 - eps) + eps / c)).sum(1)
        return _np_reduce(loss, reduction, None)
    valid = target != ignore
    safe = np.where(valid, target, 0)
    w_y = np.take_along_axis(np.broadcast_to(w, x.shape), safe[:, None], 1)[:, 0] * valid
    nll = -np.take_along_axis(logp, safe[:, None], 1)[:, 0] * w_y
    smooth = -(w * logp).sum(1) * valid
    if reduction == "mean":
        return ((1 - eps) * nll.sum() + eps / c * smooth.sum()) / w_y.sum()
    return _np_reduce((1 - eps) * nll + eps / c * smooth, reduction, None)


@given(problem=class_problem(), data=st.data())
def test_cross_entropy_options_match_numpy(problem, data):
    """weight, ignore_index, label smoothing, k-dim / unbatched inputs and probability targets,
    every reduction: the 'mean' of class-index targets divides by the summed weights of the
    targets that are not ignored, in both the nll and the smoothing term."""
    xshape, target, ignore, weight = problem
    x = data.draw(float64_arrays(xshape, -3, 3))
    q = data.draw(probability_arrays(xshape))
    unbatched = len(xshape) == 1
    xb, tb, qb = (x[None], target.numpy().reshape(1), q[None]) if unbatched else \
        (x, target.numpy(), q)
    for w in (None, weight):
        wn = None if w is None else w.numpy()
        for reduction in ("mean", "sum", "none"):
            for eps in (0.0, 0.1, 0.25):
                for probs in (False, True):
                    got = F.cross_entropy(ng.tensor(x), ng.tensor(q) if probs else target, w,
                                          ignore, reduction, eps)
                    expect = _np_cross_entropy(xb, qb if probs else tb, wn, ignore, reduction,
                                               eps, probs)
                    if unbatched and reduction == "none":
                        expect = expect.reshape(())
                    assert_close(got, expect, atol=1e-12,
                                 msg=f"weight={w is not None}, {reduction}, eps={eps}, "
                                     f"probs={probs}")


@st.composite
def loss_inputs(draw):
    s = draw(NONEMPTY)
    return dict(x=draw(float64_arrays(s, -3, 3)), y=draw(float64_arrays(s, -3, 3)),
                p=draw(probability_arrays(s)), t=draw(probability_arrays(s)),
                w=draw(positive_arrays(draw(broadcastable_shapes(s)))),
                pw=draw(positive_arrays((s[-1],))), v=draw(positive_arrays(s, 0.1, 2.0)),
                param=draw(st.sampled_from([0.5, 1.0, 2.0])))


def _np_logsigmoid(x):
    return -np.logaddexp(0.0, -x)


# name: (nanogen call (inputs as tensors, reduction), NumPy per-element loss, PyTorch call)
LOSS_REFERENCES = {
    "mse_loss": (lambda a, r: F.mse_loss(a["x"], a["y"], reduction=r),
                 lambda a: (a["x"] - a["y"]) ** 2,
                 lambda tf, a, r: tf.mse_loss(a["x"], a["y"], reduction=r)),
    "l1_loss": (lambda a, r: F.l1_loss(a["x"], a["y"], reduction=r),
                lambda a: np.abs(a["x"] - a["y"]),
                lambda tf, a, r: tf.l1_loss(a["x"], a["y"], reduction=r)),
    "huber_loss": (lambda a, r: F.huber_loss(a["x"], a["y"], r, delta=a["param"]),
                   lambda a: np.where(np.abs(a["x"] - a["y"]) < a["param"],
                                      0.5 * (a["x"] - a["y"]) ** 2,
                                      a["param"] * (np.abs(a["x"] - a["y"]) - 0.5 * a["param"])),
                   lambda tf, a, r: tf.huber_loss(a["x"], a["y"], reduction=r,
                                                  delta=a["param"])),
    "smooth_l1_loss": (lambda a, r: F.smooth_l1_loss(a["x"], a["y"], r, beta=a["param"]),
                       lambda a: np.where(np.abs(a["x"] - a["y"]) < a["param"],
                                          0.5 * (a["x"] - a["y"]) ** 2 / a["param"],
                                          np.abs(a["x"] - a["y"]) - 0.5 * a["param"]),
                       lambda tf, a, r: tf.smooth_l1_loss(a["x"], a["y"], reduction=r,
                                                          beta=a["param"])),
    "binary_cross_entropy": (
        lambda a, r: F.binary_cross_entropy(a["p"], a["t"], a["w"], r),
        lambda a: -(a["t"] * np.log(a["p"]) + (1 - a["t"]) * np.log(1 - a["p"])) * a["w"],
        lambda tf, a, r: tf.binary_cross_entropy(a["p"], a["t"], a["w"], reduction=r)),
    "binary_cross_entropy_with_logits": (
        lambda a, r: F.binary_cross_entropy_with_logits(a["x"], a["t"], a["w"], r,
                                                        pos_weight=a["pw"]),
        lambda a: -(a["pw"] * a["t"] * _np_logsigmoid(a["x"])
                    + (1 - a["t"]) * _np_logsigmoid(-a["x"])) * a["w"],
        lambda tf, a, r: tf.binary_cross_entropy_with_logits(a["x"], a["t"], a["w"],
                                                             reduction=r, pos_weight=a["pw"])),
    "kl_div": (lambda a, r: F.kl_div(a["x"], a["t"], r),
               lambda a: a["t"] * (np.log(a["t"]) - a["x"]),
               lambda tf, a, r: tf.kl_div(a["x"], a["t"], reduction=r)),
    "kl_div_log_target": (lambda a, r: F.kl_div(a["x"], a["y"], r, log_target=True),
                          lambda a: np.exp(a["y"]) * (a["y"] - a["x"]),
                          lambda tf, a, r: tf.kl_div(a["x"], a["y"], reduction=r,
                                                     log_target=True)),
    "gaussian_nll_loss": (
        lambda a, r: F.gaussian_nll_loss(a["x"], a["y"], a["v"], full=True, reduction=r),
        lambda a: 0.5 * (np.log(a["v"]) + (a["x"] - a["y"]) ** 2 / a["v"] + np.log(2 * np.pi)),
        lambda tf, a, r: tf.gaussian_nll_loss(a["x"], a["y"], a["v"], full=True, reduction=r)),
}


def _np_reduce(loss, reduction, batch=None):
    if reduction == "batchmean":
        return loss.sum() / batch
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


def _reductions(name):
    return ("mean", "sum", "none") + (("batchmean",) if name.startswith("kl_div") else ())


@pytest.mark.parametrize("name", sorted(LOSS_REFERENCES))
@given(a=loss_inputs())
def test_loss_values_match_numpy(name, a):
    """The formulas themselves (a gradient check cannot see a wrong forward formula)."""
    ours, ref, _ = LOSS_REFERENCES[name]
    tensors = {k: ng.tensor(v) if isinstance(v, np.ndarray) else v for k, v in a.items()}
    per_element = np.broadcast_to(ref(a), a["x"].shape)
    for r in _reductions(name):
        assert_close(ours(tensors, r), _np_reduce(per_element, r, a["x"].shape[0]), atol=1e-12,
                     msg=f"{name}, reduction={r}")


@needs_torch
@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")     # torch's kl_div notice
@pytest.mark.parametrize("name", sorted(LOSS_REFERENCES))
@given(a=loss_inputs())
def test_loss_values_and_gradients_match_torch(name, a):
    ours, _, theirs = LOSS_REFERENCES[name]
    key = "p" if name == "binary_cross_entropy" else "x"    # the input differentiated
    for r in _reductions(name):
        ng_in = {k: ng.tensor(v, requires_grad=k == key) if isinstance(v, np.ndarray) else v
                 for k, v in a.items()}
        t_in = {k: _t(v, grad=k == key) if isinstance(v, np.ndarray) else v
                for k, v in a.items()}
        got, ref = ours(ng_in, r), theirs(torch.nn.functional, t_in, r)
        assert tuple(got.shape) == tuple(ref.shape)
        assert_close(got.detach(), ref.detach().numpy(), atol=1e-10, msg=f"{name}, {r}")
        (g,) = ng.autograd.grad(got.sum(), ng_in[key])
        (gr,) = torch.autograd.grad(ref.sum(), t_in[key])
        assert_close(g, gr.numpy(), atol=1e-10, msg=f"d {name} / d{key}, {r}")


@given(s=shapes(0, 3, 1, 4), data=st.data())
def test_indexing_matches_numpy(s, data):
    """x[idx] for every index kind (None, ..., bool masks, int arrays, steps) gives NumPy's
    values and shape -- except where PyTorch's rule differs (below); the gradient is NumPy's
    add.at of ones (repeats accumulate)."""
    x = data.draw(float64_arrays(s))
    idx = data.draw(index_for(s))
    form = data.draw(st.sampled_from(["numpy", "list", "tensor"]))
    xt = ng.tensor(x, requires_grad=True)
    out = xt[wrap_index(idx, form)]
    expect = index_ref(x, idx)   # NumPy indexing with PyTorch's rule for integers
    assert tuple(out.shape) == expect.shape
    assert_close(out.detach(), expect)
    if out.numel():
        (g,) = ng.autograd.grad(out.sum(), xt)
        ref = np.zeros_like(x)
        np.add.at(ref, idx, 1.0)
        assert_close(g, ref)


def test_integer_scalars_do_not_move_advanced_dims():
    """PyTorch's placement, where NumPy's differs: x[None, arr, :, 0] keeps the new axis first."""
    x = ng.tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
    out = x[None, [1, 0], :, 0]
    assert tuple(out.shape) == (1, 2, 3)            # NumPy: (2, 1, 3)
    assert_close(out.detach(), np.arange(24.0).reshape(2, 3, 4)[[1, 0], :, 0][None])
    assert tuple(x[:, None, [0, 1], 0].shape) == (2, 1, 2)
    (g,) = ng.autograd.grad(out.sum(), x)
    assert_close(g, np.eye(4)[0][None, None].repeat(2, 0).repeat(3, 1))


MATMUL_SHAPES = [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((2, 3), (3, 4)),
                 ((3,), (5, 3, 2)), ((5, 2, 3), (3,)), ((5, 1, 2, 3), (4, 3, 2)),
                 ((1, 2, 3), (6, 3, 4))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_one_d_and_broadcast_rules_match_numpy(sa, sb):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    out = F.matmul(ng.tensor(a), ng.tensor(b))
    assert tuple(out.shape) == np.matmul(a, b).shape
    assert_close(out, np.matmul(a, b), rtol=1e-12)


@given(s=SMALL, data=st.data())
def test_repeat_and_tile_match_numpy(s, data):
    x = data.draw(float64_arrays(s))
    reps = tuple(data.draw(st.lists(st.integers(1, 3), min_size=len(s), max_size=len(s) + 2)))
    assert_close(ng.tensor(x).repeat(*reps), np.tile(x, reps))
    assert_close(F.tile(ng.tensor(x), reps[1:]), np.tile(x, reps[1:]))


@pytest.mark.parametrize("n,arg,sizes", [
    (5, 2, [2, 2, 1]), (6, 3, [3, 3]), (4, 5, [4]), (5, [1, 0, 4], [1, 0, 4]), (3, [3], [3])])
def test_split_sizes(n, arg, sizes):
    x = ng.tensor(np.arange(float(n)))
    parts = F.split(x, arg)
    assert [p.shape[0] for p in parts] == sizes
    assert_close(F.cat(parts), np.arange(float(n)))


@pytest.mark.parametrize("n,chunks,sizes", [(5, 2, [3, 2]), (6, 4, [2, 2, 2]), (3, 5, [1, 1, 1]),
                                            (1, 2, [1])])
def test_chunk_sizes(n, chunks, sizes):
    assert [p.shape[0] for p in F.chunk(ng.tensor(np.arange(float(n))), chunks)] == sizes


def test_narrow_negative_start_counts_from_end():
    x = ng.tensor(np.arange(5.0))
    assert_close(F.narrow(x, 0, -2, 2), [3.0, 4.0])
    assert_close(F.narrow(x, 0, 1, 3), [1.0, 2.0, 3.0])


# ---------------------------------------------------------------- PyTorch as an oracle
def _t(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def _torch_index(idx):
    def one(p):
        return torch.from_numpy(p) if isinstance(p, np.ndarray) else p
    return tuple(one(p) for p in idx) if isinstance(idx, tuple) else one(idx)


@needs_torch
@given(problem=class_problem(), data=st.data())
def test_cross_entropy_options_match_torch(problem, data):
    """Class-index targets (weight, ignore_index, k-dim, unbatched) and probability targets,
    each with every reduction and label smoothing: values and input gradients equal PyTorch's."""
    xshape, target, ignore, weight = problem
    x = data.draw(float64_arrays(xshape, -3, 3))
    q = data.draw(probability_arrays(xshape))
    tf = torch.nn.functional
    for w in (None, weight):
        w_t = None if w is None else _t(w.numpy())
        for reduction in ("mean", "sum", "none"):
            for eps in (0.0, 0.1, 0.25):
                cases = [
                    (lambda xt: F.cross_entropy(xt, target, w, ignore, reduction, eps),
                     lambda xt: tf.cross_entropy(xt, torch.from_numpy(target.numpy()), w_t,
                                                 ignore_index=ignore, reduction=reduction,
                                                 label_smoothing=eps)),
                    (lambda xt: F.cross_entropy(xt, ng.tensor(q), w, reduction=reduction,
                                                label_smoothing=eps),
                     lambda xt: tf.cross_entropy(xt, _t(q), w_t, reduction=reduction,
                                                 label_smoothing=eps))]
                for k, (ours, theirs) in enumerate(cases):
                    what = (f"{['index', 'probability'][k]} targets, weight={w is not None}, "
                            f"reduction={reduction}, label_smoothing={eps}")
                    xn, xr = ng.tensor(x, requires_grad=True), _t(x, grad=True)
                    got, ref = ours(xn), theirs(xr)
                    assert tuple(got.shape) == tuple(ref.shape), what
                    assert_close(got.detach(), ref.detach().numpy(), atol=1e-10, msg=what)
                    (g,) = ng.autograd.grad(got.sum(), xn)
                    (gr,) = torch.autograd.grad(ref.sum(), xr)
                    assert_close(g, gr.numpy(), atol=1e-10, msg=what)


@needs_torch
@given(problem=class_problem(), reduction=REDUCTIONS, data=st.data())
def test_nll_loss_matches_torch(problem, reduction, data):
    xshape, target, ignore, weight = problem
    lp = data.draw(float64_arrays(xshape, -3, 0))
    got = F.nll_loss(ng.tensor(lp), target, weight, ignore, reduction)
    ref = torch.nn.functional.nll_loss(_t(lp), torch.from_numpy(target.numpy()),
                                       None if weight is None else _t(weight.numpy()),
                                       ignore_index=ignore, reduction=reduction)
    assert tuple(got.shape) == tuple(ref.shape)
    assert_close(got, ref.numpy(), atol=1e-12)


@needs_torch
@given(s=shapes(0, 3, 1, 4), data=st.data())
def test_indexing_matches_torch(s, data):
    x = data.draw(float64_arrays(s))
    idx = data.draw(index_for(s))
    ref = _t(x)[_torch_index(idx)]
    got = ng.tensor(x)[wrap_index(idx, "tensor")]
    assert tuple(got.shape) == tuple(ref.shape)
    assert_close(got, ref.numpy())


@needs_torch
@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_matches_torch(sa, sb):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    an, bn = ng.tensor(a, requires_grad=True), ng.tensor(b, requires_grad=True)
    ar, br = _t(a, True), _t(b, True)
    out, ref = F.matmul(an, bn), torch.matmul(ar, br)
    assert tuple(out.shape) == tuple(ref.shape)
    assert_close(out.detach(), ref.detach().numpy(), rtol=1e-12)
    gs = ng.autograd.grad(out.sum(), [an, bn])
    grs = torch.autograd.grad(ref.sum(), [ar, br])
    for g, gr in zip(gs, grs):
        assert_close(g, gr.numpy(), rtol=1e-12)


@needs_torch
@given(s=SMALL, data=st.data())
def test_var_softmax_repeat_split_match_torch(s, data):
    x = data.draw(float64_arrays(s))
    xn, xr = ng.tensor(x), _t(x)
    if numel(s) >= 2:
        dim = data.draw(dims_for(s))
        c = data.draw(st.integers(0, 1))
        assert_close(F.var(xn, dim, correction=c),
                     torch.var(xr, dim=dim, correction=c).numpy(), atol=1e-12)
    dim = data.draw(st.one_of(st.none(), dims_for(s, allow_none=False, allow_tuple=False)))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # torch warns about the implicit dim
        assert_close(F.softmax(xn, dim), torch.nn.functional.softmax(xr, dim).numpy(),
                     atol=1e-12)
    reps = tuple(data.draw(st.lists(st.integers(1, 3), min_size=max(len(s), 1),
                                    max_size=len(s) + 2)))
    assert_close(xn.repeat(*reps), xr.repeat(*reps).numpy())
    if s:
        d = data.draw(dim_for(s))
        size = data.draw(st.integers(1, s[d] + 1))
        got, ref = F.split(xn, size, d), torch.split(xr, size, d)
        assert [tuple(p.shape) for p in got] == [tuple(p.shape) for p in ref]
        chunks = data.draw(st.integers(1, 4))
        got, ref = F.chunk(xn, chunks, d), torch.chunk(xr, chunks, d)
        assert [tuple(p.shape) for p in got] == [tuple(p.shape) for p in ref]


@needs_torch
def test_kink_conventions_match_torch():
    x = np.array([-6.0, -1.0, 0.0, 1.0, 6.0])
    pairs = [(F.relu, torch.relu), (F.relu6, torch.nn.functional.relu6),
             (F.hardtanh, torch.nn.functional.hardtanh), (F.abs, torch.abs),
             (lambda t: F.clamp(t, -1.0, 1.0), lambda t: torch.clamp(t, -1.0, 1.0)),
             (lambda t: F.leaky_relu(t, 0.2), lambda t: torch.nn.functional.leaky_relu(t, 0.2)),
             (lambda t: F.elu(t, 2.0), lambda t: torch.nn.functional.elu(t, 2.0)),
             (F.amax, torch.amax), (F.max, torch.max)]
    for ours, theirs in pairs:
        xr = _t(x, True)
        (gr,) = torch.autograd.grad(theirs(xr).sum(), xr)
        assert_close(_grad(ours, x)[0], gr.numpy(), msg=f"{ours}")
    for ours, theirs in ((F.maximum, torch.maximum), (F.minimum, torch.minimum)):
        a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 4.0])
        ar, br = _t(a, True), _t(b, True)
        grs = torch.autograd.grad(theirs(ar, br).sum(), [ar, br])
        for g, gr in zip(_grad(ours, a, b), grs):
            assert_close(g, gr.numpy())


# ================================================================ error messages
def _f32(*shape):
    return ng.zeros(*shape)


def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        F.matmul(_f32(2, 3), _f32(4, 5))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        _f32(3) @ _f32(2)
    with pytest.raises(ValueError, match="at least one dimension"):
        F.matmul(ng.tensor(1.0), _f32(2))
    with pytest.raises(ValueError, match=r"linear.*3 features"):
        F.linear(_f32(2, 3), _f32(4, 5))


def test_cat_and_stack_shape_mismatch():
    with pytest.raises(ValueError, match=r"cat: tensor 1 has shape \(2, 4\).*\(2, 3\)"):
        F.cat([_f32(2, 3), _f32(2, 4)], dim=0)
    with pytest.raises(ValueError, match=r"cat.*tensor 1"):
        F.cat([_f32(2, 3), _f32(2, 3, 1)])
    with pytest.raises(ValueError, match=r"stack: tensor 2 has shape \(3,\).*\(2,\)"):
        F.stack([_f32(2), _f32(2), _f32(3)])
    with pytest.raises(ValueError, match="non-empty"):
        F.cat([])


def test_loss_shape_mismatches():
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(2, 3\) and target shape "
                                         r"\(3, 2\)"):
        F.mse_loss(_f32(2, 3), _f32(3, 2))
    with pytest.raises(ValueError, match=r"nll_loss.*\(2, 3\).*needs a target of shape \(2,\)"):
        F.nll_loss(_f32(2, 3), ng.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"cross_entropy: input shape \(2, 3\) and target shape "
                                         r"\(2, 4\)"):
        F.cross_entropy(_f32(2, 3), _f32(2, 4))
    with pytest.raises(IndexError, match=r"nll_loss: target class out of range \[0, 3\)"):
        F.nll_loss(_f32(2, 3), ng.tensor([0, 3]))
    with pytest.raises(TypeError, match="integer tensor"):
        F.nll_loss(_f32(2, 3), _f32(2))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: input must be probabilities"):
        F.binary_cross_entropy(ng.tensor([0.5, 1.5]), ng.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction must be"):
        F.mse_loss(_f32(2), _f32(2), reduction="avg")


def test_dtype_mismatch_names_both_dtypes():
    a, b = ng.zeros(3, dtype=ng.float32), ng.zeros(3, dtype=ng.float64)
    for op in (F.add, F.mul, F.sub, F.div, F.matmul, F.maximum):
        with pytest.raises(TypeError, match=r"float32.*float64"):
            op(a, b)
    with pytest.raises(TypeError, match=r"float64.*float32"):
        b + a


def test_other_op_errors_are_explained():
    with pytest.raises(ValueError, match=r"shape \(4,\) is invalid for a tensor of 6"):
        _f32(2, 3).reshape(4)
    with pytest.raises(ValueError, match=r"broadcast_to: cannot broadcast shape \(2, 3\) to "
                                         r"\(3, 3\)"):
        F.broadcast_to(_f32(2, 3), (3, 3))
    with pytest.raises(ValueError, match=r"split: sections \[1, 1\] do not add up to the size 3"):
        F.split(_f32(3), [1, 1])
    with pytest.raises(IndexError, match="dimension 2 is out of range for a tensor with 2"):
        F.sum(_f32(2, 3), 2)
    with pytest.raises(ValueError, match=r"gather: index of shape \(3, 1\) is larger"):
        F.gather(_f32(2, 2), 1, ng.tensor([[0], [1], [0]]))
    with pytest.raises(ValueError, match="operands could not be broadcast"):
        _f32(2, 3) + _f32(4)
    with pytest.raises(IndexError, match=r"invalid for a tensor of shape \(2, 3\)"):
        _f32(2, 3)[5]
    with pytest.raises(IndexError, match=r"narrow: start 3 and length 2 are out of range"):
        F.narrow(_f32(4), 0, 3, 2)


def test_gaussian_nll_clamped_variance_keeps_its_gradient():
    # PyTorch clamps var at eps without stopping the gradient: d/dvar of ½(log v + d²/v) at
    # the clamped value, passed straight through to var
    var = ng.tensor(np.array([1e-8, 0.5]), requires_grad=True)
    d = np.array([0.3, 0.1])
    F.gaussian_nll_loss(ng.tensor(d), ng.tensor(np.zeros(2)), var, eps=1e-6).backward()
    v = np.maximum(var.detach().numpy(), 1e-6)
    expected = 0.5 * (1 / v - d ** 2 / v ** 2) / 2      # mean over 2 elements
    np.testing.assert_allclose(var.grad.numpy(), expected, rtol=1e-10)


def test_sort_of_a_single_value():
    values, indices = ng.sort(ng.tensor(3.0))
    assert values.item() == 3.0 and indices.item() == 0 and indices.shape == ()


# ================================================================ fused smooth activations
def test_float32_erf_matches_double_precision_to_a_few_ulps():
    from scipy.special import erf
    x = np.linspace(-6, 6, 200_001).astype(np.float32)
    got = F.erf(ng.tensor(x)).numpy()
    assert got.dtype == np.float32
    assert np.abs(got.astype(np.float64) - erf(x.astype(np.float64))).max() < 5e-7
    assert got[0] == -1.0 and got[-1] == 1.0 and got[100_000] == 0.0


@pytest.mark.parametrize("name", ["gelu", "silu", "sigmoid"])
def test_fused_activations_third_derivative_matches_composite(name):
    """GELU / SiLU are one fused pass whose derivative is another fused Function; the chain
    must agree with the composite formulas to third order."""
    composite = {"gelu": lambda t: t * (F.erf(t / math.sqrt(2.0)) + 1) * 0.5,
                 "silu": lambda t: t / (1 + (-t).exp()),
                 "sigmoid": lambda t: 1 / (1 + (-t).exp())}[name]
    x = np.random.default_rng(3).standard_normal(40) * 3
    derivs = []
    for fn in (getattr(F, name), composite):
        t = ng.tensor(x, requires_grad=True)
        y, out = fn(t), []
        for _ in range(3):
            (y,) = ng.autograd.grad(y.sum(), t, create_graph=True)
            out.append(y.detach().numpy())
        derivs.append(out)
    for ours, ref in zip(*derivs):
        assert_close(ours, ref, rtol=1e-9, atol=1e-12)


@examples(2.5)
@given(x=hnp.arrays(np.float32, st.integers(1, 300),
                    elements=st.floats(-30, 30, width=32)),
       seed=st.integers(0, 2**16))
@example(x=np.array([-100, -88.5, -6, -4, -1e-20, 0, 1e-20, 4, 6, 88.5, 100], np.float32), seed=0)
@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_fused_float32_kernels_match_double_precision(name, x, seed):
    """In float32 on the CPU SiLU and GELU run as fused kernels (forward, and the backward of a
    plain ``backward()``); each agrees with the float64 formulas to float32 accuracy, including
    the tails where e⁻ˣ overflows to inf."""
    from nanogen.kernels import activation as A
    ref_y = {"gelu": A.reference_gelu, "silu": A.reference_silu}[name](x)
    ref_slope = {"gelu": A.reference_gelu_grad, "silu": A.reference_silu_grad}[name](x)
    gy = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    t = ng.tensor(x, requires_grad=True)
    y = getattr(F, name)(t)
    y.backward(ng.tensor(gy))
    y = y.detach().numpy()
    assert y.dtype == np.float32 and t.grad.dtype == ng.float32
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(t.grad.numpy()))
    scale = np.maximum(1.0, np.abs(x))
    assert np.all(np.abs(y - ref_y) <= 2e-6 * scale)
    assert np.all(np.abs(t.grad.numpy() - gy * ref_slope) <= 2e-6 * np.abs(gy) * scale + 1e-7)
    # without what the forward saved, the kernel recomputes it: the same gradient
    np.testing.assert_array_equal(getattr(A, f"{name}_backward")(gy, x), t.grad.numpy())


@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_fused_float32_backward_equals_the_differentiable_one(name, monkeypatch):
    """The fused backward runs only when no graph is recorded; with ``create_graph=True`` the
    composite backward runs instead (and can be differentiated again) -- the two agree, and the
    fused one is really taken in the first case."""
    from nanogen.kernels import activation as A
    calls = []
    fused = getattr(A, f"{name}_backward")
    cls = {"gelu": F.activation.GELU, "silu": F.activation.SiLU}[name]
    monkeypatch.setattr(cls, "fused", (cls.fused[0],
                                       lambda gy, x, saved: calls.append(1) or fused(gy, x, saved)))
    x = np.random.default_rng(0).standard_normal((4, 5, 6)).astype(np.float32) * 3
    t = ng.tensor(x, requires_grad=True)
    (plain,) = ng.autograd.grad(getattr(F, name)(t).sum(), t)
    assert calls == [1]
    (graph,) = ng.autograd.grad(getattr(F, name)(t).sum(), t, create_graph=True)
    assert calls == [1] and graph.requires_grad
    assert_close(plain.numpy(), graph.detach().numpy(), rtol=1e-5, atol=1e-6)
