"""The optimizer base class: parameter groups, per-parameter state, and state dicts.

An optimizer holds ``param_groups``, a list of dicts.  Each group has a ``"params"`` list of
tensors and the hyperparameters (``lr``, ``momentum``, ...) used for them; options not given for
a group come from ``defaults``.  ``state`` maps each parameter (the tensor object itself) to a
dict of the buffers the algorithm keeps for it (``momentum_buffer``, ``exp_avg``, ``step``, ...).

Updates work directly on the parameters' arrays (``p.data``), in place and outside autograd:
an optimizer step records nothing, keeps float32 in float32 and reuses scratch arrays instead of
building a temporary per arithmetic operation.  Parameters whose ``grad`` is ``None`` are
skipped.  A subclass implements :meth:`Optimizer._update` for one parameter; the loop over groups
lives here, once.

The state dict has PyTorch's layout, so a checkpoint written with :func:`nanogen.save` reads the
way a PyTorch user expects::

    {"state": {0: {"step": 3, "exp_avg": Tensor, ...}, 1: {...}},
     "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), ..., "params": [0, 1]}]}

Parameters are numbered in the order they appear across the groups; ``state`` uses those
numbers as keys.
"""
from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np

from .. import autograd
from ..tensor import Tensor

__all__ = ["Optimizer", "required"]


class _RequiredParameter:
    """Sentinel for a hyperparameter that has no default and must be given."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()

_SET_MESSAGE = ("optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead.")


def _check_nonnegative(name, value):
    """Raise ``ValueError`` naming ``value`` unless ``value >= 0``."""
    if value is not required and not value >= 0.0:
        raise ValueError(f"Invalid {name} value: {value!r} (expected >= 0)")


class Optimizer:
    """Base class of all optimizers (``torch.optim.Optimizer``'s interface).

    Args:
        params: an iterable of tensors, or of dicts each with a ``"params"`` entry (an iterable
            of tensors) and any per-group options that override ``defaults``.
        defaults: the default value of every hyperparameter of the algorithm.
    """

    # The per-parameter state a loaded state dict may hold: entries every non-empty state must
    # have, and entries it may have, each an "array" (shaped like the parameter, kept in its
    # dtype) or a "count" (a number).  Subclasses fill these in; other entries load as they are.
    _STATE_REQUIRED: dict = {}
    _STATE_OPTIONAL: dict = {}

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self._check_hyperparameters(self.defaults)
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got a Tensor")
        if isinstance(params, dict):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got a single dict: wrap it in a list")
        if isinstance(params, (set, frozenset)):
            raise TypeError(_SET_MESSAGE)
        self.state = defaultdict(dict)
        self.param_groups = []
        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group):
        """Add a group (a dict with ``"params"`` and optional per-group options).

        Useful for fine-tuning: unfreeze layers and hand them to the optimizer as training goes.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"a param group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError("a param group needs a 'params' entry")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(_SET_MESSAGE)
        else:
            params = list(params)
        seen = set()
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but params[{i}] of the "
                                f"group is a {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"can't optimize a non-leaf Tensor (params[{i}] of the group "
                                 "was computed by an operation; optimize the leaf it came from "
                                 "or .detach() it)")
            if id(p) in seen:
                raise ValueError(f"params[{i}] appears twice in the same parameter group; each "
                                 "parameter may be given once")
            seen.add(id(p))
        group["params"] = params

        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        self._check_hyperparameters(group)

        for other in self.param_groups:
            if any(id(p) in seen for p in other["params"]):
                raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def _check_hyperparameters(self, options):
        """Validate a dict of hyperparameters (the defaults, or one group); subclasses extend."""
        if "lr" in options:
            _check_nonnegative("learning rate", options["lr"])

    # ------------------------------------------------------------------ gradients and steps
    def zero_grad(self, set_to_none: bool = True):
        """Reset the gradients of all optimized tensors.

        ``set_to_none=True`` (the default) drops them (``p.grad = None``), which frees memory
        and lets :meth:`step` skip parameters that got no gradient; ``False`` fills them with
        zeros instead.
        """
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                elif g.grad_fn is not None or g.requires_grad:
                    # a gradient built with create_graph belongs to a graph: replace it rather
                    # than overwrite an array the graph may still read
                    p.grad = Tensor._make(g._xp().zeros_like(g.data), g.device)
                else:
                    g.data.fill(0)

    def step(self, closure=None):
        """Perform one optimization step and return the closure's loss (or ``None``).

        ``closure`` re-evaluates the model and returns the loss; it runs with gradient recording
        on.  Parameters whose ``grad`` is ``None`` are left untouched.
        """
        loss = None
        if closure is not None:
            with autograd.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.data
                if grad.shape != p.data.shape:
                    raise RuntimeError(f"{type(self).__name__}.step: a parameter of shape "
                                       f"{tuple(p.data.shape)} has a gradient of shape "
                                       f"{tuple(grad.shape)}")
                self._update(p, grad, self.state[p], group)
        return loss

    def _update(self, p, grad, state, group):
        """Update one parameter in place: subclasses implement their algorithm here.

        ``p`` is the parameter (update ``p.data``, an array of module ``p._xp()``), ``grad`` the
        gradient's array (never modify it), ``state`` the parameter's state dict (empty on its
        first step) and ``group`` its hyperparameters.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement _update (or step)")

    @staticmethod
    def _zeros_state(p):
        """A zero state buffer shaped, typed and placed like parameter ``p``."""
        return Tensor._make(p._xp().zeros_like(p.data), p.device)

    # ------------------------------------------------------------------ state dicts
    def state_dict(self):
        """The optimizer's state as ``{"state": {index: {...}}, "param_groups": [...]}``.

        Parameters are replaced by their index (counted across groups in order).  As in
        PyTorch, the state tensors are the optimizer's own (not copies): save the dict, or
        ``copy.deepcopy`` it, before stepping again if a snapshot is wanted.
        """
        index_of = {}
        packed_groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index_of.setdefault(id(p), len(index_of))
            packed["params"] = [index_of[id(p)] for p in group["params"]]
            packed_groups.append(packed)
        packed_state = {}
        for key, value in self.state.items():
            if isinstance(key, Tensor):
                if id(key) not in index_of:
                    continue          # state of a tensor no longer in any group
                key = index_of[id(key)]
            packed_state[key] = value
        return {"state": packed_state, "param_groups": packed_groups}

    def load_state_dict(self, state_dict):
        """Restore a dict made by :meth:`state_dict` (possibly through ``ng.save`` / ``ng.load``).

        The optimizer must have been built with the same number of groups holding the same
        number of parameters (of the same shapes).  Hyperparameters come from the dict; state
        arrays are copied onto each parameter's device (floating ones in the parameter's dtype),
        so the loaded optimizer shares no memory with ``state_dict``.  The entries the algorithm
        keeps (Adam's ``step``, ``exp_avg``, ``exp_avg_sq``, ...) must all be there, the arrays
        real and shaped like their parameter: a state that would fail at the next ``step()``
        raises ``ValueError`` here instead.
        """
        if not isinstance(state_dict, dict) or "state" not in state_dict or \
                "param_groups" not in state_dict:
            raise ValueError("load_state_dict expects a dict with 'state' and 'param_groups' "
                             "entries, as returned by Optimizer.state_dict()")
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
        if not isinstance(state_dict["state"], dict) or not isinstance(saved_groups, list) or \
                not all(isinstance(s, dict) and isinstance(s.get("params"), list)
                        for s in saved_groups):
            raise ValueError("load_state_dict expects 'state' to be a dict and 'param_groups' a "
                             "list of dicts with a 'params' list, as Optimizer.state_dict() "
                             "returns")
        if len(groups) != len(saved_groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups: "
                             f"it has {len(saved_groups)}, this optimizer has {len(groups)}")
        for i, (g, s) in enumerate(zip(groups, saved_groups)):
            if len(g["params"]) != len(s["params"]):
                raise ValueError(f"loaded state dict contains a parameter group that doesn't "
                                 f"match the size of optimizer's group: group {i} has "
                                 f"{len(s['params'])} parameters in the state dict and "
                                 f"{len(g['params'])} in this optimizer")
        param_of = {}
        for g, s in zip(groups, saved_groups):
            for p, idx in zip(g["params"], s["params"]):
                param_of[idx] = p

        new_state = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in param_of:
                p = param_of[key]
                if not isinstance(value, dict):
                    raise ValueError(f"loaded state for parameter {key} is a "
                                     f"{type(value).__name__}, expected a dict")
                missing = [name for name in self._STATE_REQUIRED if name not in value]
                if value and missing:
                    raise ValueError(f"loaded state for parameter {key} lacks "
                                     f"{', '.join(map(repr, missing))}, which "
                                     f"{type(self).__name__} keeps for every parameter")
                new_state[p] = {name: self._load_state_value(p, key, name, v)
                                for name, v in value.items()}
            else:
                new_state[key] = copy.deepcopy(value)

        new_groups = []
        for i, (g, s) in enumerate(zip(groups, saved_groups)):
            restored = {k: copy.deepcopy(v) for k, v in s.items() if k != "params"}
            for name, value in g.items():       # an option the dict lacks keeps its value
                restored.setdefault(name, value)
            try:
                self._check_hyperparameters(restored)
            except (TypeError, KeyError) as e:  # e.g. betas that are not two numbers
                raise ValueError(f"loaded state dict: group {i} has invalid hyperparameters "
                                 f"({type(e).__name__}: {e})") from None
            restored["params"] = g["params"]
            new_groups.append(restored)
        self.state = new_state
        self.param_groups = new_groups

    def _load_state_value(self, param, index, name, value):
        """Copy one saved state entry onto ``param``'s device (and dtype, for floating arrays)."""
        from .. import backend
        kind = {**self._STATE_REQUIRED, **self._STATE_OPTIONAL}.get(name)
        if kind == "array":
            return real_array_like(value, param,
                                   f"loaded state for parameter {index}: {name!r}",
                                   "the parameter")
        if kind == "count":
            arr = value._host() if isinstance(value, Tensor) else value
            if isinstance(arr, bool) or not (isinstance(arr, (int, float)) or (
                    hasattr(arr, "dtype") and arr.dtype.kind in "iuf" and arr.size == 1)) or \
                    not 0 <= float(np.asarray(arr).reshape(-1)[0]) < float("inf"):
                raise ValueError(f"loaded state for parameter {index}: {name!r} is "
                                 f"{value!r}, expected a count >= 0")
        if name == "step":
            # nanogen keeps the step count as a Python int; accept a 1-element tensor or array
            if isinstance(value, Tensor) or hasattr(value, "shape"):
                arr = value._host() if isinstance(value, Tensor) else value
                if getattr(arr, "size", 1) != 1:
                    raise ValueError(f"loaded state for parameter {index}: 'step' has "
                                     f"{arr.size} elements, expected 1")
                value = arr.reshape(()).item()
            return int(value) if float(value).is_integer() else value
        if isinstance(value, Tensor) or (hasattr(value, "shape") and hasattr(value, "dtype")):
            arr = value.data if isinstance(value, Tensor) else value
            if arr.ndim > 0 and tuple(arr.shape) != tuple(param.shape):
                raise ValueError(f"loaded state for parameter {index}: {name!r} has shape "
                                 f"{tuple(arr.shape)} but the parameter has shape "
                                 f"{tuple(param.shape)}")
            arr = backend.to_device_array(arr, param.device)
            dtype = param.data.dtype if arr.dtype.kind == "f" and param.data.dtype.kind == "f" \
                else arr.dtype
            arr = arr.astype(dtype, copy=True)
            return Tensor._make(arr, param.device)
        if isinstance(value, dict):
            return {k: self._load_state_value(param, index, f"{name}.{k}", v)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._load_state_value(param, index, name, v) for v in value)
        return copy.deepcopy(value)

    # ------------------------------------------------------------------ printing
    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state,
                "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)


def real_array_like(value, like, where, owner):
    """A saved array (or Tensor) restored as a copy on ``like``'s device and dtype; a value that
    is not a real array of ``like``'s shape is refused with one line naming ``where`` and the
    ``owner`` of the shape it should have had."""
    from .. import backend
    arr = value.data if isinstance(value, Tensor) else value
    if not hasattr(arr, "dtype") or arr.dtype.kind not in "biuf":
        what = f"a {arr.dtype} array" if hasattr(arr, "dtype") else f"a {type(value).__name__}"
        raise ValueError(f"{where} is {what}, expected a real array shaped like {owner}")
    if tuple(arr.shape) != tuple(like.shape):
        raise ValueError(f"{where} has shape {tuple(arr.shape)} but {owner} has shape "
                         f"{tuple(like.shape)}")
    arr = backend.to_device_array(arr, like.device).astype(like.data.dtype, copy=True)
    return Tensor._make(arr, like.device)
