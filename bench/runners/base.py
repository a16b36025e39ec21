"""The runner interface: what measures on the device, behind one seam.

A device file's `runner` picks the kind (the python runner now; TFLite's native
benchmark_model next). Every kind answers the same questions, so the sweep never knows
which one it drives:

- `backends`: which backends it can measure at all (others are skipped, with the reason);
- `probe(transport)`: can this device run it, and with which runtime (else `RunnerUnavailable`);
- `stage(stager)`: put what it needs on the device (by hash: never sent twice);
- `refuse(job)` (optional): why it cannot measure this job at all, said before running;
- `invocation(job, scratch)`: the command of one round, the files it needs pushed first,
  the result file to fetch after, and what to remove once the round is read;
- `parse(outcome, result_bytes, job)`: everything that came back, as a typed `RoundResult`.

Runners that can return a model's outputs per input also offer `evaluation_invocation`
and `parse_evaluation` (accuracy measured where the model runs, `bench.accuracy`); a
runner without them (benchmark_model) gets its accuracy measured on the host, and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench.results import RoundResult
from bench.transports.base import CommandResult, Transport


class RunnerUnavailable(Exception):
    """The device cannot run this runner at all; the message says what to fix.

    `what` names the missing part (e.g. "python", "numpy", "runtime") for `devices check`."""

    def __init__(self, message: str, what: str = "runner"):
        super().__init__(message)
        self.what = what


@dataclass(frozen=True)
class RoundJob:
    """One round of one cell, as the runner needs it (paths are on the device)."""

    model_path: str
    backend: str
    threads: int
    round: int
    cpus: tuple[int, ...] | None
    loop: dict  # the protocol's warm-up and timed-loop settings
    timeout_s: float


@dataclass(frozen=True)
class EvaluationJob:
    """One staged batch of inputs through one variant, untimed (paths are on the device)."""

    model_path: str
    backend: str
    threads: int
    cpus: tuple[int, ...] | None
    inputs_path: str
    normalise: dict | None  # uint8 pixels -> (p / 255 - mean) / std; None: float32 inputs
    timeout_s: float


@dataclass(frozen=True)
class EvaluationResult:
    """What came back from an evaluation batch (the outputs themselves are a file)."""

    ok: bool
    error: str | None = None
    runtime_name: str | None = None
    runtime_version: str | None = None
    delegated: str | None = None  # yes | no | unknown
    seconds: float | None = None
    inputs: int | None = None


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    uploads: dict[str, bytes] = field(default_factory=dict)  # remote path -> content
    result_path: str | None = None  # a file the round writes, fetched afterwards
    cleanup: list[str] = field(default_factory=list)  # removed once the round is read
    outputs_path: str | None = None  # an evaluation's outputs (.npy), fetched afterwards


@dataclass(frozen=True)
class RunnerProbe:
    """What the device offers, as found before measuring (None where it did not say)."""

    runner_name: str
    runner_version: str | None = None
    runtime_name: str | None = None
    runtime_version: str | None = None
    runtime_module: str | None = None
    python_version: str | None = None
    numpy_version: str | None = None
    cpu_model: str | None = None
    cpu_flags: tuple[str, ...] = ()
    cpu_count: int | None = None
    machine: str | None = None
    platform: str | None = None


class Stager(Protocol):
    def stage(self, local: Path, name: str) -> str:
        """Put `local` on the device as `name` under the work directory (once); its path."""


class Runner(Protocol):
    name: str
    backends: tuple[str, ...]

    def probe(self, transport: Transport) -> RunnerProbe: ...

    def stage(self, stager: Stager) -> None: ...

    def invocation(self, job: RoundJob, scratch: str) -> Invocation: ...

    def parse(self, outcome: CommandResult, result_bytes: bytes | None,
              job: RoundJob) -> RoundResult: ...


RunnerFactory = Callable[["object"], Runner]  # Device -> Runner


def crash_reason(outcome: CommandResult) -> str:
    """A runner that ended without a result: how it ended, and its last words."""
    code = outcome.returncode
    if code is not None and code < 0:
        how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code} without writing a result"
    tail = outcome.tail()
    return f"runner {how}" + (f": {tail}" if tail else "")
