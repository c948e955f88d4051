"""The Tensor API: creation and dtype rules, conversion, in-place writes, devices, errors."""
import numpy as np
import pytest

import nanogen as ng
from nanogen.testing import assert_close


def test_dtype_rules_follow_pytorch():
    assert ng.tensor([1.0, 2.0]).dtype == ng.float32
    assert ng.tensor(3.5).dtype == ng.float32
    assert ng.tensor([1, 2]).dtype == ng.int64
    assert ng.tensor([True, False]).dtype == ng.bool_
    assert ng.tensor(np.zeros(3)).dtype == ng.float64          # float64 stays float64
    assert ng.tensor(np.zeros(3, np.float32)).dtype == ng.float32
    assert ng.tensor([1, 2], dtype=ng.float64).dtype == ng.float64
    assert ng.float is ng.float32 and ng.double is ng.float64 and ng.long is ng.int64


def test_tensor_copies_but_from_numpy_shares():
    a = np.zeros(3, np.float32)
    t, s = ng.tensor(a), ng.from_numpy(a)
    a[0] = 5
    assert t[0].item() == 0 and s[0].item() == 5


def test_factories():
    assert ng.zeros(2, 3).shape == (2, 3) == ng.ones((2, 3)).shape
    assert ng.full((2,), 7).dtype == ng.int64 and ng.full((2,), 7.0).dtype == ng.float32
    assert ng.arange(5).tolist() == [0, 1, 2, 3, 4] and ng.arange(5).dtype == ng.int64
    assert ng.arange(0, 1, 0.25).dtype == ng.float32
    assert_close(ng.linspace(0, 1, 5), [0, 0.25, 0.5, 0.75, 1])
    assert_close(ng.eye(3), np.eye(3))
    x = ng.randn(2, 3, dtype=ng.float64)
    for like in (ng.zeros_like, ng.ones_like, ng.rand_like, ng.randn_like, ng.empty_like):
        y = like(x)
        assert y.shape == x.shape and y.dtype == ng.float64
    assert ng.full_like(x, 2.0).tolist() == [[2.0] * 3] * 2


def test_random_draws_are_seeded_and_well_distributed():
    ng.manual_seed(123)
    a = ng.randn(20000)
    ng.manual_seed(123)
    b = ng.randn(20000)
    assert np.array_equal(a.numpy(), b.numpy())
    assert abs(a.mean().item()) < 0.03 and abs(a.std().item() - 1) < 0.03
    u = ng.rand(20000)
    assert 0 <= u.min().item() and u.max().item() < 1 and abs(u.mean().item() - 0.5) < 0.02
    r = ng.randint(3, 7, (1000,))
    assert set(r.tolist()) == {3, 4, 5, 6} and r.dtype == ng.int64
    assert sorted(ng.randperm(6).tolist()) == list(range(6))


def test_rng_state_round_trip_reproduces_draws():
    ng.manual_seed(0)
    ng.rand(3)
    state = ng.get_rng_state()
    first = ng.randn(5).numpy().copy()
    ng.randn(7)
    ng.set_rng_state(state)
    assert np.array_equal(ng.randn(5).numpy(), first)
    with pytest.raises(ValueError, match="get_rng_state"):
        ng.set_rng_state(ng.tensor(np.frombuffer(b"nonsense", np.uint8).copy()))


def test_an_rng_state_saved_before_the_device_count_still_restores_the_cpu_stream():
    """Checkpoints written before the state held the device stream's count hold the CPU
    generator's state alone: they restore it (and a device count of 0)."""
    import json
    ng.manual_seed(4)
    ng.rand(2)
    state = json.loads(ng.get_rng_state().numpy().tobytes().decode())
    assert state["device_draws"] == 0
    old = np.frombuffer(json.dumps(state["cpu"]).encode(), np.uint8).copy()
    first = ng.randn(3).numpy().copy()
    ng.manual_seed(9)
    ng.set_rng_state(ng.tensor(old))
    assert np.array_equal(ng.randn(3).numpy(), first)


def test_conversions():
    x = ng.tensor([[1.5, 2.5]])
    assert x.shape == (1, 2) and x.ndim == 2 and x.numel() == 2 and x.size(1) == 2
    assert x.tolist() == [[1.5, 2.5]] and x[0, 1].item() == 2.5
    assert x.double().dtype == ng.float64 and x.double().float().dtype == ng.float32
    assert x.to(ng.int64).tolist() == [[1, 2]]
    assert x.long().dtype == ng.int64 and x.bool().dtype == ng.bool_
    assert float(x[0, 0]) == 1.5 and int(ng.tensor(3)) == 3
    assert np.asarray(x).shape == (1, 2)
    with pytest.raises(ValueError, match="one element"):
        x.item()
    y = ng.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        y.numpy()
    assert y.detach().numpy().tolist() == [1.0]


def test_cast_is_differentiable():
    x = ng.tensor([1.0, 2.0], requires_grad=True)
    (x.double() * 3).sum().backward()
    assert x.grad.dtype == ng.float32 and x.grad.tolist() == [3.0, 3.0]


def test_clone_copies_and_keeps_gradient_flow():
    x = ng.tensor([1.0, 2.0], requires_grad=True)
    c = x.clone()
    assert c.data is not x.data
    (c * c).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]


def test_requires_grad_rules():
    x = ng.tensor([1.0]).requires_grad_()
    assert x.requires_grad and x.is_leaf
    y = x * 2
    assert not y.is_leaf
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad = False
    with pytest.raises(RuntimeError, match="floating point"):
        ng.tensor([1, 2]).requires_grad_()


def test_setitem_on_plain_tensors_and_refusal_on_graph_tensors():
    m = ng.ones(2, 3, 4)
    m[:, :, 3:] = 0
    m[0, 0, 0] = ng.tensor(5.0)
    assert m.sum().item() == 2 * 3 * 3 - 1 + 5
    m[m > 1] = -1.0
    assert m.min().item() == -1.0
    w = ng.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        w[0] = 2.0
    with ng.no_grad():
        w[0] = 2.0
    assert w.tolist() == [2.0, 1.0, 1.0]


def test_indexing_accepts_none_ellipsis_masks_and_tensors():
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    x = ng.tensor(a)
    assert np.array_equal(x[None, ..., 1].numpy(), a[None, ..., 1])
    assert np.array_equal(x[:, [0, 2]].numpy(), a[:, [0, 2]])
    assert np.array_equal(x[x > 10].numpy(), a[a > 10])
    assert np.array_equal(x[ng.tensor([1, 1, 0])].numpy(), a[[1, 1, 0]])
    with pytest.raises(IndexError, match=r"shape \(2, 3, 4\)"):
        x[5]


def test_max_min_with_dim_return_values_and_indices():
    x = ng.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    values, indices = x.max(1)
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    r = x.min(dim=0, keepdim=True)
    assert r.values.tolist() == [[1.0, 0.0, 2.0]] and r.indices.tolist() == [[0, 1, 0]]
    assert x.max().item() == 7.0 and x.argmax().item() == 3


def test_method_and_function_forms_agree():
    x = ng.randn(3, 4)
    assert_close(x.exp(), ng.exp(x))
    assert_close(ng.cat([x, x], 1)[:, 4:], x)
    assert ng.stack([x, x]).shape == (2, 3, 4)
    assert_close(ng.where(x > 0, x, ng.zeros_like(x)), x.relu())
    assert [t.shape for t in x.split(3, 1)] == [(3, 3), (3, 1)]
    assert [t.shape for t in x.chunk(2)] == [(2, 4), (1, 4)]
    assert len(list(x)) == 3 and len(x.unbind(1)) == 4


def test_mixed_dtypes_error_names_both():
    a = ng.ones(2)
    b = ng.ones(2, dtype=ng.float64)
    with pytest.raises(TypeError, match="float32.*float64"):
        a + b
    assert (a + ng.tensor([1, 2])).dtype == ng.float32        # ints promote to the float dtype
    assert (ng.tensor([1, 2]) * 0.5).dtype == ng.float32
    assert (ng.tensor([1, 2]) + 1).dtype == ng.int64


def test_operators_and_reflected_forms():
    x = ng.tensor([1.0, 2.0, 4.0])
    assert (2 - x).tolist() == [1.0, 0.0, -2.0]
    assert (1 / x).tolist() == [1.0, 0.5, 0.25]
    assert (2 ** x).tolist() == [2.0, 4.0, 16.0]
    assert (x ** 2).tolist() == [1.0, 4.0, 16.0]
    assert (-x).tolist() == [-1.0, -2.0, -4.0] and abs(-x).tolist() == x.tolist()
    assert (x == 2.0).tolist() == [False, True, False] and (x >= 2).dtype == ng.bool_
    assert (np.float32(2.0) * x).tolist() == [2.0, 4.0, 8.0]
    y = x
    y += 1
    assert y.tolist() == [2.0, 3.0, 5.0] and x.tolist() == [1.0, 2.0, 4.0]


def test_tensors_are_hashable_and_printable():
    x = ng.tensor([1.0, 2.0], requires_grad=True)
    assert {x: 1}[x] == 1
    assert "requires_grad=True" in repr(x)
    assert "grad_fn" in repr(x * 2)
    assert "dtype=float64" in repr(ng.zeros(1, dtype=ng.float64))


def test_truth_value_of_many_elements_is_ambiguous():
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(ng.ones(2))
    assert bool(ng.ones(1))


def test_devices_without_a_gpu():
    x = ng.ones(2)
    assert x.device == "cpu" and x.device == ng.device("cpu") and not x.is_cuda
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        ng.device("tpu")
    if not ng.cuda.is_available():
        with pytest.raises(RuntimeError, match="'cuda' is not available"):
            x.to("cuda")
        with pytest.raises(RuntimeError, match="'cuda' is not available"):
            ng.zeros(2, device="cuda")
        with pytest.raises(RuntimeError, match="'cuda' is not available"):
            ng.set_default_device("cuda")            # refused at once, not at the first tensor
        assert ng.default_device() == "cpu"


def test_the_default_device_is_where_new_tensors_go_and_a_block_restores_it():
    assert ng.default_device() == "cpu"
    with ng.device("cpu") as dev:
        assert dev == "cpu" and ng.zeros(1).device == "cpu"
    try:
        with ng.device("cpu"):
            raise KeyError("inside")
    except KeyError:
        pass
    assert ng.default_device() == "cpu"


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        ng.ones(2, 3) @ ng.ones(4, 5)
    with pytest.raises(ValueError, match="invalid for a tensor of 6 elements"):
        ng.ones(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match=r"cannot broadcast shape \(3,\) to \(2, 4\)"):
        ng.ones(3).expand(2, 4)
