"""What a strategy asks of the whole candidate pool, answered here over every candidate."""

from __future__ import annotations

import numpy as np
import torch

from .. import _launch
from .._validation import pair_keys
from . import design

__all__ = ["WHOLE_POOL", "AvailablePairs", "Pool", "QuotaCount", "QuotaWalk", "Ranking"]


class QuotaWalk:
    """Pairs offered in an order and taken in turn while each distinct prompt of a pair has
    fewer than ``quota.limit`` taken pairs, until ``k`` are taken: the ranking or draw of a
    strategy under a per-prompt quota. The order may come in pieces (:meth:`walk` resumes where
    the last piece ended), so a sharded pool need not hold all of it; O(pairs walked).

    Examples
    --------
    >>> import torch
    >>> quota = design.PromptQuota(1, torch.tensor([0, 0, 1, 1]), 2)
    >>> pairs = torch.tensor([[0, 1], [0, 2], [2, 3], [1, 3]])
    >>> walk = QuotaWalk(quota, 2)
    >>> walk.walk(torch.tensor([0, 1]), pairs[[0, 1]])  # pair 1 shares prompt 0 with pair 0
    False
    >>> walk.walk(torch.tensor([2, 3]), pairs[[2, 3]])
    True
    >>> [t.tolist() for t in walk.chosen()]
    [[0, 2], [[0, 1], [2, 3]]]
    """

    def __init__(self, quota: design.PromptQuota, k: int) -> None:
        self.quota = quota
        self.k = k
        self.walked = 0  # pairs of the order walked so far
        self.taken = 0
        self.used = [0] * quota.prompts
        self.pieces: list[tuple[torch.Tensor, torch.Tensor]] = []  # (positions, rows) taken

    @property
    def done(self) -> bool:
        """Whether ``k`` pairs are taken."""
        return self.taken == self.k

    def walk(self, positions: torch.Tensor, rows: torch.Tensor) -> bool:
        """Walk the next pairs of the order, their pool ``positions`` and ``rows``, stopping at
        the k-th taken pair; whether ``k`` are taken."""
        first, second = self.quota.prompts_of(rows)
        used, limit = self.used, self.quota.limit
        taken = []
        for at, (a, b) in enumerate(zip(first.tolist(), second.tolist(), strict=True)):
            if self.taken == self.k:
                break
            if used[a] >= limit or used[b] >= limit:
                continue
            used[a] += 1
            if b != a:
                used[b] += 1
            taken.append(at)
            self.taken += 1
        self.walked += positions.shape[0]
        here = torch.tensor(taken, dtype=torch.int64, device=positions.device)
        self.pieces.append((positions[here], rows[here]))
        return self.done

    def chosen(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The positions and rows of the ``k`` pairs taken; a ValueError when the whole order
        was walked and fewer fit."""
        if not self.done:
            raise self.quota.exhausted(self.taken, self.k)
        if not self.pieces:  # k = 0: nothing walked
            device = self.quota.prompt_of.device
            return torch.empty(0, dtype=torch.int64, device=device), torch.empty(
                (0, 2), dtype=torch.int64, device=device
            )
        positions, rows = zip(*self.pieces, strict=True)
        return torch.cat(positions), torch.cat(rows)


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

    def check_room(self, available: int, taken: int, k: int) -> None:
        """A ValueError (:meth:`~design.PromptQuota.exhausted`) when no pair is ``available``
        for pick ``taken`` of ``k``."""
        if available == 0:
            raise self.quota.exhausted(taken, k)


class Ranking:
    """The available pairs in decreasing ``score`` order (NaN after every number, ties to the
    lowest position), given out as ever longer leading parts: :meth:`Pool.top`'s order.

    A leading part of L is found without sorting the pool: the L-th largest number t
    (``torch.topk``, O(P) for small L), then a stable sort of the pairs scoring t or more
    only, which hold the first L whatever the ties: O(P) where a sort of the pool is
    O(P log P) (the bench suite's entropy, max-gap and bald rows against NumPy's argpartition).
    A part that reaches the NaN scores sorts everything."""

    def __init__(
        self, pairs: torch.Tensor, score: torch.Tensor, available: torch.Tensor | None
    ) -> None:
        self.pairs = pairs
        self.positions = None if available is None else torch.nonzero(available).reshape(-1)
        self.available_score = score if self.positions is None else score[self.positions]
        self.count = int(self.available_score.shape[0])

    def head(self, length: int) -> torch.Tensor:
        """The positions of the first ``length`` of the order (all of them when fewer)."""
        s = self.available_score
        numbers = ~torch.isnan(s)
        if length <= 0:
            order = torch.zeros(0, dtype=torch.int64, device=s.device)
        elif length >= int(numbers.sum()):  # every number and some NaN: the whole order
            order = torch.sort(-s, stable=True).indices[:length]
        else:
            t = torch.topk(torch.where(numbers, s, -torch.inf), length, sorted=False).values.min()
            contenders = torch.nonzero(s >= t).reshape(-1)  # ascending: ties stay in order
            order = contenders[torch.sort(-s[contenders], stable=True).indices[:length]]
        return order if self.positions is None else self.positions[order]

    def leading(self, length: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The first ``length`` or more of the order (all of it when shorter): positions and
        rows, and whether that is the whole order."""
        head = self.head(length)
        return head, self.pairs[head], length >= self.count


class AvailablePairs:
    """The available pairs of the pool, numbered 0 .. ``count`` - 1 in position order: what
    :meth:`Pool.draw` draws from."""

    def __init__(self, pairs: torch.Tensor, available: torch.Tensor) -> None:
        self.positions = torch.nonzero(available).reshape(-1)
        self.count = int(self.positions.shape[0])
        self.pairs = pairs

    def at(self, numbers: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The positions and rows of the available pairs numbered ``numbers``."""
        chosen = self.positions[torch.as_tensor(numbers, device=self.positions.device)]
        return chosen, self.pairs[chosen]


class Pool:
    """The questions a strategy asks of the whole candidate pool, answered over the ``pairs``
    this process holds (all of them here). Positions are positions in the whole pool; a
    sharded pool (:mod:`activerm_fast.distributed`) overrides the methods below
    :meth:`draw_generated` with ones that exchange a few numbers per call between the
    processes holding its shards, and :meth:`top`, :meth:`draw` and :meth:`draw_generated`
    work on either."""

    def top(
        self,
        pairs: torch.Tensor,
        score: torch.Tensor,
        k: int,
        *,
        quota: design.PromptQuota | None = None,
        available: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The positions and rows of the k largest float64 scores (NaN after every number)
        among the ``available`` pairs (every pair when None), ties to the lowest position;
        with a ``quota``, taken in that order while their prompts have room
        (:class:`QuotaWalk`), the order fetched in ever longer leading parts until k fit."""
        ranking = self.ranking(pairs, score, available)
        if quota is None:
            positions, rows, _ = ranking.leading(k)
            return positions[:k], rows[:k]
        walk, length = QuotaWalk(quota, k), k
        while not walk.done:
            positions, rows, complete = ranking.leading(length)
            walk.walk(positions[walk.walked :], rows[walk.walked :])
            if complete:
                break
            length *= 2
        return walk.chosen()

    def draw(
        self,
        pairs: torch.Tensor,
        rng: np.random.Generator,
        available: torch.Tensor,
        size: int | None,
        *,
        quota: design.PromptQuota | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``rng.choice`` of the available positions (as it draws, by number among them):
        ``size`` distinct ones, or one (``size`` None, drawn as ``rng.choice(positions)``);
        with their rows. With a ``quota``, a random order of the available positions (as
        ``rng.permutation`` orders them) taken while their prompts have room
        (:class:`QuotaWalk`), fetched in ever longer parts until ``size`` fit."""
        held = self.available_pairs(pairs, available)
        if size is None:
            return held.at(np.asarray([rng.choice(held.count)]))
        if quota is None:
            return held.at(rng.choice(held.count, size=size, replace=False))
        order = rng.permutation(held.count)
        walk, start, length = QuotaWalk(quota, size), 0, size
        while not walk.done and start < held.count:
            walk.walk(*held.at(order[start : start + length]))
            start, length = start + length, 2 * length
        return walk.chosen()

    def draw_generated(
        self,
        pairs: _launch.GeneratedPairs,
        rng: np.random.Generator,
        labelled: torch.Tensor | None,
        k: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` distinct pairs of an implicit pool, none of them ``labelled`` (an (m, 2) pair
        in either orientation): positions drawn as ``rng.choice`` draws k of a stored pool's
        (the same positions when none is labelled and no pair repeats), then the labelled pairs
        and the repeats of a pair drawn earlier dropped and as many drawn again; no pass over
        the pool. Every pair is computed from the pool's seed, so a sharded pool draws the
        same positions on every rank."""
        whole = self.generated_pool(pairs)
        n = whole.n
        taken: list[int] = []
        done = set() if labelled is None else set(pair_keys(labelled, n).tolist())
        keys = set(done)
        while len(taken) < k:
            wanted = k - len(taken)
            drawn = rng.choice(whole.count, size=min(whole.count, wanted), replace=False)
            rows = design.pair_rows(whole, torch.as_tensor(drawn, device=whole.device)).tolist()
            before = len(taken)
            for position, (i, j) in zip(drawn.tolist(), rows, strict=True):
                if i * n + j not in keys and len(taken) < k:
                    taken.append(position)
                    keys.add(i * n + j)
            if len(taken) == before and _distinct_available(whole, done) < k:
                raise ValueError(
                    f"the implicit pool holds fewer than k = {k} distinct available pairs"
                )
        chosen = torch.tensor(taken, dtype=torch.int64, device=whole.device)
        return chosen + whole.first, design.pair_rows(whole, chosen)

    def generated_pool(self, pairs: _launch.GeneratedPairs) -> _launch.GeneratedPairs:
        """The whole implicit pool ``pairs`` are the part held here of."""
        return pairs

    def ranking(
        self, pairs: torch.Tensor, score: torch.Tensor, available: torch.Tensor | None
    ) -> Ranking:
        """The order :meth:`top` takes pairs in (``available`` None: every pair)."""
        return Ranking(pairs, score, available)

    def available_pairs(self, pairs: torch.Tensor, available: torch.Tensor) -> AvailablePairs:
        """The pairs :meth:`draw` draws from."""
        return AvailablePairs(pairs, available)

    def local(self, position: int) -> int | None:
        """The row of ``pairs`` holding pool position ``position``, None if not here."""
        return position

    def total(self, part: torch.Tensor) -> torch.Tensor:
        """A sum over the pool, given the sum over the pairs held here."""
        return part

    def best(self, pairs: torch.Tensor, score: torch.Tensor) -> tuple[int, torch.Tensor]:
        """The position and row of the largest score (a NaN if any), the first of ties."""
        best = int(torch.argmax(score))
        return best, pairs[best]

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


def _distinct_available(pairs: _launch.GeneratedPairs, labelled: set[int]) -> int:
    """How many distinct pairs ``pairs`` hold whose key (i n + j, i < j) is not ``labelled``
    (O(P))."""
    keys = [
        rows[:, 0] * pairs.n + rows[:, 1]
        for _, rows in _launch.generated_chunks(pairs, design.GENERATED_CHUNK)
    ]
    distinct = torch.unique(torch.cat(keys)) if keys else torch.empty(0, dtype=torch.int64)
    done = torch.tensor(sorted(labelled), dtype=torch.int64, device=distinct.device)
    return int((~torch.isin(distinct, done)).sum())


WHOLE_POOL = Pool()
