"""greedy_logdet against a brute-force greedy that re-solves every gain at every step."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import activerm_fast as arm
from activerm_fast.testing import reference as ref

from conftest import as_kind, random_pairs, spd, to_numpy

# (n, d, P, k): single pair, d > n, all pairs chosen, larger pools
CASES = [(2, 1, 1, 1), (8, 20, 28, 5), (6, 3, 15, 15), (40, 6, 300, 25), (120, 12, 2000, 40)]


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
    want_indices, want_gains, want_logdet = ref.greedy_logdet(
        features, pairs, k, weights=weights, prior=0.3
    )
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
        features, pairs, k, prior=prior, exclude=exclude
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
        sel.gains,
        ref.sequential_gains(features, pairs, sel.indices, weights=weights, prior=1e-2),
        rtol=1e-7,
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
    want_indices, want_gains, _ = ref.greedy_logdet(features, pairs, 150, prior=1e-3)
    np.testing.assert_array_equal(sel.indices, want_indices)
    np.testing.assert_allclose(sel.gains, want_gains, rtol=1e-8)


@pytest.mark.parametrize("setting", ["plain", "exclude", "matrix prior", "lazy", "refresh"])
def test_no_weights_read_from_no_array_and_equal_stored_ones(rng, kind, setting):
    """Without weights the dense sweep reads none (a null weights pointer: every weight 1) and
    picks, gains and log det are those of a stored array of ones, bit for bit, through the
    state's refresh too; the lazy sweep, which copies weights into its records, gets them
    stored."""
    from activerm_fast.kernels import greedy_problem
    from activerm_fast.selection.design import greedy_engine
    from activerm_fast.testing import launch as _launch

    if kind == "torch-cuda" and setting == "lazy":
        pytest.skip("the lazy sweep runs on the CPU only")
    n, d, count, k = 60, 5, 900, 20
    features = rng.normal(size=(n, d)).astype(np.float32)
    if setting == "refresh":  # float32 features x 1e6 and k = 4 d: the running scores drift
        features *= 1e6
    pairs = random_pairs(rng, n, count)
    options = {"prior": spd(rng, d) if setting == "matrix prior" else 1e-2}
    if setting == "exclude":
        options["exclude"] = as_kind(rng.random(count) < 0.4, kind)
    if setting == "lazy":
        options["lazy"] = True
    if setting == "matrix prior":
        options["prior"] = as_kind(options["prior"], kind)
    f, p = as_kind(features, kind), as_kind(pairs, kind)
    problem = greedy_problem(f, p, **options)
    assert problem.weights == _launch.UnitWeights(1)
    engine, _ = greedy_engine(problem, steps=k)  # the engine stores them for the lazy sweep
    assert isinstance(engine._inputs[2], torch.Tensor) == (setting == "lazy")
    assert (engine.lazy is not None) == (setting == "lazy")
    unit = arm.greedy_logdet(f, p, k, **options)
    ones = arm.greedy_logdet(f, p, k, weights=as_kind(np.ones(count), kind), **options)
    np.testing.assert_array_equal(to_numpy(unit.indices), to_numpy(ones.indices))
    assert to_numpy(unit.gains).tobytes() == to_numpy(ones.gains).tobytes()
    assert unit.logdet == ones.logdet


SCRIPT = """
import json, sys, numpy as np, activerm_fast as arm
rng = np.random.default_rng(7)
f = rng.normal(size=(3000, 24)).astype(np.float32)
p = arm.pairs.cross_prompt(np.repeat(np.arange(300), 10), 200_000, seed=3).astype(np.int32)
w = arm.fisher_weights(rng.normal(size=3000), p)
s = arm.greedy_logdet(f, p, 50, weights=w)
m = arm.fisher_matrix(f, p, w)
# a small pool: the sweep (one chunk of pairs) runs on one thread, the panel products on the team
small_f = rng.normal(size=(2000, 64)).astype(np.float32)
small_p = arm.pairs.cross_prompt(np.repeat(np.arange(200), 10), 5_000, seed=4)
small = arm.greedy_logdet(small_f, small_p, 40, prior=1e-3)
# the strategies that decompose a built information matrix (eigh, SVD, QR of the gains)
rewards = rng.normal(size=(3, 2000))
topk = arm.select("dopt-topk", features=small_f, pairs=small_p[200:], labelled=small_p[:200],
                  rewards=rewards, k=60)
past = arm.select("past-dopt-greedy", features=small_f, pairs=small_p[200:],
                  labelled=small_p[:200], rewards=rewards, k=60)
# float64 products of fewer rows than a block (the last block of the rotation, the coreset's
# projections, the Laplace head's variances, a quadratic form's projection)
coreset = arm.select("coreset", features=small_f[:700], pairs=small_p[small_p.max(1) < 700], k=30)
bald = arm.select("bald", features=small_f, pairs=small_p[200:], labelled=small_p[:200],
                  rewards=rewards[:1], uncertainty="laplace", k=30)
a = rng.normal(size=(64, 64))
quad = arm.pair_quadform(small_f[:300], small_p[small_p.max(1) < 300], a @ a.T)
print(json.dumps([arm.build_info()["openmp_threads"], s.indices.tolist(), s.gains.tolist(),
                  s.logdet, m.tolist(), small.indices.tolist(), small.gains.tolist(),
                  small.logdet, topk.indices.tolist(), topk.gains.tolist(), topk.logdet,
                  past.indices.tolist(), past.gains.tolist(), past.logdet,
                  coreset.indices.tolist(), coreset.gains.tolist(), bald.indices.tolist(),
                  bald.gains.tolist(), quad.tolist()]))
"""


def test_identical_results_with_one_and_two_threads_and_either_vector_width():
    results = []
    # two threads again with the two-lane vectors only (where the CPU has AVX-512, the kernels'
    # wide forms run otherwise: wide_vectors.h)
    for threads, narrow in (("1", ""), ("2", ""), ("2", "1")):
        env = dict(os.environ, OMP_NUM_THREADS=threads, ACTIVERM_FAST_NARROW_VECTORS=narrow)
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        results.append(json.loads(out.stdout))
    assert [r[0] for r in results] == [1, 2, 2]
    assert results[1][1:] == results[2][1:]
    # bitwise: same picks, gains, log det, Fisher matrix, the strategies' decompositions and
    # their float64 products
    assert results[0][1:] == results[1][1:]


def engine_for(features, pairs, weights, ridge):
    """A single-model engine on CPU or CUDA tensors, started from F0 = ridge I."""
    from activerm_fast.testing import launch as _launch

    d = features.shape[1]
    scores = _launch.pair_quadform(features, pairs, None, 1.0 / ridge)[:, None].contiguous()
    factor = (torch.eye(d, dtype=torch.float64, device=features.device) / ridge**0.5)[None]
    return _launch.GreedyEngine(
        features[None],
        pairs,
        weights[:, None].contiguous(),
        scores=scores,
        factor=factor.contiguous(),
        feature_scale=1.0,
    )


def test_engine_steps_compose_to_the_whole_run(rng, kind):
    """sweep / apply driven one step at a time (as a sharded caller does) is the run, bit for
    bit: the loop in C++ is nothing but those primitives."""
    if kind == "numpy":
        pytest.skip("the launch layer takes tensors")
    device = "cuda" if kind == "torch-cuda" else "cpu"
    features = torch.from_numpy(rng.normal(size=(80, 7)).astype(np.float32)).to(device)
    pairs = torch.from_numpy(random_pairs(rng, 80, 1500)).to(device)
    weights = torch.from_numpy(rng.uniform(0.01, 0.25, size=1500)).to(device)
    k = 30
    whole = engine_for(features, pairs, weights, 0.1)
    chosen, gains = whole.run(k)
    stepped = engine_for(features, pairs, weights, 0.1)
    got_chosen = torch.empty_like(chosen)
    got_gains = torch.empty_like(gains)
    stepped.sweep(downdate=False)
    for step in range(k):
        record, ints = stepped.choice
        assert int(ints[1]) == int(chosen[step])  # the choice record holds the sweep's winner
        stepped.apply(step, got_chosen, got_gains, prepare_next=step + 1 < k)
        if step + 1 < k:
            stepped.sweep(downdate=True)
    assert torch.equal(got_chosen, chosen)
    assert torch.equal(got_gains, gains)
    for got, want in zip(stepped.state_tensors(), whole.state_tensors(), strict=True):
        assert torch.equal(got.view(torch.int64), want.view(torch.int64))  # bits, NaNs included


def test_engine_records_no_choice_when_nothing_is_selectable():
    """Every score masked: the engine records -1 and NaN and changes nothing; the public
    function turns that into a ValueError instead of indexing with -1."""
    features = torch.ones((5, 3))
    pairs = torch.tensor([[0, 1], [2, 3]])
    weights = torch.ones(2, dtype=torch.float64)
    engine = engine_for(features, pairs, weights, 1.0)
    scores, factor = engine.state_tensors()
    scores.fill_(math.nan)
    chosen, gains = engine.run(3)
    assert chosen.tolist() == [-1, -1, -1] and torch.isnan(gains).all()
    assert torch.equal(factor[0], torch.eye(3, dtype=torch.float64))


@pytest.mark.parametrize(
    "call",
    [
        lambda f, p: arm.greedy_logdet(f * 1e200, p, 12),
        lambda f, p: arm.greedy_logdet(f.astype(np.float32), p, 10, prior=1e-320),
        lambda f, p: arm.select("xtx", features=f.astype(np.float32), pairs=p, k=10, ridge=1e-320),
        lambda f, p: arm.select(
            "dopt-greedy", features=f * 1e200, pairs=p, k=12, rewards=np.linspace(-1, 1, 60)
        ),
    ],
)
def test_unrepresentable_scores_are_a_clear_error_not_a_crash(call):
    """These inputs aborted the process ('double free or corruption'): d^T F0^-1 d overflows
    float64, so nothing can be chosen. Now the error names what overflowed."""
    features = np.random.default_rng(0).normal(size=(60, 8))
    pairs = arm.pairs.cross_prompt(np.arange(60) // 6, 400, seed=0)
    with pytest.raises(ValueError, match=r"d\^T F0\^-1 d of pair \d+ overflows float64"):
        call(features, pairs)
