"""The activerm-fast command line: simulate, select round trip, info, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import oracles
import pytest

import activerm_fast as arm
from activerm_fast import data
from activerm_fast.cli import main
from activerm_fast.data import annotation
from activerm_fast.model import RewardModel
from activerm_fast.simulation.oracle import BTOracle


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "small.npz"
    data.synthetic(
        num_train_prompts=40, num_test_prompts=8, test_responses_per_prompt=10, dim=8, seed=2
    ).save(path)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_simulate_writes_table_csv_json_and_plot(dataset_file, tmp_path, capsys):
    out = tmp_path / "sim"
    args = [
        "simulate",
        "--dataset",
        str(dataset_file),
        "--strategies",
        "random",
        "dopt-greedy",
        "--rounds",
        "2",
        "--per-round",
        "10",
        "--seeds",
        "2",
        "--prompts-per-round",
        "20",
        "--cross-pairs",
        "2000",
        "--ensemble",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "spearman, mean ± std over seeds" in printed and "dopt-greedy" in printed
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 2 * 2 * 2
    assert (out / "results.csv").read_text().count("\n") == 9
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same command again resumes from the checkpoints: nothing is re-run
    assert main(args) == 0
    assert json.loads((out / "results.json").read_text()) == records


@pytest.mark.parametrize(
    "records, message",
    [
        ([], "records hold no spearman, best_of_N_quantile or pair_accuracy to plot: records is"),
        ([{"strategy": "random", "seed": 0, "labels": 100}], "or pair_accuracy to plot$"),
    ],
)
def test_learning_curves_of_records_without_a_metric_are_refused(records, message, tmp_path):
    from activerm_fast.simulation.plot import learning_curves

    with pytest.raises(ValueError, match=message):
        learning_curves(records, tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


def test_simulate_takes_the_laplace_head_for_the_uncertainty_rules(dataset_file, tmp_path, capsys):
    """--uncertainty laplace reaches the loop: dts runs on a one-member model (with the
    ensemble's spread it needs two), and the records and checkpoints say which was used."""
    out = tmp_path / "sim"
    args = [
        "simulate", "--dataset", str(dataset_file), "--strategies", "random", "dts",
        "--pool", "within", "--per-prompt", "1", "--rounds", "2", "--per-round", "5",
        "--seeds", "1", "--prompts-per-round", "20", "--ensemble", "1", "--jobs", "1",
        "--out", str(out), "--no-progress",
    ]  # fmt: skip
    assert main([*args, "--uncertainty", "laplace"]) == 0
    records = json.loads((out / "results.json").read_text())
    assert {r["uncertainty"] for r in records} == {"laplace"} and len(records) == 4
    state = json.loads((out / "checkpoints" / "dts-seed0" / "state.json").read_text())
    assert state["identity"]["config"]["uncertainty"] == "laplace"
    assert main([*args[:-2], str(tmp_path / "ensemble"), "--no-progress"]) == 2
    assert "ensemble of at least 2 members, got 1" in one_line_error(capsys)


def test_simulate_takes_the_fits_patience(dataset_file, tmp_path, capsys):
    """--patience reaches each round's fit (the checkpoints record the settings a run resumes
    with), and a resumed run with another patience is refused in one line."""
    out = tmp_path / "sim"
    args = [
        "simulate", "--dataset", str(dataset_file), "--strategies", "random", "--rounds", "1",
        "--per-round", "40", "--seeds", "1", "--prompts-per-round", "20", "--ensemble", "2",
        "--jobs", "1", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    assert main([*args, "--patience", "1"]) == 0
    state = json.loads((out / "checkpoints" / "random-seed0" / "state.json").read_text())
    assert state["identity"]["config"]["patience"] == 1
    capsys.readouterr()
    assert main([*args, "--patience", "4"]) == 2
    assert "holds a run with other settings" in one_line_error(capsys)


def test_select_round_trip_excludes_what_was_labelled(dataset_file, tmp_path, capsys):
    dataset = data.load(dataset_file)
    oracle = BTOracle(dataset.gold, beta=1.0, seed=0)
    labelled, batch = tmp_path / "labelled.jsonl", tmp_path / "batch.jsonl"
    seen: set[tuple[int, int]] = set()
    for round_index in range(3):
        args = [
            "select",
            "--data",
            str(dataset_file),
            "--labelled",
            str(labelled),
            "--k",
            "12",
            "--out",
            str(batch),
            "--model",
            str(tmp_path / "model.pt"),
            "--pool-size",
            "5000",
        ]
        assert main(args) == 0
        note = capsys.readouterr().out
        assert ("no labels yet" in note) == (round_index == 0)
        records = [json.loads(line) for line in batch.read_text().splitlines()]
        assert len(records) == 12 and all(r["label"] is None for r in records)
        pairs = {tuple(sorted((r["first"], r["second"]))) for r in records}
        assert len(pairs) == 12 and not pairs & seen
        assert all(
            dataset.prompt_ids[r["first"]] != dataset.prompt_ids[r["second"]] for r in records
        )
        seen |= pairs
        # annotate with the oracle and append: the output format is the labelled format
        answers = oracle.label(np.array([[r["first"], r["second"]] for r in records]))
        with open(labelled, "a") as f:
            for record, answer in zip(records, answers, strict=True):
                f.write(json.dumps({**record, "label": int(answer)}) + "\n")
    assert len(labelled.read_text().splitlines()) == 36
    assert (tmp_path / "model.pt").exists()


def test_select_design_options_reach_the_batch(dataset_file, tmp_path, capsys):
    dataset = data.load(dataset_file)
    labelled, batch = tmp_path / "labelled.jsonl", tmp_path / "batch.jsonl"
    rows = np.arange(0, 60, 3)
    with open(labelled, "w") as f:
        for i, j in zip(rows, rows + 41, strict=True):
            f.write(json.dumps({"first": int(i), "second": int(j), "label": int(i % 2)}) + "\n")
    common = ["select", "--data", str(dataset_file), "--labelled", str(labelled), "--k", "10"]
    common += ["--pool-size", "4000", "--out", str(batch)]
    design = ["--ridge", "0.05", "--ridge-mode", "relative", "--features", "embedding"]

    def chosen(*options: str) -> np.ndarray:
        assert main([*common, *options]) == 0
        return np.array([[r["first"], r["second"]] for r in map(json.loads, batch.open())])

    model_path = tmp_path / "model.pt"
    got = chosen(*design, "--lazy", "true", "--model", str(model_path))
    assert "on the embeddings" in capsys.readouterr().out
    pairs, labels = annotation.read_labelled(labelled, dataset.n)
    options = dict(pool_size=4000, ridge=0.05, ridge_mode="relative", features="embedding")
    want, _ = annotation.next_batch(dataset, pairs, labels, 10, **options)
    np.testing.assert_array_equal(got, want)
    # the rule itself, brute force in float64 on the fitted model's rewards: past-dopt-greedy
    # on the embeddings, lambda = 0.05 tr(F_L) / D of the labelled pairs, F0 = lambda I + F_L
    rewards = np.asarray(RewardModel.load(model_path).rewards(dataset.embeddings))
    embeddings = dataset.embeddings.astype(np.float64)
    candidates = arm.pairs.candidate_pool(dataset.prompt_ids, "cross", 4000, 0)
    lam = oracles.relative_lambda(0.05, embeddings, rewards, pairs)
    indices, _, _ = oracles.greedy_selection(
        "past-dopt-greedy", embeddings, rewards, candidates, 10, labelled=pairs, ridge=lam
    )
    np.testing.assert_array_equal(got, candidates[indices])
    np.testing.assert_array_equal(chosen(*design, "--lazy", "false"), want)  # the same picks
    assert not np.array_equal(chosen(), want)  # the defaults design otherwise


def test_select_takes_the_laplace_uncertainty(dataset_file, tmp_path, capsys):
    """bald on one model: refused in one line naming --uncertainty laplace before any fit,
    and with it the batch next_batch chooses with uncertainty="laplace"."""
    dataset = data.load(dataset_file)
    labelled, batch = tmp_path / "labelled.jsonl", tmp_path / "batch.jsonl"
    rows = np.arange(0, 60, 3)
    with open(labelled, "w") as f:
        for i, j in zip(rows, rows + 41, strict=True):
            f.write(json.dumps({"first": int(i), "second": int(j), "label": int(i % 2)}) + "\n")
    args = ["select", "--data", str(dataset_file), "--labelled", str(labelled), "--k", "10"]
    args += ["--pool-size", "4000", "--strategy", "bald", "--ensemble", "1", "--out", str(batch)]
    assert main(args) == 2
    err = one_line_error(capsys)
    assert "--ensemble is 1: pass --uncertainty laplace" in err and "raise --ensemble" in err
    assert not batch.exists()
    assert main([*args, "--uncertainty", "laplace"]) == 0
    got = np.array([[r["first"], r["second"]] for r in map(json.loads, batch.open())])
    pairs, labels = annotation.read_labelled(labelled, dataset.n)
    options = dict(strategy="bald", ensemble=1, pool_size=4000, uncertainty="laplace")
    want, _ = annotation.next_batch(dataset, pairs, labels, 10, **options)
    np.testing.assert_array_equal(got, want)
    options["uncertainty"] = "ensemble"
    with pytest.raises(ValueError, match="ensemble of at least 2 members, got 1"):
        annotation.next_batch(dataset, pairs, labels, 10, **options)


def test_select_writes_texts_of_the_packaged_data(tmp_path, capsys):
    batch = tmp_path / "batch.jsonl"
    assert (
        main(
            [
                "select",
                "--data",
                "arena-bench",
                "--labelled",
                str(tmp_path / "none.jsonl"),
                "--k",
                "3",
                "--strategy",
                "random",
                "--out",
                str(batch),
            ]
        )
        == 0
    )
    record = json.loads(batch.read_text().splitlines()[0])
    assert isinstance(record["first_text"], str) and isinstance(record["second_prompt_text"], str)


def test_info_prints_build_information(capsys):
    assert main(["info"]) == 0
    printed = capsys.readouterr().out
    assert "cuda_built" in printed and "openmp_threads" in printed


def test_console_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "activerm_fast.cli", "info"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "version" in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "--rounds", "0"], "argument --rounds: must be a positive integer, got 0"),
        (["simulate", "--strategies", "best"], "argument --strategies: invalid choice: 'best'"),
        (["simulate", "--pool", "diagonal"], "argument --pool: invalid choice"),
        (["simulate", "--uncertainty", "dropout"], "argument --uncertainty: invalid choice"),
        (["simulate", "--patience", "0"], "argument --patience: must be a positive integer, got 0"),
        # a blank value is quoted, or the message would end in "got " with nothing shown
        (["simulate", "--seeds", ""], "argument --seeds: must be a positive integer, got ''"),
        (
            ["simulate", "--ridge", " "],
            "argument --ridge: must be a positive finite number, got ' '",
        ),
        (
            ["simulate", "--per-prompt", "x"],
            "argument --per-prompt: must be a positive integer, got x",
        ),
        (["select", "--k", "5"], "the following arguments are required"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_end_in_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in one_line_error(capsys)


def test_bad_files_end_in_one_line(dataset_file, tmp_path, capsys):
    assert main(["simulate", "--dataset", str(tmp_path / "missing.npz"), "--no-progress"]) == 2
    assert "no dataset named" in one_line_error(capsys)
    bad = tmp_path / "labelled.jsonl"
    bad.write_text(
        '{"first": 0, "second": 5, "label": 1}\n{"first": 1, "second": 2, "label": null}\n'
    )
    args = [
        "select",
        "--data",
        str(dataset_file),
        "--labelled",
        str(bad),
        "--k",
        "2",
        "--out",
        str(tmp_path / "b.jsonl"),
    ]
    assert main(args) == 2
    assert (
        "labelled.jsonl, line 2: label must be 1 (first wins) or 0 (second wins), got None"
        in one_line_error(capsys)
    )
    bad.write_text('{"first": 0, "second": 99999, "label": 1}\n')
    assert main(args) == 2
    assert "line 1: 'second' = 99999 is out of range" in one_line_error(capsys)
    bad.write_text("not json\n")
    assert main(args) == 2
    assert "line 1: not JSON" in one_line_error(capsys)
    # a batch appended twice, or a pair labelled either way round on two lines: refused, not
    # fitted (and put in F0) twice
    for first, second in ((0, 5), (5, 0)):
        bad.write_text(
            '{"first": 0, "second": 5, "label": 1}\n{"first": 1, "second": 2, "label": 0}\n'
            f'{{"first": {first}, "second": {second}, "label": 1}}\n'
        )
        assert main(args) == 2
        assert one_line_error(capsys) == (
            f"activerm-fast: error: {bad}, line 3: the pair ({first}, {second}) is labelled at "
            f"{bad}, line 1 too; keep one record per pair (import merges the votes of every "
            "annotator into one)"
        )
