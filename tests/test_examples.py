"""The examples gallery (examples/*.py, one script per family): each trains on the CPU with a
tiny budget, prints a finite measurement and writes pictures of the stated size whose contents
show the model did what the script says; ``--device cuda`` without a GPU is one line on stderr
and a non-zero exit.

The training runs call each script's ``main(argv)`` in this process (numba's compiled kernels
are then shared); the ``--device cuda`` runs are real subprocesses, so that what a user sees --
one line, no traceback -- is what is checked.
"""
import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GALLERY = ("likelihood_pixelcnn", "latent_vae", "adversarial_dcgan", "diffusion_ddpm",
           "sequence_lstm", "sparse_coding_curve")
PAD = 2                 # save_image's padding around and between the 28x28 digits
CELL = 28 + PAD
SCALE = 2               # the image grids are written with each pixel doubled


def load_example(name):
    if str(EXAMPLES) not in sys.path:          # the scripts import examples/common.py
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(name, tmp_path, capsys, *argv):
    """``main([... , --out tmp_path/NAME.png])``: its stdout, and the path of its picture."""
    out = tmp_path / "pictures" / f"{name}.png"          # a folder the script must create
    assert load_example(name).main([*argv, "--out", str(out)]) == 0
    return capsys.readouterr().out, out


def measured(pattern, stdout):
    """The number ``pattern``'s group captures in ``stdout``, checked finite."""
    match = re.search(pattern, stdout)
    assert match, f"no line matching {pattern!r} in:\n{stdout}"
    value = float(match.group(1))
    assert math.isfinite(value), stdout
    return value


def picture(path, rows, cols):
    """The PNG at ``path``, checked to be a grey grid of rows x cols digits with every pixel
    doubled, as a uint8 array at one pixel per pixel."""
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "L"
        width, height = cols * CELL + PAD, rows * CELL + PAD
        assert image.size == (SCALE * width, SCALE * height)
        pixels = np.asarray(image)
    single = pixels[::SCALE, ::SCALE]
    np.testing.assert_array_equal(pixels, single.repeat(SCALE, 0).repeat(SCALE, 1))
    return single


def cell(grid, r, c):
    """The 28x28 digit in row r, column c of a grid written by save_image."""
    top, left = PAD + r * CELL, PAD + c * CELL
    return grid[top:top + 28, left:left + 28]


def test_likelihood_pixelcnn(tmp_path, capsys):
    stdout, out = run_example("likelihood_pixelcnn", tmp_path, capsys, "--steps", "3",
                              "--channels", "4", "--blocks", "1", "--kernel", "3",
                              "--samples", "5")
    nll = measured(r"test NLL: ([-\d.]+) nats", stdout)
    assert 0 < nll < 784 * 2            # a Bernoulli per pixel: ln 2 = 0.69 nats at logit 0
    samples = picture(out, 1, 5)
    assert set(np.unique(samples)) <= {0, 255}          # binary pixels, drawn one at a time
    # 8 test digits, each: its top half (bottom grey), 4 completions, the digit itself
    completions = picture(out.with_name("likelihood_pixelcnn_completions.png"), 8, 6)
    for r in range(8):
        original = cell(completions, r, 5)
        assert set(np.unique(original)) <= {0, 255}
        assert (cell(completions, r, 0)[14:] == 128).all()            # still to be drawn
        for c in range(5):                                         # the kept rows are kept
            np.testing.assert_array_equal(cell(completions, r, c)[:14], original[:14])


def test_latent_vae(tmp_path, capsys):
    stdout, out = run_example("latent_vae", tmp_path, capsys, "--steps", "40", "--width", "4",
                              "--latent-dim", "3", "--iwae-k", "3")
    neg_elbo = measured(r"test -ELBO: ([-\d.]+) nats", stdout)
    iwae = measured(r"IWAE bound \(k = 3\): ([-\d.]+) nats", stdout)
    assert 0 < iwae < neg_elbo + 1.0    # the IWAE bound is the tighter one (up to its noise)
    picture(out, 8, 8)
    recon = picture(out.with_name("latent_vae_reconstructions.png"), 2, 10).astype(int)
    assert set(np.unique(np.stack([cell(recon, 0, c) for c in range(10)]))) <= {0, 255}
    # row d joins the code mu(x) of digit d to that of digit d + 1, so its ends are the
    # reconstructions of the two digits (to a grey level: other rows of another batch)
    path = picture(out.with_name("latent_vae_interpolation.png"), 9, 10).astype(int)
    for d in range(9):
        np.testing.assert_allclose(cell(path, d, 0), cell(recon, 1, d), atol=1)
        np.testing.assert_allclose(cell(path, d, 9), cell(recon, 1, d + 1), atol=1)


def test_adversarial_dcgan(tmp_path, capsys):
    stdout, out = run_example("adversarial_dcgan", tmp_path, capsys, "--steps", "3",
                              "--width", "4", "--latent-dim", "8", "--num-samples", "20")
    assert measured(r"FID ([-\d.]+)", stdout) > 0
    assert 1 <= measured(r"Inception Score ([-\d.]+)", stdout) <= 10
    samples = picture(out, 3, 8)                        # 20 samples, 8 a row
    assert samples.std() > 0
    picture(out.with_name("adversarial_dcgan_interpolation.png"), 8, 10)


def test_diffusion_ddpm(tmp_path, capsys):
    stdout, out = run_example("diffusion_ddpm", tmp_path, capsys, "--steps", "2", "--width",
                              "4", "--batch-size", "8", "--timesteps", "20",
                              "--sampler-steps", "2", "--samples", "3")
    # an untrained noise predictor outputs about 0, so E||eps - 0||^2 per pixel is about 1
    assert 0.5 < measured(r"test L_simple: ([-\d.]+)", stdout) < 2.0
    picture(out, 1, 3)
    chains = picture(out.with_name("diffusion_ddpm_reverse_process.png"), 8, 10)
    # x_T (the left column) is Gaussian noise, clipped to [-1, 1]: many grey levels
    assert len(np.unique(cell(chains, 0, 0))) > 20


def test_sequence_lstm(tmp_path, capsys):
    stdout, out = run_example("sequence_lstm", tmp_path, capsys, "--steps", "3", "--hidden",
                              "8", "--embedding", "4", "--batch-size", "4", "--seq-len", "16",
                              "--eval-windows", "2", "--eval-every", "2", "--prompt", "def ",
                              "--length", "30")
    bits = measured(r"held-out loss: ([-\d.]+) bits per character", stdout)
    assert 0 < bits < 10                # log2 of the ~100 symbols is 6.7 for a uniform guess
    generated = stdout.split("---\n")[1]                # between the two --- lines
    assert generated.startswith("def ") and len(generated) == len("def ") + 30 + 1  # + "\n"
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (600, 400)     # plot_curves' figure


def test_sparse_coding_curve(tmp_path, capsys):
    stdout, out = run_example("sparse_coding_curve", tmp_path, capsys, "--steps", "5",
                              "--atoms", "8", "--lams", "0.8,0.05", "--iters", "30",
                              "--test-images", "20")
    rows = [tuple(map(float, row)) for row in
            re.findall(r"^\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", stdout, re.M)]
    assert [row[0] for row in rows] == [0.8, 0.05]       # from the largest penalty down
    (_, few, worse, worse_refit), (_, many, better, better_refit) = rows
    # the same dictionary: a larger penalty uses fewer atoms and rebuilds the patches worse
    assert 0 <= few < many <= 8 and 0 < better < worse < 1
    # least squares on the chosen atoms can only lower the error of the shrunk coefficients
    assert worse_refit <= worse and better_refit <= better
    assert 0 < measured(r"k=1: ([\d.]+)", stdout) < 1
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (600, 400)     # plot_curves' figure
    # 8 atoms of 8x8 in a 3-wide grid (padding 2), each pixel drawn 4 times
    with Image.open(out.with_name("sparse_coding_curve_dictionary.png")) as image:
        assert image.mode == "L" and image.size == (4 * (3 * 10 + 2), 4 * (3 * 10 + 2))


def _without_gpu_env():
    return {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}


@pytest.fixture(scope="module")
def no_gpu():
    probe = subprocess.run([sys.executable, "-c", "import nanogen; "
                            "print(nanogen.cuda.is_available())"], capture_output=True,
                           text=True, env=_without_gpu_env(), timeout=60)
    if probe.stdout.strip() != "False":
        pytest.skip("a GPU is available here: --device cuda would train")


def test_device_cuda_without_a_gpu_is_one_line(no_gpu, tmp_path):
    runs = {name: subprocess.Popen([sys.executable, str(EXAMPLES / f"{name}.py"), "--device",
                                    "cuda", "--out", str(tmp_path / f"{name}.png")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=_without_gpu_env())
            for name in GALLERY}
    for name, run in runs.items():
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 2, (name, stdout, stderr)
        assert stdout == ""
        assert stderr.count("\n") == 1 and stderr.endswith("\n"), (name, stderr)
        assert stderr.startswith(f"{name}.py: --device cuda: no GPU is available"), stderr
        assert not (tmp_path / f"{name}.png").exists()
