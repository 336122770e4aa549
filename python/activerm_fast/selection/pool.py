"""What a strategy asks of the whole candidate pool, answered here over every candidate."""

from __future__ import annotations

import numpy as np
import torch

from . import design

__all__ = ["WHOLE_POOL", "Pool", "QuotaCount", "quota_walk"]


def quota_walk(
    pairs: torch.Tensor, order: torch.Tensor, quota: design.PromptQuota, k: int
) -> torch.Tensor:
    """The first ``k`` of the positions ``order`` (rows of ``pairs``) taken in turn while each
    distinct prompt of a pair has fewer than ``quota.limit`` taken pairs: the ranking or draw of
    a strategy under a per-prompt quota. O(len(order)) once, stopping at the k-th pair; a
    ValueError when fewer than ``k`` fit.

    Examples
    --------
    >>> import torch
    >>> quota = design.PromptQuota(1, torch.tensor([0, 0, 1, 1]), 2)
    >>> pairs = torch.tensor([[0, 1], [0, 2], [2, 3], [1, 3]])
    >>> quota_walk(pairs, torch.tensor([1, 0, 2, 3]), quota, 1).tolist()
    [1]
    >>> quota_walk(pairs, torch.tensor([0, 1, 2, 3]), quota, 2).tolist()
    [0, 2]
    """
    first, second = quota.prompts_of(pairs[order])
    used = [0] * quota.prompts
    limit = quota.limit
    taken: list[int] = []
    if k > 0:
        for position, a, b in zip(order.tolist(), first.tolist(), second.tolist(), strict=True):
            if used[a] >= limit or used[b] >= limit:
                continue
            used[a] += 1
            if b != a:
                used[b] += 1
            taken.append(position)
            if len(taken) == k:
                break
    if len(taken) < k:
        raise ValueError(
            f"per_prompt={limit} leaves only {len(taken)} pairs to choose, k = {k}; lower k "
            "or raise per_prompt"
        )
    return torch.tensor(taken, dtype=torch.int64, device=pairs.device)


class QuotaCount:
    """A sequential strategy's picks counted against a per-prompt quota over the ``pairs``
    held here: :meth:`take` returns the rows of the pairs a pick's prompts can no longer take.

    Examples
    --------
    >>> import torch
    >>> quota = design.PromptQuota(1, torch.tensor([0, 0, 1, 1]), 2)
    >>> count = QuotaCount(quota, torch.tensor([[0, 1], [0, 2], [2, 3]]))
    >>> count.take(torch.tensor([0, 1])).tolist()
    [0, 1]
    """

    def __init__(self, quota: design.PromptQuota, pairs: torch.Tensor) -> None:
        self.quota = quota
        self.offsets, self.pairs = quota.index(pairs)
        self.used = [0] * quota.prompts

    def take(self, row: torch.Tensor) -> torch.Tensor:
        """Count the picked pair ``row`` (its two responses); the rows of every pair of a
        prompt it fills."""
        prompts = {int(p) for p in self.quota.prompt_of[row.long()].tolist()}
        full = []
        for prompt in sorted(prompts):
            self.used[prompt] += 1
            if self.used[prompt] == self.quota.limit:
                start, end = int(self.offsets[prompt]), int(self.offsets[prompt + 1])
                full.append(self.pairs[start:end])
        return torch.cat(full) if full else self.pairs[:0]


class Pool:
    """The questions a strategy asks of the whole candidate pool, answered over the ``pairs``
    this process holds (all of them here). Positions are positions in the whole pool; a
    sharded pool (:mod:`activerm_fast.distributed`) overrides every method with one that
    exchanges a few numbers per call between the processes holding its shards."""

    def local(self, position: int) -> int | None:
        """The row of ``pairs`` holding pool position ``position``, None if not here."""
        return position

    def total(self, part: torch.Tensor) -> torch.Tensor:
        """A sum over the pool, given the sum over the pairs held here."""
        return part

    def top(
        self,
        pairs: torch.Tensor,
        score: torch.Tensor,
        k: int,
        *,
        quota: design.PromptQuota | None = None,
        available: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The positions and rows of the k largest float64 scores (NaN after every number),
        ties to the lowest position; with a ``quota``, taken in that order among the
        ``available`` pairs while their prompts have room (:func:`quota_walk`)."""
        order = torch.sort(-score, stable=True).indices
        if quota is None:
            chosen = order[:k]
        else:
            if available is not None:
                order = order[available[order]]
            chosen = quota_walk(pairs, order, quota, k)
        return chosen, pairs[chosen]

    def best(self, pairs: torch.Tensor, score: torch.Tensor) -> tuple[int, torch.Tensor]:
        """The position and row of the largest score (a NaN if any), the first of ties."""
        best = int(torch.argmax(score))
        return best, pairs[best]

    def draw(
        self,
        pairs: torch.Tensor,
        rng: np.random.Generator,
        available: torch.Tensor,
        size: int | None,
        *,
        quota: design.PromptQuota | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``rng.choice`` of the available positions, ascending: ``size`` distinct ones, or one
        (``size`` None, drawn as ``rng.choice(positions)``); with their rows. With a ``quota``,
        a random order of the available positions (``rng.permutation``) taken while their
        prompts have room (:func:`quota_walk`)."""
        positions = torch.nonzero(available).reshape(-1).cpu().numpy()
        if quota is not None and size is not None:
            order = torch.as_tensor(rng.permutation(positions), device=pairs.device)
            chosen = quota_walk(pairs, order.long(), quota, size)
            return chosen, pairs[chosen]
        if size is None:
            drawn = np.asarray([rng.choice(positions)])
        else:
            drawn = rng.choice(positions, size=size, replace=False)
        chosen = torch.as_tensor(drawn, device=pairs.device)
        return chosen, pairs[chosen]

    @property
    def offset(self) -> int:
        """The pool position of the first pair held here."""
        return 0

    def everything(
        self, pairs: torch.Tensor, available: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The positions and rows of every available pair of the whole pool, ascending (a
        sharded pool gathers them from every process)."""
        positions = torch.nonzero(available).reshape(-1)
        return positions, pairs[positions]

    def greedy(
        self, problem: design.GreedyProblem, k: int
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """:func:`~activerm_fast.selection.design.greedy` over the pool."""
        return design.greedy(problem, k)


WHOLE_POOL = Pool()
