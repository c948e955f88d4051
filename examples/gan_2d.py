"""A GAN on a ring of eight Gaussians: does the generator find every mode?

Goodfellow et al.'s game, played by two small MLPs (nanogen.models.gans.GAN):

    D maximises  E_x[log D(x)] + E_z[log(1 - D(G(z)))]
    G minimises  -E_z[log D(G(z))]   (non-saturating, the default)
              or  E_z[log(1 - D(G(z)))]   (--loss minimax: the original, whose gradient vanishes
                                           while D rejects the samples)

with k discriminator updates per generator update (--k), Adam (beta1 = 0.5) and a cosine learning
rate schedule.  It reports how many of the 8 modes the generator covers and the share of its
samples within 3 sigma of a mode (nanogen.metrics.modes), and draws the samples over the data.

    python examples/gan_2d.py --out gan_2d.png
    python examples/gan_2d.py --loss minimax --out gan_2d_minimax.png

(The same model trains from the command line: ``nanogen train gan --dataset ring8``.)
"""
import argparse
import time

import nanogen as ng
from nanogen.data import DataLoader, load_dataset
from nanogen.metrics.modes import toy_mode_coverage
from nanogen.models.gans import GAN
from nanogen.training.loop import learning_rate_factor
from nanogen.utils import scatter_points


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ring8", choices=["ring8", "grid25"])
    p.add_argument("--loss", default="non-saturating", choices=["non-saturating", "minimax"])
    p.add_argument("--k", type=int, default=2, help="discriminator updates per generator update "
                   "(with 1, some seeds collapse onto a few modes)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--samples", type=int, default=5000, help="samples the metric scores")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="gan_2d.png")
    args = p.parse_args()

    ng.manual_seed(args.seed)
    data = load_dataset(args.dataset, "train")
    model = GAN(image_shape=data.sample_shape, num_classes=data.num_classes, loss=args.loss,
                k=args.k).to(args.device)
    # k minibatches per step, as the training loop hands them to a GAN
    loader = DataLoader(data, batch_size=args.batch_size * args.k, shuffle=True, drop_last=True,
                        seed=args.seed, device=args.device)
    optimizers = model.configure_optimizers(args.lr)

    start, step = time.time(), 0
    while step < args.steps:
        for batch in loader:
            factor = learning_rate_factor("cosine", step, args.steps)
            for opt in optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = args.lr * factor
            logs = model.training_step(batch, optimizers)
            step += 1
            if step % 500 == 0 or step == args.steps:
                print(f"step {step:5d}  " + "  ".join(f"{k} {v:.3f}" for k, v in logs.items())
                      + f"  ({time.time() - start:.0f}s)", flush=True)
            if step == args.steps:
                break

    model.eval()
    samples = model.sample(args.samples).cpu()
    result = toy_mode_coverage(samples, args.dataset)
    print(f"modes covered: {result['modes_covered']}/{result['num_modes']}, high-quality "
          f"samples (within 3 sigma): {result['high_quality_share']:.1%} of "
          f"{result['num_samples']}")
    title = (f"{args.loss} GAN, {args.steps} steps: {result['modes_covered']}/"
             f"{result['num_modes']} modes, {result['high_quality_share']:.0%} within 3σ")
    scatter_points(samples[:2000], args.out, reference=data.points[:2000], title=title)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
