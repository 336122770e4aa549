"""Implicit pools: the kernels' pairs against the NumPy twin, selections against the same
selection on the materialised pool (repeats left out), shards against one process, and the
Fisher weights the sweep computes against fisher_weights."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import gloo
import numpy as np
import pytest
import torch
from scipy import stats
from torch.profiler import ProfilerActivity, profile

import activerm_fast as arm
from activerm_fast.testing import design, launch

GREEDY = ("xtx", "dopt-greedy", "past-dopt-greedy", "ensemble-dopt-greedy")


def first_copies(rows: np.ndarray, n: int) -> np.ndarray:
    """Positions of the first occurrence of every pair, ascending."""
    _, first = np.unique(rows[:, 0] * n + rows[:, 1], return_index=True)
    return np.sort(first)


def problem(n: int, prompts: int, seed: int):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, prompts, size=n)
    ids[:prompts] = np.arange(prompts)  # every prompt present
    features = rng.normal(size=(n, 5)).astype(np.float32)
    rewards = rng.normal(size=(3, n)) * 2.0
    members = rng.normal(size=(3, n, 5))
    return ids, features, rewards, members


@pytest.mark.parametrize("kind", ["cross", "within"])
@pytest.mark.parametrize(("n", "size", "seed"), [(7, 1, 0), (40, 3000, 5), (300, 20000, 2**64 - 1)])
def test_kernel_pairs_are_the_numpy_twin(kind, n, size, seed):
    ids = np.random.default_rng(n).integers(0, 4, size=n)
    ids[:2] = [0, 1]
    ids[2:4] = [0, 1]
    build = arm.ImplicitPool.cross_prompt if kind == "cross" else arm.ImplicitPool.within_prompt
    pool = build(ids, size, seed=seed)
    rows = pool.materialize()
    assert rows.shape == (size, 2) and rows.dtype == np.int64
    np.testing.assert_array_equal(rows, pool.rows(np.arange(size)))
    assert np.all(rows[:, 0] < rows[:, 1]) and rows.min() >= 0 and rows.max() < n
    same_prompt = ids[rows[:, 0]] == ids[rows[:, 1]]
    assert np.all(same_prompt == (kind == "within"))
    for world in (1, 3):
        parts = [pool.shard(rank, world).materialize() for rank in range(world)]
        np.testing.assert_array_equal(np.concatenate(parts), rows)
    assert not np.array_equal(build(ids, size, seed=(seed + 1) % 2**64).materialize(), rows) or (
        size == 1
    )


def test_cross_prompt_pairs_follow_their_distribution():
    # a uniform over all responses, b uniform over the responses to other prompts:
    # P({x, y}) = (1 / n) (1 / (n - s_x) + 1 / (n - s_y))
    ids = np.array([0, 0, 0, 1, 1, 2])
    n, sizes = len(ids), np.bincount(ids)
    draws = 60_000
    rows = arm.ImplicitPool.cross_prompt(ids, draws, seed=11).materialize()
    universe = [(x, y) for x in range(n) for y in range(x + 1, n) if ids[x] != ids[y]]
    observed = np.array([np.sum((rows[:, 0] == x) & (rows[:, 1] == y)) for x, y in universe])
    p = np.array([(1 / (n - sizes[ids[x]]) + 1 / (n - sizes[ids[y]])) / n for x, y in universe])
    assert p.sum() == pytest.approx(1.0)
    chi2 = ((observed - draws * p) ** 2 / (draws * p)).sum()
    assert chi2 < stats.chi2.ppf(0.9999, len(universe) - 1), chi2


@pytest.mark.parametrize("in_sweep", [False, True])
@pytest.mark.parametrize("strategy", GREEDY)
@pytest.mark.parametrize(("n", "size", "seed"), [(8, 60, 1), (60, 4000, 2), (200, 30000, 3)])
def test_selection_is_the_materialised_selection(strategy, n, size, seed, in_sweep, monkeypatch):
    # tiny n forces repeats: each pair is picked at most once, at its first position
    ids, features, rewards, members = problem(n, 3, seed)
    pool = arm.ImplicitPool.cross_prompt(ids, size, seed=seed)
    rows = pool.materialize()
    keep = first_copies(rows, n)
    k = min(12, len(keep) - 4)
    labelled = rows[keep[-3:]]
    options = {
        "features": members if strategy == "ensemble-dopt-greedy" else features,
        "k": k,
        "rewards": None if strategy == "xtx" else rewards,
        "labelled": labelled if strategy.startswith(("past", "ensemble")) else None,
        "ridge": 0.5,
    }
    want = arm.select(strategy, pairs=rows[keep], **options)  # weights stored
    # the implicit pool's weights stored too, or computed in the sweep from the rewards
    monkeypatch.setattr(launch, "weights_in_sweep", lambda *args: in_sweep)
    got = arm.select(strategy, pairs=pool, **options)
    np.testing.assert_array_equal(got.indices, keep[want.indices])
    assert got.gains.tobytes() == want.gains.tobytes()
    assert got.logdet == want.logdet
    picked = rows[got.indices]
    assert len(np.unique(picked[:, 0] * n + picked[:, 1])) == k
    if options["labelled"] is not None:
        assert not set(map(tuple, picked.tolist())) & set(map(tuple, labelled.tolist()))


def test_every_distinct_pair_once_then_none():
    ids = np.array([0, 0, 1, 1])  # 4 cross-prompt pairs, 50 positions
    features = np.random.default_rng(0).normal(size=(4, 6))
    pool = arm.ImplicitPool.cross_prompt(ids, 50, seed=4)
    got = arm.select("xtx", features=features, pairs=pool, k=4)
    picked = pool.rows(got.indices)
    assert len({tuple(r) for r in picked.tolist()}) == 4
    with pytest.raises(ValueError, match="greedy step 4: no candidate pair had a finite score"):
        arm.select("xtx", features=features, pairs=pool, k=5)
    drawn = arm.select("random", features=features, pairs=pool, k=4, seed=3)
    assert len({tuple(r) for r in pool.rows(drawn.indices).tolist()}) == 4
    with pytest.raises(ValueError, match="fewer than k = 5 distinct available pairs"):
        arm.select("random", features=features, pairs=pool, k=5)


def test_refresh_masks_every_copy_of_a_chosen_pair():
    # a prior far below the pairs' information makes the engine refresh its state: the
    # recomputed scores must mask the repeats of the pairs chosen so far
    ids, features, _, _ = problem(10, 3, 5)
    pool = arm.ImplicitPool.cross_prompt(ids, 400, seed=8)
    rows = pool.materialize()
    keep = first_copies(rows, 10)
    got = arm.greedy_logdet(features.astype(np.float64), pool, 12, prior=1e-14)
    want = arm.greedy_logdet(features.astype(np.float64), rows[keep], 12, prior=1e-14)
    np.testing.assert_array_equal(got.indices, keep[want.indices])
    assert got.gains.tobytes() == want.gains.tobytes()


@pytest.mark.parametrize(("n", "size", "seed"), [(6, 80, 1), (12, 500, 4), (40, 3000, 7)])
def test_a_pair_excluded_at_one_position_is_excluded_at_every_one(n, size, seed):
    # the mask marks some positions (first copies, later repeats, one pair at both); the
    # reference is the stored pool of first copies with every marked pair excluded
    ids, features, _, _ = problem(n, 3, seed)
    pool = arm.ImplicitPool.cross_prompt(ids, size, seed=seed)
    rows = pool.materialize()
    keys = rows[:, 0] * n + rows[:, 1]
    keep = first_copies(rows, n)
    exclude = np.zeros(size, dtype=bool)
    exclude[np.random.default_rng(seed).choice(size, size // 10, replace=False)] = True
    exclude[keep[0]] = True
    marked = np.isin(keys[keep], keys[exclude])
    k = min(8, int((~marked).sum()))
    want = arm.greedy_logdet(features, rows[keep], k, exclude=marked, prior=0.5)
    got = arm.greedy_logdet(features, pool, k, exclude=exclude, prior=0.5)
    np.testing.assert_array_equal(got.indices, keep[want.indices])
    assert got.gains.tobytes() == want.gains.tobytes()
    assert not np.isin(keys[got.indices], keys[exclude]).any()


def test_random_draws_the_materialised_positions():
    ids, features, rewards, _ = problem(20_000, 20, 6)
    pool = arm.ImplicitPool.cross_prompt(ids, 3000, seed=2)
    rows = pool.materialize()
    assert len(first_copies(rows, 20_000)) == 3000  # no repeats among these positions
    got = arm.select("random", features=features, pairs=pool, k=30, rewards=rewards, seed=5)
    want = arm.select("random", features=features, pairs=rows, k=30, rewards=rewards, seed=5)
    np.testing.assert_array_equal(got.indices, want.indices)
    assert got.gains.tobytes() == want.gains.tobytes()


@pytest.mark.parametrize("kind", ["cross", "within"])
@pytest.mark.parametrize(("n", "size", "world"), [(9, 1, 1), (30, 700, 3), (300, 200_000, 2)])
def test_positions_of_labelled_pairs_are_every_position_holding_one(kind, n, size, world):
    # prompts in shuffled order (responses not grouped), one prompt of a single response; the
    # wanted pairs are some the pool holds, in either orientation, and some it may not
    from activerm_fast.data.implicit_pool import positions_of

    rng = np.random.default_rng(size)
    ids = rng.permutation(np.concatenate([[0, 0, 1, 1, 99], rng.integers(0, 5, n - 5)]))
    build = arm.ImplicitPool.cross_prompt if kind == "cross" else arm.ImplicitPool.within_prompt
    pool = build(ids, size, seed=size + 11)
    for rank in range(world):
        part = pool.shard(rank, world)
        rows = part.materialize()
        wanted = np.concatenate([rows[rng.integers(0, len(rows), 6)], rng.integers(0, n, (4, 2))])
        wanted[::2] = wanted[::2, ::-1]
        got = positions_of(part.generated(torch.device("cpu")), torch.from_numpy(wanted), n)
        keys = np.minimum(wanted[:, 0], wanted[:, 1]) * n + np.maximum(wanted[:, 0], wanted[:, 1])
        want = np.flatnonzero(np.isin(rows[:, 0] * n + rows[:, 1], keys))
        np.testing.assert_array_equal(got.numpy(), want)


def test_random_skips_labelled_pairs_where_it_draws_them(monkeypatch):
    # 10^12 positions: no pass over the pool may happen; the picks are the seeded draw's
    # positions with those holding a labelled pair left out, in the order drawn
    ids, features, _, _ = problem(5000, 50, 3)
    pool = arm.ImplicitPool.cross_prompt(ids, 10**12, seed=9)
    drawn = np.random.default_rng(4).choice(10**12, size=40, replace=False)
    labelled = pool.rows(drawn[::4])
    labelled[::2] = labelled[::2, ::-1]

    def no_pass(*args):
        raise AssertionError("a pass over the pool")

    monkeypatch.setattr(launch, "generated_chunks", no_pass)
    got = arm.select("random", features=features, pairs=pool, k=40, labelled=labelled, seed=4)
    keep = np.ones(40, dtype=bool)
    keep[::4] = False
    np.testing.assert_array_equal(got.indices[: keep.sum()], drawn[keep])
    picked = {tuple(r) for r in pool.rows(got.indices).tolist()}
    assert len(picked) == 40 and not picked & {tuple(sorted(r)) for r in labelled.tolist()}


def test_weights_in_the_sweep_are_fisher_weights_bit_for_bit():
    # extreme reward gaps: 0, 1e-300, around the 1/4 cap, 30, 700, 745 (exp underflows), 1e300
    n = 12
    gaps = np.array([0.0, 1e-300, 1e-15, 1e-8, 0.5, 3.0, 30.0, 700.0, 745.0, 800.0, 1e300, -2.0])
    rewards = np.stack([gaps, -gaps[::-1] * 0.5, gaps * 1e-3])
    features = torch.as_tensor(np.random.default_rng(1).normal(size=(n, 4)))
    pairs = torch.as_tensor(arm.pairs.all_pairs(n))
    r = torch.as_tensor(rewards)
    stored = launch.fisher_weights(r, pairs)[:, None].contiguous()
    results = []
    for weights in (stored, launch.RewardRows(r.contiguous(), 3, 1)):
        problem = design.GreedyProblem(
            features[None], pairs, weights, [design.Prior.of_ridge(0.1, 4)], lazy=False
        )
        engine, _ = design.greedy_engine(problem, steps=1)
        engine.sweep(downdate=False)
        floats, ints = engine.choice
        results.append((floats[0].item(), int(ints[1]), floats[4].item()))
        chosen, gains, logdet = design.greedy(problem, 30)
        results.append((chosen.tolist(), gains.numpy().tobytes(), logdet))
    assert results[0] == results[2] and results[1] == results[3]
    best = results[0][1]
    assert results[2][2] == stored[best, 0].item()  # the record's weight, computed in the sweep


THREADS_SCRIPT = """
import json, numpy as np, activerm_fast as arm
rng = np.random.default_rng(7)
f = rng.normal(size=(3000, 24)).astype(np.float32)
pool = arm.ImplicitPool.cross_prompt(rng.integers(0, 300, size=3000), 300_000, seed=3)
s = arm.select("dopt-greedy", features=f, pairs=pool, k=40, rewards=rng.normal(size=3000))
print(json.dumps([arm.build_info()["openmp_threads"], s.indices.tolist(), s.gains.tolist(),
                  s.logdet, pool.materialize()[::997].tolist()]))
"""


def test_identical_results_with_one_and_two_threads():
    results = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", THREADS_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout))
    assert [r[0] for r in results] == [1, 2]
    assert results[0][1:] == results[1][1:]  # bitwise: same pairs, picks, gains, log det


def test_sharded_implicit_pool_is_one_process(tmp_path):
    want = sharded_cases(None)
    for got in gloo.run_ranks(__file__, 2, tmp_path, timeout=300):
        # shards cut for a world of 3 leave the pool's last third on no rank: refused
        end = arm.ImplicitPool.cross_prompt(np.arange(12) % 3, 5000).shard(1, 3).stop
        assert got.pop("shards of another world") == (
            f"rank 1: its implicit pool ends at position {end}, not at the pool's size 5000; "
            "pass pool.shard(rank, world) with world = 2 on every rank"
        )
        assert got.keys() == want.keys()
        for name, result in got.items():
            np.testing.assert_array_equal(result[0], want[name][0], err_msg=name)
            assert result[1] == want[name][1] and result[2] == want[name][2], name


def sharded_cases(shard: tuple[int, int] | None) -> dict[str, tuple]:
    """Every greedy strategy, random and greedy_logdet on a pool with repeats: on this shard
    (under a process group) or in one process."""
    from activerm_fast import distributed

    ids, features, rewards, members = problem(12, 3, 7)
    pool = arm.ImplicitPool.cross_prompt(ids, 5000, seed=9)
    mine = pool if shard is None else pool.shard(*shard)
    select = arm.select if shard is None else distributed.select
    logdet = arm.greedy_logdet if shard is None else distributed.greedy_logdet
    results = {}
    for strategy in GREEDY:
        sel = select(
            strategy,
            features=members if strategy == "ensemble-dopt-greedy" else features,
            pairs=mine,
            k=20,
            rewards=rewards,
            labelled=pool.rows([3, 4]),
            ridge=1e-9,  # refreshes on the way
        )
        results[strategy] = (np.asarray(sel.indices), sel.gains.tobytes(), sel.logdet)
    sel = logdet(features, mine, 15, prior=0.2)
    results["greedy_logdet"] = (np.asarray(sel.indices), sel.gains.tobytes(), sel.logdet)
    # the first picks, marked where they were picked (one shard): excluded at their repeats
    # on the other shard too
    marked = np.zeros(len(pool), dtype=bool)
    marked[np.asarray(sel.indices)[:3]] = True
    part = marked if shard is None else marked[mine.start : mine.stop]
    sel = logdet(features, mine, 15, prior=0.2, exclude=part)
    results["greedy_logdet, excluded"] = (np.asarray(sel.indices), sel.gains.tobytes(), sel.logdet)
    for k in (20, 43):  # 43: every distinct pair of the 45 but the 2 labelled (repeats drawn again)
        sel = select(
            "random",
            features=features,
            pairs=mine,
            k=k,
            rewards=rewards,
            labelled=pool.rows([3, 4]),
            seed=k,
        )
        results[f"random, k = {k}"] = (np.asarray(sel.indices), sel.gains.tobytes(), sel.logdet)
    return results


def test_start_check_holds_a_byte_per_pair():
    """The check of the starting scores for overflow allocates one byte per pair, no copy of
    the scores: at 10^9 pairs torch.isinf's |scores| was 8 GB beside the 8 GB of scores (the
    peak bench_implicit_pool.py measured)."""
    count = 1 << 20
    scores = torch.rand(count, 1, dtype=torch.float64)
    scores[::7] = math.nan  # excluded pairs
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        design._check_start(scores, None)
    allocated = [event.cpu_memory_usage for event in prof.key_averages()]
    assert 0 < max(allocated) <= count, prof.key_averages().table(row_limit=8)
    scores[5] = math.inf
    prior = design.Prior.of_ridge(1e-3, 2)
    problem = SimpleNamespace(first_index=100, members=torch.ones(1, 2, 2), priors=[prior])
    with pytest.raises(ValueError, match="d\\^T F0\\^-1 d of pair 105 overflows float64"):
        design._check_start(scores, problem)


def test_implicit_pool_errors():
    ids = np.array([0, 0, 1, 1, 2])
    features = np.zeros((5, 2))
    pool = arm.ImplicitPool.cross_prompt(ids, 10)
    with pytest.raises(ValueError, match="strategy 'coreset' needs stored pairs; an implicit"):
        arm.select("coreset", features=features, pairs=pool, k=1)
    with pytest.raises(ValueError, match="per_prompt needs stored pairs"):
        arm.select("xtx", features=features, pairs=pool, k=1, per_prompt=1, prompt_ids=ids)
    with pytest.raises(ValueError, match="ridge_mode='relative' needs stored pairs"):
        arm.select("xtx", features=features, pairs=pool, k=1, ridge_mode="relative")
    with pytest.raises(ValueError, match="lazy=True needs stored pairs"):
        arm.select("xtx", features=features, pairs=pool, k=1, lazy=True)
    with pytest.raises(ValueError, match="lazy=True needs stored pairs"):
        arm.greedy_logdet(features, pool, 1, lazy=True)
    with pytest.raises(ValueError, match="implicit pool of 5 responses, the features have 4"):
        arm.select("xtx", features=features[:4], pairs=pool, k=1)
    with pytest.raises(ValueError, match="k = 11 is larger than the 10 pairs available"):
        arm.select("xtx", features=features, pairs=pool, k=11)
    with pytest.raises(ValueError, match="at least two prompts, got 1 prompt"):
        arm.ImplicitPool.cross_prompt([3, 3], 4)
    with pytest.raises(ValueError, match="a prompt with two responses, got none"):
        arm.ImplicitPool.within_prompt([0, 1, 2], 4)
    with pytest.raises(ValueError, match="size must be a positive integer, got 0"):
        arm.ImplicitPool.cross_prompt(ids, 0)
    with pytest.raises(ValueError, match=r"size must be at most 2\*\*62"):
        arm.ImplicitPool.cross_prompt(ids, 2**62 + 1)
    with pytest.raises(TypeError, match="size must be an integer"):
        arm.ImplicitPool.cross_prompt(ids, 4.0)
    with pytest.raises(ValueError, match="seed must be below 2\\*\\*64"):
        arm.ImplicitPool.cross_prompt(ids, 4, seed=2**64)
    with pytest.raises(ValueError, match=r"positions must lie in \[0, 10\), got 3..10"):
        pool.rows([3, 10])
    with pytest.raises(ValueError, match="shard rank must be below the world size 2, got 2"):
        pool.shard(2, 2)


def worker(rank: int, world: int) -> dict[str, tuple | str]:
    """One rank of test_sharded_implicit_pool_is_one_process (tests/gloo.py), and the error of
    shards cut for another world."""
    from activerm_fast import distributed

    results: dict[str, tuple | str] = dict(sharded_cases((rank, world)))
    ids, features, _, _ = problem(12, 3, 7)
    pool = arm.ImplicitPool.cross_prompt(ids, 5000, seed=9)
    with pytest.raises(ValueError) as refused:
        distributed.greedy_logdet(features, pool.shard(rank, world + 1), 2)
    results["shards of another world"] = str(refused.value)
    return results


if __name__ == "__main__":
    gloo.main(worker)


def stepwise_cases():
    """(features, pool, k, prior) of stored and implicit pools, with and without refreshes."""
    ids, features, _, _ = problem(10, 3, 5)
    implicit = arm.ImplicitPool.cross_prompt(ids, 400, seed=8)
    stored = arm.pairs.cross_prompt(ids, 30, seed=2)
    top = np.sqrt(1e9)  # a dominant pair that makes the engine recompute its state
    rows = [np.zeros(3), np.array([top, 0.0, 0.0])]
    rows += [np.array([0.9 * top, np.sqrt(e2), 0.0]) for e2 in (1e-7, 2e-7, 3e-7, 4e-7)]
    drifting = np.array([[0, j] for j in range(1, len(rows))])
    wide = features.astype(np.float64)
    return [
        (wide, implicit, 12, 1e-14),
        (wide, implicit, 8, 1.0),
        (wide, stored, 10, 1e-3),
        (np.stack(rows), drifting, 3, 1.0),
    ]


@pytest.mark.parametrize("case", range(4))
def test_the_steps_behind_a_progress_bar_are_the_compiled_loops(case, monkeypatch, capsys):
    # where a bar is shown the steps run one at a time from Python: the same picks, bit for bit
    features, pool, k, prior = stepwise_cases()[case]
    compiled = arm.greedy_logdet(features, pool, k, prior=prior)
    monkeypatch.setattr(design, "progress_shown", lambda count: True)
    stepwise = arm.greedy_logdet(features, pool, k, prior=prior)
    assert stepwise.indices.tolist() == compiled.indices.tolist()
    assert stepwise.gains.tobytes() == compiled.gains.tobytes()
    assert stepwise.logdet == compiled.logdet
    shown = capsys.readouterr().err
    assert "greedy steps: 100%" in shown and f"{k}/{k}" in shown
    if isinstance(pool, arm.ImplicitPool):
        assert "scoring pairs: 100%" in shown


def test_progress_shows_only_for_large_work_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert design.progress_shown(design.PROGRESS_PAIRS)
    assert not design.progress_shown(design.PROGRESS_PAIRS - 1)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not design.progress_shown(10**12)


def test_rows_refuse_positions_that_are_not_integers():
    pool = arm.ImplicitPool.cross_prompt(np.arange(20) // 4, 30, seed=1)
    for bad in (np.array([1.7]), np.array([True, False]), np.array([np.nan])):
        with pytest.raises(TypeError, match=r"^positions must hold integers, got dtype"):
            pool.rows(bad)
    with pytest.raises(ValueError, match=r"positions must lie in \[0, 30\), got 30..30"):
        pool.rows([30])
    np.testing.assert_array_equal(pool.rows(torch.tensor([3, 4])), pool.rows([3, 4]))
    assert pool.rows([]).shape == (0, 2)


def test_a_budget_beyond_the_pools_distinct_pairs_says_so():
    features = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    pool = arm.ImplicitPool.cross_prompt(np.arange(20) // 4, 200, seed=0)
    distinct = len({tuple(r) for r in pool.materialize().tolist()})
    for run in (
        lambda: arm.greedy_logdet(features, pool, distinct + 1),
        lambda: arm.select("xtx", features=features, pairs=pool, k=distinct + 1),
    ):
        with pytest.raises(ValueError, match=rf"the implicit pool may hold only {distinct} dist"):
            run()
    assert len(arm.greedy_logdet(features, pool, distinct).indices) == distinct


def test_the_stored_pairs_the_errors_suggest_are_taken():
    """The expression an implicit pool's refusal suggests runs where the pool cannot (the
    pool repeats pairs, which a stored pool may not)."""
    rng = np.random.default_rng(4)
    ids = np.arange(12) // 3
    features = rng.normal(size=(12, 3)).astype(np.float32)
    pool = arm.ImplicitPool.cross_prompt(ids, 200, seed=2)
    with pytest.raises(ValueError, match=r"pass (np\.unique\(.*\)) for the others") as caught:
        arm.select("coreset", features=features, pairs=pool, k=3)
    suggestion = re.search(r"pass (np\.unique\(.*\)) for the others", str(caught.value))[1]
    stored = eval(suggestion, {"np": np, "pairs": pool})  # the message's own words
    assert len(stored) < len(pool) and len(np.unique(stored, axis=0)) == len(stored)
    assert len(arm.select("coreset", features=features, pairs=stored, k=3).indices) == 3
    # a cross-prompt pair counts against both its prompts: 4 prompts hold 2 pairs of quota 1
    quota = {"per_prompt": 1, "prompt_ids": ids}
    assert len(arm.select("coreset", features=features, pairs=stored, k=2, **quota).indices) == 2
