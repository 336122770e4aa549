"""Learning curves of a simulation as a PNG (matplotlib, a core dependency).

matplotlib is imported with this module, so a broken installation fails when the module is
imported, before a simulation starts. The figure is drawn without pyplot: no display, no
global backend switch, no open figures left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .report import headline_metrics, summarize

# a line style for every ten strategies (matplotlib's ten colours each), and legend rows per
# column beside the panels
_LINESTYLES = ("-", "--", ":", "-.")
_LEGEND_ROWS = 12
_PANEL_WIDTH, _LEGEND_COLUMN_WIDTH, _HEIGHT = 5.5, 1.9, 4.2


def learning_curves(records: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """One panel per headline metric: mean over seeds against labels used, ± one std shaded;
    one legend beside the panels, in as many columns as the strategies need.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> records = [
    ...     {"strategy": s, "seed": 0, "labels": b, "spearman": b / 300 + i / 10}
    ...     for i, s in enumerate(["random", "dopt-greedy"]) for b in (100, 200)
    ... ]
    >>> learning_curves(records, Path(tempfile.mkdtemp()) / "curves.png").suffix
    '.png'
    """
    metrics = headline_metrics(records)
    if not metrics:
        raise ValueError(
            "records hold no spearman, best_of_N_quantile or pair_accuracy to plot"
            + ("" if records else ": records is empty")
        )
    curves = {metric: summarize(records, metric) for metric in metrics}
    strategies = len(curves[metrics[0]]) if metrics else 0
    columns = max(1, -(-strategies // _LEGEND_ROWS))
    panels = _PANEL_WIDTH * len(metrics)
    width = panels + _LEGEND_COLUMN_WIDTH * columns
    fig = Figure(figsize=(width, _HEIGHT))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for index, (strategy, by_labels) in enumerate(curves[metric].items()):
            labels = list(by_labels)
            mean = [by_labels[b][0] for b in labels]
            std = [by_labels[b][1] for b in labels]
            # every strategy keeps its own line: a colour and a style
            style = {
                "color": f"C{index % 10}",
                "linestyle": _LINESTYLES[(index // 10) % len(_LINESTYLES)],
            }
            (line,) = ax.plot(labels, mean, marker="o", markersize=3, label=strategy, **style)
            ax.fill_between(
                labels,
                [m - s for m, s in zip(mean, std, strict=True)],
                [m + s for m, s in zip(mean, std, strict=True)],
                color=line.get_color(),
                alpha=0.12,
            )
        ax.set_xlabel("labelled comparisons")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    # the panels keep their share of the width; the legend stands to their right
    fig.tight_layout(rect=(0.0, 0.0, panels / width, 1.0))
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        loc="upper left",
        bbox_to_anchor=(panels / width, 0.93),
        fontsize=8,
        ncols=columns,
        frameon=False,
    )
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
