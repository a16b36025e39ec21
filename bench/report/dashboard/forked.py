"""Mapping a function over items on every core, in forked workers.

For work that holds the GIL (matplotlib drawing, pandas analyses): threads would not help.
Forked workers start in milliseconds and need nothing pickled but the items and results.
Where fork is not available, or the items are few, the map runs here, in order.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
SERIAL_BELOW = 6  # items: fewer run here (a pool costs more than it saves)


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def forking(items: int, workers: int | None = None, serial_below: int = SERIAL_BELOW) -> int:
    """How many workers a map of `items` gets; 0: run it here."""
    workers = workers or min(usable_cpus(), 8)
    fork = "fork" in multiprocessing.get_all_start_methods()
    return workers if fork and workers >= 2 and items >= serial_below else 0


def fork_map(function: Callable[[T], R], items: Sequence[T], workers: int | None = None,
             serial_below: int = SERIAL_BELOW) -> list[R]:
    """[function(item) for item in items], in forked workers when it pays (`function`: a
    module-level function, so it pickles by name)."""
    count = forking(len(items), workers, serial_below)
    if not count:
        return [function(item) for item in items]
    with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(function, items, chunksize=max(1, len(items) // (count * 4))))
