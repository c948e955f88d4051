"""The deep belief network (nanogen.models.energy.dbn): greedy stages, the variational bound
against exact enumeration on tiny networks, sampling, exact resume across a stage switch."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
from nanogen.data import DataLoader, TensorDataset
from nanogen.models.energy.dbn import DBN
from nanogen.models.energy.rbm import bernoulli_entropy
from nanogen.training import train


def states(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def tiny_dbn(seed, sizes=(3, 4), image_shape=(1, 2, 2), scale=1.0):
    """A DBN with N(0, scale^2) float64 weights and biases (no training)."""
    ng.manual_seed(seed)
    model = DBN(image_shape=image_shape, hidden_sizes=list(sizes)).double()
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data = rng.normal(0.0, scale, p.shape)
    return model


def params(rbm):
    return tuple(p.detach().numpy() for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def bernoulli_log(p, x):
    return (x * np.log(p) + (1 - x) * np.log(1 - p)).sum(-1)


def exact_log_p_and_bound(model, v):
    """For a two-RBM DBN: log p(v) = log sum_h1 p(v | h1) p_top(h1), and eq. (2) with its
    expectation summed over every h1, both by enumeration."""
    (W1, b1, c1), (W2, b2, c2) = params(model.layers[0]), params(model.layers[1])
    H1 = states(W1.shape[1])
    minus_free_top = H1 @ b2 + np.logaddexp(0, H1 @ W2 + c2).sum(1)            # -F_2(h1)
    log_z = model.layers[1].exact_log_partition()
    log_p_h1 = minus_free_top - log_z
    log_p_v_given_h1 = bernoulli_log(sigmoid(H1 @ W1.T + b1)[None], v[:, None])   # (N, 2^H1)
    log_p = np.log(np.exp(log_p_v_given_h1 + log_p_h1[None]).sum(1))
    q = sigmoid(v @ W1 + c1)                                                   # (N, H1)
    q_h1 = np.exp(bernoulli_log(q[:, None], H1[None]))                         # Q(h1 | v)
    entropy = -(q * np.log(q) + (1 - q) * np.log(1 - q)).sum(1)
    bound = (q_h1 * (log_p_v_given_h1 + log_p_h1[None])).sum(1) + entropy
    return log_p, bound, log_z


@given(seed=st.integers(0, 10**6))
def test_the_bound_holds_below_the_exact_log_likelihood(seed):
    model = tiny_dbn(seed)
    v = states(4)
    log_p, bound, _ = exact_log_p_and_bound(model, v)
    assert np.all(bound <= log_p + 1e-10)


def test_the_sampled_bound_estimates_the_enumerated_one():
    model = tiny_dbn(7)
    v = states(4)[[1, 6, 9, 15]]
    _, bound, log_z = exact_log_p_and_bound(model, v)
    ng.manual_seed(0)
    draws = model.unnormalised_bound(ng.tensor(np.tile(v, (4000, 1)))).detach().numpy()
    draws = draws.reshape(4000, len(v))                          # draw k of example i: [k, i]
    error = draws.std(0) / math.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(0) - log_z - bound) <= 5 * error)
    assert np.all(error > 0)                                   # h1 really is sampled


def test_with_one_layer_the_bound_is_the_rbms_exact_log_likelihood():
    model = tiny_dbn(3, sizes=(3,))
    v = ng.tensor(states(4))
    np.testing.assert_allclose(model.unnormalised_bound(v).detach().numpy(),
                               -model.layers[0].free_energy(v).detach().numpy(), rtol=1e-12)


@given(seed=st.integers(0, 10**6))
def test_bernoulli_entropy_against_the_direct_formula(seed):
    q = np.random.default_rng(seed).uniform(0.01, 0.99, (3, 5))
    expected = -(q * np.log(q) + (1 - q) * np.log(1 - q)).sum(1)
    logits = ng.tensor(np.log(q / (1 - q)))
    np.testing.assert_allclose(bernoulli_entropy(logits).numpy(), expected, rtol=1e-10)
    assert bernoulli_entropy(ng.tensor(np.array([[-60.0, 60.0]]))).item() == \
        pytest.approx(0, abs=1e-20)


def binary_images(n, seed=0):
    return (np.random.default_rng(seed).random((n, 1, 2, 2)) < 0.5).astype(np.float32)


def test_greedy_stages_train_one_rbm_at_a_time_on_the_layer_below():
    ng.manual_seed(0)
    model = DBN(image_shape=(1, 2, 2), hidden_sizes=[3, 5], layer_steps=2)
    optimizers = model.configure_optimizers(0.1)
    snapshots, layers = [], []
    for step in range(5):
        layers.append(model.active_layer())
        model.training_step((ng.tensor(binary_images(4, step)), None), optimizers)
        snapshots.append([p.detach().numpy().copy() for p in model.layers[0].parameters()])
    assert layers == [0, 0, 1, 1, 1]                       # the top goes on after its stage
    for later in snapshots[2:]:                            # RBM 1 frozen once RBM 2 trains
        for a, b in zip(snapshots[1], later):
            np.testing.assert_array_equal(a, b)
    top = model.training_states[1]
    assert top.data_count.item() == 12 and top.updates.item() == 3
    # RBM 2 saw samples of h1: binary, of its width
    assert top.data_sum.shape == (3,) and np.all(top.data_sum.numpy() <= 12)


def run(out_dir, steps, init_seed=0, resume=False):
    ng.manual_seed(init_seed)
    model = DBN(image_shape=(1, 2, 2), hidden_sizes=[3, 5], layer_steps=3)
    loader = DataLoader(TensorDataset(binary_images(20, 1), np.zeros(20, np.int64)),
                        batch_size=4, shuffle=True, seed=1)
    train(model, loader, steps=steps, out_dir=out_dir, config={"model": "dbn"}, lr=0.1,
          progress=False, checkpoint_every=1, sample_every=1000, resume=resume)
    return model


def test_resume_across_the_stage_switch_is_exact(tmp_path):
    straight = run(tmp_path / "a", 6)
    run(tmp_path / "b", 2)
    broken = run(tmp_path / "b", 6, init_seed=9, resume=True)
    for key, value in straight.state_dict().items():
        assert np.array_equal(value.numpy(), broken.state_dict()[key].numpy()), key


def test_samples_are_images_of_probabilities():
    model = tiny_dbn(2)
    model.sample_steps = 3
    images = model.sample(6)
    assert images.shape == (6, 1, 2, 2)
    values = images.numpy()
    assert values.min() > 0 and values.max() < 1


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match="hidden_sizes must be a non-empty list"):
        DBN(image_shape=(1, 2, 2), hidden_sizes=[])
    with pytest.raises(ValueError, match="layer_steps must be a positive int"):
        DBN(image_shape=(1, 2, 2), layer_steps=0)
    model = DBN(image_shape=(1, 2, 2), hidden_sizes=[3])
    with pytest.raises(ValueError, match="pixels must be 0 or 1"):
        model.training_step((ng.full((2, 1, 2, 2), 0.3), None), model.configure_optimizers(0.1))
