"""Every strategy and the reward-head fit give the same bits on one thread and on two.

`simulate --jobs N` runs each worker on fewer threads than a serial run, and its records must
equal the serial run's; a float64 reduction split by thread (torch's sums of more than 32,768
elements are; MKL's small products were, until _threads.thread_stable_mm) would break that if
it moved a pick or a gain. Compared: every strategy's picks and their log-det gains, at a small
size (float32 features) and at one where torch splits its reductions (float64 features, whose
gains are float64), on within- and cross-prompt pools, with and without a per-prompt quota,
with the ensemble's spread and the Laplace head; and a fitted reward model's rewards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import activerm_fast as arm

SCRIPT = """
import json, numpy as np, activerm_fast as arm
rng = np.random.default_rng(11)
results = {}
# float32 features and float64 ones (whose gains are float64: every bit of them is compared)
for prompt_count, cross_count, dtype in ((200, 5_000, np.float32), (800, 100_000, np.float64)):
    prompts = np.repeat(np.arange(prompt_count), 10)
    n = prompts.shape[0]
    features = rng.normal(size=(3, n, 64)).astype(dtype)
    rewards = rng.normal(size=(3, n))
    prompt_features = rng.normal(size=(prompt_count, 16))[prompts]
    for pool_name, pool in (("within", arm.pairs.within_prompt(prompts)),
                            ("cross", arm.pairs.cross_prompt(prompts, cross_count, seed=5))):
        labelled, candidates = pool[:300], pool[300:]
        for name in sorted(arm.STRATEGIES):
            if pool_name == "cross" and name in arm.selection.field_rules.RULES:
                continue  # the field's rules choose inside a prompt
            for uncertainty in ("ensemble", "laplace"):
                for quota in (None, 1):
                    chosen = arm.select(name, features=features, pairs=candidates,
                                        labelled=labelled, rewards=rewards, k=80, seed=2,
                                        uncertainty=uncertainty, prompt_features=prompt_features,
                                        prompt_ids=prompts, per_prompt=quota)
                    results[f"{n} {pool_name} {name} {uncertainty} {quota}"] = [
                        np.asarray(chosen.indices).tolist(), np.asarray(chosen.gains).tolist()]
x = rng.normal(size=(3000, 256)).astype(np.float32)
pairs = arm.pairs.cross_prompt(np.repeat(np.arange(300), 10), 800, seed=1)
model = arm.RewardModel(256, (64, 64), ensemble=3, seed=0)
model.fit(x, pairs, (rng.random(800) < 0.5).astype(np.float32), epochs=4)
results["fit"] = model.rewards(x).ravel().tolist()
print(json.dumps([arm.build_info()["openmp_threads"], results]))
"""


def test_every_strategy_and_the_fit_are_thread_count_independent():
    runs = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        runs.append(json.loads(out.stdout))
    assert [run[0] for run in runs] == [1, 2]
    one, two = runs[0][1], runs[1][1]
    rules = len(arm.selection.field_rules.RULES)
    # at two sizes, every strategy on within-prompt pools and all but the field's rules on
    # cross-prompt ones, each with both uncertainties, with and without a quota; and the fit
    assert len(one) == 2 * (2 * len(arm.STRATEGIES) - rules) * 4 + 1
    differ = [key for key in one if one[key] != two[key]]
    assert differ == []
