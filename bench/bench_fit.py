"""Time one training epoch of RewardModel (E stacked heads) against E separate models.

The baseline is what one writes without stacking: E ``nn.Sequential`` heads of the same
architecture, each with its own AdamW and bootstrap sample, trained one after another with
the same batch size and loss (one forward per batch for both sides of the pairs). Beside
them, the stacked fit with its products in bfloat16 (``RewardModel.fit(precision="bfloat16")``;
its GFLOP/s count the same arithmetic). All run in this process on the same data, alternately,
after one warm-up epoch each; the table reports the median seconds per epoch, the achieved
training GFLOP/s and the ratio to the loop.

Two scenarios: the issue's size (E = 10, 10,000 pairs of 2,048-d embeddings, heads of
3 x 512), which is bound by matrix-multiply throughput, and small heads (32-d input, 2 x 64),
which are bound by per-step overhead.

    python bench/bench_fit.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from activerm_fast.model import RewardModel
from activerm_fast.model.precision import native_bfloat16

LR, WEIGHT_DECAY, BATCH_SIZE = 1e-3, 1e-4, 128


@dataclass(frozen=True)
class Scenario:
    name: str
    dim: int
    hidden: tuple[int, ...]
    ensemble: int = 10
    pairs: int = 10_000
    responses: int = 5_000

    def training_flops(self) -> float:
        """FLOPs of one epoch: every member, both rows of every pair, forward and backward
        (the first layer needs no input gradient: two products instead of three)."""
        widths = [self.dim, *self.hidden, 1]
        products = [a * b for a, b in zip(widths[:-1], widths[1:], strict=True)]
        per_row = 2 * products[0] + 3 * sum(products[1:])
        return 2.0 * per_row * 2 * self.pairs * self.ensemble


SCENARIOS = [
    Scenario("issue size", dim=2048, hidden=(512, 512, 512)),
    Scenario("small heads", dim=32, hidden=(64, 64)),
]


def make_task(scenario: Scenario, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = scenario.responses
    x = rng.standard_normal((n, scenario.dim)).astype(np.float32)
    i = rng.integers(0, n, scenario.pairs)
    j = (i + rng.integers(1, n, scenario.pairs)) % n
    teacher = x @ rng.standard_normal(scenario.dim)
    return x, np.stack([i, j], axis=1), (teacher[i] > teacher[j]).astype(np.int64)


def stacked_epoch(
    scenario: Scenario, x, pairs, labels, precision: str = "float32"
) -> Callable[[], None]:
    model = RewardModel(scenario.dim, scenario.hidden, ensemble=scenario.ensemble, seed=0)

    def epoch() -> None:
        model.fit(
            x, pairs, labels, epochs=1, batch_size=BATCH_SIZE, lr=LR,
            weight_decay=WEIGHT_DECAY, val_fraction=0.0, warm_start=True, precision=precision,
        )  # fmt: skip

    return epoch


def looped_epoch(scenario: Scenario, x, pairs, labels) -> Callable[[], None]:
    torch.manual_seed(0)
    widths = [scenario.dim, *scenario.hidden]
    heads = []
    for _ in range(scenario.ensemble):
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), nn.GELU()]
        head = nn.Sequential(*layers, nn.Linear(widths[-1], 1, bias=False))
        heads.append((head, torch.optim.AdamW(head.parameters(), LR, weight_decay=WEIGHT_DECAY)))
    x_t, pairs_t = torch.from_numpy(x), torch.from_numpy(pairs)
    labels_t = torch.from_numpy(labels).float()
    rng = np.random.default_rng(0)

    def epoch() -> None:
        for head, optimizer in heads:
            sample = torch.from_numpy(rng.choice(len(pairs), len(pairs)))
            for start in range(0, len(sample), BATCH_SIZE):
                batch = sample[start : start + BATCH_SIZE]
                r = head(x_t[torch.cat([pairs_t[batch, 0], pairs_t[batch, 1]])]).squeeze(-1)
                margin = r[: len(batch)] - r[len(batch) :]
                loss = F.binary_cross_entropy_with_logits(margin, labels_t[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    return epoch


def interleaved_seconds(runs: list[Callable[[], None]], repeats: int) -> list[list[float]]:
    """Seconds per call of each run, alternating runs so background load hits all alike."""
    for run in runs:
        run()  # warm-up: allocator, thread pool, first-touch pages
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, spent in zip(runs, times, strict=True):
            start = time.perf_counter()
            run()
            spent.append(time.perf_counter() - start)
    return times


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The machine's float32 matrix-multiply rate: the ceiling for the issue-size scenario."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per method")
    args = parser.parse_args()

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
        f"({platform.machine()}), float32 matmul {matmul_gflops():.0f} GFLOP/s, bfloat16 "
        f"products native: {native_bfloat16('cpu')}; "
        f"batch {BATCH_SIZE}; median of {args.repeats} epochs, methods alternating; "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    print()
    print("| scenario | E | pairs | head | training | s/epoch | GFLOP/s | vs loop |")
    print("|---|---:|---:|---|---|---:|---:|---:|")
    for scenario in SCENARIOS:
        task = make_task(scenario)
        stacked, half, looped = interleaved_seconds(
            [
                stacked_epoch(scenario, *task),
                stacked_epoch(scenario, *task, precision="bfloat16"),
                looped_epoch(scenario, *task),
            ],
            args.repeats,
        )
        baseline = statistics.median(looped)
        head = "-".join(map(str, [scenario.dim, *scenario.hidden, 1]))
        rows = [
            ("RewardModel (stacked)", stacked),
            ("RewardModel (stacked), bfloat16 products", half),
            ("loop of nn.Sequential", looped),
        ]
        for name, times in rows:
            median = statistics.median(times)
            print(
                f"| {scenario.name} | {scenario.ensemble} | {scenario.pairs} | {head} | {name} "
                f"| {median:.2f} | {scenario.training_flops() / median / 1e9:.0f} "
                f"| {baseline / median:.2f}x |"
            )
    # other processes competing for the cores distort the timings: say how busy it was
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
