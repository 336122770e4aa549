"""Every kernel path of the package once, on small inputs, for compute-sanitizer to watch.

    compute-sanitizer --tool memcheck python scripts/cuda_sanitizer_workload.py
    python scripts/cuda_sanitizer_workload.py --device cpu      # the same calls on the CPU

bench/gpu_check.sh runs it under memcheck and racecheck. The sizes cross every tile boundary of
the CUDA kernels (d = 130 > 128-row column tiles and 32-column row tiles; n = 300 > 128-row
tiles; P = 3,000 > one 1,024-pair sweep tile), and the calls cover every feature dtype (float32,
float64, float16, bfloat16; the halves with aligned int32 pairs, as they change only the feature
reads) and both index dtypes, pair arrays too misaligned for vector loads, weights, a matrix
prior, exclusions, the engine's "no pair left" stop, a drift refresh, the stepped sweep/apply
primitives and every strategy of select, ensemble included. Each call's result is checked
against the CPU backend, so a run on the GPU also reports wrong numbers, not only bad accesses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import numpy as np
import torch

import activerm_fast as arm
from activerm_fast.testing import design as _design

N, D, COUNT, MEMBERS = 300, 130, 3_000, 3


def misaligned(pairs: torch.Tensor) -> torch.Tensor:
    """The same pairs in a view whose data sits 4 bytes past an 8-byte boundary (int32) or 8
    past a 16-byte one (int64), so the sweep cannot load a pair in one vector load."""
    flat = torch.empty(pairs.numel() + 1, dtype=pairs.dtype, device=pairs.device)
    view = flat[1:].view(pairs.shape)
    view.copy_(pairs)
    return view


def agree(name: str, got: object, want: object) -> str | None:
    """None if got matches want: the same indices (integers, Selections), and gains, log det
    and floating results within the rounding of the two devices' matrix products."""
    if isinstance(got, arm.Selection) and isinstance(want, arm.Selection):
        same = (
            torch.equal(got.indices.cpu(), want.indices.cpu())
            and torch.allclose(got.gains.cpu(), want.gains.cpu(), rtol=1e-9, atol=0.0)
            and abs(got.logdet - want.logdet) <= 1e-9 * max(1.0, abs(want.logdet))
        )
    else:
        assert isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor)
        got, want = got.cpu(), want.cpu()
        if want.is_floating_point():
            # products with a precision matrix go through torch's matmul on each device
            rtol = 1e-5 if want.dtype == torch.float32 else 1e-10
            scale = float(want.abs().max()) if want.numel() else 0.0
            same = torch.allclose(got, want, rtol=rtol, atol=rtol * scale, equal_nan=True)
        else:
            same = torch.equal(got, want)
    return None if same else f"{name}: the device's result differs from the CPU's"


def cases(
    device: torch.device, rng: np.random.Generator, quick: bool = False
) -> list[tuple[str, Callable]]:
    """(name, call(device)) for every path; a call builds its inputs on the device it is given.
    ``quick``: four of the ten dtype and alignment combinations (float32, float16 and bfloat16
    with aligned int32 pairs, float64 with misaligned int64 pairs), for the slower racecheck."""
    prompt_ids = np.repeat(np.arange(N // 6), 6)
    pool = arm.pairs.cross_prompt(prompt_ids, COUNT, seed=1)
    features = rng.normal(size=(MEMBERS, N, D))
    rewards = rng.normal(scale=2.0, size=(MEMBERS, N))
    weights = arm.fisher_weights(rewards[0], pool)
    labelled = pool[:40]
    exclude = np.zeros(COUNT, bool)
    exclude[::7] = True
    spd = rng.normal(size=(D, D))
    prior = spd @ spd.T / D + np.eye(D)

    def on(x: np.ndarray, where: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.as_tensor(x, dtype=dtype, device=where)

    out: list[tuple[str, Callable]] = []
    for f_dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        for p_dtype in (torch.int32, torch.int64):
            for aligned in (True, False):
                narrow = f_dtype != torch.float64 and p_dtype == torch.int32 and aligned
                half = f_dtype in (torch.float16, torch.bfloat16)
                if half and not narrow:
                    continue
                wide = f_dtype == torch.float64 and p_dtype == torch.int64 and not aligned
                if quick and not (narrow or wide):
                    continue
                tag = f"{str(f_dtype)[6:]} features, {str(p_dtype)[6:]} pairs" + (
                    "" if aligned else ", misaligned pairs"
                )

                def pairs_on(where: torch.device, p_dtype=p_dtype, aligned=aligned):
                    p = on(pool, where, p_dtype)
                    return p if aligned else misaligned(p)

                def f_on(where: torch.device, f_dtype=f_dtype):
                    return on(features[0], where, f_dtype)

                out += [
                    (f"pair_diff, {tag}", lambda w, f=f_on, p=pairs_on: arm.pair_diff(f(w), p(w))),
                    (
                        f"pair_quadform, {tag}",
                        lambda w, f=f_on, p=pairs_on: arm.pair_quadform(
                            f(w), p(w), on(prior, w, torch.float64)
                        ),
                    ),
                    (
                        f"fisher_matrix, {tag}",
                        lambda w, f=f_on, p=pairs_on: arm.fisher_matrix(f(w), p(w), on(weights, w)),
                    ),
                    (
                        f"greedy_logdet, ridge and weights, {tag}",
                        lambda w, f=f_on, p=pairs_on: arm.greedy_logdet(
                            f(w), p(w), 60, weights=on(weights, w), prior=1e-2, lazy=False
                        ),
                    ),
                ]
    out += [
        (
            "fisher_weights, ensemble rewards",
            lambda w: arm.fisher_weights(on(rewards, w), on(pool, w)),
        ),
        (
            "greedy_logdet, matrix prior and exclusions",
            lambda w: arm.greedy_logdet(
                on(features[0], w),
                on(pool, w),
                40,
                weights=on(weights, w),
                prior=on(prior, w),
                exclude=on(exclude, w),
                lazy=False,
            ),
        ),
        (
            # d = 5, k = 4 d, features x 1e6: the running scores drift and the state is refreshed
            "greedy_logdet, drift refresh",
            lambda w: arm.greedy_logdet(
                on(features[0][:, :5] * 1e6, w, torch.float32), on(pool, w), 20, lazy=False
            ),
        ),
        ("greedy engine, stepped sweep and apply", lambda w: stepped(on(features[0], w), pool)),
        (
            "greedy engine, every score masked (records -1)",
            lambda w: stepped(on(features[0], w), pool, masked=True),
        ),
    ]
    for strategy in sorted(arm.STRATEGIES):
        out.append(
            (
                f"select {strategy}",
                lambda w, s=strategy: arm.select(
                    s,
                    features=on(features, w),
                    pairs=on(pool, w),
                    k=40,
                    rewards=on(rewards, w),
                    labelled=on(labelled, w),
                    lazy=False,
                ),
            )
        )
    return out


def stepped(
    features: torch.Tensor, pool: np.ndarray, k: int = 30, masked: bool = False
) -> torch.Tensor:
    """k steps of the package's own engine (ridge 1, unit weights) driven one primitive at a
    time, as a sharded caller does: the chosen indices (all -1 when every score is
    ``masked``)."""
    pairs = torch.as_tensor(pool, device=features.device)
    weights = torch.ones((pairs.shape[0], 1), dtype=torch.float64, device=features.device)
    prior = _design.Prior.of_ridge(1.0, features.shape[1])
    problem = _design.GreedyProblem(features[None], pairs, weights, [prior], lazy=False)
    engine, _ = _design.greedy_engine(problem)
    if masked:
        engine.state_tensors()[0].fill_(float("nan"))
    chosen = torch.empty(k, dtype=torch.int64, device=features.device)
    gains = torch.empty(k, dtype=torch.float64, device=features.device)
    engine.sweep(False)
    for step in range(k):
        engine.apply(step, chosen, gains, step + 1 < k)
        if step + 1 < k:
            engine.sweep(True)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="torch device to run on (default cuda)")
    parser.add_argument("--quick", action="store_true", help="two dtype combinations of eight")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not arm.build_info()["gpu_usable"]:
        print("the CUDA backend is not built or no GPU is visible", file=sys.stderr)
        return 2
    failures: list[str] = []
    all_cases = cases(device, np.random.default_rng(0), args.quick)
    for name, call in all_cases:
        got, want = call(device), call(torch.device("cpu"))
        if device.type == "cuda":
            torch.cuda.synchronize()
        problem = agree(name, got, want)
        print(f"{'ok  ' if problem is None else 'DIFF'} {name}", flush=True)
        if problem is not None:
            failures.append(problem)
    print(f"{len(all_cases)} cases, {len(failures)} differing from the CPU")
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
