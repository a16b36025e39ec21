"""One benchmark's latency across runs: a small SVG for the trends page.

Each run is its geometric mean of round medians with a 95% t-interval on that run's log
round medians. That interval is within the run only: run-to-run variation is not in it,
so two runs' intervals can miss each other with nothing changed; the plot and its caption
say so. A run of one round is a hollow point without an interval (it has none). Change
points (the gate's rule, applied run by run) are vertical lines at the run of the change.

Drawn like `bench.report.plots` (its style, lock, colours and SVG clean-up): a matplotlib
Figure on the SVG canvas, never pyplot; text kept as text, math text off. Small and
cheap (one axes, one collection per kind of mark, ticks chosen here): a page of 100
benchmarks draws each in about 50 ms.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from bench.report.plots import (
    EDGE,
    MUTED,
    SMALL_PT,
    Plot,
    _fmt,
    _segments,
    _style,
    _svg,
    recipe_colour,
    short,
)

WIDTH, HEIGHT = 6.0, 2.3  # inches: two plots side by side on a wide page, unscaled
LEFT, RIGHT, TOP, BOTTOM = 0.7, 0.15, 0.3, 0.62
CI_TEXT = "95% CI within the run"
REGRESSED, IMPROVED = "#D55E00", "#009E73"  # Okabe-Ito vermillion and bluish green
X_TICKS = 6


@dataclass(frozen=True)
class RunPoint:
    """A run's figure for one benchmark (µs). low/high None: one round, no interval."""

    run_id: str
    started_at: str
    value_us: float
    low_us: float | None
    high_us: float | None
    rounds: int
    fingerprint: str | None = None


@dataclass(frozen=True)
class Mark:
    """A change point on the plot: the index of its run among the points, its direction
    and its ratio to the runs before."""

    index: int
    regressed: bool
    ratio: float | None


def _y_ticks(low: float, high: float) -> list[float]:
    """Four or so round values spread evenly on the log scale between low and high."""
    if high <= low * 1.0001:
        return [low]
    ticks = []
    for k in range(4):
        value = low * (high / low) ** (k / 3)
        digits = 2 - int(math.floor(math.log10(value)))
        ticks.append(round(value, digits))
    return sorted(set(ticks))


def _x_ticks(points: Sequence[RunPoint]) -> list[int]:
    count = len(points)
    step = max(1, math.ceil(count / X_TICKS))
    chosen = list(range(0, count, step))
    if chosen[-1] != count - 1:
        if count - 1 - chosen[-1] < step / 2 and len(chosen) > 1:
            chosen[-1] = count - 1
        else:
            chosen.append(count - 1)
    return chosen


def _x_labels(points: Sequence[RunPoint], ticks: Sequence[int]) -> dict[int, str]:
    """Month-day of each tick's run; with the time of day when two ticks share a day."""
    days = {t: str(points[t].started_at)[5:10] for t in ticks}
    if len(set(days.values())) == len(days):
        return days
    return {t: str(points[t].started_at)[5:16].replace("T", " ") for t in ticks}


def trend_plot(title: str, recipe: str, points: Sequence[RunPoint],
               marks: Sequence[Mark] = ()) -> Plot | None:
    """The plot of one benchmark's runs (oldest first); None without a point."""
    if not points:
        return None
    colour = recipe_colour(recipe)
    xs = list(range(len(points)))
    ms = [p.value_us / 1000 for p in points]
    spans = [(x, p.low_us / 1000, p.high_us / 1000) for x, p in zip(xs, points, strict=True)
             if p.low_us is not None and p.high_us is not None]
    single = [x for x, p in zip(xs, points, strict=True) if p.low_us is None]
    values = ms + [v for _, lo, hi in spans for v in (lo, hi)]
    low, high = min(values), max(values)
    hardware = [x for x in xs[1:] if points[x].fingerprint != points[x - 1].fingerprint]
    shown = short(title, 90)
    alt = (f"Latency of {short(title, 200)} over {len(points)} run(s), oldest first: each "
           f"run's geometric mean of round medians with its {CI_TEXT} (run-to-run "
           "variation is not in it)"
           + (f"; {len(single)} run(s) of one round, without an interval" if single else "")
           + (f"; {len(marks)} change point(s) marked by vertical lines" if marks else "")
           + (f"; the device's hardware changed {len(hardware)} time(s) (dotted lines)"
              if hardware else "") + ".")
    with _style():
        fig = Figure(figsize=(WIDTH, HEIGHT))
        ax = fig.add_axes((LEFT / WIDTH, BOTTOM / HEIGHT, 1 - (LEFT + RIGHT) / WIDTH,
                           1 - (TOP + BOTTOM) / HEIGHT))
        ax.set_yscale("log")
        pad = (high / low) ** 0.08 if high > low else 1.05
        ax.set_ylim(low / pad, high * pad)
        ax.set_xlim(-0.6, len(points) - 0.4)
        ax.yaxis.set_major_locator(FixedLocator(_y_ticks(low, high)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt(v)))
        ax.yaxis.set_minor_locator(NullLocator())
        ticks = _x_ticks(points)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        labels = _x_labels(points, ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: labels.get(int(v), "")))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(axis="x", visible=False)
        if hardware:
            _segments(ax, hardware, 0, 1, vertical=True, colors=MUTED, linewidth=0.8,
                      linestyles="dotted", transform=ax.get_xaxis_transform())
        for regressed in (True, False):
            at = [m.index - 0.5 for m in marks if m.regressed is regressed]
            if at:
                _segments(ax, at, 0, 1, vertical=True, linewidth=1.2, linestyles="dashed",
                          colors=REGRESSED if regressed else IMPROVED,
                          transform=ax.get_xaxis_transform())
        for mark in marks:
            if mark.ratio is not None:
                ax.text(mark.index - 0.5, 1.0, f" {(mark.ratio - 1) * 100:+.0f}%",
                        transform=ax.get_xaxis_transform(), fontsize=SMALL_PT, va="bottom",
                        ha="left", color=REGRESSED if mark.regressed else IMPROVED)
        if spans:
            _segments(ax, [x for x, _, _ in spans], [lo for _, lo, _ in spans],
                      [hi for _, _, hi in spans], vertical=True, colors=colour, linewidth=1.2)
        filled = [x for x in xs if x not in set(single)]
        if filled:
            ax.scatter(filled, [ms[x] for x in filled], s=12, color=colour, zorder=3,
                       clip_on=False)
        if single:
            ax.scatter(single, [ms[x] for x in single], s=14, facecolors="none",
                       edgecolors=colour, linewidths=1.0, zorder=3, clip_on=False)
        ax.set_ylabel("latency, ms (log)")
        ax.set_xlabel("run start (UTC), oldest first\n"
                      f"dot: geometric mean of round medians · bar: {CI_TEXT}"
                      + (" · hollow: one round" if single else "")
                      + (" · dashed: change point" if marks else ""))
        fig.text(EDGE / WIDTH, 1 - 0.06 / HEIGHT, shown, ha="left", va="top", fontsize=9)
        salt = hashlib.sha256(f"trend\x1f{title}".encode("utf-8", "replace")).hexdigest()[:16]
        svg = _svg(fig, salt, alt)
    return Plot(svg=svg, title=shown, alt=alt)
