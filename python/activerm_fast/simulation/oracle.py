"""Label oracles: who answers "which response of this pair is better?" in a simulation.

* :class:`BTOracle` simulates annotators from a golden reward with a Bradley–Terry model.
* :class:`PairLabelOracle` reveals stored human labels and refuses pairs it has none for.

Both return 1 when the first response of a pair wins. Both are stateless: a pair's label
depends only on the pair (and the seed), so asking again, in another order or batch, or after
restarting a checkpointed loop gives the same answer, and ``(j, i)`` gets the opposite label
of ``(i, j)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .._validation import (
    as_tensor,
    binary_labels,
    integer_argument,
    nonnegative_pairs,
    pair_keys,
    pairs_tensor,
    positive_or_infinite,
    real_vector,
)

_MASK64 = (1 << 64) - 1


class BTOracle:
    """Labels drawn from P(i beats j) = sigmoid(beta * (gold_i - gold_j) / std(gold)).

    ``beta = inf`` gives noiseless labels (exact gold ties are a fair coin). Each unordered
    pair's coin is a hash of ``(seed, min(i, j), max(i, j))``, so labels are reproducible
    and independent across pairs, and re-asking a pair returns the same label.

    Parameters
    ----------
    gold : array_like
        (n,) golden rewards, not all equal.
    beta : float, default 1.0
        Inverse label noise, positive or ``inf``.
    seed : int, default 0
        Any integer: it only seeds the hash.

    Raises
    ------
    TypeError
        If ``gold`` is not real or ``beta``/``seed`` not a number/integer.
    ValueError
        If ``gold`` has fewer than 2 entries or is constant, or ``beta`` is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast import BTOracle
    >>> gold = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    >>> pairs = np.array([[0, 5], [5, 0], [2, 3], [1, 4]])
    >>> oracle = BTOracle(gold, beta=2.0, seed=0)
    >>> labels = oracle.label(pairs)
    >>> labels.tolist(), oracle.label(pairs[:, ::-1]).tolist()  # (j, i) gets the opposite
    ([0, 1, 0, 0], [1, 0, 1, 1])
    >>> bool(np.array_equal(oracle.label(pairs[2:]), labels[2:]))  # any batch: same answers
    True
    >>> BTOracle(gold, beta=float("inf")).label(pairs).tolist()  # noiseless: the higher gold
    [0, 1, 0, 0]
    """

    def __init__(self, gold: Any, beta: float = 1.0, seed: int = 0) -> None:
        self.gold = real_vector(gold, "gold", min_size=2)
        # the std of gold / its largest magnitude, scaled back: no square overflows near 1e155
        # or underflows near 1e-160
        peak = float(np.abs(self.gold).max())
        self.scale = peak * float((self.gold / peak).std()) if peak > 0 else 0.0
        if self.scale == 0:
            raise ValueError("gold is constant: a BT oracle needs rewards that differ")
        self.beta = positive_or_infinite(beta, "beta")
        self.seed = integer_argument(seed, "seed") & _MASK64  # any integer: it only seeds a hash

    @property
    def n(self) -> int:
        """Number of responses the oracle can compare."""
        return int(self.gold.size)

    def probabilities(self, pairs: Any) -> np.ndarray:
        """Probability that the first response of each pair wins.

        Parameters
        ----------
        pairs : np.ndarray or torch.Tensor
            (P, 2) integer rows ``(i, j)`` of two different responses.

        Returns
        -------
        np.ndarray
            (P,) float64 sigmoid(beta * (gold_i - gold_j) / std(gold)).

        Raises
        ------
        TypeError
            If ``pairs`` is not an integer array.
        ValueError
            If an index is out of range or a pair compares a response with itself.

        Examples
        --------
        >>> import numpy as np
        >>> from activerm_fast import BTOracle
        >>> p = BTOracle(np.arange(6.0), beta=2.0).probabilities(np.array([[0, 5], [5, 0], [2, 3]]))
        >>> p.round(3).tolist(), float(p[0] + p[1])  # (i, j) and (j, i): the two sides of one coin
        ([0.003, 0.997, 0.237], 1.0)
        """
        return self._probabilities(self._checked(pairs))

    def label(self, pairs: Any) -> np.ndarray:
        """Draw the label of each pair.

        Parameters
        ----------
        pairs : np.ndarray or torch.Tensor
            (P, 2) integer rows ``(i, j)``, i != j: each asks whether ``i`` beats ``j``.

        Returns
        -------
        np.ndarray
            (P,) int64 labels, 1 when ``pairs[k, 0]`` wins.

        Raises
        ------
        TypeError, ValueError
            For the ``pairs`` that :meth:`probabilities` refuses too.

        Examples
        --------
        >>> import torch
        >>> from activerm_fast import BTOracle
        >>> oracle = BTOracle([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], beta=2.0, seed=0)
        >>> oracle.label(torch.tensor([[0, 5], [5, 0], [2, 3]])).tolist()  # one coin, both ways
        [0, 1, 0]
        """
        checked = self._checked(pairs)
        lo, hi = checked.min(axis=1), checked.max(axis=1)
        canonical = np.stack([lo, hi], axis=1)
        low_wins = _hash_uniform(self.seed, lo, hi) < self._probabilities(canonical)
        return np.where(checked[:, 0] == lo, low_wins, ~low_wins).astype(np.int64)

    def _probabilities(self, checked: np.ndarray) -> np.ndarray:
        """:meth:`probabilities` of pairs already validated by :meth:`_checked`."""
        z = (self.gold[checked[:, 0]] - self.gold[checked[:, 1]]) / self.scale
        if math.isinf(self.beta):
            return np.where(z > 0, 1.0, np.where(z < 0, 0.0, 0.5))
        # the logistic sigmoid, overflow-free
        sigmoid: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * self.beta * z))
        return sigmoid

    def _checked(self, pairs: Any) -> np.ndarray:
        """(P, 2) int64 CPU pairs of two different responses among the oracle's n."""
        t = as_tensor(pairs, "pairs")
        checked = pairs_tensor(t, self.n, t.device, "pairs", distinct=True)
        return checked.cpu().to(torch.int64).numpy()


class PairLabelOracle:
    """Reveals stored human labels; asking for a pair without a label is an error.

    A stored label for ``(i, j)`` also answers ``(j, i)`` (with the opposite label). Repeated
    comparisons must agree: conflicting duplicates are refused at construction.

    Parameters
    ----------
    pairs : array_like
        (M, 2) non-negative integer rows ``(i, j)`` of labelled comparisons.
    labels : array_like
        (M,) 1 where ``pairs[k, 0]`` won, 0 where ``pairs[k, 1]`` did.

    Attributes
    ----------
    pairs : np.ndarray
        (U, 2) int64, the distinct labelled pairs as first given: the candidate pool a
        selector may ask about.

    Raises
    ------
    ValueError
        If a pair has a negative index or compares a response with itself, a label is not
        0 or 1, or two labels of one comparison disagree.

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast import PairLabelOracle
    >>> oracle = PairLabelOracle(np.array([[0, 1], [2, 3], [1, 0]]), np.array([1, 0, 0]))
    >>> oracle.pairs.tolist()  # (1, 0) with label 0 repeats (0, 1) with label 1
    [[0, 1], [2, 3]]
    >>> PairLabelOracle(np.array([[0, 1], [1, 0]]), np.array([1, 1]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: labels disagree for one comparison: pairs[0] = (0, 1) with label 1 and ...
    """

    def __init__(self, pairs: Any, labels: Any) -> None:
        stored = nonnegative_pairs(pairs, "pairs", distinct=True)
        values = binary_labels(labels, stored.shape[0], "labels")
        low_wins = np.where(stored[:, 0] < stored[:, 1], values, 1 - values)
        self._width = int(stored.max()) + 1 if stored.size else 1
        keys = pair_keys(stored, self._width)
        order = np.argsort(keys, kind="stable")
        keys, low_wins, rows = keys[order], low_wins[order], order
        repeat = keys[1:] == keys[:-1]
        conflict = repeat & (low_wins[1:] != low_wins[:-1])
        if conflict.any():
            at = int(np.flatnonzero(conflict)[0])
            first, again = sorted((int(rows[at]), int(rows[at + 1])))
            a, b = tuple(stored[first].tolist()), tuple(stored[again].tolist())
            raise ValueError(
                f"labels disagree for one comparison: pairs[{first}] = {a} with label "
                f"{values[first]} and pairs[{again}] = {b} with label {values[again]}"
            )
        unique = np.concatenate([[True], ~repeat])[: keys.size]
        self._keys: np.ndarray = keys[unique]
        self._low_wins: np.ndarray = low_wins[unique]
        self.pairs: np.ndarray = stored[np.sort(rows[unique])]

    def known(self, pairs: Any) -> np.ndarray:
        """Whether each pair (in either order) has a stored label.

        Parameters
        ----------
        pairs : array_like
            (P, 2) non-negative integer rows.

        Returns
        -------
        np.ndarray
            (P,) bool.

        Raises
        ------
        ValueError
            If a pair has a negative index.

        Examples
        --------
        >>> from activerm_fast import PairLabelOracle
        >>> oracle = PairLabelOracle([[0, 1], [2, 3]], [1, 0])
        >>> oracle.known([[1, 0], [3, 2], [0, 2], [7, 9]]).tolist()  # either order; 7, 9 unseen
        [True, True, False, False]
        """
        return self._lookup(nonnegative_pairs(pairs, "pairs"))[1]

    def label(self, pairs: Any) -> np.ndarray:
        """The stored labels of the pairs asked, in the order asked.

        Parameters
        ----------
        pairs : array_like
            (P, 2) non-negative integer rows, each with a stored label in either order.

        Returns
        -------
        np.ndarray
            (P,) int64 labels, 1 when ``pairs[k, 0]`` won.

        Raises
        ------
        ValueError
            If a pair has a negative index or no stored label.

        Examples
        --------
        >>> import numpy as np
        >>> from activerm_fast import PairLabelOracle
        >>> oracle = PairLabelOracle(np.array([[0, 1], [1, 2]]), np.array([1, 1]))  # 0 > 1 > 2
        >>> oracle.label(np.array([[1, 0], [2, 1], [0, 1]])).tolist()
        [0, 0, 1]
        >>> oracle.label(np.array([[0, 2]]))
        Traceback (most recent call last):
        ...
        ValueError: pairs[0] = (0, 2) has no stored label (1 of 1 asked pairs are unlabelled)
        """
        asked = nonnegative_pairs(pairs, "pairs")
        position, found = self._lookup(asked)
        if not found.all():
            row = int(np.flatnonzero(~found)[0])
            raise ValueError(
                f"pairs[{row}] = ({asked[row, 0]}, {asked[row, 1]}) has no stored label "
                f"({int((~found).sum())} of {found.size} asked pairs are unlabelled)"
            )
        low_wins = self._low_wins[position]
        answers: np.ndarray = np.where(asked[:, 0] <= asked[:, 1], low_wins, 1 - low_wins)
        return answers.astype(np.int64)

    def _lookup(self, asked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._keys.size == 0:
            return np.zeros(len(asked), dtype=np.int64), np.zeros(len(asked), dtype=bool)
        inside = asked.max(axis=1) < self._width
        keys = np.where(inside, pair_keys(asked, self._width), -1)
        position = np.minimum(np.searchsorted(self._keys, keys), self._keys.size - 1)
        return position, inside & (self._keys[position] == keys)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser: a bijective, well-mixed hash of 64-bit integers."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed: np.ndarray = x ^ (x >> np.uint64(31))
    return mixed


def _hash_uniform(seed: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers, one per (seed, lo, hi), independent of batch and order."""
    state = _splitmix64(np.full(lo.shape, seed, dtype=np.uint64))
    state = _splitmix64(state ^ lo.astype(np.uint64))
    state = _splitmix64(state ^ hi.astype(np.uint64))
    uniform: np.ndarray = (state >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return uniform
