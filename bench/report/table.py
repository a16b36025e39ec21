"""The terminal table printed at the end of a run.

Per model and recipe: median and p90 latency, speedup over fp32 of the same model
on the same device, backend and threads, size and compression ratio, agreement of
outputs with fp32, and what ran the graph. Failed and skipped cells stay in the
table with their reason: a missing number is a result too.
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
    reference = {
        (c["model"], c["device"], c["backend"], c["threads"]): c["median_us"]
        for c in cells if c["recipe"] == "fp32" and c["status"] == "ok"
    }
    rows = []
    for cell in cells:
        variant = by_variant.get((cell["model"], cell["recipe"]))
        fp32 = by_variant.get((cell["model"], "fp32"))
        ref = reference.get((cell["model"], cell["device"], cell["backend"], cell["threads"]))
        size = variant.get("size_bytes") if variant else None
        fp32_size = fp32.get("size_bytes") if fp32 else None
        agreement, snr = _check_columns(variant)
        delegation = (cell.get("summary") or {}).get("delegation") or {}
        rows.append({
            "model": cell["model"] + ("*" if variant and variant["random_weights"] else ""),
            "recipe": cell["recipe"],
            "device": cell["device"],
            "backend": cell["backend"],
            "thr": str(cell["threads"]),
            "median ms": _ms(cell.get("median_us")),
            "p90 ms": _ms(cell.get("p90_us")),
            "speedup": (f"{ref / cell['median_us']:.2f}x"
                        if ref and cell.get("median_us") else DASH),
            "size MB": f"{size / 1e6:.2f}" if size else DASH,
            "compr.": f"{fp32_size / size:.2f}x" if size and fp32_size else DASH,
            "top-1": agreement,
            "SNR dB": snr,
            "xnnpack": delegation.get("xnnpack", DASH),
            "status": cell["status"],
            "reason": cell.get("reason") or "",
        })
    return rows


def render(cells: Sequence[dict], variants: Sequence[dict], width: int = 120) -> str:
    rows = build_rows(cells, variants)
    if not rows:
        return "no cells measured"
    columns = [c for c in rows[0] if c != "reason"]
    if len({r["device"] for r in rows}) == 1:
        columns.remove("device")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    numeric = {"thr", "median ms", "p90 ms", "speedup", "size MB", "compr.", "top-1", "SNR dB"}

    def line(values: dict) -> str:
        return "  ".join(values[c].rjust(widths[c]) if c in numeric else values[c].ljust(widths[c])
                         for c in columns).rstrip()

    out = [line({c: c for c in columns}), line({c: "-" * widths[c] for c in columns})]
    out += [line(r) for r in rows]
    problems = [r for r in rows if r["status"] != "ok"]
    if problems:
        out.append("")
        for r in problems:
            where = f"{r['model']} {r['recipe']} on {r['device']}/{r['backend']}/t{r['thr']}"
            out.append(f"{r['status'].upper()}: {where}: {_clip(r['reason'], width)}")
    if any(r["model"].endswith("*") for r in rows):
        out += ["", "* random weights (seeded): latency and size are real; top-1 and SNR only "
                "say how faithfully the conversion\n  reproduces a random network, whose "
                "signal can vanish in int8. Trained weights give accuracy figures."]
    out += ["", "speedup: fp32 median / this median, same model, device, backend and threads. "
            "compr.: fp32 size / this size.",
            "top-1 / SNR: outputs vs the fp32 model on 8 fixed inputs. xnnpack: delegate nodes "
            "seen in the graph (yes/no/unknown)."]
    return "\n".join(out)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 2 * width else text[: 2 * width - 3] + "..."
