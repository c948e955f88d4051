"""The GAN training tricks (nanogen/models/gans/tricks.py) as options of the shared adversarial
model: each one's effect against a direct formula or a direct check -- one-sided label smoothing
and flipped labels (the discriminator's cross-entropy), the instance-noise schedule, noise in the
generator's layers (training only), the experience-replay buffer (its contents, and a resumed
run bit-identical to an unbroken one), one mixed batch for D, SGD for D and TTUR, feature
matching, minibatch discrimination (against NumPy and by gradcheck) -- the latent-arithmetic
figure, and one clear ValueError for each trick that does not apply."""
import math

import numpy as np
import pytest

import nanogen as ng
from nanogen import nn
from nanogen.data import DataLoader, TensorDataset
from nanogen.models.gans import DCGAN, GAN, AdversarialModel
from nanogen.models.gans.losses import adversarial_loss
from nanogen.models.gans.tricks import (GaussianNoise, InstanceNoise, MinibatchDiscrimination,
                                        ReplayBuffer, TrainingTricks, arithmetic_codes,
                                        class_mean_codes, feature_matching_loss,
                                        flipped_targets, linear_decay)
from nanogen.optim import SGD, Adam
from nanogen.testing import gradcheck
from nanogen.training import train
from nanogen.training.checkpoint import load_checkpoint


def tiny_dcgan(seed=0, **kwargs):
    ng.manual_seed(seed)
    return DCGAN(image_shape=(1, 8, 8), latent_dim=6, channels=(4, 8), **kwargs)


def point_gan(seed=0, **kwargs):
    ng.manual_seed(seed)
    return GAN(image_shape=(2,), latent_dim=3, hidden=(8, 8), **kwargs)


def images(n, seed=0):
    return ng.tensor(np.random.default_rng(seed).uniform(-1, 1, (n, 1, 8, 8)).astype(np.float32))


def softplus(x):
    return np.logaddexp(0.0, x)


def bce(logits, targets):
    """-t log sigma(l) - (1 - t) log(1 - sigma(l)), the mean: written in probabilities."""
    p = 1.0 / (1.0 + np.exp(-logits))
    return float(np.mean(-targets * np.log(p) - (1 - targets) * np.log(1 - p)))


GAME = adversarial_loss("non-saturating")


# ---------------------------------------------------------------- labels (ganhacks #6)
def test_one_sided_label_smoothing_is_cross_entropy_with_real_target_0_9():
    real, fake = np.array([0.3, -1.2, 2.0]), np.array([1.5, -0.5, 0.1, -2.5])
    r = ng.tensor(real, requires_grad=True)
    f = ng.tensor(fake, requires_grad=True)
    loss = TrainingTricks(real_label=0.9).discriminator_loss(GAME, r, f)
    assert loss.item() == pytest.approx(bce(real, np.full(3, 0.9)) + bce(fake, np.zeros(4)),
                                        rel=1e-12)
    loss.backward()                                  # d/dl = (sigma(l) - t) / n
    np.testing.assert_allclose(r.grad.numpy(), (1 / (1 + np.exp(-real)) - 0.9) / 3, rtol=1e-9)
    np.testing.assert_allclose(f.grad.numpy(), 1 / (1 + np.exp(-fake)) / 4, rtol=1e-9)
    # without the trick: the game's -V, by the same formula with target 1
    plain = TrainingTricks().discriminator_loss(GAME, ng.tensor(real), ng.tensor(fake))
    assert plain.item() == pytest.approx(bce(real, np.ones(3)) + bce(fake, np.zeros(4)),
                                         rel=1e-12)


def test_the_model_trains_d_on_the_smoothed_loss():
    model = tiny_dcgan(real_label=0.9)
    real, fake = images(4, 1), images(4, 2)
    with ng.random.fork_rng(3):
        loss, logs = model.discriminator_loss(real, None, fake, None)
    with ng.random.fork_rng(3), ng.no_grad():
        r = model.discriminate(real).numpy().astype(np.float64)
        f = model.discriminate(fake).numpy().astype(np.float64)
    assert loss.item() == pytest.approx(bce(r, np.full(4, 0.9)) + bce(f, np.zeros(4)), rel=1e-5)


def test_flipped_labels_flip_the_requested_share_and_the_loss_uses_them():
    like = ng.zeros(1)
    ng.manual_seed(0)
    targets = flipped_targets(40_000, 0.9, 0.0, 0.2, like).numpy()
    assert set(np.unique(targets)) == {np.float32(0.0), np.float32(0.9)}
    share = np.mean(targets == 0.0)
    assert abs(share - 0.2) < 5 * math.sqrt(0.2 * 0.8 / 40_000)           # binomial, 5 sigma
    assert np.all(flipped_targets(50, 1.0, 0.0, 0.0, like).numpy() == 1.0)
    # the loss is eq. (1) with exactly the targets drawn: real -> 0, fake -> real_label
    tricks = TrainingTricks(real_label=0.9, flip_labels=0.3)
    real, fake = np.linspace(-2, 2, 50), np.linspace(-3, 1, 60)
    ng.manual_seed(7)
    loss = tricks.discriminator_loss(GAME, ng.tensor(real), ng.tensor(fake)).item()
    ng.manual_seed(7)
    t_real = flipped_targets(50, 0.9, 0.0, 0.3, ng.tensor(real)).numpy()
    t_fake = flipped_targets(60, 0.0, 0.9, 0.3, ng.tensor(fake)).numpy()
    assert 0 < np.sum(t_real == 0) < 50 and 0 < np.sum(t_fake == 0.9) < 60
    assert loss == pytest.approx(bce(real, t_real) + bce(fake, t_fake), rel=1e-12)


# ---------------------------------------------------------------- instance noise (ganhacks #13)
def test_instance_noise_sigma_decays_linearly_to_zero_and_stays_there():
    assert [linear_decay(0.2, t, 4) for t in range(7)] == pytest.approx(
        [0.2, 0.15, 0.1, 0.05, 0.0, 0.0, 0.0], abs=1e-15)
    noise = InstanceNoise(0.5, 3)
    x = ng.zeros(20_000)
    ng.manual_seed(0)
    assert np.std(noise(x).numpy()) == pytest.approx(0.5, rel=0.03)
    for _ in range(3):
        noise.advance()
    assert int(noise.step.item()) == 3 and noise.sigma == 0.0
    assert noise(x) is x                           # no noise, and no random numbers drawn


def test_the_training_step_counts_steps_for_the_noise_schedule():
    model = tiny_dcgan(instance_noise=0.3, instance_noise_steps=4)
    opt = model.configure_optimizers(1e-3)
    seen = []
    model.discriminator.register_forward_hook(
        lambda m, inputs, out: seen.append(inputs[0].detach().numpy().copy()))
    x = images(4)
    sigmas = []
    for _ in range(5):
        sigmas.append(model.tricks.instance_noise.sigma)
        seen.clear()
        model.training_step((x, None), opt)
    assert sigmas == pytest.approx([0.3, 0.225, 0.15, 0.075, 0.0])
    assert int(model.state_dict()["tricks.instance_noise.step"].item()) == 5
    np.testing.assert_array_equal(seen[0], x.numpy())     # sigma 0: D sees the real batch as is
    model = tiny_dcgan(instance_noise=0.3, instance_noise_steps=4)
    model.discriminator.register_forward_hook(
        lambda m, inputs, out: seen.append(inputs[0].detach().numpy().copy()))
    seen.clear()
    model.training_step((x, None), model.configure_optimizers(1e-3))
    assert 0.2 < np.std(seen[0] - x.numpy()) < 0.4       # sigma 0.3 at the first step


# ---------------------------------------------------------------- noise in G's layers
@pytest.mark.parametrize("make, activations", [(tiny_dcgan, 2), (point_gan, 2)])
def test_generator_noise_after_every_hidden_activation_in_training_only(make, activations):
    plain, noisy = make(), make(generator_noise=0.2)
    layers = [m for m in noisy.generator.modules() if isinstance(m, GaussianNoise)]
    assert len(layers) == activations and all(m.sigma == 0.2 for m in layers)
    assert list(noisy.state_dict()) == list(plain.state_dict())        # same parameter names
    z = ng.randn(5, plain.latent_dim)
    noisy.eval()
    plain.eval()
    with ng.no_grad():
        np.testing.assert_array_equal(noisy.generate(z).numpy(), plain.generate(z).numpy())
        noisy.train()
        a, b = noisy.generate(z).numpy(), noisy.generate(z).numpy()
    assert np.abs(a - b).max() > 1e-3                  # fresh noise on each pass


# ---------------------------------------------------------------- experience replay (ganhacks #8)
def test_replay_buffer_fills_then_replaces_and_serves_old_fakes():
    buffer = ReplayBuffer(6, (2,), 0.5)
    batches = [ng.tensor(np.arange(8, dtype=np.float32).reshape(4, 2) + 100 * k)
               for k in range(1, 5)]
    rows = [set(map(tuple, b.numpy())) for b in batches]
    ng.manual_seed(0)
    out = buffer(batches[0]).numpy()                    # empty: all fresh; two stored
    np.testing.assert_array_equal(out, batches[0].numpy())
    assert int(buffer.count.item()) == 2
    np.testing.assert_array_equal(buffer.samples.numpy()[:2], batches[0].numpy()[:2])
    out = buffer(batches[1]).numpy()                    # two old ones, then the fresh rest
    assert set(map(tuple, out[:2])) == set(map(tuple, batches[0].numpy()[:2]))
    np.testing.assert_array_equal(out[2:], batches[1].numpy()[2:])
    np.testing.assert_array_equal(buffer.samples.numpy()[2:4], batches[1].numpy()[:2])
    buffer(batches[2])
    assert int(buffer.count.item()) == 6                # full
    before = set(map(tuple, buffer.samples.numpy()))
    out = buffer(batches[3]).numpy()
    assert set(map(tuple, out[:2])) <= before and all(tuple(r) not in rows[3] for r in out[:2])
    after = set(map(tuple, buffer.samples.numpy()))
    assert int(buffer.count.item()) == 6 and len(after) == 6
    assert after - before == set(map(tuple, batches[3].numpy()[:2]))   # two slots overwritten
    assert len(before - after) == 2


def test_replay_resume_is_bit_identical_to_an_unbroken_run(tmp_path):
    data = TensorDataset(np.random.default_rng(0).uniform(-1, 1, (32, 1, 8, 8)).astype(
        np.float32), np.zeros(32, dtype=np.int64))

    def run(out, steps, resume=False):
        model = tiny_dcgan(seed=0 if not resume else 5, replay=0.5, replay_size=10,
                           instance_noise=0.2, instance_noise_steps=5)
        loader = DataLoader(data, batch_size=4, shuffle=True, drop_last=True, seed=1)
        train(model, loader, steps=steps, out_dir=str(out), config={"model": "tiny"}, lr=1e-3,
              resume=resume, progress=False, sample_every=1000, checkpoint_every=1000,
              num_samples=4)
        return model

    straight = run(tmp_path / "straight", 6)
    run(tmp_path / "broken", 3)
    halfway = load_checkpoint(tmp_path / "broken")["model"]
    resumed = run(tmp_path / "broken", 6, resume=True)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "broken")
    assert int(halfway["tricks.replay.count"].item()) == 6
    assert int(a["model"]["tricks.replay.count"].item()) == 10          # full, then replaced
    assert not np.array_equal(halfway["tricks.replay.samples"].numpy(),
                              a["model"]["tricks.replay.samples"].numpy())
    assert int(a["model"]["tricks.instance_noise.step"].item()) == 6
    for key in a["model"]:
        np.testing.assert_array_equal(a["model"][key].numpy(), b["model"][key].numpy(), key)
    np.testing.assert_array_equal(a["rng"].numpy(), b["rng"].numpy())
    for (name, p), (_, q) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), name)


# ---------------------------------------------------------------- one batch or two (ganhacks #4)
def test_mixed_batches_run_d_once_on_real_and_fake_together():
    for mixed in (False, True):
        model = tiny_dcgan(mixed_batches=mixed)
        sizes = []
        model.discriminator.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
        real, fake = images(4, 1), images(4, 2)
        with ng.no_grad():
            r, f = model._discriminate_real_and_fake(real, None, fake, None)
            joint = model.discriminate(ng.cat([real, fake])).numpy()
            apart = np.concatenate([model.discriminate(real).numpy(),
                                    model.discriminate(fake).numpy()])
        got = np.concatenate([r.numpy(), f.numpy()])
        assert sizes[0] == (8 if mixed else 4)
        np.testing.assert_array_equal(got, joint if mixed else apart)
        assert np.abs(joint - apart).max() > 1e-4     # batch norm: the statistics differ


# ---------------------------------------------------------------- optimizers (ganhacks #9, TTUR)
def test_sgd_for_d_adam_for_g_and_two_time_scales():
    model = tiny_dcgan(d_optimizer="sgd", d_lr_ratio=4)
    opts = model.configure_optimizers(1e-4)
    assert type(opts["discriminator"]) is SGD and type(opts["generator"]) is Adam
    assert opts["discriminator"].param_groups[0]["lr"] == pytest.approx(4e-4, rel=1e-15)
    assert opts["generator"].param_groups[0]["lr"] == 1e-4
    assert opts["generator"].param_groups[0]["betas"] == (0.5, 0.999)
    plain = tiny_dcgan().configure_optimizers(1e-4)
    assert [type(o) for o in plain.values()] == [Adam, Adam]
    assert [o.param_groups[0]["lr"] for o in plain.values()] == [1e-4, 1e-4]
    wgan = tiny_dcgan(loss="wasserstein", optimizer="rmsprop", d_optimizer="adam",
                      betas=(0.0, 0.9))          # betas are D's here
    assert wgan.configure_optimizers(1e-4)["discriminator"].param_groups[0]["betas"] == (0.0, 0.9)


def test_ttur_keeps_its_ratio_under_the_loops_lr_schedule(tmp_path):
    data = TensorDataset(np.zeros((8, 1, 8, 8), np.float32), np.zeros(8, dtype=np.int64))
    train(tiny_dcgan(d_lr_ratio=4), DataLoader(data, batch_size=4), steps=3, out_dir=str(tmp_path),
          config={"model": "tiny"}, lr=1e-3, lr_schedule="cosine", progress=False,
          sample_every=1000, num_samples=4)
    groups = {name: opt["param_groups"][0]
              for name, opt in load_checkpoint(tmp_path)["optimizers"].items()}
    factor = 0.5 * (1 + math.cos(math.pi * 2 / 3))          # the cosine at the last update
    assert groups["discriminator"]["initial_lr"] == pytest.approx(4e-3, rel=1e-15)
    assert groups["discriminator"]["lr"] == pytest.approx(4e-3 * factor, rel=1e-12)
    assert groups["generator"]["lr"] == pytest.approx(1e-3 * factor, rel=1e-12)


def test_tricks_at_their_off_values_train_exactly_as_the_default():
    def logs(**kwargs):
        model = tiny_dcgan(**kwargs)
        opt = model.configure_optimizers(1e-3)
        out = [model.training_step((images(4, s), None), opt) for s in range(2)]
        return out, [p.numpy() for p in model.state_dict().values()]
    default, off = logs(), logs(flip_labels=0.0, d_lr_ratio=1.0, mixed_batches=False,
                                feature_matching=False, minibatch_kernels=0, replay=0.0)
    assert default[0] == off[0]
    for a, b in zip(default[1], off[1]):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- feature matching
def test_feature_matching_loss_against_its_formula_on_d_features():
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((5, 3)), rng.standard_normal((7, 3))
    want = np.sum((real.mean(0) - fake.mean(0)) ** 2)
    assert feature_matching_loss(ng.tensor(real), ng.tensor(fake)).item() == pytest.approx(
        want, rel=1e-12)
    model = tiny_dcgan(feature_matching=True)
    x, g = images(4, 1), images(4, 2)
    layers = list(model.discriminator)[:-1]            # everything before the last Linear

    def f(t):
        for layer in layers:
            t = layer(t)
        return t.detach().numpy().astype(np.float64)
    loss, _ = model.feature_matching_loss(x, None, g, None)
    direct = np.sum((f(x).mean(0) - f(g).mean(0)) ** 2)
    assert f(x).shape == (4, 8 * 2 * 2)
    assert loss.item() == pytest.approx(direct, rel=1e-5)


def test_the_generator_step_descends_feature_matching_and_leaves_d_alone():
    model = tiny_dcgan(feature_matching=True)
    recorded = []
    original = model.feature_matching_loss

    def spy(*args):
        loss, logs = original(*args)
        recorded.append(loss.item())
        return loss, logs
    model.feature_matching_loss = spy
    model.generator_loss = lambda *a: pytest.fail("the game's generator loss was used")
    opts = model.configure_optimizers(1e-3)
    logs = model.training_step((images(4), None), opts)
    assert len(recorded) == 1 and logs["loss_g"] == recorded[0] > 0


# ---------------------------------------------------------------- minibatch discrimination
def minibatch_numpy(f, t, kernels, dim):
    m = (f @ t).reshape(len(f), kernels, dim)
    o = np.zeros((len(f), kernels))
    for i in range(len(f)):
        for j in range(len(f)):
            if i != j:
                o[i] += np.exp(-np.abs(m[i] - m[j]).sum(-1))
    return np.concatenate([f, o], 1)


def test_minibatch_discrimination_against_numpy_and_by_gradcheck():
    ng.manual_seed(0)
    layer = MinibatchDiscrimination(4, kernels=3, kernel_dim=2)
    assert layer.weight.shape == (4, 6)
    assert np.std(layer.weight.detach().numpy()) == pytest.approx(0.05, rel=0.5)
    rng = np.random.default_rng(1)
    f, t = rng.standard_normal((5, 4)), rng.standard_normal((4, 6))
    layer.weight = nn.Parameter(ng.tensor(t))
    out = layer(ng.tensor(f)).detach().numpy()
    np.testing.assert_allclose(out, minibatch_numpy(f, t, 3, 2), rtol=1e-12)
    features = ng.tensor(f, requires_grad=True)
    assert gradcheck(lambda x, w: layer(x), [features, layer.weight])
    # a batch of identical examples: each is as close as can be to the n - 1 others
    same = layer(ng.tensor(np.tile(f[:1], (4, 1)))).detach().numpy()
    np.testing.assert_allclose(same[:, 4:], 3.0, rtol=1e-12)


@pytest.mark.parametrize("make, features", [(tiny_dcgan, 32), (point_gan, 8)])
def test_minibatch_layer_sits_before_ds_last_linear_and_starts_as_the_plain_d(make, features):
    plain, mbd = make(), make(minibatch_kernels=5, minibatch_kernel_dim=3)
    head = mbd.discriminator[-1]
    assert isinstance(head[0], MinibatchDiscrimination) and head[0].in_features == features
    assert head[1].in_features == features + 5
    x = images(6) if plain.makes_images else ng.randn(6, 2)
    with ng.no_grad():
        np.testing.assert_allclose(mbd.discriminate(x).numpy(), plain.discriminate(x).numpy(),
                                   rtol=1e-5, atol=1e-6)
    opt = mbd.configure_optimizers(1e-2)
    mbd.training_step((x, None), opt)
    assert np.abs(head[1].weight.detach().numpy()[:, features:]).max() > 0    # o is used


# ---------------------------------------------------------------- latent vector arithmetic
def test_class_means_and_arithmetic_codes_against_direct_computation():
    codes = np.arange(12, dtype=np.float64).reshape(6, 2)
    probs = np.array([[0.95, 0.05], [0.2, 0.8], [0.99, 0.01], [0.05, 0.95], [0.5, 0.5],
                      [0.01, 0.99]])
    means = class_mean_codes(codes, probs, confidence=0.9, min_count=2)
    np.testing.assert_allclose(means[0], codes[[0, 2]].mean(0))
    np.testing.assert_allclose(means[1], codes[[3, 5]].mean(0))
    assert class_mean_codes(codes, probs, confidence=0.9, min_count=3) == {}
    means = {0: np.array([1.0, 0.0]), 1: np.array([0.0, 1.0]), 2: np.array([2.0, 2.0])}
    grid = arithmetic_codes(means, [(0, 1, 2)], variations=3, rng=np.random.default_rng(0))
    assert grid.shape == (7, 2)
    np.testing.assert_allclose(grid[:4], [[1, 0], [0, 1], [2, 2], [3, 1]])
    assert np.abs(grid[4:] - [3, 1]).max() <= 0.25 and np.abs(grid[4:] - [3, 1]).min() > 0


def test_latent_arithmetic_decodes_class_means_and_their_sums(monkeypatch):
    """A classifier that calls each code's quadrant its class (the samples' classes are known
    exactly): the figure's codes are the quadrant means and their sums, row by row."""
    import nanogen.metrics.features as features
    ng.manual_seed(0)
    model = GAN(image_shape=(1, 28, 28), latent_dim=2, hidden=(4,))
    model.eval()
    drawn, decoded = [], []
    sample_latents, generate = model.sample_latents, model.generate
    model.sample_latents = lambda n: drawn.append(sample_latents(n)) or drawn[-1]
    model.generate = lambda z, condition=None: decoded.append(z.numpy().copy()) or generate(z)

    def quadrant_classifier(images, what=""):
        z = drawn[-1].numpy()
        assert len(images) == len(z)
        return np.eye(4)[(z[:, 0] > 0) * 2 + (z[:, 1] > 0)]
    monkeypatch.setattr(features, "class_probabilities", quadrant_classifier)
    grid, nrow = model.latent_arithmetic(n=600)
    z = drawn[-1].numpy()
    means = {k: z[(z[:, 0] > 0) * 2 + (z[:, 1] > 0) == k].mean(0) for k in range(4)}
    triplets = [(0, 1, 2), (1, 2, 3), (2, 3, 0), (3, 0, 1)]      # 4 classes: 4 rows, not 6
    plain = arithmetic_codes(means, triplets, rng=np.random.default_rng(0))
    assert nrow == 8 and grid.shape == (32, 1, 28, 28)
    # each code scaled onto the sphere of radius sqrt(d) = sqrt(2), its direction kept
    np.testing.assert_allclose(np.linalg.norm(decoded[-1], axis=1), math.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(decoded[-1], plain * (math.sqrt(2) / np.linalg.norm(
        plain, axis=1, keepdims=True)), rtol=1e-5)
    result = means[0] - means[1] + means[2]
    np.testing.assert_allclose(decoded[-1][3], result * math.sqrt(2) / np.linalg.norm(result),
                               rtol=1e-5)
    assert 0.0 <= grid.numpy().min() and grid.numpy().max() <= 1.0
    # fewer than three classes with a mean: no figure
    monkeypatch.setattr(features, "class_probabilities",
                        lambda images, what="": np.eye(2)[np.zeros(len(images), int)])
    assert model.latent_arithmetic(n=50) is None


def test_figures_add_latent_arithmetic_for_unconditional_28x28_models():
    model = ng.load_pretrained("gan")
    model.eval()
    with ng.random.fork_rng(0):
        figures = model.figures()
    grid, nrow = figures["latent_arithmetic"]
    assert nrow == 8 and grid.shape == (6 * 8, 1, 28, 28)
    assert tiny_dcgan().figures().keys() == {"interpolation_linear", "interpolation_slerp"}


# ---------------------------------------------------------------- bad input
class ConditionedGAN(GAN):
    def sample_condition(self, n, labels=None):
        return labels


class OwnGeneratorLoss(GAN):
    def generator_loss(self, fake, condition):
        loss, logs = super().generator_loss(fake, condition)
        return loss + 1.0, logs


class OwnDiscriminate(GAN):
    def discriminate(self, x, condition=None):
        return super().discriminate(x * 2, condition)


@pytest.mark.parametrize("make, kwargs, match", [
    (tiny_dcgan, {"real_label": 0.9, "loss": "wasserstein"},
     "real_label moves D's probability targets, and the 'wasserstein' game"),
    (tiny_dcgan, {"real_label": 0.9, "loss": "least-squares"}, "'least-squares' game"),
    (tiny_dcgan, {"flip_labels": 0.1, "loss": "hinge"}, "flip_labels moves .* 'hinge' game"),
    (tiny_dcgan, {"real_label": 0.5}, r"real_label .* must be a number in \(0.5, 1.0\]"),
    (tiny_dcgan, {"real_label": 1.1}, r"real_label .* \(0.5, 1.0\]"),
    (tiny_dcgan, {"real_label": True}, r"real_label .* got True"),
    (tiny_dcgan, {"flip_labels": 0.5}, r"flip_labels .* must be a number in \(0.0, 0.5\)"),
    (tiny_dcgan, {"flip_labels": -0.1}, r"flip_labels"),
    (tiny_dcgan, {"instance_noise": 0.1}, "instance_noise needs instance_noise_steps"),
    (tiny_dcgan, {"instance_noise_steps": 10}, "instance_noise_steps without instance_noise"),
    (tiny_dcgan, {"instance_noise": -1.0, "instance_noise_steps": 10}, "instance_noise"),
    (tiny_dcgan, {"instance_noise": 0.1, "instance_noise_steps": 0}, "instance_noise_steps"),
    (tiny_dcgan, {"generator_noise": -0.1}, "generator_noise"),
    (tiny_dcgan, {"replay": 1.0}, r"replay .* \(0.0, 1.0\)"),
    (tiny_dcgan, {"replay": 0.5, "replay_size": 0}, "replay_size must be a positive int"),
    (tiny_dcgan, {"mixed_batches": "yes"}, "mixed_batches must be true or false"),
    (point_gan, {"mixed_batches": True}, "mixed_batches .* no batch norm .* do nothing"),
    (tiny_dcgan, {"minibatch_kernels": -2}, "minibatch_kernels must be a positive int"),
    (tiny_dcgan, {"minibatch_kernels": 4, "penalty": "wgan-gp", "critic_norm": "layer",
                  "loss": "wasserstein"}, "penalty .* MinibatchDiscrimination mixes"),
    (tiny_dcgan, {"d_optimizer": "adagrad"}, "d_optimizer must be one of adam, rmsprop, sgd"),
    (tiny_dcgan, {"d_lr_ratio": 0}, "d_lr_ratio .* positive number"),
    (tiny_dcgan, {"d_lr_ratio": -4.0}, "d_lr_ratio"),
    (tiny_dcgan, {"optimizer": "rmsprop", "d_optimizer": "sgd", "betas": (0.5, 0.9)},
     "betas are Adam's"),
])
def test_tricks_that_do_not_apply_or_are_out_of_range_raise(make, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_tricks_the_model_cannot_honour_raise():
    with pytest.raises(ValueError, match="experience replay .* conditions its generator"):
        ConditionedGAN(image_shape=(2,), hidden=(8,), replay=0.5)
    with pytest.raises(ValueError, match="feature_matching replaces the generator's loss"):
        OwnGeneratorLoss(image_shape=(2,), hidden=(8,), feature_matching=True)
    with pytest.raises(ValueError, match="OwnDiscriminate.discriminate changes it"):
        OwnDiscriminate(image_shape=(2,), hidden=(8,), feature_matching=True)
    flat = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))
    with pytest.raises(ValueError, match="generator_noise goes after G's hidden activations"):
        AdversarialModel(nn.Sequential(nn.Linear(2, 4), nn.Unflatten(1, (4,))), flat,
                         latent_dim=2, sample_shape=(4,), generator_noise=0.1)
    with pytest.raises(ValueError, match="minibatch_kernels needs .* ends in Tanh"):
        AdversarialModel(nn.Linear(2, 4), nn.Sequential(nn.Linear(4, 1), nn.Tanh()),
                         latent_dim=2, sample_shape=(4,), minibatch_kernels=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'label_smoothing'"):
        tiny_dcgan(label_smoothing=0.1)

    class OwnLoss(GAN):                      # a D loss that never asks for the game's targets
        def discriminator_loss(self, real, labels, fake, condition):
            return (self.discriminate(real) - self.discriminate(fake)).mean(), {}
    model = OwnLoss(image_shape=(2,), hidden=(8,), k=1, real_label=0.9)
    with pytest.raises(ValueError, match="OwnLoss.discriminator_loss does not call"):
        model.training_step((ng.randn(4, 2), None), model.configure_optimizers(1e-3))
