"""Pooling, resampling and padding: max / avg / adaptive pooling (1-d and 2-d), interpolate,
pixel_shuffle / pixel_unshuffle, pad, and their modules.

* float64 gradcheck + gradgradcheck of every public op on drawn parameter sets (max pooling on
  tie-free inputs, so a finite-difference step never flips an argmax);
* forward values (and max pooling's indices) against the plain-NumPy references of
  ``nanogen.kernels`` and against PyTorch, in float64 and float32, across kernel / stride /
  padding / dilation / ceil_mode / count_include_pad / divisor_override, every interpolation
  mode with size or scale factor, every pad mode (and np.pad);
* adjoint identities <A x, y> = <x, Aᵀ y> for the linear ops, and Aᵀ's own backward being A,
  on bigger shapes than finite differences can afford;
* conventions: ties go to the first maximum, NaN propagates, coordinate rules of interpolate;
* clear errors for bad input (reflect pad too large, empty outputs, wrong ndim, ...).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import nanogen as ng
import nanogen.functional as F
from nanogen import nn
from nanogen.kernels import pooling as kp
from nanogen.kernels import resample as kr
from nanogen.testing import assert_close, gradcheck, gradgradcheck

from .strategies import distinct_arrays, examples, float64_arrays
from tests.oracle import needs_torch, torch

GRAD_CHECKED = {"max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
                "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
                "interpolate", "pixel_shuffle", "pixel_unshuffle", "pad"}


# ================================================================ drawing parameter sets
class Pool:
    """A drawn pooling call: ``kw`` for the op, the input ``shape``, and the same call for
    PyTorch / the references."""

    def __init__(self, dims, kw, shape):
        self.dims, self.kw, self.shape = dims, kw, shape

    def __repr__(self):
        return f"Pool({self.dims}-d, {self.kw}, shape={self.shape})"


def _maybe_int(draw, values):
    """A tuple of per-dim values, or a plain int when they agree and the draw says so."""
    values = tuple(values)
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return values


@st.composite
def lead_dims(draw, max_planes=2):
    """(N, C) or unbatched (C,), with N·C <= max_planes."""
    c = draw(st.integers(1, max_planes))
    if draw(st.integers(0, 3)) == 0:
        return (c,)
    return (draw(st.integers(1, max_planes // c)), c)


@st.composite
def pool_cases(draw, dims=2, kind="max", max_side=6, max_planes=2, nonempty=True):
    """Consistent (kernel, stride, padding, dilation, ceil_mode, [count_include_pad,
    divisor_override]) and an input size that gives at least one output; with ``nonempty``
    every max-pooling window reaches the input (with dilation or ceil_mode a window may lie
    wholly in the padding: -inf, and no gradient)."""
    k = [draw(st.integers(1, 3)) for _ in range(dims)]
    s = [draw(st.integers(1, 3)) for _ in range(dims)]
    d = [draw(st.integers(1, 2)) if kind == "max" else 1 for _ in range(dims)]
    p = [draw(st.integers(0, kk // 2)) for kk in k]
    ceil_mode = draw(st.booleans())
    sizes = []
    for kk, ss, pp, dd in zip(k, s, p, d):
        least = max(1, dd * (kk - 1) + 1 - 2 * pp)        # one full window fits
        sizes.append(draw(st.integers(least, max(least, max_side))))
        if nonempty and kind == "max":
            out = kp.pool_output_size(sizes[-1], kk, ss, pp, dd, ceil_mode)
            assume(kp.nonempty_windows(*kp.pool_windows(sizes[-1], out, kk, ss, pp, dd),
                                       sizes[-1], dd).all())
    kw = dict(kernel_size=_maybe_int(draw, k), padding=_maybe_int(draw, p), ceil_mode=ceil_mode)
    if draw(st.booleans()) or s != k:
        kw["stride"] = _maybe_int(draw, s)
    if kind == "max":
        kw["dilation"] = _maybe_int(draw, d)
    else:
        kw["count_include_pad"] = draw(st.booleans())
        if dims == 2 and draw(st.integers(0, 3)) == 0:
            kw["divisor_override"] = draw(st.integers(1, 5))
    return Pool(dims, kw, draw(lead_dims(max_planes)) + tuple(sizes))


@st.composite
def adaptive_cases(draw, dims=2, max_side=6):
    ins = [draw(st.integers(1, max_side)) for _ in range(dims)]
    outs = [draw(st.integers(1, max_side)) for _ in range(dims)]
    if dims == 2 and draw(st.integers(0, 3)) == 0:
        outs[draw(st.integers(0, 1))] = None
    out = outs[0] if dims == 1 and draw(st.booleans()) else tuple(outs)
    return Pool(dims, dict(output_size=out), draw(lead_dims()) + tuple(ins))


def _x(draw_or_array, dtype=np.float64):
    return ng.tensor(np.asarray(draw_or_array, dtype=dtype), requires_grad=True)


def _check_grads(fn, x):
    """float64 gradcheck and gradgradcheck of fn at x (an array)."""
    gradcheck(fn, [_x(x)])
    gradgradcheck(fn, [_x(x)])


def _four_d(a, dims):
    """An array of a drawn shape as (N, C, H, W) for the references (H = 1 for 1-d)."""
    a = a if a.ndim == dims + 2 else a[None]
    return a if dims == 2 else a[:, :, None, :]


def _ref_kw(case):
    """The drawn kwargs in 2-d form for the references (1-d: a window of height 1)."""
    kw = dict(case.kw)
    if case.dims == 1:
        def two(v, fill):
            v = v if isinstance(v, tuple) else (v,)
            return (fill,) + tuple(v)
        kw["kernel_size"] = two(kw["kernel_size"], 1)
        kw["padding"] = two(kw["padding"], 0)
        if "stride" in kw:
            kw["stride"] = two(kw["stride"], 1)
        if "dilation" in kw:
            kw["dilation"] = two(kw["dilation"], 1)
    return kw


def _from_four_d(y, case):
    y = y if case.dims == 2 else y[:, :, 0, :]
    return y if len(case.shape) == case.dims + 2 else y[0]


# ================================================================ max pooling
MAX_OPS = {1: F.max_pool1d, 2: F.max_pool2d}


@given(data=st.data(), dims=st.sampled_from([1, 2]))
def test_max_pool_gradients(data, dims):
    case = data.draw(pool_cases(dims, "max", max_side=5))
    x = data.draw(distinct_arrays(case.shape))
    gradcheck(lambda t: MAX_OPS[dims](t, **case.kw), [_x(x)])


@given(data=st.data(), dims=st.sampled_from([1, 2]))
def test_max_pool_second_order(data, dims):
    """The gradient is a scatter linear in the cotangent; its own derivative is the gather."""
    case = data.draw(pool_cases(dims, "max", max_side=4))
    x = data.draw(distinct_arrays(case.shape))
    gradgradcheck(lambda t: MAX_OPS[dims](t, **case.kw), [_x(x)])


@given(data=st.data(), dims=st.sampled_from([1, 2]), dtype=st.sampled_from([np.float64,
                                                                            np.float32]))
def test_max_pool_matches_reference(data, dims, dtype):
    case = data.draw(pool_cases(dims, "max", max_side=7, max_planes=4, nonempty=False))
    x = data.draw(float64_arrays(case.shape)).astype(dtype)
    y, idx = MAX_OPS[dims](ng.tensor(x), return_indices=True, **case.kw)
    ry, ridx = kp.max_pool2d_reference(_four_d(x, dims), **_ref_kw(case))
    assert y.dtype == dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(y.numpy(), _from_four_d(ry, case))
    np.testing.assert_array_equal(idx.numpy(), _from_four_d(ridx, case))
    if torch is not None:     # forward only: PyTorch's backward of an empty window is unsafe
        ty, tidx = getattr(torch.nn.functional, f"max_pool{dims}d")(
            torch.tensor(x), return_indices=True, **case.kw)
        np.testing.assert_array_equal(y.numpy(), ty.numpy())
        np.testing.assert_array_equal(idx.numpy(), tidx.numpy())


def test_max_pool_empty_windows():
    """A window wholly in the padding (a tiny input with dilation) gives -inf, with PyTorch's
    index, and no gradient flows from it, to any order."""
    x = np.arange(3.0).reshape(1, 3, 1)
    kw = dict(kernel_size=2, stride=1, padding=1, dilation=2)    # taps -1 and 1 of [0, 1)
    xt = _x(x)
    y, idx = F.max_pool1d(xt, return_indices=True, **kw)
    ref_y, ref_i = kp.max_pool2d_reference(x[:, :, None, :], (1, 2), (1, 1), (0, 1), (1, 2))
    np.testing.assert_array_equal(y.detach().numpy(), ref_y[:, :, 0])
    np.testing.assert_array_equal(idx.numpy(), ref_i[:, :, 0])
    assert np.isneginf(y.detach().numpy()).all() and (idx.numpy() == 1).all()
    v = _x(np.ones(tuple(y.shape)))
    (g,) = ng.autograd.grad(y, xt, v, create_graph=True)
    assert_close(g, np.zeros(x.shape))
    (gv,) = ng.autograd.grad((g * ng.tensor(x + 1.0)).sum(), v)
    assert_close(gv, np.zeros(tuple(y.shape)))
    x2 = np.arange(12.0).reshape(1, 2, 6, 1)          # 2-d: every column window is empty
    y2 = F.max_pool2d(_x(x2), (2, 2), 1, (1, 1), (1, 2))
    assert np.isneginf(y2.detach().numpy()).all()


@needs_torch
@given(data=st.data(), dims=st.sampled_from([1, 2]), dtype=st.sampled_from([np.float64,
                                                                            np.float32]))
def test_max_pool_matches_torch(data, dims, dtype):
    case = data.draw(pool_cases(dims, "max", max_side=7, max_planes=4))
    x = data.draw(distinct_arrays(case.shape)).astype(dtype)
    xt, tx = _x(x, dtype), torch.tensor(x, requires_grad=True)
    y, idx = MAX_OPS[dims](xt, return_indices=True, **case.kw)
    ty, tidx = getattr(torch.nn.functional, f"max_pool{dims}d")(tx, return_indices=True,
                                                                 **case.kw)
    assert_close(y, ty.detach().numpy(), rtol=0, atol=0)
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    gy = np.random.default_rng(0).standard_normal(tuple(y.shape)).astype(dtype)
    (gx,) = ng.autograd.grad(y, xt, ng.tensor(gy))
    (tgx,) = torch.autograd.grad(ty, tx, torch.tensor(gy))
    assert_close(gx, tgx.numpy(), rtol=1e-6, atol=1e-6)


@given(data=st.data())
def test_max_pool_backward_is_the_scatter_to_the_argmax(data):
    """The gradient equals the reference scatter of gy to the returned indices, and the scatter
    is the adjoint of gathering at those indices: <scatter(v), z> = <v, z[idx]>."""
    case = data.draw(pool_cases(2, "max", max_side=7, max_planes=4))
    x = data.draw(float64_arrays(case.shape))
    xt = _x(x)
    y, idx = F.max_pool2d(xt, return_indices=True, **case.kw)
    v = data.draw(float64_arrays(tuple(y.shape)))
    (gx,) = ng.autograd.grad(y, xt, ng.tensor(v))
    H, W = x.shape[-2:]
    ref = kp.max_pool2d_backward_reference(_four_d(v, 2), _four_d(idx.numpy(), 2), H, W)
    assert_close(gx, ref.reshape(x.shape), rtol=1e-12, atol=1e-12)
    z = data.draw(float64_arrays(case.shape))
    flat = z.reshape(z.shape[:-2] + (-1,))
    gathered = np.take_along_axis(flat, idx.numpy().reshape(idx.shape[:-2] + (-1,)), axis=-1)
    assert math.isclose(float((gx.numpy() * z).sum()), float((v.reshape(gathered.shape)
                                                                * gathered).sum()),
                        rel_tol=1e-9, abs_tol=1e-9)


def test_max_pool_ties_go_to_the_first_maximum():
    """Equal values in a window: PyTorch's convention, the first in row-major window order
    (also across overlapping windows and padding), and all the gradient goes there."""
    x = np.zeros((1, 1, 4, 5))
    x[0, 0, 1:3, 1:4] = 1.0                        # a plateau of maxima
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
               dict(kernel_size=2, stride=1, dilation=2)):
        xt = _x(x)
        y, idx = F.max_pool2d(xt, return_indices=True, **kw)
        y.sum().backward()
        ref_i = kp.max_pool2d_reference(x, **kw)[1]
        y = y.detach().numpy()
        Ho, Wo = y.shape[-2:]
        for oh in range(Ho):
            for ow in range(Wo):
                i = int(idx.numpy()[0, 0, oh, ow])
                assert i == ref_i[0, 0, oh, ow]
                r, c = divmod(i, 5)
                assert x[0, 0, r, c] == y[0, 0, oh, ow]
                # no earlier (row-major) tap of the window reaches the maximum
                k, s = kw["kernel_size"], kw.get("stride", kw["kernel_size"])
                p, d = kw.get("padding", 0), kw.get("dilation", 1)
                taps = [(oh * s - p + a * d, ow * s - p + b * d) for a in range(k)
                        for b in range(k)]
                taps = [(a, b) for a, b in taps if 0 <= a < 4 and 0 <= b < 5]
                first = next(t for t in taps if x[0, 0][t] == y[0, 0, oh, ow])
                assert (r, c) == first
        counts = np.zeros(20)
        np.add.at(counts, idx.numpy().reshape(-1), 1.0)
        assert_close(xt.grad.numpy().reshape(-1), counts)


@needs_torch
def test_max_pool_nan_and_ties_match_torch():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (2, 3, 6, 7)).astype(np.float32)     # many ties
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = x[1, 2, 0, 0] = x[1, 1, 5, 6] = np.nan
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
               dict(kernel_size=2, dilation=2, padding=1, ceil_mode=True)):
        y, i = F.max_pool2d(ng.tensor(x), return_indices=True, **kw)
        ty, ti = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kw)
        np.testing.assert_array_equal(y.numpy(), ty.numpy())      # NaNs in the same places
        np.testing.assert_array_equal(i.numpy(), ti.numpy())


@given(data=st.data(), dims=st.sampled_from([1, 2]))
def test_adaptive_max_pool_gradients(data, dims):
    case = data.draw(adaptive_cases(dims, max_side=5))
    x = data.draw(distinct_arrays(case.shape))
    op = F.adaptive_max_pool1d if dims == 1 else F.adaptive_max_pool2d
    _check_grads(lambda t: op(t, **case.kw), x)


@given(data=st.data(), dims=st.sampled_from([1, 2]))
def test_adaptive_max_pool_matches_reference_and_torch(data, dims):
    case = data.draw(adaptive_cases(dims, max_side=8))
    x = data.draw(distinct_arrays(case.shape))
    op = F.adaptive_max_pool1d if dims == 1 else F.adaptive_max_pool2d
    y, idx = op(ng.tensor(x), return_indices=True, **case.kw)
    out = _adaptive_out(case, x.shape)
    ry, ri = kp.adaptive_max_pool2d_reference(_four_d(x, dims), out)
    assert_close(y, _from_four_d(ry, case), rtol=0, atol=0)
    np.testing.assert_array_equal(idx.numpy(), _from_four_d(ri, case))
    if torch is not None:
        tf = getattr(torch.nn.functional, f"adaptive_max_pool{dims}d")
        ty, ti = tf(torch.tensor(x), return_indices=True, **case.kw)
        assert_close(y, ty.numpy(), rtol=0, atol=0)
        np.testing.assert_array_equal(idx.numpy(), ti.numpy())


def _adaptive_out(case, shape):
    """The (Ho, Wo) of a drawn adaptive case (1-d: (1, L))."""
    o = case.kw["output_size"]
    o = o if isinstance(o, tuple) else (o,) * case.dims
    ins = shape[-case.dims:]
    o = tuple(i if v is None else v for i, v in zip(ins, o))
    return o if case.dims == 2 else (1,) + o


# ================================================================ average pooling
AVG_OPS = {1: F.avg_pool1d, 2: F.avg_pool2d}


@given(data=st.data(), dims=st.sampled_from([1, 2]))
def test_avg_pool_gradients(data, dims):
    case = data.draw(pool_cases(dims, "avg", max_side=5))
    x = data.draw(float64_arrays(case.shape))
    gradcheck(lambda t: AVG_OPS[dims](t, **case.kw), [_x(x)])


@given(data=st.data(), dims=st.sampled_from([1, 2]))
def test_avg_pool_second_order(data, dims):
    case = data.draw(pool_cases(dims, "avg", max_side=4))
    x = data.draw(float64_arrays(case.shape))
    gradgradcheck(lambda t: AVG_OPS[dims](t, **case.kw), [_x(x)])


@given(data=st.data(), dims=st.sampled_from([1, 2]), dtype=st.sampled_from([np.float64,
                                                                            np.float32]))
def test_avg_pool_matches_reference_and_torch(data, dims, dtype):
    case = data.draw(pool_cases(dims, "avg", max_side=7, max_planes=4))
    x = data.draw(float64_arrays(case.shape)).astype(dtype)
    _compare_avg_pool(case, x, dtype)


def test_avg_pool_ceil_mode_window_in_the_padding():
    """With ceil_mode the last window may start in the padding and hang past it: its count
    is clipped to the padded input (count_include_pad) or to the input."""
    for cip in (True, False):
        case = Pool(2, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                            count_include_pad=cip), (1, 1, 6, 6))
        _compare_avg_pool(case, np.arange(36.0).reshape(case.shape), np.float64)


def _compare_avg_pool(case, x, dtype):
    dims = case.dims
    y = AVG_OPS[dims](ng.tensor(x), **case.kw)
    assert y.dtype == dtype
    ref = kp.avg_pool2d_reference(_four_d(x, dims), **_ref_kw(case))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    assert_close(y, _from_four_d(ref, case), rtol=tol, atol=tol)
    if torch is not None:
        tf = getattr(torch.nn.functional, f"avg_pool{dims}d")
        assert_close(y, tf(torch.tensor(x), **case.kw).numpy(), rtol=tol, atol=tol)


@given(data=st.data(), dims=st.sampled_from([1, 2]))
def test_adaptive_avg_pool_gradients(data, dims):
    case = data.draw(adaptive_cases(dims, max_side=5))
    x = data.draw(float64_arrays(case.shape))
    op = F.adaptive_avg_pool1d if dims == 1 else F.adaptive_avg_pool2d
    _check_grads(lambda t: op(t, **case.kw), x)


@given(data=st.data(), dims=st.sampled_from([1, 2]), dtype=st.sampled_from([np.float64,
                                                                            np.float32]))
def test_adaptive_avg_pool_matches_reference_and_torch(data, dims, dtype):
    case = data.draw(adaptive_cases(dims, max_side=9))
    x = data.draw(float64_arrays(case.shape)).astype(dtype)
    op = F.adaptive_avg_pool1d if dims == 1 else F.adaptive_avg_pool2d
    y = op(ng.tensor(x), **case.kw)
    ref = kp.adaptive_avg_pool2d_reference(_four_d(x, dims), _adaptive_out(case, x.shape))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    assert_close(y, _from_four_d(ref, case), rtol=tol, atol=tol)
    if torch is not None:
        tf = getattr(torch.nn.functional, f"adaptive_avg_pool{dims}d")
        assert_close(y, tf(torch.tensor(x), **case.kw).numpy(), rtol=tol, atol=tol)


# ================================================================ interpolate
SCALES = [0.5, 0.6, 1.0, 1.5, 1.7, 2.0, 2.5, 3.0]


class Interp:
    def __init__(self, kw, shape):
        self.kw, self.shape = kw, shape

    @property
    def dims(self):
        return len(self.shape) - 2

    def __repr__(self):
        return f"Interp({self.kw}, shape={self.shape})"


@st.composite
def interp_cases(draw, max_in=5, max_out=7, modes=None):
    dims = draw(st.sampled_from([1, 2]))
    mode = draw(st.sampled_from(modes or ["nearest", "nearest-exact", "area",
                                          "linear" if dims == 1 else "bilinear"]))
    if mode in ("linear", "bilinear"):
        mode = "linear" if dims == 1 else "bilinear"
    ins = tuple(draw(st.integers(1, max_in)) for _ in range(dims))
    kw = dict(mode=mode)
    if draw(st.booleans()):
        outs = tuple(draw(st.integers(1, max_out)) for _ in range(dims))
        kw["size"] = outs[0] if dims == 1 or (len(set(outs)) == 1 and draw(st.booleans())) \
            else outs
    else:
        scales = tuple(draw(st.sampled_from([s for s in SCALES if math.floor(n * s) >= 1]))
                       for n in ins)
        kw["scale_factor"] = scales[0] if len(set(scales)) == 1 and draw(st.booleans()) \
            else scales
        if mode != "area" and draw(st.booleans()):
            kw["recompute_scale_factor"] = draw(st.booleans())
    if mode in ("linear", "bilinear") and draw(st.booleans()):
        kw["align_corners"] = draw(st.booleans())
    return Interp(kw, (draw(st.integers(1, 2)), draw(st.integers(1, 2))) + ins)


def _interp_reference(x, case):
    """The reference's answer for a drawn case (area: adaptive average pooling)."""
    dims, kw = case.dims, case.kw
    ins = x.shape[2:]
    if "size" in kw:
        s = kw["size"]
        outs = tuple(s) if isinstance(s, tuple) else (s,) * dims
        scales = (None,) * dims
    else:
        sf = kw["scale_factor"]
        sf = tuple(sf) if isinstance(sf, tuple) else (sf,) * dims
        outs = tuple(math.floor(n * s) for n, s in zip(ins, sf))
        scales = (None,) * dims if kw.get("recompute_scale_factor") else sf
    x4 = x if dims == 2 else x[:, :, None, :]
    if dims == 1:
        outs, scales = (1,) + outs, (None,) + scales
    if kw["mode"] == "area":
        y = kp.adaptive_avg_pool2d_reference(x4, outs)
    else:
        mode = "linear" if kw["mode"] in ("linear", "bilinear") else kw["mode"]
        y = kr.interpolate_reference(x4, outs, mode, bool(kw.get("align_corners")), scales)
    return y if dims == 2 else y[:, :, 0, :]


@given(case=interp_cases(max_in=4, max_out=5), data=st.data())
def test_interpolate_gradients(case, data):
    x = data.draw(float64_arrays(case.shape))
    _check_grads(lambda t: F.interpolate(t, **case.kw), x)


@given(data=st.data(), dtype=st.sampled_from([np.float64, np.float32]))
@examples(2.5)
def test_interpolate_matches_reference_and_torch(data, dtype):
    case = data.draw(interp_cases(max_in=7, max_out=11))
    x = data.draw(float64_arrays(case.shape)).astype(dtype)
    y = F.interpolate(ng.tensor(x), **case.kw)
    assert y.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert_close(y, _interp_reference(x, case), rtol=tol, atol=tol)
    if torch is not None:
        ty = torch.nn.functional.interpolate(torch.tensor(x), **case.kw)
        assert_close(y, ty.numpy(), rtol=tol, atol=tol)


def test_interpolate_coordinate_conventions():
    """The documented formulas on small cases worked by hand."""
    x = ng.tensor(np.array([[[10.0, 20.0]]]))              # (1, 1, 2)
    # nearest: src = floor(dst · in/out): 2 -> 3 reads 0, 0, 1
    assert F.interpolate(x, size=3, mode="nearest").tolist() == [[[10.0, 10.0, 20.0]]]
    # nearest-exact: src = floor((dst + 0.5) · in/out): reads 0, 1, 1
    assert F.interpolate(x, size=3, mode="nearest-exact").tolist() == [[[10.0, 20.0, 20.0]]]
    # linear, align_corners=True: the end points are kept, the middle is their mean
    assert_close(F.interpolate(x, size=3, mode="linear", align_corners=True), [[[10., 15., 20.]]])
    # linear, align_corners=False: src = (dst + 0.5)·2/3 - 0.5 = -1/6 (clamped to 0), 1/2, 7/6
    assert_close(F.interpolate(x, size=3, mode="linear"), [[[10.0, 15.0, 20.0]]])
    assert_close(F.interpolate(x, size=4, mode="linear"), [[[10.0, 12.5, 17.5, 20.0]]])
    # a given scale factor is used as is (s = 1/scale), unless recomputed from the sizes
    y5 = ng.tensor(np.arange(5.0)[None, None])
    near = F.interpolate(y5, scale_factor=1.7, mode="nearest").numpy()[0, 0]
    assert near.tolist() == [math.floor(i / 1.7) for i in range(8)] == [0, 0, 1, 1, 2, 2, 3, 4]
    near = F.interpolate(y5, scale_factor=1.7, mode="nearest",
                         recompute_scale_factor=True).numpy()[0, 0]
    assert near.tolist() == [math.floor(i * 5 / 8) for i in range(8)] == [0, 0, 1, 1, 2, 3, 3, 4]


# ================================================================ pixel shuffle
@st.composite
def shuffle_cases(draw):
    r = draw(st.integers(1, 3))
    lead = tuple(draw(st.lists(st.integers(1, 2), max_size=2)))
    c, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return r, lead + (c * r * r, h, w)


@given(case=shuffle_cases(), data=st.data())
def test_pixel_shuffle_gradients_and_inverse(case, data):
    r, shape = case
    x = data.draw(float64_arrays(shape))
    _check_grads(lambda t: F.pixel_shuffle(t, r), x)
    y = F.pixel_shuffle(ng.tensor(x), r)
    assert y.shape == shape[:-3] + (shape[-3] // (r * r), shape[-2] * r, shape[-1] * r)
    _check_grads(lambda t: F.pixel_unshuffle(t, r), y.numpy())
    assert_close(F.pixel_unshuffle(y, r), x, rtol=0, atol=0)       # unshuffle ∘ shuffle = id
    assert_close(F.pixel_shuffle(F.pixel_unshuffle(y, r), r), y, rtol=0, atol=0)
    # the definition: y[*, c, h·r + i, w·r + j] = x[*, c·r² + i·r + j, h, w]
    for i in range(r):
        for j in range(r):
            assert_close(y.numpy()[..., i::r, j::r], x[..., i * r + j::r * r, :, :])
    if torch is not None:
        assert_close(y, torch.nn.functional.pixel_shuffle(torch.tensor(x), r).numpy())
        assert_close(F.pixel_unshuffle(y, r),
                     torch.nn.functional.pixel_unshuffle(torch.tensor(y.numpy()), r).numpy())


# ================================================================ pad
class Pad:
    def __init__(self, pad, mode, value, shape):
        self.pad, self.mode, self.value, self.shape = pad, mode, value, shape

    def __repr__(self):
        return f"Pad({self.pad}, {self.mode!r}, value={self.value}, shape={self.shape})"


@st.composite
def pad_cases(draw, max_side=4, negative=True):
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    k = draw(st.integers(1, 3))
    ndim = draw(st.integers(k, k + 2)) if mode == "constant" else draw(st.integers(k + 1, k + 2))
    shape = tuple(draw(st.integers(1, 2)) for _ in range(ndim - k)) + \
        tuple(draw(st.integers(1, max_side)) for _ in range(k))
    pad = []
    for axis in range(k):
        n = shape[-1 - axis]
        lo_min = -(n - 1) if negative else 0
        if mode == "constant":
            lo = draw(st.integers(-n if negative else 0, 3))
            hi = draw(st.integers(max(-n - lo, -n) if negative else 0, 3))
        else:
            lo = draw(st.integers(lo_min, n - 1 if mode == "reflect" else 3))
            kept = n - max(-lo, 0)
            hi_min = -(kept - 1) if negative else 0
            hi = draw(st.integers(hi_min, n - 1 if mode == "reflect" else 3))
            if mode == "circular":
                kept = n - max(-lo, 0) - max(-hi, 0)
                lo, hi = min(lo, kept), min(hi, kept)
        pad += [lo, hi]
    value = draw(st.sampled_from([0.0, 1.5])) if mode == "constant" else None
    return Pad(tuple(pad), mode, value, shape)


@given(case=pad_cases(max_side=3), data=st.data())
def test_pad_gradients(case, data):
    x = data.draw(float64_arrays(case.shape))
    _check_grads(lambda t: F.pad(t, case.pad, case.mode, case.value), x)


@needs_torch
@given(case=pad_cases(max_side=5), data=st.data())
def test_pad_matches_torch(case, data):
    x = data.draw(float64_arrays(case.shape))
    y = F.pad(ng.tensor(x), case.pad, case.mode, case.value)
    ty = torch.nn.functional.pad(torch.tensor(x), case.pad, case.mode, case.value)
    assert tuple(y.shape) == tuple(ty.shape)
    assert_close(y, ty.numpy(), rtol=0, atol=0)


@given(case=pad_cases(max_side=5, negative=False), data=st.data())
def test_pad_matches_numpy(case, data):
    x = data.draw(float64_arrays(case.shape)).astype(np.float32)
    k = len(case.pad) // 2
    widths = [(0, 0)] * (x.ndim - k) + [(case.pad[2 * i], case.pad[2 * i + 1])
                                         for i in reversed(range(k))]
    np_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
               "circular": "wrap"}[case.mode]
    kwargs = {"constant_values": case.value} if case.mode == "constant" else {}
    y = F.pad(ng.tensor(x), case.pad, case.mode, case.value)
    assert y.dtype == np.float32
    assert_close(y, np.pad(x, widths, mode=np_mode, **kwargs), rtol=0, atol=0)


# ================================================================ adjoint identities
LINEAR = [
    ("avg_pool2d", (2, 3, 9, 8), lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True)),
    ("avg_pool2d no pad count", (2, 3, 9, 8),
     lambda t: F.avg_pool2d(t, (2, 3), (1, 2), 1, count_include_pad=False)),
    ("avg_pool2d divisor", (2, 3, 9, 8), lambda t: F.avg_pool2d(t, 2, divisor_override=3)),
    ("adaptive_avg_pool2d", (2, 3, 9, 8), lambda t: F.adaptive_avg_pool2d(t, (4, 5))),
    ("avg_pool1d", (2, 3, 11), lambda t: F.avg_pool1d(t, 3, 2, 1)),
    ("nearest up", (2, 3, 5, 4), lambda t: F.interpolate(t, scale_factor=2)),
    ("nearest odd", (2, 3, 5, 4), lambda t: F.interpolate(t, size=(7, 3))),
    ("nearest-exact", (2, 3, 5, 4), lambda t: F.interpolate(t, size=(3, 9),
                                                            mode="nearest-exact")),
    ("bilinear", (2, 3, 5, 4), lambda t: F.interpolate(t, size=(9, 7), mode="bilinear")),
    ("bilinear corners", (2, 3, 5, 4),
     lambda t: F.interpolate(t, size=(3, 10), mode="bilinear", align_corners=True)),
    ("linear", (2, 3, 6), lambda t: F.interpolate(t, scale_factor=1.7, mode="linear")),
    ("pixel_shuffle", (2, 8, 3, 4), lambda t: F.pixel_shuffle(t, 2)),
    ("pad constant", (2, 3, 5, 4), lambda t: F.pad(t, (2, -1, 1, 3), value=0.0)),
    ("pad reflect", (2, 3, 5, 4), lambda t: F.pad(t, (3, 2, 4, -1), "reflect")),
    ("pad replicate", (2, 3, 5, 4), lambda t: F.pad(t, (5, 2, 1, 6), "replicate")),
    ("pad circular", (2, 3, 5, 4), lambda t: F.pad(t, (4, 2, -1, 3), "circular")),
]


@pytest.mark.parametrize("name, shape, fn", LINEAR, ids=[c[0] for c in LINEAR])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adjoint_identities(name, shape, fn, dtype):
    """<A x, v> = <x, Aᵀ v> with Aᵀ the backward op, and Aᵀ's own backward is A:
    <Aᵀ v, z> differentiated in v gives A z."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dtype)
    xt = _x(x, dtype)
    y = fn(xt)
    v = ng.tensor(rng.standard_normal(tuple(y.shape)).astype(dtype), requires_grad=True)
    (atv,) = ng.autograd.grad(y, xt, v, create_graph=True)
    assert atv.dtype == dtype
    tol = 1e-4 if dtype == np.float32 else 1e-10
    lhs = float((y.detach().numpy().astype(np.float64) * v.detach().numpy()).sum())
    rhs = float((x.astype(np.float64) * atv.detach().numpy()).sum())
    assert math.isclose(lhs, rhs, rel_tol=tol, abs_tol=tol)
    z = rng.standard_normal(shape).astype(dtype)
    (az,) = ng.autograd.grad((atv * ng.tensor(z)).sum(), v)
    assert_close(az, fn(ng.tensor(z)), rtol=tol, atol=tol)


@given(data=st.data())
def test_avg_pool_backward_matches_reference_scatter(data):
    case = data.draw(pool_cases(2, "avg", max_side=7, max_planes=4))
    x = data.draw(float64_arrays(case.shape))
    xt = _x(x)
    y = F.avg_pool2d(xt, **case.kw)
    v = data.draw(float64_arrays(tuple(y.shape)))
    (gx,) = ng.autograd.grad(y, xt, ng.tensor(v))
    kw = case.kw
    k = kw["kernel_size"]
    k = k if isinstance(k, tuple) else (k, k)
    s = kw.get("stride", k)
    s = s if isinstance(s, tuple) else (s, s)
    p = kw["padding"] if isinstance(kw["padding"], tuple) else (kw["padding"],) * 2
    H, W = x.shape[-2:]
    Ho, Wo = y.shape[-2:]
    args = [kp.avg_pool_windows(n, o, kk, ss, pp, kw["count_include_pad"],
                                kw.get("divisor_override"), first_axis=(ax == 0))
            for ax, (n, o, kk, ss, pp) in enumerate(zip((H, W), (Ho, Wo), k, s, p))]
    v4 = _four_d(v, 2)
    ref = kp.window_avg_adjoint_reference(v4.reshape(-1, Ho, Wo), *args[0], *args[1], H, W)
    assert_close(gx, ref.reshape(x.shape), rtol=1e-12, atol=1e-12)


# ================================================================ dtypes, layouts, modules
def test_float32_in_float32_out_and_gradients():
    x = ng.tensor(np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(np.float32),
                  requires_grad=True)
    outs = [F.max_pool2d(x, 2), F.avg_pool2d(x, 3, 1, 1), F.adaptive_avg_pool2d(x, 2),
            F.adaptive_max_pool2d(x, 3), F.interpolate(x, scale_factor=2),
            F.interpolate(x, size=5, mode="bilinear"), F.pixel_shuffle(x, 2),
            F.pixel_unshuffle(x, 2), F.pad(x, (1, 1, 2, 2), "reflect"), F.pad(x, (1, 2))]
    for y in outs:
        assert y.dtype == np.float32
        (g,) = ng.autograd.grad(y.sum(), x)
        assert g.dtype == np.float32


def test_non_contiguous_input():
    base = np.random.default_rng(1).standard_normal((2, 6, 5, 3))
    xt = ng.tensor(base).permute(0, 3, 1, 2)            # (2, 3, 6, 5), not contiguous
    x = np.ascontiguousarray(base.transpose(0, 3, 1, 2))
    assert_close(F.max_pool2d(xt, 2, 1), kp.max_pool2d_reference(x, 2, 1)[0])
    assert_close(F.avg_pool2d(xt, 3, 2, 1), kp.avg_pool2d_reference(x, 3, 2, 1))
    assert_close(F.interpolate(xt, size=(4, 7), mode="bilinear"),
                 kr.interpolate_reference(x, (4, 7), "linear"))


def test_empty_batch():
    """N = 0 flows through every op, forward and backward (and the backward's backward)."""
    x = ng.zeros(0, 3, 4, 4, requires_grad=True)
    for fn in (lambda t: F.max_pool2d(t, 2), lambda t: F.avg_pool2d(t, 3, 1, 1),
               lambda t: F.adaptive_avg_pool2d(t, 1), lambda t: F.interpolate(t, size=5),
               lambda t: F.interpolate(t, scale_factor=2, mode="bilinear"),
               lambda t: F.pad(t, (1, 1, 1, 1), "reflect"), lambda t: F.pad(t, (1, -1)),
               lambda t: F.pixel_unshuffle(t, 2)):
        y = fn(x)
        assert y.shape[0] == 0
        v = ng.zeros(*y.shape, requires_grad=True)
        (g,) = ng.autograd.grad(y, x, v, create_graph=True)
        assert g.shape == x.shape
        (gv,) = ng.autograd.grad(g.sum(), v, allow_unused=True)
        assert gv is None or gv.shape == v.shape


MODULES = [
    ("MaxPool2d(2)", (2, 3, 6, 7)),
    ("MaxPool2d((2, 3), stride=1, padding=1, ceil_mode=True, return_indices=True)",
     (2, 3, 6, 7)),
    ("MaxPool1d(3, 2, 1)", (2, 3, 8)),
    ("AvgPool2d(3, 1, 1, True, False, 2)", (2, 3, 6, 7)),
    ("AvgPool1d(2)", (2, 3, 8)),
    ("AdaptiveAvgPool2d((2, None))", (2, 3, 6, 7)),
    ("AdaptiveAvgPool1d(3)", (2, 3, 8)),
    ("AdaptiveMaxPool2d(3, return_indices=True)", (2, 3, 6, 7)),
    ("AdaptiveMaxPool1d(3)", (2, 3, 8)),
    ("Upsample(scale_factor=2)", (2, 3, 4, 5)),
    ("Upsample(size=(3, 4), mode='bilinear', align_corners=True)", (2, 3, 4, 5)),
    ("Upsample(scale_factor=1.5, mode='linear')", (2, 3, 5)),
    ("UpsamplingNearest2d(scale_factor=2)", (2, 3, 4, 5)),
    ("UpsamplingBilinear2d(size=5)", (2, 3, 4, 5)),
    ("PixelShuffle(2)", (2, 8, 3, 4)),
    ("PixelUnshuffle(2)", (2, 2, 4, 6)),
    ("ZeroPad2d((1, 2, 3, 4))", (2, 3, 4, 5)),
    ("ZeroPad1d(2)", (2, 3, 4)),
    ("ConstantPad1d(2, 3.5)", (2, 3, 4)),
    ("ConstantPad2d((1, 2, 0, 1), -1.0)", (2, 3, 4, 5)),
    ("ConstantPad3d(1, 2.0)", (2, 3, 4, 5)),
    ("ReflectionPad1d(2)", (2, 3, 4)),
    ("ReflectionPad2d((1, 1, 2, 0))", (2, 3, 4, 5)),
    ("ReplicationPad1d(3)", (2, 3, 4)),
    ("ReplicationPad2d(2)", (2, 3, 4, 5)),
    ("CircularPad1d(1)", (2, 3, 4)),
    ("CircularPad2d(1)", (2, 3, 4, 5)),
]


@needs_torch
@pytest.mark.parametrize("expr, shape", MODULES, ids=[m[0] for m in MODULES])
def test_modules_match_torch(expr, shape):
    ours, theirs = eval("nn." + expr), eval("torch.nn." + expr)
    assert repr(ours) == repr(theirs)
    x = np.random.default_rng(2).standard_normal(shape)
    y, ty = ours(ng.tensor(x)), theirs(torch.tensor(x))
    if isinstance(ty, tuple):
        assert_close(y[0], ty[0].numpy())
        np.testing.assert_array_equal(y[1].numpy(), ty[1].numpy())
    else:
        assert_close(y, ty.numpy())


def test_modules_without_torch():
    """The modules call their functional op with their hyper-parameters."""
    x = ng.tensor(np.random.default_rng(4).standard_normal((2, 4, 6, 6)))
    assert_close(nn.MaxPool2d(3, 2, 1)(x), F.max_pool2d(x, 3, 2, 1))
    assert_close(nn.AvgPool2d(2, count_include_pad=False)(x), F.avg_pool2d(x, 2))
    assert_close(nn.Upsample(scale_factor=2, mode="bilinear")(x),
                 F.interpolate(x, scale_factor=2, mode="bilinear"))
    assert_close(nn.ReflectionPad2d(2)(x), F.pad(x, (2, 2, 2, 2), "reflect"))
    assert nn.ZeroPad2d((1, 2, 3, 4)).padding == (1, 2, 3, 4)
    assert repr(nn.AvgPool2d(2)) == "AvgPool2d(kernel_size=2, stride=2, padding=0)"


# ================================================================ errors
ERRORS = [
    (lambda: F.pad(ng.ones(1, 2, 3), (3, 0), "reflect"), "smaller than the size 3"),
    (lambda: F.pad(ng.ones(1, 2, 3), (0, 4), "circular"), "wrap around at most once"),
    (lambda: F.pad(ng.ones(2, 3, 4, 5), (1, 1), "reflect"), "last 1, 2 or 3 dims"),
    (lambda: F.pad(ng.ones(2, 3), (1, 1, 1)), r"\(left, right\) pairs"),
    (lambda: F.pad(ng.ones(2, 3), (-2, -2)), "negative size"),
    (lambda: F.pad(ng.ones(2, 3), (1, 1), "wrap"), "unknown mode"),
    (lambda: F.max_pool2d(ng.ones(1, 1, 2, 2), 3), "output size is too small"),
    (lambda: F.avg_pool2d(ng.ones(1, 1, 2, 2), 3), "output size is too small"),
    (lambda: F.max_pool2d(ng.ones(2, 2), 1), r"4-D \(N, C, H, W\) or unbatched"),
    (lambda: F.max_pool1d(ng.ones(2, 2, 2, 2), 1), "3-D"),
    (lambda: F.max_pool2d(ng.ones(1, 1, 5, 5), 3, padding=2), "at most half"),
    (lambda: F.max_pool2d(ng.ones(1, 1, 5, 5), 2, stride=0), "must be positive"),
    (lambda: F.avg_pool2d(ng.ones(1, 1, 5, 5), 2, divisor_override=0), "divisor_override"),
    (lambda: F.adaptive_avg_pool2d(ng.ones(1, 1, 2, 2), 0), "output size must be positive"),
    (lambda: F.adaptive_max_pool2d(ng.ones(1, 1, 2, 2), (1, 2, 3)), "tuple of 2"),
    (lambda: F.interpolate(ng.ones(1, 1, 2, 2), scale_factor=0.1), "sizes must be positive"),
    (lambda: F.interpolate(ng.ones(1, 1, 2, 2)), "exactly one of size and scale_factor"),
    (lambda: F.interpolate(ng.ones(1, 1, 2, 2), size=3, scale_factor=2), "exactly one"),
    (lambda: F.interpolate(ng.ones(1, 2, 2), size=4, mode="bilinear"), "needs a 4-D input"),
    (lambda: F.interpolate(ng.ones(1, 1, 2, 2), size=4, mode="linear"), "needs a 3-D input"),
    (lambda: F.interpolate(ng.ones(1, 1, 2, 2), size=4, align_corners=True), "align_corners"),
    (lambda: F.interpolate(ng.ones(1, 1, 2, 2), size=4, mode="bicubic"), "not supported"),
    (lambda: F.interpolate(ng.ones(2, 2), size=4), "3-D .* or 4-D"),
    (lambda: F.interpolate(ng.ones(1, 1, 2, 2), size=(4, 4, 4)), "has 3 entries"),
    (lambda: F.pixel_shuffle(ng.ones(1, 3, 2, 2), 2), "divisible by upscale_factor"),
    (lambda: F.pixel_unshuffle(ng.ones(1, 3, 3, 2), 2), "divisible by downscale_factor"),
    (lambda: F.pixel_shuffle(ng.ones(4, 2), 2), "at least 3 dims"),
    (lambda: F.pixel_shuffle(ng.ones(1, 4, 2, 2), 0), "positive int"),
    (lambda: F.max_pool2d(ng.ones(1, 1, 4, 4, dtype=ng.int64), 2), "floating-point"),
]


@pytest.mark.parametrize("call, message", ERRORS, ids=[m for _, m in ERRORS])
def test_clear_errors(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
