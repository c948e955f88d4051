"""The numba.cuda normalisation kernels under the simulator (NUMBA_ENABLE_CUDASIM=1): AdaIN's
plane kernels (one block per plane) and the general geometries (weight tables with J > 1, a
second kernel for gw / gb) agree with the CPU kernels; F.adain and the norms run on device
"cuda" with the same values and gradients as on the CPU.  Shapes are tiny: the simulator runs
a Python thread per CUDA thread."""
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import nanogen as ng
import nanogen.functional as F
from nanogen.kernels import adain as adain_kernels
from nanogen.kernels import normalization as norm_kernels
from nanogen.testing import assert_close, gradcheck


def _tol(dtype):
    return 1e-12 if dtype == np.float64 else 2e-6


@given(n=st.integers(1, 2), c=st.integers(1, 2), h=st.integers(1, 3), w=st.integers(1, 6),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 99))
@example(n=2, c=2, h=1, w=1, dtype=np.float32, seed=0)        # H·W = 1
@example(n=1, c=2, h=3, w=6, dtype=np.float64, seed=1)        # planes larger than a block
def test_adain_cuda_kernels_match_cpu(n, c, h, w, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c, h, w)) * 2 + 1).astype(dtype)
    scale, bias = (rng.standard_normal((n, c)).astype(dtype) for _ in range(2))
    gy = rng.standard_normal(x.shape).astype(dtype)
    tol = _tol(dtype)
    y, mean, var = adain_kernels.forward_cuda(x, scale, bias, 1e-5)
    y_cpu, mean_cpu, var_cpu = adain_kernels.forward_cpu(x, scale, bias, 1e-5)
    assert y.dtype == dtype
    assert_close(y, y_cpu, rtol=tol, atol=tol)
    assert_close(mean, mean_cpu, rtol=1e-12, atol=1e-12)
    assert_close(var, var_cpu, rtol=1e-12, atol=1e-12)
    rstd = 1.0 / np.sqrt(var_cpu + 1e-5)
    packed = adain_kernels.backward_cuda(x, scale, gy, mean_cpu, rstd)
    packed_cpu = adain_kernels.backward_cpu(x, scale, gy, mean_cpu, rstd)
    assert packed.dtype == dtype and packed.shape == packed_cpu.shape
    for got, want, name in zip(adain_kernels.unpack(packed, x.shape),
                               adain_kernels.reference_backward(x, scale, gy), "gx gs gb".split()):
        assert_close(got, want, rtol=10 * tol, atol=10 * tol, msg=name)
    assert_close(packed, packed_cpu, rtol=10 * tol, atol=10 * tol)
    separate = adain_kernels.backward_cuda(x, scale, gy, mean_cpu, rstd, packed=False)
    for alone, got in zip(separate, adain_kernels.unpack(packed, x.shape)):
        assert alone.shape == got.shape and np.array_equal(alone, got)


@pytest.mark.parametrize("A, Q, Mw, J, S", [
    (3, 1, 2, 1, 2),      # batch norm: one group per channel, spread over the batch
    (1, 2, 3, 1, 5),      # instance norm with affine: Mw < M, gw summed over the batch
    (1, 2, 2, 3, 7),      # group norm: J > 1 (the second, per-weight-element kernel)
    (1, 5, 1, 4, 1),      # layer norm: Mw = 1, S = 1
    (2, 2, 1, 6, 3),      # everything at once
])
def test_general_cuda_kernels_match_cpu(A, Q, Mw, J, S):
    rng = np.random.default_rng(A * 100 + J * 10 + S)
    shape = (A, Q * Mw, J, S)
    x, gy = rng.standard_normal(shape) * 3 - 1, rng.standard_normal(shape)
    w, b = rng.standard_normal((Mw, J)), rng.standard_normal((Mw, J))
    y, mean, var = norm_kernels.forward_cuda(x, w, b, 1e-3)
    ry, rmean, rvar = norm_kernels.reference_forward(x, w, b, 1e-3)
    assert_close(y, ry, rtol=1e-12, atol=1e-12)
    assert_close(var, rvar, rtol=1e-12, atol=1e-12)
    packed = norm_kernels.backward_cuda(gy, x, mean, 1.0 / np.sqrt(var + 1e-3), w)
    for got, want in zip(norm_kernels.unpack(packed, shape, w.shape),
                         norm_kernels.reference_backward(gy, x, w, 1e-3)):
        assert_close(got, want, rtol=1e-10, atol=1e-12)


def _pair(array, device):
    return ng.tensor(array, device=device, requires_grad=True)


@pytest.mark.parametrize("shape", [(2, 2, 2, 3), (1, 3, 1, 1)])
def test_adain_op_on_cuda_matches_cpu_with_gradients(shape):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape) + 1, rng.standard_normal(shape[:2]),
              rng.standard_normal(shape[:2])]
    gy = rng.standard_normal(shape)
    results = {}
    for device in ("cpu", "cuda"):
        leaves = [_pair(a, device) for a in arrays]
        y = F.adain(*leaves)
        assert y.device == device
        grads = ng.autograd.grad(y, leaves, grad_outputs=ng.tensor(gy, device=device),
                                 create_graph=True)
        # a second-order quantity through the composite double backward
        (ggx,) = ng.autograd.grad((grads[0] * grads[0]).sum() + (grads[1] ** 2).sum(),
                                  leaves[0])
        results[device] = [y, *grads, ggx]
    for ours, cpu in zip(results["cuda"], results["cpu"]):
        assert ours.device == "cuda"
        assert_close(ours.cpu(), cpu, rtol=1e-10, atol=1e-12)


def test_adain_gradcheck_on_cuda():
    rng = np.random.default_rng(1)
    leaves = [_pair(rng.standard_normal((1, 2, 2, 2)), "cuda"),
              _pair(rng.standard_normal((1, 2)), "cuda"), _pair(rng.standard_normal((1, 2)), "cuda")]
    gradcheck(F.adain, leaves, mode="directional", n_directions=2)


NORMS = [
    ("batch_norm", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
     (3, 2, 2, 2)),
    ("instance_norm", lambda x, w, b: F.instance_norm(x, weight=w, bias=b), (2, 2, 3)),
    ("group_norm", lambda x, w, b: F.group_norm(x, 2, w, b), (2, 4, 3)),
    ("layer_norm", lambda x, w, b: F.layer_norm(x, 4, w[:4], b[:4]), (2, 3, 4)),
]


@pytest.mark.parametrize("name, fn, shape", NORMS, ids=[n[0] for n in NORMS])
def test_norms_on_cuda_match_cpu(name, fn, shape):
    rng = np.random.default_rng(2)
    c = max(shape[1], 4)
    arrays = [rng.standard_normal(shape) * 2 + 1, rng.standard_normal(c) + 1.5,
              rng.standard_normal(c)]
    if name != "layer_norm":
        arrays[1:] = [a[:shape[1]] for a in arrays[1:]]
    gy = rng.standard_normal(shape)
    results = {}
    for device in ("cpu", "cuda"):
        leaves = [_pair(a, device) for a in arrays]
        y = fn(*leaves)
        grads = ng.autograd.grad(y, leaves, grad_outputs=ng.tensor(gy, device=device))
        results[device] = [y, *grads]
    for ours, cpu in zip(results["cuda"], results["cpu"]):
        assert ours.device == "cuda"
        assert_close(ours.cpu(), cpu, rtol=1e-10, atol=1e-12, msg=name)


def test_batch_norm_running_stats_update_on_cuda():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 2, 3)) * 2 + 1
    buffers = {}
    for device in ("cpu", "cuda"):
        m = ng.nn.BatchNorm1d(2).double().to(device)
        m(ng.tensor(x, device=device))
        m(ng.tensor(x[::-1].copy(), device=device))
        assert m.running_mean.device == device
        buffers[device] = [m.running_mean, m.running_var]
    for ours, cpu in zip(buffers["cuda"], buffers["cpu"]):
        assert_close(ours.cpu(), cpu, rtol=1e-12, atol=1e-14)
