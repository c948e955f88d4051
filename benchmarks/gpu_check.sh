#!/usr/bin/env bash
# For whoever has an NVIDIA GPU (nanogen's development machine has none): check the GPU path on
# real hardware and time it.
#
#   bash benchmarks/gpu_check.sh            # from the repository root; about 15 minutes
#
# 1. a virtual environment of its own (.venv-gpu) with nanogen's CUDA and test extras (CuPy for
#    CUDA 12) and PyTorch 2.13 (its Linux wheel is the CUDA build), as the comparison;
# 2. the device suite, tests/cuda, on the GPU itself: without NUMBA_ENABLE_CUDASIM the numba.cuda
#    kernels compile for the card and CuPy runs every GPU branch (tests/cuda/conftest.py skips
#    only the files that inspect the simulator's namespace);
# 3. the data-parallel tests, whose NCCL path needs the GPUs (one rank per GPU);
# 4. the model-step benchmark on the GPU, nanogen against PyTorch on CUDA, alternating rounds.
#
# It prints everything it measures; paste the benchmark table into the README with the card's
# name (nvidia-smi prints it first).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -m venv .venv-gpu
. .venv-gpu/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[test,cuda]"
python -m pip install -q torch==2.13.0
python - <<'EOF'
import cupy, torch
import nanogen as ng
print(f"CuPy {cupy.__version__}: {cupy.cuda.runtime.getDeviceCount()} GPU(s); "
      f"PyTorch {torch.__version__}, CUDA {torch.cuda.is_available()}; "
      f"nanogen sees cuda: {ng.cuda.is_available()}, simulated: {ng.cuda.is_simulated()}")
assert ng.cuda.is_available() and not ng.cuda.is_simulated(), "no real GPU for nanogen"
EOF
python -m pytest -q tests/cuda
python -m pytest -q tests/test_distributed.py
python benchmarks/bench_models.py --device cuda --rounds 2
