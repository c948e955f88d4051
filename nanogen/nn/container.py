"""Containers: ``Sequential`` (a pipeline), ``ModuleList`` and ``ModuleDict`` (registered
collections).  Putting modules in a plain Python list would hide their parameters from
``parameters()``; these containers register each one as a child."""
from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Mapping

from .module import Module

__all__ = ["Sequential", "ModuleList", "ModuleDict"]


class _ModuleSequence(Module):
    """List behaviour shared by Sequential and ModuleList: children are kept in order under the
    keys '0', '1', ... (Sequential built from an OrderedDict keeps its names until an insert or
    a deletion renumbers them)."""

    def _key_at(self, idx) -> str:
        n = len(self._modules)
        i = operator.index(idx)
        if not -n <= i < n:
            raise IndexError(f"index {idx} is out of range for {type(self).__name__} of "
                             f"length {n}")
        return list(self._modules)[i % n]

    def _from_items(self, items):
        """A new container of the same type holding ``(key, module)`` pairs (for slicing)."""
        raise NotImplementedError

    def _renumber(self, modules):
        self._modules.clear()
        for i, module in enumerate(modules):
            self.add_module(str(i), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return self._from_items(list(self._modules.items())[idx])
        return self._modules[self._key_at(idx)]

    def __setitem__(self, idx, module):
        setattr(self, self._key_at(idx), module)

    def __delitem__(self, idx):
        keys = list(self._modules)[idx] if isinstance(idx, slice) else [self._key_at(idx)]
        for key in keys:
            del self._modules[key]
        self._renumber(list(self._modules.values()))

    def append(self, module):
        """Add ``module`` at the end; returns self."""
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def __iadd__(self, modules):
        return self.extend(modules)

    def insert(self, index: int, module):
        """Insert ``module`` before position ``index`` (renumbers the keys)."""
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}.insert: {type(module).__name__} is not a "
                            f"Module subclass")
        modules = list(self._modules.values())
        n = len(modules)
        if not -n <= index <= n:
            raise IndexError(f"index {index} is out of range for {type(self).__name__} of "
                             f"length {n}")
        modules.insert(index, module)
        self._renumber(modules)
        return self

    def pop(self, idx=-1):
        module = self[idx]
        del self[idx]
        return module


class Sequential(_ModuleSequence):
    """Modules applied one after another: ``Sequential(Linear(2, 8), ReLU(), Linear(8, 1))``
    or ``Sequential(OrderedDict([("fc", Linear(2, 8)), ("act", ReLU())]))``."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], Mapping):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)

    def _from_items(self, items):
        return type(self)(OrderedDict(items))

    def forward(self, input):
        for module in self:
            input = module(input)
        return input


class ModuleList(_ModuleSequence):
    """A list of modules, each registered (their parameters are the list's parameters).
    It has no forward: iterate over it in your own."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _from_items(self, items):
        return type(self)(module for _, module in items)


class ModuleDict(Module):
    """A dict of modules, each registered under its key (insertion order kept)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        """Add the entries of a mapping or of an iterable of ``(key, module)`` pairs."""
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for j, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"ModuleDict.update: element {j} should be a (key, module) "
                                 f"pair, got {pair!r}")
            key, module = pair
            self[key] = module

    def pop(self, key):
        module = self._modules[key]
        del self[key]
        return module

    def clear(self):
        self._modules.clear()
