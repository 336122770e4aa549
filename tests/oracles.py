"""Independent expected values for the strategy tests: plain NumPy float64, brute force.

Nothing here calls the code under test: every selection is recomputed from the documented
rule on the reference kernels (``activerm_fast.testing.reference``, fresh solves every step) or
by enumeration, so a test comparing against these fails when the package's rule breaks.
"""

from __future__ import annotations

import math

import numpy as np

from activerm_fast.testing import reference as ref

GREEDY = ("xtx", "dopt-greedy", "past-dopt-greedy", "ensemble-dopt-greedy")


def excluded_by(pool: np.ndarray, labelled: np.ndarray | None) -> np.ndarray:
    """(P,) True for the candidates that are a labelled pair, in either order."""
    if labelled is None or len(labelled) == 0:
        return np.zeros(len(pool), bool)
    done = {frozenset(row) for row in np.asarray(labelled).tolist()}
    return np.array([frozenset(row) in done for row in np.asarray(pool).tolist()])


def labelled_information(features, rewards, labelled) -> np.ndarray:
    """sum over the labelled pairs of w d d^T, w the ensemble-mean Fisher weight (1 without
    rewards)."""
    d = features.shape[1]
    if labelled is None or len(labelled) == 0:
        return np.zeros((d, d))
    w = np.ones(len(labelled)) if rewards is None else ref.fisher_weights(rewards, labelled)
    return ref.fisher_matrix(features, labelled, w)


def relative_lambda(c, features, rewards, labelled) -> float:
    """lambda = c tr(F_L) / d, F_L the labelled pairs' information (README, --ridge-mode)."""
    diff = ref.pair_diff(features, labelled)
    w = ref.fisher_weights(rewards, labelled)
    return c * float(w @ (diff**2).sum(axis=1)) / features.shape[1]


def greedy_selection(
    strategy, features, rewards, pool, k, labelled=None, ridge=1e-3
) -> tuple[np.ndarray, np.ndarray, float]:
    """The indices, gains and log det a greedy strategy must return, by brute force.

    ``features`` (n, d), or (E, n, d) of which single-model strategies use the first;
    ``rewards`` (E, n). xtx: w = 1, F0 = lambda I; dopt-greedy: ensemble-mean Fisher weights,
    F0 = lambda I; past-dopt-greedy: F0 = lambda I + the labelled information;
    ensemble-dopt-greedy: sum over members of each member's own weights and past-aware F0.
    Labelled candidates are never chosen."""
    features = np.asarray(features, dtype=np.float64)
    rewards = None if rewards is None else np.atleast_2d(np.asarray(rewards, dtype=np.float64))
    exclude = excluded_by(pool, labelled)
    if strategy == "ensemble-dopt-greedy":
        members = features if features.ndim == 3 else np.stack([features] * len(rewards))
        members = np.broadcast_to(members, (len(rewards), *members.shape[1:]))
        weights = [ref.fisher_weights(r, pool) for r in rewards]
        priors = [
            ridge * np.eye(members.shape[2]) + labelled_information(f, r, labelled)
            for f, r in zip(members, rewards, strict=True)
        ]
        indices, gains = ref.ensemble_greedy_logdet(
            list(members), weights, pool, k, priors=priors, exclude=exclude
        )
        logdet = sum(np.linalg.slogdet(p)[1] for p in priors) + gains.sum()
        return indices, gains, float(logdet)
    single = features[0] if features.ndim == 3 else features
    d = single.shape[1]
    if strategy == "xtx":
        weights, prior = np.ones(len(pool)), ridge * np.eye(d)
    elif strategy == "dopt-greedy":
        weights, prior = ref.fisher_weights(rewards, pool), ridge * np.eye(d)
    elif strategy == "past-dopt-greedy":
        weights = ref.fisher_weights(rewards, pool)
        prior = ridge * np.eye(d) + labelled_information(single, rewards, labelled)
    else:
        raise ValueError(f"no greedy reference for {strategy!r}")
    return ref.greedy_logdet(single, pool, k, weights=weights, prior=prior, exclude=exclude)


def ranked_selection(scores, pool, k, labelled=None) -> np.ndarray:
    """The k available pairs of largest score, ties to the lowest index."""
    scores = np.where(excluded_by(pool, labelled), -np.inf, np.asarray(scores, dtype=np.float64))
    return np.argsort(-scores, kind="stable")[:k]


def bal_pm_selection(
    prompt_features, pairs, rewards, k, labelled=None, beta=1.0, neighbours=5, floor=1e-3
) -> list[int]:
    """BAL-PM by brute force (selection/bal_pm.py's docstring), one pick at a time: the
    available pair maximising MI(pair) + beta * sum over its distinct prompts z of
    (q / (N + 1)) log(max(rho_k(z) / sigma, floor)), with

    * MI the BALD term H(mean_e p_e) - mean_e H(p_e), p_e = sigmoid(r_e,i - r_e,j);
    * prompts the distinct rows of ``prompt_features`` (one row per response);
    * N the acquired prompts (those of the labelled pairs and of the pairs picked so far,
      counted with multiplicity, a pair's prompt once when both responses share it), rho_k(z)
      the distance from z to its k-th nearest acquired prompt with k lowered to N (no bonus
      while N = 0), sigma the prompts' root-mean-square distance to their mean, q their
      dimension; ties to the lowest pair index.

    Every distance is recomputed from the prompts each pick; nothing is kept between picks."""
    points, prompt_of = np.unique(
        np.asarray(prompt_features, dtype=np.float64), axis=0, return_inverse=True
    )
    prompt_of = prompt_of.reshape(-1)
    q = points.shape[1]
    sigma = math.sqrt(float(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean()))
    sigma = sigma if sigma > 0 else 1.0
    pairs = np.asarray(pairs, dtype=np.int64)
    information = ref.bald_scores(rewards, pairs)
    acquired: list[int] = []  # prompt indices, with multiplicity

    def acquire(row) -> None:
        for prompt in sorted({int(prompt_of[row[0]]), int(prompt_of[row[1]])}):
            acquired.append(prompt)

    for row in [] if labelled is None else np.asarray(labelled).tolist():
        acquire(row)
    available = ~excluded_by(pairs, labelled)
    chosen: list[int] = []
    for _ in range(k):
        gain = np.zeros(len(points))
        if acquired:
            distance = np.sqrt(((points[:, None, :] - points[acquired][None]) ** 2).sum(axis=2))
            rank = min(neighbours, len(acquired))
            rho = np.sort(distance, axis=1)[:, rank - 1]
            gain = q / (len(acquired) + 1) * np.log(np.maximum(rho / sigma, floor))
        first, second = prompt_of[pairs[:, 0]], prompt_of[pairs[:, 1]]
        bonus = gain[first] + np.where(first != second, gain[second], 0.0)
        score = np.where(available, information + beta * bonus, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        available[best] = False
        acquire(pairs[best])
    return chosen
