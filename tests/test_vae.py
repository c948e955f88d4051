"""The VAE and beta-VAE: the KL term, the reparameterisation trick, the ELBO and IWAE bounds
(checked against log p(x) integrated numerically for a 1-D latent space), beta, the pictures,
training, the registry and the error messages.  Tiny models on 4x4 / 8x8 images."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp, ndtr

import nanogen as ng
from nanogen.models import ImageShapeError, get_model_spec
from nanogen.models.autoencoders import VAE
from nanogen.models.autoencoders.vae import random_translate
from nanogen.models.autoencoders.networks import ConvDecoder, ConvEncoder
from nanogen.models.likelihood import gaussian_kl_to_standard, gaussian_log_prob
from nanogen.models.likelihood import standard_normal_log_prob
from nanogen.testing import gradcheck

from .strategies import float64_arrays


def tiny_vae(image_shape=(1, 8, 8), latent_dim=3, seed=0, **kwargs):
    ng.manual_seed(seed)
    return VAE(image_shape=image_shape, latent_dim=latent_dim, channels=kwargs.pop("channels", (4,)),
               **kwargs)


def binary_images(n, shape=(1, 8, 8), seed=0):
    rng = np.random.default_rng(seed)
    return ng.tensor((rng.random((n, *shape)) < 0.4).astype(np.float32))


def mean_and_stderr(values):
    values = np.asarray(values, dtype=np.float64)
    return values.mean(), values.std(ddof=1) / math.sqrt(len(values))


def mean_and_stderr_rows(values):
    """The mean of each row and its standard error."""
    return values.mean(1), values.std(1, ddof=1) / math.sqrt(values.shape[1])


# ---------------------------------------------------------------- the KL term
@pytest.mark.parametrize("mu, logvar, expected", [
    ([0.0, 0.0], [0.0, 0.0], 0.0),                         # q = p
    ([3.0], [0.0], 4.5),                                   # mean shift only: mu^2 / 2
    ([0.0], [1.0], 0.5 * (math.e - 2.0)),                  # variance e: (e - 1 - 1) / 2
    ([1.0, -2.0], [math.log(4.0), 0.0], 0.5 * (1 + 4 - math.log(4) - 1) + 2.0),
])
def test_kl_closed_form_for_hand_picked_gaussians(mu, logvar, expected):
    kl = gaussian_kl_to_standard(ng.tensor([mu], dtype=ng.float64),
                                 ng.tensor([logvar], dtype=ng.float64))
    assert kl.shape == (1,)
    assert kl.item() == pytest.approx(expected, abs=1e-12)


@given(mu=float64_arrays((1, 3), min_value=-2, max_value=2),
       logvar=float64_arrays((1, 3), min_value=-2, max_value=1))
def test_analytic_kl_equals_monte_carlo_estimate(mu, logvar):
    """KL(q || p) = E_q[log q(z) - log p(z)], estimated with z drawn by reparameterize."""
    ng.manual_seed(1)
    n = 20000
    mu_t, logvar_t = ng.tensor(np.repeat(mu, n, 0)), ng.tensor(np.repeat(logvar, n, 0))
    z = VAE.reparameterize(mu_t, logvar_t)
    log_ratio = (gaussian_log_prob(z, mu_t, logvar_t) - standard_normal_log_prob(z)).numpy()
    estimate, stderr = mean_and_stderr(log_ratio)
    analytic = gaussian_kl_to_standard(ng.tensor(mu), ng.tensor(logvar)).item()
    assert abs(estimate - analytic) < 5 * stderr + 1e-3


# ---------------------------------------------------------------- reparameterisation
def test_reparameterized_sample_has_the_posterior_mean_and_variance():
    ng.manual_seed(2)
    mu = np.array([[1.5, -0.5, 0.0]])
    logvar = np.array([[0.0, math.log(0.25), math.log(4.0)]])
    n = 40000
    z = VAE.reparameterize(ng.tensor(np.repeat(mu, n, 0)), ng.tensor(np.repeat(logvar, n, 0)))
    z = z.numpy()
    assert z.dtype == np.float64
    assert np.all(np.abs(z.mean(0) - mu[0]) < 5 * np.sqrt(np.exp(logvar[0]) / n))
    np.testing.assert_allclose(z.var(0), np.exp(logvar[0]), rtol=0.05)


def test_gradients_flow_to_mu_and_logvar_through_the_sample():
    """z = mu + exp(logvar / 2) eps: dz/dmu = 1 and dz/dlogvar = exp(logvar / 2) eps / 2
    = (z - mu) / 2."""
    ng.manual_seed(3)
    mu = ng.tensor(np.array([[0.3, -1.0], [2.0, 0.5]]), requires_grad=True)
    logvar = ng.tensor(np.array([[0.1, -0.7], [1.2, 0.0]]), requires_grad=True)
    z = VAE.reparameterize(mu, logvar)
    z.sum().backward()
    np.testing.assert_allclose(mu.grad.numpy(), np.ones((2, 2)))
    np.testing.assert_allclose(logvar.grad.numpy(), 0.5 * (z.detach().numpy() - mu.detach().numpy()),
                               rtol=1e-12)
    assert np.all(logvar.grad.numpy() != 0)


def test_reparameterize_draws_from_the_global_generator():
    mu, logvar = ng.zeros(4, 2), ng.zeros(4, 2)
    ng.manual_seed(7)
    a = VAE.reparameterize(mu, logvar).numpy()
    b = VAE.reparameterize(mu, logvar).numpy()
    ng.manual_seed(7)
    np.testing.assert_array_equal(VAE.reparameterize(mu, logvar).numpy(), a)
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------- ELBO <= IWAE <= log p(x)
def exact_log_likelihood(model, x):
    """log p(x) = log int p(x | z) N(z; 0, 1) dz for a 1-D latent space, by the rectangle rule
    on [-9, 9] (the prior's mass outside is 2e-19)."""
    grid = np.linspace(-9.0, 9.0, 6001)
    with ng.no_grad():
        logits = model.decode(ng.tensor(grid[:, None], dtype=ng.float64)).numpy()  # (G, C, H, W)
    xs = x.numpy().reshape(len(x), 1, -1)
    logits = logits.reshape(1, len(grid), -1)
    log_px_given_z = (xs * logits - np.logaddexp(0.0, logits)).sum(-1)          # (N, G)
    log_prior = -0.5 * (np.log(2 * np.pi) + grid ** 2)
    return logsumexp(log_px_given_z + log_prior, axis=1) + np.log(grid[1] - grid[0])


@pytest.fixture(scope="module")
def one_dim_model():
    """A 1-D latent VAE whose decoder depends strongly on z (scaled-up weights), so that its
    posterior is far from the encoder's Gaussian and the bounds have visible gaps."""
    model = tiny_vae(image_shape=(1, 4, 4), latent_dim=1, channels=(3,), seed=5).double()
    for p in model.decoder.parameters():
        p.data[...] *= 3.0
    x = binary_images(3, (1, 4, 4), seed=6)
    return model, ng.tensor(x.numpy().astype(np.float64))


def test_iwae_converges_to_the_exact_log_likelihood(one_dim_model):
    model, x = one_dim_model
    log_px = exact_log_likelihood(model, x)
    ng.manual_seed(8)
    with ng.no_grad():
        iwae = model.iwae_log_likelihood(x, k=20000).numpy()
    np.testing.assert_allclose(iwae, log_px, atol=0.03)


def test_elbo_below_iwae_below_log_likelihood_and_iwae_grows_with_k(one_dim_model):
    model, x = one_dim_model
    log_px = exact_log_likelihood(model, x)
    ng.manual_seed(9)
    repeats = 2000
    with ng.no_grad():
        xs = ng.tensor(np.repeat(x.numpy(), repeats, 0))

        def per_image(values):        # (N * repeats,) -> the mean and its standard error
            return mean_and_stderr_rows(values.numpy().reshape(len(x), repeats))

        elbo, elbo_se = per_image(model.elbo(xs).elbo)
        iwae = {k: per_image(model.iwae_log_likelihood(xs, k=k)) for k in (1, 5, 50)}
    # IWAE with k = 1 is the ELBO with a Monte-Carlo KL: the same value in expectation
    iwae1, iwae1_se = iwae[1]
    assert np.all(np.abs(iwae1 - elbo) < 5 * np.hypot(iwae1_se, elbo_se))
    iwae = {k: mean for k, (mean, _) in iwae.items()}
    gap = log_px - elbo
    assert np.all(gap > 0.3)                       # the encoder is untrained: a real gap
    assert np.all(elbo < iwae[5]) and np.all(iwae[5] < iwae[50])
    assert np.all(iwae[50] <= log_px + 0.02)


def test_iwae_chunks_decode_the_same_samples():
    """Drawing the k samples in chunks consumes the generator in the same order (sample-major),
    so the estimate does not depend on ``chunk``."""
    model = tiny_vae()
    x = binary_images(3)
    results = []
    for chunk in (1, 4, 7, None):
        ng.manual_seed(10)
        with ng.no_grad():
            results.append(model.iwae_log_likelihood(x, k=7, chunk=chunk).numpy())
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-5)
    assert results[0].shape == (3,)


# ---------------------------------------------------------------- beta
def test_beta_scales_only_the_kl_term():
    x = binary_images(5)
    vae, beta_vae = tiny_vae(beta=1.0), tiny_vae(beta=4.0)
    beta_vae.load_state_dict(vae.state_dict())
    outputs = []
    for model in (vae, beta_vae):
        ng.manual_seed(11)
        loss, logs = model.loss(x)
        model.zero_grad()
        loss.backward()
        outputs.append((loss.item(), logs, {n: p.grad.numpy().copy()
                                             for n, p in model.named_parameters()}))
    (loss1, logs1, grads1), (loss4, logs4, grads4) = outputs
    assert logs1 == logs4                      # recon, kl and the beta = 1 bound all agree
    assert loss1 == pytest.approx(logs1["recon"] + logs1["kl"], rel=1e-5)
    assert loss4 - loss1 == pytest.approx(3.0 * logs1["kl"], rel=1e-4)
    for name in grads1:                        # the KL does not reach the decoder
        if name.startswith("decoder."):
            np.testing.assert_allclose(grads4[name], grads1[name], rtol=1e-5, atol=1e-7)
    assert not np.allclose(grads4["encoder.net.0.weight"], grads1["encoder.net.0.weight"])


# ---------------------------------------------------------------- shapes and ranges
@given(c=st.sampled_from([1, 3]), h=st.sampled_from([4, 8]), w=st.sampled_from([4, 8]),
       n=st.integers(1, 3), latent_dim=st.integers(1, 3), hidden=st.sampled_from([None, 5]),
       depth=st.sampled_from([1, 2]))
def test_shapes_and_ranges(c, h, w, n, latent_dim, hidden, depth):
    model = tiny_vae((c, h, w), latent_dim, hidden_features=hidden, depth=depth)
    x = binary_images(n, (c, h, w))
    with ng.no_grad():
        mu, logvar = model.encode(x)
        assert mu.shape == logvar.shape == (n, latent_dim)
        assert model.decode(mu).shape == (n, c, h, w)
        terms = model.elbo(x)
    for t in terms:
        assert t.shape == (n,)
    assert np.all(terms.kl.numpy() >= 0) and np.all(terms.recon.numpy() >= 0)
    np.testing.assert_allclose(terms.elbo.numpy(), -(terms.recon + terms.kl).numpy())
    for images, count in ((model.reconstruct(x), n), (model.sample(4), 4)):
        assert images.shape == (count, c, h, w)
        assert images.min().item() >= 0.0 and images.max().item() <= 1.0
        assert not images.requires_grad


def test_reconstruct_decodes_the_posterior_mean():
    model = tiny_vae()
    x = binary_images(2)
    with ng.no_grad():
        mu, _ = model.encode(x)
        expected = ng.sigmoid(model.decode(mu)).numpy()
    np.testing.assert_allclose(model.reconstruct(x).numpy(), expected, rtol=1e-6)


def test_figures_interleave_originals_and_reconstructions():
    model = tiny_vae()
    x = binary_images(5)
    figures = model.figures(x)
    assert set(figures) == {"reconstructions"}             # no manifold for latent_dim 3
    images, nrow = figures["reconstructions"]
    assert images.shape == (10, 1, 8, 8) and nrow == 10
    np.testing.assert_array_equal(images.numpy()[0::2], x.numpy())
    np.testing.assert_allclose(images.numpy()[1::2], model.reconstruct(x).numpy(), rtol=1e-6)
    many, nrow = model.figures(binary_images(40))["reconstructions"]
    assert many.shape[0] == 64 and nrow == 16              # at most 32 pairs, 8 per row


def test_dropout_acts_in_training_mode_only():
    model = tiny_vae(dropout=0.5)
    x = binary_images(3)
    with ng.no_grad():
        train = [model.encode(x)[0].numpy() for _ in range(2)]
        model.eval()
        evals = [model.encode(x)[0].numpy() for _ in range(2)]
    assert not np.allclose(train[0], train[1])
    np.testing.assert_array_equal(evals[0], evals[1])


@pytest.mark.parametrize("max_shift", [1, 2])
def test_random_translate_shifts_each_image_within_the_bound(max_shift):
    """With a zero border as wide as the shift, a translation is a roll: find each image's."""
    rng = np.random.default_rng(15)
    x = np.zeros((64, 2, 8, 8), np.float32)
    x[:, :, max_shift:-max_shift, max_shift:-max_shift] = rng.random((64, 2, 8 - 2 * max_shift,
                                                                      8 - 2 * max_shift))
    ng.manual_seed(16)
    shifted = random_translate(ng.tensor(x), max_shift).numpy()
    offsets = range(-max_shift, max_shift + 1)
    used = set()
    for original, moved in zip(x, shifted):
        found = [(dy, dx) for dy in offsets for dx in offsets
                 if np.array_equal(np.roll(original, (dy, dx), axis=(1, 2)), moved)]
        assert len(found) == 1
        used.add(found[0])
    assert len(used) > len(offsets) ** 2 // 2          # offsets vary (64 draws of 9 or 25)
    np.testing.assert_array_equal(random_translate(ng.tensor(x), 0).numpy(), x)


# ---------------------------------------------------------------- the 2-D latent manifold
def test_latent_manifold_decodes_an_ordered_grid_of_normal_quantiles(monkeypatch):
    model = tiny_vae(latent_dim=2)
    seen = []
    decode = model.decode
    monkeypatch.setattr(model, "decode", lambda z: seen.append(z.numpy()) or decode(z))
    n = 5
    images = model.latent_manifold(n)
    assert images.shape == (n * n, 1, 8, 8)
    assert 0.0 <= images.min().item() and images.max().item() <= 1.0
    z = seen[0].reshape(n, n, 2)
    z1, z2 = z[..., 0], z[..., 1]
    assert np.all(np.diff(z1, axis=1) > 0) and np.all(z1 == z1[:1])     # z_1 grows along rows
    assert np.all(np.diff(z2, axis=0) < 0) and np.all(z2 == z2[:, :1])  # z_2 falls down columns
    # equal prior mass between neighbours: Phi(z) at the midpoints (i + 1/2) / n
    np.testing.assert_allclose(ndtr(z1[0]), (np.arange(n) + 0.5) / n, atol=1e-6)
    # different rows (and columns) decode different latent codes to different images
    grid = images.numpy().reshape(n, n, -1)
    assert not np.allclose(grid[0], grid[-1]) and not np.allclose(grid[:, 0], grid[:, -1])
    assert set(model.figures(binary_images(2))) == {"reconstructions", "manifold"}


def test_latent_manifold_needs_a_two_dimensional_latent_space():
    with pytest.raises(ValueError, match="latent_dim == 2.*latent_dim == 3"):
        tiny_vae(latent_dim=3).latent_manifold()


# ---------------------------------------------------------------- training and evaluation
def stripe_patterns(n, seed=0):
    """n images drawn from four 8x8 patterns (two bars, two halves)."""
    patterns = np.zeros((4, 1, 8, 8), np.float32)
    patterns[0, :, :, :2] = 1
    patterns[1, :, 3:5, :] = 1
    patterns[2, :, :4, :] = 1
    patterns[3, :, :, 4:] = 1
    return ng.tensor(patterns[np.random.default_rng(seed).integers(0, 4, n)])


def test_a_few_training_steps_lower_the_loss():
    model = tiny_vae(latent_dim=2, channels=(8,))
    opts = model.configure_optimizers(lr=1e-2)
    x = stripe_patterns(32)
    first = model.training_step((x, None), opts)
    for _ in range(60):
        logs = model.training_step((x, None), opts)
    # 64 pixels start at about 64 ln 2 = 44 nats; 4 patterns need at most ln 4 + a small KL
    assert first["neg_elbo"] > 35.0
    assert logs["neg_elbo"] < 15.0
    assert set(logs) == {"loss", "recon", "kl", "neg_elbo"}


def test_evaluate_reports_the_bounds_over_the_whole_loader():
    model = tiny_vae()
    batches = [(binary_images(4, seed=s), None) for s in range(3)]
    ng.manual_seed(12)
    metrics = model.evaluate(batches, iwae_k=20)
    assert metrics["num_examples"] == 12 and metrics["iwae_k"] == 20
    assert metrics["neg_elbo_nats"] == pytest.approx(metrics["recon_nats"] + metrics["kl_nats"],
                                                     rel=1e-6)
    assert metrics["iwae_nll_nats"] < metrics["neg_elbo_nats"]
    with pytest.raises(ValueError, match="no examples"):
        model.evaluate([])


def test_loss_gradient_with_respect_to_the_input():
    model = tiny_vae(image_shape=(1, 4, 4), latent_dim=2, channels=(2,)).double()
    x = ng.tensor(np.random.default_rng(13).uniform(0.1, 0.9, (2, 1, 4, 4)), requires_grad=True)

    def loss(x):
        ng.manual_seed(14)                         # the same eps at every evaluation
        return model.loss(x)[0]

    assert gradcheck(loss, [x], atol=1e-6, rtol=1e-4)


# ---------------------------------------------------------------- the registry
@pytest.mark.parametrize("name, beta, latent_dim", [("vae", 1.0, None), ("beta-vae", 4.0, None),
                                                    ("vae-2d", 1.0, 2)])
def test_registered_models(name, beta, latent_dim):
    spec = get_model_spec(name)
    model = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
    assert isinstance(model, VAE) and model.data_transform == "binary"
    assert model.beta == beta
    if latent_dim is not None:
        assert model.latent_dim == latent_dim
    assert model.sample(2).shape == (2, 1, 28, 28)
    assert spec.summary and "\n" not in spec.summary


# ---------------------------------------------------------------- errors
def test_clear_errors_for_wrong_shapes_and_arguments():
    model = tiny_vae()
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 8, 8\), got "
                                         r"\(2, 1, 28, 28\)"):
        model.encode(ng.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"expected images.*got \(1, 8, 8\)"):
        model.loss(ng.zeros(1, 8, 8))
    with pytest.raises(ValueError, match=r"latent codes of shape \(N, 3\), got \(2, 5\)"):
        model.decode(ng.zeros(2, 5))
    with pytest.raises(ValueError, match="k must be a positive int"):
        model.iwae_log_likelihood(binary_images(1), k=0)
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        model.iwae_log_likelihood(binary_images(1), k=3, chunk=0)
    with pytest.raises(ValueError, match="n must be a positive int"):
        model.sample(0)
    with pytest.raises(ValueError, match="mu .* and logvar .* differ"):
        VAE.reparameterize(ng.zeros(2, 3), ng.zeros(2, 2))


def test_clear_errors_for_bad_configurations():
    with pytest.raises(ImageShapeError, match=r"VAE with 2 stride-2 levels needs H and W "
                       r"divisible by 4, got 10x10 \(12x12 would do\)"):
        VAE(image_shape=(1, 10, 10), channels=(4, 8))
    with pytest.raises(ValueError, match="image_shape must be"):
        VAE(image_shape=(28, 28))
    with pytest.raises(ValueError, match="latent_dim must be a positive int"):
        VAE(image_shape=(1, 8, 8), latent_dim=0)
    with pytest.raises(ValueError, match="beta must be"):
        VAE(image_shape=(1, 8, 8), beta=-1.0)
    with pytest.raises(ValueError, match="channels must be"):
        ConvEncoder((1, 8, 8), 4, channels=())
    with pytest.raises(ValueError, match="max_shift must be a non-negative int"):
        VAE(image_shape=(1, 8, 8), max_shift=-1)
    with pytest.raises(ValueError, match="depth must be a positive int"):
        VAE(image_shape=(1, 8, 8), depth=0)
    with pytest.raises(ValueError, match="dropout must be in"):
        VAE(image_shape=(1, 8, 8), dropout=1.0)
    with pytest.raises(ValueError, match="unknown activation 'tanhh'"):
        ConvDecoder(2, (1, 8, 8), channels=(4,), activation="tanhh")
