"""simulate.verdicts: labels saved against random, with the seed spread, from round records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from activerm_fast import data
from activerm_fast.cli import main
from activerm_fast.simulation.simulate import format_verdicts, verdicts

BUDGETS = np.arange(100, 900, 100)


def curve_records(strategy, values_by_seed):
    return [
        {"strategy": strategy, "seed": seed, "labels": int(labels), "spearman": float(value)}
        for seed, values in enumerate(values_by_seed)
        for labels, value in zip(BUDGETS, values, strict=True)
    ]


def linear_curves(rng, slope, seeds=5, noise=0.002):
    """Curves rising as slope * labels, with a little seed noise."""
    return [slope * BUDGETS + rng.normal(scale=noise, size=BUDGETS.size) for _ in range(seeds)]


def reached_at(points, target, budget):
    """By hand: the labels at which sorted (labels, value) points first reach ``target``, on the
    straight line between the two budgets around it; ``budget`` when they never do."""
    labels = np.array([x for x, _ in points], dtype=float)
    values = np.array([y for _, y in points], dtype=float)
    hits = np.flatnonzero(values >= target)
    if hits.size == 0:
        return float(budget)
    i = int(hits[0])
    if i == 0:
        return float(labels[0])
    return float(np.interp(target, values[i - 1 : i + 1], labels[i - 1 : i + 1]))


def outcome_by_hand(records, strategy, baseline="random", metric="spearman"):
    """The documented rule (simulate.verdicts' docstring) recomputed from the records alone."""

    def runs(name):
        by_seed = {}
        for r in records:
            if r["strategy"] == name and metric in r:
                by_seed.setdefault(r["seed"], []).append((r["labels"], r[metric]))
        return [sorted(points) for points in by_seed.values()]

    base, mine = runs(baseline), runs(strategy)
    budget = max(points[-1][0] for points in base)
    target = np.mean([points[-1][1] for points in base])
    base_saving = budget - np.array([reached_at(p, target, budget) for p in base])
    saving = budget - np.array([reached_at(p, target, budget) for p in mine])
    base_final = np.array([p[-1][1] for p in base])
    final = np.array([p[-1][1] for p in mine])
    if saving.mean() - saving.std() > base_saving.mean() + base_saving.std():
        return "fewer labels", saving
    if final.mean() - final.std() > base_final.mean() + base_final.std():
        return "fewer labels", saving
    if final.mean() + final.std() < base_final.mean() - base_final.std():
        return "more labels", saving
    return "no clear difference", saving


def test_a_strategy_twice_as_fast_saves_half_the_budget(rng):
    slope = float(rng.uniform(5e-4, 1e-3))
    records = curve_records("random", linear_curves(rng, slope))
    records += curve_records("fast", linear_curves(rng, 2 * slope))
    (verdict,) = verdicts(records)
    assert verdict.strategy == "fast" and verdict.outcome == "fewer labels"
    saved, spread = verdict.saving
    # random's final value is about slope * 800: the fast curve gets there at about 400
    assert abs(saved - 400) < 20 and spread < 20
    assert verdict.reached == 5
    assert "fast: FEWER LABELS" in format_verdicts(records)


def test_a_strategy_that_ends_clearly_lower_needs_more_labels(rng):
    slope = float(rng.uniform(5e-4, 1e-3))
    records = curve_records("random", linear_curves(rng, slope))
    records += curve_records("slow", linear_curves(rng, 0.5 * slope))
    (verdict,) = verdicts(records)
    assert verdict.outcome == "more labels" and verdict.reached == 0
    assert verdict.saving == (0.0, 0.0)  # never reached: counted at the budget, no credit
    assert "slow: MORE LABELS" in format_verdicts(records)


def test_overlapping_seed_spreads_are_no_clear_difference(rng):
    slope = float(rng.uniform(5e-4, 1e-3))
    noisy = 0.1 * slope * 800  # seed noise of a tenth of the final value
    curves = linear_curves(rng, slope, noise=noisy)
    records = curve_records("random", curves)
    # the baseline's own seeds in another order, and shifted by a tenth of their spread
    shuffled = [curves[i] for i in rng.permutation(len(curves))]
    records += curve_records("same", shuffled)
    shift = 0.1 * float(np.std([curve[-1] for curve in curves]))
    records += curve_records("bit-better", [curve + shift for curve in shuffled])
    found = {v.strategy: v for v in verdicts(records)}
    assert found["same"].outcome == "no clear difference"
    assert found["same"].saving == pytest.approx(
        (800 - np.mean(found["same"].baseline_needed), np.std(found["same"].baseline_needed))
    )
    assert found["bit-better"].outcome == "no clear difference"
    # the labels each seed needs, read off its curve by hand: the baseline's, and the same
    # curves' under "same" (another order, the same numbers)
    target = np.mean([curve[-1] for curve in curves])
    by_hand = [reached_at(list(zip(BUDGETS, curve, strict=True)), target, 800) for curve in curves]
    assert found["same"].baseline_needed == pytest.approx(by_hand)
    assert sorted(found["same"].needed) == pytest.approx(sorted(by_hand))
    assert found["same"].saving == pytest.approx((800 - np.mean(by_hand), np.std(by_hand)))
    for name in ("same", "bit-better"):
        assert outcome_by_hand(records, name)[0] == "no clear difference"


def test_hand_derived_verdicts_of_two_seeds():
    # budgets 100 and 200; random ends at 0.5 and 0.7, target 0.6, its seeds reach 0.6 at 200
    # (never: the budget) and 100 + 100 * (0.6 - 0.4) / (0.7 - 0.4) = 166.7: savings 0 and 33.3,
    # mean 16.7 +- 16.7. Its final mean is 0.6 +- 0.1.
    two = np.array([100, 200])
    curves = {
        "random": [(0.4, 0.5), (0.4, 0.7)],
        # reach 0.6 at 100 on both seeds: saving 100 +- 0 > 16.7 + 16.7
        "early": [(0.6, 0.6), (0.65, 0.62)],
        # never reach 0.6 (saving 0 +- 0) and end at 0.3 +- 0.05 < 0.6 - 0.1
        "late": [(0.2, 0.25), (0.2, 0.35)],
        # seed 0 reaches 0.6 at 150, seed 1 never: saving 25 +- 25, which is not above
        # 16.7 + 16.7; ends at 0.6 +- 0.05: within random's spread
        "mixed": [(0.5, 0.7), (0.5, 0.5)],
        # reaches 0.6 at 100 + 100 * 0.3 / 0.61 = 149.2 and 150.8: saving 50 +- 0.8 > 33.3
        "steep": [(0.3, 0.91), (0.3, 0.89)],
    }
    records = [
        {"strategy": name, "seed": seed, "labels": int(labels), "spearman": value}
        for name, runs in curves.items()
        for seed, run in enumerate(runs)
        for labels, value in zip(two, run, strict=True)
    ]
    found = {v.strategy: v for v in verdicts(records)}
    assert found["early"].outcome == "fewer labels"
    assert found["early"].needed == (100.0, 100.0) and found["early"].reached == 2
    assert found["late"].outcome == "more labels" and found["late"].reached == 0
    assert found["mixed"].outcome == "no clear difference"
    assert found["mixed"].needed == pytest.approx((150.0, 200.0))
    assert found["steep"].outcome == "fewer labels"
    assert found["steep"].needed == pytest.approx((100 + 3e3 / 61, 100 + 3e3 / 59))
    assert found["early"].baseline_needed == pytest.approx((200.0, 500 / 3))
    assert found["mixed"].saving == pytest.approx((25.0, 25.0))
    for name, verdict in found.items():
        assert verdict.outcome == outcome_by_hand(records, name)[0], name
        assert verdict.target == pytest.approx(0.6)


def test_hand_derived_verdicts_by_the_final_values():
    # random's seeds need 200 (never) and 100 labels for its target 0.6: savings 0 and 100,
    # 50 +- 50, so no strategy can beat 50 + 50 on savings (nothing needs fewer than 100);
    # the final values decide, against random's 0.6 +- 0.1
    two = np.array([100, 200])
    curves = {
        "random": [(0.55, 0.5), (0.65, 0.7)],
        "higher": [(0.5, 0.9), (0.5, 0.9)],  # 0.9 - 0 > 0.6 + 0.1: fewer labels
        "lower": [(0.2, 0.3), (0.2, 0.45)],  # 0.375 + 0.075 < 0.6 - 0.1: more labels
        "close": [(0.5, 0.75), (0.5, 0.55)],  # 0.65 +- 0.1 overlaps: no clear difference
    }
    records = [
        {"strategy": name, "seed": seed, "labels": int(labels), "spearman": value}
        for name, runs in curves.items()
        for seed, run in enumerate(runs)
        for labels, value in zip(two, run, strict=True)
    ]
    found = {v.strategy: v.outcome for v in verdicts(records)}
    want = {"higher": "fewer labels", "lower": "more labels", "close": "no clear difference"}
    assert found == want
    assert {name: outcome_by_hand(records, name)[0] for name in want} == want


def test_labels_needed_interpolate_between_budgets():
    # random ends at 0.5 on every seed; the other reaches 0.5 halfway between 300 and 400
    random_curve = np.linspace(0.1, 0.5, BUDGETS.size)
    other = np.interp(BUDGETS, [100, 300, 400, 800], [0.2, 0.45, 0.55, 0.7])
    records = curve_records("random", [random_curve] * 3) + curve_records("other", [other] * 3)
    (verdict,) = verdicts(records)
    assert verdict.needed == (350.0, 350.0, 350.0) and verdict.baseline_needed == (800.0,) * 3


def test_refuses_records_without_the_baseline():
    with pytest.raises(ValueError, match="records is empty"):
        verdicts([])
    only = curve_records("bald", [np.linspace(0, 1, BUDGETS.size)])
    with pytest.raises(ValueError, match=r"no 'spearman' of the baseline 'random'.*\['bald'\]"):
        verdicts(only)


def test_simulate_prints_a_verdict_per_strategy(tmp_path, capsys):
    path = tmp_path / "small.npz"
    data.synthetic(
        num_train_prompts=30, num_test_prompts=6, test_responses_per_prompt=10, dim=6, seed=1
    ).save(path)
    args = ["simulate", "--dataset", str(path), "--strategies", "random", "bal-pm", "xtx"]
    args += ["--rounds", "2", "--per-round", "10", "--seeds", "2", "--prompts-per-round", "15"]
    args += ["--cross-pairs", "500", "--ensemble", "2", "--out", str(tmp_path / "out")]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Will a strategy save labels? Target: random's final spearman" in printed
    records = json.loads((tmp_path / "out" / "results.json").read_text())
    words = {
        "fewer labels": "FEWER LABELS",
        "more labels": "MORE LABELS",
        "no clear difference": "no clear difference",
    }
    for strategy in ("bal-pm", "xtx"):
        line = next(row for row in printed.splitlines() if row.startswith(f"{strategy}: "))
        assert any(word in line for word in ("FEWER LABELS", "MORE LABELS", "no clear difference"))
        # the verdict printed is the rule's, recomputed by hand from the run's saved records
        outcome, _ = outcome_by_hand(records, strategy)
        assert line.startswith(f"{strategy}: {words[outcome]}"), (line, outcome)
