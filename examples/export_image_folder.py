"""Write a nanogen dataset out as a folder of PNG files, the layout ``--dataset folder:PATH`` reads.

    python examples/export_image_folder.py cifar10 ~/data/cifar10-png        # if you have CIFAR-10
    python examples/export_image_folder.py mnist5k ~/data/colour-digits --colourise --size 32

The folder gets ``train/`` and ``test/`` (the dataset's own split), each with one subfolder per
class (CIFAR-10's class names, or the digit), and one PNG per image: ``train/cat/00042.png``.
Train on it as on any folder of your own images::

    nanogen train dcgan --dataset folder:~/data/cifar10-png --steps 20000

``--colourise`` turns grey digits into a colour data set that needs no download: each image gets
its own random bright foreground colour (luma at least 0.5) and a random dark background (luma
at most 0.3) (pixel = background * (1 - x) +
foreground * x for the grey level x), drawn from a generator seeded by the split, so the same
command always writes the same files.  ``--size S`` pads each side with background to S x S
(28 -> 32 for the power-of-two sizes the strided models like).
"""
import argparse
import colorsys
import os
import sys

import numpy as np
from PIL import Image

from nanogen.data import load_dataset
from nanogen.serialization import atomic_write

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def class_names(dataset_name, num_classes):
    if dataset_name == "cifar10":
        return CIFAR10_CLASSES
    return tuple(str(k) for k in range(num_classes))


LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def colourise(grey, rng):
    """(N, 1, H, W) grey in [0, 1] -> (N, 3, H, W): a bright foreground of a random hue over a
    dark background of another, per image.  The foreground's luma is at least 0.5 (a saturated
    blue, luma 0.11, is lifted towards white) and the background's at most 0.3, so the digit
    stays the brightest part of the image in grey too."""
    n = len(grey)
    fg = np.array([colorsys.hsv_to_rgb(h, s, v) for h, s, v in zip(
        rng.random(n), rng.uniform(0.5, 1.0, n), rng.uniform(0.8, 1.0, n))], np.float32)
    luma = fg @ LUMA
    lift = np.clip((0.5 - luma) / (1 - luma), 0, 1)[:, None]
    fg = fg + (1 - fg) * lift
    bg = np.array([colorsys.hsv_to_rgb(h, s, v) for h, s, v in zip(
        rng.random(n), rng.uniform(0.3, 1.0, n), rng.uniform(0.0, 0.3, n))], np.float32)
    return bg[:, :, None, None] * (1 - grey) + fg[:, :, None, None] * grey, bg


def pad_to(images, size, fill):
    """Centre ``images`` (N, C, H, W) on an S x S canvas of the per-image colour ``fill``."""
    n, c, h, w = images.shape
    if size < max(h, w):
        raise SystemExit(f"--size {size} is smaller than the images ({h}x{w})")
    canvas = np.broadcast_to(fill[:, :, None, None], (n, c, size, size)).copy()
    top, left = (size - h) // 2, (size - w) // 2
    canvas[:, :, top:top + h, left:left + w] = images
    return canvas


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", help="a nanogen image dataset: mnist5k, mnist, fashion-mnist, "
                   "cifar10")
    p.add_argument("out", help="the folder to write (created; must not hold images already)")
    p.add_argument("--colourise", action="store_true", help="grey digits -> colour images")
    p.add_argument("--size", type=int, help="pad each image to S x S")
    args = p.parse_args(argv)
    out = os.path.expanduser(args.out)
    if os.path.isdir(out) and any(os.scandir(out)):
        sys.exit(f"{out} is not empty: choose a new folder")
    written = 0
    for index, split in enumerate(("train", "test")):
        ds = load_dataset(args.dataset, split)
        images = np.asarray(ds.images, dtype=np.float32)
        fill = np.zeros((len(images), images.shape[1]), np.float32)
        if args.colourise:
            if images.shape[1] != 1:
                sys.exit(f"--colourise needs grey images; {args.dataset} has "
                         f"{images.shape[1]} channels")
            images, fill = colourise(images, np.random.default_rng([2024, index]))
        if args.size:
            images = pad_to(images, args.size, fill)
        names = class_names(args.dataset, ds.num_classes)
        pixels = np.round(images * 255).astype(np.uint8).transpose(0, 2, 3, 1)
        for i, (image, label) in enumerate(zip(pixels, ds.labels)):
            folder = os.path.join(out, split, names[int(label)])
            os.makedirs(folder, exist_ok=True)
            picture = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
            atomic_write(os.path.join(folder, f"{i:05d}.png"), lambda f: picture.save(f, "PNG"))
            written += 1
    print(f"wrote {written:,} PNG files ({pixels.shape[1]}x{pixels.shape[2]}, "
          f"{'RGB' if pixels.shape[3] == 3 else 'grey'}) to {out}")


if __name__ == "__main__":
    main()
