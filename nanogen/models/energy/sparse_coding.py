r"""Sparse coding (Olshausen & Field 1996): a dictionary of atoms learned so that every image
patch is a sparse combination of a few of them; codes inferred with ISTA and FISTA (Beck &
Teboulle 2009), and a second layer of sparse coding on the first layer's pooled codes.

**The model.**  A patch :math:`x \in \mathbb R^d` (pixels in [0, 1], flattened) is a linear
mixture of the :math:`K` columns ("atoms") of a dictionary :math:`D \in \mathbb R^{d \times K}`
plus Gaussian noise, and the coefficients are independent and sparse:

.. math:: x = D a + \varepsilon, \quad \varepsilon \sim \mathcal N(0, \sigma^2 I), \quad
          p(a) = \prod_k \tfrac{\beta}{2} e^{-\beta |a_k|}.                         \tag{1}

**Inference** of the code is the MAP estimate: with :math:`\lambda = \sigma^2 \beta`,
:math:`-\log p(a \mid x) + \text{const}` is, per example, the energy

.. math:: E(a) = \tfrac12 \|x - D a\|_2^2 + \lambda \|a\|_1,                             \tag{2}

convex in :math:`a` (:func:`objective`).  The L1 term is not differentiable at 0, which is what
makes exact zeros: its proximal operator is the soft threshold (:func:`soft_threshold`)

.. math:: S_t(u) = \operatorname{sign}(u) \max(|u| - t, 0)
          = \arg\min_a \tfrac12 (a - u)^2 + t |a|.                                      \tag{3}

The smooth part :math:`f(a) = \frac12 \|x - Da\|^2` has gradient

.. math:: \nabla f(a) = D^\top (D a - x),                                                 \tag{4}

Lipschitz with constant :math:`L = \lambda_{\max}(D^\top D)` (:func:`lipschitz_constant`).
**ISTA** (:func:`ista`) alternates a gradient step of size :math:`1/L` and the threshold:

.. math:: a^{k+1} = S_{\lambda / L}\big(a^k - \tfrac1L D^\top (D a^k - x)\big),          \tag{5}

which decreases (2) at every step and reaches :math:`E(a^k) - E^* \le L \|a^0 - a^*\|^2 / 2k`.
**FISTA** (:func:`fista`) takes the same step from an extrapolated point :math:`y^k`:

.. math:: a^k = S_{\lambda / L}\big(y^k - \tfrac1L D^\top (D y^k - x)\big), \quad
          t_{k+1} = \frac{1 + \sqrt{1 + 4 t_k^2}}{2}, \quad
          y^{k+1} = a^k + \frac{t_k - 1}{t_{k+1}} (a^k - a^{k-1}),                      \tag{6}

with :math:`y^1 = a^0 = 0`, :math:`t_1 = 1`: not monotone, but
:math:`E(a^k) - E^* \le 2 L \|a^0 - a^*\|^2 / (k + 1)^2`.  A code is optimal exactly when
(subgradient of (2) contains 0)

.. math:: [D^\top (x - D a^*)]_k = \lambda \operatorname{sign}(a^*_k) \text{ if } a^*_k \ne 0,
          \qquad |[D^\top (x - D a^*)]_k| \le \lambda \text{ if } a^*_k = 0.            \tag{7}

**Learning** the dictionary alternates inference (codes held fixed) with a gradient step on the
reconstruction error over a batch of M patches (the model's optimizer, Adam by default),

.. math:: D \leftarrow D - \eta\, \nabla_D \tfrac1M \textstyle\sum_m
          \tfrac12 \|x_m - D a_m\|^2, \qquad
          \nabla_D = -\tfrac1M \textstyle\sum_m (x_m - D a_m)\, a_m^\top,                    \tag{8}

then puts every atom back on the unit sphere,

.. math:: d_k \leftarrow d_k / \|d_k\|_2.                                                 \tag{9}

Without (9) the energy could be lowered for free by scaling :math:`D` up and :math:`a` down
(:math:`D c`, :math:`a / c` reconstruct the same patch with a smaller L1 term).

**Sampling.**  The Laplace prior (1) is what makes MAP inference an L1 problem, but it is a poor
generator: its draws are never exactly zero, and the inferred codes are (most atoms are silent
for most patches).  :meth:`SparseCodingLayer.sample_codes` therefore draws from a *factorial
spike-and-slab prior fitted to the inferred training codes*: each atom independently is silent,
positive or negative, with the frequencies its codes had during training, and a non-zero
magnitude is exponential with the mean it had (two one-sided Laplace slabs):

.. math:: a_k = \begin{cases} 0 & \text{w.p. } 1 - \pi^+_k - \pi^-_k \\
          +\text{Exp}(\text{mean } \mu^+_k) & \text{w.p. } \pi^+_k \\
          -\text{Exp}(\text{mean } \mu^-_k) & \text{w.p. } \pi^-_k \end{cases}, \qquad
          \hat x = \operatorname{clip}(D a, 0, 1).                                      \tag{10}

The statistics are running averages over training batches (buffers, so they are checkpointed),
and the noise :math:`\varepsilon` is left out (the mean image is returned).  This prior knows
nothing about which atoms occur *together*, so samples are textures of plausible strokes, not
digits; that is the point of the second layer.

**Patches and images.**  :class:`SparseCoding` with ``patch_size`` p codes p x p patches (all C
channels: :math:`d = C p^2`) drawn at random positions of each training image; with
``patch_size=None`` the patch is the whole image.  Test images are cut into patches that cover
them (a grid of stride p, the last row and column moved in to end at the border), so
:meth:`SparseCoding.reconstruct` and the samples are whole images, overlaps averaged.

**The hierarchy** (:class:`HierarchicalSparseCoding`; the lectures' two-layer sparse coding, in
the spirit of Lee et al. 2008 and Zeiler et al. 2010): the first layer codes the cells of a
non-overlapping grid of p x p patches; the magnitudes of its codes are max-pooled over blocks of
``pool`` x ``pool`` cells,

.. math:: s_{r k} = \max_{c \in \text{block } r} |a_{c k}|,                               \tag{11}

and a second dictionary :math:`B` codes the pooled vector :math:`s` (all blocks' and atoms'
magnitudes) with (2): :math:`\frac12 \|s - B b\|^2 + \lambda_2 \|b\|_1`.  Its atoms are
co-occurrences of first-layer features over larger regions (parts of digits).  The first layer
trains alone for ``first_layer_steps`` steps, then is frozen while the second trains.  Samples
(:meth:`HierarchicalSparseCoding.sample`) draw :math:`b` from the second layer's fitted prior
(10), set :math:`s = \max(Bb, 0)`, and undo the pooling crudely: each pooled magnitude goes to one
cell of its block drawn uniformly, with a sign drawn from that atom's sign frequency.

Deviations from the paper: Olshausen & Field used a smooth sparseness cost
(:math:`\log(1 + a^2)`, a Cauchy prior) and inferred codes by gradient descent on whitened natural
images; here the cost is L1 (the convex choice of later work, Lee et al. 2007), inference is
ISTA/FISTA, and the data are MNIST digits in [0, 1] with no whitening (a digit has no 1/f spectrum
to flatten).  They adapted the atoms' norms to keep each code's variance at a target; fixing the
norms to one (9) is the common simpler constraint.  The dictionary update uses Adam rather than
plain gradient steps (the atoms are renormalised after each step either way).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ... import functional as ops
from ...autograd import no_grad
from ...creation import rand, randint, randn, tensor, zeros
from ...nn import Module, Parameter
from ...optim import Adam
from ...utils.checks import positive_int
from ..base import GenerativeModel, ImageShapeError
from ..registry import ModelSpec, register

__all__ = ["soft_threshold", "objective", "lipschitz_constant", "ista", "fista",
           "optimality_gap", "covering_starts", "SparseCodingLayer", "SparseCoding",
           "HierarchicalSparseCoding"]

# the prior's running averages (10) forget with this many steps' memory, after an exact running
# mean over the first this-many updates
PRIOR_WINDOW = 100
# test images whose reconstructions ``figures`` draws
FIGURE_IMAGES = 16


# -- pure helpers: the L1 problem (2) and its solvers -------------------------------------------
def positive_float(value, what: str) -> float:
    """``value`` as a float, or a ValueError saying that ``what`` must be a positive number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def soft_threshold(u, t: float):
    r""":math:`S_t(u) = \operatorname{sign}(u) \max(|u| - t, 0)` elementwise (3), computed as
    :math:`u - \operatorname{clamp}(u, -t, t)`: exactly 0 wherever :math:`|u| \le t`."""
    if isinstance(t, bool) or not isinstance(t, numbers.Real) or not t >= 0:
        raise ValueError(f"soft_threshold: the threshold must be a number >= 0, got {t!r}")
    return u - ops.clamp(u, -float(t), float(t))                                   # eq. (3)


def _check_problem(x, D, where: str):
    if D.ndim != 2:
        raise ValueError(f"{where}: the dictionary must be a matrix (d, K), got shape "
                         f"{tuple(D.shape)}")
    if x.ndim != 2 or x.shape[1] != D.shape[0]:
        raise ValueError(f"{where}: expected signals of shape (N, {D.shape[0]}) for a "
                         f"dictionary of shape {tuple(D.shape)}, got {tuple(x.shape)}")


def objective(x, D, a, lam: float):
    r"""The energy (2) of each code: :math:`\frac12 \|x - D a\|^2 + \lambda \|a\|_1`, shape (N,),
    for signals ``x`` (N, d), dictionary ``D`` (d, K) and codes ``a`` (N, K)."""
    _check_problem(x, D, "objective")
    residual = x - a @ D.T                                       # rows: x - D a
    return 0.5 * (residual ** 2).sum(1) + lam * ops.abs(a).sum(1)                  # eq. (2)


def lipschitz_constant(D) -> float:
    r""":math:`L = \lambda_{\max}(D^\top D) = \|D\|_2^2`, the Lipschitz constant of (4), computed
    exactly: NumPy's ``eigvalsh`` in float64 on the host, on whichever of :math:`D^\top D` (K x K)
    and :math:`D D^\top` (d x d) is smaller (they share their non-zero eigenvalues)."""
    d = np.asarray(D.detach().to("cpu").numpy(), dtype=np.float64)
    gram = d.T @ d if d.shape[1] <= d.shape[0] else d @ d.T
    largest = float(np.linalg.eigvalsh(gram)[-1]) if gram.size else 0.0
    if not largest > 0:
        raise ValueError("the dictionary is zero: no step size 1/L exists")
    return largest


def ista(x, D, lam: float, num_iters: int, *, return_objectives: bool = False):
    r"""Codes (N, K) minimising (2) for signals ``x`` (N, d) and dictionary ``D`` (d, K) after
    ``num_iters`` ISTA steps (5) from :math:`a^0 = 0`, step :math:`1/L`.  With
    ``return_objectives`` also the energies :math:`E(a^k)`, :math:`k = 0 \dots` ``num_iters``,
    as a NumPy array (num_iters + 1, N).  Runs without recording gradients: the codes are
    constants to whatever uses them."""
    return _proximal_gradient(x, D, lam, num_iters, False, return_objectives, "ista")


def fista(x, D, lam: float, num_iters: int, *, return_objectives: bool = False):
    r"""As :func:`ista`, with Nesterov's extrapolation (6): same cost per step, an
    :math:`O(1/k^2)` rate instead of :math:`O(1/k)`."""
    return _proximal_gradient(x, D, lam, num_iters, True, return_objectives, "fista")


def _proximal_gradient(x, D, lam, num_iters, accelerated, return_objectives, where):
    _check_problem(x, D, where)
    lam = positive_float(lam, f"{where}: lam")
    num_iters = positive_int(num_iters, f"{where}: num_iters")
    with no_grad():
        x, D = x.detach(), D.detach()
        step = 1.0 / lipschitz_constant(D)
        gram, target = D.T @ D, x @ D              # D^T D (K, K); rows of D^T x (N, K)
        a = zeros(x.shape[0], D.shape[1], dtype=x.dtype, device=x.device)
        y, t = a, 1.0
        history = [objective(x, D, a, lam).numpy()] if return_objectives else None
        for _ in range(num_iters):
            gradient = y @ gram - target                         # D^T (D y - x), eq. (4)
            a_next = soft_threshold(y - step * gradient, lam * step)      # eq. (5) / (6)
            if accelerated:
                t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))       # eq. (6)
                y = a_next + ((t - 1.0) / t_next) * (a_next - a)          # eq. (6)
                t = t_next
            else:
                y = a_next
            a = a_next
            if return_objectives:
                history.append(objective(x, D, a, lam).numpy())
    if return_objectives:
        return a, np.asarray(history, dtype=np.float64)
    return a


def optimality_gap(x, D, a, lam: float):
    r"""How far codes ``a`` are from satisfying (7), per example (N,): the largest violation
    over atoms of :math:`|g_k - \lambda \operatorname{sign}(a_k)|` (non-zero :math:`a_k`) or
    :math:`\max(|g_k| - \lambda, 0)` (zero :math:`a_k`), with :math:`g = D^\top (x - Da)`."""
    _check_problem(x, D, "optimality_gap")
    with no_grad():
        g = (x - a @ D.T) @ D
        active = ops.where(a != 0, ops.abs(g - lam * ops.sign(a)), ops.relu(ops.abs(g) - lam))
        return active.amax(1)


def covering_starts(size: int, patch: int) -> np.ndarray:
    """The top (or left) edges of patches that cover ``size`` pixels: 0, p, 2p, ... and, if the
    grid falls short, one more ending at the border (so the last two overlap)."""
    starts = list(range(0, size - patch + 1, patch))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    return np.asarray(starts, dtype=np.int64)


def _atoms_for_display(layer, shape):
    """The layer's K atoms as images (K, *shape) in [0, 1]: each with the sign its codes
    usually take (so an atom drawn white is added, not subtracted), scaled by its own largest
    magnitude so that 0 is mid-grey."""
    atoms = layer.dictionary.detach().T * layer.usual_signs()[:, None]
    peak = ops.clamp(ops.abs(atoms).amax(1, keepdim=True), min=1e-12)
    return (0.5 + 0.5 * atoms / peak).reshape(atoms.shape[0], *shape)


# -- one layer: a dictionary, its codes, its fitted prior --------------------------------------
class SparseCodingLayer(Module):
    """A dictionary ``dictionary`` (dim, num_atoms) of unit-norm atoms, the settings of its L1
    problem (``lam``, ``num_iters`` FISTA steps), and the running statistics of its codes behind
    the sampling prior (10): buffers ``positive_rate``, ``negative_rate`` (the fractions of codes
    above and below zero, per atom), ``positive_mean``, ``negative_mean`` (the means of
    max(a, 0) and max(-a, 0)) and ``updates``, how many batches they have seen."""

    def __init__(self, dim: int, num_atoms: int, lam: float, num_iters: int, where: str):
        super().__init__()
        self.dim = positive_int(dim, f"{where}: the signal size")
        self.num_atoms = positive_int(num_atoms, f"{where}: num_atoms")
        self.lam = positive_float(lam, f"{where}: lam")
        self.num_iters = positive_int(num_iters, f"{where}: num_iters")
        self.dictionary = Parameter(randn(self.dim, self.num_atoms))
        self.normalize_atoms()
        for name in ("positive_rate", "negative_rate", "positive_mean", "negative_mean"):
            self.register_buffer(name, zeros(self.num_atoms))
        self.register_buffer("updates", tensor(0))

    def normalize_atoms(self):
        """(9): every column of the dictionary divided by its Euclidean norm, in place."""
        with no_grad():
            D = self.dictionary
            norms = ops.clamp(ops.sqrt((D ** 2).sum(0, keepdim=True)), min=1e-12)
            D.copy_(D / norms)                                                     # eq. (9)

    def infer(self, x):
        """FISTA codes (N, num_atoms) of signals x (N, dim): (6) for ``num_iters`` steps."""
        return fista(x, self.dictionary, self.lam, self.num_iters)

    def decode(self, a):
        """D a for codes a (N, num_atoms): signals (N, dim)."""
        return a @ self.dictionary.T

    def reconstruction_loss(self, x, a):
        r""":math:`\frac1M \sum_m \frac12 \|x_m - D a_m\|^2` with the codes fixed: its gradient
        with respect to the dictionary is (8)."""
        return 0.5 * ((x - self.decode(a.detach())) ** 2).sum(1).mean()

    def update_prior(self, a):
        """Fold one batch of codes into the prior's running averages (10): an exact running
        mean over the first ``PRIOR_WINDOW`` updates, then an exponential average with that
        memory."""
        with no_grad():
            n = int(self.updates.item())
            keep = min(n / (n + 1.0), 1.0 - 1.0 / PRIOR_WINDOW)
            batch = {"positive_rate": (a > 0).float().mean(0),
                     "negative_rate": (a < 0).float().mean(0),
                     "positive_mean": ops.relu(a).mean(0),
                     "negative_mean": ops.relu(-a).mean(0)}
            for name, value in batch.items():
                old = getattr(self, name)
                old.copy_(keep * old + (1.0 - keep) * value)
            self.updates.fill_(n + 1)

    def sample_codes(self, n: int):
        r"""n codes from the fitted spike-and-slab prior (10): each atom silent, positive or
        negative with its training frequencies, a non-zero magnitude exponential with the mean
        it had (:math:`-\mu \log(1 - U)`, U uniform)."""
        device = self.dictionary.device
        with no_grad():
            u, v = rand(n, self.num_atoms, device=device), rand(n, self.num_atoms, device=device)
            pos, neg = self.positive_rate, self.negative_rate
            exponential = -ops.log(1.0 - v)                     # Exp(1)
            mean_pos = self.positive_mean / ops.clamp(pos, min=1e-12)     # E[a | a > 0]
            mean_neg = self.negative_mean / ops.clamp(neg, min=1e-12)     # E[-a | a < 0]
            up = (u < pos).float()
            down = ((u >= pos) & (u < pos + neg)).float()
            return exponential * (up * mean_pos - down * mean_neg)                # eq. (10)

    def usual_signs(self):
        """+1 or -1 per atom (K,): the sign its non-zero training codes took most often."""
        return 2.0 * (self.positive_rate >= self.negative_rate).float() - 1.0


# -- shared between the two models ----------------------------------------------------------------
def _check_image_shape(image_shape, where):
    image_shape = tuple(image_shape)
    if len(image_shape) != 3 or not all(isinstance(s, (int, np.integer)) and not
                                        isinstance(s, bool) and s > 0 for s in image_shape):
        raise ValueError(f"{where}: image_shape must be (C, H, W) with positive ints, got "
                         f"{image_shape!r}")
    return tuple(int(s) for s in image_shape)


def _check_patch_fits(patch: int, image_shape, where):
    """An :class:`ImageShapeError` in one line when a p x p patch does not fit the images."""
    _, h, w = image_shape
    if patch > min(h, w):
        raise ImageShapeError(f"{where}: patch_size {patch} is larger than the {h}x{w} images "
                              f"(patch_size <= {min(h, w)} would do)")


class _ImageCoder(GenerativeModel):
    """What the two models share: images in [0, 1], their shape checked, and their device."""

    data_transform = "unit"

    def _device(self):
        return next(iter(self.parameters())).device


class _Patches:
    """Where p x p patches sit in (C, H, W) images, as flat indices into each image's C*H*W
    pixels: cutting them out of a batch and adding them back (overlaps averaged)."""

    def __init__(self, image_shape, patch: int):
        self.image_shape, self.patch = image_shape, patch
        c, h, w = image_shape
        cc, yy, xx = np.meshgrid(np.arange(c), np.arange(patch), np.arange(patch),
                                 indexing="ij")
        self.offsets = (cc * h * w + yy * w + xx).ravel()       # (C p p,) from the top-left
        self.dim = self.offsets.size

    def corners(self, tops, lefts):
        """Flat index of each top-left corner: arrays of equal shape."""
        return np.asarray(tops) * self.image_shape[2] + np.asarray(lefts)

    def grid(self, tops, lefts):
        """Corners (P,) of every (top, left) pair of the two lists, row by row."""
        t, l = np.meshgrid(tops, lefts, indexing="ij")
        return self.corners(t.ravel(), l.ravel())

    def cut(self, x, corners):
        """Patches (N * P, C p p) of images x (N, C, H, W): corners (N, P) or the same (P,)
        for every image."""
        n = x.shape[0]
        corners = np.broadcast_to(corners, (n,) + np.shape(corners)[-1:])
        flat = corners[:, :, None] + self.offsets                       # (N, P, d)
        rows = np.arange(n)[:, None, None]
        return x.reshape(n, -1)[rows, flat].reshape(n * corners.shape[1], self.dim)

    def paste(self, patches, corners, n: int):
        """Images (n, C, H, W) from patches (n * P, d) at corners (P,), overlaps averaged and
        uncovered pixels 0."""
        p_count = len(corners)
        flat = (np.asarray(corners)[:, None] + self.offsets).ravel()      # (P d,)
        counts = np.bincount(flat, minlength=int(np.prod(self.image_shape)))
        device = patches.device
        index = tensor(np.broadcast_to(flat, (n, flat.size)).copy(), device=device)
        total = ops.scatter_add(zeros(n, counts.size, dtype=patches.dtype, device=device), 1,
                                index, patches.reshape(n, p_count * self.dim))
        scale = tensor((1.0 / np.maximum(counts, 1)).astype(np.float32), device=device)
        return (total * scale).reshape(n, *self.image_shape)


# -- the patch / whole-image model -----------------------------------------------------------------
class SparseCoding(_ImageCoder):
    """Sparse coding of p x p patches (``patch_size`` p) or of whole images
    (``patch_size=None``), with ``num_atoms`` atoms, penalty ``lam`` (2) and ``num_iters`` FISTA
    steps per inference.  Training takes ``patches_per_image`` patches at random positions of
    each image (drawn from nanogen's global generator, so a resumed run draws the same ones).
    ``num_classes`` is accepted for the common model interface and not used."""

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, patch_size=8,
                 num_atoms: int = 128, lam: float = 0.2, num_iters: int = 100,
                 patches_per_image: int = 4):
        super().__init__()
        name = "sparse coding" if patch_size is not None else "sparse coding (whole images)"
        self.image_shape = _check_image_shape(image_shape, name)
        self.num_classes = num_classes
        c, h, w = self.image_shape
        if patch_size is None:
            self.whole_image = True
            self.patch_shape = self.image_shape
            self.patches_per_image = 1
        else:
            patch = positive_int(patch_size, f"{name}: patch_size")
            _check_patch_fits(patch, self.image_shape, name)
            self.whole_image = patch == h == w
            self.patch_shape = (c, patch, patch)
            self.patches_per_image = positive_int(patches_per_image,
                                                  f"{name}: patches_per_image")
        self.patch_size = patch_size
        self.patches = _Patches(self.image_shape, self.patch_shape[1])
        self.layer = SparseCodingLayer(self.patches.dim, num_atoms, lam, num_iters, name)
        # the patches that cover an image, for evaluation, reconstruction and samples
        self.cover = self.patches.grid(covering_starts(h, self.patch_shape[1]),
                                       covering_starts(w, self.patch_shape[2]))

    # -- helpers -----------------------------------------------------------------------------------
    def _training_patches(self, x):
        """``patches_per_image`` patches of each image at uniformly drawn positions."""
        if self.whole_image:
            return self.patches.cut(x, self.cover)
        _, h, w = self.image_shape
        p = self.patch_shape[1]
        spots = randint(0, (h - p + 1) * (w - p + 1),
                        size=(x.shape[0], self.patches_per_image)).numpy()
        return self.patches.cut(x, self.patches.corners(spots // (w - p + 1),
                                                        spots % (w - p + 1)))

    # -- training ----------------------------------------------------------------------------------
    def training_step(self, batch, optimizers) -> dict:
        """Codes by FISTA with the dictionary fixed, one optimizer step on (8), atoms back to
        unit norm (9), the prior's statistics updated.  Logs ``loss`` (the squared error
        :math:`\\|x - Da\\|^2` per patch), ``objective`` (2) per patch and ``sparsity``, the
        fraction of code entries that are non-zero."""
        x, _ = batch
        self._check_images(x, "training_step")
        patches = self._training_patches(x)
        codes = self.layer.infer(patches)                        # fixed during the update
        opt = optimizers["model"]
        opt.zero_grad()
        loss = self.layer.reconstruction_loss(patches, codes)                      # eq. (8)
        loss.backward()
        opt.step()
        self.layer.normalize_atoms()                                               # eq. (9)
        self.layer.update_prior(codes)
        l1 = float(ops.abs(codes).sum(1).mean().item())
        return {"loss": 2.0 * float(loss.item()),
                "objective": float(loss.item()) + self.layer.lam * l1,
                "sparsity": float((codes != 0).float().mean().item())}

    # -- using the model ---------------------------------------------------------------------------
    def encode(self, x):
        """FISTA codes (N, P, K) of the P covering patches of each image x (N, C, H, W)."""
        self._check_images(x, "encode")
        with no_grad():
            codes = self.layer.infer(self.patches.cut(x, self.cover))
        return codes.reshape(x.shape[0], len(self.cover), self.layer.num_atoms)

    def decode(self, codes):
        """Images (N, C, H, W) from codes (N, P, K) of the covering patches, overlaps
        averaged, clipped to [0, 1]."""
        n = codes.shape[0]
        with no_grad():
            patches = self.layer.decode(codes.reshape(n * len(self.cover), -1))
            return ops.clamp(self.patches.paste(patches, self.cover, n), 0.0, 1.0)

    def reconstruct(self, x):
        """decode(encode(x)): each image rebuilt from the sparse codes of its patches."""
        return self.decode(self.encode(x))

    def sample_patches(self, n: int):
        """n patches (n, C, p, p) in [0, 1]: D a with a from the fitted prior (10)."""
        n = positive_int(n, "SparseCoding.sample_patches: n")
        with no_grad():
            x = self.layer.decode(self.layer.sample_codes(n))
            return ops.clamp(x, 0.0, 1.0).reshape(n, *self.patch_shape)

    def sample(self, n: int, y=None):
        """n images (n, C, H, W) in [0, 1]: the covering patches of each drawn independently
        from the fitted prior (10) and decoded (overlaps averaged).  For the patch model these
        are mosaics of independent patches -- the model knows nothing beyond a patch."""
        n = positive_int(n, "SparseCoding.sample: n")
        if y is not None:
            raise ValueError("SparseCoding.sample: the model is unconditional and takes no "
                             "labels y")
        with no_grad():
            codes = self.layer.sample_codes(n * len(self.cover))
            return self.decode(codes.reshape(n, len(self.cover), -1))

    def evaluate(self, loader) -> dict:
        """On the covering patches of every test image: ``reconstruction_error``, the squared
        error :math:`\\|x - Da\\|^2` per patch; ``reconstruction_mse``, the same per pixel;
        ``objective`` (2) per patch; ``sparsity``, the fraction of non-zero code entries;
        ``nonzeros_per_code``; ``mean_abs_code``; and ``image_mse``, the per-pixel squared error
        of the whole images rebuilt from their patches (clipped to [0, 1])."""
        sums = {"error": 0.0, "objective": 0.0, "nonzeros": 0.0, "abs": 0.0, "image": 0.0}
        images = codes_count = 0
        with no_grad():
            for x, _ in loader:
                self._check_images(x, "evaluate")
                patches = self.patches.cut(x, self.cover)
                codes = self.layer.infer(patches)
                error = ((patches - self.layer.decode(codes)) ** 2).sum(1)
                sums["error"] += float(error.sum().item())
                sums["objective"] += float(objective(patches, self.layer.dictionary, codes,
                                                     self.layer.lam).sum().item())
                sums["nonzeros"] += float((codes != 0).float().sum().item())
                sums["abs"] += float(ops.abs(codes).sum().item())
                rebuilt = self.decode(codes.reshape(x.shape[0], len(self.cover), -1))
                sums["image"] += float(((rebuilt - x) ** 2).sum().item())
                images += x.shape[0]
                codes_count += codes.shape[0]
        if images == 0:
            raise ValueError("SparseCoding.evaluate: the loader yielded no examples")
        k = self.layer.num_atoms
        return {"reconstruction_error": sums["error"] / codes_count,
                "reconstruction_mse": sums["error"] / (codes_count * self.patches.dim),
                "objective": sums["objective"] / codes_count,
                "sparsity": sums["nonzeros"] / (codes_count * k),
                "nonzeros_per_code": sums["nonzeros"] / codes_count,
                "mean_abs_code": sums["abs"] / (codes_count * k),
                "image_mse": sums["image"] / (images * int(np.prod(self.image_shape))),
                "num_examples": images}

    def figures(self, x, y=None) -> dict:
        """``dictionary``: the atoms as images in a square grid, each with the sign its codes
        usually take and scaled so that 0 is mid-grey; ``reconstructions``: up to 16 test images, each followed by its reconstruction
        from its patches' codes (8 pairs a row)."""
        self._check_images(x, "figures")
        k = self.layer.num_atoms
        x = x[:FIGURE_IMAGES]
        pairs = ops.stack([x, self.reconstruct(x)], 1).reshape(2 * x.shape[0], *self.image_shape)
        return {"dictionary": (_atoms_for_display(self.layer, self.patch_shape),
                               math.ceil(math.sqrt(k))),
                "reconstructions": (pairs, 2 * min(8, x.shape[0]))}


# -- two layers ------------------------------------------------------------------------------------
class HierarchicalSparseCoding(_ImageCoder):
    """Two layers of sparse coding (11): the first on the cells of a centred grid of p x p
    patches (``patch_size``, ``num_atoms``, ``lam``), the second (``num_atoms2``, ``lam2``) on
    the first's code magnitudes max-pooled over ``pool`` x ``pool`` blocks of cells.  The first
    ``first_layer_steps`` training steps train the first layer; later steps freeze it and train
    the second.  The stage is read from the first layer's ``updates`` buffer (a step counter
    saved in checkpoints), so a resumed run switches at the same step.  Two optimizers,
    ``layer1`` and ``layer2``."""

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, patch_size: int = 7,
                 num_atoms: int = 64, lam: float = 0.2, pool: int = 2, num_atoms2: int = 64,
                 lam2: float = 0.5, num_iters: int = 100, first_layer_steps: int = 1000):
        super().__init__()
        where = "hierarchical sparse coding"
        self.image_shape = _check_image_shape(image_shape, where)
        self.num_classes = num_classes
        c, h, w = self.image_shape
        p = positive_int(patch_size, f"{where}: patch_size")
        _check_patch_fits(p, self.image_shape, where)
        self.pool = positive_int(pool, f"{where}: pool")
        self.first_layer_steps = positive_int(first_layer_steps, f"{where}: first_layer_steps")
        self.blocks = (h // p // self.pool, w // p // self.pool)     # pooling blocks per side
        if min(self.blocks) < 1:
            raise ImageShapeError(f"{where}: {self.pool}x{self.pool} blocks of {p}x{p} patches "
                                  f"({self.pool * p} pixels) do not fit the {h}x{w} images "
                                  f"(a smaller pool or patch_size would do)")
        self.patch_size, self.patch_shape = p, (c, p, p)
        self.cells = (self.blocks[0] * self.pool, self.blocks[1] * self.pool)
        top, left = (h - self.cells[0] * p) // 2, (w - self.cells[1] * p) // 2
        self.patches = _Patches(self.image_shape, p)
        # the grid's cells row by row: top + p i, left + p j
        self.grid = self.patches.grid(top + p * np.arange(self.cells[0]),
                                      left + p * np.arange(self.cells[1]))
        self.layer1 = SparseCodingLayer(self.patches.dim, num_atoms, lam, num_iters, where)
        num_blocks = self.blocks[0] * self.blocks[1]
        self.layer2 = SparseCodingLayer(num_blocks * num_atoms, num_atoms2, lam2, num_iters,
                                        f"{where} (second layer)")

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def stage(self) -> int:
        """1 while the first layer trains, 2 once it has had ``first_layer_steps`` updates."""
        return 1 if int(self.layer1.updates.item()) < self.first_layer_steps else 2

    def _cell_codes(self, x):
        """First-layer codes of the grid cells: (N, rows, cols, K)."""
        codes = self.layer1.infer(self.patches.cut(x, self.grid))
        return codes.reshape(x.shape[0], *self.cells, self.layer1.num_atoms)

    def pool_codes(self, cell_codes):
        """(11): the largest |a| of each atom over each pool x pool block of cells, flattened
        to the second layer's input (N, blocks * K)."""
        n, _, _, k = cell_codes.shape
        (br, bc), s = self.blocks, self.pool
        blocks = ops.abs(cell_codes).reshape(n, br, s, bc, s, k)
        return blocks.amax((2, 4)).reshape(n, br * bc * k)                         # eq. (11)

    def configure_optimizers(self, lr: float) -> dict:
        """Adam for each layer's dictionary, both at ``lr``."""
        return {"layer1": Adam(self.layer1.parameters(), lr=lr),
                "layer2": Adam(self.layer2.parameters(), lr=lr)}

    # -- training ----------------------------------------------------------------------------------
    def training_step(self, batch, optimizers) -> dict:
        """A step of the first layer on the grid cells (stage 1), or -- the first layer fixed --
        of the second layer on their pooled codes (stage 2).  Logs ``loss`` (the squared error
        per signal of the layer trained), ``objective`` (2), ``sparsity`` and ``layer``."""
        x, _ = batch
        self._check_images(x, "training_step")
        if self.stage == 1:
            layer, opt = self.layer1, optimizers["layer1"]
            signals = self.patches.cut(x, self.grid)
        else:
            layer, opt = self.layer2, optimizers["layer2"]
            with no_grad():
                signals = self.pool_codes(self._cell_codes(x))
        codes = layer.infer(signals)
        opt.zero_grad()
        loss = layer.reconstruction_loss(signals, codes)                           # eq. (8)
        loss.backward()
        opt.step()
        layer.normalize_atoms()                                                    # eq. (9)
        stage = 1 if layer is self.layer1 else 2
        layer.update_prior(codes)
        l1 = float(ops.abs(codes).sum(1).mean().item())
        return {"loss": 2.0 * float(loss.item()), "objective": float(loss.item()) + layer.lam * l1,
                "sparsity": float((codes != 0).float().mean().item()), "layer": float(stage)}

    # -- using the model ---------------------------------------------------------------------------
    def _paste_cells(self, cell_codes):
        """Images (N, C, H, W) from first-layer codes (N, rows, cols, K) of the grid cells
        (pixels outside the grid 0), clipped to [0, 1]."""
        n = cell_codes.shape[0]
        patches = self.layer1.decode(cell_codes.reshape(n * len(self.grid), -1))
        return ops.clamp(self.patches.paste(patches, self.grid, n), 0.0, 1.0)

    def _unpool(self, pooled, signs, cells):
        """First-layer codes (N, rows, cols, K) that put each pooled magnitude (N, blocks * K)
        in one cell of its block (``cells`` (N, br, bc, K): the index in 0..pool^2-1, row by
        row) with sign ``signs`` (+-1, the same shape as ``cells``), the others 0."""
        n, k = pooled.shape[0], self.layer1.num_atoms
        (br, bc), s = self.blocks, self.pool
        slot = np.arange(s * s).reshape(1, 1, s, 1, s, 1)
        chosen = tensor((cells.reshape(n, br, 1, bc, 1, k) == slot).astype(np.float32),
                        device=pooled.device)
        magnitude = (pooled.reshape(n, br, bc, k) * signs).reshape(n, br, 1, bc, 1, k)
        return (chosen * magnitude).reshape(n, *self.cells, k)

    def sample(self, n: int, y=None):
        """n images (n, C, H, W) in [0, 1]: second-layer codes from its fitted prior (10),
        pooled magnitudes max(Bb, 0), each put in a uniformly drawn cell of its block with a
        sign drawn from the first layer's sign frequencies for that atom, then decoded.  Before
        the second layer has trained, its prior is silent and the samples are blank."""
        n = positive_int(n, "HierarchicalSparseCoding.sample: n")
        if y is not None:
            raise ValueError("HierarchicalSparseCoding.sample: the model is unconditional and "
                             "takes no labels y")
        k, (br, bc), s = self.layer1.num_atoms, self.blocks, self.pool
        device = self._device()
        with no_grad():
            pooled = ops.relu(self.layer2.decode(self.layer2.sample_codes(n)))
            cells = randint(0, s * s, size=(n, br, bc, k)).numpy()
            pos, neg = self.layer1.positive_rate, self.layer1.negative_rate
            p_positive = pos / ops.clamp(pos + neg, min=1e-12)
            signs = 2.0 * (rand(n, br, bc, k, device=device) < p_positive).float() - 1.0
            return self._paste_cells(self._unpool(pooled, signs, cells))

    def evaluate(self, loader) -> dict:
        """``reconstruction_mse`` (per pixel) and ``sparsity`` (fraction of non-zero entries) of
        the first layer on the grid cells; ``layer2_relative_error``
        :math:`\\sum\\|s - Bb\\|^2 / \\sum\\|s\\|^2` and ``layer2_sparsity`` of the second on the
        pooled codes; ``nonzeros_per_code`` and ``layer2_nonzeros_per_code``."""
        sums = dict.fromkeys(("error", "nonzeros", "error2", "energy2", "nonzeros2"), 0.0)
        images = 0
        with no_grad():
            for x, _ in loader:
                self._check_images(x, "evaluate")
                signals = self.patches.cut(x, self.grid)
                codes = self.layer1.infer(signals)
                sums["error"] += float(((signals - self.layer1.decode(codes)) ** 2).sum().item())
                sums["nonzeros"] += float((codes != 0).float().sum().item())
                pooled = self.pool_codes(codes.reshape(x.shape[0], *self.cells, -1))
                codes2 = self.layer2.infer(pooled)
                sums["error2"] += float(((pooled - self.layer2.decode(codes2)) ** 2).sum().item())
                sums["energy2"] += float((pooled ** 2).sum().item())
                sums["nonzeros2"] += float((codes2 != 0).float().sum().item())
                images += x.shape[0]
        if images == 0:
            raise ValueError("HierarchicalSparseCoding.evaluate: the loader yielded no examples")
        cells = images * len(self.grid)
        return {"reconstruction_mse": sums["error"] / (cells * self.patches.dim),
                "sparsity": sums["nonzeros"] / (cells * self.layer1.num_atoms),
                "nonzeros_per_code": sums["nonzeros"] / cells,
                "layer2_relative_error": sums["error2"] / max(sums["energy2"], 1e-12),
                "layer2_sparsity": sums["nonzeros2"] / (images * self.layer2.num_atoms),
                "layer2_nonzeros_per_code": sums["nonzeros2"] / images,
                "stage": self.stage, "num_examples": images}

    def figures(self, x, y=None) -> dict:
        """``dictionary``: the first layer's atoms; ``layer2_dictionary``: each second-layer atom
        drawn through the first layer (with the sign its codes usually take, its positive
        pooled magnitudes put in every cell of their block with each first-layer atom's usual
        sign), scaled to [0, 1]; ``reconstructions``: up to
        16 test images, each followed by its first-layer reconstruction and by the
        reconstruction through the second layer (pooled codes rebuilt as Bb and unpooled into
        the cells and signs where the image's own first-layer codes peaked)."""
        self._check_images(x, "figures")
        k, (br, bc), s = self.layer1.num_atoms, self.blocks, self.pool
        x = x[:FIGURE_IMAGES]
        n = x.shape[0]
        with no_grad():
            # layer 2's atoms, each with its codes' usual sign and only the (non-negative)
            # magnitudes it adds: every cell of a block carries the block's pooled magnitude
            atoms2 = ops.relu(self.layer2.dictionary.T * self.layer2.usual_signs()[:, None])
            # the strong entries only: each atom's weights below a third of its largest dropped
            atoms2 = atoms2 * (atoms2 >= atoms2.amax(1, keepdim=True) / 3.0).float()
            k2 = atoms2.shape[0]
            spread = atoms2.reshape(k2, br, 1, bc, 1, k) * self.layer1.usual_signs()
            cells = ops.broadcast_to(spread, (k2, br, s, bc, s, k)).reshape(k2, *self.cells, k)
            drawn = self.patches.paste(self.layer1.decode(cells.reshape(-1, k)), self.grid, k2)
            flat = drawn.reshape(k2, -1)
            peak = ops.clamp(ops.abs(flat).amax(1, keepdim=True), min=1e-12)
            atoms2_images = (0.5 + 0.5 * flat / peak).reshape(k2, *self.image_shape)
            # reconstructions through one and through two layers
            codes = self._cell_codes(x)                           # (n, rows, cols, K)
            pooled = self.pool_codes(codes)
            rebuilt = ops.relu(self.layer2.decode(self.layer2.infer(pooled)))
            blocks = codes.reshape(n, br, s, bc, s, k).permute(0, 1, 3, 5, 2, 4)
            blocks = blocks.reshape(n, br, bc, k, s * s)
            where = np.argmax(np.abs(blocks.numpy()), axis=-1)         # the switches: argmax cells
            chosen = np.take_along_axis(blocks.numpy(), where[..., None], -1)[..., 0]
            signs = tensor(np.where(chosen < 0, -1.0, 1.0).astype(np.float32),
                           device=x.device)
            through2 = self._paste_cells(self._unpool(rebuilt, signs, where))
            triples = ops.stack([x, self._paste_cells(codes), through2], 1)
        return {"dictionary": (_atoms_for_display(self.layer1, self.patch_shape),
                               math.ceil(math.sqrt(k))),
                "layer2_dictionary": (atoms2_images, math.ceil(math.sqrt(k2))),
                "reconstructions": (triples.reshape(3 * n, *self.image_shape),
                                    3 * min(4, n))}


# -- the registry: ``nanogen train sparse-coding`` etc. --------------------------------------------
# Tuned on mnist5k (test reconstruction MSE per pixel / mean non-zeros per 8x8 patch, covering
# patches of the 1,000 test digits; 1,000 steps of 64, 4 patches an image, 64 atoms, lr 3e-3):
# lam 0.1: 0.00315 / 9.5, lam 0.2: 0.00635 / 5.9, lam 0.4: 0.0130 / 3.4; lr 1e-2 within 6% of
# those; after 500 steps at lam 0.2, lr 3e-4: 0.0107 / 14.4, 1e-3: 0.0085 / 9.2, 3e-3: 0.0067 /
# 6.4.  128 atoms at lam 0.2: 0.00474 / 6.5 (the default: twice overcomplete); 50 FISTA steps
# instead of 100 changed the MSE by 0.3%.
# About 0.14 s a step on the busy 2-core machine (4.5 minutes for the default run).
register(ModelSpec(
    name="sparse-coding", build=SparseCoding, steps=2000, batch_size=64, lr=3e-3,
    sample_every=1000, num_samples=36,
    kwargs={"patch_size": 8, "num_atoms": 128, "lam": 0.2, "num_iters": 100,
            "patches_per_image": 4},
    summary="sparse coding (Olshausen & Field 1996) of 8x8 patches: L1 codes by FISTA, "
            "unit-norm dictionary by alternating updates; samples from a fitted spike-and-slab "
            "prior"))
# Whole digits, 256 atoms, 600 steps at lr 3e-3: lam 0.1: MSE 0.0049 with 115 non-zeros per
# digit, lam 0.3: 0.0100 / 41, lam 1.0: 0.0262 / 8.3; lam 0.5 keeps a few dozen atoms a digit.
# About 0.36 s a step on the busy machine.
register(ModelSpec(
    name="sparse-coding-digits", build=SparseCoding, steps=2000, batch_size=64, lr=3e-3,
    sample_every=1000, num_samples=36,
    kwargs={"patch_size": None, "num_atoms": 256, "lam": 0.5, "num_iters": 100},
    summary="sparse coding of whole digits: 256 unit-norm atoms, L1 codes by FISTA"))
# Second layer (1,000 steps, the first layer's 500 at lam 0.2): lam2 0.1 left 51 of its 64
# atoms on per digit (relative error 0.25 on the pooled codes), 0.3 26 (0.36), 1.0 4.2 (0.56).
register(ModelSpec(
    name="sparse-coding-hierarchical", build=HierarchicalSparseCoding, steps=2000,
    batch_size=64, lr=3e-3, sample_every=1000, num_samples=36,
    kwargs={"patch_size": 7, "num_atoms": 64, "lam": 0.2, "pool": 2, "num_atoms2": 64,
            "lam2": 0.5, "num_iters": 100, "first_layer_steps": 1000},
    summary="two-layer sparse coding: 7x7 patch codes on a 4x4 grid, max-pooled over 2x2 "
            "blocks, coded again by a second dictionary"))
