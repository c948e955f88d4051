"""What the example scripts share: the options every one takes (--device, --seed, --out), the
checks on them, and endless batches.  (The scripts import it as ``common``: run them as
``python examples/NAME.py``.)"""
import itertools
import os
import sys

import nanogen as ng


def add_run_options(parser, out, out_help):
    """--device cpu|cuda, --seed, and --out (a PNG, default ``out``)."""
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=out, help=out_help)


def start_run(parser, args):
    """Check the common options before any work: None to go on, or the exit status 2 after one
    line on stderr (``--device cuda`` without a GPU).  ``--out`` must name a PNG; its folder is
    created."""
    if args.device == "cuda" and not ng.cuda.is_available():
        print(f"{parser.prog}: --device cuda: no GPU is available (CuPy sees no NVIDIA GPU; "
              f"install nanogen[cuda] on a machine with one, or run with --device cpu)",
              file=sys.stderr)
        return 2
    if not args.out.lower().endswith(".png"):
        parser.error(f"--out {args.out}: the picture is a PNG file, name it NAME.png")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    return None


def endless(loader):
    """The loader's batches, epoch after epoch."""
    return itertools.chain.from_iterable(itertools.repeat(loader))
