"""Typed wrappers around the compiled kernels: validate, pick the backend, call the extension.

Every function accepts NumPy arrays or torch tensors (float32/float64 features, int32/int64
pairs, rows ``(i, j)`` meaning "response i minus response j") and returns the same array
type as its first argument, in that argument's float dtype. Accumulation is float64 inside
the kernels whatever the input dtype. Kernels run where the data lives: CPU arrays on the
OpenMP backend, CUDA tensors on the CUDA backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import _validation as v
from .backends import backend_for, on_device, stream_for

__all__ = [
    "Selection",
    "pair_diff",
    "fisher_weights",
    "pair_quadform",
    "fisher_matrix",
    "greedy_logdet",
]

Array = Any  # np.ndarray or torch.Tensor


@dataclass(frozen=True)
class Selection:
    """Pairs chosen for labelling.

    ``indices`` are positions in the candidate ``pairs`` in the order chosen. ``gains`` are the
    log-det increments log(1 + w_k d_k^T F^-1 d_k) of each choice given the ones before it, and
    ``logdet`` is log det of the final design matrix F0 + sum over the chosen pairs.
    """

    indices: Array
    gains: Array
    logdet: float


def export(t: torch.Tensor, as_numpy: bool) -> Array:
    """Hand a result back as the caller's array type."""
    return t.cpu().numpy() if as_numpy else t


def _feature_args(f: torch.Tensor) -> dict[str, Any]:
    return {
        "features": f.data_ptr(),
        "features_double": f.dtype == torch.float64,
        "n": f.shape[0],
        "d": f.shape[1],
    }


def _pair_args(p: torch.Tensor) -> dict[str, Any]:
    return {"pairs": p.data_ptr(), "pairs_int64": p.dtype == torch.int64, "count": p.shape[0]}


# ---- float64 tensor-level kernels (validated inputs) used by the selectors --------------------


def quadforms64(
    f: torch.Tensor, p: torch.Tensor, projected: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """d_k^T A d_k for every pair, with ``projected`` = Phi A, or A = scale * I when None."""
    out = torch.empty(p.shape[0], dtype=torch.float64, device=f.device)
    if p.shape[0]:
        with on_device(f.device):
            backend_for(f.device).pair_quadform(
                **_feature_args(f),
                **_pair_args(p),
                projected=0 if projected is None else projected.data_ptr(),
                scale=scale,
                out=out.data_ptr(),
                stream=stream_for(f.device),
            )
    return out


def weights64(r: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Mean Bradley-Terry Fisher weight over the (E, n) reward rows, for every pair."""
    out = torch.empty(p.shape[0], dtype=torch.float64, device=r.device)
    if p.shape[0]:
        with on_device(r.device):
            backend_for(r.device, "rewards").fisher_weights(
                rewards=r.data_ptr(),
                rewards_double=r.dtype == torch.float64,
                members=r.shape[0],
                n=r.shape[1],
                **_pair_args(p),
                out=out.data_ptr(),
                stream=stream_for(r.device),
            )
    return out


def fisher_matrix64(f: torch.Tensor, p: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """sum_k w_k d_k d_k^T = Phi^T (L_w Phi), L_w the weighted Laplacian of the pair graph."""
    laplacian_phi = torch.empty(f.shape, dtype=torch.float64, device=f.device)
    with on_device(f.device):
        backend_for(f.device).laplacian_features(
            **_feature_args(f),
            **_pair_args(p),
            weights=0 if w is None else w.data_ptr(),
            out=laplacian_phi.data_ptr(),
            stream=stream_for(f.device),
        )
    # L_w Phi has zero column sums, so centring Phi changes nothing exactly but removes the
    # cancellation a large common offset in the features would cause.
    phi = f.double()
    matrix = (phi - phi.mean(dim=0)).T @ laplacian_phi
    return 0.5 * (matrix + matrix.T)


@dataclass(frozen=True)
class PriorState:
    """F0 factored: the matrix, F0^-1 and log det F0; ``ridge`` is lambda when F0 = lambda I."""

    matrix: torch.Tensor
    inverse: torch.Tensor
    logdet: float
    ridge: float | None

    def quadforms(self, f: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """d_k^T F0^-1 d_k for every pair: a scaled norm for lambda I, else via Phi F0^-1."""
        if self.ridge is not None:
            return quadforms64(f, p, None, 1.0 / self.ridge)
        return quadforms64(f, p, f.double() @ self.inverse, 1.0)


def prior_state(prior: Any, f: torch.Tensor, name: str = "prior") -> PriorState:
    """Validate F0 (a positive scalar lambda for lambda I, or an SPD (d, d) matrix); factor it."""
    d = f.shape[1]
    if isinstance(prior, (np.ndarray, torch.Tensor)) and getattr(prior, "ndim", 0) > 0:
        matrix = v.float_tensor(prior, name, (d, d), f.device).double()
        asymmetry = (matrix - matrix.T).abs().max().item()
        if asymmetry > 1e-10 * max(matrix.abs().max().item(), 1e-300):
            raise ValueError(f"{name} must be symmetric, got max |A - A^T| = {asymmetry:.3g}")
        factor, info = torch.linalg.cholesky_ex(matrix)
        if int(info) != 0:
            raise ValueError(
                f"{name} must be positive definite (Cholesky failed at column {int(info) - 1})"
            )
        inverse = torch.cholesky_inverse(factor)
        inverse = 0.5 * (inverse + inverse.T)
        logdet = 2.0 * torch.log(torch.diagonal(factor)).sum().item()
        return PriorState(matrix, inverse, logdet, None)
    ridge = v.positive_scalar(prior, name)
    identity = torch.eye(d, dtype=torch.float64, device=f.device)
    return PriorState(ridge * identity, identity / ridge, d * math.log(ridge), ridge)


def greedy64(
    f: torch.Tensor,
    p: torch.Tensor,
    k: int,
    w: torch.Tensor,
    start: PriorState,
    excluded: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Run the greedy kernel on validated inputs: (chosen indices, gains, final log det)."""
    device = f.device
    chosen = torch.empty(k, dtype=torch.int64, device=device)
    gains = torch.empty(k, dtype=torch.float64, device=device)
    if k == 0:
        return chosen, gains, start.logdet
    quadforms = start.quadforms(f, p)
    if excluded is not None:
        quadforms.masked_fill_(excluded, math.nan)
    backend = backend_for(device)
    scratch = torch.empty(
        max(int(backend.greedy_scratch_bytes(p.shape[0])), 1), dtype=torch.uint8, device=device
    )
    inverse = start.inverse.clone()
    projection = torch.empty(f.shape[0], dtype=torch.float64, device=device)
    direction = torch.empty(f.shape[1], dtype=torch.float64, device=device)
    difference = torch.empty(f.shape[1], dtype=torch.float64, device=device)
    with on_device(device):
        backend.greedy_logdet(
            **_feature_args(f),
            **_pair_args(p),
            weights=w.data_ptr(),
            quadforms=quadforms.data_ptr(),
            inverse=inverse.data_ptr(),
            projection=projection.data_ptr(),
            direction=direction.data_ptr(),
            difference=difference.data_ptr(),
            scratch=scratch.data_ptr(),
            k=k,
            chosen=chosen.data_ptr(),
            gains=gains.data_ptr(),
            stream=stream_for(device),
        )
    return chosen, gains, start.logdet + gains.sum().item()


def check_budget(k: Any, count: int, excluded: torch.Tensor | None) -> int:
    """k as an int no larger than the number of pairs that may be chosen."""
    k = v.count_argument(k)
    unavailable = 0 if excluded is None else int(excluded.sum())
    if k > count - unavailable:
        raise ValueError(
            f"k = {k} is larger than the {count - unavailable} pairs available "
            f"({count} candidates, {unavailable} excluded)"
        )
    return k


# ---- public kernels --------------------------------------------------------------------------


def pair_diff(features: Array, pairs: Array) -> Array:
    """(P, d) differences phi_i - phi_j (materialises them: for inspection and small pools)."""
    f = v.features_tensor(features)
    p = v.pairs_tensor(pairs, f.shape[0], f.device)
    out = torch.empty((p.shape[0], f.shape[1]), dtype=f.dtype, device=f.device)
    if p.shape[0]:
        with on_device(f.device):
            backend_for(f.device).pair_diff(
                **_feature_args(f), **_pair_args(p), out=out.data_ptr(), stream=stream_for(f.device)
            )
    return export(out, v.is_numpy_like(features))


def fisher_weights(rewards: Array, pairs: Array) -> Array:
    """(P,) Fisher weights w_k = mean over ensemble members of sigma(D)(1 - sigma(D)),
    D = r_i - r_j, for rewards of shape (n,) or (E, n)."""
    r = v.rewards_tensor(rewards, None, None)
    p = v.pairs_tensor(pairs, r.shape[1], r.device)
    return export(weights64(r, p).to(r.dtype), v.is_numpy_like(rewards))


def pair_quadform(features: Array, pairs: Array, precision: Array) -> Array:
    """(P,) quadratic forms d_k^T A d_k for a (d, d) matrix A, without forming any d_k."""
    f = v.features_tensor(features)
    p = v.pairs_tensor(pairs, f.shape[0], f.device)
    a = v.float_tensor(precision, "precision", (f.shape[1], f.shape[1]), f.device).double()
    # (phi_i - phi_j)^T A (phi_i - phi_j) = (phi_i - phi_j) . (g_i - g_j) with G = Phi A^T
    projected = f.double() @ a.T
    return export(quadforms64(f, p, projected, 1.0).to(f.dtype), v.is_numpy_like(features))


def fisher_matrix(features: Array, pairs: Array, weights: Array | None = None) -> Array:
    """(d, d) Fisher information sum_k w_k d_k d_k^T by a scatter over pairs (no outer products)."""
    f = v.features_tensor(features)
    p = v.pairs_tensor(pairs, f.shape[0], f.device)
    w = None
    if weights is not None:
        w = v.float_tensor(weights, "weights", (p.shape[0],), f.device).double().contiguous()
    return export(fisher_matrix64(f, p, w).to(f.dtype), v.is_numpy_like(features))


def greedy_logdet(
    features: Array,
    pairs: Array,
    k: int,
    *,
    weights: Array | None = None,
    prior: float | Array = 1e-3,
    exclude: Array | None = None,
) -> Selection:
    """Exact greedy maximisation of log det(F0 + sum_{k in S} w_k d_k d_k^T) over k pairs.

    ``prior`` is lambda for F0 = lambda I, or an SPD (d, d) matrix (e.g. the Fisher information
    of pairs labelled earlier). ``exclude`` is a boolean (P,) mask of pairs that may not be
    chosen. Each step is a rank-one update: O(d^2) + O(n d) + one fused O(P) sweep.
    """
    f = v.features_tensor(features)
    p = v.pairs_tensor(pairs, f.shape[0], f.device, unique=True)
    count = p.shape[0]
    if weights is None:
        w = torch.ones(count, dtype=torch.float64, device=f.device)
    else:
        w = v.float_tensor(weights, "weights", (count,), f.device, nonnegative=True).double()
    excluded = None if exclude is None else v.mask_tensor(exclude, count, f.device, "exclude")
    k = check_budget(k, count, excluded)
    start = prior_state(prior, f)
    chosen, gains, logdet = greedy64(f, p, k, w.contiguous(), start, excluded)
    as_numpy = v.is_numpy_like(features)
    return Selection(export(chosen, as_numpy), export(gains, as_numpy), logdet)
