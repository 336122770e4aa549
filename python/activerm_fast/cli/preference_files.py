"""``activerm-fast export`` and ``import``: labelled pairs out as a TRL preference dataset, and a
preference dataset in, embedded once; with ``--to``/``--from label-studio|argilla`` a batch out
to an annotation tool and its labels back (:mod:`~activerm_fast.cli.annotation_tools`)."""

from __future__ import annotations

import argparse
from typing import Any

from ..data.preference_data import (
    FORMS,
    TIES,
    ExportSummary,
    export_preferences,
    import_preferences,
    output_kind,
    read_annotations,
    read_simulation_labels,
)
from . import annotation_tools
from .common import (
    Failure,
    load_dataset,
    optional_packages,
    positive,
    prepare_outputs,
    refuse_given,
)


def add(commands: Any) -> None:
    """Register both commands on the ``commands`` sub-parsers."""
    exp = commands.add_parser(
        "export",
        help="write labelled pairs as a TRL preference dataset, or send a batch to a tool",
    )
    exp.add_argument(
        "--to",
        choices=("trl", *annotation_tools.TOOLS),
        default="trl",
        help="trl: a preference dataset; label-studio: tasks on a server (or an import file "
        "with --out); argilla: a Dataset.to_disk folder",
    )
    exp.add_argument(
        "--data",
        required=True,
        help="the dataset the pairs index, with texts: arena-bench or a preference dataset",
    )
    # one source is required for --to trl (export checks): the tools take --batch instead
    source = exp.add_mutually_exclusive_group()
    source.add_argument(
        "--labelled", help="JSONL of labelled pairs (label 1, 0, 0.5 for a tie, or null)"
    )
    source.add_argument("--run", help="a simulate run: OUT/checkpoints/<strategy>-seed<seed>")
    exp.add_argument("--batch", help="a batch of select to send (--to label-studio or argilla)")
    exp.add_argument(
        "--out",
        help=".jsonl, .parquet, or a new folder (datasets.save_to_disk; a previous export's is "
        "replaced); a tool's file or folder",
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
    annotation_tools.export_arguments(exp)
    exp.set_defaults(handler=export)

    imp = commands.add_parser(
        "import",
        help="embed a preference dataset once, for --data, or take a tool's labels back",
    )
    imp.add_argument(
        "source",
        nargs="?",
        help="a TRL preference dataset: .jsonl, .parquet or a folder; a Label Studio export "
        "file (else --project on a server); an Argilla Dataset.to_disk folder",
    )
    imp.add_argument(
        "--from",
        dest="from_",
        choices=("trl", *annotation_tools.TOOLS),
        default="trl",
        help="trl: a preference dataset; label-studio or argilla: annotations into --labelled",
    )
    imp.add_argument("--out", help="the same with embedding columns: .jsonl, .parquet or a folder")
    imp.add_argument(
        "--model", help="sentence-transformers model folder (default: offline all-MiniLM-L6-v2)"
    )
    imp.add_argument("--batch-size", type=positive, default=32)
    imp.add_argument("--no-progress", action="store_true")
    annotation_tools.import_arguments(imp)
    imp.set_defaults(handler=import_)


def export(args: argparse.Namespace) -> int:
    if args.to != "trl":
        return annotation_tools.export(args)
    if args.batch is not None:
        raise Failure("--batch is for --to label-studio or argilla; a TRL export takes --labelled")
    why = "is an annotation tool's (--to label-studio or argilla): a TRL export has no use for it"
    refuse_given(args, annotation_tools.TOOL_EXPORT_FLAGS, why)
    if args.labelled is None and args.run is None:
        raise Failure("one of the arguments --labelled --run is required")
    if args.out is None:
        raise Failure("the following arguments are required: --out")
    output_kind(args.out, "--out")  # an empty or occupied --out fails before the dataset loads
    prepare_outputs(args, ["--out"], ["--data", "--labelled", "--run"])
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
    if summary.identical:
        left_out.append(f"{summary.identical} pairs of one response text twice")
    return line + ("; left out " + " and ".join(left_out) if left_out else "")


def import_(args: argparse.Namespace) -> int:
    if args.from_ != "trl":
        return annotation_tools.import_(args)
    why = "is an annotation tool's (--from label-studio or argilla): a TRL import has no use for it"
    refuse_given(args, annotation_tools.TOOL_IMPORT_FLAGS, why)
    if args.source is None or args.out is None:
        raise Failure("the following arguments are required: source, --out")
    output_kind(args.out, "--out")
    prepare_outputs(args, ["--out"], ["source", "--model"])
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
