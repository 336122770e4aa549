"""Core-set selection: greedy k-center on the pair differences d_k = phi_i - phi_j."""

from __future__ import annotations

import numpy as np
import torch

from ._pool import Pool
from .kernels import quadforms64

# centres whose projections are computed in one matrix product (bounds the (n, block) buffer)
_CENTRE_BLOCK = 256


def coreset(pool: Pool, k: int) -> torch.Tensor:
    """Repeatedly take the available pair farthest from every centre so far (labelled pairs
    are the first centres; without them, a seeded random pair). A comparison does not depend
    on its orientation, so the distance of d_k to a centre c is min ||d_k -+ d_c||, and
    ||d_k - d_c||^2 = ||d_k||^2 + ||d_c||^2 - 2 d_k.d_c with d_k.d_c = (Phi d_c)_i - (Phi d_c)_j:
    per-response quantities only, no (P, d) array."""
    f = pool.features.double()
    i, j = pool.pairs[:, 0].long(), pool.pairs[:, 1].long()
    norms = quadforms64(pool.features, pool.pairs, None, 1.0)
    nearest = torch.full_like(norms, torch.inf)

    def absorb(centres: torch.Tensor) -> None:
        """Lower every pair's distance to its nearest centre by the given (c, d) differences."""
        for block in centres.split(_CENTRE_BLOCK):
            projection = f @ block.T  # (n, b)
            dots = (projection[i] - projection[j]).abs()  # (P, b)
            distance = norms[:, None] + (block * block).sum(dim=1)[None, :] - 2 * dots
            torch.minimum(nearest, distance.clamp_min(0).min(dim=1).values, out=nearest)

    available = torch.ones_like(norms, dtype=torch.bool)
    if pool.excluded is not None:
        available &= ~pool.excluded
    chosen = []
    if pool.labelled is not None and pool.labelled.shape[0]:
        absorb(f[pool.labelled[:, 0].long()] - f[pool.labelled[:, 1].long()])
    elif k:
        candidates = torch.nonzero(available).reshape(-1).cpu().numpy()
        first = int(np.random.default_rng(pool.seed).choice(candidates))
        chosen.append(first)
        available[first] = False
        absorb((f[i[first]] - f[j[first]])[None, :])
    while len(chosen) < k:
        score = torch.where(available, nearest, -torch.inf)
        best = int(torch.argmax(score))  # first maximum: ties to the lowest index
        chosen.append(best)
        available[best] = False
        absorb((f[i[best]] - f[j[best]])[None, :])
    return torch.tensor(chosen, dtype=torch.int64, device=pool.pairs.device)
