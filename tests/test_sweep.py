"""The sweep with a fake runner and fake machines, handed in through its factories.

The fakes keep the real parts where they cost nothing: a device's shell (work directory,
machine lock) is this machine's, through the local transport, and every round runs a
real process (`true`); only the machine's identity and the runner's figures are made
up, so rounds, stops, interruptions and lost links can be staged exactly.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path, PurePosixPath

import pytest

from bench.analysis import analyse
from bench.commands.run import resume_state
from bench.devices import load_device
from bench.measure.protocol import Protocol
from bench.orchestrator import Interrupted, ResumeState, Sweep
from bench.plan import make_plan
from bench.results import Aggregate, Delegation, RoundResult
from bench.runners.base import Invocation, RunnerProbe
from bench.store.sqlite import SQLiteStore
from bench.transports.base import TransportError
from bench.transports.local import LocalTransport
from bench.zoo.cache import Variant

ROUND = "fake-round"


class FakeMachine(LocalTransport):
    """This machine's shell under another identity; can drop its link on demand."""

    def __init__(self, identity: str, lose_after: int | None = None):
        super().__init__()
        self._identity = identity
        self.lock_dir = f"{self.lock_dir}/machine-{identity}"  # one place per machine
        self.lose_after = lose_after
        self.rounds = 0

    def identity(self) -> str:
        return self._identity

    def run(self, argv, timeout):
        if argv[1:2] == [ROUND]:
            self.rounds += 1
            if self.lose_after is not None and self.rounds > self.lose_after:
                raise TransportError("link dropped")
        return super().run(argv, timeout)


class FakeRunner:
    """Each round 'measures' latency[recipe] µs; it can be interrupted at its n-th round."""

    name = "fake"
    backends = ("xnnpack", "cpu")

    def __init__(self, latency: dict[str, float], delegated: str = "yes",
                 interrupt_at: int | None = None, seconds: float = 0.0,
                 log: list | None = None, device: str = "", swing: dict | None = None):
        self.latency, self.delegated, self.swing = latency, delegated, swing or {}
        self.interrupt_at, self.seconds = interrupt_at, seconds
        self.log, self.device, self.count = log if log is not None else [], device, 0

    def probe(self, transport):
        return RunnerProbe(runner_name="fake", runtime_name="fake-rt", runtime_version="1",
                           cpu_model="Fake CPU", cpu_flags=("avx2",))

    def stage(self, stager):
        pass

    def invocation(self, job, scratch):
        return Invocation(argv=["true", ROUND])

    def parse(self, outcome, result_bytes, job):
        self.count += 1
        if self.interrupt_at is not None and self.count == self.interrupt_at:
            raise KeyboardInterrupt  # as Ctrl-C arriving while the round runs
        recipe, model = PurePosixPath(job.model_path).stem.split("-")
        began = time.monotonic()
        time.sleep(self.seconds)
        self.log.append((self.device, began, time.monotonic()))
        swing = self.swing.get(model, 0.0) * (-1) ** (job.round + (recipe == "int8"))
        value = self.latency[recipe] * (1 + 0.001 * job.round + swing)
        return RoundResult("ok", aggregate=Aggregate.of([value, value]),
                           delegation=Delegation(job.backend, self.delegated
                                                 if job.backend == "xnnpack" else "no", 1, 6),
                           runtime_name="fake-rt", runtime_version="1")


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite")
    store.start_run("r", label=None, settings={}, host={}, harness_version="t", protocol={},
                    protocol_version=2, seed=3)
    yield store
    store.close()


def device(tmp_path: Path, name: str, backends: str = '["xnnpack", "cpu"]'):
    path = tmp_path / f"{name}.toml"
    path.write_text(f'transport = "local"\nrunner = "python"\nbackends = {backends}\n'
                    f'work_dir = "{tmp_path / name}-work"\n')
    return load_device(path)


def variants(*models: str) -> list[Variant]:
    return [Variant(model, recipe, "ok", path=__file__, sha256=f"{recipe}-{model}")
            for model in models for recipe in ("fp32", "int8")]


def sweep(store, machines: dict, runners: dict, protocol: Protocol, session: int = 1,
          **kwargs) -> Sweep:
    return Sweep(store, "r", session, protocol, seed=3,
                 transport_factory=lambda d: machines[d.name],
                 runner_factory=lambda d: runners[d.name], **kwargs)


def test_rounds_pair_and_families_stop_together(tmp_path, store):
    local = device(tmp_path, "dev")
    plan = make_plan(variants("m"), [local], None, None)
    runner = FakeRunner({"fp32": 1000.0, "int8": 400.0})
    job = sweep(store, {"dev": FakeMachine("A")}, {"dev": runner}, Protocol().with_rounds(3))
    job.record_plan(plan)
    outcome = job.run(plan, [local])
    assert outcome.finished == 4 and outcome.failed == 0 and not outcome.unusable
    analysis = analyse(store.facts("r"))
    assert set(analysis.cells["status"]) == {"ok"} and set(analysis.cells["rounds"]) == {3}
    assert set(analysis.cells["stop_reason"]) == {"fixed_rounds"}
    int8 = analysis.speedups[(analysis.speedups["recipe"] == "int8")]
    assert set(int8["reference"]) == {"same_backend", "vs_cpu_fp32"}
    # xnnpack and cpu against their own fp32, and cpu against fp32 on xnnpack
    assert int8["speedup"].tolist() == pytest.approx([2.5] * 3) and set(int8["n"]) == {3}
    device_facts = store.facts("r").devices[0]
    assert device_facts["machine_id"] == "A" and device_facts["runtime_name"] == "fake-rt"
    assert device_facts["config"]["work_dir"].endswith("dev-work")


def test_an_interrupted_round_is_kept_unpaired_and_measured_again_whole(tmp_path, store):
    local = device(tmp_path, "dev")
    plan = make_plan(variants("m"), [local], None, None)  # 4 cells: 2 recipes x 2 backends
    protocol = Protocol().with_rounds(3)
    first = FakeRunner({"fp32": 1000.0, "int8": 400.0}, interrupt_at=7)  # round 2, cell 3
    job = sweep(store, {"dev": FakeMachine("A")}, {"dev": first}, protocol)
    job.record_plan(plan)
    with pytest.raises(Interrupted):
        job.run(plan, [local])
    facts = store.facts("r")
    assert [(r["round"], r["finished_at"] is not None) for r in facts.device_rounds] == \
        [(0, True), (1, False)]
    assert len(facts.rounds) == 6  # 4 of round 0 and the 2 that finished in round 1
    assert {c["status"] for c in facts.cells} == {"pending"}

    previous = resume_state(store, "r", plan, variants("m"))
    assert previous.next_round == {"dev": 2}
    assert all(list(m) == [0] for m in previous.medians.values())  # round 1 is not usable
    second = FakeRunner({"fp32": 1000.0, "int8": 400.0})
    job = sweep(store, {"dev": FakeMachine("A")}, {"dev": second}, protocol, session=2)
    job.record_plan(plan)
    job.run(plan, [local], previous)
    facts = store.facts("r")
    analysis = analyse(facts)
    assert set(analysis.cells["rounds"]) == {3}  # rounds 0, 2, 3: whole rounds only
    assert set(analysis.cells["incomplete_rounds"]) == {0, 1}
    assert len(facts.rounds) == 6 + 8  # nothing measured was thrown away
    same = analysis.speedups[analysis.speedups["reference"] == "same_backend"]
    assert len(same) == 2 and set(same["n"]) == {3}
    used = analysis.rounds[analysis.rounds["usable"]]
    assert sorted(set(used["round"])) == [0, 2, 3]
    assert {r["session"] for r in facts.device_rounds if r["round"] >= 2} == {2}


def test_a_family_that_stopped_before_an_interruption_keeps_its_speedups(tmp_path, store):
    """Adaptive stopping: the quiet family's 3-round pilot plans no more rounds, the noisy
    one's plans more than the maximum; Ctrl-C in round 5; after --resume both families
    have every speedup, with Stein intervals from their pilots."""
    local = device(tmp_path, "dev", '["xnnpack"]')
    plan = make_plan(variants("quiet", "noisy"), [local], None, None)
    protocol = Protocol(min_rounds=3, max_rounds=9, target=0.01)
    latency = {"fp32": 1000.0, "int8": 400.0}
    first = FakeRunner(latency, swing={"noisy": 0.3}, interrupt_at=4 * 3 + 2 * 1 + 1)
    job = sweep(store, {"dev": FakeMachine("A")}, {"dev": first}, protocol)
    job.record_plan(plan)
    with pytest.raises(Interrupted):
        job.run(plan, [local])
    stored = {c["model"] + "/" + c["recipe"]: c for c in store.facts("r").cells}
    assert stored["quiet/int8"]["status"] == "ok" and stored["quiet/int8"]["stop_reason"] == \
        "target"
    assert stored["noisy/int8"]["status"] == "pending"
    previous = resume_state(store, "r", plan, variants("quiet", "noisy"))
    assert {c.model for c in plan.cells} == {"noisy"}  # the finished family is not re-run
    job = sweep(store, {"dev": FakeMachine("A")},
                {"dev": FakeRunner(latency, swing={"noisy": 0.3})}, protocol, session=2)
    job.record_plan(plan)
    job.run(plan, [local], previous)
    analysis = analyse(store.facts("r"))
    found = analysis.speedups.set_index("model")
    assert set(found.index) == {"quiet", "noisy"}
    assert found.loc["quiet", "n"] == 3 and found.loc["noisy", "n"] == 9
    assert found.loc["quiet", "speedup"] == pytest.approx(2.5)
    assert set(found["method"]) == {"stein(pilot=3)"}
    cells = analysis.cells.set_index(["model", "recipe"])
    assert cells.loc[("noisy", "int8"), "stop_reason"] == "max_rounds"
    assert cells.loc[("noisy", "int8"), "needed_rounds"] > 9
    assert not cells.loc[("noisy", "int8"), "reached_target"]
    assert any("wider than the ±1% target" in w for w in cells.loc[("noisy", "int8"),
                                                                     "warnings"])


def test_a_lost_link_leaves_the_device_for_a_resume_with_its_rounds(tmp_path, store):
    local = device(tmp_path, "dev")
    plan = make_plan(variants("m"), [local], None, None)
    machine = FakeMachine("A", lose_after=5)  # round 0 whole, then the link drops
    job = sweep(store, {"dev": machine}, {"dev": FakeRunner({"fp32": 9.0, "int8": 3.0})},
                Protocol().with_rounds(3))
    job.record_plan(plan)
    outcome = job.run(plan, [local])
    assert "link dropped" in outcome.lost["dev"] and outcome.finished == 0
    facts = store.facts("r")
    assert {c["status"] for c in facts.cells} == {"pending"}
    assert all("--resume" in c["reason"] for c in facts.cells)
    lost = [r for r in facts.rounds if r["device_lost"]]
    assert len(lost) == 1 and "link dropped" in lost[0]["error"]
    assert len([r for r in facts.rounds if r["status"] == "ok"]) == 5  # all kept
    previous = resume_state(store, "r", plan, variants("m"))
    job = sweep(store, {"dev": FakeMachine("A")}, {"dev": FakeRunner({"fp32": 9.0, "int8": 3.0})},
                Protocol().with_rounds(3), session=2)
    job.run(plan, [local], previous)
    analysis = analyse(store.facts("r"))
    assert set(analysis.cells["status"]) == {"ok"} and set(analysis.cells["rounds"]) == {3}


def test_a_delegate_that_took_nothing_is_a_fallback_without_speedup(tmp_path, store):
    local = device(tmp_path, "dev")
    plan = make_plan(variants("m"), [local], None, None)
    job = sweep(store, {"dev": FakeMachine("A")},
                {"dev": FakeRunner({"fp32": 100.0, "int8": 500.0}, delegated="no")},
                Protocol().with_rounds(2))
    job.record_plan(plan)
    job.run(plan, [local])
    analysis = analyse(store.facts("r"))
    cells = analysis.cells.set_index(["recipe", "backend"])
    assert cells.loc[("int8", "xnnpack"), "status"] == "fallback"
    assert "took none of the graph" in cells.loc[("int8", "xnnpack"), "reason"]
    assert cells.loc[("int8", "cpu"), "status"] == "ok"  # built-in kernels are its job
    xnnpack = analysis.speedups[analysis.speedups["backend"] == "xnnpack"]
    assert xnnpack.empty  # neither against nor for the fallback cells
    cpu = analysis.speedups[(analysis.speedups["backend"] == "cpu")
                            & (analysis.speedups["recipe"] == "int8")]
    assert cpu["reference"].tolist() == ["same_backend"]  # vs xnnpack fp32: it fell back


def overlapping(log: list, a: str, b: str) -> int:
    first = [(s, e) for d, s, e in log if d == a]
    second = [(s, e) for d, s, e in log if d == b]
    return sum(1 for s1, e1 in first for s2, e2 in second if s1 < e2 and s2 < e1)


def test_machines_in_parallel_and_one_machine_never_twice_at_once(tmp_path, store):
    names = ["a1", "a2", "b"]
    devices = [device(tmp_path, n, '["xnnpack"]') for n in names]
    plan = make_plan(variants("m"), devices, None, None)
    log: list = []
    machines = {"a1": FakeMachine("A"), "a2": FakeMachine("A"), "b": FakeMachine("B")}
    runners = {n: FakeRunner({"fp32": 1.0, "int8": 1.0}, seconds=0.05, log=log, device=n)
               for n in names}
    job = sweep(store, machines, runners, Protocol().with_rounds(2))
    job.record_plan(plan)
    job.run(plan, devices)
    assert len(log) == 12
    assert overlapping(log, "a1", "a2") == 0  # two names, one machine: one at a time
    assert overlapping(log, "a1", "b") + overlapping(log, "a2", "b") >= 2


def test_a_busy_machine_is_waited_for_when_asked(tmp_path, store):
    from bench.measure.machine_lock import MachineLock

    local = device(tmp_path, "dev", '["xnnpack"]')
    plan = make_plan(variants("m"), [local], None, None)
    machine = FakeMachine("A")
    other = MachineLock(machine, "someone-else", ["dev"])  # a harness that is alive
    other.acquire()
    waits = []
    job = sweep(store, {"dev": machine}, {"dev": FakeRunner({"fp32": 1, "int8": 1})},
                Protocol().with_rounds(1), wait_s=None,
                on_wait=lambda names, holder: waits.append((names, holder)))
    threading.Timer(1.0, other.release).start()
    job.record_plan(plan)
    outcome = job.run(plan, [local])
    assert not outcome.unusable and outcome.finished == 2
    assert waits and waits[0][0] == "dev" and waits[0][1].run_id == "someone-else"


def test_an_unusable_device_on_resume_keeps_the_rounds_of_its_cells(tmp_path, store):
    local = device(tmp_path, "dev")
    plan = make_plan(variants("m"), [local], None, None)
    job = sweep(store, {"dev": FakeMachine("A")}, {"dev": FakeRunner({"fp32": 5, "int8": 2},
                                                                      interrupt_at=6)},
                Protocol().with_rounds(3))
    job.record_plan(plan)
    with pytest.raises(Interrupted):
        job.run(plan, [local])

    class Unreachable(FakeMachine):
        def identity(self):
            raise TransportError("no route to host")

    previous = resume_state(store, "r", plan, variants("m"))
    job = sweep(store, {"dev": Unreachable("A")}, {"dev": FakeRunner({})},
                Protocol().with_rounds(3), session=2)
    outcome = job.run(plan, [local], previous)
    assert "no route to host" in outcome.unusable["dev"]
    facts = store.facts("r")
    assert {c["status"] for c in facts.cells} == {"pending"}  # not failed: rounds are kept
    assert all("unusable" in c["reason"] for c in facts.cells)
    assert len(facts.rounds) == 5

    again = resume_state(store, "r", plan, variants("m"))
    assert all(list(m) == [0] for m in again.medians.values()) and len(again.medians) == 4
    job = sweep(store, {"dev": FakeMachine("A")}, {"dev": FakeRunner({"fp32": 5, "int8": 2})},
                Protocol().with_rounds(3), session=3)
    job.run(plan, [local], again)
    analysis = analyse(store.facts("r"))
    assert set(analysis.cells["status"]) == {"ok"} and set(analysis.cells["rounds"]) == {3}


def test_resume_state_is_empty_for_a_new_run(tmp_path, store):
    local = device(tmp_path, "dev")
    plan = make_plan(variants("m"), [local], None, None)
    assert resume_state(store, "r", plan, variants("m")) == ResumeState()
