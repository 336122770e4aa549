"""float16 features against the same values in float32, in one process.

    python bench/bench_half_features.py           # n=100,000, d=1,024, P=1,000,000, k=21
    python bench/bench_half_features.py --quick   # a small size, to check the script runs

The kernels read float16 features as stored and widen each value as they read it, so a step
reads half the feature bytes float32 features take; the results are the same bits
(tests/test_half_features.py). Two rows: ``fisher_matrix`` over P pairs (its scatter reads
2 d feature values per pair) and a dense greedy step (``greedy_logdet(lazy=False)``: v = Phi u
reads the whole (n, d) matrix, then the sweep streams P pairs' int32 indices, float64 weights
and scores). A step is (time of k steps - time of 1 step) / (k - 1); every figure is the median
of --repeats runs, the two dtypes alternating. A NumPy copy measured in the same run gives the
machine's bandwidth; the ratio column is float32 time / float16 time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from bench_greedy import build_line, copy_bandwidth, print_rows

import activerm_fast as arm

PER_PROMPT = 10  # responses per prompt of the cross-prompt pool


def alternating(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs alternating so that load changes hit both."""
    spent: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            spent[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small size")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, d, count, k = (5_000, 128, 50_000, 6) if args.quick else (100_000, 1_024, 1_000_000, 21)
    rng = np.random.default_rng(0)
    half = torch.from_numpy(rng.normal(size=(n, d)).astype(np.float32)).half()
    single = half.float()  # the same values
    pairs = torch.from_numpy(arm.pairs.cross_prompt(np.arange(n) // PER_PROMPT, count, seed=0))
    pairs = pairs.int()
    weights = torch.from_numpy(rng.random(count))
    fisher_pairs = pairs[: count // 10]
    print(build_line(f"n={n}, d={d}, P={count}, k={k}, medians of {args.repeats}"))

    def greedy(features: torch.Tensor, steps: int) -> Callable[[], object]:
        return lambda: arm.greedy_logdet(features, pairs, steps, weights=weights, lazy=False)

    for features in (half, single):  # same picks, checked once, untimed
        arm.greedy_logdet(features, pairs, 2, weights=weights, lazy=False)
    assert np.array_equal(greedy(half, k)().indices, greedy(single, k)().indices)
    times = alternating(
        {
            "fisher16": lambda: arm.fisher_matrix(half, fisher_pairs),
            "fisher32": lambda: arm.fisher_matrix(single, fisher_pairs),
            "one16": greedy(half, 1),
            "one32": greedy(single, 1),
            "k16": greedy(half, k),
            "k32": greedy(single, k),
        },
        args.repeats,
    )
    step16 = (times["k16"] - times["one16"]) / (k - 1)
    step32 = (times["k32"] - times["one32"]) / (k - 1)
    sweep_bytes = count * (8 + 8 + 16)  # int32 pair, float64 weight, score read and written

    def step_bytes(element: int) -> int:
        return n * d * element + sweep_bytes

    copy = copy_bandwidth(1 << 28, 5)
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
            ("NumPy copy bandwidth (read + write)", f"{copy:.2f} GB/s"),
            (
                "feature matrix, float32 / float16",
                f"{single.nbytes / 1e6:.0f} MB / {half.nbytes / 1e6:.0f} MB",
            ),
        ]
    )


if __name__ == "__main__":
    main()
