"""Timing helpers shared by the benchmarks: median step time after warm-up, and the PyTorch
comparison (PyTorch is optional: install it with ``pip install torch==2.13.0``)."""
import statistics
import time


def time_step(step, warmup=5, repeats=30):
    """Median seconds of ``step()`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def try_torch(threads=None):
    """The torch module (CPU, with ``threads`` intra-op threads) or None when not installed."""
    try:
        import torch
    except ImportError:
        return None
    if threads:
        torch.set_num_threads(threads)
    return torch


def report(rows):
    """Print a table of (workload, nanogen seconds, torch seconds or None)."""
    print(f"{'workload':<34}{'nanogen ms':>12}{'torch ms':>12}{'ratio':>8}")
    for name, ours, theirs in rows:
        t = f"{theirs * 1e3:12.2f}" if theirs else f"{'-':>12}"
        r = f"{ours / theirs:8.2f}" if theirs else f"{'-':>8}"
        print(f"{name:<34}{ours * 1e3:12.2f}{t}{r}")
