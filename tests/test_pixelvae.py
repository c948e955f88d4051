"""PixelVAE: the decoder's causality given z, its normalisation and its pixel-by-pixel sampler, the
loss against a direct NumPy computation, ELBO <= IWAE <= log p(x) (log p(x) integrated numerically
for a 1-D latent space), evaluation, training, the registry and the error messages.  Tiny models
on 2x4 / 4x4 / 8x8 images."""
import itertools
import math

import numpy as np
import pytest
from scipy.special import logsumexp

import nanogen as ng
from nanogen.models import get_model_spec
from nanogen.models.autoencoders.pixelvae import ConditionalPixelCNN, PixelVAE


def tiny_pixelvae(image_shape=(1, 4, 4), latent_dim=3, seed=0, **kwargs):
    ng.manual_seed(seed)
    defaults = dict(channels=(4,), cond_channels=4, pixel_channels=6, num_blocks=1,
                    first_kernel=3, head_channels=6)
    return PixelVAE(image_shape=image_shape, latent_dim=latent_dim, **{**defaults, **kwargs})


def binary_images(n, shape=(1, 4, 4), seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return ng.tensor((rng.random((n, *shape)) < 0.4).astype(dtype))


def all_binary_images(shape):
    """Every image of the given shape with pixels in {0, 1}, (2^D, *shape), in binary order."""
    d = int(np.prod(shape))
    return np.array(list(itertools.product([0.0, 1.0], repeat=d))).reshape(-1, *shape)


def scale_decoder(model, factor=3.0):
    """Larger decoder weights: conditionals far from 1/2 that depend strongly on z and x."""
    for name, p in model.named_parameters():
        if not name.startswith("encoder."):
            p.data[...] *= factor
    return model


# ---------------------------------------------------------------- the decoder
@pytest.mark.parametrize("num_blocks, first_kernel, kernel_size", [(0, 3, 3), (2, 3, 3),
                                                                   (1, 5, 3)])
def test_decoder_is_causal_given_z(num_blocks, first_kernel, kernel_size):
    """Changing pixel i changes only the logits of pixels after i in raster order, and does
    change some of them (its right neighbour and the pixel below, which mask A reads)."""
    model = scale_decoder(tiny_pixelvae(num_blocks=num_blocks, first_kernel=first_kernel,
                                        kernel_size=kernel_size).double())
    x = binary_images(1, seed=1, dtype=np.float64)
    z = ng.tensor(np.random.default_rng(2).standard_normal((1, 3)))
    with ng.no_grad():
        base = model.pixel_logits(x, z).numpy().ravel()
        for i in range(16):
            flipped = x.numpy().copy().reshape(-1)
            flipped[i] = 1.0 - flipped[i]
            logits = model.pixel_logits(ng.tensor(flipped.reshape(x.shape)), z).numpy().ravel()
            changed = np.abs(logits - base) > 1e-12
            assert not changed[:i + 1].any(), f"pixel {i} reaches logits at or before it"
            if i % 4 < 3:                               # its right neighbour reads it
                assert changed[i + 1], f"pixel {i} does not reach the next pixel's logit"
            if i < 12:                                  # and so does the pixel below it
                assert changed[i + 4], f"pixel {i} does not reach the logit below it"


def test_z_changes_every_logit_including_the_first_pixels():
    model = scale_decoder(tiny_pixelvae().double())
    x = binary_images(1, seed=3, dtype=np.float64)
    rng = np.random.default_rng(4)
    with ng.no_grad():
        a = model.pixel_logits(x, ng.tensor(rng.standard_normal((1, 3)))).numpy()
        b = model.pixel_logits(x, ng.tensor(rng.standard_normal((1, 3)))).numpy()
    assert np.all(np.abs(a - b) > 1e-9)


@pytest.fixture(scope="module")
def two_by_four():
    """A 1-D latent PixelVAE on 2x4 images (256 of them), with a strong decoder."""
    return scale_decoder(tiny_pixelvae(image_shape=(1, 2, 4), latent_dim=1, seed=5).double())


def test_p_x_given_z_sums_to_one_over_all_images(two_by_four):
    """An autoregressive decoder is a normalised distribution over the 2^8 images for each z."""
    x = ng.tensor(all_binary_images((1, 2, 4)))
    with ng.no_grad():
        for z in (-1.5, 0.0, 2.0):
            zs = ng.tensor(np.full((len(x), 1), z))
            log_p = two_by_four._log_likelihood(x, zs, None).numpy()
            assert logsumexp(log_p) == pytest.approx(0.0, abs=1e-10)
            assert log_p.max() - log_p.min() > 3.0                     # far from uniform


def test_pixel_by_pixel_samples_follow_p_x_given_z():
    """The frequencies of the sampler's draws at a fixed z match exp(log p(x | z)) over the 16
    images of a 2x2 model (a chi-square-like bound per image)."""
    model = scale_decoder(tiny_pixelvae(image_shape=(1, 2, 2), latent_dim=2, seed=6))
    n = 4000
    z = ng.tensor(np.tile([[0.7, -0.4]], (n, 1)).astype(np.float32))
    ng.manual_seed(7)
    draws = model._images(z, None).numpy().reshape(n, 4)
    assert set(np.unique(draws)) <= {0.0, 1.0}
    index = draws @ np.array([8, 4, 2, 1])
    freq = np.bincount(index.astype(int), minlength=16) / n
    x = ng.tensor(all_binary_images((1, 2, 2)).astype(np.float32))
    with ng.no_grad():
        p = np.exp(model._log_likelihood(x, z[:16], None).numpy().astype(np.float64))
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    assert p.max() > 3 * p.min()
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-3)


def test_sampling_is_reproducible_and_decode_gives_the_logits_of_the_draw():
    model = tiny_pixelvae()
    ng.manual_seed(8)
    a = model.sample(3).numpy()
    ng.manual_seed(8)
    b = model.sample(3).numpy()
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 1, 4, 4) and set(np.unique(a)) <= {0.0, 1.0}
    z = ng.tensor(np.random.default_rng(9).standard_normal((3, 3)).astype(np.float32))
    ng.manual_seed(10)
    logits = model.decode(z).numpy()
    ng.manual_seed(10)
    drawn = model._images(z, None)
    with ng.no_grad():
        np.testing.assert_allclose(logits, model.pixel_logits(drawn, z).numpy(), rtol=1e-6)


# ---------------------------------------------------------------- the loss
def numpy_terms(model, x, seed):
    """mu, logvar and -log p(x | z) per image in NumPy, z = mu + e^{v/2} eps with eps drawn
    from ``seed`` as the model's loss draws it: recon = -sum_i x_i l_i - softplus(l_i)."""
    n = len(x)
    with ng.no_grad():
        mu, logvar = (t.numpy() for t in model.encode(x))
        ng.manual_seed(seed)
        z = mu + np.exp(logvar / 2) * ng.randn(n, mu.shape[1], dtype=ng.float64).numpy()
        logits = model.pixel_logits(x, ng.tensor(z)).numpy().reshape(n, -1)
    xs = x.numpy().reshape(n, -1)
    return mu, logvar, -(xs * logits - np.logaddexp(0.0, logits)).sum(1)


def test_loss_matches_a_direct_numpy_computation():
    """loss = mean(recon + kl): recon = -sum_i x_i l_i - softplus(l_i) with the PixelCNN's
    logits at z = mu + e^{v/2} eps, kl = 1/2 sum(mu^2 + e^v - v - 1), eps from the same seed."""
    model = scale_decoder(tiny_pixelvae(seed=11).double(), 1.5)
    x = binary_images(5, seed=12, dtype=np.float64)
    ng.manual_seed(13)
    loss, logs = model.loss(x)
    mu, logvar, recon = numpy_terms(model, x, 13)
    kl = 0.5 * (mu ** 2 + np.exp(logvar) - logvar - 1).sum(1)
    assert loss.item() == pytest.approx((recon + kl).mean(), rel=1e-10)
    assert logs["recon"] == pytest.approx(recon.mean(), rel=1e-10)
    assert logs["kl"] == pytest.approx(kl.mean(), rel=1e-10)
    loss.backward()                                     # every part of the model learns
    for name, p in model.named_parameters():
        assert np.any(p.grad.numpy() != 0), name


@pytest.mark.parametrize("free_bits", [0.05, 0.5])
def test_free_bits_floor_each_dimension_s_kl_in_the_loss_only(free_bits):
    """loss = mean(recon) + sum_j max(lambda, mean_n KL_nj); the logs keep the true terms."""
    model = scale_decoder(tiny_pixelvae(seed=18, free_bits=free_bits).double(), 1.5)
    x = binary_images(6, seed=19, dtype=np.float64)
    ng.manual_seed(20)
    loss, logs = model.loss(x)
    mu, logvar, recon = numpy_terms(model, x, 20)
    recon = recon.mean()
    kl_dims = (0.5 * (mu ** 2 + np.exp(logvar) - logvar - 1)).mean(0)        # (d,)
    below = kl_dims < free_bits           # 0.05: some dimensions below the floor, some above
    assert below.any() and (below.all() == (free_bits == 0.5))
    assert loss.item() == pytest.approx(recon + np.maximum(kl_dims, free_bits).sum(), rel=1e-10)
    assert logs["kl"] == pytest.approx(kl_dims.sum(), rel=1e-10)
    assert logs["neg_elbo"] == pytest.approx(recon + kl_dims.sum(), rel=1e-10)


# ---------------------------------------------------------------- ELBO <= IWAE <= log p(x)
def exact_log_likelihood(model, x):
    """log p(x) = log int p(x | z) N(z; 0, 1) dz for a 1-D latent space, by the rectangle rule
    on [-9, 9]."""
    grid = np.linspace(-9.0, 9.0, 1801)
    n = len(x)
    xs = ng.tensor(np.repeat(x.numpy(), len(grid), 0))
    zs = ng.tensor(np.tile(grid, n)[:, None])
    with ng.no_grad():
        log_px_given_z = model._log_likelihood(xs, zs, None).numpy().reshape(n, len(grid))
    log_prior = -0.5 * (np.log(2 * np.pi) + grid ** 2)
    return logsumexp(log_px_given_z + log_prior, axis=1) + np.log(grid[1] - grid[0])


def test_elbo_below_iwae_below_log_likelihood(two_by_four):
    model = two_by_four
    x = ng.tensor(all_binary_images((1, 2, 4))[[3, 77, 200]])
    log_px = exact_log_likelihood(model, x)
    ng.manual_seed(14)
    repeats = 1000
    xs = ng.tensor(np.repeat(x.numpy(), repeats, 0))

    def per_image(values):
        values = values.numpy().reshape(len(x), repeats)
        return values.mean(1), values.std(1, ddof=1) / math.sqrt(repeats)

    with ng.no_grad():
        elbo, elbo_se = per_image(model.elbo(xs).elbo)
        iwae1, iwae1_se = per_image(model.iwae_log_likelihood(xs, k=1))
        iwae5, iwae5_se = per_image(model.iwae_log_likelihood(xs, k=5))
        iwae50, _ = per_image(model.iwae_log_likelihood(xs, k=50))
        big = model.iwae_log_likelihood(x, k=20000).numpy()
    # k = 1 is the ELBO with a Monte-Carlo KL: the same in expectation
    assert np.all(np.abs(iwae1 - elbo) < 5 * np.hypot(iwae1_se, elbo_se))
    assert np.all(log_px - elbo > 0.3)                  # an untrained encoder: a real gap
    assert np.all(iwae5 - elbo > 5 * np.hypot(iwae5_se, elbo_se))
    assert np.all(iwae5 < iwae50) and np.all(iwae50 <= log_px + 0.02)
    np.testing.assert_allclose(big, log_px, atol=0.05)


# ---------------------------------------------------------------- evaluation and training
def test_evaluate_reports_the_bounds_the_kl_and_the_active_units():
    model = tiny_pixelvae()
    for p in model.encoder.parameters():                # posterior means that vary with x
        p.data[...] *= 4.0
    batches = [(binary_images(4, seed=s), None) for s in range(3)]
    ng.manual_seed(15)
    metrics = model.evaluate(batches, iwae_k=10)
    assert metrics["num_examples"] == 12 and metrics["iwae_k"] == 10
    assert metrics["neg_elbo_nats"] == pytest.approx(metrics["recon_nats"] + metrics["kl_nats"],
                                                     rel=1e-6)
    assert metrics["kl_nats"] > 0 and metrics["iwae_nll_nats"] < metrics["neg_elbo_nats"]
    with ng.no_grad():
        means = np.concatenate([model.encode(x)[0].numpy() for x, _ in batches])
    assert metrics["active_units"] == int((means.var(0) > 0.01).sum())
    assert 0 < metrics["active_units"] <= 3
    with pytest.raises(ValueError, match="no examples"):
        model.evaluate([])


def test_codes_are_the_posterior_means_and_figures_pair_images_with_draws():
    model = tiny_pixelvae()
    x = binary_images(5)
    codes = model.codes(x)
    assert codes.shape == (5, 3) and not codes.requires_grad
    np.testing.assert_array_equal(codes.numpy(), model.encode(x)[0].detach().numpy())
    images, nrow = model.figures(x)["reconstructions"]
    assert images.shape == (10, 1, 4, 4) and nrow == 10
    np.testing.assert_array_equal(images.numpy()[0::2], x.numpy())
    assert set(np.unique(images.numpy()[1::2])) <= {0.0, 1.0}        # draws, not means


def test_a_few_training_steps_lower_the_loss():
    model = tiny_pixelvae(image_shape=(1, 8, 8), latent_dim=2, channels=(8,), seed=16)
    opts = model.configure_optimizers(lr=1e-2)
    patterns = np.zeros((4, 1, 8, 8), np.float32)
    patterns[0, :, :, :2] = patterns[1, :, 3:5, :] = patterns[2, :, :4, :] = 1
    patterns[3, :, :, 4:] = 1
    x = ng.tensor(patterns[np.random.default_rng(17).integers(0, 4, 32)])
    first = model.training_step((x, None), opts)
    for _ in range(40):
        logs = model.training_step((x, None), opts)
    assert first["neg_elbo"] > 30.0 and logs["neg_elbo"] < 15.0
    assert set(logs) == {"loss", "recon", "kl", "neg_elbo"}


def test_registered_model():
    spec = get_model_spec("pixelvae")
    model = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
    assert isinstance(model, PixelVAE) and model.data_transform == "binary"
    assert not model.conditional and model.beta == 1.0
    assert spec.steps <= 3000 and spec.summary and "\n" not in spec.summary
    x = binary_images(2, (1, 28, 28))
    assert model.pixel_logits(x, ng.zeros(2, model.latent_dim)).shape == (2, 1, 28, 28)


# ---------------------------------------------------------------- errors
def test_clear_errors_for_bad_inputs():
    model = tiny_pixelvae()
    with pytest.raises(ValueError, match=r"PixelVAE.elbo: expected images of shape "
                                         r"\(N, 1, 4, 4\), got \(2, 1, 8, 8\)"):
        model.loss(ng.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"pixel_logits: expected latent codes of shape "
                                         r"\(N, 3\), got \(2, 5\)"):
        model.pixel_logits(ng.zeros(2, 1, 4, 4), ng.zeros(2, 5))
    with pytest.raises(ValueError, match=r"decode: expected latent codes"):
        model.decode(ng.zeros(2, 2))
    with pytest.raises(ValueError, match=r"PixelVAE.sample: expected a conditioning map of "
                                         r"shape \(2, 4, 4, 4\), got \(2, 3, 4, 4\)"):
        model.pixelcnn.sample(2, ng.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="n must be a positive int"):
        model.sample(0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(pixel_channels=5), "pixel_channels must be an even int"),
    (dict(num_blocks=-1), "num_blocks must be a non-negative int"),
    (dict(first_kernel=4), "first_kernel must be an odd positive int"),
    (dict(kernel_size=0), "kernel_size must be an odd positive int"),
    (dict(cond_channels=0), "cond_channels must be a positive int"),
    (dict(latent_dim=0), "PixelVAE: latent_dim must be a positive int"),
    (dict(free_bits=-0.5), "free_bits must be a non-negative number"),
])
def test_clear_errors_for_bad_configurations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_pixelvae(**kwargs)
    with pytest.raises(ValueError, match="image_shape must be"):
        ConditionalPixelCNN((4, 4), 2)
