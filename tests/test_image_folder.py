"""Your own images: ``folder:PATH`` datasets (nanogen.data.folder), the metrics on images other
than 28x28 grey, and every registered image model at other sizes and channel counts.

Every folder here is written by the test itself (PNG and JPEG, grey and RGB, odd sizes, class
subfolders and flat, corrupt files); the decode cache goes to a temporary $NANOGEN_DATA.
"""
import os
import warnings

import numpy as np
import pytest
from PIL import Image

import nanogen as ng
from nanogen import cli
from nanogen.data import (DataLoader, DatasetError, ImageFolder, SkippedImagesWarning,
                          folder_dataset_name, load_dataset, train_transform)
from nanogen.data import folder as folder_module
from nanogen.metrics import features as features_module
from nanogen.metrics.features import (classifier_input, describe_classifier_input,
                                      resize_images, resize_weights)
from nanogen.models import ImageShapeError, all_models

from .test_cli import assert_one_line_error, run_cli


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch):
    """A private $NANOGEN_DATA (the decode cache) and $NANOGEN_CACHE (metrics features)."""
    monkeypatch.setenv("NANOGEN_DATA", str(tmp_path / "data-home"))
    monkeypatch.setenv("NANOGEN_CACHE", str(tmp_path / "cache-home"))
    folder_module._load_folder.cache_clear()
    yield
    folder_module._load_folder.cache_clear()


def write_image(path, array, **save_options):
    """Save a uint8 array (H, W) or (H, W, 3) with Pillow; the format follows the suffix."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path, **save_options)
    return path


def random_pixels(rng, shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def labelled(tmp_path):
    """cats/ (4 RGB PNGs) and dogs/ (3 grey PNGs), 12x10, plus a text file."""
    root, rng = tmp_path / "pets", np.random.default_rng(0)
    for i in range(4):
        write_image(root / "cats" / f"c{i}.png", random_pixels(rng, (12, 10, 3)))
    for i in range(3):
        write_image(root / "dogs" / f"d{i}.PNG", random_pixels(rng, (12, 10)))
    (root / "notes.txt").write_text("not an image")
    return root


# ---------------------------------------------------------------- labels, channels, sizes
def test_class_subfolders_are_the_labels_in_sorted_order(labelled):
    train, test = ImageFolder(labelled, "train"), ImageFolder(labelled, "test")
    assert train.classes == test.classes == ["cats", "dogs"]
    assert train.num_classes == 2
    files = sorted(train.files + test.files)
    assert files == sorted([f"cats/c{i}.png" for i in range(4)] + [f"dogs/d{i}.PNG" for i in
                                                                     range(3)])
    for ds in (train, test):
        for f, label in zip(ds.files, ds.labels):
            assert label == ds.classes.index(f.split("/")[0])


def test_a_flat_folder_is_unlabelled(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(5):
        write_image(tmp_path / "flat" / f"{i}.bmp", random_pixels(rng, (8, 8)))
    ds = ImageFolder(tmp_path / "flat")
    assert ds.classes == [] and ds.num_classes == 1
    assert (ds.labels == 0).all()


def test_pixels_are_the_files_values_and_grey_images_give_one_channel(tmp_path):
    rng = np.random.default_rng(2)
    pixels = [random_pixels(rng, (6, 9)) for _ in range(10)]
    for i, p in enumerate(pixels):
        write_image(tmp_path / "g" / f"{i:02d}.png", p)
    train, test = ImageFolder(tmp_path / "g"), ImageFolder(tmp_path / "g", "test")
    assert train.sample_shape == (1, 6, 9)
    for ds in (train, test):
        assert ds.images.dtype == np.float32
        for f, image in zip(ds.files, ds.images):
            np.testing.assert_array_equal(image[0] * 255, pixels[int(f[:2])])


def test_channels_convert_like_pillow(labelled):
    rgb = ImageFolder(labelled)                          # some colour: 3 channels by default
    assert rgb.sample_shape == (3, 12, 10)
    grey = ImageFolder(labelled, channels=1)
    assert grey.sample_shape == (1, 12, 10)
    for f, image, g in zip(rgb.files, rgb.images, grey.images):
        with Image.open(labelled / f) as im:
            np.testing.assert_array_equal(np.round(g[0] * 255),
                                          np.asarray(im.convert("L"), dtype=np.float32))
            if im.mode == "L":                          # grey repeated over R, G, B
                for c in range(3):
                    np.testing.assert_array_equal(image[c], g[0])


def test_jpeg_and_palette_images_are_read(tmp_path):
    rng = np.random.default_rng(3)
    write_image(tmp_path / "m" / "a.jpg", random_pixels(rng, (16, 16, 3)), quality=95)
    write_image(tmp_path / "m" / "b.jpeg", random_pixels(rng, (16, 16)))
    Image.fromarray(random_pixels(rng, (16, 16, 3))).convert("P").save(tmp_path / "m" / "c.png")
    ds = ImageFolder(tmp_path / "m")
    test = ImageFolder(tmp_path / "m", "test")
    assert ds.sample_shape == (3, 16, 16) and len(ds) + len(test) == 3
    with Image.open(tmp_path / "m" / "a.jpg") as im:
        decoded = np.asarray(im.convert("RGB")).transpose(2, 0, 1) / 255
    everything = dict(zip(ds.files + test.files, list(ds.images) + list(test.images)))
    np.testing.assert_allclose(everything["a.jpg"], decoded, atol=1e-6)


def test_image_size_resizes_the_short_side_and_crops_the_centre(tmp_path):
    rows = np.repeat(np.arange(20, dtype=np.uint8)[:, None] * 10, 10, axis=1)   # 20 tall x 10
    write_image(tmp_path / "s" / "tall.png", rows)
    write_image(tmp_path / "s" / "wide.png", rows.T.copy())                        # 10 x 20
    write_image(tmp_path / "s" / "big.png", np.full((40, 40), 77, np.uint8))
    write_image(tmp_path / "s" / "odd.png", random_pixels(np.random.default_rng(4), (31, 47)))
    ds = ImageFolder(tmp_path / "s", image_size=10, test_fraction=0.25)
    everything = dict(zip(ds.files, ds.images))
    everything.update(zip(*(lambda t: (t.files, t.images))(
        ImageFolder(tmp_path / "s", "test", image_size=10, test_fraction=0.25))))
    assert all(image.shape == (1, 10, 10) for image in everything.values())
    # the short side is already 10: no resize, rows 5..14 of the tall image, columns of the wide
    np.testing.assert_array_equal(everything["tall.png"][0] * 255, rows[5:15])
    np.testing.assert_array_equal(everything["wide.png"][0] * 255, rows[5:15].T)
    np.testing.assert_array_equal(everything["big.png"][0] * 255, 77)    # 40 -> 10, constant
    # 31 x 47 -> 10 x 15 (bilinear, antialiased), then columns 2..11 (torchvision's rounding)
    with Image.open(tmp_path / "s" / "odd.png") as im:
        expected = np.asarray(im.resize((15, 10), Image.BILINEAR))[:, 2:12]
    np.testing.assert_array_equal(everything["odd.png"][0] * 255, expected)


# ---------------------------------------------------------------- splits
def test_the_seeded_split_holds_out_a_tenth_and_is_repeatable(tmp_path):
    rng = np.random.default_rng(5)
    for i in range(30):
        write_image(tmp_path / "n" / f"{i:02d}.png", random_pixels(rng, (4, 4)))
    train, test = ImageFolder(tmp_path / "n"), ImageFolder(tmp_path / "n", "test")
    assert (len(train), len(test)) == (27, 3)
    assert set(train.files).isdisjoint(test.files)
    assert sorted(train.files + test.files) == [f"{i:02d}.png" for i in range(30)]
    order = np.random.default_rng(0).permutation(30)
    assert sorted(test.files) == sorted(f"{i:02d}.png" for i in order[27:])
    folder_module._load_folder.cache_clear()
    assert ImageFolder(tmp_path / "n", "test").files == test.files
    other = ImageFolder(tmp_path / "n", "test", seed=1, test_fraction=0.2)
    assert len(other) == 6 and other.files != test.files


def test_train_and_test_subfolders_are_the_split(tmp_path):
    rng = np.random.default_rng(6)
    for split, n in (("train", 5), ("test", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                write_image(tmp_path / "p" / split / cls / f"{i}.png", random_pixels(rng, (5, 5)))
    train, test = ImageFolder(tmp_path / "p"), ImageFolder(tmp_path / "p", "test")
    assert (len(train), len(test)) == (10, 4)
    assert train.classes == test.classes == ["a", "b"]
    assert all(f.startswith("train/") for f in train.files)
    assert all(f.startswith("test/") for f in test.files)
    assert [int(label) for label in test.labels] == [0, 0, 1, 1]


# ---------------------------------------------------------------- the cache
def test_the_decoded_folder_is_cached_and_a_changed_folder_is_read_again(labelled, monkeypatch):
    first = ImageFolder(labelled)
    cache_files = list((labelled.parent / "data-home" / "folders").glob("*.npz"))
    assert len(cache_files) == 1
    folder_module._load_folder.cache_clear()                 # a new process: the disk cache
    with monkeypatch.context() as m:
        m.setattr(folder_module, "_decode", lambda *a: pytest.fail("decoded again"))
        again = ImageFolder(labelled)
    np.testing.assert_array_equal(again.images, first.images)
    assert again.files == first.files

    # an edited file (same name, same size, new bytes) changes the key: decoded again
    path = labelled / first.files[0]
    with Image.open(path) as im:
        edited = 255 - np.asarray(im)
    write_image(path, edited)
    folder_module._load_folder.cache_clear()
    changed = ImageFolder(labelled)
    assert changed.fingerprint != first.fingerprint
    index = changed.files.index(first.files[0])
    np.testing.assert_array_equal(changed.images[index] * 255,
                                  np.atleast_3d(edited).transpose(2, 0, 1))
    # an added file too
    write_image(labelled / "dogs" / "new.png", np.zeros((12, 10), np.uint8))
    total = len(ImageFolder(labelled)) + len(ImageFolder(labelled, "test"))
    assert total == 8
    # other options are another entry; a corrupt cache file is rebuilt
    ImageFolder(labelled, channels=1)
    for f in (labelled.parent / "data-home" / "folders").glob("*.npz"):
        f.write_bytes(b"garbage")
    folder_module._load_folder.cache_clear()
    np.testing.assert_array_equal(ImageFolder(labelled, channels=1).images[:, 0],
                                  ImageFolder(labelled, cache=False, channels=1).images[:, 0])


# ---------------------------------------------------------------- reports and bad input
def test_files_that_cannot_be_decoded_are_reported_by_name_and_skipped(labelled):
    (labelled / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (labelled / "cats" / "fake.jpg").write_text("hello")
    write_image(labelled / "stray.png", np.zeros((12, 10), np.uint8))   # beside class folders
    with pytest.warns(SkippedImagesWarning) as caught:
        ds = ImageFolder(labelled)
    message = str(caught[0].message)
    assert "skipped 3 files" in message
    for name in ("cats/broken.png", "cats/fake.jpg", "stray.png (not in a class subfolder)"):
        assert name in message
    assert [s.split(" (")[0] for s in ds.skipped] == ["cats/broken.png", "cats/fake.jpg",
                                                      "stray.png"]
    assert "broken.png" not in ds.files and len(ds) + len(ImageFolder(labelled, "test")) == 7


def test_the_command_line_prints_the_skip_report_as_one_warning_line(labelled, tmp_path):
    (labelled / "cats" / "broken.png").write_bytes(b"junk")
    status, _, err = run_cli("train", "vae", "--dataset", f"folder:{labelled}", "--image-size",
                             "8", "--steps", "1", "--batch-size", "2", "--out", tmp_path / "r",
                             "--no-progress", "--arg", "channels=[4]", "--arg", "latent_dim=2")
    assert status == 0, err
    warnings_ = [line for line in err.splitlines() if "warning" in line]
    assert warnings_ == [f"nanogen train: warning: folder:{labelled}: skipped 1 file: "
                         f"cats/broken.png (cannot be decoded (UnidentifiedImageError: cannot "
                         f"identify image file 'cats/broken.png'))"]


@pytest.mark.parametrize("make, message", [
    (lambda root: root.mkdir(), "no images (files ending in .png, .jpg, .jpeg, .bmp) under it"),
    (lambda root: [root.mkdir(), (root / "a.txt").write_text("x"), (root / "b.csv").write_text(
        "y")], "no images (files ending in .png, .jpg, .jpeg, .bmp) under it; it holds 2 other "
     "files"),
    (lambda root: [root.mkdir(), (root / "a.png").write_text("x"), (root / "b.png").write_text(
        "y")], "none of its 2 image files could be decoded (first: a.png"),
    (lambda root: [write_image(root / "a.png", np.zeros((8, 8), np.uint8)),
                   write_image(root / "b.png", np.zeros((6, 9), np.uint8))],
     "the images have different sizes (8x8 in a.png, 9x6 in b.png); pass --image-size S"),
    (lambda root: write_image(root / "a.png", np.zeros((8, 8), np.uint8)),
     "one image cannot be split into a train and a test set"),
    (lambda root: None, "no such folder"),
])
def test_bad_folders_give_one_clear_line(tmp_path, make, message):
    root = tmp_path / "bad"
    make(root)
    with pytest.raises(DatasetError) as caught:
        ImageFolder(root)
    assert message in str(caught.value)
    status, _, err = run_cli("train", "dcgan", "--dataset", f"folder:{root}", "--steps", "1",
                             "--out", tmp_path / "run")
    assert_one_line_error(status, err, message)


def test_bad_options_give_one_clear_line(labelled, tmp_path):
    cases = [
        (["--dataset", "mnist5k", "--image-size", "32"], "--image-size applies to a folder of "
         "images (--dataset folder:PATH), not to mnist5k"),
        (["--dataset", f"folder:{labelled}?image_size=8", "--image-size", "16"],
         "--image-size 16 contradicts the 8"),
        (["--dataset", f"folder:{labelled}", "--image-size", "0"], "--image-size must be a "
         "positive integer"),
        (["--dataset", f"folder:{labelled}?image_size=big"], "image_size must be an integer"),
        (["--dataset", f"folder:{labelled}", "--image-size", "30"],
         "model 'dcgan' cannot take the 3x30x30 images of folder:"),
    ]
    for argv, fragment in cases:
        status, _, err = run_cli("train", "dcgan", *argv, "--steps", "1", "--out",
                                 tmp_path / "r")
        assert_one_line_error(status, err, fragment)
    status, _, err = run_cli("train", "dcgan", "--dataset", f"folder:{labelled}",
                             "--image-size", "30", "--steps", "1", "--out", tmp_path / "r")
    assert "DCGAN with 2 stride-2 levels needs H and W divisible by 4, got 30x30 (32x32 would " \
           "do)" in err


def test_a_folder_run_records_its_options_and_resumes(labelled, tmp_path, monkeypatch):
    for i in range(13):                                 # 20 images: 2 test images for FID
        write_image(labelled / "dogs" / f"more{i}.png", np.full((12, 10), 9 * i, np.uint8))
    out = tmp_path / "run"
    argv = ["train", "vae", "--dataset", f"folder:{labelled}", "--image-size", "8",
            "--channels", "1", "--batch-size", "2", "--out", out, "--no-progress", "--arg",
            "channels=[4]", "--arg", "latent_dim=2"]
    status, _, err = run_cli(*argv, "--steps", "1")
    assert status == 0, err
    config = cli.read_json(out / "config.json", "config")
    assert config["dataset"] == folder_dataset_name(labelled, 8, 1) == \
        f"folder:{labelled}?image_size=8&channels=1"
    assert load_dataset(config["dataset"]).sample_shape == (1, 8, 8)
    command = cli.training_command(config)
    assert command is not None and "image_size=8&channels=1" in command
    status, _, err = run_cli(*argv, "--steps", "2", "--resume")
    assert status == 0, err
    status, out_text, err = run_cli("eval", out, "--num-samples", "4")
    assert status == 0, err
    assert "judged as grey 28x28 (antialiased bilinear resize)" in out_text
    assert (config["data_shape"], config["num_classes"]) == ([1, 8, 8], 2)

    # a changed folder cannot be resumed exactly: refused
    write_image(labelled / "cats" / "late.png", np.zeros((12, 10, 3), np.uint8))
    status, _, err = run_cli(*argv, "--steps", "3", "--resume")
    assert_one_line_error(status, err, f"--resume: the files under {labelled} have changed "
                          f"since {out} started")
    # without the folder the run still samples (config.json records the shape); eval needs it
    labelled.rename(tmp_path / "moved")
    status, _, err = run_cli("sample", out, "--n", "4", "--out", tmp_path / "s.png")
    assert status == 0, err
    with Image.open(tmp_path / "s.png") as grid:
        assert grid.size[0] > 16
    status, _, err = run_cli("eval", out)
    assert_one_line_error(status, err, f"folder:{labelled}: no such folder")
    # pretrained weights are re-scored on data every install has: a folder run is not shipped
    (tmp_path / "shipped").mkdir()
    monkeypatch.setenv("NANOGEN_PRETRAINED_DIR", str(tmp_path / "shipped"))
    status, _, err = run_cli("export", out, "--name", "mine", "--no-eval")
    assert_one_line_error(status, err, "a folder on this machine only")


# ---------------------------------------------------------------- the metrics on other images
@pytest.mark.parametrize("shape, out", [((32, 32), (28, 28)), ((64, 48), (28, 28)),
                                        ((20, 30), (28, 28)), ((5, 9), (28, 28)),
                                        ((28, 28), (13, 7))])
def test_resize_weights_are_pillows_bilinear_filter(shape, out):
    x = np.random.default_rng(7).random(shape).astype(np.float32)
    expected = np.asarray(Image.fromarray(x, mode="F").resize(out[::-1], Image.BILINEAR))
    np.testing.assert_allclose(resize_images(x[None, None], out)[0, 0], expected, atol=1e-6)
    weights = resize_weights(shape[0], out[0])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    assert (weights >= 0).all()


def test_classifier_input_is_luma_then_resize():
    rng = np.random.default_rng(8)
    rgb = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    images = rgb.transpose(0, 3, 1, 2).astype(np.float32) / 255
    converted = classifier_input(images)
    assert converted.shape == (3, 1, 28, 28)
    for image, pixels in zip(converted, rgb):
        luma = (pixels.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])) / 255
        expected = np.asarray(Image.fromarray(luma, mode="F").resize((28, 28), Image.BILINEAR))
        np.testing.assert_allclose(image[0], expected, atol=1e-5)
    grey = rng.random((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(classifier_input(grey), grey)     # already the input
    assert describe_classifier_input((1, 28, 28)) is None
    assert describe_classifier_input((3, 32, 32)).startswith(
        "3x32x32 images judged as grey 28x28 (grey by luma, antialiased bilinear resize)")


def test_fid_of_a_folder_against_itself_is_zero_and_says_how_images_were_judged(tmp_path):
    rng = np.random.default_rng(9)
    for split in ("train", "test"):
        for i in range(12):
            write_image(tmp_path / "c" / split / f"{i}.png", random_pixels(rng, (32, 32, 3)))
    name = f"folder:{tmp_path / 'c'}"
    test = load_dataset(name, "test")
    scores = ng.metrics.sample_quality(test.images, dataset=name)
    assert abs(scores["fid"]) < 1e-3 and scores["num_reference"] == 12
    assert scores["classifier_input"].startswith("3x32x32 images judged as grey 28x28")
    # the reference features are keyed by the folder's contents: an edit is not served stale
    first = features_module.reference_features(name, "test")
    write_image(tmp_path / "c" / "test" / "0.png", np.zeros((32, 32, 3), np.uint8))
    folder_module._load_folder.cache_clear()
    features_module.reference_features.cache_clear()
    assert not np.array_equal(features_module.reference_features(name, "test"), first)
    features_module.reference_features.cache_clear()


# ---------------------------------------------------------------- every image model
# narrow networks: the shapes a model takes do not depend on its width, and sampling a 64x64
# image pixel by pixel runs a raster model 4,096 times
TINY = {
    "pixelcnn": {"channels": 8, "num_blocks": 1},
    "gated-pixelcnn": {"channels": 8, "num_layers": 2},
    "pixelrnn-row": {"hidden": 4, "num_layers": 1},
    "pixelrnn-diagonal": {"hidden": 4, "num_layers": 1},
    "fvbn": {},                                     # no width to narrow
    "made": {"hidden_sizes": [32]},
    "nade": {"hidden": 16},
    "ddpm": {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "timesteps": 10},
    "ddpm-cfg": {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "timesteps": 10},
    "improved-ddpm": {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1,
                      "timesteps": 10},
    "dcgan": {"channels": [8, 16], "latent_dim": 8},
    "gan": {"hidden": [32, 32]},
    "gan-minimax": {"hidden": [32, 32]},
    "cgan": {"channels": [8, 16], "latent_dim": 8},
    "acgan": {"channels": [8, 16], "latent_dim": 8},
    "infogan": {"channels": [8, 16], "latent_dim": 8, "q_hidden": 8},
    "ebgan": {"channels": [8, 16], "latent_dim": 8, "code_dim": 8},
    "began": {"channels": [8, 16], "latent_dim": 8, "code_dim": 8},
    "bigan": {"channels": [8, 16], "latent_dim": 8, "joint_hidden": 16},
    "lsgan": {"channels": [8, 16], "latent_dim": 8},
    "wgan": {"channels": [8, 16], "latent_dim": 8},
    "wgan-gp": {"channels": [8, 16], "latent_dim": 8},
    "dragan": {"channels": [8, 16], "latent_dim": 8},
    "biggan": {"channels": [8, 16], "latent_dim": 8, "shared_dim": 8},
    "lapgan": {"latent_dim": 8, "hidden": [32], "disc_hidden": [16], "g_channels": [8],
               "channels": [8, 16]},
    "progan": {"channels": [8, 4], "latent_dim": 8, "phase_steps": 1},
    "sngan": {"channels": [8, 16], "latent_dim": 8},
    "stylegan": {"channels": [8, 16], "latent_dim": 8},
    "vae": {"channels": [8, 16]},
    "vae-2d": {"channels": [8, 16]},
    "beta-vae": {"channels": [8, 16]},
    "ae": {"channels": [8, 16], "code_dim": 8},
    "denoising-ae": {"channels": [8, 16], "code_dim": 8},
    "sparse-ae": {"code_dim": 16},
    "stacked-ae": {"hidden_sizes": [16, 8], "pretrain_steps": 1},
    "ladder": {"hidden": [8, 4], "denoising_weights": 1.0},
    "aae": {"hidden": [32], "disc_hidden": [16]},
    "cvae": {"channels": [8, 16]},
    "iwae": {"hidden": [16], "latent_dim": 4, "k": 3},
    "pixelvae": {"channels": [8, 16], "latent_dim": 4, "cond_channels": 8, "pixel_channels": 8,
                 "num_blocks": 1, "head_channels": 8},
    "vae-gan": {"channels": [8, 16], "disc_channels": [8, 16], "latent_dim": 8},
    "aae-mixture": {"hidden": [32], "disc_hidden": [16]},
    "ladder-supervised": {"hidden": [8, 4]},
    "rbm": {"num_hidden": 8, "sample_steps": 5},
    "dbm": {"hidden_sizes": [8, 4], "pretrain_steps": 1, "num_chains": 4, "sample_steps": 5},
    "dbn": {"hidden_sizes": [8, 4], "layer_steps": 1, "sample_steps": 5},
    "sparse-coding": {"num_atoms": 8, "num_iters": 5},
    "sparse-coding-digits": {"num_atoms": 8, "num_iters": 5},
    "sparse-coding-hierarchical": {"num_atoms": 4, "num_atoms2": 4, "num_iters": 5,
                                   "first_layer_steps": 1},
}
IMAGE_MODELS = sorted(name for name, spec in all_models().items() if "image" in spec.data_kinds)


def test_every_image_model_has_a_narrow_configuration_here():
    assert sorted(TINY) == IMAGE_MODELS


@pytest.fixture(scope="module")
def shaped_folders(tmp_path_factory):
    """folder:... names of a 32x32 colour folder and a 64x64 grey one (two classes each)."""
    root, rng = tmp_path_factory.mktemp("shaped"), np.random.default_rng(10)
    for name, shape in (("rgb32", (32, 32, 3)), ("grey64", (64, 64))):
        for cls in ("a", "b"):
            for i in range(5):
                write_image(root / name / cls / f"{i}.png", random_pixels(rng, shape))
    return {"rgb32": str(root / "rgb32"), "grey64": str(root / "grey64")}


@pytest.mark.parametrize("folder, shape", [("rgb32", (3, 32, 32)), ("grey64", (1, 64, 64))])
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_image_model_trains_and_samples_at_other_sizes(name, folder, shape,
                                                             shaped_folders):
    dataset = load_dataset(f"folder:{shaped_folders[folder]}", "train")
    assert dataset.sample_shape == shape
    spec = all_models()[name]
    ng.manual_seed(0)
    try:
        model = spec.build(image_shape=dataset.sample_shape, num_classes=dataset.num_classes,
                           **{**spec.kwargs, **TINY[name]})
    except ImageShapeError as e:                    # a refusal must say which sizes work
        assert "needs H and W divisible by" in str(e) and "would do" in str(e)
        return
    loader = DataLoader(dataset, batch_size=2, shuffle=True, seed=0, drop_last=True,
                        transform=train_transform(model.data_transform))
    optimizers = model.configure_optimizers(1e-3)
    before = {k: v.detach().numpy().copy() for k, v in model.named_parameters()}
    batches = (batch for _ in range(100) for batch in loader)   # epochs on end: k may be 5
    model.train()
    for _ in range(2):
        parts = [next(batches) for _ in range(model.batches_per_step)]
        x, y = (ng.cat([p[i] for p in parts]) for i in (0, 1))
        logs = model.training_step((x, y), optimizers)
        assert all(np.isfinite(v) for v in logs.values() if isinstance(v, float)), logs
    changed = [k for k, v in model.named_parameters() if not np.array_equal(
        v.detach().numpy(), before[k])]
    assert changed, f"{name}: two training steps changed no parameter"
    model.eval()
    if not model.can_sample:                      # a classifier (the ladder): its codes instead
        with ng.no_grad():
            codes = model.codes(x[:1]).numpy()
        assert codes.shape[0] == 1 and np.isfinite(codes).all()
        return
    with ng.no_grad():
        samples = model.sample(1).numpy()
    assert samples.shape == (1,) + shape
    assert np.isfinite(samples).all() and samples.min() >= 0 and samples.max() <= 1


# ---------------------------------------------------------------- the export example
def load_example():
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "export_image_folder.py")
    spec = importlib.util.spec_from_file_location("export_image_folder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_cifar10_folder_written_by_the_example_reads_back_exactly(tmp_path):
    from .test_data import write_cifar_dir
    write_cifar_dir(str(tmp_path / "data-home" / "cifar10"))
    load_example().main(["cifar10", str(tmp_path / "png")])
    for split in ("train", "test"):
        original = load_dataset("cifar10", split)
        folder = ImageFolder(tmp_path / "png", split)
        order = np.argsort([int(f.rsplit("/", 1)[1][:5]) for f in folder.files])
        np.testing.assert_array_equal(folder.images[order], original.images)
        names = load_example().CIFAR10_CLASSES
        assert [folder.classes[k] for k in folder.labels[order]] == \
            [names[k] for k in original.labels]
    # CIFAR-10's names are in alphabetical order: with all ten classes the labels survive too
    assert list(names) == sorted(names)


def test_the_colour_digits_are_seeded_and_keep_the_digit_as_their_brightest_part(tmp_path,
                                                                               monkeypatch):
    example = load_example()
    small = {split: load_dataset("mnist5k", split) for split in ("train", "test")}

    def first_twenty(name, split):
        ds = small[split]
        return type(ds)(ds.images[::200], ds.labels[::200], name="mnist5k", split=split,
                        num_classes=10)
    monkeypatch.setattr(example, "load_dataset", first_twenty)
    example.main(["mnist5k", str(tmp_path / "a"), "--colourise", "--size", "32"])
    example.main(["mnist5k", str(tmp_path / "b"), "--colourise", "--size", "32"])
    a, b = ImageFolder(tmp_path / "a"), ImageFolder(tmp_path / "b")
    np.testing.assert_array_equal(a.images, b.images)                 # the same files
    assert a.sample_shape == (3, 32, 32) and a.classes == [str(k) for k in range(10)]
    grey = small["train"].images[::200]
    order = np.argsort([int(f.rsplit("/", 1)[1][:5]) for f in a.files])
    centre = a.images[order][:, :, 2:30, 2:30]                         # the 28x28 digit, padded 2
    luma = np.einsum("c,nchw->nhw", np.float32([0.299, 0.587, 0.114]), centre)
    for digit, seen in zip(grey, luma):
        ink, ground = digit[0] > 0.9, digit[0] < 0.1
        assert seen[ink].min() >= 0.45 and seen[ground].max() <= 0.31   # bright on dark
