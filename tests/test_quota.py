"""The per-prompt quota (``per_prompt=``): at most m chosen pairs per prompt in one batch.

For the greedy log-det engine it is a partition-matroid constraint enforced in the engine
(the pairs of a full prompt masked after the pick that fills it); the picks must equal a
brute-force constrained greedy, and be the same bits on the dense and lazy sweeps, through a
state refresh, and on a pool sharded over 2 gloo ranks. The other strategies take their
ranking or draw in order while the prompts have room. Bad input is a one-line ValueError
naming the argument.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import gloo
import numpy as np
import pytest
import torch

import activerm_fast as arm
from activerm_fast.testing import design, gpu_usable, reference

GREEDY = ("xtx", "dopt-greedy", "past-dopt-greedy", "ensemble-dopt-greedy")


def prompt_counts(pairs: np.ndarray, prompt_ids: np.ndarray) -> Counter[int]:
    """Chosen pairs per prompt, a cross-prompt pair counted against both of its prompts."""
    counts: Counter[int] = Counter()
    for i, j in pairs:
        for prompt in {int(prompt_ids[i]), int(prompt_ids[j])}:
            counts[prompt] += 1
    return counts


def instance(seed: int, prompts: int = 12, per: int = 4, d: int = 5):
    rng = np.random.default_rng(seed)
    prompt_ids = np.repeat(np.arange(prompts), per)
    features = rng.normal(size=(prompts * per, d))
    rewards = rng.normal(size=(3, prompts * per))
    return rng, prompt_ids, features, rewards


@pytest.mark.parametrize("pool", ["within", "cross", "both"])
@pytest.mark.parametrize("m", [1, 2])
def test_greedy_under_a_quota_is_the_constrained_brute_force_greedy(pool, m):
    rng, prompt_ids, features, rewards = instance(3)
    within = arm.pairs.within_prompt(prompt_ids)
    cross = arm.pairs.cross_prompt(prompt_ids, 150, seed=1)
    pairs = {"within": within, "cross": cross, "both": np.concatenate([within, cross])}[pool]
    k = 6 if pool != "within" and m == 1 else 10
    weights = arm.fisher_weights(rewards[0], pairs)
    batch = arm.select(
        "dopt-greedy",
        features=features,
        pairs=pairs,
        k=k,
        rewards=rewards[0],
        per_prompt=m,
        prompt_ids=prompt_ids,
    )
    chosen, gains, logdet = reference.greedy_logdet(
        features, pairs, k, weights=weights, prior=1e-3, per_prompt=m, prompt_ids=prompt_ids
    )
    assert batch.indices.tolist() == chosen.tolist()
    np.testing.assert_allclose(batch.gains, gains, rtol=1e-9)
    assert batch.logdet == pytest.approx(logdet, rel=1e-9)
    assert max(prompt_counts(pairs[batch.indices], prompt_ids).values()) <= m
    if m == 1:  # the quota binds: without it the greedy picks 2 pairs of some prompt
        free = arm.select("dopt-greedy", features=features, pairs=pairs, k=k, rewards=rewards[0])
        assert max(prompt_counts(pairs[free.indices], prompt_ids).values()) > m


@pytest.mark.parametrize("strategy", sorted(arm.STRATEGIES))
@pytest.mark.parametrize("pool", ["within", "cross"])
def test_no_strategy_exceeds_the_quota(strategy, pool):
    if pool == "cross" and arm.STRATEGIES[strategy].uses_prompt_ids:
        pytest.skip("the per-prompt rules choose within-prompt pairs only")
    rng, prompt_ids, features, rewards = instance(5)
    pairs = (
        arm.pairs.within_prompt(prompt_ids)
        if pool == "within"
        else arm.pairs.cross_prompt(prompt_ids, 200, seed=2)
    )
    labelled = pairs[[0, 7]]
    k = 6 if pool == "cross" else 12
    batch = arm.select(
        strategy,
        features=features,
        pairs=pairs,
        k=k,
        rewards=rewards,
        labelled=labelled,
        prompt_features=rng.normal(size=(12, 3))[prompt_ids],
        per_prompt=1,
        prompt_ids=prompt_ids,
    )
    picked = pairs[batch.indices]
    assert len(set(batch.indices.tolist())) == k
    assert not set(batch.indices.tolist()) & {0, 7}
    assert max(prompt_counts(picked, prompt_ids).values()) == 1


def test_ranking_and_draw_follow_their_order_while_prompts_have_room():
    rng, prompt_ids, features, rewards = instance(7)
    pairs = arm.pairs.within_prompt(prompt_ids)
    batch = arm.select(
        "max-gap",
        features=features,
        pairs=pairs,
        k=5,
        rewards=rewards[0],
        per_prompt=1,
        prompt_ids=prompt_ids,
    )
    gap = np.abs(rewards[0][pairs[:, 0]] - rewards[0][pairs[:, 1]])
    want, seen = [], set()
    for at in np.argsort(-gap, kind="stable"):
        prompt = int(prompt_ids[pairs[at, 0]])
        if prompt not in seen:
            seen.add(prompt)
            want.append(int(at))
    assert batch.indices.tolist() == want[:5]
    drawn = arm.select(
        "random",
        features=features,
        pairs=pairs,
        k=12,
        seed=4,
        per_prompt=1,
        prompt_ids=prompt_ids,
    )
    assert sorted(int(prompt_ids[pairs[i, 0]]) for i in drawn.indices) == list(range(12))


@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("m", [1, 3])
def test_dense_and_lazy_sweeps_pick_the_same_bits_under_a_quota(members, m):
    rng, prompt_ids, features, rewards = instance(9, prompts=40, per=6, d=6)
    pairs = np.concatenate(
        [arm.pairs.within_prompt(prompt_ids), arm.pairs.cross_prompt(prompt_ids, 2000, seed=3)]
    )
    p = torch.from_numpy(pairs)
    f = torch.from_numpy(features)
    r = torch.from_numpy(rewards[:members])
    weights = torch.stack([arm.fisher_weights(r[e], p) for e in range(members)], dim=1)
    quota = design.PromptQuota(m, torch.from_numpy(prompt_ids).long(), 40)
    priors = [design.Prior.of_ridge(1e-2, 6)] * members
    excluded = torch.zeros(len(pairs), dtype=torch.bool)
    excluded[::17] = True
    results = []
    for lazy in (False, True):
        problem = design.GreedyProblem(
            f[None], p, weights.contiguous(), priors, excluded, lazy, quota=quota
        )
        results.append(design.greedy(problem, 18 if m == 1 else 30))
    (dense, dense_gains, dense_logdet), (lazy, lazy_gains, lazy_logdet) = results
    assert dense.tolist() == lazy.tolist()
    assert torch.equal(dense_gains, lazy_gains) and dense_logdet == lazy_logdet
    assert not excluded[dense].any()
    assert max(prompt_counts(pairs[dense.numpy()], prompt_ids).values()) <= m


def test_a_state_refresh_keeps_full_prompts_masked(monkeypatch):
    rng, prompt_ids, features, rewards = instance(13)
    pairs = np.concatenate(
        [arm.pairs.within_prompt(prompt_ids), arm.pairs.cross_prompt(prompt_ids, 200, seed=5)]
    )
    options = dict(
        features=features,
        pairs=pairs,
        k=14,
        rewards=rewards[0],
        per_prompt=2,
        prompt_ids=prompt_ids,
    )
    plain = arm.select("dopt-greedy", **options)
    refreshes = []
    refresh_state = design.refresh_state

    def counted(*args, **kwargs):
        refreshes.append(1)
        return refresh_state(*args, **kwargs)

    # every drift counts: the engine stops for a refresh at nearly every step
    monkeypatch.setattr(design, "REFRESH_TOLERANCE", 1e-300)
    monkeypatch.setattr(design, "refresh_state", counted)
    for lazy in (False, True):
        again = arm.select("dopt-greedy", lazy=lazy, **options)
        assert again.indices.tolist() == plain.indices.tolist()
        np.testing.assert_allclose(again.gains, plain.gains, rtol=1e-9)
    assert refreshes
    assert max(prompt_counts(pairs[plain.indices], prompt_ids).values()) <= 2


def test_quota_index_is_the_prompts_pairs():
    quota = design.PromptQuota(2, torch.tensor([0, 0, 1, 2, 2]), 3)
    pairs = torch.tensor([[0, 1], [1, 3], [2, 4], [3, 4], [0, 2]])
    offsets, members = quota.index(pairs)
    assert offsets.tolist() == [0, 3, 5, 8]
    assert members.tolist() == [0, 1, 4, 2, 4, 1, 2, 3]


def test_bad_quota_arguments_are_one_line_errors():
    rng, prompt_ids, features, rewards = instance(1)
    pairs = arm.pairs.within_prompt(prompt_ids)
    options = dict(features=features, pairs=pairs, k=3, rewards=rewards[0])
    cases = [
        (
            dict(per_prompt=0, prompt_ids=prompt_ids),
            r"^per_prompt must be a positive integer, got 0$",
        ),
        (dict(per_prompt=2), r"^per_prompt=2 needs prompt_ids"),
        (dict(per_prompt=1, prompt_ids=prompt_ids[:5]), r"^prompt_ids must have shape \(48,\)"),
    ]
    for extra, message in cases:
        for strategy in ("dopt-greedy", "random"):
            with pytest.raises(ValueError, match=message) as info:
                arm.select(strategy, **options, **extra)
            assert "\n" not in str(info.value)
    with pytest.raises(TypeError, match="per_prompt"):
        arm.select("dopt-greedy", **options, per_prompt=1.5, prompt_ids=prompt_ids)
    # prompt labels that are not finite, or of kinds that do not sort together
    labels = prompt_ids.astype(float)
    labels[3] = np.nan
    mixed = np.array([str(p) if p % 2 else int(p) for p in prompt_ids], dtype=object)
    for bad, error, message in (
        (labels, ValueError, r"^prompt_ids must be finite, got nan$"),
        (mixed, TypeError, r"^prompt_ids must hold labels of one kind, integers or strings"),
    ):
        for strategy in ("dopt-greedy", "random", "max-min"):
            with pytest.raises(error, match=message):
                arm.select(strategy, **options, per_prompt=1, prompt_ids=bad)
    # a quota beyond int64 is no limit: the picks of none
    free = arm.select("dopt-greedy", **options)
    huge = arm.select("dopt-greedy", **options, per_prompt=10**30, prompt_ids=prompt_ids)
    np.testing.assert_array_equal(huge.indices, free.indices)
    too_many = dict(options, k=13)
    for strategy in ("dopt-greedy", "max-gap", "random", "coreset"):
        with pytest.raises(ValueError, match="per_prompt=1") as info:
            arm.select(strategy, **too_many, per_prompt=1, prompt_ids=prompt_ids)
        assert "\n" not in str(info.value)
    # a ranking or draw taken in order says how far it got (12 prompts, one pair each)
    for strategy, extra in (
        ("random", {}),
        ("coreset", {}),
        ("bal-pm", {"uncertainty": "laplace"}),
    ):
        with pytest.raises(ValueError, match=r"^per_prompt=1 left no available pair after 12 "):
            arm.select(strategy, **too_many, **extra, per_prompt=1, prompt_ids=prompt_ids)


def test_string_prompt_ids_and_select_with_model():
    rng, prompt_ids, features, rewards = instance(2)
    names = np.array([f"prompt-{p}" for p in prompt_ids])
    pairs = arm.pairs.within_prompt(prompt_ids)
    model = arm.RewardModel(5, hidden=(4,), ensemble=2)
    batch = arm.select_with_model(
        "ensemble-dopt-greedy",
        model,
        features.astype(np.float32),
        pairs,
        12,
        per_prompt=1,
        prompt_ids=names,
    )
    assert sorted(int(prompt_ids[pairs[i, 0]]) for i in batch.indices) == list(range(12))


def test_loop_config_and_command_line_take_the_quota(tmp_path):
    assert arm.LoopConfig(per_prompt=1).per_prompt == 1
    with pytest.raises(ValueError, match="per_prompt"):
        arm.LoopConfig(per_prompt=0)
    from activerm_fast.cli import main

    data = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(
        data,
        embeddings=rng.normal(size=(40, 6)).astype(np.float32),
        prompt_ids=np.repeat(np.arange(10), 4),
        gold=rng.normal(size=40),
    )
    out = tmp_path / "batch.jsonl"
    code = main(
        [
            "select",
            "--data",
            str(data),
            "--k",
            "8",
            "--pool",
            "within",
            "--labelled",
            str(tmp_path / "none.jsonl"),
            "--per-prompt",
            "1",
            "--out",
            str(out),
            "--strategy",
            "xtx",
        ]
    )
    assert code == 0
    import json

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8 and len({row["first_prompt"] for row in rows}) == 8


def test_simulated_rounds_obey_the_quota():
    dataset = arm.synthetic(30, 5, 4, 4, dim=8, seed=0)
    train = dataset.train()
    oracle = arm.BTOracle(train.gold, beta=1.0, seed=0)
    batches = []

    class Recording:
        def label(self, pairs):
            batches.append(np.asarray(pairs))
            return oracle.label(pairs)

    config = arm.LoopConfig(
        pool="within",
        rounds=2,
        per_round=6,
        prompts_per_round=10,
        hidden=(8,),
        epochs=2,
        ensemble=2,
        per_prompt=1,
    )
    arm.ActiveLoop(dataset, "dopt-greedy", config, seed=0, oracle=Recording()).run()
    assert len(batches) == 2
    for batch in batches:
        assert len(batch) == 6
        assert max(prompt_counts(batch, train.prompt_ids).values()) == 1


@pytest.mark.skipif(not gpu_usable(), reason="no usable GPU: the CUDA quota kernel not run")
@pytest.mark.parametrize("members", [1, 3])
def test_cuda_engine_picks_the_cpu_bits_under_a_quota(members):
    rng, prompt_ids, features, rewards = instance(17, prompts=30, per=6, d=6)
    pairs = np.concatenate(
        [arm.pairs.within_prompt(prompt_ids), arm.pairs.cross_prompt(prompt_ids, 1500, seed=4)]
    )
    strategy = "ensemble-dopt-greedy" if members > 1 else "dopt-greedy"
    options = dict(k=20, per_prompt=1, prompt_ids=prompt_ids)
    cpu = arm.select(strategy, features=features, pairs=pairs, rewards=rewards[:members], **options)
    gpu = arm.select(
        strategy,
        features=torch.from_numpy(features).cuda(),
        pairs=torch.from_numpy(pairs).cuda(),
        rewards=torch.from_numpy(rewards[:members]).cuda(),
        **options,
    )
    assert gpu.indices.cpu().tolist() == cpu.indices.tolist()
    assert np.array_equal(gpu.gains.cpu().numpy(), cpu.gains)


# ---- the sharded engine on 2 gloo ranks -------------------------------------------------------


# the strategies that rank or draw, on a sharded pool: two quotas, an empty shard, budgets that
# need most of the order walked (the largest that fit each strategy: 14 and 26 of 20 prompts)
# and one that cannot fit (k = 21)
RANKED = ("max-gap", "entropy", "bald", "random")
RANKED_CASES = [(1, 5), (1, 14), (2, 12), (2, 26), (1, 21)]  # (per_prompt, k)


def sharded_worker(rank: int, world: int) -> dict:
    """One rank of a gloo group (tests/gloo.py): each selection on this rank's shard of one
    pool beside the single process's selection of the whole pool."""
    from activerm_fast import distributed

    rng, prompt_ids, features, rewards = instance(21, prompts=20, per=5)
    pool = np.concatenate(
        [arm.pairs.within_prompt(prompt_ids), arm.pairs.cross_prompt(prompt_ids, 400, seed=7)]
    )
    cut = [0, 157, len(pool)]
    common = dict(features=features, rewards=rewards, prompt_ids=prompt_ids)
    common["labelled"] = pool[[3, 200]]
    got = {}
    for strategy in ("dopt-greedy", "ensemble-dopt-greedy", "coreset", "bal-pm"):
        for lazy in (False, True):
            options = dict(common, k=12, per_prompt=1, lazy=lazy)
            sharded = distributed.select(strategy, pairs=pool[cut[rank] : cut[rank + 1]], **options)
            alone = arm.select(strategy, pairs=pool, **options)
            got[(strategy, lazy)] = (sharded, alone)
    for cuts in (cut, [0, 0, len(pool)]):
        for strategy in RANKED:
            for per_prompt, k in RANKED_CASES:
                options = dict(common, k=k, per_prompt=per_prompt, seed=5)
                mine = pool[cuts[rank] : cuts[rank + 1]]
                got[(strategy, per_prompt, k, cuts[1])] = tuple(
                    outcome(call, strategy, pairs=pairs, **options)
                    for call, pairs in ((distributed.select, mine), (arm.select, pool))
                )
    return {"got": got, "pool": pool, "prompt_ids": prompt_ids}


def outcome(call, *args, **kwargs):
    """The selection, or the message of the ValueError it raised."""
    try:
        return call(*args, **kwargs)
    except ValueError as err:
        return str(err)


def test_sharded_quota_is_the_single_process_quota(tmp_path: Path):
    refused = 0
    for result in gloo.run_ranks(__file__, 2, tmp_path):
        for key, (sharded, alone) in result["got"].items():
            if isinstance(alone, str):  # the quota leaves too few pairs: the same error
                assert sharded == alone, key
                refused += 1
                continue
            assert not isinstance(sharded, str), (key, sharded)
            assert np.asarray(sharded.indices).tolist() == np.asarray(alone.indices).tolist(), key
            assert np.array_equal(np.asarray(sharded.gains), np.asarray(alone.gains)), key
            picked = result["pool"][np.asarray(sharded.indices)]
            limit = key[1] if key[0] in RANKED else 1
            assert max(prompt_counts(picked, result["prompt_ids"]).values()) <= limit, key
    assert refused == 2 * 2 * len(RANKED)  # k = 21 on each rank, split and strategy alone


if __name__ == "__main__":
    gloo.main(sharded_worker)
