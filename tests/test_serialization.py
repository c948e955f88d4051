"""ng.save / ng.load: exact round trips, atomic writes, and clear errors for bad files."""
import io
import json
import math
import os
import pathlib
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nanogen as ng
from nanogen.serialization import SerializationError
from .strategies import examples


# ------------------------------------------------------------------------------ exact equality
def assert_same(a, b, where="obj"):
    """Equal values *and* types, all the way down; arrays bit for bit (NaN payloads included)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or \
            (a == b and math.copysign(1, a) == math.copysign(1, b)), f"{where}: {a} != {b}"
    elif isinstance(a, ng.Tensor):
        assert a.requires_grad == b.requires_grad, where
        assert b.device == "cpu", where
        assert_same(a.data, b.data, where)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape}"
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), where
    elif isinstance(a, dict):
        assert len(a) == len(b), where
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            assert_same(ka, kb, f"{where} key")
            assert_same(va, vb, f"{where}[{ka!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def round_trip(obj, **load_kw):
    buf = io.BytesIO()
    ng.save(obj, buf)
    buf.seek(0)
    return ng.load(buf, **load_kw)


# ------------------------------------------------------------------------------ strategies
DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
          np.bool_, np.complex64]
arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))


@st.composite
def tensors(draw):
    arr = draw(arrays)
    t = ng.Tensor._make(arr, ng.device("cpu"))
    if arr.dtype.kind in "fc" and draw(st.booleans()):
        t.requires_grad = True
    return t


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2 ** 80, max_value=2 ** 80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6), st.binary(max_size=6),
    st.sampled_from([np.float32(1.5), np.float64(-0.0), np.int64(7), np.bool_(True),
                     np.uint8(255)]))
keys = st.one_of(st.text(max_size=5), st.integers(-3, 50),
                 st.tuples(st.integers(0, 3), st.text(max_size=2)))
trees = st.recursive(
    st.one_of(scalars, arrays, tensors()),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.lists(children, max_size=4).map(tuple),
                               st.dictionaries(keys, children, max_size=4),
                               st.dictionaries(st.text(max_size=4), children, max_size=3)
                               .map(OrderedDict)),
    max_leaves=12)


# ------------------------------------------------------------------------------ round trips
@examples(2.5)
@given(trees)
def test_round_trip_is_exact(obj):
    assert_same(obj, round_trip(obj))


@given(trees)
def test_round_trip_through_a_path(obj):
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "thing.ckpt"
        ng.save(obj, path)
        assert os.listdir(d) == ["thing.ckpt"]        # no temp left, no ".npz" appended
        assert_same(obj, ng.load(str(path)))


def test_checkpoint_of_everything(tmp_path):
    w = ng.randn(4, 3, requires_grad=True)
    b = ng.zeros(4, requires_grad=True)
    opt = ng.optim.Adam([w, b], lr=0.01, betas=(0.8, 0.95))
    w.grad, b.grad = ng.ones_like(w), ng.ones_like(b)
    opt.step()
    model_sd = OrderedDict(weight=w.detach(), bias=b.detach(),
                           running=ng.tensor(np.arange(3, dtype=np.float64)),
                           num_batches_tracked=ng.tensor(12))
    ckpt = {"model": model_sd, "optimizer": opt.state_dict(), "rng": ng.get_rng_state(),
            "epoch": 7, "best": float("inf"), "history": [(1, 0.5), (2, 0.25)],
            "config": {"lr": 1e-3, "layers": (64, 64), "name": "vae", "extra": None}}
    ng.save(ckpt, tmp_path / "ckpt.pt")
    back = ng.load(tmp_path / "ckpt.pt")
    assert_same(ckpt, back)
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.95)
    assert list(back["optimizer"]["state"]) == [0, 1]          # int keys stay int
    assert back["model"]["running"].dtype == np.float64          # float64 stays float64
    assert back["model"]["num_batches_tracked"].dtype == np.int64
    assert back["model"]["weight"].data.flags.writeable


def test_tensor_details():
    src = np.arange(12, dtype=np.float32).reshape(3, 4)
    obj = {"t": ng.from_numpy(src.T),                            # non-contiguous
           "f": ng.from_numpy(np.asfortranarray(src)),
           "g": ng.tensor([1.0, 2.0], requires_grad=True),
           "empty": ng.zeros(0, 5), "scalar": ng.tensor(3.5, dtype=ng.float64),
           "half": ng.tensor([1.0, 2.0], dtype=ng.float16)}
    back = round_trip(obj)
    assert_same(obj, back)
    np.testing.assert_array_equal(back["t"].data, src.T)
    assert back["g"].requires_grad and back["g"].is_leaf and back["g"].grad is None


def test_shared_arrays_stay_shared():
    w = ng.randn(3, 3)
    arr = np.ones(4)
    back = round_trip({"a": w, "tied": w, "view": w.detach(), "x": arr, "y": [arr]})
    assert back["a"].data is back["tied"].data is back["view"].data
    assert back["x"] is back["y"][0]


def test_lone_surrogates_and_odd_strings():
    obj = {"\ud800": "x\x00y", "": "é漢字🙂", "$": {"$": "tensor"}}
    assert_same(obj, round_trip(obj))


def test_map_location(monkeypatch):
    obj = {"w": ng.randn(2, requires_grad=True), "arr": np.ones(2)}
    assert round_trip(obj, map_location="cpu")["w"].device == "cpu"
    assert round_trip(obj, map_location=ng.device("cpu"))["w"].device == "cpu"
    with pytest.raises(TypeError, match="map_location"):
        round_trip(obj, map_location=3)
    if not ng.cuda.is_available():                    # exercise the path under the simulator
        monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    back = round_trip(obj, map_location="cuda")
    assert back["w"].device == "cuda" and back["w"].requires_grad
    assert isinstance(back["arr"], np.ndarray)        # NumPy arrays stay NumPy arrays
    np.testing.assert_array_equal(back["w"].cpu().detach().numpy(), obj["w"].detach().numpy())


def test_unsupported_objects_are_refused_with_their_location():
    with pytest.raises(TypeError, match=r"builtins\.set \(at obj\['a'\]\[1\]\)"):
        ng.save({"a": [1, {2}]}, io.BytesIO())
    with pytest.raises(TypeError, match="object arrays"):
        ng.save([np.array([1, "a"], dtype=object)], io.BytesIO())
    with pytest.raises(TypeError, match="keys must be"):
        ng.save({frozenset(): 1}, io.BytesIO())
    with pytest.raises(TypeError, match="path"):
        ng.save({}, 42)
    loop = {"a": []}
    loop["a"].append(loop)
    with pytest.raises(ValueError, match=r"contains itself \(at obj\['a'\]\[0\]\)"):
        ng.save(loop, io.BytesIO())


# ------------------------------------------------------------------------------ atomic writes
@pytest.fixture
def existing(tmp_path):
    path = tmp_path / "model.ckpt"
    old = {"version": "old", "w": ng.tensor([1.0, 2.0])}
    ng.save(old, path)
    return path, old


def test_crash_inside_savez_leaves_old_file(existing, monkeypatch):
    path, old = existing

    def crashing_savez(fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half a zip")              # some bytes hit the disk, then...
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez", crashing_savez)
    with pytest.raises(OSError, match="No space left"):
        ng.save({"version": "new"}, path)
    monkeypatch.undo()
    assert_same(old, ng.load(path))
    assert os.listdir(path.parent) == [path.name]     # the temporary file is gone


def test_crash_at_rename_leaves_old_file(existing, monkeypatch):
    path, old = existing

    def failing_replace(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        ng.save({"version": "new"}, path)
    monkeypatch.undo()
    assert_same(old, ng.load(path))
    assert os.listdir(path.parent) == [path.name]


def test_interrupt_during_fsync_cleans_up(existing, monkeypatch):
    path, old = existing

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ng.save({"version": "new"}, path)
    monkeypatch.undo()
    assert_same(old, ng.load(path))
    assert os.listdir(path.parent) == [path.name]


def test_overwrite_keeps_mode_and_follows_symlinks(existing):
    path, _ = existing
    os.chmod(path, 0o600)
    link = path.parent / "latest"
    os.symlink(path.name, link)
    ng.save({"version": "new"}, link)
    assert link.is_symlink() and ng.load(path) == {"version": "new"}
    assert (os.stat(path).st_mode & 0o777) == 0o600
    assert sorted(os.listdir(path.parent)) == ["latest", "model.ckpt"]


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        ng.save({}, tmp_path / "no" / "such" / "dir.ckpt")
    with pytest.raises(FileNotFoundError):
        ng.load(tmp_path / "absent.ckpt")


# ------------------------------------------------------------------------------ bad files
def good_bytes():
    buf = io.BytesIO()
    ng.save({"w": ng.randn(8, 8), "step": 3, "name": "x"}, buf)
    return buf.getvalue()


def expect_error(path, *fragments):
    with pytest.raises(SerializationError) as info:
        ng.load(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for f in fragments:
        assert f in msg, msg
    assert isinstance(info.value, ValueError)
    return msg


def test_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just some text, not a checkpoint\n")
    expect_error(path, "not a nanogen checkpoint", ".npz")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.ckpt"
    path.write_bytes(b"")
    expect_error(path, "not a nanogen checkpoint")


def test_npy_file(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.ones(3))
    expect_error(path, "single NumPy array")


def test_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weights=np.ones(3))
    expect_error(path, "without nanogen's tree entry")


def test_pickled_npz_member_is_not_executed(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __nanogen_tree__=np.array([{"a": 1}], dtype=object))
    expect_error(path, "corrupt")


@pytest.mark.parametrize("tree,fragment", [
    (b"{not json", "corrupt"),
    (json.dumps({"format": "nanogen", "version": 1,
                 "tree": {"$": "tensor", "a": "a7", "rg": False}}).encode(), "'a7'"),
    (json.dumps({"format": "nanogen", "version": 99, "tree": None}).encode(), "newer nanogen"),
    (json.dumps({"format": "nanogen", "version": 1, "tree": {"$": "set", "v": []}}).encode(),
     "unknown node tag 'set'"),
    (json.dumps({"format": "other", "version": 1, "tree": None}).encode(), "format marker"),
    (json.dumps({"format": "nanogen", "version": 1,
                 "tree": {"$": "dict", "k": [{"$": "list", "v": []}], "v": [1]}}).encode(),
     "unhashable"),
])
def test_bad_tree(tmp_path, tree, fragment):
    path = tmp_path / "bad.ckpt"
    with open(path, "wb") as fh:
        np.savez(fh, __nanogen_tree__=np.frombuffer(tree, np.uint8), a0=np.ones(2))
    expect_error(path, fragment)


def test_every_truncation_is_reported(tmp_path):
    data = good_bytes()
    path = tmp_path / "cut.ckpt"
    for n in list(range(0, len(data), 7)) + [len(data) - 1]:
        path.write_bytes(data[:n])
        expect_error(path)


def test_byte_flips_never_give_a_raw_traceback(tmp_path):
    """Flip each byte in turn: the file loads as the original or fails with SerializationError."""
    data = good_bytes()
    original = ng.load(io.BytesIO(data))
    path = tmp_path / "flipped.ckpt"
    for i in range(0, len(data), 3):
        broken = bytearray(data)
        broken[i] ^= 0xFF
        path.write_bytes(bytes(broken))
        try:
            back = ng.load(path)
        except SerializationError as e:
            assert str(path) in str(e)
        else:
            assert_same(original, back)


def test_file_objects():
    data = good_bytes()
    assert ng.load(io.BytesIO(data))["step"] == 3
    with pytest.raises(SerializationError, match="file object"):
        ng.load(io.BytesIO(data[:100]))
