"""Reference points that give a sample-quality number its scale.

A FID of 20 means little alone.  Scored exactly as ``nanogen eval`` scores samples -- against the
test split, with the same classifier -- four sets of images that are not samples mark the scale:

* ``train``    -- real digits the network never judged against: as good as samples can get
  (at this count);
* ``blurred``  -- the test digits under a 3x3 box filter: recognisable but visibly wrong;
* ``shuffled`` -- the test digits with each image's pixels shuffled: the right ink, no shape;
* ``noise``    -- uniform noise, as many images as the test split: nothing right at all.

The test digits' own diversity is the scale for MS-SSIM (:func:`real_diversity`): their mean
MS-SSIM over random pairs, and within a class (what a conditional model's samples are compared
with).

``python -m nanogen.metrics.references [--dataset mnist5k] [--seed 0]`` prints the table
(the README quotes it).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from .ms_ssim import mean_ms_ssim, ms_ssim_within_class
from .quality import MS_SSIM_PAIRS, sample_quality

__all__ = ["box_blur", "shuffle_pixels", "reference_sets", "reference_points", "real_diversity"]


def box_blur(images: np.ndarray, size: int = 3) -> np.ndarray:
    """Each pixel replaced by the mean of the ``size`` x ``size`` window around it (the window
    cut at the border, so the mean is over the pixels inside the image)."""
    blurred = F.avg_pool2d(Tensor(np.ascontiguousarray(images, dtype=np.float32)), size,
                           stride=1, padding=size // 2, count_include_pad=False)
    return blurred.numpy()


def shuffle_pixels(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image's pixels in a random order of its own (same histogram, no shape)."""
    n = len(images)
    return rng.permuted(images.reshape(n, -1), axis=1).reshape(images.shape)


def reference_sets(dataset: str = "mnist5k", seed: int = 0) -> dict:
    """The four image sets of the module docstring, by name."""
    from ..data import load_dataset
    rng = np.random.default_rng(seed)
    test = load_dataset(dataset, "test").arrays[0]
    return {"train": load_dataset(dataset, "train").arrays[0],
            "blurred": box_blur(test),
            "shuffled": shuffle_pixels(test, rng),
            "noise": rng.random(test.shape, dtype=np.float32)}


def reference_points(dataset: str = "mnist5k", seed: int = 0) -> dict:
    """``{name: sample_quality(images, dataset, "test", seed)}`` for each reference set."""
    return {name: sample_quality(images, dataset=dataset, split="test", seed=seed)
            for name, images in reference_sets(dataset, seed).items()}


def real_diversity(dataset: str = "mnist5k", split: str = "test", seed: int = 0) -> dict:
    """The real images' own MS-SSIM: over random pairs (as :func:`sample_quality` scores
    samples) and within a class (as :func:`~nanogen.metrics.conditional_accuracy` does)."""
    from ..data import load_dataset
    images, labels = load_dataset(dataset, split).arrays[:2]
    return {**mean_ms_ssim(images, num_pairs=MS_SSIM_PAIRS, seed=seed),
            **ms_ssim_within_class(images, labels, seed=seed)}


def format_table(points: dict) -> str:
    """The reference points as a plain-text table, sample counts beside the numbers."""
    rows = [("images vs test", "FID", "KID", "IS", "SWD", "MS-SSIM", "samples", "reference")]
    rows += [(name, f"{s['fid']:.2f}", f"{s['kid']:.2f} ± {s['kid_std']:.2f}",
              f"{s['inception_score']:.2f} ± {s['inception_score_std']:.2f}",
              f"{s['swd']:.1f}" if "swd" in s else "-",
              f"{s['ms_ssim']:.3f}" if "ms_ssim" in s else "-",
              str(s["num_samples"]), str(s["num_reference"])) for name, s in points.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join([row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width
                                                            in zip(row[1:], widths[1:])])
                     for row in rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nanogen.metrics.references",
                                description="FID, KID and IS of real, blurred, shuffled and "
                                "noise images against the test split: the scale for samples.")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    points = reference_points(args.dataset, args.seed)
    any_point = next(iter(points.values()))
    print(f"against {any_point['reference']} with {any_point['feature_network']}; KID over "
          f"subsets of {any_point['kid_subset_size']}, IS over "
          f"{any_point['inception_score_splits']} splits")
    print(format_table(points))
    if "swd" in any_point:
        levels = ", ".join(key[4:] for key in any_point if key[4:].isdigit())
        print(f"SWD x 10^3: the mean over the pyramid's levels ({levels} pixels), "
              f"{any_point['swd_num_descriptors'] // any_point['num_samples']} patches per image "
              f"at the finest, {any_point['swd_projections']} directions")
    diversity = real_diversity(args.dataset, "test", args.seed)
    print(f"MS-SSIM of the {args.dataset} test images themselves: {diversity['ms_ssim']:.3f} over "
          f"{diversity['ms_ssim_pairs']} random pairs, {diversity['ms_ssim_within_class']:.3f} "
          f"within a class ({diversity['ms_ssim_within_class_pairs']} pairs, "
          f"{diversity['ms_ssim_within_class_classes']} classes); {diversity['ms_ssim_scales']} "
          f"scales")
    return 0


if __name__ == "__main__":
    sys.exit(main())
