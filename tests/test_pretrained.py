"""Pretrained weights: every shipped entry, and the mechanism that ships them, end to end.

Two halves.  The first is parametrised over the real manifest in ``nanogen/pretrained/``, so
every model that ships is checked automatically: it loads, samples on the CPU, re-scores on its
small fixed subset to the value the manifest records, is refused when corrupt or truncated, and
the folder holds exactly the files the manifest lists.  The second trains tiny models for a few
steps, exports them into a temporary pretrained folder (``NANOGEN_PRETRAINED_DIR``) and drives
``nanogen export``, ``sample pretrained:NAME``, ``eval pretrained:NAME``, ``list --pretrained``
and ``ng.load_pretrained`` through their successes and every refusal.
"""
import hashlib
import json
import shlex
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nanogen as ng
from nanogen import cli, pretrained
from nanogen.pretrained import PretrainedError

from .test_cli import assert_one_line_error, run_cli

SHIPPED_DIR = Path(pretrained.__file__).parent
SHIPPED = pretrained.entries(SHIPPED_DIR)
# the check re-score runs the same arithmetic on the same CPU; BLAS may split float sums
# differently with another thread count, which moves a metric in its 6th-7th digit
RESCORE_RTOL = 1e-4


def rescore(model, entry):
    """The entry's ``check`` evaluation again, with the settings it records."""
    check = entry["check"]
    with pretrained.model_options(model, check.get("model_options", {})):
        return cli.evaluate_model(model, dict(entry["config"], device="cpu"),
                                  seed=check["seed"], num_examples=check["num_examples"],
                                  num_samples=check["num_samples"],
                                  options=check["sampler"] or {},
                                  probe=check.get("probe", False))


def assert_same_metrics(got, recorded, rtol=RESCORE_RTOL):
    """Every recorded metric comes back, equal (floats to ``rtol``); a metric added to
    ``nanogen eval`` after the export (precision and recall, say) may come back beside them."""
    missing = set(recorded) - set(got)
    assert not missing, f"recorded metrics not reported any more: {sorted(missing)}"
    for key, value in recorded.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=rtol, abs=1e-9), key
        else:
            assert got[key] == value, key


def damaged_copy(directory, name, tmp_path, damage):
    """A copy of ``directory`` whose weights file of ``name`` is truncated or has a byte
    flipped in its middle (inside a deflated tensor)."""
    copy = tmp_path / f"damaged-{damage}"
    shutil.copytree(directory, copy, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    path = copy / f"{name}.npz"
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    else:
        data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    return copy


# -- every shipped entry ---------------------------------------------------------------------------
def test_the_shipped_folder_holds_exactly_the_files_its_manifest_lists():
    listed = {entry["file"] for entry in SHIPPED}
    weights = {p.name for p in SHIPPED_DIR.glob("*.npz")}
    assert weights == listed, (f"files without an entry: {sorted(weights - listed)}; entries "
                               f"without a file: {sorted(listed - weights)}")
    others = {p.name for p in SHIPPED_DIR.iterdir()} - weights
    assert others <= {"manifest.json", "__init__.py", "__pycache__"}, others
    for entry in SHIPPED:
        data = (SHIPPED_DIR / entry["file"]).read_bytes()
        assert len(data) == entry["bytes"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("entry", SHIPPED, ids=[e["name"] for e in SHIPPED])
def test_a_shipped_model_publishes_its_figure_and_fits_the_budget(entry):
    assert entry["bytes"] <= pretrained.MAX_BYTES, pretrained.format_bytes(entry["bytes"])
    assert entry["eval"] is not None and entry["eval"]["metrics"], "ship the measured figure"
    assert pretrained.headline(entry) != "(no metric)"
    assert entry["command"].startswith("nanogen train ")
    assert entry["training"]["steps"] >= 1 and entry["dtype"] in pretrained.DTYPES


@pytest.mark.parametrize("entry", SHIPPED, ids=[e["name"] for e in SHIPPED])
def test_a_shipped_model_loads_samples_and_rescores_to_its_recorded_value(entry):
    model = ng.load_pretrained(entry["name"], directory=SHIPPED_DIR)
    assert not model.training
    if model.can_sample:                                         # not a classifier (the ladder)
        with ng.random.fork_rng(0):
            samples = cli.draw_samples(model, 2, cli.sampler_options(model))
        assert samples.shape[0] == 2 and np.isfinite(samples).all()
        if len(samples.shape) == 4:                              # images, in [0, 1]
            assert samples.min() >= 0.0 and samples.max() <= 1.0
    assert_same_metrics(rescore(model, entry), entry["check"]["metrics"])


@pytest.mark.parametrize("damage", ["corrupted", "truncated"])
@pytest.mark.parametrize("entry", SHIPPED, ids=[e["name"] for e in SHIPPED])
def test_a_damaged_shipped_file_is_refused_with_the_checksum_error(entry, damage, tmp_path):
    copy = damaged_copy(SHIPPED_DIR, entry["name"], tmp_path, damage)
    with pytest.raises(PretrainedError, match="checksum mismatch"):
        ng.load_pretrained(entry["name"], directory=copy)


def test_the_wheel_ships_the_manifest_and_every_weights_file(tmp_path):
    """setup.py's package_data: the wheel (what `pip install .` installs) holds every file.
    Built from a copy of what setup.py reads, so the checkout gets no build/ folder."""
    import subprocess
    import sys
    root, source = Path(__file__).resolve().parent.parent, tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(root / name, source / name)
    for name in ("nanogen", "kernels"):
        shutil.copytree(root / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", ".*"))
    (source / "nanogen" / "pretrained" / "probe.npz").write_bytes(b"a weights file to come")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
                            str(source)], capture_output=True, text=True, timeout=300,
                           cwd=tmp_path)
    if build.returncode and "bdist_wheel" in build.stderr:
        pytest.skip("this setuptools builds no wheels without the wheel package")
    assert build.returncode == 0, build.stderr[-2000:]
    wheel, = (tmp_path / "dist").glob("nanogen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "nanogen/pretrained/manifest.json" in names
    assert {f"nanogen/pretrained/{e['file']}" for e in SHIPPED} <= names
    assert "nanogen/pretrained/probe.npz" in names             # any weights file added later
    assert "nanogen/metrics/weights/lenet_mnist5k.npz" in names


# -- the mechanism, on tiny models ----------------------------------------------------------------
TINY_VAE = ["vae", "--steps", 3, "--batch-size", 8, "--arg", "latent_dim=3",
            "--arg", "channels=[4,8]", "--ema-decay", 0.5, "--lr", 2e-3]
TINY_DCGAN = ["dcgan", "--steps", 2, "--batch-size", 8, "--arg", "channels=[4,8]",
              "--arg", "latent_dim=8"]


def train_tiny(out, argv):
    status, _, err = run_cli("train", *argv, "--no-progress", "--sample-every", 100, "--out", out)
    assert status == 0, err
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {"vae": train_tiny(root / "vae", TINY_VAE),
            "dcgan": train_tiny(root / "dcgan", TINY_DCGAN)}


@pytest.fixture()
def shelf(tmp_path, monkeypatch):
    """An empty pretrained folder that the command line and ng.load_pretrained use."""
    folder = tmp_path / "pretrained"
    folder.mkdir()
    monkeypatch.setenv(pretrained.ENV_VAR, str(folder))
    monkeypatch.chdir(tmp_path)                      # runs/pretrained/NAME lands in tmp_path
    return folder


def export(run, name, *argv):
    status, out, err = run_cli("export", run, "--name", name, *argv)
    assert status == 0, err
    return json.loads(out)


@pytest.fixture()
def shipped_vae(runs, shelf):
    return export(runs["vae"], "tiny-vae", "--num-examples", 30)


def test_export_writes_the_weights_file_and_its_manifest_entry(runs, shelf, shipped_vae):
    entry = shipped_vae
    run_config = json.loads((runs["vae"] / "config.json").read_text())
    checkpoint = ng.load(runs["vae"] / "checkpoint.npz")
    manifest = json.loads((shelf / "manifest.json").read_text())
    assert manifest["models"] == [entry]
    assert entry["name"] == "tiny-vae" and entry["model"] == "vae"
    assert entry["config"] == run_config
    assert entry["training"] == {"dataset": "mnist5k", "steps": 3, "batch_size": 8,
                                 "train_seconds": round(float(checkpoint["seconds"]), 1)}
    data = (shelf / "tiny-vae.npz").read_bytes()
    assert entry["file"] == "tiny-vae.npz" and entry["bytes"] == len(data)
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert {p.name for p in shelf.iterdir()} == {"manifest.json", "tiny-vae.npz"}
    # what sample and eval use, the average of the weights, stored as float16
    saved = ng.load(shelf / "tiny-vae.npz")
    assert saved["format"] == "nanogen-pretrained" and saved["model"] == "vae"
    model, _, _ = cli.load_run(runs["vae"])
    state = model.state_dict()
    assert list(saved["state"]) == list(state)
    for key, value in saved["state"].items():
        assert value.dtype == np.float16
        np.testing.assert_array_equal(value, state[key].numpy().astype(np.float16))
    ema = checkpoint["ema"]["shadow_params"][0].numpy()
    np.testing.assert_array_equal(saved["state"][next(iter(state))], ema.astype(np.float16))
    assert entry["parameters"] == sum(p.numel() for p in model.parameters())
    # the figure, measured on the shipped weights, and the check
    assert entry["eval"]["num_examples"] == 30 and entry["eval"]["seed"] == 0
    assert entry["eval"]["metrics"]["num_examples"] == 30
    assert entry["check"]["num_examples"] == pretrained.CHECK_EXAMPLES
    assert np.isfinite(entry["eval"]["metrics"]["neg_elbo_nats"])


def test_the_rebuilt_training_command_writes_the_same_config(runs, shipped_vae):
    command = shipped_vae["command"]
    assert command == ("nanogen train vae --steps 3 --batch-size 8 --lr 0.002 --ema-decay 0.5 "
                       "--arg latent_dim=3 --arg 'channels=[4,8]'")
    argv = shlex.split(command)[1:]
    args = cli.make_parser().parse_args(argv)
    again = cli._fresh_config(args, ng.models.get_model_spec("vae"))
    assert again == json.loads((runs["vae"] / "config.json").read_text())


def test_sample_eval_and_list_work_from_the_shipped_weights_alone(shipped_vae, tmp_path):
    status, out, err = run_cli("list", "--pretrained")
    assert status == 0, err
    header, row = out.splitlines()
    assert header.split() == ["name", "model", "metric", "size"]
    assert row.split()[:3] == ["tiny-vae", "vae", "iwae_nll_nats"]
    assert pretrained.format_bytes(shipped_vae["bytes"]) in row and "30 test examples" in row

    status, _, err = run_cli("sample", "pretrained:tiny-vae", "--n", 4, "--seed", 1)
    assert status == 0, err
    grid = tmp_path / "runs" / "pretrained" / "tiny-vae" / "sample.png"
    with Image.open(grid) as im:
        assert im.size == (2 + 2 * 30, 2 + 2 * 30)          # 2 x 2 digits, 2-pixel padding
        first = np.asarray(im)
    status, _, err = run_cli("sample", "pretrained:tiny-vae", "--n", 4, "--seed", 1,
                             "--out", tmp_path / "again.png")
    assert status == 0, err
    with Image.open(tmp_path / "again.png") as im:
        np.testing.assert_array_equal(np.asarray(im), first)

    # eval replays the recorded settings (30 examples, seed 0) and reproduces the figure
    status, out, err = run_cli("eval", "pretrained:tiny-vae")
    assert status == 0, err
    report = json.loads(out)
    assert report["pretrained"] == "tiny-vae" and report["step"] == 3 and report["seed"] == 0
    measured = {k: report[k] for k in shipped_vae["eval"]["metrics"]}
    assert_same_metrics(measured, shipped_vae["eval"]["metrics"], rtol=1e-12)
    assert json.loads((grid.parent / "metrics.json").read_text()) == report
    assert (grid.parent / "reconstructions.png").is_file()
    status, out, err = run_cli("eval", "pretrained:tiny-vae", "--num-examples", 10)
    assert status == 0, err
    assert json.loads(out)["num_examples"] == 10


def test_load_pretrained_returns_a_model_ready_to_sample(shipped_vae):
    model = ng.load_pretrained("tiny-vae")
    assert type(model).__name__ == "VAE" and not model.training
    assert model.latent_dim == 3
    samples = model.sample(3)
    assert tuple(samples.shape) == (3, 1, 28, 28)
    assert_same_metrics(rescore(model, shipped_vae), shipped_vae["check"]["metrics"], 1e-12)


@pytest.mark.parametrize("damage", ["corrupted", "truncated"])
def test_a_damaged_file_is_refused_with_one_line(shipped_vae, shelf, tmp_path, monkeypatch,
                                                 damage):
    copy = damaged_copy(shelf, "tiny-vae", tmp_path, damage)
    monkeypatch.setenv(pretrained.ENV_VAR, str(copy))
    for command in ("sample", "eval"):
        assert_one_line_error(*run_cli(command, "pretrained:tiny-vae")[::2],
                              "tiny-vae.npz", "checksum mismatch", "corrupt or truncated")
    with pytest.raises(PretrainedError, match="checksum mismatch"):
        ng.load_pretrained("tiny-vae")


def test_a_missing_file_an_unknown_name_and_a_broken_manifest_are_one_line(shipped_vae, shelf):
    assert_one_line_error(*run_cli("sample", "pretrained:tiny-vea")[::2],
                          "unknown pretrained model 'tiny-vea'", "did you mean 'tiny-vae'")
    with pytest.raises(PretrainedError, match="unknown pretrained model"):
        ng.load_pretrained("nope")
    (shelf / "tiny-vae.npz").unlink()
    assert_one_line_error(*run_cli("eval", "pretrained:tiny-vae")[::2], "missing",
                          "tiny-vae.npz")
    (shelf / "manifest.json").write_text('{"format": "nanogen-pretrained-manifest", '
                                         '"version": 1, "models": [{"name": "x"}]}')
    assert_one_line_error(*run_cli("list", "--pretrained")[::2], "corrupt manifest")
    (shelf / "manifest.json").write_text("{not json")
    assert_one_line_error(*run_cli("sample", "pretrained:tiny-vae")[::2], "corrupt manifest")


def test_an_empty_shelf_says_so(shelf):
    status, out, _ = run_cli("list", "--pretrained")
    assert status == 0 and "no pretrained models" in out          # no manifest yet
    (shelf / "manifest.json").write_text(
        '{"format": "nanogen-pretrained-manifest", "version": 1, "models": []}')
    assert_one_line_error(*run_cli("sample", "pretrained:dcgan")[::2], "none ship")


def test_a_gan_ships_its_generator_only(runs, shelf):
    entry = export(runs["dcgan"], "tiny-dcgan", "--num-examples", 10, "--num-samples", 12)
    saved = ng.load(shelf / "tiny-dcgan.npz")["state"]
    assert saved and all(key.startswith("generator.") for key in saved)
    integers = [key for key, value in saved.items() if value.dtype.kind in "iub"]
    assert integers and all(saved[k].dtype == np.int64 for k in integers)  # BN's counters
    model, _, _ = cli.load_run(runs["dcgan"])
    assert entry["parameters"] == sum(p.numel() for p in model.generator.parameters())
    assert entry["eval"]["metrics"]["num_samples"] == 12
    assert entry["check"]["num_samples"] == pretrained.CHECK_SAMPLES
    shipped = ng.load_pretrained("tiny-dcgan")
    with ng.random.fork_rng(5):
        ours = shipped.sample(4).numpy()
    with ng.random.fork_rng(5):
        theirs = model.sample(4).numpy()
    np.testing.assert_allclose(ours, theirs, atol=0.02)    # float16 weights, same images
    status, out, err = run_cli("eval", "pretrained:tiny-dcgan")
    assert status == 0, err
    assert json.loads(out)["fid"] == entry["eval"]["metrics"]["fid"]
    assert_same_metrics(rescore(shipped, entry), entry["check"]["metrics"], 1e-12)


def test_an_energy_models_check_records_its_short_ais_and_rescores_with_it(tmp_path, shelf):
    run = train_tiny(tmp_path / "rbm", ["rbm", "--steps", 2, "--batch-size", 8,
                                        "--arg", "num_hidden=30", "--arg", "sample_steps=2",
                                        "--arg", "ais_temperatures=50"])
    entry = export(run, "tiny-rbm", "--num-examples", 10)
    check = entry["check"]
    assert check["model_options"] == pretrained.CHECK_AIS
    assert (check["metrics"]["ais_runs"], check["metrics"]["ais_temperatures"]) == (10, 100)
    # the full evaluation used the model's own settings, which the check left in place
    assert entry["eval"]["metrics"]["ais_temperatures"] == 50
    assert entry["eval"]["metrics"]["ais_runs"] == 100
    shipped = ng.load_pretrained("tiny-rbm")
    assert (shipped.ais_runs, shipped.ais_temperatures) == (100, 50)
    assert_same_metrics(rescore(shipped, entry), check["metrics"], 1e-12)
    assert (shipped.ais_runs, shipped.ais_temperatures) == (100, 50)


def test_export_again_replaces_the_entry_and_float32_is_lossless(runs, shelf, shipped_vae):
    entry = export(runs["vae"], "tiny-vae", "--dtype", "float32", "--no-eval")
    assert entry["eval"] is None and entry["dtype"] == "float32" and entry["check"]["metrics"]
    manifest = json.loads((shelf / "manifest.json").read_text())
    assert [e["name"] for e in manifest["models"]] == ["tiny-vae"]
    assert entry["bytes"] > shipped_vae["bytes"]
    model, _, _ = cli.load_run(runs["vae"])
    for key, value in ng.load_pretrained("tiny-vae").state_dict().items():
        np.testing.assert_array_equal(value.numpy(), model.state_dict()[key].numpy())
    status, out, _ = run_cli("list", "--pretrained")
    assert "(not evaluated)" in out


def test_float16_keeps_out_of_range_tensors_and_integers_as_they_are():
    state = {"w": ng.tensor([0.5, -2.0]), "big": ng.tensor([1e6, 1.0]),
             "count": ng.tensor(7, dtype=ng.int64), "mask": ng.tensor([True, False])}
    out = pretrained.compact_state(state)
    assert out["w"].dtype == np.float16 and out["big"].dtype == np.float32
    assert out["count"].dtype == np.int64 and out["count"] == 7
    assert out["mask"].dtype == np.bool_
    with pytest.raises(PretrainedError, match="dtype"):
        pretrained.compact_state(state, "bfloat16")


def test_int8_stores_each_row_to_within_half_its_step():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 3, 2, 2)).astype(np.float32) * np.arange(1, 7)[:, None, None,
                                                                                 None]
    w[2] = 0.0                                                  # an all-zero row
    state = {"w": ng.tensor(w), "b": ng.tensor(np.linspace(-1, 1, 6, dtype=np.float32)),
             "count": ng.tensor(3, dtype=ng.int64)}
    out = pretrained.compact_state(state, "int8")
    codes, scale = out["w"]["int8"], out["w"]["scale"]
    assert codes.dtype == np.int8 and scale.shape == (6,) and scale.dtype == np.float32
    peak = np.abs(w).reshape(6, -1).max(axis=1)
    np.testing.assert_allclose(scale, np.where(peak > 0, peak / 127, 1.0), rtol=1e-6)
    assert np.abs(codes).max() == 127
    back = pretrained.expand_state(out, "test")
    step = scale.reshape(6, 1, 1, 1)
    assert np.all(np.abs(back["w"] - w) <= step / 2 * (1 + 1e-6))
    assert np.all(back["w"][2] == 0)
    assert out["b"].dtype == np.float16 and out["count"].dtype == np.int64
    with pytest.raises(PretrainedError, match="malformed"):
        pretrained.expand_state({"w": {"int8": codes, "scale": scale[:3]}}, "test")


def test_an_int8_export_samples_like_the_run(runs, shelf):
    entry = export(runs["dcgan"], "tiny-dcgan-8", "--dtype", "int8", "--no-eval")
    f16 = export(runs["dcgan"], "tiny-dcgan-16", "--no-eval")
    assert entry["dtype"] == "int8" and entry["bytes"] < f16["bytes"]
    model, _, _ = cli.load_run(runs["dcgan"])
    with ng.random.fork_rng(5):
        ours = ng.load_pretrained("tiny-dcgan-8").sample(4).numpy()
    with ng.random.fork_rng(5):
        theirs = model.sample(4).numpy()
    np.testing.assert_allclose(ours, theirs, atol=0.05)
    assert np.abs(ours - theirs).max() > 0                      # it is lossy, a little


def test_export_refuses_weights_over_the_budget_unless_allowed(runs, shelf, monkeypatch):
    monkeypatch.setattr(pretrained, "MAX_BYTES", 1000)
    assert_one_line_error(*run_cli("export", runs["vae"], "--name", "big", "--no-eval")[::2],
                          "over the 1.0 KB budget", "--allow-large", "KB")
    assert not (shelf / "big.npz").exists() and not (shelf / "manifest.json").exists()
    assert export(runs["vae"], "big", "--no-eval", "--allow-large")["bytes"] > 1000


def test_export_needs_the_command_when_the_run_cannot_tell_it(runs, shelf, tmp_path):
    trained_from_python = tmp_path / "py-run"
    shutil.copytree(runs["vae"], trained_from_python)
    config = json.loads((runs["vae"] / "config.json").read_text())
    (trained_from_python / "config.json").write_text(
        json.dumps({"model": "vae", "dataset": "mnist5k", "model_kwargs":
                    config["model_kwargs"]}))
    assert_one_line_error(*run_cli("export", trained_from_python, "--name", "py",
                                   "--no-eval")[::2], "--command", "no `nanogen train`")
    entry = export(trained_from_python, "py", "--no-eval", "--command",
                   "python my_script.py --steps 3")
    assert entry["command"] == "python my_script.py --steps 3"

    stopped = tmp_path / "stopped"
    shutil.copytree(runs["vae"], stopped)
    (stopped / "config.json").write_text(json.dumps({**config, "steps": 300}))
    assert_one_line_error(*run_cli("export", stopped, "--name", "stopped", "--no-eval")[::2],
                          "stopped at step 3 of 300", "--command")


@pytest.mark.parametrize("argv, fragments", [
    (["--name", "Bad Name"], ["--name", "lowercase"]),
    (["--name", "../escape"], ["--name"]),
])
def test_export_refuses_bad_names(runs, shelf, argv, fragments):
    assert_one_line_error(*run_cli("export", runs["vae"], *argv, "--no-eval")[::2], *fragments)


def test_export_of_a_missing_run_is_one_line(shelf, tmp_path):
    assert_one_line_error(*run_cli("export", tmp_path / "nothing", "--name", "x")[::2],
                          "no such run directory")


def test_a_manifest_entry_cannot_name_a_file_outside_the_folder(shelf):
    entry = {key: None for key in pretrained._ENTRY_KEYS}
    (shelf / "manifest.json").write_text(json.dumps({
        "format": "nanogen-pretrained-manifest", "version": 1, "models": [{
            **entry, "name": "x", "model": "vae", "config": {}, "command": "c",
            "training": {}, "check": {}, "file": "../x.npz", "bytes": 1, "sha256": "0",
            "dtype": "float16", "parameters": 1}]}))
    with pytest.raises(PretrainedError, match="names the file"):
        ng.load_pretrained("x")


def test_cuda_without_a_gpu_is_one_line_for_pretrained_models(runs, shipped_vae, monkeypatch):
    monkeypatch.setattr(ng.cuda, "is_available", lambda: False)
    assert_one_line_error(*run_cli("sample", "pretrained:tiny-vae", "--device", "cuda")[::2],
                          "--device cuda", "no GPU")
    assert_one_line_error(*run_cli("export", runs["vae"], "--name", "x", "--device",
                                   "cuda")[::2], "--device cuda", "no GPU")


@pytest.mark.parametrize("argv, command", [
    ("vae", "vae --steps 3000"),
    ("gan --dataset ring8 --arg k=1 --seed 2", "gan --dataset ring8 --steps 4000 --seed 2 --arg k=1"),
    ("pixelcnn --steps 3000 --lr 2e-3 --lr-schedule cosine --arg kernel_size=5",
     "pixelcnn --steps 3000 --lr 0.002 --lr-schedule cosine --arg kernel_size=5"),
    ("ddpm --steps 4000 --arg channels=16 --arg num_res_blocks=1 --ema-decay 0.99",
     "ddpm --steps 4000 --ema-decay 0.99 --arg channels=16 --arg num_res_blocks=1"),
    ("vae --arg channels=[8,16]", "vae --steps 3000 --arg 'channels=[8,16]'"),
    ("gan --arg loss=minimax --lr 1e-3", "gan --steps 4000 --lr 0.001 --arg loss=minimax"),
])
def test_the_training_command_is_rebuilt_from_the_config_nanogen_train_writes(argv, command):
    from nanogen.data import dataset_info
    args = cli.make_parser().parse_args(["train"] + shlex.split(argv))
    spec = ng.models.get_model_spec(args.model)
    spec = spec.for_data(dataset_info(args.dataset or spec.dataset).kind)   # as cmd_train does
    config = json.loads(json.dumps(cli._fresh_config(args, spec)))        # as config.json holds it
    assert cli.training_command(config) == "nanogen train " + command
    no_average = cli.training_command({**config, "ema_decay": None})
    if spec.ema_decay is None:
        assert no_average == cli.training_command(config)
    else:
        assert no_average is None           # no flag turns off DDPM's default average
    assert cli.training_command({"model": config["model"], "dataset": config["dataset"]}) is None
