"""``activerm-fast simulate``: compare labelling strategies in simulation."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from .._validation import first_line
from ..data.pairs import POOLS
from ..model.precision import PRECISIONS
from ..selection.api import STRATEGIES, UNCERTAINTY
from ..simulation.loop import LoopConfig
from ..simulation.simulate import (
    _listed_once,
    format_table,
    format_verdicts,
    simulate,
    usable_cores,
)
from .common import Failure, design_arguments, load_dataset, positive, positive_or_inf

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


def add(commands: Any) -> None:
    """Register the command on the ``commands`` sub-parsers."""
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
    sim.add_argument("--rounds", type=positive, default=LoopConfig.rounds)
    sim.add_argument(
        "--per-round", type=positive, default=LoopConfig.per_round, help="labels per round"
    )
    sim.add_argument("--seeds", type=positive, default=3, help="number of seeds (0..S-1)")
    sim.add_argument("--prompts-per-round", type=positive, default=LoopConfig.prompts_per_round)
    sim.add_argument("--cross-pairs", type=positive, default=LoopConfig.cross_pairs)
    sim.add_argument("--ensemble", type=positive, default=LoopConfig.ensemble)
    sim.add_argument(
        "--beta",
        type=positive_or_inf,
        default=LoopConfig.beta,
        help="oracle label noise: BT temperature on standardised gold (inf: noiseless)",
    )
    sim.add_argument(
        "--warm-start", action="store_true", help="refit from the previous round's weights"
    )
    sim.add_argument(
        "--patience",
        type=positive,
        default=LoopConfig.patience,
        help="epochs a reward head trains on without a better held-out loss before it stops",
    )
    sim.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=LoopConfig.precision,
        help="what the reward-head fit multiplies in (its weights and updates stay float32); "
        "auto: bfloat16 where the CPU multiplies it natively",
    )
    design_arguments(sim)
    sim.add_argument(
        "--uncertainty",
        choices=UNCERTAINTY,
        default=LoopConfig.uncertainty,
        help="the model uncertainty of bald, bal-pm and the per-prompt rules: the ensemble's "
        "spread or the Laplace posterior of its last layer (one member will do)",
    )
    sim.add_argument("--out", default="activerm-fast-results", help="output folder (resumable)")
    sim.add_argument(
        "--jobs",
        type=positive,
        default=None,
        help="worker processes for the strategy x seed runs (default and most: the usable "
        "cores; 1: all in this process); the results are those of a serial run",
    )
    sim.add_argument("--no-progress", action="store_true")
    sim.set_defaults(handler=run)


def _plotter() -> Callable[..., Path]:
    """The plotting function, imported before any work so a broken install fails at once."""
    try:
        from ..simulation.plot import learning_curves
    except ImportError as err:
        raise Failure(
            f"cannot import matplotlib to plot the results ({first_line(err)}); "
            "reinstall it: pip install 'matplotlib>=3.6'"
        ) from err
    return learning_curves


def run(args: argparse.Namespace) -> int:
    _listed_once(args.strategies, "--strategies")  # in the flag's name, before any work
    learning_curves = _plotter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise Failure(f"--out {out} exists and is not a folder")
    dataset = load_dataset(args.dataset)
    # every LoopConfig field the command line has a flag for, under the same name
    given = vars(args)
    config = LoopConfig(**{f.name: given[f.name] for f in fields(LoopConfig) if f.name in given})
    header = (
        f"{dataset.name}: {dataset.train().n} training responses to "
        f"{dataset.train().num_prompts} prompts, {dataset.test().num_prompts} test prompts; "
        f"{args.pool}-prompt pools, {args.rounds} rounds x {args.per_round} labels, "
        f"{args.seeds} seeds, {args.uncertainty} uncertainty"
    )
    records = simulate(
        dataset,
        args.strategies,
        config=config,
        seeds=range(args.seeds),
        out_dir=out,
        progress=not args.no_progress,
        jobs=args.jobs if args.jobs is not None else usable_cores(),
        on_start=lambda: print(header, flush=True),  # after the checks: a refusal comes alone
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
