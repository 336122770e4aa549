"""The ``activerm-fast`` command: simulate, select, export, import, info.

Every failure ends in one line on stderr, ``activerm-fast: error: ...`` naming the file or flag
at fault, and exit status 2 (130 when interrupted); never a traceback.

``select`` launched by torchrun (``torchrun --nproc-per-node N -m activerm_fast select ...``)
shards the candidate pool over the N processes (gloo): every process builds only its part of
the pool, rank 0 fits or loads the model and shares its features and rewards, the selection
runs on :mod:`activerm_fast.distributed`, and rank 0 writes the batch: the same file as one
process writes.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

from . import build_info, data
from ._threads import free_core_threads
from ._validation import first_line
from .annotation import BatchPlan, next_batch, plan_batch, read_labelled, write_batch
from .loop import LoopConfig
from .pairs import POOLS, candidate_pool
from .preference_data import (
    FORMS,
    TIES,
    ExportSummary,
    export_preferences,
    import_preferences,
    is_preference_path,
    load_preferences,
    read_annotations,
    read_simulation_labels,
)
from .selectors import FEATURE_CHOICES, RIDGE_MODES, STRATEGIES, prompt_features_for
from .simulate import format_table, format_verdicts, simulate

DEFAULT_STRATEGIES = (
    "random",
    "entropy",
    "bald",
    "bal-pm",
    "dopt-topk",
    "dopt-greedy",
    "past-dopt-greedy",
    "ensemble-dopt-greedy",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _integer(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"must be a {what} integer, got {text}")
    return value


def _positive(text: str) -> int:
    return _integer(text, 1, "positive")


def _non_negative(text: str) -> int:
    return _integer(text, 0, "non-negative")


def _number(text: str) -> float:
    """The float ``text`` spells, NaN (refused by every caller) when it spells none."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def _positive_or_inf(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number or inf, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


# --lazy's words and the lazy= they mean
LAZY_CHOICES: dict[str, bool | str] = {"auto": "auto", "true": True, "false": False}


def _design_arguments(command: argparse.ArgumentParser) -> None:
    """The D-optimal design's options, the same for simulate and select."""
    command.add_argument(
        "--ridge", type=_positive_float, default=LoopConfig.ridge, help="lambda of F0 = lambda I"
    )
    command.add_argument(
        "--ridge-mode",
        choices=RIDGE_MODES,
        default=LoopConfig.ridge_mode,
        help="relative: lambda = ridge x tr(F_labelled)/d, following the features' scale",
    )
    command.add_argument(
        "--features",
        choices=FEATURE_CHOICES,
        default=LoopConfig.features,
        help="what the design sees: the reward model's last hidden layer or the embeddings",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="activerm-fast",
        description="Choose which comparison pairs to label for Bradley-Terry reward models.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sim = commands.add_parser("simulate", help="compare labelling strategies in simulation")
    sim.add_argument(
        "--dataset",
        default="arena-bench",
        help="arena-bench, synthetic (shaped like real embeddings), synthetic-isotropic or a .npz",
    )
    sim.add_argument(
        "--strategies",
        nargs="+",
        default=list(DEFAULT_STRATEGIES),
        choices=sorted(STRATEGIES),
        metavar="STRATEGY",
    )
    sim.add_argument(
        "--pool", choices=POOLS, default="cross", help="candidate pairs across or within prompts"
    )
    sim.add_argument("--rounds", type=_positive, default=LoopConfig.rounds)
    sim.add_argument(
        "--per-round", type=_positive, default=LoopConfig.per_round, help="labels per round"
    )
    sim.add_argument("--seeds", type=_positive, default=3, help="number of seeds (0..S-1)")
    sim.add_argument("--prompts-per-round", type=_positive, default=LoopConfig.prompts_per_round)
    sim.add_argument("--cross-pairs", type=_positive, default=LoopConfig.cross_pairs)
    sim.add_argument("--ensemble", type=_positive, default=LoopConfig.ensemble)
    sim.add_argument(
        "--beta",
        type=_positive_or_inf,
        default=LoopConfig.beta,
        help="oracle label noise: BT temperature on standardised gold (inf: noiseless)",
    )
    sim.add_argument(
        "--warm-start", action="store_true", help="refit from the previous round's weights"
    )
    _design_arguments(sim)
    sim.add_argument("--out", default="activerm-fast-results", help="output folder (resumable)")
    sim.add_argument("--no-progress", action="store_true")
    sim.set_defaults(handler=_simulate)

    sel = commands.add_parser("select", help="choose the next batch of pairs to annotate")
    sel.add_argument(
        "--data",
        required=True,
        help="arena-bench, a .npz dataset or a preference dataset (.jsonl, .parquet, folder)",
    )
    sel.add_argument(
        "--labelled", required=True, help="JSONL of labelled pairs (may not exist yet)"
    )
    sel.add_argument("--k", type=_positive, required=True, help="pairs to choose")
    sel.add_argument("--strategy", choices=sorted(STRATEGIES), default="past-dopt-greedy")
    sel.add_argument("--model", help="where the fitted model is saved (loaded with --reuse-model)")
    sel.add_argument("--reuse-model", action="store_true", help="load --model instead of fitting")
    sel.add_argument("--pool", choices=POOLS, default="cross")
    sel.add_argument("--pool-size", type=_positive, default=200_000, help="cross-prompt candidates")
    sel.add_argument("--ensemble", type=_positive, default=3)
    _design_arguments(sel)
    sel.add_argument(
        "--lazy",
        choices=sorted(LAZY_CHOICES),
        default="auto",
        help="the greedy strategies' sweep: the exact lazy one, the dense one, or by size",
    )
    sel.add_argument("--seed", type=_non_negative, default=0)
    sel.add_argument("--out", required=True, help="JSONL batch to write")
    sel.set_defaults(handler=_select)

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
    exp.set_defaults(handler=_export)

    imp = commands.add_parser("import", help="embed a preference dataset once, for --data")
    imp.add_argument("source", help="a TRL preference dataset: .jsonl, .parquet or a folder")
    imp.add_argument(
        "--out", required=True, help="the same with embedding columns: .jsonl, .parquet or a folder"
    )
    imp.add_argument(
        "--model", help="sentence-transformers model folder (default: offline all-MiniLM-L6-v2)"
    )
    imp.add_argument("--batch-size", type=_positive, default=32)
    imp.add_argument("--no-progress", action="store_true")
    imp.set_defaults(handler=_import)

    info = commands.add_parser("info", help="build and device information")
    info.set_defaults(handler=_info)
    return parser


def _load_dataset(name: str) -> data.Dataset:
    if name == "synthetic":
        return data.synthetic(**data.REALISTIC_SYNTHETIC)
    if name == "synthetic-isotropic":
        return data.synthetic()
    if is_preference_path(name):
        with _optional_packages():
            return load_preferences(name)
    return data.load(name)


def _plotter() -> Callable[..., Path]:
    """The plotting function, imported before any work so a broken install fails at once."""
    try:
        from .plot import learning_curves
    except ImportError as err:
        raise _Failure(
            f"cannot import matplotlib to plot the results ({first_line(err)}); "
            "reinstall it: pip install 'matplotlib>=3.6'"
        ) from err
    return learning_curves


def _simulate(args: argparse.Namespace) -> int:
    learning_curves = _plotter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise _Failure(f"--out {out} exists and is not a folder")
    dataset = _load_dataset(args.dataset)
    # every LoopConfig field the command line has a flag for, under the same name
    given = vars(args)
    config = LoopConfig(**{f.name: given[f.name] for f in fields(LoopConfig) if f.name in given})
    print(
        f"{dataset.name}: {dataset.train().n} training responses to "
        f"{dataset.train().num_prompts} prompts, {dataset.test().num_prompts} test prompts; "
        f"{args.pool}-prompt pools, {args.rounds} rounds x {args.per_round} labels, "
        f"{args.seeds} seeds"
    )
    records = simulate(
        dataset,
        args.strategies,
        config=config,
        seeds=range(args.seeds),
        out_dir=out,
        progress=not args.no_progress,
    )
    print()
    print(format_table(records))
    print()
    if "random" in args.strategies:
        print(format_verdicts(records))
        print()
    print(f"wrote {out / 'results.csv'} and {out / 'results.json'}")
    title = f"{dataset.name}, {args.pool}-prompt pools"
    print(f"wrote {learning_curves(records, out / 'learning_curves.png', title)}")
    return 0


def _select(args: argparse.Namespace) -> int:
    if args.reuse_model and args.model is None:
        raise _Failure("--reuse-model needs --model, the file to load the model from")
    if _torchrun_world() > 1:
        return _select_sharded(args)
    dataset = _load_dataset(args.data)
    pairs, labels = read_labelled(args.labelled, dataset.n)
    with free_core_threads():  # many small torch operations: threads for the free cores
        batch, note = next_batch(
            dataset,
            pairs,
            labels,
            args.k,
            strategy=args.strategy,
            pool=args.pool,
            pool_size=args.pool_size,
            ensemble=args.ensemble,
            model_path=args.model,
            reuse_model=args.reuse_model,
            ridge=args.ridge,
            ridge_mode=args.ridge_mode,
            features=args.features,
            seed=args.seed,
            lazy=LAZY_CHOICES[args.lazy],
        )
    write_batch(args.out, dataset, batch)
    print(f"{note}; wrote {len(batch)} pairs to {args.out}")
    return 0


def _torchrun_world() -> int:
    """The number of processes torchrun started (1 without torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _select_sharded(args: argparse.Namespace) -> int:
    """``select`` as one of torchrun's processes: the pool sharded, the batch from rank 0."""
    import torch.distributed as dist

    from . import distributed

    dist.init_process_group("gloo", timeout=timedelta(minutes=30))
    try:
        rank, world = dist.get_rank(), dist.get_world_size()

        def load() -> tuple[data.Dataset, Any, Any, Any]:
            dataset = _load_dataset(args.data)
            pairs, labels = read_labelled(args.labelled, dataset.n)
            shard = candidate_pool(
                dataset.prompt_ids, args.pool, args.pool_size, args.seed, shard=(rank, world)
            )
            return dataset, pairs, labels, shard

        dataset, pairs, labels, shard = distributed.agreed(load)
        plan = distributed.agreed(lambda: _plan_on_rank_zero(args, dataset, pairs, labels))
        shared: list[Any] = [plan if rank == 0 else None]
        dist.broadcast_object_list(shared, src=0)  # one model's features on every rank
        plan = shared[0]
        with free_core_threads():
            selection = distributed.select(
                plan.strategy,
                features=plan.features,
                pairs=shard,
                k=args.k,
                rewards=plan.rewards,
                labelled=plan.labelled,
                ridge=args.ridge,
                ridge_mode=args.ridge_mode,
                seed=args.seed,
                prompt_features=prompt_features_for(plan.strategy, dataset),
                lazy=LAZY_CHOICES[args.lazy],
            )
        batch = distributed.pairs_at(shard, selection.indices).numpy()
        if rank == 0:
            write_batch(args.out, dataset, batch)
            print(f"{plan.note}; wrote {len(batch)} pairs to {args.out} ({world} processes)")
    finally:
        dist.destroy_process_group()
    # Gloo's worker threads release a finished collective's tensors after the caller has moved
    # on, and that needs the interpreter: one still doing so while Python finalises aborts the
    # process (a torch race: about 1 run in 10 here, after the batch was written; a barrier
    # does not help, it holds the earlier work). The batch is out, so end without finalising.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _plan_on_rank_zero(
    args: argparse.Namespace, dataset: data.Dataset, pairs: Any, labels: Any
) -> BatchPlan | None:
    """:func:`~activerm_fast.annotation.plan_batch` on rank 0 (None elsewhere)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    return plan_batch(
        dataset,
        pairs,
        labels,
        strategy=args.strategy,
        ensemble=args.ensemble,
        model_path=args.model,
        reuse_model=args.reuse_model,
        features=args.features,
        seed=args.seed,
    )


def _export(args: argparse.Namespace) -> int:
    dataset = _load_dataset(args.data)
    if args.labelled is not None:
        pairs, labels = read_annotations(args.labelled, dataset.n)
    else:
        pairs, labels = read_simulation_labels(args.run, dataset)
    with _optional_packages():
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


def _import(args: argparse.Namespace) -> int:
    with _optional_packages():
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


@contextmanager
def _optional_packages() -> Iterator[None]:
    """A missing optional package (datasets, pyarrow, sentence-transformers) is the user's to
    install: one line naming the extra, like any bad input."""
    try:
        yield
    except ImportError as err:
        raise _Failure(first_line(err)) from err


def _info(args: argparse.Namespace) -> int:
    info = build_info()
    width = max(len(key) for key in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0


class _Failure(Exception):
    """A command-line failure whose message is complete as it is."""


# what bad input (arguments, files, data) raises: reported by its message alone
_INPUT_ERRORS = (_Failure, ValueError, TypeError, OSError)


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except KeyboardInterrupt:
        print("activerm-fast: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except _INPUT_ERRORS as err:
        print(f"activerm-fast: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug rather than bad input: one line too, unless asked
        if os.environ.get("ACTIVERM_FAST_TRACEBACK"):
            raise
        print(
            f"activerm-fast: internal error: {type(err).__name__}: {_one_line(err)} "
            "(set ACTIVERM_FAST_TRACEBACK=1 for the traceback)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
