"""Pretrained weights: every shipped model samples and re-scores without a run directory.

::

    nanogen export runs/pixelcnn --name pixelcnn     # a run directory -> pretrained:pixelcnn
    nanogen list --pretrained                        # name, model, metric, size
    nanogen sample pretrained:pixelcnn --n 64        # runs/pretrained/pixelcnn/sample.png
    nanogen eval pretrained:pixelcnn                 # the figure recorded in the manifest

    model = ng.load_pretrained("pixelcnn")           # in eval mode, ready to sample

This folder holds ``manifest.json`` and one weights file per entry (``NAME.npz``); setting
``NANOGEN_PRETRAINED_DIR`` (or passing ``directory=``) points everything here at another folder
laid out the same way.  ``docs/pretrained.md`` describes the format in full.

A weights file is an :func:`nanogen.save` archive, deflated (``compress=True``), written
atomically, holding ``{"format": "nanogen-pretrained", "version": 1, "model": MODEL, "state":
{name: array}}``: only what sampling and evaluation read -- the model's
:meth:`~nanogen.models.GenerativeModel.inference_state_dict` (a GAN's generator, not its
discriminator; never optimizer state), with the run's weight average (EMA) in place of the
last iterate when the run kept one, as ``nanogen sample`` and ``nanogen eval`` use it.  Float
tensors are stored as float16 by default (a tensor with values beyond float16's range stays
float32; ``--dtype int8`` stores weight matrices and kernels as 8-bit codes with a scale per
row instead, ``--dtype float32`` as they are), integer and bool buffers as they are; loading
converts them back to the model's float32.

``manifest.json`` is ``{"format": "nanogen-pretrained-manifest", "version": 1, "models":
[ENTRY, ...]}``; an entry holds the name, the model, the run's config (what ``build_model``
needs), the ``nanogen train`` command that trained it, the training budget, the metrics that
``nanogen eval pretrained:NAME`` measures *on the shipped weights* with the settings that
measured them (``eval``), a small fixed re-score the tests repeat (``check``: 20 test examples,
and for an energy model an AIS of 10 runs x 100 temperatures, its ``model_options``), and the file's
name, size and SHA-256.  Loading checks the SHA-256 before reading a byte of the archive; a
missing, corrupt or truncated file, an unknown name or a broken manifest is a one-line
:class:`PretrainedError`.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import json
import os
import re
import time
from collections import OrderedDict
from pathlib import Path

__all__ = ["load_pretrained", "load", "export", "entries", "get_entry", "read_manifest",
           "pretrained_dir", "pretrained_name", "headline", "format_bytes", "PretrainedError",
           "PREFIX", "MAX_BYTES", "DTYPES", "ENV_VAR"]

FORMAT = "nanogen-pretrained"
MANIFEST_FORMAT = "nanogen-pretrained-manifest"
VERSION = 1
MANIFEST_NAME = "manifest.json"
ENV_VAR = "NANOGEN_PRETRAINED_DIR"
PREFIX = "pretrained:"                 # nanogen sample / eval pretrained:NAME
MAX_BYTES = 2_000_000                  # the budget per model (2 MB); export --allow-large exceeds it
DTYPES = ("float16", "float32", "int8")   # how float tensors are stored (compact_state)
CHECK_EXAMPLES = 20                    # the small fixed re-score every entry records (check)
CHECK_SAMPLES = 20                     # ... and its samples, for a model judged by them
# ... and, for an energy model, a short AIS (its full 100 x 14,500 takes minutes): the
# attributes set on the model for the check, recorded as the check's "model_options"
CHECK_AIS = {"ais_runs": 10, "ais_temperatures": 100}
# the metric `nanogen list --pretrained` shows: the first of these the evaluation reported
HEADLINE_METRICS = ("fid", "accuracy", "nll_nats", "nll_upper_bound_nats", "iwae_nll_nats",
                    "neg_elbo_nats", "reconstruction_mse", "modes_covered", "bits_per_dim",
                    "loss")

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")
# each entry's keys and the JSON types they hold
_ENTRY_KEYS = {"name": str, "model": str, "config": dict, "command": str, "training": dict,
               "eval": (dict, type(None)), "check": dict, "file": str, "bytes": int,
               "sha256": str, "dtype": str, "parameters": int}


class PretrainedError(ValueError):
    """A pretrained model that cannot be had: unknown name, missing / corrupt / truncated file,
    broken manifest, a run that cannot be exported.  One line, so the command line prints it."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))


# -- where, and which ----------------------------------------------------------------------------
def pretrained_dir(directory=None) -> Path:
    """``directory``, else ``$NANOGEN_PRETRAINED_DIR``, else this package's folder."""
    if directory is not None:
        return Path(directory)
    return Path(os.environ.get(ENV_VAR) or Path(__file__).parent)


def pretrained_name(target) -> str | None:
    """``"NAME"`` for the command-line target ``"pretrained:NAME"``, None for anything else
    (a run directory; write ``./pretrained:x`` for a directory of that name)."""
    target = os.fspath(target)
    return target[len(PREFIX):] if isinstance(target, str) and target.startswith(PREFIX) else None


def read_manifest(directory=None, *, missing_ok: bool = False) -> dict:
    """The checked manifest of ``directory``; an empty one if it has none and ``missing_ok``."""
    path = pretrained_dir(directory) / MANIFEST_NAME
    if not path.is_file():
        if missing_ok:
            return {"format": MANIFEST_FORMAT, "version": VERSION, "models": []}
        raise PretrainedError(f"{path}: no pretrained manifest (the package ships one; "
                              f"{ENV_VAR}={os.environ.get(ENV_VAR)!r} may point elsewhere)")
    from ..cli import read_json
    manifest = read_json(path, "manifest", PretrainedError)
    _check_manifest(manifest, path)
    return manifest


def _check_manifest(manifest, path):
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise PretrainedError(f"{path}: not a pretrained manifest (no format tag "
                              f"{MANIFEST_FORMAT!r})")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise PretrainedError(f"{path}: manifest version {version!r}; this nanogen reads "
                              f"version {VERSION}")
    models = manifest.get("models")
    if not isinstance(models, list):
        raise PretrainedError(f"{path}: corrupt manifest: 'models' is not a list")
    seen = set()
    for i, entry in enumerate(models):
        if not isinstance(entry, dict):
            raise PretrainedError(f"{path}: corrupt manifest: models[{i}] is not an object")
        for key, kind in _ENTRY_KEYS.items():
            value = entry.get(key)
            if key not in entry or not isinstance(value, kind) or isinstance(value, bool):
                raise PretrainedError(f"{path}: corrupt manifest: models[{i}] has no valid "
                                      f"{key!r}")
        name, file = entry["name"], entry["file"]
        if not _NAME.match(name) or name in seen:
            raise PretrainedError(f"{path}: corrupt manifest: models[{i}] has a bad or "
                                  f"repeated name {name!r}")
        if file != f"{name}.npz":         # never a path out of the folder
            raise PretrainedError(f"{path}: corrupt manifest: {name!r} names the file "
                                  f"{file!r}, not {name + '.npz'!r}")
        seen.add(name)


def entries(directory=None) -> list:
    """The manifest's entries, in order (none for a folder without a manifest)."""
    return read_manifest(directory, missing_ok=True)["models"]


def get_entry(name: str, directory=None) -> dict:
    """The manifest entry ``name``; an unknown name suggests the close ones."""
    models = entries(directory)
    for entry in models:
        if entry["name"] == name:
            return entry
    names = [entry["name"] for entry in models]
    if not names:
        raise PretrainedError(f"no pretrained model named {name!r}: none ship with this "
                              f"nanogen yet (nanogen list --pretrained)")
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    raise PretrainedError(f"unknown pretrained model {name!r}{hint}; shipped: "
                          f"{', '.join(names)}")


# -- loading -------------------------------------------------------------------------------------
def load(name: str, device: str = "cpu", directory=None):
    """``(model, entry)``: pretrained model ``name`` on ``device``, in eval mode, and its
    manifest entry.  The file's SHA-256 is checked first."""
    entry = get_entry(name, directory)
    path = pretrained_dir(directory) / entry["file"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PretrainedError(f"pretrained model {name!r}: its weights file {path} is missing "
                              f"(reinstall nanogen, or export it again: nanogen export RUN_DIR "
                              f"--name {name})") from None
    except OSError as e:
        raise PretrainedError(f"{path}: cannot be read ({e.strerror or e})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise PretrainedError(f"{path}: checksum mismatch, the file is corrupt or truncated "
                              f"({len(data):,} bytes with sha256 {digest[:16]}...; the manifest "
                              f"records {entry['bytes']:,} bytes with sha256 "
                              f"{entry['sha256'][:16]}...): reinstall nanogen or export "
                              f"{name!r} again")
    return _model_from_bytes(data, entry["config"], device, where=path), entry


def load_pretrained(name: str, device: str = "cpu", *, directory=None):
    """Pretrained model ``name`` (``nanogen list --pretrained``) on ``device``, in eval mode,
    ready to ``sample``.  Raises :class:`PretrainedError` (one line) for an unknown name or a
    missing, corrupt or truncated file."""
    return load(name, device, directory)[0]


def _model_from_bytes(data: bytes, config: dict, device: str, where):
    """A model built from ``config`` with the weights archive ``data`` loaded, in eval mode."""
    from ..cli import build_model
    from ..data import dataset_info
    from ..serialization import SerializationError, load as load_archive
    try:
        saved = load_archive(io.BytesIO(data))
    except SerializationError as e:
        raise PretrainedError(f"{where}: not a readable weights file: {e}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or \
            not isinstance(saved.get("state"), dict):
        raise PretrainedError(f"{where}: not a nanogen pretrained weights file (format tag "
                              f"{FORMAT!r} and a 'state' expected)")
    if saved.get("model") != config.get("model"):
        raise PretrainedError(f"{where}: holds weights of {saved.get('model')!r}, but the "
                              f"manifest's config builds {config.get('model')!r}")
    config = dict(config, device=device)
    model = build_model(config, dataset_info(config["dataset"]))
    expected, state = model.inference_state_dict(), expand_state(saved["state"], where)
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise PretrainedError(f"{where}: the weights do not fit {config['model']!r} as the "
                              f"manifest configures it (missing {missing[:5]}, unexpected "
                              f"{unexpected[:5]})")
    try:
        model.load_state_dict(state, strict=False)
    except (RuntimeError, ValueError, TypeError) as e:
        raise PretrainedError(f"{where}: the weights do not fit {config['model']!r} "
                              f"({' '.join(str(e).split())[:300]})") from None
    return model.eval()


# -- exporting a run ----------------------------------------------------------------------------
def compact_state(state, dtype: str = "float16") -> OrderedDict:
    """``state`` (name -> Tensor) as host arrays to ship, float tensors stored as ``dtype``:

    * ``"float16"`` -- each float tensor as float16 (one whose values overflow float16 stays
      float32);
    * ``"float32"`` -- as they are, lossless;
    * ``"int8"`` -- each float tensor of 2 or more dimensions (a weight matrix or kernel) as
      ``{"int8": q, "scale": s}``: one float32 scale per slice along the first axis,
      ``s = max |w| / 127`` over the slice, and codes ``q = round(w / s)``, so ``w ~ s q`` to
      within ``s / 2``; the other float tensors (biases, norms' statistics) as float16.

    Integer and bool buffers are kept as they are.  :func:`expand_state` undoes it."""
    import numpy as np
    if dtype not in DTYPES:
        raise PretrainedError(f"unknown weight dtype {dtype!r}: use {', '.join(DTYPES)}")
    out = OrderedDict()
    for key, tensor in state.items():
        array = np.array(tensor.numpy())                     # a host copy
        if array.dtype.kind == "f" and dtype != "float32":
            if dtype == "int8" and array.ndim >= 2 and np.isfinite(array).all():
                out[key] = _quantize(array)
                continue
            with np.errstate(over="ignore"):
                half = array.astype(np.float16)
            if not np.any(np.isfinite(array) & ~np.isfinite(half)):
                array = half
        out[key] = array
    return out


def _quantize(w):
    import numpy as np
    rows = w.reshape(len(w), -1).astype(np.float64)
    scale = np.abs(rows).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    codes = np.clip(np.rint(rows / scale[:, None]), -127, 127).astype(np.int8)
    return {"int8": codes.reshape(w.shape), "scale": scale}


def expand_state(state, where) -> dict:
    """A shipped ``state`` as arrays ``load_state_dict`` takes (int8 codes times their
    scales); anything else in it is a :class:`PretrainedError` naming ``where``."""
    import numpy as np
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            codes, scale = value.get("int8"), value.get("scale")
            if not (isinstance(codes, np.ndarray) and codes.dtype == np.int8 and codes.ndim
                    and isinstance(scale, np.ndarray) and scale.shape == codes.shape[:1]):
                raise PretrainedError(f"{where}: the int8 weights of {key!r} are malformed")
            value = codes.astype(np.float32) * scale.astype(np.float32).reshape(
                (-1,) + (1,) * (codes.ndim - 1))
        elif not isinstance(value, np.ndarray):
            raise PretrainedError(f"{where}: the weights of {key!r} are a "
                                  f"{type(value).__name__}, not an array")
        out[key] = value
    return out


def export(run_dir, name: str, *, command: str | None = None, dtype: str = "float16",
           allow_large: bool = False, evaluate: bool = True, seed: int = 0,
           num_examples: int | None = None, num_samples: int | None = None,
           sampler: str | None = None, sampler_steps: int | None = None, device: str = "cpu",
           directory=None, log=None) -> dict:
    """Ship run ``run_dir`` as pretrained model ``name``: write ``NAME.npz`` and add (or
    replace) its manifest entry; return the entry.

    The weights are those ``nanogen sample`` / ``eval`` use (the EMA where the run kept one),
    cut to the model's inference state and stored as ``dtype``.  Nothing is written until the
    shipped weights have been loaded back from the bytes about to be written and evaluated:
    the ``check`` re-score always, and, unless ``evaluate`` is False, the full evaluation with
    ``seed``, ``num_examples``, ``num_samples`` and the sampler options (as ``nanogen eval``
    takes them) on ``device``, recorded as the entry's ``eval`` (the check always runs on the
    CPU, where the tests repeat it).  ``command`` defaults to the ``nanogen
    train`` command rebuilt from the run's config; a run whose config no command line writes
    (trained from Python, stopped before its last step) needs it given.  Above
    :data:`MAX_BYTES` it refuses unless ``allow_large``.  ``log`` (a callable) hears progress.
    """
    from .. import cli
    from ..serialization import atomic_write, save
    log = log or (lambda message: None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise PretrainedError(f"--name {name!r}: use 1 to 64 lowercase letters, digits, '.', "
                              f"'_' or '-', starting with a letter or digit (it names the file)")
    directory = pretrained_dir(directory)
    if not directory.is_dir():
        raise PretrainedError(f"{directory}: no such pretrained directory")
    manifest = read_manifest(directory, missing_ok=True)
    model, config, checkpoint = cli.load_run(run_dir, device="cpu")
    if str(config.get("dataset", "")).startswith("folder:"):
        raise PretrainedError(f"{run_dir}: trained on {config['dataset']}, a folder on this "
                              f"machine only; pretrained entries are re-scored on data every "
                              f"install has (use the run directory itself: nanogen sample "
                              f"{run_dir})")
    step = int(checkpoint["step"])
    if command is None:
        command = cli.training_command(config) if config.get("steps") == step else None
        if command is None:
            why = (f"it stopped at step {step:,} of {config.get('steps'):,}"
                   if _is_count(config.get("steps")) and config["steps"] != step else
                   "its config.json holds settings no `nanogen train` command line writes")
            raise PretrainedError(f"{run_dir}: cannot rebuild the command that trained it ({why}); "
                                  f"pass it as --command \"nanogen train ...\"")
    state = compact_state(model.inference_state_dict(), dtype)
    buffer = io.BytesIO()
    save({"format": FORMAT, "version": VERSION, "model": config["model"], "state": state},
         buffer, compress=True)
    data = buffer.getvalue()
    if len(data) > MAX_BYTES and not allow_large:
        raise PretrainedError(f"{name}: the {dtype} weights take {format_bytes(len(data))}, over "
                              f"the {format_bytes(MAX_BYTES)} budget per model (pass "
                              f"--allow-large to ship them anyway)")
    config = dict(config, device="cpu")
    shipped = _model_from_bytes(data, config, "cpu", where=f"the weights of {name!r}")
    log(f"exporting {run_dir} as pretrained:{name} ({format_bytes(len(data))}); the check "
        f"re-score on {CHECK_EXAMPLES} test examples")
    check_samples = CHECK_SAMPLES if cli.resolve_num_samples(None, shipped, config) else 0
    check_options = {key: value for key, value in CHECK_AIS.items() if hasattr(shipped, key)}
    with model_options(shipped, check_options):
        check = _measure(cli, shipped, config, seed=0, num_examples=CHECK_EXAMPLES,
                         num_samples=check_samples, probe=False)
    if check_options:
        check["model_options"] = check_options
    full = None
    if evaluate:
        log(f"evaluating the shipped weights ({'all' if num_examples is None else num_examples}"
            f" test examples, seed {seed}) as `nanogen eval {PREFIX}{name}` will")
        on_device = shipped if device == "cpu" else _model_from_bytes(
            data, config, device, where=f"the weights of {name!r}")
        full = _measure(cli, on_device, dict(config, device=device), seed=seed,
                        num_examples=num_examples, num_samples=num_samples, sampler=sampler,
                        sampler_steps=sampler_steps)
    entry = {"name": name, "model": config["model"], "config": config, "command": command,
             "training": {"dataset": config["dataset"], "steps": step,
                          "batch_size": config.get("batch_size"),
                          "train_seconds": round(float(checkpoint["seconds"]), 1)},
             "eval": full, "check": check, "file": f"{name}.npz", "bytes": len(data),
             "sha256": hashlib.sha256(data).hexdigest(), "dtype": dtype,
             "parameters": sum(p.numel() for key, p in model.named_parameters() if key in state)}
    atomic_write(directory / entry["file"], lambda f: f.write(data))
    manifest["models"] = sorted([e for e in manifest["models"] if e["name"] != name] + [entry],
                                key=lambda e: e["name"])
    _check_manifest(manifest, directory / MANIFEST_NAME)
    text = json.dumps(manifest, indent=2) + "\n"
    atomic_write(directory / MANIFEST_NAME, lambda f: f.write(text.encode("utf-8")))
    return entry


@contextlib.contextmanager
def model_options(model, options: dict):
    """``model``'s attributes set to ``options`` inside the block, and put back after (a
    check's short AIS: ``{"ais_runs": 10, ...}``)."""
    before = {key: getattr(model, key) for key in options}
    for key, value in options.items():
        setattr(model, key, value)
    try:
        yield model
    finally:
        for key, value in before.items():
            setattr(model, key, value)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _measure(cli, model, config, *, seed, num_examples, num_samples, sampler=None,
             sampler_steps=None, probe=None) -> dict:
    """``nanogen eval``'s metrics with these settings, and the settings that replay them (the
    check leaves out the linear probe: it fits on every training image, and the full
    evaluation records its accuracy)."""
    options = cli.sampler_options(model, sampler, sampler_steps)
    start = time.perf_counter()
    metrics = cli.evaluate_model(model, config, seed=seed, num_examples=num_examples,
                                 num_samples=num_samples, options=options, probe=probe)
    return {"seed": seed, "num_examples": num_examples,
            "num_samples": cli.resolve_num_samples(num_samples, model, config),
            "sampler": options or None, "probe": "probe_accuracy" in metrics, "metrics": metrics,
            "eval_seconds": round(time.perf_counter() - start, 1)}


# -- describing entries --------------------------------------------------------------------------
def headline(entry) -> str:
    """The entry's main figure in a few words: ``"fid 63.2 (1,000 samples)"``."""
    evaluation = entry.get("eval")
    if not evaluation:
        return "(not evaluated)"
    metrics = evaluation["metrics"]
    for key in HEADLINE_METRICS:
        if key in metrics:
            if key == "modes_covered":
                return (f"modes {metrics[key]}/{metrics.get('num_modes', '?')} "
                        f"({metrics.get('num_samples', 0):,} samples)")
            count = (f"{metrics.get('num_samples', 0):,} samples" if key == "fid" else
                     f"{metrics.get('num_examples', 0):,} test examples")
            return f"{key} {metrics[key]:.4g} ({count})"
    return "(no metric)"


def format_bytes(n: int) -> str:
    """``"432.1 KB"``, ``"1.52 MB"`` (powers of 1,000, as the 2 MB budget)."""
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"
