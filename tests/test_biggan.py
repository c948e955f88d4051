"""BigGAN, small (nanogen/models/gans/biggan.py): conditional batch norm (eq. 2) and the
projection discriminator (eq. 5) against their formulas, hierarchical z (each block's gain and
bias read its own chunk only), orthogonal regularisation (eqs. 8-9) against NumPy and by
gradcheck, spectral norm on every layer of both networks, the truncation trick (every z within
the threshold, the figure's rows from the same uniforms, the curve's calls), labels and
thresholds refused in one line, and a resumed run (EMA shadow, spectral-norm vectors, batch-norm
statistics) bit-identical to an unbroken one."""
import numpy as np
import pytest

import nanogen as ng
from nanogen import nn
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import all_models
from nanogen.models.gans import biggan as biggan_module
from nanogen.models.gans.biggan import (BigGAN, ConditionalBatchNorm2d, check_threshold,
                                        orthogonal_penalty, spectrally_normalised_layers,
                                        truncated_normal)
from nanogen.nn.spectral_norm import SpectralNorm
from nanogen.testing import gradcheck
from nanogen.training import train
from nanogen.training.checkpoint import load_checkpoint

SHAPE = (1, 8, 8)


def arr(t):
    return t.detach().numpy()


def tiny(seed=0, **kwargs):
    ng.manual_seed(seed)
    options = {"image_shape": SHAPE, "num_classes": 3, "latent_dim": 6, "channels": (4, 8),
               "shared_dim": 4, **kwargs}
    return BigGAN(**options)


def settled(model, steps=30):
    """``model`` in eval mode with its batch norms' running statistics those of its own
    activations (a fresh model's are 0 and 1, and its untrained activations are far larger)."""
    model.train()
    with ng.no_grad():
        for _ in range(steps):
            model.generate(model.sample_latents(16), ng.tensor(np.arange(16) % 3))
    model.eval()
    return model


def batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return (ng.tensor(rng.uniform(-1, 1, (n,) + SHAPE).astype(np.float32)),
            ng.tensor(np.arange(n) % 3))


# ---------------------------------------------------------------- conditional batch norm
def test_conditional_batch_norm_is_eq_2_per_example():
    ng.manual_seed(0)
    cbn = ConditionalBatchNorm2d(3, 5)
    nn.utils.spectral_norm(cbn.gain), nn.utils.spectral_norm(cbn.bias)
    with ng.no_grad():                         # a bias away from zero, so that it shows
        cbn.gain.bias.data[...] = [0.3, -0.2, 0.1]
        cbn.bias.bias.data[...] = [-0.5, 0.4, 0.2]
    rng = np.random.default_rng(1)
    h, c = rng.normal(size=(4, 3, 2, 3)), rng.normal(size=(4, 5))
    out = cbn(ng.tensor(h.astype(np.float32)), ng.tensor(c.astype(np.float32))).detach().numpy()
    # the weights the forward pass used (spectral norm recomputes them before it)
    wg, bg = cbn.gain.weight.detach().numpy(), cbn.gain.bias.detach().numpy()
    wb, bb = cbn.bias.weight.detach().numpy(), cbn.bias.bias.detach().numpy()
    mean, var = h.mean(axis=(0, 2, 3), keepdims=True), h.var(axis=(0, 2, 3), keepdims=True)
    gain, bias = 1 + c @ wg.T + bg, c @ wb.T + bb                                   # (N, C)
    want = gain[:, :, None, None] * (h - mean) / np.sqrt(var + 1e-5) + bias[:, :, None, None]
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
    assert np.abs(gain - gain[0]).max() > 0.1             # per example, not per batch


def test_hierarchical_z_each_block_reads_its_own_chunk_and_the_class():
    model = tiny(latent_dim=9)                 # 3 chunks of 3: the input layer's, two blocks'
    g = model.generator
    assert g.sizes == [3, 3, 3]
    seen = []
    for block in g.blocks:
        for norm in (block.norm1, block.norm2):
            norm.gain.register_forward_hook(lambda m, i, o: seen.append(o.detach().numpy().copy()))
            norm.bias.register_forward_hook(lambda m, i, o: seen.append(o.detach().numpy().copy()))
    first = []
    g.input.register_forward_hook(lambda m, i, o: first.append(o.detach().numpy().copy()))
    model.eval()                               # the stored u, v: the weights stay put
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 9)).astype(np.float32)
    labels = ng.tensor([0, 1, 2, 0])

    def run(z, y=labels):
        seen.clear(), first.clear()
        with ng.no_grad():
            g(ng.tensor(z), y)
        return first[0], [seen[i:i + 4] for i in (0, 4)]     # input; per block 2 norms x 2

    base_input, base = run(z)
    for chunk in range(3):
        moved = z.copy()
        moved[:, 3 * chunk:3 * chunk + 3] += 1.0
        new_input, new = run(moved)
        assert (not np.allclose(new_input, base_input)) == (chunk == 0)
        for k in (1, 2):
            changed = [not np.allclose(a, b) for a, b in zip(new[k - 1], base[k - 1])]
            assert all(changed) if chunk == k else not any(changed), (chunk, k)
    # the class reaches every block's gain and bias, not the input layer
    other_input, other = run(z, ng.tensor([1, 2, 0, 1]))
    np.testing.assert_array_equal(other_input, base_input)
    assert all(not np.allclose(a, b) for k in (0, 1) for a, b in zip(other[k], base[k]))


def test_latent_dim_splits_into_chunks_and_too_small_a_code_is_refused():
    assert biggan_module.chunk_sizes(120, 3) == [40, 40, 40]
    assert biggan_module.chunk_sizes(7, 3) == [3, 2, 2]
    with pytest.raises(ValueError, match="cannot split into 3 chunks"):
        tiny(latent_dim=2)


# ---------------------------------------------------------------- the projection discriminator
def test_projection_discriminator_is_eq_5_and_reads_the_label():
    model = tiny()
    with ng.no_grad():
        model.discriminator.psi.bias.data[...] = 0.7
    model.eval()
    x, _ = batch(6)
    y = ng.tensor([0, 1, 2, 2, 1, 0])
    d = model.discriminator
    with ng.no_grad():
        scores = model.discriminate(x, y).detach().numpy()
        phi = d.features(x).detach().numpy()
    psi_w, psi_b = d.psi.weight.detach().numpy(), d.psi.bias.detach().numpy()
    v = arr(d.embed.weight)                        # the normalised V the forward pass used
    want = phi @ psi_w[0] + psi_b[0] + (v[y.detach().numpy()] * phi).sum(1)              # eq. (5)
    assert scores.shape == (6,)
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-5)
    with ng.no_grad():
        other = model.discriminate(x, ng.tensor([1, 2, 0, 0, 2, 1])).detach().numpy()
    assert np.abs(other - scores).min() > 1e-4           # every score moves with its label
    # the label moves the score by <V_y' - V_y, phi> exactly
    np.testing.assert_allclose(other - scores, ((v[[1, 2, 0, 0, 2, 1]] - v[arr(y)]) * phi).sum(1),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="pass the labels"):
        model.discriminate(x)


def test_the_label_changes_the_samples_and_the_same_label_keeps_them():
    model = tiny()
    model.eval()
    z = ng.tensor(np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32))
    with ng.no_grad():
        a = model.generate(z, ng.tensor([0, 1, 2])).detach().numpy()
        b = model.generate(z, ng.tensor([0, 1, 2])).detach().numpy()
        c = model.generate(z, ng.tensor([1, 2, 0])).detach().numpy()
    np.testing.assert_array_equal(a, b)
    assert all(np.abs(a[i] - c[i]).max() > 1e-4 for i in range(3))


# ---------------------------------------------------------------- orthogonal regularisation
def numpy_ortho(w):
    w = w.reshape(w.shape[0], -1)
    gram = w @ w.T
    return float(((gram * (1 - np.eye(len(w)))) ** 2).sum())


@pytest.mark.parametrize("shape", [(3, 5), (6, 2), (4, 2, 3, 3), (5, 1, 1, 2), (1, 4)])
def test_orthogonal_penalty_matches_numpy_and_its_gradient_checks(shape):
    w = np.random.default_rng(sum(shape)).normal(size=shape)
    got = orthogonal_penalty(ng.tensor(w)).item()
    assert got == pytest.approx(numpy_ortho(w), rel=1e-10, abs=1e-12)
    # d/dW = 4 (W W^T o (1 - I)) W, read as (rows, fan-in)
    flat = w.reshape(shape[0], -1)
    want = 4 * ((flat @ flat.T) * (1 - np.eye(shape[0]))) @ flat
    t = ng.tensor(w, requires_grad=True)
    orthogonal_penalty(t).backward()
    np.testing.assert_allclose(t.grad.detach().numpy().reshape(shape[0], -1), want, rtol=1e-9,
                               atol=1e-12)
    assert gradcheck(orthogonal_penalty, [ng.tensor(w, requires_grad=True)])


def test_orthogonal_penalty_is_zero_for_orthogonal_rows_whatever_their_norms():
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))[0]
    for w in (q[:3] * np.array([[1.0], [3.0], [0.5]]), q * 2.0):   # wide, and square
        assert orthogonal_penalty(ng.tensor(w)).item() == pytest.approx(0.0, abs=1e-10)
    tall = q[:, :2] * 3.0          # orthogonal columns, not rows: penalised
    assert orthogonal_penalty(ng.tensor(tall)).item() == pytest.approx(numpy_ortho(tall))


def test_the_generator_loss_adds_beta_times_the_penalty_of_every_g_weight_but_e():
    model = tiny(ortho_weight=0.5)
    names = [name for name, _ in model.orthogonal_weights()]
    assert "shared.weight" not in names and "input.weight_orig" in names
    assert len(names) == sum(1 for _, p in model.generator.named_parameters()
                             if p.ndim >= 2) - 1
    want = 0.5 * sum(numpy_ortho(p.detach().numpy().astype(np.float64))
                     for _, p in model.orthogonal_weights())
    assert model.orthogonal_regularisation().item() == pytest.approx(want, rel=1e-4)
    model.eval()
    _, y = batch(4)
    fake = model.generate(model.sample_latents(4), y)
    loss, logs = model.generator_loss(fake, y)
    assert logs["ortho"] == pytest.approx(want, rel=1e-4)
    with ng.no_grad():
        game = float(-model.discriminate(fake, y).mean().item())
    assert loss.item() == pytest.approx(game + want, rel=1e-5)          # eq. (7)
    assert tiny(ortho_weight=0).generator_loss(fake, y)[1] == {}


# ---------------------------------------------------------------- spectral norm
def test_spectral_norm_on_every_conv_and_linear_weight_of_both_networks():
    model = tiny()
    layers = spectrally_normalised_layers(model.generator, model.discriminator)
    convs = [m for net in (model.generator, model.discriminator) for m in net.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(convs) > 20 and all(m in layers for m in convs)
    for m in layers:
        assert "weight_orig" in m._parameters and "weight" not in m._parameters
        assert any(isinstance(h, SpectralNorm) for h in m._forward_pre_hooks.values())
    state = model.state_dict()
    assert "discriminator.embed.weight_u" in state and "generator.shared.weight" in state
    assert sum(key.endswith("weight_u") for key in state) == len(layers)
    # after enough power iterations every normalised weight has largest singular value 1
    model.train()
    x, y = batch(4)
    with ng.no_grad():
        for _ in range(30):
            model.generate(model.sample_latents(4), y), model.discriminate(x, y)
    for m in layers:
        w = m.weight.detach().numpy()
        if isinstance(m, nn.Conv2d) or w.ndim > 2:
            w = w.reshape(w.shape[0], -1)
        assert np.linalg.svd(w, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-3)
    bare = tiny(spectral_norm=False)
    assert not any("weight_orig" in m._parameters for m in bare.modules())


# ---------------------------------------------------------------- truncation
@pytest.mark.parametrize("threshold", [0.04, 0.5, 1.0, 2.0, 8.0])
def test_truncated_codes_lie_within_the_threshold_and_follow_the_truncated_normal(threshold):
    model = tiny()
    z = model.truncated_latents(4000, threshold).detach().numpy()
    assert z.shape == (4000, 6) and z.dtype == np.float32
    assert np.abs(z).max() <= threshold
    assert np.abs(z).max() > 0.95 * min(threshold, 3.0)          # and they reach it
    # the truncated normal's variance: 1 - 2 t phi(t) / (2 Phi(t) - 1)
    from scipy.special import ndtr
    phi = np.exp(-threshold ** 2 / 2) / np.sqrt(2 * np.pi)
    variance = 1 - 2 * threshold * phi / (2 * ndtr(threshold) - 1)
    assert z.var() == pytest.approx(variance, rel=0.03)
    assert abs(z.mean()) < 4 * np.sqrt(variance / z.size)
    samples = model.sample(3, ng.tensor([0, 1, 2]), truncation=threshold).detach().numpy()
    assert samples.shape == (3,) + SHAPE and 0 <= samples.min() and samples.max() <= 1


def test_truncated_normal_at_the_edges_of_the_uniforms():
    u = np.array([0.0, 1e-300, 0.5, 1 - 2 ** -53])
    for t in (1e-3, 0.3, 5.0, 40.0, np.inf):
        z = truncated_normal(u, t)
        assert np.isfinite(z).all() and (np.abs(z) <= t).all() and z[2] == 0


@pytest.mark.parametrize("threshold", [0, -1.0, float("nan"), True, "1", [1.0]])
def test_a_threshold_outside_its_domain_is_one_clear_error(threshold):
    model = tiny()
    for call in (lambda: model.sample(2, truncation=threshold),
                 lambda: model.truncated_latents(2, threshold),
                 lambda: model.truncation_curve(thresholds=[threshold], n=2)):
        with pytest.raises(ValueError, match="truncation threshold t .* must be a positive "
                                             "number, or None"):
            call()
    assert check_threshold(None, "x") is None and check_threshold(2, "x") == 2.0


def test_the_truncation_figure_shows_the_same_samples_more_truncated_row_by_row():
    model = settled(tiny())
    ng.manual_seed(5)
    images, columns = model.truncation_grid(thresholds=(None, 2.0, 0.5, 0.04))
    assert columns == 3 and tuple(images.shape) == (12,) + SHAPE
    rows = images.detach().numpy().reshape(4, 3, -1)
    # row by row closer to the sample of z = 0 (the most truncated row is nearly it)
    with ng.no_grad():
        centre = arr(model.sample(3, ng.tensor([0, 1, 2]), truncation=1e-9)).reshape(3, -1)
    distances = [np.abs(row - centre).mean() for row in rows]
    assert distances == sorted(distances, reverse=True) and distances[-1] < 0.1 * distances[0]
    figures = model.figures()
    assert set(figures) == {"class_samples", "truncation"}
    grid, nrow = figures["class_samples"]
    assert nrow == 10 and tuple(grid.shape) == (30,) + SHAPE        # one row per class


def test_the_truncation_curve_scores_samples_drawn_at_each_threshold(monkeypatch, tmp_path):
    import nanogen.metrics as metrics
    seen, spreads = [], []

    def fake_quality(samples, dataset, seed=0):
        seen.append((samples.shape, dataset))
        spreads.append(float(samples.std(axis=0).mean()))
        return {"fid": 100.0 - len(seen), "inception_score": 1.0 + len(seen)}

    def fake_accuracy(model, n, seed=0, options=None):
        return {"conditional_accuracy": options["truncation"] or 0.0, "num_conditional_samples": n}

    # load both first: loading one lazily re-binds the package's names (nanogen.metrics)
    assert metrics.sample_quality and metrics.conditional_accuracy
    monkeypatch.setattr(metrics, "sample_quality", fake_quality)
    monkeypatch.setattr(metrics, "conditional_accuracy", fake_accuracy)
    model = settled(tiny())
    model.train()
    records = model.truncation_curve(thresholds=(0.1, 1.0, None), n=12, dataset="some-set",
                                     path=str(tmp_path / "curve.png"))
    assert (tmp_path / "curve.png").stat().st_size > 1000
    assert model.training                                       # put back as it was
    assert [r["threshold"] for r in records] == [0.1, 1.0, None]
    assert [r["fid"] for r in records] == [99.0, 98.0, 97.0]
    assert [r["conditional_accuracy"] for r in records] == [0.1, 1.0, 0.0]
    assert set(records[0]) == {"threshold", "fid", "inception_score", "conditional_accuracy",
                               "num_samples"}
    assert seen == [((12,) + SHAPE, "some-set")] * 3
    assert spreads[0] < spreads[1] < spreads[2]                   # truncation cuts variety


# ---------------------------------------------------------------- labels, training, registry
def test_labels_out_of_range_or_missing_are_refused_in_one_line():
    model = tiny()
    x, _ = batch(4)
    opts = model.configure_optimizers(1e-3)
    for call in (lambda: model.sample(2, ng.tensor([0, 3])),
                 lambda: model.training_step((x, ng.tensor([0, 1, 2, 5])), opts),
                 lambda: model.sample(2, ng.tensor([-1, 0]))):
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
            call()
    with pytest.raises(ValueError, match="pass the labels y"):
        model.training_step((x, None), opts)


def test_bad_options_are_refused():
    for kwargs, match in (({"ortho_weight": -1}, "ortho_weight"),
                          ({"channels": (4, 8), "image_shape": (1, 6, 6)}, "divisible by 4"),
                          ({"image_shape": (2,)}, "image_shape must be"),
                          ({"spectral_norm": True, "penalty": "nope"}, "unknown penalty"),
                          ({"num_classes": 1}, "class-conditional")):
        with pytest.raises(ValueError, match=match):
            tiny(**kwargs)


def test_registered_with_the_papers_update_rule_and_an_ema():
    spec = all_models()["biggan"]
    assert spec.ema_decay == 0.999 and spec.lr == 1e-4
    model = spec.build(image_shape=SHAPE, num_classes=3, channels=(4, 8), latent_dim=6,
                       shared_dim=4)
    assert model.loss_name == "hinge" and model.batches_per_step == 2
    assert model.conditional and model.num_classes == 3
    optimizers = model.configure_optimizers(1e-4)
    for name, lr in (("discriminator", 4e-4), ("generator", 1e-4)):
        group = optimizers[name].param_groups[0]
        assert group["lr"] == pytest.approx(lr) and tuple(group["betas"]) == (0.0, 0.999)


def test_a_training_step_moves_both_players_and_logs_the_penalty():
    model = tiny()
    opts = model.configure_optimizers(1e-3)
    before = {k: v.detach().numpy().copy() for k, v in model.named_parameters()}
    model.train()
    logs = model.training_step(batch(8), opts)          # k = 2: two minibatches of 4
    assert {"loss_d", "loss_g", "score_real", "score_fake", "ortho"} <= set(logs)
    assert all(np.isfinite(v) for v in logs.values())
    moved = {k for k, v in model.named_parameters() if not np.array_equal(arr(v), before[k])}
    assert any(k.startswith("generator.") for k in moved)
    assert any(k.startswith("discriminator.") for k in moved)
    assert "generator.attention.gamma" in moved and "discriminator.attention.gamma" in moved


@pytest.mark.parametrize("options, log", [({"penalty": "wgan-gp"}, "penalty"),
                                          ({"optimizer": "rmsprop"}, "ortho"),
                                          ({"weight_clip": 0.5, "spectral_norm": False}, "ortho")])
def test_the_shared_steps_options_work_where_they_make_sense(options, log):
    model = tiny(**options)
    logs = model.training_step(batch(8), model.configure_optimizers(1e-3))
    assert np.isfinite(logs[log])
    for trick, match in (({"replay": 0.5}, "conditions its generator"),
                         ({"real_label": 0.9}, "reads D's outputs as scores"),
                         ({"feature_matching": True}, "terms of its own")):
        with pytest.raises(ValueError, match=match):
            tiny(**trick)


def test_resume_is_bit_identical_with_the_ema_and_spectral_norm_buffers(tmp_path):
    x, y = batch(32, seed=1)
    data = TensorDataset(x.detach().numpy(), y.detach().numpy())

    def run(out, steps, resume=False):
        model = tiny(seed=0 if not resume else 5)
        loader = DataLoader(data, batch_size=4, shuffle=True, drop_last=True, seed=1)
        train(model, loader, steps=steps, out_dir=str(out), config={"model": "tiny"},
              lr=1e-3, resume=resume, progress=False, sample_every=1000,
              checkpoint_every=1000, num_samples=3, ema_decay=0.9)
        return model

    straight = run(tmp_path / "straight", 4)
    run(tmp_path / "broken", 2)
    halfway = load_checkpoint(tmp_path / "broken")
    run(tmp_path / "broken", 4, resume=True)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "broken")
    key = "generator.blocks.0.conv1.weight_u"
    assert not np.array_equal(arr(halfway["model"][key]), arr(a["model"][key]))
    assert a["ema"]["num_updates"] == b["ema"]["num_updates"] == 4
    for name in a["model"]:
        np.testing.assert_array_equal(arr(a["model"][name]), arr(b["model"][name]), name)
    for part in ("shadow_params", "shadow_buffers"):
        assert len(a["ema"][part]) == len(b["ema"][part]) > 0
        for p, q in zip(a["ema"][part], b["ema"][part]):
            np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy(), part)
    assert not np.array_equal(a["ema"]["shadow_params"][0].detach().numpy(),
                              a["model"]["generator.shared.weight"].detach().numpy())
    np.testing.assert_array_equal(a["rng"].detach().numpy(), b["rng"].detach().numpy())
    del straight
