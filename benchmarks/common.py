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


def time_pair(step_a, step_b, rounds=3, warmup=3, repeats=20):
    """Step times of two libraries, measured in alternating blocks (a, b, a, b, ...): each
    library's figure is the best of its per-block medians, so a burst of load from elsewhere on
    the machine does not land on one side only.  Blocks rather than single steps, because each
    library's thread pool spins for a while after its work and would slow the other one down.
    ``step_b`` may be None."""
    best_a, best_b = float("inf"), float("inf")
    for _ in range(rounds):
        best_a = min(best_a, time_step(step_a, warmup, repeats))
        if step_b is not None:
            best_b = min(best_b, time_step(step_b, warmup, repeats))
    return best_a, (best_b if step_b is not None else None)


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
