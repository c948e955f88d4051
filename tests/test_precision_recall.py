"""Precision and recall of samples (nanogen.metrics.precision_recall): 1 for a set against itself,
falling as the samples move away, mode dropping lowers recall only and outliers precision only;
equal to a direct O(N^2) evaluation of the definition on drawn sets with ties and duplicates;
the batched computation equals the unbatched one; errors; and ``sample_quality`` reporting it
from the features it already computed."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nanogen.metrics import quality as quality_module
from nanogen.metrics import reference_features
from nanogen.metrics.features import classifier_features
from nanogen.metrics.precision_recall import in_manifold, manifold_radii, precision_recall
from nanogen.metrics.quality import sample_quality

from .test_metrics import private_cache  # noqa: F401  (autouse: reference features in a tmp cache)


# ---------------------------------------------------------------- the definition, directly
def direct_radii(points, k):
    """Each point's distance to its k-th nearest other point (squared distances, then a root)."""
    radii = []
    for i, p in enumerate(points):
        others = [np.sum((p - q) ** 2) for j, q in enumerate(points) if j != i]
        radii.append(np.sqrt(sorted(others)[k - 1]))
    return np.array(radii)


def direct_inside(queries, points, radii):
    return np.array([any(np.sqrt(np.sum((q - p) ** 2)) <= r for p, r in zip(points, radii))
                     for q in queries])


def direct_precision_recall(real, fake, k):
    return (direct_inside(fake, real, direct_radii(real, k)).mean(),
            direct_inside(real, fake, direct_radii(fake, k)).mean())


def gaussian(rng, n, d=4, centre=0.0):
    return rng.standard_normal((n, d)) + centre


@st.composite
def grid_sets(draw, min_points=2, max_points=12):
    """Two point sets of one dimension on a coarse grid (multiples of 1/4 in [-1, 1]): exact
    arithmetic, many tied distances and duplicate points; and a k that both sets allow."""
    d = draw(st.integers(1, 4))
    coords = st.integers(-4, 4).map(lambda i: i / 4)
    real = draw(arrays(np.float64, (draw(st.integers(min_points, max_points)), d), elements=coords))
    fake = draw(arrays(np.float64, (draw(st.integers(min_points, max_points)), d), elements=coords))
    k = draw(st.integers(1, min(len(real), len(fake)) - 1))
    return real, fake, k


# ---------------------------------------------------------------- agreement with the definition
@given(grid_sets())
def test_precision_and_recall_equal_the_definition_on_sets_with_ties_and_duplicates(sets):
    real, fake, k = sets
    got = precision_recall(real, fake, k=k)
    assert (got["precision"], got["recall"]) == direct_precision_recall(real, fake, k)
    assert (got["k"], got["num_real"], got["num_fake"]) == (k, len(real), len(fake))
    np.testing.assert_array_equal(manifold_radii(real, k), direct_radii(real, k))


@given(seed=st.integers(0, 2 ** 32 - 1), n_real=st.integers(4, 30), n_fake=st.integers(4, 30),
       k=st.integers(1, 3))
def test_precision_and_recall_equal_the_definition_on_continuous_draws(seed, n_real, n_fake, k):
    rng = np.random.default_rng(seed)
    real, fake = gaussian(rng, n_real, d=6), gaussian(rng, n_fake, d=6, centre=0.7)
    got = precision_recall(real, fake, k=k)
    assert (got["precision"], got["recall"]) == direct_precision_recall(real, fake, k)


@given(grid_sets(min_points=2, max_points=20), st.data())
def test_batched_equals_unbatched(sets, data):
    real, fake, k = sets
    batch = data.draw(st.integers(1, len(real) + len(fake)), label="batch_size")
    whole = max(len(real), len(fake))
    np.testing.assert_array_equal(manifold_radii(real, k, batch_size=batch),
                                  manifold_radii(real, k, batch_size=whole))
    radii = manifold_radii(fake, k)
    np.testing.assert_array_equal(in_manifold(real, fake, radii, batch_size=batch),
                                  in_manifold(real, fake, radii, batch_size=whole))
    assert precision_recall(real, fake, k, batch_size=batch) == \
        precision_recall(real, fake, k, batch_size=whole)


# ---------------------------------------------------------------- what the numbers mean
@given(grid_sets(min_points=4))
def test_a_set_against_itself_has_precision_and_recall_one(sets):
    real, _, k = sets
    k = min(k, len(real) - 1)
    scores = precision_recall(real, real.copy(), k=k)
    assert scores["precision"] == 1.0 and scores["recall"] == 1.0


def test_precision_and_recall_fall_as_the_samples_move_away():
    rng = np.random.default_rng(0)
    real = gaussian(rng, 300)
    direction = np.eye(4)[0]
    shifts = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]
    scores = [precision_recall(real, real + s * direction) for s in shifts]   # rigidly moved
    precisions = [s["precision"] for s in scores]
    recalls = [s["recall"] for s in scores]
    assert precisions == sorted(precisions, reverse=True), precisions
    assert recalls == sorted(recalls, reverse=True), recalls
    assert precisions[0] == 1.0 and recalls[0] == 1.0
    assert precisions[3] < 1.0 and recalls[3] < 1.0           # two standard deviations away
    assert precisions[-1] == 0.0 and recalls[-1] == 0.0       # eight
    fresh = gaussian(rng, 300)                                # another draw: falls as well
    near, far = precision_recall(real, fresh), precision_recall(real, fresh + 4 * direction)
    assert far["precision"] < near["precision"] and far["recall"] < near["recall"]


def four_clusters(rng, per_cluster):
    centres = 20.0 * np.eye(4)                                 # far apart: 28 between any two
    return np.concatenate([gaussian(rng, per_cluster, centre=c) for c in centres])


def test_mode_dropping_keeps_precision_and_lowers_recall():
    rng = np.random.default_rng(1)
    real = four_clusters(rng, 100)
    subset = real[:200]                                        # the first two clusters only
    dropped = precision_recall(real, subset)
    assert dropped["precision"] == 1.0                         # every sample is a real point
    assert dropped["recall"] <= 0.5                            # the other two clusters are missed
    assert dropped["recall"] >= 0.5 * precision_recall(real, real[::2])["recall"]
    fresh = four_clusters(rng, 100)[:200]                      # new draws from the kept modes
    kept = precision_recall(real, fresh)
    assert kept["precision"] > 0.9 and kept["recall"] <= 0.5


def test_outliers_lower_precision_and_leave_recall_alone():
    rng = np.random.default_rng(2)
    real, fake = gaussian(rng, 200), gaussian(rng, 200)
    outliers = gaussian(rng, 50, centre=100.0) * 0.1           # a tight clump far away
    clean = precision_recall(real, fake)
    polluted = precision_recall(real, np.concatenate([fake, outliers]))
    assert polluted["recall"] == clean["recall"]
    assert polluted["precision"] == pytest.approx(clean["precision"] * 200 / 250, abs=1e-12)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("real, fake, k, message", [
    (np.zeros((5, 3)), np.zeros((5, 4)), 3, r"different feature sizes.*\(5, 3\).*\(5, 4\)"),
    (np.zeros((0, 3)), np.zeros((5, 3)), 3, "real_features is empty"),
    (np.zeros((5, 3)), np.zeros((5, 0)), 3, "fake_features is empty"),
    (np.zeros(5), np.zeros((5, 3)), 3, r"real_features must be a 2-D array.*\(5,\)"),
    (np.zeros((5, 3)), np.full((5, 3), np.nan), 3, "fake_features holds NaN or infinite"),
    (np.full((5, 3), np.inf), np.zeros((5, 3)), 3, "real_features holds NaN or infinite"),
    (np.zeros((3, 3)), np.zeros((5, 3)), 3, "k = 3 needs more than 3 points in real_features"),
    (np.zeros((5, 3)), np.zeros((2, 3)), 3, "k = 3 needs more than 3 points in fake_features"),
    (np.zeros((5, 3)), np.zeros((5, 3)), 0, "k must be a positive integer, got 0"),
    (np.zeros((5, 3)), np.zeros((5, 3)), 1.5, "k must be a positive integer, got 1.5"),
])
def test_bad_inputs_raise_one_clear_error(real, fake, k, message):
    with pytest.raises(ValueError, match=message):
        precision_recall(real, fake, k=k)


def test_bad_batch_sizes_and_radii_raise_clear_errors():
    points = np.zeros((5, 2))
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        precision_recall(points, points, batch_size=0)
    with pytest.raises(ValueError, match="radii must be 5 finite distances >= 0.*shape \\(4,\\)"):
        in_manifold(points, points, np.ones(4))
    with pytest.raises(ValueError, match="radii must be 5 finite distances >= 0"):
        in_manifold(points, points, -np.ones(5))


# ---------------------------------------------------------------- in nanogen eval
def test_sample_quality_reports_precision_and_recall_of_the_features_it_computed(monkeypatch):
    from nanogen.data import load_dataset
    samples = load_dataset("mnist5k", "train").arrays[0][::50]         # 80 real digits
    calls = []

    def counted(images, **kwargs):
        calls.append(len(images))
        return classifier_features(images, **kwargs)
    monkeypatch.setattr(quality_module, "classifier_features", counted)
    scores = sample_quality(samples)
    assert calls == [80]                                    # the samples' features, once
    expected = precision_recall(reference_features("mnist5k", "test"),
                                classifier_features(samples), k=3)
    assert (scores["precision"], scores["recall"]) == (expected["precision"], expected["recall"])
    assert scores["precision_recall_k"] == 3 and 0.0 < scores["recall"] <= 1.0
    assert scores["num_samples"] == 80 and scores["num_reference"] == 1000


def test_sample_quality_of_two_samples_uses_k_1():
    from nanogen.data import load_dataset
    scores = sample_quality(load_dataset("mnist5k", "test").arrays[0][:2])
    assert scores["precision_recall_k"] == 1 and scores["precision"] == 1.0   # real test images


def test_the_package_names_the_function_after_its_module_is_imported():
    """Importing the submodule sets ``nanogen.metrics.precision_recall`` to the module; the
    package binds the function again (as for kid, fid and inception_score)."""
    code = ("import nanogen.metrics as m; m.sample_quality; "
            "print(all(callable(getattr(m, n)) for n in "
            "('precision_recall', 'kid', 'fid', 'inception_score')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
