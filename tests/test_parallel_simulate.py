"""simulate(jobs=N): strategy x seed runs in worker processes give a serial run's results,
checkpoints and tables, and a killed parallel run resumes to them."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from activerm_fast import data
from activerm_fast.simulation.loop import LoopConfig
from activerm_fast.simulation.simulate import format_table, format_verdicts, simulate, usable_cores

# the module itself (the package's name ``simulate`` is the function)
simulate_module = importlib.import_module("activerm_fast.simulation.simulate")

CONFIG = LoopConfig(
    rounds=3,
    per_round=15,
    prompts_per_round=40,
    cross_pairs=3000,
    ensemble=2,
    hidden=(16,),
    epochs=5,
)
STRATEGIES = ["random", "dopt-greedy"]
SEEDS = (0, 1)
TIMINGS = ("select_seconds", "fit_seconds")
DATASET = dict(
    num_train_prompts=60, num_test_prompts=10, test_responses_per_prompt=12, dim=8, seed=3
)


@pytest.fixture(scope="module")
def dataset():
    return data.synthetic(**DATASET)


@pytest.fixture(scope="module")
def serial(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    records = simulate(dataset, STRATEGIES, config=CONFIG, seeds=SEEDS, out_dir=out, progress=False)
    return out, records


def without_timings(records):
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in records]


def checkpoint_records(out: Path) -> dict[str, list]:
    return {
        folder.name: without_timings(json.loads((folder / "state.json").read_text())["records"])
        for folder in sorted((out / "checkpoints").iterdir())
    }


FIT = """
import sys, numpy as np, activerm_fast as arm
rng = np.random.default_rng(0)
x = rng.normal(size=(3571, 768)).astype(np.float32)
pairs = rng.integers(0, 3571, size=(100, 2))
pairs = pairs[pairs[:, 0] != pairs[:, 1]]
model = arm.RewardModel(768, hidden=(256, 256), ensemble=3, seed=0)
model.fit(x, pairs, rng.integers(0, 2, size=len(pairs)))
sys.stdout.buffer.write(b"".join(p.numpy().tobytes() for p in model._parameters()))
"""


def test_a_fit_has_the_same_bits_on_one_and_two_threads():
    """The main job's reward heads (768-d input, hidden (256, 256), 3 members), fitted in a
    process of one thread (a --jobs worker's share here) and of two (a serial run's): MKL may
    split a product's sums across threads, unless the package's import has set its strict
    reproducible mode, which a user's own MKL_CBWR overrides."""
    results = {}
    for threads in ("1", "2"):
        env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
        env["OMP_NUM_THREADS"] = threads
        run = subprocess.run([sys.executable, "-c", FIT], env=env, capture_output=True)
        assert run.returncode == 0, run.stderr.decode()
        results[threads] = run.stdout
    assert len(results["1"]) == 4 * 3 * (768 * 256 + 256 * 256 + 2 * 256 + 256)
    assert results["1"] == results["2"]
    chosen = "import os, activerm_fast; print(os.environ['MKL_CBWR'])"
    env = dict(os.environ, MKL_CBWR="COMPATIBLE")
    run = subprocess.run([sys.executable, "-c", chosen], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "COMPATIBLE"


def test_jobs_give_the_serial_records_checkpoints_and_tables(
    dataset, serial, tmp_path, monkeypatch
):
    serial_out, serial_records = serial
    records = simulate(
        dataset, STRATEGIES, config=CONFIG, seeds=SEEDS, out_dir=tmp_path, progress=False, jobs=2
    )
    assert without_timings(records) == without_timings(serial_records)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert without_timings(saved) == without_timings(
        json.loads((serial_out / "results.json").read_text())
    )
    assert checkpoint_records(tmp_path) == checkpoint_records(serial_out)
    assert format_table(records) == format_table(serial_records)
    assert format_verdicts(records) == format_verdicts(serial_records)
    # run again, asking for more jobs than there are cores: everything resumes from the
    # checkpoints, nothing is recomputed, and no more workers start than the usable cores
    started = []

    class Counted(simulate_module.ProcessPoolExecutor):
        def __init__(self, workers, *args, **kwargs):
            started.append(workers)
            super().__init__(workers, *args, **kwargs)

    monkeypatch.setattr(simulate_module, "ProcessPoolExecutor", Counted)
    again = simulate(
        dataset, STRATEGIES, config=CONFIG, seeds=SEEDS, out_dir=tmp_path, progress=False, jobs=64
    )
    assert again == records
    assert started == [min(len(STRATEGIES) * len(SEEDS), usable_cores())]


def test_a_killed_parallel_run_resumes_to_the_serial_results(dataset, serial, tmp_path):
    serial_out, serial_records = serial
    script = (
        "from activerm_fast import data\n"
        "from activerm_fast.simulation.loop import LoopConfig\n"
        "from activerm_fast.simulation.simulate import simulate\n"
        f"simulate(data.synthetic(**{DATASET!r}), {STRATEGIES!r}, config={CONFIG!r}, "
        f"seeds={SEEDS!r}, out_dir={str(tmp_path)!r}, progress=False, jobs=2)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            states = list((tmp_path / "checkpoints").glob("*/state.json"))
            if states and any(json.loads(s.read_text())["records"] for s in states):
                break
            time.sleep(0.02)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)  # the workers too, mid-round
        child.wait()
    killed = not (tmp_path / "results.json").exists()
    records = simulate(
        dataset, STRATEGIES, config=CONFIG, seeds=SEEDS, out_dir=tmp_path, progress=False, jobs=2
    )
    assert without_timings(records) == without_timings(serial_records)
    assert checkpoint_records(tmp_path) == checkpoint_records(serial_out)
    assert killed, "the child finished before it could be killed: nothing was resumed"


def test_jobs_must_be_positive(dataset):
    with pytest.raises(ValueError, match="jobs"):
        simulate(dataset, ["random"], config=CONFIG, seeds=(0,), progress=False, jobs=0)
