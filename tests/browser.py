"""A real headless browser for the dashboard tests: Debian's chromium through playwright.

Nothing downloads a browser: playwright drives /usr/bin/chromium (installed by `make
test` as root, like openssh-server). Chromium is told to make no lookups of its own; each
page load records what a user would care about: console errors, uncaught exceptions,
dialogs (an injected `alert` would open one) and every request it made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = os.environ.get("BENCH_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
]


@dataclass
class Visit:
    """What happened while one page loaded."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def foreign_requests(self, folder: Path) -> list[str]:
        """Requests that are not this dashboard's own files (or inline data)."""
        own = folder.resolve().as_uri() + "/"
        return [url for url in self.requests
                if not url.startswith("data:") and not url.startswith(own)]


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)


def visit(browser, path: Path, *, keep_open: bool = False):
    """Load `path` from file:// in a fresh page; the visit record (and the page if asked)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    record = Visit(path.resolve().as_uri())
    page.on("console", lambda m: record.console_errors.append(m.text) if m.type == "error"
            else None)
    page.on("pageerror", lambda exc: record.page_errors.append(str(exc)))
    page.on("request", lambda request: record.requests.append(request.url))

    def dismiss(dialog):
        record.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.goto(record.url, wait_until="load")
    page.wait_for_timeout(50)  # let late scripts and errors surface
    if keep_open:
        return record, page
    page.close()
    return record
