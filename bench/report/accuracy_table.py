"""The terminal's accuracy table: per variant, dataset, device and backend.

Every figure comes from `Analysis.accuracy` (`bench.accuracy.figures`); this only formats.
Labelled sets give top-1/top-5 and the paired change against fp32; every set gives the
agreement of predicted classes with fp32 and the outputs' SNR.
"""

from __future__ import annotations

from bench.analysis import Analysis
from bench.keys import REFERENCE_RECIPE

DASH = "-"
NUMERIC = {"n", "top-1 % [95% CI]", "top-5 %", "vs fp32, points [95% CI]", "+/-", "McNemar p",
           "agree % [95% CI]", "SNR dB"}


def _known(value) -> bool:
    return value is not None and value == value


def _pct(value, low=None, high=None, digits: int = 1) -> str:
    if not _known(value):
        return DASH
    text = f"{100 * value:.{digits}f}"
    if _known(low) and _known(high):
        text += f" [{100 * low:.{digits}f}, {100 * high:.{digits}f}]"
    return text


def _points(value, low, high) -> str:
    if not _known(value):
        return DASH
    return f"{100 * value:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def _p(value) -> str:
    if not _known(value):
        return DASH
    return "<0.0001" if value < 1e-4 else f"{value:.4f}" if value < 0.01 else f"{value:.2f}"


def rows(analysis: Analysis) -> list[dict]:
    out = []
    for row in analysis.accuracy.to_dict("records"):
        where = f"{row['device']}/{row['backend']}" + (" (host)" if row["measured_on"] == "host"
                                                         else "")
        if row["status"] != "ok":
            out.append({"model": row["model"], "recipe": row["recipe"],
                        "dataset": row["dataset"], "where": where, "n": DASH,
                        "_failed": row["reason"] or "failed"})
            continue
        reference = row["recipe"] == REFERENCE_RECIPE
        counts = DASH if not _known(row["gained"]) else f"+{int(row['gained'])}/-{int(row['lost'])}"
        out.append({
            "model": row["model"], "recipe": row["recipe"], "dataset": row["dataset"],
            "where": where, "n": str(int(row["n"])),
            "top-1 % [95% CI]": _pct(row["top1"], row["top1_low"], row["top1_high"]),
            "top-5 %": _pct(row["top5"]),
            "vs fp32, points [95% CI]": "ref" if reference and row["labelled"] else
            _points(row["top1_change"], row["top1_change_low"], row["top1_change_high"]),
            "+/-": counts, "McNemar p": _p(row["mcnemar_p"]),
            "agree % [95% CI]": "ref" if reference else
            _pct(row["agreement"], row["agreement_low"], row["agreement_high"]),
            "SNR dB": "ref" if reference else
            ("identical" if row["identical"] else
             f"{row['snr_db']:.1f}" if _known(row["snr_db"]) else DASH),
        })
    return out


def render(analysis: Analysis) -> list[str]:
    """The table and what its columns mean; [] when the run measured no accuracy."""
    found = rows(analysis)
    if not found:
        return []
    columns = [c for c in ("model", "recipe", "dataset", "where", "n", "top-1 % [95% CI]",
                           "top-5 %", "vs fp32, points [95% CI]", "+/-", "McNemar p",
                           "agree % [95% CI]", "SNR dB")]
    if len({r["where"] for r in found}) == 1:
        columns.remove("where")
    ok = [r for r in found if "_failed" not in r]
    widths = {c: max([len(c)] + [len(r.get(c, "")) for r in ok]) for c in columns}

    def line(values: dict) -> str:
        return "  ".join(values.get(c, "").rjust(widths[c]) if c in NUMERIC else
                         values.get(c, "").ljust(widths[c]) for c in columns).rstrip()

    out = ["accuracy (after the timed rounds, on the device unless marked host):",
           line({c: c for c in columns}), line({c: "-" * widths[c] for c in columns})]
    out += [line(r) for r in ok]
    out += [f"FAILED: {r['model']} {r['recipe']} on {r['where']}, {r['dataset']}: {r['_failed']}"
            for r in found if "_failed" in r]
    smoke = any(r["dataset"] == "foolbox-imagenet" for r in found)
    out += ["top-1/top-5: share of labelled inputs, Wilson 95% interval. vs fp32: top-1 of this "
            "variant minus fp32's on the same inputs, device and backend (Newcombe's paired "
            "interval); +/-: inputs right here and wrong in fp32 / the reverse; McNemar p: "
            "exact two-sided test on those. agree: same predicted class as fp32 (it bounds any "
            "accuracy change on those inputs by 100 - agree). SNR: outputs vs fp32's."]
    if smoke:
        out.append("foolbox-imagenet is 20 images, a smoke test of weights and preprocessing "
                   "(one image is 5 points), not ImageNet accuracy; heldout: crops and flips of "
                   "them, never used for calibration, unlabelled.")
    return out
