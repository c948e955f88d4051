"""One call for ``nanogen eval``: FID, KID, the Inception Score, precision and recall of a batch
of samples, their sliced Wasserstein distance to the real images and their MS-SSIM diversity.

::

    scores = sample_quality(samples)   # samples (N, 1, 28, 28) in [0, 1]
    # {"fid": 12.3, "kid": 0.021, "kid_std": 0.004, "inception_score": 9.1, ...,
    #  "precision": 0.81, "recall": 0.64, "precision_recall_k": 3,
    #  "swd": ..., "swd_28": ..., "swd_14": ..., "swd_7": ..., "swd_num_descriptors": 128000,
    #  "swd_projections": 512, "ms_ssim": ..., "ms_ssim_pairs": 1000, "ms_ssim_scales": 3, ...
    #  "num_samples": 1000, "num_reference": 1000, "reference": "mnist5k/test", ...}

Every number comes with the counts it was computed from -- FID in particular falls as the
sample count grows, so numbers from different counts do not compare.  The reference is a real
split's features (:func:`~nanogen.metrics.features.reference_features`, cached), and for SWD the
same split's images themselves.
"""
from __future__ import annotations

from .classifier import FEATURE_NETWORK
from .features import (check_images, class_probabilities, classifier_features,
                       describe_classifier_input, reference_features)
from .fid import fid
from .inception_score import inception_score
from .kid import kid
from .ms_ssim import fitting_scales, mean_ms_ssim
from .precision_recall import DEFAULT_K, precision_recall
from .swd import NUM_PROJECTIONS, PATCH_SIZE, swd

__all__ = ["sample_quality"]

KID_SUBSETS = 100
KID_SUBSET_SIZE = 500   # half the default 1,000 samples: the subsets differ, so kid_std shows how
                        # much KID moves from one set of 500 samples to another
IS_SPLITS = 10
PRECISION_RECALL_K = DEFAULT_K   # the paper's k = 3; fewer when a set has only k points or less
MS_SSIM_PAIRS = 1000


def sample_quality(samples, dataset: str = "mnist5k", split: str = "test", seed: int = 0) -> dict:
    """FID, KID, precision and recall of ``samples`` against ``dataset``'s ``split``, and their
    Inception Score.

    ``samples``: images (N, C, H, W) in [0, 1], C = 1 or 3, N >= 2 (other than 28x28 grey
    they are converted into the classifier's input, and so are the reference images: see
    :func:`~nanogen.metrics.features.classifier_input`).  ``seed`` picks KID's subsets and the
    Inception Score's groups.
    Returns a dict of plain floats and ints: ``fid``, ``kid``, ``kid_std`` (over subsets),
    ``kid_subset_size``, ``inception_score``, ``inception_score_std`` (over
    ``inception_score_splits`` groups), ``precision`` and ``recall`` (k-nearest-neighbour
    manifolds with k = ``precision_recall_k``: 3, or one less than the smaller set's count when
    that is 3 or fewer; :mod:`~nanogen.metrics.precision_recall`), ``num_samples``,
    ``num_reference``, ``reference`` (``"dataset/split"``) and ``feature_network``; for
    converted images also ``classifier_input``, the line that says how they were converted.

    On the images themselves (their own size and channels, not the classifier's input):
    ``swd``, the sliced Wasserstein distance x 10^3 between the Laplacian-pyramid patches of the
    samples and of the split's images, averaged over the levels, and each level's as
    ``swd_<side>`` (``swd_28``, ``swd_14``, ``swd_7`` for digits;
    :mod:`~nanogen.metrics.swd`), with ``swd_num_descriptors`` (the samples' patches at the
    finest level: 128 per image; the coarser levels of a digit are read at every position) and
    ``swd_projections``; and ``ms_ssim``, the mean MS-SSIM of ``ms_ssim_pairs`` random pairs of
    distinct samples with ``ms_ssim_scales`` scales (:mod:`~nanogen.metrics.ms_ssim`: lower is
    more diverse).  Square images of 7 pixels or more get SWD, images of 7 or more MS-SSIM
    (with fewer scales below 28); smaller ones get neither.  ``seed`` also picks their patches,
    directions and pairs.
    """
    samples = check_images(samples, "samples")
    if len(samples) < 2:
        raise ValueError(f"samples: FID and KID need at least 2 samples, got {len(samples)}")
    features = classifier_features(samples, what="samples")
    reference = reference_features(dataset, split)
    if len(reference) < 2:
        raise ValueError(f"the reference {dataset}/{split} holds {len(reference)} image; FID and "
                         f"KID need at least 2")
    kid_mean, kid_std = kid(features, reference, num_subsets=KID_SUBSETS,
                            subset_size=KID_SUBSET_SIZE, seed=seed)
    splits = min(IS_SPLITS, len(samples))
    is_mean, is_std = inception_score(class_probabilities(samples, what="samples"), splits,
                                     seed=seed)
    k = min(PRECISION_RECALL_K, len(samples) - 1, len(reference) - 1)
    coverage = precision_recall(reference, features, k=k)
    converted = describe_classifier_input(samples.shape[1:])
    patch_scores = _patch_scores(samples, dataset, split, seed)
    return {"fid": fid(features, reference),
            "kid": kid_mean, "kid_std": kid_std,
            "kid_subset_size": min(KID_SUBSET_SIZE, len(samples), len(reference)),
            "inception_score": is_mean, "inception_score_std": is_std,
            "inception_score_splits": splits,
            "precision": coverage["precision"], "recall": coverage["recall"],
            "precision_recall_k": k,
            "num_samples": len(samples), "num_reference": len(reference),
            "reference": f"{dataset}/{split}", "feature_network": FEATURE_NETWORK,
            **patch_scores,
            **({"classifier_input": converted} if converted else {})}


def _patch_scores(samples, dataset: str, split: str, seed: int) -> dict:
    """SWD against the split's images and the samples' MS-SSIM, for images large enough."""
    from ..data import load_dataset
    scores = {}
    height, width = samples.shape[2:]
    if height == width >= PATCH_SIZE:
        real = load_dataset(dataset, split).arrays[0]
        if real.shape[1:] != samples.shape[1:]:
            raise ValueError(f"SWD compares the samples with the {dataset}/{split} images, which "
                             f"have shape {tuple(real.shape[1:])}; the samples have "
                             f"{tuple(samples.shape[1:])}")
        distance = swd(samples, real, seed=seed)
        finest = max(distance["levels"])
        scores.update({"swd": distance["swd"],
                       **{f"swd_{side}": value for side, value in distance["levels"].items()},
                       "swd_num_descriptors": distance["num_descriptors"][finest][0],
                       "swd_projections": NUM_PROJECTIONS})
    if fitting_scales(height, width):
        scores.update(mean_ms_ssim(samples, num_pairs=MS_SSIM_PAIRS, seed=seed))
    return scores
