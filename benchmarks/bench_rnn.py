"""Recurrent benchmark: an LSTM language-model training step against PyTorch CPU, and nanogen's
fused recurrent code against the same arithmetic written with ordinary nanogen ops.

    python benchmarks/bench_rnn.py [--only lm,cells,loop] [--rounds 2] [--repeats 3] [--quick]

* ``lm``: embedding 64 -> 2-layer LSTM with 256 hidden units -> linear to a vocabulary of 64,
  batch 32, 128 time steps, cross-entropy, one Adam step (forward, backward, update).  The
  model is written once against the PyTorch-compatible API and built with ``lib = nanogen``
  and ``lib = torch``.  Each library runs in processes of its own, alternating (nanogen,
  PyTorch, nanogen, ...), and each figure is the best over the rounds of a best-of-3 median,
  as in ``bench_models.py``: the thread pools of the two libraries spin after their work and
  would slow each other down in one process.
* ``cells``: forward + backward of one LSTM cell's gate arithmetic (batch 32, H = 256) and of
  one GRU cell's: ``F.lstm_cell_gates`` / ``F.gru_cell_gates`` (one fused kernel each way)
  against the composite cell, the same equations written with nanogen's sigmoid, tanh, mul
  and add (each op a pass over memory, each recorded on the graph).
* ``loop``: forward + backward of one LSTM layer over 128 steps (batch 32, H = 256) with the
  input projection given: the fused time loop (``functional.recurrent.recurrence``: arrays,
  fused kernels, backpropagation through time without a per-step graph) against the same loop
  of differentiable ops (a ``linear`` and ``F.lstm_cell_gates`` a step, the path gradients of
  gradients take).

``cells`` and ``loop`` compare nanogen with itself, in one process, alternating the two in
blocks (``common.time_pair``).  The ratio column is the first figure over the second (lower
is better).
"""
import argparse

import numpy as np

import nanogen as ng
from common import comparison_arguments, report, time_in_processes, time_in_this_process, time_pair

VOCAB, EMBED, HIDDEN, LAYERS, BATCH, STEPS = 64, 64, 256, 2, 32, 128


# ---------------------------------------------------------------- (a) LSTM language model
def lstm_lm_step(lib, batch=BATCH, steps=STEPS):
    """One training step of a character-level LSTM language model (next-token prediction)."""
    nn, F = lib.nn, lib.nn.functional

    class LanguageModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, EMBED)
            self.lstm = nn.LSTM(EMBED, HIDDEN, LAYERS, batch_first=True)
            self.head = nn.Linear(HIDDEN, VOCAB)

        def forward(self, tokens):
            hidden, _ = self.lstm(self.embed(tokens))
            return self.head(hidden)

    model = LanguageModel()
    opt = lib.optim.Adam(model.parameters(), lr=1e-3)
    tokens = lib.tensor(np.random.default_rng(0).integers(0, VOCAB, (batch, steps + 1)))
    x, y = tokens[:, :-1], tokens[:, 1:]

    def step():
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def bench_lm(args):
    ours, theirs = time_in_processes(__file__, args.rounds, args.repeats, args.threads,
                                     device=args.device)
    name = f"LSTM LM step (2x{HIDDEN}, T={STEPS}, N={BATCH})"
    print(f"  {name}: {ours * 1e3:.1f} ms" + (f" vs PyTorch {theirs * 1e3:.1f} ms"
                                               if theirs else ""), flush=True)
    return [(name, ours, theirs)]


# ---------------------------------------------------------------- (b) fused vs composite cells
def composite_lstm_cell(gates, c):
    """Eq. (1) of nanogen.functional.recurrent with ordinary ops."""
    F = ng.nn.functional
    i, f, g, o = gates.chunk(4, 1)
    c_new = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
    return F.sigmoid(o) * F.tanh(c_new), c_new


def composite_gru_cell(gi, gh, h):
    """Eq. (2) of nanogen.functional.recurrent with ordinary ops."""
    F = ng.nn.functional
    ir, iz, in_ = gi.chunk(3, 1)
    hr, hz, hn = gh.chunk(3, 1)
    r, z = F.sigmoid(ir + hr), F.sigmoid(iz + hz)
    return (1 - z) * F.tanh(in_ + r * hn) + z * h


def _fwd_bwd(fn, leaves):
    def step():
        outs = fn(*leaves)
        outs = outs if isinstance(outs, tuple) else (outs,)
        ng.autograd.backward(list(outs), [ng.ones(*o.shape) for o in outs])
    return step


def bench_cells(args):
    F = ng.nn.functional
    rng = np.random.default_rng(0)

    def leaf(*shape):
        return ng.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    rows = []
    lstm = [leaf(BATCH, 4 * HIDDEN), leaf(BATCH, HIDDEN)]
    gru = [leaf(BATCH, 3 * HIDDEN), leaf(BATCH, 3 * HIDDEN), leaf(BATCH, HIDDEN)]
    for name, fused, composite, leaves in (
            ("LSTM cell gates fwd+bwd", F.lstm_cell_gates, composite_lstm_cell, lstm),
            ("GRU cell gates fwd+bwd", F.gru_cell_gates, composite_gru_cell, gru)):
        ours, theirs = time_pair(_fwd_bwd(fused, leaves), _fwd_bwd(composite, leaves),
                                 rounds=args.rounds, warmup=5, repeats=20 * args.repeats)
        print(f"  {name} (N={BATCH}, H={HIDDEN}): fused {ours * 1e6:.0f} us vs composite "
              f"{theirs * 1e6:.0f} us", flush=True)
        rows.append((name, ours, theirs))
    return rows


def bench_loop(args):
    from nanogen.functional.recurrent import recurrence, recurrence_composite
    rng = np.random.default_rng(0)

    def leaf(*shape, scale=1.0):
        return ng.tensor((rng.standard_normal(shape) * scale).astype(np.float32),
                         requires_grad=True)
    H = HIDDEN
    leaves = [leaf(STEPS, BATCH, 4 * H), leaf(4 * H, H, scale=H ** -0.5), leaf(BATCH, H),
              leaf(BATCH, H)]

    def fused(*a):
        out, h, c = recurrence("lstm", *a)
        return out, c

    def composite(*a):
        packed = recurrence_composite("lstm", *a)
        return packed[:STEPS], packed[STEPS]
    ours, theirs = time_pair(_fwd_bwd(fused, leaves), _fwd_bwd(composite, leaves),
                             rounds=args.rounds, warmup=1, repeats=args.repeats)
    name = f"LSTM layer fwd+bwd (T={STEPS})"
    print(f"  {name}: fused loop {ours * 1e3:.1f} ms vs composite {theirs * 1e3:.1f} ms",
          flush=True)
    return [(name, ours, theirs)]


BENCHES = {"lm": bench_lm, "cells": bench_cells, "loop": bench_loop}


def main():
    parser = comparison_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]),
                                  BENCHES, "alternating rounds (nanogen / PyTorch processes; "
                                  "fused / composite)")
    parser.add_argument("--quick", action="store_true",
                        help="one round of two repeats (a rough figure in a fraction of the time)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.repeats = 1, 2
    if args.worker:
        print(time_in_this_process(args.worker, lstm_lm_step, args.repeats, args.threads,
                                   args.device))
        return
    rows = []
    for key in args.only.split(","):
        rows += BENCHES[key](args)
    print("(the second column is PyTorch for the LM step, the composite version otherwise)")
    report(rows)


if __name__ == "__main__":
    main()
