"""Convolution benchmark: forward and forward+backward (gradients for input and weight) of the
conv family, float32, side by side with PyTorch CPU (2 threads) when it is installed.

    python benchmarks/bench_conv.py

Workloads: a dense 3x3 64->64 conv on (64, 64, 28, 28); the PixelCNN mask-B 3x3 conv of the
same shape (compared with PyTorch's DENSE conv: skipping the masked taps is the point); the
DCGAN discriminator's 4x4 stride-2 convs and generator's 4x4 stride-2 transposed convs on
MNIST-sized batches; a mask-A 7x7 1->64 first PixelCNN layer.  The ratio column is nanogen's
time over PyTorch's (lower is better).
"""
import numpy as np

import nanogen as ng
from common import report, time_pair, try_torch

BATCH = 64


def _arrays(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) * 0.1 for s in shapes]


def _layers(lib, kind, x_shape, weights, **kw):
    """A step running ``kind`` layers in sequence on x: forward only, or forward + backward
    (gradients for the input and every weight)."""
    F = lib.nn.functional
    x0, *ws = _arrays([x_shape] + weights)
    if lib is ng:
        x, ws = ng.tensor(x0, requires_grad=True), [ng.tensor(w, requires_grad=True) for w in ws]
    else:
        x = lib.tensor(x0, requires_grad=True)
        ws = [lib.tensor(w, requires_grad=True) for w in ws]

    def forward():
        h = x
        for w in ws:
            if kind == "conv":
                h = F.conv2d(h, w, None, **kw)
            elif kind == "conv_transpose":
                h = F.conv_transpose2d(h, w, None, **kw)
            else:               # masked: nanogen's masked conv, or torch's dense conv of it
                h = F.masked_conv2d(h, w, None, kind[-1]) if lib is ng else \
                    F.conv2d(h, w, None, padding=w.shape[-1] // 2)
        return h

    out_grad = [None]

    def fwd():
        with lib.no_grad():
            forward()

    def fwd_bwd():
        y = forward()
        if out_grad[0] is None:
            out_grad[0] = lib.ones(*y.shape) if lib is ng else lib.ones(y.shape)
        for t in [x] + ws:
            t.grad = None
        y.backward(out_grad[0])
    return fwd, fwd_bwd


WORKLOADS = [
    # name, kind, input shape, weight shapes, kwargs
    ("dense 3x3 64->64 28x28", "conv", (BATCH, 64, 28, 28), [(64, 64, 3, 3)],
     dict(padding=1)),
    ("maskB 3x3 64->64 vs dense", "masked_B", (BATCH, 64, 28, 28), [(64, 64, 3, 3)], {}),
    ("DCGAN D conv 4x4 s2", "conv", (BATCH, 1, 28, 28),
     [(64, 1, 4, 4), (128, 64, 4, 4)], dict(stride=2, padding=1)),
    ("DCGAN G convT 4x4 s2", "conv_transpose", (BATCH, 128, 7, 7),
     [(128, 64, 4, 4), (64, 1, 4, 4)], dict(stride=2, padding=1)),
    ("maskA 7x7 1->64 vs dense", "masked_A", (BATCH, 1, 28, 28), [(64, 1, 7, 7)], {}),
]


def main():
    torch = try_torch(threads=2)
    rows = []
    for name, kind, x_shape, weights, kw in WORKLOADS:
        ours = _layers(ng, kind, x_shape, weights, **kw)
        theirs = _layers(torch, kind, x_shape, weights, **kw) if torch else (None, None)
        for label, a, b in (("fwd", ours[0], theirs[0]), ("fwd+bwd", ours[1], theirs[1])):
            t_ours, t_theirs = time_pair(a, b, rounds=3, warmup=2, repeats=10)
            rows.append((f"{name} {label}", t_ours, t_theirs))
    report(rows)


if __name__ == "__main__":
    main()
