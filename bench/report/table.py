"""The tables printed at the end of a run: timing per cell, then what each variant is.

Timing, per model, recipe, device, backend and threads: the median latency and p90, each
with its 95% CI over rounds; how many rounds and why they stopped; the speedup over fp32
(paired per-round ratios, with CI) on the same backend and against fp32 on the device's
CPU reference backend; what ran the graph; a `!` where the machine was too noisy.
Variants, per model and recipe: size, compression over fp32, how the weights are stored,
and how faithfully the outputs match fp32. Failed and skipped cells stay in the table with
their reason: a missing number is a result too.
"""

from __future__ import annotations

from collections.abc import Sequence

DASH = "-"
STOP_NAMES = {"target": "target", "max_rounds": "max", "budget": "budget",
              "fixed_rounds": "fixed", "failed": "failed", "device_lost": "lost"}


def _ms(us: float | None) -> str:
    """Milliseconds with about three significant digits (a one-op model runs in µs)."""
    if us is None:
        return DASH
    ms = us / 1000
    return f"{ms:.2f}" if ms >= 1 else f"{ms:.3f}" if ms >= 0.01 else f"{ms:.4f}"


def _with_ci(value_us: float | None, ci: dict | None) -> str:
    text = _ms(value_us)
    if ci and ci.get("low") is not None:
        text += f" [{_ms(ci['low'])}, {_ms(ci['high'])}]"
    return text


def _speedup(estimate: dict | None) -> str:
    if not estimate:
        return DASH
    text = f"{estimate['value']:.2f}x"
    if estimate.get("low") is not None:
        text += f" [{estimate['low']:.2f}, {estimate['high']:.2f}]"
    return text


def _rounds(cell: dict) -> str:
    summary = cell.get("summary") or {}
    if cell["status"] != "ok":
        return DASH
    stop = STOP_NAMES.get(summary.get("stop_reason") or "", summary.get("stop_reason") or "?")
    return f"{summary.get('rounds', '?')}/{stop}"


def timing_rows(cells: Sequence[dict], variants: Sequence[dict]) -> list[dict]:
    random_weights = {(v["model"], v["recipe"]) for v in variants if v["random_weights"]}
    rows = []
    for cell in cells:
        summary = cell.get("summary") or {}
        speedups = summary.get("speedup") or {}
        cpu_backend = speedups.get("cpu_backend")
        star = "*" if (cell["model"], cell["recipe"]) in random_weights else ""
        rows.append({
            "model": cell["model"] + star,
            "recipe": cell["recipe"],
            "device": cell["device"],
            "backend": cell["backend"],
            "thr": str(cell["threads"]),
            "median ms [95% CI]": _with_ci(cell.get("median_us"), summary.get("ci_us")),
            "p90 ms [95% CI]": _with_ci(cell.get("p90_us"), summary.get("p90_ci_us")),
            "rounds": _rounds(cell),
            "speedup [95% CI]": _speedup(speedups.get("same_backend")),
            "vs cpu fp32": ("=" if cpu_backend == cell["backend"] and cell["status"] == "ok"
                            else _speedup(speedups.get("vs_cpu_fp32"))),
            "xnnpack": (summary.get("delegation") or {}).get("xnnpack", DASH),
            "status": cell["status"],
            "!": "!" if summary.get("warnings") else "",
            "reason": cell.get("reason") or "",
            "warnings": summary.get("warnings") or [],
            "cpu_backend": cpu_backend,
            "reached": summary.get("reached_target"),
            "stop": summary.get("stop_reason"),
            "target": summary.get("target"),
        })
    return rows


def _check_columns(variant: dict) -> tuple[str, str]:
    if variant["recipe"] == "fp32":
        return "ref", "ref"
    check = (variant.get("details") or {}).get("check")
    if not check or "error" in check:
        return DASH, DASH
    agreement = f"{check['top1_agreement'] * 100:.0f}%"
    if check.get("identical"):
        return agreement, "exact"
    return agreement, f"{check['snr_db']:.1f}"


def variant_rows(cells: Sequence[dict], variants: Sequence[dict]) -> list[dict]:
    measured = {(c["model"], c["recipe"]) for c in cells}
    fp32_size = {v["model"]: v["size_bytes"] for v in variants
                 if v["recipe"] == "fp32" and v["size_bytes"]}
    rows = []
    for variant in variants:
        if (variant["model"], variant["recipe"]) not in measured:
            continue  # an fp32 reference built only for the output check
        size, reference = variant.get("size_bytes"), fp32_size.get(variant["model"])
        agreement, snr = _check_columns(variant)
        rows.append({
            "model": variant["model"] + ("*" if variant["random_weights"] else ""),
            "recipe": variant["recipe"],
            "size MB": f"{size / 1e6:.2f}" if size else DASH,
            "compr.": f"{reference / size:.2f}x" if size and reference else DASH,
            "top-1 vs fp32": agreement,
            "SNR dB": snr,
            "build": variant.get("status", DASH),
        })
    return rows


NUMERIC = {"thr", "median ms [95% CI]", "p90 ms [95% CI]", "rounds", "speedup [95% CI]",
           "vs cpu fp32", "size MB", "compr.", "top-1 vs fp32", "SNR dB"}
HIDDEN = {"reason", "warnings", "cpu_backend", "reached", "target", "stop"}


def format_table(rows: list[dict], drop: Sequence[str] = ()) -> list[str]:
    columns = [c for c in rows[0] if c not in HIDDEN and c not in drop]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}

    def line(values: dict) -> str:
        return "  ".join(values[c].rjust(widths[c]) if c in NUMERIC else values[c].ljust(widths[c])
                         for c in columns).rstrip()

    return [line({c: c for c in columns}), line({c: "-" * widths[c] for c in columns})] + \
        [line(r) for r in rows]


def in_plan_order(cells: Sequence[dict], variants: Sequence[dict]) -> list[dict]:
    """Cells in the order their variants were planned, not the order they finished."""
    rank = {(v["model"], v["recipe"]): i for i, v in enumerate(variants)}
    backends: dict[str, int] = {}
    for cell in cells:
        backends.setdefault(cell["backend"], len(backends))
    return sorted(cells, key=lambda c: (rank.get((c["model"], c["recipe"]), len(rank)),
                                        c["device"], backends[c["backend"]], c["threads"]))


def render(cells: Sequence[dict], variants: Sequence[dict], width: int = 120) -> str:
    cells = in_plan_order(cells, variants)
    rows = timing_rows(cells, variants)
    if not rows:
        return "no cells measured"
    drop = []
    if len({r["device"] for r in rows}) == 1:
        drop.append("device")
    if all(r["vs cpu fp32"] in ("=", DASH) for r in rows):
        drop.append("vs cpu fp32")
    out = format_table(rows, drop)
    problems = [r for r in rows if r["status"] != "ok"]
    if problems:
        out.append("")
        for r in problems:
            out.append(f"{r['status'].upper()}: {_where(r)}: {_clip(r['reason'], width)}")
    noisy = [r for r in rows if r["warnings"]]
    if noisy:
        out += ["", "! noisy measurements (figures reported, not to be trusted blindly):"]
        out += [f"  {_where(r)}: {'; '.join(r['warnings'])}" for r in noisy]
    measured = [r for r in rows if r["status"] == "ok" and r["target"]
                and r["stop"] in ("target", "max_rounds", "budget")]
    if measured:
        reached = sum(bool(r["reached"]) for r in measured)
        out += ["", f"{reached} of {len(measured)} cells reached the ±"
                f"{measured[0]['target'] * 100:g}% target (rounds: count/why they stopped)."]
    variant_table = variant_rows(cells, variants)
    if variant_table:
        out += ["", *format_table(variant_table)]
    if any(r["model"].endswith("*") for r in rows):
        out += ["", "* random weights (seeded): latency and size are real; top-1 and SNR only "
                "say how faithfully the conversion\n  reproduces a random network, whose "
                "signal can vanish in int8. Trained weights give accuracy figures."]
    references = sorted({r["cpu_backend"] for r in rows if r["cpu_backend"]})
    out += ["", "median / p90: median of per-round values, 95% CI bootstrapped over rounds (a "
            "round is a fresh runner process).",
            "speedup: per-round ratios fp32 / this (same model, device, backend, threads, "
            "round), their median and 95% CI."]
    if "vs cpu fp32" not in drop:
        out.append(f"vs cpu fp32: the same against fp32 on the device's CPU reference backend "
                   f"({', '.join(references)}).")
    out.append("xnnpack: DELEGATE nodes seen in the graph (yes/no/unknown). compr.: fp32 size / "
               "this size. top-1 / SNR: outputs vs fp32 on 8 fixed inputs.")
    return "\n".join(out)


def _where(row: dict) -> str:
    return f"{row['model']} {row['recipe']} on {row['device']}/{row['backend']}/t{row['thr']}"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 2 * width else text[: 2 * width - 3] + "..."
