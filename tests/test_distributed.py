"""activerm_fast.distributed on real gloo process groups against one process.

The test starts one group per world size (1, 2, 3) as subprocesses of this file (``python
tests/test_distributed.py RANK WORLD PORT OUT DEVICE``, tests/gloo.py), each under a hard
timeout. Every rank
runs every check (every strategy over several splits of one pool: even, uneven, an empty
shard; greedy_logdet with weights, exclusions, a matrix prior, the lazy sweep and a state
refresh; arguments that are wrong on one rank) and writes what it got; rank 0 also writes the single-process
selection of the concatenated pool, computed in the same process. The assertions run here.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import gloo
import numpy as np
import pytest
import torch

import activerm_fast as arm

WORLDS = (1, 2, 3)
TIMEOUT_S = 150  # one group, every check
TOPK = {"dopt-topk", "past-dopt-topk"}  # pool Fisher matrix all-reduced: not bit-identical
# run with ridge_mode="relative" too; without labelled pairs its lambda comes from the pool's
# average pair, a sum over the ranks: not bit-identical either
RELATIVE = {"dopt-greedy", "past-dopt-greedy", "ensemble-dopt-greedy"}


# ---- what every rank runs ---------------------------------------------------------------------


def problem(device: str):
    rng = np.random.default_rng(11)
    prompt_ids = np.repeat(np.arange(20), 4)
    features = rng.normal(size=(80, 5))
    rewards = rng.normal(scale=2.0, size=(3, 80))
    pool = arm.pairs.cross_prompt(prompt_ids, 600, seed=5)
    pool[::3] = pool[::3, ::-1]  # both orientations
    labelled = np.concatenate(
        [arm.pairs.within_prompt(prompt_ids)[:10], pool[rng.choice(600, 25, replace=False)]]
    )
    member_features = np.stack([features, features * 0.5 + 0.1, -features])
    prompt_features = rng.normal(size=(20, 3))[prompt_ids]  # bal-pm's: one row per response

    def put(x):
        return torch.from_numpy(np.ascontiguousarray(x)).to(device)

    arrays = (features, member_features, rewards, pool, labelled, prompt_features)
    return tuple(put(x) for x in arrays)


def splits(count: int, world: int) -> dict[str, list[int]]:
    """Cut points (world + 1 of them) of the pool into shards."""
    even = [count * r // world for r in range(world + 1)]
    if world == 1:
        return {"whole": even}
    rng = np.random.default_rng(world)
    uneven = [0, *sorted(rng.choice(np.arange(1, count), world - 1, replace=False)), count]
    first_empty = [0, 0, *[count * r // (world - 1) for r in range(1, world)]]
    return {"even": even, "uneven": [int(c) for c in uneven], "empty": first_empty}


def outcome(call, *args, **kwargs):
    """(indices, gains, logdet) of ``call(*args, **kwargs)`` as NumPy, or ("error", type,
    message)."""
    try:
        sel = call(*args, **kwargs)
    except Exception as err:
        return ("error", type(err).__name__, str(err))
    as_array = [
        x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        for x in (sel.indices, sel.gains)
    ]
    return (*as_array, sel.logdet)


def worker(rank: int, world: int, device: str) -> dict:
    from activerm_fast import distributed
    from activerm_fast.testing import design as _design

    refreshes = []
    refresh_state = _design.refresh_state

    def counted(*args, **kwargs):
        refreshes.append(1)
        return refresh_state(*args, **kwargs)

    _design.refresh_state = counted
    features, members, rewards, pool, labelled, prompts = problem(device)
    got, want = {}, {}
    for split, cuts in splits(pool.shape[0], world).items():
        mine = pool[cuts[rank] : cuts[rank + 1]]
        # every strategy (bal-pm with its prompt features), and the greedy ones with the relative
        # ridge, whose lambda comes from the labelled pairs or else the pool's average pair
        cases = [(strategy, "absolute") for strategy in sorted(arm.STRATEGIES)]
        cases += [(strategy, "relative") for strategy in sorted(RELATIVE)]
        for strategy, ridge_mode in cases:
            for past in (False, True):
                kwargs = {
                    "features": members if strategy == "ensemble-dopt-greedy" else features,
                    "k": 40,
                    "rewards": rewards,
                    "labelled": labelled if past else None,
                    "ridge": 0.3,
                    "ridge_mode": ridge_mode,
                    "seed": 9,
                    "prompt_features": prompts,
                }
                case = strategy if ridge_mode == "absolute" else f"{strategy} {ridge_mode}"
                name = (split, case, past)
                got[name] = outcome(distributed.select, strategy, pairs=mine, **kwargs)
                if rank == 0 and split in ("whole", "even"):
                    want[(case, past)] = outcome(arm.select, strategy, pairs=pool, **kwargs)

        # greedy_logdet: weights, exclusions and a matrix prior are sharded / replicated
        rng = np.random.default_rng(3)
        weights = torch.from_numpy(rng.uniform(0.0, 0.25, size=pool.shape[0])).to(device)
        exclude = torch.from_numpy(rng.random(pool.shape[0]) < 0.2).to(device)
        root = rng.normal(size=(5, 5))
        prior = torch.from_numpy(root @ root.T + 0.5 * np.eye(5)).to(device)
        part = slice(cuts[rank], cuts[rank + 1])
        # the default sweep and the lazy one on every shard (CPU) pick what one process's dense
        # sweep picks
        for name, lazy in (("greedy_logdet", "auto"), ("lazy", device == "cpu")):
            got[(split, name)] = outcome(
                distributed.greedy_logdet,
                features,
                mine,
                60,
                weights=weights[part],
                prior=prior,
                exclude=exclude[part],
                lazy=lazy,
            )
            if rank == 0 and split in ("whole", "even"):
                want[name] = outcome(
                    arm.greedy_logdet,
                    features,
                    pool,
                    60,
                    weights=weights,
                    prior=prior,
                    exclude=exclude,
                    lazy=False,
                )
        # float32 features x 1e6 and k = 4 d: the running scores drift and the state is refreshed
        big = (features * 1e6).float()
        before = len(refreshes)
        got[(split, "refresh")] = outcome(
            distributed.greedy_logdet, big, mine, 20, weights=weights[part]
        )
        got[(split, "refreshes")] = len(refreshes) - before
        if rank == 0 and split in ("whole", "even"):
            want["refresh"] = outcome(arm.greedy_logdet, big, pool, 20, weights=weights)

    # every rank builds its own shard of a cross-prompt pool: the same selection as the whole
    prompt_ids = np.repeat(np.arange(20), 4)
    built = torch.from_numpy(arm.pairs.cross_prompt(prompt_ids, 2500, seed=1, shard=(rank, world)))
    got["built"] = outcome(
        distributed.select, "xtx", features=features, pairs=built.to(device), k=30
    )
    if rank == 0:
        whole = torch.from_numpy(arm.pairs.cross_prompt(prompt_ids, 2500, seed=1)).to(device)
        want["built"] = outcome(arm.select, "xtx", features=features, pairs=whole, k=30)

    # ties: two distinct rows, so most pairs share one difference and one score; every rule
    # must break them to the lowest global position, as one process does
    rows = torch.tensor([[0.0, 0.0], [1.0, 0.5]], dtype=torch.float64, device=device)
    tied = rows[torch.arange(12) % 2]
    everything = torch.from_numpy(arm.pairs.all_pairs(12)[::-1].copy()).to(device)
    level = torch.zeros((2, 12), dtype=torch.float64, device=device)
    cuts = splits(everything.shape[0], world)["uneven" if world > 1 else "whole"]
    for strategy in sorted(arm.STRATEGIES):
        for k in (0, 20, 66):  # none, some, every pair
            kwargs = {"features": tied, "k": k, "rewards": level, "ridge": 0.5, "seed": 2}
            got[("ties", strategy, k)] = outcome(
                distributed.select,
                strategy,
                pairs=everything[cuts[rank] : cuts[rank + 1]],
                **kwargs,
            )
            if rank == 0:
                want[("ties", strategy, k)] = outcome(
                    arm.select, strategy, pairs=everything, **kwargs
                )

    # wrong input on one rank only: every rank raises the same error, none waits
    last = world - 1
    cuts = next(iter(splits(pool.shape[0], world).values()))  # even
    mine = pool[cuts[rank] : cuts[rank + 1]]
    bad = mine.clone()
    if rank == last:
        bad[1, 0] = 80
    errors = {
        "range": lambda: distributed.select("xtx", features=features, pairs=bad, k=5),
        "k": lambda: distributed.select("xtx", features=features, pairs=mine, k=5 + (rank == last)),
        "features": lambda: distributed.greedy_logdet(features + (rank == last) * 1e-9, mine, 5),
        "budget": lambda: distributed.select("random", features=features, pairs=mine, k=601),
    }
    if world > 1:
        repeated = mine.clone()
        if rank == last:
            repeated[2] = pool[3].flip(0)  # rank 0's pair 3, other way round
        errors["repeat"] = lambda: distributed.greedy_logdet(features, repeated, 5)
    # one rank's shard overflows d^T F0^-1 d: its pairs touch a response 1e200 times larger
    huge = features.clone()
    huge[0] *= 1e200
    touches = (pool == 0).any(dim=1)
    shard = pool[touches][:50] if rank == last else pool[~touches][50 * rank : 50 * rank + 50]
    errors["overflow"] = lambda: distributed.greedy_logdet(huge, shard, 5)
    for name, call in errors.items():
        got[("error", name)] = outcome(call)
    return {"got": got, "want": want}


# ---- the test ---------------------------------------------------------------------------------


def run_group(world: int, tmp_path: Path, device: str) -> list[dict]:
    return gloo.run_ranks(__file__, world, tmp_path, device, timeout=TIMEOUT_S)


def failed(result) -> bool:
    return isinstance(result[0], str)


def same(got, want, name, exact=True):
    assert not failed(got), f"{name}: {got}"
    assert not failed(want), f"{name}: the single process failed: {want}"
    np.testing.assert_array_equal(got[0], want[0], err_msg=str(name))
    if exact:
        assert got[1].tobytes() == want[1].tobytes(), name
        assert got[2] == want[2] or (math.isnan(got[2]) and math.isnan(want[2])), name
    else:
        np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-13, err_msg=str(name))
        assert got[2] == pytest.approx(want[2], rel=1e-12), name


def check_results(results: list[dict], world: int) -> None:
    want = results[0]["want"]
    for rank, result in enumerate(results):
        for name, got in result["got"].items():
            if name[0] == "error" or name[1] == "refreshes":
                continue
            if name == "built":
                same(got, want[name], (world, rank, name))
                continue
            key = name if name[0] == "ties" else name[1:] if len(name) == 3 else name[1]
            pool_sum = len(name) == 3 and (
                name[1] in TOPK or (name[1].endswith(" relative") and not name[2])
            )
            exact = not pool_sum
            same(got, want[key], (world, rank, *name), exact)
            # and every rank returned the same bits as rank 0
            same(got, results[0]["got"][name], (world, rank, *name, "vs rank 0"))
        for split in splits(600, world):
            assert result["got"][(split, "refreshes")] > 0  # the refresh path ran
    errors = {name[1]: got for name, got in results[0]["got"].items() if name[0] == "error"}
    last = world - 1
    expected = {
        "range": ("ValueError", rf"^rank {last}: pairs\[1\] = \(80, \d+\) is out of range"),
        "k": (
            "ValueError" if world > 1 else None,
            rf"^rank {last}: k is {5 + 1} but rank 0's is 5; every rank must pass the same k",
        ),
        "features": (
            "ValueError" if world > 1 else None,
            rf"^rank {last}: features differs from rank 0's \(shape \(80, 5\)",
        ),
        "budget": ("ValueError", r"^k = 601 is larger than the 600 pairs available"),
        "repeat": (
            "ValueError",
            rf"^rank {last}: pairs\[2\] repeats the pair {{\d+, \d+}} of rank 0's pairs\[3\] "
            r"\(global positions \d+ and 3\)",
        ),
        "overflow": ("ValueError", rf"^rank {last}: d\^T F0\^-1 d of pair \d+ overflows float64"),
    }
    for name, got in errors.items():
        kind, pattern = expected[name]
        for rank, result in enumerate(results):
            theirs = result["got"][("error", name)]
            assert failed(theirs) == failed(got), (name, rank)
            if failed(got):
                assert theirs == got, (name, rank)  # the same error on every rank
        if kind is None:  # one rank: nothing to disagree with
            assert not failed(got), (name, got)
            continue
        assert failed(got) and got[1] == kind, (name, got)
        assert re.search(pattern, got[2]), (name, got[2])


@pytest.mark.parametrize("world", WORLDS)
def test_sharded_selection_is_the_single_process_selection(world, tmp_path):
    check_results(run_group(world, tmp_path, "cpu"), world)


@pytest.mark.skipif(not arm.build_info()["gpu_usable"], reason="no usable GPU: CUDA not run")
def test_sharded_selection_on_cuda_features(tmp_path):
    # gloo between the ranks, the engine on the GPU: records travel through the CPU
    check_results(run_group(2, tmp_path, "cuda"), 2)


@pytest.mark.parametrize("num", [0, 700, 2500, 40_000])
def test_cross_prompt_shards_concatenate_to_the_pool(rng, num):
    prompt_ids = rng.integers(0, 30, size=400)
    whole = arm.pairs.cross_prompt(prompt_ids, num, seed=4)
    for world in (1, 2, 3, 7):
        parts = [
            arm.pairs.cross_prompt(prompt_ids, num, seed=4, shard=(rank, world))
            for rank in range(world)
        ]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
        assert sum(len(p) for p in parts) == num
    if num >= 2 * 1024:  # several blocks: the ranks share the work
        assert 0 < len(arm.pairs.cross_prompt(prompt_ids, num, seed=4, shard=(0, 2))) < num


def test_within_prompt_and_candidate_pool_shards(rng):
    prompt_ids = rng.integers(0, 9, size=120)
    for kind in arm.pairs.POOLS:
        whole = arm.pairs.candidate_pool(prompt_ids, kind, 500, seed=2)
        for world in (1, 2, 5):
            parts = [
                arm.pairs.candidate_pool(prompt_ids, kind, 500, seed=2, shard=(rank, world))
                for rank in range(world)
            ]
            np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("form", ["npy", "npz", "npz-compressed"])
def test_load_shard_reads_a_ranks_rows(tmp_path, form):
    pool = arm.pairs.all_pairs(40)[::-1].copy()
    path = tmp_path / f"pool.{form[:3]}"
    if form == "npy":
        np.save(path, pool)
    elif form == "npz":
        np.savez(path, pairs=pool, other=np.ones(3))
    else:
        np.savez_compressed(path, pairs=pool)
    parts = [arm.pairs.load_shard(path, (rank, 3)) for rank in range(3)]
    np.testing.assert_array_equal(np.concatenate(parts), pool)
    assert [len(p) for p in parts] == [260, 260, 260]
    if form != "npz-compressed":
        assert isinstance(parts[1], np.memmap)  # read in place, not loaded
    if form != "npy":
        with pytest.raises(ValueError, match="has no array 'labels'"):
            arm.pairs.load_shard(path, (0, 3), key="labels")


def test_shard_arguments_are_checked():
    with pytest.raises(ValueError, match="shard rank must be below the world size 2, got 2"):
        arm.pairs.cross_prompt(np.arange(5), 3, shard=(2, 2))
    with pytest.raises(TypeError, match=r"shard must be a \(rank, world\) tuple"):
        arm.pairs.within_prompt(np.arange(5), shard=[0, 1])
    with pytest.raises(ValueError, match="shard world size must be a positive integer, got 0"):
        arm.pairs.shard_bounds(10, (0, 0))


# the default strategy; with every design option; bal-pm with the dataset's prompt features
COMMAND_OPTIONS = [
    ["--strategy", "past-dopt-greedy"],
    ["--strategy", "past-dopt-greedy", "--ridge", "0.05", "--ridge-mode", "relative"]
    + ["--features", "embedding", "--lazy", "true"],
    ["--strategy", "bal-pm"],
    ["--strategy", "bald", "--per-prompt", "2"],  # a ranking under a quota, sharded
    ["--implicit"],  # an implicit pool: each rank holds a range of k, the rows from the seed
    ["--implicit", "--strategy", "random"],  # every rank draws the same positions
    ["--processes", "2"],  # select starting its two ranks itself, not torchrun
]


@pytest.mark.parametrize(
    "options",
    COMMAND_OPTIONS,
    ids=[
        "default",
        "design",
        "bal-pm",
        "ranking-quota",
        "implicit",
        "implicit-random",
        "processes",
    ],
)
def test_command_line_under_torchrun_writes_the_single_process_batch(tmp_path, options):
    from activerm_fast import data
    from activerm_fast.cli import main
    from activerm_fast.simulation.simulate import usable_cores

    if "--processes" in options and usable_cores() < 2:
        pytest.skip("--processes 2 needs two usable cores")
    dataset = tmp_path / "small.npz"
    data.synthetic(
        num_train_prompts=30, num_test_prompts=4, test_responses_per_prompt=5, dim=6, seed=3
    ).save(dataset)
    labelled = tmp_path / "labelled.jsonl"
    with open(labelled, "w") as f:
        for i in range(12):
            f.write(json.dumps({"first": 3 * i, "second": 3 * i + 40, "label": i % 2}) + "\n")
    common = ["--data", str(dataset), "--labelled", str(labelled), "--k", "12"]
    common += ["--pool-size", "3000", "--ensemble", "2", *options]
    assert main(["select", *common, "--out", str(tmp_path / "one.jsonl")]) == 0
    command = [sys.executable, "-m", "activerm_fast", "select", *common]
    if "--processes" not in options:
        command[1:1] = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["--out", str(tmp_path / "two.jsonl")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote 12 pairs" in done.stdout and "(2 processes)" in done.stdout
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()


def test_command_line_under_torchrun_reports_an_agreed_error_once(tmp_path):
    """A bad labelled file fails on every rank; rank 0 alone prints the agreed one-line error,
    every process exits 2, and none aborts on the way out (the gloo exit race)."""
    from activerm_fast import data

    dataset = tmp_path / "small.npz"
    data.synthetic(num_train_prompts=10, num_test_prompts=2, dim=4, seed=1).save(dataset)
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(json.dumps({"first": 0, "second": 10**6, "label": 1}) + "\n")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "-m", "activerm_fast", "select", "--data", str(dataset)]
    command += ["--labelled", str(labelled), "--k", "3", "--out", str(tmp_path / "batch.jsonl")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if "activerm-fast:" in line]
    assert len(ours) == 1, done.stderr[-3000:]
    assert ours[0].startswith("activerm-fast: error: rank 0: ") and "second" in ours[0], ours
    assert "exitcode: 2" in done.stderr and "exitcode: -6" not in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "batch.jsonl").exists()


def test_needs_a_process_group():
    from activerm_fast import distributed

    if torch.distributed.is_initialized():
        pytest.skip("a process group is already initialised")
    with pytest.raises(RuntimeError, match="needs an initialised torch.distributed"):
        distributed.select("xtx", features=np.ones((3, 2)), pairs=np.array([[0, 1]]), k=1)


if __name__ == "__main__":
    gloo.main(worker)
