"""The GPU-only branches run under the simulator, and agree with the CPU.

Under NUMBA_ENABLE_CUDASIM=1 the array module of device "cuda" is nanogen.simulated_cupy.cupy,
a CuPy-shaped namespace over NumPy, so every ``xp is np`` test in nanogen takes its GPU branch.
Each test here runs an op on "cpu" and on "cuda", compares the values (and gradients), and
proves which implementation served: the namespace's call counts show the CuPy function ran, and
the CPU-only function it replaces is made to fail if it is reached from the "cuda" run.
"""
import numpy as np
import pytest

import nanogen as ng
import nanogen.functional as F
from nanogen import backend, simulated_cupy
from nanogen.functional import activation, indexing, reduce
from nanogen.kernels import blas
from nanogen.testing import assert_close


_RUNNING = {"device": None}       # the device both() is running on


def spy(fn):
    """``fn`` wrapped to record, in ``wrapped.devices``, the device each call came from."""
    def wrapped(*args, **kwargs):
        wrapped.devices.append(_RUNNING["device"])
        return fn(*args, **kwargs)
    wrapped.devices = []
    wrapped.__name__ = getattr(fn, "__name__", "spy")
    return wrapped


@pytest.fixture
def cpu_only(monkeypatch):
    """``cpu_only(module, name)`` spies on a CPU implementation: the returned list holds the
    device of each call; the tests expect "cpu" and never "cuda" there."""
    def install(module, name):
        wrapped = spy(getattr(module, name))
        monkeypatch.setattr(module, name, wrapped)
        return wrapped.devices
    return install


def both(fn, *arrays, dtype=np.float64):
    """``fn`` on "cpu" and on "cuda" tensors made from the same arrays, each with its
    gradients w.r.t. the float inputs (summed against a fixed cotangent); the "cuda" run's
    namespace calls recorded.  Returns (cpu results, cuda results, calls)."""
    runs = []
    for device in ("cpu", "cuda"):
        ts = [ng.tensor(a, device=device, requires_grad=np.asarray(a).dtype.kind == "f")
              for a in arrays]
        _RUNNING["device"] = device
        try:
            with simulated_cupy.recording() as served:
                out = fn(*ts)
                u = np.random.default_rng(9).standard_normal(out.shape)
                diff = [t for t in ts if t.requires_grad]
                grads = ng.autograd.grad((out * ng.tensor(u, dtype=out.dtype, device=device))
                                         .sum(), diff) if diff else []
        finally:
            _RUNNING["device"] = None
        assert out.device == device and all(g.device == device for g in grads)
        runs.append(([out.detach().to("cpu")] + [g.to("cpu") for g in grads], served))
    (cpu, served_cpu), (dev, served_dev) = runs
    assert not served_cpu, f"the CPU run used the device namespace: {dict(served_cpu)}"
    return cpu, dev, served_dev


def assert_all_close(dev, cpu, rtol, atol):
    assert len(dev) == len(cpu)
    for d, c in zip(dev, cpu):
        assert_close(d, c, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- the namespace itself
def test_cuda_arrays_come_from_the_simulated_cupy_not_from_numpy():
    xp = backend.array_module("cuda")
    assert xp is simulated_cupy.cupy and xp is not np
    assert backend.array_module("cpu") is np
    assert ng.zeros(2, device="cuda")._xp() is xp
    assert xp.ndarray is np.ndarray                     # arrays stay NumPy arrays
    assert backend.cupyx_module(xp) is simulated_cupy.cupyx
    assert backend.cupyx_module(xp, "scipy.special").erf is simulated_cupy.cupyx.scipy.special.erf


def test_names_cupy_lacks_are_refused():
    xp = backend.array_module("cuda")
    for name in ("errstate", "seterr", "nditer", "busday_count"):
        with pytest.raises(AttributeError, match="simulated CuPy"):
            getattr(xp, name)


def test_functions_return_arrays_like_cupy_and_count_their_calls():
    xp = backend.array_module("cuda")
    with simulated_cupy.recording() as served:
        e = xp.exp(np.asarray(-1.0, np.float32))
        s = xp.sum(np.ones(3))
        xp.reciprocal(e, out=e)                         # a NumPy scalar could not take out=
    assert type(e) is np.ndarray and e.shape == () and e.dtype == np.float32
    assert type(s) is np.ndarray and float(s) == 3.0
    assert e == pytest.approx(np.e, rel=1e-6)
    assert served == {"cupy.exp": 1, "cupy.sum": 1, "cupy.reciprocal": 1}


def test_asnumpy_is_a_copy():
    a = np.arange(4.0)
    host = simulated_cupy.cupy.asnumpy(a)
    host[0] = 7.0
    assert a[0] == 0.0 and host.tolist() == [7.0, 1.0, 2.0, 3.0]


def test_a_zero_dim_sigmoid_takes_the_gpu_route():
    # _sigmoid's GPU branch writes into xp.exp's result: a NumPy scalar there raised TypeError
    cpu, dev, served = both(F.sigmoid, np.array(0.3))
    assert served["cupy.exp"] == 1 and served["cupy.reciprocal"] >= 1
    assert_all_close(dev, cpu, rtol=1e-14, atol=0)


# ---------------------------------------------------------------- matmul: cuBLAS, not blas.matmul
@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 2)), ((2, 1, 3, 4),
                                                                            (2, 4, 5))])
def test_matmul_on_cuda_is_served_by_cupy_matmul(shapes, cpu_only):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s) for s in shapes)
    seen = cpu_only(blas, "matmul")
    cpu, dev, served = both(lambda x, y: x @ y, a, b)
    assert "cpu" in seen and "cuda" not in seen
    assert served["cupy.matmul"] == 3                   # forward, and the two gradients
    assert_all_close(dev, cpu, rtol=1e-12, atol=1e-13)


def test_conv2d_and_its_transpose_on_cuda_run_their_gemms_through_cupy_matmul(cpu_only):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    seen = cpu_only(blas, "matmul")
    cpu, dev, served = both(lambda x, w: F.conv2d(x, w, stride=2, padding=1), x, w)
    assert served["cupy.matmul"] >= 3 and served["cupy.empty"] >= 1
    assert_all_close(dev, cpu, rtol=1e-12, atol=1e-12)
    y, wt = rng.standard_normal((2, 3, 3, 3)), rng.standard_normal((3, 2, 3, 3))
    cpu, dev, served = both(lambda y, w: F.conv_transpose2d(y, w, stride=2, padding=1), y, wt)
    assert served["cupy.matmul"] >= 3
    assert_all_close(dev, cpu, rtol=1e-12, atol=1e-12)
    assert "cpu" in seen and "cuda" not in seen


def test_linear_on_cuda_uses_cupy_matmul():
    rng = np.random.default_rng(2)
    cpu, dev, served = both(F.linear, rng.standard_normal((3, 4)), rng.standard_normal((2, 4)),
                            rng.standard_normal(2))
    assert served["cupy.matmul"] >= 3
    assert_all_close(dev, cpu, rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------- scatter-add: cupyx, not add.at
def test_embedding_gradient_on_cuda_is_served_by_cupyx_scatter_add(cpu_only):
    rng = np.random.default_rng(3)
    ids = np.array([[1, 4, 1], [0, 1, 4]])                # repeats must accumulate
    seen = cpu_only(indexing, "scatter_add_rows_cpu")
    cpu, dev, served = both(lambda w, i: F.embedding(i, w), rng.standard_normal((5, 3)), ids)
    assert seen == ["cpu"] and served["cupyx.scatter_add"] == 1
    assert_all_close(dev, cpu, rtol=1e-14, atol=0)
    u = np.random.default_rng(9).standard_normal((2, 3, 3))
    want = np.zeros((5, 3))
    np.add.at(want, ids, u)
    assert_close(dev[1], want, rtol=1e-14, atol=0)


@pytest.mark.parametrize("index", [
    lambda x: x[np.array([2, 0, 2, 2])],                             # integer array, repeats
    lambda x: x[:, np.array([[1, 1], [0, 2]])],                      # 2-D index on axis 1
    lambda x: x[np.array([0, 2, 0]), np.array([1, 1, 1])],           # two arrays, a repeated pair
    lambda x: x[x.detach() > 0],                                     # a boolean mask
])
def test_advanced_index_gradients_on_cuda_are_served_by_cupyx_scatter_add(index):
    x = np.random.default_rng(4).standard_normal((3, 3))
    cpu, dev, served = both(index, x)
    assert served["cupyx.scatter_add"] >= 1
    assert_all_close(dev, cpu, rtol=1e-14, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.int16,
                                   np.uint8])
def test_scatter_add_op_on_cuda_matches_cpu_for_every_dtype(dtype):
    # CuPy's atomic scatter-add lacks int64, int16 and uint8: nanogen must still add them
    rng = np.random.default_rng(5)
    base = rng.integers(0, 50, (3, 4)).astype(dtype)
    src = rng.integers(0, 50, (3, 4)).astype(dtype)
    index = np.array([[0, 1, 2, 0], [2, 2, 2, 1], [0, 0, 1, 1]])
    out = {}
    for device in ("cpu", "cuda"):
        with simulated_cupy.recording() as served:
            out[device] = F.scatter_add(ng.tensor(base, device=device), 0,
                                        ng.tensor(index, device=device),
                                        ng.tensor(src, device=device))
        assert out[device].dtype == dtype and out[device].device == device
    want = base.copy()
    np.add.at(want, (index, np.arange(4)[None, :]), src)
    np.testing.assert_array_equal(out["cpu"].numpy(), want)
    np.testing.assert_array_equal(out["cuda"].to("cpu").numpy(), want)
    assert served["cupyx.scatter_add"] == 1


def test_int64_scatter_add_wraps_around_like_numpy():
    big = np.iinfo(np.int64).max
    base = np.array([big, -5, 0], dtype=np.int64)
    src = np.array([1, -big, 3], dtype=np.int64)
    got = F.scatter_add(ng.tensor(base, device="cuda"), 0, ng.tensor([0, 1, 0], device="cuda"),
                        ng.tensor(src, device="cuda")).to("cpu").numpy()
    want = base.copy()
    np.add.at(want, [0, 1, 0], src)
    np.testing.assert_array_equal(got, want)


def test_cupyx_scatter_add_refuses_the_dtypes_cupy_refuses():
    out = np.zeros(3, np.int64)
    with pytest.raises(TypeError, match="does not support dtype int64"):
        simulated_cupy.cupyx.scatter_add(out, np.array([0, 0]), np.array([1, 2]))
    f = np.zeros(3, np.float32)
    simulated_cupy.cupyx.scatter_add(f, np.array([1, 1, 2]), np.float32(2.5))
    assert f.tolist() == [0.0, 5.0, 2.5]


# ---------------------------------------------------------------- erf: cupyx.scipy.special
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-15), (np.float32, 1e-6)])
def test_erf_on_cuda_is_served_by_cupyx_scipy_special(dtype, rtol):
    x = np.linspace(-3, 3, 13).astype(dtype)
    cpu, dev, served = both(F.erf, x)
    assert served["cupyx.scipy.special.erf"] == 1
    assert dev[0].dtype == dtype
    assert_all_close(dev, cpu, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("fn,cls", [(F.gelu, activation.GELU), (F.silu, activation.SiLU)])
def test_activations_fused_on_the_cpu_are_composite_on_cuda(fn, cls, monkeypatch):
    fused = tuple(spy(k) for k in cls.fused)
    monkeypatch.setattr(cls, "fused", fused)
    x = np.linspace(-4, 4, 9, dtype=np.float32).reshape(3, 3)
    cpu, dev, served = both(fn, x)
    assert fused[0].devices == ["cpu"], "the fused kernel must serve the CPU, and only it"
    assert served["cupy.exp"] + served["cupyx.scipy.special.erf"] >= 1
    # GELU's 1 + erf(x/√2) cancels in float32 below x = -2 on both paths: an absolute error of
    # about |x| eps32 / 2 (1.2e-7 at x = -4) whichever erf computes it
    assert_all_close(dev, cpu, rtol=2e-6, atol=3e-7)


# ---------------------------------------------------------------- reductions, init, random
def test_cumsum_on_cuda_takes_cupy_cumsum_not_the_cpu_running_sum(cpu_only):
    x = np.random.default_rng(6).standard_normal((4, 64, 3))
    seen = cpu_only(reduce, "_running_sum")
    cpu, dev, served = both(lambda t: ng.cumsum(t, 0), x)
    assert "cpu" in seen and "cuda" not in seen
    assert served["cupy.cumsum"] >= 2           # forward and the backward's cumsum
    assert_all_close(dev, cpu, rtol=1e-13, atol=1e-13)


def test_orthogonal_init_on_cuda_uses_cupy_linalg_qr():
    w = ng.empty(4, 6, device="cuda")
    with simulated_cupy.recording() as served:
        ng.nn.init.orthogonal_(w)
    assert served["cupy.linalg.qr"] == 1 and w.device == "cuda"
    m = w.to("cpu").numpy().astype(np.float64)
    assert_close(m @ m.T, np.eye(4), rtol=0, atol=1e-6)


def test_the_device_draws_from_its_own_counter_based_stream():
    """Draw k on the device since manual_seed(s) comes from a generator seeded with [s, k]."""
    def kth(seed, k):
        return np.random.default_rng([seed, k]).standard_normal(6, dtype=np.float32)
    ng.manual_seed(5)
    with simulated_cupy.recording() as served:
        a = ng.randn(6, device="cuda")
        b = ng.randn(6, device="cuda")
    c = ng.randn(6)                   # the CPU stream has not moved: its first draw
    assert served["cupy.random.default_rng"] == 2          # one generator per draw
    assert a.device == "cuda"
    np.testing.assert_array_equal(a.to("cpu").numpy(), kth(5, 0))
    np.testing.assert_array_equal(b.to("cpu").numpy(), kth(5, 1))
    np.testing.assert_array_equal(c.numpy(), np.random.default_rng(5).standard_normal(
        6, dtype=np.float32))
    with ng.random.fork_rng(5):       # a seeded block reseeds the device stream too
        np.testing.assert_array_equal(ng.randn(6, device="cuda").to("cpu").numpy(), kth(5, 0))
    with ng.random.fork_rng():        # an unseeded one continues it, then puts it back
        np.testing.assert_array_equal(ng.randn(6, device="cuda").to("cpu").numpy(), kth(5, 2))
    np.testing.assert_array_equal(ng.randn(6, device="cuda").to("cpu").numpy(), kth(5, 2))


def test_the_rng_state_carries_the_device_stream():
    ng.manual_seed(3)
    ng.randn(4, device="cuda")
    state = ng.get_rng_state()
    want = ng.randn(4, device="cuda").to("cpu").numpy()
    ng.manual_seed(3)                 # as a resumed run starts: seeded, then restored
    ng.set_rng_state(state)
    np.testing.assert_array_equal(ng.randn(4, device="cuda").to("cpu").numpy(), want)
