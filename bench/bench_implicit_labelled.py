"""Labelled pairs on an implicit pool: finding their positions, and ``random`` around them.

    python bench/bench_implicit_labelled.py            # 300 prompts x 15 responses, P = 10^8,
                                                       # 700 labelled pairs, 3 repeats
    python bench/bench_implicit_labelled.py --quick    # P = 10^7

The greedy strategies mask the positions of an implicit pool that hold a labelled pair. The
baseline finds them as a user would without the package's index: every position generated,
chunk by chunk, its key i n + j tested with ``torch.isin`` against the labelled pairs' keys
(a pass over the whole pool). ``positions_of`` generates only the runs of positions whose first
response is a labelled pair's and tests them against the sorted keys. Both must give the same
positions. ``random`` with the labelled pairs is timed beside ``random`` without them: it skips
a labelled pair where it draws one, so the two should cost the same. Times are medians over the
repeats, both ways in this process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from bench_greedy import build_line, print_rows

import activerm_fast as arm
from activerm_fast.data.implicit_pool import positions_of
from activerm_fast.testing import launch

CHUNK = 1 << 22  # pairs generated at a time by the baseline, as the package generates them


def whole_pool_scan(generated: launch.GeneratedPairs, wanted: torch.Tensor, n: int) -> torch.Tensor:
    """The positions of the pairs equal to a ``wanted`` pair: every position generated."""
    keys = torch.minimum(wanted[:, 0], wanted[:, 1]) * n + torch.maximum(wanted[:, 0], wanted[:, 1])
    found = []
    for begin, rows in launch.generated_chunks(generated, CHUNK):
        hit = torch.nonzero(torch.isin(rows[:, 0] * n + rows[:, 1], keys)).reshape(-1)
        found.append(hit + begin)
    return torch.cat(found)


def median_time(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The median wall time of ``repeats`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--per-prompt", type=int, default=15, help="responses per prompt")
    parser.add_argument("--pairs", type=int, default=100_000_000)
    parser.add_argument("--labelled", type=int, default=700)
    parser.add_argument("--k", type=int, default=100, help="pairs random draws")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="P = 10^7")
    args = parser.parse_args()
    if args.quick:
        args.pairs = 10_000_000
    n = args.prompts * args.per_prompt
    rng = np.random.default_rng(0)
    prompt_ids = np.repeat(np.arange(args.prompts), args.per_prompt)
    features = rng.normal(size=(n, 8)).astype(np.float32)
    pool = arm.ImplicitPool.cross_prompt(prompt_ids, args.pairs, seed=1)
    labelled = np.unique(pool.rows(rng.choice(args.pairs, args.labelled, replace=False)), axis=0)
    wanted = torch.from_numpy(labelled)
    generated = pool.generated(torch.device("cpu"))
    print(build_line("device cpu"), flush=True)
    print(
        f"n = {n:,} responses ({args.prompts} prompts x {args.per_prompt}), P = {args.pairs:,} "
        f"cross-prompt positions, {len(labelled)} labelled pairs, {args.repeats} repeats",
        flush=True,
    )

    scan, expected = median_time(lambda: whole_pool_scan(generated, wanted, n), args.repeats)
    runs, found = median_time(lambda: positions_of(generated, wanted, n), args.repeats)
    touched = len(np.unique(labelled))

    def draw(with_labelled: bool) -> Any:
        given = labelled if with_labelled else None
        return arm.select("random", features=features, pairs=pool, k=args.k, labelled=given)

    plain, _ = median_time(lambda: draw(False), args.repeats)
    around, drawn = median_time(lambda: draw(True), args.repeats)
    picked = {tuple(r) for r in pool.rows(drawn.indices).tolist()}
    print_rows(
        [
            ("positions of the labelled pairs", ""),
            ("  whole-pool scan (torch.isin)", f"{scan:.3f} s"),
            ("  positions_of (runs of the labelled responses)", f"{runs:.3f} s"),
            ("  speed-up", f"{scan / runs:.1f}x"),
            ("  responses of a labelled pair / all", f"{touched / n:.1%}"),
            ("  the same positions", str(torch.equal(found, expected))),
            (f"  positions found ({len(labelled)} pairs)", f"{len(found):,}"),
            (f"random, k = {args.k}", ""),
            ("  without labelled pairs", f"{plain * 1e3:.1f} ms"),
            ("  with the labelled pairs", f"{around * 1e3:.1f} ms"),
            ("  with / without", f"{around / plain:.2f}x"),
            (
                "  a labelled pair among the picks",
                str(bool(picked & set(map(tuple, labelled.tolist())))),
            ),
        ]
    )
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
