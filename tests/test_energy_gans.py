"""The autoencoder-discriminator GANs, EBGAN and BEGAN: the energies, EBGAN's margin loss and
pulling-away term (values and gradients against direct NumPy formulas), BEGAN's k_t controller
(with its clip at 0 and 1) and convergence measure against their formulas after real steps,
exact resume of k_t, shapes, the registry and the error messages.  Tiny networks: 8x8 images,
channels (4, 8), MLPs of width 16 on points."""
import json

import numpy as np
import pytest

import nanogen as ng
from nanogen.data import DataLoader, TensorDataset, load_dataset
from nanogen.models import get_model_spec
from nanogen.models.gans.energy_based import (BEGAN, EBGAN, AutoencoderDiscriminator,
                                              began_k_update, convergence_measure, margin_loss,
                                              pulling_away_term, reconstruction_energy)
from nanogen.testing import gradcheck
from nanogen.training import train

from .test_gans import mean_distance_to_nearest_mode


def tiny(cls, seed=0, image_shape=(1, 8, 8), **kwargs):
    ng.manual_seed(seed)
    if len(image_shape) == 3:
        kwargs = {"latent_dim": 6, "channels": (4, 8), "code_dim": 3, **kwargs}
    else:
        kwargs = {"latent_dim": 2, "hidden": (16, 16), "code_dim": 2, **kwargs}
    return cls(image_shape=image_shape, **kwargs)


def images(n, seed=0, shape=(1, 8, 8)):
    return ng.tensor(np.random.default_rng(seed).uniform(-1, 1, (n, *shape)).astype(np.float32))


# ---------------------------------------------------------------- energies and losses
def test_reconstruction_energies_match_their_formulas():
    rng = np.random.default_rng(0)
    x, r = rng.normal(size=(3, 2, 2, 2)), rng.normal(size=(3, 2, 2, 2))
    err = (r - x).reshape(3, -1)
    expected = {"l2": np.sqrt((err ** 2).sum(1)), "mse": (err ** 2).mean(1),
                "l1": np.abs(err).mean(1)}
    for kind, values in expected.items():
        np.testing.assert_allclose(reconstruction_energy(ng.tensor(x), ng.tensor(r), kind).numpy(),
                                   values, rtol=1e-12)


def test_the_discriminator_scores_each_sample_by_its_reconstruction_error():
    model = tiny(BEGAN)
    x = images(5)
    energies = model.discriminate(x)
    assert energies.shape == (5,)
    with ng.no_grad():
        reconstruction = model.discriminator.reconstruct(x).numpy()
    np.testing.assert_allclose(energies.detach().numpy(),
                               np.abs(reconstruction - x.numpy()).reshape(5, -1).mean(1),
                               rtol=1e-5)
    energies2, codes = model.energies_and_codes(x)
    assert codes.shape == (5, 3)
    np.testing.assert_array_equal(energies2.detach().numpy(), energies.detach().numpy())
    assert isinstance(model.discriminator, AutoencoderDiscriminator)
    assert type(model.discriminator.encoder).__name__ == "ConvEncoder"
    assert type(model.discriminator.decoder).__name__ == "ConvDecoder"


def test_margin_loss_and_its_gradient():
    real, fake, m = np.array([0.5, 2.0, 1.5]), np.array([0.3, 4.5, 2.9, 3.2]), 3.0
    r = ng.tensor(real, requires_grad=True)
    f = ng.tensor(fake, requires_grad=True)
    loss = margin_loss(r, f, m)
    assert loss.item() == pytest.approx(real.mean() + np.maximum(0, m - fake).mean(), rel=1e-12)
    loss.backward()
    np.testing.assert_allclose(r.grad.numpy(), np.full(3, 1 / 3), rtol=1e-12)
    # -1/N where the fake's energy is inside the margin, 0 where it is beyond
    np.testing.assert_allclose(f.grad.numpy(), np.array([-1, 0, -1, 0]) / 4, rtol=1e-12)


def pulling_away_numpy(s):
    n = len(s)
    total = sum((s[i] @ s[j] / np.linalg.norm(s[i]) / np.linalg.norm(s[j])) ** 2
                for i in range(n) for j in range(n) if i != j)
    return total / (n * (n - 1))


def pulling_away_gradient_numpy(s):
    """d f_PT / d S_i = (I - u_i u_i^T) / ||S_i|| * 4 / (N(N-1)) sum_{j != i} c_ij u_j."""
    n = len(s)
    norms = np.linalg.norm(s, axis=1, keepdims=True)
    u = s / norms
    c = u @ u.T
    grad = np.zeros_like(s)
    for i in range(n):
        g_u = 4 / (n * (n - 1)) * sum(c[i, j] * u[j] for j in range(n) if j != i)
        grad[i] = (g_u - u[i] * (u[i] @ g_u)) / norms[i]
    return grad


def test_pulling_away_term_value_and_gradient_against_direct_formulas():
    s = np.random.default_rng(1).normal(size=(5, 4))
    codes = ng.tensor(s, requires_grad=True)
    value = pulling_away_term(codes)
    assert value.item() == pytest.approx(pulling_away_numpy(s), rel=1e-12)
    value.backward()
    np.testing.assert_allclose(codes.grad.numpy(), pulling_away_gradient_numpy(s), rtol=1e-9,
                               atol=1e-14)
    gradcheck(pulling_away_term, [ng.tensor(s, requires_grad=True)])


def test_pulling_away_term_at_hand_picked_codes():
    orthogonal = ng.tensor(np.eye(3) * np.array([[2.0], [0.5], [3.0]]))
    assert pulling_away_term(orthogonal).item() == pytest.approx(0.0, abs=1e-15)
    parallel = ng.tensor(np.array([[1.0, 2.0], [-3.0, -6.0], [0.5, 1.0]]))
    assert pulling_away_term(parallel).item() == pytest.approx(1.0, rel=1e-12)
    # scaling a code leaves its cosines alone
    s = np.random.default_rng(2).normal(size=(4, 3))
    scaled = s * np.array([[3.0], [0.1], [1.0], [7.0]])
    assert pulling_away_term(ng.tensor(scaled)).item() == pytest.approx(
        pulling_away_term(ng.tensor(s)).item(), rel=1e-12)


def test_ebgan_losses_on_a_real_batch():
    model = tiny(EBGAN, margin=2.0)
    real, fake = images(4, seed=1), images(4, seed=2)
    loss, logs = model.discriminator_loss(real, None, fake, None)
    with ng.no_grad():
        e_real = model.discriminate(real).numpy()
        e_fake, codes = (t.numpy() for t in model.energies_and_codes(fake))
    assert loss.item() == pytest.approx(e_real.mean() + np.maximum(0, 2.0 - e_fake).mean(),
                                        rel=1e-5)
    assert logs == pytest.approx({"energy_real": e_real.mean(), "energy_fake": e_fake.mean()},
                                 rel=1e-5)
    g_loss, g_logs = model.generator_loss(fake, None)
    pt = pulling_away_numpy(codes.astype(np.float64))
    assert g_logs["pt"] == pytest.approx(pt, rel=1e-4)
    assert g_loss.item() == pytest.approx(e_fake.mean() + 0.1 * pt, rel=1e-5)
    no_pt = tiny(EBGAN, margin=2.0, pt_weight=0.0)
    assert no_pt.generator_loss(fake, None)[0].item() == pytest.approx(e_fake.mean(), rel=1e-5)


def test_three_hundred_ebgan_steps_move_the_samples_onto_the_ring():
    """G starts near the origin, about 1.9 from every mode; 300 updates bring its samples to
    0.48, 0.49 and 0.67 of the nearest mode on average (seeds 0, 1, 2)."""
    model = tiny(EBGAN, image_shape=(2,), latent_dim=8, hidden=(64, 64))
    loader = DataLoader(load_dataset("ring8", "train"), batch_size=64, shuffle=True,
                        drop_last=True)
    before = mean_distance_to_nearest_mode(model)
    optimizers, batches = model.configure_optimizers(2e-3), iter(loader)
    for _ in range(300):
        model.training_step(next(batches), optimizers)
    assert before > 1.5
    assert mean_distance_to_nearest_mode(model) < 0.4 * before


def test_a_training_step_logs_the_energies_and_leaves_d_at_the_margin_game():
    model = tiny(EBGAN)
    logs = model.training_step((images(8), None), model.configure_optimizers(1e-3))
    assert list(logs) == ["loss_d", "loss_g", "energy_real", "energy_fake", "pt"]
    assert all(np.isfinite(v) for v in logs.values())
    assert model.loss_name == "ebgan" and not model.adversarial.log_odds


# ---------------------------------------------------------------- BEGAN's controller
def test_k_update_formula_and_its_clip():
    assert began_k_update(0.2, 0.4, 0.1, 0.5, 0.001) == pytest.approx(0.2 + 0.001 * (0.2 - 0.1))
    assert began_k_update(0.0, 0.1, 0.9, 0.5, 0.01) == 0.0              # clipped at 0
    assert began_k_update(0.999, 5.0, 0.0, 1.0, 0.01) == 1.0            # clipped at 1
    assert convergence_measure(0.4, 0.3, 0.5) == pytest.approx(0.4 + 0.1)
    assert convergence_measure(0.4, 0.1, 0.5) == pytest.approx(0.4 + 0.1)


@pytest.mark.parametrize("k_before, lambda_k, gamma", [(0.3, 0.001, 0.5), (0.3, 0.05, 0.7),
                                                       (0.0, 5.0, 0.1), (1.0, 5.0, 1.0)])
def test_each_began_step_moves_k_t_by_the_formula_from_its_own_energies(k_before, lambda_k,
                                                                         gamma):
    """The buffer after a step is clip(k + lambda_k (gamma L(x) - L(G(z_G))), 0, 1) of the
    energies the step logged; the large gains push it to each end of [0, 1]."""
    model = tiny(BEGAN, lambda_k=lambda_k, gamma=gamma)
    model.k_t.fill_(k_before)
    optimizers = model.configure_optimizers(1e-3)
    for step in range(3):
        k = model.k
        logs = model.training_step((images(6, seed=step), None), optimizers)
        real, fake = logs["energy_real"], logs["energy_gen"]
        expected = min(max(k + lambda_k * (gamma * real - fake), 0.0), 1.0)
        assert model.k == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert logs["k_t"] == model.k
        assert logs["m_global"] == pytest.approx(real + abs(gamma * real - fake), rel=1e-12)
        assert logs["loss_g"] == logs["energy_gen"]
    if lambda_k == 5.0:
        assert model.k in (0.0, 1.0)


def test_began_discriminator_loss_weights_the_fakes_by_k_t():
    model = tiny(BEGAN)
    model.k_t.fill_(0.25)
    real, fake = images(4, seed=1), images(4, seed=2)
    loss, logs = model.discriminator_loss(real, None, fake, None)
    with ng.no_grad():
        e_real, e_fake = model.discriminate(real).numpy(), model.discriminate(fake).numpy()
    assert loss.item() == pytest.approx(e_real.mean() - 0.25 * e_fake.mean(), rel=1e-5)
    assert logs["energy_fake"] == pytest.approx(e_fake.mean(), rel=1e-5)


def run_began(out_dir, steps, resume=False):
    model = tiny(BEGAN, seed=0 if not resume else 123, lambda_k=0.05)
    x = np.random.default_rng(0).uniform(-1, 1, (24, 1, 8, 8)).astype(np.float32)
    loader = DataLoader(TensorDataset(x, np.zeros(24, dtype=np.int64)), batch_size=4,
                        shuffle=True, seed=1)
    train(model, loader, steps=steps, out_dir=out_dir, config={"model": "began"}, lr=1e-3,
          progress=False, checkpoint_every=1, sample_every=1000, log_every=1, resume=resume)
    return model


def test_began_resumes_exactly_with_its_k_t(tmp_path):
    straight = run_began(tmp_path / "a", 6)
    run_began(tmp_path / "b", 2)
    resumed = run_began(tmp_path / "b", 6, resume=True)
    assert straight.k > 0
    state = straight.state_dict()
    assert "k_t" in state
    for key, value in state.items():
        np.testing.assert_array_equal(value.numpy(), resumed.state_dict()[key].numpy(), key)
    # the log (and hence loss.png) carries the convergence measure every step
    records = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().split("\n")
               if line]
    assert [r["step"] for r in records] == list(range(1, 7))
    assert all("m_global" in r and "k_t" in r for r in records)
    assert (tmp_path / "a" / "loss.png").is_file()


# ---------------------------------------------------------------- shapes, options, registry
@pytest.mark.parametrize("cls", [EBGAN, BEGAN])
def test_samples_shapes_and_point_models(cls):
    model = tiny(cls)
    s = model.sample(3).numpy()
    assert s.shape == (3, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
    points = tiny(cls, image_shape=(2,))
    assert points.sample(5).shape == (5, 2)
    logs = points.training_step((ng.randn(8, 2), None), points.configure_optimizers(1e-3))
    assert all(np.isfinite(v) for v in logs.values())
    assert set(model.figures()) == {"interpolation_linear", "interpolation_slerp"}


def test_the_discriminator_constraints_still_apply():
    clipped = tiny(EBGAN, weight_clip=0.01)
    clipped.training_step((images(4), None), clipped.configure_optimizers(1e-2))
    assert max(np.abs(p.detach().numpy()).max() for p in clipped.discriminator.parameters()) <= 0.01
    normed = tiny(BEGAN, spectral_norm=True)
    assert any(name.endswith("weight_orig") for name, _ in normed.discriminator.named_parameters())
    logs = normed.training_step((images(4), None), normed.configure_optimizers(1e-3))
    assert np.isfinite(logs["loss_d"])
    penalised = tiny(EBGAN, penalty="wgan-gp")
    assert "penalty" in penalised.training_step((images(4), None),
                                                penalised.configure_optimizers(1e-3))


def test_tricks_on_probabilities_are_refused_in_the_name_of_the_energy_game():
    pytest.importorskip("nanogen.models.gans.tricks")
    for cls, game in ((EBGAN, "ebgan"), (BEGAN, "began")):
        with pytest.raises(ValueError, match=f"real_label .* the '{game}' game reads D's "
                                             "outputs as scores"):
            tiny(cls, real_label=0.9)


@pytest.mark.parametrize("name, cls, lr", [("ebgan", EBGAN, 2e-4), ("began", BEGAN, 1e-4)])
def test_registered_models(name, cls, lr):
    spec = get_model_spec(name)
    assert spec.lr == lr and spec.data_kinds == ("image", "points")
    model = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
    assert isinstance(model, cls) and model.makes_images and model.betas == (0.5, 0.999)
    assert model.discriminate(ng.zeros(2, 1, 28, 28)).shape == (2,)
    points = spec.for_data("points")
    assert points.batch_size == 256
    assert spec.build(image_shape=(2,), num_classes=8).sample_shape == (2,)


def test_defaults_per_data_kind():
    assert EBGAN(image_shape=(1, 8, 8), channels=(4, 8)).margin == 10.0
    assert EBGAN(image_shape=(2,), hidden=(8,)).margin == 1.0
    assert EBGAN(image_shape=(2,), hidden=(8,)).code_dim == 2
    assert BEGAN(image_shape=(2,), hidden=(8,)).code_dim == 1
    assert BEGAN(image_shape=(1, 8, 8), channels=(4, 8)).code_dim == 64
    model = BEGAN(image_shape=(1, 8, 8), channels=(4, 8))
    assert (model.gamma, model.lambda_k, model.k) == (0.5, 0.001, 0.0)
    assert model.discriminator.energy == "l1" and model.loss_name == "began"


def test_clear_errors_for_bad_arguments():
    for margin in (-1.0, 0.0, float("nan")):
        with pytest.raises(ValueError, match="EBGAN: margin must be"):
            tiny(EBGAN, margin=margin)
    with pytest.raises(ValueError, match="pt_weight must be a finite number >= 0"):
        tiny(EBGAN, pt_weight=-0.1)
    for gamma in (0.0, -0.5, 1.5, True):
        with pytest.raises(ValueError, match=r"gamma \(the diversity ratio\) must be in \(0, 1\]"):
            tiny(BEGAN, gamma=gamma)
    with pytest.raises(ValueError, match="lambda_k must be a finite number >= 0"):
        tiny(BEGAN, lambda_k=-1e-3)
    with pytest.raises(ValueError, match=r"k0 must be in \[0, 1\]"):
        tiny(BEGAN, k0=1.5)
    with pytest.raises(ValueError, match="BEGAN: unknown energy 'l3'"):
        tiny(BEGAN, energy="l3")
    with pytest.raises(ValueError, match="EBGAN: unknown activation 'gelu'"):
        tiny(EBGAN, activation="gelu")
    with pytest.raises(ValueError, match="EBGAN plays its own game .* no loss="):
        tiny(EBGAN, loss="hinge")
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 8, 8\)"):
        tiny(EBGAN).discriminate(ng.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="N >= 2"):
        pulling_away_term(ng.ones(1, 3))
    with pytest.raises(ValueError, match="unknown energy 'l0'"):
        reconstruction_energy(ng.ones(2, 3), ng.ones(2, 3), "l0")
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\) for images or \(D,\)"):
        EBGAN(image_shape=(8, 8))
    with pytest.raises(ValueError, match="EBGAN: hidden must name at least one hidden layer"):
        EBGAN(image_shape=(2,), hidden=())
