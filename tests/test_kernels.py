"""Each kernel against its float64 NumPy reference, on fresh random inputs of many shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import activerm_fast as arm
from activerm_fast import _launch
from activerm_fast.selection import design as _design
from activerm_fast.testing import reference as ref
from activerm_fast.testing import relative_ridge

from conftest import as_kind, random_pairs, relative_error, to_numpy

# (n responses, d features, P pairs): empty pool, single pair, d > n, larger pools
SHAPES = [(4, 3, 0), (2, 1, 1), (6, 40, 10), (50, 8, 300), (300, 17, 4000)]
TOLERANCE = {np.float32: 2e-5, np.float64: 1e-12}


def make_inputs(rng, n, d, count, dtype, index_dtype):
    features = rng.normal(size=(n, d)).astype(dtype)
    pairs = random_pairs(rng, n, count).astype(index_dtype)
    return features, pairs


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_pair_diff_matches_reference(rng, kind, shape, dtype, index_dtype):
    features, pairs = make_inputs(rng, *shape, dtype, index_dtype)
    got = arm.pair_diff(as_kind(features, kind), as_kind(pairs, kind))
    assert type(got) is type(as_kind(features, kind))
    assert got.dtype == as_kind(features, kind).dtype
    assert relative_error(got, ref.pair_diff(features, pairs)) <= TOLERANCE[dtype]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("members", [None, 1, 5])
def test_fisher_weights_matches_reference(rng, kind, shape, members):
    n, _, count = shape
    rewards = rng.normal(scale=3.0, size=n if members is None else (members, n))
    pairs = random_pairs(rng, n, count)
    got = to_numpy(arm.fisher_weights(as_kind(rewards, kind), as_kind(pairs, kind)))
    want = ref.fisher_weights(rewards, pairs)
    assert got.shape == (count,)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert np.all((got >= 0) & (got <= 0.25))


def test_fisher_weights_stable_for_large_gaps(kind):
    rewards = np.array([0.0, 1e-9, 40.0, -40.0, 800.0, -800.0, 1e308])
    pairs = np.array([[0, 1], [2, 0], [0, 3], [4, 5], [5, 4], [6, 0], [2, 3]])
    got = to_numpy(arm.fisher_weights(as_kind(rewards, kind), as_kind(pairs, kind)))
    want = ref.fisher_weights(rewards, pairs)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    assert got[0] == pytest.approx(0.25)
    assert got[1] > 0 and got[3] == 0.0  # exp(-40) is representable, exp(-1600) is not


def test_fisher_weights_float32_rewards_keep_dtype(rng):
    rewards = rng.normal(size=(3, 20)).astype(np.float32)
    pairs = random_pairs(rng, 20, 50).astype(np.int32)
    got = arm.fisher_weights(rewards, pairs)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref.fisher_weights(rewards, pairs), rtol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pair_quadform_matches_reference(rng, kind, shape, dtype):
    n, d, count = shape
    features, pairs = make_inputs(rng, n, d, count, dtype, np.int64)
    root = rng.normal(size=(d, max(d // 2, 1)))  # PSD and possibly singular
    precision = root @ root.T
    got = arm.pair_quadform(as_kind(features, kind), as_kind(pairs, kind), as_kind(precision, kind))
    want = ref.pair_quadform(features, pairs, precision)
    assert relative_error(got, want) <= 10 * TOLERANCE[dtype]
    assert np.all(to_numpy(got) >= -1e-9 * max(np.abs(want).max(initial=1.0), 1.0))


def test_pair_quadform_accurate_for_near_identical_responses(rng):
    # q ~ 1e-16 |phi|^2: a form that subtracts s_i + s_j - 2 g_i.phi_j would lose every digit
    base = rng.normal(size=(1, 16)) * 1e3
    features = np.concatenate([base, base + rng.normal(size=(1, 16)) * 1e-5])
    precision = np.eye(16) * 2.0
    got = arm.pair_quadform(features, np.array([[0, 1]]), precision)
    want = ref.pair_quadform(features, np.array([[0, 1]]), precision)
    assert relative_error(got, want) < 1e-9


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_fisher_matrix_matches_reference(rng, kind, shape, dtype, weighted):
    features, pairs = make_inputs(rng, *shape, dtype, np.int64)
    weights = rng.random(len(pairs)).astype(dtype) if weighted else None
    args = (as_kind(features, kind), as_kind(pairs, kind))
    got = arm.fisher_matrix(*args, None if weights is None else as_kind(weights, kind))
    want = ref.fisher_matrix(features, pairs, weights)
    assert got.shape == (shape[1], shape[1])
    assert relative_error(got, want) <= 10 * TOLERANCE[dtype] or not want.any()
    np.testing.assert_array_equal(to_numpy(got), to_numpy(got).T)


def test_fisher_matrix_with_repeated_pairs_counts_each(rng):
    features = rng.normal(size=(5, 3))
    pairs = np.array([[0, 1], [0, 1], [2, 3], [3, 2]])
    np.testing.assert_allclose(
        arm.fisher_matrix(features, pairs), ref.fisher_matrix(features, pairs), rtol=1e-12
    )


def test_fisher_matrix_accurate_with_large_common_offset(rng):
    features = 1e6 + rng.normal(size=(40, 6))
    pairs = random_pairs(rng, 40, 200)
    want = ref.fisher_matrix(features, pairs)
    assert relative_error(arm.fisher_matrix(features, pairs), want) < 1e-9


def test_fisher_matrix_unmoved_by_responses_no_pair_compares(rng):
    # a response at 1e180 that no pair compares: centring on every response's mean would square
    # it past float64 (found by test_properties.py); centring on the compared ones does not
    features = rng.normal(size=(12, 4)) * 1e130
    features[0, 0] = 1e180
    pairs = random_pairs(rng, 12, 30)
    pairs = pairs[(pairs != 0).all(axis=1)]
    want = ref.fisher_matrix(features, pairs)
    assert np.isfinite(want).all()
    assert relative_error(arm.fisher_matrix(features, pairs), want) < 1e-9
    # the relative ridge's trace goes through the same product
    rewards = rng.normal(size=12)
    lam = relative_ridge(1.0, torch.from_numpy(features), torch.from_numpy(pairs))
    assert lam == pytest.approx(np.trace(want) / len(pairs) / 4, rel=1e-9)
    assert arm.select(
        "dopt-greedy", features=features, pairs=pairs, k=3, rewards=rewards, ridge_mode="relative"
    ).indices.shape == (3,)


@pytest.mark.parametrize("narrow", ["1", ""], ids=["two-lane", "widest"])
@pytest.mark.parametrize(
    ("n", "d", "count"),
    [(40, 3, 30), (40, 8, 50), (40, 20, 60), (40, 37, 60), (90, 130, 300), (40, 2, 300)],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_fisher_matrix_scatter_is_the_pair_order_sum_bit_for_bit(
    rng, n, d, count, dtype, narrow, monkeypatch
):
    """Each element of L_w Phi gains its pairs' terms w_k (phi_i - phi_j)_a (row i) and their
    negations (row j) in pair order, whichever path sums it: row by row from an index of each
    row's pairs where that index is no larger than the result (AVX-512 blocks of 32 and 8
    columns, then one by one; or two-lane vectors), else the scatter over column blocks (the
    last case, 2P > n d). A repeated pair and a pair of a response with itself (first its term,
    then its negation) keep that order too: the same bits as the sum taken in NumPy, one pair
    at a time."""
    monkeypatch.setenv("ACTIVERM_FAST_NARROW_VECTORS", narrow)
    features = (rng.normal(size=(n, d)) * 3 + 10).astype(dtype)
    pairs = np.concatenate([random_pairs(rng, n, count - 2), [[4, 4], [5, 6]]])
    pairs[count // 2] = pairs[0]  # a repeat
    weights = rng.random(count)
    got = _launch.fisher_matrix(
        torch.from_numpy(features), torch.from_numpy(pairs), torch.from_numpy(weights)
    ).numpy()
    phi = features.astype(np.float64)
    want = np.zeros((n, d))
    for k, (i, j) in enumerate(pairs):
        term = weights[k] * (phi[i] - phi[j])
        want[i] += term
        want[j] += -term
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def product_chunk_rows(d: int) -> int:
    """The CPU product's rows per chunk (fisher_matrix_cpu.cpp: 2^17 bytes, at most 256)."""
    return min((1 << 17) // (8 * d), 256)


@pytest.mark.parametrize("d", [8, 37, 64, 130])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fisher_matrix_same_bits_for_one_and_two_threads(rng, d, dtype):
    """The scatter's column blocks of 32, the product's tiles of 4 output rows (4 x 4 entries in
    registers) and its chunks of rows are fixed by the sizes, never by the team, so one thread
    and two give the same bits; n crosses three chunk boundaries, d the blocks, tiles and
    register blocks (37 and 130 leave partial ones)."""
    n = 3 * product_chunk_rows(d) + 5
    features = (rng.normal(size=(n, d)) * 3 + 10).astype(dtype)
    pairs = random_pairs(rng, n, 4 * n)
    weights = rng.random(4 * n)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)  # the count _threads.free_core_threads sets
            assert arm.build_info()["openmp_threads"] == threads  # one runtime: the kernels'
            results.append(arm.fisher_matrix(features, pairs, weights))
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(results[0].view(np.uint8), results[1].view(np.uint8))
    want = ref.fisher_matrix(features, pairs, weights)
    assert relative_error(results[0], want) <= 10 * TOLERANCE[dtype]


# Work from which a kernel run once per call takes the OpenMP team (csrc/cpu/one_shot_work_cpu.h:
# kOneShotParallelWork multiply-adds, a pair without a d-long loop counting kPairWork).
ONE_SHOT_PARALLEL_WORK, PAIR_WORK = 1 << 20, 16


def test_one_shot_kernels_above_their_team_size_same_bits_on_one_thread_and_two(rng):
    """pair_diff, pair_quadform, fisher_weights and the implicit pool's pairs run on one thread
    below their work bound and on the team above it: just above it, one thread and two give
    the same bits, and the references' values."""
    n, d = 600, 64
    count = ONE_SHOT_PARALLEL_WORK // d + 8 * 7 + 3  # past a whole number of quadform groups
    features = rng.normal(size=(n, d)).astype(np.float32)
    pairs = random_pairs(rng, n, count)
    rewards = rng.normal(scale=3.0, size=(2, n))
    weight_pairs = random_pairs(rng, n, ONE_SHOT_PARALLEL_WORK // (2 * PAIR_WORK) + 5)
    pool = arm.ImplicitPool.cross_prompt(
        np.repeat(np.arange(60), 10), ONE_SHOT_PARALLEL_WORK // PAIR_WORK + 9, seed=3
    )
    before = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert arm.build_info()["openmp_threads"] == threads  # one runtime: the kernels'
            runs.append(
                [
                    to_numpy(arm.pair_diff(features, pairs)),
                    to_numpy(
                        _launch.pair_quadform(
                            torch.from_numpy(features), torch.from_numpy(pairs), None, 1.0
                        )
                    ),
                    to_numpy(arm.fisher_weights(rewards, weight_pairs)),
                    pool.materialize(),
                ]
            )
    finally:
        torch.set_num_threads(before)
    for one, two in zip(*runs, strict=True):
        np.testing.assert_array_equal(one.view(np.uint8), two.view(np.uint8))
    diff, quadform, weights, generated = runs[0]
    np.testing.assert_array_equal(diff, ref.pair_diff(features, pairs).astype(np.float32))
    assert relative_error(quadform, (ref.pair_diff(features, pairs) ** 2).sum(axis=1)) <= 1e-6
    assert relative_error(weights, ref.fisher_weights(rewards, weight_pairs)) <= 1e-12
    prompts = np.repeat(np.arange(60), 10)
    assert (prompts[generated[:, 0]] != prompts[generated[:, 1]]).all()
    np.testing.assert_array_equal(generated[: len(pool) // 2], pool.rows(np.arange(len(pool) // 2)))


@pytest.mark.parametrize("narrow", ["1", ""], ids=["two-lane", "widest"])
@pytest.mark.parametrize("d", [8, 37, 64, 130])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_fisher_product_is_the_ordered_sum_bit_for_bit(rng, d, dtype, narrow, monkeypatch):
    """Every entry on and above the diagonal of the product is sum_r (phi_r,a - mean_a) L_r,c
    over the compared rows in ascending order, whichever path computes it (the blocks of 4 x 4
    entries summed in two-lane vectors, of 8 x 16 in AVX-512 vectors where the CPU has them, or
    entry by entry past the last whole block), and each entry below it is its mirror: the same
    bits as that sum taken in NumPy, one row at a time. The mean is the compared rows' sum in
    order over their count; a response no pair compares is left out of both."""
    monkeypatch.setenv("ACTIVERM_FAST_NARROW_VECTORS", narrow)
    n = 3 * product_chunk_rows(d) + 5
    features = torch.from_numpy((rng.normal(size=(n, d)) * 3 + 10).astype(dtype))
    pairs = torch.from_numpy(random_pairs(rng, n, 4 * n))
    pairs = pairs[(pairs != 7).all(dim=1)]  # response 7 is compared by no pair
    weights = torch.from_numpy(rng.random(len(pairs)))
    laplacian = _launch.fisher_matrix(features, pairs, weights)
    got = _launch.fisher_product(features, laplacian).numpy()
    phi, rows = features.double().numpy(), laplacian.numpy()
    compared = np.flatnonzero((rows != 0).any(axis=1))
    assert 7 not in compared
    mean = np.zeros(d)
    for r in compared:
        mean += phi[r]
    mean /= len(compared)
    want = np.zeros((d, d))
    for r in compared:
        want += np.outer(phi[r] - mean, rows[r])
    want = np.triu(want) + np.triu(want, 1).T
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("narrow", ["1", ""], ids=["two-lane", "widest"])
@pytest.mark.parametrize("d", [1, 7, 8, 37, 64, 130])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("projected", [False, True], ids=["scaled-identity", "projected"])
def test_pair_quadform_is_the_ordered_sum_bit_for_bit(
    rng, d, dtype, projected, narrow, monkeypatch
):
    """Each pair's form is its terms (phi_i,a s - phi_j,a s) times itself, or times
    (g_i,a - g_j,a), added in coordinate order, whichever path sums it (groups of 8 pairs in
    scalars, in AVX-512 lanes with 8 coordinates turned from rows into columns where the CPU has
    them, the coordinates past the last block of 8 and the pairs past the last group one by
    one): the same bits as that sum taken in NumPy, one coordinate at a time."""
    monkeypatch.setenv("ACTIVERM_FAST_NARROW_VECTORS", narrow)
    n, count, feature_scale, scale = 60, 8 * 25 + 5, 0.25, 0.5
    features = (rng.normal(size=(n, d)) * 3 + 1).astype(dtype)
    pairs = random_pairs(rng, n, count)
    phi = features.astype(np.float64) * feature_scale
    g = rng.normal(size=(n, d)) if projected else None
    got = _launch.pair_quadform(
        torch.from_numpy(features),
        torch.from_numpy(pairs),
        None if g is None else torch.from_numpy(g),
        scale,
        feature_scale=feature_scale,
    ).numpy()
    want = np.zeros(count)
    for a in range(d):
        diff = phi[pairs[:, 0], a] - phi[pairs[:, 1], a]
        want = want + diff * (diff if g is None else g[pairs[:, 0], a] - g[pairs[:, 1], a])
    want = want if projected else want * scale
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count", [1, 7, 60])
def test_fisher_matrix_on_the_compared_rows_keeps_every_bit(rng, dtype, count):
    """A few pairs among many responses run both halves on the rows they compare, renumbered in
    ascending order: the same bits as the kernels over all n rows."""
    n, d = 400, 24
    features = torch.from_numpy((rng.normal(size=(n, d)) * 3 + 10).astype(dtype))
    pairs = torch.from_numpy(random_pairs(rng, n, count))
    weights = torch.from_numpy(rng.random(count))
    assert _design._compared(pairs, n) is not None  # the compacted path runs
    every_row = _launch.fisher_product(features, _launch.fisher_matrix(features, pairs, weights))
    got = _design.fisher_matrix(features, pairs, weights)
    np.testing.assert_array_equal(got.numpy().view(np.uint8), every_row.numpy().view(np.uint8))


def test_non_contiguous_inputs(rng):
    wide = rng.normal(size=(30, 12))
    features = wide[:, ::2]  # strided columns
    pairs = np.asfortranarray(random_pairs(rng, 30, 60))
    assert not features.flags.c_contiguous and not pairs.flags.c_contiguous
    np.testing.assert_allclose(arm.pair_diff(features, pairs), ref.pair_diff(features, pairs))
    t_features = torch.from_numpy(wide)[:, 1::2]
    t_pairs = torch.from_numpy(np.ascontiguousarray(pairs.T)).T
    assert not t_features.is_contiguous() and not t_pairs.is_contiguous()
    np.testing.assert_allclose(
        arm.fisher_matrix(t_features, t_pairs).numpy(),
        ref.fisher_matrix(wide[:, 1::2], pairs),
        rtol=1e-11,
    )


def test_torch_inputs_requiring_grad_are_read_not_tracked(rng):
    features = torch.tensor(rng.normal(size=(10, 4)), requires_grad=True)
    pairs = torch.tensor(random_pairs(rng, 10, 12))
    out = arm.pair_diff(features, pairs)
    assert isinstance(out, torch.Tensor) and not out.requires_grad


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda f, p: arm.fisher_matrix(f * 1e200, p), "fisher_matrix overflows float64"),
        (
            lambda f, p: arm.pair_quadform((f * 1e20).astype(np.float32), p, np.eye(8)),
            "pair_quadform overflows float32",
        ),
        (
            lambda f, p: arm.pair_diff(np.float32(3e38) * np.sign(f).astype(np.float32), p),
            "pair_diff overflows float32",
        ),
    ],
)
def test_results_beyond_the_dtype_are_named_not_inf(call, match):
    """Finite features whose Fisher matrix, quadratic forms or differences exceed the dtype's
    range used to come back as inf entries; now a ValueError names the overflow."""
    features = np.random.default_rng(0).normal(size=(60, 8))
    pairs = arm.pairs.cross_prompt(np.arange(60) // 6, 400, seed=0)
    with pytest.raises(ValueError, match=match):
        call(features, pairs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pair_diff_range_judged_by_the_pairs_not_the_features(dtype):
    """pair_diff skips the scan of its result when the features alone prove every difference
    representable; features that could overflow or underflow, but only through pairs not
    asked for, still give the exact differences, and the pairs that do still raise."""
    limits = np.finfo(dtype)
    huge, tiny = limits.max / 1.5, dtype(limits.tiny)
    features = np.array(
        [[huge], [-huge], [tiny], [np.nextafter(tiny, dtype(1))], [0.0], [1.0]], dtype=dtype
    )
    harmless = np.array([[0, 5], [5, 4], [4, 0]])
    np.testing.assert_array_equal(
        arm.pair_diff(features, harmless), ref.pair_diff(features, harmless).astype(dtype)
    )
    with pytest.raises(ValueError, match="pair_diff overflows"):
        arm.pair_diff(features, np.array([[5, 4], [0, 1]]))
    # the only nonzero difference is subnormal: a silent near-zero result is refused
    with pytest.raises(ValueError, match="pair_diff underflows"):
        arm.pair_diff(features, np.array([[3, 2], [4, 4]]))
    mixed = np.array([[3, 2], [5, 4]])  # a subnormal entry beside a normal one is returned
    np.testing.assert_array_equal(
        arm.pair_diff(features, mixed), ref.pair_diff(features, mixed).astype(dtype)
    )
