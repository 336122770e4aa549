"""One OpenMP runtime per process: _core runs on the runtime torch loaded, whatever the import order.

Each case runs in a fresh interpreter, since an OpenMP runtime, once mapped, stays for the life of
the process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from activerm_fast import _core

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="_core shares torch's OpenMP runtime on Linux only"
)

# The runtimes of GCC (libgomp), LLVM (libomp) and Intel (libiomp5), under any suffix a wheel
# gives them (libgomp.so.1, libgomp-a34b3233.so.1, libomp.so).
COUNT_RUNTIMES = textwrap.dedent(
    r"""
    import re
    mapped = {line.split()[-1] for line in open("/proc/self/maps") if "/" in line}
    for path in sorted(mapped):
        if re.match(r"lib(gomp|omp|iomp5)\b", path.rsplit("/", 1)[-1]):
            print("OpenMP runtime:", path)
    """
)


def mapped_runtimes(stdout: str) -> list[str]:
    return [
        line.split(": ", 1)[1]
        for line in stdout.splitlines()
        if line.startswith("OpenMP runtime: ")
    ]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    "imports",
    ["import torch, activerm_fast", "import activerm_fast", "import activerm_fast, torch"],
)
def test_one_openmp_runtime_is_mapped_after_import(imports: str) -> None:
    # A parallel kernel runs too: its GOMP_parallel call must have bound to the mapped runtime.
    code = f"{imports}\n" + textwrap.dedent(
        """
        import numpy as np
        from activerm_fast import _core
        x = np.random.default_rng().standard_normal((4096, 8))
        assert _core.max_threads() >= 1
        pairs = np.array([[0, 1], [2, 3]])
        assert np.isfinite(activerm_fast.pair_quadform(x, pairs, np.eye(8))).all()
        """
    )
    result = run_python(code + COUNT_RUNTIMES)
    assert result.returncode == 0, result.stderr
    runtimes = mapped_runtimes(result.stdout)
    assert len(runtimes) == 1, f"{imports!r} mapped {len(runtimes)} OpenMP runtimes: {runtimes}"


def test_core_brings_no_openmp_runtime_of_its_own() -> None:
    # Loaded alone, with no runtime in the process, _core must fail on an unresolved OpenMP
    # symbol: had it listed libgomp.so.1 as needed, the loader would have mapped one for it.
    code = textwrap.dedent(
        f"""
        import ctypes
        try:
            ctypes.CDLL({_core.__file__!r})
        except OSError as error:
            print(error)
        """
    )
    result = run_python(code + COUNT_RUNTIMES)
    assert result.returncode == 0, result.stderr
    error = result.stdout.splitlines()[0]
    assert "undefined symbol: " in error and ("GOMP_" in error or "omp_" in error), error
    assert mapped_runtimes(result.stdout) == []
