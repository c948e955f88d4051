"""A DCGAN on MNIST digits: a generator that never sees a digit learns to draw them.

An adversarial model has no likelihood to climb.  Two networks play a game instead (Goodfellow
et al. 2014): a discriminator D scores images as real or fake, a generator G turns noise
z ~ N(0, I) into images, and

    D maximises  E_x[log D(x)] + E_z[log(1 - D(G(z)))]      (tell the digits from G's fakes)
    G minimises  -E_z[log D(G(z))]                          (make D call its fakes real)

in alternating Adam steps (lr 2e-4, beta1 0.5): ``model.training_step`` is one round, a
discriminator update on a batch of real digits and fresh fakes, then a generator update through
the frozen discriminator.  DCGAN (Radford et al. 2016; nanogen.models.gans.DCGAN) plays it with
convolutional networks: stride-2 transposed convolutions up in G, stride-2 convolutions down in
D, batch norm, ReLU / tanh in G and LeakyReLU in D.

Without a likelihood, the samples are judged by a classifier's features: the Frechet distance
(FID) between the features of generated and of real test digits, lower is better (the training
digits themselves score about 9 against the test digits; the test digits blurred by a 3x3 box,
about 100; see nanogen.metrics).  A few hundred steps give strokes shaped like digits; the FID
keeps falling for thousands of steps (63 after 20,000).  The second picture walks the codes
between random pairs along great circles (slerp): the digits morph smoothly into each other.

    python examples/adversarial_dcgan.py --out dcgan.png      # + dcgan_interpolation.png

(The same model trains from the command line: ``nanogen train dcgan``.)
"""
import argparse
import itertools
import os
import sys
import time

import nanogen as ng
from nanogen.data import DataLoader, load_dataset, train_transform
from nanogen.metrics import sample_quality
from nanogen.models.gans import DCGAN
from nanogen.utils import save_image

from common import add_run_options, endless, start_run   # examples/common.py


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--width", type=int, default=64, help="D's channels at 14x14 (at 7x7 twice "
                   "as many); G mirrors them")
    p.add_argument("--latent-dim", type=int, default=100)
    p.add_argument("--num-samples", type=int, default=500, help="samples FID is computed on")
    add_run_options(p, "dcgan.png", "the sample grid (PNG); the "
                    "interpolation goes beside it as NAME_interpolation.png")
    args = p.parse_args(argv)
    status = start_run(p, args)
    if status is not None:
        return status
    if args.num_samples < 2:
        p.error(f"--num-samples {args.num_samples}: FID needs at least 2 samples")

    ng.manual_seed(args.seed)
    train = load_dataset("mnist5k", "train")
    model = DCGAN(image_shape=train.sample_shape, latent_dim=args.latent_dim,
                  channels=(args.width, 2 * args.width)).to(args.device)
    # data_transform "symmetric": pixels in [-1, 1], the range of G's tanh
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        seed=args.seed, transform=train_transform(model.data_transform),
                        device=args.device)
    optimizers = model.configure_optimizers(args.lr)    # {"discriminator": Adam, "generator": Adam}
    print(f"DCGAN, G {sum(p.numel() for p in model.generator.parameters()):,} and D "
          f"{sum(p.numel() for p in model.discriminator.parameters()):,} parameters: "
          f"{args.steps} steps of {args.batch_size} on {args.device}", flush=True)

    start = time.time()
    batches = endless(loader)  # epoch after epoch
    for step, batch in enumerate(itertools.islice(batches, args.steps), 1):
        logs = model.training_step(batch, optimizers)       # one D update, then one G update
        if step % 100 == 0 or step == args.steps:
            # d_real, d_fake: D's mean belief that the real digits / the fakes are real
            print(f"step {step:5d}  loss_d {logs['loss_d']:.3f}  loss_g {logs['loss_g']:.3f}  "
                  f"D(x) {logs['d_real']:.2f}  D(G(z)) {logs['d_fake']:.2f}  "
                  f"({time.time() - start:.0f}s)", flush=True)

    model.eval()                             # batch norm on its running statistics
    samples = ng.cat([model.sample(min(250, args.num_samples - n))
                      for n in range(0, args.num_samples, 250)])
    scores = sample_quality(samples, dataset="mnist5k", split="test", seed=args.seed)
    print(f"FID {scores['fid']:.1f}, Inception Score {scores['inception_score']:.2f} "
          f"({scores['num_samples']} samples against the {scores['num_reference']} test "
          f"digits)")

    save_image(samples[:64], args.out, nrow=8, scale=2)
    interpolation, nrow = model.figures()["interpolation_slerp"]   # 8 pairs, 10 codes a row
    interpolation_path = f"{os.path.splitext(args.out)[0]}_interpolation.png"
    save_image(interpolation, interpolation_path, nrow=nrow, scale=2)
    print(f"wrote {args.out} and {interpolation_path}  ({time.time() - start:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
