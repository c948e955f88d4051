"""ng.optim: optimizers against hand-written NumPy references (and torch.optim when installed),
state dicts and exact resumption, learning-rate schedules, the EMA of weights."""
import copy
import math

import numpy as np
import pytest

import nanogen as ng
from nanogen.optim import lr_scheduler

from tests.oracle import needs_torch as requires_torch, torch

SHAPES = [(3, 4), (5,), ()]


# ------------------------------------------------------------------------------------ helpers
def initial_arrays(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.standard_normal(s), dtype=dtype) for s in SHAPES]


def make_params(arrays, requires_grad=True):
    return [ng.tensor(a.copy(), requires_grad=requires_grad) for a in arrays]


def gradient(w, t, k, seed=1):
    """A state-dependent gradient at step t for parameter k: a quadratic's gradient plus noise
    whose scale halves each step (so AMSGrad's running max differs from v)."""
    rng = np.random.default_rng([seed, t, k])
    c = np.linspace(-1.0, 1.0, max(w.size, 1)).reshape(w.shape) if w.ndim else np.float64(0.5)
    noise = rng.standard_normal(w.shape)
    return np.asarray(1.5 * (w - c) + 2.0 * 0.6 ** t * noise, dtype=w.dtype)


def set_grads(params, t):
    for k, p in enumerate(params):
        p.grad = ng.tensor(gradient(p.data, t, k))


def run_ng(opt, params, steps, start=0):
    for t in range(start, steps):
        set_grads(params, t)
        opt.step()


# Hand-written references: plain float64 NumPy, one function per algorithm, straight from the
# update equations (independent of nanogen's in-place formulation).
def reference_sgd(w, steps, k, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                  nesterov=False, maximize=False):
    w, buf = w.copy(), None
    for t in range(steps):
        g = gradient(w, t, k)
        if maximize:
            g = -g
        g = g + weight_decay * w
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        w = w - lr * g
    return w


def reference_adam(w, steps, k, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   amsgrad=False, maximize=False, decoupled_weight_decay=False):
    b1, b2 = betas
    w = w.copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    vmax = np.zeros_like(w)
    for t in range(1, steps + 1):
        g = gradient(w, t - 1, k)
        if maximize:
            g = -g
        if decoupled_weight_decay:
            w = w * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        v_hat = (vmax if amsgrad else v) / (1 - b2 ** t)
        m_hat = m / (1 - b1 ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


def reference_adamw(w, steps, k, weight_decay=1e-2, **kw):
    return reference_adam(w, steps, k, weight_decay=weight_decay, decoupled_weight_decay=True,
                          **kw)


def reference_rmsprop(w, steps, k, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                      centered=False, maximize=False):
    w = w.copy()
    v = np.zeros_like(w)
    gbar = np.zeros_like(w)
    buf = np.zeros_like(w)
    for t in range(steps):
        g = gradient(w, t, k)
        if maximize:
            g = -g
        g = g + weight_decay * w
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            gbar = alpha * gbar + (1 - alpha) * g
            s = np.sqrt(v - gbar * gbar) + eps
        else:
            s = np.sqrt(v) + eps
        if momentum > 0:
            buf = momentum * buf + g / s
            w = w - lr * buf
        else:
            w = w - lr * g / s
    return w


CASES = [
    ("SGD", reference_sgd, dict(lr=0.1)),
    ("SGD", reference_sgd, dict(lr=0.1, momentum=0.9)),
    ("SGD", reference_sgd, dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", reference_sgd, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", reference_sgd, dict(lr=0.05, momentum=0.5, dampening=0.2, weight_decay=0.1,
                                maximize=True)),
    ("Adam", reference_adam, dict()),
    ("Adam", reference_adam, dict(lr=0.05, amsgrad=True)),
    ("Adam", reference_adam, dict(lr=0.05, weight_decay=0.1)),
    ("Adam", reference_adam, dict(lr=0.05, betas=(0.5, 0.9), eps=1e-3, amsgrad=True,
                                  maximize=True, weight_decay=0.05)),
    ("AdamW", reference_adamw, dict(lr=0.05)),
    ("AdamW", reference_adamw, dict(lr=0.05, weight_decay=0.3, amsgrad=True)),
    ("RMSprop", reference_rmsprop, dict()),
    ("RMSprop", reference_rmsprop, dict(lr=0.01, centered=True)),
    ("RMSprop", reference_rmsprop, dict(lr=0.01, momentum=0.9)),
    ("RMSprop", reference_rmsprop, dict(lr=0.01, centered=True, momentum=0.8, weight_decay=0.1,
                                        alpha=0.9)),
    ("RMSprop", reference_rmsprop, dict(lr=0.01, maximize=True, eps=1e-4)),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}"
            for name, _, kw in CASES]


# ------------------------------------------------------------------------ update equations
@pytest.mark.parametrize("name,reference,kw", CASES, ids=CASE_IDS)
def test_matches_reference_equations(name, reference, kw):
    arrays = initial_arrays()
    params = make_params(arrays)
    opt = getattr(ng.optim, name)(params, **kw)
    run_ng(opt, params, 8)
    for k, (p, a) in enumerate(zip(params, arrays)):
        np.testing.assert_allclose(p.data, reference(a, 8, k, **kw), rtol=1e-12, atol=1e-14)


def scalar_run(opt_cls, grads, w0=1.0, **kw):
    """Run on one scalar parameter with the gradient grad(w) = w (f = w^2 / 2)."""
    w = ng.tensor(w0, dtype=ng.float64, requires_grad=True)
    opt = opt_cls([w], **kw)
    out = []
    for _ in range(grads):
        w.grad = ng.tensor(w.item(), dtype=ng.float64)
        opt.step()
        out.append(w.item())
    return out


def test_sgd_momentum_by_hand():
    # b1 = g1 = 1, w1 = 1 - 0.1 = 0.9; b2 = 0.9*1 + 0.9 = 1.8, w2 = 0.72;
    # b3 = 0.9*1.8 + 0.72 = 2.34, w3 = 0.72 - 0.234 = 0.486
    assert scalar_run(ng.optim.SGD, 3, lr=0.1, momentum=0.9) == pytest.approx(
        [0.9, 0.72, 0.486], rel=1e-14)


def test_sgd_nesterov_by_hand():
    # b1 = 1, step 1 + 0.9*1 = 1.9, w1 = 0.81; g2 = 0.81, b2 = 0.9 + 0.81 = 1.71,
    # step 0.81 + 0.9*1.71 = 2.349, w2 = 0.81 - 0.2349 = 0.5751
    assert scalar_run(ng.optim.SGD, 2, lr=0.1, momentum=0.9, nesterov=True) == pytest.approx(
        [0.81, 0.5751], rel=1e-14)


def test_adam_first_steps_by_hand():
    # with bias correction the first step is exactly lr * g / (|g| + eps): m_hat = g, v_hat = g^2
    (w1,) = scalar_run(ng.optim.Adam, 1, lr=0.1, eps=1e-8)
    assert w1 == pytest.approx(1.0 - 0.1 * 1.0 / (1.0 + 1e-8), rel=1e-15)
    # step 2 by hand: g2 = w1
    b1, b2 = 0.9, 0.999
    m = b1 * (0.1 * 1.0) + 0.1 * w1
    v = b2 * (0.001 * 1.0) + 0.001 * w1 ** 2
    w2 = w1 - 0.1 / (1 - b1 ** 2) * m / (math.sqrt(v) / math.sqrt(1 - b2 ** 2) + 1e-8)
    assert scalar_run(ng.optim.Adam, 2, lr=0.1)[1] == pytest.approx(w2, rel=1e-14)


def test_adamw_decay_is_decoupled():
    # with a zero gradient Adam's step is 0 and only the decoupled decay acts: w <- w (1 - lr wd)
    w = ng.tensor([2.0, -4.0], dtype=ng.float64, requires_grad=True)
    opt = ng.optim.AdamW([w], lr=0.1, weight_decay=0.5)
    for _ in range(3):
        w.grad = ng.zeros(2, dtype=ng.float64)
        opt.step()
    np.testing.assert_allclose(w.data, np.array([2.0, -4.0]) * 0.95 ** 3, rtol=1e-15)
    # Adam's coupled L2 decay instead goes through the moments: a first step of size ~lr
    w2 = ng.tensor([2.0, -4.0], dtype=ng.float64, requires_grad=True)
    opt2 = ng.optim.Adam([w2], lr=0.1, weight_decay=0.5)
    w2.grad = ng.zeros(2, dtype=ng.float64)
    opt2.step()
    np.testing.assert_allclose(w2.data, [1.9, -3.9], rtol=1e-7)


def test_amsgrad_uses_running_max():
    # a large gradient then small ones: v shrinks but AMSGrad's max keeps the step small
    grads = [10.0, 0.1, 0.1, 0.1]
    results = {}
    for ams in (False, True):
        w = ng.tensor(0.0, dtype=ng.float64, requires_grad=True)
        opt = ng.optim.Adam([w], lr=1.0, betas=(0.0, 0.5), amsgrad=ams)
        for g in grads:
            w.grad = ng.tensor(g, dtype=ng.float64)
            opt.step()
        results[ams] = w.item()
        if ams:
            assert opt.state[w]["max_exp_avg_sq"].item() == pytest.approx(50.0)
            assert opt.state[w]["exp_avg_sq"].item() < 10.0
    # beta1 = 0: m = g.  v_t = 0.5 v + 0.5 g^2, v_hat = v / (1 - 0.5^t)
    v, vmax, w_plain, w_ams = 0.0, 0.0, 0.0, 0.0
    for t, g in enumerate(grads, 1):
        v = 0.5 * v + 0.5 * g * g
        vmax = max(vmax, v)
        w_plain -= g / (math.sqrt(v / (1 - 0.5 ** t)) + 1e-8)
        w_ams -= g / (math.sqrt(vmax / (1 - 0.5 ** t)) + 1e-8)
    assert results[False] == pytest.approx(w_plain, rel=1e-13)
    assert results[True] == pytest.approx(w_ams, rel=1e-13)


def test_rmsprop_centered_momentum_by_hand():
    # alpha = 0.5, g = 2 then 1: v1 = 2, gbar1 = 1, s1 = sqrt(2 - 1) = 1 (+eps), b1 = 2,
    # w1 = 0 - 0.1*2 = -0.2; v2 = 1 + 0.5 = 1.5, gbar2 = 0.5 + 0.5 = 1, s2 = sqrt(0.5),
    # b2 = 0.9*2 + 1/sqrt(0.5), w2 = -0.2 - 0.1 b2
    w = ng.tensor(0.0, dtype=ng.float64, requires_grad=True)
    opt = ng.optim.RMSprop([w], lr=0.1, alpha=0.5, eps=0.0, momentum=0.9, centered=True)
    for g in (2.0, 1.0):
        w.grad = ng.tensor(g, dtype=ng.float64)
        opt.step()
    assert w.item() == pytest.approx(-0.2 - 0.1 * (1.8 + 1 / math.sqrt(0.5)), rel=1e-14)
    assert opt.state[w]["grad_avg"].item() == 1.0
    assert opt.state[w]["square_avg"].item() == 1.5
    assert opt.state[w]["step"] == 2


# ------------------------------------------------------------------------ optimisation works
@pytest.mark.parametrize("make,steps", [
    (lambda ps: ng.optim.SGD(ps, lr=0.1, momentum=0.9), 150),
    (lambda ps: ng.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), 150),
    (lambda ps: ng.optim.Adam(ps, lr=0.05), 400),
    (lambda ps: ng.optim.Adam(ps, lr=0.05, amsgrad=True), 400),
    (lambda ps: ng.optim.AdamW(ps, lr=0.05, weight_decay=0.0), 400),
    (lambda ps: ng.optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5), 400),
], ids=["sgd-momentum", "sgd-nesterov", "adam", "amsgrad", "adamw", "rmsprop"])
def test_minimizes_a_quadratic(make, steps):
    """f(w) = 1/2 sum a_i (w_i - c_i)^2 through autograd; every optimizer reaches c."""
    a = ng.tensor([1.0, 3.0, 0.5, 2.0])
    c = ng.tensor([1.0, -2.0, 0.5, 3.0])
    w = ng.zeros(4, requires_grad=True)
    opt = make([w])
    for _ in range(steps):
        opt.zero_grad()
        loss = (0.5 * a * (w - c) ** 2).sum()
        loss.backward()
        opt.step()
    assert float(np.abs(w.data - c.data).max()) < 1e-2
    assert float((0.5 * a * (w - c) ** 2).sum().item()) < 1e-4
    assert w.dtype == ng.float32


def test_adamw_weight_decay_pulls_toward_zero():
    # the minimiser of the decayed problem is shrunk toward 0 compared with the plain one
    c = ng.tensor([2.0, -2.0])
    w = ng.zeros(2, requires_grad=True)
    opt = ng.optim.AdamW([w], lr=0.05, weight_decay=0.5)
    for _ in range(600):
        opt.zero_grad()
        ((w - c) ** 2).sum().backward()
        opt.step()
    assert np.all(np.abs(w.data) < 1.9) and np.all(np.abs(w.data) > 1.0)
    assert np.all(np.sign(w.data) == np.sign(c.data))


# ------------------------------------------------------------------------ mechanics
@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
                                     ("Adam", dict(weight_decay=0.1, amsgrad=True)),
                                     ("AdamW", dict()),
                                     ("RMSprop", dict(centered=True, momentum=0.9,
                                                      weight_decay=0.1))])
def test_in_place_float32_no_graph_grad_untouched(name, kw):
    params = make_params(initial_arrays(dtype=np.float32))
    arrays_before = [p.data for p in params]
    opt = getattr(ng.optim, name)(params, **kw)
    for t in range(3):
        set_grads(params, t)
        grads_before = [p.grad.data.copy() for p in params]
        opt.step()
        for p, g in zip(params, grads_before):
            np.testing.assert_array_equal(p.grad.data, g)      # the gradient is not modified
    for p, arr in zip(params, arrays_before):
        assert p.data is arr                                   # updated in place
        assert p.dtype == np.float32 and p.grad_fn is None and p.requires_grad and p.is_leaf
        for value in opt.state[p].values():
            if isinstance(value, ng.Tensor):
                assert value.dtype == np.float32 and not value.requires_grad


def test_params_without_grad_are_skipped():
    a, b = make_params(initial_arrays()[:2])
    before = b.data.copy()
    opt = ng.optim.Adam([a, b], lr=0.1)
    a.grad = ng.ones_like(a)
    opt.step()
    np.testing.assert_array_equal(b.data, before)
    assert b not in opt.state and opt.state[a]["step"] == 1


def test_step_runs_closure_with_grad_enabled():
    w = ng.tensor([1.0, 2.0], requires_grad=True)
    opt = ng.optim.SGD([w], lr=0.5)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with ng.no_grad():
        loss = opt.step(closure)
    assert loss.item() == pytest.approx(5.0)
    np.testing.assert_allclose(w.data, [0.0, 0.0])     # w - 0.5 * 2w


def test_zero_grad():
    w = ng.tensor([1.0, 2.0], requires_grad=True)
    opt = ng.optim.SGD([w], lr=0.1)
    (w * w).sum().backward()
    g = w.grad
    opt.zero_grad(set_to_none=False)
    assert w.grad is g and np.all(w.grad.data == 0)
    opt.zero_grad()
    assert w.grad is None


def test_param_groups_and_per_group_options():
    a, b, c = make_params(initial_arrays())
    opt = ng.optim.SGD([{"params": [a]}, {"params": iter([b]), "lr": 0.5, "momentum": 0.9}],
                       lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[0]["momentum"] == 0.0
    opt.add_param_group({"params": c, "lr": 0.01})
    assert len(opt.param_groups[2]["params"]) == 1 and opt.param_groups[2]["params"][0] is c
    for p in (a, b, c):
        p.grad = ng.ones_like(p)
    before = [p.data.copy() for p in (a, b, c)]
    opt.step()
    for p, arr, lr in zip((a, b, c), before, (0.1, 0.5, 0.01)):
        np.testing.assert_allclose(p.data, arr - lr)
    assert "momentum_buffer" in opt.state[b] and "momentum_buffer" not in opt.state[a]
    # a generator of parameters works, as model.parameters() would give
    opt2 = ng.optim.Adam(p for p in (a, b))
    assert len(opt2.param_groups[0]["params"]) == 2


def test_bad_params_are_rejected():
    w = ng.randn(3, requires_grad=True)
    with pytest.raises(TypeError, match="iterable of Tensors"):
        ng.optim.SGD(w, lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        ng.optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="sets"):
        ng.optim.SGD({w}, lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        ng.optim.SGD([w * 2], lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        ng.optim.SGD([w, w], lr=0.1)
    with pytest.raises(TypeError, match="only optimize Tensors"):
        ng.optim.SGD([np.zeros(3)], lr=0.1)
    opt = ng.optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [w]})


@pytest.mark.parametrize("make,match", [
    (lambda ps: ng.optim.SGD(ps, lr=-0.1), r"learning rate.*-0\.1"),
    (lambda ps: ng.optim.SGD(ps, momentum=-0.5), r"momentum.*-0\.5"),
    (lambda ps: ng.optim.SGD(ps, weight_decay=-1e-3), r"weight_decay.*-0\.001"),
    (lambda ps: ng.optim.SGD(ps, nesterov=True), "Nesterov"),
    (lambda ps: ng.optim.SGD([{"params": ps, "lr": -2.0}]), r"learning rate.*-2\.0"),
    (lambda ps: ng.optim.Adam(ps, betas=(1.0, 0.999)), r"beta parameter at index 0: 1\.0"),
    (lambda ps: ng.optim.Adam(ps, betas=(0.9, -0.1)), r"beta parameter at index 1: -0\.1"),
    (lambda ps: ng.optim.AdamW(ps, eps=-1e-8), r"epsilon.*-1e-08"),
    (lambda ps: ng.optim.Adam(ps, lr=-1e-3), r"learning rate.*-0\.001"),
    (lambda ps: ng.optim.RMSprop(ps, alpha=-0.9), r"alpha.*-0\.9"),
    (lambda ps: ng.optim.RMSprop(ps, momentum=-1), r"momentum.*-1"),
])
def test_bad_hyperparameters_name_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make([ng.randn(2, requires_grad=True)])


# ------------------------------------------------------------------------ state dicts
OPTIMIZERS = [
    lambda ps: ng.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda ps: ng.optim.Adam([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.01}], lr=0.05,
                             amsgrad=True),
    lambda ps: ng.optim.AdamW(ps, lr=0.05, weight_decay=0.1),
    lambda ps: ng.optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.9, weight_decay=0.1),
]
OPT_IDS = ["sgd-nesterov", "adam-amsgrad-2groups", "adamw", "rmsprop-centered-momentum"]


def test_state_dict_format():
    a, b, c = make_params(initial_arrays())
    opt = ng.optim.Adam([{"params": [a, b]}, {"params": [c], "lr": 0.01}], lr=0.1)
    a.grad, c.grad = ng.ones_like(a), ng.ones_like(c)      # b gets no gradient
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sorted(sd["state"]) == [0, 2]
    assert sd["state"][0]["step"] == 1
    assert set(sd["state"][2]) == {"step", "exp_avg", "exp_avg_sq"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["lr"] == 0.01 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert sd["state"][0]["exp_avg"] is opt.state[a]["exp_avg"]   # PyTorch: references


@pytest.mark.parametrize("make", OPTIMIZERS, ids=OPT_IDS)
def test_save_load_resume_is_bit_identical(make, tmp_path):
    arrays = initial_arrays(dtype=np.float32)
    # uninterrupted: 7 steps
    ref_params = make_params(arrays)
    ref = make(ref_params)
    ref_sched = lr_scheduler.ExponentialLR(ref, gamma=0.9)
    for t in range(7):
        run_ng(ref, ref_params, t + 1, start=t)
        ref_sched.step()

    # interrupted after 3 steps: checkpoint everything, rebuild from scratch, load, go on
    params = make_params(arrays)
    opt = make(params)
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.9)
    for t in range(3):
        run_ng(opt, params, t + 1, start=t)
        sched.step()
    ng.manual_seed(123)
    ckpt = {"params": [p.detach() for p in params], "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "rng": ng.get_rng_state(), "epoch": 3}
    ng.save(ckpt, tmp_path / "ckpt.ngz")
    expected_draw = ng.randn(4).numpy()
    del opt, sched, params

    loaded = ng.load(tmp_path / "ckpt.ngz")
    params = make_params([np.zeros_like(a) for a in arrays])
    for p, saved in zip(params, loaded["params"]):
        p.data[...] = saved.data
    opt = make(params)
    opt.load_state_dict(loaded["optimizer"])
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.9)
    sched.load_state_dict(loaded["scheduler"])
    ng.manual_seed(999)
    ng.set_rng_state(loaded["rng"])
    np.testing.assert_array_equal(ng.randn(4).numpy(), expected_draw)
    for t in range(loaded["epoch"], 7):
        run_ng(opt, params, t + 1, start=t)
        sched.step()

    for p, q in zip(params, ref_params):
        np.testing.assert_array_equal(p.data, q.data)
        assert p.dtype == np.float32
    assert sched.get_last_lr() == ref_sched.get_last_lr()
    assert_state_dicts_equal(opt.state_dict(), ref.state_dict())


def assert_state_dicts_equal(a, b):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert a["state"][k].keys() == b["state"][k].keys()
        for name, v in a["state"][k].items():
            w = b["state"][k][name]
            if isinstance(v, ng.Tensor):
                assert v.dtype == w.dtype
                np.testing.assert_array_equal(v.data, w.data)
            else:
                assert v == w and type(v) is type(w)


@pytest.mark.parametrize("make", OPTIMIZERS, ids=OPT_IDS)
def test_state_dict_round_trip_through_file(make, tmp_path):
    params = make_params(initial_arrays())
    opt = make(params)
    run_ng(opt, params, 4)
    sd = opt.state_dict()
    ng.save(sd, tmp_path / "opt.ngz")
    loaded = ng.load(tmp_path / "opt.ngz")
    assert_state_dicts_equal(loaded, sd)
    fresh = make(make_params(initial_arrays()))
    fresh.load_state_dict(loaded)
    assert_state_dicts_equal(fresh.state_dict(), sd)
    # the loaded optimizer owns copies: stepping it does not touch the loaded dict
    snapshot = copy.deepcopy(ng.load(tmp_path / "opt.ngz"))
    run_ng(fresh, fresh.param_groups[0]["params"], 1)
    assert_state_dicts_equal(loaded, snapshot)


def test_load_state_dict_restores_hyperparameters_and_casts():
    a = ng.tensor(np.ones(3), dtype=ng.float64, requires_grad=True)
    opt = ng.optim.Adam([a], lr=0.5, betas=(0.8, 0.9))
    a.grad = ng.ones_like(a)
    opt.step()
    sd = opt.state_dict()
    b = ng.ones(3, requires_grad=True)                      # float32 this time
    opt2 = ng.optim.Adam([b], lr=1e-3)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 0.5 and opt2.param_groups[0]["betas"] == (0.8, 0.9)
    assert opt2.param_groups[0]["params"][0] is b
    assert opt2.state[b]["exp_avg"].dtype == np.float32
    assert opt2.state[b]["exp_avg"].data is not opt.state[a]["exp_avg"].data


def test_load_state_dict_validates():
    a, b, c = make_params(initial_arrays())
    src = ng.optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = ng.ones_like(a), ng.ones_like(b)
    src.step()
    sd = src.state_dict()
    with pytest.raises(ValueError, match="number of parameter groups: it has 1, this optimizer "
                                         "has 2"):
        ng.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="group 0 has 2 parameters in the state dict and 3"):
        ng.optim.SGD([a, b, c], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"'momentum_buffer' has shape \(3, 4\) but the "
                                         r"parameter has shape \(5,\)"):
        ng.optim.SGD([b, a], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        ng.optim.SGD([a], lr=0.1).load_state_dict({"state": {}})


def test_step_count_from_torch_style_tensor_is_accepted():
    a = ng.ones(2, requires_grad=True)
    opt = ng.optim.Adam([a])
    a.grad = ng.ones_like(a)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["step"] = ng.tensor(1.0)      # torch keeps step as a float tensor
    opt.load_state_dict(sd)
    assert opt.state[a]["step"] == 1 and type(opt.state[a]["step"]) is int


# ------------------------------------------------------------------------ torch as an oracle
def torch_run(name, kw, arrays, steps, dtype):
    params = [torch.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    opt = getattr(torch.optim, name)(params, **kw)
    traj = []
    for t in range(steps):
        for k, p in enumerate(params):
            p.grad = torch.tensor(gradient(p.detach().numpy(), t, k))
        opt.step()
        traj.append([p.detach().numpy().copy() for p in params])
    return traj, opt


@requires_torch
@pytest.mark.parametrize("name,_,kw", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_trajectory_matches_torch(name, _, kw, dtype):
    arrays = initial_arrays(dtype=dtype)
    traj, topt = torch_run(name, kw, arrays, 10, dtype)
    params = make_params(arrays)
    opt = getattr(ng.optim, name)(params, **kw)
    tol = dict(rtol=1e-11, atol=1e-13) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)
    for t in range(10):
        run_ng(opt, params, t + 1, start=t)
        for p, q in zip(params, traj[t]):
            assert p.dtype == dtype
            np.testing.assert_allclose(p.data, q, **tol)
    # and the state agrees entry by entry
    tsd, sd = topt.state_dict(), opt.state_dict()
    for k, st in sd["state"].items():
        for key, v in st.items():
            tv = tsd["state"][k][key]
            if key == "step":
                assert v == int(tv.item())
            else:
                np.testing.assert_allclose(v.data, tv.numpy(), **tol)


# ------------------------------------------------------------------------ lr schedulers
def sched_lrs(make_sched, epochs, lrs=(1.0,)):
    ps = [ng.zeros(1, requires_grad=True) for _ in lrs]
    opt = ng.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(ps, lrs)])
    sched = make_sched(opt)
    out = [sched.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr())
        assert out[-1] == [g["lr"] for g in opt.param_groups]
    return out, sched, opt


SCHEDULES = {
    "step": (lambda o: lr_scheduler.StepLR(o, step_size=3, gamma=0.1),
             lambda base, t: base * 0.1 ** (t // 3)),
    "multistep": (lambda o: lr_scheduler.MultiStepLR(o, milestones=[5, 2, 5], gamma=0.5),
                  lambda base, t: base * 0.5 ** ((t >= 2) + 2 * (t >= 5))),
    "exponential": (lambda o: lr_scheduler.ExponentialLR(o, gamma=0.9),
                    lambda base, t: base * 0.9 ** t),
    "cosine": (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.01),
               lambda base, t: 0.01 + (base - 0.01) * (1 + math.cos(math.pi * t / 10)) / 2),
    "lambda": (lambda o: lr_scheduler.LambdaLR(o, lambda t: 1.0 / (1 + t)),
               lambda base, t: base / (1 + t)),
    "linear": (lambda o: lr_scheduler.LinearLR(o, start_factor=0.25, end_factor=1.0,
                                               total_iters=4),
               lambda base, t: base * (0.25 + 0.75 * min(t, 4) / 4)),
    "linear-decay": (lambda o: lr_scheduler.LinearLR(o, start_factor=1.0, end_factor=0.5,
                                                     total_iters=3),
                     lambda base, t: base * (1.0 - 0.5 * min(t, 3) / 3)),
}


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
def test_schedule_sequences(kind):
    make, formula = SCHEDULES[kind]
    out, _, _ = sched_lrs(make, 25, lrs=(1.0, 0.3))
    for t, lrs in enumerate(out):
        assert lrs == pytest.approx([formula(1.0, t), formula(0.3, t)], rel=1e-12, abs=1e-15)


def test_step_lr_sequence_literal():
    out, _, _ = sched_lrs(SCHEDULES["step"][0], 7, lrs=(0.5,))
    assert [lr for (lr,) in out] == pytest.approx(
        [0.5, 0.5, 0.5, 0.05, 0.05, 0.05, 0.005, 0.005], rel=1e-12)


def test_linear_warmup_literal():
    out, _, _ = sched_lrs(lambda o: lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=3),
                          5, lrs=(0.8,))
    assert [lr for (lr,) in out] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8], rel=1e-12)


def test_chained_schedulers_compose():
    # a warm-up and an exponential decay on one optimizer multiply, as in PyTorch
    w = ng.zeros(1, requires_grad=True)
    opt = ng.optim.SGD([w], lr=1.0)
    warm = lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=2)
    decay = lr_scheduler.ExponentialLR(opt, gamma=0.9)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(4):
        opt.step()
        warm.step()
        decay.step()
        lrs.append(opt.param_groups[0]["lr"])
    expected = [min(0.5 + 0.25 * t, 1.0) * 0.9 ** t for t in range(5)]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_step_with_epoch_uses_closed_form():
    _, sched, opt = sched_lrs(SCHEDULES["multistep"][0], 1)
    sched.step(6)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.125)
    assert sched.last_epoch == 6


def test_scheduler_state_dict_resume(tmp_path):
    make, formula = SCHEDULES["cosine"]
    _, sched, opt = sched_lrs(make, 4)
    ng.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, tmp_path / "s.ngz")
    ck = ng.load(tmp_path / "s.ngz")
    w = ng.zeros(1, requires_grad=True)
    opt2 = ng.optim.SGD([w], lr=123.0)
    opt2.load_state_dict(ck["opt"])
    sched2 = lr_scheduler.CosineAnnealingLR(opt2, T_max=10, last_epoch=ck["sched"]["last_epoch"],
                                            eta_min=0.01)
    sched2.load_state_dict(ck["sched"])
    assert sched2.last_epoch == 4 and sched2.base_lrs == [1.0]
    for t in range(5, 9):
        sched2.step()
        assert opt2.param_groups[0]["lr"] == pytest.approx(formula(1.0, t), rel=1e-12)
    # the lambda of a LambdaLR is not saved, only callable objects' attributes are
    _, lam, _ = sched_lrs(SCHEDULES["lambda"][0], 2)
    assert lam.state_dict()["lr_lambdas"] == [None]


def test_scheduler_errors():
    w = ng.zeros(1, requires_grad=True)
    opt = ng.optim.SGD([w], lr=1.0)
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(opt, step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="Expected 1 lr_lambdas, but got 2"):
        lr_scheduler.LambdaLR(opt, [lambda t: 1, lambda t: 2])
    with pytest.raises(ValueError, match="1.5"):
        lr_scheduler.LinearLR(opt, start_factor=1.5)
    with pytest.raises(ValueError, match="step_size"):
        lr_scheduler.StepLR(opt, step_size=0)


@requires_torch
@pytest.mark.parametrize("kind", sorted(SCHEDULES))
def test_schedule_matches_torch(kind):
    make, _ = SCHEDULES[kind]
    mine, _, _ = sched_lrs(make, 30, lrs=(1.0, 0.3))
    ps = [torch.zeros(1, requires_grad=True) for _ in range(2)]
    opt = torch.optim.SGD([{"params": [ps[0]], "lr": 1.0}, {"params": [ps[1]], "lr": 0.3}])
    tsched = {"step": lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.1),
              "multistep": lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [5, 2, 5], 0.5),
              "exponential": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9),
              "cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10, 0.01),
              "lambda": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1 / (1 + t)),
              "linear": lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.25, 1.0, 4),
              "linear-decay": lambda o: torch.optim.lr_scheduler.LinearLR(o, 1.0, 0.5, 3),
              }[kind](opt)
    theirs = [tsched.get_last_lr()]
    for _ in range(30):
        opt.step()
        tsched.step()
        theirs.append(tsched.get_last_lr())
    for a, b in zip(mine, theirs):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


# ------------------------------------------------------------------------ EMA of weights
class TinyModule:
    """Stands in for an nn.Module: two parameters and two buffers (a float and an int)."""

    def __init__(self):
        self.weight = ng.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        self.bias = ng.tensor([0.5, -0.5], requires_grad=True)
        self.running_mean = ng.zeros(2)
        self.num_batches_tracked = ng.tensor(0)

    def parameters(self):
        return iter([self.weight, self.bias])

    def named_parameters(self):
        return iter([("weight", self.weight), ("bias", self.bias)])

    def named_buffers(self):
        return iter([("running_mean", self.running_mean),
                     ("num_batches_tracked", self.num_batches_tracked)])


def test_ema_math():
    w = ng.tensor([0.0, 10.0], dtype=ng.float64, requires_grad=True)
    ema = ng.optim.ExponentialMovingAverage([w], decay=0.9)
    shadow = np.array([0.0, 10.0])
    for value in ([1.0, 9.0], [2.0, 8.0], [4.0, 4.0]):
        w.data[...] = value
        ema.update()
        shadow = 0.9 * shadow + 0.1 * np.array(value)
        np.testing.assert_allclose(ema.shadow_params[0].data, shadow, rtol=1e-15)
    np.testing.assert_array_equal(w.data, [4.0, 4.0])           # the model is untouched
    assert ema.num_updates == 3 and ng.optim.EMA is ng.optim.ExponentialMovingAverage


def test_ema_warmup_decay():
    w = ng.tensor([0.0], dtype=ng.float64, requires_grad=True)
    ema = ng.optim.EMA([w], decay=0.5, warmup=True)
    decays = []
    shadow = 0.0
    for n in range(1, 5):
        decays.append(ema.get_decay())
        w.data[...] = float(n)
        ema.update()
        d = min(0.5, (1 + n) / (10 + n))
        shadow = d * shadow + (1 - d) * n
        assert ema.shadow_params[0].item() == pytest.approx(shadow, rel=1e-15)
    assert decays == pytest.approx([2 / 11, 3 / 12, 4 / 13, 5 / 14])
    assert ng.optim.EMA([w], decay=0.1, warmup=True).get_decay() == 0.1


def test_ema_module_buffers_copied_not_averaged_and_swap():
    m = TinyModule()
    ema = ng.optim.EMA(m, decay=0.5)
    w0 = m.weight.data.copy()
    m.weight.data += 2.0                   # a "training step"
    m.running_mean = ng.tensor([7.0, 8.0])  # a module may rebind a buffer: still tracked
    m.num_batches_tracked = ng.tensor(5)
    ema.update()
    np.testing.assert_allclose(ema.shadow_params[0].data, w0 + 1.0)
    np.testing.assert_array_equal(ema.shadow_buffers[0].data, [7.0, 8.0])
    assert ema.shadow_buffers[1].item() == 5 and ema.shadow_buffers[1].dtype == np.int64

    trained = m.weight.data.copy()
    m.running_mean.data[...] = [0.0, 0.0]
    with ema.average_parameters():
        np.testing.assert_allclose(m.weight.data, w0 + 1.0)
        np.testing.assert_array_equal(m.running_mean.data, [7.0, 8.0])
    np.testing.assert_array_equal(m.weight.data, trained)
    np.testing.assert_array_equal(m.running_mean.data, [0.0, 0.0])

    # restored even when the block raises
    with pytest.raises(KeyError):
        with ema.average_parameters():
            raise KeyError("boom")
    np.testing.assert_array_equal(m.weight.data, trained)

    # copy_to another module of the same shape (a separate sampling copy)
    other = TinyModule()
    ema.copy_to(other)
    np.testing.assert_allclose(other.weight.data, w0 + 1.0)
    assert other.num_batches_tracked.item() == 5
    with pytest.raises(RuntimeError, match="store"):
        ema.restore()


def test_ema_state_dict_round_trip(tmp_path):
    m = TinyModule()
    ema = ng.optim.EMA(m, decay=0.9, warmup=True)
    for _ in range(3):
        m.weight.data *= 0.5
        ema.update()
    ng.save(ema.state_dict(), tmp_path / "ema.ngz")
    m2 = TinyModule()
    ema2 = ng.optim.EMA(m2, decay=0.1)
    ema2.load_state_dict(ng.load(tmp_path / "ema.ngz"))
    assert (ema2.decay, ema2.warmup, ema2.num_updates) == (0.9, True, 3)
    for a, b in zip(ema.shadow_params + ema.shadow_buffers,
                    ema2.shadow_params + ema2.shadow_buffers):
        np.testing.assert_array_equal(a.data, b.data)
        assert a.dtype == b.dtype and a.data is not b.data
    # the two continue identically
    for e, mod in ((ema, m), (ema2, m2)):
        mod.weight.data[...] = 1.0
        e.update()
    np.testing.assert_array_equal(ema.shadow_params[0].data, ema2.shadow_params[0].data)

    bad = ng.optim.EMA([ng.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="1 shadow_params"):
        ng.optim.EMA([ng.zeros(3), ng.zeros(3)]).load_state_dict(bad.state_dict())
    with pytest.raises(ValueError, match=r"shape \(3,\) but .* has shape \(2, 2\)"):
        ng.optim.EMA([ng.zeros(2, 2)]).load_state_dict(bad.state_dict())
    with pytest.raises(ValueError, match="1.5"):
        ng.optim.EMA([ng.zeros(2)], decay=1.5)


def test_real_module_optimizer_ema_and_checkpoint(tmp_path):
    """End to end with ng.nn: a Module trained with an optimizer, an EMA and a checkpoint."""

    class Net(ng.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = ng.nn.Sequential(ng.nn.Linear(3, 8), ng.nn.Linear(8, 1))
            self.register_buffer("calls", ng.tensor(0))

        def forward(self, x):
            self.calls = self.calls + 1          # a buffer rebound at every call
            return self.body(x)

    ng.manual_seed(0)
    model = Net()
    opt = ng.optim.Adam(model.parameters(), lr=0.01)
    ema = ng.optim.EMA(model, decay=0.5)
    start = [p.data.copy() for p in model.parameters()]
    x, y = ng.randn(16, 3), ng.randn(16, 1)
    opt.zero_grad()
    ((model(x) - y) ** 2).mean().backward()
    opt.step()
    ema.update()
    for s, p, p0 in zip(ema.shadow_params, model.parameters(), start):
        np.testing.assert_allclose(s.data, 0.5 * p0 + 0.5 * p.data, rtol=1e-6)
    assert [s.item() for s in ema.shadow_buffers] == [1]      # copied, not averaged

    ng.save({"model": model.state_dict(), "opt": opt.state_dict(), "ema": ema.state_dict()},
            tmp_path / "net.ckpt")
    ck = ng.load(tmp_path / "net.ckpt")
    model2 = Net()
    model2.load_state_dict(ck["model"])
    opt2 = ng.optim.Adam(model2.parameters(), lr=0.5)
    opt2.load_state_dict(ck["opt"])
    ema2 = ng.optim.EMA(model2, decay=0.9)
    ema2.load_state_dict(ck["ema"])
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        ((m(x) - y) ** 2).mean().backward()
        o.step()
    for p, q in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    with ema2.average_parameters():
        for p, s in zip(model2.parameters(), ema.shadow_params):
            np.testing.assert_array_equal(p.data, s.data)
