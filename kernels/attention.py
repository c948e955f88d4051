"""Fused scaled-dot-product attention (FlashAttention, Dao et al. 2022): online softmax forward,
recomputing backward; no L x S matrix is ever kept.

Notation (one batch-head b; rows i = queries, columns j = keys)::

    s_ij = scale * q_i . k_j + mask_ij          (mask_ij = -inf where a key is masked out)
    P_ij = exp(s_ij - lse_i),   lse_i = log sum_j exp(s_ij)
    out_i = sum_j P_ij v_j

Arrays are ``q (B, L, E)``, ``k (B, S, E)``, ``v (B, S, Ev)``, C-contiguous, one dtype (float32
or float64; float32 stays float32).  ``mask`` is additive (0 / -inf for a boolean mask), given in
its own compact shape ``(Bm, Lm, S)`` with ``Lm`` in {1, L}, and ``mask_index (B,)`` names the
mask batch each b reads (so a key-padding mask (N, 1, 1, S) is never expanded to (N*H, L, S)).
``causal`` is PyTorch's top-left aligned lower triangle: key j is visible from query i iff j <= i.

Forward -- the online softmax over key tiles.  For each query tile keep the running max m_i,
the running sum l_i and an unnormalised accumulator acc_i; for each key tile T::

    m'_i   = max(m_i, max_{j in T} s_ij)
    alpha  = exp(m_i - m'_i)                    (rescales what earlier tiles contributed)
    p_ij   = exp(s_ij - m'_i)
    l_i    = alpha l_i + sum_{j in T} p_ij
    acc_i  = alpha acc_i + sum_{j in T} p_ij v_j
    out_i  = acc_i / l_i,   lse_i = m_i + log l_i    (after the last tile)

``lse`` (B, L) is the only statistic saved for the backward: O(L) memory.

Backward -- with gout = dL/dout, recompute P tile by tile from lse::

    D_i   = sum_e gout_ie out_ie                      (= sum_j P_ij dP_ij)
    dP_ij = gout_i . v_j
    dS_ij = P_ij (dP_ij - D_i)
    gq_i  = scale * sum_j dS_ij k_j
    gk_j  = scale * sum_i dS_ij q_i
    gv_j  = sum_i P_ij gout_i

Fully masked rows (every s_ij = -inf): out_i = 0, lse_i = -inf, and every gradient through the
row is 0 (PyTorch's current SDPA does the same; its older math path gave NaN).

Versions
--------
* ``reference_forward`` / ``reference_backward``: plain NumPy on the full (B, L, S) matrix, the
  ground truth of the tests.
* ``forward_cpu`` / ``backward_cpu``: ``numba.njit(nogil)`` kernels over (batch-head, tile)
  tasks, the task range split across a small thread pool.  Tile products are BLAS GEMMs called
  from the kernels (``_mm``: numba's own BLAS entry point, accumulating in place), the softmax
  part is one fused loop per tile (with a vectorised exp for float32).  Tiles are ``BLOCK_Q``
  queries x ``BLOCK_K`` keys, in one buffer per thread, so the temporaries are
  threads x BLOCK_Q x BLOCK_K whatever L and S are.  Forward tasks are (b, query tile), each
  owning its rows of out and lse; backward tasks are (b, a strided set of key tiles), each
  owning gk, gv of its key tiles and accumulating its share of gq in a private buffer (summed
  afterwards when a batch is split across threads): no two tasks write the same element.  With
  ``causal`` the tiles above the diagonal are skipped (forward: keys j < the end of the query
  tile; backward: query tiles from the key tile's first row on, keys up to the query tile's
  end).
* ``forward_cuda`` / ``backward_cuda``: numba.cuda, gather formulation, one thread per row.
  Forward: a thread per (b, query row) runs the online softmax over all keys, using its row of
  ``out`` as the accumulator (rescaled only when the running max grows).  Backward: a thread per
  (b, query row) computes D_i and gq_i; then a thread per (b, key row) loops over the queries and
  accumulates gk_j and gv_j, reading the saved lse and D.  Deterministic, no atomics.
"""
from __future__ import annotations

import contextlib
import functools
import math

import numba
import numpy as np
from numba import njit

from ._math import exp as _exp
from .blas import mm as _mm, serial_blas as _serial_blas
from ._device import launch
from ._threads import cpu_threads, run_ranges, threads_for

__all__ = ["BLOCK_Q", "BLOCK_K", "tile_sizes", "reference_forward", "reference_backward",
           "forward_cpu", "backward_cpu", "forward_cuda", "backward_cuda", "compact_mask"]

BLOCK_Q = 64        # query rows per CPU tile
BLOCK_K = 128       # keys per CPU tile


@contextlib.contextmanager
def tile_sizes(block_q: int, block_k: int):
    """Temporarily use other CPU tile sizes (tests force several tiles on small inputs)."""
    global BLOCK_Q, BLOCK_K
    saved = BLOCK_Q, BLOCK_K
    BLOCK_Q, BLOCK_K = int(block_q), int(block_k)
    try:
        yield
    finally:
        BLOCK_Q, BLOCK_K = saved


def compact_mask(mask, batch_shape, L, S, dtype, xp=np):
    """An additive mask (array) broadcastable to ``batch_shape + (L, S)`` as the kernels' pair
    ``(mask (Bm, Lm, S), mask_index (B,))``: bool True = attend (0), False = -inf.  The mask
    keeps its own size: only a size-1 key axis is widened to S."""
    if mask.dtype == bool:
        mask = xp.where(mask, dtype.type(0), dtype.type(-np.inf)).astype(dtype, copy=False)
    else:
        mask = mask.astype(dtype, copy=False)
    nb = len(batch_shape)
    mask = mask.reshape((1,) * (nb + 2 - mask.ndim) + tuple(mask.shape))
    mbatch = mask.shape[:nb]
    m3 = mask.reshape((-1,) + tuple(mask.shape[-2:]))
    if m3.shape[-1] != S:
        m3 = xp.broadcast_to(m3, m3.shape[:2] + (S,))
    # a writable C-contiguous array of the mask's own size (a view of the caller's when it
    # already is one)
    if not (m3.flags.c_contiguous and m3.flags.writeable):
        m3 = xp.array(m3, order="C", copy=True)
    index = np.broadcast_to(np.arange(m3.shape[0]).reshape(mbatch), batch_shape)
    return m3, xp.asarray(np.array(index.reshape(-1), dtype=np.int64))


# ================================================================ reference (plain NumPy)
def _full_scores(q, k, mask, mask_index, causal, scale):
    """s = scale * q k^T + mask (+ -inf above the diagonal when causal), shape (B, L, S)."""
    s = np.einsum("ble,bse->bls", q, k) * scale
    if mask is not None:
        s = s + mask[mask_index]
    if causal:
        L, S = s.shape[1:]
        s = np.where(np.tril(np.ones((L, S), dtype=bool)), s, -np.inf)
    return s


def _probabilities(s):
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m)
    total = e.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        lse = (np.log(total) + m)[..., 0]
    return e / np.where(total > 0, total, 1.0), lse


def reference_forward(q, k, v, mask=None, mask_index=None, causal=False, scale=1.0):
    """(out, lse): out = softmax(s) v on the full score matrix; rows with no visible key give
    out = 0, lse = -inf."""
    p, lse = _probabilities(_full_scores(q, k, mask, mask_index, causal, scale))
    return np.einsum("bls,bse->ble", p, v).astype(q.dtype), lse.astype(q.dtype)


def reference_backward(q, k, v, gout, mask=None, mask_index=None, causal=False, scale=1.0):
    """(gq, gk, gv) of <gout, out> by the textbook softmax backward on the full matrix."""
    p, _ = _probabilities(_full_scores(q, k, mask, mask_index, causal, scale))
    dp = np.einsum("ble,bse->bls", gout, v)
    ds = p * (dp - (p * dp).sum(axis=-1, keepdims=True))
    gq = np.einsum("bls,bse->ble", ds, k) * scale
    gk = np.einsum("bls,ble->bse", ds, q) * scale
    gv = np.einsum("bls,ble->bse", p, gout)
    return gq.astype(q.dtype), gk.astype(q.dtype), gv.astype(q.dtype)


# ================================================================ CPU (numba)
# -inf stays meaningful (masked scores), so no 'ninf'; NaN is not expected in the loops.
_FM = {"nnan", "nsz", "reassoc", "contract", "arcp"}


@njit(fastmath=_FM, cache=True)
def _scores(s, i0, j0, scale, mask, has_mask, causal):
    """In place on a tile s (nq, nk) = q k^T: s = scale s + mask, -inf where causally hidden.
    ``mask`` is this batch's (Lm, S) additive mask."""
    nq, nk = s.shape
    for r in range(nq):
        i = i0 + r
        visible = nk if not causal else min(nk, max(i - j0 + 1, 0))
        if has_mask:
            mr = mask[0] if mask.shape[0] == 1 else mask[i]
            for c in range(visible):
                s[r, c] = s[r, c] * scale + mr[j0 + c]
        else:
            for c in range(visible):
                s[r, c] = s[r, c] * scale
        for c in range(visible, nk):
            s[r, c] = -np.inf


@njit(fastmath=_FM, cache=True)
def _online_softmax_step(s, m, l, acc):
    """One key tile of the online softmax, in place: s becomes p = exp(s - m'), the running
    max m and sum l are updated and the accumulator rows are rescaled by exp(m - m') (rows with
    nothing visible yet are left at p = 0)."""
    nq, nk = s.shape
    for r in range(nq):
        mx = m[r]
        for c in range(nk):
            mx = max(mx, s[r, c])
        if mx == -np.inf:
            for c in range(nk):
                s[r, c] = 0.0
            continue
        total = s.dtype.type(0.0)
        for c in range(nk):
            e = _exp(s[r, c] - mx)
            s[r, c] = e
            total += e
        alpha = _exp(m[r] - mx)
        l[r] = l[r] * alpha + total
        m[r] = mx
        for e in range(acc.shape[1]):
            acc[r, e] *= alpha


@njit(fastmath=_FM, cache=True, nogil=True)
def _forward_tasks(q, k, v, mask, mask_index, has_mask, causal, scale, bq, bk, order,
                   out, lse, w, t0, t1):
    """Tasks t0 .. t1-1 of (b, query tile); out[b, tile] is the accumulator, w the thread's
    tile buffer."""
    B, L, _ = q.shape
    S = k.shape[1]
    nqt = (L + bq - 1) // bq
    m = w[:bq]
    ll = w[bq:2 * bq]
    tile = w[2 * bq:]
    for task in range(t0, t1):
        b = task // nqt
        i0 = order[task % nqt] * bq
        i1 = min(L, i0 + bq)
        acc = out[b, i0:i1]
        acc[:] = 0.0
        m[:] = -np.inf
        ll[:] = 0.0
        qb = q[b, i0:i1]
        mb = mask[mask_index[b]]
        kend = min(S, i1) if causal else S          # causal: keys j < i1 only
        for j0 in range(0, kend, bk):
            j1 = min(kend, j0 + bk)
            s = tile[:(i1 - i0) * (j1 - j0)].reshape(i1 - i0, j1 - j0)
            _mm(qb, False, k[b, j0:j1], True, s, 0.0)            # s = q k^T
            _scores(s, i0, j0, scale, mb, has_mask, causal)
            _online_softmax_step(s, m, ll, acc)
            _mm(s, False, v[b, j0:j1], False, acc, 1.0)         # acc += p v
        for r in range(i1 - i0):
            if ll[r] > 0:
                inv = 1.0 / ll[r]
                for e in range(acc.shape[1]):
                    acc[r, e] *= inv
                lse[b, i0 + r] = m[r] + np.log(ll[r])
            else:
                lse[b, i0 + r] = -np.inf


@njit(fastmath=_FM, cache=True)
def _probs_and_ds(s, dp, lse, D, scale):
    """In place: s (scores) becomes P = exp(s - lse), dp (gout v^T) becomes scale * dS =
    scale * P (dP - D); rows with lse = -inf (nothing visible) are 0."""
    nq, nk = s.shape
    for r in range(nq):
        lr = lse[r]
        if lr == -np.inf:
            for c in range(nk):
                s[r, c] = 0.0
                dp[r, c] = 0.0
            continue
        dr = D[r]
        for c in range(nk):
            p = _exp(s[r, c] - lr)
            s[r, c] = p
            dp[r, c] = p * (dp[r, c] - dr) * scale


@njit(fastmath=_FM, cache=True, nogil=True)
def _rowdot(a, b, out):
    """out[n, i] = sum_e a[n, i, e] b[n, i, e]  (D_i = gout_i . out_i = sum_j P_ij dP_ij)."""
    for n in range(a.shape[0]):
        for i in range(a.shape[1]):
            acc = a.dtype.type(0.0)
            for e in range(a.shape[2]):
                acc += a[n, i, e] * b[n, i, e]
            out[n, i] = acc


@njit(fastmath=_FM, cache=True, nogil=True)
def _backward_tasks(q, k, v, gout, lse, D, mask, mask_index, has_mask, causal, scale, bq, bk,
                    chunks, gq_part, gk, gv, w, t0, t1):
    """Tasks t0 .. t1-1 of (b, a strided set of key tiles): each accumulates gk and gv of its
    key tiles and its share of gq (in gq_part[chunk]); gk, gv, gq_part arrive zeroed."""
    B, L, _ = q.shape
    S = k.shape[1]
    nkt = (S + bk - 1) // bk
    for task in range(t0, t1):
        b = task // chunks
        chunk = task % chunks
        gqb = gq_part[chunk, b]
        mb = mask[mask_index[b]]
        for jt in range(chunk, nkt, chunks):
            j0 = jt * bk
            j1 = min(S, j0 + bk)
            # causal: rows i >= j0 see this key tile, and a query tile ending at i1 sees keys
            # j < i1 only -- tiles above the diagonal are never touched
            for i0 in range(j0 if causal else 0, L, bq):
                i1 = min(L, i0 + bq)
                je = min(j1, i1) if causal else j1
                nq, nk = i1 - i0, je - j0
                s = w[:nq * nk].reshape(nq, nk)
                dp = w[nq * nk:2 * nq * nk].reshape(nq, nk)
                qb, gob = q[b, i0:i1], gout[b, i0:i1]
                kb, vb = k[b, j0:je], v[b, j0:je]
                _mm(qb, False, kb, True, s, 0.0)                 # s = q k^T
                _scores(s, i0, j0, scale, mb, has_mask, causal)
                _mm(gob, False, vb, True, dp, 0.0)               # dP = gout v^T
                _probs_and_ds(s, dp, lse[b, i0:i1], D[b, i0:i1], scale)
                _mm(s, True, gob, False, gv[b, j0:je], 1.0)      # gv_j += P^T gout
                _mm(dp, True, qb, False, gk[b, j0:je], 1.0)      # gk_j += scale dS^T q
                _mm(dp, False, kb, False, gqb[i0:i1], 1.0)       # gq_i += scale dS k


def _balanced_order(n):
    """Query tiles in the order 0, n-1, 1, n-2, ...: under causal masking tile costs grow with
    the index, and numba hands each thread a contiguous range of iterations."""
    order = np.empty(n, dtype=np.int64)
    order[0::2] = np.arange((n + 1) // 2)
    order[1::2] = np.arange(n - 1, (n + 1) // 2 - 1, -1)
    return order


def _no_mask(dtype, B):
    return np.zeros((1, 1, 1), dtype=dtype), np.zeros(max(B, 1), dtype=np.int64)


def _tiles(L, S):
    return max(1, min(BLOCK_Q, L)), max(1, min(BLOCK_K, S))


def _run_tasks(kernel, n_tasks, work, per_thread, dtype, *args):
    """``kernel(*args, w, t0, t1)`` over tasks [0, n_tasks) split into contiguous ranges, one
    per worker thread (the numba kernels release the GIL); ``w`` is each thread's own tile
    buffer, so the temporaries do not grow with L or S."""
    k = max(1, min(threads_for(work), n_tasks))    # one thread for small work
    ws = np.empty((k, per_thread), dtype=dtype)
    with _serial_blas(dtype):
        run_ranges(kernel, n_tasks, k, lambda i: (*args, ws[i]))


def forward_cpu(q, k, v, mask=None, mask_index=None, causal=False, scale=1.0):
    """(out (B, L, Ev), lse (B, L)) by the tiled online softmax (see the module docstring)."""
    B, L, _ = q.shape
    S, Ev = v.shape[1], v.shape[2]
    bq, bk = _tiles(L, S)
    has_mask = mask is not None
    if not has_mask:
        mask, mask_index = _no_mask(q.dtype, B)
    out = np.empty((B, L, Ev), dtype=q.dtype)
    lse = np.empty((B, L), dtype=q.dtype)
    nqt = (L + bq - 1) // bq
    if B and L:
        _run_tasks(_forward_tasks, B * nqt, B * L * S * (q.shape[2] + Ev),
                   2 * bq + bq * bk, q.dtype,
                   q, k, v, mask, mask_index, has_mask, bool(causal), q.dtype.type(scale), bq,
                   bk, _balanced_order(nqt), out, lse)
    return out, lse


def _chunks(B, nkt):
    """Key-tile sets per batch in the backward: 1 when the batches alone keep every thread
    busy, else enough to do so (each set then needs its own gq buffer, summed afterwards)."""
    threads = cpu_threads()
    return 1 if B >= threads else max(1, min(nkt, -(-threads // max(B, 1))))


def _grad_buffers(xp, q, k, v, packed):
    """gq, gk, gv as fresh zeroed arrays, or as views into ``packed`` (the three flattened back
    to back), so that a caller wanting them in one array needs no concatenation."""
    shapes = (q.shape, k.shape, (k.shape[0], k.shape[1], v.shape[2]))
    if packed is None:
        return [xp.zeros(s, dtype=q.dtype) for s in shapes]
    sizes = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
    return [packed[a:b].reshape(s) for a, b, s in zip(sizes[:-1], sizes[1:], shapes)]


def backward_cpu(q, k, v, out, lse, gout, mask=None, mask_index=None, causal=False, scale=1.0,
                 packed=None):
    """(gq, gk, gv) from the saved (out, lse), recomputing P tile by tile (written into
    ``packed`` when given, see _grad_buffers)."""
    B, L, E = q.shape
    S = k.shape[1]
    bq, bk = _tiles(L, S)
    has_mask = mask is not None
    if not has_mask:
        mask, mask_index = _no_mask(q.dtype, B)
    gout = np.ascontiguousarray(gout)
    D = np.empty((B, L), dtype=q.dtype)
    gq, gk, gv = _grad_buffers(np, q, k, v, packed)
    if packed is not None:
        packed[...] = 0
    chunks = _chunks(B, (S + bk - 1) // bk)
    if chunks == 1:
        gq_part = gq[None]
    else:
        gq_part = np.zeros((chunks, B, L, E), dtype=q.dtype)
    if B and L and S:
        _rowdot(gout, out, D)
        _run_tasks(_backward_tasks, B * chunks, B * L * S * (E + v.shape[2]),
                   2 * bq * bk, q.dtype,
                   q, k, v, gout, lse, D, mask, mask_index, has_mask, bool(causal),
                   q.dtype.type(scale), bq, bk, chunks, gq_part, gk, gv)
    if chunks > 1:
        gq_part.sum(axis=0, out=gq)
    return gq, gk, gv


# ================================================================ CUDA (numba.cuda)
cuda = None         # numba.cuda, imported by _cuda_kernels on first use (a module global, which
#                     is where numba's simulator substitutes its per-thread cuda module)


@functools.lru_cache(maxsize=None)
def _cuda_kernels(dtype_name):
    """The three numba.cuda kernels for one dtype (compiled on first launch).  numba.cuda is
    imported here, not at module import, so ``import nanogen`` stays fast without a GPU."""
    global cuda
    from numba import cuda
    T = numba.float32 if dtype_name == "float32" else numba.float64
    NINF = -math.inf

    @cuda.jit
    def forward_rows(q, k, v, mask, mask_index, has_mask, causal, scale, out, lse):
        """Thread (b, i): online softmax over the keys; out[b, i] is the accumulator."""
        t = cuda.grid(1)
        B, L, E = q.shape
        if t >= B * L:
            return
        b = t // L
        i = t % L
        S = k.shape[1]
        Ev = v.shape[2]
        mb = mask_index[b]
        mi = 0 if mask.shape[1] == 1 else i
        for e in range(Ev):
            out[b, i, e] = T(0.0)
        m = T(NINF)
        total = T(0.0)
        jend = min(S, i + 1) if causal else S
        for j in range(jend):
            sc = T(0.0)
            for e in range(E):
                sc += q[b, i, e] * k[b, j, e]
            sc = sc * scale
            if has_mask:
                sc += mask[mb, mi, j]
            if sc == T(NINF):
                continue
            if sc > m:                  # the running max grows: rescale what is summed so far
                alpha = math.exp(m - sc)
                total *= alpha
                for e in range(Ev):
                    out[b, i, e] *= alpha
                m = sc
            p = math.exp(sc - m)
            total += p
            for e in range(Ev):
                out[b, i, e] += p * v[b, j, e]
        if total > T(0.0):
            inv = T(1.0) / total
            for e in range(Ev):
                out[b, i, e] *= inv
            lse[b, i] = m + math.log(total)
        else:
            lse[b, i] = T(NINF)

    @cuda.jit
    def backward_rows(q, k, v, out, lse, gout, mask, mask_index, has_mask, causal, scale,
                      D, gq):
        """Thread (b, i): D_i = gout_i . out_i and gq_i = scale sum_j dS_ij k_j."""
        t = cuda.grid(1)
        B, L, E = q.shape
        if t >= B * L:
            return
        b = t // L
        i = t % L
        S = k.shape[1]
        Ev = v.shape[2]
        mb = mask_index[b]
        mi = 0 if mask.shape[1] == 1 else i
        d = T(0.0)
        for e in range(Ev):
            d += gout[b, i, e] * out[b, i, e]
        D[b, i] = d
        for e in range(E):
            gq[b, i, e] = T(0.0)
        li = lse[b, i]
        if li == T(NINF):
            return
        jend = min(S, i + 1) if causal else S
        for j in range(jend):
            sc = T(0.0)
            for e in range(E):
                sc += q[b, i, e] * k[b, j, e]
            sc = sc * scale
            if has_mask:
                sc += mask[mb, mi, j]
            if sc == T(NINF):
                continue
            p = math.exp(sc - li)
            dp = T(0.0)
            for e in range(Ev):
                dp += gout[b, i, e] * v[b, j, e]
            ds = p * (dp - d) * scale
            for e in range(E):
                gq[b, i, e] += ds * k[b, j, e]

    @cuda.jit
    def backward_cols(q, k, v, lse, gout, mask, mask_index, has_mask, causal, scale, D,
                      gk, gv):
        """Thread (b, j): gk_j = scale sum_i dS_ij q_i and gv_j = sum_i P_ij gout_i."""
        t = cuda.grid(1)
        B, S, E = k.shape
        if t >= B * S:
            return
        b = t // S
        j = t % S
        L = q.shape[1]
        Ev = v.shape[2]
        mb = mask_index[b]
        for e in range(E):
            gk[b, j, e] = T(0.0)
        for e in range(Ev):
            gv[b, j, e] = T(0.0)
        for i in range(j if causal else 0, L):
            li = lse[b, i]
            if li == T(NINF):
                continue
            sc = T(0.0)
            for e in range(E):
                sc += q[b, i, e] * k[b, j, e]
            sc = sc * scale
            if has_mask:
                sc += mask[mb, 0 if mask.shape[1] == 1 else i, j]
            if sc == T(NINF):
                continue
            p = math.exp(sc - li)
            dp = T(0.0)
            for e in range(Ev):
                dp += gout[b, i, e] * v[b, j, e]
            ds = p * (dp - D[b, i]) * scale
            for e in range(Ev):
                gv[b, j, e] += p * gout[b, i, e]
            for e in range(E):
                gk[b, j, e] += ds * q[b, i, e]

    return forward_rows, backward_rows, backward_cols


def _cuda_mask(xp, mask, mask_index, dtype, B):
    if mask is None:
        return xp.zeros((1, 1, 1), dtype=dtype), xp.zeros(max(B, 1), dtype=np.int64), False
    return mask, mask_index, True


def forward_cuda(q, k, v, mask=None, mask_index=None, causal=False, scale=1.0, xp=None):
    """(out, lse) on the GPU (CuPy arrays; NumPy arrays under the simulator)."""
    xp = xp or np
    B, L, _ = q.shape
    Ev = v.shape[2]
    fwd, _, _ = _cuda_kernels(q.dtype.name)
    mask, mask_index, has_mask = _cuda_mask(xp, mask, mask_index, q.dtype, B)
    out = xp.empty((B, L, Ev), dtype=q.dtype)
    lse = xp.empty((B, L), dtype=q.dtype)
    launch(fwd, B * L, q, k, v, mask, mask_index, has_mask, bool(causal), q.dtype.type(scale),
            out, lse)
    return out, lse


def backward_cuda(q, k, v, out, lse, gout, mask=None, mask_index=None, causal=False, scale=1.0,
                  xp=None, packed=None):
    """(gq, gk, gv) on the GPU: the row kernel (D, gq), then the column kernel (gk, gv)."""
    xp = xp or np
    B, L, E = q.shape
    S = k.shape[1]
    _, rows, cols = _cuda_kernels(q.dtype.name)
    mask, mask_index, has_mask = _cuda_mask(xp, mask, mask_index, q.dtype, B)
    gout = xp.ascontiguousarray(gout)
    D = xp.empty((B, L), dtype=q.dtype)
    gq, gk, gv = _grad_buffers(xp, q, k, v, packed)
    sc = q.dtype.type(scale)
    launch(rows, B * L, q, k, v, out, lse, gout, mask, mask_index, has_mask, bool(causal), sc,
            D, gq)
    if L == 0:
        gk[...] = 0
        gv[...] = 0
    launch(cols, B * S, q, k, v, lse, gout, mask, mask_index, has_mask, bool(causal), sc, D,
            gk, gv)
    return gq, gk, gv
