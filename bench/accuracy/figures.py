"""Accuracy figures from stored evaluations: the rows of `Analysis.accuracy`.

Called by `bench.analysis` only (the one place facts become figures). Per variant,
device, backend and dataset: top-1 and top-5 with Wilson intervals, and against the fp32
variant evaluated on the same inputs, device and backend, the paired figures — agreement
of predicted classes (which bounds any change in accuracy on those inputs: a variant
that agrees with fp32 on a share a of them cannot gain or lose more than 1 - a), the
change in top-1 with Newcombe's paired interval, the discordant counts and the exact
McNemar p-value. Unknown is None.
"""

from __future__ import annotations

import json

from bench.keys import REFERENCE_RECIPE
from bench.measure.proportions import (
    mcnemar_exact_p,
    paired_difference_interval,
    wilson_interval,
)

ACCURACY_COLUMNS = [
    "model", "recipe", "sha256", "device", "backend", "threads", "dataset", "dataset_size",
    "labelled", "measured_on", "status", "reason", "n",
    "top1", "top1_low", "top1_high", "top5", "top5_low", "top5_high",
    "agreement", "agreement_low", "agreement_high", "max_change",
    "top1_change", "top1_change_low", "top1_change_high", "gained", "lost", "mcnemar_p",
    "snr_db", "identical", "runtime_name", "runtime_version", "delegated", "seconds",
]


def _interval(prefix: str, successes, n) -> dict:
    if successes is None or not n:
        return {prefix: None, f"{prefix}_low": None, f"{prefix}_high": None}
    found = wilson_interval(int(successes), int(n))
    return {prefix: found.estimate, f"{prefix}_low": found.low, f"{prefix}_high": found.high}


def _list(text) -> list[int] | None:
    return json.loads(text) if text else None


def accuracy_rows(evaluations: list[dict]) -> list[dict]:
    references = {(e["model"], e["device"], e["backend"], e["dataset"]): e for e in evaluations
                  if e["recipe"] == REFERENCE_RECIPE and e["status"] == "ok"}
    rows = []
    for e in evaluations:
        row = {name: e.get(name) for name in ACCURACY_COLUMNS}
        row["labelled"] = bool(e["labelled"])
        row.update(_interval("top1", e["top1"], e["n"]))
        row.update(_interval("top5", e["top5"], e["n"]))
        for name in ("agreement", "agreement_low", "agreement_high", "max_change",
                     "top1_change", "top1_change_low", "top1_change_high", "gained", "lost",
                     "mcnemar_p"):
            row[name] = None
        reference = references.get((e["model"], e["device"], e["backend"], e["dataset"]))
        if e["status"] == "ok" and e["recipe"] != REFERENCE_RECIPE and reference is not None:
            row.update(_paired(e, reference))
        row["identical"] = bool(e["identical"]) if e.get("identical") is not None else None
        rows.append(row)
    return rows


def _paired(row: dict, reference: dict) -> dict:
    mine, theirs = _list(row["predictions"]), _list(reference["predictions"])
    if mine is None or theirs is None or len(mine) != len(theirs) or not mine \
            or row.get("dataset_sha256") != reference.get("dataset_sha256"):
        return {}
    n = len(mine)
    same = sum(a == b for a, b in zip(mine, theirs, strict=True))
    found = {"agreement": same / n}
    agreement = wilson_interval(same, n)
    found.update(agreement_low=agreement.low, agreement_high=agreement.high,
                 max_change=1.0 - agreement.low)
    labels = _list(row["labels"])
    if labels is not None and len(labels) == n:
        right = [p == t for p, t in zip(mine, labels, strict=True)]
        right_ref = [p == t for p, t in zip(theirs, labels, strict=True)]
        both = sum(a and b for a, b in zip(right, right_ref, strict=True))
        gained = sum(a and not b for a, b in zip(right, right_ref, strict=True))
        lost = sum(b and not a for a, b in zip(right, right_ref, strict=True))
        neither = n - both - gained - lost
        change = paired_difference_interval(both, gained, lost, neither)
        found.update(top1_change=change.estimate, top1_change_low=change.low,
                     top1_change_high=change.high, gained=gained, lost=lost,
                     mcnemar_p=mcnemar_exact_p(gained, lost))
    return found


def headline_accuracy(rows: list[dict]) -> dict[tuple[str, str], tuple[float, str]]:
    """{(model, recipe): (top-1, dataset)} for the variants frame and the plots: the first
    labelled dataset, measured on a device rather than the host where both exist."""
    best: dict[tuple[str, str], tuple[tuple, float, str]] = {}
    for order, row in enumerate(rows):
        if row["status"] != "ok" or not row["labelled"] or row["top1"] is None:
            continue
        rank = (row["measured_on"] != "device", order)
        key = (row["model"], row["recipe"])
        if key not in best or rank < best[key][0]:
            best[key] = (rank, row["top1"], row["dataset"])
    return {key: (value, dataset) for key, (_, value, dataset) in best.items()}
