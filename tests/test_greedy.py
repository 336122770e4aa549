"""greedy_logdet against a brute-force greedy that re-solves every gain at every step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import activerm_fast as arm
from activerm_fast import _reference as ref

from conftest import as_kind, random_pairs, to_numpy

# (n, d, P, k): single pair, d > n, all pairs chosen, larger pools
CASES = [(2, 1, 1, 1), (8, 20, 28, 5), (6, 3, 15, 15), (40, 6, 300, 25), (120, 12, 2000, 40)]


def spd(rng, d):
    root = rng.normal(size=(d, d))
    return root @ root.T / d + 0.5 * np.eye(d)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_greedy_matches_brute_force(rng, kind, case, dtype, index_dtype):
    n, d, count, k = case
    features = rng.normal(size=(n, d)).astype(dtype)
    pairs = random_pairs(rng, n, count).astype(index_dtype)
    weights = rng.uniform(0.05, 0.25, size=count)
    got = arm.greedy_logdet(
        as_kind(features, kind), as_kind(pairs, kind), k, weights=as_kind(weights, kind), prior=0.3
    )
    want_indices, want_gains, want_logdet = ref.greedy_logdet(features, pairs, k, weights, 0.3)
    np.testing.assert_array_equal(to_numpy(got.indices), want_indices)
    np.testing.assert_allclose(to_numpy(got.gains), want_gains, rtol=1e-9, atol=1e-12)
    assert got.logdet == pytest.approx(want_logdet, rel=1e-10, abs=1e-9)


@pytest.mark.parametrize("case", CASES[1:])
def test_greedy_with_matrix_prior_and_exclusions(rng, kind, case):
    n, d, count, k = case
    features = rng.normal(size=(n, d))
    pairs = random_pairs(rng, n, count)
    prior = spd(rng, d)
    exclude = rng.random(count) < 0.3
    k = min(k, int((~exclude).sum()))
    got = arm.greedy_logdet(
        as_kind(features, kind),
        as_kind(pairs, kind),
        k,
        prior=as_kind(prior, kind),
        exclude=as_kind(exclude, kind),
    )
    indices = to_numpy(got.indices)
    want_indices, want_gains, want_logdet = ref.greedy_logdet(
        features, pairs, k, None, prior, exclude
    )
    np.testing.assert_array_equal(indices, want_indices)
    assert not exclude[indices].any()
    np.testing.assert_allclose(to_numpy(got.gains), want_gains, rtol=1e-9, atol=1e-12)
    assert got.logdet == pytest.approx(want_logdet, rel=1e-10)


def test_gains_are_nonincreasing_and_logdet_is_slogdet(rng):
    features = rng.normal(size=(200, 16)).astype(np.float32)
    pairs = arm.pairs.cross_prompt(np.repeat(np.arange(40), 5), 3000, seed=1)
    weights = arm.fisher_weights(rng.normal(size=200), pairs)
    sel = arm.greedy_logdet(features, pairs, 60, weights=weights, prior=1e-2)
    assert len(set(sel.indices.tolist())) == 60
    assert np.all(np.diff(sel.gains) <= 1e-12)
    # gains are the sequential log-det increments of the chosen order
    np.testing.assert_allclose(
        sel.gains, ref.sequential_gains(features, pairs, sel.indices, weights, 1e-2), rtol=1e-7
    )
    d = ref.pair_diff(features, pairs)[sel.indices]
    final = 1e-2 * np.eye(16) + d.T @ (weights[sel.indices, None].astype(np.float64) * d)
    assert sel.logdet == pytest.approx(np.linalg.slogdet(final)[1], rel=1e-9)


def test_ties_break_to_lowest_index():
    # four identical differences: every step must take the lowest unchosen index
    features = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    pairs = np.array([[3, 2], [1, 0], [5, 4], [3, 0]])
    sel = arm.greedy_logdet(features, pairs, 4, prior=1.0)
    np.testing.assert_array_equal(sel.indices, [0, 1, 2, 3])


def test_zero_weights_and_k_zero(rng):
    features = rng.normal(size=(10, 3))
    pairs = random_pairs(rng, 10, 20)
    weights = np.zeros(20)
    weights[7] = 0.2
    sel = arm.greedy_logdet(features, pairs, 3, weights=weights, prior=1.0)
    assert sel.indices[0] == 7 and sel.gains[1] == 0.0 and sel.gains[2] == 0.0
    empty = arm.greedy_logdet(features, pairs, 0, prior=2.0)
    assert empty.indices.shape == (0,) and empty.logdet == pytest.approx(3 * np.log(2.0))


def test_float32_features_stay_accurate_over_many_steps(rng):
    # scores are downdated k times; kept in float64 they must still equal a fresh solve
    features = rng.normal(size=(300, 8)).astype(np.float32)
    pairs = random_pairs(rng, 300, 5000)
    sel = arm.greedy_logdet(features, pairs, 150, prior=1e-3)
    want_indices, want_gains, _ = ref.greedy_logdet(features, pairs, 150, None, 1e-3)
    np.testing.assert_array_equal(sel.indices, want_indices)
    np.testing.assert_allclose(sel.gains, want_gains, rtol=1e-8)


SCRIPT = """
import json, sys, numpy as np, activerm_fast as arm
rng = np.random.default_rng(7)
f = rng.normal(size=(3000, 24)).astype(np.float32)
p = arm.pairs.cross_prompt(np.repeat(np.arange(300), 10), 200_000, seed=3).astype(np.int32)
w = arm.fisher_weights(rng.normal(size=3000), p)
s = arm.greedy_logdet(f, p, 50, weights=w)
m = arm.fisher_matrix(f, p, w)
print(json.dumps([arm.build_info()["openmp_threads"], s.indices.tolist(), s.gains.tolist(),
                  s.logdet, m.tolist()]))
"""


def test_identical_results_with_one_and_two_threads():
    results = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        results.append(json.loads(out.stdout))
    assert [r[0] for r in results] == [1, 2]
    assert results[0][1:] == results[1][1:]  # bitwise: same picks, gains, log det, Fisher matrix
