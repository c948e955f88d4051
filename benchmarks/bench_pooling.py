"""Pooling / resampling / padding benchmark: forward, and forward + backward, of the shapes the
U-Net and GAN training steps use, side by side with PyTorch CPU when it is installed.

    python benchmarks/bench_pooling.py [--threads N] [--cpu-time]

The ratio column is nanogen's time over PyTorch's (lower is better).  Both libraries use the same
number of threads (numba's pool for the kernels).  ``--cpu-time`` times one thread of each by
the process's CPU time (best of many runs), a figure that other jobs on a busy machine disturb
far less than wall-clock time.
"""
import argparse
import os
import sys
import time

if "--cpu-time" in sys.argv:    # one thread everywhere, BLAS included (before NumPy loads)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

import nanogen as ng  # noqa: E402
from common import report, time_pair, try_torch  # noqa: E402

WORKLOADS = [
    # name, input shape, op (called as op(F, x))
    ("max_pool2d 2x2 (64,64,28,28)", (64, 64, 28, 28), lambda F, x: F.max_pool2d(x, 2)),
    ("avg_pool2d 2x2 (64,64,28,28)", (64, 64, 28, 28), lambda F, x: F.avg_pool2d(x, 2)),
    ("max_pool2d 3/2/1 (64,64,28,28)", (64, 64, 28, 28),
     lambda F, x: F.max_pool2d(x, 3, 2, 1)),
    ("adaptive_avg_pool2d 1 (64,256,7,7)", (64, 256, 7, 7),
     lambda F, x: F.adaptive_avg_pool2d(x, 1)),
    ("nearest 2x (64,128,7,7)", (64, 128, 7, 7),
     lambda F, x: F.interpolate(x, scale_factor=2, mode="nearest")),
    ("bilinear 2x (64,64,14,14)", (64, 64, 14, 14),
     lambda F, x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)),
    ("reflect pad 1 (16,64,64,64)", (16, 64, 64, 64),
     lambda F, x: F.pad(x, (1, 1, 1, 1), mode="reflect")),
    ("zero pad 1 (16,64,64,64)", (16, 64, 64, 64), lambda F, x: F.pad(x, (1, 1, 1, 1))),
    ("pixel_shuffle 2 (64,256,14,14)", (64, 256, 14, 14), lambda F, x: F.pixel_shuffle(x, 2)),
]


def steps(lib, shape, op, backward):
    x = lib.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32),
                   requires_grad=backward)
    F = lib.nn.functional
    if not backward:
        return lambda: op(F, x)
    y = op(F, x)
    g = lib.tensor(np.ones(tuple(y.shape), np.float32))

    def step():
        x.grad = None
        op(F, x).backward(g)
    return step


def cpu_time(step, warmup=2, repeats=20):
    """Best CPU time of ``step()`` (single-threaded runs only: threads would add up)."""
    for _ in range(warmup):
        step()
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        step()
        best = min(best, time.process_time() - t)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cpu-time", action="store_true")
    args = parser.parse_args()
    threads = 1 if args.cpu_time else args.threads
    torch = try_torch(threads)
    if threads:
        import numba
        numba.set_num_threads(threads)
    rows = []
    for name, shape, op in WORKLOADS:
        for backward in (False, True):
            ours = steps(ng, shape, op, backward)
            theirs = steps(torch, shape, op, backward) if torch else None
            if args.cpu_time:
                a, b = cpu_time(ours), (cpu_time(theirs) if theirs else None)
            else:
                a, b = time_pair(ours, theirs, rounds=3, warmup=2, repeats=10)
            rows.append((f"{name} {'f+b' if backward else 'fwd'}", a, b))
    report(rows)


if __name__ == "__main__":
    main()
