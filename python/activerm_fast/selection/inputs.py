"""The validated inputs of one selection, shared by every strategy."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from functools import cached_property

import torch

from .. import _launch
from ..data.implicit_pool import positions_of
from . import design as _design
from .pool import WHOLE_POOL, Pool
from .ridge import relative_ridge

# Below this reward gap every Fisher weight sigma(gap)(1 - sigma(gap)), about e^-|gap|, is a
# normal float64 (e^-700 ~ 1e-304); from about 745 on it rounds to 0.
_WEIGHTS_SURELY_POSITIVE = 700.0


@dataclass(frozen=True, kw_only=True)
class SelectionInputs:
    """Tensors on one device, validated once by :func:`~activerm_fast.selectors.select`.

    ``members`` holds the (n, d) features of each ensemble member, (1, n, d) when one matrix is
    shared; strategies that use one model use the first. ``rewards`` is (E, n). ``excluded``
    marks the candidates that are already labelled; ``strategy`` names the caller in errors.
    ``prompt_features`` (n, q) is the feature of the prompt each response answers (None when
    not given). ``lazy`` is the greedy sweep the greedy strategies ask for
    (:func:`~activerm_fast.greedy_logdet`). ``pool`` answers what a strategy asks of the whole
    candidate pool: this process's pairs are all of it, or one shard
    (:mod:`activerm_fast.distributed`), in which case ``pairs`` and ``excluded`` are the
    shard's and every other field the whole pool's. ``quota`` (None: none) allows at most
    ``quota.limit`` chosen pairs per prompt (:class:`~activerm_fast.selection.design.PromptQuota`).
    ``generated`` is set for an implicit pool (:class:`~activerm_fast.ImplicitPool`): its
    pairs, computed where needed; ``pairs`` is then empty and ``excluded`` None, or the
    positions that hold a labelled pair once :meth:`excluding_labelled` has found them.
    """

    members: torch.Tensor  # (1 or E, n, d)
    pairs: torch.Tensor  # (P, 2)
    rewards: torch.Tensor | None  # (E, n)
    labelled: torch.Tensor | None  # (M, 2)
    excluded: torch.Tensor | None  # (P,)
    ridge: float
    seed: int
    strategy: str
    prompt_features: torch.Tensor | None = None  # (n, q)
    lazy: bool | str = "auto"
    pool: Pool = WHOLE_POOL
    ridge_mode: str = "absolute"
    quota: _design.PromptQuota | None = None  # at most quota.limit chosen pairs per prompt
    prompt_of: torch.Tensor | None = None  # (n,) int64 prompt of each response, 0..prompts-1
    uncertainty: str = "ensemble"  # "ensemble" (members' spread) or "laplace" (Bayesian head)
    generated: _launch.GeneratedPairs | None = None  # an implicit pool's pairs

    @property
    def candidates(self) -> _launch.Pairs:
        """The pool's pairs held here: stored, or an implicit pool's."""
        return self.pairs if self.generated is None else self.generated

    def greedy_weights(self, k: int, *, per_member: bool) -> _launch.Weights:
        """The weights of the greedy engine over :attr:`candidates`, (P, E) or computed: the
        ensemble mean (one column) or each member's (``per_member``); all 1 without rewards.
        With rewards the dense sweep computes them where :func:`~activerm_fast._launch.
        weights_in_sweep` says so (no (P, E) array stored); they are stored elsewhere, and
        wherever the lazy sweep may run for ``k`` steps (its records copy them). Without
        rewards they are :class:`~activerm_fast._launch.UnitWeights`, read from no array."""
        pairs = self.candidates
        if self.rewards is None:
            return _launch.UnitWeights(1)
        members = self.rewards.shape[0] if per_member else 1
        lazy = isinstance(pairs, torch.Tensor) and _launch.lazy_may_run(
            pairs.shape[0], k, members, self.lazy, pairs.device
        )
        if lazy or not _launch.weights_in_sweep(pairs.shape[0], members, pairs.device):
            if not per_member:
                return _design.per_pair(pairs, self.weights)[:, None]
            columns = [
                _design.per_pair(pairs, functools.partial(self.weights, member=e))
                for e in range(members)
            ]
            return torch.stack(columns, dim=1)
        rewards = self.rewards.double().contiguous()
        return _launch.RewardRows(rewards, 1 if per_member else rewards.shape[0], members)

    def resolved(self) -> SelectionInputs:
        """These inputs with lambda itself as ``ridge``: with ``ridge_mode="relative"`` the
        ``ridge`` given is c in lambda = c tr(F_L)/d, summed over the whole ``pool``
        (:func:`~activerm_fast.selection.ridge.relative_ridge`)."""
        if self.ridge_mode != "relative":
            return self
        lam = relative_ridge(
            self.ridge,
            self.features,
            self.pairs,
            rewards=self.rewards,
            labelled=self.labelled,
            excluded=self.excluded,
            total=self.pool.total,
        )
        return replace(self, ridge=lam, ridge_mode="absolute")

    def excluding_labelled(self) -> SelectionInputs:
        """These inputs with ``excluded`` the positions of a generated pool that hold a
        labelled pair (:func:`~activerm_fast.data.implicit_pool.positions_of`, which reads
        the positions whose first response is a labelled pair's), for the strategies that
        mask them; ``random`` skips a labelled pair where it draws one instead, at no pass over
        the pool. Stored pairs have their mask from the start."""
        if self.generated is None or self.labelled is None or not self.labelled.shape[0]:
            return self
        found = positions_of(self.generated, self.labelled, self.generated.n)
        return replace(self, excluded=found)

    @property
    def features(self) -> torch.Tensor:
        return self.members[0]

    @cached_property
    def features64(self) -> torch.Tensor:
        """The first member's features as float64, converted once."""
        return self.features.double()

    def member_features(self, member: int | None) -> torch.Tensor:
        """Member ``member``'s features (all members share them when one matrix was given)."""
        return self.members[0 if member is None or self.members.shape[0] == 1 else member]

    @property
    def available(self) -> torch.Tensor:
        """(P,) True for the candidates that may be chosen."""
        if self.excluded is None:
            return torch.ones(self.pairs.shape[0], dtype=torch.bool, device=self.pairs.device)
        return ~self.excluded

    def weights(self, pairs: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """Fisher weights of ``pairs``: the ensemble mean, or one member's; 1 without rewards."""
        if self.rewards is None:
            return torch.ones(pairs.shape[0], dtype=torch.float64, device=pairs.device)
        rewards = self.rewards if member is None else self.rewards[member : member + 1]
        return _launch.fisher_weights(rewards, pairs)

    def check_weights_representable(self, k: int) -> None:
        """A ValueError where fewer than ``k`` available candidates have a Fisher weight (the
        ensemble mean) that does not underflow float64, and the k picks must rank the others:
        their scores w d^T F^-1 d would all be 0, and those picks ties in index order. Free
        when the rewards span less than :data:`_WEIGHTS_SURELY_POSITIVE`; else one pass over
        the pairs, chunk by chunk for a generated pool, its counts summed over the whole
        ``pool``."""
        if self.rewards is None or not self.rewards.numel():
            return
        low, high = (x.item() for x in torch.aminmax(self.rewards.double()))
        if high - low < _WEIGHTS_SURELY_POSITIVE:
            return
        pairs = self.candidates
        available = torch.ones(pairs.shape[0], dtype=torch.bool, device=pairs.device)
        if self.excluded is not None:
            available[self.excluded] = False  # a mask, or a generated pool's positions
        counts = torch.zeros(2, dtype=torch.float64, device=pairs.device)
        chunks = (
            [(0, pairs)]
            if isinstance(pairs, torch.Tensor)
            else _launch.generated_chunks(pairs, _design.GENERATED_CHUNK)
        )
        for start, rows in chunks:
            mine = available[start : start + len(rows)]
            counts[0] += ((self.weights(rows) > 0) & mine).sum()
            counts[1] += mine.sum()
        positive, count = (int(x) for x in self.pool.total(counts).tolist())
        if positive < k < count:  # picks past the positive weights would be index order
            which, lower = "every available pair", ""
            if positive:
                which = f"all but {positive} of the {count} available pairs"
                lower = f"lower k = {k} to {positive}, "
            raise ValueError(
                f"the Fisher weight sigma(gap)(1 - sigma(gap)) of {which} underflows float64 "
                f"(rewards {low:.3g} .. {high:.3g}, over 700 apart on those pairs): {lower}"
                "rescale the rewards, or use xtx, which needs none"
            )

    def has_past(self, past: bool) -> bool:
        return past and self.labelled is not None and self.labelled.shape[0] > 0

    def information(self, past: bool, member: int | None = None) -> torch.Tensor:
        """With ``past``, the labelled pairs' sum of w d d^T at the current rewards (of the
        ensemble mean weights, or of one member's features and weights); else zeros."""
        features = self.member_features(member)
        d = features.shape[1]
        if not self.has_past(past):
            return torch.zeros((d, d), dtype=torch.float64, device=features.device)
        assert self.labelled is not None
        weights = self.weights(self.labelled, member)
        return _design.fisher_matrix(features, self.labelled, weights)

    def prior(self, past: bool, member: int | None = None) -> _design.Prior:
        """F0 = lambda I, plus with ``past`` the labelled pairs' information."""
        if not self.has_past(past):
            return _design.Prior.of_ridge(self.ridge, self.features.shape[1])
        what = "the Fisher information of the labelled pairs"
        return _design.Prior.of_information(self.information(past, member), self.ridge, what)

    def reward_gaps(self) -> torch.Tensor:
        """(E, P) r_i - r_j of every member."""
        assert self.rewards is not None
        r = self.rewards.double()
        return r[:, self.pairs[:, 0].long()] - r[:, self.pairs[:, 1].long()]

    @cached_property
    def laplace_covariance(self) -> torch.Tensor:
        """(d, d) the Laplace posterior covariance of the last layer on the first member's
        features: (lambda I + the labelled pairs' Fisher information at the rewards)^-1
        (:mod:`~activerm_fast.model.laplace`)."""
        from ..model import laplace

        assert self.rewards is not None
        return laplace.laplace_covariance(self.features, self.labelled, self.rewards, self.ridge)

    def mutual_information(self) -> torch.Tensor:
        """(P,) the BALD term: mutual information between a pair's label and the ensemble
        member, H(mean_e p_e) - mean_e H(p_e) with p_e = sigma(r_e,i - r_e,j), in nats; with
        ``uncertainty="laplace"`` the same over the Gaussian posterior of the reward
        difference, N(mean gap, d^T Sigma d)."""
        if self.uncertainty == "laplace":
            from ..model import laplace

            variance = laplace.difference_variance(
                self.features, self.pairs, self.laplace_covariance
            )
            return laplace.gaussian_mutual_information(self.reward_gaps().mean(dim=0), variance)
        gaps = self.reward_gaps()
        p = torch.sigmoid(gaps)
        # member entropies from the logits, so they stay exact where p rounds to 0 or 1
        softplus = torch.nn.functional.softplus
        member_entropy = p * softplus(-gaps) + (1 - p) * softplus(gaps)
        mean_p = p.mean(dim=0)
        entropy_of_mean = -torch.special.xlogy(mean_p, mean_p) - torch.special.xlogy(
            1 - mean_p, 1 - mean_p
        )
        information: torch.Tensor = entropy_of_mean - member_entropy.mean(dim=0)
        return information
