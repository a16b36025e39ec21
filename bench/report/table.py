"""The terminal table printed at the end of a run.

Per model and recipe: the median latency with its 95% CI over rounds, p90, the speedup
over fp32 (paired per-round ratios, with CI) on the same backend and against fp32 on the
device's CPU reference backend, size and compression, agreement of outputs with fp32,
what ran the graph, and a `!` where the machine was too noisy to trust the figures.
Failed and skipped cells stay in the table with their reason.
"""

from __future__ import annotations

from collections.abc import Sequence

DASH = "-"


def _ms(us: float | None) -> str:
    """Milliseconds with about three significant digits (a one-op model runs in µs)."""
    if us is None:
        return DASH
    ms = us / 1000
    return f"{ms:.2f}" if ms >= 1 else f"{ms:.3f}" if ms >= 0.01 else f"{ms:.4f}"


def _latency(cell: dict) -> str:
    ci = (cell.get("summary") or {}).get("ci_us") or {}
    text = _ms(cell.get("median_us"))
    if ci.get("low") is not None:
        text += f" [{_ms(ci['low'])}, {_ms(ci['high'])}]"
    return text


def _speedup(estimate: dict | None) -> str:
    if not estimate:
        return DASH
    text = f"{estimate['value']:.2f}x"
    if estimate.get("low") is not None:
        text += f" [{estimate['low']:.2f}, {estimate['high']:.2f}]"
    return text


def _check_columns(variant: dict | None) -> tuple[str, str]:
    if not variant:
        return DASH, DASH
    if variant["recipe"] == "fp32":
        return "ref", "ref"
    check = (variant.get("details") or {}).get("check")
    if not check or "error" in check:
        return DASH, DASH
    agreement = f"{check['top1_agreement'] * 100:.0f}%"
    if check.get("identical"):
        return agreement, "exact"
    return agreement, f"{check['snr_db']:.1f}"


def build_rows(cells: Sequence[dict], variants: Sequence[dict]) -> list[dict]:
    """Join cells with their variants and fp32 references into display rows."""
    by_variant = {(v["model"], v["recipe"]): v for v in variants}
    rows = []
    for cell in cells:
        summary = cell.get("summary") or {}
        variant = by_variant.get((cell["model"], cell["recipe"]))
        fp32 = by_variant.get((cell["model"], "fp32"))
        size = variant.get("size_bytes") if variant else None
        fp32_size = fp32.get("size_bytes") if fp32 else None
        agreement, snr = _check_columns(variant)
        speedups = summary.get("speedup") or {}
        cpu_backend = speedups.get("cpu_backend")
        rows.append({
            "model": cell["model"] + ("*" if variant and variant["random_weights"] else ""),
            "recipe": cell["recipe"],
            "device": cell["device"],
            "backend": cell["backend"],
            "thr": str(cell["threads"]),
            "median ms [95% CI]": _latency(cell),
            "p90 ms": _ms(cell.get("p90_us")),
            "rounds": str(summary.get("rounds", DASH)) if cell["status"] == "ok" else DASH,
            "speedup [95% CI]": _speedup(speedups.get("same_backend")),
            "vs cpu fp32": ("=" if cpu_backend == cell["backend"] and cell["status"] == "ok"
                            else _speedup(speedups.get("vs_cpu_fp32"))),
            "size MB": f"{size / 1e6:.2f}" if size else DASH,
            "compr.": f"{fp32_size / size:.2f}x" if size and fp32_size else DASH,
            "top-1": agreement,
            "SNR dB": snr,
            "xnnpack": (summary.get("delegation") or {}).get("xnnpack", DASH),
            "status": cell["status"],
            "!": "!" if summary.get("warnings") else "",
            "reason": cell.get("reason") or "",
            "warnings": summary.get("warnings") or [],
            "cpu_backend": cpu_backend,
        })
    return rows


NUMERIC = {"thr", "median ms [95% CI]", "p90 ms", "rounds", "speedup [95% CI]", "vs cpu fp32",
           "size MB", "compr.", "top-1", "SNR dB"}
HIDDEN = {"reason", "warnings", "cpu_backend"}


def render(cells: Sequence[dict], variants: Sequence[dict], width: int = 120) -> str:
    rows = build_rows(cells, variants)
    if not rows:
        return "no cells measured"
    columns = [c for c in rows[0] if c not in HIDDEN]
    if len({r["device"] for r in rows}) == 1:
        columns.remove("device")
    if all(r["vs cpu fp32"] in ("=", DASH) for r in rows):
        columns.remove("vs cpu fp32")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}

    def line(values: dict) -> str:
        return "  ".join(values[c].rjust(widths[c]) if c in NUMERIC else values[c].ljust(widths[c])
                         for c in columns).rstrip()

    out = [line({c: c for c in columns}), line({c: "-" * widths[c] for c in columns})]
    out += [line(r) for r in rows]
    problems = [r for r in rows if r["status"] != "ok"]
    if problems:
        out.append("")
        for r in problems:
            out.append(f"{r['status'].upper()}: {_where(r)}: {_clip(r['reason'], width)}")
    noisy = [r for r in rows if r["warnings"]]
    if noisy:
        out += ["", "! noisy measurements (figures reported, not to be trusted blindly):"]
        out += [f"  {_where(r)}: {'; '.join(r['warnings'])}" for r in noisy]
    if any(r["model"].endswith("*") for r in rows):
        out += ["", "* random weights (seeded): latency and size are real; top-1 and SNR only "
                "say how faithfully the conversion\n  reproduces a random network, whose "
                "signal can vanish in int8. Trained weights give accuracy figures."]
    references = sorted({r["cpu_backend"] for r in rows if r["cpu_backend"]})
    out += ["", "median: median of per-round medians, 95% CI bootstrapped over rounds (a round "
            "is a fresh runner process).",
            "speedup: per-round ratios fp32 / this (same model, device, backend, threads, "
            "round), median and 95% CI."]
    if "vs cpu fp32" in columns:
        out.append(f"vs cpu fp32: the same against fp32 on the device's CPU reference backend "
                   f"({', '.join(references)}). compr.: fp32 size / this size.")
    else:
        out.append("compr.: fp32 size / this size.")
    out.append("top-1 / SNR: outputs vs the fp32 model on 8 fixed inputs. xnnpack: delegate "
               "nodes seen in the graph (yes/no/unknown).")
    return "\n".join(out)


def _where(row: dict) -> str:
    return f"{row['model']} {row['recipe']} on {row['device']}/{row['backend']}/t{row['thr']}"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 2 * width else text[: 2 * width - 3] + "..."
