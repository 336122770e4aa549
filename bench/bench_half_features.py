"""float16 features against the same values in float32, in one process.

    python bench/bench_half_features.py           # n=50,000, d=1,024, P=500,000, k=20
    python bench/bench_half_features.py --quick   # a small size, to check the script runs
    python bench/bench_half_features.py --device cuda   # n=200,000, d=1,024, P=10^7, k=50

The kernels read float16 features as stored and widen each value as they read it, so a step
reads half the feature bytes float32 features take; the results are the same bits
(tests/test_half_features.py). Two rows: ``fisher_matrix`` over P/10 pairs (its scatter reads
2 d feature values per pair; the median of --repeats calls, the dtypes alternating) and a dense
greedy step (v = Phi u reads the whole (n, d) matrix, then the sweep streams P pairs' int32
indices, float64 weights and scores): one engine per dtype driven a step at a time, the two
alternating step by step, a step the median over the k - 1 steps that sweep. A NumPy copy
measured in the same run gives the machine's bandwidth; the ratio is float32 time / float16
time.

``--device cuda`` runs both rows on the GPU at a size that fills it for longer than a launch
(features, weights and bench_gpu.py's cross-prompt pool drawn on the device; ``fisher_matrix``
over P/500 pairs, its d^2 / 2 float64 entries per pair being compute, not bandwidth, on a
GPU), the device synchronised around every timed call, beside a device-to-device copy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from bench_gpu import copy_bandwidth as device_copy_bandwidth
from bench_gpu import cross_prompt_pairs, require_gpu
from bench_greedy import build_line, copy_bandwidth, print_rows
from bench_implicit_pool import gpu_name, synchronize

import activerm_fast as arm
from activerm_fast.testing import design

RIDGE = 1e-3

PER_PROMPT = 10  # responses per prompt of the cross-prompt pool


def alternating(
    runs: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds of each run, the runs alternating so that load changes hit both."""
    spent: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            spent[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in spent.items()}


def greedy_steps(
    features: dict[str, torch.Tensor], pairs: torch.Tensor, weights: torch.Tensor, k: int
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Median seconds of a greedy step (apply and the next sweep) for each dtype's engine, the
    engines stepping in turn, and each one's chosen pairs."""
    engines = {}
    device = pairs.device
    for name, f in features.items():
        problem = design.GreedyProblem(
            f[None], pairs, weights, [design.Prior.of_ridge(RIDGE, f.shape[1])], lazy=False
        )
        engines[name], _ = design.greedy_engine(problem, steps=k)
        engines[name].sweep(downdate=False)
    # on the device: the engine writes each step's record there
    chosen = {name: torch.empty(k, dtype=torch.int64, device=device) for name in engines}
    gains = {name: torch.empty(k, dtype=torch.float64, device=device) for name in engines}
    spent: dict[str, list[float]] = {name: [] for name in engines}
    for step in range(k - 1):
        for name, engine in engines.items():
            synchronize(device)
            start = time.perf_counter()
            engine.apply(step, chosen[name], gains[name], prepare_next=True)
            engine.sweep(downdate=True)
            synchronize(device)
            spent[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in spent.items()}, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":  # drawn on the device: 2 * 10^8 NumPy normals take seconds
        require_gpu("bench_half_features.py --device cuda")
        n, d, count, k, fisher_share = 200_000, 1_024, 10_000_000, 50, 500
        generator = torch.Generator(device=device).manual_seed(0)
        half = torch.randn((n, d), device=device, generator=generator).half()
        pairs = cross_prompt_pairs(n, count, generator)
        weights = torch.rand((count, 1), dtype=torch.float64, device=device, generator=generator)
    else:
        n, d, count, k = (5_000, 128, 50_000, 6) if args.quick else (50_000, 1_024, 500_000, 20)
        fisher_share = 10
        rng = np.random.default_rng(0)
        half = torch.from_numpy(rng.normal(size=(n, d)).astype(np.float32)).half()
        prompt_ids = np.arange(n) // PER_PROMPT
        pairs = torch.from_numpy(arm.pairs.cross_prompt(prompt_ids, count, seed=0)).int()
        weights = torch.from_numpy(rng.random(count))[:, None].contiguous()
    single = half.float()  # the same values
    fisher_pairs = pairs[: count // fisher_share]
    print(
        build_line(
            f"device {gpu_name(device)}, n={n}, d={d}, P={count}, k={k}, medians of {args.repeats}"
        ),
        flush=True,
    )
    steps, chosen = greedy_steps({"16": half, "32": single}, pairs, weights, k)
    assert torch.equal(chosen["16"][:-1], chosen["32"][:-1])  # the same picks
    times = alternating(
        {
            "fisher16": lambda: arm.fisher_matrix(half, fisher_pairs),
            "fisher32": lambda: arm.fisher_matrix(single, fisher_pairs),
        },
        args.repeats,
        device,
    )
    step16, step32 = steps["16"], steps["32"]
    sweep_bytes = count * (8 + 8 + 16)  # int32 pair, float64 weight, score read and written

    def step_bytes(element: int) -> int:
        return n * d * element + sweep_bytes

    if device.type == "cuda":
        copy, copy_name = device_copy_bandwidth(1 << 31), "device-to-device copy"
    else:
        copy, copy_name = copy_bandwidth(1 << 28, 5), "NumPy copy bandwidth"
    fisher_feature_bytes = 2 * d * fisher_pairs.shape[0]  # values read by the scatter
    print_rows(
        [
            (
                f"fisher_matrix, {fisher_pairs.shape[0]} pairs, float32 / float16",
                f"{times['fisher32']:.3f} s / {times['fisher16']:.3f} s = "
                f"{times['fisher32'] / times['fisher16']:.2f}x",
            ),
            (
                "  feature bytes its scatter reads, float32 / float16",
                f"{4 * fisher_feature_bytes / 1e6:.0f} MB / "
                f"{2 * fisher_feature_bytes / 1e6:.0f} MB",
            ),
            (
                "greedy step, float32 / float16",
                f"{step32 * 1e3:.1f} ms / {step16 * 1e3:.1f} ms = {step32 / step16:.2f}x",
            ),
            (
                "  bytes a step reads and writes, float32 / float16",
                f"{step_bytes(4) / 1e6:.0f} MB / {step_bytes(2) / 1e6:.0f} MB",
            ),
            (
                "  achieved bandwidth, float32 / float16",
                f"{step_bytes(4) / step32 / 1e9:.2f} GB/s / "
                f"{step_bytes(2) / step16 / 1e9:.2f} GB/s",
            ),
            (f"{copy_name} (read + write)", f"{copy:.2f} GB/s"),
            (
                "feature matrix, float32 / float16",
                f"{single.nbytes / 1e6:.0f} MB / {half.nbytes / 1e6:.0f} MB",
            ),
        ]
    )


if __name__ == "__main__":
    main()
