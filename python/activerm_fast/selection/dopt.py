"""The D-optimal strategies: the paper's one-shot top-k rule and greedy log-det design, without
rewards (X^T X), with Fisher weights, past-aware, and summed over ensemble members."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..kernels import Selection
from . import design as _design
from .inputs import SelectionInputs
from .registry import register, top


def _dopt_topk(inputs: SelectionInputs, k: int, past: bool) -> Selection:
    # The paper's one-shot rule: gradient of log det at uniform weights over the whole pool,
    # w_k d_k^T F^-1 d_k with F = F0 + sum over available candidates of w d d^T.
    inputs.check_weights_representable(k)
    w = inputs.weights(inputs.pairs)
    available = w if inputs.excluded is None else w.masked_fill(inputs.excluded, 0.0)
    matrix = inputs.pool.total(
        _design.fisher_matrix(inputs.features, inputs.pairs, available.contiguous())
    )
    design = _design.Prior.of_information(
        matrix + inputs.information(past), inputs.ridge, "the pool's Fisher information"
    )
    scores = _design.quadforms(inputs.features, inputs.pairs, design)
    _design.check_scores_representable(scores, inputs.features, [design], k, inputs.excluded)
    return top(inputs, w * scores, k)


def _greedy(
    inputs: SelectionInputs,
    k: int,
    *,
    members: torch.Tensor,
    priors: list[_design.Prior],
) -> Selection:
    """The greedy engine over the pool: the weights of every member of ``members`` (one
    column when they share one matrix, :meth:`SelectionInputs.greedy_weights`) and one prior
    per member."""
    inputs = inputs.excluding_labelled()
    inputs.check_weights_representable(k)
    weights = inputs.greedy_weights(k, per_member=len(priors) > 1)
    problem = _design.GreedyProblem(
        members,
        inputs.candidates,
        weights.contiguous() if isinstance(weights, torch.Tensor) else weights,
        priors,
        inputs.excluded,
        inputs.lazy,
        first_index=inputs.pool.offset,
        quota=inputs.quota,
    )
    return Selection(*inputs.pool.greedy(problem, k))


def _single(inputs: SelectionInputs, k: int, start: _design.Prior) -> Selection:
    """Greedy design on the first member's features, with the ensemble mean Fisher weights
    (ones without rewards) and F0 ``start``."""
    return _greedy(inputs, k, members=inputs.members[:1], priors=[start])


@register("xtx", "greedy D-optimal design without rewards (X^T X)", implicit=True)
def _xtx(inputs: SelectionInputs, k: int) -> Selection:
    return _single(replace(inputs, rewards=None), k, inputs.prior(past=False))


DOPT = {"needs_rewards": True, "needs_model": True}
GREEDY = {"implicit": True, **DOPT}
register("dopt-topk", "the paper's one-shot D-optimal scores, top k", **DOPT)(
    lambda inputs, k: _dopt_topk(inputs, k, past=False)
)
register(
    "past-dopt-topk",
    "one-shot D-optimal scores with the labelled pairs in F0",
    uses_labelled=True,
    **DOPT,
)(lambda inputs, k: _dopt_topk(inputs, k, past=True))
register("dopt-greedy", "greedy D-optimal design", **GREEDY)(
    lambda inputs, k: _single(inputs, k, inputs.prior(past=False))
)
register(
    "past-dopt-greedy",
    "greedy D-optimal design with the labelled pairs in F0",
    uses_labelled=True,
    **GREEDY,
)(lambda inputs, k: _single(inputs, k, inputs.prior(past=True)))


@register(
    "ensemble-dopt-greedy",
    "greedy sum over members of each member's past-aware log det",
    uses_labelled=True,
    uses_member_features=True,
    **GREEDY,
)
def _ensemble_dopt_greedy(inputs: SelectionInputs, k: int) -> Selection:
    """Greedy maximisation of sum_e log det(F0_e + sum_S w_e,k d_e,k d_e,k^T).

    Every member keeps its own rank-one state in its own features and Fisher weights, on the
    compiled multi-member engine; a pair's gain is the sum of the members' gains. F0_e is
    past-aware: lambda I plus the labelled pairs' information under member e.
    """
    assert inputs.rewards is not None
    priors = [inputs.prior(past=True, member=e) for e in range(inputs.rewards.shape[0])]
    return _greedy(inputs, k, members=inputs.members, priors=priors)
