"""PixelCNN and Gated PixelCNN: causality of the whole network, the exact likelihood, sampling,
completion, class conditioning, training and errors.  Tiny models on tiny images (8x8 and
smaller), so the module runs in seconds."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
from nanogen.models import get_model_spec
from nanogen.models.autoregressive import GatedPixelCNN, PixelCNN

SHAPE = (1, 8, 8)


def tiny_pixelcnn(shape=SHAPE, **kw):
    return PixelCNN(shape, **{"channels": 8, "num_blocks": 2, "head_channels": 8, **kw})


def tiny_gated(shape=SHAPE, **kw):
    # first layer 7 wide + 4 layers of 3: the receptive field covers all of an 8x8 image
    return GatedPixelCNN(shape, **{"channels": 8, "num_layers": 4, "head_channels": 8, **kw})


MODELS = {"pixelcnn": tiny_pixelcnn, "gated": tiny_gated,
          "gated-conditional": lambda shape=SHAPE, **kw: tiny_gated(shape, conditional=True, **kw)}


def labels_for(model, n, seed=0):
    if not model.conditional:
        return None
    return ng.tensor(np.random.default_rng(seed).integers(0, model.num_classes, n))


def binary_images(n, shape=SHAPE, seed=0):
    return ng.tensor((np.random.default_rng(seed).random((n, *shape)) < 0.5).astype(np.float32))


def dependence(model, x, y):
    """|d logit(pixel i) / d x(pixel j)| summed over the batch and channels: (D, D) for the
    D = H W pixels in raster order, one backward pass per output pixel."""
    _, H, W = model.image_shape
    x = x.detach().clone().requires_grad_()
    logits = model.logits(x, y)
    rows = []
    for r, c in itertools.product(range(H), range(W)):
        (g,) = ng.autograd.grad(logits[:, :, r, c].sum(), [x], retain_graph=True)
        rows.append(np.abs(g.detach().numpy()).sum(axis=(0, 1)).ravel())
    return np.stack(rows)


# ------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("name", list(MODELS))
def test_logit_of_a_pixel_ignores_that_pixel_and_every_later_one(name):
    ng.manual_seed(0)
    model = MODELS[name]()
    x = ng.rand(4, *SHAPE)                       # continuous inputs: no accidental zeros
    dep = dependence(model, x, labels_for(model, 4))
    D = dep.shape[0]
    later_or_same = np.triu(np.ones((D, D), bool))            # j >= i
    assert np.all(dep[later_or_same] == 0.0), "a logit depends on its own or a later pixel"
    W = SHAPE[2]
    for i in range(1, D):
        assert dep[i, i - 1] > 0 if i % W else True            # the pixel to the left
        if i >= W:
            assert dep[i, i - W] > 0                           # the pixel above


@pytest.mark.parametrize("name", ["gated", "gated-conditional"])
def test_gated_pixelcnn_has_no_blind_spot(name):
    """Every earlier pixel -- up-right of i included -- influences pixel i's logit."""
    ng.manual_seed(1)
    model = MODELS[name]()
    dep = dependence(model, ng.rand(4, *SHAPE), labels_for(model, 4))
    earlier = np.tril(np.ones(dep.shape, bool), k=-1)         # j < i
    assert np.all(dep[earlier] > 0)
    up_right = [(r * 8 + c, (r - 1) * 8 + c + 1) for r in range(1, 8) for c in range(7)]
    assert all(dep[i, j] > 0 for i, j in up_right)


def test_pixelcnn_has_the_blind_spot_the_gated_model_removes():
    """Stacked mask-B 3x3 convolutions after a 3x3 mask A never see up-right beyond their
    reach: pixel (1, 0) sees (0, 1) but pixel (2, 0) cannot see (0, 3) through one block."""
    ng.manual_seed(0)
    model = tiny_pixelcnn(first_kernel=3, num_blocks=1)
    dep = dependence(model, ng.rand(4, *SHAPE), None)
    assert dep[1 * 8 + 0, 0 * 8 + 1] > 0
    assert dep[2 * 8 + 0, 0 * 8 + 3] == 0


@pytest.mark.parametrize("name", list(MODELS))
def test_logits_of_the_top_rows_need_only_the_top_rows(name):
    """What sampling relies on: no layer looks down, so running the network on rows 0..r-1
    gives the full image's logits there."""
    ng.manual_seed(0)
    model = MODELS[name]()
    x = binary_images(3)
    y = labels_for(model, 3)
    full = model(x, y).detach().numpy()
    for r in (1, 4, 7):
        np.testing.assert_allclose(model(x[:, :, :r], y).detach().numpy(), full[:, :, :r], atol=1e-5)


# ------------------------------------------------------------------------------ likelihood
def bernoulli_log_prob_np(logit, x):
    return x * logit - np.logaddexp(0.0, logit)


@pytest.mark.parametrize("name", list(MODELS))
def test_log_prob_is_the_sum_of_conditionals_computed_one_pixel_at_a_time(name):
    """log p(x) = sum_i log p(x_i | x_<i), each conditional from an image whose pixels from i
    on are replaced by noise."""
    ng.manual_seed(0)
    model = MODELS[name]()
    x = binary_images(2, seed=3)
    y = labels_for(model, 2)
    xs = x.detach().numpy()
    rng = np.random.default_rng(7)
    _, H, W = SHAPE
    total = np.zeros(2)
    for r, c in itertools.product(range(H), range(W)):
        garbled = xs.copy().reshape(2, 1, -1)
        garbled[:, :, r * W + c:] = rng.random(garbled[:, :, r * W + c:].shape) < 0.5
        logit = model.logits(ng.tensor(garbled.reshape(xs.shape)), y).detach().numpy()[:, :, r, c]
        total += bernoulli_log_prob_np(logit.astype(np.float64), xs[:, :, r, c]).sum(1)
    np.testing.assert_allclose(model.log_prob(x, y).detach().numpy(), total, rtol=1e-5, atol=1e-4)


@given(model_name=st.sampled_from(list(MODELS)),
       hw=st.sampled_from([(1, 1), (1, 4), (2, 2), (2, 3), (3, 2)]),
       seed=st.integers(0, 2 ** 16))
def test_probabilities_of_all_binary_images_sum_to_one(model_name, hw, seed):
    ng.manual_seed(seed)
    shape = (1, *hw)
    model = MODELS[model_name](shape, channels=4, head_channels=4)
    D = hw[0] * hw[1]
    every = np.array(list(itertools.product([0.0, 1.0], repeat=D)), np.float32)
    x = ng.tensor(every.reshape(-1, *shape))
    y = None if not model.conditional else ng.tensor(np.full(len(every), seed % 10))
    log_p = model.log_prob(x, y).detach().numpy().astype(np.float64)
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-4)


def test_loss_is_the_mean_nll_and_evaluate_reports_it_in_nats_and_bits():
    ng.manual_seed(0)
    model = tiny_pixelcnn()
    x = binary_images(6)
    nll = -model.log_prob(x).detach().numpy()
    loss, logs = model.loss(x)
    assert loss.item() == pytest.approx(nll.mean(), rel=1e-5) and logs == {}
    metrics = model.evaluate([(x[:4], None), (x[4:], None)])
    assert metrics["num_examples"] == 6
    assert metrics["nll_nats"] == pytest.approx(nll.mean(), rel=1e-5)
    assert metrics["bits_per_dim"] == pytest.approx(nll.mean() / (64 * np.log(2)), rel=1e-5)


# ------------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("name", list(MODELS))
def test_samples_are_binary_images_reproducible_under_manual_seed(name):
    ng.manual_seed(0)
    model = MODELS[name]()
    ng.manual_seed(5)
    a = model.sample(3).detach().numpy()
    ng.manual_seed(5)
    b = model.sample(3).detach().numpy()
    c = model.sample(3).detach().numpy()
    assert a.shape == (3, *SHAPE)
    assert set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert model.training                         # sampling restores the mode it found


def test_samples_follow_the_model_distribution():
    """On a 2x2 image (16 outcomes) the empirical frequencies of 4,000 samples match
    exp(log_prob) within a total-variation distance of 0.05."""
    ng.manual_seed(0)
    shape = (1, 2, 2)
    model = tiny_gated(shape, channels=4)
    with ng.no_grad():                            # a sharper, non-uniform distribution
        for p in model.head.parameters():
            p.copy_(p * 8.0)
    every = np.array(list(itertools.product([0.0, 1.0], repeat=4)), np.float32)
    p_model = np.exp(model.log_prob(ng.tensor(every.reshape(-1, *shape))).detach().numpy())
    samples = model.sample(4000).detach().numpy().reshape(4000, 4)
    codes = samples @ (2.0 ** np.arange(3, -1, -1))
    p_emp = np.bincount(codes.astype(int), minlength=16) / 4000.0
    assert 0.5 * np.abs(p_emp - p_model).sum() < 0.05
    assert p_model.max() > 2.0 / 16               # the check is not against a uniform law


@pytest.mark.parametrize("name", list(MODELS))
def test_complete_keeps_the_given_rows_and_draws_the_rest(name):
    ng.manual_seed(0)
    model = MODELS[name]()
    x = binary_images(4, seed=2)
    y = labels_for(model, 4)
    done = model.complete(x, 3, y).detach().numpy()
    np.testing.assert_array_equal(done[:, :, :3], x.detach().numpy()[:, :, :3])
    assert set(np.unique(done)) <= {0.0, 1.0}
    assert not np.array_equal(done[:, :, 3:], x.detach().numpy()[:, :, 3:])   # 320 pixels redrawn
    np.testing.assert_array_equal(model.complete(x, 8, y).detach().numpy(), x.detach().numpy())
    np.testing.assert_array_equal(x.detach().numpy(), binary_images(4, seed=2).detach().numpy())  # x untouched


def test_figures_shows_half_images_their_completions_and_the_originals():
    ng.manual_seed(0)
    model = tiny_pixelcnn()
    x = binary_images(10)
    grid, nrow = model.figures(x, None)["completions"]
    assert nrow == 6 and tuple(grid.shape) == (8 * 6, *SHAPE)
    g = grid.detach().numpy().reshape(8, 6, *SHAPE)
    np.testing.assert_array_equal(g[:, -1], x.detach().numpy()[:8])                     # originals
    for col in range(5):                                                        # top halves
        np.testing.assert_array_equal(g[:, col, :, :4], x.detach().numpy()[:8, :, :4])
    assert np.all(g[:, 0, :, 4:] == 0.5)                                       # still hidden


# ---------------------------------------------------------------------------- conditioning
def test_class_conditioning_changes_the_logits_and_the_samples():
    ng.manual_seed(0)
    model = tiny_gated(conditional=True)
    x = binary_images(2)
    a = model.logits(x, ng.tensor([0, 0])).detach().numpy()
    b = model.logits(x, ng.tensor([3, 3])).detach().numpy()
    assert np.abs(a - b).max() > 1e-3
    ng.manual_seed(1)
    s0 = model.sample(4, ng.tensor([0, 0, 0, 0])).detach().numpy()
    ng.manual_seed(1)
    s1 = model.sample(4, ng.tensor([1, 1, 1, 1])).detach().numpy()
    assert not np.array_equal(s0, s1)
    ng.manual_seed(1)
    default = model.sample(4).detach().numpy()             # classes 0, 1, 2, 3 in turn
    ng.manual_seed(1)
    np.testing.assert_array_equal(default, model.sample(4, ng.tensor([0, 1, 2, 3])).detach().numpy())


def test_unconditional_models_ignore_labels():
    ng.manual_seed(0)
    for model in (tiny_pixelcnn(), tiny_gated()):
        x = binary_images(2)
        np.testing.assert_array_equal(model.logits(x, ng.tensor([0, 1])).detach().numpy(),
                                      model.logits(x).detach().numpy())


# -------------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", list(MODELS))
def test_a_few_adam_steps_lower_the_nll(name):
    """Two fixed striped 8x8 patterns (44.4 nats each under the uniform law) become cheap."""
    ng.manual_seed(0)
    model = MODELS[name]()
    stripes = np.zeros((8, 1, 8, 8), np.float32)
    stripes[:4, :, ::2] = 1.0                     # horizontal stripes
    stripes[4:, :, :, ::2] = 1.0                  # vertical stripes
    x, y = ng.tensor(stripes), ng.tensor(np.array([0] * 4 + [1] * 4))
    optimizers = model.configure_optimizers(1e-2)
    first = model.training_step((x, y), optimizers)["loss"]
    for _ in range(40):
        last = model.training_step((x, y), optimizers)["loss"]
    assert first > 30.0 and last < 15.0


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", list(MODELS))
def test_wrong_image_shapes_raise_a_clear_error(name):
    model = MODELS[name]()
    y = labels_for(model, 2)
    for bad in (ng.zeros(2, 1, 8, 7), ng.zeros(2, 3, 8, 8), ng.zeros(1, 8, 8)):
        for call in (lambda: model.log_prob(bad, y), lambda: model.complete(bad, 2, y)):
            with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 8, 8\)"):
                call()
    with pytest.raises(ValueError, match="rows must be an int in"):
        model.complete(binary_images(2), 9, y)
    with pytest.raises(ValueError, match="n must be a positive int"):
        model.sample(0)


def test_conditional_model_checks_its_labels():
    model = tiny_gated(conditional=True)
    x = binary_images(2)
    with pytest.raises(ValueError, match="pass the labels y"):
        model.log_prob(x)
    with pytest.raises(ValueError, match=r"expected 2 labels"):
        model.log_prob(x, ng.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        model.log_prob(x, ng.tensor([0, 10]))
    with pytest.raises(ValueError, match="integer class indices"):
        model.log_prob(x, ng.tensor([0.5, 1.0]))
    np.testing.assert_array_equal(model.log_prob(x, [2, 1]).detach().numpy(),
                                  model.log_prob(x, ng.tensor([2, 1])).detach().numpy())


def test_bad_architectures_raise_a_clear_error():
    with pytest.raises(ValueError, match="channels must be an even number"):
        PixelCNN(SHAPE, channels=7)
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\)"):
        GatedPixelCNN((8, 8))
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        GatedPixelCNN(SHAPE, kernel_size=4)


# -------------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name, cls", [("pixelcnn", PixelCNN), ("gated-pixelcnn", GatedPixelCNN)])
def test_registered_with_a_build_that_takes_image_shape_and_classes(name, cls):
    spec = get_model_spec(name)
    model = spec.build(image_shape=SHAPE, num_classes=10, **{**spec.kwargs, "channels": 4})
    assert isinstance(model, cls) and model.data_transform == "binary"
    assert spec.batch_size == 64 and spec.summary
