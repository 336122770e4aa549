"""Greedy log det over a pool sharded across gloo processes, against one process, on one machine.

    python bench/bench_distributed.py              # P = 20,000,000 pairs, 2 processes, d = 32
    python bench/bench_distributed.py --quick      # P = 400,000: checks the script runs

Every configuration runs in fresh processes of this script: one process with one thread and
with one thread per process of the sharded run (the single-process engine is multi-threaded),
then ``--world`` gloo processes of one thread each, each building only its shard of the same
cross-prompt pool (``pairs.cross_prompt(..., shard=(rank, world))``) and calling
``activerm_fast.distributed.greedy_logdet``. A step's time is the time from the engine's start
(every rank past it) to the end of the selection, over k steps: validation, the pool checks and
the start are not counted. The bytes
a step moves are counted at the collective calls of the sharded loop. The parallel efficiency is
t(1 process, 1 thread) / (world x t(world processes)). The picks of every run must agree.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from datetime import timedelta

import numpy as np
import torch

import activerm_fast as arm


def problem(pairs_wanted: int, d: int, shard: tuple[int, int] | None):
    """Features (replicated) and this rank's int32 shard of a cross-prompt pool."""
    prompts = max(100, int((2.5 * pairs_wanted) ** 0.5) // 10)  # cross pairs: ~2.5 x wanted
    prompt_ids = np.repeat(np.arange(prompts), 10)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(prompt_ids.shape[0], d)).astype(np.float32)
    pool = arm.pairs.cross_prompt(prompt_ids, pairs_wanted, seed=0, shard=shard)
    return torch.from_numpy(features), torch.from_numpy(pool.astype(np.int32))


def timed(call, k: int, started: list[float]) -> tuple[float, list[int]]:
    """Seconds per step of ``call(k)``, from the moment its engine is ready, and the picks."""
    selection = call(k)
    return (time.perf_counter() - started[-1]) / k, [int(i) for i in selection.indices]


def memory_status(field: str) -> int:
    """A VmRSS/VmHWM line of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_memory() -> None:
    """Start VmHWM afresh (Linux: writing 5 to clear_refs resets the peak)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def watch_engine_start(sharded: bool) -> list[float]:
    """Record when every greedy engine is ready (every rank's, when sharded)."""
    from activerm_fast.testing import design as _design

    started: list[float] = []
    build = _design.greedy_engine

    def ready(*args, **kwargs):
        result = build(*args, **kwargs)
        if sharded:
            torch.distributed.barrier()
        started.append(time.perf_counter())
        return result

    _design.greedy_engine = ready
    return started


def worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    sharded = args.world > 0
    if sharded:
        import torch.distributed as dist

        from activerm_fast import distributed

        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{args.port}",
            rank=args.rank,
            world_size=args.world,
            timeout=timedelta(seconds=600),
        )
        moved = [0]
        gather = distributed._Group.gather

        def counted(self, t):  # bytes this rank receives from the others in an all-gather
            moved[0] += t.numel() * t.element_size() * (self.world - 1)
            return gather(self, t)

        distributed._Group.gather = counted
        features, pairs = problem(args.pairs, args.d, (args.rank, args.world))

        def call(k):
            return distributed.greedy_logdet(features, pairs, k, lazy=False)
    else:
        features, pairs = problem(args.pairs, args.d, None)

        def call(k):
            return arm.greedy_logdet(features, pairs, k, lazy=False)

    started = watch_engine_start(sharded)
    call(2)  # warm: first touches of the pool and the engine's workspace
    before = moved[0] if sharded else 0
    resident = memory_status("VmRSS")
    reset_peak_memory()
    step_s, picks = timed(call, args.k, started)
    selection_peak = memory_status("VmHWM") - resident
    per_run = (moved[0] - before) if sharded else 0
    if not sharded or args.rank == 0:
        print(
            json.dumps(
                {
                    "step_s": step_s,
                    "picks": picks,
                    "run_bytes": per_run,
                    "shard_pairs": int(pairs.shape[0]),
                    "steps": args.k,
                    "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                    "selection_peak": selection_peak,
                }
            )
        )
    if sharded:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The hidden flags a rank that :func:`run_ranks` starts is given (its port is one of the
    script's own ``common`` arguments)."""
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)


def run_ranks(
    script: str, ranks: int, common: list[str], env: dict[str, str], timeout: float
) -> list[tuple[int, str, str]] | None:
    """``script --worker --rank r *common`` for every rank at once, in fresh processes: each
    one's (exit status, stdout, stderr), or None when they did not all end within ``timeout``
    seconds (those left are killed)."""
    procs = [
        subprocess.Popen(
            [sys.executable, script, "--worker", "--rank", str(rank), *common],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(ranks)
    ]
    try:
        outputs = [proc.communicate(timeout=timeout) for proc in procs]
    except subprocess.TimeoutExpired:
        return None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [(proc.returncode, out, err) for proc, (out, err) in zip(procs, outputs, strict=True)]


def launch(args: argparse.Namespace, world: int, threads: int) -> dict:
    """Run one configuration in fresh processes; rank 0's report."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    common = ["--pairs", str(args.pairs), "--d", str(args.d), "--k", str(args.k)]
    common += ["--threads", str(threads), "--port", str(port), "--world", str(world)]
    ended = run_ranks(__file__, max(world, 1), common, env, args.timeout)
    if ended is None:
        raise SystemExit(f"the workers did not end within {args.timeout:.0f} s")
    for status, _, err in ended:
        if status != 0:
            sys.stderr.write(err)
            raise SystemExit(f"a worker failed (exit {status})")
    return json.loads(ended[0][1].strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20_000_000)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--k", type=int, default=100, help="greedy steps timed")
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--timeout", type=float, default=900.0)
    worker_arguments(parser)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.pairs, args.k = 400_000, 100
    world = args.world
    print(
        f"P = {args.pairs:,} cross-prompt pairs (int32), d = {args.d}, float32 features, "
        f"{args.k} greedy steps timed; {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.2f} at the start"
    )
    rows = []
    one = launch(args, 0, 1)
    rows.append(("1 process, 1 thread", one))
    if world > 1:
        rows.append((f"1 process, {world} threads", launch(args, 0, world)))
    sharded = launch(args, world, 1)
    rows.append((f"{world} gloo processes x 1 thread", sharded))
    print(
        f"{'configuration':<32} {'pairs/process':>14} {'ms/step':>9} {'bytes/step':>11} "
        f"{'peak RSS':>10} {'selection':>10}"
    )
    for name, row in rows:
        per_step = row["run_bytes"] / row["steps"]
        print(
            f"{name:<32} {row['shard_pairs']:>14,} {1e3 * row['step_s']:>9.2f} "
            f"{per_step:>11.0f} {row['peak_rss'] / 2**20:>7.0f} MB "
            f"{row['selection_peak'] / 2**20:>7.0f} MB"
        )
    print(
        "peak RSS: the whole process (torch, the pool's construction); selection: the peak "
        "above the resident size while one greedy_logdet call runs (validation included)"
    )
    print(
        "bytes/step: what one rank receives from the others in a step's all-gather (it sends "
        "as many), counted at the collective calls"
    )
    speedup = one["step_s"] / sharded["step_s"]
    print(
        f"parallel efficiency of {world} processes: t(1 process, 1 thread) / ({world} x "
        f"t({world} processes)) = {speedup / world:.2f} (speed-up {speedup:.2f})"
    )
    same = all(row["picks"] == one["picks"] for _, row in rows)
    print(f"identical picks in every configuration: {same}")
    if not same:
        raise SystemExit("the sharded selection differs from the single-process one")


if __name__ == "__main__":
    main()
