"""The ``nanogen`` command: list, train, sample and evaluate the generative models.

::

    nanogen list [--pretrained]                    # the models and datasets, one line each
    nanogen train MODEL [--dataset mnist5k] [--steps N] [--batch-size B] [--lr LR]
                        [--device cpu|cuda] [--seed S] [--out DIR] [--resume]
    nanogen train MODEL --dataset folder:PATH [--image-size S] [--channels 1|3] ...
    nanogen sample DIR [--n 64] [--out FILE.png] [--seed S] [--sampler ddim --sampler-steps 50]
    nanogen eval DIR [--seed S] [--num-examples N] [--num-samples N] [--sampler ...]
    nanogen export DIR --name NAME [--command "nanogen train ..."] [--allow-large] [--no-eval]
    nanogen study DIR [DIR ...] [--port 8000] [--out study.jsonl] [--num-samples 100]

``DIR`` of ``sample`` and ``eval`` may be ``pretrained:NAME``, a model that ships with nanogen
(:mod:`nanogen.pretrained`; ``export`` adds one from a run directory): no run directory needed,
and what they write goes to ``runs/pretrained/NAME``.

A run lives in one directory (``runs/MODEL`` unless ``--out`` says otherwise):
``config.json`` (what was trained, on what, how), ``checkpoint.npz`` (model, optimizers, RNG
and data-loader state, step), ``log.jsonl`` and ``loss.png`` (the losses), ``samples.png`` (the
latest sample grid), the model's own pictures (``completions.png``, ``reconstructions.png``,
``manifold.png``) and, after ``nanogen eval``, ``metrics.json`` -- for a model judged by its
samples (a GAN, DDPM) or when ``--num-samples`` asks for it, with FID, KID and the Inception
Score of that many samples against the test split (:mod:`nanogen.metrics`) and the
memorisation check ``nearest_neighbours.png``.

Bad input -- an unknown model or dataset, a directory with no checkpoint, a corrupt checkpoint,
``--device cuda`` with no GPU -- ends with one line on stderr and exit status 2; an unexpected
failure prints one line too (set ``NANOGEN_DEBUG=1`` for the traceback) and exits with 1.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
from typing import NamedTuple
from pathlib import Path

__all__ = ["main", "build_model", "load_run", "evaluate_model", "training_command", "UsageError"]

DEFAULT_RUNS_DIR = "runs"
EVAL_BATCH_SIZE = 250
SAMPLE_CHUNK = 250      # samples drawn per model.sample call when scoring many
NEIGHBOUR_ROWS = 8      # samples shown, each beside its nearest training images
NEIGHBOURS = 7
FIGURE_EXAMPLES = 8     # test images the model's figures (completions, reconstructions) start from


class UsageError(ValueError):
    """Input the user can fix; reported as one line, exit status 2."""


# -- the pieces a command is made of ------------------------------------------------------------
def _check_device(name: str) -> str:
    import nanogen as ng
    if name not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}: use cpu or cuda")
    if name == "cuda" and not ng.cuda.is_available():
        raise UsageError("--device cuda: no GPU is available (CuPy sees no NVIDIA GPU; install "
                         "nanogen[cuda] on a machine with one, or train with --device cpu)")
    return name


def _dataset(name: str, split: str, download: bool = False):
    from .data import load_dataset
    return load_dataset(name, split=split, download=download)


def build_model(config: dict, dataset=None):
    """The model a run's ``config`` describes, freshly initialised, on ``config["device"]``.
    ``dataset``: the training set, or anything with its ``kind``, ``sample_shape`` and
    ``num_classes`` (``nanogen.data.dataset_info(name)``, which reads no data); by default the
    training split of ``config["dataset"]``, loaded."""
    from .models import get_model_spec
    spec = get_model_spec(config["model"])
    if dataset is None and "data_shape" in config:     # a folder run: no need for the folder
        dataset = _RecordedData("image", tuple(config["data_shape"]), config["num_classes"])
    if dataset is None:
        dataset = _dataset(config["dataset"], "train")
    if dataset.kind not in spec.data_kinds:
        kinds = " or ".join("images" if kind == "image" else kind for kind in spec.data_kinds)
        held = "images" if dataset.kind == "image" else dataset.kind
        raise UsageError(f"model {spec.name!r} models {kinds}, but "
                         f"dataset {config['dataset']!r} holds {held}; pick another "
                         f"dataset (see `nanogen list`)")
    kwargs = config.get("model_kwargs", {})
    from .models import ImageShapeError
    try:
        model = spec.build(image_shape=tuple(dataset.sample_shape),
                           num_classes=dataset.num_classes, **kwargs)
    except ImageShapeError as e:
        raise UsageError(f"model {spec.name!r} cannot take the "
                         f"{'x'.join(map(str, dataset.sample_shape))} images of "
                         f"{config['dataset']}: {e}") from None
    except TypeError as e:
        if "argument" not in str(e):
            if not kwargs or kwargs == dict(spec.kwargs):   # the model's own defaults: a bug
                raise
            raise UsageError(f"model {spec.name!r} cannot be built with the arguments "
                             f"{_short_json(kwargs, 200)} (TypeError: {e})") from None
        raise UsageError(f"model {spec.name!r} does not take these arguments "
                         f"{sorted(kwargs)}: {e}") from None
    except ValueError as e:
        if not kwargs or kwargs == dict(spec.kwargs):
            raise
        raise UsageError(f"model {spec.name!r} cannot be built with the arguments "
                         f"{_short_json(kwargs, 200)} (ValueError: {e})") from None
    return model.to(config.get("device", "cpu"))


class _RecordedData(NamedTuple):
    """What building a model needs to know of its data, as a folder run's config.json records
    it (so its run directory samples on a machine without the folder)."""
    kind: str
    sample_shape: tuple
    num_classes: int


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# config.json: every key `nanogen train` writes, what it must hold, and the test.  Other keys are
# refused (a misspelt "ema_dacay" would otherwise be ignored without a word).  sample and eval need
# only model and dataset (a run trained from Python may hold no more); --resume needs the settings
# of _RESUME_KEYS too.
_CONFIG_KEYS = {
    "model": ("a model name", lambda v: isinstance(v, str)),
    "dataset": ("a dataset name", lambda v: isinstance(v, str)),
    "steps": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "batch_size": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "lr": ("a positive number", lambda v: _is_number(v) and 0 < v < float("inf")),
    "lr_schedule": ('"constant" or "cosine"', lambda v: v in ("constant", "cosine")),
    "ema_decay": ("null or a number from 0 to 1", lambda v: v is None or
                  (_is_number(v) and 0 <= v <= 1)),
    "seed": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "device": ('"cpu" or "cuda"', lambda v: v in ("cpu", "cuda")),
    "model_kwargs": ("an object of model arguments", lambda v: isinstance(v, dict)),
    # recorded for folder datasets only: the image shape and class count the model was built for
    "data_shape": ("[C, H, W] of positive integers", lambda v: isinstance(v, list) and
                   len(v) == 3 and all(_is_int(d) and d >= 1 for d in v)),
    "num_classes": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "data_fingerprint": ("the folder's SHA-256", lambda v: isinstance(v, str)),
    "sync_batchnorm": ("true or false", lambda v: isinstance(v, bool)),
    "nanogen_version": ("a version string", lambda v: isinstance(v, str)),
}
_RESUME_KEYS = ("batch_size", "lr", "seed")


def _short_json(value, limit=60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def read_json(path: Path, what: str, error=UsageError):
    """The JSON value in ``path``; a file that cannot be read or holds no JSON (or bytes that
    are not UTF-8) raises ``error`` with one line calling it a corrupt ``what``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:
        raise error(f"{path}: corrupt {what} ({type(e).__name__}: "
                    f"{' '.join(str(e).split())})") from None


def _read_config(run_dir: Path, needed=("model", "dataset")) -> dict:
    """``run_dir/config.json``, checked: a JSON object of the known keys, each holding what it
    should, with every key in ``needed`` present; anything else is a one-line UsageError."""
    import difflib
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory (train one first: "
                         f"nanogen train MODEL --out {run_dir})")
    if not path.is_file():
        raise UsageError(f"{run_dir}: no config.json, so not a nanogen run directory (train one "
                         f"first: nanogen train MODEL --out {run_dir})")
    config = read_json(path, "run configuration")
    if not isinstance(config, dict):
        raise UsageError(f"{path}: corrupt run configuration: a JSON "
                         f"{type(config).__name__.replace('NoneType', 'null')} instead of an "
                         f"object of settings")
    for key in config:
        if key not in _CONFIG_KEYS:
            close = difflib.get_close_matches(key, _CONFIG_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{path}: unknown key {key!r}{hint}; a run's config.json holds "
                             f"{', '.join(_CONFIG_KEYS)}")
    missing = [key for key in needed if key not in config]
    if missing:
        why = "" if set(missing) <= {"model", "dataset"} else " (--resume needs it)"
        raise UsageError(f"{path}: corrupt run configuration: no "
                         f"{' and no '.join(map(repr, missing))}{why}")
    for key, (what, ok) in _CONFIG_KEYS.items():
        if key in config and not ok(config[key]):
            raise UsageError(f"{path}: {key!r} must be {what}, not {_short_json(config[key])}")
    return config


def load_run(run_dir, device=None):
    """``(model, config, checkpoint)`` for a trained run directory, weights loaded (the average
    of the weights when the run kept one), in eval mode."""
    from .training import load_checkpoint
    run_dir = Path(run_dir)
    config = _read_config(run_dir)
    if device is not None:
        config["device"] = device
    checkpoint = load_checkpoint(run_dir)
    model = build_model(config)
    try:
        model.load_state_dict(checkpoint["model"])
        if "ema" in checkpoint:             # sample and evaluate with the averaged weights
            from .optim import ExponentialMovingAverage
            ema = ExponentialMovingAverage(model)
            ema.load_state_dict(checkpoint["ema"])
            ema.copy_to(model)
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise UsageError(f"{run_dir}: the checkpoint does not fit the model in config.json "
                         f"({' '.join(str(e).split())})") from None
    model.eval()
    return model, config, checkpoint


def _test_examples(config, model):
    """The test split as the model sees it at evaluation (binarized once, with a fixed seed)."""
    from .data import eval_dataset
    return eval_dataset(_dataset(config["dataset"], "test"), model.data_transform, seed=0)


def _write_figures(model, config, run_dir: Path):
    """The model's own pictures, made from the first test images of each class."""
    import nanogen as ng
    from .utils.image import save_image
    test = _test_examples(config, model)
    x, y = _stack(test)
    picks = _first_of_each_class(y, FIGURE_EXAMPLES)
    xb = ng.tensor(x[picks], device=config.get("device", "cpu"))
    yb = ng.tensor(y[picks], device=config.get("device", "cpu"))
    written = []
    with ng.no_grad(), ng.random.fork_rng(0):
        for name, (images, nrow) in model.figures(xb, yb).items():
            path = run_dir / f"{name}.png"
            save_image(images, path, nrow=nrow)
            written.append(path)
    return written


def _stack(dataset):
    import numpy as np
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return np.stack(xs), np.asarray(ys)


def _first_of_each_class(labels, n):
    """Indices of ``n`` examples, taking classes in turn (0, 1, 2, ...) for a varied picture."""
    import numpy as np
    labels = np.asarray(labels)
    order = []
    by_class = [np.flatnonzero(labels == c).tolist() for c in np.unique(labels)]
    while len(order) < min(n, len(labels)):
        for members in by_class:
            if members and len(order) < n:
                order.append(members.pop(0))
    return np.asarray(order)


def _write_json(path: Path, obj):
    from .serialization import atomic_write
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def _fmt_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


# -- the commands --------------------------------------------------------------------------------
def cmd_list(args):
    from .data import DATASETS
    from .models import all_models
    if args.pretrained:
        return _list_pretrained()
    models = all_models()
    width = max(map(len, list(models) + list(DATASETS)))
    print("models:")
    for name, spec in models.items():
        print(f"  {name:<{width}}  {spec.summary}")
    print("datasets:")
    for name, info in DATASETS.items():
        print(f"  {name:<{width}}  {info.summary}")
    print(f"  {'folder:PATH':<{width}}  your own images: every PNG / JPEG / BMP under PATH, labels "
          f"from its subfolders (--image-size S, --channels 1|3)")
    return 0


def _list_pretrained():
    from . import pretrained
    models = pretrained.entries()
    if not models:
        print(f"no pretrained models ship with this nanogen yet ({pretrained.pretrained_dir()}); "
              f"nanogen export RUN_DIR --name NAME adds one")
        return 0
    rows = [(e["name"], e["model"], pretrained.headline(e), pretrained.format_bytes(e["bytes"]))
            for e in models]
    widths = [max(len(row[i]) for row in rows + [("name", "model", "metric", "size")])
              for i in range(4)]
    for row in [("name", "model", "metric", "size")] + rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def cmd_export(args):
    from . import pretrained
    entry = pretrained.export(
        args.dir, args.name, command=args.train_command, dtype=args.dtype,
        allow_large=args.allow_large, evaluate=not args.no_eval,
        seed=args.seed if args.seed is not None else 0, num_examples=args.num_examples,
        num_samples=args.num_samples, sampler=args.sampler, sampler_steps=args.sampler_steps,
        device=_check_device(args.device or "cpu"),
        log=lambda message: print(message, file=sys.stderr))
    print(json.dumps(entry, indent=2))
    print(f"wrote {pretrained.pretrained_dir() / entry['file']} "
          f"({pretrained.format_bytes(entry['bytes'])}, {entry['parameters']:,} weights as "
          f"{entry['dtype']}): {pretrained.headline(entry)}; `nanogen sample "
          f"{pretrained.PREFIX}{entry['name']}` draws from it", file=sys.stderr)
    return 0


def cmd_train(args):
    import nanogen as ng
    from .data import DataLoader, dataset_kind, train_transform
    from .data.folder import is_folder_dataset
    from .models import get_model_spec
    from .training import CHECKPOINT_NAME, train

    spec = get_model_spec(args.model)
    run_dir = Path(args.out or Path(DEFAULT_RUNS_DIR) / spec.name)
    has_checkpoint = (run_dir / CHECKPOINT_NAME).is_file()
    dataset_name = _dataset_name(args, spec)
    if args.resume and (run_dir / "config.json").is_file():
        dataset_name = _read_config(run_dir).get("dataset", dataset_name)
    spec = spec.for_data(dataset_kind(dataset_name))    # e.g. a GAN's 2-D defaults
    if args.resume and not has_checkpoint:
        raise UsageError(f"--resume: {run_dir} holds no {CHECKPOINT_NAME} to continue from "
                         f"(leave out --resume to start a new run there)")
    if not args.resume and has_checkpoint:
        raise UsageError(f"{run_dir} already holds a run ({CHECKPOINT_NAME}): pass --resume to "
                         f"continue it, or choose another --out")
    if args.resume and (run_dir / "config.json").is_file():
        config = _read_config(run_dir, needed=("model", "dataset") + _RESUME_KEYS
                              + (("steps",) if args.steps is None else ()))
        config.setdefault("device", "cpu")
        if config["model"] != spec.name:
            raise UsageError(f"--resume: {run_dir} holds a {config['model']!r} run, not "
                             f"{spec.name!r}")
        for flag in ("dataset", "batch_size", "lr", "lr_schedule", "ema_decay", "seed"):
            given = getattr(args, flag)
            if flag == "dataset" and given is not None:
                given = _dataset_name(args, spec)
            if given is not None and given != config.get(flag):
                raise UsageError(f"--resume: {run_dir} was trained with --{flag.replace('_', '-')}"
                                 f" {config.get(flag)}, not {given} (a resumed run keeps its settings)")
        if args.steps is not None:
            config["steps"] = args.steps
        if args.device is not None:
            config["device"] = args.device
    else:
        config = _fresh_config(args, spec)
    for key in ("steps", "batch_size"):
        if config[key] < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be at least 1, got {config[key]}")
    if not config["lr"] > 0:
        raise UsageError(f"--lr must be positive, got {config['lr']}")
    if config["seed"] < 0:
        raise UsageError(f"--seed must be at least 0, got {config['seed']}")
    ema_decay = config.get("ema_decay")
    if ema_decay is not None and not 0 <= ema_decay <= 1:
        raise UsageError(f"--ema-decay must be between 0 and 1, got {ema_decay}")
    _check_device(config["device"])
    world = _data_parallel_world(config)
    main = world.rank == 0

    ng.manual_seed(config["seed"])
    dataset = _dataset(config["dataset"], "train", download=args.download)
    if is_folder_dataset(config["dataset"]):
        if args.resume and config.get("data_fingerprint", dataset.fingerprint) != \
                dataset.fingerprint:
            raise UsageError(f"--resume: the files under {dataset.root} have changed since "
                             f"{run_dir} started ({len(dataset):,} training images now), so "
                             f"the run cannot continue exactly; restore them, or start a new "
                             f"run with another --out")
        config.update(data_shape=list(dataset.sample_shape), num_classes=dataset.num_classes,
                      data_fingerprint=dataset.fingerprint)
    model = build_model(config, dataset)
    if config.get("sync_batchnorm"):
        model = ng.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if config["batch_size"] > len(dataset):
        raise UsageError(f"--batch-size {config['batch_size']} is larger than the "
                         f"{len(dataset):,} training examples of {config['dataset']}")
    loader = DataLoader(dataset, batch_size=config["batch_size"], shuffle=True, drop_last=True,
                        seed=config["seed"], transform=train_transform(model.data_transform),
                        device=config["device"],
                        shard=(world.rank, world.size) if world.size > 1 else None)
    n_params = sum(p.numel() for p in model.parameters())

    def announce(step):
        # called once the checkpoint is restored: a run that cannot start says only why
        if main:
            ranks = (f" ({world.size} ranks of {config['batch_size'] // world.size})"
                     if world.size > 1 else "")
            print(f"training {spec.name} ({n_params:,} parameters) on {config['dataset']} "
                  f"({len(dataset):,} examples) for {config['steps']:,} steps of "
                  f"{config['batch_size']}{ranks} on {config['device']}"
                  + (f" from step {step:,}" if step else "") + f" -> {run_dir}",
                  file=sys.stderr)

    result = train(model, loader, steps=config["steps"], out_dir=run_dir, config=config,
                   lr=config["lr"], lr_schedule=config.get("lr_schedule", "constant"),
                   ema_decay=config.get("ema_decay"),
                   resume=args.resume,
                   sample_every=args.sample_every or spec.sample_every,
                   checkpoint_every=args.checkpoint_every or max(spec.sample_every, 100),
                   num_samples=spec.num_samples, progress=not args.no_progress,
                   on_start=announce, world=world)
    if not main:
        return 0
    written = ([run_dir / "samples.png"] if model.can_sample else []) + _write_figures(
        model.eval(), config, run_dir)
    first = next(iter(result.logs.items()), None)       # "loss", or a GAN's "loss_d"
    print(f"done: step {result.step:,} in {_fmt_seconds(result.seconds)}"
          + (f", {first[0]} {first[1]:.3f}" if first is not None else "")
          + f"; wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def _dataset_name(args, spec) -> str:
    """The dataset a new run trains on: ``--dataset`` (the model's default without it), with
    ``--image-size`` and ``--channels`` folded into a ``folder:`` dataset's name, whose path is
    made absolute so the run directory works from anywhere."""
    from .data import folder_dataset_name
    from .data.folder import is_folder_dataset, parse_folder_dataset
    name = args.dataset or spec.dataset
    image_size, channels = getattr(args, "image_size", None), getattr(args, "channels", None)
    if not is_folder_dataset(name):
        for flag, value in (("--image-size", image_size), ("--channels", channels)):
            if value is not None:
                raise UsageError(f"{flag} applies to a folder of images (--dataset "
                                 f"folder:PATH), not to {name}")
        return name
    path, size, chans = parse_folder_dataset(name)
    for flag, given, named in (("--image-size", image_size, size),
                               ("--channels", channels, chans)):
        if given is not None and named is not None and given != named:
            raise UsageError(f"{flag} {given} contradicts the {named} in --dataset {name}")
    return folder_dataset_name(path, image_size if image_size is not None else size,
                               channels if channels is not None else chans)


def _data_parallel_world(config):
    """The ranks ``mpiexec`` started (one process otherwise), checked: the global batch splits
    evenly over them, and every rank parsed the same settings."""
    from . import distributed
    world = distributed.init(config["device"])
    if world.size == 1:
        return world
    if config["batch_size"] % world.size:
        raise UsageError(f"--batch-size {config['batch_size']} does not split evenly over "
                         f"{world.size} ranks (each rank takes 1/{world.size} of every global "
                         f"batch): use a multiple of {world.size}")
    configs = world.gather({k: v for k, v in config.items() if k != "device"})

    def same_everywhere():
        for rank, other in enumerate(configs[1:], start=1):
            differ = sorted(k for k in set(other) | set(configs[0])
                            if other.get(k) != configs[0].get(k))
            if differ:
                key = differ[0]
                raise UsageError(f"the ranks disagree on the run's settings: rank {rank} has "
                                 f"{key} = {_short_json(other.get(key))}, rank 0 "
                                 f"{_short_json(configs[0].get(key))}")
    distributed.agree(same_everywhere, world, error=UsageError)
    return world


def _fresh_config(args, spec) -> dict:
    """The config.json of a new run of ``spec`` (its defaults for the dataset's kind) that
    ``nanogen train`` writes for the parsed ``args``."""
    import nanogen as ng
    return {
        "model": spec.name,
        "dataset": _dataset_name(args, spec),
        "steps": args.steps if args.steps is not None else spec.steps,
        "batch_size": args.batch_size if args.batch_size is not None else spec.batch_size,
        "lr": args.lr if args.lr is not None else spec.lr,
        "lr_schedule": args.lr_schedule or spec.lr_schedule,
        "ema_decay": args.ema_decay if args.ema_decay is not None else spec.ema_decay,
        "seed": args.seed if args.seed is not None else 0,
        "device": args.device or "cpu",
        "model_kwargs": {**spec.kwargs, **_parse_model_args(args.arg or [])},
        **({"sync_batchnorm": True} if getattr(args, "sync_batchnorm", False) else {}),
        "nanogen_version": ng.__version__,
    }


def training_command(config: dict) -> str | None:
    """The ``nanogen train`` command line that writes ``config`` (a run's config.json): the
    model, ``--steps``, and every setting that differs from the model's defaults.  None when no
    command line writes it (a run configured from Python, a default that has changed since,
    an average switched off that the model keeps by default).  Checked by parsing the command
    again and comparing the config it writes, so what it returns always reproduces ``config``
    (but for ``nanogen_version``)."""
    import shlex

    from .data import dataset_kind
    from .models import get_model_spec
    try:
        spec = get_model_spec(config["model"])
        base = spec.for_data(dataset_kind(config["dataset"]))
    except (KeyError, ValueError, TypeError):
        return None
    argv = ["train", spec.name]
    if config["dataset"] != spec.dataset:
        argv += ["--dataset", config["dataset"]]
    defaults = {"steps": None, "batch_size": base.batch_size, "lr": base.lr,
                "lr_schedule": base.lr_schedule, "ema_decay": base.ema_decay, "seed": 0,
                "device": "cpu"}
    for key, default in defaults.items():
        value = config.get(key, default)
        if key == "steps" or value != default:
            if value is None:                   # no flag turns off an average kept by default
                return None
            argv += ["--" + key.replace("_", "-"), repr(value) if isinstance(value, float)
                     else str(value)]
    if config.get("sync_batchnorm"):
        argv.append("--sync-batchnorm")
    kwargs = config.get("model_kwargs", {})
    model_defaults = json.loads(json.dumps(base.kwargs))    # as config.json holds them
    for key, value in kwargs.items() if isinstance(kwargs, dict) else ():
        if key not in model_defaults or model_defaults[key] != value:
            text = json.dumps(value, separators=(",", ":"))
            if isinstance(value, str) and _parse_model_args([f"{key}={value}"])[key] == value:
                text = value                    # --arg loss=minimax, not --arg 'loss="minimax"'
            argv += ["--arg", f"{key}={text}"]
    try:
        with contextlib.redirect_stderr(io.StringIO()):       # argparse's complaint, if any
            again = _fresh_config(make_parser().parse_args(argv), base)
    except (SystemExit, UsageError):
        return None
    again = json.loads(json.dumps(again))                   # the config.json it would write
    recorded = {key: None for key in ("nanogen_version", "data_shape", "num_classes",
                                      "data_fingerprint")}
    if {**again, **recorded} != {**config, **recorded}:     # (train records the data itself)
        return None
    return "nanogen " + shlex.join(argv)


def cmd_sample(args):
    import nanogen as ng
    from .utils.image import save_image
    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    target = _load_for_use(args)
    out = Path(args.out) if args.out else target.out_dir / "sample.png"
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: the sample grid is written as a PNG, name it *.png")
    if not args.out:
        out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    world = _world_of(target.config)
    with ng.random.fork_rng(args.seed):
        images = draw_samples(target.model, args.n,
                              sampler_options(target.model, args.sampler, args.sampler_steps,
                                              guidance=args.guidance),
                              world=world, label=args.label)
    if world.rank != 0:
        return 0
    save_image(images, out, nrow=args.nrow or _grid_width(args.n))
    print(f"wrote {args.n} samples to {out} ({_fmt_seconds(time.perf_counter() - t0)})",
          file=sys.stderr)
    return 0


def _parse_model_args(pairs):
    """``["latent_dim=32", "channels=[32,64]"]`` -> ``{"latent_dim": 32, "channels": [32, 64]}``
    (values are JSON when they parse as JSON, strings otherwise)."""
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--arg {pair!r}: write it as NAME=VALUE, e.g. --arg latent_dim=32")
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed


def sampler_options(model, sampler=None, steps=None, default=None, guidance=None) -> dict:
    """``--sampler NAME --sampler-steps K`` as keyword arguments of ``model.sample``, refused
    with one line when the model's sampler takes no such option.  Without ``--sampler`` the
    default is ``default`` (a pretrained model's recorded options) or else the model's preview
    sampler (DDPM: 50 DDIM steps, since 1,000 ancestral steps take hours on a CPU);
    ``--sampler`` alone drops its step count.  ``--guidance W`` adds a classifier-free guided
    model's weight."""
    import inspect
    if sampler is not None:
        options = {"sampler": sampler}
    elif default is not None and steps is None:
        options = dict(default)
    else:
        options = dict(model.preview_sampler())
    if steps is not None:
        options["steps"] = steps
    if guidance is not None:
        options["guidance"] = guidance
    accepted = inspect.signature(model.sample).parameters
    for name in options:
        if name == "guidance" and name not in accepted:
            raise UsageError(f"--guidance: {type(model).__name__} is not a guided model (only "
                             f"classifier-free guided diffusion takes a guidance weight: "
                             f"ddpm-cfg)")
        if name not in accepted:
            flag = "--sampler" if name == "sampler" else "--sampler-steps"
            raise UsageError(f"{flag}: {type(model).__name__} has a single sampler and takes "
                             f"no {flag} option")
    return options


def draw_samples(model, n: int, options=None, chunk: int = SAMPLE_CHUNK, world=None,
                 label=None):
    """``n`` samples of ``model`` as one host array, drawn ``chunk`` at a time under no_grad
    from the current random stream (bounded memory for a diffusion model's n = 1,000); all of
    class ``label`` when given (a class-conditional model).

    With several ranks (``world``) each rank draws its 1/N of every chunk under
    :func:`nanogen.random.sharded` -- the rows one process would draw for them -- and rank 0
    gets the whole array (the other ranks get None); ``n`` must split evenly over the ranks."""
    import numpy as np

    import nanogen as ng
    if not model.can_sample:
        raise UsageError(f"{type(model).__name__} draws no samples (a classifier: can_sample is "
                         f"False); nanogen eval scores it")
    ranks, rank = (world.size, world.rank) if world is not None else (1, 0)
    if n % ranks:
        raise UsageError(f"{n} samples do not split evenly over {ranks} ranks: ask for a "
                         f"multiple of {ranks}")
    if label is not None:
        if not getattr(model, "conditional", False):
            raise UsageError(f"--class: {type(model).__name__} is not class-conditional")
        if not 0 <= label < model.num_classes:
            raise UsageError(f"--class must be a class index in 0..{model.num_classes - 1}, "
                             f"got {label}")
        options = {**(options or {}), "y": None}
    chunk = max(ranks, chunk // ranks * ranks)
    parts = []
    with ng.no_grad(), ng.random.sharded(rank, ranks):
        for start in range(0, n, chunk):
            try:
                m = min(chunk, n - start) // ranks
                if label is not None:
                    options["y"] = ng.full(m, label, dtype=np.int64)
                batch = model.sample(m, **(options or {}))
            except ValueError as e:          # a sampler refusing its options (steps > T, ...)
                if options:
                    raise UsageError(f"{type(model).__name__}.sample: {e}") from None
                raise
            parts.append(np.asarray(batch.numpy(), dtype=np.float32))
    if ranks == 1:
        return np.concatenate(parts)
    pieces = world.gather(parts)            # pieces[r][c]: rank r's rows of chunk c
    if rank != 0:
        return None
    return np.concatenate([p for c in range(len(parts)) for p in (r[c] for r in pieces)])


class _Target:
    """What sample and eval work on: a model, its config, the step it was trained to, where
    their files go, and the manifest entry of a pretrained model (None for a run)."""

    def __init__(self, model, config, step, out_dir, entry=None):
        self.model, self.config, self.step = model, config, step
        self.out_dir, self.entry = Path(out_dir), entry


def _load_for_use(args) -> _Target:
    """The run directory (its device unless --device overrides it) or ``pretrained:NAME`` (on
    the CPU unless --device says otherwise) that sample and eval name."""
    from . import pretrained
    name = pretrained.pretrained_name(args.dir)
    if name is not None:
        device = _check_device(args.device or "cpu")
        model, entry = pretrained.load(name, device=device)
        return _Target(model, dict(entry["config"], device=device),
                       entry["training"].get("steps"), Path(DEFAULT_RUNS_DIR) / "pretrained" / name,
                       entry)
    device = args.device or _read_config(Path(args.dir)).get("device", "cpu")
    model, config, checkpoint = load_run(args.dir, device=_check_device(device))
    return _Target(model, config, int(checkpoint["step"]), args.dir)


def _grid_width(n: int) -> int:
    return max(1, math.ceil(math.sqrt(n)))


def cmd_eval(args):
    target = _load_for_use(args)
    model, config = target.model, target.config
    _set_ais_options(model, args.ais_runs, args.ais_temperatures)
    # a pretrained model replays the settings its published figure was measured with
    recorded = (target.entry or {}).get("eval") or {}
    seed = args.seed if args.seed is not None else recorded.get("seed", 0)
    num_examples = (args.num_examples if args.num_examples is not None
                    else recorded.get("num_examples"))
    num_samples = (args.num_samples if args.num_samples is not None
                   else recorded.get("num_samples"))
    options = sampler_options(model, args.sampler, args.sampler_steps, recorded.get("sampler"),
                              guidance=args.guidance)
    target.out_dir.mkdir(parents=True, exist_ok=True)
    world = _world_of(config)
    t0 = time.perf_counter()
    metrics = evaluate_model(model, config, seed=seed, num_examples=num_examples,
                             num_samples=num_samples, options=options, out_dir=target.out_dir,
                             world=world, probe=args.probe)
    if world.rank != 0:
        return 0
    report = {"model": config["model"], "dataset": config["dataset"], "split": "test",
              "step": target.step, **metrics,
              "eval_seconds": round(time.perf_counter() - t0, 1)}
    if target.entry is not None:
        report = {"pretrained": target.entry["name"], "seed": seed, **report}
    print(json.dumps(report, indent=2))
    _write_json(target.out_dir / "metrics.json", report)
    _write_figures(model, config, target.out_dir)
    return 0


def cmd_study(args):
    from . import study
    pool, _ = study.pool_from_runs(args.dirs, args.num_samples, args.seed, args.device,
                                   args.sampler, args.sampler_steps)
    try:
        study.serve(pool, args.out, args.port)
    except ValueError as e:             # the port is taken, --out has no directory
        raise UsageError(str(e)) from None
    return 0


def _set_ais_options(model, runs, temperatures):
    """``--ais-runs`` / ``--ais-temperatures`` on the model, refused for a model with no
    partition function to estimate."""
    for flag, name, value in (("--ais-runs", "ais_runs", runs),
                              ("--ais-temperatures", "ais_temperatures", temperatures)):
        if value is None:
            continue
        if not hasattr(model, name):
            raise UsageError(f"{flag}: {type(model).__name__} estimates no partition function "
                             f"(only the energy models do: rbm, dbn, dbm)")
        if value < (1 if name == "ais_runs" else 4):
            raise UsageError(f"{flag} must be at least {1 if name == 'ais_runs' else 4}, "
                             f"got {value}")
        setattr(model, name, value)


def evaluate_model(model, config, *, seed: int = 0, num_examples=None, num_samples=None,
                   options=None, out_dir=None, world=None, probe=None) -> dict:
    """What ``nanogen eval`` reports for ``model``: its own ``evaluate`` on the test split (or
    on ``num_examples`` of it, classes balanced) under seed ``seed``, and, when
    :func:`resolve_num_samples` gives any, FID / KID / IS of that many samples drawn with
    ``options`` under seed ``seed + 1`` (and ``out_dir/nearest_neighbours.png`` when
    ``out_dir`` is given); a guided model (``ddpm-cfg``) adds the classifier's accuracy on as
    many samples of requested classes, drawn with the same options (its guidance weight
    included).  For a model with an encoder (``codes``) it adds the linear probe's
    test accuracy (:func:`nanogen.metrics.probe_model`: fitted on the codes of every training
    image, scored on the test examples evaluated); ``probe`` True asks for it (an error for a
    model with no encoder), False skips it, None (the default) runs it where it can.

    With several ranks (``world``) each evaluates a contiguous 1/N of the test examples (the
    metrics, means over examples, are combined weighted by each rank's count) and draws 1/N of
    the samples (:func:`draw_samples`); rank 0 scores them, and every rank returns the same
    dict.  Deterministic metrics equal one process's; a stochastic bound (the IWAE's) uses the
    same seed on every rank, so it is an estimate of the same quantity with other noise."""
    import numpy as np

    import nanogen as ng
    from .data import DataLoader, TensorDataset
    test = _test_examples(config, model)
    if num_examples is not None:
        if not 1 <= num_examples <= len(test):
            raise UsageError(f"--num-examples must be between 1 and the {len(test)} test "
                             f"examples, got {num_examples}")
        x, y = _stack(test)
        picks = np.sort(_first_of_each_class(y, num_examples))   # classes stay balanced
        test = TensorDataset(x[picks], y[picks])
    ranks = world.size if world is not None else 1
    if ranks > 1:
        if len(test) < ranks:
            raise UsageError(f"{len(test)} test examples cannot be shared by {ranks} ranks")
        x, y = _stack(test)
        mine = np.array_split(np.arange(len(test)), ranks)[world.rank]
        test = TensorDataset(x[mine], y[mine])
    loader = DataLoader(test, batch_size=EVAL_BATCH_SIZE, shuffle=False,
                        device=config.get("device", "cpu"))
    num_samples = resolve_num_samples(num_samples, model, config)
    with ng.no_grad(), ng.random.fork_rng(seed):
        metrics = model.evaluate(loader)
    if probe or (probe is None and callable(getattr(model, "codes", None))):
        metrics.update(_probe(model, config, test))
    if ranks > 1:
        gathered = world.gather(metrics)
        metrics = world.bcast(_combine_rank_metrics(gathered) if world.rank == 0 else None)
    if num_samples:
        with ng.random.fork_rng(seed + 1):
            metrics.update(_score_samples(model, config, num_samples, options, out_dir, seed,
                                          world))
        if _is_guided(model):     # the CFG trade-off: quality and obedience, same sampler
            from .metrics import conditional_accuracy     # (every rank: the same seeded draws)
            metrics.update(conditional_accuracy(model, n=num_samples, seed=seed + 2,
                                                options=options))
    return metrics


def _is_guided(model) -> bool:
    """A classifier-free guided model: its ``sample`` takes a ``guidance`` weight."""
    import inspect
    return "guidance" in inspect.signature(model.sample).parameters


def _probe(model, config, test) -> dict:
    """The linear probe's accuracy on ``test``, fitted on the model's codes of the training
    split as the model sees it at evaluation."""
    from .data import eval_dataset
    from .metrics.probe import ProbeError, probe_model
    train = eval_dataset(_dataset(config["dataset"], "train"), model.data_transform, seed=0)
    try:
        return probe_model(model, *_stack(train), *_stack(test),
                           device=config.get("device", "cpu"))
    except ProbeError as e:
        raise UsageError(f"--probe: {e}") from None


def _combine_rank_metrics(parts):
    """The ranks' metric dicts as one: numbers averaged weighted by each rank's
    ``num_examples`` (every metric is a mean over examples), ``num_examples`` summed, other
    integers (settings such as ``iwae_k``) and anything else taken from rank 0; a standard error
    (``*_stderr``) of the ranks' independent means combines as sqrt(sum (n_r se_r)^2) / N."""
    counts = [p.get("num_examples", 1) for p in parts]
    total = sum(counts)
    combined = dict(parts[0])
    for key, value in parts[0].items():
        if key == "num_examples":
            combined[key] = total
        elif key.endswith("_stderr"):    # the mean's standard error: sqrt(sum (n_r se_r)^2) / N
            combined[key] = math.sqrt(sum((p[key] * n) ** 2 for p, n in zip(parts, counts))) \
                / total
        elif isinstance(value, float):
            combined[key] = sum(p[key] * n for p, n in zip(parts, counts)) / total
    return combined


def resolve_num_samples(requested, model, config) -> int:
    """How many samples FID/KID/IS use: ``requested`` (``--num-samples``), else the model's
    default when it is judged by its samples (none for a likelihood model, or for 2-D points,
    which its own ``evaluate`` scores by mode coverage)."""
    from .data import dataset_kind
    points = dataset_kind(config["dataset"]) == "points"
    if requested is None:
        return 0 if points or not model.judged_by_samples else model.eval_num_samples
    if requested < 0:
        raise UsageError(f"--num-samples must be at least 0, got {requested}")
    if points and requested:
        raise UsageError(f"--num-samples: FID, KID and IS judge images; {config['dataset']} "
                         f"holds 2-D points (its model reports mode coverage instead)")
    return requested


def _score_samples(model, config, n, options, run_dir, seed: int, world=None):
    """FID, KID and IS of ``n`` samples against the test split, the sampler options beside
    them, and (when ``run_dir`` is given) ``nearest_neighbours.png``: the first samples, each
    beside its nearest training images in the classifier's feature space.  With several ranks
    they share the sampling, rank 0 scores, and every rank returns its scores."""
    samples = draw_samples(model, n, options, world=world)
    if world is None or world.size == 1:
        return _scores_of(samples, config, options, run_dir, seed)
    from .distributed import agree
    return agree(lambda: _scores_of(samples, config, options, run_dir, seed), world,
                 error=UsageError)


def _scores_of(samples, config, options, run_dir, seed):
    from . import metrics
    from .utils.image import save_image
    try:
        scores = metrics.sample_quality(samples, dataset=config["dataset"], split="test",
                                        seed=seed)
        if run_dir is not None:
            train_images = _dataset(config["dataset"], "train").arrays[0]
            grid, nrow = metrics.nearest_neighbour_grid(samples[:NEIGHBOUR_ROWS], train_images,
                                                        k=NEIGHBOURS)
            save_image(grid, Path(run_dir) / "nearest_neighbours.png", nrow=nrow)
    except ValueError as e:          # images the classifier cannot judge (CIFAR's, ...)
        raise UsageError(f"--num-samples: {e}") from None
    return {**scores, **({"sampler": options} if options else {})}


# -- argument parsing and error reporting --------------------------------------------------------
def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nanogen", description="Train, sample and evaluate "
                                "nanogen's generative models.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    ls = sub.add_parser("list", help="the models and datasets, one line each")
    ls.add_argument("--pretrained", action="store_true", help="the pretrained models that ship "
                    "with nanogen instead: name, model, metric, size")
    ls.set_defaults(func=cmd_list)

    t = sub.add_parser("train", help="train a model; writes a run directory")
    t.add_argument("model", metavar="MODEL", help="a model name from `nanogen list`")
    t.add_argument("--dataset", help="a dataset name from `nanogen list` (default: the "
                   "model's), or folder:PATH for your own PNG / JPEG / BMP images (class "
                   "labels from its subfolders; see docs/datasets.md)")
    t.add_argument("--image-size", type=int, metavar="S", help="folder datasets: resize "
                   "each image's shorter side to S and centre-crop it to S x S")
    t.add_argument("--channels", type=int, choices=[1, 3], help="folder datasets: 1 (grey) "
                   "or 3 (RGB); default 1 if every image is grey, else 3")
    t.add_argument("--steps", type=int, help="total optimizer steps (default: the model's "
                   "budget, under 10 minutes on a 2-core CPU)")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float, help="learning rate")
    t.add_argument("--lr-schedule", choices=["constant", "cosine"], help="constant, or cosine "
                   "decay from --lr towards 0 over --steps (default: the model's)")
    t.add_argument("--device", help="cpu (default) or cuda")
    t.add_argument("--seed", type=int)
    t.add_argument("--download", action="store_true", help="fetch a missing dataset (mnist, "
                   "fashion-mnist, cifar10) into $NANOGEN_DATA or ~/.cache/nanogen, checksummed")
    t.add_argument("--out", metavar="DIR", help=f"run directory (default: "
                   f"{DEFAULT_RUNS_DIR}/MODEL)")
    t.add_argument("--ema-decay", type=float, metavar="D", help="keep an exponential moving "
                   "average of the weights (e.g. 0.999), used by sample and eval")
    t.add_argument("--arg", action="append", metavar="NAME=VALUE", help="a model argument "
                   "(repeatable), e.g. --arg latent_dim=32 --arg 'channels=[32,64]'")
    t.add_argument("--resume", action="store_true", help="continue the run in DIR from its "
                   "checkpoint, exactly as if it had not stopped")
    t.add_argument("--sample-every", type=int, metavar="K", help="write a sample grid every K "
                   "steps")
    t.add_argument("--checkpoint-every", type=int, metavar="K")
    t.add_argument("--sync-batchnorm", action="store_true", help="data-parallel runs (mpiexec "
                   "-n N nanogen train ...): batch norm over the global batch "
                   "(nn.SyncBatchNorm) instead of each rank's share")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    target = ("a run directory, or pretrained:NAME for a model that ships with nanogen "
              "(nanogen list --pretrained)")
    s = sub.add_parser("sample", help="draw a sample grid from a trained run or a pretrained "
                       "model")
    s.add_argument("dir", metavar="DIR", help=target)
    s.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    s.add_argument("--nrow", type=int, help="images per row (default: a square grid)")
    s.add_argument("--out", metavar="FILE.png", help="default: DIR/sample.png "
                   "(runs/pretrained/NAME/sample.png for pretrained:NAME)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--class", dest="label", type=int, metavar="K", help="a class-conditional "
                   "model: draw every sample of class K (default: the classes in turn)")
    s.add_argument("--device", help="override the run's device (pretrained: cpu)")
    _add_sampler_flags(s)
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", help="the model's metrics on the test split (JSON, also saved "
                       "to DIR/metrics.json, or runs/pretrained/NAME/metrics.json)")
    e.add_argument("dir", metavar="DIR", help=target + "; a pretrained model's defaults are "
                   "the settings its recorded figure was measured with")
    e.add_argument("--device", help="override the run's device (pretrained: cpu)")
    e.add_argument("--ais-runs", type=int, metavar="M", help="energy models (RBM, DBN, DBM): "
                   "the number of AIS runs behind log Z (default: the model's, 100)")
    e.add_argument("--ais-temperatures", type=int, metavar="K", help="energy models: the "
                   "number of AIS temperatures (default: the model's, 14,500)")
    e.add_argument("--probe", action=argparse.BooleanOptionalAction, default=None,
                   help="the linear probe: logistic regression on the model's codes of the "
                   "training images, scored on the test images (default: on for models with "
                   "an encoder; --probe on a model with none is an error)")
    _add_eval_flags(e)
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("export", help="ship a run's weights as pretrained:NAME (float16, "
                       "checksummed, in nanogen/pretrained/ or $NANOGEN_PRETRAINED_DIR), with "
                       "the metrics measured on them")
    x.add_argument("dir", metavar="DIR", help="a trained run directory")
    x.add_argument("--name", required=True, help="the name to ship it under (lowercase "
                   "letters, digits, '.', '_', '-'); an entry of that name is replaced")
    x.add_argument("--command", dest="train_command", metavar='"nanogen train ..."', help="the command that trained "
                   "it (default: rebuilt from the run's config.json; needed when that cannot "
                   "be done)")
    x.add_argument("--dtype", choices=["float16", "float32", "int8"], default="float16",
                   help="how float weights are stored: float16 (default), float32 (lossless), "
                   "or int8 (weight matrices and kernels as 8-bit codes with a float32 scale "
                   "per row, the rest float16: half float16's size, for a model over the "
                   "budget)")
    x.add_argument("--allow-large", action="store_true", help="ship weights above the 2 MB "
                   "budget per model")
    x.add_argument("--no-eval", action="store_true", help="record no evaluation (only the "
                   "small check re-score the tests repeat)")
    x.add_argument("--device", help="where the evaluation runs: cpu (default) or cuda (the "
                   "weights and the check re-score are the same either way)")
    _add_eval_flags(x)
    x.set_defaults(func=cmd_export)

    st = sub.add_parser("study", help="a real-vs-generated study on localhost: a page shows "
                        "real test images and the runs' samples one at a time and keeps each "
                        "answer in study.jsonl")
    st.add_argument("dirs", nargs="+", metavar="DIR", help=target)
    st.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; "
                    "0: any free one)")
    st.add_argument("--out", default="study.jsonl", metavar="FILE", help="the answers, one JSON "
                    "line each, appended (default ./study.jsonl)")
    st.add_argument("--num-samples", type=int, default=100, metavar="N", help="samples drawn "
                    "per run at start-up, and real test images shown (default 100)")
    st.add_argument("--seed", type=int, default=0, help="seed of the samples and of the real "
                    "images picked")
    st.add_argument("--device", help="override the runs' device (pretrained: cpu)")
    _add_sampler_flags(st)
    st.set_defaults(func=cmd_study)
    return p


def _add_eval_flags(parser):
    parser.add_argument("--seed", type=int, help="seed of the evaluation's own sampling "
                        "(default 0)")
    parser.add_argument("--num-examples", type=int, metavar="N", help="evaluate on N test "
                        "examples, classes balanced (default: the whole test split)")
    parser.add_argument("--num-samples", type=int, metavar="N", help="score N samples with "
                        "FID, KID and the Inception Score against the test split, and draw "
                        "nearest_neighbours.png (default: the model's count for GANs and "
                        "diffusion models, none for likelihood models; 0 skips)")
    _add_sampler_flags(parser)


def _add_sampler_flags(parser):
    parser.add_argument("--sampler", help="the model's sampler, for models with several "
                        "(DDPM: ancestral or ddim)")
    parser.add_argument("--sampler-steps", type=int, metavar="K", help="sampling steps, for "
                        "samplers that take few (DDIM)")
    parser.add_argument("--guidance", type=float, metavar="W", help="classifier-free guidance "
                        "weight w >= 0 of a guided diffusion model (ddpm-cfg; 0: the plain "
                        "conditional model)")


def _world_of(config):
    """The ranks an ``mpiexec`` started for sample / eval (one process otherwise)."""
    from . import distributed
    return distributed.init(config.get("device", "cpu"))


def _rank() -> int:
    """This process's rank in an mpiexec run (0 otherwise), known even before MPI starts."""
    from .distributed import launched_rank
    return launched_rank()


def _user_errors():
    """The exception types that mean 'bad input', reported as one line."""
    from .data import DatasetError
    from .models import UnknownModelError
    from .distributed import DistributedError
    from .serialization import SerializationError
    from .pretrained import PretrainedError
    from .training import CheckpointError
    return (UsageError, UnknownModelError, DatasetError, CheckpointError, SerializationError,
            PretrainedError, DistributedError)


def _show_warning(args):
    """Warnings (a folder's skipped files, ...) as one line each: 'nanogen train: warning: ...'."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"nanogen {args.command}: warning: {' '.join(str(message).split())}",
              file=sys.stderr)
    return show


def main(argv=None) -> int:
    import warnings
    args = make_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning(args)
            return args.func(args)
    except KeyboardInterrupt:
        print("nanogen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:             # `nanogen list | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - every failure becomes one line
        if os.environ.get("NANOGEN_DEBUG"):
            raise
        message = " ".join(str(e).split())         # one line, whatever the message holds
        if isinstance(e, _user_errors()):
            if _rank() == 0:        # every rank of an mpiexec run meets the same bad input
                print(f"nanogen {args.command}: error: {message}", file=sys.stderr)
            return 2
        if _rank() > 0:
            message = f"[rank {_rank()}] {message}"
        print(f"nanogen {args.command}: unexpected {type(e).__name__}: {message} "
              f"(set NANOGEN_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
