"""GANs: the adversarial losses and their gradients, the alternating update (k discriminator
steps, one generator step, each leaving the other player alone), DCGAN's architecture, latent
interpolation (lerp, slerp), the mode-coverage metric, training on ring8, the registry and the
error messages.  Small networks; the MNIST-sized ones only run a step or two."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
from nanogen import nn
from nanogen.data import DataLoader, load_dataset
from nanogen.data.toy import mode_centres, mode_std, ring_of_gaussians
from nanogen.metrics.modes import mixture_from_labelled_points, mode_coverage, toy_mode_coverage
from nanogen.models import ImageShapeError, get_model_spec
from nanogen.models.gans import DCGAN, GAN
from nanogen.models.gans.losses import (ADVERSARIAL_LOSSES, adversarial_loss,
                                        discriminator_loss, minimax_generator_loss,
                                        non_saturating_generator_loss)
from nanogen.models.latent import interpolation_grid, lerp, slerp
from nanogen.training import train

from .strategies import examples, float64_arrays


def point_gan(seed=0, **kwargs):
    ng.manual_seed(seed)
    return GAN(image_shape=(2,), num_classes=8, **{"latent_dim": 4, "hidden": (32, 32),
                                                   **kwargs})


def tiny_dcgan(seed=0, **kwargs):
    ng.manual_seed(seed)
    return DCGAN(image_shape=(1, 8, 8), latent_dim=6, channels=(4, 8), **kwargs)


def ring_points(n, seed=0):
    return ng.tensor(ring_of_gaussians(n, np.random.default_rng(seed))[0])


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------- the losses
logit_vectors = float64_arrays((5,), min_value=-6.0, max_value=6.0)


@given(real=logit_vectors, fake=logit_vectors)
def test_losses_match_their_definitions_in_probabilities(real, fake):
    d_real, d_fake = sigmoid(real), sigmoid(fake)
    r, f = ng.tensor(real), ng.tensor(fake)
    # -V = -E log D(x) - E log(1 - D(G(z)))
    assert discriminator_loss(r, f).item() == pytest.approx(
        -np.mean(np.log(d_real)) - np.mean(np.log(1 - d_fake)), rel=1e-10)
    assert minimax_generator_loss(f).item() == pytest.approx(np.mean(np.log(1 - d_fake)),
                                                             rel=1e-10)
    assert non_saturating_generator_loss(f).item() == pytest.approx(-np.mean(np.log(d_fake)),
                                                                    rel=1e-10)


def test_losses_at_hand_picked_logits():
    zero = ng.tensor([0.0, 0.0], dtype=ng.float64)            # D = 1/2 everywhere: log 4
    assert discriminator_loss(zero, zero).item() == pytest.approx(math.log(4.0), rel=1e-12)
    assert minimax_generator_loss(zero).item() == pytest.approx(-math.log(2.0), rel=1e-12)
    assert non_saturating_generator_loss(zero).item() == pytest.approx(math.log(2.0), rel=1e-12)
    # logits beyond exp's float32 range stay finite:
    # log(1 - sigma(-200)) ~ 0 and -log sigma(-200) = 200
    far = ng.tensor([-200.0])
    assert minimax_generator_loss(far).item() == pytest.approx(0.0, abs=1e-6)
    assert non_saturating_generator_loss(far).item() == pytest.approx(200.0, rel=1e-6)


def logit_gradient(loss_fn, logits):
    x = ng.tensor(logits, requires_grad=True)
    loss_fn(x).backward()
    return x.grad.numpy()


@given(fake=logit_vectors)
def test_generator_gradients_are_minus_d_and_minus_one_minus_d(fake):
    n = len(fake)
    np.testing.assert_allclose(logit_gradient(minimax_generator_loss, fake),
                               -sigmoid(fake) / n, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(logit_gradient(non_saturating_generator_loss, fake),
                               -(1 - sigmoid(fake)) / n, rtol=1e-9, atol=1e-15)


def test_minimax_gradient_vanishes_where_d_rejects_the_fakes():
    rejected = np.full(4, -12.0)                            # D(G(z)) = sigma(-12) ~ 6e-6
    minimax = np.abs(logit_gradient(minimax_generator_loss, rejected)).max()
    non_saturating = np.abs(logit_gradient(non_saturating_generator_loss, rejected)).min()
    assert minimax < 1e-5 / 4
    assert non_saturating > 0.99 / 4
    # both push D(G(z)) up: the gradients have the same sign everywhere
    mixed = np.array([-3.0, 0.0, 2.5])
    assert (np.sign(logit_gradient(minimax_generator_loss, mixed))
            == np.sign(logit_gradient(non_saturating_generator_loss, mixed))).all()


def test_discriminator_gradient_per_logit():
    real, fake = np.array([0.3, -1.2]), np.array([2.0, -0.5, 0.1])
    r = ng.tensor(real, requires_grad=True)
    f = ng.tensor(fake, requires_grad=True)
    discriminator_loss(r, f).backward()
    np.testing.assert_allclose(r.grad.numpy(), (sigmoid(real) - 1) / len(real), rtol=1e-9)
    np.testing.assert_allclose(f.grad.numpy(), sigmoid(fake) / len(fake), rtol=1e-9)


def test_loss_table_and_its_errors():
    assert adversarial_loss("minimax").generator is minimax_generator_loss
    assert adversarial_loss("non-saturating").generator is non_saturating_generator_loss
    assert {ADVERSARIAL_LOSSES[name].discriminator for name in ("minimax", "non-saturating")
            } == {discriminator_loss}
    assert [name for name, pair in ADVERSARIAL_LOSSES.items() if pair.log_odds] == [
        "minimax", "non-saturating"]
    with pytest.raises(ValueError, match="unknown adversarial loss 'wasserstien'.*minimax"):
        adversarial_loss("wasserstien")
    with pytest.raises(ValueError, match=r"shape \(N,\), got \(3, 1\)"):
        non_saturating_generator_loss(ng.zeros(3, 1))


# ---------------------------------------------------------------- the alternating update
class Spy:
    """Wraps an optimizer; before each of its steps records copies of both players."""

    def __init__(self, optimizer, model):
        self.optimizer, self.model, self.seen = optimizer, model, []

    def __getattr__(self, name):
        return getattr(self.optimizer, name)

    def step(self):
        self.seen.append({"G": snapshot(self.model.generator, grads=True),
                          "D": snapshot(self.model.discriminator, grads=True)})
        self.optimizer.step()
        self.seen[-1]["D_after"] = snapshot(self.model.discriminator)
        self.seen[-1]["G_after"] = snapshot(self.model.generator)


def snapshot(module, grads=False):
    return [(p.detach().numpy().copy(),
             None if not grads or p.grad is None else p.grad.numpy().copy())
            for p in module.parameters()]


def assert_same(a, b):
    for (wa, ga), (wb, gb) in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
        assert (ga is None) == (gb is None)
        if ga is not None:
            np.testing.assert_array_equal(ga, gb)


def weights(snap):
    return [(w, None) for w, _ in snap]


@pytest.mark.parametrize("k", [1, 3])
def test_training_step_updates_d_k_times_then_g_once_each_leaving_the_other_alone(k):
    model = point_gan(k=k)
    optimizers = model.configure_optimizers(1e-2)
    spies = {name: Spy(opt, model) for name, opt in optimizers.items()}
    g_before = snapshot(model.generator)
    logs = model.training_step((ring_points(5 * k), None), spies)

    assert list(logs) == ["loss_d", "loss_g", "d_real", "d_fake"]
    assert all(isinstance(v, float) and math.isfinite(v) for v in logs.values())
    assert 0 < logs["d_real"] < 1 and 0 < logs["d_fake"] < 1
    # Adam's step counts: k for every parameter of D, one for every parameter of G
    d_state, g_state = optimizers["discriminator"].state, optimizers["generator"].state
    assert [d_state[p]["step"] for p in model.discriminator.parameters()] == \
        [k] * len(list(model.discriminator.parameters()))
    assert [g_state[p]["step"] for p in model.generator.parameters()] == \
        [1] * len(list(model.generator.parameters()))
    d_steps, (g_step,) = spies["discriminator"].seen, spies["generator"].seen
    assert len(d_steps) == k
    for seen in d_steps:                        # the fakes came from a G without gradients
        assert_same(weights(seen["G"]), weights(g_before))
        assert all(grad is None for _, grad in seen["G"])
    # the generator's backward went through D without touching D's weights or gradients
    assert_same(g_step["D"], [(w, g) for (w, _), (_, g) in
                              zip(d_steps[-1]["D_after"], d_steps[-1]["D"])])
    assert_same(weights(g_step["D"]), d_steps[-1]["D_after"])
    assert all(p.requires_grad for p in model.discriminator.parameters())   # thawed again
    changed = [not np.array_equal(a, b) for (a, _), (b, _) in zip(g_step["G_after"], g_before)]
    assert all(changed)


def test_each_discriminator_update_sees_its_own_minibatch():
    model = point_gan(k=2)
    seen = []
    model.discriminator.register_forward_hook(lambda m, inputs, out: seen.append(
        inputs[0].detach().numpy().copy()))
    x = ring_points(8)
    model.training_step((x, None), model.configure_optimizers(1e-3))
    real_inputs = seen[0::2][:2]                 # each D update: real, then fake; then G's fake
    np.testing.assert_array_equal(real_inputs[0], x.numpy()[:4])
    np.testing.assert_array_equal(real_inputs[1], x.numpy()[4:])
    assert len(seen) == 2 * 2 + 1


def test_training_through_the_shared_loop_joins_k_batches(tmp_path):
    model = point_gan(k=2)
    data = load_dataset("ring8", "train")
    loader = DataLoader(data, batch_size=16, shuffle=True, drop_last=True)
    result = train(model, loader, steps=3, out_dir=tmp_path / "run", config={"model": "gan"},
                   lr=1e-3, progress=False, log_every=1)
    assert result.step == 3 and set(result.logs) == {"loss_d", "loss_g", "d_real", "d_fake"}
    assert (tmp_path / "run" / "loss.png").is_file()
    assert (tmp_path / "run" / "samples.png").is_file()


def mean_distance_to_nearest_mode(model, dataset="ring8"):
    """The mean distance of 1,000 samples (a fixed random stream) to their nearest mode."""
    centres = mode_centres(dataset)
    with ng.random.fork_rng(1):
        x = model.sample(1000).numpy()
    return np.linalg.norm(x[:, None] - centres[None], axis=2).min(1).mean()


def test_a_few_hundred_steps_move_the_samples_onto_the_ring():
    """G starts near the origin, about 2 away from every mode; 300 updates bring its samples
    to less than 60% of that distance from the nearest mode, on average (0.41, 0.53 and 0.38 of
    it for seeds 0, 1, 2)."""
    model = point_gan(latent_dim=8, hidden=(64, 64))
    loader = DataLoader(load_dataset("ring8", "train"), batch_size=64, shuffle=True,
                        drop_last=True)                  # 312 batches: one epoch is enough
    before = mean_distance_to_nearest_mode(model)
    optimizers = model.configure_optimizers(2e-3)
    batches = iter(loader)
    for _ in range(300):
        model.training_step(next(batches), optimizers)
    after = mean_distance_to_nearest_mode(model)
    assert before > 1.5
    assert after < 0.6 * before


# ---------------------------------------------------------------- sampling, figures, evaluation
def test_image_gans_sample_in_the_unit_interval_and_points_as_they_are():
    model = tiny_dcgan()
    model.eval()
    images = model.sample(5)
    assert images.shape == (5, 1, 8, 8)
    assert 0.0 <= images.numpy().min() and images.numpy().max() <= 1.0
    assert model.data_transform == "symmetric"
    points = point_gan()
    assert points.sample(7).shape == (7, 2) and points.data_transform == "unit"
    mlp = GAN(image_shape=(1, 4, 4), latent_dim=3, hidden=(8,))
    assert mlp.sample(2).shape == (2, 1, 4, 4) and mlp.data_transform == "symmetric"


def test_figures_join_the_same_endpoints_by_lines_and_by_great_circles():
    ng.manual_seed(0)
    model = GAN(image_shape=(1, 4, 4), latent_dim=3, hidden=(16,))
    model.eval()
    figures = model.figures()
    assert set(figures) == {"interpolation_linear", "interpolation_slerp"}
    (linear, nrow), (spherical, nrow_s) = figures["interpolation_linear"], \
        figures["interpolation_slerp"]
    assert nrow == nrow_s == 10 and linear.shape == spherical.shape == (80, 1, 4, 4)
    lin, sph = linear.numpy().reshape(8, 10, -1), spherical.numpy().reshape(8, 10, -1)
    assert 0.0 <= min(lin.min(), sph.min()) and max(lin.max(), sph.max()) <= 1.0
    np.testing.assert_allclose(lin[:, [0, -1]], sph[:, [0, -1]], atol=1e-6)   # endpoints
    step = np.abs(lin[:, 0] - lin[:, -1]).max()
    assert np.abs(lin[:, 1:-1] - sph[:, 1:-1]).max() > 0.05 * step           # the paths differ
    assert point_gan().figures() == {}


def test_evaluate_scores_mode_coverage_against_the_labelled_test_points():
    model = point_gan()
    test = load_dataset("ring8", "test")
    loader = DataLoader(test, batch_size=1000)
    # a "generator" that returns data itself scores like the data: all modes, ~98.9% within 3σ
    model.sample = lambda n: ng.tensor(ring_of_gaussians(n, np.random.default_rng(3))[0])
    result = model.evaluate(loader)
    assert result["modes_covered"] == 8 and result["num_modes"] == 8
    assert result["num_samples"] == model.eval_num_samples == 5000
    assert result["high_quality_share"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    assert tiny_dcgan().evaluate(loader) == {}
    swiss = DataLoader(load_dataset("swissroll", "test"), batch_size=1000)
    assert model.evaluate(swiss) == {}                     # one label: no modes to count


# ---------------------------------------------------------------- DCGAN's architecture
@pytest.mark.parametrize("image_shape, channels", [((1, 28, 28), (64, 128)),
                                                   ((3, 16, 16), (4, 8, 16))])
def test_dcgan_shapes_ranges_and_guidelines(image_shape, channels):
    ng.manual_seed(0)
    model = DCGAN(image_shape=image_shape, latent_dim=10, channels=channels)
    z = ng.randn(3, 10)
    with ng.no_grad():
        x = model.generate(z)
        logits = model.discriminate(x)
    assert x.shape == (3, *image_shape) and np.abs(x.numpy()).max() <= 1.0
    assert logits.shape == (3,)

    g, d = list(model.generator), list(model.discriminator)
    pooling = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    assert not any(isinstance(m, pooling) for m in model.modules())
    # G: transposed convs, the upsampling ones strided, BN + ReLU after each but the last, tanh
    g_convs = [i for i, m in enumerate(g) if isinstance(m, nn.ConvTranspose2d)]
    assert len(g_convs) == len(channels) + 1
    assert all(g[i].stride == (2, 2) for i in g_convs[1:])
    for i in g_convs[:-1]:
        assert isinstance(g[i + 1], nn.BatchNorm2d) and isinstance(g[i + 2], nn.ReLU)
    assert isinstance(g[g_convs[-1] + 1], nn.Tanh) and g[-1] is g[g_convs[-1] + 1]
    assert not any(isinstance(m, nn.Linear) for m in g)          # no fully connected layers
    # D: strided convs with LeakyReLU; BN after all but the first; one linear map to the logit
    d_convs = [i for i, m in enumerate(d) if isinstance(m, nn.Conv2d)]
    assert len(d_convs) == len(channels) and all(d[i].stride == (2, 2) for i in d_convs)
    assert isinstance(d[d_convs[0] + 1], nn.LeakyReLU)
    for i in d_convs[1:]:
        assert isinstance(d[i + 1], nn.BatchNorm2d) and isinstance(d[i + 2], nn.LeakyReLU)
    assert all(m.negative_slope == 0.2 for m in d if isinstance(m, nn.LeakyReLU))
    assert [type(m) for m in d if isinstance(m, nn.Linear)] == [nn.Linear]
    assert not any(isinstance(m, nn.LeakyReLU) for m in g)          # plain ReLU in G
    assert not any(isinstance(m, (nn.ReLU, nn.Tanh)) for m in d)


def test_dcgan_weights_start_from_radford_init_and_adam_uses_beta1_one_half():
    model = DCGAN()
    conv_weights = np.concatenate([m.weight.detach().numpy().ravel() for m in model.modules()
                                   if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert conv_weights.std() == pytest.approx(0.02, rel=0.05)
    assert abs(conv_weights.mean()) < 1e-3
    bn_scales = np.concatenate([m.weight.detach().numpy() for m in model.modules()
                                if isinstance(m, nn.BatchNorm2d)])
    assert abs(bn_scales.mean() - 1.0) < 0.01 and bn_scales.std() < 0.03
    for opt in model.configure_optimizers(2e-4).values():
        assert opt.param_groups[0]["betas"] == (0.5, 0.999)
        assert opt.param_groups[0]["lr"] == 2e-4


def test_a_dcgan_training_step_runs_on_mnist_sized_images():
    ng.manual_seed(0)
    model = DCGAN(channels=(8, 16), latent_dim=12)
    x = ng.rand(4, 1, 28, 28) * 2 - 1
    logs = model.training_step((x, None), model.configure_optimizers(2e-4))
    assert all(math.isfinite(v) for v in logs.values())


# ---------------------------------------------------------------- interpolation
latent_pairs = st.integers(2, 6).flatmap(lambda d: st.tuples(
    float64_arrays((d,), min_value=-3, max_value=3), float64_arrays((d,), min_value=-3,
                                                                    max_value=3)))
fractions = st.floats(0.0, 1.0)


def angle(a, b):
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return math.acos(min(1.0, max(-1.0, cos)))


def far_from_parallel(z0, z1):
    return np.linalg.norm(z0) > 0.3 and np.linalg.norm(z1) > 0.3 and \
        0.05 < angle(z0, z1) < math.pi - 0.05


# pairs that span a plane: slerp's great circle through them is well defined
spanning_pairs = latent_pairs.filter(lambda pair: far_from_parallel(*pair))


@examples(1.5)
@given(pair=latent_pairs)
def test_slerp_and_lerp_start_and_end_at_the_endpoints(pair):
    z0, z1 = pair
    for interpolate in (lerp, slerp):
        np.testing.assert_allclose(interpolate(z0, z1, 0.0), z0, atol=1e-9)
        np.testing.assert_allclose(interpolate(z0, z1, 1.0), z1, atol=1e-9)
    np.testing.assert_allclose(lerp(z0, z1, 0.5), (z0 + z1) / 2, atol=1e-12)


@examples(1.5)
@given(pair=spanning_pairs, t=fractions)
def test_slerp_between_equal_norms_keeps_the_norm_and_turns_at_a_constant_rate(pair, t):
    z0, z1 = pair
    z1 = z1 * (np.linalg.norm(z0) / np.linalg.norm(z1))            # equal norms
    zt = slerp(z0, z1, t)
    assert np.linalg.norm(zt) == pytest.approx(np.linalg.norm(z0), rel=1e-9)
    omega = angle(z0, z1)
    assert angle(z0, zt) == pytest.approx(t * omega, abs=1e-6)       # linear in t
    assert angle(zt, z1) == pytest.approx((1 - t) * omega, abs=1e-6)


@examples(1.5)
@given(pair=spanning_pairs, t=fractions)
def test_slerp_stays_in_the_plane_of_its_endpoints_whatever_their_norms(pair, t):
    z0, z1 = pair
    zt = slerp(z0, z1, t)
    basis, _ = np.linalg.qr(np.stack([z0, z1], 1))
    np.testing.assert_allclose(basis @ (basis.T @ zt), zt, atol=1e-9)


def test_slerp_of_parallel_or_zero_endpoints_falls_back_to_lerp():
    z0 = np.array([1.0, 2.0, -1.0])
    for z1 in (3 * z0, -z0, np.zeros(3)):
        np.testing.assert_allclose(slerp(z0, z1, 0.3), lerp(z0, z1, 0.3), atol=1e-12)
        assert np.isfinite(slerp(z1, z0, 0.7)).all()


def test_interpolation_grid_rows_run_from_start_to_end():
    rng = np.random.default_rng(0)
    start, end = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    for method, interpolate in (("linear", lerp), ("slerp", slerp)):
        grid = interpolation_grid(start, end, 4, method).reshape(3, 4, 5)
        np.testing.assert_allclose(grid[:, 0], start, atol=1e-12)
        np.testing.assert_allclose(grid[:, -1], end, atol=1e-12)
        np.testing.assert_allclose(grid[1, 2], interpolate(start[1], end[1], 2 / 3), atol=1e-12)
    as_tensors = interpolation_grid(ng.tensor(start), ng.tensor(end), 3, "slerp")
    assert as_tensors.shape == (9, 5)
    assert interpolation_grid(start.astype(np.float32), end.astype(np.float32), 2).dtype \
        == np.float32


def test_interpolation_errors():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="unknown method 'cubic'"):
        interpolation_grid(z, z, 5, "cubic")
    with pytest.raises(ValueError, match="steps must be an int >= 2"):
        interpolation_grid(z, z, 1)
    with pytest.raises(ValueError, match=r"differ in shape, \(2, 3\) and \(2, 4\)"):
        slerp(z, np.zeros((2, 4)), 0.5)
    with pytest.raises(ValueError, match=r"t of shape \(3,\) does not broadcast"):
        lerp(z, z, np.zeros(3))
    with pytest.raises(ValueError, match=r"endpoints of shape \(R, d\), got \(3,\)"):
        interpolation_grid(np.zeros(3), np.zeros(3), 4)


# ---------------------------------------------------------------- the mode metric
CENTRES, STD = mode_centres("ring8"), mode_std("ring8")


def around(modes, per_mode, spread, seed=0):
    """per_mode points around each listed mode, at distance ``spread * STD`` in random
    directions."""
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0, 2 * math.pi, (len(modes), per_mode))
    offsets = np.stack([np.cos(angles), np.sin(angles)], -1) * spread * STD
    return (CENTRES[list(modes)][:, None, :] + offsets).reshape(-1, 2)


def test_mode_coverage_of_constructed_point_sets():
    everywhere = mode_coverage(around(range(8), 10, 2.9), CENTRES, STD)
    assert everywhere == {"modes_covered": 8, "num_modes": 8, "high_quality_share": 1.0,
                          "num_samples": 80}
    missing_two = mode_coverage(around(range(6), 10, 1.0), CENTRES, STD)
    assert missing_two["modes_covered"] == 6 and missing_two["high_quality_share"] == 1.0
    # 3.1 sigma away counts as low quality, and a mode with only such samples is not covered
    outliers = np.concatenate([around(range(4), 10, 0.5), around(range(4, 8), 10, 3.1),
                               [[0.0, 0.0], [np.nan, 1.0]]])
    result = mode_coverage(outliers, CENTRES, STD)
    assert result["modes_covered"] == 4 and result["num_samples"] == 82
    assert result["high_quality_share"] == pytest.approx(40 / 82)
    assert mode_coverage(outliers, CENTRES, STD, threshold=3.2)["modes_covered"] == 8
    # a mode needs a quarter of its fair share N / K: 2 of 80 samples is not enough, 3 is
    collapsed = np.concatenate([around([0], 37, 1.0), around([1], 38, 1.0), around([2], 2, 1.0),
                                around([3], 3, 1.0)])
    assert mode_coverage(collapsed, CENTRES, STD)["modes_covered"] == 3
    assert mode_coverage(collapsed, CENTRES, STD, min_share=0.0)["modes_covered"] == 4


def test_toy_mode_coverage_of_the_data_itself():
    for name in ("ring8", "grid25"):
        data = load_dataset(name, "test")
        result = toy_mode_coverage(data.points, name)
        assert result["modes_covered"] == result["num_modes"] == len(mode_centres(name))
        assert result["high_quality_share"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)
        assert toy_mode_coverage(ng.tensor(data.points), name) == result


def test_mixture_estimated_from_labelled_points():
    data = load_dataset("grid25", "test")
    centres, std = mixture_from_labelled_points(data.points, data.labels)
    np.testing.assert_allclose(centres, mode_centres("grid25"), atol=0.02)
    assert std == pytest.approx(mode_std("grid25"), rel=0.05)
    with pytest.raises(ValueError, match=r"labels \[1\] have no points"):
        mixture_from_labelled_points(np.zeros((2, 2)), np.array([0, 2]))


@pytest.mark.parametrize("samples, centres, std, kwargs, match", [
    (np.zeros((4, 3)), CENTRES, STD, {}, r"samples must be \(N, 2\).*got shape \(4, 3\)"),
    (np.zeros(4), CENTRES, STD, {}, r"samples must be \(N, 2\)"),
    (np.zeros((0, 2)), CENTRES, STD, {}, "no samples"),
    (np.zeros((4, 2)), CENTRES[0], STD, {}, r"centres must be \(K, D\)"),
    (np.zeros((4, 2)), CENTRES, 0.0, {}, "std must be a positive number"),
    (np.zeros((4, 2)), CENTRES, STD, {"threshold": -1}, "threshold must be a positive"),
    (np.zeros((4, 2)), CENTRES, STD, {"min_share": 1.5}, r"min_share must be in \[0, 1\]"),
])
def test_mode_coverage_errors(samples, centres, std, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mode_coverage(samples, centres, std, **kwargs)


def test_toy_mode_coverage_needs_a_mixture():
    with pytest.raises(Exception, match="'swissroll' is not a Gaussian mixture"):
        toy_mode_coverage(np.zeros((3, 2)), "swissroll")


# ---------------------------------------------------------------- registry and errors
@pytest.mark.parametrize("name, cls, loss", [("gan", GAN, "non-saturating"),
                                             ("gan-minimax", GAN, "minimax"),
                                             ("dcgan", DCGAN, "non-saturating")])
def test_registered_models(name, cls, loss):
    spec = get_model_spec(name)
    assert spec.dataset == "mnist5k" and spec.lr == 2e-4
    model = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
    assert isinstance(model, cls) and model.loss_name == loss
    assert model.judged_by_samples and model.makes_images


def test_gan_builds_the_2d_model_for_point_sets():
    spec = get_model_spec("gan")
    model = spec.build(image_shape=(2,), num_classes=8, **spec.kwargs)
    assert model.sample_shape == (2,) and model.data_transform == "unit"
    assert model.sample(3).shape == (3, 2)


def test_k_defaults_per_data_kind_and_an_explicit_k_wins():
    """Two D updates per G update on points (ring8: all 8 modes with each seed tried, one in
    three with k = 1), one on images."""
    assert GAN(image_shape=(2,)).batches_per_step == 2
    assert GAN(image_shape=(1, 28, 28)).batches_per_step == 1
    assert GAN(image_shape=(2,), k=1).batches_per_step == 1
    assert GAN(image_shape=(1, 28, 28), k=3).batches_per_step == 3


def test_the_image_generator_normalises_its_hidden_layers_and_the_point_generator_does_not():
    def norms(model):
        return [m for m in model.generator.modules() if isinstance(m, nn.BatchNorm1d)]
    assert [m.num_features for m in norms(GAN(image_shape=(1, 28, 28)))] == [256, 512, 1024]
    assert norms(GAN(image_shape=(2,))) == []
    assert len(norms(GAN(image_shape=(2,), batch_norm=True))) == 3
    assert norms(GAN(image_shape=(1, 28, 28), batch_norm=False)) == []


def test_clear_errors_for_bad_arguments_and_shapes():
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k .* must be a positive int"):
            point_gan(k=k)
    with pytest.raises(ValueError, match="unknown adversarial loss 'hinj'"):
        point_gan(loss="hinj")
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\) for images or \(D,\)"):
        GAN(image_shape=(28, 28))
    with pytest.raises(ValueError, match="hidden must be a non-empty sequence"):
        point_gan(hidden=())
    with pytest.raises(ValueError, match="DCGAN models images"):
        DCGAN(image_shape=(2,))
    with pytest.raises(ImageShapeError, match="DCGAN with 2 stride-2 levels needs H and W "
                       r"divisible by 4, got 30x30 \(32x32 would do\)"):
        DCGAN(image_shape=(1, 30, 30))
    model = point_gan(k=2)
    optimizers = model.configure_optimizers(1e-3)
    with pytest.raises(ValueError, match="a batch of 5 does not split into k = 2"):
        model.training_step((ring_points(5), None), optimizers)
    with pytest.raises(ValueError, match=r"expected points of shape \(N, 2\), got \(4, 3\)"):
        model.training_step((ng.zeros(4, 3), None), optimizers)
    with pytest.raises(KeyError, match="no 'generator' optimizer"):
        model.training_step((ring_points(4), None), {"discriminator": optimizers["discriminator"]})
    with pytest.raises(ValueError, match=r"expected codes of shape \(N, 4\), got \(3, 5\)"):
        model.generate(ng.zeros(3, 5))
    with pytest.raises(ValueError, match="n must be a positive int"):
        model.sample(0)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 8, 8\)"):
        tiny_dcgan().discriminate(ng.zeros(2, 1, 28, 28))
