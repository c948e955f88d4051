"""The class-conditional GANs, CGAN and AC-GAN: the label reaches G (an embedding) and CGAN's D
(one-hot channels / features), the fakes of a discriminator update are of the real batch's
labels, AC-GAN's losses and class-head gradient against NumPy with one body pass per batch,
conditioning changes samples, both learn to draw the requested mode of ring8, evaluation
(conditional accuracy on images and on points), the registry, and one clear error for missing
labels.  Tiny networks on 8x8 images and 2-D points."""
import math

import numpy as np
import pytest

import nanogen as ng
from nanogen.data import DataLoader, load_dataset
from nanogen.data.toy import mode_centres
from nanogen.models import get_model_spec
from nanogen.models.gans.adversarial import frozen
from nanogen.models.gans.conditional import ACGAN, CGAN, label_maps

from .test_cli import assert_one_line_error, run_cli

K = 4


def tiny(cls, seed=0, **kwargs):
    ng.manual_seed(seed)
    return cls(image_shape=(1, 8, 8), **{"num_classes": K, "latent_dim": 6, "channels": (4, 8),
                                         **kwargs})


def point_model(cls, seed=0, **kwargs):
    ng.manual_seed(seed)
    return cls(image_shape=(2,), num_classes=8, **{"latent_dim": 4, "hidden": (64, 64),
                                                   **kwargs})


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return ng.tensor(rng.uniform(-1, 1, (n, 1, 8, 8)).astype(np.float32))


def labels(*values):
    return ng.tensor(np.array(values, dtype=np.int64))


def softplus(x):
    return np.logaddexp(0.0, x)


def cross_entropy(logits, y):
    logits = logits - logits.max(1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean()


def softmax(logits):
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# ---------------------------------------------------------------- the label inputs
def test_label_maps_are_constant_one_hot_channels_or_features():
    x = ng.zeros(3, 2, 4, 5)
    maps = label_maps(x, labels(2, 0, 3), K).numpy()
    assert maps.shape == (3, K, 4, 5) and maps.dtype == np.float32
    want = np.eye(K, dtype=np.float32)[[2, 0, 3]][:, :, None, None] * np.ones((1, 1, 4, 5))
    np.testing.assert_array_equal(maps, want)
    points = label_maps(ng.zeros(2, 2, dtype=ng.float64), labels(1, 3), K).numpy()
    np.testing.assert_array_equal(points, np.eye(K)[[1, 3]])


@pytest.mark.parametrize("cls", [CGAN, ACGAN])
def test_the_label_changes_the_samples_and_the_same_label_keeps_them(cls):
    model = tiny(cls)
    model.eval()
    z = model.sample_latents(1).expand(K, 6)
    with ng.no_grad():
        out = model.generate(z, labels(*range(K))).numpy()
        again = model.generate(z, labels(*range(K))).numpy()
    np.testing.assert_array_equal(out, again)
    for a in range(K):
        for b in range(a + 1, K):
            assert np.abs(out[a] - out[b]).max() > 1e-4, (a, b)


def test_cgan_discriminator_reads_the_label_as_extra_channels():
    model = tiny(CGAN)
    seen = []
    model.discriminator.body[0].register_forward_hook(
        lambda m, inputs, out: seen.append(inputs[0].detach().numpy().copy()))
    x = images(4)
    y = labels(3, 1, 0, 2)
    logits = model.discriminate(x, y)
    assert logits.shape == (4,)
    (inp,) = seen
    assert inp.shape == (4, 1 + K, 8, 8)
    np.testing.assert_array_equal(inp[:, :1], x.numpy())
    np.testing.assert_array_equal(inp[:, 1:], np.eye(K)[[3, 1, 0, 2]][:, :, None, None]
                                  * np.ones((1, 1, 8, 8)))
    other = model.discriminate(x, labels(0, 0, 0, 0)).detach().numpy()
    assert np.abs(other - logits.detach().numpy()).max() > 1e-6     # D's verdict depends on y
    with pytest.raises(ValueError, match="conditioned on the class; pass the labels"):
        model.discriminate(x)


@pytest.mark.parametrize("k", [1, 2])
def test_discriminator_updates_make_fakes_of_the_real_labels_and_g_uses_the_first_batch(k):
    model = tiny(CGAN, k=k)
    asked, judged = [], []
    model.generator.embedding.register_forward_hook(
        lambda m, inputs, out: asked.append(inputs[0].detach().numpy().copy()))
    model.discriminator.body[0].register_forward_hook(
        lambda m, inputs, out: judged.append(inputs[0][:, 1:, 0, 0].detach().numpy().argmax(1)))
    y = np.array([3, 1, 0, 2, 2, 0, 1, 3][:4 * k])
    logs = model.training_step((images(4 * k), ng.tensor(y)), model.configure_optimizers(1e-3))
    assert list(logs) == ["loss_d", "loss_g", "d_real", "d_fake"]
    for i in range(k):                           # D update i: fakes of minibatch i's labels
        mine = y[4 * i:4 * (i + 1)]
        np.testing.assert_array_equal(asked[i], mine)
        np.testing.assert_array_equal(judged[2 * i], mine)           # real, its labels
        np.testing.assert_array_equal(judged[2 * i + 1], mine)       # fake, the same labels
    np.testing.assert_array_equal(asked[k], y[:4])                   # G's update
    np.testing.assert_array_equal(judged[2 * k], y[:4])
    assert len(asked) == k + 1 and len(judged) == 2 * k + 1


def test_a_gradient_penalty_interpolates_between_a_real_and_a_fake_of_the_same_class():
    model = tiny(CGAN, penalty="wgan-gp", critic_norm="layer", loss="wasserstein")
    judged = []
    model.discriminator.body[0].register_forward_hook(
        lambda m, inputs, out: judged.append(inputs[0][:, 1:, 0, 0].detach().numpy().argmax(1)))
    y = np.array([3, 1, 0, 2])
    logs = model.training_step((images(4), ng.tensor(y)), model.configure_optimizers(1e-4))
    assert "penalty" in logs and math.isfinite(logs["penalty"])
    assert len(judged) == 4                              # real, fake, interpolates, G's fakes
    for seen in judged:
        np.testing.assert_array_equal(seen, y)


# ---------------------------------------------------------------- AC-GAN's losses
def acgan_batch():
    model = tiny(ACGAN, class_weight=0.7)
    real, fake = images(5, seed=1), images(5, seed=2)
    y, c = labels(0, 1, 2, 3, 1), labels(2, 2, 0, 1, 3)
    return model, real, fake, y, c


def test_acgan_losses_match_eq_6_and_the_body_runs_once_per_batch():
    model, real, fake, y, c = acgan_batch()
    calls = []
    model.discriminator.body.register_forward_hook(lambda m, i, o: calls.append(1))
    with ng.no_grad():
        (lr, cr), (lf, cf) = model.discriminator(real), model.discriminator(fake)
    lr, cr, lf, cf = (t.numpy().astype(np.float64) for t in (lr, cr, lf, cf))
    lr, lf = lr[:, 0], lf[:, 0]
    del calls[:]
    loss_d, logs = model.discriminator_loss(real, y, fake, c)
    assert len(calls) == 2                               # one pass on the reals, one on fakes
    game_d = softplus(-lr).mean() + softplus(lf).mean()
    ce_real, ce_fake = cross_entropy(cr, y.numpy()), cross_entropy(cf, c.numpy())
    assert float(loss_d.item()) == pytest.approx(game_d + 0.7 * (ce_real + ce_fake), rel=1e-5)
    assert logs["class_loss_real"] == pytest.approx(ce_real, rel=1e-5)
    assert logs["class_loss_fake"] == pytest.approx(ce_fake, rel=1e-5)
    assert logs["class_accuracy_real"] == pytest.approx(np.mean(cr.argmax(1) == y.numpy()))
    del calls[:]
    with frozen(model.discriminator):
        loss_g, logs_g = model.generator_loss(fake, c)
    assert len(calls) == 1
    assert float(loss_g.item()) == pytest.approx(softplus(-lf).mean() + 0.7 * ce_fake, rel=1e-5)
    assert logs_g["class_loss_g"] == pytest.approx(ce_fake, rel=1e-5)


def test_acgan_class_head_gradient_is_softmax_minus_one_hot_on_reals_and_fakes():
    model, real, fake, y, c = acgan_batch()
    with ng.no_grad():
        cr, cf = (model.discriminator(t)[1].numpy().astype(np.float64) for t in (real, fake))
    loss, _ = model.discriminator_loss(real, y, fake, c)
    loss.backward()
    head = model.discriminator.auxiliary
    eye = np.eye(K)
    want = 0.7 * ((softmax(cr) - eye[y.numpy()]).mean(0) + (softmax(cf) - eye[c.numpy()]).mean(0))
    np.testing.assert_allclose(head.bias.grad.numpy(), want, rtol=1e-4, atol=1e-6)
    # the source head gets only the game's gradient: sigma(l) - 1 on reals, sigma(l) on fakes
    with ng.no_grad():
        lr, lf = (model.discriminator(t)[0].numpy()[:, 0].astype(np.float64) for t in (real, fake))
    sig = lambda v: 1 / (1 + np.exp(-v))                                      # noqa: E731
    want_source = (sig(lr) - 1).mean() + sig(lf).mean()
    np.testing.assert_allclose(model.discriminator.head.bias.grad.numpy(), [want_source],
                               rtol=1e-4, atol=1e-6)


def test_acgan_discriminator_ignores_the_label_and_training_moves_both_players():
    model = tiny(ACGAN)
    x = images(4)
    a = model.discriminate(x, labels(0, 1, 2, 3)).detach().numpy()
    b = model.discriminate(x, labels(3, 3, 3, 3)).detach().numpy()
    np.testing.assert_array_equal(a, b)
    before = {k: v.detach().numpy().copy() for k, v in model.named_parameters()}
    logs = model.training_step((x, labels(0, 1, 2, 3)), model.configure_optimizers(1e-3))
    assert all(math.isfinite(v) for v in logs.values())
    assert set(logs) == {"loss_d", "loss_g", "d_real", "d_fake", "class_loss_real",
                         "class_loss_fake", "class_accuracy_real", "class_loss_g"}
    for name, value in model.named_parameters():
        assert not np.array_equal(value.detach().numpy(), before[name]), name


@pytest.mark.parametrize("tricks, passes", [({}, 3),
                                            ({"instance_noise": 0.1, "instance_noise_steps": 5},
                                             3),
                                            ({"real_label": 0.9}, 3),
                                            ({"mixed_batches": True}, 4)])
def test_acgan_with_the_training_tricks_runs_the_body_once_per_batch_where_it_can(tricks,
                                                                                   passes):
    """The class logits are looked up by the tensor D was called on: instance noise and label
    smoothing keep one pass per batch; a mixed batch needs a pass of its own on the reals and
    on the fakes (2 + 1 in D's update, 1 in G's)."""
    model = tiny(ACGAN, **tricks)
    calls = []
    model.discriminator.body.register_forward_hook(lambda m, i, o: calls.append(1))
    logs = model.training_step((images(4), labels(0, 1, 2, 3)), model.configure_optimizers(1e-3))
    assert len(calls) == passes and all(math.isfinite(v) for v in logs.values())


# ---------------------------------------------------------------- learning, on ring8
@pytest.mark.parametrize("cls, steps", [(CGAN, 300), (ACGAN, 150)])
def test_trained_on_ring8_the_samples_of_each_label_land_on_its_mode(cls, steps):
    """Chance is 1/8; both reached 1.0 with seeds 0, 1 and 2 (CGAN in 300 steps, AC-GAN in
    150)."""
    model = point_model(cls, k=1)
    loader = DataLoader(load_dataset("ring8", "train"), batch_size=64, shuffle=True,
                        drop_last=True, seed=0)
    centres = mode_centres("ring8")
    requested = np.arange(800) % 8

    def accuracy():
        with ng.random.fork_rng(1):
            x = model.sample(800, y=ng.tensor(requested)).numpy()
        return np.mean(np.linalg.norm(x[:, None] - centres[None], axis=2).argmin(1)
                       == requested)

    before = accuracy()
    optimizers = model.configure_optimizers(2e-3)
    batches = iter(loader)
    for _ in range(steps):
        model.training_step(next(batches), optimizers)
    assert before < 0.3
    assert accuracy() > 0.8


# ---------------------------------------------------------------- sampling, figures, evaluation
@pytest.mark.parametrize("cls", [CGAN, ACGAN])
def test_sampling_takes_labels_or_draws_the_classes_in_turn(cls):
    model = tiny(cls)
    model.eval()
    seen = []
    model.generator.embedding.register_forward_hook(
        lambda m, inputs, out: seen.append(inputs[0].detach().numpy().copy()))
    out = model.sample(6).numpy()
    assert out.shape == (6, 1, 8, 8) and 0 <= out.min() and out.max() <= 1
    np.testing.assert_array_equal(seen[-1], [0, 1, 2, 3, 0, 1])
    model.sample(3, y=[2, 2, 1])
    np.testing.assert_array_equal(seen[-1], [2, 2, 1])
    grid, nrow = model.figures()["class_samples"]
    assert nrow == 10 and grid.shape == (K * 10, 1, 8, 8)
    np.testing.assert_array_equal(seen[-1], np.repeat(np.arange(K), 10))
    assert point_model(cls).figures() == {}


def test_state_dict_round_trip_gives_the_same_samples():
    model = tiny(CGAN)
    model.training_step((images(4), labels(0, 1, 2, 3)), model.configure_optimizers(1e-3))
    copy = tiny(CGAN, seed=5)
    copy.load_state_dict(model.state_dict())
    model.eval(), copy.eval()
    with ng.random.fork_rng(3):
        a = model.sample(4).numpy()
    with ng.random.fork_rng(3):
        b = copy.sample(4).numpy()
    np.testing.assert_array_equal(a, b)


def test_evaluate_on_images_is_the_conditional_accuracy_of_the_classifier():
    test = load_dataset("mnist5k", "test")
    by_class = {k: test.images[test.labels == k] for k in range(10)}
    ng.manual_seed(0)
    model = CGAN(image_shape=(1, 28, 28), num_classes=10, latent_dim=4, channels=(4, 8))

    def sample(n, y=None):                     # real digits of the requested classes
        counts = {}
        out = []
        for k in y.numpy():
            out.append(by_class[k][counts.get(k, 0)])
            counts[k] = counts.get(k, 0) + 1
        return ng.tensor(np.stack(out))
    model.sample = sample
    result = model.evaluate(None)
    assert result["num_conditional_samples"] == 1000
    assert result["conditional_accuracy"] > 0.9
    model.sample = lambda n, y=None: ng.tensor(np.resize(by_class[0], (n, 1, 28, 28)))  # 0s
    assert model.evaluate(None)["conditional_accuracy"] == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("cls", [CGAN, ACGAN])
def test_evaluate_on_points_adds_the_share_nearest_the_requested_mode(cls):
    model = point_model(cls)
    loader = DataLoader(load_dataset("ring8", "test"), batch_size=1000)
    centres = mode_centres("ring8")
    rng = np.random.default_rng(0)

    def sample(n, y=None):
        y = np.arange(n) % 8 if y is None else y.numpy()
        return ng.tensor(centres[(y + shift) % 8] + 0.02 * rng.standard_normal((n, 2)))
    model.sample = sample
    shift = 0
    result = model.evaluate(loader)
    assert result["modes_covered"] == 8 and result["num_conditional_samples"] == 5000
    assert result["conditional_accuracy"] == 1.0
    shift = 1                                       # every sample on its neighbour's mode
    assert model.evaluate(loader)["conditional_accuracy"] == 0.0


# ---------------------------------------------------------------- the registry and bad input
@pytest.mark.parametrize("name, cls", [("cgan", CGAN), ("acgan", ACGAN)])
def test_registered_with_the_dcgan_defaults(name, cls):
    spec = get_model_spec(name)
    assert spec.build is cls and spec.lr == 2e-4 and spec.batch_size == 64
    assert set(spec.data_kinds) == {"image", "points"}
    assert spec.for_data("points").batch_size == 256
    model = spec.build(image_shape=(1, 8, 8), num_classes=10, channels=(4, 8), latent_dim=4)
    assert model.betas == (0.5, 0.999) and model.loss_name == "non-saturating"
    assert model.conditional and model.num_classes == 10 and model.batches_per_step == 1
    points = spec.build(image_shape=(2,), num_classes=8, hidden=(8,))
    assert points.batches_per_step == 2 and points.latent_dim == 2       # the MLP GAN's


@pytest.mark.parametrize("cls", [CGAN, ACGAN])
def test_clear_errors_for_missing_or_bad_labels(cls):
    with pytest.raises(ValueError, match="needs a labelled dataset with at least 2 classes"):
        tiny(cls, num_classes=1)
    model = tiny(cls)
    optimizers = model.configure_optimizers(1e-3)
    with pytest.raises(ValueError, match=r"training_step: this model is class-conditional"):
        model.training_step((images(4), None), optimizers)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        model.training_step((images(2), labels(0, 4)), optimizers)
    with pytest.raises(ValueError, match=r"sample: expected 3 labels"):
        model.sample(3, y=[0, 1])
    with pytest.raises(ValueError, match="class-conditional; pass the labels"):
        model.generate(model.sample_latents(2))
    if cls is ACGAN:
        with pytest.raises(ValueError, match="class_weight must be a positive number"):
            tiny(cls, class_weight=0)


def test_the_command_line_refuses_a_conditional_gan_on_a_set_without_labels(tmp_path):
    status, _, err = run_cli("train", "cgan", "--dataset", "swissroll", "--steps", "1",
                             "--out", tmp_path / "run", "--no-progress")
    assert_one_line_error(status, err, "CGAN is class-conditional",
                          "at least 2 classes")
    assert not (tmp_path / "run" / "checkpoint.npz").exists()

