"""Every registered model on the simulated device "cuda": one training step and sampling give
the CPU's numbers.

Tiny shapes and widths (1x4x4 images, a few channels): numba's simulator runs a Python thread
per CUDA thread, so each kernel launch costs milliseconds whatever its size.  A model is built
twice from one seed (so the weights are equal), one copy moved to "cuda"; both take one training
step on the same batch, and must log the same losses, hold the same gradients and the same
weights afterwards.  Then the "cuda" model gets the CPU model's weights and both sample from
one seed: the same images, in [0, 1].

Random numbers: some models draw part of a step on the host and part on their device (DDPM's
timesteps and its noise; the VAE's shifts and its eps).  A real GPU has its own generator, and
so does the simulated device, so the two runs would draw the same numbers in a different
order.  The comparison therefore puts every draw on the CPU's generator (:func:`one_stream`);
tests/cuda/test_gpu_branches.py checks the device generator itself, and
:func:`test_sampling_draws_from_the_device_generator` a model sampling from it.
"""
import numpy as np
import pytest

import nanogen as ng
import nanogen.random as random_module
from nanogen import simulated_cupy
from nanogen.models import all_models
from nanogen.testing import assert_close

SHAPE = (1, 4, 4)
LR = 1e-3
# narrow networks: the simulator's cost is per kernel launch and per thread
TINY = {
    "aae": {"hidden": [4], "disc_hidden": [3], "latent_dim": 2},
    "aae-mixture": {"hidden": [4], "disc_hidden": [3]},
    "ae": {"channels": [2, 2], "code_dim": 2},
    "beta-vae": {"channels": [2, 2], "latent_dim": 2},
    "cvae": {"channels": [2, 2], "latent_dim": 2},
    "dbn": {"hidden_sizes": [3, 2], "sample_steps": 2},
    "dbm": {"hidden_sizes": [3, 2], "pretrain_steps": 0, "num_chains": 2, "mean_field_steps": 2,
            "sample_steps": 2},
    "dcgan": {"channels": [2, 2], "latent_dim": 2},
    "denoising-ae": {"channels": [2, 2], "code_dim": 2},
    "ddpm": {"channels": 2, "channel_mults": [1], "num_res_blocks": 1, "timesteps": 2,
             "groups": 1, "heads": 1, "attention_levels": []},
    "ddpm-cfg": {"channels": 2, "channel_mults": [1], "num_res_blocks": 1, "timesteps": 2,
                 "groups": 1, "heads": 1, "attention_levels": []},
    "improved-ddpm": {"channels": 2, "channel_mults": [1], "num_res_blocks": 1, "timesteps": 2,
                      "groups": 1, "heads": 1, "attention_levels": [],
                      "timestep_sampling": "importance"},
    "fvbn": {},
    "gan": {"hidden": [4]},
    "gan-minimax": {"hidden": [4]},
    "cgan": {"channels": [2, 2], "latent_dim": 2, "label_dim": 2},
    "acgan": {"channels": [2, 2], "latent_dim": 2, "label_dim": 2},
    "infogan": {"channels": [2, 2], "latent_dim": 2, "q_hidden": 2, "num_categories": 3,
                "num_continuous": 1},
    "ebgan": {"channels": [2, 2], "latent_dim": 2, "code_dim": 2},
    "began": {"channels": [2, 2], "latent_dim": 2, "code_dim": 2},
    "bigan": {"channels": [2, 2], "latent_dim": 2, "joint_hidden": 4},
    "lsgan": {"channels": [2, 2], "latent_dim": 2},
    "wgan": {"channels": [2, 2], "latent_dim": 2, "k": 1},         # one critic step will do
    "wgan-gp": {"channels": [2, 2], "latent_dim": 2, "k": 1},
    "dragan": {"channels": [2, 2], "latent_dim": 2},
    "biggan": {"channels": [2, 2], "latent_dim": 3, "shared_dim": 2},
    "lapgan": {"latent_dim": 2, "hidden": [4], "disc_hidden": [4], "g_channels": [2],
               "kernel_size": 3, "channels": [2, 2]},
    "progan": {"channels": [2, 2], "latent_dim": 2, "start_resolution": 2},
    "sngan": {"channels": [2, 2], "latent_dim": 2},
    "stylegan": {"channels": [2, 2], "latent_dim": 2},
    "gated-pixelcnn": {"channels": 2, "num_layers": 1, "head_channels": 2},
    "iwae": {"hidden": [4], "latent_dim": 2, "k": 3},
    "ladder": {"hidden": [3, 2], "denoising_weights": 1.0},
    "ladder-supervised": {"hidden": [3, 2]},
    "made": {"hidden_sizes": [4]},
    "nade": {"hidden": 4},
    "pixelcnn": {"channels": 2, "num_blocks": 1, "head_channels": 2},
    "pixelrnn-diagonal": {"hidden": 2, "num_layers": 1},
    "pixelrnn-row": {"hidden": 2, "num_layers": 1},
    "sparse-coding": {"patch_size": 2, "num_atoms": 3, "num_iters": 3, "patches_per_image": 2},
    "sparse-coding-digits": {"num_atoms": 3, "num_iters": 3},
    "sparse-coding-hierarchical": {"patch_size": 2, "pool": 2, "num_atoms": 2, "num_atoms2": 2,
                                   "num_iters": 3, "first_layer_steps": 1},
    "pixelvae": {"channels": [2, 2], "latent_dim": 2, "cond_channels": 2, "pixel_channels": 2,
                 "num_blocks": 1, "head_channels": 2},
    "rbm": {"num_hidden": 3, "sample_steps": 2},
    "sparse-ae": {"code_dim": 3},
    "stacked-ae": {"hidden_sizes": [3, 2], "pretrain_steps": 1},
    "vae": {"channels": [2, 2], "latent_dim": 2},
    "vae-gan": {"channels": [2, 2], "disc_channels": [2, 2], "latent_dim": 2},
    "vae-2d": {"channels": [2, 2]},
}
MODELS = sorted(all_models())


@pytest.fixture
def one_stream(monkeypatch):
    """Every draw, whatever its device, from the CPU's generator (see the module docstring)."""
    monkeypatch.setattr(random_module, "generator", lambda device="cpu": random_module._cpu)


def test_every_registered_model_has_a_tiny_configuration_here():
    assert sorted(TINY) == MODELS


def build(name, device):
    spec = all_models()[name]
    ng.manual_seed(0)
    model = spec.build(image_shape=SHAPE, num_classes=10, **{**spec.kwargs, **TINY[name]})
    return model.to(device)


def batch(model, device):
    """A fixed batch for one training step, scaled as the model's data transform says."""
    n = 2 * model.batches_per_step
    x = np.random.default_rng(3).random((n,) + SHAPE).astype(np.float32)
    if model.data_transform == "binary":
        x = (x < 0.5).astype(np.float32)
    elif model.data_transform == "symmetric":
        x = 2 * x - 1
    y = np.arange(n) % 10
    return ng.tensor(x, device=device), ng.tensor(y, device=device)


def train_step(model, device):
    optimizers = model.configure_optimizers(LR)
    model.train()
    ng.manual_seed(1)
    logs = model.training_step(batch(model, device), optimizers)
    params = {k: p.detach().to("cpu").numpy().copy() for k, p in model.named_parameters()}
    grads = {k: p.grad.to("cpu").numpy() for k, p in model.named_parameters()
             if p.grad is not None}
    return logs, params, grads


def draw_samples(model, n=2):
    model.eval()
    ng.manual_seed(2)
    with ng.no_grad():
        return model.sample(n)


@pytest.mark.parametrize("name", MODELS)
def test_model_trains_a_step_and_samples_on_cuda_like_on_the_cpu(name, one_stream):
    cpu = build(name, "cpu")
    dev = build(name, "cuda")
    initial = {k: p.detach().numpy().copy() for k, p in cpu.named_parameters()}
    assert all(p.device == "cuda" for p in dev.parameters())

    logs_cpu, params_cpu, grads_cpu = train_step(cpu, "cpu")
    with simulated_cupy.recording() as served:
        logs_dev, params_dev, grads_dev = train_step(dev, "cuda")
    assert served["cupy.matmul"] > 0, f"{name}: no GEMM of the step ran on the device"
    assert all(p.device == "cuda" for p in dev.parameters())

    assert logs_dev.keys() == logs_cpu.keys()
    for key, value in logs_cpu.items():
        if isinstance(value, float):
            assert np.isfinite(logs_dev[key])
            assert logs_dev[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert grads_dev.keys() == grads_cpu.keys() and grads_cpu
    for key, g in grads_cpu.items():
        assert_close(grads_dev[key], g, rtol=1e-3, atol=1e-5 * max(1.0, np.abs(g).max()),
                     msg=f"{name}: gradient of {key}")
    # Adam's first step moves each weight by about LR: equal steps agree far closer than that
    assert any(not np.array_equal(params_dev[k], initial[k]) for k in initial), \
        f"{name}: the step changed no weight on cuda"
    # ... except where the gradient is rounding around 0 (a bias before an instance norm, say):
    # there Adam's first step is +-LR by the sign of the rounding, which the devices may differ in
    for key, p in params_cpu.items():
        g = grads_cpu.get(key)
        settled = (np.ones(p.shape, bool) if g is None
                   else np.abs(g) > 1e-5 * max(1.0, np.abs(g).max()))
        assert_close(np.where(settled, params_dev[key], p), p, rtol=0, atol=LR / 100,
                     msg=f"{name}: weight {key}")

    dev.load_state_dict(cpu.state_dict())
    if not cpu.can_sample:             # a classifier (the ladder): compare its codes instead
        cpu.eval(), dev.eval()
        with ng.no_grad():
            want, got = cpu.codes(batch(cpu, "cpu")[0]), dev.codes(batch(dev, "cuda")[0])
        assert got.device == "cuda"
        assert_close(got.to("cpu").numpy(), want.numpy(), rtol=1e-4, atol=1e-5,
                     msg=f"{name}: codes")
        return
    want = draw_samples(cpu)
    with simulated_cupy.recording() as served:
        got = draw_samples(dev)
    assert served["cupy.matmul"] > 0, f"{name}: no GEMM of sampling ran on the device"
    assert got.device == "cuda" and tuple(got.shape) == (2,) + SHAPE
    got = got.to("cpu").numpy()
    assert np.isfinite(got).all() and got.min() >= 0 and got.max() <= 1
    assert_close(got, want.numpy(), rtol=1e-4, atol=1e-5, msg=f"{name}: samples")


def test_sampling_draws_from_the_device_generator():
    """Without :func:`one_stream`: a GAN's latents come from the device's own generator, which
    a seed starts where the CPU's starts (NumPy's PCG64 under the simulator)."""
    cpu = build("dcgan", "cpu")
    dev = build("dcgan", "cuda")
    want = draw_samples(cpu).numpy()
    with simulated_cupy.recording() as served:
        got = draw_samples(dev)
    assert served["cupy.random.default_rng"] == 1
    assert_close(got.to("cpu"), want, rtol=1e-5, atol=1e-6)
