"""The projection (scale Phi) M of the D-optimal scores: the compiled kernel against torch's
float64 product, in one process.

    python bench/bench_feature_projection.py           # n = 4,000 and 50,000, d = 64 .. 512
    python bench/bench_feature_projection.py --quick   # n = 4,000, d = 64 and 128

``_launch.project_features`` computes Psi = (scale Phi) M, M a (d, d) float64 matrix (the
inverse root of F0 or F, a posterior covariance), for float32 features; the D-optimal scores
d_k^T F^-1 d_k are then squared distances of Psi's rows. Two ways, alternating call by call:

* the kernel (csrc/cpu/feature_projection_cpu.h): every entry summed in order, the zero ends
  of M's columns skipped, so an upper-triangular M (the inverse Cholesky root) costs half;
  timed at every d, past the launcher's bound too;
* torch: what the launcher runs without the kernel (``_threads.thread_stable_mm`` over
  blocks of rows widened to float64), MKL's or OpenBLAS's product, which multiplies the zeros.

Per d, a full M and an upper-triangular one; the ratio is torch's median over the kernel's,
and ``same as in order`` checks the kernel's entries against the in-order float64 sums
(``_reference.project_features``) on the first rows. The launcher's bounds
(``_launch.PROJECTION_FULL_ENTRIES``, ``PROJECTION_TRIANGULAR_ENTRIES``) keep the kernel where
its ratio is 1 or more at both n. Last, ``select("dopt-topk")`` at ``bench_greedy.py
--small``'s size with the kernel and with torch's product (the bounds set to 0), alternating,
the same picks asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

import numpy as np
import torch
from bench_greedy import SMALL_TOPK, alternating_medians, build_line, pool_inputs

import activerm_fast as arm
from activerm_fast import _core, _launch, _reference


@contextlib.contextmanager
def kernel_bound(entries: int) -> Iterator[None]:
    """The launcher's kernel bounds, full and triangular, set to ``entries`` for a while."""
    before = _launch.PROJECTION_FULL_ENTRIES, _launch.PROJECTION_TRIANGULAR_ENTRIES
    _launch.PROJECTION_FULL_ENTRIES = _launch.PROJECTION_TRIANGULAR_ENTRIES = entries
    try:
        yield
    finally:
        _launch.PROJECTION_FULL_ENTRIES, _launch.PROJECTION_TRIANGULAR_ENTRIES = before


def kernel_projection(features: torch.Tensor, matrix: torch.Tensor, scale: float) -> torch.Tensor:
    """The kernel at any size, past the launcher's bound."""
    with kernel_bound(matrix.numel()):
        return _launch.project_features(features, matrix, scale)


def torch_projection(features: torch.Tensor, matrix: torch.Tensor, scale: float) -> torch.Tensor:
    """The launcher's product without the kernel: its bounds set to 0."""
    with kernel_bound(0):
        return _launch.project_features(features, matrix, scale)


def projection_rows(sizes: list[int], dims: list[int], repeats: int) -> None:
    rng = np.random.default_rng(0)
    print(
        f"{'n':>7} {'d':>5} {'M':<11} {'kernel ms':>10} {'torch ms':>10} {'ratio':>7} "
        f"{'GMAC/s':>7}  same as in order"
    )
    for n in sizes:
        for d in dims:
            features = torch.from_numpy(rng.normal(size=(n, d)).astype(np.float32))
            full = torch.from_numpy(rng.normal(size=(d, d)))
            for name, matrix in (("full", full), ("triangular", torch.triu(full).contiguous())):
                medians = alternating_medians(
                    {
                        "kernel": lambda f=features, m=matrix: kernel_projection(f, m, 0.5),
                        "torch": lambda f=features, m=matrix: torch_projection(f, m, 0.5),
                    },
                    repeats,
                )
                head = features[:64]
                same = np.array_equal(
                    kernel_projection(head, matrix, 0.5).numpy(),
                    _reference.project_features(head.numpy(), matrix.numpy(), 0.5),
                )
                work = n * d * (d if name == "full" else (d + 1) / 2)
                kernel, baseline = medians["kernel"], medians["torch"]
                print(
                    f"{n:>7,} {d:>5} {name:<11} {kernel * 1e3:>10.3f} {baseline * 1e3:>10.3f} "
                    f"{baseline / kernel:>6.2f}x {work / kernel / 1e9:>7.1f}  {same}"
                )


def dopt_topk_row(repeats: int) -> None:
    n, d, count, k = SMALL_TOPK
    rng, features, pairs, _ = pool_inputs(n, d, count)
    rewards = rng.normal(size=(3, n))
    candidates, labelled = pairs[k:], pairs[:k]
    bound = _launch.PROJECTION_TRIANGULAR_ENTRIES

    def select(entries: int) -> list[int]:
        with kernel_bound(entries):
            chosen = arm.select("dopt-topk", features=features, pairs=candidates,
                                labelled=labelled, rewards=rewards, k=k, ridge=1e-3)  # fmt: skip
        return list(chosen.indices)

    medians = alternating_medians(
        {"kernel": lambda: select(bound), "torch": lambda: select(0)}, repeats
    )
    same = select(bound) == select(0)
    print(
        f"\nselect('dopt-topk'): n = {n:,}, d = {d}, P = {len(candidates):,}, k = {k}: "
        f"with the kernel {medians['kernel'] * 1e3:.2f} ms, with torch's product "
        f"{medians['torch'] * 1e3:.2f} ms, {medians['torch'] / medians['kernel']:.2f}x; "
        f"the same picks: {same}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 4,000, d = 64 and 128")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if not _core.wide_vectors():
        raise SystemExit("the kernel needs AVX-512: the launcher runs torch's product here")
    print(build_line(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads"))
    print(f"medians of {args.repeats} turns, kernel and torch alternating\n")
    if args.quick:
        projection_rows([4_000], [64, 128], args.repeats)
    else:
        projection_rows([4_000, 50_000], [64, 128, 256, 384, 512], args.repeats)
    dopt_topk_row(args.repeats)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
