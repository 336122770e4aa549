"""Write docs/BENCHMARKS.md from a saved run of the pytest-benchmark suite in bench/.

    python3 -m pytest bench/ --benchmark-only --benchmark-json bench/results/cpu-2core.json
    python3 scripts/benchmark_tables.py bench/results/cpu-2core.json [-o docs/BENCHMARKS.md]

Every number in the page comes from the JSON: medians, rounds, the rates and ratios that
bench/conftest.py computed in the run, the machine and commit pytest-benchmark recorded.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

SIZE_ORDER = {"small": 0, "medium": 1, "large": 2}
# kernels, then the selections they serve, then the fit
GROUP_ORDER = ["pair_diff", "fisher_weights", "pair_quadform", "fisher_matrix", "greedy_logdet"]

INTRODUCTION = """\
Microbenchmarks of every kernel, the greedy selection, every `select` strategy and the
reward-head fit, each timed beside its baselines in the same run, on a small / medium / large
ladder (bench/harness.py: n responses, d feature dimensions, P candidate pairs, k picks).
What each group's baselines are, and how its bytes or FLOPs are counted, is in the docstring
of its file in bench/ (test_kernels.py, test_greedy.py, test_strategies.py, test_fit.py; the
baselines themselves in baselines.py).

*ratio* is a row's median over the median of the group's activerm_fast row at the same size
(above 1: slower than activerm_fast); *load* is the machine's load average as the row started:
other processes on the cores distort timings, multi-threaded BLAS calls most, so compare rows
run at similar load. GB/s and GFLOP/s credit every row of a group with the
same work, so they compare like the times do. Rows a group leaves out at a size were skipped
for the reason the run printed: submodlib's (P, P) pair kernel and the paper's (P, d, d)
information matrices above 2 GiB, submodlib when it is not installed.

Commands:

```
python3 -m pip install -e ".[bench]"      # pytest-benchmark; submodlib-py too for its rows
python3 -m pytest bench/ --benchmark-only --benchmark-json bench/results/NAME.json
python3 scripts/benchmark_tables.py bench/results/NAME.json     # this page
python3 -m pytest bench/ --benchmark-only --benchmark-autosave  # .benchmarks/, by commit
python3 -m pytest bench/ --benchmark-only --benchmark-compare   # against the last autosave
```

`--benchmark-compare=NNNN` names an earlier autosaved run, `--benchmark-compare-fail=median:10%`
fails on a regression; `-k greedy_logdet` or `-k small` runs part of the ladder.
"""


# the GPU check: the tables below are CPU runs, this says how the CUDA backend is measured
GPU_CHECK = """\
## On a GPU

The tables below are CPU runs. The CUDA backend is measured by `bench/gpu_check.sh`, one
script for a machine with a GPU and no package registry: the build for the card's
architecture, the CUDA tests (CUDA = CPU bit for bit) beside compute-sanitizer's memcheck and
racecheck, then `bench/bench_gpu.py` (P = 10^8 against the device's copy bandwidth, the
per-kernel profile, the per-prompt quota, P = 10^9 if it fits, the torch and CPU baselines),
`bench/bench_implicit_pool.py --device cuda`, `bench/bench_model_features.py` (a random
0.5 B model in bfloat16), `bench/bench_sharded_gpu.py` (two gloo and two NCCL ranks on one
GPU, if NCCL starts them) and `bench/bench_half_features.py --device cuda`. Its header gives each
phase's time limit (385 s in all, planned for an H100 or H200 with 16 cores) and why. It writes
`gpu_check.log`, `memcheck.log`, `racecheck.log` and `wheels.log` line by line,
`bench_gpu.json` after every section and the tests' `tests.xml` to `$OUT` (else
`build/gpu-check`), so a run stopped early keeps what it measured.

The embed phase needs transformers and tokenizers, which the machine may lack and cannot
download; first, where PyPI is reachable:

```
python3 scripts/fetch_gpu_wheels.py     # their wheels for CPython 3.12, into build/gpu-wheels
```

Then the one call on the device machine (the run's command, the paths it carries beside the
checkout, its time limit):

```
command:   bash bench/gpu_check.sh
carry:     ["build/gpu-wheels"]
timeout_s: 450
```

Again on the same machine while it is up (the build stays installed), some phases only:
`PHASES="bench implicit" bash bench/gpu_check.sh`.
"""


def load(path: Path) -> dict[str, Any]:
    with path.open() as f:
        run: dict[str, Any] = json.load(f)
    return run


def seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def number(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def machine(run: dict[str, Any]) -> list[str]:
    info, cpu = run["machine_info"], run["machine_info"].get("cpu", {})
    commit, suite = run.get("commit_info", {}), run.get("suite", {})
    build = suite.get("activerm_fast", {})
    lines = [
        f"- run: {run['datetime']}, pytest-benchmark {run['version']}",
        f"- commit: {commit.get('id', '?')} ({commit.get('branch', '?')}"
        f"{', uncommitted changes' if commit.get('dirty') else ''})",
        f"- machine: {cpu.get('brand_raw', info.get('processor') or '?')}, "
        f"{cpu.get('count', '?')} CPUs ({info['machine']}), {info['system']} {info['release']}",
        f"- Python {info['python_version']}",
    ]
    if build:
        lines.append(
            f"- activerm_fast {build['version']}, {build['compiler']}, "
            f"{build['openmp_threads']} OpenMP threads, torch {build['torch']}"
        )
    if suite:
        lines.append(
            f"- whole suite: {suite['wall_seconds'] / 60:.1f} min wall time; load average "
            f"{suite['load_average_start']:.2f} at the start, {suite['load_average_end']:.2f} "
            "at the end"
        )
    return lines


def summary(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """activerm_fast's speedup over each baseline, by group and size."""
    lines = [
        "| group | size | activerm_fast | other rows' median over activerm_fast's |",
        "|---|---|---:|---|",
    ]
    for group, rows in groups.items():
        for row in rows:
            info = row["extra_info"]
            if not info.get("reference"):
                continue
            speedups = ", ".join(
                f"{name} {ratio:.3g}x" for name, ratio in info.get("speedup", {}).items()
            )
            lines.append(
                f"| {group} | {info['size']} | {seconds(row['stats']['median'])} | {speedups} |"
            )
    return lines


COLUMNS = [
    ("GB/s", "GB/s"),
    ("GFLOP/s", "GFLOP/s"),
    ("Mpairs/s", "Mpairs/s"),
    ("picks_in_common", "picks in common"),
    ("setup_seconds", "untimed set-up s"),
    ("load_average", "load"),
]


def group_table(rows: list[dict[str, Any]]) -> list[str]:
    present = [(key, title) for key, title in COLUMNS if any(key in r["extra_info"] for r in rows)]
    extra = "".join(f" {title} |" for _, title in present)
    lines = [
        f"| size | n | d | P | k | implementation | median | ratio |{extra} rounds |",
        "|---|---:|---:|---:|---:|---|---:|---:|" + "---:|" * len(present) + "---:|",
    ]
    for row in rows:
        info, stats = row["extra_info"], row["stats"]
        cells = "".join(f" {number(info.get(key))} |" for key, _ in present)
        ratio = info.get("ratio_to_activerm_fast")
        lines.append(
            f"| {info['size']} | {info['n']:,} | {info['d']} | {info['P']:,} | {info['k']} "
            f"| {info['implementation']} | {seconds(stats['median'])} "
            f"| {number(ratio)} |{cells} {stats['rounds']} |"
        )
    return lines


def group_rank(row: dict[str, Any]) -> tuple[int, str]:
    group: str = row["group"]
    if group in GROUP_ORDER:
        return GROUP_ORDER.index(group), group
    return len(GROUP_ORDER) + (group == "fit"), group


def page(run: dict[str, Any], source: str) -> str:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(run["benchmarks"], key=group_rank):
        groups[row["group"]].append(row)
    for rows in groups.values():
        rows.sort(
            key=lambda r: (
                SIZE_ORDER.get(r["extra_info"]["size"], 9),
                not r["extra_info"].get("reference"),
                r["extra_info"].get("ratio_to_activerm_fast", 0),
            )
        )
    out = [
        f"<!-- generated by scripts/benchmark_tables.py from {source}; do not edit by hand -->",
        "",
        "# Benchmarks",
        "",
        INTRODUCTION,
        GPU_CHECK,
        "## The run",
        "",
        *machine(run),
        "",
        "## Summary",
        "",
        *summary(groups),
    ]
    for group, rows in groups.items():
        out += ["", f"## {group}", "", *group_table(rows)]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a --benchmark-json file of pytest bench/")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/BENCHMARKS.md"))
    args = parser.parse_args()
    run = load(args.run)
    if not run.get("benchmarks"):
        parser.error(f"{args.run} holds no benchmarks")
    args.output.write_text(page(run, args.run.as_posix()))
    print(f"wrote {args.output} ({len(run['benchmarks'])} rows)")


if __name__ == "__main__":
    main()
