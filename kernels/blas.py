"""BLAS from inside numba kernels: a GEMM call that accumulates in place, and single-threaded
BLAS for kernels that split their work over threads of their own.

``mm(a, ta, b, tb, c, beta)`` is  c = op(a) op(b) + beta c  on 2-D row-major views, through the
BLAS that numba itself uses for ``np.dot`` (SciPy's OpenBLAS, a library separate from NumPy's).
Each thread of a parallel kernel calls its own GEMMs, inside ``serial_blas``: an OpenBLAS that
also spawned threads per call would oversubscribe the cores.

``matmul(a, b)`` is NumPy's matmul for nanogen's CPU ops (``MatMul``, ``Linear``, the conv
GEMMs), with the work split over nanogen's own threads and each part a single-threaded GEMM.
"""
from __future__ import annotations

import contextlib
import functools

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._threads import run_ranges, threads_for

__all__ = ["mm", "serial_blas", "single_threaded", "matmul", "matmul_of"]


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """numba's own BLAS entry point (``numba_xxgemm``, the one behind its ``np.dot``: SciPy's
    BLAS through ``scipy.linalg.cython_blas``), called directly.  Column-major
    ``c = alpha op(a) op(b) + beta c``.  A direct call compiles in a fraction of the time that
    ``np.dot`` takes inside a kernel and accumulates in place (beta = 1)."""
    sig = types.int32(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    dtype = c.dtype

    def codegen(context, builder, signature, args):
        ll_char = ir.IntType(8)
        void_p = ll_char.as_pointer()
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(ir.IntType(32), [ll_char, ll_char, ll_char, intp, intp, intp,
                                                void_p, void_p, intp, void_p, intp, void_p,
                                                void_p, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        tys = signature.args

        def cast(i, to):
            return context.cast(builder, args[i], tys[i], to)

        def slot(i):        # alpha and beta are passed by address
            return builder.bitcast(cgutils.alloca_once_value(builder, cast(i, dtype)), void_p)

        def data(i):
            return builder.bitcast(context.make_array(tys[i])(context, builder, args[i]).data,
                                   void_p)
        kind = ir.Constant(ll_char, ord("s" if dtype == types.float32 else "d"))
        return builder.call(fn, (kind, cast(0, types.int8), cast(1, types.int8),
                                 cast(2, types.intp), cast(3, types.intp), cast(4, types.intp),
                                 slot(5), data(6), cast(7, types.intp), data(8),
                                 cast(9, types.intp), slot(10), data(11), cast(12, types.intp)))
    return sig, codegen


@njit(cache=True)
def mm(a, ta, b, tb, c, beta):
    """c = op(a) op(b) + beta c for 2-D row-major views (unit stride along rows), op = the
    transpose when ``ta`` / ``tb``.  Row-major c is column-major c^T = op(b)^T op(a)^T, so the
    column-major call takes b first."""
    m, n = c.shape
    kk = a.shape[0] if ta else a.shape[1]
    if m == 0 or n == 0:
        return
    item = c.itemsize
    lda = max(a.strides[0] // item, a.shape[1], 1)
    ldb = max(b.strides[0] // item, b.shape[1], 1)
    ldc = max(c.strides[0] // item, n, 1)
    no, tr = np.int8(78), np.int8(84)                 # 'N', 'T'
    _xxgemm(tr if tb else no, tr if ta else no, n, m, kk, 1.0, b, ldb, a, lda, beta, c, ldc)


@functools.lru_cache(maxsize=None)
def _blas_thread_controls(which="scipy"):
    """(get_num_threads, set_num_threads) of an OpenBLAS: ``"scipy"`` the one behind
    ``numba_xxgemm`` (SciPy's), ``"numpy"`` the one behind NumPy's matmul (NumPy's wheels bundle
    a 64-bit-integer build of their own); None when it is another BLAS or cannot be found."""
    try:
        import ctypes
        if which == "numpy":
            from numpy._core import _multiarray_umath as owner
        else:
            from scipy.linalg import cython_blas as owner
        lib = ctypes.CDLL(owner.__file__)       # symbol lookup also searches its BLAS
    except Exception:       # pragma: no cover - exotic installs
        return None
    for prefix in ("scipy_openblas", "openblas"):
        for suffix in ("", "64_"):
            try:
                return (getattr(lib, f"{prefix}_get_num_threads{suffix}"),
                        getattr(lib, f"{prefix}_set_num_threads{suffix}"))
            except AttributeError:
                continue
    return None     # pragma: no cover


_WARM = set()


@contextlib.contextmanager
def single_threaded(which):
    """One BLAS thread for the library ``which`` ("scipy" or "numpy") inside the block; the
    previous setting is restored after."""
    controls = _blas_thread_controls(which)
    n = controls[0]() if controls else 1
    if n == 1:
        yield
        return
    controls[1](1)
    try:
        yield
    finally:
        controls[1](n)


@contextlib.contextmanager
def serial_blas(dtype):
    """Single-threaded BLAS inside the parallel kernels (as threadpoolctl would do): each numba
    thread calls GEMMs of its own, and an OpenBLAS that also spawns threads per call runs the
    kernels 10-40x slower (oversubscribed cores).  The previous setting is restored after.
    The first GEMM of a dtype runs here, on the calling thread: numba looks the BLAS function
    up lazily, which needs the GIL."""
    if dtype not in _WARM:
        one = np.ones((1, 1), dtype=dtype)
        mm(one, False, one, False, np.zeros((1, 1), dtype=dtype), 0.0)
        _WARM.add(dtype)
    with single_threaded("scipy"):
        yield


# ---------------------------------------------------------------- the threaded matmul
SERIAL_WORK = 1 << 18   # multiply-adds below which NumPy does the product (OpenBLAS's own
                        # threshold: it too runs such products on the calling thread)


@njit(nogil=True, cache=True)
def _gemm_tasks(a, ta, b, tb, c, blocks, by_rows, t0, t1):
    """c[i] = op(a[i]) op(b[i]) for the tasks t in [t0, t1): task t is block t % blocks of
    item t // blocks, a range of c's rows (``by_rows``) or columns."""
    rows, cols = c.shape[1], c.shape[2]
    for t in range(t0, t1):
        i, k = t // blocks, t % blocks
        ai, bi, ci = a[i], b[i], c[i]
        if by_rows:
            r0, r1 = rows * k // blocks, rows * (k + 1) // blocks
            mm(ai[:, r0:r1] if ta else ai[r0:r1], ta, bi, tb, ci[r0:r1], 0.0)
        else:
            c0, c1 = cols * k // blocks, cols * (k + 1) // blocks
            mm(ai, ta, bi[c0:c1] if tb else bi[:, c0:c1], tb, ci[:, c0:c1], 0.0)


@njit(nogil=True, cache=True)
def _gemm_depth(a, ta, b, tb, parts, t0, t1):
    """parts[t] = op(a)[:, k-range t] op(b)[k-range t, :] for t in [t0, t1): one product with a
    long inner dimension split into ``len(parts)`` partial products."""
    T = parts.shape[0]
    K = a.shape[0] if ta else a.shape[1]
    for t in range(t0, t1):
        k0, k1 = K * t // T, K * (t + 1) // T
        mm(a[k0:k1] if ta else a[:, k0:k1], ta, b[:, k0:k1] if tb else b[k0:k1], tb, parts[t],
           0.0)


def _row_major(m):
    """(array, transposed) with the array's rows contiguous: m itself, or its transpose (m's
    columns contiguous), or a contiguous copy."""
    item = m.itemsize
    if m.strides[-1] == item and m.strides[-2] >= m.shape[-1] * item:
        return m, False
    if m.strides[-2] == item and m.strides[-1] >= m.shape[-2] * item:
        return m.swapaxes(-1, -2), True
    return np.ascontiguousarray(m), False


def _as_stack(m, batch, B):
    """m (..., r, c) as a (B, r, c) stack over the broadcast ``batch`` dims, without copying a
    matrix shared by the whole batch (a stride-0 stack) or a contiguous batch."""
    if m.ndim == 2:
        return np.broadcast_to(m, (B,) + m.shape)
    if m.shape[:-2] != batch:
        m = np.broadcast_to(m, batch + m.shape[-2:])
    return m.reshape((B,) + m.shape[-2:])      # a view when the batch dims merge, else a copy


def matmul(a, b, out=None):
    """``np.matmul(a, b)`` for float32 / float64 NumPy arrays with at least 2 dims (leading
    dims broadcast), computed by single-threaded GEMMs on the cores of ``run_ranges``:
    nanogen's CPU kernels (the direct convolution, attention) split their work over threads of
    their own, and an OpenBLAS that had just run a multi-threaded product would keep a core
    busy spin-waiting under them (measured: the direct convolutions of a U-Net step 1.5-1.8x
    slower).  The split is over the batch, over rows or columns of the result, or (one product
    with a long inner dimension) into partial products summed at the end.  Below
    ``_threads.PARALLEL_WORK`` multiply-adds the product runs on the calling thread; below
    ``SERIAL_WORK``, and for other dtypes, it is ``np.matmul`` (which OpenBLAS then also runs
    on one thread)."""
    if (a.dtype != b.dtype or a.dtype not in (np.float32, np.float64) or a.ndim < 2
            or b.ndim < 2 or b.shape[-2] != a.shape[-1]):
        return np.matmul(a, b, out=out)
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    if out is not None and not out.flags.c_contiguous:
        out[...] = matmul(a, b)
        return out
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    B = int(np.prod(batch, dtype=np.int64))
    if a.ndim > 2 and b.ndim == 2 and a.flags.c_contiguous and a.size and b.size:
        # (..., M, K) @ (K, N): one GEMM.  An empty operand takes np.matmul below (zeros when
        # K = 0, where a reshape to (-1, K) could not infer the rows)
        y = matmul(a.reshape(-1, K), b, None if out is None else out.reshape(-1, N))
        return y.reshape(batch + (M, N)) if out is None else out
    if out is None:
        out = np.empty(batch + (M, N), dtype=a.dtype)
    if B * M * N * K < SERIAL_WORK or 0 in (M, N, K):
        return np.matmul(a, b, out=out)
    am, ta = _row_major(a)
    bm, tb = _row_major(b)
    a3 = _as_stack(am, batch, B)
    b3 = _as_stack(bm, batch, B)
    c3 = out.reshape(B, M, N)
    threads = threads_for(B * M * N * K)
    if B == 1 and K >= 4 * max(M, N) and threads > 1:     # e.g. a weight gradient gyᵀ x
        parts = np.empty((threads, M, N), dtype=a.dtype)
        with serial_blas(a.dtype):
            run_ranges(_gemm_depth, threads, threads, lambda i: (a3[0], ta, b3[0], tb, parts))
        return np.sum(parts, axis=0, out=c3[0])
    blocks = 1 if B >= threads else -(-threads // B)
    by_rows = M >= N
    with serial_blas(a.dtype):
        run_ranges(_gemm_tasks, B * blocks, threads,
                   lambda i: (a3, ta, b3, tb, c3, blocks, by_rows))
    return out


def matmul_of(xp):
    """The matmul for arrays of the array module ``xp``: ``matmul`` above for NumPy (the CPU),
    ``xp.matmul`` otherwise (CuPy: cuBLAS)."""
    return matmul if xp is np else xp.matmul
