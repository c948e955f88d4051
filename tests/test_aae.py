"""The adversarial autoencoder: the priors (the circular mixture's means, covariances and
densities), each of the three losses against a NumPy forward pass of the networks, which players
each phase moves, the label choosing the component (the discriminator sees it, samples follow it,
and a short training makes class-y samples look like class y), evaluation, pictures, exact
resume and bad input.  Tiny MLPs on 4x4 / 8x8 images."""
import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import nanogen as ng
from nanogen import nn
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import get_model_spec
from nanogen.models.autoencoders.aae import AAE, mixture_parameters
from nanogen.training import train


def tiny_aae(image_shape=(1, 4, 4), seed=0, **kwargs):
    ng.manual_seed(seed)
    kwargs = {"hidden": (6,), "disc_hidden": (5,), **kwargs}
    return AAE(image_shape=image_shape, **kwargs)


def tiny_mixture(label_prior=True, **kwargs):
    return tiny_aae(latent_dim=2, prior="mixture", label_prior=label_prior, **kwargs)


def binary_images(n, shape=(1, 4, 4), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, *shape)) < 0.4).astype(np.float64)


def numpy_forward(module, x):
    """The forward pass of a Sequential of Flatten / Linear / ReLU / LeakyReLU / Unflatten,
    in float64 NumPy from the module's weights."""
    for layer in module:
        if isinstance(layer, nn.Flatten):
            x = x.reshape(len(x), -1)
        elif isinstance(layer, nn.Unflatten):
            x = x.reshape(len(x), *layer.unflattened_size)
        elif isinstance(layer, nn.Linear):
            x = x @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()
        elif isinstance(layer, nn.ReLU):
            x = np.maximum(x, 0.0)
        elif isinstance(layer, nn.LeakyReLU):
            x = np.where(x > 0, x, 0.2 * x)
        else:
            raise TypeError(f"numpy_forward: no reference for {type(layer).__name__}")
    return x


def softplus(a):
    return np.logaddexp(0.0, a)


def numpy_discriminator(model, z, y=None):
    if y is not None:
        z = np.concatenate([z, np.eye(model.components)[y]], 1)
    return numpy_forward(model.discriminator, z)[:, 0]


def parameters_of(module):
    return {k: v.detach().numpy().copy() for k, v in module.named_parameters()}


def changed(before, module):
    return {k for k, v in module.named_parameters() if not np.array_equal(v.detach().numpy(),
                                                                          before[k])}


# ---------------------------------------------------------------- the priors
def test_mixture_components_sit_evenly_on_the_circle_stretched_along_the_radius():
    means, scales = mixture_parameters(10, 4.0, 1.0, 0.25)
    assert means.shape == (10, 2) and scales.shape == (10, 2, 2)
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), 4.0)
    angles = np.arctan2(means[:, 1], means[:, 0]) % (2 * np.pi)
    np.testing.assert_allclose(angles, 2 * np.pi * np.arange(10) / 10, atol=1e-12)
    # first column: sigma_r along the mean's direction; second: sigma_t across it
    np.testing.assert_allclose(scales[:, :, 0], means / 4.0 * 1.0, atol=1e-12)
    np.testing.assert_allclose((scales[:, :, 1] * means).sum(1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(scales[:, :, 1], axis=1), 0.25)


@pytest.mark.parametrize("k", [0, 3, 7])
def test_a_chosen_component_is_drawn_with_its_mean_and_covariance(k):
    model = tiny_mixture().double()
    n = 40000
    ng.manual_seed(1)
    z = model.sample_prior(n, ng.tensor(np.full(n, k))).numpy()
    theta = 2 * np.pi * k / 10
    u, v = np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])
    cov = 1.0 * np.outer(u, u) + 0.25 ** 2 * np.outer(v, v)
    standard_error = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(z.mean(0) - 4.0 * u) < 5 * standard_error)
    np.testing.assert_allclose(np.cov(z.T), cov, atol=0.03)


def test_without_labels_the_mixture_draws_every_component_equally_often():
    model = tiny_mixture(label_prior=False).double()
    ng.manual_seed(2)
    z = model.sample_prior(20000)
    nearest = model.mixture_log_densities(z).argmax(1)
    shares = np.bincount(nearest, minlength=10) / 20000
    # the components overlap little (tangential sd 0.25 at radius >= 2): shares near 1/10
    np.testing.assert_allclose(shares, 0.1, atol=0.015)


def test_mixture_log_densities_match_scipy():
    model = tiny_mixture().double()
    z = np.random.default_rng(3).normal(0, 3, (7, 2))
    got = model.mixture_log_densities(z)
    means, scales = mixture_parameters(10, 4.0, 1.0, 0.25)
    want = np.stack([multivariate_normal(means[k], scales[k] @ scales[k].T).logpdf(z)
                     for k in range(10)], 1)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_gaussian_prior_draws_standard_normal_codes():
    model = tiny_aae(latent_dim=3).double()
    ng.manual_seed(4)
    z = model.sample_prior(30000).numpy()
    assert z.shape == (30000, 3)
    assert np.all(np.abs(z.mean(0)) < 5 / math.sqrt(30000))
    np.testing.assert_allclose(np.cov(z.T), np.eye(3), atol=0.04)


# ---------------------------------------------------------------- the three losses
def test_reconstruction_loss_against_numpy():
    model = tiny_aae(latent_dim=3).double()
    x = binary_images(5)
    codes = numpy_forward(model.encoder.net, x)
    logits = numpy_forward(model.decoder.net, codes)
    want = (softplus(logits) - x * logits).reshape(5, -1).sum(1).mean()
    got = model.reconstruction_loss(ng.tensor(x)).item()
    assert got == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(model.codes(ng.tensor(x)).numpy(), codes, rtol=1e-12)


@pytest.mark.parametrize("label_prior", [False, True])
def test_discriminator_and_generator_losses_against_numpy(label_prior):
    model = tiny_mixture(label_prior=label_prior).double()
    rng = np.random.default_rng(5)
    codes, prior = rng.normal(0, 2, (6, 2)), rng.normal(0, 2, (6, 2))
    y = np.array([0, 3, 9, 3, 1, 5]) if label_prior else None
    real, fake = numpy_discriminator(model, prior, y), numpy_discriminator(model, codes, y)
    # eq. (4): -E log sigma(d(prior)) - E log(1 - sigma(d(codes)));  eq. (5): -E log sigma(d(codes))
    want_d = softplus(-real).mean() + softplus(fake).mean()
    want_g = softplus(-fake).mean()
    y_t = None if y is None else ng.tensor(y)
    got_d = model.discriminator_loss(ng.tensor(codes), ng.tensor(prior), y_t).item()
    got_g = model.generator_loss(ng.tensor(codes), y_t).item()
    assert got_d == pytest.approx(want_d, rel=1e-12)
    assert got_g == pytest.approx(want_g, rel=1e-12)


# ---------------------------------------------------------------- the three phases
def test_each_phase_moves_only_its_players_and_logs_the_loss_before_its_step():
    model = tiny_mixture().double()
    opts = model.configure_optimizers(1e-2)
    x, y = ng.tensor(binary_images(6)), ng.tensor(np.arange(6) % 10)

    before = parameters_of(model)
    want = model.reconstruction_loss(x).item()
    assert model.reconstruction_step(x, opts["autoencoder"]) == pytest.approx(want, rel=1e-12)
    moved = changed(before, model)
    assert moved and all(k.startswith(("encoder.", "decoder.")) for k in moved)

    before = parameters_of(model)
    with ng.no_grad():
        codes = model.encode(x)
    ng.manual_seed(6)
    want = model.discriminator_loss(codes, model.sample_prior(6, y), y).item()
    ng.manual_seed(6)
    loss, d_real, d_fake = model.discriminator_step(x, y, opts["discriminator"])
    assert loss == pytest.approx(want, rel=1e-12)
    assert 0 < d_real < 1 and 0 < d_fake < 1
    moved = changed(before, model)
    assert moved and all(k.startswith("discriminator.") for k in moved)

    before = parameters_of(model)
    want = model.generator_loss(model.codes(x), y).item()
    assert model.encoder_step(x, y, opts["encoder"]) == pytest.approx(want, rel=1e-12)
    moved = changed(before, model)
    assert moved and all(k.startswith("encoder.") for k in moved)
    assert all(p.requires_grad for p in model.discriminator.parameters())   # unfrozen after


def test_training_step_runs_the_three_phases_in_order():
    a, b = tiny_aae(latent_dim=2).double(), tiny_aae(latent_dim=2).double()
    x = ng.tensor(binary_images(8))
    opts_a, opts_b = a.configure_optimizers(1e-2), b.configure_optimizers(1e-2)
    ng.manual_seed(7)
    logs = a.training_step((x, None), opts_a)
    ng.manual_seed(7)
    recon = b.reconstruction_step(x, opts_b["autoencoder"])
    loss_d, _, _ = b.discriminator_step(x, None, opts_b["discriminator"])
    loss_g = b.encoder_step(x, None, opts_b["encoder"])
    assert (logs["recon"], logs["loss_d"], logs["loss_g"]) == (recon, loss_d, loss_g)
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), b.state_dict()[key].numpy())


def test_the_encoder_phases_keep_separate_adam_states():
    model = tiny_aae()
    opts = model.configure_optimizers(1e-3)
    assert set(opts) == {"autoencoder", "discriminator", "encoder"}
    encoder = {id(p) for p in model.encoder.parameters()}
    decoder = {id(p) for p in model.decoder.parameters()}
    ids = {name: {id(p) for g in opt.param_groups for p in g["params"]}
           for name, opt in opts.items()}
    assert ids["autoencoder"] == encoder | decoder and ids["encoder"] == encoder
    assert ids["discriminator"] == {id(p) for p in model.discriminator.parameters()}
    assert opts["encoder"].param_groups[0]["betas"] == (0.5, 0.999)
    scaled = tiny_aae(adversarial_lr=0.25).configure_optimizers(1e-3)
    assert scaled["discriminator"].param_groups[0]["lr"] == pytest.approx(2.5e-4)
    assert scaled["encoder"].param_groups[0]["lr"] == pytest.approx(2.5e-4)
    assert scaled["autoencoder"].param_groups[0]["lr"] == pytest.approx(1e-3)


# ---------------------------------------------------------------- the label chooses the component
def test_the_discriminator_sees_the_label():
    model = tiny_mixture().double()
    z = ng.tensor(np.random.default_rng(8).normal(0, 2, (4, 2)))
    with ng.no_grad():
        d0 = model.discriminate(z, ng.tensor(np.zeros(4, np.int64))).numpy()
        d1 = model.discriminate(z, ng.tensor(np.ones(4, np.int64))).numpy()
    assert np.all(d0 != d1)


def test_labels_choose_the_component_of_the_samples():
    model = tiny_mixture().double()
    assert model.conditional
    images, codes = [], []
    for k in (0, 5):
        ng.manual_seed(9)
        images.append(model.sample(4, ng.tensor(np.full(4, k))).numpy())
        ng.manual_seed(9)
        codes.append(model.sample_prior(4, ng.tensor(np.full(4, k))).numpy())
    assert not np.allclose(images[0], images[1])
    # the same noise, the opposite component: z_5 = -z_0 (the circle's antipode)
    np.testing.assert_allclose(codes[1], -codes[0], atol=1e-12)


def test_an_unconditional_model_ignores_labels():
    model = tiny_mixture(label_prior=False)
    assert not model.conditional
    ng.manual_seed(10)
    a = model.sample(3, ng.tensor([0, 0, 0])).numpy()
    ng.manual_seed(10)
    b = model.sample(3, ng.tensor([7, 7, 7])).numpy()
    np.testing.assert_array_equal(a, b)


def two_class_images(n, seed):
    """Class 0: the left half of a 4x4 image lit, class 1: the right half; 10% pixel noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = np.zeros((n, 1, 4, 4))
    x[y == 0, :, :, :2] = 1.0
    x[y == 1, :, :, 2:] = 1.0
    flip = rng.random(x.shape) < 0.1
    return np.where(flip, 1.0 - x, x).astype(np.float32), y


def test_after_training_class_y_samples_look_like_class_y():
    """The game (6) puts class y's codes on component y, so decoding component y draws class
    y; the unconditional decoder of the same mixture does not know which petal is which."""
    ng.manual_seed(11)
    model = AAE(image_shape=(1, 4, 4), num_classes=2, latent_dim=2, prior="mixture",
                label_prior=True, hidden=(32,), disc_hidden=(32,))
    opts = model.configure_optimizers(3e-3)
    x, y = two_class_images(400, 12)
    for step in range(150):
        i = np.random.default_rng(step).choice(400, 32, replace=False)
        model.training_step((ng.tensor(x[i]), ng.tensor(y[i])), opts)
    ng.manual_seed(13)
    for k in (0, 1):
        s = model.sample(50, ng.tensor(np.full(50, k))).numpy()
        left, right = s[..., :2].mean(), s[..., 2:].mean()
        assert (left - right) * (1 if k == 0 else -1) > 0.5, (k, left, right)


# ---------------------------------------------------------------- evaluation and pictures
def test_evaluate_reports_reconstruction_and_component_accuracy_over_the_loader():
    model = tiny_mixture()             # the loader hands out float32
    x = binary_images(10).astype(np.float32)
    y = np.arange(10) % 10
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    metrics = model.evaluate(loader)
    codes = numpy_forward(model.encoder.net, x)
    logits = numpy_forward(model.decoder.net, codes)
    probs = 1 / (1 + np.exp(-logits))
    assert metrics["num_examples"] == 10
    assert metrics["recon_nats"] == pytest.approx(
        (softplus(logits) - x * logits).reshape(10, -1).sum(1).mean(), rel=1e-5)
    assert metrics["reconstruction_mse"] == pytest.approx(((probs - x) ** 2).mean(), rel=1e-5)
    nearest = model.mixture_log_densities(codes).argmax(1)
    assert metrics["component_accuracy"] == pytest.approx((nearest == y).mean())
    assert metrics["component_shares_min"] == pytest.approx(
        10 * (np.bincount(nearest, minlength=10) / 10).min())
    gaussian = tiny_aae().evaluate(loader)
    assert set(gaussian) == {"recon_nats", "reconstruction_mse", "num_examples"}


def test_figures_show_reconstructions_codes_and_components():
    model = tiny_mixture(image_shape=(1, 8, 8))
    x, y = ng.tensor(binary_images(6, (1, 8, 8)).astype(np.float32)), ng.tensor(np.arange(6))
    figures = model.figures(x, y)
    assert set(figures) == {"reconstructions", "codes", "components"}
    pairs, nrow = figures["reconstructions"]
    assert nrow == 12 and pairs.shape == (12, 1, 8, 8)
    np.testing.assert_array_equal(pairs.numpy()[0::2], x.numpy())
    np.testing.assert_allclose(pairs.numpy()[1::2], model.reconstruct(x).numpy())
    picture, nrow = figures["codes"]
    assert nrow == 1 and picture.shape[:2] == (1, 3) and picture.shape[2] > 100
    assert 0 <= picture.numpy().min() and picture.numpy().max() <= 1
    assert len(np.unique(picture.numpy())) > 10                     # something was drawn
    images, nrow = figures["components"]
    assert nrow == 10 and images.shape == (100, 1, 8, 8)
    # an 8-d Gaussian code has no scatter and no components
    assert set(tiny_aae(image_shape=(1, 8, 8)).figures(x, y)) == {"reconstructions"}


def test_figures_plot_the_codes_of_the_last_evaluation(monkeypatch):
    import nanogen.utils.plot as plot
    drawn = {}

    def fake_scatter(codes, labels, background=None, title=None):
        drawn.update(codes=np.asarray(codes), labels=np.asarray(labels))
        return np.zeros((3, 4, 4), np.float32)

    monkeypatch.setattr(plot, "class_scatter_image", fake_scatter)
    model = tiny_mixture()
    x, y = binary_images(9).astype(np.float32), np.arange(9) % 3
    model.evaluate(DataLoader(TensorDataset(x, y), batch_size=4))
    model.figures(ng.tensor(x[:2]), ng.tensor(y[:2]))
    np.testing.assert_allclose(drawn["codes"], numpy_forward(model.encoder.net, x), rtol=1e-5)
    np.testing.assert_array_equal(drawn["labels"], y)


# ---------------------------------------------------------------- training, resume, registry
def test_a_few_training_steps_lower_the_reconstruction_loss():
    model = tiny_aae(latent_dim=4, hidden=(32,))
    x = ng.tensor(binary_images(16).astype(np.float32))
    opts = model.configure_optimizers(3e-3)
    first = model.training_step((x, None), opts)["recon"]
    for _ in range(40):
        last = model.training_step((x, None), opts)["recon"]
    assert last < 0.8 * first


def test_the_conv_networks_train_and_sample():
    model = tiny_aae(image_shape=(1, 8, 8), latent_dim=3, network="conv", channels=(4,))
    assert type(model.encoder).__name__ == "ConvEncoder"
    assert type(model.decoder).__name__ == "ConvDecoder"
    x = ng.tensor(binary_images(4, (1, 8, 8)).astype(np.float32))
    logs = model.training_step((x, None), model.configure_optimizers(1e-3))
    assert all(np.isfinite(v) for v in logs.values())
    assert model.codes(x).shape == (4, 3) and model.sample(2).shape == (2, 1, 8, 8)


def run(out_dir, steps, resume=False):
    model = tiny_mixture(seed=0 if not resume else 123)
    x, y = binary_images(24).astype(np.float32), np.arange(24) % 10
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=1)
    train(model, loader, steps=steps, out_dir=out_dir, config={"model": "aae-mixture"},
          lr=1e-2, progress=False, checkpoint_every=1, sample_every=1000, resume=resume)
    return model


def test_training_resumes_exactly(tmp_path):
    straight = run(tmp_path / "a", 6)
    run(tmp_path / "b", 2)
    resumed = run(tmp_path / "b", 6, resume=True)
    for key, value in straight.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), resumed.state_dict()[key].numpy(), key)


@pytest.mark.parametrize("name, prior, label_prior, latent_dim, adversarial_lr", [
    ("aae", "gaussian", False, 4, 0.1), ("aae-mixture", "mixture", True, 2, 3.0)])
def test_registered_models(name, prior, label_prior, latent_dim, adversarial_lr):
    spec = get_model_spec(name)
    model = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
    assert isinstance(model, AAE) and model.judged_by_samples
    assert (model.prior, model.label_prior, model.latent_dim, model.adversarial_lr) == (
        prior, label_prior, latent_dim, adversarial_lr)
    assert model.conditional == label_prior
    assert set(model.inference_state_dict()) == {k for k in model.state_dict()
                                                 if not k.startswith("discriminator.")}


# ---------------------------------------------------------------- bad input
def test_missing_or_out_of_range_labels_give_one_clear_line():
    model = tiny_mixture()
    opts = model.configure_optimizers(1e-3)
    x = ng.tensor(binary_images(4).astype(np.float32))
    with pytest.raises(ValueError, match=r"^AAE.training_step: this model is class-conditional; "
                                         r"pass the labels y$"):
        model.training_step((x, None), opts)
    with pytest.raises(ValueError, match=r"^AAE.training_step: labels must lie in \[0, 10\), got "
                                         r"values from 0 to 10$"):
        model.training_step((x, ng.tensor([0, 1, 10, 2])), opts)
    with pytest.raises(ValueError, match=r"^AAE.sample: labels must lie in \[0, 10\), got values "
                                         r"from -1 to 3$"):
        model.sample(2, ng.tensor([-1, 3]))
    with pytest.raises(ValueError, match=r"^AAE.sample: expected 3 labels of shape \(3,\)"):
        model.sample(3, ng.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"^AAE.discriminate: this model is class-conditional"):
        model.discriminate(ng.zeros(2, 2))


@pytest.mark.parametrize("kwargs, message", [
    ({"prior": "laplace"}, r"AAE: unknown prior 'laplace'; choose one of gaussian, mixture"),
    ({"network": "rnn"}, r"AAE: unknown network 'rnn'; choose one of mlp, conv"),
    ({"prior": "mixture", "latent_dim": 3}, r"AAE: the mixture prior is 2-D; it needs "
                                            r"latent_dim=2, got latent_dim=3"),
    ({"label_prior": True}, r"AAE: label_prior=True .* needs prior='mixture'"),
    ({"prior": "mixture", "latent_dim": 2, "label_prior": True, "components": 4},
     r"AAE: label_prior=True needs a component per class: 10 classes but components=4"),
    ({"prior": "mixture", "latent_dim": 2, "radial_std": 0.0}, r"positive standard deviations"),
    ({"adversarial_lr": 0}, r"AAE: adversarial_lr must be positive"),
    ({"network": "conv", "image_shape": (1, 6, 6), "channels": (4, 4)},
     r"needs H and W divisible by 4, got 6x6"),
])
def test_bad_configurations_give_one_clear_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_aae(**kwargs)


def test_wrong_shapes_give_one_clear_line():
    model = tiny_aae(latent_dim=3)
    with pytest.raises(ValueError, match=r"^AAE.encode: expected images of shape \(N, 1, 4, 4\), "
                                         r"got \(2, 1, 8, 8\)$"):
        model.codes(ng.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"^AAE.decode: expected codes of shape \(N, 3\), got "
                                         r"\(2, 2\)$"):
        model.decode(ng.zeros(2, 2))
    with pytest.raises(ValueError, match=r"^AAE.training_step: expected images"):
        model.training_step((ng.zeros(2, 16), None), model.configure_optimizers(1e-3))
    with pytest.raises(ValueError, match=r"mixture_log_densities: this model's prior is not the "
                                         r"mixture"):
        model.mixture_log_densities(np.zeros((1, 3)))
