"""Compare strategies over seeds with :class:`~activerm_fast.loop.ActiveLoop`, and report."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ._validation import count_argument, known_name
from .data import Dataset
from .loop import ActiveLoop, LoopConfig
from .selectors import STRATEGIES


def simulate(
    dataset: Dataset,
    strategies: Sequence[str],
    *,
    config: LoopConfig | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every strategy with every seed; returns all round records.

    With ``out_dir``, each run checkpoints under ``out_dir/checkpoints`` (so a restarted
    command resumes) and the records are written to ``results.csv`` and ``results.json``.
    """
    config = config or LoopConfig()
    # checked before the first run: a bad name must not surface after hours of others
    strategies = [known_name(strategy, STRATEGIES, "strategy") for strategy in strategies]
    seeds = [count_argument(seed, "seed") for seed in seeds]
    out = None if out_dir is None else Path(out_dir)
    records: list[dict[str, Any]] = []
    total = len(strategies) * len(seeds) * config.rounds
    with tqdm(total=total, desc="rounds", unit="round", disable=not progress) as bar:

        def advance(_: dict[str, Any]) -> None:
            bar.update(1)

        for seed in seeds:
            for strategy in strategies:
                bar.set_postfix_str(f"{strategy}, seed {seed}")
                folder = None if out is None else out / "checkpoints" / f"{strategy}-seed{seed}"
                loop = ActiveLoop(dataset, strategy, config, seed=seed, checkpoint_dir=folder)
                done_before = bar.n
                runs = loop.run(on_round=advance)
                bar.update(len(runs) - (bar.n - done_before))  # rounds resumed from disk
                records.extend(runs)
    if out is not None:
        write_results(records, out)
    return records


def write_results(records: list[dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(records, indent=1))
    columns = list(dict.fromkeys(key for record in records for key in record))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)


def headline_metrics(records: list[dict[str, Any]]) -> list[str]:
    """The metrics a summary shows: Spearman, the largest N's best-of-N quantile, accuracy."""
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
    """strategy -> labels -> (mean, std across seeds, number of seeds) of ``metric``."""
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
    """One block per headline metric: strategies as rows, label budgets as columns, mean ± std."""
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
