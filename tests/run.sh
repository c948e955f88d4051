#!/usr/bin/env bash
# The whole test suite. NUMBA_ENABLE_CUDASIM must be set before numba is imported, so the
# simulated-CUDA tests (tests/cuda/) run in a pytest process of their own.  Between the two, a
# seeded sample of the mutants of python -m tests.mutation (seeded by the commit, so each build
# draws its own): every sampled backward made wrong on purpose must fail a gradient test.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q tests --ignore=tests/cuda "$@"
python -m tests.mutation --sample "${NANOGEN_MUTANTS:-16}" \
    --seed "$(git rev-parse --short HEAD 2>/dev/null || echo 0)"
NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda "$@"
