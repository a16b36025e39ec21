"""Sortable tables for the dashboard: display text plus a sort key per cell.

Each table is built from the analysis frames (or the terminal table's rows, so both show
the same text); the template renders any `Table` the same way and the page's one script
sorts it. Unknown values sort last in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.analysis import Analysis
from bench.report.table import DASH, dropped_columns, known, timing_rows, variant_rows


@dataclass(frozen=True)
class Cell:
    text: str
    sort: float | str | None = None  # None: sort by the text
    href: str | None = None  # a page of this dashboard (a slug: safe as it is)
    cls: str = ""
    title: str | None = None  # the full text when `text` is shortened


@dataclass
class Table:
    id: str
    columns: list[tuple[str, bool]]  # (heading, numeric)
    rows: list[list[Cell]] = field(default_factory=list)


def number(value) -> float | None:
    return float(value) if known(value) else None


STATUS_CLASS = {"ok": "ok", "pending": "warn", "fallback": "bad", "failed": "bad",
                "skipped": "muted"}


def cells_table(analysis: Analysis, links: dict[tuple[str, str], str], table_id: str,
                device: str | None = None, model: str | None = None,
                timing: list[dict] | None = None) -> Table | None:
    """Every cell (or a device's, or a model's) with the terminal table's columns;
    `timing`: the terminal table's rows when the caller has them already."""
    rows = [r for r in (timing if timing is not None else timing_rows(analysis))
            if (device is None or r["_row"]["device"] == device)
            and (model is None or r["_row"]["model"] == model)]
    if not rows:
        return None
    numeric = {"thr", "latency ms [95% CI]", "p90 ms [95% CI]", "rounds", "speedup [95% CI]",
               "vs cpu fp32", "mem MB"}
    drop = {"!"} | {c for c in dropped_columns(rows) if c != "device"}  # as the terminal does
    columns = [c for c in rows[0] if not c.startswith("_") and c not in drop]
    table = Table(table_id, [(c, c in numeric) for c in columns] + [("warnings", True)])
    for row in rows:
        raw = row["_row"]
        key = [raw[n] for n in ("model", "recipe", "sha256", "device", "backend", "threads")]
        same = analysis.speedup(key, "same_backend")
        cpu = analysis.speedup(key, "vs_cpu_fp32")
        sort = {"thr": raw["threads"], "latency ms [95% CI]": number(raw["latency_us"]),
                "p90 ms [95% CI]": number(raw["p90_us"]), "rounds": raw["rounds"],
                "speedup [95% CI]": number(same["speedup"]) if same else
                (1.0 if row["speedup [95% CI]"] == "ref" else None),
                "vs cpu fp32": number(cpu["speedup"]) if cpu else
                (1.0 if row["vs cpu fp32"] == "=" else None),
                "mem MB": number(raw["peak_memory_bytes"])}
        out = []
        for column in columns:
            text = row[column]
            href = links.get((column, raw[column])) if column in ("model", "device") else None
            cls = STATUS_CLASS.get(text, "") if column == "status" else ""
            out.append(Cell(text, sort.get(column), href, cls))
        warnings = raw["warnings"] or []
        out.append(Cell(str(len(warnings)) if warnings else "", len(warnings),
                        cls="warn" if warnings else "", title="; ".join(warnings) or None))
        table.rows.append(out)
    return table


def variants_table(analysis: Analysis, model: str, table_id: str) -> Table | None:
    measured = [v for v in analysis.variants.to_dict("records") if v["measured"]]
    rows = [r for r, v in zip(variant_rows(analysis), measured, strict=True)
            if v["model"] == model]  # variant_rows: one row per measured variant, in order
    records = {v["recipe"]: v for v in measured if v["model"] == model}
    if not rows:
        return None
    columns = [("recipe", False), ("size MB", True), ("compr.", True),
               ("weights", False), ("ops", True), ("MACs (M)", True),
               ("top-1 vs fp32", True), ("SNR dB", True), ("sha256", False), ("build", False),
               ("built in s", True)]
    table = Table(table_id, columns)
    for row in rows:
        variant = records.get(row["recipe"], {})
        ops = variant.get("ops") or {}
        macs = variant.get("macs")
        seconds = variant.get("build_seconds")
        sha = variant.get("sha256") or ""
        table.rows.append([
            Cell(row["recipe"]),
            Cell(row["size MB"], number(variant.get("size_bytes"))),
            Cell(row["compr."], number(variant.get("compression"))),
            Cell(variant.get("weight_scheme") or DASH),
            Cell(str(sum(ops.values())) if ops else DASH, sum(ops.values()) if ops else None),
            Cell(f"{macs / 1e6:.1f}" if known(macs) else DASH, number(macs)),
            Cell(row["top-1 vs fp32"], number(variant.get("check_top1_agreement"))),
            Cell(row["SNR dB"], number(variant.get("check_snr_db"))),
            Cell(sha[:12] or DASH, title=sha or None, cls="mono"),
            Cell(row["build"], cls=STATUS_CLASS.get(row["build"], "")),
            Cell(f"{seconds:.1f}" if known(seconds) else
                 ("cached" if variant.get("cached") else DASH), number(seconds)),
        ])
    return table


def ops_table(analysis: Analysis, model: str, table_id: str) -> Table | None:
    """Builtin op counts per recipe: what quantization changed in the graph."""
    variants = [v for v in analysis.variants.to_dict("records")
                if v["model"] == model and v.get("ops")]
    if not variants:
        return None
    names = sorted({op for v in variants for op in v["ops"]})
    table = Table(table_id, [("op", False)] + [(v["recipe"], True) for v in variants])
    for name in names:
        table.rows.append([Cell(name, cls="mono")] + [
            Cell(str(v["ops"].get(name, 0)), v["ops"].get(name, 0)) for v in variants])
    return table


def accuracy_table(analysis: Analysis, table_id: str, model: str | None = None) -> Table | None:
    """Accuracy per variant, dataset, device and backend (the terminal's columns; the
    sort keys are the figures, not their text)."""
    from bench.report import accuracy_table as text

    frame = analysis.accuracy
    records = [] if frame is None or frame.empty else frame.to_dict("records")
    shown = text.rows(analysis)
    pairs = [(r, s) for r, s in zip(records, shown, strict=True)
             if model is None or r["model"] == model]
    if not pairs:
        return None
    columns = [("model", False), ("recipe", False), ("dataset", False), ("where", False),
               ("n", True), ("top-1 % [95% CI]", True), ("top-5 %", True),
               ("vs fp32, points [95% CI]", True), ("+/-", False), ("McNemar p", True),
               ("agree % [95% CI]", True), ("SNR dB", True), ("status", False)]
    table = Table(table_id, columns)
    for record, row in pairs:
        failed = "_failed" in row
        table.rows.append([
            Cell(row["model"]), Cell(row["recipe"]), Cell(row["dataset"]), Cell(row["where"]),
            Cell(row["n"], number(record["n"])),
            Cell(row.get("top-1 % [95% CI]", DASH), number(record["top1"])),
            Cell(row.get("top-5 %", DASH), number(record["top5"])),
            Cell(row.get("vs fp32, points [95% CI]", DASH), number(record["top1_change"])),
            Cell(row.get("+/-", DASH)),
            Cell(row.get("McNemar p", DASH), number(record["mcnemar_p"])),
            Cell(row.get("agree % [95% CI]", DASH), number(record["agreement"])),
            Cell(row.get("SNR dB", DASH), number(record["snr_db"])),
            Cell("failed" if failed else "ok", cls="bad" if failed else "ok",
                 title=row.get("_failed"))])
    return table
