"""Data-parallel benchmark: training steps per second on 1 and on N MPI ranks at the same global
batch, and the bytes each rank reduces per step.

    python benchmarks/bench_distributed.py [--ranks 2] [--steps 60] [--rounds 2] [--models vae,dcgan]
                                           [--local-batchnorm]

Each figure runs ``nanogen train MODEL --steps S --batch-size 64`` (one process, then
``mpiexec -n N``; the rounds alternate the two) and reads the training seconds the run logs
(time inside training steps: not the start-up, the sample grids or the checkpoints), over the
steps after the first ten (JIT compilation and allocation).  Steps per second are global steps
(64 examples each, whatever the rank count).  ``NUMBA_NUM_THREADS`` is the machine's cores
divided by the ranks, so one process and N ranks use the same cores.

Bytes reduced per step: every optimizer step all-reduces its parameters' gradients (float32)
plus one int64 flag per parameter (does this rank have a gradient?); a GAN's training step takes
``k`` discriminator steps and one generator step.  On a cluster, each rank would be one machine
or one GPU: the compute per rank falls as 1/N while these bytes stay the same, so the step time
tends to (compute / N) + (bytes / bandwidth) -- with NCCL on GPUs, the bandwidth of NVLink or
the network instead of a memory copy between two processes of one machine.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = 10


def run_steps_per_second(model, steps, ranks, extra):
    out = tempfile.mkdtemp(prefix=f"bench-{model}-{ranks}-")
    try:
        env = dict(os.environ, NUMBA_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // ranks)),
                   OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // ranks)))
        command = [sys.executable, "-m", "nanogen", "train", model, "--steps", str(steps),
                   "--batch-size", "64", "--out", os.path.join(out, "run"), "--no-progress",
                   "--sample-every", str(10 * steps), *extra]
        if ranks > 1:
            command = [shutil.which("mpiexec"), "-n", str(ranks), *command]
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT, env=env, timeout=3600)
        with open(os.path.join(out, "run", "log.jsonl")) as f:
            records = [json.loads(line) for line in f]
        at = {r["step"]: r["seconds"] for r in records}
        return (steps - SKIP) / (at[steps] - at[SKIP])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def bytes_per_step(model_name):
    """What one training step all-reduces on each rank (gradients + flags)."""
    import nanogen as ng  # noqa: F401
    from nanogen.cli import build_model
    from nanogen.models import get_model_spec
    spec = get_model_spec(model_name)
    model = build_model({"model": model_name, "dataset": spec.dataset,
                         "model_kwargs": dict(spec.kwargs)})
    optimizers = model.configure_optimizers(1e-3)
    total = 0
    for name, opt in optimizers.items():
        params = [p for g in opt.param_groups for p in g["params"] if p.requires_grad]
        size = sum(p.numel() * p.data.itemsize for p in params) + 8 * len(params)
        steps = getattr(model, "batches_per_step", 1) if name == "discriminator" else 1
        total += size * steps
    return total


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--models", default="vae,dcgan")
    p.add_argument("--local-batchnorm", action="store_true", help="DCGAN without "
                   "--sync-batchnorm (each rank normalises its own examples)")
    args = p.parse_args()
    print(f"| model | 1 process, steps/s | {args.ranks} ranks, steps/s | speed-up | "
          f"bytes reduced per step and rank |")
    print("|---|---:|---:|---:|---:|")
    for model in args.models.split(","):
        extra = ["--sync-batchnorm"] if model == "dcgan" and not args.local_batchnorm else []
        one, many = [], []
        for _ in range(args.rounds):                  # alternate, so drift hits both alike
            one.append(run_steps_per_second(model, args.steps, 1, extra))
            many.append(run_steps_per_second(model, args.steps, args.ranks, extra))
        best_one, best_many = max(one), max(many)
        print(f"| {model} | {best_one:.2f} | {best_many:.2f} | {best_many / best_one:.2f}x | "
              f"{bytes_per_step(model) / 2 ** 20:.2f} MiB |", flush=True)
        print(f"<!-- rounds: 1 process {np.round(one, 2).tolist()}, {args.ranks} ranks "
              f"{np.round(many, 2).tolist()} -->", flush=True)


if __name__ == "__main__":
    main()
