#!/usr/bin/env bash
# The whole test suite. NUMBA_ENABLE_CUDASIM must be set before numba is imported, so the
# simulated-CUDA tests (tests/cuda/) run in a pytest process of their own.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q tests --ignore=tests/cuda "$@"
NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda "$@"
