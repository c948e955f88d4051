"""Normalisation benchmark: forward + backward of the norm layers and of AdaIN (float32), side by
side with PyTorch CPU (2 threads) when it is installed.

    python benchmarks/bench_norm.py

Each step runs the layer on an input that requires grad and backpropagates a fixed random
gradient; gradients are reset to None between steps (as ``zero_grad()`` does).  AdaIN is
compared with PyTorch's composite of instance norm and a per-sample affine map (PyTorch has no
AdaIN op).  The ratio column is nanogen's time over PyTorch's (lower is better).
"""
import numpy as np

import nanogen as ng
from common import report, time_pair, try_torch


def layer_step(lib, make_layer, shape):
    """y = layer(x); y.backward(gy), parameters and x.grad reset each step."""
    rng = np.random.default_rng(0)
    layer = make_layer(lib.nn)
    x = lib.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    gy = lib.tensor(rng.standard_normal(shape).astype(np.float32))
    params = [x] + list(layer.parameters())

    def step():
        for p in params:
            p.grad = None
        layer(x).backward(gy)
    return step


def adain_step(lib, shape, fused):
    rng = np.random.default_rng(0)
    n, c = shape[:2]
    x = lib.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    scale = lib.tensor(rng.standard_normal((n, c)).astype(np.float32) + 1, requires_grad=True)
    bias = lib.tensor(rng.standard_normal((n, c)).astype(np.float32), requires_grad=True)
    gy = lib.tensor(rng.standard_normal(shape).astype(np.float32))
    F = lib.nn.functional

    def forward():
        if fused:
            return F.adain(x, scale, bias)
        return F.instance_norm(x) * scale[:, :, None, None] + bias[:, :, None, None]

    def step():
        for p in (x, scale, bias):
            p.grad = None
        forward().backward(gy)
    return step


WORKLOADS = [
    ("BatchNorm2d (64,64,14,14)", lambda nn: nn.BatchNorm2d(64), (64, 64, 14, 14)),
    ("BatchNorm2d (64,128,7,7)", lambda nn: nn.BatchNorm2d(128), (64, 128, 7, 7)),
    ("GroupNorm(8) (64,64,28,28)", lambda nn: nn.GroupNorm(8, 64), (64, 64, 28, 28)),
    ("LayerNorm(128) (16,256,128)", lambda nn: nn.LayerNorm(128), (16, 256, 128)),
]


def main():
    torch = try_torch(threads=2)
    rows = []
    for name, make, shape in WORKLOADS:
        ours = layer_step(ng, make, shape)
        theirs = layer_step(torch, make, shape) if torch else None
        rows.append((name + " fwd+bwd", *time_pair(ours, theirs)))
    shape = (64, 64, 28, 28)
    ours = adain_step(ng, shape, fused=True)
    theirs = adain_step(torch, shape, fused=False) if torch else None
    rows.append(("AdaIN (64,64,28,28) fwd+bwd", *time_pair(ours, theirs)))
    report(rows)


if __name__ == "__main__":
    main()
