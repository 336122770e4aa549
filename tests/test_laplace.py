"""The Bayesian last layer (model/laplace.py): the Laplace posterior covariance of theta from
the labelled pairs' Fisher information against a float64 inverse, the variance of a reward
difference, the Gaussian BALD term against numerical integration, and ``uncertainty="laplace"``
in bald, bal-pm and the per-prompt rules (one member suffices), compared with the ensemble's
spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import activerm_fast as arm
from activerm_fast.model import laplace
from activerm_fast.selection import field_rules
from activerm_fast.selection.api import validated
from activerm_fast.testing import reference


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_covariance_and_difference_variance_match_float64(seed, dtype):
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(5, 40)), int(rng.integers(1, 9))
    features = rng.normal(size=(n, d)).astype(dtype)
    rewards = rng.normal(scale=2.0, size=(int(rng.integers(1, 4)), n))
    labelled = arm.pairs.all_pairs(n)[rng.choice(n * (n - 1) // 2, min(30, n), replace=False)]
    ridge = float(10.0 ** rng.uniform(-2, 1))
    got = laplace.laplace_covariance(
        torch.from_numpy(features), torch.from_numpy(labelled), torch.from_numpy(rewards), ridge
    )
    want = reference.laplace_covariance(features, labelled, rewards, ridge)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    pool = arm.pairs.all_pairs(n)
    variance = laplace.difference_variance(
        torch.from_numpy(features), torch.from_numpy(pool), got
    ).numpy()
    diffs = reference.pair_diff(features, pool)
    np.testing.assert_allclose(
        variance, np.einsum("pi,ij,pj->p", diffs, want, diffs), rtol=1e-8, atol=1e-14
    )
    # the difference's variance is not the sum of two independent widths
    single = np.einsum("ni,ij,nj->n", features.astype(float), want, features.astype(float))
    assert not np.allclose(variance, single[pool[:, 0]] + single[pool[:, 1]])


def test_no_labelled_pairs_leave_the_prior():
    features = torch.randn(6, 3)
    got = laplace.laplace_covariance(features, None, torch.zeros(1, 6), 0.5)
    torch.testing.assert_close(got, torch.eye(3, dtype=torch.float64) * 2.0)


@pytest.mark.parametrize(("mean", "variance"), [(0.0, 0.0), (0.0, 1.0), (1.5, 0.3), (-4.0, 9.0)])
def test_gaussian_mutual_information_is_the_integral(mean, variance):
    got = laplace.gaussian_mutual_information(
        torch.tensor([mean], dtype=torch.float64), torch.tensor([variance], dtype=torch.float64)
    )
    assert float(got[0]) == pytest.approx(
        reference.gaussian_mutual_information(mean, variance), abs=1e-6
    )


def problem(seed=0):
    rng = np.random.default_rng(seed)
    prompt_ids = np.repeat(np.arange(10), 5)
    features = rng.normal(size=(50, 4))
    rewards = features @ rng.normal(size=4)
    pool = arm.pairs.within_prompt(prompt_ids)
    labelled = pool[::7]
    return rng, prompt_ids, features, rewards, pool, labelled


def test_bald_with_a_laplace_head_ranks_the_gaussian_information():
    rng, prompt_ids, features, rewards, pool, labelled = problem()
    batch = arm.select(
        "bald",
        features=features,
        pairs=pool,
        k=8,
        rewards=rewards,
        labelled=labelled,
        uncertainty="laplace",
        ridge=0.1,
    )
    covariance = reference.laplace_covariance(features, labelled, rewards[None], 0.1)
    diffs = reference.pair_diff(features, pool)
    variance = np.einsum("pi,ij,pj->p", diffs, covariance, diffs)
    gap = rewards[pool[:, 0]] - rewards[pool[:, 1]]
    info = np.array(
        [
            reference.gaussian_mutual_information(m, s, points=20_001)
            for m, s in zip(gap, variance, strict=True)
        ]
    )
    labelled_rows = {tuple(p) for p in labelled.tolist()}
    info[[tuple(p) in labelled_rows for p in pool.tolist()]] = -np.inf
    want = np.argsort(-info, kind="stable")[:8]
    assert sorted(np.asarray(batch.indices).tolist()) == sorted(want.tolist())


@pytest.mark.parametrize("strategy", ["bal-pm", "dts", "deltaucb", "infomax", "maxminlcb"])
def test_uncertainty_strategies_run_on_one_member_with_a_laplace_head(strategy):
    rng, prompt_ids, features, rewards, pool, labelled = problem(1)
    options = dict(features=features, pairs=pool, k=6, rewards=rewards, labelled=labelled)
    with pytest.raises(ValueError, match="ensemble of at least 2 members, got 1"):
        arm.select(strategy, prompt_ids=prompt_ids, **options)
    batch = arm.select(strategy, prompt_ids=prompt_ids, uncertainty="laplace", **options)
    assert len(set(np.asarray(batch.indices).tolist())) == 6


def test_rules_see_the_laplace_width_of_each_reward():
    rng, prompt_ids, features, rewards, pool, labelled = problem(2)
    inputs = validated(
        "dts",
        features=features,
        pairs=pool,
        k=1,
        rewards=rewards,
        labelled=labelled,
        prompt_ids=prompt_ids,
        uncertainty="laplace",
        ridge=0.3,
    )
    mu, sigma = field_rules.moments(inputs)
    covariance = reference.laplace_covariance(features, labelled, rewards[None], 0.3)
    np.testing.assert_allclose(mu, rewards)
    np.testing.assert_allclose(
        sigma, np.sqrt(np.einsum("ni,ij,nj->n", features, covariance, features)), rtol=1e-9
    )


def test_laplace_and_ensemble_spread_both_fall_with_labels():
    """Compared with the ensemble's spread: both widths shrink on directions the labelled pairs
    cover (here, as labels are added along one feature axis)."""
    rng = np.random.default_rng(4)
    features = rng.normal(size=(40, 3))
    pool = arm.pairs.all_pairs(40)
    few, many = pool[:5], pool[:400]
    rewards = features[:, 0]
    widths = []
    for labelled in (few, many):
        covariance = laplace.laplace_covariance(
            torch.from_numpy(features),
            torch.from_numpy(labelled),
            torch.from_numpy(rewards[None]),
            1.0,
        )
        widths.append(
            laplace.difference_variance(
                torch.from_numpy(features), torch.from_numpy(pool), covariance
            ).mean()
        )
    assert widths[1] < widths[0]


def test_unknown_uncertainty_is_a_one_line_error():
    rng, prompt_ids, features, rewards, pool, labelled = problem()
    with pytest.raises(ValueError, match="^unknown uncertainty .dropout.; choose one of") as info:
        arm.select(
            "bald", features=features, pairs=pool, k=2, rewards=rewards, uncertainty="dropout"
        )
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="strategy 'bald' needs rewards, got rewards=None"):
        arm.select("bald", features=features, pairs=pool, k=2, uncertainty="laplace")


def test_pairwise_rules_take_the_width_of_the_difference_with_a_laplace_head():
    """deltaucb with a Laplace head: the ordered pair maximising mu_i - mu_j + S_ij, S_ij =
    sqrt(d_ij^T Sigma d_ij), prompt by prompt (one prompt here)."""
    rng = np.random.default_rng(6)
    features = rng.normal(size=(6, 3))
    rewards = rng.normal(size=6)
    pairs = arm.pairs.all_pairs(6)
    labelled = pairs[:4]
    batch = arm.select(
        "deltaucb",
        features=features,
        pairs=pairs,
        k=1,
        rewards=rewards,
        labelled=labelled,
        uncertainty="laplace",
        ridge=0.5,
    )
    covariance = reference.laplace_covariance(features, labelled, rewards[None], 0.5)
    labelled_rows = {tuple(p) for p in labelled.tolist()}
    best, pick = -np.inf, None
    for i in range(6):
        for j in range(6):
            if i == j or (min(i, j), max(i, j)) in labelled_rows:
                continue
            d = features[i] - features[j]
            value = rewards[i] - rewards[j] + np.sqrt(d @ covariance @ d)
            if value > best:
                best, pick = value, (min(i, j), max(i, j))
    assert tuple(pairs[int(np.asarray(batch.indices)[0])]) == pick
