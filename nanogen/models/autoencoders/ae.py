r"""The deterministic autoencoder: an encoder squeezes each image through a bottleneck code and
a decoder rebuilds the image from it.

An encoder :math:`f_\phi` maps an image :math:`x \in [0, 1]^D` to a code
:math:`h = f_\phi(x) \in \mathbb R^d` with :math:`d \ll D`, and a decoder :math:`g_\theta` maps
the code back to one logit per pixel, read as Bernoulli means
:math:`\hat x = \sigma(g_\theta(h))`.  Both are trained to minimise the cross-entropy between the
image and its reconstruction, summed over pixels (nats per image) and averaged over the batch:

.. math:: \mathcal L(x) = -\sum_{i=1}^D \big[x_i \log \hat x_i + (1 - x_i) \log(1 - \hat x_i)\big]
          = -\sum_i \big[x_i \ell_i - \operatorname{softplus}(\ell_i)\big],
          \qquad \ell = g_\theta(f_\phi(x)).                                          \quad (1)

For grey pixels :math:`x_i \in [0, 1]` this is the cross-entropy of two Bernoulli distributions;
its minimum over :math:`\ell_i` is at :math:`\sigma(\ell_i) = x_i` and is not 0 (it is the
entropy of the pixel), so the loss measures reconstruction up to that constant.  The members of
the family add to (1) a corruption of the input (:mod:`.denoising`) or a penalty on the code
(:mod:`.sparse`) through two hooks, so every one of them is

.. math:: \mathcal L(x) = -\sum_i \big[x_i \ell_i - \operatorname{softplus}(\ell_i)\big]
          + \Omega(h), \qquad \ell = g_\theta(h), \quad h = a(f_\phi(\tilde x)),
          \quad \tilde x \sim C(\tilde x \mid x)                                      \quad (2)

with :meth:`Autoencoder.corrupt_input` drawing :math:`\tilde x` (here :math:`\tilde x = x`),
:meth:`Autoencoder.code_activation` :math:`a` (here the identity) and
:meth:`Autoencoder.code_penalty` :math:`\Omega` (here 0).  The reconstruction target is always the
clean :math:`x`.

**Samples.**  A deterministic autoencoder has no prior over its codes, so it has no samples of
its own.  This one keeps an exponential moving average of the mean and second moment of the codes
it sees in training (buffers, saved in checkpoints, momentum :math:`m = 0.01`: about the last 100
batches) and :meth:`~Autoencoder.sample` decodes codes drawn from the Gaussian with that mean and
covariance:

.. math:: \mu \leftarrow (1 - m)\mu + m\,\overline{h}, \qquad
          S \leftarrow (1 - m) S + m\,\overline{h h^\top}, \qquad
          h \sim \mathcal N(\mu, S - \mu\mu^\top).                                    \quad (3)

They start at :math:`\mu = 0`, :math:`S = I` (the standard normal) and forget that start within a
few hundred steps.  A Gaussian fitted to the codes is a crude density model -- the codes of the
digits lie on a thinner, curved set -- so the samples are blurred blends of digits; they show
which part of code space the decoder has learnt, not a model of the data.

**What is evaluated** (:meth:`~Autoencoder.evaluate`): the mean squared error per pixel between
test images and their reconstructions, the cross-entropy (1) per image, and the same squared
error when the *encoder* sees corrupted test images (masking noise with :math:`\nu = 0.3`, drawn
from a fixed seed so that every model of the family is scored on the same corruption) -- the
figure a denoising autoencoder is trained to lower.  ``nanogen eval`` adds a linear probe of
:meth:`~Autoencoder.codes`.
"""
from __future__ import annotations

import numpy as np

from ... import functional as ops
from ...autograd import no_grad
from ...creation import eye, zeros
from ...random import fork_rng
from ...utils.checks import positive_int
from ..base import GenerativeModel, check_halvings
from ..likelihood import bernoulli_log_prob
from ..registry import ModelSpec, register
from .code_gaussian import draw_codes, track_code_moments
from .corruption import corrupt
from .networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, check_channels

__all__ = ["Autoencoder", "ARCHITECTURES"]

ARCHITECTURES = ("conv", "mlp")
# how many images one call of the encoder takes in codes() (bounds the memory of a large batch)
_CODES_CHUNK = 512


class Autoencoder(GenerativeModel):
    """A deterministic autoencoder with a ``code_dim``-wide bottleneck and a Bernoulli decoder.

    ``architecture`` "conv": the encoder and decoder of :mod:`.networks` with ``channels``,
    ``depth``, ``hidden_features`` and ``dropout`` as in the VAE; "mlp": fully connected stacks
    through the widths ``hidden`` (``()``: one linear layer on each side).  ``activation`` is the
    networks' nonlinearity.  ``num_classes`` is accepted for the common model interface and not
    used: the model is unconditional.

    Subclasses change the objective (2) through three hooks: :meth:`corrupt_input`,
    :meth:`code_activation` and :meth:`code_penalty`.
    """

    data_transform = "unit"
    # every autoencoder is also scored on test images corrupted by this (kind, level), with this
    # seed: ``corrupted_reconstruction_mse`` compares the family on one corruption
    eval_corruption = ("mask", 0.3)
    eval_corruption_seed = 1234
    code_momentum = 0.01            # m of eq. (3)

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, code_dim: int = 32,
                 architecture: str = "conv", channels=(32, 64), depth: int = 1,
                 hidden_features: int | None = None, dropout: float = 0.0, hidden=(500,),
                 activation: str = "relu"):
        super().__init__()
        name = type(self).__name__
        self.code_dim = positive_int(code_dim, f"{name}: code_dim")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"{name}: unknown architecture {architecture!r}; choose one of "
                             f"{', '.join(ARCHITECTURES)}")
        self.architecture = architecture
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        if architecture == "conv":
            if len(self.image_shape) == 3:
                check_halvings(self.image_shape, len(check_channels(channels)), name)
            self.encoder = ConvEncoder(self.image_shape, self.code_dim, channels,
                                       hidden_features, activation, dropout, depth)
            self.decoder = ConvDecoder(self.code_dim, self.image_shape, channels,
                                       hidden_features, activation, dropout, depth)
        else:
            self.encoder = MLPEncoder(self.image_shape, self.code_dim, hidden, activation)
            self.decoder = MLPDecoder(self.code_dim, self.image_shape, hidden, activation)
        # eq. (3): the running mean and second moment of the training codes, from N(0, I)
        self.register_buffer("code_mean", zeros(self.code_dim))
        self.register_buffer("code_second_moment", eye(self.code_dim))

    def _device(self):
        return next(iter(self.parameters())).device

    # -- input checks ---------------------------------------------------------------------------
    def _check_codes(self, h, where: str):
        if h.ndim != 2 or h.shape[1] != self.code_dim:
            raise ValueError(f"{type(self).__name__}.{where}: expected codes of shape (N, "
                             f"{self.code_dim}), got {tuple(h.shape)}")

    # -- the hooks of eq. (2) -------------------------------------------------------------------
    def corrupt_input(self, x):
        r"""The encoder's training input :math:`\tilde x \sim C(\tilde x \mid x)`: x itself."""
        return x

    def code_activation(self, pre):
        """a(.) of eq. (2), applied to the encoder's last layer: the identity (a linear code)."""
        return pre

    def code_penalty(self, h):
        r"""``(Omega(h), logs)``: the penalty on a batch of codes h (N, d) added to the mean
        reconstruction loss -- none here (``None``)."""
        return None, {}

    # -- the two networks -----------------------------------------------------------------------
    def encode(self, x):
        """The code h = a(f(x)) of images x (N, C, H, W): (N, code_dim)."""
        self._check_images(x, "encode")
        return self.code_activation(self.encoder(x))

    def decode(self, h):
        """The Bernoulli logits g(h) of codes h (N, code_dim): (N, C, H, W)."""
        self._check_codes(h, "decode")
        return self.decoder(h)

    def reconstruct(self, x):
        """sigma(decode(encode(x))): each pixel's reconstruction in [0, 1] (no gradient)."""
        with no_grad():
            return ops.sigmoid(self.decode(self.encode(x)))

    def codes(self, x):
        """The features a linear probe reads: the codes of images x, (N, code_dim), no gradient
        (the encoder takes the images ``_CODES_CHUNK`` at a time)."""
        self._check_images(x, "codes")
        with no_grad():
            return ops.cat([self.encode(x[i:i + _CODES_CHUNK])
                            for i in range(0, max(len(x), 1), _CODES_CHUNK)], 0)

    # -- training -------------------------------------------------------------------------------
    def objective(self, x):
        """``(loss, logs, h)``: eq. (2) on a batch -- the cross-entropy (1) per image of the
        reconstruction of the (corrupted) input against the clean x, averaged over the batch, plus
        the code penalty -- and the codes h it was computed from."""
        self._check_images(x, "loss")
        h = self.encode(self.corrupt_input(x))                   # h = a(f(x~)), x~ ~ C(x~ | x)
        recon = -bernoulli_log_prob(self.decode(h), x).mean()    # eq. (1) against the clean x
        penalty, logs = self.code_penalty(h)                     # Omega(h)
        loss = recon if penalty is None else recon + penalty
        return loss, {"recon": float(recon.item()), **logs}, h

    def loss(self, x, y=None):
        """eq. (2) averaged over the batch; logs ``recon`` (nats per image) and the penalty's
        parts."""
        loss, logs, _ = self.objective(x)
        return loss, logs

    def training_step(self, batch, optimizers) -> dict:
        """One Adam step on eq. (2), then the running code statistics of eq. (3)."""
        x, _ = batch
        loss, logs, h = self.objective(x)
        opt = optimizers["model"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        self.update_code_statistics(h.detach())
        return {"loss": float(loss.item()), **logs}

    def update_code_statistics(self, h):
        r"""eq. (3): move the running mean and second moment of the codes a step ``m`` towards
        the batch's (:func:`.code_gaussian.track_code_moments` with decay 1 - m)."""
        track_code_moments(self.code_mean, self.code_second_moment, h, 1.0 - self.code_momentum)

    # -- pictures -------------------------------------------------------------------------------
    def sample_codes(self, n: int):
        r"""n codes from eq. (3)'s Gaussian, (n, code_dim) (:func:`.code_gaussian.draw_codes`)."""
        return draw_codes(self.code_mean, self.code_second_moment, n,
                          f"{type(self).__name__}.sample")

    def sample(self, n: int, y=None):
        """n images: the decoder's pixel means at codes drawn from the Gaussian fitted to the
        training codes (eq. (3); see the module docstring for what they show)."""
        with no_grad():
            return ops.sigmoid(self.decode(self.sample_codes(n)))

    def corrupt_for_evaluation(self, x):
        """x corrupted by ``eval_corruption`` (a draw from the global generator)."""
        kind, level = self.eval_corruption
        return corrupt(x, kind, level)

    def figures(self, x, y=None) -> dict:
        """``reconstructions``: up to 32 test images, each followed by its reconstruction (8
        pairs per row); ``denoising``: up to 32 triples of an image, its corruption by
        ``eval_corruption`` and the reconstruction of the corrupted image (8 per row)."""
        self._check_images(x, "figures")
        x = x[:32]
        n = x.shape[0]
        pairs = ops.stack([x, self.reconstruct(x)], 1).reshape(2 * n, *self.image_shape)
        with fork_rng(self.eval_corruption_seed):
            noisy = self.corrupt_for_evaluation(x)
        triples = ops.stack([x, noisy, self.reconstruct(noisy)], 1).reshape(3 * n,
                                                                            *self.image_shape)
        return {"reconstructions": (pairs, 2 * min(8, n)), "denoising": (triples, 3 * min(8, n))}

    # -- evaluation -----------------------------------------------------------------------------
    def batch_metrics(self, x) -> dict:
        """Sums over the images of batch x of the per-image metrics that :meth:`evaluate`
        averages (a subclass adds its own to the dict)."""
        logits = self.decode(self.encode(x))
        error = (x - ops.sigmoid(logits)) ** 2
        noisy_error = (x - self.reconstruct(self.corrupt_for_evaluation(x))) ** 2
        pixels = int(np.prod(self.image_shape))
        return {"reconstruction_mse": float(error.sum().item()) / pixels,
                "reconstruction_bce_nats": -float(bernoulli_log_prob(logits, x).sum().item()),
                "corrupted_reconstruction_mse": float(noisy_error.sum().item()) / pixels}

    def evaluate(self, loader) -> dict:
        """Means over the test images: ``reconstruction_mse`` (per pixel, of sigma(decode(
        encode(x))) against x), ``reconstruction_bce_nats`` (eq. (1) per image) and
        ``corrupted_reconstruction_mse`` (per pixel, of the reconstruction of x corrupted by
        ``eval_corruption`` against the clean x; the corruption is drawn from
        ``eval_corruption_seed``, so it is the same for every model and every run)."""
        totals, count = {}, 0
        with no_grad(), fork_rng(self.eval_corruption_seed):
            for x, _ in loader:
                self._check_images(x, "evaluate")
                for key, value in self.batch_metrics(x).items():
                    totals[key] = totals.get(key, 0.0) + value
                count += x.shape[0]
        if count == 0:
            raise ValueError(f"{type(self).__name__}.evaluate: the loader yielded no examples")
        kind, level = self.eval_corruption
        return {**{key: total / count for key, total in totals.items()},
                "eval_corruption": f"{kind} {level:g}", "num_examples": count}


# -- the registry: ``nanogen train ae`` ----------------------------------------------------------
# On mnist5k (3,000 steps of 64, the VAE's conv widths): test MSE 0.0065 per pixel, 64.5 nats,
# linear probe 89.9% on the 32-d code.
register(ModelSpec(
    name="ae", build=Autoencoder, steps=3000, batch_size=64, lr=1e-3,
    kwargs={"code_dim": 32, "channels": (32, 64)},
    summary="autoencoder: conv encoder -> 32-d code -> conv decoder, Bernoulli cross-entropy "
            "on grey pixels; samples decode a Gaussian fitted to the training codes"))
