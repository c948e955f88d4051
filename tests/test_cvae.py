"""The conditional VAE and the conditional-accuracy metric: the labels reach both networks (the
loss against NumPy), conditioning changes samples, a trained tiny CVAE draws the requested
pattern, the pictures, evaluation, the registry, and one clear line for missing or out-of-range
labels.  Tiny models on 4x4 / 8x8 images."""
import numpy as np
import pytest

import nanogen as ng
from nanogen.data import load_dataset
from nanogen.metrics import class_probabilities, conditional_accuracy
from nanogen.models import get_model_spec
from nanogen.models.autoencoders import VAE
from nanogen.models.autoencoders.cvae import CVAE

from .test_vae import stripe_patterns


def tiny_cvae(image_shape=(1, 8, 8), num_classes=4, latent_dim=2, seed=0, **kwargs):
    ng.manual_seed(seed)
    kwargs.setdefault("channels", (4,))
    return CVAE(image_shape=image_shape, num_classes=num_classes, latent_dim=latent_dim,
                **kwargs)


def binary_images(n, shape=(1, 8, 8), seed=0):
    rng = np.random.default_rng(seed)
    return ng.tensor((rng.random((n, *shape)) < 0.4).astype(np.float32))


def labels(*values):
    return ng.tensor(np.array(values, dtype=np.int64))


# ---------------------------------------------------------------- the loss against NumPy
def numpy_mlp(network, h):
    """A fully connected stack's forward pass in NumPy (tanh between the linear layers)."""
    layers = [m for m in network.net if isinstance(m, ng.nn.Linear)]
    for i, layer in enumerate(layers):
        h = h @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()
        if i < len(layers) - 1:
            h = np.tanh(h)
    return h


def test_loss_is_the_conditional_elbo_computed_in_numpy():
    """The encoder reads x beside K constant channels of the one-hot label, the decoder z beside
    the one-hot label; recon and the analytic KL as in the VAE."""
    shape, k, d = (1, 4, 4), 3, 2
    model = tiny_cvae(shape, num_classes=k, latent_dim=d, architecture="mlp", hidden=(5,),
                      activation="tanh").double()
    x = binary_images(4, shape, seed=1).numpy().astype(np.float64)
    y = np.array([2, 0, 1, 2])
    one_hot = np.eye(k)[y]
    encoder_input = np.concatenate([x, np.broadcast_to(one_hot[:, :, None, None], (4, k, 4, 4))],
                                   axis=1).reshape(4, -1)
    out = numpy_mlp(model.encoder, encoder_input)
    mu, logvar = out[:, :d], out[:, d:]
    ng.manual_seed(2)
    eps = ng.randn(4, d, dtype=ng.float64).numpy()
    z = mu + np.exp(0.5 * logvar) * eps
    logits = numpy_mlp(model.decoder, np.concatenate([z, one_hot], axis=1))
    flat = x.reshape(4, -1)
    recon = -(flat * logits - np.logaddexp(0.0, logits)).sum(1)
    kl = 0.5 * (mu ** 2 + np.exp(logvar) - logvar - 1).sum(1)
    ng.manual_seed(2)
    loss, logs = model.loss(ng.tensor(x), ng.tensor(y))
    assert loss.item() == pytest.approx((recon + kl).mean(), rel=1e-10)
    assert logs["recon"] == pytest.approx(recon.mean(), rel=1e-10)
    assert logs["kl"] == pytest.approx(kl.mean(), rel=1e-10)


def test_conv_encoder_reads_the_label_as_constant_channels():
    """The CVAE's conv encoder is a VAE encoder on (C + K)-channel images whose extra channels
    hold the one-hot label: the same weights give the same posterior."""
    model = tiny_cvae(num_classes=3)
    plain = VAE(image_shape=(4, 8, 8), latent_dim=2, channels=(4,))
    plain.encoder.load_state_dict(model.encoder.state_dict())
    x = binary_images(2)
    y = np.array([1, 2])
    planes = np.broadcast_to(np.eye(3)[y][:, :, None, None], (2, 3, 8, 8))
    stacked = ng.tensor(np.concatenate([x.numpy(), planes], 1).astype(np.float32))
    with ng.no_grad():
        for got, want in zip(model.encode(x, ng.tensor(y)), plain.encode(stacked)):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- conditioning
def test_conditioning_changes_samples_and_the_posterior():
    model = tiny_cvae()
    draws = {}
    for cls in (0, 1, 0):
        ng.manual_seed(3)                                      # the same z for every class
        draws.setdefault(cls, []).append(model.sample(5, y=labels(*[cls] * 5)).numpy())
    np.testing.assert_array_equal(draws[0][0], draws[0][1])   # same z, same class: same images
    assert np.abs(draws[0][0] - draws[1][0]).max() > 1e-3     # same z, other class: different
    x = binary_images(2)
    with ng.no_grad():
        mu0, _ = model.encode(x, labels(0, 0))
        mu1, _ = model.encode(x, labels(1, 1))
        z = ng.zeros(1, 2)
        assert not np.allclose(model.decode(z, labels(0)).numpy(), model.decode(z, labels(3)).numpy())
    assert not np.allclose(mu0.numpy(), mu1.numpy())


def test_sample_without_labels_draws_the_classes_in_turn():
    model = tiny_cvae(num_classes=3)
    ng.manual_seed(4)
    default = model.sample(7).numpy()
    ng.manual_seed(4)
    explicit = model.sample(7, y=labels(0, 1, 2, 0, 1, 2, 0)).numpy()
    np.testing.assert_array_equal(default, explicit)
    assert default.shape == (7, 1, 8, 8) and default.min() >= 0 and default.max() <= 1


def test_a_trained_cvae_draws_the_requested_pattern():
    """Four patterns, the label saying which: after training, the samples of class c are nearest
    to pattern c (the label, not z, carries the pattern; chance would be a quarter)."""
    model = tiny_cvae(channels=(8,))
    opts = model.configure_optimizers(lr=1e-2)
    x = stripe_patterns(32)
    patterns, which = np.unique(x.numpy().reshape(32, -1), axis=0, return_inverse=True)
    assert len(patterns) == 4
    y = ng.tensor(which.reshape(-1))
    for _ in range(150):
        logs = model.training_step((x, y), opts)
    assert logs["neg_elbo"] < 5.0                          # 64 pixels started near 44 nats
    ng.manual_seed(5)
    requested = np.repeat(np.arange(4), 25)
    samples = model.sample(100, y=ng.tensor(requested)).numpy().reshape(100, -1)
    nearest = ((samples[:, None] - patterns[None]) ** 2).sum(-1).argmin(1)
    assert np.mean(nearest == requested) >= 0.85


# ---------------------------------------------------------------- pictures and evaluation
def test_figures_have_one_row_per_class():
    model = tiny_cvae(num_classes=3)
    x = binary_images(4)
    y = labels(0, 1, 2, 1)
    ng.manual_seed(6)
    figures = model.figures(x, y)
    assert set(figures) == {"reconstructions", "class_samples"}
    grid, nrow = figures["class_samples"]
    assert grid.shape == (30, 1, 8, 8) and nrow == 10
    ng.manual_seed(6)                     # reconstructions draw nothing: the grid comes first
    np.testing.assert_array_equal(
        grid.numpy(), model.sample(30, y=ng.tensor(np.repeat(np.arange(3), 10))).numpy())
    recon, _ = figures["reconstructions"]
    np.testing.assert_allclose(recon.numpy()[1::2], model.reconstruct(x, y).numpy(), rtol=1e-6)


def test_evaluate_reports_the_conditional_bounds_and_the_accuracy(monkeypatch):
    model = tiny_cvae(image_shape=(1, 4, 4), num_classes=10)
    batches = [(binary_images(3, (1, 4, 4), seed=s), labels(s, s + 1, s + 2)) for s in range(2)]
    ng.manual_seed(7)
    metrics = model.evaluate(batches, iwae_k=10, num_conditional_samples=20)
    assert metrics["num_examples"] == 6 and metrics["iwae_k"] == 10
    assert metrics["iwae_nll_nats"] < metrics["neg_elbo_nats"]
    assert metrics["num_conditional_samples"] == 20
    assert 0.0 <= metrics["conditional_accuracy"] <= 1.0
    # the bounds are of log p(x | y): other labels give other numbers
    other = [(x, (y + 3) % 10) for x, y in batches]
    ng.manual_seed(7)
    assert model.evaluate(other, iwae_k=10, num_conditional_samples=20)["neg_elbo_nats"] != \
        pytest.approx(metrics["neg_elbo_nats"], rel=1e-6)


# ---------------------------------------------------------------- the metric
class _DigitPicker:
    """A stand-in conditional model: sample(n, y) returns real test digits of the classes y
    (``obey`` = False: always digits of class 0)."""

    conditional, num_classes, training = True, 10, False

    def __init__(self, images, digit_labels, obey=True):
        self.images, self.labels, self.obey, self.calls = images, digit_labels, obey, []

    def sample(self, n, y=None):
        wanted = y.numpy() if self.obey else np.zeros(n, np.int64)
        self.calls.append(wanted.copy())
        rng = np.random.default_rng(len(self.calls))
        picks = [rng.choice(np.flatnonzero(self.labels == c)) for c in wanted]
        return ng.tensor(self.images[picks])

    def eval(self):
        return self

    def train(self, mode=True):
        return self


@pytest.fixture(scope="module")
def test_digits():
    images, digit_labels = load_dataset("mnist5k", "test").arrays[:2]
    return images, np.asarray(digit_labels)


def test_conditional_accuracy_is_the_classifiers_agreement_with_the_requested_classes(
        test_digits):
    model = _DigitPicker(*test_digits)
    result = conditional_accuracy(model, n=60, batch_size=25)
    requested = np.concatenate(model.calls)
    np.testing.assert_array_equal(requested, np.arange(60) % 10)          # classes in turn
    assert [len(c) for c in model.calls] == [25, 25, 10]
    assert result["num_conditional_samples"] == 60
    # the same images, scored directly
    replay = _DigitPicker(*test_digits)
    images = np.concatenate([replay.sample(len(c), ng.tensor(c)).numpy() for c in model.calls])
    expected = np.mean(class_probabilities(images).argmax(1) == requested)
    assert result["conditional_accuracy"] == pytest.approx(expected)
    assert result["conditional_accuracy"] >= 0.9                 # real digits: LeNet knows them
    ignoring = conditional_accuracy(_DigitPicker(*test_digits, obey=False), n=60)
    assert ignoring["conditional_accuracy"] < 0.2                # only class 0 is right


def test_conditional_accuracy_refuses_an_unconditional_model():
    with pytest.raises(ValueError, match="VAE is not class-conditional"):
        conditional_accuracy(VAE(image_shape=(1, 4, 4), channels=(2,), latent_dim=2), n=10)
    with pytest.raises(ValueError, match="n must be a positive int"):
        conditional_accuracy(tiny_cvae(), n=0)
    with pytest.raises(ValueError, match="knows 10 digit classes; CVAE has num_classes = 12"):
        conditional_accuracy(tiny_cvae(num_classes=12), n=10)


# ---------------------------------------------------------------- the registry
def test_registered_model():
    spec = get_model_spec("cvae")
    model = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
    assert isinstance(model, CVAE) and model.conditional and model.data_transform == "binary"
    assert model.encoder.net[0].weight.shape[1] == 1 + 10                 # x and 10 label planes
    assert model.decoder.net[0].weight.shape[1] == model.latent_dim + 10  # z and the label
    assert model.sample(2, y=labels(3, 7)).shape == (2, 1, 28, 28)
    assert not callable(getattr(model, "codes", None))     # no probe: the posterior needs y
    assert spec.summary and "\n" not in spec.summary


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("call", ["loss", "encode", "reconstruct", "iwae", "decode"])
def test_missing_labels_give_one_clear_line(call):
    model = tiny_cvae()
    x = binary_images(2)
    run = {"loss": lambda: model.loss(x), "encode": lambda: model.encode(x),
           "reconstruct": lambda: model.reconstruct(x),
           "iwae": lambda: model.iwae_log_likelihood(x, k=3),
           "decode": lambda: model.decode(ng.zeros(2, 2))}[call]
    with pytest.raises(ValueError, match=r"^CVAE\.\w+: this model is class-conditional; pass "
                                         r"the labels y$"):
        run()


def test_bad_labels_give_one_clear_line():
    model = tiny_cvae(num_classes=4)
    x = binary_images(2)
    with pytest.raises(ValueError, match=r"CVAE.sample: labels must lie in \[0, 4\), got values "
                                         r"from 0 to 4"):
        model.sample(2, y=labels(0, 4))
    with pytest.raises(ValueError, match=r"CVAE.elbo: labels must lie in \[0, 4\), got values "
                                         r"from -1 to 1"):
        model.loss(x, labels(-1, 1))
    with pytest.raises(ValueError, match=r"CVAE.elbo: expected 2 labels of shape \(2,\), got "
                                         r"shape \(3,\)"):
        model.loss(x, labels(0, 1, 2))
    with pytest.raises(ValueError, match="CVAE.sample: n must be a positive int"):
        model.sample(0)
    with pytest.raises(ValueError, match="CVAE: num_classes must be a positive int"):
        tiny_cvae(num_classes=0)
