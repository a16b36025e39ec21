"""The dashboard's plots: SVG that parses, says what it shows, names failures, stays safe
with hostile names, and is the same for the same input.

The analyses here are mostly built directly from frames (`synthetic_analysis`): the plots
read the frames only, so a hand-made frame is as good a test input as a stored run, and
shapes and statuses are exact. One test reads a synthetic store through `analyse`, to meet
the frames exactly as the pipeline makes them.
"""

from __future__ import annotations

import math
import random
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from bench.analysis import (
    CELL_COLUMNS,
    DEVICE_COLUMNS,
    SAME_BACKEND,
    SPEEDUP_COLUMNS,
    VARIANT_COLUMNS,
    Analysis,
)
from bench.keys import CellKey
from bench.report.plots import (
    MAX_ROWS,
    Plot,
    latency_plot,
    pareto_front,
    recipe_colour,
    short,
    speedup_plot,
    threads_plot,
    tradeoff_plot,
)

RECIPE_FACTOR = {"fp32": 1.0, "fp16": 0.95, "dynamic": 0.7, "int8": 0.4,
                 "int8-per-tensor": 0.42, "int16x8": 0.8}
ROUND_COLUMNS = ["model", "recipe", "sha256", "device", "backend", "threads", "cell_id",
                 "round", "status", "complete", "usable", "summary_us"]
SVG = "{http://www.w3.org/2000/svg}"
REPO = Path(__file__).resolve().parent.parent


def synthetic_analysis(models=("mobilenet_v2", "resnet50"), recipes=tuple(RECIPE_FACTOR),
                       devices=("rpi4",), backends=("xnnpack",), threads=(1,), rounds=5,
                       statuses: dict | None = None, seed: int = 0,
                       accuracy: bool = False) -> Analysis:
    """An Analysis with plausible figures. `statuses` maps (model, recipe, device, backend,
    threads) to a non-ok status (failed, skipped, fallback, pending)."""
    rng = random.Random(seed)
    statuses = statuses or {}
    cells, round_rows, speedups, variants = [], [], [], []
    for m, model in enumerate(models):
        for recipe in recipes:
            variants.append({
                "model": model, "recipe": recipe, "sha256": f"h{m}{recipe}", "status": "ok",
                "size_bytes": int(14e6 * (m + 1) * {"fp32": 1, "fp16": 0.5}.get(recipe, 0.26)),
                "measured": True, "random_weights": True,
                **({"accuracy_top1": 0.7 - 0.05 * RECIPE_FACTOR.get(recipe, 0.5)}
                   if accuracy else {}),
            })
    for d, device in enumerate(devices):
        for backend in backends:
            for t in threads:
                reference: dict = {}
                for m, model in enumerate(models):
                    for recipe in recipes:
                        key = CellKey(model, recipe, f"h{m}{recipe}", device, backend, t)
                        status = statuses.get((model, recipe, device, backend, t), "ok")
                        base = 4000.0 * (m + 1) * (d + 1) * RECIPE_FACTOR.get(recipe, 0.6)
                        base /= t ** 0.8
                        medians = [] if status in ("failed", "skipped") else [
                            base * math.exp(rng.gauss(0, 0.02)) for _ in range(rounds)]
                        for r, value in enumerate(medians):
                            round_rows.append({**key._asdict(), "cell_id": key.cell_id,
                                               "round": r, "status": "ok", "complete": True,
                                               "usable": True, "summary_us": value})
                        centre = (math.exp(sum(map(math.log, medians)) / len(medians))
                                  if medians else None)
                        cell = dict.fromkeys(CELL_COLUMNS)
                        cell.update({**key._asdict(), "cell_id": key.cell_id, "status": status,
                                     "reason": None if status == "ok" else f"{status} here",
                                     "rounds": len(medians), "warnings": []})
                        if centre is not None:
                            cell.update({"latency_us": centre, "latency_us_low": centre * 0.98,
                                         "latency_us_high": centre * 1.02})
                        cells.append(cell)
                        if recipe == "fp32" and status == "ok":
                            reference[model] = centre
                        elif status == "ok" and model in reference:
                            ratio = reference[model] / centre
                            row = dict.fromkeys(SPEEDUP_COLUMNS)
                            row.update({**key._asdict(), "reference": SAME_BACKEND,
                                        "reference_backend": backend, "speedup": ratio,
                                        "speedup_low": ratio * 0.97,
                                        "speedup_high": ratio * 1.03, "n": rounds})
                            speedups.append(row)
    variant_columns = VARIANT_COLUMNS
    return Analysis(
        run={"id": "run-1"},
        rounds=pd.DataFrame(round_rows, columns=ROUND_COLUMNS),
        cells=pd.DataFrame(cells, columns=CELL_COLUMNS),
        speedups=pd.DataFrame(speedups, columns=SPEEDUP_COLUMNS),
        warnings=pd.DataFrame(columns=[*CellKey._fields, "warning"]),
        variants=pd.DataFrame(variants, columns=variant_columns),
        devices=pd.DataFrame([{"device": d} for d in devices], columns=DEVICE_COLUMNS),
    )


def parse(plot: Plot) -> ET.Element:
    assert isinstance(plot, Plot)
    assert not plot.svg.startswith("<?xml") and "<!DOCTYPE" not in plot.svg
    assert plot.svg.startswith("<svg ")
    return ET.fromstring(plot.svg)


def texts(plot: Plot) -> str:
    """All drawn text, joined (text elements only: what a reader sees)."""
    root = parse(plot)
    return "\n".join("".join(e.itertext()) for e in root.iter(f"{SVG}text"))


def all_plots(analysis: Analysis, device="rpi4", backend="xnnpack", threads=1) -> list[Plot]:
    plots = [latency_plot(analysis), speedup_plot(analysis),
             tradeoff_plot(analysis, device, backend, threads),
             tradeoff_plot(analysis, device, backend, threads, y="accuracy"),
             threads_plot(analysis, device, backend)]
    return [p for p in plots if p is not None]


# ---------------------------------------------------------------------------- Pareto


def test_pareto_front_lower_is_better():
    points = [(1, 10), (2, 5), (3, 6), (4, 1), (2, 5), (5, 1), (0.5, 20), (3, 4)]
    # (3, 6) is beaten by (2, 5); (5, 1) by (4, 1); the duplicate (2, 5) stays with its twin.
    assert pareto_front(points) == [6, 0, 1, 4, 7, 3]


def test_pareto_front_higher_is_better_and_missing_values():
    points = [(1, 0.5), (2, 0.7), (3, 0.6), (4, 0.9), (None, 1.0), (5, float("nan")),
              (4, 0.8)]
    assert pareto_front(points, lower_is_better_y=False) == [0, 1, 3]
    assert pareto_front([]) == []


# ---------------------------------------------------------------------------- content


def test_latency_plot_states_setting_ci_and_names():
    analysis = synthetic_analysis(devices=("rpi4", "pixel7"), backends=("xnnpack", "cpu"))
    plot = latency_plot(analysis)
    text = texts(plot)
    for word in ("rpi4", "pixel7", "xnnpack", "cpu", "1 thread", "95% CI", "mobilenet_v2",
                 "int8-per-tensor", "fp32 (ref)"):
        assert word in text, word
    assert plot.title and plot.alt.endswith(".")
    assert "95%" in plot.alt


def test_latency_plot_filters_and_none_without_data():
    analysis = synthetic_analysis(devices=("rpi4", "pixel7"))
    text = texts(latency_plot(analysis, device="pixel7", model="resnet50"))
    assert "pixel7" in text and "rpi4" not in text and "mobilenet_v2" not in text
    assert latency_plot(analysis, device="nowhere") is None
    failed = {("mobilenet_v2", r, "rpi4", "xnnpack", 1): "failed" for r in RECIPE_FACTOR}
    assert latency_plot(synthetic_analysis(models=("mobilenet_v2",), statuses=failed)) is None


def test_latency_plot_one_dot_per_usable_round_in_one_collection():
    analysis = synthetic_analysis(models=("m",), recipes=("fp32", "int8"), rounds=7)
    analysis.rounds.loc[analysis.rounds.index[:2], "usable"] = False  # an interrupted round
    root = parse(latency_plot(analysis))
    # The 12 usable round dots are one collection (one group of 12 uses of one marker
    # path), not 12 artists; the unusable ones are not drawn.
    uses = [len(list(g.iter(f"{SVG}use"))) for g in root.iter(f"{SVG}g")]
    assert 12 in uses and 14 not in uses


def test_log_scale_over_wide_ranges_with_plain_tick_labels():
    narrow = texts(latency_plot(synthetic_analysis()))
    assert "log scale" not in narrow
    wide = synthetic_analysis(models=tuple(f"m{i}" for i in range(40)), threads=(1, 8))
    plots = [latency_plot(wide), threads_plot(wide, "rpi4", "xnnpack"), speedup_plot(wide)]
    assert "latency, ms (log scale)" in texts(plots[0])
    for plot in plots:
        assert "mathdefault" not in plot.svg and "$" not in texts(plot)  # no math-text ticks


def test_failed_fallback_skipped_cells_are_named():
    statuses = {("mobilenet_v2", "int8", "rpi4", "xnnpack", 1): "fallback",
                ("mobilenet_v2", "int16x8", "rpi4", "xnnpack", 1): "failed",
                ("resnet50", "fp16", "rpi4", "xnnpack", 1): "skipped",
                ("resnet50", "dynamic", "rpi4", "xnnpack", 1): "pending"}
    analysis = synthetic_analysis(statuses=statuses)
    latency = texts(latency_plot(analysis))
    assert "int8 — fallback" in latency
    assert "resnet50 · dynamic — unfinished" in latency  # drawn, and said to be partial
    assert "int16x8 — failed" in latency
    assert "fp16 — skipped" in latency
    speedup = texts(speedup_plot(analysis))
    assert "int8 fallback" in speedup
    assert "int16x8 failed" in speedup
    assert "fp16 skipped" in speedup


def test_speedup_plot_rows_reference_line_and_paper_band():
    analysis = synthetic_analysis(threads=(1, 4))
    plot = speedup_plot(analysis)
    text = texts(plot)
    assert "mobilenet_v2 · rpi4/xnnpack/t4" in text
    assert "paper: 2-3x (ARM, 2018)" in text
    assert "95% CI" in text and "1x" in text
    assert speedup_plot(synthetic_analysis(recipes=("fp32",))) is None


def test_speedup_without_fp32_reference_says_so():
    statuses = {("resnet50", "fp32", "rpi4", "xnnpack", 1): "failed"}
    text = texts(speedup_plot(synthetic_analysis(statuses=statuses)))
    assert "fp32 failed: no speedups" in text


def test_tradeoff_plot_size_and_front():
    analysis = synthetic_analysis()
    plot = tradeoff_plot(analysis, "rpi4", "xnnpack", 1)
    text = texts(plot)
    for word in ("rpi4", "xnnpack", "1 thread", "95% CI", "model size, MB", "Pareto front",
                 "mobilenet_v2/int8"):
        assert word in text, word
    assert tradeoff_plot(analysis, "rpi4", "xnnpack", 8) is None
    with pytest.raises(ValueError):
        tradeoff_plot(analysis, "rpi4", "xnnpack", 1, y="colour")


def test_tradeoff_accuracy_only_with_accuracy_column():
    assert tradeoff_plot(synthetic_analysis(), "rpi4", "xnnpack", 1, y="accuracy") is None
    analysis = synthetic_analysis(accuracy=True)
    text = texts(tradeoff_plot(analysis, "rpi4", "xnnpack", 1, y="accuracy"))
    assert "top-1 accuracy" in text
    analysis.variants["accuracy_top1"] = None
    assert tradeoff_plot(analysis, "rpi4", "xnnpack", 1, y="accuracy") is None


def test_threads_plot_needs_two_thread_counts():
    assert threads_plot(synthetic_analysis(threads=(1,)), "rpi4", "xnnpack") is None
    analysis = synthetic_analysis(threads=(1, 2, 4))
    text = texts(threads_plot(analysis, "rpi4", "xnnpack"))
    for word in ("rpi4", "xnnpack", "threads", "95% CI", "ideal linear scaling", "resnet50"):
        assert word in text, word
    assert threads_plot(analysis, "rpi4", "gpu") is None
    # A second thread count whose cells all failed is not data.
    failed = {(m, r, "rpi4", "xnnpack", 4): "failed" for m in ("mobilenet_v2", "resnet50")
              for r in RECIPE_FACTOR}
    assert threads_plot(synthetic_analysis(threads=(1, 4), statuses=failed),
                        "rpi4", "xnnpack") is None


def test_many_rows_are_capped_and_said():
    analysis = synthetic_analysis(models=tuple(f"model{i}" for i in range(15)))  # 90 cells
    plot = latency_plot(analysis)
    assert f"first {MAX_ROWS} of 90 rows; see device pages" in plot.title
    assert f"first {MAX_ROWS} of 90 rows" in texts(plot)
    assert "model14" not in texts(plot)
    one = latency_plot(analysis, device="rpi4", backend="xnnpack", threads=1)
    assert "first 60 of 90 rows; see the tables" in one.title
    assert latency_plot(analysis, backend="gpu") is None


def test_recipe_colours_fixed_and_distinct():
    known = [recipe_colour(r) for r in RECIPE_FACTOR]
    assert len(set(known)) == len(known)
    assert recipe_colour("fp32") == "#555555"
    assert recipe_colour("int4-experimental") == recipe_colour("int4-experimental")


# ---------------------------------------------------------------------------- safety


HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "$\\alpha$",
           "a_b^c", "x" * 300, "Модель-量子", "tab\there\nnewline\x00nul"]


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, [name for name, _ in attrs]))


def html_tags(markup: str) -> list[tuple[str, list[str]]]:
    parser = _Tags()
    parser.feed(markup)
    parser.close()
    return parser.found


def hostile_analysis() -> Analysis:
    return synthetic_analysis(models=tuple(HOSTILE), recipes=("fp32", "int8", "<b>r</b>"),
                              devices=('<svg onload="alert(1)">',),
                              backends=("$\\beta$",), threads=(1, 2), accuracy=True)


def test_hostile_names_stay_text():
    analysis = hostile_analysis()
    device, backend = '<svg onload="alert(1)">', "$\\beta$"
    plots = [latency_plot(analysis), speedup_plot(analysis),
             tradeoff_plot(analysis, device, backend, 1),
             tradeoff_plot(analysis, device, backend, 2, y="accuracy"),
             threads_plot(analysis, device, backend)]
    assert all(p is not None for p in plots)
    svg_tags = {"svg", "g", "path", "text", "defs", "style", "use", "clipPath", "rect"}
    for plot in plots:
        root = parse(plot)
        for element in root.iter():
            tag = element.tag.split("}")[-1]
            assert tag in svg_tags, tag
            for name in element.attrib:
                assert not name.split("}")[-1].lower().startswith("on"), name
        lowered = plot.svg.lower()
        assert "<script" not in lowered and "<img" not in lowered and "<b>" not in lowered
        tags = html_tags(plot.svg)  # as a browser's HTML parser sees the inlined SVG
        assert {tag for tag, _ in tags} <= {t.lower() for t in svg_tags}
        assert not [name for _, names in tags for name in names if name.startswith("on")]
        text = texts(plot)
        assert "x" * 300 not in plot.svg  # long names shortened...
        assert "\u2026" in text  # ...with an ellipsis
        assert "\x00" not in plot.svg
    latency = texts(plots[0])
    for name in ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "$\\alpha$",
                 "a_b^c", "Модель-量子", "$\\beta$"):
        assert short(name) in latency, name  # drawn literally, as text
    assert "tab here newline nul" in latency


def test_same_input_same_svg():
    first = synthetic_analysis(threads=(1, 2), accuracy=True)
    second = synthetic_analysis(threads=(1, 2), accuracy=True)
    for a, b in zip(all_plots(first), all_plots(second), strict=True):
        assert a == b
    assert len(all_plots(first)) == 5


def test_plots_differ_in_ids_between_runs():
    """Several SVGs inlined in one page must not share clip-path or marker ids."""
    first = latency_plot(synthetic_analysis())
    other = synthetic_analysis()
    other.run = {"id": "run-2"}
    second = latency_plot(other)

    def ids(plot):
        return {e.get("id") for e in parse(plot).iter() if e.get("id")}

    assert ids(first) and not ids(first) & ids(second)


def test_inline_ready_svg():
    plot = latency_plot(synthetic_analysis())
    assert plot.svg.startswith('<svg class="bench-plot" role="img" aria-label="Latency of ')
    assert "<metadata" not in plot.svg and "<?xml" not in plot.svg
    assert '<style type="text/css">.bench-plot *{' in plot.svg  # scoped to the plot
    root = parse(plot)
    assert root.get("viewBox")
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    assert not [i for i in ids if re.fullmatch(r"[a-z_.]+_\d+", i)]  # figure_1, text_5, ...


def test_no_global_state_and_thread_safe():
    before = dict(matplotlib.rcParams)
    analyses = [synthetic_analysis(seed=s, threads=(1, 2)) for s in range(3)]
    serial = [latency_plot(a).svg for a in analyses] + [threads_plot(a, "rpi4", "xnnpack").svg
                                                          for a in analyses]
    with ThreadPoolExecutor(4) as pool:
        latency = list(pool.map(lambda a: latency_plot(a).svg, analyses))
        threads = list(pool.map(lambda a: threads_plot(a, "rpi4", "xnnpack").svg, analyses))
    assert latency + threads == serial
    assert dict(matplotlib.rcParams) == before


def test_importing_plots_needs_no_pyplot():
    code = ("import sys, bench.report.plots; "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_plots_of_a_synthetic_store(tmp_path):
    """Frames made by the real pipeline (store -> analyse), failures included."""
    synthetic = pytest.importorskip("bench.synthetic")
    from bench.analysis import analyse
    from bench.store.sqlite import SQLiteStore

    path = tmp_path / "bench.sqlite"
    run_id = synthetic.make_store(path, models=2, recipes=("fp32", "fp16", "int8"), devices=1,
                                  backends=("xnnpack", "cpu"), threads=(1, 2), rounds=3)
    store = SQLiteStore(path, readonly=True)
    try:
        analysis = analyse(store.facts(run_id))
    finally:
        store.close()
    device = analysis.devices["device"].iloc[0]
    plots = [latency_plot(analysis), speedup_plot(analysis),
             tradeoff_plot(analysis, device, "cpu", 1), threads_plot(analysis, device, "cpu")]
    assert all(p is not None for p in plots)
    for plot in plots:
        assert device in texts(plot) and "95% CI" in texts(plot)
    problems = [s for s in analysis.cells["status"] if s not in ("ok", "pending")]
    assert problems  # the store's failed / fallback / skipped cells ...
    latency = texts(plots[0])
    assert all(f"— {s}" in latency for s in problems)  # ... are named on the latency plot
