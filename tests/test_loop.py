"""ActiveLoop: rounds, metrics, determinism, human-labelled data, and kill-and-resume."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from activerm_fast import data
from activerm_fast.model import RewardModel
from activerm_fast.simulation.loop import ActiveLoop, LoopConfig
from activerm_fast.simulation.oracle import BTOracle
from activerm_fast.simulation.simulate import simulate

from conftest import gold_labelled

SMALL = LoopConfig(
    rounds=3,
    per_round=15,
    prompts_per_round=40,
    cross_pairs=3000,
    ensemble=2,
    hidden=(16,),
    epochs=5,
)
TIMINGS = ("select_seconds", "fit_seconds")


@pytest.fixture(scope="module")
def dataset():
    return data.synthetic(
        num_train_prompts=60, num_test_prompts=10, test_responses_per_prompt=12, dim=8, seed=3
    )


def without_timings(records):
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in records]


class CountingOracle:
    """A BT oracle that remembers every pair it was asked."""

    def __init__(self, gold):
        self.inner = BTOracle(gold, beta=2.0, seed=0)
        self.asked: list[tuple[int, int]] = []

    def label(self, pairs):
        self.asked.extend(map(tuple, np.sort(pairs, axis=1).tolist()))
        return self.inner.label(pairs)


@pytest.mark.parametrize("pool", ["cross", "within"])
def test_rounds_record_metrics(dataset, pool):
    config = LoopConfig(**{**SMALL.__dict__, "pool": pool})
    records = ActiveLoop(dataset, "dopt-greedy", config, seed=1).run()
    assert [r["round"] for r in records] == [1, 2, 3]
    assert [r["labels"] for r in records] == [15, 30, 45]
    for r in records:
        assert -1 <= r["spearman"] <= 1
        assert 0 <= r["best_of_4_quantile"] <= 1 and np.isfinite(r["best_of_4_gold"])
        assert r["select_seconds"] > 0 and r["fit_seconds"] > 0 and r["pool_size"] >= 15


def test_timings_measure_the_selection_and_the_fit_alone(dataset, monkeypatch):
    # a clock that only the selection and the fit move, by amounts known here (exact binary
    # fractions): select_seconds and fit_seconds must be those amounts, round by round
    from activerm_fast.simulation import loop as loop_module

    now = [0.0]
    monkeypatch.setattr(loop_module, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    choose, fit = ActiveLoop._choose, ActiveLoop._fit
    calls = {"choose": 0}

    def timed_choose(self, *args, **kwargs):
        calls["choose"] += 1
        now[0] += 0.25 * calls["choose"]
        return choose(self, *args, **kwargs)

    def timed_fit(self, *args, **kwargs):
        now[0] += 8.0
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(ActiveLoop, "_choose", timed_choose)
    monkeypatch.setattr(ActiveLoop, "_fit", timed_fit)
    records = ActiveLoop(dataset, "dopt-greedy", SMALL, seed=1).run()
    assert [r["select_seconds"] for r in records] == [0.25, 0.5, 0.75]
    assert [r["fit_seconds"] for r in records] == [8.0, 8.0, 8.0]


def test_same_seed_same_run_and_strategies_share_the_first_round(dataset):
    a = ActiveLoop(dataset, "past-dopt-greedy", SMALL, seed=5).run()
    b = ActiveLoop(dataset, "past-dopt-greedy", SMALL, seed=5).run()
    c = ActiveLoop(dataset, "random", SMALL, seed=5).run()
    assert without_timings(a) == without_timings(b)
    assert without_timings(a)[0] | {"strategy": "random"} == without_timings(c)[0]


def test_labels_are_never_asked_twice(dataset):
    oracle = CountingOracle(dataset.train().gold)
    ActiveLoop(dataset, "ensemble-dopt-greedy", SMALL, seed=2, oracle=oracle).run()
    assert len(oracle.asked) == 45 and len(set(oracle.asked)) == 45


class Killed(Exception):
    pass


@pytest.mark.parametrize("where", ["after a round", "during a fit"])
def test_kill_and_resume_continues_without_losing_or_reasking(
    dataset, tmp_path, monkeypatch, where
):
    gold = dataset.train().gold
    reference = ActiveLoop(
        dataset, "past-dopt-greedy", SMALL, seed=4, oracle=CountingOracle(gold)
    ).run()

    oracle = CountingOracle(gold)
    run_dir = tmp_path / "run"
    loop = ActiveLoop(
        dataset, "past-dopt-greedy", SMALL, seed=4, checkpoint_dir=run_dir, oracle=oracle
    )
    if where == "after a round":

        def stop_after_first(record):
            raise Killed

        with pytest.raises(Killed):
            loop.run(on_round=stop_after_first)
    else:
        real_fit, calls = RewardModel.fit, []

        def fit_then_die(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:  # the second round has its labels but is not committed
                raise Killed
            return real_fit(self, *args, **kwargs)

        monkeypatch.setattr(RewardModel, "fit", fit_then_die)
        with pytest.raises(Killed):
            loop.run()
        monkeypatch.setattr(RewardModel, "fit", real_fit)

    resumed = ActiveLoop(
        dataset, "past-dopt-greedy", SMALL, seed=4, checkpoint_dir=run_dir, oracle=oracle
    ).run()
    assert without_timings(resumed) == without_timings(reference)
    assert len(oracle.asked) == 45 and len(set(oracle.asked)) == 45
    assert not (run_dir / "pending.npz").exists()


def test_checkpoint_with_other_settings_is_refused(dataset, tmp_path):
    ActiveLoop(dataset, "random", SMALL, seed=0, checkpoint_dir=tmp_path).run()
    other = LoopConfig(**{**SMALL.__dict__, "per_round": 10})
    with pytest.raises(ValueError, match="holds a run with other settings"):
        ActiveLoop(dataset, "random", other, seed=0, checkpoint_dir=tmp_path).run()


def test_checkpoint_of_other_data_is_refused(dataset, tmp_path):
    """Data with the same training rows but other embeddings, gold or split is not resumed
    (its first rounds were another dataset's); the same data under another name is."""
    one = replace(SMALL, rounds=1)
    records = ActiveLoop(dataset, "random", one, seed=0, checkpoint_dir=tmp_path).run()
    nudged = dataset.embeddings.copy()
    nudged[0, 0] += 1.0
    others = {
        "embeddings": replace(dataset, embeddings=nudged),
        "gold": replace(dataset, gold=dataset.gold[::-1].copy()),
        "split": replace(dataset, is_test=dataset.is_test[::-1].copy()),
    }
    for what, other in others.items():
        assert other.train().n == dataset.train().n, what
        with pytest.raises(ValueError, match=r"holds a run on other data \(another dataset"):
            ActiveLoop(other, "random", SMALL, seed=0, checkpoint_dir=tmp_path).run()
    renamed = replace(dataset, name="another name")
    resumed = ActiveLoop(renamed, "random", SMALL, seed=0, checkpoint_dir=tmp_path).run()
    assert without_timings(resumed[:1]) == without_timings(records)


def test_more_rounds_continue_a_finished_campaign_exactly(dataset, tmp_path):
    """A finished 2-round campaign asked for 3 runs only the third round, asking no pair twice,
    and ends as an uninterrupted 3-round run; asked for 1 round, it is refused."""
    gold = dataset.train().gold
    reference = ActiveLoop(
        dataset, "past-dopt-greedy", SMALL, seed=2, oracle=CountingOracle(gold)
    ).run()
    shorter = LoopConfig(**{**SMALL.__dict__, "rounds": 2})
    oracle = CountingOracle(gold)
    first = ActiveLoop(
        dataset, "past-dopt-greedy", shorter, seed=2, checkpoint_dir=tmp_path, oracle=oracle
    ).run()
    assert without_timings(first) == without_timings(reference[:2])
    seen = []
    continued = ActiveLoop(
        dataset, "past-dopt-greedy", SMALL, seed=2, checkpoint_dir=tmp_path, oracle=oracle
    ).run(on_round=seen.append)
    assert [r["round"] for r in seen] == [3]
    assert without_timings(continued) == without_timings(reference)
    assert len(oracle.asked) == 45 and len(set(oracle.asked)) == 45
    fewer = LoopConfig(**{**SMALL.__dict__, "rounds": 1})
    with pytest.raises(ValueError, match=r"holds 3 rounds, more than rounds=1; ask for at least"):
        ActiveLoop(dataset, "past-dopt-greedy", fewer, seed=2, checkpoint_dir=tmp_path).run()


def test_human_labelled_data_uses_stored_labels_and_pair_accuracy(rng):
    synthetic = data.synthetic(
        num_train_prompts=50, num_test_prompts=10, test_responses_per_prompt=8, dim=6, seed=1
    )
    from activerm_fast.data.pairs import within_prompt

    human = gold_labelled(synthetic, within_prompt(synthetic.prompt_ids), "human")
    records = ActiveLoop(human, "bald", SMALL, seed=0).run()
    assert [r["labels"] for r in records] == [15, 30, 45]
    assert all(0 <= r["pair_accuracy"] <= 1 and "spearman" not in r for r in records)


def test_human_labels_that_disagree_name_the_dataset():
    synthetic = data.synthetic(
        num_train_prompts=20, num_test_prompts=5, test_responses_per_prompt=6, dim=4, seed=2
    )
    from activerm_fast.data.pairs import within_prompt

    human = gold_labelled(synthetic, within_prompt(synthetic.prompt_ids), "human")
    k = int(np.flatnonzero(~synthetic.is_test[human.pairs[:, 0]])[0])  # a training pair
    both_ways = replace(  # the pair once more, reversed with the same label: the other winner
        human,
        pairs=np.concatenate([human.pairs, human.pairs[k : k + 1, ::-1]]),
        labels=np.concatenate([human.labels, human.labels[k : k + 1]]),
    )
    message = r"dataset 'human' cannot answer as an annotator, its training split's labels disagree"
    with pytest.raises(ValueError, match=message):
        ActiveLoop(both_ways, "random", SMALL, seed=0)


def test_bad_configuration_is_named(dataset):
    with pytest.raises(ValueError, match="pool must be one of"):
        LoopConfig(pool="everywhere")
    with pytest.raises(ValueError, match="rounds must be a positive integer, got 0"):
        LoopConfig(rounds=0)
    with pytest.raises(ValueError, match="unknown strategy 'best'"):
        ActiveLoop(dataset, "best", SMALL)
    with pytest.raises(ValueError, match="seed must be non-negative, got -1"):
        ActiveLoop(dataset, "random", SMALL, seed=-1)
    with pytest.raises(ValueError, match=r"beta must be a positive number or inf, got nan"):
        LoopConfig(beta=float("nan"))
    # a round's labels must fit in its pool (it silently labelled fewer)
    with pytest.raises(ValueError, match=r"^per_round=1000 is more than cross_pairs=50, the"):
        LoopConfig(per_round=1000, cross_pairs=50)
    assert LoopConfig(per_round=1000, cross_pairs=50, pool="within").per_round == 1000
    # one prompt a round has no cross-prompt pair: said so, not left to the fit
    lonely = replace(SMALL, prompts_per_round=1, pool="cross")
    with pytest.raises(ValueError, match=r"^round 1: the candidate pool is empty \(pool='cross'"):
        ActiveLoop(dataset, "random", lonely).run()
    # a test split no round could be judged on (gold constant within each prompt): refused
    # before the first round, not after its fit
    flat = replace(dataset, gold=dataset.prompt_ids.astype(float))
    with pytest.raises(
        ValueError,
        match=r"^dataset 'synthetic.*': its test split \(10 prompts, 120 responses\) cannot be "
        "evaluated: no prompt has two responses with different gold values$",
    ):
        ActiveLoop(flat, "random", SMALL)
    # asked for more prompts than the training split holds: the split is named as the cause
    one_train = dataset.subset(np.isin(dataset.prompt_ids, [0, dataset.prompt_ids[-1]]))
    assert one_train.train().num_prompts == 1
    with pytest.raises(
        ValueError,
        match=r"^round 1: the candidate pool is empty \(pool='cross', 1 prompts a round: all 1 "
        r"training prompts, fewer than prompts_per_round=40\): cross-prompt pairs need 2",
    ):
        ActiveLoop(one_train, "random", SMALL).run()


def test_simulate_checks_every_strategy_and_seed_before_the_first_run(dataset, tmp_path):
    for strategies, seeds, message in [
        (["random", "best"], [0], "unknown strategy 'best'"),
        (["random"], [0, -1], "seed must be non-negative, got -1"),
    ]:
        with pytest.raises(ValueError, match=message):
            simulate(
                dataset, strategies, config=SMALL, seeds=seeds, out_dir=tmp_path, progress=False
            )
        assert not (tmp_path / "checkpoints").exists()


def test_the_uncertainty_is_part_of_the_campaign(dataset, tmp_path):
    """uncertainty="laplace" lets a rule that needs uncertainty run on one member; the record
    says which uncertainty ran, and a checkpoint of the other is refused."""
    config = LoopConfig(**{**SMALL.__dict__, "pool": "within", "ensemble": 1, "rounds": 2})
    with pytest.raises(ValueError, match="ensemble of at least 2 members, got 1"):
        ActiveLoop(dataset, "infomax", config, seed=0).run()
    laplace = LoopConfig(**{**config.__dict__, "uncertainty": "laplace"})
    records = ActiveLoop(dataset, "infomax", laplace, seed=0, checkpoint_dir=tmp_path).run()
    assert [r["uncertainty"] for r in records] == ["laplace", "laplace"]
    with pytest.raises(ValueError, match="holds a run with other settings"):
        ActiveLoop(dataset, "infomax", config, seed=0, checkpoint_dir=tmp_path).run()
