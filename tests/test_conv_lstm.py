"""F.conv_lstm_scan, the PixelRNN time loop as one op: gradients and gradients of gradients on
drawn shapes and kernel widths, agreement with the step-by-step composite it is defined by
(forward, and the fused backpropagation through time against autograd through the composite),
float32, and errors.  The forward value against a plain-NumPy loop is in
tests/test_forward_values.py."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
import nanogen.functional as F
from nanogen.functional.conv_lstm import conv_lstm_scan_reference
from nanogen.testing import assert_close, gradcheck, gradgradcheck

from .strategies import examples, float64_arrays, sides

GRAD_CHECKED = {"conv_lstm_scan"}

# (kernel width, padding): the Diagonal BiLSTM's 2x1 (one row on top), the Row LSTM's 1x3,
# a one-sided 3 and a 1x1 (no coupling along the line)
KERNELS = [(2, (1, 0)), (3, (1, 1)), (3, (0, 2)), (1, (0, 0))]


@st.composite
def scan_cases(draw, bias=True, longest=4):
    """Gates (T, N, L, 4h), weight (4h, h, K) and maybe a bias; ``longest`` caps T and L (the
    second-order check differentiates the step-by-step composite: keep it small)."""
    T, N = draw(sides(1, longest)), draw(sides(1, 2))
    L, h = draw(sides(1, longest)), draw(sides(1, 3 if longest > 3 else 2))
    K, padding = draw(st.sampled_from(KERNELS))
    arrays = [draw(float64_arrays((T, N, L, 4 * h), -2.0, 2.0)),
              draw(float64_arrays((4 * h, h, K), -1.0, 1.0))]
    if bias and draw(st.booleans()):
        arrays.append(draw(float64_arrays((4 * h,), -1.0, 1.0)))
    return arrays, padding


def _leaves(arrays):
    return [ng.tensor(a, requires_grad=True) for a in arrays]


@given(case=scan_cases(longest=3))
@examples(1)
def test_gradcheck(case):
    arrays, padding = case
    gradcheck(lambda *t: F.conv_lstm_scan(*t, padding=padding), _leaves(arrays))


@given(case=scan_cases(longest=3))
@examples(1)
def test_gradgradcheck(case):
    """Directional (a few random directions, two forwards each): every evaluation of the first
    derivative runs the step-by-step composite and differentiates it, ~10 ms, so the
    element-by-element check took 3 s an example."""
    arrays, padding = case
    gradgradcheck(lambda *t: F.conv_lstm_scan(*t, padding=padding), _leaves(arrays),
                  mode="directional", n_directions=3)


@given(case=scan_cases())
@examples(1)
def test_fused_forward_and_backward_equal_the_step_by_step_composite(case):
    arrays, padding = case
    leaves = _leaves(arrays)
    fused = F.conv_lstm_scan(*leaves, padding=padding)
    composite = conv_lstm_scan_reference(*leaves, padding=padding)
    assert_close(fused, composite.detach().numpy(), rtol=1e-13, atol=1e-15)
    gy = ng.tensor(np.random.default_rng(0).standard_normal(fused.shape))
    for g, want in zip(ng.autograd.grad(fused, leaves, gy),
                       ng.autograd.grad(composite, leaves, gy)):
        assert_close(g, want.numpy(), rtol=1e-12, atol=1e-14)


def test_float32_stays_float32_and_agrees_with_float64():
    rng = np.random.default_rng(1)
    arrays = [rng.uniform(-2, 2, (5, 2, 6, 12)), rng.uniform(-1, 1, (12, 3, 2)),
              rng.uniform(-1, 1, (12,))]
    y64 = F.conv_lstm_scan(*[ng.tensor(a) for a in arrays], padding=(1, 0))
    leaves32 = [ng.tensor(a.astype(np.float32), requires_grad=True) for a in arrays]
    y32 = F.conv_lstm_scan(*leaves32, padding=(1, 0))
    assert y32.dtype == ng.float32
    assert_close(y32, y64.numpy(), rtol=1e-5, atol=1e-6)
    grads = ng.autograd.grad(y32.sum(), leaves32)
    assert all(g.dtype == ng.float32 for g in grads)


def test_a_step_reads_only_the_previous_state_within_the_kernel():
    """h_t at position l depends on the gates of steps <= t only, and (K = 2, padding (1, 0))
    on positions <= l of the previous steps: the Diagonal LSTM's 'above and left'."""
    rng = np.random.default_rng(2)
    gates = ng.tensor(rng.uniform(-2, 2, (4, 1, 5, 8)), requires_grad=True)
    weight = ng.tensor(rng.uniform(-1, 1, (8, 2, 2)))
    y = F.conv_lstm_scan(gates, weight, padding=(1, 0))
    for t, l in [(0, 0), (2, 1), (3, 4)]:
        (g,) = ng.autograd.grad(y[t, :, l].sum(), [gates], retain_graph=True)
        reach = np.abs(g.numpy()).sum(axis=(1, 3))               # (T, L)
        steps, positions = np.nonzero(reach)
        assert steps.max() == t and positions.max() == l
        assert reach[t, l] > 0 and (t == 0 or reach[t - 1, l] > 0)


def test_errors_name_the_shapes():
    g = ng.zeros(3, 2, 4, 8)
    with pytest.raises(ValueError, match=r"gates must have shape \(T, N, L, 4h\), got "
                                         r"\(3, 2, 4, 7\)"):
        F.conv_lstm_scan(ng.zeros(3, 2, 4, 7), ng.zeros(8, 2, 2), padding=(1, 0))
    with pytest.raises(ValueError, match=r"weight must have shape \(4h, h, K\) = \(8, 2, K\) "
                                         r"for gates of shape \(3, 2, 4, 8\), got \(8, 3, 2\)"):
        F.conv_lstm_scan(g, ng.zeros(8, 3, 2), padding=(1, 0))
    with pytest.raises(ValueError, match=r"bias must have shape \(8,\), got \(4,\)"):
        F.conv_lstm_scan(g, ng.zeros(8, 2, 2), ng.zeros(4), padding=(1, 0))
    with pytest.raises(ValueError, match="add up to kernel size - 1 = 1"):
        F.conv_lstm_scan(g, ng.zeros(8, 2, 2), padding=(1, 1))
