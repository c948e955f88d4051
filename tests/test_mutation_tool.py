"""The mutation tool (``python -m tests.mutation``) itself: it lists every backward, a mutant
changes exactly what it says, and leaving it restores the original code."""
import importlib
import inspect
import pkgutil

import numpy as np

import nanogen as ng
import nanogen.kernels
from nanogen.testing import assert_close

from . import mutation


def _grads(fn, *arrays):
    leaves = [ng.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]
    out = fn(*leaves)
    return [g.detach().numpy() for g in ng.autograd.grad(out.sum(), leaves)]


def test_every_kernel_that_computes_a_gradient_is_mutated():
    listed = {(m, f) for m, f, _ in mutation.KERNEL_BACKWARDS + mutation.CUDA_KERNEL_BACKWARDS}
    for module, name in listed:
        assert callable(getattr(importlib.import_module(module), name)), (module, name)
    names = ("backward_cpu", "backward_cuda", "adjoint_cpu", "adjoint_cuda", "scatter_cpu",
             "scatter_cuda", "_backward")
    found = set()
    for info in pkgutil.iter_modules(nanogen.kernels.__path__):
        module = importlib.import_module(f"nanogen.kernels.{info.name}")
        for name, obj in vars(module).items():
            # (the references are the tests' oracles, not code under test)
            if callable(obj) and not name.startswith(("_", "reference")) and \
                    name.endswith(names) and \
                    getattr(obj, "__module__", module.__name__) == module.__name__:
                found.add((module.__name__, name))
    assert not found - listed, f"gradient kernels no mutant covers: {sorted(found - listed)}"


def test_every_function_with_a_backward_has_a_scale_mutant():
    names = {m.name for m in mutation.mutants(1e-6, ("scale",))}
    names |= {m.name for m in mutation.mutants(1e-6, ("scale",), cuda=True)}
    for cls in mutation._function_classes():
        if "backward" in vars(cls) or "backward_into" in vars(cls):
            assert f"{cls.__module__.rsplit('.', 1)[1]}.{cls.__qualname__} [scale]" in names


def _mutant(name, kind, delta=1e-6):
    (m,) = [m for m in mutation.mutants(delta, (kind,)) if m.name == f"{name} [{kind}]"]
    return m


def test_a_scale_mutant_scales_and_is_undone():
    a, b = [[0.5, -1.5]], [[2.0], [3.0]]
    exact = _grads(lambda x, y: x * y, a, b)
    m = _mutant("elementwise.Mul", "scale")
    with mutation.applied(m):
        wrong = _grads(lambda x, y: x * y, a, b)
    for e, w in zip(exact, wrong):
        assert_close(w, e * (1 + 1e-6), rtol=1e-15, atol=0)
        assert not np.array_equal(w, e)
    assert m.effective
    for e, again in zip(exact, _grads(lambda x, y: x * y, a, b)):
        assert np.array_equal(e, again)


def test_a_reduce_mutant_takes_the_first_slice_only_where_a_broadcast_was_summed():
    a, b = [[0.5, -1.5], [1.0, 2.0]], [[2.0, 3.0]]
    m = _mutant("elementwise.Mul", "reduce")
    with mutation.applied(m):
        ga, gb = _grads(lambda x, y: x * y, a, b)
    assert_close(ga, np.broadcast_to(b, (2, 2)))                 # not broadcast: untouched
    assert_close(gb, np.asarray(a)[:1])                          # the first row, not the sum
    assert m.effective


def test_a_swap_of_two_equal_gradients_changes_nothing():
    m = _mutant("elementwise.Add", "swap")
    with mutation.applied(m):
        ga, gb = _grads(lambda x, y: x + y, [1.0, 2.0], [3.0, 4.0])
    assert_close(ga, [1.0, 1.0])
    assert_close(gb, [1.0, 1.0])
    assert not m.effective


def test_the_sample_is_seeded():
    chosen = [m.name for m in mutation.mutants(1e-6)]
    assert len(set(chosen)) == len(chosen)
    assert inspect.signature(mutation.main).parameters      # the command exists
    assert mutation.main(["--sample", "5", "--seed", "abc", "--list"]) == 0
