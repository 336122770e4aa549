"""The field's per-prompt pair rules (selection/field_rules.py) against brute-force NumPy
versions written from their definitions (the project's field_rules.md), on small random
within-prompt pools with tied rewards and one-completion prompts; the batch they make (prompts
in a seeded random order, one pair each per visit, the per-prompt quota); and the one-line
errors of bad input."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import activerm_fast as arm
from activerm_fast.selection import field_rules

BETA = 1.0


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def first_max(values) -> int:
    best = 0
    for at, value in enumerate(values):
        if value > values[best]:
            best = at
    return best


def thompson(mu, sigma, rng, sign=1.0) -> int:
    z = rng.uniform(-1.0, 1.0, size=len(mu))
    return first_max([sign * mu[c] + BETA * z[c] * sigma[c] for c in range(len(mu))])


def others_of(i, m):
    return [c for c in range(m) if c != i]


def brute_dts(mu, sigma, rng, reverse=False):
    redraws = 30 if reverse else 10
    sign = -1.0 if reverse else 1.0
    i = thompson(mu, sigma, rng)
    j = thompson(mu, sigma, rng, sign)
    tries = 0
    while j == i and tries < redraws:
        j = thompson(mu, sigma, rng, sign)
        tries += 1
    if j == i:
        others = others_of(i, len(mu))
        j = others[rng.integers(len(others))]
    return i, j


def brute_ultrafeedback(mu, sigma, rng):
    drawn = list(rng.choice(len(mu), size=min(4, len(mu)), replace=False))
    i = drawn[first_max([mu[c] for c in drawn])]
    others = [c for c in drawn if c != i]
    return i, others[rng.integers(len(others))]


def brute_max_min(mu, sigma, rng):
    i = first_max(list(mu))
    others = others_of(i, len(mu))
    return i, others[first_max([-mu[c] for c in others])]


def brute_ordered(mu, sigma, score):
    best, pick = -np.inf, None
    for i in range(len(mu)):
        for j in range(len(mu)):
            if i != j and score(i, j) > best:
                best, pick = score(i, j), (i, j)
    return pick


def brute_deltaucb(mu, sigma, rng):
    return brute_ordered(
        mu, sigma, lambda i, j: (mu[i] + BETA * sigma[i]) - (mu[j] - BETA * sigma[j])
    )


def width(mu, sigma, i, j):
    u_i, l_i = mu[i] + BETA * sigma[i], mu[i] - BETA * sigma[i]
    u_j, l_j = mu[j] + BETA * sigma[j], mu[j] - BETA * sigma[j]
    return sigmoid(u_i - l_j) - sigmoid(l_i - u_j)


def brute_infomax(mu, sigma, rng):  # symmetric: over i < j
    return brute_ordered(mu, sigma, lambda i, j: width(mu, sigma, i, j) if i < j else -np.inf)


def brute_maxminlcb(mu, sigma, rng):
    m = len(mu)

    def lcb(i, j):
        return (mu[i] - mu[j]) - BETA * (sigma[i] + sigma[j])

    def ucb(i, j):
        return (mu[i] - mu[j]) + BETA * (sigma[i] + sigma[j])

    candidates = [i for i in range(m) if all(ucb(i, j) > 0 for j in others_of(i, m))]
    if not candidates:
        candidates = list(range(m))
    worst = {i: min(lcb(i, j) for j in others_of(i, m)) for i in candidates}
    top = max(worst.values())
    tied = [i for i in candidates if worst[i] >= top - 1e-4]
    i = tied[rng.integers(len(tied))]
    low = min(lcb(i, j) for j in others_of(i, m))
    close = [j for j in others_of(i, m) if lcb(i, j) <= low + 1e-4]
    return i, close[rng.integers(len(close))]


def brute_infogain(mu, sigma, rng):
    i = thompson(mu, sigma, rng)
    others = others_of(i, len(mu))
    return i, others[first_max([width(mu, sigma, i, j) for j in others])]


def brute_deltaquantile(mu, sigma, rng, quantile=0.05, epsilon=0.0, partners=None):
    """Every available ordered pair by u_i - l_j, largest first (row-major on ties); the window
    of ranks around the quantile; in it the pair whose i has the largest u_i (first on ties)."""
    m = len(mu)
    ordered = [
        (i, j)
        for i in range(m)
        for j in range(m)
        if i != j and (partners is None or partners[i, j])
    ]

    def gap(pair):
        i, j = pair
        return (mu[i] + BETA * sigma[i]) - (mu[j] - BETA * sigma[j])

    ranked = sorted(ordered, key=lambda pair: -gap(pair))  # stable: row-major on ties
    count = len(ranked)
    start = min(int(np.floor(count * max(0.0, quantile - epsilon))), count - 1)
    end = min(max(int(np.floor(count * min(1.0, quantile + epsilon))), start + 1), count)
    window = ranked[start:end]
    return window[first_max([mu[i] + BETA * sigma[i] for i, _ in window])]


def available_of(i, partners):
    return [j for j in range(len(partners)) if j != i and partners[i][j]]


def undominated(ucb, partners):
    """The completions with a partner that no partner is surely better than (UCB_ij > 0 for
    every available j), or all of them when none is."""
    among = [i for i in range(len(partners)) if available_of(i, partners)]
    kept = [i for i in among if all(ucb(i, j) > 0 for j in available_of(i, partners))]
    return kept or among


def rule_setting(mu, sigma, width, partners):
    """The difference width (sigma_i + sigma_j unless given), the available pairs and UCB_ij."""
    m = len(mu)
    if width is None:

        def width(i, j):
            return sigma[i] + sigma[j]

    if partners is None:
        partners = ~np.eye(m, dtype=bool)

    def ucb(i, j):
        return (mu[i] - mu[j]) + BETA * width(i, j)

    return width, partners, ucb


def brute_rucb(mu, sigma, rng, width=None, partners=None):
    """A champion uniform among the undominated completions; its challenger the partner j of
    largest UCB_jc, ties within 1e-4 uniformly."""
    width, partners, ucb = rule_setting(mu, sigma, width, partners)
    candidates = undominated(ucb, partners)
    champion = candidates[rng.integers(len(candidates))]
    others = available_of(champion, partners)
    values = [ucb(j, champion) for j in others]
    close = [j for j, v in zip(others, values, strict=True) if v >= max(values) - 1e-4]
    return champion, close[rng.integers(len(close))]


def brute_ids(mu, sigma, rng, width=None, partners=None):
    """The greedy g of largest mu among the undominated (ties within 1e-4 uniformly); against
    it the challenger of smallest min over p = 1/100..1 of ((1 - p) gap_g + p gap_i)^2 /
    (p log(1 + S_gi^2)), gap_x = max_C u - mu_x (inf without information)."""
    width, partners, ucb = rule_setting(mu, sigma, width, partners)
    candidates = undominated(ucb, partners)
    top = max(mu[i] for i in candidates)
    tied = [i for i in candidates if mu[i] >= top - 1e-4]
    greedy = tied[rng.integers(len(tied))]
    best_upper = max(mu[i] + BETA * sigma[i] for i in candidates)
    challengers = [i for i in candidates if i != greedy and partners[greedy][i]]
    challengers = challengers or available_of(greedy, partners)
    smallest = []
    for i in challengers:
        information = np.log(1.0 + width(greedy, i) ** 2 / 1.0)
        ratios = []
        for step in range(1, 101):
            p = step / 100
            regret = (1 - p) * (best_upper - mu[greedy]) + p * (best_upper - mu[i])
            ratios.append(regret**2 / (p * information) if information > 0 else np.inf)
        smallest.append(min(ratios))
    close = [i for i, v in zip(challengers, smallest, strict=True) if v <= min(smallest) + 1e-4]
    return greedy, close[rng.integers(len(close))]


BRUTE = {
    "deltaquantile": brute_deltaquantile,
    "dts": brute_dts,
    "drts": lambda mu, sigma, rng: brute_dts(mu, sigma, rng, reverse=True),
    "ultrafeedback": brute_ultrafeedback,
    "max-min": brute_max_min,
    "deltaucb": brute_deltaucb,
    "infomax": brute_infomax,
    "maxminlcb": brute_maxminlcb,
    "infogain": brute_infogain,
    "rucb": brute_rucb,
    "ids": brute_ids,
}


def test_every_rule_is_registered_with_its_needs():
    for name in BRUTE:
        entry = arm.STRATEGIES[name]
        assert entry.uses_prompt_ids and entry.needs_rewards and entry.needs_model
        assert entry.needs_ensemble == (name not in ("max-min", "ultrafeedback"))


@pytest.mark.parametrize("name", sorted(BRUTE))
@pytest.mark.parametrize("seed", range(40))
def test_one_prompt_rule_is_its_definition(name, seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 8))
    if seed % 3 == 0:  # ties: a few integer levels
        mu = rng.integers(0, 3, size=m).astype(float)
        sigma = rng.integers(0, 2, size=m).astype(float)
    else:
        mu = rng.normal(size=m)
        sigma = rng.uniform(0, 1.5, size=m)
    partners = ~np.eye(m, dtype=bool)
    rule = field_rules.RULES[name][0]
    prompt = field_rules.Completions(mu, sigma, partners, beta=BETA)
    got = rule(prompt, np.random.default_rng(seed + 1000))
    want = BRUTE[name](mu, sigma, np.random.default_rng(seed + 1000))
    assert got == tuple(int(x) for x in want)
    assert got[0] != got[1]


def brute_batch(name, rewards, prompt_ids, pairs, k, seed, per_prompt=None):
    """The batch by the documented assembly, each prompt's pair by the brute-force rule."""
    mu = rewards.mean(axis=0)
    sigma = rewards.std(axis=0, ddof=1) if rewards.shape[0] > 1 else np.zeros(rewards.shape[1])
    rng = np.random.default_rng(seed)
    prompts = sorted({int(prompt_ids[i]) for i, _ in pairs})
    order = rng.permutation(len(prompts))
    position = {(int(a), int(b)): at for at, (a, b) in enumerate(pairs)}
    taken, used, done = [], Counter(), set()
    while len(taken) < k:
        for at in order:
            if len(taken) == k:
                break
            prompt = prompts[at]
            rows = sorted(np.flatnonzero(prompt_ids == prompt).tolist())
            left = [
                (a, b)
                for a in range(len(rows))
                for b in range(a + 1, len(rows))
                if position.get((rows[a], rows[b])) not in done
            ]
            if (per_prompt is not None and used[prompt] >= per_prompt) or not left:
                continue
            assert len(left) == len(rows) * (len(rows) - 1) // 2, "first visit only here"
            i, j = BRUTE[name](mu[rows], sigma[rows], rng)
            pick = position[(rows[min(i, j)], rows[max(i, j)])]
            taken.append(pick)
            done.add(pick)
            used[prompt] += 1
    return taken


@pytest.mark.parametrize("name", sorted(BRUTE))
@pytest.mark.parametrize("seed", range(4))
def test_a_batch_is_one_pair_per_prompt_in_a_seeded_order(name, seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, size=15)  # one-completion prompts have no pair
    prompt_ids = np.repeat(np.arange(15), sizes)
    n = len(prompt_ids)
    rewards = rng.integers(-2, 3, size=(3, n)).astype(float)  # ties
    features = rng.normal(size=(n, 4))
    pairs = arm.pairs.within_prompt(prompt_ids)
    with_pairs = int((sizes > 1).sum())
    k = with_pairs - 1
    batch = arm.select(
        name,
        features=features,
        pairs=pairs,
        k=k,
        rewards=rewards,
        prompt_ids=prompt_ids,
        seed=seed,
        per_prompt=1,
    )
    want = brute_batch(name, rewards, prompt_ids, pairs, k, seed, per_prompt=1)
    assert np.asarray(batch.indices).tolist() == want
    picked = pairs[np.asarray(batch.indices)]
    assert (prompt_ids[picked[:, 0]] == prompt_ids[picked[:, 1]]).all()
    assert len(set(prompt_ids[picked[:, 0]].tolist())) == k


@pytest.mark.parametrize("name", sorted(BRUTE))
def test_rules_never_propose_labelled_pairs_and_obey_the_quota(name):
    rng = np.random.default_rng(5)
    prompt_ids = np.repeat(np.arange(8), 4)
    features = rng.normal(size=(32, 4))
    rewards = rng.normal(size=(2, 32))
    within = arm.pairs.within_prompt(prompt_ids)
    pool = np.concatenate([within, arm.pairs.cross_prompt(prompt_ids, 50, seed=1)])
    labelled = within[::3]
    for per_prompt, k in ((None, 20), (2, 16)):
        batch = arm.select(
            name,
            features=features,
            pairs=pool,
            k=k,
            rewards=rewards,
            prompt_ids=prompt_ids,
            labelled=labelled,
            per_prompt=per_prompt,
        )
        chosen = np.asarray(batch.indices)
        picked = pool[chosen]
        assert len(set(chosen.tolist())) == k
        assert (prompt_ids[picked[:, 0]] == prompt_ids[picked[:, 1]]).all()
        labelled_keys = {tuple(p) for p in labelled.tolist()}
        assert not labelled_keys & {tuple(p) for p in picked.tolist()}
        counts = Counter(prompt_ids[picked[:, 0]].tolist())
        assert max(counts.values()) <= (3 if per_prompt is None else per_prompt)
        assert batch.gains.shape == (k,) and np.isfinite(batch.logdet)


def test_bad_input_is_one_line_errors():
    rng = np.random.default_rng(0)
    prompt_ids = np.repeat(np.arange(4), 3)
    features = rng.normal(size=(12, 3))
    within = arm.pairs.within_prompt(prompt_ids)
    cases = [
        # a rule that needs uncertainty, with a model that has none (one member)
        (
            dict(strategy="dts", rewards=rng.normal(size=12), prompt_ids=prompt_ids, pairs=within),
            "strategy 'dts' needs rewards of an ensemble of at least 2 members, got 1",
        ),
        (
            dict(
                strategy="infomax",
                rewards=rng.normal(size=(2, 12)),
                prompt_ids=prompt_ids,
                pairs=arm.pairs.cross_prompt(prompt_ids, 20, seed=0),
            ),
            "strategy 'infomax' chooses pairs within a prompt; the pool has no available",
        ),
        (
            dict(
                strategy="deltaucb",
                rewards=rng.normal(size=(2, 12)),
                prompt_ids=prompt_ids,
                pairs=within,
                k=5,
                per_prompt=1,
            ),
            r"strategy 'deltaucb': the pool's available within-prompt pairs under per_prompt=1 "
            r"allow only 4 pairs, k = 5",
        ),
        (
            dict(
                strategy="max-min",
                rewards=rng.normal(size=12),
                prompt_ids=prompt_ids[:5],
                pairs=within,
            ),
            r"prompt_ids must have shape \(12,\)",
        ),
    ]
    for options, message in cases:
        options.setdefault("k", 2)
        strategy = options.pop("strategy")
        with pytest.raises(ValueError, match=message) as info:
            arm.select(strategy, features=features, **options)
        assert "\n" not in str(info.value)


def test_uncertainty_is_the_ensemble_spread():
    rewards = np.array([[0.0, 1.0, 4.0], [2.0, 1.0, 0.0], [1.0, 1.0, 2.0]])
    from activerm_fast.selection.api import validated

    got = validated(
        "dts",
        features=np.zeros((3, 2)),
        pairs=[[0, 1]],
        k=1,
        rewards=rewards,
        prompt_ids=[0, 0, 0],
    )
    mu, sigma = field_rules.moments(got)
    np.testing.assert_allclose(mu, rewards.mean(axis=0))
    np.testing.assert_allclose(sigma, rewards.std(axis=0, ddof=1))


@pytest.mark.parametrize("name", sorted(BRUTE))
def test_without_prompt_ids_the_pool_is_one_prompt(name):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(7, 3))
    rewards = rng.normal(size=(2, 7))
    pairs = arm.pairs.all_pairs(7)
    k = 4
    batch = arm.select(name, features=features, pairs=pairs, k=k, rewards=rewards, seed=1)
    want = brute_batch(name, rewards, np.zeros(7, np.int64), pairs, 1, 1)
    assert np.asarray(batch.indices).tolist()[:1] == want  # the first pick: the rule itself
    assert len(set(np.asarray(batch.indices).tolist())) == k


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize(("quantile", "epsilon"), [(0.0, 0.0), (0.3, 0.1), (0.5, 0.5), (1.0, 0.0)])
def test_deltaquantile_window_is_its_definition(monkeypatch, seed, quantile, epsilon):
    """The rank window at other quantiles and half-widths than the defaults (the last rank at
    q = 1, every pair at q = eps = 1/2), on partial pools of available pairs."""
    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 7))
    mu = rng.integers(0, 3, size=m).astype(float) if seed % 2 else rng.normal(size=m)
    sigma = rng.uniform(0, 1, size=m)
    monkeypatch.setattr(field_rules, "QUANTILE", quantile)
    monkeypatch.setattr(field_rules, "EPSILON", epsilon)
    got = field_rules.deltaquantile(field_rules.Completions(mu, sigma), rng)
    assert got == brute_deltaquantile(mu, sigma, rng, quantile, epsilon)
    # a pool with pairs taken away: only the available ones are ranked
    partners = ~np.eye(m, dtype=bool)
    if m > 2:
        partners[0, 1] = partners[1, 0] = False
    got = field_rules.deltaquantile(field_rules.Completions(mu, sigma, partners), rng)
    assert got == brute_deltaquantile(mu, sigma, rng, quantile, epsilon, partners)


@pytest.mark.parametrize("name", sorted(BRUTE))
def test_a_free_batch_of_fewer_pairs_than_prompts_is_one_pair_per_prompt(name):
    """A rule takes one pair from each prompt before a second from any: with k no larger than
    the prompts, its free batch is its per_prompt=1 batch, pair for pair (the results report
    runs the rules once for both settings on this ground)."""
    rng = np.random.default_rng(7)
    prompt_ids = np.repeat(np.arange(10), rng.integers(2, 6, size=10))
    n = len(prompt_ids)
    options = dict(
        features=rng.normal(size=(n, 3)),
        pairs=arm.pairs.within_prompt(prompt_ids),
        rewards=rng.normal(size=(2, n)),
        prompt_ids=prompt_ids,
        seed=3,
    )
    for k in (4, 10):
        free = arm.select(name, k=k, **options)
        quota = arm.select(name, k=k, per_prompt=1, **options)
        assert np.asarray(free.indices).tolist() == np.asarray(quota.indices).tolist()
    beyond = np.asarray(arm.select(name, k=11, **options).indices)  # a second visit
    assert len(set(prompt_ids[options["pairs"][beyond][:, 0]].tolist())) == 10


def laplace_like_width(rng, m):
    """(m, m) sqrt(d_ij^T Sigma d_ij) of random features and a random covariance, and each
    completion's sqrt(phi_i^T Sigma phi_i)."""
    phi = rng.normal(size=(m, 3))
    root = rng.normal(size=(3, 3))
    covariance = root @ root.T / 3
    d = phi[:, None, :] - phi[None, :, :]
    spread = np.sqrt(np.einsum("ijk,kl,ijl->ij", d, covariance, d))
    return spread, np.sqrt(np.einsum("ik,kl,il->i", phi, covariance, phi))


@pytest.mark.parametrize("name", ["rucb", "ids"])
@pytest.mark.parametrize("seed", range(40))
def test_rucb_and_ids_on_partial_pools_and_laplace_widths(name, seed):
    """The two rules on prompts with pairs taken away, with the widths sigma_i + sigma_j and
    with a Laplace head's width of each difference (ties: integer rewards on every third
    seed)."""
    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 8))
    mu = rng.integers(0, 3, size=m).astype(float) if seed % 3 == 0 else rng.normal(size=m)
    spread, sigma = laplace_like_width(rng, m)
    partners = ~np.eye(m, dtype=bool)
    for _ in range(int(rng.integers(0, m))):  # take pairs away, keeping one at least
        i, j = rng.choice(m, size=2, replace=False)
        if partners.sum() > 2:
            partners[i, j] = partners[j, i] = False
    rule, brute = field_rules.RULES[name].rule, BRUTE[name]
    for width in (None, spread):
        prompt = field_rules.Completions(mu, sigma, partners.copy(), beta=BETA, spread=width)
        got = rule(prompt, np.random.default_rng(seed))
        pick = None if width is None else (lambda i, j, s=width: s[i, j])
        want = brute(mu, sigma, np.random.default_rng(seed), pick, partners)
        assert got == tuple(int(x) for x in want)
        assert partners[got]


def test_rucb_and_ids_read_a_laplace_head_end_to_end():
    """Through select with one member and uncertainty="laplace": the first pick is the rule on
    the Laplace widths of the reference covariance (pairs labelled are unavailable)."""
    from activerm_fast import _reference as reference

    rng = np.random.default_rng(11)
    features = rng.normal(size=(6, 3))
    rewards = rng.normal(size=6)
    pairs = arm.pairs.all_pairs(6)
    labelled = pairs[[0, 5, 9]]
    covariance = reference.laplace_covariance(features, labelled, rewards[None], 0.5)
    sigma = np.sqrt(np.einsum("ni,ij,nj->n", features, covariance, features))
    d = features[:, None, :] - features[None, :, :]
    spread = np.sqrt(np.clip(np.einsum("ijk,kl,ijl->ij", d, covariance, d), 0.0, None))
    partners = ~np.eye(6, dtype=bool)
    for a, b in labelled.tolist():
        partners[a, b] = partners[b, a] = False
    for name in ("rucb", "ids"):
        for seed in range(5):
            batch = arm.select(
                name,
                features=features,
                pairs=pairs,
                k=1,
                rewards=rewards,
                labelled=labelled,
                uncertainty="laplace",
                ridge=0.5,
                seed=seed,
            )
            draws = np.random.default_rng(seed)
            draws.permutation(1)  # the batch's order of its one prompt
            i, j = BRUTE[name](rewards, sigma, draws, lambda a, b: spread[a, b], partners)
            assert tuple(pairs[int(np.asarray(batch.indices)[0])]) == (min(i, j), max(i, j))


@pytest.mark.parametrize("name", sorted(BRUTE))
def test_rules_give_an_available_pair_at_extreme_magnitudes(name):
    """Rewards and widths whose squares, sums or differences leave float64 (ids' regret squared
    and its information, the bounds' nan of inf - inf): still an available pair, never a
    crash."""
    cases = [
        ([1e200, -1e200, 3e199], [1e200, 2e200, 1e199]),
        ([1e300, -1e300, 0.0], [1e300, 1e300, 1e300]),
        ([1.7e308, -1.7e308, 1.7e308], [1.7e308] * 3),
        ([0.0, 0.0, 0.0], [1e-300, 0.0, 1e-300]),
    ]
    rule = field_rules.RULES[name].rule
    for mu, sigma in cases:
        with np.errstate(all="ignore"):
            i, j = rule(field_rules.Completions(mu, sigma), np.random.default_rng(0))
        assert i != j and {i, j} <= {0, 1, 2}
