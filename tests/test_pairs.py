"""Candidate pools against brute-force enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from activerm_fast import pairs
from activerm_fast.data import pairs as pairs_module


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
@pytest.mark.parametrize("beyond_limit", [False, True])
def test_cross_prompt_is_uniform(num, beyond_limit, monkeypatch):
    if beyond_limit:  # the draw NumPy's hypergeometric cannot make, forced here on a small pool
        monkeypatch.setattr(pairs_module, "_HYPERGEOMETRIC_LIMIT", 0)
        monkeypatch.setattr(pairs_module, "_BLOCK_PAIRS", 2)
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


def test_block_draws_beyond_the_hypergeometric_limit_are_hypergeometric(monkeypatch):
    # left-out pairs drawn directly: each block's count is still hypergeometric
    monkeypatch.setattr(pairs_module, "_HYPERGEOMETRIC_LIMIT", 0)
    sizes = np.array([3, 5, 2, 7], dtype=np.int64)
    draws = np.array([pairs_module._block_draws(sizes, 6, seed) for seed in range(4000)])
    assert np.all(draws.sum(axis=1) == 6) and np.all(draws <= sizes)
    observed = np.bincount(draws[:, 1], minlength=6)
    expected = 4000 * stats.hypergeom(17, 5, 6).pmf(np.arange(6))
    keep = expected > 5
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert chi2 < stats.chi2.ppf(0.9999, keep.sum() - 1), chi2


def test_cross_prompt_draws_a_billion_pairs_in_shards():
    # more than NumPy's hypergeometric takes (sum(colors) < 1e9): one rank's part of 10^9 + 5
    ids = np.arange(100_000) // 2
    draws = pairs_module._block_draws(np.full(16384, 10**5, dtype=np.int64), 10**9 + 5, 3)
    assert int(draws.sum()) == 10**9 + 5
    part = pairs.cross_prompt(ids, 10**9 + 5, seed=1, shard=(7, 4096))
    assert 200_000 < len(part) < 290_000  # 4 of 16384 blocks of about 61 000 pairs
    assert np.all(part[:, 0] < part[:, 1]) and np.all(ids[part[:, 0]] != ids[part[:, 1]])
    numbers = part[:, 0] * 100_000 + part[:, 1]
    assert np.all(np.diff(numbers) > 0)  # distinct and sorted
    following = pairs.cross_prompt(ids, 10**9 + 5, seed=1, shard=(8, 4096))
    assert following[0, 0] * 100_000 + following[0, 1] > numbers[-1]


def test_pools_beyond_memory_are_refused_up_front(monkeypatch):
    monkeypatch.setattr(pairs_module, "available_memory", lambda: 2**30)
    with pytest.raises(ValueError, match=r"n = 10000000 gives 49999995000000 pairs, which need "):
        pairs.all_pairs(10**7)
    with pytest.raises(ValueError, match=r"up to 100000 to one prompt\) gives 4999950000 pairs"):
        pairs.within_prompt(np.zeros(100_000, dtype=np.int64))
    with pytest.raises(ValueError, match=r"shard 0 of 2 of the within-prompt pairs"):
        pairs.within_prompt(np.zeros(100_000, dtype=np.int64), shard=(0, 2))
    ids = np.arange(100_000)
    with pytest.raises(
        ValueError, match=r"num = 100000000 gives 100000000 pairs, which need 2400000000 bytes"
    ):
        pairs.cross_prompt(ids, 10**8)
    with pytest.raises(ValueError, match=r"^--pool-size = 100000000 gives .* lower --pool-size"):
        pairs.candidate_pool(ids, "cross", 10**8, name="--pool-size")
    assert len(pairs.cross_prompt(ids, 10**8, shard=(1, 8))) > 10**7  # a shard fits
    with pytest.raises(ValueError, match="num = 4000000000 gives 4000000000 pairs"):
        pairs.cross_prompt(ids, 4 * 10**9)  # no NumPy "sum(colors)" message
