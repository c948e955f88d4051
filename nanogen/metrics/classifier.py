r"""The feature network behind FID, KID and the Inception Score: a LeNet trained on mnist5k.

FID and friends compare *features* of images, not pixels: two sets of digits are close when a
network that recognises digits sees them alike.  The papers use Inception-v3 trained on ImageNet;
for 28x28 digits a LeNet-5 (LeCun et al. 1998) trained on the 4,000 mnist5k training images does
the same job in a few hundred kilobytes::

    image (1, 28, 28) -> conv 5x5 pad 2 -> ReLU -> max-pool 2   (6, 14, 14)
                      -> conv 5x5       -> ReLU -> max-pool 2   (16, 5, 5)
                      -> linear 400 -> 120 -> ReLU
                      -> linear 120 ->  84 -> ReLU                = features(x)  (84,)
                      -> linear  84 ->  10                        = forward(x), the logits

Its weights ship with the package (``weights/lenet_mnist5k.npz``, read with no network) and
:func:`load_classifier` reads them once.  They are reproduced by::

    python -m nanogen.metrics.classifier --out nanogen/metrics/weights/lenet_mnist5k.npz

which trains with Adam on random batches, each image shifted by up to 2 pixels (the only
augmentation: digits are not mirrored or rotated), and prints the accuracy on the 1,000 test
images.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import no_grad
from ..optim import Adam
from ..optim.lr_scheduler import CosineAnnealingLR
from ..random import fork_rng
from ..serialization import SerializationError, load, save
from ..tensor import Tensor

__all__ = ["LeNet", "train_classifier", "test_accuracy", "save_classifier", "load_classifier",
           "weights_sha256", "ClassifierError", "WEIGHTS_PATH", "FEATURE_NETWORK"]

FEATURE_NETWORK = "lenet_mnist5k"          # how reports name the network their numbers come from
WEIGHTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights",
                            f"{FEATURE_NETWORK}.npz")
IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
FEATURE_DIM = 84
_MAX_SHIFT = 2           # training augmentation: each image moved by up to 2 pixels each way


class ClassifierError(ValueError):
    """The shipped classifier's weights are missing, corrupt or do not fit the LeNet."""


class LeNet(nn.Module):
    """LeNet-5 with ReLUs and max-pooling for (N, 1, 28, 28) images in [0, 1]."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),       # (6, 14, 14)
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),                 # (16, 5, 5)
            nn.Flatten())
        self.hidden = nn.Sequential(nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
                                    nn.Linear(120, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        """The penultimate activations (N, 84): what FID, KID and the neighbour search compare."""
        return self.hidden(self.conv(x))

    def forward(self, x: Tensor) -> Tensor:
        """The class logits (N, 10); softmax gives p(y | x) for the Inception Score."""
        return self.head(self.features(x))


def _mnist5k(split):
    from ..data import load_dataset
    return load_dataset("mnist5k", split).arrays


def test_accuracy(model: LeNet, images=None, labels=None, batch_size: int = 500) -> float:
    """The fraction of ``images`` (default: the mnist5k test split) that ``model`` labels right."""
    if images is None:
        images, labels = _mnist5k("test")
    was_training = model.training
    model.eval()
    correct = 0
    with no_grad():
        for start in range(0, len(images), batch_size):
            logits = model(Tensor(np.ascontiguousarray(images[start:start + batch_size]))).numpy()
            correct += int((logits.argmax(1) == labels[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / len(images)


def train_classifier(steps: int = 4000, seed: int = 0, batch_size: int = 64, lr: float = 2e-3,
                     log_every: int = 0):
    """Train a :class:`LeNet` on the mnist5k train split; returns ``(model, test_accuracy)``.

    Minimises the cross entropy :math:`-\\log p(y \\mid x)` with Adam on ``steps`` random
    batches, each image shifted by up to 2 pixels; the learning rate decays by cosine to 0 so
    the last steps settle.  Everything (initialisation, batches, shifts) follows from ``seed``.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"train_classifier: steps and batch_size must be positive, got "
                         f"steps={steps}, batch_size={batch_size}")
    from ..models.autoencoders.vae import random_translate   # here: models may import metrics
    images, labels = _mnist5k("train")
    picks_rng = np.random.default_rng(seed)
    with fork_rng(seed):                     # weights and shifts from seed; the caller's stream
        model = LeNet().train()              # is left as it was
        optimizer = Adam(model.parameters(), lr=lr)
        schedule = CosineAnnealingLR(optimizer, T_max=steps)
        for step in range(steps):
            picks = picks_rng.integers(0, len(images), size=batch_size)
            x = random_translate(Tensor(images[picks]), _MAX_SHIFT)
            loss = F.cross_entropy(model(x), Tensor(labels[picks]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if log_every and (step + 1) % log_every == 0:
                print(f"step {step + 1}/{steps}  loss {loss.item():.4f}", flush=True)
    model.eval()
    return model, test_accuracy(model)


def save_classifier(model: LeNet, path, accuracy: float, steps: int, seed: int) -> str:
    """Write the weights (and how they were made) to ``path`` atomically, with ``ng.save``."""
    state = {name: value.detach().numpy() for name, value in model.state_dict().items()}
    save({"state_dict": state, "test_accuracy": float(accuracy), "steps": int(steps),
          "seed": int(seed)}, path)
    return os.fspath(path)


def _read_weights(path) -> LeNet:
    """A LeNet in eval mode holding the weights in ``path``; a ClassifierError names the file
    when it is missing, unreadable, or holds weights of another shape."""
    if not os.path.isfile(path):
        raise ClassifierError(f"the metrics classifier's weights {path} are missing; recreate "
                              f"them with: python -m nanogen.metrics.classifier --out {path}")
    try:
        saved = load(path)
        state = {k: Tensor(np.asarray(v)) for k, v in saved["state_dict"].items()}
        with fork_rng(0):                  # the throw-away initial weights leave the global
            model = LeNet()                # random stream untouched
        model.load_state_dict(state)
    except (SerializationError, KeyError, TypeError, AttributeError, ValueError,
            RuntimeError) as e:
        raise ClassifierError(f"the metrics classifier's weights {path} are corrupt ({e}); "
                              f"recreate them with: python -m nanogen.metrics.classifier "
                              f"--out {path}") from None
    return model.eval()


@functools.lru_cache(maxsize=None)
def load_classifier(path: str = WEIGHTS_PATH) -> LeNet:
    """The shipped LeNet (eval mode), read from ``path`` once per process and then shared.
    Callers must not train or modify it."""
    return _read_weights(os.fspath(path))


@functools.lru_cache(maxsize=None)
def weights_sha256(path: str = WEIGHTS_PATH) -> str:
    """The SHA-256 of the weights file: the key of every cache of features computed with it."""
    load_classifier(path)                               # a clear error if the file is bad
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None) -> int:
    """``python -m nanogen.metrics.classifier``: retrain, report the test accuracy, save."""
    p = argparse.ArgumentParser(prog="python -m nanogen.metrics.classifier",
                                description="Train the LeNet behind nanogen's FID / KID / IS on "
                                "mnist5k and write its weights.")
    p.add_argument("--out", default=WEIGHTS_PATH, help="where to write the .npz (default: the "
                   "shipped weights)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    args = p.parse_args(argv)
    model, accuracy = train_classifier(steps=args.steps, seed=args.seed,
                                       batch_size=args.batch_size, lr=args.lr,
                                       log_every=max(1, args.steps // 10))
    print(f"test accuracy {accuracy:.4f} on the 1000 mnist5k test images")
    print(f"wrote {save_classifier(model, args.out, accuracy, args.steps, args.seed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
