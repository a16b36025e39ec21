"""The python runner: `pyrunner.py` run by the device's own Python, JSON in and out."""

from __future__ import annotations

import json
from pathlib import Path

from bench.results import (
    Aggregate,
    BusyProcess,
    Delegation,
    RoundEnvironment,
    RoundResult,
)
from bench.runners import pyrunner
from bench.runners.base import (
    EvaluationJob,
    EvaluationResult,
    Invocation,
    RoundJob,
    RunnerProbe,
    RunnerUnavailable,
    Stager,
    crash_reason,
)
from bench.transports.base import CommandResult, Transport, TransportError

RUNNER_FILE = Path(pyrunner.__file__).resolve()
PROBE_TIMEOUT_S = 120.0


def runner_digest() -> str:
    import hashlib

    return hashlib.sha256(RUNNER_FILE.read_bytes()).hexdigest()[:12]


class PythonRunner:
    """One `python -I pyrunner.py JOB RESULT` process per round."""

    name = "python"
    backends = ("xnnpack", "cpu")

    def __init__(self, interpreter: str, tflite_module: str, device_file: str = "the device file"):
        self.interpreter = interpreter
        self.tflite_module = tflite_module
        self.device_file = device_file
        self.remote_runner: str | None = None

    # staging and probing
    def stage(self, stager: Stager) -> None:
        self.remote_runner = stager.stage(RUNNER_FILE, f"runner/pyrunner-{runner_digest()}.py")

    def probe(self, transport: Transport) -> RunnerProbe:
        if self.remote_runner is None:
            raise RuntimeError("stage the runner before probing")
        command = [self.interpreter, "-I", self.remote_runner, "--probe"]
        try:
            outcome = transport.run(command, timeout=PROBE_TIMEOUT_S)
        except TransportError as exc:
            raise RunnerUnavailable(f"cannot start `{self.interpreter}`: {exc}; set `python` "
                                    f"in {self.device_file} to a Python >= 3.8 with numpy",
                                    "python") from None
        if outcome.timed_out:
            raise RunnerUnavailable(f"`{self.interpreter}` did not answer the probe within "
                                    f"{PROBE_TIMEOUT_S:g} s", "python")
        facts = _probe_facts(outcome.stdout)
        if outcome.returncode != 0 or facts is None:
            raise RunnerUnavailable(
                f"`{self.interpreter} -I pyrunner.py --probe` failed "
                f"({outcome.tail(2) or f'exit code {outcome.returncode}'}); set `python` in "
                f"{self.device_file} to a Python >= 3.8 with numpy", "python")
        if not facts.get("numpy"):
            raise RunnerUnavailable(
                f"numpy is missing for `{self.interpreter}` ({facts.get('numpy_error')}); "
                f"install it there (`{self.interpreter} -m pip install 'numpy<2'`) or fix "
                f"`python` in {self.device_file}", "numpy")
        module = self._module(facts)
        return RunnerProbe(
            runner_name=self.name, runner_version=facts.get("runner_version"),
            runtime_name=pyrunner.DISTRIBUTIONS.get(module), runtime_module=module,
            runtime_version=facts["runtimes"][module].get("version"),
            python_version=facts.get("python"), numpy_version=facts.get("numpy"),
            cpu_model=facts.get("cpu_model"), cpu_flags=tuple(facts.get("cpu_flags") or ()),
            cpu_count=facts.get("cpu_count"), machine=facts.get("machine"),
            platform=facts.get("platform"))

    def _module(self, facts: dict) -> str:
        """The interpreter module the runner will import there, or why there is none."""
        runtimes, errors = facts.get("runtimes") or {}, facts.get("runtime_errors") or {}
        wanted = pyrunner.AUTO_MODULES if self.tflite_module == "auto" else (self.tflite_module,)
        for module in wanted:
            if runtimes.get(module) is not None:
                return module
        why = "; ".join(f"{m}: {errors.get(m, 'not installed')}" for m in wanted)
        raise RunnerUnavailable(
            f"no TFLite interpreter for `{self.interpreter}` ({why}); install ai-edge-litert "
            f"or tflite-runtime there, or set tflite_module in {self.device_file}", "runtime")

    # one round
    def invocation(self, job: RoundJob, scratch: str) -> Invocation:
        if self.remote_runner is None:
            raise RuntimeError("stage the runner first")
        job_path, result_path = f"{scratch}.job.json", f"{scratch}.result.json"
        document = {
            "schema_version": pyrunner.JOB_SCHEMA_VERSION,
            "model_path": job.model_path,
            "backend": job.backend,
            "threads": job.threads,
            "tflite_module": self.tflite_module,
            "cpus": list(job.cpus) if job.cpus else None,
            "round": job.round,
            **job.loop,
        }
        return Invocation(
            argv=[self.interpreter, "-I", self.remote_runner, job_path, result_path],
            uploads={job_path: json.dumps(document).encode()},
            result_path=result_path,
            cleanup=[job_path, result_path, result_path + ".partial"])

    # accuracy: outputs per input, untimed
    def evaluation_invocation(self, job: EvaluationJob, scratch: str) -> Invocation:
        if self.remote_runner is None:
            raise RuntimeError("stage the runner first")
        job_path, result_path = f"{scratch}.job.json", f"{scratch}.result.json"
        outputs_path = f"{scratch}.outputs.npy"
        document = {
            "schema_version": pyrunner.JOB_SCHEMA_VERSION, "mode": "evaluate",
            "model_path": job.model_path, "backend": job.backend, "threads": job.threads,
            "tflite_module": self.tflite_module,
            "cpus": list(job.cpus) if job.cpus else None,
            "inputs_path": job.inputs_path, "normalise": job.normalise,
            "outputs_path": outputs_path,
        }
        return Invocation(
            argv=[self.interpreter, "-I", self.remote_runner, job_path, result_path],
            uploads={job_path: json.dumps(document).encode()},
            result_path=result_path, outputs_path=outputs_path,
            cleanup=[job_path, result_path, result_path + ".partial", outputs_path,
                     outputs_path + ".partial"])

    def parse_evaluation(self, outcome: CommandResult,
                         result_bytes: bytes | None) -> EvaluationResult:
        if result_bytes is None:
            return EvaluationResult(False, crash_reason(outcome))
        try:
            doc = json.loads(result_bytes)
        except ValueError:
            return EvaluationResult(False, f"runner wrote an unreadable result "
                                           f"({result_bytes[:80]!r}); {crash_reason(outcome)}")
        return evaluation_from_document(doc)

    def parse(self, outcome: CommandResult, result_bytes: bytes | None,
              job: RoundJob) -> RoundResult:
        if result_bytes is None:
            return RoundResult.failure(crash_reason(outcome), runner_name=self.name)
        try:
            document = json.loads(result_bytes)
        except ValueError:
            return RoundResult.failure(f"runner wrote an unreadable result "
                                       f"({result_bytes[:80]!r}); {crash_reason(outcome)}",
                                       runner_name=self.name)
        return from_document(document)


def evaluation_from_document(doc: dict) -> EvaluationResult:
    """A pyrunner evaluate-mode result document as a typed result."""
    runtime = doc.get("runtime") or {}
    delegation = _delegation(doc)
    ok = doc.get("status") == "ok"
    error = None if ok else (doc.get("error") or "runner reported failure without a reason")
    inputs = doc.get("inputs")
    return EvaluationResult(
        ok=ok, error=error, runtime_name=_text(runtime.get("name")),
        runtime_version=_text(runtime.get("version")),
        delegated=delegation.delegated if delegation else None,
        seconds=_number(doc.get("seconds")),
        inputs=inputs if isinstance(inputs, int) and not isinstance(inputs, bool) else None)


def _probe_facts(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(pyrunner.PROBE_PREFIX):
            try:
                return json.loads(line[len(pyrunner.PROBE_PREFIX):])
            except ValueError:
                return None
    return None


def _number(value) -> float | None:
    """A figure, or None for anything that is not one (v1 documents said "unknown")."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _text(value) -> str | None:
    return value if isinstance(value, str) and value and value != "unknown" else None


def from_document(doc: dict) -> RoundResult:
    """A pyrunner result document (schema 1 or 2) as a typed round result."""
    version = doc.get("schema_version")
    if version not in (1, 2):
        return RoundResult.failure(f"runner result schema {version!r} is not one this bench "
                                   "reads (1, 2); stage the matching runner", raw=doc)
    latencies = doc.get("latencies_us") or None
    ok = doc.get("status") == "ok" and bool(latencies)
    runtime = doc.get("runtime") or {}
    if version == 1:
        init_ms = _number(doc.get("init_ms"))
        init_us = init_ms * 1000.0 if init_ms is not None else None
        kib = _number(doc.get("peak_memory_kib"))
        peak = int(kib * 1024) if kib is not None else None
    else:
        init_us = _number(doc.get("init_us"))
        peak_value = _number(doc.get("peak_memory_bytes"))
        peak = int(peak_value) if peak_value is not None else None
    error = doc.get("error")
    if doc.get("status") == "ok" and not latencies:
        error = "runner reported success without timed iterations"
    elif doc.get("status") != "ok" and not error:
        error = "runner reported failure without a reason"
    return RoundResult(
        status="ok" if ok else "failed",
        error=None if ok else error,
        aggregate=Aggregate.of(latencies) if ok else None,
        latencies_us=tuple(float(v) for v in latencies) if ok else None,
        warmup_runs=doc.get("warmup_runs") if isinstance(doc.get("warmup_runs"), int) else None,
        loop_overhead_us=_number(doc.get("loop_overhead_us")),
        batch=doc.get("batch") if isinstance(doc.get("batch"), int) else None,
        init_us=init_us,
        first_inference_us=_number(doc.get("first_inference_us")),
        peak_memory_bytes=peak,
        runtime_name=_text(runtime.get("name")),
        runtime_version=_text(runtime.get("version")),
        runtime_module=_text(runtime.get("module")),
        runner_name="python",
        runner_version=_text(doc.get("runner_version")),
        delegation=_delegation(doc),
        environment=_environment(doc),
        cpu_model=_text(doc.get("cpu_model")),
        cpu_flags=tuple(doc.get("cpu_flags") or ()) or None,
        python_version=_text(doc.get("python")),
        numpy_version=_text(doc.get("numpy_version")),
        machine=_text(doc.get("machine")),
        started_unix=_number(doc.get("started_unix")),
        finished_unix=_number(doc.get("finished_unix")),
        raw=doc,
    )


def _delegation(doc: dict) -> Delegation | None:
    found = doc.get("delegation")
    if not isinstance(found, dict):
        return None
    backend = found.get("backend") or (doc.get("job") or {}).get("backend") or "unknown"
    verdict = found.get("delegated", found.get("xnnpack"))  # schema 1 called it "xnnpack"
    nodes, delegate_nodes = found.get("nodes"), found.get("delegate_nodes")
    return Delegation(
        backend=backend,
        delegated=verdict if verdict in ("yes", "no") else "unknown",
        delegate_nodes=delegate_nodes if isinstance(delegate_nodes, int) else None,
        graph_nodes=nodes if isinstance(nodes, int) else None,
        evidence=_text(found.get("evidence")))


def _environment(doc: dict) -> RoundEnvironment | None:
    env = doc.get("environment")
    if not isinstance(env, dict):
        return None
    affinity = env.get("affinity") or doc.get("affinity")
    affinity = tuple(int(c) for c in affinity) if isinstance(affinity, list) else None
    cores = len(affinity) if affinity else doc.get("cpu_count")
    load = env.get("loadavg")
    running = env.get("procs_running")
    busy = tuple(BusyProcess(int(p["pid"]), str(p["name"]), float(p["cpu_share"]))
                 for p in env.get("busy_processes") or [] if isinstance(p, dict))
    return RoundEnvironment(
        loadavg_1m=_number(load[0]) if isinstance(load, list) and load else None,
        procs_running=running if isinstance(running, int) else None,
        cpus_available=cores if isinstance(cores, int) else None,
        steal_fraction=_number(env.get("steal")),
        temperature_c=_number(env.get("temperature_c")),
        governor=_text(env.get("governor")),
        affinity=affinity,
        busy_processes=busy,
    )
