"""Diffusion, completed: the schedules at every T, respacing, the three parameterisations, the
weightings (P2, the true VLB weight), Improved DDPM's learned variance and hybrid loss,
importance-sampled timesteps, random Fourier time features, classifier-free guidance and the
bound's standard error."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
from nanogen import nn
from nanogen.models.diffusion import DDPM, GuidedDDPM, NoiseSchedule, UNet
from nanogen.models.diffusion.ddpm import discretized_gaussian_log_likelihood
from nanogen.models.diffusion.objectives import (interpolated_log_variance, p2_weight,
                                                 prediction_target, snr, split_prediction,
                                                 vlb_epsilon_weight)
from nanogen.models.diffusion.timestep_sampling import ImportanceSampler
from nanogen.models.registry import MODELS
from nanogen.testing import gradcheck
from .strategies import examples

SHAPE = (1, 2, 2)


def eight_bit(n, shape=SHAPE, seed=0, dtype=ng.float64):
    levels = np.random.default_rng(seed).integers(0, 256, (n, *shape))
    return ng.tensor(levels * (2.0 / 255.0) - 1.0, dtype=dtype)


class Affine(nn.Module):
    """A small learnable network: out = w * x_t + c_t per output channel (enough to have
    gradients for every channel), `channels` outputs from 1 input channel."""

    def __init__(self, timesteps, channels=1):
        super().__init__()
        self.scale = nn.Parameter(ng.tensor(np.linspace(0.3, 0.7, channels).reshape(1, -1, 1, 1)))
        self.bias = nn.Parameter(ng.tensor(np.linspace(-0.2, 0.2, channels).reshape(1, -1, 1, 1)))
        self.per_step = nn.Parameter(ng.tensor(np.linspace(-0.5, 0.5, timesteps + 1)))

    def forward(self, x_t, t):
        return self.scale * x_t + self.bias + self.per_step[t].reshape(-1, 1, 1, 1)


class Oracle(nn.Module):
    """For data that is always the image c: outputs the exact target of `prediction`."""

    def __init__(self, schedule, centre, prediction):
        super().__init__()
        self.schedule, self.centre, self.prediction = schedule, centre, prediction

    def forward(self, x_t, t):
        ab = self.schedule.alpha_bar[t.numpy()].reshape(-1, 1, 1, 1)
        a, b = np.sqrt(ab), np.sqrt(1 - ab)
        eps = (x_t.numpy() - a * self.centre) / b
        x0 = np.broadcast_to(self.centre, x_t.shape)
        return ng.tensor(prediction_target(self.prediction, x0, eps, a, b), dtype=x_t.dtype)


def model(timesteps=20, channels=1, **kwargs):
    return DDPM(image_shape=SHAPE, timesteps=timesteps,
                network=Affine(timesteps, channels).double(), **kwargs)


# ---------------------------------------------------------------- schedules
@given(T=st.integers(1, 4000), name=st.sampled_from(["linear", "cosine"]))
@examples(factor=1)
def test_every_schedule_ends_in_noise(T, name):
    s = NoiseSchedule.named(name, T)
    assert s.alpha_bar[-1] < 1.01e-3                   # x_T is (nearly) N(0, I) for every T
    assert np.all((s.betas[1:] > 0) & (s.betas[1:] < 1))
    assert np.all(np.diff(s.alpha_bar) < 0)


def test_linear_schedule_scales_with_T():
    for T in (100, 1000, 4000):
        betas = NoiseSchedule.named("linear", T).betas[1:]
        assert betas[0] == pytest.approx(1e-4 * 1000 / T)
        assert betas[-1] == pytest.approx(0.02 * 1000 / T)
    # the total noise is the same: sum(beta) ~ 10.05 whatever T (log abar_T ~ -10)
    logs = [math.log(NoiseSchedule.named("linear", T).alpha_bar[-1]) for T in (200, 1000, 4000)]
    assert max(logs) - min(logs) < 0.5 and all(-10.5 < v < -9.5 for v in logs)


@given(T=st.integers(2, 300), data=st.data())
@examples(factor=1)
def test_respaced_schedule_reproduces_alpha_bar_at_the_kept_steps(T, data):
    kept = np.array(sorted(data.draw(st.sets(st.integers(1, T), min_size=1, max_size=8))))
    original = NoiseSchedule.named("cosine", T)
    respaced = original.respaced(kept)
    np.testing.assert_allclose(respaced.alpha_bar[1:], original.alpha_bar[kept], rtol=1e-12)
    full = np.concatenate([[0], kept])
    k = np.arange(1, len(full))
    for mine, theirs in zip(respaced.posterior(k, k - 1), original.posterior(full[1:], full[:-1])):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-15)


def test_respaced_refuses_bad_steps():
    s = NoiseSchedule.named("linear", 10)
    for bad in ([3, 3], [5, 2], [11], [1.5]):
        with pytest.raises(ValueError, match="respaced"):
            s.respaced(np.array(bad))


# ---------------------------------------------------------------- parameterisations
@given(ab=st.floats(1e-4, 1 - 1e-4), seed=st.integers(0, 2 ** 16))
@examples(factor=1)
def test_each_parameterisation_recovers_x0_and_noise(ab, seed):
    rng = np.random.default_rng(seed)
    x0, eps = rng.uniform(-1, 1, 6), rng.standard_normal(6)
    a, b = math.sqrt(ab), math.sqrt(1 - ab)
    x_t = a * x0 + b * eps
    for prediction in ("epsilon", "x0", "v"):
        target = prediction_target(prediction, x0, eps, a, b)
        got_x0, got_eps = split_prediction(prediction, target, x_t, a, b)
        np.testing.assert_allclose(got_x0, x0, atol=1e-9 / a)
        np.testing.assert_allclose(got_eps, eps, atol=1e-9 / b)


@given(ab=st.floats(1e-3, 1 - 1e-3), seed=st.integers(0, 2 ** 16))
@examples(factor=1)
def test_the_three_errors_are_proportional(ab, seed):
    """||eps - eps_hat||^2 = SNR ||x0 - x0_hat||^2 = abar ||v - v_hat||^2 (objectives eq. 4)."""
    rng = np.random.default_rng(seed)
    x0, eps, wrong = rng.uniform(-1, 1, 5), rng.standard_normal(5), rng.standard_normal(5)
    a, b = math.sqrt(ab), math.sqrt(1 - ab)
    x_t = a * x0 + b * eps
    errors = {}
    for prediction in ("epsilon", "x0", "v"):
        own = np.sum((prediction_target(prediction, x0, eps, a, b) - wrong) ** 2)
        _, eps_hat = split_prediction(prediction, wrong, x_t, a, b)
        errors[prediction] = (own, np.sum((eps - eps_hat) ** 2))
    for prediction, factor in (("epsilon", 1.0), ("x0", snr(ab)), ("v", ab)):
        own, eps_error = errors[prediction]
        assert eps_error == pytest.approx(factor * own, rel=1e-9)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_v_and_x0_networks_give_the_same_noise_as_the_epsilon_network(schedule):
    centre = np.array([[[0.3, -0.6], [0.9, -0.1]]])
    T = 50
    table = NoiseSchedule.named(schedule, T)
    models = {p: DDPM(image_shape=SHAPE, timesteps=T, schedule=schedule,
                      network=Oracle(table, centre, p), prediction=p)
              for p in ("epsilon", "x0", "v")}
    ng.manual_seed(3)
    t = np.array([1, 7, 25, 49, 50])
    x_t = models["epsilon"].q_sample(ng.tensor(np.broadcast_to(centre, (5, *SHAPE)).copy()), t)
    noise = {p: m.predict_noise(x_t, t).numpy() for p, m in models.items()}
    np.testing.assert_allclose(noise["x0"], noise["epsilon"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(noise["v"], noise["epsilon"], rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- weightings
def test_p2_with_gamma_zero_is_l_simple():
    x = eight_bit(6)
    losses, grads = [], []
    for kwargs in ({"weighting": "simple"}, {"weighting": "p2", "p2_gamma": 0.0, "p2_k": 3.0}):
        m = model(**kwargs)
        ng.manual_seed(11)
        loss, _ = m.loss(x)
        loss.backward()
        losses.append(float(loss.item()))
        grads.append(m.network.per_step.grad.numpy().copy())
    assert losses[0] == losses[1]
    np.testing.assert_array_equal(grads[0], grads[1])


def test_p2_weight_follows_its_formula_in_the_loss():
    m, x = model(weighting="p2", p2_k=1.0, p2_gamma=0.5), eight_bit(4)
    plain = model()
    t, noise = np.array([1, 5, 12, 20]), ng.randn(4, *SHAPE, dtype=ng.float64)
    weighted = m.loss_terms(x, t, noise).detach().numpy()
    simple = plain.loss_terms(x, t, noise).detach().numpy()
    ab = m.schedule.alpha_bar[t]
    np.testing.assert_allclose(weighted, simple / np.sqrt(1 + ab / (1 - ab)), rtol=1e-12)
    assert p2_weight(ab, 1.0, 0.0) == pytest.approx(np.ones(4))


@pytest.mark.parametrize("reverse_variance", ["beta", "posterior"])
def test_the_vlb_term_is_the_lambda_weighted_noise_error(reverse_variance):
    """For t >= 2 with a fixed variance, L_{t-1} = lambda_t ||eps - eps_hat||^2 + (its value at
    the exact noise), lambda_t = beta^2 / (2 sigma^2 alpha (1 - abar)) (objectives eq. 6)."""
    m = model(reverse_variance=reverse_variance)
    x0 = eight_bit(5)
    t = np.array([2, 3, 9, 15, 20])
    noise = ng.randn(5, *SHAPE, dtype=ng.float64)
    a, b = m._signal_and_noise_scales(t, x0)
    x_t = a * x0 + b * noise
    wrong = ng.randn(5, *SHAPE, dtype=ng.float64)
    dims_ln2 = 4 * math.log(2.0)
    term = m.bound_term(x0, x_t, t, wrong).numpy() * dims_ln2
    exact = m.bound_term(x0, x_t, t, noise).numpy() * dims_ln2
    s = m.schedule
    variance = s.betas[t] if reverse_variance == "beta" else s.posterior_variance[t]
    weight = vlb_epsilon_weight(s.betas[t], s.alpha_bar[t], variance)
    error = ((noise - wrong) ** 2).numpy().sum(axis=(1, 2, 3))
    np.testing.assert_allclose(term - exact, weight * error, rtol=1e-9)
    if reverse_variance == "posterior":
        np.testing.assert_allclose(exact, 0.0, atol=1e-12)   # the same Gaussian: KL = 0


def test_the_vlb_term_at_t1_is_the_decoder_likelihood():
    m = model(timesteps=10)
    x0, output = eight_bit(3), ng.randn(3, *SHAPE, dtype=ng.float64)
    t = np.ones(3, dtype=np.int64)
    x_t = m.q_sample(x0, t)
    mean, var = m._posterior_between(
        split_prediction("epsilon", output, x_t, *m._signal_and_noise_scales(t, x_t))[0],
        x_t, t, t - 1)[0], m._decoder_variance()
    expected = -discretized_gaussian_log_likelihood(
        x0, mean, ng.tensor(np.full((3, 1, 1, 1), var))).numpy().sum(axis=(1, 2, 3))
    np.testing.assert_allclose(m.bound_term(x0, x_t, t, output).numpy() * 4 * math.log(2),
                               expected, rtol=1e-10)


def test_vlb_weighting_trains_T_times_the_bound_terms():
    m, x = model(weighting="vlb"), eight_bit(4)
    t, noise = np.array([1, 2, 10, 20]), ng.randn(4, *SHAPE, dtype=ng.float64)
    a, b = m._signal_and_noise_scales(t, x)
    output, _ = m.network_output(a * x + b * noise, t)
    np.testing.assert_allclose(m.loss_terms(x, t, noise).detach().numpy(),
                               20 * m.bound_term(x, a * x + b * noise, t, output).detach().numpy(),
                               rtol=1e-12)


def test_bound_term_gradients():
    m = model(channels=2, learn_variance=True)
    x0 = eight_bit(3)
    t = np.array([1, 4, 20])
    x_t = m.q_sample(x0, t)
    output = ng.randn(3, *SHAPE, dtype=ng.float64, requires_grad=True)
    variance = ng.tensor(np.random.default_rng(0).uniform(-0.9, 0.9, (3, *SHAPE)),
                         requires_grad=True)
    assert gradcheck(lambda o, v: m.bound_term(x0, x_t, t, o, v), [output, variance])


# ---------------------------------------------------------------- Improved DDPM
@pytest.mark.parametrize("t", [1, 2, 7, 20])
def test_learned_variance_interpolates_between_beta_and_beta_tilde(t):
    m = model(channels=2, learn_variance=True)
    s = m.schedule
    n = np.array([t])
    for u, expected in ((1.0, s.betas[t]),
                        (-1.0, s.posterior_variance[t] if t > 1 else m._decoder_variance())):
        var = m._reverse_variance(n, n - 1, ng.tensor(np.full((1, *SHAPE), u)),
                                  ng.zeros(1, *SHAPE, dtype=ng.float64)).numpy()
        np.testing.assert_allclose(var, expected, rtol=1e-12)
    half = interpolated_log_variance(0.0, math.log(4.0), math.log(1.0))
    assert math.exp(half) == pytest.approx(2.0)             # the geometric mean at f = 1/2


def test_the_hybrid_loss_trains_the_variance_only_through_the_vlb_term():
    """L_simple + lambda L_vlb(sg[mu], Sigma): the prediction channel's gradient is L_simple's
    alone, the variance channel's comes from L_vlb alone."""
    x = eight_bit(4)
    grads = {}
    for weight in (0.0, 0.5):
        m = model(channels=2, learn_variance=True, vlb_weight=weight)
        ng.manual_seed(5)
        loss, _ = m.loss(x)
        loss.backward()
        grads[weight] = m.network.scale.grad.numpy().ravel().copy()
    assert grads[0.0][0] == pytest.approx(grads[0.5][0], rel=1e-12)       # the mean: unchanged
    assert grads[0.0][1] == 0.0 and grads[0.5][1] != 0.0                  # the variance


def test_improved_ddpm_is_registered_with_the_papers_choices():
    spec = MODELS["improved-ddpm"]
    assert spec.kwargs["learn_variance"] is True and spec.kwargs["schedule"] == "cosine"
    m = spec.build(image_shape=(1, 8, 8), channels=4, channel_mults=(1, 2), num_res_blocks=1,
                   groups=4, timesteps=10, **{k: v for k, v in spec.kwargs.items()
                                              if k in ("learn_variance", "schedule")})
    assert m.network.head[-1].weight.shape[0] == 2                        # eps and u
    assert m.vlb_weight == 0.001 and m.weighting == "simple"


# ---------------------------------------------------------------- importance sampling
def test_importance_sampler_is_uniform_until_every_step_has_its_history():
    sampler = ImportanceSampler(4, history=2)
    sampler.update(np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(sampler.probabilities(), 0.25)
    sampler.update(np.array([1, 2, 3, 4, 4]), np.array([1.0, 2.0, 3.0, 4.0, 4.0]))
    rms = np.array([1.0, 2.0, 3.0, 4.0])
    expected = 0.999 * rms / rms.sum() + 0.001 / 4
    np.testing.assert_allclose(sampler.probabilities(), expected)
    sampler.update(np.array([4, 4]), np.array([0.0, 0.0]))        # the old values roll out
    assert sampler.probabilities()[3] == pytest.approx(0.001 / 4)


def test_importance_sampler_draws_from_p_with_weights_one_over_T_p():
    sampler = ImportanceSampler(3, history=1)
    sampler.update(np.array([1, 2, 3]), np.array([1.0, 3.0, 6.0]))
    p = sampler.probabilities()
    ng.manual_seed(0)
    t, w = sampler.sample(30000)
    frequencies = np.bincount(t, minlength=4)[1:] / 30000
    assert np.all(np.abs(frequencies - p) < 4 * np.sqrt(p * (1 - p) / 30000))
    np.testing.assert_allclose(w, 1.0 / (3 * p[t - 1]))
    # unbiased: E_p[w_t L_t] = mean_t L_t for any L
    losses = np.array([5.0, -1.0, 2.0])
    assert np.sum(p * (1 / (3 * p)) * losses) == pytest.approx(losses.mean())


def test_importance_sampler_history_is_in_the_checkpoint():
    first = model(timestep_sampling="importance", timesteps=5)
    x = eight_bit(8)
    for _ in range(12):
        first.loss(x)
    assert int(first.timestep_sampler.loss_counts.numpy().min()) == 10
    second = model(timestep_sampling="importance", timesteps=5)
    second.load_state_dict(first.state_dict())
    np.testing.assert_array_equal(second.timestep_sampler.probabilities(),
                                  first.timestep_sampler.probabilities())
    draws = []
    for m in (first, second):
        ng.manual_seed(4)
        draws.append(m.timestep_sampler.sample(20))
    np.testing.assert_array_equal(draws[0][0], draws[1][0])


# ---------------------------------------------------------------- time features
def test_random_fourier_features_are_kept_with_the_weights():
    ng.manual_seed(0)
    a = UNet(channels=16, channel_mults=(1,), num_res_blocks=1, time_features="fourier",
             timesteps=100)
    frequencies = a.time_features.frequencies.numpy()
    assert frequencies.shape == (8,) and "time_features.frequencies" in a.state_dict()
    assert 4 < frequencies.std() < 40                          # drawn from N(0, 16^2)
    ng.manual_seed(1)
    b = UNet(channels=16, channel_mults=(1,), num_res_blocks=1, time_features="fourier",
             timesteps=100)
    assert not np.allclose(b.time_features.frequencies.numpy(), frequencies)
    b.load_state_dict(a.state_dict())
    t = ng.tensor(np.array([0, 50, 100]))
    np.testing.assert_array_equal(b.time_features(t).numpy(), a.time_features(t).numpy())
    features = a.time_features(t).numpy()
    angles = 2 * np.pi * np.array([0, 50, 100])[:, None] / 100 * frequencies[None]
    np.testing.assert_allclose(features, np.concatenate([np.sin(angles), np.cos(angles)], 1),
                               rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- classifier-free guidance
class RecordingConditional(nn.Module):
    """eps = x_t * (1 + label / 10): each label its own prediction; records the labels."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(ng.ones(1))
        self.seen = []

    def forward(self, x_t, t, y):
        self.seen.append(y.numpy().copy())
        return x_t * self.weight * (1.0 + y.reshape(-1, 1, 1, 1).float() / 10.0)


def guided(**kwargs):
    return GuidedDDPM(image_shape=SHAPE, num_classes=3, timesteps=10,
                      network=RecordingConditional(), **kwargs)


def test_guidance_zero_is_the_conditional_model_and_w_mixes_the_two_predictions():
    m = guided()
    m.network.weight.requires_grad_(False)
    y = ng.tensor(np.array([0, 1, 2, 2]))
    x_t, t = ng.randn(4, *SHAPE), np.array([3, 3, 7, 10])
    conditional = m.predict(x_t, t, y)[1].numpy()
    unconditional = m.predict(x_t, t, None)[1].numpy()
    np.testing.assert_allclose(unconditional, x_t.numpy() * 1.3, rtol=1e-6)  # null label 3
    for w in (0.0, 2.5):
        m._sampling_guidance = w
        guided_eps = m.predict(x_t, t, y)[1].numpy()
        np.testing.assert_allclose(guided_eps, (1 + w) * conditional - w * unconditional,
                                   rtol=1e-5, atol=1e-6)
    m._sampling_guidance = None
    for sampler in ("ancestral", "ddim"):
        samples = []
        for w in (0.0, None):
            ng.manual_seed(9)
            if w is None:        # the plain conditional chain, no guidance machinery
                with ng.no_grad():
                    x_T = ng.randn(4, *SHAPE, dtype=ng.float32)
                    x0, _ = m.reverse_chain(x_T, sampler, 5, y=y)
                samples.append(np.clip((x0.numpy() + 1) / 2, 0, 1))
            else:
                samples.append(m.sample(4, y, sampler=sampler, steps=5, guidance=w).numpy())
        np.testing.assert_array_equal(samples[0], samples[1])


def test_labels_are_dropped_with_p_uncond():
    m = guided(p_uncond=0.3)
    x, y = eight_bit(2000, dtype=ng.float32), ng.tensor(np.arange(2000) % 3)
    ng.manual_seed(0)
    m.loss(x, y)
    seen = m.network.seen[-1]
    dropped = seen == 3
    assert abs(dropped.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 2000)
    np.testing.assert_array_equal(seen[~dropped], (np.arange(2000) % 3)[~dropped])


def test_guided_model_refuses_bad_input():
    m = guided()
    with pytest.raises(ValueError, match="class-conditional"):
        m.loss(eight_bit(2, dtype=ng.float32))
    with pytest.raises(ValueError, match="guidance"):
        m.sample(2, guidance=-1.0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        m.sample(2, ng.tensor(np.array([0, 3])))
    with pytest.raises(ValueError, match="p_uncond"):
        guided(p_uncond=1.0)


# ---------------------------------------------------------------- the bound's error bar
def test_the_bound_reports_the_standard_error_of_its_mean():
    m = model(timesteps=10)
    x = eight_bit(12)
    batches = [(x[:5], None), (x[5:], None)]
    ng.manual_seed(2)
    metrics = m.evaluate(batches, bound_timesteps=3)
    ng.manual_seed(2)
    per_image = np.concatenate([m.variational_bound(b, 3).bits_per_dim.numpy()
                                for b, _ in batches])
    assert metrics["bits_per_dim"] == pytest.approx(per_image.mean(), rel=1e-9)
    assert metrics["bits_per_dim_stderr"] == pytest.approx(per_image.std(ddof=1) / math.sqrt(12),
                                                           rel=1e-9)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, message", [
    ({"prediction": "score"}, "unknown prediction"),
    ({"weighting": "snr"}, "unknown weighting"),
    ({"weighting": "p2", "p2_k": 0.0}, "p2_k > 0"),
    ({"timestep_sampling": "stratified"}, "unknown timestep_sampling"),
    ({"time_features": "learned", "channels": 8}, "unknown time_features"),
    ({"vlb_weight": -1.0}, "vlb_weight"),
])
def test_bad_objective_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DDPM(image_shape=(1, 8, 8), channel_mults=(1, 2), **kwargs)


def test_a_learned_variance_needs_twice_the_channels():
    m = DDPM(image_shape=SHAPE, timesteps=5, network=Affine(5, 1).double(), learn_variance=True)
    with pytest.raises(ValueError, match="expected 2 channels"):
        m.loss(eight_bit(2))
