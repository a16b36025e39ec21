"""A run's report in other formats: CSV, JSON and Markdown, from the analysis frames.

- CSV: one row per cell, every interval as explicit low/high columns, speedups included.
- JSON: the frames as lists of records with a `schema_version`; NaN and other non-values
  become null, so strict parsers read it. The export written after each run
  (results/runs/RUN.json) adds each round's runner document (every iteration).
- Markdown: the tables for pasting into a pull request or a design doc.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from bench.analysis import SAME_BACKEND, VS_CPU_FP32, Analysis
from bench.keys import KEY_COLUMNS
from bench.report.notes import device_notes
from bench.report.paper import CITATION, TABLE7_NOTE, check_rows
from bench.report.paper import render_text as paper_text
from bench.report.table import DASH, dropped_columns, render, timing_rows, variant_rows, where

REPORT_SCHEMA_VERSION = 1
FORMATS = ("table", "csv", "json", "md")


def plain(value):
    """A JSON-safe Python value: no NaN, no numpy scalars, no tuples."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def records(frame: pd.DataFrame) -> list[dict]:
    return [plain(row) for row in frame.to_dict("records")]


def to_json(analysis: Analysis, raw_rounds: list[dict] | None = None) -> str:
    document = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "run": plain(analysis.run),
        "devices": records(analysis.devices),
        "variants": records(analysis.variants),
        "cells": records(analysis.cells),
        "speedups": records(analysis.speedups),
        "warnings": records(analysis.warnings),
        "rounds": records(analysis.rounds),
    }
    if raw_rounds is not None:
        document["runner_documents"] = [
            {"cell_id": r["cell_id"], "round": r["round"], "document": plain(r["record"])}
            for r in raw_rounds if r.get("record") is not None]
    return json.dumps(document, indent=1, allow_nan=False)


CSV_SPEEDUPS = (SAME_BACKEND, VS_CPU_FP32)
CSV_CELL_COLUMNS = [
    *KEY_COLUMNS, "status", "reason", "rounds", "stop_reason", "reached_target", "target",
    "pilot_rounds", "planned_rounds", "interval_method",
    "latency_us", "latency_us_low", "latency_us_high", "p90_us", "p90_us_low", "p90_us_high",
    "p99_us", "max_us", "rounds_cv", "iterations_cv", "init_us", "init_us_low", "init_us_high",
    "first_inference_us", "first_inference_us_low", "first_inference_us_high",
    "peak_memory_bytes", "delegated", "delegate_nodes", "graph_nodes", "runtime_name",
    "runtime_version", "size_bytes", "random_weights",
]


def to_csv(analysis: Analysis) -> str:
    columns = list(CSV_CELL_COLUMNS)
    for name in CSV_SPEEDUPS:
        columns += [f"speedup_{name}", f"speedup_{name}_low", f"speedup_{name}_high",
                    f"speedup_{name}_reference_backend"]
    columns += ["compression", "check_top1_agreement", "check_snr_db", "warnings"]
    variants = {(v["model"], v["recipe"]): v for v in records(analysis.variants)}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for cell in records(analysis.cells):
        row = {name: cell.get(name) for name in CSV_CELL_COLUMNS}
        key = [cell[name] for name in KEY_COLUMNS]
        for name in CSV_SPEEDUPS:
            found = plain(analysis.speedup(key, name) or {})
            row[f"speedup_{name}"] = found.get("speedup")
            row[f"speedup_{name}_low"] = found.get("speedup_low")
            row[f"speedup_{name}_high"] = found.get("speedup_high")
            row[f"speedup_{name}_reference_backend"] = found.get("reference_backend")
        variant = variants.get((cell["model"], cell["recipe"]), {})
        row["compression"] = variant.get("compression")
        row["check_top1_agreement"] = variant.get("check_top1_agreement")
        row["check_snr_db"] = variant.get("check_snr_db")
        row["warnings"] = "; ".join(cell["warnings"] or [])
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def md_table(rows: list[dict], drop: Iterable[str] = ()) -> list[str]:
    columns = [c for c in rows[0] if not c.startswith("_") and c not in drop]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_md_cell(r[c]) for c in columns) + " |" for r in rows]
    return lines


def to_markdown(analysis: Analysis) -> str:
    run = analysis.run
    out = [f"## bench run {run['id']}", ""]
    facts = [f"status **{run['status']}**", f"started {run['started_at']}"]
    if run.get("label"):
        facts.append(f"label `{_md_cell(run['label'])}`")
    out += ["; ".join(facts), ""]
    for device in records(analysis.devices):
        runtime = " ".join(str(v) for v in (device["runtime_name"], device["runtime_version"])
                           if v) or "runtime not recorded"
        out.append(f"- **{_md_cell(device['device'])}**: {_md_cell(device['cpu_model'] or DASH)}"
                   f"; {_md_cell(runtime)}")
    rows = timing_rows(analysis)
    if rows:
        out += ["", *md_table(rows, dropped_columns(rows))]
    else:
        out += ["", "no cells in this run"]
    problems = [r["_row"] for r in rows if r["status"] not in ("ok", "pending")]
    if problems:
        out += ["", "**Not measured as asked:**", ""]
        out += [f"- {r['status']}: {_md_cell(where(r))}: {_md_cell(r['reason'] or '')}"
                for r in problems]
    noisy = [r["_row"] for r in rows if r["_row"]["warnings"]]
    if noisy:
        out += ["", "**Noisy measurements** (reported, not to be trusted blindly):", ""]
        out += [f"- {_md_cell(where(r))}: {_md_cell('; '.join(r['warnings']))}" for r in noisy]
    variants = variant_rows(analysis)
    if variants:
        out += ["", *md_table(variants)]
    checks = check_rows(analysis)
    out += ["", f"**Paper check** ({CITATION}; {TABLE7_NOTE}; verdicts judge the 95% "
            "interval):", "", *md_table(checks)]
    notes = device_notes(analysis)
    if notes:
        out += ["", *[_md_cell(line) if not line.startswith("  - ") else
                      "- " + _md_cell(line[4:]) for note in notes
                      for line in note.strip().splitlines()]]
    out += ["", "Latency and p90: geometric mean of the per-round values (a round is a fresh "
            "runner process) with a 95% t-interval on their logs. Speedup: geometric mean of "
            "paired per-round ratios fp32 / variant, with the paired t-interval. `*`: random "
            "weights."]
    return "\n".join(out) + "\n"


def to_table(analysis: Analysis) -> str:
    return "\n".join([render(analysis), *device_notes(analysis), "", *paper_text(analysis)])


def render_format(analysis: Analysis, fmt: str) -> str:
    if fmt == "csv":
        return to_csv(analysis)
    if fmt == "json":
        return to_json(analysis) + "\n"
    if fmt == "md":
        return to_markdown(analysis)
    return to_table(analysis) + "\n"
