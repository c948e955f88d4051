"""An exponential moving average of model weights, for sampling from GANs and diffusion models.

Generators sampled with averaged weights (Karras et al. 2018 for GANs; Ho et al. 2020 and
Song & Ermon 2020 for diffusion) give visibly better samples than the last iterate.  The
average is kept in *shadow* arrays beside the model; the model itself keeps training on its own
weights, and the averaged weights are swapped in only for evaluation::

    ema = ng.optim.ExponentialMovingAverage(model, decay=0.999)
    for batch in loader:
        loss = model.loss(batch); opt.zero_grad(); loss.backward(); opt.step()
        ema.update()
    with ema.average_parameters():
        samples = model.sample(64)        # drawn with the averaged weights
    # the training weights are back here
"""
from __future__ import annotations

import contextlib

from .. import backend
from ..tensor import Tensor
from .optimizer import real_array_like

__all__ = ["ExponentialMovingAverage", "EMA"]


def _is_module(obj):
    return hasattr(obj, "parameters") and hasattr(obj, "named_buffers")


class ExponentialMovingAverage:
    r"""Keep ``shadow = decay * shadow + (1 - decay) * param`` for every parameter.

    Args:
        model_or_parameters: a Module (its ``parameters()`` are averaged and its
            ``named_buffers()`` -- BatchNorm running statistics, counters -- are *copied*, since
            averaging them is meaningless), or an iterable of tensors.
        decay: the decay rate ``d`` in ``[0, 1]``; the average spans roughly ``1 / (1 - d)``
            updates.
        warmup: use the decay ``min(decay, (1 + n) / (10 + n))`` at the ``n``-th update
            (``n = 1, 2, ...``), as in TensorFlow's ``ExponentialMovingAverage(num_updates=...)``:
            early on, when the initial weights are still far from good ones, the average forgets
            them quickly.

    The Module (not a snapshot of its tensors) is kept and asked for its parameters and buffers
    at every call, so a module whose tensors are replaced (by ``load_state_dict``, say) is still
    tracked; the shadows are matched to them by position and checked by shape.
    """

    def __init__(self, model_or_parameters, decay=0.999, warmup=False):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"Invalid decay value: {decay!r} (expected 0 <= decay <= 1)")
        self.decay = decay
        self.warmup = bool(warmup)
        self.num_updates = 0
        if _is_module(model_or_parameters):
            self._module, self._params = model_or_parameters, None
        else:
            if isinstance(model_or_parameters, Tensor):
                model_or_parameters = [model_or_parameters]
            self._module, self._params = None, list(model_or_parameters)
            for i, p in enumerate(self._params):
                if not isinstance(p, Tensor):
                    raise TypeError(f"ExponentialMovingAverage takes a Module or tensors, but "
                                    f"parameter {i} is a {type(p).__name__}")
        params, buffers = self._tensors(None)
        self.shadow_params = [_copy_of(p) for p in params]
        self.shadow_buffers = [_copy_of(b) for b in buffers]
        self._stored = None

    # ------------------------------------------------------------------ what is tracked
    def _tensors(self, target):
        """(parameters, buffers) of ``target`` (a Module or tensors), default the tracked ones."""
        if target is None:
            target = self._module if self._module is not None else self._params
        if _is_module(target):
            return list(target.parameters()), [b for _, b in target.named_buffers()]
        if isinstance(target, Tensor):
            return [target], []
        return list(target), []

    def _matched(self, target, what):
        """Pair ``target``'s tensors with the shadows, checking counts and shapes."""
        params, buffers = self._tensors(target)
        pairs = []
        for kind, live, shadows in (("parameters", params, self.shadow_params),
                                    ("buffers", buffers, self.shadow_buffers)):
            if len(live) != len(shadows):
                if kind == "buffers" and not live and not _is_module(target):
                    continue          # copy_to(list_of_params): buffers have nowhere to go
                raise ValueError(f"{what}: expected {len(shadows)} {kind}, got {len(live)}")
            for i, (t, s) in enumerate(zip(live, shadows)):
                if tuple(t.shape) != tuple(s.shape):
                    raise ValueError(f"{what}: {kind[:-1]} {i} has shape {tuple(t.shape)}, its "
                                     f"average has shape {tuple(s.shape)}")
                pairs.append((kind, t, s))
        return pairs

    # ------------------------------------------------------------------ the average
    def get_decay(self):
        """The decay the next :meth:`update` will use."""
        if self.warmup:
            n = self.num_updates + 1
            return min(self.decay, (1 + n) / (10 + n))
        return self.decay

    def update(self, model_or_parameters=None):
        r"""Fold the current weights into the average.

        ``shadow <- d * shadow + (1 - d) * param``, computed in place as
        ``shadow -= (1 - d) * (shadow - param)``; buffers are copied (``shadow <- buffer``).
        """
        decay = self.get_decay()
        self.num_updates += 1
        one_minus_decay = 1.0 - decay
        for kind, t, s in self._matched(model_or_parameters, "update"):
            src = backend.to_device_array(t.data, s.device)
            if kind == "buffers":
                s.data[...] = src
                continue
            xp = s._xp()
            tmp = xp.subtract(s.data, src, out=xp.empty_like(s.data))
            tmp *= one_minus_decay
            s.data -= tmp

    def copy_to(self, model_or_parameters=None):
        """Write the averaged weights (and the copied buffers) into the model, in place.

        Give another model of the same architecture (a copy used only for sampling, say) to
        fill it instead of the tracked one.
        """
        for _, t, s in self._matched(model_or_parameters, "copy_to"):
            t.data[...] = backend.to_device_array(s.data, t.device)

    def store(self, model_or_parameters=None):
        """Save a copy of the current weights and buffers, to be put back by :meth:`restore`."""
        self._stored = [(t, t._xp().array(t.data, copy=True))
                        for _, t, _ in self._matched(model_or_parameters, "store")]

    def restore(self, model_or_parameters=None):
        """Put back the weights saved by the latest :meth:`store` (into the same tensors, or into
        ``model_or_parameters``)."""
        if self._stored is None:
            raise RuntimeError("restore() called without a preceding store()")
        targets = [t for t, _ in self._stored] if model_or_parameters is None else \
            [t for _, t, _ in self._matched(model_or_parameters, "restore")]
        if len(targets) != len(self._stored):
            raise ValueError(f"restore: {len(self._stored)} tensors were stored, "
                             f"{len(targets)} given")
        for t, (_, saved) in zip(targets, self._stored):
            t.data[...] = saved
        self._stored = None

    @contextlib.contextmanager
    def average_parameters(self, model_or_parameters=None):
        """``with ema.average_parameters(): ...`` runs the block with the averaged weights in
        the model and restores the training weights afterwards (also when the block raises)."""
        self.store(model_or_parameters)
        self.copy_to(model_or_parameters)
        try:
            yield
        finally:
            self.restore(model_or_parameters)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self):
        """``{"decay", "warmup", "num_updates", "shadow_params", "shadow_buffers"}``; the shadow
        tensors are the EMA's own (save the dict before the next update for a snapshot)."""
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow_params": list(self.shadow_params),
                "shadow_buffers": list(self.shadow_buffers)}

    def load_state_dict(self, state_dict):
        """Restore a :meth:`state_dict`; the shadows are copied onto the current ones' devices."""
        for key in ("decay", "num_updates", "shadow_params"):
            if key not in state_dict:
                raise ValueError(f"EMA state dict lacks the entry {key!r}")
        new = {}
        for key in ("shadow_params", "shadow_buffers"):
            saved = list(state_dict.get(key, []))
            mine = getattr(self, key)
            if len(saved) != len(mine):
                raise ValueError(f"EMA state dict has {len(saved)} {key}, this EMA tracks "
                                 f"{len(mine)}")
            new[key] = []
            for i, (s, cur) in enumerate(zip(saved, mine)):
                new[key].append(real_array_like(s, cur, f"EMA state dict: {key}[{i}]",
                                                "the model's tensor it shadows"))
        decay = state_dict["decay"]
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"Invalid decay value in EMA state dict: {decay!r}")
        self.decay = decay
        self.warmup = bool(state_dict.get("warmup", False))
        self.num_updates = int(state_dict["num_updates"])
        self.shadow_params = new["shadow_params"]
        self.shadow_buffers = new["shadow_buffers"]

    def __repr__(self):
        return (f"ExponentialMovingAverage(decay={self.decay}, warmup={self.warmup}, "
                f"num_updates={self.num_updates}, tensors={len(self.shadow_params)})")


def _copy_of(t):
    """A detached copy of ``t`` on its device (the shadow of a parameter or buffer)."""
    return Tensor._make(t._xp().array(t.data, copy=True), t.device)


EMA = ExponentialMovingAverage
