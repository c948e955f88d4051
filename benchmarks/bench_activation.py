"""Activation benchmark: forward + backward of SiLU and GELU (float32) at the sizes of the DDPM
U-Net and the transformer workloads, with nanogen's fused kernels (``kernels/activation.py``),
with the composite array code they replace, and with PyTorch CPU (2 threads) when installed.

    python benchmarks/bench_activation.py

The composite row switches the fused kernels off for its own steps (``fused = None`` on the
Function class), which is the code a ``create_graph=True`` backward still runs.  The ratio
column is nanogen's time over PyTorch's (lower is better).
"""
import numpy as np

import nanogen as ng
import nanogen.functional as F
from common import report, time_pair, try_torch

WORKLOADS = [
    ("SiLU (64,32,28,28)", "silu", F.activation.SiLU, (64, 32, 28, 28)),
    ("GELU (16,256,512)", "gelu", F.activation.GELU, (16, 256, 512)),
]


def activation_step(lib, name, shape, function_class=None, fused=True):
    """y = act(x); y.backward(gy) with x.grad reset each step; ``fused=False`` runs nanogen's
    composite code instead of the fused kernels."""
    rng = np.random.default_rng(0)
    x = lib.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    gy = lib.tensor(rng.standard_normal(shape).astype(np.float32))
    act = getattr(lib.nn.functional, name)
    kernels = function_class.fused if function_class is not None else None

    def step():
        if function_class is not None:
            function_class.fused = kernels if fused else None
        try:
            x.grad = None
            act(x).backward(gy)
        finally:
            if function_class is not None:
                function_class.fused = kernels
    return step


def main():
    torch = try_torch(threads=2)
    rows = []
    for label, name, cls, shape in WORKLOADS:
        theirs = activation_step(torch, name, shape) if torch else None
        ours, t = time_pair(activation_step(ng, name, shape, cls), theirs)
        composite, _ = time_pair(activation_step(ng, name, shape, cls, fused=False), None)
        rows += [(label + " fused", ours, t), (label + " composite", composite, t)]
    report(rows)


if __name__ == "__main__":
    main()
