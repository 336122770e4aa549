"""The packaged ``hh-harmless-dev`` dataset: 1,156 human-labelled pairs of HH-RLHF harmless-base
(scripts/embed_hh_harmless.py), loaded by name like arena-bench and judged by pair accuracy."""

from __future__ import annotations

import numpy as np
import pytest

import activerm_fast as arm
from activerm_fast.data.dataset import HH_HARMLESS_DEV_FILE

pytestmark = pytest.mark.skipif(
    not HH_HARMLESS_DEV_FILE.is_file(), reason="hh_harmless_dev.npz is not packaged"
)


def test_loads_by_name_with_one_labelled_pair_per_prompt():
    hh = arm.load("hh-harmless-dev")
    assert hh.name == "hh-harmless-dev"
    assert (hh.n, hh.dim, hh.num_prompts) == (2312, 768, 1156)
    assert hh.gold is None and hh.pairs.shape == (1156, 2)
    assert set(np.unique(hh.labels).tolist()) == {0, 1}
    assert (hh.prompt_ids[hh.pairs[:, 0]] == hh.prompt_ids[hh.pairs[:, 1]]).all()
    assert len(np.unique(hh.prompt_ids[hh.pairs[:, 0]])) == 1156
    norms = np.linalg.norm(hh.embeddings[:, 384:], axis=1)  # MiniLM's unit-norm half
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)
    assert 0 < hh.test().num_prompts < hh.num_prompts


def test_a_campaign_on_it_reports_pair_accuracy():
    hh = arm.load("hh-harmless-dev")
    config = arm.LoopConfig(
        pool="within",
        rounds=2,
        per_round=20,
        prompts_per_round=60,
        ensemble=2,
        hidden=(16,),
        epochs=3,
        per_prompt=1,
    )
    for strategy in ("random", "dopt-greedy", "max-min"):
        records = arm.ActiveLoop(hh, strategy, config, seed=0).run()
        assert [r["labels"] for r in records] == [20, 40]
        assert 0.0 <= records[-1]["pair_accuracy"] <= 1.0
