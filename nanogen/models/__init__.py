"""The generative models, and the registry the ``nanogen`` command trains them from.

``nanogen.models.MODELS`` maps a name (``"pixelcnn"``, ``"vae"``, ...) to a
:class:`~nanogen.models.registry.ModelSpec`; :class:`~nanogen.models.base.GenerativeModel` is
the interface every model implements for the shared training loop.
"""
from .base import GenerativeModel, ImageShapeError, check_halvings, nats_to_bits_per_dim
from .registry import MODELS, ModelSpec, UnknownModelError, get_model_spec, register

__all__ = ["GenerativeModel", "ImageShapeError", "check_halvings", "nats_to_bits_per_dim", "MODELS", "ModelSpec", "register",
           "get_model_spec", "UnknownModelError", "all_models"]

# model modules register themselves on import; listed here so the registry is complete
_MODEL_MODULES = (
    "nanogen.models.autoregressive",
    "nanogen.models.autoencoders",
    "nanogen.models.gans",
    "nanogen.models.diffusion",
    "nanogen.models.energy",
)


def _load_all():
    import importlib
    for name in _MODEL_MODULES:
        importlib.import_module(name)


def all_models():
    """Every registered model spec, by name."""
    _load_all()
    return dict(sorted(MODELS.items()))
