r"""Class-conditional DDPM with classifier-free guidance (Ho & Salimans 2022): ``ddpm-cfg``.

One network learns both the conditional noise predictor :math:`\varepsilon_\theta(x_t, t, c)`
and the unconditional one :math:`\varepsilon_\theta(x_t, t, \varnothing)`: the label's
embedding is added to the time embedding (:class:`~.unet.UNet` with ``num_classes``), and
during training each label is replaced by the null label :math:`\varnothing` with probability
:math:`p_\text{uncond}` (1).  Sampling mixes the two predictions,

.. math:: \tilde\varepsilon_\theta(x_t, t, c) = (1 + w)\, \varepsilon_\theta(x_t, t, c)
          - w\, \varepsilon_\theta(x_t, t, \varnothing)                         \text{(2)}

which for :math:`w > 0` moves each step towards images the implicit classifier
:math:`p(c \mid x_t) \propto p(x_t \mid c) / p(x_t)` finds more typical of class c: quality
and agreement with the label rise, diversity falls.  :math:`w = 0` is the plain conditional
model, :math:`w = -1` the unconditional one.  Eq. (2) replaces
:math:`\hat\varepsilon` in both samplers (ancestral and DDIM); :math:`\hat x_0` follows from it
(eq. (1) of :mod:`.objectives`) before clipping.  The two predictions come from one forward pass
on the batch stacked with itself.
"""
from __future__ import annotations

import numpy as np

from ... import functional as ops
from ...creation import arange, full, rand, tensor
from ...utils.checks import positive_int
from ..base import check_labels
from ..registry import ModelSpec, register
from .ddpm import DDPM, DDPM_KWARGS, DDPM_TRAINING

__all__ = ["GuidedDDPM"]


class GuidedDDPM(DDPM):
    """A DDPM conditioned on class labels y in 0..K-1 (``num_classes`` K), trained with label
    dropout ``p_uncond`` and sampled with guidance weight ``guidance`` w (eq. 2; ``sample``'s
    ``guidance`` overrides it).  Every other option is :class:`~.ddpm.DDPM`'s; a custom
    ``network`` must take ``(x_t, t, y)`` with y in 0..K (K: no label)."""

    conditional = True

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, p_uncond: float = 0.1,
                 guidance: float = 1.0, **kwargs):
        num_classes = positive_int(num_classes, "GuidedDDPM: num_classes")
        if not 0.0 <= p_uncond < 1.0:
            raise ValueError(f"GuidedDDPM: p_uncond must be in [0, 1), got {p_uncond!r}")
        super().__init__(image_shape, num_classes, **kwargs)
        self.p_uncond = float(p_uncond)
        self.guidance = _check_guidance(guidance)
        self._sampling_guidance = None            # w while :meth:`sample` runs

    def _network_classes(self, num_classes):
        return num_classes

    @property
    def null_label(self) -> int:
        """The label index that means "no label": K."""
        return self.num_classes

    def loss(self, x, y=None):
        """The DDPM objective on (x, y), each label dropped to the null label with probability
        ``p_uncond`` (eq. 1)."""
        labels = check_labels(y, x.shape[0], self.num_classes, "GuidedDDPM.loss")
        labels = labels.to(x.device)
        dropped = rand(x.shape[0], device=x.device) < self.p_uncond                # eq. (1)
        return super().loss(x, ops.where(dropped, full(x.shape[0], self.null_label,
                                                        dtype=labels.dtype, device=x.device),
                                         labels))

    def predict(self, x_t, t, y=None):
        r"""The DDPM's prediction for labels y (None: the null label); while :meth:`sample` runs
        with w != 0, the guided noise of eq. (2) and the clean image it implies (the variance
        output, if any, is the conditional one)."""
        n = x_t.shape[0]
        null = full(n, self.null_label, dtype=np.int64, device=x_t.device)
        w = self._sampling_guidance
        if y is None or not w:
            return super().predict(x_t, t, null if y is None else y)
        both_x0, both_eps, both_var = super().predict(
            ops.cat([x_t, x_t]), _twice(t), ops.cat([y, null]))
        eps = (1.0 + w) * both_eps[:n] - w * both_eps[n:]                          # eq. (2)
        a, b = self._signal_and_noise_scales(t, x_t)
        return (x_t - b * eps) / a, eps, None if both_var is None else both_var[:n]

    def sample(self, n: int, y=None, sampler: str = "ancestral", steps: int | None = None,
               eta: float = 0.0, guidance: float | None = None):
        """n images in [0, 1] of the classes ``y`` (n,) -- by default 0, 1, ..., K-1, 0, ... --
        with guidance weight ``guidance`` (the model's ``guidance`` when None); the samplers and
        their options are :meth:`.DDPM.sample`'s."""
        n = positive_int(n, "GuidedDDPM.sample: n")
        if y is None:
            y = arange(n) % self.num_classes
        labels = check_labels(y, n, self.num_classes, "GuidedDDPM.sample").to(self._device())
        self._sampling_guidance = _check_guidance(self.guidance if guidance is None
                                                  else guidance)
        try:
            return self._sample(n, labels, sampler, steps, eta)
        finally:
            self._sampling_guidance = None


def _twice(t):
    return np.concatenate([t, t])


def _check_guidance(w):
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0.0:
        raise ValueError(f"GuidedDDPM: guidance w must be a number >= 0, got {w!r}")
    return float(w)


register(ModelSpec(
    name="ddpm-cfg", build=GuidedDDPM, **DDPM_TRAINING,
    kwargs={**DDPM_KWARGS, "p_uncond": 0.1, "guidance": 1.0},
    summary="class-conditional DDPM with classifier-free guidance (Ho & Salimans): label "
            "embedding added to the time embedding, labels dropped with p_uncond 0.1, guided "
            "noise (1 + w) eps(x, c) - w eps(x, null), w = 1 by default (--guidance W)"))
