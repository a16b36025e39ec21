"""Speedups over fp32, as paired per-round ratios with bootstrap intervals.

Rounds of a device are interleaved, so round r of fp32 and round r of int8 ran minutes
apart at most, under the same drift and thermal state: their ratio cancels what the two
share. The speedup is the median of those per-round ratios, with a 95% CI over rounds.

Two references: fp32 on the same backend (what quantization buys on this backend), and
fp32 on the device's first declared CPU backend (the paper's 10x DSP figure is against
float on the CPU).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from bench.measure.stats import Estimate, speedup

CPU_BACKENDS = ("xnnpack", "cpu")


def round_medians(records: dict[int, dict]) -> dict[int, float]:
    return {index: statistics.median(r["latencies_us"]) for index, r in records.items()
            if r.get("status") == "ok" and r.get("latencies_us")}


def cpu_reference_backend(declared: Iterable[str]) -> str | None:
    return next((b for b in declared if b in CPU_BACKENDS), None)


def speedups(rows: list[dict], rounds: dict[tuple, dict[int, dict]],
             cpu_backend: dict[str, str | None]) -> dict[tuple, dict]:
    """{cell key: {"same_backend": Estimate-dict, "vs_cpu_fp32": ..., "cpu_backend": name}}."""
    medians = {key: round_medians(records) for key, records in rounds.items()}
    out = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        key = (row["model"], row["recipe"], row["device"], row["backend"], row["threads"])
        same = (row["model"], "fp32", row["device"], row["backend"], row["threads"])
        reference_backend = cpu_backend.get(row["device"])
        cpu = (row["model"], "fp32", row["device"], reference_backend, row["threads"])
        entry: dict = {"cpu_backend": reference_backend}
        for name, ref_key in (("same_backend", same), ("vs_cpu_fp32", cpu)):
            if ref_key in medians and key in medians:
                found: Estimate | None = speedup(medians[ref_key], medians[key])
                entry[name] = found.to_dict() if found else None
            else:
                entry[name] = None
        out[key] = entry
    return out
