#!/usr/bin/env bash
# The whole test suite. NUMBA_ENABLE_CUDASIM must be set before numba is imported, so the
# simulated-CUDA tests (tests/cuda/) run in a pytest process of their own.  Between the two, a
# seeded sample of the mutants of python -m tests.mutation (seeded by the commit, so each build
# draws its own): every sampled backward made wrong on purpose must fail a gradient test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The study page's test drives a real Chromium (tests/test_study.py): where it or its driver is
# missing and apt-get is usable (root, or sudo without a password), install them; otherwise the
# browser test fails and says how to install them.
browser() { command -v chromium || command -v chromium-browser || command -v google-chrome; }
if ! command -v chromedriver >/dev/null || ! browser >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
    if command -v apt-get >/dev/null && { [ -z "$sudo" ] || sudo -n true 2>/dev/null; }; then
        echo "tests/run.sh: installing chromium and chromium-driver (apt-get) for the study test"
        { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install \
              -y -qq --no-install-recommends chromium chromium-driver; } >/dev/null 2>&1 ||
            echo "tests/run.sh: apt-get could not install chromium: the study page's test fails"
    else
        echo "tests/run.sh: no chromium/chromedriver, no usable apt-get: the study test fails"
    fi
fi
python -m pytest -q tests --ignore=tests/cuda "$@"
python -m tests.mutation --sample "${NANOGEN_MUTANTS:-16}" \
    --seed "$(git rev-parse --short HEAD 2>/dev/null || echo 0)"
NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda "$@"
