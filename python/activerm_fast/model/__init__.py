"""The reward model: an ensemble of MLP reward heads, its fit, and the metrics it is judged by."""

from . import metrics
from .reward_model import FitHistory, RewardModel

__all__ = ["FitHistory", "RewardModel", "metrics"]
