"""The ``nanogen`` command: every subcommand end to end, and every bad-input path.

Each error path must end with exactly one line on stderr, no traceback, and a non-zero status.
Training runs use a handful of steps of the smallest registered model so the module stays fast.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import nanogen as ng
from nanogen import cli

FAST_MODEL = "vae"     # the cheapest registered image model: a few steps take well under a second


def run_cli(*argv):
    """Run ``nanogen ARGV`` in-process; returns (status, stdout, stderr)."""
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main([str(a) for a in argv])
        except SystemExit as e:          # argparse usage errors
            status = e.code
    return status, out.getvalue(), err.getvalue()


def assert_one_line_error(status, stderr, *fragments):
    assert status not in (0, None), stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run directory, trained once for the module (6 steps, batch 16)."""
    out = tmp_path_factory.mktemp("run") / "vae"
    status, _, err = run_cli("train", FAST_MODEL, "--steps", 6, "--batch-size", 16,
                             "--sample-every", 3, "--no-progress", "--out", out)
    assert status == 0, err
    return out


# -- list ------------------------------------------------------------------------------------------
def test_list_names_every_model_and_dataset():
    from nanogen.data import DATASETS
    from nanogen.models import all_models
    status, out, _ = run_cli("list")
    assert status == 0
    lines = out.splitlines()
    for name, spec in all_models().items():
        assert any(line.split()[:1] == [name] and spec.summary in line for line in lines), name
    for name in DATASETS:
        assert any(line.split()[:1] == [name] for line in lines), name
    assert {"pixelcnn", "gated-pixelcnn", "vae", "beta-vae", "vae-2d"} <= set(all_models())
    assert "mnist5k" in DATASETS


# -- train / sample / eval --------------------------------------------------------------------------
def test_train_writes_the_run_directory(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["model"] == FAST_MODEL and config["dataset"] == "mnist5k"
    assert config["steps"] == 6 and config["batch_size"] == 16
    records = [json.loads(line) for line in (trained_run / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 6 and np.isfinite(records[-1]["loss"])
    ckpt = ng.load(trained_run / "checkpoint.npz")
    assert int(ckpt["step"]) == 6
    with Image.open(trained_run / "samples.png") as im:
        assert im.size[0] > 28 and im.size[1] > 28
    assert (trained_run / "loss.png").is_file()
    assert (trained_run / "reconstructions.png").is_file()


def test_resume_extends_a_run_to_more_steps(trained_run, tmp_path):
    import shutil
    run = tmp_path / "resumed"
    shutil.copytree(trained_run, run)
    status, _, err = run_cli("train", FAST_MODEL, "--steps", 8, "--resume", "--out", run,
                             "--no-progress")
    assert status == 0, err
    assert int(ng.load(run / "checkpoint.npz")["step"]) == 8
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 8


def test_sample_writes_a_grid_of_n_images(trained_run, tmp_path):
    out = tmp_path / "grid.png"
    status, _, err = run_cli("sample", trained_run, "--n", 9, "--out", out, "--seed", 3)
    assert status == 0, err
    with Image.open(out) as im:
        first = np.asarray(im)
    # a 3 x 3 grid of 28 x 28 images with 2-pixel padding: 2 + 3 * 30 on each side
    assert first.shape[:2] == (92, 92)
    again = tmp_path / "again.png"
    assert run_cli("sample", trained_run, "--n", 9, "--out", again, "--seed", 3)[0] == 0
    with Image.open(again) as im:
        np.testing.assert_array_equal(np.asarray(im), first)   # the seed fixes the samples


def test_eval_prints_and_saves_metrics(trained_run):
    status, out, err = run_cli("eval", trained_run, "--num-examples", 40)
    assert status == 0, err
    printed = json.loads(out)
    saved = json.loads((trained_run / "metrics.json").read_text())
    assert printed == saved
    assert saved["num_examples"] == 40 and saved["step"] == 6 and saved["split"] == "test"
    assert np.isfinite(saved["neg_elbo_nats"]) and saved["neg_elbo_nats"] > 0


def test_eval_ais_flags_set_an_energy_models_estimate_and_are_refused_elsewhere(tmp_path,
                                                                              trained_run):
    out = tmp_path / "rbm"
    status, _, err = run_cli("train", "rbm", "--steps", 2, "--batch-size", 8, "--no-progress",
                             "--arg", "num_hidden=4", "--arg", "sample_steps=2", "--out", out)
    assert status == 0, err
    status, printed, err = run_cli("eval", out, "--num-examples", 20, "--ais-runs", 3,
                                   "--ais-temperatures", 10)
    assert status == 0, err
    metrics = json.loads(printed)
    assert (metrics["ais_runs"], metrics["ais_temperatures"]) == (3, 10)
    assert metrics["nll_nats_exact"] > 0 and np.isfinite(metrics["nll_nats"])
    status, _, err = run_cli("eval", trained_run, "--ais-runs", 3)
    assert status != 0 and "--ais-runs: VAE estimates no partition function" in err
    status, _, err = run_cli("eval", out, "--ais-temperatures", 3)
    assert status != 0 and "--ais-temperatures must be at least 4, got 3" in err


def test_python_dash_m_runs_the_same_command():
    proc = subprocess.run([sys.executable, "-m", "nanogen", "list"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pixelcnn" in proc.stdout and "mnist5k" in proc.stdout


# -- every bad-input path: one line, non-zero ------------------------------------------------------
def test_unknown_model(tmp_path):
    assert_one_line_error(*run_cli("train", "pixelcn", "--out", tmp_path / "x")[::2],
                          "unknown model 'pixelcn'", "did you mean 'pixelcnn'")


def test_unknown_dataset(tmp_path):
    assert_one_line_error(*run_cli("train", FAST_MODEL, "--dataset", "mnist6k",
                                   "--out", tmp_path / "x")[::2], "mnist6k")


def test_point_dataset_for_an_image_model(tmp_path):
    assert_one_line_error(*run_cli("train", FAST_MODEL, "--dataset", "ring8", "--steps", 1,
                                   "--out", tmp_path / "x")[::2], "ring8", "image")


def test_cuda_without_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(ng.cuda, "is_available", lambda: False)
    assert_one_line_error(*run_cli("train", FAST_MODEL, "--device", "cuda",
                                   "--out", tmp_path / "x")[::2], "--device cuda", "no GPU")


def test_bad_numbers(tmp_path):
    assert_one_line_error(*run_cli("train", FAST_MODEL, "--steps", 0,
                                   "--out", tmp_path / "x")[::2], "--steps")
    assert_one_line_error(*run_cli("train", FAST_MODEL, "--lr", -1,
                                   "--out", tmp_path / "x")[::2], "--lr")
    assert_one_line_error(*run_cli("train", FAST_MODEL, "--batch-size", 5000, "--steps", 1,
                                   "--out", tmp_path / "x")[::2], "--batch-size 5000")


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_directory_without_a_run(tmp_path, command):
    assert_one_line_error(*run_cli(command, tmp_path / "missing")[::2], "no such run directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(*run_cli(command, empty)[::2], "config.json")


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_run_without_a_checkpoint(trained_run, tmp_path, command):
    run = tmp_path / "nockpt"
    run.mkdir()
    (run / "config.json").write_text((trained_run / "config.json").read_text())
    assert_one_line_error(*run_cli(command, run)[::2], "no checkpoint.npz")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong-content"])
def test_corrupt_checkpoint(trained_run, tmp_path, damage):
    import shutil
    run = tmp_path / damage
    shutil.copytree(trained_run, run)
    ckpt = run / "checkpoint.npz"
    if damage == "truncate":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "garbage":
        ckpt.write_bytes(b"this is not a checkpoint" * 10)
    else:
        ng.save({"something": "else"}, ckpt)
    for command in ("sample", "eval"):
        assert_one_line_error(*run_cli(command, run)[::2], "checkpoint")


def test_corrupt_config(trained_run, tmp_path):
    import shutil
    run = tmp_path / "badconfig"
    shutil.copytree(trained_run, run)
    (run / "config.json").write_text("{not json")
    assert_one_line_error(*run_cli("eval", run)[::2], "config.json", "corrupt")


def test_existing_run_needs_resume(trained_run, tmp_path):
    import shutil
    run = tmp_path / "again"
    shutil.copytree(trained_run, run)
    assert_one_line_error(*run_cli("train", FAST_MODEL, "--steps", 7, "--out", run,
                                   "--no-progress")[::2], "--resume")


def test_resume_with_other_settings(trained_run, tmp_path):
    import shutil
    run = tmp_path / "other"
    shutil.copytree(trained_run, run)
    assert_one_line_error(*run_cli("train", "pixelcnn", "--resume", "--out", run)[::2],
                          "'vae' run")
    assert_one_line_error(*run_cli("train", FAST_MODEL, "--resume", "--lr", 0.5,
                                   "--out", run)[::2], "--lr")


def test_resume_with_nothing_to_resume(tmp_path):
    assert_one_line_error(*run_cli("train", FAST_MODEL, "--resume", "--steps", 1,
                                   "--out", tmp_path / "fresh")[::2], "resume")


def test_sample_count_and_output_name(trained_run, tmp_path):
    assert_one_line_error(*run_cli("sample", trained_run, "--n", 0)[::2], "--n")
    assert_one_line_error(*run_cli("sample", trained_run, "--out", tmp_path / "x.jpg")[::2],
                          "PNG")


def test_console_script_reports_argparse_errors_without_traceback():
    status, _, err = run_cli("train")          # MODEL missing: argparse's usage error
    assert status == 2 and "Traceback" not in err and "MODEL" in err


def test_model_arguments_and_weight_average(tmp_path):
    out = tmp_path / "small"
    status, _, err = run_cli("train", FAST_MODEL, "--steps", 3, "--batch-size", 8, "--no-progress",
                             "--arg", "latent_dim=3", "--arg", "channels=[4,8]",
                             "--ema-decay", "0.5", "--lr-schedule", "cosine", "--out", out)
    assert status == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["model_kwargs"]["latent_dim"] == 3 and config["model_kwargs"]["channels"] == [4, 8]
    assert config["ema_decay"] == 0.5 and config["lr_schedule"] == "cosine"
    model, _, checkpoint = cli.load_run(out)
    assert model.latent_dim == 3
    # sample and eval use the averaged weights, not the last iterate
    shadow = checkpoint["ema"]["shadow_params"]
    params = list(model.parameters())
    assert all(np.array_equal(p.detach().numpy(), s.numpy()) for p, s in zip(params, shadow))
    assert any(not np.array_equal(p.detach().numpy(), v.numpy())
               for p, v in zip(params, checkpoint["model"].values()))


def test_bad_model_arguments(tmp_path):
    assert_one_line_error(*run_cli("train", FAST_MODEL, "--arg", "no_such_thing=1", "--steps", 1,
                                   "--out", tmp_path / "x")[::2], "no_such_thing")
    assert_one_line_error(*run_cli("train", FAST_MODEL, "--arg", "latent_dim", "--steps", 1,
                                   "--out", tmp_path / "x")[::2], "NAME=VALUE")


# -- sample-quality evaluation ---------------------------------------------------------------------
TINY_DDPM = ["--arg", "channels=8", "--arg", "channel_mults=[1,2]", "--arg", "num_res_blocks=1",
             "--arg", "timesteps=20", "--arg", "groups=4"]


@pytest.fixture(scope="module")
def tiny_ddpm_run(tmp_path_factory):
    """A DDPM small enough to sample in a second: 2 steps of a width-8 U-Net, T = 20."""
    out = tmp_path_factory.mktemp("run") / "ddpm"
    status, _, err = run_cli("train", "ddpm", "--steps", 2, "--batch-size", 8, "--no-progress",
                             "--out", out, *TINY_DDPM)
    assert status == 0, err
    return out


def test_eval_scores_a_sample_judged_model_with_fid_kid_and_is(tiny_ddpm_run):
    status, out, err = run_cli("eval", tiny_ddpm_run, "--num-examples", 20, "--num-samples", 30,
                               "--sampler-steps", 5)
    assert status == 0, err
    metrics = json.loads(out)
    assert metrics["num_samples"] == 30 and metrics["num_reference"] == 1000
    assert metrics["sampler"] == {"sampler": "ddim", "steps": 5}      # the preview sampler
    for key in ("fid", "kid", "inception_score", "bits_per_dim"):
        assert np.isfinite(metrics[key]), key
    assert metrics["fid"] > 0 and 1.0 <= metrics["inception_score"] <= 10.0
    assert json.loads((tiny_ddpm_run / "metrics.json").read_text())["fid"] == metrics["fid"]
    with Image.open(tiny_ddpm_run / "nearest_neighbours.png") as im:
        side = 8 * (28 + 2) + 2       # 8 rows of a sample and its 7 nearest, 2-pixel padding
        assert im.size == (side, side)


def test_eval_num_samples_zero_skips_the_sample_scores(tiny_ddpm_run):
    status, out, err = run_cli("eval", tiny_ddpm_run, "--num-examples", 10, "--num-samples", 0)
    assert status == 0, err
    assert "fid" not in json.loads(out) and "bits_per_dim" in json.loads(out)


def test_eval_num_samples_also_scores_a_likelihood_model(trained_run):
    status, out, err = run_cli("eval", trained_run, "--num-examples", 10, "--num-samples", 20)
    assert status == 0, err
    metrics = json.loads(out)
    assert metrics["num_samples"] == 20 and "neg_elbo_nats" in metrics and "sampler" not in metrics


def test_sample_takes_the_sampler_flags_of_a_model_with_several(tiny_ddpm_run, tmp_path):
    out = tmp_path / "ancestral.png"
    status, _, err = run_cli("sample", tiny_ddpm_run, "--n", 4, "--sampler", "ancestral",
                             "--out", out)
    assert status == 0, err
    assert out.is_file()


@pytest.mark.parametrize("argv, fragments", [
    (["--sampler", "ddim"], ["--sampler", "VAE", "single sampler"]),
    (["--sampler-steps", "5"], ["--sampler-steps", "VAE"]),
])
def test_sampler_flags_on_a_single_sampler_model_are_one_line_errors(trained_run, argv,
                                                                     fragments):
    status, _, err = run_cli("sample", trained_run, "--n", 2, *argv)
    assert_one_line_error(status, err, *fragments)


@pytest.mark.parametrize("argv, fragments", [
    (["--guidance", "2"], ["--guidance", "DDPM", "not a guided model"]),
    (["--class", "3"], ["--class", "DDPM", "not class-conditional"]),
])
def test_guidance_and_class_on_an_unconditional_model_are_one_line_errors(tiny_ddpm_run, argv,
                                                                         fragments):
    status, _, err = run_cli("sample", tiny_ddpm_run, "--n", 2, *argv)
    assert_one_line_error(status, err, *fragments)


def test_a_guided_model_samples_one_class_and_reports_its_accuracy(tmp_path):
    run = tmp_path / "cfg"
    status, _, err = run_cli("train", "ddpm-cfg", "--steps", 1, "--batch-size", 8,
                             "--no-progress", "--out", run, *TINY_DDPM)
    assert status == 0, err
    out = tmp_path / "sevens.png"
    status, _, err = run_cli("sample", run, "--n", 4, "--class", 7, "--guidance", 3,
                             "--sampler-steps", 3, "--out", out)
    assert status == 0, err
    assert out.is_file()
    status, out, err = run_cli("eval", run, "--num-examples", 10, "--num-samples", 10,
                               "--sampler-steps", 3, "--guidance", 0.5)
    assert status == 0, err
    metrics = json.loads(out)
    assert metrics["sampler"]["guidance"] == 0.5
    assert metrics["num_conditional_samples"] == 10
    assert 0.0 <= metrics["conditional_accuracy"] <= 1.0
    assert np.isfinite(metrics["bits_per_dim_stderr"]) and metrics["bits_per_dim_stderr"] > 0
    status, _, err = run_cli("sample", run, "--n", 2, "--class", 10)
    assert_one_line_error(status, err, "--class", "0..9")


@pytest.mark.parametrize("argv, fragments", [
    (["--sampler", "euler"], ["DDPM.sample", "euler"]),
    (["--sampler-steps", "500"], ["DDPM.sample", "500"]),
    (["--num-samples", "-1"], ["--num-samples", "-1"]),
])
def test_bad_sample_quality_requests_are_one_line_errors(tiny_ddpm_run, argv, fragments):
    status, _, err = run_cli("eval", tiny_ddpm_run, "--num-examples", 10, "--num-samples", 4,
                             *argv)
    assert_one_line_error(status, err, *fragments)
