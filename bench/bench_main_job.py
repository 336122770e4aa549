"""The main job's costs (issue 24): the reward-head fit, the per-round overhead, and
``activerm-fast simulate`` serial against ``--jobs``.

    python bench/bench_main_job.py                 # fit + round + the default simulate
    python bench/bench_main_job.py --quick         # small simulate, 1 run: checks the script
    python bench/bench_main_job.py --skip-simulate # fit and round only
    python bench/bench_main_job.py --simulate-args "--strategies random dopt-greedy --seeds 2"
    python bench/bench_main_job.py --skip-fit --skip-serial --simulate-args "--seeds 5" \
        --variants "--patience 2" "--precision bfloat16"   # what other settings conclude

fit       arena-bench (768-d inputs: prompt and response embeddings), LoopConfig()'s head
          (hidden (256, 256), 3 members, batch 64, up to 60 epochs), labelled sets of 100, 400
          and 800 random cross-prompt pairs with Bradley-Terry labels. "before" is the fit as it
          was before issue 24, kept here only as the baseline: per-tensor AdamW steps and the
          loop's former patience of 8 epochs; "after" is RewardModel.fit with today's
          LoopConfig (fused AdamW, a batch's distinct responses forwarded once, patience
          LoopConfig.patience or --after-patience, each member stopping on its own, the
          constructor's weights kept by the fit). Each is timed from the model's
          construction, as the loop makes one a round (the fit before drew the constructor's
          weights again). "bf16" is the after fit multiplying in bfloat16
          (LoopConfig(precision="bfloat16"), simulate --precision bfloat16). All three run
          in this process, taking turns, on the same pairs and seeds. Held-out loss: the
          cross-entropy of the ensemble's mean reward margin against the oracle's own
          probabilities on every within-prompt pair of the test prompts (ln 2 = 0.693 is a
          constant reward). Then one profiled fit (torch.profiler, seed 0) per size, after and
          bf16: the share of its wall time in each kind of operator (matrix products, AdamW,
          row gathers, GELU, dtype copies) and in the rest (Python, autograd, small ops).
round     one 50,000-pair round of the loop outside selection and fit: building the candidate
          pool, and select("random"), before (on the 768-d embeddings and its available-pair
          count, as the loop called it) and after (as the loop calls it now), beside the draw
          itself (numpy sampling k of the unlabelled positions); torch threads for the free
          cores, as the loop runs a round.
simulate  the whole command (start-up included, as a user waits for it) with --jobs 1 (unless
          --skip-serial) and --jobs N (N: the usable cores), alternating; the records of both
          are compared (identical but for their timings), and with --jobs N the command with
          each of --variants added (default: --precision bfloat16) taking turns with them:
          its time, how many points of its Spearman (and, where the data has test pairs,
          pair-accuracy) curves differ from the plain run's by more than the two seed
          spreads, and which verdicts against random it changes. As the yardstick for those
          changes, the plain command and each variant are then run on as many seeds again
          (S..2S-1, resuming their folders): how many verdicts the plain command's two seed
          sets share, and how many a variant shares with it on the second set and on all 2S.

Medians over the repeats, ratios before / after (and before / bf16). The load average is
printed at the start and the end: the machine may be shared, and everything else running on it
distorts the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import activerm_fast as arm
from activerm_fast.data.pairs import candidate_pool, within_prompt
from activerm_fast.model.precision import native_bfloat16
from activerm_fast.model.reward_model import _HeldOut
from activerm_fast.selection.api import select
from activerm_fast.simulate import summarize, usable_cores, verdicts
from activerm_fast.simulation.loop import LoopState
from activerm_fast.testing import threads

FIT_SIZES = (100, 400, 800)
BEFORE_PATIENCE = 8  # LoopConfig.patience before issue 24
TIMINGS = ("select_seconds", "fit_seconds")
QUICK_SIMULATE = [
    *("--seeds", "2", "--strategies", "random", "dopt-greedy", "--rounds", "3"),
    *("--per-round", "50", "--cross-pairs", "5000"),
]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---- fit ---------------------------------------------------------------------------------------


def batch_loss_before(model: arm.RewardModel, x: torch.Tensor, pairs: torch.Tensor,
                      y: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:  # fmt: skip
    """(E,) BT loss of each member on its (E, b) pairs as the fit computed it before issue 24:
    both responses of every pair forwarded, repeated ones as often as they occur."""
    b = pairs.shape[1]
    rows = torch.cat([pairs[..., 0], pairs[..., 1]], dim=1)
    r = torch.bmm(model._forward(x[rows], params), params[-1][:, :, None]).squeeze(-1)
    margin = r[:, :b] - r[:, b:]
    return F.binary_cross_entropy_with_logits(margin, y, reduction="none").mean(dim=1)


def fit_before(x: np.ndarray, pairs: np.ndarray, labels: np.ndarray, *,
               config: arm.LoopConfig, seed: int) -> tuple[arm.RewardModel, int]:  # fmt: skip
    """The loop's model and RewardModel.fit as they were before issue 24 (bootstrap members,
    shared held-out tenth, early stopping once every member has run out of patience, torch
    threads for the free cores; the constructor's weights drawn again by the fit), with
    per-tensor AdamW steps and the old patience: the baseline. Returns the model and the
    epochs run.
    """
    model = arm.RewardModel(x.shape[1], config.hidden, config.ensemble, seed=seed)
    model._init_parameters(seed)
    xt, pairs_t = torch.from_numpy(x), torch.from_numpy(pairs)
    y = torch.from_numpy(labels).float()
    rng = np.random.default_rng(seed)
    num_val = int(round(0.1 * len(pairs)))
    split = rng.permutation(len(pairs))
    train_rows, val_rows = split[num_val:], split[:num_val]
    members = rng.choice(train_rows, size=(model.ensemble, train_rows.size), replace=True)
    params = model.parameters()
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(
        params, lr=config.lr, weight_decay=config.weight_decay, foreach=False
    )
    best_loss = torch.full((model.ensemble,), math.inf)
    best_params = [p.detach().clone() for p in params]
    stale = torch.zeros(model.ensemble, dtype=torch.int64)
    epochs = 0
    with threads.free_core_threads() as adjust_threads:
        for _ in range(config.epochs):
            adjust_threads()
            epochs += 1
            order = torch.from_numpy(rng.permuted(members, axis=1).copy())
            for start in range(0, order.shape[1], config.batch_size):
                batch = order[:, start : start + config.batch_size]
                loss = batch_loss_before(model, xt, pairs_t[batch], y[batch], params).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            held_out = _HeldOut.of(xt, pairs_t[val_rows], y[val_rows])
            assert held_out is not None
            val_loss = held_out.loss(model, params)
            improved = val_loss < best_loss
            best_loss = torch.where(improved, val_loss, best_loss)
            for kept, p in zip(best_params, params, strict=True):
                kept[improved] = p.detach()[improved]
            stale = torch.where(improved, 0, stale + 1)
            if bool((stale >= BEFORE_PATIENCE).all()):
                break
    with torch.no_grad():
        for p, kept in zip(params, best_params, strict=True):
            p.requires_grad_(False)
            p.copy_(kept)
    return model, epochs


def fit_after(x: np.ndarray, pairs: np.ndarray, labels: np.ndarray, *,
              config: arm.LoopConfig, seed: int) -> tuple[arm.RewardModel, int]:  # fmt: skip
    """The model and RewardModel.fit as ActiveLoop makes and calls them now; the model and
    the epochs run."""
    model = arm.RewardModel(x.shape[1], config.hidden, config.ensemble, seed=seed)
    model.fit(
        x, pairs, labels, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        weight_decay=config.weight_decay, patience=config.patience, seed=seed,
        precision=config.precision,
    )  # fmt: skip
    return model, len(model.history_.train_loss) if model.history_ else 0


def bench_fit(repeats: int, patience: int | None = None) -> None:
    data = arm.load("arena-bench")
    train, test = data.train(), data.test()
    config = arm.LoopConfig()
    if patience is not None:
        config = dataclasses.replace(config, patience=patience)
    # the same fit multiplying in bfloat16 (simulate --precision bfloat16)
    bf16 = dataclasses.replace(config, precision="bfloat16")
    test_pairs = within_prompt(test.prompt_ids)
    truth = torch.from_numpy(arm.BTOracle(test.gold, beta=config.beta).probabilities(test_pairs))

    def heldout(model: arm.RewardModel) -> float:
        r = torch.from_numpy(np.asarray(model.rewards(test.embeddings)).mean(axis=0)).double()
        margin = r[test_pairs[:, 0]] - r[test_pairs[:, 1]]
        return float(F.binary_cross_entropy_with_logits(margin, truth))

    pool = candidate_pool(train.prompt_ids, "cross", config.cross_pairs, 0)
    print(
        f"\nfit: arena-bench {train.n} x {train.dim}, hidden {config.hidden}, "
        f"{config.ensemble} members, batch {config.batch_size}, <= {config.epochs} epochs; "
        f"patience before {BEFORE_PATIENCE}, after {config.patience}; after in "
        f"{config.precision}, bf16 the same fit in bfloat16 "
        f"(native here: {native_bfloat16('cpu')}); {torch.get_num_threads()} torch threads; "
        f"medians of {repeats} seeds"
    )
    ways: list[tuple[str, Callable[..., tuple[arm.RewardModel, int]], arm.LoopConfig]] = [
        ("before", fit_before, config),
        ("after", fit_after, config),
        ("bf16", fit_after, bf16),
    ]
    print(f"{'pairs':>6} {'before s':>9} {'after s':>8} {'bf16 s':>7} {'ratios':>13}  "
          f"{'held-out loss before / after / bf16':>35}  {'epochs':>8}")  # fmt: skip
    for size in FIT_SIZES:
        seconds: dict[str, list[float]] = {name: [] for name, _, _ in ways}
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in ways}
        losses: dict[str, list[float]] = {name: [] for name, _, _ in ways}
        epochs: dict[str, list[int]] = {name: [] for name, _, _ in ways}
        for seed in range(repeats):
            rng = np.random.default_rng(seed)
            pairs = pool[rng.choice(len(pool), size, replace=False)]
            labels = arm.BTOracle(train.gold, beta=config.beta, seed=seed).label(pairs)
            turn = seed % len(ways)  # each way goes first as often as the others
            for name, fit, settings in ways[turn:] + ways[:turn]:
                start, start_cpu = time.perf_counter(), time.process_time()
                model, ran = fit(train.embeddings, pairs, labels, config=settings, seed=seed)
                seconds[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
                losses[name].append(heldout(model))
                epochs[name].append(ran)
        wall = {name: statistics.median(seconds[name]) for name, _, _ in ways}
        loss = " / ".join(f"{statistics.median(losses[name]):.4f}" for name, _, _ in ways)
        ran = "/".join(f"{statistics.median(epochs[name]):.0f}" for name, _, _ in ways)
        print(
            f"{size:>6} {wall['before']:>9.3f} {wall['after']:>8.3f} {wall['bf16']:>7.3f} "
            f"{wall['before'] / wall['after']:>5.2f}x {wall['before'] / wall['bf16']:>5.2f}x  "
            f"{loss:>35}  {ran:>8}"
        )
        cpu_median = {name: statistics.median(cpu[name]) for name, _, _ in ways}
        print(
            f"{'':>6} CPU s {cpu_median['before']:.3f} / {cpu_median['after']:.3f} / "
            f"{cpu_median['bf16']:.3f}; per seed loss "
            + "; ".join(f"{name} {np.round(losses[name], 4).tolist()}" for name, _, _ in ways)
        )
    fit_profile(train, pool, [(name, settings) for name, fit, settings in ways if fit is fit_after])


# torch operators by what they do in the fit, for fit_profile
OPERATOR_KINDS = {
    "matrix products": ("aten::bmm", "aten::baddbmm", "aten::mm", "aten::addmm"),
    "AdamW": ("aten::_fused_adamw_", "Optimizer.step#AdamW.step", "aten::_foreach_add_"),
    "row gathers": ("aten::index", "aten::gather", "aten::index_select"),
    "GELU": ("aten::gelu", "aten::gelu_backward"),
    "dtype copies": ("aten::copy_",),
}


def fit_profile(train: Any, pool: np.ndarray, ways: list[tuple[str, arm.LoopConfig]]) -> None:
    """Where the fit's wall time goes: one profiled fit per size and way (seed 0), the
    operators' own time on the calling thread by kind, as shares of the profiled wall time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]):  # the profiler's first start is slow
        torch.ones(1).sum()
    print("\nwhere the fit's time goes (torch.profiler, seed 0, its own cost included): "
          "shares of the wall time")  # fmt: skip
    print(f"{'pairs':>6} {'fit':>6} {'wall s':>7}  "
          + "  ".join(f"{kind:>15}" for kind in OPERATOR_KINDS) + f"  {'the rest':>8}")  # fmt: skip
    for size in FIT_SIZES:
        pairs = pool[np.random.default_rng(0).choice(len(pool), size, replace=False)]
        labels = arm.BTOracle(train.gold, beta=ways[0][1].beta, seed=0).label(pairs)
        for name, settings in ways:
            fit_after(train.embeddings, pairs, labels, config=settings, seed=0)  # warm
            with profile(activities=[ProfilerActivity.CPU]) as profiled:
                start = time.perf_counter()
                fit_after(train.embeddings, pairs, labels, config=settings, seed=0)
                wall = time.perf_counter() - start
            own = {e.key: e.self_cpu_time_total / 1e6 for e in profiled.key_averages()}
            shares = [sum(own.get(op, 0.0) for op in ops) / wall for ops in OPERATOR_KINDS.values()]
            print(f"{size:>6} {name:>6} {wall:>7.3f}  "
                  + "  ".join(f"{share:>15.0%}" for share in shares)
                  + f"  {1 - sum(shares):>8.0%}")  # fmt: skip


# ---- one round's overhead --------------------------------------------------------------------


def bench_round(repeats: int) -> None:
    data = arm.load("arena-bench")
    config = arm.LoopConfig()
    loop = arm.ActiveLoop(data, "random", config, seed=0)
    train = loop.train
    pool = loop._candidate_pool(np.random.default_rng([0, 3]))
    labelled = pool[np.random.default_rng(1).choice(len(pool), 700, replace=False)]
    state = LoopState(pairs=labelled)
    zero = np.zeros((train.n, 1), np.float32)
    k = config.per_round

    def pool_building() -> None:
        loop._candidate_pool(np.random.default_rng([0, 3]))

    def random_before() -> None:
        kk = min(k, loop._available(pool, state))
        select("random", features=train.embeddings, pairs=pool, k=kk, labelled=labelled, seed=1)

    def random_after() -> None:
        loop._choose(pool, state, 1)

    def sampling() -> None:
        keys = pool[:, 0] * train.n + pool[:, 1]
        free = np.flatnonzero(~np.isin(keys, labelled[:, 0] * train.n + labelled[:, 1]))
        np.random.default_rng(1).choice(free, k, replace=False)

    assert np.array_equal(
        select("random", features=zero, pairs=pool, k=k, labelled=labelled, seed=1).indices,
        select(
            "random", features=train.embeddings, pairs=pool, k=k, labelled=labelled, seed=1
        ).indices,
    ), "the draw must not depend on the features"
    cases = {
        "candidate pool (50,000 cross-prompt pairs)": pool_building,
        'select("random") before (768-d embeddings)': random_before,
        'select("random") after (as the loop calls it)': random_after,
        "sampling alone (numpy)": sampling,
    }
    times = {name: [] for name in cases}  # type: dict[str, list[float]]
    with threads.free_core_threads():  # as ActiveLoop.run runs a round
        for run in cases.values():
            run()
        for _ in range(repeats):
            for name, run in cases.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    print(f"\nround: {len(pool)} candidates, {len(labelled)} labelled, k = {k}; "
          f"medians of {repeats}, alternating")  # fmt: skip
    for name, spent in times.items():
        print(f"  {name:<48} {1e3 * statistics.median(spent):>9.1f} ms")
    before = statistics.median(times['select("random") before (768-d embeddings)'])
    after = statistics.median(times['select("random") after (as the loop calls it)'])
    print(f"  select('random') before / after: {before / after:.1f}x")


# ---- simulate ----------------------------------------------------------------------------------


def run_simulate(args: list[str], jobs: int, out: Path) -> tuple[float, list[dict[str, Any]]]:
    command = [sys.executable, "-m", "activerm_fast", "simulate", *args, "--no-progress"]
    command += ["--jobs", str(jobs), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    records = json.loads((out / "results.json").read_text())
    return seconds, [{k: v for k, v in r.items() if k not in TIMINGS} for r in records]


def bench_simulate(args: list[str], repeats: int, variants: list[str], serial: bool) -> None:
    jobs = usable_cores()
    # the command with 1 (unless skipped) and N workers, and each variant with N
    runs = {"parallel": (jobs, args)}
    if serial:
        runs["serial"] = (1, args)
    for variant in variants:
        runs[variant] = (jobs, [*args, *variant.split()])
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, list[dict[str, Any]]] = {}
    folders: dict[str, Path] = {}  # each run's last folder, resumed on more seeds below
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(repeats):
            names = list(runs)
            turn = repeat % len(names)  # each goes first as often as the others
            for number, name in enumerate(names[turn:] + names[:turn]):
                count, command = runs[name]
                folders[name] = Path(folder) / f"run-{number}-{repeat}"
                seconds, results[name] = run_simulate(command, count, folders[name])
                times[name].append(seconds)
        # the same commands on as many seeds again, for how far verdicts move with the seeds
        seeds = seed_count(args)
        more = {
            name: run_simulate(with_seeds(runs[name][1], 2 * seeds), jobs, folders[name])[1]
            for name in ("parallel", *variants)
            if any(r["strategy"] == "random" for r in results[name])
        }
    wall = {name: statistics.median(spent) for name, spent in times.items()}
    parallel = wall["parallel"]
    print(f"\nsimulate {' '.join(args) or '(defaults)'}: medians of {repeats}")
    if not serial:
        print(f"  --jobs {jobs}  {parallel:>8.1f} s")
    else:
        same = results["serial"] == results["parallel"]
        print(f"  --jobs 1  {wall['serial']:>8.1f} s")
        print(f"  --jobs {jobs}  {parallel:>8.1f} s   serial / parallel "
              f"{wall['serial'] / parallel:.2f}x on {jobs} usable cores")  # fmt: skip
        print(f"  records of --jobs 1 and --jobs {jobs} identical (but for timings): {same}")
    if "parallel" in more:
        first, second = seed_halves(more["parallel"], seeds)
        print(f"  verdicts the same on seeds 0-{seeds - 1} and on seeds {seeds}-{2 * seeds - 1} "
              f"(the command's own seed sets): {same_verdicts(first, second)}")  # fmt: skip
        for strategy, (before, after) in verdict_changes(first, second).items():
            if before != after:
                print(f"    {strategy}: {before} on the first, {after} on the second")
    for variant in variants:
        compare_variant(results["parallel"], results[variant], variant, jobs, parallel,
                        wall[variant])  # fmt: skip
        if variant in more:
            plain, changed = (seed_halves(more[name], seeds)[1] for name in ("parallel", variant))
            print(f"    on seeds {seeds}-{2 * seeds - 1}: {same_verdicts(plain, changed)}; on all "
                  f"{2 * seeds}: {same_verdicts(more['parallel'], more[variant])}")  # fmt: skip


def seed_count(args: list[str]) -> int:
    """The seeds ``activerm-fast simulate`` runs with these arguments (its own default if none)."""
    from activerm_fast.cli import build_parser

    return int(build_parser().parse_args(["simulate", *args]).seeds)


def with_seeds(args: list[str], seeds: int) -> list[str]:
    """``args`` with ``--seeds seeds`` in place of any ``--seeds`` they give."""
    kept = [
        a for i, a in enumerate(args) if a != "--seeds" and (i == 0 or args[i - 1] != "--seeds")
    ]
    return [*kept, "--seeds", str(seeds)]


def seed_halves(
    records: list[dict[str, Any]], seeds: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The records of seeds 0..seeds-1 and of the seeds after."""
    return [r for r in records if r["seed"] < seeds], [r for r in records if r["seed"] >= seeds]


def verdict_changes(
    one: list[dict[str, Any]], other: list[dict[str, Any]]
) -> dict[str, tuple[str, str]]:
    """Each strategy's verdict against random from both sets of records."""
    outcomes = [{v.strategy: v.outcome for v in verdicts(run)} for run in (one, other)]
    return {s: (outcome, outcomes[1][s]) for s, outcome in outcomes[0].items()}


def same_verdicts(one: list[dict[str, Any]], other: list[dict[str, Any]]) -> str:
    """How many strategies get the same verdict against random from both sets of records."""
    pairs = verdict_changes(one, other).values()
    return f"{sum(a == b for a, b in pairs)} of {len(pairs)}"


def compare_variant(default: list[dict[str, Any]], changed: list[dict[str, Any]], variant: str,
                    jobs: int, default_seconds: float, seconds: float) -> None:  # fmt: skip
    """The same command with ``variant`` added, run with ``jobs`` workers: its time, and what it
    concludes."""
    ratio = default_seconds / seconds
    print(f"  --jobs {jobs} {variant}  {seconds:.1f} s   without / with {ratio:.2f}x")
    # learning curves: points (strategy, labels) whose means differ by more than the two
    # seed spreads together
    for metric in ("spearman", "pair_accuracy"):
        curves = [summarize(run, metric) for run in (default, changed)]
        points = [(s, n) for s in curves[0] for n in curves[0][s]]
        apart = [
            (s, n, round(curves[1][s][n][0] - curves[0][s][n][0], 4)) for s, n in points
            if abs(curves[0][s][n][0] - curves[1][s][n][0])
            > curves[0][s][n][1] + curves[1][s][n][1]
        ]  # fmt: skip
        if points:
            print(f"  {metric} curves: {len(apart)} of {len(points)} points apart by more than "
                  f"the two seed spreads (strategy, labels, with - without) {apart}")  # fmt: skip
    if any(r["strategy"] == "random" for r in changed):
        print(f"  verdicts the same without and with {variant}: {same_verdicts(default, changed)}")
        for strategy, (without, with_) in verdict_changes(default, changed).items():
            if without != with_:
                print(f"    {strategy}: {without} without, {with_} with")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="seeds of the fit, round repeats")
    parser.add_argument("--simulate-repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a small simulate, 1 repeat")
    parser.add_argument("--skip-fit", action="store_true")
    parser.add_argument("--skip-simulate", action="store_true")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument(
        "--after-patience", type=int, help="the fit's patience after (default: the loop's)"
    )
    parser.add_argument(
        "--simulate-args", default="", help="arguments of activerm-fast simulate (default: none)"
    )
    parser.add_argument(
        "--variants", nargs="*", default=["--precision bfloat16"], metavar="ARGS",
        help="arguments each added to the simulate command in a run compared with it "
        "(default: --precision bfloat16)",
    )  # fmt: skip
    parser.add_argument("--skip-serial", action="store_true", help="no --jobs 1 run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"{usable_cores()} usable; load average {load()} at start"
    )
    if not args.skip_fit:
        bench_fit(1 if args.quick else args.repeats, args.after_patience)
    bench_round(3 if args.quick else 5 * args.repeats)
    if not args.skip_simulate:
        simulate_args = QUICK_SIMULATE if args.quick else args.simulate_args.split()
        bench_simulate(
            simulate_args, 1 if args.quick else args.simulate_repeats, args.variants,
            serial=not args.skip_serial,
        )  # fmt: skip
    print(f"\nload average {load()} at the end")


if __name__ == "__main__":
    main()
