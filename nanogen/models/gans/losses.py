r"""Adversarial losses: what the discriminator and the generator each minimise.

Every function takes the discriminator's *logits* :math:`\ell` (one per example, shape (N,)), not
its probabilities :math:`D = \sigma(\ell)`, and works with the two identities

.. math:: \log D = \log \sigma(\ell) = -\operatorname{softplus}(-\ell), \qquad
          \log (1 - D) = \log \sigma(-\ell) = -\operatorname{softplus}(\ell),

which stay finite where :math:`\sigma(\ell)` rounds to 0 or 1 in float32.

The minimax game (Goodfellow et al. 2014)
------------------------------------------
D and G play for the value

.. math:: V(D, G) = \mathbb E_{x \sim p_\text{data}} \log D(x)
                  + \mathbb E_{z \sim p(z)} \log\big(1 - D(G(z))\big),
          \qquad \min_G \max_D V(D, G).

For a fixed G the best discriminator is :math:`D^*(x) = p_\text{data}(x) / (p_\text{data}(x) +
p_g(x))`, and then :math:`V(D^*, G) = 2\,\mathrm{JSD}(p_\text{data} \| p_g) - \log 4`: the
generator minimises the Jensen-Shannon divergence to the data.  The two gradients, written
through the fake logit :math:`\ell = \ell_D(G(z))` with
:math:`d\sigma / d\ell = \sigma(1 - \sigma)`:

.. math:: \frac{\partial}{\partial \ell} \log\big(1 - \sigma(\ell)\big) = -\sigma(\ell) = -D(G(z)),
          \qquad
          \frac{\partial}{\partial \ell} \log \sigma(\ell) = 1 - \sigma(\ell) = 1 - D(G(z)).

* :func:`discriminator_loss` is :math:`-V`: binary cross-entropy with "real" = 1, "fake" = 0.
* :func:`minimax_generator_loss` is the second term of :math:`V` itself, which G minimises.
  Its gradient per fake logit is :math:`-D(G(z))`: early in training D rejects the fakes,
  :math:`D(G(z)) \approx 0`, and the generator's gradient *vanishes* (it saturates).
* :func:`non_saturating_generator_loss` is Goodfellow et al.'s fix, :math:`-\log D(G(z))`: the
  same fixed point (both push :math:`D(G(z))` up), but its gradient per fake logit is
  :math:`-(1 - D(G(z)))`, close to -1 exactly where the minimax gradient is close to 0.

:data:`ADVERSARIAL_LOSSES` pairs each generator loss with the discriminator loss it is played
against; :func:`adversarial_loss` looks a pair up by name.  (Later losses -- least squares,
Wasserstein -- come with discriminator losses of their own and join the table.)
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from ... import functional as F

__all__ = ["discriminator_loss", "minimax_generator_loss", "non_saturating_generator_loss",
           "AdversarialLoss", "ADVERSARIAL_LOSSES", "adversarial_loss"]


def _check_logits(logits, name: str):
    if logits.ndim != 1:
        raise ValueError(f"{name}: expected discriminator logits of shape (N,), got "
                         f"{tuple(logits.shape)}")


def discriminator_loss(real_logits, fake_logits):
    r""":math:`-V(D, G) = -\mathbb E \log D(x) - \mathbb E \log(1 - D(G(z)))`, the mean over each
    batch: ``softplus(-real).mean() + softplus(fake).mean()``."""
    _check_logits(real_logits, "discriminator_loss (real)")
    _check_logits(fake_logits, "discriminator_loss (fake)")
    real_term = F.softplus(-real_logits).mean()        # -E log D(x)          = E softplus(-l)
    fake_term = F.softplus(fake_logits).mean()         # -E log(1 - D(G(z)))  = E softplus(l)
    return real_term + fake_term


def minimax_generator_loss(fake_logits):
    r""":math:`\mathbb E \log(1 - D(G(z)))`, G's part of V (it minimises what D maximises).

    Gradient per fake logit (before the 1/N of the mean): :math:`-D(G(z))`, which vanishes as D
    grows confident that the samples are fake."""
    _check_logits(fake_logits, "minimax_generator_loss")
    return -F.softplus(fake_logits).mean()             # E log(1 - D) = -E softplus(l)


def non_saturating_generator_loss(fake_logits):
    r""":math:`-\mathbb E \log D(G(z))`, the non-saturating generator loss.

    Gradient per fake logit (before the 1/N of the mean): :math:`-(1 - D(G(z)))`, largest where
    D rejects the samples."""
    _check_logits(fake_logits, "non_saturating_generator_loss")
    return F.softplus(-fake_logits).mean()             # -E log D = E softplus(-l)


class AdversarialLoss(NamedTuple):
    """A game: ``discriminator(real_logits, fake_logits)`` and ``generator(fake_logits)``, each a
    scalar Tensor its player minimises."""

    discriminator: Callable
    generator: Callable


ADVERSARIAL_LOSSES = {
    "minimax": AdversarialLoss(discriminator_loss, minimax_generator_loss),
    "non-saturating": AdversarialLoss(discriminator_loss, non_saturating_generator_loss),
}


def adversarial_loss(name: str) -> AdversarialLoss:
    """The pair of losses called ``name`` (see :data:`ADVERSARIAL_LOSSES`)."""
    try:
        return ADVERSARIAL_LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown adversarial loss {name!r}; choose one of "
                         f"{', '.join(ADVERSARIAL_LOSSES)}") from None
