"""Candidate pools: (P, 2) int64 arrays of response indices with i < j, sorted by (i, j)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import count_argument

__all__ = [
    "POOLS",
    "all_pairs",
    "candidate_pool",
    "cross_pair_count",
    "cross_prompt",
    "prompt_codes",
    "within_prompt",
]

POOLS = ("cross", "within")


def prompt_codes(prompt_ids: Any, name: str = "prompt_ids") -> np.ndarray:
    """Dense int64 prompt codes 0..m-1 for any 1-D array of hashable prompt labels."""
    ids = np.asarray(prompt_ids.cpu() if hasattr(prompt_ids, "cpu") else prompt_ids)
    if ids.ndim != 1:
        raise ValueError(f"{name} must have shape (n,), got {ids.shape}")
    if ids.dtype.kind == "f":
        if not np.isfinite(ids).all():
            raise ValueError(f"{name} must be finite, got {ids[~np.isfinite(ids)][0]}")
    elif ids.dtype.kind not in "biuUSO":
        raise TypeError(f"{name} must hold integers or strings, got dtype {ids.dtype}")
    return np.unique(ids, return_inverse=True)[1].astype(np.int64).reshape(-1)


def all_pairs(n: int) -> np.ndarray:
    """Every pair (i, j), i < j, of n responses: n(n-1)/2 rows."""
    n = count_argument(n, "n")
    i, j = np.triu_indices(n, k=1)
    return np.stack([i, j], axis=1).astype(np.int64)


def within_prompt(prompt_ids: Any) -> np.ndarray:
    """Every pair of responses to the same prompt."""
    codes = prompt_codes(prompt_ids)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
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


def cross_pair_count(prompt_ids: Any) -> int:
    """How many unordered pairs of responses to different prompts there are."""
    codes = prompt_codes(prompt_ids)
    sizes = np.bincount(codes).astype(np.int64)
    return (len(codes) ** 2 - int((sizes**2).sum())) // 2


def cross_prompt(prompt_ids: Any, num: int, seed: int = 0) -> np.ndarray:
    """``num`` distinct pairs of responses to different prompts, uniform over all such pairs.

    Draws uniform ordered pairs, rejects same-prompt ones and repeats, and keeps a uniform
    subset: memory stays O(num), never O(n^2). When more than half of all cross pairs are
    asked for, rejection would stall, so it enumerates them instead (then the output itself
    is at least half that size).
    """
    codes = prompt_codes(prompt_ids)
    num = count_argument(num, "num")
    n = len(codes)
    total = cross_pair_count(codes)
    if num > total:
        raise ValueError(
            f"num = {num} is larger than the {total} cross-prompt pairs of {n} responses "
            f"to {len(np.unique(codes))} prompts"
        )
    rng = np.random.default_rng(seed)
    if num == 0:
        return np.empty((0, 2), dtype=np.int64)
    if 2 * num > total:
        everything = all_pairs(n)
        everything = everything[codes[everything[:, 0]] != codes[everything[:, 1]]]
        keep = np.sort(rng.choice(len(everything), size=num, replace=False))
        return np.asarray(everything[keep])
    keys = np.empty(0, dtype=np.int64)
    accept_rate = 2.0 * total / (n * n)
    while len(keys) < num:
        draws = int((num - len(keys)) / accept_rate * 1.1) + 64
        i = rng.integers(0, n, size=draws)
        j = rng.integers(0, n, size=draws)
        ok = codes[i] != codes[j]
        lo, hi = np.minimum(i[ok], j[ok]), np.maximum(i[ok], j[ok])
        keys = _sorted_unique(np.concatenate([keys, lo * n + hi]))
    # the distinct pairs drawn are exchangeable, so a uniform subset of them is uniform overall
    keys = np.sort(rng.choice(keys, size=num, replace=False))
    return np.stack([keys // n, keys % n], axis=1)


def candidate_pool(prompt_ids: Any, kind: str, cross_pairs: int, seed: int = 0) -> np.ndarray:
    """The candidates of one selection: every within-prompt pair (``kind="within"``), or
    ``cross_pairs`` cross-prompt pairs, fewer when the prompts have fewer (``"cross"``)."""
    if kind not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {kind!r}")
    if kind == "within":
        return within_prompt(prompt_ids)
    return cross_prompt(prompt_ids, min(cross_pairs, cross_pair_count(prompt_ids)), seed=seed)


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """np.unique for int64 keys by a plain sort (much faster than np.unique's default here)."""
    keys = np.sort(keys)
    return np.asarray(keys[np.concatenate([[True], keys[1:] != keys[:-1]])])


def _canonical(pairs: np.ndarray) -> np.ndarray:
    """Rows as (min, max), sorted lexicographically."""
    lo, hi = pairs.min(axis=1), pairs.max(axis=1)
    order = np.lexsort((hi, lo))
    return np.stack([lo[order], hi[order]], axis=1).astype(np.int64)
