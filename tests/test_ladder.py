"""The ladder network: the encoder's clean and corrupted passes, the decoder and its combinator,
each cost against a NumPy computation of the whole network, the labelled memory (only its labels
reach the weights), the running statistics, evaluation, exact resume, a loop that draws no
samples for it, the registry and the error messages.  Tiny networks on 4x4 images."""
import math

import numpy as np
import pytest

import nanogen as ng
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import get_model_spec
from nanogen.models.autoencoders import ladder as ladder_module
from nanogen.models.autoencoders.ladder import LadderNetwork, combinator
from nanogen.training import train
from nanogen.training.checkpoint import load_checkpoint

SHAPE = (1, 4, 4)


def tiny(seed=0, hidden=(5, 4), num_classes=3, denoising_weights=(2.0, 0.5, 0.3, 0.7),
         labels_per_class=2, double=True, **kwargs):
    ng.manual_seed(seed)
    model = LadderNetwork(image_shape=SHAPE, num_classes=num_classes, hidden=hidden,
                          denoising_weights=denoising_weights,
                          labels_per_class=labels_per_class, **kwargs)
    return model.double() if double else model


def images(n, seed=0, dtype=np.float64):
    return ng.tensor(np.random.default_rng(seed).random((n, *SHAPE)).astype(dtype))


def record_noise(monkeypatch):
    """Every eps the ladder draws, in order, as NumPy arrays."""
    drawn = []
    original = ladder_module.randn_like

    def recording(t):
        eps = original(t)
        drawn.append(eps.numpy().copy())
        return eps

    monkeypatch.setattr(ladder_module, "randn_like", recording)
    return drawn


# ---------------------------------------------------------------- a NumPy ladder
def params_of(model):
    enc = [(layer.linear.weight.detach().numpy(), layer.beta.detach().numpy())
           for layer in model.encoder]
    dec = None
    if model.decoder is not None:
        dec = [(layer.a.detach().numpy(),
                None if layer.vertical is None else layer.vertical.weight.detach().numpy())
               for layer in model.decoder]
    return enc, model.gamma.detach().numpy(), dec


def np_standardize(a, eps=1e-5):
    return (a - a.mean(0)) / np.sqrt(a.var(0) + eps)


def np_softmax(a):
    e = np.exp(a - a.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def np_encoder(model, x, noise=None, running=False, sigma=None):
    """Eqs. (1)-(3); ``noise`` the list of eps per layer (None: the clean pass)."""
    enc, gamma, _ = params_of(model)
    sigma = model.noise_std if sigma is None else sigma
    h = x.reshape(len(x), -1)
    if noise is not None:
        h = h + sigma * noise[0]
    zs, hs, stats = [h], [h], [None]
    for l, (w, beta) in enumerate(enc, start=1):
        a = h @ w.T
        if running:
            layer = model.encoder[l - 1]
            mean, var = layer.running_mean.numpy(), layer.running_var.numpy()
        else:
            mean, var = a.mean(0), a.var(0)
        z = (a - mean) / np.sqrt(var + model.eps)
        if noise is not None:
            z = z + sigma * noise[l]
        if l < len(enc):
            h = np.maximum(z + beta, 0.0)
        else:
            logits = gamma * (z + beta)
            h = np_softmax(logits)
        zs.append(z)
        hs.append(h)
        stats.append((mean, var))
    return zs, hs, stats, logits


def np_combinator(z, u, a):
    mu = a[0] / (1 + np.exp(-(a[1] * u + a[2]))) + a[3] * u + a[4]
    v = a[5] / (1 + np.exp(-(a[6] * u + a[7]))) + a[8] * u + a[9]
    return (z - mu) * v + mu


def np_denoising_costs(model, x, noise):
    """Eqs. (4)-(6) from a clean pass and a corrupted pass with the given eps."""
    _, _, dec = params_of(model)
    clean_z, _, clean_stats, _ = np_encoder(model, x)
    corr_z, corr_h, _, _ = np_encoder(model, x, noise)
    top = len(corr_z) - 1
    z_hat = [None] * (top + 1)
    for l in range(top, -1, -1):
        a, v = dec[l]
        u = corr_h[top] if l == top else z_hat[l + 1] @ v.T
        z_hat[l] = np_combinator(corr_z[l], np_standardize(u, model.eps), a)
    costs = []
    for l in range(top + 1):
        est = z_hat[l]
        if l > 0:
            mean, var = clean_stats[l]
            est = (est - mean) / np.sqrt(var + model.eps)
        costs.append(((clean_z[l] - est) ** 2).sum(1).mean() / clean_z[l].shape[1])
    return costs, z_hat


def np_cross_entropy(logits, y):
    log_p = logits - logits.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean()


def perturb(model, seed=0, scale=0.3):
    """Move every parameter off its initial value (a_i = 0 would hide terms of eq. 5)."""
    rng = np.random.default_rng(seed)
    with ng.no_grad():
        for p in model.parameters():
            p.copy_(p + ng.tensor(scale * rng.standard_normal(p.shape), dtype=p.dtype))


# ---------------------------------------------------------------- the encoder: shared weights
def test_clean_and_corrupted_passes_share_one_set_of_weights(monkeypatch):
    model = tiny()
    widths = (16, 5, 4, 3)
    # one W per layer, no second copy for the corrupted pass
    names = sorted(name for name, _ in model.named_parameters())
    assert [n for n in names if n.startswith("encoder.")] == sorted(
        [f"encoder.{i}.linear.weight" for i in range(3)] + [f"encoder.{i}.beta" for i in range(3)])
    expected = (sum(a * b for a, b in zip(widths, widths[1:])) + sum(widths[1:]) + 3   # W, beta, gamma
                + 10 * sum(widths) + sum(a * b for a, b in zip(widths, widths[1:])))  # a, V
    assert sum(p.numel() for p in model.parameters()) == expected
    perturb(model)
    x = images(6, seed=1)
    noise = record_noise(monkeypatch)
    clean = model.encode(x, 0.0)
    corrupted = model.encode(x, 0.3)
    assert len(noise) == 4                                 # eps at the input and each layer
    for got, want in ((clean, np_encoder(model, x.numpy())),
                      (corrupted, np_encoder(model, x.numpy(), noise, sigma=0.3))):
        for l in range(4):
            np.testing.assert_allclose(got.z[l].detach().numpy(), want[0][l], rtol=1e-10,
                                       atol=1e-12)
            np.testing.assert_allclose(got.h[l].detach().numpy(), want[1][l], rtol=1e-10,
                                       atol=1e-12)
        np.testing.assert_allclose(got.logits.detach().numpy(), want[3], rtol=1e-10)
    # the two passes differ only by the noise
    assert not np.allclose(clean.logits.detach().numpy(), corrupted.logits.detach().numpy())
    np.testing.assert_array_equal(model.encode(x, 0.0).logits.detach().numpy(),
                                  clean.logits.detach().numpy())
    # a change of one shared weight moves both passes
    weight = model.encoder[1].linear.weight
    with ng.no_grad():
        weight.copy_(weight + 0.1)
    assert not np.allclose(model.encode(x, 0.0).logits.detach().numpy(),
                           clean.logits.detach().numpy())


def test_the_supervised_cost_trains_the_weights_the_clean_pass_classifies_with():
    model = tiny(denoising_weights=0.0)
    x, y = images(6, seed=2), ng.tensor([0, 1, 2, 0, 1, 2])
    model.train()
    model.supervised_cost(x, y).backward()
    for layer in model.encoder:
        assert layer.linear.weight.grad is not None and np.abs(
            layer.linear.weight.grad.numpy()).sum() > 0


# ---------------------------------------------------------------- the combinator
def test_combinator_against_numpy_and_its_initial_value():
    rng = np.random.default_rng(3)
    z, u, a = rng.standard_normal((4, 5)), rng.standard_normal((4, 5)), rng.standard_normal((10, 5))
    got = combinator(ng.tensor(z), ng.tensor(u), ng.tensor(a)).numpy()
    np.testing.assert_allclose(got, np_combinator(z, u, a), rtol=1e-12)
    # a_2 = a_7 = 1, the rest 0: mu = 0 and v = 0, so z_hat = 0 at the start
    model = tiny()
    with ng.no_grad():
        z_hat = combinator(ng.tensor(z), ng.tensor(u), model.decoder[1].a).numpy()
    np.testing.assert_array_equal(z_hat, np.zeros_like(z))
    a0 = model.decoder[0].a.detach().numpy()
    np.testing.assert_array_equal(a0[[1, 6]], np.ones((2, 16)))
    np.testing.assert_array_equal(np.delete(a0, [1, 6], 0), np.zeros((8, 16)))


# ---------------------------------------------------------------- the costs against NumPy
def test_each_denoising_cost_against_numpy(monkeypatch):
    model = tiny()
    perturb(model, seed=4)
    x = images(7, seed=5)
    noise = record_noise(monkeypatch)
    costs = model.denoising_costs(x)
    assert len(costs) == 4 and len(noise) == 4
    want, _ = np_denoising_costs(model, x.numpy(), noise)
    for l, (got, expected) in enumerate(zip(costs, want)):
        assert got.item() == pytest.approx(expected, rel=1e-10), f"layer {l}"
    assert all(c > 0 for c in want)


def test_supervised_cost_and_total_loss_against_numpy(monkeypatch):
    model = tiny()
    perturb(model, seed=6)
    model.remember(images(5, seed=7), ng.tensor([2, 0, 2, 1, 2]))   # keeps 4 of them
    x = images(6, seed=8)
    noise = record_noise(monkeypatch)
    loss, logs = model.loss(x)
    assert len(noise) == 8                     # the memory's corrupted pass, then the batch's
    xl, yl = model.labelled_examples()
    np.testing.assert_array_equal(yl.numpy(), [0, 1, 2, 2])
    _, _, _, logits = np_encoder(model, xl.numpy(), noise[:4])
    supervised = np_cross_entropy(logits, yl.numpy())
    costs, _ = np_denoising_costs(model, x.numpy(), noise[4:])
    assert logs["supervised"] == pytest.approx(supervised, rel=1e-10)
    for l, cost in enumerate(costs):
        assert logs[f"denoise_{l}"] == pytest.approx(cost, rel=1e-10)
    total = supervised + sum(w * c for w, c in zip((2.0, 0.5, 0.3, 0.7), costs))
    assert loss.item() == pytest.approx(total, rel=1e-10)
    assert model.num_labels == 4


def test_a_zero_weight_drops_its_layer_and_all_zero_weights_drop_the_decoder(monkeypatch):
    model = tiny(denoising_weights=(1.0, 0.0, 0.0, 0.0))
    model.remember(images(3), ng.tensor([0, 1, 2]))
    x = images(5, seed=1)
    noise = record_noise(monkeypatch)
    loss, logs = model.loss(x)
    xl, yl = model.labelled_examples()
    costs, _ = np_denoising_costs(model, x.numpy(), noise[4:])
    supervised = np_cross_entropy(np_encoder(model, xl.numpy(), noise[:4])[3], yl.numpy())
    assert loss.item() == pytest.approx(supervised + costs[0], rel=1e-10)
    baseline = tiny(denoising_weights=0.0)
    assert baseline.decoder is None
    baseline.remember(images(3), ng.tensor([0, 1, 2]))
    _, logs = baseline.loss(x)
    assert sorted(logs) == ["supervised"]


# ---------------------------------------------------------------- the labelled memory
def test_the_memory_keeps_the_first_images_of_each_class_in_batch_order():
    model = tiny(labels_per_class=2)
    x = images(8, seed=9)
    copied = model.remember(x, ng.tensor([1, 1, 1, 0, 2, 1, 0, 0]))
    assert copied == 5 and model.num_labels == 5
    xl, yl = model.labelled_examples()
    np.testing.assert_array_equal(yl.numpy(), [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(xl.numpy(), x.numpy()[[3, 6, 0, 1, 4]])
    assert model.remember(images(4, seed=10), ng.tensor([0, 1, 0, 1])) == 0
    assert model.remember(images(4, seed=11), ng.tensor([0, 2, 2, 1])) == 1
    np.testing.assert_array_equal(model.labelled_examples()[1].numpy(), [0, 0, 1, 1, 2, 2])
    assert model.evaluate([(x, ng.tensor([0] * 8))])["num_labels"] == 6


def step_once(model, x, y, seed=3):
    optimizers = model.configure_optimizers(1e-2)
    model.train()
    ng.manual_seed(seed)
    model.training_step((x, y), optimizers)
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_labels_outside_the_memory_never_reach_the_weights():
    x0, y0 = images(6, seed=12), ng.tensor([0, 1, 2, 0, 1, 2])
    x = images(8, seed=13)
    rng = np.random.default_rng(14)
    labels = [rng.integers(0, 3, 8) for _ in range(3)]
    results = []
    for y in labels:
        model = tiny(seed=1)
        model.remember(x0, y0)                             # the memory is full
        results.append(step_once(model, x, ng.tensor(y)))
    for other in results[1:]:
        for key in results[0]:
            np.testing.assert_array_equal(other[key], results[0][key], err_msg=key)
    # and a check that can fail: the memory's own labels do change the update
    model = tiny(seed=1)
    model.remember(x0, ng.tensor([1, 0, 2, 1, 0, 2]))
    changed = step_once(model, x, ng.tensor(labels[0]))
    assert not np.array_equal(changed["encoder.0.linear.weight"],
                              results[0]["encoder.0.linear.weight"])


def test_the_running_statistics_follow_the_memory_and_serve_eval_mode():
    model = tiny(momentum=0.25)
    perturb(model, seed=15)
    x, y = images(6, seed=16), ng.tensor([0, 1, 2, 2, 1, 0])
    before = [(l.running_mean.numpy().copy(), l.running_var.numpy().copy())
              for l in model.encoder]
    state = step_once(model, x, y)                          # eq. (8) after the update
    model.load_state_dict({k: ng.tensor(v) for k, v in state.items()})
    xl, _ = model.labelled_examples()
    _, _, stats, _ = np_encoder(model, xl.numpy())
    for layer, (mean0, var0), (mean, var) in zip(model.encoder, before, stats[1:]):
        np.testing.assert_allclose(layer.running_mean.numpy(), 0.75 * mean0 + 0.25 * mean,
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.running_var.numpy(), 0.75 * var0 + 0.25 * var,
                                   rtol=1e-10)
    test = images(5, seed=17)
    model.eval()
    np.testing.assert_allclose(model.classify(test).numpy(),
                               np_encoder(model, test.numpy(), running=True)[3], rtol=1e-10)
    np.testing.assert_allclose(model.codes(test).numpy(),
                               np_encoder(model, test.numpy(), running=True)[1][2], rtol=1e-10)
    assert model.codes(test).shape == (5, 4)


def test_evaluate_reports_accuracy_and_cross_entropy_over_the_loader():
    model = tiny()
    perturb(model, seed=18)
    model.remember(images(3), ng.tensor([0, 1, 2]))
    model.eval()
    batches = [(images(4, seed=s), ng.tensor(np.arange(4) % 3)) for s in (19, 20)]
    metrics = model.evaluate(batches)
    logits = np.concatenate([np_encoder(model, b.numpy(), running=True)[3] for b, _ in batches])
    y = np.concatenate([t.numpy() for _, t in batches])
    assert metrics["accuracy"] == pytest.approx((logits.argmax(1) == y).mean())
    assert metrics["cross_entropy_nats"] == pytest.approx(np_cross_entropy(logits, y), rel=1e-10)
    assert metrics["num_labels"] == 3 and metrics["num_examples"] == 8


# ---------------------------------------------------------------- training, resume, the loop
def clusters(n, seed=0):
    """Three classes of 4x4 images: a bright row 0, 1 or 2, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.random((n, *SHAPE)) * 0.3
    x[np.arange(n), 0, y] += 0.7
    return x.astype(np.float32), y.astype(np.int64)


def test_training_lowers_the_costs_and_classifies_the_test_images():
    model = tiny(double=False, hidden=(16, 8), labels_per_class=2)
    optimizers = model.configure_optimizers(1e-2)
    x, y = clusters(40 * 8, seed=21)
    model.train()
    first = None
    for i in range(40):
        logs = model.training_step((ng.tensor(x[8 * i: 8 * i + 8]), ng.tensor(y[8 * i: 8 * i + 8])),
                                   optimizers)
        first = first or logs
    assert model.num_labels == 6
    assert logs["denoise_0"] < 0.5 * first["denoise_0"]
    assert logs["supervised"] < 0.6 * first["supervised"]
    model.eval()
    xt, yt = clusters(60, seed=22)
    assert model.evaluate([(ng.tensor(xt), ng.tensor(yt))])["accuracy"] > 0.9


def run(out_dir, steps, init_seed=0, resume=False):
    model = tiny(seed=init_seed, double=False)
    x, y = clusters(24, seed=23)
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=1)
    train(model, loader, steps=steps, out_dir=out_dir, config={"model": "ladder"}, lr=1e-2,
          progress=False, checkpoint_every=1, sample_every=3, resume=resume)
    return model


def test_a_resumed_run_fills_the_memory_and_trains_exactly_as_a_straight_one(tmp_path):
    straight = run(tmp_path / "a", 6)
    run(tmp_path / "b", 1)                                  # the memory is not full yet
    assert load_checkpoint(tmp_path / "b")["step"] == 1
    resumed = run(tmp_path / "b", 6, init_seed=123, resume=True)
    for key, value in straight.state_dict().items():
        assert np.array_equal(value.numpy(), resumed.state_dict()[key].numpy()), key
    assert straight.num_labels == 6
    # the loop draws no sample grids for a model that cannot sample, and still plots the log
    assert (tmp_path / "a" / "loss.png").exists()
    assert not (tmp_path / "a" / "samples.png").exists()
    assert not (tmp_path / "a" / "samples").exists()


def test_figures_show_images_their_corruption_and_the_decoders_estimate():
    model = tiny()
    model.eval()
    x = images(4, seed=24)
    assert model.figures(x) == {}          # an untrained decoder (shipped weights leave it out)
    model.decoder_updates.fill_(1)
    figures = model.figures(x)
    images_, nrow = figures["denoising"]
    assert nrow == 4 and images_.shape == (12, *SHAPE)
    np.testing.assert_array_equal(images_.numpy()[:4], x.numpy())
    assert images_.numpy().min() >= 0 and images_.numpy().max() <= 1
    assert tiny(denoising_weights=0.0).figures(x) == {}


def test_the_shipped_state_is_the_classifier_alone():
    model = tiny()
    shipped = model.inference_state_dict()
    assert "gamma" in shipped and any(k.startswith("encoder.") for k in shipped)
    assert not any(k.startswith(("decoder.", "memory_x", "memory_y")) for k in shipped)
    assert "memory_count" in shipped                  # evaluate's num_labels: what it learnt from
    fresh = tiny()
    fresh.load_state_dict(shipped, strict=False)
    fresh.eval(), model.eval()
    x = images(6, seed=25)
    np.testing.assert_array_equal(fresh.classify(x).numpy(), model.classify(x).numpy())


# ---------------------------------------------------------------- registry and errors
@pytest.mark.parametrize("name, decoder", [("ladder", True), ("ladder-supervised", False)])
def test_registered_models(name, decoder):
    spec = get_model_spec(name)
    model = spec.build(image_shape=SHAPE, num_classes=10, **{**spec.kwargs,
                                                             "hidden": [6, 5, 4, 4, 4]})
    assert (model.decoder is not None) == decoder
    assert model.widths == (16, 6, 5, 4, 4, 4, 10) and model.noise_std == 0.3
    assert model.labels_per_class == 10 and not model.can_sample
    if decoder:
        assert model.denoising_weights == (1000.0, 10.0, 0.1, 0.1, 0.1, 0.1, 0.1)
    assert spec.steps <= 3000 and spec.batch_size == 64


def test_clear_errors_for_bad_labels_images_and_arguments():
    model = tiny()
    opt = model.configure_optimizers(1e-3)
    x = images(3)
    with pytest.raises(ValueError, match=r"^LadderNetwork.training_step: the labels y are "
                                         r"missing"):
        model.training_step((x, None), opt)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got values from 0 to 3"):
        model.training_step((x, ng.tensor([0, 3, 1])), opt)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model.training_step((x, ng.tensor([0, -1, 1])), opt)
    with pytest.raises(ValueError, match=r"expected 3 labels"):
        model.training_step((x, ng.tensor([0, 1])), opt)
    assert model.num_labels == 0                            # nothing was remembered
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 4, 4\)"):
        model.loss(ng.zeros(2, 1, 5, 5))
    with pytest.raises(ValueError, match=r"LadderNetwork.evaluate: labels must lie"):
        model.evaluate([(x, ng.tensor([0, 1, 7]))])
    with pytest.raises(ValueError, match=r"denoising_weights must be 4 non-negative numbers"):
        tiny(denoising_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match=r"denoising_weights must be 4 non-negative"):
        tiny(denoising_weights=-1.0)
    with pytest.raises(ValueError, match=r"noise_std must be >= 0"):
        tiny(noise_std=-0.1)
    with pytest.raises(NotImplementedError, match="classifier and draws no samples"):
        model.sample(2)
    assert math.isfinite(model.loss(x)[0].item())


def test_nanogen_sample_refuses_a_classifier_in_one_line(tmp_path):
    from .test_cli import assert_one_line_error, run_cli
    out = tmp_path / "ladder"
    status, _, err = run_cli("train", "ladder-supervised", "--steps", 1, "--batch-size", 8,
                             "--arg", "hidden=[8, 4]", "--no-progress", "--out", out)
    assert status == 0, err
    assert not (out / "samples.png").exists()
    assert_one_line_error(*run_cli("sample", out)[::2], "LadderNetwork draws no samples")
