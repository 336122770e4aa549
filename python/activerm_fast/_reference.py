"""Plain NumPy float64 versions of every kernel: the test oracle.

Written for clarity, not speed: they materialise pair differences and solve afresh where the
kernels use factored forms and rank-one updates.
"""

from __future__ import annotations

import numpy as np


def pair_diff(features: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return f[p[:, 0]] - f[p[:, 1]]


def fisher_weights(rewards: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    r = np.atleast_2d(np.asarray(rewards, dtype=np.float64))
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    delta = r[:, p[:, 0]] - r[:, p[:, 1]]
    # sigma(x)(1 - sigma(x)) = 1 / (4 cosh^2(x / 2)); an independent form of the kernel's formula
    with np.errstate(over="ignore"):
        return (0.25 / np.cosh(delta / 2.0) ** 2).mean(axis=0)


def pair_quadform(features: np.ndarray, pairs: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = pair_diff(features, pairs)
    return np.einsum("pi,ij,pj->p", d, np.asarray(precision, dtype=np.float64), d)


def fisher_matrix(
    features: np.ndarray, pairs: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    d = pair_diff(features, pairs)
    w = np.ones(len(d)) if weights is None else np.asarray(weights, dtype=np.float64)
    return d.T @ (w[:, None] * d)


def prior_matrix(prior: float | np.ndarray, dim: int) -> np.ndarray:
    if np.ndim(prior) == 0:
        return float(prior) * np.eye(dim)
    return np.asarray(prior, dtype=np.float64)


def greedy_logdet(
    features: np.ndarray,
    pairs: np.ndarray,
    k: int,
    weights: np.ndarray | None = None,
    prior: float | np.ndarray = 1e-3,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Brute-force greedy: every step recomputes every gain with a fresh solve."""
    d = pair_diff(features, pairs)
    w = np.ones(len(d)) if weights is None else np.asarray(weights, dtype=np.float64)
    matrix = prior_matrix(prior, d.shape[1])
    available = np.ones(len(d), bool) if exclude is None else ~np.asarray(exclude, bool)
    chosen, gains = [], []
    for _ in range(k):
        q = np.einsum("pi,ip->p", d, np.linalg.solve(matrix, d.T))
        gain = np.where(available, np.log1p(w * q), -np.inf)
        best = int(np.argmax(gain))  # first maximum: ties go to the lowest index
        chosen.append(best)
        gains.append(gain[best])
        available[best] = False
        matrix = matrix + w[best] * np.outer(d[best], d[best])
    return np.array(chosen, dtype=np.int64), np.array(gains), float(np.linalg.slogdet(matrix)[1])


def sequential_gains(
    features: np.ndarray,
    pairs: np.ndarray,
    order: np.ndarray,
    weights: np.ndarray | None = None,
    prior: float | np.ndarray = 1e-3,
) -> np.ndarray:
    """log det increments of adding the pairs ``order`` one by one, by explicit slogdet."""
    d = pair_diff(features, pairs)
    w = np.ones(len(d)) if weights is None else np.asarray(weights, dtype=np.float64)
    matrix = prior_matrix(prior, d.shape[1])
    before = np.linalg.slogdet(matrix)[1]
    gains = []
    for index in np.asarray(order, dtype=np.int64):
        matrix = matrix + w[index] * np.outer(d[index], d[index])
        after = np.linalg.slogdet(matrix)[1]
        gains.append(after - before)
        before = after
    return np.array(gains)
