"""The exact lazy sweep: the same picks, gains and log det as the dense sweep, bit for bit."""

from __future__ import annotations

import gloo
import numpy as np
import pytest
import torch

import activerm_fast as arm
from activerm_fast.testing import design as _design
from activerm_fast.testing import launch as _launch
from activerm_fast.testing import reference as ref

from conftest import random_pairs, spd

SWEEPS = [True, "auto"]
GREEDY = ["xtx", "dopt-greedy", "past-dopt-greedy", "ensemble-dopt-greedy"]


def assert_same_selection(got, want):
    assert torch.equal(torch.as_tensor(got.indices), torch.as_tensor(want.indices))
    assert torch.equal(torch.as_tensor(got.gains), torch.as_tensor(want.gains))
    assert got.logdet == want.logdet


def capture_engines(monkeypatch) -> list:
    """Every greedy engine built from now on, as (the sweep its problem asked for, engine): the
    engine's ``lazy`` is the lazy sweep (None: the dense one) and its counters say it ran."""
    built: list = []
    build = _design.greedy_engine

    def capturing(problem, steps=0):
        engine, scale = build(problem, steps=steps)
        built.append((problem.lazy, engine))
        return engine, scale

    monkeypatch.setattr(_design, "greedy_engine", capturing)
    return built


@pytest.fixture
def engines(monkeypatch) -> list:
    """lazy="auto" takes the lazy sweep whatever the pool's size (the thresholds lowered to one
    pair and one step), and every greedy engine built in the test (:func:`capture_engines`)."""
    monkeypatch.setattr(_launch, "LAZY_MIN_PAIRS", 1)
    monkeypatch.setattr(_launch, "LAZY_MIN_STEPS", 1)
    return capture_engines(monkeypatch)


def assert_sweeps(built, lazy, members=1):
    """Every engine asked for ``lazy`` ran the lazy sweep ("auto" with one member, True) or the
    dense one (False; "auto" with several members), and every lazy=False engine the dense one."""
    asked = [engine for wanted, engine in built if wanted == lazy and type(wanted) is type(lazy)]
    assert asked, f"no engine was asked for lazy={lazy!r}: {[w for w, _ in built]}"
    runs_lazily = lazy is True or (lazy == "auto" and members == 1)
    for engine in asked:
        if runs_lazily:
            assert engine.lazy is not None, f"lazy={lazy!r} ran the dense sweep"
            assert engine.lazy.sweeps > 0  # the lazy sweep itself found the choices
        else:
            assert engine.lazy is None, f"lazy={lazy!r} ran the lazy sweep"
    for wanted, engine in built:
        if wanted is False:
            assert engine.lazy is None


# (n, d, P, k): one pair, d > n, every pair chosen, larger pools
CASES = [(2, 1, 1, 1), (8, 20, 28, 5), (6, 3, 15, 15), (40, 6, 300, 60), (200, 16, 6000, 150)]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("lazy", SWEEPS)
def test_lazy_equals_dense_and_brute_force(rng, engines, case, dtype, index_dtype, lazy):
    n, d, count, k = case
    features = rng.normal(size=(n, d)).astype(dtype)
    pairs = random_pairs(rng, n, count).astype(index_dtype)
    weights = rng.uniform(0.0, 0.25, size=count)
    dense = arm.greedy_logdet(features, pairs, k, weights=weights, prior=0.3, lazy=False)
    got = arm.greedy_logdet(features, pairs, k, weights=weights, prior=0.3, lazy=lazy)
    assert_same_selection(got, dense)
    assert_sweeps(engines, lazy)
    want_indices, want_gains, _ = ref.greedy_logdet(features, pairs, k, weights=weights, prior=0.3)
    np.testing.assert_array_equal(got.indices, want_indices)
    np.testing.assert_allclose(got.gains, want_gains, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("lazy", SWEEPS)
def test_lazy_with_matrix_prior_exclusions_and_every_available_pair(rng, engines, lazy):
    n, d, count = 60, 8, 900
    features = rng.normal(size=(n, d))
    pairs = random_pairs(rng, n, count)
    exclude = rng.random(count) < 0.3
    k = int((~exclude).sum())  # every available pair, to the last
    prior = spd(rng, d)
    weights = rng.uniform(0.01, 0.25, size=count)
    args = dict(weights=weights, prior=prior, exclude=exclude)
    got = arm.greedy_logdet(features, pairs, k, lazy=lazy, **args)
    assert_same_selection(got, arm.greedy_logdet(features, pairs, k, lazy=False, **args))
    assert_sweeps(engines, lazy)
    assert not np.isin(np.flatnonzero(exclude), got.indices).any()
    assert len(set(got.indices.tolist())) == k
    # and the float64 reference's picks, gains and log det
    want_indices, want_gains, want_logdet = ref.greedy_logdet(features, pairs, k, **args)
    np.testing.assert_array_equal(got.indices, want_indices)
    np.testing.assert_allclose(got.gains, want_gains, rtol=1e-9, atol=1e-12)
    assert got.logdet == pytest.approx(want_logdet, rel=1e-9)


@pytest.mark.parametrize("lazy", SWEEPS)
def test_lazy_breaks_exact_ties_like_the_dense_sweep(rng, engines, lazy):
    # features on a small integer grid and equal weights: many pairs share exactly one score
    n, d, count = 120, 4, 4000
    features = rng.integers(-2, 3, size=(n, d)).astype(np.float64)
    pairs = random_pairs(rng, n, count)
    dense = arm.greedy_logdet(features, pairs, 200, prior=1.0, lazy=False)
    got = arm.greedy_logdet(features, pairs, 200, prior=1.0, lazy=lazy)
    assert_same_selection(got, dense)
    assert_sweeps(engines, lazy)
    # the first pick is the lowest index among the pairs of the largest |d|^2
    squared = ((features[pairs[:, 0]] - features[pairs[:, 1]]) ** 2).sum(axis=1)
    assert got.indices[0] == np.flatnonzero(squared == squared.max())[0]


@pytest.mark.parametrize("lazy", SWEEPS)
def test_lazy_on_rank_deficient_features(rng, engines, lazy):
    n, d, rank, count = 80, 12, 3, 2500
    features = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))
    pairs = random_pairs(rng, n, count)
    weights = rng.uniform(0.05, 0.25, size=count)
    k = 120  # far more steps than the features have directions
    dense = arm.greedy_logdet(features, pairs, k, weights=weights, prior=1e-3, lazy=False)
    assert_same_selection(
        arm.greedy_logdet(features, pairs, k, weights=weights, prior=1e-3, lazy=lazy), dense
    )
    assert_sweeps(engines, lazy)


# 2 to 5 members have compiled refresh loops of their own, 7 the generic one
@pytest.mark.parametrize("members", [2, 3, 4, 5, 7])
@pytest.mark.parametrize("lazy", SWEEPS)
def test_lazy_ensemble_equals_dense(rng, engines, lazy, members):
    n, d, count = 50, 6, 1000
    features = rng.normal(size=(members, n, d))
    rewards = rng.normal(size=(members, n))
    pairs = random_pairs(rng, n, count)
    labelled = pairs[:40]
    args = dict(features=features, pairs=pairs, k=80, rewards=rewards, labelled=labelled)
    dense = arm.select("ensemble-dopt-greedy", lazy=False, **args)
    assert_same_selection(arm.select("ensemble-dopt-greedy", lazy=lazy, **args), dense)
    # "auto" stays dense with several members whatever the size; True runs the lazy sweep
    assert_sweeps(engines, lazy, members)


@pytest.mark.parametrize("strategy", ["dopt-greedy", "past-dopt-greedy"])
def test_greedy_strategies_take_the_lazy_sweep(rng, engines, strategy):
    n, d, count = 70, 5, 2000
    features = rng.normal(size=(n, d))
    pairs = random_pairs(rng, n, count)
    args = dict(features=features, pairs=pairs, k=50, rewards=rng.normal(size=n))
    args["labelled"] = pairs[:30]
    dense = arm.select(strategy, lazy=False, **args)
    assert_same_selection(arm.select(strategy, lazy=True, **args), dense)
    assert_same_selection(arm.select(strategy, **args), dense)  # "auto", lazy here
    assert_sweeps(engines, True)
    assert_sweeps(engines, "auto")


def engine(features, pairs, weights, lazy, steps):
    """The greedy engine of (n, d) features and (P,) weights, or of E members' (E, n, d)
    features and (P, E) weights, ridge 1."""
    f = torch.as_tensor(features)
    f = f[None] if f.ndim == 2 else f
    p = torch.as_tensor(pairs)
    w = torch.as_tensor(weights)
    w = (w[:, None] if w.ndim == 1 else w).contiguous()
    priors = [_design.Prior.of_ridge(1.0, f.shape[2])] * w.shape[1]
    problem = _design.GreedyProblem(f, p, w, priors, lazy=lazy)
    return _design.greedy_engine(problem, steps=steps)[0]


def test_auto_is_lazy_on_large_cpu_pools_and_picks_the_same(rng, monkeypatch):
    # isotropic features and equal weights: scores fall together and late steps refresh most
    # pairs, the lazy sweep's hardest case
    n, d, count, k = 300, 8, 20000, 200
    features = rng.normal(size=(n, d))
    pairs = random_pairs(rng, n, count)
    weights = np.full(count, 0.25)
    dense = engine(features, pairs, weights, False, k)
    assert dense.lazy is None
    # below the sizes where it pays, "auto" is the dense sweep
    assert count < _launch.LAZY_MIN_PAIRS
    assert engine(features, pairs, weights, "auto", k).lazy is None
    want = dense.run(k)
    monkeypatch.setattr(_launch, "LAZY_MIN_PAIRS", count)
    monkeypatch.setattr(_launch, "LAZY_MIN_STEPS", k)
    assert engine(features, pairs, weights, "auto", k - 1).lazy is None
    for lazy in SWEEPS:
        sweep = engine(features, pairs, weights, lazy, k)
        assert sweep.lazy is not None
        got = sweep.run(k)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        # never more downdates than the dense sweep's P per step
        assert sweep.lazy.downdates <= count * (k - 1)


def test_auto_stays_dense_with_several_members(rng, monkeypatch):
    # a refresh reads every member's kept projections: bench_lazy.py's ensemble pool runs
    # slower lazily, so "auto" keeps the dense sweep whatever the size; True still runs it
    n, d, count, k, members = 120, 6, 5000, 40, 3
    features = rng.normal(size=(members, n, d))
    pairs = random_pairs(rng, n, count)
    weights = rng.uniform(0.01, 0.25, size=(count, members))
    monkeypatch.setattr(_launch, "LAZY_MIN_PAIRS", 1)
    monkeypatch.setattr(_launch, "LAZY_MIN_STEPS", 1)
    assert engine(features[0], pairs, weights[:, 0], "auto", k).lazy is not None
    auto = engine(features, pairs, weights, "auto", k)
    assert auto.lazy is None
    lazy = engine(features, pairs, weights, True, k)
    assert lazy.lazy is not None
    want, got = auto.run(k), lazy.run(k)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_lazy_refreshes_fewer_pairs_than_the_dense_sweep_touches(rng):
    # confident rewards: most pairs carry almost no weight and are never refreshed
    n, d, count, k = 400, 16, 30000, 60
    features = rng.normal(size=(n, d))
    pairs = random_pairs(rng, n, count)
    weights = _launch.fisher_weights(
        torch.as_tensor(rng.normal(size=(1, n)) * 20.0), torch.as_tensor(pairs)
    ).numpy()
    lazy = engine(features, pairs, weights, True, k)
    chosen, _ = lazy.run(k)
    assert torch.equal(chosen, engine(features, pairs, weights, False, k).run(k)[0])
    # (over 20 seeds at most 0.005 and 0.085 of the dense sweep's P k)
    assert lazy.lazy.refreshed < 0.05 * count * k
    assert lazy.lazy.downdates < 0.2 * count * k


@pytest.mark.parametrize("lazy", [False, True])
def test_no_refresh_on_a_well_conditioned_problem(rng, monkeypatch, lazy):
    # The drift check compares the chosen pair's running score with its fresh value and
    # recomputes the state when they differ: a downdate, coefficient or factor update that errs
    # is then repaired every step and never shows in the picks. On a well-conditioned problem
    # no refresh may fire, and without the check the same bits come out.
    n, d, count, k = 60, 6, 1500, 40
    features = rng.normal(size=(n, d))
    pairs = random_pairs(rng, n, count)
    weights = rng.uniform(0.05, 0.25, size=count)
    refreshes = []
    refresh_state = _design.refresh_state

    def counted(*args, **kwargs):
        refreshes.append(1)
        return refresh_state(*args, **kwargs)

    monkeypatch.setattr(_design, "refresh_state", counted)
    checked = arm.greedy_logdet(features, pairs, k, weights=weights, prior=1.0, lazy=lazy)
    assert refreshes == []
    monkeypatch.setattr(_design, "REFRESH_TOLERANCE", 0.0)  # no check: the running scores alone
    unchecked = arm.greedy_logdet(features, pairs, k, weights=weights, prior=1.0, lazy=lazy)
    assert_same_selection(unchecked, checked)
    want_indices, want_gains, _ = ref.greedy_logdet(features, pairs, k, weights=weights, prior=1.0)
    np.testing.assert_array_equal(unchecked.indices, want_indices)
    np.testing.assert_allclose(unchecked.gains, want_gains, rtol=1e-9, atol=1e-12)


def test_lazy_steps_compose_like_its_run(rng):
    n, d, count, k = 50, 6, 1200, 30
    features = rng.normal(size=(n, d))
    pairs = random_pairs(rng, n, count)
    weights = rng.uniform(0.05, 0.25, size=count)
    whole = engine(features, pairs, weights, True, k).run(k)
    stepped = engine(features, pairs, weights, True, k)
    chosen = torch.empty(k, dtype=torch.int64)
    gains = torch.empty(k, dtype=torch.float64)
    stepped.sweep(downdate=False)
    for step in range(k):
        stepped.apply(step, chosen, gains, prepare_next=step + 1 < k)
        if step + 1 < k:
            stepped.sweep(downdate=True)
    assert torch.equal(chosen, whole[0]) and torch.equal(gains, whole[1])


def test_lazy_argument_is_checked(rng):
    features = rng.normal(size=(10, 3))
    pairs = random_pairs(rng, 10, 20)
    for bad in ["yes", 1, None]:
        with pytest.raises(ValueError, match='lazy must be True, False or "auto"'):
            arm.greedy_logdet(features, pairs, 2, lazy=bad)
        with pytest.raises(ValueError, match="lazy"):
            arm.select(
                "dopt-greedy", features=features, pairs=pairs, k=2, rewards=features[:, 0], lazy=bad
            )


def test_lazy_that_would_not_fit_is_refused_or_left_dense(rng, monkeypatch):
    features = rng.normal(size=(30, 4))
    pairs = random_pairs(rng, 30, 200)
    monkeypatch.setattr(_launch, "available_memory", lambda: 1024)
    with pytest.raises(ValueError, match="lazy=True may need .* GiB"):
        arm.greedy_logdet(features, pairs, 10, lazy=True)
    weights = np.ones(200)
    assert engine(features, pairs, weights, "auto", 10).lazy is None
    assert_same_selection(
        arm.greedy_logdet(features, pairs, 10, lazy="auto"),
        arm.greedy_logdet(features, pairs, 10, lazy=False),
    )


@pytest.mark.skipif(not arm.build_info()["gpu_usable"], reason="no usable GPU: CUDA not run")
def test_on_cuda_auto_is_the_dense_sweep_and_true_is_refused(rng):
    features = torch.as_tensor(rng.normal(size=(40, 5)), device="cuda")
    pairs = torch.as_tensor(random_pairs(rng, 40, 500), device="cuda")
    dense = arm.greedy_logdet(features, pairs, 20, lazy=False)
    assert_same_selection(arm.greedy_logdet(features, pairs, 20, lazy="auto"), dense)
    with pytest.raises(ValueError, match="lazy=True runs on the CPU only"):
        arm.greedy_logdet(features, pairs, 20, lazy=True)
    on_cpu = arm.greedy_logdet(features.cpu(), pairs.cpu(), 20, lazy=True)
    assert torch.equal(on_cpu.indices, dense.indices.cpu())


# ---- the lazy= argument reaches the engine from every entry point ------------------------------


def entry_problem(seed=5, n=40, d=4, count=600, members=3):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d))
    member_features = rng.normal(size=(members, n, d))
    rewards = rng.normal(size=(members, n))
    pairs = random_pairs(rng, n, count)
    return features, member_features, rewards, pairs, pairs[:20]


def select_kwargs(strategy, features, member_features, rewards, labelled):
    return {
        "features": member_features if strategy == "ensemble-dopt-greedy" else features,
        "k": 12,
        "rewards": rewards,
        "labelled": labelled,
    }


def sweeps_taken(built) -> list:
    """The sweep every captured engine ran: "lazy" or "dense"."""
    return ["dense" if engine.lazy is None else "lazy" for _, engine in built]


@pytest.mark.parametrize("strategy", GREEDY)
def test_select_and_the_strategies_pass_lazy_to_the_engine(monkeypatch, strategy):
    # Fails if select, select_with_model or a greedy strategy drops lazy=: with the default
    # thresholds "auto" is dense on this pool, so a dropped True runs dense; with the thresholds
    # lowered "auto" is lazy (one member), so a dropped False runs lazily.
    features, member_features, rewards, pairs, labelled = entry_problem()
    kwargs = select_kwargs(strategy, features, member_features, rewards, labelled)
    built = capture_engines(monkeypatch)
    dense = arm.select(strategy, pairs=pairs, lazy=False, **kwargs)
    lazy = arm.select(strategy, pairs=pairs, lazy=True, **kwargs)
    assert sweeps_taken(built) == ["dense", "lazy"]
    assert [wanted for wanted, _ in built] == [False, True]
    assert_same_selection(lazy, dense)
    monkeypatch.setattr(_launch, "LAZY_MIN_PAIRS", 1)
    monkeypatch.setattr(_launch, "LAZY_MIN_STEPS", 1)
    del built[:]
    assert_same_selection(arm.select(strategy, pairs=pairs, lazy=False, **kwargs), dense)
    assert_same_selection(arm.select(strategy, pairs=pairs, **kwargs), dense)
    several = strategy == "ensemble-dopt-greedy"  # "auto" stays dense with several members
    assert sweeps_taken(built) == ["dense", "dense" if several else "lazy"]


def test_greedy_logdet_and_select_with_model_pass_lazy_to_the_engine(monkeypatch):
    from activerm_fast.model import RewardModel

    features, _, _, pairs, _ = entry_problem()
    built = capture_engines(monkeypatch)
    model = RewardModel(features.shape[1], hidden=(5,), ensemble=2, seed=1)
    embeddings = features.astype(np.float32)
    for lazy in (False, True):
        arm.greedy_logdet(features, pairs, 10, lazy=lazy)
        for strategy in ("dopt-greedy", "ensemble-dopt-greedy"):
            arm.select_with_model(strategy, model, embeddings, pairs, 10, lazy=lazy)
    assert sweeps_taken(built) == ["dense"] * 3 + ["lazy"] * 3
    monkeypatch.setattr(_launch, "LAZY_MIN_PAIRS", 1)
    monkeypatch.setattr(_launch, "LAZY_MIN_STEPS", 1)
    del built[:]
    arm.greedy_logdet(features, pairs, 10, lazy=False)
    arm.select_with_model("dopt-greedy", model, embeddings, pairs, 10, lazy=False)
    arm.greedy_logdet(features, pairs, 10)
    arm.select_with_model("dopt-greedy", model, embeddings, pairs, 10)
    assert sweeps_taken(built) == ["dense", "dense", "lazy", "lazy"]


def lazy_worker(rank: int, world: int) -> dict:
    """One rank of a gloo group (run as ``python tests/test_lazy.py RANK WORLD PORT OUT``,
    tests/gloo.py): the sweep each sharded entry point's engine ran for lazy=False, True and
    (thresholds lowered) the default, and the picks."""
    from activerm_fast import distributed

    monkeypatch = pytest.MonkeyPatch()
    built = capture_engines(monkeypatch)
    features, member_features, rewards, pairs, labelled = entry_problem()
    cut = [len(pairs) * r // world for r in range(world + 1)]
    mine = pairs[cut[rank] : cut[rank + 1]]
    result: dict = {}
    for lowered in (False, True):
        if lowered:
            monkeypatch.setattr(_launch, "LAZY_MIN_PAIRS", 1)
            monkeypatch.setattr(_launch, "LAZY_MIN_STEPS", 1)
        for lazy in (False, True, "auto"):
            for strategy in GREEDY:
                kwargs = select_kwargs(strategy, features, member_features, rewards, labelled)
                del built[:]
                sel = distributed.select(strategy, pairs=mine, lazy=lazy, **kwargs)
                result[(lowered, lazy, strategy)] = (sweeps_taken(built), sel.indices.tolist())
            del built[:]
            sel = distributed.greedy_logdet(features, mine, 10, lazy=lazy)
            result[(lowered, lazy, "greedy_logdet")] = (sweeps_taken(built), sel.indices.tolist())
    monkeypatch.undo()
    for strategy in GREEDY:  # one process's dense selection of the whole pool
        kwargs = select_kwargs(strategy, features, member_features, rewards, labelled)
        result[("want", strategy)] = arm.select(strategy, pairs=pairs, lazy=False, **kwargs)
        result[("want", strategy)] = result[("want", strategy)].indices.tolist()
    result[("want", "greedy_logdet")] = arm.greedy_logdet(features, pairs, 10).indices.tolist()
    return result


def test_the_sharded_path_passes_lazy_to_every_ranks_engine(tmp_path):
    # a real 2-rank gloo group: every rank's engine runs the sweep lazy= asks for (it fails if
    # distributed.select or distributed.greedy_logdet drops it) and picks one process's batch
    for result in gloo.run_ranks(__file__, 2, tmp_path, timeout=120):
        for name in [*GREEDY, "greedy_logdet"]:
            several = name == "ensemble-dopt-greedy"
            for lowered in (False, True):
                auto = "lazy" if lowered and not several else "dense"
                for lazy, sweep in ((False, "dense"), (True, "lazy"), ("auto", auto)):
                    taken, picks = result[(lowered, lazy, name)]
                    assert taken == [sweep], (name, lowered, lazy, taken)
                    assert picks == result[("want", name)], (name, lowered, lazy)


if __name__ == "__main__":
    gloo.main(lazy_worker)
