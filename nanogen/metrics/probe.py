r"""The linear probe: how useful a model's learned features are to a linear classifier.

A representation model (an autoencoder, a ladder network, a GAN's discriminator) maps an image
to a feature vector -- its *code*.  The standard test of those features is to freeze them and
train the simplest classifier on top: multinomial logistic regression on the codes of the
training images, scored by its accuracy on the test images.  A code that has learned the digit
classes without labels is linearly separable by class; raw pixels of mnist5k give 91.0%.

Given codes :math:`h_n \in \mathbb R^F` (standardised with the training codes' mean and
standard deviation) and labels :math:`y_n \in \{0, \dots, K-1\}`, the probe's weights
:math:`W \in \mathbb R^{F \times K}, b \in \mathbb R^K` minimise the mean cross-entropy plus an
L2 penalty on W:

.. math:: J(W, b) = -\frac1N \sum_n \log \operatorname{softmax}(h_n W + b)_{y_n}
          + \frac{\lambda}{2} \lVert W \rVert_F^2,

.. math:: \nabla_W J = \frac1N H^\top (P - Y) + \lambda W, \qquad
          \nabla_b J = \frac1N \mathbf 1^\top (P - Y),

with :math:`P` the softmax probabilities and :math:`Y` the one-hot labels.  J is convex, so
L-BFGS (scipy) finds its minimum from zero weights, deterministically.  :math:`\lambda` is chosen
from ``L2_GRID`` by accuracy on a held-out fifth of the training codes (a fixed split), then the
probe is refitted on all of them: the test images are never used to choose anything.
"""
from __future__ import annotations

import numpy as np

__all__ = ["linear_probe", "probe_model", "fit_logistic_regression", "probe_objective",
           "ProbeError", "L2_GRID"]

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)   # the penalties tried, by held-out accuracy
VALIDATION_FRACTION = 0.2
MAX_ITERATIONS = 500
CODE_BATCH = 500                         # images encoded at a time by probe_model


class ProbeError(ValueError):
    """A probe that cannot be run: a model with no encoder, codes of the wrong shape."""


def _check_codes(codes, labels, name: str):
    if hasattr(codes, "detach") and hasattr(codes, "numpy"):
        codes = codes.detach().numpy()
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) == 0:
        raise ProbeError(f"linear_probe: {name} codes must be a non-empty (N, F) array, got "
                         f"shape {codes.shape}")
    if not np.isfinite(codes).all():
        raise ProbeError(f"linear_probe: {name} codes contain NaN or infinite values")
    labels = np.asarray(labels)
    if labels.shape != (len(codes),) or labels.dtype.kind not in "iu":
        raise ProbeError(f"linear_probe: {name} labels must be {len(codes)} integers, got "
                         f"{labels.dtype} of shape {labels.shape}")
    return codes, labels.astype(np.int64)


def probe_objective(params: np.ndarray, features: np.ndarray, onehot: np.ndarray, l2: float):
    """``(J, grad J)`` of the module docstring at ``params`` = W (F*K values) then b (K)."""
    n, f = features.shape
    k = onehot.shape[1]
    w, b = params[:f * k].reshape(f, k), params[f * k:]
    logits = features @ w + b
    logits -= logits.max(axis=1, keepdims=True)                      # stable softmax
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = -(onehot * log_p).sum() / n + 0.5 * l2 * (w * w).sum()
    residual = (np.exp(log_p) - onehot) / n                           # (P - Y) / N
    grad_w = features.T @ residual + l2 * w
    grad_b = residual.sum(axis=0)
    return loss, np.concatenate([grad_w.ravel(), grad_b])


def fit_logistic_regression(features, labels, num_classes: int, l2: float):
    """W (F, K) and b (K,) minimising J for standardised ``features`` (N, F), ``labels`` (N,)."""
    from scipy.optimize import minimize
    n, f = features.shape
    onehot = np.eye(num_classes)[labels]
    start = np.zeros(f * num_classes + num_classes)
    result = minimize(probe_objective, start, args=(features, onehot, l2), jac=True,
                      method="L-BFGS-B", options={"maxiter": MAX_ITERATIONS})
    params = result.x
    return params[:f * num_classes].reshape(f, num_classes), params[f * num_classes:]


def _accuracy(w, b, features, labels) -> float:
    return float(np.mean(np.argmax(features @ w + b, axis=1) == labels))


def linear_probe(train_codes, train_labels, test_codes, test_labels,
                 l2_grid=L2_GRID, seed: int = 0) -> dict:
    """Test accuracy of logistic regression fitted on frozen training codes.

    ``*_codes`` (N, F) arrays or Tensors, ``*_labels`` (N,) integers.  Returns
    ``{"probe_accuracy", "probe_l2", "probe_features"}``: the accuracy on the test codes, the
    penalty chosen on a held-out fifth of the training codes (split with ``seed``), and F."""
    train, train_y = _check_codes(train_codes, train_labels, "train")
    test, test_y = _check_codes(test_codes, test_labels, "test")
    if train.shape[1] != test.shape[1]:
        raise ProbeError(f"linear_probe: train codes have {train.shape[1]} features, test codes "
                         f"{test.shape[1]}")
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)                 # constant features stay constant (0)
    train, test = (train - mean) / std, (test - mean) / std
    order = np.random.default_rng(seed).permutation(len(train))
    held = order[:int(round(VALIDATION_FRACTION * len(train)))]
    fit = order[len(held):]
    if len(held) == 0 or len(fit) == 0 or len(l2_grid) == 1:
        best = l2_grid[0]
    else:
        scores = [_accuracy(*fit_logistic_regression(train[fit], train_y[fit], num_classes, l2),
                            train[held], train_y[held]) for l2 in l2_grid]
        best = l2_grid[int(np.argmax(scores))]                # ties: the smallest penalty
    w, b = fit_logistic_regression(train, train_y, num_classes, best)
    return {"probe_accuracy": _accuracy(w, b, test, test_y), "probe_l2": float(best),
            "probe_features": int(train.shape[1])}


def _codes_of(model, images: np.ndarray, device) -> np.ndarray:
    from ..autograd import no_grad
    from ..creation import tensor
    parts = []
    with no_grad():
        for start in range(0, len(images), CODE_BATCH):
            codes = model.codes(tensor(images[start:start + CODE_BATCH], device=device))
            parts.append(np.asarray(codes.detach().numpy(), dtype=np.float64)
                         .reshape(len(codes), -1))
    return np.concatenate(parts)


def probe_model(model, train_images, train_labels, test_images, test_labels,
                device: str = "cpu") -> dict:
    """:func:`linear_probe` on ``model.codes`` of the images (arrays (N, C, H, W) as the model
    takes them); a :class:`ProbeError` for a model that defines no ``codes``."""
    if not callable(getattr(model, "codes", None)):
        raise ProbeError(f"{type(model).__name__} has no encoder to probe: a linear probe needs "
                         f"a model that defines codes(x) (the autoencoders do)")
    was_training = model.training
    model.eval()
    try:
        train = _codes_of(model, np.asarray(train_images), device)
        test = _codes_of(model, np.asarray(test_images), device)
    finally:
        model.train(was_training)
    return linear_probe(train, train_labels, test, test_labels)
