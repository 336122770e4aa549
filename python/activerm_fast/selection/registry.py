"""The strategy registry, and what every strategy asks of the candidate pool.

A strategy is a function ``(inputs, k) -> Selection`` over validated
:class:`~activerm_fast.selection.inputs.SelectionInputs`, entered in :data:`STRATEGIES` with the
inputs it declares it needs; :func:`~activerm_fast.select`, the command line and the annotation
workflow read those declarations rather than keeping lists of their own. Every strategy returns
a :class:`~activerm_fast.kernels.Selection` of ``k`` distinct available positions. ``gains`` and
``logdet`` are those of the log-det objective the strategy optimises; strategies that optimise
none report the D-optimal objective log det(F0 + sum_S w d d^T) of their batch (w from the
rewards, or 1 without; F0 past-aware when labelled pairs are given), so every batch can be
compared on one scale.

What a strategy asks of the whole candidate pool (the top k of a score, the largest score, a
random draw, a sum over every pair, the greedy engine) goes through a :class:`Pool`. The
default one holds every candidate in this process; :mod:`activerm_fast.distributed` passes
:class:`PooledInputs` whose pool answers the same questions across the shards of a
process group, so every strategy runs unchanged on one process or on many. The strategies
themselves live by family in :mod:`.baselines`, :mod:`.uncertainty` and :mod:`.dopt`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..kernels import Selection
from . import design as _design
from .inputs import SelectionInputs

__all__ = ["STRATEGIES", "Strategy", "batch_selection", "register", "top"]


@dataclass(frozen=True)
class Strategy:
    """A registered strategy and what it needs.

    ``needs_rewards``: the model's rewards (Fisher weights or uncertainty); ``needs_ensemble``:
    rewards of at least two members; ``needs_model``: a fitted reward model (without one, the
    strategy has nothing to run on); ``uses_labelled``: labelled pairs shape the choice beyond
    being excluded; ``uses_member_features``: every ensemble member's own features;
    ``uses_prompt_features``: the feature of each response's prompt (``prompt_features``);
    ``uses_prompt_ids``: the prompt of each response (``prompt_ids``): rules that choose
    within each prompt (without them, the whole pool is one prompt); ``implicit``: runs on an
    implicit pool (:class:`~activerm_fast.ImplicitPool`) without its pairs stored.
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
    uses_prompt_ids: bool = False
    implicit: bool = False


STRATEGIES: dict[str, Strategy] = {}


def register(
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
    """The k available pairs of largest score (NaN after every number), ties to the lowest
    index. The excluded pairs leave the order (a score of -inf would rank them above an
    available pair's NaN)."""
    available = None if inputs.excluded is None else inputs.available
    chosen = inputs.pool.top(
        inputs.pairs, score.double(), k, quota=inputs.quota, available=available
    )
    return batch_selection(inputs, *chosen)
