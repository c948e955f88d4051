"""SWD on Laplacian-pyramid patches (nanogen.metrics.swd) and MS-SSIM (nanogen.metrics.ms_ssim):
each against a direct, loop-based implementation on small inputs; the properties the metrics
are used for (0 / 1 for identical sets and images, growth with blur, noise and a shift, lower
SSIM for noisier pairs); what sample_quality and conditional_accuracy report; bad input."""
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

import nanogen as ng
from nanogen.data import load_dataset
from nanogen.metrics import conditional_accuracy, sample_quality
from nanogen.metrics.ms_ssim import (WANG_WEIGHTS, fitting_scales, gaussian_window,
                                     mean_ms_ssim, ms_ssim, ms_ssim_within_class, ssim)
from nanogen.metrics.references import box_blur
from nanogen.metrics.swd import (BINOMIAL, laplacian_pyramid, pyramid_resolutions, swd,
                                 wasserstein_1d)

FAST = dict(patches_per_image=16, num_projections=64)      # small settings: the property tests


@pytest.fixture(scope="module")
def digits():
    images, labels = load_dataset("mnist5k", "test").arrays[:2]
    return images[::10], labels[::10]                      # 100 digits, 10 of each class


# ------------------------------------------------------------------ the direct implementations
def direct_filter_mirror(image, kernel):
    """2-D correlation of one image with ``kernel`` (odd square), borders mirrored about the
    edge pixel (d c b | a b c d | c b a), written out pixel by pixel."""
    h, w = image.shape
    r = len(kernel) // 2

    def mirror(i, n):
        while i < 0 or i >= n:
            i = -i if i < 0 else 2 * (n - 1) - i
        return i
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            out[i, j] = sum(kernel[a + r, b + r] * image[mirror(i + a, h), mirror(j + b, w)]
                            for a in range(-r, r + 1) for b in range(-r, r + 1))
    return out


def direct_swd(a, b, patches_per_image, num_projections, seed, min_resolution=7):
    """SWD written out: the pyramid by direct 2-D filtering, patches read one by one, each
    direction's 1-D distance by scipy.stats.wasserstein_distance; the same random draws (the
    seed's two streams) as nanogen.metrics.swd."""
    h2d = np.outer(BINOMIAL, BINOMIAL)
    sides = pyramid_resolutions(a.shape[2], min_resolution)
    positions_seed, directions_seed = np.random.SeedSequence(seed).spawn(2)

    def pyramid(image):                                   # one channel (H, W)
        gauss = [image.astype(np.float64)]
        for _ in sides[1:]:
            gauss.append(direct_filter_mirror(gauss[-1], h2d)[::2, ::2])
        laplace = []
        for k in range(len(sides) - 1):
            up = np.zeros((2 * gauss[k + 1].shape[0], 2 * gauss[k + 1].shape[1]))
            up[::2, ::2] = gauss[k + 1]
            up = direct_filter_mirror(up, 4 * h2d)[:gauss[k].shape[0], :gauss[k].shape[1]]
            laplace.append(gauss[k] - up)
        return laplace + [gauss[-1]]

    def descriptors(images):
        rng = np.random.default_rng(positions_seed)
        levels = [[[pyramid(img[c])[k] for c in range(img.shape[0])] for img in images]
                  for k in range(len(sides))]
        out = []
        for level in levels:
            side = level[0][0].shape[0]
            span = side - 6
            if span * span <= patches_per_image:
                spots = [(t, l) for t in range(span) for l in range(span)] * len(images)
            else:
                tops = rng.integers(0, span, size=len(images) * patches_per_image)
                lefts = rng.integers(0, span, size=len(images) * patches_per_image)
                spots = list(zip(tops, lefts))
            per_image = len(spots) // len(images)
            patches = np.array([[level[i // per_image][c][t:t + 7, l:l + 7]
                                 for c in range(images.shape[1])]
                                for i, (t, l) in enumerate(spots)])
            mean = patches.mean(axis=(0, 2, 3), keepdims=True)
            std = patches.std(axis=(0, 2, 3), keepdims=True)
            out.append(((patches - mean) / np.where(std > 0, std, 1)).reshape(len(patches), -1))
        return out

    rng = np.random.default_rng(directions_seed)
    result = {}
    for side, da, db in zip(sides, descriptors(a), descriptors(b)):
        dirs = rng.standard_normal((num_projections, da.shape[1]))    # num_projections <= 128
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        result[side] = 1e3 * np.mean([wasserstein_distance(da @ d, db @ d) for d in dirs])
    return result


def direct_ms_ssim(x, y, scales, window=7, sigma=1.5):
    """MS-SSIM of one pair of single images (C, H, W), written out window by window, with the
    centred (co)variances."""
    taps = np.arange(window) - window // 2
    g = np.exp(-taps ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    beta = np.array(WANG_WEIGHTS[:scales]) / sum(WANG_WEIGHTS[:scales])
    per_channel = []
    for xc, yc in zip(x.astype(np.float64), y.astype(np.float64)):
        value = 1.0
        for j in range(scales):
            cs_map, ssim_map = [], []
            for i in range(xc.shape[0] - window + 1):
                for k in range(xc.shape[1] - window + 1):
                    px, py = xc[i:i + window, k:k + window], yc[i:i + window, k:k + window]
                    mx, my = (w * px).sum(), (w * py).sum()
                    vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
                    cov = (w * (px - mx) * (py - my)).sum()
                    cs = (2 * cov + 0.03 ** 2) / (vx + vy + 0.03 ** 2)
                    lum = (2 * mx * my + 0.01 ** 2) / (mx ** 2 + my ** 2 + 0.01 ** 2)
                    cs_map.append(cs)
                    ssim_map.append(lum * cs)
            factor = np.mean(ssim_map) if j == scales - 1 else np.mean(cs_map)
            value *= max(factor, 0.0) ** beta[j]
            h, wd = xc.shape[0] // 2, xc.shape[1] // 2
            xc = np.array([[xc[2 * a:2 * a + 2, 2 * b:2 * b + 2].mean() for b in range(wd)]
                           for a in range(h)])
            yc = np.array([[yc[2 * a:2 * a + 2, 2 * b:2 * b + 2].mean() for b in range(wd)]
                           for a in range(h)])
        per_channel.append(value)
    return np.mean(per_channel)


# ------------------------------------------------------------------ SWD
def test_wasserstein_1d_is_scipys_for_equal_and_unequal_sizes():
    rng = np.random.default_rng(0)
    for n, m in [(5, 5), (3, 7), (6, 4), (1, 3)]:
        u, v = rng.normal(size=(4, n)), rng.normal(1.0, 2.0, size=(4, m))
        expected = [wasserstein_distance(a, b) for a, b in zip(u, v)]
        np.testing.assert_allclose(wasserstein_1d(u, v), expected, rtol=1e-12)


def test_laplacian_pyramid_levels_add_back_up_to_the_images():
    x = np.random.default_rng(1).random((2, 3, 28, 28))
    levels = laplacian_pyramid(x, 3)
    assert [lv.shape[2:] for lv in levels] == [(28, 28), (14, 14), (7, 7)]
    from nanogen.metrics.swd import _pyr_up
    rebuilt = levels[-1]
    for level in levels[-2::-1]:
        rebuilt = _pyr_up(rebuilt, level.shape[2:]) + level
    np.testing.assert_allclose(rebuilt, x, atol=1e-12)
    assert pyramid_resolutions(28) == [28, 14, 7] and pyramid_resolutions(32) == [32, 16, 8]
    assert pyramid_resolutions(28, 16) == [28] and pyramid_resolutions(64, 16) == [64, 32, 16]


@pytest.mark.parametrize("sizes, side", [((3, 3), 14), ((2, 4), 14), ((2, 3), 8)])
def test_swd_matches_the_direct_implementation(sizes, side):
    rng = np.random.default_rng(2)
    a = rng.random((sizes[0], 3, side, side), dtype=np.float32)
    b = rng.random((sizes[1], 3, side, side), dtype=np.float32) ** 2
    got = swd(a, b, patches_per_image=5, num_projections=16, seed=3)
    expected = direct_swd(a, b, 5, 16, seed=3)
    assert list(got["levels"]) == list(expected) == pyramid_resolutions(side)
    for level, value in expected.items():     # float32 projections (their code) vs float64
        assert got["levels"][level] == pytest.approx(value, rel=1e-4)
    assert got["swd"] == pytest.approx(np.mean(list(expected.values())), rel=1e-4)
    per_image = min(5, (side - 6) ** 2)        # every position once where there are fewer
    assert got["num_descriptors"][side] == (sizes[0] * per_image, sizes[1] * per_image)


def test_swd_is_exactly_zero_for_identical_sets_and_deterministic(digits):
    x = digits[0]
    for normalization in ("separate", "union"):
        result = swd(x, x.copy(), normalization=normalization, **FAST)
        assert result["swd"] == 0.0 and set(result["levels"].values()) == {0.0}
    blurred = box_blur(x)
    assert swd(x, blurred, seed=5, **FAST) == swd(x, blurred, seed=5, **FAST)
    assert swd(x, blurred, seed=5, **FAST) != swd(x, blurred, seed=6, **FAST)


def test_swd_grows_with_blur_noise_and_a_shift(digits):
    x = digits[0]
    noise = np.random.default_rng(4).standard_normal(x.shape).astype(np.float32)

    def shifted(k):
        y = np.zeros_like(x)
        y[..., k:, k:] = x[..., :28 - k, :28 - k]
        return y
    for family in ([box_blur(x, k) for k in (3, 5, 7)],
                   [np.clip(x + s * noise, 0, 1) for s in (0.05, 0.1, 0.2, 0.4)],
                   [shifted(k) for k in (2, 4, 6)]):
        values = [swd(x, y, **FAST)["swd"] for y in family]
        assert 0.0 < values[0] and np.all(np.diff(values) > 0), values


def test_swd_ignores_a_brightness_change_unless_normalised_by_the_union(digits):
    x = digits[0]
    dimmed = 0.5 * x + 0.25
    assert swd(x, dimmed, **FAST)["swd"] < 1e-3                # float32 rounding only
    assert swd(x, dimmed, normalization="union", **FAST)["swd"] > 100


def test_swd_leaves_the_random_streams_alone(digits):
    x = digits[0][:10]
    ng.manual_seed(11)
    np.random.seed(11)
    expected = (ng.rand(3).numpy(), np.random.random(3))
    ng.manual_seed(11)
    np.random.seed(11)
    swd(x, box_blur(x), **FAST)
    mean_ms_ssim(x, num_pairs=5)
    np.testing.assert_array_equal(ng.rand(3).numpy(), expected[0])
    np.testing.assert_array_equal(np.random.random(3), expected[1])


@pytest.mark.parametrize("a, b, kwargs, message", [
    (np.zeros((2, 28, 28)), np.zeros((2, 1, 28, 28)), {}, r"images_a must have shape \(N, C"),
    (np.zeros((2, 1, 28, 28)), np.zeros((2, 3, 28, 28)), {}, "one shape"),
    (np.zeros((2, 1, 28, 20)), np.zeros((2, 1, 28, 20)), {}, "square"),
    (np.zeros((2, 1, 6, 6)), np.zeros((2, 1, 6, 6)), {}, "too small for SWD.*7 pixels"),
    (np.full((2, 1, 8, 8), 2.0), np.zeros((2, 1, 8, 8)), {}, r"values in \[0, 1\]"),
    (np.zeros((2, 1, 8, 8)), np.zeros((2, 1, 8, 8)), {"normalization": "both"}, "'separate'"),
    (np.zeros((2, 1, 8, 8)), np.zeros((2, 1, 8, 8)), {"num_projections": 0}, "num_projections"),
])
def test_bad_swd_input_is_one_clear_error(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        swd(a, b, **kwargs)


# ------------------------------------------------------------------ MS-SSIM
def test_ms_ssim_of_an_image_with_itself_is_one(digits):
    x = digits[0][:5]
    np.testing.assert_allclose(ms_ssim(x, x), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ssim(x, x), 1.0, rtol=1e-12)
    assert mean_ms_ssim(np.repeat(x[:1], 4, axis=0), num_pairs=20)["ms_ssim"] == \
        pytest.approx(1.0)                                     # a collapsed set


@pytest.mark.parametrize("shape, scales", [((2, 1, 28, 28), 3), ((2, 3, 14, 16), 2),
                                           ((3, 1, 9, 8), 1)])
def test_ms_ssim_matches_the_direct_implementation(shape, scales):
    rng = np.random.default_rng(5)
    x = rng.random(shape, dtype=np.float32)         # float32, as check_images makes them
    y = np.clip(x + rng.normal(0, 0.3, shape), 0, 1).astype(np.float32)
    y[0] = 1 - x[0]                  # an anti-correlated pair: factors clipped at 0
    expected = [direct_ms_ssim(a, b, scales) for a, b in zip(x, y)]
    np.testing.assert_allclose(ms_ssim(x, y, scales=scales), expected, rtol=1e-9, atol=1e-12)


def test_ssim_is_symmetric_at_most_one_and_lower_for_noisier_pairs(digits):
    x = digits[0][:20]
    noise = np.random.default_rng(6).standard_normal(x.shape)
    previous = (np.ones(len(x)), np.ones(len(x)))
    for s in (0.02, 0.1, 0.3):
        y = np.clip(x + s * noise, 0, 1)
        for metric, last in zip((ssim, ms_ssim), previous):
            value = metric(x, y)
            np.testing.assert_allclose(value, metric(y, x), rtol=1e-12)
            assert np.all(value <= 1.0) and np.all(value < last)
        previous = (ssim(x, y), ms_ssim(x, y))


def test_mean_ms_ssim_pairs_distinct_images_and_within_class(digits):
    x, labels = digits
    first = mean_ms_ssim(x, num_pairs=300, seed=1)
    assert first == mean_ms_ssim(x, num_pairs=300, seed=1)
    assert first["ms_ssim_pairs"] == 300 and first["ms_ssim_scales"] == 3
    two = np.stack([x[0], x[1]])                               # the only pairs: (0, 1), (1, 0)
    assert mean_ms_ssim(two, num_pairs=7)["ms_ssim"] == pytest.approx(ms_ssim(x[:1], x[1:2])[0])
    within = ms_ssim_within_class(x, labels, pairs_per_class=30)
    assert within["ms_ssim_within_class_pairs"] == 300
    assert within["ms_ssim_within_class_classes"] == 10
    assert within["ms_ssim_within_class"] > first["ms_ssim"]   # digits of a class look alike
    one_each = ms_ssim_within_class(np.repeat(x[:3], 2, axis=0), np.repeat([0, 1, 2], 2))
    assert one_each["ms_ssim_within_class"] == pytest.approx(1.0)
    assert [fitting_scales(s, s) for s in (6, 7, 13, 14, 27, 28, 64)] == [0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("call, message", [
    (lambda: ms_ssim(np.zeros((2, 1, 28, 28)), np.zeros((3, 1, 28, 28))), "same shape"),
    (lambda: ms_ssim(np.zeros((2, 1, 27, 28)), np.zeros((2, 1, 27, 28))),
     "27x28 are too small for MS-SSIM with 3 scales.*at least 28"),
    (lambda: ms_ssim(np.full((1, 1, 28, 28), 1.5), np.zeros((1, 1, 28, 28))),
     r"x must have values in \[0, 1\]"),
    (lambda: ms_ssim(np.zeros((1, 28, 28)), np.zeros((1, 28, 28))), r"shape \(N, C, H, W\)"),
    (lambda: ms_ssim(np.zeros((1, 1, 28, 28)), np.zeros((1, 1, 28, 28)), scales=6),
     "5 scales"),
    (lambda: ms_ssim(np.zeros((1, 1, 28, 28)), np.zeros((1, 1, 28, 28)), weights=[1, 2]),
     "3 finite exponents"),
    (lambda: gaussian_window(6), "odd"),
    (lambda: ssim(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 5, 5))), "smaller than the 7x7"),
    (lambda: mean_ms_ssim(np.zeros((1, 1, 28, 28))), "at least 2 images"),
    (lambda: mean_ms_ssim(np.zeros((4, 1, 6, 6))), "smaller than MS-SSIM's 7x7"),
    (lambda: mean_ms_ssim(np.zeros((4, 1, 28, 28)), num_pairs=0), "num_pairs"),
    (lambda: ms_ssim_within_class(np.zeros((3, 1, 28, 28)), [0, 1, 2]), "at least 2 images"),
    (lambda: ms_ssim_within_class(np.zeros((3, 1, 28, 28)), [0.0, 1, 1]), "integer class"),
])
def test_bad_ms_ssim_input_is_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------ in sample_quality and eval
def test_sample_quality_reports_swd_and_ms_ssim_with_their_counts(digits, monkeypatch):
    import nanogen.metrics.quality as quality_module
    x = digits[0]
    calls = []

    def spy(a, b, seed):
        calls.append((a, b, seed))
        return swd(a, b, seed=seed)
    monkeypatch.setattr(quality_module, "swd", spy)
    scores = sample_quality(x, seed=2)
    [(a, b, seed)] = calls                     # the samples against the test split's images
    np.testing.assert_array_equal(a, x)
    np.testing.assert_array_equal(b, load_dataset("mnist5k", "test").arrays[0])
    assert seed == 2
    assert scores["swd"] == pytest.approx(np.mean([scores[f"swd_{s}"] for s in (28, 14, 7)]))
    assert scores["swd_num_descriptors"] == 100 * 128 and scores["swd_projections"] == 512
    assert scores["ms_ssim"] == mean_ms_ssim(x, num_pairs=1000, seed=2)["ms_ssim"]
    assert (scores["ms_ssim_pairs"], scores["ms_ssim_scales"]) == (1000, 3)
    assert all(isinstance(v, (int, float, str)) for v in scores.values())   # JSON scalars
    with pytest.raises(ValueError, match=r"mnist5k/test images, which have shape \(1, 28, 28\)"):
        sample_quality(np.zeros((3, 1, 16, 16)))


class FirstOfItsClass:
    """A 'conditional model' that draws, for each requested class, the first test digit of it."""
    conditional, num_classes, training = True, 10, False

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def sample(self, n, y=None):
        first = [np.flatnonzero(self.labels == c)[0] for c in y.numpy()]
        return ng.tensor(self.images[first])


def test_conditional_accuracy_reports_the_within_class_ms_ssim(digits):
    images, labels = digits
    collapsed = conditional_accuracy(FirstOfItsClass(images, labels), n=40)
    assert collapsed["conditional_accuracy"] == 1.0
    assert collapsed["ms_ssim_within_class"] == pytest.approx(1.0)
    assert collapsed["ms_ssim_within_class_pairs"] == 1000
    assert collapsed["ms_ssim_within_class_classes"] == 10
    few = conditional_accuracy(FirstOfItsClass(images, labels), n=10)
    assert "ms_ssim_within_class" not in few                   # one sample per class: no pair


CALL_CONDITIONAL_ACCURACY = """
import numpy as np, nanogen as ng, nanogen.metrics as m
class Blank:
    conditional, num_classes, training = True, 2, False
    def eval(self): pass
    def train(self, mode=True): pass
    def sample(self, n, y=None): return ng.tensor(np.zeros((n, 1, 28, 28), np.float32))
assert "ms_ssim_within_class" in m.conditional_accuracy(Blank(), n=4)
"""


@pytest.mark.parametrize("first", ["sample_quality", "CALL"])
def test_the_package_names_the_functions_whichever_module_loads_them_first(first):
    """``nanogen.metrics.swd`` and ``.ms_ssim`` are the functions, not their modules, also after
    sample_quality or a call of conditional_accuracy loaded those modules."""
    code = (CALL_CONDITIONAL_ACCURACY if first == "CALL" else f"import nanogen.metrics as m; "
            f"m.{first}\n") + ("print(all(callable(getattr(m, n)) for n in ('ms_ssim', 'swd', "
                               "'ssim', 'mean_ms_ssim', 'ms_ssim_within_class')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "True"
