"""Smoke test of an installed activerm_fast: every public kernel against the float64 reference on
fresh random inputs, one ``select``, and ``activerm-fast info``.

Run it from outside the source tree (``cd /tmp && python /path/to/scripts/smoke_test.py``) so
that it imports the installed package, e.g. a wheel in a fresh virtual environment. It exits
non-zero, naming the check, on the first failure.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import numpy as np

import activerm_fast as arm
from activerm_fast.testing import reference as ref


def check_close(name: str, got: object, want: np.ndarray, rtol: float) -> None:
    got = np.asarray(got, dtype=np.float64)
    if not np.allclose(got, want, rtol=rtol, atol=1e-12):
        sys.exit(f"{name}: largest difference from the reference {np.abs(got - want).max():.3g}")
    print(f"{name:<15} ok")


def check_kernels(rng: np.random.Generator) -> None:
    n, d, k = 80, 12, 10
    features = rng.standard_normal((n, d))
    rewards = rng.standard_normal(n)
    pairs = arm.pairs.all_pairs(n)
    root = rng.standard_normal((d, d))
    precision = root @ root.T + np.eye(d)
    weights = ref.fisher_weights(rewards, pairs)

    check_close("pair_diff", arm.pair_diff(features, pairs), ref.pair_diff(features, pairs), 1e-12)
    check_close("fisher_weights", arm.fisher_weights(rewards, pairs), weights, 1e-6)
    check_close(
        "pair_quadform",
        arm.pair_quadform(features, pairs, precision),
        ref.pair_quadform(features, pairs, precision),
        1e-9,
    )
    check_close(
        "fisher_matrix",
        arm.fisher_matrix(features, pairs, weights),
        ref.fisher_matrix(features, pairs, weights),
        1e-9,
    )
    chosen = arm.greedy_logdet(features, pairs, k, weights=weights)
    want_indices, want_gains, _ = ref.greedy_logdet(features, pairs, k, weights=weights)
    if not np.array_equal(np.asarray(chosen.indices), want_indices):
        sys.exit(f"greedy_logdet chose {chosen.indices}, the reference {want_indices}")
    check_close("greedy_logdet", chosen.gains, want_gains, 1e-8)

    selection = arm.select("dopt-greedy", features=features, pairs=pairs, k=k, rewards=rewards)
    if not np.array_equal(np.asarray(selection.indices), want_indices):
        sys.exit(f"select('dopt-greedy') chose {selection.indices}, greedy_logdet {want_indices}")
    print(f"{'select':<15} ok")


def check_info() -> None:
    # The console script installed beside this interpreter, not one elsewhere on PATH.
    script = Path(sys.executable).parent / "activerm-fast"
    if not script.exists():
        sys.exit(f"no activerm-fast command beside {sys.executable}")
    result = subprocess.run([script, "info"], capture_output=True, text=True, check=False)
    if result.returncode != 0 or "version" not in result.stdout:
        sys.exit(f"activerm-fast info failed ({result.returncode}): {result.stderr.strip()}")
    print(result.stdout, end="")


def main() -> None:
    package = Path(arm.__file__).resolve().parent
    print(f"activerm_fast {arm.build_info()['version']} from {package}")
    seed = secrets.randbits(32)
    print(f"random seed: {seed}")
    check_kernels(np.random.default_rng(seed))
    check_info()


if __name__ == "__main__":
    main()
