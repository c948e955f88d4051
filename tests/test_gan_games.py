"""The table of GAN games on one backbone: the least-squares, Wasserstein and hinge losses against
their formulas, the WGAN-GP and DRAGAN penalties against finite differences of the critic (and
their second derivatives), weight clipping, spectral normalisation against the SVD (and against
PyTorch where installed) with its power-iteration state surviving a resume, the registered
``lsgan`` / ``wgan`` / ``wgan-gp`` / ``dragan`` / ``sngan`` settings, and the errors."""
import numpy as np
import pytest
from hypothesis import given

import nanogen as ng
from nanogen import nn
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import get_model_spec
from nanogen.models.gans import DCGAN, GAN
from nanogen.models.gans.losses import (ADVERSARIAL_LOSSES, hinge_critic_loss,
                                        hinge_generator_loss, least_squares_discriminator_loss,
                                        least_squares_generator_loss, wasserstein_critic_loss,
                                        wasserstein_generator_loss)
from nanogen.models.gans.penalties import (dragan_points, gradient_norm_penalty,
                                           wgan_gp_points)
from nanogen.optim import Adam, RMSprop
from nanogen.testing import gradcheck
from nanogen.training import train
from nanogen.training.checkpoint import load_checkpoint

from .oracle import needs_torch, torch
from .strategies import float64_arrays

scores = float64_arrays((5,), min_value=-3.0, max_value=3.0, away_from=(-1.0, 1.0))


def score_gradient(loss_fn, *arrays):
    tensors = [ng.tensor(a, requires_grad=True) for a in arrays]
    loss_fn(*tensors).backward()
    return [t.grad.numpy() for t in tensors]


# ---------------------------------------------------------------- the losses on scores
@given(real=scores, fake=scores)
def test_least_squares_losses_and_gradients_match_their_formulas(real, fake):
    n, m = len(real), len(fake)
    for name, (a, b, c) in {"least-squares": (-1.0, 1.0, 0.0),
                            "least-squares-01": (0.0, 1.0, 1.0)}.items():
        game = ADVERSARIAL_LOSSES[name]
        r, f = ng.tensor(real), ng.tensor(fake)
        assert game.discriminator(r, f).item() == pytest.approx(
            0.5 * np.mean((real - b) ** 2) + 0.5 * np.mean((fake - a) ** 2), rel=1e-12)
        assert game.generator(f).item() == pytest.approx(0.5 * np.mean((fake - c) ** 2),
                                                         rel=1e-12, abs=1e-15)
        g_real, g_fake = score_gradient(game.discriminator, real, fake)
        np.testing.assert_allclose(g_real, (real - b) / n, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(g_fake, (fake - a) / m, rtol=1e-12, atol=1e-15)
        (g_gen,) = score_gradient(game.generator, fake)
        np.testing.assert_allclose(g_gen, (fake - c) / m, rtol=1e-12, atol=1e-15)


def test_the_least_squares_coding_meets_the_pearson_chi2_conditions():
    """Mao et al.'s theorem needs b - c = 1 and b - a = 2 (the default); the 0-1 coding does
    not meet it and is kept as the paper's alternative."""
    r, f = ng.tensor([0.0]), ng.tensor([0.0])
    # recover a, b, c from the losses at 0: D loss = (b^2 + a^2) / 2, G loss = c^2 / 2
    assert ADVERSARIAL_LOSSES["least-squares"].discriminator(r, f).item() == pytest.approx(1.0)
    assert ADVERSARIAL_LOSSES["least-squares"].generator(f).item() == 0.0
    assert least_squares_discriminator_loss(ng.tensor([1.0]), ng.tensor([-1.0])).item() == 0.0
    assert least_squares_generator_loss(ng.tensor([0.0])).item() == 0.0


@given(real=scores, fake=scores)
def test_wasserstein_and_hinge_losses_and_gradients(real, fake):
    n, m = len(real), len(fake)
    r, f = ng.tensor(real), ng.tensor(fake)
    assert wasserstein_critic_loss(r, f).item() == pytest.approx(fake.mean() - real.mean(),
                                                                 abs=1e-12)
    assert wasserstein_generator_loss(f).item() == pytest.approx(-fake.mean(), abs=1e-12)
    assert hinge_critic_loss(r, f).item() == pytest.approx(
        np.maximum(0, 1 - real).mean() + np.maximum(0, 1 + fake).mean(), abs=1e-12)
    assert hinge_generator_loss(f).item() == pytest.approx(-fake.mean(), abs=1e-12)
    g_real, g_fake = score_gradient(wasserstein_critic_loss, real, fake)
    np.testing.assert_allclose(g_real, np.full(n, -1.0 / n), rtol=1e-12)
    np.testing.assert_allclose(g_fake, np.full(m, 1.0 / m), rtol=1e-12)
    # the hinge: only scores inside the margin move
    g_real, g_fake = score_gradient(hinge_critic_loss, real, fake)
    np.testing.assert_allclose(g_real, np.where(real < 1, -1.0 / n, 0.0), rtol=1e-12)
    np.testing.assert_allclose(g_fake, np.where(fake > -1, 1.0 / m, 0.0), rtol=1e-12)
    (g_gen,) = score_gradient(hinge_generator_loss, fake)
    np.testing.assert_allclose(g_gen, np.full(m, -1.0 / m), rtol=1e-12)


def test_every_game_checks_the_shape_of_its_inputs():
    for name, game in ADVERSARIAL_LOSSES.items():
        with pytest.raises(ValueError, match=r"shape \(N,\), got \(3, 1\)"):
            game.discriminator(ng.zeros(3, 1), ng.zeros(3))
        with pytest.raises(ValueError, match=r"shape \(N,\), got \(3, 1\)"):
            game.generator(ng.zeros(3, 1))


# ---------------------------------------------------------------- the gradient penalties
class SmoothCritic(nn.Module):
    """A float64 critic with a smooth input gradient: tanh MLP, or a conv + layer norm net."""

    def __init__(self, shape, seed=0):
        super().__init__()
        ng.manual_seed(seed)
        if len(shape) == 1:
            self.net = nn.Sequential(nn.Linear(shape[0], 6), nn.Tanh(), nn.Linear(6, 1))
        else:
            self.net = nn.Sequential(nn.Conv2d(shape[0], 3, 3, 2, 1), nn.GroupNorm(1, 3),
                                     nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 1))
        self.to(ng.float64)

    def forward(self, x):
        return self.net(x).reshape(x.shape[0])


def finite_difference_input_gradients(critic, points, h=1e-6):
    """d D(x_i) / d x_i by central differences, one coordinate at a time."""
    x = points.copy()
    grads = np.zeros_like(x)
    flat, flat_grads = x.reshape(len(x), -1), grads.reshape(len(x), -1)
    with ng.no_grad():
        for j in range(flat.shape[1]):
            saved = flat[:, j].copy()
            flat[:, j] = saved + h
            up = critic(ng.tensor(x)).numpy()
            flat[:, j] = saved - h
            down = critic(ng.tensor(x)).numpy()
            flat[:, j] = saved
            flat_grads[:, j] = (up - down) / (2 * h)
    return grads


@pytest.mark.parametrize("shape", [(3,), (2, 8, 8)])
def test_gradient_norm_penalty_against_finite_differences_of_the_critic(shape):
    critic = SmoothCritic(shape)
    points = np.random.default_rng(1).normal(size=(4, *shape))
    grads = finite_difference_input_gradients(critic, points)
    norms = np.sqrt((grads.reshape(4, -1) ** 2).sum(axis=1))
    expected = np.mean((norms - 1.0) ** 2)
    assert gradient_norm_penalty(critic, ng.tensor(points)).item() == pytest.approx(
        expected, rel=1e-6, abs=1e-9)


def test_the_penalty_is_differentiated_through_the_input_gradient():
    """A gradient of a gradient: d penalty / d W checked against central differences."""
    points = ng.tensor(np.random.default_rng(2).normal(size=(5, 3)))
    v = ng.tensor(np.array([[0.7], [-1.3], [0.4]]))

    def penalty(w):
        return gradient_norm_penalty(lambda x: F_tanh_mlp(x, w, v), points)

    w = ng.tensor(np.random.default_rng(3).normal(size=(3, 3)), requires_grad=True)
    assert gradcheck(penalty, [w])


def F_tanh_mlp(x, w, v):
    return ((x @ w).tanh() @ v).reshape(x.shape[0])


def test_wgan_gp_points_lie_on_the_segments_between_pairs():
    ng.manual_seed(0)
    real, fake = ng.randn(6, 1, 4, 4), ng.randn(6, 1, 4, 4)
    points = wgan_gp_points(real, fake).numpy()
    r, f = real.numpy(), fake.numpy()
    eps = (points - f).reshape(6, -1) / (r - f).reshape(6, -1)
    assert np.allclose(eps, eps[:, :1], atol=1e-4)        # one epsilon per example
    assert (eps >= -1e-6).all() and (eps <= 1 + 1e-6).all()
    assert eps[:, 0].std() > 0.05                           # drawn, not fixed


def test_dragan_points_stay_within_half_a_standard_deviation_above_the_data():
    ng.manual_seed(0)
    real = ng.randn(8, 5) * 3.0
    points = dragan_points(real, None).numpy()
    offset = points - real.numpy()
    spread = real.numpy().std()
    assert (offset >= 0).all() and (offset <= 0.5 * spread + 1e-6).all()
    assert offset.max() > 0.1 * spread


def wgan_gp_critic_model(seed=0):
    ng.manual_seed(seed)
    return DCGAN(image_shape=(1, 8, 8), latent_dim=6, channels=(4, 8), loss="wasserstein",
                 penalty="wgan-gp", critic_norm="layer", k=1)


def test_the_discriminator_loss_adds_lambda_times_the_penalty():
    model = wgan_gp_critic_model()
    ng.manual_seed(5)
    real, fake = ng.randn(4, 1, 8, 8), ng.randn(4, 1, 8, 8)
    ng.manual_seed(7)
    loss, logs = model.discriminator_loss(real, None, fake, None)
    ng.manual_seed(7)
    points = wgan_gp_points(real, fake)
    penalty = gradient_norm_penalty(model.discriminate, points).item()
    game = (model.discriminate(fake).mean() - model.discriminate(real).mean()).item()
    assert logs["penalty"] == pytest.approx(penalty, rel=1e-6)
    assert loss.item() == pytest.approx(game + 10.0 * penalty, rel=1e-5, abs=1e-6)
    assert set(logs) == {"penalty", "score_real", "score_fake"}


# ---------------------------------------------------------------- weight clipping
def test_wgan_clips_every_critic_weight_after_each_update_and_uses_rmsprop():
    spec = get_model_spec("wgan")
    ng.manual_seed(0)
    model = spec.build(image_shape=(1, 8, 8), latent_dim=6, channels=(4, 8), **spec.kwargs)
    optimizers = model.configure_optimizers(spec.lr)
    assert all(type(o) is RMSprop for o in optimizers.values())
    for p in model.discriminator.parameters():        # start far outside the box
        p.data[...] = p.data * 100.0
    x = ng.rand(5 * 4, 1, 8, 8) * 2 - 1
    logs = model.training_step((x, None), optimizers)
    for p in model.discriminator.parameters():
        assert np.abs(p.detach().numpy()).max() <= 0.01 + 1e-9
    assert {"loss_d", "loss_g", "score_real", "score_fake"} == set(logs)
    # the generator is not clipped
    assert max(np.abs(p.detach().numpy()).max() for p in model.generator.parameters()) > 0.01


# ---------------------------------------------------------------- spectral normalisation
def top_singular_value(matrix):
    return np.linalg.svd(matrix, compute_uv=False)[0]


@pytest.mark.parametrize("make, dim", [(lambda: nn.Linear(7, 5), 0),
                                       (lambda: nn.Conv2d(3, 4, 3), 0),
                                       (lambda: nn.ConvTranspose2d(3, 4, 3), 1)])
def test_power_iteration_converges_to_the_top_singular_value(make, dim):
    ng.manual_seed(0)
    layer = nn.utils.spectral_norm(make())
    w = layer.weight_orig.detach().numpy()
    matrix = np.moveaxis(w, dim, 0).reshape(w.shape[dim], -1)
    x = ng.randn(2, 7) if isinstance(layer, nn.Linear) else ng.randn(2, 3, 5, 5)
    for _ in range(200):                           # one power iteration per training forward
        layer(x)
    u, v = layer.weight_u.numpy(), layer.weight_v.numpy()
    assert u @ matrix @ v == pytest.approx(top_singular_value(matrix), rel=1e-4)
    normalised = np.moveaxis(layer.weight.detach().numpy(), dim, 0).reshape(matrix.shape)
    assert top_singular_value(normalised) == pytest.approx(1.0, rel=1e-4)
    # in eval mode the estimate is used as it is
    layer.eval()
    layer(x)
    assert np.array_equal(layer.weight_u.numpy(), u)


def test_spectral_norm_state_and_its_removal():
    ng.manual_seed(0)
    layer = nn.utils.spectral_norm(nn.Linear(4, 3))
    assert list(layer.state_dict()) == ["bias", "weight_orig", "weight_u", "weight_v"]
    assert [name for name, _ in layer.named_parameters()] == ["bias", "weight_orig"]
    assert layer.weight_u.shape == (3,) and layer.weight_v.shape == (4,)
    x = ng.randn(2, 4)
    layer(x)
    expected = layer.weight.detach().numpy()
    layer.eval()
    nn.utils.remove_spectral_norm(layer)
    assert [name for name, _ in layer.named_parameters()] == ["bias", "weight"]
    np.testing.assert_allclose(layer.weight.detach().numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="spectral_norm of 'weight' not found in Linear"):
        nn.utils.remove_spectral_norm(layer)


def test_spectral_norm_errors():
    layer = nn.utils.spectral_norm(nn.Linear(4, 3))
    with pytest.raises(RuntimeError, match="Linear.weight already has spectral normalisation"):
        nn.utils.spectral_norm(layer)
    with pytest.raises(ValueError, match="has no parameter 'kernel'"):
        nn.utils.spectral_norm(nn.Linear(4, 3), name="kernel")
    with pytest.raises(ValueError, match=r"Linear.bias has shape \(3,\); it needs a matrix"):
        nn.utils.spectral_norm(nn.Linear(4, 3), name="bias")
    with pytest.raises(ValueError, match="n_power_iterations must be a positive int"):
        nn.utils.spectral_norm(nn.Linear(4, 3), n_power_iterations=0)
    with pytest.raises(TypeError, match="expects an nn.Module"):
        nn.utils.spectral_norm(ng.zeros(3, 3))


@needs_torch
@pytest.mark.parametrize("kind", ["linear", "conv", "conv_transpose"])
def test_spectral_norm_agrees_with_pytorch(kind):
    ng.manual_seed(1)
    ours, theirs, x = {
        "linear": (nn.Linear(5, 4), torch.nn.Linear(5, 4), np.random.randn(3, 5)),
        "conv": (nn.Conv2d(2, 4, 3), torch.nn.Conv2d(2, 4, 3), np.random.randn(3, 2, 6, 6)),
        "conv_transpose": (nn.ConvTranspose2d(2, 4, 3), torch.nn.ConvTranspose2d(2, 4, 3),
                           np.random.randn(3, 2, 5, 5)),
    }[kind]
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.detach().numpy()))
        theirs.bias.copy_(torch.tensor(ours.bias.detach().numpy()))
    nn.utils.spectral_norm(ours)
    torch.nn.utils.spectral_norm(theirs)
    with torch.no_grad():
        theirs.weight_u.copy_(torch.tensor(ours.weight_u.numpy()))
        theirs.weight_v.copy_(torch.tensor(ours.weight_v.numpy()))
    x = x.astype(np.float32)
    for _ in range(3):                                   # three forwards, three iterations
        a, b = ours(ng.tensor(x)), theirs(torch.tensor(x))
        a.sum().backward()
        b.sum().backward()
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.weight_u.numpy(), theirs.weight_u.numpy(), atol=1e-6)
    np.testing.assert_allclose(ours.weight_v.numpy(), theirs.weight_v.numpy(), atol=1e-6)
    np.testing.assert_allclose(ours.weight_orig.grad.numpy(),
                               theirs.weight_orig.grad.numpy(), rtol=1e-4, atol=1e-5)


def sngan(seed):
    ng.manual_seed(seed)
    spec = get_model_spec("sngan")
    return spec.build(image_shape=(1, 8, 8), latent_dim=6, channels=(4, 8), **spec.kwargs)


def sngan_run(out_dir, steps, resume=False, seed=0):
    model = sngan(seed)
    images = np.random.default_rng(0).uniform(-1, 1, size=(32, 1, 8, 8)).astype(np.float32)
    loader = DataLoader(TensorDataset(images, np.zeros(32, dtype=np.int64)), batch_size=8,
                        shuffle=True, drop_last=True, seed=3)
    train(model, loader, steps=steps, out_dir=str(out_dir), config={"model": "sngan"},
          lr=2e-4, resume=resume, sample_every=1000, checkpoint_every=1000, log_every=1,
          num_samples=4, progress=False)
    return model


def test_spectral_norm_state_survives_a_resume_bit_for_bit(tmp_path):
    straight = sngan_run(tmp_path / "straight", 4)
    sngan_run(tmp_path / "broken", 2)
    resumed = sngan_run(tmp_path / "broken", 4, resume=True, seed=99)
    a, b = straight.state_dict(), resumed.state_dict()
    assert any(key.endswith("weight_u") for key in a)
    assert list(a) == list(b)
    for key in a:
        assert np.array_equal(a[key].numpy(), b[key].numpy()), key
    saved = load_checkpoint(str(tmp_path / "broken"))["model"]
    assert any(key.endswith("weight_v") for key in saved)


# ---------------------------------------------------------------- the registered games
GAME_SETTINGS = {   # name: loss, k, optimizer type, lr, constraint, critic norm layer
    "lsgan": ("least-squares", 1, Adam, 2e-4, {}, nn.BatchNorm2d),
    "wgan": ("wasserstein", 5, RMSprop, 5e-5, {"weight_clip": 0.01}, nn.BatchNorm2d),
    "wgan-gp": ("wasserstein", 5, Adam, 1e-4, {"penalty_name": "wgan-gp"}, nn.GroupNorm),
    "dragan": ("non-saturating", 1, Adam, 1e-4, {"penalty_name": "dragan"}, nn.GroupNorm),
    "sngan": ("hinge", 1, Adam, 2e-4, {"spectral_norm": True}, None),
}


@pytest.mark.parametrize("name", sorted(GAME_SETTINGS))
def test_registered_games_on_images_and_points(name):
    loss, k, optimizer, lr, constraint, norm = GAME_SETTINGS[name]
    spec = get_model_spec(name)
    assert spec.lr == lr and spec.data_kinds == ("image", "points")
    image = spec.build(image_shape=(1, 8, 8), latent_dim=4, channels=(4, 8), **spec.kwargs)
    points = spec.build(image_shape=(2,), latent_dim=2, hidden=(8,), **spec.kwargs)
    assert isinstance(image, DCGAN) and isinstance(points, GAN)
    for model in (image, points):
        assert model.loss_name == loss and model.batches_per_step == k
        for key, value in constraint.items():
            assert getattr(model, key) == value
        assert all(type(o) is optimizer for o in model.configure_optimizers(lr).values())
    norms = {type(m) for m in image.discriminator.modules()
             if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))}
    assert norms == ({norm} if norm else set())
    if name == "wgan-gp":
        assert image.betas == (0.0, 0.9)
    if name == "sngan":
        assert all(hasattr(m, "weight_orig") for m in image.discriminator.modules()
                   if isinstance(m, (nn.Conv2d, nn.Linear)))
    # one training step on each backbone, finite losses
    ng.manual_seed(1)
    for model, x in ((image, ng.rand(8 * k, 1, 8, 8) * 2 - 1), (points, ng.randn(8 * k, 2))):
        logs = model.training_step((x, None), model.configure_optimizers(lr))
        assert all(np.isfinite(v) for v in logs.values())


@pytest.mark.parametrize("kwargs, match", [
    ({"penalty": "r1"}, "unknown penalty 'r1'; choose one of wgan-gp, dragan"),
    ({"penalty": "wgan-gp"}, "discriminator's BatchNorm2d mixes the examples.*critic_norm"),
    ({"penalty": "wgan-gp", "critic_norm": "layer", "weight_clip": 0.01},
     "one way to constrain the discriminator, got penalty and weight_clip"),
    ({"spectral_norm": True, "weight_clip": 0.01}, "got weight_clip and spectral_norm"),
    ({"weight_clip": -1.0}, "weight_clip must be a positive number"),
    ({"penalty": "dragan", "critic_norm": "layer", "penalty_weight": 0}, "penalty_weight must"),
    ({"optimizer": "adagrad"}, "optimizer must be one of adam, rmsprop, got 'adagrad'"),
    ({"optimizer": "rmsprop", "betas": (0.5, 0.9)}, "betas are Adam's"),
    ({"betas": (0.5, 1.5)}, r"betas must be two numbers in \[0, 1\)"),
    ({"critic_norm": "instance"}, "critic_norm must be one of batch, layer, none"),
])
def test_clear_errors_for_bad_game_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DCGAN(image_shape=(1, 8, 8), latent_dim=4, channels=(4, 8), **kwargs)
