"""BAL-PM: the BALD term plus the prompt-entropy bonus, picked greedily."""

from __future__ import annotations

import numpy as np
import oracles
import pytest
import torch

import activerm_fast as arm
from activerm_fast import data
from activerm_fast.data import annotation
from activerm_fast.testing import SelectionInputs, bal_pm


def prompt_problem(rng, prompts=12, per_prompt=4, dim=5, members=3):
    """Responses grouped by prompt, each prompt at a random point; an ensemble's rewards."""
    prompt_ids = np.repeat(np.arange(prompts), per_prompt)
    centres = rng.normal(size=(prompts, 6))
    features = rng.normal(size=(prompt_ids.size, dim))
    rewards = rng.normal(scale=2.0, size=(members, prompt_ids.size))
    pool = arm.pairs.cross_prompt(prompt_ids, 300, seed=int(rng.integers(1 << 30)))
    return prompt_ids, centres[prompt_ids], features, rewards, pool


def inputs_of(features, pairs, rewards, labelled=None, prompt_features=None):
    """The SelectionInputs select() builds, for calling bal_pm.choose with other settings."""
    pairs = torch.as_tensor(pairs)
    excluded = None
    if labelled is not None:
        done = {tuple(sorted(row)) for row in np.asarray(labelled).tolist()}
        excluded = torch.tensor([tuple(sorted(row)) in done for row in pairs.tolist()])
        labelled = torch.as_tensor(labelled)
    return SelectionInputs(
        members=torch.as_tensor(features)[None],
        pairs=pairs,
        rewards=torch.as_tensor(rewards),
        labelled=labelled,
        excluded=excluded,
        ridge=1e-3,
        seed=0,
        strategy="bal-pm",
        prompt_features=None if prompt_features is None else torch.as_tensor(prompt_features),
    )


def test_without_the_bonus_it_picks_by_the_bald_term(rng):
    _, prompts, features, rewards, pool = prompt_problem(rng)
    labelled = pool[rng.choice(len(pool), 20, replace=False)]
    inputs = inputs_of(features, pool, rewards, labelled, prompts)
    chosen, rows = bal_pm.choose(inputs, 25, beta=0.0)
    bald = arm.select(
        "bald", features=features, pairs=pool, k=25, rewards=rewards, labelled=labelled
    )
    np.testing.assert_array_equal(chosen.numpy(), bald.indices)
    np.testing.assert_array_equal(rows.numpy(), pool[bald.indices])


def test_the_bonus_favours_an_unacquired_far_prompt(rng):
    # equal rewards: every pair has the same (zero) BALD term, so only the bonus decides
    near = rng.normal(scale=0.1, size=(8, 3))
    far = rng.normal(size=3) + 20.0
    prompt_points = np.vstack([near, far])
    prompt_ids = np.repeat(np.arange(9), 2)
    within = arm.pairs.within_prompt(prompt_ids)  # one pair per prompt: (2p, 2p + 1)
    labelled = within[:4]  # prompts 0..3 acquired
    features = rng.normal(size=(18, 4))
    level = np.zeros((2, 18))
    inputs = inputs_of(features, within, level, labelled, prompt_points[prompt_ids])
    chosen, _ = bal_pm.choose(inputs, 1)
    assert int(chosen[0]) == 8  # the far prompt's pair


@pytest.mark.parametrize("neighbours", [1, 3])
def test_with_tied_uncertainty_a_prompt_returns_only_after_k_acquisitions(rng, neighbours):
    # the k-th nearest acquired prompt of a prompt acquired k times is itself (distance 0):
    # such a prompt ranks below every other, so k passes over the prompts come one after another
    prompts = int(rng.integers(4, 9))
    prompt_ids = np.repeat(np.arange(prompts), 2 * neighbours + 1)
    within = arm.pairs.within_prompt(prompt_ids)
    points = rng.normal(size=(prompts, 4))[prompt_ids]
    level = np.zeros((3, prompt_ids.size))
    inputs = inputs_of(rng.normal(size=(prompt_ids.size, 2)), within, level, None, points)
    _, rows = bal_pm.choose(inputs, prompts * neighbours, neighbours=neighbours)
    order = prompt_ids[rows.numpy()[:, 0]]
    counts = np.bincount(order, minlength=prompts)
    assert (counts == neighbours).all()
    if neighbours == 1:
        assert len(set(order.tolist())) == prompts


def test_nearest_acquired_counts_multiplicity(rng):
    points = torch.from_numpy(rng.normal(size=(30, 3)))
    counts = torch.from_numpy(rng.integers(0, 3, size=30))
    k = int(rng.integers(1, 7))
    got = bal_pm._nearest_acquired(points, counts, k).numpy()
    distance = np.linalg.norm(points.numpy()[:, None] - points.numpy()[None], axis=2)
    repeated = np.repeat(distance, counts.numpy(), axis=1)
    want = np.full((30, k), np.inf)
    take = min(k, repeated.shape[1])
    want[:, :take] = np.sort(repeated, axis=1)[:, :take]
    # distances come from a matrix product: a point's distance to itself is ~1e-8, not 0
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-6)


def test_picks_are_deterministic_and_do_not_depend_on_the_prompt_features_unit(rng):
    _, prompts, features, rewards, pool = prompt_problem(rng)
    labelled = pool[:15]

    def run(scale):
        return arm.select(
            "bal-pm",
            features=features,
            pairs=pool,
            k=30,
            rewards=rewards,
            labelled=labelled,
            prompt_features=prompts * scale,
        ).indices

    first = run(1.0)
    np.testing.assert_array_equal(first, run(1.0))
    np.testing.assert_array_equal(first, run(2.0**40))
    assert not set(first.tolist()) & set(range(15))


def test_without_prompt_features_each_response_is_its_own_prompt(rng):
    _, _, features, rewards, pool = prompt_problem(rng)
    kwargs = {"features": features, "pairs": pool, "k": 20, "rewards": rewards}
    np.testing.assert_array_equal(
        arm.select("bal-pm", **kwargs).indices,
        arm.select("bal-pm", prompt_features=features, **kwargs).indices,
    )


def test_invalid_arguments_are_refused(rng):
    _, prompts, features, rewards, pool = prompt_problem(rng)
    kwargs = {"features": features, "pairs": pool, "k": 5, "rewards": rewards}
    with pytest.raises(ValueError, match=r"prompt_features must have one row per response \(48\)"):
        arm.select("bal-pm", prompt_features=prompts[:-1], **kwargs)
    bad = prompts.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="prompt_features"):
        arm.select("bal-pm", prompt_features=bad, **kwargs)
    with pytest.raises(ValueError, match="needs rewards of an ensemble of at least 2"):
        arm.select("bal-pm", features=features, pairs=pool, k=5, rewards=rewards[0])
    inputs = inputs_of(features, pool, rewards, None, prompts)
    with pytest.raises(ValueError, match=r"beta must be a finite number >= 0, got -1.0"):
        bal_pm.choose(inputs, 5, beta=-1.0)
    with pytest.raises(TypeError, match="beta must be a number, got bool"):
        bal_pm.choose(inputs, 5, beta=True)
    with pytest.raises(ValueError, match="neighbours must be a positive integer, got 0"):
        bal_pm.choose(inputs, 5, neighbours=0)


def test_the_annotation_step_places_prompts_by_the_datasets_prompt_features(rng, tmp_path):
    dataset = data.synthetic(
        num_train_prompts=20,
        num_test_prompts=4,
        test_responses_per_prompt=6,
        dim=5,
        kind="realistic",
    )
    pool = arm.pairs.cross_prompt(dataset.prompt_ids, 400, seed=int(rng.integers(1 << 30)))
    labelled = pool[:30]
    labels = rng.integers(0, 2, size=30)
    model_path = tmp_path / "model.pt"
    batch, _ = annotation.next_batch(
        dataset, labelled, labels, 10, strategy="bal-pm", ensemble=2, model_path=model_path
    )
    plan = annotation.plan_batch(
        dataset, labelled, labels, strategy="bal-pm", model_path=model_path, reuse_model=True
    )
    candidates = arm.pairs.candidate_pool(dataset.prompt_ids, "cross", 200_000, 0)
    chosen = arm.select(
        "bal-pm",
        features=plan.features,
        pairs=candidates,
        k=10,
        rewards=plan.rewards,
        labelled=labelled,
        prompt_features=dataset.prompt_features()[dataset.prompt_ids],
    )
    np.testing.assert_array_equal(batch, candidates[chosen.indices])
    # and what the rule itself picks on the model's rewards and the dataset's prompt features
    want = oracles.bal_pm_selection(
        dataset.prompt_features()[dataset.prompt_ids], candidates, plan.rewards, 10, labelled
    )
    np.testing.assert_array_equal(batch, candidates[want])


@pytest.mark.parametrize(("beta", "neighbours"), [(0.0, 5), (1.0, 1), (1.0, 2), (1.0, 5), (4.0, 3)])
@pytest.mark.parametrize("with_labelled", [False, True])
def test_matches_a_brute_force_oracle_on_a_tiny_pool(rng, beta, neighbours, with_labelled):
    # oracles.bal_pm_selection re-implements the documented rule plainly (every distance afresh
    # each pick, no kept neighbour lists): the picks must be the same, in the same order
    prompt_ids = np.repeat(np.arange(7), 3)
    points = rng.normal(size=(7, 2))[prompt_ids]
    features = rng.normal(size=(21, 3))
    rewards = rng.normal(scale=1.5, size=(3, 21))
    pool = arm.pairs.all_pairs(21)[rng.choice(210, 90, replace=False)]
    labelled = pool[:6] if with_labelled else None
    inputs = inputs_of(features, pool, rewards, labelled, points)
    chosen, rows = bal_pm.choose(inputs, 20, beta=beta, neighbours=neighbours)
    want = oracles.bal_pm_selection(
        points, pool, rewards, 20, labelled=labelled, beta=beta, neighbours=neighbours
    )
    assert chosen.tolist() == want
    np.testing.assert_array_equal(rows.numpy(), pool[want])


def test_select_is_the_brute_force_oracle_with_and_without_prompt_features(rng):
    prompt_ids = np.repeat(np.arange(6), 4)
    points = rng.normal(size=(6, 3))[prompt_ids]
    features = rng.normal(size=(24, 4))
    rewards = rng.normal(scale=2.0, size=(4, 24))
    pool = arm.pairs.cross_prompt(prompt_ids, 120, seed=int(rng.integers(1 << 30)))
    labelled = pool[:8]
    kwargs = {"features": features, "pairs": pool, "k": 25, "rewards": rewards}
    got = arm.select("bal-pm", labelled=labelled, prompt_features=points, **kwargs)
    want = oracles.bal_pm_selection(points, pool, rewards, 25, labelled=labelled)
    assert got.indices.tolist() == want
    # without prompt features every response is its own prompt, at its feature
    got = arm.select("bal-pm", **kwargs)
    assert got.indices.tolist() == oracles.bal_pm_selection(features, pool, rewards, 25)
