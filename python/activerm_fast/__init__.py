"""activerm_fast: choose the comparison pairs worth labelling for Bradley-Terry reward models."""

import sys

from . import (
    _openmp,  # noqa: F401  (first: loads the OpenMP runtime with idle threads asleep)
    data,
    model,
)
from ._launch import build_info
from .data import Dataset, embed_texts, from_arrays, load, pairs, synthetic
from .data.implicit_pool import ImplicitPool
from .data.preference_data import (
    ExportSummary,
    export_preferences,
    import_preferences,
    load_preferences,
    read_annotations,
    read_simulation_labels,
)
from .kernels import (
    Selection,
    fisher_matrix,
    fisher_weights,
    greedy_logdet,
    pair_diff,
    pair_quadform,
)
from .model import FitHistory, RewardModel, metrics
from .model.metrics import BestOfN, best_of_n, pair_accuracy, within_prompt_spearman
from .selection import STRATEGIES, select, select_with_model
from .simulation import ActiveLoop, BTOracle, LoopConfig, PairLabelOracle, oracle, simulate

# The module paths of the first, flat layout that users import (``activerm_fast.metrics``,
# ``activerm_fast.oracle``, ``activerm_fast.simulate.verdicts``, ``activerm_fast.pairs``) stay
# importable as names of their modules' new homes.
for _name, _module in {
    "metrics": metrics,
    "oracle": oracle,
    "pairs": pairs,
    "simulate": sys.modules[f"{__name__}.simulation.simulate"],
}.items():
    sys.modules[f"{__name__}.{_name}"] = _module

__all__ = [
    "STRATEGIES",
    "ActiveLoop",
    "BTOracle",
    "BestOfN",
    "Dataset",
    "ImplicitPool",
    "ExportSummary",
    "FitHistory",
    "LoopConfig",
    "PairLabelOracle",
    "RewardModel",
    "Selection",
    "best_of_n",
    "build_info",
    "data",
    "embed_texts",
    "export_preferences",
    "fisher_matrix",
    "fisher_weights",
    "from_arrays",
    "greedy_logdet",
    "import_preferences",
    "load",
    "load_preferences",
    "metrics",
    "model",
    "oracle",
    "pair_accuracy",
    "pair_diff",
    "pair_quadform",
    "pairs",
    "read_annotations",
    "read_simulation_labels",
    "select",
    "select_with_model",
    "simulate",
    "synthetic",
    "within_prompt_spearman",
]
