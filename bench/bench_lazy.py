"""The exact lazy greedy sweep against the dense one, in one process.

    python bench/bench_lazy.py            # n=20,000, d=256, k=500; P = 2M and 20M
    python bench/bench_lazy.py --quick    # a small size, to check the script runs

Every pool is selected three ways by ``greedy_logdet``: ``lazy=False`` (the dense sweep, the
baseline), ``lazy=True`` and ``lazy="auto"``; the script checks that all three pick the same
pairs with the same gains, bit for bit. Pools: cross-prompt pairs of N(0, 1) float32 features
with the Fisher weights of N(0, s^2) rewards, for s = 1 (an untrained reward model, the
weights of bench_greedy.py: every pair nearly as informative as the next) and s = 4 (a trained
one: confident pairs weigh little); a pool of exact ties (features on the integer grid
{-2..2}^d, equal weights); and ``ensemble-dopt-greedy`` with E = 3 members (each its own
features and rewards of sd 1) on the smallest pool, selected through ``select``.

Columns: whole-selection time (median), pairs refreshed per step (the dense sweep touches all
P), downdates a refresh applied per step (the dense sweep applies P), bytes moved per step, the
extra memory at the peak of the call, and the ratios. The work a lazy refresh must do is the
downdates its candidates missed, in order; where scores fall together that is most of the dense
sweep's work, whatever the bookkeeping.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from bench_greedy import PeakMemory, build_line, bytes_per_step

import activerm_fast as arm
from activerm_fast.testing import core as _core
from activerm_fast.testing import design as _design

SWEEPS: list[bool | str] = [False, True, "auto"]
ENSEMBLE_MEMBERS = 3


def record_bytes(members: int) -> int:
    """A lazy candidate's record: a 16-byte head, then q and w of every member."""
    return 16 + 16 * members


def capture_engines() -> list:
    """Every greedy engine built from now on (to read the lazy sweep's counters)."""
    engines: list = []
    build = _design.greedy_engine

    def capturing(*args, **kwargs):
        engine, scale = build(*args, **kwargs)
        engines.append(engine)
        return engine, scale

    _design.greedy_engine = capturing
    return engines


def cross_pool(n: int, d: int, count: int, spread: float, seed: int):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d)).astype(np.float32)
    pairs = arm.pairs.cross_prompt(np.arange(n) // 10, count, seed=seed).astype(np.int32)
    weights = arm.fisher_weights(rng.normal(size=n) * spread, pairs).astype(np.float64)
    return features, pairs, weights


def tied_pool(n: int, d: int, count: int, seed: int):
    rng = np.random.default_rng(seed)
    features = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    pairs = arm.pairs.cross_prompt(np.arange(n) // 10, count, seed=seed).astype(np.int32)
    return features, pairs, np.full(count, 0.25)


def greedy(pool, k: int):
    """The selection of one pool (features, pairs, weights) by greedy_logdet, per sweep."""
    features, pairs, weights = pool
    return lambda lazy: arm.greedy_logdet(features, pairs, k, weights=weights, lazy=lazy)


def ensemble(n: int, d: int, count: int, k: int, seed: int):
    """ensemble-dopt-greedy's selection of a cross-prompt pool of ENSEMBLE_MEMBERS members'
    N(0, 1) features and rewards, per sweep."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(ENSEMBLE_MEMBERS, n, d)).astype(np.float32)
    rewards = rng.normal(size=(ENSEMBLE_MEMBERS, n))
    pairs = arm.pairs.cross_prompt(np.arange(n) // 10, count, seed=seed).astype(np.int32)
    return lambda lazy: arm.select(
        "ensemble-dopt-greedy", features=features, pairs=pairs, k=k, rewards=rewards, lazy=lazy
    )


def lazy_memory_bound(n: int, d: int, count: int, k: int, members: int = 1) -> int:
    """The lazy sweep's stated bound for a pool (sizes only: nothing is allocated)."""
    problem = _core.GreedyProblem(
        _core.FeatureView(0, _core.feature_dtypes["float32"], n, d, 1.0),
        members,
        0,
        _core.PairView(0, False, count),
        0,
    )
    return int(_core.LazyGreedy.memory_bound(problem, k))


def run_pool(
    name: str, select, sizes: tuple[int, int, int, int, int], repeats: int, engines: list
) -> list[str]:
    """One pool's rows: ``select(lazy)`` for every sweep; ``sizes`` = (n, d, P, k, members)."""
    n, d, count, k, members = sizes
    results, times, counters, memory = {}, {}, {}, {}
    for lazy in SWEEPS:
        runs = []
        for _ in range(repeats):
            engines.clear()
            with PeakMemory() as peak:
                start = time.perf_counter()
                selection = select(lazy)
                runs.append(time.perf_counter() - start)
            memory[lazy] = peak.added
        times[lazy] = statistics.median(runs)
        results[lazy] = selection
        sweep = engines[-1].lazy
        counters[lazy] = None if sweep is None else (sweep.refreshed, sweep.downdates, sweep.sweeps)
    dense = results[False]
    identical = all(
        np.array_equal(results[lazy].indices, dense.indices)
        and np.array_equal(results[lazy].gains, dense.gains)
        and results[lazy].logdet == dense.logdet
        for lazy in SWEEPS
    )
    apply_bytes = bytes_per_step(n, d, 0, members)  # v = Phi u and the factor, as in a dense step
    lines = []
    for lazy in SWEEPS:
        label = {False: "dense", True: "lazy", "auto": "auto"}[lazy]
        if counters[lazy] is None:
            refreshed, downdates = count, count
            step_bytes = bytes_per_step(n, d, count, members)
        else:
            total_refreshed, total_downdates, sweeps = counters[lazy]
            refreshed = total_refreshed / max(sweeps, 1)
            downdates = total_downdates / max(sweeps, 1)
            # records read and written, two kept projections per downdate and member, the
            # step's history
            step_bytes = int(
                refreshed * 2 * record_bytes(members)
                + downdates * 16 * members
                + n * 8 * members
                + apply_bytes
            )
        lines.append(
            f"{name:<34} {label:<6} {times[lazy]:>8.2f} s {times[False] / times[lazy]:>7.2f}x"
            f" {refreshed:>12,.0f} {downdates:>13,.0f} {step_bytes / 1e6:>9.1f} MB"
            f" {memory[lazy] / 1e6:>8.0f} MB"
        )
    best = min(times[False], times[True])
    lines.append(
        f"{'':<34} identical picks and gains: {identical}; auto / faster of the two: "
        f"{times['auto'] / best:.2f}; stated lazy bound: "
        f"{lazy_memory_bound(n, d, count, k, members) / 1e6:,.0f} MB"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--pairs", type=int, nargs="+", default=[2_000_000, 20_000_000])
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="n=2,000, d=64, P=200,000, k=60")
    args = parser.parse_args()
    if args.quick:
        args.responses, args.dim, args.pairs, args.k, args.repeats = 2_000, 64, [200_000], 60, 1
    n, d, k = args.responses, args.dim, args.k
    print(build_line(f"torch {torch.__version__}"))
    print(f"n = {n:,} responses, d = {d}, k = {k}, float32 features, prior 1e-3 I")
    engines = capture_engines()
    print(
        f"\n{'pool':<34} {'sweep':<6} {'time':>10} {'speedup':>8} {'refreshed/step':>12}"
        f" {'downdates/step':>13} {'bytes/step':>12} {'peak mem':>11}"
    )
    smallest = min(args.pairs)
    # (name, selection per sweep, pairs, members)
    pools = [
        (
            f"cross P={count:,}, rewards sd {spread:g}",
            greedy(cross_pool(n, d, count, spread, 0), k),
            count,
            1,
        )
        for count in args.pairs
        for spread in (1.0, 4.0)
    ]
    pools += [
        (
            f"ties P={smallest:,} (grid features)",
            greedy(tied_pool(n, d, smallest, 0), k),
            smallest,
            1,
        ),
        (
            f"ensemble E={ENSEMBLE_MEMBERS} P={smallest:,}",
            ensemble(n, d, smallest, k, 0),
            smallest,
            ENSEMBLE_MEMBERS,
        ),
    ]
    for name, select, count, members in pools:
        for line in run_pool(name, select, (n, d, count, k, members), args.repeats, engines):
            print(line, flush=True)
    largest = 200_000_000
    bound = lazy_memory_bound(n, d, largest, k)
    print(
        f"\nP = {largest:,} is not run: its pairs, weights and scores alone take "
        f"{largest * 24 / 2**30:.1f} GiB, and the lazy sweep's stated bound is "
        f"{bound / 2**30:.1f} GiB more, beyond half of this machine's memory, where lazy=True "
        "is refused and 'auto' stays dense."
    )


if __name__ == "__main__":
    main()
