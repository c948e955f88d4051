"""Mutation testing of every backward: ``python -m tests.mutation``.

A gradient test is only as good as the smallest wrong gradient it rejects.  This tool makes
wrong gradients on purpose -- mutants -- and runs the gradient tests against each one:

* ``scale``: the gradients a backward returns are multiplied by (1 + δ), δ = 1e-6 by default
  (``--delta``): a backward wrong by one part in a million;
* ``swap``: the first two gradients of equal shape that a backward returns trade places (the
  gradient of ``a`` delivered to ``b`` and back);
* ``reduce``: inside a backward that sums a broadcast gradient down to its input's shape
  (``sum_to`` / ``unbroadcast``), the sum over the broadcast axes is replaced by the first
  slice along them -- right shape, wrong values.

The mutated backwards are every :class:`~nanogen.autograd.Function` subclass in
``nanogen.functional`` that defines ``backward`` (or ``backward_into``) and every CPU kernel
that computes a gradient (``KERNEL_BACKWARDS``).  A mutant is *caught* when one of the gradient
tests that ran the mutated code fails, and *survives* when none does.  One that never changed
a value (a swap of two equal gradients: ``add`` hands ``gy`` to both inputs; a scaled gradient
that is zero by definition, as ``floor``'s is) is *equivalent*:
no test could tell it apart, and it is listed, not scored (after the ``EQUIVALENCE_PATIENCE``
most specific tests that reach it).

How it runs: one pytest session over the gradient test modules (``GRADIENT_TESTS``).  A
first pass runs every test once unmutated and records which backwards each test reaches; each
mutant then reruns only those tests, the most specific first (the fewest backwards reached),
and stops at the first failure.  The hypothesis profile is the suite's ``ci`` profile unless
``--hypothesis-seed N`` asks for a held-out run (fresh draws from seed N).

Examples::

    python -m tests.mutation                          # every mutant (the score in the README)
    python -m tests.mutation --sample 12 --seed 7     # a seeded sample (what CI runs)
    python -m tests.mutation --delta 1e-5 --hypothesis-seed 1   # a held-out run
    python -m tests.mutation --cuda                   # the CUDA kernels, under the simulator
    python -m tests.mutation --list                   # the mutants, without running them

Exit status 0 when every mutant run was caught, 1 when one survived, 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import random
import sys
import time
from dataclasses import dataclass

import numpy as np

GRADIENT_TESTS = ["tests/test_ops_grad.py", "tests/test_nonsmooth.py",
                  "tests/test_empty_and_promotion.py", "tests/test_autograd.py",
                  "tests/test_conv.py", "tests/test_normalization.py", "tests/test_pooling.py",
                  "tests/test_attention.py", "tests/test_nn.py", "tests/test_rnn.py",
                  "tests/test_conv_lstm.py"]

# CPU kernels that compute gradients: (module, function, how the gradient leaves it).
# "returns": the float arrays it returns are gradients (views into a packed buffer, sometimes:
# the mutants change them in place); "returns several": a tuple of gradients (the swap mutant
# applies); "adds values": it adds its argument ``values`` into ``out`` in place (the
# embedding's scatter-add).
KERNEL_BACKWARDS = [
    ("nanogen.kernels.activation", "silu_backward", "returns"),
    ("nanogen.kernels.activation", "gelu_backward", "returns"),
    ("nanogen.kernels.adain", "backward_cpu", "returns"),
    ("nanogen.kernels.normalization", "backward_cpu", "returns"),
    ("nanogen.kernels.attention", "backward_cpu", "returns several"),
    ("nanogen.kernels.recurrent", "lstm_backward_cpu", "returns"),
    ("nanogen.kernels.recurrent", "gru_backward_cpu", "returns several"),
    ("nanogen.kernels.conv", "conv_backward", "returns several"),
    ("nanogen.kernels.conv", "conv_transpose_backward", "returns several"),
    ("nanogen.kernels.conv", "conv_weight", "returns"),
    ("nanogen.kernels.pooling", "max_scatter_cpu", "returns"),
    ("nanogen.kernels.pooling", "window_avg_adjoint_cpu", "returns"),
    ("nanogen.kernels.resample", "nearest_adjoint_cpu", "returns"),
    ("nanogen.kernels.resample", "linear_adjoint_cpu", "returns"),
    ("nanogen.kernels.scatter", "scatter_add_rows_cpu", "adds values"),
]
# With --cuda: the numba.cuda gradient kernels, run by the simulated-CUDA tests (tests/cuda,
# NUMBA_ENABLE_CUDASIM=1), whose arrays are NumPy arrays under the simulator.
CUDA_TESTS = ["tests/cuda"]
CUDA_ONLY_FUNCTIONS = ("ToDevice",)    # a device move: a CPU-only run never makes one
CUDA_KERNEL_BACKWARDS = [
    ("nanogen.kernels.adain", "backward_cuda", "returns"),
    ("nanogen.kernels.normalization", "backward_cuda", "returns"),
    ("nanogen.kernels.attention", "backward_cuda", "returns several"),
    ("nanogen.kernels.recurrent", "lstm_backward_cuda", "returns"),
    ("nanogen.kernels.recurrent", "gru_backward_cuda", "returns several"),
    ("nanogen.kernels.pooling", "max_scatter_cuda", "returns"),
    ("nanogen.kernels.pooling", "window_avg_adjoint_cuda", "returns"),
    ("nanogen.kernels.resample", "nearest_adjoint_cuda", "returns"),
    ("nanogen.kernels.resample", "linear_adjoint_cuda", "returns"),
]
KINDS = ("scale", "swap", "reduce")
# A swap or reduce mutant that changed no value in the first this-many tests reaching it (the
# most specific ones) is declared equivalent rather than run through every test that touches
# the backward (for add or mul, most of the suite).
EQUIVALENCE_PATIENCE = 12


# ================================================================ what can be mutated
@dataclass
class Target:
    """One backward: a Function class's ``backward`` / ``backward_into``, or a kernel."""
    name: str
    owner: object                   # the class, or the kernel's module
    attrs: tuple                    # the attributes of ``owner`` that are mutated
    kernel_mode: str = ""           # "" for a Function, else KERNEL_BACKWARDS' third field

    @property
    def several(self):
        """Whether the backward can return two gradients or more."""
        if self.kernel_mode:
            return self.kernel_mode == "returns several"
        params = [p for p in inspect.signature(self.owner.forward).parameters.values()
                  if p.name != "self"]
        return len(params) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)

    def reduces_broadcast(self):
        if self.kernel_mode:
            return False
        src = "".join(inspect.getsource(getattr(self.owner, a)) for a in self.attrs)
        return "unbroadcast(" in src or "sum_to(" in src


def _function_classes():
    import nanogen.functional  # noqa: F401  (imports every op module)
    from nanogen.autograd import Function
    seen, stack = [], list(Function.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("nanogen.functional") and cls not in seen:
            seen.append(cls)
    return sorted(seen, key=lambda c: (c.__module__, c.__qualname__))


def targets(cuda=False):
    import importlib
    out = []
    for cls in _function_classes():
        attrs = tuple(a for a in ("backward", "backward_into") if a in vars(cls))
        if attrs and (cls.__name__ in CUDA_ONLY_FUNCTIONS) == cuda:
            out.append(Target(f"{cls.__module__.rsplit('.', 1)[1]}.{cls.__qualname__}", cls,
                              attrs))
    for module, fn, mode in (CUDA_KERNEL_BACKWARDS if cuda else KERNEL_BACKWARDS):
        out.append(Target(f"kernels.{module.rsplit('.', 1)[1]}.{fn}",
                          importlib.import_module(module), (fn,), mode))
    return out


@dataclass
class Mutant:
    target: Target
    kind: str
    delta: float = 1e-6
    effective: bool = False         # did it ever change a value?
    status: str = "not run"         # caught / survived / equivalent / not covered
    caught_by: str = ""
    tests_run: int = 0

    @property
    def name(self):
        return f"{self.target.name} [{self.kind}]"


def mutants(delta, kinds=KINDS, cuda=False):
    out = []
    for t in targets(cuda):
        for kind in kinds:
            if kind == "swap" and not t.several:
                continue
            if kind == "reduce" and not t.reduces_broadcast():
                continue
            out.append(Mutant(t, kind, delta))
    return out


# ================================================================ applying a mutant
def _patch_everywhere(old, new, patched):
    """Rebind every module-level name under ``nanogen`` that holds ``old`` (a kernel imported
    with ``from ... import name`` is bound in its caller's module too)."""
    for mod in list(sys.modules.values()):
        if mod is None or not getattr(mod, "__name__", "").startswith("nanogen"):
            continue
        for key, value in list(vars(mod).items()):
            if value is old:
                patched.append((mod, key, old))
                setattr(mod, key, new)


def _changed(a, b):
    return a is not None and b is not None and not np.array_equal(np.asarray(a), np.asarray(b))


def _scale_tensors(m, grads):
    from nanogen.tensor import Tensor
    single = not isinstance(grads, (tuple, list))
    out = []
    for g in ((grads,) if single else grads):
        if isinstance(g, Tensor):
            if np.any(g._host() != 0):
                m.effective = True
            g = g * (1.0 + m.delta)
        out.append(g)
    return out[0] if single else tuple(out)


def _equal_pair(grads):
    """The positions of the first two gradients of equal shape, or None."""
    present = [i for i, g in enumerate(grads) if g is not None and hasattr(g, "shape")]
    for a_pos, i in enumerate(present):
        for j in present[a_pos + 1:]:
            if tuple(grads[i].shape) == tuple(grads[j].shape):
                return i, j
    return None


def _swap(m, grads):
    """Swap the first two gradient Tensors of equal shape (no change when they are equal)."""
    if not isinstance(grads, (tuple, list)) or _equal_pair(grads) is None:
        return grads
    grads = list(grads)
    i, j = _equal_pair(grads)
    if _changed(grads[i]._host(), grads[j]._host()):
        m.effective = True
    grads[i], grads[j] = grads[j], grads[i]
    return tuple(grads)


_REDUCE_ACTIVE = []     # the targets whose backward is running, for the "reduce" mutant


def _first_slice_to(g, shape):
    """The wrong reduction: g's first slice along every axis sum_to would sum over."""
    shape = tuple(shape)
    lead = g.ndim - len(shape)
    index = (0,) * lead + tuple(slice(0, 1) if s == 1 and n != 1 else slice(None)
                                for s, n in zip(shape, g.shape[lead:]))
    return g[index].reshape(shape)


@contextlib.contextmanager
def applied(m: Mutant):
    """The mutant in force inside the block; everything restored after it."""
    patched = []
    t = m.target
    try:
        if t.kernel_mode:
            _apply_kernel(m, patched)
        else:
            _apply_function(m, patched)
        yield m
    finally:
        for owner, key, old in reversed(patched):
            setattr(owner, key, old)


def _apply_function(m, patched):
    cls, kind = m.target.owner, m.kind
    import nanogen.functional.reduce as reduce_module

    if "backward" in m.target.attrs:
        original = vars(cls)["backward"]

        def backward(self, gy):
            if kind == "reduce":
                _REDUCE_ACTIVE.append(m)
                try:
                    return original(self, gy)
                finally:
                    _REDUCE_ACTIVE.pop()
            grads = original(self, gy)
            if kind == "scale":
                return _scale_tensors(m, grads)
            return _swap(m, grads)
        patched.append((cls, "backward", original))
        cls.backward = backward

    if "backward_into" in m.target.attrs and kind == "scale":
        original_into = vars(cls)["backward_into"]

        def backward_into(self, gx, gy):
            part = self.xp.zeros_like(gx)
            original_into(self, part, gy)
            if np.any(part != 0):
                m.effective = True
            gx += part * (1.0 + m.delta)
        patched.append((cls, "backward_into", original_into))
        cls.backward_into = backward_into
    elif "backward_into" in m.target.attrs:
        # the other kinds mutate ``backward``: make the engine use it
        patched.append((cls, "backward_into", vars(cls)["backward_into"]))
        cls.backward_into = None

    if kind == "reduce":
        true_sum_to = reduce_module.sum_to

        def sum_to(g, shape):
            if _REDUCE_ACTIVE and _REDUCE_ACTIVE[-1] is m and tuple(g.shape) != tuple(shape):
                m.effective = True
                return _first_slice_to(g, shape)
            return true_sum_to(g, shape)
        _patch_everywhere(true_sum_to, sum_to, patched)


def _apply_kernel(m, patched):
    module, (name,) = m.target.owner, m.target.attrs
    original = getattr(module, name)
    factor = 1.0 + m.delta

    def scale_in_place(value):
        # in place: a kernel's gradients may be views into a buffer its caller reads
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            if np.any(value != 0):
                m.effective = True
            value *= value.dtype.type(factor)
        elif isinstance(value, tuple):
            for v in value:
                scale_in_place(v)

    def swap_in_place(grads):
        pair = _equal_pair(grads) if isinstance(grads, tuple) else None
        if pair is not None:
            a, b = grads[pair[0]], grads[pair[1]]
            if _changed(a, b):
                m.effective = True
            kept = a.copy()
            a[...] = b
            b[...] = kept

    def kernel(*args, **kwargs):
        if m.target.kernel_mode == "adds values":          # (out, rows, values)
            out, rows, values = args
            if np.any(values != 0):
                m.effective = True
            return original(out, rows, np.asarray(values) * factor)
        result = original(*args, **kwargs)
        (scale_in_place if m.kind == "scale" else swap_in_place)(result)
        return result
    _patch_everywhere(original, kernel, patched)


# ================================================================ recording coverage
@contextlib.contextmanager
def recording(all_targets, sink):
    """Every target, wrapped to add its name to ``sink`` when it runs."""
    patched = []
    try:
        for t in all_targets:
            if t.kernel_mode:
                original = getattr(t.owner, t.attrs[0])

                def kernel(*args, __original=original, __name=t.name, **kwargs):
                    sink.add(__name)
                    return __original(*args, **kwargs)
                _patch_everywhere(original, kernel, patched)
                continue
            for attr in t.attrs:
                original = vars(t.owner)[attr]

                def method(self, *args, __original=original, __name=t.name):
                    sink.add(__name)
                    return __original(self, *args)
                patched.append((t.owner, attr, original))
                setattr(t.owner, attr, method)
        yield
    finally:
        for owner, key, old in reversed(patched):
            setattr(owner, key, old)


# ================================================================ the pytest session
class MutationSession:
    """A pytest plugin that replaces the test loop: coverage pass, then one pass per mutant."""

    def __init__(self, chosen, all_targets, out=sys.stdout):
        self.chosen, self.all_targets, self.out = chosen, all_targets, out
        self.coverage = {}          # nodeid -> set of target names
        self.broken = []            # tests that fail with no mutant (they must all pass first)

    def _run(self, item):
        from _pytest.runner import runtestprotocol
        reports = runtestprotocol(item, nextitem=None, log=False)
        return not any(r.failed for r in reports)

    def pytest_runtestloop(self, session):
        if session.config.option.collectonly:
            return None
        items = session.items
        start = time.time()
        for item in items:
            reached = set()
            with recording(self.all_targets, reached):
                if not self._run(item):
                    self.broken.append(item.nodeid)
            self.coverage[item.nodeid] = reached
        self._say(f"coverage pass: {len(items)} tests in {time.time() - start:.0f} s")
        if self.broken:
            self._say("these tests fail without any mutant; fix them first:\n  " +
                      "\n  ".join(self.broken))
            return True
        for k, m in enumerate(self.chosen, 1):
            covering = [it for it in items if m.target.name in self.coverage[it.nodeid]]
            covering.sort(key=lambda it: len(self.coverage[it.nodeid]))
            t0 = time.time()
            with applied(m):
                for item in covering:
                    m.tests_run += 1
                    if not self._run(item):
                        m.status, m.caught_by = "caught", item.nodeid
                        break
                    if not m.effective and m.tests_run >= EQUIVALENCE_PATIENCE:
                        break       # it changed no value in the tests made for this backward
            if m.status != "caught":
                m.status = ("not covered" if not covering else
                            "survived" if m.effective else "equivalent")
            where = f" by {m.caught_by}" if m.caught_by else ""
            self._say(f"[{k}/{len(self.chosen)}] {m.status:>11}  {m.name}{where} "
                      f"({m.tests_run} tests, {time.time() - t0:.1f} s)")
        return True

    def _say(self, text):
        print(text, file=self.out, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.mutation",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--delta", type=float, default=1e-6,
                        help="the relative error of a 'scale' mutant (default 1e-6)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated mutant kinds (default {','.join(KINDS)})")
    parser.add_argument("--sample", type=int, default=0,
                        help="run N mutants drawn with --seed (default: all)")
    parser.add_argument("--seed", default="0", help="seed of the sample (any string)")
    parser.add_argument("-k", dest="match", default="",
                        help="only mutants whose name contains this text")
    parser.add_argument("--hypothesis-seed", type=int, default=None,
                        help="a held-out run: fresh hypothesis draws from this seed instead "
                             "of the ci profile's fixed ones")
    parser.add_argument("--cuda", action="store_true",
                        help="mutate the numba.cuda gradient kernels and run the simulated-CUDA "
                             "tests (tests/cuda) instead")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)

    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        parser.error(f"--kinds: unknown kind(s) {sorted(unknown)}; choose from {KINDS}")
    if not 0 < args.delta < 1:
        parser.error(f"--delta must be in (0, 1), got {args.delta}")

    if args.cuda:   # before numba is first imported (nanogen imports it)
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    chosen = [m for m in mutants(args.delta, kinds, args.cuda) if args.match in m.name]
    if args.sample:
        chosen = random.Random(args.seed).sample(chosen, min(args.sample, len(chosen)))
    if args.list:
        for m in chosen:
            print(m.name)
        print(f"{len(chosen)} mutants")
        return 0
    if not chosen:
        parser.error("no mutant matches")

    import pytest
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    if args.hypothesis_seed is not None:
        os.environ["HYPOTHESIS_PROFILE"] = "heldout"
    session = MutationSession(chosen, targets(args.cuda))
    # no terminal reporter: the tool prints its own lines (and a pytest summary of reruns in
    # which failures are the point would read like a failing suite)
    pytest_args = ["-p", "no:cacheprovider", "-p", "no:terminal", "-W", "ignore",
                   *(CUDA_TESTS if args.cuda else GRADIENT_TESTS)]
    if args.hypothesis_seed is not None:
        pytest_args.append(f"--hypothesis-seed={args.hypothesis_seed}")
    print(f"{len(chosen)} mutants (delta {args.delta:g}, kinds {','.join(kinds)})"
          + (f", held-out hypothesis seed {args.hypothesis_seed}"
             if args.hypothesis_seed is not None else ""), flush=True)
    code = pytest.main(pytest_args, plugins=[session])
    if session.broken or code not in (0, 5):
        print(f"the gradient tests did not run cleanly (pytest exit {int(code)}): run "
              f"python -m pytest {' '.join(GRADIENT_TESTS)} to see why")
        return 1
    return report(chosen)


def report(chosen):
    scored = [m for m in chosen if m.status in ("caught", "survived", "not covered")]
    caught = [m for m in scored if m.status == "caught"]
    equivalent = [m for m in chosen if m.status == "equivalent"]
    by_kind = {}
    for m in scored:
        c, n = by_kind.get(m.kind, (0, 0))
        by_kind[m.kind] = (c + (m.status == "caught"), n + 1)
    print()
    print(f"mutation score: {len(caught)}/{len(scored)} caught "
          f"({100 * len(caught) / max(len(scored), 1):.1f}%); " +
          ", ".join(f"{k} {c}/{n}" for k, (c, n) in sorted(by_kind.items())))
    if equivalent:
        print("equivalent (never changed a value, not scored): " +
              ", ".join(m.name for m in equivalent))
    missed = [m for m in scored if m.status != "caught"]
    for m in missed:
        print(f"{m.status}: {m.name}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
