"""What the trends page shows, as data: each benchmark's runs, its change points, and the
gate's verdicts of the latest night.

Every verdict is the gate's rule (`bench.regress.decision`, `bench.commands.compare`):
the latest night is `compare_runs` against the run's own gate settings (else `last:10`),
exactly what `bench compare` says; a change point is the same rule applied run by run (a
run against up to 10 earlier runs of the benchmark on the same hardware, judged with the
night's other benchmarks) but without the longer history `compare_runs` adds, so for the
newest run a change point and the night's verdict can differ where that history matters.

Each shown run is read once (on every core: forked workers, each with its own read-only
store), and the night's judgement reads them from the same `RunCache`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.commands.compare import Row, compare_runs, what_changed
from bench.errors import UsageError
from bench.regress.decision import ALPHA, MIN_EFFECT, Comparison, Verdict, compare, family_adjust
from bench.regress.history import (
    Benchmark,
    Measured,
    RunBenchmarks,
    RunCache,
    completed_runs,
    resolve_baseline,
    run_benchmarks,
)
from bench.report.dashboard.forked import fork_map, forking
from bench.store import open_store

MAX_RUNS = 60  # newest completed runs shown
PREVIOUS_RUNS = 10  # earlier runs a change point is judged against
DEFAULT_BASELINE = "last:10"
SERIAL_BELOW = 4  # runs: fewer are read here (a pool costs more than it saves)
CHANGES = (Verdict.REGRESSED, Verdict.IMPROVED)


@dataclass(frozen=True)
class GateSettings:
    baseline: str
    min_effect: float
    alpha: float
    source: str  # where these came from, said on the page


@dataclass
class Night:
    """The newest completed run judged by the gate; `message` says why not when it was not."""

    run_id: str | None
    settings: GateSettings
    base_ids: list[str] = field(default_factory=list)
    per_benchmark: int | None = None  # last:K: each benchmark's K newest of base_ids
    rows: list[Row] = field(default_factory=list)
    message: str | None = None


@dataclass(frozen=True)
class Change:
    benchmark: Benchmark
    before: Measured  # the newest earlier run it was compared with
    at: Measured  # the run of the change
    comparison: Comparison
    changed: tuple[str, ...]


@dataclass
class Trends:
    runs: list[dict]  # the completed runs shown, oldest first
    total: int  # completed runs in the store
    history: dict[Benchmark, list[Measured]]  # each benchmark's measured runs, oldest first
    changes: list[Change]  # oldest first
    night: Night


def _fraction(value, high: float) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and 0 < value < high else None


def gate_settings(gates: list[dict]) -> GateSettings:
    """The newest gate recorded with the run (`bench run --baseline`: its baseline ref,
    min_effect and alpha as fractions), else the defaults; what was not usable is named."""
    if not gates:
        return GateSettings(DEFAULT_BASELINE, MIN_EFFECT, ALPHA, "defaults (no gate was "
                            "recorded with the run)")
    gate = gates[-1]
    baseline = gate.get("ref") if isinstance(gate.get("ref"), str) and \
        gate.get("ref").strip() else None
    min_effect = _fraction(gate.get("min_effect"), 1.0)
    alpha = _fraction(gate.get("alpha"), 0.5)
    unusable = [name for name, value in (("baseline", baseline), ("min_effect", min_effect),
                                         ("alpha", alpha)) if value is None]
    source = f"the gate recorded with the run ({str(gate.get('judged_at'))[:19]})" + (
        f" (defaults for {', '.join(unusable)}: missing or out of range)" if unusable else "")
    return GateSettings(baseline or DEFAULT_BASELINE, min_effect or MIN_EFFECT,
                        alpha or ALPHA, source)


def _plan_night(store, completed: list[dict]) -> Night:
    """The newest completed run and its baseline runs, or why there is no verdict."""
    if len(completed) < 2:
        return Night(None, GateSettings(DEFAULT_BASELINE, MIN_EFFECT, ALPHA, "defaults"),
                     message=f"The store has {len(completed)} completed run(s): the gate "
                     "needs the newest run and at least one earlier completed run.")
    new_id = completed[-1]["id"]
    settings = gate_settings(store.gates(new_id))
    night = Night(new_id, settings)
    try:
        baseline = resolve_baseline(store, settings.baseline, before=new_id)
        night.base_ids, night.per_benchmark = baseline.runs, baseline.per_benchmark
    except UsageError as exc:
        night.message = f"No verdicts: baseline {settings.baseline!r}: {exc}"
        return night
    if new_id in night.base_ids:
        night.message = f"No verdicts: run {new_id} cannot be its own baseline."
    return night


def _judge_night(store, night: Night, runs: RunCache) -> list[Row] | str:
    """The gate's rows of the night (or why not), reading the runs `runs` already holds
    from there."""
    try:
        return compare_runs(store, night.base_ids, night.run_id, night.settings.min_effect,
                            night.settings.alpha, per_benchmark=night.per_benchmark,
                            runs=runs)
    except (UsageError, ValueError) as exc:
        return f"No verdicts: the gate could not judge this night ({exc})."


def _read(item: tuple[str, str]) -> RunBenchmarks:
    """In a worker, with a read-only store of its own: that run's benchmarks."""
    path, run_id = item
    store = open_store(Path(path), readonly=True)
    try:
        return run_benchmarks(store, run_id)
    finally:
        store.close()


def _load(store, run_ids: list[str], workers: int | None) -> RunCache:
    """Every shown run's benchmarks, on every core when the store is a file a worker can
    open; the cache the night's judgement then reads them from."""
    cache = RunCache(store)
    path = getattr(store, "path", None)
    if path is None or not forking(len(run_ids), workers, SERIAL_BELOW):
        for run_id in run_ids:
            cache(run_id)
        return cache
    for run_id, found in zip(run_ids, fork_map(_read, [(str(path), r) for r in run_ids],
                                               workers, SERIAL_BELOW), strict=True):
        cache.add(run_id, found)
    return cache


def change_points(nights: Sequence[dict[Benchmark, Measured]], min_effect: float = MIN_EFFECT,
                  alpha: float = ALPHA, previous: int = PREVIOUS_RUNS) -> list[Change]:
    """Runs (oldest first) where a benchmark regressed or improved by the gate's rule: its
    round medians against up to `previous` earlier runs of it on the same hardware
    (history=None), Bonferroni over that night's benchmarks."""
    seen: dict[Benchmark, list[Measured]] = {}
    found: list[Change] = []
    for benchmarks in nights:
        judged: list[tuple[Benchmark, Measured, Measured, Comparison]] = []
        for benchmark, measured in benchmarks.items():
            earlier = [m for m in seen.get(benchmark, [])
                       if m.fingerprint == measured.fingerprint][-previous:]
            if not measured.medians_us or not earlier:
                continue
            try:
                result = compare(measured.medians_us, [m.medians_us for m in earlier], None,
                                 min_effect=min_effect, alpha=alpha)
            except ValueError:  # a round median that is not a positive latency
                continue
            judged.append((benchmark, measured, earlier[-1], result))
        adjusted = family_adjust([j[3] for j in judged], alpha_family=alpha)
        for (benchmark, measured, before, _), result in zip(judged, adjusted, strict=True):
            if result.verdict in CHANGES:
                found.append(Change(benchmark, before, measured, result,
                                    tuple(what_changed(measured, before))))
        for benchmark, measured in benchmarks.items():
            if measured.medians_us:
                seen.setdefault(benchmark, []).append(measured)
    return found


def _usable(measured: Measured) -> bool:
    """Round medians the gate can judge: some, every one a positive finite latency."""
    return bool(measured.medians_us) and all(v > 0 and math.isfinite(v)
                                             for v in measured.medians_us)


def collect(store, max_runs: int = MAX_RUNS, workers: int | None = None) -> Trends:
    """Everything the trends page shows, each run's benchmarks read once."""
    completed = completed_runs(store)
    shown = completed[-max_runs:] if max_runs > 0 else []
    night = _plan_night(store, completed)
    cache = _load(store, [r["id"] for r in shown], workers)
    if night.run_id is not None and night.message is None:
        rows = _judge_night(store, night, cache)
        if isinstance(rows, str):
            night.message = rows
        else:
            night.rows = rows
            used = {run_id for row in rows for run_id in row.baseline}
            night.base_ids = [run_id for run_id in night.base_ids if run_id in used]
    nights = [{benchmark: measured for benchmark, measured in cache(r["id"]).benchmarks.items()
               if _usable(measured)} for r in shown]
    history: dict[Benchmark, list[Measured]] = {}
    for benchmarks in nights:
        for benchmark, measured in benchmarks.items():
            history.setdefault(benchmark, []).append(measured)
    changes = change_points(nights, night.settings.min_effect, night.settings.alpha)
    return Trends(shown, len(completed), history, changes, night)
