"""The field's per-prompt pair rules as strategies: ActiveUltraFeedback's acquisition functions,
the UltraFeedback rule and max-min.

Sources: ActiveUltraFeedback (lasgroup/ActiveUltraFeedback, ICML 2026, Apache-2.0,
``activeuf/acquisition_function/``) for ``dts``, ``drts``, ``deltaucb``, ``infomax``,
``maxminlcb``, ``infogain`` (the last after sail-sg/oat), ``deltaquantile``, ``rucb`` and
``ids``; UltraFeedback's construction of preference pairs for ``ultrafeedback``; reward-model
pipelines (RLHFlow/Online-RLHF, allenai/open-instruct) for ``max-min``. The definitions
implemented are those of the project's ``field_rules.md`` (``rucb`` and ``ids``: see their
entries), in this notation: for the completions 1..m of one prompt, mu_i is the reward model's
mean reward and sigma_i its uncertainty, u_i = mu_i + beta sigma_i and l_i = mu_i - beta
sigma_i (beta = ``BETA`` = 1):

* ``max-min``: i = argmax mu, j = argmin mu over j != i.
* ``ultrafeedback``: 4 distinct completions drawn uniformly (all of them when fewer); i the one
  of largest mu; j one of the other three, uniformly.
* ``dts`` (double Thompson sampling): z_i ~ U(-1, 1) per completion, i = argmax mu + beta z
  sigma; j the same with fresh z, redrawn up to 10 times while j = i, then uniform among the
  others.
* ``drts`` (double reverse Thompson sampling): i as in ``dts``; j = argmax -mu + beta z sigma
  with fresh z, redrawn up to 30 times while j = i, then uniform.
* ``deltaucb``: the ordered pair maximising u_i - l_j.
* ``infomax``: the pair maximising sigmoid(u_i - l_j) - sigmoid(l_i - u_j), the width of the
  confidence interval on the preference probability (symmetric in i and j: taken with i < j).
* ``maxminlcb``: LCB_ij = (mu_i - mu_j) - beta (sigma_i + sigma_j), UCB_ij = (mu_i - mu_j) +
  beta (sigma_i + sigma_j); candidates the i with UCB_ij > 0 for every j != i (every i when
  none is); i = argmax over candidates of min_j LCB_ij, j = argmin_j LCB_ij for that i, ties
  within ``TIE_TOLERANCE`` (1e-4) broken uniformly.
* ``infogain``: i by one Thompson draw as in ``dts``; j = argmax over j != i of
  sigmoid(u_i - l_j) - sigmoid(l_i - u_j).
* ``deltaquantile``: the N available ordered pairs ranked by u_i - l_j, largest first (ties in
  row-major order); the window of ranks [a, b) with a = min(floor(N max(0, q - eps)), N - 1)
  and b = min(max(floor(N min(1, q + eps)), a + 1), N), q = ``QUANTILE`` = 0.05 and eps =
  ``EPSILON`` = 0 (ActiveUltraFeedback's defaults: the pair at the top 5% of optimistic gaps);
  the pair of the window whose i has the largest u_i (the first in rank order on ties).
* ``rucb`` (relative upper confidence bound; Zoghi et al., ICML 2014): with UCB_ij as in
  ``maxminlcb``, the candidates C are the completions no other is surely better than
  (UCB_ij > 0 for every j != i; every completion when none is); a champion c uniform in C, and
  its challenger j = argmax over j != c of UCB_jc, the completion with the best optimistic
  chance against it, ties within ``TIE_TOLERANCE`` broken uniformly. Source: ActiveUltraFeedback's
  ``rucb.py`` as first written (read in MariSchn/ActiveUltraFeedback, where the package was
  developed), whose test UCB > 1/2 on a matrix of preference probabilities is UCB_ij > 0 on
  reward differences; a later version there tests u_i > 1/2 on the reward scale, a leftover of
  the probability scale, and is not followed. Where C has one member it returns the
  degenerate pair (c, c); a label needs two completions, so j is then the same argmax.
* ``ids`` (information-directed sampling; Russo & Van Roy, 2014): the candidates C as in
  ``rucb``; the greedy completion g = argmax over C of mu (ties within ``TIE_TOLERANCE``
  uniformly); the gaps Delta_x = u* - mu_x with u* = max over C of u; for each challenger i
  (the members of C other than g, or every partner of g when there is none) and each p in
  {1/G, 2/G, ..., 1} (G = ``PROBABILITY_GRID`` = 100), the information ratio
  Psi(i, p) = ((1 - p) Delta_g + p Delta_i)^2 / (p I_i) of comparing g with i with
  probability p and playing g alone otherwise, where I_i = log(1 + S_gi^2 / rho^2) is the
  information of comparing g with i (S_gi = sigma_g + sigma_i, rho^2 = ``RHO2`` = 1;
  Psi = inf where I_i = 0); j = argmin over i of min_p Psi(i, p), ties within
  ``TIE_TOLERANCE`` uniformly (every challenger when no Psi is finite). Source:
  ActiveUltraFeedback's ``ids.py`` (read as for ``rucb``), which multiplies by the information
  instead of dividing, adds mu_i to u* for the gap and takes log(1 + sigma_i / rho^2): taken
  here as slips against the rule it names (regret squared over information gain). Its fallback
  to completion 0 (the reference arm of the duelling-bandit code it came from) means nothing
  for completions and is left out, and the pair is always (g, j): playing g alone, its draw
  with probability 1 - p, gives nothing to label.

mu and sigma come from the reward model's rewards (E, n): the ensemble mean and its standard
deviation over members (``torch.std``, unbiased), so every rule but ``max-min`` and
``ultrafeedback`` needs an ensemble of at least 2 members; or, with ``uncertainty="laplace"``,
from a Bayesian last layer (:mod:`~activerm_fast.model.laplace`): sigma_i = sqrt(phi_i^T Sigma
phi_i), and the pairwise rules (``deltaucb``, ``infomax``, ``maxminlcb``, ``infogain``,
``deltaquantile``, ``rucb``, ``ids``) take the width of the reward *difference*,
S_ij = sqrt(d_ij^T Sigma d_ij), in place of sigma_i + sigma_j (the documented variant:
D_ij + beta S_ij for u_i - l_j, D_ij -+ beta S_ij for the bounds, D_ij = mu_i - mu_j).
Deterministic argmaxes take the first maximum in the order of the prompt's responses (rows
ascending; ordered pairs row-major).

The rules run on a within-prompt pool: each prompt's completions are its responses that
appear in an available within-prompt pair of the candidate pool, and "j != i" reads "j forms an
available pair with i" (the same on a complete pool; a pair already labelled or already chosen
is never proposed). Without ``prompt_ids`` the whole pool counts as one prompt (every pair of
it available to the rule; at most ``_MAX_COMPLETIONS`` responses). On a sharded pool every
process gathers the available pairs of every shard (O(P) once) and runs the same rule. A batch
visits the prompts with an available pair in a seeded random order (``rng.permutation``) and
takes one pair from each, then visits them again while fewer than k pairs are chosen; with
``per_prompt`` a prompt leaves once it holds that many. Random draws come, in that order, from
one ``numpy.random.default_rng(seed)``: the permutation, then each rule's draws in the order
written above (every z is a vector over all m completions). Cross-prompt pairs of the pool are
never chosen when ``prompt_ids`` are given. The batch's gains are the D-optimal objective's
(:func:`~activerm_fast.selection.registry.batch_selection`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..kernels import Selection
from .inputs import SelectionInputs
from .registry import batch_selection, register

__all__ = [
    "BETA",
    "EPSILON",
    "PROBABILITY_GRID",
    "QUANTILE",
    "RHO2",
    "RULES",
    "TIE_TOLERANCE",
    "Completions",
    "FieldRule",
    "choose",
    "moments",
]

BETA = 1.0
TIE_TOLERANCE = 1e-4
# deltaquantile's rank window: centre and half-width, as fractions of the ordered pairs
QUANTILE = 0.05
EPSILON = 0.0
# ids: the probabilities of comparing with the greedy completion tried, k / PROBABILITY_GRID for
# k = 1..PROBABILITY_GRID, and the noise variance of a compared difference in its information
PROBABILITY_GRID = 100
RHO2 = 1.0
# Thompson redraws of j while it equals i (dts, drts)
_DTS_REDRAWS = 10
_DRTS_REDRAWS = 30
# completions of one prompt beyond which the (m, m) tables of a rule are refused
_MAX_COMPLETIONS = 4096


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for any x
    return out


def _uniform(options: np.ndarray, rng: np.random.Generator) -> int:
    return int(options[rng.integers(len(options))])


def _near_best(options: np.ndarray, values: np.ndarray, rng: np.random.Generator) -> int:
    """One of ``options`` whose value is within ``TIE_TOLERANCE`` of the largest, uniformly (a
    value lost to overflow, nan, counts as the smallest; all tie when every one is)."""
    values = np.where(np.isnan(values), -np.inf, values)
    return _uniform(options[values >= values.max() - TIE_TOLERANCE], rng)


@dataclass(frozen=True)
class Completions:
    """One prompt's completions as every rule sees them: their means and uncertainties, the
    pairs still available, and the bounds the rules are written in.

    Parameters
    ----------
    mu, sigma : array_like
        (m,) mean reward and uncertainty of each completion.
    partners : np.ndarray, optional
        (m, m) symmetric bool: ``partners[i, j]`` when (i, j) is an available pair (every
        pair i != j when None).
    beta : float, default ``BETA``
        Width of the bounds, u = mu + beta sigma and l = mu - beta sigma.
    spread : np.ndarray, optional
        (m, m) width S_ij of each reward difference, taken by the pairwise rules in place of
        sigma_i + sigma_j (the Laplace variant).

    Examples
    --------
    >>> prompt = Completions([0.0, 1.0], [0.5, 0.0])
    >>> prompt.upper.tolist(), prompt.optimistic_gap().tolist()
    ([0.5, 1.0], [[-inf, -0.5], [1.5, -inf]])
    """

    mu: np.ndarray
    sigma: np.ndarray
    partners: np.ndarray = None  # type: ignore[assignment]  # every pair when None
    beta: float = BETA
    spread: np.ndarray | None = None

    def __post_init__(self) -> None:
        mu = np.asarray(self.mu, dtype=np.float64)
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", np.asarray(self.sigma, dtype=np.float64))
        if self.partners is None:
            object.__setattr__(self, "partners", ~np.eye(len(mu), dtype=bool))

    @property
    def upper(self) -> np.ndarray:
        out: np.ndarray = self.mu + self.beta * self.sigma
        return out

    @property
    def lower(self) -> np.ndarray:
        out: np.ndarray = self.mu - self.beta * self.sigma
        return out

    @property
    def among(self) -> np.ndarray:
        """The completions with an available partner."""
        return np.flatnonzero(self.partners.any(axis=1))

    def partners_of(self, i: int) -> np.ndarray:
        return np.flatnonzero(self.partners[i])

    def masked(self, score: np.ndarray) -> np.ndarray:
        """``score`` with unavailable pairs at -inf."""
        return np.where(self.partners, score, -np.inf)

    def best_ordered(self, score: np.ndarray, among: np.ndarray | None = None) -> tuple[int, int]:
        """The available ordered pair (i, j) of largest ``score[i, j]``, the first row-major
        (only the pairs where ``among`` is True, when given)."""
        allowed = self.partners if among is None else self.partners & among
        flat = int(np.argmax(np.where(allowed, score, -np.inf)))
        return flat // score.shape[1], flat % score.shape[1]

    def thompson(self, rng: np.random.Generator, *, reverse: bool = False) -> int:
        """argmax over :attr:`among` of +-mu + beta z sigma, z ~ U(-1, 1) for every completion
        (-mu with ``reverse``: a draw of the worst)."""
        z = rng.uniform(-1.0, 1.0, size=self.mu.shape[0])
        value = (-self.mu if reverse else self.mu) + self.beta * z * self.sigma
        among = self.among
        return int(among[int(np.argmax(value[among]))])

    def optimistic_gap(self) -> np.ndarray:
        """(m, m) u_i - l_j (with ``spread``, mu_i - mu_j + beta S_ij), -inf off the pairs."""
        if self.spread is not None:
            gap = self.mu[:, None] - self.mu[None, :] + self.beta * self.spread
        else:
            gap = self.upper[:, None] - self.lower[None, :]
        return self.masked(gap)

    def difference_width(self) -> np.ndarray:
        """(m, m) width S_ij of mu_i - mu_j: sigma_i + sigma_j, or ``spread``."""
        if self.spread is not None:
            return self.spread
        width: np.ndarray = self.sigma[:, None] + self.sigma[None, :]
        return width

    def difference_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(m, m) lower and upper bounds of mu_i - mu_j: D -+ beta S_ij."""
        gap = self.mu[:, None] - self.mu[None, :]
        width = self.difference_width()
        return gap - self.beta * width, gap + self.beta * width

    def undominated(self) -> np.ndarray:
        """The completions no partner is surely better than, UCB_ij > 0 for every available j
        (every completion with a partner when none is)."""
        ucb = self.difference_bounds()[1]
        among = self.among
        kept = [i for i in among if (ucb[i, self.partners[i]] > 0).all()]
        return np.array(kept, dtype=np.int64) if kept else among

    def interval_width(self) -> np.ndarray:
        """(m, m) sigmoid(u_i - l_j) - sigmoid(l_i - u_j), the width of the confidence interval
        on the preference probability; with ``spread``, sigmoid(D + beta S) - sigmoid(D - beta
        S) for D = mu_i - mu_j."""
        if self.spread is not None:
            gap = self.mu[:, None] - self.mu[None, :]
            spread = self.beta * self.spread
            widths: np.ndarray = _sigmoid(gap + spread) - _sigmoid(gap - spread)
            return widths
        upper, lower = self.upper, self.lower
        width: np.ndarray = _sigmoid(upper[:, None] - lower[None, :]) - _sigmoid(
            lower[:, None] - upper[None, :]
        )
        return width


# one prompt's rule: rule(prompt, rng) -> (i, j), an available pair of it
Rule = Callable[[Completions, np.random.Generator], tuple[int, int]]


class FieldRule(NamedTuple):
    """A rule of the field as the registry sees it: the rule, whether it reads the model's
    uncertainty, and its one-line summary."""

    rule: Rule
    uncertain: bool
    summary: str


# name -> FieldRule, in the order the rules are defined below
RULES: dict[str, FieldRule] = {}


def _field_rule(name: str, summary: str, *, uncertain: bool) -> Callable[[Rule], Rule]:
    """Enter the decorated rule in :data:`RULES` under ``name``."""

    def enter(rule: Rule) -> Rule:
        RULES[name] = FieldRule(rule, uncertain, summary)
        return rule

    return enter


@_field_rule("max-min", "per prompt: best against worst predicted completion", uncertain=False)
def max_min(prompt: Completions, rng: np.random.Generator) -> tuple[int, int]:
    """Best against worst predicted completion of one prompt.

    >>> max_min(Completions([0.5, 2.0, -1.0], [0.0] * 3), np.random.default_rng(0))
    (1, 2)
    """
    among = prompt.among
    i = int(among[int(np.argmax(prompt.mu[among]))])
    options = prompt.partners_of(i)
    return i, int(options[int(np.argmin(prompt.mu[options]))])


@_field_rule(
    "ultrafeedback",
    "per prompt: the best of 4 random completions against a random other (UltraFeedback)",
    uncertain=False,
)
def ultrafeedback(prompt: Completions, rng: np.random.Generator) -> tuple[int, int]:
    """UltraFeedback's rule on one prompt: the best of 4 random completions against a random
    one of the other three.

    >>> ultrafeedback(Completions([0.5, 2.0], [0.0, 0.0]), np.random.default_rng(0))
    (1, 0)
    """
    among = prompt.among
    drawn = rng.choice(among, size=min(4, len(among)), replace=False)
    i = int(drawn[int(np.argmax(prompt.mu[drawn]))])
    others = np.array(
        [o for o in drawn.tolist() if o != i and prompt.partners[i, o]], dtype=np.int64
    )
    if len(others) == 0:
        others = prompt.partners_of(i)
    return i, _uniform(others, rng)


def _thompson_pair(
    prompt: Completions, rng: np.random.Generator, *, reverse: bool, redraws: int
) -> tuple[int, int]:
    i = prompt.thompson(rng)
    j = prompt.thompson(rng, reverse=reverse)
    for _ in range(redraws):
        if prompt.partners[i, j]:
            break
        j = prompt.thompson(rng, reverse=reverse)
    if not prompt.partners[i, j]:
        j = _uniform(prompt.partners_of(i), rng)
    return i, j


@_field_rule("dts", "per prompt: double Thompson sampling (ActiveUltraFeedback)", uncertain=True)
def dts(prompt: Completions, rng: np.random.Generator) -> tuple[int, int]:
    """Double Thompson sampling on one prompt (see the module docstring).

    >>> dts(Completions([0.0, 1.0, 2.0], [0.0] * 3), np.random.default_rng(0))[0]
    2
    """
    return _thompson_pair(prompt, rng, reverse=False, redraws=_DTS_REDRAWS)


@_field_rule(
    "drts",
    "per prompt: double reverse Thompson sampling (ActiveUltraFeedback)",
    uncertain=True,
)
def drts(prompt: Completions, rng: np.random.Generator) -> tuple[int, int]:
    """Double reverse Thompson sampling on one prompt: i the best draw, j the worst.

    >>> drts(Completions([0.0, 1.0, 2.0], [0.0] * 3), np.random.default_rng(0))
    (2, 0)
    """
    return _thompson_pair(prompt, rng, reverse=True, redraws=_DRTS_REDRAWS)


@_field_rule("deltaucb", "per prompt: largest optimistic reward gap u_i - l_j", uncertain=True)
def deltaucb(prompt: Completions, rng: np.random.Generator) -> tuple[int, int]:
    """The largest optimistic reward gap u_i - l_j on one prompt.

    >>> deltaucb(Completions([0.0, 0.1, 0.2], [1.0, 0.0, 0.5]), np.random.default_rng(0))
    (2, 0)
    """
    return prompt.best_ordered(prompt.optimistic_gap())


@_field_rule("infomax", "per prompt: widest confidence interval on the preference", uncertain=True)
def infomax(prompt: Completions, rng: np.random.Generator) -> tuple[int, int]:
    """The widest confidence interval on the preference probability on one prompt.

    >>> infomax(Completions([0.0, 0.0, 3.0], [0.1, 1.0, 1.0]), np.random.default_rng(0))
    (0, 1)
    """
    # the width is symmetric in i and j: the pair is taken with i < j
    upper_triangle = np.triu(np.ones_like(prompt.partners), k=1)
    return prompt.best_ordered(prompt.interval_width(), upper_triangle)


@_field_rule(
    "maxminlcb",
    "per prompt: the surest winner against its closest competitor (lower bounds)",
    uncertain=True,
)
def maxminlcb(prompt: Completions, rng: np.random.Generator) -> tuple[int, int]:
    """The completion most surely better than every other, against its closest competitor.

    >>> maxminlcb(Completions([0.0, 2.0, 1.0], [0.1] * 3), np.random.default_rng(0))
    (1, 2)
    """
    lcb = prompt.difference_bounds()[0]
    candidates = prompt.undominated()
    worst = np.array([lcb[i, prompt.partners[i]].min() for i in candidates])
    i = _near_best(candidates, worst, rng)
    options = prompt.partners_of(i)
    return i, _near_best(options, -lcb[i, options], rng)  # the smallest LCB_ij


@_field_rule("infogain", "per prompt: a Thompson draw against its widest interval", uncertain=True)
def infogain(prompt: Completions, rng: np.random.Generator) -> tuple[int, int]:
    """i by a Thompson draw, j its partner of the widest preference interval.

    >>> infogain(Completions([0.0, 5.0, 4.0], [0.0, 0.0, 1.0]), np.random.default_rng(0))
    (1, 2)
    """
    i = prompt.thompson(rng)
    options = prompt.partners_of(i)
    width = prompt.interval_width()[i, options]
    return i, int(options[int(np.argmax(width))])


@_field_rule(
    "deltaquantile",
    "per prompt: the pair at the top 5% of optimistic gaps u_i - l_j",
    uncertain=True,
)
def deltaquantile(prompt: Completions, rng: np.random.Generator) -> tuple[int, int]:
    """The pair at the ``QUANTILE`` rank of the optimistic gaps u_i - l_j (a window of
    ``EPSILON`` either side), the one whose i has the largest upper bound.

    >>> prompt = Completions([0.0, 1.0, 2.0, 3.0], [0.0] * 4)  # 12 ordered pairs: rank 0
    >>> deltaquantile(prompt, np.random.default_rng(0))
    (3, 0)
    """
    gap = prompt.optimistic_gap().reshape(-1)
    available = np.flatnonzero(prompt.partners.reshape(-1))
    ranked = available[np.argsort(-gap[available], kind="stable")]
    count = len(ranked)
    start = min(int(count * max(0.0, QUANTILE - EPSILON)), count - 1)
    end = min(max(int(count * min(1.0, QUANTILE + EPSILON)), start + 1), count)
    window = ranked[start:end]
    m = prompt.partners.shape[1]
    best = int(window[int(np.argmax(prompt.upper[window // m]))])
    return best // m, best % m


@_field_rule(
    "rucb",
    "per prompt: a champion not surely beaten against its best optimistic challenger (RUCB)",
    uncertain=True,
)
def rucb(prompt: Completions, rng: np.random.Generator) -> tuple[int, int]:
    """Relative upper confidence bound on one prompt: a champion drawn from the completions
    no other is surely better than, against the completion of largest UCB against it.

    >>> prompt = Completions([0.0, 3.0, 2.5], [0.1] * 3)  # 1 alone is not surely beaten
    >>> rucb(prompt, np.random.default_rng(0))
    (1, 2)
    """
    ucb = prompt.difference_bounds()[1]
    champion = _uniform(prompt.undominated(), rng)
    options = prompt.partners_of(champion)
    return champion, _near_best(options, ucb[options, champion], rng)


@_field_rule(
    "ids",
    "per prompt: information-directed sampling, the greedy completion against a challenger",
    uncertain=True,
)
def ids(prompt: Completions, rng: np.random.Generator) -> tuple[int, int]:
    """Information-directed sampling on one prompt: the greedy completion against the
    challenger of smallest information ratio (regret squared over information gain).

    >>> ids(Completions([0.0, 3.0, 2.9, 2.8], [0.1, 0.1, 0.1, 1.0]), np.random.default_rng(0))
    (1, 3)
    """
    candidates = prompt.undominated()
    greedy = _near_best(candidates, prompt.mu[candidates], rng)
    gap = prompt.upper[candidates].max() - prompt.mu
    options = np.intersect1d(prompt.partners_of(greedy), candidates)
    if len(options) == 0:
        options = prompt.partners_of(greedy)
    p = np.arange(1, PROBABILITY_GRID + 1) / PROBABILITY_GRID
    regret = (1.0 - p)[None, :] * gap[greedy] + p[None, :] * gap[options][:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # log(1 + S^2 / rho^2) without squaring S (finite for any finite width)
        information = np.logaddexp(
            0.0, 2.0 * np.log(prompt.difference_width()[greedy, options]) - np.log(RHO2)
        )
        ratio = regret**2 / (p[None, :] * information[:, None])
    # no information, or a regret beyond float64 (its square, or 0 x inf at p = 1): infinite
    ratio = np.where((information[:, None] > 0) & ~np.isnan(ratio), ratio, np.inf)
    return greedy, _near_best(options, -ratio.min(axis=1), rng)


def moments(inputs: SelectionInputs) -> tuple[np.ndarray, np.ndarray]:
    """(n,) mean reward mu and uncertainty sigma of every response: the ensemble's mean and
    standard deviation over members (zeros for one member), or with ``uncertainty="laplace"``
    sigma_i = sqrt(phi_i^T Sigma phi_i) of the Laplace posterior.

    Examples
    --------
    >>> import torch
    >>> from activerm_fast.selection.api import validated
    >>> inputs = validated(
    ...     "dts", features=torch.zeros(3, 2), pairs=[[0, 1]], k=1,
    ...     rewards=[[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]], prompt_ids=[0, 0, 0],
    ... )
    >>> [m.tolist() for m in moments(inputs)]
    [[1.0, 1.0, 1.0], [1.4142135623730951, 0.0, 1.4142135623730951]]
    """
    assert inputs.rewards is not None
    rewards = inputs.rewards.double()
    mu = rewards.mean(dim=0)
    if inputs.uncertainty == "laplace":
        from ..model import laplace

        sigma = laplace.reward_variance(inputs.features, inputs.laplace_covariance).sqrt()
    elif rewards.shape[0] < 2:
        sigma = torch.zeros_like(mu)
    else:
        sigma = rewards.std(dim=0)
    return mu.cpu().numpy(), sigma.cpu().numpy()


def choose(
    inputs: SelectionInputs, k: int, rule: Rule, *, beta: float = BETA
) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions and rows of the ``k`` pairs ``rule`` picks, prompt by prompt in a seeded
    random order (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast.selection.api import validated
    >>> inputs = validated(
    ...     "max-min", features=np.zeros((4, 2)), pairs=[[0, 1], [2, 3], [0, 2]], k=2,
    ...     rewards=[0.0, 1.0, 2.0, 3.0], prompt_ids=[0, 0, 1, 1],
    ... )
    >>> sorted(choose(inputs, 2, max_min)[0].tolist())  # never the cross-prompt pair 2
    [0, 1]
    """
    positions, rows_of = inputs.pool.everything(inputs.pairs, inputs.available)
    pairs = rows_of.long().cpu().numpy()
    held = positions.cpu().numpy()
    if inputs.prompt_of is None:  # no prompts given: the whole pool is one prompt
        group = np.zeros(len(pairs), dtype=np.int64)
    else:
        prompt_of = inputs.prompt_of.cpu().numpy()
        group = prompt_of[pairs[:, 0]] if len(pairs) else np.zeros(0, np.int64)
        within = group == prompt_of[pairs[:, 1]] if len(pairs) else np.zeros(0, bool)
        pairs, held, group = pairs[within], held[within], group[within]
    if k > 0 and len(pairs) == 0:
        raise ValueError(
            f"strategy {inputs.strategy!r} chooses pairs within a prompt; the pool has no "
            "available within-prompt pair (build one with pairs.within_prompt, --pool within)"
        )
    order_by_group = np.argsort(group, kind="stable")
    groups, starts = np.unique(group[order_by_group], return_index=True)
    ends = np.append(starts[1:], len(order_by_group))
    mu, sigma = moments(inputs)
    pairwise = _difference_widths(inputs) if inputs.uncertainty == "laplace" else None
    tables = []
    for at in range(len(groups)):
        members = order_by_group[starts[at] : ends[at]]
        rows = np.unique(pairs[members].reshape(-1))
        if len(rows) > _MAX_COMPLETIONS:
            raise ValueError(
                f"strategy {inputs.strategy!r}: one prompt has {len(rows)} completions in the "
                f"pool, more than {_MAX_COMPLETIONS}; pass prompt_ids to choose within prompts"
            )
        local = np.searchsorted(rows, pairs[members])
        partners = np.zeros((len(rows), len(rows)), dtype=bool)
        partners[local[:, 0], local[:, 1]] = partners[local[:, 1], local[:, 0]] = True
        where = {
            (int(a), int(b)): int(m) for (a, b), m in zip(local.tolist(), members, strict=True)
        }
        tables.append((rows, partners, where))
    rng = np.random.default_rng(inputs.seed)
    order = rng.permutation(len(groups))
    limit = None if inputs.quota is None else inputs.quota.limit
    used = np.zeros(len(groups), dtype=np.int64)
    chosen: list[int] = []
    while len(chosen) < k:
        before = len(chosen)
        for at in order.tolist():
            if len(chosen) == k:
                break
            rows, partners, where = tables[at]
            if (limit is not None and used[at] >= limit) or not partners.any():
                continue
            spread = None if pairwise is None else pairwise(rows)
            prompt = Completions(mu[rows], sigma[rows], partners, beta=beta, spread=spread)
            i, j = rule(prompt, rng)
            found = where.get((i, j), where.get((j, i)))
            assert found is not None and partners[i, j]
            partners[i, j] = partners[j, i] = False
            used[at] += 1
            chosen.append(found)
        if len(chosen) == before:
            quota = "" if limit is None else f" under per_prompt={limit}"
            raise ValueError(
                f"strategy {inputs.strategy!r}: the pool's available within-prompt pairs"
                f"{quota} allow only {len(chosen)} pairs, k = {k}"
            )
    device = inputs.pairs.device
    picked = np.asarray(chosen, dtype=np.int64)
    indices = torch.as_tensor(held[picked].astype(np.int64), device=device)
    picked_rows = torch.as_tensor(pairs[picked].reshape(-1, 2).astype(np.int64), device=device)
    return indices, picked_rows


def _difference_widths(inputs: SelectionInputs) -> Callable[[np.ndarray], np.ndarray]:
    """S_ij = sqrt(d_ij^T Sigma d_ij) among given rows, the Laplace width of a difference."""
    phi = inputs.features64.cpu().numpy()
    covariance = inputs.laplace_covariance.cpu().numpy()

    def widths(rows: np.ndarray) -> np.ndarray:
        f = phi[rows]
        gram = f @ covariance @ f.T
        variance = np.diag(gram)[:, None] + np.diag(gram)[None, :] - 2.0 * gram
        out: np.ndarray = np.sqrt(np.clip(variance, 0.0, None))
        return out

    return widths


def _strategy(name: str, rule: Rule) -> Callable[[SelectionInputs, int], Selection]:
    def run(inputs: SelectionInputs, k: int) -> Selection:
        return batch_selection(inputs, *choose(inputs, k, rule))

    run.__name__ = f"_{name.replace('-', '_')}"
    run.__doc__ = f"The {name!r} rule on every prompt of the pool (see the module docstring)."
    return run


for _name, (_rule, _uncertain, _summary) in RULES.items():
    register(
        _name,
        _summary,
        needs_rewards=True,
        needs_ensemble=_uncertain,
        needs_model=True,
        uses_prompt_ids=True,
    )(_strategy(_name, _rule))
