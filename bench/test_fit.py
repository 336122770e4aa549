"""The reward-head fit: one epoch of RewardModel (E stacked heads) against E separate
nn.Sequential heads trained one after another, bench_fit.py's baseline (imported from it).

Ladder: small heads on a small pool, bench_fit.py's "small heads" scenario, and MiniLM-sized
embeddings (384-d) under 2 x 256 heads; bench_fit.py's own table keeps the 2,048-d issue size.
Rates: GFLOP/s of one epoch's forward and backward passes (Scenario.training_flops).
"""

from __future__ import annotations

from typing import Any

import pytest
from bench_fit import SCENARIOS, Scenario, looped_epoch, make_task, stacked_epoch
from harness import Size, measure, record

LADDER = {
    "small": Scenario("small", dim=32, hidden=(64, 64), ensemble=5, pairs=2_000, responses=1_000),
    "medium": next(s for s in SCENARIOS if s.name == "small heads"),
    "large": Scenario("large", dim=384, hidden=(256, 256), pairs=10_000, responses=5_000),
}
EPOCHS = {"activerm_fast RewardModel": stacked_epoch, "loop of nn.Sequential": looped_epoch}


@pytest.mark.parametrize("implementation", list(EPOCHS))
@pytest.mark.parametrize("size", list(LADDER))
def test_fit(benchmark: Any, size: str, implementation: str) -> None:
    benchmark.group = "fit"
    scenario = LADDER[size]
    record(
        benchmark,
        Size(size, scenario.responses, scenario.dim, scenario.pairs, 0),
        implementation,
        reference=implementation.startswith("activerm_fast"),
        flops=scenario.training_flops(),
        E=scenario.ensemble,
        head="-".join(map(str, [scenario.dim, *scenario.hidden, 1])),
    )
    measure(benchmark, EPOCHS[implementation](scenario, *make_task(scenario)))
