r"""Gradient penalties on the discriminator: WGAN-GP (Gulrajani et al. 2017) and DRAGAN (Kodali et al.
2017).

Both keep the critic's input gradient near unit norm at chosen points :math:`\hat x`,

.. math:: \Omega = \lambda\, \mathbb E_{\hat x} \big(\|\nabla_{\hat x} D(\hat x)\|_2 - 1\big)^2,
                                                                                         \tag{1}

added to the discriminator's loss; the generator's loss is unchanged.  The gradient
:math:`\nabla_{\hat x} D` is computed with ``create_graph=True``, so the discriminator's update
differentiates :math:`\Omega` through it -- a gradient of a gradient, which nanogen's autograd
supports for every op.  The two differ in where :math:`\hat x` lies:

* **WGAN-GP**: on straight lines between real and generated samples (the optimal critic has unit
  gradient norm along the lines coupling the two distributions, Proposition 1 of the paper),

  .. math:: \hat x = \epsilon x + (1 - \epsilon) \tilde x, \qquad \epsilon \sim U[0, 1]
            \text{ per example}.                                                         \tag{2}

  The Lipschitz constraint replaces WGAN's weight clipping; the critic must not use batch
  norm, which couples the examples whose gradients are penalised one by one (the paper's
  section 4 suggests layer norm).
* **DRAGAN**: in a neighbourhood of the real data only, where the paper finds the sharp
  gradients that go with mode collapse ("local equilibria"),

  .. math:: x_p = x + c\,\sigma_x\, u, \quad u \sim U[0, 1]^{D}, \qquad
            \hat x = x + \alpha (x_p - x), \quad \alpha \sim U[0, 1] \text{ per example},   \tag{3}

  with :math:`\sigma_x` the standard deviation of the real batch and c = 0.5, as in the
  authors' reference code (the paper writes :math:`x + \delta`, :math:`\delta \sim N(0, cI)`;
  the code's one-sided uniform perturbation is what was run).

R1 (Mescheder, Geiger & Nowozin 2018, used by StyleGAN) penalises the squared gradient norm on
the real data only, pushing it to zero rather than one:

.. math:: R_1 = \frac\gamma2\, \mathbb E_{x \sim p_\text{data}} \|\nabla_x D(x)\|_2^2.  \tag{4}

It has no square root, so :func:`r1_penalty` needs no epsilon.

Deviation: the norm is :math:`\sqrt{\sum_i g_i^2 + 10^{-12}}`, so that a zero gradient (a dead
critic) gives a finite second derivative instead of 0/0; the change in the value is below
float32 resolution whenever the norm is above 1e-5.
"""
from __future__ import annotations

from ... import autograd
from ...creation import rand

__all__ = ["gradient_norm_penalty", "r1_penalty", "wgan_gp_points", "dragan_points", "PENALTIES"]


def _squared_input_gradient_norms(critic, points):
    r""":math:`\|\nabla_x D(x)\|_2^2` per point, (N,), with the graph kept (create_graph) so
    that it can be differentiated in the critic's parameters; ``points`` is detached first."""
    points = points.detach().requires_grad_(True)
    scores = critic(points)
    (grad,) = autograd.grad(scores.sum(), points, create_graph=True)
    per_example = grad.reshape(grad.shape[0], -1)
    return (per_example * per_example).sum(dim=1)


def gradient_norm_penalty(critic, points):
    r"""Eq. (1) without :math:`\lambda`: the mean over the batch of
    :math:`(\|\nabla_{\hat x} D(\hat x)\|_2 - 1)^2`, differentiable in the critic's parameters.

    ``critic`` maps (N, ...) points to (N,) scores; ``points`` is detached first."""
    norms = (_squared_input_gradient_norms(critic, points) + 1e-12).sqrt()
    return ((norms - 1.0) ** 2).mean()


def r1_penalty(critic, real):
    r"""Eq. (4) without :math:`\gamma / 2`: the mean over the batch of the squared gradient norm
    :math:`\|\nabla_x D(x)\|_2^2` at the real points (target 0, no square root, so no
    epsilon), differentiable in the critic's parameters."""
    return _squared_input_gradient_norms(critic, real).mean()


def _per_example_uniform(x):
    """U[0, 1] of shape (N, 1, ..., 1), broadcasting over one example."""
    return rand(x.shape[0], *([1] * (x.ndim - 1)), dtype=x.dtype, device=x.device)


def wgan_gp_points(real, fake):
    r"""Eq. (2): a uniform random point on the segment from each fake to its real partner."""
    epsilon = _per_example_uniform(real)
    return epsilon * real.detach() + (1.0 - epsilon) * fake.detach()        # eq. (2)


def dragan_points(real, fake=None, c: float = 0.5):
    r"""Eq. (3): a uniform random point between each real example and a perturbed copy of it
    (``fake`` is not used: DRAGAN penalises around the data only)."""
    real = real.detach()
    spread = float(real.std().item())
    perturbed = real + c * spread * rand(*real.shape, dtype=real.dtype, device=real.device)
    alpha = _per_example_uniform(real)
    return real + alpha * (perturbed - real)                                # eq. (3)


#: penalty name -> where it samples the points x-hat, from a (real, fake) pair of batches
PENALTIES = {"wgan-gp": wgan_gp_points, "dragan": dragan_points}
