"""The one training loop every model shares: steps, logs, sample grids, checkpoints, resume.

The loop never looks inside a model (see :mod:`nanogen.models.base`)::

    optimizers = model.configure_optimizers(lr)              # {"model": Adam}, two for a GAN
    for step in start + 1 ... steps:
        logs = model.training_step(next_batch, optimizers)    # {"loss": 93.1, ...}
        every log_every steps:        append {"step", **logs, "seconds"} to log.jsonl
        every sample_every steps:     samples.png, samples/step_00000500.png, loss.png
                                      (no samples for a model with can_sample = False)
        every checkpoint_every steps: checkpoint.npz
    (and all three at the last step)

What a run directory holds::

    config.json          the run's settings (model, dataset, steps, batch size, lr, seed, ...)
    checkpoint.npz       weights, optimizer states, random state, data position, step, time
    log.jsonl            one line per logged step
    loss.png             the curves of log.jsonl
    samples.png          the latest grid of samples; samples/step_XXXXXXXX.png keeps each one

Exact resume.  A checkpoint holds everything that decides the next step: weights, optimizer
states, the global random generator (dropout masks, noise) and the loader's position (the
shuffled order of the epoch, and where in it).  Sample grids are drawn inside
``ng.random.fork_rng(sample_seed)`` in ``eval()`` mode, so drawing them neither consumes the
training stream nor leaves the model in evaluation mode.  Hence N steps in one go and N/2 steps,
a restart, and N/2 more end with bit-identical weights on the CPU.

Ctrl-C.  The first Ctrl-C lets the current step finish, then saves a checkpoint at that step and
raises ``KeyboardInterrupt``, so the checkpoint is always taken between steps; a second Ctrl-C
interrupts at once.  A ``KeyboardInterrupt`` raised during a step itself (the second Ctrl-C, or
one raised by the model) saves the random state and data position from before that step, and
the weights as they are (unchanged, unless the interruption came during the optimizer update).

``seconds`` counts the time spent in training steps (fetching the batch and updating), not in
drawing samples, plotting or saving, so that steps per second compare across runs.

Several ranks (``world``, :mod:`nanogen.distributed`).  Each rank runs this loop with a loader
sharded to its rows of every global batch; the steps run inside
:func:`nanogen.random.sharded`, the optimizers average the gradients over the ranks, and the
logged values are averaged too, so the run is the one process's at the same global batch.
Rank 0 alone writes the run directory (config, log, grids, checkpoints); a checkpoint rank 0
reads for ``resume`` is sent to the others, and an error it finds there stops every rank.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

from .. import random as ng_random
from ..functional import cat
from ..autograd import no_grad
from ..optim import ExponentialMovingAverage
from ..utils import display_scale, make_grid, plot_curves, save_image, scatter_points
from .checkpoint import (CHECKPOINT_NAME, CheckpointError, check_same_run, load_checkpoint,
                         restore_checkpoint, save_checkpoint)
from .log import TrainingLog, write_json

__all__ = ["train", "TrainResult", "RunFiles"]


@dataclass
class TrainResult:
    """What :func:`train` returns: the step reached, the last step's logged values, the
    cumulative training seconds and the run directory."""

    step: int
    logs: dict = field(default_factory=dict)
    seconds: float = 0.0
    out_dir: str = ""


@dataclass(frozen=True)
class RunFiles:
    """The paths of the files a run keeps in its directory ``root``."""

    root: str

    @property
    def checkpoint(self):
        return os.path.join(self.root, CHECKPOINT_NAME)

    @property
    def config(self):
        return os.path.join(self.root, "config.json")

    @property
    def log(self):
        return os.path.join(self.root, "log.jsonl")

    @property
    def loss_plot(self):
        return os.path.join(self.root, "loss.png")

    @property
    def samples(self):
        return os.path.join(self.root, "samples.png")

    @property
    def samples_dir(self):
        return os.path.join(self.root, "samples")

    def samples_at(self, step):
        return os.path.join(self.samples_dir, f"step_{step:08d}.png")


# ------------------------------------------------------------------------------ the loop
def train(model, loader, *, steps, out_dir, config, lr=1e-3, resume=False, sample_every=500,
          checkpoint_every=500, log_every=10, num_samples=64, sample_seed=0,
          progress=True, lr_schedule="constant", ema_decay=None, on_start=None,
          world=None) -> TrainResult:
    """Train ``model`` on batches from ``loader`` up to ``steps`` updates in total.

    ``model`` is a :class:`~nanogen.models.GenerativeModel`; ``loader`` yields ``(x, y)``
    batches, one epoch per ``iter(loader)``, and has ``state_dict()`` / ``load_state_dict()``
    (the position of the next batch), like :class:`nanogen.data.DataLoader`.  ``config`` is the
    JSON-able dict written to ``out_dir/config.json`` and into every checkpoint.

    ``resume=True`` continues the run saved in ``out_dir`` from its checkpoint's step;
    ``resume=False`` refuses a directory that already holds a checkpoint.  Returns a
    :class:`TrainResult`.  Problems with the directory or its checkpoint raise
    :class:`~nanogen.training.CheckpointError`.

    ``lr_schedule`` is ``"constant"`` or ``"cosine"`` (see :func:`learning_rate_factor`): a
    function of the step alone, so a resumed run follows the same schedule.

    ``ema_decay`` keeps an exponential moving average of the weights
    (:class:`nanogen.optim.ExponentialMovingAverage`), updated after every step, saved in the
    checkpoint (``"ema"``) and used for the sample grids; ``nanogen sample`` and ``nanogen eval``
    load the averaged weights.

    The grids come from ``model.sample(n, **model.preview_sampler())`` (a diffusion model
    previews with a few DDIM steps).

    ``on_start(step)``, if given, is called once the run directory is open and any checkpoint
    restored, before the first step: a caller that announces the run there says nothing about
    a run that cannot start.

    ``world`` (default :func:`nanogen.distributed.world`): the data-parallel ranks; with more
    than one, ``loader`` must be sharded to this rank (``DataLoader(..., shard=(rank, N))``)
    and only rank 0 writes files (see the module docstring).
    """
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}: use one of {LR_SCHEDULES}")
    _check_arguments(model, loader, steps, config, log_every=log_every,
                     sample_every=sample_every, checkpoint_every=checkpoint_every,
                     num_samples=num_samples)
    from .. import distributed
    world = world or distributed.world()
    main = world.rank == 0
    if world.size > 1 and getattr(loader, "shard", None) != (world.rank, world.size):
        raise ValueError(f"train: with {world.size} ranks the loader must be sharded to this "
                         f"rank: DataLoader(..., shard=({world.rank}, {world.size})), got "
                         f"shard={getattr(loader, 'shard', None)}")
    files = RunFiles(os.fspath(out_dir))
    checkpoint = distributed.agree(lambda: _open_run_directory(files, config, resume), world)
    optimizers = _configure_optimizers(model, lr)
    if world.size > 1:
        optimizers = {name: distributed.DistributedOptimizer(opt, world)
                      for name, opt in optimizers.items()}
    for opt in optimizers.values():
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
    # warmup: the decay is min(d, (1 + n) / (10 + n)) at update n, so the random initial weights
    # are forgotten within the first updates instead of lingering (0.999^3000 = 5% of them)
    ema = (ExponentialMovingAverage(model, decay=ema_decay, warmup=True)
           if ema_decay is not None else None)
    step, seconds = 0, 0.0
    if checkpoint is not None:
        step, seconds = restore_checkpoint(checkpoint, model, optimizers, loader,
                                           where=files.root, ema=ema)
        if step > steps:
            raise CheckpointError(f"{files.root}: the checkpoint is at step {step}, past the "
                                  f"requested {steps} steps: ask for more steps to go on")
    if on_start is not None:
        on_start(step)
    if main:
        write_json(files.config, config)
        # a fresh run starts a fresh log; a resumed one drops what was logged after its
        # checkpoint
        log = TrainingLog(files.log)
        log.keep_until(step)
    if step == steps:
        return TrainResult(step, _logged_values(log.last()) if main else {}, seconds,
                           files.root)

    def save(position):
        if main:
            save_checkpoint(files.checkpoint, step=step, seconds=seconds, config=config,
                            model=model, optimizers=optimizers, rng_state=position.rng,
                            loader_state=position.loader, ema=ema)

    name = str(config.get("model") or type(model).__name__)
    bar = _progress_bar(progress and main, total=steps, initial=step, desc=name)
    batches = _endless_batches(loader)
    logs = {}
    model.train()
    with _ctrl_c_between_steps(bar) as stop_requested, bar:
        position = None                  # set while a step is under way
        try:
            while step < steps:
                if stop_requested():
                    raise KeyboardInterrupt
                position = _Position.of(loader)
                _set_learning_rates(optimizers, learning_rate_factor(lr_schedule, step, steps))
                start = time.perf_counter()
                batch = _step_batch(batches, getattr(model, "batches_per_step", 1))
                with ng_random.sharded(world.rank, world.size):
                    logs = _as_log_values(model.training_step(batch, optimizers))
                logs = distributed.average_logs(logs, world)
                if ema is not None:
                    ema.update()
                seconds += time.perf_counter() - start
                step, position = step + 1, None
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(logs.items())[:1]},
                                refresh=False)
                bar.update(1)
                last = step == steps
                if main and (step % log_every == 0 or last):
                    log.append({"step": step, **logs, "seconds": round(seconds, 3)})
                if main and (step % sample_every == 0 or last):
                    if model.can_sample:     # a classifier draws none
                        with ema.average_parameters() if ema is not None else nullcontext():
                            _write_samples(model, num_samples, sample_seed, files, step)
                    _plot_losses(log, files, title=name)
                if step % checkpoint_every == 0 or last:
                    save(_Position.of(loader))
        except KeyboardInterrupt:
            save(position or _Position.of(loader))
            if progress:
                bar.write(f"interrupted: saved step {step} to {files.checkpoint} "
                          f"(go on with --resume)", file=sys.stderr)
            raise
    return TrainResult(step, logs, seconds, files.root)


# ------------------------------------------------------------------------------ pieces
LR_SCHEDULES = ("constant", "cosine")


def learning_rate_factor(schedule, step, steps):
    r"""The multiple of each group's initial lr used for update ``step`` (0-based) of ``steps``.

    ``"constant"``: 1.  ``"cosine"`` (Loshchilov & Hutter 2017, without restarts):
    :math:`\tfrac12 (1 + \cos(\pi t / T))`, from 1 at the first update down towards 0 at the last.
    """
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * step / steps))


def _set_learning_rates(optimizers, factor):
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * factor


def _check_arguments(model, loader, steps, config, **every):
    for method in ("configure_optimizers", "training_step", "sample", "train", "eval",
                   "state_dict", "load_state_dict"):
        if not callable(getattr(model, method, None)):
            raise TypeError(f"train: the model ({type(model).__name__}) has no {method}(); "
                            f"models derive from nanogen.models.GenerativeModel")
    for method in ("__iter__", "state_dict", "load_state_dict"):
        if not callable(getattr(loader, method, None)):
            raise TypeError(f"train: the loader ({type(loader).__name__}) has no {method}(); "
                            f"use nanogen.data.DataLoader, whose position can be saved")
    if not isinstance(config, dict):
        raise TypeError(f"train: config must be a dict, got {type(config).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"train: steps must be a non-negative integer, got {steps!r}")
    for name, value in every.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"train: {name} must be a positive integer, got {value!r}")


def _open_run_directory(files, config, resume):
    """Create the run directory, or check it for a resume; the checkpoint to resume, or None."""
    if os.path.exists(files.root) and not os.path.isdir(files.root):
        raise CheckpointError(f"{files.root} is a file, not a run directory: choose another "
                              f"--out")
    if resume:
        if not os.path.isdir(files.root):
            raise CheckpointError(f"cannot resume: {files.root} does not exist (train there "
                                  f"first: nanogen train MODEL --out {files.root})")
        checkpoint = load_checkpoint(files.root)
        check_same_run(checkpoint, config, where=files.root)
        return checkpoint
    if os.path.exists(files.checkpoint):
        raise CheckpointError(f"{files.root} already holds a run ({CHECKPOINT_NAME}): pass "
                              f"--resume to continue it, or choose another --out")
    os.makedirs(files.root, exist_ok=True)
    return None


def _configure_optimizers(model, lr):
    optimizers = model.configure_optimizers(lr)
    if not isinstance(optimizers, dict) or not optimizers:
        raise TypeError(f"{type(model).__name__}.configure_optimizers must return a non-empty "
                        f"dict of optimizers by name, got {optimizers!r}")
    for name, opt in optimizers.items():
        if not isinstance(name, str) or not callable(getattr(opt, "state_dict", None)):
            raise TypeError(f"{type(model).__name__}.configure_optimizers: entry {name!r} is "
                            f"not a named optimizer ({type(opt).__name__})")
    return optimizers


@dataclass(frozen=True)
class _Position:
    """Where the run stands between two steps: the random state and the next batch."""

    rng: object
    loader: dict

    @classmethod
    def of(cls, loader):
        return cls(ng_random.get_rng_state(), loader.state_dict())


def _step_batch(batches, k):
    """The data of one step: the next batch, or -- for a model with ``batches_per_step = k``
    (a GAN's k discriminator updates per generator update) -- the next k batches joined along
    the first axis, which the model splits again."""
    if k == 1:
        return next(batches)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"train: batches_per_step must be a positive int, got {k!r}")
    parts = [next(batches) for _ in range(k)]
    return tuple(cat([p[i] for p in parts]) for i in range(len(parts[0])))


def _endless_batches(loader):
    """Batches from ``loader``, epoch after epoch (each ``iter(loader)`` runs to the end of the
    current epoch; a loader restored mid-epoch finishes that epoch first)."""
    empty_epochs = 0
    while True:
        got_a_batch = False
        for batch in loader:
            got_a_batch = True
            yield batch
        # one empty pass can be a loader restored at the very end of an epoch; two cannot
        empty_epochs = 0 if got_a_batch else empty_epochs + 1
        if empty_epochs == 2:
            raise ValueError("train: the loader yields no batches (a dataset smaller than one "
                             "batch with drop_last=True, or a loader whose epoch never ends?)")


def _as_log_values(logs):
    """``training_step``'s dict as plain floats, with a clear error for anything else."""
    if not isinstance(logs, dict):
        raise TypeError(f"training_step must return a dict of floats (\"loss\" first), got a "
                        f"{type(logs).__name__}")
    values = {}
    for key, value in logs.items():
        if key in ("step", "seconds"):
            raise ValueError(f"training_step returned a value named {key!r}, a name the log "
                             f"keeps for itself")
        try:
            values[str(key)] = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"training_step returned {key!r} = {value!r}, not a number") \
                from None
    return values


def _logged_values(record):
    return {k: v for k, v in record.items() if k not in ("step", "seconds")}


def _draw_samples(model, num_samples, seed):
    """``model.sample(num_samples, **model.preview_sampler())`` in eval mode on a forked random
    stream (see module doc)."""
    preview = getattr(model, "preview_sampler", dict)()
    model.eval()
    try:
        with ng_random.fork_rng(seed), no_grad():
            return model.sample(num_samples, **preview)
    finally:
        model.train()


def _write_samples(model, num_samples, seed, files, step):
    """samples.png and samples/step_XXXXXXXX.png: a grid of images, or a scatter of 2-D points."""
    samples = _draw_samples(model, num_samples, seed)
    shape = tuple(samples.shape)
    os.makedirs(files.samples_dir, exist_ok=True)
    if len(shape) == 2 and shape[1] == 2:                         # a 2-D toy distribution
        for path in (files.samples_at(step), files.samples):
            scatter_points(samples, path, title=f"step {step}")
        return
    if len(shape) != 4:
        raise ValueError(f"{type(model).__name__}.sample({num_samples}) returned shape {shape}; "
                         f"expected images (n, C, H, W) or 2-D points (n, 2)")
    grid = make_grid(samples, nrow=math.ceil(math.sqrt(shape[0])))     # a square-ish grid
    for path in (files.samples_at(step), files.samples):              # the grid as one image
        save_image(grid[None], path, nrow=1, padding=0, scale=display_scale(grid.shape[2]))


def _plot_losses(log, files, title):
    records = [{k: v for k, v in r.items() if k != "seconds"} for r in log.records()]
    if records:
        plot_curves(records, files.loss_plot, x="step", title=title)


def _progress_bar(enabled, **kwargs):
    from tqdm.auto import tqdm
    return tqdm(disable=not enabled, dynamic_ncols=True, **kwargs)


@contextmanager
def _ctrl_c_between_steps(bar):
    """Defer the first Ctrl-C to the end of the current step (see the module docstring).

    Yields a function telling whether a stop was asked for.  Only the main thread receives
    signals; elsewhere, or if SIGINT is not Python's default handler, nothing changes.
    """
    requested = []
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield lambda: False
        return

    def on_ctrl_c(signum, frame):
        if requested:
            raise KeyboardInterrupt          # the second Ctrl-C: stop now
        requested.append(True)
        if not bar.disable:
            bar.write("Ctrl-C: stopping after this step to save a checkpoint "
                      "(press again to stop at once)", file=sys.stderr)

    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
