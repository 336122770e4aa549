"""Greedy log-det selection at pool scale, against a NumPy baseline, in one process.

    python bench/bench_greedy.py            # n=20,000, d=256, P=2,000,000, k=500, E=3
    python bench/bench_greedy.py --quick    # a small size, to check the script runs
    python bench/bench_greedy.py --small    # small problems against submodlib and the paper

The baseline keeps every pair's score current by rank-one updates over the materialised (P, d)
float32 differences: O(P d) per step. At full size a whole baseline run takes minutes, so it is
timed for --baseline-steps steps and its per-step median is compared with the kernel's.

It times the dense sweep (``lazy=False``), whose bytes per step it counts; bench_lazy.py
compares the lazy sweep with it. The next table runs the multi-member engine
(``ensemble-dopt-greedy``: E members, each with its own features, Fisher weights and factor,
one sweep over the pairs per step) beside the single-model step, in the same process. The last
times the design without weights (``xtx``; every weight 1, read from no array) against the same
selection given a stored array of ones, alternating.

``--small`` times small problems, where per-call and per-step overhead would show: the whole
``greedy_logdet`` at n = 2,000, d = 64, P = 5,000, k = 100 against submodlib's NaiveGreedy and
LazyGreedy on the same objective (bench/baselines.py; its (P, P) kernel and objective built once,
untimed, and, as a selection from a fresh pool needs them, LazyGreedy once more with both built
in the call), and the compiled engine's k steps alone (problem and engine set up untimed),
timed alternately with the whole call (the difference is the call's checks and set-up),
and ``select("dopt-topk")`` at n = 4,000, d = 128, P = 20,000, k = 200 (the first k pairs
labelled, rewards of 3 members) against the paper's one-shot rule on (P, d, d) information
matrices, and the same selection with one torch thread throughout (a small selection runs its
passes on one thread and gives its one-shot kernels the free cores: the ratio is what that
team saves). Medians over --repeats turns, the implementations alternating (a fast one timed 3 to
10 times a turn, so that its first run after a baseline's gigabytes is not its median), with the
fastest and slowest run of each (a baseline's own time moves between runs, and the ratio with
it); the picks are compared.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

import activerm_fast as arm

SMALL_GREEDY = (2_000, 64, 5_000, 100)  # n, d, P, k
SMALL_TOPK = (4_000, 128, 20_000, 200)


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """The largest resident set above the start, sampled every 5 ms on a thread."""

    def __init__(self) -> None:
        self.start = current_rss_bytes()
        self.peak = self.start
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, current_rss_bytes())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_bytes())

    @property
    def added(self) -> int:
        return self.peak - self.start


def build_line(*more: str) -> str:
    """A saved run's first line: the package build (and ``more`` of the set-up) and the load
    average the run starts at."""
    info = arm.build_info()
    parts = [info["version"], info["compiler"], f"{info['openmp_threads']} OpenMP threads", *more]
    return f"activerm_fast {', '.join(parts)}; load average {os.getloadavg()[0]:.2f} at the start"


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def copy_bandwidth(nbytes: int, repeats: int) -> float:
    """GB/s of a large NumPy copy, counting the bytes read and written."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - start)
    return 2 * src.nbytes / statistics.median(times) / 1e9


def baseline_steps(diffs: np.ndarray, weights: np.ndarray, ridge: float, steps: int):
    """Greedy over materialised differences: the O(P d) per-step update the kernel avoids."""
    d = diffs.shape[1]
    inverse = np.eye(d) / ridge
    q = np.einsum("pi,pi->p", diffs, diffs, dtype=np.float64) / ridge
    chosen, times = [], []
    for _ in range(steps):
        start = time.perf_counter()
        best = int(np.nanargmax(weights * q))
        row = diffs[best].astype(np.float64)
        u = inverse @ row
        q_star = row @ u
        c = weights[best] / (1.0 + weights[best] * q_star)
        projection = diffs @ u.astype(np.float32)
        q -= c * projection.astype(np.float64) ** 2
        q[best] = np.nan
        inverse -= c * np.outer(u, u)
        times.append(time.perf_counter() - start)
        chosen.append(best)
    return chosen, times


def pool_inputs(
    n: int, d: int, count: int
) -> tuple[np.random.Generator, np.ndarray, np.ndarray, np.ndarray]:
    """The benchmark's problem: n float32 features of N(0, 1) (10 responses per prompt), count
    int32 cross-prompt pairs, float64 Fisher weights of N(0, 1) rewards; and the generator, to
    draw more from."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n, d)).astype(np.float32)
    pairs = arm.pairs.cross_prompt(np.arange(n) // 10, count, seed=0).astype(np.int32)
    weights = arm.fisher_weights(rng.normal(size=n), pairs).astype(np.float64)
    return rng, features, pairs, weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=2_000_000)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-steps", type=int, default=8)
    parser.add_argument("--members", type=int, default=3, help="ensemble members E")
    parser.add_argument("--member-k", type=int, default=100, help="steps of the E-member run")
    parser.add_argument("--quick", action="store_true", help="n=2,000, d=64, P=100,000, k=50")
    parser.add_argument("--small", action="store_true", help="small problems (see above)")
    args = parser.parse_args()
    if args.small:
        small_problems(args.repeats)
        return
    if args.quick:
        args.responses, args.dim, args.pairs, args.k = 2_000, 64, 100_000, 50
        args.member_k = 20

    n, d, count, k, ridge = args.responses, args.dim, args.pairs, args.k, 1e-3
    rng, features, pairs, weights = pool_inputs(n, d, count)
    print(build_line())
    print(
        f"n = {n:,} responses, d = {d}, P = {count:,} cross-prompt pairs, k = {k}, float32 features"
    )

    rss_before = current_rss_bytes()
    arm.greedy_logdet(features, pairs, 1, weights=weights, prior=ridge, lazy=False)  # warm-up
    setup = statistics.median(
        _timed(
            lambda: arm.greedy_logdet(features, pairs, 1, weights=weights, prior=ridge, lazy=False)
        )
        for _ in range(args.repeats)
    )
    runs = [
        _timed(
            lambda: arm.greedy_logdet(features, pairs, k, weights=weights, prior=ridge, lazy=False)
        )
        for _ in range(args.repeats)
    ]
    total = statistics.median(runs)
    selection = arm.greedy_logdet(features, pairs, k, weights=weights, prior=ridge, lazy=False)
    kernel_peak = peak_rss_bytes() - rss_before
    step = (total - setup) / (k - 1)

    step_bytes = bytes_per_step(n, d, count, 1)
    copy = copy_bandwidth(max(4 * step_bytes, 1 << 28), 5)

    diffs = arm.pair_diff(features, pairs)
    chosen, base_times = baseline_steps(diffs, weights, ridge, args.baseline_steps)
    base_step = statistics.median(base_times)
    agree = chosen == selection.indices[: len(chosen)].tolist()

    rows = [
        ("greedy_logdet, whole selection (median)", f"{total:.3f} s"),
        ("  set-up: validation + initial scores", f"{setup:.3f} s"),
        ("  one greedy step", f"{step * 1e3:.2f} ms"),
        ("bytes one step must move", f"{step_bytes / 1e6:.1f} MB"),
        ("achieved bandwidth of a step", f"{step_bytes / step / 1e9:.2f} GB/s"),
        ("NumPy copy bandwidth (read + write)", f"{copy:.2f} GB/s"),
        ("step bandwidth / copy bandwidth", f"{step_bytes / step / 1e9 / copy:.2f}"),
        ("NumPy baseline step, materialised (P, d) float32", f"{base_step * 1e3:.1f} ms"),
        ("baseline step / kernel step", f"{base_step / step:.1f}x"),
        ("baseline whole selection (extrapolated)", f"{base_step * k:.1f} s"),
        ("baseline picks = kernel picks (first steps)", str(agree)),
        ("peak memory added by greedy_logdet", f"{kernel_peak / 1e6:.0f} MB"),
        ("(P, d) float32 differences it never builds", f"{diffs.nbytes / 1e6:.0f} MB"),
    ]
    print_rows(rows)

    members = args.members
    member_features = rng.normal(size=(members, n, d)).astype(np.float32)
    member_rewards = rng.normal(size=(members, n))

    def ensemble(steps: int) -> float:
        return _timed(
            lambda: arm.select(
                "ensemble-dopt-greedy",
                features=member_features,
                pairs=pairs,
                k=steps,
                rewards=member_rewards,
                ridge=ridge,
                lazy=False,
            )
        )

    ensemble(1)  # warm-up
    member_setup = statistics.median(ensemble(1) for _ in range(args.repeats))
    member_total = statistics.median(ensemble(args.member_k) for _ in range(args.repeats))
    member_step = (member_total - member_setup) / (args.member_k - 1)
    member_bytes = bytes_per_step(n, d, count, members)
    print_rows(
        [
            ("single model: one greedy step (E = 1)", f"{step * 1e3:.2f} ms"),
            (f"ensemble-dopt-greedy: one step (E = {members})", f"{member_step * 1e3:.2f} ms"),
            ("E-member step / single step", f"{member_step / step:.2f}x"),
            ("bytes one E-member step must move", f"{member_bytes / 1e6:.1f} MB"),
            ("E-member bytes / single-model bytes", f"{member_bytes / step_bytes:.2f}x"),
            (
                "achieved bandwidth of an E-member step",
                f"{member_bytes / member_step / 1e9:.2f} GB/s",
            ),
        ]
    )
    unweighted_rows(features, pairs, k, ridge, args.repeats)


def unweighted_rows(features: np.ndarray, pairs: np.ndarray, k: int, ridge: float,
                    repeats: int) -> None:  # fmt: skip
    """The design without weights (xtx, greedy_logdet without weights: every weight 1, read
    from no array) against the same selection given a stored array of ones, alternating."""
    ones = np.ones(len(pairs))

    def whole(steps: int, weights: np.ndarray | None) -> arm.Selection:
        return arm.greedy_logdet(features, pairs, steps, weights=weights, prior=ridge, lazy=False)

    runs = {
        f"{name} {steps}": (lambda steps=steps, w=w: whole(steps, w))
        for name, w in (("none", None), ("ones", ones))
        for steps in (1, k)
    }
    medians = alternating_medians(runs, repeats)
    step = {w: (medians[f"{w} {k}"] - medians[f"{w} 1"]) / (k - 1) for w in ("none", "ones")}
    unit, stored = whole(k, None), whole(k, ones)
    same = np.array_equal(unit.indices, stored.indices)
    same = same and unit.gains.tobytes() == stored.gains.tobytes()
    n, d = features.shape
    unit_bytes = bytes_per_step(n, d, len(pairs), 1, weighted=False)
    print_rows(
        [
            ("no weights (every weight 1): one greedy step", f"{step['none'] * 1e3:.2f} ms"),
            ("stored array of ones: one greedy step", f"{step['ones'] * 1e3:.2f} ms"),
            ("stored ones step / no-weights step", f"{step['ones'] / step['none']:.2f}x"),
            ("bytes one no-weights step must move", f"{unit_bytes / 1e6:.1f} MB"),
            ("the array of ones it does not hold", f"{ones.nbytes / 1e6:.0f} MB"),
            ("same picks and gains, bit for bit", str(same)),
        ]
    )  # fmt: skip


def alternating_medians(runs: dict[str, object], repeats: int) -> dict[str, float]:
    """Median seconds of each callable in ``runs`` (:func:`alternating_times`)."""
    return medians_of(alternating_times(runs, repeats))


def medians_of(times: dict[str, list[float]]) -> dict[str, float]:
    """The median of each name's runs in ``times``."""
    return {name: statistics.median(spent) for name, spent in times.items()}


def alternating_times(runs: dict[str, object], repeats: int) -> dict[str, list[float]]:
    """Every timed run's seconds of each callable in ``runs``, the runs alternating after one
    warm-up. In each turn a callable is timed again while its turn has taken under a tenth of
    a second, or while it has fewer than three runs of under a second each (at most 10 times):
    the first run of a fast callable right after a baseline that filled and freed gigabytes
    pays for the memory coming back, and as one sample of three or more it does not set the
    median, while a baseline of seconds still runs once a turn."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            turn: list[float] = []
            while not turn or (
                len(turn) < 10 and (sum(turn) < 0.1 or (len(turn) < 3 and max(turn) < 1.0))
            ):
                turn.append(_timed(run))
            times[name].extend(turn)
    return times


def small_problems(repeats: int) -> None:
    """greedy_logdet against submodlib and select("dopt-topk") against the paper's rule."""
    import baselines

    ridge = 1e-3
    info = arm.build_info()
    print(
        f"activerm_fast {info['version']}, {info['openmp_threads']} OpenMP threads, "
        f"{'AVX-512' if info['avx512_kernels'] else 'two-lane'} vectors; medians over "
        f"{repeats} turns, alternating (a fast one 3 to 10 times a turn); load average "
        f"{os.getloadavg()[0]:.2f} at the start"
    )
    n, d, count, k = SMALL_GREEDY
    _, features, pairs, weights = pool_inputs(n, d, count)
    runs = {
        "activerm_fast greedy_logdet": lambda: arm.greedy_logdet(
            features, pairs, k, weights=weights, prior=ridge
        )
    }
    picks = {"activerm_fast greedy_logdet": arm.greedy_logdet(
        features, pairs, k, weights=weights, prior=ridge).indices.tolist()}  # fmt: skip
    try:
        objective = baselines.submodlib_objective(features, pairs, weights, ridge)
    except ImportError:
        print("submodlib is not installed (pip install submodlib-py): its rows are left out")
    else:
        for optimizer in ("NaiveGreedy", "LazyGreedy"):
            name = f"submodlib {optimizer}"
            runs[name] = lambda o=optimizer: baselines.submodlib_greedy(objective, k, o)
            picks[name] = baselines.submodlib_greedy(objective, k, optimizer)

        # what a selection from a fresh pool costs with submodlib: its kernel and objective too
        def from_features() -> list[int]:
            built = baselines.submodlib_objective(features, pairs, weights, ridge)
            return baselines.submodlib_greedy(built, k, "LazyGreedy")

        runs["submodlib LazyGreedy, kernel built"] = from_features
        picks["submodlib LazyGreedy, kernel built"] = from_features()
    times = alternating_times(runs, repeats)
    medians = medians_of(times)
    ours = medians["activerm_fast greedy_logdet"]
    print(f"\ngreedy log-det: n = {n:,}, d = {d}, P = {count:,}, k = {k}")
    for name, seconds in medians.items():
        same = set(picks[name]) == set(picks["activerm_fast greedy_logdet"])  # the same k pairs
        print(
            f"  {name:<36} {seconds * 1e3:>10.2f} ms  {seconds / ours:>8.0f}x  same picks: {same}"
            f"  (runs {min(times[name]) * 1e3:.2f} to {max(times[name]) * 1e3:.2f} ms)"
        )
    whole, steps = engine_steps(
        runs["activerm_fast greedy_logdet"], features, pairs, weights, ridge, k, repeats
    )
    print(f"  of which the compiled engine's {k} steps {steps * 1e3:.2f} ms "
          f"({steps / k * 1e6:.1f} us a step), the checks and set-up around them "
          f"{(whole - steps) * 1e3:.2f} ms (of {whole * 1e3:.2f} ms, the whole call timed "
          "alternately with the steps)")  # fmt: skip

    n, d, count, k = SMALL_TOPK
    rng, features, pairs, _ = pool_inputs(n, d, count)
    rewards = rng.normal(size=(3, n))
    candidates, labelled = pairs[k:], pairs[:k]

    def package() -> np.ndarray:
        chosen = arm.select("dopt-topk", features=features, pairs=candidates, labelled=labelled,
                            rewards=rewards, k=k, ridge=ridge)  # fmt: skip
        return np.asarray(chosen.indices)

    def paper() -> np.ndarray:
        return baselines.paper_one_shot(features, candidates, rewards, k, ridge)

    def one_thread() -> np.ndarray:
        """package() with one torch thread throughout: its kernels get no team either."""
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return package()
        finally:
            torch.set_num_threads(before)

    times = alternating_times({"activerm_fast dopt-topk": package, "paper's rule": paper,
                               "one thread": one_thread}, repeats)  # fmt: skip
    medians = medians_of(times)
    alone = medians.pop("one thread")
    same = set(package().tolist()) == set(paper().tolist())
    ours = medians["activerm_fast dopt-topk"]
    print(f"\nselect('dopt-topk'): n = {n:,}, d = {d}, P = {len(candidates):,}, k = {k}, "
          f"{len(labelled)} labelled, rewards of 3 members")  # fmt: skip
    for name, seconds in medians.items():
        print(f"  {name:<36} {seconds * 1e3:>10.2f} ms  {seconds / ours:>8.0f}x  (runs "
              f"{min(times[name]) * 1e3:.2f} to {max(times[name]) * 1e3:.2f} ms)")  # fmt: skip
    print(f"  the same top {k}: {same}")
    print(f"  with one torch thread throughout (no team for its kernels): {alone * 1e3:.2f} ms, "
          f"{alone / ours:.2f}x the default's time; the same picks: "
          f"{np.array_equal(one_thread(), package())}")  # fmt: skip
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


def engine_steps(
    whole_call: Callable[[], object], features: np.ndarray, pairs: np.ndarray,
    weights: np.ndarray, ridge: float, k: int, repeats: int,
) -> tuple[float, float]:  # fmt: skip
    """Median times of ``whole_call`` (greedy_logdet on these inputs) and of the compiled
    engine's k steps alone (its problem and engine set up untimed, afresh for each run: a run
    consumes its engine), the two alternating, so that their difference is the call's checks
    and set-up under the same conditions."""
    from activerm_fast import kernels
    from activerm_fast.selection import design
    from activerm_fast.testing import launch

    whole, spent = [], []
    for _ in range(10 * repeats):
        whole.append(_timed(whole_call))
        problem = kernels.greedy_problem(features, pairs, weights=weights, prior=ridge)
        engine, _ = design.greedy_engine(problem, steps=k)
        start = time.perf_counter()
        chosen, _ = engine.run(k)
        spent.append(time.perf_counter() - start)
        # a run that stopped to recompute its state (design._run) would have timed fewer steps
        assert not bool((chosen == launch.REFRESH_CHOICE).any()), "the run stopped early"
    return statistics.median(whole), statistics.median(spent)


def bytes_per_step(n: int, d: int, count: int, members: int, weighted: bool = True) -> int:
    """Bytes one greedy step must move: the sweep reads the pairs (int32) once and, per member,
    w (unless every weight is 1, read from no array) and q and writes q (float64); v = Phi u
    reads each member's float32 features; the factor S is read twice (f = S^T d*, u = S f) and
    read and written by its update."""
    sweep = count * (2 * 4 + members * ((8 if weighted else 0) + 8 + 8))
    return sweep + members * (n * d * 4 + 4 * d * d * 8)


def print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value:>12}")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
