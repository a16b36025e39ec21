"""Benchmarks across runs: what each run measured of each benchmark, for the gate.

A benchmark's identity across runs is (model, recipe, device, backend, threads), where the
model is its zoo name with options and weights (`mobilenet_v2:imagenet`) or the user
file's path: the weights are part of the identity, the file's bytes are not. A changed
model hash, runtime or converter version is what a nightly gate exists to catch: it is
reported as "what changed", never as a reason not to compare. Only another device
fingerprint (other hardware: CPU model, features, count, architecture) is not comparable.

Round medians come from `bench.analysis` (usable rounds only), so the gate judges exactly
the figures every report shows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import NamedTuple

from bench.analysis import analyse
from bench.errors import UsageError
from bench.store.base import Store


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
    analysis = analyse(facts)
    devices = {d["device"]: d for d in analysis.devices.to_dict("records")}
    variants = {(v["model"], v["recipe"]): v for v in facts.variants}
    medians: dict[tuple, list[float]] = {}
    rounds = analysis.rounds
    if not rounds.empty:
        usable = rounds[rounds["usable"].astype(bool)]
        for row in usable.sort_values("round").to_dict("records"):
            key = (row["model"], row["recipe"], row["device"], row["backend"],
                   int(row["threads"]))
            medians.setdefault(key, []).append(float(row["summary_us"]))
    found: dict[Benchmark, Measured] = {}
    for cell in analysis.cells.to_dict("records"):
        if cell["status"] != "ok":
            continue
        key = (cell["model"], cell["recipe"], cell["device"], cell["backend"],
               int(cell["threads"]))
        variant = variants.get((cell["model"], cell["recipe"]), {})
        device = devices.get(cell["device"], {})
        source = variant.get("source") or cell["model"]
        converter = ((variant.get("cache_key") or {}).get("converter") or {}).get("tensorflow")
        found[Benchmark(source, cell["recipe"], cell["device"], cell["backend"],
                        int(cell["threads"]))] = Measured(
            run_id=run_id, started_at=str(facts.run["started_at"]),
            medians_us=medians.get(key, []), sha256=cell.get("sha256"),
            fingerprint=fingerprint(device),
            versions={"runtime": " ".join(str(device[k]) for k in ("runtime_name",
                                                                    "runtime_version")
                                          if device.get(k)) or None,
                      "converter": converter, "harness": facts.run.get("harness_version"),
                      "runner": device.get("runner_version")})
    return RunBenchmarks(facts.run, found)


def completed_runs(store: Store) -> list[dict]:
    """Runs whose every cell finished, oldest first."""
    return [r for r in store.runs() if r["status"] == "completed"]


def resolve(store: Store, ref: str, before: str | None = None) -> list[str]:
    """Run ids for a reference: a run id, `latest` (the newest completed run before
    `before`), `last:K` (the K newest completed runs before it) or a label (the newest
    completed run with that label before it)."""
    runs = store.runs()
    ids = [r["id"] for r in runs]
    if ref in ids:
        return [ref]
    done = completed_runs(store)
    if before is not None:
        cut = next((r["started_at"] for r in runs if r["id"] == before), None)
        done = [r for r in done if r["id"] != before and (cut is None or r["started_at"] < cut)]
    if ref == "latest":
        if not done:
            raise UsageError("no completed run to compare with (`bench runs` lists them)")
        return [done[-1]["id"]]
    if ref.startswith("last:"):
        try:
            count = int(ref[5:])
        except ValueError:
            count = 0
        if count < 1:
            raise UsageError(f"{ref!r}: last:K takes a positive number of runs, e.g. last:10")
        if not done:
            raise UsageError("no completed run to compare with (`bench runs` lists them)")
        return [r["id"] for r in done[-count:]]
    labelled = [r for r in done if r.get("label") == ref]
    if labelled:
        return [labelled[-1]["id"]]
    raise UsageError(f"no run {ref!r} in the store: give a run id (`bench runs`), latest, "
                     "last:K or a run label")
