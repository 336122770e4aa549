"""The error path of a sharded selection on real two-rank gloo groups, run several times: a bad
shard on rank 1 is agreed, raised on every rank, and ends each process with Python's own
shutdown (as a user's script ends), never with an abort; the command line under torchrun
prints the agreed error once, and ``select --processes`` prints nothing else.

A rank is this file run as a script (``python tests/test_distributed_errors.py RANK WORLD
PORT OUT``, tests/gloo.py) that lets the agreed error end it, as a script of one's own would.
Before :meth:`activerm_fast.distributed._Group.collective` waited for gloo's thread to drop a
finished collective's tensors, 2 of 28 such runs aborted ("terminate called without an active
exception", exit status -6) on this project's loaded 2-core machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gloo
import numpy as np
import pytest

from activerm_fast.simulation.simulate import usable_cores

REPEATS = 8  # error runs of the two-rank script
COMMAND_REPEATS = 3  # error runs of the command line, under torchrun and with --processes
TIMEOUT_S = 150
ERROR = "ValueError: rank 1: pairs[1] = (8, 999) is out of range for 40 responses"


def failing_rank(rank: int) -> None:
    """Every rank calls distributed.select; rank 1's shard holds an out-of-range pair."""
    from activerm_fast import distributed

    features = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    pairs = np.array([[0, 1], [2, 3], [4, 5]]) + 6 * rank
    if rank == 1:
        pairs[1, 1] = 999
    distributed.select("xtx", features=features, pairs=pairs, k=2)


def test_an_agreed_error_ends_every_rank_without_an_abort(tmp_path):
    script = str(Path(__file__).resolve())
    for run in range(REPEATS):
        outs = [str(tmp_path / f"run{run}-rank{r}") for r in range(2)]
        ended = gloo.exits(script, 2, outs, timeout=TIMEOUT_S)
        for rank, (code, log) in enumerate(ended):
            assert "terminate called" not in log and code == 1, f"run {run}, rank {rank}: {log}"
            assert log.rstrip().endswith(ERROR), f"run {run}, rank {rank}: {log}"


@pytest.fixture
def bad_labels(tmp_path):
    """select's flags with a labelled file naming a response that does not exist."""
    from activerm_fast import data

    dataset = tmp_path / "small.npz"
    data.synthetic(num_train_prompts=10, num_test_prompts=2, dim=4, seed=1).save(dataset)
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(json.dumps({"first": 0, "second": 10**6, "label": 1}) + "\n")
    flags = ["--data", str(dataset), "--labelled", str(labelled), "--k", "3"]
    return [*flags, "--out", str(tmp_path / "batch.jsonl")]


AGREED = (
    "activerm-fast: error: rank 0: {}, line 1: 'second' = 1000000 is out of range for 228 responses"
)


def test_command_line_error_under_torchrun_is_one_line_every_time(tmp_path, bad_labels):
    """Rank 0 alone prints the agreed one-line error, every process exits 2 and none aborts,
    run after run; torchrun itself then reports the failed processes (ChildFailedError)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "-m", "activerm_fast", "select", *bad_labels]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for run in range(COMMAND_REPEATS):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        assert done.returncode != 0
        ours = [line for line in done.stderr.splitlines() if "activerm-fast:" in line]
        assert ours == [AGREED.format(tmp_path / "labelled.jsonl")], (run, done.stderr[-3000:])
        assert done.stderr.count("exitcode  : 2") == 2, (run, done.stderr[-3000:])
        # an aborted process: torchrun reports signal 6 as "exitcode  : -6" (not any "-6": the
        # temporary folder's name, pytest-6, may hold one)
        assert "terminate called" not in done.stderr, done.stderr
        assert "exitcode  : -6" not in done.stderr, done.stderr
        assert not (tmp_path / "batch.jsonl").exists()


# select --processes N starts no more ranks than the usable cores
two_cores = pytest.mark.skipif(usable_cores() < 2, reason="--processes 2 needs two usable cores")


@two_cores
def test_select_processes_reports_an_error_in_one_line_every_time(tmp_path, bad_labels):
    """--processes starts the ranks itself: the agreed error is the whole of stderr, exit 2."""
    command = [sys.executable, "-m", "activerm_fast", "select", "--processes", "2", *bad_labels]
    for run in range(COMMAND_REPEATS):
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
        assert done.returncode == 2, (run, done.stderr[-3000:])
        assert done.stderr.splitlines() == [AGREED.format(tmp_path / "labelled.jsonl")], run
        assert not (tmp_path / "batch.jsonl").exists()


@two_cores
def test_select_processes_prints_an_error_of_the_whole_pool_once(tmp_path, bad_labels):
    """k beyond the sharded pool is the same error on every rank and names none: rank 0 alone
    prints it (both ranks did, sometimes on one line)."""
    flags = [*bad_labels[:2], "--labelled", str(tmp_path / "none.jsonl"), "--k", "6000"]
    command = [sys.executable, "-m", "activerm_fast", "select", "--processes", "2", *flags]
    command += ["--pool-size", "300", "--out", str(tmp_path / "batch.jsonl")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.splitlines() == [
        "activerm-fast: error: k = 6000 is larger than the 300 pairs available (300 candidates, "
        "0 excluded)"
    ]


if __name__ == "__main__":
    gloo.join(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    failing_rank(int(sys.argv[1]))  # raises: Python's own shutdown ends the process
    pytest.fail("distributed.select accepted an out-of-range pair")
