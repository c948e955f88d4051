"""The RBM and AIS (nanogen.models.energy.rbm, .ais): the energy, conditionals and free energy
against brute-force enumeration, the CD gradient against the exact likelihood gradient, AIS
against the exact partition function, exact resume of PCD's chains, and bad input."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import get_model_spec
from nanogen.models.energy.ais import (default_temperatures, estimate_log_partition,
                                       summarise_log_weights)
from nanogen.models.energy.rbm import RBM, BernoulliRBM, CDTraining
from nanogen.training import load_checkpoint, train


def make_rbm(num_visible, num_hidden, seed, scale=1.0):
    """An RBM with N(0, scale^2) weights and biases, in float64 for exact comparisons."""
    rng = np.random.default_rng(seed)
    rbm = BernoulliRBM(num_visible, num_hidden)
    for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias):
        p.data = rng.normal(0.0, scale, p.shape)
    return rbm


def numpy_parameters(rbm):
    return tuple(p.detach().numpy().astype(np.float64)
                 for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))


def all_states(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def joint_table(rbm):
    """p(v, h) for every (v, h), by eq. (1) directly: shape (2^D, 2^H)."""
    W, b, c = numpy_parameters(rbm)
    V, H = all_states(W.shape[0]), all_states(W.shape[1])
    minus_energy = (V @ b)[:, None] + (H @ c)[None, :] + V @ W @ H.T
    p = np.exp(minus_energy - minus_energy.max())
    return V, H, p / p.sum(), minus_energy


small_sizes = st.tuples(st.integers(1, 5), st.integers(1, 4))


# -- eqs. (1)-(4) against enumeration --------------------------------------------------------------
@given(sizes=small_sizes, seed=st.integers(0, 10**6))
def test_conditionals_are_the_joints_conditionals(sizes, seed):
    rbm = make_rbm(*sizes, seed)
    V, H, p, _ = joint_table(rbm)
    p_h_given_v = p / p.sum(1, keepdims=True)              # rows: v
    p_v_given_h = p / p.sum(0, keepdims=True)              # columns: h
    expected_hidden = p_h_given_v @ H                      # P(h_j = 1 | v) for every v
    expected_visible = p_v_given_h.T @ V                   # P(v_i = 1 | h) for every h
    got_hidden = rbm.hidden_logits(ng.tensor(V)).sigmoid().detach().numpy()
    got_visible = rbm.visible_logits(ng.tensor(H)).sigmoid().detach().numpy()
    np.testing.assert_allclose(got_hidden, expected_hidden, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got_visible, expected_visible, rtol=1e-9, atol=1e-12)


@given(sizes=small_sizes, seed=st.integers(0, 10**6))
def test_energy_free_energy_and_exact_log_z_against_enumeration(sizes, seed):
    rbm = make_rbm(*sizes, seed)
    V, H, _, minus_energy = joint_table(rbm)
    pairs_v, pairs_h = np.repeat(V, len(H), 0), np.tile(H, (len(V), 1))
    energy = rbm.energy(ng.tensor(pairs_v), ng.tensor(pairs_h)).detach().numpy()
    np.testing.assert_allclose(-energy, minus_energy.reshape(-1), rtol=1e-10, atol=1e-10)
    log_sum_h = np.log(np.exp(minus_energy).sum(1))        # F(v) = -log sum_h exp(-E)
    np.testing.assert_allclose(-rbm.free_energy(ng.tensor(V)).detach().numpy(), log_sum_h,
                               rtol=1e-10, atol=1e-10)
    log_z = np.log(np.exp(minus_energy).sum())
    assert rbm.exact_log_partition() == pytest.approx(log_z, rel=1e-12, abs=1e-10)


def test_exact_log_partition_refuses_two_layers_too_large_to_enumerate():
    with pytest.raises(ValueError, match="2\\^21 states.*use AIS"):
        make_rbm(22, 21, 0).exact_log_partition()


# -- the CD gradient ----------------------------------------------------------------------------------
def exact_log_likelihood_gradient(rbm, data):
    """d/dW of the mean log p(v) over ``data``, eq. (5) with the model's expectation summed over
    every visible state."""
    W, b, c = numpy_parameters(rbm)
    V = all_states(W.shape[0])
    free = -(V @ b) - np.logaddexp(0, V @ W + c).sum(1)
    p_v = np.exp(-free - (-free).max())
    p_v /= p_v.sum()
    sigma = lambda a: 1 / (1 + np.exp(-a))                   # noqa: E731
    positive = data.T @ sigma(data @ W + c) / len(data)
    negative = (V * p_v[:, None]).T @ sigma(V @ W + c)
    return positive - negative


def cd_gradient_estimate(rbm, data, k, copies):
    """Minus the gradient of eq. (6) with CD-k negatives from ``copies`` chains per example,
    and the Monte Carlo standard error of each entry."""
    v = ng.tensor(np.repeat(data, copies, 0))
    with ng.no_grad():
        negative, _ = rbm.gibbs(v, k)
    # the mean over chains of each chain's own contribution, so its spread gives the error
    W, b, c = numpy_parameters(rbm)
    neg = negative.numpy()
    per_chain = neg[:, :, None] * (1 / (1 + np.exp(-(neg @ W + c))))[:, None, :]
    rbm.weight.grad = None
    rbm.contrastive_loss(v, negative).backward()
    return -rbm.weight.grad.numpy(), per_chain.std(0) / math.sqrt(len(neg))


def test_cd_k_approaches_the_exact_gradient_as_the_chains_grow_long_and_cd_1_does_not():
    ng.manual_seed(0)
    rbm = make_rbm(5, 3, seed=4, scale=2.0)                 # strong couplings: slow mixing
    data = all_states(5)[[3, 12, 25, 30]]
    exact = exact_log_likelihood_gradient(rbm, data)
    long_chains, error = cd_gradient_estimate(rbm, data, k=200, copies=3000)
    assert np.all(np.abs(long_chains - exact) <= 5 * error + 1e-9)
    one_step, error_1 = cd_gradient_estimate(rbm, data, k=1, copies=3000)
    assert np.max(np.abs(one_step - exact) / (error_1 + 1e-12)) > 10    # CD-1 is biased


@given(seed=st.integers(0, 10**6), n=st.integers(1, 6))
def test_contrastive_loss_gradient_is_the_difference_of_statistics(seed, n):
    """Eq. (5)/(6): -dL/dW = <v p(h|v)^T>_data - <v p(h|v)^T>_negatives, and likewise b, c."""
    rbm = make_rbm(4, 3, seed)
    rng = np.random.default_rng(seed + 1)
    pos, neg = (rng.integers(0, 2, (n, 4)).astype(np.float64) for _ in range(2))
    rbm.contrastive_loss(ng.tensor(pos), ng.tensor(neg)).backward()
    W, b, c = numpy_parameters(rbm)
    hp, hn = (1 / (1 + np.exp(-(x @ W + c))) for x in (pos, neg))
    np.testing.assert_allclose(-rbm.weight.grad.numpy(), pos.T @ hp / n - neg.T @ hn / n,
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(-rbm.visible_bias.grad.numpy(), (pos - neg).mean(0),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(-rbm.hidden_bias.grad.numpy(), (hp - hn).mean(0),
                               rtol=1e-10, atol=1e-12)


# -- AIS ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_visible, num_hidden, seed", [(12, 8, 0), (8, 12, 1), (15, 5, 2)])
def test_ais_agrees_with_the_exact_log_partition_function(num_visible, num_hidden, seed):
    ng.manual_seed(seed)
    rbm = make_rbm(num_visible, num_hidden, seed + 10, scale=0.5)
    base = ng.tensor(np.random.default_rng(seed).normal(0, 1, num_visible))   # base rates
    estimate = estimate_log_partition(rbm.annealing_path(base), runs=200, temperatures=2000)
    exact = rbm.exact_log_partition()
    assert abs(estimate.log_z - exact) <= 4 * estimate.stderr + 1e-3
    assert 0 < estimate.stderr < 0.05


def test_ais_for_a_model_equal_to_its_base_has_weights_of_exactly_one():
    """A model equal to its base (W = 0, c = 0, b = b_A): every weight is 1 whatever the path,
    so log Z = log Z_A + H log 2 with zero spread."""
    rbm = make_rbm(6, 4, 0)
    rbm.weight.data = np.zeros((6, 4))
    rbm.hidden_bias.data = np.zeros(4)
    estimate = estimate_log_partition(rbm.annealing_path(rbm.visible_bias), runs=7,
                                      temperatures=4)
    assert estimate.log_z == pytest.approx(rbm.exact_log_partition(), abs=1e-12)
    assert estimate.stderr == 0 and estimate.log_z_low == pytest.approx(estimate.log_z)


def test_summary_of_log_weights_against_direct_formulas():
    log_w = np.log(np.array([1.0, 2.0, 3.0, 6.0])) + 500.0      # would overflow exp() directly
    s = summarise_log_weights(log_w, log_z_initial=10.0, temperatures=5)
    w = np.array([1.0, 2.0, 3.0, 6.0])
    assert s.log_z == pytest.approx(10.0 + 500.0 + math.log(w.mean()))
    sigma = w.std() / 2
    assert s.stderr == pytest.approx(sigma / w.mean())
    assert s.log_z_high == pytest.approx(510.0 + math.log(w.mean() + 3 * sigma))
    assert s.log_z_low == pytest.approx(510.0 + math.log(w.mean() - 3 * sigma))
    spread = summarise_log_weights(np.log([1.0, 1.0, 1.0, 100.0]), 0.0, 5)
    assert spread.log_z_low == -math.inf                         # 3 sigma > the mean weight
    assert (s.runs, s.temperatures) == (4, 5)


def test_default_temperatures_follow_the_papers_three_bands():
    betas = default_temperatures()
    assert len(betas) == 14_500 and betas[0] == 0 and betas[-1] == 1
    assert np.all(np.diff(betas) > 0)
    assert [np.sum((betas >= lo) & (betas < hi)) for lo, hi in ((0, .5), (.5, .9), (.9, 1))] \
        == [500, 4000, 9999]
    assert len(default_temperatures(100)) == 100
    assert np.all(np.diff(default_temperatures(4)) > 0)
    with pytest.raises(ValueError, match="at least 4"):
        default_temperatures(3)


# -- the model ----------------------------------------------------------------------------------------
def binary_images(n, seed=0, shape=(1, 4, 4)):
    return (np.random.default_rng(seed).random((n,) + shape) < 0.4).astype(np.float32)


def test_non_binary_data_is_refused_in_one_line():
    model = RBM(image_shape=(1, 4, 4), num_hidden=3)
    optimizers = model.configure_optimizers(0.1)
    with pytest.raises(ValueError, match="pixels must be 0 or 1.*binarize") as info:
        model.training_step((ng.full((2, 1, 4, 4), 0.5), None), optimizers)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="expected images of shape \\(N, 1, 4, 4\\)"):
        model.training_step((ng.zeros(2, 1, 5, 4), None), optimizers)


def test_first_update_sets_the_visible_biases_from_the_data_and_counts_it():
    model = RBM(image_shape=(1, 4, 4), num_hidden=3)
    x = binary_images(8)
    model.training_step((ng.tensor(x), None), model.configure_optimizers(0.0))   # lr 0
    mean = (x.reshape(8, -1).sum(0) + 1) / (8 + 2)
    np.testing.assert_allclose(model.rbm.visible_bias.detach().numpy(), np.log(mean / (1 - mean)),
                               rtol=1e-5)
    assert model.training_state.data_count.item() == 8
    assert model.training_state.updates.item() == 1


def test_momentum_switches_after_the_first_epochs():
    state = CDTraining(16, momentum_switch=2)
    rbm = BernoulliRBM(16, 3)
    opt = state.optimizer(rbm, 0.1, 2e-4)
    momenta = []
    for _ in range(3):
        state.step(rbm, ng.tensor(binary_images(4).reshape(4, -1)), opt)
        momenta.append(opt.param_groups[0]["momentum"])
    assert momenta == [0.5, 0.5, 0.9]
    assert [g["weight_decay"] for g in opt.param_groups] == [2e-4, 0.0]   # none on biases


def run_pcd(out_dir, steps, init_seed=0, resume=False):
    ng.manual_seed(init_seed)
    model = RBM(image_shape=(1, 4, 4), num_hidden=5, persistent=True, num_chains=6, cd_k=2)
    images = binary_images(24, 3)
    loader = DataLoader(TensorDataset(images, np.zeros(24, np.int64)), batch_size=4,
                        shuffle=True, seed=1)
    train(model, loader, steps=steps, out_dir=out_dir, config={"model": "rbm"}, lr=0.1,
          progress=False, checkpoint_every=1, sample_every=1000, resume=resume)
    return model


def test_pcd_continues_its_chains_where_the_last_update_left_them():
    model = RBM(image_shape=(1, 4, 4), num_hidden=5, persistent=True, num_chains=6)
    optimizers = model.configure_optimizers(0.1)
    batch = (ng.tensor(binary_images(4)), None)
    model.training_step(batch, optimizers)
    after_one = model.training_state.chains.numpy().copy()
    ng.manual_seed(5)
    with ng.no_grad():
        expected, _ = model.rbm.gibbs(ng.tensor(after_one), 1)
    ng.manual_seed(5)
    model.training_step(batch, optimizers)
    np.testing.assert_array_equal(model.training_state.chains.numpy(), expected.numpy())


def test_pcd_chains_persist_and_resume_exactly(tmp_path):
    straight = run_pcd(tmp_path / "a", 8)
    run_pcd(tmp_path / "b", 3)
    broken = run_pcd(tmp_path / "b", 8, init_seed=123, resume=True)
    for key, value in straight.state_dict().items():
        assert np.array_equal(value.numpy(), broken.state_dict()[key].numpy()), key
    chains = straight.training_state.chains.numpy()
    assert set(np.unique(chains)) <= {0.0, 1.0} and chains.any()
    assert load_checkpoint(tmp_path / "b")["step"] == 8


def test_evaluate_reports_ais_and_exact_nll_that_agree(tmp_path):
    ng.manual_seed(0)
    model = RBM(image_shape=(1, 4, 4), num_hidden=6, ais_runs=100, ais_temperatures=1000)
    x = binary_images(32, 5)
    opt = model.configure_optimizers(0.1)
    for i in range(0, 32, 8):
        model.training_step((ng.tensor(x[i:i + 8]), None), opt)
    metrics = model.evaluate([(ng.tensor(x[:10]), None), (ng.tensor(x[10:]), None)])
    free = model.rbm.free_energy(ng.tensor(x.reshape(32, -1))).detach().numpy().mean()
    assert metrics["num_examples"] == 32
    assert metrics["mean_free_energy"] == pytest.approx(free, rel=1e-5)
    assert metrics["nll_nats_exact"] == pytest.approx(free + model.rbm.exact_log_partition(),
                                                      rel=1e-5)
    assert abs(metrics["nll_nats"] - metrics["nll_nats_exact"]) <= 4 * metrics["log_z_stderr"] \
        + 1e-3
    assert metrics["bits_per_dim"] == pytest.approx(metrics["nll_nats"] / (16 * math.log(2)))


def test_samples_and_filters_have_image_shapes_and_range():
    spec = get_model_spec("rbm")
    model = spec.build(image_shape=(1, 4, 4), num_classes=10,
                       **{**spec.kwargs, "num_hidden": 7, "sample_steps": 3})
    ng.manual_seed(0)
    images = model.sample(5)
    assert images.shape == (5, 1, 4, 4)
    values = images.numpy()
    assert values.min() >= 0 and values.max() <= 1 and not np.isin(values, [0, 1]).all()
    filters, nrow = model.figures(ng.tensor(binary_images(2)))["filters"]
    assert filters.shape == (7, 1, 4, 4) and nrow == 10
    f = filters.numpy().reshape(7, -1)
    np.testing.assert_allclose(f.min(1), 0, atol=1e-6)
    np.testing.assert_allclose(f.max(1), 1, atol=1e-5)
