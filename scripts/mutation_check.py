#!/usr/bin/env python
"""Hand-made mutants of the selection core, each run against the tests that should kill it.

    python scripts/mutation_check.py                 # every mutant, then the table
    python scripts/mutation_check.py --list          # the mutants, nothing run
    python scripts/mutation_check.py --only C1 P3    # some of them
    python scripts/mutation_check.py --group core    # item1 | item2 | core

A mutant is one exact text replaced in one source file. It is applied to a copy of the package
in a temporary folder, never to the sources: ``python/activerm_fast`` is copied there (its
compiled modules included) and the copy is put first on ``PYTHONPATH``; a C++ mutant also
rebuilds ``_core`` from a copy of ``csrc/`` into that folder (objects of the unchanged
translation units are compiled once, into a temporary cache, and reused; no ``build/`` folder
and no module under ``python/`` is written). Each mutant then runs
``python -m pytest -x -q -p no:cacheprovider TESTS`` from the repository root:

* killed   -- a test failed (or the run crashed or hung past ``--timeout``);
* survived -- every test passed: the tests cannot tell the mutant from the package;
* stale    -- the text to replace is no longer in the source (the code moved: update it);
* error    -- pytest could not run the tests (a collection error);
* no tests -- the selection names no test (with ``--tests-at``, one the old revision lacks).

Before the mutants, the same test selections run on an unmutated copy (with a freshly built
``_core`` when a C++ mutant is selected): a selection that fails there makes its mutants'
results meaningless, and they are reported as ``baseline``.

The ``item1`` and ``item2`` groups are the broken implementations that show the rewritten
tests of issue 26 (the lazy sweep reaching the engine; expected values from independent
computations) fail where the old ones passed; ``core`` is the mutation check of the sweep's
tie-break, the masks, the downdate and the Python-side rules. Expected survivors are marked
``equivalent`` with the reason: they change no result the package promises.

Runtime: about a minute per surviving mutant, seconds per killed one (pytest stops at the first
failure); the C++ baseline build takes about 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python" / "activerm_fast"
CSRC = ROOT / "csrc"
CORE_SOURCES = [
    "python/core_module.cpp",
    "cpu/pair_kernels_cpu.cpp",
    "cpu/fisher_matrix_cpu.cpp",
    "cpu/greedy_engine_cpu.cpp",
    "cpu/lazy_greedy_cpu.cpp",
]


@dataclass(frozen=True)
class Mutant:
    name: str
    group: str  # item1, item2, core
    what: str
    path: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]
    occurrence: int | None = None  # which occurrence of ``old`` (None: it must be unique)
    equivalent: str = ""  # why a survival is expected, when it is

    @property
    def cpp(self) -> bool:
        return self.path.startswith("csrc/")


def t(*args: str) -> tuple[str, ...]:
    return args


SELECT = "python/activerm_fast/selection"
LAZY_ENTRY = t("tests/test_lazy.py", "-k", "pass_lazy or take_the_lazy")

MUTANTS: list[Mutant] = [
    # ---- item 1: lazy= must reach the engine, and the lazy sweep must run -----------------------
    Mutant(
        "L1",
        "item1",
        "select() validates lazy= and drops it",
        f"{SELECT}/api.py",
        'lazy=v.lazy_argument(options.get("lazy", "auto")),',
        'lazy=(v.lazy_argument(options.get("lazy", "auto")), "auto")[1],',
        LAZY_ENTRY,
    ),
    Mutant(
        "L2",
        "item1",
        "the greedy strategies drop inputs.lazy",
        f"{SELECT}/dopt.py",
        "        inputs.lazy,\n",
        '        "auto",\n',
        LAZY_ENTRY,
    ),
    Mutant(
        "L3",
        "item1",
        "select_with_model drops lazy=",
        f"{SELECT}/api.py",
        "        rewards=rewards,\n        **options,\n    )",
        '        rewards=rewards,\n        **{**options, "lazy": "auto"},\n    )',
        t("tests/test_lazy.py", "-k", "select_with_model"),
    ),
    Mutant(
        "L4",
        "item1",
        "distributed.greedy_logdet drops lazy=",
        "python/activerm_fast/distributed.py",
        "problem = greedy_problem(features, pairs, **options)",
        'problem = greedy_problem(features, pairs, **{**options, "lazy": "auto"})',
        t("tests/test_lazy.py", "-k", "sharded"),
    ),
    Mutant(
        "L5",
        "item1",
        "distributed.select drops lazy=",
        "python/activerm_fast/distributed.py",
        "inputs = validated(strategy, **options)",
        'inputs = validated(strategy, **{**options, "lazy": "auto"})',
        t("tests/test_lazy.py", "-k", "sharded"),
    ),
    Mutant(
        "L6",
        "item1",
        'lazy="auto" is always the dense sweep',
        "python/activerm_fast/_launch.py",
        'return lazy == "auto" and not small and members == 1 and device.type == "cpu"',
        "return False",
        t("tests/test_lazy.py", "-k", "brute_force or exact_ties or rank_deficient"),
    ),
    Mutant(
        "L7",
        "item1",
        "the engine builds the lazy sweep but runs the dense one",
        "python/activerm_fast/_launch.py",
        "        if self.lazy is not None:\n            self.lazy.run(",
        "        if False:\n            self.lazy.run(",
        t("tests/test_lazy.py", "-k", "brute_force"),
    ),
    # ---- item 2: expected values from independent computations ----------------------------------
    Mutant(
        "B1",
        "item2",
        "BAL-PM ignores beta",
        f"{SELECT}/bal_pm.py",
        "information + beta * bonus",
        "information + bonus",
        t("tests/test_bal_pm.py", "-k", "oracle"),
    ),
    Mutant(
        "B2",
        "item2",
        "BAL-PM does not lower k to the acquired count",
        f"{SELECT}/bal_pm.py",
        "rho = nearest[:, min(nearest.shape[1], acquired) - 1]",
        "rho = nearest[:, nearest.shape[1] - 1]",
        t("tests/test_bal_pm.py", "-k", "oracle"),
    ),
    Mutant(
        "B3",
        "item2",
        "BAL-PM counts a within-prompt pair's prompt twice",
        f"{SELECT}/bal_pm.py",
        "torch.where(two_prompts, gain[second], 0.0)",
        "gain[second]",
        t("tests/test_bal_pm.py", "-k", "oracle"),
    ),
    Mutant(
        "B4",
        "item2",
        "BAL-PM does not count the labelled pairs' first prompts",
        f"{SELECT}/bal_pm.py",
        "counts.index_add_(0, left, torch.ones_like(left))",
        "counts.index_add_(0, left, torch.zeros_like(left))",
        t("tests/test_bal_pm.py", "-k", "oracle"),
    ),
    Mutant(
        "B5",
        "item2",
        "BAL-PM's distances are not relative to sigma",
        f"{SELECT}/bal_pm.py",
        "ratio = (rho / scale).clamp_min(DISTANCE_FLOOR)",
        "ratio = rho.clamp_min(DISTANCE_FLOOR)",
        t("tests/test_bal_pm.py", "-k", "oracle"),
    ),
    Mutant(
        "R1",
        "item2",
        "the relative ridge is c tr(F_L), not per dimension",
        f"{SELECT}/ridge.py",
        "ridge = scale * trace / features.shape[1]",
        "ridge = scale * trace",
        t("tests/test_cli.py", "-k", "design_options"),
    ),
    Mutant(
        "W1",
        "item2",
        "Fisher weights of the first member instead of the ensemble mean",
        f"{SELECT}/inputs.py",
        "rewards = self.rewards if member is None else",
        "rewards = self.rewards[:1] if member is None else",
        t(
            "tests/test_select.py",
            "tests/test_ridge_and_features.py",
            "tests/test_cli.py",
            "-k",
            "select_with_model or embedding_features or design_options",
        ),
    ),
    Mutant(
        "S1",
        "item2",
        "random never draws the last available pair",
        f"{SELECT}/pool.py",
        "return held.at(rng.choice(held.count, size=size, replace=False))",
        "return held.at(rng.choice(max(size, held.count - 1), size=size, replace=False))",
        t("tests/test_select.py", "-k", "random"),
    ),
    Mutant(
        "S2",
        "item2",
        "random draws from every position, labelled ones too",
        f"{SELECT}/pool.py",
        "self.positions = torch.nonzero(available).reshape(-1)",
        "self.positions = torch.arange(available.shape[0], device=available.device)",
        t("tests/test_select.py", "-k", "random_draws"),
    ),
    Mutant(
        "V1",
        "item2",
        "labels needed are read at the midpoint of the crossing interval",
        "python/activerm_fast/simulation/simulate.py",
        "fraction = (target - previous) / (value - previous)",
        "fraction = 0.5",
        t("tests/test_verdict.py", "-k", "overlapping or hand_derived"),
    ),
    Mutant(
        "V2",
        "item2",
        "the verdict ignores the seed spread of the savings",
        "python/activerm_fast/simulation/simulate.py",
        "saves = saving.mean() - saving.std() > base_saving.mean() + base_saving.std()",
        "saves = saving.mean() > base_saving.mean()",
        t("tests/test_verdict.py", "-k", "hand_derived or overlapping"),
    ),
    Mutant(
        "V3",
        "item2",
        "the printed verdict words are swapped",
        "python/activerm_fast/simulation/simulate.py",
        'verdict = {"fewer labels": "FEWER LABELS", "more labels": "MORE LABELS"}',
        'verdict = {"fewer labels": "MORE LABELS", "more labels": "FEWER LABELS"}',
        t("tests/test_verdict.py"),
    ),
    Mutant(
        "K1",
        "item2",
        "greedy_logdet accepts a k larger than the pairs (kernel only: select still refuses)",
        "python/activerm_fast/kernels.py",
        "k = v.budget(k, problem.pairs.shape[0], problem.excluded)",
        "k = min(v.count_argument(k), problem.pairs.shape[0])",
        t(
            "tests/test_properties.py",
            "-k",
            "malformed_arguments_are_refused or every_kernel_refuses",
        ),
    ),
    Mutant(
        "X1",
        "item2",
        "pair_quadform's values 0.1% too large (the old extreme test never compared them)",
        "python/activerm_fast/kernels.py",
        '"pair_quadform", f)\n    return export(out,',
        '"pair_quadform", f)\n    out = out * 1.001\n    return export(out,',
        t("tests/test_properties.py", "-k", "extreme_magnitudes"),
    ),
    Mutant(
        "G1",
        "item2",
        "the CUDA module claims a device on a machine without a driver",
        "python/activerm_fast/_launch.py",
        "MAX_MEMBERS = int(_core.max_members)",
        "if _cuda is not None:\n    _cuda.device_count = lambda: 1\n"
        "MAX_MEMBERS = int(_core.max_members)",
        t("tests/test_cuda_build.py"),
    ),
    Mutant(
        "T1",
        "item2",
        "select_seconds is not measured",
        "python/activerm_fast/simulation/loop.py",
        "select_seconds = time.perf_counter() - start",
        "select_seconds = 0.0",
        t("tests/test_loop.py", "-k", "timings or record_metrics"),
    ),
    Mutant(
        "T2",
        "item2",
        "select_seconds also counts the labelling",
        "python/activerm_fast/simulation/loop.py",
        "            select_seconds = time.perf_counter() - start\n"
        "            answers = self.oracle.label(asked)\n",
        "            answers = self.oracle.label(asked)\n"
        "            select_seconds = time.perf_counter() - start + 1.0\n",
        t("tests/test_loop.py", "-k", "timings"),
    ),
    # ---- item 5: the core ------------------------------------------------------------------------
    Mutant(
        "C1",
        "core",
        "sweep ties go to the highest pair index",
        "csrc/include/activerm/pair_math.h",
        "(score_a == score_b && index_a < index_b)",
        "(score_a == score_b && index_a > index_b)",
        t("tests/test_greedy.py", "tests/test_lazy.py", "-k", "tie or ties"),
    ),
    Mutant(
        "C2",
        "core",
        "sweep ties go to whichever candidate was seen first",
        "csrc/include/activerm/pair_math.h",
        "return score_a > score_b || (score_a == score_b && index_a < index_b);",
        "return score_a > score_b;",
        t(
            "tests/test_greedy.py",
            "tests/test_lazy.py",
            "tests/test_select.py",
            "-k",
            "tie or ties",
        ),
        equivalent="the CPU sweeps scan pairs in index order and merge the threads' bests in "
        "order, so the first of equal scores seen is the lowest index; only the CUDA sweep's "
        "tree reduction could tell (tests/test_cuda_backend.py, on a GPU)",
    ),
    Mutant(
        "C3",
        "core",
        "a masked (NaN) pair beats every score",
        "csrc/include/activerm/pair_math.h",
        "return score_a > score_b ||",
        "return !(score_a <= score_b) ||",
        t("tests/test_greedy.py", "tests/test_lazy.py", "-k", "exclu or every"),
    ),
    Mutant(
        "C4",
        "core",
        "downdate adds the projection instead of subtracting it",
        "csrc/include/activerm/pair_math.h",
        "return q - coefficient * projection * projection;",
        "return q + coefficient * projection * projection;",
        t("tests/test_lazy.py", "tests/test_greedy.py", "-k", "no_refresh or brute_force"),
    ),
    Mutant(
        "C5",
        "core",
        "downdate by half the coefficient",
        "csrc/include/activerm/pair_math.h",
        "return q - coefficient * projection * projection;",
        "return q - 0.5 * coefficient * projection * projection;",
        t("tests/test_lazy.py", "tests/test_greedy.py", "-k", "no_refresh or brute_force"),
    ),
    Mutant(
        "C6",
        "core",
        "rank-one coefficient without the weight in the denominator",
        "csrc/include/activerm/pair_math.h",
        "return w_star / (1.0 + w_star * q_star);",
        "return w_star / (1.0 + q_star);",
        t("tests/test_lazy.py", "tests/test_greedy.py", "-k", "no_refresh or brute_force"),
    ),
    Mutant(
        "C7",
        "core",
        "Potter's gamma without the square root",
        "csrc/include/activerm/pair_math.h",
        "return w_star / (s + sqrt(s));",
        "return w_star / (s + s);",
        t("tests/test_lazy.py", "tests/test_greedy.py", "-k", "no_refresh or brute_force"),
    ),
    Mutant(
        "C8",
        "core",
        "a chosen pair is not masked",
        "csrc/cpu/greedy_engine_cpu.cpp",
        "      state.scores[local * problem.members + e] = kNaN;\n",
        "      state.scores[local * problem.members + e] += 0.0;\n",
        t("tests/test_greedy.py"),
    ),
    Mutant(
        "C9",
        "core",
        "the prompt quota fills one pair late",
        "csrc/cpu/greedy_engine_cpu.cpp",
        "if (++quota.used[prompt] != quota.limit) continue;",
        "if (++quota.used[prompt] != quota.limit + 1) continue;",
        t("tests/test_quota.py"),
    ),
    Mutant(
        "C10",
        "core",
        "the lazy sweep stops a bucket early",
        "csrc/cpu/lazy_greedy_cpu.cpp",
        "if (best.index >= 0 && bucket_of(best.score) <= bucket) break;",
        "if (best.index >= 0 && bucket_of(best.score) <= bucket + 1) break;",
        t("tests/test_lazy.py", "-k", "brute_force or ties"),
    ),
    Mutant(
        "C11",
        "core",
        "no refresh when a member's score falls (kScoreDrop 0)",
        "csrc/include/activerm/pair_math.h",
        "constexpr double kScoreDrop = 1e-10;",
        "constexpr double kScoreDrop = 0.0;",
        t("tests/test_numerics.py", "tests/test_greedy.py"),
    ),
    Mutant(
        "C12",
        "core",
        "drift tolerated a million times more",
        "csrc/include/activerm/pair_math.h",
        "return fabs(running - fresh) > tolerance * fabs(fresh);",
        "return fabs(running - fresh) > 1e6 * tolerance * fabs(fresh);",
        t("tests/test_numerics.py", "tests/test_greedy.py"),
    ),
    Mutant(
        "P1",
        "core",
        "excluded pairs keep their starting scores",
        f"{SELECT}/design.py",
        "        scores[problem.excluded] = math.nan\n",
        "        pass\n",
        t("tests/test_greedy.py", "tests/test_select.py", "-k", "exclu or labelled"),
        occurrence=0,
    ),
    Mutant(
        "P2",
        "core",
        "a refresh forgets to mask the chosen pairs",
        f"{SELECT}/design.py",
        "    scores[local] = math.nan\n",
        "    pass\n",
        t("tests/test_numerics.py", "tests/test_greedy.py"),
    ),
    Mutant(
        "P3",
        "core",
        "the drift check is off (REFRESH_TOLERANCE 0)",
        f"{SELECT}/design.py",
        "REFRESH_TOLERANCE = 1e-9",
        "REFRESH_TOLERANCE = 0.0",
        t("tests/test_numerics.py", "tests/test_greedy.py"),
    ),
    Mutant(
        "P4",
        "core",
        "log det of lambda I is log lambda, not d log lambda",
        f"{SELECT}/design.py",
        "return Prior(ridge, None, d * math.log(ridge))",
        "return Prior(ridge, None, math.log(ridge))",
        t("tests/test_greedy.py"),
    ),
    Mutant(
        "P5",
        "core",
        "feature scale one power of two smaller",
        f"{SELECT}/design.py",
        "exponent = 0 if top == 0.0 else -math.frexp(top)[1]",
        "exponent = 0 if top == 0.0 else -1 - math.frexp(top)[1]",
        t("tests/test_greedy.py", "tests/test_numerics.py"),
        equivalent="a power of two is exact: every rounding, hence every pick, is unchanged "
        "(only features within a factor 2 of the prior's range limit could tell)",
    ),
    Mutant(
        "P6",
        "core",
        "top-k rules forget the labelled mask",
        f"{SELECT}/registry.py",
        "available = None if inputs.excluded is None else inputs.available",
        "available = None",
        t("tests/test_select.py"),
    ),
    Mutant(
        "P7",
        "core",
        "top-k ties to the highest position",
        f"{SELECT}/pool.py",
        "order = torch.sort(-score, stable=True).indices",
        "order = len(score) - 1 - torch.sort(-score.flip(0), stable=True).indices",
        t("tests/test_select.py", "-k", "exact_ties or valid_batch"),
    ),
    Mutant(
        "P8",
        "core",
        "best() ties to the highest position (coreset, BAL-PM)",
        f"{SELECT}/pool.py",
        "best = int(torch.argmax(score))",
        "best = len(score) - 1 - int(torch.argmax(score.flip(0)))",
        t("tests/test_select.py", "tests/test_bal_pm.py", "-k", "exact_ties or oracle"),
    ),
    Mutant(
        "P9",
        "core",
        "the batch objective is not past-aware",
        f"{SELECT}/registry.py",
        "start = inputs.prior(past=True)",
        "start = inputs.prior(past=False)",
        t("tests/test_select.py"),
    ),
    Mutant(
        "P10",
        "core",
        "dopt-topk always adds the labelled information",
        f"{SELECT}/dopt.py",
        "matrix + inputs.information(past)",
        "matrix + inputs.information(True)",
        t("tests/test_select.py", "-k", "topk"),
    ),
    Mutant(
        "P11",
        "core",
        "the budget allows one pair more than are available",
        "python/activerm_fast/_validation.py",
        "if chosen > count - unavailable:",
        "if chosen > count - unavailable + 1:",
        t("tests/test_validation.py", "tests/test_select.py", "tests/test_errors.py"),
    ),
    Mutant(
        "P12",
        "core",
        "repeated pairs are not refused",
        "python/activerm_fast/_validation.py",
        "        check_unique_pairs(t, n, name)\n",
        "        pass\n",
        t("tests/test_validation.py", "tests/test_errors.py"),
    ),
    Mutant(
        "P13",
        "core",
        "lazy= accepts anything",
        "python/activerm_fast/_validation.py",
        'if isinstance(lazy, bool) or lazy == "auto":',
        "if True:",
        t("tests/test_lazy.py", "-k", "argument"),
    ),
    Mutant(
        "P14",
        "core",
        "ensemble-dopt-greedy: every member gets the mean prior",
        f"{SELECT}/dopt.py",
        "priors = [inputs.prior(past=True, member=e) for e in range(members)]",
        "priors = [inputs.prior(past=True) for e in range(members)]",
        t("tests/test_select.py", "-k", "ensemble"),
    ),
]


@dataclass
class Result:
    mutant: Mutant
    status: str
    seconds: float = 0.0
    detail: str = ""
    extra: dict = field(default_factory=dict)


# ---- building _core from a copy of csrc/ --------------------------------------------------------


class CoreBuilder:
    """Compiles _core from a snapshot of csrc/ (taken once), caching each translation unit's
    object by the hash of its preprocessor inputs' text, so a mutant recompiles only the units
    that include the mutated file."""

    def __init__(self, work: Path) -> None:
        self.snapshot = work / "csrc"
        shutil.copytree(CSRC, self.snapshot)
        self.cache = work / "objects"
        self.cache.mkdir()
        python_include = sysconfig.get_paths()["include"]
        import pybind11

        self.flags = [
            "-O2",
            "-DNDEBUG",
            "-fPIC",
            "-fvisibility=hidden",
            "-fopenmp",
            "-ffp-contract=off",
            "-std=gnu++17",
            '-DACTIVERM_CXX_COMPILER="mutant"',
            "-isystem",
            python_include,
            "-isystem",
            pybind11.get_include(),
        ]
        self.compiler = os.environ.get("CXX", "c++")
        self.deps: dict[str, list[str]] = {}

    def sources(self, tree: Path) -> None:
        """The files each translation unit includes (relative to csrc/), from ``-MM``."""
        for unit in CORE_SOURCES:
            out = subprocess.run(
                [self.compiler, *self.flags, f"-I{tree / 'include'}", "-MM", str(tree / unit)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            files = out.replace("\\\n", " ").split(":", 1)[1].split()
            self.deps[unit] = sorted(
                str(Path(f).resolve().relative_to(tree.resolve())) for f in files
            )

    def build(self, tree: Path, target: Path) -> None:
        """_core from the csrc/ copy ``tree`` into ``target`` (the .so path)."""
        if not self.deps:
            self.sources(tree)
        objects = []
        for unit in CORE_SOURCES:
            digest = hashlib.sha256()
            for rel in self.deps[unit]:
                digest.update(rel.encode() + b"\0" + (tree / rel).read_bytes())
            obj = self.cache / f"{Path(unit).stem}-{digest.hexdigest()[:16]}.o"
            if not obj.exists():
                subprocess.run(
                    [
                        self.compiler,
                        *self.flags,
                        f"-I{tree / 'include'}",
                        "-c",
                        str(tree / unit),
                        "-o",
                        str(obj),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
            objects.append(str(obj))
        # linked like CMake does on Linux: OpenMP symbols bind to the runtime torch loaded
        subprocess.run(
            [self.compiler, "-fPIC", "-O2", "-shared", "-o", str(target), *objects],
            check=True,
            capture_output=True,
            text=True,
        )


def core_name() -> str:
    return next(p.name for p in PACKAGE.glob("_core.*.so"))


# ---- one run --------------------------------------------------------------------------------


def package_copy(folder: Path) -> Path:
    target = folder / "activerm_fast"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def apply(text: str, mutant: Mutant) -> str | None:
    count = text.count(mutant.old)
    if count == 0 or (mutant.occurrence is None and count != 1):
        return None
    at = -1
    for _ in range((mutant.occurrence or 0) + 1):
        at = text.index(mutant.old, at + 1)
    return text[:at] + mutant.new + text[at + len(mutant.old) :]


def run_tests(
    folder: Path, tests: tuple[str, ...], timeout: float, tests_dir: Path | None = None
) -> tuple[str, float, str]:
    if tests_dir is not None:  # the test files of another revision
        tests = tuple(str(tests_dir / a[6:]) if a.startswith("tests/") else a for a in tests)
    path = os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("CI", None)  # the properties keep their own seeds either way; no CI-only fixtures
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rf", *tests]
    start = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "killed", time.monotonic() - start, f"timeout after {timeout:.0f} s"
    seconds = time.monotonic() - start
    output = done.stdout + done.stderr
    failed = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    last = output.strip().splitlines()[-1:] or [""]
    summary = (failed[0] if failed else last[0])[:160]
    if done.returncode == 0:
        return "survived", seconds, summary
    if done.returncode == 5:  # the selection names no test of this revision
        return "no tests", seconds, summary
    if done.returncode == 1 or done.returncode < 0:
        crashed = f"crashed ({done.returncode})"
        return "killed", seconds, summary if done.returncode == 1 else crashed
    return "error", seconds, f"pytest exit {done.returncode}: {summary}"


def check_import(folder: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(folder))
    where = subprocess.run(
        [sys.executable, "-c", "import activerm_fast; print(activerm_fast.__file__)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(folder)):
        raise SystemExit(f"the copy is not what Python imports: {where}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", help="mutant names (e.g. C1 P3)")
    parser.add_argument("--group", choices=["item1", "item2", "core"])
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per test run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated runs")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--tests-at",
        metavar="REV",
        help="run the tests/ of git revision REV instead (e.g. the tests before a rewrite, to "
        "show which mutants they let through)",
    )
    args = parser.parse_args()
    chosen = [
        m
        for m in MUTANTS
        if (not args.only or m.name in args.only) and (not args.group or m.group == args.group)
    ]
    if args.list:
        for m in chosen:
            print(f"{m.name:<4} {m.group:<6} {m.path}: {m.what}  [{' '.join(m.tests)}]")
        return 0
    work = Path(tempfile.mkdtemp(prefix="activerm-mutants-"))
    results: list[Result] = []
    tests_dir = None
    try:
        if args.tests_at:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.tests_at, "tests"],
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
            tests_dir = work / "tests"
        builder = CoreBuilder(work) if any(m.cpp for m in chosen) else None
        baseline_core = None
        if builder is not None:
            start = time.monotonic()
            baseline_core = work / "baseline-core.so"
            builder.build(builder.snapshot, baseline_core)
            print(f"baseline _core built from a copy of csrc/ in {time.monotonic() - start:.0f} s")
        # the baseline: every selection passes on the unmutated copy
        broken: dict[tuple[tuple[str, ...], bool], str] = {}
        if not args.no_baseline:
            for key in dict.fromkeys((m.tests, m.cpp) for m in chosen):
                tests, cpp = key
                folder = work / f"baseline-{len(broken)}-{int(cpp)}"
                folder.mkdir()
                copy = package_copy(folder)
                if cpp:
                    assert baseline_core is not None
                    shutil.copy(baseline_core, copy / core_name())
                check_import(folder)
                status, seconds, detail = run_tests(folder, tests, args.timeout, tests_dir)
                label = f"{'C++ ' if cpp else ''}{' '.join(tests)}"
                print(f"baseline  {status:<8} {seconds:5.0f} s  {label}")
                if status not in ("survived", "no tests"):
                    broken[key] = detail
                shutil.rmtree(folder)
        for mutant in chosen:
            folder = work / mutant.name
            folder.mkdir()
            copy = package_copy(folder)
            source = (ROOT / mutant.path).read_text()
            mutated = apply(source, mutant)
            if mutated is None:
                result = Result(mutant, "stale", detail="text not found (the code moved)")
            elif (mutant.tests, mutant.cpp) in broken:
                result = Result(mutant, "baseline", detail=broken[(mutant.tests, mutant.cpp)])
            else:
                if mutant.cpp:
                    assert builder is not None
                    tree = folder / "csrc"
                    shutil.copytree(builder.snapshot, tree)
                    snapshot_text = (builder.snapshot / mutant.path[5:]).read_text()
                    mutated = apply(snapshot_text, mutant)
                    if mutated is None:
                        results.append(Result(mutant, "stale", detail="not in the csrc/ copy"))
                        continue
                    (tree / mutant.path[5:]).write_text(mutated)
                    try:
                        builder.build(tree, copy / core_name())
                    except subprocess.CalledProcessError as err:
                        results.append(
                            Result(mutant, "error", detail=f"build failed: {err.stderr[-300:]}")
                        )
                        continue
                else:
                    (copy / Path(mutant.path).relative_to("python/activerm_fast")).write_text(
                        mutated
                    )
                status, seconds, detail = run_tests(folder, mutant.tests, args.timeout, tests_dir)
                result = Result(mutant, status, seconds, detail)
            results.append(result)
            shutil.rmtree(folder, ignore_errors=True)
            note = f"  (expected: {mutant.equivalent})" if mutant.equivalent else ""
            print(
                f"{mutant.name:<4} {result.status:<8} {result.seconds:5.0f} s  "
                f"{mutant.what}: {result.detail}{note}",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    statuses = dict.fromkeys(r.status for r in results)
    counts = {s: sum(r.status == s for r in results) for s in statuses}
    print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(results)} mutants")
    for r in results:
        if r.status == "survived":
            why = r.mutant.equivalent or "NOT EXPLAINED: add a test"
            print(f"  survivor {r.mutant.name}: {r.mutant.what} -- {why}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {
                        "name": r.mutant.name,
                        "group": r.mutant.group,
                        "what": r.mutant.what,
                        "path": r.mutant.path,
                        "tests": list(r.mutant.tests),
                        "status": r.status,
                        "seconds": round(r.seconds, 1),
                        "detail": r.detail,
                    }
                    for r in results
                ],
                indent=1,
            )
            + "\n"
        )
    unexplained = [r for r in results if r.status == "survived" and not r.mutant.equivalent]
    return 1 if unexplained or any(r.status in ("error", "baseline") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
