"""``ng.save`` / ``ng.load``: checkpoints as one NumPy ``.npz`` file that never runs code to load.

What can be saved: nested dicts (keys ``str``, ``int``, ``float``, ``bool``, ``None`` or tuples
of those), lists, tuples, ``int``, ``float``, ``bool``, ``None``, ``str``, ``bytes``, Tensors,
NumPy arrays and NumPy scalars -- a model's ``state_dict()``, an optimizer's, a scheduler's, an
RNG state, or a checkpoint dict holding all of them.

The file format
---------------
An ordinary ``.npz`` archive (a zip of ``.npy`` files, readable with ``np.load``):

* ``a0``, ``a1``, ... -- one entry per array (a tensor's values, an ndarray, a NumPy scalar, a
  ``bytes`` object), with its exact dtype and shape.  An array referenced twice (tied weights) is
  stored once and comes back shared.
* ``__nanogen_tree__`` -- a uint8 array holding ASCII JSON
  ``{"format": "nanogen", "version": 1, "tree": NODE}``.  A NODE is a JSON null / bool / number /
  string for the Python scalar of that type (finite floats are written with ``repr``, so they come
  back bit for bit), or an object tagged by ``"$"``::

      {"$": "list",  "v": [NODE, ...]}            {"$": "tuple", "v": [NODE, ...]}
      {"$": "dict",  "k": [NODE, ...], "v": [NODE, ...]}    ("odict" for an OrderedDict)
      {"$": "tensor", "a": "a3", "rg": true}       {"$": "ndarray", "a": "a4"}
      {"$": "npscalar", "a": "a5"}                 {"$": "bytes", "a": "a6"}
      {"$": "float", "v": "nan" | "inf" | "-inf"}

The archive is read with ``allow_pickle=False``: loading a file, even a malicious one, never
executes code.  Every entry is read to its end, so the zip's CRC-32 of each entry is checked and a
damaged file is reported instead of giving back different numbers; an entry whose ``.npy`` header
describes another amount of data than the entry holds is reported before anything is allocated.
Tensors come back as CPU tensors (``map_location="cuda"`` puts them on the GPU)
with ``requires_grad`` as saved; NumPy arrays come back as NumPy arrays.  Containers are saved as
their base type: an OrderedDict stays an OrderedDict, other dict subclasses come back as dicts,
named tuples as tuples, tensor subclasses (Parameter) as Tensors.

Saving is atomic: the archive is written to a temporary file in the target's directory, flushed
and fsync'ed, then renamed over the target with ``os.replace``.  A crash mid-write leaves the
previous checkpoint intact and no partial file under the target's name.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import secrets
import stat
import struct
import tokenize
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from . import backend
from .backend import Device
from .tensor import Tensor

__all__ = ["save", "load", "SerializationError"]

_TREE = "__nanogen_tree__"
_FORMAT = "nanogen"
_VERSION = 1


class SerializationError(ValueError):
    """A file that :func:`load` cannot read: truncated, corrupt, or not written by :func:`save`."""


# ---------------------------------------------------------------------------------------- save
class _Encoder:
    """Turn an object into a JSON-able tree, collecting its arrays in ``self.arrays``."""

    def __init__(self):
        self.arrays = {}       # entry name -> NumPy array
        self._names = {}       # id(array object) -> entry name
        self._keep = []        # keeps host copies alive so their ids stay unique
        self._open = set()     # ids of the containers being encoded (to catch cycles)

    def _array_entry(self, array, host):
        name = self._names.get(id(array))
        if name is None:
            if host.dtype.hasobject:
                raise TypeError("object arrays cannot be saved (they would need pickle)")
            name = f"a{len(self.arrays)}"
            self._names[id(array)] = name
            self._keep.append(array)
            self.arrays[name] = host
        return name

    def encode(self, obj, where):
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, np.generic):          # before float: np.float64 subclasses float
            return {"$": "npscalar", "a": self._array_entry(obj, np.asarray(obj))}
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            if math.isfinite(obj):
                return float(obj)
            return {"$": "float", "v": "nan" if math.isnan(obj) else
                    ("inf" if obj > 0 else "-inf")}
        if isinstance(obj, Tensor):
            return {"$": "tensor", "a": self._array_entry(obj.data, obj._host()),
                    "rg": bool(obj.requires_grad)}
        if isinstance(obj, np.ndarray):
            return {"$": "ndarray", "a": self._array_entry(obj, obj)}
        if isinstance(obj, (bytes, bytearray)):
            return {"$": "bytes", "a": self._array_entry(obj, np.frombuffer(obj, np.uint8))}
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in self._open:
                raise ValueError(f"ng.save: the object contains itself (at {where})")
            self._open.add(id(obj))
            try:
                return self._encode_container(obj, where)
            finally:
                self._open.discard(id(obj))
        raise TypeError(f"ng.save: cannot save a {type(obj).__module__}.{type(obj).__qualname__} "
                        f"(at {where}); supported are dicts, lists, tuples, None, bool, int, "
                        f"float, str, bytes, Tensors, NumPy arrays and NumPy scalars")

    def _encode_container(self, obj, where):
        if isinstance(obj, dict):
            keys, values = [], []
            for k, v in obj.items():
                keys.append(self._encode_key(k, where))
                values.append(self.encode(v, f"{where}[{k!r}]"))
            tag = "odict" if isinstance(obj, OrderedDict) else "dict"
            return {"$": tag, "k": keys, "v": values}
        tag = "tuple" if isinstance(obj, tuple) else "list"
        return {"$": tag, "v": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}

    def _encode_key(self, key, where):
        plain = key is None or isinstance(key, (bool, int, float, str))
        if plain and not isinstance(key, np.generic):
            return self.encode(key, where)
        if isinstance(key, tuple):
            return {"$": "tuple", "v": [self._encode_key(k, where) for k in key]}
        raise TypeError(f"ng.save: a dict key at {where} is a {type(key).__name__}; keys must be "
                        f"str, int, float, bool, None or tuples of those")


def save(obj, f, *, compress: bool = False):
    """Save ``obj`` (nested dicts / lists / tuples of scalars, strings, Tensors and arrays) to
    ``f``, a path (``str`` or ``os.PathLike``) or a writable binary file object.

    A path is written atomically (temporary file, fsync, ``os.replace``): an interrupted save
    leaves the previous file intact.  The name is used as given (no ``.npz`` is appended).
    ``compress=True`` deflates each entry (``np.savez_compressed``): smaller, slower to write
    and read, loaded the same way (the shipped pretrained weights use it).
    """
    enc = _Encoder()
    tree = enc.encode(obj, "obj")
    header = json.dumps({"format": _FORMAT, "version": _VERSION, "tree": tree},
                        allow_nan=False, separators=(",", ":"))
    entries = dict(enc.arrays)
    entries[_TREE] = np.frombuffer(header.encode("ascii"), dtype=np.uint8)

    def write(fh):
        (np.savez_compressed if compress else np.savez)(fh, allow_pickle=False, **entries)

    if hasattr(f, "write"):
        write(f)
        return
    atomic_write(_fspath(f), write)


def _fspath(f):
    if not isinstance(f, (str, bytes, os.PathLike)):
        raise TypeError(f"expected a path (str or os.PathLike) or a binary file object, got "
                        f"{type(f).__name__}")
    return os.fsdecode(os.fspath(f))


def atomic_write(path, write):
    """Run ``write(binary_file)`` on a temporary file beside ``path``, then move it over ``path``.

    The temporary file is flushed and fsync'ed before ``os.replace``, so ``path`` always holds
    either its old contents or the complete new ones, and a failed ``write`` leaves no temporary
    file behind.  ``ng.save``, the dataset caches, sample grids and plots all write this way.
    Returns ``path``.

    Only a process killed outright (SIGKILL, power loss, or a second Ctrl-C inside the cleanup
    itself) can leave its temporary file, ``.NAME.XXXXXXXX.tmp`` beside ``path``: nothing reads
    it, and it can be deleted.
    """
    given = os.fspath(path)
    path = os.path.realpath(given)      # write through a symlink, as open(path, "wb") would
    directory, base = os.path.split(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(2, f"cannot write {given}: the directory does not exist",
                                directory)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)           # the umask applies, as for open()
            break
        except FileExistsError:                       # pragma: no cover - 1 in 2**32
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):            # keep an existing file's permissions
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    return given


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):                # pragma: no cover - Windows
        return
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:                                   # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:                                   # pragma: no cover
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------- load
class _Corrupt(Exception):
    """Raised while decoding; turned into a SerializationError naming the file."""


# what reading a damaged archive can raise, from zipfile (RuntimeError: a flipped "encrypted"
# flag), zlib, numpy's .npy header parser (SyntaxError, TokenError) and json
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError, struct.error,
                NotImplementedError, UnicodeDecodeError, OverflowError, RuntimeError, SyntaxError,
                tokenize.TokenError, _Corrupt)

_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
_CHUNK = 1 << 20


def _read_entry(zf, name):
    """The array stored in the archive's entry ``name`` (``name.npy``), read to the entry's end.

    ``np.load`` reads only as many bytes as the ``.npy`` header asks for, so a damaged header
    that asks for fewer (a shape ``(100, 100)`` flipped to ``(10, 100)``) would give back a
    wrong array without zipfile ever checking the entry's CRC.  Here the header must describe
    exactly the bytes the entry holds, and reaching the end makes zipfile check the CRC.
    """
    try:
        info = zf.getinfo(name + ".npy")
    except KeyError:
        raise _Corrupt(f"the archive lacks the entry {name + '.npy'!r}") from None
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version not in _HEADER_READERS:      # 3.0 (non-latin-1 field names): numpy parses it
            fh.seek(0)
            raw = fh.read()                         # the whole entry: its CRC is checked
            source = io.BytesIO(raw)
            array = np.lib.format.read_array(source, allow_pickle=False)
            if source.tell() != len(raw):
                raise _Corrupt(f"the entry {name!r} holds {len(raw) - source.tell()} bytes "
                               f"more than its .npy header describes")
            return array
        shape, fortran_order, dtype = _HEADER_READERS[version](fh)
        if dtype.hasobject:
            raise _Corrupt(f"the entry {name!r} holds Python objects (loading them would "
                           f"need pickle)")
        count = math.prod(shape)
        size, left = count * dtype.itemsize, info.file_size - fh.tell()
        if size != left:
            raise _Corrupt(f"the entry {name!r} declares a {dtype} array of shape {shape} "
                           f"({size} bytes) but holds {left} bytes")
        array = np.empty(count, dtype)
        view = memoryview(array.view(np.uint8)) if size else memoryview(b"")
        done = 0
        while done < size:
            got = fh.readinto(view[done:done + _CHUNK])
            if not got:
                raise _Corrupt(f"the entry {name!r} ends after {done} of its {size} bytes")
            done += got
        if fh.read(1):                          # at the entry's end zipfile checks the CRC
            raise _Corrupt(f"the entry {name!r} is longer than its .npy header describes")
    if fortran_order:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


class _Decoder:
    def __init__(self, npz, device):
        self.npz = npz
        self.device = device
        self._arrays = {}          # entry name -> NumPy array, read once
        self._on_device = {}       # entry name -> array on the target device

    def _array(self, node):
        name = node.get("a")
        if not isinstance(name, str) or name == _TREE or name not in self.npz.files:
            raise _Corrupt(f"the tree refers to an array entry {name!r} that the archive lacks")
        if name not in self._arrays:
            self._arrays[name] = _read_entry(self.npz.zip, name)
        return self._arrays[name]

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            raise _Corrupt("a bare JSON list in the tree")
        if not isinstance(node, dict):
            raise _Corrupt(f"unexpected JSON value {node!r}")
        tag = node.get("$")
        if tag in ("list", "tuple"):
            items = [self.decode(v) for v in self._list(node, "v")]
            return items if tag == "list" else tuple(items)
        if tag in ("dict", "odict"):
            keys, values = self._list(node, "k"), self._list(node, "v")
            if len(keys) != len(values):
                raise _Corrupt("a dict node with different numbers of keys and values")
            out = OrderedDict() if tag == "odict" else {}
            for k, v in zip(keys, values):
                key = self.decode(k)
                try:
                    out[key] = self.decode(v)
                except TypeError:
                    raise _Corrupt(f"an unhashable dict key {key!r}") from None
            return out
        if tag == "tensor":
            arr = self._array(node)
            if self.device.type != "cpu":          # one device copy per entry keeps sharing
                name = node["a"]
                if name not in self._on_device:
                    self._on_device[name] = backend.to_device_array(arr, self.device)
                arr = self._on_device[name]
            t = Tensor._make(arr, self.device)
            if node.get("rg"):
                if arr.dtype.kind not in "fc":
                    raise _Corrupt(f"a {arr.dtype} tensor marked requires_grad")
                t.requires_grad = True
            return t
        if tag == "ndarray":
            return self._array(node)
        if tag == "npscalar":
            arr = self._array(node)
            if arr.ndim != 0:
                raise _Corrupt("a NumPy scalar stored with a non-scalar shape")
            return arr[()]
        if tag == "bytes":
            arr = self._array(node)
            if arr.dtype != np.uint8 or arr.ndim != 1:
                raise _Corrupt("a bytes entry that is not a 1-d uint8 array")
            return arr.tobytes()
        if tag == "float":
            v = node.get("v")
            if v not in ("nan", "inf", "-inf"):
                raise _Corrupt(f"a float node with value {v!r}")
            return float(v)
        raise _Corrupt(f"an unknown node tag {tag!r}")

    @staticmethod
    def _list(node, key):
        v = node.get(key)
        if not isinstance(v, list):
            raise _Corrupt(f"a {node.get('$')!r} node without its {key!r} list")
        return v


def load(f, map_location=None, *, weights_only=True):
    """Load an object saved by :func:`save` from a path or a readable binary file object.

    ``map_location``: ``None`` or ``"cpu"`` gives CPU tensors; ``"cuda"`` (or an
    ``ng.device``) puts every tensor on the GPU.  NumPy arrays stay NumPy arrays.
    ``weights_only`` is accepted for PyTorch compatibility: loading never runs code anyway.

    Raises ``FileNotFoundError`` for a missing file and :class:`SerializationError` (a
    ``ValueError``), naming the file and the problem, for one that is truncated, corrupt or not
    a nanogen checkpoint.
    """
    del weights_only
    if map_location is None:
        device = backend.CPU
    elif isinstance(map_location, (str, Device)):
        device = Device(map_location)
    else:
        raise TypeError(f"map_location must be None, a device name or an ng.device, got "
                        f"{type(map_location).__name__}")
    backend.check_device_available(device)
    if hasattr(f, "read"):
        name = f"file object {getattr(f, 'name', f)!r}"
        source = f
    else:
        source = _fspath(f)
        name = repr(source)

    def fail(problem, cause=None):
        detail = ""
        if cause is not None and not isinstance(cause, _Corrupt):
            text = " ".join(str(cause).split())         # one line, whatever the cause says
            detail = f" ({type(cause).__name__}: {text[:160]}{'...' if len(text) > 160 else ''})"
        return SerializationError(f"ng.load: {name} {problem}{detail}")

    try:
        archive = np.load(source, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except EOFError:
        raise fail("is not a nanogen checkpoint: the file is empty") from None
    except ValueError as e:
        if "pickle" not in str(e):
            raise fail("is not a nanogen checkpoint, or a corrupt one", e) from None
        # neither the zip nor the .npy signature: NumPy would have tried to unpickle it
        raise fail("is not a nanogen checkpoint: it is not a NumPy .npz (zip) archive") from None
    except _READ_ERRORS + (OSError,) as e:
        raise fail("is not a nanogen checkpoint, or a truncated / corrupt one: its zip "
                   "structure cannot be read", e) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise fail("is a single NumPy array (.npy file), not a nanogen checkpoint written by "
                   "ng.save")
    with archive:
        try:
            if _TREE not in archive.files:
                raise fail("is a .npz archive without nanogen's tree entry "
                           f"{_TREE!r}: it was not written by ng.save (np.savez?)")
            raw = _read_entry(archive.zip, _TREE)
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise _Corrupt(f"the entry {_TREE!r} is not a 1-d uint8 array")
            header = json.loads(raw.tobytes().decode("ascii"))
            if not isinstance(header, dict) or header.get("format") != _FORMAT:
                raise _Corrupt("the tree entry lacks the 'nanogen' format marker")
            version = header.get("version")
            if not isinstance(version, int) or version > _VERSION:
                raise fail(f"was written in format version {version!r} by a newer nanogen; "
                           f"this one reads version {_VERSION}")
            if "tree" not in header:
                raise _Corrupt("the header has no 'tree'")
            return _Decoder(archive, device).decode(header["tree"])
        except SerializationError:
            raise
        except _READ_ERRORS + (OSError, RecursionError) as e:
            what = str(e) if isinstance(e, _Corrupt) else "its contents cannot be read"
            raise fail(f"is corrupt or truncated: {what}", e) from None
