"""Annealed importance sampling for a 784-500 RBM: how long the test-NLL estimate takes, what
dominates it, and one AIS step against the same arithmetic in PyTorch CPU.

    python benchmarks/bench_ais.py [--runs 100] [--temperatures 14500] [--run DIR] [--full]

* ``step``: one AIS step for ``--runs`` chains (eq. 7 of ``nanogen/models/energy/rbm.py``):
  ``a = c + v W`` (a GEMM of runs x 784 x 500), the weight increment (two softplus over a,
  a matrix-vector product), ``h ~ sigmoid(beta a)``, ``v ~ sigmoid((1 - beta) b_A + beta (b +
  W h))`` (the second GEMM) -- nanogen's ``RBMAnnealingPath.step`` against the same lines in
  PyTorch, alternating in blocks (``common.time_pair``).  The whole estimate is
  ``temperatures - 1`` such steps.
* ``parts``: the same step split into its GEMMs, its elementwise maths and its random draws,
  each timed alone in nanogen, to say what dominates.
* ``--full``: also run the whole estimate once (``estimate_log_partition``) and report its wall
  time; ``--run DIR`` takes the RBM of a trained ``nanogen train rbm`` run (the weights do not
  change the time, only the estimate).
"""
import argparse
import time

import numpy as np

import nanogen as ng
from common import report, time_pair, try_torch
from nanogen.models.energy.ais import estimate_log_partition
from nanogen.models.energy.rbm import BernoulliRBM

D, H = 784, 500


def nanogen_rbm(run_dir):
    if run_dir:
        from nanogen.cli import load_run
        model, _, _ = load_run(run_dir)
        return model.rbm, model.training_state.base_logits()
    ng.manual_seed(0)
    rbm = BernoulliRBM(D, H)
    return rbm, ng.tensor(np.random.default_rng(0).normal(-2, 1, D).astype(np.float32))


def torch_step(torch, W, b, c, base):
    F = torch.nn.functional

    def step(v, beta_from, beta_to):
        a = v @ W + c
        increment = (beta_to - beta_from) * (v @ (b - base)) \
            + (F.softplus(beta_to * a) - F.softplus(beta_from * a)).sum(1)
        h = torch.bernoulli(torch.sigmoid(beta_to * a))
        v = torch.bernoulli(torch.sigmoid((1 - beta_to) * base + beta_to * (h @ W.T + b)))
        return increment, v
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--temperatures", type=int, default=14_500)
    parser.add_argument("--run", help="a trained rbm run directory (default: random weights)")
    parser.add_argument("--full", action="store_true", help="also time the whole estimate")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch intra-op threads "
                        "(default 1: a step is ~5 ms, and two threads on a busy 2-core machine "
                        "spent 20-136 ms on it waiting for each other)")
    args = parser.parse_args(argv)

    rbm, base = nanogen_rbm(args.run)
    path = rbm.annealing_path(base)
    v0 = path.initial_state(args.runs)
    with ng.no_grad():
        ours = lambda: path.step(v0, 0.5, 0.5001)                       # noqa: E731
        torch = try_torch(args.threads)
        theirs = None
        if torch is not None:
            W, b, c, t_base = (torch.tensor(t.detach().numpy()) for t in
                               (rbm.weight, rbm.visible_bias, rbm.hidden_bias, base))
            t_step, t_v = torch_step(torch, W, b, c, t_base), torch.tensor(v0.numpy())
            theirs = lambda: t_step(t_v, 0.5, 0.5001)                   # noqa: E731
        step_ours, step_theirs = time_pair(ours, theirs, rounds=3, repeats=30)

        a = rbm.hidden_logits(v0)
        h = ng.bernoulli(a.sigmoid())
        parts = {
            "GEMMs (v W and h W^T)": lambda: (v0 @ rbm.weight, h @ rbm.weight.t()),
            "softplus, sigmoid, sums": lambda: (
                (ng.nn.functional.softplus(0.5 * a) - ng.nn.functional.softplus(0.4 * a)).sum(1),
                (0.5 * a).sigmoid(), (0.5 * rbm.visible_logits(h)).sigmoid()),
            "random draws (2 Bernoulli)": lambda: (ng.bernoulli(a.sigmoid()),
                                                   ng.bernoulli(v0 * 0.5)),
        }
        part_times = {name: time_pair(fn, None, rounds=3, repeats=30)[0]
                      for name, fn in parts.items()}

    steps = args.temperatures - 1
    print(f"AIS for a {D}-{H} RBM: {args.runs} runs x {args.temperatures} temperatures "
          f"({steps} steps)")
    report([(f"one AIS step ({args.runs} runs)", step_ours, step_theirs)])
    print(f"\nestimated whole AIS: nanogen {steps * step_ours:.0f} s"
          + (f", PyTorch {steps * step_theirs:.0f} s" if step_theirs else ""))
    total = sum(part_times.values())
    print("\nwhat one step spends (nanogen, each part timed alone):")
    for name, seconds in part_times.items():
        print(f"  {name:<30}{seconds * 1e3:8.2f} ms  {100 * seconds / total:5.1f}%")
    if args.full:
        ng.manual_seed(0)
        t = time.perf_counter()
        with ng.no_grad():
            estimate = estimate_log_partition(path, runs=args.runs,
                                              temperatures=args.temperatures)
        print(f"\nwhole estimate: log Z = {estimate.log_z:.2f} +- {estimate.stderr:.2f} in "
              f"{time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
