"""The public kernels: validate at the boundary, then run on the launch layer.

Every function accepts NumPy arrays or torch tensors (float32/float64 features, int32/int64
pairs, rows ``(i, j)`` meaning "response i minus response j") and returns the same array
type as its first argument, in that argument's float dtype. Accumulation is float64 inside
the kernels whatever the input dtype. Kernels run where the data lives: CPU arrays on the
OpenMP backend, CUDA tensors on the CUDA backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from . import _launch
from . import _validation as v
from .selection import design as _design

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


def _representable(out: torch.Tensor, what: str, f: torch.Tensor) -> torch.Tensor:
    """``out``, or a ValueError when finite features gave a result beyond the range of its
    dtype (a silent inf would look like an answer)."""
    if out.numel() and not bool(torch.isfinite(out).all()):
        raise ValueError(
            f"{what} overflows {str(out.dtype).removeprefix('torch.')}: features up to "
            f"{f.abs().max().item():.3g}; rescale the features"
        )
    return out


def pair_diff(features: Array, pairs: Array) -> Array:
    """(P, d) differences phi_i - phi_j (materialises them: for inspection and small pools)."""
    f = v.features_tensor(features)
    p = v.pairs_tensor(pairs, f.shape[0], f.device)
    out = _representable(_launch.pair_diff(f, p), "pair_diff", f)
    return export(out, v.is_numpy_like(features))


def fisher_weights(rewards: Array, pairs: Array) -> Array:
    """(P,) Fisher weights w_k = mean over ensemble members of sigma(D)(1 - sigma(D)),
    D = r_i - r_j, for rewards of shape (n,) or (E, n)."""
    r = v.rewards_tensor(rewards, None, None)
    p = v.pairs_tensor(pairs, r.shape[1], r.device)
    return export(_launch.fisher_weights(r, p).to(r.dtype), v.is_numpy_like(rewards))


def pair_quadform(features: Array, pairs: Array, precision: Array) -> Array:
    """(P,) quadratic forms d_k^T A d_k for a (d, d) matrix A, without forming any d_k."""
    f = v.features_tensor(features)
    p = v.pairs_tensor(pairs, f.shape[0], f.device)
    a = v.float_tensor(precision, "precision", (f.shape[1], f.shape[1]), f.device).double()
    # (phi_i - phi_j)^T A (phi_i - phi_j) = (phi_i - phi_j) . (g_i - g_j) with G = Phi A^T
    projected = f.double() @ a.T
    out = _launch.pair_quadform(f, p, projected, 1.0).to(f.dtype)
    return export(_representable(out, "pair_quadform", f), v.is_numpy_like(features))


def fisher_matrix(features: Array, pairs: Array, weights: Array | None = None) -> Array:
    """(d, d) Fisher information sum_k w_k d_k d_k^T by a scatter over pairs (no outer products)."""
    f = v.features_tensor(features)
    p = v.pairs_tensor(pairs, f.shape[0], f.device)
    w = None
    if weights is not None:
        w = v.float_tensor(weights, "weights", (p.shape[0],), f.device).double().contiguous()
    out = _design.fisher_matrix(f, p, w).to(f.dtype)
    return export(_representable(out, "fisher_matrix", f), v.is_numpy_like(features))


def greedy_arguments(
    features: Array, pairs: Array, weights: Array | None, prior: Any, exclude: Array | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, float | torch.Tensor]:
    """:func:`greedy_logdet`'s arrays validated once: features, unique pairs, float64 weights
    (ones by default), the exclusion mask and the prior (a ridge or a symmetric matrix)."""
    f = v.features_tensor(features)
    p = v.pairs_tensor(pairs, f.shape[0], f.device, unique=True)
    count = p.shape[0]
    if weights is None:
        w = torch.ones(count, dtype=torch.float64, device=f.device)
    else:
        w = v.float_tensor(weights, "weights", (count,), f.device, nonnegative=True).double()
    excluded = None if exclude is None else v.mask_tensor(exclude, count, f.device, "exclude")
    return f, p, w, excluded, v.prior_argument(prior, f.shape[1], f.device)


def greedy_logdet(
    features: Array,
    pairs: Array,
    k: int,
    *,
    weights: Array | None = None,
    prior: float | Array = 1e-3,
    exclude: Array | None = None,
    lazy: bool | str = "auto",
) -> Selection:
    """Exact greedy maximisation of log det(F0 + sum_{k in S} w_k d_k d_k^T) over k pairs.

    ``prior`` is lambda for F0 = lambda I, or an SPD (d, d) matrix (e.g. the Fisher information
    of pairs labelled earlier). ``exclude`` is a boolean (P,) mask of pairs that may not be
    chosen. Each step is a rank-one update: O(d^2) + O(n d) + one fused O(P) sweep, or with
    ``lazy`` (CPU) a refresh of only the pairs whose stale score could still win, bit for bit
    the same picks, gains and log det; "auto" is lazy where it can run (the CPU, within half
    the free memory) and pays (from 1.5 million pairs and 100 steps), dense elsewhere.
    """
    f, p, w, excluded, argument = greedy_arguments(features, pairs, weights, prior, exclude)
    k = v.budget(k, p.shape[0], excluded)
    start = _design.Prior.of(argument, f.shape[1])
    chosen, gains, logdet = _design.greedy(
        f[None], p, k, w[:, None].contiguous(), [start], excluded, v.lazy_argument(lazy)
    )
    as_numpy = v.is_numpy_like(features)
    return Selection(export(chosen, as_numpy), export(gains, as_numpy), logdet)
