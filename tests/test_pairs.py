"""Candidate pools against brute-force enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from activerm_fast import pairs


def brute_force(prompt_ids, same: bool) -> set[tuple[int, int]]:
    ids = list(prompt_ids)
    return {
        (i, j) for i, j in itertools.combinations(range(len(ids)), 2) if (ids[i] == ids[j]) == same
    }


@pytest.mark.parametrize("n", [0, 1, 2, 7, 60])
def test_all_pairs(n):
    got = pairs.all_pairs(n)
    assert got.shape == (n * (n - 1) // 2, 2) and got.dtype == np.int64
    assert {tuple(r) for r in got.tolist()} == set(itertools.combinations(range(n), 2))


def test_within_prompt_matches_brute_force(rng):
    ids = rng.integers(0, 12, size=80)
    got = pairs.within_prompt(ids)
    assert got.dtype == np.int64 and np.all(got[:, 0] < got[:, 1])
    assert [tuple(r) for r in got.tolist()] == sorted(brute_force(ids, same=True))


def test_within_prompt_accepts_strings_and_singletons():
    ids = np.array(["b", "a", "b", "c", "a", "b"])
    assert pairs.within_prompt(ids).tolist() == [[0, 2], [0, 5], [1, 4], [2, 5]]
    assert pairs.within_prompt(np.arange(5)).shape == (0, 2)


def test_cross_prompt_is_distinct_valid_and_seeded(rng):
    ids = rng.integers(0, 30, size=400)
    got = pairs.cross_prompt(ids, 5000, seed=4)
    assert got.shape == (5000, 2) and got.dtype == np.int64
    assert np.all(got[:, 0] < got[:, 1])
    assert np.all(ids[got[:, 0]] != ids[got[:, 1]])
    assert len(np.unique(got[:, 0] * 400 + got[:, 1])) == 5000
    np.testing.assert_array_equal(got, pairs.cross_prompt(ids, 5000, seed=4))
    assert not np.array_equal(got, pairs.cross_prompt(ids, 5000, seed=5))


@pytest.mark.parametrize("num", [6, 20])  # sparse (rejection) and dense (enumeration) paths
def test_cross_prompt_is_uniform(num):
    ids = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])
    universe = sorted(brute_force(ids, same=False))
    counts = dict.fromkeys(universe, 0)
    draws = 3000
    for seed in range(draws):
        for row in pairs.cross_prompt(ids, num, seed=seed).tolist():
            counts[tuple(row)] += 1
    expected = draws * num / len(universe)
    observed = np.array(list(counts.values()))
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.ppf(0.9999, len(universe) - 1), chi2


def test_cross_prompt_all_and_too_many():
    ids = np.array([0, 0, 1, 2])
    everything = pairs.cross_prompt(ids, 5)
    assert [tuple(r) for r in everything.tolist()] == sorted(brute_force(ids, same=False))
    with pytest.raises(
        ValueError,
        match="num = 6 is larger than the 5 cross-prompt pairs of 4 responses to 3 prompts",
    ):
        pairs.cross_prompt(ids, 6)
    assert pairs.cross_prompt(ids, 0).shape == (0, 2)


def test_pool_errors():
    with pytest.raises(ValueError, match=r"prompt_ids must have shape \(n,\), got \(2, 2\)"):
        pairs.within_prompt(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="prompt_ids must be finite, got nan"):
        pairs.within_prompt(np.array([0.0, np.nan]))
    with pytest.raises(TypeError, match="num must be an integer"):
        pairs.cross_prompt(np.arange(4), 2.0)
    with pytest.raises(ValueError, match="n must be non-negative, got -3"):
        pairs.all_pairs(-3)
