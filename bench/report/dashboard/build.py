"""Writing the dashboard's pages: the runs index and one folder per run (see the package
docstring for the layout)."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from importlib import resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from bench import __version__
from bench.analysis import Analysis
from bench.report.dashboard.draw import draw_pages
from bench.report.dashboard.names import folder_name, inside
from bench.report.dashboard.pages import Page, run_pages
from bench.report.dashboard.tables import Cell, Table
from bench.store.liveness import shown_status
from bench.timeutil import utc_now

INDEX = "index.html"
TRENDS = "trends.html"  # store-wide, beside the index (`trends.py`)


PACKAGE = "bench.report.dashboard"


def _asset(name: str) -> str:
    return resources.files(PACKAGE).joinpath("templates", name).read_text("utf-8")


def _environment() -> Environment:
    env = Environment(loader=PackageLoader(PACKAGE, "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    script = _asset("sortable.js")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    env.globals.update(
        style=_asset("dashboard.css"), script=script, harness_version=__version__,
        trends_link=False,
        csp=(f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
             "base-uri 'none'; form-action 'none'"))
    return env


def _write(path: Path, text: str) -> None:
    """Atomically: a reader (a browser, a CI upload) never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".page-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run_folder(root: Path, run_id: str) -> Path:
    return inside(root, root / folder_name(run_id))


def build_dashboard(analysis: Analysis, root: Path, runs: list[dict]) -> Path:
    """Write the run's pages under root/RUN/ and the index of runs (`runs`: every run in
    the store, as `Store.runs()` lists them); the overview's path."""
    root = Path(root)
    env = _environment()
    folder = run_folder(root, analysis.run["id"])
    generated = utc_now()
    pages = run_pages(analysis)
    draw_pages(analysis, pages)
    trends = (root / TRENDS).is_file()  # built from the store, after the run's pages
    for page in pages:
        html = env.get_template(page.template).render(page=page, generated=generated,
                                                      run=analysis.run, trends_link=trends)
        _write(inside(folder, folder / page.file), html)
    write_index(root, runs, env)
    return folder / INDEX


def write_index(root: Path, runs: list[dict], env: Environment | None = None) -> Path:
    """The index of runs: every run in the store, newest first; a link where it was built."""
    env = env or _environment()
    table = Table("runs", [("run", False), ("started (UTC)", False), ("status", False),
                           ("cells ok", True), ("failed", True), ("label", False)])
    for run in sorted(runs, key=lambda r: r["started_at"], reverse=True):
        folder = root / folder_name(run["id"])
        href = f"{folder_name(run['id'])}/{INDEX}" if (folder / INDEX).is_file() else None
        table.rows.append([
            Cell(run["id"], href=href, cls="mono"),
            Cell(str(run["started_at"])[:19].replace("T", " ")),
            Cell(shown_status(run)),
            Cell(f"{run['ok']}/{run['cells']}", run["ok"]),
            Cell(str(run["failed"]), run["failed"]),
            Cell(run.get("label") or ""),
        ])
    page = Page("index.html", INDEX, "bench runs", tables={"runs": table},
                extra={"trends": (root / TRENDS).is_file()})
    path = inside(root, root / INDEX)
    _write(path, env.get_template(page.template).render(page=page, generated=utc_now(),
                                                        run=None))
    return path

