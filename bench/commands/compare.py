"""`bench compare BASE NEW`: did anything get slower, judged on round medians.

Each benchmark of NEW is compared with the same benchmark in the BASE runs (a run id,
`latest`, a label or `last:K`) that ran on the same device fingerprint; the other completed
runs of the store give its run-to-run history (`bench.regress.decision`). The night's
comparisons are judged together (Bonferroni), so a clean night raises a false alarm at
most 5% of the time however many benchmarks it has. What changed between the runs (the
model's bytes, runtime, converter, harness) is shown beside each verdict.

Exit codes: 1 when something regressed (with --strict also when something is suspect or
not comparable), 0 otherwise, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass

from bench.errors import EXIT_OK, UsageError
from bench.regress.decision import (
    BenchmarkHistory,
    Comparison,
    Verdict,
    compare,
    family_adjust,
    not_comparable,
)
from bench.regress.history import Benchmark, Measured, completed_runs, resolve, run_benchmarks
from bench.store import open_store

EXIT_REGRESSED = 1
HISTORY_RUNS = 20  # earlier runs that estimate a benchmark's run-to-run spread
ORDER = [Verdict.REGRESSED, Verdict.SUSPECT, Verdict.NOT_COMPARABLE, Verdict.INCONCLUSIVE,
         Verdict.IMPROVED, Verdict.UNCHANGED, Verdict.NEW]


@dataclass
class Row:
    benchmark: Benchmark
    comparison: Comparison
    changed: list[str]


def what_changed(new: Measured, base: Measured | None) -> list[str]:
    if base is None:
        return []
    changed = []
    if new.sha256 and base.sha256 and new.sha256 != base.sha256:
        changed.append(f"model {base.sha256[:8]}→{new.sha256[:8]}")
    for name, value in new.versions.items():
        before = base.versions.get(name)
        if value and before and value != before:
            changed.append(f"{name} {before}→{value}")
    return changed


def compare_runs(store, base_ids: list[str], new_id: str, min_effect: float = 0.05,
                 alpha: float = 0.05) -> list[Row]:
    new = run_benchmarks(store, new_id).benchmarks
    bases = [run_benchmarks(store, run_id).benchmarks for run_id in base_ids]
    cut = store.run(new_id)["started_at"]
    earlier = [r["id"] for r in completed_runs(store)
               if r["id"] != new_id and r["id"] not in base_ids and r["started_at"] < cut]
    others = [run_benchmarks(store, run_id).benchmarks for run_id in earlier[-HISTORY_RUNS:]]
    rows = []
    for benchmark, measured in new.items():
        found = [b[benchmark] for b in bases if benchmark in b]
        same = [m for m in found if m.fingerprint == measured.fingerprint]
        latest = (same or found or [None])[-1]
        if found and not same:
            result = not_comparable(
                f"device fingerprint changed ({found[-1].fingerprint} → "
                f"{measured.fingerprint}): other hardware")
        else:
            past = [o[benchmark].medians_us for o in others
                    if benchmark in o and o[benchmark].fingerprint == measured.fingerprint]
            history = BenchmarkHistory.from_runs(past + [m.medians_us for m in same]) \
                if len(past) >= 1 else None
            result = compare(measured.medians_us, [m.medians_us for m in same], history,
                             min_effect=min_effect, alpha=alpha)
        rows.append(Row(benchmark, result, what_changed(measured, latest)))
    adjusted = family_adjust([r.comparison for r in rows], alpha_family=alpha)
    for row, result in zip(rows, adjusted, strict=True):
        row.comparison = result
    rows.sort(key=lambda r: (ORDER.index(r.comparison.verdict),
                             -r.comparison.ratio if r.comparison.ratio is not None
                             else math.inf))
    return rows


def _ratio(c: Comparison) -> str:
    interval = c.ratio_interval
    if c.ratio is None:
        return "-"
    text = f"{c.ratio:.3f}x"
    return text + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _rounds(c: Comparison) -> str:
    """Rounds of the new run / baseline runs compared ('-' where none were)."""
    if c.rounds is None:
        return "-"
    return f"{c.rounds}/{c.baseline_runs if c.baseline_runs is not None else '-'} run(s)"


def render_table(rows: list[Row], base_ids: list[str], new_id: str) -> str:
    tested = [r.comparison for r in rows if r.comparison.tested]
    level = (f"ratio: new/baseline latency with its {(1 - 2 * tested[0].alpha) * 100:.4g}% "
             f"interval, Bonferroni over the {len(tested)} tested") if tested else \
        "none could be tested"
    lines = [f"bench compare: {new_id} against {', '.join(base_ids)} ({len(rows)} benchmarks; "
             f"{level})"]
    header = ("verdict", "benchmark", "ratio", "rounds", "what changed")
    table = [(str(r.comparison.verdict), r.benchmark.label, _ratio(r.comparison),
              _rounds(r.comparison),
              ", ".join(r.changed) or "-") for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h)
              for i, h in enumerate(header)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip()
              for t in table]
    flagged = [r for r in rows if r.comparison.verdict in (Verdict.REGRESSED, Verdict.SUSPECT,
                                                           Verdict.NOT_COMPARABLE)]
    if flagged:
        lines.append("")
        lines += [f"{r.comparison.verdict}: {r.benchmark.label}: {r.comparison.reason}"
                  for r in flagged]
    return "\n".join(lines)


def render_markdown(rows: list[Row], base_ids: list[str], new_id: str) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"**bench compare** `{cell(new_id)}` against "
             f"{', '.join(f'`{cell(b)}`' for b in base_ids)}", "",
             "| verdict | benchmark | new / baseline | what changed |", "|---|---|---|---|"]
    lines += [f"| {r.comparison.verdict} | {cell(r.benchmark.label)} | "
              f"{cell(_ratio(r.comparison))} | {cell(', '.join(r.changed) or '-')} |"
              for r in rows]
    return "\n".join(lines)


def render_json(rows: list[Row], base_ids: list[str], new_id: str) -> str:
    return json.dumps({"new": new_id, "baseline": base_ids, "benchmarks": [
        {"benchmark": r.benchmark._asdict(), "changed": r.changed, **r.comparison.to_dict()}
        for r in rows]}, indent=1, default=str)


def exit_code(rows: list[Row], strict: bool) -> int:
    verdicts = {r.comparison.verdict for r in rows}
    if Verdict.REGRESSED in verdicts:
        return EXIT_REGRESSED
    if strict and verdicts & {Verdict.SUSPECT, Verdict.NOT_COMPARABLE}:
        return EXIT_REGRESSED
    return EXIT_OK


def compare_command(args: argparse.Namespace) -> int:
    if not 0 < args.min_effect < 100 or not 0 < args.alpha < 50:
        raise UsageError("--min-effect is a percentage in (0, 100), --alpha in (0, 50)")
    store = open_store(args.store, readonly=True)
    try:
        (new_id,) = resolve(store, args.new)
        base_ids = resolve(store, args.base, before=new_id)
        if new_id in base_ids:
            raise UsageError(f"run {new_id} cannot be its own baseline")
        rows = compare_runs(store, base_ids, new_id, args.min_effect / 100, args.alpha / 100)
    finally:
        store.close()
    render = {"table": render_table, "md": render_markdown, "json": render_json}[args.format]
    sys.stdout.write(render(rows, base_ids, new_id) + "\n")
    return exit_code(rows, args.strict)
