"""One device during a sweep: its work directory, what is staged there, and its rounds.

Whatever goes wrong in a round (a runtime that lacks an op, a crash, a hang) comes back
as a failed `RoundResult` with one line of reason; nothing here raises for a per-cell
problem. A dropped link (after the transport's own retries) or a device that refuses
writes marks the result `device_lost`: its other cells cannot run now either.

Models are staged once per device, named by their sha256, and never sent twice; the
job and result files of a round are removed from the device once the round is read.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from pathlib import Path, PurePosixPath

from bench.devices import Device
from bench.measure.protocol import Protocol
from bench.plan import Cell
from bench.results import RoundResult
from bench.runners.base import EvaluationJob, EvaluationResult, RoundJob, Runner
from bench.transports import posix
from bench.transports.base import RemoteError, Transport, TransportError


class WorkDir:
    """The device's work directory: files staged by name, each pushed at most once."""

    def __init__(self, transport: Transport, root: str):
        self.transport = transport
        self.root = PurePosixPath(root)
        self._staged: set[str] = set()
        self._marked = False

    def path(self, name: str) -> str:
        return str(self.root / name)

    def prepare(self) -> None:
        if not self._marked:
            posix.mark_work_dir(self.transport, str(self.root))
            self._marked = True

    def stage(self, local: Path, name: str) -> str:
        remote = self.path(name)
        if remote not in self._staged:
            self.prepare()
            if not self.transport.exists(remote):
                self.transport.push(local, remote)
            self._staged.add(remote)
        return remote


class DeviceSession:
    """Rounds of cells on one device through its transport and runner."""

    def __init__(self, device: Device, transport: Transport, runner: Runner,
                 protocol: Protocol):
        self.device = device
        self.transport = transport
        self.runner = runner
        self.protocol = protocol
        self.work = WorkDir(transport, device.work_dir)

    def prepare(self) -> None:
        """Create the work directory and stage the runner (before probing it)."""
        self.work.prepare()
        self.runner.stage(self.work)

    def job(self, cell: Cell, round_index: int, model_path: str) -> RoundJob:
        return RoundJob(model_path=model_path, backend=cell.backend, threads=cell.threads,
                        round=round_index,
                        cpus=tuple(self.device.cpus) if self.device.cpus else None,
                        loop=self.protocol.loop_settings(), timeout_s=self.device.timeout_s)

    def run_round(self, cell: Cell, round_index: int) -> RoundResult:
        try:
            model = self.work.stage(Path(cell.variant.path),
                                    f"models/{cell.variant.sha256}.tflite")
            return self._run(self.job(cell, round_index, model))
        except RemoteError as exc:  # e.g. its disk is full: its other cells would fail too
            return RoundResult.failure(f"device error: {exc}", device_lost=True)
        except (TransportError, OSError) as exc:
            # The link is gone (the transport already retried): no point in measuring the
            # device's other cells now.
            return RoundResult.failure(f"device lost: {exc}", device_lost=True)

    def measure_memory(self, cell: Cell) -> tuple[int | None, str] | None:
        """Peak memory from a separate run, for runners whose timed rounds cannot read it
        (None: the runner reads it in its timed rounds)."""
        make = getattr(self.runner, "memory_invocation", None)
        if make is None:
            return None
        try:
            model = self.work.stage(Path(cell.variant.path),
                                    f"models/{cell.variant.sha256}.tflite")
            invocation = make(self.job(cell, -1, model))
            outcome = self.transport.run(invocation.argv, timeout=self.device.timeout_s)
        except TransportError as exc:
            return None, f"the memory run could not run: {exc}"
        if outcome.timed_out:
            return None, f"the memory run timed out after {self.device.timeout_s:g} s"
        return self.runner.parse_memory(outcome)

    @property
    def evaluates(self) -> bool:
        """Can this device's runner return outputs per input (accuracy measured here)?"""
        return hasattr(self.runner, "evaluation_invocation")

    def evaluate_batch(self, cell: Cell, batch: Path, batch_sha256: str,
                       normalise: dict | None):
        """One staged batch of inputs through the cell's variant, untimed: the runner's
        result and the outputs (float32, one row per input), or None with the reason.
        Raises TransportError when the link is gone (the caller stops evaluating there)."""
        import numpy as np

        model = self.work.stage(Path(cell.variant.path), f"models/{cell.variant.sha256}.tflite")
        inputs = self.work.stage(batch, f"data/{batch_sha256}.npy")
        job = EvaluationJob(model_path=model, backend=cell.backend, threads=cell.threads,
                            cpus=tuple(self.device.cpus) if self.device.cpus else None,
                            inputs_path=inputs, normalise=normalise,
                            timeout_s=self.device.timeout_s)
        scratch = self.work.path(f"jobs/{uuid.uuid4().hex[:12]}")
        invocation = self.runner.evaluation_invocation(job, scratch)  # type: ignore[attr-defined]
        outputs = None
        with tempfile.TemporaryDirectory(prefix="bench-eval-") as local_dir:
            self._upload(invocation, Path(local_dir))
            outcome = self.transport.run(invocation.argv, timeout=job.timeout_s)
            if outcome.timed_out:
                result = EvaluationResult(False, f"the evaluation timed out after "
                                                 f"{job.timeout_s:g} s; raise timeout_s in "
                                                 f"{self.device.file} if the model is just slow")
            else:
                data = None
                local = Path(local_dir) / "result"
                try:
                    self.transport.pull(invocation.result_path, local)
                    data = local.read_bytes()
                except RemoteError:
                    data = None
                result = self.runner.parse_evaluation(outcome, data)  # type: ignore[attr-defined]
                if result.ok:
                    local = Path(local_dir) / "outputs.npy"
                    try:
                        self.transport.pull(invocation.outputs_path, local)
                        outputs = np.load(local, allow_pickle=False)
                    except (RemoteError, ValueError, OSError) as exc:
                        result = EvaluationResult(False, f"the evaluation's outputs could not "
                                                         f"be read back: {exc}")
        with contextlib.suppress(TransportError):
            posix.remove_files(self.transport, invocation.cleanup)
        return result, outputs

    def _upload(self, invocation, local_dir: Path) -> None:
        """The invocation's job files onto the device (written locally first)."""
        for index, (remote, content) in enumerate(invocation.uploads.items()):
            local = local_dir / f"upload-{index}"
            local.write_bytes(content)
            self.transport.push(local, remote)

    def _run(self, job: RoundJob) -> RoundResult:
        refuse = getattr(self.runner, "refuse", None)
        reason = refuse(job) if refuse else None
        if reason:
            return RoundResult.failure(reason, runner_name=self.runner.name)
        scratch = self.work.path(f"jobs/{uuid.uuid4().hex[:12]}")
        invocation = self.runner.invocation(job, scratch)
        with tempfile.TemporaryDirectory(prefix="bench-round-") as local_dir:
            self._upload(invocation, Path(local_dir))
            outcome = self.transport.run(invocation.argv, timeout=job.timeout_s)
            if outcome.timed_out:
                result = RoundResult.failure(
                    f"runner timed out after {job.timeout_s:g} s and was killed with its "
                    f"process group; raise timeout_s in {self.device.file} if the model is "
                    "just slow", runner_name=self.runner.name)
            else:
                data = None
                if invocation.result_path is not None:
                    local = Path(local_dir) / "result"
                    try:
                        self.transport.pull(invocation.result_path, local)
                        data = local.read_bytes()
                    except RemoteError:
                        data = None  # no result file: the runner crashed, parse says how
                result = self.runner.parse(outcome, data, job)
        with contextlib.suppress(TransportError):  # measured; a lost link shows up next round
            posix.remove_files(self.transport, invocation.cleanup)
        return result
