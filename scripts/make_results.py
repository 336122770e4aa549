"""Produce docs/RESULTS.md and its plots: every strategy on synthetic data and arena-bench.

    python scripts/make_results.py [--seeds 5] [--arena-seeds 3] [--rounds 8] [--per-round 100]
                                   [--out results]

Raw per-round records and checkpoints go to --out (rerunning resumes); the report and the
learning-curve PNGs go to docs/. Every number in the report is computed from the records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from study_defaults import section_of  # scripts/ is on sys.path when run

from activerm_fast import data
from activerm_fast.selection import STRATEGIES
from activerm_fast.simulation.loop import LoopConfig
from activerm_fast.simulation.plot import learning_curves
from activerm_fast.simulation.simulate import simulate, summarize, verdicts

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOPT = ("dopt-topk", "dopt-greedy", "past-dopt-topk", "past-dopt-greedy", "ensemble-dopt-greedy")
ORDER = ("random", "entropy", "max-gap", "bald", "bal-pm", "coreset", "xtx", *DOPT)
# the strategies compared on within-prompt pools as well: random, BAL-PM and the D-optimal ones
WITHIN = ("random", "bal-pm", *DOPT)


def datasets() -> dict[str, data.Dataset]:
    return {
        "synthetic": data.synthetic(seed=0, **data.REALISTIC_SYNTHETIC),
        "arena-bench": data.load("arena-bench"),
    }


def synthetic_description() -> str:
    """What the synthetic data is, with the generator's own settings."""
    fitted = data.spectrum_exponent(data.load("arena-bench").embeddings)
    options = ", ".join(f"{key}={value!r}" for key, value in data.REALISTIC_SYNTHETIC.items())
    return (
        f"The synthetic data is `data.synthetic(seed=0, {options})`: shaped like real "
        "embeddings, with an anisotropic covariance whose eigenvalues fall as rank^-alpha, "
        f"alpha = {data.ARENA_BENCH_EXPONENT} (arena-bench's embeddings give "
        f"{fitted:.3f}: `python scripts/fit_embedding_spectrum.py`), prompt clusters of unequal "
        "size and spread, near-duplicate responses and a golden reward that depends on a few "
        'directions through tanh. The earlier isotropic generator (`kind="isotropic"`, where '
        "random sampling is already near-optimal) remains available."
    )


def final(summary: dict, strategy: str) -> tuple[float, float]:
    by_labels = summary[strategy]
    mean, std, _ = by_labels[max(by_labels)]
    return mean, std


def labels_to_reach(summary: dict, strategy: str, target: float) -> int | None:
    """Fewest labels at which the strategy's mean Spearman reaches ``target``."""
    for labels, (mean, _, _) in sorted(summary[strategy].items()):
        if mean >= target:
            return labels
    return None


def area(summary: dict, strategy: str) -> float:
    """Mean Spearman over the budgets (area under the learning curve / its width)."""
    return float(np.mean([m for m, _, _ in summary[strategy].values()]))


def curves_section(name: str, records: list[dict], png: str) -> list[str]:
    summary = summarize(records, "spearman")
    quantile_key = max(
        (k for k in records[0] if k.endswith("_quantile")), key=lambda k: int(k.split("_")[2])
    )
    bon = summarize(records, quantile_key)
    target, _ = final(summary, "random")
    budget = max(summary["random"])
    lines = [
        f"### {name}: every strategy, cross-prompt pools",
        "",
        f"![learning curves on {name}]({png})",
        "",
        f"Final budget {budget} labels. *Labels to reach random* is the smallest budget at which "
        f"the strategy's mean Spearman reaches what `random` reaches with all {budget} labels "
        f"({target:.3f}); *mean over budgets* averages the learning curve; *selection s/round* "
        "is the mean recorded selection time of a round after the first (random) one.",
        "",
        f"| strategy | Spearman at {budget} | {quantile_key.replace('_', ' ')} at {budget} "
        "| mean Spearman over budgets | labels to reach random | selection s/round |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for strategy in ORDER:
        if strategy not in summary:
            continue
        mean, std = final(summary, strategy)
        q_mean, q_std = final(bon, strategy)
        reach = labels_to_reach(summary, strategy, target)
        seconds = np.mean(
            [r["select_seconds"] for r in records if r["strategy"] == strategy and r["round"] > 1]
        )
        lines.append(
            f"| {strategy} | {mean:.3f} ± {std:.3f} | {q_mean:.3f} ± {q_std:.3f} | "
            f"{area(summary, strategy):.3f} | {reach if reach is not None else 'not reached'} | "
            f"{seconds:.3f} |"
        )
    return [*lines, ""]


def verdict_section(name: str, records: list[dict]) -> list[str]:
    """Does each strategy save labels against random beyond the seed spread (simulate.verdicts)?"""
    found = {v.strategy: v for v in verdicts(records, "spearman")}
    first = next(iter(found.values()))
    noise = np.asarray(first.baseline_needed)
    lines = [
        f"**Does it save labels on {name}?** Target: random's mean Spearman at "
        f"{first.budget} labels ({first.target:.3f}). Labels needed are read off each seed's "
        f"learning curve (linear between budgets; {first.budget} for a seed that never gets "
        f"there); random's own seeds need {noise.mean():.0f} ± {noise.std():.0f}. *Fewer labels* "
        "when the saving less its std over seeds exceeds random's own saving plus its std, or "
        "the final Spearman less its std exceeds random's plus its std; *more labels* when the "
        "final Spearman plus its std stays below random's less its std "
        "(`activerm_fast.simulate.verdicts`, the verdict `activerm-fast simulate` prints).",
        "",
        "| strategy | verdict | labels to reach random's final Spearman | saving "
        "| seeds reaching |",
        "| --- | --- | --- | --- | --- |",
    ]
    for strategy in ORDER:
        if strategy not in found:
            continue
        verdict = found[strategy]
        saved, spread = verdict.saving
        lines.append(
            f"| {strategy} | {verdict.outcome} | {verdict.budget - saved:.0f} ± {spread:.0f} | "
            f"{saved:.0f} ({100 * saved / verdict.budget:.0f}%) | "
            f"{verdict.reached} of {len(verdict.needed)} |"
        )
    return [*lines, ""]


def comparison_row(label: str, left: dict, left_name: str, right: dict, right_name: str) -> str:
    """Final Spearman and mean over budgets of two (summary, strategy) sides, as a table row."""
    (lm, ls), (rm, rs) = final(left, left_name), final(right, right_name)
    return (
        f"| {label} | {lm:.3f} ± {ls:.3f} | {rm:.3f} ± {rs:.3f} | "
        f"{area(left, left_name):.3f} | {area(right, right_name):.3f} |"
    )


def pools_section(name: str, cross: list[dict], within: list[dict]) -> list[str]:
    c, w = summarize(cross, "spearman"), summarize(within, "spearman")
    shared = [s for s in ORDER if s in c and s in w]
    cross_better = [s for s in shared if area(c, s) > area(w, s)]
    budget = max(c["random"])
    lines = [
        f"### {name}: cross-prompt against within-prompt pools",
        "",
        f"| strategy | cross: Spearman at {budget} | within: Spearman at {budget} "
        "| cross: mean over budgets | within: mean over budgets |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [comparison_row(s, c, s, w, s) for s in shared]
    lines += [
        "",
        f"Averaged over budgets, cross-prompt pools did better than within-prompt pools for "
        f"{len(cross_better)} of these {len(shared)} strategies"
        + (f" ({', '.join(f'`{s}`' for s in cross_better)})." if cross_better else "."),
    ]
    found = {v.strategy: v for v in verdicts(within, "spearman")}
    outcomes = []
    for strategy in ORDER:
        if strategy in found:
            saved, spread = found[strategy].saving
            outcomes.append(
                f"`{strategy}` {found[strategy].outcome} (saving {saved:.0f} ± {spread:.0f})"
            )
    target = next(iter(found.values())).target
    lines += [
        "",
        "Within-prompt pools against `random` on within-prompt pools, by the rule of the verdict "
        f"table above (random's final Spearman there: {target:.3f}; saving in labels, mean ± std "
        "over seeds): " + "; ".join(outcomes) + ".",
    ]
    return [*lines, ""]


def greedy_section(name: str, records: list[dict]) -> list[str]:
    summary = summarize(records, "spearman")
    lines = [
        f"### {name}: greedy against top-k",
        "",
        "| objective | top-k: Spearman at final budget | greedy: Spearman at final budget "
        "| top-k: mean over budgets | greedy: mean over budgets |",
        "| --- | --- | --- | --- | --- |",
    ]
    wins = 0
    objectives = (("dopt-topk", "dopt-greedy"), ("past-dopt-topk", "past-dopt-greedy"))
    for topk, greedy in objectives:
        wins += area(summary, greedy) > area(summary, topk)
        label = greedy.removesuffix("-greedy")
        lines.append(comparison_row(label, summary, topk, summary, greedy))
    lines += [
        "",
        f"Averaged over budgets, greedy selection beat the one-shot top-k rule for {wins} of the "
        f"{len(objectives)} objectives.",
    ]
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--arena-seeds", type=int, default=None, help="seeds on arena-bench (default: --seeds)"
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    out = Path(args.out)
    config = LoopConfig(rounds=args.rounds, per_round=args.per_round)
    within_config = LoopConfig(rounds=args.rounds, per_round=args.per_round, pool="within")
    arena_seeds = args.seeds if args.arena_seeds is None else args.arena_seeds
    seed_counts = {"synthetic": args.seeds, "arena-bench": arena_seeds}
    compute_seconds = 0.0
    report = [
        "# Results",
        "",
        "Produced by `python scripts/make_results.py "
        f"--seeds {args.seeds} --arena-seeds {arena_seeds} --rounds {args.rounds} "
        f"--per-round {args.per_round}` "
        "(the tables and plots below are written by that script from the run's records).",
        "",
        f"Setup: {args.rounds} rounds of {args.per_round} labels, {args.seeds} seeds on the "
        f"synthetic data and {arena_seeds} on arena-bench; each round "
        f"draws {config.prompts_per_round} training prompts, samples {config.cross_pairs:,} "
        "cross-prompt candidate pairs among their responses (or takes every within-prompt pair), "
        f"selects, labels with a Bradley-Terry oracle (beta = {config.beta} on the standardised "
        f"golden reward), and refits an ensemble of {config.ensemble} reward heads "
        f"(hidden widths {config.hidden}) from scratch. The first round is random for every "
        "strategy. Spearman is the within-prompt Spearman correlation with the golden reward on "
        "held-out test prompts (mean ± std over seeds).",
        "",
        synthetic_description(),
        "",
    ]
    for name, dataset in datasets().items():
        seeds = range(seed_counts[name])
        print(f"== {name}: all strategies, cross-prompt pools", flush=True)
        cross = simulate(
            dataset, list(STRATEGIES), config=config, seeds=seeds, out_dir=out / name / "cross"
        )
        png = f"results_{name}.png"
        learning_curves(cross, DOCS / png, f"{name}, cross-prompt pools")
        print(f"== {name}: random, BAL-PM and D-optimal, within-prompt pools", flush=True)
        within = simulate(
            dataset,
            list(WITHIN),
            config=within_config,
            seeds=seeds,
            out_dir=out / name / "within",
        )
        compute_seconds += sum(r["select_seconds"] + r["fit_seconds"] for r in cross + within)
        report += curves_section(name, cross, png)
        report += verdict_section(name, cross)
        report += pools_section(name, cross, within)
        report += greedy_section(name, cross)
    report += [
        f"Selecting and fitting took {compute_seconds / 60:.0f} minutes in all (the sum of every "
        "round's recorded selection and fit times, on 2 CPU cores).",
        "",
    ]
    DOCS.mkdir(exist_ok=True)
    path = DOCS / "RESULTS.md"
    # the Defaults study is written by study_defaults.py from its own records: keep it
    kept = section_of(path.read_text()) if path.exists() else ""
    path.write_text("\n".join([*report, kept, ""] if kept else report))
    print(f"wrote {DOCS / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
