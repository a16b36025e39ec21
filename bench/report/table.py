"""The terminal tables: timing per cell, then what each variant is.

Timing, per model, recipe, device, backend and threads: the median latency and p90, each
with its 95% CI over rounds; how many rounds and why they stopped; the speedup over fp32
(paired per-round ratios, with CI) on the same backend and against fp32 on the device's
CPU reference backend; whether the backend's delegate took the graph; a `!` where the
machine was too noisy. Variants, per model and recipe: size, compression over fp32, and
how faithfully the outputs match fp32. Failed, fallback and skipped cells stay in the
table with their reason: a missing number is a result too.

Every figure comes from the analysis frames (`bench.analysis`); this module only formats.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.analysis import SAME_BACKEND, VS_CPU_FP32, Analysis
from bench.keys import REFERENCE_RECIPE
from bench.report import accuracy_table

DASH = "-"
STOP_NAMES = {"target": "target", "max_rounds": "max", "budget": "budget",
              "fixed_rounds": "fixed", "failed": "failed", "device_lost": "lost"}


def known(value) -> bool:
    return value is not None and value == value


def ms(us: float | None) -> str:
    """Milliseconds with about three significant digits (a one-op model runs in µs)."""
    if not known(us):
        return DASH
    value = us / 1000
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}" if value >= 0.01 else f"{value:.4f}"


def with_ci(value_us, low_us, high_us) -> str:
    text = ms(value_us)
    if known(low_us) and known(high_us):
        text += f" [{ms(low_us)}, {ms(high_us)}]"
    return text


def ratio(found: dict | None) -> str:
    if not found:
        return DASH
    text = f"{found['speedup']:.2f}x"
    if known(found.get("speedup_low")) and known(found.get("speedup_high")):
        text += f" [{found['speedup_low']:.2f}, {found['speedup_high']:.2f}]"
    return text


def model_label(row) -> str:
    return row["model"] + ("*" if row.get("random_weights") else "")


def rounds_text(row) -> str:
    if row["status"] in ("failed", "skipped") or not row["rounds"]:
        return DASH
    stop = row["stop_reason"]
    return f"{row['rounds']}/{STOP_NAMES.get(stop, stop) if stop else 'unfinished'}"


def timing_rows(analysis: Analysis) -> list[dict]:
    rows = []
    for row in analysis.cells.to_dict("records"):
        key = [row[name] for name in ("model", "recipe", "sha256", "device", "backend",
                                      "threads")]
        same = analysis.speedup(key, SAME_BACKEND)
        cpu = analysis.speedup(key, VS_CPU_FP32)
        is_reference = row["recipe"] == REFERENCE_RECIPE
        measured = row["status"] in ("ok", "pending") and row["rounds"]
        rows.append({
            "model": model_label(row),
            "recipe": row["recipe"],
            "device": row["device"],
            "backend": row["backend"],
            "thr": str(row["threads"]),
            "latency ms [95% CI]": with_ci(row["latency_us"], row["latency_us_low"],
                                           row["latency_us_high"]),
            "p90 ms [95% CI]": with_ci(row["p90_us"], row["p90_us_low"], row["p90_us_high"]),
            "rounds": rounds_text(row),
            "speedup [95% CI]": "ref" if is_reference and measured else ratio(same),
            "vs cpu fp32": "=" if measured and _is_cpu_reference(analysis, row) else ratio(cpu),
            "mem MB": (f"{row['peak_memory_bytes'] / 1e6:.1f}"
                       if known(row["peak_memory_bytes"]) else DASH),
            "delegated": row["delegated"] if known(row["delegated"]) else DASH,
            "status": row["status"],
            "!": "!" if row["warnings"] else "",
            "_row": row,
        })
    return rows


def _is_cpu_reference(analysis: Analysis, row: dict) -> bool:
    devices = analysis.devices
    found = devices[devices["device"] == row["device"]]
    return not found.empty and found.iloc[0]["cpu_reference_backend"] == row["backend"]


def variant_rows(analysis: Analysis) -> list[dict]:
    rows = []
    for variant in analysis.variants.to_dict("records"):
        if not variant["measured"]:
            continue  # an fp32 reference built only for the output check
        size = variant["size_bytes"]
        rows.append({
            "model": model_label(variant),
            "recipe": variant["recipe"],
            "size MB": f"{size / 1e6:.2f}" if known(size) else DASH,
            "compr.": f"{variant['compression']:.2f}x" if known(variant["compression"])
            else DASH,
            "top-1 vs fp32": _agreement(variant),
            "SNR dB": _snr(variant),
            "build": variant["status"],
        })
    return rows


def _agreement(variant: dict) -> str:
    if variant["recipe"] == REFERENCE_RECIPE:
        return "ref"
    value = variant["check_top1_agreement"]
    return f"{value * 100:.0f}%" if known(value) else DASH


def _snr(variant: dict) -> str:
    if variant["recipe"] == REFERENCE_RECIPE:
        return "ref"
    if variant["check_identical"]:
        return "exact"
    value = variant["check_snr_db"]
    return f"{value:.1f}" if known(value) else DASH


NUMERIC = {"thr", "latency ms [95% CI]", "p90 ms [95% CI]", "mem MB", "rounds", "speedup [95% CI]",
           "vs cpu fp32", "size MB", "compr.", "top-1 vs fp32", "SNR dB"}


def format_table(rows: list[dict], drop: Sequence[str] = ()) -> list[str]:
    columns = [c for c in rows[0] if not c.startswith("_") and c not in drop]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}

    def line(values: dict) -> str:
        return "  ".join(values[c].rjust(widths[c]) if c in NUMERIC else values[c].ljust(widths[c])
                         for c in columns).rstrip()

    return [line({c: c for c in columns}), line({c: "-" * widths[c] for c in columns})] + \
        [line(r) for r in rows]


def dropped_columns(rows: list[dict]) -> list[str]:
    drop = []
    if len({r["device"] for r in rows}) == 1:
        drop.append("device")
    if all(r["vs cpu fp32"] in ("=", DASH) for r in rows):
        drop.append("vs cpu fp32")
    return drop


def render(analysis: Analysis, width: int = 120) -> str:
    rows = timing_rows(analysis)
    if not rows:
        return "no cells in this run"
    drop = dropped_columns(rows)
    out = format_table(rows, drop)
    problems = [r["_row"] for r in rows if r["status"] not in ("ok", "pending")]
    if problems:
        out.append("")
        out += [f"{p['status'].upper()}: {where(p)}: {clip(p['reason'] or '', width)}"
                for p in problems]
    unfinished = [r["_row"] for r in rows if r["status"] == "pending"]
    if unfinished:
        out += ["", f"{len(unfinished)} cell(s) unfinished (run interrupted or a device was "
                "unusable): their figures are from the rounds measured so far; "
                f"`bench run --resume {analysis.run['id']}` finishes them."]
    noisy = [r["_row"] for r in rows if r["_row"]["warnings"]]
    if noisy:
        out += ["", "! noisy measurements (figures reported, not to be trusted blindly):"]
        out += [f"  {where(r)}: {'; '.join(r['warnings'])}" for r in noisy]
    adaptive = [r["_row"] for r in rows if r["status"] == "ok" and known(r["_row"]["target"])
                and r["_row"]["stop_reason"] in ("target", "max_rounds", "budget")]
    if adaptive:
        reached = sum(bool(r["reached_target"]) for r in adaptive)
        out += ["", f"{reached} of {len(adaptive)} cells reached the ±"
                f"{adaptive[0]['target'] * 100:g}% target (rounds: count/why they stopped)."]
    variants = variant_rows(analysis)
    if variants:
        out += ["", *format_table(variants)]
    accuracy = accuracy_table.render(analysis)
    if accuracy:
        out += ["", *accuracy]
    if any(r["model"].endswith("*") for r in rows):
        out += ["", "* random weights (seeded): latency and size are real; top-1 and SNR only "
                "say how faithfully the conversion\n  reproduces a random network, whose "
                "signal can vanish in int8. Trained weights give accuracy figures."]
    out += ["", "latency / p90: geometric mean of the per-round values (a round is a fresh "
            "runner process), 95% t-interval on their logs (with a pilot's sd when the rounds "
            "were planned from one).",
            "speedup: geometric mean of per-round ratios fp32 / this (same model, device, "
            "backend, threads, round), paired 95% t-interval; ref: the fp32 reference itself."]
    if "vs cpu fp32" not in drop:
        backends = sorted({b for b in analysis.devices["cpu_reference_backend"] if known(b)})
        out.append(f"vs cpu fp32: the same against fp32 on the device's CPU reference backend "
                   f"({', '.join(backends)}; '=': this is that backend).")
    out.append("mem MB: peak memory over the runner's own baseline (python runner: VmHWM in "
               "each round; benchmark_model: a separate untimed run). delegated: the backend's "
               "delegate took (part of) the graph (yes/no/unknown; cpu runs none). compr.: "
               "fp32 size / this size. top-1 / SNR: outputs vs fp32 on 8 fixed inputs "
               "(seeded noise; held-out photographs for trained weights).")
    return "\n".join(out)


def where(row) -> str:
    return f"{model_label(row)} {row['recipe']} on {row['device']}/{row['backend']}/t" \
        f"{row['threads']}"


def clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 2 * width else text[: 2 * width - 3] + "..."

