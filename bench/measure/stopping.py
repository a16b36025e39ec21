"""When a family of cells has enough rounds: the stopping rule, versioned.

A family (same model, device, threads) stops as a whole, so its cells keep paired
rounds for the speedups. It stops at the maximum number of rounds, or once over the
time budget with at least the minimum, or (adaptive protocol) when every member knows
its median within the target from at least TARGET_MIN_ROUNDS rounds.

Each decision is stored with PROTOCOL_VERSION, so a later change of this rule never
rewrites the history of an earlier run.
  1: the first release.
  2: only rounds of complete device rounds count (an interrupted round is measured
     again in a new whole round).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.keys import CellKey, FamilyKey
from bench.measure.protocol import Protocol
from bench.measure.stats import Estimate, estimate

PROTOCOL_VERSION = 2
TARGET_MIN_ROUNDS = 5  # a bootstrap over fewer rounds is too optimistic to stop on

# Why a cell stopped (stored); `failed` (a round failed) is decided by the sweep.
STOP_REASONS = ("target", "max_rounds", "budget", "fixed_rounds", "failed")


def on_target(round_medians: Sequence[float], target: float | None) -> bool:
    """Is the median known within `target` (relative CI half-width), from enough rounds?"""
    if target is None or len(round_medians) < TARGET_MIN_ROUNDS:
        return False
    latency: Estimate = estimate(list(round_medians))
    width = latency.rel_half_width
    return width is not None and width <= target


def decide(families: Mapping[FamilyKey, Sequence[CellKey]],
           medians: Mapping[CellKey, Sequence[float]], protocol: Protocol,
           over_budget: bool) -> dict[CellKey, str]:
    """Which active cells stop now, and why. `medians`: each cell's usable round medians."""
    stopped: dict[CellKey, str] = {}
    for members in families.values():
        counts = [len(medians.get(key, ())) for key in members]
        enough = min(counts) >= protocol.min_rounds
        if max(counts) >= protocol.max_rounds:
            reason = "max_rounds" if protocol.adaptive else "fixed_rounds"
        elif enough and over_budget:
            reason = "budget"
        elif enough and protocol.adaptive and all(
                on_target(medians.get(key, ()), protocol.target) for key in members):
            reason = "target"
        else:
            continue
        for key in members:
            stopped[key] = reason
    return stopped
