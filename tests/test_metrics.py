"""The sample-quality metrics: the closed forms (Fréchet distance of Gaussians, exact MMD^2 of
small discrete distributions, the Inception Score's bounds), the sanity of each metric on real
digits against blurred / shuffled / noise images, the shipped classifier (loads, >= 97% on the
test split), the nearest-neighbour check, the reference-feature cache and the error messages."""
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.linalg import sqrtm

import nanogen as ng
from nanogen.data import load_dataset
from nanogen.metrics import (class_probabilities, classifier_features, fid, frechet_distance,
                             inception_score, kid, load_classifier, nearest_neighbour_grid,
                             nearest_neighbours, reference_features, reference_points,
                             sample_quality)
from nanogen.metrics import classifier as classifier_module
from nanogen.metrics import features as features_module
from nanogen.metrics.kid import mmd2_unbiased, polynomial_kernel
from nanogen.metrics.references import box_blur, shuffle_pixels

from .strategies import float64_arrays, positive_arrays


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """Reference features go to a temporary cache, not the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv("NANOGEN_CACHE", str(tmp_path_factory.mktemp("cache")))
        reference_features.cache_clear()
        yield
    reference_features.cache_clear()


@pytest.fixture(scope="module")
def mnist():
    train, test = load_dataset("mnist5k", "train"), load_dataset("mnist5k", "test")
    return {"train": train.arrays[0], "test": test.arrays[0], "test_labels": test.arrays[1]}


@pytest.fixture(scope="module")
def test_features(mnist):
    return classifier_features(mnist["test"])


@pytest.fixture(scope="module")
def points():
    """reference_points() once for the module: train / blurred / shuffled / noise vs test."""
    return reference_points()


def random_covariance(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


# ---------------------------------------------------------------- the Fréchet distance
@given(mu1=float64_arrays((4,)), mu2=float64_arrays((4,)), var1=positive_arrays((4,)),
       var2=positive_arrays((4,)))
def test_frechet_distance_of_diagonal_gaussians_is_closed_form(mu1, mu2, var1, var2):
    # diagonal covariances commute: Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (sigma1 - sigma2)^2
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    got = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-8, abs=1e-10)


def test_frechet_distance_of_1d_gaussians():
    # N(1, 4) vs N(-2, 1): 3^2 + (2 - 1)^2
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[1.0]]) == pytest.approx(10.0)


@given(seed=st.integers(0, 2 ** 32 - 1), d=st.integers(1, 6))
def test_frechet_distance_is_symmetric_and_matches_the_psd_form(seed, d):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
    forward = frechet_distance(mu1, s1, mu2, s2)
    assert forward == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-7)
    # Tr (S1 S2)^1/2 = Tr (S1^1/2 S2 S1^1/2)^1/2, a symmetric PSD form with real eigenvalues
    half = np.real(sqrtm(s1))
    inner = np.linalg.eigvalsh(half @ s2 @ half)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(
        np.clip(inner, 0, None)).sum()
    assert forward == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_handles_features_that_never_vary():
    # two dead features (always 0) and a singular product: still the closed form, no error
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.normal(0, 1, (500, 3)), np.zeros((500, 2))], axis=1)
    b = np.concatenate([rng.normal(1, 2, (500, 3)), np.zeros((500, 2))], axis=1)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reduced = frechet_distance(mu_a[:3], s_a[:3, :3], mu_b[:3], s_b[:3, :3])
    assert fid(a, b) == pytest.approx(reduced, rel=1e-9)
    assert 3 * 1 ** 2 < reduced < 3 * (1 + 1) + 3 * 1.5 ** 2     # mean shift 1, std 1 vs 2


def test_fid_of_a_set_with_itself_is_zero(test_features):
    assert abs(fid(test_features, test_features)) < 1e-6


# ---------------------------------------------------------------- KID
def test_mmd2_unbiased_matches_the_sums_written_out():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 3)), rng.normal(1.0, size=(6, 3))
    k = lambda u, v: (u @ v / 3 + 1) ** 3                                   # noqa: E731
    m = len(x)
    within = lambda s: sum(k(s[i], s[j]) for i in range(m) for j in range(m) if i != j)  # noqa
    cross = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    expected = within(x) / (m * (m - 1)) + within(y) / (m * (m - 1)) - 2 * cross / m ** 2
    assert mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)


@given(support=float64_arrays((2, 3, 2), min_value=-1.5, max_value=1.5))
def test_kid_is_unbiased_for_discrete_distributions(support):
    """P and Q uniform on three points each: the exact MMD^2 is a finite sum, and the mean of
    KID over many independent draws of 8 points matches it (the biased V-statistic would not)."""
    p_points, q_points = support
    exact = (polynomial_kernel(p_points, p_points).mean() + polynomial_kernel(q_points,
             q_points).mean() - 2 * polynomial_kernel(p_points, q_points).mean())
    rng = np.random.default_rng(0)
    estimates = np.array([kid(p_points[rng.integers(0, 3, 8)], q_points[rng.integers(0, 3, 8)],
                              num_subsets=1, subset_size=8)[0] for _ in range(1000)])
    stderr = estimates.std() / np.sqrt(len(estimates))
    assert abs(estimates.mean() - exact) < 4 * stderr + 1e-9


def test_kid_of_random_halves_of_one_set_averages_zero(test_features):
    rng = np.random.default_rng(0)
    values = []
    for _ in range(40):
        order = rng.permutation(len(test_features))
        values.append(kid(test_features[order[:500]], test_features[order[500:]],
                          num_subsets=1)[0])
    values = np.array(values)
    assert abs(values.mean()) < 3 * values.std() / np.sqrt(len(values))


def test_kid_is_deterministic_for_a_seed_and_clips_the_subset_size():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(30, 4)), rng.normal(0.5, size=(20, 4))
    assert kid(a, b, num_subsets=5, seed=3) == kid(a, b, num_subsets=5, seed=3)
    # subset_size 1000 is clipped to 20: every subset of b is all of b
    assert kid(a[:20], b, num_subsets=3)[1] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- the Inception Score
@given(seed=st.integers(0, 2 ** 32 - 1), classes=st.integers(2, 10), splits=st.integers(1, 4))
def test_inception_score_lies_between_1_and_the_number_of_classes(seed, classes, splits):
    p = np.random.default_rng(seed).dirichlet(np.full(classes, 0.3), size=40)
    mean, std = inception_score(p, splits=splits)
    assert 1.0 - 1e-9 <= mean <= classes + 1e-9 and std >= 0


def test_inception_score_equality_cases():
    same = np.tile([0.2, 0.5, 0.3], (30, 1))                     # one distribution for all
    assert inception_score(same, splits=3)[0] == pytest.approx(1.0)
    balanced = np.eye(4)[np.arange(40) % 4]                       # confident, all classes
    assert inception_score(balanced, splits=1) == pytest.approx((4.0, 0.0))


def test_inception_score_of_real_digits_is_near_10_and_of_noise_near_1(points):
    assert points["train"]["inception_score"] > 9.3
    assert points["noise"]["inception_score"] < 1.5


# ---------------------------------------------------------------- the metrics on real images
def test_reference_points_order_real_blurred_shuffled_noise(points):
    fids = {name: p["fid"] for name, p in points.items()}
    assert fids["train"] < 15 and fids["train"] * 5 < fids["blurred"]
    assert fids["blurred"] * 5 < min(fids["shuffled"], fids["noise"])
    kids = {name: p["kid"] for name, p in points.items()}
    assert kids["train"] * 10 < kids["blurred"] < min(kids["shuffled"], kids["noise"])
    assert points["train"]["num_samples"] == 4000 and points["noise"]["num_samples"] == 1000
    assert all(p["num_reference"] == 1000 and p["reference"] == "mnist5k/test"
               for p in points.values())


def test_kid_of_a_set_with_itself_is_near_zero(test_features, points):
    mean, _ = kid(test_features, test_features, num_subsets=20, subset_size=500)
    assert abs(mean) < 0.05 * points["blurred"]["kid"]


def test_box_blur_and_pixel_shuffle():
    rng = np.random.default_rng(0)
    images = rng.random((3, 1, 28, 28), dtype=np.float32)
    blurred = box_blur(images)
    assert blurred[1, 0, 5, 7] == pytest.approx(images[1, 0, 4:7, 6:9].mean(), rel=1e-5)
    assert blurred[2, 0, 0, 0] == pytest.approx(images[2, 0, :2, :2].mean(), rel=1e-5)
    shuffled = shuffle_pixels(images, rng)
    assert not np.array_equal(shuffled, images)
    np.testing.assert_array_equal(np.sort(shuffled.reshape(3, -1)), np.sort(images.reshape(3, -1)))


def test_sample_quality_reports_counts_and_is_reproducible(mnist):
    samples = mnist["train"][::40]                                 # 100 real digits
    first = sample_quality(samples, seed=1)
    assert first == sample_quality(samples, seed=1)
    assert first["num_samples"] == 100 and first["num_reference"] == 1000
    assert first["kid_subset_size"] == 100 and first["inception_score_splits"] == 10
    assert first["feature_network"] == "lenet_mnist5k"
    assert all(isinstance(v, (int, float, str)) for v in first.values())   # JSON-ready


# ---------------------------------------------------------------- the classifier
def test_shipped_classifier_loads_once_and_is_at_least_97_percent_accurate(mnist):
    assert load_classifier() is load_classifier()
    assert os.path.getsize(classifier_module.WEIGHTS_PATH) < 300_000
    probabilities = class_probabilities(mnist["test"])
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-6)
    accuracy = (probabilities.argmax(1) == mnist["test_labels"]).mean()
    assert accuracy >= 0.97
    assert classifier_features(mnist["test"][:7]).shape == (7, classifier_module.FEATURE_DIM)


def test_classifier_training_command_writes_weights_that_load(tmp_path, capsys):
    out = tmp_path / "lenet.npz"
    assert classifier_module.main(["--steps", "3", "--seed", "5", "--out", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    trained, _ = classifier_module.train_classifier(steps=3, seed=5)
    loaded = classifier_module.load_classifier(str(out))
    x = ng.tensor(np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32))
    with ng.no_grad():                                  # same seed, same weights
        np.testing.assert_array_equal(loaded(x).numpy(), trained(x).numpy())


def test_loading_the_classifier_leaves_the_random_stream_alone(tmp_path):
    path = tmp_path / "lenet.npz"
    classifier_module.save_classifier(classifier_module.LeNet(), path, 0.1, 0, 0)
    ng.manual_seed(3)
    expected = ng.rand(3).numpy()
    ng.manual_seed(3)
    classifier_module.load_classifier(str(path))
    np.testing.assert_array_equal(ng.rand(3).numpy(), expected)


@pytest.mark.parametrize("contents", [None, b"not a zip file", b"PK\x03\x04truncated"])
def test_missing_or_corrupt_weights_name_the_file(tmp_path, contents):
    path = tmp_path / "weights.npz"
    if contents is not None:
        path.write_bytes(contents)
    with pytest.raises(classifier_module.ClassifierError, match="weights.npz"):
        classifier_module.load_classifier(str(path))


def test_weights_of_another_network_are_rejected(tmp_path):
    path = tmp_path / "other.npz"
    ng.save({"state_dict": {"conv.0.weight": np.zeros((3, 3))}}, path)
    with pytest.raises(classifier_module.ClassifierError, match="other.npz.*corrupt"):
        classifier_module.load_classifier(str(path))


# ---------------------------------------------------------------- nearest neighbours
def test_nearest_neighbour_of_a_training_image_is_itself(mnist):
    train = mnist["train"]
    picks = np.arange(0, len(train), 211)
    nearest = nearest_neighbours(train[picks], train, k=3)
    assert nearest.shape == (len(picks), 3)
    for query, found in zip(picks, nearest[:, 0]):          # itself, or an identical copy
        np.testing.assert_array_equal(train[found], train[query])


def test_nearest_neighbour_grid_rows_are_sample_then_neighbours(mnist):
    samples, train = mnist["test"][:4], mnist["train"]
    images, nrow = nearest_neighbour_grid(samples, train, k=5)
    assert nrow == 6 and images.shape == (24, 1, 28, 28)
    rows = images.reshape(4, 6, 1, 28, 28)
    np.testing.assert_array_equal(rows[:, 0], samples)
    np.testing.assert_array_equal(rows[:, 1:], train[nearest_neighbours(samples, train, k=5)])


# ---------------------------------------------------------------- the reference-feature cache
def test_reference_features_are_cached_on_disk_and_a_corrupt_file_is_rebuilt(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setenv("NANOGEN_CACHE", str(tmp_path))
    reference_features.cache_clear()
    first = reference_features("mnist5k", "test")
    files = list((tmp_path / "metrics").glob("mnist5k-test-*.npz"))
    assert len(files) == 1 and not first.flags.writeable

    reference_features.cache_clear()                    # a new process: read from disk only
    with monkeypatch.context() as m:
        m.setattr(features_module, "classifier_features", lambda *a, **k: pytest.fail("rebuilt"))
        np.testing.assert_array_equal(reference_features("mnist5k", "test"), first)

    files[0].write_bytes(b"garbage")                    # corrupt: rebuilt and rewritten
    reference_features.cache_clear()
    np.testing.assert_array_equal(reference_features("mnist5k", "test"), first)
    with np.load(files[0]) as archive:
        np.testing.assert_array_equal(archive["features"], first)
    reference_features.cache_clear()


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 28, 28)), r"shape \(N, C, H, W\) with C = 1 \(grey\) or 3.*\(2, 28, 28\)"),
    (np.zeros((2, 2, 28, 28)), r"\(2, 2, 28, 28\)"),
    (np.zeros((0, 1, 28, 28)), "empty"),
    (np.full((2, 1, 28, 28), -1.0), r"values in \[0, 1\].*\[-1"),
    (np.full((2, 1, 28, 28), np.nan), "NaN"),
])
def test_bad_images_raise_a_clear_error(images, message):
    with pytest.raises(ValueError, match=message):
        classifier_features(images)
    with pytest.raises(ValueError, match=message):
        sample_quality(images)


def test_bad_metric_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="different feature sizes"):
        fid(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        kid(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"mu1 \(2,\), sigma1 \(3, 3\)"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="sum to 1.*row 1"):
        inception_score(np.array([[0.5, 0.5], [2.0, 0.0]]), splits=1)
    with pytest.raises(ValueError, match="splits must be between 1 and the 2 samples"):
        inception_score(np.full((2, 2), 0.5), splits=3)
    with pytest.raises(ValueError, match="at least 2 samples"):
        sample_quality(np.zeros((1, 1, 28, 28)))
    with pytest.raises(ValueError, match="k must be between 1 and the 3 training images"):
        nearest_neighbours(np.zeros((1, 1, 28, 28)), np.zeros((3, 1, 28, 28)), k=4)
