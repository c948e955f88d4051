"""Engine benchmark: full training steps (forward, backward, Adam) of MLP workloads, and a
gradient-penalty step (double backward), side by side with PyTorch CPU when it is installed.

    python benchmarks/bench_engine.py

The ratio column is nanogen's step time over PyTorch's (lower is better).
"""
import numpy as np

import nanogen as ng
from common import report, time_pair, try_torch


def mlp(lib, sizes):
    nn = lib.nn
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def classifier_step(lib, batch, sizes):
    """Cross-entropy training step of an MLP classifier."""
    model = mlp(lib, sizes)
    opt = lib.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = lib.tensor(rng.standard_normal((batch, sizes[0])).astype(np.float32))
    y = lib.tensor(rng.integers(0, sizes[-1], batch))
    F = lib.nn.functional

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def gan_step(lib, batch=256, latent=16, width=128):
    """One discriminator and one generator step of the 2-D GAN in examples/gan_2d.py."""
    F = lib.nn.functional
    G, D = mlp(lib, [latent, width, width, 2]), mlp(lib, [2, width, width, 1])
    og = lib.optim.Adam(G.parameters(), lr=5e-4, betas=(0.5, 0.999))
    od = lib.optim.Adam(D.parameters(), lr=5e-4, betas=(0.5, 0.999))
    rng = np.random.default_rng(0)
    real = lib.tensor(rng.standard_normal((batch, 2)).astype(np.float32))
    z = lib.tensor(rng.standard_normal((batch, latent)).astype(np.float32))
    ones, zeros = lib.ones(batch, 1), lib.zeros(batch, 1)

    def step():
        loss_d = F.binary_cross_entropy_with_logits(D(real), ones) + \
            F.binary_cross_entropy_with_logits(D(G(z).detach()), zeros)
        od.zero_grad()
        loss_d.backward()
        od.step()
        loss_g = F.binary_cross_entropy_with_logits(D(G(z)), ones)
        og.zero_grad()
        loss_g.backward()
        og.step()
    return step


def gradient_penalty_step(lib, batch=256, width=256):
    """A WGAN-GP critic step on 2-D points: the penalty needs the gradient of a gradient."""
    D = mlp(lib, [2, width, width, 1])
    opt = lib.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
    rng = np.random.default_rng(0)
    x = lib.tensor(rng.standard_normal((batch, 2)).astype(np.float32))

    def step():
        xi = x.detach().requires_grad_(True)
        out = D(xi)
        (g,) = lib.autograd.grad(out.sum(), xi, create_graph=True)
        penalty = ((g.pow(2).sum(1).sqrt() - 1.0) ** 2).mean()
        loss = -out.mean() + 10.0 * penalty
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


WORKLOADS = [
    ("MLP 784-256-256-10, batch 64", lambda lib: classifier_step(lib, 64, [784, 256, 256, 10])),
    ("MLP 784-1024-1024-10, batch 256",
     lambda lib: classifier_step(lib, 256, [784, 1024, 1024, 10])),
    ("2-D GAN (G+D steps), batch 256", gan_step),
    ("WGAN-GP critic step, batch 256", gradient_penalty_step),
]


def main():
    torch = try_torch()
    rows = []
    for name, make in WORKLOADS:
        ng.manual_seed(0)
        ours, theirs = time_pair(make(ng), make(torch) if torch else None)
        rows.append((name, ours, theirs))
    report(rows)


if __name__ == "__main__":
    main()
