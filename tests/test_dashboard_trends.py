"""The trends page: the gate's verdicts of the latest night, change points where a
benchmark really changed (and nowhere else), honest per-run intervals, escaped names and
links to files that exist.

Real SQLite stores written by `bench.synthetic`, one run per night, edited the way a real
change would show (slower round medians from some night on), as tests/test_compare.py does.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.analysis import analyse
from bench.cli import main
from bench.commands.run import build_run_dashboard
from bench.regress.history import Benchmark
from bench.report.dashboard.build import build_dashboard
from bench.report.dashboard.names import folder_name
from bench.report.dashboard.trend_data import collect, gate_settings
from bench.report.dashboard.trends import anchor, build_trends, write_trends
from bench.report.trend_plot import CI_TEXT, RunPoint, trend_plot
from bench.store import open_store
from bench.store.sqlite import SQLiteStore
from bench.synthetic import make_store
from tests.browser import visit
from tests.test_dashboard import parse

HOSTILE = "<script>alert(1)</script>"
SLOW = Benchmark("mobilenet_v2", "int8", "local", "xnnpack", 1)


def edit(path: Path, sql: str, *values) -> None:
    db = sqlite3.connect(path)
    db.execute(sql, values)
    db.commit()
    db.close()


def nights(path: Path, count: int, models=("mobilenet_v1", "mobilenet_v2"),
           rounds: int = 6) -> list[str]:
    """`count` completed runs of the same benchmarks, one a day (oldest first)."""
    ids = [make_store(path, models=list(models), recipes=("fp32", "int8"), rounds=rounds,
                      seed=seed, failures=False, label=f"night-{seed}")
           for seed in range(count)]
    first = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    for day, run_id in enumerate(ids):
        edit(path, "UPDATE runs SET started_at = ? WHERE id = ?",
             (first + timedelta(days=day)).isoformat(), run_id)
    return ids


def slow_down(path: Path, run_ids: list[str], model: str, recipe: str, factor: float) -> None:
    for run_id in run_ids:
        edit(path, "UPDATE rounds SET summary_us = summary_us * ? WHERE run_id = ? AND "
             "cell_id IN (SELECT cell_id FROM cells WHERE run_id = ? AND model = ? AND "
             "recipe = ?)", factor, run_id, run_id, model, recipe)


def set_gate(path: Path, run_id: str, gate: dict) -> None:
    """Record a gate with the run, as `bench run --baseline` does."""
    store = open_store(path)
    try:
        store.save_gate(run_id, ref=gate["baseline"], min_effect=gate["min_effect"],
                        alpha=gate["alpha"], baseline_ids=[])
    finally:
        store.close()


def opened(path: Path) -> SQLiteStore:
    return SQLiteStore(path, readonly=True)


@pytest.fixture
def step(tmp_path) -> tuple[Path, list[str]]:
    """Seven nights; mobilenet_v2 int8 30% slower from night 4 on (and staying slower).
    (An eighth, seed 7, has mobilenet_v1 fp32 9.8% slower by chance: the gate flags it.)"""
    path = tmp_path / "store" / "bench.sqlite"
    ids = nights(path, 7)
    slow_down(path, ids[4:], "mobilenet_v2", "int8", 1.3)
    return path, ids


@pytest.fixture
def slow_tonight(tmp_path) -> tuple[Path, list[str]]:
    """Six nights; mobilenet_v2 int8 30% slower in the newest only, which asks the gate
    for `last:4` at a 10% minimum effect."""
    path = tmp_path / "store" / "bench.sqlite"
    ids = nights(path, 6)
    slow_down(path, ids[-1:], "mobilenet_v2", "int8", 1.3)
    set_gate(path, ids[-1], {"baseline": "last:4", "min_effect": 0.1, "alpha": 0.05})
    return path, ids


def test_a_lasting_slowdown_is_one_change_point_at_its_night(step):
    path, ids = step
    store = opened(path)
    try:
        trends = collect(store, workers=2)
    finally:
        store.close()
    assert [(c.benchmark, c.at.run_id) for c in trends.changes] == [(SLOW, ids[4])]
    (change,) = trends.changes
    assert str(change.comparison.verdict) == "regressed"
    assert change.before.run_id == ids[3] and 1.2 < change.comparison.ratio < 1.4
    assert [m.run_id for m in trends.history[SLOW]] == ids  # every night, oldest first
    assert len(trends.history) == 4


def test_change_points_are_the_same_read_here_or_in_workers(step):
    path, _ = step
    store = opened(path)
    try:
        serial, forked = collect(store, workers=1), collect(store, workers=2)
    finally:
        store.close()
    assert [(c.benchmark, c.at.run_id, c.comparison) for c in serial.changes] == \
        [(c.benchmark, c.at.run_id, c.comparison) for c in forked.changes]
    assert serial.history == forked.history


def test_the_latest_night_is_judged_with_its_gate_settings_worst_first(slow_tonight, tmp_path):
    path, ids = slow_tonight
    root = tmp_path / "dashboards"
    store = opened(path)
    try:
        trends = collect(store)
        page = write_trends(root, store)
    finally:
        store.close()
    night = trends.night
    assert night.run_id == ids[-1] and night.base_ids == ids[1:5]
    assert night.settings.min_effect == 0.1 and night.settings.source.startswith(
        "the gate recorded with the run")
    verdicts = [str(r.comparison.verdict) for r in night.rows]
    assert verdicts[0] == "regressed" and night.rows[0].benchmark == SLOW
    assert "regressed" not in verdicts[1:]
    html = page.read_text()
    table = html.split('id="night-table"')[1].split("</table>")[0]
    first = table.split("<tbody>")[1].split("</tr>")[0]
    assert ">regressed<" in first and "mobilenet_v2 int8 on local/xnnpack/t1" in first
    assert "last:4: " + ", ".join(ids[1:5]) in " ".join(parse(page).text)
    assert [(c.benchmark, c.at.run_id) for c in trends.changes] == [(SLOW, ids[-1])]


def test_gate_settings_fall_back_to_the_defaults_and_say_which(tmp_path):
    assert gate_settings([]).baseline == "last:10"
    found = gate_settings([{"ref": "nightly", "min_effect": 5, "alpha": 0.01,
                            "judged_at": "2026-11-27T00:00:00"}])
    assert (found.baseline, found.min_effect, found.alpha) == ("nightly", 0.05, 0.01)
    assert "min_effect" in found.source and "alpha" not in found.source


def test_with_one_completed_run_the_page_says_there_is_nothing_to_compare(tmp_path):
    path = tmp_path / "bench.sqlite"
    nights(path, 1)
    store = opened(path)
    try:
        page = write_trends(tmp_path / "dashboards", store)
    finally:
        store.close()
    text = " ".join(parse(page).text)
    assert "The store has 1 completed run(s): the gate needs the newest run and at least " \
        "one earlier completed run." in text
    assert 'id="night-table"' not in page.read_text()
    assert "No change point among the runs shown." in text
    assert page.read_text().count("<figure") == 4  # still each benchmark's one run


def policy(path: Path) -> str:
    (found,) = [a["content"] for tag, a in parse(path).tags
                if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    return found


def links(path: Path) -> list[str]:
    return [a["href"] for tag, a in parse(path).tags if tag == "a"]


def test_links_point_to_existing_files_and_plots_only(step, tmp_path):
    path, ids = step
    root = tmp_path / "dashboards"
    store = opened(path)
    try:
        build_dashboard(analyse(store.facts(ids[4])), root, store.runs())  # only this one
        page = write_trends(root, store)
    finally:
        store.close()
    every_id = [a["id"] for _, a in parse(page).tags if a.get("id")]
    assert len(every_id) == len(set(every_id)), "an id is used twice"
    ids_on_page = set(every_id)
    found = links(page)
    for href in found:
        if href.startswith("#"):
            assert href[1:] in ids_on_page, href
        else:
            assert (root / href).is_file(), href
    assert f"{folder_name(ids[4])}/index.html" in found  # the run at the change: built
    assert not any(folder_name(ids[3]) in href for href in found)  # the run before: not
    assert f"#{anchor(SLOW)}" in found
    index = links(root / "index.html")
    assert "trends.html" in index
    assert all((root / href).is_file() for href in index)


def test_the_slow_benchmark_plot_marks_its_change(step, tmp_path):
    path, _ = step
    store = opened(path)
    try:
        page = write_trends(tmp_path / "dashboards", store)
    finally:
        store.close()
    html = page.read_text()
    figures = re.findall(r'<figure class="plot" id="([^"]+)">(.*?)</figure>', html, re.S)
    marked = [i for i, svg in figures if re.search(r">\s*\+\d+%\s*<", svg)]
    assert marked == [anchor(SLOW)]
    assert figures[0][0] == anchor(SLOW)  # the changed benchmark first
    assert all("plot left out" not in svg and CI_TEXT in svg for _, svg in figures)


def test_a_hostile_model_name_is_escaped_everywhere(tmp_path):
    path = tmp_path / "bench.sqlite"
    ids = nights(path, 3, models=(HOSTILE, "mobilenet_v2"), rounds=3)
    root = tmp_path / "dashboards"
    store = opened(path)
    try:
        build_dashboard(analyse(store.facts(ids[-1])), root, store.runs())
        page = write_trends(root, store)
    finally:
        store.close()
    html = page.read_text()
    assert HOSTILE not in html and html.count("<script") == 1  # the page's own sorter
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert any(HOSTILE in t for t in parse(page).text)  # shown as text
    assert "plot left out" not in html
    assert policy(page).startswith("default-src 'none'")
    assert policy(page) == policy(root / "index.html")  # the same policy as every page


def test_a_run_overview_links_to_trends_once_they_exist(step, tmp_path):
    path, ids = step
    root = tmp_path / "dashboards"
    store = opened(path)
    try:
        overview = build_dashboard(analyse(store.facts(ids[-1])), root, store.runs())
        assert "../trends.html" not in links(overview)
        write_trends(root, store)
        overview = build_dashboard(analyse(store.facts(ids[-1])), root, store.runs())
    finally:
        store.close()
    assert "../trends.html" in links(overview)


def test_bench_report_html_builds_the_trends_page(step, tmp_path, capsys):
    path, ids = step
    root = tmp_path / "out"
    assert main(["report", ids[2], "--format", "html", "--store", str(path),
                 "--dashboards", str(root)]) == 0
    assert (root / "trends.html").is_file() and "trends.html" in links(root / "index.html")
    assert capsys.readouterr().err == ""


def test_a_trends_failure_is_one_line_not_an_exception(step, tmp_path):
    path, _ = step
    root = tmp_path / "a-file"
    root.write_text("not a folder")
    said: list[str] = []
    store = opened(path)
    try:
        assert build_trends(root, store, said.append) is None
    finally:
        store.close()
    assert len(said) == 1 and "could not write the trends page" in said[0]
    assert "\n" not in said[0]


def test_a_one_round_run_is_a_point_without_an_interval():
    points = [RunPoint("a", "2026-03-01T02:00:00", 10_000.0, 9_500.0, 10_600.0, 5),
              RunPoint("b", "2026-03-02T02:00:00", 10_200.0, None, None, 1)]
    plot = trend_plot("m int8 on d/xnnpack/t1", "int8", points)
    assert "1 run(s) of one round, without an interval" in plot.alt
    assert "hollow: one round" in plot.svg and "95% CI within the run" in plot.alt
    assert trend_plot("nothing", "fp32", []) is None


def test_the_trends_page_loads_clean_in_a_browser(browser, step, tmp_path):
    path, ids = step
    root = tmp_path / "dashboards"
    store = opened(path)
    try:
        build_dashboard(analyse(store.facts(ids[4])), root, store.runs())
        page_path = write_trends(root, store)
    finally:
        store.close()
    record, page = visit(browser, page_path, keep_open=True)
    assert not record.console_errors and not record.page_errors and not record.dialogs
    assert not record.foreign_requests(root), record.requests
    assert record.requests == [page_path.resolve().as_uri()]  # nothing but the page itself
    assert page.locator("figure svg").count() == 4
    assert page.locator("script").count() == 1
    page.locator("#changes-table thead th").first.locator("button").click()  # it sorts
    assert page.locator("#changes-table thead th").first.get_attribute("aria-sort") == \
        "ascending"
    page.close()


def test_bench_run_builds_the_trends_page_after_the_run_dashboard(step, tmp_path):
    path, ids = step
    root = tmp_path / "dashboards"
    store = SQLiteStore(path)  # as `bench run` holds it: open for writing
    try:
        overview = build_run_dashboard(analyse(store.facts(ids[-1])), store, root)
    finally:
        store.close()
    assert overview == root / folder_name(ids[-1]) / "index.html"
    assert (root / "trends.html").is_file() and "trends.html" in links(root / "index.html")
