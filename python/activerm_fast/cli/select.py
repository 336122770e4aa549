"""``activerm-fast select``: choose the next batch of pairs to annotate.

With ``--implicit`` the candidates are an :class:`~activerm_fast.ImplicitPool`: pair k is
computed from (--seed, k) where a kernel needs it, never stored, so 10^9 candidates need 8 bytes
of state each with a model's Fisher weights computed in the sweep, 16 with stored weights (the
greedy strategies and ``random``).

Launched by torchrun (``torchrun --nproc-per-node N -m activerm_fast select ...``) it shards the
candidate pool over the N processes (gloo): every process builds only its part of the pool,
rank 0 fits or loads the model and shares its features and rewards, the selection runs on
:mod:`activerm_fast.distributed`, and rank 0 writes the batch: the same file as one process
writes.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from typing import Any

import numpy as np

from .. import data
from .._threads import free_core_threads, usable_cores
from ..data.annotation import BatchPlan, plan_batch, read_labelled, without_pairs, write_batch
from ..data.implicit_pool import ImplicitPool
from ..data.pairs import POOLS, Shard, candidate_pool
from ..data.preference_data import read_annotations
from ..data.reward_head import RewardHead, head_plan
from ..kernels import Selection
from ..model.precision import PRECISIONS
from ..selection.api import STRATEGIES, UNCERTAINTY, prompt_features_for, select
from .common import (
    LAZY_CHOICES,
    Failure,
    design_arguments,
    ensemble_size,
    load_dataset,
    non_negative,
    positive,
    prepare_outputs,
    refuse_given,
    report,
)

# the strategies an implicit pool runs (the registry's word for it)
IMPLICIT_STRATEGIES = sorted(name for name, entry in STRATEGIES.items() if entry.implicit)


def add(commands: Any) -> None:
    """Register the command on the ``commands`` sub-parsers."""
    sel = commands.add_parser("select", help="choose the next batch of pairs to annotate")
    sel.add_argument(
        "--data",
        required=True,
        help="arena-bench, a .npz dataset or a preference dataset (.jsonl, .parquet, folder)",
    )
    sel.add_argument(
        "--labelled", required=True, help="JSONL of labelled pairs (may not exist yet)"
    )
    sel.add_argument(
        "--exclude",
        action="append",
        help="JSONL of pairs never to propose, e.g. the held file of an annotation tool's "
        "import (still waiting, tied or skipped there) or a batch not pulled yet; repeatable",
    )
    sel.add_argument("--k", type=positive, required=True, help="pairs to choose")
    sel.add_argument("--strategy", choices=sorted(STRATEGIES), default="past-dopt-greedy")
    sel.add_argument("--model", help="where the fitted model is saved (loaded with --reuse-model)")
    sel.add_argument("--reuse-model", action="store_true", help="load --model instead of fitting")
    sel.add_argument(
        "--reward-head",
        action="store_true",
        help="the model is the reward model's score head saved in --data by activerm-fast embed",
    )
    sel.add_argument(
        "--pool",
        choices=POOLS,
        default="cross",
        help="pairs of responses to different prompts (cross) or to the same prompt (within)",
    )
    sel.add_argument(
        "--pool-size",
        type=positive,
        default=200_000,
        help="candidates: cross-prompt pairs drawn (every within-prompt pair is a candidate, "
        "unless --implicit)",
    )
    sel.add_argument(
        "--implicit",
        action="store_true",
        help="generate the --pool-size pairs of --pool from --seed where the kernels need them, "
        "never stored: 8 bytes of state per pair and model where the Fisher weights are "
        "computed in the sweep (when storing them would take a quarter of the memory) or there "
        "are none (the unit weights of a first batch without a model), 16 where they are "
        f"stored; strategies {', '.join(IMPLICIT_STRATEGIES)}; a pair may repeat in the pool, "
        "never in the batch",
    )
    sel.add_argument("--ensemble", type=ensemble_size, default=3)
    sel.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="what the reward model's fit multiplies in (its weights and updates stay "
        "float32); auto: bfloat16 where the CPU multiplies it natively",
    )
    design_arguments(sel)
    sel.add_argument(
        "--uncertainty",
        choices=UNCERTAINTY,
        default="ensemble",
        help="the model uncertainty of bald, bal-pm and the per-prompt rules: the ensemble's "
        "spread or the Laplace posterior of the last layer from the labelled pairs (one model "
        "will do: --reward-head, --ensemble 1)",
    )
    sel.add_argument(
        "--lazy",
        choices=sorted(LAZY_CHOICES),
        default="auto",
        help="the greedy strategies' sweep: the exact lazy one, the dense one, or by size",
    )
    sel.add_argument("--seed", type=non_negative, default=0)
    sel.add_argument(
        "--processes",
        type=positive,
        metavar="N",
        help="start N processes on this machine (at most one a usable core) and shard the pool "
        "over them, as torchrun --standalone --nproc-per-node N does, a failure reported by "
        "rank 0's one line alone "
        "(torchrun adds a traceback of its own for every process that fails)",
    )
    sel.add_argument("--out", required=True, help="JSONL batch to write")
    sel.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.reuse_model and args.model is None:
        raise Failure("--reuse-model needs --model, the file to load the model from")
    if args.reward_head and args.model is not None:
        raise Failure("--reward-head selects with the reward model's own head: drop --model")
    if args.reward_head:  # the head is fitted already, and designs on its input, the embeddings
        why = "is for a model select fits: --reward-head selects with the reward model's own head"
        refuse_given(args, ["--ensemble", "--precision", "--features"], why)
    if args.implicit:
        _check_implicit(args)
    _check_uncertainty(args)
    prepare_outputs(
        args, ["--out", "--model"], ["--data", "--labelled"], files=["--out", "--model"]
    )
    if _torchrun_world() > 1:
        return _select_sharded(args)
    if args.processes is not None and args.processes > 1:
        cores = usable_cores()
        if args.processes > cores:  # more ranks than cores would only take turns on them
            raise Failure(
                f"--processes {args.processes} is more than the {cores} cores this process may "
                f"use: each rank is a process of its own, and the batch is the same with fewer "
                "(torchrun shards over several machines)"
            )
        return _launch_processes(args.processes, args.argv)
    dataset = load_dataset(args.data)
    pairs, labels = read_labelled(args.labelled, dataset.n)
    candidates = _candidates(args, dataset)  # before the fit: a pool that cannot be built fails
    with free_core_threads():  # many small torch operations: threads for the free cores
        plan = _plan(args, dataset, pairs, labels)
        selection = _choose(select, args, dataset, plan, candidates)
    batch = _rows(candidates, selection.indices)
    write_batch(args.out, dataset, batch)
    print(f"{plan.note}; wrote {len(batch)} pairs to {args.out}")
    return 0


def _check_implicit(args: argparse.Namespace) -> None:
    """A Failure naming the flag for each option an implicit pool cannot run with."""
    if args.strategy not in IMPLICIT_STRATEGIES:
        raise Failure(
            f"--implicit runs the strategies {', '.join(IMPLICIT_STRATEGIES)}; --strategy "
            f"{args.strategy} needs a stored pool: drop --implicit"
        )
    needs_stored = {
        "--per-prompt": args.per_prompt is not None,
        "--ridge-mode relative": args.ridge_mode != "absolute",
        "--lazy true": args.lazy == "true",
        "--exclude": bool(args.exclude),
    }
    for flag, given in needs_stored.items():
        if given:
            raise Failure(f"{flag} needs a stored pool: drop --implicit or {flag.split()[0]}")


def _check_uncertainty(args: argparse.Namespace) -> None:
    """A Failure for a strategy that needs an ensemble's spread from one model, before any
    work (a first batch without labels would run ``xtx``, and the next would fail)."""
    if not STRATEGIES[args.strategy].needs_ensemble or args.uncertainty != "ensemble":
        return
    if args.reward_head:
        one, other = "--reward-head is one model", ""
    elif args.ensemble < 2:
        one, other = "--ensemble is 1", ", or raise --ensemble"
    else:
        return
    raise Failure(
        f"--strategy {args.strategy} needs the spread of an ensemble of at least 2 members, "
        f"and {one}: pass --uncertainty laplace (the Laplace posterior of the last layer)"
        f"{other}"
    )


def _candidates(
    args: argparse.Namespace, dataset: data.Dataset, shard: Shard | None = None
) -> np.ndarray | ImplicitPool:
    """The candidate pool the flags ask for (this rank's shard of it under torchrun): an
    implicit pool, or the stored one less the --exclude pairs."""
    if args.implicit:
        kind = ImplicitPool.cross_prompt if args.pool == "cross" else ImplicitPool.within_prompt
        pool = kind(dataset.prompt_ids, args.pool_size, seed=args.seed)
        return pool if shard is None else pool.shard(*shard)
    stored = candidate_pool(
        dataset.prompt_ids,
        args.pool,
        args.pool_size,
        args.seed,
        shard=shard,
        name="--pool-size",
        remedy=_REMEDY[args.pool],
    )
    return without_pairs(stored, _excluded(args.exclude, dataset.n))


# what a stored pool beyond the memory is refused with, in the command's own flags
_REMEDY = {
    "cross": "lower --pool-size, run more processes under torchrun, or pass --implicit (the "
    "pairs generated from --seed, never stored)",
    "within": "run more processes under torchrun, or pass --implicit with --pool-size, the "
    "within-prompt pairs to draw",
}


def _choose(
    chooser: Any,
    args: argparse.Namespace,
    dataset: data.Dataset,
    plan: BatchPlan,
    candidates: np.ndarray | ImplicitPool,
) -> Selection:
    """The batch ``plan`` says to choose from ``candidates``, by ``chooser``:
    :func:`~activerm_fast.select`, or :func:`activerm_fast.distributed.select` on a shard."""
    selection: Selection = chooser(
        plan.strategy,
        features=plan.features,
        pairs=candidates,
        k=args.k,
        rewards=plan.rewards,
        labelled=plan.labelled,
        prompt_features=prompt_features_for(plan.strategy, dataset),
        prompt_ids=dataset.prompt_ids,
        **_selection_options(args),
    )
    return selection


def _rows(candidates: np.ndarray | ImplicitPool, indices: Any) -> np.ndarray:
    """The (k, 2) rows of the dataset at the chosen positions of a one-process pool."""
    if isinstance(candidates, ImplicitPool):
        return candidates.rows(np.asarray(indices))
    rows: np.ndarray = candidates[np.asarray(indices)]
    return rows


def _selection_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of the selection itself, the same in one process and sharded."""
    return {
        "ridge": args.ridge,
        "ridge_mode": args.ridge_mode,
        "seed": args.seed,
        "lazy": LAZY_CHOICES[args.lazy],
        "per_prompt": args.per_prompt,
        "uncertainty": args.uncertainty,
    }


def _excluded(paths: list[str] | None, n: int) -> np.ndarray | None:
    """The pairs of every --exclude file, whatever their labels."""
    if not paths:
        return None
    return np.concatenate([read_annotations(path, n)[0] for path in paths])


def _torchrun_world() -> int:
    """The number of processes torchrun started (1 without torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _launch_processes(processes: int, argv: list[str]) -> int:
    """This command (``argv``) as ``processes`` ranks started by torch's elastic launcher, the
    one torchrun runs (one node, a c10d rendezvous on a free port, no restarts); the exit
    status of the first rank that failed (2 for an error it reported), else 0. The ranks
    report their own failures; the launcher's report of them (its log lines and
    ``ChildFailedError``) is left out."""
    import logging
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as torchrun: one thread per rank
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "activerm_fast", *argv)
    except ChildFailedError as err:
        code = err.get_first_failure()[1].exitcode
        return code if code > 0 else 1  # a rank killed by a signal: failure all the same
    return 0


def _select_sharded(args: argparse.Namespace) -> int:
    """``select`` as one of torchrun's processes: the pool sharded, the batch from rank 0."""
    import torch.distributed as dist

    from .. import distributed

    dist.init_process_group("gloo", timeout=timedelta(minutes=30))
    rank, world = dist.get_rank(), dist.get_world_size()
    failure: Exception | None = None
    try:

        def load() -> tuple[data.Dataset, Any, Any, Any]:
            dataset = load_dataset(args.data)
            pairs, labels = read_labelled(args.labelled, dataset.n)
            return dataset, pairs, labels, _candidates(args, dataset, (rank, world))

        dataset, pairs, labels, shard = distributed.agreed(load)
        plan = distributed.agreed(lambda: _plan_on_rank_zero(args, dataset, pairs, labels))
        shared: list[Any] = [plan if rank == 0 else None]
        dist.broadcast_object_list(shared, src=0)  # one model's features on every rank
        plan = shared[0]
        with free_core_threads():
            selection = _choose(distributed.select, args, dataset, plan, shard)
        if isinstance(shard, ImplicitPool):  # every rank draws any pair from the seed
            batch = shard.rows(np.asarray(selection.indices))
        else:
            batch = distributed.pairs_at(shard, selection.indices).numpy()
        if rank == 0:
            write_batch(args.out, dataset, batch)
            print(f"{plan.note}; wrote {len(batch)} pairs to {args.out} ({world} processes)")
    except Exception as err:
        failure = err
    finally:
        dist.destroy_process_group()
    # An error every rank raised alike (distributed.raised_on_every_rank) is printed by rank 0
    # alone. Any other is printed where it was.
    code = 0
    if failure is not None:
        code = report(failure, quiet=rank != 0 and distributed.raised_on_every_rank(failure))
    # Gloo's worker threads release a finished collective's tensors after the caller has moved
    # on, and that needs the interpreter: one still doing so while Python finalises aborts the
    # process (a torch race, after the batch was written or the error printed; a barrier does
    # not help, it holds the earlier work). So end without finalising, on success or failure.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _plan_on_rank_zero(
    args: argparse.Namespace, dataset: data.Dataset, pairs: Any, labels: Any
) -> BatchPlan | None:
    """:func:`_plan` on rank 0 (None elsewhere)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    return _plan(args, dataset, pairs, labels)


def _plan(args: argparse.Namespace, dataset: data.Dataset, pairs: Any, labels: Any) -> BatchPlan:
    """The model's plan for the batch: the reward model's own head, or a fitted or loaded model."""
    if args.reward_head:
        return head_plan(dataset, RewardHead.load(args.data), pairs, args.strategy)
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
        precision=args.precision,
    )
