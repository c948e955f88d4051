"""Sample-quality metrics, computed with a small classifier that ships inside the package.

* :func:`sample_quality` -- what ``nanogen eval`` reports for samples: FID, KID, the Inception
  Score, precision and recall against a real split, SWD and MS-SSIM, with the sample counts
  beside them;
* :func:`fid` / :func:`frechet_distance`, :func:`kid`, :func:`inception_score` -- the metrics on
  features or class probabilities you computed yourself;
* :func:`precision_recall` (with :func:`manifold_radii` / :func:`in_manifold`) -- precision
  (samples inside the real data's k-nearest-neighbour manifold) and recall (real data inside the
  samples'), quality and coverage reported apart, on features;
* :func:`swd` -- the sliced Wasserstein distance between two sets of images on
  Laplacian-pyramid patches (Karras et al. 2018), x 10^3 per level and averaged;
* :func:`ms_ssim` / :func:`ssim` of pairs of images, :func:`mean_ms_ssim` and
  :func:`ms_ssim_within_class` -- the samples' diversity (Odena et al. 2017: lower is more
  diverse);
* :func:`classifier_features`, :func:`class_probabilities`, :func:`reference_features` -- the
  shipped LeNet (:func:`load_classifier`) applied to images (N, 1, 28, 28) in [0, 1];
* :func:`nearest_neighbours` / :func:`nearest_neighbour_grid` -- the memorisation check;
* :func:`conditional_accuracy` -- how often the classifier recognises the requested class in a
  class-conditional model's samples;
* :func:`linear_probe` / :func:`probe_model` -- logistic regression on a representation
  model's frozen codes, scored by test accuracy;
* :func:`reference_points` -- real, blurred, shuffled and noise images scored the same way, the
  scale for the numbers above (``python -m nanogen.metrics.references``).

The classifier's weights are reproduced by ``python -m nanogen.metrics.classifier``; so that this
command runs its module fresh, the names below are imported lazily, on first use (PEP 562).
"""
import importlib
import sys

_HOME = {"sample_quality": "quality",
         "fid": "fid", "frechet_distance": "fid", "gaussian_statistics": "fid",
         "kid": "kid", "inception_score": "inception_score",
         "precision_recall": "precision_recall", "manifold_radii": "precision_recall",
         "in_manifold": "precision_recall",
         "swd": "swd", "ms_ssim": "ms_ssim", "ssim": "ms_ssim", "mean_ms_ssim": "ms_ssim",
         "ms_ssim_within_class": "ms_ssim",
         "classifier_features": "features", "class_probabilities": "features",
         "reference_features": "features",
         "nearest_neighbours": "nearest", "nearest_neighbour_grid": "nearest",
         "reference_points": "references",
         "mode_coverage": "modes", "toy_mode_coverage": "modes",
         "mixture_from_labelled_points": "modes",
         "linear_probe": "probe", "probe_model": "probe", "ProbeError": "probe",
         "conditional_accuracy": "conditional",
         "LeNet": "classifier", "load_classifier": "classifier", "train_classifier": "classifier"}

__all__ = list(_HOME)


def __getattr__(name):
    if name in _HOME:
        importlib.import_module(f".{_HOME[name]}", __name__)
        _bind_loaded_names()                      # later look-ups skip this function
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _bind_loaded_names():
    """Bind each name of a loaded home module.  Loading a submodule sets the package attribute
    of its own name to the module (``kid``, ``fid``, ``precision_recall``, ``swd``, ``ms_ssim``
    ... once ``quality`` imports them), which would hide the function of that name; this puts
    the function back."""
    for name, home in _HOME.items():
        value = getattr(sys.modules.get(f"{__name__}.{home}"), name, None)
        if value is not None:                     # None: not loaded, or still loading
            globals()[name] = value


def __dir__():
    return sorted(set(globals()) | set(__all__))
