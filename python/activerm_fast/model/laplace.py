"""A Bayesian last layer for the reward head: the Laplace approximation of theta's posterior.

With the reward r(x) = theta^T phi(x) and Bradley-Terry labels, the negative log posterior of
theta under a Gaussian prior N(0, I / lambda) has the Hessian, at the fitted theta,

    H = lambda I + sum over the labelled pairs l of w_l d_l d_l^T,

d_l = phi_i - phi_j and w_l = p_l (1 - p_l), p_l = sigmoid(r_i - r_j): the prior plus the Fisher
information of the labelled pairs, which the package computes as a scatter
(:func:`~activerm_fast.fisher_matrix`). The Laplace posterior is N(theta, Sigma) with
Sigma = H^-1, so the reward *difference* of a pair k has the variance d_k^T Sigma d_k (not the
sum of two independent widths), and a response's reward the variance phi^T Sigma phi.
(rewarduq's Bayesian linear head, lasgroup/rewarduq, is this model.)

In a selection (``select(..., uncertainty="laplace")``) the rewards given are the posterior
mean, the design's features (the first member's) are phi, and lambda is the selection's ridge;
BALD and BAL-PM then integrate the label's entropy over the Gaussian reward difference
(:func:`gaussian_mutual_information`), and the per-prompt rules take sigma_i = sqrt(phi_i^T Sigma
phi_i).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import _launch
from .._threads import one_thread_for
from ..selection import design as _design

__all__ = [
    "difference_variance",
    "gaussian_mutual_information",
    "laplace_covariance",
    "reward_variance",
]

# Gauss-Hermite nodes of the expectations over a Gaussian reward difference
_NODES = 96


def laplace_covariance(
    features: torch.Tensor, labelled: torch.Tensor | None, rewards: torch.Tensor, ridge: float
) -> torch.Tensor:
    """Sigma = (ridge I + sum_l w_l d_l d_l^T)^-1, float64 (d, d), w_l the Bradley-Terry Fisher
    weight of labelled pair l at the (E, n) ``rewards`` (their ensemble mean weight).

    Examples
    --------
    >>> import torch
    >>> features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    >>> rewards = torch.zeros(1, 3)
    >>> sigma = laplace_covariance(features, torch.tensor([[0, 2]]), rewards, 1.0)
    >>> [round(x, 12) for x in sigma.diagonal().tolist()]  # 1 / (1 + 1/4) where compared
    [0.8, 1.0]
    """
    d = features.shape[1]
    information = torch.zeros((d, d), dtype=torch.float64, device=features.device)
    if labelled is not None and labelled.shape[0]:
        weights = _launch.fisher_weights(rewards, labelled)
        information = _design.fisher_matrix(features, labelled, weights)
    precision = information + ridge * torch.eye(d, dtype=torch.float64, device=features.device)
    with one_thread_for(d):
        lower = torch.linalg.cholesky(precision)
        covariance: torch.Tensor = torch.cholesky_inverse(lower)
    return 0.5 * (covariance + covariance.T)


def difference_variance(
    features: torch.Tensor, pairs: torch.Tensor, covariance: torch.Tensor
) -> torch.Tensor:
    """(P,) d_k^T Sigma d_k, the posterior variance of each pair's reward difference, by the
    pair kernel on Phi Sigma (no (P, d) array).

    Examples
    --------
    >>> import torch
    >>> features = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> difference_variance(features, torch.tensor([[0, 1]]), torch.eye(2) * 2).tolist()
    [4.0]
    """
    projected = _launch.project_features(features, covariance.double().contiguous())
    return _launch.pair_quadform(features, pairs, projected, 1.0)


def reward_variance(features: torch.Tensor, covariance: torch.Tensor) -> torch.Tensor:
    """(n,) phi_i^T Sigma phi_i, the posterior variance of each response's reward.

    Examples
    --------
    >>> import torch
    >>> reward_variance(torch.tensor([[1.0, 1.0]]), torch.eye(2)).tolist()
    [2.0]
    """
    projected = _launch.project_features(features, covariance.double().contiguous())
    variance = (projected * features.double()).sum(dim=1).clamp_min(0.0)
    return variance


def gaussian_mutual_information(mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """The BALD term of a Bradley-Terry label whose logit is N(mean, variance): H(E p) - E H(p)
    with p = sigmoid(logit), in nats, by Gauss-Hermite quadrature (``_NODES`` nodes).

    Examples
    --------
    >>> import torch
    >>> info = gaussian_mutual_information(torch.tensor([0.0, 0.0]), torch.tensor([0.0, 4.0]))
    >>> round(float(info[0]), 12), bool(info[1] > 0)
    (0.0, True)
    """
    nodes, weights = np.polynomial.hermite.hermgauss(_NODES)
    x = torch.as_tensor(nodes, dtype=torch.float64, device=mean.device)
    w = torch.as_tensor(weights / math.sqrt(math.pi), dtype=torch.float64, device=mean.device)
    logits = mean.double()[:, None] + torch.sqrt(2.0 * variance.double().clamp_min(0))[:, None] * x
    p = torch.sigmoid(logits)
    softplus = torch.nn.functional.softplus
    entropy = p * softplus(-logits) + (1 - p) * softplus(logits)
    mean_p = (p * w).sum(dim=1)
    entropy_of_mean = -torch.special.xlogy(mean_p, mean_p) - torch.special.xlogy(
        1 - mean_p, 1 - mean_p
    )
    information: torch.Tensor = (entropy_of_mean - (entropy * w).sum(dim=1)).clamp_min(0.0)
    return information
