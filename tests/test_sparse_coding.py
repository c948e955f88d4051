"""Sparse coding: the soft threshold, ISTA and FISTA against an independent direct solver of the
L1 problem, their convergence (ISTA monotone, FISTA faster), the optimality conditions of the
codes, the dictionary update (unit-norm atoms, atoms recovered from synthetic sparse data), the
fitted sampling prior, patches, the hierarchical model's stage switch and its exact resume, and
the error messages."""
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
from nanogen.data import DataLoader, TensorDataset
from nanogen.models import ImageShapeError
from nanogen.models.energy.sparse_coding import (PRIOR_WINDOW, HierarchicalSparseCoding,
                                                 SparseCoding, SparseCodingLayer,
                                                 covering_starts, fista, ista,
                                                 lipschitz_constant, objective, optimality_gap,
                                                 soft_threshold)
from nanogen.models.registry import MODELS
from nanogen.training import load_checkpoint, train
from .strategies import examples, float64_arrays


# ---------------------------------------------------------------- an independent direct solver
def energy(x, D, a, lam):
    """(2) per row, in NumPy."""
    return 0.5 * ((x - a @ D.T) ** 2).sum(-1) + lam * np.abs(a).sum(-1)


def lasso_by_enumeration(x, D, lam):
    """The minimiser of 1/2 ||x - D a||^2 + lam ||a||_1 for one signal x (d,), found without any
    iteration: for every support S and sign pattern s on it, the stationary point of the
    restricted problem, a_S = (D_S^T D_S)^-1 (D_S^T x - lam s); a point whose signs agree with s
    and whose residual correlations off S stay within lam satisfies the optimality conditions
    (7), which suffice for a convex problem.  Of those (one, up to rounding) the lowest energy."""
    d, k = D.shape
    best, best_energy = None, np.inf
    for size in range(k + 1):
        for support in itertools.combinations(range(k), size):
            S = list(support)
            a = np.zeros(k)
            if S:
                DS = D[:, S]
                gram = DS.T @ DS
                if np.linalg.cond(gram) > 1e8:
                    continue
                signs = np.array(list(itertools.product((-1.0, 1.0), repeat=size))).T  # (|S|, 2^|S|)
                coefficients = np.linalg.solve(gram, (DS.T @ x)[:, None] - lam * signs)
                agree = np.all(coefficients * signs > -1e-12, axis=0)
                if not agree.any():
                    continue
                a[S] = coefficients[:, np.flatnonzero(agree)[0]]
            g = D.T @ (x - D @ a)
            off = np.setdiff1d(np.arange(k), S)
            if np.all(np.abs(g[off]) <= lam * (1 + 1e-9) + 1e-12):
                e = energy(x, D, a, lam)
                if e < best_energy:
                    best, best_energy = a, e
    assert best is not None, "no point satisfies the optimality conditions"
    return best


def conditioned_dictionary(raw_u, raw_v, singular_values):
    """D = U diag(s) V^T with orthonormal U (d, K) and V (K, K) from the QR factors of drawn
    matrices: a dictionary whose condition number is max(s) / min(s)."""
    u, _ = np.linalg.qr(raw_u)
    v, _ = np.linalg.qr(raw_v)
    return (u * singular_values) @ v.T


@st.composite
def l1_problems(draw, max_atoms=6):
    """(x (4, d), D (d, K), lam): K <= 6 atoms in d >= K dimensions, condition number <= 3
    (random orthonormal factors, drawn singular values in [0.5, 1.5])."""
    k = draw(st.integers(2, max_atoms), label="atoms")
    d = draw(st.integers(k, k + 3), label="dims")
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1), label="rotation seed"))
    s = np.asarray(draw(st.lists(st.floats(0.5, 1.5), min_size=k, max_size=k), label="s"))
    D = conditioned_dictionary(rng.standard_normal((d, k)), rng.standard_normal((k, k)), s)
    x = draw(float64_arrays((4, d), min_value=-2, max_value=2), label="x")
    lam = draw(st.floats(0.05, 1.0), label="lam")
    return x, D, lam


# ---------------------------------------------------------------- the soft threshold
@given(u=float64_arrays((3, 5), min_value=-3, max_value=3), t=st.floats(0.0, 2.0))
def test_soft_threshold_is_the_shrinkage_formula(u, t):
    got = soft_threshold(ng.tensor(u), t).numpy()
    want = np.where(u > t, u - t, np.where(u < -t, u + t, 0.0))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    assert np.all(got[np.abs(u) <= t] == 0)                    # exact zeros, not tiny values


def test_soft_threshold_refuses_a_negative_threshold():
    with pytest.raises(ValueError, match="threshold must be a number >= 0"):
        soft_threshold(ng.tensor([1.0]), -0.1)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4)])
def test_lipschitz_constant_is_the_squared_spectral_norm(shape):
    D = np.random.default_rng(1).standard_normal(shape)
    assert lipschitz_constant(ng.tensor(D)) == pytest.approx(np.linalg.norm(D, 2) ** 2,
                                                             rel=1e-12)


# ---------------------------------------------------------------- ISTA and FISTA
@given(problem=l1_problems())
def test_ista_and_fista_reach_the_direct_solvers_optimum(problem):
    x, D, lam = problem
    want = np.stack([lasso_by_enumeration(row, D, lam) for row in x])
    for solver in (ista, fista):
        got = solver(ng.tensor(x), ng.tensor(D), lam, 250).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-8, err_msg=solver.__name__)
        # the same zeros: soft thresholding leaves exact zeros where the optimum has them
        assert np.array_equal(got == 0, np.abs(want) < 1e-12) or \
            np.abs(want[(got == 0) != (np.abs(want) < 1e-12)]).max() < 1e-8


@given(problem=l1_problems(), overcomplete=st.integers(0, 4))
def test_the_ista_energy_never_increases(problem, overcomplete):
    x, D, lam = problem
    # extra random atoms make the problem overcomplete (not strictly convex): still monotone
    extra = np.random.default_rng(overcomplete).standard_normal((D.shape[0], overcomplete))
    D = np.concatenate([D, extra], axis=1)
    _, history = ista(ng.tensor(x), ng.tensor(D), lam, 60, return_objectives=True)
    assert history.shape == (61, x.shape[0])
    np.testing.assert_allclose(history[0], 0.5 * (x ** 2).sum(1), rtol=1e-12)      # a^0 = 0
    assert np.all(np.diff(history, axis=0) <= 1e-12 * history[0])
    # and strictly decreases unless a = 0 is already optimal (every |D^T x| within lam)
    zero_is_optimal = np.abs(x @ D).max(1) <= lam
    assert np.all((history[-1] < history[0]) | zero_is_optimal)


def ill_conditioned_problems(seed, rows=16, k=8, condition=30.0):
    rng = np.random.default_rng(seed)
    D = conditioned_dictionary(rng.standard_normal((k, k)), rng.standard_normal((k, k)),
                               np.geomspace(1.0 / condition, 1.0, k))
    x = rng.standard_normal((rows, k))
    return x, D, 0.02


def iterations_to_reach(history, best, tolerance):
    """Per row: the first iteration k whose energy gap E(a^k) - E* is within ``tolerance`` of
    the starting gap E(a^0) - E* (len(history) if never)."""
    gap = (history - best) / (history[0] - best)
    reached = gap <= tolerance
    return np.where(reached.any(0), reached.argmax(0), len(history))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fista_needs_far_fewer_iterations_than_ista_on_ill_conditioned_problems(seed):
    x, D, lam = ill_conditioned_problems(seed)
    best = np.stack([energy(row, D, lasso_by_enumeration(row, D, lam), lam) for row in x])
    _, slow = ista(ng.tensor(x), ng.tensor(D), lam, 400, return_objectives=True)
    _, fast = fista(ng.tensor(x), ng.tensor(D), lam, 400, return_objectives=True)
    assert np.all(slow >= best - 1e-10) and np.all(fast >= best - 1e-10)   # E* is the minimum
    n_slow = iterations_to_reach(slow, best, 1e-4)
    n_fast = iterations_to_reach(fast, best, 1e-4)
    # an O(1/k^2) method against an O(1/k) one: on most problems several times fewer steps
    assert np.median(n_fast) < 0.5 * np.median(n_slow), (n_fast, n_slow)
    assert np.mean(n_fast < n_slow) >= 0.75, (n_fast, n_slow)


@pytest.mark.parametrize("lam", [0.2, 0.5])
@pytest.mark.parametrize("seed", range(5))
def test_codes_satisfy_the_l1_optimality_conditions(seed, lam):
    """Overcomplete, unit-norm atoms (the model's setting): after enough FISTA steps
    D^T (x - D a) is lam sign(a) on the support and within +-lam off it (7)."""
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((8, 16))
    D /= np.linalg.norm(D, axis=0)
    x = rng.standard_normal((6, 8))
    a = fista(ng.tensor(x), ng.tensor(D), lam, 1000).numpy()
    g = (x - a @ D.T) @ D
    on = a != 0
    np.testing.assert_allclose(g[on], lam * np.sign(a[on]), rtol=0, atol=1e-4)
    assert np.all(np.abs(g[~on]) <= lam + 1e-4)
    # optimality_gap measures the same violation
    gap = optimality_gap(ng.tensor(x), ng.tensor(D), ng.tensor(a), lam).numpy()
    assert np.all(gap <= 1e-4)
    worse = a.copy()
    worse[on] *= 1.1
    assert np.all(optimality_gap(ng.tensor(x), ng.tensor(D), ng.tensor(worse), lam).numpy()[
        on.any(1)] > 1e-3)


def test_objective_is_the_energy():
    rng = np.random.default_rng(0)
    x, D, a = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal((3, 5))
    np.testing.assert_allclose(objective(ng.tensor(x), ng.tensor(D), ng.tensor(a), 0.3).numpy(),
                               energy(x, D, a, 0.3), rtol=1e-12)


# ---------------------------------------------------------------- the dictionary
def train_steps(model, images, steps, lr=1e-2, batch=8):
    optimizers = model.configure_optimizers(lr)
    logs = []
    for step in range(steps):
        start = (step * batch) % (len(images) - batch + 1)
        x = ng.tensor(images[start:start + batch])
        logs.append(model.training_step((x, None), optimizers))
    return logs


def atom_norms(layer):
    return np.linalg.norm(layer.dictionary.detach().numpy(), axis=0)


@pytest.mark.parametrize("patch_size", [3, None])
def test_atoms_stay_unit_norm_while_the_dictionary_learns(patch_size):
    ng.manual_seed(0)
    model = SparseCoding(image_shape=(1, 6, 6), patch_size=patch_size, num_atoms=12, lam=0.05,
                         num_iters=30)
    np.testing.assert_allclose(atom_norms(model.layer), 1.0, rtol=0, atol=1e-6)
    before = model.layer.dictionary.detach().numpy().copy()
    images = np.random.default_rng(0).random((40, 1, 6, 6)).astype(np.float32)
    logs = train_steps(model, images, 5)
    np.testing.assert_allclose(atom_norms(model.layer), 1.0, rtol=0, atol=1e-6)
    assert np.abs(model.layer.dictionary.detach().numpy() - before).max() > 1e-3
    assert all(np.isfinite(v) for entry in logs for v in entry.values())
    assert 0 < logs[-1]["sparsity"] <= 1


def test_the_dictionary_update_is_a_gradient_step_on_the_reconstruction_error():
    """With plain SGD, one step is D + lr/M (x - D a) a^T (8), then each column normalised (9)."""
    ng.manual_seed(0)
    model = SparseCoding(image_shape=(1, 4, 4), patch_size=None, num_atoms=5, lam=0.1,
                         num_iters=50)
    D0 = model.layer.dictionary.detach().numpy().astype(np.float64)
    x = np.random.default_rng(2).random((6, 1, 4, 4)).astype(np.float32)
    a = fista(ng.tensor(x.reshape(6, 16)), model.layer.dictionary, 0.1, 50).numpy()
    optimizers = {"model": ng.optim.SGD(model.parameters(), lr=0.5)}
    model.training_step((ng.tensor(x), None), optimizers)
    flat = x.reshape(6, 16).astype(np.float64)
    want = D0 + 0.5 / 6 * (flat - a @ D0.T).T @ a
    want /= np.linalg.norm(want, axis=0)
    np.testing.assert_allclose(model.layer.dictionary.detach().numpy(), want, rtol=0, atol=1e-5)


def test_dictionary_learning_recovers_the_atoms_of_synthetic_sparse_data():
    """Signals made of 2 of 8 unit atoms in 16 dimensions: after training 12 atoms, each true
    atom has a learned atom within a few degrees of it (up to sign), and the error falls."""
    rng = np.random.default_rng(0)
    true = rng.standard_normal((16, 8))
    true /= np.linalg.norm(true, axis=0)
    codes = np.zeros((2048, 8))
    for row in codes:
        row[rng.choice(8, 2, replace=False)] = rng.uniform(0.5, 1.5, 2) * rng.choice([-1, 1], 2)
    images = (codes @ true.T).reshape(-1, 1, 4, 4).astype(np.float32)
    ng.manual_seed(0)
    model = SparseCoding(image_shape=(1, 4, 4), patch_size=None, num_atoms=12, lam=0.05,
                         num_iters=50)
    logs = train_steps(model, images, 200, lr=3e-2, batch=32)
    cosines = np.abs(true.T @ model.layer.dictionary.detach().numpy())          # (true, learned)
    assert np.median(cosines.max(1)) > 0.99 and cosines.max(1).min() > 0.95, cosines.max(1)
    assert np.mean([entry["loss"] for entry in logs[-20:]]) < 0.1 * logs[0]["loss"]


# ---------------------------------------------------------------- the sampling prior
def test_the_prior_statistics_are_running_means_of_the_codes():
    ng.manual_seed(0)
    layer = SparseCodingLayer(dim=4, num_atoms=3, lam=0.1, num_iters=5, where="test")
    batches = [np.random.default_rng(i).laplace(size=(10, 3)) * (np.random.default_rng(
        10 + i).random((10, 3)) < 0.4) for i in range(3)]
    for codes in batches:
        layer.update_prior(ng.tensor(codes.astype(np.float32)))
    joined = np.concatenate(batches)
    np.testing.assert_allclose(layer.positive_rate.numpy(), (joined > 0).mean(0), atol=1e-6)
    np.testing.assert_allclose(layer.negative_rate.numpy(), (joined < 0).mean(0), atol=1e-6)
    np.testing.assert_allclose(layer.positive_mean.numpy(), np.maximum(joined, 0).mean(0),
                               atol=1e-6)
    np.testing.assert_allclose(layer.negative_mean.numpy(), np.maximum(-joined, 0).mean(0),
                               atol=1e-6)
    assert int(layer.updates.item()) == 3
    # after the window, an exponential average with memory PRIOR_WINDOW
    layer.updates.fill_(10 * PRIOR_WINDOW)
    old = layer.positive_rate.numpy().copy()
    ones = np.ones((4, 3), np.float32)
    layer.update_prior(ng.tensor(ones))
    np.testing.assert_allclose(layer.positive_rate.numpy(),
                               old + (1 - old) / PRIOR_WINDOW, atol=1e-6)


def test_sampled_codes_follow_the_fitted_spike_and_slab_prior():
    ng.manual_seed(0)
    layer = SparseCodingLayer(dim=4, num_atoms=3, lam=0.1, num_iters=5, where="test")
    layer.positive_rate.copy_(ng.tensor([0.1, 0.3, 0.0]))
    layer.negative_rate.copy_(ng.tensor([0.2, 0.0, 0.0]))
    layer.positive_mean.copy_(ng.tensor([0.1 * 2.0, 0.3 * 0.5, 0.0]))    # E[a | a > 0] = 2, 0.5
    layer.negative_mean.copy_(ng.tensor([0.2 * 1.0, 0.0, 0.0]))          # E[-a | a < 0] = 1
    n = 20000
    a = layer.sample_codes(n).numpy()
    for k, (p, q) in enumerate([(0.1, 0.2), (0.3, 0.0), (0.0, 0.0)]):
        for rate, hits in ((p, a[:, k] > 0), (q, a[:, k] < 0)):
            assert abs(hits.mean() - rate) <= 5 * np.sqrt(rate * (1 - rate) / n) + 1e-12
    for k, side, mean in ((0, 1, 2.0), (0, -1, 1.0), (1, 1, 0.5)):
        values = side * a[:, k][side * a[:, k] > 0]
        # an exponential's mean and standard deviation are equal
        assert abs(values.mean() - mean) <= 5 * mean / np.sqrt(len(values))
        assert abs(values.std() - mean) <= 0.1 * mean


def test_a_trained_model_samples_images_and_patches_in_the_unit_range():
    ng.manual_seed(0)
    model = SparseCoding(image_shape=(1, 7, 9), patch_size=3, num_atoms=6, lam=0.05,
                         num_iters=20)
    images = np.random.default_rng(0).random((16, 1, 7, 9)).astype(np.float32)
    train_steps(model, images, 3)
    samples = model.sample(5).numpy()
    assert samples.shape == (5, 1, 7, 9) and samples.min() >= 0 and samples.max() <= 1
    assert samples.std() > 0
    patches = model.sample_patches(4).numpy()
    assert patches.shape == (4, 1, 3, 3) and patches.min() >= 0 and patches.max() <= 1
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, y=ng.tensor([0, 1]))
    pictures = model.figures(ng.tensor(images[:3]))
    atoms, nrow = pictures["dictionary"]
    D = model.layer.dictionary.detach().numpy()
    # each atom with the sign its codes usually took, so that strokes it adds are drawn white
    signs = np.where(model.layer.positive_rate.numpy() >= model.layer.negative_rate.numpy(), 1, -1)
    assert set(signs) == {-1, 1}                        # both kinds occur in this model
    np.testing.assert_allclose(atoms.numpy().reshape(6, 9),
                               0.5 + 0.5 * (D * signs).T / np.abs(D).max(0)[:, None], atol=1e-6)
    assert nrow == 3 and pictures["reconstructions"][0].shape == (6, 1, 7, 9)


# ---------------------------------------------------------------- patches
@pytest.mark.parametrize("size, patch", [(28, 8), (28, 7), (5, 5), (6, 4), (9, 2)])
def test_covering_patches_cover_every_pixel_and_end_at_the_border(size, patch):
    starts = covering_starts(size, patch)
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s:s + patch] = True
    assert covered.all() and starts[0] == 0 and starts[-1] == size - patch
    assert np.all(np.diff(starts) <= patch) and np.all(np.diff(starts) > 0)


def test_patches_are_the_image_windows_and_paste_back_into_the_image():
    ng.manual_seed(0)
    model = SparseCoding(image_shape=(3, 7, 10), patch_size=4, num_atoms=4, num_iters=5,
                         patches_per_image=5)
    x = np.random.default_rng(0).random((2, 3, 7, 10)).astype(np.float32)
    patches = model.patches.cut(ng.tensor(x), model.cover).numpy().reshape(2, -1, 3, 4, 4)
    corners = [(t, l) for t in covering_starts(7, 4) for l in covering_starts(10, 4)]
    for i, (t, l) in enumerate(corners):
        np.testing.assert_array_equal(patches[:, i], x[:, :, t:t + 4, l:l + 4])
    # overlapping copies of the same pixels average back to the image itself
    flat = ng.tensor(patches.reshape(-1, 48))
    np.testing.assert_allclose(model.patches.paste(flat, model.cover, 2).numpy(), x, atol=1e-6)
    # training patches come from random positions: windows of the images, drawn by the
    # global generator (so the same seed draws the same ones)
    ng.manual_seed(5)
    drawn = model._training_patches(ng.tensor(x)).numpy().reshape(2, 5, 3, 4, 4)
    ng.manual_seed(5)
    np.testing.assert_array_equal(model._training_patches(ng.tensor(x)).numpy().reshape(
        2, 5, 3, 4, 4), drawn)
    windows = [x[:, :, t:t + 4, l:l + 4] for t in range(4) for l in range(7)]
    for i in range(2):
        for j in range(5):
            assert any(np.array_equal(drawn[i, j], w[i]) for w in windows)


def test_evaluate_reports_the_reconstruction_of_the_covering_patches():
    """With the identity as dictionary the optimal code is the soft threshold of the patch
    itself (found by the first step, L = 1), so each pixel's error is min(|x|, lam)^2."""
    model = SparseCoding(image_shape=(1, 6, 6), patch_size=3, num_atoms=9, lam=0.1,
                         num_iters=20)
    model.layer.dictionary.copy_(ng.eye(9))
    x = np.random.default_rng(0).random((5, 1, 6, 6)).astype(np.float32)
    loader = DataLoader(TensorDataset(x, np.zeros(5, np.int64)), batch_size=2)
    metrics = model.evaluate(loader)
    assert metrics["num_examples"] == 5
    want = np.minimum(np.abs(x), 0.1) ** 2
    assert metrics["reconstruction_mse"] == pytest.approx(want.mean(), rel=1e-5)
    assert metrics["reconstruction_error"] == pytest.approx(want.sum() / 20, rel=1e-5)
    assert metrics["image_mse"] == pytest.approx(want.mean(), rel=1e-5)   # 4 patches, no overlap
    assert metrics["nonzeros_per_code"] == pytest.approx((x > 0.1).sum() / 20)
    assert metrics["sparsity"] == pytest.approx((x > 0.1).mean())
    assert metrics["mean_abs_code"] == pytest.approx(np.maximum(x - 0.1, 0).mean(), rel=1e-5)
    assert metrics["objective"] == pytest.approx(
        (0.5 * want.sum() + 0.1 * np.maximum(x - 0.1, 0).sum()) / 20, rel=1e-5)


# ---------------------------------------------------------------- the hierarchy
def tiny_hierarchy(**kw):
    ng.manual_seed(0)
    return HierarchicalSparseCoding(image_shape=(1, 9, 8), patch_size=2, num_atoms=5,
                                    lam=0.05, pool=2, num_atoms2=4, lam2=0.05, num_iters=20,
                                    **{"first_layer_steps": 3, **kw})


def test_the_hierarchy_trains_its_first_layer_then_only_its_second():
    model = tiny_hierarchy()
    assert model.cells == (4, 4) and model.blocks == (2, 2)
    images = np.random.default_rng(0).random((32, 1, 9, 8)).astype(np.float32)
    first = model.layer1.dictionary.detach().numpy().copy()
    second = model.layer2.dictionary.detach().numpy().copy()
    logs = train_steps(model, images, 3)
    assert [entry["layer"] for entry in logs] == [1, 1, 1] and model.stage == 2
    assert not np.array_equal(model.layer1.dictionary.detach().numpy(), first)
    np.testing.assert_array_equal(model.layer2.dictionary.detach().numpy(), second)
    frozen = model.layer1.dictionary.detach().numpy().copy()
    logs = train_steps(model, images, 2)
    assert [entry["layer"] for entry in logs] == [2, 2]
    np.testing.assert_array_equal(model.layer1.dictionary.detach().numpy(), frozen)
    assert not np.array_equal(model.layer2.dictionary.detach().numpy(), second)
    for layer in (model.layer1, model.layer2):
        np.testing.assert_allclose(atom_norms(layer), 1.0, rtol=0, atol=1e-6)
    samples = model.sample(3).numpy()
    assert samples.shape == (3, 1, 9, 8) and samples.min() >= 0 and samples.max() <= 1
    pictures = model.figures(ng.tensor(images[:2]))
    assert pictures["layer2_dictionary"][0].shape == (4, 1, 9, 8)
    assert pictures["reconstructions"][0].shape == (6, 1, 9, 8)


def test_pooling_takes_the_largest_magnitude_of_each_atom_in_each_block():
    model = tiny_hierarchy()
    codes = np.random.default_rng(0).standard_normal((2, 4, 4, 5))
    pooled = model.pool_codes(ng.tensor(codes)).numpy().reshape(2, 2, 2, 5)
    for i, j in itertools.product(range(2), range(2)):
        block = np.abs(codes[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2])
        np.testing.assert_array_equal(pooled[:, i, j], block.max((1, 2)))


@pytest.mark.parametrize("split", [2, 3, 4])      # before, at and after the stage switch
def test_a_resumed_hierarchy_switches_stage_at_the_same_step(tmp_path, split):
    images = np.random.default_rng(0).random((24, 1, 9, 8)).astype(np.float32)

    def run(out, steps, resume=False):
        model = tiny_hierarchy()
        loader = DataLoader(TensorDataset(images, np.zeros(24, np.int64)), batch_size=8,
                            shuffle=True, drop_last=True, seed=3)
        train(model, loader, steps=steps, out_dir=str(out), config={"model": "h"}, lr=1e-2,
              resume=resume, sample_every=1000, checkpoint_every=1000, progress=False)
        return model

    straight = run(tmp_path / "straight", 5)
    run(tmp_path / "broken", split)
    resumed = run(tmp_path / "broken", 5, resume=True)
    for (name, p), (_, q) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert np.array_equal(p.numpy(), q.numpy()), name
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "broken")
    assert a["step"] == b["step"] == 5


# ---------------------------------------------------------------- registry and errors
def test_the_registered_models_build_for_mnist():
    for name in ("sparse-coding", "sparse-coding-digits", "sparse-coding-hierarchical"):
        spec = MODELS[name]
        model = spec.build(image_shape=(1, 28, 28), num_classes=10, **spec.kwargs)
        assert spec.steps <= 3000 and spec.batch_size == 64
        assert model.data_transform == "unit"
    assert MODELS["sparse-coding"].build(**MODELS["sparse-coding"].kwargs).patch_shape == \
        (1, 8, 8)
    assert MODELS["sparse-coding-digits"].build(
        **MODELS["sparse-coding-digits"].kwargs).patch_shape == (1, 28, 28)


def one_line(error):
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("build", [
    lambda: SparseCoding(image_shape=(1, 6, 9), patch_size=8),
    lambda: HierarchicalSparseCoding(image_shape=(1, 6, 9), patch_size=8)])
def test_a_patch_larger_than_the_image_is_one_line_naming_both_sizes(build):
    with pytest.raises(ImageShapeError) as e:                  # a ValueError
        build()
    assert "patch_size 8 is larger than the 6x9 images" in one_line(e)
    assert "patch_size <= 6 would do" in one_line(e)


@pytest.mark.parametrize("kwargs, words", [
    ({"lam": 0.0}, "lam must be a positive number"),
    ({"lam": -1.0}, "lam must be a positive number"),
    ({"lam": float("nan")}, "lam must be a positive number"),
    ({"num_atoms": 0}, "num_atoms must be a positive int"),
    ({"patch_size": 0}, "patch_size must be a positive int"),
    ({"num_iters": 2.5}, "num_iters must be a positive int"),
    ({"patches_per_image": 0}, "patches_per_image must be a positive int"),
    ({"image_shape": (28, 28)}, "image_shape must be (C, H, W)")])
def test_bad_settings_are_named(kwargs, words):
    with pytest.raises(ValueError) as e:
        SparseCoding(**kwargs)
    assert words in one_line(e)


def test_a_pool_too_large_for_the_grid_is_refused():
    with pytest.raises(ImageShapeError) as e:
        HierarchicalSparseCoding(image_shape=(1, 28, 28), patch_size=7, pool=5)
    assert "5x5 blocks of 7x7 patches (35 pixels) do not fit the 28x28 images" in one_line(e)


def test_the_solvers_refuse_mismatched_shapes_and_bad_settings():
    x, D = ng.zeros(3, 4), ng.randn(5, 2)
    with pytest.raises(ValueError, match=r"expected signals of shape \(N, 5\)"):
        ista(x, D, 0.1, 10)
    with pytest.raises(ValueError, match="lam must be a positive number"):
        fista(ng.zeros(3, 5), D, 0.0, 10)
    with pytest.raises(ValueError, match="num_iters must be a positive int"):
        fista(ng.zeros(3, 5), D, 0.1, 0)
    with pytest.raises(ValueError, match="the dictionary is zero"):
        ista(ng.zeros(3, 5), ng.zeros(5, 2), 0.1, 10)
    model = SparseCoding(image_shape=(1, 8, 8), patch_size=4)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 8, 8\)"):
        model.training_step((ng.zeros(2, 1, 9, 9), None), model.configure_optimizers(1e-3))
