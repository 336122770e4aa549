"""The ranking strategies' top k: excluded (labelled) pairs leave the order, so an available
pair whose score is NaN still comes before them, after every number (a regression: excluded
pairs masked with -inf ranked above an available NaN and were chosen)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import activerm_fast as arm
from activerm_fast.selection.api import validated
from activerm_fast.selection.pool import WHOLE_POOL
from activerm_fast.selection.registry import top


def expected_order(score: np.ndarray, available: np.ndarray) -> list[int]:
    """Brute force: the available positions by decreasing score, NaN last, ties to the lowest
    position."""
    keys = [
        (np.isnan(score[p]), -score[p] if not np.isnan(score[p]) else 0.0, p)
        for p in range(len(score))
    ]
    return [p for _, _, p in sorted(keys) if available[p]]


@pytest.mark.parametrize(
    ("n", "labelled_count", "nans", "seed"), [(6, 4, 1, 0), (9, 10, 3, 1), (12, 0, 2, 2)]
)
def test_top_never_takes_an_excluded_pair_before_an_available_nan(n, labelled_count, nans, seed):
    rng = np.random.default_rng(seed)
    pool = arm.pairs.all_pairs(n)
    labelled = pool[rng.choice(len(pool), labelled_count, replace=False)]
    features = rng.normal(size=(n, 3)).astype(np.float32)
    inputs = validated(
        "entropy", features=features, pairs=pool, k=1, rewards=rng.normal(size=n), labelled=labelled
    )
    available = np.ones(len(pool), dtype=bool)
    if inputs.excluded is not None:
        available = ~inputs.excluded.numpy()
    score = rng.normal(size=len(pool))
    score[rng.choice(np.flatnonzero(available), nans, replace=False)] = np.nan
    score[rng.choice(len(pool), 2, replace=False)] = 0.5  # a tie
    order = expected_order(score, available)
    k = len(order)  # every available pair: the NaN ones come last
    chosen = top(inputs, torch.from_numpy(score), k).indices.tolist()
    assert chosen == order
    assert not set(chosen) & set(np.flatnonzero(~available).tolist())


def test_pool_top_ranks_within_the_available_pairs():
    pairs = torch.tensor([[0, 1], [0, 2], [1, 2], [2, 3], [1, 3]])
    score = torch.tensor([1.0, float("nan"), 3.0, -torch.inf, 3.0], dtype=torch.float64)
    available = torch.tensor([True, True, False, True, True])
    positions, rows = WHOLE_POOL.top(pairs, score, 4, available=available)
    assert positions.tolist() == [4, 0, 3, 1]  # 3.0, 1.0, -inf, NaN; position 2 excluded
    assert rows.tolist() == [[1, 3], [0, 1], [2, 3], [0, 2]]
    every, _ = WHOLE_POOL.top(pairs, score, 5)
    assert every.tolist() == [2, 4, 0, 3, 1]  # ties to the lowest position


@pytest.mark.parametrize("count", [1, 7, 300, 5000])
@pytest.mark.parametrize("ties", ["none", "many", "infinite"])
def test_every_leading_part_is_that_of_a_full_stable_sort(count, ties):
    """The leading parts, found from the L-th largest score without sorting the pool, are the
    first L of the brute-force order for every L, with ties, NaN, infinities and excluded
    pairs."""
    rng = np.random.default_rng(count)
    score = rng.normal(size=count)
    if ties == "many":
        score = np.round(score, 1)
    if ties == "infinite":
        score[rng.random(count) < 0.3] = -np.inf
        score[rng.random(count) < 0.1] = np.inf
    score[rng.random(count) < 0.2] = np.nan
    pairs = torch.stack([torch.arange(count), torch.arange(count) + 1], dim=1)
    available = rng.random(count) < 0.8
    for mask in (None, available):
        seen = np.ones(count, bool) if mask is None else mask
        want = expected_order(score, seen)
        for length in sorted({0, 1, 2, len(want) // 2, len(want) - 1, len(want), count + 3}):
            if length < 0:
                continue
            ranking = WHOLE_POOL.ranking(
                pairs, torch.from_numpy(score), None if mask is None else torch.from_numpy(mask)
            )
            positions, rows, complete = ranking.leading(length)
            assert positions.tolist() == want[:length]
            assert rows.tolist() == pairs[positions].tolist()
            assert complete == (length >= len(want))
