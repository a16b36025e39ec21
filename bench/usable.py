"""Which rounds count and what a cell shows: the rules every figure and the gate share.

`bench.analysis` builds every report's frames on these rules; the regression gate reads
the same usable round medians through `gate_cells` without pandas or intervals, so a
comparison of 1,000 benchmarks stays within its time and still judges exactly the
figures the reports show.
"""

from __future__ import annotations

from bench.keys import KEY_COLUMNS
from bench.results import fell_back
from bench.store.base import RunFacts

FALLBACK = "fallback"


def _present(value) -> bool:
    return value is not None and value == value


def judged_rounds(facts: RunFacts) -> list[dict]:
    """Every round with whether it is usable: ok, with a median, and from a device round
    that finished (an interrupted device round is measured again whole)."""
    complete = {(r["device"], r["round"]): r["finished_at"] is not None
                for r in facts.device_rounds}
    rounds = []
    for row in facts.rounds:
        ok = row["status"] == "ok" and _present(row["summary_us"])
        whole = complete.get((row["device"], row["round"]), False)
        std, mean = row.get("std_us"), row.get("mean_us")
        rounds.append({**row, "complete": whole, "usable": ok and whole,
                       "iterations_cv": std / mean if _present(std) and mean else None})
    return rounds


def by_cell(rounds: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for row in rounds:
        found.setdefault(row["cell_id"], []).append(row)
    return found


def delegation(backend: str, rounds: list[dict]) -> str | None:
    """yes / no / unknown from the rounds (one verdict if they agree, else 'mixed')."""
    verdicts = {r["delegated"] for r in rounds if r["delegated"]}
    if not verdicts:
        return None
    return verdicts.pop() if len(verdicts) == 1 else "mixed"


def cell_status(cell: dict, rounds: list[dict], usable: list[dict]) -> tuple[str, str | None]:
    """The cell's shown status: a delegate that took none of the graph is a fallback, and
    a cell whose every round failed has failed."""
    status, reason = cell["status"], cell["reason"]
    failed = [r for r in rounds if r["status"] != "ok"]
    first = usable[0] if usable else None
    if status in ("ok", "pending") and usable and \
            fell_back(cell["backend"], delegation(cell["backend"], usable)):
        status = FALLBACK
        reason = (f"the {cell['backend']} delegate took none of the graph "
                  f"({first['delegation_evidence'] or 'no delegate nodes'}; "
                  f"{first['runtime_name']} {first['runtime_version']}): built-in kernels ran "
                  "it, so this is not a figure for that backend")
    elif status in ("ok", "pending") and not usable and failed:
        status, reason = "failed", reason or failed[0]["error"]
    return status, reason


def gate_cells(facts: RunFacts) -> list[dict]:
    """What the regression gate judges of each cell: its key, shown status and usable
    round medians in round order."""
    rounds_of = by_cell(judged_rounds(facts))
    found = []
    for cell in facts.cells:
        rounds = rounds_of.get(cell["cell_id"], [])
        usable = sorted((r for r in rounds if r["usable"]), key=lambda r: r["round"])
        status, _ = cell_status(cell, rounds, usable)
        found.append({**{name: cell[name] for name in KEY_COLUMNS}, "status": status,
                      "sha256": cell.get("sha256"), "pilot_rounds": cell.get("pilot_rounds"),
                      "medians_us": [r["summary_us"] for r in usable]})
    return found


def latest_devices(facts: RunFacts) -> dict[str, dict]:
    """Each device's row as last resolved (its latest session)."""
    latest: dict[str, dict] = {}
    for row in facts.devices:
        if row["device"] not in latest or row["session"] >= latest[row["device"]]["session"]:
            latest[row["device"]] = row
    return latest
