"""Reverse-mode automatic differentiation whose backward pass is itself differentiable.

The graph
---------
Every differentiable op is a :class:`Function`.  Calling ``SomeOp.apply(x, y, **params)`` runs
``forward`` on the raw arrays and returns one output :class:`~nanogen.tensor.Tensor`.  When grad
mode is on and an input requires a gradient, the output remembers the Function that made it
(``out.grad_fn``) and the Function remembers its input Tensors (``fn.inputs``).  The graph is
therefore a DAG of Functions whose leaves are the tensors created by the user with
``requires_grad=True``.  Every Function has exactly one output, so a node of the graph *is* a
Function, and "the gradient of a non-leaf tensor" is "the gradient arriving at its grad_fn".

Backward is built from ops (Chainer's FunctionNode pattern)
-----------------------------------------------------------
``Function.backward(gy)`` receives the output gradient as a Tensor and returns one Tensor (or
``None``) per input, computed with ordinary nanogen ops.  With ``create_graph=True`` those ops
are themselves recorded, so the gradient is a function of the inputs that can be differentiated
again (WGAN-GP, R1).  With ``create_graph=False`` the backward runs under :class:`no_grad` and
records nothing, so the common case pays nothing for this generality.

A Function that needs its own output in the backward (``exp``, ``tanh``, ``sigmoid`` ...) sets
``keep_output = True`` and reads :attr:`Function.output`: a Tensor rebuilt from the saved array
with ``grad_fn`` pointing back at the Function.  Storing the array rather than the Tensor keeps
the graph free of reference cycles, so memory is released as soon as the last output is dropped.
"""
from __future__ import annotations

import functools
import sys

from . import backend

__all__ = ["Function", "backward", "grad", "no_grad", "enable_grad", "set_grad_enabled",
           "is_grad_enabled"]

_grad_enabled = True
Tensor = None   # the Tensor class; nanogen.tensor sets it (tensor.py imports this module)


def is_grad_enabled() -> bool:
    """Whether new ops are recorded for differentiation."""
    return _grad_enabled


class _GradMode:
    """Sets grad mode to ``self.mode`` inside a ``with`` block, or around a decorated function."""

    mode = True

    def __enter__(self):
        global _grad_enabled
        self.prev = _grad_enabled
        _grad_enabled = self.mode
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self.prev
        return False

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)
        return wrapper


class set_grad_enabled(_GradMode):
    """Switch recording on or off: as a plain call (takes effect at once), a context manager
    (restores the previous mode on exit) or a decorator."""

    def __init__(self, mode: bool):
        global _grad_enabled
        self.mode = bool(mode)
        self.prev = _grad_enabled
        _grad_enabled = self.mode       # a plain call switches immediately, as in PyTorch

    def __enter__(self):
        return self                     # already switched by __init__; __exit__ restores

    def __call__(self, fn):
        global _grad_enabled
        _grad_enabled = self.prev       # used as a decorator: undo the switch made by __init__
        return super().__call__(fn)


class no_grad(_GradMode):
    """Context manager / decorator: ops inside record no graph (``with ng.no_grad(): ...``)."""
    mode = False


class enable_grad(_GradMode):
    """Context manager / decorator: switch recording back on inside a ``no_grad`` block."""
    mode = True


class Function:
    """One differentiable op with a single output.

    Subclasses implement

    * ``forward(self, *arrays) -> array`` on NumPy / CuPy arrays.  ``self.xp`` is the array
      module, ``self.device`` the device, ``self.requires_grad`` tells whether a backward will
      follow (skip saving intermediates when it is False).  Non-tensor parameters given to
      ``apply`` as keywords are attributes of ``self``.
    * ``backward(self, gy) -> Tensor | tuple`` on Tensors, using only differentiable nanogen ops
      so the backward can itself be differentiated.  ``self.inputs`` are the input Tensors,
      ``self.output`` the output Tensor (when ``keep_output = True``), and
      ``self.needs_input_grad[i]`` says whether input ``i`` wants a gradient.

    A one-input Function may also define ``backward_into(self, gx, gy)`` on arrays: add its
    input's gradient into the buffer ``gx`` in place.  The engine uses it instead of
    ``backward`` when no graph is being recorded and the input is not a leaf, so that the
    pieces of one tensor (indexing, unbind, split) write one gradient buffer between them.
    """

    keep_output = False

    def __init__(self, **params):
        self.__dict__.update(params)

    @classmethod
    def apply(cls, *inputs, **params):
        fn = cls(**params)
        first = inputs[0]
        dev = first._device
        dtype = first.data.dtype
        for i, t in enumerate(inputs[1:], start=2):
            if t._device != dev:
                raise RuntimeError(f"{cls.op_name()}: device mismatch: argument 1 is on {dev}, "
                                   f"argument {i} on {t._device}; move one with .to(...)")
            if t.data.dtype != dtype:
                raise TypeError(f"{cls.op_name()}: dtype mismatch: argument 1 is {dtype}, "
                                f"argument {i} is {t.data.dtype}; convert one with "
                                f".float() / .double() / .to(dtype)")
        needs = _grad_enabled and any(t._requires_grad for t in inputs)
        fn.device = dev
        fn.xp = backend.array_module(dev)
        fn.requires_grad = needs
        out = fn.forward(*[t.data for t in inputs])
        out_dev = fn.__dict__.get("out_device", dev)    # set by forward of to_device only
        if not needs:
            return Tensor._make(out, out_dev)
        fn.inputs = inputs
        fn.needs_input_grad = tuple(t.requires_grad for t in inputs)
        fn.out_shape = out.shape
        if cls.keep_output:
            fn._out = out
        return Tensor._make(out, out_dev, requires_grad=True, grad_fn=fn)

    @classmethod
    def op_name(cls) -> str:
        return cls.__name__.lower()

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, gy):
        raise NotImplementedError

    @property
    def output(self):
        """The output as a Tensor on the graph (needs ``keep_output = True``)."""
        if "_out" not in self.__dict__:
            if self.__dict__.get("_released"):
                raise RuntimeError(_FREED)
            raise RuntimeError(f"{type(self).__name__}.backward reads self.output but the class "
                               "does not set keep_output = True")
        return Tensor._make(self._out, self.__dict__.get("out_device", self.device),
                            requires_grad=True, grad_fn=self)

    def _release(self):
        """Free what forward saved once a backward without ``retain_graph`` is done with it."""
        keep = {"inputs", "needs_input_grad", "out_shape", "device", "xp", "requires_grad",
                "out_device"}
        for name in [k for k in self.__dict__ if k not in keep]:
            del self.__dict__[name]
        self._released = True

    def __repr__(self):
        return f"<{type(self).__name__}Backward>"


_FREED = ("Trying to backward through the graph a second time (or to read saved values after "
          "they were freed). Pass retain_graph=True to the first backward / grad call.")


def _as_tuple(x):
    return x if isinstance(x, (tuple, list)) else (x,)


def _run_backward(roots, root_grads, targets, create_graph, retain_graph):
    """The engine: push gradients from ``roots`` to the graph's leaves in topological order.

    ``targets``: ``None`` to accumulate into ``.grad`` of every leaf that requires grad
    (``Tensor.backward``), or a list of tensors whose gradients are returned (``autograd.grad``);
    in that case only Functions on a path to a target are differentiated.
    """
    # 1. discover the Functions reachable from the roots and count each one's consumers
    consumers = {}
    stack = []
    for r in roots:
        if r.grad_fn is not None:
            if r.grad_fn not in consumers:
                consumers[r.grad_fn] = 0
                stack.append(r.grad_fn)
    while stack:
        fn = stack.pop()
        if fn.__dict__.get("_released"):
            raise RuntimeError(_FREED)
        for t in fn.inputs:
            parent = t.grad_fn
            if parent is not None and t.requires_grad:
                if parent not in consumers:
                    consumers[parent] = 0
                    stack.append(parent)
                consumers[parent] += 1

    # 2. for autograd.grad: keep only Functions that lead to a target
    target_leaves, target_fns, relevant = {}, {}, None
    if targets is not None:
        for i, t in enumerate(targets):
            if t.grad_fn is not None:
                target_fns.setdefault(id(t.grad_fn), []).append(i)
            else:
                target_leaves.setdefault(id(t), []).append(i)
        relevant = {}
        for fn in _reverse_topological(consumers):   # parents before children
            relevant[fn] = id(fn) in target_fns or any(
                t.requires_grad and ((t.grad_fn is None and id(t) in target_leaves)
                                     or (t.grad_fn is not None and relevant.get(t.grad_fn, False)))
                for t in fn.inputs)

    captured = [None] * (len(targets) if targets is not None else 0)
    grads = {}
    # ids of the gradient arrays in ``grads`` that this pass allocated itself: no one else
    # holds them, so later contributions may be added in place (never with create_graph, whose
    # gradients are graph nodes).  An array leaves the set when it leaves ``grads``.
    owned = set()

    def add_grad(store, key, g):
        prev = store.get(key)
        if prev is None:
            store[key] = g
        elif id(prev.data) in owned and prev.data.dtype == g.data.dtype:
            prev.data += g.data
        else:
            store[key] = prev + g
            if not create_graph:
                owned.add(id(store[key].data))

    def gradient_buffer(t, gy):
        """The owned array in ``grads`` that ``t``'s gradient accumulates into (made here)."""
        prev = grads.get(t.grad_fn)
        if prev is not None and id(prev.data) in owned:
            return prev.data
        xp = t._xp()
        buf = (xp.zeros(t.shape, dtype=gy.data.dtype) if prev is None
               else xp.array(prev.data, dtype=gy.data.dtype, order="C", copy=True))
        grads[t.grad_fn] = Tensor._make(buf, t._device)
        owned.add(id(buf))
        return buf

    with set_grad_enabled(create_graph):
        for r, g in zip(roots, root_grads):
            if r.grad_fn is None:        # a root that is itself a leaf
                if targets is None:
                    _accumulate_leaf(r, g, create_graph)
                else:
                    for i in target_leaves.get(id(r), ()):
                        captured[i] = g if captured[i] is None else captured[i] + g
            else:
                add_grad(grads, r.grad_fn, g)

        ready = [fn for fn, n in consumers.items() if n == 0]
        while ready:
            fn = ready.pop()
            gy = grads.pop(fn, None)
            if gy is not None:
                owned.discard(id(gy.data))
            if targets is not None:
                for i in target_fns.get(id(fn), ()):
                    captured[i] = gy
            wants = fn.needs_input_grad
            if relevant is not None:
                wants = tuple(w and ((t.grad_fn is None and id(t) in target_leaves) or
                                     (t.grad_fn is not None and relevant.get(t.grad_fn, False)))
                              for w, t in zip(fn.needs_input_grad, fn.inputs))
            gxs = (None,) * len(fn.inputs)
            executed = gy is not None and any(wants)
            into = getattr(fn, "backward_into", None)
            if executed and into is not None and not create_graph and \
                    fn.inputs[0].grad_fn is not None:
                into(gradient_buffer(fn.inputs[0], gy), gy.data)     # gxs stay None
            elif executed:
                saved_mask = fn.needs_input_grad
                fn.needs_input_grad = wants
                try:
                    gxs = _as_tuple(fn.backward(gy))
                finally:
                    fn.needs_input_grad = saved_mask
                if len(gxs) != len(fn.inputs):
                    raise RuntimeError(f"{type(fn).__name__}.backward returned {len(gxs)} "
                                       f"gradients for {len(fn.inputs)} inputs")
            for t, w, gx in zip(fn.inputs, wants, gxs):
                parent = t.grad_fn
                if gx is not None and w:
                    if gx.shape != t.shape:
                        raise RuntimeError(f"{type(fn).__name__}.backward returned a gradient of "
                                           f"shape {tuple(gx.shape)} for an input of shape "
                                           f"{tuple(t.shape)}")
                    if parent is None:
                        if targets is None:
                            _accumulate_leaf(t, gx, create_graph)
                        else:
                            for i in target_leaves.get(id(t), ()):
                                captured[i] = gx if captured[i] is None else captured[i] + gx
                    else:
                        add_grad(grads, parent, gx)
                if parent is not None and t.requires_grad:
                    consumers[parent] -= 1
                    if consumers[parent] == 0:
                        ready.append(parent)
            if executed and not retain_graph:
                fn._release()
    return captured


def _reverse_topological(consumers):
    """Functions ordered so that each comes after every Function it consumes (parents first)."""
    order, state = [], {}
    for start in consumers:
        if start in state:
            continue
        stack = [(start, False)]
        while stack:
            fn, expanded = stack.pop()
            if expanded:
                state[fn] = 2
                order.append(fn)
                continue
            if fn in state:
                continue
            state[fn] = 1
            stack.append((fn, True))
            for t in fn.inputs:
                p = t.grad_fn
                if p is not None and t.requires_grad and p not in state:
                    stack.append((p, False))
    return order


def _adoptable(arr) -> bool:
    """True when ``arr`` is referenced by nothing but the one gradient Tensor being accumulated
    (the 3 counts are that Tensor's slot, this call's argument and getrefcount's own), owns its
    memory and is C-contiguous: then a leaf can take it as its ``.grad`` without a copy."""
    return (getattr(arr, "base", 0) is None and arr.flags.c_contiguous and arr.flags.writeable
            and sys.getrefcount(arr) <= 3)


def _accumulate_leaf(t, g, create_graph):
    """``t.grad += g``.

    Without create_graph the stored gradient never shares its array with another tensor, so
    in-place edits of ``.grad`` (clipping, zeroing) cannot reach anyone else's values: a fresh,
    unshared gradient array is adopted as is (as PyTorch's AccumulateGrad does), anything else is
    copied into C order.  Later contributions are added out of place, because an adopted array
    may still be read by the rest of this backward pass."""
    if create_graph:
        t.grad = g if t.grad is None else t.grad + g
    elif t.grad is None:
        arr = g.data if _adoptable(g.data) else t._xp().array(g.data, copy=True, order="C")
        t.grad = Tensor._make(arr, t._device)
    else:
        if t.grad.requires_grad:
            t.grad = t.grad.detach()
        t.grad.data = t._xp().asarray(t.grad.data + g.data)


def _normalize_grads(outputs, grad_outputs):
    gs = []
    for o, g in zip(outputs, grad_outputs):
        if g is None:
            if o.numel() != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; "
                                   f"got an output of shape {tuple(o.shape)}: pass "
                                   f"grad_outputs / gradient")
            g = Tensor._make(o._xp().ones(o.shape, dtype=o.data.dtype), o._device)
        elif not isinstance(g, Tensor):
            g = Tensor(g, dtype=o.dtype, device=o.device)
        elif not g.requires_grad:   # a second handle on the caller's array: no leaf adopts it
            g = Tensor._make(g.data, g._device)
        if g.shape != o.shape:
            raise RuntimeError(f"gradient of shape {tuple(g.shape)} given for an output of "
                               f"shape {tuple(o.shape)}")
        gs.append(g)
    return gs


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False):
    """Accumulate d(tensors)/d(leaf) into ``leaf.grad`` for every leaf that requires grad."""
    tensors = list(_as_tuple(tensors))
    for t in tensors:
        if not t.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a "
                               "grad_fn: nothing to differentiate")
    grad_tensors = _as_tuple(grad_tensors) if grad_tensors is not None else [None] * len(tensors)
    if retain_graph is None:
        retain_graph = create_graph
    _run_backward(tensors, _normalize_grads(tensors, grad_tensors), None, create_graph,
                  retain_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, returned as a tuple.

    ``sum_k <grad_outputs[k], d outputs[k] / d inputs[i]>`` for each input; with
    ``create_graph=True`` the result is itself differentiable.
    """
    outputs = list(_as_tuple(outputs))
    single = not isinstance(inputs, (tuple, list))
    inputs = [inputs] if single else list(inputs)
    for o in outputs:
        if not o.requires_grad:
            raise RuntimeError("grad: an output does not require grad (was it computed under "
                               "no_grad, or from tensors without requires_grad?)")
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(f"grad: input {i} does not require grad")
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    else:
        grad_outputs = list(_as_tuple(grad_outputs))
    if retain_graph is None:
        retain_graph = create_graph
    result = _run_backward(outputs, _normalize_grads(outputs, grad_outputs), inputs,
                           create_graph, retain_graph)
    for i, g in enumerate(result):
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: input {i} was not used to compute the outputs "
                               "(pass allow_unused=True to get None for it)")
    return tuple(result)
