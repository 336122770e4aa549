"""The D-optimal objective on validated tensors: Fisher matrices, priors F0 and greedy selection.

Greedy selection maximises sum_e log det(F0_e + sum_S w_e,k d_e,k d_e,k^T) over E members
(E = 1 for one model) on the compiled engine (`_launch.GreedyEngine`). The engine keeps a
factor S with S S^T = F^-1 per member; this module prepares its start (S0 and the scores
q_k = ||S0^T d_k||^2), rescales features and priors by one power of two so that no square
overflows or underflows, and turns what cannot be represented into clear errors.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import torch
from tqdm.auto import tqdm

from .. import _launch
from .._threads import one_thread_for, one_thread_pass, thread_stable_mm


def fisher_matrix(f: torch.Tensor, p: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """sum_k w_k d_k d_k^T = Phi^T (L_w Phi), L_w the weighted Laplacian of the pair graph.

    Both halves run in the kernels, every sum in one fixed order, so the bits do not depend on
    the thread count. The product runs over the responses the pairs compare only (the rows of
    L_w Phi that are not zero), centred on their mean (see :func:`centred_for`): a few labelled
    pairs among many responses cost O(their rows d^2), not O(n d^2). Where there are too few
    pairs to compare most of the responses (:func:`_compared`), both halves run on the rows
    they compare only, renumbered in ascending order: every sum keeps its terms and their
    order, so the bits are the same, and L_w Phi takes O(their rows d) memory instead of
    O(n d). The product sums the upper triangle and mirrors it, so the matrix is symmetric bit
    for bit.
    """
    # a pair compares two rows: fewer pairs than _COMPACT_SHARE n / 2 compare few rows
    few = 0 < 2 * p.shape[0] <= _COMPACT_SHARE * f.shape[0]
    compared = _compared(p, f.shape[0]) if few else None
    if compared is not None:
        f, p = f[compared[0]], compared[1]
    return _launch.fisher_product(f, _launch.fisher_matrix(f, p, w))


def centred_for(f: torch.Tensor, laplacian_phi: torch.Tensor) -> torch.Tensor:
    """The features in float64 less the mean of the responses whose row of ``laplacian_phi``
    (L_w Phi) is not zero, those the pairs compare. A product with L_w Phi (zero column sums) is
    exactly the same for any centre; this one removes the cancellation a large common offset
    would cause, and keeps far-off responses that no pair compares from pushing the products
    past float64."""
    phi = f.double()
    compared = (laplacian_phi != 0).any(dim=1)
    if not bool(compared.any()):
        return phi
    return phi - phi[compared].mean(dim=0)


@dataclass(frozen=True)
class Prior:
    """F0 = ``ridge`` I (``matrix`` None) or the SPD ``matrix``; ``logdet`` = log det F0.

    ``floor`` is set for matrices this package builds as floor I + (positive semi-definite
    information): their eigenvalues are at least ``floor`` in exact arithmetic, and are held
    there when rounding says otherwise, so a built prior is never refused. ``eigen`` is then
    its eigendecomposition (the spectrum held at the floor, the vectors; float64 on the CPU),
    computed once for the checks and every factor of the selection, unless the information is
    too small beside the floor for rounding to matter (:data:`_CHOLESKY_RANGE`): then it is
    None and ``lower`` is its Cholesky factor (float64 on the CPU), computed once for its log
    det and every factor."""

    ridge: float | None
    matrix: torch.Tensor | None
    logdet: float
    floor: float | None = None
    eigen: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, compare=False)
    lower: torch.Tensor | None = field(default=None, compare=False)

    @staticmethod
    def of(prior: float | torch.Tensor, d: int, name: str = "prior") -> Prior:
        """lambda I for a number, else the SPD (d, d) float64 matrix."""
        if isinstance(prior, torch.Tensor):
            return Prior.of_matrix(prior, name)
        return Prior.of_ridge(prior, d)

    @staticmethod
    def of_ridge(ridge: float, d: int) -> Prior:
        return Prior(ridge, None, d * math.log(ridge))

    @staticmethod
    def of_matrix(matrix: torch.Tensor, name: str = "prior") -> Prior:
        """An SPD float64 (d, d) matrix; ValueError naming ``name`` if it is not positive
        definite."""
        factor = _cholesky(matrix, name)
        return Prior(None, matrix, 2.0 * torch.log(torch.diagonal(factor)).sum().item())

    @staticmethod
    def of_information(information: torch.Tensor, ridge: float, what: str) -> Prior:
        """ridge I + ``information`` (positive semi-definite, float64), built by the package
        from the pairs ``what`` names; a ValueError when it is beyond float64."""
        matrix = information + ridge * torch.eye(
            information.shape[0], dtype=torch.float64, device=information.device
        )
        if not bool(torch.isfinite(matrix).all()):
            raise ValueError(f"{what} overflows float64; rescale the features")
        # the largest absolute row sum bounds the largest eigenvalue
        # (scaled down, not the ridge up: a ridge near float64's top would overflow)
        if math.ldexp(matrix.abs().sum(dim=1).max().item(), -_CHOLESKY_RANGE) <= ridge:
            with one_thread_for(matrix.shape[0]):
                result = torch.linalg.cholesky_ex(matrix.detach().cpu())
            if int(result.info) == 0:
                logdet = 2.0 * torch.log(torch.diagonal(result.L)).sum().item()
                return Prior(None, matrix, logdet, ridge, lower=result.L)
        try:
            with one_thread_for(matrix.shape[0]):
                spectrum, vectors = torch.linalg.eigh(matrix.detach().cpu())
        except RuntimeError as err:  # torch.linalg.LinAlgError
            raise ValueError(
                f"{what} has eigenvalues float64 cannot resolve (entries up to "
                f"{matrix.abs().max().item():.3g}); rescale the features"
            ) from err
        spectrum = spectrum.clamp_min(ridge)
        # an eigenvector of the floor is computed to about eps of the matrix's norm, so past
        # largest / ridge = 1 / eps^2 a score d^T F0^-1 d is rounding error alone
        largest = spectrum.max().item()
        if largest / ridge > math.ldexp(1.0, 2 * _MANTISSA):
            raise ValueError(
                f"{what} exceeds the ridge {ridge:.3g} by more than float64 resolves (largest "
                f"eigenvalue {largest:.3g}); raise the ridge or rescale the features"
            )
        return Prior(None, matrix, torch.log(spectrum).sum().item(), ridge, (spectrum, vectors))

    def magnitudes(self) -> tuple[float, float]:
        """The smallest and largest diagonal entry of F0 (both lambda for lambda I); for a built
        prior, the smallest is at most its ``floor``, which its eigenvalues are held at."""
        if self.matrix is None:
            assert self.ridge is not None
            return self.ridge, self.ridge
        diagonal = self.matrix.diagonal().abs()
        low = float(diagonal.min())
        return (low if self.floor is None else min(low, self.floor)), float(diagonal.max())

    def describe(self) -> str:
        if self.matrix is None:
            return f"prior {self.ridge:.3g} I"
        return f"prior matrix with diagonal up to {self.matrix.diagonal().max().item():.3g}"


def _cholesky(matrix: torch.Tensor, name: str) -> torch.Tensor:
    with one_thread_for(matrix.shape[0]):
        result = torch.linalg.cholesky_ex(matrix)
    factor: torch.Tensor = result.L
    info = int(result.info)
    if info != 0:
        raise ValueError(f"{name} must be positive definite (Cholesky failed at column {info - 1})")
    return factor


# A built prior whose eigenvalues are bounded by 2^_CHOLESKY_RANGE times its floor is factored by
# Cholesky (d^3 / 3 multiply-adds, against an eigendecomposition's reduction to tridiagonal form
# and its vectors): rounding moves its eigenvalues by about d eps times the largest, far less
# than the floor, so none needs holding there, and every root is as accurate as the
# eigenvectors' would be.
_CHOLESKY_RANGE = 26
# Scaled priors stay between 2^-_PRIOR_RANGE and 2^_PRIOR_RANGE.
_PRIOR_RANGE = 1000
# float64's epsilon is 2^-_MANTISSA.
_MANTISSA = 52


def feature_scale(features: torch.Tensor, priors: Sequence[Prior] = ()) -> float:
    """The power of two features are read times: it brings the largest |feature| into [1/2, 1)
    as far as the priors allow (scale^2 F0 must stay within 2^-1000..2^1000).

    Multiplying by a power of two is exact and leaves every rounding of the selection as it
    was, so it is always applied; it keeps squares of features of any magnitude, subnormal
    ones included, finite and normal."""
    top = 0.0
    if features.numel():
        top = _largest_magnitude(features)
    exponent = 0 if top == 0.0 else -math.frexp(top)[1]
    for prior in priors:
        low, high = prior.magnitudes()
        upper = (_PRIOR_RANGE - math.frexp(high)[1]) // 2  # scale^2 high < 2^_PRIOR_RANGE
        lower = -((_PRIOR_RANGE + math.frexp(low)[1] - 1) // 2)  # scale^2 low >= 2^-_PRIOR_RANGE
        exponent = min(max(exponent, lower), upper)
    # scale^2 itself must be finite and normal
    return math.ldexp(1.0, max(-_PRIOR_RANGE // 2, min(_PRIOR_RANGE // 2, exponent)))


def _overflow_shift(left: torch.Tensor, right: torch.Tensor) -> int:
    """The smallest shift >= 0 for which ``left @ right`` 2^-shift is bounded by 2^_PRIOR_RANGE:
    0, so no rounding changes, unless the product could overflow float64."""
    if not left.numel() or not right.numel():
        return 0
    return _overflow_shift_of(_largest_magnitude(left), _largest_magnitude(right), right.shape[0])


def _overflow_shift_of(left: float, right: float, inner: int) -> int:
    """:func:`_overflow_shift` from the largest magnitudes of both factors and the length of
    the sums."""
    return max(0, sum(math.frexp(x)[1] for x in (left, right, inner)) - _PRIOR_RANGE)


def _largest_magnitude(t: torch.Tensor) -> float:
    """max |t| in one pass, without a copy of |t|."""
    with one_thread_pass(t):
        smallest, largest = torch.aminmax(t)
    return max(-smallest.item(), largest.item())


def _inverse_root(prior: Prior, scale: float, d: int) -> torch.Tensor:
    """R^-T for a root R R^T = scale^2 F0 (so R^-T R^-1 = (scale^2 F0)^-1), float64 on the CPU
    (every device continues from the same factor): the inverse Cholesky factor of a given
    matrix, or of a built one without an eigendecomposition (from its factor: scale is a power
    of two, so scale times it is the factor of scale^2 F0); else V diag((scale^2 mu)^-1/2) from
    that decomposition, its eigenvalues mu held at its floor (scale^2 mu is exact)."""
    if prior.matrix is None:
        assert prior.ridge is not None
        ridge_root = (1.0 / scale) / math.sqrt(prior.ridge)  # 1 / sqrt(scale^2 ridge)
        return ridge_root * torch.eye(d, dtype=torch.float64)
    if prior.eigen is not None:
        spectrum, vectors = prior.eigen
        root: torch.Tensor = vectors * (spectrum * (scale * scale)).rsqrt()[None, :]
        return root
    with one_thread_for(d):
        if prior.lower is not None:  # the factor of scale^2 F0 is scale times F0's, exactly
            lower = prior.lower * scale
        else:
            lower = _cholesky(prior.matrix.detach().cpu() * (scale * scale), "prior")
        eye = torch.eye(d, dtype=torch.float64)
        inverse: torch.Tensor = torch.linalg.solve_triangular(lower.T, eye, upper=True)
    return inverse


# Pairs of a generated pool computed at a time where a kernel that takes stored pairs needs them
# (64 MiB of pairs beside a (P,) result)
GENERATED_CHUNK = 1 << 22


# a selection over this many pairs or more takes seconds: it shows progress on a terminal
PROGRESS_PAIRS = 10**8


def progress_shown(count: int) -> bool:
    """Whether work over ``count`` pairs shows progress bars: at least :data:`PROGRESS_PAIRS`
    of them, and stderr a terminal."""
    return count >= PROGRESS_PAIRS and sys.stderr.isatty()


def per_pair(pairs: _launch.Pairs, score: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``score(pairs)`` of a per-pair kernel: at once for stored pairs; for a generated pool
    chunk by chunk into one (P,) array, the pairs never all held at once (a per-pair result
    does not depend on the chunks), with a progress bar where :func:`progress_shown`."""
    if isinstance(pairs, torch.Tensor):
        return score(pairs)
    out = torch.empty(pairs.count, dtype=torch.float64, device=pairs.device)
    shown = progress_shown(pairs.count)
    with tqdm(total=pairs.count, desc="scoring pairs", unit_scale=True, disable=not shown) as bar:
        for start, rows in _launch.generated_chunks(pairs, GENERATED_CHUNK):
            out[start : start + len(rows)] = score(rows)
            bar.update(len(rows))
    return out


def pair_rows(pairs: _launch.Pairs, positions: torch.Tensor) -> torch.Tensor:
    """(m, 2) int64 rows of the local ``positions`` of stored or generated pairs."""
    if isinstance(pairs, torch.Tensor):
        return pairs[positions].long()
    rows = [_launch.implicit_pairs(pairs.part(p, p + 1)) for p in positions.tolist()]
    return torch.cat(rows) if rows else torch.empty((0, 2), dtype=torch.int64, device=pairs.device)


# Below this share of the responses in its pairs, a product over the responses is taken over
# those responses only (finding them and renumbering the pairs is O(P + n)).
_COMPACT_SHARE = 0.75


def _compared(pairs: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The responses ``pairs`` compare and the pairs renumbered into them, or None when they
    compare most of the n responses."""
    used = torch.zeros(n, dtype=torch.bool, device=pairs.device)
    used[pairs.reshape(-1).long()] = True
    rows = torch.nonzero(used).squeeze(1)
    if rows.numel() > _COMPACT_SHARE * n:
        return None
    position = torch.cumsum(used, 0) - 1
    return rows, position[pairs.long()]


def _scores_of_factor(
    features: torch.Tensor, pairs: _launch.Pairs, factor: torch.Tensor, scale: float
) -> torch.Tensor:
    """||S^T d'_k||^2 for every pair: the squared distance of rows psi_i = S^T phi'_i, rotated
    for the responses stored pairs compare (each row's product is the same whichever rows are
    rotated with it; a generated pool's are not looked for)."""
    compared = _compared(pairs, features.shape[0]) if isinstance(pairs, torch.Tensor) else None
    if compared is not None:
        features, pairs = features[compared[0]], compared[1]
    # scale is a power of two: the largest scaled feature is the largest feature times it
    shift = 0
    if features.numel():
        largest = _largest_magnitude(features) * scale
        shift = _overflow_shift_of(largest, _largest_magnitude(factor), factor.shape[0])
    rotated = _launch.project_features(
        features, (factor * math.ldexp(1.0, -shift)).contiguous(), scale
    )
    scores = per_pair(pairs, lambda chunk: _launch.pair_quadform(rotated, chunk, None, 1.0))
    return scores * math.ldexp(1.0, 2 * shift) if shift else scores


def _start(
    features: torch.Tensor, pairs: _launch.Pairs, prior: Prior, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One member's start in features scaled by ``scale``: the factor S0 (S0 S0^T = F0'^-1 for
    F0' = scale^2 F0) and the scores ||S0^T d'_k||^2 = d_k^T F0^-1 d_k."""
    d = features.shape[1]
    device = features.device
    if prior.matrix is None:
        assert prior.ridge is not None
        root = (1.0 / scale) / math.sqrt(prior.ridge)
        factor = root * torch.eye(d, dtype=torch.float64, device=device)
        return factor, per_pair(
            pairs,
            lambda chunk: _launch.pair_quadform(
                features, chunk, None, root * root, feature_scale=scale
            ),
        )
    factor = _inverse_root(prior, scale, d).to(device)
    return factor, _scores_of_factor(features, pairs, factor, scale)


def _weighted_differences(
    features: torch.Tensor, picked: torch.Tensor, weights: torch.Tensor, scale: float
) -> torch.Tensor:
    """W^1/2 D': the (k, d) float64 differences of the ``picked`` pairs (k, 2) in features read
    times ``scale``, each times the root of its weight, on the CPU; from the picked rows only."""
    ends = features[picked].double() * scale  # (k, 2, d)
    return (ends[:, 0] - ends[:, 1]).cpu() * weights.cpu().sqrt()[:, None]


def _factor_after(
    features: torch.Tensor,
    picked: torch.Tensor,
    weights: torch.Tensor,
    prior: Prior,
    *,
    scale: float,
) -> torch.Tensor:
    """S with S S^T = (F0' + sum over the picked pairs of w d' d'^T)^-1, straight from the pairs
    rather than by updates: with F0' = R R^T and C = W^1/2 D' R^-T = U diag(s) V^T,
    S = R^-T V diag(1 / hypot(1, s)). Every singular value keeps its relative precision, so the
    factor is accurate however far the chosen pairs' information exceeds the prior. Computed in
    float64 on the CPU."""
    d = features.shape[1]
    diffs = _weighted_differences(features, picked, weights, scale)
    inverse_root = _inverse_root(prior, scale, d)
    rotated = thread_stable_mm(diffs, inverse_root)
    with one_thread_for(d):
        _, singular, vh = torch.linalg.svd(rotated, full_matrices=True)
    spectrum = torch.zeros(d, dtype=torch.float64)
    spectrum[: singular.shape[0]] = singular
    shrink = 1.0 / torch.hypot(torch.ones_like(spectrum), spectrum)
    factor = thread_stable_mm(inverse_root, vh.T * shrink[None, :])
    return factor.to(features.device)


def sequential_gains(
    features: torch.Tensor, picked: torch.Tensor, weights: torch.Tensor, prior: Prior
) -> torch.Tensor:
    """log det increments of adding the ``picked`` rows (k, 2) with ``weights`` (k,) in order to
    F0: 2 log |R_tt| of the QR factor of [B | I]^T with B = W^1/2 D' S0, computed in float64
    on the CPU (by blocks of rows beyond ``_GAIN_BLOCK`` of them, where B needs no scaling)."""
    scale = feature_scale(features, [prior])
    d = features.shape[1]
    diffs = _weighted_differences(features, picked, weights, scale)
    root = _inverse_root(prior, scale, d)
    # B can exceed float64 although every gain is finite (a huge difference against a tiny
    # ridge); the factor of [B | I] 2^-shift is R 2^-shift exactly.
    shift = _overflow_shift(diffs, root)
    block = max(_GAIN_BLOCK, d)
    if shift == 0 and len(picked) > block:
        return _blocked_gains(thread_stable_mm(diffs, root), block)
    down = math.ldexp(1.0, -shift)
    stacked = torch.cat(
        [thread_stable_mm(diffs * down, root), down * torch.eye(len(picked), dtype=torch.float64)],
        dim=1,
    )
    with one_thread_for(stacked.shape[0]):
        upper = torch.linalg.qr(stacked.T, mode="r").R
    return 2.0 * (torch.log(torch.diagonal(upper).abs()) + shift * math.log(2.0))


# Fewest rows of B per QR in _blocked_gains (d when larger): one QR of [B | I]^T costs
# O(k^2 (k + d)), blocks of m rows O(k (d + m) (m + d^2 / m)).
_GAIN_BLOCK = 256


def _blocked_gains(b: torch.Tensor, block: int) -> torch.Tensor:
    """2 log |R_tt| of the QR factor of [B | I]^T, ``b`` (k, d) float64 with every product
    representable, a block of rows at a time: U (d, d) upper with U^T U = I + B_done^T B_done,
    a block's factor is that of [U^-T B_block^T; I], and U becomes the factor of [U; B_block]
    (``block`` rows a block)."""
    d = b.shape[1]
    factor = torch.eye(d, dtype=torch.float64)
    gains = []
    for rows in torch.split(b, block):
        with one_thread_for(max(d, len(rows))):
            solved = torch.linalg.solve_triangular(factor.T, rows.T, upper=False)
            identity = torch.eye(len(rows), dtype=torch.float64)
            upper = torch.linalg.qr(torch.cat([solved, identity]), mode="r").R
            gains.append(2.0 * torch.log(torch.diagonal(upper).abs()))
            factor = torch.linalg.qr(torch.cat([factor, rows]), mode="r").R
    return torch.cat(gains)


def quadforms(features: torch.Tensor, pairs: _launch.Pairs, prior: Prior) -> torch.Tensor:
    """d_k^T F^-1 d_k for every pair."""
    return _start(features, pairs, prior, feature_scale(features, [prior]))[1]


# A chosen pair's running score may drift this far (relative) from its fresh value before the
# engine's state is recomputed from the chosen pairs (needs_refresh in pair_math.h).
REFRESH_TOLERANCE = 1e-9

T = TypeVar("T")


@dataclass(frozen=True)
class PromptQuota:
    """At most ``limit`` chosen pairs per prompt in one batch: a partition-matroid constraint
    under which a pair counts once against each distinct prompt of its two responses (a
    cross-prompt pair against both). ``prompt_of`` (n,) int64 is each response's prompt in
    [0, ``prompts``), on the pairs' device."""

    limit: int
    prompt_of: torch.Tensor
    prompts: int

    def prompts_of(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompts of each pair's first and second response."""
        return self.prompt_of[pairs[:, 0].long()], self.prompt_of[pairs[:, 1].long()]

    def index(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The CSR index of ``pairs`` by prompt, built once: ``offsets`` (prompts + 1,) and the
        positions in ``pairs`` of each prompt's pairs, ascending (a cross-prompt pair under
        both of its prompts)."""
        first, second = self.prompts_of(pairs)
        positions = torch.arange(pairs.shape[0], dtype=torch.int64, device=pairs.device)
        cross = first != second
        keys = torch.cat([first, second[cross]])
        held = torch.cat([positions, positions[cross]])
        order = torch.argsort(keys * max(pairs.shape[0], 1) + held)
        counts = torch.bincount(keys, minlength=self.prompts)
        offsets = torch.zeros(self.prompts + 1, dtype=torch.int64, device=pairs.device)
        offsets[1:] = torch.cumsum(counts, dim=0)
        return offsets, held[order].contiguous()

    def exhausted(self, taken: int, k: int) -> ValueError:
        """The error of a strategy whose ranking or draw, taken in order while the prompts
        have room, ran out of available pairs after ``taken`` of ``k`` picks (another choice
        of the first picks might have left room for k).

        Examples
        --------
        >>> quota = PromptQuota(1, torch.tensor([0, 0, 1, 1]), 2)
        >>> print(quota.exhausted(2, 3))  # doctest: +NORMALIZE_WHITESPACE
        per_prompt=1 left no available pair after 2 picks in this strategy's order, k = 3;
        lower k or raise per_prompt
        """
        return ValueError(
            f"per_prompt={self.limit} left no available pair after {taken} picks in this "
            f"strategy's order, k = {k}; lower k or raise per_prompt"
        )

    def tensors(self, pairs: torch.Tensor) -> _launch.QuotaTensors:
        """The engine's quota over ``pairs``, every prompt's count at 0."""
        offsets, members = self.index(pairs)
        used = torch.zeros(self.prompts, dtype=torch.int64, device=pairs.device)
        return _launch.QuotaTensors(self.limit, self.prompt_of.contiguous(), offsets, members, used)


def quota_masked(quota: _launch.QuotaTensors) -> torch.Tensor:
    """The positions of the pairs of every prompt whose quota is full."""
    full = torch.nonzero(quota.used >= quota.limit).reshape(-1)
    if full.numel() == 0:
        return quota.pairs[:0]
    starts, ends = quota.offsets[full], quota.offsets[full + 1]
    return torch.cat(
        [quota.pairs[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    )


@dataclass(frozen=True)
class GreedyProblem:
    """What one greedy selection runs on: the Python twin of the engines' ``GreedyProblem``,
    built once from validated arguments and passed whole from the public entry points to the
    engine (single-process, lazy or sharded alike).

    ``members`` are (1, n, d) features shared by every member or (E, n, d) one matrix each;
    ``pairs`` stored (P, 2) or a generated pool's (:class:`~activerm_fast.ImplicitPool`);
    ``weights`` (P, E) float64, one column per member, the rewards the sweep computes them
    from (:class:`~activerm_fast._launch.RewardRows`) or all 1
    (:class:`~activerm_fast._launch.UnitWeights`); ``priors`` one F0 per member;
    ``excluded`` (P,) mask or positions of the pairs that may not be chosen (None: none);
    ``lazy`` the sweep (:class:`~activerm_fast._launch.GreedyEngine`; every choice picks the
    same pairs).
    ``pairs`` may be one shard of a pool whose pair 0 is global position ``first_index``
    (errors and choices name global positions); every other field but ``weights`` and
    ``excluded`` is then the whole pool's. ``quota`` (None: none) limits the chosen pairs per
    prompt, in the engine (:class:`PromptQuota`).
    """

    members: torch.Tensor
    pairs: _launch.Pairs
    weights: _launch.Weights
    priors: Sequence[Prior]
    excluded: torch.Tensor | None = None
    lazy: bool | str = "auto"
    first_index: int = 0
    quota: PromptQuota | None = None

    @property
    def logdet(self) -> float:
        """The objective before any pick: the sum over members of log det F0."""
        return sum(prior.logdet for prior in self.priors)

    def member_features(self, member: int) -> torch.Tensor:
        """Member ``member``'s (n, d) features (all share one matrix when one was given)."""
        return self.members[min(member, self.members.shape[0] - 1)]

    @property
    def candidates(self) -> _launch.Pairs:
        """The pairs, stored or generated (the name SelectionInputs gives them too)."""
        return self.pairs

    @property
    def member_count(self) -> int:
        """E, the members whose log dets are summed."""
        return _launch.weight_members(self.weights)

    def weights_of(self, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(m, E) weights of the pairs ``rows`` at local ``positions``: read, or computed from
        the rewards as the sweep computes them."""
        weights = self.weights
        if isinstance(weights, torch.Tensor):
            return weights[positions]
        if isinstance(weights, _launch.UnitWeights):
            return torch.ones(
                (positions.shape[0], weights.members), dtype=torch.float64, device=rows.device
            )
        r, rows_each = weights.rewards, weights.rows
        return torch.stack(
            [
                _launch.fisher_weights(r[e * rows_each : (e + 1) * rows_each], rows)
                for e in range(weights.members)
            ],
            dim=1,
        )

    @property
    def heaviest(self) -> float:
        """The largest weight here (1/4, the Bradley-Terry bound, when computed from rewards)."""
        weights = self.weights
        if isinstance(weights, _launch.UnitWeights):
            return 1.0
        if isinstance(weights, _launch.RewardRows):
            return 0.25
        return weights.max().item() if weights.numel() else 0.0


class Exchange(Protocol):
    """How the processes holding the shards of one pool agree (``distributed``'s group)."""

    def agreed(self, call: Callable[[], T]) -> T:
        """``call()`` here; if it raised on any process, every process raises that error."""
        ...

    def winner(self, record: torch.Tensor) -> torch.Tensor:
        """The choice record the sweep of the whole pool would have found, from this
        process's best ``record`` of its shard."""
        ...

    def maximum(self, value: float) -> float:
        """The largest of every process's ``value``."""
        ...


class _Alone:
    """The :class:`Exchange` of a pool that one process holds whole: its best is the winner."""

    def agreed(self, call: Callable[[], T]) -> T:
        return call()

    def winner(self, record: torch.Tensor) -> torch.Tensor:
        return record

    def maximum(self, value: float) -> float:
        return value


def greedy(
    problem: GreedyProblem, k: int, exchange: Exchange | None = None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Greedy maximisation of sum_e log det(F0_e + sum_S w_e d_e d_e^T) over k pairs.

    Alone, the compiled engine runs the steps (:func:`_run`), or, where a progress bar is
    shown (:func:`progress_shown`), the same steps one at a time (:func:`_run_exchanged` with
    the process alone); with an ``exchange``, the pairs are one shard of the pool and every
    step's best record is exchanged before the same winner is applied everywhere
    (:func:`_run_exchanged`). Returns the chosen (global) positions,
    their gains (the sum over members) and the final objective.
    """
    if k == 0:
        return no_steps(problem.pairs.device, problem.logdet)
    if exchange is None:
        engine, scale = greedy_engine(problem, steps=k)
        if progress_shown(problem.pairs.shape[0]):  # one step at a time, so a bar counts them
            chosen, gains = _run_exchanged(engine, problem, k, scale=scale, exchange=_Alone())
        else:
            chosen, gains = _run(engine, problem, k, scale)
    else:
        engine, scale = exchange.agreed(lambda: greedy_engine(problem, steps=k))
        chosen, gains = _run_exchanged(engine, problem, k, scale=scale, exchange=exchange)
    if bool(((chosen < 0) | ~torch.isfinite(gains)).any()):  # the same on every process
        heaviest = problem.heaviest
        if exchange is not None:
            heaviest = exchange.maximum(heaviest)
        _raise_step_error(chosen, gains, heaviest, problem)
    return chosen, gains, problem.logdet + gains.sum().item()


def no_steps(device: torch.device, logdet: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The result of a selection of no pairs: empty indices and gains, the prior's log det."""
    empty = torch.empty(0, dtype=torch.int64, device=device)
    return empty, torch.empty(0, dtype=torch.float64, device=device), logdet


def greedy_engine(problem: GreedyProblem, steps: int = 0) -> tuple[_launch.GreedyEngine, float]:
    """The engine at the start of a greedy selection of ``steps`` pairs, with the sweep
    ``problem.lazy`` asks for, and the power of two its features are read times."""
    members, pairs = problem.members, problem.pairs
    scale = feature_scale(members, problem.priors)
    starts = [
        _start(problem.member_features(e), pairs, prior, scale)
        for e, prior in enumerate(problem.priors)
    ]
    factor = torch.stack([start[0] for start in starts]).contiguous()
    if len(starts) == 1:  # (P, 1) without a copy: at 10^9 pairs a copy is 8 GB more
        scores = starts[0][1][:, None]
    else:
        scores = torch.stack([start[1] for start in starts], dim=1).contiguous()
    if problem.excluded is not None:
        scores[problem.excluded] = math.nan
    _check_start(scores, problem, steps)
    quota = None
    if problem.quota is not None:
        assert isinstance(pairs, torch.Tensor)  # validated: a quota needs stored pairs
        quota = problem.quota.tensors(pairs)
    engine = _launch.GreedyEngine(
        members,
        pairs,
        problem.weights,
        scores=scores,
        factor=factor,
        feature_scale=scale,
        first_index=problem.first_index,
        refresh_tolerance=REFRESH_TOLERANCE,
        lazy=problem.lazy,
        steps=steps,
        quota=quota,
    )
    return engine, scale


def _run(
    engine: _launch.GreedyEngine, problem: GreedyProblem, k: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """k steps of the compiled engine, recomputing its state from the chosen pairs whenever a
    step finds that the running scores have drifted (once the chosen pairs' information
    exceeds the prior by about 1/epsilon, downdates cancel)."""
    chosen_parts: list[torch.Tensor] = []
    gain_parts: list[torch.Tensor] = []
    done = 0
    while done < k:
        chosen, gains = engine.run(k - done)
        stops = torch.nonzero(chosen == _launch.REFRESH_CHOICE)
        if stops.numel() == 0:
            chosen_parts.append(chosen)
            gain_parts.append(gains)
            break
        stop = int(stops[0, 0])
        chosen_parts.append(chosen[:stop])
        gain_parts.append(gains[:stop])
        done += stop
        so_far = torch.cat(chosen_parts) - problem.first_index
        rows = pair_rows(problem.pairs, so_far)
        weights = problem.weights_of(rows, so_far)
        again = stop == 0 and len(chosen_parts) > 1
        refresh_state(
            engine,
            problem,
            picked=rows,
            picked_weights=weights,
            local=so_far,
            scale=scale,
            again=again,
        )
    return torch.cat(chosen_parts), torch.cat(gain_parts)


def _run_exchanged(
    engine: _launch.GreedyEngine,
    problem: GreedyProblem,
    k: int,
    *,
    scale: float,
    exchange: Exchange,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k steps on the engine's primitives (sweep, then apply) over one shard: each step's best
    choice record (score, global index, the pair's two responses, its weight per member) is
    exchanged and the winner applied on every process. Drifted state is recomputed as in
    :func:`_run`, from the winners' records, which hold every chosen pair's rows and
    weights."""
    device = problem.pairs.device
    chosen = torch.empty(k, dtype=torch.int64, device=device)
    gains = torch.empty(k, dtype=torch.float64, device=device)
    slots = 4 + problem.member_count  # score, index, first, second, one weight per member
    winners = torch.empty((k, slots), dtype=torch.float64, device=device)
    refreshed = False  # a refresh and no step since
    # one process alone runs here only to show the steps
    bar = tqdm(total=k, desc="greedy steps", disable=not isinstance(exchange, _Alone))
    engine.sweep(downdate=False)
    step = 0
    while step < k:
        record = engine.choice[0][:slots]
        winner = exchange.winner(record)
        record.copy_(winner)
        engine.apply(step, chosen, gains, prepare_next=step + 1 < k)
        if int(chosen[step]) == _launch.REFRESH_CHOICE:
            done = winners[:step]
            ints = done.view(torch.int64)
            local = ints[:, 1] - problem.first_index
            local = local[(local >= 0) & (local < problem.pairs.shape[0])]
            refresh_state(
                engine,
                problem,
                picked=ints[:, 2:4],
                picked_weights=done[:, 4:],
                local=local,
                scale=scale,
                again=refreshed,
            )
            refreshed = True
            engine.sweep(downdate=False)
            continue
        winners[step] = winner
        refreshed = False
        step += 1
        bar.update(1)
        if step < k:
            engine.sweep(downdate=True)
    bar.close()
    return chosen, gains


def refresh_state(
    engine: _launch.GreedyEngine,
    problem: GreedyProblem,
    *,
    picked: torch.Tensor,
    picked_weights: torch.Tensor,
    local: torch.Tensor,
    scale: float,
    again: bool,
) -> None:
    """Every member's factor and every score of ``problem.pairs`` recomputed from the pairs
    chosen so far: their rows ``picked`` (m, 2) int64 and weights ``picked_weights`` (m, E),
    wherever in the pool they are; ``local`` are the positions in ``problem.pairs`` of those
    that are here (masked from now on). ``again``: no step since the last refresh, so no state
    is fresher: the engine runs on unchecked."""
    if again:
        engine.problem.refresh_tolerance = 0.0
    scores, factor = engine.state_tensors()
    for e, prior in enumerate(problem.priors):
        features = problem.member_features(e)
        factor[e] = _factor_after(features, picked, picked_weights[:, e], prior, scale=scale)
        scores[:, e] = _scores_of_factor(features, problem.pairs, factor[e], scale)
    if problem.excluded is not None:
        scores[problem.excluded] = math.nan
    scores[local] = math.nan
    mask_repeats(scores, problem.pairs, picked, problem.members.shape[1])
    if engine.quota is not None:
        scores[quota_masked(engine.quota)] = math.nan


def mask_repeats(scores: torch.Tensor, pairs: _launch.Pairs, picked: torch.Tensor, n: int) -> None:
    """NaN scores for every copy, in a generated pool, of a ``picked`` (m, 2) pair: after a
    refresh no choice may repeat one (the sweep masks the copies of each new choice; a stored
    pool holds none)."""
    if isinstance(pairs, torch.Tensor) or picked.shape[0] == 0:
        return
    chosen = picked.min(dim=1).values * n + picked.max(dim=1).values
    for start, rows in _launch.generated_chunks(pairs, GENERATED_CHUNK):
        repeated = torch.isin(rows[:, 0] * n + rows[:, 1], chosen.to(rows.device))
        scores[start : start + len(rows)][repeated] = math.nan


def _check_start(scores: torch.Tensor, problem: GreedyProblem, steps: int = 0) -> None:
    """Every available pair's d^T F0^-1 d must be a finite number (pair 0 of ``scores`` is
    global pair ``problem.first_index``), and where ``steps`` picks must rank them, not every
    one zero because the features are too small for float64 to hold any (every gain would tie
    at 0, and the picks be index order)."""
    # starting scores are sums of squares (NaN: excluded), so +inf is the only infinity;
    # torch.isinf would compare |scores| and hold a copy of them (8 more bytes per pair)
    bad = scores == math.inf
    if bool(bad.any()):
        pair, member = (int(v) for v in torch.nonzero(bad)[0].tolist())
        raise ValueError(
            f"d^T F0^-1 d of pair {problem.first_index + pair} overflows float64: features up "
            f"to {problem.members.abs().max().item():.3g} against "
            f"{problem.priors[member].describe()}; rescale the features or raise the prior"
        )
    if not bool((scores > 0).any()):  # rare: only then are the features' magnitudes read
        check_scores_representable(scores, problem.members, problem.priors, steps)


def check_scores_representable(
    scores: torch.Tensor,
    features: torch.Tensor,
    priors: Sequence[Prior],
    k: int,
    excluded: torch.Tensor | None = None,
) -> None:
    """Scores d^T F0^-1 d all zero are the features' own (every pair compares equal features)
    unless the features are so small against the prior that no score could be a float64:
    then, where ``k`` picks must rank the available pairs, a ValueError, not ties taken in
    index order (picking every pair needs no ranking, and its gains of 0 are rounded right).
    The pairs ``excluded`` (a (P,) mask) or of NaN scores are not available."""
    if bool((scores > 0).any()):  # NaN compares false
        return
    available = scores == scores  # not NaN
    available = available.any(dim=1) if available.ndim == 2 else available
    if excluded is not None:
        available &= ~excluded
    if k >= int(available.sum()):
        return
    top = _largest_magnitude(features) if features.numel() else 0.0
    if top == 0.0:
        return
    dims = features.shape[-1]
    # |d|^2 / lambda bounds every score of a ridge prior (lambda its smallest diagonal entry),
    # in log2: below 2^-1074, the least subnormal, no score could be told from 0
    for prior in priors:
        low = prior.magnitudes()[0]
        if math.log2(dims) + 2 * math.log2(2 * top) - math.log2(low) < -1074:
            raise ValueError(
                f"every d^T F0^-1 d underflows float64: features up to {top:.3g} against "
                f"{prior.describe()}; rescale the features (or use ridge_mode='relative')"
            )


def _raise_step_error(
    chosen: torch.Tensor, gains: torch.Tensor, heaviest: float, problem: GreedyProblem
) -> None:
    """The error of the first step that chose no pair or a pair with an infinite gain."""
    bad = (chosen < 0) | ~torch.isfinite(gains)
    step = int(torch.nonzero(bad)[0, 0])
    what = (
        "no candidate pair had a finite score"
        if int(chosen[step]) < 0
        else f"the gain of pair {int(chosen[step])} overflowed float64"
    )
    if int(chosen[step]) < 0 and problem.quota is not None:
        raise ValueError(
            f"greedy step {step}: {what}: per_prompt={problem.quota.limit} leaves no pair to "
            f"choose; lower k to {step} or raise per_prompt"
        )
    if int(chosen[step]) < 0 and not isinstance(problem.pairs, torch.Tensor):
        # a generated pool's repeated draws are skipped: it may hold fewer distinct pairs
        raise ValueError(
            f"greedy step {step}: {what}: the implicit pool may hold only {step} distinct "
            f"available pairs (repeated draws are skipped); lower k to {step} or draw a larger "
            f"pool, or else rescale the weights (up to {heaviest:.3g}) or the features"
        )
    raise ValueError(
        f"greedy step {step}: {what} (weights up to {heaviest:.3g}, features up to "
        f"{problem.members.abs().max().item():.3g}, {problem.priors[0].describe()}); rescale "
        "the weights or the features, or raise the prior"
    )
