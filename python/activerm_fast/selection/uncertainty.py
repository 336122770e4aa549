"""The uncertainty strategies: the preference probability nearest 1/2, the largest predicted
gap, BALD and BAL-PM."""

from __future__ import annotations

import math

import torch

from ..kernels import Selection
from . import bal_pm
from .inputs import SelectionInputs
from .registry import batch_selection, register, top


@register("entropy", "preference probability nearest 1/2", needs_rewards=True, needs_model=True)
def _entropy(inputs: SelectionInputs, k: int) -> Selection:
    """The ensemble-mean preference probability p nearest 1/2 (the smallest |r_i - r_j| for
    one member), ranked by a score that rises with q = 1/2 - |p - 1/2| and is accurate at any
    reward scale: -2 |p - 1/2| = -|mean_e tanh(g_e / 2)| while q >= 1/4 (exact near 1/2),
    below that -1/2 + log 4q from log-sigmoids (tanh and sigmoid round to +-1 beyond a gap of
    about 40, where every confident pair would tie)."""
    gaps = inputs.reward_gaps()
    spread = torch.tanh(gaps / 2).mean(dim=0).abs()
    logsigmoid = torch.nn.functional.logsigmoid
    log_members = math.log(gaps.shape[0])
    log_q = torch.minimum(
        torch.logsumexp(logsigmoid(gaps), dim=0), torch.logsumexp(logsigmoid(-gaps), dim=0)
    ).sub_(log_members)
    score = torch.where(spread <= 0.5, -spread, log_q.add_(math.log(4.0) - 0.5))
    return top(inputs, score, k)


@register("max-gap", "largest predicted reward gap", needs_rewards=True, needs_model=True)
def _max_gap(inputs: SelectionInputs, k: int) -> Selection:
    return top(inputs, inputs.reward_gaps().mean(dim=0).abs(), k)


@register(
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


@register(
    "bal-pm",
    "BALD plus a bonus for prompts that raise the entropy of the acquired prompts (BAL-PM)",
    needs_rewards=True,
    needs_ensemble=True,
    needs_model=True,
    uses_labelled=True,
    uses_prompt_features=True,
)
def _bal_pm(inputs: SelectionInputs, k: int) -> Selection:
    return batch_selection(inputs, *bal_pm.choose(inputs, k))
