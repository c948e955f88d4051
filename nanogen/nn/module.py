"""``Module``: the base class of every layer and model.

A module owns three ordered registries, filled by plain attribute assignment:

* ``_parameters`` -- :class:`Parameter` objects (``self.weight = Parameter(...)``);
* ``_buffers``    -- tensors that are state but not learned (running statistics, masks), added
  with :meth:`Module.register_buffer`;
* ``_modules``    -- child modules (``self.fc = Linear(...)``).

Everything else -- ``parameters()``, ``state_dict()``, ``to(device)``, ``train()``, the nested
``repr`` -- is a walk over these registries.  Names are dotted paths (``"encoder.0.weight"``) in
registration order, and a tensor or module reachable along several paths is reported once, under
the first path found.
"""
from __future__ import annotations

import collections
import itertools
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor, parse_to_args
from .parameter import Parameter

__all__ = ["Module", "RemovableHandle"]


class _IncompatibleKeys(collections.namedtuple("IncompatibleKeys",
                                               ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` could not match: two lists of key names."""

    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()


def _state_value_problem(key, value, target):
    """Why ``value`` cannot be copied into the parameter or buffer ``target`` (None if it can):
    not an array, another shape, or a dtype that has no meaning as ``target``'s (a complex value
    into a real parameter would lose its imaginary part; strings and objects are no numbers)."""
    if not (isinstance(value, (Tensor, np.ndarray, np.generic))
            or hasattr(value, "__cuda_array_interface__")):
        return (f'While copying the parameter named "{key}", expected a Tensor or NumPy array '
                f"from checkpoint but received {type(value).__module__}."
                f"{type(value).__qualname__}.")
    shape, expected = tuple(value.shape), tuple(target.shape)
    if shape != expected:
        return (f"size mismatch for {key}: copying a param with shape {shape} from checkpoint, "
                f"the shape in current model is {expected}.")
    dtype, wanted = np.dtype(value.dtype), np.dtype(target.dtype)
    if dtype.kind not in "biuf" and not (dtype.kind == "c" and wanted.kind == "c"):
        return (f"dtype mismatch for {key}: copying a param with dtype {dtype} from checkpoint, "
                f"the dtype in current model is {wanted}.")
    return None


class RemovableHandle:
    """Returned by ``register_forward_hook`` / ``register_forward_pre_hook``; ``remove()`` undoes
    the registration."""

    _ids = itertools.count()

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _addindent(text: str, spaces: int) -> str:
    """Indent every line of ``text`` but the first (for nesting child reprs)."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _parse_to(args, kwargs):
    """``(device, dtype)`` from the arguments of ``Module.to`` (PyTorch's accepted forms)."""
    device, dtype = parse_to_args(args, kwargs)
    if dtype is not None and dtype.kind not in "fc":
        raise TypeError(f"nn.Module.to only accepts floating point dtypes, got {dtype}")
    if device is not None:
        backend.check_device_available(device)
    return device, dtype


class Module:
    """Base class for all layers and models; subclasses call ``super().__init__()`` first, then
    assign parameters and submodules as attributes, and implement :meth:`forward`."""

    def __init__(self):
        # written through object.__setattr__: our own __setattr__ reads these registries
        set_ = object.__setattr__
        set_(self, "training", True)
        set_(self, "_parameters", OrderedDict())
        set_(self, "_buffers", OrderedDict())
        set_(self, "_non_persistent_buffers", set())
        set_(self, "_modules", OrderedDict())
        set_(self, "_forward_pre_hooks", OrderedDict())
        set_(self, "_forward_hooks", OrderedDict())

    # ------------------------------------------------------------------ the forward pass
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required '
                                  f'"forward" function')

    def __call__(self, *args, **kwargs):
        for hook in tuple(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in tuple(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """``hook(module, args)`` runs before ``forward``; returning a value replaces the
        positional arguments."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook) -> RemovableHandle:
        """``hook(module, args, output)`` runs after ``forward``; returning a value replaces the
        output (handy for grabbing intermediate features)."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------------ registration
    def _check_new_name(self, name, kind):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {kind} before Module.__init__() call")
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if name == "":
            raise KeyError(f'{kind} name can\'t be empty string ""')
        if "." in name:
            raise KeyError(f'{kind} name can\'t contain ".", got "{name}"')

    def register_parameter(self, name: str, param) -> None:
        """Register ``param`` (a :class:`Parameter` or ``None``) under ``name``."""
        self._check_new_name(name, "parameter")
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None:
            if not isinstance(param, Parameter):
                raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter "
                                f"'{name}' (nn.Parameter or None required)")
            if param.grad_fn is not None:
                raise ValueError(f"cannot assign non-leaf Tensor to parameter '{name}': wrap a "
                                 f"detached tensor, Parameter(t.detach())")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Register a non-learned tensor (running mean, mask, ...).  It moves with ``to()`` and,
        when ``persistent``, is saved in the ``state_dict``."""
        self._check_new_name(name, "buffer")
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                            f"(Tensor or None required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module) -> None:
        """Register a child module (or ``None``) under ``name``."""
        self._check_new_name(name, "module")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass (module "
                            f"'{name}')")
        self._modules[name] = module

    register_module = add_module

    def _forget(self, name, keep=None):
        """Drop ``name`` from every registry (and the instance dict) except ``keep``."""
        for store in ("_parameters", "_buffers", "_modules"):
            if store != keep:
                self.__dict__[store].pop(name, None)
        if keep != "_buffers":
            self._non_persistent_buffers.discard(name)
        self.__dict__.pop(name, None)

    def __setattr__(self, name, value):
        d = self.__dict__
        params, buffers, modules = d.get("_parameters"), d.get("_buffers"), d.get("_modules")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._forget(name, keep="_parameters")
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                f"(nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._forget(name, keep="_modules")
            self.add_module(name, value)
        elif modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module "
                                f"'{name}' (nn.Module or None expected)")
            modules[name] = None
        elif buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                f"(Tensor or None expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # only reached when normal lookup fails: look in the registries
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            registry = d.get(store)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in ("_parameters", "_buffers", "_modules"):
            registry = self.__dict__.get(store)
            if registry is not None and name in registry:
                del registry[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    # ------------------------------------------------------------------ traversal
    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """``(dotted_name, module)`` for this module (name ``prefix``) and all descendants,
        depth first in registration order; a module reachable twice is yielded once."""
        if memo is None:
            memo = set()
        if id(self) in memo:
            return
        if remove_duplicate:
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, prefix + ("." if prefix else "") + name,
                                                remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        """``(name, module)`` for the direct children (each distinct child once)."""
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry, prefix, recurse, remove_duplicate=True):
        """Walk ``registry`` ('_parameters' or '_buffers') of this module (and descendants when
        ``recurse``), yielding ``(dotted_name, tensor)``; each tensor once (by identity)."""
        seen = set()
        owners = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
                  if recurse else [(prefix, self)])
        for owner_prefix, owner in owners:
            for name, tensor in owner.__dict__[registry].items():
                if tensor is None or id(tensor) in seen:
                    continue
                if remove_duplicate:
                    seen.add(id(tensor))
                yield owner_prefix + ("." if owner_prefix else "") + name, tensor

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True):
        """``(dotted_name, Parameter)`` pairs; a shared parameter appears once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> "Module":
        """The descendant at dotted path ``target`` (``""`` is this module)."""
        module = self
        if target == "":
            return module
        walked = []
        for part in target.split("."):
            child = module._modules.get(part)
            if child is None:
                where = ".".join(walked) or type(self).__name__
                raise AttributeError(f"{where} has no submodule '{part}' (looking up "
                                     f"'{target}')")
            module = child
            walked.append(part)
        return module

    def num_parameters(self, only_trainable: bool = False) -> int:
        """Total number of scalar parameters (shared ones counted once)."""
        return sum(p.numel() for p in self.parameters()
                   if p.requires_grad or not only_trainable)

    def apply(self, fn):
        """Call ``fn(module)`` on every child (recursively) and then on this module; used for
        custom initialisation: ``model.apply(init_weights)``."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ state dict
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """Put this module's own parameters and persistent buffers into ``destination``."""
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = b if keep_vars else b.detach()

    def state_dict(self, *, destination=None, prefix: str = "", keep_vars: bool = False):
        """An ``OrderedDict`` from dotted names to tensors: every parameter and persistent
        buffer.  The tensors are detached but share the arrays with the module (copy them to
        snapshot); ``keep_vars=True`` returns the Parameter objects themselves."""
        if destination is None:
            destination = OrderedDict()
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=prefix + name + ".",
                                  keep_vars=keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy the values of ``state_dict`` *into* this module's existing arrays.

        Parameters keep their identity (an optimizer holding them keeps working); values are
        converted to each parameter's dtype and device, as PyTorch does (an int or float16 array
        loads into a float32 parameter).  Nothing is copied unless every entry can be: a value
        that is not a Tensor or NumPy array, a shape mismatch, or a dtype that is no real number
        (complex into a real parameter, strings, objects) always raises, and with
        ``strict=True`` so do missing and unexpected keys -- all listed by name, with both
        shapes or dtypes, in one RuntimeError.  Returns a namedtuple
        ``(missing_keys, unexpected_keys)``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict and missing:
            errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing)
                          + ".")
        if strict and unexpected:
            errors.append("Unexpected key(s) in state_dict: "
                          + ", ".join(f'"{k}"' for k in unexpected) + ".")
        for key, target in own.items():
            if key in state_dict:
                problem = _state_value_problem(key, state_dict[key], target)
                if problem:
                    errors.append(problem)
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        with no_grad():
            for key, target in own.items():
                if key in state_dict:
                    target.copy_(state_dict[key])
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ modes and gradients
    def train(self, mode: bool = True):
        """Set training mode (Dropout active, norms use batch statistics) on this module and
        every descendant."""
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be boolean, got {mode!r}")
        self.training = mode
        for child in self.children():
            child.train(mode)        # through train(), so a subclass may override it
        return self

    def eval(self):
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        """Switch gradient tracking of every parameter on or off (freezing)."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True):
        """Reset the gradients of every parameter: to ``None`` (default) or to zeros."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            elif p.grad.requires_grad:     # a create_graph gradient: cut it loose, fresh zeros
                p.grad = Tensor._make(p.grad._xp().zeros_like(p.grad.data), p.grad.device)
            else:
                p.grad.data[...] = 0

    # ------------------------------------------------------------------ device and dtype
    def _apply(self, fn):
        """Replace the array of every parameter, gradient and buffer by that of ``fn(tensor)``
        (a Tensor).  The tensor *objects* are kept, so references held elsewhere (optimizers)
        see the new arrays."""
        seen = set()
        for module in self.modules():
            tensors = list(module._parameters.values()) + list(module._buffers.values())
            for t in tensors:
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                _retarget(t, fn(t))
                if t.grad is not None:
                    _retarget(t.grad, fn(t.grad))
        return self

    def to(self, *args, **kwargs):
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(tensor)``: move parameters
        and buffers in place (same Parameter objects).  Only floating tensors change dtype."""
        device, dtype = _parse_to(args, kwargs)

        def convert(t):
            out = t.detach()
            if dtype is not None and t.dtype.kind in "fc":
                out = out.to(dtype)
            if device is not None:
                out = out.to(device)
            return out
        return self._apply(convert)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else device)

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def half(self):
        return self.to(np.float16)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The text between the parentheses of this module's repr (override in layers)."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _addindent(repr(module), 2)
                       for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if len(extra_lines) == 1 and not child_lines:
            body = extra_lines[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return self._get_name() + "(" + body + ")"


def _retarget(t: Tensor, new: Tensor):
    """Point tensor ``t`` at the array (and device) of ``new``, keeping the object."""
    if new.data is not t.data:
        t.data = new.data
        t._device = new.device
