"""Drawing every plot of a dashboard, on every core.

matplotlib holds the GIL while it draws, so threads do not help; forked worker processes
do, and inherit the analysis frames without pickling them. Where fork is not available,
or there are only a few plots, they are drawn here, one after another.
"""

from __future__ import annotations

from bench.analysis import Analysis
from bench.report.dashboard.forked import SERIAL_BELOW, fork_map
from bench.report.dashboard.pages import Figure, Page, Wanted

_ANALYSIS: Analysis | None = None  # what forked workers draw from (inherited, not pickled)


def _draw(wanted: Wanted) -> Figure | None:
    assert _ANALYSIS is not None
    return wanted.draw(_ANALYSIS)


def draw_all(analysis: Analysis, wanted: list[Wanted], workers: int | None = None) -> dict:
    """{Wanted: Figure or None}, each plot drawn once (fewer than SERIAL_BELOW: here)."""
    global _ANALYSIS
    unique = list(dict.fromkeys(wanted))
    _ANALYSIS = analysis
    try:
        drawn = fork_map(_draw, unique, workers, SERIAL_BELOW)
    finally:
        _ANALYSIS = None
    return dict(zip(unique, drawn, strict=True))


def draw_pages(analysis: Analysis, pages: list[Page], workers: int | None = None) -> None:
    """Replace each page's wanted plots by the drawn figures (plots without data dropped)."""
    wanted = [w for page in pages for figures in page.figures.values() for w in figures]
    drawn = draw_all(analysis, wanted, workers)
    for page in pages:
        for name, figures in page.figures.items():
            page.figures[name] = [drawn[w] for w in figures if drawn[w] is not None]
