"""The baselines the pytest-benchmark groups time beside activerm_fast, written as a user would
write them without the package.

* NumPy formulations of the kernels, on materialised (P, d) differences where that is what the
  formula says (BLAS for the products: the fast way to write them, not a strawman). Products
  with float64 operands (the precision matrix, the weights) cast the differences to float64
  first, as the kernels accumulate in float64: NumPy multiplies float32 by float64 matrices
  without BLAS, some hundred times slower.
* The paper's one-shot D-optimal rule as the paper states it: per-pair information matrices
  I_k = w_k d_k d_k^T stacked into a (P, d, d) array, F = lambda I + sum_k I_k, and each pair
  scored by the gradient of log det at uniform design weights, tr(F^-1 I_k); top k.
  (``strategies._dopt_topk`` computes the same scores as w_k d_k^T F^-1 d_k from a scatter.)
* submodlib's ``LogDeterminantFunction`` (naive and lazy greedy) on the pair kernel
  L = W^1/2 D D^T W^1/2 / lambda: log det(I + L_S) = log det(lambda I + sum_S w d d^T) -
  d log lambda, so it maximises the same objective and picks the same pairs.
* The NumPy rank-one greedy is ``bench_greedy.baseline_steps``, imported where it is used; its
  torch form for a GPU, whose differences are materialised chunk by chunk, is
  ``torch_rank_one_greedy`` (bench_gpu.py).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

# BALD's NumPy formulation is the package's float64 reference itself, already vectorised
from activerm_fast.testing import reference

bald_scores = reference.bald_scores


def pair_diff(features: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    result: np.ndarray = features[pairs[:, 0]] - features[pairs[:, 1]]
    return result


def fisher_weights(rewards: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """sigma(D)(1 - sigma(D)), D = r_i - r_j, averaged over the ensemble members (rows)."""
    p = 1.0 / (1.0 + np.exp(-(rewards[:, pairs[:, 0]] - rewards[:, pairs[:, 1]])))
    result: np.ndarray = (p * (1.0 - p)).mean(axis=0)
    return result


def pair_quadform(features: np.ndarray, pairs: np.ndarray, precision: np.ndarray) -> np.ndarray:
    diffs = pair_diff(features, pairs).astype(np.float64)
    result: np.ndarray = ((diffs @ precision) * diffs).sum(axis=1)
    return result


def fisher_matrix(features: np.ndarray, pairs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    diffs = pair_diff(features, pairs).astype(np.float64)
    result: np.ndarray = diffs.T @ (weights[:, None] * diffs)
    return result


def top_k(score: np.ndarray, k: int) -> np.ndarray:
    """The k largest scores, ties to the lowest index (the package's order)."""
    result: np.ndarray = np.argsort(-score, kind="stable")[:k]
    return result


def gaps(rewards: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    result: np.ndarray = rewards[:, pairs[:, 0]] - rewards[:, pairs[:, 1]]
    return result


def entropy_scores(rewards: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Minus the distance of the ensemble-mean preference probability from 1/2."""
    p = (1.0 / (1.0 + np.exp(-gaps(rewards, pairs)))).mean(axis=0)
    result: np.ndarray = -np.abs(p - 0.5)
    return result


def max_gap_scores(rewards: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.abs(gaps(rewards, pairs).mean(axis=0))
    return result


def paper_one_shot(
    features: np.ndarray,
    pairs: np.ndarray,
    rewards: np.ndarray,
    k: int,
    ridge: float,
    labelled: np.ndarray | None = None,
) -> np.ndarray:
    """The paper's one-shot rule, materialising the (P, d, d) per-pair information matrices;
    with ``labelled`` pairs (all distinct from ``pairs``) their information joins F
    (past-dopt-topk)."""
    diffs = pair_diff(features.astype(np.float64), pairs)
    weights = fisher_weights(rewards, pairs)
    information = weights[:, None, None] * diffs[:, :, None] * diffs[:, None, :]
    design = ridge * np.eye(diffs.shape[1]) + information.sum(axis=0)
    if labelled is not None:
        done = pair_diff(features.astype(np.float64), labelled)
        design += done.T @ (fisher_weights(rewards, labelled)[:, None] * done)
    # d log det(F) / d xi_k = tr(F^-1 I_k) at xi = 1 for every pair
    gradient = np.einsum("pij,ji->p", information, np.linalg.inv(design), optimize=True)
    return top_k(gradient, k)


def one_shot_bytes(pairs: int, dim: int) -> int:
    """Bytes of the (P, d, d) float64 information matrices ``paper_one_shot`` builds."""
    return pairs * dim * dim * 8


def submodlib_objective(
    features: np.ndarray, pairs: np.ndarray, weights: np.ndarray, ridge: float
) -> Any:
    """submodlib's log-det objective on the (P, P) pair kernel."""
    from submodlib import LogDeterminantFunction

    scaled = pair_diff(features.astype(np.float64), pairs) * np.sqrt(weights)[:, None]
    kernel = scaled @ scaled.T / ridge
    return LogDeterminantFunction(n=len(pairs), mode="dense", lambdaVal=1.0, sijs=kernel)


def submodlib_greedy(objective: Any, k: int, optimizer: str) -> list[int]:
    """k picks of submodlib's "NaiveGreedy" or "LazyGreedy" (the objective can be reused)."""
    picked = objective.maximize(
        budget=k,
        optimizer=optimizer,
        stopIfZeroGain=False,
        stopIfNegativeGain=False,
        verbose=False,
        show_progress=False,
    )
    return [int(index) for index, _ in picked]


def submodlib_kernel_bytes(pairs: int) -> int:
    """Bytes of the (P, P) float64 pair kernel submodlib needs (it keeps a copy of its own)."""
    return 2 * pairs * pairs * 8


def torch_rank_one_greedy(
    features: torch.Tensor,
    pairs: torch.Tensor,
    weights: torch.Tensor,
    ridge: float,
    steps: int,
    chunk: int = 1 << 20,
) -> tuple[list[int], list[float]]:
    """The greedy a torch user would write on the features' device: the (P, d) differences
    materialised in float32 chunks of ``chunk`` pairs (all kept: it runs where they fit), and
    every score d^T F^-1 d kept current by a rank-one update, O(P d) per step. Returns the
    picks and each step's seconds, the device synchronised around each."""
    device = features.device
    diffs = [
        (features[pairs[s : s + chunk, 0]] - features[pairs[s : s + chunk, 1]]).float()
        for s in range(0, pairs.shape[0], chunk)
    ]
    q = torch.cat([(c.double() ** 2).sum(dim=1) for c in diffs]) / ridge
    inverse = torch.eye(features.shape[1], dtype=torch.float64, device=device) / ridge
    w = weights.double()
    chosen, times = [], []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        best = int(torch.argmax(torch.nan_to_num(w * q, nan=-torch.inf)))
        row = diffs[best // chunk][best % chunk].double()
        u = inverse @ row
        c = w[best] / (1.0 + w[best] * (row @ u))
        u32 = u.float()
        for s, part in enumerate(diffs):
            q[s * chunk : s * chunk + part.shape[0]] -= c * (part @ u32).double() ** 2
        q[best] = torch.nan
        inverse -= c * torch.outer(u, u)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
        chosen.append(best)
    return chosen, times
