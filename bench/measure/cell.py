"""One round of one cell on one device: stage, write the job, run the runner, read back.

A cell is (variant, device, backend, threads). Whatever goes wrong in a round
(a runtime that lacks an op, a crash, a hang) comes back as a failed round record
with one line of reason; nothing here raises for a per-cell problem.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bench.devices import Device
from bench.measure.noise import cell_warnings
from bench.measure.protocol import Protocol
from bench.measure.stats import Estimate, cv, estimate, summarize
from bench.transports.base import RemoteError, Transport, TransportError
from bench.zoo.cache import Variant, file_sha256

RUNNER_FILE = Path(__file__).resolve().parent.parent / "runners" / "pyrunner.py"
JOB_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Cell:
    variant: Variant
    device: str
    backend: str
    threads: int

    @property
    def model(self) -> str:
        return self.variant.model

    @property
    def recipe(self) -> str:
        return self.variant.recipe

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.model, self.recipe, self.device, self.backend, self.threads)

    @property
    def label(self) -> str:
        return f"{self.model} {self.recipe} on {self.device}/{self.backend}/t{self.threads}"


class DeviceSession:
    """Staged runner and models on one device, and the rounds measured there."""

    def __init__(self, device: Device, transport: Transport, protocol: Protocol):
        self.device = device
        self.transport = transport
        self.protocol = protocol
        self.work = PurePosixPath(device.work_dir)
        runner_hash = file_sha256(RUNNER_FILE)[:12]
        self.runner_path = str(self.work / f"pyrunner-{runner_hash}.py")
        self._staged: set[str] = set()

    def stage(self, local: Path, remote: str) -> None:
        """Push once; a file the device already holds (named by its hash) is not re-sent."""
        if remote in self._staged:
            return
        if not self.transport.exists(remote):
            self.transport.push(local, remote)
        self._staged.add(remote)

    def model_path(self, variant: Variant) -> str:
        return str(self.work / "models" / f"{variant.sha256}.tflite")

    def job(self, cell: Cell, round_index: int) -> dict:
        return {
            "schema_version": JOB_SCHEMA_VERSION,
            "model_path": self.model_path(cell.variant),
            "backend": cell.backend,
            "threads": cell.threads,
            "tflite_module": self.device.tflite_module,
            "cpus": list(self.device.cpus) if self.device.cpus else None,
            "round": round_index,
            **self.protocol.loop_settings(),
        }

    def run_round(self, cell: Cell, round_index: int) -> dict:
        """A round record; status 'failed' with a reason when anything went wrong."""
        try:
            self.stage(RUNNER_FILE, self.runner_path)
            self.stage(Path(cell.variant.path), self.model_path(cell.variant))
            record = self._run(cell, round_index)
        except RemoteError as exc:  # e.g. its disk is full: its other cells would fail too
            record = {"status": "failed", "error": f"device error: {exc}", "device_lost": True}
        except (TransportError, OSError) as exc:
            # The device itself is gone (the transport already retried): no point in
            # measuring its other cells now.
            record = {"status": "failed", "error": f"device lost: {exc}", "device_lost": True}
        record["round"] = round_index
        return record

    def _run(self, cell: Cell, round_index: int) -> dict:
        token = uuid.uuid4().hex[:12]
        job_remote = str(self.work / "jobs" / f"{token}.job.json")
        result_remote = str(self.work / "jobs" / f"{token}.result.json")
        with tempfile.TemporaryDirectory(prefix="bench-job-") as scratch:
            job_local = Path(scratch) / "job.json"
            job_local.write_text(json.dumps(self.job(cell, round_index)))
            self.transport.push(job_local, job_remote)
            command = [self.device.interpreter, "-I", self.runner_path, job_remote, result_remote]
            outcome = self.transport.run(command, timeout=self.device.timeout_s)
            if outcome.timed_out:
                return {"status": "failed", "host_seconds": outcome.seconds,
                        "error": f"runner timed out after {self.device.timeout_s:g}s and was "
                                 f"killed with its process group; raise timeout_s in "
                                 f"{self.device.file} if the model is just slow"}
            result_local = Path(scratch) / "result.json"
            try:
                self.transport.pull(result_remote, result_local)
                record = json.loads(result_local.read_text())
            except (TransportError, ValueError):
                return {"status": "failed", "host_seconds": outcome.seconds,
                        "error": crash_reason(outcome.returncode, outcome.tail())}
        record["host_seconds"] = outcome.seconds
        if record.get("status") != "ok" and not record.get("error"):
            record["error"] = "runner reported failure without a reason"
        return record


def crash_reason(returncode: int | None, tail: str) -> str:
    if returncode is not None and returncode < 0:
        how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with code {returncode} without writing a result"
    return f"runner {how}" + (f": {tail}" if tail else "")


def ok_rounds(rounds: dict[int, dict]) -> dict[int, dict]:
    return {i: r for i, r in sorted(rounds.items())
            if r.get("status") == "ok" and r.get("latencies_us")}


TARGET_MIN_ROUNDS = 5  # a bootstrap over fewer rounds is too optimistic to stop on


def on_target(latency: Estimate, target: float | None) -> bool:
    """Is the median known within `target` (relative CI half-width), from enough rounds?"""
    width = latency.rel_half_width
    return (target is not None and latency.n >= TARGET_MIN_ROUNDS and width is not None
            and width <= target)


def summarize_cell(cell: Cell, rounds: dict[int, dict], stop_reason: str | None = None,
                   target: float | None = None) -> dict:
    """The stored cell row: status and reason, the median over rounds with its CI."""
    ok = ok_rounds(rounds)
    first = next(iter(ok.values()), None) or next(iter(rounds.values()), {})
    runtime = first.get("runtime") or {}
    row = {
        "model": cell.model, "recipe": cell.recipe, "device": cell.device,
        "backend": cell.backend, "threads": cell.threads, "sha256": cell.variant.sha256,
        "runtime": runtime.get("name"), "runtime_version": runtime.get("version"),
    }
    if not ok:
        errors = [r.get("error") for r in rounds.values() if r.get("error")]
        return {**row, "status": "failed", "reason": errors[0] if errors else "no rounds",
                "summary": {"stop_reason": stop_reason}}
    per_round = {i: summarize(r["latencies_us"]) for i, r in ok.items()}
    medians = {i: s["median"] for i, s in per_round.items()}
    latency = estimate(list(medians.values()))
    rounds_cv = cv(list(medians.values())) if len(medians) > 1 else None
    iterations_cv = statistics.median(s["cv"] for s in per_round.values())
    failed = [r.get("error") for r in rounds.values() if r.get("status") != "ok"]
    warnings = cell_warnings(list(ok.values()), cell.threads, rounds_cv, iterations_cv)
    if failed:
        warnings.append(f"{len(failed)} round(s) failed: {failed[0]}")
    summary = {
        "rounds": len(ok),
        "failed_rounds": len(failed),
        "round_medians_us": {str(i): m for i, m in medians.items()},
        "ci_us": latency.to_dict(),
        "p90_ci_us": estimate([s["p90"] for s in per_round.values()]).to_dict(),
        "rounds_cv": rounds_cv,
        "iterations_cv": iterations_cv,
        "iterations": sum(s["n"] for s in per_round.values()),
        "p99_us": statistics.median(s["p99"] for s in per_round.values()),
        "max_us": max(s["max"] for s in per_round.values()),
        "per_round": {str(i): s for i, s in per_round.items()},
        "init_ms": estimate([r.get("init_ms") or 0.0 for r in ok.values()]).to_dict(),
        "first_inference_us": estimate(
            [r.get("first_inference_us") or 0.0 for r in ok.values()]).to_dict(),
        "peak_memory_kib": max((r.get("peak_memory_kib") or 0) for r in ok.values()),
        "delegation": first.get("delegation"),
        "cpu_model": first.get("cpu_model"),
        "environment": environment_summary(list(ok.values())),
        "warnings": warnings,
        "stop_reason": stop_reason,
        "target": target,
        "reached_target": on_target(latency, target),
    }
    return {**row, "status": "ok", "reason": None, "median_us": latency.value,
            "p90_us": statistics.median(s["p90"] for s in per_round.values()),
            "summary": summary}


def environment_summary(records: list[dict]) -> dict:
    """The worst of each environment figure over a cell's rounds."""
    envs = [r.get("environment") or {} for r in records]
    loads = [e["loadavg"][0] for e in envs if e.get("loadavg")]
    steals = [e["steal"] for e in envs if isinstance(e.get("steal"), float)]
    temps = [e["temperature_c"] for e in envs if isinstance(e.get("temperature_c"), float)]
    return {
        "max_load": max(loads) if loads else "unknown",
        "max_steal": max(steals) if steals else "unknown",
        "max_temperature_c": max(temps) if temps else "unknown",
        "governor": sorted({e.get("governor", "unknown") for e in envs}),
        "affinity": envs[0].get("affinity") if envs else None,
    }
