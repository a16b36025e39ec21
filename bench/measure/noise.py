"""Is the machine too noisy to trust? Warnings from each round's recorded environment.

Thresholds: load average above the cores the runner may use; more runnable processes
than cores while the round ran; CPU steal above 2% (a hypervisor taking our time); other
processes using a fifth of a core or more during the round; per-round medians varying
by more than 5% (CV), or iterations inside a round by more than 10%; more threads than
cores; on phones, charging, the screen on, a round that warmed the phone by more than 5 C,
a battery above 40 C. Each works on a round's stored readings (a row of the rounds table); a reading
that is unknown (None) raises no warning and is never taken for zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

STEAL_LIMIT = 0.02
ROUNDS_CV_LIMIT = 0.05
ITERATIONS_CV_LIMIT = 0.10
WARMING_LIMIT_C = 5.0
BATTERY_LIMIT_C = 40.0


def _known(value) -> bool:
    return value is not None and value == value  # not None, not NaN


def round_warnings(row: Mapping, threads: int) -> list[str]:
    """Warnings about one round, from the environment the runner recorded."""
    cores = row.get("cpus_available")
    cores = int(cores) if _known(cores) else None
    warnings = []
    load = row.get("loadavg_1m")
    if cores and _known(load) and load > cores:
        warnings.append(f"load {load:.1f} above {cores} core(s)")
    running = row.get("procs_running")
    if cores and _known(running) and running > cores:
        warnings.append(f"{int(running)} runnable processes on {cores} core(s)")
    steal = row.get("steal_fraction")
    if _known(steal) and steal > STEAL_LIMIT:
        warnings.append(f"CPU steal {steal * 100:.1f}%")
    for process in row.get("busy_processes") or []:
        warnings.append(f"busy: {process['name']} ({process['cpu_share'] * 100:.0f}% of a core)")
    if cores and threads > cores:
        warnings.append(f"{threads} threads on {cores} core(s)")
    # phones: what heats them or wakes their governors between and during rounds
    if row.get("charging") == 1:
        warnings.append("charging (a charger heats the phone)")
    if row.get("screen_on") == 1:
        warnings.append("screen on")
    before, after = row.get("temperature_before_c"), row.get("temperature_c")
    if _known(before) and _known(after) and after - before > WARMING_LIMIT_C:
        warnings.append(f"warmed {after - before:.1f} C during the round")
    battery = row.get("battery_temperature_c")
    if _known(battery) and battery > BATTERY_LIMIT_C:
        warnings.append(f"battery at {battery:.0f} C")
    return warnings


def cell_warnings(rows: Sequence[Mapping], threads: int, rounds_cv: float | None,
                  iterations_cv: float | None) -> list[str]:
    """A cell's warnings, each with how many of its rounds showed it.

    A condition seen in fewer than half of the rounds is a passing blip that the median
    over rounds absorbs; it stays in those rounds' readings but is not flagged on the cell.
    """
    counts: Counter[str] = Counter()
    for row in rows:
        for warning in dict.fromkeys(_generic(w) for w in round_warnings(row, threads)):
            counts[warning] += 1
    out = [f"{w} in {n}/{len(rows)} rounds" if len(rows) > 1 else w
           for w, n in counts.most_common() if 2 * n >= len(rows)]
    if _known(rounds_cv) and rounds_cv > ROUNDS_CV_LIMIT:
        out.append(f"round medians vary: CV {rounds_cv * 100:.1f}%")
    if _known(iterations_cv) and iterations_cv > ITERATIONS_CV_LIMIT:
        out.append(f"iterations vary: CV {iterations_cv * 100:.1f}%")
    return out


def _generic(warning: str) -> str:
    """Group warnings that differ only in figures (e.g. 'load 2.3' and 'load 2.5')."""
    if warning.startswith("load "):
        return "load above the cores"
    if warning.endswith("core(s)") and "runnable" in warning:
        return "more runnable processes than cores"
    if warning.startswith("CPU steal"):
        return f"CPU steal above {STEAL_LIMIT * 100:g}%"
    if warning.startswith("busy: "):
        return warning.split(" (")[0]
    if warning.startswith("warmed "):
        return f"warmed over {WARMING_LIMIT_C:g} C during a round"
    if warning.startswith("battery at "):
        return f"battery above {BATTERY_LIMIT_C:g} C"
    return warning
