"""What each dashboard page shows, as plain data for its template.

Every figure comes from the analysis frames (`bench.analysis`) or from the modules that
format them for the terminal (`bench.report.table`, `paper`, `notes`): a page shows the
same numbers as `bench report`, arranged for reading. (The one summary made here is the
readings table's maximum over a device round's cells: a selection, not a figure.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.analysis import Analysis
from bench.report import plots as charts
from bench.report.dashboard.names import page_name
from bench.report.dashboard.svg import safe_svg
from bench.report.dashboard.tables import (
    Cell,
    Table,
    accuracy_table,
    cells_table,
    number,
    ops_table,
    variants_table,
)
from bench.report.notes import device_note, int8_features
from bench.report.paper import CITATION, TABLE7_NOTE, paper_checks
from bench.report.table import DASH, known, timing_rows, where

FAILED = "failed.html"
OVERVIEW = "index.html"
PROBLEM_STATUSES = ("failed", "fallback", "skipped", "pending")
OVERVIEW_TRADEOFFS = 4  # more device/backend/thread combinations: on the device pages
VERDICT_CLASSES = {"consistent": "ok", "no data": "muted", "slower than claimed": "bad",
                   "faster than claimed": "ok", "worse than claimed": "bad",
                   "smaller gain than claimed": "bad", "slower than float CPU": "bad",
                   "inconclusive": "warn", "no interval": "warn", "per-tensor not worse": "warn"}


@dataclass
class Figure:
    alt: str  # one sentence for screen readers, shown as the caption
    svg: str


@dataclass(frozen=True)
class Wanted:
    """A plot a page asks for (`bench.report.plots` function and arguments): pages are
    laid out first, then every plot is drawn, in parallel (`bench.report.dashboard.draw`)."""

    function: str
    args: tuple = ()
    kwargs: tuple = ()  # (name, value) pairs: hashable

    def draw(self, analysis: Analysis) -> Figure | None:
        found = getattr(charts, self.function)(analysis, *self.args, **dict(self.kwargs))
        return None if found is None else Figure(found.alt, safe_svg(found.svg))


def plot(function: str, *args, **kwargs) -> Wanted:
    return Wanted(function, args, tuple(sorted(kwargs.items())))


@dataclass
class Page:
    template: str
    file: str
    title: str
    tables: dict[str, Table | None] = field(default_factory=dict)
    figures: dict[str, list] = field(default_factory=dict)  # Wanted, then drawn: Figure
    facts: list[tuple[str, str]] = field(default_factory=list)  # (name, value) pairs
    notes: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (text, href)
    extra: dict = field(default_factory=dict)


@dataclass
class Site:
    """What every page of a run shares: where each device and model page is, the
    navigation, and the terminal table's rows (made once: every cells table filters them)."""

    links: dict[tuple[str, str], str]
    nav: list[tuple[str, str]]
    timing: list[dict]


def run_pages(analysis: Analysis) -> list[Page]:
    links = {("device", d): page_name("device", d) for d in _devices(analysis)}
    links.update({("model", m): page_name("model", m) for m in _models(analysis)})
    site = Site(links, [("overview", OVERVIEW), ("failed cells", FAILED)],
                timing_rows(analysis))
    pages = [overview(analysis, site), failed(analysis, site)]
    pages += [device_page(analysis, name, site) for name in _devices(analysis)]
    pages += [model_page(analysis, name, site) for name in _models(analysis)]
    return pages


def _devices(analysis: Analysis) -> list[str]:
    names = list(analysis.devices["device"]) if not analysis.devices.empty else []
    names += list(analysis.cells["device"]) if not analysis.cells.empty else []
    return list(dict.fromkeys(names))


def _models(analysis: Analysis) -> list[str]:
    names = list(analysis.variants["model"]) if not analysis.variants.empty else []
    names += list(analysis.cells["model"]) if not analysis.cells.empty else []
    return list(dict.fromkeys(names))


def _combinations(analysis: Analysis, device: str | None = None) -> list[tuple[str, str, int]]:
    cells = analysis.cells
    if cells.empty:
        return []
    if device is not None:
        cells = cells[cells["device"] == device]
    return list(dict.fromkeys(zip(cells["device"], cells["backend"], cells["threads"],
                                  strict=True)))


def _status_counts(analysis: Analysis) -> list[tuple[str, int]]:
    cells = analysis.cells
    if cells.empty:
        return []
    counts = cells["status"].value_counts()
    order = ["ok", "pending", "fallback", "failed", "skipped"]
    return [(s, int(counts[s])) for s in order if s in counts] + \
        [(s, int(n)) for s, n in counts.items() if s not in order]


def _run_facts(analysis: Analysis) -> list[tuple[str, str]]:
    run = analysis.run
    facts = [("status", run["status"]), ("started (UTC)", str(run["started_at"])[:19]),
             ("finished (UTC)", str(run.get("finished_at") or DASH)[:19]),
             ("harness", f"bench {run.get('harness_version') or DASH}")]
    if run.get("label"):
        facts.append(("label", run["label"]))
    facts += [(f"cells {status}", str(n)) for status, n in _status_counts(analysis)]
    return facts


def overview(analysis: Analysis, site: Site) -> Page:
    page = Page("overview.html", OVERVIEW, f"bench run {analysis.run['id']}",
                facts=_run_facts(analysis), links=site.nav)
    page.figures["speedup"] = [plot("speedup_plot", device=d) for d in _devices(analysis)]
    page.tables["cells"] = cells_table(analysis, site.links, "cells", timing=site.timing)
    page.tables["paper"] = _paper_table(analysis)
    page.tables["accuracy"] = accuracy_table(analysis, "accuracy")
    page.extra["paper_note"] = f"{CITATION}. {TABLE7_NOTE[0].upper()}{TABLE7_NOTE[1:]}."
    combinations = _combinations(analysis)
    if len(combinations) <= OVERVIEW_TRADEOFFS:
        page.figures["tradeoff"] = [plot("tradeoff_plot", *c) for c in combinations] + \
            [plot("tradeoff_plot", *c, y="accuracy") for c in combinations]
    page.tables["devices"] = _devices_table(analysis, site)
    page.extra["models"] = [(m, site.links[("model", m)]) for m in _models(analysis)]
    page.extra["problems"] = sum(n for s, n in _status_counts(analysis)
                                 if s in PROBLEM_STATUSES)
    page.extra["random_weights"] = bool(analysis.cells["random_weights"].any()) \
        if not analysis.cells.empty else False
    return page


def _paper_table(analysis: Analysis) -> Table:
    """The paper check; 'measured' sorts by the ratio, not its text."""
    checks = paper_checks(analysis)
    names = list(checks[0].as_row())
    table = Table("paper", [(name, name == "measured") for name in names])
    for check in checks:
        row = check.as_row()
        table.rows.append([
            Cell(row[name], check.value if name == "measured" else None,
                 cls=VERDICT_CLASSES.get(row[name], "") if name == "verdict" else "")
            for name in names])
    return table


def _devices_table(analysis: Analysis, site: Site) -> Table | None:
    """Where the figures come from: each device's CPU, its int8 features and runtime."""
    names = _devices(analysis)
    if not names:
        return None
    cells = analysis.cells
    table = Table("devices", [("device", False), ("CPU", False), ("int8 features", False),
                              ("runtime", False), ("transport", False), ("cells ok", True)])
    for name in names:
        record = _device_record(analysis, name)
        flags = set(record.get("cpu_flags") or [])
        features = int8_features(flags)
        runtime = " ".join(str(record[k]) for k in ("runtime_name", "runtime_version")
                           if known(record.get(k)))
        mine = cells[cells["device"] == name] if not cells.empty else cells
        ok = int((mine["status"] == "ok").sum()) if not mine.empty else 0
        table.rows.append([
            Cell(name, href=site.links[("device", name)]),
            Cell(str(record.get("cpu_model") or DASH)),
            Cell(", ".join(features) if features else ("none" if flags else "not reported")),
            Cell(runtime or DASH), Cell(str(record.get("transport") or DASH)),
            Cell(f"{ok}/{len(mine)}", ok)])
    return table


def failed(analysis: Analysis, site: Site) -> Page:
    page = Page("failed.html", FAILED, f"run {analysis.run['id']}: not measured as asked",
                links=site.nav)
    cells = analysis.cells
    problems = cells[cells["status"].isin(PROBLEM_STATUSES)] if not cells.empty else cells
    table = Table("problems", [("model", False), ("recipe", False), ("device", False),
                               ("backend", False), ("threads", True), ("status", False),
                               ("rounds", True), ("reason", False)])
    for cell in problems.to_dict("records"):
        reason = cell["reason"] or ("unfinished: the run was interrupted or the device was "
                                    "lost; `bench run --resume` finishes it"
                                    if cell["status"] == "pending" else DASH)
        table.rows.append([
            Cell(cell["model"], href=site.links.get(("model", cell["model"]))),
            Cell(cell["recipe"]),
            Cell(cell["device"], href=site.links.get(("device", cell["device"]))),
            Cell(cell["backend"]), Cell(str(cell["threads"]), cell["threads"]),
            Cell(cell["status"], cls="bad" if cell["status"] != "pending" else "warn"),
            Cell(str(cell["rounds"]), cell["rounds"]), Cell(reason, cls="reason")])
    page.tables["cells"] = table if table.rows else None
    variants = analysis.variants
    broken = variants[variants["status"] != "ok"] if not variants.empty else variants
    builds = Table("builds", [("model", False), ("recipe", False), ("error", False)])
    for variant in broken.to_dict("records"):
        href = site.links.get(("model", variant["model"]))
        builds.rows.append([Cell(variant["model"], href=href), Cell(variant["recipe"]),
                            Cell(variant["error"] or DASH, cls="reason")])
    page.tables["builds"] = builds if builds.rows else None
    return page


def _device_record(analysis: Analysis, name: str) -> dict:
    found = analysis.devices[analysis.devices["device"] == name] \
        if not analysis.devices.empty else analysis.devices
    return found.iloc[0].to_dict() if not found.empty else {"device": name}


ENVIRONMENT_FIELDS = [
    ("transport", "transport"), ("runner", "runner"), ("runner version", "runner_version"),
    ("runtime", "runtime_name"), ("runtime version", "runtime_version"),
    ("python", "python_version"), ("numpy", "numpy_version"), ("CPU", "cpu_model"),
    ("CPUs", "cpu_count"), ("machine", "machine"), ("platform", "platform"),
    ("machine id", "machine_id"), ("CPU reference backend", "cpu_reference_backend"),
]


def device_page(analysis: Analysis, name: str, site: Site) -> Page:
    record = _device_record(analysis, name)
    page = Page("device.html", site.links[("device", name)], f"device {name}", links=site.nav)
    page.facts = [(label, str(record.get(key))) for label, key in ENVIRONMENT_FIELDS
                  if known(record.get(key))]
    backends = record.get("backends")
    if backends:
        page.facts.append(("declared backends", ", ".join(backends)))
    flags = sorted(record.get("cpu_flags") or [])
    page.extra["int8_flags"] = int8_features(flags)
    page.extra["flags"] = " ".join(flags)
    page.notes = device_note(analysis, record)
    warnings = analysis.warnings
    mine = warnings[warnings["device"] == name] if not warnings.empty else warnings
    page.extra["warnings"] = [(where(w), w["warning"]) for w in mine.to_dict("records")]
    page.tables["cells"] = cells_table(analysis, site.links, "cells", device=name,
                                       timing=site.timing)
    page.tables["environment"] = _environment_table(analysis, name)
    combinations = _combinations(analysis, name)
    page.figures["device"] = [
        plot("latency_plot", device=name),
        *(plot("tradeoff_plot", *c) for c in combinations),
        *(plot("tradeoff_plot", *c, y="accuracy") for c in combinations),
        *(plot("threads_plot", name, b) for b in dict.fromkeys(b for _, b, _ in combinations))]
    return page


def _environment_table(analysis: Analysis, name: str) -> Table | None:
    """Per device round: the readings that explain a slow or noisy round."""
    rounds = analysis.rounds
    if rounds.empty or "temperature_c" not in rounds:
        return None
    mine = rounds[rounds["device"] == name]
    if mine.empty:
        return None
    table = Table("environment", [("round", True), ("cells", True), ("max °C", True),
                                  ("°C before", True), ("battery °C", True),
                                  ("max load (1 min)", True), ("max steal", True),
                                  ("charging", False), ("governor", False)])

    def most(values) -> float | None:
        values = [v for v in values if known(v)]
        return max(values) if values else None

    def fmt(value, pattern: str = "{:.1f}") -> Cell:
        return Cell(pattern.format(value) if value is not None else DASH, value)

    for index, group in mine.groupby("round", sort=True):
        charging = {bool(v) for v in group["charging"] if known(v)}
        governors = sorted({g for g in group["governor"] if known(g) and g})
        steal = most(group["steal_fraction"])
        table.rows.append([
            Cell(str(index), int(index)), Cell(str(len(group)), len(group)),
            fmt(most(group["temperature_c"])), fmt(most(group["temperature_before_c"])),
            fmt(most(group["battery_temperature_c"])), fmt(most(group["loadavg_1m"]), "{:.2f}"),
            Cell(f"{steal * 100:.1f}%" if steal is not None else DASH, steal),
            Cell(DASH if not charging else ("yes" if True in charging else "no")),
            Cell(", ".join(governors) or DASH)])
    return table


def model_page(analysis: Analysis, name: str, site: Site) -> Page:
    page = Page("model.html", site.links[("model", name)], f"model {name}", links=site.nav)
    variants = analysis.variants
    mine = variants[variants["model"] == name] if not variants.empty else variants
    sources = sorted({s for s in mine["source"] if known(s)}) if not mine.empty else []
    page.facts = [("source", ", ".join(sources) or DASH)]
    if not mine.empty and mine["random_weights"].astype(bool).any():
        page.facts.append(("weights", "random (seeded): output agreement says how faithfully "
                           "the conversion reproduces a random network, not accuracy"))
    page.tables["variants"] = variants_table(analysis, name, "variants")
    page.tables["ops"] = ops_table(analysis, name, "ops")
    page.tables["accuracy"] = accuracy_table(analysis, "accuracy", model=name)
    page.tables["cells"] = cells_table(analysis, site.links, "cells", model=name,
                                       timing=site.timing)
    page.figures["model"] = [plot("latency_plot", model=name)]
    fp32 = mine[mine["recipe"] == "fp32"] if not mine.empty else mine
    if not fp32.empty and known(fp32.iloc[0]["size_bytes"]):
        page.facts.append(("fp32 size", f"{number(fp32.iloc[0]['size_bytes']) / 1e6:.2f} MB"))
    return page
