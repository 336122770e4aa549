"""activerm_fast: choose the comparison pairs worth labelling for Bradley-Terry reward models."""

from . import (
    _openmp,  # noqa: F401  (first: loads the OpenMP runtime with idle threads asleep)
    data,
    metrics,
    model,
    oracle,
    pairs,
)
from ._launch import build_info
from .data import Dataset, embed_texts, from_arrays, load, synthetic
from .kernels import (
    Selection,
    fisher_matrix,
    fisher_weights,
    greedy_logdet,
    pair_diff,
    pair_quadform,
)
from .loop import ActiveLoop, LoopConfig
from .metrics import BestOfN, best_of_n, pair_accuracy, within_prompt_spearman
from .model import FitHistory, RewardModel
from .oracle import BTOracle, PairLabelOracle
from .preference_data import (
    ExportSummary,
    export_preferences,
    import_preferences,
    load_preferences,
    read_annotations,
    read_simulation_labels,
)
from .selectors import STRATEGIES, select, select_with_model
from .simulate import simulate

__all__ = [
    "STRATEGIES",
    "ActiveLoop",
    "BTOracle",
    "BestOfN",
    "Dataset",
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
