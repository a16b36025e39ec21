"""The sweep: interleaved rounds of every cell on every device, stored as they finish.

Devices are reached in parallel (a board that never answers costs its own timeout, not
everyone's), grouped by the machine behind them, and each machine is locked for this
harness. Machines are then measured in parallel, one thread each, so two device names
for one machine are never measured at once.

On a device, a round runs every still-active cell once, back to back, in an order
shuffled per round (seeded, recorded), so drift and thermal state hit every variant
alike. The device round is recorded before it starts (which cells it plans) and marked
finished when all of them have a result: a round cut short (Ctrl-C, a lost link) stays
unfinished, and `bench.analysis` leaves its rounds out of figures and pairing. Rounds
are added until every family (same model, device, threads) stops under the protocol's
rule (`bench.measure.stopping`); each round and each decision is stored as it happens.

Transports and runners come from factories (Device -> Transport, Device -> Runner), so
tests can hand the sweep fakes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import Empty, Queue

from bench.devices import Device
from bench.keys import CellKey, FamilyKey
from bench.measure import orders
from bench.measure.cooldown import cool_down
from bench.measure.machine_lock import LockHolder, MachineBusy, MachineLock
from bench.measure.protocol import Protocol
from bench.measure.session import DeviceSession
from bench.measure.stopping import PROTOCOL_VERSION, decide, plan_family
from bench.measure.stopping import Plan as RoundsPlan
from bench.plan import Cell, Plan
from bench.results import RoundContext, RoundResult, fell_back
from bench.runners.base import Runner, RunnerProbe, RunnerUnavailable
from bench.store.base import FAILED, OK, PENDING, SKIPPED, Store
from bench.transports.base import Transport, TransportError


def round_order(cells: list[Cell], seed: int, device: str, index: int) -> list[Cell]:
    """The cells of one device round in measuring order (`bench.measure.orders`)."""
    return orders.round_order(cells, [c.key for c in cells], seed, device, index)


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM/SIGHUP) during the sweep; finished rounds are stored."""


@dataclass
class SweepOutcome:
    finished: int = 0
    failed: int = 0
    unusable: dict[str, str] = field(default_factory=dict)  # device -> why, before measuring
    lost: dict[str, str] = field(default_factory=dict)  # device -> why, while measuring


@dataclass
class ResumeState:
    """What a resumed run already has: usable round medians per cell, next round index,
    and the families' plans decided from their pilots."""

    medians: dict[CellKey, dict[int, float]] = field(default_factory=dict)
    next_round: dict[str, int] = field(default_factory=dict)  # device -> index
    plans: dict[FamilyKey, RoundsPlan] = field(default_factory=dict)
    evaluated: set = field(default_factory=set)  # (model, recipe, device, backend, dataset)


@dataclass
class _Reached:
    device: Device
    transport: Transport
    identity: str


@dataclass
class _Ready:
    device: Device
    transport: Transport
    session: DeviceSession
    cells: list[Cell]


@dataclass
class _DeviceState:
    medians: dict[CellKey, dict[int, float]]
    plans: dict[FamilyKey, RoundsPlan] = field(default_factory=dict)
    errors: dict[CellKey, str] = field(default_factory=dict)
    stopped: dict[CellKey, str] = field(default_factory=dict)
    fallback: set[CellKey] = field(default_factory=set)  # the delegate took nothing


class _MachineWorker(threading.Thread):
    """A thread per machine, fed the devices behind it as they answer."""

    def __init__(self, work: Callable[[str, Queue], None], identity: str, name: str):
        super().__init__(daemon=True, name=name)
        self.work, self.identity = work, identity
        self.queue: Queue = Queue()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work(self.identity, self.queue)
        except Interrupted:
            pass
        except BaseException as exc:  # surfaced in the main thread
            self.error = exc


class Sweep:
    def __init__(self, store: Store, run_id: str, session: int, protocol: Protocol, seed: int,
                 transport_factory: Callable[[Device], Transport],
                 runner_factory: Callable[[Device], Runner],
                 wait_s: float | None = 0.0,
                 on_start: Callable[[Cell, int], None] = lambda cell, index: None,
                 on_round: Callable[[Cell, RoundResult], None] = lambda cell, result: None,
                 on_finish: Callable[[Cell, str, str | None, int], None] =
                 lambda cell, status, text, rounds: None,
                 on_wait: Callable[[str, LockHolder | None], None] = lambda names, who: None,
                 evaluator=None):
        self.store = store
        self.run_id = run_id
        self.session = session
        self.protocol = protocol
        self.seed = seed
        self.transport_factory = transport_factory
        self.runner_factory = runner_factory
        self.wait_s = wait_s
        self.on_start = on_start
        self.on_round = on_round
        self.on_finish = on_finish
        self.on_wait = on_wait
        self.evaluator = evaluator  # bench.accuracy.evaluator.Evaluator, or None
        # A resume evaluates every measured cell still missing its accuracy, not only the
        # cells it measures again (device name -> cells).
        self.evaluation_cells: dict[str, list[Cell]] = {}
        self._lock = threading.RLock()  # the store and the callbacks, across device threads
        self._stop = threading.Event()
        self._open: list[Transport] = []

    # planning
    def record_plan(self, plan: Plan) -> None:
        """Every planned cell is in the store (pending) before anything is measured."""
        with self._lock:
            for cell in plan.cells:
                self.store.save_cell(self.run_id, cell.key, status=PENDING,
                                     position=plan.order.get(cell.key))
            for cell, reason in plan.skipped:
                self.store.save_cell(self.run_id, cell.key, status=SKIPPED, reason=reason,
                                     position=plan.order.get(cell.key))
                self.on_finish(cell, SKIPPED, reason, 0)

    # the sweep
    def run(self, plan: Plan, devices: list[Device],
            previous: ResumeState | None = None) -> SweepOutcome:
        """Measure every planned cell; `previous` holds what a resumed run already has.

        Every device is reached at once; each machine gets a worker as soon as the first
        device behind it answers (later devices of the same machine queue behind it), so a
        board that never answers costs only its own timeout."""
        outcome = SweepOutcome()
        previous = previous or ResumeState()
        wanted = [d for d in devices if any(c.device == d.name for c in plan.cells)
                  or self.evaluation_cells.get(d.name)]
        locks: list[MachineLock] = []
        try:
            if len(wanted) == 1:  # in this thread: Ctrl-C reaches the measurement directly
                found = self._reach(wanted[0])
                if isinstance(found, str):
                    self._unusable(wanted[0], found, plan, outcome, previous)
                else:
                    queue: Queue = Queue()
                    queue.put(found)
                    queue.put(None)
                    self._machine(found.identity, queue, plan, outcome, previous, locks)
            elif wanted:
                self._run_parallel(wanted, plan, outcome, previous, locks)
        except KeyboardInterrupt:
            self._stop.set()
            raise Interrupted() from None
        finally:
            for lock in locks:
                lock.release()
            for transport in self._open:  # kills anything still running there
                transport.close()
        if self._stop.is_set():
            raise Interrupted()
        return outcome

    def _reach(self, device: Device) -> _Reached | str:
        """Open the device's transport and identify the machine behind it."""
        transport = self.transport_factory(device)
        with self._lock:
            self._open.append(transport)
        try:
            return _Reached(device, transport, transport.identity())
        except TransportError as exc:
            return f"cannot reach it: {exc}"

    def _run_parallel(self, devices: list[Device], plan: Plan, outcome: SweepOutcome,
                      previous: ResumeState, locks: list[MachineLock]) -> None:
        answers: Queue = Queue()
        for device in devices:
            threading.Thread(target=lambda d=device: answers.put((d, self._reach(d))),
                             daemon=True, name=f"bench-reach-{device.name}").start()
        workers: dict[str, _MachineWorker] = {}
        try:
            for _ in devices:
                while True:  # a short timeout keeps Ctrl-C responsive while waiting
                    try:
                        device, found = answers.get(timeout=0.2)
                        break
                    except Empty:
                        continue
                if isinstance(found, str):
                    self._unusable(device, found, plan, outcome, previous)
                    continue
                if found.identity not in workers:
                    workers[found.identity] = _MachineWorker(
                        lambda identity, queue: self._machine(identity, queue, plan, outcome,
                                                              previous, locks),
                        found.identity, name=f"bench-{device.name}")
                    workers[found.identity].start()
                workers[found.identity].queue.put(found)
            for worker in workers.values():
                worker.queue.put(None)
            for worker in workers.values():
                while worker.is_alive():
                    worker.join(0.2)
        except KeyboardInterrupt:
            self._stop.set()
            with self._lock:
                transports = list(self._open)
            for transport in transports:  # kills the running measurements
                transport.close()
            for worker in workers.values():
                worker.join(30)
            raise
        for worker in workers.values():
            if worker.error is not None:
                raise worker.error

    def _machine(self, identity: str, queue: Queue, plan: Plan, outcome: SweepOutcome,
                 previous: ResumeState, locks: list[MachineLock]) -> None:
        """One machine: take its lock, then measure its devices one after another."""
        busy: str | None = None
        lock: MachineLock | None = None
        while (reached := queue.get()) is not None:
            if lock is None and busy is None:
                lock = MachineLock(reached.transport, self.run_id, [reached.device.name])
                try:
                    name = reached.device.name
                    lock.acquire(self.wait_s,
                                 on_wait=lambda who, name=name: self._waiting([name], who),
                                 sleep=self._sleep_unless_stopped)
                    with self._lock:
                        locks.append(lock)
                except MachineBusy as exc:
                    busy = str(exc)
                except TransportError as exc:
                    busy = f"cannot take the machine lock: {exc}"
            if busy is not None:
                self._unusable(reached.device, busy, plan, outcome, previous)
                continue
            ready = self._probe(reached, identity, plan)
            if isinstance(ready, tuple):
                self._unusable(ready[0], ready[1], plan, outcome, previous)
                continue
            runnable = []
            for cell in ready.cells:
                if cell.variant.status == "ok":
                    runnable.append(cell)
                else:
                    self._finish(cell, FAILED, cell.variant.error or "variant was not built",
                                 None, outcome, 0)
            if runnable:
                self._rounds(ready, runnable, outcome, previous)
            evaluate = self.evaluation_cells.get(reached.device.name, runnable)
            if self.evaluator is not None and evaluate and \
                    reached.device.name not in outcome.lost:
                self._evaluate(ready, evaluate, previous)

    def _evaluate(self, ready: _Ready, cells: list[Cell], previous: ResumeState) -> None:
        """Accuracy after the device's timed rounds (never inside them)."""
        def save(row: dict) -> None:
            with self._lock:
                self.store.save_evaluation(self.run_id, row)

        self.evaluator.evaluate(ready.session, cells, save, self._stop.is_set,
                                previous.evaluated)
        if self._stop.is_set():
            raise Interrupted()

    def _probe(self, reached: _Reached, identity: str, plan: Plan) -> _Ready | tuple:
        device = reached.device
        runner = self.runner_factory(device)
        session = DeviceSession(device, reached.transport, runner, self.protocol)
        try:
            session.prepare()
            probe = runner.probe(reached.transport)
        except (TransportError, RunnerUnavailable) as exc:
            return device, str(exc)
        with self._lock:
            self.store.save_device(self.run_id, self.session,
                                   device_facts(device, identity, probe))
        return _Ready(device, reached.transport, session,
                      [c for c in plan.cells if c.device == device.name])

    def _waiting(self, names: list[str], holder: LockHolder | None) -> None:
        with self._lock:
            self.on_wait(", ".join(names), holder)

    def _sleep_unless_stopped(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise Interrupted()

    def _unusable(self, device: Device, why: str, plan: Plan, outcome: SweepOutcome,
                  previous: ResumeState) -> None:
        """A device that cannot be used now: its cells keep any rounds already measured."""
        reason = f"device {device.name} unusable: {why}"
        outcome.unusable[device.name] = why
        for cell in plan.cells:
            if cell.device != device.name:
                continue
            if previous.medians.get(cell.key):
                with self._lock:  # measured rounds stay; a later --resume continues them
                    self.store.save_cell(self.run_id, cell.key, status=PENDING, reason=reason)
            else:
                self._finish(cell, FAILED, reason, None, outcome, 0)

    def _rounds(self, ready: _Ready, cells: list[Cell], outcome: SweepOutcome,
                previous: ResumeState) -> None:
        device = ready.device
        state = _DeviceState({c.key: dict(previous.medians.get(c.key, {})) for c in cells},
                             plans=dict(previous.plans))
        index = previous.next_round.get(device.name, 0)
        budget = self.protocol.budget_for(len(cells))
        started = time.monotonic()
        active = list(cells)
        while active:
            cooldown = None
            if index > 0 and (device.cooldown_s or device.thermal_max_c is not None):
                cooldown = cool_down(ready.transport, device, device.cooldown_s,
                                     sleep=self._sleep_unless_stopped)
            order = round_order(active, self.seed, device.name, index)
            with self._lock:
                self.store.start_device_round(self.run_id, device.name, index,
                                              session=self.session, seed=self.seed,
                                              planned=len(order), cooldown=cooldown)
            measured: dict[CellKey, float] = {}
            for position, cell in enumerate(order):
                predecessor = order[position - 1].key.cell_id if position else None
                result = self._one_round(ready, cell, index, position, predecessor)
                if result.delegation and fell_back(cell.backend, result.delegation.delegated):
                    state.fallback.add(cell.key)
                if result.device_lost:
                    self._lose(device, active, result.error or "device lost", outcome)
                    return
                if result.ok:
                    measured[cell.key] = result.aggregate.summary_us
                else:
                    state.errors.setdefault(cell.key, result.error or "round failed")
                    state.stopped[cell.key] = "failed"
            else:
                with self._lock:
                    self.store.finish_device_round(self.run_id, device.name, index)
                for key, median in measured.items():  # usable only once the round is whole
                    state.medians[key][index] = median
            index += 1
            self._decide(active, state, time.monotonic() - started > budget)
            still, stopped_ok = [], []
            for cell in active:
                if cell.key in state.stopped:
                    self._stop_cell(cell, state, outcome)
                    if state.medians[cell.key]:
                        stopped_ok.append(cell)
                else:
                    still.append(cell)
            active = still
            for cell in stopped_ok:
                self._memory(ready, cell)

    def _memory(self, ready: _Ready, cell: Cell) -> None:
        if self._stop.is_set():
            raise Interrupted()
        found = ready.session.measure_memory(cell)
        if self._stop.is_set():
            raise Interrupted()
        if found is not None:
            with self._lock:
                self.store.save_memory(self.run_id, cell.key, *found)

    def _lose(self, device: Device, active: list[Cell], error: str,
              outcome: SweepOutcome) -> None:
        """The device went away mid-sweep: its unfinished cells wait for a --resume, with
        every round measured so far kept."""
        outcome.lost[device.name] = error
        with self._lock:
            for cell in active:
                self.store.save_cell(self.run_id, cell.key, status=PENDING,
                                     reason=f"{error}; `bench run --resume` measures the rest")
                self.on_finish(cell, PENDING, error, 0)

    def _one_round(self, ready: _Ready, cell: Cell, index: int, position: int,
                   predecessor: str | None) -> RoundResult:
        if self._stop.is_set():
            raise Interrupted()
        with self._lock:
            self.on_start(cell, index)
        began = time.perf_counter()
        result = ready.session.run_round(cell, index)
        if self._stop.is_set():
            raise Interrupted()  # killed by Ctrl-C: not a result
        context = RoundContext(round=index, session=self.session, position=position,
                               host_seconds=time.perf_counter() - began,
                               predecessor=predecessor)
        with self._lock:
            self.store.record_round(self.run_id, cell.key, result, context)
            self.on_round(cell, result)
        return result

    def _decide(self, active: list[Cell], state: _DeviceState, over_budget: bool) -> None:
        families: dict[FamilyKey, list[CellKey]] = {}
        for cell in active:
            if cell.key not in state.stopped:
                families.setdefault(cell.key.family, []).append(cell.key)
        if self.protocol.adaptive:
            for family, members in families.items():
                if family in state.plans:
                    continue
                plan = plan_family(members, state.medians, self.protocol, state.fallback)
                if plan is not None:  # decided once, from the pilot, and stored as a fact
                    state.plans[family] = plan
                    with self._lock:
                        for key in members:
                            self.store.save_plan(self.run_id, key, pilot=plan.pilot,
                                                 needed=plan.needed, planned=plan.planned)
        state.stopped.update(decide(families, state.medians, state.plans, self.protocol,
                                    over_budget))

    def _stop_cell(self, cell: Cell, state: _DeviceState, outcome: SweepOutcome) -> None:
        reason_stop = state.stopped[cell.key]
        rounds = len(state.medians[cell.key])
        if rounds:
            self._finish(cell, OK, None, reason_stop, outcome, rounds)
        else:
            error = state.errors.get(cell.key) or "no rounds"
            self._finish(cell, FAILED, error, reason_stop, outcome, 0)

    def _finish(self, cell: Cell, status: str, reason: str | None, stop_reason: str | None,
                outcome: SweepOutcome, rounds: int) -> None:
        with self._lock:
            self.store.save_cell(self.run_id, cell.key, status=status, reason=reason,
                                 stop_reason=stop_reason,
                                 protocol_version=PROTOCOL_VERSION if stop_reason else None,
                                 target=self.protocol.target if self.protocol.adaptive
                                 else None)
            outcome.finished += 1
            outcome.failed += status == FAILED
            self.on_finish(cell, status, reason if status != OK else stop_reason, rounds)


def device_facts(device: Device, identity: str, probe: RunnerProbe) -> dict:
    """A device as resolved for this session: its settings, machine, runtime and runner."""
    config = dataclasses.asdict(device)
    config["file"] = str(device.file)
    return {
        "device": device.name, "transport": device.transport, "runner": device.runner,
        "machine_id": identity, "config": config,
        "runner_name": probe.runner_name, "runner_version": probe.runner_version,
        "runtime_name": probe.runtime_name, "runtime_version": probe.runtime_version,
        "runtime_module": probe.runtime_module, "python_version": probe.python_version,
        "numpy_version": probe.numpy_version, "cpu_model": probe.cpu_model,
        "cpu_flags": list(probe.cpu_flags), "cpu_count": probe.cpu_count,
        "machine": probe.machine, "platform": probe.platform,
    }
