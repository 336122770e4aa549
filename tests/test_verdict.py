"""simulate.verdicts: labels saved against random, with the seed spread, from round records."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from activerm_fast import data
from activerm_fast.cli import main
from activerm_fast.simulation.simulate import format_verdicts, verdicts
from activerm_fast.simulation.verdicts import student_t_quantile

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


def paired_interval_by_hand(differences):
    """(mean, half-width) of the 95% paired t interval, with SciPy's t quantile."""
    values = np.asarray(differences, dtype=float)
    if values.size < 2:
        return (values.mean() if values.size else np.nan), np.nan
    width = stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return values.mean(), width


def outcome_by_hand(records, strategy, baseline="random", metric="spearman"):
    """The documented rule (simulate.verdicts' docstring) recomputed from the records alone."""

    def runs(name):
        by_seed = {}
        for r in records:
            if r["strategy"] == name and metric in r:
                by_seed.setdefault(r["seed"], []).append((r["labels"], r[metric]))
        return {seed: sorted(points) for seed, points in by_seed.items()}

    base, mine = runs(baseline), runs(strategy)
    budget = max(points[-1][0] for points in base.values())
    target = np.mean([points[-1][1] for points in base.values()])
    base_needed = {seed: reached_at(p, target, budget) for seed, p in base.items()}
    needed = {seed: reached_at(p, target, budget) for seed, p in mine.items()}
    base_saving = budget - np.array(list(base_needed.values()))
    saving = budget - np.array(list(needed.values()))
    base_final = np.array([p[-1][1] for p in base.values()])
    final = np.array([p[-1][1] for p in mine.values()])
    shared = [seed for seed in mine if seed in base]
    paired = [
        paired_interval_by_hand([base_needed[s] - needed[s] for s in shared]),
        paired_interval_by_hand([mine[s][-1][1] - base[s][-1][1] for s in shared]),
    ]
    better = (
        saving.mean() - saving.std() > base_saving.mean() + base_saving.std()
        or final.mean() - final.std() > base_final.mean() + base_final.std()
        or any(mean - width > 0 for mean, width in paired)
    )
    worse = final.mean() + final.std() < base_final.mean() - base_final.std() or any(
        mean + width < 0 for mean, width in paired
    )
    if better and not worse:
        return "fewer labels", saving
    if worse and not better:
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
    # the baseline's own seeds in another order (every seed moved: in the same order they would
    # be the same run, which the paired test rightly tells apart once shifted), and shifted by
    # a tenth of their spread
    shuffled = np.roll(curves, int(rng.integers(1, len(curves))), axis=0)
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


def test_a_small_gain_on_every_seed_is_found_by_the_paired_test(rng):
    # every seed's test split moves all strategies alike by far more than the gain: the seed
    # spreads overlap, but on each seed the strategy is ahead
    slope = float(rng.uniform(5e-4, 1e-3))
    offsets = rng.normal(scale=0.1 * slope * 800, size=6)
    base = [slope * BUDGETS + offset for offset in offsets]
    gain = 0.02 * slope * 800
    records = curve_records("random", base)
    records += curve_records("ahead", [curve + gain * (1 + rng.uniform(0, 0.2)) for curve in base])
    records += curve_records("behind", [curve - gain * (1 + rng.uniform(0, 0.2)) for curve in base])
    found = {v.strategy: v for v in verdicts(records)}
    ahead, behind = found["ahead"], found["behind"]
    # the spreads alone would not tell: the final bands overlap
    assert ahead.final[0] - ahead.final[1] < ahead.baseline_final[0] + ahead.baseline_final[1]
    assert behind.final[0] + behind.final[1] > behind.baseline_final[0] - behind.baseline_final[1]
    assert ahead.outcome == "fewer labels" and behind.outcome == "more labels"
    assert ahead.paired_seeds == behind.paired_seeds == 6
    mean, width = ahead.paired_gain
    assert gain <= mean <= 1.2 * gain and 0 < width < mean
    finals = np.array([[curve[-1] for curve in base]])
    by_hand = paired_interval_by_hand(
        [r["spearman"] for r in records if r["strategy"] == "ahead" and r["labels"] == 800]
        - finals[0]
    )
    assert ahead.paired_gain == pytest.approx(by_hand)
    for name in found:
        assert found[name].outcome == outcome_by_hand(records, name)[0], name


def test_hand_derived_paired_intervals_over_the_shared_seeds():
    # budgets 100 and 200. random (seeds 0-2) ends at 0.5, 0.7, 0.6: target 0.6, which its
    # seeds reach at 200 (never), 100 + 100 * 0.2 / 0.3 = 166.7 and 200. "other" ran seeds 1-3;
    # seed 3 has no random run to pair with. Its seeds 1 and 2 reach 0.6 at 100 and at
    # 100 + 100 * 0.1 / 0.2 = 150: savings 66.7 and 50, mean 58.3, std 11.8, and with one degree
    # of freedom the half-width is 12.706 * 11.8 / sqrt(2) = 105.9. Final differences:
    # 0.72 - 0.7 = 0.02 and 0.7 - 0.6 = 0.1, mean 0.06, half-width 12.706 * 0.0566 / sqrt(2).
    two = np.array([100, 200])
    curves = {
        "random": {0: (0.4, 0.5), 1: (0.4, 0.7), 2: (0.5, 0.6)},
        "other": {1: (0.65, 0.72), 2: (0.5, 0.7), 3: (0.9, 0.95)},
    }
    records = [
        {"strategy": name, "seed": seed, "labels": int(labels), "spearman": value}
        for name, runs in curves.items()
        for seed, run in runs.items()
        for labels, value in zip(two, run, strict=True)
    ]
    (verdict,) = verdicts(records)
    assert verdict.paired_seeds == 2
    t1 = 12.706204736174698  # Student t, 1 degree of freedom, 0.975 quantile
    assert verdict.paired_saving == pytest.approx((175 / 3, t1 * np.sqrt(2) * 25 / 3 / np.sqrt(2)))
    assert verdict.paired_gain == pytest.approx((0.06, t1 * np.sqrt(0.0032) / np.sqrt(2)))
    # neither interval clears zero; the spreads decide: other's saving (100, 50 and 100 labels)
    # 83 +- 24 against random's own (0, 33 and 0) 11 +- 16
    assert verdict.outcome == outcome_by_hand(records, "other")[0] == "fewer labels"
    one = [r for r in records if not (r["strategy"] == "other" and r["seed"] == 1)]
    (alone,) = verdicts(one)
    assert alone.paired_seeds == 1 and np.isnan(alone.paired_saving[1])
    assert alone.paired_saving[0] == pytest.approx(50.0)
    assert "1 seed in common: no paired interval" in alone.line()


@pytest.mark.parametrize("df", [*range(1, 41), 57, 100, 333, 1000])
def test_student_t_quantile_matches_scipy(df):
    # far in the tail t moves ~1e-9 per float64 step of P(|T| <= t): rel 1e-10 is its precision
    for probability in (0.51, 0.6, 0.9, 0.975, 0.995, 0.99999):
        assert student_t_quantile(probability, df) == pytest.approx(
            stats.t.ppf(probability, df), rel=1e-10
        )


@pytest.mark.parametrize(
    ("probability", "df", "message"),
    [
        (0.5, 3, r"probability must be in \(0.5, 1\), got 0.5"),
        (1.0, 3, r"probability must be in \(0.5, 1\), got 1.0"),
        (float("nan"), 3, "probability must be in"),
        ("0.9", 3, "probability must be in"),
        (0.9, 0, "df must be an integer >= 1, got 0"),
        (0.9, 2.0, "df must be an integer >= 1, got 2.0"),
        (0.9, True, "df must be an integer >= 1, got True"),
        (0.9, -(10**30), "df must be an integer >= 1"),
    ],
)
def test_student_t_quantile_refuses_bad_arguments(probability, df, message):
    with pytest.raises(ValueError, match=message):
        student_t_quantile(probability, df)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_metric_that_is_not_a_number_is_refused_by_name(value):
    """A NaN was taken as a seed spread of NaN and printed as "no clear difference"."""
    records = [
        {"strategy": s, "seed": seed, "labels": n, "spearman": 0.1 * n + seed}
        for s in ("random", "xtx")
        for seed in (0, 1)
        for n in (4, 8)
    ]
    records[5]["spearman"] = value
    with pytest.raises(
        ValueError,
        match=rf"^records hold spearman={value} for strategy 'xtx', seed 0 at 8 labels; a "
        "verdict needs numbers$",
    ):
        verdicts(records)


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
