"""synthetic(kind="realistic"): power-law spectrum, unequal clusters, near-duplicates, a reward
on a few directions; spectrum_exponent; the isotropic generator kept as an option."""

from __future__ import annotations

import numpy as np
import pytest

from activerm_fast import data

SMALL = {"num_train_prompts": 60, "num_test_prompts": 10, "test_responses_per_prompt": 20}


def test_spectrum_follows_the_requested_exponent(rng):
    exponent = float(rng.uniform(0.4, 1.5))
    dataset = data.synthetic(
        kind="realistic", dim=16, exponent=exponent, seed=int(rng.integers(1 << 30))
    )
    assert abs(data.spectrum_exponent(dataset.embeddings) - exponent) < 0.15


@pytest.mark.parametrize("rows", [3, 50])
def test_spectrum_exponent_of_identical_rows_is_refused(rows):
    for x in (np.zeros((rows, 4)), np.tile(np.arange(4.0), (rows, 1))):
        with pytest.raises(ValueError, match="embeddings has no variance: every row is the same"):
            data.spectrum_exponent(x)


def test_spectrum_exponent_recovers_a_power_law(rng):
    exponent, dim = float(rng.uniform(0.3, 2.0)), int(rng.integers(8, 40))
    scales = np.arange(1, dim + 1) ** (-exponent / 2)
    basis, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    x = (rng.normal(size=(20_000, dim)) * scales) @ basis.T
    assert abs(data.spectrum_exponent(x, variance=0.99) - exponent) < 0.1


def test_the_default_exponent_is_arena_benchs():
    fitted = data.spectrum_exponent(data.load("arena-bench").embeddings)
    assert abs(fitted - data.ARENA_BENCH_EXPONENT) < 0.005


def test_clusters_have_unequal_sizes_and_test_prompts_the_asked_size(rng):
    dataset = data.synthetic(kind="realistic", **SMALL, seed=int(rng.integers(1 << 30)))
    sizes = np.bincount(dataset.prompt_ids)
    train_sizes, test_sizes = sizes[:60], sizes[60:]
    assert train_sizes.min() >= 2 and len(set(train_sizes.tolist())) > 3
    assert (test_sizes == 20).all()
    assert dataset.test().num_prompts == 10


def near_duplicate_share(dataset: data.Dataset) -> float:
    """Share of rows with another row of their prompt closer than 5% of the prompt's median
    within-prompt distance."""
    near = 0
    for prompt in range(dataset.num_prompts):
        x = dataset.embeddings[dataset.prompt_ids == prompt].astype(np.float64)
        distance = np.linalg.norm(x[:, None] - x[None], axis=2)
        typical = np.median(distance[np.triu_indices(len(x), 1)])
        np.fill_diagonal(distance, np.inf)
        near += int((distance.min(axis=1) < 0.05 * typical).sum())
    return near / dataset.n


def test_near_duplicates_appear_at_the_asked_rate(rng):
    seed = int(rng.integers(1 << 30))
    fraction = float(rng.uniform(0.15, 0.35))
    dupes = data.synthetic(kind="realistic", **SMALL, duplicate_fraction=fraction, seed=seed)
    # a duplicate and its source are both close to each other: about 1.5 to 2 rows per copy
    assert fraction < near_duplicate_share(dupes) < 2.2 * fraction
    clean = data.synthetic(kind="realistic", **SMALL, duplicate_fraction=0.0, seed=seed)
    assert near_duplicate_share(clean) < 0.02


def test_the_golden_reward_depends_on_a_few_directions(rng):
    seed, directions = int(rng.integers(1 << 30)), int(rng.integers(1, 5))
    options = {"kind": "realistic", "dim": 12, "reward_directions": directions, "seed": seed}
    linear = data.synthetic(**SMALL, linear=True, **options)
    x = np.c_[linear.embeddings.astype(np.float64), np.ones(linear.n)]
    coef, *_ = np.linalg.lstsq(x, linear.gold, rcond=None)
    assert np.allclose(x @ coef, linear.gold, atol=1e-4)
    # the same draws with tanh: a function of the same projections that no linear model fits
    curved = data.synthetic(**SMALL, **options)
    residual = curved.gold - x @ np.linalg.lstsq(x, curved.gold, rcond=None)[0]
    assert residual.std() > 0.05
    # tanh of the same few projections: the curved reward rises with the linear one
    assert np.corrcoef(linear.gold, curved.gold)[0, 1] > 0.5


def test_realistic_data_is_deterministic_per_seed(rng):
    seed = int(rng.integers(1 << 30))
    first = data.synthetic(kind="realistic", **SMALL, seed=seed)
    again = data.synthetic(kind="realistic", **SMALL, seed=seed)
    np.testing.assert_array_equal(first.embeddings, again.embeddings)
    np.testing.assert_array_equal(first.gold, again.gold)
    np.testing.assert_array_equal(first.prompt_ids, again.prompt_ids)
    other = data.synthetic(kind="realistic", **SMALL, seed=seed + 1)
    assert other.n != first.n or not np.allclose(other.gold, first.gold)
    assert np.isclose(first.gold.std(), 1.0)


def test_prompt_features_are_each_prompts_mean_row(rng):
    dataset = data.synthetic(kind="realistic", **SMALL, seed=int(rng.integers(1 << 30)))
    features = dataset.prompt_features()
    assert features.shape == (dataset.num_prompts, dataset.dim)
    prompt = int(rng.integers(dataset.num_prompts))
    rows = dataset.embeddings[dataset.prompt_ids == prompt]
    np.testing.assert_allclose(features[prompt], rows.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_invalid_options_are_refused():
    with pytest.raises(ValueError, match=r"kind must be one of \('isotropic', 'realistic'\)"):
        data.synthetic(kind="gaussian")
    with pytest.raises(ValueError, match="exponent must be a finite number >= 0, got -1"):
        data.synthetic(kind="realistic", exponent=-1)
    with pytest.raises(ValueError, match=r"duplicate_fraction must be in \[0, 1\), got 1"):
        data.synthetic(kind="realistic", duplicate_fraction=1)
    with pytest.raises(ValueError, match=r"reward_directions must be at most dim \(4\), got 5"):
        data.synthetic(kind="realistic", dim=4, reward_directions=5)
    with pytest.raises(ValueError, match="exponent only apply to kind='realistic'"):
        data.synthetic(exponent=1.0)
    with pytest.raises(ValueError, match=r"variance must be in \(0, 1\], got 0"):
        data.spectrum_exponent(np.eye(5), variance=0)
    with pytest.raises(ValueError, match="at least 3 rows"):
        data.spectrum_exponent(np.ones((2, 4)))
