"""Bad input gets a ValueError/TypeError naming the argument and what was seen."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import activerm_fast as arm

F = np.random.default_rng(0).normal(size=(10, 4))
P = np.array([[0, 1], [2, 3], [4, 9]])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: arm.pair_diff(F[0], P),
            ValueError,
            r"features must have shape \(n, d\), got \(4,\)",
        ),
        (
            lambda: arm.pair_diff(F.astype(np.int32), P),
            TypeError,
            "features must be float32, float64, float16 or bfloat16, got torch.int32",
        ),
        (
            lambda: arm.pair_diff(F.astype(np.int64), P),
            TypeError,
            "features must be float32, float64, float16 or bfloat16",
        ),
        (
            lambda: arm.pair_diff(np.zeros((0, 4)), P),
            ValueError,
            r"features is empty: shape \(0, 4\)",
        ),
        (
            lambda: arm.pair_diff("abc", P),
            TypeError,
            "features must be a NumPy array or torch tensor, got str",
        ),
        (
            lambda: arm.pair_diff(np.where(F > 1, np.nan, F), P),
            ValueError,
            "features must be finite, got nan at index",
        ),
        (
            lambda: arm.pair_diff(np.where(F > 1, np.inf, F), P),
            ValueError,
            "features must be finite, got inf",
        ),
        (
            lambda: arm.pair_diff(F, np.zeros((10, 3), np.int64)),
            ValueError,
            r"pairs must have shape \(P, 2\), got \(10, 3\)",
        ),
        (
            lambda: arm.pair_diff(F, P.astype(np.float64)),
            TypeError,
            "pairs must be int32 or int64, got torch.float64",
        ),
        (
            lambda: arm.pair_diff(F, P.astype(np.uint8)),
            TypeError,
            "pairs must be int32 or int64, got torch.uint8",
        ),
        (
            lambda: arm.pair_diff(F, np.array([[0, 1], [3, 4000]])),
            ValueError,
            r"pairs\[1\] = \(3, 4000\) is out of range for 10 responses",
        ),
        (
            lambda: arm.pair_diff(F, np.array([[0, 1], [-1, 2]])),
            ValueError,
            r"pairs\[1\] = \(-1, 2\) is out of range",
        ),
        (
            lambda: arm.fisher_weights(np.zeros((2, 3, 4)), P),
            ValueError,
            r"rewards must have shape",
        ),
        (
            lambda: arm.fisher_weights(np.array([0.0, np.nan, 1.0]), P[:1]),
            ValueError,
            "rewards must be finite, got nan at index",
        ),
        (
            lambda: arm.fisher_weights(np.zeros(3), P),
            ValueError,
            r"pairs\[1\] = \(2, 3\) is out of range for 3 responses",
        ),
        (
            lambda: arm.pair_quadform(F, P, np.eye(3)),
            ValueError,
            r"precision must have shape \(4, 4\), got \(3, 3\)",
        ),
        (
            lambda: arm.fisher_matrix(F, P, np.ones(2)),
            ValueError,
            r"weights must have shape \(3,\), got \(2,\)",
        ),
        (
            lambda: arm.fisher_matrix(F, P, np.array([1.0, np.inf, 1.0])),
            ValueError,
            "weights must be finite, got inf at index 1",
        ),
        (
            lambda: arm.greedy_logdet(F, P, 4),
            ValueError,
            r"k = 4 is larger than the 3 pairs available \(3 candidates, 0 excluded\)",
        ),
        (
            lambda: arm.greedy_logdet(F, P, 3, exclude=np.array([True, False, False])),
            ValueError,
            "k = 3 is larger than the 2 pairs available",
        ),
        (lambda: arm.greedy_logdet(F, P, -1), ValueError, "k must be non-negative, got -1"),
        (lambda: arm.greedy_logdet(F, P, 1.5), TypeError, "k must be an integer, got float 1.5"),
        (lambda: arm.greedy_logdet(F, P, True), TypeError, "k must be an integer, got bool"),
        (
            lambda: arm.greedy_logdet(F, np.array([[0, 1], [3, 3]]), 1),
            ValueError,
            r"pairs\[1\] = \(3, 3\) compares a response with itself",
        ),
        (
            lambda: arm.greedy_logdet(F, np.array([[0, 1], [5, 2], [1, 0]]), 1),
            ValueError,
            r"pairs\[2\] = \(1, 0\) repeats pairs\[0\] = \(0, 1\)",
        ),
        (
            lambda: arm.greedy_logdet(F, P, 1, weights=np.array([0.1, -0.2, 0.1])),
            ValueError,
            "weights must be non-negative, got -0.2 at index 1",
        ),
        (
            lambda: arm.greedy_logdet(F, P, 1, prior=0.0),
            ValueError,
            "prior must be a positive finite number, got 0.0",
        ),
        (
            lambda: arm.greedy_logdet(F, P, 1, prior=np.nan),
            ValueError,
            "prior must be a positive finite number, got nan",
        ),
        (
            lambda: arm.greedy_logdet(F, P, 1, prior=-np.eye(4)),
            ValueError,
            r"prior must be positive definite \(Cholesky failed at column 0\)",
        ),
        (
            lambda: arm.greedy_logdet(F, P, 1, prior=np.triu(np.ones((4, 4)))),
            ValueError,
            "prior must be symmetric",
        ),
        (
            lambda: arm.greedy_logdet(F, P, 1, exclude=np.array([0, 1, 0])),
            TypeError,
            "exclude must be a boolean mask, got torch.int64",
        ),
        (
            lambda: arm.greedy_logdet(F, P, 1, exclude=np.array([True])),
            ValueError,
            r"exclude must have shape \(3,\), got \(1,\)",
        ),
        (
            lambda: arm.greedy_logdet(F, P, 1, weights=torch.ones(3, device="meta")),
            ValueError,
            "weights is on meta but features is on cpu",
        ),
        (
            lambda: arm.pair_diff(torch.from_numpy(F), torch.from_numpy(P).to("meta")),
            ValueError,
            "pairs is on meta but features is on cpu",
        ),
        (
            lambda: arm.pair_diff(torch.from_numpy(F).to("meta"), torch.from_numpy(P).to("meta")),
            ValueError,
            "features is on meta; only CPU and CUDA devices are supported",
        ),
    ],
)
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_cuda_without_cuda_support_is_named(monkeypatch):
    from activerm_fast.testing import launch as _launch

    monkeypatch.setattr(_launch, "_cuda", None)
    with pytest.raises(
        ValueError, match="features is on cuda:0 but activerm_fast was built without CUDA"
    ):
        _launch.backend_for(torch.device("cuda:0"))


@pytest.mark.parametrize("scale", [1e-30, 1e-21])
def test_float32_results_that_underflow_are_refused_like_overflow(scale):
    rng = np.random.default_rng(0)
    features = (rng.normal(size=(6, 3)) * scale).astype(np.float32)
    pairs = np.array([[0, 1], [2, 3], [4, 5]])
    with pytest.raises(ValueError, match=r"^fisher_matrix underflows float32 \(largest entry"):
        arm.fisher_matrix(features, pairs)
    with pytest.raises(ValueError, match=r"^pair_quadform underflows float32 \(largest entry"):
        arm.pair_quadform(features, pairs, np.eye(3))
    # the same values in float64 are representable, and agree with the float64 reference
    wide = features.astype(np.float64)
    d = wide[pairs[:, 0]] - wide[pairs[:, 1]]
    np.testing.assert_allclose(arm.fisher_matrix(wide, pairs), d.T @ d, rtol=1e-12)
    np.testing.assert_allclose(
        arm.pair_quadform(wide, pairs, np.eye(3)), (d * d).sum(1), rtol=1e-12
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_fisher_matrix_underflow_from_the_weights_names_the_weights(dtype):
    """Features of magnitude 1 and weights of 1e-40 give a float32 matrix wholly below float32's
    normal range: the weights did it, so the error names them (and the features where they
    did it themselves, at any weights)."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(6, 3)).astype(dtype)
    pairs = np.array([[0, 1], [2, 3], [4, 5]])
    light = np.full(3, 1e-40)
    with pytest.raises(
        ValueError,
        match=r"^fisher_matrix underflows float32 \(largest entry .*\): weights up to 1e-40; "
        "rescale the weights$",
    ):
        arm.fisher_matrix(features, pairs, light)
    tiny = (features.astype(np.float64) * 1e-30).astype(np.float32)
    for weights in (None, light, np.ones(3), np.full(3, 1e-3)):
        with pytest.raises(ValueError, match=r"\): features up to .*; rescale the features$"):
            arm.fisher_matrix(tiny, pairs, weights)
    # weights of 1e-40 in float64 are representable, and agree with the float64 reference
    wide = features.astype(np.float64)
    d = wide[pairs[:, 0]] - wide[pairs[:, 1]]
    np.testing.assert_allclose(arm.fisher_matrix(wide, pairs, light), 1e-40 * (d.T @ d), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_fisher_matrix_overflow_from_the_weights_names_the_weights(dtype):
    """Features of magnitude 1 and weights of 3e38 give a matrix beyond float32's range: the
    weights did it, so the error names them (and the features where they did it themselves,
    at any weights)."""
    rng = np.random.default_rng(1)
    features = rng.normal(size=(6, 3)).astype(dtype)
    pairs = np.array([[0, 1], [2, 3], [4, 5]])
    heavy = np.full(3, 3e38)
    with pytest.raises(
        ValueError,
        match=r"^fisher_matrix overflows float32: weights up to 3e\+38; rescale the weights$",
    ):
        arm.fisher_matrix(features, pairs, heavy)
    huge = (features.astype(np.float64) * 1e25).astype(np.float32)
    for weights in (None, heavy, np.ones(3), np.full(3, 1e3)):
        with pytest.raises(ValueError, match=r": features up to .*; rescale the features$"):
            arm.fisher_matrix(huge, pairs, weights)
    # weights of 3e38 in float64 are representable, and agree with the float64 reference
    wide = features.astype(np.float64)
    d = wide[pairs[:, 0]] - wide[pairs[:, 1]]
    np.testing.assert_allclose(arm.fisher_matrix(wide, pairs, heavy), 3e38 * (d.T @ d), rtol=1e-12)


@pytest.mark.parametrize(
    "dtype, scale, weight", [(np.float32, 1.0, 1e308), (np.float64, 1e10, 1e300)]
)
def test_fisher_matrix_overflowing_float64_itself_names_features_and_weights(dtype, scale, weight):
    """Where even the float64 sums overflow, neither input can be cleared: both are named
    (the features were blamed alone, at weights of 1e308 and features of magnitude 2)."""
    rng = np.random.default_rng(2)
    features = (rng.normal(size=(8, 4)) * scale).astype(dtype)
    pairs = np.array([[i, j] for i in range(8) for j in range(i + 1, 8)])
    with pytest.raises(
        ValueError,
        match=rf"^fisher_matrix overflows {np.dtype(dtype).name}: features up to .* with weights "
        r"up to .*; rescale either$",
    ):
        arm.fisher_matrix(features, pairs, np.full(len(pairs), weight))


def test_float32_results_with_some_tiny_entries_are_kept():
    """Only a result wholly below float32's normal range is refused: tiny entries beside large
    ones round as float32 rounds them."""
    features = np.zeros((4, 2), np.float32)
    features[1, 0], features[3, 1] = 1.0, 1e-25
    pairs = np.array([[0, 1], [2, 3]])
    matrix = arm.fisher_matrix(features, pairs)
    assert matrix[0, 0] == 1.0 and matrix[1, 1] == 0.0


def test_fisher_matrix_refuses_negative_weights_as_greedy_logdet_does():
    features = np.eye(4)
    pairs = np.array([[0, 1], [2, 3]])
    weights = np.array([1.0, -0.5])
    with pytest.raises(ValueError, match=r"^weights must be non-negative, got -0.5 at index 1$"):
        arm.fisher_matrix(features, pairs, weights)
    with pytest.raises(ValueError, match=r"^weights must be non-negative, got -0.5 at index 1$"):
        arm.greedy_logdet(features, pairs, 1, weights=weights)


def test_pair_quadform_overflow_names_the_precision_beside_the_features():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(6, 3)).astype(np.float32)
    pairs = np.array([[0, 1], [2, 3]])
    with pytest.raises(
        ValueError,
        match=r"^pair_quadform overflows float32: features up to .* and precision entries up to "
        r"1e\+308; rescale either$",
    ):
        arm.pair_quadform(features, pairs, np.eye(3) * 1e308)


@pytest.mark.parametrize("strategy", ["greedy_logdet", "xtx", "dopt-greedy", "dopt-topk"])
def test_scores_no_float64_holds_are_refused_not_tied(strategy):
    """Features of 1e-200 against a prior of 1e-3 make every d^T F0^-1 d about 1e-397, below
    any float64: the picks were index order. Against a prior of 1e-300 they are the design of
    features of scale 1 against 1e100 (both scaled by 1e-200, the prior by its square), and
    features that are all equal tie."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(8, 4))
    pairs = np.array([[i, j] for i in range(8) for j in range(i + 1, 8)])
    rewards = rng.normal(size=8)

    def picks(scale: float, prior: float) -> list[int]:
        f = features * scale
        if strategy == "greedy_logdet":
            return arm.greedy_logdet(f, pairs, 3, prior=prior).indices.tolist()
        chosen = arm.select(strategy, features=f, pairs=pairs, k=3, rewards=rewards, ridge=prior)
        return chosen.indices.tolist()

    with pytest.raises(ValueError, match=r"^every d\^T F0\^-1 d underflows float64: features up"):
        picks(1e-200, 1e-3)
    assert picks(1e-200, 1e-300) == picks(1.0, 1e100) != [0, 1, 2]
    assert len(picks(0.0, 1e-3)) == 3  # equal features: nothing to underflow, every gain 0


@pytest.mark.parametrize(
    ("strategy", "pool"),
    [
        (strategy, pool)
        for strategy in ("dopt-greedy", "past-dopt-greedy", "ensemble-dopt-greedy", "dopt-topk")
        for pool in ("stored", "implicit")
        if (strategy, pool) != ("dopt-topk", "implicit")  # the top-k rules take stored pairs
    ],
)
def test_fisher_weights_no_float64_holds_are_refused_not_tied(strategy, pool):
    """Rewards 1e5 apart make every Fisher weight about e^-10^5, 0 in float64: every score
    w d^T F^-1 d was 0 and the picks index order. Rewards 100 apart keep the weights
    positive (e^-100); picking every pair needs no ranking."""
    rng = np.random.default_rng(4)
    n = 8
    shape = (2, n, 3) if strategy.startswith("ensemble") else (n, 3)
    features = rng.normal(size=shape)
    order = rng.permutation(n).astype(float)  # distinct rewards 0..7
    stored = np.array([[i, j] for i in range(n) for j in range(i + 1, n)])
    implicit = arm.ImplicitPool.cross_prompt(np.arange(n), 200, seed=1)
    labelled = stored[:2] if pool == "stored" else None

    def picks(scale: float, k: int = 3) -> list[int]:
        rewards = np.stack([order, order + 0.5]) * scale
        chosen = arm.select(strategy, features=features, pairs=stored if pool == "stored"
                            else implicit, k=k, rewards=rewards, labelled=labelled)  # fmt: skip
        return chosen.indices.tolist()

    with pytest.raises(ValueError, match=r"^the Fisher weight sigma\(gap\)\(1 - sigma\(gap\)\) "
                       r"of every available pair underflows float64 \(rewards 0 \.\. 7\.5e\+05, "
                       r"over 700 apart on those pairs\): rescale"):  # fmt: skip
        picks(1e5)
    assert len(set(picks(100 / 7))) == 3  # rewards 0..100 apart: positive weights rank
    if pool == "stored":
        assert len(picks(1e5, k=len(stored) - 2)) == len(stored) - 2
        # rewards 0..7 but one 1000 apart: its pairs have no weight, and picks past the
        # others would be index order among them
        far = int(np.argmax(order))
        order[far] = 1000.0
        available = [p for p in stored[2:].tolist() if far not in p]
        count = len(available)
        assert len(picks(1.0, k=count)) == count
        with pytest.raises(ValueError, match=rf"of all but {count} of the 26 available pairs "
                           rf"underflows float64 \(rewards .*\): lower k = {count + 1} to {count}"):  # fmt: skip
            picks(1.0, k=count + 1)
