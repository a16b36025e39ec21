"""The results store: facts about runs (see `bench.store.base` for the interface)."""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

from bench.store.base import FAILED, OK, PENDING, SKIPPED, RunFacts, Store

DEFAULT_STORE = Path("results") / "bench.sqlite"


def open_store(path: Path = DEFAULT_STORE, readonly: bool = False) -> Store:
    from bench.store.sqlite import SQLiteStore

    return SQLiteStore(Path(path), readonly=readonly)


def new_run_id() -> str:
    """Local time first, so ids sort by when they started; a random tail keeps them unique."""
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


__all__ = ["DEFAULT_STORE", "FAILED", "OK", "PENDING", "SKIPPED", "RunFacts", "Store",
           "new_run_id", "open_store"]
