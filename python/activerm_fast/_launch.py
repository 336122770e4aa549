"""The launch layer: the one place that knows the compiled backends.

It picks the extension module for a device (`_core` on the CPU, `_cuda` on a GPU), the stream,
allocates outputs and workspaces, and turns tensors into the views the kernels take
(``FeatureView``, ``PairView``, ``GreedyProblem``, ``GreedyState``). Inputs are validated,
contiguous tensors on one device; nothing here checks them again. Tests and benchmarks call
these functions rather than passing addresses themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from importlib import metadata
from types import ModuleType
from typing import Any, NamedTuple

import torch

from . import _core  # loaded first by _openmp, with idle OpenMP threads asleep
from ._threads import PRODUCT_BLOCK_ROWS, kernel_team, thread_stable_mm

_cuda: ModuleType | None
try:  # the CUDA module exists only when CMake found a CUDA compiler
    from . import _cuda
except ImportError:
    _cuda = None

MAX_MEMBERS = int(_core.max_members)
# Below these sizes lazy="auto" runs the dense sweep: the lazy sweep's set-up (a pass that sorts
# every pair into its bucket) and per-step bookkeeping then cost more than it saves (the
# greedy_logdet group of the bench suite, docs/BENCHMARKS.md, against bench/bench_lazy.py's
# larger pools). With several members (ensemble-dopt-greedy) "auto" stays dense: a refresh reads
# every member's kept projections, and bench_lazy.py's ensemble pool runs slower lazily.
LAZY_MIN_PAIRS = 1_500_000
LAZY_MIN_STEPS = 100
REFRESH_CHOICE = int(_core.refresh_choice)  # a step's index when the state must be recomputed
# FeatureView's dtype code of each feature dtype the kernels read (csrc feature_types.h).
FEATURE_DTYPES = {
    getattr(torch, name): int(code) for name, code in dict(_core.feature_dtypes).items()
}


def backend_for(device: torch.device, name: str = "features") -> ModuleType:
    """The extension module that runs kernels for tensors on ``device``."""
    if device.type == "cpu":
        return _core
    if device.type == "cuda":
        if _cuda is None:
            raise ValueError(
                f"{name} is on {device} but activerm_fast was built without CUDA support "
                "(no CUDA compiler was found at build time); pass CPU arrays or rebuild "
                "with ACTIVERM_FAST_CUDA=ON"
            )
        return _cuda
    raise ValueError(f"{name} is on {device}; only CPU and CUDA devices are supported")


def stream_for(device: torch.device) -> int:
    """The raw stream handle kernels on ``device`` are launched on (0 on the CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.current_stream(device).cuda_stream)
    return 0


@contextlib.contextmanager
def on_device(device: torch.device) -> Iterator[None]:
    """Make ``device`` the current CUDA device while kernels are launched on it."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            yield
    else:
        yield


def gpu_usable() -> bool:
    """Whether the CUDA backend was built and a GPU is visible to it and to torch."""
    return _cuda is not None and _cuda.device_count() > 0 and torch.cuda.is_available()


def build_info() -> dict[str, Any]:
    """How this installation was built and what it can run on."""
    return {
        "version": metadata.version("activerm_fast"),
        "compiler": _core.compiler,
        "cuda_compiler": None if _cuda is None else _cuda.compiler,
        "openmp_threads": int(_core.max_threads()),
        "avx512_kernels": bool(_core.wide_vectors()),
        "cuda_built": _cuda is not None,
        "gpu_usable": gpu_usable(),
        "torch": torch.__version__,
    }


def available_memory() -> int:
    """Bytes of memory the system can still give (MemAvailable; 2**62 where it is unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def device_memory(device: torch.device) -> int:
    """Bytes free on ``device``: the GPU's free memory, or :func:`available_memory` for the
    CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return available_memory()


# ---- views ------------------------------------------------------------------------------------


def result_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype kernels return for features of ``dtype``: float32 for half precision (the
    results of float32 features holding the same values, which half precision could not
    hold), else the features' own."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _feature_view(backend: ModuleType, f: torch.Tensor, scale: float = 1.0) -> Any:
    """(n, d) features, or the first member's of (E, n, d), read times the power of two scale;
    half-precision features are read as they are stored and widened in the kernels."""
    n, d = f.shape[-2:]
    return backend.FeatureView(f.data_ptr(), FEATURE_DTYPES[f.dtype], n, d, scale)


@dataclass(frozen=True)
class GeneratedPairs:
    """A generated pool's pairs ``first`` .. ``first + count - 1`` (csrc views.h:
    ImplicitPairs; built by :class:`~activerm_fast.ImplicitPool`), its int64 tables on the
    device its kernels run on."""

    kind: int
    key: int
    first: int
    count: int
    n: int
    eligible: int
    spread: float  # eligible / the whole pool's size
    order: torch.Tensor | None  # None: the identity
    runs: torch.Tensor
    draw_from: torch.Tensor | None

    @property
    def device(self) -> torch.device:
        return self.runs.device

    @property
    def shape(self) -> tuple[int, int]:
        """(count, 2), the shape of the pairs as an array."""
        return self.count, 2

    def part(self, start: int, stop: int) -> GeneratedPairs:
        """Pairs ``start`` .. ``stop - 1`` of these (local positions)."""
        return replace(self, first=self.first + start, count=stop - start)


Pairs = torch.Tensor | GeneratedPairs  # stored (P, 2) pairs or a generated pool's


def _pair_view(backend: ModuleType, p: Pairs) -> Any:
    if isinstance(p, GeneratedPairs):
        return backend.PairView.generated(
            p.kind,
            p.key,
            p.first,
            p.count,
            p.n,
            p.eligible,
            p.spread,
            _address(p.order),
            p.runs.data_ptr(),
            _address(p.draw_from),
        )
    return backend.PairView(p.data_ptr(), p.dtype == torch.int64, p.shape[0])


def _address(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


# ---- kernels ----------------------------------------------------------------------------------


def pair_diff(f: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(P, d) differences phi_i - phi_j in the features' result dtype (float32 for
    half-precision features, as float32 features holding the same values give)."""
    out = torch.empty((p.shape[0], f.shape[1]), dtype=result_dtype(f.dtype), device=f.device)
    if p.shape[0]:
        backend = backend_for(f.device)
        with on_device(f.device):
            backend.pair_diff(
                _feature_view(backend, f),
                _pair_view(backend, p),
                out.data_ptr(),
                stream_for(f.device),
            )
    return out


def fisher_weights(r: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(P,) float64 mean Bradley-Terry Fisher weight over the (E, n) reward rows."""
    out = torch.empty(p.shape[0], dtype=torch.float64, device=r.device)
    if p.shape[0]:
        backend = backend_for(r.device, "rewards")
        with on_device(r.device), kernel_team():
            backend.fisher_weights(
                r.data_ptr(),
                r.dtype == torch.float64,
                r.shape[0],
                r.shape[1],
                _pair_view(backend, p),
                out.data_ptr(),
                stream_for(r.device),
            )
    return out


def pair_quadform(
    f: torch.Tensor,
    p: torch.Tensor,
    projected: torch.Tensor | None,
    scale: float,
    *,
    feature_scale: float = 1.0,
) -> torch.Tensor:
    """(P,) float64 d_k^T A d_k, with ``projected`` = Phi A, or A = scale * I when None;
    features read times the power of two ``feature_scale``."""
    out = torch.empty(p.shape[0], dtype=torch.float64, device=f.device)
    if p.shape[0]:
        backend = backend_for(f.device)
        with on_device(f.device), kernel_team():
            backend.pair_quadform(
                _feature_view(backend, f, feature_scale),
                _pair_view(backend, p),
                _address(projected),
                scale,
                out.data_ptr(),
                stream_for(f.device),
            )
    return out


# Where the compiled projection runs (bench/bench_feature_projection.py measures it at least
# level with torch's float64 product there): a full matrix of up to 128 x 128 entries, and an
# upper-triangular one, whose zeros it skips, of up to 512 x 512.
PROJECTION_FULL_ENTRIES = 1 << 14
PROJECTION_TRIANGULAR_ENTRIES = 1 << 18


def _kernel_projects(f: torch.Tensor, matrix: torch.Tensor) -> bool:
    """Whether :func:`project_features` runs the compiled kernel for ``matrix``."""
    if f.device.type != "cpu" or not _core.wide_vectors():
        return False
    entries = matrix.numel()
    if entries <= PROJECTION_FULL_ENTRIES:
        return True
    return entries <= PROJECTION_TRIANGULAR_ENTRIES and not bool(torch.tril(matrix, -1).any())


def project_features(f: torch.Tensor, matrix: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """(n, m) float64 (``scale`` Phi) M for (n, d) features of any feature dtype, ``scale`` a
    power of two, and a contiguous (d, m) float64 ``matrix`` on their device, with the same
    bits for any thread count.

    On a CPU with AVX-512 and for a small or upper-triangular matrix (:func:`_kernel_projects`)
    the compiled kernel (csrc/cpu/feature_projection_cpu.h) sums every entry in ascending
    order, skipping the zero ends of M's columns (half the work for a triangular M); otherwise
    :func:`~activerm_fast._threads.thread_stable_mm`, the features widened a block of rows at a
    time (one (n, m) float64 array in all, not a float64 copy of the features beside it).

    Examples
    --------
    >>> import torch
    >>> from activerm_fast._launch import project_features
    >>> f = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> project_features(f, torch.tensor([[1.0, 1.0], [0.0, 2.0]], dtype=torch.float64), 0.5)
    tensor([[0.5000, 2.5000],
            [1.5000, 5.5000]], dtype=torch.float64)
    """
    n, m = f.shape[0], matrix.shape[1]
    out = torch.empty((n, m), dtype=torch.float64, device=f.device)
    if not out.numel():
        return out
    with kernel_team():
        if _kernel_projects(f, matrix):
            view = _feature_view(_core, f, scale)
            _core.project_features(view, matrix.data_ptr(), m, out.data_ptr())
            return out
        rows = PRODUCT_BLOCK_ROWS if f.device.type == "cpu" else n
        for start in range(0, n, rows):
            block = f[start : start + rows].to(torch.float64, copy=True).mul_(scale)
            thread_stable_mm(block, matrix, out=out[start : start + rows])
    return out


def fisher_matrix(f: torch.Tensor, p: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """The scatter half of the Fisher matrix: (n, d) float64 L_w Phi, the w-weighted Laplacian
    of the pair graph applied to Phi, so that Phi^T L_w Phi = sum_k w_k d_k d_k^T."""
    out = torch.empty(f.shape, dtype=torch.float64, device=f.device)
    backend = backend_for(f.device)
    with on_device(f.device), kernel_team():
        backend.fisher_matrix(
            _feature_view(backend, f),
            _pair_view(backend, p),
            _address(w),
            out.data_ptr(),
            stream_for(f.device),
        )
    return out


def fisher_product(f: torch.Tensor, laplacian: torch.Tensor) -> torch.Tensor:
    """The product half of the Fisher matrix: (d, d) float64 Phi_c^T ``laplacian`` for the
    (n, d) float64 L_w Phi of :func:`fisher_matrix`, Phi_c the features of the responses the
    pairs compare (the rows of L_w Phi that are not zero) less their mean, every entry summed
    over those rows in ascending order: the same bits for any thread count."""
    n, d = f.shape
    out = torch.empty((d, d), dtype=torch.float64, device=f.device)
    workspace = torch.empty(n + d, dtype=torch.float64, device=f.device)
    backend = backend_for(f.device)
    with on_device(f.device), kernel_team():
        backend.fisher_product(
            _feature_view(backend, f),
            laplacian.data_ptr(),
            workspace.data_ptr(),
            out.data_ptr(),
            stream_for(f.device),
        )
    return out


def implicit_pairs(p: GeneratedPairs) -> torch.Tensor:
    """(count, 2) int64 pairs of a generated pool, as the kernels compute them."""
    out = torch.empty((p.count, 2), dtype=torch.int64, device=p.device)
    if p.count:
        backend = backend_for(p.device, "pairs")
        with on_device(p.device):
            backend.implicit_pairs(_pair_view(backend, p), out.data_ptr(), stream_for(p.device))
    return out


def generated_chunks(p: GeneratedPairs, size: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(local offset, (m, 2) int64 pairs) of a generated pool, ``size`` pairs at a time: for
    the kernels that take stored pairs, without all of them held at once."""
    for start in range(0, p.count, size):
        yield start, implicit_pairs(p.part(start, min(p.count, start + size)))


# ---- the greedy engine ------------------------------------------------------------------------


class QuotaTensors(NamedTuple):
    """A per-prompt quota of the greedy engine (csrc views.h: PromptQuota), int64 tensors on
    the engine's device: at most ``limit`` chosen pairs per prompt; ``prompt_of`` (n,) each
    response's prompt in [0, prompts); ``offsets`` (prompts + 1,) and ``pairs`` the CSR index of
    the engine's pairs by prompt; ``used`` (prompts,) the chosen pairs of each prompt, which
    the engine updates in place."""

    limit: int
    prompt_of: torch.Tensor
    offsets: torch.Tensor
    pairs: torch.Tensor
    used: torch.Tensor


class RewardRows(NamedTuple):
    """Fisher weights the greedy sweep computes from rewards rather than reads (csrc views.h:
    RewardWeights): member e's weight is the mean Bradley-Terry weight over ``rows`` rows of
    ``rewards`` ((members * rows, n) float64) from row e * rows, as :func:`fisher_weights`."""

    rewards: torch.Tensor
    rows: int
    members: int


class UnitWeights(NamedTuple):
    """Every weight 1, for ``members`` members, read from no array (csrc views.h: a null
    GreedyProblem::weights): the dense sweep skips the P E doubles a stored (P, E) array of
    ones would stream. The lazy sweep copies its weights into its records: where it may run,
    :class:`GreedyEngine` stores the ones."""

    members: int


# the greedy engine's weights: stored (P, E), computed in the sweep, or all 1
Weights = torch.Tensor | RewardRows | UnitWeights


def weight_members(weights: Weights) -> int:
    """E, the members the weights are given for."""
    return weights.shape[1] if isinstance(weights, torch.Tensor) else weights.members


def lazy_may_run(
    count: int, steps: int, members: int, lazy: bool | str, device: torch.device
) -> bool:
    """Whether ``lazy`` may choose the lazy sweep for ``count`` stored pairs, ``steps`` steps and
    ``members`` members on ``device`` (it needs the weights stored; the dense sweep does not)."""
    if lazy is True:
        return True
    small = count < LAZY_MIN_PAIRS or steps < LAZY_MIN_STEPS
    return lazy == "auto" and not small and members == 1 and device.type == "cpu"


def weights_in_sweep(count: int, members: int, device: torch.device) -> bool:
    """Whether the dense sweep computes the Fisher weights of ``count`` pairs from the rewards
    rather than reading a stored (P, E) array: on a GPU, where the arithmetic costs less than
    the bytes, and wherever the array would take more than a quarter of the memory available;
    on a CPU a stored weight is 8 bytes of the stream and a computed one an exp and a divide
    (``bench/bench_implicit_pool.py`` measures both)."""
    return device.type == "cuda" or 8 * count * members > available_memory() // 4


class GreedyEngine:
    """One greedy log-det selection's problem and state on one backend.

    ``features`` is (1, n, d) (shared by all members) or (E, n, d); ``weights`` (P, E) float64,
    :class:`RewardRows` for weights computed in the sweep or :class:`UnitWeights` (stored as
    ones where the lazy sweep may run for ``steps``); ``scores`` (P, E) float64, ``factor``
    (E, d, d) float64 with S S^T = F0^-1 per member; scores and factor are updated in place.
    ``pairs`` are stored (P, 2) or a generated pool's (:class:`GeneratedPairs`, the dense sweep
    only) and may be one shard of a pool whose pair 0 is global pair ``first_index``. A step
    whose chosen pair's running score has drifted from its fresh value by more than
    ``refresh_tolerance`` (relative) stops the engine: its index is ``REFRESH_CHOICE`` and the
    caller recomputes ``scores`` and ``factor`` (:meth:`state_tensors`) from the pairs chosen
    so far before running on. :meth:`run` is the whole single-process selection;
    :meth:`sweep`, :meth:`apply` and :attr:`choice` are its steps, for callers that pick the
    winner among several shards between a sweep and the apply. ``quota`` (optional) limits the
    chosen pairs per prompt: every apply counts its choice and masks the pairs of a prompt it
    fills.
    """

    def __init__(
        self,
        features: torch.Tensor,
        pairs: Pairs,
        weights: Weights,
        *,
        scores: torch.Tensor,
        factor: torch.Tensor,
        feature_scale: float,
        first_index: int = 0,
        refresh_tolerance: float = 0.0,
        lazy: bool | str = False,
        steps: int = 0,
        quota: QuotaTensors | None = None,
    ) -> None:
        self.device = pairs.device
        self.backend = backend_for(self.device)
        self.members = weight_members(weights)
        if isinstance(weights, UnitWeights) and isinstance(pairs, torch.Tensor):
            if lazy_may_run(pairs.shape[0], steps, self.members, lazy, self.device):
                weights = torch.ones(
                    (pairs.shape[0], self.members), dtype=torch.float64, device=self.device
                )
        n, d = features.shape[-2:]
        # the kernels hold only addresses: the engine keeps the tensors alive
        self._inputs = (features, pairs, weights)
        self.scores = scores
        self.factor = factor
        self.problem = self.backend.GreedyProblem(
            _feature_view(self.backend, features, feature_scale),
            self.members,
            0 if features.shape[0] == 1 else n * d,
            _pair_view(self.backend, pairs),
            weights.data_ptr() if isinstance(weights, torch.Tensor) else 0,
            first_index,
            refresh_tolerance,
        )
        if isinstance(weights, RewardRows):
            self.problem.weights_from_rewards(weights.rewards.data_ptr(), weights.rows, n)
        self.quota = quota
        if quota is not None:
            self.problem.quota = self.backend.PromptQuota(
                quota.limit,
                quota.used.shape[0],
                quota.prompt_of.data_ptr(),
                quota.offsets.data_ptr(),
                quota.pairs.data_ptr(),
                quota.used.data_ptr(),
            )
        size = int(self.backend.greedy_workspace_bytes(self.problem))
        # only the part the kernels need zeroed is written (on the CPU, not the feature copy
        # that follows it; on a GPU, all of it)
        self.workspace = torch.empty(size, dtype=torch.uint8, device=self.device)
        self.workspace[: int(self.backend.greedy_zeroed_bytes(self.problem))].zero_()
        self.state = self.backend.GreedyState(
            scores.data_ptr(), factor.data_ptr(), self.workspace.data_ptr()
        )
        self._stream = stream_for(self.device)
        self.lazy = self._lazy_sweep(lazy, steps)

    def _lazy_sweep(self, lazy: bool | str, steps: int) -> Any:
        """The exact lazy sweep (CPU) for ``steps`` downdates when ``lazy`` is True (a
        ValueError where it cannot run) or "auto" (None, the dense sweep, where it cannot:
        on a GPU, or when its memory bound exceeds half the memory available; and where it
        would not pay: below LAZY_MIN_PAIRS pairs or LAZY_MIN_STEPS steps, or with several
        members)."""
        features, pairs, weights = self._inputs
        if isinstance(pairs, GeneratedPairs) or not isinstance(weights, torch.Tensor):
            return None  # the callers ask for the lazy sweep only where lazy_may_run
        if not lazy_may_run(pairs.shape[0], steps, weights.shape[1], lazy, self.device):
            return None
        wanted = lazy is True
        if self.device.type != "cpu":
            if wanted:
                raise ValueError(f"lazy=True runs on the CPU only; the pairs are on {self.device}")
            return None
        if not self.backend.LazyGreedy.supports(self.problem):
            if wanted:
                raise ValueError(
                    "lazy=True needs fewer than 2**32 pairs and 2**31 responses, got "
                    f"{pairs.shape[0]} pairs of {features.shape[-2]} responses"
                )
            return None
        needed = int(self.backend.LazyGreedy.memory_bound(self.problem, steps))
        available = available_memory()
        if needed > available // 2:
            if wanted:
                raise ValueError(
                    f"lazy=True may need {needed / 2**30:.2f} GiB for {steps} steps over "
                    f"{pairs.shape[0]} pairs, more than half of the "
                    f"{available / 2**30:.2f} GiB available; use lazy=False"
                )
            return None
        return self.backend.LazyGreedy(self.problem, steps)

    def state_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (P, E) scores and (E, d, d) factor the engine updates in place."""
        return self.scores, self.factor

    @property
    def choice(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The GreedyChoice record as float64 and int64 views of the same 8-byte slots:
        [score, index, first, second, weight of each member...]; read float64 slot 0 and the
        weights, int64 slots 1 to 3."""
        record = self.workspace[: 8 * int(self.backend.choice_slots)]
        return record.view(torch.float64), record.view(torch.int64)

    def run(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """k greedy steps: the chosen global indices and their gains (-1 and NaN once no pair
        has a finite score; REFRESH_CHOICE and NaN from a step that needs a refresh on)."""
        chosen = torch.empty(k, dtype=torch.int64, device=self.device)
        gains = torch.empty(k, dtype=torch.float64, device=self.device)
        # the compiled loop retunes its team within the count it starts with (TeamTuner)
        with on_device(self.device), kernel_team():
            if self.lazy is not None:
                self.lazy.run(self.problem, self.state, k, chosen.data_ptr(), gains.data_ptr())
            else:
                self.backend.greedy_run(
                    self.problem, self.state, k, chosen.data_ptr(), gains.data_ptr(), self._stream
                )
        return chosen, gains

    def sweep(self, downdate: bool) -> None:
        """Downdate every score by the last applied choice (if ``downdate``) and write this
        shard's best pair to :attr:`choice`."""
        if self.lazy is not None:
            self.lazy.sweep(self.problem, self.state, downdate)
            return
        with on_device(self.device):
            self.backend.greedy_sweep(self.problem, self.state, downdate, self._stream)

    def apply(
        self, step: int, chosen: torch.Tensor, gains: torch.Tensor, prepare_next: bool
    ) -> None:
        """Apply :attr:`choice` as step ``step`` (recorded in ``chosen``/``gains``)."""
        with on_device(self.device):
            self.backend.greedy_apply(
                self.problem,
                self.state,
                step,
                chosen.data_ptr(),
                gains.data_ptr(),
                prepare_next,
                self._stream,
            )
