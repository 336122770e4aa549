"""Default threads against one thread, beside busy single-threaded processes.

    python bench/bench_contention.py             # greedy, small, topk, simulate: 0 and 1 busy
    python bench/bench_contention.py --two-busy  # also beside 2 busy processes
    python bench/bench_contention.py --quick     # small sizes, 1 run each: checks the script runs

Each measurement runs in a fresh Python process, so thread settings act from start-up:
"default" leaves OMP_NUM_THREADS, MKL_NUM_THREADS and OMP_WAIT_POLICY unset (what a user gets);
"one thread" sets OMP_NUM_THREADS=1 and MKL_NUM_THREADS=1, which also gives torch one intra-op
thread (torch reads OMP_NUM_THREADS at start-up; check with ``torch.get_num_threads()``).
The busy processes are pure-Python spin loops, one thread each, started before a block of runs,
bounded in time and always terminated. Default and one-thread runs alternate, so background
load drifts over both alike. The table gives the median seconds and default / one thread.

Cases:
  greedy    activerm_fast.greedy_logdet: n = 20,000 responses, d = 256, P = 2,000,000
            cross-prompt pairs, k = 200, float32 features (inputs as bench_greedy.py builds
            them), the dense sweep; the time is the one call, its validation and initial scores
            included, not the making of its inputs or the imports.
  lazy      the same with the exact lazy sweep (lazy=True).
  small     greedy_logdet at bench_greedy.py --small's size (n = 2,000, d = 64, P = 5,000,
            k = 100), where a call takes milliseconds: the median of SMALL_CALLS calls in one
            process after a warm-up (their 90th percentile in the block's line), so a team
            that waits for a core shows as the call's cost, not as noise.
  topk      select("dopt-topk") at bench_greedy.py --small's size for it (n = 4,000, d = 128,
            P = 19,800, k = 200, the first k pairs labelled, rewards of 3 members), timed as
            small; its passes run on one thread and its one-shot kernels on the cores free at
            the time (_threads.kernel_team), which a busy process should leave at one.
  simulate  the command ``activerm-fast simulate --seeds 1 --strategies random dopt-greedy``
            with a few rounds (see SIMULATE_ARGS), output to a temporary folder; the time is
            the whole command, start-up included, as a user waits for it.

The load average and the other processes' CPU use are printed: anything else running on the
machine distorts the numbers, and a "0 busy" row is only alone when the machine is otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
SIMULATE_ARGS = ["--seeds", "1", "--strategies", "random", "dopt-greedy", "--rounds", "6"]
QUICK_SIMULATE_ARGS = [*SIMULATE_ARGS[:-1], "2", "--per-round", "30", "--cross-pairs", "5000"]
GREEDY_SIZE = {"n": 20_000, "d": 256, "pairs": 2_000_000, "k": 200}
SMALL_CALLS = 200
# select() at the small size, one case each (not run by default)
SMALL_NAMES = {f"small-{name}": name for name in ("random", "dopt-topk", "coreset")}
QUICK_GREEDY_SIZE = {"n": 4_000, "d": 64, "pairs": 200_000, "k": 50}

SPIN = """
import time
end = time.monotonic() + {seconds}
count = 0
while time.monotonic() < end:
    for _ in range(10000):
        count += 1
"""


# ---- the child processes ---------------------------------------------------------------------


def greedy_child(n: int, d: int, pairs: int, k: int, lazy: bool = False) -> None:
    """Time one greedy selection (the dense or the lazy sweep); prints JSON on stdout."""
    import torch
    from bench_greedy import pool_inputs  # this script's folder is on sys.path

    import activerm_fast as arm

    _, features, candidates, weights = pool_inputs(n, d, pairs)
    start = time.perf_counter()
    arm.greedy_logdet(features, candidates, k, weights=weights, prior=1e-3, lazy=lazy)
    seconds = time.perf_counter() - start
    info = {
        "seconds": seconds,
        "torch_threads": torch.get_num_threads(),
        "openmp_threads": arm.build_info()["openmp_threads"],
    }
    print(json.dumps(info))


def small_child(calls: int, strategy: str = "", size: str = "greedy") -> None:
    """Time ``calls`` small greedy selections (``select(strategy)`` of the same pool with its
    rewards where a strategy is named) after a warm-up; prints JSON on stdout: the median and
    the 90th percentile of a call. ``size="topk"``: bench_greedy.py --small's dopt-topk size,
    its first k pairs labelled."""
    import numpy as np
    import torch
    from bench_greedy import SMALL_GREEDY, SMALL_TOPK, pool_inputs

    import activerm_fast as arm

    n, d, count, k = SMALL_TOPK if size == "topk" else SMALL_GREEDY
    rng, features, candidates, weights = pool_inputs(n, d, count)
    rewards = rng.normal(size=(3, n))  # an ensemble's, for the strategies that read rewards
    labelled = None
    if size == "topk":
        candidates, labelled = candidates[k:], candidates[:k]
    times = []
    for _ in range(calls // 10 + calls):
        start = time.perf_counter()
        if strategy:
            arm.select(strategy, features=features, pairs=candidates, k=k, rewards=rewards,
                       labelled=labelled)  # fmt: skip
        else:
            arm.greedy_logdet(features, candidates, k, weights=weights, prior=1e-3)
        times.append(time.perf_counter() - start)
    timed = times[calls // 10 :]
    info = {
        "seconds": statistics.median(timed),
        "p90": float(np.percentile(timed, 90)),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(info))


# ---- the parent --------------------------------------------------------------------------------


def environment(one_thread: bool) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    if one_thread:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    return env


def cli_command() -> list[str]:
    """The installed ``activerm-fast`` script next to this Python (what a user runs), else
    ``python -m activerm_fast``."""
    script = Path(sys.executable).with_name("activerm-fast")
    return [str(script)] if script.exists() else [sys.executable, "-m", "activerm_fast"]


def run_child(call: str, env: dict[str, str], timeout: float, what: str) -> dict[str, Any]:
    """The JSON a bench/ module's function ``call`` (``module.function(args)``) prints last on
    stdout, run in a fresh Python process with ``env``."""
    module = call.split(".", 1)[0]
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import {module}; {call}"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} run failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_greedy(one_thread: bool, size: dict[str, int], timeout: float, lazy: bool) -> float:
    sizes = f"{size['n']}, {size['d']}, {size['pairs']}, {size['k']}"
    call = f"bench_contention.greedy_child({sizes}, {lazy})"
    result = run_child(call, environment(one_thread), timeout, "greedy")
    expected = 1 if one_thread else None
    if expected is not None and result["torch_threads"] != expected:
        raise RuntimeError(f"one-thread run has {result['torch_threads']} torch threads")
    return float(result["seconds"])


def run_small(
    one_thread: bool,
    calls: int,
    timeout: float,
    tails: list[float],
    strategy: str = "",
    size: str = "greedy",
) -> float:
    """The median call of a small_child run; its 90th percentile is appended to ``tails``."""
    result = run_child(
        f"bench_contention.small_child({calls}, {strategy!r}, {size!r})",
        environment(one_thread),
        timeout,
        "small",
    )
    tails.append(float(result["p90"]))
    return float(result["seconds"])


def run_simulate(one_thread: bool, args: Sequence[str], timeout: float) -> float:
    return run_simulate_in(environment(one_thread), args, timeout)


def run_simulate_in(env: dict[str, str], args: Sequence[str], timeout: float) -> float:
    """Seconds of the whole ``activerm-fast simulate`` command with ``args`` in ``env``, its
    output in a temporary folder."""
    folder = tempfile.mkdtemp(prefix="bench-contention-")
    try:
        command = [*cli_command(), "simulate", *args, "--no-progress", "--out", folder]
        start = time.perf_counter()
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        return seconds
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def busy_processes(count: int, seconds: float) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` single-threaded spin loops that end by themselves after ``seconds`` at most,
    and are terminated (then killed) when the block ends, whatever happens."""
    spinners: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            spinners.append(
                subprocess.Popen(
                    [sys.executable, "-c", SPIN.format(seconds=seconds)],
                    env=environment(one_thread=True),
                )
            )
        time.sleep(0.5 if count else 0)  # let them get going
        yield spinners
    finally:
        for spinner in spinners:
            spinner.terminate()
        for spinner in spinners:
            try:
                spinner.wait(timeout=5)
            except subprocess.TimeoutExpired:
                spinner.kill()
                spinner.wait()


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def children_jiffies() -> float:
    """CPU seconds of this script's finished children, spinners included."""
    usage = os.times()
    return usage.children_user + usage.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, help="runs per cell, median (3; --quick: 1)")
    parser.add_argument("--two-busy", action="store_true", help="also beside 2 busy processes")
    parser.add_argument("--busy", type=int, nargs="+", help="busy-process counts (default 0 1)")
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=["greedy", "lazy", "small", *SMALL_NAMES, "topk", "simulate"],
        default=["greedy", "lazy", "small", "topk", "simulate"],
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one run per cell")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds one run may take before it fails"
    )
    args = parser.parse_args()
    busy_counts = args.busy or ([0, 1, 2] if args.two_busy else [0, 1])
    size, simulate_args = GREEDY_SIZE, SIMULATE_ARGS
    if args.quick:
        size, simulate_args = QUICK_GREEDY_SIZE, QUICK_SIMULATE_ARGS
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    calls = 20 if args.quick else SMALL_CALLS

    cpus = len(os.sched_getaffinity(0))
    print(
        f"{os.cpu_count()} CPUs ({cpus} usable), load average {os.getloadavg()[0]:.2f} at start; "
        f"median of {args.repeats} runs, default and one-thread runs alternating"
    )
    print(
        f"greedy and lazy: n = {size['n']:,}, d = {size['d']}, P = {size['pairs']:,}, "
        f"k = {size['k']}"
    )
    print(f"simulate: {' '.join(cli_command()[-1:])} simulate {' '.join(simulate_args)}")
    print(f"small: greedy, n = 2,000, d = 64, P = 5,000, k = 100, median of {calls} calls")
    tails: dict[bool, list[float]] = {False: [], True: []}
    runners = {
        "greedy": lambda one: run_greedy(one, size, args.timeout, lazy=False),
        "lazy": lambda one: run_greedy(one, size, args.timeout, lazy=True),
        "small": lambda one: run_small(one, calls, args.timeout, tails[one]),
        **{
            case: lambda one, name=name: run_small(one, calls, args.timeout, tails[one], name)
            for case, name in SMALL_NAMES.items()
        },
        "topk": lambda one: run_small(one, calls, args.timeout, tails[one], "dopt-topk", "topk"),
        "simulate": lambda one: run_simulate(one, simulate_args, args.timeout),
    }
    rows = []
    for busy in busy_counts:
        for case in args.cases:
            # long enough for every run of the block, and bounded even if this script dies
            bound = 2 * args.repeats * args.timeout + 60
            default_times: list[float] = []
            one_times: list[float] = []
            tails[False].clear()
            tails[True].clear()
            busy_start, total_start = cpu_jiffies()
            own_start, wall_start = children_jiffies(), time.perf_counter()
            with busy_processes(busy, bound):
                for repeat in range(args.repeats):
                    order = [False, True] if repeat % 2 == 0 else [True, False]
                    for one in order:
                        (one_times if one else default_times).append(runners[case](one))
            busy_end, total_end = cpu_jiffies()
            wall = time.perf_counter() - wall_start
            # CPU time of the machine not spent by this script, its runs and its spinners
            ticks = os.sysconf("SC_CLK_TCK")
            others = ((busy_end - busy_start) / ticks - (children_jiffies() - own_start)) / wall
            default, one = statistics.median(default_times), statistics.median(one_times)
            rows.append((case, busy, default, one, default / one, max(others, 0.0)))
            tail = (
                f"; 90th percentile of a call: default {fmt(tails[False])}, one thread "
                f"{fmt(tails[True])}"
                if case.startswith("small") or case == "topk"
                else ""
            )
            print(
                f"  {case}, {busy} busy: default {fmt(default_times)}, one thread "
                f"{fmt(one_times)}{tail}; other load {max(others, 0.0):.2f} cores",
                flush=True,
            )

    print()
    header = (
        f"{'case':<18}{'busy':>6}{'default s':>12}{'1 thread s':>12}"
        f"{'default/1':>11}{'other load':>12}"
    )
    print(header)
    print("-" * len(header))
    for case, busy, default, one, ratio, others in rows:
        print(f"{case:<18}{busy:>6}{default:>12.3g}{one:>12.3g}{ratio:>11.2f}{others:>12.2f}")
    print(
        "\n'other load': cores kept busy by processes other than this benchmark's runs and "
        "spinners, on average over the block"
    )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


def fmt(times: list[float]) -> str:
    return "[" + ", ".join(f"{t:.3g}" for t in times) + "]"


if __name__ == "__main__":
    main()
