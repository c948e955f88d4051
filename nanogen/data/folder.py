"""Your own images: a folder of PNG / JPEG / BMP files as an :class:`ImageDataset`.

::

    ds = ImageFolder("~/pictures/cats", split="train", image_size=64, channels=3)
    ds.images.shape        # (N, 3, 64, 64) float32 in [0, 1]
    ds.classes             # ["siamese", "tabby"]: the first-level subfolders, sorted

The command line names such a set ``folder:PATH`` (``nanogen train dcgan --dataset
folder:~/cats --image-size 64``); :func:`folder_dataset_name` writes the one string that stands
for the folder *and* its options (``folder:/abs/path?image_size=64&channels=3``), which is what a
run's ``config.json`` keeps.

The rules, in the order they apply:

* **Files**: every ``.png``, ``.jpg``, ``.jpeg``, ``.bmp`` (any case) under the folder, at any
  depth, in sorted order; hidden files and folders (a leading ``.``) and other files are ignored.
* **Split**: with both a ``train/`` and a ``test/`` subfolder, those are the splits.  Otherwise a
  seeded shuffle holds out ``test_fraction`` (default 10 %, at least one image) as the test split:
  ``np.random.default_rng(seed).permutation(N)``, the last ``round(test_fraction * N)`` indices
  being the test images.
* **Labels** (torchvision's ``ImageFolder`` rule): the first-level subfolders that hold images
  (of the folder, or of ``train/`` and ``test/``) are the classes, sorted by name -> 0 ... K-1.
  With no such subfolder the set is unlabelled: every label is 0 and ``num_classes`` is 1.  With
  class subfolders, images lying directly in the folder belong to no class: they are skipped and
  reported.
* **Channels**: ``channels=1`` converts every image to grey (Pillow's ``L``: ITU-R 601 luma,
  0.299 R + 0.587 G + 0.114 B), ``channels=3`` to RGB (a grey image is repeated over the three);
  by default 1 when every image is grey and 3 otherwise.  Transparency is dropped.
* **Size**: with ``image_size=S`` every image is resized so its shorter side is S (bilinear,
  antialiased when shrinking), then centre-cropped to S x S: torchvision's ``Resize(S)`` +
  ``CenterCrop(S)``.  Without it every image must already have one size.
* **Bad files**: a file that Pillow cannot decode is skipped and reported by name (a
  :class:`SkippedImagesWarning`, printed by the command line), never silently; ``skipped``
  lists ``"relative/path (reason)"``.

Decoding thousands of files takes a while, so the decoded pixels of the whole folder (both
splits, uint8) are cached as one ``.npz`` in ``$NANOGEN_DATA/folders`` (default
``~/.cache/nanogen/folders``), named by a SHA-256 of every image file's path and bytes and of the
options.  A folder whose files change (added, removed, edited) gets a new key and is read again;
the cache is written atomically and rebuilt if it cannot be read.
"""
from __future__ import annotations

import functools
import hashlib
import os
import urllib.parse
import warnings

import numpy as np

from ..serialization import atomic_write
from .dataset import DatasetError, ImageDataset, read_only
from .download import default_root

__all__ = ["ImageFolder", "IMAGE_EXTENSIONS", "FOLDER_PREFIX", "SkippedImagesWarning",
           "folder_dataset_name", "parse_folder_dataset", "is_folder_dataset"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
FOLDER_PREFIX = "folder:"
DEFAULT_TEST_FRACTION = 0.1
_OPTIONS = ("image_size", "channels")
_CACHE_VERSION = 1
_REPORT_NAMES = 10                  # the skip report names this many files, then counts the rest


class SkippedImagesWarning(UserWarning):
    """Files under an image folder that were skipped, each named with the reason."""


# -- the dataset name ---------------------------------------------------------------------------
def is_folder_dataset(name) -> bool:
    return isinstance(name, str) and name.startswith(FOLDER_PREFIX)


def folder_dataset_name(path, image_size=None, channels=None) -> str:
    """The dataset name for a folder and its options: ``folder:/absolute/path`` followed by
    ``?image_size=S&channels=C`` for the options that are set (checked here)."""
    image_size, channels = _check_options(image_size, channels)
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    options = {k: v for k, v in (("image_size", image_size), ("channels", channels))
               if v is not None}
    return FOLDER_PREFIX + path + ("?" + urllib.parse.urlencode(options) if options else "")


def parse_folder_dataset(name: str):
    """``(path, image_size, channels)`` of a ``folder:PATH[?image_size=S&channels=C]`` name."""
    if not is_folder_dataset(name):
        raise DatasetError(f"{name!r} is not a folder dataset (folder:PATH)")
    path, query = name[len(FOLDER_PREFIX):], ""
    head, sep, tail = path.rpartition("?")
    if sep and tail and all(part.split("=", 1)[0] in _OPTIONS for part in tail.split("&")):
        path, query = head, tail
    if not path:
        raise DatasetError("folder: needs a path, e.g. --dataset folder:~/pictures")
    options = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        try:
            options[key] = int(value)
        except ValueError:
            raise DatasetError(f"{name!r}: {key} must be an integer, got {value!r}") from None
    image_size, channels = _check_options(options.get("image_size"), options.get("channels"))
    return os.path.abspath(os.path.expanduser(path)), image_size, channels


def _check_options(image_size, channels):
    if image_size is not None and (isinstance(image_size, bool) or int(image_size) != image_size
                                   or image_size < 1):
        raise DatasetError(f"--image-size must be a positive integer, got {image_size!r}")
    if channels is not None and channels not in (1, 3):
        raise DatasetError(f"--channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    return (None if image_size is None else int(image_size),
            None if channels is None else int(channels))


# -- finding the files --------------------------------------------------------------------------
def _is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _walk(directory):
    """Every non-hidden file under ``directory``, as paths relative to it, sorted."""
    found = []
    for here, folders, files in os.walk(directory):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        rel = os.path.relpath(here, directory)
        found += [os.path.normpath(os.path.join(rel, f)) for f in files if not f.startswith(".")]
    return sorted(found)


def _scan(root):
    """``(files, splits, classes, ignored, other_count)``: the image files to read (relative to
    ``root``), the split of each ("train", "test" or None for a seeded split), the class names,
    the images that belong to no class ``[(path, reason)]``, and how many non-image files there
    were."""
    if not os.path.isdir(root):
        what = "is not a folder" if os.path.exists(root) else "no such folder"
        raise DatasetError(f"{FOLDER_PREFIX}{root}: {what}")
    everything = _walk(root)
    images = [f for f in everything if _is_image_file(f)]
    if not images:
        others = f"; it holds {len(everything):,} other files" if everything else ""
        raise DatasetError(f"{FOLDER_PREFIX}{root}: no images (files ending in "
                           f"{', '.join(IMAGE_EXTENSIONS)}) under it{others}")
    parts = [f.split(os.sep) for f in images]
    tops = {p[0] for p in parts if len(p) > 1}
    presplit = {"train", "test"} <= tops
    classes = sorted({p[1] for p in parts if presplit and p[0] in ("train", "test") and len(p) > 2}
                     if presplit else {p[0] for p in parts if len(p) > 1})
    files, splits, ignored = [], [], []
    for f, p in zip(images, parts):
        if presplit:
            if p[0] not in ("train", "test"):
                ignored.append((f, "outside train/ and test/"))
                continue
            split, inner = p[0], p[1:]
        else:
            split, inner = None, p
        if classes and len(inner) < 2:
            ignored.append((f, "not in a class subfolder"))
            continue
        files.append(f)
        splits.append(split)
    return files, splits, classes, ignored, len(everything) - len(images)


# -- decoding -----------------------------------------------------------------------------------
def _decode(path, image_size):
    """The image at ``path`` as a uint8 array (H, W) for grey or (H, W, 3) for colour, resized
    and centre-cropped to ``image_size`` when given; raises what Pillow raises."""
    from PIL import Image
    with Image.open(path) as img:
        img.load()
        grey = img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") or (
            img.mode == "P" and _palette_is_grey(img))
        img = img.convert("L" if grey else "RGB")
    if image_size is not None:
        w, h = img.size
        short = min(w, h)
        # torchvision's Resize(S): the shorter side becomes S, the other keeps the aspect ratio
        new = (image_size, int(image_size * h / w)) if w == short else \
              (int(image_size * w / h), image_size)
        if new != (w, h):
            img = img.resize(new, Image.BILINEAR)
        w, h = img.size
        left, top = int(round((w - image_size) / 2)), int(round((h - image_size) / 2))
        img = img.crop((left, top, left + image_size, top + image_size))
    return np.asarray(img, dtype=np.uint8)


def _palette_is_grey(img) -> bool:
    palette = np.asarray(img.getpalette() or [], dtype=np.int64)
    rgb = palette[: len(palette) // 3 * 3].reshape(-1, 3)
    return bool(len(rgb)) and bool((rgb == rgb[:, :1]).all())


def rgb_to_grey_uint8(rgb: np.ndarray) -> np.ndarray:
    """Pillow's ``convert("L")`` of uint8 RGB (..., 3): L = (19595 R + 38470 G + 7471 B + 2^15)
    >> 16, i.e. 0.299 R + 0.587 G + 0.114 B rounded."""
    rgb = rgb.astype(np.uint32)
    return ((19595 * rgb[..., 0] + 38470 * rgb[..., 1] + 7471 * rgb[..., 2] + 0x8000)
            >> 16).astype(np.uint8)


def _read_all(root, files, image_size, channels):
    """``(pixels uint8 (N, C, S, S), kept mask, skipped [(path, reason)])``."""
    arrays, kept, skipped = [], [], []
    for f in files:
        try:
            arrays.append(_decode(os.path.join(root, f), image_size))
            kept.append(True)
        except Exception as e:  # noqa: BLE001 - whatever Pillow raises, the file is reported
            kept.append(False)
            why = " ".join(str(e).replace(os.path.join(root, f), f).split())[:120]
            skipped.append((f, f"cannot be decoded ({type(e).__name__}: {why})"))
    if not arrays:
        raise DatasetError(f"{FOLDER_PREFIX}{root}: none of its {len(files):,} image files "
                           f"could be decoded (first: {skipped[0][0]}: {skipped[0][1]})")
    sizes = {}
    for f, a in zip((f for f, k in zip(files, kept) if k), arrays):
        sizes.setdefault(a.shape[:2], f)
    if len(sizes) > 1:
        (s1, f1), (s2, f2) = list(sizes.items())[:2]
        raise DatasetError(f"{FOLDER_PREFIX}{root}: the images have different sizes ("
                           f"{s1[1]}x{s1[0]} in {f1}, {s2[1]}x{s2[0]} in {f2}); pass "
                           f"--image-size S to resize and centre-crop them all to S x S")
    if channels is None:
        channels = 3 if any(a.ndim == 3 for a in arrays) else 1
    out = np.empty((len(arrays), channels) + arrays[0].shape[:2], dtype=np.uint8)
    for i, a in enumerate(arrays):
        if channels == 1:
            out[i, 0] = rgb_to_grey_uint8(a) if a.ndim == 3 else a
        else:
            out[i] = a.transpose(2, 0, 1) if a.ndim == 3 else a[None]
    return out, np.array(kept), skipped


def _fingerprint(root, files, options) -> str:
    """SHA-256 of the cache format, the options, and every image file's path and bytes."""
    digest = hashlib.sha256(repr((_CACHE_VERSION, options)).encode())
    for f in files:
        digest.update(f.replace(os.sep, "/").encode() + b"\0")
        try:
            with open(os.path.join(root, f), "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as e:
            digest.update(f"unreadable: {e}".encode())      # reported when decoding it
        digest.update(b"\0")
    return digest.hexdigest()


def _read_cache(path, key):
    try:
        with np.load(path, allow_pickle=False) as archive:
            if str(archive["key"]) != key:
                return None
            return {name: archive[name] for name in archive.files}
    except Exception:   # noqa: BLE001 - missing, truncated, not a zip...: decode again
        return None


def _write_cache(path, arrays):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError:                 # a cache that cannot be written is skipped, not an error
        pass


@functools.lru_cache(maxsize=8)
def _load_folder(root, key, image_size, channels, test_fraction, seed, cache_file):
    """Everything about the folder (both splits), from the cache or decoded; read-only.  The
    skip report is warned here, so once per process for each folder and options."""
    data = _read_cache(cache_file, key) if cache_file is not None else None
    if data is None:
        data = _decode_folder(root, key, image_size, channels, test_fraction, seed)
        if cache_file is not None:
            _write_cache(cache_file, data)
    skipped = [str(s) for s in data["skipped"]]
    if skipped:
        shown = ", ".join(skipped[:_REPORT_NAMES])
        more = len(skipped) - _REPORT_NAMES
        warnings.warn(f"{FOLDER_PREFIX}{root}: skipped {len(skipped)} file"
                      f"{'s' if len(skipped) > 1 else ''}: {shown}"
                      + (f" and {more} more" if more > 0 else ""), SkippedImagesWarning,
                      stacklevel=4)
    return {name: read_only(np.array(value)) for name, value in data.items()}


def _decode_folder(root, key, image_size, channels, test_fraction, seed):
    """The arrays of the cache file: pixels, labels, split, files, classes, skip report."""
    files, splits, classes, ignored, _ = _scan(root)
    pixels, kept, skipped = _read_all(root, files, image_size, channels)
    files = [f for f, k in zip(files, kept) if k]
    splits = [s for s, k in zip(splits, kept) if k]
    labels = np.array([classes.index(f.split(os.sep)[1 if s else 0]) if classes else 0
                       for f, s in zip(files, splits)], dtype=np.int64)
    if splits[0] is not None:
        is_test = np.array([s == "test" for s in splits])
        for name, count in (("train", (~is_test).sum()), ("test", is_test.sum())):
            if not count:
                raise DatasetError(f"{FOLDER_PREFIX}{root}: {name}/ holds no image that could "
                                   f"be decoded")
    else:
        if len(files) < 2:
            raise DatasetError(f"{FOLDER_PREFIX}{root}: one image cannot be split into a "
                               f"train and a test set; add images (at least 2)")
        n_test = min(max(1, int(round(test_fraction * len(files)))), len(files) - 1)
        order = np.random.default_rng(seed).permutation(len(files))
        is_test = np.zeros(len(files), dtype=bool)
        is_test[order[len(files) - n_test:]] = True
    report = sorted(ignored + skipped)
    return {"key": np.array(key), "pixels": pixels, "labels": labels, "is_test": is_test,
            "files": np.array([f.replace(os.sep, "/") for f in files]),
            "classes": np.array(classes, dtype=str),
            "skipped": np.array([f"{f} ({why})" for f, why in report], dtype=str)}


class ImageFolder(ImageDataset):
    """The images under ``root`` as an :class:`ImageDataset` (see the module docstring for the
    rules): ``images`` float32 (N, C, H, W) in [0, 1], ``labels`` int64, ``classes`` (the class
    folder names, [] when unlabelled), ``files`` (each image's path relative to ``root``),
    ``skipped`` (``["path (reason)", ...]``, warned about once per process) and ``fingerprint`` (the cache key).

    ``cache=False`` decodes the folder without reading or writing the cache file.
    """

    def __init__(self, root, split: str = "train", image_size: int | None = None,
                 channels: int | None = None, test_fraction: float = DEFAULT_TEST_FRACTION,
                 seed: int = 0, cache: bool = True, name: str | None = None):
        if split not in ("train", "test"):
            raise DatasetError(f"unknown split {split!r}; an image folder has 'train' and "
                               f"'test'")
        if not 0 < test_fraction < 1:
            raise DatasetError(f"test_fraction must be between 0 and 1, got {test_fraction}")
        image_size, channels = _check_options(image_size, channels)
        root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        files = _scan(root)[0]
        options = (image_size, channels, float(test_fraction), int(seed))
        key = _fingerprint(root, files, options)
        cache_file = os.path.join(default_root("folders"), f"{key[:32]}.npz") if cache else None
        data = _load_folder(root, key, *options, cache_file)
        mask = data["is_test"] if split == "test" else ~data["is_test"]
        images = read_only(data["pixels"][mask].astype(np.float32) / np.float32(255))
        classes = [str(c) for c in data["classes"]]
        super().__init__(images, read_only(data["labels"][mask]),
                         name=name or folder_dataset_name(root, image_size, channels),
                         split=split, num_classes=max(1, len(classes)))
        self.root, self.classes, self.fingerprint = root, classes, key
        self.files = [str(f) for f in data["files"][mask]]
        self.skipped = [str(s) for s in data["skipped"]]

    def __repr__(self):
        return (f"ImageFolder(root={self.root!r}, split={self.split!r}, size={len(self)}, "
                f"sample_shape={self.sample_shape}, classes={len(self.classes)})")
