"""``activerm-fast embed``: features (and rewards) of every (prompt, response) from a local
Hugging Face model, written as a dataset that ``select`` and ``simulate`` read.

Launched by torchrun (``torchrun --nproc-per-node N -m activerm_fast embed ...``) every process
embeds its own shards on its own device (``cuda:LOCAL_RANK`` when there is CUDA) and rank 0
writes the file: the same file as one process writes.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from typing import Any

from ..data.model_features import COMPUTE_DTYPES, OUTPUT_DTYPES, POOLINGS, embed
from .common import optional_packages, positive, prepare_outputs
from .select import _torchrun_world

# A rank that finishes its shards waits for the slowest one before rank 0 writes the file.
_RANK_WAIT = timedelta(hours=24)


def add(commands: Any) -> None:
    """Register the command on the ``commands`` sub-parsers."""
    emb = commands.add_parser(
        "embed", help="features and rewards of every response from a local Hugging Face model"
    )
    emb.add_argument("--model", required=True, help="a local model folder (nothing is downloaded)")
    emb.add_argument(
        "--data",
        required=True,
        help="records, TRL preference or UltraFeedback-style rows: .jsonl, .parquet or a folder",
    )
    emb.add_argument("--out", required=True, help=".npz to write (resumable: run again)")
    rewards = emb.add_mutually_exclusive_group()
    rewards.add_argument(
        "--rewards",
        action="store_true",
        help="require the score head of a ...ForSequenceClassification (default: when it has one)",
    )
    rewards.add_argument("--no-rewards", action="store_true", help="hidden states only")
    emb.add_argument("--layer", type=int, default=-1, help="hidden layer without rewards")
    emb.add_argument("--pooling", choices=POOLINGS, default="last")
    emb.add_argument("--max-length", type=positive, help="token limit (default: the model's)")
    emb.add_argument("--batch-size", type=positive, default=32, help="halved on CUDA OOM")
    emb.add_argument("--shard-rows", type=positive, default=1024, help="rows per shard on disk")
    emb.add_argument("--dtype", choices=COMPUTE_DTYPES, default="auto", help="compute dtype")
    emb.add_argument("--output-dtype", choices=OUTPUT_DTYPES, default="float32")
    emb.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda:LOCAL_RANK or cpu)")
    emb.add_argument("--no-progress", action="store_true")
    emb.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    prepare_outputs(args, ["--out"], ["--model", "--data"], files=["--out"])
    world = _torchrun_world()
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=_RANK_WAIT)
    try:
        with optional_packages():
            summary = embed(
                args.model,
                args.data,
                args.out,
                rewards=True if args.rewards else False if args.no_rewards else None,
                layer=args.layer,
                pooling=args.pooling,
                max_length=args.max_length,
                batch_size=args.batch_size,
                shard_rows=args.shard_rows,
                dtype=args.dtype,
                output_dtype=args.output_dtype,
                device=args.device,
                progress=not args.no_progress,
            )
    finally:
        if world > 1:
            dist.destroy_process_group()
    if world == 1 or int(os.environ.get("RANK", "0")) == 0:
        print(summary.describe() + (f" ({world} processes)" if world > 1 else ""))
    if world > 1:  # as the sharded select does: gloo's threads may still hold tensors
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
