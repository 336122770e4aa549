"""Selection strategies built on the kernels, behind one entry point: :func:`select`.

Every strategy returns a :class:`~activerm_fast.kernels.Selection` of ``k`` distinct positions
in ``pairs``, never a pair that is already labelled. ``gains``/``logdet`` are those of the
log-det objective the strategy optimises; strategies that optimise none report the D-optimal
objective log det(F0 + sum_S w d d^T) of their batch (w from ``rewards``, or 1 without; F0
past-aware when ``labelled`` is given), so every strategy's batch can be compared on one scale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from . import _validation as v
from ._pool import Pool
from .coreset import coreset
from .ensemble import bald, ensemble_dopt_greedy
from .kernels import (
    PriorState,
    Selection,
    check_budget,
    export,
    fisher_matrix64,
    greedy64,
    prior_state,
)

__all__ = ["STRATEGIES", "select", "select_with_model"]


def _random(pool: Pool, k: int) -> torch.Tensor:
    available = np.arange(pool.pairs.shape[0])
    if pool.excluded is not None:
        available = available[~pool.excluded.cpu().numpy()]
    chosen = np.random.default_rng(pool.seed).choice(available, size=k, replace=False)
    return torch.as_tensor(chosen, dtype=torch.int64, device=pool.pairs.device)


def _entropy(pool: Pool, k: int) -> torch.Tensor:
    # the ensemble-mean preference probability nearest 1/2 (smallest |r_i - r_j| for one member)
    p = torch.sigmoid(pool.reward_gaps()).mean(dim=0)
    return pool.top(-(p - 0.5).abs(), k)


def _max_gap(pool: Pool, k: int) -> torch.Tensor:
    return pool.top(pool.reward_gaps().mean(dim=0).abs(), k)


def _dopt_topk(pool: Pool, k: int, past: bool) -> torch.Tensor:
    # The paper's one-shot rule: gradient of log det at uniform weights over the whole pool,
    # w_k d_k^T F^-1 d_k with F = F0 + sum over available candidates of w d d^T.
    pool.need_rewards()
    w = pool.weights(pool.pairs)
    available = w if pool.excluded is None else w.masked_fill(pool.excluded, 0.0)
    matrix = fisher_matrix64(pool.features, pool.pairs, available.contiguous())
    matrix += pool.prior_matrix(past)
    design = prior_state(matrix, pool.features, "pool Fisher matrix")
    return pool.top(w * design.quadforms(pool.features, pool.pairs), k)


def _greedy(pool: Pool, k: int, weights: torch.Tensor, start: PriorState) -> Selection:
    chosen, gains, logdet = greedy64(
        pool.features, pool.pairs, k, weights.contiguous(), start, pool.excluded
    )
    return Selection(chosen, gains, logdet)


def _xtx(pool: Pool, k: int) -> Selection:
    ones = torch.ones(pool.pairs.shape[0], dtype=torch.float64, device=pool.pairs.device)
    return _greedy(pool, k, ones, pool.prior(past=False))


def _dopt_greedy(pool: Pool, k: int, past: bool) -> Selection:
    pool.need_rewards()
    return _greedy(pool, k, pool.weights(pool.pairs), pool.prior(past))


Strategy = Callable[[Pool, int], "torch.Tensor | Selection"]

STRATEGIES: dict[str, Strategy] = {
    "random": _random,
    "entropy": _entropy,
    "max-gap": _max_gap,
    "xtx": _xtx,
    "dopt-topk": lambda pool, k: _dopt_topk(pool, k, past=False),
    "past-dopt-topk": lambda pool, k: _dopt_topk(pool, k, past=True),
    "dopt-greedy": lambda pool, k: _dopt_greedy(pool, k, past=False),
    "past-dopt-greedy": lambda pool, k: _dopt_greedy(pool, k, past=True),
    "bald": bald,
    "coreset": coreset,
    "ensemble-dopt-greedy": ensemble_dopt_greedy,
}


def batch_gains(pool: Pool, chosen: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Sequential log-det gains of a fixed batch, in its order, under the pool's D-optimal
    objective: the log-diagonal of chol(I + W^1/2 D F0^-1 D^T W^1/2) (k x k, no P-sized work)."""
    start = pool.prior(past=True)
    picked = pool.pairs[chosen].contiguous()
    f = pool.features.double()
    diffs = f[picked[:, 0].long()] - f[picked[:, 1].long()]
    w = pool.weights(picked)
    scaled = diffs * w.sqrt()[:, None]
    gram = scaled @ start.inverse @ scaled.T
    gram += torch.eye(len(chosen), dtype=torch.float64, device=f.device)
    gains = 2.0 * torch.log(torch.diagonal(torch.linalg.cholesky(gram)))
    return gains, start.logdet + gains.sum().item()


def select(
    strategy: str,
    *,
    features: Any,
    pairs: Any,
    k: int,
    rewards: Any | None = None,
    labelled: Any | None = None,
    ridge: float = 1e-3,
    seed: int = 0,
) -> Selection:
    """Choose ``k`` pairs of the candidate ``pairs`` to label next.

    ``features`` (n, d) are the reward model's last-layer features, or (E, n, d) one matrix per
    ensemble member: ``ensemble-dopt-greedy`` uses every member's, the other strategies the
    first member's. ``rewards`` (n,) or (E, n) are the model's rewards (needed by every
    strategy but ``random``, ``xtx`` and ``coreset``); Fisher weights are their ensemble mean.
    ``labelled`` (M, 2) are the pairs labelled so far: they enter F0 of the past-aware
    strategies with their current Fisher weights, seed the core-set centres, and are never
    chosen again. ``ridge`` is lambda in F0 = lambda I; ``seed`` drives ``random``/``coreset``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
    members = v.features_tensor(features, members=True)
    f = members[0]
    n = f.shape[0]
    p = v.pairs_tensor(pairs, n, f.device, unique=True)
    r = None if rewards is None else v.rewards_tensor(rewards, n, f.device)
    done = (
        None
        if labelled is None
        else v.pairs_tensor(labelled, n, f.device, "labelled", distinct=True)
    )
    excluded = None
    if done is not None and done.shape[0] and p.shape[0]:
        excluded = torch.isin(v.pair_keys(p, n), v.pair_keys(done, n))
    k = check_budget(k, p.shape[0], excluded)
    pool = Pool(
        tuple(members.unbind(0)),
        p,
        r,
        done,
        excluded,
        v.positive_scalar(ridge, "ridge"),
        v.count_argument(seed, "seed"),
        strategy,
    )
    result = STRATEGIES[strategy](pool, k)
    if isinstance(result, torch.Tensor):
        gains, logdet = batch_gains(pool, result)
        result = Selection(result, gains, logdet)
    as_numpy = v.is_numpy_like(features)
    return Selection(
        export(result.indices, as_numpy), export(result.gains, as_numpy), result.logdet
    )


def select_with_model(
    strategy: str,
    model: Any,
    embeddings: Any,
    pairs: Any,
    k: int,
    *,
    labelled: Any | None = None,
    ridge: float = 1e-3,
    seed: int = 0,
) -> Selection:
    """:func:`select` with the features and rewards of a fitted
    :class:`~activerm_fast.model.RewardModel` on ``embeddings``: one line for any strategy."""
    return select(
        strategy,
        features=model.features(embeddings),
        pairs=pairs,
        k=k,
        rewards=model.rewards(embeddings),
        labelled=labelled,
        ridge=ridge,
        seed=seed,
    )
