"""Evaluation metrics for predicted rewards: within-prompt Spearman, best-of-N, pair accuracy.

All three take a single prediction per response, ``pred`` of shape (n,); for an ensemble pass
``rewards.mean(axis=0)``. Prompt ids may be any integers or strings (they only group rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .._validation import (
    as_tensor,
    binary_labels,
    integer_argument,
    integer_sequence,
    pairs_tensor,
    positive_integer,
    real_vector,
    seed_argument,
)
from ..data.pairs import prompt_codes

DEFAULT_NS = (2, 4, 8, 16, 32, 64)
_ENSEMBLE_HINT = "; average an ensemble first (rewards.mean(axis=0))"


class BestOfN(NamedTuple):
    """Best-of-N outcome for one N, averaged over prompts (each prompt weighs the same).

    Attributes
    ----------
    mean_gold : float
        Mean golden reward of the response the prediction ranks best among N.
    mean_quantile : float
        Mean within-prompt quantile of that response's golden reward
        ((tie-aware rank - 1) / (size - 1): 0 is the prompt's worst response, 1 its best).

    Examples
    --------
    >>> from activerm_fast.metrics import BestOfN
    >>> BestOfN(mean_gold=1.5, mean_quantile=1.0).mean_quantile
    1.0
    """

    mean_gold: float
    mean_quantile: float


def within_prompt_spearman(pred: Any, gold: Any, prompt_ids: Any) -> float:
    """Mean over prompts of the Spearman correlation between ``pred`` and ``gold``.

    Ranks are tie-aware (average ranks, as ``scipy.stats.spearmanr``). Prompts with fewer
    than two distinct gold values are skipped; a prompt where ``pred`` is constant counts as
    correlation 0 (it ranks nothing), so a degenerate predictor cannot score by omission.

    Parameters
    ----------
    pred : array_like
        (n,) predicted rewards, one per response.
    gold : array_like
        (n,) golden rewards.
    prompt_ids : array_like
        (n,) prompt of each response, integers or strings (only groups rows).

    Returns
    -------
    float
        The mean correlation over the prompts counted, in [-1, 1].

    Raises
    ------
    TypeError
        If an input does not hold real numbers (integers or strings for ``prompt_ids``).
    ValueError
        If the lengths differ (the message names the input that disagrees with the others),
        ``pred`` is 2-D (average an ensemble first), or no prompt has two different gold
        values.

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast.metrics import within_prompt_spearman
    >>> gold = np.array([0.1, 0.5, 0.9, 1.0, 2.0, 3.0])
    >>> prompt_ids = np.array([0, 0, 0, 1, 1, 1])
    >>> within_prompt_spearman(2 * gold, gold, prompt_ids)  # any increasing map: 1
    1.0
    >>> within_prompt_spearman(np.array([1.0, 2, 3, 3, 2, 1]), gold, prompt_ids)  # 1 and -1
    0.0
    >>> within_prompt_spearman(2 * gold, gold, ["q1", "q1", "q1", "q2", "q2", "q2"])
    1.0
    """
    pred_v, gold_v, groups = _grouped_inputs(pred, gold, prompt_ids)
    pred_rank = _grouped_ranks(pred_v, groups)
    gold_rank = _grouped_ranks(gold_v, groups)
    sizes = np.bincount(groups)
    pred_c = pred_rank - (np.bincount(groups, pred_rank) / sizes)[groups]
    gold_c = gold_rank - (np.bincount(groups, gold_rank) / sizes)[groups]
    covariance = np.bincount(groups, pred_c * gold_c)
    pred_var = np.bincount(groups, pred_c**2)
    gold_var = np.bincount(groups, gold_c**2)
    # centred ranks are multiples of 1/2, so a zero variance is exactly zero
    counted = gold_var > 0
    if not counted.any():
        raise ValueError("no prompt has two responses with different gold values")
    ranked = counted & (pred_var > 0)
    correlations = np.zeros(groups.max() + 1)
    correlations[ranked] = covariance[ranked] / np.sqrt(pred_var[ranked] * gold_var[ranked])
    return float(correlations[counted].mean())


def best_of_n(
    pred: Any,
    gold: Any,
    prompt_ids: Any,
    ns: Sequence[int] = DEFAULT_NS,
    *,
    repeats: int | None = None,
    seed: int = 0,
) -> dict[int, BestOfN]:
    """Gold reward of the predicted best among N random responses of a prompt.

    For each prompt, N random responses are drawn without replacement (N capped by the
    prompt's size), the one with the highest ``pred`` is kept (ties broken at random), and
    its gold reward and within-prompt gold quantile are averaged over draws and prompts.
    Prompts with a single response are skipped.

    With ``repeats=None`` the expectation over draws is computed exactly: the response ranked
    k-th by ``pred`` among s wins with probability C(s-k, N-1) / C(s, N). With an integer,
    ``repeats`` draws per prompt are sampled with ``seed`` instead (the reference protocol).

    Parameters
    ----------
    pred, gold, prompt_ids : array_like
        (n,) predicted and golden rewards and prompts (integers or strings), as for
        :func:`within_prompt_spearman`.
    ns : sequence of int, default (2, 4, 8, 16, 32, 64)
        The sample sizes N, positive; an N beyond a prompt's size draws the whole prompt.
    repeats : int, optional
        Draws per prompt to sample; None computes the expectation exactly.
    seed : int, default 0
        Seeds the draws when ``repeats`` is given.

    Returns
    -------
    dict of int to BestOfN
        ``{N: BestOfN(mean_gold, mean_quantile)}`` for each N in ``ns``.

    Raises
    ------
    TypeError
        If an input does not hold numbers of the right kind.
    ValueError
        If the shapes differ, ``ns`` is empty or not positive, or no prompt has two
        responses.

    Examples
    --------
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> from activerm_fast.metrics import best_of_n
    >>> data = arm.synthetic(3, 4, 1, 4, dim=4)  # 4 prompts of 4 responses
    >>> result = best_of_n(data.gold, data.gold, data.prompt_ids, ns=(1, 2, 4))  # perfect
    >>> {n: round(b.mean_quantile, 3) for n, b in result.items()}  # N = 1 is a random pick
    {1: 0.5, 2: 0.778, 4: 1.0}
    >>> best = [data.gold[data.prompt_ids == p].max() for p in range(data.num_prompts)]
    >>> bool(np.isclose(result[4].mean_gold, np.mean(best)))  # N = 4: each prompt's best
    True
    """
    pred_v, gold_v, groups = _grouped_inputs(pred, gold, prompt_ids)
    sizes_all = np.bincount(groups)
    keep = sizes_all[groups] >= 2
    if not keep.any():
        raise ValueError("best_of_n needs a prompt with at least two responses")
    pred_v, gold_v = pred_v[keep], gold_v[keep]
    groups = np.unique(groups[keep], return_inverse=True)[1].reshape(-1)
    sizes = np.bincount(groups)
    quantile = (_grouped_ranks(gold_v, groups) - 1.0) / (sizes[groups] - 1.0)
    checked_ns = _sample_sizes(ns)
    if repeats is None:
        return _exact_best_of_n(pred_v, gold_v, quantile, groups=groups, sizes=sizes, ns=checked_ns)
    repeats = positive_integer(repeats, "repeats")
    seed = seed_argument(seed)
    return _sampled_best_of_n(
        pred_v, gold_v, quantile, groups=groups, ns=checked_ns, repeats=repeats, seed=seed
    )


def pair_accuracy(pred: Any, pairs: Any, labels: Any) -> float:
    """Fraction of labelled pairs whose winner ``pred`` rates higher (a tie counts 1/2).

    Parameters
    ----------
    pred : array_like
        (n,) predicted rewards, one per response.
    pairs : np.ndarray or torch.Tensor
        (P, 2) integer rows ``(i, j)``.
    labels : array_like
        (P,) 1 where ``pairs[k, 0]`` won, 0 where ``pairs[k, 1]`` did.

    Returns
    -------
    float
        The accuracy, in [0, 1].

    Raises
    ------
    TypeError
        If an input has the wrong type or dtype.
    ValueError
        If ``pairs`` is empty, an index is out of range, a label is not 0 or 1, or ``pred``
        is 2-D (average an ensemble first).

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast.metrics import pair_accuracy
    >>> pred = np.array([0.1, 0.5, 0.9, 1.0, 2.0, 3.0])
    >>> pairs = np.array([[0, 1], [2, 1], [3, 5]])
    >>> pair_accuracy(pred, pairs, np.array([0, 1, 1]))  # pred has 3 below 5: one miss
    0.6666666666666666
    """
    pred_v = real_vector(pred, "pred", hint=_ENSEMBLE_HINT)
    t = as_tensor(pairs, "pairs")
    checked = pairs_tensor(t, pred_v.size, t.device, "pairs", distinct=True).cpu().numpy()
    if checked.shape[0] == 0:
        raise ValueError("pairs is empty: accuracy over no pairs is undefined")
    first_wins = binary_labels(labels, checked.shape[0], "labels") == 1
    margin = pred_v[checked[:, 0]] - pred_v[checked[:, 1]]
    agree = np.where(margin == 0, 0.5, (margin > 0) == first_wins)
    return float(agree.mean())


def _exact_best_of_n(
    pred: np.ndarray,
    gold: np.ndarray,
    quantile: np.ndarray,
    *,
    groups: np.ndarray,
    sizes: np.ndarray,
    ns: list[int],
) -> dict[int, BestOfN]:
    # position k (1-based) by descending pred inside each prompt
    order = np.lexsort((-pred, groups))
    g_sorted, p_sorted = groups[order], pred[order]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    k = np.arange(order.size) - starts[g_sorted] + 1
    # responses tied in pred share the average gold of their tie block (random tie-break)
    new_block = np.concatenate(
        [[True], (g_sorted[1:] != g_sorted[:-1]) | (p_sorted[1:] != p_sorted[:-1])]
    )
    block = np.cumsum(new_block) - 1
    block_size = np.bincount(block)
    gold_tied = (np.bincount(block, gold[order]) / block_size)[block]
    quantile_tied = (np.bincount(block, quantile[order]) / block_size)[block]
    s = sizes[g_sorted]
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, sizes.max() + 1)))])

    def log_choose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        logs: np.ndarray = log_factorial[a] - log_factorial[b] - log_factorial[a - b]
        return logs

    results = {}
    for n in ns:
        # capped by the largest prompt first: an N beyond it (however large) draws every
        # prompt whole, and stays within int64
        draw = np.minimum(min(n, int(s.max())), s)
        possible = s - k >= draw - 1
        a, b = np.where(possible, s - k, 0), np.where(possible, draw - 1, 0)
        win = np.where(possible, np.exp(log_choose(a, b) - log_choose(s, draw)), 0.0)
        mean_gold = np.bincount(g_sorted, win * gold_tied).mean()
        mean_quantile = np.bincount(g_sorted, win * quantile_tied).mean()
        results[n] = BestOfN(float(mean_gold), float(mean_quantile))
    return results


def _sampled_best_of_n(
    pred: np.ndarray,
    gold: np.ndarray,
    quantile: np.ndarray,
    *,
    groups: np.ndarray,
    ns: list[int],
    repeats: int,
    seed: int,
) -> dict[int, BestOfN]:
    rng = np.random.default_rng(seed)
    rows_of = np.split(np.argsort(groups, kind="stable"), np.cumsum(np.bincount(groups))[:-1])
    results = {}
    for n in ns:
        gold_sum = quantile_sum = 0.0
        for rows in rows_of:
            draw = min(n, rows.size)
            # a random permutation per repeat: its first `draw` entries are the sample, in
            # random order, so argmax's first-maximum rule breaks ties at random
            sample = rows[np.argsort(rng.random((repeats, rows.size)), axis=1)[:, :draw]]
            best = sample[np.arange(repeats), np.argmax(pred[sample], axis=1)]
            gold_sum += gold[best].mean()
            quantile_sum += quantile[best].mean()
        results[n] = BestOfN(float(gold_sum / len(rows_of)), float(quantile_sum / len(rows_of)))
    return results


def _grouped_ranks(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) of ``values`` within each group."""
    order = np.lexsort((values, groups))
    v, g = values[order], groups[order]
    position = np.arange(values.size)
    new_group = np.concatenate([[True], g[1:] != g[:-1]])
    new_block = new_group | np.concatenate([[True], v[1:] != v[:-1]])
    group_start = np.maximum.accumulate(np.where(new_group, position, 0))
    block_start = position[new_block]
    block_end = np.concatenate([block_start[1:], [values.size]])
    mean_position = (block_start + block_end - 1) / 2.0
    ranks = np.empty(values.size)
    ranks[order] = mean_position[np.cumsum(new_block) - 1] - group_start + 1.0
    return ranks


def _grouped_inputs(pred: Any, gold: Any, prompt_ids: Any) -> tuple[np.ndarray, ...]:
    """pred and gold as float64 vectors and the dense prompt codes, one of each per response."""
    pred_v = real_vector(pred, "pred", min_size=1, hint=_ENSEMBLE_HINT)
    gold_v = real_vector(gold, "gold")
    ids = np.asarray(prompt_ids.cpu() if hasattr(prompt_ids, "cpu") else prompt_ids)
    if ids.dtype.kind == "f":  # a float id is most likely a reward passed in the wrong place
        raise TypeError(f"prompt_ids must hold integers or strings, got dtype {ids.dtype}")
    groups = prompt_codes(ids, "prompt_ids")
    _same_lengths({"pred": pred_v.size, "gold": gold_v.size, "prompt_ids": groups.size})
    return pred_v, gold_v, groups


def _same_lengths(lengths: dict[str, int]) -> None:
    """Refuse inputs of different lengths, naming the one that disagrees with the others."""
    if len(set(lengths.values())) == 1:
        return
    for name, size in lengths.items():
        others = {other: n for other, n in lengths.items() if other != name}
        if len(set(others.values())) == 1:  # the others agree: this one is the odd one out
            n = next(iter(others.values()))
            raise ValueError(
                f"{name} must have shape (n,) = ({n},) like {' and '.join(others)}, got ({size},)"
            )
    shapes = ", ".join(f"{name} ({size},)" for name, size in lengths.items())
    raise ValueError(f"{', '.join(lengths)} must have one entry per response each, got {shapes}")


def _sample_sizes(ns: Sequence[int]) -> list[int]:
    values = integer_sequence(ns, "ns")
    if not values:
        raise ValueError("ns is empty")
    for n in values:
        integer_argument(n, "ns entries")
        if n < 1:
            raise ValueError(f"ns must hold positive integers, got {n!r} in {values}")
    return [int(n) for n in values]
