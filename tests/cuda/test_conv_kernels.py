"""The numba.cuda convolution kernels under the simulator (NUMBA_ENABLE_CUDASIM=1): im2col and
col2im agree with the CPU versions on tiny drawn geometries (asymmetric padding, tap subsets,
stride, dilation, groups), and the F ops on device "cuda" agree with device "cpu", forward and
backward.  Shapes stay tiny: the simulator runs one Python thread per CUDA thread."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
import nanogen.functional as F
from nanogen.kernels import conv as K
from nanogen.testing import assert_close

from tests.test_conv import geometries


@given(g=geometries(max_side=2), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_cuda_im2col_col2im_match_cpu(g, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, g.C, g.H, g.W)).astype(dtype)
    cols = K.im2col(x, g, device="cuda")
    assert cols.dtype == dtype
    np.testing.assert_array_equal(cols, K.im2col(x, g, device="cpu"))
    z = rng.standard_normal(cols.shape).astype(dtype)
    back = K.col2im(z, g, device="cuda")
    assert back.dtype == dtype
    assert_close(back, K.col2im(z, g, device="cpu"), rtol=1e-5, atol=1e-5)


def test_cuda_col2im_gathers_overlapping_taps():
    """Stride 1 with a 3x3 kernel: every interior input element is read by 9 (tap, position)
    pairs; the one-thread-per-input gather must sum them all (col2im(1) counts the reads)."""
    g = K.Geometry.make(1, 4, 4, 1, 3, 3, (1, 1), (1, 1, 1, 1))
    ones = np.ones((9, 1, 16))
    counts = K.col2im(ones, g, device="cuda")[0, 0]
    np.testing.assert_array_equal(counts, K.col2im(ones, g, device="cpu")[0, 0])
    assert counts[1:3, 1:3].tolist() == [[9, 9], [9, 9]] and counts[0, 0] == 4


def _both_devices(fn, *arrays):
    """fn on cpu and on cuda tensors: outputs and input gradients (for a fixed cotangent)."""
    results = []
    for dev in ("cpu", "cuda"):
        ts = [ng.tensor(a, device=dev, requires_grad=True) for a in arrays]
        y = fn(*ts)
        gy = np.random.default_rng(0).standard_normal(y.shape)
        y.backward(ng.tensor(gy, device=dev))
        assert y.device == dev and all(t.grad.device == dev for t in ts)
        results.append([y.detach().cpu()] + [t.grad.cpu() for t in ts])
    for a, b in zip(*results):
        assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,fn,shapes", [
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2),
                                        groups=2), [(1, 2, 4, 5), (2, 1, 2, 2), (2,)]),
    ("conv_transpose2d", lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                            output_padding=1),
     [(1, 2, 2, 2), (2, 1, 3, 3), (1,)]),
    ("masked_conv2d", lambda x, w: F.masked_conv2d(x, w, None, "B", 1),
     [(1, 1, 3, 3), (2, 1, 3, 3)]),
    ("causal_conv1d", lambda x, w: F.causal_conv1d(x, w, None, dilation=2),
     [(1, 1, 5), (2, 1, 2)]),
])
def test_ops_on_cuda_match_cpu(name, fn, shapes):
    rng = np.random.default_rng(1)
    _both_devices(fn, *[rng.standard_normal(s) for s in shapes])
