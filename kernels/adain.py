"""AdaIN, adaptive instance normalisation (StyleGAN's style injection): fused instance norm plus
a per-sample, per-channel affine map.  For x (N, C, H, W) and scale, bias (N, C)::

    μ = mean_hw(x[n, c]),  v = mean_hw((x[n, c] - μ)²),  r = 1 / sqrt(v + eps)
    x̂ = (x - μ) r,         y[n, c] = scale[n, c] · x̂ + bias[n, c]

    backward (g = gy · scale, means over the plane):
    gx = r (g - mean(g) - x̂ mean(g x̂)),   gscale = Σ_hw gy x̂,   gbias = Σ_hw gy

With H·W = 1 the plane is its own mean: x̂ = 0, y = bias, gx = 0 (r = 1/sqrt(eps) multiplies
zeros; nothing is divided by zero).

The kernels
-----------
AdaIN is the *plane* case of the fused normalisation kernels in
:mod:`nanogen.kernels.normalization`: the kernels' view (A, M, J, S) = (1, N·C, 1, H·W), one
group per (n, c) plane, and a weight table of one row per plane (Mw = M), so each plane's
scale and bias are owned by the code that normalises it:

* CPU (``forward_cpu`` / ``backward_cpu``): ``numba.njit(parallel=True, cache=True)``, a
  ``prange`` over the N·C planes; forward: mean, variance and output in three sweeps of the
  plane while it sits in cache; backward: Σ gy and Σ gy x̂ in one sweep (they are gbias and
  gscale, and give mean(g), mean(g x̂)), then gx in a second sweep.
* CUDA (``forward_cuda`` / ``backward_cuda``): ``numba.cuda``, ONE BLOCK PER PLANE with a
  shared-memory tree reduction (128 threads stride over the plane, sum into shared memory,
  halve log2(128) times; deterministic, no atomics).  The backward is one kernel: the block
  reduces the plane's sums and writes gx, gscale, gbias.

The backward's result is PACKED in one flat array ``[gx.ravel(), gscale.ravel(),
gbias.ravel()]`` (N·C·H·W + 2·N·C values), the output of one nanogen Function;
``unpack`` splits it into views (``packed=False`` returns three arrays instead, for a backward
pass that records no graph).  ``reference`` / ``reference_backward`` are plain NumPy, in
float64, written from the equations above (the ground truth of the tests).
"""
from __future__ import annotations

import numpy as np

from . import normalization as _norm

__all__ = ["plane_geometry", "reference", "reference_backward", "forward", "backward",
           "unpack", "forward_cpu", "backward_cpu", "forward_cuda", "backward_cuda"]


def plane_geometry(shape):
    """(A, Q, Mw, J, S) of the shared normalisation geometry for x of ``shape`` (N, C, H, W):
    one group and one weight row per plane."""
    N, C, H, W = shape
    return 1, 1, N * C, 1, H * W


# ================================================================ reference (plain NumPy)
def reference(x, scale, bias, eps=1e-5):
    """y = scale · (x - mean_hw) / sqrt(var_hw + eps) + bias, in float64, returned in x's
    dtype."""
    x64 = np.asarray(x, dtype=np.float64)
    mu = x64.mean(axis=(2, 3), keepdims=True)
    var = ((x64 - mu) ** 2).mean(axis=(2, 3), keepdims=True)
    xhat = (x64 - mu) / np.sqrt(var + eps)
    y = np.asarray(scale, np.float64)[:, :, None, None] * xhat \
        + np.asarray(bias, np.float64)[:, :, None, None]
    return y.astype(x.dtype)


def reference_backward(x, scale, gy, eps=1e-5):
    """(gx, gscale, gbias) from the equations of the module docstring, in float64."""
    x64 = np.asarray(x, dtype=np.float64)
    gy64 = np.asarray(gy, dtype=np.float64)
    mu = x64.mean(axis=(2, 3), keepdims=True)
    r = 1.0 / np.sqrt(((x64 - mu) ** 2).mean(axis=(2, 3), keepdims=True) + eps)
    xhat = (x64 - mu) * r
    g = gy64 * np.asarray(scale, np.float64)[:, :, None, None]
    gx = r * (g - g.mean(axis=(2, 3), keepdims=True)
              - xhat * (g * xhat).mean(axis=(2, 3), keepdims=True))
    gscale = (gy64 * xhat).sum(axis=(2, 3))
    gbias = gy64.sum(axis=(2, 3))
    return gx.astype(x.dtype), gscale.astype(x.dtype), gbias.astype(x.dtype)


# ================================================================ the kernels (plane view)
def _views(x, scale):
    A, Q, Mw, J, S = plane_geometry(x.shape)
    return x.reshape(A, Q * Mw, J, S), scale.reshape(Mw, J)


def forward(x, scale, bias, eps=1e-5, device="cpu"):
    """``(y, mean, var)``: y of x's shape, the planes' mean and biased variance (N·C,), float64.
    Arrays C-contiguous and of one dtype; ``device`` "cpu" (numba.njit) or "cuda"
    (numba.cuda)."""
    x4, w = _views(x, scale)
    y, mean, var = _norm.forward(x4, w, bias.reshape(w.shape), eps, device)
    return y.reshape(x.shape), mean, var


def backward(x, scale, gy, mean, rstd, device="cpu", packed=True):
    """The packed ``[gx, gscale, gbias]`` given the forward's mean and rstd = 1/sqrt(var+eps)
    (``packed=False``: the three arrays, shaped like x, scale and scale)."""
    x4, w = _views(x, scale)
    return _norm.backward(gy.reshape(x4.shape), x4, mean, rstd, w, device, packed,
                          shapes=(x.shape, scale.shape, scale.shape))


def unpack(packed, x_shape):
    """Views (gx, gscale, gbias) of a packed AdaIN gradient."""
    return _norm.unpack(packed, tuple(x_shape), tuple(x_shape[:2]))


def forward_cpu(x, scale, bias, eps=1e-5):
    return forward(x, scale, bias, eps, "cpu")


def backward_cpu(x, scale, gy, mean, rstd, packed=True):
    return backward(x, scale, gy, mean, rstd, "cpu", packed)


def forward_cuda(x, scale, bias, eps=1e-5):
    return forward(x, scale, bias, eps, "cuda")


def backward_cuda(x, scale, gy, mean, rstd, packed=True):
    return backward(x, scale, gy, mean, rstd, "cuda", packed)
