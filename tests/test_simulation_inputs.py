"""Bad simulation inputs refused before any work: round pools too small for per_round,
strategies a campaign cannot run, comparisons too large to keep, strategies or seeds listed
twice, and damaged checkpoints, in Python and on the command line."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from activerm_fast import _launch, data
from activerm_fast.cli import main
from activerm_fast.data.pairs import cross_prompt, within_prompt
from activerm_fast.simulation.loop import ActiveLoop, LoopConfig
from activerm_fast.simulation.simulate import simulate

from conftest import gold_labelled

TINY = LoopConfig(
    rounds=2, per_round=2, prompts_per_round=4, cross_pairs=50, ensemble=1, hidden=(4,), epochs=2
)


@pytest.fixture(scope="module")
def pairs_of_two():
    """12 training prompts of 2 responses: 2 prompts give 4 cross-prompt pairs."""
    return data.synthetic(
        num_train_prompts=12,
        responses_per_prompt=2,
        num_test_prompts=4,
        test_responses_per_prompt=6,
        dim=4,
    )


@pytest.fixture(scope="module")
def dataset_file(pairs_of_two, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "pairs_of_two.npz"
    pairs_of_two.save(path)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def simulate_args(dataset_file, out, *extra: str) -> list[str]:
    return [
        "simulate", "--dataset", str(dataset_file), "--rounds", "2", "--seeds", "1",
        "--prompts-per-round", "4", "--cross-pairs", "50", "--per-round", "2", "--ensemble", "1",
        "--jobs", "1", "--no-progress", "--out", str(out), *extra,
    ]  # fmt: skip


# ---- a round pool smaller than per_round ----------------------------------------------------

SHORT_POOL = (
    r"^round 1: the candidate pool holds 4 pairs \(2 prompts of 2 responses\), fewer than "
    r"per_round=10; raise prompts_per_round or lower per_round$"
)


def test_a_round_pool_smaller_than_per_round_is_refused_before_the_first_fit(pairs_of_two):
    """It labelled 4 and then 8 pairs of the 10 a round asked for (pool_size 4), silently."""
    config = replace(TINY, prompts_per_round=2, per_round=10)
    with pytest.raises(ValueError, match=SHORT_POOL):
        ActiveLoop(pairs_of_two, "random", config)
    # the round pools are those the rounds draw: 3 prompts give 12 pairs, enough
    assert len(ActiveLoop(pairs_of_two, "random", replace(config, prompts_per_round=3)).run()) == 2


def test_a_round_pool_of_stored_labels_smaller_than_per_round_is_refused():
    synthetic = data.synthetic(num_train_prompts=20, num_test_prompts=5, dim=4, seed=1)
    pairs = within_prompt(synthetic.prompt_ids)
    human = gold_labelled(synthetic, pairs, "human")
    # the pool: the labelled pairs of 2 prompts, 2 x 45
    config = replace(TINY, pool="within", prompts_per_round=2, per_round=100)
    with pytest.raises(ValueError, match=r"^round 1: the candidate pool holds 90 pairs \(2 pro"):
        ActiveLoop(human, "random", config)


def test_within_prompt_pools_may_still_run_out_of_unlabelled_pairs(pairs_of_two):
    """Every round draws all 12 prompts (12 within-prompt pairs): the third round finds only
    the 2 not labelled by the first two, and takes them, as before."""
    config = replace(TINY, pool="within", rounds=3, per_round=5, prompts_per_round=12)
    records = ActiveLoop(pairs_of_two, "random", config).run()
    assert [(r["labels"], r["pool_size"]) for r in records] == [(5, 12), (10, 12), (12, 12)]


def test_the_command_line_refuses_a_short_round_pool(dataset_file, tmp_path, capsys):
    out = tmp_path / "out"
    args = simulate_args(dataset_file, out, "--prompts-per-round", "2", "--per-round", "10")
    assert main(args) == 2
    err = one_line_error(capsys)
    assert err.startswith("activerm-fast: error: round 1: the candidate pool holds 4 pairs (2 ")
    assert not (out / "results.csv").exists() and not (out / "checkpoints").exists()


# ---- strategies the campaign cannot run, refused before the first round ----------------------


@pytest.mark.parametrize(
    "strategy, changes, message",
    [
        (
            "dopt-greedy",
            {"ensemble": _launch.MAX_MEMBERS + 1},
            rf"^strategy 'dopt-greedy' takes the rewards of at most {_launch.MAX_MEMBERS} "
            rf"ensemble members, got ensemble={_launch.MAX_MEMBERS + 1}; lower ensemble",
        ),
        (
            "max-min",
            {"pool": "cross"},
            r"^strategy 'max-min' chooses pairs within a prompt, but pool='cross' pools hold "
            r"none; use pool='within' \(--pool within\)$",
        ),
        ("dts", {"pool": "cross", "ensemble": 2}, r"^strategy 'dts' chooses pairs within a"),
    ],
)
def test_a_strategy_the_campaign_cannot_run_fails_before_any_round(
    pairs_of_two, tmp_path, strategy, changes, message
):
    """These failed in round 2, after round 1's labels and fit."""
    config = replace(TINY, **changes)
    seen = []
    with pytest.raises(ValueError, match=message):
        ActiveLoop(pairs_of_two, strategy, config, checkpoint_dir=tmp_path).run(seen.append)
    assert seen == [] and not list(tmp_path.iterdir())
    # simulate refuses it before the first run of the comparison, random's included
    with pytest.raises(ValueError, match=message):
        simulate(
            pairs_of_two, ["random", strategy], config=config, out_dir=tmp_path, progress=False
        )
    assert not list(tmp_path.iterdir())


def test_random_takes_any_ensemble_and_within_rules_run_on_within_pools(pairs_of_two):
    many = replace(TINY, ensemble=_launch.MAX_MEMBERS + 1, rounds=1)
    assert ActiveLoop(pairs_of_two, "random", many).run()[0]["labels"] == 2
    within = replace(TINY, pool="within", uncertainty="laplace")
    assert [r["labels"] for r in ActiveLoop(pairs_of_two, "max-min", within).run()] == [2, 4]


def test_a_within_prompt_rule_on_stored_cross_prompt_labels_is_refused():
    synthetic = data.synthetic(num_train_prompts=10, num_test_prompts=3, dim=4, seed=2)
    pairs = cross_prompt(synthetic.prompt_ids, 300, seed=0)
    human = gold_labelled(synthetic, pairs, "crossed")
    config = replace(TINY, pool="within", prompts_per_round=10)
    with pytest.raises(
        ValueError, match="no labelled training pair of dataset 'crossed' is within"
    ):
        ActiveLoop(human, "max-min", config).run()


def test_the_command_line_refuses_them_up_front(dataset_file, tmp_path, capsys):
    ensemble = str(_launch.MAX_MEMBERS + 1)
    args = simulate_args(dataset_file, tmp_path / "a", "--strategies", "random", "dopt-greedy")
    assert main([*args, "--ensemble", ensemble]) == 2
    assert "strategy 'dopt-greedy' takes the rewards of at most" in one_line_error(capsys)
    assert main(simulate_args(dataset_file, tmp_path / "b", "--strategies", "max-min")) == 2
    assert "but pool='cross' pools hold none; use pool='within' (--pool within)" in (
        one_line_error(capsys)
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "checkpoints").exists()


# ---- more runs than could ever be kept ------------------------------------------------------


def test_a_comparison_too_large_to_keep_is_refused_at_once(
    pairs_of_two, dataset_file, tmp_path, capsys
):
    """seeds=10**12 built a list of every run first and ended in a MemoryError."""
    message = (
        r"^strategies x seeds x rounds = 1 x 1000000000000 x 2 = 2,000,000,000,000 round "
        r"records, at least [\d,.]+ GiB, more than the [\d,.]+ GiB of memory available"
    )
    with pytest.raises(ValueError, match=message):
        simulate(pairs_of_two, ["random"], config=TINY, seeds=range(10**12), progress=False)
    out = tmp_path / "out"
    args = simulate_args(dataset_file, out, "--strategies", "random", "--seeds", str(10**12))
    assert main(args) == 2
    assert "1 x 1000000000000 x 2 = 2,000,000,000,000 round records" in one_line_error(capsys)
    assert not out.exists()


# ---- a strategy or seed listed twice ---------------------------------------------------------


def test_a_strategy_or_seed_listed_twice_is_refused(pairs_of_two, dataset_file, tmp_path, capsys):
    """Listed twice, it ran twice: its records twice in results.csv and results.json."""
    with pytest.raises(ValueError, match=r"^strategies lists 'random' twice$"):
        simulate(pairs_of_two, ["random", "xtx", "random"], config=TINY, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^seeds lists 1 twice$"):
        simulate(pairs_of_two, ["random"], config=TINY, seeds=[0, 1, 1], out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^strategies is empty"):
        simulate(pairs_of_two, [], config=TINY, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())
    out = tmp_path / "out"
    assert main(simulate_args(dataset_file, out, "--strategies", "random", "random")) == 2
    assert one_line_error(capsys) == "activerm-fast: error: --strategies lists 'random' twice"
    assert not out.exists()


# ---- damaged checkpoints --------------------------------------------------------------------


@pytest.fixture
def finished(pairs_of_two, tmp_path):
    """A finished one-run comparison and the folder of its checkpoint."""
    simulate(pairs_of_two, ["random"], config=TINY, seeds=[0], out_dir=tmp_path, progress=False)
    return tmp_path, tmp_path / "checkpoints" / "random-seed0"


def damage_state(folder, text: str) -> None:
    (folder / "state.json").write_text(text)


def damage_labels(folder, text: str) -> None:
    state = json.loads((folder / "state.json").read_text())
    (folder / state["labels_file"]).write_bytes(text.encode())


def remove_model(folder, _: str) -> None:
    state = json.loads((folder / "state.json").read_text())
    (folder / state["model_file"]).unlink()


@pytest.mark.parametrize(
    "damage, text, file, reason",
    [
        (damage_state, "{", "state.json", r"the checkpoint is not JSON \(Expecting property"),
        (damage_state, '{"identity": 5}', "state.json", "no 'identity' object with a 'config'"),
        (damage_state, "[]", "state.json", "it holds a JSON list, not an object"),
        (damage_labels, "not an archive", "labels-2.npz", r"cannot read as a .npz .*not a zip"),
        (remove_model, "", "model-2.pt", "the file is missing"),
    ],
)
def test_a_damaged_checkpoint_is_named_with_what_to_do(
    finished, pairs_of_two, dataset_file, capsys, damage, text, file, reason
):
    """A state.json of "{" gave the parser's own "Expecting property name enclosed in double
    quotes", and {"identity": 5} "'int' object is not a mapping", naming no file."""
    out, folder = finished
    damage(folder, text)
    expected = (
        rf"^{folder / file} is not a checkpoint of this tool \({reason}.*\); delete the folder "
        rf"{folder} or use another output folder$"
    )
    with pytest.raises(ValueError, match=expected):
        ActiveLoop(pairs_of_two, "random", TINY, checkpoint_dir=folder).run()
    if file == "state.json":  # read before the settings (the command line's differ from TINY)
        assert main(simulate_args(dataset_file, out, "--strategies", "random")) == 2
        err = one_line_error(capsys)
        assert err.startswith(f"activerm-fast: error: {folder / file} is not a checkpoint of")
