"""Selection over a candidate pool sharded across the processes of a ``torch.distributed`` group.

Every rank passes the same features, rewards, labelled pairs and scalar arguments (they are
*replicated*) and its own part of the candidate pairs (``pairs``, and ``weights`` / ``exclude``
for :func:`greedy_logdet`: they are *sharded*). The pool is the concatenation of the shards in
rank order; every result names pairs by their position in it (global positions) and is the
same on every rank. Any world size and any split, empty shards included, give the selection of
:func:`activerm_fast.select` / :func:`activerm_fast.greedy_logdet` on the concatenated pool:
the same indices and, bit for bit, the same gains and log det (``dopt-topk`` and
``past-dopt-topk`` excepted, see :func:`select`).

How a step works: every rank sweeps its shard on the compiled greedy engine (the primitives
sweep / apply of :class:`~activerm_fast._launch.GreedyEngine`, driven by
:func:`activerm_fast.selection.design.greedy`), the ranks all-gather their best
pair's choice record (score, global index, the pair's two responses, its weight per member:
(4 + E) * 8 bytes per rank, whatever P and d), every rank takes the same winner (largest score,
ties to the lowest global index, as the kernels rank pairs) and applies it to its replicated
factor. The strategies that rank pairs exchange their local top k, ``random`` draws positions
in the concatenation of the available pairs (of an implicit pool's shards: every rank draws
the same positions and computes their pairs from the seed), ``coreset`` all-gathers each
step's farthest pair;
under a per-prompt quota a ranking or a draw is walked in ever longer leading parts of the
whole pool's order until k pairs fit.

Collectives run on the group's backend: NCCL on the current CUDA device, gloo (and any other
backend) on the CPU, the few numbers moved there and back. Errors are agreed: every rank
checks its own arguments, the ranks exchange what failed, and every rank raises the error of
the lowest failing rank prefixed ``rank r:`` (a rank whose replicated arguments differ from rank
0's is an error too), so no rank waits forever on a collective its peers will never call.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import numpy as np
import torch
import torch.distributed as dist

from . import _launch
from . import _validation as v
from .data.implicit_pool import ImplicitPool
from .kernels import (
    GreedyOptions,
    Selection,
    excluded_pairs,
    excluding_every_occurrence,
    export,
    greedy_problem,
)
from .selection import design as _design
from .selection.api import SelectOptions, validated
from .selection.inputs import SelectionInputs
from .selection.pool import AvailablePairs, Pool, Ranking
from .selection.registry import STRATEGIES

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["agreed", "greedy_logdet", "pairs_at", "select"]

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

# words hashed at a time by _fingerprint (bounds its int64 temporaries)
_FINGERPRINT_CHUNK = 1 << 22
# longest wait for gloo's thread to drop a finished collective's tensors (microseconds unless
# the thread is preempted; bounded so that a reference held elsewhere cannot stall a step)
_RELEASE_WAIT_S = 1.0


# ---- the group --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    """What failed on one rank, in a form every rank can receive."""

    kind: type[BaseException]
    message: str


class _Group:
    """A process group, its rank and size, and the device its collectives run on."""

    def __init__(self, group: Any) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "activerm_fast.distributed needs an initialised torch.distributed process group: "
                "launch with torchrun and call torch.distributed.init_process_group(), or pass "
                "group="
            )
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        nccl = dist.get_backend(group) == "nccl"
        self.device = (
            torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        )

    def objects(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order: pickled and all-gathered as
        bytes by :meth:`gather` (not ``all_gather_object``, whose tensors this process does
        not hold, so cannot outlive the backend's references: see :meth:`collective`)."""
        payload = torch.frombuffer(bytearray(pickle.dumps(value)), dtype=torch.uint8)
        sizes = self.gather(torch.tensor([payload.numel()], dtype=torch.int64)).reshape(-1)
        padded = torch.zeros(int(sizes.max()), dtype=torch.uint8)
        padded[: payload.numel()] = payload
        table = self.gather(padded).cpu()
        return [
            pickle.loads(table[r, : int(sizes[r])].numpy().tobytes()) for r in range(self.world)
        ]

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """(world, *t.shape): every rank's ``t`` (the same shape on every rank), on the
        collective device."""
        t = t.to(self.device, copy=True).contiguous()
        out = torch.empty((self.world, *t.shape), dtype=t.dtype, device=self.device)
        self.collective(dist.all_gather, list(out.unbind(0)), t)
        return out

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of ``t``, on ``t``'s device (``t`` is left as it was)."""
        total = t.to(self.device, copy=True).contiguous()
        self.collective(dist.all_reduce, total)
        return total.to(t.device)

    def collective(self, op: Callable[..., object], *args: Any) -> None:
        """``op(*args, group=...)``, a blocking collective on the tensors among ``args`` (fresh
        ones this process holds, alone or in lists), and, on a CPU backend, a wait until the
        backend has dropped its references to them.

        gloo's worker thread drops a finished collective's tensors after the caller has moved
        on. Were the caller's references gone first, that thread would free the tensors'
        Python objects, which needs the interpreter: during Python's shutdown (an error raised
        right after the collective ends the script) that aborts the process, "terminate called
        without an active exception". Held until the thread lets go, they are freed by Python
        itself. The wait is bounded (:data:`_RELEASE_WAIT_S`); NCCL's work is left to run on
        the device."""
        tensors = [
            t
            for arg in args
            for t in (arg if isinstance(arg, list) else [arg])
            if isinstance(t, torch.Tensor)
        ]
        before = [_use_count(t) for t in tensors]
        op(*args, group=self.group)
        if self.device.type != "cpu":
            return
        deadline = time.monotonic() + _RELEASE_WAIT_S
        while any(_use_count(t) > held for t, held in zip(tensors, before, strict=True)):
            if time.monotonic() > deadline:
                return
            time.sleep(0)  # let the backend's thread run

    def maximum(self, value: float) -> float:
        values = self.gather(torch.tensor([value], dtype=torch.float64))
        return float(values.max())

    def agree(self, failure: _Failure | None, error: BaseException | None = None) -> None:
        """Raise, on every rank, the failure of the lowest rank that has one."""
        failures = self.objects(failure)
        for rank, found in enumerate(failures):
            if found is not None:
                raise _error(rank, found) from error

    def agreed(self, call: Callable[[], T]) -> T:
        """``call()`` on every rank, then agree: if it raised on any rank, every rank raises
        the error of the lowest such rank (``rank r: ...``); else this rank's result."""
        failure, error, result = None, None, None
        try:
            result = call()
        except Exception as err:
            failure, error = _failure(err), err
        self.agree(failure, error)
        return cast(T, result)  # set: call() returned

    def winner(self, record: torch.Tensor) -> torch.Tensor:
        """Every rank's choice record gathered; the one the single-process sweep would have
        found: the largest score, ties to the lowest global index, index -1 (no pair) never
        winning (all -1: a -1 record). Stays on the collective device: no wait for NCCL."""
        table = self.gather(record)
        index = table.view(torch.int64)[:, 1]
        valid = index >= 0
        score = torch.where(valid, table[:, 0], -torch.inf)
        tied = valid & (score == score.max())
        row = torch.where(tied, index, torch.iinfo(torch.int64).max).argmin()
        return table.index_select(0, row.reshape(1))[0].to(record.device)


def _use_count(t: torch.Tensor) -> int:
    """How many references hold ``t``'s tensor (0 where torch cannot say: no wait then)."""
    count = getattr(t, "_use_count", None)
    return 0 if count is None else int(count())


# The mark on an error every rank raises alike (an agreed one, naming the rank at fault, or a
# fault of the whole pool's): a launcher prints it from rank 0 alone. An attribute, not a note,
# so the error reads as it would from one process.
_EVERY_RANK = "_activerm_fast_raised_on_every_rank"


def _on_every_rank(err: E) -> E:
    """``err``, marked as raised alike on every rank."""
    setattr(err, _EVERY_RANK, True)
    return err


def raised_on_every_rank(err: BaseException) -> bool:
    """Whether every rank raised ``err`` alike, so one rank may report it for all."""
    return getattr(err, _EVERY_RANK, False) is True


def _failure(err: BaseException) -> _Failure:
    return _Failure(type(err), str(err))


def _error(rank: int, failure: _Failure) -> BaseException:
    message = f"rank {rank}: {failure.message}"
    try:
        return _on_every_rank(failure.kind(message))
    except Exception:  # an exception type that takes other arguments
        return _on_every_rank(RuntimeError(f"{failure.kind.__name__}: {message}"))


class _Sharded(Protocol):
    """What both entry points validate (SelectionInputs, GreedyProblem): this shard's pairs
    (stored or an implicit pool's) and exclusion mask (or excluded positions), and the
    features, whose n bounds a pair's responses."""

    @property
    def members(self) -> torch.Tensor: ...

    @property
    def candidates(self) -> _launch.Pairs: ...

    @property
    def excluded(self) -> torch.Tensor | None: ...


S = TypeVar("S", bound=_Sharded)


def _sharded(
    group: _Group, check: Callable[[], tuple[S, int, dict[str, Any]]]
) -> tuple[S, int, _Shard]:
    """Run this rank's argument checks, then agree: every rank raises the lowest failing rank's
    error, or the first rank whose replicated arguments differ from rank 0's, or names a pair
    that two shards hold. ``check`` returns what it validated, the budget k and the signature
    of the replicated arguments; the result is the validated state, k and this rank's shard."""
    state: S | None = None
    budget = 0
    report: tuple[_Failure | None, dict[str, Any], tuple[int, int]]
    error: BaseException | None = None
    try:
        state, budget, signature = check()
        unavailable = v.excluded_count(state.excluded)
        report = (None, signature, (int(state.candidates.shape[0]), unavailable))
    except Exception as err:
        error = err
        report = (_failure(err), {}, (0, 0))
    reports = group.objects(report)
    for rank, (found, _, _) in enumerate(reports):
        if found is not None:
            raise _error(rank, found) from error
    reference = reports[0][1]
    for rank, (_, signature, _) in enumerate(reports[1:], start=1):
        for name, (shown, exact) in reference.items():
            theirs, their_exact = signature[name]
            if their_exact != exact:
                seen = (
                    f"is {theirs} but rank 0's is {shown}"
                    if theirs != shown
                    else f"differs from rank 0's ({shown})"
                )
                raise _on_every_rank(
                    ValueError(
                        f"rank {rank}: {name} {seen}; every rank must pass the same {name} "
                        "(only the pairs and their weights and exclude mask are shards)"
                    )
                )
    assert state is not None
    shard = _Shard(group, [counts for _, _, counts in reports])
    implicit = reference.get("implicit pool", (None, None))[1]  # (kind, size, seed, n)
    size = None if implicit is None else implicit[1]
    shard.check_unique(state.candidates, state.members.shape[1], size)
    return state, budget, shard


def _scalar(value: Any) -> tuple[str, Any]:
    return repr(value), value


def _implicit_signature(pairs: Any) -> tuple[str, Any]:
    """How an implicit pool is shown and compared (the pool every shard is part of), or None."""
    if not isinstance(pairs, ImplicitPool):
        return _scalar(None)
    return _scalar((pairs.kind, pairs.size, pairs.seed, pairs.n))


def _tensor_signature(t: torch.Tensor | None) -> tuple[str, Any]:
    """How a replicated tensor is shown and compared: its shape and dtype, and a fingerprint of
    its bytes (an int64 sum of its 32-bit words times odd position weights: one word that
    differs always changes it; exact, so independent of the order it is summed in)."""
    if t is None:
        return "None", None
    shown = f"shape {tuple(t.shape)} {t.dtype}"
    flat = t.detach().contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    raw = flat.view(torch.uint8)
    words = raw.view(torch.int32) if raw.numel() % 4 == 0 else raw
    total = torch.zeros((), dtype=torch.int64, device=t.device)
    for start in range(0, words.numel(), _FINGERPRINT_CHUNK):
        chunk = words[start : start + _FINGERPRINT_CHUNK].to(torch.int64)
        weight = 2 * torch.arange(start, start + chunk.numel(), device=t.device) + 1
        total += (chunk * weight).sum()
    return shown, (tuple(t.shape), str(t.dtype), int(total))


# ---- the sharded pool -------------------------------------------------------------------------


class _Shard:
    """This rank's part of the pool: its pairs are global positions offset .. offset + count."""

    def __init__(self, group: _Group, counts: list[tuple[int, int]]) -> None:
        self.group = group
        self.sizes = [size for size, _ in counts]
        self.offset = sum(self.sizes[: group.rank])
        self.count = self.sizes[group.rank]
        self.total = sum(self.sizes)
        self.unavailable = sum(excluded for _, excluded in counts)

    def local(self, position: int) -> int | None:
        local = position - self.offset
        return local if 0 <= local < self.count else None

    def budget(self, k: int) -> int:
        """k, if no larger than the pool's available pairs (the same check on every rank)."""
        available = self.total - self.unavailable
        if k > available:
            raise _on_every_rank(
                ValueError(
                    f"k = {k} is larger than the {available} pairs available "
                    f"({self.total} candidates, {self.unavailable} excluded)"
                )
            )
        return k

    def check_unique(self, pairs: _launch.Pairs, n: int, size: int | None = None) -> None:
        """No pair may appear in two shards (each shard was checked alone); an implicit pool's
        shards (of a pool of ``size`` pairs) must hold the positions of their ranks, those
        ``pool.shard(rank, world)`` gives, and together all of them (its pairs may repeat: a
        selection never picks a pair twice). Every rank sends
        each pair's key to the rank the key maps to, which sorts what it receives and looks for
        a repeat: 8 bytes per pair moved and about 32 held, once per selection. A repeat found
        anywhere is located by every rank in its own shard, so every rank names the same two
        rows."""
        group = self.group
        if isinstance(pairs, _launch.GeneratedPairs):
            starts = group.objects(pairs.first)
            for rank, start in enumerate(starts):
                wanted = sum(self.sizes[:rank])
                if start != wanted:
                    raise _on_every_rank(
                        ValueError(
                            f"rank {rank}: its implicit pool starts at position {start}, not "
                            f"{wanted}; pass pool.shard(rank, world) on every rank"
                        )
                    )
            if size is not None and self.total != size:
                raise _on_every_rank(
                    ValueError(
                        f"rank {group.world - 1}: its implicit pool ends at position {self.total}, "
                        f"not at the pool's size {size}; pass pool.shard(rank, world) with world = "
                        f"{group.world} on every rank"
                    )
                )
            return
        if group.world == 1:
            return
        keys = v.pair_keys(pairs, n).to(group.device)
        destination = torch.remainder(keys, group.world)
        send = keys[torch.argsort(destination)]
        send_counts = torch.bincount(destination, minlength=group.world).to(torch.int64)
        del destination
        receive_counts = torch.empty_like(send_counts)
        group.collective(dist.all_to_all_single, receive_counts, send_counts)
        received = torch.empty(int(receive_counts.sum()), dtype=torch.int64, device=group.device)
        splits = (receive_counts.tolist(), send_counts.tolist())
        group.collective(dist.all_to_all_single, received, send, *splits)
        del send
        if received.device.type == "cpu":
            received.numpy().sort()  # in place
        else:
            received = torch.sort(received).values
        repeat = torch.nonzero(received[1:] == received[:-1])
        found = int(received[int(repeat[0, 0])]) if repeat.shape[0] else None
        del received
        repeated = [key for key in group.objects(found) if key is not None]
        if not repeated:
            return
        key = min(repeated)
        here = torch.nonzero(keys == key).reshape(-1) + self.offset
        places = sorted(p for found_here in group.objects(here.tolist()) for p in found_here)
        first, again = places[0], places[1]
        owner, row = self._owner(again)
        first_owner, first_row = self._owner(first)
        raise _on_every_rank(
            ValueError(
                f"rank {owner}: pairs[{row}] repeats the pair {{{key // n}, {key % n}}} of rank "
                f"{first_owner}'s pairs[{first_row}] (global positions {again} and {first}); a "
                "pool must not hold a pair twice"
            )
        )

    def _owner(self, position: int) -> tuple[int, int]:
        """The rank holding global ``position`` and its row there."""
        start = 0
        for rank, size in enumerate(self.sizes):
            if position < start + size:
                return rank, position - start
            start += size
        raise AssertionError(f"global position {position} is beyond the pool")


def _records(
    scores: torch.Tensor, positions: torch.Tensor, rows: torch.Tensor, length: int
) -> torch.Tensor:
    """(length, 4) float64 records [score, global position, first, second] (int64 slots 1 to
    3), padded with position -1."""
    out = torch.zeros((length, 4), dtype=torch.float64, device=scores.device)
    ints = out.view(torch.int64)
    ints[:, 1] = -1
    m = scores.shape[0]
    out[:m, 0] = scores
    ints[:m, 1] = positions
    ints[:m, 2:] = rows.to(torch.int64)
    return out


class _ShardedRanking(Ranking):
    """The whole pool's order from every rank's own: a leading part of length L is found from
    each rank's first L available pairs (its offer). The offers, concatenated in rank (so
    position) order and stably sorted, rank as the sort of the whole pool would; they are the
    pool's leading part up to the first place where a rank that holds more than L has its last
    offer, as nothing it did not offer comes before that."""

    def __init__(
        self,
        shard: _Shard,
        pairs: torch.Tensor,
        score: torch.Tensor,
        available: torch.Tensor | None,
    ) -> None:
        super().__init__(pairs, score, available)  # this shard's order
        self.shard = shard
        self.score = score
        held = torch.tensor([self.count], dtype=torch.int64)
        self.counts = shard.group.gather(held).reshape(-1).cpu()  # every rank's available pairs

    def leading(self, length: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        shard = self.shard
        length = min(length, int(self.counts.max()))  # past it, every rank offers all it has
        mine = torch.sort(self.head(length)).values  # the offer, in position order
        offers = _records(self.score[mine], mine + shard.offset, self.pairs[mine], length)
        table = shard.group.gather(offers).reshape(-1, 4)  # world x length records
        table = table[table.view(torch.int64)[:, 1] >= 0]
        order = torch.sort(-table[:, 0], stable=True).indices
        merged = table[order].contiguous()
        more = self.counts > length  # ranks holding pairs they did not offer
        end = merged.shape[0]
        if bool(more.any()):
            offered = torch.clamp(self.counts, max=length).to(table.device)
            rank_of = torch.arange(shard.group.world, device=table.device)
            rank_of = rank_of.repeat_interleave(offered)[order]
            last = torch.full_like(offered, -1)
            places = torch.arange(end, device=table.device)
            last.scatter_reduce_(0, rank_of, places, reduce="amax")
            end = int(last[more.to(table.device)].min()) + 1
        ints = merged[:end].view(torch.int64)
        device = self.pairs.device
        return ints[:, 1].to(device), ints[:, 2:].to(device), not bool(more.any())


class _ShardedAvailablePairs(AvailablePairs):
    """The available pairs of every rank, numbered in rank (so position) order: number m is
    found on the rank holding it, and one all-reduce gives every rank its position and row."""

    def __init__(self, shard: _Shard, pairs: torch.Tensor, available: torch.Tensor) -> None:
        super().__init__(pairs, available)  # this shard's
        self.shard = shard
        counts = shard.group.gather(torch.tensor([self.count], dtype=torch.int64)).reshape(-1)
        counts_list = [int(c) for c in counts.tolist()]
        self.here = self.count
        self.start = sum(counts_list[: shard.group.rank])
        self.count = sum(counts_list)

    def at(self, numbers: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.pairs.device
        index = torch.as_tensor(numbers, dtype=torch.int64, device=device) - self.start
        mine = (index >= 0) & (index < self.here)
        local = self.positions[index[mine]]
        found = torch.zeros((index.shape[0], 3), dtype=torch.int64, device=device)
        found[mine, 0] = local + self.shard.offset
        found[mine, 1:] = self.pairs[local].to(torch.int64)
        every = self.shard.group.sum(found)  # each number is found on one rank
        return every[:, 0], every[:, 1:]


class _ShardedPool(Pool):
    """The strategies' questions about the whole pool, answered by exchanging a few numbers
    per question between the ranks (see :class:`~activerm_fast.selection.pool.Pool`)."""

    def __init__(self, shard: _Shard) -> None:
        self.shard = shard

    def local(self, position: int) -> int | None:
        return self.shard.local(position)

    def total(self, part: torch.Tensor) -> torch.Tensor:
        return self.shard.group.sum(part)

    def ranking(
        self, pairs: torch.Tensor, score: torch.Tensor, available: torch.Tensor | None
    ) -> Ranking:
        return _ShardedRanking(self.shard, pairs, score, available)

    def available_pairs(self, pairs: torch.Tensor, available: torch.Tensor) -> AvailablePairs:
        return _ShardedAvailablePairs(self.shard, pairs, available)

    def generated_pool(self, pairs: _launch.GeneratedPairs) -> _launch.GeneratedPairs:
        """The ranks' shards concatenated (they start at 0 and follow each other: checked by
        :meth:`_Shard.check_unique`), any pair computed from the seed."""
        return replace(pairs, first=0, count=self.shard.total)

    def best(self, pairs: torch.Tensor, score: torch.Tensor) -> tuple[int, torch.Tensor]:
        if self.shard.count:
            at = torch.argmax(score).reshape(1)
            offer = _records(score[at], at + self.shard.offset, pairs[at], 1)
        else:
            offer = _records(score[:0], score[:0].long(), pairs[:0], 1)
        table = self.shard.group.gather(offer).reshape(-1, 4).cpu()
        ints = table.view(torch.int64)
        winner = None
        for rank in range(table.shape[0]):  # rank order is position order: the first of ties
            if int(ints[rank, 1]) < 0:
                continue
            value = float(table[rank, 0])
            if winner is None:
                winner = rank
                continue
            held = float(table[winner, 0])
            if not math.isnan(held) and (math.isnan(value) or value > held):
                winner = rank  # torch.argmax: NaN above every number
        assert winner is not None, "no rank offered a pair"
        return int(ints[winner, 1]), ints[winner, 2:].to(pairs.device)

    @property
    def offset(self) -> int:
        return self.shard.offset

    def everything(
        self, pairs: torch.Tensor, available: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every rank's available positions and rows, gathered in rank (so position) order."""
        positions = torch.nonzero(available).reshape(-1)
        mine = ((positions + self.shard.offset).cpu(), pairs[positions].long().cpu())
        parts = self.shard.group.objects(mine)
        every = torch.cat([part[0] for part in parts]).to(pairs.device)
        rows = torch.cat([part[1] for part in parts]).to(pairs.device)
        return every, rows

    def greedy(
        self, problem: _design.GreedyProblem, k: int
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The single-process engine's greedy over this rank's shard, each step's choice record
        exchanged between the ranks (:meth:`_Group.winner`)."""
        return _design.greedy(problem, k, exchange=self.shard.group)


# ---- public entry points ----------------------------------------------------------------------


def select(
    strategy: str, *, group: Any | None = None, **options: Unpack[SelectOptions]
) -> Selection:
    """:func:`activerm_fast.select` over a pool sharded across the ranks of ``group``.

    Every rank calls it, with the options of :func:`activerm_fast.select`. ``pairs`` is this
    rank's shard of the candidates; ``features``, ``rewards``, ``labelled``, ``strategy``,
    ``k``, ``ridge``, ``ridge_mode``, ``seed`` and ``prompt_features`` are the same on every
    rank. Returns, on every rank, the selection of the concatenated pool, indices
    being global positions: the same indices, gains and log det as
    :func:`activerm_fast.select` on that pool, bit for bit, for every strategy but
    ``dopt-topk`` and ``past-dopt-topk``: their pool Fisher matrix is a sum of one part per
    rank, all-reduced, so it is rounded differently from the single sum of one process (the
    picks agree unless two scores are within that rounding, the gains to ~1e-12). So is
    ``ridge_mode="relative"`` while no labelled pair carries information: lambda then comes
    from the pool's average candidate, a sum over the ranks.

    Parameters
    ----------
    strategy : str
        A name in :data:`~activerm_fast.STRATEGIES`, the same on every rank.
    group : ProcessGroup, optional
        The ranks; the default process group when None.
    **options
        :func:`activerm_fast.select`'s keyword arguments (``features``, ``pairs``, ``k``,
        ``rewards``, ``labelled``, ``ridge``, ``ridge_mode``, ``seed``,
        ``prompt_features``, ``lazy``), ``pairs`` this rank's shard.

    Returns
    -------
    Selection
        The same on every rank; indices are global positions in the concatenated pool.

    Raises
    ------
    TypeError, ValueError
        On every rank, prefixed ``rank r:``, the error of the lowest rank whose arguments
        :func:`activerm_fast.select` refuses, whose replicated arguments differ from rank
        0's, or whose shard repeats a pair of another; also a budget beyond the whole pool.

    Examples
    --------
    Under ``torchrun`` every rank runs the same lines after ``dist.init_process_group()``;
    here a group of one process stands in for it:

    >>> import os, tempfile
    >>> import numpy as np
    >>> import torch.distributed as dist
    >>> import activerm_fast as arm
    >>> from activerm_fast import distributed
    >>> store = os.path.join(tempfile.mkdtemp(), "store")
    >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    >>> rank, world = dist.get_rank(), dist.get_world_size()
    >>> features = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    >>> prompt_ids = np.array([0, 0, 1, 1, 2, 2])
    >>> mine = arm.pairs.cross_prompt(prompt_ids, 10, seed=0, shard=(rank, world))  # my shard
    >>> pool = arm.pairs.cross_prompt(prompt_ids, 10, seed=0)  # the whole pool, for checking
    >>> rewards = features[:, 0]
    >>> batch = distributed.select(
    ...     "dopt-greedy", features=features, pairs=mine, k=3, rewards=rewards
    ... )
    >>> alone = arm.select("dopt-greedy", features=features, pairs=pool, k=3, rewards=rewards)
    >>> batch.indices.tolist() == alone.indices.tolist(), batch.logdet == alone.logdet
    (True, True)
    >>> distributed.select("dopt-greedy", features=features, pairs=mine, k=3)
    Traceback (most recent call last):
    ...
    ValueError: rank 0: strategy 'dopt-greedy' needs rewards, got rewards=None
    >>> dist.destroy_process_group()
    """
    group_ = _Group(group)
    k = options["k"]

    def check() -> tuple[SelectionInputs, int, dict[str, Any]]:
        inputs = validated(strategy, **options)
        budget = v.count_argument(k)
        signature = {
            "strategy": _scalar(strategy),
            "k": _scalar(budget),
            "ridge": _scalar(inputs.ridge),
            "ridge_mode": _scalar(inputs.ridge_mode),
            "seed": _scalar(inputs.seed),
            "features": _tensor_signature(inputs.members),
            "rewards": _tensor_signature(inputs.rewards),
            "labelled": _tensor_signature(inputs.labelled),
            "prompt_features": _tensor_signature(inputs.prompt_features),
            "per_prompt": _scalar(None if inputs.quota is None else inputs.quota.limit),
            "prompt_ids": _tensor_signature(inputs.prompt_of),
            "uncertainty": _scalar(inputs.uncertainty),
            "implicit pool": _implicit_signature(options["pairs"]),
        }
        return inputs, budget, signature

    inputs, budget, shard = _sharded(group_, check)
    # resolved on the whole pool: the same totals, so the same lambda or error, on every rank
    inputs = replace(inputs, pool=_ShardedPool(shard)).resolved()
    result = STRATEGIES[strategy].choose(inputs, shard.budget(budget))
    as_numpy = v.is_numpy_like(options["features"])
    device = inputs.pairs.device
    return Selection(
        export(result.indices.to(device), as_numpy),
        export(result.gains.to(device), as_numpy),
        result.logdet,
    )


def greedy_logdet(
    features: Any,
    pairs: Any,
    k: int,
    *,
    group: Any | None = None,
    **options: Unpack[GreedyOptions],
) -> Selection:
    """:func:`activerm_fast.greedy_logdet` over a pool sharded across the ranks of ``group``.

    Every rank calls it. ``pairs``, ``weights`` and ``exclude`` are this rank's shard;
    ``features``, ``k`` and ``prior`` are the same on every rank. Every rank returns the
    selection of the concatenated pool (indices are global positions), bit for bit that of one
    process. A step exchanges one 40-byte choice record per rank, whatever the pool's size
    and d.

    Parameters
    ----------
    features : np.ndarray or torch.Tensor
        (n, d) features, the same on every rank.
    pairs : np.ndarray or torch.Tensor
        (P_rank, 2) this rank's shard of the candidates.
    k : int
        Pairs to choose from the whole pool, the same on every rank.
    group : ProcessGroup, optional
        The ranks; the default process group when None.
    **options
        :func:`activerm_fast.greedy_logdet`'s keyword arguments
        (:class:`~activerm_fast.kernels.GreedyOptions`), for this rank's shard:
    weights : np.ndarray or torch.Tensor, optional
        (P_rank,) this shard's weights; ones when None.
    prior : float or np.ndarray or torch.Tensor, default 1e-3
        lambda or a symmetric (d, d) F0, the same on every rank.
    exclude : np.ndarray or torch.Tensor, optional
        (P_rank,) this shard's mask of pairs not to choose.
    lazy : bool or "auto", default "auto"
        The sweep, as in :func:`activerm_fast.greedy_logdet`.

    Returns
    -------
    Selection
        As :func:`select`'s: one selection of the whole pool, returned on every rank.

    Raises
    ------
    TypeError, ValueError
        As :func:`select` raises them (the lowest failing rank's error, on every rank), for
        arguments :func:`activerm_fast.greedy_logdet` refuses, replicated ones that differ
        from rank 0's, a pair in two shards, or ``k`` beyond the whole pool.

    Examples
    --------
    A one-process group (an in-memory store) stands in for ``torchrun``'s ranks; each rank
    builds its shard of the within-prompt pairs:

    >>> import numpy as np
    >>> import torch.distributed as dist
    >>> import activerm_fast as arm
    >>> from activerm_fast import distributed
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> data = arm.synthetic(4, 3, 1, 2, dim=6)
    >>> shard = (dist.get_rank(), dist.get_world_size())
    >>> mine = arm.pairs.within_prompt(data.prompt_ids, shard=shard)
    >>> batch = distributed.greedy_logdet(data.embeddings, mine, 3, prior=1.0)
    >>> whole = arm.pairs.within_prompt(data.prompt_ids)
    >>> alone = arm.greedy_logdet(data.embeddings, whole, 3, prior=1.0)
    >>> batch.indices.tolist() == alone.indices.tolist()
    True
    >>> bool(np.array_equal(batch.gains, alone.gains))  # bit for bit
    True
    >>> dist.destroy_process_group()
    """
    group_ = _Group(group)

    def check() -> tuple[_design.GreedyProblem, int, dict[str, Any]]:
        problem = greedy_problem(features, pairs, **options)
        budget = v.count_argument(k)
        start = problem.priors[0]
        signature = {
            "k": _scalar(budget),
            "features": _tensor_signature(problem.members[0]),
            "prior": (
                _scalar(start.ridge) if start.matrix is None else _tensor_signature(start.matrix)
            ),
            "implicit pool": _implicit_signature(pairs),
        }
        return problem, budget, signature

    problem, budget, shard = _sharded(group_, check)
    problem = replace(problem, first_index=shard.offset)
    if isinstance(pairs, ImplicitPool):  # every rank's, as the signature checked
        # a pair excluded on one rank is excluded at its repeats on the others too
        every = np.concatenate(group_.objects(excluded_pairs(pairs, problem.excluded)))
        problem = excluding_every_occurrence(problem, pairs, every)
    chosen, gains, logdet = _ShardedPool(shard).greedy(problem, shard.budget(budget))
    as_numpy = v.is_numpy_like(features)
    return Selection(export(chosen, as_numpy), export(gains, as_numpy), logdet)


def pairs_at(pairs: Any, indices: Any, group: Any | None = None) -> torch.Tensor:
    """The (k, 2) int64 rows at global positions ``indices`` of a sharded pool, on every rank.

    ``indices`` are the same on every rank (e.g. a :class:`~activerm_fast.kernels.Selection`'s)
    and ``pairs`` is this rank's shard: each rank fills the rows it holds and one all-reduce of
    k x 16 bytes adds them up.

    Parameters
    ----------
    pairs : np.ndarray or torch.Tensor
        (P_rank, 2) this rank's shard.
    indices : np.ndarray or torch.Tensor
        (k,) global positions in the concatenated pool.
    group : ProcessGroup, optional
        The ranks; the default process group when None.

    Returns
    -------
    torch.Tensor
        (k, 2) int64 rows, on ``pairs``' device.

    Raises
    ------
    TypeError
        If ``pairs`` or ``indices`` is not an array or tensor.

    Examples
    --------
    On a one-process group (a file store here; ``torchrun`` sets up the real one) the only
    rank holds the whole pool, so the rows are those at the positions:

    >>> import os, tempfile
    >>> import torch
    >>> import torch.distributed as dist
    >>> from activerm_fast import distributed, pairs
    >>> store = dist.FileStore(os.path.join(tempfile.mkdtemp(), "store"), 1)
    >>> dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    >>> mine = pairs.all_pairs(5)  # [[0, 1], [0, 2], ..., [3, 4]]
    >>> distributed.pairs_at(mine, torch.tensor([9, 0, 4]))
    tensor([[3, 4],
            [0, 1],
            [1, 2]])
    >>> dist.destroy_process_group()
    """
    group_ = _Group(group)
    p = v.as_tensor(pairs, "pairs")
    wanted = v.as_tensor(indices, "indices").to(device=p.device, dtype=torch.int64)
    counts = group_.gather(torch.tensor([p.shape[0]], dtype=torch.int64)).reshape(-1)
    offset = int(counts[: group_.rank].sum())
    local = wanted - offset
    mine = (local >= 0) & (local < p.shape[0])
    rows = torch.zeros((wanted.shape[0], 2), dtype=torch.int64, device=p.device)
    rows[mine] = p[local[mine]].to(torch.int64)
    return group_.sum(rows)


def agreed(call: Callable[[], T], group: Any | None = None) -> T:
    """``call()`` on every rank, then agree on whether it raised anywhere.

    If it raised on any rank, every rank raises the error of the lowest such rank
    (``rank r: ...``); else each rank gets its own result. For the work each rank does alone
    before a collective (reading its files, building its shard), so that a failure on one rank
    does not leave the others waiting.

    Parameters
    ----------
    call : callable
        Takes no argument.
    group : ProcessGroup, optional
        The ranks; the default process group when None.

    Returns
    -------
    object
        This rank's ``call()``.

    Raises
    ------
    Exception
        On every rank, the error of the lowest rank whose ``call()`` raised, prefixed
        ``rank r:``: of its type where it can be rebuilt from a message, else a RuntimeError
        naming the type.

    Examples
    --------
    >>> import os, tempfile
    >>> import torch.distributed as dist
    >>> from activerm_fast import distributed
    >>> store = os.path.join(tempfile.mkdtemp(), "store")
    >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    >>> distributed.agreed(lambda: 6 * 7)
    42
    >>> distributed.agreed(lambda: int("not a number"))
    Traceback (most recent call last):
    ...
    ValueError: rank 0: invalid literal for int() with base 10: 'not a number'
    >>> dist.destroy_process_group()
    """
    return _Group(group).agreed(call)
