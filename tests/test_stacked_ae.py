"""Stacked denoising autoencoders (nanogen.models.autoencoders.stacked): the stage schedule by
update count, greedy stages that train one layer at a time, the losses and metrics against
NumPy, the code statistics behind sample(), exact resume mid-stage, and the error messages.
Tiny stacks on 4x4 images."""
import numpy as np
import pytest

import nanogen as ng
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import get_model_spec
from nanogen.models.autoencoders.corruption import mask_noise
from nanogen.models.autoencoders.stacked import StackedAutoencoder
from nanogen.training import train

SHAPE = (1, 4, 4)


def tiny(seed=0, sizes=(6, 3), **kwargs):
    ng.manual_seed(seed)
    return StackedAutoencoder(image_shape=SHAPE, hidden_sizes=list(sizes), **kwargs)


def images(n, seed=0):
    return np.random.default_rng(seed).random((n, *SHAPE)).astype(np.float32)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def cross_entropy(logits, t):
    """Eq. (2) per row, directly: -sum t log sigma(l) + (1 - t) log(1 - sigma(l))."""
    p = sigmoid(logits.astype(np.float64))
    return -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum(1)


def weights(linear):
    return linear.weight.detach().numpy().astype(np.float64), \
        linear.bias.detach().numpy().astype(np.float64)


def np_linear(linear, h):
    w, b = weights(linear)
    return h @ w.T + b


# ---------------------------------------------------------------- the stages
def test_the_stage_follows_the_update_count():
    model = tiny(pretrain_steps=2)
    optimizers = model.configure_optimizers(1e-2)
    stages = []
    for step in range(7):
        stages.append(model.stage())
        logs = model.training_step((ng.tensor(images(4, step)), None), optimizers)
        assert logs["stage"] == stages[-1] + 1
    assert stages == [0, 0, 1, 1, 2, 2, 2]               # layer 1, layer 2, then fine-tuning
    assert model.updates.item() == 7
    assert tiny(pretrain_steps=0).stage() == 2            # no pretraining: fine-tune at once


def parameters_of(module):
    return [p.detach().numpy().copy() for p in module.parameters()]


def test_pretraining_changes_only_the_active_layer_and_fine_tuning_all():
    model = tiny(pretrain_steps=2, sizes=(6, 5, 3))
    optimizers = model.configure_optimizers(1e-2)
    layers = [(model.encoders[l], model.decoders[l]) for l in range(3)]
    for step in range(8):
        stage = model.stage()
        before = [parameters_of(e) + parameters_of(d) for e, d in layers]
        model.training_step((ng.tensor(images(4, step)), None), optimizers)
        after = [parameters_of(e) + parameters_of(d) for e, d in layers]
        for l in range(3):
            changed = [not np.array_equal(a, b) for a, b in zip(before[l], after[l])]
            if stage == 3 or stage == l:                  # fine-tuning, or layer l's stage
                assert all(changed), (step, l)
            else:
                assert not any(changed), (step, l)


# ---------------------------------------------------------------- losses and metrics vs NumPy
def test_the_layer_loss_reconstructs_the_clean_input_from_the_masked_one():
    model = tiny(noise=0.5)
    h = np.random.default_rng(1).random((5, 6)).astype(np.float32)
    ng.manual_seed(3)
    loss = model.layer_loss(ng.tensor(h), 1).item()
    ng.manual_seed(3)
    masked = mask_noise(ng.tensor(h), 0.5).numpy().astype(np.float64)   # the same draw
    assert 0 < (masked == 0).mean() < 1
    code = sigmoid(np_linear(model.encoders[1], masked))
    expected = cross_entropy(np_linear(model.decoders[1], code), h).mean()
    assert loss == pytest.approx(expected, rel=1e-5)


def np_autoencode(model, v):
    h = v.astype(np.float64)
    for encoder in model.encoders:
        h = sigmoid(np_linear(encoder, h))
    code = h
    for l in reversed(range(len(model.decoders))):
        h = np_linear(model.decoders[l], h)
        if l > 0:
            h = sigmoid(h)
    return code, h


def test_the_fine_tuning_loss_and_the_metrics_against_numpy():
    model = tiny(seed=4)
    x = images(6, 2)
    v = x.reshape(6, -1)
    code, logits = np_autoencode(model, v)
    loss, logs = model.loss(ng.tensor(x))
    assert loss.item() == pytest.approx(cross_entropy(logits, v).mean(), rel=1e-5)
    assert logs["reconstruction_mse"] == pytest.approx(((sigmoid(logits) - v) ** 2).mean(),
                                                       rel=1e-5)
    np.testing.assert_allclose(model.codes(ng.tensor(x)).numpy(), code, rtol=1e-5)
    np.testing.assert_allclose(model.reconstruct(ng.tensor(x)).numpy().reshape(6, -1),
                               sigmoid(logits), rtol=1e-5)
    loader = DataLoader(TensorDataset(x, np.zeros(6, np.int64)), batch_size=4)
    metrics = model.evaluate(loader)
    assert metrics["num_examples"] == 6
    assert metrics["reconstruction_bce_nats"] == pytest.approx(cross_entropy(logits, v).mean(),
                                                               rel=1e-5)
    assert metrics["reconstruction_mse"] == pytest.approx(((sigmoid(logits) - v) ** 2).mean(),
                                                          rel=1e-5)


def test_fine_tuning_lowers_the_reconstruction_error():
    model = tiny(pretrain_steps=0, sizes=(8, 4))
    optimizers = model.configure_optimizers(3e-2)
    x = ng.tensor((images(8, 5) < 0.5).astype(np.float32))   # binary: the floor is 0 nats
    first = model.training_step((x, None), optimizers)["loss"]
    for _ in range(100):
        last = model.training_step((x, None), optimizers)["loss"]
    assert last < first / 2


# ---------------------------------------------------------------- codes and samples
def test_the_code_statistics_are_warmed_up_moving_averages():
    model = tiny(code_decay=0.9)
    rng = np.random.default_rng(0)
    mean, second = np.zeros(3), np.zeros((3, 3))
    for n in range(12):
        codes = rng.random((5, 3))
        model._track_codes(ng.tensor(codes.astype(np.float32)))
        model.updates.copy_(model.updates + 1)
        decay = min(0.9, (1 + n) / (10 + n))
        mean = decay * mean + (1 - decay) * codes.mean(0)
        second = decay * second + (1 - decay) * codes.T @ codes / 5
    np.testing.assert_allclose(model.code_mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(model.code_second_moment.numpy(), second, rtol=1e-5)


def test_sampled_codes_follow_the_fitted_gaussian():
    model = tiny()
    mean = np.array([0.2, 0.5, 0.7])
    a = np.array([[0.1, 0.0, 0.0], [0.05, 0.2, 0.0], [0.0, -0.1, 0.15]])
    cov = a @ a.T
    model.code_mean.copy_(ng.tensor(mean.astype(np.float32)))
    model.code_second_moment.copy_(ng.tensor((cov + np.outer(mean, mean)).astype(np.float32)))
    ng.manual_seed(0)
    z = model.sample_codes(20000).numpy().astype(np.float64)
    assert np.abs(z.mean(0) - mean).max() < 4 * 0.2 / np.sqrt(20000)
    np.testing.assert_allclose(np.cov(z.T), cov + 1e-5 * np.eye(3), atol=2e-3)
    samples = model.sample(5).numpy()
    assert samples.shape == (5, *SHAPE) and samples.min() > 0 and samples.max() < 1


def test_figures_pair_each_image_with_its_reconstruction():
    model = tiny()
    x = ng.tensor(images(3))
    pairs, nrow = model.figures(x)["reconstructions"]
    assert pairs.shape == (6, *SHAPE) and nrow == 6
    np.testing.assert_array_equal(pairs.numpy()[::2], x.numpy())
    np.testing.assert_allclose(pairs.numpy()[1::2], model.reconstruct(x).numpy())


# ---------------------------------------------------------------- resume
def run(out_dir, steps, init_seed=0, resume=False):
    ng.manual_seed(init_seed)
    model = StackedAutoencoder(image_shape=SHAPE, hidden_sizes=[6, 3], pretrain_steps=3)
    loader = DataLoader(TensorDataset(images(20, 1), np.zeros(20, np.int64)),
                        batch_size=4, shuffle=True, seed=1)
    train(model, loader, steps=steps, out_dir=out_dir, config={"model": "stacked-ae"}, lr=1e-2,
          progress=False, checkpoint_every=1, sample_every=1000, resume=resume)
    return model


@pytest.mark.parametrize("cut", [1, 4, 7])          # mid layer 1, mid layer 2, mid fine-tuning
def test_resume_mid_stage_is_exact(tmp_path, cut):
    straight = run(tmp_path / "a", 9)
    run(tmp_path / "b", cut)
    broken = run(tmp_path / "b", 9, init_seed=9, resume=True)
    for key, value in straight.state_dict().items():
        assert np.array_equal(value.numpy(), broken.state_dict()[key].numpy()), key
    assert broken.updates.item() == 9


# ---------------------------------------------------------------- registry and errors
def test_the_registered_model_builds_with_its_defaults():
    spec = get_model_spec("stacked-ae")
    model = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
    assert model.data_transform == "unit"
    assert model.pretrain_steps * model.num_layers < spec.steps     # fine-tuning gets steps too
    assert model.codes(ng.tensor(np.zeros((2, 1, 28, 28), np.float32))).shape == (2, 64)


@pytest.mark.parametrize("kwargs, message", [
    ({"hidden_sizes": []}, "hidden_sizes must be a non-empty list"),
    ({"hidden_sizes": 5}, "hidden_sizes must be a non-empty list"),
    ({"hidden_sizes": [4, 0]}, "hidden must be a sequence of positive ints"),
    ({"pretrain_steps": -1}, "pretrain_steps must be a non-negative int"),
    ({"pretrain_steps": 2.5}, "pretrain_steps must be a non-negative int"),
    ({"corruption": "blur"}, "StackedAutoencoder: unknown corruption 'blur'"),
    ({"noise": 1.5}, r"StackedAutoencoder: mask_noise: fraction must be a number in \[0, 1"),
    ({"code_decay": 1.0}, r"code_decay must be in \[0, 1\)"),
    ({"image_shape": (4, 4)}, r"image_shape must be \(C, H, W\)"),
])
def test_bad_settings_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        StackedAutoencoder(**{"image_shape": SHAPE, **kwargs})
    assert "\n" not in str(info.value)


def test_images_of_the_wrong_shape_are_refused_in_one_line():
    model = tiny()
    with pytest.raises(ValueError, match=r"StackedAutoencoder.codes: expected images of shape "
                                         r"\(N, 1, 4, 4\), got \(2, 1, 5, 5\)"):
        model.codes(ng.tensor(np.zeros((2, 1, 5, 5), np.float32)))
    with pytest.raises(ValueError, match="training_step: expected images"):
        model.training_step((ng.tensor(np.zeros((2, 16), np.float32)), None),
                            model.configure_optimizers(1e-3))
