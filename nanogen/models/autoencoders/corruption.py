r"""The corruption processes of denoising autoencoders (Vincent et al. 2008, 2010).

A denoising autoencoder sees a corrupted copy :math:`\tilde x \sim C(\tilde x \mid x)` of each
input and is trained to reconstruct the clean :math:`x`.  Two corruptions:

* **masking noise** with fraction :math:`\nu`: each input value is kept with probability
  :math:`1 - \nu` and set to 0 otherwise,
  :math:`\tilde x_i = m_i x_i`, :math:`m_i \sim \mathrm{Bernoulli}(1 - \nu)`;
* **additive isotropic Gaussian noise** with standard deviation :math:`\sigma`:
  :math:`\tilde x = x + \sigma \varepsilon`, :math:`\varepsilon \sim \mathcal N(0, I)`
  (for images in [0, 1] the result is clipped back to [0, 1] with ``clip=True``).

Both draw from nanogen's global generator, so a training run that is resumed corrupts its
batches exactly as the uninterrupted run does.  The corrupted copy is an input, not something to
differentiate through: the functions return Tensors that do not require gradients.
"""
from __future__ import annotations

from ... import functional as ops
from ...creation import bernoulli, full_like, randn_like

__all__ = ["mask_noise", "gaussian_noise", "corrupt", "CORRUPTIONS"]


def _check_level(value, name: str, upper: float | None) -> float:
    value = float(value)
    if not (value >= 0.0 and (upper is None or value < upper)):
        bound = f"[0, {upper})" if upper is not None else ">= 0"
        raise ValueError(f"{name} must be a number in {bound}, got {value!r}")
    return value


def mask_noise(x, fraction: float):
    r""":math:`\tilde x = m \odot x`, each :math:`m_i \sim \mathrm{Bernoulli}(1 - \nu)`:
    a fraction ``fraction`` (:math:`\nu`, in [0, 1)) of the values, on average, set to 0."""
    fraction = _check_level(fraction, "mask_noise: fraction", 1.0)
    x = x.detach()
    if fraction == 0.0:
        return x
    keep = bernoulli(full_like(x, 1.0 - fraction))
    return x * keep


def gaussian_noise(x, std: float, clip: bool = True):
    r""":math:`\tilde x = x + \sigma \varepsilon`, :math:`\varepsilon \sim \mathcal N(0, I)`;
    with ``clip`` the result is clipped to [0, 1] (for images in [0, 1])."""
    std = _check_level(std, "gaussian_noise: std", None)
    x = x.detach()
    if std == 0.0:
        return x
    noisy = x + std * randn_like(x)
    return ops.clamp(noisy, 0.0, 1.0) if clip else noisy


CORRUPTIONS = {"mask": mask_noise, "gaussian": gaussian_noise}


def corrupt(x, kind: str, level: float):
    """``CORRUPTIONS[kind](x, level)``: masking noise of fraction ``level`` or Gaussian noise of
    standard deviation ``level`` (clipped to [0, 1]); ``kind="none"`` returns x unchanged."""
    if kind == "none":
        return x.detach()
    try:
        return CORRUPTIONS[kind](x, level)
    except KeyError:
        raise ValueError(f"unknown corruption {kind!r}; choose one of none, "
                         f"{', '.join(CORRUPTIONS)}") from None
