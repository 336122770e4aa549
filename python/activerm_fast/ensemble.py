"""Strategies that use the disagreement or the features of every ensemble member."""

from __future__ import annotations

import math

import torch

from ._pool import Pool
from .kernels import Selection


def bald(pool: Pool, k: int) -> torch.Tensor:
    """Top k of the mutual information between a pair's label and the ensemble member:
    H(mean_e p_e) - mean_e H(p_e), with p_e = sigma(r_e,i - r_e,j)."""
    gaps = pool.reward_gaps()
    members = gaps.shape[0]
    if members < 2:
        raise ValueError(
            f"strategy 'bald' needs rewards of an ensemble of at least 2 members, got {members}"
        )
    p = torch.sigmoid(gaps)
    # member entropies from the logits, so they stay exact where p rounds to 0 or 1
    member_entropy = p * torch.nn.functional.softplus(-gaps) + (
        1 - p
    ) * torch.nn.functional.softplus(gaps)
    mean_p = p.mean(dim=0)
    entropy_of_mean = -torch.special.xlogy(mean_p, mean_p) - torch.special.xlogy(
        1 - mean_p, 1 - mean_p
    )
    return pool.top(entropy_of_mean - member_entropy.mean(dim=0), k)


def ensemble_dopt_greedy(pool: Pool, k: int) -> Selection:
    """Greedy maximisation of sum_e log det(F0_e + sum_S w_e,k d_e,k d_e,k^T).

    Every member keeps its own rank-one state (F_e^-1 and the scores q_e over the pool) in its
    own features and Fisher weights; a pair's gain is the sum of the members' gains. F0_e is
    past-aware: lambda I plus the labelled pairs' information under member e.
    """
    members = pool.need_rewards().shape[0]
    if len(pool.members) not in (1, members):
        raise ValueError(
            f"features have {len(pool.members)} ensemble members but rewards have {members}"
        )
    i, j = pool.pairs[:, 0].long(), pool.pairs[:, 1].long()
    states, logdet = [], 0.0
    for e in range(members):
        features = pool.member_features(e)
        start = pool.prior(past=True, member=e)
        q = start.quadforms(features, pool.pairs)
        if pool.excluded is not None:
            q.masked_fill_(pool.excluded, math.nan)
        states.append((features.double(), pool.weights(pool.pairs, e), q, start.inverse.clone()))
        logdet += start.logdet
    chosen, gains = [], []
    for _ in range(k):
        score = sum(torch.log1p(w * q) for _, w, q, _ in states)
        best = int(torch.argmax(torch.nan_to_num(score, nan=-math.inf)))  # first max: lowest index
        gain = 0.0
        for features, w, q, inverse in states:
            diff = features[i[best]] - features[j[best]]
            u = inverse @ diff
            q_star = float(diff @ u)
            gain += math.log1p(float(w[best]) * q_star)
            c = float(w[best]) / (1.0 + float(w[best]) * q_star)
            v = features @ u
            q -= c * (v[i] - v[j]) ** 2
            q[best] = math.nan
            inverse -= c * torch.outer(u, u)
        chosen.append(best)
        gains.append(gain)
        logdet += gain
    device = pool.pairs.device
    return Selection(
        torch.tensor(chosen, dtype=torch.int64, device=device),
        torch.tensor(gains, dtype=torch.float64, device=device),
        logdet,
    )
