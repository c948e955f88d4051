"""A PixelCNN on binarized MNIST digits: an exact likelihood, and samples drawn pixel by pixel.

A likelihood model writes the probability of an image with the chain rule, pixels in raster order
(row by row, left to right)::

    log p(x) = sum_i log p(x_i | x_1, ..., x_{i-1}),     p(x_i = 1 | x_<i) = sigmoid(l_i)

and trains by maximising it: the loss is -log p(x) in nats per image, and the same number on the
test digits is the model's score (lower is better).  A PixelCNN (nanogen.models.autoregressive.
PixelCNN) computes every logit l_i in one pass, with convolutions whose kernels are masked so that
pixel i sees only the pixels before it.  Sampling cannot be parallel: the 784 pixels are drawn
one after another, each from its conditional given the ones already drawn -- and the same loop,
started from the top half of a real digit, completes its bottom half.

Training uses the shared step every nanogen likelihood model has (``model.training_step``: the
loss, backward, one Adam update) on digits binarized afresh every time they are seen.  The
network here is narrower than ``nanogen train pixelcnn``'s (32 channels, 5 residual blocks of
5x5 masked convolutions) so that a few hundred steps end in a few minutes on a CPU.

    python examples/likelihood_pixelcnn.py --out pixelcnn.png     # + pixelcnn_completions.png
    python examples/likelihood_pixelcnn.py --device cuda --steps 3000 --channels 64 --blocks 7

(The full-size model trains from the command line: ``nanogen train pixelcnn``.)
"""
import argparse
import itertools
import os
import sys
import time

import nanogen as ng
from nanogen.data import DataLoader, eval_dataset, load_dataset, train_transform
from nanogen.models.autoregressive import PixelCNN
from nanogen.training.loop import learning_rate_factor
from nanogen.utils import save_image

from common import add_run_options, endless, start_run   # examples/common.py


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="peak lr, decayed to 0 by a cosine")
    p.add_argument("--channels", type=int, default=32, help="width of the residual stream")
    p.add_argument("--blocks", type=int, default=5, help="residual blocks of mask-B convs")
    p.add_argument("--kernel", type=int, default=5, help="the blocks' mask-B kernel size")
    p.add_argument("--samples", type=int, default=64, help="images in the sample grid")
    add_run_options(p, "pixelcnn.png", "the sample grid (PNG); the "
                    "completions go beside it, as NAME_completions.png")
    args = p.parse_args(argv)
    status = start_run(p, args)
    if status is not None:
        return status

    ng.manual_seed(args.seed)
    train = load_dataset("mnist5k", "train")                  # 4,000 digits in [0, 1]
    model = PixelCNN(image_shape=train.sample_shape, channels=args.channels,
                     num_blocks=args.blocks, kernel_size=args.kernel,
                     head_channels=args.channels).to(args.device)
    # model.data_transform is "binary": each pixel ~ Bernoulli(intensity), redrawn every epoch
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        seed=args.seed, transform=train_transform(model.data_transform),
                        device=args.device)
    optimizers = model.configure_optimizers(args.lr)          # {"model": Adam}
    print(f"PixelCNN, {sum(p.numel() for p in model.parameters()):,} parameters: "
          f"{args.steps} steps of {args.batch_size} on {args.device}", flush=True)

    start = time.time()
    batches = endless(loader)  # epoch after epoch
    for step, batch in enumerate(itertools.islice(batches, args.steps)):
        for group in optimizers["model"].param_groups:
            group["lr"] = args.lr * learning_rate_factor("cosine", step, args.steps)
        logs = model.training_step(batch, optimizers)         # -log p(x), backward, Adam
        if (step + 1) % 50 == 0 or step + 1 == args.steps:
            print(f"step {step + 1:5d}  train NLL {logs['loss']:7.2f} nats  "
                  f"({time.time() - start:.0f}s)", flush=True)

    # the test digits binarized once with a fixed seed: every evaluation sees the same bits
    test = eval_dataset(load_dataset("mnist5k", "test"), model.data_transform, seed=0)
    model.eval()
    metrics = model.evaluate(DataLoader(test, batch_size=250, device=args.device))
    print(f"test NLL: {metrics['nll_nats']:.2f} nats per image "
          f"({metrics['bits_per_dim']:.4f} bits/dim) on {metrics['num_examples']} digits")

    samples = model.sample(args.samples)                      # 784 passes, one per pixel
    save_image(samples, args.out, nrow=8, scale=2)
    # each row: a test digit's top half, 4 completions of its bottom half, the digit itself
    x, y = next(iter(DataLoader(test, batch_size=8, device=args.device)))
    completions, nrow = model.figures(x, y)["completions"]
    completions_path = f"{os.path.splitext(args.out)[0]}_completions.png"
    save_image(completions, completions_path, nrow=nrow, scale=2)
    print(f"wrote {args.out} and {completions_path}  ({time.time() - start:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
