"""activerm-fast select --implicit: implicit pools from the command line, and the flags a stored
pool needs, each refused in one line; a stored pool beyond the memory refused naming
--pool-size."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import activerm_fast as arm
from activerm_fast import data
from activerm_fast.cli import main
from activerm_fast.cli import select as select_command
from activerm_fast.data.annotation import plan_batch, read_labelled
from activerm_fast.model import RewardModel


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small dataset (400 responses to 48 prompts), a saved model and labelled pairs."""
    root = tmp_path_factory.mktemp("implicit")
    dataset = data.synthetic(
        num_train_prompts=40, num_test_prompts=8, test_responses_per_prompt=10, dim=8, seed=2
    )
    dataset.save(root / "small.npz")
    RewardModel(8, hidden=(6,), ensemble=2, seed=1).save(root / "model.pt")
    with open(root / "labelled.jsonl", "w") as f:
        for i in range(10):
            f.write(json.dumps({"first": 7 * i, "second": 7 * i + 100, "label": i % 2}) + "\n")
    return root


def select_args(root, *extra: str) -> list[str]:
    return [
        "select",
        "--data",
        str(root / "small.npz"),
        "--labelled",
        str(root / "labelled.jsonl"),
        "--model",
        str(root / "model.pt"),
        "--reuse-model",
        "--k",
        "6",
        "--out",
        str(root / "batch.jsonl"),
        *extra,
    ]


def written_pairs(root) -> np.ndarray:
    records = [json.loads(line) for line in (root / "batch.jsonl").read_text().splitlines()]
    return np.array([[r["first"], r["second"]] for r in records], dtype=np.int64)


@pytest.mark.parametrize(
    ("strategy", "pool", "size", "seed"),
    [
        ("past-dopt-greedy", "cross", 50_000, 0),
        ("dopt-greedy", "cross", 3_000, 7),
        ("xtx", "within", 2_000, 3),
        ("random", "cross", 10_000, 5),
        ("ensemble-dopt-greedy", "within", 500, 1),
    ],
)
def test_implicit_pool_batch_is_the_selection_on_the_pool(
    files, capsys, strategy, pool, size, seed
):
    """The batch written is the selection of arm.select on the ImplicitPool the flags describe
    (the same model's features and rewards), with every labelled pair left out."""
    args = select_args(files, "--strategy", strategy, "--pool", pool)
    args += ["--implicit", "--pool-size", str(size), "--seed", str(seed)]
    assert main(args) == 0
    assert "wrote 6 pairs" in capsys.readouterr().out
    dataset = data.load(files / "small.npz")
    labelled, labels = read_labelled(files / "labelled.jsonl", dataset.n)
    plan = plan_batch(
        dataset,
        labelled,
        labels,
        strategy=strategy,
        model_path=files / "model.pt",
        reuse_model=True,
    )
    make = arm.ImplicitPool.cross_prompt if pool == "cross" else arm.ImplicitPool.within_prompt
    implicit = make(dataset.prompt_ids, size, seed=seed)
    expected = arm.select(
        plan.strategy,
        features=plan.features,
        pairs=implicit,
        k=6,
        rewards=plan.rewards,
        labelled=plan.labelled,
        seed=seed,
        prompt_ids=dataset.prompt_ids,
    )
    got = written_pairs(files)
    np.testing.assert_array_equal(got, implicit.rows(expected.indices))
    keys = {tuple(sorted(p)) for p in got.tolist()}
    assert len(keys) == 6 and not keys & {tuple(sorted(p)) for p in labelled.tolist()}
    same_prompt = dataset.prompt_ids[got[:, 0]] == dataset.prompt_ids[got[:, 1]]
    assert bool(same_prompt.all()) == (pool == "within") and bool(same_prompt.any()) == (
        pool == "within"
    )


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--strategy", "bald"],
            "--strategy bald needs a stored pool: drop --implicit",
        ),
        (["--strategy", "coreset"], "--strategy coreset needs a stored pool: drop --implicit"),
        (
            ["--per-prompt", "2"],
            "--per-prompt needs a stored pool: drop --implicit or --per-prompt",
        ),
        (
            ["--ridge-mode", "relative"],
            "--ridge-mode relative needs a stored pool: drop --implicit or --ridge-mode",
        ),
        (["--lazy", "true"], "--lazy true needs a stored pool: drop --implicit or --lazy"),
        (
            ["--exclude", "held.jsonl"],
            "--exclude needs a stored pool: drop --implicit or --exclude",
        ),
    ],
)
def test_what_an_implicit_pool_cannot_run_is_one_line(files, capsys, extra, message):
    out = files / "refused.jsonl"
    args = select_args(files, "--implicit", *extra)
    args[args.index("--out") + 1] = str(out)
    assert main(args) == 2
    err = one_line(capsys)
    assert err.startswith("activerm-fast: error: ") and message in err, err
    if "--strategy" in extra:  # names what does run
        assert "--implicit runs the strategies dopt-greedy, ensemble-dopt-greedy" in err
    assert not out.exists()


def test_refusal_from_a_subprocess_exits_2_without_a_traceback(files):
    args = select_args(files, "--implicit", "--strategy", "entropy")
    done = subprocess.run(
        [sys.executable, "-m", "activerm_fast", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "activerm-fast: error: --implicit runs the strategies dopt-greedy, ensemble-dopt-greedy,"
        " past-dopt-greedy, random, xtx; --strategy entropy needs a stored pool: drop --implicit"
    ]


@pytest.mark.parametrize("pool", ["cross", "within"])
def test_stored_pool_beyond_the_memory_names_the_flags(files, capsys, monkeypatch, pool):
    """The memory check before a stored pool is built speaks of --pool-size and --implicit;
    --implicit then runs the same pool size in O(n) memory."""
    monkeypatch.setattr(arm.pairs, "available_memory", lambda: 100_000)
    args = select_args(files, "--pool", pool, "--pool-size", "20000")
    assert main(args) == 2
    err = one_line(capsys)
    if pool == "cross":
        assert "error: --pool-size = 20000 gives 20000 pairs, which need 480000 bytes" in err
        assert "lower --pool-size, run more processes under torchrun, or pass --implicit" in err
    else:
        assert "error: the within-prompt pairs of 480 responses (up to 10 to one prompt)" in err
        assert "available; run more processes under torchrun, or pass --implicit with" in err
    assert "pool_size" not in err and "num =" not in err and "ImplicitPool" not in err
    assert main([*args, "--implicit", "--strategy", "xtx"]) == 0
    assert len(written_pairs(files)) == 6


def test_help_documents_the_implicit_pool(capsys):
    with pytest.raises(SystemExit):
        main(["select", "--help"])
    flat = " ".join(capsys.readouterr().out.split())
    assert "--implicit" in flat and "never stored: 8 bytes of state per pair" in flat
    assert ", ".join(select_command.IMPLICIT_STRATEGIES) in flat.replace("- ", "-")
