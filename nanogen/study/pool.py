"""The images a study shows: a fixed pool drawn once at start-up, served by opaque ids.

Every image gets a random 16-hex-digit id that says nothing about where it came from; the page
asks for ``/image/<id>.png`` and the server looks the id up in memory, so no file path ever
reaches a URL.  The PNG bytes are made once, by :func:`nanogen.utils.save_image` (the same
writer as every sample grid), enlarged by whole pixels to about 280 pixels wide.

:func:`pool_from_runs` draws ``num_samples`` samples of each run the way ``nanogen sample``
does (its loader, sampler options and :func:`~nanogen.cli.draw_samples`, seeded) and as many
real images, picked at random from the test split of the runs' dataset.  Real images are shown
as the models were trained on them when every run binarizes its data ("binary" transform), and
in grey levels otherwise.
"""
from __future__ import annotations

import os
import random
import secrets
import tempfile
from types import SimpleNamespace

import numpy as np

__all__ = ["ImagePool", "pool_from_runs", "REAL"]

REAL, GENERATED = "real", "generated"
DISPLAY_WIDTH = 280                     # pixels; 28x28 digits are enlarged 10 times


class ImagePool:
    """``sources``: ``{label: (truth, images)}`` with truth "real" or "generated" and images an
    array (N, C, H, W) in [0, 1].  ``pool[id]`` is ``(label, truth, png_bytes)``."""

    def __init__(self, sources: dict):
        from ..utils import display_scale, save_image
        if not sources:
            raise ValueError("ImagePool: no image sources given")
        self._images: dict[str, tuple] = {}
        self.counts: dict[str, int] = {}
        with tempfile.TemporaryDirectory(prefix="nanogen-study-") as scratch:
            png = os.path.join(scratch, "image.png")
            for label, (truth, images) in sources.items():
                if truth not in (REAL, GENERATED):
                    raise ValueError(f"ImagePool: source {label!r} has truth {truth!r}; use "
                                     f"{REAL!r} or {GENERATED!r}")
                images = np.asarray(images, dtype=np.float32)
                if images.ndim != 4 or len(images) == 0:
                    raise ValueError(f"ImagePool: source {label!r} needs images of shape "
                                     f"(N, C, H, W) with N >= 1, got shape {images.shape}")
                scale = display_scale(images.shape[-1], DISPLAY_WIDTH)
                for image in images:
                    save_image(image[None], png, padding=0, scale=scale)
                    with open(png, "rb") as f:
                        self._images[self._new_id()] = (label, truth, f.read())
                self.counts[label] = len(images)

    def _new_id(self) -> str:
        while True:
            image_id = secrets.token_hex(8)
            if image_id not in self._images:
                return image_id

    def __getitem__(self, image_id: str) -> tuple:
        return self._images[image_id]

    def __contains__(self, image_id) -> bool:
        return image_id in self._images

    def __len__(self) -> int:
        return len(self._images)

    def shuffled_ids(self) -> list:
        """Every id once, in a fresh random order (one per participant's page)."""
        ids = list(self._images)
        random.SystemRandom().shuffle(ids)
        return ids


def pool_from_runs(dirs, num_samples: int = 100, seed: int = 0, device=None, sampler=None,
                   sampler_steps=None) -> tuple[ImagePool, str]:
    """The pool of a study of the runs (or ``pretrained:NAME``) in ``dirs``: ``num_samples``
    samples of each, labelled by the directory as given, and as many real test images,
    labelled ``real:<dataset>/test``.  Returns ``(pool, real_label)``."""
    import nanogen as ng
    from ..cli import UsageError, _dataset, _load_for_use, draw_samples, sampler_options
    from ..data import eval_dataset
    from ..utils import positive_int
    try:
        num_samples = positive_int(num_samples, "--num-samples")
    except ValueError as e:
        raise UsageError(str(e)) from None
    if len(set(dirs)) != len(dirs):
        raise UsageError("a run directory is named twice; name each model once")
    sources, datasets, transforms, shapes = {}, set(), set(), set()
    for index, run_dir in enumerate(dirs):
        target = _load_for_use(SimpleNamespace(dir=run_dir, device=device))
        options = sampler_options(target.model, sampler, sampler_steps,
                                  (target.entry or {}).get("eval", {}).get("sampler"))
        with ng.random.fork_rng(seed + index):
            samples = draw_samples(target.model, num_samples, options)
        sources[str(run_dir)] = (GENERATED, samples)
        datasets.add(target.config["dataset"])
        transforms.add(target.model.data_transform)
        shapes.add(samples.shape[1:])
    if len(datasets) > 1:
        raise UsageError(f"the runs were trained on different datasets "
                         f"({', '.join(sorted(datasets))}): a study compares the models of one "
                         f"dataset with its real images")
    dataset = datasets.pop()
    test = _dataset(dataset, "test")
    if test.kind != "image":
        raise UsageError(f"{dataset} is a point set: a study shows images")
    kind = "binary" if transforms == {"binary"} else "unit"
    real = eval_dataset(test, kind, seed=seed).arrays[0]
    if real.shape[1:] not in shapes or len(shapes) > 1:
        raise UsageError(f"the samples' shapes {sorted(shapes)} differ from the {dataset} "
                         f"test images' {real.shape[1:]}")
    if num_samples > len(real):
        raise UsageError(f"--num-samples {num_samples}: the {dataset} test split has only "
                         f"{len(real)} images")
    picks = np.random.default_rng(seed).choice(len(real), num_samples, replace=False)
    real_label = f"real:{dataset}/test"
    return ImagePool({real_label: (REAL, real[picks]), **sources}), real_label
