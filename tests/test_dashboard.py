"""The HTML dashboard, as files: every page there, figures as the terminal shows them,
hostile names escaped and kept inside the folder, built by `bench report --format html`."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bench.analysis import SAME_BACKEND, analyse
from bench.cli import main
from bench.report.dashboard.build import build_dashboard
from bench.report.dashboard.names import page_name
from bench.report.table import ratio, with_ci
from bench.store.sqlite import SQLiteStore
from bench.synthetic import make_store

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "../../etc/passwd",
           "d" * 300, "Модель-量子 ✓ $\\alpha$"]


def built(tmp_path: Path, **options) -> tuple:
    store_path = tmp_path / "store" / "bench.sqlite"
    run_id = make_store(store_path, **options)
    store = SQLiteStore(store_path, readonly=True)
    facts, runs = store.facts(run_id), store.runs()
    store.close()
    analysis = analyse(facts)
    root = tmp_path / "dashboards"
    return analysis, build_dashboard(analysis, root, runs), root


class Elements(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> Elements:
    parser = Elements()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_a_run_gets_an_overview_a_page_per_device_and_model_and_a_failed_page(tmp_path):
    analysis, overview, root = built(tmp_path, models=2, devices=["local", "pixel"],
                                     backends=["xnnpack", "cpu"], threads=[1, 2], rounds=3)
    folder = overview.parent
    assert overview == root / analysis.run["id"] / "index.html"
    expected = {"index.html", "failed.html"} | {page_name("device", d) for d in ("local", "pixel")}
    expected |= {page_name("model", m) for m in set(analysis.cells["model"])}
    assert {p.name for p in folder.iterdir()} == expected
    page = parse(overview)
    text = " ".join(page.text)
    tables = [a.get("id") for tag, a in page.tags if tag == "table"]
    assert tables[:3] == ["cells-table", "paper-table", "devices-table"]  # speedups, then paper
    ids = [a["id"] for _, a in page.tags if a.get("id")]
    assert len(ids) == len(set(ids)), "an id is used twice"
    cells_body = overview.read_text().split('id="cells-table">')[1].split("<tbody>")[1]
    cell_rows = re.findall(r"<tr>", cells_body.split("</tbody>")[0])
    assert len(cell_rows) == len(analysis.cells)
    assert sum(tag == "svg" for tag, _ in page.tags) >= 2  # a speedup plot per device
    assert "int8 up to 10x faster on a DSP" in text and "no data" in text
    failed = " ".join(parse(folder / "failed.html").text)
    for cell in analysis.cells[analysis.cells["status"] != "ok"].to_dict("records"):
        assert cell["reason"].split("\n")[0][:40] in failed
    index = " ".join(parse(root / "index.html").text)
    assert analysis.run["id"] in index
    for path in folder.iterdir():
        assert "plot left out" not in path.read_text()  # every plot passed the SVG check


def test_a_run_with_nothing_measured_still_reports_and_builds(tmp_path, capsys):
    store = SQLiteStore(tmp_path / "bench.sqlite")
    store.start_run("20261127-000000-dead", label=None, settings={}, host={},
                    harness_version="0", protocol={}, protocol_version=3, seed=1)
    store.close()
    common = ["--store", str(tmp_path / "bench.sqlite")]
    assert main(["report", *common]) == 0
    assert "no cells in this run" in capsys.readouterr().out
    assert main(["report", "--format", "html", "--dashboards", str(tmp_path / "d"),
                 *common]) == 0
    overview = Path(capsys.readouterr().out.strip())
    assert "no data" in overview.read_text() and (overview.parent / "failed.html").is_file()


def test_pages_show_the_terminal_tables_figures(tmp_path):
    analysis, overview, _ = built(tmp_path, models=1, rounds=4, failures=False)
    html = overview.read_text()
    for cell in analysis.cells.to_dict("records"):
        key = [cell[n] for n in ("model", "recipe", "sha256", "device", "backend", "threads")]
        assert with_ci(cell["latency_us"], cell["latency_us_low"],
                       cell["latency_us_high"]) in html
        found = analysis.speedup(key, SAME_BACKEND)
        if found:
            assert ratio(found) in html


def test_hostile_names_are_escaped_and_never_leave_the_folder(tmp_path):
    analysis, overview, root = built(tmp_path, models=HOSTILE[:3], devices=HOSTILE[2:],
                                     label=HOSTILE[0] + HOSTILE[1], rounds=2)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(root in p.parents or p.parent == tmp_path / "store" for p in files)
    pages = sorted(overview.parent.glob("*.html")) + [root / "index.html"]
    assert len(pages) == 2 + 3 + 3 + 1
    for page in pages:
        source = page.read_text(encoding="utf-8")
        parsed = parse(page)
        assert [t for t, _ in parsed.tags].count("script") == 1, page.name  # ours only
        assert not [t for t, _ in parsed.tags if t == "img"], page.name
        assert not [a for _, attrs in parsed.tags for a in attrs if a.startswith("on")]
        for tag, attrs in parsed.tags:
            if tag == "a":
                href = attrs["href"]
                assert not href.startswith(("/", "http", "javascript", "file")), href
                assert (page.parent / href).resolve().is_relative_to(root.resolve())
        assert "<script>alert" not in source and "onerror=alert(1)>" not in source
    text = " ".join(parse(overview).text)
    for name in HOSTILE:
        assert name in text  # shown as text: device and model lists, the label


def test_bench_report_html_builds_the_dashboard_from_the_store(tmp_path, capsys):
    store = tmp_path / "bench.sqlite"
    first = make_store(store, models=1, rounds=2)
    second = make_store(store, models=1, rounds=2, seed=1)
    root = tmp_path / "out"
    assert main(["report", first, "--format", "html", "--store", str(store),
                 "--dashboards", str(root)]) == 0
    assert capsys.readouterr().out.strip() == str(root / first / "index.html")
    index = (root / "index.html").read_text()
    assert f'href="{first}/index.html"' in index and second in index
    assert f'href="{second}/index.html"' not in index  # not built yet: listed, not linked
    assert main(["report", "--format", "html", "--store", str(store), "-o", str(root)]) == 0
    assert f'href="{second}/index.html"' in (root / "index.html").read_text()


def test_an_unwritable_dashboard_folder_is_one_clear_error(tmp_path, capsys):
    store = tmp_path / "bench.sqlite"
    make_store(store, models=1, rounds=2)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", "--format", "html", "--store", str(store),
                 "--dashboards", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the dashboard" in err and "--dashboards" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("fmt", ["table", "md"])
def test_terminal_and_markdown_reports_carry_the_paper_check(tmp_path, capsys, fmt):
    store = tmp_path / "bench.sqlite"
    make_store(store, models=["mobilenet_v2"], rounds=3, failures=False)
    assert main(["report", "--format", fmt, "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "int8 2-3x faster than float on CPU" in out
    assert "MobileNet-v2 1.67x" in out and "no data" in out
