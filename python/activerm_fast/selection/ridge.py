"""The ridge lambda of F0 = lambda I relative to the scale of the features.

An absolute lambda means different things for features of different scale (a last hidden layer
of 256 GELU units against a 768-dimensional embedding of unit norm), so ``ridge_mode="relative"``
reads ``ridge`` as a multiple c of the mean eigenvalue of the labelled pairs' Fisher information:
lambda = c tr(F_L) / d with F_L = sum_l w_l d_l d_l^T at the current rewards. Its trace is
sum_l w_l |phi_i - phi_j|^2, so scaling the features by s scales lambda by s^2 and the design
does not change.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import _launch
from .design import centred_for

RIDGE_MODES = ("absolute", "relative")


def information_trace(
    features: torch.Tensor, pairs: torch.Tensor, rewards: torch.Tensor | None
) -> float:
    """tr(sum_k w_k d_k d_k^T) = tr(Phi^T L_w Phi) over ``pairs``, w the ensemble-mean Fisher
    weights of ``rewards`` (1 without rewards), in float64."""
    weights = None if rewards is None else _launch.fisher_weights(rewards, pairs)
    spread = _launch.fisher_matrix(features, pairs, weights)
    return float((centred_for(features, spread) * spread).sum())


def relative_ridge(
    scale: float,
    features: torch.Tensor,
    pairs: torch.Tensor,
    *,
    rewards: torch.Tensor | None = None,
    labelled: torch.Tensor | None = None,
    excluded: torch.Tensor | None = None,
    total: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """lambda = ``scale`` tr(F_L)/d over the ``labelled`` pairs, for validated inputs. With
    nothing labelled yet (or labelled pairs that carry no information) the trace is that of one
    average candidate not ``excluded``, as if it were the one labelled pair; ``total`` turns
    this process's (trace, count) of candidates into the whole pool's when ``pairs`` is one
    shard of it (:meth:`~activerm_fast.selection.pool.Pool.total`). A ValueError when no pair
    carries information or lambda is not a positive float64."""
    traces = []
    if labelled is not None and labelled.shape[0]:
        traces.append(information_trace(features, labelled, rewards))
    candidates = pairs if excluded is None else pairs[~excluded]
    here = information_trace(features, candidates, rewards) if candidates.shape[0] else 0.0
    part = torch.tensor([here, candidates.shape[0]], dtype=torch.float64)
    candidate_trace, count = (float(x) for x in (part if total is None else total(part)))
    if count:
        traces.append(candidate_trace / count)
    trace = next((t for t in traces if t > 0.0), 0.0)
    ridge = scale * trace / features.shape[1]
    if not (ridge > 0.0 and math.isfinite(ridge)):
        raise ValueError(
            f"ridge_mode='relative' with ridge={scale!r} gives lambda = {ridge!r}: it needs "
            "pairs that carry Fisher information (features that differ, weights above zero) "
            "and a product that float64 holds"
        )
    return ridge
