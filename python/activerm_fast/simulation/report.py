"""Tables of a strategy comparison's round records: the headline metrics, mean and spread over
seeds per strategy and label budget."""

from __future__ import annotations

from typing import Any

import numpy as np


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
