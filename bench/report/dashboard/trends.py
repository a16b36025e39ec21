"""The store-wide trends page, dashboards/trends.html: is tonight worse, and since when?

First the gate's verdicts of the newest completed run (exactly `bench compare`'s), then
the change points (runs where a benchmark regressed or improved by the gate's own rule),
then each benchmark's latency run by run. Figures come from `trend_data`; this module
only lays them out, draws the plots (in forked workers) and writes the page beside the
runs index, which then links to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment

from bench.commands.compare import ORDER, ratio_text
from bench.errors import one_line
from bench.measure.stats import estimate
from bench.regress.decision import Comparison, Verdict
from bench.regress.history import Benchmark, Measured
from bench.report.dashboard.build import (
    INDEX,
    TRENDS,
    _environment,
    _write,
    write_index,
)
from bench.report.dashboard.forked import fork_map
from bench.report.dashboard.names import folder_name, inside, slug
from bench.report.dashboard.pages import Page
from bench.report.dashboard.svg import safe_svg
from bench.report.dashboard.tables import Cell, Table
from bench.report.dashboard.trend_data import MAX_RUNS, PREVIOUS_RUNS, Trends, collect
from bench.report.table import DASH
from bench.report.trend_plot import CI_TEXT, Mark, RunPoint, trend_plot
from bench.store import Store
from bench.timeutil import utc_now

VERDICT_CLASSES = {Verdict.REGRESSED: "bad", Verdict.SUSPECT: "warn",
                   Verdict.NOT_COMPARABLE: "warn", Verdict.INCONCLUSIVE: "muted",
                   Verdict.IMPROVED: "ok", Verdict.UNCHANGED: "ok", Verdict.NEW: "muted"}


@dataclass
class TrendFigure:
    id: str  # the figure's anchor on the page
    alt: str
    svg: str


def anchor(benchmark: Benchmark) -> str:
    """A page-unique id for a benchmark's plot (a slug of all five fields)."""
    return "trend-" + slug("\x1f".join(map(str, benchmark)))


def run_href(root: Path, run_id: str) -> str | None:
    """A run's overview, relative to the trends page, where it was built; else None."""
    folder = folder_name(run_id)
    return f"{folder}/{INDEX}" if (root / folder / INDEX).is_file() else None


def _verdict(c: Comparison) -> Cell:
    return Cell(str(c.verdict), ORDER.index(c.verdict) if c.verdict in ORDER else None,
                cls=VERDICT_CLASSES.get(c.verdict, ""))


def night_table(trends: Trends, plotted: set[Benchmark]) -> Table | None:
    """The gate's rows for the newest run, worst first (compare_runs' order)."""
    rows = trends.night.rows
    if not rows:
        return None
    table = Table("night", [("verdict", False), ("benchmark", False),
                            ("new / baseline [interval]", True), ("rounds", True),
                            ("baseline runs", True), ("what changed", False),
                            ("reason", False)])
    for row in rows:
        c = row.comparison
        table.rows.append([
            _verdict(c),
            Cell(row.benchmark.label, href=f"#{anchor(row.benchmark)}"
                 if row.benchmark in plotted else None),
            Cell(ratio_text(c), c.ratio),
            Cell(str(c.rounds) if c.verdict is not Verdict.NOT_COMPARABLE else DASH,
                 c.rounds if c.verdict is not Verdict.NOT_COMPARABLE else None),
            Cell(str(c.baseline_runs) if c.tested else DASH,
                 c.baseline_runs if c.tested else None),
            Cell(", ".join(row.changed) or DASH), Cell(c.reason, cls="reason")])
    return table


def changes_table(trends: Trends, root: Path) -> Table | None:
    """Every change point, newest first, with the runs on either side of it."""
    if not trends.changes:
        return None
    table = Table("changes", [("run at the change", False), ("started (UTC)", False),
                              ("benchmark", False), ("change", False),
                              ("new / earlier runs [interval]", True), ("earlier runs", True),
                              ("run before", False), ("what changed", False)])
    for change in reversed(trends.changes):
        c = change.comparison
        table.rows.append([
            Cell(change.at.run_id, href=run_href(root, change.at.run_id), cls="mono"),
            Cell(change.at.started_at[:19].replace("T", " ")),
            Cell(change.benchmark.label, href=f"#{anchor(change.benchmark)}"),
            _verdict(c), Cell(ratio_text(c), c.ratio),
            Cell(str(c.baseline_runs), c.baseline_runs),
            Cell(change.before.run_id, href=run_href(root, change.before.run_id), cls="mono"),
            Cell(", ".join(change.changed) or DASH)])
    return table


def point(measured: Measured) -> RunPoint:
    """A run's geometric mean of round medians with its within-run 95% interval: the one
    the run's own report shows (Stein's when its rounds were planned from a pilot)."""
    found = estimate(measured.medians_us, measured.pilot_rounds)
    return RunPoint(measured.run_id, measured.started_at, found.value, found.low, found.high,
                    found.n, measured.fingerprint)


def _order(trends: Trends) -> list[Benchmark]:
    """Benchmarks as the night's table lists them (worst first), then those with a change
    point, then the rest by name."""
    night = [r.benchmark for r in trends.night.rows if r.benchmark in trends.history]
    changed = [c.benchmark for c in reversed(trends.changes)]
    rest = sorted(trends.history, key=lambda b: tuple(map(str, b)))
    return list(dict.fromkeys(night + changed + rest))


def _job(trends: Trends, benchmark: Benchmark) -> tuple:
    runs = trends.history[benchmark]
    index = {m.run_id: i for i, m in enumerate(runs)}
    marks = [Mark(index[c.at.run_id], c.comparison.verdict is Verdict.REGRESSED,
                  c.comparison.ratio) for c in trends.changes
             if c.benchmark == benchmark and c.at.run_id in index]
    return benchmark.label, benchmark.recipe, [point(m) for m in runs], marks


def _draw(job: tuple) -> tuple[str, str] | None:
    found = trend_plot(*job)
    return None if found is None else (found.alt, safe_svg(found.svg))


def figures(trends: Trends, order: list[Benchmark],
            workers: int | None = None) -> list[TrendFigure]:
    drawn = fork_map(_draw, [_job(trends, b) for b in order], workers)
    return [TrendFigure(anchor(b), *found) for b, found in zip(order, drawn, strict=True)
            if found is not None]


def trends_page(trends: Trends, root: Path, workers: int | None = None) -> Page:
    night = trends.night
    order = _order(trends)
    page = Page("trends.html", TRENDS, "bench trends", links=[("all runs", INDEX)])
    page.facts = [("runs shown", f"the {len(trends.runs)} newest of {trends.total} completed "
                   "run(s)"), ("benchmarks", str(len(order))),
                  ("change points", str(len(trends.changes)))]
    settings = night.settings
    page.extra["night_facts"] = [
        ("run", night.run_id or DASH),
        ("baseline", f"{settings.baseline}: {', '.join(night.base_ids) or DASH}"),
        ("minimum effect", f"{settings.min_effect * 100:g}%"),
        ("family alpha", f"{settings.alpha * 100:g}% (Bonferroni over the night)"),
        ("settings from", settings.source)]
    page.extra["night_href"] = run_href(root, night.run_id) if night.run_id else None
    page.extra["night_message"] = night.message
    tested = [r.comparison for r in night.rows if r.comparison.tested]
    page.extra["night_level"] = f"{(1 - 2 * tested[0].alpha) * 100:.4g}%" if tested else None
    page.extra["previous_runs"] = PREVIOUS_RUNS
    page.extra["ci_text"] = CI_TEXT
    page.tables["night"] = night_table(trends, set(trends.history))
    page.tables["changes"] = changes_table(trends, root)
    page.figures["history"] = figures(trends, order, workers)
    return page


def write_trends(root: Path, store, max_runs: int = MAX_RUNS, workers: int | None = None,
                 env: Environment | None = None) -> Path:
    """Write root/trends.html from every completed run of `store` (the newest `max_runs`),
    then the runs index again so that it links here; the page's path."""
    root = Path(root)
    env = env or _environment()
    page = trends_page(collect(store, max_runs, workers), root, workers)
    path = inside(root, root / TRENDS)
    _write(path, env.get_template(page.template).render(page=page, generated=utc_now(),
                                                        run=None))
    write_index(root, store.runs(), env)
    return path


def build_trends(root: Path, store: Store, say: Callable[[str], None]) -> Path | None:
    """`write_trends` after a command stored or built what it was asked for: a failure is
    one line (`say`), never lost results."""
    try:
        return write_trends(root, store)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - the results are stored; say so in one line
        say(f"bench: could not write the trends page under {root} ({one_line(exc)}); the "
            "store has everything: `bench report --format html` rebuilds it")
        return None
