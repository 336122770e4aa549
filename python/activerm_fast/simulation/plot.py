"""Learning curves of a simulation as a PNG (matplotlib, a core dependency).

matplotlib is imported with this module, so a broken installation fails when the module is
imported, before a simulation starts. The figure is drawn without pyplot: no display, no
global backend switch, no open figures left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .simulate import headline_metrics, summarize


def learning_curves(records: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """One panel per headline metric: mean over seeds against labels used, ± one std shaded."""
    metrics = headline_metrics(records)
    fig = Figure(figsize=(5.5 * len(metrics), 4.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for index, (strategy, by_labels) in enumerate(summarize(records, metric).items()):
            labels = list(by_labels)
            mean = [by_labels[b][0] for b in labels]
            std = [by_labels[b][1] for b in labels]
            # ten colours, then the same colours dashed: every strategy keeps its own line
            style = {"color": f"C{index % 10}", "linestyle": "-" if index < 10 else "--"}
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
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
