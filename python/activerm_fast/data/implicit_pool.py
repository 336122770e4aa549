"""Implicit candidate pools: pairs computed from (seed, k) where a kernel needs them, never stored.

Pair k of an implicit pool is a function of the pool's key (its seed, mixed) and k alone, a
counter-based draw (SplitMix64), computed the same way by the C++ and CUDA kernels
(``csrc/include/activerm/pair_source.h``) and by the NumPy twin here (:meth:`ImplicitPool.rows`).
A pool of 10^9 pairs costs O(n) memory; a shard is a range of k and needs only the seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .. import _launch
from .._validation import labelled_mask, positive_integer, seed_argument
from .pairs import Shard, prompt_codes, shard_argument, shard_bounds

__all__ = ["ImplicitPool"]

KINDS = {"cross": 1, "within": 2}  # views.h: kCrossPromptPairs, kWithinPromptPairs
_MASK = (1 << 64) - 1
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_MIX = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
# pairs an index can address: draws and positions stay within int64
_MAX_SIZE = 1 << 62
# rows decoded at a time by materialize and positions_of
_CHUNK = 1 << 22
# positions_of generates two runs of positions less than this apart as one
_MERGE_GAP = 1 << 12


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 words (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX[0])
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX[1])
    mixed: np.ndarray = z ^ (z >> np.uint64(31))
    return mixed


def _draw_below(h: np.ndarray, m: np.ndarray) -> np.ndarray:
    """floor(h m / 2^64) for uint64 h and 0 <= m < 2^63, from 32-bit halves."""
    low = np.uint64(0xFFFFFFFF)
    m = m.astype(np.uint64)
    h_hi, h_lo = h >> np.uint64(32), h & low
    m_hi, m_lo = m >> np.uint64(32), m & low
    cross_a, cross_b = h_hi * m_lo, h_lo * m_hi
    carry = ((cross_a & low) + (cross_b & low) + ((h_lo * m_lo) >> np.uint64(32))) >> np.uint64(32)
    top: np.ndarray = h_hi * m_hi + (cross_a >> np.uint64(32)) + (cross_b >> np.uint64(32)) + carry
    return top.astype(np.int64)


@dataclass(frozen=True, eq=False)
class ImplicitPool:
    """A candidate pool of ``size`` pairs generated from ``seed``, never stored.

    Build one with :meth:`cross_prompt` (every response first in an equal share of the pairs,
    its partner uniform over the responses to other prompts) or :meth:`within_prompt` (every
    response whose prompt has another first equally often, its partner uniform over the others
    of its prompt). Pair k depends on (seed, k) only; consecutive pairs share their first
    response, in the order of the responses grouped by prompt; pairs are (i, j) with i < j,
    and a pair may occur more than once (a selection never picks it twice). Pass it as
    ``pairs`` to :func:`~activerm_fast.select` (the greedy D-optimal strategies and
    ``random``), :func:`~activerm_fast.greedy_logdet` or
    :func:`activerm_fast.distributed.select` with ``pool.shard(rank, world)``: the picks,
    gains and log det are those of the same selection on :meth:`materialize`'s array with every
    repeat of a pair after its first occurrence left out (the first position is the one picked).

    Attributes
    ----------
    kind : {"cross", "within"}
        How pairs are drawn.
    size : int
        Pairs in the whole pool.
    seed : int
        Seeds every pair.
    start, stop : int
        The positions [start, stop) held here: the whole pool, or one shard.

    Examples
    --------
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> prompt_ids = np.array([0, 0, 1, 1, 1, 2])
    >>> pool = arm.ImplicitPool.cross_prompt(prompt_ids, 6, seed=3)
    >>> len(pool), pool.n
    (6, 6)
    >>> rows = pool.materialize()
    >>> bool((prompt_ids[rows[:, 0]] != prompt_ids[rows[:, 1]]).all())
    True
    >>> bool(np.array_equal(pool.rows(np.array([4, 1])), rows[[4, 1]]))  # pair k from (seed, k)
    True
    >>> shards = [pool.shard(rank, 2).materialize() for rank in range(2)]
    >>> bool(np.array_equal(np.concatenate(shards), rows))  # shards are ranges of k
    True
    >>> features = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    >>> arm.select("xtx", features=features, pairs=pool, k=2).indices.shape
    (2,)
    """

    kind: str
    size: int
    seed: int
    start: int
    stop: int
    order: np.ndarray  # (n,) responses grouped by prompt
    runs: np.ndarray  # (n, 2) [start, stop) of the prompt run of each grouped position
    draw_from: np.ndarray | None  # grouped positions the first response is drawn from

    @classmethod
    def cross_prompt(cls, prompt_ids: Any, size: int, seed: int = 0) -> ImplicitPool:
        """``size`` pairs of responses to different prompts: every response is the first of
        an equal share of them, its partner drawn uniformly from the responses to the other
        prompts.

        Parameters
        ----------
        prompt_ids : array_like
            (n,) prompt label of each response (see :func:`~activerm_fast.pairs.prompt_codes`),
            at least two distinct labels.
        size : int
            Pairs in the pool, 1 to 2^62 (more than the cross-prompt pairs that exist is
            allowed: they then repeat).
        seed : int, default 0
            Keys the partners' draws, 0 to 2^64 - 1.

        Returns
        -------
        ImplicitPool
            Its ``kind`` is ``"cross"``.

        Raises
        ------
        TypeError
            If the labels have an unsupported dtype or ``size`` or ``seed`` is not an integer.
        ValueError
            If the responses answer fewer than two prompts, or ``size`` or ``seed`` is out of
            range.

        Examples
        --------
        >>> import activerm_fast as arm
        >>> arm.ImplicitPool.cross_prompt([0, 0, 0], 4)
        Traceback (most recent call last):
        ...
        ValueError: a cross-prompt pool needs responses to at least two prompts, got 1 prompt
        """
        codes, order, runs = _grouped(prompt_ids)
        prompts = len(np.unique(codes))
        if prompts < 2:
            raise ValueError(
                "a cross-prompt pool needs responses to at least two prompts, got "
                f"{prompts} prompt{'' if prompts == 1 else 's'}"
            )
        return cls._of("cross", _size(size), seed, order, runs, None)

    @classmethod
    def within_prompt(cls, prompt_ids: Any, size: int, seed: int = 0) -> ImplicitPool:
        """``size`` pairs of responses to the same prompt: every response whose prompt has
        another is the first of an equal share of them, its partner drawn uniformly from the
        other responses to its prompt.

        Parameters
        ----------
        prompt_ids : array_like
            (n,) prompt label of each response; a response alone with its prompt is in no pair.
        size : int
            Pairs in the pool, 1 to 2^62 (a prompt of m responses has m(m - 1)/2 distinct
            pairs, so a small prompt's pairs repeat).
        seed : int, default 0
            Keys the draws within each prompt, 0 to 2^64 - 1.

        Returns
        -------
        ImplicitPool
            Its ``kind`` is ``"within"``.

        Raises
        ------
        TypeError
            If the labels have an unsupported dtype or ``size`` or ``seed`` is not an integer.
        ValueError
            If no prompt has two responses, or ``size`` or ``seed`` is out of range.

        Examples
        --------
        >>> import activerm_fast as arm
        >>> pool = arm.ImplicitPool.within_prompt([0, 1, 1, 2], 3, seed=1)
        >>> pool.materialize().tolist()  # the one within-prompt pair, three times
        [[1, 2], [1, 2], [1, 2]]
        """
        _, order, runs = _grouped(prompt_ids)
        eligible = np.flatnonzero(runs[:, 1] - runs[:, 0] > 1).astype(np.int64)
        if len(eligible) == 0:
            raise ValueError("a within-prompt pool needs a prompt with two responses, got none")
        return cls._of("within", _size(size), seed, order, runs, eligible)

    @classmethod
    def _of(
        cls,
        kind: str,
        size: int,
        seed: Any,
        order: np.ndarray,
        runs: np.ndarray,
        draw_from: np.ndarray | None,
    ) -> ImplicitPool:
        seed = seed_argument(seed)
        if seed > _MASK:
            raise ValueError(f"seed must be below 2**64, got {seed}")
        return cls(kind, size, seed, 0, size, order, runs, draw_from)

    @property
    def n(self) -> int:
        """Responses the pairs index."""
        return len(self.order)

    @property
    def _eligible(self) -> int:
        """Responses a pair's first one is one of."""
        return self.n if self.draw_from is None else len(self.draw_from)

    @property
    def _spread(self) -> float:
        """Eligible responses per position: pair k's first is eligible one floor(k spread)."""
        return self._eligible / self.size

    @property
    def key(self) -> int:
        """The mixed seed the pairs are drawn from."""
        mixed = _mix64(np.array([(self.seed + _GOLDEN_GAMMA) & _MASK], dtype=np.uint64))
        return int(mixed[0])

    def __len__(self) -> int:
        return self.stop - self.start

    def shard(self, rank: int, world: int) -> ImplicitPool:
        """The positions rank ``rank`` of ``world`` holds (as
        :func:`~activerm_fast.pairs.shard_bounds` splits them).

        Examples
        --------
        >>> import activerm_fast as arm
        >>> pool = arm.ImplicitPool.cross_prompt([0, 1, 2], 10)
        >>> [(part.start, part.stop) for part in (pool.shard(r, 3) for r in range(3))]
        [(0, 3), (3, 6), (6, 10)]
        """
        shard: Shard = shard_argument((rank, world))
        start, stop = shard_bounds(self.size, shard)
        return replace(self, start=start, stop=stop)

    def rows(self, positions: Any) -> np.ndarray:
        """(m, 2) int64 pairs at global ``positions``: the NumPy twin of the kernels' draw."""
        given = positions.cpu().numpy() if hasattr(positions, "cpu") else np.asarray(positions)
        if given.size and given.dtype.kind not in "iu":  # a float or bool would be cast
            raise TypeError(f"positions must hold integers, got dtype {given.dtype}")
        k = given.astype(np.int64).reshape(-1)
        if k.size and (k.min() < 0 or k.max() >= self.size):
            raise ValueError(f"positions must lie in [0, {self.size}), got {k.min()}..{k.max()}")
        eligible = self._eligible
        with np.errstate(over="ignore"):
            key = np.uint64(self.key)
            gamma = np.uint64(_GOLDEN_GAMMA)
            second = _mix64(key + (k.astype(np.uint64) + np.uint64(1)) * gamma)
            a = _first_of(k, self._spread, eligible)
            if self.draw_from is not None:
                a = self.draw_from[a]
            start, length = self.runs[a, 0], self.runs[a, 1] - self.runs[a, 0]
            if self.kind == "cross":
                b = _draw_below(second, self.n - length)
                b = b + np.where(b >= start, length, 0)
            else:
                b = start + _draw_below(second, length - 1)
                b = b + (b >= a)
        x, y = self.order[a], self.order[b]
        return np.stack([np.minimum(x, y), np.maximum(x, y)], axis=1)

    def materialize(self) -> np.ndarray:
        """The (len(self), 2) int64 pairs held here, as an array (16 bytes per pair).

        Raises
        ------
        ValueError
            If the array would not fit in the memory available.
        """
        from .pairs import check_pool_memory

        check_pool_memory(len(self), 16, f"materialize() of {len(self)} pairs", "keep it implicit")
        out = np.empty((len(self), 2), dtype=np.int64)
        for begin, part in self.chunks(torch.device("cpu"), _CHUNK):
            out[begin : begin + len(part)] = part.numpy()
        return out

    def chunks(self, device: torch.device, size: int) -> Iterator[tuple[int, torch.Tensor]]:
        """(offset, (m, 2) int64 pairs) of the positions held here, ``size`` at a time, made
        by the kernels on ``device``."""
        return _launch.generated_chunks(self.generated(device), size)

    def generated(self, device: torch.device) -> _launch.GeneratedPairs:
        """The kernels' view of the positions held here, its tables on ``device``."""
        # responses already grouped by prompt (sorted prompt ids) need no order lookups
        identity = bool(np.array_equal(self.order, np.arange(self.n)))
        tables = [
            None if t is None else torch.as_tensor(t).to(device)
            for t in (None if identity else self.order, self.runs, self.draw_from)
        ]
        order, runs, draw_from = tables
        assert runs is not None
        return _launch.GeneratedPairs(
            KINDS[self.kind],
            self.key,
            self.start,
            len(self),
            self.n,
            self._eligible,
            self._spread,
            order,
            runs.contiguous(),
            draw_from,
        )


def generated_pairs(pairs: Any, n: int, device: torch.device) -> _launch.GeneratedPairs | None:
    """The kernels' view of ``pairs`` on ``device`` when it is an :class:`ImplicitPool` of
    ``n`` responses (None for any other ``pairs``)."""
    if not isinstance(pairs, ImplicitPool):
        return None
    if pairs.n != n:
        raise ValueError(f"pairs is an implicit pool of {pairs.n} responses, the features have {n}")
    return pairs.generated(device)


def positions_of(generated: _launch.GeneratedPairs, wanted: torch.Tensor, n: int) -> torch.Tensor:
    """The positions (ascending, int64, local) of the generated pairs equal to a ``wanted``
    (m, 2) pair in either orientation.

    Consecutive positions share their first response, so only the runs of positions whose
    first response is one of the wanted pairs' are generated and compared (chunk by chunk):
    the cost follows those responses' share of the pool, not its size.
    """
    found = []
    for start, stop in _runs_starting_with(generated, wanted.reshape(-1)):
        for offset, rows in _launch.generated_chunks(generated.part(start, stop), _CHUNK):
            hit = torch.nonzero(labelled_mask(rows, wanted, n)).reshape(-1)
            found.append(hit + (start + offset))
    return torch.cat(found) if found else torch.empty(0, dtype=torch.int64, device=wanted.device)


def _runs_starting_with(
    generated: _launch.GeneratedPairs, responses: torch.Tensor
) -> list[tuple[int, int]]:
    """Ascending [start, stop) local position ranges that hold every position of ``generated``
    whose first response is one of ``responses`` (and few others: ranges less than
    :data:`_MERGE_GAP` apart are joined, so that a small pool is not generated a few pairs
    per call)."""
    wanted = np.unique(responses.cpu().numpy())
    grouped = wanted
    if generated.order is not None:  # response -> its grouped position
        place = np.empty(generated.n, dtype=np.int64)
        place[generated.order.cpu().numpy()] = np.arange(generated.n)
        grouped = place[wanted]
    first = grouped  # the eligible first responses, by number
    if generated.draw_from is not None:
        draw_from = generated.draw_from.cpu().numpy()
        at = np.minimum(np.searchsorted(draw_from, grouped), len(draw_from) - 1)
        first = at[draw_from[at] == grouped]  # a response alone with its prompt is never first
    first = np.unique(first)
    starts = _first_position(generated, first)
    stops = _first_position(generated, first + 1)
    ranges: list[tuple[int, int]] = []
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        if start == stop:
            continue
        if ranges and start - ranges[-1][1] < _MERGE_GAP:
            ranges[-1] = (ranges[-1][0], stop)
        else:
            ranges.append((start, stop))
    return ranges


def _first_position(generated: _launch.GeneratedPairs, first: np.ndarray) -> np.ndarray:
    """For each eligible number ``first``, the local position of the first pair of
    ``generated`` whose first response is that one or a later one (``generated.count`` if
    none): a bisection on the monotone rule of :func:`_first_of`."""
    low = np.full(len(first), generated.first, dtype=np.int64)
    high = np.full(len(first), generated.first + generated.count, dtype=np.int64)
    while True:
        open_ = low < high
        if not open_.any():
            return low - generated.first
        middle = low + (high - low) // 2
        reached = _first_of(middle, generated.spread, generated.eligible) >= first
        high = np.where(open_ & reached, middle, high)
        low = np.where(open_ & ~reached, middle + 1, low)


def _first_of(k: np.ndarray, spread: float, eligible: int) -> np.ndarray:
    """The number, among the eligible responses, of the first response of global pairs ``k``:
    floor(k spread), one IEEE multiply as in C++ (pair_source.h), at most ``eligible - 1``."""
    first: np.ndarray = np.minimum((k.astype(np.float64) * spread).astype(np.int64), eligible - 1)
    return first


def _size(size: Any) -> int:
    count = positive_integer(size, "size")
    if count > _MAX_SIZE:
        raise ValueError(f"size must be at most 2**62, got {count}")
    return count


def _grouped(prompt_ids: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prompt codes, the responses grouped by prompt (stable) and each grouped position's run."""
    codes = prompt_codes(prompt_ids)
    order = np.argsort(codes, kind="stable").astype(np.int64)
    sizes = np.bincount(codes).astype(np.int64)
    ends = np.cumsum(sizes)
    grouped = codes[order]
    runs = np.stack([ends[grouped] - sizes[grouped], ends[grouped]], axis=1).astype(np.int64)
    return codes, order, np.ascontiguousarray(runs)
