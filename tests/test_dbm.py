"""The deep Boltzmann machine (nanogen.models.energy.dbm): the energy, conditionals, marginal and
exact log Z against brute-force enumeration of the joint; mean-field's fixed point and the
variational bound against the exact posterior; AIS against the exact partition function; the
surrogate loss's gradient in each phase against statistics computed in NumPy; the phase switch
and exact resume; bad input."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import get_model_spec
from nanogen.models.energy import dbm as dbm_module
from nanogen.models.energy import rbm as rbm_module
from nanogen.models.energy.ais import estimate_log_partition
from nanogen.models.energy.dbm import DBM
from nanogen.training import load_checkpoint, train
from tests.test_rbm import binary_images


def make_dbm(num_visible, hidden1, hidden2, seed, scale=1.0, **kwargs):
    """A DBM on (1, 1, D) 'images' with N(0, scale^2) weights and biases (the top RBM's
    visible bias too: the DBM's h1 bias is c1 + a), in float64 for exact comparisons."""
    rng = np.random.default_rng(seed)
    model = DBM(image_shape=(1, 1, num_visible), hidden_sizes=(hidden1, hidden2), **kwargs)
    for p in model.parameters():
        p.data = rng.normal(0.0, scale, p.shape)
    for buffer in model.buffers():
        if buffer.data.dtype == np.float32:
            buffer.data = buffer.data.astype(np.float64)
    return model


def parameters(model):
    """(W1, b, c1, W2, a, c2) as float64 NumPy arrays."""
    return tuple(p.detach().numpy().astype(np.float64) for p in (
        model.bottom.weight, model.bottom.visible_bias, model.bottom.hidden_bias,
        model.top.weight, model.top.visible_bias, model.top.hidden_bias))


def all_states(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def minus_energy_table(model):
    """-E(v, h1, h2) by eq. (1) for every state: shape (2^D, 2^H1, 2^H2), and the states."""
    W1, b, c1, W2, a, c2 = parameters(model)
    V, H1, H2 = all_states(len(b)), all_states(len(c1)), all_states(len(c2))
    table = (V @ b)[:, None, None] + (H1 @ (c1 + a))[None, :, None] + (H2 @ c2)[None, None, :] \
        + (V @ W1 @ H1.T)[:, :, None] + (H1 @ W2 @ H2.T)[None, :, :]
    return table, V, H1, H2


def log_sum_exp(x, axis=None):
    top = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True)), axis=axis)


sizes = st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3))


# -- eqs. (1)-(3) and (10) against enumeration ----------------------------------------------------
@given(sizes=sizes, seed=st.integers(0, 10**6))
def test_conditionals_are_the_joints_conditionals(sizes, seed):
    model = make_dbm(*sizes, seed)
    table, V, H1, H2 = minus_energy_table(model)
    p = np.exp(table - table.max())
    # p(h1 | v, h2): normalise over axis 1; the expected h1 for every (v, h2)
    p_h1 = p / p.sum(1, keepdims=True)
    expected_h1 = np.einsum("vah,aj->vhj", p_h1, H1).reshape(-1, len(H1[0]))
    pairs_v, pairs_h2 = np.repeat(V, len(H2), 0), np.tile(H2, (len(V), 1))
    got_h1 = model.hidden1_logits(ng.tensor(pairs_v), ng.tensor(pairs_h2)).sigmoid()
    got_h1 = got_h1.detach().numpy()
    np.testing.assert_allclose(got_h1, expected_h1, rtol=1e-9, atol=1e-12)
    # p(v | h1, h2) and p(h2 | v, h1): the same for every value of the other outer layer
    expected_v = np.einsum("vah,vi->ahi", p / p.sum(0, keepdims=True), V)
    expected_h2 = np.einsum("vah,hk->vak", p / p.sum(2, keepdims=True), H2)
    got_v = model.bottom.visible_logits(ng.tensor(H1)).sigmoid().detach().numpy()
    got_h2 = model.top.hidden_logits(ng.tensor(H1)).sigmoid().detach().numpy()
    np.testing.assert_allclose(expected_v, np.broadcast_to(got_v[:, None], expected_v.shape),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(expected_h2, np.broadcast_to(got_h2[None], expected_h2.shape),
                               rtol=1e-9, atol=1e-12)


@given(sizes=sizes, seed=st.integers(0, 10**6))
def test_energy_marginal_and_exact_log_z_against_enumeration(sizes, seed):
    model = make_dbm(*sizes, seed)
    table, V, H1, H2 = minus_energy_table(model)
    grid = np.array(list(itertools.product(range(len(V)), range(len(H1)), range(len(H2)))))
    energy = model.energy(*(ng.tensor(S[grid[:, i]]) for i, S in enumerate((V, H1, H2))))
    np.testing.assert_allclose(-energy.detach().numpy(), table.reshape(-1), rtol=1e-10, atol=1e-10)
    pairs_v, pairs_h2 = np.repeat(V, len(H2), 0), np.tile(H2, (len(V), 1))
    marginal = model.log_unnormalised(ng.tensor(pairs_v), ng.tensor(pairs_h2)).detach().numpy()
    np.testing.assert_allclose(marginal, log_sum_exp(table, 1).reshape(-1), rtol=1e-10,
                               atol=1e-10)                                      # eq. (3)
    assert model.exact_log_partition() == pytest.approx(log_sum_exp(table), rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("num_visible, hidden1, hidden2", [(4, 2, 3), (2, 7, 2)])
def test_exact_log_z_enumerates_either_side(num_visible, hidden1, hidden2, monkeypatch):
    """Both branches of eq. (10) / eq. (3) give the enumerated value; the second (h1 larger
    than v and h2 together) must not enumerate h1."""
    model = make_dbm(num_visible, hidden1, hidden2, 3)
    table, *_ = minus_energy_table(model)
    counts = []
    original = dbm_module.log_sum_exp_over_states

    def counting(units, fn):
        counts.append(units)
        return original(units, fn)
    monkeypatch.setattr(dbm_module, "log_sum_exp_over_states", counting)
    assert model.exact_log_partition() == pytest.approx(log_sum_exp(table), rel=1e-12)
    assert counts == [min(hidden1, num_visible + hidden2)]


def test_exact_log_partition_refuses_models_too_large_to_enumerate():
    with pytest.raises(ValueError, match="2\\^21 states.*use AIS"):
        make_dbm(15, 21, 6, 0).exact_log_partition()


# -- mean-field and the bound, eqs. (4)-(5) -------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_field_reaches_its_fixed_point_and_the_bound_is_log_p_minus_kl(seed):
    model = make_dbm(4, 3, 2, seed, scale=1.5)
    W1, b, c1, W2, a, c2 = parameters(model)
    table, V, H1, H2 = minus_energy_table(model)
    log_z = log_sum_exp(table)
    a1, a2 = model.mean_field(ng.tensor(V), 200, tol=1e-13)
    mu1, mu2 = a1.sigmoid().detach().numpy(), a2.sigmoid().detach().numpy()
    np.testing.assert_allclose(mu1, sigmoid(c1 + a + V @ W1 + mu2 @ W2.T), atol=1e-11)  # eq. (5)
    np.testing.assert_allclose(mu2, sigmoid(c2 + mu1 @ W2), atol=1e-11)
    bound = -model.variational_free_energy(ng.tensor(V), 200, tol=1e-13).detach().numpy() - log_z
    # log p(v) - KL(Q || p(h | v)), both by enumeration
    log_p = log_sum_exp(table.reshape(len(V), -1), 1) - log_z
    q = np.einsum("va,vh->vah",
                  np.prod(np.where(H1[None] == 1, mu1[:, None], 1 - mu1[:, None]), -1),
                  np.prod(np.where(H2[None] == 1, mu2[:, None], 1 - mu2[:, None]), -1))
    log_posterior = table - log_sum_exp(table.reshape(len(V), -1), 1)[:, None, None]
    kl = (q * (np.log(q) - log_posterior)).sum((1, 2))
    np.testing.assert_allclose(bound, log_p - kl, rtol=1e-10, atol=1e-10)
    assert np.all(bound <= log_p) and np.all(kl > 1e-6)      # coupled layers: a real gap


def test_each_mean_field_update_raises_the_bound():
    model = make_dbm(5, 4, 3, 7, scale=2.0)
    v = ng.tensor(all_states(5))
    bounds = np.stack([-model.variational_free_energy(v, k).detach().numpy() for k in range(8)])
    assert np.all(np.diff(bounds, axis=0) >= -1e-12)
    assert np.any(np.diff(bounds, axis=0) > 1e-3)


# -- AIS, eq. (9) ---------------------------------------------------------------------------------
@pytest.mark.parametrize("num_visible, hidden1, hidden2, seed", [(10, 8, 6, 0), (8, 25, 4, 1)])
def test_ais_agrees_with_the_exact_log_partition_function(num_visible, hidden1, hidden2, seed):
    ng.manual_seed(seed)
    model = make_dbm(num_visible, hidden1, hidden2, seed + 10, scale=0.5)
    rng = np.random.default_rng(seed)
    path = dbm_module.DBMAnnealingPath(model, ng.tensor(rng.normal(0, 1, num_visible)),
                                       ng.tensor(rng.normal(0, 1, hidden2)))
    estimate = estimate_log_partition(path, runs=100, temperatures=1000)
    exact = model.exact_log_partition()
    assert abs(estimate.log_z - exact) <= 4 * estimate.stderr + 1e-3
    assert 0 < estimate.stderr < 0.05


def test_ais_for_a_model_equal_to_its_base_has_weights_of_exactly_one():
    model = make_dbm(5, 3, 4, 0)
    for p in (model.bottom.weight, model.top.weight, model.bottom.hidden_bias,
              model.top.visible_bias):
        p.data = np.zeros(p.shape)
    path = dbm_module.DBMAnnealingPath(model, model.bottom.visible_bias, model.top.hidden_bias)
    estimate = estimate_log_partition(path, runs=7, temperatures=4)
    assert estimate.log_z == pytest.approx(model.exact_log_partition(), abs=1e-12)
    assert estimate.stderr == 0


# -- the surrogate loss of each phase, eqs. (6)-(8) -----------------------------------------------
def threshold(p):
    """[p > 0.5]: a Bernoulli draw made deterministic, so a step's states can be recomputed."""
    values = p.detach().numpy()
    return ng.tensor((values > 0.5).astype(values.dtype))


@pytest.fixture
def threshold_sampling(monkeypatch):
    monkeypatch.setattr(dbm_module, "bernoulli", threshold)
    monkeypatch.setattr(rbm_module, "bernoulli", threshold)


def gradients(model):
    return {name: -p.grad.numpy() for name, p in model.named_parameters() if p.grad is not None}


def check_statistics(got, names, positive, negative):
    """-dL/dW = <x y^T>_+ - <x y^T>_- for each weight, <x>_+ - <x>_- for each bias."""
    for name, pos, neg in zip(names, positive, negative):
        if isinstance(pos, tuple):
            expected = pos[0].T @ pos[1] / len(pos[0]) - neg[0].T @ neg[1] / len(neg[0])
        else:
            expected = pos.mean(0) - neg.mean(0)
        np.testing.assert_allclose(got[name], expected, rtol=1e-10, atol=1e-12, err_msg=name)


@given(seed=st.integers(0, 10**6), n=st.integers(1, 5))
def test_joint_loss_gradient_is_the_difference_of_statistics(seed, n):
    """Eq. (7): mean-field statistics of the data minus those of the chains after one sweep,
    with h1 of the chains at its conditional mean; every state recomputed in NumPy."""
    model = make_dbm(5, 4, 3, seed, pretrain_steps=0, num_chains=3, mean_field_steps=4,
                     gibbs_steps=2)
    rng = np.random.default_rng(seed + 1)
    model.updates.copy_(ng.tensor([7]))                     # past the joint phase's start
    chain_v, chain_h2 = rng.integers(0, 2, (3, 5)) * 1.0, rng.integers(0, 2, (3, 3)) * 1.0
    model.chains_v.data, model.chains_h2.data = chain_v.copy(), chain_h2.copy()
    v = rng.integers(0, 2, (n, 5)) * 1.0
    W1, b, c1, W2, a, c2 = parameters(model)
    mu1 = sigmoid(c1 + 2 * v @ W1)
    mu2 = sigmoid(c2 + mu1 @ W2)
    for _ in range(4):
        mu1 = sigmoid(c1 + a + v @ W1 + mu2 @ W2.T)
        mu2 = sigmoid(c2 + mu1 @ W2)
    for _ in range(2):                                         # the sweeps, thresholded
        h1 = (sigmoid(c1 + a + chain_v @ W1 + chain_h2 @ W2.T) > 0.5) * 1.0
        chain_v = (sigmoid(b + h1 @ W1.T) > 0.5) * 1.0
        chain_h2 = (sigmoid(c2 + h1 @ W2) > 0.5) * 1.0
    chain_h1 = sigmoid(c1 + a + chain_v @ W1 + chain_h2 @ W2.T)
    with pytest.MonkeyPatch.context() as patch:      # the fixture does not mix with @given
        patch.setattr(dbm_module, "bernoulli", threshold)
        patch.setattr(rbm_module, "bernoulli", threshold)
        loss, _ = model._joint_loss(ng.tensor(v))
    loss.backward()
    np.testing.assert_allclose(model.top_sum.numpy(), mu2.sum(0), rtol=1e-12)   # c2_A's sums
    assert model.top_count.item() == n
    np.testing.assert_array_equal(model.chains_v.numpy(), chain_v)
    np.testing.assert_array_equal(model.chains_h2.numpy(), chain_h2)
    check_statistics(gradients(model),
                     ["bottom.weight", "top.weight", "bottom.visible_bias",
                      "bottom.hidden_bias", "top.hidden_bias"],
                     [(v, mu1), (mu1, mu2), v, mu1, mu2],
                     [(chain_v, chain_h1), (chain_h1, chain_h2), chain_v, chain_h1, chain_h2])


def test_pretraining_losses_are_cd1_with_the_doubled_conditionals(threshold_sampling):
    """Eq. (8): the bottom RBM infers h1 with 2 W1, the top one reconstructs h1 with 2 W2."""
    rng = np.random.default_rng(4)
    v = rng.integers(0, 2, (16, 5)) * 1.0
    model = make_dbm(5, 4, 3, 11, pretrain_steps=3)
    model.updates.copy_(ng.tensor([1]))
    W1, b, c1, W2, a, c2 = parameters(model)
    loss, _ = model._bottom_loss(ng.tensor(v))
    loss.backward()
    h_pos = sigmoid(c1 + 2 * v @ W1)
    v_neg = (sigmoid(b + (h_pos > 0.5) @ W1.T) > 0.5) * 1.0
    assert np.any((h_pos > 0.5) != (sigmoid(c1 + v @ W1) > 0.5))           # the doubling shows
    h_neg = sigmoid(c1 + 2 * v_neg @ W1)
    check_statistics(gradients(model), ["bottom.weight", "bottom.visible_bias",
                                        "bottom.hidden_bias"],
                     [(v, h_pos), v, h_pos], [(v_neg, h_neg), v_neg, h_neg])
    assert "top.weight" not in gradients(model)

    model = make_dbm(5, 4, 3, 15, pretrain_steps=3)
    model.updates.copy_(ng.tensor([4]))                     # inside the top phase
    W1, b, c1, W2, a, c2 = parameters(model)
    loss, _ = model._top_loss(ng.tensor(v))
    loss.backward()
    data = (sigmoid(c1 + 2 * v @ W1) > 0.5) * 1.0
    assert np.any(data != ((sigmoid(c1 + v @ W1) > 0.5) * 1.0))
    h2_pos = sigmoid(c2 + data @ W2)
    h1_neg = (sigmoid(a + 2 * (h2_pos > 0.5) @ W2.T) > 0.5) * 1.0
    assert np.any(h1_neg != ((sigmoid(a + (h2_pos > 0.5) @ W2.T) > 0.5) * 1.0))   # doubling shows
    h2_neg = sigmoid(c2 + h1_neg @ W2)
    check_statistics(gradients(model), ["top.weight", "top.visible_bias", "top.hidden_bias"],
                     [(data, h2_pos), data, h2_pos], [(h1_neg, h2_neg), h1_neg, h2_neg])
    assert "bottom.weight" not in gradients(model)


# -- the model: phases, resume, bad input ---------------------------------------------------
def test_phases_switch_by_update_count_and_the_joint_phase_composes_the_biases():
    ng.manual_seed(0)
    model = DBM(image_shape=(1, 4, 4), hidden_sizes=(5, 3), pretrain_steps=2, num_chains=4,
                momentum_switch=1, joint_momentum=0.3)
    optimizers = model.configure_optimizers(0.1)
    phases, momenta = [], []
    for i in range(5):
        if i == 4:
            c1, a = (p.detach().numpy().copy() for p in (model.bottom.hidden_bias,
                                                         model.top.visible_bias))
            assert np.abs(a).max() > 0 and not model.chains_v.numpy().any()
        phases.append(model.training_step((ng.tensor(binary_images(8, i)), None),
                                          optimizers)["phase"])
        momenta.append(optimizers[("bottom", "top", "joint")[int(phases[-1])]]
                       .param_groups[0]["momentum"])
    assert phases == [0.0, 0.0, 1.0, 1.0, 2.0]
    assert momenta == [0.5, 0.9, 0.5, 0.9, 0.3]     # the guide's switch counts from each RBM
    assert not model.top.visible_bias.detach().numpy().any()   # a = 0 from the joint phase on
    assert not any(p is model.top.visible_bias
                   for g in optimizers["joint"].param_groups for p in g["params"])
    assert model.chains_v.numpy().any()
    # the first joint update moved c1 from (c1 + a) / 2 by one SGD step of the joint optimizer
    step = -optimizers["joint"].param_groups[1]["lr"] * model.bottom.hidden_bias.grad.numpy()
    np.testing.assert_allclose(model.bottom.hidden_bias.detach().numpy(), (c1 + a) / 2 + step,
                               rtol=1e-5, atol=1e-6)
    assert [g["weight_decay"] for g in optimizers["joint"].param_groups] == [2e-4, 0.0]
    assert optimizers["joint"].param_groups[0]["lr"] == pytest.approx(0.1 * model.joint_lr_factor)


def test_non_binary_data_is_refused_in_one_line():
    model = DBM(image_shape=(1, 4, 4), hidden_sizes=(3, 2))
    optimizers = model.configure_optimizers(0.1)
    with pytest.raises(ValueError, match="DBM.training_step: pixels must be 0 or 1.*binarize") \
            as info:
        model.training_step((ng.full((2, 1, 4, 4), 0.5), None), optimizers)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="expected images of shape \\(N, 1, 4, 4\\)"):
        model.training_step((ng.zeros(2, 1, 5, 4), None), optimizers)
    with pytest.raises(ValueError, match="hidden_sizes"):
        DBM(image_shape=(1, 4, 4), hidden_sizes=(3, 2, 2))


RESUMED = {"hidden_sizes": (5, 4), "pretrain_steps": 2, "num_chains": 6, "mean_field_steps": 3,
           "gibbs_steps": 2, "momentum_switch": 3, "sample_steps": 3}


def run(out_dir, steps, init_seed=0, resume=False):
    """The registered DBM, shrunk, through the shared loop on 24 tiny images."""
    ng.manual_seed(init_seed)
    spec = get_model_spec("dbm")
    model = spec.build(image_shape=(1, 4, 4), num_classes=1, **{**spec.kwargs, **RESUMED})
    data = TensorDataset(binary_images(24, 3), np.zeros(24, np.int64))
    train(model, DataLoader(data, batch_size=4, shuffle=True, seed=1), steps=steps,
          out_dir=out_dir, config={"model": spec.name}, lr=0.1, progress=False,
          checkpoint_every=1, sample_every=1000, resume=resume)
    return model


def test_training_resumes_exactly_across_the_phase_switches(tmp_path):
    straight = run(tmp_path / "a", 9)
    run(tmp_path / "b", 3)                                     # stops inside the top phase
    run(tmp_path / "b", 5, init_seed=7, resume=True)           # just after the joint phase began
    broken = run(tmp_path / "b", 9, init_seed=123, resume=True)
    for key, value in straight.state_dict().items():
        assert np.array_equal(value.numpy(), broken.state_dict()[key].numpy()), key
    assert straight.phase() == "joint" and straight.updates.item() == 9
    chains = straight.chains_v.numpy()
    assert set(np.unique(chains)) <= {0.0, 1.0} and chains.any()
    assert load_checkpoint(tmp_path / "b")["step"] == 9


# -- evaluation and pictures ---------------------------------------------------------------
def test_evaluate_reports_a_bound_above_the_exact_nll(tmp_path):
    ng.manual_seed(0)
    model = DBM(image_shape=(1, 2, 4), hidden_sizes=(6, 4), pretrain_steps=2, num_chains=8,
                ais_runs=100, ais_temperatures=1000)
    x = binary_images(32, 5, shape=(1, 2, 4))
    opt = model.configure_optimizers(0.2)
    for i in range(0, 32, 4):
        model.training_step((ng.tensor(x[i:i + 4]), None), opt)
    metrics = model.evaluate([(ng.tensor(x[:10]), None), (ng.tensor(x[10:]), None)])
    assert metrics["num_examples"] == 32
    # the exact mean NLL by enumeration of h2 (eq. 3, h1 summed out)
    v = x.reshape(32, -1).astype(np.float64)
    W1, b, c1, W2, a, c2 = parameters(model)
    H2 = all_states(4)
    log_p_star = log_sum_exp(v @ b[:, None] + (H2 @ c2)[None] + np.logaddexp(
        0, (v @ W1 + c1 + a)[:, None] + (H2 @ W2.T)[None]).sum(-1), 1)
    log_z = model.exact_log_partition()
    exact_nll = np.mean(log_z - log_p_star)
    assert metrics["log_z_exact"] == pytest.approx(log_z)
    assert exact_nll <= metrics["nll_upper_bound_nats_exact_log_z"] <= exact_nll + 5.0
    assert abs(metrics["nll_upper_bound_nats"] - metrics["nll_upper_bound_nats_exact_log_z"]) \
        <= 4 * metrics["log_z_stderr"] + 1e-3
    assert metrics["bits_per_dim_upper_bound"] == pytest.approx(
        metrics["nll_upper_bound_nats"] / (8 * math.log(2)))
    assert "nll_nats" not in metrics                           # a bound, not the NLL


def test_samples_are_the_last_sweeps_visible_probabilities_and_filters_are_w1():
    spec = get_model_spec("dbm")
    model = spec.build(image_shape=(1, 4, 4), num_classes=10,
                       **{**spec.kwargs, "hidden_sizes": (7, 3), "sample_steps": 3})
    ng.manual_seed(0)
    images = model.sample(5).numpy()
    ng.manual_seed(0)                                  # the same draws, by hand
    b_base, c2_base = model.base_logits()
    v, h2 = (ng.bernoulli(base.sigmoid().reshape(1, -1).expand(5, -1))
             for base in (b_base, c2_base))
    for _ in range(3):
        v, h2, probs = model.gibbs_sweep(v, h2)
    np.testing.assert_array_equal(images, probs.detach().numpy().reshape(5, 1, 4, 4))
    assert 0 < images.min() and images.max() < 1
    filters, nrow = model.figures(ng.tensor(binary_images(2)))["filters"]
    assert filters.shape == (7, 1, 4, 4) and nrow == 10
    w = model.bottom.weight.detach().numpy().T
    expected = (w - w.min(1, keepdims=True)) / np.ptp(w, 1, keepdims=True)
    np.testing.assert_allclose(filters.numpy().reshape(7, -1), expected, atol=1e-5)
