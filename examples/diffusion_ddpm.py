"""A denoising diffusion model on MNIST digits: learn to remove noise, then start from pure noise.

The forward process destroys a digit x_0 (pixels in [-1, 1]) with Gaussian noise over T = 1,000
steps of a fixed schedule beta_t, and any step has a closed form:

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,    eps ~ N(0, I),   abar_t = prod_s (1 - beta_s)

so that x_T is (nearly) pure noise.  A U-Net eps_theta(x_t, t) learns to tell which noise was
added, trained on the simple loss of Ho et al. (2020),

    L_simple = E_{t, x_0, eps} || eps - eps_theta(x_t, t) ||^2,     t ~ U{1, ..., T},

and generation runs the process backwards from x_T ~ N(0, I), each step putting the network's
guess of x_0 into the Gaussian posterior q(x_{t-1} | x_t, x_0) and drawing from it with fresh
noise (Algorithm 2 of the paper; nanogen.models.diffusion.DDPM).  All T = 1,000 steps cost 1,000
network evaluations per image; here the chain is respaced to 100 evenly spaced steps
(``sample(n, sampler="ancestral", steps=100)``).  ``--sampler ddim --sampler-steps 50`` takes
the deterministic steps of DDIM (Song et al. 2021) instead, the preview sampler of ``nanogen
train ddpm``.  The samples come from an exponential moving average of the weights
(nanogen.optim.ExponentialMovingAverage), which smooths out the last updates' noise.

The U-Net is the small one of the README's DDPM results (16/32/32 channels, one ResBlock per
level, attention at 7x7; 299K parameters).  300 steps give strokes shaped like digits on a dark
background; from the same 300-step network, DDIM with 50 steps left many samples on a noisy
grey background (in the README's 4,000-step run DDIM-50 also scores worse: FID 40.0 against
27.9 for all 1,000 ancestral steps).  It reports L_simple on the test digits (the same noise
and t for every run with the same seed).  The second picture shows 8 ancestral reverse chains,
x_T on the left to x_0 on the right.

    python examples/diffusion_ddpm.py --out ddpm.png        # + ddpm_reverse_process.png

(The same model trains from the command line: ``nanogen train ddpm``.)
"""
import argparse
import itertools
import os
import sys
import time

import nanogen as ng
from nanogen.data import DataLoader, eval_dataset, load_dataset, train_transform
from nanogen.models.diffusion import DDPM
from nanogen.optim import ExponentialMovingAverage
from nanogen.utils import save_image

from common import add_run_options, endless, start_run   # examples/common.py


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=16, help="the U-Net's channels at 28x28 (twice "
                   "as many at 14x14 and 7x7)")
    p.add_argument("--timesteps", type=int, default=1000, help="T, the forward process' steps")
    p.add_argument("--sampler", default="ancestral", choices=["ancestral", "ddim"],
                   help="ancestral: Algorithm 2 of Ho et al. on the respaced chain; ddim: "
                   "deterministic")
    p.add_argument("--sampler-steps", type=int, default=100, help="network evaluations per "
                   "sample (of the T)")
    p.add_argument("--samples", type=int, default=64, help="images in the sample grid")
    add_run_options(p, "ddpm.png", "the sample grid (PNG); the reverse "
                    "chains go beside it as NAME_reverse_process.png")
    args = p.parse_args(argv)
    status = start_run(p, args)
    if status is not None:
        return status

    ng.manual_seed(args.seed)
    train = load_dataset("mnist5k", "train")
    model = DDPM(image_shape=train.sample_shape, timesteps=args.timesteps, schedule="linear",
                 channels=args.width, channel_mults=(1, 2, 2), num_res_blocks=1,
                 groups=min(8, args.width)).to(args.device)
    # data_transform "symmetric": pixels in [-1, 1], where the noise schedule is defined
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        seed=args.seed, transform=train_transform(model.data_transform),
                        device=args.device)
    optimizers = model.configure_optimizers(args.lr)
    # warmup: the average forgets the random initial weights within the first updates
    ema = ExponentialMovingAverage(model, decay=0.999, warmup=True)
    print(f"DDPM, U-Net of {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"T = {model.timesteps}: {args.steps} steps of {args.batch_size} on {args.device}",
          flush=True)

    start = time.time()
    batches = endless(loader)  # epoch after epoch
    for step, batch in enumerate(itertools.islice(batches, args.steps), 1):
        logs = model.training_step(batch, optimizers)        # L_simple at a random t per digit
        ema.update()
        if step % 50 == 0 or step == args.steps:
            print(f"step {step:5d}  L_simple {logs['loss']:.4f}  ({time.time() - start:.0f}s)",
                  flush=True)

    model.eval()
    test = eval_dataset(load_dataset("mnist5k", "test"), model.data_transform)
    with ema.average_parameters(), ng.no_grad(), ng.random.fork_rng(args.seed):
        # the same t and eps for every test digit in every run with this seed
        losses = [(float(model.loss(x)[0].item()), len(x))
                  for x, _ in DataLoader(test, batch_size=250, device=args.device)]
        test_loss = sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
        print(f"test L_simple: {test_loss:.4f} (the EMA weights' noise-prediction error, per "
              f"pixel, on {len(test)} digits)")
        samples = model.sample(args.samples, sampler=args.sampler, steps=args.sampler_steps)
        x, _ = next(iter(DataLoader(test, batch_size=8, device=args.device)))
        chains, nrow = model.figures(x)["reverse_process"]   # x_T ... x_0, 8 rows
    save_image(samples, args.out, nrow=8, scale=2)
    chains_path = f"{os.path.splitext(args.out)[0]}_reverse_process.png"
    save_image(chains, chains_path, nrow=nrow, scale=2)
    print(f"wrote {args.out} and {chains_path}  ({time.time() - start:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
