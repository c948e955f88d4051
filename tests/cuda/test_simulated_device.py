"""Device "cuda" under numba's simulator: tensors move, ops run, gradients cross devices,
mixing devices is refused, and numba.cuda kernels launch on "cuda" tensors' arrays."""
import numpy as np
import pytest
from numba import cuda  # noqa: E402

import nanogen as ng
from nanogen.testing import assert_close


def test_cuda_is_available_under_the_simulator():
    assert ng.cuda.is_available() and ng.cuda.is_simulated()
    assert cuda.is_available()


def test_moving_to_cuda_and_back_copies_values():
    x = ng.randn(3, 4)
    y = x.to("cuda")
    assert y.device == "cuda" and y.is_cuda and x.device == "cpu"
    assert y.data is not x.data
    assert_close(y.cpu(), x)
    assert ng.zeros(2, device="cuda").device == "cuda"


def test_ops_and_gradients_on_cuda_match_cpu():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 5))
    b = rng.standard_normal((5, 3))
    xc, wc = ng.tensor(a, requires_grad=True), ng.tensor(b, requires_grad=True)
    xg = ng.tensor(a, device="cuda", requires_grad=True)
    wg = ng.tensor(b, device="cuda", requires_grad=True)
    for x, w in ((xc, wc), (xg, wg)):
        ng.functional.log_softmax((x @ w).tanh(), 1).sum().backward()
    assert xg.grad.device == "cuda"
    assert_close(xg.grad.cpu(), xc.grad)
    assert_close(wg.grad.cpu(), wc.grad)


def test_gradient_flows_back_across_a_device_move():
    x = ng.tensor([1.0, 2.0], requires_grad=True)
    y = (x.to("cuda") * 3.0).sum()
    y.backward()
    assert x.grad.device == "cpu" and x.grad.tolist() == [3.0, 3.0]


def test_mixing_devices_names_both():
    with pytest.raises(RuntimeError, match="cpu.*cuda"):
        ng.ones(2) + ng.ones(2, device="cuda")


def test_numba_cuda_kernel_runs_on_a_cuda_tensor():
    @cuda.jit
    def axpy(a, x, y, out):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = a * x[i] + y[i]

    x = ng.arange(10, dtype=ng.float32, device="cuda")
    y = ng.ones(10, device="cuda")
    out = ng.zeros(10, device="cuda")
    axpy[2, 8](np.float32(2.0), x.data, y.data, out.data)
    assert out.tolist() == [2.0 * i + 1.0 for i in range(10)]


def test_a_default_device_block_creates_everything_on_cuda():
    """``with ng.device("cuda")``: parameters, factories, ng.tensor of a NumPy array and
    as_tensor land on the GPU; outside the block, and after it, the CPU again."""
    with ng.device("cuda"):
        layer = ng.nn.Linear(2, 3)
        made = [ng.zeros(3), ng.randn(2), ng.tensor(np.ones(2)), ng.as_tensor(np.ones(2)),
                ng.arange(3)]
        assert ng.default_device() == "cuda"
        assert ng.zeros(1, device="cpu").device == "cpu"          # an explicit device wins
    assert all(p.device == "cuda" for p in layer.parameters())
    assert all(t.device == "cuda" for t in made)
    assert ng.default_device() == "cpu" and ng.zeros(1).device == "cpu"
    ng.set_default_device("cuda")
    try:
        assert ng.ones(2).device == "cuda"
    finally:
        ng.set_default_device("cpu")
