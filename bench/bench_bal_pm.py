"""Time BAL-PM's greedy picks against the one-shot BALD ranking on the same pool.

    python bench/bench_bal_pm.py [--pairs 1000000] [--prompts 2000] [--dim 384] [--k 200]

Prints, per pool size, the time of ``bald`` (top k of the mutual information: the baseline,
one pass) and of ``bal-pm`` (k greedy picks), BAL-PM's time per pick and per pick and pair:
each pick rescans every pair once, so the last column should stay flat as P grows.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import activerm_fast as arm


def best_time(run, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=384, help="prompt-feature dimension q")
    parser.add_argument("--k", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    prompt_ids = np.repeat(np.arange(args.prompts), 10)
    n = prompt_ids.size
    features = rng.normal(size=(n, 64)).astype(np.float32)
    rewards = rng.normal(size=(3, n))
    prompt_features = rng.normal(size=(args.prompts, args.dim)).astype(np.float32)[prompt_ids]
    print(f"{n} responses, {args.prompts} prompts, q = {args.dim}, k = {args.k}")
    print(f"{'pairs':>10} {'bald s':>9} {'bal-pm s':>9} {'ms/pick':>9} {'ns/pick/pair':>13}")
    for size in (args.pairs // 10, args.pairs):
        pool = arm.pairs.cross_prompt(prompt_ids, size, seed=1)
        common = {"features": features, "pairs": pool, "k": args.k, "rewards": rewards}
        bald = best_time(lambda common=common: arm.select("bald", **common))
        bal_pm = best_time(
            lambda common=common: arm.select("bal-pm", prompt_features=prompt_features, **common)
        )
        per_pick = bal_pm / args.k
        print(
            f"{size:>10} {bald:>9.3f} {bal_pm:>9.3f} {1e3 * per_pick:>9.2f} "
            f"{1e9 * per_pick / size:>13.2f}"
        )


if __name__ == "__main__":
    main()
