"""What a planned run will take, from the store's history of the same cells.

`bench run --dry-run` measures nothing. Where the store holds an earlier run of a family's
cells (same model, device, threads and backends), its rounds say how noisy each cell's
reported quantity was and how long a cell-round took; Stein's first stage applied to that
spread gives the rounds the family will likely need for the target, what the budget
allows, and the interval to expect. Without history the pilot decides, and the forecast
says so. It is a forecast: the pilot of the run itself makes the decision.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

from bench.analysis import Analysis, analyse
from bench.keys import REFERENCE_RECIPE, FamilyKey
from bench.measure.protocol import Protocol
from bench.measure.student_t import t_quantile
from bench.plan import Plan
from bench.store.base import Store

HISTORY_RUNS = 30  # how far back to look


@dataclass(frozen=True)
class FamilyForecast:
    family: FamilyKey
    run_id: str
    sd_log: float  # spread of the family's noisiest reported quantity, per round
    noisiest: str
    needed: int
    affordable: int
    seconds_per_round: float

    @property
    def rounds(self) -> int:
        return max(1, min(self.needed, self.affordable))

    def expected_half_width(self, pilot: int) -> float:
        return math.expm1(t_quantile(0.975, pilot - 1) * self.sd_log / math.sqrt(self.rounds))


def _spreads(analysis: Analysis, family: FamilyKey, backends: set[str]) -> dict[str, float]:
    """sd of log round medians (reference cells) or of log paired ratios (the others)."""
    rounds = analysis.rounds
    mine = rounds[(rounds["model"] == family.model) & (rounds["device"] == family.device)
                  & (rounds["threads"] == family.threads) & (rounds["usable"] == True)  # noqa: E712
                  & (rounds["backend"].isin(backends))]
    medians: dict[tuple[str, str], dict[int, float]] = {}
    for row in mine.to_dict("records"):
        medians.setdefault((row["recipe"], row["backend"]), {})[row["round"]] = row["summary_us"]
    out = {}
    for (recipe, backend), values in medians.items():
        reference = medians.get((REFERENCE_RECIPE, backend))
        if recipe != REFERENCE_RECIPE and reference:
            logs = [math.log(reference[r] / values[r]) for r in values if r in reference]
            name = f"{recipe} {backend} speedup"
        else:
            logs = [math.log(v) for v in values.values()]
            name = f"{recipe} {backend} latency"
        if len(logs) >= 2:
            out[name] = statistics.stdev(logs)
    return out


def forecast(store: Store, plan: Plan, protocol: Protocol, budget_s: float,
             ) -> tuple[dict[FamilyKey, FamilyForecast], list[FamilyKey]]:
    """Forecasts for the families that have history, and the families that have none."""
    families: dict[FamilyKey, set[tuple[str, str]]] = {}
    for cell in plan.cells:
        families.setdefault(cell.key.family, set()).add((cell.recipe, cell.backend))
    found: dict[FamilyKey, FamilyForecast] = {}
    runs = [r for r in reversed(store.runs()) if r["ok"]][:HISTORY_RUNS]
    for run in runs:
        missing = [f for f in families if f not in found]
        if not missing:
            break
        analysis = analyse(store.facts(run["id"]))
        rounds = analysis.rounds
        for family in missing:
            wanted = families[family]
            mine = rounds[(rounds["model"] == family.model) & (rounds["device"] == family.device)
                          & (rounds["threads"] == family.threads)]
            have = {(r, b) for r, b in zip(mine["recipe"], mine["backend"], strict=True)}
            if not wanted <= have:
                continue
            spreads = _spreads(analysis, family, {b for _, b in wanted})
            seconds = [s for s in mine["host_seconds"] if s is not None and s == s]
            if not spreads or not seconds:
                continue
            noisiest = max(spreads, key=spreads.get)
            sd = spreads[noisiest]
            t = t_quantile(0.975, max(protocol.min_rounds, 2) - 1)
            needed = max(protocol.min_rounds,
                         math.ceil((t * sd / math.log1p(protocol.target)) ** 2))
            found[family] = FamilyForecast(
                family, run["id"], sd, noisiest, min(needed, protocol.max_rounds),
                affordable=protocol.max_rounds,
                seconds_per_round=statistics.median(seconds) * len(wanted))
    # a device round runs every family of the device: the budget is shared between them
    # (a family without history is taken to cost what the others cost on average)
    for device in {f.device for f in found}:
        mine = [f for f in found.values() if f.family.device == device]
        unknown = [f for f in families if f.device == device and f not in found]
        per_device_round = sum(f.seconds_per_round for f in mine) * (1 + len(unknown) / len(mine))
        affordable = max(protocol.min_rounds, int(budget_s // per_device_round) + 1)
        for item in mine:
            found[item.family] = dataclasses.replace(item, affordable=affordable)
    return found, [f for f in families if f not in found]
