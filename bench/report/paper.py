"""The paper check: what this run measured, claim by claim, beside the quantization whitepaper.

Krishnamoorthi 2018 (arXiv 1806.08342) makes claims this harness can speak to: weight-only
int8 makes models 4x smaller; int8 runs 2-3x faster than float on a CPU and up to 10x on
a DSP (Hexagon HVX); per-channel int8 after training stays within 2% of float top-1 and
per-tensor does worse. Its Table 7 timed four models on a Pixel 2 (one big core, ms).

Ratios are compared, never milliseconds: the paper's hardware is not this run's. Its CPU
column is 2018-era TFLite with uint8 per-layer kernels; today's XNNPACK int8 kernels and
today's CPUs are other software and other silicon. A claim the run has no data for says
"no data" and why: never a figure from random weights, never a number borrowed from
another claim. Every measured figure comes from the analysis frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.analysis import CPU_BACKENDS, SAME_BACKEND, VS_CPU_FP32, Analysis
from bench.report.notes import int8_path
from bench.report.table import known

CITATION = "Krishnamoorthi 2018, arXiv 1806.08342"
TABLE7_NOTE = ("paper Table 7: Pixel 2, one big core, ms, float CPU / int8 CPU / int8 Hexagon "
               "HVX; its CPU column is 2018-era TFLite uint8 per-layer kernels, so ratios are "
               "compared, not milliseconds across different hardware")
CPU_CLAIM = (2.0, 3.0)
DSP_CLAIM = 10.0
SIZE_CLAIM = 4.0
SIZE_CONSISTENT = 3.5  # a file holds more than weights (graph, int32 biases, scales)
ACCURACY_CLAIM_POINTS = 2.0
DSP_BACKENDS = ("hexagon",)
INT8 = "int8"
PER_TENSOR = "int8-per-tensor"
INT8_RECIPES = (INT8, PER_TENSOR)
WEIGHT_ONLY = "dynamic"


@dataclass(frozen=True)
class PaperModel:
    title: str
    float_cpu_ms: float
    int8_cpu_ms: float
    int8_dsp_ms: float | None
    options: str  # the configuration the paper timed

    @property
    def cpu_speedup(self) -> float:
        return self.float_cpu_ms / self.int8_cpu_ms

    @property
    def dsp_speedup(self) -> float | None:
        return self.float_cpu_ms / self.int8_dsp_ms if self.int8_dsp_ms else None


TABLE7 = {
    "mobilenet_v1": PaperModel("MobileNet-v1", 155, 68, 16, "224, alpha 1"),
    "mobilenet_v2": PaperModel("MobileNet-v2", 105, 63, 15.5, "224, alpha 1"),
    "inception_v3": PaperModel("Inception-v3", 1391, 536, None, "299"),
    "resnet50": PaperModel("ResNet-v1-50", 874, 440, None, "224"),
}
_ZOO_NAME = re.compile(r"^(?P<arch>[a-z0-9_]+)(?::[\w.-]+)?(?P<options>[@,].*)?$")
_NEUTRAL_OPTION = re.compile(r"^seed=\d+$")  # weights' seed: same graph, same speed


def paper_model(model: str) -> tuple[PaperModel | None, bool]:
    """The paper's row for a zoo model name, and whether its options match the paper's
    (another input size or width changes the work, so the ratio is only indicative)."""
    match = _ZOO_NAME.match(model)
    if not match or match["arch"] not in TABLE7:
        return None, False
    options = [o for o in re.split(r"[@,]", match["options"] or "") if o]
    return TABLE7[match["arch"]], all(_NEUTRAL_OPTION.match(o) for o in options)


@dataclass(frozen=True)
class Check:
    """One row of the paper check: a claim, where it was measured, what was measured."""

    claim: str
    paper: str
    model: str
    recipe: str
    where: str  # device/backend/threads, or "-" for what does not depend on a device
    measured: str
    verdict: str  # consistent | faster than claimed | slower than claimed | ... | no data
    note: str = ""
    value: float | None = None
    low: float | None = None
    high: float | None = None

    def as_row(self) -> dict[str, str]:
        return {"claim": self.claim, "paper": self.paper, "model": self.model,
                "recipe": self.recipe, "where": self.where, "measured": self.measured,
                "verdict": self.verdict, "note": self.note}


def _ratio(value: float, low=None, high=None) -> str:
    text = f"{value:.2f}x"
    if known(low) and known(high):
        text += f" [{low:.2f}, {high:.2f}]"
    return text


def _range_verdict(low: float, high: float, claim: tuple[float, float]) -> str:
    """Judged on the 95% interval, not the point estimate."""
    if low > claim[1]:
        return "faster than claimed"
    if high < claim[0]:
        return "slower than claimed"
    return "consistent"


def _dsp_verdict(low: float, high: float) -> str:
    """'Up to 10x' over float on the CPU: the interval must show a gain at all."""
    if low > DSP_CLAIM:
        return "faster than claimed"
    if low > 1.0:
        return "consistent"
    if high < 1.0:
        return "slower than float CPU"
    return "inconclusive"


def paper_checks(analysis: Analysis) -> list[Check]:
    checks = _size_checks(analysis)
    checks += _speed_checks(analysis, dsp=False)
    checks += _speed_checks(analysis, dsp=True)
    checks += _accuracy_checks(analysis)
    return checks


def _size_checks(analysis: Analysis) -> list[Check]:
    claim, paper = "weight-only int8 is 4x smaller", "4x"
    variants = analysis.variants
    checks = []
    if not variants.empty:
        rows = variants[(variants["recipe"] == WEIGHT_ONLY) & (variants["status"] == "ok")]
        for variant in rows.to_dict("records"):
            value = variant["compression"]
            if not known(value):
                continue
            verdict = "consistent" if value >= SIZE_CONSISTENT else "smaller gain than claimed"
            checks.append(Check(claim, paper, variant["model"], WEIGHT_ONLY, "-", _ratio(value),
                                verdict, "fp32 file size / dynamic-range file size",
                                value=value))
    if not checks:
        checks.append(Check(claim, paper, "-", "-", "-", "no data", "no data",
                            f"no model was built in the {WEIGHT_ONLY} recipe with its fp32 "
                            "reference"))
    return checks


def _speed_checks(analysis: Analysis, dsp: bool) -> list[Check]:
    if dsp:
        claim, reference, backends = "int8 up to 10x faster on a DSP", VS_CPU_FP32, DSP_BACKENDS
    else:
        claim, reference, backends = "int8 2-3x faster than float on CPU", SAME_BACKEND, \
            CPU_BACKENDS
    cells = analysis.cells
    int8 = [] if cells.empty else cells[cells["recipe"].isin(INT8_RECIPES)
                                        & cells["backend"].isin(backends)].to_dict("records")
    order = {recipe: i for i, recipe in enumerate(INT8_RECIPES)}
    checks = []
    for cell in sorted(int8, key=lambda c: (c["model"], c["device"], c["backend"],
                                            c["threads"], order[c["recipe"]])):
        checks.append(_speed_check(analysis, cell, claim, reference, dsp))
    if not checks:
        what = ("no int8 cell on a DSP backend (hexagon) in this run: a phone with a "
                "Hexagon DSP measures it") if dsp else "no int8 cell on a CPU backend in this run"
        checks.append(Check(claim, "up to 10x (Hexagon HVX)" if dsp else "2-3x", "-", "-", "-",
                            "no data", "no data", what))
    return checks


def _paper_text(row: PaperModel | None, dsp: bool) -> str:
    """The claim, and the model's Table 7 figures with the ratio they give."""
    band = "up to 10x" if dsp else "2-3x"
    if row is None:
        return band
    if dsp:
        return f"{band}; Table 7 {row.title}: {row.float_cpu_ms:g} / {row.int8_dsp_ms:g} ms = " \
            f"{row.dsp_speedup:.2f}x" if row.int8_dsp_ms else f"{band}; {row.title}: no DSP time"
    return f"{band}; Table 7 {row.title}: {row.float_cpu_ms:g} / {row.int8_cpu_ms:g} ms = " \
        f"{row.cpu_speedup:.2f}x"


def _speed_check(analysis: Analysis, cell: dict, claim: str, reference: str,
                 dsp: bool) -> Check:
    model, where = cell["model"], f"{cell['device']}/{cell['backend']}/t{cell['threads']}"
    row, same_options = paper_model(model)
    paper_ratio = (row.dsp_speedup if dsp else row.cpu_speedup) if row else None
    notes = []
    if row and not same_options:
        notes.append(f"paper timed {row.options}; this model's options differ")
    if not dsp and cell["threads"] != 1:
        notes.append("paper: one core")
    if cell["recipe"] == PER_TENSOR and not dsp:
        notes.append("per-tensor: the paper's 2018 kernels were per-layer uint8")
    key = [cell[name] for name in ("model", "recipe", "sha256", "device", "backend", "threads")]
    found = analysis.speedup(key, reference)
    status = cell["status"]
    if found is None or status not in ("ok", "pending"):
        if status not in ("ok", "pending"):
            why = f"{status}: {cell['reason'] or 'no reason recorded'}"
        elif not cell["rounds"]:
            why = "unfinished: no round measured yet (`bench run --resume` finishes it)"
        else:
            why = "no fp32 reference measured beside it"
        notes = [why, *notes]
        if not dsp:
            notes.append(_path_note(analysis, cell["device"]))
        return Check(claim, _paper_text(row, dsp), model, cell["recipe"], where, "no data",
                     "no data", "; ".join(notes))
    if status == "pending":
        notes.insert(0, f"unfinished: {cell['rounds']} round(s) so far")
    value, low, high = found["speedup"], found["speedup_low"], found["speedup_high"]
    if not (known(low) and known(high)):
        verdict = "no interval"
    elif dsp:
        verdict = _dsp_verdict(low, high)
    else:
        verdict = _range_verdict(low, high, CPU_CLAIM)
    if dsp:
        notes.append(f"vs fp32 on {found['reference_backend']}")
    if paper_ratio and known(low) and known(high):
        inside = low <= paper_ratio <= high
        notes.append(f"the paper's {row.title} {paper_ratio:.2f}x is "
                     f"{'inside' if inside else 'outside'} the interval")
    if not dsp and verdict in ("slower than claimed", "no interval"):
        notes.append(_path_note(analysis, cell["device"]))
    return Check(claim, _paper_text(row, dsp), model, cell["recipe"], where,
                 _ratio(value, low, high), verdict, "; ".join(notes), value, low, high)


def _path_note(analysis: Analysis, device: str) -> str:
    found = analysis.devices[analysis.devices["device"] == device]
    flags = found.iloc[0]["cpu_flags"] if not found.empty else None
    return f"int8 path: {int8_path(set(flags))}" if flags else \
        "int8 path: the device did not report its CPU features"


def _accuracy_verdict(low: float, high: float) -> str:
    """'Within 2 points of float', judged on the paired interval of the change."""
    if low >= -ACCURACY_CLAIM_POINTS / 100:
        return "consistent"
    if high < -ACCURACY_CLAIM_POINTS / 100:
        return "worse than claimed"
    return "inconclusive"


def _where_measured(row: dict) -> str:
    where = f"{row['device']}/{row['backend']}"
    return where + " (host)" if row["measured_on"] == "host" else where


def _accuracy_checks(analysis: Analysis) -> list[Check]:
    """Per-channel within 2 points; per-tensor worse. From labelled data (the paired change
    in top-1 with its interval) and from held-out agreement with fp32, which bounds the
    change: a variant agreeing with fp32 on a share a of inputs changes top-1 by at most
    1 - a there. Only trained weights are evaluated (`bench.accuracy`)."""
    frame = analysis.accuracy
    rows = [] if frame is None or frame.empty else \
        [r for r in frame.to_dict("records") if r["status"] == "ok"]
    channel_claim = ("per-channel int8 within 2% of float top-1", "within 2 points")
    tensor_claim = ("per-tensor int8 worse than per-channel", "worse (much on depthwise nets)")
    channel, tensor = [], []
    by_place = {(r["model"], r["device"], r["backend"], r["dataset"], r["recipe"]): r
                for r in rows}
    for row in rows:
        if row["recipe"] not in INT8_RECIPES or not known(row["agreement"]):
            continue
        where = _where_measured(row)
        n = int(row["n"])
        if row["labelled"] and known(row["top1_change"]):
            change, low, high = row["top1_change"], row["top1_change_low"], \
                row["top1_change_high"]
            measured = (f"top-1 {row['top1'] * 100:.1f}% vs fp32 "
                        f"{(row['top1'] - change) * 100:.1f}%: {change * 100:+.1f} points "
                        f"[{low * 100:+.1f}, {high * 100:+.1f}] on {n} {row['dataset']} "
                        "images")
            note = f"paired 95% interval; McNemar p = {row['mcnemar_p']:.2g}"
            verdict = _accuracy_verdict(low, high)
        else:
            bound = row["max_change"]
            measured = (f"agrees with fp32 on {row['agreement'] * 100:.1f}% "
                        f"[{row['agreement_low'] * 100:.1f}, {row['agreement_high'] * 100:.1f}] "
                        f"of {n} {row['dataset']} inputs: top-1 changes by at most "
                        f"{bound * 100:.1f} points there")
            note = "agreement bounds the change; it cannot show a drop (no labels)"
            verdict = "consistent" if bound <= ACCURACY_CLAIM_POINTS / 100 else "inconclusive"
            change, low, high = None, None, None
        if row["recipe"] == INT8:
            channel.append(Check(*channel_claim, row["model"], INT8, where, measured, verdict,
                                 note, change, low, high))
            continue
        other = by_place.get((row["model"], row["device"], row["backend"], row["dataset"],
                              INT8))
        if other is None or not known(other["agreement"]):
            continue
        if row["labelled"] and known(row["top1_change"]) and known(other["top1_change"]):
            mine = (row["top1_change_low"], row["top1_change_high"])
            theirs = (other["top1_change_low"], other["top1_change_high"])
            what = (f"{row['top1_change'] * 100:+.1f} points vs per-channel's "
                    f"{other['top1_change'] * 100:+.1f} on {n} {row['dataset']} images")
        else:
            mine = (row["agreement_low"], row["agreement_high"])
            theirs = (other["agreement_low"], other["agreement_high"])
            what = (f"agreement with fp32 {row['agreement'] * 100:.1f}% vs per-channel's "
                    f"{other['agreement'] * 100:.1f}% on {n} {row['dataset']} inputs")
        if mine[1] < theirs[0]:
            verdict = "consistent"
        elif mine[0] > theirs[1]:
            verdict = "per-tensor not worse"
        else:
            verdict = "inconclusive"
        tensor.append(Check(*tensor_claim, row["model"], PER_TENSOR, where, what, verdict,
                            "judged on non-overlapping 95% intervals"))
    empty = ("this run measured no accuracy of trained weights (`bench run --accuracy "
             "foolbox-imagenet` with :imagenet models, or a labelled folder; random-weight "
             "output agreement is not accuracy)")
    return (channel or [Check(*channel_claim, "-", "-", "-", "no data", "no data", empty)]) + \
        (tensor or [Check(*tensor_claim, "-", "-", "-", "no data", "no data", empty)])


def check_rows(analysis: Analysis) -> list[dict[str, str]]:
    return [check.as_row() for check in paper_checks(analysis)]


TERMINAL_ROWS = 12  # per claim; a large sweep's full check is in the md export and dashboard


def render_text(analysis: Analysis) -> list[str]:
    """The paper check for the terminal: one line per check, grouped by claim."""
    out = [f"paper check ({CITATION}):"]
    by_claim: dict[str, list[Check]] = {}
    for check in paper_checks(analysis):
        by_claim.setdefault(check.claim, []).append(check)
    for claim, checks in by_claim.items():
        out.append(f"  {claim} (paper: {checks[0].paper.split(';')[0]})")
        for check in checks[:TERMINAL_ROWS]:
            place = " ".join(p for p in (check.model, check.recipe if check.recipe not in
                                         (INT8, WEIGHT_ONLY) else "-", check.where) if p != "-")
            if not place:
                out.append(f"    {check.measured}: {check.note}")
                continue
            line = f"    {place}: {check.measured}"
            if check.measured != "no data":
                line += f" -> {check.verdict}"
            if check.note:
                line += f"; {check.note}"
            out.append(line)
        if len(checks) > TERMINAL_ROWS:
            out.append(f"    ... and {len(checks) - TERMINAL_ROWS} more (`bench report "
                       "--format md` or the dashboard has every row)")
    out.append(f"  ({TABLE7_NOTE}; verdicts judge the 95% interval, not the point estimate)")
    return out
