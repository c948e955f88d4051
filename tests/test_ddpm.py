"""DDPM: the noise schedules, the forward process and its posterior (against Bayes' rule), the
samplers (with oracle noise predictors for data whose exact denoiser is known), the variational
bound and its Monte-Carlo estimate, the U-Net, training, the registry and the error messages."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
from nanogen import nn
from nanogen.models.diffusion import DDPM, NoiseSchedule, UNet
from nanogen.models.diffusion.ddpm import (discretized_gaussian_log_likelihood, gaussian_kl,
                                           timestep_subsequence)
from nanogen.models.diffusion.schedules import cosine_betas, linear_betas
from nanogen.models.registry import MODELS
from .strategies import examples


# ---------------------------------------------------------------- oracle noise predictors
class PointMassDenoiser(nn.Module):
    """The exact noise for data that is always the image c: x_t = sqrt(abar) c + sqrt(1-abar) eps,
    so eps = (x_t - sqrt(abar_t) c) / sqrt(1 - abar_t)."""

    def __init__(self, schedule, centre):
        super().__init__()
        self.schedule, self.centre = schedule, np.asarray(centre)

    def forward(self, x_t, t):
        alpha_bar = self.schedule.alpha_bar[t.numpy()].reshape(-1, 1, 1, 1)
        eps = (x_t.numpy() - np.sqrt(alpha_bar) * self.centre) / np.sqrt(1 - alpha_bar)
        return ng.tensor(eps, dtype=x_t.dtype)


class GaussianDenoiser(nn.Module):
    """E[eps | x_t] for pixels x_0 ~ N(m, s^2) independently: x_t ~ N(sqrt(abar) m, abar s^2 +
    1 - abar) jointly Gaussian with eps, so E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) m) /
    (abar s^2 + 1 - abar)."""

    def __init__(self, schedule, mean, std):
        super().__init__()
        self.schedule, self.mean, self.std = schedule, mean, std

    def forward(self, x_t, t):
        ab = self.schedule.alpha_bar[t.numpy()].reshape(-1, 1, 1, 1)
        eps = (np.sqrt(1 - ab) * (x_t.numpy() - np.sqrt(ab) * self.mean)
               / (ab * self.std ** 2 + 1 - ab))
        return ng.tensor(eps, dtype=x_t.dtype)


class ScaledInput(nn.Module):
    """A fixed, imperfect noise predictor: eps = 0.5 x_t (for bound tests)."""

    def forward(self, x_t, t):
        return 0.5 * x_t


class RecordingNetwork(nn.Module):
    """Predicts zero noise and remembers the timesteps it was asked about."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x_t, t):
        self.seen.append(t.numpy().copy())
        return 0.0 * x_t


def oracle_model(network_cls, shape=(1, 4, 4), timesteps=1000, schedule="linear", **kwargs):
    table = NoiseSchedule.named(schedule, timesteps)
    network_args = kwargs.pop("network_args", ())
    return DDPM(image_shape=shape, timesteps=timesteps, schedule=schedule,
                network=network_cls(table, *network_args), **kwargs)


def eight_bit(n, shape=(1, 4, 4), seed=0):
    """Random 8-bit images scaled to [-1, 1], float64."""
    levels = np.random.default_rng(seed).integers(0, 256, (n, *shape))
    return ng.tensor(levels * (2.0 / 255.0) - 1.0, dtype=ng.float64)


# ---------------------------------------------------------------- schedules
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_schedule_tables_are_valid(name):
    s = NoiseSchedule.named(name, 1000)
    assert s.timesteps == 1000 and len(s.alpha_bar) == 1001
    assert s.betas[0] == 0 and s.alpha_bar[0] == 1
    assert np.all((s.betas[1:] > 0) & (s.betas[1:] < 1))
    assert np.all(np.diff(s.alpha_bar) < 0)                       # strictly decreasing
    np.testing.assert_allclose(s.alpha_bar, np.cumprod(1 - s.betas))
    assert s.alpha_bar[-1] < 1e-4                                 # x_T is nearly pure noise
    assert s.posterior_variance[1] == 0
    assert np.all(s.posterior_variance[2:] < s.betas[2:])         # beta-tilde_t < beta_t


def test_linear_schedule_endpoints():
    betas = linear_betas(1000)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999)


def test_cosine_alpha_bar_follows_the_formula_and_betas_clip_at_0999():
    T, s = 1000, 0.008
    table = NoiseSchedule.named("cosine", T)
    t = np.arange(T)          # the last step is clipped, so compare the others
    f = np.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    np.testing.assert_allclose(table.alpha_bar[:T], f / f[0], rtol=1e-9)
    betas = cosine_betas(T)
    assert betas[-1] == 0.999 and betas.max() == 0.999            # 1 - 0/abar_{T-1} = 1, clipped
    assert np.sum(betas == 0.999) == 1


# ---------------------------------------------------------------- the forward process
def test_q_sample_has_the_closed_form_mean_and_variance():
    model = oracle_model(PointMassDenoiser, network_args=(0.0,))
    x0 = ng.tensor(np.full((20000, 1, 4, 4), 0.7), dtype=ng.float64)
    ng.manual_seed(1)
    for t in (1, 300, 1000):
        x_t = model.q_sample(x0, t).numpy()
        ab = model.schedule.alpha_bar[t]
        se = math.sqrt((1 - ab) / x_t.size)
        assert abs(x_t.mean() - math.sqrt(ab) * 0.7) < 5 * se
        assert x_t.var() == pytest.approx(1 - ab, rel=0.03)


def test_q_sample_agrees_with_iterating_the_single_steps():
    """x_t from t steps of q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t) has the closed
    form's mean sqrt(abar_t) x_0 and variance 1 - abar_t."""
    model = oracle_model(PointMassDenoiser, timesteps=200, schedule="cosine",
                         network_args=(0.0,))
    rng = np.random.default_rng(2)
    x = np.full(40000, -0.4)
    betas = model.schedule.betas
    for t in range(1, 121):
        x = math.sqrt(1 - betas[t]) * x + math.sqrt(betas[t]) * rng.standard_normal(x.size)
    ng.manual_seed(3)
    closed = model.q_sample(ng.tensor(np.full((2500, 1, 4, 4), -0.4)), 120).numpy().ravel()
    ab = model.schedule.alpha_bar[120]
    for values in (x, closed):
        assert abs(values.mean() - math.sqrt(ab) * -0.4) < 5 * math.sqrt((1 - ab) / values.size)
        assert values.var() == pytest.approx(1 - ab, rel=0.03)


def test_q_sample_uses_the_given_noise():
    model = oracle_model(PointMassDenoiser, network_args=(0.0,))
    x0, noise = eight_bit(3), ng.tensor(np.random.default_rng(4).standard_normal((3, 1, 4, 4)))
    t = np.array([0, 10, 1000])
    ab = model.schedule.alpha_bar[t].reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(model.q_sample(x0, t, noise).numpy(),
                               np.sqrt(ab) * x0.numpy() + np.sqrt(1 - ab) * noise.numpy())


# ---------------------------------------------------------------- the posterior q(x_s | x_t, x_0)
def bayes_posterior(alpha_bar, t, s, x0, xt):
    """q(x_s | x_t, x_0) for a scalar by Bayes' rule: prior q(x_s | x_0) = N(sqrt(abar_s) x0,
    1 - abar_s), likelihood q(x_t | x_s) = N(sqrt(r) x_s, 1 - r) with r = abar_t / abar_s; the
    product of the two Gaussian densities in x_s, precision-weighted."""
    r = alpha_bar[t] / alpha_bar[s]
    prior_mean, prior_var = math.sqrt(alpha_bar[s]) * x0, 1 - alpha_bar[s]
    precision = 1 / prior_var + r / (1 - r)
    mean = (prior_mean / prior_var + math.sqrt(r) * xt / (1 - r)) / precision
    return mean, 1 / precision


@examples(1.5)
@given(t=st.integers(2, 1000), x0=st.floats(-1, 1), xt=st.floats(-3, 3),
       schedule=st.sampled_from(["linear", "cosine"]))
def test_posterior_matches_bayes_rule(t, x0, xt, schedule):
    model = oracle_model(PointMassDenoiser, shape=(1, 1, 1), schedule=schedule,
                         network_args=(0.0,))
    mean, var = model.posterior(ng.tensor([[[[x0]]]], dtype=ng.float64),
                                ng.tensor([[[[xt]]]], dtype=ng.float64), t)
    expected_mean, expected_var = bayes_posterior(model.schedule.alpha_bar, t, t - 1, x0, xt)
    assert mean.item() == pytest.approx(expected_mean, rel=1e-9, abs=1e-12)
    assert var.item() == pytest.approx(expected_var, rel=1e-9)
    assert var.item() == pytest.approx(model.schedule.posterior_variance[t], rel=1e-12)


@examples(1.5)
@given(ts=st.integers(1, 999).flatmap(lambda s: st.tuples(st.just(s), st.integers(s + 1, 1000))),
       x0=st.floats(-1, 1), xt=st.floats(-3, 3))
def test_posterior_between_any_two_steps_matches_bayes_rule(ts, x0, xt):
    """Between s >= 1 and t > s (s = 0 conditions on x_0 itself: see the next test)."""
    s, t = ts
    table = NoiseSchedule.named("linear", 1000)
    a, b, v = table.posterior(t, s)
    expected_mean, expected_var = bayes_posterior(table.alpha_bar, t, s, x0, xt)
    assert a * x0 + b * xt == pytest.approx(expected_mean, rel=1e-9, abs=1e-12)
    assert v == pytest.approx(expected_var, rel=1e-9, abs=1e-15)


def test_posterior_down_to_step_0_returns_x0():
    model = oracle_model(PointMassDenoiser, network_args=(0.0,))
    x0, xt = eight_bit(2, seed=5), eight_bit(2, seed=6)
    mean, var = model.posterior(x0, xt, 1)
    np.testing.assert_allclose(mean.numpy(), x0.numpy(), atol=1e-12)
    assert np.all(var.numpy() == 0)
    a, b, v = model.schedule.posterior(np.array([5, 700]), 0)
    np.testing.assert_allclose(a, 1.0) and np.testing.assert_allclose(b, 0.0, atol=1e-15)
    np.testing.assert_allclose(v, 0.0, atol=1e-15)


# ---------------------------------------------------------------- the samplers, with oracles
@pytest.mark.parametrize("sampler, steps", [("ancestral", None), ("ancestral", 50),
                                            ("ddim", 50), ("ddim", 5)])
def test_samplers_recover_a_point_mass(sampler, steps):
    centre = np.linspace(-0.9, 0.9, 16).reshape(1, 4, 4)
    model = oracle_model(PointMassDenoiser, network_args=(centre,))
    ng.manual_seed(7)
    images = model.sample(8, sampler=sampler, steps=steps).numpy()
    np.testing.assert_allclose(images, np.broadcast_to((centre + 1) / 2, images.shape),
                               atol=1e-4)


def gaussian_chain(sampler, steps, reverse_variance="beta", mean=0.2, std=0.3):
    model = oracle_model(GaussianDenoiser, shape=(1, 8, 8), network_args=(mean, std),
                         reverse_variance=reverse_variance, clip_denoised=False)
    ng.manual_seed(8)
    x_T = ng.randn(400, 1, 8, 8, dtype=ng.float64)
    x0, _ = model.reverse_chain(x_T, sampler, steps)
    return model, x_T.numpy(), x0.numpy()


@pytest.mark.parametrize("sampler, steps, reverse_variance", [
    ("ancestral", None, "beta"), ("ancestral", None, "posterior"), ("ddim", 1000, "beta")])
def test_samplers_recover_a_gaussian_data_distribution(sampler, steps, reverse_variance):
    mean, std = 0.2, 0.3
    _, _, x0 = gaussian_chain(sampler, steps, reverse_variance, mean, std)
    values = x0.ravel()                                           # 25,600 draws
    assert abs(values.mean() - mean) < 5 * std / math.sqrt(values.size)
    assert values.std() == pytest.approx(std, rel=0.03)


def test_ddim_with_few_steps_follows_its_linear_map_on_gaussian_data():
    """For x_0 ~ N(0, s^2) the exact denoiser is linear in x_t, so each DDIM step multiplies
    x_t by (sqrt(abar_s abar_t) s^2 + sqrt((1 - abar_s)(1 - abar_t))) / (abar_t s^2 + 1 - abar_t):
    50 steps shrink the samples' spread (the discretisation error of the ODE), 1000 hardly."""
    std = 0.3
    model, x_T, x0 = gaussian_chain("ddim", 50, mean=0.0, std=std)
    ab, factor = model.schedule.alpha_bar, 1.0
    tau = np.arange(0, 1001, 20)
    for s, t in zip(tau[:-1], tau[1:]):
        factor *= ((np.sqrt(ab[s] * ab[t]) * std ** 2 + np.sqrt((1 - ab[s]) * (1 - ab[t])))
                   / (ab[t] * std ** 2 + 1 - ab[t]))
    np.testing.assert_allclose(x0, factor * x_T, rtol=1e-9, atol=1e-12)
    assert 0.85 * std < factor < 0.95 * std


def test_ddim_with_eta_0_is_deterministic_given_x_T():
    model = oracle_model(GaussianDenoiser, network_args=(0.1, 0.4))
    x_T = ng.randn(4, 1, 4, 4)
    runs = []
    for seed in (1, 2):
        ng.manual_seed(seed)
        runs.append(model.reverse_chain(x_T, "ddim", 20)[0].numpy())
        runs.append(model.reverse_chain(x_T, "ddim", 20, eta=1.0)[0].numpy())
    np.testing.assert_array_equal(runs[0], runs[2])             # eta = 0: the same x_0
    assert np.abs(runs[1] - runs[3]).max() > 1e-3               # eta = 1: fresh noise each run


def test_ddim_with_eta_1_is_the_ancestral_sampler_with_posterior_variance():
    model = oracle_model(GaussianDenoiser, network_args=(0.1, 0.4),
                         reverse_variance="posterior")
    x_T = ng.randn(4, 1, 4, 4, dtype=ng.float64)
    ng.manual_seed(9)
    ddim, _ = model.reverse_chain(x_T, "ddim", 25, eta=1.0)
    ng.manual_seed(9)
    ancestral, _ = model.reverse_chain(x_T, "ancestral", 25)
    np.testing.assert_allclose(ddim.numpy(), ancestral.numpy(), atol=1e-10)


def test_reverse_chain_keeps_the_asked_snapshots():
    model = oracle_model(PointMassDenoiser, network_args=(0.5,), timesteps=10)
    x_T = ng.randn(2, 1, 4, 4)
    x0, kept = model.reverse_chain(x_T, "ancestral", keep=(10, 5, 0, 3))
    assert sorted(kept) == [0, 3, 5, 10]
    np.testing.assert_array_equal(kept[10].numpy(), x_T.numpy())
    np.testing.assert_array_equal(kept[0].numpy(), x0.numpy())


def test_timestep_subsequence_is_even_and_ends_at_0_and_T():
    np.testing.assert_array_equal(timestep_subsequence(1000, 4), [0, 250, 500, 750, 1000])
    tau = timestep_subsequence(1000, 999)
    assert tau[0] == 0 and tau[-1] == 1000 and np.all(np.diff(tau) >= 1)
    np.testing.assert_array_equal(timestep_subsequence(7, 7), np.arange(8))


# ---------------------------------------------------------------- the variational bound
@given(mean=st.floats(-2, 2), log_var=st.floats(-8, 2))
def test_kl_of_identical_gaussians_is_zero_and_positive_otherwise(mean, log_var):
    m = ng.tensor(np.full((1, 1, 2, 2), mean))
    v = ng.tensor(np.full((1, 1, 1, 1), math.exp(log_var)))
    assert gaussian_kl(m, v, m, v).item() == pytest.approx(0.0, abs=1e-12)
    other = gaussian_kl(m, v, m + 0.1, v * 2).item()
    # per pixel: (log 2 + 1/2 + 0.01 / (2v) - 1) / 2, four pixels
    expected = 4 * 0.5 * (math.log(2) + (1 + 0.01 / math.exp(log_var)) / 2 - 1)
    assert other == pytest.approx(expected, rel=1e-9)


@given(mean=st.floats(-1.5, 1.5), log_var=st.floats(-12, 1))
def test_discretized_decoder_probabilities_sum_to_one_over_the_256_bins(mean, log_var):
    levels = ng.tensor((np.arange(256) * (2.0 / 255.0) - 1.0).reshape(256, 1, 1, 1))
    log_p = discretized_gaussian_log_likelihood(
        levels, ng.tensor(np.full((256, 1, 1, 1), mean)),
        ng.tensor(np.full((256, 1, 1, 1), math.exp(log_var))))
    assert np.exp(log_p.numpy()).sum() == pytest.approx(1.0, abs=1e-6)


def test_discretized_decoder_matches_the_normal_cdf_on_a_middle_bin():
    from scipy.stats import norm
    x, m, v = 2 * 100 / 255 - 1, 0.1, 0.01
    log_p = discretized_gaussian_log_likelihood(*(ng.tensor([[[[value]]]], dtype=ng.float64)
                                                  for value in (x, m, v))).item()
    expected = norm.cdf(x + 1 / 255, m, 0.1) - norm.cdf(x - 1 / 255, m, 0.1)
    assert log_p == pytest.approx(math.log(expected), rel=1e-9)


def test_monte_carlo_bound_matches_the_full_sum_in_expectation():
    """T = 10: the full sum over t = 2..10 and the stratified estimates from 1 and 3 steps per
    image agree on average (each is an average over x_t ~ q(x_t | x_0) as well)."""
    model = DDPM(image_shape=(1, 2, 2), timesteps=10, schedule="cosine", network=ScaledInput())
    x = eight_bit(1, (1, 2, 2), seed=10)
    copies = ng.tensor(np.repeat(x.numpy(), 4000, 0))
    ng.manual_seed(11)
    results = {}
    for k in (None, 1, 3):
        bound = model.variational_bound(copies, k)
        values = bound.diffusion.numpy()
        results[k] = (values.mean(), values.std() / math.sqrt(values.size))
        np.testing.assert_allclose(bound.total.numpy(), (bound.prior + bound.diffusion
                                                         + bound.decoder).numpy())
    full, full_se = results[None]
    assert full > 1.0                                             # an imperfect denoiser
    for k in (1, 3):
        estimate, se = results[k]
        assert abs(estimate - full) < 5 * math.hypot(se, full_se)
    assert results[3][1] < results[1][1]                          # more strata, less variance


def test_exact_denoiser_with_posterior_variance_has_zero_diffusion_terms():
    """For data at one point the oracle's x0-hat is exact, so p(x_{t-1} | x_t) is the posterior
    and every L_{t-1} vanishes; L_T is the closed-form KL."""
    x = eight_bit(1, seed=12)
    model = oracle_model(PointMassDenoiser, network_args=(x.numpy()[0],),
                         reverse_variance="posterior")
    ng.manual_seed(13)
    bound = model.variational_bound(x)
    assert abs(bound.diffusion.item()) < 1e-6
    ab = model.schedule.alpha_bar[-1]
    expected_prior = 0.5 * np.sum(ab * x.numpy() ** 2 + (1 - ab) - math.log(1 - ab) - 1)
    assert bound.prior.item() == pytest.approx(expected_prior, rel=1e-9)
    assert bound.bits_per_dim.item() == pytest.approx(bound.total.item() / (16 * math.log(2)))


def test_evaluate_reports_bits_per_dim_and_its_parts():
    model = DDPM(image_shape=(1, 2, 2), timesteps=10, network=ScaledInput())
    batches = [(eight_bit(3, (1, 2, 2), seed=s), None) for s in (14, 15)]
    ng.manual_seed(16)
    metrics = model.evaluate(batches, bound_timesteps=4)
    assert metrics["num_examples"] == 6 and metrics["bound_timesteps"] == 4
    parts = sum(metrics[f"{p}_bits_per_dim"] for p in ("prior", "diffusion", "decoder"))
    assert metrics["bits_per_dim"] == pytest.approx(parts)
    assert metrics["bits_per_dim"] > 0
    with pytest.raises(ValueError, match="no examples"):
        model.evaluate([])


# ---------------------------------------------------------------- the U-Net
@pytest.mark.parametrize("side", [28, 32])
def test_unet_keeps_the_image_shape(side):
    ng.manual_seed(17)
    net = UNet(image_channels=3, channels=8, channel_mults=(1, 2, 2), num_res_blocks=1)
    x = ng.randn(2, 3, side, side)
    with ng.no_grad():
        out = net(x, ng.tensor([1, 500]))
    assert out.shape == (2, 3, side, side)
    assert np.all(out.numpy() == 0)                 # zero-initialised last convolution


def test_unet_output_depends_on_the_timestep():
    ng.manual_seed(18)
    net = UNet(channels=8, channel_mults=(1, 2), num_res_blocks=1)
    rng = np.random.default_rng(19)
    for p in net.parameters():                      # leave the zero initialisation behind
        p.data[...] = rng.normal(0, 0.2, p.shape)
    x = ng.randn(1, 1, 8, 8)
    x2 = ng.cat([x, x])
    with ng.no_grad():
        out = net(x2, ng.tensor([3, 700])).numpy()
        same_t = net(x2, ng.tensor([3, 3])).numpy()
    assert np.abs(out[0] - out[1]).max() > 1e-3
    np.testing.assert_allclose(same_t[1], out[0], rtol=1e-5, atol=1e-6)


def test_unet_attention_sits_at_the_lowest_level_and_in_the_middle():
    net = UNet(channels=8, channel_mults=(1, 2, 2), num_res_blocks=2)
    assert [len(level.attention) for level in net.down] == [0, 0, 2]
    assert [len(level.attention) for level in net.up] == [3, 0, 0]   # the lowest level first


def test_unet_rejects_sizes_it_cannot_halve():
    net = UNet(channels=8, channel_mults=(1, 2, 2), num_res_blocks=1)
    with pytest.raises(ValueError, match="30x30 is not divisible by 4"):
        net(ng.randn(1, 1, 30, 30), ng.tensor([1]))
    with pytest.raises(ValueError, match="attention_levels"):
        UNet(channels=8, channel_mults=(1, 2), attention_levels=(2,))
    with pytest.raises(ValueError, match="groups"):
        UNet(channels=12, groups=8)


# ---------------------------------------------------------------- training
def test_loss_draws_t_uniformly_from_1_to_T():
    network = RecordingNetwork()
    model = DDPM(image_shape=(1, 2, 2), timesteps=5, network=network)
    ng.manual_seed(20)
    loss, logs = model.loss(ng.zeros(500, 1, 2, 2))
    seen = np.concatenate(network.seen)
    assert sorted(set(seen.tolist())) == [1, 2, 3, 4, 5]
    assert np.all(np.abs(np.bincount(seen)[1:] - 100) < 40)
    assert loss.item() == pytest.approx(1.0, abs=0.05)            # E||eps - 0||^2 = 1 per pixel


def test_a_few_training_steps_lower_the_loss_of_a_tiny_model():
    ng.manual_seed(21)
    model = DDPM(image_shape=(1, 8, 8), timesteps=100, channels=8, channel_mults=(1, 2),
                 num_res_blocks=1, heads=2)
    x = ng.tensor(np.tile(np.where(np.arange(8) < 4, -1.0, 1.0), (16, 1, 8, 1))
                  .astype(np.float32))                            # half black, half white
    optimizers = model.configure_optimizers(2e-3)

    def held_out_loss():
        ng.manual_seed(22)                                        # the same t and noise
        with ng.no_grad():
            return model.loss(x)[0].item()

    before = held_out_loss()
    for _ in range(30):
        model.training_step((x, None), optimizers)
    after = held_out_loss()
    assert before > 0.9 and after < 0.5 * before


# ---------------------------------------------------------------- model interface and registry
def test_sample_and_figures_are_images_in_the_unit_interval():
    ng.manual_seed(23)
    model = DDPM(image_shape=(1, 8, 8), timesteps=20, channels=8, channel_mults=(1, 2),
                 num_res_blocks=1)
    images = model.sample(3, sampler="ddim", steps=4)
    assert images.shape == (3, 1, 8, 8)
    x = eight_bit(5, (1, 8, 8)).float()
    figures = model.figures(x)
    assert figures["forward_process"][0].shape == (50, 1, 8, 8)
    assert figures["reverse_process"][0].shape == (80, 1, 8, 8)
    for images, nrow in [(images, 0)] + list(figures.values()):
        values = images.numpy()
        assert values.min() >= 0 and values.max() <= 1
    forward = figures["forward_process"][0].numpy().reshape(5, 10, 64)
    np.testing.assert_allclose(forward[:, 0], (x.numpy().reshape(5, 64) + 1) / 2, atol=1e-6)


def test_ddpm_is_registered_with_an_ema():
    spec = MODELS["ddpm"]
    assert spec.ema_decay == 0.999 and 2e-4 <= spec.lr <= 1e-3
    model = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
    assert isinstance(model, DDPM) and model.data_transform == "symmetric"
    assert model.judged_by_samples and model.timesteps == 1000
    assert model.schedule.betas[-1] == pytest.approx(0.02)


@pytest.mark.parametrize("call, message", [
    (lambda m: DDPM(schedule="quadratic"), "unknown beta schedule 'quadratic'"),
    (lambda m: DDPM(timesteps=0), "positive int"),
    (lambda m: DDPM(reverse_variance="learned"), "unknown reverse_variance"),
    (lambda m: m.q_sample(ng.zeros(2, 1, 4, 4), 11), r"t must lie in 0\.\.10"),
    (lambda m: m.posterior(ng.zeros(2, 1, 4, 4), ng.zeros(2, 1, 4, 4), 0), r"lie in 1\.\.10"),
    (lambda m: m.q_sample(ng.zeros(2, 1, 4, 4), np.array([1, 2, 3])), "one timestep per image"),
    (lambda m: m.q_sample(ng.zeros(2, 1, 4, 4), 1.5), "integer timesteps"),
    (lambda m: m.loss(ng.zeros(2, 1, 28, 28)), r"expected images of shape \(N, 1, 4, 4\)"),
    (lambda m: m.sample(2, steps=11), "between 1 and T = 10"),
    (lambda m: m.sample(2, sampler="ddim", steps=0), "between 1 and T = 10"),
    (lambda m: m.sample(2, sampler="euler"), "unknown sampler 'euler'"),
    (lambda m: m.sample(2, eta=0.5), "DDIM sampler only"),
    (lambda m: m.sample(2, y=ng.tensor([1, 2])), "unconditional"),
    (lambda m: m.sample(0), "positive int"),
    (lambda m: m.variational_bound(ng.zeros(2, 1, 4, 4), 10), r"between 1 and T - 1 = 9"),
])
def test_clear_errors(call, message):
    model = oracle_model(PointMassDenoiser, timesteps=10, network_args=(0.0,))
    with pytest.raises(ValueError, match=message):
        call(model)


def test_a_network_of_the_wrong_output_shape_is_named():
    class Wrong(nn.Module):
        def forward(self, x, t):
            return x[:, :, :2]
    model = DDPM(image_shape=(1, 4, 4), timesteps=10, network=Wrong())
    with pytest.raises(ValueError, match=r"network returned shape \(2, 1, 2, 4\)"):
        model.loss(ng.zeros(2, 1, 4, 4))
