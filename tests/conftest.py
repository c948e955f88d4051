"""Shared test configuration: hypothesis profiles, and what the op table drew.

* ``ci`` (default): 40 examples a test, derandomised (the same draws on every run, so a CI
  failure reproduces), no deadline (numba JIT-compiles on first call).  40 is what keeps every
  calling form of every op-table entry drawn (the table fails when one is not) and the whole
  suite inside its budget on two cores.
* ``heavy``: the deep run, 400 random examples a test (new draws each run):
  ``HYPOTHESIS_PROFILE=heavy bash tests/run.sh``.
* ``heldout``: the ci profile's size with fresh, seeded draws (the mutation tool's held-out
  runs).

Tests never cap examples below the active profile: those that need more ask for a multiple of
it (``tests.strategies.examples(factor)``), so ``heavy`` deepens every test alike.
"""
import os
import sys

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.register_profile("heavy", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
# the mutation tool's held-out runs (python -m tests.mutation --hypothesis-seed N): the ci
# profile's size with fresh draws, seeded by pytest's --hypothesis-seed
settings.register_profile("heldout", max_examples=40, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter):
    """After a run that included the op table: how many examples it drew, and the share whose
    inputs all had at most one element (kept below 10% by tests/strategies.py)."""
    table = sys.modules.get("tests.test_ops_grad")
    drawn = getattr(table, "DRAWN", {}).get("examples", 0)
    if drawn:
        tiny = table.DRAWN["all inputs <= 1 element"]
        terminalreporter.write_line(
            f"op table: {drawn} examples, {tiny} ({100 * tiny / drawn:.1f}%) with every input "
            f"of at most one element")
