"""ProGAN: the equalised learning rate (forward of the scaled weight, gradient scaled by c),
pixelwise normalisation, minibatch standard deviation against NumPy, fade-in at α = 0 and 1 in
both networks and on the real images, the growth schedule of eq. (8), exact resume in the middle
of a fade, the WGAN-GP + drift loss, the ablation switches, padding to the grown resolution and
the errors.  Tiny networks on 7x7 images (padded to 8x8: 2 -> 4 -> 8)."""
import math

import numpy as np
import pytest

import nanogen as ng
import nanogen.functional as F
from nanogen import nn
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import get_model_spec
from nanogen.models.gans.progan import (EqualizedConv2d, EqualizedLinear, MinibatchStddev,
                                        PixelNorm, ProGAN, minibatch_stddev, pixel_norm,
                                        wasserstein_drift_loss)
from nanogen.testing import assert_close, gradcheck
from nanogen.training import train
from nanogen.training.checkpoint import load_checkpoint


def tiny(seed=0, **kwargs):
    ng.manual_seed(seed)
    return ProGAN(image_shape=(1, 7, 7), **{"latent_dim": 6, "channels": (8, 4),
                                            "start_resolution": 2, "phase_steps": 2, **kwargs})


def images(n, seed=0, shape=(1, 7, 7)):
    rng = np.random.default_rng(seed)
    return ng.tensor(rng.uniform(-1, 1, (n,) + shape).astype(np.float32))


def grads_of(layer, x, probe):
    """(output, d<probe, output>/d weight, d/d bias) of ``layer`` at x."""
    layer.zero_grad()
    out = layer(x)
    (out * probe).sum().backward()
    return out, layer.weight.grad.numpy().copy(), layer.bias.grad.numpy().copy()


# ---------------------------------------------------------------- equalised learning rate
@pytest.mark.parametrize("make, ordinary, shape, fan_in", [
    (lambda: EqualizedConv2d(3, 5, 3, padding=1), lambda: nn.Conv2d(3, 5, 3, padding=1),
     (2, 3, 4, 4), 27),
    (lambda: EqualizedLinear(6, 4), lambda: nn.Linear(6, 4), (3, 6), 6)])
def test_equalized_layer_is_the_ordinary_layer_with_weight_c_w_and_gradient_c_times(
        make, ordinary, shape, fan_in):
    ng.manual_seed(0)
    layer, plain = make(), ordinary()
    c = math.sqrt(2.0 / fan_in)                                        # eq. (1), He's constant
    assert layer.scale == pytest.approx(c)
    with ng.no_grad():
        layer.bias.copy_(ng.randn(*layer.bias.shape))
        plain.weight.copy_(layer.weight * c)                           # the effective weight
        plain.bias.copy_(layer.bias)
    x = ng.randn(*shape)
    probe = ng.randn(*layer(x).shape)
    out, w_grad, b_grad = grads_of(layer, x, probe)
    expected, plain_w_grad, plain_b_grad = grads_of(plain, x, probe)
    assert_close(out, expected, rtol=1e-5, atol=1e-6)
    # d L / d w = c * d L / d (c w): the parameter's gradient is c times the ordinary layer's
    assert_close(w_grad, c * plain_w_grad, rtol=1e-5, atol=1e-7)
    assert_close(b_grad, plain_b_grad, rtol=1e-5, atol=1e-7)
    assert not np.allclose(w_grad, plain_w_grad, rtol=0.1)             # the scale is visible


def test_equalized_weights_start_n01_and_he_init_without_it():
    ng.manual_seed(0)
    on, off = EqualizedLinear(200, 300), EqualizedLinear(200, 300, equalized=False)
    c = math.sqrt(2.0 / 200)
    assert np.std(on.weight.detach().numpy()) == pytest.approx(1.0, rel=0.02)
    assert np.std(off.weight.detach().numpy()) == pytest.approx(c, rel=0.02)
    assert off.scale == 1.0 and not off.bias.detach().numpy().any() and not on.bias.detach().numpy().any()
    x = ng.randn(4, 200)
    assert_close(off(x), F.linear(x, off.weight, off.bias))            # used as is
    assert EqualizedConv2d(8, 1, 1, gain=1.0).scale == pytest.approx(1 / math.sqrt(8))


# ---------------------------------------------------------------- pixelnorm, minibatch stddev
def test_pixel_norm_gives_unit_mean_square_per_pixel_and_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 3, 3)) * rng.uniform(0.01, 100, size=(2, 1, 3, 3))
    y = pixel_norm(ng.tensor(x)).numpy()
    np.testing.assert_allclose((y ** 2).mean(axis=1), 1.0, rtol=1e-6)  # every (n, h, w)
    np.testing.assert_allclose(y, x / np.sqrt((x ** 2).mean(axis=1, keepdims=True) + 1e-8),
                               rtol=1e-12)
    assert_close(PixelNorm()(ng.tensor(x)), y)
    assert gradcheck(pixel_norm, (ng.tensor(x[:1, :, :2, :2], requires_grad=True),))


def numpy_minibatch_stddev(x, group):
    n = x.shape[0]
    m = n // group
    y = x.reshape(group, m, *x.shape[1:])                    # example i in group i mod m
    sigma = np.sqrt(((y - y.mean(axis=0)) ** 2).mean(axis=0) + 1e-8)
    s = sigma.reshape(m, -1).mean(axis=1)
    feature = np.broadcast_to(s[np.arange(n) % m][:, None, None, None],
                              (n, 1) + x.shape[2:])
    return np.concatenate([x, feature], axis=1)


@pytest.mark.parametrize("n, group", [(8, 4), (6, 3), (4, 4), (2, 2), (5, 1)])
def test_minibatch_stddev_matches_numpy(n, group):
    x = np.random.default_rng(n).normal(size=(n, 3, 2, 2))
    out = minibatch_stddev(ng.tensor(x), group_size=4).numpy()
    np.testing.assert_allclose(out, numpy_minibatch_stddev(x, group), rtol=1e-12)
    assert out.shape == (n, 4, 2, 2) and MinibatchStddev(4)(ng.tensor(x)).shape == out.shape
    if group > 1:       # one group's members share the feature, and it is not constant across
        assert len(np.unique(out[:, 3])) == n // group


def test_minibatch_stddev_gradient():
    x = ng.tensor(np.random.default_rng(1).normal(size=(4, 2, 2, 1)), requires_grad=True)
    assert gradcheck(lambda t: minibatch_stddev(t, 2), (x,))


# ---------------------------------------------------------------- fade-in (eqs. 4-6)
def test_generator_fade_in_at_alpha_0_is_the_old_network_upsampled_and_at_1_the_new():
    model = tiny()
    g, z = model.generator, ng.randn(3, 6)
    for stage in (1, 2):
        with ng.no_grad():
            old = g(z, stage - 1, 1.0)
            h = z
            for s in range(stage + 1):
                h = g.blocks[s](h)
            new = g.to_rgb[stage](h)
            up = F.interpolate(old, scale_factor=2, mode="nearest")
            np.testing.assert_array_equal(g(z, stage, 0.0).numpy(), up.numpy())
            np.testing.assert_array_equal(g(z, stage, 1.0).numpy(), new.numpy())
            assert_close(g(z, stage, 0.25), 0.75 * up + 0.25 * new, rtol=1e-6, atol=1e-7)
            assert not np.allclose(up.numpy(), new.numpy(), atol=1e-3)


def test_discriminator_fade_in_at_alpha_0_reads_the_pooled_image_with_the_old_network():
    model = tiny()
    d = model.discriminator
    for stage, size in ((1, 4), (2, 8)):
        x = images(4, stage, (1, size, size))
        with ng.no_grad():
            old = d(F.avg_pool2d(x, 2), stage - 1, 1.0)
            h = d.blocks[stage](d.from_rgb[stage](x))
            for s in range(stage - 1, -1, -1):
                h = d.blocks[s](h)
            np.testing.assert_array_equal(d(x, stage, 0.0).numpy(), old.numpy())
            np.testing.assert_array_equal(d(x, stage, 1.0).numpy(), h.numpy())
            mixed = d(x, stage, 0.5).numpy()
            assert not np.allclose(mixed, old.numpy()) and not np.allclose(mixed, h.numpy())


def test_model_generates_full_size_at_every_stage_and_fades_reals():
    model = tiny()                                  # 2 -> 4 -> 8, images padded 7 -> 8
    z, x = ng.randn(2, 6), model.pad(images(2))
    with ng.no_grad():
        model.growth.set_step(0)                    # stage 0: 2x2, shown as 4x4 blocks
        coarse = model.generate(z)
        assert coarse.shape == (2, 1, 8, 8)
        np.testing.assert_array_equal(coarse.numpy(), F.interpolate(
            model.generator(z, 0), scale_factor=4, mode="nearest").numpy())
        np.testing.assert_array_equal(model.fade_reals(x).numpy(), x.numpy())
        model.growth.set_step(2)                    # phase 1: 4x4 fading in, alpha = 0
        assert model.growth.current == (1, 0.0)
        np.testing.assert_array_equal(model.generate(z).numpy(), coarse.numpy())
        half = F.interpolate(F.avg_pool2d(x, 4), scale_factor=4, mode="nearest")
        np.testing.assert_array_equal(model.fade_reals(x).numpy(), half.numpy())   # eq. (6)
        model.growth.set_step(3)                    # alpha = 1/2
        sharp = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
        # at the stage's 4x4, which is all D reads: eq. (6) with x at 4x4
        assert_close(F.avg_pool2d(model.fade_reals(x), 2),
                     F.avg_pool2d(0.5 * half + 0.5 * sharp, 2), rtol=1e-6, atol=1e-7)
        # what D reads is the reals pooled to the stage's resolution: eq. (6) at 4x4
        assert_close(model.discriminate(model.fade_reals(x)),
                     model.discriminator(F.avg_pool2d(model.fade_reals(x), 2), 1, 0.5)
                     .reshape(2), rtol=1e-6)
        samples = model.sample(3)
    assert samples.shape == (3, 1, 7, 7) and 0 <= samples.numpy().min() <= \
        samples.numpy().max() <= 1


def test_padding_is_black_and_cropping_undoes_it():
    model = tiny()
    x = images(2)
    padded = model.pad(x).numpy()
    assert padded.shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(model.crop(ng.tensor(padded)).numpy(), x.numpy())
    assert (padded[:, :, 7, :] == -1).all() and (padded[:, :, :, 7] == -1).all()
    assert padded[:, :, :7, :7].min() > -1


# ---------------------------------------------------------------- the schedule (eq. 8)
def test_growth_schedule_advances_as_documented():
    model = tiny(phase_steps=3)                     # resolutions 2, 4, 8: phases 0..4
    x, opts = images(4), None
    expected = [(0, 2, 1.0)] * 3 + [(1, 4, 0.0), (1, 4, 1 / 3), (1, 4, 2 / 3)] + \
        [(2, 4, 1.0)] * 3 + [(3, 8, 0.0), (3, 8, 1 / 3), (3, 8, 2 / 3)] + [(4, 8, 1.0)] * 4
    got = []
    for step in range(len(expected)):
        assert int(model.growth.step.item()) == step
        got.append((int(model.growth.phase.item()), int(model.growth.resolution.item()),
                    float(model.growth.alpha.item())))
        if step in (0, 4, 10, 15):                  # the step trains where the schedule stands
            opts = opts or model.configure_optimizers(1e-3)
            logs = model.training_step((x, None), opts)
            assert (logs["resolution"], logs["alpha"]) == pytest.approx(got[-1][1:])
        else:
            model.growth.advance()
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    assert [g[2] for g in got] == pytest.approx([e[2] for e in expected])
    flat = tiny(progressive=False)
    assert flat.growth.current == (2, 1.0) and int(flat.growth.phase.item()) == 4
    flat.growth.set_step(1)
    assert flat.growth.current == (2, 1.0)


def test_default_resolutions_on_mnist_and_without_padding():
    spec = get_model_spec("progan")
    model = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
    assert model.resolutions == (4, 8, 16, 32) and model.sample_shape == (1, 32, 32)
    assert model.image_shape == (1, 28, 28) and model._padding == (2, 2, 2, 2)
    assert spec.lr == 1e-3 and model.betas == (0.0, 0.99) and model.batches_per_step == 1
    assert model.penalty_name == "wgan-gp" and model.penalty_weight == 10.0
    assert model.drift == 0.001 and spec.ema_decay == 0.999
    # the default run ends in the last phase (full resolution, alpha = 1)
    assert model.growth.at(spec.steps - 1) == (6, 3, 1.0)
    assert model.growth.at(spec.steps - 2 * model.growth.phase_steps) == (6, 3, 1.0)
    assert model.growth.at(spec.steps - 2 * model.growth.phase_steps - 1)[:2] == (5, 3)
    ng.manual_seed(0)
    native = ProGAN((1, 28, 28), latent_dim=4, channels=(4,), start_resolution=7)
    assert native.resolutions == (7, 14, 28) and native.sample_shape == (1, 28, 28)
    assert not any(native._padding)


# ---------------------------------------------------------------- the loss (eq. 7)
def test_wasserstein_drift_loss_against_numpy():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=5), rng.normal(size=5)
    game = wasserstein_drift_loss(0.001)
    d = game.discriminator(ng.tensor(real), ng.tensor(fake)).item()
    assert d == pytest.approx(fake.mean() - real.mean() + 0.001 * (real ** 2).mean(), rel=1e-12)
    assert game.generator(ng.tensor(fake)).item() == pytest.approx(-fake.mean(), rel=1e-12)
    assert not game.log_odds


def test_discriminator_loss_is_the_game_on_faded_reals_plus_lambda_times_the_penalty():
    model = tiny(phase_steps=4)
    model.growth.set_step(5)                        # fading in 4x4 at alpha = 1/4
    real, fake = model.pad(images(4)), model.generate(ng.randn(4, 6)).detach()
    loss, logs = model.discriminator_loss(real, None, fake, None)
    with ng.no_grad():
        r = model.discriminate(model.fade_reals(real)).numpy().astype(np.float64)
        f = model.discriminate(fake).numpy().astype(np.float64)
    game = f.mean() - r.mean() + 0.001 * (r ** 2).mean()
    assert logs["score_real"] == pytest.approx(r.mean(), rel=1e-5, abs=1e-6)
    assert loss.item() == pytest.approx(game + 10 * logs["penalty"], rel=1e-5, abs=1e-6)
    off = tiny(phase_steps=4, drift=0)
    off.growth.set_step(5)
    loss, logs = off.discriminator_loss(real, None, fake, None)
    with ng.no_grad():
        r = off.discriminate(off.fade_reals(real)).numpy().astype(np.float64)
        f = off.discriminate(fake).numpy().astype(np.float64)
    assert loss.item() == pytest.approx(f.mean() - r.mean() + 10 * logs["penalty"], rel=1e-5,
                                        abs=1e-6)


# ---------------------------------------------------------------- switches (Table 1)
def test_ablation_switches_remove_their_piece():
    def count(module, kind):
        return sum(isinstance(m, kind) for m in module.modules())
    full = tiny()
    assert count(full.discriminator, MinibatchStddev) == 1
    assert count(full.generator, PixelNorm) == 1 + 2 * 3          # z, then two a resolution
    layers = [m for m in full.modules() if isinstance(m, (EqualizedConv2d, EqualizedLinear))]
    assert layers and all(m.equalized for m in layers)
    assert count(tiny(minibatch_std=False).discriminator, MinibatchStddev) == 0
    assert count(tiny(pixelnorm=False).generator, PixelNorm) == 1  # z is still normalised
    assert not any(m.equalized for m in tiny(equalized=False).modules()
                   if isinstance(m, (EqualizedConv2d, EqualizedLinear)))
    for switches in ({"minibatch_std": False}, {"pixelnorm": False}, {"equalized": False},
                     {"progressive": False}):
        model = tiny(**switches)
        logs = model.training_step((images(4), None), model.configure_optimizers(1e-3))
        assert np.isfinite(logs["loss_d"]) and np.isfinite(logs["loss_g"])


def test_training_steps_move_only_the_layers_of_the_current_stage():
    model = tiny()
    opts = model.configure_optimizers(1e-3)
    before = {k: v.detach().numpy().copy() for k, v in model.named_parameters()}
    model.training_step((images(4), None), opts)                    # stage 0 (2x2)
    moved = {k for k, v in model.named_parameters() if not np.array_equal(v.detach().numpy(), before[k])}
    assert "generator.blocks.0.1.weight" in moved and "discriminator.blocks.0.1.weight" in moved
    assert not any(".blocks.1." in k or ".blocks.2." in k or "rgb.1" in k for k in moved)


# ---------------------------------------------------------------- state: resume, inference
def test_resume_in_the_middle_of_a_fade_is_bit_identical(tmp_path):
    data = TensorDataset(images(16).numpy(), np.zeros(16, dtype=np.int64))

    def run(out, steps, resume=False):
        model = tiny(seed=5 if resume else 0, phase_steps=4)
        loader = DataLoader(data, batch_size=4, shuffle=True, drop_last=True, seed=1)
        train(model, loader, steps=steps, out_dir=str(out), config={"model": "tiny"}, lr=1e-3,
              resume=resume, progress=False, sample_every=1000, checkpoint_every=1000,
              num_samples=4)
        return model

    straight = run(tmp_path / "straight", 8)
    run(tmp_path / "broken", 6)                     # stops in phase 1, alpha = 2/4
    halfway = load_checkpoint(tmp_path / "broken")["model"]
    assert int(halfway["growth.step"].item()) == 6 and int(halfway["growth.phase"].item()) == 1
    assert int(halfway["growth.resolution"].item()) == 4
    assert float(halfway["growth.alpha"].item()) == 0.5
    resumed = run(tmp_path / "broken", 8, resume=True)
    assert resumed.growth.current == (1, 1.0) and int(resumed.growth.phase.item()) == 2
    for (name, p), (_, q) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), name)


def test_the_schedule_goes_with_the_generator_weights():
    model = tiny()
    model.growth.set_step(3)                        # 4x4 at alpha 1/2
    state = model.inference_state_dict()
    assert "growth.alpha" in state and not any(k.startswith("discriminator") for k in state)
    fresh = tiny(seed=3)
    fresh.load_state_dict(state, strict=False)
    assert fresh.growth.current == (1, 0.5)
    ng.manual_seed(7)
    a = model.sample(2).numpy()
    ng.manual_seed(7)
    np.testing.assert_array_equal(fresh.sample(2).numpy(), a)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, match", [
    ({"resolution": 28, "start_resolution": 4}, r"4 -> 8 -> 16 -> 32 .* cannot reach "
                                                r"resolution 28"),
    ({"resolution": 16}, "smaller than the 28x28 images"),
    ({"start_resolution": 0}, "start_resolution"),
    ({"channels": []}, "channels must be a non-empty"),
    ({"minibatch_std": "no"}, "minibatch_std is a switch"),
    ({"drift": -1}, "drift"),
    ({"loss": "hinge"}, "pass drift=0"),
    ({"phase_steps": 0}, "phase_steps"),
])
def test_bad_arguments_raise_one_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProGAN((1, 28, 28), latent_dim=4, channels=kwargs.pop("channels", (4,)), **kwargs)


def test_bad_inputs_raise_one_clear_error():
    model = tiny()
    with pytest.raises(ValueError, match=r"training_step: expected images of shape \(N, 1, 7, 7"):
        model.training_step((model.pad(images(2)), None), model.configure_optimizers(1e-3))
    with pytest.raises(ValueError, match=r"generate: expected codes of shape \(N, 6\)"):
        model.generate(ng.randn(2, 5))
    with pytest.raises(ValueError, match=r"discriminate: expected images of shape \(N, 1, 8, 8"):
        model.discriminate(images(2))
    with pytest.raises(ValueError, match="step must be >= 0"):
        model.growth.set_step(-1)
