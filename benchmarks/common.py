"""Timing helpers shared by the benchmarks: median step time after warm-up, and the PyTorch
comparison (PyTorch is optional: install it with ``pip install torch==2.13.0``)."""
import argparse
import statistics
import subprocess
import sys
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


def time_in_this_process(lib_name, make_step, repeats, threads, device="cpu"):
    """Best-of-3 median step time of ``make_step(lib)`` with one library ("nanogen" or
    "torch"), seeded, in this process; None when PyTorch is asked for and not installed.
    ``device="cuda"``: the model and data are built inside the library's default-device block
    (``with lib.device("cuda")``) and every timed step ends by waiting for the GPU."""
    if lib_name == "torch":
        lib = try_torch(threads)
        if lib is None:
            return None
        synchronize = lib.cuda.synchronize if device == "cuda" else (lambda: None)
    else:
        import nanogen as lib
        synchronize = lib.cuda.synchronize
    lib.manual_seed(0)
    with lib.device(device):
        step = make_step(lib)

    def timed():
        step()
        synchronize()
    return min(time_step(timed, warmup=2, repeats=repeats) for _ in range(3))


def time_in_processes(script, rounds, repeats, threads, *worker_args, device="cpu"):
    """(nanogen seconds, PyTorch seconds or None): ``script --worker LIB --repeats R --threads T
    *worker_args`` run in fresh processes, alternating (nanogen, PyTorch, nanogen, ...) for
    ``rounds`` rounds, each library's figure the best of its rounds.  The worker prints its
    figure (``time_in_this_process``) as the last word of its output.  Separate processes:
    the two libraries' thread pools spin after their work and would slow each other down."""
    def run(lib_name):
        out = subprocess.run([sys.executable, script, "--worker", lib_name, "--repeats",
                              str(repeats), "--threads", str(threads), "--device", device,
                              *worker_args],
                             capture_output=True, text=True, check=True).stdout.split()
        return float(out[-1]) if out and out[-1] != "None" else None
    has_torch = try_torch() is not None
    ours, theirs = float("inf"), float("inf")
    for _ in range(rounds):
        ours = min(ours, run("nanogen"))
        if has_torch:
            theirs = min(theirs, run("torch"))
    return ours, (theirs if has_torch else None)


def comparison_arguments(parser, choices, rounds_help):
    """The options of a benchmark that runs ``time_in_processes``: --only (a subset of
    ``choices``), --rounds, --repeats, --threads (PyTorch's) and the hidden --worker."""
    parser.add_argument("--only", default=",".join(choices),
                        help="comma-separated subset of: " + ", ".join(choices))
    parser.add_argument("--rounds", type=int, default=2, help=rounds_help)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both "
                        "libraries run (cuda: nanogen with CuPy, PyTorch's CUDA build)")
    parser.add_argument("--worker", choices=["nanogen", "torch"], help=argparse.SUPPRESS)
    return parser


def report(rows):
    """Print a table of (workload, nanogen seconds, torch seconds or None)."""
    print(f"{'workload':<34}{'nanogen ms':>12}{'torch ms':>12}{'ratio':>8}")
    for name, ours, theirs in rows:
        t = f"{theirs * 1e3:12.2f}" if theirs else f"{'-':>12}"
        r = f"{ours / theirs:8.2f}" if theirs else f"{'-':>8}"
        print(f"{name:<34}{ours * 1e3:12.2f}{t}{r}")
