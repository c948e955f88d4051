"""The numba.cuda recurrent gate kernels under the simulator (NUMBA_ENABLE_CUDASIM=1): LSTM and
GRU forward and backward agree with the CPU kernels and the NumPy references (float32 and
float64, one thread per element, a grid of several blocks included); F.lstm_cell_gates,
F.gru_cell_gates, the time loop and nn.LSTM / GRU / RNN run on device "cuda" with the CPU's
values, gradients and gradients of gradients.  Shapes are tiny: the simulator runs a Python
thread per CUDA thread."""
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import nanogen as ng
import nanogen.functional as F
from nanogen import nn
from nanogen.kernels import recurrent as K
from nanogen.testing import assert_close, gradcheck, gradgradcheck


def _tol(dtype):
    return 1e-13 if dtype == np.float64 else 1e-6


@given(n=st.integers(1, 3), m=st.integers(1, 4), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 99))
@example(n=3, m=50, dtype=np.float64, seed=0)       # 150 threads: two blocks of 128
@example(n=2, m=3, dtype=np.float32, seed=1)
def test_cuda_kernels_match_cpu(n, m, dtype, seed):
    rng = np.random.default_rng(seed)

    def arr(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)
    tol = _tol(dtype)
    gates, c, gh, gc = arr(n, 4, m, scale=3.0), arr(n, m), arr(n, m), arr(n, m)
    h, c_new, acts = K.lstm_forward_cuda(gates, c)
    h_cpu, c_cpu, acts_cpu = K.lstm_forward_cpu(gates, c)
    want_h, want_c = K.reference_lstm(gates, c)
    assert h.dtype == dtype
    for got, cpu, want in ((h, h_cpu, want_h), (c_new, c_cpu, want_c), (acts, acts_cpu, None)):
        assert_close(got, cpu, rtol=4 * tol, atol=4 * tol)
        if want is not None:
            assert_close(got, want, rtol=tol, atol=tol)
    grads = K.lstm_backward_cuda(acts_cpu, c, c_cpu, gh, gc)
    for got, cpu, want in zip(grads, K.lstm_backward_cpu(acts_cpu, c, c_cpu, gh, gc),
                              K.reference_lstm_backward(gates, c, gh, gc)):
        assert got.dtype == dtype
        assert_close(got, cpu, rtol=4 * tol, atol=4 * tol)
        assert_close(got, want, rtol=4 * tol, atol=4 * tol)
    gi, ghh, hh, gy = arr(n, 3, m, scale=3.0), arr(n, 3, m, scale=3.0), arr(n, m), arr(n, m)
    h_new, acts = K.gru_forward_cuda(gi, ghh, hh)
    h_new_cpu, acts_cpu = K.gru_forward_cpu(gi, ghh, hh)
    assert_close(h_new, h_new_cpu, rtol=4 * tol, atol=4 * tol)
    assert_close(h_new, K.reference_gru(gi, ghh, hh), rtol=tol, atol=tol)
    for got, cpu, want in zip(K.gru_backward_cuda(acts_cpu, ghh, hh, gy),
                              K.gru_backward_cpu(acts_cpu, ghh, hh, gy),
                              K.reference_gru_backward(gi, ghh, hh, gy)):
        assert got.dtype == dtype
        assert_close(got, cpu, rtol=4 * tol, atol=4 * tol)
        assert_close(got, want, rtol=4 * tol, atol=4 * tol)


def test_cuda_sigmoid_saturates_without_overflow():
    big = np.array([[-1e4, -800.0, -30.0, 0.0, 30.0, 800.0, 1e4]])
    gates = np.repeat(big[:, None], 4, axis=1)
    h, c_new, _ = K.lstm_forward_cuda(gates, np.ones((1, 7)))
    want_h, want_c = K.reference_lstm(gates, np.ones((1, 7)))
    assert_close(h, want_h, rtol=1e-13, atol=1e-15)
    assert_close(c_new, want_c, rtol=1e-13, atol=1e-15)


def _leaves(arrays, device):
    return [ng.tensor(a, device=device, requires_grad=True) for a in arrays]


def _gates_cases():
    rng = np.random.default_rng(0)
    return {"lstm": (lambda g, c: F.lstm_cell_gates(g, c),
                     [rng.standard_normal((2, 8, 3)) * 2, rng.standard_normal((2, 2, 3))]),
            "gru": (F.gru_cell_gates, [rng.standard_normal((2, 6)) * 2,
                                       rng.standard_normal((2, 6)), rng.standard_normal((2, 2))])}


@pytest.mark.parametrize("op", ["lstm", "gru"])
def test_gate_ops_on_cuda_match_cpu_with_gradients(op):
    fn, arrays = _gates_cases()[op]
    results = {}
    for device in ("cpu", "cuda"):
        leaves = _leaves(arrays, device)
        outs = fn(*leaves)
        outs = list(outs) if isinstance(outs, tuple) else [outs]
        loss = sum((o ** 3).sum() for o in outs)
        plain = ng.autograd.grad(loss, leaves, retain_graph=True)
        graph = ng.autograd.grad(loss, leaves, create_graph=True)
        (second,) = ng.autograd.grad(sum((g * g).sum() for g in graph), leaves[:1])
        results[device] = outs + list(plain) + list(graph) + [second]
    for ours, cpu in zip(results["cuda"], results["cpu"]):
        assert ours.device == "cuda"
        assert_close(ours.cpu(), cpu, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("op", ["lstm", "gru"])
def test_gate_ops_gradcheck_on_cuda(op):
    fn, arrays = _gates_cases()[op]
    gradcheck(fn, _leaves(arrays, "cuda"), mode="directional", n_directions=2)
    gradgradcheck(fn, _leaves(arrays, "cuda"), mode="directional", n_directions=2)


@pytest.mark.parametrize("cls, kw", [("LSTM", dict(num_layers=2, bidirectional=True)),
                                     ("GRU", dict(batch_first=True)),
                                     ("RNN", dict(nonlinearity="relu"))])
def test_layers_on_cuda_match_cpu(cls, kw):
    ng.manual_seed(0)
    cpu = getattr(nn, cls)(3, 2, **kw).double()
    gpu = getattr(nn, cls)(3, 2, **kw).double().to("cuda")
    gpu.load_state_dict(cpu.state_dict())
    x = np.random.default_rng(1).standard_normal((3, 2, 3))
    results = {}
    for device, layer in (("cpu", cpu), ("cuda", gpu)):
        xs = ng.tensor(x, device=device, requires_grad=True)
        out, state = layer(xs)
        loss = (out ** 2).sum() + sum((s ** 2).sum() for s in
                                      (state if isinstance(state, tuple) else (state,)))
        results[device] = [out, *ng.autograd.grad(loss, [xs] + list(layer.parameters()))]
    for ours, ref in zip(results["cuda"], results["cpu"]):
        assert ours.device == "cuda"
        assert_close(ours.cpu(), ref, rtol=1e-12, atol=1e-13)
