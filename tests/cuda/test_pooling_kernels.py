"""The CUDA kernels of the pooling and resampling families (kernels/pooling.py,
kernels/resample.py) against their CPU versions, run by numba's simulator on tiny drawn
geometries; then the F ops on device "cuda" against "cpu": forward, gradient and the gradient
of the gradient (which runs the adjoint kernels' own backward)."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import nanogen as ng
import nanogen.functional as F
from nanogen.kernels import pooling as kp
from nanogen.kernels import resample as kr
from nanogen.testing import assert_close

from ..strategies import float64_arrays


@st.composite
def planes(draw, max_side=5):
    """Values of shape (B, H, W) with ties (small integers) and an occasional NaN."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, max_side)),
             draw(st.integers(1, max_side)))
    x = draw(float64_arrays(shape)).round(0)
    if draw(st.integers(0, 3)) == 0:
        x.reshape(-1)[draw(st.integers(0, x.size - 1))] = np.nan
    return x


@st.composite
def max_windows(draw, H, W):
    """(hs, he, dh, ws, we, dw) of a max pooling with no empty window."""
    axes = []
    for n in (H, W):
        k, s, d = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
        p = draw(st.integers(0, k // 2))
        out = kp.pool_output_size(n, k, s, p, d, draw(st.booleans()))
        assume(out >= 1)
        start, stop = kp.pool_windows(n, out, k, s, p, d)
        assume(kp.nonempty_windows(start, stop, n, d).all())
        axes.append((start, stop, d))
    (hs, he, dh), (ws, we, dw) = axes
    return hs, he, dh, ws, we, dw


@st.composite
def avg_windows(draw, H, W):
    """(hs, he, rh, ws, we, rw): average-pooling or adaptive windows."""
    if draw(st.booleans()):
        out = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        (hs, he), (ws, we) = kp.adaptive_windows(H, out[0]), kp.adaptive_windows(W, out[1])
        return hs, he, 1.0 / (he - hs), ws, we, 1.0 / (we - ws)
    cip, div = draw(st.booleans()), draw(st.sampled_from([None, 3]))
    axes = []
    for i, n in enumerate((H, W)):
        k, s = draw(st.integers(1, 3)), draw(st.integers(1, 2))
        p = draw(st.integers(0, k // 2))
        out = kp.pool_output_size(n, k, s, p, 1, draw(st.booleans()))
        assume(out >= 1)
        axes.append(kp.avg_pool_windows(n, out, k, s, p, cip, div, first_axis=(i == 0)))
    return axes[0] + axes[1]


@given(data=st.data())
def test_max_pool_kernels(data):
    x = data.draw(planes())
    hs, he, dh, ws, we, dw = data.draw(max_windows(*x.shape[1:]))
    y, idx = kp.max_pool_cpu(x, hs, he, dh, ws, we, dw)
    yg, idxg = kp.max_pool_cuda(x, hs, he, dh, ws, we, dw)
    np.testing.assert_array_equal(yg, y)            # NaN where NaN, ties to the same index
    np.testing.assert_array_equal(idxg, idx)
    gy = data.draw(float64_arrays(y.shape))
    H, W = x.shape[1:]
    lh, uh = kp.covering_range(hs, he, H)
    lw, uw = kp.covering_range(ws, we, W)
    assert_close(kp.max_scatter_cuda(gy, idx, lh, uh, lw, uw),
                 kp.max_scatter_cpu(gy, idx, H, W), rtol=1e-12, atol=1e-12)


@given(data=st.data())
def test_window_average_kernels(data):
    x = data.draw(planes()).copy()
    x[np.isnan(x)] = 0.5
    hs, he, rh, ws, we, rw = data.draw(avg_windows(*x.shape[1:]))
    y = kp.window_avg_cpu(x, hs, he, rh, ws, we, rw)
    assert_close(kp.window_avg_cuda(x, hs, he, rh, ws, we, rw), y, rtol=1e-12, atol=1e-12)
    gy = data.draw(float64_arrays(y.shape))
    H, W = x.shape[1:]
    (lh, uh), (lw, uw) = kp.covering_range(hs, he, H), kp.covering_range(ws, we, W)
    assert_close(kp.window_avg_adjoint_cuda(gy, lh, uh, rh, lw, uw, rw),
                 kp.window_avg_adjoint_cpu(gy, hs, he, rh, ws, we, rw, H, W),
                 rtol=1e-12, atol=1e-12)


@st.composite
def taps(draw, n, kind):
    out = draw(st.integers(1, 7))
    scale = draw(st.sampled_from([None, 0.7, 1.5, 2.0]))
    if scale is not None:
        out = max(1, int(n * scale))
    if kind == "nearest":
        i = kr.nearest_indices(n, out, scale, exact=draw(st.booleans()))
        return (i,)
    return kr.linear_taps(n, out, draw(st.booleans()), scale, np.float64)


@given(data=st.data())
def test_nearest_kernels(data):
    x = data.draw(planes()).copy()
    x[np.isnan(x)] = 0.5
    H, W = x.shape[1:]
    (ih,), (iw,) = data.draw(taps(H, "nearest")), data.draw(taps(W, "nearest"))
    y = kr.nearest_cpu(x, ih, iw)
    np.testing.assert_array_equal(kr.nearest_cuda(x, ih, iw), y)
    gy = data.draw(float64_arrays(y.shape))
    (lh, uh), (lw, uw) = kr.tap_cover(ih, ih, H), kr.tap_cover(iw, iw, W)
    assert_close(kr.nearest_adjoint_cuda(gy, lh, uh, lw, uw),
                 kr.nearest_adjoint_cpu(gy, ih, iw, H, W), rtol=1e-12, atol=1e-12)


@given(data=st.data())
def test_linear_kernels(data):
    x = data.draw(planes()).copy()
    x[np.isnan(x)] = 0.5
    H, W = x.shape[1:]
    th, tw = data.draw(taps(H, "linear")), data.draw(taps(W, "linear"))
    y = kr.linear_cpu(x, *th, *tw)
    assert_close(kr.linear_cuda(x, *th, *tw), y, rtol=1e-12, atol=1e-12)
    gy = data.draw(float64_arrays(y.shape))
    (lh, uh), (lw, uw) = kr.tap_cover(th[0], th[1], H), kr.tap_cover(tw[0], tw[1], W)
    assert_close(kr.linear_adjoint_cuda(gy, lh, uh, *th, lw, uw, *tw),
                 kr.linear_adjoint_cpu(gy, *th, *tw, H, W), rtol=1e-12, atol=1e-12)


# ================================================================ the F ops on device "cuda"
OPS = [
    ("max_pool2d", (2, 2, 5, 6), lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True)),
    ("max_pool2d dilated", (1, 2, 5, 6), lambda t: F.max_pool2d(t, 2, 1, 1, dilation=2)),
    ("max_pool1d", (2, 2, 7), lambda t: F.max_pool1d(t, 3, 2, 1)),
    ("adaptive_max_pool2d", (2, 2, 5, 6), lambda t: F.adaptive_max_pool2d(t, (3, 4))),
    ("avg_pool2d", (2, 2, 5, 6),
     lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False)),
    ("avg_pool1d", (2, 2, 7), lambda t: F.avg_pool1d(t, 2)),
    ("adaptive_avg_pool2d", (2, 2, 5, 6), lambda t: F.adaptive_avg_pool2d(t, (3, None))),
    ("nearest", (1, 2, 3, 4), lambda t: F.interpolate(t, size=(7, 5))),
    ("nearest-exact", (1, 2, 3, 4), lambda t: F.interpolate(t, scale_factor=1.5,
                                                            mode="nearest-exact")),
    ("bilinear", (1, 2, 3, 4), lambda t: F.interpolate(t, size=(5, 3), mode="bilinear")),
    ("bilinear corners", (1, 2, 3, 4),
     lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True)),
    ("linear", (1, 2, 4), lambda t: F.interpolate(t, size=7, mode="linear")),
    ("pixel_shuffle", (1, 8, 2, 3), lambda t: F.pixel_shuffle(t, 2)),
    ("pixel_unshuffle", (1, 2, 4, 2), lambda t: F.pixel_unshuffle(t, 2)),
    ("pad reflect", (1, 2, 3, 4), lambda t: F.pad(t, (2, 1, 1, 2), "reflect")),
    ("pad circular", (1, 2, 3, 4), lambda t: F.pad(t, (3, -1, 1, 2), "circular")),
    ("pad replicate", (2, 3, 4), lambda t: F.pad(t, (3, 1), "replicate")),
    ("pad constant", (1, 2, 3, 4), lambda t: F.pad(t, (1, -1, 2, 0), value=2.0)),
]


@pytest.mark.parametrize("name, shape, fn", OPS, ids=[o[0] for o in OPS])
def test_ops_on_cuda_match_cpu(name, shape, fn):
    rng = np.random.default_rng(0)
    x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25    # no ties
    xc = ng.tensor(x, requires_grad=True)
    xg = ng.tensor(x, device="cuda", requires_grad=True)
    yc, yg = fn(xc), fn(xg)
    assert yg.device == "cuda"
    assert_close(yg.cpu(), yc, rtol=1e-12, atol=1e-12)
    v = rng.standard_normal(tuple(yc.shape))
    vc = ng.tensor(v, requires_grad=True)
    vg = ng.tensor(v, device="cuda", requires_grad=True)
    (gc,) = ng.autograd.grad(yc, xc, vc, create_graph=True)
    (gg,) = ng.autograd.grad(yg, xg, vg, create_graph=True)
    assert gg.device == "cuda"
    assert_close(gg.cpu(), gc, rtol=1e-12, atol=1e-12)
    z = rng.standard_normal(shape)
    (hc,) = ng.autograd.grad((gc * ng.tensor(z)).sum(), vc)
    (hg,) = ng.autograd.grad((gg * ng.tensor(z, device="cuda")).sum(), vg)
    assert_close(hg.cpu(), hc, rtol=1e-12, atol=1e-12)


def test_float32_on_cuda():
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 4)).astype(np.float32)
    for fn in (lambda t: F.max_pool2d(t, 2), lambda t: F.avg_pool2d(t, 3, 1, 1),
               lambda t: F.interpolate(t, scale_factor=2, mode="bilinear")):
        yc, yg = fn(ng.tensor(x)), fn(ng.tensor(x, device="cuda"))
        assert yg.dtype == np.float32
        assert_close(yg.cpu(), yc, rtol=1e-6, atol=1e-6)
