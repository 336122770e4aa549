"""Candidate pools: (P, 2) int64 arrays of response indices with i < j, sorted by (i, j).

Every pool can be built in shards, ``shard=(rank, world)``: each process builds only its part,
the parts are disjoint and concatenate in rank order to the whole pool (the input of
:mod:`activerm_fast.distributed`); :func:`load_shard` reads a rank's rows of a saved pool.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
from typing import Any

import numpy as np

from .._launch import available_memory
from .._validation import count_argument, positive_integer
from .npz_files import check_declared_size, npy_header, npz_member

__all__ = [
    "POOLS",
    "all_pairs",
    "candidate_pool",
    "cross_pair_count",
    "cross_prompt",
    "load_shard",
    "prompt_codes",
    "shard_bounds",
    "within_prompt",
]

POOLS = ("cross", "within")


def prompt_codes(prompt_ids: Any, name: str = "prompt_ids") -> np.ndarray:
    """Dense int64 prompt codes 0..m-1 for any 1-D array of prompt labels.

    Codes follow the sorted order of the labels (``np.unique``).

    Parameters
    ----------
    prompt_ids : array_like
        (n,) integer, string or finite float labels (a torch tensor is moved to the CPU).
    name : str, default "prompt_ids"
        The argument's name in error messages.

    Returns
    -------
    np.ndarray
        (n,) int64 codes.

    Raises
    ------
    TypeError
        If the labels are neither integers, strings nor floats, or mix kinds that do not sort
        together.
    ValueError
        If the array is not 1-D or a float label is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast import pairs
    >>> prompt_ids = np.array(["a", "a", "b", "b", "b", "c"])
    >>> pairs.prompt_codes(prompt_ids).tolist()
    [0, 0, 1, 1, 1, 2]
    >>> pairs.prompt_codes(np.array([7, 3, 7])).tolist()
    [1, 0, 1]
    """
    ids = np.asarray(prompt_ids.cpu() if hasattr(prompt_ids, "cpu") else prompt_ids)
    if ids.ndim != 1:
        raise ValueError(f"{name} must have shape (n,), got {ids.shape}")
    if ids.dtype.kind == "f":
        if not np.isfinite(ids).all():
            raise ValueError(f"{name} must be finite, got {ids[~np.isfinite(ids)][0]}")
    elif ids.dtype.kind not in "biuUSO":
        raise TypeError(f"{name} must hold integers or strings, got dtype {ids.dtype}")
    try:
        codes = np.unique(ids, return_inverse=True)[1]
    except TypeError as err:  # labels of an object array that do not sort together
        kinds = sorted({type(label).__name__ for label in ids.tolist()})
        raise TypeError(
            f"{name} must hold labels of one kind, integers or strings, got {', '.join(kinds)}"
        ) from err
    return codes.astype(np.int64).reshape(-1)


def all_pairs(n: int) -> np.ndarray:
    """Every pair (i, j), i < j, of n responses: n(n-1)/2 rows.

    Parameters
    ----------
    n : int
        Number of responses, >= 0.

    Returns
    -------
    np.ndarray
        (n(n-1)/2, 2) int64 rows sorted by (i, j).

    Raises
    ------
    TypeError
        If ``n`` is not an integer.
    ValueError
        If ``n`` is negative, or the pairs would not fit in the memory available.

    Examples
    --------
    >>> from activerm_fast import pairs
    >>> pairs.all_pairs(4).tolist()
    [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    """
    n = count_argument(n, "n")
    count = n * (n - 1) // 2
    check_pool_memory(count, _ALL_PAIRS_BYTES, f"n = {n}", "lower n")
    i, j = np.triu_indices(n, k=1)
    return np.stack([i, j], axis=1)


# Peak bytes per pair of building each kind of pool, the (P, 2) int64 result included: all_pairs
# holds triu_indices' two index arrays beside the result; within_prompt its blocks, their
# concatenation and _canonical's sorted copy; cross_prompt the sorted pair numbers and the
# result (pairs are decoded in chunks of _DECODE_CHUNK).
_ALL_PAIRS_BYTES = 32
_WITHIN_BYTES = 72
_CROSS_BYTES = 24
_DECODE_CHUNK = 1 << 20
_WITHIN_REMEDY = (
    "build the pool in more shards (shard=(rank, world)) or use an implicit pool "
    "(activerm_fast.ImplicitPool.within_prompt)"
)


def check_pool_memory(count: int, bytes_per_pair: int, what: str, remedy: str) -> None:
    """A ValueError saying ``what`` asked for and ``remedy`` before a pool of ``count`` pairs is
    built, when building it needs more than the memory available
    (:func:`~activerm_fast._launch.available_memory`)."""
    needed = count * bytes_per_pair
    available = available_memory()
    if needed > available:
        raise ValueError(
            f"{what} gives {count} pairs, which need {needed} bytes ({needed / 2**30:.1f} GiB) "
            f"to build, more than the {available / 2**30:.1f} GiB of memory available; {remedy}"
        )


def within_prompt(
    prompt_ids: Any, shard: Shard | None = None, *, remedy: str | None = None
) -> np.ndarray:
    """Every pair of responses to the same prompt.

    Parameters
    ----------
    prompt_ids : array_like
        (n,) prompt label of each response (see :func:`prompt_codes`).
    shard : tuple of (int, int), optional
        ``(rank, world)``: only this rank's rows (runs of whole rows i of about equal pair
        counts; the ranks' parts concatenate to the pool).
    remedy : str, optional
        What the error for pairs beyond the memory advises (by default: more shards or an
        implicit pool).

    Returns
    -------
    np.ndarray
        (P, 2) int64 rows (i, j), i < j, sorted by (i, j).

    Raises
    ------
    TypeError
        If the labels have an unsupported dtype or ``shard`` is not a pair of integers.
    ValueError
        If ``prompt_ids`` is not 1-D, ``shard`` is out of range, or the pairs would not fit in
        the memory available.

    Examples
    --------
    >>> from activerm_fast import pairs
    >>> prompt_ids = ["a", "a", "b", "b", "b", "c"]  # any labels, here a list
    >>> pairs.within_prompt(prompt_ids).tolist()
    [[0, 1], [2, 3], [2, 4], [3, 4]]
    >>> [pairs.within_prompt(prompt_ids, shard=(rank, 2)).tolist() for rank in range(2)]
    [[[0, 1], [2, 3], [2, 4]], [[3, 4]]]
    """
    codes = prompt_codes(prompt_ids)
    remedy = _WITHIN_REMEDY if remedy is None else remedy
    if shard is not None:
        return _within_rows(codes, shard_argument(shard), remedy)
    sizes = np.bincount(codes)
    sizes64 = sizes.astype(np.int64)
    biggest = int(sizes.max()) if len(codes) else 0
    check_pool_memory(
        int((sizes64 * (sizes64 - 1) // 2).sum()),
        _WITHIN_BYTES,
        f"the within-prompt pairs of {len(codes)} responses (up to {biggest} to one prompt)",
        remedy,
    )
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    blocks = []
    for size in np.unique(sizes[sizes > 1]):
        # every prompt of this size at once: the triangle of local positions, offset per prompt
        a, b = np.triu_indices(int(size), k=1)
        offsets = starts[sizes == size][:, None]
        blocks.append(np.stack([order[offsets + a], order[offsets + b]], axis=-1).reshape(-1, 2))
    if not blocks:
        return np.empty((0, 2), dtype=np.int64)
    return _canonical(np.concatenate(blocks))


def _within_rows(codes: np.ndarray, shard: Shard, remedy: str) -> np.ndarray:
    """The within-prompt pairs (i, j), i < j, whose i lies in this shard's rows."""
    rank, world = shard
    n = len(codes)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes).astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    place = np.empty(n, dtype=np.int64)
    place[order] = np.arange(n)
    later = (sizes[codes] - 1 - (place - starts[codes])).astype(np.int64)  # pairs row i starts
    cumulative = np.concatenate([[0], np.cumsum(later)]).astype(np.int64)
    total = int(cumulative[-1])
    bounds = [
        int(np.searchsorted(cumulative, total * r // world, side="left")) for r in (rank, rank + 1)
    ]
    first, stop = bounds[0], (n if rank + 1 == world else bounds[1])
    check_pool_memory(
        int(cumulative[stop] - cumulative[first]),
        _WITHIN_BYTES,
        f"shard {rank} of {world} of the within-prompt pairs of {n} responses",
        remedy,
    )
    rows = np.arange(first, stop, dtype=np.int64)
    counts = later[first:stop]
    lo = np.repeat(rows, counts)
    step = np.arange(len(lo), dtype=np.int64) - np.repeat(
        cumulative[first:stop] - cumulative[first], counts
    )
    hi = order[np.repeat(place[rows] + 1, counts) + step]
    return np.stack([lo, hi], axis=1).astype(np.int64)


def cross_pair_count(prompt_ids: Any) -> int:
    """How many unordered pairs of responses to different prompts there are.

    Parameters
    ----------
    prompt_ids : array_like
        (n,) prompt label of each response.

    Returns
    -------
    int
        (n^2 - sum of squared prompt sizes) / 2.

    Raises
    ------
    TypeError, ValueError
        As :func:`prompt_codes`.

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast import pairs
    >>> prompt_ids = np.array(["a", "a", "b", "b", "b", "c"])
    >>> pairs.cross_pair_count(prompt_ids)  # all 15 pairs but the 4 within a prompt
    11
    """
    codes = prompt_codes(prompt_ids)
    sizes = np.bincount(codes).astype(np.int64)
    return (len(codes) ** 2 - int((sizes**2).sum())) // 2


Shard = tuple[int, int]  # (rank, world): this process's part of a pool shared by world

# a cross-prompt draw is split into blocks of about this many pairs (at most _MAX_BLOCKS); a
# shard is a run of whole blocks, so the blocks, not the shards, fix every random choice
_BLOCK_PAIRS = 1024
_MAX_BLOCKS = 1 << 14


def shard_argument(shard: Any) -> Shard:
    """A validated ``(rank, world)``: 0 <= rank < world."""
    if not isinstance(shard, tuple) or len(shard) != 2:
        raise TypeError(f"shard must be a (rank, world) tuple, got {shard!r}")
    rank = count_argument(shard[0], "shard rank")
    world = positive_integer(shard[1], "shard world size")
    if rank >= world:
        raise ValueError(f"shard rank must be below the world size {world}, got {rank}")
    return rank, world


def shard_bounds(count: int, shard: Shard) -> tuple[int, int]:
    """Rows [start, stop) of ``count`` rows that rank ``rank`` of ``world`` holds.

    Contiguous, in rank order, sizes differing by at most one.

    Parameters
    ----------
    count : int
        Rows in all, >= 0.
    shard : tuple of (int, int)
        ``(rank, world)``, 0 <= rank < world.

    Returns
    -------
    tuple of (int, int)
        ``(start, stop)``.

    Raises
    ------
    TypeError
        If ``shard`` is not a tuple of two integers or ``count`` not an integer.
    ValueError
        If ``rank`` is not below ``world`` or ``count`` is negative.

    Examples
    --------
    >>> from activerm_fast import pairs
    >>> [pairs.shard_bounds(10, (rank, 3)) for rank in range(3)]
    [(0, 3), (3, 6), (6, 10)]
    """
    rank, world = shard_argument(shard)
    count = count_argument(count, "count")
    return count * rank // world, count * (rank + 1) // world


class _CrossPrompt:
    """Cross-prompt pairs (lo, hi), lo < hi, numbered 0..total-1 in (lo, hi) order, and the map
    from numbers back to pairs, in O(n) memory."""

    def __init__(self, codes: np.ndarray) -> None:
        n = len(codes)
        self.n = n
        self.codes = codes
        self.order = np.argsort(codes, kind="stable")  # positions grouped by prompt, ascending
        sizes = np.bincount(codes).astype(np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        place = np.empty(n, dtype=np.int64)
        place[self.order] = np.arange(n)
        self.rank = place - self.starts[codes]  # each response's rank among its prompt's
        # pairs each row lo starts: later responses minus the later ones of its own prompt
        later = np.arange(n - 1, -1, -1, dtype=np.int64)
        self.row_counts = later - (sizes[codes] - 1 - self.rank)
        self.row_starts = np.concatenate([[0], np.cumsum(self.row_counts)]).astype(np.int64)
        self.total = int(self.row_starts[-1])
        # q_k = other-prompt responses before the k-th response of a prompt; offset by the
        # prompt code so one sorted array serves every prompt
        grouped = self.order - (np.arange(n) - self.starts[codes[self.order]])
        self.keys = codes[self.order] * (n + 1) + grouped

    def pairs(self, numbers: np.ndarray) -> np.ndarray:
        """(m, 2) rows of the ascending pair ``numbers``, decoded in chunks so that the
        temporaries stay small beside the result."""
        out = np.empty((len(numbers), 2), dtype=np.int64)
        for start in range(0, len(numbers), _DECODE_CHUNK):
            out[start : start + _DECODE_CHUNK] = self._decode(
                numbers[start : start + _DECODE_CHUNK]
            )
        return out

    def _decode(self, numbers: np.ndarray) -> np.ndarray:
        lo = np.searchsorted(self.row_starts, numbers, side="right") - 1
        within = numbers - self.row_starts[lo]
        code = self.codes[lo]
        # the other-prompt responses after lo, in order: rank y among all other-prompt ones
        y = lo - self.rank[lo] + within
        hi = y + np.searchsorted(self.keys, code * (self.n + 1) + y, side="right")
        hi -= self.starts[code]
        return np.stack([lo, hi], axis=1).astype(np.int64)


def _block_rows(pool: _CrossPrompt, blocks: int) -> np.ndarray:
    """blocks + 1 row boundaries splitting the rows into runs of about equal pair counts."""
    wanted = np.array([b * pool.total // blocks for b in range(blocks + 1)], dtype=np.int64)
    rows = np.searchsorted(pool.row_starts, wanted, side="left").astype(np.int64)
    rows[0], rows[-1] = 0, pool.n
    return np.maximum.accumulate(np.minimum(rows, pool.n))


# NumPy's multivariate hypergeometric draw needs fewer than this many items in all
_HYPERGEOMETRIC_LIMIT = 10**9


def _block_draws(pool_sizes: np.ndarray, num: int, seed: int) -> np.ndarray:
    """How many of a uniform num-subset of all pairs fall in each block, exact for pools of
    any size, by thinning: every pair is kept with probability p (a binomial count per block),
    p grown until at least num are kept; num of the kept ones are then a uniform num-subset.
    Below NumPy's limit that subset is a multivariate hypergeometric draw; from num = 10^9 on
    (where more than the limit are kept), the kept pairs left out, a few times sqrt(num), are a
    uniform subset of the kept ones drawn directly (:func:`_left_out`)."""
    rng = np.random.default_rng([seed, 0, 0])
    total = int(pool_sizes.sum())
    margin = 4.0 * math.sqrt(num) + 16.0
    p = min(1.0, (num + margin) / max(total, 1))
    while True:
        kept = pool_sizes if p >= 1.0 else rng.binomial(pool_sizes, p)
        if int(kept.sum()) >= num:
            break
        # past the limit, grow p by the margin only, so the left-out pairs stay few
        p = min(1.0, 1.5 * p if num < _HYPERGEOMETRIC_LIMIT else p + margin / total)
    if int(kept.sum()) < _HYPERGEOMETRIC_LIMIT:
        draws: np.ndarray = rng.multivariate_hypergeometric(kept, num, method="marginals")
        return draws.astype(np.int64)
    chosen: np.ndarray = kept - _left_out(kept, int(kept.sum()) - num, rng)
    return chosen.astype(np.int64)


def _left_out(kept: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """How many of a uniform ``count``-subset of the kept pairs fall in each block: ``count``
    distinct positions among all kept pairs (NumPy draws a subset this small of a population
    this large by Floyd's method, in O(count) memory), counted by block."""
    positions = rng.choice(int(kept.sum()), size=count, replace=False, shuffle=False)
    blocks = np.searchsorted(np.cumsum(kept), positions, side="right")
    return np.bincount(blocks, minlength=len(kept)).astype(np.int64)


def cross_prompt(
    prompt_ids: Any,
    num: int,
    seed: int = 0,
    shard: Shard | None = None,
    *,
    name: str = "num",
    remedy: str | None = None,
) -> np.ndarray:
    """``num`` distinct pairs of responses to different prompts, uniform over all such pairs.

    Rows (i, j) with i < j sorted by (i, j); with ``shard=(rank, world)`` only this rank's
    part of that same pool.

    Number the cross-prompt pairs in (i, j) order and cut the numbers into blocks of about
    equal size (how many depends on ``num`` only). How many of the num pairs fall in each block
    is one draw from ``seed``; each block then draws its pairs from a generator of its own
    (seeded by ``seed`` and the block). A shard is a run of whole blocks, so the shards are
    disjoint, deterministic, and in rank order concatenate to the unsharded pool for any world
    size; each process computes only its own part. Memory is O(n + num / world), never O(n^2).

    Parameters
    ----------
    prompt_ids : array_like
        (n,) prompt label of each response.
    num : int
        Pairs to draw, at most :func:`cross_pair_count`.
    seed : int, default 0
        Seeds the draw.
    shard : tuple of (int, int), optional
        ``(rank, world)``: only this rank's part.
    name : str, default "num"
        What errors call ``num`` (a caller's own name for it, such as ``--pool-size``).
    remedy : str, optional
        What the error for a part beyond the memory advises (by default: a lower ``num``,
        more shards or an implicit pool).

    Returns
    -------
    np.ndarray
        (num, 2) int64 rows, or this rank's part of them.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If ``num`` exceeds the cross-prompt pairs, ``shard`` is out of range, or this rank's
        part would not fit in the memory available (checked before anything is drawn).

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast import pairs
    >>> prompt_ids = np.array(["a", "a", "b", "b", "b", "c"])
    >>> pool = pairs.cross_prompt(prompt_ids, 5, seed=0)
    >>> pool.tolist()
    [[0, 5], [1, 3], [1, 5], [2, 5], [4, 5]]
    >>> parts = [pairs.cross_prompt(prompt_ids, 5, seed=0, shard=(rank, 2)) for rank in (0, 1)]
    >>> bool(np.array_equal(np.concatenate(parts), pool))  # the shards make up the pool
    True
    >>> pairs.cross_prompt(prompt_ids, 12)
    Traceback (most recent call last):
    ...
    ValueError: num = 12 is larger than the 11 cross-prompt pairs of 6 responses to 3 prompts
    """
    codes = prompt_codes(prompt_ids)
    num = count_argument(num, name)
    rank, world = (0, 1) if shard is None else shard_argument(shard)
    n = len(codes)
    pool = _CrossPrompt(codes)
    if num > pool.total:
        raise ValueError(
            f"{name} = {num} is larger than the {pool.total} cross-prompt pairs of {n} "
            f"responses to {len(np.unique(codes))} prompts"
        )
    if num == 0:
        return np.empty((0, 2), dtype=np.int64)
    blocks = min(_MAX_BLOCKS, max(1, num // _BLOCK_PAIRS))
    # a rank holds whole blocks of about num / blocks pairs each
    share = -(-num * (blocks * (rank + 1) // world - blocks * rank // world) // blocks)
    what = f"{name} = {num}" if world == 1 else f"shard {rank} of {world} of {name} = {num}"
    if remedy is None:
        remedy = (
            f"lower {name}, build the pool in (more) shards (shard=(rank, world)), or use an "
            "implicit pool (activerm_fast.ImplicitPool.cross_prompt)"
        )
    check_pool_memory(share, _CROSS_BYTES, what, remedy)
    rows = _block_rows(pool, blocks)
    sizes = pool.row_starts[rows[1:]] - pool.row_starts[rows[:-1]]
    draws = _block_draws(sizes, num, seed)
    mine = range(blocks * rank // world, blocks * (rank + 1) // world)
    numbers = np.empty(int(draws[mine.start : mine.stop].sum()), dtype=np.int64)
    filled = 0
    for block in mine:
        if draws[block] == 0:
            continue
        rng = np.random.default_rng([seed, 1, block])
        picked = rng.choice(int(sizes[block]), size=int(draws[block]), replace=False, shuffle=False)
        picked.sort()
        numbers[filled : filled + len(picked)] = picked + pool.row_starts[rows[block]]
        filled += len(picked)
    return pool.pairs(numbers)  # ascending: the blocks are runs of ascending numbers


def candidate_pool(
    prompt_ids: Any,
    kind: str,
    cross_pairs: int,
    seed: int = 0,
    *,
    shard: Shard | None = None,
    name: str = "cross_pairs",
    remedy: str | None = None,
) -> np.ndarray:
    """The candidates of one selection.

    Parameters
    ----------
    prompt_ids : array_like
        (n,) prompt label of each response.
    kind : {"cross", "within"}
        Every within-prompt pair (``"within"``), or ``cross_pairs`` cross-prompt pairs
        (``"cross"``, fewer when the prompts have fewer; see :func:`cross_prompt`).
    cross_pairs : int
        Pairs to draw for ``"cross"``.
    seed : int, default 0
        Seeds the cross-prompt draw.
    shard : tuple of (int, int), optional
        ``(rank, world)``: this rank's part (the parts concatenate to the pool).
    name : str, default "cross_pairs"
        What errors call ``cross_pairs`` (``--pool-size`` on the command line).
    remedy : str, optional
        What the error for a pool beyond the memory advises (by default
        :func:`within_prompt`'s and :func:`cross_prompt`'s advice, in Python's terms).

    Returns
    -------
    np.ndarray
        The (P, 2) int64 pool of :func:`within_prompt` or :func:`cross_prompt`.

    Raises
    ------
    ValueError
        If ``kind`` is unknown, or as :func:`within_prompt` and :func:`cross_prompt`.

    Examples
    --------
    >>> from activerm_fast import pairs
    >>> pairs.candidate_pool([0, 0, 0, 1, 1], "within", 0).tolist()  # 3 + 1 pairs
    [[0, 1], [0, 2], [1, 2], [3, 4]]
    >>> pairs.candidate_pool([0, 0, 0, 1, 1], "cross", 100).shape  # only 3 x 2 exist
    (6, 2)
    """
    if kind not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {kind!r}")
    if kind == "within":
        return within_prompt(prompt_ids, shard, remedy=remedy)
    count = min(count_argument(cross_pairs, name), cross_pair_count(prompt_ids))
    return cross_prompt(prompt_ids, count, seed=seed, shard=shard, name=name, remedy=remedy)


def load_shard(path: str | os.PathLike[str], shard: Shard, key: str = "pairs") -> np.ndarray:
    """One rank's rows of a (P, 2) pool saved in a file, read without loading the rest.

    The rows :func:`shard_bounds` gives, of the pool in an ``.npy`` file or under ``key`` in
    an ``.npz`` archive: ``.npy`` files and uncompressed ``.npz`` members are memory-mapped
    (a compressed member is decompressed up to the shard's end).

    Parameters
    ----------
    path : str or os.PathLike
        An ``.npy`` file, or an ``.npz`` archive.
    shard : tuple of (int, int)
        ``(rank, world)``.
    key : str, default "pairs"
        The member of an ``.npz`` archive.

    Returns
    -------
    np.ndarray
        The rank's (P_rank, 2) rows: a read-only memory map, or an array.

    Raises
    ------
    ValueError
        If the archive has no ``key``, is damaged, or the array is not (P, 2) or is in
        Fortran order.
    OSError
        If the file cannot be read.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from activerm_fast import pairs
    >>> path = os.path.join(tempfile.mkdtemp(), "pool.npy")
    >>> np.save(path, pairs.all_pairs(5))  # 10 pairs: rank 1 of 2 holds rows 5..9
    >>> pairs.load_shard(path, (1, 2)).tolist()
    [[1, 3], [1, 4], [2, 3], [2, 4], [3, 4]]
    """
    where = os.fspath(path)
    if where.endswith(".npz"):
        table = _npz_member(where, key)
    else:
        table = np.load(where, mmap_mode="r")
    if table.ndim != 2 or table.shape[1] != 2:
        raise ValueError(f"{where}: pairs must have shape (P, 2), got {table.shape}")
    start, stop = shard_bounds(table.shape[0], shard)
    rows: np.ndarray = table[start:stop]
    return rows


def _npz_member(path: str, key: str) -> np.ndarray:
    """One array of an .npz archive: memory-mapped when stored uncompressed."""
    name = f"{key}.npy"
    with zipfile.ZipFile(path) as archive:
        if name not in archive.namelist():
            raise ValueError(f"{path} has no array {key!r}; it holds {sorted(archive.namelist())}")
        info = archive.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED:
            with np.load(path, allow_pickle=False) as npz:
                return npz_member(npz, key)  # compressed: no map possible
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"{path}: damaged archive (member {name!r})")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        start = handle.tell()
        shape, fortran, dtype = npy_header(handle)
        offset = handle.tell()
    check_declared_size(key, shape, dtype, info.file_size - (offset - start))
    if fortran:
        raise ValueError(f"{path}: {key} is stored in Fortran order; save it C-contiguous")
    mapped: np.ndarray = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    return mapped


def _canonical(pairs: np.ndarray) -> np.ndarray:
    """Rows as (min, max), sorted lexicographically."""
    lo, hi = pairs.min(axis=1), pairs.max(axis=1)
    order = np.lexsort((hi, lo))
    return np.stack([lo[order], hi[order]], axis=1).astype(np.int64)
