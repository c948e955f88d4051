"""Gradient checking: analytic gradients against central finite differences, in float64.

``gradcheck(f, inputs)`` draws a fixed random cotangent u for f's output and compares

    analytic:  ∂/∂x <u, f(x)>   (one reverse pass)
    numeric:   (<u, f(x + εe)> - <u, f(x - εe)>) / 2ε      for every element e of every input

``mode="directional"`` replaces the loop over elements by a few random directions v,
comparing <∇, v> with (<u, f(x + εv)> - <u, f(x - εv)>) / 2ε: two forward passes per direction,
so large inputs stay cheap (Chainer's ``check_backward`` does the same).

``gradgradcheck(f, inputs)`` applies gradcheck to the map (x, u) ↦ ∂<u, f(x)>/∂x built with
``create_graph=True``: it checks that backward passes are themselves correctly differentiable.

Tolerances: what float64 central differences can resolve
--------------------------------------------------------
Write φ(x) = <u, f(x)> and Φ = Σ|u ⊙ f| over the terms a step moves.  The central difference
D(h) with step h = 1e-6 is off by

    truncation   h² |φ‴| / 6        and        rounding   about ε_mach Φ / h

(each evaluation of φ is exact to a few ε_mach Φ; subtracting u ⊙ f(x + h) − u ⊙ f(x − h)
term by term before summing makes the terms the step did not move cancel exactly, so only the
moved ones count).  Both are near 1e-10 of the gradient on the inputs the tests draw (0.1 or
more from kinks and domain edges), so an element passes when

    |analytic − numeric| ≤ rtol |numeric| + atol,        rtol = 1e-7,

    atol = noise ε_mach (Φ / h + Φ(x) + Σ|u|) + 1e-9 max|numeric| + 2 |D(h) − D(10h)|

with ``noise = 64`` and the terms there for these reasons:

* Φ / h: the rounding bound above, with room (64) for ops that add up many terms.
* Φ(x) + Σ|u|: the analytic side's own rounding, of terms the size of φ's (or of u, where f
  does not move at all: a normalised group of one element).
* 1e-9 of the input's largest gradient: an element whose gradient is tiny next to the others
  is compared at the others' scale (its truncation error, h²|φ‴|/6, need not be tiny too).
* |D(h) − D(10h)|: the error measured rather than predicted.  D(10h) has a tenth of D(h)'s
  rounding noise, so their difference shows D(h)'s noise where an op cancels large
  intermediates down to a small output (a normalisation of two elements, where x̂ = ±1
  whatever x is) and the Φ bound cannot see it; and 100 times its truncation error where φ
  curves hard.  A wrong analytic gradient does not enter it.

The tolerance is thus scaled to the output and to what the numbers can resolve: a backward
wrong by one part in 10⁶ fails (``python -m tests.mutation`` checks exactly that, op by op),
where the old atol 1e-5 / rtol 1e-3 passed errors of one part in 10⁴.  A caller that needs
more room passes ``rtol`` / ``atol`` / ``noise``, with the reason beside it.
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


EPS = float(np.finfo(np.float64).eps)
FLOOR = 1e-9    # of an input's largest gradient: the absolute part's floor (module docstring)
SPREAD = 2.0    # times |D(h) − D(10h)|: the measured error of the difference (module docstring)


def _terms(func, inputs, cotangents):
    """The terms u ⊙ f(x) whose sum is φ = <u, f(x)>, one array per output."""
    # grad mode stays on: func may itself differentiate (gradgradcheck's first derivative)
    return [o._host().astype(np.float64) * u for o, u in zip(_outputs(func(*inputs)),
                                                               cotangents)]


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


def gradcheck(func, inputs, eps=1e-6, atol=None, rtol=1e-7, noise=64.0, mode="full",
              n_directions=2, seed=0, raise_exception=True):
    """Check the gradients of ``func`` at ``inputs`` (a Tensor or a sequence of them).

    Only inputs with ``requires_grad=True`` are checked.  ``eps`` is the step h.  An element
    passes when ``|analytic − numeric| ≤ rtol·|numeric| + atol``; ``atol`` defaults to the
    bound the module docstring derives, element by element (a number given instead replaces
    it).  Returns True, or raises :class:`GradcheckError` describing the worst disagreement
    (or returns False when ``raise_exception=False``)."""
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    diff = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not diff:
        raise ValueError("gradcheck: no input requires grad")
    _check_dtypes(inputs, diff)
    rng = np.random.default_rng(seed)
    outs = _outputs(func(*inputs))
    cotangents = [rng.standard_normal(o.shape) for o in outs]
    analytic = _analytic(func, inputs, diff, cotangents)
    # the analytic side's rounding: terms the size of φ's, or of u where f does not move
    terms = _terms(func, inputs, cotangents)
    analytic_rounding = noise * EPS * (sum(float(np.sum(np.abs(t))) for t in terms) +
                                       sum(float(np.sum(np.abs(u))) for u in cotangents))

    def derivative(move):
        """The central difference along the perturbation ``move(step)`` applies (it sets the
        inputs to x + step·v and returns u ⊙ f there), with its error bound."""
        def central(h):
            plus, minus = move(h), move(-h)
            # term by term before summing: the terms that did not move cancel exactly
            value = sum(float(np.sum(p - m)) for p, m in zip(plus, minus)) / (2 * h)
            moved = sum(float(np.sum(np.maximum(np.abs(p), np.abs(m))[p != m]))
                        for p, m in zip(plus, minus))
            return value, moved
        d1, moved = central(eps)
        move(0.0)
        if atol is not None:
            return d1, atol
        d2, _ = central(10 * eps)
        move(0.0)
        return d1, noise * EPS * moved / eps + analytic_rounding + SPREAD * abs(d1 - d2)

    try:
        if mode == "full":
            for i, a in zip(diff, analytic):
                arr = inputs[i].data
                num, bound = np.zeros(arr.shape), np.zeros(arr.shape)
                flat = arr.reshape(-1)        # a view: inputs are perturbed in place
                if flat.size and not np.shares_memory(flat, arr):   # (empty: nothing to do)
                    raise ValueError("gradcheck: inputs must be contiguous arrays")
                for j in range(flat.size):
                    orig = flat[j].item()

                    def move(step):
                        flat[j] = orig + step
                        return _terms(func, inputs, cotangents)
                    num.reshape(-1)[j], bound.reshape(-1)[j] = derivative(move)
                    flat[j] = orig
                if atol is None:
                    bound += FLOOR * np.max(np.abs(num), initial=0.0)
                _compare(a, num, bound, rtol, f"input {i} (shape {tuple(arr.shape)})")
        elif mode == "directional":
            for k in range(n_directions):
                dirs = [rng.standard_normal(inputs[i].shape) for i in diff]
                norm = np.sqrt(sum(float((d * d).sum()) for d in dirs)) or 1.0
                dirs = [d / norm for d in dirs]
                origs = [inputs[i].data.copy() for i in diff]

                def move(step):
                    for i, d, o in zip(diff, dirs, origs):
                        inputs[i].data[...] = o + step * d
                    return _terms(func, inputs, cotangents)
                num, bound = derivative(move)
                for i, o in zip(diff, origs):
                    inputs[i].data[...] = o
                if atol is None:
                    bound += FLOOR * abs(num)
                ana = sum(float((a * d).sum()) for a, d in zip(analytic, dirs))
                _compare(np.array([ana]), np.array([num]), bound, rtol, f"direction {k}")
        else:
            raise ValueError(f"gradcheck: mode must be 'full' or 'directional', got {mode!r}")
    except GradcheckError:
        if raise_exception:
            raise
        return False
    return True


def _compare(analytic, numeric, atol, rtol, what):
    """``atol`` is a number or an array of numeric's shape (one bound per element)."""
    err = np.abs(analytic - numeric)
    tol = atol + rtol * np.abs(numeric)
    if not np.all(err <= tol) or not np.all(np.isfinite(analytic)):
        j = int(np.argmax(np.where(np.isfinite(err), err - tol, np.inf)))
        idx = np.unravel_index(j, analytic.shape) if analytic.ndim else ()
        raise GradcheckError(
            f"gradient mismatch for {what} at index {tuple(int(v) for v in idx)}: analytic "
            f"{analytic.reshape(-1)[j]:.8g} vs numeric {numeric.reshape(-1)[j]:.8g} "
            f"(max abs error {np.nanmax(err):.3g}, atol there "
            f"{np.broadcast_to(atol, err.shape).reshape(-1)[j]:.3g}, rtol {rtol:.3g})")


def gradgradcheck(func, inputs, eps=1e-6, atol=None, rtol=1e-7, noise=64.0, mode="full",
                  n_directions=2, seed=0, raise_exception=True):
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

    return gradcheck(first_derivative, inputs + us, eps=eps, atol=atol, rtol=rtol, noise=noise,
                     mode=mode, n_directions=n_directions, seed=seed + 2,
                     raise_exception=raise_exception)


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
