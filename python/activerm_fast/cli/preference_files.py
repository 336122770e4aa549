"""``activerm-fast export`` and ``import``: labelled pairs out as a TRL preference dataset, and a
preference dataset in, embedded once."""

from __future__ import annotations

import argparse
from typing import Any

from ..data.preference_data import (
    FORMS,
    TIES,
    ExportSummary,
    export_preferences,
    import_preferences,
    read_annotations,
    read_simulation_labels,
)
from .common import load_dataset, optional_packages, positive


def add(commands: Any) -> None:
    """Register both commands on the ``commands`` sub-parsers."""
    exp = commands.add_parser("export", help="write labelled pairs as a TRL preference dataset")
    exp.add_argument(
        "--data",
        required=True,
        help="the dataset the pairs index, with texts: arena-bench or a preference dataset",
    )
    source = exp.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--labelled", help="JSONL of labelled pairs (label 1, 0, 0.5 for a tie, or null)"
    )
    source.add_argument("--run", help="a simulate run: OUT/checkpoints/<strategy>-seed<seed>")
    exp.add_argument(
        "--out", required=True, help=".jsonl, .parquet, or a folder (datasets.save_to_disk)"
    )
    exp.add_argument(
        "--form",
        choices=FORMS,
        default="standard",
        help="standard: prompt/chosen/rejected texts; conversational: the same as messages; "
        "implicit: each side messages with its own prompt (holds cross-prompt pairs)",
    )
    exp.add_argument(
        "--ties", choices=TIES, default="drop", help="leave ties out, or write each both ways"
    )
    exp.add_argument(
        "--with-embeddings",
        action="store_true",
        help="add chosen_embedding and rejected_embedding columns",
    )
    exp.set_defaults(handler=export)

    imp = commands.add_parser("import", help="embed a preference dataset once, for --data")
    imp.add_argument("source", help="a TRL preference dataset: .jsonl, .parquet or a folder")
    imp.add_argument(
        "--out", required=True, help="the same with embedding columns: .jsonl, .parquet or a folder"
    )
    imp.add_argument(
        "--model", help="sentence-transformers model folder (default: offline all-MiniLM-L6-v2)"
    )
    imp.add_argument("--batch-size", type=positive, default=32)
    imp.add_argument("--no-progress", action="store_true")
    imp.set_defaults(handler=import_)


def export(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.data)
    if args.labelled is not None:
        pairs, labels = read_annotations(args.labelled, dataset.n)
    else:
        pairs, labels = read_simulation_labels(args.run, dataset)
    with optional_packages():
        summary = export_preferences(
            dataset,
            pairs,
            labels,
            args.out,
            form=args.form,
            ties=args.ties,
            embeddings=args.with_embeddings,
        )
    print(_export_report(summary, args.labelled or args.run))
    return 0


def _export_report(summary: ExportSummary, source: str) -> str:
    line = f"wrote {summary.rows} rows ({summary.form} form) to {summary.path} from {source}: "
    line += f"{summary.decided} pairs with a winner"
    left_out = []
    if summary.ties and summary.ties_written:
        line += f", {summary.ties} ties written both ways"
    elif summary.ties:
        left_out.append(f"{summary.ties} ties (--ties both writes each both ways)")
    if summary.unlabelled:
        left_out.append(f"{summary.unlabelled} pairs without a label")
    return line + ("; left out " + " and ".join(left_out) if left_out else "")


def import_(args: argparse.Namespace) -> int:
    with optional_packages():
        dataset, summary = import_preferences(
            args.source,
            args.out,
            args.model,
            batch_size=args.batch_size,
            show_progress_bar=not args.no_progress,
        )
    print(
        f"{args.source}: {summary.rows} comparisons of {dataset.n} responses to "
        f"{dataset.num_prompts} prompts, {dataset.dim}-dimensional embeddings; wrote "
        f"{summary.path} ({summary.form} form with embedding columns): pass it as --data"
    )
    return 0
