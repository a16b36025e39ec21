"""Facts in, figures out: the one place where stored facts become figures.

`analyse(facts)` turns a run's stored facts (`bench.store.RunFacts`) into tidy pandas
DataFrames — rounds, cells, speedups, warnings, variants, devices. The terminal table,
`bench report` in every format, the JSON export, and later the dashboard and the
regression gate all read these frames and derive nothing of their own. Nothing here
writes anywhere; the same facts always give the same frames.

Rules, each applied here and nowhere else:
- A round is usable when it succeeded and its device round completed (every cell planned
  in it was measured in one session). A round of an interrupted device round is kept in
  the store and counted, but left out of figures and pairing: its cells were measured
  again in a new whole round.
- A cell's latency is the geometric mean of its usable round medians, with a 95%
  t-interval on their logs; p90, init and first-inference times likewise. When the rounds
  were planned from a pilot (Stein's procedure, `bench.measure.stopping`), every interval
  of the cell uses the pilot's standard deviation (`bench.measure.stats`).
- A delegate backend that took none of the graph (xnnpack with zero DELEGATE nodes) ran
  built-in kernels: the cell's status is `fallback`, with the evidence, and no speedup is
  reported for it or against it as if the delegate had run.
- Speedups are the geometric mean of paired per-round ratios fp32 / variant over rounds
  both cells measured, with the paired t-interval on their logs, on the same backend, and
  against fp32 on the device's first declared CPU backend.
- A cell reached its target when the interval of what it reports (its same-backend
  speedup when it has one, else its latency) is within ±target.
- Unknown is None (NaN in a frame), never 0.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from bench.accuracy.figures import ACCURACY_COLUMNS, accuracy_rows, headline_accuracy
from bench.keys import KEY_COLUMNS, REFERENCE_RECIPE, CellKey, ReferenceKey
from bench.measure.noise import cell_warnings
from bench.measure.stats import Estimate, cv, estimate, paired_ratios
from bench.store.base import RunFacts
from bench.usable import by_cell, cell_status, delegation, judged_rounds

CPU_BACKENDS = ("xnnpack", "cpu")  # what runs on the CPU; the first declared is the reference
TINY_US = 100.0  # under this per inference, the Python invoke() call is a visible part
SAME_BACKEND, VS_CPU_FP32 = "same_backend", "vs_cpu_fp32"


@dataclass
class Analysis:
    run: dict
    rounds: pd.DataFrame
    cells: pd.DataFrame
    speedups: pd.DataFrame
    warnings: pd.DataFrame
    variants: pd.DataFrame
    devices: pd.DataFrame
    # Accuracy per variant, device, backend and dataset (`bench.accuracy.figures`).
    accuracy: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=ACCURACY_COLUMNS))
    _speedup_index: dict | None = field(default=None, repr=False, compare=False)

    def speedup(self, key: Sequence, reference: str) -> dict | None:
        """One speedup row as a dict, or None (the key's sha256 is not compared). Indexed on
        first use: the frames are results, not to be edited afterwards."""
        if self._speedup_index is None:
            names = [n for n in KEY_COLUMNS if n != "sha256"]
            self._speedup_index = {}
            for row in self.speedups.to_dict("records"):
                self._speedup_index.setdefault((*(row[n] for n in names), row["reference"]),
                                               row)
        wanted = tuple(v for n, v in zip(KEY_COLUMNS, key, strict=True) if n != "sha256")
        found = self._speedup_index.get((*wanted, reference))
        return dict(found) if found is not None else None


def _estimate_columns(prefix: str, found: Estimate | None) -> dict:
    if found is None:
        return {prefix: None, f"{prefix}_low": None, f"{prefix}_high": None}
    return {prefix: found.value, f"{prefix}_low": found.low, f"{prefix}_high": found.high}


def _interval(values: list[float], pilot: int | None) -> Estimate | None:
    values = [v for v in values if v is not None and v > 0]
    return estimate(values, pilot) if values else None


def _pilot(cell: dict) -> int | None:
    pilot = cell.get("pilot_rounds")
    return int(pilot) if _present(pilot) else None


def _frame(rows: list[dict], columns: Iterable[str]) -> pd.DataFrame:
    columns = list(columns)
    frame = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    return frame.astype(object).where(frame.notna(), None) if rows else frame


def _key(row: dict) -> CellKey:
    return CellKey(*(row[name] for name in KEY_COLUMNS))


def _present(value) -> bool:
    return value is not None and value == value


def analyse(facts: RunFacts) -> Analysis:
    rounds = judged_rounds(facts)
    rounds_of = by_cell(rounds)

    devices = _devices(facts)
    reference_backend = {d["device"]: d["cpu_reference_backend"] for d in devices}
    random_weights = {(v["model"], v["recipe"]): bool(v["random_weights"])
                      for v in facts.variants}
    sizes = {(v["model"], v["recipe"]): v["size_bytes"] for v in facts.variants}
    cells, warnings, medians = [], [], {}
    for cell in facts.cells:
        row, cell_warns, usable = _cell(cell, rounds_of.get(cell["cell_id"], []))
        row["random_weights"] = random_weights.get((cell["model"], cell["recipe"]), False)
        row["size_bytes"] = sizes.get((cell["model"], cell["recipe"]))
        cells.append(row)
        key = _key(cell)
        warnings += [{**key._asdict(), "warning": text} for text in cell_warns]
        if row["status"] in ("ok", "pending"):
            medians[key.as_reference] = {r["round"]: r["summary_us"] for r in usable}
    speedups = _speedups(facts.cells, cells, medians, reference_backend)
    _judge_targets(cells, speedups, warnings)
    # Accuracy in table order: device, backend, labelled sets first, then the variants'
    # own order (fp32 first), as the cells are listed.
    position = {(v["model"], v["recipe"]): v["position"] if v["position"] is not None else 1e9
                for v in facts.variants}
    accuracy = sorted(accuracy_rows(facts.evaluations), key=lambda r: (
        r["device"], r["backend"], not r["labelled"], r["dataset"],
        position.get((r["model"], r["recipe"]), 1e9), r["model"], r["recipe"]))
    return Analysis(
        run=facts.run,
        rounds=_frame(rounds, list(rounds[0]) if rounds else
                      [*KEY_COLUMNS, "cell_id", "round", "complete", "usable"]),
        cells=_frame(cells, CELL_COLUMNS),
        speedups=_frame(speedups, SPEEDUP_COLUMNS),
        warnings=_frame(warnings, [*KEY_COLUMNS, "warning"]),
        variants=_frame(_variants(facts, headline_accuracy(accuracy)), VARIANT_COLUMNS),
        devices=_frame(devices, DEVICE_COLUMNS),
        accuracy=_frame(accuracy, ACCURACY_COLUMNS),
    )


CELL_COLUMNS = [
    *KEY_COLUMNS, "cell_id", "position", "status", "reason", "stop_reason", "protocol_version",
    "target", "reached_target", "rounds", "incomplete_rounds", "failed_rounds",
    "pilot_rounds", "needed_rounds", "planned_rounds", "interval_method",
    "latency_us", "latency_us_low", "latency_us_high", "latency_rel_half_width",
    "p90_us", "p90_us_low", "p90_us_high", "p99_us", "max_us", "rounds_cv", "iterations_cv",
    "batch", "loop_overhead_us",
    "init_us", "init_us_low", "init_us_high",
    "first_inference_us", "first_inference_us_low", "first_inference_us_high",
    "peak_memory_bytes", "memory_evidence", "delegated", "delegate_nodes", "graph_nodes",
    "delegation_evidence",
    "runtime_name", "runtime_version", "max_loadavg", "max_steal_fraction",
    "max_temperature_c", "governor", "warnings", "random_weights", "size_bytes",
]


def _cell(cell: dict, rounds: list[dict]) -> tuple[dict, list[str], list[dict]]:
    """A cell's figures from its rounds; its warnings; its usable rounds."""
    usable = sorted((r for r in rounds if r["usable"]), key=lambda r: r["round"])
    incomplete = [r for r in rounds if r["status"] == "ok" and not r["complete"]]
    failed = [r for r in rounds if r["status"] != "ok"]
    status, reason = cell_status(cell, rounds, usable)
    medians = [r["summary_us"] for r in usable]
    pilot = _pilot(cell)
    latency = _interval(medians, pilot)
    rounds_cv = cv(medians)
    iteration_cvs = [r["iterations_cv"] for r in usable if _present(r["iterations_cv"])]
    iterations_cv = statistics.median(iteration_cvs) if iteration_cvs else None
    first = usable[0] if usable else None
    delegated = delegation(cell["backend"], usable)
    warns = cell_warnings(usable, cell["threads"], rounds_cv, iterations_cv) if usable else []
    if usable and failed:
        warns.append(f"{len(failed)} round(s) failed: {failed[0]['error']}")
    if incomplete:
        warns.append(f"{len(incomplete)} round(s) of an interrupted device round kept but not "
                     "used (measured again in a whole round)")

    def known(name: str) -> list[float]:
        return [r[name] for r in usable if _present(r[name])]

    batches = [int(b) for b in known("batch")]
    overheads = known("loop_overhead_us")
    if batches and max(batches) > 1:
        warns.append(f"timed in batches of up to {max(batches)} invokes per sample: the timing "
                     f"loop's own {statistics.median(overheads):.2f} µs per sample is over 1% of "
                     "one inference (p90/p99 are of batch means)")
    python_runner = first is not None and first.get("runner_name") in ("python", None)
    if latency is not None and latency.value < TINY_US and python_runner:
        warns.append(f"under {TINY_US:g} µs per inference: the Python runner's invoke() call "
                     "itself (about 1-2 µs) is part of every figure")

    envs = {name: known(name) for name in ("loadavg_1m", "steal_fraction", "temperature_c")}
    governors = sorted({r["governor"] for r in usable if r["governor"]})
    memory = known("peak_memory_bytes")
    row = {
        **{name: cell[name] for name in KEY_COLUMNS}, "cell_id": cell["cell_id"],
        "position": cell["position"], "status": status, "reason": reason,
        "stop_reason": cell["stop_reason"], "protocol_version": cell["protocol_version"],
        "target": cell["target"], "reached_target": None,  # judged with the speedups
        "rounds": len(usable), "incomplete_rounds": len(incomplete),
        "failed_rounds": len(failed), "pilot_rounds": pilot,
        "needed_rounds": cell.get("needed_rounds"), "planned_rounds": cell.get("planned_rounds"),
        "interval_method": latency.method if latency else None,
        **_estimate_columns("latency_us", latency),
        "latency_rel_half_width": latency.rel_half_width if latency else None,
        **_estimate_columns("p90_us", _interval(known("p90_us"), pilot)),
        "p99_us": statistics.median(known("p99_us")) if known("p99_us") else None,
        "max_us": max(known("max_us")) if known("max_us") else None,
        "rounds_cv": rounds_cv, "iterations_cv": iterations_cv,
        "batch": max(batches) if batches else None,
        "loop_overhead_us": statistics.median(overheads) if overheads else None,
        **_estimate_columns("init_us", _interval(known("init_us"), pilot)),
        **_estimate_columns("first_inference_us",
                            _interval(known("first_inference_us"), pilot)),
        "peak_memory_bytes": max(memory) if memory else cell.get("memory_bytes"),
        "memory_evidence": cell.get("memory_evidence") if not memory else "VmHWM per round",
        "delegated": delegated,
        "delegate_nodes": first["delegate_nodes"] if first else None,
        "graph_nodes": first["graph_nodes"] if first else None,
        "delegation_evidence": first["delegation_evidence"] if first else None,
        "runtime_name": first["runtime_name"] if first else None,
        "runtime_version": first["runtime_version"] if first else None,
        "max_loadavg": max(envs["loadavg_1m"]) if envs["loadavg_1m"] else None,
        "max_steal_fraction": max(envs["steal_fraction"]) if envs["steal_fraction"] else None,
        "max_temperature_c": max(envs["temperature_c"]) if envs["temperature_c"] else None,
        "governor": ",".join(governors) if governors else None,
        "warnings": warns,
    }
    return row, warns, usable


SPEEDUP_COLUMNS = [*KEY_COLUMNS, "reference", "reference_backend", "speedup", "speedup_low",
                   "speedup_high", "n", "rel_half_width", "method"]


def _speedups(stored: list[dict], cells: list[dict], medians: dict[ReferenceKey, dict],
              reference_backend: dict[str, str | None]) -> list[dict]:
    """Paired speedups of every measured cell that has its fp32 reference."""
    usable = {(c["cell_id"]): c["status"] in ("ok", "pending") and c["rounds"] > 0
              for c in cells}
    pilots = {c["cell_id"]: c["pilot_rounds"] for c in cells}
    out = []
    for cell in stored:
        key = _key(cell)
        if not usable.get(cell["cell_id"]):
            continue
        references = [(SAME_BACKEND, key.backend)]
        cpu = reference_backend.get(key.device)
        if cpu is not None and key.backend != cpu:  # on that backend it is the same figure
            references.append((VS_CPU_FP32, cpu))
        for name, backend in references:
            reference = key.reference(backend)
            if reference == key.as_reference or reference not in medians:
                continue  # fp32 against itself says nothing
            ratios = paired_ratios(medians[reference], medians[key.as_reference])
            found = _interval(ratios, pilots.get(cell["cell_id"]))
            if found is None:
                continue
            out.append({**key._asdict(), "reference": name, "reference_backend": backend,
                        "speedup": found.value, "speedup_low": found.low,
                        "speedup_high": found.high, "n": found.n,
                        "rel_half_width": found.rel_half_width, "method": found.method})
    return out


def _judge_targets(cells: list[dict], speedups: list[dict], warnings: list[dict]) -> None:
    """Did each adaptive cell's reported interval come within its target? Say when not."""
    same = {(s["model"], s["recipe"], s["device"], s["backend"], s["threads"]):
            s["rel_half_width"] for s in speedups if s["reference"] == SAME_BACKEND}
    for cell in cells:
        target = cell["target"]
        if not _present(target) or not cell["rounds"] or cell["status"] not in ("ok", "pending"):
            continue
        key = (cell["model"], cell["recipe"], cell["device"], cell["backend"], cell["threads"])
        width = same.get(key, cell["latency_rel_half_width"])
        if not _present(width):
            continue
        cell["reached_target"] = bool(width <= target + 1e-12)
        if not cell["reached_target"] and cell["stop_reason"] in ("budget", "max_rounds"):
            why = "the time budget" if cell["stop_reason"] == "budget" else "--max-rounds"
            needed = (f" of the {int(cell['needed_rounds'])} its pilot asked for"
                      if _present(cell["needed_rounds"]) else "")
            text = (f"stopped by {why} after {cell['rounds']} rounds{needed}: its interval "
                    f"(±{width * 100:.1f}%) is wider than the ±{target * 100:g}% target")
            cell["warnings"] = [*cell["warnings"], text]
            warnings.append({**{k: cell[k] for k in KEY_COLUMNS}, "warning": text})


VARIANT_COLUMNS = ["model", "recipe", "sha256", "source", "status", "error", "size_bytes",
                   "compression", "random_weights", "measured", "check_inputs",
                   "check_top1_agreement", "check_snr_db", "check_identical", "check_error",
                   "position", "cached", "build_seconds", "ops", "macs", "weight_scheme",
                   "accuracy_top1", "accuracy_dataset"]


def _variants(facts: RunFacts, accuracy: dict | None = None) -> list[dict]:
    """Each variant; `accuracy_top1` is its top-1 on the run's first labelled dataset
    (measured on a device where it was), for size/accuracy summaries and plots."""
    accuracy = accuracy or {}
    measured = {(c["model"], c["recipe"]) for c in facts.cells}
    fp32 = {v["model"]: v["size_bytes"] for v in facts.variants
            if v["recipe"] == REFERENCE_RECIPE and v["size_bytes"]}
    out = []
    for variant in facts.variants:
        size, reference = variant["size_bytes"], fp32.get(variant["model"])
        out.append({
            **{name: variant.get(name) for name in VARIANT_COLUMNS
               if name not in ("compression", "measured", "accuracy_top1", "accuracy_dataset")},
            "accuracy_top1": accuracy.get((variant["model"], variant["recipe"]), (None,))[0],
            "accuracy_dataset": accuracy.get((variant["model"], variant["recipe"]),
                                             (None, None))[1],
            "random_weights": bool(variant["random_weights"]),
            "compression": reference / size if size and reference else None,
            "measured": (variant["model"], variant["recipe"]) in measured,
        })
    return out


DEVICE_COLUMNS = ["device", "session", "transport", "runner", "machine_id", "runtime_name",
                  "runtime_version", "runner_version", "python_version", "numpy_version",
                  "cpu_model", "cpu_flags", "cpu_count", "machine", "platform", "backends",
                  "cpu_reference_backend"]


def _devices(facts: RunFacts) -> list[dict]:
    """Each device as last resolved (its latest session), with its CPU reference backend."""
    latest: dict[str, dict] = {}
    for row in facts.devices:
        if row["device"] not in latest or row["session"] >= latest[row["device"]]["session"]:
            latest[row["device"]] = row
    planned: dict[str, list[str]] = {}
    for cell in sorted(facts.cells, key=lambda c: (c["position"] is None, c["position"] or 0)):
        if cell["status"] != "skipped":
            planned.setdefault(cell["device"], [])
            if cell["backend"] not in planned[cell["device"]]:
                planned[cell["device"]].append(cell["backend"])
    out = []
    for name in sorted(set(latest) | set(planned)):
        row = latest.get(name, {"device": name, "session": None})
        config = row.get("config") or {}
        declared = list(config.get("backends") or planned.get(name, []))
        out.append({
            **{column: row.get(column) for column in DEVICE_COLUMNS
               if column not in ("backends", "cpu_reference_backend")},
            "device": name, "backends": declared,
            "cpu_reference_backend": next((b for b in declared if b in CPU_BACKENDS), None),
        })
    return out
