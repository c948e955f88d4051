r"""Paths through a latent space: linear and spherical interpolation, and grids of them.

A generator (or a VAE's decoder) that maps nearby codes to similar outputs shows it by decoding
the codes along a path between two random endpoints :math:`z_0, z_1`:

* linear interpolation, :math:`\operatorname{lerp}(z_0, z_1; t) = (1 - t)\, z_0 + t\, z_1`;
* spherical interpolation (Shoemake 1985; White 2016 for generative models), along the great
  circle through :math:`z_0` and :math:`z_1`:

  .. math:: \operatorname{slerp}(z_0, z_1; t) = \frac{\sin((1 - t)\,\Omega)}{\sin \Omega}\, z_0
            + \frac{\sin(t\,\Omega)}{\sin \Omega}\, z_1,
            \qquad \cos \Omega = \frac{z_0 \cdot z_1}{\lVert z_0 \rVert \lVert z_1 \rVert}.

Why slerp: in :math:`d` dimensions a draw from :math:`\mathcal N(0, I)` has norm close to
:math:`\sqrt d`, so almost all prior mass sits on a thin shell.  The midpoint of a straight line
between two such codes has norm about :math:`\sqrt{d/2}` -- inside the shell, where the
generator saw no codes in training.  Slerp between codes of equal norm keeps that norm, and the
angle between the interpolant and :math:`z_0` is exactly :math:`t\,\Omega`.

The functions work on NumPy arrays (Tensors are read to the host first): latent codes are small,
and the interpolants are inputs, not something to differentiate.  Codes are vectors along the
last axis; leading axes broadcast.
"""
from __future__ import annotations

import numpy as np

__all__ = ["lerp", "slerp", "interpolation_grid", "INTERPOLATIONS"]

# below this sin(Omega) the endpoints are (anti)parallel and slerp falls back to lerp
_PARALLEL = 1e-7


def _as_array(z, name: str) -> np.ndarray:
    if hasattr(z, "detach") and hasattr(z, "numpy"):
        z = z.detach().numpy()
    z = np.asarray(z)
    if z.ndim < 1 or not np.issubdtype(z.dtype, np.floating):
        raise ValueError(f"{name}: expected floating-point latent codes (..., d), got "
                         f"{z.dtype} of shape {z.shape}")
    return z


def _endpoints(z0, z1, where: str):
    z0, z1 = _as_array(z0, f"{where} (z0)"), _as_array(z1, f"{where} (z1)")
    if z0.shape != z1.shape:
        raise ValueError(f"{where}: the endpoints differ in shape, {z0.shape} and {z1.shape}")
    return z0, z1, np.result_type(z0, z1)


def _weights(t, batch_shape, where: str) -> np.ndarray:
    """t as float64 with a trailing axis to broadcast against the codes' last axis."""
    t = np.asarray(t, dtype=np.float64)
    try:
        np.broadcast_shapes(t.shape, batch_shape)
    except ValueError:
        raise ValueError(f"{where}: t of shape {t.shape} does not broadcast against the codes' "
                         f"leading shape {batch_shape}") from None
    return t[..., None]


def lerp(z0, z1, t) -> np.ndarray:
    r""":math:`(1 - t)\, z_0 + t\, z_1` for codes ``z0``, ``z1`` (..., d) and ``t`` broadcasting
    against their leading shape (...)."""
    z0, z1, dtype = _endpoints(z0, z1, "lerp")
    t = _weights(t, z0.shape[:-1], "lerp")
    return ((1.0 - t) * z0 + t * z1).astype(dtype, copy=False)


def slerp(z0, z1, t) -> np.ndarray:
    r""":math:`\frac{\sin((1-t)\Omega)}{\sin\Omega} z_0 + \frac{\sin(t\Omega)}{\sin\Omega} z_1`,
    :math:`\Omega` the angle between ``z0`` and ``z1`` (..., d); ``t`` broadcasts against (...).

    Where the endpoints are parallel, antiparallel (no single great circle joins them) or one is
    zero, the formula is 0/0 and the result is :func:`lerp`'s.
    """
    z0, z1, dtype = _endpoints(z0, z1, "slerp")
    t = _weights(t, z0.shape[:-1], "slerp")
    a, b = z0.astype(np.float64), z1.astype(np.float64)
    norms = np.linalg.norm(a, axis=-1, keepdims=True) * np.linalg.norm(b, axis=-1, keepdims=True)
    cos_omega = np.sum(a * b, axis=-1, keepdims=True) / np.where(norms > 0, norms, 1.0)
    omega = np.arccos(np.clip(cos_omega, -1.0, 1.0))                # the angle between them
    sin_omega = np.sin(omega)
    parallel = (sin_omega < _PARALLEL) | (norms == 0)
    safe_sin = np.where(parallel, 1.0, sin_omega)
    w0 = np.where(parallel, 1.0 - t, np.sin((1.0 - t) * omega) / safe_sin)   # sin((1-t)O)/sin O
    w1 = np.where(parallel, t, np.sin(t * omega) / safe_sin)                 # sin(tO)/sin O
    return (w0 * a + w1 * b).astype(dtype, copy=False)


INTERPOLATIONS = {"linear": lerp, "slerp": slerp}


def interpolation_grid(start, end, steps: int, method: str = "linear") -> np.ndarray:
    """Rows of interpolations: ``start`` and ``end`` (R, d) are R pairs of endpoints; returns
    (R * steps, d), row r's ``steps`` codes (t = 0, 1/(steps-1), ..., 1) one after another --
    decoded, a grid of R rows and ``steps`` columns whose first and last columns are the
    endpoints.  ``method`` is ``"linear"`` or ``"slerp"``."""
    if method not in INTERPOLATIONS:
        raise ValueError(f"interpolation_grid: unknown method {method!r}; choose one of "
                         f"{', '.join(INTERPOLATIONS)}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ValueError(f"interpolation_grid: steps must be an int >= 2 (the two endpoints "
                         f"included), got {steps!r}")
    start, end, _ = _endpoints(start, end, "interpolation_grid")
    if start.ndim != 2:
        raise ValueError(f"interpolation_grid: expected endpoints of shape (R, d), got "
                         f"{start.shape}")
    t = np.linspace(0.0, 1.0, int(steps))
    path = INTERPOLATIONS[method](start[:, None, :], end[:, None, :], t[None, :])  # (R, steps, d)
    return path.reshape(-1, start.shape[1])
