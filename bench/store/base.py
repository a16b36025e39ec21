"""The results store interface: facts in, facts out.

The store holds what was measured and what identified it at the time — runs and their
sessions (each start or resume), the devices as resolved when measured (device file
settings, machine identity, runtime and runner versions), variants, cells with their
stop decisions, device rounds (which cells were measured together) and every round's
values as columns — NULL where unknown. It holds no derived figure: intervals,
speedups and warnings come from `bench.analysis`, every time, from these facts.

SQLite is the implementation shipped (`bench.store.sqlite`); the SQL is kept portable
(explicit column lists, standard upserts, no engine-specific expressions) so another
engine can implement this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from bench.keys import CellKey
from bench.results import RoundContext, RoundResult

# Cell status as stored. `pending`: planned or in progress (an interrupted cell keeps its
# rounds and stays pending until a resume finishes it). A run is running, completed,
# interrupted or incomplete (a device unusable or lost: cells wait for a resume).
PENDING, OK, FAILED, SKIPPED = "pending", "ok", "failed", "skipped"


@dataclass
class RunFacts:
    """Everything the store holds about one run, as plain rows (dicts)."""

    run: dict
    sessions: list[dict] = field(default_factory=list)
    devices: list[dict] = field(default_factory=list)
    variants: list[dict] = field(default_factory=list)
    cells: list[dict] = field(default_factory=list)
    device_rounds: list[dict] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)  # accuracy, `bench.accuracy`


class Store(ABC):
    """What the harness needs from a results store."""

    location: str

    # runs and sessions
    @abstractmethod
    def start_run(self, run_id: str, *, label: str | None, settings: dict, host: dict,
                  harness_version: str, protocol: dict, protocol_version: int,
                  seed: int) -> None: ...

    @abstractmethod
    def start_session(self, run_id: str, *, host: str, pid: int,
                      harness_version: str) -> int:
        """A new session (the start or a resume) of a run; its number."""

    @abstractmethod
    def finish_session(self, run_id: str, session: int, status: str) -> None: ...

    @abstractmethod
    def set_run_status(self, run_id: str, status: str) -> None: ...

    @abstractmethod
    def delete_run(self, run_id: str) -> None:
        """Remove the run and every fact that belongs to it, all or nothing (`bench prune`:
        a half-deleted run would read as a run with missing rounds). An unknown id is a
        UsageError. The caller decides what may go; the store only deletes."""

    @abstractmethod
    def save_gate(self, run_id: str, *, ref: str, min_effect: float, alpha: float,
                  baseline_ids: list[str]) -> None:
        """A regression gate's decision about the run: the baseline as given, its
        thresholds (fractions) and every run it was judged against (`bench prune` keeps
        those)."""

    @abstractmethod
    def gates(self, run_id: str | None = None) -> list[dict]:
        """The gate records of a run (or of every run), oldest first; `baseline_ids` a
        list."""

    # what was measured
    @abstractmethod
    def save_device(self, run_id: str, session: int, device: dict) -> None:
        """The device as resolved in this session: settings, identity, runtime, runner."""

    @abstractmethod
    def save_variant(self, run_id: str, variant, position: int) -> None: ...

    @abstractmethod
    def save_cell(self, run_id: str, key: CellKey, *, status: str, position: int | None = None,
                  reason: str | None = None, stop_reason: str | None = None,
                  protocol_version: int | None = None, target: float | None = None) -> None:
        """Insert or update a cell's status and stop decision."""

    @abstractmethod
    def save_plan(self, run_id: str, key: CellKey, *, pilot: int, needed: int,
                  planned: int) -> None:
        """A family's second stage, decided from its pilot (Stein's procedure)."""

    @abstractmethod
    def save_memory(self, run_id: str, key: CellKey, memory_bytes: int | None,
                    evidence: str) -> None:
        """Peak memory from a run of its own (runners whose timed rounds cannot read it)."""

    @abstractmethod
    def save_evaluation(self, run_id: str, row: dict) -> None:
        """One variant's accuracy on one dataset, device and backend (`bench.accuracy`)."""

    @abstractmethod
    def start_device_round(self, run_id: str, device: str, index: int, *, session: int,
                           seed: int, planned: int, cooldown: dict | None) -> None: ...

    @abstractmethod
    def finish_device_round(self, run_id: str, device: str, index: int) -> None:
        """Every planned cell of the device round has its result: a complete round."""

    @abstractmethod
    def record_round(self, run_id: str, key: CellKey, result: RoundResult,
                     context: RoundContext) -> None: ...

    # reading
    @abstractmethod
    def run(self, run_id: str) -> dict: ...

    @abstractmethod
    def runs(self) -> list[dict]:
        """Every run, oldest first, with its cell counts."""

    @abstractmethod
    def latest_run_id(self) -> str | None: ...

    @abstractmethod
    def facts(self, run_id: str, raw: bool = False) -> RunFacts:
        """The run's facts; `raw` adds each round's runner document (latencies included)."""

    @abstractmethod
    def close(self) -> None: ...
