"""The sweep: interleaved rounds of every cell on every device, stored as they finish.

Within a round, the cells of a device run back to back in an order shuffled per round
(seeded, recorded), so drift and thermal state hit every variant alike. Rounds are added
until every cell of a model family (same model, device, threads: the cells whose ratios
are speedups) knows its median within the target, between the minimum and maximum
number of rounds and within the time budget. Each round is stored the moment it ends,
so Ctrl-C or a crash keeps everything measured, and `--resume` continues from there.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.devices import PYTHON_RUNNER_BACKENDS, Device
from bench.measure.cell import Cell, DeviceSession, summarize_cell
from bench.measure.cooldown import cool_down
from bench.measure.device_lock import DeviceLock, DeviceLocked, fingerprint
from bench.measure.protocol import Protocol
from bench.measure.speedups import cpu_reference_backend, speedups
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


def round_order(cells: list[Cell], seed: int, device: str, index: int) -> list[Cell]:
    """The cells of one round in a shuffled order that the seed reproduces."""
    order = sorted(cells, key=lambda c: c.key)
    random.Random(f"{seed}/{device}/{index}").shuffle(order)
    return order


def family(cell: Cell) -> tuple:
    return (cell.model, cell.device, cell.threads)


class Interrupted(Exception):
    """Ctrl-C during the sweep; finished rounds are stored."""


@dataclass
class SweepOutcome:
    finished: int = 0
    failed: int = 0
    unusable_devices: list[str] = field(default_factory=list)


@dataclass
class _Ready:
    """A device that answered, identified its machine and is locked for this run."""

    device: Device
    transport: object
    cells: list[Cell]
    lock: DeviceLock
    fingerprint: str


@dataclass
class DeviceState:
    """What is known so far about the cells of one device."""

    rounds: dict[tuple, dict[int, dict]]
    stopped: dict[tuple, str] = field(default_factory=dict)
    rows: dict[tuple, dict] = field(default_factory=dict)  # each cell's latest summary
    lost: str | None = None  # why the device was lost, if it was

    def on_target(self, cell: Cell) -> bool:
        return bool(self.rows.get(cell.key, {}).get("summary", {}).get("reached_target"))


class Sweep:
    def __init__(self, store: Store, run_id: str, protocol: Protocol, seed: int,
                 on_start: Callable[[Cell, int], None] = lambda cell, index: None,
                 on_round: Callable[[Cell, dict], None] = lambda cell, record: None,
                 on_finish: Callable[[Cell, dict], None] = lambda cell, row: None,
                 sleep: Callable[[float], None] = time.sleep):
        self.store = store
        self.run_id = run_id
        self.protocol = protocol
        self.seed = seed
        self.on_start = on_start
        self.on_round = on_round
        self.on_finish = on_finish
        self.sleep = sleep
        self._lock = threading.RLock()  # the store and the callbacks, across device threads
        self._stop = threading.Event()

    def skip(self, plan: Plan) -> None:
        for cell, reason in plan.skipped:
            row = {**summarize_cell(cell, {}), "status": "skipped", "reason": reason}
            self.store.save_cell(self.run_id, row)
            self.on_finish(cell, row)

    def run(self, plan: Plan, devices: list[Device],
            previous: dict[tuple, dict[int, dict]] | None = None) -> SweepOutcome:
        """Measure every planned cell; `previous` holds rounds of a resumed run.

        Devices run in parallel, one thread per machine: device names whose fingerprint
        is the same machine share a thread, so they are never measured at once."""
        outcome = SweepOutcome()
        machines: dict[str, list[_Ready]] = {}
        try:
            for device in devices:
                cells = [c for c in plan.cells if c.device == device.name]
                if cells:
                    ready = self._prepare(device, cells, outcome)
                    if ready is not None:
                        machines.setdefault(ready.fingerprint, []).append(ready)
            groups = list(machines.values())
            if len(groups) == 1:
                self._run_machine(groups[0], outcome, previous or {})
            elif groups:
                self._run_parallel(groups, outcome, previous or {})
        except KeyboardInterrupt:
            raise Interrupted() from None
        finally:
            for group in machines.values():
                for ready in group:
                    ready.lock.release()
                    ready.transport.close()
        if self._stop.is_set():
            raise Interrupted()
        return outcome

    def _prepare(self, device: Device, cells: list[Cell], outcome: SweepOutcome):
        """Reach the device, identify its machine, take its lock; None when unusable."""
        transport = open_transport(device)
        lock = DeviceLock(device, transport)
        problem = preflight(device, transport)
        machine = None
        if problem is None:
            try:
                machine = fingerprint(transport)
                lock.acquire()
            except (TransportError, DeviceLocked) as exc:
                problem = f"device {device.name} unusable: {exc}"
        if problem is not None:
            transport.close()
            outcome.unusable_devices.append(device.name)
            for cell in cells:
                self._fail(cell, problem, outcome)
            return None
        return _Ready(device, transport, cells, lock, machine)

    def _run_parallel(self, groups: list[list[_Ready]], outcome: SweepOutcome,
                      previous: dict) -> None:
        errors: list[BaseException] = []

        def work(group: list[_Ready]) -> None:
            try:
                self._run_machine(group, outcome, previous)
            except Interrupted:
                pass
            except BaseException as exc:  # surfaced in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(g,), daemon=True,
                                    name=f"bench-{g[0].device.name}") for g in groups]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except KeyboardInterrupt:
            self._stop.set()
            for group in groups:  # kills the running measurements
                for ready in group:
                    ready.transport.close()
            for thread in threads:
                thread.join(30)
            raise
        if errors:
            raise errors[0]

    def _run_machine(self, group: list[_Ready], outcome: SweepOutcome,
                     previous: dict) -> None:
        for ready in group:
            runnable = []
            for cell in ready.cells:
                if cell.variant.status == "ok":
                    runnable.append(cell)
                else:
                    self._fail(cell, cell.variant.error or "variant was not built", outcome)
            if runnable:
                self._rounds(ready.device, ready.transport, runnable, outcome, previous)

    def _rounds(self, device: Device, transport, cells: list[Cell], outcome: SweepOutcome,
                previous: dict) -> None:
        session = DeviceSession(device, transport, self.protocol)
        state = DeviceState({c.key: dict(previous.get(c.key, {})) for c in cells})
        state.rows = {c.key: summarize_cell(c, state.rounds[c.key], None, self.protocol.target)
                      for c in cells if state.rounds[c.key]}
        # A resumed run first completes the round it was interrupted in.
        index = max((i for r in state.rounds.values() for i in r), default=0)
        budget = self.protocol.budget_for(len(cells))
        started = time.monotonic()
        active = list(cells)
        while active:
            todo = [c for c in active if index not in state.rounds[c.key]]
            cooldown = None
            if todo and index > 0 and (device.cooldown_s or device.thermal_max_c is not None):
                cooldown = cool_down(transport, device, device.cooldown_s, sleep=self.sleep)
            for position, cell in enumerate(round_order(todo, self.seed, device.name, index)):
                if self._stop.is_set():
                    raise Interrupted()
                with self._lock:
                    self.on_start(cell, index)
                record = session.run_round(cell, index)
                if self._stop.is_set():
                    raise Interrupted()  # killed by Ctrl-C: not a result
                record["order"] = {"seed": self.seed, "position": position}
                if cooldown is not None:
                    record["cooldown"] = cooldown
                state.rounds[cell.key][index] = record
                row = summarize_cell(cell, state.rounds[cell.key], None, self.protocol.target)
                state.rows[cell.key] = row
                with self._lock:
                    self.store.record_round(self.run_id, row, index, record)
                    self.on_round(cell, record)
                if record.get("status") != "ok":
                    state.stopped[cell.key] = "failed"
                if record.get("device_lost"):
                    self._lose_device(active, state, record["error"])
                    break
            index += 1
            self._decide(active, state, time.monotonic() - started > budget)
            still = [c for c in active if c.key not in state.stopped]
            for cell in active:
                if cell.key not in state.stopped:
                    continue
                if not state.rounds[cell.key]:  # cut off by a lost device before its turn
                    self._fail(cell, state.lost or "no rounds", outcome)
                    continue
                row = summarize_cell(cell, state.rounds[cell.key], state.stopped[cell.key],
                                     self.protocol.target)
                self._finish(cell, row, outcome)
            active = still
        self._store_speedups(device, state)

    def _lose_device(self, active: list[Cell], state: DeviceState, error: str) -> None:
        """Every unfinished cell stops; those without a round fail with the device's error."""
        state.lost = error
        for cell in active:
            state.stopped.setdefault(cell.key, "device_lost")

    def _decide(self, active: list[Cell], state: DeviceState, over_budget: bool) -> None:
        """Stop whole families: their cells' ratios are the speedups, so they stay paired."""
        protocol = self.protocol
        families: dict[tuple, list[Cell]] = {}
        for cell in active:
            if cell.key not in state.stopped:
                families.setdefault(family(cell), []).append(cell)
        for members in families.values():
            counts = [len(state.rounds[c.key]) for c in members]
            done_min = min(counts) >= protocol.min_rounds
            if max(counts) >= protocol.max_rounds:
                reason = "max_rounds" if protocol.adaptive else "fixed_rounds"
            elif done_min and over_budget:
                reason = "budget"
            elif done_min and protocol.adaptive and all(state.on_target(c) for c in members):
                reason = "target"
            else:
                continue
            for cell in members:
                state.stopped[cell.key] = reason

    def _fail(self, cell: Cell, reason: str, outcome: SweepOutcome) -> None:
        self._finish(cell, {**summarize_cell(cell, {}), "status": "failed", "reason": reason},
                     outcome)

    def _finish(self, cell: Cell, row: dict, outcome: SweepOutcome) -> None:
        with self._lock:
            self.store.save_cell(self.run_id, row)
            outcome.finished += 1
            outcome.failed += row["status"] == "failed"
            self.on_finish(cell, row)

    def _store_speedups(self, device: Device, state: DeviceState) -> None:
        """Add paired speedups with CIs to the stored rows of the device's cells."""
        with self._lock:
            rows = [c for c in self.store.cells(self.run_id) if c["device"] == device.name]
            found = speedups(rows, state.rounds,
                             {device.name: cpu_reference_backend(device.backends)})
            for row in rows:
                key = (row["model"], row["recipe"], row["device"], row["backend"],
                       row["threads"])
                if key in found:
                    row["summary"]["speedup"] = found[key]
                    self.store.save_cell(self.run_id, row)


def preflight(device: Device, transport) -> str | None:
    """Can the device run the python runner at all? A reason when it cannot."""
    probe = [device.interpreter, "-I", "-c", "import json, numpy"]
    try:
        result = transport.run(probe, timeout=min(device.timeout_s, 120))
    except TransportError as exc:
        return f"device {device.name} unusable: {exc}; check `python` in {device.file}"
    if result.timed_out:
        return f"device {device.name} unusable: its Python did not answer within 120 s"
    if result.returncode != 0:
        return (f"device {device.name} unusable: `{device.interpreter} -c 'import numpy'` failed "
                f"({result.tail(2)}); install numpy there or fix `python` in {device.file}")
    return None
