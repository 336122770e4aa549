"""What every pytest-benchmark group in bench/ shares: the size ladder, the problems, one timing
rule and the records the tables in docs/BENCHMARKS.md are made from.

Every group times activerm_fast and its baselines on the same problem in the same run. A row's
``extra_info`` holds its sizes, ``implementation``, whether it is the group's ``reference`` (the
activerm_fast row the others are compared with), the ``bytes`` or ``flops`` of the work it does
(the same work for every row of a group, so rates compare like times do) and the achieved rate;
``bench/conftest.py`` adds the ratios once every row has run.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from bench_greedy import pool_inputs

T = TypeVar("T")

MEMBERS = 3  # ensemble members behind the rewards (bald and bal-pm need two or more)
RIDGE = 1e-3  # lambda of F0 = lambda I, as in bench_greedy.py
SECONDS_PER_ROW = 2.0  # time one row's timed rounds may take (one round for slower calls)
MIN_ROUNDS, MAX_ROUNDS = 1, 100
MIN_ROUND_SECONDS = 2e-3  # fast calls are repeated within a round to stay above timer noise


@dataclass(frozen=True)
class Size:
    """One rung of the ladder: n responses (10 per prompt) with d-dimensional features, P
    cross-prompt candidate pairs, k pairs to choose."""

    name: str
    responses: int
    dim: int
    pairs: int
    k: int

    def as_info(self) -> dict[str, Any]:
        return {"size": self.name, "n": self.responses, "d": self.dim, "P": self.pairs, "k": self.k}


LADDER = {
    size.name: size
    for size in (
        Size("small", 1_000, 32, 5_000, 50),
        Size("medium", 10_000, 32, 100_000, 100),
        Size("large", 20_000, 64, 1_000_000, 100),
    )
}


@dataclass(frozen=True)
class Problem:
    """bench_greedy.py's pool at one size: float32 N(0, 1) features, int32 cross-prompt pairs,
    float64 Fisher weights; plus (E, n) rewards for the strategies that need an ensemble."""

    size: Size
    features: np.ndarray
    pairs: np.ndarray
    weights: np.ndarray
    rewards: np.ndarray


@functools.cache
def problem(name: str) -> Problem:
    size = LADDER[name]
    rng, features, pairs, weights = pool_inputs(size.responses, size.dim, size.pairs)
    rewards = rng.normal(size=(MEMBERS, size.responses))
    return Problem(size, features, pairs, weights, rewards)


def measure(benchmark: Any, run: Callable[[], T], seconds: float = SECONDS_PER_ROW) -> T:
    """Time ``run`` with pytest-benchmark and return its result. One untimed call first (it
    warms caches and tells how long a call takes), then as many rounds as fit in ``seconds``,
    at least one: pytest-benchmark's own calibration would spend five rounds and more on a call
    of several seconds, more than the whole ladder may take."""
    start = time.perf_counter()
    result = run()
    once = max(time.perf_counter() - start, 1e-9)
    iterations = max(1, math.ceil(MIN_ROUND_SECONDS / once))
    rounds = min(MAX_ROUNDS, max(MIN_ROUNDS, int(seconds / (once * iterations))))
    benchmark.pedantic(run, rounds=rounds, iterations=iterations)
    return result


def record(
    benchmark: Any,
    size: Size,
    implementation: str,
    *,
    reference: bool = False,
    work_bytes: float | None = None,
    flops: float | None = None,
    **info: Any,
) -> None:
    """Fill a row's ``extra_info`` (before it is timed: a row that fails still says what it
    was), with the machine's load average as the row starts: other processes on the cores
    distort timings, NumPy's threaded BLAS most (a matrix product that takes 0.3 ms alone took
    160 ms beside one busy process). The achieved rates are added by :func:`rates` once the
    row has its median."""
    benchmark.extra_info.update(size.as_info(), load_average=os.getloadavg()[0])
    benchmark.extra_info.update(implementation=implementation, reference=reference, **info)
    if work_bytes is not None:
        benchmark.extra_info["bytes"] = int(work_bytes)
    if flops is not None:
        benchmark.extra_info["flops"] = float(flops)


def rates(extra_info: dict[str, Any], median: float) -> None:
    """GB/s, GFLOP/s and candidate pairs per second of a row from its work, its pool and its
    median seconds."""
    if extra_info.get("P"):
        extra_info["Mpairs/s"] = extra_info["P"] / median / 1e6
    if "bytes" in extra_info:
        extra_info["GB/s"] = extra_info["bytes"] / median / 1e9
    if "flops" in extra_info:
        extra_info["GFLOP/s"] = extra_info["flops"] / median / 1e9


def skip_reason_if_larger(nbytes: float, limit: float, what: str) -> str | None:
    """Why a baseline that would allocate ``nbytes`` is not run at this size (None: it fits)."""
    if nbytes <= limit:
        return None
    return f"{what} would take {nbytes / 2**30:.1f} GiB (limit {limit / 2**30:.1f} GiB)"
