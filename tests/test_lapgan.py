"""LAPGAN: the pyramid operators against direct NumPy formulas (d the binomial blur and
decimation, u bilinear and four times d's adjoint), the Laplacian pyramid reconstructing an image
exactly; each level's game played on the real pyramid of the batch (level K on I_K, level k on
(h_k, u(I_{k+1}))) with D_k seeing (l + h, l) and its loss against a direct formula; sampling
coarse to fine with I_k = u(I_{k+1}) + G_k(z_k, u(I_{k+1})); the pyramid figure; exact resume
with every level's optimizers in the checkpoint; the registry (MNIST 28 -> 14 -> 7, CIFAR
32 -> 16 -> 8); one clear error for each bad input.  Tiny networks on 8x8 images."""
import math

import numpy as np
import pytest

import nanogen as ng
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import ImageShapeError, get_model_spec
from nanogen.models.gans.lapgan import (LAPGAN, ResidualGAN, downsample, gaussian_pyramid,
                                        laplacian_pyramid, reconstruct, upsample)
from nanogen.training import train
from nanogen.training.checkpoint import load_checkpoint

TINY = {"latent_dim": 4, "hidden": (16,), "disc_hidden": (16,), "g_channels": (4,),
        "kernel_size": 3, "channels": (4, 8)}


def tiny(seed=0, shape=(1, 8, 8), **kwargs):
    ng.manual_seed(seed)
    return LAPGAN(image_shape=shape, **{**TINY, **kwargs})


def images(shape, seed=0, dtype=np.float32):
    return ng.tensor(np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype))


def softplus(x):
    return np.logaddexp(0.0, x)


# ---------------------------------------------------------------- direct NumPy references
def down_1d(x, axis):
    """eq. (1) along ``axis``: (x_{2i-1} + 3 x_{2i} + 3 x_{2i+1} + x_{2i+2}) / 8, edges repeated."""
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    out = np.zeros(x.shape[:-1] + (n // 2,))
    for i in range(n // 2):
        for offset, weight in zip((-1, 0, 1, 2), (1, 3, 3, 1)):
            out[..., i] += weight / 8 * x[..., min(max(2 * i + offset, 0), n - 1)]
    return np.moveaxis(out, -1, axis)


def up_1d(y, axis):
    """eq. (2'): u_{2i} = 3/4 y_i + 1/4 y_{i-1}, u_{2i+1} = 3/4 y_i + 1/4 y_{i+1}, clamped."""
    y = np.moveaxis(y, axis, -1)
    m = y.shape[-1]
    out = np.zeros(y.shape[:-1] + (2 * m,))
    for i in range(m):
        out[..., 2 * i] = 0.75 * y[..., i] + 0.25 * y[..., max(i - 1, 0)]
        out[..., 2 * i + 1] = 0.75 * y[..., i] + 0.25 * y[..., min(i + 1, m - 1)]
    return np.moveaxis(out, -1, axis)


def down_np(x):
    return down_1d(down_1d(x, 2), 3)


def up_np(y):
    return up_1d(up_1d(y, 2), 3)


# ---------------------------------------------------------------- the operators
def test_downsample_is_the_binomial_blur_then_every_second_pixel():
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 6))
    got = downsample(ng.tensor(x)).numpy()
    assert got.shape == (2, 3, 4, 3)
    np.testing.assert_allclose(got, down_np(x), rtol=1e-12, atol=1e-12)
    # the filter's weights, read off a single bright pixel inside the image
    impulse = np.zeros((1, 1, 8, 8))
    impulse[0, 0, 3, 3] = 1.0
    got = downsample(ng.tensor(impulse)).numpy()[0, 0]
    np.testing.assert_allclose(got[1:3, 1:3], np.outer([3, 1], [3, 1]) / 64)


def test_upsample_is_bilinear_on_half_pixel_centres_with_clamped_edges():
    y = np.random.default_rng(1).normal(size=(2, 3, 4, 5))
    got = upsample(ng.tensor(y)).numpy()
    assert got.shape == (2, 3, 8, 10)
    np.testing.assert_allclose(got, up_np(y), rtol=1e-12, atol=1e-12)


def test_upsample_is_four_times_the_adjoint_of_downsample():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2, 2, 8, 6)), rng.normal(size=(2, 2, 4, 3))
    left = float((downsample(ng.tensor(x)).numpy() * y).sum())
    right = float((x * upsample(ng.tensor(y)).numpy()).sum())
    assert left == pytest.approx(right / 4, rel=1e-12)            # <d x, y> = <x, u y> / 4
    # and the backward of u is 4 d: the gradient of <u(y), g> with respect to y
    g = rng.normal(size=(2, 2, 8, 6))
    t = ng.tensor(y, requires_grad=True)
    (upsample(t) * ng.tensor(g)).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), 4 * down_np(g), rtol=1e-12, atol=1e-12)


def test_constants_survive_both_ways_u_keeps_the_mean_and_d_of_u_is_a_small_blur():
    c = np.full((1, 2, 8, 8), 0.3)
    np.testing.assert_allclose(downsample(ng.tensor(c)).numpy(), 0.3)
    np.testing.assert_allclose(upsample(ng.tensor(c)).numpy(), 0.3)
    y = np.random.default_rng(3).normal(size=(1, 1, 6, 6))
    assert upsample(ng.tensor(y)).numpy().mean() == pytest.approx(y.mean(), rel=1e-12)
    du = downsample(upsample(ng.tensor(y))).numpy()
    assert not np.allclose(du, y)                                  # d(u(y)) is not y ...
    blur = np.array([3, 10, 3]) / 16                               # ... but (3, 10, 3)/16
    want = sum(blur[a] * blur[b] * y[0, 0, a:a + 4, b:b + 4] for a in range(3) for b in range(3))
    np.testing.assert_allclose(du[0, 0, 1:-1, 1:-1], want, rtol=1e-12, atol=1e-12)


def test_the_laplacian_pyramid_gives_the_image_back_exactly():
    x = images((3, 2, 28, 28), dtype=np.float64)
    gauss = gaussian_pyramid(x, 3)
    assert [tuple(t.shape) for t in gauss] == [(3, 2, 28, 28), (3, 2, 14, 14), (3, 2, 7, 7)]
    pyramid = laplacian_pyramid(x, 3)
    assert [tuple(t.shape) for t in pyramid] == [(3, 2, 28, 28), (3, 2, 14, 14), (3, 2, 7, 7)]
    np.testing.assert_allclose(pyramid[0].numpy(),                 # h_0 = I_0 - u(d(I_0))
                               x.numpy() - up_np(down_np(x.numpy())), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(pyramid[-1].numpy(), gauss[-1].numpy())     # h_K = I_K
    np.testing.assert_allclose(reconstruct(pyramid).numpy(), x.numpy(), rtol=0, atol=1e-14)
    # float32 too, to rounding
    x32 = images((2, 1, 8, 8))
    np.testing.assert_allclose(reconstruct(laplacian_pyramid(x32, 3)).numpy(), x32.numpy(),
                               rtol=0, atol=1e-6)


# ---------------------------------------------------------------- the levels
def test_levels_have_the_pyramid_shapes_and_the_conditional_ones_see_the_low_pass_image():
    model = tiny()
    assert [level.sample_shape for level in model.levels] == [(1, 8, 8), (1, 4, 4), (1, 2, 2)]
    assert [type(level) for level in model.levels[:-1]] == [ResidualGAN, ResidualGAN]
    for level in model.levels[:-1]:
        c, h, w = level.sample_shape
        level.eval()
        residual, l1, l2 = images((3, c, h, w), 1), images((3, c, h, w), 2), images((3, c, h, w), 3)
        seen = []
        hook = level.discriminator.register_forward_hook(lambda m, i, o: seen.append(i[0]))
        with ng.no_grad():
            a = level.discriminate(residual, l1).numpy()
            b = level.discriminate(residual, l2).numpy()
            z = level.sample_latents(3)
            ga, gb = level.generate(z, l1).numpy(), level.generate(z, l2).numpy()
        hook.remove()
        assert not np.allclose(a, b) and not np.allclose(ga, gb)
        np.testing.assert_allclose(seen[0].numpy()[:, :c], (l1 + residual).numpy(), atol=1e-6)
        np.testing.assert_array_equal(seen[0].numpy()[:, c:], l1.numpy())  # (l + h, l)


def test_a_conditional_levels_discriminator_loss_is_the_gan_loss_on_pairs():
    level = tiny().levels[0]
    level.eval()                                    # batch norm on running statistics
    real, low, fake = images((4, 1, 8, 8), 4), images((4, 1, 8, 8), 5), images((4, 1, 8, 8), 6)
    loss, logs = level.discriminator_loss(real, low, fake, low)
    with ng.no_grad():
        real_logit = level.discriminator(ng.cat([low + real, low], 1)).numpy().ravel()
        fake_logit = level.discriminator(ng.cat([low + fake, low], 1)).numpy().ravel()
    want = softplus(-real_logit).mean() + softplus(fake_logit).mean()    # -V on the pairs
    assert float(loss.item()) == pytest.approx(want, rel=1e-5)
    assert logs["d_real"] == pytest.approx(float(np.mean(1 / (1 + np.exp(-real_logit)))),
                                           rel=1e-5)


@pytest.mark.parametrize("k", [1, 2])
def test_every_fake_of_a_conditional_level_is_drawn_on_the_real_minibatchs_low_pass(k):
    model = tiny(k=k)
    level = model.levels[0]
    residual, low = images((3 * k, 1, 8, 8), 1), images((3 * k, 1, 8, 8), 2)
    seen = []
    level.generator.register_forward_hook(lambda m, i, o: seen.append(i[0].numpy()[:, :1]))
    opts = model.configure_optimizers(1e-3)
    level.training_step((residual, low), {"generator": opts["generator_0"],
                                          "discriminator": opts["discriminator_0"]})
    # k discriminator updates, each on its own minibatch's l; then G on the first minibatch's
    assert len(seen) == k + 1
    for i, planes in enumerate(seen[:k]):
        np.testing.assert_array_equal(planes, low.numpy()[3 * i:3 * (i + 1)])
    np.testing.assert_array_equal(seen[k], low.numpy()[:3])


def test_a_training_step_plays_every_level_on_the_real_pyramid_coarsest_first():
    model = tiny()
    x = images((4, 1, 8, 8))
    seen = []
    for j, level in enumerate(model.levels):
        original = level.training_step

        def spy(batch, optimizers, j=j, original=original):
            seen.append((j, batch))
            return original(batch, optimizers)
        level.training_step = spy
    players = [(j, name, getattr(level, name)) for j, level in enumerate(model.levels)
               for name in ("generator", "discriminator")]
    before = [[p.detach().numpy().copy() for p in net.parameters()] for _, _, net in players]
    logs = model.training_step((x, None), model.configure_optimizers(1e-2))

    assert [j for j, _ in seen] == [2, 1, 0]
    gauss = [x.numpy()]
    for _ in range(2):
        gauss.append(down_np(gauss[-1]))
    (_, (coarse, none)), *finer = seen
    assert none is None
    np.testing.assert_allclose(coarse.numpy(), gauss[2], atol=1e-6)            # I_K
    for j, (residual, low) in finer:
        np.testing.assert_allclose(low.numpy(), up_np(gauss[j + 1]), atol=1e-6)  # l_k
        np.testing.assert_allclose(residual.numpy(), gauss[j] - up_np(gauss[j + 1]),
                                   atol=1e-6)                                  # h_k
    assert list(logs) == [f"{key}_{j}" for j in (2, 1, 0)
                          for key in ("loss_d", "loss_g", "d_real", "d_fake")]
    assert all(math.isfinite(v) for v in logs.values())
    for (j, name, net), start in zip(players, before):     # both players of every level moved
        moved = [not np.array_equal(p.detach().numpy(), b) for p, b in zip(net.parameters(), start)]
        assert any(moved), (j, name)


def test_sampling_runs_down_the_pyramid_adding_each_residual_to_the_upsampled_image():
    model = tiny()
    model.eval()
    order = []
    for j, level in enumerate(model.levels):
        level.generator.register_forward_hook(lambda m, i, o, j=j: order.append(j))
    ng.manual_seed(7)
    steps = model.sample_pyramid(5)
    assert order == [2, 1, 0]                                      # coarse to fine
    assert [tuple(image.shape) for _, _, image in steps] == [(5, 1, 2, 2), (5, 1, 4, 4),
                                                              (5, 1, 8, 8)]
    assert steps[0][0] is None
    for (_, _, coarser), (low, residual, image) in zip(steps[:-1], steps[1:]):
        np.testing.assert_allclose(low.numpy(), up_np(coarser.numpy()), atol=1e-6)
        np.testing.assert_allclose(image.numpy(), low.numpy() + residual.numpy(), atol=1e-6)
        assert np.abs(residual.numpy()).max() > 0
    ng.manual_seed(7)
    samples = model.sample(5).numpy()
    np.testing.assert_allclose(samples, np.clip((steps[-1][2].numpy() + 1) / 2, 0, 1),
                               atol=1e-6)
    assert samples.shape == (5, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1


def test_the_pyramid_figure_shows_each_level_image_and_residual():
    model = tiny()
    model.eval()
    model.figure_rows = 2
    ng.manual_seed(3)
    steps = model.sample_pyramid(2)
    ng.manual_seed(3)
    grid, nrow = model.figures()["pyramid"]
    assert nrow == 7 and tuple(grid.shape) == (14, 1, 8, 8)       # I_2, then (l, h, I) x 2
    rows = grid.numpy().reshape(2, 7, 1, 8, 8)
    show = lambda t: np.clip((t + 1) / 2, 0, 1)                   # noqa: E731
    np.testing.assert_allclose(rows[:, 0], show(np.kron(steps[0][2].numpy(), np.ones((4, 4)))),
                               atol=1e-6)                         # I_2 with its pixels repeated
    np.testing.assert_allclose(rows[:, 5], show(steps[2][1].numpy()), atol=1e-6)   # h_0
    np.testing.assert_allclose(rows[:, 6], show(steps[2][2].numpy()), atol=1e-6)   # I_0


def test_the_game_options_reach_every_level():
    model = tiny(loss="wasserstein", penalty="wgan-gp", critic_norm="layer", k=2,
                 betas=(0.0, 0.9))
    assert model.batches_per_step == 2
    assert all(level.penalty_name == "wgan-gp" and level.batches_per_step == 2
               for level in model.levels)
    logs = model.training_step((images((4, 1, 8, 8)), None), model.configure_optimizers(1e-3))
    assert {f"penalty_{j}" for j in range(3)} <= set(logs)
    assert all(math.isfinite(v) for v in logs.values())
    sn = tiny(loss="hinge", spectral_norm=True, critic_norm="none")
    assert all(level.spectral_norm for level in sn.levels)
    matching = tiny(feature_matching=True)                 # D's features of the pair (l + h, l)
    logs = matching.training_step((images((4, 1, 8, 8)), None),
                                  matching.configure_optimizers(1e-3))
    assert all(math.isfinite(v) for v in logs.values())


# ---------------------------------------------------------------- training loop and resume
def test_resume_is_exact_with_every_levels_optimizers_in_the_checkpoint(tmp_path):
    data = TensorDataset(np.random.default_rng(0).uniform(0, 1, (24, 1, 8, 8)).astype(
        np.float32), np.zeros(24, dtype=np.int64))

    def run(out, steps, resume=False, seed=0):
        model = tiny(seed=seed)
        loader = DataLoader(data, batch_size=4, shuffle=True, drop_last=True, seed=1)
        train(model, loader, steps=steps, out_dir=str(out), config={"model": "lapgan"},
              lr=1e-3, resume=resume, progress=False, sample_every=1000,
              checkpoint_every=1000, num_samples=4)
        return model

    straight = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    resumed = run(tmp_path / "b", 4, resume=True, seed=9)
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert sorted(a["optimizers"]) == sorted(f"{player}_{j}" for j in range(3)
                                             for player in ("generator", "discriminator"))
    for name in a["optimizers"]:
        for key, value in _flat(a["optimizers"][name]).items():
            np.testing.assert_array_equal(np.asarray(value), np.asarray(
                _flat(b["optimizers"][name])[key]), f"{name} {key}")
    for (name, p), (_, q) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), name)


def _flat(state, prefix=""):
    """An optimizer state dict as {path: array or number}."""
    out = {}
    items = state.items() if isinstance(state, dict) else enumerate(state)
    for key, value in items:
        path = f"{prefix}/{key}"
        if isinstance(value, (dict, list, tuple)):
            out.update(_flat(value, path))
        else:
            out[path] = value.numpy() if hasattr(value, "numpy") else value
    return out


# ---------------------------------------------------------------- registry and errors
def test_registered_for_mnist_7_14_28_and_cifar_8_16_32():
    spec = get_model_spec("lapgan")
    assert spec.lr == 2e-4 and spec.dataset == "mnist5k"
    ng.manual_seed(0)
    mnist = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
    assert [level.sample_shape for level in mnist.levels] == [(1, 28, 28), (1, 14, 14),
                                                              (1, 7, 7)]
    assert mnist.inference_modules == ("levels.0.generator", "levels.1.generator",
                                       "levels.2.generator")
    assert not any("discriminator" in key for key in mnist.inference_state_dict())
    cifar = spec.build(image_shape=(3, 32, 32), num_classes=10, **spec.kwargs)
    assert [level.sample_shape for level in cifar.levels] == [(3, 32, 32), (3, 16, 16),
                                                              (3, 8, 8)]


def test_clear_errors():
    with pytest.raises(ImageShapeError, match=r"LAPGAN with 3 pyramid levels .* needs H and W "
                       r"divisible by 4, got 30x30 \(32x32 would do\)"):
        tiny(shape=(1, 30, 30))
    with pytest.raises(ImageShapeError, match="divisible by 8, got 28x28"):
        tiny(shape=(1, 28, 28), levels=4)
    with pytest.raises(ValueError, match="levels must be a positive int"):
        tiny(levels=0)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        tiny(kernel_size=4)
    with pytest.raises(ImageShapeError, match="halving needs even sides, got 7x7"):
        downsample(images((1, 1, 7, 7)))
    with pytest.raises(ValueError, match=r"expected images \(N, C, H, W\)"):
        upsample(images((2, 4)))
    model = tiny()
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 8, 8\)"):
        model.training_step((images((4, 1, 6, 6)), None), model.configure_optimizers(1e-3))
    with pytest.raises(KeyError, match="no 'discriminator_1' optimizer"):
        opts = model.configure_optimizers(1e-3)
        del opts["discriminator_1"]
        model.training_step((images((4, 1, 8, 8)), None), opts)
    level = model.levels[0]
    with pytest.raises(ValueError, match="conditioned on the upsampled coarser image"):
        level.generate(level.sample_latents(2))
    with pytest.raises(ValueError, match=r"expected low-pass images l of shape \(2, 1, 8, 8\)"):
        level.discriminate(images((2, 1, 8, 8)), images((2, 1, 4, 4)))
