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
against; :func:`adversarial_loss` looks a pair up by name.

Losses on scores rather than log-odds
-------------------------------------
The later games read the discriminator's output :math:`s = D(x)` as a plain real score, not a
log-odds (``AdversarialLoss.log_odds`` is False for them; the training step then logs the mean
scores rather than mean probabilities):

* **least squares** (LSGAN, Mao et al. 2017, eq. 2): D regresses real scores to b and fake ones
  to a; G pulls its fakes' scores to c,

  .. math:: \min_D \tfrac12 \mathbb E_x (D(x) - b)^2 + \tfrac12 \mathbb E_z (D(G(z)) - a)^2,
            \qquad \min_G \tfrac12 \mathbb E_z (D(G(z)) - c)^2.

  With :math:`b - c = 1` and :math:`b - a = 2` the generator minimises the Pearson
  :math:`\chi^2` divergence between :math:`p_\text{data} + p_g` and :math:`2 p_g` (the paper's
  eq. 9, ``"least-squares"``: a = -1, b = 1, c = 0); ``"least-squares-01"`` is its 0-1 coding,
  eq. 10 (a = 0, b = c = 1).  Unlike :math:`-\log D`, the generator's gradient
  :math:`D(G(z)) - c` grows with the distance of a fake's score from c, so fakes far on the
  correct side of the decision boundary still move.
* **Wasserstein** (WGAN, Arjovsky et al. 2017): the critic estimates the Kantorovich-Rubinstein
  dual :math:`W(p_\text{data}, p_g) = \sup_{\|f\|_L \le 1} \mathbb E_x f(x) - \mathbb E_z
  f(G(z))`; it minimises :math:`\mathbb E_z f(G(z)) - \mathbb E_x f(x)` and the generator
  :math:`-\mathbb E_z f(G(z))`.  The Lipschitz constraint is the model's business, not the
  loss's: weight clipping (``wgan``) or a gradient penalty (``wgan-gp``, :mod:`.penalties`).
  ``-loss_d`` estimates W up to the critic's Lipschitz constant.
* **hinge** (Lim & Ye 2017; Miyato et al. 2018, eq. 17 of the SN-GAN paper): the critic
  minimises :math:`\mathbb E_x \max(0, 1 - D(x)) + \mathbb E_z \max(0, 1 + D(G(z)))`, the
  generator :math:`-\mathbb E_z D(G(z))`.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

from ... import functional as F

__all__ = ["discriminator_loss", "minimax_generator_loss", "non_saturating_generator_loss",
           "least_squares_discriminator_loss", "least_squares_generator_loss",
           "wasserstein_critic_loss", "wasserstein_generator_loss", "hinge_critic_loss",
           "hinge_generator_loss", "AdversarialLoss", "ADVERSARIAL_LOSSES", "adversarial_loss"]


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


def least_squares_discriminator_loss(real_scores, fake_scores, a: float = -1.0,
                                     b: float = 1.0):
    r""":math:`\tfrac12 \mathbb E (D(x) - b)^2 + \tfrac12 \mathbb E (D(G(z)) - a)^2` (LSGAN, eq. 2):
    real scores regressed to ``b``, fake ones to ``a``."""
    _check_logits(real_scores, "least_squares_discriminator_loss (real)")
    _check_logits(fake_scores, "least_squares_discriminator_loss (fake)")
    return 0.5 * ((real_scores - b) ** 2).mean() + 0.5 * ((fake_scores - a) ** 2).mean()


def least_squares_generator_loss(fake_scores, c: float = 0.0):
    r""":math:`\tfrac12 \mathbb E (D(G(z)) - c)^2`; gradient per fake score (before the 1/N of
    the mean) :math:`D(G(z)) - c`."""
    _check_logits(fake_scores, "least_squares_generator_loss")
    return 0.5 * ((fake_scores - c) ** 2).mean()


def wasserstein_critic_loss(real_scores, fake_scores):
    r""":math:`\mathbb E f(G(z)) - \mathbb E f(x)`, minus the critic's estimate of
    :math:`W(p_\text{data}, p_g)`; gradient -1/N per real score, +1/N per fake one."""
    _check_logits(real_scores, "wasserstein_critic_loss (real)")
    _check_logits(fake_scores, "wasserstein_critic_loss (fake)")
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator_loss(fake_scores):
    r""":math:`-\mathbb E f(G(z))` (also the hinge game's generator loss)."""
    _check_logits(fake_scores, "wasserstein_generator_loss")
    return -fake_scores.mean()


def hinge_critic_loss(real_scores, fake_scores):
    r""":math:`\mathbb E \max(0, 1 - D(x)) + \mathbb E \max(0, 1 + D(G(z)))`: only scores inside
    the margin (real below 1, fake above -1) have a gradient."""
    _check_logits(real_scores, "hinge_critic_loss (real)")
    _check_logits(fake_scores, "hinge_critic_loss (fake)")
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def hinge_generator_loss(fake_scores):
    r""":math:`-\mathbb E D(G(z))`, as the Wasserstein generator's."""
    _check_logits(fake_scores, "hinge_generator_loss")
    return -fake_scores.mean()


class AdversarialLoss(NamedTuple):
    r"""A game: ``discriminator(real, fake)`` and ``generator(fake)``, each a scalar Tensor its
    player minimises, on the discriminator's outputs.  ``log_odds``: those outputs are logits
    :math:`\ell` with :math:`D = \sigma(\ell)` (the GAN games; tricks that move probability
    targets, such as label smoothing, apply) rather than plain scores (least squares,
    Wasserstein, hinge).  ``name`` names a game built outside the table (a model's own, such
    as EBGAN's on energies)."""

    discriminator: Callable
    generator: Callable
    log_odds: bool = True
    name: str = ""


ADVERSARIAL_LOSSES = {
    "minimax": AdversarialLoss(discriminator_loss, minimax_generator_loss),
    "non-saturating": AdversarialLoss(discriminator_loss, non_saturating_generator_loss),
    # LSGAN eq. 9 (b - c = 1, b - a = 2: Pearson chi^2) and eq. 10, the 0-1 coding
    "least-squares": AdversarialLoss(
        functools.partial(least_squares_discriminator_loss, a=-1.0, b=1.0),
        functools.partial(least_squares_generator_loss, c=0.0), log_odds=False),
    "least-squares-01": AdversarialLoss(
        functools.partial(least_squares_discriminator_loss, a=0.0, b=1.0),
        functools.partial(least_squares_generator_loss, c=1.0), log_odds=False),
    "wasserstein": AdversarialLoss(wasserstein_critic_loss, wasserstein_generator_loss,
                                   log_odds=False),
    "hinge": AdversarialLoss(hinge_critic_loss, hinge_generator_loss, log_odds=False),
}


def adversarial_loss(name) -> AdversarialLoss:
    """The pair of losses called ``name`` (see :data:`ADVERSARIAL_LOSSES`); an
    :class:`AdversarialLoss` given instead is returned as it is."""
    if isinstance(name, AdversarialLoss):
        return name
    try:
        return ADVERSARIAL_LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown adversarial loss {name!r}; choose one of "
                         f"{', '.join(ADVERSARIAL_LOSSES)}") from None
