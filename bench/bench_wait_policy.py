"""How idle OpenMP threads wait: the package's passive wait against a short spin, alone and
beside a busy process.

    python bench/bench_wait_policy.py            # fits, small greedy, short simulate; 0 and 1 busy
    python bench/bench_wait_policy.py --quick    # one run and a smaller simulate: checks it runs

libgomp reads its wait setting once, when torch loads it, so every measurement runs in a fresh
Python process, the two settings alternating:

  sleep        neither GOMP_SPINCOUNT nor OMP_WAIT_POLICY set: the package's default
               (_openmp.py), idle threads sleep at once and are woken for each parallel region
  short spin   GOMP_SPINCOUNT=10000: idle threads spin that many times (under a millisecond
               here) before they sleep, so back-to-back regions find them awake

Cases, each timed inside its process (imports and inputs excluded) except simulate:
  fit N       RewardModel.fit as the loop runs it (LoopConfig()'s head, 3 members, 768-d
              arena-bench inputs) on N random cross-prompt pairs with Bradley-Terry labels,
              the median of 3 seeds
  greedy      greedy_logdet at n = 2,000, d = 64, P = 5,000, k = 100 (bench_greedy.py --small's
              problem), the median of 30 calls
  simulate    ``activerm-fast simulate`` with bench_contention.py's short arguments, the whole
              command as a user waits for it

The busy processes are bench_contention.py's single-threaded spin loops. Medians over the
repeats, and short spin / sleep (below 1: the short spin is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from bench_contention import (
    QUICK_SIMULATE_ARGS,
    SIMULATE_ARGS,
    busy_processes,
    cpu_jiffies,
    run_child,
    run_simulate_in,
)

WAIT_VARIABLES = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")
SETTINGS = ("short spin", "sleep")
SHORT_SPIN = "10000"
FIT_SIZES = (100, 400, 800)


def child() -> None:
    """Time the fits and the small greedy selection in this process; JSON on stdout."""
    import numpy as np
    from bench_greedy import SMALL_GREEDY, pool_inputs
    from bench_main_job import fit_after

    import activerm_fast as arm

    data = arm.load("arena-bench").train()
    config = arm.LoopConfig()
    pool = arm.pairs.cross_prompt(data.prompt_ids, 20_000, seed=0)
    rng = np.random.default_rng(0)
    times: dict[str, float] = {}
    for size in FIT_SIZES:
        pick = pool[rng.choice(len(pool), size, replace=False)]
        labels = (data.gold[pick[:, 0]] > data.gold[pick[:, 1]]).astype(np.int64)
        seeds = []
        for seed in range(3):
            start = time.perf_counter()
            fit_after(data.embeddings, pick, labels, config=config, seed=seed)
            seeds.append(time.perf_counter() - start)
        times[f"fit {size}"] = statistics.median(seeds)
    n, d, count, k = SMALL_GREEDY
    _, features, pairs, weights = pool_inputs(n, d, count)
    calls = []
    for _ in range(31):
        start = time.perf_counter()
        arm.greedy_logdet(features, pairs, k, weights=weights)
        calls.append(time.perf_counter() - start)
    times["greedy"] = statistics.median(calls[1:])  # the first call pays one-time costs
    print(json.dumps(times))


def environment(setting: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in WAIT_VARIABLES}
    if setting == "short spin":
        env["GOMP_SPINCOUNT"] = SHORT_SPIN
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, help="runs per setting and load (3; --quick: 1)")
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="busy processes")
    parser.add_argument("--quick", action="store_true", help="one run, a smaller simulate")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a run may take")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    simulate_args = QUICK_SIMULATE_ARGS if args.quick else SIMULATE_ARGS
    cpus = len(os.sched_getaffinity(0))
    print(
        f"{os.cpu_count()} CPUs ({cpus} usable), load average {os.getloadavg()[0]:.2f} at start; "
        f"medians of {repeats} runs, the settings alternating; simulate {' '.join(simulate_args)}"
    )
    header = f"{'case':<10}{'busy':>6}" + "".join(f"{s + ' s':>14}" for s in SETTINGS)
    header += f"{'spin / sleep':>14}"
    lines = []
    for busy in args.busy:
        measured: dict[str, dict[str, list[float]]] = {s: {} for s in SETTINGS}
        busy_start, total_start = cpu_jiffies()
        with busy_processes(busy, 4 * repeats * args.timeout + 60):
            for repeat in range(repeats):
                order = SETTINGS if repeat % 2 == 0 else SETTINGS[::-1]
                for setting in order:
                    times = run_child(
                        "bench_wait_policy.child()", environment(setting), args.timeout, setting
                    )
                    times["simulate"] = run_simulate_in(
                        environment(setting), simulate_args, args.timeout
                    )
                    for case, seconds in times.items():
                        measured[setting].setdefault(case, []).append(seconds)
        busy_end, total_end = cpu_jiffies()
        load = (busy_end - busy_start) / max(1, total_end - total_start) * cpus
        print(f"  {busy} busy: the machine {load:.2f} cores busy on average over the block")
        for case in measured[SETTINGS[0]]:
            spin, sleep = (statistics.median(measured[s][case]) for s in SETTINGS)
            unit = 1e3 if case == "greedy" else 1.0
            lines.append(
                f"{case:<10}{busy:>6}{spin * unit:>14.3f}{sleep * unit:>14.3f}{spin / sleep:>14.2f}"
            )
    print()
    print(header)
    print("-" * len(header))
    for line in lines:
        print(line)
    print("\nseconds, greedy in milliseconds")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
