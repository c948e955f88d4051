"""Checkpoints: everything a run needs to go on exactly where it stopped, in one ``.npz`` file.

``DIR/checkpoint.npz`` is written with :func:`nanogen.save` (atomic: temporary file, fsync,
``os.replace``) and holds one dict::

    {"format": "nanogen-checkpoint", "version": 1,
     "step": 1500,                       # updates done
     "seconds": 812.4,                   # training time so far
     "config": {...},                    # the run's config.json (model, dataset, ...)
     "model": model.state_dict(),
     "optimizers": {"model": adam.state_dict()},        # by the names configure_optimizers gave
     "rng": ng.get_rng_state(),          # the global generator, before the next step
     "loader": loader.state_dict(),      # the position of the next batch
     "ema": ema.state_dict()}            # only for a run that keeps an average of its weights

Restoring all of it -- weights, optimizer moments, the random stream and the data order -- makes
a resumed run draw the same dropout masks and batches, in the same order, as an unbroken one:
on the CPU the two end with bit-identical weights.

Every problem reading a checkpoint is a :class:`CheckpointError` (a ``ValueError``) with a
one-line message naming the file and what is wrong, so the command line can print it as is.
"""
from __future__ import annotations

import os

from .. import random as ng_random
from ..serialization import SerializationError, load, save
from ..tensor import Tensor

__all__ = ["CHECKPOINT_NAME", "CheckpointError", "save_checkpoint", "load_checkpoint",
           "checkpoint_path", "check_same_run", "restore_checkpoint"]

CHECKPOINT_NAME = "checkpoint.npz"
FORMAT = "nanogen-checkpoint"
VERSION = 1

# each entry and the type it must have
_ENTRIES = {"format": str, "version": int, "step": int, "seconds": (int, float), "config": dict,
            "model": dict, "optimizers": dict, "rng": Tensor, "loader": dict}


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or belongs to another run (one-line message)."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))      # one line, whatever went in


def checkpoint_path(path_or_dir) -> str:
    """``DIR/checkpoint.npz`` for a directory, the path itself otherwise."""
    path = os.fspath(path_or_dir)
    return os.path.join(path, CHECKPOINT_NAME) if os.path.isdir(path) else path


def save_checkpoint(path_or_dir, *, step, seconds, config, model, optimizers, rng_state,
                    loader_state, ema=None) -> str:
    """Write a checkpoint (the layout above) of ``model`` and ``optimizers`` (a dict by name).

    ``rng_state`` (``ng.get_rng_state()``) and ``loader_state`` (``loader.state_dict()``) are
    passed in rather than read here, so that the caller can save the position *before* a step
    that was interrupted.  Returns the file's path.
    """
    path = checkpoint_path(path_or_dir)
    checkpoint = {"format": FORMAT, "version": VERSION, "step": int(step),
                  "seconds": float(seconds), "config": config, "model": model.state_dict(),
                  "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
                  "rng": rng_state, "loader": loader_state}
    if ema is not None:
        checkpoint["ema"] = ema.state_dict()
    save(checkpoint, path)
    return path


def load_checkpoint(path_or_dir) -> dict:
    """The checkpoint dict saved in ``path_or_dir`` (a run directory or the file itself).

    Raises :class:`CheckpointError` if it is missing, unreadable (truncated, corrupt, not an
    ``ng.save`` archive) or not a nanogen checkpoint (wrong format tag, missing entries).
    """
    given = os.fspath(path_or_dir)
    path = checkpoint_path(given)
    if not os.path.exists(path):
        if path != given:                                   # a directory without a checkpoint
            raise CheckpointError(f"{given}: no {CHECKPOINT_NAME} (train there first: nanogen "
                                  f"train MODEL --out {given})")
        raise CheckpointError(f"{given}: no such file or directory (a checkpoint is a run "
                              f"directory or its {CHECKPOINT_NAME}; train first: nanogen train "
                              f"MODEL --out DIR)")
    try:
        checkpoint = load(path)
    except SerializationError as e:
        raise CheckpointError(f"{path}: not a readable checkpoint: {e}") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    _check_layout(checkpoint, path)
    return checkpoint


def _check_layout(checkpoint, path):
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a nanogen checkpoint (the file holds a "
                              f"{type(checkpoint).__name__}, not a checkpoint dict)")
    if checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a nanogen checkpoint (format tag "
                              f"{checkpoint.get('format')!r}, expected {FORMAT!r}); it may be "
                              f"a file written by ng.save for another purpose")
    version = checkpoint.get("version")
    if isinstance(version, int) and version > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version} was written by a newer "
                              f"nanogen; this one reads version {VERSION}")
    missing = [key for key in _ENTRIES if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks {', '.join(map(repr, missing))}")
    for key, kind in _ENTRIES.items():
        value = checkpoint[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CheckpointError(f"{path}: the checkpoint's {key!r} is a "
                                  f"{type(value).__name__}, which is not what a checkpoint "
                                  f"holds there")
    if checkpoint["step"] < 0:
        raise CheckpointError(f"{path}: the checkpoint's step is negative "
                              f"({checkpoint['step']})")


def check_same_run(checkpoint, config, where):
    """Raise :class:`CheckpointError` if ``checkpoint`` trained another model or dataset than
    ``config`` names (``where``: the directory, for the message)."""
    for key in ("model", "dataset"):
        saved, wanted = checkpoint["config"].get(key), config.get(key)
        if saved != wanted:
            raise CheckpointError(f"{where} holds a run of {key} {saved!r}, not {wanted!r}: "
                                  f"resume it with {key} {saved!r}, or choose another --out")


def restore_checkpoint(checkpoint, model, optimizers, loader, where, ema=None) -> tuple:
    """Load a checkpoint's states into ``model``, ``optimizers`` (by name), the global RNG and
    ``loader``; return ``(step, seconds)``.  A state that does not fit (another architecture,
    other optimizers) raises :class:`CheckpointError` naming ``where``."""
    saved_names, names = sorted(checkpoint["optimizers"]), sorted(optimizers)
    if saved_names != names:
        raise CheckpointError(f"{where}: the checkpoint has optimizers {saved_names}, the model "
                              f"configures {names}")
    steps = [("model weights", lambda: model.load_state_dict(checkpoint["model"]))]
    steps += [(f"optimizer {name!r}", lambda name=name:
               optimizers[name].load_state_dict(checkpoint["optimizers"][name]))
              for name in names]
    steps += [("random generator state", lambda: ng_random.set_rng_state(checkpoint["rng"])),
              ("data loader position", lambda: loader.load_state_dict(checkpoint["loader"]))]
    if ema is not None:
        if "ema" not in checkpoint:
            raise CheckpointError(f"{where}: the run averages its weights (ema_decay) but the "
                                  f"checkpoint holds no average")
        steps.append(("weight average", lambda: ema.load_state_dict(checkpoint["ema"])))
    steps.append(("learning rates", lambda: _check_learning_rates(optimizers)))
    for what, restore in steps:
        try:
            restore()
        except (RuntimeError, ValueError, TypeError, KeyError) as e:
            detail = " ".join(str(e).split()) or type(e).__name__
            if len(detail) > 300:
                detail = detail[:300] + "..."
            raise CheckpointError(f"{where}: cannot load the checkpoint's {what} into this run "
                                  f"({detail})") from None
    return checkpoint["step"], float(checkpoint["seconds"])


def _check_learning_rates(optimizers):
    """The loop scales each group's ``initial_lr`` (restored with the groups): a number."""
    for name, opt in optimizers.items():
        for i, group in enumerate(opt.param_groups):
            for key in ("lr", "initial_lr"):
                value = group.get(key, 0.0)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                        not 0 <= value < float("inf"):
                    raise ValueError(f"group {i} of optimizer {name!r} has {key} {value!r}, "
                                     f"not a non-negative number")
