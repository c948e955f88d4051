"""One call for ``nanogen eval``: FID, KID, the Inception Score, precision and recall of a batch
of samples.

::

    scores = sample_quality(samples)   # samples (N, 1, 28, 28) in [0, 1]
    # {"fid": 12.3, "kid": 0.021, "kid_std": 0.004, "inception_score": 9.1, ...,
    #  "precision": 0.81, "recall": 0.64, "precision_recall_k": 3,
    #  "num_samples": 1000, "num_reference": 1000, "reference": "mnist5k/test", ...}

Every number comes with the counts it was computed from -- FID in particular falls as the
sample count grows, so numbers from different counts do not compare.  The reference is a real
split's features (:func:`~nanogen.metrics.features.reference_features`, cached).
"""
from __future__ import annotations

from .classifier import FEATURE_NETWORK
from .features import (check_images, class_probabilities, classifier_features,
                       describe_classifier_input, reference_features)
from .fid import fid
from .inception_score import inception_score
from .kid import kid
from .precision_recall import DEFAULT_K, precision_recall

__all__ = ["sample_quality"]

KID_SUBSETS = 100
KID_SUBSET_SIZE = 500   # half the default 1,000 samples: the subsets differ, so kid_std shows how
                        # much KID moves from one set of 500 samples to another
IS_SPLITS = 10
PRECISION_RECALL_K = DEFAULT_K   # the paper's k = 3; fewer when a set has only k points or less


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
    return {"fid": fid(features, reference),
            "kid": kid_mean, "kid_std": kid_std,
            "kid_subset_size": min(KID_SUBSET_SIZE, len(samples), len(reference)),
            "inception_score": is_mean, "inception_score_std": is_std,
            "inception_score_splits": splits,
            "precision": coverage["precision"], "recall": coverage["recall"],
            "precision_recall_k": k,
            "num_samples": len(samples), "num_reference": len(reference),
            "reference": f"{dataset}/{split}", "feature_network": FEATURE_NETWORK,
            **({"classifier_input": converted} if converted else {})}
