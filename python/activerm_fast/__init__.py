"""activerm_fast: choose the comparison pairs worth labelling for Bradley-Terry reward models."""

from . import pairs
from .backends import build_info
from .kernels import (
    Selection,
    fisher_matrix,
    fisher_weights,
    greedy_logdet,
    pair_diff,
    pair_quadform,
)
from .selectors import STRATEGIES, select, select_with_model

__all__ = [
    "STRATEGIES",
    "Selection",
    "build_info",
    "fisher_matrix",
    "fisher_weights",
    "greedy_logdet",
    "pair_diff",
    "pair_quadform",
    "pairs",
    "select",
    "select_with_model",
]
