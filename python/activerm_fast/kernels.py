"""The public kernels: validate at the boundary, then run on the launch layer.

Every function accepts NumPy arrays or torch tensors (float32/float64/float16/bfloat16
features, int32/int64 pairs, rows ``(i, j)`` meaning "response i minus response j") and
returns the same array type as its first argument, in that argument's float dtype (float32
for half-precision features: the results of float32 features holding the same values, bit for
bit). Accumulation is float64 inside the kernels whatever the input dtype; half-precision
features are widened as the kernels read them, never copied. Kernels run where the data
lives: CPU arrays on the OpenMP backend, CUDA tensors on the CUDA backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch

from . import _launch
from . import _validation as v
from ._threads import selection_threads, selection_work
from .data.implicit_pool import ImplicitPool, generated_pairs, positions_of
from .selection import design as _design

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "Selection",
    "pair_diff",
    "fisher_weights",
    "pair_quadform",
    "fisher_matrix",
    "greedy_logdet",
]

Array = Any  # np.ndarray or torch.Tensor

# lambda of F0 = lambda I when no prior is given
DEFAULT_PRIOR = 1e-3


@dataclass(frozen=True)
class Selection:
    """Pairs chosen for labelling, as every selection entry point returns them.

    Attributes
    ----------
    indices : np.ndarray or torch.Tensor
        (k,) int64 positions in the candidate ``pairs``, in the order chosen.
    gains : np.ndarray or torch.Tensor
        (k,) log-det increments log(1 + w_k d_k^T F^-1 d_k) of each choice given the ones
        before it, whatever strategy chose them.
    logdet : float
        log det of the final design matrix F0 + sum over the chosen pairs.

    Examples
    --------
    >>> import torch
    >>> import activerm_fast as arm
    >>> batch = arm.greedy_logdet(torch.eye(4), torch.tensor([[0, 1], [2, 3], [1, 2]]), 2)
    >>> isinstance(batch, arm.Selection), batch.indices  # arrays of the features' type
    (True, tensor([0, 1]))
    >>> batch.gains.shape, isinstance(batch.logdet, float)
    (torch.Size([2]), True)
    """

    indices: Array
    gains: Array
    logdet: float


def export(t: torch.Tensor, as_numpy: bool) -> Array:
    """Hand a result back as the caller's array type."""
    return t.cpu().numpy() if as_numpy else t


def _representable(
    exact: torch.Tensor,
    what: str,
    f: torch.Tensor,
    dtype: torch.dtype | None = None,
    *,
    weights: torch.Tensor | None = None,
    precision: torch.Tensor | None = None,
) -> torch.Tensor:
    """``exact`` (float64, or the features' result dtype) in ``dtype`` (by default the features'
    result dtype: their own, float32 for half precision), or a ValueError when finite features
    gave a result beyond that dtype's range: above it (a silent inf would look like an answer),
    or wholly below its smallest normal number while not zero (a silent all-zero result would
    look like one too). Either names the ``weights`` (non-negative, linear in the result) when
    the result at weights scaled to a largest of 1 would be representable: then they, not the
    features, took it out of the range. A ``precision`` matrix (quadratic in the features,
    linear in it) is named beside the features."""
    out = exact.to(_launch.result_dtype(f.dtype) if dtype is None else dtype)
    if not out.numel():
        return out
    name = str(out.dtype).removeprefix("torch.")
    largest = exact.abs().max().item()
    heaviest = 0.0 if weights is None or not weights.numel() else weights.max().item()
    limits = torch.finfo(out.dtype)

    def culprit(weights_took_it_out: bool) -> str:
        if weights_took_it_out:
            return f"weights up to {heaviest:.3g}; rescale the weights"
        features = f"features up to {f.abs().max().item():.3g}"
        if precision is not None:
            entries = precision.abs().max().item()
            return f"{features} and precision entries up to {entries:.3g}; rescale either"
        return f"{features}; rescale the features"

    if not bool(torch.isfinite(out).all()):
        if not math.isfinite(largest) and heaviest > 1.0:
            # overflowed in float64 itself: which of the two took it there cannot be told
            raise ValueError(
                f"{what} overflows {name}: features up to {f.abs().max().item():.3g} with "
                f"weights up to {heaviest:.3g}; rescale either"
            )
        unweighted = largest / heaviest if heaviest > 1.0 else math.inf
        raise ValueError(f"{what} overflows {name}: {culprit(unweighted <= limits.max)}")
    if 0.0 < largest < limits.tiny:
        unweighted = largest / heaviest if 0.0 < heaviest < 1.0 else 0.0
        raise ValueError(
            f"{what} underflows {name} (largest entry {largest:.3g}): "
            f"{culprit(unweighted >= limits.tiny)}"
        )
    return out


def pair_diff(features: Array, pairs: Array) -> Array:
    """Differences phi_i - phi_j of the features of each pair (materialised).

    For inspection and small pools: the other kernels never form these rows.

    Parameters
    ----------
    features : np.ndarray or torch.Tensor
        (n, d) float32, float64, float16 or bfloat16 features of the responses.
    pairs : np.ndarray or torch.Tensor
        (P, 2) int32 or int64 rows ``(i, j)``, indices into ``features``.

    Returns
    -------
    np.ndarray or torch.Tensor
        (P, d) rows ``features[i] - features[j]``, of the type and dtype of ``features``
        (float32 for half-precision features).

    Raises
    ------
    TypeError
        If ``features`` is not floating point or ``pairs`` not integer.
    ValueError
        If a shape is wrong, a value is not finite, an index is out of range, or a difference
        overflows the features' dtype.

    Examples
    --------
    >>> import torch
    >>> import activerm_fast as arm
    >>> arm.pair_diff(torch.arange(12.0).reshape(4, 3), torch.tensor([[0, 1], [3, 2]]))
    tensor([[-3., -3., -3.],
            [ 3.,  3.,  3.]])
    """
    f = v.features_tensor(features)
    p = v.pairs_tensor(pairs, f.shape[0], f.device)
    out = _launch.pair_diff(f, p)
    if not _differences_representable(f, out.dtype):
        out = _representable(out, "pair_diff", f)
    return export(out, v.is_numpy_like(features))


def _differences_representable(f: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether every difference of two entries of ``f`` is representable in ``dtype``: none can
    overflow when twice the largest entry is finite, and none is nonzero but below the smallest
    normal number when every nonzero entry is at least tiny / eps (a difference of two such
    numbers is zero or a multiple of the smaller one's unit in the last place, itself >= tiny).
    One pass over the (n, d) features spares the scan of the (P, d) result."""
    if not f.numel():
        return True
    limits = torch.finfo(dtype)
    magnitudes = f.abs()
    largest = magnitudes.max().item()
    smallest = torch.where(magnitudes > 0, magnitudes, math.inf).min().item()
    return 2.0 * largest <= limits.max and smallest >= limits.tiny / limits.eps


def fisher_weights(rewards: Array, pairs: Array) -> Array:
    """Bradley-Terry Fisher weights of each pair at the given rewards.

    w_k is the mean over ensemble members of sigma(D)(1 - sigma(D)) with D = r_i - r_j, the
    variance of the pair's predicted label; computed stably for large gaps.

    Parameters
    ----------
    rewards : np.ndarray or torch.Tensor
        (n,) float32 or float64 rewards, or (E, n) one row per ensemble member.
    pairs : np.ndarray or torch.Tensor
        (P, 2) int32 or int64 rows ``(i, j)``.

    Returns
    -------
    np.ndarray or torch.Tensor
        (P,) weights in [0, 1/4], of the type and dtype of ``rewards``.

    Raises
    ------
    TypeError
        If ``rewards`` is not floating point or ``pairs`` not integer.
    ValueError
        If a shape is wrong, a value is not finite or an index is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> rewards = np.array([0.0, 0.0, 2.0, -1.0, 5.0, 1.0])
    >>> pairs = np.array([[0, 1], [2, 3], [0, 4], [1, 5]])
    >>> arm.fisher_weights(rewards, pairs).round(4).tolist()  # equal rewards: 1/4
    [0.25, 0.0452, 0.0066, 0.1966]
    >>> ensemble = np.stack([rewards, -rewards])  # (E, n): the mean over members
    >>> bool(np.allclose(arm.fisher_weights(ensemble, pairs), arm.fisher_weights(rewards, pairs)))
    True
    """
    r = v.rewards_tensor(rewards, None, None)
    p = v.pairs_tensor(pairs, r.shape[1], r.device)
    return export(_launch.fisher_weights(r, p).to(r.dtype), v.is_numpy_like(rewards))


def pair_quadform(features: Array, pairs: Array, precision: Array) -> Array:
    """Quadratic forms d_k^T A d_k of every pair difference, without forming any d_k.

    Parameters
    ----------
    features : np.ndarray or torch.Tensor
        (n, d) float32, float64, float16 or bfloat16 features.
    pairs : np.ndarray or torch.Tensor
        (P, 2) int32 or int64 rows ``(i, j)``; d_k = features[i] - features[j].
    precision : np.ndarray or torch.Tensor
        (d, d) float32 or float64 matrix A, e.g. the inverse of a design matrix.

    Returns
    -------
    np.ndarray or torch.Tensor
        (P,) values, of the type and dtype of ``features`` (float32 for half precision).

    Raises
    ------
    TypeError
        If an argument has the wrong dtype.
    ValueError
        If a shape is wrong, a value is not finite, an index is out of range or a result
        overflows the features' dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> x = np.random.default_rng(1).normal(size=(5, 3))
    >>> i, j = np.array([0, 1, 3]), np.array([1, 2, 4])
    >>> q = arm.pair_quadform(x, np.stack([i, j], axis=1), np.eye(3))  # A = I: squared distances
    >>> q.shape, bool(np.allclose(q, ((x[i] - x[j]) ** 2).sum(axis=1)))
    ((3,), True)
    """
    f = v.features_tensor(features)
    p = v.pairs_tensor(pairs, f.shape[0], f.device)
    a = v.float_tensor(precision, "precision", (f.shape[1], f.shape[1]), f.device).double()
    # (phi_i - phi_j)^T A (phi_i - phi_j) = (phi_i - phi_j) . (g_i - g_j) with G = Phi A^T
    projected = _launch.project_features(f, a.T.contiguous())
    exact = _launch.pair_quadform(f, p, projected, 1.0)
    out = _representable(exact, "pair_quadform", f, precision=a)
    return export(out, v.is_numpy_like(features))


def fisher_matrix(features: Array, pairs: Array, weights: Array | None = None) -> Array:
    """Fisher information sum_k w_k d_k d_k^T of a set of pairs.

    Computed by a scatter over pairs into the features' Laplacian, without any outer product.

    Parameters
    ----------
    features : np.ndarray or torch.Tensor
        (n, d) float32, float64, float16 or bfloat16 features.
    pairs : np.ndarray or torch.Tensor
        (P, 2) int32 or int64 rows ``(i, j)``; d_k = features[i] - features[j].
    weights : np.ndarray or torch.Tensor, optional
        (P,) weights w_k (e.g. :func:`fisher_weights`); ones when None.

    Returns
    -------
    np.ndarray or torch.Tensor
        (d, d) symmetric matrix, of the type and dtype of ``features`` (float32 for half
        precision).

    Raises
    ------
    TypeError, ValueError
        As :func:`pair_quadform`, ``weights`` checked as the other arrays.

    Examples
    --------
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> path = np.array([[0, 1], [1, 2]])  # one-hot features: the pairs' graph Laplacian
    >>> arm.fisher_matrix(np.eye(3), path).round(12).tolist()  # to within rounding
    [[1.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, 1.0]]
    >>> weighted = arm.fisher_matrix(np.eye(3), path, np.array([2.0, 0.5]))  # weighted edges
    >>> weighted.round(12).tolist()
    [[2.0, -2.0, 0.0], [-2.0, 2.5, -0.5], [0.0, -0.5, 0.5]]
    >>> bool((weighted == weighted.T).all())  # symmetric bit for bit
    True
    """
    f = v.features_tensor(features)
    p = v.pairs_tensor(pairs, f.shape[0], f.device)
    w = None
    if weights is not None:
        w = v.float_tensor(weights, "weights", (p.shape[0],), f.device, nonnegative=True)
        w = w.double().contiguous()
    out = _representable(_design.fisher_matrix(f, p, w), "fisher_matrix", f, weights=w)
    return export(out, v.is_numpy_like(features))


class GreedyOptions(TypedDict, total=False):
    """:func:`greedy_logdet`'s keyword arguments, which
    :func:`activerm_fast.distributed.greedy_logdet` takes too and :func:`greedy_problem` reads:
    one list for every entry point of the greedy engine."""

    weights: Array | None
    prior: float | Array
    exclude: Array | None
    lazy: bool | str


def greedy_problem(
    features: Array, pairs: Array, **options: Unpack[GreedyOptions]
) -> _design.GreedyProblem:
    """:func:`greedy_logdet`'s arguments validated once, as the problem the engine runs on:
    features, unique pairs, float64 weights (all 1 by default, read from no array), the prior
    (a ridge or a symmetric matrix; ``DEFAULT_PRIOR`` by default), the exclusion mask and the
    sweep ("auto" by default)."""
    unknown = sorted(set(options) - set(GreedyOptions.__annotations__))
    if unknown:
        raise TypeError(f"greedy_logdet got an unexpected keyword argument {unknown[0]!r}")
    weights, exclude = options.get("weights"), options.get("exclude")
    lazy = options.get("lazy", "auto")
    f = v.features_tensor(features)
    generated = generated_pairs(pairs, f.shape[0], f.device)
    p: _launch.Pairs
    if generated is None:
        p = v.pairs_tensor(pairs, f.shape[0], f.device, unique=True)
    elif lazy is True:
        raise ValueError("lazy=True needs stored pairs; an implicit pool runs the dense sweep")
    else:
        p = generated
    count = p.shape[0]
    w: _launch.Weights = _launch.UnitWeights(1)
    if weights is not None:
        given = v.float_tensor(weights, "weights", (count,), f.device, nonnegative=True)
        w = given.double()[:, None].contiguous()
    excluded = None if exclude is None else v.mask_tensor(exclude, count, f.device, "exclude")
    prior = options.get("prior", DEFAULT_PRIOR)
    start = _design.Prior.of(v.prior_argument(prior, f.shape[1], f.device), f.shape[1])
    return _design.GreedyProblem(f[None], p, w, [start], excluded, v.lazy_argument(lazy))


def excluded_pairs(pool: Any, excluded: torch.Tensor | None) -> np.ndarray:
    """(m, 2) int64, each pair an implicit ``pool`` (an :class:`~activerm_fast.ImplicitPool`)
    holds at a position ``excluded`` marks, once (none for None)."""
    if excluded is None:
        return np.empty((0, 2), np.int64)
    marked = torch.nonzero(excluded).reshape(-1).cpu().numpy()
    return np.unique(pool.rows(marked + pool.start), axis=0).reshape(-1, 2)


def excluding_every_occurrence(
    problem: _design.GreedyProblem, pool: ImplicitPool, rows: np.ndarray
) -> _design.GreedyProblem:
    """``problem`` on an implicit ``pool`` with every position holding one of the pairs
    ``rows`` (m, 2) excluded, in one pass over its pairs: a pair excluded at one position
    would otherwise be chosen at a repeat."""
    if not len(rows):
        return problem
    generated = problem.pairs
    assert isinstance(generated, _launch.GeneratedPairs), "an implicit pool's problem"
    mask = torch.zeros(generated.count, dtype=torch.bool, device=generated.device)
    mask[positions_of(generated, torch.from_numpy(rows).to(generated.device), pool.n)] = True
    return replace(problem, excluded=mask)


def greedy_logdet(
    features: Array,
    pairs: Array,
    k: int,
    *,
    weights: Array | None = None,
    prior: float | Array = DEFAULT_PRIOR,
    exclude: Array | None = None,
    lazy: bool | str = "auto",
) -> Selection:
    """Exact greedy maximisation of log det(F0 + sum_{k in S} w_k d_k d_k^T) over k pairs.

    Each step adds the pair of largest gain log(1 + w_k d_k^T F^-1 d_k) and updates F^-1 by
    a rank-one update: O(d^2) + O(n d) + one fused O(P) sweep, or with ``lazy`` (CPU) a
    refresh of only the pairs whose stale score could still win, bit for bit the same picks,
    gains and log det.

    Parameters
    ----------
    features : np.ndarray or torch.Tensor
        (n, d) float32, float64, float16 or bfloat16 features.
    pairs : np.ndarray or torch.Tensor
        (P, 2) int32 or int64 candidate rows ``(i, j)``, no pair given twice.
    k : int
        Number of pairs to choose, at most the number not excluded.
    weights : np.ndarray or torch.Tensor, optional
        (P,) non-negative weights w_k (e.g. :func:`fisher_weights`); ones when None.
    prior : float or np.ndarray or torch.Tensor, default 1e-3
        lambda for F0 = lambda I, or a symmetric positive definite (d, d) F0 (e.g. the Fisher
        information of pairs labelled earlier).
    exclude : np.ndarray or torch.Tensor, optional
        (P,) boolean mask of pairs that may not be chosen (of an implicit pool, a pair
        marked at one of its positions is excluded at all of them).
    lazy : bool or "auto", default "auto"
        The sweep: "auto" is lazy where it can run (the CPU, within half the free memory)
        and pays (from 1.5 million pairs and 100 steps), dense elsewhere.

    Returns
    -------
    Selection
        The chosen positions in ``pairs`` in order, their gains (non-increasing) and log det
        of the final design matrix; arrays of the type of ``features``.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype.
    ValueError
        If a shape is wrong, a value is not finite, an index is out of range, a pair is
        repeated, a weight is negative, the prior is not symmetric, or ``k`` exceeds the
        pairs that may be chosen.

    Examples
    --------
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> features = np.random.default_rng(0).normal(size=(6, 8))
    >>> pairs = np.array([[0, 1], [2, 3], [0, 4], [1, 5]])
    >>> batch = arm.greedy_logdet(features, pairs, 3, prior=1.0)
    >>> batch.indices.tolist()
    [3, 1, 0]
    >>> bool(np.all(np.diff(batch.gains) <= 0))  # the gains never increase
    True
    >>> bool(np.isclose(batch.logdet, batch.gains.sum()))  # log det F0 = log det I = 0
    True
    >>> arm.greedy_logdet(features, pairs, 2, exclude=np.array([0, 0, 0, 1], bool)).indices.tolist()
    [0, 1]
    """
    with selection_threads(*selection_work(features, pairs)):
        problem = greedy_problem(
            features, pairs, weights=weights, prior=prior, exclude=exclude, lazy=lazy
        )
        if isinstance(pairs, ImplicitPool):
            problem = excluding_every_occurrence(
                problem, pairs, excluded_pairs(pairs, problem.excluded)
            )
        k = v.budget(k, problem.pairs.shape[0], problem.excluded)
        chosen, gains, logdet = _design.greedy(problem, k)
    as_numpy = v.is_numpy_like(features)
    return Selection(export(chosen, as_numpy), export(gains, as_numpy), logdet)
