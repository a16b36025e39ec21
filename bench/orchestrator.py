"""The sweep: every cell of the plan on every device, one measurement at a time.

Cells are stored the moment they finish, so Ctrl-C or a crash keeps everything
already measured, and `--resume` measures only what is missing or failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.devices import PYTHON_RUNNER_BACKENDS, Device
from bench.measure.cell import Cell, DeviceSession, summarize_cell
from bench.measure.protocol import Protocol
from bench.store import Store
from bench.transports import open_transport
from bench.transports.base import TransportError
from bench.zoo.cache import Variant


@dataclass
class Plan:
    """variants × devices × backends × threads, with what cannot run set aside."""

    cells: list[Cell] = field(default_factory=list)
    skipped: list[tuple[Cell, str]] = field(default_factory=list)


def make_plan(variants: list[Variant], devices: list[Device], backends: list[str] | None,
              threads: list[int] | None) -> Plan:
    plan = Plan()
    for device in devices:
        wanted_backends = backends or list(device.backends)
        for variant in variants:
            for backend in wanted_backends:
                for count in threads or list(device.threads):
                    cell = Cell(variant, device.name, backend, count)
                    reason = skip_reason(device, backend)
                    if reason:
                        plan.skipped.append((cell, reason))
                    else:
                        plan.cells.append(cell)
    return plan


def skip_reason(device: Device, backend: str) -> str | None:
    if backend not in device.backends:
        return f"device {device.name} does not declare backend {backend} ({device.file})"
    if device.runner == "python" and backend not in PYTHON_RUNNER_BACKENDS:
        return f"the python runner has no {backend} backend"
    return None


class Interrupted(Exception):
    """Ctrl-C during the sweep; finished cells are stored."""


@dataclass
class SweepOutcome:
    finished: int = 0
    failed: int = 0
    unusable_devices: list[str] = field(default_factory=list)


class Sweep:
    def __init__(self, store: Store, run_id: str, protocol: Protocol,
                 on_start: Callable[[Cell], None] = lambda cell: None,
                 on_finish: Callable[[Cell, dict], None] = lambda cell, row: None):
        self.store = store
        self.run_id = run_id
        self.protocol = protocol
        self.on_start = on_start
        self.on_finish = on_finish

    def record(self, cell: Cell, row: dict, rounds: list[dict]) -> None:
        self.store.save_cell(self.run_id, row, rounds)
        self.on_finish(cell, row)

    def skip(self, plan: Plan) -> None:
        for cell, reason in plan.skipped:
            row = summarize_cell(cell, [])
            self.record(cell, {**row, "status": "skipped", "reason": reason}, [])

    def run(self, plan: Plan, devices: list[Device]) -> SweepOutcome:
        outcome = SweepOutcome()
        for device in devices:
            cells = [c for c in plan.cells if c.device == device.name]
            if cells:
                self._run_device(device, cells, outcome)
        return outcome

    def _run_device(self, device: Device, cells: list[Cell], outcome: SweepOutcome) -> None:
        transport = open_transport(device)
        try:
            problem = preflight(device, transport)
            if problem:
                outcome.unusable_devices.append(device.name)
                for cell in cells:
                    self._fail(cell, problem, outcome)
                return
            session = DeviceSession(device, transport, self.protocol)
            for cell in cells:
                if cell.variant.status != "ok":
                    self._fail(cell, cell.variant.error or "variant was not built", outcome)
                    continue
                self.on_start(cell)
                rounds = [session.run_round(cell, index)
                          for index in range(self.protocol.rounds)]
                row = summarize_cell(cell, rounds)
                outcome.finished += 1
                outcome.failed += row["status"] == "failed"
                self.record(cell, row, rounds)
        except KeyboardInterrupt:
            raise Interrupted() from None
        finally:
            transport.close()

    def _fail(self, cell: Cell, reason: str, outcome: SweepOutcome) -> None:
        row = {**summarize_cell(cell, []), "status": "failed", "reason": reason}
        outcome.finished += 1
        outcome.failed += 1
        self.record(cell, row, [])


def preflight(device: Device, transport) -> str | None:
    """Can the device run the python runner at all? A reason when it cannot."""
    session = DeviceSession(device, transport, Protocol())
    probe = [session.python, "-I", "-c", "import json, numpy"]
    try:
        result = transport.run(probe, timeout=min(device.timeout_s, 120))
    except TransportError as exc:
        return f"device {device.name} unusable: {exc}; check `python` in {device.file}"
    if result.timed_out:
        return f"device {device.name} unusable: its Python did not answer within 120 s"
    if result.returncode != 0:
        return (f"device {device.name} unusable: `{session.python} -c 'import numpy'` failed "
                f"({result.tail(2)}); install numpy there or fix `python` in {device.file}")
    return None
