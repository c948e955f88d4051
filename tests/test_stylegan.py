"""StyleGAN: AdaIN inside the synthesis layer (first and second derivatives), the R1 penalty and
its gradient in the discriminator's parameters, truncation in W (ψ = 0 the mean style, ψ = 1 the
untruncated w, ψ outside [0, 1] refused), style mixing (the crossover seen through the styles
each AdaIN receives), the zero-initialised noise scales, the running w̄ (its update, its place in
the checkpoint, exact resume), the mapping network's learning rate, the figures and the errors.
Tiny networks (8x8 images)."""
import math

import numpy as np
import pytest

import nanogen as ng
from nanogen import nn
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import ImageShapeError, get_model_spec
from nanogen.models.gans.dcgan import dcgan_discriminator
from nanogen.models.gans.penalties import gradient_norm_penalty, r1_penalty
from nanogen.models.gans.stylegan import W_AVG_BETA, StyleGAN, StyleLayer
from nanogen.testing import gradcheck, gradgradcheck
from nanogen.training import train
from nanogen.training.checkpoint import load_checkpoint

LATENT = 6


def tiny_stylegan(seed=0, **kwargs):
    ng.manual_seed(seed)
    return StyleGAN(image_shape=(1, 8, 8), latent_dim=LATENT, channels=(4, 8),
                    **{"mapping_layers": 2, **kwargs})


def adain_inputs(model):
    """Records the style w each AdaIN layer receives, in layer order, per forward."""
    seen = []
    for i, layer in enumerate(model.generator.synthesis.layers):
        layer.adain.register_forward_hook(
            lambda m, args, out, i=i: seen.append((i, args[1].detach().numpy().copy())))
    return seen


def styles_of(model, n):
    """w = f(z) for n fresh codes, without a graph."""
    with ng.no_grad():
        return model.mapping(ng.randn(n, LATENT))


def random_noise_scales(model, seed=1):
    rng = np.random.default_rng(seed)
    for layer in model.generator.synthesis.layers:
        layer.noise_scale.data[...] = rng.standard_normal(layer.noise_scale.shape)


# ---------------------------------------------------------------- AdaIN in the synthesis layer
@pytest.mark.parametrize("upsample", [False, True])
def test_a_synthesis_layer_has_exact_first_and_second_derivatives(upsample):
    """x, the style w and every parameter (conv, the AdaIN affine map, the noise scale):
    gradcheck and gradgradcheck in float64 with their default tolerances."""
    ng.manual_seed(0)
    layer = StyleLayer(2, 3, 3, upsample=upsample).double()
    rng = np.random.default_rng(0)
    layer.noise_scale.data[...] = rng.standard_normal(3)          # zero at init: move it
    side = 2 if upsample else 3                                   # the output's is 4 or 3
    x = ng.tensor(rng.standard_normal((2, 2, side, side)), requires_grad=True)
    w = ng.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    noise = ng.tensor(rng.standard_normal((2, 1, 4 if upsample else 3, 4 if upsample else 3)))
    params = [layer.conv.weight, layer.conv.bias, layer.adain.affine.weight,
              layer.adain.affine.bias, layer.noise_scale]
    assert all(p.dtype == ng.float64 and p.requires_grad for p in params)

    def f(x, w, *_):                       # the parameters are perturbed in place
        return layer(x, w, noise)
    assert gradcheck(f, [x, w, *params])
    assert gradgradcheck(f, [x, w, layer.adain.affine.weight, layer.noise_scale])


def test_every_adain_and_noise_scale_gets_gradients_from_the_generator_loss():
    model = tiny_stylegan()
    model.train()
    fake = model.generate(ng.randn(4, LATENT))
    loss, _ = model.generator_loss(fake, None)
    loss.backward()
    for layer in model.generator.synthesis.layers:
        for p in (layer.adain.affine.weight, layer.adain.affine.bias, layer.noise_scale):
            assert p.grad is not None and np.abs(p.grad.numpy()).max() > 0
    assert all(p.grad is not None for p in model.generator.mapping.parameters())


# ---------------------------------------------------------------- R1
def test_r1_is_the_mean_squared_input_gradient_norm():
    """A linear critic D(x) = <a, x> + b has gradient a everywhere: R1 = |a|^2; a quadratic
    critic D(x) = sum(x^2) has gradient 2x: R1 = mean 4 |x|^2; the WGAN-GP penalty of the same
    critic is (|2x| - 1)^2."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(5)
    x = ng.tensor(rng.standard_normal((3, 5)))
    linear = lambda p: (p * ng.tensor(a)).sum(dim=1) + 0.3                   # noqa: E731
    assert r1_penalty(linear, x).item() == pytest.approx(float(a @ a), rel=1e-12)
    quadratic = lambda p: (p * p).sum(dim=1)                                  # noqa: E731
    norms = np.linalg.norm(2 * x.numpy(), axis=1)
    assert r1_penalty(quadratic, x).item() == pytest.approx(np.mean(norms ** 2), rel=1e-12)
    assert gradient_norm_penalty(quadratic, x).item() == pytest.approx(
        np.mean((norms - 1) ** 2), rel=1e-10)
    # a real batch that requires grad is detached first: R1 does not flow into it
    leaf = ng.tensor(x.numpy(), requires_grad=True)
    r1_penalty(quadratic, leaf).backward()
    assert leaf.grad is None


def test_r1_gradient_in_the_discriminator_parameters_is_exact():
    """A gradient of a gradient: gradcheck (central differences of R1 itself) of R1's
    derivative in every parameter of a DCGAN discriminator, float64, default tolerances."""
    ng.manual_seed(0)
    critic = dcgan_discriminator((1, 4, 4), (2, 3), norm="none").double()
    real = ng.tensor(np.random.default_rng(1).standard_normal((3, 1, 4, 4)))
    params = list(critic.parameters())
    assert gradcheck(lambda *_: r1_penalty(lambda x: critic(x).reshape(3), real), params)


def test_the_discriminator_loss_adds_half_gamma_r1_on_the_reals():
    real = ng.rand(4, 1, 8, 8) * 2 - 1
    fake = ng.rand(4, 1, 8, 8) * 2 - 1
    with_r1, without = tiny_stylegan(r1_gamma=4.0), tiny_stylegan(r1_gamma=0.0)
    loss, logs = with_r1.discriminator_loss(real, None, fake, None)
    plain, plain_logs = without.discriminator_loss(real, None, fake, None)
    r1 = r1_penalty(lambda x: with_r1.discriminate(x), real).item()
    assert logs["r1"] == pytest.approx(r1, rel=1e-6) and "r1" not in plain_logs
    assert loss.item() == pytest.approx(plain.item() + 0.5 * 4.0 * r1, rel=1e-6)
    assert r1 > 0


# ---------------------------------------------------------------- truncation
def test_truncation_at_zero_gives_every_sample_the_mean_style():
    model = tiny_stylegan()
    model.eval()
    random_noise_scales(model)
    model.generator.w_avg.data[...] = np.random.default_rng(2).standard_normal(LATENT)
    w = styles_of(model, 5)
    truncated = model.truncate(w, 0.0).numpy()
    np.testing.assert_array_equal(truncated, np.tile(model.generator.w_avg.numpy(), (5, 1)))
    with ng.no_grad():
        images = model.synthesize(model.truncate(w, 0.0), noise=None).numpy()
        noisy = model.synthesize(model.truncate(w, 0.0)).numpy()       # fresh noise per image
    np.testing.assert_allclose(images, np.broadcast_to(images[:1], images.shape), atol=1e-6)
    assert np.abs(noisy - noisy[:1]).max() > 1e-3                      # the noise still varies
    samples = model.sample(4, psi=0.0).numpy()                         # noise on: differ a bit
    assert np.abs(samples - samples[:1]).max() > 0


def test_truncation_at_one_is_the_untruncated_w_and_in_between_the_formula():
    model = tiny_stylegan()
    model.eval()
    model.generator.w_avg.data[...] = np.random.default_rng(2).standard_normal(LATENT)
    w = styles_of(model, 5)
    assert model.truncate(w, 1.0) is w and model.truncate(w, 1) is w
    w_avg = model.generator.w_avg.numpy()
    np.testing.assert_allclose(model.truncate(w, 0.7).numpy(),
                               w_avg + 0.7 * (w.numpy() - w_avg), rtol=1e-6, atol=1e-6)
    with ng.random.fork_rng(3):
        plain = model.sample(3).numpy()
    with ng.random.fork_rng(3):
        at_one = model.sample(3, psi=1.0).numpy()
    np.testing.assert_array_equal(plain, at_one)


@pytest.mark.parametrize("psi", [-0.1, 1.5, math.nan, math.inf, True, "0.5", None])
def test_psi_outside_the_unit_interval_is_one_clear_error(psi):
    model = tiny_stylegan()
    w = styles_of(model, 2)
    for call in (lambda: model.truncate(w, psi), lambda: model.sample(2, psi=psi),
                 lambda: model.truncation_figure(psis=(1.0, psi))):
        with pytest.raises(ValueError, match=r"truncation psi must be a number in \[0, 1\], "
                                             r"got " + repr(psi).replace(".", r"\.")):
            call()


# ---------------------------------------------------------------- style mixing
def test_crossover_at_the_end_is_the_first_code_and_at_zero_the_second():
    model = tiny_stylegan()
    model.eval()
    L = model.num_layers
    assert L == 6                                  # 2, 4, 8: two layers per resolution
    w1, w2 = styles_of(model, 3), styles_of(model, 3)
    with ng.no_grad():
        for crossover, w in ((L, w1), (0, w2)):
            np.testing.assert_array_equal(
                model.synthesize(model.mix_styles(w1, w2, crossover), noise=None).numpy(),
                model.synthesize(w, noise=None).numpy())
        mixed = model.synthesize(model.mix_styles(w1, w2, 3), noise=None).numpy()
        assert np.abs(mixed - model.synthesize(w1, noise=None).numpy()).max() > 1e-4


@pytest.mark.parametrize("crossover", [1, 3, 5, [1, 4, 6]])
def test_layers_before_the_crossover_get_the_first_code_and_the_rest_the_second(crossover):
    model = tiny_stylegan()
    seen = adain_inputs(model)
    w1, w2 = styles_of(model, 3), styles_of(model, 3)
    c = np.broadcast_to(np.asarray(crossover), (3,))
    with ng.no_grad():
        model.synthesize(model.mix_styles(w1, w2, np.asarray(crossover)), noise=None)
    assert [i for i, _ in seen] == list(range(6))
    for i, style in seen:
        expected = np.where((i < c)[:, None], w1.numpy(), w2.numpy())
        np.testing.assert_array_equal(style, expected)


def test_training_mixes_two_codes_for_nine_images_in_ten():
    """In training mode each image is made from two codes with probability 0.9, the crossover
    uniform on {1, ..., L - 1}; in eval mode, and with mixing_prob = 0, never."""
    model = tiny_stylegan()
    model.train()
    seen = adain_inputs(model)
    mapped = []
    model.generator.mapping.register_forward_hook(
        lambda m, args, out: mapped.append(out.detach().numpy().copy()))
    n = 600
    with ng.no_grad():
        model.generate(ng.randn(n, LATENT))
    w1, w2 = mapped                                # the code, then the second code
    styles = np.stack([s for _, s in seen], 1)      # (n, L, d)
    first = np.all(styles == w1[:, None], axis=2)
    second = np.all(styles == w2[:, None], axis=2)
    assert np.all(first ^ second)                   # each layer one code or the other
    crossover = first.sum(1)                         # layers on w1, all at the start
    np.testing.assert_array_equal(first, np.arange(6)[None] < crossover[:, None])
    mixed = crossover < 6
    assert 0.85 < mixed.mean() < 0.95                # 0.9, sd 0.012
    counts = np.bincount(crossover[mixed], minlength=6)
    assert counts[0] == 0 and counts[1:].min() > 0.6 * mixed.sum() / 5
    for model_, mode in ((tiny_stylegan(mixing_prob=0.0), "train"), (tiny_stylegan(), "eval")):
        getattr(model_, mode)()
        seen = adain_inputs(model_)
        with ng.no_grad():
            model_.generate(ng.randn(5, LATENT))
        assert all(np.array_equal(s, seen[0][1]) for _, s in seen)


def test_mix_styles_errors():
    model = tiny_stylegan()
    w = styles_of(model, 2)
    for bad in (7, -1, 2.5, [1, 2, 3], [[1, 2]], np.array([1, 9])):
        with pytest.raises(ValueError, match=r"crossover must be an int in \[0, 6\] or 2 of "
                                             r"them"):
            model.mix_styles(w, w, bad)
    with pytest.raises(ValueError, match="expected 6 styles"):
        model.synthesize([w, w])


# ---------------------------------------------------------------- noise
def test_noise_scales_start_at_zero_so_noise_does_nothing_until_they_learn():
    model = tiny_stylegan()
    model.train()
    layers = model.generator.synthesis.layers
    assert all(np.array_equal(layer.noise_scale.detach().numpy(), np.zeros(layer.noise_scale.shape))
               for layer in layers)
    w = styles_of(model, 3)
    with ng.no_grad():
        quiet = model.synthesize(w, noise=None).numpy()
        np.testing.assert_array_equal(model.synthesize(w).numpy(), quiet)
        np.testing.assert_array_equal(model.synthesize(w).numpy(), quiet)
    model.generator_loss(model.synthesize(w), None)[0].backward()
    assert all(np.abs(layer.noise_scale.grad.numpy()).min() > 0 for layer in layers)
    opt = model.configure_optimizers(1e-2)["generator"]
    opt.step()
    assert all(np.abs(layer.noise_scale.detach().numpy()).min() > 0 for layer in layers)
    with ng.no_grad():
        assert np.abs(model.synthesize(w).numpy() - model.synthesize(w).numpy()).max() > 0


# ---------------------------------------------------------------- w-bar and resume
def test_w_avg_moves_once_per_step_towards_the_generator_updates_codes():
    model = tiny_stylegan(mixing_prob=0.0)
    calls = []
    model.generator.mapping.register_forward_hook(
        lambda m, args, out: calls.append((ng.is_grad_enabled(), out.detach().numpy().copy())))
    np.testing.assert_array_equal(model.generator.w_avg.numpy(), np.zeros(LATENT))
    start = np.random.default_rng(5).standard_normal(LATENT).astype(np.float32)
    model.generator.w_avg.data[...] = start
    model.train()
    model.training_step((ng.rand(4, 1, 8, 8) * 2 - 1, None), model.configure_optimizers(1e-3))
    assert [grad for grad, _ in calls] == [False, True]           # D's fakes, then G's
    np.testing.assert_allclose(model.generator.w_avg.numpy(),
                               W_AVG_BETA * start + (1 - W_AVG_BETA) * calls[1][1].mean(0),
                               rtol=1e-6, atol=1e-7)
    assert "generator.w_avg" in model.inference_state_dict()
    before = model.generator.w_avg.numpy().copy()
    model.eval()
    model.sample(3)
    model.figures()
    np.testing.assert_array_equal(model.generator.w_avg.numpy(), before)


def test_resume_is_bit_identical_and_w_avg_is_in_the_checkpoint(tmp_path):
    data = TensorDataset(np.random.default_rng(0).uniform(-1, 1, (32, 1, 8, 8)).astype(
        np.float32), np.zeros(32, dtype=np.int64))

    def run(out, steps, resume=False):
        model = tiny_stylegan(seed=0 if not resume else 5)
        loader = DataLoader(data, batch_size=4, shuffle=True, drop_last=True, seed=1)
        train(model, loader, steps=steps, out_dir=str(out), config={"model": "tiny"}, lr=1e-3,
              resume=resume, progress=False, sample_every=1000, checkpoint_every=1000,
              num_samples=4, ema_decay=0.9)
        return model

    straight = run(tmp_path / "straight", 4)
    run(tmp_path / "broken", 2)
    halfway = load_checkpoint(tmp_path / "broken")["model"]["generator.w_avg"].numpy()
    resumed = run(tmp_path / "broken", 4, resume=True)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "broken")
    assert np.abs(halfway).max() > 0
    assert not np.array_equal(halfway, a["model"]["generator.w_avg"].numpy())
    for key in a["model"]:
        np.testing.assert_array_equal(a["model"][key].numpy(), b["model"][key].numpy(), key)
    for (name, p), (_, q) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), name)


# ---------------------------------------------------------------- optimizers, figures, registry
def test_the_mapping_network_learns_at_a_hundredth_of_the_rate_with_the_papers_betas():
    model = tiny_stylegan()
    optimizers = model.configure_optimizers(2e-4)
    groups = optimizers["generator"].param_groups
    mapping = {id(p) for p in model.generator.mapping.parameters()}
    assert [g["lr"] for g in groups] == [2e-4, pytest.approx(2e-6)]
    assert {id(p) for p in groups[1]["params"]} == mapping
    assert not mapping & {id(p) for p in groups[0]["params"]}
    assert sum(len(g["params"]) for g in groups) == len(list(model.generator.parameters()))
    for opt in optimizers.values():
        assert opt.param_groups[0]["betas"] == (0.0, 0.99)
    assert len(tiny_stylegan(mapping_lr_mul=1.0).configure_optimizers(1e-3)[
        "generator"].param_groups) == 1


def test_figures_style_mixing_grid_and_truncation_sweep():
    model = tiny_stylegan()
    model.eval()
    random_noise_scales(model)
    assert model.style_groups() == [{0, 1}, {2, 3}, {4, 5}]
    figures = model.figures()
    assert set(figures) == {"interpolation_linear", "interpolation_slerp", "style_mixing",
                            "truncation"}
    mixing, nrow = figures["style_mixing"]
    assert nrow == 6 and mixing.shape == (7 * 6, 1, 8, 8)
    grid = mixing.numpy().reshape(7, 6, 64)
    assert 0 <= grid.min() and grid.max() <= 1
    assert np.array_equal(grid[0, 0], np.zeros(64))                    # the blank corner
    # the A image and B's images differ from the mixes in their row and column
    assert np.abs(grid[1:, 1:] - grid[1:, :1]).max() > 1e-3
    truncation, ncol = figures["truncation"]
    assert ncol == 8 and truncation.shape == (4 * 8, 1, 8, 8)
    rows = truncation.numpy().reshape(4, 8, 64)
    np.testing.assert_allclose(rows[3], np.broadcast_to(rows[3, :1], rows[3].shape), atol=1e-6)
    assert np.abs(rows[0] - rows[0, :1]).max() > 1e-3                   # ψ = 1: codes differ


def test_style_mixing_cells_take_the_named_styles_from_b():
    """The cells of row r: A_r with the layers of its group from B_j, every cell sharing one
    noise draw (rebuilt here from the same random stream)."""
    model = tiny_stylegan()
    model.eval()
    random_noise_scales(model)
    with ng.random.fork_rng(4):
        images, nrow = model.style_mixing_figure(rows=3, columns=2)
    with ng.random.fork_rng(4):
        noise = model.generator.synthesis.noise(1)
        w_a = model.mapping(model.sample_latents(3))
        w_b = model.mapping(model.sample_latents(2))
    grid = images.numpy().reshape(4, 3, 1, 8, 8)
    groups = model.style_groups()
    for r, group in enumerate(groups):                # one row per group with three rows
        for j in range(2):
            styles = [w_b[j:j + 1] if i in group else w_a[r:r + 1] for i in range(6)]
            with ng.no_grad():
                expected = model._to_data_range(model.synthesize(styles, noise)).numpy()
            np.testing.assert_allclose(grid[1 + r, 1 + j], expected[0], atol=1e-5)


def test_registered_stylegan_builds_trains_a_step_and_samples_on_mnist_shapes():
    spec = get_model_spec("stylegan")
    assert spec.lr == 2e-4 and spec.dataset == "mnist5k" and spec.ema_decay == 0.999
    model = spec.build(image_shape=(1, 28, 28), num_classes=10,
                       **{**spec.kwargs, "channels": (4, 8), "latent_dim": 8})
    assert isinstance(model, StyleGAN) and model.loss_name == "non-saturating"
    assert model.r1_gamma == 10.0 and model.mixing_prob == 0.9
    assert len(model.generator.mapping.net) == 16                   # 8 linear + 8 LReLU
    assert model.generator.synthesis.const.shape == (1, 8, 7, 7)    # the 7x7 constant
    assert model.generator.synthesis.resolutions[-1] == (28, 28) and model.num_layers == 6
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))
                   for m in model.discriminator.modules())
    logs = model.training_step((ng.rand(2, 1, 28, 28) * 2 - 1, None),
                               model.configure_optimizers(2e-4))
    assert set(logs) == {"loss_d", "loss_g", "d_real", "d_fake", "r1"}
    assert all(math.isfinite(v) for v in logs.values())
    model.eval()
    assert model.sample(2, psi=0.7).shape == (2, 1, 28, 28)


def test_clear_errors():
    with pytest.raises(ImageShapeError, match="StyleGAN with 2 stride-2 levels needs H and W "
                                              r"divisible by 4, got 30x30"):
        StyleGAN(image_shape=(1, 30, 30))
    with pytest.raises(ValueError, match="StyleGAN models images"):
        StyleGAN(image_shape=(2,))
    with pytest.raises(ValueError, match="R1 penalty is a per-example gradient"):
        tiny_stylegan(critic_norm="batch")
    assert tiny_stylegan(critic_norm="batch", r1_gamma=0.0).r1_gamma == 0.0
    for name, value in (("mixing_prob", 1.5), ("mixing_prob", -0.1), ("r1_gamma", -1.0),
                        ("mapping_lr_mul", 0.0), ("r1_gamma", math.nan), ("mixing_prob", True)):
        with pytest.raises(ValueError, match=f"StyleGAN: {name} must be a number in"):
            tiny_stylegan(**{name: value})
    model = tiny_stylegan()
    with pytest.raises(ValueError, match=r"expected codes of shape \(N, 6\), got \(3, 5\)"):
        model.generate(ng.zeros(3, 5))
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 8, 8\)"):
        model.discriminate(ng.zeros(2, 1, 28, 28))
