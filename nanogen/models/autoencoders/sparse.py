r"""The sparse autoencoder: a wide code of sigmoid units, most of them kept near 0 by a penalty.

An autoencoder (:mod:`.ae`) whose code :math:`h = \sigma(f_\phi(x)) \in (0, 1)^d` may be wider
than the image (overcomplete) because a penalty :math:`\Omega(h)` on the code, added to the
reconstruction cross-entropy, keeps each unit inactive for most images.  Two penalties, on a
batch of N codes:

* ``penalty="kl"`` (Ng's lecture notes, "Sparse autoencoder", 2011): the average activation of
  unit j over the batch, :math:`\hat\rho_j = \frac1N \sum_n h_{nj}`, is pulled towards a small
  target :math:`\rho` by the KL divergence between Bernoulli distributions of those means,

  .. math:: \Omega(h) = \beta \sum_{j=1}^d \mathrm{KL}(\rho \,\|\, \hat\rho_j)
            = \beta \sum_j \Big[\rho \log\frac{\rho}{\hat\rho_j}
              + (1 - \rho) \log\frac{1 - \rho}{1 - \hat\rho_j}\Big];                   \quad (1)

  it is 0 when every unit is active a fraction :math:`\rho` of the time, whichever images make it
  so.  (:math:`\hat\rho_j` is clipped to :math:`[10^{-6}, 1 - 10^{-6}]` so a saturated unit gives
  a large finite penalty, not an infinite one.)
* ``penalty="l1"``: the L1 norm of each code, averaged over the batch,

  .. math:: \Omega(h) = \lambda \frac1N \sum_n \sum_j |h_{nj}|;                        \quad (2)

  it presses every activation towards 0 and has no target.

``weight`` is :math:`\beta` in (1) or :math:`\lambda` in (2).  Like the reconstruction term (nats
summed over pixels) the penalty sums over units, so its weight does not depend on how many pixels
or units there are per image.  The penalty is a batch quantity: it is added once to the batch's
mean reconstruction loss.

:meth:`SparseAutoencoder.evaluate` adds ``mean_activation``, the mean of :math:`h_{nj}` over test
images and units (to compare with ``target_rho`` = :math:`\rho`), and ``active_fraction``, the
fraction of activations above 0.5.
"""
from __future__ import annotations

import math

from ... import functional as ops
from ..registry import ModelSpec, register
from .ae import Autoencoder

__all__ = ["SparseAutoencoder", "kl_sparsity", "PENALTIES"]

PENALTIES = ("kl", "l1")
_RHO_HAT_FLOOR = 1e-6


def kl_sparsity(h, rho: float):
    r""":math:`\sum_j \mathrm{KL}(\rho \| \hat\rho_j)` with :math:`\hat\rho_j` the mean of
    column j of the codes h (N, d) in (0, 1): eq. (1) without its weight, a scalar Tensor."""
    rho_hat = ops.clamp(h.mean(0), _RHO_HAT_FLOOR, 1.0 - _RHO_HAT_FLOOR)
    return (rho * (math.log(rho) - ops.log(rho_hat))                        # eq. (1)
            + (1 - rho) * (math.log(1 - rho) - ops.log(1 - rho_hat))).sum()


class SparseAutoencoder(Autoencoder):
    """An :class:`~nanogen.models.autoencoders.ae.Autoencoder` with a sigmoid code and a
    sparsity penalty: ``penalty`` "kl" (eq. (1), target ``rho``, weight ``weight`` = beta) or
    "l1" (eq. (2), weight ``weight`` = lambda).  The other arguments are the autoencoder's; the
    defaults give an overcomplete code (500 units) with one linear layer on each side."""

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, penalty: str = "kl",
                 rho: float = 0.05, weight: float = 3.0, code_dim: int = 500,
                 architecture: str = "mlp", hidden=(), **kwargs):
        if penalty not in PENALTIES:
            raise ValueError(f"SparseAutoencoder: unknown penalty {penalty!r}; choose one of "
                             f"{', '.join(PENALTIES)}")
        if not 0.0 < float(rho) < 1.0:
            raise ValueError(f"SparseAutoencoder: rho must be in (0, 1), got {rho!r}")
        if not float(weight) >= 0.0:
            raise ValueError(f"SparseAutoencoder: weight must be a non-negative number, got "
                             f"{weight!r}")
        super().__init__(image_shape, num_classes, code_dim=code_dim, architecture=architecture,
                         hidden=hidden, **kwargs)
        self.penalty, self.rho, self.weight = penalty, float(rho), float(weight)

    def code_activation(self, pre):
        """h = sigmoid(f(x)): activations in (0, 1), read as how often a unit fires."""
        return ops.sigmoid(pre)

    def code_penalty(self, h):
        """``(Omega(h), logs)``: eq. (1) or (2) times ``weight``; logs the unweighted
        ``sparsity`` term and the batch's ``mean_activation``."""
        if self.penalty == "kl":
            term = kl_sparsity(h, self.rho)                          # eq. (1)
        else:
            term = h.abs().sum(1).mean()                             # eq. (2)
        logs = {"sparsity": float(term.item()), "mean_activation": float(h.mean().item())}
        return self.weight * term, logs

    def batch_metrics(self, x) -> dict:
        """The autoencoder's, plus the sums over images of the mean activation of the units
        and of the fraction of them above 0.5."""
        metrics = super().batch_metrics(x)
        h = self.encode(x)
        metrics["mean_activation"] = float(h.mean(1).sum().item())
        metrics["active_fraction"] = float((h > 0.5).float().mean(1).sum().item())
        return metrics

    def evaluate(self, loader) -> dict:
        """The autoencoder's test metrics, ``mean_activation`` and ``active_fraction`` (means
        over test images and units), and the target ``target_rho``."""
        return {**super().evaluate(loader), "target_rho": self.rho}

    def figures(self, x, y=None) -> dict:
        """The autoencoder's, and for one linear encoder layer ``filters``: the input weights
        of the first 100 code units as images, each scaled to [0, 1]."""
        out = super().figures(x, y)
        layers = [m for m in self.encoder.modules() if hasattr(m, "weight")]
        if len(layers) == 1 and layers[0].weight.shape[1] == math.prod(self.image_shape):
            w = layers[0].weight.detach()[:100]
            low, high = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
            w = (w - low) / (high - low + 1e-12)
            out["filters"] = (w.reshape(w.shape[0], *self.image_shape), 10)
        return out


# -- the registry: ``nanogen train sparse-ae`` ----------------------------------------------------
# Tuned on mnist5k (3,000 steps of 64, rho = 0.05; test mean activation / reconstruction MSE per
# pixel / linear-probe accuracy): lr 1e-3, beta 3: 0.064 / 0.0112 / 0.952 (still converging);
# lr 3e-3, beta 3: 0.058 / 0.0076 / 0.939; lr 3e-3, beta 10: 0.054 / 0.0089 / 0.937 -- the one
# whose units fire at the rate asked for.
register(ModelSpec(
    name="sparse-ae", build=SparseAutoencoder, steps=3000, batch_size=64, lr=3e-3,
    kwargs={"penalty": "kl", "rho": 0.05, "weight": 10.0, "code_dim": 500},
    summary="sparse autoencoder: 784 -> 500 sigmoid units -> 784, a KL(rho || rho_hat) penalty "
            "(beta = 10) holding each unit's mean activation near rho = 0.05"))
