"""The relative ridge (lambda = c tr(F_L)/d) and the design's feature choice (hidden/embedding)."""

from __future__ import annotations

import json

import numpy as np
import oracles
import pytest

import activerm_fast as arm
from activerm_fast import data
from activerm_fast.cli import main
from activerm_fast.model import RewardModel
from activerm_fast.simulation import loop
from activerm_fast.simulation.loop import ActiveLoop, LoopConfig
from activerm_fast.testing import reference as ref

GREEDY = ("dopt-greedy", "past-dopt-greedy", "ensemble-dopt-greedy")


@pytest.fixture
def problem(rng):
    n, d = 80, 6
    prompt_ids = np.repeat(np.arange(20), 4)
    features = rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0, size=d)
    rewards = rng.normal(scale=1.5, size=(3, n))
    pool = arm.pairs.cross_prompt(prompt_ids, 600, seed=int(rng.integers(1 << 30)))
    labelled = pool[rng.choice(600, 40, replace=False)]
    return features, rewards, pool, labelled


def reference_ridge(c, features, rewards, pairs):
    """c tr(sum w d d^T)/d over ``pairs``, in NumPy from the reference kernels."""
    w = ref.fisher_weights(rewards, pairs)
    diff = ref.pair_diff(features, pairs)
    return c * float(w @ (diff**2).sum(axis=1)) / features.shape[1]


@pytest.mark.parametrize("strategy", GREEDY)
def test_relative_ridge_is_c_times_the_labelled_information_per_dimension(problem, rng, strategy):
    features, rewards, pool, labelled = problem
    c = float(rng.uniform(0.01, 2.0))
    common = {"features": features, "pairs": pool, "k": 12, "rewards": rewards}
    relative = arm.select(strategy, **common, labelled=labelled, ridge=c, ridge_mode="relative")
    lam = reference_ridge(c, features, rewards, labelled)
    absolute = arm.select(strategy, **common, labelled=labelled, ridge=lam)
    np.testing.assert_array_equal(relative.indices, absolute.indices)
    assert relative.logdet == pytest.approx(absolute.logdet, rel=1e-9)


def test_a_ridge_near_float64s_top_is_a_prior_not_an_overflow(problem):
    # the past-aware prior compares the information with the ridge times 2**k: it must not
    # compute that product where it overflows
    features, rewards, pool, labelled = problem
    common = {"features": features, "pairs": pool, "k": 5, "rewards": rewards}
    huge = arm.select("past-dopt-greedy", **common, labelled=labelled, ridge=1e300)
    lam = reference_ridge(1e300, features, rewards, labelled)
    relative = arm.select(
        "past-dopt-greedy", **common, labelled=labelled, ridge=1e300, ridge_mode="relative"
    )
    assert np.isfinite(huge.logdet) and np.isfinite(relative.logdet) and np.isfinite(lam)
    assert len(set(huge.indices.tolist())) == 5 == len(set(relative.indices.tolist()))


def test_relative_ridge_without_labels_uses_one_average_candidate(problem, rng):
    features, rewards, pool, _ = problem
    c = float(rng.uniform(0.01, 2.0))
    common = {"features": features, "pairs": pool, "k": 12, "rewards": rewards}
    relative = arm.select("dopt-greedy", **common, ridge=c, ridge_mode="relative")
    lam = reference_ridge(c, features, rewards, pool) / len(pool)
    absolute = arm.select("dopt-greedy", **common, ridge=lam)
    np.testing.assert_array_equal(relative.indices, absolute.indices)
    assert relative.logdet == pytest.approx(absolute.logdet, rel=1e-9)


@pytest.mark.parametrize("strategy", GREEDY)
def test_relative_ridge_makes_the_design_ignore_the_feature_scale(problem, rng, strategy):
    features, rewards, pool, labelled = problem
    # powers of two scale every float exactly, so the relative picks must be the same, bit for
    # bit; an absolute ridge of the same value weighs 2^24 times more at the small scale
    scale = 2.0 ** int(rng.integers(5, 8))

    def picks(mode):
        return [
            arm.select(
                strategy,
                features=f,
                pairs=pool,
                k=15,
                rewards=rewards,
                labelled=labelled,
                ridge=1.0,
                ridge_mode=mode,
            ).indices
            for f in (features / scale, features * scale)
        ]

    np.testing.assert_array_equal(*picks("relative"))
    small, large = picks("absolute")
    assert not np.array_equal(small, large)


def test_relative_ridge_needs_pairs_with_information(rng):
    features = np.ones((10, 3))
    pool = np.array([[0, 1], [2, 3], [4, 5]])
    with pytest.raises(ValueError, match="ridge_mode='relative'.*Fisher information"):
        arm.select("xtx", features=features, pairs=pool, k=1, ridge=0.1, ridge_mode="relative")


def test_unknown_ridge_mode_and_features_are_refused(problem):
    features, rewards, pool, _ = problem
    with pytest.raises(ValueError, match="ridge_mode 'scaled'"):
        arm.select("xtx", features=features, pairs=pool, k=2, ridge_mode="scaled")
    model = RewardModel(features.shape[1], hidden=(5,), ensemble=2, seed=0)
    with pytest.raises(ValueError, match="features 'raw'"):
        arm.select_with_model("dopt-greedy", model, features, pool, 2, features="raw")


@pytest.mark.parametrize("strategy", GREEDY)
def test_embedding_features_design_on_the_embeddings_with_the_models_weights(
    problem, rng, strategy
):
    embeddings, _, pool, labelled = problem
    model = RewardModel(embeddings.shape[1], hidden=(9,), ensemble=3, seed=int(rng.integers(99)))
    rewards = np.asarray(model.rewards(embeddings.astype(np.float32)))
    got = arm.select_with_model(
        strategy,
        model,
        embeddings.astype(np.float32),
        pool,
        10,
        labelled=labelled,
        features="embedding",
    )
    want = arm.select(
        strategy,
        features=embeddings.astype(np.float32),
        pairs=pool,
        k=10,
        rewards=rewards,
        labelled=labelled,
    )
    np.testing.assert_array_equal(got.indices, want.indices)
    # the rule itself, brute force in float64: the embeddings as every member's features, the
    # model's Fisher weights (each member's own for the ensemble), labelled pairs never chosen
    shown = embeddings.astype(np.float32).astype(np.float64)
    indices, gains, logdet = oracles.greedy_selection(
        strategy, shown, rewards, pool, 10, labelled=labelled
    )
    np.testing.assert_array_equal(got.indices, indices)
    np.testing.assert_allclose(got.gains, gains, rtol=1e-9, atol=1e-12)
    assert got.logdet == pytest.approx(logdet, rel=1e-9)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ridge_mode": "scaled"}, "ridge_mode"),
        ({"features": "raw"}, "features"),
        ({"ridge": 0.0}, "ridge must be a positive"),
        ({"ridge": float("nan")}, "ridge must be a positive"),
    ],
)
def test_loop_config_checks_the_design_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        LoopConfig(**overrides)


def test_loop_hands_its_design_settings_to_the_selection(monkeypatch, rng):
    dataset = data.synthetic(
        num_train_prompts=30, num_test_prompts=6, test_responses_per_prompt=6, dim=5, seed=1
    )
    config = LoopConfig(
        rounds=2,
        per_round=8,
        prompts_per_round=20,
        cross_pairs=500,
        ensemble=2,
        hidden=(8,),
        epochs=3,
        ridge=float(rng.uniform(0.01, 1.0)),
        ridge_mode="relative",
        features="embedding",
    )
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return arm.select_with_model(*args, **kwargs)

    monkeypatch.setattr(loop, "select_with_model", spy)
    records = ActiveLoop(dataset, "past-dopt-greedy", config, seed=0).run()
    assert [r["labels"] for r in records] == [8, 16]
    # the first round is random (no model yet); the second designs with the configured settings
    assert len(seen) == 1
    assert (seen[0]["ridge"], seen[0]["ridge_mode"], seen[0]["features"]) == (
        config.ridge,
        "relative",
        "embedding",
    )


def test_simulate_command_passes_the_design_settings(tmp_path, capsys):
    path = tmp_path / "small.npz"
    data.synthetic(
        num_train_prompts=30, num_test_prompts=6, test_responses_per_prompt=6, dim=5, seed=2
    ).save(path)
    out = tmp_path / "sim"
    settings = ["--ridge", "0.25", "--ridge-mode", "relative", "--features", "embedding"]
    sizes = ["--rounds", "2", "--per-round", "6", "--seeds", "1", "--prompts-per-round", "15"]
    args = ["simulate", "--dataset", str(path), "--strategies", "dopt-greedy", *sizes]
    assert main([*args, "--cross-pairs", "400", *settings, "--out", str(out), "--no-progress"]) == 0
    state = json.loads((out / "checkpoints" / "dopt-greedy-seed0" / "state.json").read_text())
    config = state["identity"]["config"]
    assert (config["ridge"], config["ridge_mode"], config["features"]) == (
        0.25,
        "relative",
        "embedding",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ridge", "0"], "argument --ridge: must be a positive finite number, got 0"),
        (["--ridge", "tiny"], "argument --ridge: must be a positive finite number, got tiny"),
        (["--ridge", "inf"], "argument --ridge: must be a positive finite number, got inf"),
        (["--ridge-mode", "scaled"], "argument --ridge-mode: invalid choice: 'scaled'"),
        (["--features", "raw"], "argument --features: invalid choice: 'raw'"),
    ],
)
def test_bad_design_settings_end_in_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
