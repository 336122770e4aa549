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
from .selectors import STRATEGIES, select, select_with_model
from .simulate import simulate

__all__ = [
    "STRATEGIES",
    "ActiveLoop",
    "BTOracle",
    "BestOfN",
    "Dataset",
    "FitHistory",
    "LoopConfig",
    "PairLabelOracle",
    "RewardModel",
    "Selection",
    "best_of_n",
    "build_info",
    "data",
    "embed_texts",
    "fisher_matrix",
    "fisher_weights",
    "from_arrays",
    "greedy_logdet",
    "load",
    "metrics",
    "model",
    "oracle",
    "pair_accuracy",
    "pair_diff",
    "pair_quadform",
    "pairs",
    "select",
    "select_with_model",
    "simulate",
    "synthetic",
    "within_prompt_spearman",
]
