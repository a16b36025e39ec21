"""Plots for the static HTML dashboard: inline SVG drawn from the analysis frames.

Every value drawn comes from `bench.analysis` frames, never re-derived here: a cell's
latency and its 95% CI (cells: latency_us, _low, _high), the round medians behind it
(rounds: summary_us of usable rounds), speedups and their CIs (speedups, same backend),
sizes (variants: size_bytes). Failed, fallback, skipped and pending cells are results:
they are named on the plot, never silently dropped.

Why it is built this way:
- SVG text, not paths (`svg.fonttype: none`): small files, searchable names, and every
  user string (model, device, backend, recipe) reaches the SVG only as XML-escaped text
  content. Math text and TeX are off, so a name such as `$x$` is drawn literally.
- `Figure` + `FigureCanvasSVG`, never pyplot: no global figure registry and no GUI
  backend. rc settings are global in matplotlib, so each plot is built and saved under
  `rc_context` inside one module lock: safe from threads (rendering is pure Python and
  holds the GIL anyway; use processes to render in parallel).
- Deterministic: a fixed hash salt per plot (run id, plot kind and title: ids differ
  between plots inlined in one page), no date, deterministic jitter.
- Readable on light and dark pages: transparent background, Okabe-Ito colours with one
  fixed colour per recipe, light grid; the page may invert it for a dark theme.
- Fast and small at 1,000 cells (~0.1-0.2 s a plot): one axes per plot where possible
  (an axes costs ~40 ms: blocks and model groups share one), one collection per group of
  points (not an artist per point), category labels as plain texts (a tick is five
  artists), margins computed here in inches (layout engines measure every tick label
  several times), no minor ticks, at most `MAX_ROWS` rows (the title says what was left
  out).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import threading
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import matplotlib
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
from matplotlib.transforms import blended_transform_factory

from bench.analysis import CPU_BACKENDS, SAME_BACKEND, Analysis
from bench.keys import REFERENCE_RECIPE

__all__ = ["Plot", "latency_plot", "pareto_front", "recipe_colour", "speedup_plot",
           "threads_plot", "tradeoff_plot"]

CI_TEXT = "95% CI"
MAX_ROWS = 60  # rows of one figure; beyond, the title points to the device pages
MAX_FACETS = 12  # models in one threads plot
MODELS_PER_ROW = 6
NAME_CHARS = 28  # a name on an axis; full names belong to the page's tables
LABELLED_POINTS = 15  # a trade-off plot with more labels only its Pareto front
PAPER_BAND = (2.0, 3.0)
PAPER_LABEL = "paper: 2-3x (ARM, 2018)"  # int8 over float on ARM CPUs, arXiv 1806.08342

# Geometry, in inches (the SVG is 72 pt per inch; a page shows it at 96 px per inch).
WIDTH = 7.5
ROW = 0.19  # one category row
TITLE = 0.34  # the figure title above the first axes
FACET_TITLE = 0.24
TICKS = 0.24  # tick labels under an axes
LINE = 0.16  # one line of axis label or legend
EDGE = 0.12

# Okabe-Ito, colourblind-safe; fp32 (the reference) neutral dark grey.
RECIPE_COLOURS = {
    "fp32": "#555555",
    "fp16": "#56B4E9",
    "dynamic": "#E69F00",
    "int8": "#0072B2",
    "int8-per-tensor": "#009E73",
    "int16x8": "#CC79A7",
}
OTHER_COLOURS = ("#D55E00", "#000000", "#F0E442")
RECIPE_ORDER = tuple(RECIPE_COLOURS)
TEXT, MUTED, GRID = "#222222", "#666666", "#DDDDDD"
FONT_PT, SMALL_PT = 9.0, 8.0

_RC = {
    "svg.fonttype": "none",
    "text.parse_math": False,
    "text.usetex": False,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial"],  # layout metrics; the browser draws the text
    "font.size": FONT_PT,
    "axes.titlesize": FONT_PT,
    "axes.labelsize": SMALL_PT,
    "xtick.labelsize": SMALL_PT,
    "ytick.labelsize": SMALL_PT,
    "legend.fontsize": SMALL_PT,
    "figure.titlesize": 10,
    "axes.facecolor": "none",
    "figure.facecolor": "none",
    "savefig.transparent": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#888888",
    "axes.linewidth": 0.8,
    "axes.grid": True,
    "grid.color": GRID,
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.formatter.useoffset": False,
    "text.color": TEXT,
    "axes.labelcolor": TEXT,
    "axes.titlecolor": TEXT,
    "xtick.color": "#444444",
    "ytick.color": "#444444",
    "xtick.major.size": 3.0,
    "ytick.major.size": 3.0,
    "legend.frameon": False,
    "legend.handletextpad": 0.4,
    "legend.columnspacing": 1.2,
    "legend.borderaxespad": 0.0,
    "path.simplify": True,
}
_LOCK = threading.Lock()
_GOLDEN = 0.6180339887498949
_SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}


@dataclass(frozen=True)
class Plot:
    """One figure: inline SVG (no XML declaration), its title, a one-sentence alt text.

    Plain strings: the page must HTML-escape `title` and `alt` where it writes them.
    """

    svg: str
    title: str
    alt: str


# ---------------------------------------------------------------------------- names


def recipe_colour(recipe: str) -> str:
    """One fixed colour per recipe on every plot; unknown recipes by a stable hash."""
    if recipe in RECIPE_COLOURS:
        return RECIPE_COLOURS[recipe]
    digest = hashlib.sha256(str(recipe).encode("utf-8", "replace")).digest()
    return OTHER_COLOURS[digest[0] % len(OTHER_COLOURS)]


def _recipe_rank(recipe: str) -> tuple[int, str]:
    if recipe in RECIPE_ORDER:
        return RECIPE_ORDER.index(recipe), ""
    return len(RECIPE_ORDER), str(recipe)


_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ufffe\uffff]+")


def clean(text: object) -> str:
    """A name as one line of XML-safe text: control characters, lone surrogates and
    non-characters would make the SVG invalid XML (or break a label over lines)."""
    text = str(text).encode("utf-8", "replace").decode("utf-8")
    return " ".join(_UNSAFE.sub(" ", text).split())


def short(text: object, limit: int = NAME_CHARS) -> str:
    """A cleaned name cut to `limit` characters with an ellipsis."""
    text = clean(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _text_width(text: str, size_pt: float = SMALL_PT) -> float:
    """Inches a label needs (DejaVu Sans averages 0.6 em; East Asian wide glyphs 1 em).
    An estimate instead of a measurement: measuring is what makes layout engines slow."""
    ems = sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.6 for c in text)
    return ems * size_pt / 72


def _where(device, backend, threads) -> str:
    plural = "" if str(threads) == "1" else "s"
    return f"{short(device, 20)} / {short(backend, 14)} / {threads} thread{plural}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------------------- frames


def _number(value) -> float | None:
    """A finite float, or None for None/NaN/NA (unknown is never 0)."""
    if value is None or value is pd.NA:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _interval_ms(cell: dict) -> tuple[float, float, float]:
    """A drawn cell's latency and its 95% CI in ms (the centre where a bound is unknown)."""
    centre = _number(cell["latency_us"])
    low, high = _number(cell.get("latency_us_low")), _number(cell.get("latency_us_high"))
    return centre / 1000, (low or centre) / 1000, (high or centre) / 1000


def _status_note(cell: dict) -> str | None:
    """Why a cell has no figure (or an unfinished one); None for a plain measured cell."""
    status = str(cell.get("status"))
    if status in ("ok", "pending") and _number(cell.get("latency_us")):
        return "unfinished" if status == "pending" else None
    return status if status not in ("ok", "None") else "no figure"


def _drawn(cell: dict) -> bool:
    return _status_note(cell) in (None, "unfinished")


CELL_FIELDS = ("model", "recipe", "device", "backend", "threads", "cell_id", "status",
               "latency_us", "latency_us_low", "latency_us_high")


def _cells(analysis: Analysis, **equal) -> list[dict]:
    """The cells frame as records, filtered on column == value, in display order: devices
    and backends as first planned, threads ascending, models as planned, recipes in
    their usual order (fp32 first)."""
    frame = analysis.cells
    if frame is None or frame.empty:
        return []
    for column, value in equal.items():
        if value is not None:
            frame = frame[frame[column] == value]
    cells = frame[[c for c in CELL_FIELDS if c in frame.columns]].to_dict("records")
    order = {name: _first_seen(c[name] for c in cells) for name in ("device", "backend", "model")}
    cells.sort(key=lambda c: (order["device"][c["device"]], order["backend"][c["backend"]],
                              int(c["threads"]), order["model"][c["model"]],
                              _recipe_rank(c["recipe"])))
    return cells


def _first_seen(values) -> dict:
    order: dict = {}
    for value in values:
        order.setdefault(value, len(order))
    return order


def _round_medians(analysis: Analysis, cell_ids: set) -> dict[str, list[float]]:
    """Usable round medians (µs) per cell, in round order."""
    frame = analysis.rounds
    if frame is None or frame.empty or not {"cell_id", "usable", "summary_us"} <= set(frame):
        return {}
    frame = frame[frame["usable"].eq(True) & frame["cell_id"].isin(cell_ids)]
    if "round" in frame.columns:
        frame = frame.sort_values("round", kind="stable")
    out: dict[str, list[float]] = {}
    for cell_id, value in zip(frame["cell_id"], frame["summary_us"], strict=True):
        value = _number(value)
        if value is not None and value > 0:
            out.setdefault(cell_id, []).append(value)
    return out


def _same_backend_speedups(analysis: Analysis, device: str | None) -> dict[tuple, tuple]:
    """(model, recipe, device, backend, threads) -> (speedup, low, high)."""
    frame = analysis.speedups
    if frame is None or frame.empty:
        return {}
    frame = frame[frame["reference"] == SAME_BACKEND]
    if device is not None:
        frame = frame[frame["device"] == device]
    columns = ["model", "recipe", "device", "backend", "threads", "speedup", "speedup_low",
               "speedup_high"]
    out = {}
    for row in frame[columns].to_dict("records"):
        value = _number(row["speedup"])
        if value is not None and value > 0:
            key = (row["model"], row["recipe"], row["device"], row["backend"], int(row["threads"]))
            out[key] = (value, _number(row.get("speedup_low")), _number(row.get("speedup_high")))
    return out


# ---------------------------------------------------------------------------- drawing


@contextmanager
def _style() -> Iterator[None]:
    """The one style, under the lock (rc settings are process-global in matplotlib)."""
    with _LOCK, matplotlib.rc_context(_RC), warnings.catch_warnings():
        # Names in scripts DejaVu lacks (CJK): the browser draws the text with its own fonts.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        yield


def _grid(height: float, rows: int = 1, cols: int = 1, *, left: float, top: float,
          bottom: float, right: float = 0.2, vgap: float = 0.0, hgap: float = 0.0,
          height_ratios: Sequence[float] | None = None) -> tuple[Figure, list[list[Axes]]]:
    """A figure of `height` inches with a grid of axes placed by margins in inches."""
    fig = Figure(figsize=(WIDTH, height))
    inner_h = height - top - bottom - vgap * (rows - 1)
    inner_w = WIDTH - left - right - hgap * (cols - 1)
    spec = fig.add_gridspec(
        rows, cols, left=left / WIDTH, right=1 - right / WIDTH, top=1 - top / height,
        bottom=bottom / height, hspace=vgap / (inner_h / rows), wspace=hgap / (inner_w / cols),
        height_ratios=height_ratios)
    return fig, spec.subplots(squeeze=False).tolist()


def _title(fig: Figure, title: str) -> None:
    height = fig.get_size_inches()[1]
    fig.text(EDGE / WIDTH, 1 - 0.08 / height, title, ha="left", va="top", fontsize=10)


def _legend(fig: Figure, handles: list) -> None:
    """A legend along the bottom edge, wrapped to the figure's width."""
    cols = _legend_columns(handles)
    fig.legend(handles=handles, loc="lower left", ncols=cols,
               bbox_to_anchor=(EDGE / WIDTH, 0.05 / fig.get_size_inches()[1]))


def _legend_columns(handles: list) -> int:
    widest = max(_text_width(h.get_label()) for h in handles) + 0.45
    return max(1, min(len(handles), int((WIDTH - 2 * EDGE) // widest)))


def _legend_height(handles: list) -> float:
    return math.ceil(len(handles) / _legend_columns(handles)) * LINE + 0.08


def _recipe_handles(recipes: Sequence[str]) -> list:
    return [Line2D([], [], color=recipe_colour(r), marker="o", linestyle="none",
                   markersize=5, label=short(r, 18)) for r in recipes]


def _fmt(value: float) -> str:
    """A tick value as plain text (math text is off, so matplotlib's 10^x would print raw)."""
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _log_axis(axis, low: float, high: float, suffix: str = "") -> None:
    """Log ticks as plain numbers; 1-2-5 steps, finer on a short range; no minor ticks."""
    subs = (1.0, 2.0, 5.0) if high / low > 8 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: _fmt(v) + suffix))
    axis.set_minor_locator(NullLocator())


def _scale(ax: Axes, which: str, values: Sequence[float], suffix: str = "") -> bool:
    """Linear from 0, or log when the values span more than 20x (a mixed-device or
    mixed-model plot: linear would squash the fast ones); limits set here. True when log."""
    positive = [v for v in values if v and v > 0]
    if not positive:
        return False
    low, high = min(positive), max(positive)
    axis, set_scale, set_lim = ((ax.xaxis, ax.set_xscale, ax.set_xlim) if which == "x"
                                else (ax.yaxis, ax.set_yscale, ax.set_ylim))
    if high / low > 20:
        set_scale("log")
        set_lim(low / 1.15, high * 1.15)
        _log_axis(axis, low, high, suffix)
        return True
    set_lim(0, high * 1.06)
    return False


def _segments(ax: Axes, at: Sequence[float], start, end, vertical: bool = False,
              **style) -> None:
    """Horizontal (or vertical) segments as one collection. Not hlines/vlines: those
    autoscale through every segment (slow on log axes); limits are set explicitly here.

    Unclipped, like the plots' markers: the limits are made to hold every value drawn,
    and a clip path per element is a third of the SVG of a strip plot."""
    count = len(at)
    starts = start if isinstance(start, Sequence) else [start] * count
    ends = end if isinstance(end, Sequence) else [end] * count
    if vertical:
        lines = [((a, s), (a, e)) for a, s, e in zip(at, starts, ends, strict=True)]
    else:
        lines = [((s, a), (e, a)) for a, s, e in zip(at, starts, ends, strict=True)]
    ax.add_collection(LineCollection(lines, **{"clip_on": False, **style}), autolim=False)


def _jitter(count: int, width: float = 0.5) -> list[float]:
    """Deterministic, evenly spread offsets (a golden-ratio sequence), not random."""
    return [((k * _GOLDEN) % 1.0 - 0.5) * width for k in range(count)]


def _salt(analysis: Analysis, kind: str, title: str) -> str:
    run = analysis.run.get("id") if isinstance(analysis.run, dict) else None
    text = f"{run}\x1f{kind}\x1f{title}"
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def _svg(fig: Figure, salt: str, alt: str) -> str:
    """SVG text for inlining in HTML: no XML declaration, DOCTYPE or metadata; the root
    element gets class="bench-plot", role="img" and the alt text as aria-label.

    Also for inlining: matplotlib's `*{...}` stylesheet is scoped to `.bench-plot` (a
    <style> in inline SVG applies to the whole page), and the ids of its groups
    (figure_1, text_5: never referenced, but they repeat in every plot of a page) are
    dropped. User text cannot forge either: it is escaped, so a raw `<` is matplotlib's."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt}):
        FigureCanvasSVG(fig).print_svg(buf, metadata=_SVG_METADATA)
    text = buf.getvalue()
    text = text[text.index("<svg "):]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    text = text.replace('<style type="text/css">*{', '<style type="text/css">.bench-plot *{', 1)
    text = re.sub(r'\s*<g id="[\w.-]+"/>', "", text)
    text = re.sub(r'<g id="[\w.-]+">', "<g>", text)
    root = f'<svg class="bench-plot" role="img" aria-label={quoteattr(alt)} '
    return text.replace("<svg ", root, 1)


def _cap_note(shown: int, total: int, what: str = "rows", filtered: bool = False) -> str:
    """What a capped figure left out, and where to find it."""
    if total <= shown:
        return ""
    return f" (first {shown} of {total} {what}; see {'the tables' if filtered else 'device pages'})"


# ---------------------------------------------------------------------------- Pareto


def pareto_front(points: Sequence[tuple[float, float]],
                 lower_is_better_y: bool = True) -> list[int]:
    """Indices of the points no other point beats: x lower is better, y lower (size) or
    higher (accuracy) is better. Ordered by x, then y; exact duplicates are all on the
    front; points with a missing coordinate never are. A sweep in x order, O(n log n)."""
    keyed = []
    for index, (x, y) in enumerate(points):
        x, y = _number(x), _number(y)
        if x is not None and y is not None:
            keyed.append((x, y if lower_is_better_y else -y, index))
    keyed.sort()
    front, best, best_x = [], math.inf, None
    for x, yk, index in keyed:
        if yk < best:
            front.append(index)
            best, best_x = yk, x
        elif yk == best and x == best_x:
            front.append(index)
    return front


# ---------------------------------------------------------------------------- latency


def latency_plot(analysis: Analysis, device: str | None = None, model: str | None = None,
                 *, backend: str | None = None, threads: int | None = None) -> Plot | None:
    """Latency per variant as the distribution over rounds (each usable round median a
    dot) with the cell's geometric mean and 95% CI; a block per device/backend/threads,
    fp32 as a dashed reference per model; cells without a figure labelled with their
    status. None when no selected cell has a figure. `backend` and `threads` narrow the
    selection further (a device page with more than `MAX_ROWS` cells can plot each).

    One axes with headed blocks rather than a subplot per block: an axes costs ~40 ms."""
    cells = _cells(analysis, device=device, model=model, backend=backend, threads=threads)
    if not any(_drawn(c) for c in cells):
        return None
    blocks: dict[tuple, list[dict]] = {}
    for cell in cells[:MAX_ROWS]:
        blocks.setdefault((cell["device"], cell["backend"], cell["threads"]), []).append(cell)
    shown = min(len(cells), MAX_ROWS)
    medians = _round_medians(analysis, {c["cell_id"] for c in cells[:MAX_ROWS]})

    title = "Latency per variant"
    title += f" on {short(device)}" if device is not None else ""
    title += f", {short(model)}" if model is not None else ""
    title += f", {short(backend)}" if backend is not None else ""
    title += f", {threads} threads" if threads is not None else ""
    title += _cap_note(shown, len(cells), filtered=device is not None or model is not None)
    missing = sum(not _drawn(c) for c in cells[:MAX_ROWS])
    alt = (f"Latency of {_count(shown, 'cell')} in {_count(len(blocks), 'block')} (one per "
           f"device, backend and thread count): each round's median as a dot and the "
           f"geometric mean with its {CI_TEXT} as a bar"
           + (f"; {_count(missing, 'cell')} without a figure (failed, fallback or skipped) "
              "labelled with the reason." if missing else "."))

    rows: list[tuple[float, dict]] = []  # (y, cell)
    headers: list[tuple[float, str]] = []
    y = 0.0
    for key, block in blocks.items():
        headers.append((y, _where(*key)))
        y += 1.15
        for cell in block:
            rows.append((y, cell))
            y += 1.0
        y += 0.35
    labels = [_latency_label(cell) for _, cell in rows]
    values = [v for _, c in rows if _drawn(c) for v in _interval_ms(c)]
    values += [v / 1000 for _, c in rows if _drawn(c) for v in medians.get(c["cell_id"], [])]
    left = min(max(_text_width(t) for t in labels) + 0.2, 3.6)
    top, bottom = TITLE + (TICKS if y > 40 else 0.05), TICKS + 2 * LINE + 0.1

    with _style():
        fig, grid = _grid(top + y * ROW + bottom, left=left, top=top, bottom=bottom)
        ax = grid[0][0]
        _latency_points(ax, rows, medians)
        _row_labels(ax, [yy for yy, _ in rows], labels, [not _drawn(c) for _, c in rows])
        header = blended_transform_factory(fig.transFigure, ax.transData)
        for yy, text in headers:
            ax.text(EDGE / WIDTH, yy, text, transform=header, fontsize=FONT_PT,
                    fontweight="bold", va="center", ha="left")
        if len(headers) > 1:
            _segments(ax, [yy - 0.55 for yy, _ in headers[1:]], 0, 1, colors=GRID,
                      linewidth=0.8, transform=ax.get_yaxis_transform())
        ax.set_ylim(y - 0.35, -0.7)
        log = _scale(ax, "x", values)
        if y > 40:  # a tall figure: the scale at the top too
            ax.tick_params(axis="x", top=True, labeltop=True)
        ax.set_xlabel(f"latency, ms{' (log scale)' if log else ''}\n"
                      f"dots: round medians · bar: geometric mean with {CI_TEXT} · "
                      "dashed: fp32 of that model")
        _title(fig, title)
        svg = _svg(fig, _salt(analysis, "latency", title), alt)
    return Plot(svg=svg, title=title, alt=alt)


def _latency_label(cell: dict) -> str:
    label = f"{short(cell['model'])} · {short(cell['recipe'], 16)}"
    if cell["recipe"] == REFERENCE_RECIPE:
        label += " (ref)"
    note = _status_note(cell)
    return label + (f" — {note}" if note else "")


def _latency_points(ax: Axes, rows: list[tuple[float, dict]],
                    medians: dict[str, list[float]]) -> None:
    """Round dots, CI bars, centres and fp32 lines: each a single collection."""
    dot_x, dot_y, dot_c = [], [], []
    ci_y, ci_lo, ci_hi, ci_c, mid_x, mid_y = [], [], [], [], [], []
    ref_x, ref_lo, ref_hi = [], [], []
    spans: dict[tuple, list[float]] = {}  # a model's rows within a block
    for y, cell in rows:
        key = (cell["device"], cell["backend"], cell["threads"], cell["model"])
        spans.setdefault(key, []).append(y)
    for y, cell in rows:
        if not _drawn(cell):
            continue
        colour = recipe_colour(cell["recipe"])
        rounds = [v / 1000 for v in medians.get(cell["cell_id"], [])]
        dot_x += rounds
        dot_y += [y + j for j in _jitter(len(rounds))]
        dot_c += [colour] * len(rounds)
        centre, low, high = _interval_ms(cell)
        mid_x.append(centre)
        mid_y.append(y)
        ci_y.append(y)
        ci_lo.append(low)
        ci_hi.append(high)
        ci_c.append(colour)
        if cell["recipe"] == REFERENCE_RECIPE:
            span = spans[(cell["device"], cell["backend"], cell["threads"], cell["model"])]
            ref_x.append(centre)
            ref_lo.append(min(span) - 0.45)
            ref_hi.append(max(span) + 0.45)
    if ref_x:
        _segments(ax, ref_x, ref_lo, ref_hi, vertical=True, colors=MUTED, linestyles="--",
                  linewidth=0.9, zorder=1)
    if dot_x:
        ax.scatter(dot_x, dot_y, s=8, c=dot_c, alpha=0.5, linewidths=0, zorder=2, clip_on=False)
    if ci_y:
        _segments(ax, ci_y, ci_lo, ci_hi, colors=ci_c, linewidth=2.6, zorder=3)
    if mid_x:
        ax.scatter(mid_x, mid_y, s=70, marker="|", c=TEXT, linewidths=1.4, zorder=4,
                   clip_on=False)


def _row_labels(ax: Axes, ys: Sequence[float], labels: Sequence[str],
                muted: Sequence[bool]) -> None:
    """Category labels as plain texts left of the axes (a tick costs five artists)."""
    ax.set_yticks([])
    ax.grid(axis="y", visible=False)
    edge = ax.get_yaxis_transform()
    for y, label, quiet in zip(ys, labels, muted, strict=True):
        ax.text(-0.012, y, label, transform=edge, fontsize=SMALL_PT, va="center", ha="right",
                color=MUTED if quiet else TEXT, fontstyle="italic" if quiet else "normal")


# ---------------------------------------------------------------------------- speedup


def speedup_plot(analysis: Analysis, device: str | None = None) -> Plot | None:
    """Speedup over fp32 on the same backend, one row per model x device/backend/threads,
    each recipe a coloured marker with its 95% CI whisker; a cell without a speedup
    (failed, fallback, skipped, no fp32 reference) is an "x" at the left edge with the
    reason, never a blank. None when there is no non-fp32 cell."""
    families: dict[tuple, dict[str, dict]] = {}
    for cell in _cells(analysis, device=device):
        key = (cell["model"], cell["device"], cell["backend"], int(cell["threads"]))
        families.setdefault(key, {})[cell["recipe"]] = cell
    families = {k: v for k, v in families.items() if set(v) - {REFERENCE_RECIPE}}
    if not families:
        return None
    speedups = _same_backend_speedups(analysis, device)
    rows = list(families.items())[:MAX_ROWS]
    recipes = sorted({r for _, family in rows for r in family if r != REFERENCE_RECIPE},
                     key=_recipe_rank)
    spread = 0.62 if len(recipes) > 1 else 0.0
    offset = {r: (i / max(len(recipes) - 1, 1) - 0.5) * spread for i, r in enumerate(recipes)}
    with_device = device is None or len({k[1] for k, _ in rows}) > 1

    points: dict[str, tuple[list, list, list, list]] = {r: ([], [], [], []) for r in recipes}
    notes: list[tuple[int, str]] = []  # row, why its cells have no speedup
    labels = []
    for y, ((model, dev, backend, threads), family) in enumerate(rows):
        where = f"{short(dev, 16)}/" if with_device else ""
        labels.append(f"{short(model)} · {where}{short(backend, 12)}/t{threads}")
        reference = family.get(REFERENCE_RECIPE)
        why_not = _no_reference(reference)
        if why_not:  # no speedup at all in this row: say it once
            notes.append((y, f"{why_not}: no speedups"))
            continue
        missing = []
        for recipe, cell in family.items():
            if recipe == REFERENCE_RECIPE:
                continue
            found = speedups.get((model, recipe, dev, backend, threads))
            if found is None:
                missing.append(f"{short(recipe, 16)} {_no_speedup(cell)}")
                continue
            xs, ys, lows, highs = points[recipe]
            xs.append(found[0])
            ys.append(y + offset[recipe])
            lows.append(found[1] if found[1] is not None else found[0])
            highs.append(found[2] if found[2] is not None else found[0])
        if missing:
            notes.append((y, "; ".join(missing)))

    title = ("Speedup over fp32, same backend" + (f", on {short(device)}" if device else "")
             + _cap_note(len(rows), len(families), filtered=device is not None))
    shown = sum(len(p[0]) for p in points.values())
    alt = (f"Speedup over fp32 on the same backend in {_count(len(rows), 'row')} of model, "
           f"device, backend and threads: {_count(shown, 'speedup')} with {CI_TEXT} whiskers "
           "on a log scale with a line at 1x"
           + (f"; {_count(len(notes), 'row')} with cells without a speedup say why."
              if notes else "."))
    cpu = any(k[2] in CPU_BACKENDS for k, _ in rows)
    handles = _recipe_handles(recipes)
    if cpu:
        handles.append(Patch(color="#000000", alpha=0.08, linewidth=0, label=PAPER_LABEL))

    row_height = max(ROW, min(0.07 * len(recipes), 12.0 / len(rows)))  # at most ~12 in
    bottom = TICKS + 2 * LINE + 0.1 + _legend_height(handles)
    left = max(_text_width(t) for t in labels) + 0.2
    height = TITLE + 0.1 + len(rows) * row_height + bottom

    with _style():
        fig, grid = _grid(height, left=min(left, 3.6), top=TITLE + 0.1, bottom=bottom)
        ax = grid[0][0]
        values = [1.0] + [v for p in points.values() for v in p[0] + p[2] + p[3]]
        if cpu:
            values += list(PAPER_BAND)
            ax.axvspan(*PAPER_BAND, color="#000000", alpha=0.08, linewidth=0, zorder=0)
        ax.axvline(1.0, color="#444444", linewidth=0.9, zorder=1)
        low, high = min(values) / 1.12, max(values) * 1.12
        if notes:  # room at the left edge for the reasons
            low = math.exp(math.log(low) - 0.35 * (math.log(high) - math.log(low)))
        ax.set_xscale("log")
        ax.set_xlim(low, high)
        _log_axis(ax.xaxis, low, high, "x")
        for recipe, (xs, ys, lows, highs) in points.items():
            if xs:
                colour = recipe_colour(recipe)
                _segments(ax, ys, lows, highs, colors=colour, linewidth=1.6, zorder=2)
                ax.scatter(xs, ys, s=22, c=colour, linewidths=0, zorder=3, clip_on=False)
        edge = ax.get_yaxis_transform()  # x in axes fractions, y in rows
        if notes:
            ax.scatter([0.012] * len(notes), [y for y, _ in notes], marker="x", s=16, c=MUTED,
                       linewidths=1.1, transform=edge, zorder=3, clip_on=False)
        for y, text in notes:
            ax.text(0.03, y, text, transform=edge, fontsize=6.5, color=MUTED, va="center",
                    ha="left", fontstyle="italic")
        _row_labels(ax, range(len(rows)), labels, [False] * len(rows))
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlabel(f"speedup over fp32 on the same backend (x, log scale; paired {CI_TEXT})"
                      "\nrows: model · device/backend/tN (N threads)")
        _legend(fig, handles)
        _title(fig, title)
        svg = _svg(fig, _salt(analysis, "speedup", title), alt)
    return Plot(svg=svg, title=title, alt=alt)


def _no_reference(reference: dict | None) -> str | None:
    """Why a row's fp32 reference gives no speedups, or None when it is measured."""
    if reference is None:
        return "no fp32 cell"
    note = _status_note(reference)
    return f"fp32 {note}" if note not in (None, "unfinished") else None


def _no_speedup(cell: dict) -> str:
    note = _status_note(cell)
    return note if note not in (None, "unfinished") else "no paired rounds"


# ---------------------------------------------------------------------------- trade-off


def tradeoff_plot(analysis: Analysis, device: str, backend: str, threads: int,
                  y: str = "size") -> Plot | None:
    """Model size (or top-1 accuracy) against latency per variant on one device, backend
    and thread count, with the Pareto front (no other variant is both faster and better)
    as a step line. None without points; with y="accuracy", None until the variants
    frame carries a non-null `accuracy_top1` (a fraction, drawn as %)."""
    if y not in ("size", "accuracy"):
        raise ValueError(f"y must be 'size' or 'accuracy', not {y!r}")
    column = "size_bytes" if y == "size" else "accuracy_top1"
    variants = analysis.variants
    if variants is None or variants.empty or column not in variants.columns:
        return None
    known = {(m, r): _number(v) for m, r, v in
             zip(variants["model"], variants["recipe"], variants[column], strict=True)}
    points, left_out = [], 0
    for cell in _cells(analysis, device=device, backend=backend, threads=threads):
        value = known.get((cell["model"], cell["recipe"]))
        if _drawn(cell) and value is not None:
            points.append((cell, value))
        else:
            left_out += 1
    if not points:
        return None
    if y == "accuracy":
        scale = 100.0 if all(v <= 1.0 for _, v in points) else 1.0
        sets = sorted({str(d) for d in variants.get("accuracy_dataset", [])
                       if isinstance(d, str) and d})
        on = f" on {short(sets[0], 30)}" if len(sets) == 1 else ""
        ylabel, what, better = f"top-1 accuracy{on}, % (higher is better)", "Top-1 accuracy", \
            "more accurate and faster"
    else:
        scale, ylabel, what, better = 1e-6, "model size, MB (lower is better)", "Size", \
            "smaller and faster"
    xs, lows, highs = (list(v) for v in zip(*(_interval_ms(c) for c, _ in points), strict=True))
    ys = [v * scale for _, v in points]
    colours = [recipe_colour(c["recipe"]) for c, _ in points]
    front = pareto_front(list(zip(xs, ys, strict=True)), lower_is_better_y=(y == "size"))
    on_front = set(front)

    title = f"{what} vs latency — {_where(device, backend, threads)}"
    alt = (f"{what} against latency for {_count(len(points), 'variant')} on {short(device)}, "
           f"{short(backend)}, {threads} threads, with {CI_TEXT} bars on latency and the "
           f"Pareto front ({better}) of {_count(len(front), 'variant')} highlighted"
           + (f"; {_count(left_out, 'cell')} without a figure left out." if left_out else "."))
    recipes = sorted({c["recipe"] for c, _ in points}, key=_recipe_rank)
    handles = _recipe_handles(recipes)
    handles.append(Line2D([], [], color=TEXT, marker="o", markerfacecolor="none",
                          markersize=5, label="Pareto front"))
    bottom = TICKS + LINE + 0.12 + _legend_height(handles)

    with _style():
        fig, grid = _grid(4.2 + bottom, left=0.62, top=TITLE + 0.08, bottom=bottom)
        ax = grid[0][0]
        _segments(ax, ys, lows, highs, colors=colours, linewidth=1.0, alpha=0.8, zorder=2)
        rest = [i for i in range(len(points)) if i not in on_front]
        if rest:
            ax.scatter([xs[i] for i in rest], [ys[i] for i in rest], s=22,
                       c=[colours[i] for i in rest], alpha=0.55, linewidths=0, zorder=3,
                       clip_on=False)
        ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=46,
                   c=[colours[i] for i in front], edgecolors=TEXT, linewidths=1.0, zorder=4,
                   clip_on=False)
        ax.plot([xs[i] for i in front], [ys[i] for i in front], drawstyle="steps-post",
                color=TEXT, linewidth=1.0, zorder=1)
        _scale(ax, "x", xs + lows + highs)
        if y == "accuracy":
            ax.set_ylim(max(min(ys) - 5, 0), min(max(ys) + 5, 100))
        else:
            _scale(ax, "y", ys)
        names = [f"{short(c['model'], 20)}/{short(c['recipe'], 16)}" for c, _ in points]
        candidates = front + ([i for i in range(len(points)) if i not in on_front]
                              if len(points) <= LABELLED_POINTS else [])
        hidden = _place_labels(ax, xs, ys, names, candidates, on_front)
        ax.set_xlabel(f"latency, ms (geometric mean with {CI_TEXT}; lower is better)")
        ax.set_ylabel(ylabel)
        _legend(fig, handles)
        if len(points) > LABELLED_POINTS:
            note = " (labels: Pareto front only)"
        else:
            note = f" ({_count(hidden, 'label')} left out where crowded)" if hidden else ""
        _title(fig, title + note)
        svg = _svg(fig, _salt(analysis, f"tradeoff-{y}", title), alt)
    return Plot(svg=svg, title=title, alt=alt)


def _place_labels(ax: Axes, xs: Sequence[float], ys: Sequence[float], names: Sequence[str],
                  order: Sequence[int], strong: set[int], size_pt: float = 7.0) -> int:
    """Label points in `order`, each at the first corner where it covers no label already
    placed; the rest stay unlabelled (overlapping text is unreadable). Call after the
    scales and limits are set. Returns how many were left out."""
    dpi = ax.figure.dpi
    corners = ((4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
               (-4, -3, "right", "top"))
    height = size_pt * 1.3 / 72 * dpi
    placed: list[tuple[float, float, float, float]] = []
    bounds = ax.figure.bbox
    hidden = 0
    for i in order:
        px, py = ax.transData.transform((xs[i], ys[i]))
        width = _text_width(names[i], size_pt) * dpi
        for dx, dy, ha, va in corners:
            x0 = px + dx * dpi / 72 - (width if ha == "right" else 0)
            y0 = py + dy * dpi / 72 - (height if va == "top" else 0)
            box = (x0, y0, x0 + width, y0 + height)
            inside = bounds.x0 <= box[0] and box[2] <= bounds.x1 and box[3] <= bounds.y1
            clear = all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1]
                        for b in placed)
            if inside and clear:
                placed.append(box)
                ax.annotate(names[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                            ha=ha, va=va, fontsize=size_pt, color=TEXT if i in strong else MUTED)
                break
        else:
            hidden += 1
    return hidden


# ---------------------------------------------------------------------------- threads


def threads_plot(analysis: Analysis, device: str, backend: str) -> Plot | None:
    """Latency (95% CI) against thread count per model and recipe, with ideal linear
    scaling from the fewest threads dotted. None unless the device and backend have
    figures at two or more thread counts.

    Models are groups side by side on one axes per row of `MODELS_PER_ROW` (log2 threads
    within a group, one latency scale per row), not a subplot each: a subplot costs ~40 ms
    and a device page has one of these per backend."""
    cells = [c for c in _cells(analysis, device=device, backend=backend) if _drawn(c)]
    counts = sorted({int(c["threads"]) for c in cells})
    if len(counts) < 2:
        return None
    models = list(_first_seen(c["model"] for c in cells))
    total = len(models)
    models = models[:MAX_FACETS]
    series: dict[str, dict[str, list[dict]]] = {m: {} for m in models}
    for cell in cells:
        if cell["model"] in series:
            series[cell["model"]].setdefault(cell["recipe"], []).append(cell)
    recipes = sorted({r for s in series.values() for r in s}, key=_recipe_rank)

    title = f"Latency vs threads — {short(device)} / {short(backend)}" + \
        _cap_note(len(models), total, "models", filtered=True)
    alt = (f"Latency against thread count ({', '.join(map(str, counts))}) on {short(device)} "
           f"with {short(backend)} for {_count(len(models), 'model')}, a line per recipe "
           f"with {CI_TEXT} bars and ideal linear scaling dotted.")
    handles = _recipe_handles(recipes)
    handles.append(Line2D([], [], color=MUTED, linestyle=":", label="ideal linear scaling"))
    rows = [models[i:i + MODELS_PER_ROW] for i in range(0, len(models), MODELS_PER_ROW)]
    span = max(math.log2(counts[-1] / counts[0]), 1.0)
    pitch = span * 1.6  # a group and the gap after it, in log2(threads)
    groups = len(rows[0])  # every row as wide as the first, so groups line up
    panel, gap = 1.9, TICKS + FACET_TITLE
    bottom = TICKS + LINE + 0.12 + _legend_height(handles)
    height = TITLE + FACET_TITLE + len(rows) * panel + (len(rows) - 1) * gap + bottom
    left = 0.62
    name_chars = int((WIDTH - left - 0.2) / groups * 0.9 / (0.6 * SMALL_PT / 72))

    with _style():
        fig, grid = _grid(height, len(rows), 1, left=left, top=TITLE + FACET_TITLE,
                          bottom=bottom, vgap=gap)
        for (ax,), row in zip(grid, rows, strict=True):
            origins = [g * pitch for g in range(len(row))]
            values: list[float] = []
            for origin, model in zip(origins, row, strict=True):
                values += _threads_group(ax, origin, counts[0],
                                         [series[model][r] for r in recipes if r in series[model]])
            _scale(ax, "y", values)
            ax.set_xlim(-0.35 * span, (groups - 1) * pitch + 1.35 * span)
            ax.set_xticks([])
            ax.grid(axis="x", visible=False)
            ax.set_ylabel(f"latency, ms ({CI_TEXT})")
            edge = ax.get_xaxis_transform()  # x in data, y in axes fractions
            for origin, model in zip(origins, row, strict=True):
                ax.text(origin + span / 2, 1.02, short(model, name_chars), transform=edge,
                        ha="center", va="bottom", fontsize=SMALL_PT)
                for t in counts:
                    ax.text(origin + math.log2(t / counts[0]), -0.03, str(t), transform=edge,
                            ha="center", va="top", fontsize=SMALL_PT, color="#444444")
            if len(row) > 1:
                _segments(ax, [o - 0.3 * span for o in origins[1:]], 0, 1, vertical=True,
                          colors=GRID, linewidth=0.8, transform=edge)
        fig.text(0.5, (bottom - TICKS - 0.04) / height,
                 "threads (log scale), a group per model", ha="center", va="top",
                 fontsize=SMALL_PT)
        _legend(fig, handles)
        _title(fig, title)
        svg = _svg(fig, _salt(analysis, "threads", title), alt)
    return Plot(svg=svg, title=title, alt=alt)


def _threads_group(ax: Axes, origin: float, fewest: int, series: list[list[dict]]) -> list[float]:
    """One model at x = origin + log2(threads / fewest): a line per recipe with CI bars
    and its ideal scaling from its fewest threads; four collections. The values drawn."""
    lines, ideals, line_colours, ideal_colours = [], [], [], []
    bar_x, bar_lo, bar_hi, bar_c, dot_x, dot_y, dot_c = [], [], [], [], [], [], []
    for cells in series:
        colour = recipe_colour(cells[0]["recipe"])
        cells = sorted(cells, key=lambda c: int(c["threads"]))
        ts = [int(c["threads"]) for c in cells]
        xs = [origin + math.log2(t / fewest) for t in ts]
        intervals = [_interval_ms(c) for c in cells]
        ms = [centre for centre, _, _ in intervals]
        lines.append(list(zip(xs, ms, strict=True)))
        line_colours.append(colour)
        if len(ts) > 1:
            ideals.append([(x, ms[0] * ts[0] / t) for x, t in zip(xs, ts, strict=True)])
            ideal_colours.append(colour)
        for x, (centre, low, high) in zip(xs, intervals, strict=True):
            bar_x.append(x)
            bar_lo.append(low)
            bar_hi.append(high)
            bar_c.append(colour)
            dot_x.append(x)
            dot_y.append(centre)
            dot_c.append(colour)
    ax.add_collection(LineCollection(lines, colors=line_colours, linewidths=1.1, zorder=3,
                                     clip_on=False), autolim=False)
    if ideals:
        ax.add_collection(LineCollection(ideals, colors=ideal_colours, linewidths=0.9,
                                         linestyles=":", alpha=0.8, zorder=1, clip_on=False),
                      autolim=False)
    _segments(ax, bar_x, bar_lo, bar_hi, vertical=True, colors=bar_c, linewidth=1.6, zorder=2)
    ax.scatter(dot_x, dot_y, s=12, c=dot_c, linewidths=0, zorder=4, clip_on=False)
    return dot_y + bar_lo + bar_hi + [y for line in ideals for _, y in line]
