"""Every selection strategy of activerm_fast.STRATEGIES through ``select``, one group each.

The problem is a round after the first: the first k pairs of the ladder's pool are labelled,
the rest are the candidates, rewards come from an ensemble of MEMBERS heads, and bal-pm gets
one prompt feature per prompt of ten responses. The field's rules, which choose within each
prompt, run on every within-prompt pair of those prompts instead (their P), with the prompt
ids. Every group has these rows:

* ``activerm_fast``: ``select(strategy, ...)``, the reference;
* ``random``: ``select("random", ...)``, the cost of a batch that scores nothing (validation
  and the batch's log-det gains); in the random group itself, NumPy's ``Generator.choice``;
* where the strategy's score has a NumPy formulation, that formulation and its top k
  (bench/baselines.py): entropy, max-gap and bald; dopt-topk and past-dopt-topk as the paper
  states the rule, on (P, d, d) information matrices, at the sizes where they fit in
  ONE_SHOT_LIMIT; xtx and dopt-greedy as bench_greedy.py's NumPy rank-one greedy. The
  greedy_logdet group has the greedy's other baselines; coreset, bal-pm, past-dopt-greedy and
  ensemble-dopt-greedy compare with random only.

Rates: Mpairs/s (candidates per second) for every row; the strategies that run the greedy
engine also count the bytes its k steps must move (bench_greedy.bytes_per_step) and GB/s.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import baselines
import numpy as np
import pytest
from bench_greedy import baseline_steps, bytes_per_step
from harness import LADDER, MEMBERS, RIDGE, Problem, measure, problem, record, skip_reason_if_larger

import activerm_fast as arm

ONE_SHOT_LIMIT = 2 * 2**30  # largest (P, d, d) float64 array the paper's rule may build
GREEDY_MEMBERS = {
    "xtx": 1,
    "dopt-greedy": 1,
    "past-dopt-greedy": 1,
    "ensemble-dopt-greedy": MEMBERS,
}


def within_prompts(strategy: str) -> bool:
    """Whether the strategy is a rule that chooses within each prompt (the field's rules):
    its group runs on the within-prompt pairs of the same responses, with their prompt ids."""
    return arm.STRATEGIES[strategy].uses_prompt_ids


@functools.cache
def round_inputs(size: str, within: bool = False) -> dict[str, Any]:
    """select's arguments for the problem of one size: on its cross-prompt pool, or with
    ``within`` on every within-prompt pair of its prompts of ten responses."""
    p = problem(size)
    n, k = p.size.responses, p.size.k
    prompt_ids = np.arange(n) // 10
    pool = arm.pairs.within_prompt(prompt_ids).astype(np.int32) if within else p.pairs
    prompts = np.random.default_rng(2).normal(size=(n // 10, p.size.dim)).astype(np.float32)
    inputs = {
        "features": p.features,
        "pairs": pool[k:],
        "labelled": pool[:k],
        "rewards": p.rewards,
        "k": k,
        "ridge": RIDGE,
        "prompt_features": prompts[prompt_ids],
    }
    return {**inputs, "prompt_ids": prompt_ids} if within else inputs


def strategy_call(strategy: str, size: str, group: str | None = None) -> Callable[[], object]:
    """``select(strategy)`` on the pool of ``group``'s rows (the strategy's own by default)."""
    inputs = round_inputs(size, within_prompts(group or strategy))
    if strategy != "bal-pm":
        inputs = {key: value for key, value in inputs.items() if key != "prompt_features"}
    return lambda: arm.select(strategy, **inputs)


def numpy_choice(p: Problem) -> Callable[[], object]:
    count = p.size.pairs - p.size.k
    return lambda: np.random.default_rng(0).choice(count, p.size.k, replace=False)


def numpy_top_k(
    score: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> Callable[[Problem], Callable[[], object]]:
    def call(p: Problem) -> Callable[[], object]:
        pool = p.pairs[p.size.k :]
        return lambda: baselines.top_k(score(p.rewards, pool), p.size.k)

    return call


def paper_one_shot(past: bool) -> Callable[[Problem], Callable[[], object]]:
    def call(p: Problem) -> Callable[[], object]:
        too_large = skip_reason_if_larger(
            baselines.one_shot_bytes(p.size.pairs, p.size.dim),
            ONE_SHOT_LIMIT,
            "the (P, d, d) per-pair information matrices",
        )
        if too_large:
            pytest.skip(too_large)
        k = p.size.k
        labelled = p.pairs[:k] if past else None
        return lambda: baselines.paper_one_shot(
            p.features, p.pairs[k:], p.rewards, k, RIDGE, labelled
        )

    return call


def numpy_rank_one(weighted: bool) -> Callable[[Problem], Callable[[], object]]:
    def call(p: Problem) -> Callable[[], object]:
        pool = p.pairs[p.size.k :]

        def run() -> object:
            weights = baselines.fisher_weights(p.rewards, pool) if weighted else np.ones(len(pool))
            return baseline_steps(baselines.pair_diff(p.features, pool), weights, RIDGE, p.size.k)

        return run

    return call


NUMPY_FORMULATIONS: dict[str, tuple[str, Callable[[Problem], Callable[[], object]]]] = {
    "random": ("NumPy Generator.choice", numpy_choice),
    "entropy": ("NumPy score, top k", numpy_top_k(baselines.entropy_scores)),
    "max-gap": ("NumPy score, top k", numpy_top_k(baselines.max_gap_scores)),
    "bald": ("NumPy score, top k", numpy_top_k(baselines.bald_scores)),
    "dopt-topk": ("paper's one-shot rule, (P, d, d)", paper_one_shot(past=False)),
    "past-dopt-topk": ("paper's one-shot rule, (P, d, d)", paper_one_shot(past=True)),
    "xtx": ("NumPy rank-one greedy", numpy_rank_one(weighted=False)),
    "dopt-greedy": ("NumPy rank-one greedy", numpy_rank_one(weighted=True)),
}


def rows() -> list[tuple[str, str]]:
    """(strategy, implementation) of every row, activerm_fast first."""
    result = []
    for strategy in arm.STRATEGIES:
        result.append((strategy, "activerm_fast"))
        if strategy != "random":
            result.append((strategy, "random"))
        if strategy in NUMPY_FORMULATIONS:
            result.append((strategy, NUMPY_FORMULATIONS[strategy][0]))
    return result


@pytest.mark.parametrize("size", list(LADDER))
@pytest.mark.parametrize(("strategy", "implementation"), rows())
def test_select(benchmark: Any, strategy: str, implementation: str, size: str) -> None:
    benchmark.group = f"select {strategy}"
    p = problem(size)
    work: dict[str, Any] = {}
    if within_prompts(strategy):
        work["P"] = len(round_inputs(size, True)["pairs"]) + p.size.k  # the within-prompt pool
    if strategy in GREEDY_MEMBERS:
        candidates = p.size.pairs - p.size.k
        members, weighted = GREEDY_MEMBERS[strategy], strategy != "xtx"  # xtx reads no weights
        steps = bytes_per_step(p.size.responses, p.size.dim, candidates, members, weighted)
        work["work_bytes"] = p.size.k * steps
    record(
        benchmark,
        p.size,
        implementation,
        reference=implementation == "activerm_fast",
        strategy=strategy,
        E=MEMBERS,
        **work,
    )
    if implementation == "activerm_fast":
        call = strategy_call(strategy, size)
    elif implementation == "random":
        call = strategy_call("random", size, group=strategy)
    else:
        call = NUMPY_FORMULATIONS[strategy][1](p)
    measure(benchmark, call)
