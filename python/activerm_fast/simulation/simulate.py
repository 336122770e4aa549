"""Compare strategies over seeds with :class:`~activerm_fast.ActiveLoop`, and report."""

from __future__ import annotations

import csv
import json
import multiprocessing
import multiprocessing.queues
import queue
from collections.abc import Callable, Hashable, Sequence, Sized
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .._launch import available_memory
from .._threads import usable_cores
from .._validation import known_name, positive_integer, seed_argument
from ..data.dataset import Dataset
from ..selection.api import STRATEGIES
from .loop import ActiveLoop, LoopConfig, _check_runs
from .report import format_table, headline_metrics, summarize
from .verdicts import Verdict, format_verdicts, verdicts

# the report's names, importable from here as from the flat layout's activerm_fast.simulate
__all__ = [
    "Verdict",
    "format_table",
    "format_verdicts",
    "headline_metrics",
    "simulate",
    "summarize",
    "usable_cores",
    "verdicts",
    "write_results",
]

# the memory one round record takes at the least (a dict of some 20 names and numbers: about
# 2 KiB measured), for the bound on how many a comparison may keep
_RECORD_BYTES = 1024


def simulate(
    dataset: Dataset,
    strategies: Sequence[str],
    *,
    config: LoopConfig | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    out_dir: str | Path | None = None,
    progress: bool = True,
    jobs: int = 1,
    on_start: Callable[[], object] | None = None,
) -> list[dict[str, Any]]:
    """Run every strategy with every seed (one :class:`~activerm_fast.ActiveLoop` each).

    With ``out_dir``, each run checkpoints under ``out_dir/checkpoints`` (so a restarted
    command resumes, and one with more ``config.rounds`` continues the saved runs) and the
    records are written to ``results.csv`` and ``results.json``.
    With ``jobs`` > 1 the runs go to that many worker processes (at most one a usable core and
    one a run), each with an equal share of the usable cores as torch threads; every run is
    the same computation as in one process, so the records (but for their ``*_seconds``),
    checkpoints and resumption are those of a serial run, in the same order: the fit's
    products keep their bits on any number of threads (MKL's strict reproducible mode, set on
    import: ``activerm_fast._openmp``).

    Parameters
    ----------
    dataset : Dataset
        The data, with a train/test split.
    strategies : sequence of str
        Names in :data:`~activerm_fast.STRATEGIES`, checked before the first run.
    config : LoopConfig, optional
        The campaign; ``LoopConfig()`` when None.
    seeds : sequence of int, default (0, 1, 2)
        One run per strategy and seed.
    out_dir : str or Path, optional
        Folder for the checkpoints and results files.
    progress : bool, default True
        Show a progress bar over rounds.
    jobs : int, default 1
        Worker processes running strategy x seed combinations side by side (1: all in this
        process); no more than :func:`usable_cores` are started, since more would only take
        turns on them, each holding a model in memory. They are spawned (fresh interpreters),
        so a script that calls this with ``jobs`` > 1 must do so under
        ``if __name__ == "__main__":``.
    on_start : callable, optional
        Called with no arguments once every input is checked, before the first run: what
        announces the comparison (``activerm-fast simulate`` prints its header there, so a
        refusal is the only line it prints).

    Returns
    -------
    list of dict
        Every run's round records (see :meth:`~activerm_fast.ActiveLoop.run`), seed by seed.

    Raises
    ------
    ValueError
        Before the first run: if a strategy is unknown, a strategy or seed is listed twice or
        none is, a seed is negative, ``jobs`` is not positive, the round records of every run
        could not fit in the memory available, or a run would refuse its settings (see
        :class:`~activerm_fast.ActiveLoop`); after it, if a run fails.

    Examples
    --------
    >>> import os, tempfile
    >>> import activerm_fast as arm
    >>> data = arm.synthetic(6, 4, 3, 4, dim=8)
    >>> config = arm.LoopConfig(rounds=2, per_round=4, pool="within", hidden=(8,), epochs=5)
    >>> out = tempfile.mkdtemp()
    >>> records = arm.simulate(
    ...     data, ["random", "xtx"], config=config, seeds=(0, 1), out_dir=out, progress=False
    ... )
    >>> [(r["seed"], r["strategy"], r["labels"]) for r in records][:3]
    [(0, 'random', 4), (0, 'random', 8), (0, 'xtx', 4)]
    >>> len(records), sorted(name for name in os.listdir(out) if name.startswith("results"))
    (8, ['results.csv', 'results.json'])
    >>> arm.simulate(data, ["random", "random"], config=config)
    Traceback (most recent call last):
    ...
    ValueError: strategies lists 'random' twice
    """
    config = config or LoopConfig()
    # checked before the first run: a bad name must not surface after hours of others
    strategies = [known_name(strategy, STRATEGIES, "strategy") for strategy in strategies]
    _listed_once(strategies, "strategies")
    if not isinstance(seeds, Sized):  # an iterator of seeds
        seeds = list(seeds)
    _check_record_memory(len(strategies), len(seeds), config.rounds)
    seeds = [seed_argument(seed) for seed in seeds]
    _listed_once(seeds, "seeds")
    jobs = positive_integer(jobs, "jobs")
    _check_runs(dataset, strategies, config, seeds)
    if on_start is not None:
        on_start()
    out = None if out_dir is None else Path(out_dir)
    runs = [
        _Run(
            strategy, seed, None if out is None else out / "checkpoints" / f"{strategy}-seed{seed}"
        )
        for seed in seeds
        for strategy in strategies
    ]
    total = len(runs) * config.rounds
    with tqdm(total=total, desc="rounds", unit="round", disable=not progress) as bar:
        if jobs == 1 or len(runs) < 2:
            done = _serially(dataset, config, runs, bar)
        else:
            done = _in_workers(dataset, config, runs, bar, jobs=jobs)
    records = [record for run in runs for record in done[run]]
    if out is not None:
        write_results(records, out)
    return records


def _listed_once(values: Sequence[Hashable], name: str) -> None:
    """A ValueError, ``name`` calling the values, when ``values`` is empty or lists one
    value twice (its runs, each with its own checkpoint folder, would be repeated)."""
    if not values:
        raise ValueError(f"{name} is empty: name at least one")
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{name} lists {value!r} twice")
        seen.add(value)


def _check_record_memory(strategies: int, seeds: int, rounds: int) -> None:
    """A ValueError when the round records of ``strategies`` x ``seeds`` runs of ``rounds``
    rounds, kept until the results are written, could not fit in the memory available."""
    records = strategies * seeds * rounds
    needed, available = records * _RECORD_BYTES, available_memory()
    if needed > available:
        raise ValueError(
            f"strategies x seeds x rounds = {strategies} x {seeds} x {rounds} = {records:,} "
            f"round records, at least {needed / 2**30:,.1f} GiB, more than the "
            f"{available / 2**30:,.1f} GiB of memory available; ask for fewer seeds"
        )


@dataclass(frozen=True)
class _Run:
    """One strategy x seed combination and its checkpoint folder."""

    strategy: str
    seed: int
    folder: Path | None


def _serially(
    dataset: Dataset, config: LoopConfig, runs: list[_Run], bar: Any
) -> dict[_Run, list[dict[str, Any]]]:
    """Every run in this process, one after another."""

    def advance(_: dict[str, Any]) -> None:
        bar.update(1)

    done = {}
    for run in runs:
        bar.set_postfix_str(f"{run.strategy}, seed {run.seed}")
        loop = ActiveLoop(dataset, run.strategy, config, seed=run.seed, checkpoint_dir=run.folder)
        done_before = bar.n
        done[run] = loop.run(on_round=advance)
        bar.update(len(done[run]) - (bar.n - done_before))  # rounds resumed from disk
    return done


def _in_workers(
    dataset: Dataset, config: LoopConfig, runs: list[_Run], bar: Any, *, jobs: int
) -> dict[_Run, list[dict[str, Any]]]:
    """Every run in ``jobs`` spawned worker processes (fresh interpreters: no OpenMP runtime
    forked mid-flight), each with its share of the usable cores as torch threads. Finished
    rounds are reported back over a queue for the progress bar."""
    workers = min(jobs, len(runs), usable_cores())
    threads = max(1, usable_cores() // workers)
    context = multiprocessing.get_context("spawn")
    rounds: multiprocessing.queues.Queue[int] = context.Queue()
    done: dict[_Run, list[dict[str, Any]]] = {}
    with ProcessPoolExecutor(
        workers, context, initializer=_start_worker, initargs=(dataset, config, threads, rounds)
    ) as pool:
        pending: dict[Future[list[dict[str, Any]]], _Run] = {
            pool.submit(_run_in_worker, run): run for run in runs
        }
        reported = 0
        try:
            while pending:
                finished, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                reported += _drain(rounds, bar)
                for future in finished:
                    run = pending.pop(future)
                    done[run] = future.result()
                    bar.set_postfix_str(f"{len(done)} of {len(runs)} runs done")
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        reported += _drain(rounds, bar)
    bar.update(sum(len(records) for records in done.values()) - reported)  # resumed from disk
    return done


def _drain(rounds: multiprocessing.queues.Queue[int], bar: Any) -> int:
    """Move the rounds the workers reported onto the bar; how many there were."""
    count = 0
    while True:
        try:
            count += rounds.get_nowait()
        except queue.Empty:
            break
    bar.update(count)
    return count


_WORKER: dict[str, Any] = {}


def _start_worker(
    dataset: Dataset, config: LoopConfig, threads: int, rounds: multiprocessing.queues.Queue[int]
) -> None:
    """A worker's set-up: the data and campaign once per process, and its thread share."""
    torch.set_num_threads(threads)
    _WORKER.update(dataset=dataset, config=config, rounds=rounds)


def _run_in_worker(run: _Run) -> list[dict[str, Any]]:
    """One run inside a worker, reporting each finished round."""
    loop = ActiveLoop(
        _WORKER["dataset"],
        run.strategy,
        _WORKER["config"],
        seed=run.seed,
        checkpoint_dir=run.folder,
    )
    rounds = _WORKER["rounds"]
    return loop.run(on_round=lambda _: rounds.put(1))


def write_results(records: list[dict[str, Any]], out: Path) -> None:
    """Write ``records`` to ``out/results.json`` and ``out/results.csv`` (one column per key).

    Parameters
    ----------
    records : list of dict
        Round records, as :func:`simulate` returns them.
    out : Path
        The folder, created when missing.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from activerm_fast.simulate import write_results
    >>> out = Path(tempfile.mkdtemp())
    >>> write_results([{"strategy": "random", "labels": 4, "spearman": 0.5}], out)
    >>> (out / "results.csv").read_text().splitlines()
    ['strategy,labels,spearman', 'random,4,0.5']
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(records, indent=1))
    columns = list(dict.fromkeys(key for record in records for key in record))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)
