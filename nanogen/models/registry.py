"""The models the ``nanogen`` command knows, by name, with the defaults it trains them with.

A model module registers itself with :func:`register`; ``nanogen list`` prints one line per
entry, and ``nanogen train NAME`` builds ``spec.build(image_shape=..., num_classes=...,
**spec.kwargs)`` and trains it for ``spec.steps`` steps of ``spec.batch_size`` at ``spec.lr``
unless the command line says otherwise.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["ModelSpec", "register", "get_model_spec", "MODELS", "UnknownModelError"]


class UnknownModelError(ValueError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    """A trainable model: how to build it and the budget it trains on by default.

    ``steps`` is chosen so that ``nanogen train NAME`` with no options ends in under ten minutes
    on a 2-core CPU; the README's results table states the longer runs behind its figures.
    """

    name: str
    summary: str
    build: Callable
    dataset: str = "mnist5k"
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "constant"     # or "cosine": see nanogen.training.loop.learning_rate_factor
    ema_decay: float | None = None    # keep an average of the weights for sampling and eval
    sample_every: int = 500
    num_samples: int = 64
    kwargs: dict = field(default_factory=dict)
    data_kinds: tuple = ("image",)    # the kinds of dataset it models: "image", "points"
    # other defaults on another kind of data, e.g. {"points": {"batch_size": 256, "lr": 1e-3}}
    kind_defaults: dict = field(default_factory=dict)

    def for_data(self, kind: str) -> "ModelSpec":
        """This spec with the defaults it registers for datasets of ``kind``."""
        from dataclasses import replace
        return replace(self, **self.kind_defaults.get(kind, {}))


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in MODELS:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    MODELS[spec.name] = spec
    return spec


def get_model_spec(name: str) -> ModelSpec:
    from . import _load_all
    _load_all()
    try:
        return MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, MODELS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownModelError(f"unknown model {name!r}{hint}; known models: "
                                f"{', '.join(sorted(MODELS))}") from None
