r"""A Gaussian fitted to an autoencoder's training codes, so that a model with no prior of its
own (the plain, denoising, sparse and stacked autoencoders) can still draw images.

The model keeps two buffers, the running mean :math:`\mu` and second moment :math:`S` of the
codes :math:`h` it has seen in training, each moved a step towards the batch's after every
update (an exponential moving average with decay :math:`\delta`):

.. math:: \mu \leftarrow \delta\,\mu + (1 - \delta)\,\overline{h}, \qquad
          S \leftarrow \delta\,S + (1 - \delta)\,\overline{h h^\top}
          \quad \Big(\overline{h h^\top} = \tfrac1N h^\top h\Big),

and draws codes from :math:`\mathcal N(\mu, \Sigma)` with :math:`\Sigma = S - \mu\mu^\top`,
as :math:`h = \mu + L\varepsilon`, :math:`L L^\top = \Sigma` (from :math:`\Sigma`'s eigenvalues,
those pushed below 0 by rounding set to 0).  The buffers live in the model, so checkpoints keep
them and resume is exact.

A Gaussian is a crude density for codes that lie on a thinner, curved set: decoded, its draws
are blurred blends of digits that show which part of code space the decoder has learnt -- not
the samples of a generative model.
"""
from __future__ import annotations

import numpy as np

from ...autograd import no_grad
from ...creation import randn, tensor
from ...utils.checks import positive_int

__all__ = ["track_code_moments", "draw_codes"]


def track_code_moments(mean, second_moment, h, decay: float) -> None:
    r"""Move the buffers ``mean`` (d,) and ``second_moment`` (d, d) in place towards the batch
    of codes ``h`` (N, d): :math:`\mu \leftarrow \delta\mu + (1 - \delta)\overline h`, and the
    same for :math:`S`."""
    with no_grad():
        h = h.detach()
        batch_second = (h.transpose(0, 1) @ h) / h.shape[0]
        mean.copy_(mean * decay + h.mean(0) * (1.0 - decay))
        second_moment.copy_(second_moment * decay + batch_second * (1.0 - decay))


def draw_codes(mean, second_moment, n: int, where: str):
    r"""``n`` codes (n, d) from :math:`\mathcal N(\mu, S - \mu\mu^\top)` given the buffers,
    :math:`\varepsilon` from the global generator, on the buffers' device and dtype."""
    n = positive_int(n, f"{where}: n")
    mu = mean.detach().to("cpu").numpy().astype(np.float64)
    cov = second_moment.detach().to("cpu").numpy().astype(np.float64) - np.outer(mu, mu)
    values, vectors = np.linalg.eigh(0.5 * (cov + cov.T))
    root = vectors * np.sqrt(np.clip(values, 0.0, None))              # root @ root.T = cov
    device, dtype = mean.device, mean.dtype
    with no_grad():
        eps = randn(n, len(mu), device=device, dtype=dtype)
        return (tensor(mu, dtype=dtype, device=device)
                + eps @ tensor(root.T, dtype=dtype, device=device))
