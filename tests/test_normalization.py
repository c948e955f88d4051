"""Normalisation: batch_norm, instance_norm, group_norm, layer_norm, adain and their modules.

* gradients and gradients of gradients (float64 central differences) of every op on drawn
  shapes, with and without affine parameters, H·W = 1 and a batch of 1 pinned by examples;
* forward values (float64 and float32) and first- and second-order gradients against PyTorch;
* the fused kernels against their plain-NumPy references (every geometry, AdaIN's planes);
* running statistics against PyTorch over several steps (momentum, momentum=None, eval mode),
  buffers through state_dict / save / load;
* clear errors for shapes that disagree.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import nanogen as ng
import nanogen.functional as F
from nanogen import nn
from nanogen.kernels import adain as adain_kernels
from nanogen.kernels import normalization as norm_kernels
from nanogen.testing import assert_close, gradcheck, gradgradcheck

from .strategies import distinct_tuple, float64_arrays, numel
from tests.oracle import needs_torch, torch

GRAD_CHECKED = {"batch_norm", "instance_norm", "group_norm", "layer_norm", "adain",
                "adaptive_group_norm"}


# ================================================================ cases
class Case:
    """Float64 arrays (leaves requiring grad) and ``fn`` on them; ``torch_fn`` mirrors ``fn``
    on torch tensors."""

    def __init__(self, fn, torch_fn, *arrays, note=""):
        self.fn, self.torch_fn, self.arrays, self.note = fn, torch_fn, arrays, note

    def leaves(self, dtype=np.float64):
        return [ng.tensor(np.array(a, dtype=dtype), requires_grad=True) for a in self.arrays]

    def __repr__(self):
        return f"Case({self.note}; shapes {[a.shape for a in self.arrays]})"


def _values(draw, *shapes_):
    """Arrays whose values are all distinct (spaced apart), so no group is nearly constant
    and finite differences stay well conditioned; shifted away from 0 mean."""
    arrays = draw(distinct_tuple(*shapes_, spacing=0.3))
    return [a + 0.5 for a in arrays]


def _affine_form(draw):
    return draw(st.sampled_from(["both", "weight", "bias", "none"]))


def _affine(form, draw, shape):
    """(weight array or None, bias array or None) for ``form``."""
    w = draw(float64_arrays(shape, 0.3, 2.0)) if form in ("both", "weight") else None
    b = draw(float64_arrays(shape)) if form in ("both", "bias") else None
    return w, b


def _call(arrays, w, b):
    """Split the leaves back into (x, weight, bias) following which of w, b exist."""
    it = iter(arrays)
    x = next(it)
    return x, (next(it) if w is not None else None), (next(it) if b is not None else None)


def _make_case(op, torch_op, x, w, b, note, **kw):
    arrays = [a for a in (x, w, b) if a is not None]

    def fn(*ts):
        xt, wt, bt = _call(ts, w, b)
        return op(xt, wt, bt, **kw)

    def torch_fn(*ts):
        xt, wt, bt = _call(ts, w, b)
        return torch_op(xt, wt, bt, **kw)
    return Case(fn, torch_fn, *arrays, note=note)


def _tf():
    return torch.nn.functional


# ---------------------------------------------------------------- one strategy per op
def batch_norm_case_of(x, w, b, training=True, running=None):
    rm, rv = running if running is not None else (None, None)

    def op(x_, w_, b_):
        mean = ng.tensor(rm, dtype=x_.dtype) if rm is not None else None
        var = ng.tensor(rv, dtype=x_.dtype) if rv is not None else None
        return F.batch_norm(x_, mean, var, w_, b_, training=training)

    def top(x_, w_, b_):
        mean = torch.tensor(rm, dtype=x_.dtype) if rm is not None else None
        var = torch.tensor(rv, dtype=x_.dtype) if rv is not None else None
        return _tf().batch_norm(x_, mean, var, w_, b_, training=training)
    return _make_case(op, top, x, w, b, f"batch_norm training={training} x{x.shape}")


@st.composite
def batch_norm_cases(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    spatial = draw(st.lists(st.integers(1, 2), max_size=2))
    if n * numel(spatial) < 2:
        n = 2
    (x,) = _values(draw, (n, c, *spatial))
    w, b = _affine(_affine_form(draw), draw, (c,))
    if draw(st.booleans()):
        return batch_norm_case_of(x, w, b, training=True)
    rm = draw(float64_arrays((c,)))
    rv = draw(float64_arrays((c,), 0.3, 2.0))
    return batch_norm_case_of(x, w, b, training=False, running=(rm, rv))


def _torch_instance_norm(x, weight=None, bias=None, eps=1e-5):
    """PyTorch's instance_norm, or where it refuses a single spatial position (x̂ = 0 there),
    the same normalisation written with torch ops."""
    if numel(x.shape[2:]) > 1:
        return _tf().instance_norm(x, weight=weight, bias=bias, eps=eps)
    dims = tuple(range(2, x.ndim))
    xc = x - x.mean(dims, keepdim=True) if dims else x - x
    y = xc / torch.sqrt((xc * xc).mean(dims, keepdim=True) + eps) if dims else xc
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = y * weight.reshape(shape) if weight is not None else y
    return y + bias.reshape(shape) if bias is not None else y


def instance_norm_case_of(x, w, b):
    return _make_case(lambda x_, w_, b_: F.instance_norm(x_, weight=w_, bias=b_),
                      lambda x_, w_, b_: _torch_instance_norm(x_, w_, b_),
                      x, w, b, f"instance_norm x{x.shape}")


@st.composite
def instance_norm_cases(draw):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    spatial = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    (x,) = _values(draw, (n, c, *spatial))
    w, b = _affine(_affine_form(draw), draw, (c,))
    return instance_norm_case_of(x, w, b)


def _torch_group_norm(x, groups, weight=None, bias=None, eps=1e-5):
    """PyTorch's group_norm, or where it refuses groups of one value (x̂ = 0 there), the
    normalisation written with torch ops."""
    if weight is None and bias is not None:     # works around a PyTorch 2.13 backward bug
        weight = torch.ones(x.shape[1], dtype=x.dtype)
    if numel(x.shape[1:]) // groups > 1:
        return _tf().group_norm(x, groups, weight, bias, eps)
    y = x * 0.0
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = y * weight.reshape(shape) if weight is not None else y
    return y + bias.reshape(shape) if bias is not None else y


def group_norm_case_of(x, groups, w, b):
    return _make_case(lambda x_, w_, b_: F.group_norm(x_, groups, w_, b_),
                      lambda x_, w_, b_: _torch_group_norm(x_, groups, w_, b_),
                      x, w, b, f"group_norm groups={groups} x{x.shape}")


@st.composite
def group_norm_cases(draw):
    n, groups, per = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    spatial = draw(st.lists(st.integers(1, 2), max_size=2))
    (x,) = _values(draw, (n, groups * per, *spatial))
    w, b = _affine(_affine_form(draw), draw, (groups * per,))
    return group_norm_case_of(x, groups, w, b)


def layer_norm_case_of(x, normalized, w, b):
    torch_shape = (normalized,) if isinstance(normalized, int) else normalized
    return _make_case(lambda x_, w_, b_: F.layer_norm(x_, normalized, w_, b_),
                      lambda x_, w_, b_: _tf().layer_norm(x_, torch_shape, w_, b_),
                      x, w, b, f"layer_norm {normalized} x{x.shape}")


@st.composite
def layer_norm_cases(draw):
    lead = draw(st.lists(st.integers(1, 3), max_size=2))
    normalized = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    (x,) = _values(draw, (*lead, *normalized))
    w, b = _affine(_affine_form(draw), draw, normalized)
    ns = normalized[0] if len(normalized) == 1 and draw(st.booleans()) else normalized
    return layer_norm_case_of(x, ns, w, b)


def adain_case_of(x, scale, bias):
    def top(x_, s_, b_):
        return _torch_instance_norm(x_) * s_[:, :, None, None] + b_[:, :, None, None]
    return Case(lambda x_, s_, b_: F.adain(x_, s_, b_), top, x, scale, bias,
                note=f"adain x{x.shape}")


@st.composite
def adain_cases(draw):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    (x,) = _values(draw, (n, c, h, w))
    scale = draw(float64_arrays((n, c), 0.3, 2.0))
    bias = draw(float64_arrays((n, c)))
    return adain_case_of(x, scale, bias)


def adaptive_group_norm_case_of(x, groups, scale, bias):
    def top(x_, s_, b_):
        shape = s_.shape + (1,) * (x_.ndim - 2)
        return _torch_group_norm(x_, groups) * s_.reshape(shape) + b_.reshape(shape)
    return Case(lambda x_, s_, b_: F.adaptive_group_norm(x_, groups, s_, b_), top, x, scale,
                bias, note=f"adaptive_group_norm groups={groups} x{x.shape}")


@st.composite
def adaptive_group_norm_cases(draw):
    n, groups, per = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    spatial = draw(st.lists(st.integers(1, 2), max_size=2))
    (x,) = _values(draw, (n, groups * per, *spatial))
    scale = draw(float64_arrays((n, groups * per), 0.3, 2.0))
    bias = draw(float64_arrays((n, groups * per)))
    return adaptive_group_norm_case_of(x, groups, scale, bias)


_RNG = np.random.default_rng(1234)


def _fixed(shape):
    return _RNG.permutation(numel(shape)).reshape(shape) * 0.3 - 1.0


# the edge cases every run checks: H·W = 1 (x̂ = 0) and a batch of 1
EDGES = {
    "batch_norm": batch_norm_case_of(_fixed((2, 2)), _fixed((2,)) + 2, _fixed((2,))),
    "instance_norm": instance_norm_case_of(_fixed((2, 3, 1, 1)), _fixed((3,)) + 2,
                                           _fixed((3,))),
    "group_norm": group_norm_case_of(_fixed((1, 4, 2)), 2, _fixed((4,)) + 2, _fixed((4,))),
    "layer_norm": layer_norm_case_of(_fixed((1, 3)), 3, _fixed((3,)) + 2, _fixed((3,))),
    "adain": adain_case_of(_fixed((2, 2, 1, 1)), _fixed((2, 2)) + 2, _fixed((2, 2))),
    "adaptive_group_norm": adaptive_group_norm_case_of(_fixed((2, 2, 1)), 2, _fixed((2, 2)) + 2,
                                                       _fixed((2, 2))),
}
STRATEGIES = {"batch_norm": batch_norm_cases(), "instance_norm": instance_norm_cases(),
              "group_norm": group_norm_cases(), "layer_norm": layer_norm_cases(),
              "adain": adain_cases(), "adaptive_group_norm": adaptive_group_norm_cases()}
OPS = sorted(STRATEGIES)


def _run(op, check):
    def run(case):
        check(case)
    example(case=EDGES[op])(given(case=STRATEGIES[op])(run))()


# ================================================================ gradients
@pytest.mark.parametrize("op", OPS)
def test_grad(op):
    _run(op, lambda case: gradcheck(case.fn, case.leaves()))


# Loosened with a reason: in a group of two elements x̂ = ±1 whatever x is, so the first
# derivative is a residue of O(r·|u|) terms that cancel to O(eps / var), and its rounding noise
# is r·ε_mach·|u| rather than ε_mach times the residue that gradcheck's bound is scaled by.  The
# groups the strategies draw are that small (1-2 elements a side keeps gradgradcheck cheap), so
# the second derivatives get 32x the default rounding allowance; first derivatives keep it.
GRADGRAD_NOISE = 64.0 * 32


@pytest.mark.parametrize("op", OPS)
def test_gradgrad(op):
    _run(op, lambda case: gradgradcheck(case.fn, case.leaves(), noise=GRADGRAD_NOISE))


def test_edge_cases_give_zero_normalised_values():
    """H·W = 1: the plane is its own mean, so instance norm gives the bias, adain the bias."""
    x = ng.tensor(_fixed((2, 3, 1, 1)), requires_grad=True)
    b = ng.tensor(_fixed((3,)))
    y = F.instance_norm(x, weight=ng.ones(3, dtype=ng.float64), bias=b)
    assert_close(y, np.broadcast_to(b.numpy()[None, :, None, None], (2, 3, 1, 1)))
    s, bb = ng.tensor(_fixed((2, 3))), ng.tensor(_fixed((2, 3)))
    y = F.adain(x, s, bb)
    assert_close(y, bb.numpy()[:, :, None, None])
    (gx,) = ng.autograd.grad(y.sum(), x)
    assert np.all(gx.numpy() == 0.0)


# ================================================================ against PyTorch
def _torch_leaves(case, dtype):
    return [torch.tensor(np.array(a, dtype=dtype), requires_grad=True) for a in case.arrays]


@needs_torch
@pytest.mark.parametrize("op", OPS)
def test_forward_and_gradients_match_torch(op):
    def check(case):
        for dtype, tol in ((np.float64, 1e-10), (np.float32, 2e-5)):
            ours, theirs = case.leaves(dtype), _torch_leaves(case, dtype)
            y, ty = case.fn(*ours), case.torch_fn(*theirs)
            assert y.dtype == dtype
            assert_close(y, ty.detach().numpy(), rtol=tol, atol=tol, msg=f"{case} forward")
            gy = np.random.default_rng(0).standard_normal(y.shape).astype(dtype)
            gs = ng.autograd.grad(y, ours, grad_outputs=ng.tensor(gy))
            tgs = torch.autograd.grad(ty, theirs, grad_outputs=torch.tensor(gy))
            for g, tg in zip(gs, tgs):
                assert g.dtype == dtype
                assert_close(g, tg.numpy(), rtol=10 * tol, atol=10 * tol,
                             msg=f"{case} gradient")
    _run(op, check)


@needs_torch
@pytest.mark.parametrize("op", ["batch_norm", "instance_norm", "group_norm", "layer_norm",
                                "adain", "adaptive_group_norm"])
def test_gradient_penalty_matches_torch(op):
    """A WGAN-GP style penalty ||∂<v, y>/∂x||² differentiated again, on a bigger input than
    the gradchecks use: the composite double backward against PyTorch's."""
    rng = np.random.default_rng(7)
    shapes = {"batch_norm": ((6, 4, 3, 5), (4,)), "instance_norm": ((3, 4, 5, 3), (4,)),
              "group_norm": ((3, 6, 4, 2), (6,)), "layer_norm": ((4, 5, 6), (5, 6)),
              "adain": ((3, 4, 3, 5), (3, 4)), "adaptive_group_norm": ((3, 6, 4, 2), (3, 6))}
    xs, ws = shapes[op]
    arrays = [rng.standard_normal(xs) * 2 + 1, rng.standard_normal(ws) + 1.5,
              rng.standard_normal(ws)]
    case = {"batch_norm": lambda: batch_norm_case_of(*arrays),
            "instance_norm": lambda: instance_norm_case_of(*arrays),
            "group_norm": lambda: group_norm_case_of(arrays[0], 3, *arrays[1:]),
            "layer_norm": lambda: layer_norm_case_of(arrays[0], ws, *arrays[1:]),
            "adain": lambda: adain_case_of(*arrays),
            "adaptive_group_norm": lambda: adaptive_group_norm_case_of(arrays[0], 3,
                                                                       *arrays[1:])}[op]()
    v = rng.standard_normal(xs)
    results = []
    for lib, leaves, fn in ((ng, case.leaves(), case.fn),
                            (torch, _torch_leaves(case, np.float64), case.torch_fn)):
        x = leaves[0]
        out = (fn(*leaves) ** 3 * lib.tensor(v)).sum()
        (g,) = lib.autograd.grad(out, x, create_graph=True)
        penalty = (g * g).sum()
        grads = lib.autograd.grad(penalty, leaves)
        results.append([np.asarray(t.detach().numpy()) for t in grads])
    for ours, theirs in zip(*results):
        assert_close(ours, theirs, rtol=1e-8, atol=1e-9, msg=f"{op} penalty gradient")


@needs_torch
@given(n=st.integers(1, 4), c=st.integers(1, 3), length=st.integers(1, 4),
       momentum=st.sampled_from([0.1, 0.5, 1.0]), eps=st.sampled_from([1e-5, 1e-3, 0.5]),
       seed=st.integers(0, 2 ** 16))
def test_functional_batch_norm_running_update_matches_torch(n, c, length, momentum, eps, seed):
    """F.batch_norm in training updates the given buffers in place (same arrays) with the
    unbiased variance; in eval it reads them."""
    if n * length < 2:
        n = 2
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, length)) * 3 + 2
    rm, rv = ng.zeros(c, dtype=ng.float64), ng.ones(c, dtype=ng.float64)
    arrays = rm.data, rv.data
    trm, trv = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
    for _ in range(2):
        y = F.batch_norm(ng.tensor(x), rm, rv, training=True, momentum=momentum, eps=eps)
        ty = _tf().batch_norm(torch.tensor(x), trm, trv, training=True, momentum=momentum,
                              eps=eps)
        assert_close(y, ty.numpy(), rtol=1e-10, atol=1e-10)
    assert rm.data is arrays[0] and rv.data is arrays[1]
    assert_close(rm, trm.numpy(), rtol=1e-12, atol=1e-14)
    assert_close(rv, trv.numpy(), rtol=1e-12, atol=1e-14)
    y = F.batch_norm(ng.tensor(x), rm, rv, training=False, eps=eps)
    ty = _tf().batch_norm(torch.tensor(x), trm, trv, training=False, eps=eps)
    assert_close(y, ty.numpy(), rtol=1e-10, atol=1e-10)


@needs_torch
@pytest.mark.parametrize("cls, shape", [("BatchNorm1d", (5, 3)), ("BatchNorm1d", (4, 3, 6)),
                                        ("BatchNorm2d", (4, 3, 2, 5)),
                                        ("InstanceNorm1d", (4, 3, 6)),
                                        ("InstanceNorm2d", (4, 3, 2, 5)),
                                        ("InstanceNorm2d", (3, 2, 5))])
@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_module_running_statistics_match_torch(cls, shape, momentum):
    """Several training steps (running_mean, running_var, num_batches_tracked, outputs and
    parameter gradients), then eval mode, against the same PyTorch module."""
    kw = dict(momentum=momentum)
    if cls.startswith("Instance"):
        kw.update(affine=True, track_running_stats=True)
    ours = getattr(nn, cls)(3, **kw).double()
    theirs = getattr(torch.nn, cls)(3, **kw).double()
    rng = np.random.default_rng(0)
    with ng.no_grad():
        ours.weight.copy_(rng.uniform(0.5, 1.5, 3))
        ours.bias.copy_(rng.standard_normal(3))
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    for step in range(4):
        x = rng.standard_normal(shape) * (1 + step) + step
        y, ty = ours(ng.tensor(x)), theirs(torch.tensor(x))
        assert_close(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10, msg=f"step {step}")
        gy = rng.standard_normal(shape)
        y.backward(ng.tensor(gy))
        ty.backward(torch.tensor(gy))
    for name, t in theirs.state_dict().items():
        assert_close(ours.state_dict()[name], t.numpy(), rtol=1e-12, atol=1e-14, msg=name)
    assert int(ours.num_batches_tracked.item()) == (4 if cls.startswith("Batch") else 0)
    assert_close(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-9, atol=1e-10)
    assert_close(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-9, atol=1e-10)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape)
    assert_close(ours(ng.tensor(x)), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10,
                 atol=1e-10, msg="eval")


@needs_torch
def test_batch_norm_without_running_stats_uses_batch_statistics_in_eval():
    ours = nn.BatchNorm2d(2, track_running_stats=False).double().eval()
    theirs = torch.nn.BatchNorm2d(2, track_running_stats=False).double().eval()
    x = np.random.default_rng(3).standard_normal((3, 2, 2, 2)) + 4
    assert ours.running_mean is None and "running_mean" not in ours.state_dict()
    assert_close(ours(ng.tensor(x)), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10,
                 atol=1e-10)


def test_train_and_eval_switch_the_statistics():
    m = nn.BatchNorm1d(2).double()
    x = ng.tensor(np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]]))
    y_train = m(x)
    assert_close(y_train.mean(0), [0.0, 0.0], atol=1e-12)
    m.eval()
    before = m.running_mean.numpy().copy()
    y_eval = m(x)
    assert_close(m.running_mean, before)           # eval never updates
    expect = (x.numpy() - before) / np.sqrt(m.running_var.numpy() + m.eps)
    assert_close(y_eval, expect, rtol=1e-12)


# ================================================================ kernels vs references
@st.composite
def geometries(draw):
    """(x, w, b, gy) in the kernels' (A, M, J, S) view with an (Mw, J) weight table."""
    A, Q, Mw = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    J, S = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = (A, Q * Mw, J, S)
    x, gy = (a.astype(dtype) for a in _values(draw, shape, shape))
    w = draw(float64_arrays((Mw, J))).astype(dtype)
    b = draw(float64_arrays((Mw, J))).astype(dtype)
    return x, w, b, gy


@given(geo=geometries(), eps=st.sampled_from([1e-5, 0.1]))
def test_cpu_kernels_match_reference(geo, eps):
    x, w, b, gy = geo
    tol = 1e-12 if x.dtype == np.float64 else 2e-6
    y, mean, var = norm_kernels.forward_cpu(x, w, b, eps)
    ry, rmean, rvar = norm_kernels.reference_forward(x, w, b, eps)
    assert y.dtype == x.dtype
    assert_close(y, ry, rtol=tol, atol=tol)
    assert_close(mean, rmean, rtol=1e-12, atol=1e-12)
    assert_close(var, rvar, rtol=1e-12, atol=1e-12)
    packed = norm_kernels.backward_cpu(gy, x, mean, 1.0 / np.sqrt(var + eps), w)
    assert packed.dtype == x.dtype and packed.size == x.size + 2 * w.size
    separate = norm_kernels.backward_cpu(gy, x, mean, 1.0 / np.sqrt(var + eps), w,
                                         packed=False)
    for got, alone, want in zip(norm_kernels.unpack(packed, x.shape, w.shape), separate,
                                norm_kernels.reference_backward(gy, x, w, eps)):
        assert_close(got, want, rtol=10 * tol, atol=10 * tol)
        assert alone.shape == got.shape and alone.base is None
        assert np.array_equal(alone, got)


@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2 ** 16))
@example(n=2, c=3, h=1, w=1, dtype=np.float32, seed=0)
def test_adain_kernels_match_reference(n, c, h, w, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c, h, w)) * 2 + 1).astype(dtype)
    scale, bias = (rng.standard_normal((n, c)).astype(dtype) for _ in range(2))
    gy = rng.standard_normal((n, c, h, w)).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    y, mean, var = adain_kernels.forward_cpu(x, scale, bias, 1e-5)
    assert_close(y, adain_kernels.reference(x, scale, bias, 1e-5), rtol=tol, atol=tol)
    packed = adain_kernels.backward_cpu(x, scale, gy, mean, 1.0 / np.sqrt(var + 1e-5))
    assert packed.size == x.size + 2 * n * c
    for got, want in zip(adain_kernels.unpack(packed, x.shape),
                         adain_kernels.reference_backward(x, scale, gy, 1e-5)):
        assert_close(got, want, rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize("op", OPS)
def test_plain_and_create_graph_backward_agree(op, monkeypatch):
    """A plain backward runs the kernel unpacked; with create_graph it goes through the packed
    Function: the same gradients either way, and in a plain backward the leaves adopt their
    fresh gradient arrays (a view of a packed buffer would have to be copied)."""
    import weakref
    made = []                       # weak references: a strong one would block the adoption
    real = norm_kernels.backward

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        made[:] = [weakref.ref(a) for a in (out if isinstance(out, tuple) else (out,))]
        return out
    monkeypatch.setattr(norm_kernels, "backward", spy)

    def check(case):
        grads = []
        for create_graph in (False, True):
            leaves = case.leaves()
            out = (case.fn(*leaves) ** 2).sum()
            grads.append(ng.autograd.grad(out, leaves, create_graph=create_graph))
        for plain, graph in zip(*grads):
            assert not plain.requires_grad and graph.requires_grad
            assert np.array_equal(plain.numpy(), graph.detach().numpy())
        leaves = case.leaves()
        y = case.fn(*leaves)
        made.clear()
        y.backward(ng.tensor(np.ones(y.shape)))
        if op == "batch_norm" and not made:
            return                  # eval mode: an affine map of x, no kernel
        assert len(made) == 3 and leaves[0].grad.data is made[0]()
    _run(op, check)


@given(n=st.integers(1, 3), c=st.integers(1, 3), hw=st.integers(1, 9), seed=st.integers(0, 99))
def test_adain_op_matches_reference(n, c, hw, seed):
    """F.adain's output and its three gradients against the plain-NumPy reference."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, hw, 1)) * 3 - 1
    scale, bias, gy = rng.standard_normal((n, c)), rng.standard_normal((n, c)), \
        rng.standard_normal((n, c, hw, 1))
    leaves = [ng.tensor(a, requires_grad=True) for a in (x, scale, bias)]
    y = F.adain(*leaves)
    assert_close(y, adain_kernels.reference(x, scale, bias), rtol=1e-12, atol=1e-12)
    grads = ng.autograd.grad(y, leaves, grad_outputs=ng.tensor(gy))
    for g, want in zip(grads, adain_kernels.reference_backward(x, scale, gy)):
        assert_close(g, want, rtol=1e-10, atol=1e-12)


def test_variance_is_computed_from_centred_values():
    """A large mean with a tiny spread: E[x²] - μ² would lose every digit in float32."""
    x = (1e4 + np.arange(16, dtype=np.float64) * 1e-2).reshape(1, 1, 4, 4)
    x = x.astype(np.float32).astype(np.float64)      # the values float32 can hold
    y = F.instance_norm(ng.tensor(x.astype(np.float32)))
    want = (x - x.mean()) / np.sqrt(x.var() + 1e-5)
    assert_close(y, want, rtol=1e-3, atol=1e-3)


def test_non_contiguous_operands():
    """Permuted inputs, strided weights and broadcast output gradients (from a sum over the
    batch: stride 0)."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((3, 5, 4, 2))
    x = ng.tensor(base, requires_grad=True)
    xt = x.permute(0, 2, 1, 3)                       # (3, 4, 5, 2), not contiguous
    w_all = ng.tensor(rng.standard_normal(8) + 2, requires_grad=True)
    w = w_all[::2]                                   # (4,), stride 2
    c = ng.tensor(rng.standard_normal((4, 5, 2)))
    y = F.group_norm(xt, 2, w)
    (y.sum(0) * c).sum().backward()
    ref = ng.tensor(np.ascontiguousarray(base.transpose(0, 2, 1, 3)), requires_grad=True)
    wc = ng.tensor(w_all.detach().numpy()[::2].copy(), requires_grad=True)
    y_ref = F.group_norm(ref, 2, wc)
    (y_ref * ng.tensor(np.broadcast_to(c.numpy(), y_ref.shape).copy())).sum().backward()
    assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    assert_close(x.grad, ref.grad.numpy().transpose(0, 2, 1, 3), rtol=1e-10, atol=1e-12)
    assert_close(w_all.grad.numpy()[::2], wc.grad, rtol=1e-10, atol=1e-12)


def test_only_requested_gradients_and_float32_kept():
    x = ng.tensor(np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32))
    w = ng.ones(4, requires_grad=True)
    y = F.group_norm(x, 2, w)
    (gw,) = ng.autograd.grad((y * y).sum(), w)
    assert gw.dtype == ng.float32 and gw.shape == (4,)
    assert x.grad is None
    groups = x.numpy().astype(np.float64).reshape(2, 2, 6)
    xhat = (groups - groups.mean(-1, keepdims=True)) / np.sqrt(groups.var(-1, keepdims=True)
                                                              + 1e-5)
    # d/dw Σ (w x̂)² = 2 w Σ_{n, positions} x̂²  (w = 1)
    assert_close(gw, 2 * (xhat.reshape(2, 4, 3) ** 2).sum(axis=(0, 2)), rtol=1e-4)


# ================================================================ modules
def _train_some(module, shape, steps=2, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = ng.tensor(rng.standard_normal(shape).astype(np.float32) + 1, requires_grad=True)
        module(x).sum().backward()


MODULES = [
    (lambda: nn.BatchNorm1d(3), (4, 3, 5)),
    (lambda: nn.BatchNorm2d(3, momentum=None), (4, 3, 2, 2)),
    (lambda: nn.InstanceNorm1d(3, affine=True, track_running_stats=True), (2, 3, 5)),
    (lambda: nn.InstanceNorm2d(3), (2, 3, 2, 3)),
    (lambda: nn.GroupNorm(2, 4), (2, 4, 3)),
    (lambda: nn.LayerNorm((2, 3)), (4, 2, 3)),
    (lambda: nn.LayerNorm(3, bias=False), (4, 3)),
]


@pytest.mark.parametrize("make, shape", MODULES)
def test_state_dict_round_trip_carries_buffers(make, shape, tmp_path):
    src = make()
    _train_some(src, shape)
    with ng.no_grad():
        for p in src.parameters():
            p.copy_(np.random.default_rng(1).uniform(0.5, 1.5, p.shape))
    path = tmp_path / "norm.npz"
    ng.save(src.state_dict(), path)
    dst = make()
    dst.load_state_dict(ng.load(path))
    src_state, dst_state = src.state_dict(), dst.state_dict()
    assert list(src_state) == list(dst_state)
    for key in src_state:
        assert dst_state[key].dtype == src_state[key].dtype, key
        assert_close(dst_state[key], src_state[key], rtol=0, atol=0, msg=key)
    src.eval()
    dst.eval()
    x = ng.tensor(np.random.default_rng(2).standard_normal(shape).astype(np.float32))
    assert_close(dst(x), src(x), rtol=0, atol=0)


def test_batch_norm_buffers_are_registered():
    m = nn.BatchNorm2d(5)
    assert [k for k, _ in m.named_buffers()] == ["running_mean", "running_var",
                                                  "num_batches_tracked"]
    assert m.num_batches_tracked.dtype == ng.int64
    m.double()
    assert m.running_var.dtype == ng.float64 and m.num_batches_tracked.dtype == ng.int64
    assert "running_mean" not in dict(nn.InstanceNorm2d(5).named_buffers())


def test_adain_module_maps_the_style_to_scale_and_bias():
    layer = nn.AdaIN(style_dim=4, channels=3).double()
    bias = layer.affine.bias.detach().numpy()
    assert np.all(bias[:3] == 1.0) and np.all(bias[3:] == 0.0)
    rng = np.random.default_rng(0)
    x, w = ng.tensor(rng.standard_normal((2, 3, 4, 4))), ng.tensor(rng.standard_normal((2, 4)))
    style = (w.numpy() @ layer.affine.weight.detach().numpy().T + bias)
    want = adain_kernels.reference(x.numpy(), style[:, :3], style[:, 3:])
    assert_close(layer(x, w), want, rtol=1e-10, atol=1e-12)
    with ng.no_grad():
        layer.affine.weight.zero_()
    assert_close(layer(x, w), F.instance_norm(x), rtol=1e-12, atol=1e-12)
    w.requires_grad_(True)
    layer(x, w).pow(2).sum().backward()
    assert layer.affine.weight.grad.shape == (6, 4) and w.grad.shape == (2, 4)


# ================================================================ errors
def _x(*shape):
    return ng.randn(*shape)


ERRORS = [
    (lambda: F.batch_norm(_x(2, 3, 4), None, None, ng.ones(4), training=True),
     "input has 3 channels"),
    (lambda: F.batch_norm(_x(2, 3), ng.zeros(4), ng.ones(4)), "input has 3 channels"),
    (lambda: F.batch_norm(_x(1, 3, 1, 1), None, None, training=True),
     "more than 1 value per channel"),
    (lambda: F.batch_norm(_x(2, 3), None, None, training=False), "running_mean"),
    (lambda: F.batch_norm(_x(3), None, None, training=True), "1-D input"),
    (lambda: F.instance_norm(_x(2, 3, 4), weight=ng.ones(2)), "input has 3 channels"),
    (lambda: F.instance_norm(_x(2, 3, 1), ng.zeros(3), ng.ones(3)), "groups of 1 value"),
    (lambda: F.group_norm(_x(2, 6, 4), 4), "num_groups=4 must be a positive divisor of the 6"),
    (lambda: F.group_norm(_x(2, 6, 4), 3, ng.ones(4)), "input has 6 channels"),
    (lambda: F.layer_norm(_x(2, 3, 4), (3,)), r"normalized_shape \(3,\) does not match"),
    (lambda: F.layer_norm(_x(2, 3, 4), 4, ng.ones(3)), "weight has shape"),
    (lambda: F.adain(_x(2, 3, 4), ng.ones(2, 3), ng.zeros(2, 3)), r"\(N, C, H, W\)"),
    (lambda: F.adain(_x(2, 3, 4, 4), ng.ones(3, 2), ng.zeros(2, 3)), "scale must have shape"),
    (lambda: F.adaptive_group_norm(_x(2, 6, 4), 4, None, None),
     "num_groups=4 must be a positive divisor of the 6"),
    (lambda: F.adaptive_group_norm(_x(2, 6, 4), 3, ng.ones(6), None),
     r"scale must have shape \(N, C\) = \(2, 6\)"),
    (lambda: F.adaptive_group_norm(_x(2, 6, 4), 3, None, ng.ones(3, 6)), "bias must have"),
    (lambda: nn.BatchNorm2d(4)(_x(2, 3, 5, 5)), "input has 3 channels"),
    (lambda: nn.BatchNorm2d(3)(_x(2, 3, 5)), "4-D"),
    (lambda: nn.BatchNorm1d(3)(_x(2, 3, 5, 5)), "2-D"),
    (lambda: nn.InstanceNorm2d(3)(_x(2, 4, 5, 5)), "input has 4 channels"),
    (lambda: nn.GroupNorm(4, 6), "divisible"),
    (lambda: nn.GroupNorm(2, 6)(_x(2, 4, 3)), r"\(N, 6, \*\)"),
    (lambda: nn.LayerNorm(5)(_x(2, 4)), "does not match"),
    (lambda: nn.AdaIN(4, 3)(_x(2, 3, 4, 4), _x(2, 5)), "style w of shape"),
    (lambda: nn.AdaIN(4, 3)(_x(2, 2, 4, 4), _x(2, 4)), r"\(N, 3, H, W\)"),
]


@pytest.mark.parametrize("call, match", ERRORS)
def test_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_dtype_mismatch_names_both():
    with pytest.raises(TypeError, match="float32.*float64|float64.*float32"):
        F.layer_norm(_x(2, 3), 3, ng.ones(3, dtype=ng.float64))


def test_module_reprs():
    assert repr(nn.BatchNorm2d(4)) == ("BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, "
                                       "track_running_stats=True)")
    assert repr(nn.GroupNorm(2, 4)) == "GroupNorm(2, 4, eps=1e-05, affine=True)"
    assert repr(nn.LayerNorm(3)) == "LayerNorm((3,), eps=1e-05, elementwise_affine=True)"


def test_empty_normalized_shape_count():
    """numel // prod(normalized_shape) groups; a zero-size batch gives an empty result."""
    y = F.layer_norm(ng.zeros(0, 3), 3)
    assert y.shape == (0, 3)


@given(n=st.integers(1, 3), groups=st.integers(1, 3), per=st.integers(1, 3),
       hw=st.integers(1, 6), seed=st.integers(0, 2 ** 16))
def test_adaptive_group_norm_is_group_norm_then_a_per_sample_affine(n, groups, per, hw, seed):
    """AdaGN against its definition in nanogen's own ops: GroupNorm(x) * scale + bias with
    scale and bias broadcast over the positions -- values and all three gradients."""
    rng = np.random.default_rng(seed)
    c = groups * per
    arrays = [rng.standard_normal((n, c, hw)) * 2 + 1, rng.standard_normal((n, c)) + 1,
              rng.standard_normal((n, c))]
    gy = ng.tensor(rng.standard_normal((n, c, hw)))
    fused = [ng.tensor(a, requires_grad=True) for a in arrays]
    plain = [ng.tensor(a, requires_grad=True) for a in arrays]
    y = F.adaptive_group_norm(fused[0], groups, fused[1], fused[2])
    want = F.group_norm(plain[0], groups) * plain[1][:, :, None] + plain[2][:, :, None]
    assert_close(y, want, rtol=1e-12, atol=1e-12)
    for g, w in zip(ng.autograd.grad(y, fused, grad_outputs=gy),
                    ng.autograd.grad(want, plain, grad_outputs=gy)):
        assert_close(g, w, rtol=1e-10, atol=1e-12)
