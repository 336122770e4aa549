"""Compare strategies over seeds with :class:`~activerm_fast.ActiveLoop`, and report."""

from __future__ import annotations

import csv
import json
import multiprocessing
import multiprocessing.queues
import os
import queue
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._validation import count_argument, known_name, positive_integer
from ..data.dataset import Dataset
from ..selection.api import STRATEGIES
from .loop import ActiveLoop, LoopConfig


def simulate(
    dataset: Dataset,
    strategies: Sequence[str],
    *,
    config: LoopConfig | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    out_dir: str | Path | None = None,
    progress: bool = True,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """Run every strategy with every seed (one :class:`~activerm_fast.ActiveLoop` each).

    With ``out_dir``, each run checkpoints under ``out_dir/checkpoints`` (so a restarted
    command resumes) and the records are written to ``results.csv`` and ``results.json``.
    With ``jobs`` > 1 the runs go to that many worker processes, each with an equal share of
    the usable cores as torch threads; every run is the same computation as in one process,
    so the records (but for their ``*_seconds``), checkpoints and resumption are those of a
    serial run, in the same order.

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
        process). They are spawned (fresh interpreters), so a script that calls this with
        ``jobs`` > 1 must do so under ``if __name__ == "__main__":``.

    Returns
    -------
    list of dict
        Every run's round records (see :meth:`~activerm_fast.ActiveLoop.run`), seed by seed.

    Raises
    ------
    ValueError
        If a strategy is unknown, a seed negative, ``jobs`` not positive, or a run fails (see
        :class:`~activerm_fast.ActiveLoop`).

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
    """
    config = config or LoopConfig()
    # checked before the first run: a bad name must not surface after hours of others
    strategies = [known_name(strategy, STRATEGIES, "strategy") for strategy in strategies]
    seeds = [count_argument(seed, "seed") for seed in seeds]
    jobs = positive_integer(jobs, "jobs")
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
    workers = min(jobs, len(runs))
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


def usable_cores() -> int:
    """The cores this process may run on: ``activerm-fast simulate --jobs``'s default.

    Examples
    --------
    >>> from activerm_fast.simulate import usable_cores
    >>> usable_cores() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


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


def headline_metrics(records: list[dict[str, Any]]) -> list[str]:
    """The metrics a summary shows: Spearman, the largest N's best-of-N quantile, accuracy.

    Parameters
    ----------
    records : list of dict
        Round records.

    Returns
    -------
    list of str
        Those of the three metrics that the records hold, in that order.

    Examples
    --------
    >>> from activerm_fast.simulate import headline_metrics
    >>> headline_metrics([{"spearman": 0.5, "best_of_4_quantile": 0.7, "best_of_16_quantile": 0.8}])
    ['spearman', 'best_of_16_quantile']
    """
    keys = set().union(*(record.keys() for record in records)) if records else set()
    best = sorted(
        (int(key.split("_")[2]) for key in keys if key.endswith("_quantile")), reverse=True
    )
    chosen = ["spearman"] if "spearman" in keys else []
    if best:
        chosen.append(f"best_of_{best[0]}_quantile")
    if "pair_accuracy" in keys:
        chosen.append("pair_accuracy")
    return chosen


def summarize(
    records: list[dict[str, Any]], metric: str
) -> dict[str, dict[int, tuple[float, float, int]]]:
    """Mean and spread over seeds of ``metric`` per strategy and label budget.

    Parameters
    ----------
    records : list of dict
        Round records, as :func:`simulate` returns them.
    metric : str
        A key of the records (records without it are left out).

    Returns
    -------
    dict
        strategy -> labels -> (mean, std across seeds, number of seeds), budgets ascending.

    Examples
    --------
    >>> from activerm_fast.simulate import summarize
    >>> records = [  # seed k scores labels / 400 + k / 100
    ...     {"strategy": "xtx", "seed": k, "labels": n, "spearman": n / 400 + k / 100}
    ...     for k in range(3) for n in (100, 200)
    ... ]
    >>> mean, std, seeds = summarize(records, "spearman")["xtx"][200]  # 0.50, 0.51, 0.52
    >>> round(mean, 3), round(std, 4), seeds
    (0.51, 0.0082, 3)
    >>> list(summarize(records, "spearman")["xtx"]), summarize(records, "accuracy")
    ([100, 200], {})
    """
    grouped: dict[str, dict[int, list[float]]] = {}
    for record in records:
        if metric in record:
            grouped.setdefault(record["strategy"], {}).setdefault(record["labels"], []).append(
                record[metric]
            )
    return {
        strategy: {
            labels: (float(np.mean(v)), float(np.std(v)), len(v))
            for labels, v in sorted(by_labels.items())
        }
        for strategy, by_labels in grouped.items()
    }


def format_table(records: list[dict[str, Any]]) -> str:
    """One block per headline metric: strategies as rows, label budgets as columns, mean ± std.

    Parameters
    ----------
    records : list of dict
        Round records, as :func:`simulate` returns them.

    Returns
    -------
    str
        The blocks of :func:`headline_metrics`, separated by a blank line.

    Examples
    --------
    >>> from activerm_fast.simulate import format_table
    >>> runs = [("random", 100, 0.25), ("random", 200, 0.5), ("xtx", 100, 0.4)]  # no xtx at 200
    >>> records = [dict(strategy=s, seed=0, labels=n, spearman=v) for s, n, v in runs]
    >>> print(format_table(records))  # doctest: +NORMALIZE_WHITESPACE
    spearman, mean ± std over seeds
    strategy       100 labels     200 labels
    ----------------------------------------
    random      0.250 ± 0.000  0.500 ± 0.000
    xtx         0.400 ± 0.000
    """
    blocks = []
    for metric in headline_metrics(records):
        summary = summarize(records, metric)
        budgets = sorted({labels for by_labels in summary.values() for labels in by_labels})
        width = max(len(s) for s in [*summary, "strategy"]) + 2
        header = f"{'strategy':<{width}}" + "".join(f"{f'{b} labels':>15}" for b in budgets)
        lines = [f"{metric}, mean ± std over seeds", header, "-" * len(header)]
        for strategy, by_labels in summary.items():
            cells = "".join(
                f"{f'{by_labels[b][0]:.3f} ± {by_labels[b][1]:.3f}':>15}"
                if b in by_labels
                else f"{'':>15}"
                for b in budgets
            )
            lines.append(f"{strategy:<{width}}{cells}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


@dataclass(frozen=True)
class Verdict:
    """How one strategy compares with the baseline on one metric (see :func:`verdicts`).

    ``target`` is the baseline's mean at its final budget ``budget``; ``needed`` the labels each
    seed of the strategy took to reach it (interpolated on its learning curve; ``budget`` for a
    seed that never reached it, counted in ``reached``); ``baseline_needed`` the same for the
    baseline's own seeds; ``final`` and ``baseline_final`` the (mean, std) at the final budget.
    ``outcome`` is "fewer labels", "more labels" or "no clear difference".

    Examples
    --------
    >>> from activerm_fast.simulate import verdicts
    >>> points = [("random", 100, 0.4), ("random", 200, 0.6), ("xtx", 100, 0.6), ("xtx", 200, 0.7)]
    >>> records = [{"strategy": s, "seed": 0, "labels": n, "spearman": v} for s, n, v in points]
    >>> verdict = verdicts(records)[0]  # one seed: xtx reaches random's final 0.6 at 100 labels
    >>> verdict.strategy, verdict.outcome, verdict.budget, verdict.needed, verdict.baseline_needed
    ('xtx', 'fewer labels', 200, (100.0,), (200.0,))
    """

    strategy: str
    metric: str
    budget: int
    target: float
    needed: tuple[float, ...]
    reached: int
    baseline_needed: tuple[float, ...]
    final: tuple[float, float]
    baseline_final: tuple[float, float]
    outcome: str

    @property
    def saving(self) -> tuple[float, float]:
        """(mean, std over seeds) of the labels saved: budget minus labels needed.

        Examples
        --------
        >>> from activerm_fast.simulate import verdicts
        >>> curve = {"random": [0.4, 0.6], "xtx": [0.5, 0.7]}  # at 100 and 200 labels, one seed
        >>> records = [
        ...     {"strategy": s, "seed": 0, "labels": 100 * (i + 1), "spearman": v}
        ...     for s, values in curve.items() for i, v in enumerate(values)
        ... ]
        >>> verdicts(records)[0].saving  # xtx reaches 0.6 half-way, at 150 labels
        (50.0, 0.0)
        """
        saved = self.budget - np.asarray(self.needed)
        return float(saved.mean()), float(saved.std())

    def line(self) -> str:
        """The plain-language verdict, as :func:`format_verdicts` prints it.

        Examples
        --------
        >>> from activerm_fast.simulate import verdicts
        >>> finals = {"random": 0.6, "bald": 0.4}  # two seeds each, all at 100 labels
        >>> records = [
        ...     {"strategy": s, "seed": seed, "labels": 100, "spearman": v}
        ...     for s, v in finals.items() for seed in (0, 1)
        ... ]
        >>> print(verdicts(records)[0].line())  # doctest: +NORMALIZE_WHITESPACE
        bald: MORE LABELS: reaches the baseline's final spearman (0.600 at 100 labels) with
        100 ± 0 labels (0 of 2 seeds within the budget), saving 0 (0%); ends at
        0.400 ± 0.000 against 0.600 ± 0.000
        """
        mean, std = self.saving
        final, spread = self.final
        base, base_spread = self.baseline_final
        seeds = len(self.needed)
        reach = (
            f"reaches the baseline's final {self.metric} ({self.target:.3f} at {self.budget} "
            f"labels) with {self.budget - mean:.0f} ± {std:.0f} labels ({self.reached} of "
            f"{seeds} seeds within the budget), saving {mean:.0f} ({100 * mean / self.budget:.0f}%)"
        )
        ends = f"ends at {final:.3f} ± {spread:.3f} against {base:.3f} ± {base_spread:.3f}"
        verdict = {"fewer labels": "FEWER LABELS", "more labels": "MORE LABELS"}
        return f"{self.strategy}: {verdict.get(self.outcome, self.outcome)}: {reach}; {ends}"


def verdicts(
    records: list[dict[str, Any]], metric: str | None = None, baseline: str = "random"
) -> list[Verdict]:
    """Each strategy of ``records`` against ``baseline``: will it save labels?

    The target is the baseline's mean ``metric`` (default: the first headline metric) at its
    final budget B. For every seed, the labels a strategy needs to reach the target are read
    off its learning curve by linear interpolation between budgets (B when it never does, so a
    seed is never credited beyond the budget); the baseline's own seeds are measured the same
    way, which shows how far seed noise alone moves that number. Outcome "fewer labels" when
    the strategy's saving (B minus labels needed), less its std over seeds, exceeds the
    baseline's own saving plus its std, or when its final mean less its std exceeds the
    baseline's final mean plus its std (the baseline would need more than B labels to match
    it); "more labels" when the strategy's final mean plus its std stays below the baseline's
    final mean less its std; otherwise "no clear difference" (the seed spreads overlap).

    Parameters
    ----------
    records : list of dict
        Round records of several strategies over the same seeds, as :func:`simulate` returns.
    metric : str, optional
        The metric compared; the first of :func:`headline_metrics` when None.
    baseline : str, default "random"
        The strategy compared with.

    Returns
    -------
    list of Verdict
        One per strategy other than the baseline, in the records' order.

    Raises
    ------
    ValueError
        If ``records`` is empty or holds no ``metric`` of the baseline.

    Examples
    --------
    >>> curves = {  # spearman at 100 and 200 labels, one pair per seed
    ...     "random": [(0.50, 0.60), (0.45, 0.62), (0.50, 0.58)],
    ...     "xtx": [(0.60, 0.70), (0.62, 0.72), (0.58, 0.68)],
    ... }
    >>> records = [
    ...     {"strategy": name, "seed": seed, "labels": labels, "spearman": value}
    ...     for name, runs in curves.items()
    ...     for seed, run in enumerate(runs)
    ...     for labels, value in zip((100, 200), run)
    ... ]
    >>> from activerm_fast.simulate import verdicts
    >>> [(v.strategy, v.outcome, v.target) for v in verdicts(records)]
    [('xtx', 'fewer labels', 0.6)]
    >>> [round(labels, 1) for labels in verdicts(records)[0].baseline_needed]  # seed noise
    [200.0, 188.2, 200.0]
    >>> verdicts(records, baseline="bald")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: records hold no 'spearman' of the baseline 'bald' (strategies: ...
    """
    if not records:
        raise ValueError("records is empty: run simulate first")
    metric = metric if metric is not None else (headline_metrics(records) or ["spearman"])[0]
    curves: dict[str, dict[int, dict[int, float]]] = {}
    for record in records:
        if metric in record:
            by_seed = curves.setdefault(record["strategy"], {})
            by_seed.setdefault(record["seed"], {})[record["labels"]] = float(record[metric])
    if baseline not in curves:
        raise ValueError(
            f"records hold no {metric!r} of the baseline {baseline!r} (strategies: "
            f"{sorted(curves)}); run it beside the others"
        )
    base_runs = curves[baseline]
    budget = max(max(curve) for curve in base_runs.values())
    target = float(np.mean([curve[max(curve)] for curve in base_runs.values()]))
    baseline_needed = [_labels_to_reach(curve, target, budget) for curve in base_runs.values()]
    baseline_final = _final(base_runs)
    base_saving = budget - np.asarray([needed for needed, _ in baseline_needed])
    result = []
    for strategy, runs in curves.items():
        if strategy == baseline:
            continue
        reach = [_labels_to_reach(curve, target, budget) for curve in runs.values()]
        needed = np.asarray([labels for labels, _ in reach])
        saving = budget - needed
        final = _final(runs)
        saves = saving.mean() - saving.std() > base_saving.mean() + base_saving.std()
        if saves or final[0] - final[1] > baseline_final[0] + baseline_final[1]:
            outcome = "fewer labels"
        elif final[0] + final[1] < baseline_final[0] - baseline_final[1]:
            outcome = "more labels"
        else:
            outcome = "no clear difference"
        result.append(
            Verdict(
                strategy=strategy,
                metric=metric,
                budget=budget,
                target=target,
                needed=tuple(float(x) for x in needed),
                reached=sum(hit for _, hit in reach),
                baseline_needed=tuple(float(x) for x, _ in baseline_needed),
                final=final,
                baseline_final=baseline_final,
                outcome=outcome,
            )
        )
    return result


def format_verdicts(records: list[dict[str, Any]], baseline: str = "random") -> str:
    """The verdict lines of :func:`verdicts`, after a line on the baseline's own seed noise.

    Parameters
    ----------
    records : list of dict
        Round records, as :func:`simulate` returns them.
    baseline : str, default "random"
        The strategy compared with.

    Returns
    -------
    str
        The lines, or one saying there is nothing to compare when only the baseline ran.

    Raises
    ------
    ValueError
        If ``records`` is empty or holds no run of the baseline (see :func:`verdicts`).

    Examples
    --------
    >>> from activerm_fast.simulate import format_verdicts
    >>> records = [  # seed k scores labels / slope + k / 50; xtx has the steeper curve
    ...     {"strategy": s, "seed": k, "labels": n, "spearman": n / slope + k / 50}
    ...     for s, slope in [("random", 400), ("xtx", 250)] for k in range(3) for n in (100, 200)
    ... ]
    >>> print(format_verdicts(records))  # doctest: +NORMALIZE_WHITESPACE
    Will a strategy save labels? Target: random's final spearman (0.520 at 200 labels);
    random's own seeds reach it with 197 ± 4 labels (± is the std over seeds)
    xtx: FEWER LABELS: reaches the baseline's final spearman (0.520 at 200 labels) with
    125 ± 4 labels (3 of 3 seeds within the budget), saving 75 (38%); ends at
    0.820 ± 0.016 against 0.520 ± 0.016
    >>> format_verdicts([r for r in records if r["strategy"] == "random"])
    "only 'random' ran: nothing to compare with it"
    """
    found = verdicts(records, baseline=baseline)
    if not found:
        return f"only {baseline!r} ran: nothing to compare with it"
    first = found[0]
    noise = np.asarray(first.baseline_needed)
    head = (
        f"Will a strategy save labels? Target: {baseline}'s final {first.metric} "
        f"({first.target:.3f} at {first.budget} labels); {baseline}'s own seeds reach it with "
        f"{noise.mean():.0f} ± {noise.std():.0f} labels (± is the std over seeds)"
    )
    return "\n".join([head, *(verdict.line() for verdict in found)])


def _labels_to_reach(curve: dict[int, float], target: float, budget: int) -> tuple[float, bool]:
    """Labels at which a learning curve first reaches ``target`` (linear between budgets), and
    whether it does; ``budget`` when it does not."""
    points = sorted(curve.items())
    for index, (labels, value) in enumerate(points):
        if value >= target:
            if index == 0:
                return float(labels), True
            before, previous = points[index - 1]
            fraction = (target - previous) / (value - previous)
            return before + fraction * (labels - before), True
    return float(budget), False


def _final(runs: dict[int, dict[int, float]]) -> tuple[float, float]:
    """(mean, std over seeds) of each seed's value at its largest budget."""
    finals = [curve[max(curve)] for curve in runs.values()]
    return float(np.mean(finals)), float(np.std(finals))
