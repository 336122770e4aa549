#!/usr/bin/env bash
# GPU check in one go, for a machine with a GPU, torch, pybind11, scikit-build-core, cmake and
# ninja but no package registry: build and install the package with the CUDA backend, run the
# CUDA tests, then print the benchmark table (bench_gpu.py). Takes about 3 minutes on an H100.
#   bash bench/gpu_check.sh [extra bench_gpu.py arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
nvcc --version | tail -n 2
started=$SECONDS
ACTIVERM_FAST_CUDA=ON python -m pip install --no-build-isolation --no-deps --no-index -q .
echo "build and install: $((SECONDS - started)) s"
python -c "import activerm_fast; print(activerm_fast.build_info())"

started=$SECONDS
tests=0
# the files with CUDA variants, by name: the device has no registry, and other test files need
# scipy, hypothesis or mpmath to be collected at all
python -m pytest -q -k cuda -p no:cacheprovider tests/test_cuda_backend.py tests/test_cuda_build.py \
  tests/test_kernels.py tests/test_greedy.py tests/test_select.py tests/test_distributed.py \
  tests/test_lazy.py \
  || tests=$?
echo "CUDA tests: $((SECONDS - started)) s (pytest exit code $tests)"

# the benchmark runs even after a test failure: its numbers help find the cause
started=$SECONDS
python bench/bench_gpu.py "$@"
echo "benchmark: $((SECONDS - started)) s"
exit "$tests"
