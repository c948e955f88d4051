"""Tests of nanogen.nn: Parameter, Module (registration, traversal, state_dict, modes, devices,
repr), containers, layers, activations, losses, init, utils, and a small end-to-end training run.

Reference values are computed with NumPy in float64 next to each assertion.
"""
from __future__ import annotations

import copy
import math
import os
import pickle
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
import nanogen.nn.functional as F
from nanogen import nn
from nanogen.nn import init


def arr(t):
    """A tensor's values as a float64 NumPy array."""
    return np.asarray(t.detach().numpy(), dtype=np.float64)


class TwoLayer(nn.Module):
    """A small model with a buffer, a non-persistent buffer and nested modules."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(4, 2)
        self.register_buffer("steps", ng.zeros(1, dtype=ng.int64))
        self.register_buffer("scratch", ng.ones(2), persistent=False)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


# ====================================================================== Parameter
def test_parameter_shares_array_and_is_leaf_requiring_grad():
    t = ng.randn(2, 3)
    p = nn.Parameter(t)
    assert isinstance(p, ng.Tensor) and isinstance(p, nn.Parameter)
    assert p.data is t.data                     # shares, no copy
    assert p.requires_grad and p.is_leaf and p._is_param
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    # a parameter built from a computed tensor is a fresh leaf
    x = ng.randn(3, requires_grad=True)
    q = nn.Parameter(x * 2)
    assert q.is_leaf and q.grad_fn is None
    # ops on a parameter give plain tensors
    assert type(p * 2) is ng.Tensor and type(p.detach()) is ng.Tensor
    assert nn.Parameter().shape == (0,)
    assert nn.Parameter([1.0, 2.0]).dtype == ng.float32


def test_parameter_repr_and_integer_rejection():
    p = nn.Parameter(ng.tensor([1.0, 2.0]))
    assert repr(p).startswith("Parameter containing:\ntensor([1., 2.]")
    assert "requires_grad=True" in repr(p)
    with pytest.raises(RuntimeError, match="floating point"):
        nn.Parameter(ng.tensor([1, 2]))
    assert not nn.Parameter(ng.tensor([1, 2]), requires_grad=False).requires_grad


def test_parameter_gradient_accumulates():
    p = nn.Parameter(ng.tensor([1.0, -2.0, 3.0]))
    (p * p).sum().backward()
    np.testing.assert_allclose(arr(p.grad), [2.0, -4.0, 6.0])


# ====================================================================== registration
def test_registration_order_names_and_kinds():
    m = TwoLayer()
    assert [n for n, _ in m.named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight",
                                                    "fc2.bias"]
    assert [n for n, _ in m.named_buffers()] == ["steps", "scratch"]
    assert [n for n, _ in m.named_children()] == ["fc1", "act", "fc2"]
    assert [n for n, _ in m.named_modules()] == ["", "fc1", "act", "fc2"]
    assert [n for n, _ in m.named_parameters(prefix="model")][0] == "model.fc1.weight"
    assert list(m.parameters(recurse=False)) == []
    assert m.num_parameters() == 3 * 4 + 4 + 4 * 2 + 2
    assert m.fc1.weight is m.fc1._parameters["weight"]
    assert m.steps is m._buffers["steps"] and m.fc1 is m._modules["fc1"]


def test_shared_submodule_and_tied_weights_are_deduplicated():
    shared = nn.Linear(2, 2)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias"]
    assert len(list(net.modules())) == 3                 # Sequential, Linear, ReLU
    assert [n for n, _ in net.named_modules()] == ["", "0", "1"]
    assert len(list(net.named_parameters(remove_duplicate=False))) == 4
    # the state dict keeps every path (both load into the same array)
    assert list(net.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]

    emb, head = nn.Embedding(5, 3), nn.Linear(3, 5, bias=False)
    head.weight = emb.weight                             # weight tying
    tied = nn.ModuleList([emb, head])
    assert [n for n, _ in tied.named_parameters()] == ["0.weight"]
    assert tied.num_parameters() == 15


def test_setattr_rules():
    m = nn.Module()
    m.w = nn.Parameter(ng.zeros(2))
    assert "w" in m._parameters and "w" not in m.__dict__
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'w'"):
        m.w = ng.zeros(2)
    m.w = None                                           # allowed: the slot stays, empty
    assert m.w is None and list(m.parameters()) == []
    with pytest.raises(TypeError, match="cannot assign 'Linear' as parameter 'w'"):
        m.w = nn.Linear(1, 1)                            # as in PyTorch: delete first
    del m.w
    m.w = nn.Linear(1, 1)
    assert "w" not in m._parameters and m._modules["w"] is m.w
    m.plain = ng.zeros(3)                                # a plain tensor is just an attribute
    assert "plain" not in m._buffers and m.plain.shape == (3,)
    m.register_buffer("buf", ng.zeros(2))
    m.buf = ng.ones(2)                                   # assigning to a buffer keeps it a buffer
    assert arr(m._buffers["buf"]).tolist() == [1.0, 1.0]
    with pytest.raises(TypeError, match="buffer 'buf'"):
        m.buf = 3.0
    del m.buf
    assert "buf" not in m._buffers
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'buf'"):
        m.buf


def test_register_errors_name_the_problem():
    m = nn.Module()
    with pytest.raises(KeyError, match=r'contain "\."'):
        m.register_parameter("a.b", nn.Parameter(ng.zeros(1)))
    with pytest.raises(TypeError, match="nn.Parameter or None required"):
        m.register_parameter("a", ng.zeros(1))
    with pytest.raises(KeyError, match="attribute 'train' already exists"):
        m.register_buffer("train", ng.zeros(1))
    with pytest.raises(TypeError, match="Tensor or None required"):
        m.register_buffer("b", np.zeros(1))
    with pytest.raises(TypeError, match="is not a Module subclass"):
        m.add_module("c", lambda x: x)
    with pytest.raises(ValueError, match="non-leaf"):
        m.register_parameter("d", _non_leaf_parameter())

    class Forgot(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(ng.zeros(1))
    with pytest.raises(AttributeError, match="before Module.__init__"):
        Forgot()
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        nn.Module()(1)


def _non_leaf_parameter():
    p = nn.Parameter(ng.zeros(2))
    p.grad_fn = (ng.randn(2, requires_grad=True) * 2).grad_fn   # forge a non-leaf Parameter
    return p


def test_get_submodule_apply_and_hooks():
    net = nn.Sequential(OrderedDict(enc=nn.Sequential(nn.Linear(2, 2), nn.ReLU()),
                                    dec=nn.Linear(2, 1)))
    assert net.get_submodule("enc.1").__class__ is nn.ReLU
    with pytest.raises(AttributeError, match="no submodule 'x'"):
        net.get_submodule("enc.x")
    visited = []
    net.apply(lambda mod: visited.append(type(mod).__name__))
    assert visited == ["Linear", "ReLU", "Sequential", "Linear", "Sequential"]   # post-order

    expected = arr(net(ng.zeros(5, 2)))
    seen = []
    handle = net.enc.register_forward_hook(lambda mod, args, out: seen.append(out.shape))
    pre = net.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    out = net(ng.randn(5, 2))
    assert seen == [(5, 2)]
    np.testing.assert_array_equal(arr(out), expected)    # the pre-hook zeroed the input
    handle.remove()
    pre.remove()
    net(ng.randn(1, 2))
    assert seen == [(5, 2)]


# ====================================================================== state_dict
def test_state_dict_contents_share_arrays_and_skip_non_persistent():
    m = TwoLayer()
    sd = m.state_dict()
    assert isinstance(sd, OrderedDict)
    assert list(sd) == ["steps", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    for key, value in sd.items():
        assert type(value) is ng.Tensor and not value.requires_grad
    assert sd["fc1.weight"].data is m.fc1.weight.data
    kept = m.state_dict(keep_vars=True)
    assert kept["fc1.weight"] is m.fc1.weight


def test_state_dict_round_trip_gives_identical_outputs():
    ng.manual_seed(0)
    a, b = TwoLayer(), TwoLayer()
    a.steps.data[...] = 7
    x = ng.randn(6, 3)
    assert not np.allclose(arr(a(x)), arr(b(x)))
    params_before = list(b.parameters())
    snapshot = {k: v.clone() for k, v in a.state_dict().items()}
    result = b.load_state_dict(snapshot)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    np.testing.assert_array_equal(arr(a(x)), arr(b(x)))
    assert int(b.steps.item()) == 7
    # loaded in place: same Parameter objects, arrays not aliased to the source
    assert all(p is q for p, q in zip(params_before, b.parameters()))
    assert b.fc1.weight.data is not snapshot["fc1.weight"].data
    b.fc1.weight.data[...] = 0
    assert np.abs(arr(snapshot["fc1.weight"])).sum() > 0


def test_load_state_dict_keeps_optimizer_references_working():
    m = nn.Linear(2, 1)
    held = list(m.parameters())                          # what an optimizer would hold
    m.load_state_dict({"weight": ng.tensor([[1.0, 2.0]]), "bias": ng.tensor([0.5])})
    np.testing.assert_array_equal(arr(held[0]), [[1.0, 2.0]])
    for p in held:                                       # one hand-written SGD step
        p.grad = ng.ones(*p.shape)
        p.data -= 0.5 * p.grad.data
    # W = [[0.5, 1.5]], b = [0.0] after the step: the module sees the update
    np.testing.assert_allclose(arr(m(ng.tensor([[1.0, 1.0]]))), [[2.0]], rtol=1e-6)


def test_load_state_dict_converts_dtype_and_accepts_numpy():
    m = nn.Linear(2, 2)
    w = np.arange(4, dtype=np.float64).reshape(2, 2)
    m.load_state_dict({"weight": ng.tensor(w), "bias": np.array([1, 2])})
    assert m.weight.dtype == ng.float32 and m.bias.dtype == ng.float32
    np.testing.assert_array_equal(arr(m.weight), w)
    np.testing.assert_array_equal(arr(m.bias), [1.0, 2.0])


def test_load_state_dict_strict_errors_name_keys():
    m = TwoLayer()
    sd = m.state_dict()
    del sd["fc2.bias"]
    sd["fc3.weight"] = ng.zeros(1)
    before = arr(m.fc1.weight).copy()
    sd["fc1.weight"] = ng.zeros(4, 3)
    with pytest.raises(RuntimeError) as err:
        m.load_state_dict(sd)
    msg = str(err.value)
    assert "TwoLayer" in msg
    assert 'Missing key(s) in state_dict: "fc2.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "fc3.weight"' in msg
    np.testing.assert_array_equal(arr(m.fc1.weight), before)   # nothing copied on error
    result = m.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["fc2.bias"] and result.unexpected_keys == ["fc3.weight"]
    assert result == (["fc2.bias"], ["fc3.weight"])
    assert np.all(arr(m.fc1.weight) == 0)
    with pytest.raises(TypeError, match="dict-like"):
        m.load_state_dict([("fc1.weight", ng.zeros(4, 3))])


def test_load_state_dict_shape_mismatch_names_key_and_shapes():
    m = nn.Sequential(nn.Linear(3, 4))
    sd = m.state_dict()
    sd["0.weight"] = ng.zeros(5, 3)
    for strict in (True, False):
        with pytest.raises(RuntimeError, match=r"size mismatch for 0\.weight: copying a param "
                                               r"with shape \(5, 3\) from checkpoint, the shape "
                                               r"in current model is \(4, 3\)"):
            m.load_state_dict(sd, strict=strict)


def test_non_persistent_buffer_is_neither_expected_nor_accepted():
    m = TwoLayer()
    sd = m.state_dict()
    m.load_state_dict(sd)                          # "scratch" is not required
    sd["scratch"] = ng.zeros(2)
    with pytest.raises(RuntimeError, match='Unexpected key.*"scratch"'):
        m.load_state_dict(sd)


def test_deepcopy_and_pickle_keep_structure_and_sharing():
    shared = nn.Linear(2, 2)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    clone = copy.deepcopy(net)
    assert clone[0] is clone[2] and clone[0] is not shared
    assert isinstance(clone[0].weight, nn.Parameter)
    np.testing.assert_array_equal(arr(clone[0].weight), arr(shared.weight))
    restored = pickle.loads(pickle.dumps(net))
    x = ng.randn(3, 2)
    np.testing.assert_array_equal(arr(restored(x)), arr(net(x)))


# ====================================================================== modes, grads, devices
def test_train_eval_propagate_and_switch_dropout():
    ng.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Dropout(0.5)))
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    x = ng.randn(8, 4)
    np.testing.assert_array_equal(arr(net(x)), arr(net[0](x)))       # dropout is identity
    net.train()
    assert all(m.training for m in net.modules())
    assert not np.array_equal(arr(net(x)), arr(net[0](x)))
    with pytest.raises(ValueError, match="boolean"):
        net.train("no")


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_zero_fraction_and_scaling(p):
    ng.manual_seed(2)
    drop = nn.Dropout(p)
    x = ng.ones(200_000)
    y = arr(drop(x))
    zero = np.mean(y == 0)
    assert abs(zero - p) < 0.01
    np.testing.assert_allclose(y[y != 0], 1.0 / (1.0 - p), rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.02                    # expectation preserved
    # the gradient goes through the same mask
    xg = ng.ones(1000, requires_grad=True)
    out = drop(xg)
    out.sum().backward()
    np.testing.assert_array_equal(arr(xg.grad), arr(out))


def test_dropout_validation_and_extremes():
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        nn.Dropout(1.5)
    x = ng.randn(10)
    np.testing.assert_array_equal(arr(nn.Dropout(0.0)(x)), arr(x))
    assert np.all(arr(nn.Dropout(1.0)(x)) == 0)


def test_zero_grad_and_requires_grad():
    m = nn.Linear(3, 2)
    m(ng.randn(4, 3)).sum().backward()
    grad_array = m.weight.grad.data
    m.zero_grad(set_to_none=False)
    assert m.weight.grad.data is grad_array and np.all(grad_array == 0)
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None
    assert m.requires_grad_(False) is m
    assert not any(p.requires_grad for p in m.parameters())
    assert not m(ng.randn(1, 3)).requires_grad
    m.requires_grad_()
    assert all(p.requires_grad for p in m.parameters())


def test_to_double_float_keep_parameter_objects():
    m = TwoLayer()
    weight = m.fc1.weight
    m(ng.randn(2, 3)).sum().backward()
    assert m.double() is m
    assert m.fc1.weight is weight and weight.dtype == ng.float64
    assert weight.grad.dtype == ng.float64
    assert m.steps.dtype == ng.int64                   # integer buffers keep their dtype
    assert m.scratch.dtype == ng.float64
    out = m(ng.randn(2, 3, dtype=ng.float64))
    assert out.dtype == ng.float64
    m.to(ng.float32)
    assert weight.dtype == ng.float32
    m.to("cpu", dtype=ng.float64)
    assert weight.dtype == ng.float64 and weight.device == "cpu"
    m.float().cpu()
    assert weight.dtype == ng.float32
    m.to(ng.randn(1, dtype=ng.float64))                # like a tensor
    assert weight.dtype == ng.float64
    with pytest.raises(TypeError, match="floating point dtypes"):
        m.to(ng.int64)


@pytest.mark.skipif(ng.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_gpu_raises_clearly():
    with pytest.raises(RuntimeError, match="cuda"):
        nn.Linear(2, 2).cuda()


def test_to_cuda_under_simulator_moves_in_place():
    code = (
        "import nanogen as ng, numpy as np\n"
        "from nanogen import nn\n"
        "m = nn.Sequential(nn.Linear(3, 2))\n"
        "w = m[0].weight\n"
        "m.to('cuda')\n"
        "assert m[0].weight is w and w.device == 'cuda' and m[0].bias.device == 'cuda'\n"
        "y = m(ng.randn(4, 3, device='cuda'))\n"
        "assert y.device == 'cuda'\n"
        "m.cpu()\n"
        "assert w.device == 'cpu'\n"
        "print('ok')\n")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr


# ====================================================================== repr
def test_repr_matches_pytorch_format():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    assert repr(net) == ("Sequential(\n"
                         "  (0): Linear(in_features=2, out_features=3, bias=True)\n"
                         "  (1): ReLU()\n"
                         ")")
    nested = nn.Sequential(OrderedDict(body=nn.Sequential(nn.Linear(1, 1, bias=False)),
                                       drop=nn.Dropout(0.1)))
    assert repr(nested) == ("Sequential(\n"
                            "  (body): Sequential(\n"
                            "    (0): Linear(in_features=1, out_features=1, bias=False)\n"
                            "  )\n"
                            "  (drop): Dropout(p=0.1, inplace=False)\n"
                            ")")

    class WithExtra(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(1, 2)

        def extra_repr(self):
            return "scale=2"
    assert repr(WithExtra()) == ("WithExtra(\n  scale=2\n"
                                 "  (fc): Linear(in_features=1, out_features=2, bias=True)\n)")
    assert repr(nn.Module()) == "Module()"


@pytest.mark.parametrize("module, text", [
    (nn.LeakyReLU(0.2), "LeakyReLU(negative_slope=0.2)"),
    (nn.ELU(), "ELU(alpha=1.0)"),
    (nn.ReLU(inplace=True), "ReLU(inplace=True)"),
    (nn.ReLU6(), "ReLU6()"),
    (nn.Hardtanh(), "Hardtanh(min_val=-1.0, max_val=1.0)"),
    (nn.GELU("tanh"), "GELU(approximate='tanh')"),
    (nn.Softplus(), "Softplus(beta=1.0, threshold=20.0)"),
    (nn.Softmax(dim=1), "Softmax(dim=1)"),
    (nn.GLU(), "GLU(dim=-1)"),
    (nn.Embedding(10, 3, padding_idx=0), "Embedding(10, 3, padding_idx=0)"),
    (nn.Flatten(), "Flatten(start_dim=1, end_dim=-1)"),
    (nn.Unflatten(1, (2, 5)), "Unflatten(dim=1, unflattened_size=(2, 5))"),
    (nn.Identity(), "Identity()"),
    (nn.Bilinear(2, 3, 4), "Bilinear(in1_features=2, in2_features=3, out_features=4, bias=True)"),
    (nn.MSELoss(), "MSELoss()"),
])
def test_layer_reprs(module, text):
    assert repr(module) == text


# ====================================================================== containers
def test_sequential_indexing_slicing_and_editing():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and list(seq) == layers
    assert seq[0] is layers[0] and seq[-1] is layers[2]
    head = seq[:2]
    assert type(head) is nn.Sequential and list(head) == layers[:2]
    x = ng.randn(4, 2)
    np.testing.assert_array_equal(arr(seq(x)), arr(layers[2](layers[1](layers[0](x)))))
    with pytest.raises(IndexError, match="index 3 is out of range for Sequential of length 3"):
        seq[3]
    tanh = nn.Tanh()
    seq[1] = tanh
    assert seq[1] is tanh
    seq.append(nn.Sigmoid())
    assert [n for n, _ in seq.named_children()] == ["0", "1", "2", "3"]
    seq.insert(1, nn.Identity())
    assert [type(m).__name__ for m in seq] == ["Linear", "Identity", "Tanh", "Linear", "Sigmoid"]
    del seq[1]
    assert [n for n, _ in seq.named_children()] == ["0", "1", "2", "3"]
    assert type(seq.pop()) is nn.Sigmoid and len(seq) == 3
    assert len(list(seq.parameters())) == 4
    with pytest.raises(TypeError, match="not a Module subclass"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_sequential_from_ordered_dict_keeps_names():
    seq = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert seq.fc is seq[0] and seq.act is seq[1]
    assert list(seq.state_dict()) == ["fc.weight", "fc.bias"]
    assert list(dict(seq[1:].named_children())) == ["act"]


def test_module_list():
    blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(2)])
    assert len(blocks) == 2
    blocks.append(nn.Linear(2, 2))
    blocks.extend([nn.ReLU()])
    blocks += [nn.Tanh()]
    blocks.insert(0, nn.Identity())
    assert [type(b).__name__ for b in blocks] == ["Identity", "Linear", "Linear", "Linear",
                                                  "ReLU", "Tanh"]
    assert [n for n, _ in blocks.named_parameters()][:2] == ["1.weight", "1.bias"]
    assert len(list(blocks.parameters())) == 6
    assert type(blocks[1:3]) is nn.ModuleList and len(blocks[1:3]) == 2
    assert blocks[-1] is list(blocks)[-1]
    with pytest.raises(NotImplementedError):
        blocks(ng.zeros(1))
    with pytest.raises(TypeError):
        blocks.append("not a module")


def test_module_dict():
    d = nn.ModuleDict({"enc": nn.Linear(2, 3), "dec": nn.Linear(3, 2)})
    assert list(d) == ["enc", "dec"] and len(d) == 2 and "enc" in d
    d["act"] = nn.ReLU()
    assert list(d.keys()) == ["enc", "dec", "act"]
    assert [type(v).__name__ for v in d.values()] == ["Linear", "Linear", "ReLU"]
    assert [n for n, _ in d.named_parameters()] == ["enc.weight", "enc.bias", "dec.weight",
                                                    "dec.bias"]
    assert type(d.pop("act")) is nn.ReLU and "act" not in d
    d.update([("extra", nn.Tanh())])
    del d["extra"]
    assert dict(d.items()).keys() == {"enc", "dec"}
    d.clear()
    assert len(d) == 0
    with pytest.raises(ValueError, match="element 0 should be a"):
        d.update([nn.ReLU()])
    assert "enc" in dir(nn.ModuleDict({"enc": nn.ReLU()}))


def test_gradient_penalty_through_a_model_matches_finite_differences():
    """Double backward through Linear + Tanh (what WGAN-GP / R1 need from nn)."""
    ng.manual_seed(16)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = ng.randn(5, 3, dtype=ng.float64)

    def penalty(create_graph):
        xx = ng.tensor(x.numpy(), requires_grad=True)
        g, = ng.autograd.grad(model(xx).sum(), xx, create_graph=create_graph)
        return (g * g).sum()
    penalty(True).backward()
    w = model[0].weight
    eps = 1e-6
    for index in [(0, 0), (3, 2)]:
        w.data[index] += eps
        up = penalty(False).item()
        w.data[index] -= 2 * eps
        down = penalty(False).item()
        w.data[index] += eps
        np.testing.assert_allclose(w.grad.data[index], (up - down) / (2 * eps), rtol=1e-6)


# ====================================================================== Linear & co
@given(lead=st.lists(st.integers(1, 3), max_size=2), fin=st.integers(1, 6),
       fout=st.integers(1, 6), bias=st.booleans())
def test_linear_forward_and_grads_match_numpy(lead, fin, fout, bias):
    ng.manual_seed(fin * 7 + fout)
    lin = nn.Linear(fin, fout, bias=bias)
    x = ng.randn(*lead, fin, requires_grad=True)
    y = lin(x)
    W = arr(lin.weight)
    b = arr(lin.bias) if bias else 0.0
    expected = arr(x) @ W.T + b
    assert y.shape == tuple(lead) + (fout,)
    np.testing.assert_allclose(arr(y), expected, rtol=1e-5, atol=1e-5)
    gy = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    y.backward(ng.tensor(gy))
    gy2, x2 = gy.reshape(-1, fout).astype(np.float64), arr(x).reshape(-1, fin)
    np.testing.assert_allclose(arr(lin.weight.grad), gy2.T @ x2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(arr(x.grad), (gy2 @ W).reshape(x.shape), rtol=1e-4, atol=1e-5)
    if bias:
        np.testing.assert_allclose(arr(lin.bias.grad), gy2.sum(0), rtol=1e-4, atol=1e-5)


def test_linear_shapes_dtype_and_errors():
    lin = nn.Linear(5, 3)
    assert lin.weight.shape == (3, 5) and lin.bias.shape == (3,)
    assert lin.weight.dtype == ng.float32
    assert nn.Linear(5, 3, bias=False).bias is None
    assert [n for n, _ in nn.Linear(5, 3, bias=False).named_parameters()] == ["weight"]
    assert nn.Linear(2, 2, dtype=ng.float64).weight.dtype == ng.float64
    assert nn.Linear(2, 2, device="cpu").weight.device == "cpu"
    with pytest.raises(ValueError, match=r"4 features.*expects 5"):
        lin(ng.randn(2, 4))


def test_linear_default_init_bounds_and_spread():
    ng.manual_seed(3)
    lin = nn.Linear(400, 300)
    bound = 1.0 / math.sqrt(400)
    w, b = arr(lin.weight), arr(lin.bias)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound
    assert np.abs(w).max() > 0.99 * bound
    assert abs(w.mean()) < 0.01 * bound


def test_bilinear_matches_einsum_and_gradcheck():
    ng.manual_seed(4)
    bl = nn.Bilinear(3, 2, 4, dtype=ng.float64)
    x1 = ng.randn(5, 3, dtype=ng.float64, requires_grad=True)
    x2 = ng.randn(5, 2, dtype=ng.float64)
    y = bl(x1, x2)
    A, b = arr(bl.weight), arr(bl.bias)
    np.testing.assert_allclose(arr(y), np.einsum("ni,kij,nj->nk", arr(x1), A, arr(x2)) + b,
                               rtol=1e-10)
    y.sum().backward()
    np.testing.assert_allclose(arr(bl.weight.grad),
                               np.einsum("ni,nj->ij", arr(x1), arr(x2))[None].repeat(4, 0),
                               rtol=1e-10)
    np.testing.assert_allclose(arr(x1.grad), np.einsum("kij,nj->ni", A, arr(x2)), rtol=1e-10)
    assert bl(ng.randn(2, 7, 3, dtype=ng.float64), ng.randn(2, 7, 2, dtype=ng.float64)).shape \
        == (2, 7, 4)
    with pytest.raises(ValueError, match="3 and 2 features"):
        bl(x2, x1)


def test_flatten_unflatten_identity():
    x = ng.randn(2, 3, 4, 5)
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    assert nn.Flatten(1, 2)(x).shape == (2, 12, 5)
    y = nn.Unflatten(1, (3, 20))(nn.Flatten()(x))
    assert y.shape == (2, 3, 20)
    np.testing.assert_array_equal(arr(y).reshape(x.shape), arr(x))
    ident = nn.Identity(54, unused="argument")
    assert ident(x) is x


# ====================================================================== Embedding
def test_embedding_lookup_padding_and_gradient():
    ng.manual_seed(5)
    emb = nn.Embedding(6, 4, padding_idx=-1)
    assert emb.padding_idx == 5
    assert np.all(arr(emb.weight)[5] == 0)
    idx = ng.tensor([[0, 5, 2], [2, 2, 5]])
    out = emb(idx)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(arr(out), arr(emb.weight)[arr(idx).astype(int)])
    out.sum().backward()
    counts = np.bincount(arr(idx).astype(int).ravel(), minlength=6).astype(np.float64)
    counts[5] = 0                                         # the padding row gets no gradient
    np.testing.assert_array_equal(arr(emb.weight.grad), np.repeat(counts[:, None], 4, 1))
    with pytest.raises(IndexError, match="out of range"):
        emb(ng.tensor([6]))
    with pytest.raises(ValueError, match="padding_idx 6 is out of range"):
        nn.Embedding(6, 4, padding_idx=6)


def test_embedding_init_statistics_and_from_pretrained():
    ng.manual_seed(6)
    w = arr(nn.Embedding(1000, 64).weight)
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1.0) < 0.01
    table = ng.randn(4, 2)
    frozen = nn.Embedding.from_pretrained(table)
    assert frozen.weight.data is table.data and not frozen.weight.requires_grad
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad


# ====================================================================== activations
def _np_softplus(x, beta=1.0, threshold=20.0):
    return np.where(beta * x > threshold, x, np.logaddexp(0, beta * x) / beta)


def _np_softmax(x, dim):
    e = np.exp(x - x.max(dim, keepdims=True))
    return e / e.sum(dim, keepdims=True)


_SELU_A, _SELU_S = 1.6732632423543772, 1.0507009873554805
_erf = np.vectorize(math.erf)
ACTIVATIONS = [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.LeakyReLU(0.1), lambda x: np.where(x > 0, x, 0.1 * x)),
    (nn.ELU(0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    (nn.SELU(), lambda x: _SELU_S * np.where(x > 0, x, _SELU_A * np.expm1(x))),
    (nn.GELU(), lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    (nn.GELU("tanh"), lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi)
                                                        * (x + 0.044715 * x ** 3)))),
    (nn.SiLU(), lambda x: x / (1 + np.exp(-x))),
    (nn.Mish(), lambda x: x * np.tanh(_np_softplus(x))),
    (nn.Softplus(beta=2.0, threshold=3.0), lambda x: _np_softplus(x, 2.0, 3.0)),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.Tanh(), np.tanh),
    (nn.LogSigmoid(), lambda x: -np.logaddexp(0, -x)),
    (nn.Softmax(dim=1), lambda x: _np_softmax(x, 1)),
    (nn.LogSoftmax(dim=-1), lambda x: np.log(_np_softmax(x, -1))),
    (nn.Hardtanh(-0.5, 2.0), lambda x: np.clip(x, -0.5, 2.0)),
    (nn.ReLU6(), lambda x: np.clip(x, 0, 6)),
    (nn.GLU(dim=1), lambda x: x[:, :2] / (1 + np.exp(-x[:, 2:]))),
]


@pytest.mark.parametrize("module, reference", ACTIVATIONS,
                         ids=[type(m).__name__ + str(i) for i, (m, _) in enumerate(ACTIVATIONS)])
def test_activation_modules_match_numpy(module, reference):
    x = ng.tensor((np.linspace(-8.0, 8.0, 24).reshape(6, 4) + 0.013).astype(np.float32))
    assert module(x).dtype == ng.float32
    np.testing.assert_allclose(arr(module(x)), reference(arr(x)), rtol=1e-4, atol=1e-5)


def test_activation_validation():
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="max_val"):
        nn.Hardtanh(1.0, -1.0)
    with pytest.raises(ValueError, match="even size"):
        nn.GLU()(ng.randn(2, 3))


# ====================================================================== losses
def _np_log_softmax(x):
    return x - x.max(1, keepdims=True) - np.log(np.exp(x - x.max(1, keepdims=True))
                                                .sum(1, keepdims=True))


def test_regression_losses_match_numpy():
    ng.manual_seed(7)
    x, y = ng.randn(5, 3), ng.randn(5, 3)
    d = arr(x) - arr(y)
    np.testing.assert_allclose(nn.MSELoss()(x, y).item(), (d ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(nn.MSELoss(reduction="sum")(x, y).item(), (d ** 2).sum(),
                               rtol=1e-5)
    np.testing.assert_allclose(arr(nn.L1Loss(reduction="none")(x, y)), np.abs(d), rtol=1e-5)
    huber = np.where(np.abs(d) < 0.5, 0.5 * d ** 2, 0.5 * (np.abs(d) - 0.25))
    np.testing.assert_allclose(nn.HuberLoss(delta=0.5)(x, y).item(), huber.mean(), rtol=1e-5)
    np.testing.assert_allclose(nn.SmoothL1Loss(beta=0.5)(x, y).item(), huber.mean() / 0.5,
                               rtol=1e-5)
    var = ng.rand(5, 3) + 0.1
    gauss = 0.5 * (np.log(arr(var)) + d ** 2 / arr(var))
    np.testing.assert_allclose(nn.GaussianNLLLoss()(x, y, var).item(), gauss.mean(), rtol=1e-5)


def test_binary_losses_match_numpy():
    ng.manual_seed(8)
    logits, target = ng.randn(6, 3), (ng.rand(6, 3) > 0.5).float()
    z, t = arr(logits), arr(target)
    p = 1 / (1 + np.exp(-z))
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    np.testing.assert_allclose(nn.BCELoss()(ng.tensor(p.astype(np.float32)), target).item(),
                               bce.mean(), rtol=1e-4)
    np.testing.assert_allclose(nn.BCEWithLogitsLoss()(logits, target).item(), bce.mean(),
                               rtol=1e-4)
    w = np.array([1.0, 2.0, 3.0])
    weighted = -(w * t * np.log(p) + (1 - t) * np.log(1 - p))
    loss = nn.BCEWithLogitsLoss(pos_weight=ng.tensor(w.astype(np.float32)), reduction="sum")
    np.testing.assert_allclose(loss(logits, target).item(), weighted.sum(), rtol=1e-4)
    assert "pos_weight" in loss.state_dict()


def test_classification_losses_match_numpy():
    ng.manual_seed(9)
    logits = ng.randn(7, 4)
    target = ng.tensor([0, 3, 1, 1, 2, -100, 3])
    z, y = arr(logits), arr(target).astype(int)
    logp = _np_log_softmax(z)
    valid = y != -100
    w = np.array([1.0, 0.5, 2.0, 1.5])
    picked = -logp[np.arange(7)[valid], y[valid]]
    ce = nn.CrossEntropyLoss()(logits, target).item()
    np.testing.assert_allclose(ce, picked.mean(), rtol=1e-5)
    np.testing.assert_allclose(nn.NLLLoss()(ng.tensor(logp.astype(np.float32)), target).item(),
                               picked.mean(), rtol=1e-5)
    weighted = nn.CrossEntropyLoss(weight=ng.tensor(w.astype(np.float32)))(logits, target).item()
    np.testing.assert_allclose(weighted, (w[y[valid]] * picked).sum() / w[y[valid]].sum(),
                               rtol=1e-5)
    eps = 0.1
    smooth = (1 - eps) * picked + eps * (-logp[valid].mean(1))
    np.testing.assert_allclose(nn.CrossEntropyLoss(label_smoothing=eps)(logits, target).item(),
                               smooth.mean(), rtol=1e-5)
    assert nn.CrossEntropyLoss(reduction="none")(logits, ng.tensor([0, 3, 1, 1, 2, 0, 3])).shape \
        == (7,)


def test_kl_div_loss_matches_numpy():
    ng.manual_seed(10)
    logq = F.log_softmax(ng.randn(4, 5), dim=1)
    p = F.softmax(ng.randn(4, 5), dim=1)
    kl = (arr(p) * (np.log(arr(p)) - arr(logq))).sum() / 4
    np.testing.assert_allclose(nn.KLDivLoss(reduction="batchmean")(logq, p).item(), kl,
                               rtol=1e-5)
    np.testing.assert_allclose(nn.KLDivLoss(reduction="batchmean", log_target=True)(
        logq, p.log()).item(), kl, rtol=1e-4)


def test_loss_validation_and_buffers():
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum', 'none', "
                                         "got 'avg'"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="'batchmean'"):
        nn.L1Loss(reduction="batchmean")
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    weighted = nn.CrossEntropyLoss(weight=ng.ones(3))
    assert list(weighted.state_dict()) == ["weight"]
    assert list(nn.CrossEntropyLoss().state_dict()) == []
    weighted.double()
    assert weighted.weight.dtype == ng.float64
    with pytest.raises(ValueError, match=r"shape \(2, 3\) and target shape \(3, 2\)"):
        nn.MSELoss()(ng.zeros(2, 3), ng.zeros(3, 2))


# ====================================================================== init
def test_calculate_gain_and_fans():
    assert init.calculate_gain("linear") == 1.0 and init.calculate_gain("conv2d") == 1.0
    assert init.calculate_gain("sigmoid") == 1.0
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="Unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", "a")
    assert init._calculate_fan_in_and_fan_out(ng.empty(8, 3)) == (3, 8)
    assert init._calculate_fan_in_and_fan_out(ng.empty(16, 4, 3, 5)) == (4 * 15, 16 * 15)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(ng.empty(5))


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_uniform_and_normal_statistics(mode):
    ng.manual_seed(11)
    w = ng.empty(256, 64, 3, 3)                            # a conv weight: fans 576 / 2304
    fan = 64 * 9 if mode == "fan_in" else 256 * 9
    std = math.sqrt(2.0) / math.sqrt(fan)
    out = init.kaiming_uniform_(w, mode=mode, nonlinearity="relu")
    assert out is w
    values = arr(w)
    bound = math.sqrt(3) * std
    assert np.abs(values).max() <= bound and np.abs(values).max() > 0.99 * bound
    assert abs(values.std() - std) < 0.01 * std
    init.kaiming_normal_(w, mode=mode, nonlinearity="relu")
    values = arr(w)
    assert abs(values.std() - std) < 0.01 * std and abs(values.mean()) < 0.01 * std
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_normal_(w, mode="fan_avg")


def test_xavier_statistics():
    ng.manual_seed(12)
    w = ng.empty(600, 400)
    init.xavier_uniform_(w, gain=2.0)
    bound = 2.0 * math.sqrt(6.0 / 1000)
    assert np.abs(arr(w)).max() <= bound and np.abs(arr(w)).max() > 0.99 * bound
    init.xavier_normal_(w)
    std = math.sqrt(2.0 / 1000)
    assert abs(arr(w).std() - std) < 0.01 * std


def test_simple_fills():
    ng.manual_seed(13)
    w = ng.empty(500, 400)
    init.uniform_(w, -2.0, 3.0)
    v = arr(w)
    assert v.min() >= -2.0 and v.max() < 3.0 and abs(v.mean() - 0.5) < 0.02
    init.normal_(w, 1.0, 0.5)
    assert abs(arr(w).mean() - 1.0) < 0.005 and abs(arr(w).std() - 0.5) < 0.005
    assert np.all(arr(init.constant_(w, 0.3)) == np.float32(0.3))
    assert np.all(arr(init.zeros_(w)) == 0) and np.all(arr(init.ones_(w)) == 1)
    np.testing.assert_array_equal(arr(init.eye_(ng.empty(3, 4))), np.eye(3, 4))
    with pytest.raises(ValueError, match="2-D"):
        init.eye_(ng.empty(2, 2, 2))
    with pytest.raises(TypeError, match="floating-point"):
        init.normal_(ng.zeros(3, dtype=ng.int64))


def test_dirac_makes_identity_weight():
    w = init.dirac_(ng.empty(4, 3, 3, 3))
    v = arr(w)
    assert v.sum() == 3 and v[0, 0, 1, 1] == v[1, 1, 1, 1] == v[2, 2, 1, 1] == 1
    assert v[3].sum() == 0
    g = arr(init.dirac_(ng.empty(4, 2, 3), groups=2))
    assert g[0, 0, 1] == g[1, 1, 1] == g[2, 0, 1] == g[3, 1, 1] == 1 and g.sum() == 4


@pytest.mark.parametrize("shape", [(5, 12), (12, 5), (6, 2, 3, 1)])
def test_orthogonal(shape):
    ng.manual_seed(14)
    w = init.orthogonal_(ng.empty(*shape), gain=2.0)
    m = arr(w).reshape(shape[0], -1) / 2.0
    rows, cols = m.shape
    gram = m @ m.T if rows <= cols else m.T @ m
    np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-5)
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(ng.empty(4))


def test_trunc_normal_statistics():
    ng.manual_seed(15)
    w = init.trunc_normal_(ng.empty(200_000), mean=0.5, std=1.0, a=0.0, b=2.0)
    v = arr(w)
    assert v.min() >= 0.0 and v.max() <= 2.0
    # moments of N(0.5, 1) truncated to [0, 2]: alpha=-0.5, beta=1.5
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    Phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    al, be = -0.5, 1.5
    Z = Phi(be) - Phi(al)
    mean = 0.5 + (phi(al) - phi(be)) / Z
    var = 1 + (al * phi(al) - be * phi(be)) / Z - ((phi(al) - phi(be)) / Z) ** 2
    assert abs(v.mean() - mean) < 0.005 and abs(v.std() - math.sqrt(var)) < 0.005
    with pytest.raises(ValueError, match="probability"):
        init.trunc_normal_(ng.empty(3), a=50.0, b=51.0)


def test_init_is_reproducible_in_place_and_records_no_graph():
    def build():
        ng.manual_seed(123)
        return nn.Sequential(nn.Linear(4, 8), nn.Embedding(3, 2), nn.Bilinear(2, 2, 1))
    a, b = build(), build()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(arr(p), arr(q), err_msg=name)
    ng.manual_seed(124)
    c = nn.Linear(4, 8)
    assert not np.array_equal(arr(c.weight), arr(a[0].weight))
    p = nn.Parameter(ng.zeros(3, 3))
    array = p.data
    init.xavier_uniform_(p)
    assert p.data is array and p.is_leaf and p.grad_fn is None and p.requires_grad


# ====================================================================== utils
def _grads(rng, shapes):
    params = []
    for shape in shapes:
        p = nn.Parameter(ng.zeros(*shape))
        p.grad = ng.tensor(rng.standard_normal(shape).astype(np.float32))
        params.append(p)
    return params


@given(seed=st.integers(0, 2 ** 16), max_norm=st.floats(0.1, 20.0),
       norm_type=st.sampled_from([1.0, 2.0, 3.0, math.inf]))
def test_clip_grad_norm_matches_numpy(seed, max_norm, norm_type):
    rng = np.random.default_rng(seed)
    params = _grads(rng, [(3, 4), (5,), (2, 2, 2)])
    before = [arr(p.grad) for p in params]
    flat = np.concatenate([g.ravel() for g in before])
    expected = np.abs(flat).max() if math.isinf(norm_type) else \
        (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    total = nn.utils.clip_grad_norm_(params, max_norm, norm_type)
    assert isinstance(total, ng.Tensor) and total.ndim == 0
    np.testing.assert_allclose(total.item(), expected, rtol=1e-5)
    coef = min(1.0, max_norm / (expected + 1e-6))
    for p, g in zip(params, before):
        np.testing.assert_allclose(arr(p.grad), g * coef, rtol=1e-5, atol=1e-7)
    after = np.concatenate([arr(p.grad).ravel() for p in params])
    new_norm = np.abs(after).max() if math.isinf(norm_type) else \
        (np.abs(after) ** norm_type).sum() ** (1 / norm_type)
    if expected > max_norm:
        np.testing.assert_allclose(new_norm, max_norm, rtol=1e-4)
    else:
        np.testing.assert_array_equal(after, flat)


def test_clip_grad_norm_edge_cases():
    rng = np.random.default_rng(0)
    params = _grads(rng, [(4,)])
    grad_array = params[0].grad.data
    nn.utils.clip_grad_norm_(params[0], 1e-3)           # a single tensor works; scaling in place
    assert params[0].grad.data is grad_array
    np.testing.assert_allclose(np.linalg.norm(arr(params[0].grad)), 1e-3, rtol=1e-3)
    assert nn.utils.clip_grad_norm_([nn.Parameter(ng.zeros(2))], 1.0).item() == 0.0
    params[0].grad.data[0] = np.inf
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(params, 1.0, error_if_nonfinite=True)


def test_clip_grad_value():
    params = _grads(np.random.default_rng(1), [(50,), (3, 3)])
    before = [arr(p.grad) for p in params]
    nn.utils.clip_grad_value_(params, 0.5)
    for p, g in zip(params, before):
        np.testing.assert_array_equal(arr(p.grad), np.clip(g, -0.5, 0.5).astype(np.float32))


def test_parameters_to_vector_round_trip():
    m = TwoLayer()
    vec = nn.utils.parameters_to_vector(m.parameters())
    assert vec.shape == (m.num_parameters(),)
    np.testing.assert_array_equal(arr(vec)[:12], arr(m.fc1.weight).ravel())
    ids = [id(p) for p in m.parameters()]
    nn.utils.vector_to_parameters(vec * 2, m.parameters())
    assert [id(p) for p in m.parameters()] == ids
    np.testing.assert_allclose(arr(nn.utils.parameters_to_vector(m.parameters())), 2 * arr(vec))
    with pytest.raises(ValueError, match=r"shape \(3,\).*hold 26 values"):
        nn.utils.vector_to_parameters(ng.zeros(3), m.parameters())
    with pytest.raises(TypeError, match="Tensor"):
        nn.utils.vector_to_parameters([1.0], m.parameters())


def test_functional_alias():
    import nanogen.functional as core_F
    assert F.relu is core_F.relu and F.cross_entropy is core_F.cross_entropy
    assert set(F.__all__) == set(core_F.__all__)
    assert ng.nn.functional is F and ng.nn.init is init


# ====================================================================== training end to end
def _sgd_train(model, loss_fn, x, y, lr, steps):
    for _ in range(steps):
        model.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        for p in model.parameters():
            p.data -= lr * p.grad.data
    return loss.item()


def test_mlp_learns_xor():
    ng.manual_seed(0)
    x = ng.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = ng.tensor([[0.0], [1.0], [1.0], [0.0]])
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
    loss = _sgd_train(model, nn.BCEWithLogitsLoss(), x, y, lr=0.5, steps=400)
    assert loss < 0.05
    with ng.no_grad():
        predictions = arr(model(x)) > 0
    np.testing.assert_array_equal(predictions, arr(y) > 0.5)


def test_mlp_fits_regression_and_checkpoint_restores_it():
    ng.manual_seed(1)
    x = ng.linspace(-3, 3, 128).reshape(128, 1)
    y = ng.tensor(np.sin(arr(x)).astype(np.float32))
    model = nn.Sequential(nn.Linear(1, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(),
                          nn.Linear(32, 1))
    start = nn.MSELoss()(model(x), y).item()
    loss = _sgd_train(model, nn.MSELoss(), x, y, lr=0.05, steps=600)
    assert loss < 0.01 < start
    ng.manual_seed(99)
    fresh = nn.Sequential(nn.Linear(1, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(),
                          nn.Linear(32, 1))
    fresh.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(arr(fresh(x)), arr(model(x)))


# ------------------------------------------------------------------------------ MaskedLinear
def test_masked_linear_multiplies_by_its_mask_and_masked_weights_get_no_gradient():
    rng = np.random.default_rng(0)
    mask = (rng.random((4, 3)) < 0.5).astype(np.float32)
    layer = nn.MaskedLinear(3, 4, mask)
    x = ng.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    np.testing.assert_allclose(layer(x).detach().numpy(), x.numpy() @ (w * mask).T + b,
                               rtol=1e-6, atol=1e-6)
    layer(x).sum().backward()
    assert np.all(layer.weight.grad.numpy()[mask == 0] == 0.0)
    assert np.all(layer.weight.grad.numpy()[mask == 1] != 0.0)
    assert "mask" in layer.state_dict()                  # a buffer: saved and resumed


def test_masked_linear_set_mask_zero_init_and_errors():
    layer = nn.MaskedLinear(2, 3, zero_init=True)
    assert not np.any(layer.weight.detach().numpy()) and not np.any(layer.bias.detach().numpy())
    assert np.all(layer.mask.numpy() == 1.0)              # no mask: every connection
    layer.set_mask(np.eye(3, 2))
    np.testing.assert_array_equal(layer.mask.numpy(), np.eye(3, 2))
    with pytest.raises(ValueError, match=r"the mask must have the weight's shape \(3, 2\), got "
                                         r"\(2, 3\)"):
        layer.set_mask(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"expected input of shape \(\*, 2\), got \(4, 3\)"):
        layer(ng.zeros(4, 3))
