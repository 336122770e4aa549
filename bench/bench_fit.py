"""Time one training epoch of RewardModel (E stacked heads) against E separate models.

The baseline is what one writes without stacking: E ``nn.Sequential`` heads of the same
architecture, each with its own AdamW and bootstrap sample, trained one after another with
the same batch size and loss. Both sides run in this process on the same data; the table
reports the median seconds per epoch over ``--repeats`` epochs of each, run alternately after
one warm-up epoch each.

    python bench/bench_fit.py            # E = 10, 10,000 pairs, 2,048-d embeddings
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from activerm_fast.model import RewardModel

HIDDEN = (512, 512, 512)


def make_task(responses: int, pairs: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((responses, dim)).astype(np.float32)
    i = rng.integers(0, responses, pairs)
    j = (i + rng.integers(1, responses, pairs)) % responses
    teacher = x @ rng.standard_normal(dim) / np.sqrt(dim)
    labels = (teacher[i] > teacher[j]).astype(np.int64)
    return x, np.stack([i, j], axis=1), labels


def loop_of_models(dim: int, ensemble: int, batch_size: int, lr: float, wd: float, seed: int):
    """One epoch function for E separate nn.Sequential heads trained one after another."""
    torch.manual_seed(seed)
    heads = []
    for _ in range(ensemble):
        widths = [dim, *HIDDEN]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), nn.GELU()]
        layers.append(nn.Linear(widths[-1], 1, bias=False))
        head = nn.Sequential(*layers)
        heads.append((head, torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=wd)))
    rng = np.random.default_rng(seed)

    def epoch(x: torch.Tensor, pairs: torch.Tensor, labels: torch.Tensor) -> None:
        for head, optimizer in heads:
            sample = torch.from_numpy(rng.choice(pairs.shape[0], pairs.shape[0]))
            for start in range(0, sample.numel(), batch_size):
                batch = sample[start : start + batch_size]
                r = head(x[torch.cat([pairs[batch, 0], pairs[batch, 1]])]).squeeze(-1)
                margin = r[: batch.numel()] - r[batch.numel() :]  # one forward for both sides
                loss = F.binary_cross_entropy_with_logits(margin, labels[batch])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ensemble", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--responses", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    lr, wd = 1e-3, 1e-4

    x, pairs, labels = make_task(args.responses, args.pairs, args.dim)
    model = RewardModel(args.dim, HIDDEN, ensemble=args.ensemble, seed=0)

    def stacked_epoch() -> None:
        model.fit(
            x, pairs, labels, epochs=1, batch_size=args.batch_size, lr=lr,
            weight_decay=wd, val_fraction=0.0, warm_start=True,
        )  # fmt: skip

    loop_epoch = loop_of_models(args.dim, args.ensemble, args.batch_size, lr, wd, seed=0)
    x_t, pairs_t = torch.from_numpy(x), torch.from_numpy(pairs)
    labels_t = torch.from_numpy(labels).float()
    stacked, looped = interleaved_seconds(
        [stacked_epoch, lambda: loop_epoch(x_t, pairs_t, labels_t)], args.repeats
    )

    print(
        f"E={args.ensemble} heads {args.dim}->{'->'.join(map(str, HIDDEN))}->1, "
        f"{args.pairs} pairs over {args.responses} responses, batch {args.batch_size}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); "
        f"median of {args.repeats} epochs each (interleaved) after 1 warm-up"
    )
    print()
    print("| training | median s/epoch | min s/epoch | speed-up vs loop |")
    print("|---|---:|---:|---:|")
    baseline = statistics.median(looped)
    for name, times in [
        (f"RewardModel, {args.ensemble} stacked heads", stacked),
        (f"loop over {args.ensemble} nn.Sequential", looped),
    ]:
        median = statistics.median(times)
        print(f"| {name} | {median:.2f} | {min(times):.2f} | {baseline / median:.2f}x |")


if __name__ == "__main__":
    main()
