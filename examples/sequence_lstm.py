"""A character-level language model: an LSTM reads Python's own documentation and writes more.

A sequence model is a likelihood model whose pixels are characters: the chain rule over the
text, one character at a time,

    log p(c_1 ... c_T) = sum_t log p(c_t | c_1 ... c_{t-1}),

with the history summarised by a recurrent network's state.  Here an embedding of each
character feeds an LSTM (nanogen.nn.LSTM, PyTorch's layer: input, forget and output gates
around a cell c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t)), and a linear layer turns h_t into
logits over the next character.  Training minimises the cross-entropy of the next character on
random windows of the text, with the gradient's norm clipped (recurrent networks' gradients can
explode through time).  The score is bits per character on held-out text: 0 would be
clairvoyance; a uniform guess over this text's ~100 symbols costs 6.7, and good models of English
get below 1.5.

The text is ``pydoc_data.topics``, the help pages ``help("with")`` shows, shipped with every
Python: 465K characters, of which the last tenth is held out.  Generation feeds the model its own
samples, one character at a time from softmax(logits / temperature), carrying the LSTM's state.

The picture is the training and held-out loss in bits per character against the step.

    python examples/sequence_lstm.py --out lstm.png
    python examples/sequence_lstm.py --prompt "The with statement" --temperature 0.6
"""
import argparse
import math
import sys
import time

import numpy as np

import nanogen as ng
import nanogen.nn.functional as F
from nanogen import nn
from nanogen.utils import plot_curves

from common import add_run_options, start_run   # examples/common.py


class CharLSTM(nn.Module):
    """Characters -> embedding -> LSTM -> logits of the next character."""

    def __init__(self, vocab_size, embedding_dim, hidden_size, num_layers):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens, state=None):
        """tokens (N, T) -> logits (N, T, V) and the LSTM's final state (h, c)."""
        out, state = self.lstm(self.embedding(tokens), state)
        return self.head(out), state


def bits_per_char(model, tokens):
    """The mean cross-entropy of every next character of ``tokens`` (N, T + 1), in bits."""
    logits, _ = model(tokens[:, :-1])
    nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    return nats / math.log(2.0)


def generate(model, prompt_ids, length, temperature, device):
    """``length`` characters after ``prompt_ids``, each drawn from the model's next-character
    distribution at ``temperature``, fed back in with the LSTM's state."""
    with ng.no_grad():
        logits, state = model(ng.tensor(np.asarray([prompt_ids]), device=device))
        out = []
        for _ in range(length):
            probs = F.softmax(logits[:, -1] / temperature, dim=-1)
            token = ng.multinomial(probs, 1)                          # (1, 1)
            out.append(int(token.item()))
            logits, state = model(token.to(device), state)
        return out


def main(argv=None):
    from pydoc_data.topics import topics

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=100, help="characters per training window")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--hidden", type=int, default=256, help="LSTM units")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--eval-windows", type=int, default=32, help="held-out windows of "
                   "--seq-len characters scored every --eval-every steps and at the end")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--prompt", default="The ")
    p.add_argument("--length", type=int, default=400, help="characters to generate")
    p.add_argument("--temperature", type=float, default=0.8)
    add_run_options(p, "lstm.png", "the loss curves (PNG)")
    args = p.parse_args(argv)
    status = start_run(p, args)
    if status is not None:
        return status
    if not args.temperature > 0:
        p.error(f"--temperature must be positive, got {args.temperature}")

    # the corpus: every help topic, in a fixed order; characters numbered by sorted value
    text = "\n\n".join(topics[key] for key in sorted(topics))
    vocab = sorted(set(text))
    index = {ch: i for i, ch in enumerate(vocab)}
    unknown = sorted(set(args.prompt) - set(index))
    if unknown:
        p.error(f"--prompt holds characters the text never uses: {''.join(unknown)!r}")
    ids = np.array([index[ch] for ch in text], dtype=np.int64)
    split = len(ids) * 9 // 10
    train_ids, held_out_ids = ids[:split], ids[split:]

    ng.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)              # where the training windows start
    window = args.seq_len + 1                           # inputs and their next characters

    def windows(source, starts):
        return ng.tensor(np.stack([source[s:s + window] for s in starts]), device=args.device)

    held_out = windows(held_out_ids, np.linspace(0, len(held_out_ids) - window,
                                                 args.eval_windows).astype(np.int64))
    model = CharLSTM(len(vocab), args.embedding, args.hidden, args.layers).to(args.device)
    optimizer = ng.optim.Adam(model.parameters(), lr=args.lr)
    print(f"character LSTM, {sum(p.numel() for p in model.parameters()):,} parameters, on "
          f"{len(text):,} characters of pydoc topics ({len(vocab)} symbols): {args.steps} steps "
          f"of {args.batch_size} x {args.seq_len} on {args.device}", flush=True)

    start, records = time.time(), []
    for step in range(1, args.steps + 1):
        batch = windows(train_ids, rng.integers(0, len(train_ids) - window, args.batch_size))
        loss = bits_per_char(model, batch)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        record = {"step": step, "train bits/char": float(loss.item())}
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            with ng.no_grad():
                record["held-out bits/char"] = float(bits_per_char(model, held_out).item())
            model.train()
            print(f"step {step:5d}  train {record['train bits/char']:.3f}  held-out "
                  f"{record['held-out bits/char']:.3f} bits/char  ({time.time() - start:.0f}s)",
                  flush=True)
        records.append(record)

    model.eval()
    score = records[-1]["held-out bits/char"]
    print(f"held-out loss: {score:.3f} bits per character ({len(held_out)} windows of "
          f"{args.seq_len})")
    sample = generate(model, [index[ch] for ch in args.prompt], args.length, args.temperature,
                      args.device)
    print(f"--- generated at temperature {args.temperature} ---")
    print(args.prompt + "".join(vocab[i] for i in sample))
    print("---")
    plot_curves(records, args.out, x="step", title=f"character LSTM on pydoc topics: "
                f"{score:.2f} bits/char held out")
    print(f"wrote {args.out}  ({time.time() - start:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
