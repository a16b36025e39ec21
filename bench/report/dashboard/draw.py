"""Drawing every plot of a dashboard, on every core.

matplotlib holds the GIL while it draws, so threads do not help; forked worker processes
do, and inherit the analysis frames without pickling them. Where fork is not available,
or there are only a few plots, they are drawn here, one after another.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from bench.analysis import Analysis
from bench.report.dashboard.pages import Figure, Page, Wanted

SERIAL_BELOW = 6  # plots: fewer than this are drawn here (a pool costs more than it saves)
_ANALYSIS: Analysis | None = None  # what forked workers draw from


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _draw(wanted: Wanted) -> Figure | None:
    assert _ANALYSIS is not None
    return wanted.draw(_ANALYSIS)


def draw_all(analysis: Analysis, wanted: list[Wanted], workers: int | None = None) -> dict:
    """{Wanted: Figure or None}, each plot drawn once."""
    global _ANALYSIS
    unique = list(dict.fromkeys(wanted))
    workers = workers or min(usable_cpus(), 8)
    fork = "fork" in multiprocessing.get_all_start_methods()
    if workers < 2 or len(unique) < SERIAL_BELOW or not fork:
        return {w: w.draw(analysis) for w in unique}
    _ANALYSIS = analysis
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) \
                as pool:
            drawn = list(pool.map(_draw, unique, chunksize=max(1, len(unique) // (workers * 4))))
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
