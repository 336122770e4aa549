"""pytest-benchmark set-up of bench/: ``pytest bench/ --benchmark-only``.

The suite's files are named test_*.py, pytest's default, so ``pytest bench/`` collects them with
no extra configuration; CI's ``pytest tests`` (and a bare ``pytest``, through ``testpaths``)
never looks in bench/. A run that names bench/ without ``--benchmark-only`` or
``--benchmark-disable`` skips every row, so the ten-minute ladder never runs by accident as
part of a test run (``--benchmark-disable`` runs each row once, as a quick check that the
suite works).

Tables group by benchmark group and size (``--benchmark-group-by=group,param:size``) unless
asked otherwise; the JSON a run saves gets each row's achieved rate and its ratios to the
group's activerm_fast row at that size (:func:`pytest_benchmark_update_json`).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from harness import rates

import activerm_fast as arm

SUITE_START = pytest.StashKey[tuple[float, float]]()


def pytest_configure(config: pytest.Config) -> None:
    # the plugin reads the option in its own pytest_configure, which runs last
    if config.getoption("benchmark_group_by", None) == "group":
        config.option.benchmark_group_by = "group,param:size"
    # submodlib (an optional baseline) still imports scipy.sparse.csr
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:submodlib")


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[SUITE_START] = (time.perf_counter(), os.getloadavg()[0])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("benchmark_only") or config.getoption("benchmark_disable"):
        return
    skip = pytest.mark.skip(
        reason="benchmarks run with `pytest bench/ --benchmark-only` "
        "(or once each with --benchmark-disable)"
    )
    for item in items:
        item.add_marker(skip)


def pytest_benchmark_update_commit_info(config: pytest.Config, commit_info: dict[str, Any]) -> None:
    """The tree's ``dirty`` flag without the run's own report: ``--benchmark-json`` opens (and
    empties) its file before the first row, so a run saved over its committed predecessor in
    bench/results/ always read as "uncommitted changes". Dirty stays set when git lists any
    other changed tracked file, or cannot be asked."""
    report = config.getoption("benchmark_json", None)
    if not commit_info.get("dirty") or report is None:
        return
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "diff", "HEAD", "--name-only", "-z"],
            capture_output=True, text=True, check=True, cwd=top,
        ).stdout.split("\0")  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return
    own = Path(report.name).resolve()
    commit_info["dirty"] = any(Path(top, name).resolve() != own for name in changed if name)


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    """Rates and ratios of every saved row, from the medians of this run: a baseline row gets
    ``ratio_to_activerm_fast`` (its median over the reference row's), the reference row
    ``speedup`` (each other row's median over its own). The run as a whole gets its wall time,
    the load average at its start and end (other processes distort timings: this says how busy
    the machine was) and activerm_fast's build."""
    started, load = config.stash[SUITE_START]
    output_json["suite"] = {
        "wall_seconds": time.perf_counter() - started,
        "load_average_start": load,
        "load_average_end": os.getloadavg()[0],
        "activerm_fast": arm.build_info(),
    }
    rows = output_json["benchmarks"]
    for row in rows:
        rates(row["extra_info"], row["stats"]["median"])
    for row in rows:
        info = row["extra_info"]
        if not info.get("reference"):
            continue
        peers = [
            other
            for other in rows
            if other["group"] == row["group"] and other["extra_info"].get("size") == info["size"]
        ]
        median = row["stats"]["median"]
        info["speedup"] = {}
        for other in peers:
            ratio = other["stats"]["median"] / median
            other["extra_info"]["ratio_to_activerm_fast"] = ratio
            if other is not row:
                info["speedup"][other["extra_info"]["implementation"]] = ratio
