"""PyTorch intra-op threads from the cores actually free, for runs of many small operations.

The reward model's training and inference are thousands of small, synchronised torch
operations. Each parallel region ends at a barrier, so with a thread per core and one core
taken by another process every operation waits for the thread the OS has preempted, and the
idle threads spin and take time from the working ones (``bench/bench_contention.py`` times a
small ``activerm-fast simulate`` beside a busy process with both thread counts).

:func:`free_core_threads` sets torch's thread count, for the block it wraps, to the cores
that the other processes on the machine leave free (never more than torch's count when the
outermost such block began, which follows OMP_NUM_THREADS or ``torch.set_num_threads``),
re-checks it whenever the block calls the function it yields, and restores torch's count at
the end. The other processes' load is the CPU time ``/proc/stat`` counts on this process's
CPUs over a recent window, less this process's own CPU time. Where ``/proc/stat`` cannot be
read, or ``ACTIVERM_FAST_FIXED_THREADS`` is set to anything but ``0`` or an empty string,
torch's count is left as it is.

Small selections run on one thread (:func:`selection_threads`), all but their compiled
one-shot kernels: :func:`kernel_team` gives each of those the cores free at that moment, from a
look at the threads running now where no recent window exists, so a selection of milliseconds
never sleeps through a fresh sample. Larger selections take the cores free as they start.

torch shares one OpenMP runtime with ``_core`` (the same ``libgomp.so.1``), so the count also
bounds the greedy engine's threads inside such a block. Only the time should depend on the
count: a RewardModel fit and its features gave the same bits with one thread and with two on
arena-bench sizes. A BLAS that splits its sums by thread count could change the last bits, as
a different OMP_NUM_THREADS already does; ACTIVERM_FAST_FIXED_THREADS=1 rules that out.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

# A core counts as free when the other processes leave at least this share of it idle.
_FREE_SHARE = 0.75
# Shortest window a load estimate is taken over (/proc/stat counts in ticks of 10 ms).
_MIN_WINDOW = 0.1
# A window older than this describes a machine that may have changed: sample afresh.
_MAX_WINDOW = 5.0
# Length of a fresh sample, slept through so that this process adds nothing to it.
_FRESH_WINDOW = 0.05
# Without a window, the threads running now stand in for it: at most this many looks, this
# many seconds apart, while other processes' threads are seen (_LoadMeter._others_running).
_MOST_LOOKS = 8
_LOOK_PAUSE = 0.001


def _usable_cpus() -> frozenset[int]:
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return frozenset(range(os.cpu_count() or 1))


def usable_cores() -> int:
    """The cores this process may run on.

    ``activerm-fast simulate --jobs``'s default and ``select --processes``'s bound.

    Examples
    --------
    >>> from activerm_fast.simulate import usable_cores
    >>> usable_cores() >= 1
    True
    """
    return len(_usable_cpus())


def _machine_load(cpus: frozenset[int]) -> tuple[float, int | None] | None:
    """CPU seconds the machine has spent busy on ``cpus`` since boot, and how many threads run
    right now (``procs_running``, the caller included) where ``cpus`` are all the machine's
    (else None: that count is of the whole machine); None: unknown."""
    try:
        with open("/proc/stat") as f:
            lines = f.readlines()
    except OSError:
        return None
    ticks = 0
    seen = 0
    listed = 0
    running = None
    for line in lines:
        name, _, rest = line.partition(" ")
        if name == "procs_running":
            try:
                running = int(rest)
            except ValueError:
                running = None
            continue
        if not name.startswith("cpu") or name == "cpu":
            continue
        try:
            cpu = int(name[3:])
            # user nice system idle iowait irq softirq steal (guest time is inside user)
            values = [int(v) for v in rest.split()[:8]]
        except ValueError:
            return None
        listed += 1
        if cpu in cpus:
            ticks += sum(values) - values[3] - (values[4] if len(values) > 4 else 0)
            seen += 1
    if seen != len(cpus):
        return None
    return ticks / os.sysconf("SC_CLK_TCK"), running if listed == seen else None


def _own_running_threads() -> int:
    """This process's threads running now (state R in /proc/self/task), at least the caller:
    a BLAS's workers may still spin after its last call."""
    running = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/stat") as f:
                # the state follows the command name, which is in parentheses
                state = f.read().rpartition(")")[2].split(maxsplit=1)[0]
        except (OSError, IndexError):
            continue  # the thread has ended
        running += state == "R"
    return max(running, 1)


class _LoadMeter:
    """Estimates how many of this process's CPUs the other processes leave free."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cpus = _usable_cpus()
        self._mark: tuple[float, float, float] | None = None  # wall, machine busy, own CPU
        self._free: float | None = None

    def _sample(self) -> tuple[tuple[float, float, float], int | None] | None:
        """(wall, machine busy, own CPU) seconds now, and the threads running now (None where
        this process may run on only some of the machine's CPUs)."""
        load = _machine_load(self._cpus)
        if load is None:
            return None
        return (time.perf_counter(), load[0], time.process_time()), load[1]

    def _others_running(self, running: int) -> int:
        """Other processes' threads running now, from ``running`` (procs_running just read).

        Less this process's own running threads, counted after that read. While threads of
        its own still run (a team's or a BLAS's workers a few milliseconds after their last
        work) they keep the cores, so any passing thread (a kernel worker) waits and reads as
        running. So a look that sees others is repeated every millisecond, at least once (a
        passing thread is gone within a millisecond, a busy process is not) and until this
        process runs one thread; the fewest seen count.
        """
        fewest = max(0, running - _own_running_threads())
        for _ in range(1, _MOST_LOOKS):
            if fewest == 0:
                break
            time.sleep(_LOOK_PAUSE)
            load = _machine_load(self._cpus)
            if load is None or load[1] is None:
                break
            own = _own_running_threads()
            fewest = min(fewest, max(0, load[1] - own))
            if own == 1:
                break
        return fewest

    def free_cores(self, wait: bool = True) -> float | None:
        """Free cores over the window since the last estimate (None: cannot tell).

        Without a recent window, a fresh one is slept through; with ``wait=False`` the
        threads running at this moment stand in for it (one look, for callers that take
        milliseconds; None where the machine's running count says nothing of this process's
        CPUs), and the window starts from here.
        """
        with self._lock:
            mark = self._mark
            if (
                mark is not None
                and self._free is not None
                and time.perf_counter() - mark[0] < _MIN_WINDOW
            ):
                return self._free  # too short a window to measure afresh: no file read
            sample = self._sample()
            if sample is None:
                return None
            now, running = sample
            if mark is None or now[0] - mark[0] > _MAX_WINDOW:
                if not wait:
                    self._mark = now
                    self._free = None
                    if running is not None:
                        self._free = max(0.0, len(self._cpus) - self._others_running(running))
                    return self._free
                time.sleep(_FRESH_WINDOW)
                mark = now
                sample = self._sample()
                if sample is None:
                    return None
                now = sample[0]
            elif now[0] - mark[0] < _MIN_WINDOW:
                return self._free  # None: no estimate yet over so short a window
            wall = now[0] - mark[0]
            others = max(0.0, (now[1] - mark[1]) - (now[2] - mark[2])) / wall
            self._mark = now
            self._free = max(0.0, len(self._cpus) - others)
            return self._free


_METER = _LoadMeter()


def _fixed() -> bool:
    return os.environ.get("ACTIVERM_FAST_FIXED_THREADS", "") not in ("", "0")


def planned_threads(limit: int, wait: bool = True, unknown: int | None = None) -> int:
    """Threads for small operations now: the free cores, at least 1 and at most ``limit``
    (``wait``: as :meth:`_LoadMeter.free_cores` takes it); where the load cannot be told,
    ``unknown`` (default ``limit``)."""
    if _fixed():
        return limit
    free = _METER.free_cores(wait)
    if free is None:
        return limit if unknown is None else unknown
    return max(1, min(limit, math.floor(free + 1 - _FREE_SHARE)))


class _Outermost(threading.local):
    limit: int | None = None  # torch's count when the outermost block began


_OUTERMOST = _Outermost()


@contextlib.contextmanager
def free_core_threads(device: torch.device | str = "cpu") -> Iterator[Callable[[], None]]:
    """Run the block with torch's intra-op threads set to the free cores (on the CPU only).

    Yields a function that re-checks the load and adjusts the count (cheap: it measures only
    when 0.1 s have passed since the last estimate). At the end torch's count is what it was
    when the block began. Blocks nest: an inner block may use as many threads as torch had
    when the outermost one began.
    """
    if torch.device(device).type != "cpu":
        yield lambda: None
        return
    before = torch.get_num_threads()
    outermost = _OUTERMOST.limit is None
    if outermost:
        _OUTERMOST.limit = before
    limit = _OUTERMOST.limit
    assert limit is not None

    def adjust() -> None:
        threads = planned_threads(limit)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)

    try:
        adjust()
        yield adjust
    finally:
        if outermost:
            _OUTERMOST.limit = None
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


# Widest matrix (columns) decomposed with one thread: up to it a decomposition is a small part
# of a selection, so one thread costs little; beyond it the arithmetic is worth a team.
SMALL_DECOMPOSITION = 512


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch (and so MKL and OpenMP) threads, then restore the
    count it began with."""
    before = torch.get_num_threads()
    if threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _one_thread(condition: bool = True) -> contextlib.AbstractContextManager[None]:
    """Run the block with one torch (and so MKL) thread if ``condition``."""
    return _torch_threads(1) if condition else contextlib.nullcontext()


# Elements up to which one pass over a CPU tensor (a check, a reduction) runs on one thread: as
# for the kernels run once per call (csrc/cpu/one_shot_work_cpu.h), a team costs more than it
# saves here, and beside a busy process it can wait milliseconds for a core.
SMALL_PASS = 1 << 20


# A selection's work (candidate pairs x feature width x members) up to which the whole of it
# runs on one thread: its strategies are many passes over the pool, each a parallel region that
# small work does not repay and that beside a busy process waits for a core
# (bench/bench_contention.py --cases small-random small-dopt-topk small-coreset). Its compiled
# one-shot kernels are the exception (:func:`kernel_team`).
SMALL_SELECTION = 1 << 22


def selection_work(features: Any, pairs: Any) -> tuple[int, torch.device | str]:
    """A selection's work as its arguments show it before any check (pairs x width x members;
    -1 when they do not show it) and the features' device.

    >>> import numpy as np
    >>> from activerm_fast._threads import selection_work
    >>> selection_work(np.zeros((3, 10, 8)), np.zeros((5, 2), int))  # 3 members of 8 columns
    (120, 'cpu')
    """
    device = features.device if isinstance(features, torch.Tensor) else "cpu"
    shape = getattr(features, "shape", None)
    try:
        count = len(pairs)
    except TypeError:  # an implicit pool: a count of up to 2^62 pairs, no length
        return -1, device
    if shape is None or len(shape) not in (2, 3):
        return -1, device
    members = shape[0] if len(shape) == 3 else 1
    return int(count) * int(shape[-1]) * int(members), device


class _Selection(threading.local):
    threads: int = 1  # torch's count that the one-thread selection running here replaced


_SELECTION = _Selection()


@contextlib.contextmanager
def selection_threads(work: int, device: torch.device | str) -> Iterator[None]:
    """Run a selection of ``work`` (pairs x width x members, as :func:`selection_work` gives
    it; negative: unknown) with the threads it repays, on the CPU.

    Up to :data:`SMALL_SELECTION` with one torch thread, all but the compiled one-shot kernels
    (:func:`kernel_team`); larger with torch's count bounded by the cores the other
    processes leave free as it starts (:func:`planned_threads` without waiting): beside a busy
    process every pass and the greedy steps' team would wait for the preempted thread, and
    the greedy loop's tuner only moves within the count it starts with. Blocks nest: an inner
    selection keeps the outer one's count. On another device nothing changes.

    >>> import torch
    >>> from activerm_fast._threads import selection_threads
    >>> with selection_threads(5_000 * 64, "cpu"):
    ...     torch.get_num_threads()
    1
    """
    before = torch.get_num_threads()
    if torch.device(device).type != "cpu" or before == 1:
        yield
        return
    small = 0 <= work <= SMALL_SELECTION
    replaced = _SELECTION.threads
    if small:
        _SELECTION.threads = before
    try:
        with _torch_threads(1 if small else planned_threads(before, wait=False)):
            yield
    finally:
        _SELECTION.threads = replaced


@contextlib.contextmanager
def kernel_team() -> Iterator[None]:
    """Run one compiled kernel call with the free cores when a one-thread selection holds them.

    A small selection's passes run on one thread (:func:`selection_threads`), but its
    compiled one-shot kernels (the Fisher matrix's two halves, the projection, the pair
    quadratic forms and Fisher weights) can take milliseconds on one core (the O(n d^2) ones
    at d = 128), which a team repays at once; below its own work bound a kernel still runs on
    one thread (for most, ``kOneShotParallelWork`` in csrc/cpu/one_shot_work_cpu.h). So the
    block runs with as many threads as the selection replaced, bounded by the cores the other
    processes leave free at this moment (:func:`planned_threads` without waiting): beside a
    busy process, or where the load cannot be told, it keeps one thread. The compiled greedy
    loop runs under it too, its tuner moving within the count it gets. Outside such a
    selection it changes nothing. Every kernel gives the same bits with any thread count, so
    only the time depends on it.

    >>> import torch
    >>> from activerm_fast._threads import kernel_team
    >>> before = torch.get_num_threads()
    >>> with kernel_team():  # outside a one-thread selection: torch's count stays
    ...     torch.get_num_threads() == before
    True
    """
    limit = _SELECTION.threads
    # a load that cannot be told keeps the selection's one thread
    threads = planned_threads(limit, wait=False, unknown=1) if limit > 1 else 1
    with _torch_threads(max(threads, torch.get_num_threads())):
        yield


def one_thread_pass(t: torch.Tensor) -> contextlib.AbstractContextManager[None]:
    """Run a pass over ``t`` with one torch thread when ``t`` is on the CPU and has at most
    :data:`SMALL_PASS` elements.

    >>> import torch
    >>> from activerm_fast._threads import one_thread_pass
    >>> before = torch.get_num_threads()
    >>> with one_thread_pass(torch.zeros(1000)):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    return _one_thread(t.device.type == "cpu" and t.numel() <= SMALL_PASS)


def one_thread_for(columns: int) -> contextlib.AbstractContextManager[None]:
    """Run the block with one torch (and so MKL) thread when its matrices have at most
    :data:`SMALL_DECOMPOSITION` columns.

    For the d x d (and k x d) decompositions of a selection: MKL's threaded eigh gives other
    last bits with another thread count, so with one thread the selection's scores and gains
    no longer depend on the count.

    >>> import torch
    >>> from activerm_fast._threads import one_thread_for
    >>> before = torch.get_num_threads()
    >>> with one_thread_for(128):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    return _one_thread(columns <= SMALL_DECOMPOSITION)


# Rows of a float64 product that MKL may split across threads. Its strict reproducible mode
# (_openmp.py) does not hold for short float64 products on every CPU: on an AMD EPYC one of a
# few hundred rows changed by rounding with the thread count; one of this many rows kept its
# bits (tests/test_thread_stable_products.py), so a shorter product runs on one thread.
PRODUCT_BLOCK_ROWS = 1024


def thread_stable_mm(
    left: torch.Tensor, right: torch.Tensor, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``left @ right`` (2-D) with the same bits whatever torch's thread count.

    On the CPU the product is taken :data:`PRODUCT_BLOCK_ROWS` rows of ``left`` at a time and
    the last, shorter block on one thread; on another device it is one ``torch.mm``. Writes
    into ``out`` when given (contiguous, of the product's shape and dtype).

    >>> import torch
    >>> from activerm_fast._threads import thread_stable_mm
    >>> a = torch.randn(1500, 24, dtype=torch.float64)
    >>> b = torch.randn(24, 24, dtype=torch.float64)
    >>> before = torch.get_num_threads()
    >>> torch.set_num_threads(1)
    >>> one = thread_stable_mm(a, b)
    >>> torch.set_num_threads(before)
    >>> torch.equal(thread_stable_mm(a, b), one), torch.allclose(one, a @ b)
    (True, True)
    """
    if out is None:
        out = torch.empty(
            (left.shape[0], right.shape[1]),
            dtype=torch.result_type(left, right),
            device=left.device,
        )
    if left.device.type != "cpu":
        return torch.mm(left, right, out=out)
    rows = left.shape[0]
    whole = rows - rows % PRODUCT_BLOCK_ROWS
    for start in range(0, whole, PRODUCT_BLOCK_ROWS):
        end = start + PRODUCT_BLOCK_ROWS
        torch.mm(left[start:end], right, out=out[start:end])
    if whole < rows:
        with _one_thread():
            torch.mm(left[whole:], right, out=out[whole:])
    return out
