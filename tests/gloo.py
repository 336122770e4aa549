"""Real gloo process groups for the tests: every rank is a subprocess running a test file as a
script (``python tests/test_x.py RANK WORLD PORT OUT [ARGS...]``), under a hard timeout.

A test calls :func:`run_ranks` with its own file; the file ends with
``if __name__ == "__main__": gloo.main(worker)``, where ``worker(rank, world, *args)`` runs in
the joined group and returns what the test asserts on (pickled to ``OUT``).
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import torch

# how long a rank waits in a collective for a peer before it fails (a hung peer fails the test)
COLLECTIVE_TIMEOUT = timedelta(seconds=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(
    script: str, world: int, tmp_path: Path, *args: str, timeout: float = 150
) -> list[Any]:
    """Run ``script`` as every rank of a ``world``-process gloo group (one OpenMP and torch
    thread each) and return each rank's result, in rank order; fail with the output of a rank
    that failed, or kill them all after ``timeout`` seconds."""
    outs = [tmp_path / f"rank{r}.pkl" for r in range(world)]
    ended = exits(script, world, [str(out) for out in outs], *args, timeout=timeout)
    for r, (code, log) in enumerate(ended):
        assert code == 0, f"rank {r} of {world} failed:\n{log[-3000:]}"
    results = []
    for out in outs:
        with open(out, "rb") as handle:
            results.append(pickle.load(handle))
    return results


def exits(
    script: str, world: int, outs: list[str], *args: str, timeout: float = 150
) -> list[tuple[int, str]]:
    """Run ``script`` as every rank (``python script RANK WORLD PORT OUT ARGS...``, OUT the
    rank's entry of ``outs``) and return each rank's exit status and output, however it
    ended (a signal is a negative status); kill them all after ``timeout`` seconds."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, script, str(r), str(world), str(port), outs[r], *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for r in range(world)
    ]
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=timeout)[0].decode(errors="replace"))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
    return [(proc.returncode, log) for proc, log in zip(procs, logs, strict=True)]


def join(rank: int, world: int, port: int) -> None:
    """Join the group of ``world`` ranks on ``port`` as ``rank`` (one torch thread)."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=COLLECTIVE_TIMEOUT,
    )


def main(worker: Callable[..., Any]) -> NoReturn:
    """One rank, from the command line :func:`run_ranks` gives: join the group, write
    ``worker(rank, world, *args)``'s result, leave the group."""
    import torch.distributed as dist

    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    join(rank, world, port)
    result = worker(rank, world, *sys.argv[5:])
    with open(out, "wb") as handle:
        pickle.dump(result, handle)
    dist.destroy_process_group()
    # results written: end without finalising Python, as the sharded command does (a gloo
    # worker thread still releasing a collective's tensors then would abort the process; see
    # docs/DISTRIBUTED.md)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
