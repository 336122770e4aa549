"""Study how the D-optimal strategies depend on their settings; write the Defaults section.

    python scripts/study_defaults.py chunks                  # the chunk names, one a line
    python scripts/study_defaults.py run CHUNK [CHUNK ...]   # run chunks (VARIANT/DATASET)
    python scripts/study_defaults.py report                  # tables, plots, docs/RESULTS.md

One factor at a time around the defaults LoopConfig had before the study (CENTRE below): every
variant changes one setting and runs ``random`` (the reference) and the D-optimal strategies on
the synthetic data and on arena-bench with the same seeds. A chunk is one variant on one
dataset; its records go to ``--out/VARIANT/DATASET/results.json`` (a chunk whose file exists is
done, an interrupted one resumes from its checkpoints), so the study can run one chunk per
process and be reported at any point. ``report`` reads the saved records only: every number and
plot is computed from them. It writes docs/defaults_study.png and docs/defaults_curves.png and
replaces the part of docs/RESULTS.md between the Defaults markers (make_results.py keeps that
part when it rewrites the file).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from activerm_fast import data, fisher_matrix, fisher_weights
from activerm_fast.model import RewardModel
from activerm_fast.simulation.loop import LoopConfig
from activerm_fast.simulation.simulate import simulate, verdicts

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
START, END = "<!-- defaults-study:start -->", "<!-- defaults-study:end -->"
DOPT = ("dopt-greedy", "past-dopt-greedy", "ensemble-dopt-greedy")
DATASETS = ("synthetic", "arena-bench")
ROUNDS, PER_ROUND, SEEDS = 8, 100, 5
# the centre of the study: LoopConfig's defaults when the study was designed, spelled out so
# that the records stay reproducible when a default moves
CENTRE: dict[str, Any] = {
    "ridge": 1e-3,
    "ridge_mode": "absolute",
    "features": "hidden",
    "ensemble": 3,
    "warm_start": False,
    "pool": "cross",
    "cross_pairs": 50_000,
}


@dataclass(frozen=True)
class Variant:
    """One setting changed from the centre. ``moves_random``: the change also changes what
    ``random`` does (the model it fits or the pool it draws from), so random runs in it too;
    otherwise the default's random records are its reference."""

    name: str
    factor: str
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)
    moves_random: bool = False
    strategies: tuple[str, ...] = DOPT

    def config(self) -> LoopConfig:
        return LoopConfig(rounds=ROUNDS, per_round=PER_ROUND, **{**CENTRE, **self.overrides})

    def runs(self) -> tuple[str, ...]:
        return ("random", *self.strategies) if self.moves_random else self.strategies


DEFAULT = Variant("default", "", "the centre", moves_random=True)
VARIANTS = (
    DEFAULT,
    *(
        Variant(
            f"relative-{c:g}",
            "ridge",
            f"relative, c = {c:g}",
            {"ridge_mode": "relative", "ridge": c},
        )
        for c in (0.01, 0.1, 1.0)
    ),
    *(Variant(f"ridge-{r:g}", "ridge", f"absolute, {r:g}", {"ridge": r}) for r in (0.1, 10.0)),
    Variant("embedding", "features", "embedding", {"features": "embedding"}),
    # ensemble-dopt-greedy needs two members at least
    Variant("ensemble-1", "ensemble", "1 member", {"ensemble": 1}, True, DOPT[:2]),
    Variant("ensemble-5", "ensemble", "5 members", {"ensemble": 5}, True),
    Variant("warm-start", "warm start", "warm-started head", {"warm_start": True}, True),
    Variant("within", "pool", "within-prompt", {"pool": "within"}, True),
    Variant("cross-10000", "pool", "cross, 10,000 pairs", {"cross_pairs": 10_000}, True),
    Variant("cross-200000", "pool", "cross, 200,000 pairs", {"cross_pairs": 200_000}, True),
)
BY_NAME = {variant.name: variant for variant in VARIANTS}
# what the centre is called in each factor's table
DEFAULT_LABEL = {
    "ridge": f"absolute, {CENTRE['ridge']:g} (centre)",
    "features": "last hidden layer (centre)",
    "ensemble": f"{CENTRE['ensemble']} members (centre)",
    "warm start": "refit from scratch (centre)",
    "pool": f"cross, {CENTRE['cross_pairs']:,} pairs (centre)",
}


def load_dataset(name: str) -> data.Dataset:
    if name == "synthetic":
        return data.synthetic(seed=0, **data.REALISTIC_SYNTHETIC)
    return data.load(name)


def chunk_names() -> list[str]:
    return [f"{variant.name}/{name}" for variant in VARIANTS for name in DATASETS]


def run_chunk(chunk: str, out: Path, seeds: int) -> None:
    variant_name, _, dataset_name = chunk.partition("/")
    if variant_name not in BY_NAME or dataset_name not in DATASETS:
        raise ValueError(f"chunk must be one of {chunk_names()}, got {chunk!r}")
    variant = BY_NAME[variant_name]
    folder = out / variant.name / dataset_name
    if (folder / "results.json").exists():
        print(f"{chunk}: done before")
        return
    print(f"{chunk}: {', '.join(variant.runs())}", flush=True)
    simulate(
        load_dataset(dataset_name),
        list(variant.runs()),
        config=variant.config(),
        seeds=range(seeds),
        out_dir=folder,
    )
    (folder / "config.json").write_text(json.dumps(asdict(variant.config()), indent=1))


# ---- the report --------------------------------------------------------------------------


def records_of(out: Path, variant: Variant, dataset: str) -> list[dict[str, Any]] | None:
    """The variant's records with its reference random (the centre's when it does not move
    random); None while a chunk they need has not run."""
    own = out / variant.name / dataset / "results.json"
    centre = out / DEFAULT.name / dataset / "results.json"
    if not own.exists() or not centre.exists():
        return None
    records: list[dict[str, Any]] = json.loads(own.read_text())
    if not variant.moves_random:
        records += [r for r in json.loads(centre.read_text()) if r["strategy"] == "random"]
    return records


@dataclass(frozen=True)
class Cell:
    """One strategy under one variant on one dataset: numbers per seed."""

    budgets: tuple[int, ...]
    curves: np.ndarray  # (seeds, budgets) Spearman
    needed: np.ndarray  # labels to reach the centre random's final Spearman

    @property
    def final(self) -> np.ndarray:
        """Spearman at the final budget."""
        return self.curves[:, -1]

    @property
    def areas(self) -> np.ndarray:
        """Mean Spearman over the budgets: the area under the curve over its width."""
        areas: np.ndarray = self.curves.mean(axis=1)
        return areas


def cells(records: list[dict[str, Any]], centre: list[dict[str, Any]]) -> dict[str, Cell]:
    """Every strategy of ``records``. Labels needed are measured with simulate.verdicts against
    one target for every variant: the final Spearman of ``random`` in the ``centre`` records."""
    reference = [{**r, "strategy": "centre random"} for r in centre if r["strategy"] == "random"]
    result = {}
    for strategy in dict.fromkeys(r["strategy"] for r in records):
        own = [r for r in records if r["strategy"] == strategy]
        (verdict,) = verdicts(own + reference, "spearman", baseline="centre random")
        budgets = tuple(sorted({r["labels"] for r in own}))
        curves: dict[int, np.ndarray] = {}
        for record in own:
            curve = curves.setdefault(record["seed"], np.full(len(budgets), np.nan))
            curve[budgets.index(record["labels"])] = record["spearman"]
        result[strategy] = Cell(budgets, np.array(list(curves.values())), np.array(verdict.needed))
    return result


def spread(values: np.ndarray, digits: int = 3) -> str:
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def within_noise(scores: dict[str, np.ndarray]) -> tuple[str, set[str]]:
    """The best variant by mean score and those within noise of it: mean + std over seeds
    reaching the best's mean - std (the seed spreads overlap: the spread half of the rule of
    simulate.verdicts, which also has a paired test)."""
    best = max(scores, key=lambda name: float(scores[name].mean()))
    floor = scores[best].mean() - scores[best].std()
    return best, {name for name, score in scores.items() if score.mean() + score.std() >= floor}


@dataclass
class Factor:
    """One factor: its settings (the centre first), the D-optimal strategies every setting
    runs, and per dataset each setting's cells and joint score."""

    name: str
    variants: list[Variant]
    shared: tuple[str, ...]
    found: dict[str, dict[str, dict[str, Cell]]]

    def label(self, variant: Variant) -> str:
        return DEFAULT_LABEL[self.name] if variant is DEFAULT else variant.label

    def scores(self, dataset: str) -> dict[str, np.ndarray]:
        """Per setting, per seed: the mean Spearman over budgets averaged over ``shared``."""
        ready = self.found.get(dataset, {})
        return {
            name: np.mean([cells[s].areas for s in self.shared], axis=0)
            for name, cells in ready.items()
        }

    def choice(self) -> Variant | None:
        """The setting the default should be: the centre when it is best or within noise of
        best on every dataset, else the best (mean over datasets) of the settings that are;
        the centre when none is. A setting under which a D-optimal strategy cannot run (one
        ensemble member) is never chosen. None until the factor has run on every dataset."""
        if any(len(self.found.get(dataset, {})) < len(self.variants) for dataset in DATASETS):
            return None
        good = set.intersection(*(within_noise(self.scores(d))[1] for d in DATASETS))
        good = {name for name in good if BY_NAME[name].strategies == DOPT}
        if DEFAULT.name in good or not good:
            return DEFAULT
        best = max(good, key=lambda n: float(np.mean([self.scores(d)[n].mean() for d in DATASETS])))
        return BY_NAME[best]


def factor_table(factor: Factor, dataset: str) -> list[str]:
    found = factor.found.get(dataset, {})
    best, near = within_noise(factor.scores(dataset)) if found else ("", set())
    lines = [
        f"{dataset}: per strategy, Spearman at the final budget, mean Spearman over budgets and "
        "labels to reach the centre random's final Spearman; per setting, the joint score "
        "(mean ± std over seeds; **bold**: best, *within noise of best*).",
        "",
        "| setting | joint score | strategy | Spearman at final budget | mean over budgets "
        "| labels to reach random |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    scores = factor.scores(dataset)
    for variant in factor.variants:
        if variant.name not in found:
            lines.append(f"| {factor.label(variant)} | not run yet | | | | |")
            continue
        score = spread(scores[variant.name])
        mark = "**" if variant.name == best else "*" if variant.name in near else ""
        first = f"| {factor.label(variant)} | {mark}{score}{mark} "
        for strategy in ("random", *DOPT):
            if strategy not in found[variant.name]:
                continue
            if strategy == "random" and variant is not DEFAULT and not variant.moves_random:
                continue  # the centre's random, shown in the centre's row
            cell = found[variant.name][strategy]
            lines.append(
                f"{first}| {strategy} | {spread(cell.final)} | {spread(cell.areas)} "
                f"| {spread(cell.needed, 0)} |"
            )
            first = "| | "
    return [*lines, ""]


def is_default(variant: Variant) -> bool:
    """Whether LoopConfig's defaults now are this variant's settings."""
    settings = {**CENTRE, **variant.overrides}
    return all(getattr(LoopConfig, key) == value for key, value in settings.items())


def information_scales(out: Path, dataset: str) -> np.ndarray:
    """Per seed, tr(F_L)/d of the centre's final past-dopt-greedy model on its labelled pairs
    (last hidden layer, first member, ensemble-mean weights): the scale an absolute ridge
    competes with; empty while those checkpoints are missing."""
    embeddings = load_dataset(dataset).train().embeddings
    scales = []
    for state_file in sorted(
        (out / DEFAULT.name / dataset / "checkpoints").glob("past-*/state.json")
    ):
        state = json.loads(state_file.read_text())
        model = RewardModel.load(state_file.parent / state["model_file"])
        with np.load(state_file.parent / state["labels_file"]) as archive:
            pairs = archive["pairs"]
        features, rewards = model.features_and_rewards(embeddings)
        information = fisher_matrix(features[0], pairs, fisher_weights(rewards, pairs))
        scales.append(float(np.trace(information)) / features.shape[2])
    return np.array(scales)


def scale_sentence(out: Path) -> str:
    """What the centre's absolute ridge is in units of the information scale, per dataset."""
    parts = []
    for dataset in DATASETS:
        scales = information_scales(out, dataset)
        if len(scales):
            relative = CENTRE["ridge"] / scales
            parts.append(
                f"{spread(scales, 3)} on {dataset} (the centre's lambda = {CENTRE['ridge']:g} is "
                f"c = {relative.min():.1e} to {relative.max():.1e} there)"
            )
    if not parts:
        return ""
    return (
        f" With the centre's {ROUNDS * PER_ROUND} labels, tr(F_L)/d of `past-dopt-greedy`'s "
        f"final model (mean ± std over seeds) is {' and '.join(parts)}: the same absolute "
        "ridge weighs very differently on the two datasets."
    )


def plot(factors: list[Factor], path: Path) -> None:
    """One panel per factor: each setting's joint score on each dataset less the centre's mean
    (the datasets' Spearman levels differ), ± one std over seeds."""
    fig = Figure(figsize=(3.6 * len(factors), 4.6))
    axes = fig.subplots(1, len(factors), squeeze=False, sharey=True)[0]
    for ax, factor in zip(axes, factors, strict=True):
        names = [v.name for v in factor.variants]
        for offset, dataset in zip((-0.12, 0.12), DATASETS, strict=True):
            scores = factor.scores(dataset)
            if DEFAULT.name not in scores:
                continue
            centre = scores[DEFAULT.name].mean()
            ran = [i for i, name in enumerate(names) if name in scores]
            ax.errorbar(
                [i + offset for i in ran],
                [scores[names[i]].mean() - centre for i in ran],
                yerr=[scores[names[i]].std() for i in ran],
                fmt="o",
                capsize=3,
                color=f"C{DATASETS.index(dataset)}",
                label=dataset,
            )
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(factor.name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("joint score less the centre's")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_curves(factors: list[Factor], path: Path) -> None:
    """Learning curves, one panel per dataset and factor: per setting, the Spearman of the
    factor's shared D-optimal strategies averaged over them, mean over seeds ± one std."""
    fig = Figure(figsize=(3.6 * len(factors), 6.4))
    axes = fig.subplots(len(DATASETS), len(factors), squeeze=False)
    for row, dataset in enumerate(DATASETS):
        for ax, factor in zip(axes[row], factors, strict=True):
            for index, variant in enumerate(factor.variants):
                found = factor.found.get(dataset, {}).get(variant.name)
                if found is None:
                    continue
                joint = np.mean([found[s].curves for s in factor.shared], axis=0)
                budgets = found[factor.shared[0]].budgets
                mean, std = joint.mean(axis=0), joint.std(axis=0)
                ax.plot(
                    budgets, mean, marker="o", markersize=2, label=variant.name, color=f"C{index}"
                )
                ax.fill_between(budgets, mean - std, mean + std, color=f"C{index}", alpha=0.1)
            ax.set_title(f"{dataset}: {factor.name}", fontsize=9)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.legend(fontsize=7)
        axes[row][0].set_ylabel("D-optimal Spearman")
    for ax in axes[-1]:
        ax.set_xlabel("labelled comparisons")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def report(out: Path, docs: Path) -> str:
    """The Defaults section, from the records under ``out``; writes its plot to ``docs``."""
    found: dict[str, dict[str, dict[str, Cell]]] = {d: {} for d in DATASETS}
    seconds, missing = 0.0, []
    for dataset in DATASETS:
        centre = records_of(out, DEFAULT, dataset)
        for variant in VARIANTS:
            records = records_of(out, variant, dataset)
            if records is None or centre is None:
                missing.append(f"{variant.name}/{dataset}")
                continue
            found[dataset][variant.name] = cells(records, centre)
            own = json.loads((out / variant.name / dataset / "results.json").read_text())
            seconds += sum(r["select_seconds"] + r["fit_seconds"] for r in own)
    factors = []
    for name in dict.fromkeys(v.factor for v in VARIANTS if v.factor):
        variants = [DEFAULT, *(v for v in VARIANTS if v.factor == name)]
        shared = tuple(s for s in DOPT if all(s in v.runs() for v in variants))
        subset = {
            d: {v.name: found[d][v.name] for v in variants if v.name in found[d]} for d in DATASETS
        }
        factors.append(Factor(name, variants, shared, subset))
    centre_text = ", ".join(f"{key}={value!r}" for key, value in CENTRE.items())
    lines = [
        START,
        "## Defaults",
        "",
        "Produced by `python scripts/study_defaults.py report` from the records of "
        "`scripts/study_defaults.py run`, one chunk (a setting on a dataset) per process: "
        "`for c in $(python scripts/study_defaults.py chunks); do python "
        "scripts/study_defaults.py run $c; done` (a chunk already run is skipped).",
        "",
        f"Design: one factor at a time around a centre, `LoopConfig({centre_text})` (the "
        f"defaults before this study) with {ROUNDS} rounds of {PER_ROUND} labels and {SEEDS} "
        "seeds, the other settings as in the setup above. Each setting runs `dopt-greedy`, "
        "`past-dopt-greedy` and `ensemble-dopt-greedy` on both datasets with the same seeds, "
        "and `random` as well where the setting changes what random does (ensemble, warm start, "
        "pool); the ridge and feature settings share the centre's random. *Labels to reach "
        "random* is read off each seed's learning curve (`simulate.verdicts`) against one target "
        "for every setting, the centre random's final Spearman. The *joint score* of a setting "
        "is, per seed, the mean Spearman over budgets averaged over the D-optimal strategies "
        "that run in every setting of its factor; a setting is *within noise of best* when its "
        "mean + std over seeds reaches the best's mean - std. A default moves only where the "
        "centre is not within noise of best on both datasets and another setting is (to the "
        "best of those, by the mean of its two joint scores; never to a setting under which a "
        "D-optimal strategy cannot run, such as one ensemble member).",
        "",
        "The relative ridge is lambda = c tr(F_L)/d, c times the mean eigenvalue of the labelled "
        'pairs\' Fisher information at the current model (`ridge_mode="relative"`); the '
        'embedding setting designs on the embeddings themselves (`features="embedding"`), '
        "with the Fisher weights of the model's rewards." + scale_sentence(out),
        "",
        "![joint score of every setting, both datasets](defaults_study.png)",
        "",
        "![learning curves of every setting](defaults_curves.png)",
        "",
        "| factor | centre | chosen by the study | is it LoopConfig's default now? |",
        "| --- | --- | --- | --- |",
    ]
    for factor in factors:
        chosen = factor.choice()
        lines.append(
            f"| {factor.name} | {factor.label(DEFAULT)} | "
            + (
                "not run on both datasets yet | |"
                if chosen is None
                else f"{factor.label(chosen)} | {'yes' if is_default(chosen) else 'no'} |"
            )
        )
    lines.append("")
    for factor in factors:
        strategies = ", ".join(f"`{s}`" for s in factor.shared)
        lines += [f"### Defaults: {factor.name} (joint score over {strategies})", ""]
        for dataset in DATASETS:
            lines += factor_table(factor, dataset)
    plot(factors, docs / "defaults_study.png")
    plot_curves(factors, docs / "defaults_curves.png")
    lines.append(
        f"The study's selecting and fitting took {seconds / 60:.0f} minutes (the sum of every "
        "round's recorded times, on 2 CPU cores)."
    )
    if missing:
        lines += ["", f"Not run yet (the `run` loop above finishes them): {', '.join(missing)}."]
    return "\n".join([*lines, "", END])


def section_of(text: str) -> str:
    """The marked Defaults section of a report, markers included ("" when it has none)."""
    if START not in text or END not in text:
        return ""
    _, _, rest = text.partition(START)
    return START + rest.partition(END)[0] + END


def write_section(section: str, path: Path) -> None:
    """Replace the marked Defaults section of ``path`` (append it the first time)."""
    old = path.read_text() if path.exists() else ""
    present = section_of(old)
    if present:
        path.write_text(old.replace(present, section))
    else:
        path.write_text(old.rstrip("\n") + "\n\n" + section + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "defaults"), help="records")
    parser.add_argument("--docs", default=str(DOCS), help="where RESULTS.md and the plot are")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("chunks")
    run = commands.add_parser("run")
    run.add_argument("chunk", nargs="+")
    commands.add_parser("report")
    args = parser.parse_args()
    out = Path(args.out)
    if args.command == "chunks":
        print("\n".join(chunk_names()))
    elif args.command == "run":
        for chunk in args.chunk:
            run_chunk(chunk, out, SEEDS)
    else:
        docs = Path(args.docs)
        write_section(report(out, docs), docs / "RESULTS.md")
        print(f"wrote the Defaults section of {docs / 'RESULTS.md'} and {docs}/defaults_study.png")


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:
        sys.exit(f"error: {err}")
