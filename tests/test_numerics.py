"""The greedy engine at every scale against an exact greedy in 400-digit arithmetic.

Features of magnitude 1e6 in float32, 1e150 or 1e-30 in float64, weights of 1e300 and
rank-deficient features used to give NaN or wrong log-determinants (the plain update of F^-1
loses every digit once the chosen pairs' information exceeds the prior by 1/epsilon). The
engine keeps a square-root factor, rescales features by a power of two and recomputes its state
from the chosen pairs when running scores drift; here its picks must be the exact greedy's and
its log det must agree to 1e-8.

One regime stays out of reach of float64: features exactly confined to a subspace whose squared
scale exceeds the prior by more than ~1e32. Once that subspace is explored, the true scores of
the pairs in it are O(1) while float64 cannot tell their components outside it from rounding
(which 1 / prior magnifies past 1e0), so the later picks are decided by rounding.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest

import activerm_fast as arm

DIGITS = 400  # the information / prior ratios below reach 1e310


def exact_greedy(features, pairs, k, weights, ridge):
    """Greedy log det with every gain solved afresh in DIGITS-digit arithmetic."""
    with mp.workdps(DIGITS):
        f = np.asarray(features, dtype=np.float64)
        d = f.shape[1]
        diffs = [
            mp.matrix([mp.mpf(float(f[i, a])) - mp.mpf(float(f[j, a])) for a in range(d)])
            for i, j in pairs
        ]
        w = [mp.mpf(float(x)) for x in weights]
        matrix = mp.eye(d) * mp.mpf(ridge)
        available = list(range(len(pairs)))
        chosen = []
        for _ in range(k):
            inverse = matrix**-1
            gains = [mp.log(1 + w[p] * (diffs[p].T * inverse * diffs[p])[0]) for p in available]
            best = available[max(range(len(available)), key=lambda m: (gains[m], -m))]
            chosen.append(best)
            available.remove(best)
            matrix += w[best] * diffs[best] * diffs[best].T
        return chosen, float(mp.log(mp.det(matrix)))


def problem(seed, n=24, d=4, count=80, rank_deficient=False):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d))
    if rank_deficient:  # rank 2, exactly: dyadic columns a, b, a + b, a - b
        a, b = np.round(rng.normal(size=(2, n)) * 1024) / 1024
        features = np.stack([a, b, a + b, a - b], axis=1)
    i, j = np.triu_indices(n, k=1)
    keep = rng.choice(len(i), size=count, replace=False)
    return features, np.stack([i[keep], j[keep]], axis=1), rng.uniform(0.05, 0.25, size=count)


CASES = [
    # (features scale, dtype, weight scale, ridge, k, rank deficient)
    (1e6, np.float32, 1.0, 1e-3, 16, False),  # k = 4 d in float32
    (1e150, np.float64, 1.0, 1e-3, 10, False),
    (1e-30, np.float64, 1.0, 1e-3, 10, False),
    (1.0, np.float64, 1e300, 1e-3, 10, False),
    (1.0, np.float64, 1.0, 1e-300, 10, False),
    (1.0, np.float64, 1.0, 1e-3, 10, True),
    (1e6, np.float32, 1.0, 1e-3, 10, True),
]


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=lambda c: f"x{c[0]:g}-{np.dtype(c[1]).name}-w{c[2]:g}-l{c[3]:g}{'-rank2' * c[5]}",
)
def test_greedy_matches_exact_arithmetic_at_every_scale(case):
    scale, dtype, weight_scale, ridge, k, rank_deficient = case
    features, pairs, weights = problem(7, rank_deficient=rank_deficient)
    features = (features * scale).astype(dtype)
    weights = weights * weight_scale
    got = arm.greedy_logdet(features, pairs, k, weights=weights, prior=ridge)
    want_chosen, want_logdet = exact_greedy(features, pairs, k, weights, ridge)
    assert got.indices.tolist() == want_chosen
    assert got.logdet == pytest.approx(want_logdet, rel=1e-8)
    assert np.isfinite(got.gains).all()


def hidden_best(seed):
    """A dominant pair D (|d|^2 = 1e12 against a ridge of 1), four pairs B of 0.9 D plus a small
    perpendicular part e (e^2 in 1.81e-4..1.83e-4) and one pair A perpendicular to both. After D
    is chosen, B's true scores are 0.81 + e^2, but their running values come from downdating
    8.1e11 and land on its rounding grid (spacing 1.2e-4), here at 0.81 + 1.807e-4; A's score
    0.81 + 1.8085e-4, which no downdate touched, is exact, above the B's running values and
    below their true ones. Only the check that the choice's score fell below
    1e-10 of D's (the running scores cannot be trusted there) finds the best B; the drift check
    of the chosen pair alone passes A."""
    rng = np.random.default_rng(seed)
    rows = [np.zeros(3), np.array([1e6, 0.0, 0.0])]
    rows += [np.array([0.9e6, np.sqrt(e2), 0.0]) for e2 in rng.uniform(1.81e-4, 1.83e-4, size=4)]
    rows.append(np.array([0.0, 0.0, np.sqrt(0.81 + 1.8085e-4)]))
    features = np.stack(rows)
    return features, np.array([[0, j] for j in range(1, len(rows))])


def drifting(seed):
    """A dominant pair D (|d|^2 = 1e9 against a ridge of 1) and four pairs B of 0.9 D plus a
    perpendicular part e (e^2 in 1e-7..5e-7). After D, the B's true scores 0.81 + e^2 differ by
    about 1e-7, as much as the rounding of their running values (downdated from 8.1e8): no
    score fell below 1e-10 of D's, so only the chosen pair's drift check (1e-9 relative) tells
    the engine to recompute before it takes a B."""
    rng = np.random.default_rng(seed)
    top = np.sqrt(1e9)
    rows = [np.zeros(3), np.array([top, 0.0, 0.0])]
    rows += [np.array([0.9 * top, np.sqrt(e2), 0.0]) for e2 in rng.uniform(1e-7, 5e-7, size=4)]
    features = np.stack(rows)
    return features, np.array([[0, j] for j in range(1, len(rows))])


@pytest.mark.parametrize("make", [hidden_best, drifting])
@pytest.mark.parametrize("seed", range(12))
def test_untrustworthy_running_scores_are_recomputed_before_a_choice(make, seed):
    features, pairs = make(seed)
    weights = np.ones(len(pairs))
    got = arm.greedy_logdet(features, pairs, 3, weights=weights, prior=1.0)
    want_chosen, want_logdet = exact_greedy(features, pairs, 3, weights, 1.0)
    assert got.indices.tolist() == want_chosen
    assert got.logdet == pytest.approx(want_logdet, rel=1e-12)
