"""Typed interface of `_cuda`: the kernels and views of `_core` (one binding template serves
both, csrc/python/bindings.h), plus the device queries."""

from ._core import FeatureView as FeatureView
from ._core import GreedyProblem as GreedyProblem
from ._core import GreedyState as GreedyState
from ._core import PairView as PairView
from ._core import PromptQuota as PromptQuota
from ._core import backend as backend
from ._core import choice_slots as choice_slots
from ._core import compiler as compiler
from ._core import feature_dtypes as feature_dtypes
from ._core import fisher_matrix as fisher_matrix
from ._core import fisher_product as fisher_product
from ._core import fisher_weights as fisher_weights
from ._core import greedy_apply as greedy_apply
from ._core import greedy_run as greedy_run
from ._core import greedy_sweep as greedy_sweep
from ._core import greedy_workspace_bytes as greedy_workspace_bytes
from ._core import greedy_zeroed_bytes as greedy_zeroed_bytes
from ._core import implicit_pairs as implicit_pairs
from ._core import max_members as max_members
from ._core import pair_diff as pair_diff
from ._core import pair_quadform as pair_quadform
from ._core import refresh_choice as refresh_choice

def device_count() -> int: ...
def runtime_version() -> int: ...
def driver_version() -> int: ...
