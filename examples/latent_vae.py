"""A variational autoencoder on binarized MNIST digits: reconstructions, samples, and a walk
through its latent space.

A latent-variable model explains an image x by a code z it never observes: draw z ~ N(0, I),
then x ~ p(x | z), a Bernoulli per pixel whose probabilities a decoder network computes from z.
log p(x) integrates over every z and has no closed form, so the VAE (Kingma & Welling 2014)
trains an encoder q(z | x) -- a diagonal Gaussian whose mean and variance another network
outputs -- and maximises the evidence lower bound

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || N(0, I))  <=  log p(x),

with one z = mu + sigma * eps per image (the reparameterisation trick makes it differentiable in
mu and sigma) and the KL term in closed form (nanogen.models.autoencoders.VAE).  On the test
digits it reports -ELBO and the tighter importance-weighted bound (IWAE, k samples of q), both in
nats per image.

Three pictures: samples (decoded z ~ N(0, I)), reconstructions (test digits beside the decoding
of their codes) and an interpolation: two test digits encoded, the straight line between their
codes decoded in 10 steps -- each row turns one digit into another through images that still
look like digits, because the KL term packs the codes of the training set together.

    python examples/latent_vae.py --out vae.png      # + vae_reconstructions.png,
                                                     #   vae_interpolation.png

(The same model trains from the command line: ``nanogen train vae``.)
"""
import argparse
import itertools
import os
import sys
import time

import numpy as np

import nanogen as ng
from nanogen.data import DataLoader, eval_dataset, load_dataset, train_transform
from nanogen.models.autoencoders import VAE
from nanogen.models.latent import interpolation_grid
from nanogen.utils import save_image

from common import add_run_options, endless, start_run   # examples/common.py


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent-dim", type=int, default=32)
    p.add_argument("--width", type=int, default=32, help="conv channels of the first level "
                   "(the second has twice as many)")
    p.add_argument("--iwae-k", type=int, default=100, help="samples of q per test digit in the "
                   "IWAE bound")
    add_run_options(p, "vae.png", "the sample grid (PNG); the other pictures "
                    "go beside it as NAME_reconstructions.png and NAME_interpolation.png")
    args = p.parse_args(argv)
    status = start_run(p, args)
    if status is not None:
        return status

    ng.manual_seed(args.seed)
    train = load_dataset("mnist5k", "train")
    # the settings of `nanogen train vae`: two convs per resolution, 1-pixel random shifts
    model = VAE(image_shape=train.sample_shape, latent_dim=args.latent_dim,
                channels=(args.width, 2 * args.width), depth=2, max_shift=1).to(args.device)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        seed=args.seed, transform=train_transform(model.data_transform),
                        device=args.device)
    optimizers = model.configure_optimizers(args.lr)
    print(f"VAE, {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{args.latent_dim}-d codes: {args.steps} steps of {args.batch_size} on "
          f"{args.device}", flush=True)

    start = time.time()
    batches = endless(loader)  # epoch after epoch
    for step, batch in enumerate(itertools.islice(batches, args.steps), 1):
        # the loss is recon + KL; training_step logs both and their sum, -ELBO
        logs = model.training_step(batch, optimizers)
        if step % 100 == 0 or step == args.steps:
            print(f"step {step:5d}  -ELBO {logs['neg_elbo']:7.2f} = recon {logs['recon']:6.2f}"
                  f" + KL {logs['kl']:5.2f} nats  ({time.time() - start:.0f}s)", flush=True)

    model.eval()
    test = eval_dataset(load_dataset("mnist5k", "test"), model.data_transform, seed=0)
    with ng.random.fork_rng(args.seed):                       # the bounds draw z from q
        metrics = model.evaluate(DataLoader(test, batch_size=250, device=args.device),
                                 iwae_k=args.iwae_k)
    print(f"test -ELBO: {metrics['neg_elbo_nats']:.2f} nats (recon "
          f"{metrics['recon_nats']:.2f} + KL {metrics['kl_nats']:.2f}); IWAE bound (k = "
          f"{args.iwae_k}): {metrics['iwae_nll_nats']:.2f} nats, on {metrics['num_examples']} "
          f"digits")

    stem = os.path.splitext(args.out)[0]
    save_image(model.sample(64), args.out, nrow=8, scale=2)   # sigmoid(decoder(z)), z ~ N(0, I)
    x, labels = test.arrays
    first = [int(np.flatnonzero(labels == d)[0]) for d in range(10)]   # one test digit of each
    images = ng.tensor(x[first], device=args.device)
    # top row: the test digits; bottom row: sigmoid(decoder(mu(x))), their reconstructions
    save_image(ng.cat([images, model.reconstruct(images)]), f"{stem}_reconstructions.png",
               nrow=10, scale=2)
    # row d: the code of digit d to the code of digit d + 1, decoded in 10 steps
    with ng.no_grad():
        mu, _ = model.encode(images)
        codes = interpolation_grid(mu[:-1], mu[1:], 10)       # (9 * 10, latent_dim)
        path = ng.sigmoid(model.decode(ng.tensor(codes, device=args.device)))
    save_image(path, f"{stem}_interpolation.png", nrow=10, scale=2)
    print(f"wrote {args.out}, {stem}_reconstructions.png and {stem}_interpolation.png  "
          f"({time.time() - start:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
