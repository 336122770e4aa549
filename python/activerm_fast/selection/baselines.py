"""The model-free strategies: a seeded random draw and the greedy k-centre core set."""

from __future__ import annotations

import numpy as np
import torch

from .. import _launch
from .._threads import thread_stable_mm
from ..kernels import Selection
from . import design as _design
from .inputs import SelectionInputs
from .pool import QuotaCount
from .registry import batch_selection, register

# core-set centres whose projections are computed in one matrix product (bounds the (n, block)
# buffer)
_CENTRE_BLOCK = 256


@register("random", "uniformly at random (seeded)", implicit=True)
def _random(inputs: SelectionInputs, k: int) -> Selection:
    rng = np.random.default_rng(inputs.seed)
    if inputs.generated is not None:
        drawn = inputs.pool.draw_generated(inputs.generated, rng, inputs.labelled, k)
        return batch_selection(inputs, *drawn)
    if inputs.quota is None:
        return batch_selection(inputs, *inputs.pool.draw(inputs.pairs, rng, inputs.available, k))
    drawn = inputs.pool.draw(inputs.pairs, rng, inputs.available, k, quota=inputs.quota)
    return batch_selection(inputs, *drawn)


@register("coreset", "greedy k-center on pair differences", uses_labelled=True)
def _coreset(inputs: SelectionInputs, k: int) -> Selection:
    """Repeatedly take the available pair farthest from every centre so far (labelled pairs
    are the first centres; without them, a seeded random pair). A comparison does not depend
    on its orientation, so the distance of d_k to a centre c is min ||d_k -+ d_c||, and
    ||d_k - d_c||^2 = ||d_k||^2 + ||d_c||^2 - 2 |d_k.d_c| with d_k.d_c = (Phi d_c)_i -
    (Phi d_c)_j: per-response quantities only, no (P, d) array. The features are read times
    the power of two that brings the largest into [1/2, 1): exact, so the picks are those of
    any scale, and no square of an extreme feature overflows or underflows (every distance
    would tie at inf or 0)."""
    scale = _design.feature_scale(inputs.features)
    f = inputs.features64 * scale
    i, j = inputs.pairs[:, 0].long(), inputs.pairs[:, 1].long()
    norms = _launch.pair_quadform(inputs.features, inputs.pairs, None, 1.0, feature_scale=scale)
    nearest = torch.full_like(norms, torch.inf)

    def absorb(centres: torch.Tensor) -> None:
        """Lower every pair's distance to its nearest centre by the given (c, d) differences."""
        for block in torch.split(centres, _CENTRE_BLOCK):
            projection = thread_stable_mm(f, block.T)  # (n, b)
            # in place where the rounding allows: a step's single centre makes every (P, b)
            # temporary a pass over the pool
            dots = projection[i].sub_(projection[j]).abs_().mul_(2)  # (P, b), 2 |d_k . d_c|
            distance = torch.add(norms[:, None], (block * block).sum(dim=1)[None, :])
            distance.sub_(dots).clamp_min_(0)
            closest = distance[:, 0] if distance.shape[1] == 1 else distance.min(dim=1).values
            torch.minimum(nearest, closest, out=nearest)

    pool = inputs.pool
    available = inputs.available.clone()
    chosen: list[int] = []
    rows: list[torch.Tensor] = []
    count = None if inputs.quota is None else QuotaCount(inputs.quota, inputs.pairs)

    def take(position: int, row: torch.Tensor) -> None:
        chosen.append(position)
        rows.append(row)
        local = pool.local(position)
        if local is not None:
            available[local] = False
        if count is not None:
            available[count.take(row)] = False
        absorb((f[row[0].long()] - f[row[1].long()])[None, :])

    if inputs.labelled is not None and inputs.labelled.shape[0]:
        absorb(f[inputs.labelled[:, 0].long()] - f[inputs.labelled[:, 1].long()])
    elif k:
        first, row = pool.draw(inputs.pairs, np.random.default_rng(inputs.seed), available, None)
        take(int(first[0]), row[0])
    while len(chosen) < k:
        if count is not None:
            count.check_room(int(pool.total(available.sum())), len(chosen), k)
        take(*pool.best(inputs.pairs, torch.where(available, nearest, -torch.inf)))
    indices = torch.tensor(chosen, dtype=torch.int64, device=inputs.pairs.device)
    picked = torch.stack(rows) if rows else inputs.pairs[:0]
    return batch_selection(inputs, indices, picked)
