"""Selection: the :func:`select` API, the strategy registry, the design objective and the ridge."""

from .api import FEATURE_CHOICES, RIDGE_MODES, STRATEGIES, select, select_with_model

__all__ = ["FEATURE_CHOICES", "RIDGE_MODES", "STRATEGIES", "select", "select_with_model"]
