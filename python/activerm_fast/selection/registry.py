"""Every selection strategy, registered with what it needs.

A strategy is a function ``(inputs, k) -> Selection`` over validated
:class:`~activerm_fast._inputs.SelectionInputs`, entered in :data:`STRATEGIES` with the inputs it
declares it needs; :func:`~activerm_fast.selectors.select`, the command line and the annotation
workflow read those declarations rather than keeping lists of their own. Every strategy returns a
:class:`~activerm_fast.kernels.Selection` of ``k`` distinct available positions. ``gains`` and
``logdet`` are those of the log-det objective the strategy optimises; strategies that optimise
none report the D-optimal objective log det(F0 + sum_S w d d^T) of their batch (w from the
rewards, or 1 without; F0 past-aware when labelled pairs are given), so every batch can be
compared on one scale.

What a strategy asks of the whole candidate pool (the top k of a score, the largest score, a
random draw, a sum over every pair, the greedy engine) goes through a :class:`Pool`. The
default one holds every candidate in this process; :mod:`activerm_fast.distributed` passes
:class:`PooledInputs` whose pool answers the same questions across the shards of a
process group, so every strategy runs unchanged on one process or on many.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .. import _launch
from ..kernels import Selection
from . import bal_pm
from . import design as _design
from .inputs import SelectionInputs

__all__ = ["STRATEGIES", "Pool", "PooledInputs", "Strategy"]


@dataclass(frozen=True)
class Strategy:
    """A registered strategy and what it needs.

    ``needs_rewards``: the model's rewards (Fisher weights or uncertainty); ``needs_ensemble``:
    rewards of at least two members; ``needs_model``: a fitted reward model (without one, the
    strategy has nothing to run on); ``uses_labelled``: labelled pairs shape the choice beyond
    being excluded; ``uses_member_features``: every ensemble member's own features;
    ``uses_prompt_features``: the feature of each response's prompt (``prompt_features``).
    """

    name: str
    choose: Callable[[SelectionInputs, int], Selection]
    summary: str
    needs_rewards: bool = False
    needs_ensemble: bool = False
    needs_model: bool = False
    uses_labelled: bool = False
    uses_member_features: bool = False
    uses_prompt_features: bool = False


STRATEGIES: dict[str, Strategy] = {}


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

    def greedy(
        self,
        members: torch.Tensor,
        pairs: torch.Tensor,
        k: int,
        weights: torch.Tensor,
        priors: list[_design.Prior],
        excluded: torch.Tensor | None,
        lazy: bool | str,
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """:func:`_design.greedy` over the pool."""
        return _design.greedy(members, pairs, k, weights, priors, excluded, lazy)


WHOLE_POOL = Pool()


@dataclass(frozen=True)
class PooledInputs(SelectionInputs):
    """Selection inputs whose ``pairs``, ``excluded`` (and so ``available``) are this process's
    part of a pool that ``pool`` answers for; every other field is the whole pool's."""

    pool: Pool


def pool_of(inputs: SelectionInputs) -> Pool:
    return inputs.pool if isinstance(inputs, PooledInputs) else WHOLE_POOL


# core-set centres whose projections are computed in one matrix product (bounds the (n, block)
# buffer)
_CENTRE_BLOCK = 256


def _register(
    name: str, summary: str, **needs: bool
) -> Callable[
    [Callable[[SelectionInputs, int], Selection]], Callable[[SelectionInputs, int], Selection]
]:
    def enter(
        choose: Callable[[SelectionInputs, int], Selection],
    ) -> Callable[[SelectionInputs, int], Selection]:
        STRATEGIES[name] = Strategy(name, choose, summary, **needs)
        return choose

    return enter


# ---- batches scored on the D-optimal objective ------------------------------------------------


def batch_selection(
    inputs: SelectionInputs, chosen: torch.Tensor, picked: torch.Tensor | None = None
) -> Selection:
    """A fixed batch with the sequential log-det gains of its order under the D-optimal
    objective. Gain t is log(1 + w_t d_t^T F_{t-1}^-1 d_t) = 2 log R_tt for the QR factor R of
    [B | I]^T, B = W^1/2 D' S0 (k x (d + k), no P-sized work): the identity block keeps every
    R_tt >= 1, so no pivot cancels however large the pairs' information (a Cholesky of
    I + B B^T failed there). ``picked`` are the chosen pairs' rows (by default looked up in
    ``inputs.pairs``)."""
    start = inputs.prior(past=True)
    if len(chosen) == 0:
        return Selection(
            chosen, torch.empty(0, dtype=torch.float64, device=chosen.device), start.logdet
        )
    picked = (inputs.pairs[chosen] if picked is None else picked).contiguous()
    gains = _design.sequential_gains(inputs.features, picked.long(), inputs.weights(picked), start)
    return Selection(chosen, gains.to(chosen.device), start.logdet + gains.sum().item())


def top(inputs: SelectionInputs, score: torch.Tensor, k: int) -> Selection:
    """The k available pairs of largest score, ties to the lowest index."""
    score = score.double().clone()
    if inputs.excluded is not None:
        score.masked_fill_(inputs.excluded, -torch.inf)
    return batch_selection(inputs, *pool_of(inputs).top(inputs.pairs, score, k))


# ---- model-free -------------------------------------------------------------------------------


@_register("random", "uniformly at random (seeded)")
def _random(inputs: SelectionInputs, k: int) -> Selection:
    rng = np.random.default_rng(inputs.seed)
    return batch_selection(inputs, *pool_of(inputs).draw(inputs.pairs, rng, inputs.available, k))


@_register("coreset", "greedy k-center on pair differences", uses_labelled=True)
def _coreset(inputs: SelectionInputs, k: int) -> Selection:
    """Repeatedly take the available pair farthest from every centre so far (labelled pairs
    are the first centres; without them, a seeded random pair). A comparison does not depend
    on its orientation, so the distance of d_k to a centre c is min ||d_k -+ d_c||, and
    ||d_k - d_c||^2 = ||d_k||^2 + ||d_c||^2 - 2 |d_k.d_c| with d_k.d_c = (Phi d_c)_i -
    (Phi d_c)_j: per-response quantities only, no (P, d) array."""
    f = inputs.features64
    i, j = inputs.pairs[:, 0].long(), inputs.pairs[:, 1].long()
    norms = _launch.pair_quadform(inputs.features, inputs.pairs, None, 1.0)
    nearest = torch.full_like(norms, torch.inf)

    def absorb(centres: torch.Tensor) -> None:
        """Lower every pair's distance to its nearest centre by the given (c, d) differences."""
        for block in torch.split(centres, _CENTRE_BLOCK):
            projection = f @ block.T  # (n, b)
            dots = (projection[i] - projection[j]).abs()  # (P, b)
            distance = norms[:, None] + (block * block).sum(dim=1)[None, :] - 2 * dots
            torch.minimum(nearest, distance.clamp_min(0).min(dim=1).values, out=nearest)

    pool = pool_of(inputs)
    available = inputs.available.clone()
    chosen: list[int] = []
    rows: list[torch.Tensor] = []

    def take(position: int, row: torch.Tensor) -> None:
        chosen.append(position)
        rows.append(row)
        local = pool.local(position)
        if local is not None:
            available[local] = False
        absorb((f[row[0].long()] - f[row[1].long()])[None, :])

    if inputs.labelled is not None and inputs.labelled.shape[0]:
        absorb(f[inputs.labelled[:, 0].long()] - f[inputs.labelled[:, 1].long()])
    elif k:
        first, row = pool.draw(inputs.pairs, np.random.default_rng(inputs.seed), available, None)
        take(int(first[0]), row[0])
    while len(chosen) < k:
        take(*pool.best(inputs.pairs, torch.where(available, nearest, -torch.inf)))
    indices = torch.tensor(chosen, dtype=torch.int64, device=inputs.pairs.device)
    picked = torch.stack(rows) if rows else inputs.pairs[:0]
    return batch_selection(inputs, indices, picked)


# ---- uncertainty ------------------------------------------------------------------------------


@_register("entropy", "preference probability nearest 1/2", needs_rewards=True, needs_model=True)
def _entropy(inputs: SelectionInputs, k: int) -> Selection:
    # the ensemble-mean preference probability nearest 1/2 (smallest |r_i - r_j| for one member)
    p = torch.sigmoid(inputs.reward_gaps()).mean(dim=0)
    return top(inputs, -(p - 0.5).abs(), k)


@_register("max-gap", "largest predicted reward gap", needs_rewards=True, needs_model=True)
def _max_gap(inputs: SelectionInputs, k: int) -> Selection:
    return top(inputs, inputs.reward_gaps().mean(dim=0).abs(), k)


@_register(
    "bald",
    "mutual information of the label and the ensemble member",
    needs_rewards=True,
    needs_ensemble=True,
    needs_model=True,
)
def _bald(inputs: SelectionInputs, k: int) -> Selection:
    """Top k of the mutual information between a pair's label and the ensemble member:
    H(mean_e p_e) - mean_e H(p_e), with p_e = sigma(r_e,i - r_e,j)."""
    return top(inputs, inputs.mutual_information(), k)


@_register(
    "bal-pm",
    "BALD plus a bonus for prompts that raise the entropy of the acquired prompts (BAL-PM)",
    needs_rewards=True,
    needs_ensemble=True,
    needs_model=True,
    uses_labelled=True,
    uses_prompt_features=True,
)
def _bal_pm(inputs: SelectionInputs, k: int) -> Selection:
    return batch_selection(inputs, *bal_pm.choose(inputs, k, pool_of(inputs)))


# ---- D-optimal design -------------------------------------------------------------------------


def _dopt_topk(inputs: SelectionInputs, k: int, past: bool) -> Selection:
    # The paper's one-shot rule: gradient of log det at uniform weights over the whole pool,
    # w_k d_k^T F^-1 d_k with F = F0 + sum over available candidates of w d d^T.
    w = inputs.weights(inputs.pairs)
    available = w if inputs.excluded is None else w.masked_fill(inputs.excluded, 0.0)
    matrix = pool_of(inputs).total(
        _design.fisher_matrix(inputs.features, inputs.pairs, available.contiguous())
    )
    design = _design.Prior.of_information(
        matrix + inputs.information(past), inputs.ridge, "the pool's Fisher information"
    )
    return top(inputs, w * _design.quadforms(inputs.features, inputs.pairs, design), k)


def _greedy(
    inputs: SelectionInputs, k: int, weights: torch.Tensor, start: _design.Prior
) -> Selection:
    chosen, gains, logdet = pool_of(inputs).greedy(
        inputs.members[:1],
        inputs.pairs,
        k,
        weights[:, None].contiguous(),
        [start],
        inputs.excluded,
        inputs.lazy,
    )
    return Selection(chosen, gains, logdet)


@_register("xtx", "greedy D-optimal design without rewards (X^T X)")
def _xtx(inputs: SelectionInputs, k: int) -> Selection:
    ones = torch.ones(inputs.pairs.shape[0], dtype=torch.float64, device=inputs.pairs.device)
    return _greedy(inputs, k, ones, inputs.prior(past=False))


DOPT = {"needs_rewards": True, "needs_model": True}
_register("dopt-topk", "the paper's one-shot D-optimal scores, top k", **DOPT)(
    lambda inputs, k: _dopt_topk(inputs, k, past=False)
)
_register(
    "past-dopt-topk",
    "one-shot D-optimal scores with the labelled pairs in F0",
    uses_labelled=True,
    **DOPT,
)(lambda inputs, k: _dopt_topk(inputs, k, past=True))
_register("dopt-greedy", "greedy D-optimal design", **DOPT)(
    lambda inputs, k: _greedy(inputs, k, inputs.weights(inputs.pairs), inputs.prior(past=False))
)
_register(
    "past-dopt-greedy",
    "greedy D-optimal design with the labelled pairs in F0",
    uses_labelled=True,
    **DOPT,
)(lambda inputs, k: _greedy(inputs, k, inputs.weights(inputs.pairs), inputs.prior(past=True)))


@_register(
    "ensemble-dopt-greedy",
    "greedy sum over members of each member's past-aware log det",
    uses_labelled=True,
    uses_member_features=True,
    **DOPT,
)
def _ensemble_dopt_greedy(inputs: SelectionInputs, k: int) -> Selection:
    """Greedy maximisation of sum_e log det(F0_e + sum_S w_e,k d_e,k d_e,k^T).

    Every member keeps its own rank-one state in its own features and Fisher weights, on the
    compiled multi-member engine; a pair's gain is the sum of the members' gains. F0_e is
    past-aware: lambda I plus the labelled pairs' information under member e.
    """
    assert inputs.rewards is not None
    members = inputs.rewards.shape[0]
    weights = torch.stack([inputs.weights(inputs.pairs, e) for e in range(members)], dim=1)
    priors = [inputs.prior(past=True, member=e) for e in range(members)]
    chosen, gains, logdet = pool_of(inputs).greedy(
        inputs.members, inputs.pairs, k, weights.contiguous(), priors, inputs.excluded, inputs.lazy
    )
    return Selection(chosen, gains, logdet)
