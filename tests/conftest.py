"""Shared test configuration: hypothesis profiles.

* ``ci`` (default): bounded examples, no deadline (numba JIT-compiles on first call).
* ``heavy``: many more examples for local runs: ``HYPOTHESIS_PROFILE=heavy pytest tests``.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=15, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.register_profile("heavy", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
