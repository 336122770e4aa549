"""Metrics checked against SciPy and brute-force enumeration on fresh random inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from activerm_fast.model.metrics import BestOfN, best_of_n, pair_accuracy, within_prompt_spearman


def grouped_data(seed: int, num_prompts: int = 12, max_size: int = 7, levels: int | None = None):
    """Random predictions and gold for prompts of 1..max_size responses (ties if ``levels``)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size + 1, num_prompts)
    prompt_ids = rng.permutation(np.repeat(np.arange(num_prompts) * 3 + 5, sizes))
    n = prompt_ids.size
    if levels is None:
        return rng.standard_normal(n), rng.standard_normal(n), prompt_ids
    return (
        rng.integers(0, levels, n).astype(float),
        rng.integers(0, levels, n).astype(float),
        prompt_ids,
    )


def scipy_spearman(pred, gold, prompt_ids):
    values = []
    for p in np.unique(prompt_ids):
        rows = prompt_ids == p
        if np.unique(gold[rows]).size < 2:
            continue
        if np.unique(pred[rows]).size < 2:
            values.append(0.0)  # documented: a constant prediction ranks nothing
            continue
        values.append(spearmanr(pred[rows], gold[rows]).statistic)
    return float(np.mean(values))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [None, 3])
def test_within_prompt_spearman_matches_scipy(seed, levels):
    pred, gold, prompt_ids = grouped_data(seed, levels=levels)
    got = within_prompt_spearman(pred, gold, prompt_ids)
    assert got == pytest.approx(scipy_spearman(pred, gold, prompt_ids), abs=1e-12)


def test_within_prompt_spearman_extremes_and_monotone_invariance():
    pred, gold, prompt_ids = grouped_data(11, max_size=9)
    assert within_prompt_spearman(gold, gold, prompt_ids) == pytest.approx(1.0)
    assert within_prompt_spearman(-gold, gold, prompt_ids) == pytest.approx(-1.0)
    assert within_prompt_spearman(np.exp(pred), gold, prompt_ids) == pytest.approx(
        within_prompt_spearman(pred, gold, prompt_ids)
    )


def brute_force_best_of_n(pred, gold, prompt_ids, n):
    """Average over every N-subset of every prompt, ties in pred split evenly."""
    golds, quantiles = [], []
    for p in np.unique(prompt_ids):
        rows = np.flatnonzero(prompt_ids == p)
        if rows.size < 2:
            continue
        quantile = (rankdata(gold[rows]) - 1) / (rows.size - 1)
        picked_gold, picked_quantile = [], []
        for subset in itertools.combinations(range(rows.size), min(n, rows.size)):
            subset = np.array(subset)
            top = subset[pred[rows][subset] == pred[rows][subset].max()]
            picked_gold.append(gold[rows][top].mean())
            picked_quantile.append(quantile[top].mean())
        golds.append(np.mean(picked_gold))
        quantiles.append(np.mean(picked_quantile))
    return np.mean(golds), np.mean(quantiles)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("levels", [None, 3])
def test_best_of_n_exact_matches_brute_force(seed, levels):
    pred, gold, prompt_ids = grouped_data(seed, levels=levels)
    ns = (1, 2, 3, 5, 100)
    result = best_of_n(pred, gold, prompt_ids, ns=ns)
    assert list(result) == list(ns)
    for n in ns:
        expected_gold, expected_quantile = brute_force_best_of_n(pred, gold, prompt_ids, n)
        assert isinstance(result[n], BestOfN)
        assert result[n].mean_gold == pytest.approx(expected_gold, abs=1e-10)
        assert result[n].mean_quantile == pytest.approx(expected_quantile, abs=1e-10)


def test_best_of_n_sampling_agrees_with_exact_and_is_seeded():
    pred, gold, prompt_ids = grouped_data(5, levels=4)
    exact = best_of_n(pred, gold, prompt_ids, ns=(2, 4))
    sampled = best_of_n(pred, gold, prompt_ids, ns=(2, 4), repeats=4000, seed=3)
    for n in (2, 4):
        assert sampled[n].mean_gold == pytest.approx(exact[n].mean_gold, abs=0.05)
        assert sampled[n].mean_quantile == pytest.approx(exact[n].mean_quantile, abs=0.02)
    assert sampled == best_of_n(pred, gold, prompt_ids, ns=(2, 4), repeats=4000, seed=3)


def test_best_of_n_with_perfect_prediction_reaches_the_best_response():
    pred, gold, prompt_ids = grouped_data(7, max_size=6)
    result = best_of_n(gold, gold, prompt_ids, ns=(1, 2, 4, 6))
    assert result[6].mean_quantile == pytest.approx(1.0)
    means = [result[n].mean_gold for n in (1, 2, 4, 6)]
    assert means == sorted(means)
    assert result[1].mean_quantile == pytest.approx(0.5)  # one random response: median on average


def test_pair_accuracy_matches_a_loop_and_counts_ties_as_half():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 5, 50).astype(float)
    pairs = rng.integers(0, 50, (300, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]  # ties from equal predictions, not self-pairs
    labels = rng.integers(0, 2, len(pairs))
    expected = np.mean(
        [
            0.5 if pred[i] == pred[j] else float((pred[i] > pred[j]) == (y == 1))
            for (i, j), y in zip(pairs, labels, strict=True)
        ]
    )
    assert pair_accuracy(pred, pairs, labels) == pytest.approx(expected)
    assert pair_accuracy(pred, pairs, 1 - labels) == pytest.approx(1 - expected)


def test_metric_errors_name_the_argument():
    pred, gold, prompt_ids = grouped_data(0)
    with pytest.raises(ValueError, match=r"gold must have shape \(n,\)"):
        within_prompt_spearman(pred, gold[:-1], prompt_ids)
    with pytest.raises(ValueError, match=r"prompt_ids must have shape \(n,\)"):
        best_of_n(pred, gold, prompt_ids[:-1])
    with pytest.raises(ValueError, match=r"pred must have shape \(n,\).*mean\(axis=0\)"):
        within_prompt_spearman(np.stack([pred, pred]), gold, prompt_ids)
    with pytest.raises(ValueError, match="pred must be finite, got nan at index 3"):
        within_prompt_spearman(np.where(np.arange(pred.size) == 3, np.nan, pred), gold, prompt_ids)
    with pytest.raises(TypeError, match="prompt_ids must hold integers"):
        within_prompt_spearman(pred, gold, prompt_ids.astype(float))
    with pytest.raises(ValueError, match="no prompt has two responses with different gold"):
        within_prompt_spearman(pred, np.ones_like(gold), prompt_ids)
    with pytest.raises(ValueError, match="ns must hold positive integers, got 0"):
        best_of_n(pred, gold, prompt_ids, ns=(2, 0))
    for one in (2, "24"):  # a single N, or a string of digits, is not a sequence of them
        with pytest.raises(TypeError, match=r"^ns must be a sequence of positive integers, got"):
            best_of_n(pred, gold, prompt_ids, ns=one)
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        best_of_n(pred, gold, prompt_ids, repeats=0)
    with pytest.raises(ValueError, match="at least two responses"):
        best_of_n(pred[:3], gold[:3], np.arange(3))
    with pytest.raises(ValueError, match=r"pairs\[1\] = \(0, 99\) is out of range"):
        pair_accuracy(pred, np.array([[0, 1], [0, 99]]), np.array([1, 0]))
    with pytest.raises(ValueError, match="labels must be 0 or 1, got 2 at index 1"):
        pair_accuracy(pred, np.array([[0, 1], [1, 2]]), np.array([1, 2]))
    with pytest.raises(ValueError, match="pairs is empty"):
        pair_accuracy(pred, np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64))
    # a response against itself has no preference: it counted as a tie, 0.5
    with pytest.raises(
        ValueError, match=r"^pairs\[1\] = \(2, 2\) compares a response with itself$"
    ):
        pair_accuracy(pred, np.array([[0, 1], [2, 2]]), np.array([1, 0]))
