"""Attention benchmark: memory and time of the fused scaled_dot_product_attention.

    python benchmarks/bench_attention.py [--quick]

1. Peak memory of forward + backward (float32, d = 64, batch 1, one head) for N = 1024, 2048,
   4096, measured with tracemalloc (NumPy reports its allocations to it) after the inputs exist,
   with the ratio per doubling of N: the fused kernels grow linearly (~2x), the naive composite
   softmax(q k^T) v, which keeps N x N matrices for its backward, quadratically (~4x).
2. Forward + backward time against PyTorch's scaled_dot_product_attention (CPU, 2 threads) for
   those N, for the causal shape of a small transformer (batch 16, 4 heads, length 256, d 32)
   and for U-Net self-attention at 7x7 (49 positions).
"""
import sys
import tracemalloc

import numpy as np

import nanogen as ng
import nanogen.functional as F
from nanogen.functional.attention import _attention_composite
from common import report, time_pair, try_torch

SIZES = (1024, 2048, 4096)


def _inputs(lib, shape, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]
    if lib is ng:
        q, k, v = (ng.tensor(a, requires_grad=True) for a in arrays[:3])
        return q, k, v, ng.tensor(arrays[3])
    q, k, v = (lib.tensor(a, requires_grad=True) for a in arrays[:3])
    return q, k, v, lib.tensor(arrays[3])


def _fused(q, k, v, causal=False):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def _naive(q, k, v, causal=False):
    return _attention_composite(q, k, v, None, 0.0, causal, 1.0 / np.sqrt(q.shape[-1]))[0]


def peak_bytes(attention, n, d=64):
    """Peak bytes allocated during one forward + backward (inputs already built)."""
    q, k, v, g = _inputs(ng, (1, 1, n, d))
    attention(q, k, v).backward(g)                  # warm-up (JIT compile, thread pool)
    q.grad = k.grad = v.grad = None
    tracemalloc.start()
    try:
        attention(q, k, v).backward(g)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def memory_table(sizes):
    print("peak memory of forward + backward, float32, d = 64, batch 1, 1 head (tracemalloc)")
    print(f"{'N':>6}{'fused MiB':>12}{'x per 2N':>10}{'naive MiB':>12}{'x per 2N':>10}")
    prev = None
    for n in sizes:
        fused, naive = peak_bytes(_fused, n), peak_bytes(_naive, n)
        ratios = ("", "") if prev is None else (f"{fused / prev[0]:10.2f}",
                                                f"{naive / prev[1]:10.2f}")
        print(f"{n:>6}{fused / 2 ** 20:12.2f}{ratios[0]:>10}{naive / 2 ** 20:12.1f}"
              f"{ratios[1]:>10}")
        prev = (fused, naive)


def step(lib, shape, causal, torch_fn=None):
    q, k, v, g = _inputs(lib, shape)

    def run():
        q.grad = k.grad = v.grad = None
        if lib is ng:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        else:
            out = lib.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        out.backward(g)
    return run


def time_table(sizes, quick=False):
    torch = try_torch(threads=2)
    workloads = [(f"N={n} d=64 (1, 1, N, 64)", (1, 1, n, 64), False) for n in sizes]
    workloads += [
        ("transformer causal (16,4,256,32)", (16, 4, 256, 32), True),
        ("transformer full (16,4,256,32)", (16, 4, 256, 32), False),
        ("U-Net 7x7 (64,4,49,32)", (64, 4, 49, 32), False),
        ("U-Net 7x7 (64,1,49,128)", (64, 1, 49, 128), False),
    ]
    rows = []
    for name, shape, causal in workloads:
        big = shape[2] >= 2048
        reps = dict(rounds=2, warmup=1, repeats=3) if big or quick else \
            dict(rounds=3, warmup=3, repeats=10)
        ours = step(ng, shape, causal)
        theirs = step(torch, shape, causal) if torch else None
        rows.append((name, *time_pair(ours, theirs, **reps)))
    print("\nforward + backward, float32 (torch: CPU, 2 threads)")
    report(rows)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    memory_table(SIZES)
    time_table(SIZES, quick)
