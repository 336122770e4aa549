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

Then, for a profile without Nsight: each kernel's device time per step over --profile-steps
steps at target scale (torch.profiler, which records every kernel of the process); the greedy a
torch user would write (baselines.torch_rank_one_greedy: materialised float32 differences,
O(P d) per step) at the largest pool whose differences fit in half the free memory, beside this
engine on the same pool; the ensemble step (E = 3) beside the single-model step; and the CPU
backend at a size both run.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

import baselines
import torch

import activerm_fast as arm
from activerm_fast.testing import launch as _launch

RESPONSES_PER_PROMPT = 4
RIDGE = 1e-3
RESULTS: dict[str, dict[str, str]] = {}  # every printed table, for --json


def synchronized_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of fn() after one warm-up call, the device idle before and after."""
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
    """Median device time of fn() between two CUDA events, prepare() run outside the timing."""
    times = []
    for _ in range(repeats + 1):
        prepare()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times[1:])


def copy_bandwidth(nbytes: int) -> float:
    """GB/s of a device-to-device copy, counting the bytes read and written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    seconds = synchronized_time(lambda: dst.copy_(src), 5)
    return 2 * nbytes / seconds / 1e9


def cross_prompt_pairs(n: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """(count, 2) int32 distinct unordered pairs of responses to different prompts, in random
    order and orientation (prompts of RESPONSES_PER_PROMPT consecutive responses)."""
    prompts = n // RESPONSES_PER_PROMPT
    draws = count + count // 50 + 1024  # a little over: repeats are dropped
    options = {"device": "cuda", "generator": generator}
    i = torch.randint(0, prompts * RESPONSES_PER_PROMPT, (draws,), **options)
    other = (i // RESPONSES_PER_PROMPT + torch.randint(1, prompts, (draws,), **options)) % prompts
    j = other * RESPONSES_PER_PROMPT + torch.randint(0, RESPONSES_PER_PROMPT, (draws,), **options)
    keys = torch.unique(torch.minimum(i, j) * n + torch.maximum(i, j))
    del i, j, other
    if keys.numel() < count:
        raise RuntimeError(f"only {keys.numel():,} distinct pairs drawn, {count:,} needed")
    keys = keys[torch.randperm(keys.numel(), **options)[:count]]
    lo, hi = keys // n, keys % n
    flip = torch.rand(count, **options) < 0.5
    return torch.stack([torch.where(flip, hi, lo), torch.where(flip, lo, hi)], 1).to(torch.int32)


def make_problem(n: int, d: int, count: int, seed: int):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    features = torch.randn((n, d), device="cuda", generator=generator)
    pairs = cross_prompt_pairs(n, count, generator)
    rewards = torch.randn(n, dtype=torch.float64, device="cuda", generator=generator)
    return features, pairs, arm.fisher_weights(rewards, pairs)


def step_bytes(n: int, d: int, count: int, feature_bytes: int, index_bytes: int) -> int:
    sweep = count * (2 * index_bytes + 8 + 8 + 8)  # pair; w; q read and written
    projection = n * d * feature_bytes + 8 * n  # Phi read, v written
    factor = 4 * 8 * d * d  # read for f = S^T d* and u = S f, read and written by the update
    return sweep + projection + factor


def raw_parts(features, pairs, weights, k: int, ridge: float, repeats: int) -> dict[str, Any]:
    """The starting scores and the greedy loop timed on the launch layer (below validation)."""
    d = features.shape[1]
    start_factor = (torch.eye(d, dtype=torch.float64, device="cuda") / ridge**0.5)[None]
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
    full = event_time(loop(k), reset, max(1, repeats - 1))
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
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}", flush=True)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>14}", flush=True)
    RESULTS[title] = dict(rows)


def target_scale(args, copy: float) -> None:
    n, d, count, k, ridge = args.responses, args.dim, args.pairs, args.k, RIDGE
    start = time.perf_counter()
    features, pairs, weights = make_problem(n, d, count, seed=0)
    torch.cuda.synchronize()
    made = time.perf_counter() - start

    def select():
        return arm.greedy_logdet(features, pairs, k, weights=weights, prior=ridge, lazy=False)

    total = synchronized_time(select, args.repeats)
    selection = select()
    parts = raw_parts(features, pairs, weights, k, ridge, args.repeats)
    moved = step_bytes(n, d, count, features.element_size(), pairs.element_size())
    achieved = moved / parts["step"] / 1e9
    same = torch.equal(selection.indices, parts["chosen"])
    print_rows(
        f"target scale: n = {n:,}, d = {d:,}, P = {count:,} cross-prompt pairs (int32), "
        f"k = {k:,}, float32 features (made on the GPU in {made:.1f} s)",
        [
            ("greedy_logdet, whole selection (median)", f"{total:.3f} s"),
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
            ("target: selection under 2 s", "met" if total < 2.0 else "NOT met"),
            ("target: step at >= 60% of the copy", "met" if achieved >= 0.6 * copy else "NOT met"),
            ("wrapper picks = extension picks", str(same)),
        ],
    )
    steps = args.profile_steps
    kernels = kernel_times(parts["run"](steps), parts["reset"], steps)
    print_rows(
        f"kernels of one step at target scale (torch.profiler over {steps} steps; device time per "
        "step, launches per step)",
        [(name, f"{seconds * 1e3:.4f} ms x{launches:g}") for name, seconds, launches in kernels],
    )


def against_torch(args) -> None:
    """The torch greedy over materialised differences at the largest pool they fit, beside this
    engine on the same pool."""
    n, d, ridge = args.responses, args.dim, RIDGE
    free, _ = torch.cuda.mem_get_info()
    # half the free memory for the (P, d) float32 differences; pairs, weights and scores beside
    count = min(args.pairs, int(0.5 * free) // (4 * d + 64) // 1_000_000 * 1_000_000)
    features, pairs, weights = make_problem(n, d, count, seed=2)
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
    features, pairs, weights = make_problem(n, d, count, seed=1)
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
    parser.add_argument("--baseline-steps", type=int, default=6, help="steps of the torch greedy")
    parser.add_argument("--quick", action="store_true", help="only the CPU comparison size")
    parser.add_argument("--json", help="also write every printed row to this file")
    args = parser.parse_args()
    if not arm.build_info()["gpu_usable"]:
        raise SystemExit("bench_gpu.py needs the CUDA backend and a GPU")

    from activerm_fast.testing import cuda as _cuda  # None without the CUDA backend

    props = torch.cuda.get_device_properties(0)
    device = (
        f"{props.name}: {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB, "
        f"L2 {props.L2_cache_size / 2**20:.0f} MiB; CUDA runtime {_cuda.runtime_version()}, "
        f"driver {_cuda.driver_version()}; torch {torch.__version__}; {_cuda.compiler}"
    )
    print(device, flush=True)
    copy = copy_bandwidth(1 << 31)
    sections: list[Callable[[], None]] = [lambda: against_cpu(args)]
    if not args.quick:
        sections[:0] = [
            lambda: target_scale(args, copy),
            lambda: against_torch(args),
            lambda: ensemble_step(args),
        ]
    failed = 0
    for section in sections:
        # a device is lent briefly: a section that fails leaves the others their run
        try:
            section()
        except Exception:
            traceback.print_exc()
            failed += 1
        torch.cuda.empty_cache()
        if args.json:  # after every section, so a later failure keeps what was measured
            with open(args.json, "w") as f:
                json.dump({"device": device, "copy_gb_s": copy, "tables": RESULTS}, f, indent=1)
    if failed:
        raise SystemExit(f"{failed} of {len(sections)} sections failed")


if __name__ == "__main__":
    main()
