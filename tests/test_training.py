"""The shared training loop: exact resume, atomic checkpoints, Ctrl-C, logs, pictures, errors.

The model is a tiny denoising autoencoder on 8x8 images whose training draws random numbers
(input noise and dropout masks) and uses two optimizers (Adam and SGD with momentum), so an
inexact resume -- a lost random state, a lost optimizer moment, a shifted batch -- shows up as
different weights.  The loader shuffles every epoch from (seed, epoch), like nanogen.data's.
"""
import json
import math
import os
import signal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import nanogen as ng
import nanogen.nn as nn
import nanogen.nn.functional as F
import nanogen.random as ng_random
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import GenerativeModel
from nanogen.optim import SGD, Adam
from nanogen.training import (CHECKPOINT_NAME, CheckpointError, TrainResult, load_checkpoint,
                              save_checkpoint, train)
from nanogen.training.log import TrainingLog
from nanogen.utils import make_grid, save_image
from nanogen.utils.plot import DPI, FIGSIZE

IMAGES = np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32)
CONFIG = {"model": "tiny", "dataset": "toy8x8", "batch_size": 8, "seed": 0}


class TinyModel(GenerativeModel):
    """x -> x + noise -> Linear -> ReLU -> Dropout -> Linear, trained to give back x."""

    def __init__(self, hidden=16):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.3))
        self.decoder = nn.Linear(hidden, 64)
        self.calls = 0              # training steps begun, for the tests that interrupt one
        self.interrupt_at = None    # raise KeyboardInterrupt at the start of this call
        self.ctrl_c_at = None       # send this process SIGINT during this call
        self.fail_at = None         # raise RuntimeError at the start of this call

    def loss(self, x, y=None):
        flat = x.reshape(x.shape[0], -1)
        noisy = flat + 0.1 * ng.randn(*flat.shape)
        loss = F.mse_loss(self.decoder(self.encoder(noisy)), flat)
        return loss, {"mse": float(loss.item())}

    def configure_optimizers(self, lr):
        return {"encoder": Adam(self.encoder.parameters(), lr=lr),
                "decoder": SGD(self.decoder.parameters(), lr=lr, momentum=0.9)}

    def training_step(self, batch, optimizers):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        if self.calls == self.fail_at:
            raise RuntimeError("the model crashed")
        if self.calls == self.ctrl_c_at:
            os.kill(os.getpid(), signal.SIGINT)
        loss, logs = self.loss(batch[0])
        for opt in optimizers.values():
            opt.zero_grad()
        loss.backward()
        for opt in optimizers.values():
            opt.step()
        return {"loss": float(loss.item()), **logs}

    def sample(self, n, y=None):
        return F.sigmoid(self.decoder(ng.randn(n, self.decoder.in_features))).reshape(n, 1, 8, 8)


class ShufflingLoader:
    """The loader duck type: iterating runs to the end of the current epoch; the state is the
    position of the next batch; each epoch's order is a permutation drawn from (seed, epoch)."""

    def __init__(self, images, batch_size, seed=0):
        self.images, self.batch_size, self.seed = images, batch_size, seed
        self.epoch, self.batch = 0, 0

    def __iter__(self):
        batches = len(self.images) // self.batch_size
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))
        while self.batch < batches:
            rows = order[self.batch * self.batch_size:(self.batch + 1) * self.batch_size]
            self.batch += 1
            yield ng.tensor(self.images[rows]), ng.tensor(rows)
        self.epoch, self.batch = self.epoch + 1, 0

    def state_dict(self):
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed}

    def load_state_dict(self, state):
        self.epoch, self.batch, self.seed = state["epoch"], state["batch"], state["seed"]


def make_model(init_seed=0, hidden=16, **misbehaviour):
    """A TinyModel initialised from ``init_seed``, as a new process would build it; the global
    generator is left where the initialisation leaves it."""
    ng.manual_seed(init_seed)
    model = TinyModel(hidden)
    model.__dict__.update(misbehaviour)
    return model


def shuffling_loader():
    return ShufflingLoader(IMAGES, batch_size=8, seed=3)


def nanogen_loader():
    return DataLoader(TensorDataset(IMAGES, np.arange(len(IMAGES))), batch_size=8, shuffle=True,
                      drop_last=True, seed=3)


def run(out_dir, steps, *, model=None, init_seed=0, resume=False, make_loader=shuffling_loader,
        **options):
    """Train a model (``make_model(init_seed)`` unless given: a resumed run must overwrite its
    weights) with a fresh loader at its start."""
    model = model if model is not None else make_model(init_seed)
    loader = make_loader()
    kwargs = dict(lr=0.01, sample_every=1000, checkpoint_every=1000, log_every=2, num_samples=16,
                  progress=False)
    kwargs.update(options)
    result = train(model, loader, steps=steps, out_dir=str(out_dir), config=CONFIG,
                   resume=resume, **kwargs)
    return model, result


def assert_identical(a, b, where="checkpoint"):
    """Equal all the way down; tensors and arrays bit for bit."""
    if isinstance(a, ng.Tensor):
        assert isinstance(b, ng.Tensor), where
        a, b = a.numpy(), b.numpy()
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_training_state(dir_a, dir_b):
    a, b = load_checkpoint(dir_a), load_checkpoint(dir_b)
    for key in ("step", "model", "optimizers", "rng", "loader"):
        assert_identical(a[key], b[key], key)


def records_without_time(out_dir):
    return [{k: v for k, v in r.items() if k != "seconds"}
            for r in TrainingLog(os.path.join(out_dir, "log.jsonl")).records()]


# ------------------------------------------------------------------------------ exact resume
@given(total=st.integers(2, 12), data=st.data())
def test_resume_is_bit_identical_to_an_unbroken_run(tmp_path_factory, total, data):
    split = data.draw(st.integers(1, total - 1), label="split")
    straight, broken = tmp_path_factory.mktemp("straight"), tmp_path_factory.mktemp("broken")
    model_a, _ = run(straight, total)
    run(broken, split)
    model_b, result = run(broken, total, init_seed=99, resume=True)
    assert result.step == total
    assert_same_training_state(straight, broken)
    for (name, p), (_, q) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert np.array_equal(p.numpy(), q.numpy()), name
    # the broken run also logged its last step, `split`; every other line is the same
    unbroken_log, broken_log = records_without_time(straight), records_without_time(broken)
    unbroken_steps = [r["step"] for r in unbroken_log]
    assert [r["step"] for r in broken_log] == sorted(set(unbroken_steps) | {split})
    assert [r for r in broken_log if r["step"] in unbroken_steps] == unbroken_log


@pytest.mark.parametrize("split", [5, 7])     # at the end of the first epoch, and inside one
def test_resume_with_nanogen_data_loader_across_epochs(tmp_path, split):
    run(tmp_path / "straight", 12, make_loader=nanogen_loader)
    run(tmp_path / "broken", split, make_loader=nanogen_loader)
    run(tmp_path / "broken", 12, init_seed=1, resume=True, make_loader=nanogen_loader)
    assert load_checkpoint(tmp_path / "broken")["loader"] == {"epoch": 2, "batch": 2, "seed": 3}
    assert_same_training_state(tmp_path / "straight", tmp_path / "broken")


def test_drawing_sample_grids_does_not_change_training(tmp_path):
    run(tmp_path / "rarely", 6, sample_every=1000)
    run(tmp_path / "often", 6, sample_every=1)
    assert len(os.listdir(tmp_path / "often" / "samples")) == 6
    assert_same_training_state(tmp_path / "rarely", tmp_path / "often")


def test_training_changes_the_weights_and_lowers_the_loss(tmp_path):
    ng.manual_seed(0)
    before = {k: v.numpy().copy() for k, v in TinyModel().state_dict().items()}
    model, result = run(tmp_path, 60, log_every=1)
    after = model.state_dict()
    assert all(not np.array_equal(before[k], after[k].numpy()) for k in before)
    losses = [r["loss"] for r in TrainingLog(tmp_path / "log.jsonl").records()]
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    assert model.training                                # sampling left it in training mode


def test_a_resumed_run_that_is_already_done_does_nothing(tmp_path):
    run(tmp_path, 4)
    before = load_checkpoint(tmp_path)
    model, result = run(tmp_path, 4, init_seed=5, resume=True)
    assert isinstance(result, TrainResult)
    assert result.step == 4 and set(result.logs) == {"loss", "mse"}
    assert result.seconds == before["seconds"]
    assert_identical(load_checkpoint(tmp_path)["model"], before["model"])


# ------------------------------------------------------------------------------ interruptions
def test_keyboard_interrupt_in_a_step_saves_the_last_finished_step(tmp_path):
    model = make_model(interrupt_at=4)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "broken", 7, model=model)
    assert load_checkpoint(tmp_path / "broken")["step"] == 3
    run(tmp_path / "straight", 7)
    run(tmp_path / "broken", 7, init_seed=1, resume=True)
    assert_same_training_state(tmp_path / "straight", tmp_path / "broken")


@pytest.fixture
def python_ctrl_c():
    """SIGINT handled as in an interactive Python: a process started in the background by a
    shell without job control inherits SIGINT *ignored*, and then the loop rightly leaves it
    alone -- so the test sets the default handler itself (and puts back what it found)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_lets_the_step_finish_then_saves_and_stops(tmp_path, python_ctrl_c):
    model = make_model(ctrl_c_at=4)      # SIGINT arrives in the middle of step 4
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "broken", 7, model=model)
    assert load_checkpoint(tmp_path / "broken")["step"] == 4
    assert model.calls == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    run(tmp_path / "straight", 7)
    run(tmp_path / "broken", 7, init_seed=1, resume=True)
    assert_same_training_state(tmp_path / "straight", tmp_path / "broken")


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    real_savez, calls = np.savez, []

    def savez_that_fails_the_second_time(file, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            file.write(b"PK\x03\x04" + bytes(200))         # part of an archive, then the crash
            raise OSError(28, "No space left on device")
        return real_savez(file, *args, **kwargs)

    monkeypatch.setattr(np, "savez", savez_that_fails_the_second_time)
    with pytest.raises(OSError, match="No space left"):
        run(tmp_path, 6, checkpoint_every=2)
    assert len(calls) == 2
    assert load_checkpoint(tmp_path)["step"] == 2
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT_NAME, "config.json", "log.jsonl"]


# ------------------------------------------------------------------------------ files
def test_the_run_directory_holds_config_log_samples_and_plots(tmp_path):
    out = tmp_path / "run"
    run(out, 7, log_every=3, sample_every=3, num_samples=16)
    assert json.loads((out / "config.json").read_text()) == CONFIG
    records = TrainingLog(out / "log.jsonl").records()
    assert [r["step"] for r in records] == [3, 6, 7]
    assert all(list(r) == ["step", "loss", "mse", "seconds"] for r in records)
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in records)
    assert records[0]["seconds"] <= records[1]["seconds"] <= records[2]["seconds"]
    assert sorted(os.listdir(out / "samples")) == \
        ["step_00000003.png", "step_00000006.png", "step_00000007.png"]
    # 16 samples of 8x8: a 4 x 4 grid of (8 + 2) + 2 = 42 pixels, enlarged 256 // 42 = 6 times
    with Image.open(out / "samples.png") as picture:
        assert (picture.format, picture.mode, picture.size) == ("PNG", "L", (252, 252))
        grid = np.asarray(picture)
    with Image.open(out / "loss.png") as picture:
        assert picture.format == "PNG"
        assert picture.size == (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)
    with Image.open(out / "samples" / "step_00000007.png") as picture:
        assert np.array_equal(np.asarray(picture), grid)


def test_the_progress_bar_counts_from_the_checkpoint_step_to_the_total(tmp_path, capsys):
    run(tmp_path, 2, progress=True)
    run(tmp_path, 5, progress=True, resume=True)
    err = capsys.readouterr().err
    assert "tiny:" in err and "2/2" in err and "5/5" in err and "loss=" in err
    assert "1/5" not in err                        # the resumed bar starts at step 2


def test_the_sample_grid_shows_the_model_sampling_in_eval_mode_with_sample_seed(tmp_path):
    model, _ = run(tmp_path, 3, num_samples=9, sample_seed=7)
    model.eval()
    with ng_random.fork_rng(7), ng.no_grad():
        expected = make_grid(model.sample(9), nrow=3)[None]
    save_image(expected, tmp_path / "expected.png", nrow=1, padding=0, scale=256 // 32)
    with Image.open(tmp_path / "samples.png") as got, \
            Image.open(tmp_path / "expected.png") as want:
        assert np.array_equal(np.asarray(got), np.asarray(want))


def test_resume_drops_log_lines_after_the_checkpoint(tmp_path):
    model = make_model(fail_at=8)        # a crash in step 8: checkpoint at 4, log up to 6
    with pytest.raises(RuntimeError, match="crashed"):
        run(tmp_path, 10, model=model, checkpoint_every=4)
    assert [r["step"] for r in TrainingLog(tmp_path / "log.jsonl").records()] == [2, 4, 6]
    run(tmp_path, 10, resume=True, init_seed=3)
    records = TrainingLog(tmp_path / "log.jsonl").records()
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10]
    seconds = [r["seconds"] for r in records]
    assert seconds == sorted(seconds)


def test_a_fresh_run_starts_a_fresh_log(tmp_path):
    (tmp_path / "log.jsonl").write_text('{"step": 50, "loss": 1.0}\n')
    run(tmp_path, 2, log_every=1)
    assert [r["step"] for r in TrainingLog(tmp_path / "log.jsonl").records()] == [1, 2]


def test_a_line_cut_short_by_a_crash_is_dropped_and_a_garbled_one_is_reported(tmp_path):
    log = TrainingLog(tmp_path / "log.jsonl")
    (tmp_path / "log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    assert log.records() == [{"step": 1, "loss": 2.0}]
    log.keep_until(5)
    assert (tmp_path / "log.jsonl").read_text() == '{"step": 1, "loss": 2.0}\n'
    (tmp_path / "log.jsonl").write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"log.jsonl, line 2"):
        log.records()


# ------------------------------------------------------------------------------ fork_rng
def test_fork_rng_reseeds_inside_and_restores_outside():
    ng.manual_seed(1)
    expected_after = ng.randn(5).numpy().copy()
    ng.manual_seed(5)
    expected_inside = ng.randn(5).numpy().copy()
    ng.manual_seed(1)
    with ng_random.fork_rng(5):
        inside = ng.randn(5).numpy().copy()
    assert np.array_equal(inside, expected_inside)
    assert np.array_equal(ng.randn(5).numpy(), expected_after)
    assert ng.initial_seed() == 1


def test_fork_rng_without_a_seed_continues_on_a_copy_and_restores_after_an_error():
    ng.manual_seed(2)
    expected = ng.randn(5).numpy().copy()
    ng.manual_seed(2)
    with pytest.raises(ZeroDivisionError):
        with ng_random.fork_rng():
            assert np.array_equal(ng.randn(5).numpy(), expected)
            1 / 0
    assert np.array_equal(ng.randn(5).numpy(), expected)


# ------------------------------------------------------------------------------ errors
def one_line(error):
    message = str(error.value)
    assert "\n" not in message
    return message


def test_an_existing_run_needs_resume(tmp_path):
    run(tmp_path, 2)
    with pytest.raises(CheckpointError, match="already holds a run") as e:
        run(tmp_path, 4)
    assert str(tmp_path) in one_line(e) and "--resume" in one_line(e)


def test_resume_without_a_checkpoint_names_the_directory(tmp_path):
    for out in (tmp_path, tmp_path / "missing"):
        with pytest.raises(CheckpointError) as e:
            run(out, 2, resume=True)
        assert str(out) in one_line(e)


@pytest.mark.parametrize("key", ["model", "dataset"])
def test_resume_refuses_another_model_or_dataset(tmp_path, key):
    run(tmp_path, 2)
    with pytest.raises(CheckpointError) as e:
        train(TinyModel(), ShufflingLoader(IMAGES, 8), steps=4, out_dir=str(tmp_path),
              config={**CONFIG, key: "other"}, resume=True, progress=False)
    assert key in one_line(e) and "'other'" in one_line(e) and repr(CONFIG[key]) in one_line(e)


def test_resume_refuses_weights_of_another_shape_and_a_finished_count(tmp_path):
    run(tmp_path, 4)
    with pytest.raises(CheckpointError, match="model weights") as e:
        run(tmp_path, 8, resume=True, model=make_model(hidden=5))
    assert "size mismatch" in one_line(e)
    with pytest.raises(CheckpointError, match="step 4, past the requested 2"):
        run(tmp_path, 2, resume=True)


def test_load_checkpoint_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint.npz") as e:
        load_checkpoint(tmp_path)
    assert f"--out {tmp_path}" in one_line(e)
    with pytest.raises(CheckpointError, match="no such file or directory"):
        load_checkpoint(tmp_path / "nowhere.npz")

    run(tmp_path / "good", 2)
    good = (tmp_path / "good" / CHECKPOINT_NAME).read_bytes()
    bad = tmp_path / "bad.npz"
    for content in (good[:len(good) // 2], b"not a zip archive at all" * 10, b""):
        bad.write_bytes(content)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(bad)
        assert str(bad) in one_line(e) and "not a readable checkpoint" in one_line(e)

    checkpoint = load_checkpoint(tmp_path / "good")
    wrong = [([1, 2], "holds a list"),
             ({**checkpoint, "format": "something else"}, "format tag 'something else'"),
             ({**checkpoint, "version": 2}, "newer nanogen"),
             ({k: v for k, v in checkpoint.items() if k not in ("rng", "loader")},
              "lacks 'rng', 'loader'"),
             ({**checkpoint, "step": "3"}, "'step' is a str")]
    for content, problem in wrong:
        ng.save(content, bad)
        with pytest.raises(CheckpointError, match=problem) as e:
            load_checkpoint(bad)
        assert str(bad) in one_line(e)


def test_save_checkpoint_round_trips_through_load_checkpoint(tmp_path):
    ng.manual_seed(0)
    model, loader = TinyModel(), ShufflingLoader(IMAGES, 8)
    optimizers = model.configure_optimizers(0.1)
    path = save_checkpoint(tmp_path, step=3, seconds=1.5, config=CONFIG, model=model,
                           optimizers=optimizers, rng_state=ng.get_rng_state(),
                           loader_state=loader.state_dict())
    assert path == os.path.join(tmp_path, CHECKPOINT_NAME)
    checkpoint = load_checkpoint(path)
    assert (checkpoint["step"], checkpoint["seconds"], checkpoint["config"]) == (3, 1.5, CONFIG)
    assert_identical(checkpoint["model"], model.state_dict())
    assert sorted(checkpoint["optimizers"]) == ["decoder", "encoder"]


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    cases = [(dict(steps=-1), ValueError, "steps"), (dict(log_every=0), ValueError, "log_every"),
             (dict(loader=[(1, 2)]), TypeError, "state_dict"),
             (dict(config=["model"]), TypeError, "config")]
    for change, error, word in cases:
        kwargs = dict(model=TinyModel(), loader=ShufflingLoader(IMAGES, 8), steps=2,
                      out_dir=str(out), config=CONFIG, progress=False)
        kwargs.update(change)
        with pytest.raises(error, match=word):
            train(**kwargs)
        assert not out.exists()


def test_a_loader_without_batches_is_reported(tmp_path):
    with pytest.raises(ValueError, match="yields no batches"):
        train(TinyModel(), ShufflingLoader(IMAGES[:4], batch_size=8), steps=2,
              out_dir=str(tmp_path), config=CONFIG, progress=False)


# ------------------------------------------------------------------------------ lr schedules
def test_cosine_schedule_sets_each_step_lr_and_resumes_exactly(tmp_path):
    from nanogen.training.loop import learning_rate_factor
    steps = 6
    seen = []

    class Recording(TinyModel):
        def training_step(self, batch, optimizers):
            seen.append(optimizers["encoder"].param_groups[0]["lr"])
            return super().training_step(batch, optimizers)

    ng.manual_seed(0)
    run(tmp_path / "straight", steps, model=Recording(16), lr_schedule="cosine")
    expected = [0.01 * 0.5 * (1 + math.cos(math.pi * t / steps)) for t in range(steps)]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert seen[0] == 0.01 and seen[-1] < 0.001 and seen == sorted(seen, reverse=True)
    assert learning_rate_factor("constant", 3, steps) == 1.0
    # stopped (Ctrl-C) after 2 of the 6 steps, then resumed: the schedule is a function of the
    # step and the total, so the resumed run takes the same steps
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "broken", steps, model=make_model(interrupt_at=3), lr_schedule="cosine")
    run(tmp_path / "broken", steps, init_seed=99, resume=True, lr_schedule="cosine")
    run(tmp_path / "straight2", steps, lr_schedule="cosine")
    assert_same_training_state(tmp_path / "straight2", tmp_path / "broken")
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'"):
        run(tmp_path / "bad", steps, lr_schedule="linear")


# ------------------------------------------------------------------------------ weight average
def test_weight_average_is_checkpointed_resumed_exactly_and_used_for_samples(tmp_path):
    from nanogen.optim import ExponentialMovingAverage
    steps = 6
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "broken", steps, model=make_model(interrupt_at=4), ema_decay=0.9)
    run(tmp_path / "broken", steps, init_seed=99, resume=True, ema_decay=0.9)

    class Recording(TinyModel):              # remembers the weights each sample grid used
        def sample(self, n, y=None):
            shown.append(self.decoder.weight.detach().numpy().copy())
            return super().sample(n, y)

    shown = []
    ng.manual_seed(0)
    model, _ = run(tmp_path / "straight", steps, model=Recording(16), ema_decay=0.9)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "broken")
    assert_same_training_state(tmp_path / "straight", tmp_path / "broken")
    assert_identical(a["ema"], b["ema"], "ema")
    assert a["ema"]["num_updates"] == steps
    # the grid was drawn with the average, which differs from the last iterate, and the
    # training weights were put back afterwards
    average = make_model(init_seed=5)
    ema = ExponentialMovingAverage(average, decay=0.9)
    ema.load_state_dict(a["ema"])
    ema.copy_to(average)
    assert np.array_equal(shown[-1], average.decoder.weight.detach().numpy())
    assert not np.array_equal(shown[-1], model.decoder.weight.detach().numpy())
    assert np.array_equal(model.decoder.weight.detach().numpy(),
                          a["model"]["decoder.weight"].numpy())
    # a run without an average cannot be resumed as one that keeps it
    run(tmp_path / "plain", 2)
    with pytest.raises(CheckpointError, match="holds no average"):
        run(tmp_path / "plain", 4, resume=True, ema_decay=0.9)


class RecordingModel(TinyModel):
    """A TinyModel that eats ``batches_per_step`` batches per step and records their rows."""

    batches_per_step = 3

    def __init__(self):
        super().__init__()
        self.rows_seen = []

    def training_step(self, batch, optimizers):
        self.rows_seen.append(batch[1].numpy().tolist())
        return super().training_step(batch, optimizers)


def test_a_model_with_k_batches_per_step_gets_k_consecutive_batches_joined(tmp_path):
    ng.manual_seed(0)
    model = RecordingModel()
    run(tmp_path / "k3", 4, model=model)
    # the same loader, read batch by batch: step s must see batches 3s, 3s+1, 3s+2 joined
    loader, batches = shuffling_loader(), []
    while len(batches) < 12:
        batches.extend(rows.numpy().tolist() for _, rows in loader)
    expected = [sum(batches[3 * s:3 * s + 3], []) for s in range(4)]
    assert model.rows_seen == expected
    assert all(len(rows) == 24 for rows in model.rows_seen)    # across an epoch boundary too


def test_resume_with_k_batches_per_step_is_bit_identical(tmp_path):
    ng.manual_seed(0)
    run(tmp_path / "straight", 4, model=RecordingModel())
    ng.manual_seed(0)
    run(tmp_path / "split", 2, model=RecordingModel())
    ng.manual_seed(0)
    run(tmp_path / "split", 4, model=RecordingModel(), resume=True)
    assert_same_training_state(tmp_path / "straight", tmp_path / "split")
