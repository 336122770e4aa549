"""Typed interface of the compiled CPU extension module `_core` (`_cuda.pyi` re-uses it).

Both expose the same kernels (csrc/python/bindings.h); every address is an integer (torch's
``data_ptr()``), and `_launch` is the only caller.
"""

backend: str
compiler: str
max_members: int
refresh_choice: int
choice_slots: int
feature_dtypes: dict[str, int]  # FeatureView's dtype code of each feature dtype name

class FeatureView:
    @property
    def n(self) -> int: ...
    @property
    def d(self) -> int: ...
    @property
    def scale(self) -> float: ...
    def __init__(self, data: int, dtype: int, n: int, d: int, scale: float = 1.0) -> None: ...

class PairView:
    @property
    def count(self) -> int: ...
    def __init__(self, data: int, is_int64: bool, count: int) -> None: ...
    @staticmethod
    def generated(
        kind: int,
        key: int,
        first: int,
        count: int,
        n: int,
        eligible: int,
        spread: float,
        order: int,
        runs: int,
        draw_from: int,
    ) -> PairView: ...

class PromptQuota:
    """A per-prompt quota of the greedy engine (views.h: PromptQuota)."""

    @property
    def limit(self) -> int: ...
    @property
    def prompts(self) -> int: ...
    def __init__(
        self, limit: int, prompts: int, prompt_of: int, offsets: int, pairs: int, used: int
    ) -> None: ...

class GreedyProblem:
    refresh_tolerance: float
    quota: PromptQuota
    def __init__(
        self,
        features: FeatureView,
        members: int,
        member_stride: int,
        pairs: PairView,
        weights: int,
        first_index: int = 0,
        refresh_tolerance: float = 0.0,
    ) -> None: ...
    def weights_from_rewards(self, rewards: int, rows: int, n: int) -> None: ...

class GreedyState:
    def __init__(self, scores: int, factor: int, workspace: int) -> None: ...

class LazyGreedy:
    """The exact lazy sweep (CPU only): csrc/cpu/lazy_greedy_cpu.h."""

    def __init__(self, problem: GreedyProblem, capacity: int) -> None: ...
    @staticmethod
    def supports(problem: GreedyProblem) -> bool: ...
    @staticmethod
    def memory_bound(problem: GreedyProblem, capacity: int) -> int: ...
    def sweep(self, problem: GreedyProblem, state: GreedyState, downdate: bool) -> None: ...
    def run(
        self, problem: GreedyProblem, state: GreedyState, k: int, chosen: int, gains: int
    ) -> None: ...
    @property
    def sweeps(self) -> int: ...
    @property
    def refreshed(self) -> int: ...
    @property
    def downdates(self) -> int: ...

def pair_diff(features: FeatureView, pairs: PairView, out: int, stream: int) -> None: ...
def fisher_weights(
    rewards: int,
    rewards_double: bool,
    members: int,
    n: int,
    pairs: PairView,
    out: int,
    stream: int,
) -> None: ...
def pair_quadform(
    features: FeatureView, pairs: PairView, projected: int, scale: float, out: int, stream: int
) -> None: ...
def fisher_matrix(
    features: FeatureView, pairs: PairView, weights: int, out: int, stream: int
) -> None: ...
def fisher_product(
    features: FeatureView, laplacian: int, workspace: int, out: int, stream: int
) -> None: ...
def implicit_pairs(pairs: PairView, out: int, stream: int) -> None: ...
def greedy_workspace_bytes(problem: GreedyProblem) -> int: ...
def greedy_zeroed_bytes(problem: GreedyProblem) -> int: ...
def greedy_sweep(
    problem: GreedyProblem, state: GreedyState, downdate: bool, stream: int
) -> None: ...
def greedy_apply(
    problem: GreedyProblem,
    state: GreedyState,
    step: int,
    chosen: int,
    gains: int,
    prepare_next: bool,
    stream: int,
) -> None: ...
def greedy_run(
    problem: GreedyProblem, state: GreedyState, k: int, chosen: int, gains: int, stream: int
) -> None: ...
def max_threads() -> int: ...
def wide_vectors() -> bool: ...
def project_features(features: FeatureView, matrix: int, columns: int, out: int) -> None:
    """CPU only, where wide_vectors(): csrc/cpu/feature_projection_cpu.h."""
