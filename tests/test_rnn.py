"""Recurrent layers: the fused gate ops F.lstm_cell_gates / F.gru_cell_gates, the layers' time
loop (``functional.recurrent.recurrence``), nn.RNN / LSTM / GRU and the three cells.

* float64 gradients and gradients of gradients of the two gate ops on drawn shapes (with and
  without trailing spatial dims), of the three cells (input, state and every weight) and of
  the time loop in every mode and direction (the fused backpropagation through time, and the
  composite path that create_graph takes);
* the CPU kernels against their plain-NumPy references in float32 and float64, and the fused
  plain backward against the composite create_graph one;
* held-out PyTorch oracle: weights copied by state_dict name, float64, the same outputs,
  final states and gradients w.r.t. input, initial state and every weight for multi-layer,
  bidirectional, batch_first, bias-free, relu and unbatched layers, the cells, a gradient
  penalty (second order) and float32 forwards;
* parameters (names, shapes, init), dropout between layers in training mode only, and clear
  errors naming the shapes.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import nanogen as ng
import nanogen.functional as F
from nanogen import nn
from nanogen.functional.recurrent import recurrence, recurrence_composite
from nanogen.kernels import recurrent as K
from nanogen.testing import assert_close, gradcheck, gradgradcheck

from .strategies import float64_arrays, sides
from tests.oracle import needs_torch, torch

GRAD_CHECKED = {"lstm_cell_gates", "gru_cell_gates"}


def _leaves(*arrays):
    return [ng.tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays]


# ================================================================ the gate ops
@st.composite
def cell_shapes(draw, K_):
    """(gates shape (N, K·H, *rest), state shape (N, H, *rest)): rest empty or one spatial dim
    (a PixelRNN row)."""
    n, h = draw(sides(1, 3)), draw(sides(1, 2))
    rest = tuple(draw(st.lists(sides(1, 2), max_size=1)))
    return (n, K_ * h) + rest, (n, h) + rest


@st.composite
def lstm_cases(draw):
    gs, cs = draw(cell_shapes(4))
    return draw(float64_arrays(gs, -3.0, 3.0)), draw(float64_arrays(cs))


@st.composite
def gru_cases(draw):
    gs, hs = draw(cell_shapes(3))
    return (draw(float64_arrays(gs, -3.0, 3.0)), draw(float64_arrays(gs, -3.0, 3.0)),
            draw(float64_arrays(hs)))


def lstm_both(gates, c):
    return F.lstm_cell_gates(gates, c)


_SPATIAL = (np.linspace(-2.5, 2.5, 2 * 8 * 3).reshape(2, 8, 3),
            np.linspace(1.5, -1.5, 2 * 2 * 3).reshape(2, 2, 3))


@given(arrays=lstm_cases())
@example(arrays=_SPATIAL)
def test_lstm_cell_gates_gradcheck(arrays):
    gradcheck(lstm_both, _leaves(*arrays))


@given(arrays=lstm_cases())
@example(arrays=_SPATIAL)
def test_lstm_cell_gates_gradgradcheck(arrays):
    gradgradcheck(lstm_both, _leaves(*arrays))


@given(arrays=lstm_cases())
def test_lstm_cell_gates_single_output_gradients(arrays):
    """h' alone and c' alone: the packed output's gradient is half zeros either way."""
    gradcheck(lambda g, c: F.lstm_cell_gates(g, c)[0], _leaves(*arrays))
    gradcheck(lambda g, c: F.lstm_cell_gates(g, c)[1], _leaves(*arrays))


@given(arrays=gru_cases())
def test_gru_cell_gates_gradcheck(arrays):
    gradcheck(F.gru_cell_gates, _leaves(*arrays))


@given(arrays=gru_cases())
def test_gru_cell_gates_gradgradcheck(arrays):
    gradgradcheck(F.gru_cell_gates, _leaves(*arrays))


def _cotangent(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@given(arrays=lstm_cases())
def test_lstm_cell_gates_match_the_reference(arrays):
    gates, c = arrays
    N = c.shape[0]
    leaves = _leaves(gates, c)
    h, c_new = F.lstm_cell_gates(*leaves)
    g3, c2 = gates.reshape(N, 4, -1), c.reshape(N, -1)
    want_h, want_c = K.reference_lstm(g3, c2)
    assert_close(h, want_h.reshape(c.shape), rtol=1e-13, atol=1e-15)
    assert_close(c_new, want_c.reshape(c.shape), rtol=1e-13, atol=1e-15)
    gh, gc = _cotangent(c.shape, 1), _cotangent(c.shape, 2)
    grads = ng.autograd.grad([h, c_new], leaves, grad_outputs=[ng.tensor(gh), ng.tensor(gc)])
    want = K.reference_lstm_backward(g3, c2, gh.reshape(N, -1), gc.reshape(N, -1))
    for g, w, t in zip(grads, want, leaves):
        assert_close(g, w.reshape(t.shape), rtol=1e-12, atol=1e-14)


@given(arrays=gru_cases())
def test_gru_cell_gates_match_the_reference(arrays):
    gi, gh, h = arrays
    N = h.shape[0]
    leaves = _leaves(gi, gh, h)
    out = F.gru_cell_gates(*leaves)
    views = gi.reshape(N, 3, -1), gh.reshape(N, 3, -1), h.reshape(N, -1)
    assert_close(out, K.reference_gru(*views).reshape(h.shape), rtol=1e-13, atol=1e-15)
    gy = _cotangent(h.shape)
    grads = ng.autograd.grad(out, leaves, grad_outputs=ng.tensor(gy))
    for g, w, t in zip(grads, K.reference_gru_backward(*views, gy.reshape(N, -1)), leaves):
        assert_close(g, w.reshape(t.shape), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("op", ["lstm", "gru"])
@given(seed=st.integers(0, 2 ** 16))
def test_plain_and_create_graph_backward_agree(op, seed):
    """The fused backward kernel (plain backward) and the composite one (create_graph)."""
    rng = np.random.default_rng(seed)
    if op == "lstm":
        arrays, fn = [rng.standard_normal((3, 8, 2)) * 2, rng.standard_normal((3, 2, 2))], \
            lambda g, c: sum((t * t).sum() for t in F.lstm_cell_gates(g, c))
    else:
        arrays, fn = [rng.standard_normal((3, 6)) * 2, rng.standard_normal((3, 6)),
                      rng.standard_normal((3, 2))], lambda *a: (F.gru_cell_gates(*a) ** 2).sum()
    grads = []
    for create_graph in (False, True):
        leaves = _leaves(*arrays)
        grads.append(ng.autograd.grad(fn(*leaves), leaves, create_graph=create_graph))
    for plain, graph in zip(*grads):
        assert not plain.requires_grad and graph.requires_grad
        assert_close(plain, graph, rtol=1e-13, atol=1e-15)


# ================================================================ the kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(n=st.integers(1, 5), m=st.integers(1, 40), seed=st.integers(0, 2 ** 16))
@example(n=2, m=0, seed=0)           # empty rows
def test_cpu_kernels_match_the_reference(dtype, n, m, seed):
    rng = np.random.default_rng(seed)
    tol = 1e-14 if dtype == np.float64 else 1e-6      # (float32: the SIMD σ and tanh, ~2e-7)

    def arr(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)
    gates, c, gh, gc = arr(n, 4, m, scale=3.0), arr(n, m), arr(n, m), arr(n, m)
    h, c_new, acts = K.lstm_forward_cpu(gates, c)
    want_h, want_c = K.reference_lstm(gates, c)
    assert h.dtype == dtype and c_new.dtype == dtype
    assert_close(h, want_h, rtol=tol, atol=tol)
    assert_close(c_new, want_c, rtol=tol, atol=4 * tol)
    for got, want in zip(K.lstm_backward_cpu(acts, c, c_new, gh, gc),
                         K.reference_lstm_backward(gates, c, gh, gc)):
        assert got.dtype == dtype
        assert_close(got, want, rtol=4 * tol, atol=4 * tol)
    gi, ghh, hh, gy = arr(n, 3, m, scale=3.0), arr(n, 3, m, scale=3.0), arr(n, m), arr(n, m)
    h_new, acts = K.gru_forward_cpu(gi, ghh, hh)
    assert_close(h_new, K.reference_gru(gi, ghh, hh), rtol=tol, atol=tol)
    for got, want in zip(K.gru_backward_cpu(acts, ghh, hh, gy),
                         K.reference_gru_backward(gi, ghh, hh, gy)):
        assert got.dtype == dtype
        assert_close(got, want, rtol=4 * tol, atol=4 * tol)


def test_kernels_saturate_without_overflow():
    """Pre-activations far beyond exp's range: σ -> 0 / 1 and tanh -> ±1, no NaN or inf."""
    for dtype in (np.float32, np.float64):
        big = np.array([-1e4, -120.0, -30.0, 0.0, 30.0, 120.0, 1e4], dtype)
        gates = np.stack([big] * 4)[None]
        h, c_new, _ = K.lstm_forward_cpu(gates, np.ones((1, 7), dtype))
        want_h, want_c = K.reference_lstm(gates.astype(np.float64), np.ones((1, 7)))
        assert np.all(np.isfinite(h)) and np.all(np.isfinite(c_new))
        assert_close(h, want_h, rtol=1e-6, atol=1e-7)
        assert_close(c_new, want_c, rtol=1e-6, atol=1e-7)


def test_kernels_split_rows_over_threads_when_big(monkeypatch):
    """Above the hand-over threshold the rows go to several threads: the same values."""
    from nanogen.kernels import _threads
    rng = np.random.default_rng(3)
    gates, c = rng.standard_normal((6, 4, 10)), rng.standard_normal((6, 10))
    one = K.lstm_forward_cpu(gates, c)
    monkeypatch.setattr(_threads, "PARALLEL_WORK", 1)
    monkeypatch.setattr(_threads, "cpu_threads", lambda: 3)
    for a, b in zip(one, K.lstm_forward_cpu(gates, c)):
        assert np.array_equal(a, b)


def test_kernel_shape_errors():
    with pytest.raises(ValueError, match=r"expected gates \(N, 4, M\)"):
        K.lstm_forward_cpu(np.zeros((2, 3, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"expected gates \(N, 3, M\)"):
        K.gru_forward_cpu(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), np.zeros((2, 5)))


# ================================================================ the time loop
MODES = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def _loop_arrays(rng, mode, T, N, H, bias=True):
    G = {"lstm": 4, "gru": 3}.get(mode, 1) * H
    arrays = [rng.standard_normal((T, N, G)), rng.standard_normal((G, H)) * 0.7,
              rng.standard_normal((N, H))]
    if mode == "lstm":
        arrays.append(rng.standard_normal((N, H)))
    if mode == "gru" and bias:
        arrays.append(rng.standard_normal(G))
    return arrays


def _loop_fn(mode, reverse, composite=False):
    def fn(xproj, w_hh, h0, *rest):
        c0 = rest[0] if mode == "lstm" else None
        b_hh = rest[0] if mode == "gru" and rest else None
        if composite:
            args = [a for a in (c0, b_hh) if a is not None]
            return recurrence_composite(mode, xproj, w_hh, h0, *args, reverse=reverse,
                                        has_bias=b_hh is not None)
        out, h_n, c_n = recurrence(mode, xproj, w_hh, h0, c0, b_hh, reverse)
        return (out, h_n) + ((c_n,) if c_n is not None else ())
    return fn


@pytest.mark.parametrize("mode", MODES)
@given(T=sides(1, 3), N=sides(1, 2), H=sides(1, 2), reverse=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_time_loop_gradcheck(mode, T, N, H, reverse, seed):
    """Backpropagation through time by the fused kernels, every input (relu: pre-activations
    drawn continuous, never within a step of its kink)."""
    arrays = _loop_arrays(np.random.default_rng(seed), mode, T, N, H)
    gradcheck(_loop_fn(mode, reverse), _leaves(*arrays))


@pytest.mark.parametrize("mode", MODES)
@given(T=sides(1, 3), N=sides(1, 2), H=sides(1, 2), reverse=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_time_loop_gradgradcheck(mode, T, N, H, reverse, seed):
    """create_graph differentiates the composite layer: its gradients of gradients."""
    arrays = _loop_arrays(np.random.default_rng(seed), mode, T, N, H)
    gradgradcheck(_loop_fn(mode, reverse), _leaves(*arrays), mode="directional",
                  n_directions=3)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
def test_time_loop_matches_the_composite(mode, reverse):
    """The array loop and the same loop of differentiable cell ops: values and the gradients
    of every input (GRU also without b_hh)."""
    rng = np.random.default_rng(5)
    for bias in (True, False):
        arrays = _loop_arrays(rng, mode, 4, 3, 2, bias)
        results = []
        for composite in (False, True):
            leaves = _leaves(*arrays)
            outs = _loop_fn(mode, reverse, composite)(*leaves)
            if composite:       # the packed layout: (T [+ 1], N, H)
                T = arrays[0].shape[0]
                outs = (outs[:T], outs[0 if reverse else T - 1]) + \
                    ((outs[T],) if mode == "lstm" else ())
            loss = sum(((o * o).sum() + o.sum()) for o in outs)
            results.append([*outs, *ng.autograd.grad(loss, leaves)])
        for ours, theirs in zip(*results):
            assert_close(ours, theirs, rtol=1e-12, atol=1e-14, msg=f"{mode} {reverse}")


def test_step_products_run_on_one_blas_thread(monkeypatch):
    """The time loop's per-step products run with NumPy's BLAS on one thread; the setting
    is restored after the loop (and after an error inside it)."""
    from nanogen.kernels import blas
    controls = blas._blas_thread_controls("numpy")
    if controls is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS whose threads can be set")
    before = controls[0]()
    seen = []
    real = np.matmul

    def spy(*args, **kwargs):
        seen.append(controls[0]())
        return real(*args, **kwargs)
    monkeypatch.setattr(np, "matmul", spy)
    arrays = _loop_arrays(np.random.default_rng(0), "lstm", 3, 2, 2)
    leaves = _leaves(*arrays)
    out, h_n, c_n = recurrence("lstm", leaves[0], leaves[1], leaves[2], leaves[3])
    (out.sum() + c_n.sum()).backward()
    assert seen and set(seen[:3]) == {1}          # the three forward steps
    assert controls[0]() == before
    monkeypatch.setattr(np, "matmul", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        recurrence("lstm", *_leaves(*arrays))
    assert controls[0]() == before


# ================================================================ cells
def _cell(kind, input_size=3, hidden_size=2, bias=True):
    ng.manual_seed(0)
    if kind == "rnn_relu":
        return nn.RNNCell(input_size, hidden_size, bias, nonlinearity="relu").double()
    return {"rnn_tanh": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[kind](
        input_size, hidden_size, bias).double()


def _cell_case(kind, N, seed, bias=True):
    """(fn, leaves): the cell as a function of its input, state(s) and parameters."""
    cell = _cell(kind, bias=bias)
    rng = np.random.default_rng(seed)
    states = [rng.standard_normal((N, 2)) for _ in range(2 if kind == "lstm" else 1)]
    leaves = _leaves(rng.standard_normal((N, 3)), *states) + list(cell.parameters())
    with ng.no_grad():
        for p in cell.parameters():
            p.copy_(ng.tensor(rng.standard_normal(p.shape)))

    def fn(x, *rest):
        hx = tuple(rest[:2]) if kind == "lstm" else rest[0]
        return cell(x, hx)
    return fn, leaves


@pytest.mark.parametrize("kind", MODES)
@given(N=sides(1, 3), bias=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_cell_gradcheck(kind, N, bias, seed):
    fn, leaves = _cell_case(kind, N, seed, bias)
    gradcheck(fn, leaves)


@pytest.mark.parametrize("kind", MODES)
@given(N=sides(1, 2), seed=st.integers(0, 2 ** 16))
def test_cell_gradgradcheck(kind, N, seed):
    fn, leaves = _cell_case(kind, N, seed)
    gradgradcheck(fn, leaves, mode="directional", n_directions=3)


# ================================================================ against PyTorch
def _torch_pair(cls, *args, dtype=np.float64, **kw):
    """A torch layer and a nanogen one with the same weights (copied by state_dict name)."""
    torch.manual_seed(0)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    theirs = getattr(torch.nn, cls)(*args, **kw, dtype=tdtype)
    ours = getattr(nn, cls)(*args, **kw, dtype=ng.float64 if dtype == np.float64 else None)
    ours.load_state_dict({k: ng.tensor(v.detach().numpy()) for k, v in
                          theirs.state_dict().items()})
    return theirs, ours


LAYERS = [
    ("LSTM", dict()),
    ("LSTM", dict(num_layers=3, bidirectional=True)),
    ("LSTM", dict(num_layers=2, batch_first=True, bias=False)),
    ("GRU", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("GRU", dict(bias=False)),
    ("RNN", dict(num_layers=2, nonlinearity="relu", bidirectional=True)),
    ("RNN", dict(batch_first=True)),
]


def _run_layer(lib, layer, x, states, unbatched=False):
    """(output, h_n[, c_n]) and the leaves they depend on, for either library."""
    xs = lib.tensor(x, requires_grad=True)
    leaves = [xs]
    hx = None
    if states is not None:
        st_ = [lib.tensor(s, requires_grad=True) for s in states]
        leaves += st_
        hx = tuple(st_) if len(st_) == 2 else st_[0]
    out, h = layer(xs, hx)
    outs = [out] + (list(h) if isinstance(h, tuple) else [h])
    return outs, leaves + list(layer.parameters())


@needs_torch
@pytest.mark.parametrize("cls, kw", LAYERS, ids=[f"{c}-{k}" for c, k in LAYERS])
@pytest.mark.parametrize("with_state", [False, True])
def test_layers_match_torch(cls, kw, with_state):
    E, H, T, N = 3, 4, 5, 2
    theirs, ours = _torch_pair(cls, E, H, **kw)
    rng = np.random.default_rng(11)
    shape = (N, T, E) if kw.get("batch_first") else (T, N, E)
    x = rng.standard_normal(shape)
    L = kw.get("num_layers", 1) * (1 + kw.get("bidirectional", False))
    states = None
    if with_state:
        states = [rng.standard_normal((L, N, H)) for _ in range(2 if cls == "LSTM" else 1)]
    ng_outs, ng_leaves = _run_layer(ng, ours, x, states)
    t_outs, t_leaves = _run_layer(torch, theirs, x, states)
    cots = [rng.standard_normal(tuple(o.shape)) for o in t_outs]
    for o, t in zip(ng_outs, t_outs):
        assert tuple(o.shape) == tuple(t.shape)
        assert_close(o, t.detach().numpy(), rtol=1e-12, atol=1e-13, msg=f"{cls} forward")
    g_ng = ng.autograd.grad(ng_outs, ng_leaves, grad_outputs=[ng.tensor(c) for c in cots])
    g_t = torch.autograd.grad(t_outs, t_leaves, grad_outputs=[torch.tensor(c) for c in cots])
    names = ["input"] + ["h_0", "c_0"][:len(states or ())] + \
        [n for n, _ in theirs.named_parameters()]
    for g, tg, name in zip(g_ng, g_t, names):
        assert_close(g, tg.numpy(), rtol=1e-10, atol=1e-12, msg=f"{cls} gradient of {name}")


@needs_torch
@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN"])
def test_unbatched_input_matches_torch(cls):
    theirs, ours = _torch_pair(cls, 3, 2, num_layers=2)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3))
    states = [rng.standard_normal((2, 2)) for _ in range(2 if cls == "LSTM" else 1)]
    for st_ in (None, states):
        ng_outs, ng_leaves = _run_layer(ng, ours, x, st_)
        t_outs, t_leaves = _run_layer(torch, theirs, x, st_)
        loss_ng = sum((o ** 2).sum() for o in ng_outs)
        loss_t = sum((o ** 2).sum() for o in t_outs)
        for o, t in zip(ng_outs, t_outs):
            assert tuple(o.shape) == tuple(t.shape)
            assert_close(o, t.detach().numpy(), rtol=1e-12, atol=1e-13)
        for g, tg in zip(ng.autograd.grad(loss_ng, ng_leaves),
                         torch.autograd.grad(loss_t, t_leaves)):
            assert_close(g, tg.numpy(), rtol=1e-10, atol=1e-12)


CELLS = [("LSTMCell", {}), ("GRUCell", {}), ("RNNCell", {}),
         ("RNNCell", {"nonlinearity": "relu"}), ("LSTMCell", {"bias": False}),
         ("GRUCell", {"bias": False})]


@needs_torch
@pytest.mark.parametrize("cls, kw", CELLS, ids=[f"{c}-{k}" for c, k in CELLS])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_torch(cls, kw, batched):
    theirs, ours = _torch_pair(cls, 3, 4, **kw)
    rng = np.random.default_rng(4)
    lead = (5,) if batched else ()
    x = rng.standard_normal(lead + (3,))
    states = [rng.standard_normal(lead + (4,)) for _ in range(2 if cls == "LSTMCell" else 1)]
    results = []
    for lib, layer in ((ng, ours), (torch, theirs)):
        leaves = [lib.tensor(a, requires_grad=True) for a in [x, *states]]
        hx = tuple(leaves[1:]) if cls == "LSTMCell" else leaves[1]
        out = layer(leaves[0], hx)
        outs = list(out) if isinstance(out, tuple) else [out]
        loss = sum((o ** 3).sum() for o in outs)
        grads = lib.autograd.grad(loss, leaves + list(layer.parameters()))
        results.append([o.detach().numpy() for o in outs] + [g.numpy() for g in grads])
        if lib is ng:           # no state given: zeros
            out0 = layer(leaves[0])
            ref = theirs(torch.tensor(x))
            for a, b in zip(out0 if isinstance(out0, tuple) else [out0],
                            ref if isinstance(ref, tuple) else [ref]):
                assert_close(a, b.detach().numpy(), rtol=1e-12, atol=1e-13)
    for a, b in zip(*results):
        assert a.shape == b.shape
        assert_close(a, b, rtol=1e-10, atol=1e-12, msg=cls)


@needs_torch
@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_gradient_penalty_matches_torch(cls):
    """A second-order quantity: ||∂<v, output>/∂x||² differentiated w.r.t. every weight,
    through the composite create_graph path of the time loop."""
    theirs, ours = _torch_pair(cls, 3, 4, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(6)
    x, v = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 8))
    results = []
    for lib, layer in ((ng, ours), (torch, theirs)):
        xs = lib.tensor(x, requires_grad=True)
        out = layer(xs)[0]
        (g,) = lib.autograd.grad((out * lib.tensor(v)).sum(), xs, create_graph=True)
        penalty = (g * g).sum()
        results.append([t.numpy() for t in lib.autograd.grad(penalty, [xs] +
                                                              list(layer.parameters()))])
    for a, b in zip(*results):
        assert_close(a, b, rtol=1e-9, atol=1e-11)


@needs_torch
@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN"])
def test_float32_layers_match_torch(cls):
    """float32 stays float32 (the SIMD σ and tanh: a few float32 ulps from PyTorch's)."""
    theirs, ours = _torch_pair(cls, 5, 16, num_layers=2, dtype=np.float32)
    x = np.random.default_rng(8).standard_normal((20, 3, 5)).astype(np.float32)
    out, _ = ours(ng.tensor(x))
    assert out.dtype == np.float32
    assert_close(out, theirs(torch.tensor(x))[0].detach().numpy(), rtol=1e-4, atol=2e-6)


@needs_torch
@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"])
def test_parameters_names_shapes_and_init_follow_torch(cls):
    kw = dict(num_layers=2, bidirectional=True) if "Cell" not in cls else {}
    theirs = getattr(torch.nn, cls)(6, 32, **kw)
    ng.manual_seed(0)
    ours = getattr(nn, cls)(6, 32, **kw)
    mine = ours.state_dict()
    assert list(mine) == list(theirs.state_dict())
    bound = 1 / np.sqrt(32)
    for name, t in theirs.state_dict().items():
        assert tuple(mine[name].shape) == tuple(t.shape), name
        values = mine[name].detach().numpy()
        assert values.dtype == np.float32
        assert np.all(np.abs(values) <= bound), name
    values = np.concatenate([p.detach().numpy().ravel() for p in ours.parameters()])
    n = values.size
    # U(-b, b): extremes close to b; mean 0 and variance b²/3 within four standard errors
    assert np.abs(values).max() > 0.99 * bound
    assert abs(values.mean()) < 4 * bound / np.sqrt(3 * n)
    assert abs(values.var() / (bound ** 2 / 3) - 1) < 4 * np.sqrt(0.8 / n)
    assert repr(ours) == repr(theirs)


@needs_torch
def test_repr_follows_torch():
    for make in (lambda lib: lib.nn.RNN(3, 4, 2, nonlinearity="relu", bias=False, dropout=0.5,
                                        batch_first=True),
                 lambda lib: lib.nn.RNNCell(3, 4, bias=False, nonlinearity="relu"),
                 lambda lib: lib.nn.GRU(3, 4, bidirectional=True)):
        assert repr(make(ng)) == repr(make(torch))


# ================================================================ modes, dropout, errors
def _layer_output(layer, x, training):
    layer.train(training)
    return layer(ng.tensor(x))[0].detach().numpy()


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN"])
def test_dropout_only_between_layers_and_only_in_training(cls, monkeypatch):
    ng.manual_seed(1)
    layer = getattr(nn, cls)(3, 4, num_layers=3, dropout=0.5)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    seen = []
    real = F.dropout

    def spy(input, p=0.5, training=True, inplace=False):
        seen.append((tuple(input.shape), p, training))
        return real(input, p, training, inplace)
    monkeypatch.setattr(F, "dropout", spy)
    eval_out = _layer_output(layer, x, False)
    assert not seen
    assert np.array_equal(eval_out, _layer_output(layer, x, False))    # deterministic
    train_out = _layer_output(layer, x, True)
    assert seen == [((5, 2, 4), 0.5, True)] * 2          # after layers 0 and 1, not the last
    assert not np.allclose(train_out, eval_out)


def test_dropout_one_cuts_the_input_off_in_training_only():
    """With dropout = 1 the second layer sees zeros in training: the output no longer depends
    on the input (in eval it does)."""
    ng.manual_seed(2)
    layer = nn.GRU(3, 4, num_layers=2, dropout=1.0)
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((2, 4, 2, 3)).astype(np.float32)
    assert np.array_equal(_layer_output(layer, x1, True), _layer_output(layer, x2, True))
    assert not np.allclose(_layer_output(layer, x1, False), _layer_output(layer, x2, False))


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.LSTM(3, 4, dropout=0.2)


def test_training_reduces_the_loss_of_a_copy_task():
    """A small LSTM learns to output its input delayed by one step (loss falls below 0.05)."""
    ng.manual_seed(0)
    model, head = nn.LSTM(2, 16), nn.Linear(16, 2)
    opt = ng.optim.Adam(list(model.parameters()) + list(head.parameters()), lr=2e-2)
    rng = np.random.default_rng(0)
    for _ in range(150):
        x = rng.standard_normal((8, 16, 2)).astype(np.float32)
        target = np.concatenate([np.zeros((1, 16, 2), np.float32), x[:-1]])
        loss = F.mse_loss(head(model(ng.tensor(x))[0]), ng.tensor(target))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


ERRORS = [
    (lambda: nn.LSTM(3, 4)(ng.randn(2, 3, 4, 3)), ValueError,
     r"expected a 2-D or 3-D input, got a 4-D input of shape \(2, 3, 4, 3\)"),
    (lambda: nn.GRU(3, 4)(ng.randn(5, 2, 6)), ValueError,
     r"input of shape \(5, 2, 6\) has 6 features; expected input_size=3"),
    (lambda: nn.RNN(3, 4, num_layers=2)(ng.randn(5, 2, 3), ng.zeros(1, 2, 4)), ValueError,
     r"h_0 has shape \(1, 2, 4\); expected \(2, 2, 4\) for an input of shape \(5, 2, 3\)"),
    (lambda: nn.LSTM(3, 4)(ng.randn(5, 2, 3), (ng.zeros(1, 2, 4), ng.zeros(1, 3, 4))),
     ValueError, r"c_0 has shape \(1, 3, 4\); expected \(1, 2, 4\)"),
    (lambda: nn.LSTM(3, 4)(ng.randn(5, 2, 3), ng.zeros(1, 2, 4)), TypeError,
     r"hx must be a tuple \(h_0, c_0\)"),
    (lambda: nn.LSTM(3, 4, batch_first=True)(ng.randn(2, 5, 3), (ng.zeros(1, 5, 4),) * 2),
     ValueError, r"h_0 has shape \(1, 5, 4\); expected \(1, 2, 4\)"),
    (lambda: nn.GRU(3, 4)(ng.randn(5, 3), ng.zeros(1, 2, 4)), ValueError,
     r"h_0 has shape \(1, 2, 4\); expected \(1, 4\) for an input of shape \(5, 3\)"),
    (lambda: nn.LSTM(3, 4)(ng.randn(0, 2, 3)), ValueError, "the sequence is empty"),
    (lambda: nn.LSTM(3, 4)(ng.zeros(5, 2, 3, dtype=ng.int64)), TypeError, "must be floating"),
    (lambda: nn.LSTMCell(3, 4)(ng.randn(2, 5)), ValueError,
     r"input of shape \(2, 5\) has 5 features; expected input_size=3"),
    (lambda: nn.LSTMCell(3, 4)(ng.randn(2, 2, 3)), ValueError, "expected a 1-D or 2-D input"),
    (lambda: nn.GRUCell(3, 4)(ng.randn(2, 3), ng.zeros(3, 4)), ValueError,
     r"hx has shape \(3, 4\); expected \(2, 4\)"),
    (lambda: nn.LSTMCell(3, 4)(ng.randn(3), (ng.zeros(4), ng.zeros(2, 4))), ValueError,
     r"c_0 has shape \(2, 4\); expected \(4,\)"),
    (lambda: nn.LSTM(3, 4, proj_size=2), ValueError, "proj_size=2 .* not implemented"),
    (lambda: nn.RNN(3, 4, nonlinearity="sigmoid"), ValueError, "unknown nonlinearity"),
    (lambda: nn.GRU(3, 4, dropout=1.5), ValueError, r"dropout must be a number in \[0, 1\]"),
    (lambda: nn.LSTM(3, 0), ValueError, "hidden_size must be an integer >= 1"),
    (lambda: F.lstm_cell_gates(ng.zeros(2, 12), ng.zeros(2, 4)), ValueError,
     r"gates of shape \(2, 12\) does not fit c of shape \(2, 4\): .* = \(2, 16\)"),
    (lambda: F.lstm_cell_gates(ng.zeros(2, 8, 3), ng.zeros(2, 2, 4)), ValueError,
     r"gates of shape \(2, 8, 3\) does not fit c of shape \(2, 2, 4\)"),
    (lambda: F.lstm_cell_gates(ng.zeros(3, 8), ng.zeros(2, 2)), ValueError,
     r"expected c \(N, H, \*rest\) and gates \(N, 4H, \*rest\) = \(2, 8\)"),
    (lambda: F.gru_cell_gates(ng.zeros(2, 6), ng.zeros(2, 9), ng.zeros(2, 2)), ValueError,
     r"gi and gh must have the same shape .* got \(2, 6\) and \(2, 9\)"),
    (lambda: F.gru_cell_gates(ng.zeros(2, 6), ng.zeros(2, 6), ng.zeros(2, 3)), ValueError,
     r"gi of shape \(2, 6\) does not fit h of shape \(2, 3\)"),
    (lambda: F.gru_cell_gates(ng.zeros(2, 6), ng.zeros(2, 6), ng.zeros(2)), ValueError,
     r"does not fit h of shape \(2,\)"),
    (lambda: F.lstm_cell_gates(ng.zeros(2, 8, dtype=ng.int64), ng.zeros(2, 2)), TypeError,
     "gates must be floating"),
]


@pytest.mark.parametrize("call, error, message", ERRORS)
def test_errors_name_the_shapes(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_state_dict_round_trip_and_no_bias_layers():
    a, b = nn.GRU(3, 4, num_layers=2, bias=False), nn.GRU(3, 4, num_layers=2, bias=False)
    assert list(a.state_dict()) == ["weight_ih_l0", "weight_hh_l0", "weight_ih_l1",
                                    "weight_hh_l1"]
    b.load_state_dict(a.state_dict())
    x = ng.randn(5, 2, 3)
    assert np.array_equal(a(x)[0].detach().numpy(), b(x)[0].detach().numpy())
    assert [len(w) for w in a.all_weights] == [2, 2]
    a.flatten_parameters()
