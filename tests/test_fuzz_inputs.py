"""Fuzzed bad input for the product's entry points (hypothesis).

What a user hands nanogen -- checkpoints, IDX and CIFAR-10 files, run directories, state dicts --
is damaged in drawn ways, and each entry point must either end in its documented one-line error
or, where the damage does not matter, work as if nothing had happened:

* ``ng.load`` of a saved tree and of a real run's checkpoint, cut at any length, with bits
  flipped or bytes overwritten (biased towards the zip and ``.npy`` headers): a
  SerializationError whose one line names the file, or the original tree bit for bit;
* ``nanogen sample`` / ``eval`` / ``train --resume`` on a run whose checkpoint is damaged, or
  holds entries that do not fit (wrong shapes, dtypes, types, missing or extra keys): exit status
  0 or 2 (never 1, the "unexpected" status), one line on stderr, and a checkpoint the failed
  command left exactly as it was;
* ``read_idx`` and ``read_cifar10`` of damaged files (headers, dims that disagree with the
  payload, truncation, gzip): a DatasetError naming the file, or an array consistent with what
  the damaged header says;
* run directories whose ``config.json`` lacks keys, has unknown ones, wrong types or is not JSON:
  exit status 2 and one line naming the key;
* ``Module.load_state_dict`` with wrong shapes, dtypes, non-arrays, missing and unexpected keys:
  PyTorch's strict semantics, one RuntimeError naming every key with both shapes or dtypes, and
  nothing copied;
* a save that fails or is interrupted (Ctrl-C) at a drawn moment of ``atomic_write`` -- through
  ``ng.save`` and through a training run -- leaves the previous checkpoint bit-identical and no
  temporary file.

Each test counts its cases; the counts are printed at the end of the session
("fuzz: TEST: N cases").  Hypothesis settings come from the active profile, scaled up for the
cheap tests.
"""
import collections
import contextlib
import errno
import gzip
import io
import json
import math
import os
import shutil
import struct
import sys
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
from nanogen import cli, nn
from nanogen.data import DatasetError, read_cifar10, read_idx
from nanogen.serialization import SerializationError
from nanogen.training import CheckpointError, load_checkpoint
from nanogen.training import checkpoint as checkpoint_module

from .strategies import examples
from .test_data import cifar_batch_bytes


# -- how many cases each test ran, printed at the end of the session ----------------------------
CASES = collections.defaultdict(collections.Counter)     # test -> outcome -> cases


def count_case(outcome=None):
    """Count one case of the calling test, with its outcome ("refused", "loaded", ...)."""
    CASES[sys._getframe(1).f_code.co_name][outcome] += 1


class _CaseSummary:
    def pytest_terminal_summary(self, terminalreporter):
        if CASES:
            terminalreporter.write_sep("-", "fuzzed cases")
            for name, outcomes in CASES.items():
                split = ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items(),
                                                                       key=lambda o: -o[1])
                                  if what is not None)
                terminalreporter.write_line(f"fuzz: {name}: {sum(outcomes.values())} cases"
                                            + (f" ({split})" if split else ""))


_SUMMARY = _CaseSummary()


@pytest.fixture(scope="module", autouse=True)
def _print_case_counts(request):
    """Register the summary hook (tests/conftest.py belongs to others; this stays local)."""
    manager = request.config.pluginmanager
    if not manager.is_registered(_SUMMARY):
        manager.register(_SUMMARY, "nanogen-fuzz-case-summary")
    yield


# -- helpers ------------------------------------------------------------------------------------
def run_cli(*argv):
    """``nanogen ARGV`` in-process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main([str(a) for a in argv])
        except SystemExit as e:
            status = e.code
    return status, out.getvalue(), err.getvalue()


def assert_one_line(message, *fragments):
    text = str(message)
    assert "\n" not in text.strip() and "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def assert_one_line_error(status, stderr, *fragments):
    assert status == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert_one_line(lines[0], *fragments)


def same(a, b):
    """Bit-for-bit equality of two loaded trees (types, dtypes, shapes, values, NaNs)."""
    if isinstance(a, dict):
        return type(a) is type(b) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, ng.Tensor):
        return (isinstance(b, ng.Tensor) and a.requires_grad == b.requires_grad
                and same(a.detach().numpy(), b.detach().numpy()))
    if isinstance(a, (np.ndarray, np.generic)):
        return (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
                and np.asarray(a).tobytes() == np.asarray(b).tobytes())
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def zip_regions(data):
    """Byte ranges of an archive's structure rather than its payload: each entry's local
    header and ``.npy`` header, and the central directory with the end records."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    regions = []
    for info in zf.infolist():
        start = info.header_offset
        name_len, extra_len = struct.unpack("<HH", data[start + 26:start + 30])
        payload = start + 30 + name_len + extra_len
        regions += [(start, payload), (payload, min(payload + 128, len(data)))]
    regions.append((zf.start_dir, len(data)))
    return regions


def offsets(size, regions=()):
    """A byte offset: anywhere, or (as often) inside one of the structural ``regions``."""
    anywhere = st.integers(0, size - 1)
    if not regions:
        return anywhere
    inside = st.sampled_from(regions).flatmap(lambda r: st.integers(r[0], r[1] - 1))
    return st.one_of(anywhere, inside)


@st.composite
def damaged(draw, data, regions=()):
    """``data`` cut short, with 1-4 bits flipped, or with a run of bytes overwritten."""
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    if kind == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    buf = bytearray(data)
    if kind == "flip":
        for pos, bit in draw(st.lists(st.tuples(offsets(len(data), regions), st.integers(0, 7)),
                                      min_size=1, max_size=4)):
            buf[pos] ^= 1 << bit
    else:
        pos = draw(offsets(len(data), regions))
        new = draw(st.binary(min_size=1, max_size=16))
        buf[pos:pos + len(new)] = new
    return bytes(buf)


# -- a saved tree and a real run ----------------------------------------------------------------
class Bundle:
    """A fixture's values with a short repr (hypothesis prints a failing case's arguments)."""

    def __init__(self, name, **values):
        self.__dict__.update(values)
        self._name = name

    def __repr__(self):
        return f"<{self._name}>"


def _tree():
    g = np.random.default_rng(0)
    return {"big": ng.tensor(g.standard_normal((48, 48)).astype(np.float32)),  # > zip's 4 KB reads
            "w": ng.tensor(g.standard_normal((3, 4)).astype(np.float32), requires_grad=True),
            "ints": np.arange(7, dtype=np.int64), "half": np.ones((2, 3), np.float16),
            "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "flags": np.array([True]),
            "scalar": np.float64(2.5), "empty": np.zeros((0, 3), np.float32),
            "record": np.array([(1, 2.5)], dtype=[("名", "<i4"), ("x", "<f8")]),  # .npy 3.0
            "step": 3, "name": "x", "raw": b"\x00\xffbytes", "nan": float("nan"),
            "nested": [(1, 2.5, None, True), {"k": np.array([[1, 2]], np.int8)}]}


@pytest.fixture(scope="module")
def saved_tree():
    tree = _tree()
    buf = io.BytesIO()
    with warnings.catch_warnings():         # numpy notes that the record needs .npy 3.0
        warnings.simplefilter("ignore", UserWarning)
        ng.save(tree, buf)
    data = buf.getvalue()
    return Bundle("saved tree", data=data, tree=ng.load(io.BytesIO(data)),
                  regions=zip_regions(data))


# the smallest run: a 3-latent VAE with 4 and 8 channels that keeps a weight average, 2 steps
TINY = ["vae", "--arg", "latent_dim=3", "--arg", "channels=[4,8]", "--batch-size", 8,
        "--ema-decay", 0.5]
RUN_FILES = ("config.json", "checkpoint.npz", "log.jsonl")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz-run") / "vae"
    status, _, err = run_cli("train", *TINY, "--steps", 2, "--sample-every", 2, "--no-progress",
                             "--out", out)
    assert status == 0, err
    data = (out / "checkpoint.npz").read_bytes()
    return Bundle("tiny run", dir=out, data=data, regions=zip_regions(data))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A directory the hypothesis examples reuse (function-scoped tmp_path is per test)."""
    return tmp_path_factory.mktemp("fuzz-scratch")


def fresh_copy(run, where):
    """A new run directory at ``where`` with the run's config, checkpoint and log."""
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    for name in RUN_FILES:
        shutil.copyfile(run / name, where / name)
    return where


def command(name, run):
    """The argv of one of the commands that read a run directory, kept fast."""
    if name == "sample":
        return ["sample", run, "--n", 1, "--out", run / "drawn.png"]
    if name == "eval":
        return ["eval", run, "--num-examples", 2]
    return ["train", "vae", "--resume", "--steps", 3, "--no-progress", "--out", run]


COMMANDS = ["sample", "eval", "resume"]


# -- checkpoints: damaged bytes -------------------------------------------------------------------
@examples(8)
@given(data=st.data())
def test_load_of_damaged_bytes_fails_with_one_line_or_gives_back_the_tree(saved_tree, scratch,
                                                                           data):
    original, tree, regions = saved_tree.data, saved_tree.tree, saved_tree.regions
    broken = data.draw(damaged(original, regions))
    path = scratch / "tree.ckpt"
    path.write_bytes(broken)
    try:
        back = ng.load(path)
    except SerializationError as e:
        assert_one_line(e, str(path))
        count_case("refused")
    else:
        assert same(tree, back), "a damaged file loaded as something else"
        count_case("loaded intact")


def test_a_npy_header_that_asks_for_fewer_bytes_is_refused_not_read_short(tmp_path):
    """np.load reads only what an entry's header asks for, and zipfile checks the CRC only at
    the entry's end: a shape (100, 100) damaged into (100, 99) used to load 99 columns."""
    buf = io.BytesIO()
    ng.save({"w": ng.ones(100, 100)}, buf)
    data = buf.getvalue()
    assert data.count(b"(100, 100)") == 1
    path = tmp_path / "short.ckpt"
    path.write_bytes(data.replace(b"(100, 100)", b"(100,  99)"))
    with pytest.raises(SerializationError, match=r"declares a float32 array of shape "
                                                 r"\(100, 99\) \(39600 bytes\) but holds 40000"):
        ng.load(path)


@examples(4)
@given(data=st.data())
def test_load_of_a_damaged_run_checkpoint_fails_with_one_line_or_is_intact(tiny_run, scratch,
                                                                           data):
    original, regions = tiny_run.data, tiny_run.regions
    broken = data.draw(damaged(original, regions))
    path = scratch / "checkpoint.npz"
    path.write_bytes(broken)
    try:
        back = load_checkpoint(path)
    except CheckpointError as e:
        assert_one_line(e, str(path))
        with pytest.raises(SerializationError) as info:
            ng.load(path)
        assert_one_line(info.value, str(path))
        count_case("refused")
    else:
        assert same(ng.load(io.BytesIO(original)), back)
        count_case("loaded intact")


@examples(1.5)
@given(data=st.data(), name=st.sampled_from(COMMANDS))
def test_commands_on_a_damaged_checkpoint_exit_2_with_one_line_and_leave_it(tiny_run, scratch,
                                                                            data, name):
    run, original, regions = tiny_run.dir, tiny_run.data, tiny_run.regions
    broken = data.draw(damaged(original, regions))
    copy = fresh_copy(run, scratch / "damaged-run")
    (copy / "checkpoint.npz").write_bytes(broken)
    status, _, err = run_cli(*command(name, copy))
    try:
        intact = same(ng.load(io.BytesIO(original)), ng.load(io.BytesIO(broken)))
    except SerializationError:
        intact = False
    if intact:                               # the damage hit bytes that do not matter
        assert status == 0, err
        count_case("ran on intact bytes")
        return
    assert_one_line_error(status, err, "checkpoint.npz")
    assert (copy / "checkpoint.npz").read_bytes() == broken     # the command left it alone
    count_case("exit 2")


# -- checkpoints whose contents do not fit -------------------------------------------------------
def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, path + (k,))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _paths(v, path + (i,))


def _get(node, path):
    for k in path:
        node = node[k]
    return node


def _replacements(value):
    """Values that could stand where ``value`` stood: other shapes, dtypes and types."""
    junk = [None, "text", -1, 10 ** 30, 2.5, True, [], {}]
    if isinstance(value, ng.Tensor):
        a = value.detach().numpy()
        return junk + [ng.tensor(np.zeros(a.shape + (2,), a.dtype)),
                       ng.tensor(np.zeros((a.size + 1,), a.dtype)), ng.zeros(1),
                       ng.tensor(a.astype(np.int64)), ng.tensor(a.astype(np.float64)),
                       ng.tensor(a.astype(np.float16)), ng.tensor(a.astype(np.complex64)),
                       a.copy(), a.astype(np.str_)]
    return junk


def _fits_a_weight(value, target):
    """Whether load_state_dict must accept ``value`` for the weight ``target``."""
    if not isinstance(value, (ng.Tensor, np.ndarray)):
        return False
    return tuple(value.shape) == tuple(target.shape) and np.dtype(value.dtype).kind in "biuf"


@st.composite
def checkpoint_mutations(draw, checkpoint):
    """(path, kind, value): delete an entry, add an unknown one, or replace one."""
    section = draw(st.sampled_from(sorted(checkpoint)))
    path = draw(st.sampled_from(list(_paths(checkpoint[section], (section,)))))
    container = _get(checkpoint, path[:-1])
    kinds = ["replace", "delete"] if isinstance(container, (dict, list)) else ["replace"]
    if isinstance(_get(checkpoint, path), (dict, list)):
        kinds.append("extra")
    kind = draw(st.sampled_from(kinds))
    value = draw(st.sampled_from(_replacements(_get(checkpoint, path)))) \
        if kind == "replace" else None
    return path, kind, value


def _mutate(checkpoint, path, kind, value):
    import copy
    tree = copy.deepcopy(checkpoint)
    node = _get(tree, path)
    if kind == "extra":
        if isinstance(node, dict):
            node["fuzz_extra"] = ng.zeros(2)
        else:
            node.append(ng.zeros(2))
        return tree
    parent = _get(tree, path[:-1])
    edited = list(parent) if isinstance(parent, tuple) else parent
    if kind == "delete":
        del edited[path[-1]]
    else:
        edited[path[-1]] = value
    if isinstance(parent, tuple):           # (betas): rebuild the tuple in its container
        _get(tree, path[:-2])[path[-2]] = tuple(edited)
    return tree


def _must_fail(checkpoint, path, kind, value):
    """Mutations every command must refuse: a missing top-level entry, a weight that does not
    fit the model, an unknown weight."""
    if len(path) == 1 and kind == "delete" and path[0] != "ema":
        return True
    if path[:1] == ("model",) and len(path) == 2:
        target = checkpoint["model"][path[1]]
        return kind == "delete" or (kind == "replace" and not _fits_a_weight(value, target))
    return path == ("model",) and kind == "extra"


@examples(2)
@given(data=st.data(), name=st.sampled_from(COMMANDS))
def test_commands_on_a_checkpoint_that_does_not_fit_exit_0_or_2_never_1(tiny_run, scratch,
                                                                        data, name):
    run, original = tiny_run.dir, tiny_run.data
    checkpoint = ng.load(io.BytesIO(original))
    path, kind, value = data.draw(checkpoint_mutations(checkpoint))
    copy = fresh_copy(run, scratch / "unfit-run")
    ng.save(_mutate(checkpoint, path, kind, value), copy / "checkpoint.npz")
    written = (copy / "checkpoint.npz").read_bytes()
    status, _, err = run_cli(*command(name, copy))
    if status == 0:
        assert not _must_fail(checkpoint, path, kind, value), (path, kind, value)
        count_case("exit 0")
        return
    assert_one_line_error(status, err, str(copy))
    assert (copy / "checkpoint.npz").read_bytes() == written
    count_case("exit 2")


# -- IDX files ------------------------------------------------------------------------------------
IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_bytes(array, code):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_CODES[code]).tobytes()


def idx_expectation(raw):
    """What the IDX bytes ``raw`` (after any gunzipping) hold: None if they are not a valid
    IDX file, else (shape, big-endian dtype, payload offset) -- written from the format's
    description, not from the reader."""
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_CODES:
        return None
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        return None
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(IDX_CODES[raw[2]])
    if len(raw) - 4 - 4 * ndim != math.prod(shape) * dtype.itemsize:
        return None
    return shape, dtype, 4 + 4 * ndim


@st.composite
def idx_files(draw):
    """(file bytes, IDX bytes inside): a small valid file, then damaged in its header, dims,
    length or gzip stream."""
    code = draw(st.sampled_from(sorted(IDX_CODES)))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)))
    values = np.arange(math.prod(shape)).reshape(shape) % 100
    raw = bytearray(idx_bytes(values, code))
    header = 4 + 4 * len(shape)
    kind = draw(st.sampled_from(["header-bits", "dims", "ndim", "code", "truncate", "append",
                                 "anywhere", "gzip-stream"]))
    if kind == "header-bits":
        for pos, bit in draw(st.lists(st.tuples(st.integers(0, header - 1), st.integers(0, 7)),
                                      min_size=1, max_size=3)):
            raw[pos] ^= 1 << bit
    elif kind == "dims":
        dim = draw(st.integers(0, len(shape) - 1))
        raw[4 + 4 * dim:8 + 4 * dim] = struct.pack(">I", draw(st.one_of(
            st.integers(0, 6), st.just(2 ** 32 - 1), st.integers(0, 2 ** 32 - 1))))
    elif kind == "ndim":
        raw[3] = draw(st.integers(0, 255))
    elif kind == "code":
        raw[2] = draw(st.integers(0, 255))
    elif kind == "truncate":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif kind == "append":
        raw += draw(st.binary(min_size=1, max_size=9))
    elif kind == "anywhere":
        raw = bytearray(draw(damaged(bytes(raw))))
    gz = kind == "gzip-stream" or draw(st.booleans())
    data = gzip.compress(bytes(raw), mtime=0) if gz else bytes(raw)
    if kind == "gzip-stream":
        data = draw(damaged(data, [(0, min(10, len(data))), (max(0, len(data) - 8), len(data))]))
    return data


@examples(8)
@given(data=idx_files())
def test_read_idx_of_damaged_files_is_a_dataset_error_or_what_the_header_says(scratch, data):
    path = scratch / "images-idx3-ubyte"
    path.write_bytes(data)
    raw = data
    if data[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raw = None
    expected = idx_expectation(raw) if raw is not None else None
    if expected is None:
        with pytest.raises(DatasetError) as info:
            read_idx(path)
        assert_one_line(info.value, str(path))
        count_case("refused")
        return
    shape, dtype, start = expected
    array = read_idx(path)
    assert array.shape == shape and array.dtype == dtype.newbyteorder("=")
    np.testing.assert_array_equal(array, np.frombuffer(raw, dtype, offset=start).reshape(shape))
    count_case("read as the header says")


# -- CIFAR-10 batches (written the way tests/test_data.py writes them) -----------------------------
@pytest.fixture(scope="module")
def cifar_batch():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
    labels = [3, 9]
    raw = cifar_batch_bytes(data, labels)
    payload = raw.index(data.tobytes())
    # the pickle's opcodes: everything but the pixel payload
    regions = [(0, payload), (payload + data.nbytes, len(raw))]
    return Bundle("cifar batch", data=raw, regions=regions)


@examples(6)
@given(data=st.data())
def test_read_cifar10_of_damaged_batches_is_a_dataset_error_or_consistent(cifar_batch, scratch,
                                                                          data):
    raw, regions = cifar_batch.data, cifar_batch.regions
    broken = data.draw(damaged(raw, regions))
    folder = scratch / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "test_batch"
    path.write_bytes(broken)
    try:
        images, labels = read_cifar10(str(scratch / "cifar"), "test")
    except DatasetError as e:
        assert_one_line(e, str(path))
        count_case("refused")
        return
    # the format has no checksum: a flipped pixel is a different pixel, but the arrays agree
    assert images.dtype == np.float32 and images.ndim == 4 and images.shape[1:] == (3, 32, 32)
    assert labels.dtype == np.int64 and labels.shape == (len(images),)
    assert ((0 <= images) & (images <= 1)).all() and ((0 <= labels) & (labels <= 9)).all()
    count_case("read consistently")


# -- config.json --------------------------------------------------------------------------------
BAD_VALUES = {
    "model": [5, None, ["vae"], "no-such-model", ""],
    "dataset": [7, None, "mnist6k", {"name": "mnist5k"}],
    "steps": ["3", -1, 0, 2.5, True, None],
    "batch_size": ["8", -8, 0, 8.0, False, None, [8]],
    "lr": ["0.001", -0.001, 0, None, True, [0.001], float("nan"), float("inf")],
    "lr_schedule": ["linear", 3, None, ""],
    "ema_decay": ["0.5", -0.5, 1.5, True, [0.5], float("nan")],
    "seed": ["0", -1, 1.5, None, True],
    "device": [0, None, "gpu", "CPU", ""],
    "model_kwargs": ["latent_dim=2", [2], 5, None, {"no_such_argument": 1},
                     {"latent_dim": "two"}, {"latent_dim": -1}, {"channels": "4,8"}],
    "nanogen_version": [0.1, None, ["0.1.0"]],
}
OTHER_VALUES = {      # valid values that a run may or may not accept: exit 0 or 2, never 1
    "model": ["pixelcnn"], "dataset": ["ring8", "cifar10"], "steps": [1, 5], "batch_size": [4],
    "lr": [0.01, 1], "lr_schedule": ["cosine"], "ema_decay": [None, 0.9], "seed": [7],
    "device": ["cuda"], "model_kwargs": [{}, {"latent_dim": 3}], "nanogen_version": ["9.9"],
}
NEEDED = {"sample": {"model", "dataset"}, "eval": {"model", "dataset"},
          "resume": {"model", "dataset", "batch_size", "lr", "seed"}}   # resume passes --steps


@st.composite
def config_damage(draw, config):
    """(file bytes, the key the error must name or None, whether every command must fail)."""
    kind = draw(st.sampled_from(["missing", "extra", "bad", "other", "json", "not-object"]))
    cfg = dict(config)
    if kind == "missing":
        key = draw(st.sampled_from(sorted(cfg)))
        del cfg[key]
        return json.dumps(cfg).encode(), ("missing", key)
    if kind == "extra":
        key = draw(st.one_of(st.sampled_from(["batch_sise", "notes", "ema_dacay", ""]),
                             st.text(max_size=8)).filter(lambda k: k not in cfg))
        cfg[key] = draw(st.sampled_from([1, "x", None, [1]]))
        return json.dumps(cfg).encode(), ("extra", key)
    if kind in ("bad", "other"):
        pool = BAD_VALUES if kind == "bad" else OTHER_VALUES
        key = draw(st.sampled_from(sorted(pool)))
        cfg[key] = draw(st.sampled_from(pool[key]))
        return json.dumps(cfg).encode(), (kind, key)
    if kind == "json":
        text = json.dumps(config, indent=2).encode()
        return draw(st.one_of(st.just(text[:draw(st.integers(0, len(text) - 1))]),
                              st.binary(max_size=40), st.just(b"\xff\xfe{}"))), ("json", None)
    value = draw(st.sampled_from([[], [config], "vae", 3, None, True, [[[[[]]]]]]))
    return json.dumps(value).encode(), ("json", None)


@examples(3)
@given(data=st.data(), name=st.sampled_from(COMMANDS))
def test_commands_on_a_damaged_config_exit_2_naming_the_problem(tiny_run, scratch, data, name):
    run = tiny_run.dir
    config = json.loads((run / "config.json").read_text())
    text, (kind, key) = data.draw(config_damage(config))
    copy = fresh_copy(run, scratch / "config-run")
    (copy / "config.json").write_bytes(text)
    before = (copy / "checkpoint.npz").read_bytes()
    status, _, err = run_cli(*command(name, copy))
    must_fail = kind in ("extra", "bad", "json") or (kind == "missing" and key in NEEDED[name])
    if status == 0:
        assert not must_fail, (kind, key, err)
        count_case("exit 0")
        return
    fragments = {"extra": [repr(key)], "json": ["config.json"]}.get(kind, [])
    if kind == "missing" and key in NEEDED[name]:
        fragments = [repr(key)]
    if kind == "bad":
        fragments = ["argument"] if key == "model_kwargs" else \
            [key if key in ("model", "dataset") else repr(key)]
    assert_one_line_error(status, err, *fragments)
    assert (copy / "checkpoint.npz").read_bytes() == before
    count_case("exit 2")


@pytest.mark.parametrize("flags, fragment", [
    (["--seed", -1], "--seed"), (["--ema-decay", 2], "--ema-decay"),
    (["--ema-decay", -0.5], "--ema-decay"), (["--arg", "latent_dim=-1"], "latent_dim"),
    (["--arg", 'channels="four"'], "channels"),
])
def test_train_flags_out_of_range_exit_2_before_anything_is_written(tmp_path, flags, fragment):
    count_case()
    out = tmp_path / "never"
    status, _, err = run_cli("train", *TINY, "--steps", 1, "--no-progress", "--out", out, *flags)
    assert_one_line_error(status, err, fragment)
    assert not (out / "checkpoint.npz").exists()


# -- state dicts --------------------------------------------------------------------------------
def small_module():
    ng.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


NON_ARRAYS = [None, "weights", 1.5, 3, [1.0, 2.0], {"a": 1}, b"\x00"]
DTYPES = [np.int8, np.int32, np.int64, np.uint8, np.float16, np.float64, np.bool_,
          np.complex64, np.str_, object]


@st.composite
def state_dict_edits(draw):
    """A module's state dict with drawn entries dropped, added, reshaped, retyped or replaced."""
    own = small_module().state_dict()
    sd = collections.OrderedDict()
    for key, value in own.items():
        edit = draw(st.sampled_from(["keep", "keep", "numpy", "drop", "shape", "dtype",
                                     "non-array"]))
        a = value.numpy()
        if edit == "keep":
            sd[key] = ng.tensor(a + 1)
        elif edit == "numpy":
            sd[key] = (a + 1).astype(a.dtype)
        elif edit == "shape":
            shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
            if shape != a.shape:
                sd[key] = np.ones(shape, np.float32)
            else:
                sd[key] = ng.tensor(a + 1)
        elif edit == "dtype":
            dtype = draw(st.sampled_from(DTYPES))
            values = (np.arange(a.size).reshape(a.shape) % 3).astype(dtype)
            sd[key] = ng.tensor(values) if np.dtype(dtype).kind in "biufc" and \
                draw(st.booleans()) else values
        elif edit == "non-array":
            sd[key] = draw(st.sampled_from(NON_ARRAYS))
    for name in draw(st.lists(st.sampled_from(["extra.weight", "0.weight_orig", "2.bias"]),
                              unique=True, max_size=2)):
        sd[name] = ng.zeros(2)
    return sd


@examples(8)
@given(sd=state_dict_edits(), strict=st.booleans())
def test_load_state_dict_follows_pytorchs_strict_rules_and_names_each_key(sd, strict):
    module = small_module()
    own = module.state_dict()
    before = {k: v.numpy().copy() for k, v in own.items()}
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    problems = {}                # key -> fragments its part of the message must hold
    for key, target in own.items():
        if key not in sd:
            continue
        value = sd[key]
        if not isinstance(value, (ng.Tensor, np.ndarray, np.generic)):
            problems[key] = [f'"{key}"', type(value).__name__]
        elif tuple(value.shape) != tuple(target.shape):
            problems[key] = [key, str(tuple(value.shape)), str(tuple(target.shape))]
        elif np.dtype(value.dtype).kind not in "biuf":
            problems[key] = [key, str(np.dtype(value.dtype)), str(target.dtype)]
    if problems or (strict and (missing or unexpected)):
        with pytest.raises(RuntimeError) as info:
            module.load_state_dict(sd, strict=strict)
        message = str(info.value)
        lines = message.split("\n\t")[1:]          # PyTorch's layout: one problem per line
        for key, fragments in problems.items():
            assert any(all(f in line for f in fragments) for line in lines), (key, message)
        if strict:
            for key in missing + unexpected:
                assert f'"{key}"' in message, (key, message)
        for key, value in module.state_dict().items():      # nothing was copied
            np.testing.assert_array_equal(value.numpy(), before[key])
        count_case("refused")
        return
    result = module.load_state_dict(sd, strict=strict)
    assert result.missing_keys == missing and result.unexpected_keys == unexpected
    for key, value in module.state_dict().items():
        source = sd[key].numpy() if isinstance(sd.get(key), ng.Tensor) else sd.get(key)
        expect = before[key] if key not in sd else np.asarray(source).astype(value.dtype)
        np.testing.assert_array_equal(value.numpy(), expect)
    count_case("loaded")


@pytest.mark.parametrize("value", [[("0.weight", ng.zeros(2, 3))], None, "state"])
def test_load_state_dict_of_something_not_dict_like_is_a_type_error(value):
    count_case()
    with pytest.raises(TypeError, match="dict-like"):
        small_module().load_state_dict(value)


# -- saves that fail or are interrupted ---------------------------------------------------------
class _WriterThatFails(io.BufferedWriter):
    """A file that takes ``limit`` bytes, then raises ``error`` (a full disk, a Ctrl-C)."""

    def __init__(self, raw, limit, error):
        super().__init__(raw)
        self.limit, self.error, self.written = limit, error, 0

    def write(self, b):
        b = bytes(b)
        if self.written + len(b) > self.limit:
            super().write(b[:self.limit - self.written])
            self.written = self.limit
            raise self.error
        self.written += len(b)
        return super().write(b)


FAULT_POINTS = ["write", "fsync-file", "chmod", "replace-before", "replace-after", "fsync-dir"]
AFTER_THE_RENAME = {"replace-after", "fsync-dir"}


@contextlib.contextmanager
def fault(point, error, limit=0):
    """Make ``atomic_write`` fail at ``point`` with ``error`` (once)."""
    real = {name: getattr(os, name) for name in ("fdopen", "fsync", "chmod", "replace")}
    state = {"fsyncs": 0, "fired": False}

    def fire():
        if state["fired"]:
            return False
        state["fired"] = True
        return True

    def fdopen(fd, mode="r", *args, **kwargs):
        if "w" in mode and fire():
            return _WriterThatFails(io.FileIO(fd, "wb"), limit, error)
        return real["fdopen"](fd, mode, *args, **kwargs)

    def fsync(fd):
        state["fsyncs"] += 1
        wanted = 1 if point == "fsync-file" else 2
        if state["fsyncs"] == wanted and fire():
            raise error
        return real["fsync"](fd)

    def chmod(path, mode, *args, **kwargs):
        if fire():
            raise error
        return real["chmod"](path, mode, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if point == "replace-after":
            real["replace"](src, dst, *args, **kwargs)
        if fire():
            raise error
        if point != "replace-after":
            real["replace"](src, dst, *args, **kwargs)

    patched = {"write": {"fdopen": fdopen}, "fsync-file": {"fsync": fsync},
               "fsync-dir": {"fsync": fsync}, "chmod": {"chmod": chmod},
               "replace-before": {"replace": replace}, "replace-after": {"replace": replace}}
    with pytest.MonkeyPatch.context() as mp:
        for name, fn in patched[point].items():
            mp.setattr(os, name, fn)
        yield


def _error(kind):
    if kind == "ctrl-c":
        return KeyboardInterrupt()
    return OSError(errno.ENOSPC, "No space left on device")


@examples(6)
@given(point=st.sampled_from(FAULT_POINTS), kind=st.sampled_from(["disk-full", "ctrl-c"]),
       fraction=st.floats(0, 1))
def test_a_save_that_fails_at_any_moment_keeps_the_previous_checkpoint(tiny_run, scratch,
                                                                       point, kind, fraction):
    original = tiny_run.data
    folder = scratch / "atomic"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    path = folder / "checkpoint.npz"
    path.write_bytes(original)
    new = ng.load(io.BytesIO(original))
    new["step"] = 99
    error = _error(kind)
    suppressed = isinstance(error, OSError) and point in ("chmod", "fsync-dir")
    with fault(point, error, limit=min(int(fraction * len(original)), len(original) - 1)):
        if suppressed:                       # atomic_write lets these pass: nothing is lost
            ng.save(new, path)
        else:
            with pytest.raises(type(error)):
                ng.save(new, path)
    assert os.listdir(folder) == ["checkpoint.npz"], "a temporary file was left behind"
    if point in AFTER_THE_RENAME or suppressed:
        assert same(new, load_checkpoint(path))          # the new one, complete
        count_case("the new checkpoint, complete")
    else:
        assert path.read_bytes() == original             # the previous one, bit for bit
        assert same(ng.load(io.BytesIO(original)), load_checkpoint(path))
        count_case("the previous checkpoint, bit for bit")


@given(point=st.sampled_from(FAULT_POINTS), kind=st.sampled_from(["disk-full", "ctrl-c"]),
       fraction=st.floats(0, 1))
def test_a_run_whose_checkpoint_save_fails_keeps_its_previous_checkpoint(tiny_run, scratch,
                                                                         point, kind, fraction):
    run, original = tiny_run.dir, tiny_run.data
    copy = fresh_copy(run, scratch / "failing-save")
    real_save = checkpoint_module.save

    def save_with_a_fault(obj, path):          # only the checkpoint's save fails, once
        with fault(point, _error(kind), limit=min(int(fraction * len(original)),
                                                  len(original) - 1)):
            real_save(obj, path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint_module, "save", save_with_a_fault)
        status, _, err = run_cli(*command("resume", copy))
    assert status in (0, 1, 130), err
    assert "Traceback" not in err
    leftovers = [p for p in copy.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    data = (copy / "checkpoint.npz").read_bytes()
    if data != original:                     # a save that got through: complete, at step 3
        assert load_checkpoint(copy)["step"] == 3
    if status == 1:                          # the disk filled: one line says so
        assert "No space left on device" in err.strip().splitlines()[-1]
        if point not in AFTER_THE_RENAME:    # and the previous checkpoint stays
            assert data == original
    count_case("the previous checkpoint, bit for bit" if data == original else
               "the new checkpoint, complete")
