"""An implicit pool with Fisher weights in the sweep against a stored pool with a weight array.

    python bench/bench_implicit_pool.py            # n=10^6, d=64, P=10^8 both ways, k=100,
                                                   # then P=10^9 implicit (k=3) if memory allows
    python bench/bench_implicit_pool.py --quick    # n=10^5, P=10^6 and 10^7, k=20
    python bench/bench_implicit_pool.py --device cuda --huge-k 20   # the same rows on a GPU

Both selections maximise the same objective, log det(lambda I + sum w d d^T) with w the
Bradley-Terry Fisher weights of one reward vector, on the dense sweep. The baseline is the
stored pool: P int32 cross-prompt pairs (``pairs.cross_prompt``) and their (P,) float64 weights
(``fisher_weights``), as ``greedy_logdet(..., weights=...)`` takes them; the candidates are an
``ImplicitPool.cross_prompt`` of P pairs whose weights the sweep computes from the rewards (8
bytes of state per pair), and the same pool with its weights stored (16 bytes per pair: what
``select("dopt-greedy", ...)`` runs on a CPU while the weights fit,
``_launch.weights_in_sweep``). Each is driven through the package's greedy engine one
step at a time, so that the initial scores and every step are timed (progress on stderr); a
step is the median over the k steps. Memory is sampled every 10 ms: the peak resident memory a
selection adds, its pool included. A NumPy copy measured in the same run gives the machine's
bandwidth.

``--device cuda`` runs the same rows on the GPU, everything on the device: the features, the
generated pools, and as the stored baseline the implicit pool's own pairs stored as int32 (built
on the GPU in a moment, where ``pairs.cross_prompt`` would spend most of the run on the CPU), so
that all three selections must pick the same pairs; the device synchronised around every timed
part; memory is the peak device memory a selection adds (torch's allocator), the bandwidth a
device-to-device copy. The output says how many implicit pairs the card's memory holds (9 bytes
each: the scores and the start check's mask) and runs P = 10^9 when they fit.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from bench_gpu import copy_bandwidth as device_copy_bandwidth
from bench_gpu import require_gpu
from bench_greedy import PeakMemory, build_line, copy_bandwidth, print_rows

import activerm_fast as arm
from activerm_fast.testing import design, launch

RIDGE = 1e-3
PER_PROMPT = 10  # responses per prompt
# bytes per implicit pair a selection holds: (P,) float64 scores and the start check's bool mask
IMPLICIT_BYTES_PER_PAIR = 9


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.start = time.perf_counter()

    def advance(self, count: int) -> None:
        self.done += count
        share = self.done / max(self.total, 1)
        bar = "#" * int(30 * share)
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(f"\r  {self.label:<28} [{bar:<30}] {share:6.1%} {elapsed:7.1f} s")
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


class DevicePeakMemory:
    """The largest device memory above the start that torch's allocator handed out."""

    def __enter__(self) -> DevicePeakMemory:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.start = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc: object) -> None:
        torch.cuda.synchronize()
        self.added = torch.cuda.max_memory_allocated() - self.start


def peak_memory(device: torch.device) -> PeakMemory | DevicePeakMemory:
    """Host memory sampled on the CPU, the allocator's peak on a GPU."""
    return DevicePeakMemory() if device.type == "cuda" else PeakMemory()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def scores_progress(label: str, total: int) -> Iterator[None]:
    """Progress of the initial scores: the engine's start computes them with pair_quadform,
    chunk by chunk for an implicit pool, at once for a stored one."""
    original = launch.pair_quadform
    bar = Progress(label, total)

    def counted(f: torch.Tensor, p: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = original(f, p, *args, **kwargs)
        bar.advance(p.shape[0])
        return out

    launch.pair_quadform = counted
    try:
        yield
    finally:
        launch.pair_quadform = original


def stepped(problem: design.GreedyProblem, k: int, label: str) -> dict[str, Any]:
    """The greedy selection of ``problem``, its start and each of its k steps timed."""
    count = problem.pairs.shape[0]
    device = problem.members[0].device
    start = time.perf_counter()
    with scores_progress(f"{label}: initial scores", count):
        engine, _ = design.greedy_engine(problem, steps=k)
    engine.sweep(downdate=False)
    synchronize(device)
    setup = time.perf_counter() - start
    chosen = torch.empty(k, dtype=torch.int64, device=device)  # the engine writes them there
    gains = torch.empty(k, dtype=torch.float64, device=device)
    bar = Progress(f"{label}: steps", k)
    times = []
    for step in range(k):
        begin = time.perf_counter()
        engine.apply(step, chosen, gains, prepare_next=step + 1 < k)
        if step + 1 < k:
            engine.sweep(downdate=True)
        synchronize(device)
        times.append(time.perf_counter() - begin)
        bar.advance(1)
    if bool((chosen < 0).any()):
        raise RuntimeError(f"{label}: a step needed a refresh or found no pair: {chosen.tolist()}")
    total = setup + sum(times)
    # the last step applies its choice only (no sweep follows): a step is one of the others
    step = statistics.median(times[:-1]) if k > 1 else math.nan
    return {"setup": setup, "step": step, "total": total, "chosen": chosen}


def stored_pairs(count: int, n: int, device: torch.device) -> torch.Tensor:
    """(count, 2) int32 cross-prompt pairs: ``pairs.cross_prompt``'s on the CPU, the implicit
    pool's own pairs, made on the device, on a GPU."""
    prompt_ids = np.arange(n) // PER_PROMPT
    if device.type == "cpu":
        return torch.as_tensor(arm.pairs.cross_prompt(prompt_ids, count, seed=0).astype(np.int32))
    pool = arm.ImplicitPool.cross_prompt(prompt_ids, count, seed=0)
    pairs = torch.empty((count, 2), dtype=torch.int32, device=device)
    for begin, part in pool.chunks(device, 1 << 24):
        pairs[begin : begin + len(part)] = part
    return pairs


def explicit_run(
    features: torch.Tensor, rewards: torch.Tensor, count: int, k: int
) -> dict[str, Any]:
    """The stored pool: int32 pairs and a (P,) weight array, built and selected from."""
    device = features.device
    with peak_memory(device) as memory:
        begin = time.perf_counter()
        pairs32 = stored_pairs(count, len(rewards), device)
        weights = launch.fisher_weights(rewards[None], pairs32)[:, None]
        synchronize(device)
        built = time.perf_counter() - begin
        problem = design.GreedyProblem(
            features[None],
            pairs32,
            weights.contiguous(),
            [design.Prior.of_ridge(RIDGE, features.shape[1])],
            lazy=False,
        )
        result = stepped(problem, k, f"stored P={count:.0e}")
    return {**result, "built": built, "memory": memory.added}


def implicit_run(
    features: torch.Tensor, rewards: torch.Tensor, count: int, k: int, *, in_sweep: bool
) -> dict[str, Any]:
    """The implicit pool with weights computed in the sweep (``in_sweep``) or stored, built and
    selected from."""
    device = features.device
    with peak_memory(device) as memory:
        begin = time.perf_counter()
        pool = arm.ImplicitPool.cross_prompt(np.arange(len(rewards)) // PER_PROMPT, count, seed=0)
        generated = pool.generated(device)
        r = rewards[None].contiguous()
        weights: torch.Tensor | launch.RewardRows = launch.RewardRows(r, 1, 1)
        if not in_sweep:
            weights = design.per_pair(generated, lambda p: launch.fisher_weights(r, p))[:, None]
        synchronize(device)
        built = time.perf_counter() - begin
        problem = design.GreedyProblem(
            features[None],
            generated,
            weights,
            [design.Prior.of_ridge(RIDGE, features.shape[1])],
            lazy=False,
        )
        label = "weights in sweep" if in_sweep else "stored weights"
        result = stepped(problem, k, f"implicit P={count:.0e}, {label}")
    return {**result, "built": built, "memory": memory.added}


def rows_of(
    name: str, run: dict[str, Any], count: int, feature_bytes: int, nbytes: int
) -> list[tuple[str, str]]:
    """The table rows of one selection over ``count`` pairs whose step moves ``nbytes``."""
    return [
        (f"{name}: pool built", f"{run['built']:.2f} s"),
        (f"{name}: whole selection", f"{run['total']:.2f} s"),
        (f"{name}:   initial scores and first sweep", f"{run['setup']:.2f} s"),
        (f"{name}:   one step (median)", f"{run['step'] * 1e3:.1f} ms"),
        (f"{name}:   pairs per second in a step", f"{count / run['step'] / 1e6:.0f} M"),
        (f"{name}:   bytes per pair a step moves", f"{(nbytes - feature_bytes) / count:.1f}"),
        (f"{name}:   achieved bandwidth of a step", f"{nbytes / run['step'] / 1e9:.2f} GB/s"),
        (f"{name}: peak memory added", f"{run['memory'] / 2**30:.2f} GiB"),
    ]


def ratios(name: str, run: dict[str, Any], base: dict[str, Any]) -> list[tuple[str, str]]:
    """How a selection compares with the stored pool and weights of the same size."""
    return [
        (f"{name} / stored: pairs per second in a step", f"{base['step'] / run['step']:.2f}x"),
        (f"{name} / stored: whole selection time", f"{run['total'] / base['total']:.2f}x"),
        (f"{name} / stored: peak memory", f"{run['memory'] / base['memory']:.2f}x"),
    ]


def step_bytes(count: int, n: int, d: int, per_pair: int) -> int:
    """Bytes a step must move: per_pair bytes of each pair's state read or written by the
    sweep, the float32 features read once for v = Phi u and the (d, d) factor four times."""
    return count * per_pair + n * d * 4 + 4 * d * d * 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=100_000_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument(
        "--huge-pairs", type=int, default=1_000_000_000, help="implicit only; 0: not run"
    )
    parser.add_argument("--huge-k", type=int, default=3, help="steps at --huge-pairs (>= 2)")
    parser.add_argument("--quick", action="store_true", help="n=10^5, P=10^6 and 10^7, k=20")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    if min(args.k, args.huge_k) < 2:
        parser.error("--k and --huge-k must be at least 2: a step is apply and the next sweep")
    if args.device == "cuda":
        require_gpu("bench_implicit_pool.py --device cuda")
    device = torch.device(args.device)
    if args.quick:
        args.responses, args.pairs, args.huge_pairs, args.k, args.huge_k = (
            100_000,
            1_000_000,
            10_000_000,
            20,
            20,
        )
    n, d, count, k = args.responses, args.dim, args.pairs, args.k
    print(build_line(f"device {gpu_name(device)}"), flush=True)
    print(
        f"n = {n:,} responses ({PER_PROMPT} per prompt), d = {d}, k = {k}, float32 features, "
        f"cross-prompt pools, lambda = {RIDGE}",
        flush=True,
    )
    rng = np.random.default_rng(0)
    features = torch.as_tensor(rng.normal(size=(n, d)).astype(np.float32)).to(device)
    rewards = torch.as_tensor(rng.normal(size=n)).to(device)

    implicit = implicit_run(features, rewards, count, k, in_sweep=True)
    weighted = implicit_run(features, rewards, count, k, in_sweep=False)
    explicit = explicit_run(features, rewards, count, k)
    stored_bytes = step_bytes(count, n, d, 4 + 4 + 8 + 16)  # i, j int32; w; q read + written
    implicit_bytes = step_bytes(count, n, d, 16)  # q read + written
    weighted_bytes = step_bytes(count, n, d, 8 + 16)  # w; q read + written
    if device.type == "cuda":
        copy, copy_name = device_copy_bandwidth(1 << 31), "device-to-device copy"
    else:
        copy, copy_name = copy_bandwidth(1 << 30, 5), "NumPy copy bandwidth"
    same = all(torch.equal(run["chosen"], explicit["chosen"]) for run in (implicit, weighted))

    print_rows(
        [
            (f"P = {count:,}", ""),
            *rows_of("stored + weights", explicit, count, n * d * 4, stored_bytes),
            *rows_of("implicit, weights in sweep", implicit, count, n * d * 4, implicit_bytes),
            *rows_of("implicit, stored weights", weighted, count, n * d * 4, weighted_bytes),
            (f"{copy_name} (read + write)", f"{copy:.2f} GB/s"),
            *ratios("implicit, weights in sweep", implicit, explicit),
            *ratios("implicit, stored weights", weighted, explicit),
            *([("the same picks all three ways", str(same))] if device.type == "cuda" else []),
        ]
    )

    huge = args.huge_pairs
    # (P,) scores, the start check, features, chunks
    needed = IMPLICIT_BYTES_PER_PAIR * huge + n * d * 4 + (1 << 30)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # what the allocator keeps from the runs above is free to reuse
        available = torch.cuda.mem_get_info()[0]
    else:
        available = launch.available_memory()
    most = (available - n * d * 4 - (1 << 30)) // IMPLICIT_BYTES_PER_PAIR
    print(
        f"\nmemory bound: {available / 2**30:.1f} GiB available hold up to P = {most:,} implicit "
        f"pairs ({IMPLICIT_BYTES_PER_PAIR} bytes each beside the features and one chunk)",
        flush=True,
    )
    if huge and needed > available:
        print(
            f"\nP = {huge:,} implicit: not run, its scores need {needed / 2**30:.1f} GiB and "
            f"{available / 2**30:.1f} GiB are available"
        )
    elif huge == 0:
        needed = IMPLICIT_BYTES_PER_PAIR * 10**9 + n * d * 4 + (1 << 30)
        print(
            f"\nP = 1,000,000,000 implicit: not run (--huge-pairs 0); it needs about "
            f"{needed / 2**30:.1f} GiB (its (P,) scores and the start check's mask, the "
            f"features, one chunk) of the {available / 2**30:.1f} GiB available"
        )
    else:
        big = implicit_run(features, rewards, huge, args.huge_k, in_sweep=True)
        big_bytes = step_bytes(huge, n, d, 16)
        print_rows(
            [
                (f"P = {huge:,} (k = {args.huge_k})", ""),
                *rows_of("implicit, weights in sweep", big, huge, n * d * 4, big_bytes),
                ("memory available at the start", f"{available / 2**30:.1f} GiB"),
            ]
        )
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


def gpu_name(device: torch.device) -> str:
    """The device a run is on, as its output names it."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return "cpu"


if __name__ == "__main__":
    main()
