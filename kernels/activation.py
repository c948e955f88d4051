"""Fused CPU kernels for the smooth activations of diffusion U-Nets and transformers, SiLU and
GELU, in float32:

    SiLU   y = x σ(x) = x / (1 + e⁻ˣ)           y' = σ (1 + x (1 − σ))
    GELU   y = x Φ(x),  Φ(x) = (1 + erf(x/√2))/2   y' = Φ(x) + x φ(x),  φ(x) = e^(−x²/2) / √(2π)

Written as NumPy array code they cost one pass over memory per operator: 4 for SiLU's forward,
and 9-10 for the backward's ``gy · y'(x)`` (y'(x) is itself built of several ops).  Here each
forward and each backward is ONE ``numba.vectorize`` pass over its inputs, except for the
exponentials, which stay with NumPy: numba calls the scalar ``expf`` of libm per element (about
6 ns, SVML is not available), where NumPy's SIMD ``exp`` takes about 0.6 ns.  So:

* ``silu_forward(x)``:            e = exp(−x) (NumPy), then y = x / (1 + e)          3 passes
* ``silu_backward(gy, x, e)``:     gy σ (1 + x (1 − σ)), σ = 1 / (1 + e)               1 pass
* ``gelu_forward(x)``:            x Φ(x), erf by a rational function (no exp)        1 pass
* ``gelu_backward(gy, x, None)``: t = exp(−x²/2) (NumPy), then gy (Φ + x t / √(2π))  3 passes

Each forward returns ``(y, saved)``: what its backward can reuse instead of recomputing (SiLU's
e⁻ˣ, at the cost of keeping one more array of x's size until the backward; GELU's forward
computes no exponential, so it saves nothing).  A backward given ``saved=None`` recomputes it.

Forward + backward, measured on the 2-core CPU by ``benchmarks/bench_activation.py``: SiLU on
(64, 32, 28, 28) 9.7-12 ms as array code, 4.6-5.3 ms fused; GELU on (16, 256, 512) 19.5-23.6 ms
and 7.9-12.7 ms (PyTorch on 2 threads: 1.3-1.9 ms and 2.4-3.4 ms).

erf in float32 is Eigen's rational approximation (odd degree 13 over even degree 8 on x
clamped to [−4, 4], beyond which erf = ±1 in float32), max abs error 4e-7, a few float32 ulps.
The kernels write fresh arrays: a numba ufunc whose ``out`` is one of its inputs went through
NumPy's overlap handling and ran 2-5x slower.  The ``fastmath`` flags let LLVM vectorise and
contract (FMA) but keep IEEE infinities and NaNs (no ``nnan`` / ``ninf``): exp(−x) overflows to
inf for x < −88 and 1 / (1 + inf) = 0 is the right σ there.

These are the first-order paths only.  A backward that records a graph (``create_graph=True``,
gradients of gradients) goes through the composite array code, whose every op is
differentiable; float64 also takes that path (the tests' gradchecks).  On a GPU the composite
code runs as CuPy elementwise kernels.  ``reference_*`` are the formulas in float64 NumPy.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, vectorize

__all__ = ["erf", "silu_forward", "silu_backward", "gelu_forward", "gelu_backward",
           "reference_silu", "reference_silu_grad", "reference_gelu", "reference_gelu_grad"]

_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}     # not nnan / ninf: inf is a value here
_f = np.float32
_INV_SQRT2, _INV_SQRT_2PI = _f(1.0 / math.sqrt(2.0)), _f(1.0 / math.sqrt(2.0 * math.pi))
_A = tuple(_f(a) for a in (-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04,
                          -5.69250639462346e-05, -2.10102402082508e-06, 2.77068142495902e-08,
                          -2.72614225801306e-10))
_B = tuple(_f(b) for b in (-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03,
                          -2.13374055278905e-04, -1.45660718464996e-05))
_LO, _HI, _HALF, _ONE = _f(-4.0), _f(4.0), _f(0.5), _f(1.0)


@njit(inline="always")
def _erf_scalar(v):
    """erf(v) = p(x) / q(x), x = clamp(v, −4, 4): p odd of degree 13, q even of degree 8."""
    a0, a1, a2, a3, a4, a5, a6 = _A
    b0, b1, b2, b3, b4 = _B
    x = min(max(v, _LO), _HI)
    x2 = x * x
    p = x * ((((((a6 * x2 + a5) * x2 + a4) * x2 + a3) * x2 + a2) * x2 + a1) * x2 + a0)
    q = (((b4 * x2 + b3) * x2 + b2) * x2 + b1) * x2 + b0
    return p / q


_KERNELS = {}


def _kernels():
    """The numba ufuncs, compiled (or loaded from numba's cache) on first use."""
    if not _KERNELS:
        @vectorize(["float32(float32)"], fastmath=_FAST, cache=True)
        def erf32(v):
            return _erf_scalar(v)

        @vectorize(["float32(float32, float32)"], fastmath=_FAST, cache=True)
        def silu_from_exp(x, e):                    # e = exp(−x)
            return x / (_ONE + e)

        @vectorize(["float32(float32, float32, float32)"], fastmath=_FAST, cache=True)
        def silu_grad_from_exp(gy, x, e):
            s = _ONE / (_ONE + e)
            return gy * s * (_ONE + x * (_ONE - s))

        @vectorize(["float32(float32)"], fastmath=_FAST, cache=True)
        def gelu(x):
            return x * _HALF * (_ONE + _erf_scalar(x * _INV_SQRT2))

        @vectorize(["float32(float32, float32, float32)"], fastmath=_FAST, cache=True)
        def gelu_grad_from_exp(gy, x, t):           # t = exp(−x²/2)
            cdf = _HALF * (_ONE + _erf_scalar(x * _INV_SQRT2))
            return gy * (cdf + x * t * _INV_SQRT_2PI)

        _KERNELS.update(erf=erf32, silu=silu_from_exp, silu_grad=silu_grad_from_exp,
                        gelu=gelu, gelu_grad=gelu_grad_from_exp)
    return _KERNELS


def _exp(a, scale, out=None):
    """exp(scale · a), into ``out`` (which may be ``a``) or a fresh array; overflow to inf is
    silenced (see the module docstring)."""
    e = np.multiply(a, a.dtype.type(scale), out=out)
    with np.errstate(over="ignore"):
        return np.exp(e, out=e)


def erf(x):
    """erf of a float32 array (abs error ≤ 4e-7)."""
    return _kernels()["erf"](x)


def silu_forward(x):
    """(x σ(x), e⁻ˣ) of a float32 array."""
    e = _exp(x, -1.0)
    return _kernels()["silu"](x, e), e


def silu_backward(gy, x, e=None):
    """gy · σ(x) (1 + x (1 − σ(x))), the input gradient of SiLU (float32); e = e⁻ˣ if saved."""
    if e is None:
        e = _exp(x, -1.0)
    return _kernels()["silu_grad"](gy, x, e)


def gelu_forward(x):
    """(x Φ(x), None) of a float32 array."""
    return _kernels()["gelu"](x), None


def gelu_backward(gy, x, saved=None):
    """gy · (Φ(x) + x φ(x)), the input gradient of exact GELU (float32)."""
    t = np.multiply(x, x)
    t = _exp(t, -0.5, out=t)
    return _kernels()["gelu_grad"](gy, x, t)


# ---------------------------------------------------------------- references (float64 NumPy)
def reference_silu(x):
    x = np.asarray(x, np.float64)
    return x / (1 + np.exp(-x))


def reference_silu_grad(x):
    x = np.asarray(x, np.float64)
    s = 1 / (1 + np.exp(-x))
    return s * (1 + x * (1 - s))


def _reference_cdf(x):
    from scipy.special import erf as exact_erf
    return 0.5 * (1 + exact_erf(np.asarray(x, np.float64) / math.sqrt(2.0)))


def reference_gelu(x):
    return np.asarray(x, np.float64) * _reference_cdf(x)


def reference_gelu_grad(x):
    x = np.asarray(x, np.float64)
    return _reference_cdf(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
