"""The autoencoder, the denoising autoencoder and the sparse autoencoder: each loss against a
direct NumPy computation, the corruption reaching the encoder but not the target, the sparsity
penalties and their effect, the running code statistics and the samples drawn from them, the
evaluation metrics, exact resume, the pictures, the registry and the error messages.  Tiny
models on 4x4 / 8x8 images."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import ImageShapeError, get_model_spec
from nanogen.models.autoencoders import ae as ae_module
from nanogen.models.autoencoders.ae import Autoencoder
from nanogen.models.autoencoders.corruption import gaussian_noise, mask_noise
from nanogen.models.autoencoders.denoising import DenoisingAutoencoder
from nanogen.models.autoencoders.sparse import SparseAutoencoder, kl_sparsity
from nanogen.testing import gradcheck
from nanogen.training import train

from .test_vae import stripe_patterns


def tiny(cls=Autoencoder, image_shape=(1, 8, 8), seed=0, **kwargs):
    ng.manual_seed(seed)
    if kwargs.get("architecture", "mlp" if cls is SparseAutoencoder else "conv") == "conv":
        kwargs.setdefault("channels", (4,))
    else:
        kwargs.setdefault("hidden", (6,))
    kwargs.setdefault("code_dim", 3)
    return cls(image_shape=image_shape, **kwargs)


def grey_images(n, shape=(1, 8, 8), seed=0, dtype=np.float64):
    return ng.tensor(np.random.default_rng(seed).random((n, *shape)).astype(dtype))


def numpy_bce(logits, x):
    """-sum_i [x_i log sigma(l_i) + (1 - x_i) log(1 - sigma(l_i))] per image, from its
    definition (log sigma(l) = -log(1 + e^-l), log(1 - sigma(l)) = -log(1 + e^l))."""
    logits, x = logits.reshape(len(logits), -1), x.reshape(len(x), -1)
    return -(x * -np.logaddexp(0.0, -logits) + (1 - x) * -np.logaddexp(0.0, logits)).sum(1)


def numpy_sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def logits_of(model, x):
    with ng.no_grad():
        return model.decode(model.encode(x)).numpy()


# ---------------------------------------------------------------- the losses against NumPy
@pytest.mark.parametrize("architecture", ["conv", "mlp"])
def test_autoencoder_loss_is_the_bernoulli_cross_entropy_per_image(architecture):
    model = tiny(architecture=architecture).double()
    x = grey_images(5)
    loss, logs = model.loss(x)
    expected = numpy_bce(logits_of(model, x), x.numpy()).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert logs == {"recon": pytest.approx(expected, rel=1e-12)}


@pytest.mark.parametrize("corruption, level, draw", [("mask", 0.5, mask_noise),
                                                     ("gaussian", 0.3, gaussian_noise)])
def test_denoising_loss_rebuilds_the_clean_image_from_a_corrupted_one(corruption, level, draw):
    model = tiny(DenoisingAutoencoder, corruption=corruption, level=level).double()
    x = grey_images(6, seed=1)
    ng.manual_seed(3)
    noisy = draw(x, level)                       # the draw the loss makes from the same seed
    ng.manual_seed(3)
    loss, _ = model.loss(x)
    logits = logits_of(model, noisy)
    expected = numpy_bce(logits, x.numpy()).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # the corruption changed the input, and the target is the clean image, not the corrupted one
    assert not np.allclose(noisy.numpy(), x.numpy())
    assert abs(numpy_bce(logits, noisy.numpy()).mean() - expected) > 1e-3
    assert abs(numpy_bce(logits_of(model, x), x.numpy()).mean() - expected) > 1e-3
    # a fresh corruption at every call
    assert model.loss(x)[0].item() != loss.item()


def test_kl_sparsity_against_numpy_and_zero_at_the_target():
    rng = np.random.default_rng(4)
    h = rng.uniform(0.01, 0.99, (7, 5))
    rho = 0.1
    rho_hat = h.mean(0)
    expected = (rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat))).sum()
    assert kl_sparsity(ng.tensor(h), rho).item() == pytest.approx(expected, rel=1e-12)
    # every unit's mean at rho (whatever the single activations): no penalty
    at_target = np.full((4, 3), rho) + np.array([[0.05], [-0.05], [0.02], [-0.02]])
    assert abs(kl_sparsity(ng.tensor(at_target), rho).item()) < 1e-12
    assert kl_sparsity(ng.tensor(h), rho).item() > 0.1


def test_kl_sparsity_gradient():
    h = ng.tensor(np.random.default_rng(5).uniform(0.05, 0.95, (4, 3)), requires_grad=True)
    assert gradcheck(lambda h: kl_sparsity(h, 0.2), [h])


@pytest.mark.parametrize("penalty", ["kl", "l1"])
def test_sparse_loss_is_cross_entropy_plus_weighted_penalty(penalty):
    model = tiny(SparseAutoencoder, penalty=penalty, rho=0.2, weight=0.7, code_dim=4).double()
    x = grey_images(5, seed=2)
    loss, logs = model.loss(x)
    # the code from the encoder's weights directly: h = sigmoid(W2 relu(W1 x + b1) + b2)
    params = [p.detach().numpy() for p in model.encoder.parameters()]
    (w1, b1), (w2, b2) = params[:2], params[2:]
    flat = x.numpy().reshape(5, -1)
    h = numpy_sigmoid(np.maximum(flat @ w1.T + b1, 0.0) @ w2.T + b2)
    np.testing.assert_allclose(model.codes(x).numpy(), h, rtol=1e-12)
    if penalty == "kl":
        rho_hat = h.mean(0)
        term = (0.2 * np.log(0.2 / rho_hat) + 0.8 * np.log(0.8 / (1 - rho_hat))).sum()
    else:
        term = np.abs(h).sum(1).mean()
    recon = numpy_bce(logits_of(model, x), x.numpy()).mean()
    assert loss.item() == pytest.approx(recon + 0.7 * term, rel=1e-12)
    assert logs["recon"] == pytest.approx(recon, rel=1e-12)
    assert logs["sparsity"] == pytest.approx(term, rel=1e-12)
    assert logs["mean_activation"] == pytest.approx(h.mean(), rel=1e-12)


def test_sparse_loss_gradient_with_respect_to_the_input():
    model = tiny(SparseAutoencoder, image_shape=(1, 4, 4), code_dim=5, hidden=(4,)).double()
    x = ng.tensor(np.random.default_rng(6).uniform(0.1, 0.9, (3, 1, 4, 4)), requires_grad=True)
    assert gradcheck(lambda x: model.loss(x)[0], [x])


# ---------------------------------------------------------------- training
def test_a_few_training_steps_lower_the_reconstruction_error():
    model = tiny(code_dim=2, channels=(8,))
    opts = model.configure_optimizers(lr=1e-2)
    x = stripe_patterns(32)
    first = model.training_step((x, None), opts)
    for _ in range(60):
        logs = model.training_step((x, None), opts)
    # 64 binary pixels start near 64 ln 2 = 44 nats; four patterns can be rebuilt exactly
    assert first["recon"] > 35.0
    assert logs["recon"] < 5.0
    assert set(logs) == {"loss", "recon"}


def test_the_kl_penalty_pulls_the_mean_activation_to_rho():
    """On the four patterns, the same sparse autoencoder with and without the penalty: with it
    the units' mean activation settles near rho, without it far above."""
    x = stripe_patterns(64, seed=1)
    means = {}
    for weight in (0.0, 3.0):
        model = tiny(SparseAutoencoder, code_dim=16, hidden=(), rho=0.25, weight=weight)
        opts = model.configure_optimizers(lr=1e-2)
        for _ in range(150):
            model.training_step((x, None), opts)
        means[weight] = model.codes(x).numpy().mean()
    assert 0.2 < means[3.0] < 0.35
    assert means[0.0] > 0.45


def test_running_code_statistics_follow_the_training_codes():
    model = tiny(code_dim=3).double()
    opts = model.configure_optimizers(lr=1e-2)
    m = model.code_momentum
    mean, second = np.zeros(3), np.eye(3)
    for seed in range(4):
        x = grey_images(5, seed=seed)
        h = model.codes(x).numpy()                  # the codes this step trains on
        mean = (1 - m) * mean + m * h.mean(0)
        second = (1 - m) * second + m * (h.T @ h) / len(h)
        model.training_step((x, None), opts)
    np.testing.assert_allclose(model.code_mean.numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(model.code_second_moment.numpy(), second, rtol=1e-12)
    assert "code_mean" in model.state_dict() and "code_second_moment" in model.state_dict()


def test_sampled_codes_have_the_running_mean_and_covariance():
    model = tiny(code_dim=3)
    mu = np.array([1.0, -2.0, 0.5])
    cov = np.array([[1.0, 0.6, 0.0], [0.6, 2.0, -0.3], [0.0, -0.3, 0.25]])
    model.code_mean.copy_(ng.tensor(mu.astype(np.float32)))
    model.code_second_moment.copy_(ng.tensor((cov + np.outer(mu, mu)).astype(np.float32)))
    ng.manual_seed(7)
    with ng.no_grad():
        h = model.sample_codes(40000).numpy().astype(np.float64)
    assert h.shape == (40000, 3)
    assert np.all(np.abs(h.mean(0) - mu) < 5 * np.sqrt(np.diag(cov) / len(h)))
    np.testing.assert_allclose(np.cov(h.T), cov, atol=0.04)
    # before training: the standard normal
    fresh = tiny(code_dim=3)
    ng.manual_seed(8)
    with ng.no_grad():
        z = fresh.sample_codes(20000).numpy()
    np.testing.assert_allclose(np.cov(z.T), np.eye(3), atol=0.05)


def run_denoising(out_dir, steps, init_seed=0, resume=False):
    model = tiny(DenoisingAutoencoder, seed=init_seed, code_dim=2)
    images = np.random.default_rng(9).random((24, 1, 8, 8)).astype(np.float32)
    loader = DataLoader(TensorDataset(images, np.zeros(24, np.int64)), batch_size=4,
                        shuffle=True, seed=1)
    train(model, loader, steps=steps, out_dir=out_dir, config={"model": "denoising-ae"},
          lr=1e-2, progress=False, checkpoint_every=1, sample_every=1000, resume=resume)
    return model


def test_a_resumed_denoising_run_corrupts_and_accumulates_exactly_as_a_straight_one(tmp_path):
    straight = run_denoising(tmp_path / "a", 6)
    run_denoising(tmp_path / "b", 3)
    resumed = run_denoising(tmp_path / "b", 6, init_seed=123, resume=True)
    for key, value in straight.state_dict().items():
        assert np.array_equal(value.numpy(), resumed.state_dict()[key].numpy()), key
    assert not np.allclose(straight.code_mean.numpy(), 0.0)


# ---------------------------------------------------------------- evaluation
def test_evaluate_against_numpy_and_with_a_reproducible_corruption():
    model = tiny().double()
    batches = [(grey_images(4, seed=s), None) for s in range(3)]
    ng.manual_seed(10)
    metrics = model.evaluate(batches)
    assert metrics["num_examples"] == 12 and metrics["eval_corruption"] == "mask 0.3"
    x = np.concatenate([b.numpy() for b, _ in batches])
    logits = np.concatenate([logits_of(model, b) for b, _ in batches])
    assert metrics["reconstruction_mse"] == pytest.approx(
        ((x - numpy_sigmoid(logits)) ** 2).mean(), rel=1e-10)
    assert metrics["reconstruction_bce_nats"] == pytest.approx(numpy_bce(logits, x).mean(),
                                                               rel=1e-10)
    # the corrupted images: masking noise from the fixed seed, batch after batch
    ng.manual_seed(model.eval_corruption_seed)
    noisy = [mask_noise(b, 0.3) for b, _ in batches]
    recon = np.concatenate([model.reconstruct(b).numpy() for b in noisy])
    expected = ((x - recon) ** 2).mean()
    assert metrics["corrupted_reconstruction_mse"] == pytest.approx(expected, rel=1e-10)
    # (another mask gives another number: the check above sees which mask was drawn)
    ng.manual_seed(model.eval_corruption_seed + 1)
    other = np.concatenate([model.reconstruct(mask_noise(b, 0.3)).numpy() for b, _ in batches])
    assert ((x - other) ** 2).mean() != pytest.approx(expected, rel=1e-8)
    # the same whatever the global generator holds, and the generator left as it was
    ng.manual_seed(11)
    after_seed = ng.rand(3).numpy()
    ng.manual_seed(11)
    assert model.evaluate(batches) == metrics
    np.testing.assert_array_equal(ng.rand(3).numpy(), after_seed)
    with pytest.raises(ValueError, match="no examples"):
        model.evaluate([])


def test_sparse_evaluate_reports_mean_activation_and_target():
    model = tiny(SparseAutoencoder, rho=0.1, code_dim=6).double()
    batches = [(grey_images(3, seed=s), None) for s in range(2)]
    metrics = model.evaluate(batches)
    h = np.concatenate([model.codes(b).numpy() for b, _ in batches])
    assert metrics["mean_activation"] == pytest.approx(h.mean(), rel=1e-10)
    assert metrics["active_fraction"] == pytest.approx((h > 0.5).mean(), rel=1e-10)
    assert metrics["target_rho"] == 0.1
    assert {"reconstruction_mse", "corrupted_reconstruction_mse"} <= set(metrics)


def test_codes_are_the_encoder_output_in_chunks(monkeypatch):
    model = tiny(SparseAutoencoder)
    x = grey_images(7, dtype=np.float32)
    with ng.no_grad():
        whole = model.encode(x).numpy()
    monkeypatch.setattr(ae_module, "_CODES_CHUNK", 3)
    codes = model.codes(x)
    assert not codes.requires_grad and codes.shape == (7, 3)
    np.testing.assert_allclose(codes.numpy(), whole, rtol=1e-6)
    assert np.all((whole > 0) & (whole < 1))         # sigmoid units


# ---------------------------------------------------------------- shapes and pictures
@given(c=st.sampled_from([1, 3]), h=st.sampled_from([4, 8]), w=st.sampled_from([4, 8]),
       n=st.integers(1, 3), code_dim=st.integers(1, 4),
       cls=st.sampled_from([Autoencoder, DenoisingAutoencoder, SparseAutoencoder]),
       architecture=st.sampled_from(["conv", "mlp"]))
def test_shapes_and_ranges(c, h, w, n, code_dim, cls, architecture):
    model = tiny(cls, (c, h, w), code_dim=code_dim, architecture=architecture)
    x = grey_images(n, (c, h, w), dtype=np.float32)
    assert model.codes(x).shape == (n, code_dim)
    with ng.no_grad():
        assert model.decode(model.encode(x)).shape == (n, c, h, w)
    for images, count in ((model.reconstruct(x), n), (model.sample(4), 4)):
        assert images.shape == (count, c, h, w)
        assert images.min().item() >= 0.0 and images.max().item() <= 1.0
        assert not images.requires_grad


def test_figures_pair_and_triple_the_test_images():
    model = tiny()
    x = grey_images(5, dtype=np.float32)
    figures = model.figures(x)
    assert set(figures) == {"reconstructions", "denoising"}
    pairs, nrow = figures["reconstructions"]
    assert pairs.shape == (10, 1, 8, 8) and nrow == 10
    np.testing.assert_array_equal(pairs.numpy()[0::2], x.numpy())
    np.testing.assert_allclose(pairs.numpy()[1::2], model.reconstruct(x).numpy(), rtol=1e-6)
    triples, nrow = figures["denoising"]
    assert triples.shape == (15, 1, 8, 8) and nrow == 15
    clean, noisy, recon = (triples.numpy()[i::3] for i in range(3))
    np.testing.assert_array_equal(clean, x.numpy())
    assert np.all((noisy == 0) | (noisy == clean)) and (noisy == 0).mean() > 0.1
    np.testing.assert_allclose(recon, model.reconstruct(ng.tensor(noisy)).numpy(), rtol=1e-6)
    many, nrow = model.figures(grey_images(40, dtype=np.float32))["denoising"]
    assert many.shape[0] == 96 and nrow == 24               # at most 32 triples, 8 per row


def test_sparse_figures_show_the_encoder_filters():
    model = tiny(SparseAutoencoder, hidden=(), code_dim=5)
    figures = model.figures(grey_images(2, dtype=np.float32))
    filters, nrow = figures["filters"]
    assert filters.shape == (5, 1, 8, 8) and nrow == 10
    weight = model.encoder.net[1].weight.detach().numpy()
    scaled = (weight - weight.min(1, keepdims=True)) / np.ptp(weight, 1, keepdims=True)
    np.testing.assert_allclose(filters.numpy().reshape(5, -1), scaled, rtol=1e-5, atol=1e-6)
    assert "filters" not in tiny(SparseAutoencoder, hidden=(6,)).figures(
        grey_images(2, dtype=np.float32))


# ---------------------------------------------------------------- the registry
@pytest.mark.parametrize("name, cls", [("ae", Autoencoder),
                                       ("denoising-ae", DenoisingAutoencoder),
                                       ("sparse-ae", SparseAutoencoder)])
def test_registered_models(name, cls):
    spec = get_model_spec(name)
    model = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
    assert type(model) is cls and model.data_transform == "unit"
    assert spec.steps <= 3000 and spec.batch_size == 64
    assert model.sample(2).shape == (2, 1, 28, 28)
    assert spec.summary and "\n" not in spec.summary


# ---------------------------------------------------------------- errors
def test_clear_errors_for_wrong_shapes():
    model = tiny()
    with pytest.raises(ValueError, match=r"Autoencoder.encode: expected images of shape "
                                         r"\(N, 1, 8, 8\), got \(2, 1, 28, 28\)"):
        model.encode(ng.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"expected images.*got \(1, 8, 8\)"):
        model.loss(ng.zeros(1, 8, 8))
    with pytest.raises(ValueError, match=r"decode: expected codes of shape \(N, 3\), got "
                                         r"\(2, 5\)"):
        model.decode(ng.zeros(2, 5))
    with pytest.raises(ValueError, match="n must be a positive int"):
        model.sample(0)
    with pytest.raises(ValueError, match=r"SparseAutoencoder.evaluate: expected images"):
        tiny(SparseAutoencoder).evaluate([(ng.zeros(2, 1, 4, 4), None)])


def test_clear_errors_for_bad_configurations():
    with pytest.raises(ImageShapeError, match=r"Autoencoder with 2 stride-2 levels needs H and "
                       r"W divisible by 4, got 10x10 \(12x12 would do\)"):
        Autoencoder(image_shape=(1, 10, 10), channels=(4, 8))
    with pytest.raises(ValueError, match="unknown architecture 'rnn'; choose one of conv, mlp"):
        Autoencoder(image_shape=(1, 8, 8), architecture="rnn")
    with pytest.raises(ValueError, match="code_dim must be a positive int"):
        Autoencoder(image_shape=(1, 8, 8), code_dim=0)
    with pytest.raises(ValueError, match="unknown corruption 'salt'; choose one of mask, "
                                         "gaussian"):
        DenoisingAutoencoder(image_shape=(1, 8, 8), corruption="salt")
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\) for mask noise, got 1.0"):
        DenoisingAutoencoder(image_shape=(1, 8, 8), level=1.0)
    with pytest.raises(ValueError, match=r"level must be in \(0, inf\) for gaussian noise"):
        DenoisingAutoencoder(image_shape=(1, 8, 8), corruption="gaussian", level=0.0)
    with pytest.raises(ValueError, match="unknown penalty 'l2'; choose one of kl, l1"):
        SparseAutoencoder(image_shape=(1, 8, 8), penalty="l2")
    with pytest.raises(ValueError, match=r"rho must be in \(0, 1\), got 0"):
        SparseAutoencoder(image_shape=(1, 8, 8), rho=0)
    with pytest.raises(ValueError, match="weight must be a non-negative number"):
        SparseAutoencoder(image_shape=(1, 8, 8), weight=-1.0)
    with pytest.raises(ValueError, match="hidden must be a sequence of positive ints"):
        Autoencoder(image_shape=(1, 8, 8), architecture="mlp", hidden=(0,))
