"""VAE-GAN: the three losses against direct NumPy formulas, each network's gradient coming from its
own objective only (encoder: KL + feature error; decoder: gamma * feature error + GAN; the
discriminator: -L_GAN), the pictures and metrics, exact resume, the registry and the error
messages.  Tiny models on 4x4 / 8x8 images, float64 where values are compared."""
import numpy as np
import pytest
from hypothesis import given

import nanogen as ng
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import ImageShapeError, get_model_spec
from nanogen.models.autoencoders.vae_gan import (VAEGAN, feature_reconstruction_loss,
                                                 vae_gan_discriminator_loss)
from nanogen.models.gans.losses import adversarial_loss
from nanogen.training import load_checkpoint, train

from .strategies import float64_arrays

NETWORKS = ("encoder", "decoder", "discriminator")


def tiny(seed=0, image_shape=(1, 8, 8), **kwargs):
    ng.manual_seed(seed)
    kwargs = {"latent_dim": 3, "channels": (4,), "disc_channels": (3, 5), **kwargs}
    return VAEGAN(image_shape=image_shape, **kwargs).double()


def images(n, shape=(1, 8, 8), seed=0):
    """Images in [-1, 1] (the model's data transform), float64."""
    return ng.tensor(np.random.default_rng(seed).uniform(-1, 1, (n, *shape)))


def log_sigmoid(a):
    return -np.logaddexp(0.0, -a)


# ---------------------------------------------------------------- the losses, one by one
@given(real=float64_arrays((3, 2, 2, 2), min_value=-3, max_value=3),
       recon=float64_arrays((3, 2, 2, 2), min_value=-3, max_value=3))
def test_feature_reconstruction_loss_is_half_the_squared_distance(real, recon):
    got = feature_reconstruction_loss(ng.tensor(real), ng.tensor(recon)).item()
    expected = np.mean([0.5 * np.sum((real[i] - recon[i]) ** 2) for i in range(3)])
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", ["non-saturating", "minimax"])
@given(real=float64_arrays((4,), min_value=-6, max_value=6),
       recon=float64_arrays((4,), min_value=-6, max_value=6),
       fake=float64_arrays((4,), min_value=-6, max_value=6))
def test_discriminator_loss_is_minus_the_three_term_gan_value(name, real, recon, fake):
    """-L_GAN = -mean log D(x) - mean log(1 - D(x_p)) - mean log(1 - D(x~)), whichever
    generator loss the decoder plays with."""
    got = vae_gan_discriminator_loss(ng.tensor(real), ng.tensor(recon), ng.tensor(fake),
                                     adversarial_loss(name)).item()
    value = (log_sigmoid(real).mean() + log_sigmoid(-fake).mean()
             + log_sigmoid(-recon).mean())
    assert got == pytest.approx(-value, rel=1e-12)


def recompute(model, x, seed):
    """The model's own forward pass under ``seed``, as NumPy arrays: the posterior, the
    discriminator's features and logits of [x, x~, x_p]."""
    n = x.shape[0]
    ng.manual_seed(seed)
    with ng.no_grad():
        mu, logvar = model.encode(x)
        z = model.reparameterize(mu, logvar)
        z_p = ng.randn_like(mu)
        batch = ng.cat([x, model.decode(ng.cat([z, z_p]))])
        features, logits = model.discriminate(batch)
    return (mu.numpy(), logvar.numpy(), features.numpy().reshape(3, n, -1),
            logits.numpy().reshape(3, n))


@pytest.mark.parametrize("name", ["non-saturating", "minimax"])
def test_model_losses_against_numpy(name):
    model = tiny(loss=name)
    x = images(5)
    ng.manual_seed(3)
    t = model.losses(x)
    mu, logvar, f, logits = recompute(model, x, seed=3)
    kl = 0.5 * (mu ** 2 + np.exp(logvar) - logvar - 1).sum(1).mean()
    llike = 0.5 * ((f[0] - f[1]) ** 2).sum(1).mean()
    real, recon, fake = logits
    disc = -(log_sigmoid(real).mean() + log_sigmoid(-fake).mean() + log_sigmoid(-recon).mean())
    if name == "non-saturating":
        dec = -log_sigmoid(fake).mean() - log_sigmoid(recon).mean()
    else:
        dec = log_sigmoid(-fake).mean() + log_sigmoid(-recon).mean()
    np.testing.assert_allclose([t.prior.item(), t.llike.item(), t.discriminator.item(),
                                t.decoder_gan.item()], [kl, llike, disc, dec], rtol=1e-10)
    sig = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose([t.d_real, t.d_recon, t.d_fake], sig.mean(1), rtol=1e-10)
    assert llike > 0 and kl > 0                    # the untrained model reconstructs nothing


def test_the_feature_layer_is_the_last_convolutional_map():
    """Dis_l is the input of the discriminator's flatten + linear head: the logits are the
    linear map of the features."""
    model = tiny()
    with ng.no_grad():
        features, logits = model.discriminate(images(4))
    assert features.shape == (4, 5, 2, 2)         # disc_channels (3, 5): 8x8 -> 4x4 -> 2x2
    linear = list(model.discriminator)[-1]
    expected = (features.numpy().reshape(4, -1) @ linear.weight.detach().numpy().T
                                                + linear.bias.detach().numpy())
    np.testing.assert_allclose(logits.numpy(), expected[:, 0], rtol=1e-12)


# ---------------------------------------------------------------- three networks, three losses
def test_optimizers_partition_the_parameters_by_network():
    model = tiny()
    optimizers = model.configure_optimizers(1e-3)
    assert sorted(optimizers) == sorted(NETWORKS)
    for name in NETWORKS:
        got = {id(p) for g in optimizers[name].param_groups for p in g["params"]}
        assert got == {id(p) for p in getattr(model, name).parameters()}
    assert sum(len(list(getattr(model, n).parameters())) for n in NETWORKS) == \
        len(list(model.parameters()))


def reference_gradients(model, x, seed):
    """Each network's gradient by a plain backward of its objective, the other two networks
    frozen (requires_grad off): the encoder's beta * KL + L_llike, the decoder's
    gamma * L_llike + its GAN loss, the discriminator's -L_GAN."""
    out = {}
    for name in NETWORKS:
        for other in NETWORKS:
            for p in getattr(model, other).parameters():
                p.requires_grad = other == name
                p.grad = None
        ng.manual_seed(seed)
        t = model.losses(x)
        objective = {"encoder": model.beta * t.prior + t.llike,
                     "decoder": model.gamma * t.llike + t.decoder_gan,
                     "discriminator": t.discriminator}[name]
        objective.backward()
        out[name] = [p.grad.numpy().copy() for p in getattr(model, name).parameters()]
    for p in model.parameters():
        p.requires_grad = True
    return out


class Recorder:
    """An optimizer stand-in that keeps the gradients it is asked to step with."""

    def __init__(self):
        self.grads = None

    def zero_grad(self):
        pass

    def step(self):
        pass


def step_gradients(model, x, seed):
    recorders = {name: Recorder() for name in NETWORKS}
    ng.manual_seed(seed)
    model.training_step((x, None), recorders)
    return {name: [p.grad.numpy().copy() for p in getattr(model, name).parameters()]
            for name in NETWORKS}


@pytest.mark.parametrize("gamma, beta", [(1.0, 1.0), (0.3, 2.0)])
def test_each_network_steps_on_the_gradient_of_its_own_objective(gamma, beta):
    model = tiny(gamma=gamma, beta=beta)
    x = images(4)
    got = step_gradients(model, x, seed=4)
    want = reference_gradients(model, x, seed=4)
    for name in NETWORKS:
        for g, w in zip(got[name], want[name]):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12, err_msg=name)
        assert any(np.abs(g).max() > 0 for g in got[name]), name


def test_gamma_weights_only_the_decoder_and_beta_only_the_encoder():
    x = images(4)
    base = step_gradients(tiny(), x, seed=5)
    for kwargs, changed in (({"gamma": 0.25}, "decoder"), ({"beta": 3.0}, "encoder")):
        other = step_gradients(tiny(**kwargs), x, seed=5)
        for name in NETWORKS:
            same = all(np.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(base[name],
                                                                             other[name]))
            assert same == (name != changed), (kwargs, name)


def test_a_training_step_moves_every_network_and_logs_finite_numbers():
    model = tiny()
    optimizers = model.configure_optimizers(1e-3)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    logs = model.training_step((images(4), None), optimizers)
    assert list(logs) == ["loss_d", "loss_g", "llike", "kl", "d_real", "d_recon", "d_fake"]
    assert all(np.isfinite(v) for v in logs.values())
    for name in NETWORKS:
        assert any(not np.array_equal(p.detach().numpy(), before[f"{name}.{k}"])
                   for k, p in getattr(model, name).named_parameters()), name


def run(out_dir, steps, init_seed=0, resume=False):
    model = tiny(seed=init_seed, image_shape=(1, 4, 4), channels=(2,), disc_channels=(2,)).float()
    rng = np.random.default_rng(1)
    data = rng.uniform(-1, 1, (16, 1, 4, 4)).astype(np.float32)
    loader = DataLoader(TensorDataset(data, np.zeros(16, np.int64)), batch_size=4,
                        shuffle=True, seed=1)
    train(model, loader, steps=steps, out_dir=out_dir, config={"model": "vae-gan"}, lr=1e-3,
          progress=False, checkpoint_every=1, sample_every=1000, resume=resume)
    return model


def test_resume_continues_exactly(tmp_path):
    straight = run(tmp_path / "a", 5)
    run(tmp_path / "b", 2)
    broken = run(tmp_path / "b", 5, init_seed=123, resume=True)
    for key, value in straight.state_dict().items():
        assert np.array_equal(value.numpy(), broken.state_dict()[key].numpy()), key
    assert load_checkpoint(tmp_path / "b")["step"] == 5


# ---------------------------------------------------------------- using a trained model
def test_samples_codes_figures_and_evaluate():
    model = tiny().eval()
    x = images(6)
    with ng.no_grad():
        samples = model.sample(5).numpy()
        tanh_out = model.decode(ng.tensor(np.zeros((1, 3)))).numpy()
    assert samples.shape == (5, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    assert np.abs(tanh_out).max() < 1
    codes = model.codes(x)
    np.testing.assert_array_equal(codes.numpy(), model.encode(x)[0].detach().numpy())
    pairs, nrow = model.figures(x)["reconstructions"]
    assert pairs.shape == (12, 1, 8, 8) and nrow == 12
    np.testing.assert_allclose(pairs.numpy()[0::2], (x.numpy() + 1) / 2)
    np.testing.assert_allclose(pairs.numpy()[1::2], model.reconstruct(x).numpy())
    metrics = model.evaluate([(x[:4], None), (x[4:], None)])
    mu, logvar = (t.detach().numpy() for t in model.encode(x))
    kl = 0.5 * (mu ** 2 + np.exp(logvar) - logvar - 1).sum(1).mean()
    mse = ((pairs.numpy()[1::2] - pairs.numpy()[0::2]) ** 2).mean()
    assert metrics["num_examples"] == 6
    assert metrics["kl_nats"] == pytest.approx(kl, rel=1e-10)
    assert metrics["recon_mse"] == pytest.approx(mse, rel=1e-10)
    assert model.inference_state_dict().keys() == {
        k for k in model.state_dict() if not k.startswith("discriminator.")}


def test_the_conv_generator_is_the_vae_decoder_through_a_tanh():
    model = tiny(generator="conv")
    z = ng.tensor(np.random.default_rng(2).normal(size=(3, 3)))
    with ng.no_grad():
        np.testing.assert_allclose(model.decode(z).numpy(), np.tanh(model.decoder(z).numpy()))
    assert not any(isinstance(m, ng.nn.BatchNorm2d) for m in model.decoder.modules())
    assert any(isinstance(m, ng.nn.BatchNorm2d) for m in tiny().decoder.modules())


def test_registered_model():
    spec = get_model_spec("vae-gan")
    assert spec.build is VAEGAN and spec.steps <= 3000 and spec.batch_size == 64
    model = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
    assert model.judged_by_samples and model.data_transform == "symmetric"


# ---------------------------------------------------------------- bad input, one clear line
def test_clear_errors():
    model = tiny()
    optimizers = model.configure_optimizers(1e-3)
    with pytest.raises(ValueError, match=r"VAEGAN.training_step: expected images of shape "
                                         r"\(N, 1, 8, 8\), got \(2, 1, 4, 4\)"):
        model.training_step((images(2, (1, 4, 4)), None), optimizers)
    with pytest.raises(ValueError, match=r"VAEGAN.discriminate: expected images of shape"):
        model.discriminate(images(2, (1, 8, 4)))
    with pytest.raises(ValueError, match=r"\.decode: expected latent codes of shape \(N, 3\)"):
        model.decode(ng.zeros(2, 4, dtype=ng.float64))
    with pytest.raises(KeyError, match="no 'discriminator' optimizer"):
        model.training_step((images(2), None), {k: optimizers[k] for k in NETWORKS[:2]})
    with pytest.raises(ValueError, match="feature_reconstruction_loss: real features"):
        feature_reconstruction_loss(ng.zeros(2, 3), ng.zeros(2, 4))
    with pytest.raises(NotImplementedError, match="no pixel likelihood"):
        model.loss(images(2))


@pytest.mark.parametrize("kwargs, message", [
    ({"gamma": 0.0}, "VAEGAN: gamma must be a positive number, got 0.0"),
    ({"gamma": -1}, "VAEGAN: gamma must be a positive number"),
    ({"loss": "wasserstien"}, "unknown adversarial loss 'wasserstien'"),
    ({"loss": "wasserstein"}, "a game on log-odds .minimax or non-saturating., got 'wasserstein'"),
    ({"disc_channels": ()}, "channels must be a non-empty sequence"),
    ({"image_shape": (2,)}, "VAEGAN models images: image_shape must be"),
    ({"beta": -1.0}, "beta must be a non-negative number"),
    ({"generator": "mlp"}, "VAEGAN: generator must be 'dcgan' or 'conv', got 'mlp'"),
])
def test_clear_errors_for_bad_configurations(kwargs, message):
    ng.manual_seed(0)
    with pytest.raises(ValueError, match=message):
        VAEGAN(**{"image_shape": (1, 8, 8), "latent_dim": 2, "channels": (2,), **kwargs})


def test_image_sizes_the_discriminator_cannot_halve_are_refused():
    with pytest.raises(ImageShapeError, match="needs H and W divisible by 4, got 6x6"):
        VAEGAN(image_shape=(1, 6, 6), channels=(2,), disc_channels=(2, 2))


@pytest.mark.parametrize("module", ["nanogen.models.gans.dcgan", "nanogen.models.gans",
                                    "nanogen.models.autoencoders.vae_gan",
                                    "nanogen.models.autoencoders.aae"])
def test_each_family_imports_first_in_a_fresh_process(module):
    """The autoencoders import GAN parts and the GANs shared shape checks: no import cycle,
    whichever module a script imports first (examples/adversarial_dcgan.py imports dcgan)."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
