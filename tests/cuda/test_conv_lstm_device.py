"""F.conv_lstm_scan and a small PixelRNN on device "cuda" under the simulator: the loop runs
the numba.cuda LSTM kernels on the device's arrays and gives the CPU's values and gradients.
Tiny shapes: the simulator runs a Python thread per CUDA thread."""
import numpy as np
import pytest

import nanogen as ng
import nanogen.functional as F
from nanogen.models.autoregressive import PixelRNN
from nanogen.testing import assert_close


@pytest.mark.parametrize("kernel,padding", [(2, (1, 0)), (3, (1, 1))])
def test_scan_on_cuda_matches_cpu(kernel, padding):
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(-2, 2, (3, 2, 4, 8)), rng.uniform(-1, 1, (8, 2, kernel)),
              rng.uniform(-1, 1, (8,))]
    cpu = [ng.tensor(a, requires_grad=True) for a in arrays]
    dev = [ng.tensor(a).to("cuda").requires_grad_() for a in arrays]
    y_cpu = F.conv_lstm_scan(*cpu, padding=padding)
    y_dev = F.conv_lstm_scan(*dev, padding=padding)
    assert y_dev.device.type == "cuda"
    assert_close(y_dev.to("cpu"), y_cpu.detach().numpy(), rtol=1e-12, atol=1e-14)
    gy = rng.standard_normal(y_cpu.shape)
    for g_dev, g_cpu in zip(ng.autograd.grad(y_dev, dev, ng.tensor(gy).to("cuda")),
                            ng.autograd.grad(y_cpu, cpu, ng.tensor(gy))):
        assert_close(g_dev.to("cpu"), g_cpu.numpy(), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("variant", ["row", "diagonal"])
def test_pixelrnn_log_prob_on_cuda_matches_cpu(variant):
    ng.manual_seed(0)
    model = PixelRNN((1, 3, 3), variant=variant, hidden=2, num_layers=1, first_kernel=3,
                     head_channels=3)
    x = ng.tensor((np.random.default_rng(1).random((2, 1, 3, 3)) < 0.5).astype(np.float32))
    want = model.log_prob(x).detach().numpy()
    model.to("cuda")
    got = model.log_prob(x.to("cuda"))
    assert_close(got.detach().to("cpu"), want, rtol=1e-5, atol=1e-5)
