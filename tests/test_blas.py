"""The CPU building blocks under the kernels: nanogen's threaded matmul (``kernels.blas``) and
the SIMD vector operations of the direct convolution (``kernels.simd``).

* ``blas.matmul`` equals ``np.matmul`` for drawn shapes: 2-D, stacked, broadcast batch dims
  (a matrix shared by the batch), transposed operands (columns contiguous), the long-inner-
  dimension split, ``out=``, and the dtypes it hands back to NumPy;
* ``vload`` / ``vstore`` / ``vbcast`` / ``vfma`` / ``vget`` do what they say, lane by lane.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numba import njit

from nanogen.kernels import _threads, blas
from nanogen.kernels.simd import LANES, vbcast, vfma, vget, vload, vstore, vzero


@st.composite
def products(draw):
    """(a, b) for a @ b: batch dims broadcasting (or absent on one side), either operand
    possibly a transposed view, sizes around the split thresholds."""
    M, K, N = (draw(st.sampled_from([1, 3, 17, 64, 130])) for _ in range(3))
    batch = draw(st.sampled_from([(), (1,), (3,), (2, 3)]))
    batch_a = draw(st.sampled_from([batch, batch[1:], ()]))
    batch_b = batch if batch_a != batch else draw(st.sampled_from([batch, ()]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    def operand(shape, transposed):
        if transposed:
            return rng.standard_normal(shape[:-2] + shape[:-3:-1]).astype(dtype).swapaxes(-1, -2)
        return rng.standard_normal(shape).astype(dtype)
    return operand(batch_a + (M, K), draw(st.booleans())), \
        operand(batch_b + (K, N), draw(st.booleans()))


@given(ab=products(), split=st.booleans())
def test_matmul_equals_numpy(ab, split):
    """Serial and split over the threads (``split``: every product above NumPy's threshold)."""
    a, b = ab
    saved = _threads.PARALLEL_WORK
    _threads.PARALLEL_WORK = 0 if split else saved
    try:
        out = blas.matmul(a, b)
    finally:
        _threads.PARALLEL_WORK = saved
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert out.shape == expected.shape and out.dtype == a.dtype
    tol = 1e-4 if a.dtype == np.float32 else 1e-11
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * np.sqrt(a.shape[-1]))


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_long_inner_dimension_is_split_and_summed(ta, tb):
    """(64, 4096) @ (4096, 48): each thread multiplies a slice of the inner dimension."""
    assert 64 * 4096 * 48 >= _threads.PARALLEL_WORK
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4096, 64) if ta else (64, 4096)).astype(np.float32)
    b = rng.standard_normal((48, 4096) if tb else (4096, 48)).astype(np.float32)
    a, b = (a.T if ta else a), (b.T if tb else b)
    np.testing.assert_allclose(blas.matmul(a, b), a.astype(np.float64) @ b, rtol=1e-4,
                               atol=1e-3)


def test_out_argument_and_numpy_fallbacks():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 70, 80)), rng.standard_normal((80, 90))
    out = np.empty((5, 70, 90))
    assert blas.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)
    strided = np.empty((5, 90, 70)).swapaxes(1, 2)          # a non-contiguous out
    assert blas.matmul(a, b, out=strided) is strided
    np.testing.assert_allclose(strided, a @ b, rtol=1e-12)
    ints = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(blas.matmul(ints, ints.T), ints @ ints.T)
    mixed = blas.matmul(a[0].astype(np.float32), b)           # dtypes differ: NumPy's rules
    assert mixed.dtype == np.float64


@njit
def _simd_ops(a, b, s, out):
    acc = vfma(vbcast(s), vload(a, 0), vload(b, 1))           # s * a[0:16] + b[1:17]
    vstore(out, 2, acc)
    first = vget(acc, 0) + vget(vzero(), LANES - 1)
    return first, vget(acc, LANES - 1)


def test_simd_vector_operations():
    rng = np.random.default_rng(2)
    a = rng.standard_normal(LANES).astype(np.float32)
    b = rng.standard_normal(LANES + 1).astype(np.float32)
    out = np.zeros(LANES + 3, dtype=np.float32)
    first, last = _simd_ops(a, b, np.float32(1.5), out)
    expected = np.float32(1.5) * a + b[1:]
    np.testing.assert_allclose(out[2:2 + LANES], expected, rtol=1e-6)
    assert out[0] == out[1] == out[-1] == 0                   # nothing written outside
    assert first == pytest.approx(expected[0], rel=1e-6)
    assert last == pytest.approx(expected[-1], rel=1e-6)


def test_simd_loads_need_contiguous_float32():
    with pytest.raises(Exception, match="1-D contiguous float32"):
        _simd_ops(np.zeros(LANES), np.zeros(LANES + 1), 1.0, np.zeros(LANES + 3))


def test_shapes_numpy_rejects_are_rejected_the_same_way():
    with pytest.raises(ValueError):
        blas.matmul(np.ones((3, 4)), np.ones((5, 6)))
    np.testing.assert_array_equal(blas.matmul(np.ones(3), np.ones((3, 2))), np.full(2, 3.0))
