"""Runners: what measures on a device (the python runner; benchmark_model later)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.devices import Device
    from bench.runners.base import Runner


def make_runner(device: Device) -> Runner:
    """The runner a device file asks for."""
    if device.runner == "python":
        from bench.runners.python import PythonRunner

        return PythonRunner(device.interpreter, device.tflite_module, str(device.file))
    if device.runner == "benchmark_model" and device.benchmark_model is not None:
        from bench.runners.benchmark_model import BenchmarkModelRunner

        return BenchmarkModelRunner(device.benchmark_model, str(device.file))
    raise NotImplementedError(f"runner {device.runner!r}")


def runner_backends(kind: str) -> tuple[str, ...]:
    """The backends a runner kind can measure at all (without building one)."""
    if kind == "python":
        from bench.runners.python import PythonRunner

        return PythonRunner.backends
    if kind == "benchmark_model":
        from bench.runners.benchmark_model import BenchmarkModelRunner

        return BenchmarkModelRunner.backends
    return ()
