"""Gradient checking: analytic gradients against central finite differences, in float64.

``gradcheck(f, inputs)`` draws a fixed random cotangent u for f's output and compares

    analytic:  ∂/∂x <u, f(x)>   (one reverse pass)
    numeric:   (<u, f(x + εe)> - <u, f(x - εe)>) / 2ε      for every element e of every input

``mode="directional"`` replaces the loop over elements by a few random directions v,
comparing <∇, v> with (<u, f(x + εv)> - <u, f(x - εv)>) / 2ε: two forward passes per direction,
so large inputs stay cheap (Chainer's ``check_backward`` does the same).

``gradgradcheck(f, inputs)`` applies gradcheck to the map (x, u) ↦ ∂<u, f(x)>/∂x built with
``create_graph=True``: it checks that backward passes are themselves correctly differentiable.
"""
from __future__ import annotations

import numpy as np

from .autograd import grad
from .tensor import Tensor

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError", "assert_close"]


class GradcheckError(AssertionError):
    """Analytic and numeric gradients disagree."""


def _outputs(out):
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]


def _scalar(func, inputs, cotangents):
    # grad mode stays on: func may itself differentiate (gradgradcheck's first derivative)
    outs = _outputs(func(*inputs))
    return float(sum(np.sum(o._host().astype(np.float64) * u) for o, u in
                         zip(outs, cotangents)))


def _analytic(func, inputs, diff, cotangents):
    outs = _outputs(func(*inputs))
    pairs = [(o, u) for o, u in zip(outs, cotangents) if o.requires_grad]
    if not pairs:
        return [np.zeros(inputs[i].shape) for i in diff]
    gs = grad([o for o, _ in pairs], [inputs[i] for i in diff],
              grad_outputs=[Tensor._make(o._xp().asarray(u, dtype=o.dtype), o.device)
                            for o, u in pairs], allow_unused=True)
    return [np.zeros(inputs[i].shape) if g is None else np.asarray(g._host(), dtype=np.float64)
            for i, g in zip(diff, gs)]


def _check_dtypes(inputs, diff):
    for i in diff:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences "
                            f"need float64 inputs (use .double())")


def gradcheck(func, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, mode="full", n_directions=2,
              seed=0, raise_exception=True):
    """Check the gradients of ``func`` at ``inputs`` (a Tensor or a sequence of them).

    Only inputs with ``requires_grad=True`` are checked.  Returns True, or raises
    :class:`GradcheckError` describing the worst disagreement (or returns False when
    ``raise_exception=False``)."""
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    diff = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not diff:
        raise ValueError("gradcheck: no input requires grad")
    _check_dtypes(inputs, diff)
    rng = np.random.default_rng(seed)
    outs = _outputs(func(*inputs))
    cotangents = [rng.standard_normal(o.shape) for o in outs]
    analytic = _analytic(func, inputs, diff, cotangents)

    def f():
        return _scalar(func, inputs, cotangents)

    try:
        if mode == "full":
            for i, a in zip(diff, analytic):
                arr = inputs[i].data
                num = np.zeros(arr.shape)
                flat = arr.reshape(-1)        # a view: inputs are perturbed in place
                if flat.size and not np.shares_memory(flat, arr):   # (empty: nothing to do)
                    raise ValueError("gradcheck: inputs must be contiguous arrays")
                for j in range(flat.size):
                    orig = flat[j].item()
                    flat[j] = orig + eps
                    plus = f()
                    flat[j] = orig - eps
                    minus = f()
                    flat[j] = orig
                    num.reshape(-1)[j] = (plus - minus) / (2 * eps)
                _compare(a, num, atol, rtol, f"input {i} (shape {tuple(arr.shape)})")
        elif mode == "directional":
            for k in range(n_directions):
                dirs = [rng.standard_normal(inputs[i].shape) for i in diff]
                norm = np.sqrt(sum(float((d * d).sum()) for d in dirs)) or 1.0
                dirs = [d / norm for d in dirs]
                origs = [inputs[i].data.copy() for i in diff]

                def shifted(sign):
                    for i, d, o in zip(diff, dirs, origs):
                        inputs[i].data[...] = o + sign * eps * d
                    return f()
                plus, minus = shifted(1.0), shifted(-1.0)
                for i, o in zip(diff, origs):
                    inputs[i].data[...] = o
                num = (plus - minus) / (2 * eps)
                ana = sum(float((a * d).sum()) for a, d in zip(analytic, dirs))
                _compare(np.array([ana]), np.array([num]), atol, rtol, f"direction {k}")
        else:
            raise ValueError(f"gradcheck: mode must be 'full' or 'directional', got {mode!r}")
    except GradcheckError:
        if raise_exception:
            raise
        return False
    return True


def _compare(analytic, numeric, atol, rtol, what):
    err = np.abs(analytic - numeric)
    tol = atol + rtol * np.abs(numeric)
    if not np.all(err <= tol) or not np.all(np.isfinite(analytic)):
        j = int(np.argmax(np.where(np.isfinite(err), err - tol, np.inf)))
        idx = np.unravel_index(j, analytic.shape) if analytic.ndim else ()
        raise GradcheckError(
            f"gradient mismatch for {what} at index {tuple(int(v) for v in idx)}: analytic "
            f"{analytic.reshape(-1)[j]:.8g} vs numeric {numeric.reshape(-1)[j]:.8g} "
            f"(max abs error {np.nanmax(err):.3g}, atol {atol}, rtol {rtol})")


def gradgradcheck(func, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, mode="full", n_directions=2,
                  seed=0, raise_exception=True):
    """Check second derivatives: gradcheck of (x, u) ↦ ∂<u, func(x)>/∂x (create_graph=True),
    differentiated with respect to both x and the cotangent u."""
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    diff = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not diff:
        raise ValueError("gradgradcheck: no input requires grad")
    _check_dtypes(inputs, diff)
    outs = _outputs(func(*inputs))
    rng = np.random.default_rng(seed + 1)
    us = [Tensor(rng.standard_normal(o.shape), requires_grad=True).to(o.device) for o in outs]
    n = len(inputs)

    def first_derivative(*args):
        xs, u = list(args[:n]), list(args[n:])
        out = _outputs(func(*xs))
        pairs = [(o, g) for o, g in zip(out, u) if o.requires_grad]
        if not pairs:
            return tuple(xs[i] * 0.0 for i in diff)
        gs = grad([o for o, _ in pairs], [xs[i] for i in diff],
                  grad_outputs=[g for _, g in pairs], create_graph=True, allow_unused=True)
        return tuple(xs[i] * 0.0 if g is None else g for i, g in zip(diff, gs))

    return gradcheck(first_derivative, inputs + us, eps=eps, atol=atol, rtol=rtol, mode=mode,
                     n_directions=n_directions, seed=seed + 2, raise_exception=raise_exception)


def assert_close(actual, expected, rtol=1e-5, atol=1e-8, msg=""):
    """Compare tensors / arrays / numbers elementwise; the message shows the worst element."""
    a = np.asarray(actual._host() if isinstance(actual, Tensor) else actual, dtype=np.float64)
    e = np.asarray(expected._host() if isinstance(expected, Tensor) else expected,
                   dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"{msg} shape mismatch: {a.shape} vs {e.shape}")
    err = np.abs(a - e)
    bad = ~(err <= atol + rtol * np.abs(e))
    bad &= ~(np.isnan(a) & np.isnan(e))
    if bad.any():
        j = int(np.argmax(np.where(bad, err, -1)))
        idx = np.unravel_index(j, a.shape) if a.ndim else ()
        raise AssertionError(f"{msg} {int(bad.sum())} of {a.size} elements differ; worst at "
                             f"{tuple(int(i) for i in idx)}: {a.reshape(-1)[j]!r} vs "
                             f"{e.reshape(-1)[j]!r}")
