"""simulate.verdicts: labels saved against random, with the seed spread, from round records."""

from __future__ import annotations

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
    for strategy in ("bal-pm", "xtx"):
        line = next(row for row in printed.splitlines() if row.startswith(f"{strategy}: "))
        assert any(word in line for word in ("FEWER LABELS", "MORE LABELS", "no clear difference"))
