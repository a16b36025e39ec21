"""The regression gate as a step of a command: options, judging a run, what it writes.

`bench compare BASE NEW` and `bench run --baseline REF` share it, so a nightly job and a
person at a terminal get the same verdicts, the same files and the same exit code:
1 when something regressed (with `strict` also when something is suspect or not
comparable), else 0. Usage errors are found before anything is measured (`check`).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from bench.commands.compare import (
    EXIT_REGRESSED,
    Row,
    baseline_runs,
    compare_runs,
    confirm_rows,
    exit_code,
    render_markdown,
    render_table,
)
from bench.errors import UsageError
from bench.regress.decision import Verdict
from bench.regress.history import Baseline, RunCache, resolve_baseline
from bench.store.base import Store

DEFAULT_MIN_EFFECT_PCT = 5.0
DEFAULT_ALPHA_PCT = 5.0


@dataclass(frozen=True)
class GateOptions:
    ref: str | None
    min_effect: float  # fractions
    alpha: float
    strict: bool
    junit: Path | None
    markdown: Path | None


def gate_options(args: argparse.Namespace, ref: str | None) -> GateOptions:
    """The gate's options from the command line (or the sweep file's [gate]), checked."""
    min_effect = DEFAULT_MIN_EFFECT_PCT if args.min_effect is None else args.min_effect
    alpha = DEFAULT_ALPHA_PCT if args.alpha is None else args.alpha
    if not (0 < min_effect < 100 and math.isfinite(min_effect)):
        raise UsageError(f"--min-effect {min_effect:g}: a percentage in (0, 100), e.g. 5")
    if not (0 < alpha < 50 and math.isfinite(alpha)):
        raise UsageError(f"--alpha {alpha:g}: a percentage in (0, 50), e.g. 5")
    return GateOptions(ref, min_effect / 100, alpha / 100, bool(args.gate_strict),
                       args.junit, args.markdown)


def check(store: Store, options: GateOptions) -> None:
    """Before a run measures anything: a baseline that names a run or label must exist;
    `latest` and `last:K` may find nothing (the first night passes, every benchmark new)."""
    if options.ref is None:
        return
    resolve_baseline(store, options.ref, first_night=True)
    for path in (options.junit, options.markdown):
        if path is not None and path.is_dir():
            raise UsageError(f"{path} is a folder: --junit and --markdown name files")


@dataclass
class Judgement:
    new_id: str
    baseline: Baseline
    rows: list[Row]
    base_ids: list[str]  # every run some benchmark was judged against, oldest first


def judge(store: Store, new_id: str, options: GateOptions, first_night: bool = False,
          confirm_id: str | None = None) -> Judgement:
    found = resolve_baseline(store, options.ref, new_id, first_night)
    if new_id in found.runs:
        raise UsageError(f"run {new_id} cannot be its own baseline")
    runs = RunCache(store)
    rows = compare_runs(store, found.runs, new_id, options.min_effect, options.alpha,
                        per_benchmark=found.per_benchmark, runs=runs)
    if confirm_id is not None:
        if confirm_id == new_id:
            raise UsageError("--confirm names a re-run of the suspects, not the night itself")
        rows = confirm_rows(store, rows, confirm_id, options.min_effect, options.alpha, runs)
    return Judgement(new_id, found, rows, baseline_runs(rows, store) or found.runs[-1:])


def publish(judgement: Judgement, options: GateOptions, out=None) -> int:
    """Print the verdicts, write the JUnit and Markdown files; the gate's exit code."""
    out = out or sys.stdout
    out.write(render_table(judgement.rows, judgement.base_ids, judgement.new_id) + "\n")
    if not judgement.baseline.runs:
        out.write(f"no completed run before {judgement.new_id} for {judgement.baseline.ref}: "
                  "the first night passes and starts the baseline\n")
    if options.markdown is not None:
        _write(options.markdown, render_markdown(judgement.rows, judgement.base_ids,
                                                 judgement.new_id) + "\n")
    if options.junit is not None:
        _write(options.junit, render_junit(judgement, options))
    return exit_code(judgement.rows, options.strict)


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path} ({exc.strerror or exc}); the verdicts are "
                         "printed above and the store has the runs") from None


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: object) -> str:
    """Text XML 1.0 can hold (control characters dropped); ElementTree escapes the rest."""
    return _NOT_XML.sub("", str(text))


def render_junit(judgement: Judgement, options: GateOptions) -> str:
    """One test case per benchmark, in the JUnit XML CI systems display: `regressed` is a
    failure (with `strict`, suspect and not comparable too); `new` and `not comparable`
    were not tested (skipped); every case's reason and what changed are its output."""
    failing = {Verdict.REGRESSED} | ({Verdict.SUSPECT, Verdict.NOT_COMPARABLE}
                                     if options.strict else set())
    skipped = {Verdict.NEW, Verdict.NOT_COMPARABLE} - failing
    rows = judgement.rows
    failures = sum(r.comparison.verdict in failing for r in rows)
    skips = sum(r.comparison.verdict in skipped for r in rows)
    name = f"bench gate: {judgement.new_id} against {judgement.baseline.ref}"
    suites = ET.Element("testsuites", name="bench gate", tests=str(len(rows)),
                        failures=str(failures), errors="0", skipped=str(skips))
    suite = ET.SubElement(suites, "testsuite", name=_xml(name), tests=str(len(rows)),
                          failures=str(failures), errors="0", skipped=str(skips))
    properties = ET.SubElement(suite, "properties")
    for key, value in (("new_run", judgement.new_id), ("baseline", judgement.baseline.ref),
                       ("baseline_runs", " ".join(judgement.base_ids)),
                       ("min_effect", f"{options.min_effect:g}"),
                       ("alpha", f"{options.alpha:g}")):
        ET.SubElement(properties, "property", name=key, value=_xml(value))
    for row in rows:
        b, c = row.benchmark, row.comparison
        case = ET.SubElement(suite, "testcase", name=_xml(f"{b.model} {b.recipe}"),
                             classname=_xml(f"{b.device}.{b.backend}.t{b.threads}"),
                             time="0")
        text = f"{c.verdict}: {c.reason}" + (f"\nwhat changed: {', '.join(row.changed)}"
                                             if row.changed else "")
        if c.verdict in failing:
            failure = ET.SubElement(case, "failure", type=str(c.verdict),
                                    message=_xml(f"{c.verdict}: {_ratio_text(c)}"))
            failure.text = _xml(text)
        elif c.verdict in skipped:
            ET.SubElement(case, "skipped", message=_xml(text))
        ET.SubElement(case, "system-out").text = _xml(text)
    ET.indent(suites)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' +
            ET.tostring(suites, encoding="unicode") + "\n")


def _ratio_text(c) -> str:
    return "ratio unknown" if c.ratio is None else f"{(c.ratio - 1) * 100:+.1f}%"


__all__ = ["EXIT_REGRESSED", "GateOptions", "Judgement", "check", "gate_options", "judge",
           "publish", "render_junit"]
