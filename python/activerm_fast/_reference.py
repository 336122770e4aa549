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
        weights: np.ndarray = (0.25 / np.cosh(delta / 2.0) ** 2).mean(axis=0)
    return weights


def pair_quadform(features: np.ndarray, pairs: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = pair_diff(features, pairs)
    quadform: np.ndarray = np.einsum("pi,ij,pj->p", d, np.asarray(precision, dtype=np.float64), d)
    return quadform


def project_features(features: np.ndarray, matrix: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(scale Phi) M, each entry summed over the features' columns in ascending order from 0.0,
    every product and sum rounded apart: the order the CPU kernel keeps, so its bits."""
    x = np.asarray(features, dtype=np.float64) * scale
    m = np.asarray(matrix, dtype=np.float64)
    out = np.zeros((x.shape[0], m.shape[1]))
    for a in range(x.shape[1]):
        out = out + x[:, a : a + 1] * m[a : a + 1, :]
    return out


def fisher_matrix(
    features: np.ndarray, pairs: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    d = pair_diff(features, pairs)
    w = np.ones(len(d)) if weights is None else np.asarray(weights, dtype=np.float64)
    matrix: np.ndarray = d.T @ (w[:, None] * d)
    return matrix


def prior_matrix(prior: float | np.ndarray, dim: int) -> np.ndarray:
    if np.ndim(prior) == 0:
        return float(prior) * np.eye(dim)
    return np.asarray(prior, dtype=np.float64)


def greedy_logdet(
    features: np.ndarray,
    pairs: np.ndarray,
    k: int,
    *,
    weights: np.ndarray | None = None,
    prior: float | np.ndarray = 1e-3,
    exclude: np.ndarray | None = None,
    per_prompt: int | None = None,
    prompt_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Brute-force greedy: every step recomputes every gain with a fresh solve. With
    ``per_prompt`` m, a pair may be chosen only while each distinct prompt of its two responses
    (``prompt_ids`` (n,)) has fewer than m chosen pairs (the constrained greedy)."""
    d = pair_diff(features, pairs)
    w = np.ones(len(d)) if weights is None else np.asarray(weights, dtype=np.float64)
    matrix = prior_matrix(prior, d.shape[1])
    available = np.ones(len(d), bool) if exclude is None else ~np.asarray(exclude, bool)
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    used: dict[object, int] = {}
    chosen, gains = [], []
    for _ in range(k):
        q = np.einsum("pi,ip->p", d, np.linalg.solve(matrix, d.T))
        allowed = available.copy()
        if per_prompt is not None:
            assert prompt_ids is not None
            for at in range(len(p)):
                prompts = {prompt_ids[p[at, 0]], prompt_ids[p[at, 1]]}
                if any(used.get(prompt, 0) >= per_prompt for prompt in prompts):
                    allowed[at] = False
        gain = np.where(allowed, np.log1p(w * q), -np.inf)
        best = int(np.argmax(gain))  # first maximum: ties go to the lowest index
        chosen.append(best)
        gains.append(gain[best])
        available[best] = False
        if prompt_ids is not None:
            for prompt in {prompt_ids[p[best, 0]], prompt_ids[p[best, 1]]}:
                used[prompt] = used.get(prompt, 0) + 1
        matrix = matrix + w[best] * np.outer(d[best], d[best])
    return np.array(chosen, dtype=np.int64), np.array(gains), float(np.linalg.slogdet(matrix)[1])


def sequential_gains(
    features: np.ndarray,
    pairs: np.ndarray,
    order: np.ndarray,
    *,
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


def bald_scores(rewards: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Mutual information H(mean p) - mean H(p) of each pair's label with the member."""
    r = np.atleast_2d(np.asarray(rewards, dtype=np.float64))
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    prob = 1.0 / (1.0 + np.exp(-(r[:, p[:, 0]] - r[:, p[:, 1]])))

    def entropy(x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            h: np.ndarray = -np.nan_to_num(x * np.log(x)) - np.nan_to_num((1 - x) * np.log(1 - x))
        return h

    scores: np.ndarray = entropy(prob.mean(axis=0)) - entropy(prob).mean(axis=0)
    return scores


def coreset(
    features: np.ndarray,
    pairs: np.ndarray,
    k: int,
    *,
    labelled: np.ndarray | None = None,
    first: int | None = None,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy k-center over materialised differences, distance min(|d - c|, |d + c|)."""
    d = pair_diff(features, pairs)
    centres = [] if labelled is None or len(labelled) == 0 else list(pair_diff(features, labelled))
    available = np.ones(len(d), bool) if exclude is None else ~np.asarray(exclude, bool)
    chosen = []
    if not centres:
        chosen.append(first)
        available[first] = False
        centres.append(d[first])
    while len(chosen) < k:
        c = np.array(centres)
        minus = ((d[:, None, :] - c[None]) ** 2).sum(-1)
        plus = ((d[:, None, :] + c[None]) ** 2).sum(-1)
        nearest = np.minimum(minus, plus).min(axis=1)
        best = int(np.argmax(np.where(available, nearest, -np.inf)))
        chosen.append(best)
        available[best] = False
        centres.append(d[best])
    return np.array(chosen, dtype=np.int64)


def ensemble_greedy_logdet(
    member_features: list[np.ndarray],
    member_weights: list[np.ndarray],
    pairs: np.ndarray,
    k: int,
    *,
    priors: list[np.ndarray],
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force greedy on sum_e log det(F0_e + sum_S w_e d_e d_e^T), fresh solves each step."""
    diffs = [pair_diff(f, pairs) for f in member_features]
    matrices = [np.array(p, dtype=np.float64) for p in priors]
    available = np.ones(len(pairs), bool) if exclude is None else ~np.asarray(exclude, bool)
    chosen, gains = [], []
    for _ in range(k):
        total = np.zeros(len(pairs))
        for d, w, m in zip(diffs, member_weights, matrices, strict=True):
            total += np.log1p(w * np.einsum("pi,ip->p", d, np.linalg.solve(m, d.T)))
        total[~available] = -np.inf
        best = int(np.argmax(total))
        chosen.append(best)
        gains.append(total[best])
        available[best] = False
        for d, w, m in zip(diffs, member_weights, matrices, strict=True):
            m += w[best] * np.outer(d[best], d[best])
    return np.array(chosen, dtype=np.int64), np.array(gains)


def laplace_covariance(
    features: np.ndarray, labelled: np.ndarray, rewards: np.ndarray, ridge: float
) -> np.ndarray:
    """(ridge I + sum_l w_l d_l d_l^T)^-1 by an explicit inverse, w_l the mean over the reward
    rows of p (1 - p), p = sigmoid(r_i - r_j)."""
    d = pair_diff(features, labelled)
    w = fisher_weights(rewards, labelled)
    precision = ridge * np.eye(d.shape[1]) + d.T @ (w[:, None] * d)
    covariance: np.ndarray = np.linalg.inv(precision)
    return covariance


def gaussian_mutual_information(mean: float, variance: float, points: int = 200_001) -> float:
    """H(E p) - E H(p) for p = sigmoid(x), x ~ N(mean, variance), by the trapezoid rule on a
    fine grid over mean +- 12 standard deviations."""
    if variance <= 0:
        return 0.0
    sd = np.sqrt(variance)
    x = np.linspace(mean - 12 * sd, mean + 12 * sd, points)
    density = np.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
    p = 1.0 / (1.0 + np.exp(-x))
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nan_to_num(p * np.log(p)) - np.nan_to_num((1 - p) * np.log(1 - p))
    mean_p = float(np.trapezoid(density * p, x))
    mean_h = float(np.trapezoid(density * h, x))
    entropy_of_mean = -mean_p * np.log(mean_p) - (1 - mean_p) * np.log(1 - mean_p)
    return float(entropy_of_mean - mean_h)
