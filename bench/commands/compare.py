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
from dataclasses import dataclass, field

from bench.errors import EXIT_OK
from bench.regress.decision import (
    BenchmarkHistory,
    Comparison,
    Verdict,
    compare,
    confirm,
    family_adjust,
    not_comparable,
    suggest_design,
)
from bench.regress.history import (
    Benchmark,
    Measured,
    RunCache,
    completed_runs,
    resolve_run,
)
from bench.store import open_store

EXIT_REGRESSED = 1
HISTORY_RUNS = 20  # earlier runs that estimate a benchmark's run-to-run spread
SCAN_RUNS = 100  # last:K looks no further back than this many runs for a benchmark
DESIGNS = 20  # design suggestions per night: the worst unsure benchmarks (each ~10 ms)
ORDER = [Verdict.REGRESSED, Verdict.SUSPECT, Verdict.NOT_COMPARABLE, Verdict.INCONCLUSIVE,
         Verdict.IMPROVED, Verdict.UNCHANGED, Verdict.NEW]


@dataclass
class Row:
    benchmark: Benchmark
    comparison: Comparison
    changed: list[str]
    baseline: list[str] = field(default_factory=list)  # the run ids it was judged against
    history: BenchmarkHistory | None = None  # the run-to-run evidence it was judged with
    confirmed_by: str | None = None  # the re-run that judged it instead (`confirm_rows`)
    design: str | None = None  # what it would need to catch a 10% slowdown (`suggest`)


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


def configuration(measured: Measured) -> tuple:
    """What a run's figure of a benchmark was measured with: the model's bytes and the
    versions. The run-to-run spread is estimated among runs of one configuration."""
    return measured.sha256, tuple(sorted((k, str(v)) for k, v in measured.versions.items()))


def _baselines(load: RunCache, new: dict[Benchmark, Measured], base_ids: list[str],
               per_benchmark: int | None) -> dict[Benchmark, list[Measured]]:
    """Each benchmark's baseline runs' figures, oldest first: all of `base_ids` that hold
    it, or with `per_benchmark` K the K newest that hold it on the new run's fingerprint
    (runs are read newest first and no further than needed)."""
    found: dict[Benchmark, list[Measured]] = {b: [] for b in new}
    if per_benchmark is None:
        for run_id in base_ids:
            held = load(run_id).benchmarks
            for benchmark in new:
                if benchmark in held:
                    found[benchmark].append(held[benchmark])
        return found
    wanting = set(new)
    for run_id in list(reversed(base_ids))[:SCAN_RUNS]:
        if not wanting:
            break
        held = load(run_id).benchmarks
        for benchmark in list(wanting & held.keys()):
            if held[benchmark].fingerprint == new[benchmark].fingerprint:
                found[benchmark].insert(0, held[benchmark])
                if len(found[benchmark]) == per_benchmark:
                    wanting.discard(benchmark)
    if any(not runs for runs in found.values()):  # other hardware only: say so, not "new"
        for run_id in reversed(base_ids[-per_benchmark:]):
            held = load(run_id).benchmarks
            for benchmark, runs in found.items():
                if not runs and benchmark in held:
                    runs.append(held[benchmark])
    return found


def compare_runs(store, base_ids: list[str], new_id: str, min_effect: float = 0.05,
                 alpha: float = 0.05, per_benchmark: int | None = None,
                 runs: RunCache | None = None) -> list[Row]:
    """Every benchmark of `new_id` judged against its baseline runs (`base_ids`, oldest
    first; with `per_benchmark` K, the K newest of them holding the benchmark on the same
    fingerprint: `last:K`), a night's family at `alpha`; worst first."""
    load = runs or RunCache(store)
    new = load(new_id).benchmarks
    cut = store.run(new_id)["started_at"]
    chosen = _baselines(load, new, base_ids, per_benchmark)
    used = {m.run_id for found in chosen.values() for m in found}
    earlier = [r["id"] for r in completed_runs(store)
               if r["id"] != new_id and r["id"] not in used and r["started_at"] < cut]
    others = [load(run_id).benchmarks for run_id in earlier[-HISTORY_RUNS:]]
    rows = []
    for benchmark, measured in new.items():
        found = chosen[benchmark]
        same = [m for m in found if m.fingerprint == measured.fingerprint]
        latest = (same or found or [None])[-1]
        if found and not same:
            result = not_comparable(
                f"device fingerprint changed ({found[-1].fingerprint} → "
                f"{measured.fingerprint}): other hardware")
        else:
            past = [o[benchmark] for o in others
                    if benchmark in o and o[benchmark].fingerprint == measured.fingerprint]
            history = BenchmarkHistory.from_runs(
                [m.medians_us for m in past + same],
                [configuration(m) for m in past + same]) if past else None
            result = compare(measured.medians_us, [m.medians_us for m in same], history,
                             min_effect=min_effect, alpha=alpha)
        rows.append(Row(benchmark, result, what_changed(measured, latest),
                        [m.run_id for m in same or found],
                        history if found and same else None))
    adjusted = family_adjust([r.comparison for r in rows], alpha_family=alpha)
    for row, result in zip(rows, adjusted, strict=True):
        row.comparison = result
    rows.sort(key=lambda r: (ORDER.index(r.comparison.verdict),
                             -r.comparison.ratio if r.comparison.ratio is not None
                             else math.inf))
    suggest(rows, alpha)
    return rows


def suggest(rows: list[Row], alpha: float, effect: float = 0.10, power: float = 0.95) -> None:
    """For the first DESIGNS suspect or inconclusive benchmarks (worst first), the rounds
    and baseline runs their spread needs to catch `effect` with `power` at the night's
    level (`suggest_design`), or that no number of rounds can: `Row.design`."""
    family = sum(r.comparison.tested for r in rows)
    unsure = [r for r in rows if r.comparison.verdict in (Verdict.SUSPECT, Verdict.INCONCLUSIVE)
              and r.comparison.within_sd is not None
              and r.comparison.run_to_run_sd is not None]
    for row in unsure[:DESIGNS]:
        c = row.comparison
        history = len(row.history.run_means_us) if row.history is not None else None
        row.design = suggest_design(within_sd=c.within_sd, run_to_run_sd=c.run_to_run_sd,
                                    effect=effect, power=power, alpha_family=alpha,
                                    family_size=max(1, family), min_effect=c.min_effect,
                                    history_runs=history).message


def confirm_rows(store, rows: list[Row], confirm_id: str, min_effect: float = 0.05,
                 alpha: float = 0.05, runs: RunCache | None = None) -> list[Row]:
    """The night's suspects judged again on a re-run alone (`bench.regress.decision.confirm`):
    its round medians against the same baseline runs and history, at alpha / m with m the
    night's tested benchmarks. Nothing of the night's run is pooled with the re-run; a
    confirmed suspect becomes `regressed`. Other rows are unchanged; worst first again."""
    load = runs or RunCache(store)
    again = load(confirm_id).benchmarks
    family = sum(r.comparison.tested for r in rows)
    for row in rows:
        if row.comparison.verdict is not Verdict.SUSPECT or row.benchmark not in again:
            continue
        base = [load(run_id).benchmarks[row.benchmark] for run_id in row.baseline]
        if not base or again[row.benchmark].fingerprint != base[-1].fingerprint:
            continue
        row.comparison = confirm(again[row.benchmark].medians_us,
                                 [m.medians_us for m in base], family, row.history,
                                 alpha_family=alpha, min_effect=min_effect)
        row.confirmed_by = confirm_id
    rows.sort(key=lambda r: (ORDER.index(r.comparison.verdict),
                             -r.comparison.ratio if r.comparison.ratio is not None
                             else math.inf))
    return rows


def baseline_runs(rows: list[Row], store) -> list[str]:
    """Every run some benchmark was judged against, oldest first."""
    used = {run_id for r in rows for run_id in r.baseline}
    return [r["id"] for r in store.runs() if r["id"] in used]


def ratio_text(c: Comparison) -> str:
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
    table = [(str(r.comparison.verdict) + (" (re-run)" if r.confirmed_by else ""),
              r.benchmark.label, ratio_text(r.comparison),
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
    designs: dict[str, list[str]] = {}
    for r in rows:
        if r.design:
            designs.setdefault(r.design, []).append(r.benchmark.label)
    if designs:
        lines += ["", "to catch a 10% slowdown with power 95% at this night's level:"]
        for message, labels in designs.items():
            who = labels[0] if len(labels) == 1 else f"{labels[0]} and {len(labels) - 1} more"
            lines.append(f"  {who}: {message}")
    return "\n".join(lines)


def render_markdown(rows: list[Row], base_ids: list[str], new_id: str) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"**bench compare** `{cell(new_id)}` against "
             f"{', '.join(f'`{cell(b)}`' for b in base_ids)}", "",
             "| verdict | benchmark | new / baseline | what changed |", "|---|---|---|---|"]
    lines += [f"| {r.comparison.verdict} | {cell(r.benchmark.label)} | "
              f"{cell(ratio_text(r.comparison))} | {cell(', '.join(r.changed) or '-')} |"
              for r in rows]
    return "\n".join(lines)


def render_json(rows: list[Row], base_ids: list[str], new_id: str) -> str:
    return json.dumps({"new": new_id, "baseline": base_ids, "benchmarks": [
        {"benchmark": r.benchmark._asdict(), "changed": r.changed, "baseline_runs": r.baseline,
         "confirmed_by": r.confirmed_by, "design": r.design, **r.comparison.to_dict()}
        for r in rows]}, indent=1, default=str)


def exit_code(rows: list[Row], strict: bool) -> int:
    verdicts = {r.comparison.verdict for r in rows}
    if Verdict.REGRESSED in verdicts:
        return EXIT_REGRESSED
    if strict and verdicts & {Verdict.SUSPECT, Verdict.NOT_COMPARABLE}:
        return EXIT_REGRESSED
    return EXIT_OK


def compare_command(args: argparse.Namespace) -> int:
    from bench.commands.gate import gate_options, judge, publish

    options = gate_options(args, args.base)
    store = open_store(args.store, readonly=True)
    try:
        new_id = resolve_run(store, args.new)
        again = resolve_run(store, args.confirm) if args.confirm else None
        judgement = judge(store, new_id, options, confirm_id=again)
    finally:
        store.close()
    if args.format == "table":
        return publish(judgement, options)
    render = {"md": render_markdown, "json": render_json}[args.format]
    sys.stdout.write(render(judgement.rows, judgement.base_ids, new_id) + "\n")
    return publish(judgement, options, out=_Discard())


class _Discard:
    """The table goes nowhere when --format chose another rendering."""

    def write(self, text: str) -> int:
        return len(text)
