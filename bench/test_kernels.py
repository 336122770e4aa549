"""The four pair kernels against their NumPy formulations (bench/baselines.py), on the ladder.

Rates: pair_diff, fisher_weights and pair_quadform are memory-bound, so their rows report the
bytes the operation must move (indices, the rows it gathers, its output) and GB/s;
fisher_matrix reports GFLOP/s of the formula's 2 P d^2 multiply-adds (the kernel's scatter
does less arithmetic, so its figure is an effective rate).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import baselines
import numpy as np
import pytest
from harness import LADDER, MEMBERS, Problem, measure, problem, record

import activerm_fast as arm

SIZES = list(LADDER)
IMPLEMENTATIONS = ["activerm_fast", "NumPy"]


def precision_matrix(dim: int) -> np.ndarray:
    """A symmetric positive definite (d, d) matrix, float64."""
    m = np.random.default_rng(1).normal(size=(dim, dim))
    result: np.ndarray = m @ m.T / dim + np.eye(dim)
    return result


def run_kernel(
    benchmark: Any,
    group: str,
    size_name: str,
    implementation: str,
    calls: dict[str, Callable[[Problem], Callable[[], object]]],
    work: Callable[[Problem], dict[str, float]],
) -> None:
    benchmark.group = group
    p = problem(size_name)
    record(
        benchmark, p.size, implementation, reference=implementation == "activerm_fast", **work(p)
    )
    measure(benchmark, calls[implementation](p))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", SIZES)
def test_pair_diff(benchmark: Any, size: str, implementation: str) -> None:
    run_kernel(
        benchmark,
        "pair_diff",
        size,
        implementation,
        {
            "activerm_fast": lambda p: lambda: arm.pair_diff(p.features, p.pairs),
            "NumPy": lambda p: lambda: baselines.pair_diff(p.features, p.pairs),
        },
        # int32 pair, two float32 rows read, one float32 row written
        lambda p: {"work_bytes": p.size.pairs * (8 + 12 * p.size.dim)},
    )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", SIZES)
def test_fisher_weights(benchmark: Any, size: str, implementation: str) -> None:
    run_kernel(
        benchmark,
        "fisher_weights",
        size,
        implementation,
        {
            "activerm_fast": lambda p: lambda: arm.fisher_weights(p.rewards, p.pairs),
            "NumPy": lambda p: lambda: baselines.fisher_weights(p.rewards, p.pairs),
        },
        # int32 pair, two float64 rewards per member, one float64 weight written
        lambda p: {"work_bytes": p.size.pairs * (8 + 16 * MEMBERS + 8), "E": MEMBERS},
    )


TWO_LANE = "activerm_fast, two-lane vectors"


@pytest.mark.parametrize("implementation", [*IMPLEMENTATIONS, TWO_LANE])
@pytest.mark.parametrize("size", SIZES)
def test_pair_quadform(benchmark: Any, size: str, implementation: str, monkeypatch: Any) -> None:
    def call(p: Problem, kernel: Callable[..., object]) -> Callable[[], object]:
        precision = precision_matrix(p.size.dim)
        return lambda: kernel(p.features, p.pairs, precision)

    if implementation == TWO_LANE:  # the kernel's sums without AVX-512 lanes: the same bits
        monkeypatch.setenv("ACTIVERM_FAST_NARROW_VECTORS", "1")
    run_kernel(
        benchmark,
        "pair_quadform",
        size,
        implementation,
        {
            "activerm_fast": lambda p: call(p, arm.pair_quadform),
            TWO_LANE: lambda p: call(p, arm.pair_quadform),
            "NumPy": lambda p: call(p, baselines.pair_quadform),
        },
        # per pair: int32 pair, two float32 feature rows, two float64 rows of Phi A, one
        # float64 out; once: Phi read and Phi A written
        lambda p: {
            "work_bytes": p.size.pairs * (16 + 24 * p.size.dim) + 12 * p.size.responses * p.size.dim
        },
    )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", SIZES)
def test_fisher_matrix(benchmark: Any, size: str, implementation: str) -> None:
    run_kernel(
        benchmark,
        "fisher_matrix",
        size,
        implementation,
        {
            "activerm_fast": lambda p: lambda: arm.fisher_matrix(p.features, p.pairs, p.weights),
            "NumPy": lambda p: lambda: baselines.fisher_matrix(p.features, p.pairs, p.weights),
        },
        lambda p: {"flops": 2.0 * p.size.pairs * p.size.dim**2},
    )
