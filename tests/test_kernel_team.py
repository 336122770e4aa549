"""The compiled kernels of a one-thread selection take the free cores (_threads.kernel_team).

A small selection runs its passes on one torch thread, and its one-shot kernels on the cores
the other processes leave free at that moment. These tests give the load meter a machine whose
load they choose (an idle one, one with a busy process) and check the thread count the kernels
run with, that the meter never sleeps for them, and that the picks keep their bits.
"""

from __future__ import annotations

import collections
import hashlib
import threading
import time
import types

import numpy as np
import pytest
import torch

import activerm_fast as arm
from activerm_fast import _core, _threads


class FakeMachine:
    """What /proc/stat would say: the busy CPU seconds, which grow by ``others`` busy cores
    while the fake clock advances, beside this process's own CPU time, and ``running``
    threads running now (this one included)."""

    def __init__(self, others: float, running: int) -> None:
        self.others = others
        self.running = running
        self.clock = 100.0  # the fake wall clock perf_counter reads
        self.busy = 0.0  # the other processes' CPU seconds so far

    def advance(self, seconds: float) -> None:
        self.clock += seconds
        self.busy += self.others * seconds

    def load(self, cpus: frozenset[int]) -> tuple[float, int]:
        return self.busy + time.process_time(), self.running


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """A fresh meter over a FakeMachine (idle until the test says otherwise), torch on 2
    threads, no fixed thread count, and a sleep that fails the test."""

    def no_sleep(seconds: float) -> None:
        if seconds > _threads._LOOK_PAUSE:  # a look again after a pause, never a window
            raise AssertionError(f"the meter slept {seconds} s")

    fake = FakeMachine(others=0.0, running=1)
    monkeypatch.delenv("ACTIVERM_FAST_FIXED_THREADS", raising=False)
    monkeypatch.setattr(_threads, "_machine_load", fake.load)
    monkeypatch.setattr(_threads, "_own_running_threads", lambda: 1)
    monkeypatch.setattr(_threads, "_METER", _threads._LoadMeter())
    monkeypatch.setattr(_threads._METER, "_cpus", frozenset({0, 1}))
    # the meter's clock and sleep only: the time module itself stays as it is for the rest
    clock = types.SimpleNamespace(
        perf_counter=lambda: fake.clock, process_time=time.process_time, sleep=no_sleep
    )
    monkeypatch.setattr(_threads, "time", clock)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield fake
    torch.set_num_threads(before)


def team_inside_selection() -> tuple[int, int, int]:
    """Torch's count in a small selection, in a kernel_team block there, and after it."""
    with _threads.selection_threads(1000, "cpu"):
        passes = torch.get_num_threads()
        with _threads.kernel_team():
            kernel = torch.get_num_threads()
        after = torch.get_num_threads()
    return passes, kernel, after


def threads_seen(monkeypatch: pytest.MonkeyPatch, *names: str) -> dict[str, collections.Counter]:
    """Per ``_core`` function of ``names``, how many of its calls saw each OpenMP count."""
    seen: dict[str, collections.Counter] = {name: collections.Counter() for name in names}
    for name in names:
        kernel = getattr(_core, name)

        def counted(*args, name=name, kernel=kernel):
            seen[name][_core.max_threads()] += 1
            return kernel(*args)

        monkeypatch.setattr(_core, name, counted)
    return seen


def test_an_idle_machine_gives_the_kernels_both_cores(machine):
    assert team_inside_selection() == (1, 2, 1)
    assert torch.get_num_threads() == 2  # the selection gives torch's count back


def test_a_busy_process_seen_running_keeps_one_thread(machine):
    machine.running = 2  # one other thread running now: no recent window, the look decides
    assert team_inside_selection() == (1, 1, 1)


def test_the_look_does_not_count_this_process_s_own_running_threads(machine, monkeypatch):
    machine.running = 2  # the second one is this process's (a BLAS worker still spinning)
    monkeypatch.setattr(_threads, "_own_running_threads", lambda: 2)
    assert team_inside_selection() == (1, 2, 1)


@pytest.mark.parametrize(
    "running, own, expected",
    [
        # this process's second thread runs for three looks, a passing thread queued behind it
        ([3, 3, 3, 1], [2, 2, 2, 1], 2),
        # a busy process: still seen once this process runs one thread
        ([3, 3, 2], [2, 2, 1], 1),
        # a blip beside this process's one thread, gone a millisecond later
        ([2, 1], [1, 1], 2),
    ],
)
def test_the_look_is_repeated_until_it_can_tell(machine, monkeypatch, running, own, expected):
    looks = iter(running)
    counts = iter(own)
    monkeypatch.setattr(_threads, "_machine_load", lambda cpus: (0.0, next(looks)))
    monkeypatch.setattr(_threads, "_own_running_threads", lambda: next(counts))
    assert team_inside_selection()[1] == expected
    assert next(looks, None) is None  # every look was taken, none more


def test_the_window_after_the_first_look_decides(machine):
    assert team_inside_selection()[1] == 2  # the first look: nothing else running
    machine.others = 1.0  # then a process keeps a core busy over the next 0.2 s
    machine.running = 1  # (not running at the moment of the look: the window must tell)
    machine.advance(0.2)
    assert team_inside_selection()[1] == 1
    machine.others = 0.0
    machine.advance(0.05)  # under the shortest window: the last estimate stands
    assert team_inside_selection()[1] == 1
    machine.advance(0.2)  # idle over the 0.25 s since that estimate: both cores free again
    assert team_inside_selection()[1] == 2


def test_a_stale_window_is_replaced_by_a_look_not_a_sleep(machine):
    assert team_inside_selection()[1] == 2
    machine.advance(60.0)  # far past _MAX_WINDOW
    machine.running = 3
    assert team_inside_selection()[1] == 1


def test_outside_a_small_selection_nothing_changes(machine):
    with _threads.kernel_team():
        assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    with _threads.selection_threads(1000, "cpu"), _threads.kernel_team():
        assert torch.get_num_threads() == 1  # the caller chose one thread: it stays
    torch.set_num_threads(2)
    with _threads.selection_threads(_threads.SMALL_SELECTION + 1, "cpu"):
        with _threads.kernel_team():  # a large selection keeps torch's count throughout
            assert torch.get_num_threads() == 2


def test_a_nested_selection_keeps_the_outer_count(machine):
    with _threads.selection_threads(1000, "cpu"):
        with _threads.selection_threads(1000, "cpu"), _threads.kernel_team():
            assert torch.get_num_threads() == 2
        with _threads.kernel_team():
            assert torch.get_num_threads() == 2


def test_an_unknown_load_changes_no_count(machine, monkeypatch):
    monkeypatch.setattr(_threads, "_machine_load", lambda cpus: None)  # no /proc/stat
    assert team_inside_selection() == (1, 1, 1)  # the small selection's one thread
    with _threads.selection_threads(_threads.SMALL_SELECTION + 1, "cpu"):
        assert torch.get_num_threads() == 2  # torch's count


def test_some_of_the_machine_s_cpus_give_no_look_but_a_window(machine, monkeypatch):
    """Where this process may run on only some of the CPUs, the machine's running count says
    nothing of them: no look, and the busy time on its own CPUs over a window decides."""
    monkeypatch.setattr(_threads, "_machine_load", lambda cpus: (machine.load(cpus)[0], None))
    machine.running = 40  # the rest of the machine is busy: no matter
    assert team_inside_selection() == (1, 1, 1)
    machine.advance(0.05)  # too short a window: still unknown
    assert team_inside_selection() == (1, 1, 1)
    with _threads.selection_threads(_threads.SMALL_SELECTION + 1, "cpu"):
        assert torch.get_num_threads() == 2
    machine.advance(0.2)  # its own CPUs idle over a window: both cores
    assert team_inside_selection() == (1, 2, 1)


@pytest.mark.parametrize("running, expected", [(1, 2), (2, 1)])
def test_dopt_topk_kernels_run_on_the_planned_team_with_the_same_bits(
    machine, monkeypatch, running, expected
):
    rng = np.random.default_rng(running)
    n, d = 600, 48  # projection and Fisher product above the kernels' one-thread bounds
    features = rng.normal(size=(n, d)).astype(np.float32)
    pairs = arm.pairs.cross_prompt(np.arange(n) // 6, 3000, seed=1)
    rewards = rng.normal(size=(2, n))

    def choose() -> arm.Selection:
        return arm.select(
            "dopt-topk",
            features=features,
            pairs=pairs[40:],
            labelled=pairs[:40],
            rewards=rewards,
            k=30,
        )

    torch.set_num_threads(1)
    alone = choose()
    torch.set_num_threads(2)
    machine.running = running
    seen = threads_seen(
        monkeypatch, "project_features", "fisher_product", "fisher_matrix", "pair_quadform"
    )
    picked = choose()
    called = {name for name, counts in seen.items() if counts}
    always = {"fisher_product", "fisher_matrix"}
    projected = {"project_features"} if _core.wide_vectors() else set()  # else torch's product
    assert always | projected <= called
    assert all(set(seen[name]) == {expected} for name in called), seen
    assert np.array_equal(picked.indices, alone.indices)
    assert picked.gains.tobytes() == alone.gains.tobytes()
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("running, expected", [(1, 2), (2, 1), (5, 1)])
def test_a_large_selection_takes_the_cores_free_as_it_starts(machine, running, expected):
    machine.running = running
    with _threads.selection_threads(_threads.SMALL_SELECTION + 1, "cpu"):
        assert torch.get_num_threads() == expected
        with _threads.kernel_team():  # no one-thread selection to lift
            assert torch.get_num_threads() == expected
    assert torch.get_num_threads() == 2
    with _threads.selection_threads(-1, "cpu"):  # work unknown (an implicit pool): as large
        assert torch.get_num_threads() == expected


def test_a_fixed_thread_count_is_kept_beside_a_busy_process(machine, monkeypatch):
    monkeypatch.setenv("ACTIVERM_FAST_FIXED_THREADS", "1")
    machine.running = 3
    with _threads.selection_threads(_threads.SMALL_SELECTION + 1, "cpu"):
        assert torch.get_num_threads() == 2
    assert team_inside_selection() == (1, 2, 1)


def test_another_device_changes_nothing(machine):
    with _threads.selection_threads(1000, "cuda"), _threads.kernel_team():
        assert torch.get_num_threads() == 2


@pytest.mark.parametrize("running, expected", [(1, 2), (2, 1)])
def test_the_greedy_loop_of_a_small_selection_runs_on_the_planned_team(
    machine, monkeypatch, running, expected
):
    rng = np.random.default_rng(7)
    features = rng.normal(size=(300, 16)).astype(np.float32)
    pairs = arm.pairs.cross_prompt(np.arange(300) // 3, 2000, seed=2)
    torch.set_num_threads(1)
    alone = arm.greedy_logdet(features, pairs, 20, lazy=False)
    torch.set_num_threads(2)
    machine.running = running
    seen = threads_seen(monkeypatch, "greedy_run")["greedy_run"]
    picked = arm.greedy_logdet(features, pairs, 20, lazy=False)
    assert seen == {expected: 1}
    assert np.array_equal(picked.indices, alone.indices)
    assert picked.gains.tobytes() == alone.gains.tobytes()


def test_this_process_s_running_threads_are_not_another_process_s_load():
    """A thread of this process that is running (a BLAS worker spinning after its last call, here
    a hash of a large buffer, which runs without the GIL) is no other process's load."""
    data = bytes(200 << 20)
    done = threading.Event()

    def hash_until_done() -> None:
        while not done.is_set():
            hashlib.sha256(data).digest()

    worker = threading.Thread(target=hash_until_done)
    worker.start()
    counts = []
    try:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and max(counts, default=0) < 2:
            counts.append(_threads._own_running_threads())
    finally:
        done.set()
        worker.join()
    assert max(counts) >= 2  # the caller and the hashing thread, seen running together
    assert min(counts) >= 1  # the caller is always running when it looks


@pytest.mark.parametrize("running, expected", [(1, 2), (2, 1)])
def test_a_large_greedy_logdet_starts_on_the_free_cores(machine, monkeypatch, running, expected):
    rng = np.random.default_rng(11)
    features = rng.normal(size=(2000, 64)).astype(np.float32)
    pairs = arm.pairs.cross_prompt(np.arange(2000) // 10, 70_000, seed=3)
    assert len(pairs) * 64 > _threads.SMALL_SELECTION  # a large selection
    machine.running = running
    seen = threads_seen(monkeypatch, "greedy_run")["greedy_run"]
    arm.greedy_logdet(features, pairs, 5, lazy=False)
    assert seen == {expected: 1}
    assert torch.get_num_threads() == 2
