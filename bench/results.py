"""The typed result of one round, shared by every runner.

A round is one fresh runner process measuring one cell. Units are in the field names
(microseconds for times, bytes for memory). Every optional figure is None when the
runner could not know it — never 0, never a sentinel, never the string "unknown" —
so nothing downstream can mistake a missing value for a measurement.

Per-iteration latencies are optional: the python runner records every iteration,
TFLite's benchmark_model reports only aggregates. The aggregate block is always there
for a successful round.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

OK = "ok"
FAILED = "failed"
# Backends that hand the graph to a delegate (cpu: the built-in kernels, no delegate).
DELEGATE_BACKENDS = ("xnnpack", "gpu", "nnapi", "hexagon", "external")


def fell_back(backend: str, delegated: str | None) -> bool:
    """A delegate backend whose delegate took none of the graph: built-in kernels ran it,
    so the figure is not one for that backend."""
    return backend in DELEGATE_BACKENDS and delegated == "no"


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no samples")
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Aggregate:
    """Summary of a round's timed iterations, in microseconds.

    A runner that reports only statistics (TFLite's benchmark_model) may not print a
    median: it is then None, never invented, and the round's summary value is the mean,
    with `summary_kind` saying so."""

    count: int | None
    mean_us: float
    median_us: float | None
    min_us: float | None
    max_us: float | None
    p5_us: float | None = None
    p90_us: float | None = None
    p95_us: float | None = None
    p99_us: float | None = None
    std_us: float | None = None  # None for a single iteration: no spread to see
    summary: str | None = None  # "median" or "mean" when the runner chose (else: median)

    @classmethod
    def of(cls, latencies_us: Sequence[float]) -> Aggregate:
        if not latencies_us:
            raise ValueError("no iterations")
        values = [float(v) for v in latencies_us]
        return cls(
            count=len(values), mean_us=statistics.fmean(values),
            median_us=statistics.median(values), min_us=min(values), max_us=max(values),
            p5_us=percentile(values, 5), p90_us=percentile(values, 90),
            p95_us=percentile(values, 95), p99_us=percentile(values, 99),
            std_us=statistics.stdev(values) if len(values) > 1 else None,
        )

    @property
    def cv(self) -> float | None:
        if self.std_us is None or not self.mean_us:
            return None
        return self.std_us / self.mean_us

    @property
    def summary_kind(self) -> str:
        if self.summary is not None:
            return self.summary
        return "median" if self.median_us is not None else "mean"

    @property
    def summary_us(self) -> float:
        """The round's one value: its median where known (and fine enough), else its mean."""
        if self.summary_kind == "median" and self.median_us is not None:
            return self.median_us
        return self.mean_us


@dataclass(frozen=True)
class Delegation:
    """Did the backend's delegate take the graph? From the graph itself, never guessed.

    `delegated`: "yes" when delegate nodes replaced part of the graph, "no" when none did,
    "unknown" when the runtime cannot say.
    """

    backend: str
    delegated: str
    delegate_nodes: int | None = None
    graph_nodes: int | None = None
    evidence: str | None = None


@dataclass(frozen=True)
class BusyProcess:
    pid: int
    name: str
    cpu_share: float  # of one core, over the round


@dataclass(frozen=True)
class RoundEnvironment:
    """What else the device was doing during the round (None where unreadable)."""

    loadavg_1m: float | None = None
    procs_running: int | None = None
    cpus_available: int | None = None
    steal_fraction: float | None = None
    temperature_c: float | None = None  # hottest thermal zone, after the round
    governor: str | None = None
    affinity: tuple[int, ...] | None = None
    busy_processes: tuple[BusyProcess, ...] = ()
    temperature_before_c: float | None = None  # phones: before the round
    battery_temperature_c: float | None = None
    charging: bool | None = None
    screen_on: bool | None = None


@dataclass(frozen=True)
class RoundResult:
    status: str  # ok | failed
    error: str | None = None
    aggregate: Aggregate | None = None
    latencies_us: tuple[float, ...] | None = None
    warmup_runs: int | None = None
    loop_overhead_us: float | None = None  # the timing loop's own cost per sample
    batch: int | None = None  # invokes per timed sample (1 unless the model is tiny)
    init_us: float | None = None  # interpreter creation + tensor allocation
    first_inference_us: float | None = None
    peak_memory_bytes: int | None = None  # over the runner's own baseline
    runtime_name: str | None = None
    runtime_version: str | None = None
    runtime_module: str | None = None
    runner_name: str | None = None
    runner_version: str | None = None
    delegation: Delegation | None = None
    environment: RoundEnvironment | None = None
    cpu_model: str | None = None
    cpu_flags: tuple[str, ...] | None = None
    python_version: str | None = None
    numpy_version: str | None = None
    machine: str | None = None
    started_unix: float | None = None
    finished_unix: float | None = None
    # The transport's verdict: the device itself is gone or refuses (disk full); its other
    # cells cannot run now either.
    device_lost: bool = False
    raw: dict = field(default_factory=dict, compare=False)  # the runner's own document

    @property
    def ok(self) -> bool:
        return self.status == OK and self.aggregate is not None

    @classmethod
    def failure(cls, error: str, device_lost: bool = False, **facts) -> RoundResult:
        return cls(status=FAILED, error=error, device_lost=device_lost, **facts)


@dataclass(frozen=True)
class RoundContext:
    """What the harness knows about a round beyond the runner's result."""

    round: int
    session: int
    position: int  # place in the device round's order
    host_seconds: float | None = None  # wall time on the harness, transport included
    predecessor: str | None = None  # cell_id measured just before it in the same round
