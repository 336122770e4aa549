"""greedy_logdet, dense and lazy sweep, against the greedy a user would otherwise run.

Baselines: the NumPy rank-one greedy of bench_greedy.py over materialised (P, d) float32
differences (O(P d) per step; materialising them is timed too), and submodlib's
LogDeterminantFunction with its naive and lazy greedy on the (P, P) pair kernel (optional:
skipped with the reason when submodlib is not installed or the kernel does not fit). Building
that kernel and the objective's copy of it costs far more than submodlib's greedy itself: it is
timed once, untimed by pytest-benchmark, and recorded as ``setup_seconds``, so the rows compare
the greedy algorithms.

Rates: every row is credited with the bytes k dense steps must move (bench_greedy.bytes_per_step),
so GB/s compares like time; ``picks_in_common`` is the share of a baseline's k picks that
activerm_fast's greedy also picks.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import baselines
import numpy as np
import pytest
from bench_greedy import baseline_steps, bytes_per_step
from harness import LADDER, RIDGE, Problem, measure, problem, record, skip_reason_if_larger

import activerm_fast as arm

KERNEL_LIMIT = 2 * 2**30  # largest (P, P) kernel submodlib is given


def activerm(lazy: bool) -> Callable[[Problem], list[int]]:
    def run(p: Problem) -> list[int]:
        selection = arm.greedy_logdet(
            p.features, p.pairs, p.size.k, weights=p.weights, prior=RIDGE, lazy=lazy
        )
        return [int(i) for i in selection.indices]

    return run


def numpy_rank_one(p: Problem) -> list[int]:
    diffs = baselines.pair_diff(p.features, p.pairs)
    chosen, _ = baseline_steps(diffs, p.weights, RIDGE, p.size.k)
    return [int(i) for i in chosen]


IMPLEMENTATIONS: dict[str, Callable[[Problem], list[int]]] = {
    "activerm_fast dense": activerm(lazy=False),
    "activerm_fast lazy": activerm(lazy=True),
    "NumPy rank-one greedy": numpy_rank_one,
}
SUBMODLIB = {"submodlib NaiveGreedy": "NaiveGreedy", "submodlib LazyGreedy": "LazyGreedy"}


def submodlib_run(benchmark: Any, p: Problem, optimizer: str) -> Callable[[], list[int]]:
    """submodlib's greedy on an objective built here, its set-up time recorded."""
    pytest.importorskip("submodlib", reason="submodlib is not installed (pip install submodlib-py)")
    too_large = skip_reason_if_larger(
        baselines.submodlib_kernel_bytes(p.size.pairs), KERNEL_LIMIT, "the (P, P) pair kernel"
    )
    if too_large:
        pytest.skip(too_large)
    start = time.perf_counter()
    objective = baselines.submodlib_objective(p.features, p.pairs, p.weights, RIDGE)
    benchmark.extra_info["setup_seconds"] = time.perf_counter() - start
    return lambda: baselines.submodlib_greedy(objective, p.size.k, optimizer)


@pytest.mark.parametrize("implementation", [*IMPLEMENTATIONS, *SUBMODLIB])
@pytest.mark.parametrize("size", list(LADDER))
def test_greedy_logdet(benchmark: Any, size: str, implementation: str) -> None:
    benchmark.group = "greedy_logdet"
    p = problem(size)
    n, d, count, k = p.size.responses, p.size.dim, p.size.pairs, p.size.k
    record(
        benchmark,
        p.size,
        implementation,
        reference=implementation == "activerm_fast dense",
        work_bytes=k * bytes_per_step(n, d, count, 1),
    )
    if implementation in SUBMODLIB:
        run = submodlib_run(benchmark, p, SUBMODLIB[implementation])
    else:
        run = functools.partial(IMPLEMENTATIONS[implementation], p)
    picks = measure(benchmark, run)
    if not implementation.startswith("activerm_fast"):
        ours = activerm(lazy=False)(p)
        benchmark.extra_info["picks_in_common"] = len(set(picks) & set(ours)) / k
    assert len(np.unique(picks)) == k
