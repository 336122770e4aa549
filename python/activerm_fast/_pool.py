"""The validated inputs of one selection, shared by every strategy."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .kernels import PriorState, fisher_matrix64, prior_state, weights64


@dataclass(frozen=True)
class Pool:
    """Tensors on one device.

    ``members`` holds each ensemble member's (n, d) features (one entry when a single feature
    matrix was given); strategies that use one model use the first. ``rewards`` is (E, n).
    ``excluded`` marks the candidates that are already labelled.
    """

    members: tuple[torch.Tensor, ...]
    pairs: torch.Tensor  # (P, 2)
    rewards: torch.Tensor | None  # (E, n)
    labelled: torch.Tensor | None  # (M, 2)
    excluded: torch.Tensor | None  # (P,)
    ridge: float
    seed: int
    strategy: str

    @property
    def features(self) -> torch.Tensor:
        return self.members[0]

    def member_features(self, member: int | None) -> torch.Tensor:
        """Member ``member``'s features (all members share them when only one matrix was given)."""
        return self.members[0 if member is None or len(self.members) == 1 else member]

    def need_rewards(self) -> torch.Tensor:
        if self.rewards is None:
            raise ValueError(f"strategy {self.strategy!r} needs rewards, got rewards=None")
        return self.rewards

    def weights(self, pairs: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """Fisher weights of ``pairs``: the ensemble mean, or one member's; 1 without rewards."""
        if self.rewards is None:
            return torch.ones(pairs.shape[0], dtype=torch.float64, device=pairs.device)
        rewards = self.rewards if member is None else self.rewards[member : member + 1]
        return weights64(rewards, pairs)

    def has_past(self, past: bool) -> bool:
        return past and self.labelled is not None and self.labelled.shape[0] > 0

    def prior_matrix(self, past: bool, member: int | None = None) -> torch.Tensor:
        """F0 = lambda I, plus with ``past`` the labelled pairs' w d d^T at the current rewards
        (of the ensemble mean weights, or of one member's features and weights)."""
        features = self.member_features(member)
        d = features.shape[1]
        matrix = self.ridge * torch.eye(d, dtype=torch.float64, device=features.device)
        if self.has_past(past):
            matrix += fisher_matrix64(features, self.labelled, self.weights(self.labelled, member))
        return matrix

    def prior(self, past: bool, member: int | None = None) -> PriorState:
        """:meth:`prior_matrix`, factored (λI needs no factorisation)."""
        features = self.member_features(member)
        if not self.has_past(past):
            return prior_state(self.ridge, features)
        return prior_state(self.prior_matrix(past, member), features, "prior built from labelled")

    def reward_gaps(self) -> torch.Tensor:
        """(E, P) r_i - r_j of every member."""
        r = self.need_rewards().double()
        return r[:, self.pairs[:, 0].long()] - r[:, self.pairs[:, 1].long()]

    def top(self, score: torch.Tensor, k: int) -> torch.Tensor:
        """Positions of the k largest scores among available pairs, ties to the lowest index."""
        score = score.double().clone()
        if self.excluded is not None:
            score.masked_fill_(self.excluded, -torch.inf)
        return torch.sort(-score, stable=True).indices[:k]
