"""The sharded greedy on one GPU: two ranks of a NCCL group on the same device, against one process.

    python bench/bench_sharded_gpu.py            # P = 10,000,000, d = 256, k = 200, 2 ranks
    python bench/bench_sharded_gpu.py --quick    # P = 400,000: checks the script runs

One process selects from bench_distributed.py's cross-prompt pool on the GPU first; then the
same two ranks run over gloo (the engine on the GPU, the choice records through the CPU) and
over NCCL, each rank building its shard (``pairs.cross_prompt(..., shard=(rank, world))``) and
calling ``activerm_fast.distributed.greedy_logdet`` on GPU 0. NCCL wants one GPU per rank, and
whether a group of two ranks on one device starts at all is what the NCCL row finds out: each
rank all-reduces one number right after joining, and when that fails the row says so with
NCCL's error. Each row is printed as it ends. A step's time runs from the engine's start (every
rank past it) to the end of the selection, over k steps, after a two-step warm-up; the picks
must agree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta

import torch
from bench_distributed import (
    free_port,
    problem,
    run_ranks,
    timed,
    watch_engine_start,
    worker_arguments,
)
from bench_gpu import require_gpu

import activerm_fast as arm

NOT_STARTED = 3  # a worker's exit status when its group did not start (its report says why)


def worker(args: argparse.Namespace) -> None:
    """One rank: join the group, check that a collective runs, select from this shard."""
    import torch.distributed as dist

    from activerm_fast import distributed

    torch.cuda.set_device(0)
    try:
        dist.init_process_group(
            args.backend,
            init_method=f"tcp://127.0.0.1:{args.port}",
            rank=args.rank,
            world_size=args.world,
            timeout=timedelta(seconds=60),
        )
        probe = torch.ones(1, device="cuda" if args.backend == "nccl" else "cpu")
        dist.all_reduce(probe)
        torch.cuda.synchronize()
    except Exception as err:  # NCCL refuses two ranks on one device: say so, then exit
        message = " ".join(str(err).split())[:400]
        print(json.dumps({"error": f"{type(err).__name__}: {message}"}), flush=True)
        sys.exit(NOT_STARTED)
    features, pairs = problem(args.pairs, args.d, (args.rank, args.world))
    features, pairs = features.cuda(), pairs.cuda()

    def call(k: int):
        return distributed.greedy_logdet(features, pairs, k, lazy=False)

    started = watch_engine_start(True)
    call(2)  # warm: the engine's workspace and the group's first collectives
    step_s, picks = timed(call, args.k, started)
    if args.rank == 0:
        print(json.dumps({"step_s": step_s, "picks": picks}), flush=True)
    dist.destroy_process_group()


def launch(args: argparse.Namespace, backend: str) -> dict:
    """The ranks of one group, in fresh processes on GPU 0: rank 0's report, or the error
    that kept the group from starting."""
    port = free_port()
    common = ["--pairs", str(args.pairs), "--d", str(args.d), "--k", str(args.k)]
    common += ["--port", str(port), "--world", str(args.world), "--backend", backend]
    env = dict(os.environ, OMP_NUM_THREADS="1", NCCL_DEBUG=os.environ.get("NCCL_DEBUG", "WARN"))
    ended = run_ranks(__file__, args.world, common, env, args.timeout)
    if ended is None:
        return {"error": f"no answer within {args.timeout:.0f} s"}
    reports = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in ended if out.strip()]
    errors = [report["error"] for report in reports if "error" in report]
    if errors:
        return {"error": errors[0]}
    for rank, (status, _, err) in enumerate(ended):
        if status != 0:
            last = " ".join(err.strip().splitlines()[-3:])[-600:]
            return {"error": f"rank {rank} exited with {status}: {last}"}
    return reports[0]


def nccl_version() -> str:
    """The NCCL torch was built with, as "2.27.5" (or why it is unknown)."""
    try:
        version = torch.cuda.nccl.version()
    except (AttributeError, RuntimeError) as err:  # a torch built without NCCL
        return f"unknown ({err})"
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def one_process(args: argparse.Namespace) -> tuple[float, list[int]]:
    """Seconds per step and picks of one process selecting from the whole pool on GPU 0."""
    features, pairs = problem(args.pairs, args.d, None)
    features, pairs = features.cuda(), pairs.cuda()

    def call(k: int):
        return arm.greedy_logdet(features, pairs, k, lazy=False)

    started = watch_engine_start(False)
    call(2)
    return timed(call, args.k, started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000_000)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--k", type=int, default=200, help="greedy steps timed")
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a group may take")
    worker_arguments(parser)
    parser.add_argument("--backend", default="nccl", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    require_gpu("bench_sharded_gpu.py")
    if args.quick:
        args.pairs, args.k = 400_000, 50
    print(
        f"{torch.cuda.get_device_name(0)}; P = {args.pairs:,} cross-prompt pairs (int32), "
        f"d = {args.d}, float32 features, {args.k} greedy steps timed, {args.world} ranks on "
        f"GPU 0; torch {torch.__version__}, NCCL {nccl_version()}; "
        f"load average {os.getloadavg()[0]:.2f} at the start",
        flush=True,
    )
    one_step, one_picks = one_process(args)
    torch.cuda.empty_cache()  # the ranks' processes get the memory it held
    print(f"{'1 process':<28} {1e3 * one_step:>9.3f} ms/step", flush=True)
    same = True
    # gloo first: it runs whatever NCCL does, and a NCCL group that hangs instead of failing
    # then costs only its own row
    for backend in ("gloo", "nccl"):
        name = f"{args.world} {backend.upper() if backend == 'nccl' else backend} ranks, one GPU"
        row = launch(args, backend)
        if "error" in row:
            print(f"{name:<28} did not run: {row['error']}", flush=True)
            same = same and backend == "nccl"  # gloo runs wherever torch does
            continue
        same = same and row["picks"] == one_picks
        print(
            f"{name:<28} {1e3 * row['step_s']:>9.3f} ms/step, {row['step_s'] / one_step:.2f}x "
            f"the one-process step; the same picks: {row['picks'] == one_picks}",
            flush=True,
        )
    if not same:
        raise SystemExit("the gloo ranks did not run, or a sharded selection differs")


if __name__ == "__main__":
    main()
