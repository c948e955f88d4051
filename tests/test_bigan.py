"""BiGAN / ALI: the discriminator sees joint pairs (x, E(x)) and (G(z), z); D's loss and the
flipped loss of G and E against direct formulas, with their gradients per logit; the D update
moves D only and the G/E update G and E only; codes, reconstructions, figures and evaluation;
exact resume; the registry and the error messages.  Tiny networks, a few steps."""
import math

import numpy as np
import pytest

import nanogen as ng
from nanogen.data import DataLoader, TensorDataset, load_dataset
from nanogen.data.toy import ring_of_gaussians
from nanogen.models import get_model_spec
from nanogen.models.gans.bigan import FLIPPABLE_LOSSES, BiGAN, JointCondition
from nanogen.training import train

from .test_gans import Spy, assert_same, snapshot, weights


def tiny_bigan(seed=0, **kwargs):
    ng.manual_seed(seed)
    return BiGAN(image_shape=(1, 8, 8), **{"latent_dim": 3, "channels": (4, 8),
                                           "joint_hidden": 8, "dropout": 0.0, **kwargs})


def point_bigan(seed=0, **kwargs):
    ng.manual_seed(seed)
    return BiGAN(image_shape=(2,), **{"latent_dim": 3, "hidden": (16, 16), **kwargs})


def images(n, seed=0):
    return ng.tensor(np.random.default_rng(seed).uniform(-1, 1, (n, 1, 8, 8))
                     .astype(np.float32))


def ring_points(n, seed=0):
    return ng.tensor(ring_of_gaussians(n, np.random.default_rng(seed))[0])


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def fakes_with_codes(model, n, seed=1):
    """A JointCondition for n fakes, its codes filled by generate, and the fakes."""
    ng.manual_seed(seed)
    condition = JointCondition()
    fake = model.generate(model.sample_latents(n), condition)
    return fake, condition


# ---------------------------------------------------------------- the joint discriminator
def test_the_discriminator_sees_image_code_pairs_real_with_e_of_x_and_fakes_with_their_z():
    model = tiny_bigan()
    x = images(6)
    fake, condition = fakes_with_codes(model, 6)
    assert condition.codes.shape == (6, 3)
    np.testing.assert_array_equal(model.discriminate(x).detach().numpy(),
                                  model.joint_logits(x, model.encode(x)).detach().numpy())
    np.testing.assert_array_equal(model.discriminate(fake, condition).detach().numpy(),
                                  model.joint_logits(fake, condition.codes).detach().numpy())
    np.testing.assert_array_equal(fake.detach().numpy(),
                                  model.generator(condition.codes).detach().numpy())
    # labels of a real batch are not a condition for BiGAN: still the pair (x, E(x))
    np.testing.assert_array_equal(model.discriminate(x, ng.zeros(6).long()).detach().numpy(),
                                  model.discriminate(x).detach().numpy())

    real_before = model.discriminate(x).detach().numpy()
    fake_before = model.discriminate(fake, condition).detach().numpy()
    with ng.no_grad():                               # move E: the real logits change only
        for p in model.encoder.parameters():
            p.data += 0.5
    assert not np.allclose(model.discriminate(x).detach().numpy(), real_before)
    np.testing.assert_array_equal(model.discriminate(fake, condition).detach().numpy(), fake_before)
    real_after_e = model.discriminate(x).detach().numpy()
    with ng.no_grad():                               # move G: the fake logits change only
        for p in model.generator.parameters():
            p.data *= 1.5
    fake2, condition2 = fakes_with_codes(model, 6)   # the same z (seed), a moved G
    np.testing.assert_array_equal(condition2.codes.detach().numpy(),
                                  condition.codes.detach().numpy())
    assert not np.allclose(model.discriminate(fake2, condition2).detach().numpy(), fake_before)
    np.testing.assert_array_equal(model.discriminate(x).detach().numpy(), real_after_e)


def test_changing_the_code_of_a_pair_changes_its_logit_for_both_kinds_of_data():
    for model, x in ((tiny_bigan(), images(4)), (point_bigan(), ring_points(4))):
        z = ng.tensor(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32))
        a = model.joint_logits(x, z).detach().numpy()
        b = model.joint_logits(x, z * 2.0).detach().numpy()
        assert a.shape == (4,) and not np.allclose(a, b)


@pytest.mark.parametrize("k", [1, 2])
def test_a_training_step_feeds_d_the_real_pairs_and_the_fake_pairs_it_should(k):
    """Each D update: (x, E(x)) on its minibatch, then (G(z), z); the G/E update: (G(z'), z'),
    then (x, E(x)) on the step's first minibatch, all with the networks as they were before the
    step's own updates."""
    model = point_bigan(k=k)
    seen = []
    model.discriminator.register_forward_hook(lambda m, inputs, out: seen.append(
        [t.detach().numpy().copy() for t in inputs]))
    x = ring_points(4 * k)
    with ng.no_grad():
        codes_before = [model.encoder(x[i * 4:(i + 1) * 4]).detach().numpy() for i in range(k)]
    generator = [p.detach().numpy().copy() for p in model.generator.parameters()]
    model.training_step((x, None), model.configure_optimizers(1e-2))
    assert len(seen) == 2 * k + 2
    real_pairs = [seen[2 * i] for i in range(k)] + [(seen[-1][0], seen[-1][1])]
    for i, (xs, zs) in enumerate(real_pairs):
        i = i if i < k else 0                        # the G/E update: the first minibatch
        np.testing.assert_array_equal(xs, x.detach().numpy()[i * 4:(i + 1) * 4])
        np.testing.assert_allclose(zs, codes_before[i], rtol=1e-6, atol=1e-7)
    fake_pairs = [seen[2 * i + 1] for i in range(k)] + [seen[-2]]
    for p, w in zip(model.generator.parameters(), generator):
        p.data[...] = w                              # G as it was before its step
    with ng.no_grad():
        for xs, zs in fake_pairs:
            np.testing.assert_allclose(xs, model.generator(ng.tensor(zs)).detach().numpy(),
                                       rtol=1e-6, atol=1e-7)
    assert not np.array_equal(fake_pairs[0][1], fake_pairs[-1][1])   # fresh codes each time


# ---------------------------------------------------------------- the losses
GAMES = {  # loss -> (D's loss, G and E's loss) on real logits r and fake logits f, in NumPy
    "non-saturating": (lambda r, f: -log_sigmoid(r).mean() - log_sigmoid(-f).mean(),
                       lambda r, f: -log_sigmoid(f).mean() - log_sigmoid(-r).mean()),
    "minimax": (lambda r, f: -log_sigmoid(r).mean() - log_sigmoid(-f).mean(),
                lambda r, f: log_sigmoid(r).mean() + log_sigmoid(-f).mean()),
    "wasserstein": (lambda r, f: f.mean() - r.mean(), lambda r, f: r.mean() - f.mean()),
    "hinge": (lambda r, f: np.maximum(0, 1 - r).mean() + np.maximum(0, 1 + f).mean(),
              lambda r, f: r.mean() - f.mean()),
}


@pytest.mark.parametrize("loss", FLIPPABLE_LOSSES)
def test_both_losses_match_their_formulas_on_the_joint_logits(loss):
    model = tiny_bigan(loss=loss)
    real = images(5)
    fake, condition = fakes_with_codes(model, 5)
    condition.real = real
    r = model.joint_logits(real, model.encode(real)).detach().numpy().astype(np.float64)
    f = model.joint_logits(fake, condition.codes).detach().numpy().astype(np.float64)
    d_formula, ge_formula = GAMES[loss]
    d_loss, d_logs = model.discriminator_loss(real, None, fake, condition)
    ge_loss, ge_logs = model.generator_loss(fake, condition)
    np.testing.assert_allclose(d_loss.item(), d_formula(r, f), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ge_loss.item(), ge_formula(r, f), rtol=1e-5, atol=1e-6)
    e_term = {"non-saturating": -log_sigmoid(-r).mean(), "minimax": log_sigmoid(r).mean()}
    np.testing.assert_allclose(ge_logs["loss_e"], e_term.get(loss, r.mean()), rtol=1e-5,
                               atol=1e-6)
    if loss in ("non-saturating", "minimax"):
        np.testing.assert_allclose(d_logs["d_real"], sigmoid(r).mean(), rtol=1e-5)
        np.testing.assert_allclose(d_logs["d_fake"], sigmoid(f).mean(), rtol=1e-5)


def test_gradients_per_logit_d_pushes_pairs_apart_g_and_e_pull_them_the_other_way(monkeypatch):
    """Non-saturating: d L_D / d r = (sigma(r) - 1) / m, d L_D / d f = sigma(f) / m;
    d L_GE / d r = sigma(r) / m (E wants its pairs called fake), d L_GE / d f =
    -(1 - sigma(f)) / m (G wants its pairs called real)."""
    model = tiny_bigan()
    m = 4
    real = images(m)
    fake, condition = fakes_with_codes(model, m)
    condition.real = real
    r_np = np.array([-2.0, -0.5, 0.3, 3.0])
    f_np = np.array([1.5, -1.0, 0.0, -4.0])

    def logits():
        r = ng.tensor(r_np, requires_grad=True)
        f = ng.tensor(f_np, requires_grad=True)
        monkeypatch.setattr(model, "joint_logits",
                            lambda x, z: f if z is condition.codes else r)
        return r, f

    r, f = logits()
    model.discriminator_loss(real, None, fake, condition)[0].backward()
    np.testing.assert_allclose(r.grad.detach().numpy(), (sigmoid(r_np) - 1) / m, rtol=1e-6)
    np.testing.assert_allclose(f.grad.detach().numpy(), sigmoid(f_np) / m, rtol=1e-6)
    r, f = logits()
    model.generator_loss(fake, condition)[0].backward()
    np.testing.assert_allclose(r.grad.detach().numpy(), sigmoid(r_np) / m, rtol=1e-6)
    np.testing.assert_allclose(f.grad.detach().numpy(), -(1 - sigmoid(f_np)) / m, rtol=1e-6)


# ---------------------------------------------------------------- the alternating update
class Spy3(Spy):
    """Spy that also records the encoder."""

    def step(self):
        self.seen.append({name: snapshot(getattr(self.model, module), grads=True)
                          for name, module in (("G", "generator"), ("E", "encoder"),
                                               ("D", "discriminator"))})
        self.optimizer.step()
        for name, module in (("G", "generator"), ("E", "encoder"), ("D", "discriminator")):
            self.seen[-1][f"{name}_after"] = snapshot(getattr(self.model, module))


@pytest.mark.parametrize("k", [1, 2])
def test_the_d_update_moves_d_only_and_the_g_e_update_moves_g_and_e_only(k):
    model = point_bigan(k=k)
    optimizers = model.configure_optimizers(1e-2)
    spies = {name: Spy3(opt, model) for name, opt in optimizers.items()}
    before = {"G": snapshot(model.generator), "E": snapshot(model.encoder)}
    logs = model.training_step((ring_points(6 * k), None), spies)
    assert list(logs) == ["loss_d", "loss_g", "d_real", "d_fake", "loss_e"]
    assert all(isinstance(v, float) and math.isfinite(v) for v in logs.values())

    # Adam's step counts: k for D's parameters, one for G's and E's (one optimizer)
    d_state, g_state = optimizers["discriminator"].state, optimizers["generator"].state
    assert all(d_state[p]["step"] == k for p in model.discriminator.parameters())
    assert all(g_state[p]["step"] == 1 for p in model.generator.parameters())
    assert all(g_state[p]["step"] == 1 for p in model.encoder.parameters())
    assert not any(p in d_state for p in model.encoder.parameters())
    d_steps, (ge_step,) = spies["discriminator"].seen, spies["generator"].seen
    assert len(d_steps) == k
    for seen in d_steps:           # D's updates: G and E constant, with no gradients at all
        for name in ("G", "E"):
            assert_same(weights(seen[name]), weights(before[name]))
            assert all(grad is None for _, grad in seen[name])
            assert_same(weights(seen[f"{name}_after"]), weights(before[name]))
        assert any(not np.array_equal(a, b) for (a, _), (b, _) in
                   zip(seen["D"], seen["D_after"]))
    # the G/E update went through D without touching its weights or gradients
    assert_same(ge_step["D"], [(w, g) for (w, _), (_, g) in
                               zip(d_steps[-1]["D_after"], d_steps[-1]["D"])])
    assert_same(weights(ge_step["D_after"]), d_steps[-1]["D_after"])
    assert all(p.requires_grad for p in model.parameters())          # thawed again
    for name in ("G", "E"):
        assert all(g is not None and np.abs(g).sum() > 0 for _, g in ge_step[name])
        assert all(not np.array_equal(a, b) for (a, _), (b, _) in
                   zip(ge_step[f"{name}_after"], before[name]))


def test_image_bigan_trains_a_step_and_the_encoder_batch_is_not_kept():
    model = tiny_bigan(k=2, dropout=0.2)
    logs = model.training_step((images(8), ng.zeros(8).long()), model.configure_optimizers(1e-3))
    assert all(math.isfinite(v) for v in logs.values())
    assert model._encoder_batch is None


def test_weight_clipping_and_spectral_norm_reach_the_joint_discriminator():
    model = point_bigan(weight_clip=0.01, loss="wasserstein")
    model.training_step((ring_points(8), None), model.configure_optimizers(1e-1))
    assert all(np.abs(p.detach().numpy()).max() <= 0.01 + 1e-7
               for p in model.discriminator.parameters())
    model = tiny_bigan(spectral_norm=True, critic_norm="none", loss="hinge")
    names = [n for n, _ in model.discriminator.named_parameters()]
    assert sum(n.endswith("weight_orig") for n in names) == 2 + 2 + 2     # conv, z, joint
    model.training_step((images(4), None), model.configure_optimizers(1e-3))


# ---------------------------------------------------------------- codes, reconstructions, eval
def test_codes_are_e_of_x_without_gradients_deterministic_and_per_example_in_eval_mode():
    model = tiny_bigan()
    x = images(5)
    codes = model.codes(x)
    assert codes.shape == (5, 3) and not codes.requires_grad
    np.testing.assert_array_equal(codes.detach().numpy(), model.codes(x).detach().numpy())
    np.testing.assert_array_equal(codes.detach().numpy(), model.encoder(x).detach().numpy())
    model.eval()                     # batch norm on running statistics: one code per example
    np.testing.assert_allclose(model.codes(x[2:3]).detach().numpy(),
                               model.codes(x).detach().numpy()[2:3],
                               rtol=1e-5, atol=1e-6)
    points = point_bigan()
    assert points.codes(ring_points(7)).shape == (7, 3)


def test_reconstructions_are_g_of_e_of_x_in_the_data_range_and_the_figure_pairs_them():
    model = tiny_bigan()
    x = images(10)
    recon = model.reconstruct(x).detach().numpy()
    with ng.no_grad():
        expected = (model.generator(model.encoder(x)).detach().numpy() + 1) / 2
    np.testing.assert_allclose(recon, np.clip(expected, 0, 1), rtol=1e-6, atol=1e-7)
    figures = model.figures(x)
    assert set(figures) == {"reconstructions", "interpolation_linear", "interpolation_slerp"}
    grid, nrow = figures["reconstructions"]
    assert grid.shape == (20, 1, 8, 8) and nrow == 16
    np.testing.assert_allclose(grid.detach().numpy()[0::2], (x.detach().numpy() + 1) / 2, rtol=1e-6)
    np.testing.assert_allclose(grid.detach().numpy()[1::2], recon, rtol=1e-6, atol=1e-7)
    assert set(model.figures()) == {"interpolation_linear", "interpolation_slerp"}
    assert point_bigan().figures(ring_points(4)) == {}


def test_evaluate_reports_the_reconstruction_error_and_for_points_mode_coverage():
    model = tiny_bigan()
    x = images(12)
    loader = DataLoader(TensorDataset(x.detach().numpy(), np.zeros(12, dtype=np.int64)),
                        batch_size=5)
    model.eval()
    metrics = model.evaluate(loader)
    recon = model.reconstruct(x).detach().numpy()
    assert metrics["num_examples"] == 12
    np.testing.assert_allclose(metrics["recon_mse"],
                               ((recon - (x.detach().numpy() + 1) / 2) ** 2).mean(),
                               rtol=1e-5)
    points = point_bigan()
    data = load_dataset("ring8", "test")
    metrics = points.evaluate(DataLoader(data, batch_size=1000))
    assert {"recon_mse", "num_examples", "modes_covered"} <= set(metrics)
    assert metrics["num_examples"] == len(data)


def test_probe_model_reads_the_codes():
    from nanogen.metrics.probe import probe_model
    model = tiny_bigan()
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    x = rng.uniform(-1, 1, (40, 1, 8, 8)).astype(np.float32)
    x[labels == 1, :, :4] = 1.0                       # an easy class
    result = probe_model(model, x[:30], labels[:30], x[30:], labels[30:])
    assert result["probe_features"] == 3 and 0.0 <= result["probe_accuracy"] <= 1.0


# ---------------------------------------------------------------- training loop and resume
def test_resume_is_exact_with_the_encoder_in_the_generators_optimizer(tmp_path):
    data = load_dataset("ring8", "train")

    def run(out, steps, resume=False, seed=0):
        model = point_bigan(seed=seed)
        loader = DataLoader(data, batch_size=16, shuffle=True, drop_last=True, seed=3)
        train(model, loader, steps=steps, out_dir=str(out), config={"model": "bigan"},
              lr=1e-3, resume=resume, progress=False, sample_every=1000,
              checkpoint_every=1000, log_every=1)
        return model

    straight = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    broken = run(tmp_path / "b", 4, resume=True, seed=9)
    for (name, p), (_, q) in zip(straight.state_dict().items(), broken.state_dict().items()):
        assert np.array_equal(p.detach().numpy(), q.detach().numpy()), name


def test_registered_for_images_and_points_and_builds_from_the_spec():
    spec = get_model_spec("bigan")
    assert spec.build is BiGAN and spec.lr == 2e-4 and spec.batch_size == 64
    assert set(spec.data_kinds) == {"image", "points"}
    model = spec.build(image_shape=(1, 28, 28), **spec.kwargs)
    assert model.latent_dim == 50 and model.betas == (0.5, 0.999) and model.makes_images
    assert model.inference_modules == ("generator", "encoder")
    assert set(model.inference_state_dict()) == {
        k for k in model.state_dict() if k.startswith(("generator.", "encoder."))}
    points = spec.build(image_shape=(2,), **spec.kwargs)
    assert points.latent_dim == 2 and not points.makes_images
    assert spec.for_data("points").batch_size == 256 and spec.for_data("points").steps == 2000


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, match", [
    ({"loss": "least-squares"}, r"loss must be one of non-saturating, minimax"),
    ({"loss": "hinj"}, r"loss must be one of"),
    ({"penalty": "wgan-gp", "critic_norm": "layer"}, r"gradient penalty \('wgan-gp'\)"),
    ({"mixed_batches": True}, r"mixed_batches joins the real and the fake"),
    ({"replay": 0.5, "replay_size": 16}, r"replay would show D old fakes G\(z\) without"),
    ({"latent_dim": 0}, r"latent_dim"),
    ({"joint_hidden": -1}, r"joint_hidden"),
    ({"channels": (4, 8, 16, 32)}, r"BiGAN"),
    ({"image_shape": (1, 8)}, r"image_shape must be \(C, H, W\)"),
])
def test_bad_construction_raises_one_clear_error(kwargs, match):
    kwargs = {"image_shape": (1, 8, 8), "channels": (4, 8), **kwargs}
    with pytest.raises(ValueError, match=match):
        BiGAN(**kwargs)
    with pytest.raises(ValueError, match=r"hidden must be a non-empty"):
        BiGAN(image_shape=(2,), hidden=())


def test_bad_inputs_raise_clear_errors():
    model = tiny_bigan()
    with pytest.raises(ValueError, match=r"BiGAN.joint_logits: expected codes of shape \(4, 3\)"):
        model.joint_logits(images(4), ng.zeros(4, 2))
    with pytest.raises(ValueError, match=r"BiGAN.encode: expected images of shape \(N, 1, 8, 8\)"):
        model.codes(ng.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"BiGAN.encode: expected images"):
        model.reconstruct(ng.zeros(2, 8, 8))
    with pytest.raises(ValueError, match=r"holds no codes"):
        model.discriminate(images(2), JointCondition())
    fake, condition = fakes_with_codes(model, 2)
    with pytest.raises(ValueError, match=r"needs a JointCondition holding a real minibatch"):
        model.generator_loss(fake, condition)
    with pytest.raises(ValueError, match=r"BiGAN.training_step: expected images"):
        model.training_step((ng.zeros(4, 2), None), model.configure_optimizers(1e-3))
    with pytest.raises(ValueError, match=r"does not split into k = 2"):
        model = tiny_bigan(k=2)
        model.training_step((images(5), None), model.configure_optimizers(1e-3))
