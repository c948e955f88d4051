"""FVBN, NADE, MADE and PixelRNN (Row LSTM, Diagonal BiLSTM): causality of every model (and of
every MADE mask set), exact normalisation, the formulas each model is built from (the NADE
recursion, the MADE mask rule, the skew), sampling, completion, resuming MADE's mask schedule,
and errors.  Tiny models on tiny images: the module runs in seconds."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
from nanogen.models import get_model_spec
from nanogen.models.autoregressive import FVBN, MADE, NADE, PixelRNN
from nanogen.models.autoregressive import pixelrnn
from nanogen.models.autoregressive.made import made_masks
from tests.strategies import examples
from tests.test_pixelcnn import binary_images

MODELS = {
    "fvbn": lambda shape: FVBN(shape),
    "nade": lambda shape: NADE(shape, hidden=6),
    "made": lambda shape: MADE(shape, hidden_sizes=[7, 7]),
    "made-3-masks": lambda shape: MADE(shape, hidden_sizes=[7], num_masks=3),
    "made-no-direct": lambda shape: MADE(shape, hidden_sizes=[7, 7], direct=False),
    "pixelrnn-row": lambda shape: PixelRNN(shape, variant="row", hidden=3, num_layers=2,
                                           first_kernel=3, head_channels=16),
    "pixelrnn-diagonal": lambda shape: PixelRNN(shape, variant="diagonal", hidden=3,
                                                num_layers=2, first_kernel=3, head_channels=16),
}
SHAPE = (1, 5, 4)


def build(name, shape=SHAPE, seed=0):
    """A model whose weights are all away from zero (FVBN's and MADE's direct connections
    start at 0, which would make every dependence test pass trivially)."""
    ng.manual_seed(seed)
    model = MODELS[name](shape)
    rng = np.random.default_rng(seed)
    with ng.no_grad():
        for p in model.parameters():
            if not np.any(p.detach().numpy()):
                p.copy_(ng.tensor(rng.normal(0.0, 0.5, p.shape).astype(np.float32)))
    return model


def order_position(model):
    """The position in the drawing order of each pixel (raster order unless a MADE says)."""
    _, H, W = model.image_shape
    order = [r * W + c for r, c in model.drawing_order(0)]
    position = np.empty(H * W, int)
    position[order] = np.arange(H * W)
    return position


def dependence(model, x):
    """|d logit(pixel i) / d x(pixel j)| summed over the batch and channels, (P, P)."""
    _, H, W = model.image_shape
    x = x.detach().clone().requires_grad_()
    logits = model.logits(x)
    rows = []
    for r, c in itertools.product(range(H), range(W)):
        (g,) = ng.autograd.grad(logits[:, :, r, c].sum(), [x], retain_graph=True)
        rows.append(np.abs(g.detach().numpy()).sum(axis=(0, 1)).ravel())
    return np.stack(rows)


def assert_causal(model, shape):
    """The logit of pixel i reads no pixel j drawn at or after i, and does read earlier ones."""
    dep = dependence(model, ng.rand(3, *shape))
    pos = order_position(model)
    not_before = pos[None, :] >= pos[:, None]                 # j drawn at or after i
    assert np.all(dep[not_before] == 0.0), "a logit depends on its own or a later pixel"
    assert np.count_nonzero(dep[~not_before]) > 0              # and it reads something


# ------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("shape", [SHAPE, (2, 3, 3)])
def test_no_logit_reads_its_own_or_a_later_pixel(name, shape):
    model = build(name, shape)
    assert_causal(model, shape)


def test_every_resampled_made_mask_set_is_causal_in_its_own_order():
    model = build("made-3-masks", SHAPE)
    orders = []
    for k in range(3):
        model.use_masks(k)
        assert_causal(model, SHAPE)
        orders.append(tuple(order_position(model)))
    assert len(set(orders)) == 3                               # three different orderings


def test_the_diagonal_bilstm_needs_its_shift(monkeypatch):
    """Without shifting the right-to-left direction down one row, a pixel reads its own row to
    the right -- the causality test above must catch it."""
    monkeypatch.setattr(pixelrnn.DiagonalBiLSTM, "forward", lambda self, x: (
        self.left_to_right(x) + ng.flip(self.right_to_left(ng.flip(x, (3,))), (3,))))
    model = build("pixelrnn-diagonal")
    with pytest.raises(AssertionError, match="own or a later pixel"):
        assert_causal(model, SHAPE)


def test_the_diagonal_bilstm_sees_the_whole_row_above():
    """Its point over the Row LSTM: one layer already reaches every pixel of the rows above
    (up-right included), where the Row LSTM's triangle misses the far up-right."""
    shape = (1, 4, 6)
    diagonal = build("pixelrnn-diagonal", shape)
    row = build("pixelrnn-row", shape)
    i, j = 3 * 6 + 0, 1 * 6 + 5            # pixel (3, 0) and pixel (1, 5): two rows up, far right
    assert dependence(diagonal, ng.rand(2, *shape))[i, j] > 0
    assert dependence(row, ng.rand(2, *shape))[i, j] == 0


@pytest.mark.parametrize("name", ["pixelrnn-row", "pixelrnn-diagonal"])
def test_pixelrnn_logits_of_the_top_rows_need_only_the_top_rows(name):
    """What the shared raster sampler relies on: no layer looks down."""
    model = build(name)
    x = binary_images(2, SHAPE)
    full = model(x).detach().numpy()
    for r in (1, 3):
        np.testing.assert_allclose(model(x[:, :, :r]).detach().numpy(), full[:, :, :r],
                                   atol=1e-6)


# ----------------------------------------------------------------------------- likelihood
@given(name=st.sampled_from(list(MODELS)),
       hw=st.sampled_from([(1, 1), (2, 2), (2, 3), (3, 2)]),
       seed=st.integers(0, 2 ** 16))
@examples(1)
def test_probabilities_of_all_binary_images_sum_to_one(name, hw, seed):
    model = build(name, (1, *hw), seed)
    D = hw[0] * hw[1]
    every = np.array(list(itertools.product([0.0, 1.0], repeat=D)), np.float32)
    log_p = model.log_prob(ng.tensor(every.reshape(-1, 1, *hw))).detach().numpy()
    assert np.exp(log_p.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-4)
    if isinstance(model, MADE):                       # the ensemble is a density too
        ens = model.ensemble_log_prob(ng.tensor(every.reshape(-1, 1, *hw))).detach().numpy()
        assert np.exp(ens.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-4)


def test_fvbn_is_one_logistic_regression_per_pixel_on_the_earlier_pixels():
    model = build("fvbn")
    W = model.regressions.weight.detach().numpy().astype(np.float64)
    b = model.regressions.bias.detach().numpy().astype(np.float64)
    x = binary_images(3, SHAPE).numpy().reshape(3, -1).astype(np.float64)
    expected = np.stack([b[d] + x[:, :d] @ W[d, :d] for d in range(x.shape[1])], 1)
    logits = model(ng.tensor(x.reshape(3, *SHAPE).astype(np.float32))).detach().numpy()
    np.testing.assert_allclose(logits.reshape(3, -1), expected, rtol=1e-5, atol=1e-5)


def test_nade_logits_are_the_d_separate_hidden_layers_of_its_definition():
    """h_d = sigma(c + W[:, <d] x_<d), logit_d = b_d + V_d h_d, computed the O(H D^2) way."""
    model = build("nade")
    W, c, V, b = (p.detach().numpy().astype(np.float64) for p in (model.W, model.c, model.V,
                                                                   model.b))
    x = binary_images(3, SHAPE).numpy().reshape(3, -1).astype(np.float64)
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))                                   # noqa: E731
    expected = np.stack([b[d] + sig(c + x[:, :d] @ W[:, :d].T) @ V[d]
                         for d in range(x.shape[1])], 1)
    logits = model(ng.tensor(x.reshape(3, *SHAPE).astype(np.float32))).detach().numpy()
    np.testing.assert_allclose(logits.reshape(3, -1), expected, rtol=1e-5, atol=1e-5)


def test_made_masks_follow_the_connectivity_rule():
    """M^l[k, k'] = [m^l(k) >= m^(l-1)(k')], M^V[d, k] = [m^0(d) > m^L(k)], A = [m^0(d) >
    m^0(d')]: recovered from the masks themselves, every hidden unit reaches some input, and
    the product of the masks connects output d only to inputs before it in the order."""
    rng = np.random.default_rng(3)
    order = rng.permutation(6)
    hidden, output, direct = made_masks(2, 6, (9, 8), order, np.random.default_rng(0))
    position = np.empty(6, int)
    position[order] = np.arange(1, 7)
    m0 = np.tile(position, 2)
    assert np.array_equal(direct, (m0[:, None] > m0[None, :]).astype(np.float32))
    path = output @ hidden[1] @ hidden[0]                      # (D, D): paths output <- input
    assert np.all(path[m0[:, None] <= m0[None, :]] == 0)
    assert np.all(hidden[0].sum(1) > 0) and np.all(hidden[1].sum(1) > 0)
    degrees = hidden[0].sum(1)                                 # m^1(k) = #inputs it may read / C
    assert set(np.unique(degrees // 2).astype(int)) <= set(range(1, 6))


def test_made_ensemble_is_the_log_mean_of_its_mask_probabilities_and_evaluate_reports_both():
    model = build("made-3-masks")
    x = binary_images(4, SHAPE)
    per_mask = np.stack([(model.use_masks(k), model.log_prob(x).detach().numpy())[1]
                         for k in range(3)]).astype(np.float64)
    model.use_masks(1)
    ens = np.log(np.exp(per_mask).mean(0))
    np.testing.assert_allclose(model.ensemble_log_prob(x).detach().numpy(), ens, rtol=1e-5)
    assert int(model.mask_state.item()) == 1                   # restored
    metrics = model.evaluate([(x, None)])
    assert metrics["nll_nats"] == pytest.approx(-ens.mean(), rel=1e-5)
    assert metrics["nll_nats_one_mask"] == pytest.approx(-per_mask.mean(), rel=1e-5)
    assert metrics["nll_nats"] < metrics["nll_nats_one_mask"]  # Jensen: the mixture is better


def test_made_switches_masks_every_k_steps_and_resumes_the_schedule():
    ng.manual_seed(0)
    model = MADE(SHAPE, hidden_sizes=[7], num_masks=3, resample_every=2)
    opts = model.configure_optimizers(1e-3)
    x = binary_images(4, SHAPE)
    used = [model.training_step((x, None), opts)["mask"] for _ in range(5)]
    assert used == [0, 0, 1, 1, 2]
    state = model.state_dict()
    resumed = MADE(SHAPE, hidden_sizes=[7], num_masks=3, resample_every=2)
    resumed.load_state_dict(state)
    assert int(resumed.steps_done.item()) == 5 and int(resumed.mask_state.item()) == 2
    np.testing.assert_array_equal(resumed.output_layer.mask.numpy(),
                                  model.output_layer.mask.numpy())
    assert resumed.training_step((x, None), resumed.configure_optimizers(1e-3))["mask"] == 2
    assert model.training_step((x, None), opts)["mask"] == 2


# ------------------------------------------------------------------------------- sampling
def test_nade_recursive_sampler_draws_what_the_generic_sampler_draws():
    """The O(HD) recursion and one full pass per pixel (the base class's sampler) consume the
    same random numbers for the same conditionals, so they draw the same images."""
    model = build("nade")
    ng.manual_seed(11)
    fast = model.sample(6).numpy()
    ng.manual_seed(11)
    slow = super(NADE, model)._draw_rows(ng.zeros(6, *SHAPE), 0, None, "sample").numpy()
    np.testing.assert_array_equal(fast, slow)
    x = binary_images(3, SHAPE, seed=4)
    ng.manual_seed(12)
    fast = model.complete(x, 2).numpy()
    ng.manual_seed(12)
    kept = x.clone()
    kept[:, :, 2:] = 0.0
    slow = super(NADE, model)._draw_rows(kept, 2, None, "complete").numpy()
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("name", ["fvbn", "made", "made-no-direct"])
@given(data=st.data())
def test_the_rows_a_sampler_computes_are_the_full_layers_rows(name, data):
    """FVBN and MADE compute a pixel's logits from those output rows alone (O(D) instead of
    O(D^2) a pass): the values, and the gradients through them, are the full layer's."""
    shape = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)))
    model = build(name, shape)
    D = int(np.prod(shape))
    v = ng.tensor(binary_images(2, shape, seed=data.draw(st.integers(0, 99))).numpy()
                  .reshape(2, D))
    entries = np.asarray(data.draw(st.lists(st.integers(0, D - 1), min_size=1, max_size=4)))
    fast = model.entry_logits(v, entries)
    full = model.vector_logits(v)[:, entries]
    np.testing.assert_allclose(fast.detach().numpy(), full.detach().numpy(), rtol=1e-6,
                               atol=1e-6)
    weights = ng.tensor(np.random.default_rng(1).normal(size=fast.shape).astype(np.float32))
    grads = [ng.autograd.grad((out * weights).sum(), list(model.parameters()),
                              allow_unused=True) for out in (fast, full)]
    for g_fast, g_full in zip(*grads):
        if g_full is not None:
            np.testing.assert_allclose(g_fast.numpy(), g_full.numpy(), rtol=1e-5, atol=1e-6)
    r, c = divmod(int(entries[0]) % (shape[1] * shape[2]), shape[2])
    x = v.reshape(2, *shape)
    np.testing.assert_allclose(model.pixel_logits(x, r, c).detach().numpy(),
                               model(x)[:, :, r, c].detach().numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["fvbn", "nade", "made", "pixelrnn-row", "pixelrnn-diagonal"])
def test_samples_are_binary_and_completions_keep_the_given_rows(name):
    model = build(name)
    ng.manual_seed(3)
    a = model.sample(3).numpy()
    assert a.shape == (3, *SHAPE) and set(np.unique(a)) <= {0.0, 1.0}
    x = binary_images(3, SHAPE, seed=2)
    done = model.complete(x, 2).numpy()
    np.testing.assert_array_equal(done[:, :, :2], x.numpy()[:, :, :2])
    assert model.training                                       # mode restored


def test_samples_follow_the_model_distribution():
    """A Diagonal BiLSTM on 2x2 images: 4,000 samples against exp(log_prob), total variation
    under 0.05."""
    shape = (1, 2, 2)
    model = build("pixelrnn-diagonal", shape)
    with ng.no_grad():
        for p in model.head.parameters():
            p.copy_(p * 6.0)
    every = np.array(list(itertools.product([0.0, 1.0], repeat=4)), np.float32)
    p_model = np.exp(model.log_prob(ng.tensor(every.reshape(-1, *shape))).detach().numpy())
    ng.manual_seed(0)
    samples = model.sample(4000).numpy().reshape(4000, 4)
    p_emp = np.bincount((samples @ (2.0 ** np.arange(3, -1, -1))).astype(int), minlength=16)
    assert 0.5 * np.abs(p_emp / 4000.0 - p_model).sum() < 0.05
    assert p_model.max() > 2.0 / 16


def test_an_order_agnostic_made_samples_in_its_order_and_refuses_completions():
    model = build("made-3-masks")
    model.use_masks(2)
    assert [p for p in model.drawing_order(0)] != [(r, c) for r in range(5) for c in range(4)]
    assert model.sample(2).shape == (2, *SHAPE)
    with pytest.raises(ValueError, match="orders the pixels at random"):
        model.complete(binary_images(2, SHAPE), 2)
    assert model.figures(binary_images(2, SHAPE)) == {}


# --------------------------------------------------------------------------------- pieces
def test_skew_moves_row_r_right_by_r_and_unskew_inverts_it():
    x = np.arange(2 * 4 * 5 * 3, dtype=np.float64).reshape(2, 4, 5, 3)      # (N, H, W, C)
    s = pixelrnn.skew(ng.tensor(x)).numpy()
    expected = np.zeros((2, 4, 8, 3))
    for r in range(4):
        expected[:, r, r:r + 5] = x[:, r]
    np.testing.assert_array_equal(s, expected)
    np.testing.assert_array_equal(pixelrnn.unskew(ng.tensor(s), 5).numpy(), x)


@pytest.mark.parametrize("name", list(MODELS))
def test_a_few_adam_steps_lower_the_nll(name):
    """On two patterns repeated (random images would already be at their entropy, 13.9
    nats), 40 steps take a fifth off the NLL.  (The PixelRNNs get a head of 16 ReLUs: 4 can
    all die in the first steps, and every logit is then its bias.)"""
    model = build(name)
    x = ng.cat([binary_images(2, SHAPE, seed=9)] * 8, 0)
    opts = model.configure_optimizers(1e-2)
    first = model.loss(x)[0].item()
    for _ in range(40):
        model.training_step((x, None), opts)
    assert model.loss(x)[0].item() < 0.8 * first


# --------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", list(MODELS))
def test_bad_images_raise_a_clear_error(name):
    model = build(name)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 5, 4\), got "
                                         r"\(2, 1, 4, 5\)"):
        model.log_prob(ng.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match=r"pixels must be 0 or 1 .* \(2, 1, 5, 4\).* 0\.5"):
        model.log_prob(ng.full((2, 1, 5, 4), 0.5))


def test_bad_arguments_raise_a_clear_error():
    with pytest.raises(ValueError, match="variant must be 'row' or 'diagonal'"):
        PixelRNN(SHAPE, variant="column")
    with pytest.raises(ValueError, match="kernel_size must be odd and at least 3"):
        PixelRNN(SHAPE, variant="row", kernel_size=2)
    with pytest.raises(ValueError, match="hidden_sizes must be a non-empty list"):
        MADE(SHAPE, hidden_sizes=[])
    with pytest.raises(ValueError, match=r"k must be in \[0, 3\)"):
        MADE(SHAPE, num_masks=3).use_masks(3)
    with pytest.raises(ValueError, match="NADE: hidden"):
        NADE(SHAPE, hidden=0)
    with pytest.raises(ValueError, match="image_shape must be"):
        FVBN((5, 4))


@pytest.mark.parametrize("name,cls", [("fvbn", FVBN), ("nade", NADE), ("made", MADE),
                                      ("pixelrnn-row", PixelRNN),
                                      ("pixelrnn-diagonal", PixelRNN)])
def test_registered_with_a_build_that_takes_image_shape_and_classes(name, cls):
    spec = get_model_spec(name)
    model = spec.build(image_shape=(1, 4, 4), num_classes=10, **spec.kwargs)
    assert isinstance(model, cls) and model.data_transform == "binary"
    assert np.isfinite(model.log_prob(binary_images(2, (1, 4, 4))).detach().numpy()).all()
