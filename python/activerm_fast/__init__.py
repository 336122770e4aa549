"""activerm_fast: choose the comparison pairs worth labelling for Bradley-Terry reward models."""

from .backends import build_info
from .kernels import (
    Selection,
    fisher_matrix,
    fisher_weights,
    greedy_logdet,
    pair_diff,
    pair_quadform,
)

__all__ = [
    "Selection",
    "build_info",
    "fisher_matrix",
    "fisher_weights",
    "greedy_logdet",
    "pair_diff",
    "pair_quadform",
]
