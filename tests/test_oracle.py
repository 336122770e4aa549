"""Label oracles: BT label statistics, order independence, restart safety, stored labels."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from activerm_fast import oracle as oracle_module
from activerm_fast.simulation.oracle import BTOracle, PairLabelOracle


def pairs_with_repeats(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """``count`` random pairs of n responses, a pair possibly drawn more than once."""
    i = rng.integers(0, n, count)
    j = (i + rng.integers(1, n, count)) % n  # never equal to i
    return np.stack([i, j], axis=1)


def test_noiseless_labels_follow_gold_and_ties_are_coins():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 5, 200).astype(float)
    pairs = pairs_with_repeats(rng, 200, 5000)
    labels = BTOracle(gold, beta=np.inf, seed=1).label(pairs)
    assert labels.dtype == np.int64
    g_i, g_j = gold[pairs[:, 0]], gold[pairs[:, 1]]
    decided = g_i != g_j
    np.testing.assert_array_equal(labels[decided], (g_i > g_j)[decided])
    assert 0.4 < labels[~decided].mean() < 0.6


def test_label_frequency_matches_bt_probability():
    # two gold levels: every cross pair has the same win probability
    gold = np.repeat([0.0, 1.0], 400)
    beta = 1.5
    pairs = np.stack(np.meshgrid(np.arange(400, 800), np.arange(400), indexing="ij"), -1)
    pairs = pairs.reshape(-1, 2)[::7]
    oracle = BTOracle(gold, beta=beta, seed=4)
    p = 1.0 / (1.0 + np.exp(-beta * 1.0 / gold.std()))
    np.testing.assert_allclose(oracle.probabilities(pairs), p)
    frequency = oracle.label(pairs).mean()
    assert abs(frequency - p) < 4 * np.sqrt(p * (1 - p) / pairs.shape[0])


def test_labels_are_order_independent_restart_safe_and_seeded():
    rng = np.random.default_rng(2)
    gold = rng.standard_normal(300)
    pairs = pairs_with_repeats(rng, 300, 2000)
    oracle = BTOracle(gold, beta=1.0, seed=9)
    labels = oracle.label(pairs)
    perm = rng.permutation(pairs.shape[0])
    np.testing.assert_array_equal(oracle.label(pairs[perm]), labels[perm])
    np.testing.assert_array_equal(oracle.label(pairs[:, ::-1]), 1 - labels)
    np.testing.assert_array_equal(oracle.label(pairs[:10]), labels[:10])
    restored = pickle.loads(pickle.dumps(oracle))
    np.testing.assert_array_equal(restored.label(pairs), labels)
    other_seed = BTOracle(gold, beta=1.0, seed=10).label(pairs)
    assert 0.2 < (other_seed != labels).mean() < 0.8


@pytest.mark.parametrize("scale", [1e-300, 1e-160, 1e160, 1e300])
def test_bt_oracle_at_any_scale_of_gold_is_the_oracle_of_standardised_gold(scale):
    # the std is taken of gold over its largest magnitude: no square overflows or underflows
    rng = np.random.default_rng(3)
    gold = rng.normal(size=500)
    pairs = rng.integers(0, 500, size=(2000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    want = BTOracle(gold, beta=2.0, seed=4)
    got = BTOracle(gold * scale, beta=2.0, seed=4)
    assert got.scale / scale == pytest.approx(gold.std(), rel=1e-12)
    np.testing.assert_allclose(got.probabilities(pairs), want.probabilities(pairs), rtol=1e-12)
    noiseless = BTOracle(gold * scale, beta=np.inf).label(pairs)
    np.testing.assert_array_equal(noiseless == 1, gold[pairs[:, 0]] > gold[pairs[:, 1]])


def test_bt_oracle_errors_name_the_argument():
    gold = np.arange(5.0)
    with pytest.raises(ValueError, match="beta must be a positive number or inf, got 0"):
        BTOracle(gold, beta=0)
    with pytest.raises(ValueError, match="gold must be finite, got nan at index 2"):
        BTOracle(np.array([0.0, 1.0, np.nan]))
    with pytest.raises(ValueError, match="gold is constant"):
        BTOracle(np.ones(4))
    with pytest.raises(ValueError, match=r"gold must have shape \(n,\) with n >= 2"):
        BTOracle(np.ones((2, 2)))
    with pytest.raises(TypeError, match="seed must be an integer"):
        BTOracle(gold, seed=1.5)
    oracle = BTOracle(gold)
    with pytest.raises(ValueError, match=r"pairs\[1\] = \(4, 5\) is out of range for 5"):
        oracle.label(np.array([[0, 1], [4, 5]]))
    with pytest.raises(ValueError, match=r"pairs\[0\] = \(3, 3\) compares a response with itself"):
        oracle.label(np.array([[3, 3]]))
    with pytest.raises(ValueError, match=r"pairs must have shape \(P, 2\), got \(3,\)"):
        oracle.label(np.array([0, 1, 2]))


def test_pair_label_oracle_reveals_stored_labels_in_either_order():
    rng = np.random.default_rng(3)
    pairs = np.unique(np.sort(pairs_with_repeats(rng, 60, 400), axis=1), axis=0)
    pairs = np.where(rng.random((pairs.shape[0], 1)) < 0.5, pairs, pairs[:, ::-1])
    labels = rng.integers(0, 2, pairs.shape[0])
    oracle = PairLabelOracle(pairs, labels)
    perm = rng.permutation(pairs.shape[0])
    np.testing.assert_array_equal(oracle.label(pairs[perm]), labels[perm])
    np.testing.assert_array_equal(oracle.label(pairs[:, ::-1]), 1 - labels)
    np.testing.assert_array_equal(oracle.pairs, pairs)
    unknown = np.array([[0, 0], [61, 2], [pairs[0, 1], pairs[0, 0]]])
    np.testing.assert_array_equal(oracle.known(unknown), [False, False, True])
    restored = pickle.loads(pickle.dumps(oracle))
    np.testing.assert_array_equal(restored.label(pairs), labels)


def test_pair_label_oracle_refuses_unknown_and_conflicting_pairs():
    oracle = PairLabelOracle(np.array([[0, 1], [2, 3], [1, 0]]), np.array([1, 0, 0]))
    assert oracle.pairs.shape == (2, 2)  # the consistent repeat (1, 0) is the same comparison
    with pytest.raises(ValueError, match=r"pairs\[1\] = \(1, 2\) has no stored label"):
        oracle.label(np.array([[0, 1], [1, 2], [5, 9]]))
    with pytest.raises(ValueError, match=r"labels disagree.*pairs\[0\].*pairs\[2\]"):
        PairLabelOracle(np.array([[0, 1], [2, 3], [0, 1]]), np.array([1, 0, 0]))
    with pytest.raises(ValueError, match="labels must be 0 or 1, got 3 at index 0"):
        PairLabelOracle(np.array([[0, 1]]), np.array([3]))
    with pytest.raises(ValueError, match=r"pairs\[0\] = \(-1, 2\) has a negative index"):
        PairLabelOracle(np.array([[-1, 2]]), np.array([1]))
    with pytest.raises(TypeError, match="pairs must be int32 or int64"):
        oracle.label(np.array([[0.0, 1.0]]))
    empty = PairLabelOracle(np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64))
    assert not empty.known(np.array([[0, 1]])).any()


def test_bt_oracle_label_validates_its_pairs_once(monkeypatch):
    calls = []
    checked = oracle_module.pairs_tensor

    def counting(*args, **kwargs):
        calls.append(args[0])
        return checked(*args, **kwargs)

    monkeypatch.setattr(oracle_module, "pairs_tensor", counting)
    oracle = BTOracle(np.arange(6.0), beta=2.0, seed=4)
    pairs = np.array([[0, 1], [5, 2], [3, 4]])
    labels = oracle.label(pairs)
    assert len(calls) == 1
    np.testing.assert_array_equal(oracle.label(pairs[:, ::-1]), 1 - labels)
    np.testing.assert_allclose(
        oracle.probabilities(pairs) + oracle.probabilities(pairs[:, ::-1]), 1
    )
