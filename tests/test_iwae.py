"""The IWAE: its loss against a NumPy computation of -L_k, k = 1 against the VAE's ELBO, the
bound growing with k, training, evaluation at k = 1,000, the registry (Burda et al.'s MLP) and
the error messages.  Tiny fully connected models on 4x4 images, in float64."""
import math

import numpy as np
import pytest
from scipy.special import logsumexp

import nanogen as ng
from nanogen.models import get_model_spec
from nanogen.models.autoencoders import VAE
from nanogen.models.autoencoders.iwae import IWAE
from nanogen.testing import gradcheck

from .test_vae import stripe_patterns

SHAPE = (1, 4, 4)


def tiny_iwae(k=5, latent_dim=2, hidden=(5,), seed=0, image_shape=SHAPE, **kwargs):
    ng.manual_seed(seed)
    return IWAE(image_shape=image_shape, k=k, latent_dim=latent_dim, architecture="mlp",
                hidden=hidden, activation="tanh", **kwargs).double()


def binary_images(n, seed=0):
    rng = np.random.default_rng(seed)
    return ng.tensor((rng.random((n, *SHAPE)) < 0.4).astype(np.float64))


def numpy_mlp(linears, h):
    """The MLP's forward pass in NumPy: tanh between the linear layers, none after the last."""
    for i, layer in enumerate(linears):
        h = h @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()
        if i < len(linears) - 1:
            h = np.tanh(h)
    return h


def linears(network):
    return [m for m in network.net if isinstance(m, ng.nn.Linear)]


def numpy_log_weights(model, x, eps):
    """log w = log p(x | z) + log p(z) - log q(z | x) for z = mu + e^{v/2} eps, eps (k, N, d),
    every step in NumPy from the model's weights."""
    n, d = x.shape[0], model.latent_dim
    flat = x.reshape(n, -1)
    out = numpy_mlp(linears(model.encoder), flat)
    mu, logvar = out[:, :d], out[:, d:]
    z = mu + np.exp(0.5 * logvar) * eps                                     # (k, N, d)
    logits = numpy_mlp(linears(model.decoder), z)                           # (k, N, D)
    log_px_z = (flat * logits - np.logaddexp(0.0, logits)).sum(-1)
    log_pz = -0.5 * (np.log(2 * np.pi) + z ** 2).sum(-1)
    log_qz = -0.5 * (np.log(2 * np.pi) + logvar + (z - mu) ** 2 / np.exp(logvar)).sum(-1)
    return log_px_z + log_pz - log_qz, (mu, logvar)


def draws(seed, k, n, d):
    """The eps that the model's one chunk of k samples draws after ng.manual_seed(seed):
    sample-major, row i * N + j is sample i of image j."""
    ng.manual_seed(seed)
    return ng.randn(k * n, d, dtype=ng.float64).numpy().reshape(k, n, d)


# ---------------------------------------------------------------- the loss against NumPy
@pytest.mark.parametrize("k", [1, 3, 7])
def test_loss_is_minus_the_k_sample_bound_computed_in_numpy(k):
    model = tiny_iwae(k=k, seed=k)
    x = binary_images(4, seed=k)
    log_w, _ = numpy_log_weights(model, x.numpy(), draws(21, k, 4, model.latent_dim))
    bound = logsumexp(log_w, axis=0) - math.log(k)                          # L_k per image
    ng.manual_seed(21)
    loss, logs = model.loss(x)
    assert loss.item() == pytest.approx(-bound.mean(), rel=1e-10)
    assert logs["neg_iwae_bound"] == pytest.approx(-bound.mean(), rel=1e-10)
    assert logs["neg_elbo"] == pytest.approx(-log_w.mean(), rel=1e-10)
    assert logs["neg_elbo"] >= logs["neg_iwae_bound"]                  # Jensen, per draw


def test_log_mean_exp_keeps_large_log_weights_finite():
    """Log weights of -1e4 (a badly fitted image) underflow exp; the loss must not."""
    model = tiny_iwae(k=4)
    for p in model.decoder.parameters():
        p.data[...] *= 300.0
    x = binary_images(3, seed=2)
    ng.manual_seed(3)
    loss, _ = model.loss(x)
    log_w, _ = numpy_log_weights(model, x.numpy(), draws(3, 4, 3, model.latent_dim))
    assert log_w.max() < -500                                   # exp(log_w) is 0 in float64
    assert loss.item() == pytest.approx(-(logsumexp(log_w, 0) - math.log(4)).mean(), rel=1e-10)


def test_gradient_is_the_normalised_importance_weighted_sum():
    r"""d L_k / d theta = sum_i w~_i d log w_i / d theta: checked on the decoder's last bias,
    where d log w_i / d b = x - sigma(logits_i)."""
    k, n = 6, 3
    model = tiny_iwae(k=k, seed=4)
    x = binary_images(n, seed=5)
    eps = draws(6, k, n, model.latent_dim)
    log_w, (mu, logvar) = numpy_log_weights(model, x.numpy(), eps)
    z = mu + np.exp(0.5 * logvar) * eps
    logits = numpy_mlp(linears(model.decoder), z)
    w_tilde = np.exp(log_w - logsumexp(log_w, axis=0))                     # (k, N)
    flat = x.numpy().reshape(n, -1)
    expected = -(w_tilde[..., None] * (flat - 1 / (1 + np.exp(-logits)))).sum(0).mean(0)
    ng.manual_seed(6)
    loss, _ = model.loss(x)
    model.zero_grad()
    loss.backward()
    np.testing.assert_allclose(linears(model.decoder)[-1].bias.grad.numpy(), expected,
                               rtol=1e-9, atol=1e-12)


def test_loss_gradient_with_respect_to_the_input():
    model = tiny_iwae(k=3)
    x = ng.tensor(np.random.default_rng(7).uniform(0.1, 0.9, (2, *SHAPE)), requires_grad=True)

    def loss(x):
        ng.manual_seed(8)                          # the same eps at every evaluation
        return model.loss(x)[0]

    assert gradcheck(loss, [x])


# ---------------------------------------------------------------- k = 1 is the VAE
def test_k_equal_one_is_the_vae_elbo_with_a_sampled_kl():
    """With the same weights and draws, the k = 1 loss is the VAE's recon plus the one-sample KL
    estimate log q(z|x) - log p(z) at the same z; that estimate averages to the VAE's analytic
    KL, so the two objectives are equal in expectation."""
    iwae = tiny_iwae(k=1, seed=9)
    vae = VAE(image_shape=SHAPE, latent_dim=2, architecture="mlp", hidden=(5,),
              activation="tanh").double()
    vae.load_state_dict(iwae.state_dict())
    x = binary_images(4, seed=10)
    ng.manual_seed(11)
    loss, _ = iwae.loss(x)
    ng.manual_seed(11)
    vae_loss, vae_logs = vae.loss(x)
    log_w, (mu, logvar) = numpy_log_weights(iwae, x.numpy(), draws(11, 1, 4, 2))
    z = mu + np.exp(0.5 * logvar) * draws(11, 1, 4, 2)[0]
    sampled_kl = (-0.5 * (logvar + (z - mu) ** 2 / np.exp(logvar)) + 0.5 * z ** 2).sum(1)
    assert loss.item() == pytest.approx(vae_logs["recon"] + sampled_kl.mean(), rel=1e-10)
    assert vae_loss.item() == pytest.approx(vae_logs["recon"] + vae_logs["kl"], rel=1e-10)
    # E[k = 1 loss] = the VAE's loss: 4,000 draws of the same batch
    repeats = 4000
    xs = ng.tensor(np.repeat(x.numpy(), repeats, 0))
    with ng.no_grad():
        ng.manual_seed(12)
        iwae_values = -iwae.log_importance_weights(xs, 1)[0].numpy().reshape(4, repeats)
        ng.manual_seed(13)
        vae_values = -vae.elbo(xs).elbo.numpy().reshape(4, repeats)
    diff = iwae_values.mean(1) - vae_values.mean(1)
    stderr = np.hypot(iwae_values.std(1), vae_values.std(1)) / math.sqrt(repeats)
    assert np.all(np.abs(diff) < 5 * stderr)


# ---------------------------------------------------------------- L_k grows with k
def test_the_bound_does_not_decrease_with_k():
    """E[L_1] <= E[L_2] <= E[L_5] <= E[L_20] (Burda et al., theorem 1), each step by more than
    three standard errors for a decoder far from the encoder's posterior."""
    model = tiny_iwae(k=1, latent_dim=1, seed=14)
    for p in model.decoder.parameters():
        p.data[...] *= 3.0
    x = binary_images(3, seed=15)
    repeats = 1500
    xs = ng.tensor(np.repeat(x.numpy(), repeats, 0))
    means, errors = [], []
    for k in (1, 2, 5, 20):
        model.k = k
        ng.manual_seed(16 + k)
        with ng.no_grad():
            log_w = model.log_importance_weights(xs, k, chunk=k).numpy()      # (k, N)
        per_image = -(logsumexp(log_w, axis=0) - math.log(k)).reshape(3, repeats)   # -L_k
        means.append(per_image.mean(1))
        errors.append(per_image.std(1, ddof=1) / math.sqrt(repeats))
    for (a, sa), (b, sb) in zip(zip(means, errors), zip(means[1:], errors[1:])):
        assert np.all(a - b > 3 * np.hypot(sa, sb))     # -L_k falls as k grows


# ---------------------------------------------------------------- training and evaluation
def test_a_few_training_steps_lower_the_bound():
    model = tiny_iwae(k=5, hidden=(16,), image_shape=(1, 8, 8))
    opts = model.configure_optimizers(lr=2e-2)
    x = stripe_patterns(32).double()
    first = model.training_step((x, None), opts)
    for _ in range(80):
        logs = model.training_step((x, None), opts)
    assert set(logs) == {"loss", "neg_iwae_bound", "neg_elbo"}
    # 64 pixels start near 64 ln 2 = 44 nats; 4 patterns need about ln 4 = 1.4
    assert first["loss"] > 35.0 and logs["loss"] < 10.0


def test_evaluate_estimates_the_likelihood_with_a_thousand_samples():
    model = tiny_iwae()
    batches = [(binary_images(3, seed=s), None) for s in range(2)]
    ng.manual_seed(17)
    metrics = model.evaluate(batches)
    assert metrics["iwae_k"] == 1000 and metrics["num_examples"] == 6
    assert metrics["iwae_nll_nats"] < metrics["neg_elbo_nats"]
    assert model.evaluate(batches, iwae_k=7)["iwae_k"] == 7


# ---------------------------------------------------------------- the registry
def test_registered_model_is_burdas_one_layer_mlp():
    spec = get_model_spec("iwae")
    model = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
    assert isinstance(model, IWAE) and model.data_transform == "binary" and model.k == 5
    widths = [(m.in_features, m.out_features) for m in linears(model.encoder)]
    assert widths == [(784, 200), (200, 200), (200, 100)]                 # mu and logvar: 2 x 50
    assert [(m.in_features, m.out_features) for m in linears(model.decoder)] == [
        (50, 200), (200, 200), (200, 784)]
    assert all(isinstance(m, ng.nn.Tanh) for m in model.encoder.net
               if not isinstance(m, (ng.nn.Linear, ng.nn.Flatten)))
    assert model.sample(2).shape == (2, 1, 28, 28)
    assert spec.summary and "\n" not in spec.summary
    assert get_model_spec("iwae").build(image_shape=(1, 28, 28), num_classes=10,
                                        **{**spec.kwargs, "k": 50}).k == 50


def test_mlp_and_conv_vaes_keep_their_state_dict_names():
    mlp = VAE(image_shape=SHAPE, architecture="mlp", hidden=(3,), latent_dim=2)
    conv = VAE(image_shape=SHAPE, channels=(2,), latent_dim=2)
    for model in (mlp, conv):
        assert all(key.startswith(("encoder.net.", "decoder.net.")) for key in model.state_dict())


# ---------------------------------------------------------------- errors
def test_clear_errors():
    with pytest.raises(ValueError, match="IWAE: k must be a positive int"):
        tiny_iwae(k=0)
    with pytest.raises(ValueError, match="IWAE: beta must be 1"):
        tiny_iwae(beta=2.0)
    with pytest.raises(ValueError, match="architecture must be 'conv' or 'mlp', got 'rnn'"):
        IWAE(image_shape=SHAPE, architecture="rnn")
    with pytest.raises(ValueError, match="hidden must be a sequence of positive ints"):
        IWAE(image_shape=SHAPE, architecture="mlp", hidden=(0,))
    with pytest.raises(ValueError, match=r"IWAE.iwae_log_likelihood: expected images of shape "
                                         r"\(N, 1, 4, 4\), got \(2, 1, 8, 8\)"):
        tiny_iwae().loss(ng.zeros(2, 1, 8, 8, dtype=ng.float64))
