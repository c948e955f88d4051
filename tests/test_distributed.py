"""Data-parallel training over MPI (nanogen.distributed): 2 ranks train like one process at the
same global batch, rank 0 alone writes, checkpoints move between rank counts, SyncBatchNorm's
statistics and gradients are the global batch's, and bad launches end in one line.

Each test starts ``mpiexec -n 2`` (the MPICH wheel the test extra installs) on tiny models."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import nanogen as ng
from nanogen import distributed
from nanogen.distributed.data_parallel import _buckets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
VAE = ["vae", "--batch-size", "16", "--arg", "channels=[8,16]", "--arg", "latent_dim=4",
       "--no-progress"]
DCGAN = ["dcgan", "--batch-size", "16", "--arg", "channels=[8,16]", "--arg", "latent_dim=8",
         "--sync-batchnorm", "--no-progress"]


def run(*argv, ranks=1, check=True):
    """``nanogen ARGV`` in a subprocess, under ``mpiexec -n ranks`` when ranks > 1."""
    command = [sys.executable, "-m", "nanogen", *map(str, argv)]
    if ranks > 1:
        command = [MPIEXEC, "-n", str(ranks), *command]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def worker(check):
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "tests.mpi_worker", check],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def weights(run_dir):
    checkpoint = ng.load(os.path.join(run_dir, "checkpoint.npz"))
    arrays = {f"model.{k}": v.numpy() for k, v in checkpoint["model"].items()}
    for name, state in checkpoint["optimizers"].items():
        for index, entry in state["state"].items():
            for key, value in entry.items():
                if hasattr(value, "numpy"):
                    arrays[f"{name}.{index}.{key}"] = value.numpy()
    return checkpoint, arrays


def assert_same_run(a, b):
    """The same weights and optimizer moments up to float32 reduction order, the same step,
    random state and data position."""
    (ca, wa), (cb, wb) = weights(a), weights(b)
    assert sorted(wa) == sorted(wb)
    for key in wa:
        np.testing.assert_allclose(wa[key], wb[key], rtol=1e-3, atol=1e-5, err_msg=key)
    assert ca["step"] == cb["step"]
    np.testing.assert_array_equal(ca["rng"].numpy(), cb["rng"].numpy())
    assert ca["loader"] == cb["loader"]


# ---------------------------------------------------------------- training
@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """20 steps of each model in one process: what the 2-rank runs must reproduce."""
    root = tmp_path_factory.mktemp("one-process")
    for name, model in (("vae", VAE), ("dcgan", DCGAN)):
        run("train", *model, "--steps", "20", "--out", root / name)
    return root


@pytest.mark.parametrize("model", [VAE, DCGAN], ids=["vae", "dcgan-syncbn"])
def test_two_ranks_train_like_one_process_at_the_same_global_batch(model, one_process,
                                                                   tmp_path):
    one = one_process / model[0]
    result = run("train", *model, "--steps", "20", "--out", tmp_path / "two", ranks=2)
    assert "(2 ranks of 8)" in result.stderr
    assert_same_run(one, tmp_path / "two")
    # rank 0 alone wrote: the same files, and one log line per logged step
    listing = lambda d: sorted(os.path.relpath(os.path.join(r, f), d)           # noqa: E731
                               for r, _, fs in os.walk(d) for f in fs)
    assert listing(one) == listing(tmp_path / "two")
    logs = [json.loads(line) for line in open(tmp_path / "two" / "log.jsonl")]
    assert [r["step"] for r in logs] == [10, 20]
    single = [json.loads(line) for line in open(one / "log.jsonl")]
    for got, want in zip(logs, single):          # the logged losses are the global batch's
        for key, value in want.items():
            if key != "seconds":
                assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_a_checkpoint_moves_between_rank_counts(one_process, tmp_path):
    run("train", *VAE, "--steps", "10", "--out", tmp_path / "two-then-one", ranks=2)
    run("train", *VAE, "--steps", "20", "--out", tmp_path / "two-then-one", "--resume")
    run("train", *VAE, "--steps", "10", "--out", tmp_path / "one-then-two")
    run("train", *VAE, "--steps", "20", "--out", tmp_path / "one-then-two", "--resume", ranks=2)
    assert_same_run(one_process / "vae", tmp_path / "two-then-one")
    assert_same_run(one_process / "vae", tmp_path / "one-then-two")


def test_eval_splits_the_test_set_and_the_samples_over_the_ranks(one_process, tmp_path):
    shutil.copytree(one_process / "dcgan", tmp_path / "run")      # eval writes into the run
    argv = ("eval", tmp_path / "run", "--num-samples", "32", "--num-examples", "20")
    one = json.loads(run(*argv).stdout)
    two = json.loads(run(*argv, ranks=2).stdout)
    for key in ("fid", "kid", "inception_score"):
        assert two[key] == pytest.approx(one[key], rel=1e-6), key
    assert two["num_samples"] == one["num_samples"] == 32


# ---------------------------------------------------------------- the pieces
def test_sync_batchnorm_is_batchnorm_over_the_global_batch():
    report = worker("sync_batchnorm")
    assert report["type"] == "SyncBatchNorm"
    for key in ("output", "input_grad", "weight_grad", "second_order", "running_mean",
                "running_var"):
        assert report[key] < 1e-10, (key, report)


def test_gradients_are_averaged_in_buckets_and_a_missing_gradient_counts_as_zeros():
    report = worker("average_gradients")
    # rank r's gradient of p_i is (r + 1)(i + 1): the mean is 1.5 (i + 1); rank 1 had none for
    # p_1 (its zeros halve the mean), nobody had one for p_2 (it stays None)
    assert report["grads"] == [[1.5] * 3, [1.0] * 4, None, [6.0] * 5]
    assert report["dtypes"] == ["float32", "float32", None, "float64"]
    assert report["bytes"] == 4 * 8 + (3 + 4) * 4 + 5 * 8      # flags, float32, float64


def test_sharded_draws_are_one_processs_draws_split_over_the_ranks():
    report = worker("sharded_draws")
    assert report == {"same": [True, True, True], "scalars_equal": True}


def test_buckets_group_one_dtype_up_to_the_size_limit():
    params = [ng.zeros(4), ng.zeros(4), ng.zeros(8), ng.zeros(2, dtype=ng.float64), ng.zeros(1)]
    sizes = [[p.numel() for p in bucket] for bucket in _buckets(params, 32)]
    assert sizes == [[4, 4], [8], [2], [1]]


def test_one_process_is_a_world_of_one():
    world = distributed.world()
    assert (world.rank, world.size) == (0, 1)
    x = np.arange(3.0)
    assert world.allreduce_(x) is x and world.gather(5) == [5] and world.bcast(7) == 7
    t = ng.tensor([1.0, 2.0], requires_grad=True)
    assert distributed.all_reduce(t, world) is t


# ---------------------------------------------------------------- bad launches
def test_a_batch_that_does_not_split_and_ranks_that_disagree_end_in_one_line(tmp_path):
    result = run("train", *VAE[:1], "--batch-size", "15", "--steps", "1", "--out",
                 tmp_path / "a", ranks=2, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "nanogen train: error: --batch-size 15 does not split evenly over 2 ranks (each rank "
        "takes 1/2 of every global batch): use a multiple of 2"]
    base = [sys.executable, "-m", "nanogen", "train", "vae", "--steps", "1", "--batch-size",
            "16", "--out", str(tmp_path / "b")]
    result = subprocess.run([MPIEXEC, "-n", "1", *base, "--lr", "0.001", ":", "-n", "1", *base,
                             "--lr", "0.002"], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "nanogen train: error: the ranks disagree on the run's settings: rank 1 has lr = "
        "0.002, rank 0 0.001"]
    assert not (tmp_path / "b").exists()


def test_a_sharded_loader_hands_each_rank_its_rows_of_the_transformed_global_batch():
    from nanogen.data import DataLoader, TensorDataset
    data = TensorDataset(np.arange(24, dtype=np.float32).reshape(12, 2), np.arange(12))
    seen = lambda loader: [b[1].numpy().tolist() for b in loader]              # noqa: E731
    whole = seen(DataLoader(data, 6, shuffle=True, seed=3))
    parts = [seen(DataLoader(data, 6, shuffle=True, seed=3, shard=(r, 3))) for r in range(3)]
    for b, batch in enumerate(whole):
        assert sum((p[b] for p in parts), []) == batch
    with pytest.raises(ValueError, match="batch_size 6 does not split evenly over 4 ranks"):
        DataLoader(data, 6, shard=(0, 4))
    with pytest.raises(ValueError, match="a batch of 2 examples does not split evenly"):
        list(DataLoader(data, 5, shard=(0, 5)))        # the last batch of 12 = 5 + 5 + 2
