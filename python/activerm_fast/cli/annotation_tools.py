"""``export --to label-studio|argilla`` and ``import --from label-studio|argilla``: a batch out to
an annotation tool, its annotations back into the labelled file (the options and handlers that
:mod:`~activerm_fast.cli.preference_files` hands these two targets to)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.annotation_tools import PullSummary
from ..data.argilla import pull_argilla, write_argilla
from ..data.label_studio import (
    TOKEN_VARIABLE,
    URL_VARIABLE,
    label_config,
    pull_label_studio,
    push_label_studio,
    write_label_studio_tasks,
)
from ..data.preference_data import read_annotations
from .common import Failure, load_dataset, positive, prepare_outputs, refuse_given

TOOLS = ("label-studio", "argilla")
# the options of a Label Studio server, which Argilla's folders and the import file do without
SERVER_FLAGS = ("--project", "--url", "--token")
# the options of export and import that only a tool uses, refused with --to/--from trl
TOOL_EXPORT_FLAGS = ("--annotators", "--no-tie", "--name", "--label-config", *SERVER_FLAGS)
TOOL_IMPORT_FLAGS = ("--data", "--labelled", "--held", *SERVER_FLAGS)
# the options of a TRL export and import, refused with a tool
TRL_EXPORT_FLAGS = ("--labelled", "--run", "--form", "--ties", "--with-embeddings")
TRL_IMPORT_FLAGS = ("--out", "--model", "--batch-size", "--no-progress")


def export_arguments(exp: argparse.ArgumentParser) -> None:
    """The tool options of ``export`` (``--batch`` joins its source group there)."""
    _server_arguments(exp)
    exp.add_argument(
        "--annotators", type=positive, default=1, help="annotators asked per pair (tools only)"
    )
    exp.add_argument("--no-tie", action="store_true", help="offer left/right only (tools only)")
    exp.add_argument("--name", default="activerm-fast", help="the Argilla dataset's name")
    exp.add_argument(
        "--label-config",
        help="with --to label-studio --out: where the project's labelling configuration is "
        "written (default: beside --out, as <name>.label_config.xml)",
    )


def import_arguments(imp: argparse.ArgumentParser) -> None:
    """The tool options of ``import``."""
    imp.add_argument("--data", help="the dataset the pushed pairs index (tools only)")
    imp.add_argument(
        "--labelled", help="the labelled JSONL file to merge the tool's labels into (tools only)"
    )
    imp.add_argument(
        "--held",
        help="where ties, skipped and pending pairs go (default: <labelled>.held.jsonl), "
        "for select --exclude",
    )
    _server_arguments(imp)


def _server_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--project", help="the Label Studio project's title")
    command.add_argument("--url", help=f"the Label Studio server (default ${URL_VARIABLE})")
    command.add_argument("--token", help=f"its access token (default ${TOKEN_VARIABLE})")


def export(args: argparse.Namespace) -> int:
    """Push ``--batch`` to Label Studio (or write its import file with ``--out``), or write an
    Argilla dataset folder."""
    if args.batch is None:
        raise Failure(f"--to {args.to} sends a batch of pairs: give --batch (select's --out)")
    refuse_given(
        args, TRL_EXPORT_FLAGS, f"is a TRL export's (--to trl): --to {args.to} sends --batch"
    )
    if args.to == "argilla":
        refuse_given(args, SERVER_FLAGS, "is a Label Studio server's: --to argilla writes a folder")
    else:
        refuse_given(args, ["--name"], "names an Argilla dataset: --to label-studio has none")
    written = ["--out"]
    if args.to == "label-studio" and args.out is not None:
        _check_import_file(args)
        written.append("--label-config")
    elif args.label_config is not None:
        raise Failure("--label-config is written with --to label-studio --out (an import file)")
    # Label Studio's import file is a file; Argilla's dataset is a folder
    files = written if args.to == "label-studio" else []
    prepare_outputs(args, written, ["--data", "--batch"], files=files)
    dataset = load_dataset(args.data)
    pairs = read_annotations(args.batch, dataset.n)[0]
    ties = not args.no_tie
    if args.to == "argilla":
        if args.out is None:
            raise Failure("--to argilla writes a dataset folder: give --out")
        count = write_argilla(
            dataset, pairs, args.out, name=args.name, ties=ties, annotators=args.annotators
        )
        print(
            f"wrote {count} records of {args.batch} to the Argilla dataset folder {args.out}: "
            "load it with argilla's Dataset.from_disk"
        )
    elif args.out is not None:
        count = write_label_studio_tasks(dataset, pairs, args.out)
        Path(args.label_config).write_text(label_config(ties), encoding="utf-8")
        print(
            f"wrote {count} Label Studio tasks of {args.batch} to {args.out} and their labelling "
            f"configuration to {args.label_config}: create a project with that configuration "
            f"(Settings, Labeling Interface, Code) and import {args.out} into it"
        )
    else:
        if args.project is None:
            raise Failure("--to label-studio needs --project (or --out for an import file)")
        summary = push_label_studio(
            dataset,
            pairs,
            args.project,
            url=args.url,
            token=args.token,
            ties=ties,
            annotators=args.annotators,
        )
        print(f"{summary.line()} from {args.batch}")
    return 0


def _check_import_file(args: argparse.Namespace) -> None:
    """For ``--to label-studio --out``: a Failure for the options only a server takes, and
    ``--label-config`` defaulted beside ``--out``."""
    why = "pushes to a server and --out writes an import file: give one of them"
    refuse_given(args, SERVER_FLAGS, why)
    if args.annotators != 1:  # the server's maximum_annotations, which no task file carries
        raise Failure(
            f"--annotators {args.annotators} is a project setting an import file cannot carry: "
            "push with --project, or drop --annotators"
        )
    if args.label_config is None:
        out = Path(args.out)
        args.label_config = str(out.with_name(f"{out.stem}.label_config.xml"))


def import_(args: argparse.Namespace) -> int:
    """Merge a tool's annotations into ``--labelled``."""
    for flag, value in (("--data", args.data), ("--labelled", args.labelled)):
        if value is None:
            raise Failure(f"--from {args.from_} needs {flag}")
    why = f"is a TRL import's (--from trl): --from {args.from_} merges labels into --labelled"
    refuse_given(args, TRL_IMPORT_FLAGS, why)
    if args.from_ == "argilla":
        refuse_given(
            args, SERVER_FLAGS, "is a Label Studio server's: --from argilla reads a folder"
        )
    elif args.source is not None:
        why = "pulls from a server and source is an export file: give one of them"
        refuse_given(args, SERVER_FLAGS, why)
    written = ["--labelled", "--held"]
    prepare_outputs(args, written, ["--data", "source"], files=written)
    dataset = load_dataset(args.data)
    summary: PullSummary
    if args.from_ == "argilla":
        if args.source is None:
            raise Failure("--from argilla reads a folder of Dataset.to_disk: give it as source")
        summary = pull_argilla(dataset, args.source, args.labelled, held=args.held)
        where = args.source
    elif args.source is not None:
        summary = pull_label_studio(dataset, args.labelled, export=args.source, held=args.held)
        where = args.source
    else:
        if args.project is None:
            raise Failure("--from label-studio needs --project (or an export file as source)")
        summary = pull_label_studio(
            dataset,
            args.labelled,
            project=args.project,
            url=args.url,
            token=args.token,
            held=args.held,
        )
        where = f"project {args.project!r}"
    print(summary.line(where) + f"; select --exclude {summary.held} keeps them out")
    return 0
