"""A GAN on a ring of eight Gaussians -- the smallest complete nanogen program.

Goodfellow et al.'s game with the non-saturating generator loss:

    D maximises  E_x[log D(x)] + E_z[log(1 - D(G(z)))]
    G maximises  E_z[log D(G(z))]          (instead of minimising log(1 - D(G(z))))

Both players are MLPs trained with Adam.  The script writes a PNG of real points and generated
samples, and reports how many of the 8 modes the generator covers and the share of samples
within 3σ of a mode.

    python examples/gan_2d.py --out gan_2d.png
"""
import argparse
import time

import numpy as np

import nanogen as ng
import nanogen.nn as nn
import nanogen.nn.functional as F

from nanogen.data.toy import mode_centres, mode_std, ring_of_gaussians

CENTRES, STD = mode_centres("ring8"), mode_std("ring8")
MODES = len(CENTRES)


def mode_stats(samples):
    """(modes covered, share of samples within 3σ of their nearest mode)."""
    d = np.linalg.norm(samples[:, None, :] - CENTRES[None], axis=2)
    nearest, dist = d.argmin(1), d.min(1)
    good = dist < 3 * STD
    return len(set(nearest[good].tolist())), float(good.mean())


def mlp(sizes, act):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="gan_2d.png")
    args = p.parse_args()

    ng.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    G = mlp([args.latent, 128, 128, 2], nn.ReLU).to(args.device)
    D = mlp([2, 128, 128, 1], lambda: nn.LeakyReLU(0.2)).to(args.device)
    opt_g = ng.optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = ng.optim.Adam(D.parameters(), lr=args.lr, betas=(0.5, 0.999))
    ones = ng.ones(args.batch_size, 1, device=args.device)
    zeros = ng.zeros(args.batch_size, 1, device=args.device)

    start = time.time()
    for step in range(1, args.steps + 1):
        real = ng.tensor(ring_of_gaussians(args.batch_size, rng)[0], device=args.device)
        z = ng.randn(args.batch_size, args.latent, device=args.device)
        # discriminator: -[log D(x) + log(1 - D(G(z)))], as logits
        fake = G(z).detach()
        loss_d = F.binary_cross_entropy_with_logits(D(real), ones) + \
            F.binary_cross_entropy_with_logits(D(fake), zeros)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        # generator, non-saturating: -log D(G(z))
        loss_g = F.binary_cross_entropy_with_logits(D(G(z)), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        if step % 500 == 0 or step == args.steps:
            print(f"step {step:5d}  loss_d {loss_d.item():.3f}  loss_g {loss_g.item():.3f}  "
                  f"({time.time() - start:.1f}s)", flush=True)

    G.eval()
    with ng.no_grad():
        samples = G(ng.randn(2000, args.latent, device=args.device)).cpu().numpy()
    covered, quality = mode_stats(samples)
    print(f"modes covered: {covered}/{MODES}, high-quality samples (within 3σ): "
          f"{quality:.1%} of 2000")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    real = ring_of_gaussians(2000, rng)[0]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(real[:, 0], real[:, 1], s=2, alpha=0.4, label="data")
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, label="generator")
    ax.set_title(f"GAN after {args.steps} steps: {covered}/8 modes, {quality:.0%} within 3σ")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4)
    fig.savefig(args.out, dpi=100, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
