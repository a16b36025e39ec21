"""Benchmarks across runs: what each run measured of each benchmark, for the gate.

A benchmark's identity across runs is (model, recipe, device, backend, threads), where the
model is its zoo name with options and weights (`mobilenet_v2:imagenet`) or the user
file's path: the weights are part of the identity, the file's bytes are not. A changed
model hash, runtime or converter version is what a nightly gate exists to catch: it is
reported as "what changed", never as a reason not to compare. Only another device
fingerprint (other hardware: CPU model, features, count, architecture) is not comparable.

Round medians come from `bench.analysis.gate_cells` (usable rounds, shown status: the rules
`analyse` itself applies), so the gate judges exactly the figures every report shows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import NamedTuple

from bench.errors import UsageError
from bench.store.base import Store
from bench.usable import gate_cells, latest_devices


class Benchmark(NamedTuple):
    model: str
    recipe: str
    device: str
    backend: str
    threads: int

    @property
    def label(self) -> str:
        return f"{self.model} {self.recipe} on {self.device}/{self.backend}/t{self.threads}"


@dataclass
class Measured:
    """One run's measurement of one benchmark, with what identified it then."""

    run_id: str
    started_at: str
    medians_us: list[float]
    sha256: str | None
    fingerprint: str | None
    versions: dict = field(default_factory=dict)  # runtime, converter, harness, runner
    pilot_rounds: int | None = None  # rounds planned from a pilot: its interval is Stein's


@dataclass
class RunBenchmarks:
    run: dict
    benchmarks: dict[Benchmark, Measured]


def fingerprint(device: dict) -> str | None:
    """Other hardware, another fingerprint: CPU model, its features, count, architecture
    (None when the device reported none of them)."""
    parts = [device.get("cpu_model"), sorted(device.get("cpu_flags") or []),
             device.get("cpu_count"), device.get("machine")]
    if not any(parts):
        return None
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:12]


def run_benchmarks(store: Store, run_id: str) -> RunBenchmarks:
    facts = store.facts(run_id)
    devices = latest_devices(facts)
    variants = {(v["model"], v["recipe"]): v for v in facts.variants}
    found: dict[Benchmark, Measured] = {}
    for cell in gate_cells(facts):
        if cell["status"] != "ok":
            continue
        variant = variants.get((cell["model"], cell["recipe"]), {})
        device = devices.get(cell["device"], {})
        source = variant.get("source") or cell["model"]
        converter = ((variant.get("cache_key") or {}).get("converter") or {}).get("tensorflow")
        found[Benchmark(source, cell["recipe"], cell["device"], cell["backend"],
                        int(cell["threads"]))] = Measured(
            run_id=run_id, started_at=str(facts.run["started_at"]),
            medians_us=[float(m) for m in cell["medians_us"]], sha256=cell.get("sha256"),
            pilot_rounds=cell["pilot_rounds"],
            fingerprint=fingerprint(device),
            versions={"runtime": " ".join(str(device[k]) for k in ("runtime_name",
                                                                    "runtime_version")
                                          if device.get(k)) or None,
                      "converter": converter, "harness": facts.run.get("harness_version"),
                      "runner": device.get("runner_version")})
    return RunBenchmarks(facts.run, found)


class RunCache:
    """Each run's benchmarks, read once: a night's comparison and the trend pages read
    the same earlier runs many times."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._found: dict[str, RunBenchmarks] = {}

    def add(self, run_id: str, found: RunBenchmarks) -> None:
        """A run read elsewhere (e.g. by a worker process)."""
        self._found[run_id] = found

    def __call__(self, run_id: str) -> RunBenchmarks:
        if run_id not in self._found:
            self._found[run_id] = run_benchmarks(self.store, run_id)
        return self._found[run_id]


def completed_runs(store: Store) -> list[dict]:
    """Runs whose every cell finished, oldest first."""
    return [r for r in store.runs() if r["status"] == "completed"]


@dataclass(frozen=True)
class Baseline:
    """What a baseline reference resolved to: `runs`, oldest first, and for `last:K` the K
    (`per_benchmark`): each benchmark is then judged against the K newest of those runs
    that contain it on the same device fingerprint."""

    ref: str
    runs: list[str]
    per_benchmark: int | None = None


def resolve_baseline(store: Store, ref: str, before: str | None = None,
                     first_night: bool = False) -> Baseline:
    """What a baseline reference names, among the completed runs before `before`: a run
    id, `latest` or a label (that run); `last:K` (every such run a candidate, K per
    benchmark: `Baseline.per_benchmark`). With `first_night`, `latest` or `last:K` finding
    no completed run is no baseline at all (a nightly's first night), not an error."""
    runs = store.runs()
    if ref in {r["id"] for r in runs}:
        return Baseline(ref, [ref])
    done = _completed_before(runs, before)
    if ref == "latest" or ref.startswith("last:"):
        count = None if ref == "latest" else _last_count(ref)
        if not done:
            if first_night:
                return Baseline(ref, [], count)
            raise UsageError("no completed run to compare with (`bench runs` lists them)")
        return Baseline(ref, [r["id"] for r in done] if count else [done[-1]["id"]], count)
    labelled = [r for r in done if r.get("label") == ref]
    if labelled:
        return Baseline(ref, [labelled[-1]["id"]])
    raise UsageError(f"no run {ref!r} in the store: give a run id (`bench runs`), latest, "
                     "last:K or a run label")


def resolve_run(store: Store, ref: str) -> str:
    """The one run a reference names: a run id, `latest` or a label (`last:K` names
    several, so it is a usage error here)."""
    if ref.startswith("last:") and ref not in {r["id"] for r in store.runs()}:
        raise UsageError(f"{ref!r} names several runs; give one run id, latest or a label")
    return resolve_baseline(store, ref).runs[0]


def _last_count(ref: str) -> int:
    try:
        count = int(ref[5:])
    except ValueError:
        count = 0
    if count < 1:
        raise UsageError(f"{ref!r}: last:K takes a positive number of runs, e.g. last:10")
    return count


def _completed_before(runs: list[dict], before: str | None) -> list[dict]:
    """The completed runs (oldest first) that started before run `before`."""
    done = [r for r in runs if r["status"] == "completed"]
    if before is not None:
        cut = next((r["started_at"] for r in runs if r["id"] == before), None)
        done = [r for r in done if r["id"] != before and (cut is None or r["started_at"] < cut)]
    return done
