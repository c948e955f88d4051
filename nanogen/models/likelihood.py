r"""Log-densities and divergences shared by the likelihood models (PixelCNN, VAE, ...).

Every function returns one value per example: it sums over all dimensions but the first, so the
results are log-likelihoods in nats per image, the unit the papers report.

* Bernoulli pixels with logits :math:`\ell` (:math:`p = \sigma(\ell)`):

  .. math:: \log p(x) = \sum_i x_i \ell_i - \operatorname{softplus}(\ell_i)

  (:math:`x\log\sigma(\ell) + (1-x)\log(1-\sigma(\ell))`, rewritten to be stable for any
  :math:`\ell`).
* A diagonal Gaussian :math:`\mathcal N(\mu, \operatorname{diag} e^{v})`, with
  :math:`v = \log\sigma^2`:

  .. math:: \log q(z) = -\tfrac12 \sum_j \big[\log 2\pi + v_j + (z_j - \mu_j)^2 e^{-v_j}\big]

* Its KL divergence to the standard normal, in closed form:

  .. math:: \mathrm{KL}\big(\mathcal N(\mu, e^{v}) \,\|\, \mathcal N(0, I)\big)
            = \tfrac12 \sum_j \big[\mu_j^2 + e^{v_j} - v_j - 1\big]

* :math:`\log \frac1k \sum_i e^{a_i}`, computed as :math:`m + \log\frac1k\sum_i e^{a_i - m}` with
  :math:`m = \max_i a_i`, for importance-weighted bounds.
"""
from __future__ import annotations

import math

from .. import functional as ops
from ..nn import functional as F

__all__ = ["check_binary", "sum_per_example", "bernoulli_log_prob", "gaussian_log_prob", "standard_normal_log_prob",
           "gaussian_kl_to_standard", "log_mean_exp"]

_LOG_2PI = math.log(2.0 * math.pi)


def check_binary(x, what: str) -> None:
    """Refuse data that is not all 0 or 1 -- a [0, 1] image has no likelihood under Bernoulli
    units -- with a ValueError that names ``what`` and a value found."""
    x = x.detach()
    if not bool(((x == 0) | (x == 1)).all().item()):      # on x's device: one number back
        values = x.to("cpu").numpy()
        bad = values[(values != 0) & (values != 1)]
        raise ValueError(f"{what}: pixels must be 0 or 1 (Bernoulli model; binarize the images "
                         f"of shape {tuple(x.shape)} first), got values such as "
                         f"{float(bad.flat[0])!r}")


def sum_per_example(t):
    """(N, ...) -> (N,): the sum over everything but the batch axis (log-densities of
    independent dimensions add up to the example's)."""
    return t.reshape(t.shape[0], -1).sum(1)


def bernoulli_log_prob(logits, x):
    """log p(x) per example for Bernoulli variables with the given logits (x in {0, 1}):
    sum_i x_i l_i - softplus(l_i).  For grey targets x in [0, 1] the same sum is minus the
    cross-entropy of two Bernoulli distributions (the autoencoders' reconstruction loss)."""
    if logits.shape != x.shape:
        raise ValueError(f"bernoulli_log_prob: logits shape {tuple(logits.shape)} and data shape "
                         f"{tuple(x.shape)} differ")
    return sum_per_example(x * logits - F.softplus(logits))


def gaussian_log_prob(z, mu, logvar):
    """log N(z; mu, diag(exp(logvar))) per example."""
    return -0.5 * sum_per_example(_LOG_2PI + logvar + (z - mu) ** 2 * ops.exp(-logvar))


def standard_normal_log_prob(z):
    """log N(z; 0, I) per example."""
    return -0.5 * sum_per_example(_LOG_2PI + z ** 2)


def gaussian_kl_to_standard(mu, logvar):
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example, in closed form."""
    return 0.5 * sum_per_example(mu ** 2 + ops.exp(logvar) - logvar - 1.0)


def log_mean_exp(a, dim):
    """log mean_i exp(a_i) along ``dim``, without overflow."""
    m = a.detach().amax(dim=dim, keepdim=True)
    return (m + ops.log(ops.exp(a - m).mean(dim=dim, keepdim=True))).squeeze(dim)
