"""The dashboard in a real headless browser (Debian's chromium through playwright).

Every page loads from file:// with no console error, no uncaught exception, no dialog and
no request outside its own folder; tables sort; hostile names given to devices, models
and the label show as text and run nothing. A screenshot of an overview is kept as a
test artifact (build/test-artifacts/, or $BENCH_TEST_ARTIFACTS).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.analysis import analyse
from bench.report.dashboard.build import build_dashboard
from bench.store.sqlite import SQLiteStore
from bench.synthetic import make_store
from tests.browser import visit
from tests.conftest import REPO

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "../../etc/passwd",
           "n" * 300, "Модель-量子 ✓ $x$"]
ARTIFACTS = Path(os.environ.get("BENCH_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))


def dashboard(root: Path, **options) -> Path:
    store_path = root / "bench.sqlite"
    run_id = make_store(store_path, **options)
    store = SQLiteStore(store_path, readonly=True)
    facts, runs = store.facts(run_id), store.runs()
    store.close()
    return build_dashboard(analyse(facts), root / "dashboards", runs)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    return dashboard(root, models=HOSTILE, devices=HOSTILE, recipes=["fp32", "int8"],
                     threads=[1, 2], rounds=3, label=" ".join(HOSTILE))


def test_every_page_loads_clean_from_file_urls(browser, hostile):
    folder = hostile.parent
    pages = sorted(folder.glob("*.html")) + [folder.parent / "index.html"]
    assert len(pages) == 13  # overview, failed, 5 devices, 5 models; the runs index
    for path in pages:
        record, page = visit(browser, path, keep_open=True)
        assert not record.console_errors, (path.name, record.console_errors)
        assert not record.page_errors, (path.name, record.page_errors)
        assert not record.dialogs, (path.name, record.dialogs)
        assert not record.foreign_requests(folder.parent), (path.name, record.requests)
        assert page.locator("img").count() == 0
        assert page.locator("script").count() == 1  # the page's own sorter
        for link in page.locator("a").all():
            target = (path.parent / link.get_attribute("href")).resolve()
            assert target.is_relative_to(folder.parent.resolve()) and target.is_file()
        page.close()


def test_hostile_names_show_as_text_on_their_pages(browser, hostile):
    folder = hostile.parent
    record, page = visit(browser, hostile, keep_open=True)
    text = page.inner_text("body")
    for name in HOSTILE:
        assert name in text, name[:40]
    assert page.locator("svg text").count() > 10  # plots drew the names as text too
    page.close()
    for kind in ("device", "model"):
        shown = []
        for path in folder.glob(f"{kind}-*.html"):
            _, page = visit(browser, path, keep_open=True)
            shown.append(page.inner_text("h1").removeprefix(f"{kind} "))
            page.close()
        assert sorted(shown) == sorted(HOSTILE), kind  # each name, as text, on its own page
    assert not record.dialogs
    _, page = visit(browser, folder.parent / "index.html", keep_open=True)
    assert " ".join(HOSTILE) in page.inner_text("body")  # the label
    page.close()


def column(page, table: str, index: int) -> list[float | None]:
    values = page.eval_on_selector_all(
        f"#{table}-table tbody tr",
        f"rows => rows.map(r => r.cells[{index}].getAttribute('data-sort'))")
    return [float(v) if v not in (None, "") else None for v in values]


def test_tables_sort_by_number_with_unknowns_last(browser, hostile):
    _, page = visit(browser, hostile, keep_open=True)
    headings = page.eval_on_selector_all("#cells-table thead th",
                                         "hs => hs.map(h => h.innerText)")
    index = next(i for i, h in enumerate(headings) if h.startswith("latency"))
    header = page.locator("#cells-table thead th").nth(index)
    header.locator("button").click()
    up = column(page, "cells", index)
    known = [v for v in up if v is not None]
    assert known == sorted(known) and len(known) > 10
    assert up[len(known):] == [None] * (len(up) - len(known))  # failed cells last
    assert header.get_attribute("aria-sort") == "ascending"
    header.locator("button").click()
    down = column(page, "cells", index)
    assert [v for v in down if v is not None] == sorted(known, reverse=True)
    assert down[-1] is None and header.get_attribute("aria-sort") == "descending"
    page.close()


def test_text_columns_sort_alphabetically_and_the_paper_check_by_ratio(browser, hostile):
    _, page = visit(browser, hostile, keep_open=True)
    page.locator("#cells-table thead th").nth(0).locator("button").click()
    models = page.eval_on_selector_all("#cells-table tbody tr",
                                       "rows => rows.map(r => r.cells[0].innerText)")
    assert models == sorted(models, key=str.lower)
    headings = page.eval_on_selector_all("#paper-table thead th",
                                         "hs => hs.map(h => h.innerText)")
    index = headings.index("measured")
    page.locator("#paper-table thead th").nth(index).locator("button").click()
    ratios = [v for v in column(page, "paper", index) if v is not None]
    assert len(ratios) >= 2 and ratios == sorted(ratios)
    page.close()


def test_overview_screenshot_is_kept(browser, tmp_path):
    overview = dashboard(tmp_path, models=["mobilenet_v2", "mobilenet_v1"],
                         devices=["local", "pixel"], rounds=6)
    record, page = visit(browser, overview, keep_open=True)
    assert not record.console_errors and not record.page_errors
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard-overview.png"
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    assert shot.stat().st_size > 20_000
