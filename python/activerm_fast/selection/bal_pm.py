"""BAL-PM, the Bayesian Active Learner for Preference Modeling.

Melo, Tigas, Abate & Gal (NeurIPS 2024), "Deep Bayesian Active Learning for Preference Modeling
in Large Language Models" (arXiv:2406.10023). Uncertainty alone keeps choosing redundant pairs
(near-identical prompts the model is unsure about); BAL-PM adds a bonus for prompts that raise
the entropy of the distribution of *acquired* prompts in the prompt-feature space, so the batch
also spreads over prompts. The batch is built greedily; pick t maximises

    score(pair) = MI(pair) + beta * sum over the pair's distinct prompts z of gain(z),

* MI: the BALD term, the mutual information between the pair's label and the ensemble member
  (:meth:`~activerm_fast._inputs.SelectionInputs.mutual_information`), in nats;
* gain(z) = (q / (N + 1)) log(rho_k(z) / sigma): the part of the Kozachenko-Leonenko estimate
  H = psi(N) - psi(k) + log c_q + (q / N) sum_i log rho_k(x_i) that differs between candidates
  when z joins the N acquired prompts (the estimate's constants are the same for every
  candidate; the change of the other points' neighbours is left out), in nats.
  rho_k(z) is the distance from z to its k-th nearest acquired prompt (the labelled pairs'
  prompts and those of the pairs picked so far in this batch, counted with multiplicity, with
  k lowered to N while fewer are acquired), q the prompt-feature dimension, sigma the prompts'
  root-mean-square distance to their mean (so the bonus does not depend on the features' unit).
  A prompt acquired k times or more has rho = 0: its ratio is floored at ``DISTANCE_FLOOR`` so
  the score stays finite and such prompts rank by MI below every other.

Defaults: k = ``NEIGHBOURS`` = 5 and beta = ``BETA`` = 1, i.e. one nat of prompt entropy weighs
as much as one nat of label information. They are this package's choice, not values taken
from the paper: a weight tuned in one LLM's feature space does not carry over to other
features, while both terms here are in nats. Prompt features are the caller's
``prompt_features`` (n, q), one row per response: the simulation and the annotation step
pass :meth:`~activerm_fast.data.Dataset.prompt_features`.
Without them (a bare :func:`~activerm_fast.selectors.select`, the sharded selection) every
response counts as its own prompt, placed at the model's feature of it: the bonus then spreads
the batch over the reward model's feature space instead of the prompts'.

Cost: the MI of every pair once, O(E P); rows are grouped into their m distinct prompts once,
O(n q log n), and each prompt's k nearest acquired prompts found once, O(m a q) for the a
distinct prompts of the labelled pairs (in blocks of ``_BLOCK`` prompts). Each pick then costs
O(m q + m k) to fold the picked pair's prompts into every prompt's k nearest distances (kept
sorted, never recomputed) and O(P) to rescore and take the best pair: one pass over the pairs
per pick, like the other greedy strategies, and no (P, q) array (``bench/bench_bal_pm.py``
times it against ``bald``).
"""

from __future__ import annotations

import math

import torch

from .._validation import positive_integer
from .inputs import SelectionInputs
from .pool import QuotaCount

__all__ = ["BETA", "DISTANCE_FLOOR", "NEIGHBOURS", "choose"]

BETA = 1.0
NEIGHBOURS = 5
DISTANCE_FLOOR = 1e-3
# prompts whose distances to the acquired prompts are computed in one (block, a) matrix
_BLOCK = 1024


def choose(
    inputs: SelectionInputs,
    k: int,
    *,
    beta: float = BETA,
    neighbours: int = NEIGHBOURS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions and rows of the ``k`` pairs BAL-PM picks, in the order picked."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise TypeError(f"beta must be a number, got {type(beta).__name__}")
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta}")
    neighbours = positive_integer(neighbours, "neighbours")
    pairs = inputs.pairs
    given = inputs.features if inputs.prompt_features is None else inputs.prompt_features
    points, prompt_of = torch.unique(given.double(), dim=0, return_inverse=True)
    # the bonus is invariant to the features' unit: bring them near 1 so no square overflows
    largest = float(points.abs().max()) if points.numel() else 0.0
    points = points / largest if largest > 0 else points
    first, second = prompt_of[pairs[:, 0].long()], prompt_of[pairs[:, 1].long()]
    two_prompts = first != second
    information = inputs.mutual_information()
    sigma = float((points - points.mean(dim=0)).square().sum(dim=1).mean().sqrt())
    scale = sigma if sigma > 0 else 1.0  # one distinct prompt: every distance is 0
    counts = torch.zeros(points.shape[0], dtype=torch.int64, device=points.device)
    if inputs.labelled is not None and inputs.labelled.shape[0]:
        left = prompt_of[inputs.labelled[:, 0].long()]
        right = prompt_of[inputs.labelled[:, 1].long()]
        counts.index_add_(0, left, torch.ones_like(left))
        counts.index_add_(0, right[right != left], torch.ones_like(right[right != left]))
    nearest = _nearest_acquired(points, counts, neighbours)
    acquired = int(counts.sum())
    available = inputs.available.clone()
    chosen: list[int] = []
    rows: list[torch.Tensor] = []
    count = None if inputs.quota is None else QuotaCount(inputs.quota, pairs)
    for _ in range(k):
        if count is not None:
            count.check_room(int(inputs.pool.total(available.sum())), len(chosen), k)
        gain = _entropy_gain(nearest, acquired, points.shape[1], scale)
        bonus = gain[first] + torch.where(two_prompts, gain[second], 0.0)
        score = torch.where(available, information + beta * bonus, -torch.inf)
        position, row = inputs.pool.best(pairs, score)
        chosen.append(position)
        rows.append(row)
        local = inputs.pool.local(position)
        if local is not None:
            available[local] = False
        if count is not None:
            available[count.take(row)] = False
        new = prompt_of[row.long()].unique()
        for prompt in new:
            distance = (points - points[prompt]).square().sum(dim=1).sqrt()
            nearest = _insert(nearest, distance)
        acquired += new.numel()
    indices = torch.tensor(chosen, dtype=torch.int64, device=pairs.device)
    return indices, torch.stack(rows) if rows else pairs[:0]


def _entropy_gain(nearest: torch.Tensor, acquired: int, dim: int, scale: float) -> torch.Tensor:
    """(m,) each prompt's gain (q / (N + 1)) log(rho_k / sigma), k lowered to N; 0 when N = 0."""
    if acquired == 0:
        return torch.zeros(nearest.shape[0], dtype=torch.float64, device=nearest.device)
    rho = nearest[:, min(nearest.shape[1], acquired) - 1]
    ratio = (rho / scale).clamp_min(DISTANCE_FLOOR)
    return dim / (acquired + 1) * torch.log(ratio)


def _insert(nearest: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """The k smallest of each row's k sorted distances and one new distance, sorted."""
    merged = torch.cat([nearest, distance[:, None]], dim=1)
    return torch.topk(merged, nearest.shape[1], dim=1, largest=False, sorted=True).values


def _nearest_acquired(points: torch.Tensor, counts: torch.Tensor, k: int) -> torch.Tensor:
    """(m, k) each point's k smallest distances to the acquired points, each acquired point
    counted ``counts`` times, ascending; inf where fewer than k are acquired."""
    m = points.shape[0]
    nearest = torch.full((m, k), torch.inf, dtype=torch.float64, device=points.device)
    acquired = torch.nonzero(counts).reshape(-1)
    if acquired.numel() == 0:
        return nearest
    take = min(k, acquired.numel())
    multiplicity = counts[acquired].clamp(max=k)
    wanted = torch.arange(1, k + 1, device=points.device)
    for block in torch.split(torch.arange(m, device=points.device), _BLOCK):
        distance = torch.cdist(points[block], points[acquired])
        smallest, which = torch.topk(distance, take, dim=1, largest=False, sorted=True)
        # the j-th smallest distance with multiplicity is the first whose running count >= j
        ends = multiplicity[which].cumsum(dim=1)
        slot = torch.searchsorted(ends, wanted.expand(block.numel(), k).contiguous())
        padded = torch.cat([smallest, torch.full_like(smallest[:, :1], torch.inf)], dim=1)
        nearest[block] = torch.gather(padded, 1, slot)
    return nearest
