"""Is the machine too noisy to trust? Warnings from each round's environment.

Thresholds: load average above the cores the runner may use; more runnable processes
than cores when the round started; CPU steal above 2% (a hypervisor taking our time);
other processes using a fifth of a core or more during the round; per-round medians
varying by more than 5% (CV), or iterations inside a round by more than 10%; more
threads than cores.
"""

from __future__ import annotations

from collections import Counter

STEAL_LIMIT = 0.02
ROUNDS_CV_LIMIT = 0.05
ITERATIONS_CV_LIMIT = 0.10


def round_warnings(record: dict, threads: int) -> list[str]:
    """Warnings about one round, from the environment the runner recorded."""
    env = record.get("environment") or {}
    cores = len(env.get("affinity") or []) or record.get("cpu_count") or 1
    warnings = []
    load = (env.get("loadavg") or [None])[0]
    if load is not None and load > cores:
        warnings.append(f"load {load:.1f} above {cores} core(s)")
    running = env.get("procs_running")
    if isinstance(running, int) and running > cores:
        warnings.append(f"{running} runnable processes on {cores} core(s)")
    steal = env.get("steal")
    if isinstance(steal, float) and steal > STEAL_LIMIT:
        warnings.append(f"CPU steal {steal * 100:.1f}%")
    for process in env.get("busy_processes") or []:
        warnings.append(f"busy: {process['name']} ({process['cpu_share'] * 100:.0f}% of a core)")
    if threads > cores:
        warnings.append(f"{threads} threads on {cores} core(s)")
    return warnings


def cell_warnings(records: list[dict], threads: int, rounds_cv: float | None,
                  iterations_cv: float | None) -> list[str]:
    """A cell's warnings, each with how many of its rounds showed it.

    A condition seen in fewer than half of the rounds is a passing blip that the median
    over rounds absorbs; it stays in those rounds' records but is not flagged on the cell.
    """
    counts: Counter[str] = Counter()
    for record in records:
        for warning in dict.fromkeys(_generic(w) for w in round_warnings(record, threads)):
            counts[warning] += 1
    out = [f"{w} in {n}/{len(records)} rounds" if len(records) > 1 else w
           for w, n in counts.most_common() if 2 * n >= len(records)]
    if rounds_cv is not None and rounds_cv > ROUNDS_CV_LIMIT:
        out.append(f"round medians vary: CV {rounds_cv * 100:.1f}%")
    if iterations_cv is not None and iterations_cv > ITERATIONS_CV_LIMIT:
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
    return warning
