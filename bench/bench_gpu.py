"""The CUDA backend at target scale, next to the device's copy bandwidth, torch and the CPU backend.

    python bench/bench_gpu.py            # n=200,000, d=1,024, P=100,000,000, k=1,000 (+ the rest)
    python bench/bench_gpu.py --quick    # only the size both backends run
    python bench/bench_gpu.py --json results.json   # also every printed row, as JSON

Selection times go through activerm_fast.greedy_logdet (median of --repeats runs after a warm-up,
torch.cuda.synchronize() around each). Its parts are then timed on the extension directly with
CUDA events: the starting scores (pair_quadform) and the greedy loop, whose per-step time is
(loop(k) - loop(1)) / (k - 1). A step must move the pairs, w and q (read and written) in the
sweep, the features in v = Phi u and F^-1 three times; bytes / step time is compared with a
device-to-device copy measured in the same process. Pairs are generated on the GPU.

Then, in order of what they tell: each kernel's device time per step over --profile-steps
steps at target scale (torch.profiler, which records every kernel of the process: a profile
without Nsight); ``select("dopt-greedy")`` on the same pool with a per-prompt quota (at most
one pair per prompt, the quota checked in the sweep) beside the same call without one; the
target rows again at P = --huge-pairs (10^9) with k = --huge-k, if the device memory a
selection took per pair at target scale says the pool fits (the output gives the largest P the
card holds either way); the greedy a torch user would write (baselines.torch_rank_one_greedy:
materialised float32 differences, O(P d) per step) at the largest pool whose differences fit
in half the free memory, beside this engine on the same pool; the ensemble step (E = 3) beside
the single-model step; and the CPU backend at a size both run. A section that fails prints its
traceback and leaves the others their run; --json is rewritten after every section.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

import baselines
import numpy as np
import torch

import activerm_fast as arm
from activerm_fast.testing import launch as _launch

RESPONSES_PER_PROMPT = 4
RIDGE = 1e-3
RESULTS: dict[str, dict[str, str]] = {}  # every printed table, for --json


def require_gpu(script: str) -> None:
    """Exit with one line saying why when the CUDA backend cannot run here."""
    info = arm.build_info()
    if info["gpu_usable"]:
        return
    if not info["cuda_built"]:
        why = "this build of activerm_fast has no CUDA backend (ACTIVERM_FAST_CUDA=ON builds it)"
    elif not torch.cuda.is_available():
        why = f"torch {torch.__version__} sees no CUDA device"
    else:
        why = "the CUDA backend cannot run on this device"
    raise SystemExit(f"{script} needs the CUDA backend and a GPU: {why}")


def synchronized_time(fn: Callable[[], object], repeats: int, *, warm_up: bool = True) -> float:
    """Median wall time of fn() (after one untimed call unless ``warm_up`` is False), the
    device idle before and after."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def event_time(fn: Callable[[], object], prepare: Callable[[], object], repeats: int) -> float:
    """Median device time of fn() between two CUDA events, prepare() run outside the timing:
    of ``repeats`` runs after a warm-up, or of one run when ``repeats`` is 0."""
    times = []
    for _ in range(repeats + 1):
        prepare()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times[1:] or times)


def copy_bandwidth(nbytes: int) -> float:
    """GB/s of a device-to-device copy, counting the bytes read and written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    seconds = synchronized_time(lambda: dst.copy_(src), 5)
    return 2 * nbytes / seconds / 1e9


def cross_prompt_pairs(
    n: int, count: int, generator: torch.Generator, chunk: int = 1 << 26
) -> torch.Tensor:
    """(count, 2) int32 distinct unordered pairs of responses to different prompts, in random
    order and orientation (prompts of RESPONSES_PER_PROMPT consecutive responses). Drawn and
    decoded ``chunk`` pairs at a time, so that at P = 10^9 the temporaries beside the keys
    stay small. On the generator's device."""
    prompts = n // RESPONSES_PER_PROMPT
    responses = prompts * RESPONSES_PER_PROMPT
    # a little over: repeats are dropped; D uniform draws of N possible pairs give
    # N (1 - exp(-D / N)) distinct ones on average
    possible = responses * (responses - RESPONSES_PER_PROMPT) // 2
    if count >= possible:
        raise ValueError(f"{count:,} pairs wanted, {possible:,} cross-prompt pairs exist")
    draws = int(-1.02 * possible * math.log1p(-count / possible)) + 1024
    options = {"device": generator.device, "generator": generator}
    keys = torch.empty(draws, dtype=torch.int64, device=generator.device)
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        i = torch.randint(0, responses, (size,), **options)
        other = i // RESPONSES_PER_PROMPT + torch.randint(1, prompts, (size,), **options)
        other %= prompts
        j = other * RESPONSES_PER_PROMPT
        j += torch.randint(0, RESPONSES_PER_PROMPT, (size,), **options)
        keys[start : start + size] = torch.minimum(i, j) * n + torch.maximum(i, j)
        del i, j, other
    keys = torch.unique(keys)
    if keys.numel() < count:
        raise RuntimeError(f"only {keys.numel():,} distinct pairs drawn, {count:,} needed")
    keys = keys[torch.randperm(keys.numel(), **options)[:count]]
    pairs = torch.empty((count, 2), dtype=torch.int32, device=generator.device)
    for start in range(0, count, chunk):
        part = keys[start : start + chunk]
        lo, hi = part // n, part % n
        flip = torch.rand(part.numel(), **options) < 0.5
        pairs[start : start + part.numel(), 0] = torch.where(flip, hi, lo)
        pairs[start : start + part.numel(), 1] = torch.where(flip, lo, hi)
    return pairs


def make_problem(n: int, d: int, count: int, seed: int):
    """float32 features, int32 cross-prompt pairs, their Fisher weights and the (n,) rewards
    behind them, made on the GPU."""
    generator = torch.Generator(device="cuda").manual_seed(seed)
    features = torch.randn((n, d), device="cuda", generator=generator)
    pairs = cross_prompt_pairs(n, count, generator)
    rewards = torch.randn(n, dtype=torch.float64, device="cuda", generator=generator)
    return features, pairs, arm.fisher_weights(rewards, pairs), rewards


def step_bytes(n: int, d: int, count: int, feature_bytes: int, index_bytes: int) -> int:
    sweep = count * (2 * index_bytes + 8 + 8 + 8)  # pair; w; q read and written
    projection = n * d * feature_bytes + 8 * n  # Phi read, v written
    factor = 4 * 8 * d * d  # read for f = S^T d* and u = S f, read and written by the update
    return sweep + projection + factor


def raw_parts(features, pairs, weights, k: int, ridge: float, repeats: int) -> dict[str, Any]:
    """The starting scores and the greedy loop timed on the launch layer (below validation)."""
    d = features.shape[1]
    start_factor = (torch.eye(d, dtype=torch.float64, device=features.device) / ridge**0.5)[None]
    start_scores = _launch.pair_quadform(features, pairs, None, 1.0 / ridge)[:, None].contiguous()
    scores = torch.empty_like(start_scores)
    factor = torch.empty_like(start_factor)
    engine = _launch.GreedyEngine(
        features[None],
        pairs,
        weights[:, None].contiguous(),
        scores=scores,
        factor=factor,
        feature_scale=1.0,
    )
    outputs = {}

    def quadforms() -> None:
        _launch.pair_quadform(features, pairs, None, 1.0 / ridge)

    def reset() -> None:
        scores.copy_(start_scores)
        factor.copy_(start_factor)

    def loop(steps: int) -> Callable[[], None]:
        def run() -> None:
            outputs["chosen"], outputs["gains"] = engine.run(steps)

        return run

    scores_time = event_time(quadforms, lambda: None, repeats)
    one = event_time(loop(1), reset, repeats)
    full = event_time(loop(k), reset, max(1, repeats - 1) if repeats else 0)
    return {
        "scores": scores_time,
        "loop": full,
        "step": (full - one) / (k - 1),
        "chosen": outputs["chosen"],
        "run": loop,
        "reset": reset,
    }


def kernel_name(signature: str, width: int = 60) -> str:
    """A kernel's name from its demangled signature, without namespaces of this package or
    arguments: "void activerm::(anonymous namespace)::sweep_kernel<true, true, true, int>(int
    const*, ...)" -> "sweep_kernel<true, true, true, int>"."""
    name = re.sub(r"^void |\(anonymous namespace\)::", "", signature).split("(")[0].strip()
    name = name.removeprefix("activerm::")
    return name if len(name) <= width else name[: width - 3] + "..."


def kernel_times(run: Callable[[], None], reset: Callable[[], None], steps: int) -> list:
    """(kernel, device seconds per step, launches per step) of every kernel of ``run`` (steps
    greedy steps), largest first, from torch.profiler's record of the process's kernels."""
    from torch.profiler import ProfilerActivity, profile

    reset()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    rows = []
    for event in prof.key_averages():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        name = kernel_name(event.key)
        # self_device_time_total since torch 2.4 (self_cuda_time_total before), in microseconds
        micros = getattr(event, "self_device_time_total", None)
        if micros is None:
            micros = event.self_cuda_time_total
        rows.append((name, micros / 1e6 / steps, event.count / steps))
    return sorted(rows, key=lambda row: -row[1])


def print_rows(title: str, rows: list[tuple[str, str]]) -> None:
    width = max((len(name) for name, _ in rows), default=0)  # a profile may record no kernel
    print(f"\n{title}", flush=True)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>14}", flush=True)
    RESULTS[title] = dict(rows)


def greedy_rows(problem, k: int, copy: float, made: float, repeats: int) -> dict[str, Any]:
    """greedy_logdet on ``problem`` and its parts timed and printed: the median of ``repeats``
    runs after a warm-up, or (``repeats`` = 0, a pool too large to run twice) one run of each.
    Returns the parts (for the profile) and the device memory one selection added per pair."""
    features, pairs, weights, _ = problem
    (n, d), count = features.shape, pairs.shape[0]
    outcome = {}

    def select() -> None:
        outcome["selection"] = arm.greedy_logdet(
            features, pairs, k, weights=weights, prior=RIDGE, lazy=False
        )

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    held = torch.cuda.memory_allocated()
    total = synchronized_time(select, max(repeats, 1), warm_up=repeats > 0)
    added = torch.cuda.max_memory_allocated() - held
    parts = raw_parts(features, pairs, weights, k, RIDGE, repeats)
    moved = step_bytes(n, d, count, features.element_size(), pairs.element_size())
    achieved = moved / parts["step"] / 1e9
    same = torch.equal(outcome["selection"].indices, parts["chosen"])
    timing = f"median of {repeats}" if repeats else "one run"
    rows = [
        (f"greedy_logdet, whole selection ({timing})", f"{total:.3f} s"),
        ("  starting scores (pair_quadform)", f"{parts['scores']:.3f} s"),
        ("  greedy loop, k steps", f"{parts['loop']:.3f} s"),
        (
            "  validation and the rest of the wrapper",
            f"{total - parts['scores'] - parts['loop']:.3f} s",
        ),
        ("one greedy step", f"{parts['step'] * 1e3:.3f} ms"),
        ("bytes one step must move", f"{moved / 1e9:.3f} GB"),
        ("achieved bandwidth of a step", f"{achieved:.0f} GB/s"),
        ("device-to-device copy (read + write)", f"{copy:.0f} GB/s"),
        ("step bandwidth / copy bandwidth", f"{achieved / copy:.2f}"),
        (
            "device memory a selection adds (peak)",
            f"{added / 2**30:.1f} GiB, {added / count:.1f} B/pair",
        ),
        ("wrapper picks = extension picks", str(same)),
    ]
    if repeats:  # the targets, at target scale
        rows[-1:-1] = [
            ("target: selection under 2 s", "met" if total < 2.0 else "NOT met"),
            ("target: step at >= 60% of the copy", "met" if achieved >= 0.6 * copy else "NOT met"),
        ]
    print_rows(
        f"greedy engine: n = {n:,}, d = {d:,}, P = {count:,} cross-prompt pairs (int32), "
        f"k = {k:,}, float32 features (made on the GPU in {made:.1f} s)",
        rows,
    )
    return {**parts, "bytes_per_pair": added / count}


def made_problem(n: int, d: int, count: int, seed: int):
    """make_problem and the seconds it took."""
    start = time.perf_counter()
    problem = make_problem(n, d, count, seed)
    torch.cuda.synchronize()
    return problem, time.perf_counter() - start


def target_scale(args, copy: float, state: dict[str, Any]) -> None:
    """The issue's size: the selection, its parts and each kernel's time per step. The problem
    and the memory a selection took per pair stay in ``state`` for the sections after it."""
    problem, made = made_problem(args.responses, args.dim, args.pairs, seed=0)
    state["problem"] = problem
    parts = greedy_rows(problem, args.k, copy, made, args.repeats)
    state["bytes_per_pair"] = parts["bytes_per_pair"]
    steps = args.profile_steps
    kernels = kernel_times(parts["run"](steps), parts["reset"], steps)
    print_rows(
        f"kernels of one step at target scale (torch.profiler over {steps} steps; device time per "
        "step, launches per step)",
        [(name, f"{seconds * 1e3:.4f} ms x{launches:g}") for name, seconds, launches in kernels],
    )


def per_prompt_quota(args, state: dict[str, Any]) -> None:
    """select("dopt-greedy") on the target pool with at most one chosen pair per prompt (the
    quota checked in the CUDA sweep) beside the same call without a quota, one run each (the
    kernels are warm from the target rows)."""
    features, pairs, _, rewards = state.pop("problem")  # freed when this section ends
    n, k = features.shape[0], args.k
    prompt_ids = np.arange(n) // RESPONSES_PER_PROMPT

    def timed_select(**quota: Any) -> tuple[float, Any]:
        outcome = {}

        def call() -> None:
            outcome["selection"] = arm.select(
                "dopt-greedy", features=features, pairs=pairs, k=k, rewards=rewards, **quota
            )

        return synchronized_time(call, 1, warm_up=False), outcome["selection"]

    plain_s, plain = timed_select()
    quota_s, quoted = timed_select(per_prompt=1, prompt_ids=prompt_ids)
    prompts = pairs[quoted.indices.long()].long() // RESPONSES_PER_PROMPT
    most = int(torch.bincount(prompts.flatten(), minlength=n // RESPONSES_PER_PROMPT).max())
    kept = len(set(quoted.indices.tolist()) & set(plain.indices.tolist()))
    print_rows(
        f"per-prompt quota: select dopt-greedy on the target pool (P = {pairs.shape[0]:,}, "
        f"k = {k:,}), one run each",
        [
            ("no quota, whole selection", f"{plain_s:.3f} s"),
            ("per_prompt=1, whole selection", f"{quota_s:.3f} s"),
            ("with quota / without", f"{quota_s / plain_s:.2f}x"),
            ("most chosen pairs touching one prompt", f"{most} (quota 1)"),
            ("picks shared with the unconstrained selection", f"{kept:,} of {k:,}"),
        ],
    )


def huge_scale(args, copy: float, state: dict[str, Any]) -> None:
    """The greedy rows at P = --huge-pairs stored pairs, if the card holds them: the pool's 16
    bytes a pair (int32 pairs, float64 weights), what a selection added per pair at target
    scale and the timed parts' two score arrays (16 bytes)."""
    n, d, count, k = args.responses, args.dim, args.huge_pairs, args.huge_k
    free, total = torch.cuda.mem_get_info()
    per_pair = 16 + state["bytes_per_pair"] + 16
    fits = int((free - n * d * 4 - (1 << 30)) / per_pair)
    bound = (
        f"{free / 2**30:.0f} GiB free of {total / 2**30:.0f} GiB at {per_pair:.0f} B/pair "
        f"(the pool's 16, a selection's {state['bytes_per_pair']:.1f} at target scale, the "
        f"timed parts' 16): up to P = {fits:,} stored pairs"
    )
    print(f"\nmemory bound of this card for the greedy engine: {bound}", flush=True)
    RESULTS["memory bound"] = {"stored pairs": bound}
    if count > fits:
        print(f"P = {count:,}: not run, it does not fit", flush=True)
        return
    problem, made = made_problem(n, d, count, seed=4)
    greedy_rows(problem, k, copy, made, 0)


def against_torch(args) -> None:
    """The torch greedy over materialised differences at the largest pool they fit, beside this
    engine on the same pool."""
    n, d, ridge = args.responses, args.dim, RIDGE
    free, _ = torch.cuda.mem_get_info()
    # half the free memory for the (P, d) float32 differences; pairs, weights and scores beside
    count = min(args.pairs, int(0.5 * free) // (4 * d + 64) // 1_000_000 * 1_000_000)
    features, pairs, weights, _ = make_problem(n, d, count, seed=2)
    steps = args.baseline_steps
    parts = raw_parts(features, pairs, weights, max(steps + 1, 100), ridge, 1)
    chosen, times = baselines.torch_rank_one_greedy(features, pairs, weights, ridge, steps)
    base_step = statistics.median(times[1:])  # the first step's launches warm up
    ours = [int(i) for i in parts["chosen"][:steps]]
    print_rows(
        f"against torch at the largest pool its differences fit: n = {n:,}, d = {d:,}, "
        f"P = {count:,} ({count * d * 4 / 1e9:.1f} GB of float32 differences)",
        [
            ("torch step, materialised (P, d) float32", f"{base_step * 1e3:.2f} ms"),
            ("activerm_fast step, same pool", f"{parts['step'] * 1e3:.3f} ms"),
            ("torch step / activerm_fast step", f"{base_step / parts['step']:.1f}x"),
            (
                f"torch differences at P = {args.pairs:,}",
                f"{args.pairs * d * 4 / 1e9:,.0f} GB",
            ),
            (f"torch picks = activerm_fast picks ({steps} steps)", str(chosen == ours)),
        ],
    )


def ensemble_step(args) -> None:
    """The multi-member engine (ensemble-dopt-greedy, E members) beside the single-model step."""
    n, d, count, members, k = 20_000, 256, 2_000_000, 3, 200
    generator = torch.Generator(device="cuda").manual_seed(3)
    member_features = torch.randn((members, n, d), device="cuda", generator=generator)
    member_rewards = torch.randn(
        (members, n), dtype=torch.float64, device="cuda", generator=generator
    )
    pairs = cross_prompt_pairs(n, count, generator)

    def step(strategy: str, features: torch.Tensor, rewards: torch.Tensor) -> float:
        def run(steps: int) -> Callable[[], object]:
            return lambda: arm.select(
                strategy, features=features, pairs=pairs, k=steps, rewards=rewards, lazy=False
            )

        return (synchronized_time(run(k), args.repeats) - synchronized_time(run(1), 5)) / (k - 1)

    single = step("dopt-greedy", member_features[0], member_rewards[0])
    ensemble = step("ensemble-dopt-greedy", member_features, member_rewards)
    print_rows(
        f"ensemble: n = {n:,}, d = {d}, P = {count:,}, E = {members}, k = {k}",
        [
            ("single model: one greedy step (E = 1)", f"{single * 1e3:.3f} ms"),
            (f"ensemble-dopt-greedy: one step (E = {members})", f"{ensemble * 1e3:.3f} ms"),
            ("E-member step / single step", f"{ensemble / single:.2f}x"),
        ],
    )


def against_cpu(args) -> None:
    n, d, count, k, ridge = 20_000, 256, 2_000_000, 100, RIDGE
    features, pairs, weights, _ = make_problem(n, d, count, seed=1)
    host = [t.cpu() for t in (features, pairs, weights)]

    def select(f, p, w):
        return arm.greedy_logdet(f, p, k, weights=w, prior=ridge, lazy=False)

    gpu = synchronized_time(lambda: select(features, pairs, weights), max(args.repeats, 5))
    cpu = synchronized_time(lambda: select(*host), args.repeats)
    same = torch.equal(select(features, pairs, weights).indices.cpu(), select(*host).indices)
    moved = step_bytes(n, d, count, 4, 4)
    print_rows(
        f"against the CPU backend ({arm.build_info()['openmp_threads']} OpenMP threads): "
        f"n = {n:,}, d = {d}, P = {count:,}, k = {k}",
        [
            ("CPU backend, whole selection", f"{cpu:.3f} s"),
            ("CUDA backend, whole selection", f"{gpu:.4f} s"),
            ("speed-up CUDA / CPU", f"{cpu / gpu:.1f}x"),
            ("bytes one step must move", f"{moved / 1e6:.0f} MB"),
            ("identical selections", str(same)),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--pairs", type=int, default=100_000_000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile-steps", type=int, default=20, help="steps the profile covers")
    parser.add_argument(
        "--huge-pairs", type=int, default=1_000_000_000, help="the second pool; 0: not run"
    )
    parser.add_argument("--huge-k", type=int, default=100, help="steps at --huge-pairs")
    parser.add_argument("--baseline-steps", type=int, default=6, help="steps of the torch greedy")
    parser.add_argument("--quick", action="store_true", help="only the CPU comparison size")
    parser.add_argument("--json", help="also write every printed row to this file")
    args = parser.parse_args()
    if min(args.k, args.huge_k) < 2 or args.repeats < 1:
        parser.error("--k and --huge-k must be at least 2 and --repeats at least 1")
    require_gpu("bench_gpu.py")

    from activerm_fast.testing import cuda as _cuda  # None without the CUDA backend

    props = torch.cuda.get_device_properties(0)
    device = (
        f"{props.name}: {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB, "
        f"L2 {props.L2_cache_size / 2**20:.0f} MiB; CUDA runtime {_cuda.runtime_version()}, "
        f"driver {_cuda.driver_version()}; torch {torch.__version__}; {_cuda.compiler}"
    )
    print(device, flush=True)
    copy = copy_bandwidth(1 << 31)
    state: dict[str, Any] = {}
    sections: list[tuple[str, Callable[[], None]]] = [("CPU", lambda: against_cpu(args))]
    if not args.quick:
        sections[:0] = [
            ("target scale", lambda: target_scale(args, copy, state)),
            ("per-prompt quota", lambda: per_prompt_quota(args, state)),
            ("huge pool", lambda: huge_scale(args, copy, state)),
            ("torch", lambda: against_torch(args)),
            ("ensemble", lambda: ensemble_step(args)),
        ]
        if args.huge_pairs == 0:
            del sections[2]
    failed = []
    for name, section in sections:
        # a device is lent briefly: a section that fails leaves the others their run
        try:
            section()
        except Exception:
            traceback.print_exc()
            failed.append(name)
        torch.cuda.empty_cache()
        if args.json:  # after every section, so a later failure keeps what was measured
            with open(args.json, "w") as f:
                json.dump({"device": device, "copy_gb_s": copy, "tables": RESULTS}, f, indent=1)
    if failed:
        raise SystemExit(f"{len(failed)} of {len(sections)} sections failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
