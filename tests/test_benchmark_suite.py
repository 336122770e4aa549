"""The pytest-benchmark suite in bench/ and the script that turns a saved run into
docs/BENCHMARKS.md: it runs, stays out of a plain test run, and its tables say what the run
measured. Needs pytest-benchmark (the ``bench`` extra); skipped without it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark (the bench extra) not installed")

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bench_rows_are_skipped_without_a_benchmark_flag() -> None:
    result = run_bench("-k", "small and pair_diff")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" not in result.stdout
    assert "2 skipped" in result.stdout, result.stdout


def test_every_small_row_runs_once() -> None:
    result = run_bench("--benchmark-disable", "-k", "small")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_tables_come_from_the_saved_run(tmp_path: Path) -> None:
    saved, page = tmp_path / "run.json", tmp_path / "BENCHMARKS.md"
    result = run_bench(
        "--benchmark-only", "-k", "small and (pair_diff or fisher_weights)",
        f"--benchmark-json={saved}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    tables = subprocess.run(
        [sys.executable, "scripts/benchmark_tables.py", str(saved), "-o", str(page)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(saved.read_text())["benchmarks"]
    assert f"({len(rows)} rows)" in tables.stdout
    assert {row["group"] for row in rows} == {"pair_diff", "fisher_weights"}
    text = page.read_text()
    references = {row["group"]: row for row in rows if row["extra_info"]["reference"]}
    for row in rows:
        info, median = row["extra_info"], row["stats"]["median"]
        reference = references[row["group"]]["stats"]["median"]
        # the ratios and rates are this run's medians, not numbers typed anywhere
        assert info["ratio_to_activerm_fast"] == pytest.approx(median / reference)
        assert info["GB/s"] == pytest.approx(info["bytes"] / median / 1e9)
        assert f"| {info['implementation']} |" in text
        assert f"| {info['ratio_to_activerm_fast']:.3g} |" in text
    for group, row in references.items():
        assert f"## {group}" in text
        assert set(row["extra_info"]["speedup"]) == {
            other["extra_info"]["implementation"]
            for other in rows
            if other["group"] == group and other is not row
        }
