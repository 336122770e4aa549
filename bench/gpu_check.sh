#!/usr/bin/env bash
# The GPU check in one go, for a machine with a GPU, torch, pybind11, scikit-build-core, cmake and
# ninja but no package registry (the device machine). Phases:
#   build      build and install the package with the CUDA backend for this GPU's architecture
#              only (a third of the default build's architectures), then `activerm-fast info`;
#   tests      every CUDA test, CUDA = CPU bit for bit: test_cuda_*.py and the [torch-cuda]
#              variants of the kernel, greedy, select, strategy, lazy and distributed tests;
#   memcheck   compute-sanitizer over scripts/cuda_sanitizer_workload.py (every kernel path on
#              small inputs, each result checked against the CPU); fails on an error in a
#              kernel or a result that differs from the CPU's;
#   racecheck  the same on the workload's quick subset;
#   bench      bench/bench_gpu.py: target scale, per-kernel profile, the torch baseline, the
#              ensemble step and the CPU backend.
# Each phase has a time limit, so one that hangs leaves the others their time. The sanitizers
# run with torch's caching allocator off, so every buffer is its own allocation they can bound.
# The log and the benchmark's JSON go to $OUT when it is set (the device tool brings that folder
# back), else to build/gpu-check. The exit status is 0 only when every phase passed.
#   bash bench/gpu_check.sh [extra bench_gpu.py arguments]
#   PHASES="tests bench" bash bench/gpu_check.sh     # again, on a machine that has the build
set -uo pipefail
cd "$(dirname "$0")/.."
results=${OUT:-build/gpu-check}
mkdir -p "$results"
phases=" ${PHASES:-build tests memcheck racecheck bench} "

build() {
  ACTIVERM_FAST_CUDA=ON python3 -m pip install --no-build-isolation --no-deps --no-index -q . &&
    python3 -m activerm_fast info
}

# sanitize TOOL [workload arguments...]: the workload under compute-sanitizer. It fails on an
# error in a kernel, or when the workload fails; a CUDA API call that returned an error (torch
# probes a few as it starts) is reported and counted apart, not failed on.
sanitize() {
  local tool=$1 log program total api
  shift
  log=$(mktemp)
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool "$tool" --print-limit 1000 \
    python3 scripts/cuda_sanitizer_workload.py "$@" 2>&1 | tee "$log"
  program=${PIPESTATUS[0]}
  # "ERROR SUMMARY: N errors", and racecheck's "RACECHECK SUMMARY: ... (N errors, M warnings)":
  # the largest count, whichever lines this version prints
  total=$(grep -oE 'ERROR SUMMARY: [0-9]+|RACECHECK SUMMARY: .*\([0-9]+ error' "$log" |
    grep -oE '[0-9]+( error)?$' | grep -oE '^[0-9]+' | sort -n | tail -n 1)
  api=$(grep -cE 'Program hit cuda[A-Za-z]+ .*on CUDA API call' "$log")
  rm -f "$log"
  if [ -z "$total" ]; then
    echo "compute-sanitizer $tool: no summary line (exit code $program)"
    return 1
  fi
  echo "compute-sanitizer $tool: $total errors, $api of them CUDA API calls that returned an" \
    "error, $((total - api)) in kernels; the workload's exit code $program"
  [ "$program" -eq 0 ] && [ $((total - api)) -eq 0 ]
}
export -f build sanitize

failed=()
# phase NAME SECONDS COMMAND...: COMMAND (a program or a function above) within SECONDS, if NAME
# is one of $PHASES
phase() {
  local name=$1 limit=$2 started=$SECONDS code
  shift 2
  [[ $phases == *" $name "* ]] || return 0
  echo "=== $name (limit $limit s)"
  timeout --kill-after=10 "$limit" bash -c '"$@"' phase "$@"
  code=$?
  echo "=== $name: exit code $code after $((SECONDS - started)) s"
  [ "$code" -eq 0 ] || failed+=("$name (exit code $code)")
}

main() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader
  # nvcc and compute-sanitizer: on the PATH, or in the first CUDA folder that has them
  local tool folder
  for tool in nvcc compute-sanitizer; do
    command -v "$tool" >/dev/null && continue
    for folder in /usr/local/cuda/bin /usr/local/cuda-*/bin /opt/cuda/bin /opt/*/bin; do
      if [ -x "$folder/$tool" ]; then
        export PATH=$PATH:$folder
        break
      fi
    done
  done
  if command -v nvcc >/dev/null; then
    export CUDACXX=${CUDACXX:-$(command -v nvcc)}
    nvcc --version | tail -n 2
  else
    echo "no nvcc found: the build phase will fail"
  fi
  local capability
  capability=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' .')
  if [[ $capability =~ ^[0-9]+$ ]]; then
    export CMAKE_ARGS="${CMAKE_ARGS:-} -DCMAKE_CUDA_ARCHITECTURES=${capability}-real"
  fi

  phase build 300 build
  # every test file is collected (the device image has scipy, hypothesis and mpmath)
  phase tests 300 python3 -m pytest -q -p no:cacheprovider -k cuda tests
  phase memcheck 240 sanitize memcheck
  phase racecheck 240 sanitize racecheck --quick
  # after a failed test too: the numbers help find the cause
  phase bench 300 python3 bench/bench_gpu.py --json "$results/bench_gpu.json" "$@"

  if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    return 1
  fi
  echo "every phase passed"
}

main "$@" 2>&1 | tee "$results/gpu_check.log"
exit "${PIPESTATUS[0]}"
