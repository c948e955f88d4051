"""Hypothesis strategies shared by the test suite: shapes, broadcasting, float64 arrays kept away
from kinks and domain edges, tie-free arrays, reduction dims and indices.

Draws are deliberately small: a full-mode gradcheck costs two forward passes per input element
(and gradgradcheck twice that, over the inputs *and* the cotangent), so sides default to ≤ 5 and
the op tests ask for ≤ 3.  Small is not degenerate, though: a dimension is 2 or more five times
in six, so reductions, broadcasts and index arithmetic see real extents; size 1 (where
broadcasting bugs live) and size 0 (where ``empty=True``) are deliberate minorities, and a 0-d
shape is one rank draw in twenty.

* :func:`shapes` -- a shape tuple (rank first, then the sides).
* :func:`broadcastable_shapes` -- shapes that broadcast *to* a given shape (a suffix of it with
  some sides replaced by 1); :func:`broadcast_pairs` -- two shapes that broadcast *together*
  (rank differences, 1s on either side); :func:`expanded_shapes` -- the other direction.
* :func:`float64_arrays` -- values in ``[min_value, max_value]`` at least ``margin`` away from
  each point of ``away_from`` (ReLU's 0, clamp bounds, Huber's ±δ); domains are plain bounds
  (``positive_arrays``, ``probability_arrays``).  Magnitudes below 1e-3 become 0 (or the
  interval's end): a value like 1e-92 moves nothing by a finite-difference step of 1e-6, so a
  gradient check at it measures rounding, not the backward.
* :func:`distinct_arrays` / :func:`distinct_tuple` -- all values distinct and at least
  ``spacing`` apart (so max / min / sort / maximum never see a tie, even after an ε-step).
* :func:`dims_for` -- ``None``, an int or a tuple of ints (negative forms included);
  :func:`dim_for` a single int.
* :func:`index_for` -- a valid ``x[index]``: ints, slices with steps, ``None``, ``...``, integer
  arrays with repeats (broadcast together), boolean masks over one or more dims.
* :func:`pick` -- a choice among calling forms that is *recorded*: inside
  :func:`tracking_forms`, every form offered and every form drawn is collected, so a test can
  fail when a form its strategy claims was never drawn.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = ["pick", "tracking_forms", "current_forms", "FormTracker", "sides", "shapes",
           "broadcastable_shapes", "broadcast_pairs", "expanded_shapes", "float64_arrays",
           "positive_arrays", "probability_arrays", "distinct_arrays", "distinct_tuple",
           "dims_for", "dim_for", "index_for", "wrap_index", "int_arrays", "bool_arrays",
           "numel", "examples"]


def numel(shape) -> int:
    return int(math.prod(shape))


# ---------------------------------------------------------------- recorded forms
class FormTracker:
    """The calling forms a strategy offered and the ones that reached a test.

    :func:`pick` adds every choice it offers to ``offered`` and the one it drew to
    ``pending``; the test hands each example's forms to :meth:`drawn_in` once the example
    actually ran (an example rejected by ``assume`` counts for nothing).  Hypothesis draws far
    from uniformly (it starts from, and lingers near, the simplest choices), so a test can set
    ``forced`` to one missing form and draw again: :func:`pick` then returns that form
    whenever it is among the choices offered."""

    def __init__(self):
        self.offered, self.drawn, self.pending = set(), set(), []
        self.forced = None

    def take_pending(self):
        forms, self.pending = tuple(self.pending), []
        return forms

    def drawn_in(self, forms):
        self.drawn.update(forms)

    def missing(self):
        return sorted(self.offered - self.drawn)


_TRACKER = None


@contextmanager
def tracking_forms():
    """``with tracking_forms() as forms: ...`` collects what :func:`pick` offers and draws."""
    global _TRACKER
    outer, _TRACKER = _TRACKER, FormTracker()
    try:
        yield _TRACKER
    finally:
        _TRACKER = outer


def _form_name(choice):
    return getattr(choice, "__qualname__", None) or repr(choice)


def pick(draw, label, choices):
    """``draw(st.sampled_from(choices))``, recorded as the form ``"label=choice"``."""
    choices = list(choices)
    forced = [c for c in choices if _TRACKER is not None
              and f"{label}={_form_name(c)}" == _TRACKER.forced]
    choice = forced[0] if forced else draw(st.sampled_from(choices))
    if _TRACKER is not None:
        _TRACKER.offered.update(f"{label}={_form_name(c)}" for c in choices)
        _TRACKER.pending.append(f"{label}={_form_name(choice)}")
    return choice


def current_forms():
    """The forms picked since the last call (a Case takes them when it is built)."""
    return _TRACKER.take_pending() if _TRACKER is not None else ()


# ---------------------------------------------------------------- shapes
@st.composite
def sides(draw, min_side=1, max_side=5, empty=False):
    """One dimension's size: from 2 up five times in six, 1 one time in six (when allowed);
    with ``empty=True`` a 0 replaces one of the draws of 2 or more one time in twelve.

    Hypothesis starts from, and shrinks towards, the smallest choice, so the ordering puts the
    ordinary case (a side of 2) there and the degenerate ones at the far end."""
    if min_side > 1 or max_side < 2:
        return draw(st.integers(min_side, max_side))
    bucket = draw(st.integers(0, 11))
    if bucket >= 10:
        return 1
    if empty and bucket == 9:
        return 0
    return draw(st.integers(2, max_side))


def shapes(min_dims=0, max_dims=4, min_side=1, max_side=5, empty=False):
    """A shape tuple: the rank first (0-d one time in twenty where allowed, the other ranks
    evenly, the smallest rank of 2 or more first), then the sides (:func:`sides`)."""
    ranks = list(range(max(min_dims, 1), max_dims + 1))
    ranks = sorted(ranks, key=lambda r: (r < 2, r))      # 2, 3, ..., then 1
    weighted = ranks * (19 // max(len(ranks), 1) or 1) + ([0] if min_dims == 0 else [])
    return st.sampled_from(weighted or [0]).flatmap(
        lambda n: st.tuples(*[sides(min_side, max_side, empty)] * n))


@st.composite
def broadcastable_shapes(draw, shape, min_dims=0):
    """A shape that broadcasts to ``shape``: a suffix of it (at least ``min_dims`` long) with
    some sides replaced by 1."""
    shape = tuple(shape)
    most = max(len(shape) - min_dims, 0)
    # leading dims left out one time in four, each side set to 1 one time in five (the
    # common case first, where hypothesis starts and shrinks to)
    drop = draw(st.integers(1, most)) if most and draw(st.integers(0, 3)) == 3 else 0
    return tuple(1 if draw(st.integers(0, 4)) == 4 else s for s in shape[drop:])


@st.composite
def expanded_shapes(draw, shape, max_new_dims=2, max_side=3):
    """A shape that ``shape`` broadcasts to: leading dims prepended, 1s widened."""
    shape = tuple(shape)
    lead = tuple(draw(st.lists(sides(1, max_side), max_size=max_new_dims)))
    return lead + tuple(draw(sides(1, max_side)) if s == 1 else s for s in shape)


@st.composite
def broadcast_pairs(draw, min_dims=1, max_dims=3, max_side=3):
    """Two shapes that broadcast together: each is a suffix of a common result shape (so ranks
    may differ) with some sides set to 1, independently on each side.  The result has a dim or
    more by default, each of 2 or more; a 0-d operand comes from leaving out all of its leading
    dims, a side of 1 from the operand's own draw."""
    result = draw(shapes(min_dims, max_dims, 2, max_side))    # the 1s come from the operands
    return draw(broadcastable_shapes(result)), draw(broadcastable_shapes(result))


# ---------------------------------------------------------------- values
def _intervals(lo, hi, away_from, margin):
    """[lo, hi] minus the open balls of radius ``margin`` around each point of ``away_from``."""
    pieces = [(lo, hi)]
    for p in sorted(away_from):
        nxt = []
        for a, b in pieces:
            if p + margin <= a or p - margin >= b:
                nxt.append((a, b))
                continue
            if a < p - margin:
                nxt.append((a, p - margin))
            if p + margin < b:
                nxt.append((p + margin, b))
        pieces = nxt
    if not pieces:
        raise ValueError(f"nothing of [{lo}, {hi}] is {margin} away from {away_from}")
    return pieces


TINY = 1e-3


def _well_scaled(a, b):
    """Floats of [a, b] with no magnitude in (0, TINY): those become 0 (or a, when 0 is
    outside [a, b]), see the module docstring."""
    def fix(v):
        if v == 0 or abs(v) >= TINY:
            return v
        return 0.0 if a <= 0.0 <= b else a
    return st.floats(a, b, allow_nan=False, allow_infinity=False,
                     allow_subnormal=False).map(fix)


def _elements(min_value, max_value, away_from=(), margin=0.1):
    return st.one_of(*[_well_scaled(a, b)
                       for a, b in _intervals(min_value, max_value, away_from, margin)])


def float64_arrays(shape, min_value=-2.0, max_value=2.0, away_from=(), margin=0.1):
    """float64 arrays of ``shape`` (a tuple or a strategy of tuples) with values in
    ``[min_value, max_value]`` and at least ``margin`` from every point in ``away_from``."""
    return hnp.arrays(np.float64, shape, elements=_elements(min_value, max_value, away_from,
                                                            margin))


def positive_arrays(shape, min_value=0.2, max_value=3.0):
    """For log, sqrt, rsqrt, pow bases, variances."""
    return float64_arrays(shape, min_value, max_value)


def probability_arrays(shape, margin=0.05):
    """Values in (0, 1), ``margin`` away from both ends."""
    return float64_arrays(shape, margin, 1.0 - margin)


@st.composite
def distinct_tuple(draw, *shape_list, spacing=0.25, min_value=None, signs=False):
    """Arrays of the given shapes whose values are all distinct *across all of them*, at least
    ``spacing`` / 2 apart: a shuffled grid plus a small jitter.  Centred on 0 unless
    ``min_value`` is given; ``signs=True`` multiplies by random signs afterwards (for |x| ties
    use a positive ``min_value`` so magnitudes stay distinct)."""
    sizes = [numel(s) for s in shape_list]
    n = sum(sizes)
    perm = np.array(draw(st.permutations(range(n))), dtype=np.float64)
    jitter = draw(hnp.arrays(np.float64, (n,), elements=st.floats(0.0, spacing / 2)))
    base = (perm - (n - 1) / 2.0) if min_value is None else perm
    values = base * spacing + jitter + (0.0 if min_value is None else min_value)
    if signs:
        values = values * draw(hnp.arrays(np.float64, (n,), elements=st.sampled_from([-1., 1.])))
    out, start = [], 0
    for s, k in zip(shape_list, sizes):
        out.append(values[start:start + k].reshape(s).copy())
        start += k
    return tuple(out)


def distinct_arrays(shape, spacing=0.25, min_value=None, signs=False):
    """One array (of ``shape``, a tuple or a strategy) with all values distinct: no ties for
    max / min / amax / sort / topk, even after a finite-difference step."""
    if isinstance(shape, st.SearchStrategy):
        return shape.flatmap(lambda s: distinct_arrays(s, spacing, min_value, signs))
    return distinct_tuple(shape, spacing=spacing, min_value=min_value,
                          signs=signs).map(lambda t: t[0])


def int_arrays(shape, low, high):
    """int64 arrays of ``shape`` with values in [low, high] (repeats welcome)."""
    return hnp.arrays(np.int64, shape, elements=st.integers(low, high))


def bool_arrays(shape):
    return hnp.arrays(np.bool_, shape, elements=st.booleans())


# ---------------------------------------------------------------- dims
def dim_for(shape):
    """One valid dim of ``shape`` (which must have ndim >= 1), negative forms included."""
    n = len(shape)
    return st.integers(-n, n - 1)


@st.composite
def dims_for(draw, shape, allow_none=True, allow_tuple=True):
    """``None`` (all dims), an int, or a non-empty tuple of distinct dims in any order."""
    n = len(shape)
    kinds = ["int"] + (["none"] if allow_none else []) + (["tuple"] if allow_tuple and n else [])
    kind = pick(draw, "dim", kinds)
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-max(n, 1), max(n, 1) - 1))
    axes = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    return tuple(a - n if draw(st.booleans()) else a for a in axes)


# ---------------------------------------------------------------- indices
@st.composite
def index_for(draw, shape, allow_advanced=True, allow_bool=True, max_index_side=3):
    """A valid index for an array of ``shape``, as NumPy understands it (PyTorch agrees for
    everything drawn here: slice steps are positive).  Integer and boolean arrays are NumPy
    arrays; wrap them as tensors or lists at the call site.

    Leading dims are indexed one part each; an ``...`` may stand for a middle stretch, after
    which trailing dims may be indexed too; ``None`` is inserted anywhere.  Integer arrays share
    one broadcast shape and may repeat entries (their gradient must accumulate); a boolean
    mask covers one or more consecutive dims and is then the only array in the index."""
    shape = tuple(shape)
    ndim = len(shape)
    lead = draw(st.integers(0, ndim))
    ellipsis = draw(st.booleans())
    trail = draw(st.integers(0, ndim - lead)) if ellipsis else 0
    explicit = list(range(lead)) + list(range(ndim - trail, ndim))

    adv_shape = draw(shapes(1, 2, 1, max_index_side))
    kinds = ["slice", "full", "int"] + (["array"] if allow_advanced else [])
    per_dim = {d: draw(st.sampled_from(kinds)) for d in explicit}
    # a boolean mask over a run of consecutive explicit dims, replacing their parts
    mask_run = None
    if allow_advanced and allow_bool and lead and draw(st.integers(0, 3)) == 0:
        start = draw(st.integers(0, lead - 1))
        stop = draw(st.integers(start + 1, lead))
        mask_run = (start, stop)
        for d in explicit:
            if per_dim[d] == "array":
                per_dim[d] = "int"

    def part(d):
        size, kind = shape[d], per_dim[d]
        if kind == "full":
            return slice(None)
        if kind == "int":
            return draw(st.integers(-size, size - 1))
        if kind == "array":
            return draw(int_arrays(adv_shape, -size, size - 1))
        bound = st.one_of(st.none(), st.integers(-size - 1, size + 1))
        return slice(draw(bound), draw(bound), draw(st.sampled_from([None, 1, 2, 3])))

    def parts_for(dims):
        out, i = [], 0
        while i < len(dims):
            d = dims[i]
            if mask_run is not None and d == mask_run[0]:
                out.append(draw(bool_arrays(shape[mask_run[0]:mask_run[1]])))
                i += mask_run[1] - mask_run[0]
            else:
                out.append(part(d))
                i += 1
        return out

    parts = parts_for(list(range(lead)))
    if ellipsis:
        parts.append(Ellipsis)
    parts += parts_for(list(range(ndim - trail, ndim)))
    for _ in range(draw(st.integers(0, 2))):
        parts.insert(draw(st.integers(0, len(parts))), None)
    if len(parts) == 1 and draw(st.booleans()):
        return parts[0]            # x[i], x[mask], x[arr], x[None], x[...]
    return tuple(parts)


def wrap_index(idx, form):
    """The integer / boolean arrays of an :func:`index_for` index as NumPy arrays
    (``form="numpy"``), lists (``"list"``) or nanogen tensors (``"tensor"``)."""
    import nanogen as ng

    def one(p):
        if not isinstance(p, np.ndarray):
            return p
        return {"numpy": p, "list": p.tolist(), "tensor": ng.tensor(p)}[form]
    return tuple(one(p) for p in idx) if isinstance(idx, tuple) else one(idx)


# ---------------------------------------------------------------- example counts
def examples(factor=1.0):
    """Settings that run ``factor`` times the active profile's ``max_examples`` (never fewer
    than the profile's own count): a test that needs more examples than most says so as a
    multiple, so ``HYPOTHESIS_PROFILE=heavy`` deepens it as much as every other test."""
    if factor < 1:
        raise ValueError(f"examples: factor {factor} would cap the test below the profile")
    return settings(max_examples=round(settings().max_examples * factor))
