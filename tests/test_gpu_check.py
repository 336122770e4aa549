"""The GPU check's parts that run without a GPU: a device is lent rarely and briefly, so the
script, the sanitizer workload and the torch baseline of bench/gpu_check.sh must work the first
time they meet one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import activerm_fast as arm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

import baselines  # noqa: E402
import bench_gpu  # noqa: E402
import cuda_sanitizer_workload  # noqa: E402
import fetch_gpu_wheels  # noqa: E402


def test_sanitizer_workload_covers_every_path_on_the_cpu(capsys):
    assert cuda_sanitizer_workload.main(["--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    ran = {line[5:] for line in lines if line.startswith("ok   ")}
    assert not [line for line in lines if line.startswith("DIFF")]
    for kernel in ("pair_diff", "pair_quadform", "fisher_matrix", "greedy_logdet"):
        # float32 and float64 features x both index dtypes x aligned or not, and the halves
        combinations = {name for name in ran if name.startswith(kernel) and "features" in name}
        assert len(combinations) == 10
        assert sum("misaligned" in name for name in combinations) == 4
        halves = sorted(name.split(", ")[-2] for name in combinations if "float16" in name)
        assert halves == ["bfloat16 features", "float16 features"]
    assert {f"select {strategy}" for strategy in arm.STRATEGIES} <= ran
    assert "greedy engine, every score masked (records -1)" in ran
    assert lines[-1] == f"{len(ran)} cases, 0 differing from the CPU"


def test_sanitizer_workload_quick_subset_keeps_both_extremes(capsys):
    assert cuda_sanitizer_workload.main(["--device", "cpu", "--quick"]) == 0
    diffs = [line for line in capsys.readouterr().out.splitlines() if "pair_diff" in line]
    assert diffs == [
        "ok   pair_diff, float32 features, int32 pairs",
        "ok   pair_diff, float64 features, int64 pairs, misaligned pairs",
        "ok   pair_diff, float16 features, int32 pairs",
        "ok   pair_diff, bfloat16 features, int32 pairs",
    ]


def test_misaligned_pairs_defeat_vector_loads():
    pairs = torch.arange(20, dtype=torch.int32).reshape(10, 2)
    for dtype in (torch.int32, torch.int64):
        view = cuda_sanitizer_workload.misaligned(pairs.to(dtype))
        assert torch.equal(view, pairs.to(dtype))
        assert view.data_ptr() % (2 * view.element_size()) != 0


@pytest.mark.parametrize("chunk", [257, 1 << 20])
def test_torch_baseline_picks_what_the_engine_picks(rng, chunk):
    features = rng.normal(size=(400, 12)).astype(np.float32)
    pairs = arm.pairs.cross_prompt(np.arange(400) // 4, 3000, seed=2)
    weights = arm.fisher_weights(rng.normal(size=400), pairs)
    # the baseline projects in float32: fewer steps than the d = 12 directions, where the
    # scores it compares are far apart (later ones near-tie within its rounding)
    steps = 10
    chosen, times = baselines.torch_rank_one_greedy(
        torch.from_numpy(features),
        torch.from_numpy(pairs),
        torch.from_numpy(weights),
        1e-2,
        steps,
        chunk=chunk,
    )
    want = arm.greedy_logdet(features, pairs, steps, weights=weights, prior=1e-2, lazy=False)
    assert chosen == want.indices.tolist()
    assert len(times) == steps and min(times) > 0


@pytest.mark.parametrize("count, chunk", [(1, 1 << 26), (30_000, 7_000), (120_000, 1 << 26)])
def test_bench_pool_is_distinct_cross_prompt_pairs_in_both_orientations(count, chunk):
    n = 600
    generator = torch.Generator().manual_seed(count)
    pairs = bench_gpu.cross_prompt_pairs(n, count, generator, chunk=chunk)
    assert pairs.shape == (count, 2) and pairs.dtype == torch.int32
    assert int(pairs.min()) >= 0 and int(pairs.max()) < n
    prompts = pairs.long() // bench_gpu.RESPONSES_PER_PROMPT
    assert bool((prompts[:, 0] != prompts[:, 1]).all())
    keys = torch.minimum(pairs[:, 0], pairs[:, 1]).long() * n + pairs.max(dim=1).values
    assert torch.unique(keys).numel() == count  # 120,000 of the 178,800 possible: repeats drawn
    if count > 1:
        flipped = float((pairs[:, 0] > pairs[:, 1]).double().mean())
        assert 0.4 < flipped < 0.6
        assert not bool((keys[1:] > keys[:-1]).all())  # in random order, not sorted


CUDA_MODES = [
    ["bench/bench_gpu.py"],
    ["bench/bench_implicit_pool.py", "--device", "cuda"],
    ["bench/bench_half_features.py", "--device", "cuda"],
    ["bench/bench_sharded_gpu.py"],
    ["bench/bench_model_features.py", "--device", "cuda"],
]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the benchmarks would run")
@pytest.mark.parametrize("command", CUDA_MODES, ids=lambda command: " ".join(command))
def test_cuda_modes_without_a_gpu_say_so_in_one_line(command):
    result = subprocess.run(
        [sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    script = Path(command[0]).name
    assert result.stderr.startswith(script), result.stderr
    assert "sees no CUDA device" in result.stderr or "needs the CUDA backend" in result.stderr


def test_wheels_for_the_device_are_what_transformers_needs_here():
    pytest.importorskip("transformers")
    from importlib import metadata

    versions = fetch_gpu_wheels.closure(fetch_gpu_wheels.PINNED)
    assert versions["transformers"] == metadata.version("transformers")
    assert versions["tokenizers"] == metadata.version("tokenizers")
    assert "huggingface-hub" in versions  # a requirement of both
    assert not fetch_gpu_wheels.PRESENT & set(versions)  # numpy, torch: on the device already
    assert "pytest" not in versions  # extras' requirements are left out
    with pytest.raises(SystemExit, match="no-such-package is needed on the device"):
        fetch_gpu_wheels.closure(("no-such-package",))


def test_profile_names_kernels_without_namespaces_or_arguments():
    sweep = (
        "void activerm::(anonymous namespace)::sweep_kernel<true, true, true, int>(int const*, "
        "activerm::(anonymous namespace)::SweepArgs)"
    )
    assert bench_gpu.kernel_name(sweep) == "sweep_kernel<true, true, true, int>"
    rows = "void activerm::(anonymous namespace)::rows_kernel<float>(float const*, long, double*)"
    assert bench_gpu.kernel_name(rows) == "rows_kernel<float>"
    assert bench_gpu.kernel_name("Memcpy DtoD (Device -> Device)") == "Memcpy DtoD"
    torch_kernel = "void at::native::vectorized_elementwise_kernel<4, " + "x" * 80 + ">(int)"
    shortened = bench_gpu.kernel_name(torch_kernel)
    assert len(shortened) == 60 and shortened.endswith("...")


API_ERROR = (
    '========= Program hit cudaErrorInvalidValue (error 1) due to "invalid argument" on CUDA API'
    " call to cudaFuncGetAttributes."
)
KERNEL_ERROR = "========= Invalid __global__ read of size 8 bytes"


def fake_device_tools(folder: Path, report: list[str], summary: str | None = None) -> None:
    """nvidia-smi answering like an H100, and a compute-sanitizer that prints its tool and
    environment, runs the program it is given on the CPU (no GPU here) and then reports the
    lines ``report`` and ``summary`` (by default their ERROR SUMMARY), passing the program's
    exit code on."""
    smi = folder / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        'case "$*" in *name,*) echo "NVIDIA H100 80GB HBM3, 81559 MiB, 580.159.04, 9.0";;'
        ' *) echo "9.0";; esac\n'
    )
    lines = "".join(f"echo '{line}'\n" for line in report)
    sanitizer = folder / "compute-sanitizer"
    sanitizer.write_text(
        "#!/bin/sh\n"
        'echo "sanitizer $1 $2 caching-off=$PYTORCH_NO_CUDA_MEMORY_CACHING"\n'
        "shift 4\n"  # --tool T --print-limit N
        '"$@" --device cpu\n'
        "code=$?\n"
        + lines
        + f"echo '{summary or f'========= ERROR SUMMARY: {len(report)} errors'}'\n"
        + "exit $code\n"
    )
    for tool in (smi, sanitizer):
        tool.chmod(0o755)


def run_gpu_check(folder: Path, phases: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{folder}:{os.environ['PATH']}",
        "PHASES": phases,
        "OUT": str(folder / "out"),
    }
    return subprocess.run(
        ["bash", "bench/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_gpu_check_runs_the_phases_asked_and_keeps_the_log(tmp_path):
    # torch's start-up probes return errors from a few CUDA API calls: reported, not failed on
    fake_device_tools(tmp_path, [API_ERROR, API_ERROR])
    result = run_gpu_check(tmp_path, "memcheck racecheck")
    assert result.returncode == 0, result.stdout + result.stderr
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert log == result.stdout
    assert "sanitizer --tool memcheck caching-off=1" in log
    assert "sanitizer --tool racecheck caching-off=1" in log
    assert "2 errors, 2 of them CUDA API calls that returned an error, 0 in kernels" in log
    assert "=== build" not in log and "=== bench" not in log
    assert log.rstrip().endswith("every phase passed")
    # the sanitizers run side by side, each into its own log, copied into the main one
    for tool in ("memcheck", "racecheck"):
        own = (tmp_path / "out" / f"{tool}.log").read_text()
        assert f"sanitizer --tool {tool} caching-off=1" in own and own in log
        assert f"=== {tool}: exit code 0, joined" in log


RACE = "========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)"


def test_gpu_check_reads_racecheck_summaries(tmp_path):
    fake_device_tools(tmp_path, [], RACE.replace("1 hazard", "0 hazards").replace("(1", "(0"))
    assert run_gpu_check(tmp_path, "racecheck").returncode == 0


@pytest.mark.parametrize(
    "report, summary, why",
    [
        ([KERNEL_ERROR, API_ERROR], None, "2 errors, 1 of them CUDA API calls"),
        ([], RACE, "1 errors, 0 of them CUDA API calls"),
        (None, None, "no summary line"),
    ],
    # ids without the reasons' words: `pytest -k cuda`, the device's test phase, skips these
    ids=["memcheck-errors", "racecheck-hazard", "sanitizer-did-not-run"],
)
def test_gpu_check_fails_on_a_kernel_error(tmp_path, report, summary, why):
    fake_device_tools(tmp_path, report or [], summary)
    if report is None:  # the sanitizer did not run the program at all
        (tmp_path / "compute-sanitizer").write_text("#!/bin/sh\nexit 1\n")
    result = run_gpu_check(tmp_path, "memcheck")
    assert result.returncode == 1
    assert why in result.stdout
    assert "FAILED: memcheck (exit code 1)" in result.stdout


def test_gpu_check_stops_a_phase_at_its_limit_and_runs_the_next(tmp_path):
    # a sanitizer that hangs: its phase is stopped at the limit (shortened here) with what it
    # printed kept, and the phases after it still run (half fails here: no GPU)
    fake_device_tools(tmp_path, [])
    (tmp_path / "compute-sanitizer").write_text("#!/bin/sh\necho started\nexec sleep 600\n")
    script = (ROOT / "bench" / "gpu_check.sh").read_text()
    shortened = tmp_path / "gpu_check.sh"
    shortened.write_text(
        script.replace('cd "$(dirname "$0")/.."', f'cd "{ROOT}"').replace(
            "beside memcheck 110", "beside memcheck 3"
        )
    )
    env = {
        **os.environ,
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "PHASES": "memcheck half",
        "OUT": str(tmp_path / "out"),
    }
    result = subprocess.run(
        ["bash", str(shortened)], env=env, capture_output=True, text=True, timeout=120
    )
    log = result.stdout
    assert result.returncode == 1, log + result.stderr
    assert "started" in (tmp_path / "out" / "memcheck.log").read_text()
    assert "=== memcheck: exit code 124" in log
    assert "=== half (limit 15 s)" in log and "=== half: exit code" in log
    assert "FAILED: memcheck (exit code 124)" in log
