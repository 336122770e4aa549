"""Simulated labelling campaigns: the active loop, oracles, the strategy comparison, plots."""

from .loop import ActiveLoop, LoopConfig
from .oracle import BTOracle, PairLabelOracle
from .simulate import simulate

__all__ = ["ActiveLoop", "BTOracle", "LoopConfig", "PairLabelOracle", "simulate"]
