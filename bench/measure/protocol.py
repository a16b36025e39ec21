"""The measurement protocol: warm-up and timed loop inside a round; how many rounds.

A round is one fresh runner process per cell. Inside it, a warm-up (runs and a minimum
time) and a timed loop that stops once it has `min_runs` and `min_s`, or at `max_s`, as
TFLite's benchmark_model does. Rounds are interleaved across the cells of a device. The
adaptive protocol (`bench.measure.stopping`) takes a pilot of `min_rounds` rounds, plans
from it the rounds each family needs for a ±`target` interval on what it reports, and
stops there, at `max_rounds`, or when the device's time budget is spent.

Defaults, chosen for the default local run (MobileNetV2 and V1, every recipe, XNNPACK:
12 cells, about 0.7 s a cell-round here) to stay within its 90 s warm time goal with
honest intervals: a pilot of 5 rounds (fewer makes the t multiplier, and so the planned
rounds, explode: t(0.975, 2) = 4.30 against t(0.975, 4) = 2.78), a ±2% target (at a 2%
round CV it needs about 8 rounds; ±1% would need about 31), at most 30 rounds, and a
budget of 6 s per cell (at least 60 s). On a machine noisier than that the budget ends
the second stage and the table says the interval is wider than the target.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

DEFAULT_BUDGET_PER_CELL_S = 6.0
DEFAULT_BUDGET_FLOOR_S = 60.0  # a small sweep may take a minute to reach its target


@dataclass(frozen=True)
class Protocol:
    warmup_runs: int = 1
    warmup_min_s: float = 0.2
    min_runs: int = 10
    min_s: float = 0.3
    max_s: float = 60.0
    min_rounds: int = 5  # the pilot, under the adaptive protocol
    max_rounds: int = 30
    target: float = 0.02  # relative half-width of each family's reported intervals
    budget_s: float | None = None  # per device; None: 6 s per cell, at least 60 s
    cooldown_s: float = 0.0
    input_seed: int = 0

    @classmethod
    def quick(cls) -> Protocol:
        """For smoke tests: one short round per cell; figures carry no interval."""
        return cls(warmup_runs=1, warmup_min_s=0.0, min_runs=5, min_s=0.05, max_s=5.0,
                   min_rounds=1, max_rounds=1)

    @classmethod
    def benchmark_model(cls) -> Protocol:
        """TFLite benchmark_model's defaults, one round: for comparisons with that tool."""
        return cls(warmup_runs=1, warmup_min_s=0.5, min_runs=50, min_s=1.0, max_s=150.0,
                   min_rounds=1, max_rounds=1)

    def with_rounds(self, rounds: int) -> Protocol:
        """A fixed number of rounds, no adaptive stopping."""
        return replace(self, min_rounds=rounds, max_rounds=rounds)

    @property
    def adaptive(self) -> bool:
        return self.max_rounds > self.min_rounds

    def budget_for(self, cells: int) -> float:
        if self.budget_s is not None:
            return self.budget_s
        return max(DEFAULT_BUDGET_FLOOR_S, DEFAULT_BUDGET_PER_CELL_S * cells)

    def loop_settings(self) -> dict:
        """What the runner needs for one round."""
        keys = ("warmup_runs", "warmup_min_s", "min_runs", "min_s", "max_s", "input_seed")
        return {k: getattr(self, k) for k in keys}

    def to_dict(self) -> dict:
        return asdict(self)
