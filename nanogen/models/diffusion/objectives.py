r"""What a diffusion network predicts, how its error is weighted over :math:`t`, and the learned
reverse variance of Improved DDPM.

**Parameterisations.**  Given :math:`x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,
\varepsilon`, any one of three targets determines the other two (``prediction``):

* ``"epsilon"`` (Ho et al. 2020): the noise :math:`\varepsilon`;
* ``"x0"``: the clean image :math:`x_0`;
* ``"v"`` (Salimans & Ho 2022): the velocity
  :math:`v = \sqrt{\bar\alpha_t}\, \varepsilon - \sqrt{1 - \bar\alpha_t}\, x_0`.

With :math:`a = \sqrt{\bar\alpha_t}`, :math:`b = \sqrt{1 - \bar\alpha_t}` (so :math:`a^2 + b^2 = 1`):

.. math::
    \hat x_0 = (x_t - b\,\hat\varepsilon) / a, \qquad          \text{(1: from } \hat\varepsilon)

    \hat\varepsilon = (x_t - a\,\hat x_0) / b, \qquad          \text{(2: from } \hat x_0)

    \hat x_0 = a\, x_t - b\, \hat v, \quad
    \hat\varepsilon = b\, x_t + a\, \hat v.                    \text{(3: from } \hat v)

Their errors are proportional, :math:`\|\varepsilon - \hat\varepsilon\|^2 = \mathrm{SNR}_t
\|x_0 - \hat x_0\|^2 = \bar\alpha_t \|v - \hat v\|^2` with :math:`\mathrm{SNR}_t = \bar\alpha_t /
(1 - \bar\alpha_t)` (4): the three mean-squared errors are one objective under three
weightings over :math:`t`.

**Weightings** (``weighting``) of the network's own mean-squared error
:math:`\|y - \hat y\|^2`, y its target:

* ``"simple"``: :math:`\lambda_t = 1` -- for :math:`\varepsilon`-prediction Ho et al.'s
  :math:`L_\text{simple}`;
* ``"p2"`` (Choi et al. 2022, perception-prioritised):
  :math:`\lambda_t = 1 / (k + \mathrm{SNR}_t)^\gamma` (5), which moves weight from the nearly clean
  steps (large SNR: imperceptible details) to the coarse and content steps; :math:`\gamma = 0` is
  ``"simple"``;
* ``"vlb"``: the true variational bound, the KL term :math:`L_{t-1}` itself (and the decoder's
  :math:`L_0` at t = 1) rather than a squared error.  With a fixed variance :math:`\sigma_t^2` the
  KL is :math:`\frac{1}{2\sigma_t^2}\|\tilde\mu_t - \mu_\theta\|^2` plus a constant, the lectures'

  .. math:: \lambda_t = \frac{\beta_t^2}{2 \sigma_t^2\, \alpha_t (1 - \bar\alpha_t)}
            \quad \text{on } \|\varepsilon - \hat\varepsilon\|^2            \text{(6)}

  (:func:`vlb_epsilon_weight`), which is large at small t: likelihood-trained models spend their
  capacity on imperceptible detail, hence better bits/dim and worse FID than ``"simple"``.

**Learned variances** (Nichol & Dhariwal 2021): the network's second output u in [-1, 1] (nominally)
picks the reverse variance between the two natural choices, in the log domain:

.. math:: \Sigma_\theta = \exp\big(f \log\beta_t + (1 - f) \log\tilde\beta_t\big), \qquad
          f = (u + 1) / 2                                                        \text{(7)}

(:func:`interpolated_log_variance`): f = 1 gives :math:`\beta_t`, f = 0 the posterior's
:math:`\tilde\beta_t`.
"""
from __future__ import annotations

import numpy as np

__all__ = ["PREDICTIONS", "WEIGHTINGS", "snr", "split_prediction", "prediction_target",
           "p2_weight", "vlb_epsilon_weight", "interpolated_log_variance"]

PREDICTIONS = ("epsilon", "x0", "v")
WEIGHTINGS = ("simple", "vlb", "p2")


def snr(alpha_bar):
    r""":math:`\mathrm{SNR}_t = \bar\alpha_t / (1 - \bar\alpha_t)` (NumPy, elementwise)."""
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    return alpha_bar / (1.0 - alpha_bar)


def check_prediction(prediction: str, where: str) -> str:
    if prediction not in PREDICTIONS:
        raise ValueError(f"{where}: unknown prediction {prediction!r}; choose one of "
                         f"{', '.join(PREDICTIONS)}")
    return prediction


def split_prediction(prediction: str, output, x_t, a, b):
    r"""(:math:`\hat x_0`, :math:`\hat\varepsilon`) from the network's ``output`` read as
    ``prediction``; ``a`` = :math:`\sqrt{\bar\alpha_t}` and ``b`` = :math:`\sqrt{1 - \bar\alpha_t}`
    broadcast against the images (Tensors or arrays).  Eqs. (1)-(3)."""
    if prediction == "epsilon":
        return (x_t - b * output) / a, output                           # eq. (1)
    if prediction == "x0":
        return output, (x_t - a * output) / b                           # eq. (2)
    if prediction == "v":
        return a * x_t - b * output, b * x_t + a * output               # eq. (3)
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}")


def prediction_target(prediction: str, x0, noise, a, b):
    r"""What a network that predicts ``prediction`` should output for :math:`x_t = a x_0 + b
    \varepsilon`: :math:`\varepsilon`, :math:`x_0` or :math:`v = a \varepsilon - b x_0`."""
    if prediction == "epsilon":
        return noise
    if prediction == "x0":
        return x0
    if prediction == "v":
        return a * noise - b * x0
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}")


def p2_weight(alpha_bar, k: float = 1.0, gamma: float = 1.0):
    r""":math:`1 / (k + \mathrm{SNR}_t)^\gamma`, eq. (5); 1 everywhere for :math:`\gamma = 0`."""
    return 1.0 / (k + snr(alpha_bar)) ** gamma                          # eq. (5)


def vlb_epsilon_weight(beta, alpha_bar, variance):
    r""":math:`\lambda_t = \beta_t^2 / (2 \sigma_t^2 \alpha_t (1 - \bar\alpha_t))`, eq. (6): the
    weight that makes :math:`\lambda_t \|\varepsilon - \hat\varepsilon\|^2` the KL term
    :math:`L_{t-1}` up to a constant, for the reverse variance :math:`\sigma_t^2` = ``variance``."""
    beta, alpha_bar = np.asarray(beta, np.float64), np.asarray(alpha_bar, np.float64)
    return beta ** 2 / (2.0 * variance * (1.0 - beta) * (1.0 - alpha_bar))   # eq. (6)


def interpolated_log_variance(output, log_beta, log_posterior_variance):
    r""":math:`\log\Sigma_\theta = f \log\beta_t + (1 - f) \log\tilde\beta_t`, f = (u + 1) / 2 for
    the network's output u, eq. (7) (Tensors that broadcast)."""
    fraction = (output + 1.0) * 0.5
    return fraction * log_beta + (1.0 - fraction) * log_posterior_variance   # eq. (7)
