"""How many rounds a family gets: Stein's two-stage procedure, versioned.

A family (same model, device, threads: every recipe and backend) is measured round after
round as a whole, so its cells keep paired rounds. Under the adaptive protocol:

1. Pilot: every member gets `pilot` usable rounds.
2. Plan: from the pilot, each member's reported quantity — its speedup over fp32 on the
   same backend when that reference is in the family, else its latency — gives the
   rounds N it needs for a ±target interval (`stats.stein_rounds`); the family takes the
   largest, capped at `max_rounds`. The plan is stored as a fact with the cells.
3. The family stops when every member has N usable rounds (`target`), or earlier when
   the device's time budget runs out (`budget`): its interval is then wider than the
   target, and says so. The final intervals use the pilot's standard deviation
   (`stats.stein_interval`), so stopping never looks at the width it reports.

A fixed protocol (`--rounds N`) stops at N (`fixed_rounds`), with plain t-intervals.

Each decision is stored with PROTOCOL_VERSION, so a later change of this rule never
rewrites the history of an earlier run.
  1: the first release (bootstrap width under the target from 5 rounds on).
  2: as 1, counting only rounds of complete device rounds.
  3: Stein's two-stage procedure on the reported quantity.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from bench.keys import REFERENCE_RECIPE, CellKey, FamilyKey
from bench.measure.protocol import Protocol
from bench.measure.stats import paired_ratios, stein_rounds

PROTOCOL_VERSION = 3
# Why a cell stopped, as stored: target | max_rounds | budget | fixed_rounds decided here;
# failed (a round failed) by the sweep.


@dataclass(frozen=True)
class Plan:
    """A family's second stage: how many rounds it needs, and how many it will get."""

    pilot: int
    needed: int  # rounds for a ±target interval
    planned: int  # needed, capped at the protocol's max_rounds

    @property
    def capped(self) -> bool:
        return self.planned < self.needed


def pilot_series(key: CellKey, members: Sequence[CellKey],
                 medians: Mapping[CellKey, Mapping[int, float]], pilot: int,
                 no_speedup: Collection[CellKey] = ()) -> list[float]:
    """The values a member's plan comes from: its first `pilot` speedups over fp32 on the
    same backend (when that reference is in the family and both report speedups), else
    its first `pilot` round medians."""
    reference = next((m for m in members if m.recipe == REFERENCE_RECIPE
                      and m.backend == key.backend), None)
    mine = dict(sorted(medians.get(key, {}).items())[:pilot])
    if key.recipe != REFERENCE_RECIPE and reference is not None \
            and key not in no_speedup and reference not in no_speedup:
        ratios = paired_ratios(medians.get(reference, {}), mine)
        if len(ratios) >= 2:
            return ratios
    return list(mine.values())


def plan_family(members: Sequence[CellKey], medians: Mapping[CellKey, Mapping[int, float]],
                protocol: Protocol, no_speedup: Collection[CellKey] = ()) -> Plan | None:
    """The family's plan once every member has its pilot rounds; None before."""
    pilot = protocol.min_rounds
    if pilot < 2 or any(len(medians.get(key, {})) < pilot for key in members):
        return None
    needed = max(stein_rounds(pilot_series(key, members, medians, pilot, no_speedup),
                              protocol.target) for key in members)
    return Plan(pilot=pilot, needed=needed, planned=min(needed, protocol.max_rounds))


def decide(families: Mapping[FamilyKey, Sequence[CellKey]],
           medians: Mapping[CellKey, Mapping[int, float]], plans: Mapping[FamilyKey, Plan],
           protocol: Protocol, over_budget: bool) -> dict[CellKey, str]:
    """Which active cells stop now, and why. `medians`: each cell's usable round medians."""
    stopped: dict[CellKey, str] = {}
    for family, members in families.items():
        counts = [len(medians.get(key, {})) for key in members]
        plan = plans.get(family)
        if not protocol.adaptive:
            reason = "fixed_rounds" if max(counts) >= protocol.max_rounds else None
        elif plan is not None and min(counts) >= plan.planned:
            reason = "max_rounds" if plan.capped else "target"
        elif over_budget and min(counts) >= protocol.min_rounds:
            reason = "budget"
        elif max(counts) >= protocol.max_rounds:
            reason = "max_rounds"
        else:
            reason = None
        if reason:
            stopped.update({key: reason for key in members})
    return stopped
