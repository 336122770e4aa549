"""What a strategy asks of the whole candidate pool, answered here over every candidate."""

from __future__ import annotations

import numpy as np
import torch

from . import design

__all__ = ["WHOLE_POOL", "Pool"]


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
        self, pairs: torch.Tensor, score: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The positions and rows of the k largest float64 scores (NaN after every number),
        ties to the lowest position."""
        chosen = torch.sort(-score, stable=True).indices[:k]
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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``rng.choice`` of the available positions, ascending: ``size`` distinct ones, or one
        (``size`` None, drawn as ``rng.choice(positions)``); with their rows."""
        positions = torch.nonzero(available).reshape(-1).cpu().numpy()
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

    def greedy(
        self, problem: design.GreedyProblem, k: int
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """:func:`~activerm_fast.selection.design.greedy` over the pool."""
        return design.greedy(problem, k)


WHOLE_POOL = Pool()
