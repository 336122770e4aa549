#!/usr/bin/env bash
# shellcheck disable=SC2329  # the phase functions are called through `bash -c` (export -f)
# The GPU check in one go, for a machine with a GPU, torch, pybind11, scikit-build-core, cmake and
# ninja but no package registry (the device machine). Phases, most valuable first:
#   build      build and install the package with the CUDA backend for this GPU's architecture
#              only (a third of the default build's architectures), then `activerm-fast info`;
#   wheels     beside the build: transformers and tokenizers for the embed phase from the wheels
#              scripts/fetch_gpu_wheels.py put in build/gpu-wheels, when that folder is there
#              (pip --no-index --find-links; what is installed and fits stays);
#   tests      every CUDA test, CUDA = CPU bit for bit: test_cuda_*.py and the [torch-cuda]
#              variants of the kernel, greedy, select, strategy, quota, lazy and distributed
#              tests (4 pytest-xdist workers when xdist is there);
#   memcheck   beside the tests: compute-sanitizer over scripts/cuda_sanitizer_workload.py (every
#              kernel path on small inputs, each result checked against the CPU); fails on an
#              error in a kernel or a result that differs from the CPU's;
#   racecheck  beside the tests: the same on the workload's quick subset;
#   bench      bench/bench_gpu.py: P = 10^8 against the copy bandwidth and the 2 s / 60 % targets,
#              the per-kernel profile, the per-prompt quota, P = 10^9 if it fits, the torch
#              baseline, the ensemble step and the CPU backend;
#   implicit   bench/bench_implicit_pool.py --device cuda: implicit pools against stored ones at
#              P = 10^8, then P = 10^9 implicit (the card's memory bound printed);
#   embed      bench/bench_model_features.py on a random 0.5 B Llama in bfloat16 against the
#              loops a user would write (rows/s, tokens/s);
#   sharded    bench/bench_sharded_gpu.py: one process, then two gloo and two NCCL ranks on the one
#              GPU (whether NCCL starts two ranks on one device is what its row says);
#   half       bench/bench_half_features.py --device cuda: float16 against float32 features.
#
# Time plan, on an H100/H200 with 16 cores: about 6 minutes in all, so that 15 minutes of a lent
# machine hold its start, this run and one rerun. Each phase has a limit (a phase that hangs
# leaves the others their time; what it printed before is in the log):
#   phase                       limit  expected  why
#   build (+ wheels beside it)    80 s    ~45 s  one architecture; greedy_engine_cuda.cu is the
#                                                critical path (34 s on two slow cores, the other
#                                                sources beside it); pip's own work ~10 s
#   tests, memcheck, racecheck   110 s   ~80 s   run side by side (the tests do not time
#                                                anything); torch's start under the sanitizers
#                                                is most of theirs; ~200 small tests on 4 workers
#   bench                         80 s   ~55 s   P = 10^8: ~1.5 s a selection, 4 + 3 loop runs;
#                                                P = 10^9: ~6 s to make, one run of each part
#   implicit                      30 s   ~20 s   P = 10^8 three ways at 16-32 B/pair a step,
#                                                then 10^9 implicit at k = 20
#   embed                         40 s   ~30 s   transformers' import, the model drawn and saved
#                                                (1 GB), loaded for each pass; the one-at-a-time
#                                                loop (512 forward passes of 32 layers, 3 times)
#   sharded                       30 s   ~25 s   one process, then two gloo and two NCCL ranks,
#                                                each with its start and its 5 M-pair shard
#   half                          15 s   ~10 s   P = 10^7, k = 50, both dtypes
# The limits add up to 385 s; run it with the device tool's timeout_s at 450.
#
# The sanitizers run with torch's caching allocator off, so every buffer is its own allocation
# they can bound. The log, the benchmark's JSON, the sanitizers' own logs and the tests' JUnit
# XML go to $OUT when it is set (the device tool brings that folder back, also when the run is
# stopped), else to build/gpu-check. The exit status is 0 only when every phase passed.
#   bash bench/gpu_check.sh [extra bench_gpu.py arguments]
#   PHASES="tests bench" bash bench/gpu_check.sh     # again, on a machine that has the build
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
results=${OUT:-build/gpu-check}
mkdir -p "$results"
phases=" ${PHASES:-build wheels tests memcheck racecheck bench implicit embed sharded half} "
wheels=build/gpu-wheels
export PYTHONUNBUFFERED=1 # every line in the log as it is printed, also from a phase stopped

build() {
  ACTIVERM_FAST_CUDA=ON python3 -m pip install --no-build-isolation --no-deps --no-index -q . &&
    python3 -m activerm_fast info
}

# the embed phase's packages from the carried wheels; the versions in use, either way
install_wheels() {
  if [ -f "$wheels/requirements.txt" ]; then
    python3 -m pip install -q --no-index --no-compile --disable-pip-version-check \
      --root-user-action=ignore --find-links "$wheels" -r "$wheels/requirements.txt" ||
      echo "the wheels in $wheels did not install: the embed phase uses what is installed"
  else
    echo "no $wheels/requirements.txt (scripts/fetch_gpu_wheels.py writes it): nothing installed"
  fi
  python3 -c 'import tokenizers, transformers
print("transformers", transformers.__version__, "tokenizers", tokenizers.__version__)'
}

tests() {
  local workers=()
  python3 -c 'import xdist' 2>/dev/null && workers=(-n 4)
  # three OpenMP threads a worker: 4 workers and the two sanitizers share 16 cores
  OMP_NUM_THREADS=3 python3 -m pytest -q -p no:cacheprovider "${workers[@]}" --durations=15 \
    --junitxml="$results/tests.xml" -k cuda tests
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

embed() {
  python3 bench/bench_model_features.py --device cuda --hidden 1024 --layers 32 --rows 512 \
    --batch-size 64 --repeats 2
}
export -f build install_wheels tests sanitize embed
export results wheels

failed=()
# limited SECONDS COMMAND...: COMMAND (a program or a function above) within SECONDS, then killed
# with everything it started
limited() {
  local limit=$1
  shift
  timeout --kill-after=10 "$limit" bash -c '"$@"' phase "$@"
}

# phase NAME SECONDS COMMAND...: COMMAND within SECONDS, if NAME is one of $PHASES
phase() {
  local name=$1 limit=$2 started=$SECONDS code
  shift 2
  [[ $phases == *" $name "* ]] || return 0
  echo "=== $name (limit $limit s)"
  limited "$limit" "$@"
  code=$?
  echo "=== $name: exit code $code after $((SECONDS - started)) s"
  [ "$code" -eq 0 ] || failed+=("$name (exit code $code)")
}

# beside NAME SECONDS COMMAND...: phase NAME started in the background, its output in
# $results/NAME.log (there as it is written); joined, and its log copied here, by `joined`
codes=$(mktemp -d)
declare -A side_started=()
beside() {
  local name=$1 limit=$2
  shift 2
  [[ $phases == *" $name "* ]] || return 0
  echo "=== $name (limit $limit s, beside the next phase; its output in $name.log)"
  side_started[$name]=$SECONDS
  (
    limited "$limit" "$@" >"$results/$name.log" 2>&1
    echo $? >"$codes/$name"
  ) &
}

joined() {
  local name code
  wait
  for name in "$@"; do
    [ -n "${side_started[$name]:-}" ] || continue
    echo "=== $name: its output"
    cat "$results/$name.log"
    code=$(cat "$codes/$name" 2>/dev/null || echo "none")
    echo "=== $name: exit code $code, joined $((SECONDS - side_started[$name])) s after its start"
    [ "$code" = 0 ] || failed+=("$name (exit code $code)")
  done
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

  beside wheels 60 install_wheels
  phase build 80 build
  joined wheels
  # every test file is collected (the device image has scipy, hypothesis and mpmath)
  beside memcheck 110 sanitize memcheck
  beside racecheck 110 sanitize racecheck --quick
  phase tests 110 tests
  joined memcheck racecheck
  # after a failed test too: the numbers help find the cause. Nothing runs beside the timings.
  phase bench 80 python3 bench/bench_gpu.py --json "$results/bench_gpu.json" "$@"
  phase implicit 30 python3 bench/bench_implicit_pool.py --device cuda --huge-k 20
  phase embed 40 embed
  phase sharded 30 python3 bench/bench_sharded_gpu.py
  phase half 15 python3 bench/bench_half_features.py --device cuda

  rm -rf "$codes"
  if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    return 1
  fi
  echo "every phase passed"
}

main "$@" 2>&1 | tee "$results/gpu_check.log"
exit "${PIPESTATUS[0]}"
