"""The linear probe (nanogen.metrics.probe): its objective and gradient against direct formulas,
what it can and cannot separate, and how ``nanogen eval`` runs it."""
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanogen.metrics.probe import (ProbeError, fit_logistic_regression, linear_probe,
                                   probe_model, probe_objective)

from .test_cli import assert_one_line_error, run_cli, trained_run  # noqa: F401 (fixture)


def blobs(rng, n_per_class, num_classes, dim, separation):
    """Gaussian clusters, one per class, their centres ``separation`` apart on each axis."""
    centres = rng.normal(size=(num_classes, dim)) * separation
    labels = np.repeat(np.arange(num_classes), n_per_class)
    return centres[labels] + rng.normal(size=(len(labels), dim)), labels


@given(st.integers(1, 6), st.integers(2, 4), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_objective_is_the_penalised_cross_entropy_and_its_gradient_matches_differences(
        f, k, l2, seed):
    rng = np.random.default_rng(seed)
    n = 7
    features = rng.normal(size=(n, f))
    labels = rng.integers(0, k, size=n)
    onehot = np.eye(k)[labels]
    params = rng.normal(size=f * k + k)
    loss, grad = probe_objective(params, features, onehot, l2)
    w, b = params[:f * k].reshape(f, k), params[f * k:]
    logits = features @ w + b
    direct = (-np.mean([logits[i, labels[i]] - np.log(np.sum(np.exp(logits[i])))
                        for i in range(n)]) + 0.5 * l2 * np.sum(w ** 2))
    assert loss == pytest.approx(direct, rel=1e-10, abs=1e-12)
    h = 1e-6
    numeric = np.array([(probe_objective(params + h * e, features, onehot, l2)[0]
                         - probe_objective(params - h * e, features, onehot, l2)[0]) / (2 * h)
                        for e in np.eye(len(params))])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_the_fit_is_the_minimum_its_gradient_vanishes_there():
    rng = np.random.default_rng(0)
    x, y = blobs(rng, 30, 3, 4, 1.0)
    w, b = fit_logistic_regression(x, y, 3, l2=0.1)
    _, grad = probe_objective(np.concatenate([w.ravel(), b]), x, np.eye(3)[y], 0.1)
    assert np.abs(grad).max() < 1e-4


def test_separable_codes_score_near_one_and_noise_codes_near_chance():
    rng = np.random.default_rng(1)
    x, y = blobs(rng, 100, 5, 10, 4.0)
    order = rng.permutation(len(y))
    train, test = order[:400], order[400:]
    assert linear_probe(x[train], y[train], x[test], y[test])["probe_accuracy"] >= 0.97
    noise = rng.normal(size=x.shape)
    chance = linear_probe(noise[train], y[train], noise[test], y[test])["probe_accuracy"]
    assert chance < 0.4           # 5 classes: 0.2 expected; a probe that peeks at test would not be


def test_the_probe_sees_codes_only_through_their_standardised_values():
    """Scaling and shifting each feature changes nothing (the codes are standardised with the
    training codes' statistics) -- so a model is not judged by the scale of its code."""
    rng = np.random.default_rng(2)
    x, y = blobs(rng, 40, 3, 6, 1.0)
    scale, shift = rng.uniform(0.01, 100, size=6), rng.normal(size=6) * 50
    plain = linear_probe(x[:90], y[:90], x[90:], y[90:])
    moved = linear_probe(x[:90] * scale + shift, y[:90], x[90:] * scale + shift, y[90:])
    assert plain == pytest.approx(moved)


@pytest.mark.parametrize("train, test, match", [
    (np.zeros((0, 3)), np.zeros((2, 3)), "non-empty"),
    (np.zeros((4, 3)), np.zeros((2, 2)), "3 features"),
    (np.full((4, 3), np.nan), np.zeros((2, 3)), "NaN"),
])
def test_bad_codes_are_refused_with_a_clear_message(train, test, match):
    with pytest.raises(ProbeError, match=match):
        linear_probe(train, np.zeros(len(train), int), test, np.zeros(len(test), int))


def test_a_model_with_no_encoder_cannot_be_probed():
    from nanogen.models.autoregressive.pixelcnn import PixelCNN
    with pytest.raises(ProbeError, match="PixelCNN has no encoder to probe"):
        probe_model(PixelCNN(), np.zeros((2, 1, 28, 28)), [0, 1], np.zeros((2, 1, 28, 28)),
                    [0, 1])


def test_eval_probes_a_model_with_codes_unless_told_not_to(trained_run):  # noqa: F811
    status, out, err = run_cli("eval", trained_run, "--num-examples", 20)
    assert status == 0, err
    metrics = json.loads(out)
    assert 0.0 <= metrics["probe_accuracy"] <= 1.0
    assert metrics["probe_features"] == 32                      # the VAE's posterior mean
    status, out, err = run_cli("eval", trained_run, "--num-examples", 20, "--no-probe")
    assert status == 0, err
    assert "probe_accuracy" not in json.loads(out)


def test_eval_probe_on_a_model_without_an_encoder_is_one_line(tmp_path):
    out = tmp_path / "fvbn"
    status, _, err = run_cli("train", "fvbn", "--steps", 1, "--batch-size", 4, "--no-progress",
                             "--out", out)
    assert status == 0, err
    assert_one_line_error(*run_cli("eval", out, "--num-examples", 10, "--probe")[::2],
                          "--probe", "no encoder to probe")
